//! The two deadlines of every call into a plugin, so that no call can hang:
//!
//! - **CPU** ([`Limits::call_deadline`]): the guest's own execution time.
//!   Guest code runs only inside polls of the call's future (wasmtime runs
//!   it on a fiber of the polling thread), so the time spent in those polls
//!   is charged to a [`CpuMeter`]; time the call spends suspended, waiting
//!   for a response or a `wasi:clocks` sleep, is not. Epoch interruption
//!   checks the meter every [`SLICE`] of execution: past the limit the guest
//!   traps (`Trap::Interrupt`), otherwise it yields to the executor.
//! - **Wall clock** ([`Limits::wall_deadline`]): the whole call, waiting
//!   included, under `tokio::time::timeout`. Because a computing guest
//!   yields every slice, the timeout fires whether the plugin computes or
//!   waits. A call stopped this way is dropped mid-flight (wasmtime unwinds
//!   its fiber without running guest code), and the instance is poisoned.

use crate::limits::{Limits, EPOCH_TICK};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::UpdateDeadline;

/// How much guest execution runs between checks of the CPU meter (and
/// yields to the executor).
pub const SLICE: Duration = Duration::from_millis(100);

/// The guest execution time of the current call.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter(Mutex<Meter>);

#[derive(Debug, Default)]
struct Meter {
    /// Time spent in finished polls of the current call.
    busy: Duration,
    /// When the poll under way started.
    polling_since: Option<Instant>,
}

impl CpuMeter {
    fn meter(&self) -> std::sync::MutexGuard<'_, Meter> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a new call.
    pub fn reset(&self) {
        *self.meter() = Meter::default();
    }

    /// Execution time so far, including the poll under way.
    pub fn used(&self) -> Duration {
        let m = self.meter();
        m.busy + m.polling_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    fn enter(&self) {
        self.meter().polling_since = Some(Instant::now());
    }

    fn leave(&self) {
        let mut m = self.meter();
        if let Some(t) = m.polling_since.take() {
            m.busy += t.elapsed();
        }
    }
}

/// Epoch ticks covering `d`, at least one.
fn ticks(d: Duration) -> u64 {
    (d.as_nanos().div_ceil(EPOCH_TICK.as_nanos())).max(1) as u64
}

/// The epoch deadline at the start of a call: the first slice.
pub(crate) fn first_slice_ticks(limits: &Limits) -> u64 {
    ticks(limits.call_deadline.min(SLICE))
}

/// What to do when a running guest reaches its epoch deadline: trap once it
/// has used its CPU time, otherwise yield and run another slice.
pub(crate) fn on_epoch_deadline(meter: &CpuMeter, limit: Duration) -> UpdateDeadline {
    match limit.checked_sub(meter.used()) {
        Some(left) if !left.is_zero() => UpdateDeadline::Yield(ticks(left.min(SLICE))),
        _ => UpdateDeadline::Interrupt,
    }
}

/// A call that ran past its wall-clock deadline and was stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("wall-clock deadline of {} ms reached", .0.as_millis())]
pub(crate) struct WallDeadline(pub Duration);

/// Run one call into a plugin under both deadlines: its polls are charged
/// to `meter` (reset here), and it is dropped once `wall` has passed.
pub(crate) async fn guarded<T>(
    meter: &CpuMeter,
    wall: Duration,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    meter.reset();
    let metered = Metered {
        meter,
        call: Box::pin(call),
    };
    match tokio::time::timeout(wall, metered).await {
        Ok(outcome) => outcome,
        Err(_) => Err(wasmtime::Error::new(WallDeadline(wall))),
    }
}

/// A future whose time inside `poll` is charged to a meter.
struct Metered<'a, F> {
    meter: &'a CpuMeter,
    call: Pin<Box<F>>,
}

impl<F: Future> Future for Metered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.meter.enter();
        let poll = self.call.as_mut().poll(cx);
        self.meter.leave();
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_counts_polls_not_waits() {
        let meter = CpuMeter::default();
        meter.enter();
        std::thread::sleep(Duration::from_millis(20));
        meter.leave();
        std::thread::sleep(Duration::from_millis(50));
        let used = meter.used();
        assert!(
            used >= Duration::from_millis(20) && used < Duration::from_millis(50),
            "{used:?}"
        );
        meter.reset();
        assert_eq!(meter.used(), Duration::ZERO);
    }

    #[test]
    fn a_call_starts_with_one_slice_or_its_whole_deadline_if_shorter() {
        let limits = |ms| Limits {
            call_deadline: Duration::from_millis(ms),
            ..Limits::default()
        };
        assert_eq!(first_slice_ticks(&limits(1)), 1);
        assert_eq!(first_slice_ticks(&limits(35)), 4);
        assert_eq!(first_slice_ticks(&limits(60_000)), 10);
    }

    #[test]
    fn a_guest_yields_each_slice_until_its_cpu_time_is_spent() {
        let meter = CpuMeter::default();
        let limit = Duration::from_millis(250);
        assert!(matches!(
            on_epoch_deadline(&meter, limit),
            UpdateDeadline::Yield(10)
        ));
        meter.enter();
        std::thread::sleep(Duration::from_millis(200));
        match on_epoch_deadline(&meter, limit) {
            UpdateDeadline::Yield(t) => assert!((1..=5).contains(&t), "{t}"),
            _ => panic!("50 ms are left"),
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(
            on_epoch_deadline(&meter, limit),
            UpdateDeadline::Interrupt
        ));
    }

    #[tokio::test]
    async fn a_call_that_waits_past_the_wall_deadline_is_stopped_promptly() {
        let meter = CpuMeter::default();
        let started = Instant::now();
        let outcome = guarded(&meter, Duration::from_millis(100), async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            wasmtime::Result::<()>::Ok(())
        })
        .await;
        let error = outcome.unwrap_err();
        let hit = error
            .downcast_ref::<WallDeadline>()
            .expect("a wall deadline");
        assert_eq!(hit.0, Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            meter.used() < Duration::from_millis(50),
            "waiting is not CPU time: {:?}",
            meter.used()
        );
    }
}
