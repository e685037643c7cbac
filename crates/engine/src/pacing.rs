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
//! budget, so all of its users slow down. Every destination call
//! ([`Pacer::call`]) holds one of the credentials' call leases while it
//! runs, so the declared concurrency caps the calls of all runs together,
//! and a hold longer than a run may wait pauses the call before it sends
//! anything. While the budget's store cannot be reached the local limits
//! and reports act alone.
//!
//! A daily cap (`rate_limit: { daily: N }`) is taken from before each
//! request: from the shared budget's count of the UTC day, or, without a
//! store that answers, from this process's count. A request the day has no
//! room for is refused at the gate, before it is sent (the plugin sees a
//! failed request); the call it belonged to, and every later call, then
//! fails as paused until the next UTC midnight, unless that is within
//! `max_wait`, which the request waits out instead.

use crate::budget::{
    Allowance, BudgetKey, Lease, LeaseRequest, LocalDailyCounts, Reservation, SharedBudgets, Signal,
};
use sluice_runtime::bindings::types::RateLimit;
use sluice_runtime::sandbox::http::RequestGate;
use sluice_runtime::QuotaHint;
use sluice_runtime::{FailureKind, PluginFailure};
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

type Limiter = governor::DefaultDirectRateLimiter;

/// How long a call lease lasts unless renewed: the leases of a process
/// killed mid-call come back within this long.
pub const LEASE_TTL: Duration = Duration::from_secs(20);
/// How often a call under way renews its lease (well within its TTL, so a
/// slow Redis answer does not lose it).
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a call waiting for a lease asks again: the leases are given
/// back by other processes, which cannot wake it.
const LEASE_POLL: Duration = Duration::from_millis(10);
/// How long after the UTC midnight a request held for the new day asks
/// again: the store's clock and ours differ by a little.
const DAY_TURN_MARGIN: Duration = Duration::from_millis(100);

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
    /// The credentials' requests per UTC day, if capped.
    daily: Option<DailyCap>,
    /// When the day's allowance comes back, once it was found used up.
    daily_used_up: Mutex<Option<Instant>>,
}

/// A cap on a destination's requests per UTC day (`rate_limit.daily`).
#[derive(Debug, Clone)]
pub struct DailyCap {
    pub cap: u32,
    /// The destination's name in the project, for messages.
    pub destination: String,
    /// The budget of the destination's credentials: the day's count is
    /// theirs, whichever sync or process spends it.
    pub key: BudgetKey,
}

/// A budget shared beyond this run: its store and the key of the
/// destination's credentials.
pub struct SharedPace {
    pub budgets: Arc<dyn SharedBudgets>,
    pub key: BudgetKey,
    /// The declared concurrency: calls under way at once, all runs of the
    /// credentials together (0: no declared limit, no cap).
    pub concurrency: u32,
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
            daily: None,
            daily_used_up: Mutex::default(),
        })
    }

    /// This pacer, taking every request from `daily` too.
    pub fn with_daily_cap(mut self, daily: DailyCap) -> Pacer {
        self.daily = Some(daily);
        self
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
    /// here and in the shared budget, and take it from the day's
    /// allowance; `Err` with why when the day has no room for it.
    pub async fn admit_request(&self) -> Result<(), String> {
        let mut paced = self.spend_daily_allowance().await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
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
        Ok(())
    }

    /// Take one request from the day's allowance, if capped; whether it
    /// waited. A day used up waits for the next UTC midnight when that is
    /// within `max_wait`, else the request is refused (and so is every
    /// call until then, see [`Pacer::call`]).
    async fn spend_daily_allowance(&self) -> Result<bool, String> {
        let Some(daily) = &self.daily else {
            return Ok(false);
        };
        if let Some(used_up) = self.daily_used_up() {
            return Err(used_up.to_string());
        }
        let mut waited = false;
        loop {
            match self.take_daily(daily).await {
                Allowance::Taken => return Ok(waited),
                Allowance::UsedUp(resets_in) if !waited && resets_in <= self.max_wait => {
                    tokio::time::sleep(resets_in + DAY_TURN_MARGIN).await;
                    waited = true;
                }
                Allowance::UsedUp(resets_in) => {
                    *lock(&self.daily_used_up) = Some(Instant::now() + resets_in);
                    tracing::warn!(destination = %daily.destination, cap = daily.cap, resets_in = ?resets_in, "the daily cap of the destination's credentials is used up; its runs pause until the next UTC midnight");
                    return Err(self.daily_cap_used_up(daily, resets_in).to_string());
                }
            }
        }
    }

    /// One request from the day's count: the shared one while its store
    /// answers, else this process's.
    async fn take_daily(&self, daily: &DailyCap) -> Allowance {
        if let Some(shared) = &self.shared {
            let answer = shared.budgets.take_daily(&daily.key, daily.cap).await;
            self.shared_reachable
                .store(answer.is_ok(), Ordering::Relaxed);
            if let Ok(allowance) = answer {
                return allowance;
            }
        }
        LocalDailyCounts::of_process().take(&daily.key, daily.cap, std::time::SystemTime::now())
    }

    /// Why nothing may be sent while the day's allowance is known to be
    /// used up (until it comes back).
    fn daily_used_up(&self) -> Option<FailureKind> {
        let daily = self.daily.as_ref()?;
        let resets = (*lock(&self.daily_used_up))?;
        let resets_in = resets.checked_duration_since(Instant::now())?;
        Some(self.daily_cap_used_up(daily, resets_in))
    }

    fn daily_cap_used_up(&self, daily: &DailyCap, resets_in: Duration) -> FailureKind {
        FailureKind::DailyCapUsedUp {
            destination: daily.destination.clone(),
            cap: daily.cap,
            asked_ms: millis(resets_in),
            max_ms: millis(self.max_wait),
            until_unix_ms: to_the_second(crate::retry::unix_ms_after(resets_in)),
        }
    }

    /// Call `what` of `plugin` fails as paused while the day's allowance
    /// is known to be used up.
    fn daily_refusal(&self, plugin: &str, what: &str) -> Option<PluginFailure> {
        Some(PluginFailure {
            plugin: plugin.to_owned(),
            call: what.to_owned(),
            kind: self.daily_used_up()?,
        })
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
    /// shared budget holds its requests that long. Longer than `max_wait`
    /// (a daily allowance used up) it pauses their runs at their next call,
    /// as it pauses this one, without a request spent to learn it.
    pub async fn throttled(&self, asked: Duration) {
        if let Some(shared) = self.sharing() {
            self.send_signal(shared, Signal::Hold(asked)).await;
        }
        self.count_day_used_up_when_told(asked).await;
    }

    /// A Retry-After that reaches the next UTC midnight says the API's
    /// daily allowance is used up: the day's count goes to the cap, so no
    /// run sends another request today (this process's too, without a
    /// store).
    async fn count_day_used_up_when_told(&self, asked: Duration) {
        let Some(daily) = &self.daily else { return };
        let now = std::time::SystemTime::now();
        let (_, day_ends_in) = crate::budget::utc_day(now);
        if asked < day_ends_in {
            return;
        }
        let cap = u64::from(daily.cap);
        let raised = match self.sharing() {
            Some(shared) => shared.budgets.raise_daily(&daily.key, cap).await.is_ok(),
            None => false,
        };
        if !raised {
            LocalDailyCounts::of_process().raise(&daily.key, cap, now);
        }
    }

    /// Run the destination call `what` of `plugin` (`f`) holding one of
    /// the shared budget's call leases, given back when it ends. The wait
    /// for a lease is bounded by `max_wait`: after it the call goes
    /// without one (the API's refusals, bounded too, decide). A budget
    /// held beyond `max_wait` fails the call as paused before it starts.
    /// Without a shared budget, or while its store does not answer, the
    /// call just runs: the run's writers are its concurrency.
    pub async fn call<T>(
        &self,
        plugin: &str,
        what: &str,
        f: impl std::future::Future<Output = Result<T, PluginFailure>>,
    ) -> Result<T, PluginFailure> {
        if let Some(paused) = self.daily_refusal(plugin, what) {
            return Err(paused);
        }
        let lease = self.take_lease(plugin, what).await?;
        let outcome = f.await;
        if let Some(lease) = lease {
            lease.give_back().await;
        }
        // A call that failed because the day had no room for one of its
        // requests pauses; what the plugin made of the refusal is beside
        // the point.
        outcome.map_err(|failure| self.daily_refusal(plugin, what).unwrap_or(failure))
    }

    /// A lease for one call, when the budget caps calls and answers.
    async fn take_lease(
        &self,
        plugin: &str,
        what: &str,
    ) -> Result<Option<CallLease>, PluginFailure> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let holder = lease_holder();
        let deadline = Instant::now() + self.max_wait;
        loop {
            let request = LeaseRequest {
                holder: &holder,
                limit: shared.concurrency,
                ttl: LEASE_TTL,
                max_wait: self.max_wait,
            };
            let answer = shared.budgets.acquire(&shared.key, request).await;
            self.shared_reachable
                .store(answer.is_ok(), Ordering::Relaxed);
            let now = Instant::now();
            match answer {
                Ok(Lease::Taken) if shared.concurrency == 0 => return Ok(None),
                Ok(Lease::Taken) => return Ok(Some(CallLease::renewed(shared, holder))),
                Ok(Lease::Held(until)) => {
                    return Err(crate::retry::paused(plugin, what, until, self.max_wait))
                }
                Ok(Lease::Full(_)) if now < deadline => {
                    tokio::time::sleep(LEASE_POLL.min(deadline - now)).await;
                }
                Ok(Lease::Full(_)) => {
                    tracing::warn!(budget = shared.key.as_str(), limit = shared.concurrency, waited = ?self.max_wait, "every shared call lease stayed taken for the longest wait; the call goes without one");
                    return Ok(None);
                }
                // The store's own warning says why; the writers cap alone.
                Err(_) => return Ok(None),
            }
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

/// One call's lease in a shared budget, renewed in the background while
/// the call runs; given back by [`CallLease::give_back`], or when dropped
/// (a call cancelled) by a task of its own.
struct CallLease {
    budgets: Arc<dyn SharedBudgets>,
    key: BudgetKey,
    holder: String,
    renewing: tokio::task::JoinHandle<()>,
    given_back: bool,
}

impl CallLease {
    fn renewed(shared: &SharedPace, holder: String) -> CallLease {
        let (budgets, key, name) = (shared.budgets.clone(), shared.key.clone(), holder.clone());
        let renewing = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_RENEW_EVERY).await;
                match budgets.renew(&key, &name, LEASE_TTL).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(budget = key.as_str(), "a call lease expired before it was renewed (the process stalled); the call goes on without it");
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        CallLease {
            budgets: shared.budgets.clone(),
            key: shared.key.clone(),
            holder,
            renewing,
            given_back: false,
        }
    }

    async fn give_back(mut self) {
        self.renewing.abort();
        self.given_back = true;
        // A store that does not answer: the lease expires on its own.
        let _ = self.budgets.release(&self.key, &self.holder).await;
    }
}

impl Drop for CallLease {
    fn drop(&mut self) {
        self.renewing.abort();
        if self.given_back {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (budgets, key, holder) =
                (self.budgets.clone(), self.key.clone(), self.holder.clone());
            runtime.spawn(async move {
                let _ = budgets.release(&key, &holder).await;
            });
        }
    }
}

/// A lease holder's name, unique across processes and hosts: a random
/// process id and a counter.
fn lease_holder() -> String {
    static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(rand::random);
    format!("{process:016x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
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

/// Milliseconds since the epoch rounded to the nearest second: the day
/// turns at a whole second (midnight), and the store's clock and this
/// host's differ by a few milliseconds, which the message need not show.
fn to_the_second(unix_ms: u128) -> u64 {
    u64::try_from(unix_ms.saturating_add(500) / 1000 * 1000).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
            gate().await.unwrap();
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
    /// false makes it fail like a Redis that does not answer. Its lease
    /// answers come from `leases`, then `otherwise`.
    struct Recorder {
        reachable: bool,
        signals: Mutex<Vec<Signal>>,
        leases: Mutex<VecDeque<Lease>>,
        otherwise: Lease,
        /// Holders asked for, and given back.
        acquired: Mutex<Vec<String>>,
        released: Mutex<Vec<String>>,
        /// The answers to `take_daily` (then: taken), and the raises asked.
        days: Mutex<VecDeque<Allowance>>,
        raised: Mutex<Vec<u64>>,
    }

    impl Recorder {
        fn answer<T: Send + 'static>(&self, value: T) -> crate::budget::BudgetFuture<'static, T> {
            let answer = if self.reachable {
                Ok(value)
            } else {
                Err("down".to_owned())
            };
            Box::pin(async move { answer })
        }
    }

    impl SharedBudgets for Recorder {
        fn reserve<'a>(
            &'a self,
            _: &'a BudgetKey,
            _: Duration,
            _: Duration,
        ) -> crate::budget::BudgetFuture<'a, Reservation> {
            self.answer(Reservation::Wait(Duration::from_millis(40)))
        }

        fn signal<'a>(
            &'a self,
            _: &'a BudgetKey,
            signal: Signal,
        ) -> crate::budget::BudgetFuture<'a, ()> {
            lock(&self.signals).push(signal);
            self.answer(())
        }

        fn acquire<'a>(
            &'a self,
            _: &'a BudgetKey,
            request: LeaseRequest<'a>,
        ) -> crate::budget::BudgetFuture<'a, Lease> {
            lock(&self.acquired).push(request.holder.to_owned());
            let lease = lock(&self.leases).pop_front().unwrap_or(self.otherwise);
            self.answer(lease)
        }

        fn renew<'a>(
            &'a self,
            _: &'a BudgetKey,
            _: &'a str,
            _: Duration,
        ) -> crate::budget::BudgetFuture<'a, bool> {
            self.answer(true)
        }

        fn release<'a>(
            &'a self,
            _: &'a BudgetKey,
            holder: &'a str,
        ) -> crate::budget::BudgetFuture<'a, ()> {
            lock(&self.released).push(holder.to_owned());
            self.answer(())
        }

        fn take_daily<'a>(
            &'a self,
            _: &'a BudgetKey,
            _: u32,
        ) -> crate::budget::BudgetFuture<'a, Allowance> {
            let allowance = lock(&self.days).pop_front().unwrap_or(Allowance::Taken);
            self.answer(allowance)
        }

        fn raise_daily<'a>(
            &'a self,
            _: &'a BudgetKey,
            used: u64,
        ) -> crate::budget::BudgetFuture<'a, ()> {
            lock(&self.raised).push(used);
            self.answer(())
        }
    }

    fn recorder(reachable: bool, leases: &[Lease], otherwise: Lease) -> Arc<Recorder> {
        Arc::new(Recorder {
            reachable,
            signals: Mutex::default(),
            leases: Mutex::new(leases.iter().copied().collect()),
            otherwise,
            acquired: Mutex::default(),
            released: Mutex::default(),
            days: Mutex::default(),
            raised: Mutex::default(),
        })
    }

    fn pacer_sharing(recorder: &Arc<Recorder>, max_wait: Duration) -> Pacer {
        Pacer::new(None, 1, max_wait)
            .unwrap()
            .with_shared(SharedPace {
                budgets: recorder.clone(),
                key: BudgetKey::of("hubspot", &Default::default()),
                concurrency: 2,
            })
    }

    fn shared_pacer(reachable: bool) -> (Pacer, Arc<Recorder>) {
        let recorder = recorder(reachable, &[], Lease::Taken);
        (pacer_sharing(&recorder, MAX), recorder)
    }

    /// A destination call that records that it ran.
    async fn a_call(ran: &AtomicBool) -> Result<u32, PluginFailure> {
        ran.store(true, Ordering::Relaxed);
        Ok(7)
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_a_shared_lease_and_gives_it_back() {
        let full = Lease::Full(Duration::from_secs(20));
        let recorder = recorder(true, &[full, full], Lease::Taken);
        let pacer = pacer_sharing(&recorder, MAX);
        let ran = AtomicBool::new(false);
        let start = Instant::now();
        assert_eq!(
            pacer.call("hubspot", "write", a_call(&ran)).await.unwrap(),
            7
        );
        assert!(ran.load(Ordering::Relaxed));
        // Asked three times, one poll apart, then given back by its holder.
        assert_eq!(start.elapsed(), 2 * LEASE_POLL);
        let acquired = lock(&recorder.acquired).clone();
        assert_eq!(acquired.len(), 3);
        assert!(acquired.iter().all(|h| *h == acquired[0]), "{acquired:?}");
        assert_eq!(*lock(&recorder.released), [acquired[0].clone()]);
        // The next call is another holder.
        pacer.call("hubspot", "write", a_call(&ran)).await.unwrap();
        let released = lock(&recorder.released).clone();
        assert_eq!(released.len(), 2);
        assert_ne!(released[0], released[1]);
    }

    #[tokio::test(start_paused = true)]
    async fn leases_that_stay_taken_hold_a_call_at_most_max_wait() {
        let recorder = recorder(true, &[], Lease::Full(Duration::from_secs(20)));
        let pacer = pacer_sharing(&recorder, Duration::from_secs(2));
        let ran = AtomicBool::new(false);
        let start = Instant::now();
        assert_eq!(
            pacer.call("hubspot", "write", a_call(&ran)).await.unwrap(),
            7
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(lock(&recorder.released).is_empty(), "no lease was taken");
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_held_beyond_max_wait_pauses_the_call_before_it_sends() {
        let hour = Duration::from_secs(3600);
        let recorder = recorder(true, &[Lease::Held(hour)], Lease::Taken);
        let pacer = pacer_sharing(&recorder, Duration::from_secs(60));
        let ran = AtomicBool::new(false);
        let failure = pacer
            .call("hubspot", "write", a_call(&ran))
            .await
            .unwrap_err();
        assert!(!ran.load(Ordering::Relaxed), "nothing sent");
        assert!(
            matches!(
                failure.kind,
                sluice_runtime::FailureKind::Paused {
                    asked_ms: 3_600_000,
                    max_ms: 60_000,
                    ..
                }
            ),
            "{failure}"
        );
        // The API's "used up for an hour" reaches the budget whole, not cut
        // to this run's longest wait.
        pacer.throttled(hour).await;
        assert_eq!(*lock(&recorder.signals), [Signal::Hold(hour)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_store_leaves_calls_to_the_writers_cap() {
        let recorder = recorder(false, &[], Lease::Full(Duration::from_secs(20)));
        let pacer = pacer_sharing(&recorder, MAX);
        let ran = AtomicBool::new(false);
        let start = Instant::now();
        assert_eq!(
            pacer.call("hubspot", "write", a_call(&ran)).await.unwrap(),
            7
        );
        assert_eq!(start.elapsed(), Duration::ZERO, "no wait on a dead store");
        assert_eq!(lock(&recorder.acquired).len(), 1, "asked once");
        assert!(lock(&recorder.released).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_shared_budget_requests_wait_for_its_slot_and_reports_go_to_it() {
        let (pacer, recorder) = shared_pacer(true);
        let start = Instant::now();
        pacer.admit_request().await.unwrap();
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
        pacer.admit_request().await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "no wait on a dead store");
        // The report is taken in locally: someone used the quota up.
        pacer.report(hint(0, 5, 3000)).await;
        assert!(pacer.ready().await);
        assert_eq!(start.elapsed(), Duration::from_millis(3000));
    }

    fn daily_cap(cap: u32, token: &str) -> DailyCap {
        let config = [(
            "token".to_owned(),
            sluice_config::ConfigValue::String(sluice_config::Str::plain(token)),
        )];
        DailyCap {
            cap,
            destination: "crm".into(),
            key: BudgetKey::of("hubspot", &config.into_iter().collect()),
        }
    }

    /// A destination call that sends `requests` HTTP requests through
    /// `gate`, failing as a plugin would when one is refused.
    async fn sending(gate: &RequestGate, requests: usize) -> Result<u32, PluginFailure> {
        for _ in 0..requests {
            gate().await.map_err(|why| PluginFailure {
                plugin: "hubspot".into(),
                call: "write".into(),
                kind: FailureKind::Plugin(sluice_runtime::PluginError::Retryable(why)),
            })?;
        }
        Ok(7)
    }

    #[tokio::test(start_paused = true)]
    async fn a_used_up_day_refuses_the_request_and_pauses_its_call_and_every_later_one() {
        let hour = Duration::from_secs(3600);
        let recorder = recorder(true, &[], Lease::Taken);
        lock(&recorder.days).extend([Allowance::Taken, Allowance::UsedUp(hour)]);
        let pacer = Arc::new(
            pacer_sharing(&recorder, Duration::from_secs(60)).with_daily_cap(daily_cap(1, "a")),
        );
        let gate = pacer.request_gate();
        let failure = pacer
            .call("hubspot", "write", sending(&gate, 2))
            .await
            .unwrap_err();
        let message = failure.to_string();
        assert!(
            matches!(
                failure.kind,
                FailureKind::DailyCapUsedUp {
                    cap: 1,
                    asked_ms: 3_600_000,
                    max_ms: 60_000,
                    ..
                }
            ),
            "{message}"
        );
        for part in [
            "destination `crm`",
            "daily cap of 1 requests",
            "resets at",
            "paused until",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
        assert_eq!(pacer.take_request_counts().0, 1, "one request went");
        // The next call fails before it starts: nothing asked of the store.
        let ran = AtomicBool::new(false);
        let again = pacer.call("hubspot", "write", a_call(&ran)).await;
        assert!(matches!(
            again,
            Err(PluginFailure {
                kind: FailureKind::DailyCapUsedUp { .. },
                ..
            })
        ));
        assert!(!ran.load(Ordering::Relaxed));
        assert_eq!(lock(&recorder.acquired).len(), 1, "no lease asked for");
        assert!(gate().await.is_err(), "nor a request");
    }

    #[tokio::test(start_paused = true)]
    async fn a_day_that_turns_within_max_wait_is_waited_out() {
        let recorder = recorder(true, &[], Lease::Taken);
        lock(&recorder.days).push_back(Allowance::UsedUp(Duration::from_secs(2)));
        let pacer =
            pacer_sharing(&recorder, Duration::from_secs(60)).with_daily_cap(daily_cap(1, "b"));
        let start = Instant::now();
        pacer.admit_request().await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(2) + DAY_TURN_MARGIN + Duration::from_millis(40)
        );
        assert_eq!(pacer.take_request_counts(), (1, 1));
    }

    #[tokio::test]
    async fn without_a_store_the_daily_cap_is_counted_in_the_process() {
        // Unique credentials: the process's counts are shared by its tests.
        let token = format!("local-{}", rand::random::<u64>());
        let pacer = Pacer::new(None, 1, Duration::from_millis(1))
            .unwrap()
            .with_daily_cap(daily_cap(2, &token));
        pacer.admit_request().await.unwrap();
        pacer.admit_request().await.unwrap();
        let refused = pacer.admit_request().await.unwrap_err();
        assert!(refused.contains("daily cap of 2 requests"), "{refused}");
        // Another run of the process with the same credentials shares it.
        let other = Pacer::new(None, 1, Duration::from_millis(1))
            .unwrap()
            .with_daily_cap(daily_cap(2, &token));
        assert!(other.admit_request().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_reaching_the_next_day_counts_the_day_as_used_up() {
        let recorder = recorder(true, &[], Lease::Taken);
        let pacer = pacer_sharing(&recorder, MAX).with_daily_cap(daily_cap(40, "c"));
        // A minute's Retry-After says nothing about the day.
        pacer.throttled(Duration::from_secs(60)).await;
        pacer.throttled(crate::budget::DAY).await;
        assert_eq!(*lock(&recorder.raised), [40]);
        // Without a store, this process's count takes it.
        let token = format!("local-{}", rand::random::<u64>());
        let alone = Pacer::new(None, 1, Duration::from_millis(1))
            .unwrap()
            .with_daily_cap(daily_cap(40, &token));
        alone.admit_request().await.unwrap();
        alone.throttled(crate::budget::DAY).await;
        assert!(alone.admit_request().await.is_err());
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
