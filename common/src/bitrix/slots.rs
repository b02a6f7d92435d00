//! A worker's concurrency slot is for work, not for waiting: a job whose REST request only
//! waits for its portal's limiter gives its slot back meanwhile (and takes one again, in
//! turn, when the answer is there), so a throttled or flooding portal cannot hold the slots
//! other portals' jobs need.
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
}
