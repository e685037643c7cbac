//! Rate budgets shared beyond one run: every run, in every process, that
//! writes with the same credentials (one HubSpot portal, one Salesforce
//! org) draws from one budget kept in a store they all reach
//! (`sluice worker --rate-budgets`, crates/server/src/budgets.rs).
//!
//! What is shared, per [`BudgetKey`]:
//!
//! - **the request rate**: the [`Pacer`] reserves a slot for each HTTP
//!   request under it after the local limiter admitted the request, one
//!   slot per declared spacing for all users together;
//! - **the calls in flight**: each destination call (discover, open
//!   writer, write, lookup) holds one of the declared `concurrency` leases
//!   while it runs, so all runs together never have more calls under way
//!   than one run may. A lease expires unless renewed, so the leases of a
//!   process that died come back within [`crate::pacing::LEASE_TTL`];
//! - **what the API said**: its reported quota (a slower pace, a window
//!   used up) and its Retry-After hold every user, not only the run that
//!   was told. A hold longer than a run may wait (a daily allowance used
//!   up, "retry in an hour") pauses every run of the budget at its next
//!   call until it ends, without a request spent to find out.
//!
//! - **the day's count**: with a daily cap (`rate_limit: { daily: N }` in
//!   sluice.yaml) every HTTP request takes one from the credentials'
//!   allowance of the current UTC day, counted by the store on its own
//!   clock; once N are taken no run sends another before the next UTC
//!   midnight, and a run that may not wait that long pauses, naming the
//!   cap and when it resets. The API's word raises the count, never lowers
//!   it: a refusal whose Retry-After reaches the next midnight counts the
//!   day as used up ([`SharedBudgets::raise_daily`]).
//!
//! The contract declares no daily cap (`rate-limit` has requests, a window
//! and concurrency) and `report-quota` carries no daily figure (the
//! plugins do not pass the daily headers up), so the cap is the project's
//! and the API's own count reaches the budget only through its refusals.
//!
//! The engine only knows the [`SharedBudgets`] trait. When the store
//! cannot be reached the pacer keeps the local limits alone (the run's own
//! rate, its writers as its concurrency).
//!
//! [`Pacer`]: crate::pacing::Pacer

use sha2::{Digest, Sha256};
use sluice_config::ConfigValue;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// What a shared budget's store answers: a value, or why it could not be
/// reached (the caller falls back to its local limits).
pub type BudgetFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// A store of rate budgets shared by processes.
pub trait SharedBudgets: Send + Sync {
    /// Reserves the next request slot of `key`'s budget, one every
    /// `spacing` (or slower, when the API asked for slower), and answers
    /// how long to wait until it. A slot further than `max_wait` away is
    /// not reserved: the answer is then [`Reservation::TooFar`].
    fn reserve<'a>(
        &'a self,
        key: &'a BudgetKey,
        spacing: Duration,
        max_wait: Duration,
    ) -> BudgetFuture<'a, Reservation>;

    /// Tells every user of `key`'s budget what the API said.
    fn signal<'a>(&'a self, key: &'a BudgetKey, signal: Signal) -> BudgetFuture<'a, ()>;

    /// Takes one of `key`'s `request.limit` call leases for
    /// `request.holder` (a name no other lease uses), expiring
    /// `request.ttl` from now unless renewed; expired leases are reclaimed
    /// first. A hold further than `request.max_wait` away is answered
    /// before anything else ([`Lease::Held`]).
    fn acquire<'a>(
        &'a self,
        key: &'a BudgetKey,
        request: LeaseRequest<'a>,
    ) -> BudgetFuture<'a, Lease>;

    /// Moves `holder`'s lease expiry to `ttl` from now; false when it had
    /// expired (and was reclaimed) already.
    fn renew<'a>(
        &'a self,
        key: &'a BudgetKey,
        holder: &'a str,
        ttl: Duration,
    ) -> BudgetFuture<'a, bool>;

    /// Gives `holder`'s lease back (nothing if it has none).
    fn release<'a>(&'a self, key: &'a BudgetKey, holder: &'a str) -> BudgetFuture<'a, ()>;

    /// Takes one request from `key`'s allowance of the current UTC day (on
    /// the store's clock): at most `cap` a day, all users together.
    fn take_daily<'a>(&'a self, key: &'a BudgetKey, cap: u32) -> BudgetFuture<'a, Allowance>;

    /// Raises `key`'s count of the current UTC day to `used`, what the API
    /// says was spent; a higher count stays (Sluice's own count is never
    /// lowered).
    fn raise_daily<'a>(&'a self, key: &'a BudgetKey, used: u64) -> BudgetFuture<'a, ()>;
}

/// What a daily cap counts over: one UTC day. Unix time has no leap
/// seconds, so day `n` starts at `n * 86 400` s, at midnight UTC.
pub const DAY: Duration = Duration::from_secs(86_400);

/// The answer to [`SharedBudgets::take_daily`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// One request of the day's allowance is the caller's.
    Taken,
    /// The day's allowance is used up; it comes back in this long (at the
    /// next UTC midnight).
    UsedUp(Duration),
}

/// The day's counts of one process, for when no shared store answers (the
/// CLI, or Redis down): the same cap, kept per process.
#[derive(Debug, Default)]
pub struct LocalDailyCounts {
    /// Per budget: the UTC day counted and the requests taken in it.
    counts: Mutex<HashMap<BudgetKey, (u64, u64)>>,
}

impl LocalDailyCounts {
    /// The counts of this process, shared by all of its runs.
    pub fn of_process() -> &'static LocalDailyCounts {
        static COUNTS: OnceLock<LocalDailyCounts> = OnceLock::new();
        COUNTS.get_or_init(LocalDailyCounts::default)
    }

    /// [`SharedBudgets::take_daily`] at `now`, in this process.
    pub fn take(&self, key: &BudgetKey, cap: u32, now: SystemTime) -> Allowance {
        let (day, resets_in) = utc_day(now);
        let mut counts = lock(&self.counts);
        let used = today(&mut counts, key, day);
        if *used >= u64::from(cap) {
            return Allowance::UsedUp(resets_in);
        }
        *used += 1;
        Allowance::Taken
    }

    /// [`SharedBudgets::raise_daily`] at `now`, in this process.
    pub fn raise(&self, key: &BudgetKey, used: u64, now: SystemTime) {
        let (day, _) = utc_day(now);
        let mut counts = lock(&self.counts);
        let count = today(&mut counts, key, day);
        *count = (*count).max(used);
    }
}

/// `key`'s count of `day`; a count of an earlier day starts over.
fn today<'a>(
    counts: &'a mut HashMap<BudgetKey, (u64, u64)>,
    key: &BudgetKey,
    day: u64,
) -> &'a mut u64 {
    let entry = counts.entry(key.clone()).or_insert((day, 0));
    if entry.0 != day {
        *entry = (day, 0);
    }
    &mut entry.1
}

/// The UTC day of `now` (days since the epoch) and how long until it ends.
pub fn utc_day(now: SystemTime) -> (u64, Duration) {
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let day = since_epoch.as_secs() / DAY.as_secs();
    let ends = Duration::from_secs((day + 1) * DAY.as_secs());
    (day, ends.saturating_sub(since_epoch))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`SharedBudgets::acquire`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest<'a> {
    pub holder: &'a str,
    /// Leases at once for all holders (0: no cap).
    pub limit: u32,
    pub ttl: Duration,
    /// The longest a run may wait: a hold beyond it is answered.
    pub max_wait: Duration,
}

/// The answer to [`SharedBudgets::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The lease is the holder's.
    Taken,
    /// Every lease is taken; the first of them expires in this long (they
    /// are usually given back sooner).
    Full(Duration),
    /// The budget is held this long, beyond the longest wait (the API said
    /// its allowance is used up): no lease taken.
    Held(Duration),
}

/// The answer to [`SharedBudgets::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A slot is ours; send after waiting this long.
    Wait(Duration),
    /// The next free slot is this far away, beyond the longest wait.
    TooFar(Duration),
}

/// What the API said about the budget, for every user of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// No request for this long (a Retry-After, a quota used up). Longer
    /// than a run may wait, it pauses every run of the budget.
    Hold(Duration),
    /// The API's own pace (its reported limit spread over its window),
    /// slower than the declared one, holding for `lasting` (its window).
    Pace {
        spacing: Duration,
        lasting: Duration,
    },
}

/// The budget one set of credentials draws from: the destination plugin's
/// name and a digest of its credential identity. The digest is SHA-256,
/// so the key names the account without revealing the secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetKey(String);

/// The config keys that say which account a destination writes as and
/// where: the credentials (and where they are valid), not what is written
/// (`object_type`, batch sizes, timeouts), so syncs writing different
/// objects with the same credentials share one budget.
pub const CREDENTIAL_KEYS: [&str; 16] = [
    "base_url",
    "url",
    "login_url",
    "instance_url",
    "host",
    "port",
    "account",
    "token",
    "api_key",
    "access_token",
    "auth",
    "client_id",
    "username",
    "user",
    "workspace",
    "project",
];

impl BudgetKey {
    /// The budget of a destination configured with `config`, whose plugin
    /// names itself `plugin`: the config entries of [`CREDENTIAL_KEYS`] and
    /// every secret value, digested.
    pub fn of(plugin: &str, config: &BTreeMap<String, ConfigValue>) -> BudgetKey {
        let mut hasher = Sha256::new();
        for (key, value) in config {
            if CREDENTIAL_KEYS.contains(&key.as_str()) || value.contains_secret() {
                hasher.update(key.as_bytes());
                hasher.update([0]);
                hasher.update(canonical(value).as_bytes());
                hasher.update([0]);
            }
        }
        let digest = hex::encode(&hasher.finalize()[..16]);
        BudgetKey(format!("{plugin}:{digest}"))
    }

    /// `plugin:digest`, the name the store keeps the budget under.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The value as the plugin receives it (secrets included: it is digested,
/// never kept).
fn canonical(value: &ConfigValue) -> String {
    value.to_plugin_json().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::Str;

    fn destination(entries: &[(&str, ConfigValue)]) -> BTreeMap<String, ConfigValue> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn s(text: &str) -> ConfigValue {
        ConfigValue::String(Str::plain(text))
    }

    #[test]
    fn syncs_writing_other_objects_with_one_token_share_a_budget() {
        let contacts = destination(&[("token", s("pat-1")), ("object_type", s("contacts"))]);
        let companies = destination(&[("token", s("pat-1")), ("object_type", s("companies"))]);
        let other_portal = destination(&[("token", s("pat-2")), ("object_type", s("contacts"))]);
        let a = BudgetKey::of("hubspot", &contacts);
        assert_eq!(a, BudgetKey::of("hubspot", &companies));
        assert_ne!(a, BudgetKey::of("hubspot", &other_portal));
        assert_ne!(a, BudgetKey::of("salesforce", &contacts));
    }

    #[test]
    fn the_local_daily_count_stops_at_the_cap_until_the_next_utc_day() {
        let counts = LocalDailyCounts::default();
        let key = BudgetKey::of("hubspot", &destination(&[("token", s("pat-1"))]));
        let other = BudgetKey::of("hubspot", &destination(&[("token", s("pat-2"))]));
        // 2026-12-07T23:00:00Z: an hour before the day ends.
        let late = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_684_400);
        assert_eq!(counts.take(&key, 2, late), Allowance::Taken);
        assert_eq!(counts.take(&key, 2, late), Allowance::Taken);
        let hour = Duration::from_secs(3600);
        assert_eq!(counts.take(&key, 2, late), Allowance::UsedUp(hour));
        // Other credentials count apart.
        assert_eq!(counts.take(&other, 2, late), Allowance::Taken);
        // The next UTC day starts over.
        let next_day = late + hour;
        assert_eq!(counts.take(&key, 2, next_day), Allowance::Taken);
        // The API's count raises ours, and never lowers it.
        counts.raise(&key, 5, next_day);
        assert_eq!(counts.take(&key, 6, next_day), Allowance::Taken);
        counts.raise(&key, 1, next_day);
        assert_eq!(
            counts.take(&key, 6, next_day),
            Allowance::UsedUp(DAY),
            "6 taken, the raise to 1 ignored"
        );
    }

    #[test]
    fn the_key_never_holds_the_secret() {
        let secret = "pat-na1-0123456789abcdef";
        let cfg = destination(&[("private", ConfigValue::String(Str::secret(secret)))]);
        let key = BudgetKey::of("hubspot", &cfg);
        assert!(!key.as_str().contains(secret), "{key:?}");
        assert!(key.as_str().starts_with("hubspot:"));
        // A secret under any key is part of the identity.
        let other = destination(&[("private", ConfigValue::String(Str::secret("another")))]);
        assert_ne!(key, BudgetKey::of("hubspot", &other));
    }
}
