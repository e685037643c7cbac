//! Request admission: a rolling-window limit (the short-interval budget) and a daily
//! allowance. Rolling rather than fixed windows because HubSpot documents its limit as
//! `TEN_SECONDLY_ROLLING`; a client pacing itself at `R / interval` never trips it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// The outcome of asking to serve one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Allowed,
    /// Over the rolling-window limit; a slot frees after `retry_after`.
    OverInterval {
        retry_after: Duration,
    },
    /// The daily allowance is used up.
    OverDaily,
}

/// How many admitted requests' arrival times the limiter remembers (for
/// tests and benchmarks measuring how much of the limit a client used).
pub const ADMISSION_LOG: usize = 100_000;

/// Rolling window plus daily counter. Throttled requests do not consume budget.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: Option<RateLimit>,
    window: VecDeque<Instant>,
    daily_limit: u64,
    daily_used: u64,
    /// When the newest admitted requests arrived (at most [`ADMISSION_LOG`]).
    admitted: VecDeque<Instant>,
}

impl Limiter {
    pub fn new(rate: Option<RateLimit>, daily_limit: u64) -> Self {
        Self {
            rate,
            window: VecDeque::new(),
            daily_limit,
            daily_used: 0,
            admitted: VecDeque::new(),
        }
    }

    /// When the newest admitted requests arrived, oldest first.
    pub fn admissions(&self) -> Vec<Instant> {
        self.admitted.iter().copied().collect()
    }

    pub fn set_rate(&mut self, rate: Option<RateLimit>) {
        self.rate = rate;
        self.window.clear();
    }

    pub fn rate(&self) -> Option<RateLimit> {
        self.rate
    }

    pub fn set_daily_limit(&mut self, limit: u64) {
        self.daily_limit = limit;
    }

    pub fn reset_daily_usage(&mut self) {
        self.daily_used = 0;
    }

    pub fn daily_limit(&self) -> u64 {
        self.daily_limit
    }

    pub fn daily_used(&self) -> u64 {
        self.daily_used
    }

    fn evict(&mut self, now: Instant) {
        let Some(rate) = self.rate else {
            self.window.clear();
            return;
        };
        while let Some(&oldest) = self.window.front() {
            if now.duration_since(oldest) >= rate.interval {
                self.window.pop_front();
            } else {
                break;
            }
        }
    }

    /// Decides whether a request arriving at `now` is served, and records it if so.
    pub fn admit(&mut self, now: Instant) -> Admission {
        if self.daily_used >= self.daily_limit {
            return Admission::OverDaily;
        }
        self.evict(now);
        if let Some(rate) = self.rate {
            if self.window.len() >= rate.requests as usize {
                let retry_after = self
                    .window
                    .front()
                    .map(|&oldest| rate.interval.saturating_sub(now.duration_since(oldest)))
                    .unwrap_or(rate.interval);
                return Admission::OverInterval { retry_after };
            }
            self.window.push_back(now);
        }
        self.daily_used += 1;
        if self.admitted.len() == ADMISSION_LOG {
            self.admitted.pop_front();
        }
        self.admitted.push_back(now);
        Admission::Allowed
    }

    /// Requests still allowed in the current rolling window, if a limit is set.
    pub fn interval_remaining(&mut self, now: Instant) -> Option<u32> {
        self.evict(now);
        let rate = self.rate?;
        Some(rate.requests.saturating_sub(self.window.len() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admitted_requests_are_logged_with_their_arrival() {
        let start = Instant::now();
        let mut l = Limiter::new(Some(RateLimit::new(1, Duration::from_secs(10))), 100);
        let later = start + Duration::from_secs(11);
        assert_eq!(l.admit(start), Admission::Allowed);
        assert!(matches!(l.admit(start), Admission::OverInterval { .. }));
        assert_eq!(l.admit(later), Admission::Allowed);
        assert_eq!(l.admissions(), [start, later]);
    }

    #[test]
    fn rolling_window_frees_slots_as_they_age() {
        let start = Instant::now();
        let mut l = Limiter::new(Some(RateLimit::new(2, Duration::from_secs(10))), 100);
        assert_eq!(l.admit(start), Admission::Allowed);
        assert_eq!(l.admit(start + Duration::from_secs(4)), Admission::Allowed);
        assert_eq!(
            l.admit(start + Duration::from_secs(5)),
            Admission::OverInterval {
                retry_after: Duration::from_secs(5)
            }
        );
        assert_eq!(l.admit(start + Duration::from_secs(10)), Admission::Allowed);
        assert_eq!(l.daily_used(), 3);
    }

    #[test]
    fn daily_allowance_is_checked_first() {
        let now = Instant::now();
        let mut l = Limiter::new(None, 1);
        assert_eq!(l.admit(now), Admission::Allowed);
        assert_eq!(l.admit(now), Admission::OverDaily);
    }
}
