//! A run's stages: which one it is in (so a failure names where it
//! happened) and how long each took (recorded with the run, shown by
//! `sluice runs show` and the console's run page).
//!
//! The sequential stages are timed by the wall clock as the run enters
//! each one. The parts of the `run` stage overlap (the reader task, the
//! writers), so each adds the time it was busy; they are shared between
//! tasks as atomics, touched once per batch, never per row. Within
//! `load`, the runtime's instantiate calls are summed as they happen, once
//! per instance.

use sluice_state::StageTimings;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where a run is, recorded with it when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Loading and instantiating the plugins.
    Load,
    /// Asking the destination for its objects (authenticates too).
    Discover,
    /// Checking the mappings against the destination.
    Mappings,
    /// Reading, diffing, mapping, transforming and writing.
    Run,
    /// Mirror mode's deletes and their guard.
    Deletes,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Load,
        Stage::Discover,
        Stage::Mappings,
        Stage::Run,
        Stage::Deletes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Load => "load",
            Stage::Discover => "discover",
            Stage::Mappings => "mappings",
            Stage::Run => "run",
            Stage::Deletes => "deletes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A part of the `run` stage, timed by how long it was busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The source's calls.
    Read,
    /// Diff, mappings and transforms.
    Transform,
    /// Delivering a chunk (pacing and retries included).
    Write,
    /// Committing to the state store.
    Commit,
}

#[derive(Debug)]
struct Current {
    stage: Stage,
    since: Instant,
    wall: [Duration; Stage::ALL.len()],
}

/// The clock of one run (or plan), shared by its tasks.
#[derive(Debug)]
pub struct StageClock {
    current: Mutex<Current>,
    busy_us: [AtomicU64; 4],
    /// The run's instantiate calls: their summed wall time, their count.
    instantiate_us: AtomicU64,
    instances: AtomicU32,
}

impl Default for StageClock {
    fn default() -> Self {
        StageClock {
            current: Mutex::new(Current {
                stage: Stage::Load,
                since: Instant::now(),
                wall: [Duration::ZERO; Stage::ALL.len()],
            }),
            busy_us: Default::default(),
            instantiate_us: AtomicU64::new(0),
            instances: AtomicU32::new(0),
        }
    }
}

impl StageClock {
    /// Ends the current stage and starts `stage` (entering a stage again
    /// adds to its time).
    pub fn enter(&self, stage: Stage) {
        let mut c = self.lock();
        let now = Instant::now();
        let (index, since) = (c.stage.index(), c.since);
        c.wall[index] += now - since;
        c.stage = stage;
        c.since = now;
    }

    /// The stage the run is in.
    pub fn stage(&self) -> Stage {
        self.lock().stage
    }

    /// Adds `busy` to a part of the `run` stage.
    pub fn add(&self, part: Part, busy: Duration) {
        let us = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
        self.busy_us[part as usize].fetch_add(us, Ordering::Relaxed);
    }

    /// Times `work` as busy time of `part`.
    pub async fn time<T>(&self, part: Part, work: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        self.add(part, started.elapsed());
        out
    }

    /// Counts an instance the run made, which took `took` to instantiate.
    pub fn instantiated(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.instantiate_us.fetch_add(us, Ordering::Relaxed);
        self.instances.fetch_add(1, Ordering::Relaxed);
    }

    /// The timings so far, the current stage counted up to now.
    pub fn timings(&self) -> StageTimings {
        let c = self.lock();
        let mut wall = c.wall;
        wall[c.stage.index()] += c.since.elapsed();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let busy = |p: Part| self.busy_us[p as usize].load(Ordering::Relaxed) / 1000;
        StageTimings {
            load_ms: ms(wall[Stage::Load.index()]),
            discover_ms: ms(wall[Stage::Discover.index()]),
            mappings_ms: ms(wall[Stage::Mappings.index()]),
            run_ms: ms(wall[Stage::Run.index()]),
            deletes_ms: ms(wall[Stage::Deletes.index()]),
            read_ms: busy(Part::Read),
            transform_ms: busy(Part::Transform),
            write_ms: busy(Part::Write),
            commit_ms: busy(Part::Commit),
            instantiate_us: self.instantiate_us.load(Ordering::Relaxed),
            instances: self.instances.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_and_parts_accumulate() {
        let clock = StageClock::default();
        std::thread::sleep(Duration::from_millis(20));
        clock.enter(Stage::Discover);
        std::thread::sleep(Duration::from_millis(20));
        clock.enter(Stage::Load);
        std::thread::sleep(Duration::from_millis(10));
        clock.enter(Stage::Run);
        clock.add(Part::Write, Duration::from_millis(7));
        clock.add(Part::Write, Duration::from_millis(8));
        clock.add(Part::Read, Duration::from_micros(2500));
        assert_eq!(clock.stage(), Stage::Run);
        let t = clock.timings();
        // Load was entered twice: both spans count.
        assert!(t.load_ms >= 30, "{t:?}");
        assert!(t.discover_ms >= 20, "{t:?}");
        assert_eq!(t.mappings_ms, 0);
        assert_eq!(t.deletes_ms, 0);
        assert_eq!((t.write_ms, t.read_ms, t.transform_ms), (15, 2, 0));
        assert_eq!((t.instantiate_us, t.instances), (0, 0));
    }

    #[test]
    fn instantiations_are_summed_and_counted() {
        let clock = StageClock::default();
        clock.instantiated(Duration::from_micros(180));
        clock.instantiated(Duration::from_micros(95));
        clock.instantiated(Duration::from_nanos(1500));
        let t = clock.timings();
        assert_eq!((t.instantiate_us, t.instances), (276, 3), "{t:?}");
    }
}
