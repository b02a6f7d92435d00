//! What simulated portals saw of the jobs a bench fired: each accepted
//! `bizproc.event.send`, whether it reported success, and how long after its call it came.
use std::time::{Duration, Instant};

use b24flow_sim::{EventSend, Portal};

/// How often the portals are looked at while waiting.
const LOOK_EVERY: Duration = Duration::from_millis(200);

pub(crate) struct Answers {
    pub(crate) sends: Vec<EventSend>,
}

impl Answers {
    /// Every answer the portals have so far.
    pub(crate) fn collect(portals: &[Portal]) -> Self {
        Self {
            sends: portals.iter().flat_map(Portal::event_sends).collect(),
        }
    }

    /// Answers whose `error_text` is empty: the activity did what was asked.
    pub(crate) fn succeeded(&self) -> usize {
        self.sends
            .iter()
            .filter(|s| s.return_values["error_text"] == "")
            .count()
    }

    pub(crate) fn failed(&self) -> usize {
        self.sends.len() - self.succeeded()
    }

    /// From each workflow reaching the activity to its `event.send`, shortest first.
    pub(crate) fn latencies(&self) -> Vec<Duration> {
        let mut latencies: Vec<Duration> = self
            .sends
            .iter()
            .map(|s| s.at.duration_since(s.fired_at))
            .collect();
        latencies.sort_unstable();
        latencies
    }

    /// From the first call to the last answer.
    pub(crate) fn span(&self) -> Duration {
        let first_call = self.sends.iter().map(|s| s.fired_at).min();
        let last_answer = self.sends.iter().map(|s| s.at).max();
        match (first_call, last_answer) {
            (Some(from), Some(to)) => to.saturating_duration_since(from),
            _ => Duration::ZERO,
        }
    }
}

/// How many answers the portals hold so far.
pub(crate) fn answered_count(portals: &[Portal]) -> usize {
    portals.iter().map(Portal::event_send_count).sum()
}

/// Waits until the portals hold `expected` answers, or until `stall` passed without a new
/// one (a job that never answers must not hang the bench). `between_looks` runs on every
/// look with the count so far (progress, process readings).
pub(crate) async fn wait_for_answers(
    portals: &[Portal],
    expected: usize,
    stall: Duration,
    mut between_looks: impl FnMut(usize),
) -> Answers {
    let (mut seen, mut last_new) = (0usize, Instant::now());
    loop {
        let count = answered_count(portals);
        between_looks(count);
        if count > seen {
            (seen, last_new) = (count, Instant::now());
        }
        if count >= expected || last_new.elapsed() > stall {
            return Answers::collect(portals);
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Why the ingress did not accept a fired call (its status and error code, or why it was
/// not sent); `None` when it was accepted.
pub(crate) fn refusal(fired: &anyhow::Result<b24flow_sim::FiredCall>) -> Option<String> {
    match fired {
        Ok(fired) if fired.status.is_success() => None,
        Ok(fired) => {
            let code = serde_json::from_str::<serde_json::Value>(&fired.body)
                .ok()
                .and_then(|b| b["error"].as_str().map(str::to_string))
                .unwrap_or_default();
            Some(format!("{} {code}", fired.status.as_u16()))
        }
        Err(error) => Some(format!("not sent: {}", error.root_cause())),
    }
}
