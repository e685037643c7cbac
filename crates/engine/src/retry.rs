//! The run's one retry policy: how many times a transient failure is
//! retried, how long to back off (exponential, with jitter from a real
//! random source so concurrent writers do not retry in lockstep), and what
//! a rate limit asks for instead.

use sluice_runtime::{FailureKind, PluginError, PluginFailure};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive rate-limit waits tolerated for one batch.
    pub max_throttle_waits: u32,
    /// The longest single wait a plugin or an API can ask for (a
    /// `rate-limited` result, a quota window, a declared rate). A run asked
    /// to wait longer stops as paused, with what it delivered committed.
    pub max_wait: Duration,
}

/// The default [`RetryPolicy::max_wait`]: long enough for any per-minute or
/// per-hour quota a CRM resets, short enough that `run --all` moves on.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(15 * 60);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_throttle_waits: 1000,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter: between half and all of
    /// `base_delay * 2^attempt`, capped at `max_delay`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        exp.mul_f64(rand::random_range(0.5..=1.0))
    }

    /// How long to wait before retrying a call that failed transiently:
    /// what a rate limit asked for, or backoff; `Err` with the asked wait
    /// when it is longer than `max_wait`.
    pub fn wait_after(&self, failure: &PluginFailure, attempt: u32) -> Result<Duration, Duration> {
        match failure.plugin_error() {
            Some(PluginError::RateLimited(info)) => {
                self.bounded(Duration::from_millis(info.retry_after_ms))
            }
            _ => Ok(self.delay(attempt)),
        }
    }

    /// A wait someone asked for, if it is within `max_wait`.
    pub fn bounded(&self, asked: Duration) -> Result<Duration, Duration> {
        if asked <= self.max_wait {
            Ok(asked)
        } else {
            Err(asked)
        }
    }

    /// Run `call` until it succeeds, fails for good, or has failed
    /// transiently `max_attempts` times, waiting between attempts.
    pub async fn run<T>(
        &self,
        mut call: impl AsyncFnMut() -> Result<T, PluginFailure>,
    ) -> Result<T, PluginFailure> {
        let mut attempt = 0;
        loop {
            match call().await {
                Err(f) if f.is_retryable() && attempt + 1 < self.max_attempts => {
                    attempt += 1;
                    match self.wait_after(&f, attempt) {
                        Ok(wait) => tokio::time::sleep(wait).await,
                        Err(asked) => return Err(paused(&f.plugin, &f.call, asked, self.max_wait)),
                    }
                }
                other => return other,
            }
        }
    }
}

/// The failure that stops a run asked to wait `asked`, more than `max`:
/// the sync is paused until then, and says so.
pub fn paused(plugin: &str, call: &str, asked: Duration, max: Duration) -> PluginFailure {
    PluginFailure {
        plugin: plugin.to_string(),
        call: call.to_string(),
        kind: FailureKind::Paused {
            asked_ms: asked.as_millis(),
            max_ms: max.as_millis(),
            until_unix_ms: unix_ms_after(asked),
        },
    }
}

/// Milliseconds since the Unix epoch `wait` from now.
pub(crate) fn unix_ms_after(wait: Duration) -> u128 {
    std::time::SystemTime::now()
        .checked_add(wait)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(u128::MAX, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy::default();
        for attempt in 0..20 {
            let full = policy
                .base_delay
                .saturating_mul(1u32 << attempt.min(16))
                .min(policy.max_delay);
            let d = policy.delay(attempt);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..32).map(|_| policy.delay(3)).collect();
        assert!(spread.len() > 1, "jitter must vary between calls");
    }

    #[test]
    fn a_wait_longer_than_max_wait_is_refused() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.bounded(Duration::from_secs(60)),
            Ok(Duration::from_secs(60))
        );
        let asked = Duration::from_millis(u64::MAX);
        assert_eq!(policy.bounded(asked), Err(asked));
    }
}
