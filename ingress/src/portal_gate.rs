//! Activity calls of one portal use at most [`PER_PORTAL`] of the ingress's database
//! connections at once. A portal firing thousands of calls then queues behind its own
//! calls, not in front of other portals' calls: without this, every call waits its turn in
//! the pool's one queue, and a quiet portal's call takes as long as the flood's (measured:
//! 1.5 s at 400 calls in flight, `b24flow bench fairness`).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The ingress's Postgres connections.
pub const DB_POOL: usize = 32;
/// Calls of one portal past the gate at once. Calls are stored in group commits, so twice
/// the pool keeps a flooding portal's groups full (half the pool cut a 10,000-call flood's
/// intake from 256 to 43 calls/s when each call also waited for its confirm), while another
/// portal's call still finds at most this many of the flood's calls ahead of it.
pub const PER_PORTAL: usize = DB_POOL * 2;

#[derive(Default)]
pub struct PortalGate {
    /// Portals (by `member_id`) with calls past or at the gate.
    portals: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A call past the gate; dropping it lets the portal's next call through.
pub struct Pass {
    gate: Arc<PortalGate>,
    member_id: String,
    semaphore: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl PortalGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        self.portals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the portal has fewer than [`PER_PORTAL`] calls past the gate.
    pub async fn enter(self: &Arc<Self>, member_id: &str) -> Pass {
        let semaphore = self
            .lock()
            .entry(member_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_PORTAL)))
            .clone();
        let mut pass = Pass {
            gate: self.clone(),
            member_id: member_id.to_string(),
            semaphore: Some(semaphore.clone()),
            permit: None,
        };
        // The semaphore is never closed; if it were, the call would simply pass.
        pass.permit = semaphore.acquire_owned().await.ok();
        pass
    }

    /// Portals with calls at or past the gate.
    #[cfg(test)]
    fn portals(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut portals = self.gate.lock();
        drop(self.semaphore.take());
        // Nobody else holds or waits for this portal's semaphore: forget the portal, so
        // the map holds only portals with calls in progress.
        if portals
            .get(&self.member_id)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            portals.remove(&self.member_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_busy_portal_waits_for_its_own_calls_and_not_others() {
        let gate = Arc::new(PortalGate::default());
        let mut busy = Vec::new();
        for _ in 0..PER_PORTAL {
            busy.push(gate.enter("a").await);
        }
        // Portal a is at its share: its next call waits, portal b's passes at once.
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter("a").await }
        });
        let other = tokio::time::timeout(Duration::from_secs(5), gate.enter("b"))
            .await
            .expect("portal b is not held back by portal a");
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        busy.pop();
        let next = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("portal a's next call passes when one of its calls is done")
            .expect("task");
        drop(other);
        assert_eq!(gate.portals(), 1);
        drop(next);
        busy.clear();
        assert_eq!(gate.portals(), 0);
    }
}
