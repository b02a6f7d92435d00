//! The portal's REST limits as every worker process shares them (protocol.md §7): the
//! request bucket and the parked methods live in one Postgres row per portal
//! (`db::portal_limits`), so more processes never mean more requests to a portal, and a
//! process that dies holds nothing: the row only records when the next request may leave.
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;

use crate::db::portal_limits::{self, GatheredGrants};
use crate::db::{DbError, Pool};
use crate::metrics;

/// Requests of the bucket we leave unused: our grant time and the portal's arrival time
/// differ by network jitter, so a full bucket by our count must still have room there.
const HEADROOM: i32 = 3;
/// The per-method time budget in a 10-minute window (protocol.md §7.2: the docs' example
/// and the JS SDK use 480 s).
const OPERATING_BUDGET_SECS: f64 = 480.0;
/// From this share of the budget on, a method is spaced out; from `PARK_SHARE` on it waits
/// for its window to move on.
const SLOW_SHARE: f64 = 0.75;
const PARK_SHARE: f64 = 0.9;
const RESET_MARGIN_SECS: f64 = 0.5;
/// How long a method refused with 429 waits when no answer told us its reset time.
const UNKNOWN_RESET_PARK_SECS: f64 = 60.0;

#[derive(Clone)]
pub(crate) struct Limiter {
    db: Pool,
    /// Grants asked at the same moment by this process's requests share one statement.
    grants: GatheredGrants,
    /// Woken when an operator changes a portal's plan, so nobody waits out the old rate.
    plans_changed: Arc<Notify>,
}

impl Limiter {
    pub(crate) fn new(db: Pool) -> Self {
        Self {
            grants: GatheredGrants::start(db.clone(), HEADROOM),
            db,
            plans_changed: Arc::new(Notify::new()),
        }
    }

    /// Some portal's plan changed: waiting requests ask the bucket again now.
    pub(crate) fn plans_changed(&self) {
        self.grants.forget_all();
        self.plans_changed.notify_waiters();
    }

    /// Waits until the portal's bucket grants one request; returns the parked methods.
    pub(crate) async fn acquire(&self, portal_id: i64) -> Result<Value, DbError> {
        let started = Instant::now();
        loop {
            // Registered before the bucket is read, so a change right after is not missed.
            let changed = self.plans_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let answer = self.grants.acquire(portal_id).await?;
            if answer.granted {
                metrics::REST_LIMITER_WAIT.observe(started.elapsed().as_secs_f64());
                return Ok(answer.parked);
            }
            // A hair past the computed time, so the next try is granted.
            let wait =
                Duration::from_secs_f64(answer.wait_secs.min(60.0)) + Duration::from_millis(2);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changed => {}
            }
        }
    }

    pub(crate) async fn throttled(&self, portal_id: i64) -> Result<(), DbError> {
        self.grants.forget(portal_id);
        let client = self.db.get().await?;
        portal_limits::note_throttled(&client, portal_id).await
    }

    pub(crate) async fn park(
        &self,
        portal_id: i64,
        method: &str,
        until: f64,
    ) -> Result<(), DbError> {
        let client = self.db.get().await?;
        portal_limits::park_method(&client, portal_id, method, until.ceil() as i64).await
    }
}

/// A method whose `time.operating` nears the budget is held back before Bitrix24 refuses it:
/// past 75 % of the budget for a share of the time left in its window, past 90 % until the
/// window moves on. `None`: no need.
pub(crate) fn slow_down_until(operating: f64, reset_at: Option<f64>, now: f64) -> Option<f64> {
    let share = operating / OPERATING_BUDGET_SECS;
    if share < SLOW_SHARE {
        return None;
    }
    let window_left = reset_at
        .filter(|r| *r > now)
        .map(|r| r - now)
        .unwrap_or(UNKNOWN_RESET_PARK_SECS);
    if share >= PARK_SHARE {
        return Some(now + window_left + RESET_MARGIN_SECS);
    }
    let fraction = (share - SLOW_SHARE) / (PARK_SHARE - SLOW_SHARE);
    Some(now + (fraction * window_left).max(1.0))
}

/// A method refused with 429 waits until `operating_reset_at` of its last good answer
/// (protocol.md §7.2), or a minute when we never saw one.
pub(crate) fn park_after_refusal(known_reset_at: Option<f64>, now: f64) -> f64 {
    match known_reset_at {
        // Half a second past it: the reset time is given in whole seconds.
        Some(r) if r > now && r <= now + 600.0 => r + RESET_MARGIN_SECS,
        _ => now + UNKNOWN_RESET_PARK_SECS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_near_their_budget_are_held_back() {
        assert_eq!(slow_down_until(100.0, Some(1_300.0), 1_000.0), None);
        assert_eq!(
            slow_down_until(440.0, Some(1_300.0), 1_000.0),
            Some(1_300.5)
        );
        let spaced = slow_down_until(396.0, Some(1_300.0), 1_000.0).unwrap();
        assert!(spaced > 1_000.0 && spaced < 1_300.0, "{spaced}");
    }

    #[test]
    fn a_refused_method_waits_for_its_window() {
        assert_eq!(park_after_refusal(Some(1_030.0), 1_000.0), 1_030.5);
        assert_eq!(park_after_refusal(None, 1_000.0), 1_060.0);
        assert_eq!(park_after_refusal(Some(900.0), 1_000.0), 1_060.0);
    }
}
