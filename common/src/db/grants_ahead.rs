//! Requests one process took ahead from portals' shared buckets (migration V17), spent by
//! its next requests to the same portal. Each was already counted in the bucket when it
//! was taken, so spending it needs no statement, and one that lapses unspent only leaves
//! the portal a little less of a bucket that was at most a quarter full.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::portal_limits::Acquired;

/// How long a request taken ahead may wait to be spent. The bucket counted it when it was
/// taken, so one sent later drains there a little early: at most this long times the rate,
/// under one request on the standard plan, which the headroom absorbs.
const LIFETIME: Duration = Duration::from_millis(250);
/// Portals remembered at most; past it, the lapsed ones are dropped.
const MAX_PORTALS: usize = 10_000;

#[derive(Clone, Default)]
pub(crate) struct GrantedAhead {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    portals: HashMap<i64, Ahead>,
    /// Moves on with every forget, so a group asked before one keeps nothing after it.
    forgets: u64,
}

/// When a group was asked, as [`GrantedAhead::keep`] needs to know it.
#[derive(Clone, Copy)]
pub(crate) struct Asked(u64);

struct Ahead {
    left: u32,
    taken: Instant,
    /// The portal's parked methods as the grant that took these saw them.
    parked: Value,
}

impl GrantedAhead {
    /// A request granted ahead for the portal, while one is fresh.
    pub(crate) fn spend(&self, portal_id: i64) -> Option<Acquired> {
        let portals = &mut self.lock().portals;
        let ahead = portals.get_mut(&portal_id)?;
        if ahead.taken.elapsed() > LIFETIME {
            portals.remove(&portal_id);
            return None;
        }
        ahead.left -= 1;
        let granted = Acquired {
            granted: true,
            wait_secs: 0.0,
            parked: ahead.parked.clone(),
        };
        if ahead.left == 0 {
            portals.remove(&portal_id);
        }
        Some(granted)
    }

    /// Called before a group's statement, for its [`GrantedAhead::keep`].
    pub(crate) fn asking(&self) -> Asked {
        Asked(self.lock().forgets)
    }

    /// Keeps what a group took ahead. Each answer carries its portal's count, so a portal
    /// asked twice is written twice with the same. Nothing is kept when something was
    /// forgotten since the group was asked: its bucket may have answered under a plan or a
    /// state now gone.
    pub(crate) fn keep(&self, asked: Asked, portal_ids: &[i64], answers: &[(Acquired, u32)]) {
        let taken = Instant::now();
        let mut inner = self.lock();
        if inner.forgets != asked.0 {
            return;
        }
        let portals = &mut inner.portals;
        if portals.len() >= MAX_PORTALS {
            portals.retain(|_, a| a.taken.elapsed() <= LIFETIME);
        }
        for (portal_id, (answer, ahead)) in portal_ids.iter().zip(answers) {
            if *ahead == 0 {
                continue;
            }
            // Replaces what is left of an earlier take: left over, it would only lapse.
            portals.insert(
                *portal_id,
                Ahead {
                    left: *ahead,
                    taken,
                    parked: answer.parked.clone(),
                },
            );
        }
    }

    pub(crate) fn forget(&self, portal_id: i64) {
        let mut inner = self.lock();
        inner.forgets += 1;
        inner.portals.remove(&portal_id);
    }

    pub(crate) fn forget_all(&self) {
        let mut inner = self.lock();
        inner.forgets += 1;
        inner.portals.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(parked: Value) -> Acquired {
        Acquired {
            granted: true,
            wait_secs: 0.0,
            parked,
        }
    }

    #[test]
    fn a_portal_spends_what_its_group_took_ahead_once_each() {
        let ahead = GrantedAhead::default();
        let parked = serde_json::json!({"crm.deal.add": 1_900_000_000});
        // Portal 7 asked twice in the group (2 taken ahead, on both of its rows), 8 once
        // with none left to take.
        ahead.keep(
            ahead.asking(),
            &[7, 8, 7],
            &[
                (granted(parked.clone()), 2),
                (granted(Value::Null), 0),
                (granted(parked.clone()), 2),
            ],
        );
        for _ in 0..2 {
            let spent = ahead.spend(7).expect("taken ahead");
            assert!(spent.granted);
            assert_eq!(spent.parked, parked);
        }
        assert!(ahead.spend(7).is_none(), "only two were taken");
        assert!(ahead.spend(8).is_none());
    }

    #[test]
    fn what_was_taken_ahead_lapses_and_can_be_forgotten() {
        let ahead = GrantedAhead::default();
        ahead.keep(
            ahead.asking(),
            &[1, 2, 3],
            &vec![(granted(Value::Null), 3); 3],
        );
        ahead.forget(1);
        assert!(ahead.spend(1).is_none());
        assert!(ahead.spend(2).is_some());
        ahead.forget_all();
        assert!(ahead.spend(2).is_none());
        ahead.keep(ahead.asking(), &[4], &[(granted(Value::Null), 1)]);
        std::thread::sleep(LIFETIME + Duration::from_millis(20));
        assert!(ahead.spend(4).is_none(), "lapsed");
        // A group asked before a forget keeps nothing: its answer may be from before it.
        let asked = ahead.asking();
        ahead.forget(9);
        ahead.keep(asked, &[5], &[(granted(Value::Null), 1)]);
        assert!(ahead.spend(5).is_none(), "asked before the forget");
    }
}
