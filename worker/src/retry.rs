//! When to try again. Delays come from Postgres (`run_at`, re-published by the sweeper)
//! rather than RabbitMQ TTL queues: the row already decides who owns a job, and one
//! mechanism then covers retries, the outbox and orphans.
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use rand::Rng;

use crate::schema::Text;
use crate::texts;

pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.3,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, after `attempt` failed (1-based): the
    /// exponential sequence from `backon`, then ±`jitter` of it (backon's own jitter only
    /// adds, up to +100 %, which would break the cap operators read as the longest wait).
    pub fn delay_after(&self, attempt: i32) -> Duration {
        // Past 64 steps any sequence has long reached its cap.
        let nth = usize::try_from(attempt.clamp(1, 64)).unwrap_or(1);
        let delay = ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(self.multiplier as f32)
            .without_max_times()
            .build()
            .nth(nth - 1)
            .unwrap_or(self.max);
        if self.jitter <= 0.0 {
            return delay;
        }
        let jitter = self.jitter.min(1.0);
        let factor = rand::thread_rng().gen_range(1.0 - jitter..=1.0 + jitter);
        delay.mul_f64(factor)
    }
}

/// What to do after a transient failure.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    RetryAt(DateTime<Utc>),
    /// No attempts left, or the workflow would stop waiting before the next one.
    GiveUp(Text),
}

pub fn decide(
    policy: &RetryPolicy,
    attempt: i32,
    max_attempts: i32,
    workflow_deadline: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    if attempt >= max_attempts {
        return Decision::GiveUp(texts::retries_exhausted(attempt));
    }
    let delay = policy.delay_after(attempt);
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(300));
    let Some(at) = now.checked_add_signed(delay) else {
        return Decision::GiveUp(crate::text!(
            "the next attempt would fall outside the calendar",
            "следующая попытка выходит за пределы календаря"
        ));
    };
    match workflow_deadline {
        Some(deadline) if at >= deadline => Decision::GiveUp(texts::workflow_timeout()),
        _ => Decision::RetryAt(at),
    }
}

/// How long a finished job keeps trying to deliver its answer when the portal fails
/// transiently. The answer is what the workflow waits for, so it is not bound by the
/// activity's attempts, only by the workflow's own timeout and this horizon.
pub const REPORT_HORIZON: chrono::Duration = chrono::Duration::days(7);

/// Like [`decide`], for `bizproc.event.send` after the activity already ran.
pub fn decide_report(
    policy: &RetryPolicy,
    attempt: i32,
    created_at: DateTime<Utc>,
    workflow_deadline: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    let horizon = created_at
        .checked_add_signed(REPORT_HORIZON)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let deadline = workflow_deadline.map_or(horizon, |d| d.min(horizon));
    decide(policy, attempt, i32::MAX, Some(deadline), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..Default::default()
        };
        assert_eq!(p.delay_after(1), Duration::from_secs(2));
        assert_eq!(p.delay_after(2), Duration::from_secs(4));
        assert_eq!(p.delay_after(3), Duration::from_secs(8));
        assert_eq!(p.delay_after(20), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_within_its_share_of_the_delay() {
        let p = RetryPolicy {
            jitter: 0.3,
            ..Default::default()
        };
        for _ in 0..200 {
            let d = p.delay_after(3).as_secs_f64();
            assert!((5.6..=10.4).contains(&d), "{d}");
        }
        assert!(p.delay_after(50).as_secs_f64() <= 390.0);
    }

    #[test]
    fn gives_up_when_attempts_run_out_or_the_workflow_stops_waiting() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        assert!(matches!(decide(&p, 8, 8, None, now), Decision::GiveUp(_)));
        assert!(matches!(decide(&p, 1, 8, None, now), Decision::RetryAt(_)));
        let soon = now + chrono::Duration::milliseconds(500);
        assert!(matches!(
            decide(&p, 1, 8, Some(soon), now),
            Decision::GiveUp(_)
        ));
    }

    #[test]
    fn answers_keep_being_retried_past_the_activity_attempts() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        assert!(matches!(
            decide_report(&p, 30, now, None, now),
            Decision::RetryAt(_)
        ));
        let long_ago = now - REPORT_HORIZON;
        assert!(matches!(
            decide_report(&p, 30, long_ago, None, now),
            Decision::GiveUp(_)
        ));
    }
}
