//! Which received job runs next: deliveries wait here per portal (unacked, holding no
//! worker slot and no database lease) and portals take turns for free slots, each with at
//! most its own cap of jobs running at once (see [`running_cap`]). A portal that floods
//! thousands of jobs therefore neither fills the slots nor stands in front of another
//! portal's job.
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Jobs of a portal allowed to run at once in one process, per request/s of its rate:
/// a job spends most of its run waiting (for the portal's bucket, and for two or three
/// Postgres commits), so a portal moving 25 `user_info` jobs a second per request/s needs
/// 25 × its run time running at once to keep its batches full. Measured: 100 for a
/// standard portal (2/s) held it to 22 jobs/s when commits took half a second on a busy
/// machine; 256 kept 50 jobs/s. Slow custom plans get fewer, the rest of a flood waits
/// here, holding no lease and no heartbeat.
const RUNNING_PER_REQUEST_PER_SEC: f64 = 128.0;

/// The running cap of a portal with this rate: standard (2/s) and Enterprise (5/s) both
/// reach `ceiling` (256), a 0.5/s custom plan gets 64.
pub(crate) fn running_cap(rate_per_sec: f64, ceiling: usize) -> usize {
    let cap = (rate_per_sec * RUNNING_PER_REQUEST_PER_SEC).ceil();
    if cap.is_finite() && cap >= 1.0 {
        (cap as usize).clamp(MIN_RUNNING_CAP, ceiling.max(MIN_RUNNING_CAP))
    } else {
        MIN_RUNNING_CAP
    }
}

/// A slow custom plan still gets a few jobs into one batch.
const MIN_RUNNING_CAP: usize = 8;

pub(crate) struct Admission<T> {
    state: Mutex<State<T>>,
    changed: Notify,
}

struct State<T> {
    waiting: HashMap<i64, VecDeque<T>>,
    /// Portals with waiting jobs, in the order they get their next turn.
    turns: VecDeque<i64>,
    running: HashMap<i64, usize>,
    /// Each portal's running cap, as its latest arrival said.
    caps: HashMap<i64, usize>,
}

impl<T> Admission<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                waiting: HashMap::new(),
                turns: VecDeque::new(),
                running: HashMap::new(),
                caps: HashMap::new(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A received job of `portal`, which may run `cap` jobs at once.
    pub(crate) fn push(&self, portal: i64, cap: usize, arrival: T) {
        let mut st = self.lock();
        st.caps.insert(portal, cap.max(1));
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
            let cap = st.caps.get(&portal).copied().unwrap_or(1);
            if running >= cap {
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
                if !st.waiting.contains_key(&portal) {
                    st.caps.remove(&portal);
                }
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
        let admission = Admission::new();
        for i in 0..100 {
            admission.push(1, 2, i);
        }
        admission.push(2, 2, 1000);
        let order: Vec<(i64, i32)> = std::iter::from_fn(|| admission.next()).collect();
        // Portal 1 runs at most 2 at once; portal 2's job is not behind portal 1's 100.
        assert_eq!(order, vec![(1, 0), (2, 1000), (1, 1)]);
        assert_eq!(admission.waiting(), 98);
        admission.done(1);
        assert_eq!(admission.next(), Some((1, 2)));
    }

    #[test]
    fn each_portal_runs_up_to_its_own_cap() {
        let admission = Admission::new();
        for i in 0..10 {
            admission.push(1, 1, i);
            admission.push(2, 3, 100 + i);
        }
        let order: Vec<(i64, i32)> = std::iter::from_fn(|| admission.next()).collect();
        assert_eq!(order, vec![(1, 0), (2, 100), (2, 101), (2, 102)]);
        // A finished job of portal 2 lets only portal 2 start another.
        admission.done(2);
        assert_eq!(admission.next(), Some((2, 103)));
        assert_eq!(admission.next(), None);
    }

    #[test]
    fn the_running_cap_follows_the_portals_rate() {
        assert_eq!(running_cap(2.0, 256), 256);
        assert_eq!(running_cap(5.0, 256), 256);
        assert_eq!(running_cap(0.5, 256), 64);
        assert_eq!(running_cap(100_000.0, 256), 256);
        assert_eq!(running_cap(0.01, 256), MIN_RUNNING_CAP);
        assert_eq!(running_cap(f64::NAN, 256), MIN_RUNNING_CAP);
    }
}
