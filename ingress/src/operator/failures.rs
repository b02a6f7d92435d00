//! Rate limit on wrong operator tokens, per client address: a burst of
//! [`FAILURE_BURST`] failures, then one per [`FAILURE_PERIOD`]; an address over its budget is
//! refused before its token is even looked at, so guessing cannot go faster than that.
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub const FAILURE_BURST: u32 = 10;
pub const FAILURE_PERIOD: Duration = Duration::from_secs(6);

pub struct Failures {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: DashMap<IpAddr, Instant>,
}

impl Default for Failures {
    fn default() -> Self {
        let quota = Quota::with_period(FAILURE_PERIOD)
            .expect("non-zero period")
            .allow_burst(NonZeroU32::new(FAILURE_BURST).expect("non-zero burst"));
        Self {
            limiter: RateLimiter::keyed(quota),
            blocked: DashMap::new(),
        }
    }
}

impl Failures {
    /// How long `ip` must still wait, if it is blocked.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let until = *self.blocked.get(&ip)?;
        if until > now {
            return Some(until - now);
        }
        self.blocked.remove(&ip);
        None
    }

    /// Counts a failure; returns the wait when it exhausted the budget.
    pub fn record(&self, ip: IpAddr) -> Option<Duration> {
        if self.blocked.len() > 10_000 {
            let now = Instant::now();
            self.blocked.retain(|_, until| *until > now);
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&ip) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                self.blocked.insert(ip, Instant::now() + wait);
                Some(wait)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_burst_of_failures_and_others_are_not() {
        let failures = Failures::default();
        let bad: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..FAILURE_BURST {
            assert_eq!(failures.record(bad), None);
        }
        assert!(failures.record(bad).is_some());
        assert!(failures.blocked_for(bad).is_some());
        assert_eq!(failures.blocked_for([10, 0, 0, 2].into()), None);
    }
}
