//! A worker's concurrency slot is for work, not for waiting. A received job claims its row
//! holding only an admission ticket (as many tickets as slots, so at most that many wait
//! like this) and takes a slot once claimed (`take_slot`). A job whose REST request only
//! waits for its portal's limiter gives its slot back meanwhile (and takes one again, in
//! turn, when the answer is there), so a throttled or flooding portal cannot hold the slots
//! other portals' jobs need. A job whose work is done gives its slot back for good before
//! its end is committed (`give_back`). The claim and the end only wait for the next group
//! commit (`bench e2e`, 64 slots, 2026-12-04: 1,094–1,356 jobs/s holding the slot through
//! both, 1,287–1,620 giving it back for the end).
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static SLOT: Holder;
}

struct Holder {
    slots: Arc<Semaphore>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Held from admission until the task has its slot.
    ticket: Mutex<Option<OwnedSemaphorePermit>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `work` holding an admission `ticket` until it takes a slot of `slots`
/// ([`take_slot`]); the slot is lent out while the work waits for a limiter.
pub async fn hold<F: Future>(
    slots: Arc<Semaphore>,
    ticket: OwnedSemaphorePermit,
    work: F,
) -> F::Output {
    SLOT.scope(
        Holder {
            slots,
            permit: Mutex::new(None),
            ticket: Mutex::new(Some(ticket)),
        },
        work,
    )
    .await
}

/// Takes a slot for the task's work, waiting for one in turn, and gives its ticket back.
pub async fn take_slot() {
    let Ok(slots) = SLOT.try_with(|h| h.slots.clone()) else {
        return;
    };
    let permit = slots.acquire_owned().await.ok();
    let ticket = SLOT.try_with(|h| {
        *lock(&h.permit) = permit;
        lock(&h.ticket).take()
    });
    drop(ticket);
}

fn take() -> Option<(Arc<Semaphore>, OwnedSemaphorePermit)> {
    SLOT.try_with(|h| lock(&h.permit).take().map(|p| (h.slots.clone(), p)))
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
    let _ = SLOT.try_with(|h| *lock(&h.permit) = again);
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

    fn semaphores() -> (Arc<Semaphore>, Arc<Semaphore>) {
        (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(1)))
    }

    #[tokio::test]
    async fn the_slot_is_free_while_waiting_and_held_again_after() {
        let (slots, tickets) = semaphores();
        let ticket = tickets.clone().acquire_owned().await.unwrap();
        let (seen, seen_tickets) = (slots.clone(), tickets.clone());
        hold(slots.clone(), ticket, async move {
            assert_eq!(seen.available_permits(), 1, "no slot before it is taken");
            take_slot().await;
            assert_eq!(seen.available_permits(), 0);
            assert_eq!(seen_tickets.available_permits(), 1, "the ticket is back");
            while_waiting(async { assert_eq!(seen.available_permits(), 1) }).await;
            assert_eq!(seen.available_permits(), 0);
        })
        .await;
        assert_eq!(slots.available_permits(), 1);
        assert_eq!(tickets.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_task_waiting_for_its_slot_keeps_its_ticket() {
        let (slots, tickets) = semaphores();
        let busy = slots.clone().acquire_owned().await.unwrap();
        let ticket = tickets.clone().acquire_owned().await.unwrap();
        let task = tokio::spawn(hold(slots.clone(), ticket, take_slot()));
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        assert_eq!(tickets.available_permits(), 0);
        drop(busy);
        task.await.unwrap();
        assert_eq!(tickets.available_permits(), 1);
        assert_eq!(slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_slot_given_back_stays_free_for_the_rest_of_the_task() {
        let (slots, tickets) = semaphores();
        let ticket = tickets.clone().acquire_owned().await.unwrap();
        let seen = slots.clone();
        hold(slots.clone(), ticket, async move {
            take_slot().await;
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
        take_slot().await;
    }
}
