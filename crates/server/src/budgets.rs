//! Shared rate budgets in Redis (`sluice worker --rate-budgets redis://…`):
//! the store behind [`sluice_engine::budget::SharedBudgets`], so every
//! worker process and every sync writing with the same credentials draws
//! from one budget.
//!
//! **Algorithm.** GCRA in its scheduling form, one Lua script run
//! atomically by Redis (after redis-cell's `CL.THROTTLE` and Losant's
//! redis-gcra): per budget, the theoretical arrival time `tat` of the next
//! free slot. A request takes the slot `max(now, tat, hold)` and moves
//! `tat` one spacing on, so concurrent requests of any process get
//! successive slots and the API sees them evenly spread (a burst of one).
//! The clock is Redis's own (`TIME`), so workers on hosts whose clocks
//! differ still share one timeline. The API's signals are kept beside it:
//! `hold` (no request before this instant: a Retry-After, a used-up quota)
//! and `pace` (the API's own spacing when slower than the declared one,
//! expiring with the API's window).
//!
//! **Calls in flight.** A sorted set per budget holds the leases of the
//! calls under way, each holder scored by its expiry (Redis time). One
//! script reclaims the expired holders, then adds the caller if fewer than
//! the limit remain (the pattern of Redis's counting semaphores, e.g.
//! redis-semaphore's); another moves a holder's expiry on (the engine
//! renews while its call runs); `ZREM` gives it back. A worker killed
//! mid-call leaves its leases until they expire (`LEASE_TTL` in the
//! engine), then they are reclaimed by the next caller.
//!
//! **Holds beyond a run's wait.** A hold (Retry-After, a daily allowance
//! used up) is kept for its whole length; the lease script answers it
//! first when it is further than the caller's longest wait, so every run
//! of the budget pauses at its next call instead of sending a request to
//! be refused.
//!
//! **The day's count.** With a daily cap, one key per budget and UTC day
//! (`…:daily:DAY`, DAY the days since the epoch on Redis's clock) counts
//! the requests taken. One script reads the clock, names the day's key,
//! refuses when the count is at the cap (answering how long until the next
//! midnight) and otherwise increments it; the key expires when its day
//! ends. Another raises the count to what the API says was used, never
//! lowering it. The day's key is built inside the script from a declared
//! prefix with the budget's hash tag, so it is on the same Redis Cluster
//! slot as the prefix.
//!
//! **Bounded.** Every Redis call has a connection and a response timeout
//! and an outer [`CALL_TIMEOUT`]; a slot further than the caller's longest
//! wait is not reserved.
//!
//! **Redis unreachable.** A call that fails makes the store answer "not
//! reachable" at once for [`DOWN_BACKOFF`] (no request waits on a dead
//! Redis), with one warning logged each time it goes down; the engine's
//! pacer then keeps the destination's declared limit and the API's reports
//! locally, per run, as without shared budgets. Once Redis answers again
//! the shared budget takes over (logged).

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sluice_engine::budget::{
    Allowance, BudgetFuture, BudgetKey, Lease, LeaseRequest, Reservation, SharedBudgets, Signal,
    DAY,
};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest any one call to Redis may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long the store stays "unreachable" after a failed call before it
/// asks Redis again.
pub const DOWN_BACKOFF: Duration = Duration::from_secs(5);
/// Where the budgets' keys live.
pub const KEY_PREFIX: &str = "sluice:budget:";

/// Reserve the next slot. KEYS: tat, hold, pace. ARGV: the declared
/// spacing and the longest wait, in microseconds. Returns {reserved 0|1,
/// wait µs}. Lua numbers are doubles: microseconds since the epoch (~2^51)
/// are exact, and they are stored with `%.0f` so no digit is lost.
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local spacing = tonumber(ARGV[1])
local api = tonumber(redis.call('GET', KEYS[3]) or '0')
if api > spacing then spacing = api end
local slot = now
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > slot then slot = hold end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > slot then slot = tat end
local wait = slot - now
if wait > tonumber(ARGV[2]) then return {0, wait} end
local next_tat = slot + spacing
local ttl_ms = math.floor((next_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl_ms)
return {1, wait}
"#;

/// Hold every request. KEYS: hold. ARGV: how long, µs. A longer hold
/// already in place stays.
const HOLD: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1])
local hold = tonumber(redis.call('GET', KEYS[1]) or '0')
if hold >= untl then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
return 1
"#;

/// Take a call lease. KEYS: leases (sorted set), hold. ARGV: holder,
/// limit (0: none), ttl µs, longest wait µs. Returns {0 taken | 1 full |
/// 2 held, µs}: for full, until the first lease expires; for held, until
/// the hold ends.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold - now > tonumber(ARGV[4]) then return {2, hold - now} end
local limit = tonumber(ARGV[2])
if limit == 0 then return {0, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local ttl = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], math.floor(ttl / 1000) + 1000)
  return {0, 0}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {1, tonumber(first[2]) - now}
"#;

/// Renew a lease. KEYS: leases. ARGV: holder, ttl µs. Returns 1, or 0 when
/// the lease had expired (reclaimed or about to be: not revived, its slot
/// may be someone else's now).
const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + ttl), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.floor(ttl / 1000) + 1000)
return 1
"#;

/// Take one request from the current period's count. KEYS: the count's
/// prefix (the period's number is appended). ARGV: the cap, the period in
/// seconds (a UTC day: periods start at multiples of it since the epoch).
/// Returns {taken 1 | used up 0, µs until the period ends}.
const TAKE_DAILY: &str = r#"
local t = redis.call('TIME')
local secs = tonumber(t[1])
local period = tonumber(ARGV[2])
local n = math.floor(secs / period)
local ends = (n + 1) * period
local left = (ends - secs) * 1000000 - tonumber(t[2])
local key = KEYS[1] .. string.format('%.0f', n)
local used = tonumber(redis.call('GET', key) or '0')
if used >= tonumber(ARGV[1]) then return {0, left} end
redis.call('INCR', key)
redis.call('EXPIREAT', key, string.format('%.0f', ends))
return {1, left}
"#;

/// Raise the current period's count to what the API says was used. KEYS:
/// the count's prefix. ARGV: the count, the period in seconds. A higher
/// count stays.
const RAISE_DAILY: &str = r#"
local t = redis.call('TIME')
local period = tonumber(ARGV[2])
local n = math.floor(tonumber(t[1]) / period)
local key = KEYS[1] .. string.format('%.0f', n)
local used = tonumber(redis.call('GET', key) or '0')
if used >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', key, ARGV[1], 'EXAT', string.format('%.0f', (n + 1) * period))
return 1
"#;

/// The shared budgets of one Redis.
pub struct RedisBudgets {
    manager: ConnectionManager,
    /// Redis I/O runs on the worker's runtime: runs execute on runtimes of
    /// their own that end with them, and the connection's tasks must not.
    runtime: tokio::runtime::Handle,
    reserve: redis::Script,
    hold: redis::Script,
    acquire: redis::Script,
    renew: redis::Script,
    take_daily: redis::Script,
    raise_daily: redis::Script,
    /// Until when Redis counts as unreachable (after a failed call).
    down_until: Mutex<Option<Instant>>,
    /// The Redis address without credentials, for messages.
    shown: String,
}

impl std::fmt::Debug for RedisBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgets")
            .field("redis", &self.shown)
            .finish_non_exhaustive()
    }
}

impl RedisBudgets {
    /// The budgets in the Redis at `url` (`redis://host:port[/db]`). Must be
    /// called on the runtime that outlives the runs (the worker's); does not
    /// connect yet, so a Redis that is down does not stop the worker.
    pub fn open(url: &str) -> anyhow::Result<RedisBudgets> {
        let shown = without_credentials(url);
        let client = redis::Client::open(url.trim())
            .map_err(|e| anyhow::anyhow!("--rate-budgets `{shown}` is not a Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("preparing the Redis connection to `{shown}`: {e}"))?;
        Ok(RedisBudgets {
            manager,
            runtime: tokio::runtime::Handle::current(),
            reserve: redis::Script::new(RESERVE),
            hold: redis::Script::new(HOLD),
            acquire: redis::Script::new(ACQUIRE),
            renew: redis::Script::new(RENEW),
            take_daily: redis::Script::new(TAKE_DAILY),
            raise_daily: redis::Script::new(RAISE_DAILY),
            down_until: Mutex::new(None),
            shown,
        })
    }

    /// Asks Redis once (PING), so the worker says at start whether the
    /// shared budgets are in force or it falls back to local limits.
    pub async fn check(&self) -> Result<(), String> {
        let mut conn = self.manager.clone();
        self.call("PING", async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(|_| ())
    }

    /// [`SharedBudgets::take_daily`] over periods of `period` (a UTC day
    /// but in tests) starting at multiples of it since the epoch.
    async fn take_in_period(
        &self,
        key: &BudgetKey,
        cap: u32,
        period: Duration,
    ) -> Result<Allowance, String> {
        let prefix = daily_prefix(key);
        let script = self.take_daily.clone();
        let mut conn = self.manager.clone();
        let period = period.as_secs().max(1);
        let (taken, left): (i64, i64) = self
            .call("taking a request from the day's count", async move {
                let mut invocation = script.key(prefix);
                invocation.arg(cap).arg(period);
                let answer = invocation.invoke_async(&mut conn).await;
                answer
            })
            .await?;
        Ok(if taken == 1 {
            Allowance::Taken
        } else {
            Allowance::UsedUp(Duration::from_micros(u64::try_from(left).unwrap_or(0)))
        })
    }

    /// Runs `op` on the worker's runtime within [`CALL_TIMEOUT`], unless
    /// Redis is known to be down; tracks whether it is.
    async fn call<T: Send + 'static>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
    ) -> Result<T, String> {
        if let Some(until) = *lock(&self.down_until) {
            if Instant::now() < until {
                return Err(format!("Redis `{}` is unreachable", self.shown));
            }
        }
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(CALL_TIMEOUT, op).await });
        let outcome = match task.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(format!("{what}: {e}")),
            Ok(Err(_)) => Err(format!("{what}: no answer within {CALL_TIMEOUT:?}")),
            Err(e) => Err(format!("{what}: the call's task ended abnormally: {e}")),
        };
        self.note(&outcome);
        outcome
    }

    /// Records whether Redis answered, logging each change.
    fn note<T>(&self, outcome: &Result<T, String>) {
        let mut down = lock(&self.down_until);
        match outcome {
            Ok(_) => {
                if down.take().is_some() {
                    tracing::info!(redis = %self.shown, "shared rate budgets: Redis answers again; the shared budgets are back in force");
                }
            }
            Err(why) => {
                if down.is_none() {
                    tracing::warn!(redis = %self.shown, error = %why, retry_in = ?DOWN_BACKOFF, "shared rate budgets: Redis is unreachable; each run keeps its destination's limits locally until it answers");
                }
                *down = Some(Instant::now() + DOWN_BACKOFF);
            }
        }
    }
}

/// The Redis keys of one budget: the slot clock, the hold and the API's
/// pace. One hash tag, so a Redis Cluster keeps them on one node (a
/// script's keys must share a slot).
fn keys(key: &BudgetKey) -> [String; 3] {
    let base = format!("{KEY_PREFIX}{{{}}}", key.as_str());
    [
        format!("{base}:tat"),
        format!("{base}:hold"),
        format!("{base}:pace"),
    ]
}

/// The prefix of a budget's per-day counts (same hash tag as [`keys`]);
/// the scripts append the day.
fn daily_prefix(key: &BudgetKey) -> String {
    format!("{KEY_PREFIX}{{{}}}:daily:", key.as_str())
}

/// The sorted set of a budget's call leases (same hash tag as [`keys`]).
fn leases_key(key: &BudgetKey) -> String {
    format!("{KEY_PREFIX}{{{}}}:leases", key.as_str())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl SharedBudgets for RedisBudgets {
    fn reserve<'a>(
        &'a self,
        key: &'a BudgetKey,
        spacing: Duration,
        max_wait: Duration,
    ) -> BudgetFuture<'a, Reservation> {
        let [tat, hold, pace] = keys(key);
        let script = self.reserve.clone();
        let mut conn = self.manager.clone();
        let (spacing, max_wait) = (micros(spacing), micros(max_wait));
        Box::pin(async move {
            let (reserved, wait): (i64, i64) = self
                .call("reserving a slot", async move {
                    let mut invocation = script.key(tat);
                    invocation.key(hold).key(pace).arg(spacing).arg(max_wait);
                    let answer = invocation.invoke_async(&mut conn).await;
                    answer
                })
                .await?;
            let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
            Ok(if reserved == 1 {
                Reservation::Wait(wait)
            } else {
                Reservation::TooFar(wait)
            })
        })
    }

    fn signal<'a>(&'a self, key: &'a BudgetKey, signal: Signal) -> BudgetFuture<'a, ()> {
        let [_, hold_key, pace_key] = keys(key);
        let mut conn = self.manager.clone();
        let hold = self.hold.clone();
        Box::pin(async move {
            match signal {
                Signal::Hold(d) => {
                    self.call("holding the budget", async move {
                        let mut invocation = hold.key(hold_key);
                        invocation.arg(micros(d));
                        let answer = invocation.invoke_async::<i64>(&mut conn).await;
                        answer
                    })
                    .await?;
                }
                Signal::Pace { spacing, lasting } => {
                    let ttl_ms = u64::try_from(lasting.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    self.call("setting the API's pace", async move {
                        redis::cmd("SET")
                            .arg(pace_key)
                            .arg(micros(spacing))
                            .arg("PX")
                            .arg(ttl_ms)
                            .query_async::<()>(&mut conn)
                            .await
                    })
                    .await?;
                }
            }
            Ok(())
        })
    }

    fn acquire<'a>(
        &'a self,
        key: &'a BudgetKey,
        request: LeaseRequest<'a>,
    ) -> BudgetFuture<'a, Lease> {
        let [_, hold, _] = keys(key);
        let leases = leases_key(key);
        let script = self.acquire.clone();
        let mut conn = self.manager.clone();
        let holder = request.holder.to_owned();
        let (limit, ttl, max_wait) = (request.limit, micros(request.ttl), micros(request.max_wait));
        Box::pin(async move {
            let (answer, us): (i64, i64) = self
                .call("taking a call lease", async move {
                    let mut invocation = script.key(leases);
                    invocation
                        .key(hold)
                        .arg(holder)
                        .arg(limit)
                        .arg(ttl)
                        .arg(max_wait);
                    let answer = invocation.invoke_async(&mut conn).await;
                    answer
                })
                .await?;
            let after = Duration::from_micros(u64::try_from(us).unwrap_or(0));
            Ok(match answer {
                0 => Lease::Taken,
                1 => Lease::Full(after),
                _ => Lease::Held(after),
            })
        })
    }

    fn renew<'a>(
        &'a self,
        key: &'a BudgetKey,
        holder: &'a str,
        ttl: Duration,
    ) -> BudgetFuture<'a, bool> {
        let leases = leases_key(key);
        let script = self.renew.clone();
        let mut conn = self.manager.clone();
        let holder = holder.to_owned();
        Box::pin(async move {
            let renewed: i64 = self
                .call("renewing a call lease", async move {
                    let mut invocation = script.key(leases);
                    invocation.arg(holder).arg(micros(ttl));
                    let answer = invocation.invoke_async(&mut conn).await;
                    answer
                })
                .await?;
            Ok(renewed == 1)
        })
    }

    fn release<'a>(&'a self, key: &'a BudgetKey, holder: &'a str) -> BudgetFuture<'a, ()> {
        let leases = leases_key(key);
        let mut conn = self.manager.clone();
        let holder = holder.to_owned();
        Box::pin(async move {
            self.call("giving a call lease back", async move {
                redis::cmd("ZREM")
                    .arg(leases)
                    .arg(holder)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
        })
    }

    fn take_daily<'a>(&'a self, key: &'a BudgetKey, cap: u32) -> BudgetFuture<'a, Allowance> {
        Box::pin(self.take_in_period(key, cap, DAY))
    }

    fn raise_daily<'a>(&'a self, key: &'a BudgetKey, used: u64) -> BudgetFuture<'a, ()> {
        let prefix = daily_prefix(key);
        let script = self.raise_daily.clone();
        let mut conn = self.manager.clone();
        Box::pin(async move {
            self.call("raising the day's count", async move {
                let mut invocation = script.key(prefix);
                invocation.arg(used).arg(DAY.as_secs());
                let answer = invocation.invoke_async::<i64>(&mut conn).await;
                answer
            })
            .await
            .map(|_| ())
        })
    }
}

/// `url` with any password (or user) replaced, for logs and errors.
fn without_credentials(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut parsed) => {
            if parsed.password().is_some() || !parsed.username().is_empty() {
                let _ = parsed.set_password(None);
                let _ = parsed.set_username("");
            }
            parsed.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_password_never_reaches_a_message() {
        let shown = without_credentials("redis://user:s3cret@127.0.0.1:6379/2");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("127.0.0.1:6379"), "{shown}");
        assert_eq!(without_credentials("not a url"), "(not a URL)");
    }

    /// A budget no other test (or earlier run) uses.
    fn fresh_key() -> BudgetKey {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let token = format!("test-{}-{nanos}", std::process::id());
        let config = [(
            "token".to_owned(),
            sluice_config::ConfigValue::String(sluice_config::Str::plain(token)),
        )]
        .into_iter()
        .collect();
        BudgetKey::of("budget-test", &config)
    }

    fn wait_of(r: Reservation) -> Duration {
        match r {
            Reservation::Wait(d) => d,
            Reservation::TooFar(d) => panic!("not reserved: {d:?} away"),
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn slots_follow_each_other_one_spacing_apart_in_real_redis() {
        let budgets = RedisBudgets::open("redis://127.0.0.1:6379").unwrap();
        let key = fresh_key();
        let max = Duration::from_secs(10);
        let first = wait_of(budgets.reserve(&key, 100 * MS, max).await.unwrap());
        assert_eq!(first, Duration::ZERO);
        // A second caller (any process) gets the next slot, 100 ms on.
        let second = wait_of(budgets.reserve(&key, 100 * MS, max).await.unwrap());
        assert!(second > 80 * MS && second <= 100 * MS, "{second:?}");
        let third = wait_of(budgets.reserve(&key, 100 * MS, max).await.unwrap());
        assert!(third > 180 * MS && third <= 200 * MS, "{third:?}");
        // A slot beyond the longest wait is not taken.
        let far = budgets.reserve(&key, 100 * MS, 50 * MS).await.unwrap();
        assert!(
            matches!(far, Reservation::TooFar(d) if d > 250 * MS),
            "{far:?}"
        );
        let after = wait_of(budgets.reserve(&key, 100 * MS, max).await.unwrap());
        assert!(
            after > 280 * MS && after <= 300 * MS,
            "the refused slot stayed free: {after:?}"
        );
    }

    #[tokio::test]
    async fn the_apis_signals_hold_and_slow_every_user() {
        let budgets = RedisBudgets::open("redis://127.0.0.1:6379").unwrap();
        let key = fresh_key();
        let max = Duration::from_secs(10);
        // A Retry-After of 2 s seen by one writer holds everyone.
        budgets
            .signal(&key, Signal::Hold(Duration::from_secs(2)))
            .await
            .unwrap();
        // A shorter one does not shorten it.
        budgets.signal(&key, Signal::Hold(100 * MS)).await.unwrap();
        let held = wait_of(budgets.reserve(&key, Duration::ZERO, max).await.unwrap());
        assert!(held > 1900 * MS && held <= 2000 * MS, "{held:?}");

        // The API's pace, slower than the declared one, spaces the slots.
        let key = fresh_key();
        budgets
            .signal(
                &key,
                Signal::Pace {
                    spacing: 500 * MS,
                    lasting: Duration::from_secs(5),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            wait_of(budgets.reserve(&key, 10 * MS, max).await.unwrap()),
            Duration::ZERO
        );
        let next = wait_of(budgets.reserve(&key, 10 * MS, max).await.unwrap());
        assert!(next > 450 * MS && next <= 500 * MS, "{next:?}");
    }

    #[tokio::test]
    async fn a_redis_that_does_not_answer_is_skipped_for_a_while_not_waited_on() {
        // Nothing listens on port 1.
        let budgets = RedisBudgets::open("redis://127.0.0.1:1").unwrap();
        let key = fresh_key();
        let start = Instant::now();
        let first = budgets.reserve(&key, MS, Duration::from_secs(1)).await;
        assert!(first.is_err(), "{first:?}");
        assert!(start.elapsed() <= CALL_TIMEOUT + Duration::from_millis(500));
        // Known down: the next calls answer at once, without Redis.
        let again = Instant::now();
        assert!(budgets.signal(&key, Signal::Hold(MS)).await.is_err());
        assert!(budgets.reserve(&key, MS, MS).await.is_err());
        assert!(budgets.acquire(&key, lease("a", 1, MS)).await.is_err());
        assert!(budgets.release(&key, "a").await.is_err());
        assert!(again.elapsed() < Duration::from_millis(50));
        assert!(budgets.check().await.is_err());
    }

    fn lease(holder: &str, limit: u32, ttl: Duration) -> LeaseRequest<'_> {
        LeaseRequest {
            holder,
            limit,
            ttl,
            max_wait: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn call_leases_cap_the_calls_in_flight_of_every_holder_in_real_redis() {
        let budgets = RedisBudgets::open("redis://127.0.0.1:6379").unwrap();
        let key = fresh_key();
        let ttl = Duration::from_secs(30);
        assert_eq!(
            budgets.acquire(&key, lease("a", 2, ttl)).await,
            Ok(Lease::Taken)
        );
        assert_eq!(
            budgets.acquire(&key, lease("b", 2, ttl)).await,
            Ok(Lease::Taken)
        );
        // Taking one's own lease again does not take a second one.
        assert_eq!(
            budgets.acquire(&key, lease("b", 2, ttl)).await,
            Ok(Lease::Taken)
        );
        let full = budgets.acquire(&key, lease("c", 2, ttl)).await.unwrap();
        assert!(
            matches!(full, Lease::Full(d) if d > Duration::from_secs(29) && d <= ttl),
            "{full:?}"
        );
        budgets.release(&key, "a").await.unwrap();
        assert_eq!(
            budgets.acquire(&key, lease("c", 2, ttl)).await,
            Ok(Lease::Taken)
        );
        assert_eq!(budgets.renew(&key, "b", ttl).await, Ok(true));
        assert_eq!(budgets.renew(&key, "a", ttl).await, Ok(false), "given back");
        // No cap: nothing is counted.
        assert_eq!(
            budgets.acquire(&key, lease("d", 0, ttl)).await,
            Ok(Lease::Taken)
        );
        assert_eq!(
            budgets
                .acquire(&key, lease("e", 2, ttl))
                .await
                .map(|l| matches!(l, Lease::Full(_))),
            Ok(true)
        );
    }

    #[tokio::test]
    async fn the_leases_of_a_holder_that_died_come_back_when_they_expire() {
        let budgets = RedisBudgets::open("redis://127.0.0.1:6379").unwrap();
        let key = fresh_key();
        let short = 200 * MS;
        for holder in ["dead-1", "dead-2"] {
            assert_eq!(
                budgets.acquire(&key, lease(holder, 2, short)).await,
                Ok(Lease::Taken)
            );
        }
        let full = budgets
            .acquire(&key, lease("alive", 2, short))
            .await
            .unwrap();
        assert!(matches!(full, Lease::Full(d) if d <= short), "{full:?}");
        // Nobody renews or gives them back: they expire and are reclaimed.
        tokio::time::sleep(300 * MS).await;
        assert_eq!(budgets.renew(&key, "dead-1", short).await, Ok(false));
        assert_eq!(
            budgets.acquire(&key, lease("alive", 2, short)).await,
            Ok(Lease::Taken)
        );
        assert_eq!(
            budgets.acquire(&key, lease("alive-2", 2, short)).await,
            Ok(Lease::Taken)
        );
    }

    #[tokio::test]
    async fn a_hold_beyond_the_longest_wait_is_answered_before_any_lease() {
        let budgets = RedisBudgets::open("redis://127.0.0.1:6379").unwrap();
        let key = fresh_key();
        let hour = Duration::from_secs(3600);
        // A daily allowance used up, "retry in an hour": held for all of it.
        budgets.signal(&key, Signal::Hold(hour)).await.unwrap();
        let held = budgets.acquire(&key, lease("a", 2, hour)).await.unwrap();
        assert!(
            matches!(held, Lease::Held(d) if d > hour - Duration::from_secs(5) && d <= hour),
            "{held:?}"
        );
        // Without a cap too: the hold is not about leases.
        let held = budgets.acquire(&key, lease("a", 0, hour)).await.unwrap();
        assert!(matches!(held, Lease::Held(_)), "{held:?}");
        // A caller that may wait longer takes its lease, and waits for its
        // request slot instead.
        let patient = LeaseRequest {
            max_wait: 2 * hour,
            ..lease("a", 2, hour)
        };
        assert_eq!(budgets.acquire(&key, patient).await, Ok(Lease::Taken));
        let far = budgets
            .reserve(&key, MS, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            matches!(far, Reservation::TooFar(d) if d > hour - Duration::from_secs(5)),
            "{far:?}"
        );
    }

    #[tokio::test]
    async fn two_holders_share_one_days_count_in_real_redis() {
        // Two stores, two connections: two workers' view of one Redis.
        let one = RedisBudgets::open("redis://127.0.0.1:6379").unwrap();
        let two = RedisBudgets::open("redis://127.0.0.1:6379").unwrap();
        let key = fresh_key();
        for budgets in [&one, &two, &one] {
            assert_eq!(budgets.take_daily(&key, 3).await, Ok(Allowance::Taken));
        }
        // The fourth request of the day is refused to both, until midnight.
        let (_, day_ends_in) = sluice_engine::budget::utc_day(std::time::SystemTime::now());
        for budgets in [&two, &one] {
            let refused = budgets.take_daily(&key, 3).await.unwrap();
            assert!(
                matches!(refused, Allowance::UsedUp(d) if d.abs_diff(day_ends_in) < Duration::from_secs(5)),
                "{refused:?}, the day ends in {day_ends_in:?}"
            );
        }
        // The key expires when the day ends.
        let mut conn = one.manager.clone();
        let (day, _) = sluice_engine::budget::utc_day(std::time::SystemTime::now());
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{}{day}", daily_prefix(&key)))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl > 0 && ttl.abs_diff(day_ends_in.as_secs() as i64) <= 5,
            "TTL {ttl} s, the day ends in {day_ends_in:?}"
        );
        // Other credentials have their own count.
        assert_eq!(one.take_daily(&fresh_key(), 3).await, Ok(Allowance::Taken));
    }

    #[tokio::test]
    async fn the_apis_count_raises_the_days_and_a_new_period_starts_over_in_real_redis() {
        let budgets = RedisBudgets::open("redis://127.0.0.1:6379").unwrap();
        let key = fresh_key();
        assert_eq!(budgets.take_daily(&key, 10).await, Ok(Allowance::Taken));
        // The API says 9 were used (others' requests): one is left.
        budgets.raise_daily(&key, 9).await.unwrap();
        budgets.raise_daily(&key, 2).await.unwrap();
        assert_eq!(budgets.take_daily(&key, 10).await, Ok(Allowance::Taken));
        assert!(matches!(
            budgets.take_daily(&key, 10).await,
            Ok(Allowance::UsedUp(_))
        ));

        // A period's key is its own: over 1 s periods, the next one starts
        // over. Start at the beginning of a period, so three calls fit in it.
        let key = fresh_key();
        let second = Duration::from_secs(1);
        let Allowance::UsedUp(left) = budgets.take_in_period(&key, 0, second).await.unwrap() else {
            panic!("a cap of 0 takes nothing");
        };
        tokio::time::sleep(left + 20 * MS).await;
        assert_eq!(
            budgets.take_in_period(&key, 1, second).await,
            Ok(Allowance::Taken)
        );
        let used_up = budgets.take_in_period(&key, 1, second).await.unwrap();
        let Allowance::UsedUp(left) = used_up else {
            panic!("the period's one request was taken: {used_up:?}");
        };
        assert!(left <= second, "{left:?}");
        tokio::time::sleep(left + 20 * MS).await;
        assert_eq!(
            budgets.take_in_period(&key, 1, second).await,
            Ok(Allowance::Taken),
            "a new period, a new count"
        );
    }

    #[test]
    fn a_budgets_keys_share_one_hash_tag() {
        let key = BudgetKey::of("hubspot", &Default::default());
        let [tat, hold, pace] = keys(&key);
        let tag = format!("{{{}}}", key.as_str());
        assert!(tat.contains(&tag) && hold.contains(&tag) && pace.contains(&tag));
        assert!(tat.starts_with(KEY_PREFIX));
        assert!(leases_key(&key).contains(&tag));
        assert!(daily_prefix(&key).contains(&tag));
    }
}
