//! A worker's concurrency slot is for work, not for waiting: a job whose REST request only
//! waits for its portal's limiter gives its slot back meanwhile (and takes one again, in
//! turn, when the answer is there), so a throttled or flooding portal cannot hold the slots
//! other portals' jobs need. A job whose work is done gives its slot back for good before
//! its end is committed (`give_back`): the end only waits for the next group commit
//! (`bench e2e`, 64 slots, 2026-12-04: 1,127–1,356 jobs/s holding the slot through the
//! end, 1,287–1,382 giving it back).
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static SLOT: Holder;
}

struct Holder {
    slots: Arc<Semaphore>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

/// Runs `work` holding `permit` of `slots`, lending it out while the work waits for a limiter.
pub async fn hold<F: Future>(
    slots: Arc<Semaphore>,
    permit: OwnedSemaphorePermit,
    work: F,
) -> F::Output {
    SLOT.scope(
        Holder {
            slots,
            permit: Mutex::new(Some(permit)),
        },
        work,
    )
    .await
}

fn take() -> Option<(Arc<Semaphore>, OwnedSemaphorePermit)> {
    SLOT.try_with(|h| {
        let permit = h.permit.lock().unwrap_or_else(|p| p.into_inner()).take();
        permit.map(|p| (h.slots.clone(), p))
    })
    .ok()
    .flatten()
}

/// Awaits `wait` without holding the task's slot (when it has one).
pub(crate) async fn while_waiting<F: Future>(wait: F) -> F::Output {
    let Some((slots, permit)) = take() else {
        return wait.await;
    };
    drop(permit);
    let out = wait.await;
    let again = slots.acquire_owned().await.ok();
    let _ = SLOT.try_with(|h| *h.permit.lock().unwrap_or_else(|p| p.into_inner()) = again);
    out
}

/// Gives the task's slot back for good: its work is done, and what remains (the job's end
/// in the next group commit, the ack) only waits.
pub fn give_back() {
    drop(take());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_slot_is_free_while_waiting_and_held_again_after() {
        let slots = Arc::new(Semaphore::new(1));
        let permit = slots.clone().acquire_owned().await.unwrap();
        let seen = slots.clone();
        hold(slots.clone(), permit, async move {
            assert_eq!(seen.available_permits(), 0);
            while_waiting(async { assert_eq!(seen.available_permits(), 1) }).await;
            assert_eq!(seen.available_permits(), 0);
        })
        .await;
        assert_eq!(slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_slot_given_back_stays_free_for_the_rest_of_the_task() {
        let slots = Arc::new(Semaphore::new(1));
        let permit = slots.clone().acquire_owned().await.unwrap();
        let seen = slots.clone();
        hold(slots.clone(), permit, async move {
            give_back();
            assert_eq!(seen.available_permits(), 1);
            // Waiting afterwards neither takes a slot nor gives one it does not hold.
            while_waiting(async { assert_eq!(seen.available_permits(), 1) }).await;
            assert_eq!(seen.available_permits(), 1);
        })
        .await;
        assert_eq!(slots.available_permits(), 1);
        // Outside a slot's task it does nothing.
        give_back();
    }
}
