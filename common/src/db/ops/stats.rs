//! Counts and time series for the overview, the API and `b24flow jobs stats`.
use chrono::{DateTime, DurationRound, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};

use crate::db::DbError;

/// Jobs in one state for one portal or activity.
#[derive(Clone, Debug, Serialize)]
pub struct CountRow {
    /// Portal domain, or activity code.
    pub key: String,
    pub portal_id: Option<i64>,
    pub state: String,
    pub count: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Counts {
    /// Totals by state (with `retrying` counted inside `queued` and on its own).
    pub by_state: Vec<(String, i64)>,
    pub by_portal: Vec<CountRow>,
    pub by_activity: Vec<CountRow>,
}

pub async fn counts(client: &impl GenericClient) -> Result<Counts, DbError> {
    let by_state = client
        .query(
            "SELECT state, count(*) FROM jobs GROUP BY state
             UNION ALL
             SELECT 'retrying', count(*) FROM jobs WHERE state = 'queued' AND last_error IS NOT NULL
             ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    let rows = client
        .query(
            "SELECT p.domain, p.id, j.state, count(*) FROM jobs j JOIN portals p ON p.id = j.portal_id
             GROUP BY p.domain, p.id, j.state ORDER BY p.domain, j.state",
            &[],
        )
        .await?;
    let by_portal = rows
        .iter()
        .map(|r| {
            Ok(CountRow {
                key: r.try_get(0)?,
                portal_id: Some(r.try_get(1)?),
                state: r.try_get(2)?,
                count: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let rows = client
        .query(
            "SELECT code, state, count(*) FROM jobs GROUP BY code, state ORDER BY code, state",
            &[],
        )
        .await?;
    let by_activity = rows
        .iter()
        .map(|r| {
            Ok(CountRow {
                key: r.try_get(0)?,
                portal_id: None,
                state: r.try_get(1)?,
                count: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Counts {
        by_state,
        by_portal,
        by_activity,
    })
}

/// The span of a time series: the last hour by minute, or the last day by half hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Window::Hour),
            "day" => Some(Window::Day),
            _ => None,
        }
    }
    fn bucket(self) -> chrono::Duration {
        match self {
            Window::Hour => chrono::Duration::minutes(1),
            Window::Day => chrono::Duration::minutes(30),
        }
    }
    fn buckets(self) -> i32 {
        match self {
            Window::Hour => 60,
            Window::Day => 48,
        }
    }
}

/// Activity jobs accepted and finished in one bucket, and how long the finished ones took
/// from acceptance to answer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesBucket {
    pub start: DateTime<Utc>,
    pub accepted: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub discarded: i64,
    pub latency_p50_seconds: Option<f64>,
    pub latency_p95_seconds: Option<f64>,
}

/// Throughput and latency per bucket, oldest first, every bucket present (zeros included).
pub async fn timeseries(
    client: &impl GenericClient,
    window: Window,
) -> Result<Vec<SeriesBucket>, DbError> {
    let step = window.bucket();
    let now = Utc::now();
    let last = now.duration_trunc(step).unwrap_or(now);
    let first = last - step * (window.buckets() - 1);
    let mut buckets: Vec<SeriesBucket> = (0..window.buckets())
        .map(|i| SeriesBucket {
            start: first + step * i,
            ..SeriesBucket::default()
        })
        .collect();
    let step_secs = step.num_seconds() as f64;
    let count = buckets.len();
    let index = |at: DateTime<Utc>| -> Option<usize> {
        let i = ((at - first).num_milliseconds() as f64 / 1000.0 / step_secs).floor();
        (i >= 0.0 && (i as usize) < count).then_some(i as usize)
    };
    let finished = client
        .query(
            "SELECT date_bin(make_interval(secs => $2), finished_at, $1) AS bucket,
                    count(*) FILTER (WHERE state = 'succeeded'),
                    count(*) FILTER (WHERE state = 'failed'),
                    count(*) FILTER (WHERE state = 'discarded'),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)),
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
             FROM jobs WHERE kind = 'activity' AND finished_at >= $1
             GROUP BY 1",
            &[&first, &step_secs],
        )
        .await?;
    for r in &finished {
        let Some(i) = index(r.try_get(0)?) else {
            continue;
        };
        let b = &mut buckets[i];
        b.succeeded = r.try_get(1)?;
        b.failed = r.try_get(2)?;
        b.discarded = r.try_get(3)?;
        b.latency_p50_seconds = r.try_get(4)?;
        b.latency_p95_seconds = r.try_get(5)?;
    }
    let accepted = client
        .query(
            "SELECT date_bin(make_interval(secs => $2), created_at, $1), count(*)
             FROM jobs WHERE kind = 'activity' AND created_at >= $1 GROUP BY 1",
            &[&first, &step_secs],
        )
        .await?;
    for r in &accepted {
        if let Some(i) = index(r.try_get(0)?) {
            buckets[i].accepted = r.try_get(1)?;
        }
    }
    Ok(buckets)
}

/// Jobs waiting or running now as `(status, code, count)`: status is `queued`, `retrying`,
/// `paused` or `running` (for the `/metrics` gauges).
pub async fn current_by_status_and_code(
    client: &impl GenericClient,
) -> Result<Vec<(String, String, i64)>, DbError> {
    let rows = client
        .query(
            "SELECT CASE WHEN j.state = 'queued' AND p.paused_at IS NOT NULL THEN 'paused'
                         WHEN j.state = 'queued' AND j.last_error IS NOT NULL THEN 'retrying'
                         ELSE j.state END,
                    j.code, count(*)
             FROM jobs j JOIN portals p ON p.id = j.portal_id
             WHERE j.state IN ('queued', 'running')
             GROUP BY 1, 2",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}
