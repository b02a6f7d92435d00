//! `/metrics`: the process's counters and histograms, plus gauges read at scrape time (jobs
//! waiting or running by state and activity, queue depths). Behind the operator token on
//! the main listener; open on `B24FLOW_METRICS_LISTEN` when that is set (a private address).
use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use b24flow_common::catalogue::Codes;
use b24flow_common::db::ops;
use b24flow_common::metrics;

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
    for ((status, code), count) in bounded(&state.activity_codes, rows) {
        metrics::JOBS_CURRENT
            .with_label_values(&[&status, &code])
            .set(count);
    }
}

/// Sums by `(status, catalogue label)`: unknown codes share `unknown`, so the label set is
/// bounded by the catalogue. Every status of every catalogue code is present (zero when
/// idle) so alerts see a value rather than a gap.
fn bounded(codes: &Codes, rows: Vec<(String, String, i64)>) -> HashMap<(String, String), i64> {
    metrics::JOBS_CURRENT.reset();
    let mut out: HashMap<(String, String), i64> = HashMap::new();
    for code in codes.labels() {
        for status in ["queued", "retrying", "paused", "running"] {
            out.insert((status.to_string(), code.to_string()), 0);
        }
    }
    for (status, code, n) in rows {
        *out.entry((status, codes.label(&code).to_string()))
            .or_default() += n;
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
    fn unknown_codes_share_one_label_and_idle_codes_read_zero() {
        let rows = vec![
            ("queued".to_string(), "made_up_1".to_string(), 2),
            ("queued".to_string(), "made_up_2".to_string(), 3),
            ("running".to_string(), "user_info".to_string(), 1),
        ];
        let codes = Codes::new(["user_info", "smtp_send"]);
        let out = bounded(&codes, rows);
        assert_eq!(out[&("queued".to_string(), "unknown".to_string())], 5);
        assert_eq!(out[&("running".to_string(), "user_info".to_string())], 1);
        assert_eq!(out[&("paused".to_string(), "smtp_send".to_string())], 0);
        assert_eq!(out[&("retrying".to_string(), "register".to_string())], 0);
        assert!(!out.keys().any(|(_, code)| code.starts_with("made_up")));
    }
}
