//! Keeping a destination inside its API's limits.
//!
//! Two things set the pace of one destination, shared by all of its
//! writers: the declared limit (the plugin's spec, or the project's
//! override), enforced on every HTTP request the plugin makes by a
//! `governor` rate limiter that spreads them evenly (the runtime's request
//! gate, so a Bulk job's polling and a plugin's own retries count like its
//! first request); and what the API itself last reported about the quota
//! left (`report-quota`), which holds the next call when the declared limit
//! would spend the quota before its window ends. Waiting for either is a
//! paced wait, counted apart from the waits the API asked for.
//!
//! With a shared budget ([`crate::budget`], `sluice worker --rate-budgets`)
//! every request also reserves a slot in the budget of the destination's
//! credentials, shared by every run in every process, after the local
//! limiter admitted it; what the API reports then goes to the shared
//! budget, so all of its users slow down. While the budget's store cannot
//! be reached the local limits and reports act alone.

use crate::budget::{BudgetKey, Reservation, SharedBudgets, Signal};
use sluice_runtime::bindings::types::RateLimit;
use sluice_runtime::sandbox::http::RequestGate;
use sluice_runtime::QuotaHint;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

type Limiter = governor::DefaultDirectRateLimiter;

/// The pace of one destination's calls.
pub struct Pacer {
    limiter: Option<Limiter>,
    /// The declared limit's spacing between calls (zero without a limit).
    declared_spacing: Duration,
    /// Writers that may call at once.
    concurrency: u32,
    /// The longest wait a quota report may impose on one call.
    max_wait: Duration,
    reported: Mutex<Reported>,
    /// Requests admitted through [`Pacer::request_gate`] and how many of
    /// them had to wait, since the last [`Pacer::take_request_counts`].
    requests: AtomicU64,
    paced_requests: AtomicU64,
    /// The budget shared with other runs and processes, if any.
    shared: Option<SharedPace>,
    /// Whether the shared budget's store answered the last time it was
    /// asked; while it does not, the local reports pace as without one.
    shared_reachable: AtomicBool,
}

/// A budget shared beyond this run: its store and the key of the
/// destination's credentials.
pub struct SharedPace {
    pub budgets: Arc<dyn SharedBudgets>,
    pub key: BudgetKey,
}

/// What the newest quota report asks for, and until when it holds.
#[derive(Default)]
struct Reported {
    /// The API's own pace, when slower than the declared one.
    spacing: Duration,
    /// The earliest start of the next call.
    next_slot: Option<Instant>,
    /// The report lapses when its window ends without a newer one.
    lapses: Option<Instant>,
    /// When this run's reported calls finished, within the last window.
    recent: VecDeque<Instant>,
}

impl Pacer {
    /// A pacer for the declared `rate` (none: only quota reports pace) and
    /// `concurrency` writers. A declared rate slower than one call per
    /// `max_wait` cannot be kept without an unbounded wait and is refused.
    pub fn new(
        rate: Option<&RateLimit>,
        concurrency: usize,
        max_wait: Duration,
    ) -> Result<Pacer, String> {
        let (limiter, declared_spacing) = match rate.and_then(limiter) {
            Some((l, spacing)) => (Some(l), spacing),
            None => (None, Duration::ZERO),
        };
        if declared_spacing > max_wait {
            return Err(format!(
                "the rate limit allows one call every {declared_spacing:?}, longer than the longest \
                 wait allowed ({max_wait:?}); raise the rate or max_wait"
            ));
        }
        Ok(Pacer {
            limiter,
            declared_spacing,
            concurrency: u32::try_from(concurrency).unwrap_or(u32::MAX).max(1),
            max_wait,
            reported: Mutex::default(),
            requests: AtomicU64::new(0),
            paced_requests: AtomicU64::new(0),
            shared: None,
            shared_reachable: AtomicBool::new(true),
        })
    }

    /// This pacer, drawing every request from `shared` too.
    pub fn with_shared(mut self, shared: SharedPace) -> Pacer {
        self.shared = Some(shared);
        self
    }

    /// Whether a shared budget paces this destination right now.
    fn sharing(&self) -> Option<&SharedPace> {
        self.shared
            .as_ref()
            .filter(|_| self.shared_reachable.load(Ordering::Relaxed))
    }

    /// Wait until the next call may start under the quota the API last
    /// reported (before the call, so the wait never counts against the
    /// call's deadline). Returns whether it had to wait.
    pub async fn ready(&self) -> bool {
        match self.reserve_reported_slot(Instant::now()) {
            Some(slot) => {
                tokio::time::sleep_until(slot).await;
                true
            }
            None => false,
        }
    }

    /// Wait until one more request may go out under the declared limit,
    /// here and in the shared budget.
    pub async fn admit_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut paced = false;
        if let Some(l) = &self.limiter {
            if l.check().is_err() {
                paced = true;
                l.until_ready().await;
            }
        }
        if let Some(shared) = &self.shared {
            paced |= self.wait_for_shared_slot(shared).await;
        }
        if paced {
            self.paced_requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reserve a slot in the shared budget and wait for it; whether it
    /// had to wait. A slot beyond `max_wait` is asked for once more after
    /// waiting `max_wait`; if it is still that far the request goes, and
    /// the API's refusal (bounded by the throttle waits) decides. A store
    /// that does not answer leaves the local limits alone in charge.
    async fn wait_for_shared_slot(&self, shared: &SharedPace) -> bool {
        let mut waited = false;
        for _ in 0..2 {
            let reserved = shared
                .budgets
                .reserve(&shared.key, self.declared_spacing, self.max_wait)
                .await;
            self.shared_reachable
                .store(reserved.is_ok(), Ordering::Relaxed);
            match reserved {
                Ok(Reservation::Wait(wait)) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                        waited = true;
                    }
                    return waited;
                }
                Ok(Reservation::TooFar(wait)) => {
                    tokio::time::sleep(wait.min(self.max_wait)).await;
                    waited = true;
                }
                Err(_) => return waited,
            }
        }
        waited
    }

    /// Take in what the API reported after a call: into the shared budget
    /// while its store answers (every user of the credentials slows
    /// down), else into this pacer ([`Pacer::observe`]).
    pub async fn report(&self, hint: QuotaHint) {
        let Some(shared) = self.sharing() else {
            return self.observe(hint);
        };
        let window = Duration::from_millis(u64::from(hint.window_ms)).min(self.max_wait);
        let api_spacing = match hint.limit {
            0 => Duration::ZERO,
            n => window / n,
        };
        let mut signals = Vec::new();
        if api_spacing > self.declared_spacing {
            signals.push(Signal::Pace {
                spacing: api_spacing,
                lasting: window,
            });
        }
        // None left: the next slot frees when the oldest counted call
        // leaves the window, about one spacing from now at a steady pace.
        if hint.remaining == 0 && hint.limit > 0 {
            signals.push(Signal::Hold(api_spacing.max(self.declared_spacing)));
        }
        for signal in signals {
            self.send_signal(shared, signal).await;
        }
    }

    /// The API refused a call for `asked` (Retry-After): every user of the
    /// shared budget holds its requests that long (at most `max_wait`).
    pub async fn throttled(&self, asked: Duration) {
        if let Some(shared) = self.sharing() {
            let hold = Signal::Hold(asked.min(self.max_wait));
            self.send_signal(shared, hold).await;
        }
    }

    async fn send_signal(&self, shared: &SharedPace, signal: Signal) {
        let sent = shared.budgets.signal(&shared.key, signal).await;
        if sent.is_err() {
            // The local reports take over; the store's own warning says why.
            self.shared_reachable.store(false, Ordering::Relaxed);
        }
    }

    /// The gate a destination instance's HTTP requests wait at
    /// ([`sluice_runtime::Instance::set_request_gate`]).
    pub fn request_gate(self: &Arc<Self>) -> RequestGate {
        let pacer = self.clone();
        Arc::new(move || {
            let pacer = pacer.clone();
            Box::pin(async move { pacer.admit_request().await })
        })
    }

    /// Requests made, and how many of them waited on the declared limit,
    /// since the last call (shared by all writers: each takes what its
    /// writes added, give or take the other writers' in flight).
    pub fn take_request_counts(&self) -> (u64, u64) {
        (
            self.requests.swap(0, Ordering::Relaxed),
            self.paced_requests.swap(0, Ordering::Relaxed),
        )
    }

    /// Take in what the API reported after a call that just finished:
    ///
    /// - its limit becomes the pace when it is slower than the declared one
    ///   (`limit` calls per window, spread evenly);
    /// - when fewer calls are left than writers may start, the next call
    ///   waits until enough of the calls the API counted have left its
    ///   rolling window. This run knows when its own calls ended; if the
    ///   API counted more calls than that (someone else shares the quota),
    ///   it waits the whole window.
    ///
    /// A reported window longer than `max_wait` counts as `max_wait`: a
    /// plugin's report can slow calls but never hold one past the bound (an
    /// API that then refuses answers with a rate limit, which is bounded too).
    pub fn observe(&self, hint: QuotaHint) {
        let now = Instant::now();
        let window = Duration::from_millis(u64::from(hint.window_ms)).min(self.max_wait);
        let mut reported = lock(&self.reported);
        reported.recent.push_back(now);
        while reported
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= window)
        {
            reported.recent.pop_front();
        }
        let api_spacing = match hint.limit {
            0 => Duration::ZERO,
            n => window / n,
        };
        reported.spacing = if api_spacing > self.declared_spacing {
            api_spacing
        } else {
            Duration::ZERO
        };
        reported.lapses = Some(now + window);
        if hint.remaining < self.concurrency {
            let to_free = (self.concurrency - hint.remaining) as usize;
            let counted = hint.limit.saturating_sub(hint.remaining) as usize;
            let ours = reported.recent.len();
            // The API's `counted` calls are our newest ones when we made at
            // least that many; the `to_free`-th oldest of them frees the
            // last slot needed.
            let free_at = if ours >= counted && counted >= to_free {
                reported.recent[ours - counted + to_free - 1] + window
            } else {
                now + window
            };
            reported.next_slot = Some(reported.next_slot.map_or(free_at, |s| s.max(free_at)));
        }
    }

    /// The instant the next call may start under the newest report, taken
    /// so concurrent writers get successive slots; `None` when it may start
    /// now.
    fn reserve_reported_slot(&self, now: Instant) -> Option<Instant> {
        let mut reported = lock(&self.reported);
        if reported.lapses.is_none_or(|t| t <= now) {
            *reported = Reported::default();
            return None;
        }
        let slot = reported.next_slot.map_or(now, |s| s.max(now));
        reported.next_slot = Some(slot + reported.spacing);
        (slot > now).then_some(slot)
    }
}

/// A limiter for `requests` calls every `per_ms` milliseconds, spread
/// evenly (burst of one) so the API never sees a spike, with its spacing.
fn limiter(rate: &RateLimit) -> Option<(Limiter, Duration)> {
    let requests = NonZeroU32::new(rate.requests)?;
    let period = (Duration::from_millis(u64::from(rate.per_ms.max(1))) / requests.get())
        .max(Duration::from_micros(1));
    let quota = governor::Quota::with_period(period)?.allow_burst(NonZeroU32::MIN);
    Some((governor::RateLimiter::direct(quota), period))
}

/// How many calls may be in flight to a destination at once.
pub fn concurrency(rate: Option<&RateLimit>) -> usize {
    const MAX_WRITERS: u32 = 16;
    rate.map_or(1, |r| r.concurrency.clamp(1, MAX_WRITERS) as usize)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(requests: u32, per_ms: u32) -> RateLimit {
        RateLimit {
            requests,
            per_ms,
            concurrency: 1,
        }
    }

    #[test]
    fn a_limiter_admits_one_call_at_a_time() {
        let (l, spacing) = limiter(&rate(10, 1000)).unwrap();
        assert_eq!(spacing, Duration::from_millis(100));
        // The first call always goes at once on a fresh limiter ...
        assert!(l.check().is_ok());
        // ... and the next call in the same instant has to wait.
        assert!(l.check().is_err());
    }

    #[tokio::test]
    async fn every_request_through_the_gate_is_counted_and_paced() {
        // 100 a second: one every 10 ms; the first goes at once.
        let pacer = Arc::new(Pacer::new(Some(&rate(100, 1000)), 1, MAX).unwrap());
        let gate = pacer.request_gate();
        let start = std::time::Instant::now();
        for _ in 0..4 {
            gate().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(25));
        assert_eq!(pacer.take_request_counts(), (4, 3));
        assert_eq!(pacer.take_request_counts(), (0, 0));
    }

    #[test]
    fn no_requests_means_no_limiter() {
        assert!(limiter(&rate(0, 1000)).is_none());
        assert_eq!(concurrency(None), 1);
        let mut r = rate(1, 1);
        r.concurrency = 500;
        assert_eq!(concurrency(Some(&r)), 16);
    }

    const MAX: Duration = Duration::from_secs(900);

    #[test]
    fn a_declared_rate_slower_than_max_wait_is_refused() {
        let err = Pacer::new(Some(&rate(1, u32::MAX)), 1, MAX).err().unwrap();
        assert!(err.contains("longest wait"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reported_window_never_holds_a_call_past_max_wait() {
        // report-quota(0, 1, u32::MAX): no calls left in a 49-day window.
        let pacer = Pacer::new(None, 1, Duration::from_secs(2)).unwrap();
        pacer.observe(hint(0, 1, u32::MAX));
        let start = Instant::now();
        assert!(pacer.ready().await);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    fn hint(remaining: u32, limit: u32, window_ms: u32) -> QuotaHint {
        QuotaHint {
            remaining,
            limit,
            window_ms,
        }
    }

    // Only tokio's paused clock runs in these tests: governor keeps real
    // time, so they leave the declared limit out.

    #[tokio::test(start_paused = true)]
    async fn the_apis_limit_becomes_the_pace_when_it_is_slower() {
        // The API allows 5 calls a second: one every 200 ms.
        let pacer = Pacer::new(None, 1, MAX).unwrap();
        pacer.observe(hint(4, 5, 1000));
        let start = Instant::now();
        assert!(!pacer.ready().await, "the first call goes at once");
        assert!(pacer.ready().await);
        assert!(pacer.ready().await);
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        // The report lapses with its window: no more waiting.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!pacer.ready().await);
        assert!(!pacer.ready().await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_quota_waits_for_the_oldest_call_to_leave_the_window() {
        let pacer = Pacer::new(None, 1, MAX).unwrap();
        let start = Instant::now();
        // Five calls: three at once, then at 200 and 400 ms; the fifth
        // leaves none. The first of them leaves the window at 1000 ms.
        for (at, remaining) in [(0, 4), (0, 3), (0, 2), (200, 1), (400, 0)] {
            tokio::time::sleep_until(start + Duration::from_millis(at)).await;
            pacer.observe(hint(remaining, 5, 1000));
        }
        assert!(pacer.ready().await);
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quota_others_used_up_waits_the_whole_window() {
        // One call of ours, yet the API counts all five: someone else
        // shares the quota, and when their calls leave is unknown.
        let pacer = Pacer::new(None, 1, MAX).unwrap();
        pacer.observe(hint(0, 5, 3000));
        let start = Instant::now();
        assert!(pacer.ready().await);
        assert_eq!(start.elapsed(), Duration::from_millis(3000));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_writers_wait_when_fewer_calls_are_left_than_writers() {
        // Four writers, one call left of 5 per second, our calls ended at
        // 0, 100, 200 and 300 ms: three more slots free at 1000, 1100 and
        // 1200 ms; the next call waits for the third.
        let pacer = Pacer::new(None, 4, MAX).unwrap();
        let start = Instant::now();
        for (at, remaining) in [(0, 4), (100, 3), (200, 2), (300, 1)] {
            tokio::time::sleep_until(start + Duration::from_millis(at)).await;
            pacer.observe(hint(remaining, 5, 1000));
        }
        assert!(pacer.ready().await);
        assert_eq!(start.elapsed(), Duration::from_millis(1200));
    }

    /// A shared budget store that records what it is told; `reachable`
    /// false makes it fail like a Redis that does not answer.
    struct Recorder {
        reachable: bool,
        signals: Mutex<Vec<Signal>>,
    }

    impl SharedBudgets for Recorder {
        fn reserve<'a>(
            &'a self,
            _: &'a BudgetKey,
            _: Duration,
            _: Duration,
        ) -> crate::budget::BudgetFuture<'a, Reservation> {
            let answer = if self.reachable {
                Ok(Reservation::Wait(Duration::from_millis(40)))
            } else {
                Err("down".to_owned())
            };
            Box::pin(async move { answer })
        }

        fn signal<'a>(
            &'a self,
            _: &'a BudgetKey,
            signal: Signal,
        ) -> crate::budget::BudgetFuture<'a, ()> {
            lock(&self.signals).push(signal);
            let answer = if self.reachable {
                Ok(())
            } else {
                Err("down".to_owned())
            };
            Box::pin(async move { answer })
        }
    }

    fn shared_pacer(reachable: bool) -> (Pacer, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            reachable,
            signals: Mutex::default(),
        });
        let pacer = Pacer::new(None, 1, MAX).unwrap().with_shared(SharedPace {
            budgets: recorder.clone(),
            key: BudgetKey::of("hubspot", &Default::default()),
        });
        (pacer, recorder)
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_shared_budget_requests_wait_for_its_slot_and_reports_go_to_it() {
        let (pacer, recorder) = shared_pacer(true);
        let start = Instant::now();
        pacer.admit_request().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(40),
            "the slot's wait"
        );
        assert_eq!(pacer.take_request_counts(), (1, 1));
        // Used up, at 5 per second: every user holds one spacing.
        pacer.report(hint(0, 5, 1000)).await;
        pacer.throttled(Duration::from_secs(3)).await;
        let pace = Signal::Pace {
            spacing: Duration::from_millis(200),
            lasting: Duration::from_secs(1),
        };
        assert_eq!(
            *lock(&recorder.signals),
            [
                pace,
                Signal::Hold(Duration::from_millis(200)),
                Signal::Hold(Duration::from_secs(3))
            ]
        );
        // The shared budget paces; this run does not hold itself too.
        assert!(!pacer.ready().await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_shared_budget_leaves_the_local_limits_in_charge() {
        let (pacer, _) = shared_pacer(false);
        let start = Instant::now();
        pacer.admit_request().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "no wait on a dead store");
        // The report is taken in locally: someone used the quota up.
        pacer.report(hint(0, 5, 3000)).await;
        assert!(pacer.ready().await);
        assert_eq!(start.elapsed(), Duration::from_millis(3000));
    }

    #[test]
    fn a_generous_quota_report_does_not_slow_the_declared_pace() {
        // Declared 10 a second; the API allows 100 per 10 s with 90 left.
        let pacer = Pacer::new(Some(&rate(10, 1000)), 1, MAX).unwrap();
        pacer.observe(hint(90, 100, 10_000));
        assert!(pacer.reserve_reported_slot(Instant::now()).is_none());
        assert!(pacer.reserve_reported_slot(Instant::now()).is_none());
    }
}
