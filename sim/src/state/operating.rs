//! The per-method time budget (protocol.md §7.2), as tests set it: a method's reported
//! `time.operating` and `operating_reset_at`, and a block during which its calls (alone or
//! inside a batch) get 429 `OPERATION_TIME_LIMIT`.
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

#[derive(Default)]
pub(crate) struct Operating {
    methods: HashMap<String, Budget>,
    refusals: HashMap<String, u64>,
}

struct Budget {
    operating: f64,
    reset_at: f64,
    blocked_until: f64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Operating {
    /// From now on `method` reports `operating` seconds used, its window resetting after
    /// `reset_after`; with `blocked`, its calls are refused until then.
    pub(crate) fn set(
        &mut self,
        method: &str,
        operating: f64,
        reset_after: Duration,
        blocked: bool,
    ) {
        // Whole seconds, as Bitrix24 reports `operating_reset_at`.
        let reset_at = (unix_now() + reset_after.as_secs_f64()).ceil();
        self.methods.insert(
            method.to_lowercase(),
            Budget {
                operating,
                reset_at,
                blocked_until: if blocked { reset_at } else { 0.0 },
            },
        );
    }

    /// Blocks `method` until the window its answers already announced resets (or for
    /// `duration` when they announced none), as Bitrix24 does once the budget is spent.
    pub(crate) fn block(&mut self, method: &str, duration: Duration) {
        let now = unix_now();
        match self.methods.get_mut(&method.to_lowercase()) {
            Some(b) if b.reset_at > now => {
                b.operating = 480.0;
                b.blocked_until = b.reset_at;
            }
            _ => self.set(method, 480.0, duration, true),
        }
    }

    /// Whether a call of `method` may run now; a refused call of a blocked method is counted.
    pub(crate) fn admits(&mut self, method: &str) -> bool {
        let now = unix_now();
        let blocked = self
            .methods
            .get(method)
            .is_some_and(|b| b.blocked_until > now);
        if blocked {
            *self.refusals.entry(method.to_string()).or_default() += 1;
        }
        !blocked
    }

    /// Puts the method's budget into an answer's `time`.
    pub(crate) fn annotate(&mut self, method: &str, time: &mut Value) {
        let now = unix_now();
        if self.methods.get(method).is_some_and(|b| b.reset_at <= now) {
            self.methods.remove(method);
        }
        if let (Some(b), Some(t)) = (self.methods.get(method), time.as_object_mut()) {
            t.insert("operating".into(), serde_json::json!(b.operating));
            t.insert(
                "operating_reset_at".into(),
                serde_json::json!(b.reset_at as i64),
            );
        }
    }

    pub(crate) fn refusals(&self, method: &str) -> u64 {
        self.refusals
            .get(&method.to_lowercase())
            .copied()
            .unwrap_or(0)
    }
}
