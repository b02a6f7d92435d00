//! Operators' actions. Each is one guarded statement that also appends to `job_events` (or
//! `portal_events`) with the operator's name, so the audit trail cannot disagree with the
//! rows. Jobs go back to `queued` with `published_at` cleared: the caller publishes them
//! now, and the sweeper does if that fails.
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::filter::{where_sql, JobFilter, ACTIONABLE_SQL};
use crate::db::DbError;

/// The most jobs one bulk action touches; repeat it for more.
pub const BULK_LIMIT: i64 = 10_000;

/// `Outcome::discarded` marks an answer an operator wrote.
pub const DISCARDED_BY_OPERATOR: &str = "discarded by an operator";

/// Which jobs an action applies to.
pub enum Target<'a> {
    Job(Uuid),
    Matching(&'a JobFilter),
}

/// A job an action put back in the queue (or, for `queued == false`, finished at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Requeued {
    pub id: Uuid,
    pub attempt: i32,
    pub queued: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ActionOutcome {
    pub jobs: Vec<Requeued>,
    /// The bulk limit was reached; more jobs may match.
    pub truncated: bool,
}

/// The `target` CTE: the actionable jobs of `target`, locked. Returns the SQL and the index
/// of the first free parameter.
fn target_cte(target: &Target<'_>) -> (String, usize) {
    match target {
        Target::Job(_) => (
            format!(
                "SELECT j.id, j.state AS old_state FROM jobs j
                 WHERE j.id = $1 AND {ACTIONABLE_SQL} FOR UPDATE OF j"
            ),
            2,
        ),
        Target::Matching(_) => (
            format!(
                "SELECT j.id, j.state AS old_state FROM jobs j JOIN portals p ON p.id = j.portal_id
                 WHERE {} AND {ACTIONABLE_SQL}
                 ORDER BY j.created_at LIMIT {BULK_LIMIT} FOR UPDATE OF j",
                where_sql()
            ),
            8,
        ),
    }
}

async fn run_action(
    client: &impl GenericClient,
    target: &Target<'_>,
    sql: &str,
    extra: &[&(dyn ToSql + Sync)],
) -> Result<ActionOutcome, DbError> {
    let filter_params;
    let id;
    let mut args: Vec<&(dyn ToSql + Sync)> = match target {
        Target::Job(job) => {
            id = *job;
            vec![&id]
        }
        Target::Matching(filter) => {
            filter_params = filter.params();
            filter_params.refs().to_vec()
        }
    };
    args.extend_from_slice(extra);
    let rows = client.query(sql, &args).await?;
    let jobs = rows
        .iter()
        .map(|r| {
            Ok(Requeued {
                id: r.try_get(0)?,
                attempt: r.try_get(1)?,
                queued: r.try_get::<_, String>(2)? == "queued",
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let truncated = matches!(target, Target::Matching(_)) && jobs.len() as i64 >= BULK_LIMIT;
    Ok(ActionOutcome { jobs, truncated })
}

/// Runs the targeted jobs now: a queued job skips its backoff; a failed job whose workflow
/// never got an answer gets one more attempt (which re-sends a stored answer rather than
/// running the activity again).
pub async fn retry(
    client: &impl GenericClient,
    target: &Target<'_>,
    actor: &str,
) -> Result<ActionOutcome, DbError> {
    let (cte, next) = target_cte(target);
    let sql = format!(
        "WITH target AS ({cte}), upd AS (
             UPDATE jobs j SET state = 'queued', run_at = now(), published_at = NULL,
                 lease_until = NULL, finished_at = NULL, updated_at = now(),
                 max_attempts = GREATEST(j.max_attempts, j.attempt + 1)
             FROM target t WHERE j.id = t.id
             RETURNING j.id, j.attempt, j.state, t.old_state
         ), ev AS (
             INSERT INTO job_events (job_id, attempt, from_state, to_state, message, actor)
             SELECT id, attempt, old_state, 'queued', 'retry requested by an operator', ${next}
             FROM upd
         )
         SELECT id, attempt, state FROM upd"
    );
    run_action(client, target, &sql, &[&actor]).await
}

/// Ends the targeted jobs with the operator's error. Activity jobs are answered through
/// the worker's normal report path (the stored outcome is sent with `bizproc.event.send`
/// and the job ends `discarded`), so the workflow gets exactly one answer; registration
/// jobs have nobody to answer and end at once.
pub async fn discard(
    client: &impl GenericClient,
    target: &Target<'_>,
    error_text: &str,
    actor: &str,
) -> Result<ActionOutcome, DbError> {
    let (cte, next) = target_cte(target);
    let (text, who) = (next, next + 1);
    let sql = format!(
        "WITH target AS ({cte}), upd AS (
             UPDATE jobs j SET
                 state = CASE WHEN j.kind = 'register' THEN 'discarded' ELSE 'queued' END,
                 finished_at = CASE WHEN j.kind = 'register' THEN now() END,
                 last_error = CASE WHEN j.kind = 'register' THEN ${text} ELSE j.last_error END,
                 outcome = CASE WHEN j.kind = 'register' THEN j.outcome ELSE jsonb_build_object(
                     'success', false, 'return_values', '{{}}'::jsonb,
                     'log_message', '{DISCARDED_BY_OPERATOR}', 'error_text', ${text}::text,
                     'discarded', true) END,
                 run_at = now(), published_at = NULL, lease_until = NULL, updated_at = now(),
                 max_attempts = GREATEST(j.max_attempts, j.attempt + 1)
             FROM target t WHERE j.id = t.id
             RETURNING j.id, j.attempt, j.state, t.old_state
         ), ev AS (
             INSERT INTO job_events (job_id, attempt, from_state, to_state, message, actor)
             SELECT id, attempt, old_state, state, 'discard requested: ' || ${text}, ${who}
             FROM upd
         )
         SELECT id, attempt, state FROM upd"
    );
    run_action(client, target, &sql, &[&error_text, &actor]).await
}

/// Pauses a portal: its queued jobs are not claimed (and spend no attempt) until resumed.
/// False when it was already paused.
pub async fn pause_portal(
    client: &impl GenericClient,
    portal_id: i64,
    actor: &str,
) -> Result<bool, DbError> {
    let row = client
        .query_opt(
            "WITH upd AS (
                 UPDATE portals SET paused_at = now(), paused_by = $2
                 WHERE id = $1 AND paused_at IS NULL RETURNING id
             )
             INSERT INTO portal_events (portal_id, actor, action, message)
             SELECT id, $2, 'pause', 'queued jobs wait until the portal is resumed' FROM upd
             RETURNING id",
            &[&portal_id, &actor],
        )
        .await?;
    Ok(row.is_some())
}

/// Resumes a paused portal. Its queued jobs are marked unpublished (deliveries refused
/// while it was paused are gone); returns those due now for the caller to publish, or
/// `None` when the portal was not paused.
pub async fn resume_portal(
    client: &impl GenericClient,
    portal_id: i64,
    actor: &str,
) -> Result<Option<Vec<(Uuid, i32)>>, DbError> {
    let row = client
        .query_one(
            "WITH upd AS (
                 UPDATE portals SET paused_at = NULL, paused_by = NULL
                 WHERE id = $1 AND paused_at IS NOT NULL RETURNING id
             ), ev AS (
                 INSERT INTO portal_events (portal_id, actor, action, message)
                 SELECT id, $2, 'resume', NULL FROM upd
             ), unpublished AS (
                 UPDATE jobs SET published_at = NULL
                 WHERE portal_id IN (SELECT id FROM upd) AND state = 'queued'
                 RETURNING id, attempt, run_at
             )
             SELECT (SELECT count(*) FROM upd) AS resumed,
                    ARRAY(SELECT id FROM unpublished WHERE run_at <= now() ORDER BY run_at, id) AS ids,
                    ARRAY(SELECT attempt FROM unpublished WHERE run_at <= now() ORDER BY run_at, id) AS attempts",
            &[&portal_id, &actor],
        )
        .await?;
    let resumed: i64 = row.try_get("resumed")?;
    if resumed == 0 {
        return Ok(None);
    }
    let ids: Vec<Uuid> = row.try_get("ids")?;
    let attempts: Vec<i32> = row.try_get("attempts")?;
    Ok(Some(ids.into_iter().zip(attempts).collect()))
}
