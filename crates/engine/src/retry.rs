//! The run's one retry policy: how many times a transient failure is
//! retried, how long to back off (exponential, with jitter from a real
//! random source so concurrent writers do not retry in lockstep), and what
//! a rate limit asks for instead.

use sluice_runtime::{PluginError, PluginFailure};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive rate-limit waits tolerated for one batch.
    pub max_throttle_waits: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_throttle_waits: 1000,
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
    /// what a rate limit asked for, or backoff.
    pub fn wait_after(&self, failure: &PluginFailure, attempt: u32) -> Duration {
        match failure.plugin_error() {
            Some(PluginError::RateLimited(info)) => Duration::from_millis(info.retry_after_ms),
            _ => self.delay(attempt),
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
                    tokio::time::sleep(self.wait_after(&f, attempt)).await;
                }
                other => return other,
            }
        }
    }
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
}
