//! The REST rate limit (protocol.md §7.1): a leaky bucket per portal. Each HTTP request to
//! `/rest` adds 1 (a batch is one request), the level drains by Y per second, and a request
//! that would take the level above X is refused with 503 `QUERY_LIMIT_EXCEEDED` without
//! running.

use tokio::time::Instant;

pub(crate) struct LeakyBucket {
    level: f64,
    last: Instant,
}

impl LeakyBucket {
    pub fn new() -> Self {
        Self {
            level: 0.0,
            last: Instant::now(),
        }
    }

    /// Admits one request if the bucket has room; a refused request adds nothing.
    pub fn try_acquire(&mut self, burst: u32, drain_per_sec: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level - elapsed * drain_per_sec.max(0.0)).max(0.0);
        self.last = now;
        if self.level + 1.0 > f64::from(burst) {
            return false;
        }
        self.level += 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_burst_passes_then_the_bucket_drains() {
        let mut bucket = LeakyBucket::new();
        let t0 = Instant::now();
        for _ in 0..50 {
            assert!(bucket.try_acquire(50, 2.0, t0));
        }
        assert!(!bucket.try_acquire(50, 2.0, t0));
        assert!(!bucket.try_acquire(50, 2.0, t0 + Duration::from_millis(400)));
        assert!(bucket.try_acquire(50, 2.0, t0 + Duration::from_millis(600)));
        assert!(!bucket.try_acquire(50, 2.0, t0 + Duration::from_millis(600)));
    }
}
