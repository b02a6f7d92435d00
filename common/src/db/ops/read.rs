//! Reading jobs and portals for operators. Secrets never leave here: secret properties live
//! encrypted in `job_secrets` and are only announced, and suspicious keys are masked.
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::filter::{where_sql, Cursor, JobFilter, ACTIONABLE_SQL, ERROR_CLASS_SQL};
use crate::bitrix::call_log::RestCall;
use crate::db::DbError;

#[derive(Clone, Debug, Serialize)]
pub struct JobSummary {
    pub id: Uuid,
    pub portal_id: i64,
    pub portal_domain: String,
    pub kind: String,
    pub code: String,
    pub state: String,
    /// `state`, refined for queued jobs: `retrying` after a transient error, `paused` while
    /// an operator holds the portal.
    pub status: String,
    pub error_class: Option<String>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    /// Retry and discard apply (queued, or failed without having answered the workflow).
    pub actionable: bool,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobPage {
    pub jobs: Vec<JobSummary>,
    /// Pass back as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn summary_columns() -> String {
    format!(
        "j.id, j.portal_id, p.domain AS portal_domain, j.kind, j.code, j.state,
         CASE WHEN j.state = 'queued' AND p.paused_at IS NOT NULL THEN 'paused'
              WHEN j.state = 'queued' AND j.last_error IS NOT NULL THEN 'retrying'
              ELSE j.state END AS status,
         ({ERROR_CLASS_SQL}) AS error_class, j.attempt, j.max_attempts, j.last_error,
         {ACTIONABLE_SQL} AS actionable, j.run_at, j.created_at, j.updated_at, j.finished_at"
    )
}

fn summary_from_row(r: &tokio_postgres::Row) -> Result<JobSummary, DbError> {
    Ok(JobSummary {
        id: r.try_get("id")?,
        portal_id: r.try_get("portal_id")?,
        portal_domain: r.try_get("portal_domain")?,
        kind: r.try_get("kind")?,
        code: r.try_get("code")?,
        state: r.try_get("state")?,
        status: r.try_get("status")?,
        error_class: r.try_get("error_class")?,
        attempt: r.try_get("attempt")?,
        max_attempts: r.try_get("max_attempts")?,
        last_error: r.try_get("last_error")?,
        actionable: r.try_get("actionable")?,
        run_at: r.try_get("run_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// Jobs matching `filter`, newest first, `limit` per page, after `cursor`.
pub async fn list_jobs(
    client: &impl GenericClient,
    filter: &JobFilter,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<JobPage, DbError> {
    let sql = format!(
        "SELECT {} FROM jobs j JOIN portals p ON p.id = j.portal_id
         WHERE {}
           AND ($8::timestamptz IS NULL OR (j.created_at, j.id) < ($8, $9::uuid))
         ORDER BY j.created_at DESC, j.id DESC
         LIMIT $10",
        summary_columns(),
        where_sql()
    );
    let params = filter.params();
    let (after_at, after_id) = (cursor.map(|c| c.created_at), cursor.map(|c| c.id));
    let fetch = limit + 1;
    let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.refs().to_vec();
    args.extend([
        &after_at as &(dyn tokio_postgres::types::ToSql + Sync),
        &after_id,
        &fetch,
    ]);
    let rows = client.query(&sql, &args).await?;
    let mut jobs = rows
        .iter()
        .map(summary_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if jobs.len() as i64 > limit {
        jobs.truncate(limit as usize);
        jobs.last().map(|j| {
            Cursor {
                created_at: j.created_at,
                id: j.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(JobPage { jobs, next_cursor })
}

#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub attempt: i32,
    pub from_state: Option<String>,
    pub to_state: String,
    pub message: Option<String>,
    /// The operator who caused it; absent for the system's own steps.
    pub actor: Option<String>,
}

/// One attempt, as the history tells it.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    pub number: i32,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The state the attempt left the job in (`running` while it runs).
    pub result: String,
    pub message: Option<String>,
    /// The REST commands the attempt made (stored when it ended; the first ones up to the
    /// cap), and how many more there were.
    pub rest_calls: Vec<RestCall>,
    pub rest_calls_omitted: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub workflow_id: Option<String>,
    pub document_id: Value,
    /// Activity properties; values of keys that look secret are masked.
    pub properties: Value,
    /// Secret properties (e.g. an SMTP password) are held encrypted and never shown.
    pub has_secret_properties: bool,
    pub timeout_duration: i64,
    /// What the activity produced (and what was or will be sent to the workflow).
    pub answer: Option<Value>,
    /// The workflow got our `bizproc.event.send` (or no longer existed).
    pub answered: bool,
    pub portal_paused: bool,
    pub attempts: Vec<Attempt>,
    pub history: Vec<HistoryEntry>,
}

const MASK: &str = "********";

/// Masks values whose key looks like a secret, at any depth, in case one ever reached a row:
/// the ingress seals the catalogue's secret properties away before a call is stored.
fn mask_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = k.to_ascii_lowercase();
                    let secret = ["password", "secret", "token", "apikey", "api_key"]
                        .iter()
                        .any(|s| key.contains(s));
                    let v = if secret {
                        Value::String(MASK.into())
                    } else {
                        mask_secrets(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

pub async fn job_detail(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<JobDetail>, DbError> {
    let sql = format!(
        "SELECT {}, j.workflow_id, j.document_id, j.properties, j.timeout_duration, j.result,
                j.outcome, p.paused_at IS NOT NULL AS portal_paused,
                EXISTS (SELECT 1 FROM job_secrets s WHERE s.job_id = j.id) AS has_secret
         FROM jobs j JOIN portals p ON p.id = j.portal_id WHERE j.id = $1",
        summary_columns()
    );
    let Some(row) = client.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    let summary = summary_from_row(&row)?;
    let history = history(client, id).await?;
    let answered = summary.state != "running"
        && summary.state != "queued"
        && !summary
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with(super::UNANSWERED_PREFIX))
        && summary.kind == "activity";
    let mut attempts = attempts(&history);
    for (number, calls) in crate::db::rest_calls::for_job(client, id).await? {
        if let Some(a) = attempts.iter_mut().rev().find(|a| a.number == number) {
            a.rest_calls = calls.calls;
            a.rest_calls_omitted = calls.omitted;
        }
    }
    let result: Option<Value> = row.try_get("result")?;
    let outcome: Option<Value> = row.try_get("outcome")?;
    Ok(Some(JobDetail {
        workflow_id: row.try_get("workflow_id")?,
        document_id: row
            .try_get::<_, Option<Value>>("document_id")?
            .unwrap_or(Value::Null),
        properties: mask_secrets(&row.try_get::<_, Value>("properties")?),
        has_secret_properties: row.try_get("has_secret")?,
        timeout_duration: row.try_get("timeout_duration")?,
        answer: result.or(outcome).map(|v| mask_secrets(&v)),
        answered,
        portal_paused: row.try_get("portal_paused")?,
        attempts,
        history,
        summary,
    }))
}

async fn history(client: &impl GenericClient, id: Uuid) -> Result<Vec<HistoryEntry>, DbError> {
    let rows = client
        .query(
            // The call's acceptance is the job row's own `created_at` (no history row is
            // written for it); jobs stored before V15 have it as a row.
            "SELECT at, attempt, from_state, to_state, message, actor FROM (
                 SELECT j.created_at AS at, 0 AS attempt, NULL::text AS from_state,
                        'queued' AS to_state, 'accepted' AS message, NULL::text AS actor, 0::int8 AS id
                 FROM jobs j
                 WHERE j.id = $1 AND NOT EXISTS (
                     SELECT 1 FROM job_events e WHERE e.job_id = j.id AND e.from_state IS NULL)
                 UNION ALL
                 SELECT at, attempt, from_state, to_state, message, actor, id FROM job_events
                 WHERE job_id = $1
             ) history ORDER BY id",
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HistoryEntry {
                at: r.try_get(0)?,
                attempt: r.try_get(1)?,
                from_state: r.try_get(2)?,
                to_state: r.try_get(3)?,
                message: r.try_get(4)?,
                actor: r.try_get(5)?,
            })
        })
        .collect()
}

/// Each attempt starts with `queued → running` and ends with the next step out of `running`.
fn attempts(history: &[HistoryEntry]) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::new();
    for e in history {
        if e.to_state == "running" && e.from_state.as_deref() == Some("queued") {
            out.push(Attempt {
                number: e.attempt,
                started_at: e.at,
                ended_at: None,
                result: "running".into(),
                message: None,
                rest_calls: Vec::new(),
                rest_calls_omitted: 0,
            });
        } else if e.from_state.as_deref() == Some("running") && e.to_state != "running" {
            if let Some(a) = out
                .iter_mut()
                .rev()
                .find(|a| a.number == e.attempt && a.ended_at.is_none())
            {
                a.ended_at = Some(e.at);
                // Back to `queued` from a run means a retry was scheduled.
                a.result = if e.to_state == "queued" {
                    "retrying".into()
                } else {
                    e.to_state.clone()
                };
                a.message = e.message.clone();
            }
        }
    }
    out
}

#[derive(Clone, Debug, Serialize)]
pub struct PortalSummary {
    pub id: i64,
    pub member_id: String,
    pub domain: String,
    pub status: String,
    pub paused_at: Option<DateTime<Utc>>,
    pub paused_by: Option<String>,
    pub queued: i64,
    pub running: i64,
    pub failed_last_day: i64,
    pub succeeded_last_day: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PortalEvent {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub message: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PortalDetail {
    #[serde(flatten)]
    pub summary: PortalSummary,
    pub events: Vec<PortalEvent>,
}

const PORTAL_SQL: &str = "SELECT p.id, p.member_id, p.domain, p.status, p.paused_at, p.paused_by,
        count(*) FILTER (WHERE j.state = 'queued') AS queued,
        count(*) FILTER (WHERE j.state = 'running') AS running,
        count(*) FILTER (WHERE j.state = 'failed' AND j.finished_at > now() - interval '1 day') AS failed_last_day,
        count(*) FILTER (WHERE j.state = 'succeeded' AND j.finished_at > now() - interval '1 day') AS succeeded_last_day
     FROM portals p LEFT JOIN jobs j ON j.portal_id = p.id";

fn portal_from_row(r: &tokio_postgres::Row) -> Result<PortalSummary, DbError> {
    Ok(PortalSummary {
        id: r.try_get("id")?,
        member_id: r.try_get("member_id")?,
        domain: r.try_get("domain")?,
        status: r.try_get("status")?,
        paused_at: r.try_get("paused_at")?,
        paused_by: r.try_get("paused_by")?,
        queued: r.try_get("queued")?,
        running: r.try_get("running")?,
        failed_last_day: r.try_get("failed_last_day")?,
        succeeded_last_day: r.try_get("succeeded_last_day")?,
    })
}

/// Every portal with its queue and the last day's outcomes, busiest first.
pub async fn portals(client: &impl GenericClient) -> Result<Vec<PortalSummary>, DbError> {
    let sql =
        format!("SELECT * FROM ({PORTAL_SQL} GROUP BY p.id) s ORDER BY queued + running DESC, id");
    client
        .query(&sql, &[])
        .await?
        .iter()
        .map(portal_from_row)
        .collect()
}

/// One portal by id, domain or member_id, with its operators' actions (newest first).
pub async fn portal_detail(
    client: &impl GenericClient,
    portal: &str,
) -> Result<Option<PortalDetail>, DbError> {
    let sql = format!(
        "{PORTAL_SQL} WHERE p.id::text = $1 OR p.domain = $1 OR p.member_id = $1 GROUP BY p.id LIMIT 1"
    );
    let Some(row) = client.query_opt(&sql, &[&portal]).await? else {
        return Ok(None);
    };
    let summary = portal_from_row(&row)?;
    let events = client
        .query(
            "SELECT at, actor, action, message FROM portal_events
             WHERE portal_id = $1 ORDER BY id DESC LIMIT 100",
            &[&summary.id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(PortalEvent {
                at: r.try_get(0)?,
                actor: r.try_get(1)?,
                action: r.try_get(2)?,
                message: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Some(PortalDetail { summary, events }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_looking_keys_are_masked_at_any_depth() {
        let masked = mask_secrets(&json!({
            "smtp_password": "p", "subject": "hi",
            "nested": [{"api_token": "t", "to": "a@b"}]
        }));
        assert_eq!(masked["smtp_password"], MASK);
        assert_eq!(masked["subject"], "hi");
        assert_eq!(masked["nested"][0]["api_token"], MASK);
        assert_eq!(masked["nested"][0]["to"], "a@b");
    }
}
