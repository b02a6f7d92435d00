//! Every metric name in one place so the ingress, the worker and the dashboard stay in step.
//! Metrics live in the process-wide default registry that `/metrics` renders.
use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    HistogramVec, IntCounter, IntCounterVec, IntGauge,
};

/// Activity calls answered by the ingress, by `outcome` (accepted, duplicate, or a rejection code).
pub static INGRESS_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "b24flow_ingress_calls_total",
        "Activity calls received by the ingress, by outcome",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Jobs that reached a terminal state, by activity code and state.
pub static JOBS_FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "b24flow_jobs_finished_total",
        "Jobs that reached a terminal state",
        &["code", "state"]
    )
    .expect("metric registers once")
});

/// Attempts that ended in a retry, by activity code and error kind.
pub static JOB_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "b24flow_job_retries_total",
        "Job attempts scheduled for a retry",
        &["code", "kind"]
    )
    .expect("metric registers once")
});

/// Seconds from the call's acceptance to its `bizproc.event.send`.
pub static JOB_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "b24flow_job_seconds",
        "Seconds from accepting a call to reporting its result",
        &["code"],
        vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]
    )
    .expect("metric registers once")
});

/// Bitrix24 REST requests, by method (`batch` for batches) and outcome class.
pub static REST_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "b24flow_rest_requests_total",
        "HTTP requests sent to Bitrix24 portals",
        &["method", "outcome"]
    )
    .expect("metric registers once")
});

/// OAuth refreshes, by outcome.
pub static OAUTH_REFRESHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "b24flow_oauth_refreshes_total",
        "OAuth token refreshes",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Jobs currently being run by this process.
pub static JOBS_IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("b24flow_jobs_in_flight", "Jobs running in this process")
        .expect("metric registers once")
});

/// Messages re-published by the sweeper (never confirmed, retry due, or orphaned).
pub static SWEPT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "b24flow_sweeper_jobs_total",
        "Jobs handled by the sweeper",
        &["action"]
    )
    .expect("metric registers once")
});

/// Jobs of redelivered messages that carried several, published again one per message
/// (see the worker's consumer): a count that grows after every worker that stopped with
/// jobs unacked.
pub static REDELIVERED_SPLIT: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "b24flow_worker_redelivered_jobs_split_total",
        "Jobs of redelivered multi-job messages published again one per message"
    )
    .expect("metric registers once")
});

/// Renders the default registry in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    let _ = encoder.encode(&prometheus::gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Attempts a job took when it ended, by activity code (unknown codes share one label).
pub static JOB_ATTEMPTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "b24flow_job_attempts",
        "Attempts a job took, observed when it ends",
        &["code"],
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 25.0]
    )
    .expect("metric registers once")
});

/// Bitrix24 answers that mean "slow down" (429) or "overloaded" (503), by status.
pub static REST_THROTTLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "b24flow_rest_throttled_total",
        "Bitrix24 REST answers with HTTP 429 or 503",
        &["status"]
    )
    .expect("metric registers once")
});

/// Jobs waiting or running now, by state (`queued`, `retrying`, `paused`, `running`) and
/// activity code (`catalogue::Codes::label`); refreshed from Postgres when `/metrics` is
/// scraped.
pub static JOBS_CURRENT: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "b24flow_jobs_current",
        "Jobs waiting or running now, by state and activity code",
        &["state", "code"]
    )
    .expect("metric registers once")
});

/// Messages and consumers of the work and dead-letter queues (`queue` = `work` | `dead`),
/// refreshed from RabbitMQ when `/metrics` is scraped.
pub static QUEUE_MESSAGES: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "b24flow_queue_messages",
        "Messages ready in a RabbitMQ queue",
        &["queue"]
    )
    .expect("metric registers once")
});
pub static QUEUE_CONSUMERS: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "b24flow_queue_consumers",
        "Consumers of a RabbitMQ queue",
        &["queue"]
    )
    .expect("metric registers once")
});

pub static REST_BATCHED_COMMANDS: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "b24flow_rest_batched_commands",
        "Commands of several jobs sent together in one batch request",
        vec![2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    )
    .expect("metric registers once")
});

pub static REST_LIMITER_WAIT: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "b24flow_rest_limiter_wait_seconds",
        "Time a request waited for its portal's shared rate limiter",
        vec![0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 30.0]
    )
    .expect("metric registers once")
});

/// Calls stored together by one group commit of the ingress.
pub static INGRESS_GROUP_SIZE: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "b24flow_ingress_group_size",
        "Activity calls stored in one statement and one commit",
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]
    )
    .expect("metric registers once")
});

/// Time one group spends in each stage (`commit`, `confirm`): where a call's wait goes.
pub static INGRESS_GROUP_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "b24flow_ingress_group_seconds",
        "Time one group commit spends storing (commit) and waiting for confirms (confirm)",
        &["stage"],
        vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 3.0]
    )
    .expect("metric registers once")
});
