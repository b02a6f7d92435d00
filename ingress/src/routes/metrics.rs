//! `/metrics`: the process's counters and histograms, plus gauges read at scrape time (jobs
//! waiting or running by state and activity, queue depths). Behind the operator token on
//! the main listener; open on `B24FLOW_METRICS_LISTEN` when that is set (a private address).
use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use b24flow_common::db::ops;
use b24flow_common::metrics::{self, MAX_CODE_LABELS};

use crate::operator::Operator;
use crate::AppState;

/// A scrape never waits longer than this for Postgres or RabbitMQ.
const GAUGE_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn with_token(_op: Operator, State(state): State<AppState>) -> impl IntoResponse {
    open(State(state)).await
}

pub async fn open(State(state): State<AppState>) -> impl IntoResponse {
    let _ = tokio::time::timeout(GAUGE_TIMEOUT, refresh_jobs(&state)).await;
    let _ = tokio::time::timeout(GAUGE_TIMEOUT, refresh_queues(&state)).await;
    (
        [("content-type", "text/plain; version=0.0.4")],
        metrics::render(),
    )
}

async fn refresh_jobs(state: &AppState) {
    let Ok(client) = state.db.get().await else {
        return;
    };
    let Ok(rows) = ops::current_by_status_and_code(&client).await else {
        return;
    };
    for ((status, code), count) in bounded(rows) {
        metrics::JOBS_CURRENT
            .with_label_values(&[&status, &code])
            .set(count);
    }
}

/// Keeps the [`MAX_CODE_LABELS`] busiest codes and sums the rest as `other`; every status
/// is present (zero when empty, `other` even when idle) so alerts see a value, not a gap.
fn bounded(rows: Vec<(String, String, i64)>) -> HashMap<(String, String), i64> {
    let mut totals: HashMap<&str, i64> = HashMap::new();
    for (_, code, n) in &rows {
        *totals.entry(code).or_default() += n;
    }
    let mut codes: Vec<(&str, i64)> = totals.into_iter().collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: Vec<String> = codes
        .iter()
        .take(MAX_CODE_LABELS)
        .map(|(c, _)| c.to_string())
        .collect();
    metrics::JOBS_CURRENT.reset();
    let mut out: HashMap<(String, String), i64> = HashMap::new();
    for code in kept.iter().map(String::as_str).chain(["other"]) {
        for status in ["queued", "retrying", "paused", "running"] {
            out.insert((status.to_string(), code.to_string()), 0);
        }
    }
    for (status, code, n) in rows {
        let code = if kept.contains(&code) {
            code
        } else {
            "other".to_string()
        };
        *out.entry((status, code)).or_default() += n;
    }
    out
}

async fn refresh_queues(state: &AppState) {
    let Ok(depths) = state.publisher.queue_depths().await else {
        return;
    };
    let topology = state.publisher.topology();
    for depth in depths {
        let queue = if depth.name == topology.work_queue() {
            "work"
        } else {
            "dead"
        };
        metrics::QUEUE_MESSAGES
            .with_label_values(&[queue])
            .set(i64::from(depth.messages));
        metrics::QUEUE_CONSUMERS
            .with_label_values(&[queue])
            .set(i64::from(depth.consumers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_past_the_label_budget_are_summed_as_other() {
        let rows: Vec<(String, String, i64)> = (0..MAX_CODE_LABELS + 5)
            .map(|i| ("queued".to_string(), format!("code{i:03}"), 100 - i as i64))
            .collect();
        let out = bounded(rows);
        let codes: std::collections::HashSet<&str> = out.keys().map(|(_, c)| c.as_str()).collect();
        assert_eq!(codes.len(), MAX_CODE_LABELS + 1);
        let other: i64 = out
            .iter()
            .filter(|((_, c), _)| c == "other")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            other,
            (MAX_CODE_LABELS as i64..MAX_CODE_LABELS as i64 + 5)
                .map(|i| 100 - i)
                .sum::<i64>()
        );
    }
}
