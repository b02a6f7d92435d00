//! Which received job runs next: deliveries wait here per portal (unacked, holding no
//! worker slot and no database lease) and portals take turns for free slots, each with at
//! most `per_portal` jobs running at once. A portal that floods thousands of jobs therefore
//! neither fills the slots nor stands in front of another portal's job.
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

pub(crate) struct Admission<T> {
    state: Mutex<State<T>>,
    changed: Notify,
    per_portal: usize,
}

struct State<T> {
    waiting: HashMap<i64, VecDeque<T>>,
    /// Portals with waiting jobs, in the order they get their next turn.
    turns: VecDeque<i64>,
    running: HashMap<i64, usize>,
}

impl<T> Admission<T> {
    pub(crate) fn new(per_portal: usize) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: HashMap::new(),
                turns: VecDeque::new(),
                running: HashMap::new(),
            }),
            changed: Notify::new(),
            per_portal: per_portal.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, portal: i64, arrival: T) {
        let mut st = self.lock();
        let queue = st.waiting.entry(portal).or_default();
        queue.push_back(arrival);
        if queue.len() == 1 {
            st.turns.push_back(portal);
        }
        drop(st);
        self.changed.notify_one();
    }

    /// The next job in portal turn order, if any portal with waiting jobs may run one more.
    fn next(&self) -> Option<(i64, T)> {
        let mut st = self.lock();
        for _ in 0..st.turns.len() {
            let portal = st.turns.pop_front()?;
            let running = st.running.get(&portal).copied().unwrap_or(0);
            if running >= self.per_portal {
                st.turns.push_back(portal);
                continue;
            }
            let queue = st.waiting.get_mut(&portal)?;
            let arrival = queue.pop_front()?;
            if queue.is_empty() {
                st.waiting.remove(&portal);
            } else {
                st.turns.push_back(portal);
            }
            *st.running.entry(portal).or_default() += 1;
            return Some((portal, arrival));
        }
        None
    }

    /// Waits for the next job that may run.
    pub(crate) async fn take(&self) -> (i64, T) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(arrival) = self.next() {
                return arrival;
            }
            changed.await;
        }
    }

    /// A job of `portal` finished its run here.
    pub(crate) fn done(&self, portal: i64) {
        let mut st = self.lock();
        if let Some(n) = st.running.get_mut(&portal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.running.remove(&portal);
            }
        }
        drop(st);
        self.changed.notify_one();
    }

    /// Jobs received and not yet started, per portal (for logs and tests).
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portals_take_turns_and_a_flood_is_capped() {
        let admission = Admission::new(2);
        for i in 0..100 {
            admission.push(1, i);
        }
        admission.push(2, 1000);
        let order: Vec<(i64, i32)> = std::iter::from_fn(|| admission.next()).collect();
        // Portal 1 runs at most 2 at once; portal 2's job is not behind portal 1's 100.
        assert_eq!(order, vec![(1, 0), (2, 1000), (1, 1)]);
        assert_eq!(admission.waiting(), 98);
        admission.done(1);
        assert_eq!(admission.next(), Some((1, 2)));
    }
}
