//! Each job attempt's REST call log (migration V10), one row per attempt.
use uuid::Uuid;

use super::{DbError, GenericClient, Prepared};
use crate::bitrix::call_log::RestCalls;

/// The statement storing attempts' logs from `$rows` (a query giving `job_id, attempt,
/// calls, omitted`); a retried store of the same attempt replaces its log. [`save`] and the
/// grouped job ends (`jobs::finish_many`) both store logs with it.
macro_rules! store_rest_calls {
    ($rows:literal) => {
        concat!(
            "INSERT INTO job_rest_calls (job_id, attempt, calls, omitted) ",
            $rows,
            " ON CONFLICT (job_id, attempt) DO UPDATE",
            " SET calls = EXCLUDED.calls, omitted = EXCLUDED.omitted, recorded_at = now()"
        )
    };
}
pub(crate) use store_rest_calls;

/// Stores an attempt's log in one statement (a retried store of the same attempt replaces it).
pub async fn save(
    client: &impl GenericClient,
    job_id: Uuid,
    attempt: i32,
    calls: &RestCalls,
) -> Result<(), DbError> {
    let (json, omitted) = encode(calls)?;
    client
        .execute_prepared(
            store_rest_calls!("VALUES ($1, $2, $3, $4)"),
            &[&job_id, &attempt, &json, &omitted],
        )
        .await?;
    Ok(())
}

/// A log as its row stores it: the calls as JSON, and how many were left out.
pub(crate) fn encode(calls: &RestCalls) -> Result<(serde_json::Value, i32), DbError> {
    let json = serde_json::to_value(&calls.calls)
        .map_err(|e| DbError::Config(format!("REST call log: {e}")))?;
    Ok((json, i32::try_from(calls.omitted).unwrap_or(i32::MAX)))
}

/// A job's logs by attempt number, oldest first. A log that no longer reads (written by
/// another version) is shown empty rather than failing the job's page.
pub async fn for_job(
    client: &impl GenericClient,
    job_id: Uuid,
) -> Result<Vec<(i32, RestCalls)>, DbError> {
    let rows = client
        .query_prepared(
            "SELECT attempt, calls, omitted FROM job_rest_calls WHERE job_id = $1 ORDER BY attempt",
            &[&job_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let calls: serde_json::Value = r.try_get(1)?;
            let omitted: i32 = r.try_get(2)?;
            Ok((
                r.try_get(0)?,
                RestCalls {
                    calls: serde_json::from_value(calls).unwrap_or_default(),
                    omitted: u32::try_from(omitted).unwrap_or(0),
                },
            ))
        })
        .collect()
}
