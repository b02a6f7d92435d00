//! The job repository. Every state change is one guarded statement that also appends to
//! `job_events`, so the history operators read can never disagree with the row, and a stale
//! attempt (wrong `attempt` or no longer `running`) changes nothing. The first entry, the
//! call accepted, is the job row itself (its `created_at`): no history row is written for it.
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{DbError, Prepared};
use crate::bitrix::call_log::RestCalls;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// An activity call from a workflow.
    Activity,
    /// Registering all activities on a portal (`bizproc.activity.add`).
    Register,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Activity => "activity",
            JobKind::Register => "register",
        }
    }
    /// `None` for a kind this build does not know (a newer release wrote it): such a row
    /// must not be run as if it were an activity call.
    fn parse(s: &str) -> Option<Self> {
        match s {
            "activity" => Some(JobKind::Activity),
            "register" => Some(JobKind::Register),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Discarded,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Discarded => "discarded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "discarded" => JobState::Discarded,
            _ => return None,
        })
    }
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Discarded
        )
    }
}

/// The result of running an activity, stored before it is reported so that a failed
/// `bizproc.event.send` is retried without running the activity again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub success: bool,
    pub return_values: serde_json::Map<String, Value>,
    pub log_message: String,
    pub error_text: String,
    /// An operator discarded the job with `error_text`; it ends `discarded`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discarded: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewJob {
    pub portal_id: i64,
    pub kind: JobKind,
    pub code: String,
    pub event_token: Option<String>,
    pub workflow_id: Option<String>,
    pub document_id: Value,
    pub properties: Value,
    pub timeout_duration: i64,
    pub max_attempts: i32,
    /// The call carried its run-as user's token (sealed with the job's secrets).
    #[serde(default)]
    pub runs_as_user: bool,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: Uuid,
    pub portal_id: i64,
    pub kind: JobKind,
    pub code: String,
    pub event_token: Option<String>,
    pub workflow_id: Option<String>,
    pub document_id: Value,
    pub properties: Value,
    pub timeout_duration: i64,
    pub state: JobState,
    pub attempt: i32,
    pub max_attempts: i32,
    pub outcome: Option<Outcome>,
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// See [`NewJob::runs_as_user`]: such a job never runs with the installer's token.
    pub runs_as_user: bool,
    /// The job's sealed secrets as [`claim`] read them (in the same statement); `None` when
    /// the job has none or the row was read some other way.
    pub sealed_secret: Option<SealedSecret>,
}

/// A job's secrets as stored (encrypted, see [`crate::secrets`]). Its `Debug` shows only
/// the length: even sealed, they have no place in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(pub Vec<u8>);

impl SealedSecret {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.0.len())
    }
}

impl Job {
    /// When the workflow stops waiting for us, if it ever does (`timeout_duration` 0 = never).
    /// A timeout too long for the calendar (rows stored before the ingress checked it) is
    /// treated as none rather than overflowing.
    pub fn workflow_deadline(&self) -> Option<DateTime<Utc>> {
        if self.timeout_duration <= 0 {
            return None;
        }
        chrono::Duration::try_seconds(self.timeout_duration)
            .and_then(|d| self.created_at.checked_add_signed(d))
    }
}

const COLUMNS: &str = "id, portal_id, kind, code, event_token, workflow_id, document_id, \
    properties, timeout_duration, state, attempt, max_attempts, outcome, result, last_error, \
    created_at, updated_at, finished_at, runs_as_user";

fn from_row(row: &tokio_postgres::Row) -> Result<Job, DbError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let outcome: Option<Value> = row.try_get("outcome")?;
    Ok(Job {
        id: row.try_get("id")?,
        portal_id: row.try_get("portal_id")?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| DbError::Config(format!("a job of unknown kind {kind:?}")))?,
        code: row.try_get("code")?,
        event_token: row.try_get("event_token")?,
        workflow_id: row.try_get("workflow_id")?,
        document_id: row
            .try_get::<_, Option<Value>>("document_id")?
            .unwrap_or(Value::Null),
        properties: row.try_get("properties")?,
        timeout_duration: row.try_get("timeout_duration")?,
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        outcome: outcome.and_then(|v| serde_json::from_value(v).ok()),
        result: row.try_get("result")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        runs_as_user: row.try_get("runs_as_user")?,
        sealed_secret: None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    New(Uuid),
    /// A job with this `event_token` already exists for the portal.
    Duplicate(Uuid),
}

impl Inserted {
    pub fn id(self) -> Uuid {
        match self {
            Inserted::New(id) | Inserted::Duplicate(id) => id,
        }
    }
}

/// Inserts a job (and its encrypted secret, if any). Duplicate `event_token`s create nothing.
pub async fn insert(
    client: &impl GenericClient,
    job: &NewJob,
    secret_enc: Option<&[u8]>,
) -> Result<Inserted, DbError> {
    let rows = [NewRow {
        id: Uuid::new_v4(),
        job,
        secret_enc,
    }];
    let mut inserted = insert_many(client, &rows).await?;
    inserted
        .pop()
        .ok_or_else(|| DbError::Config("insert returned no row".into()))
}

/// One job of [`insert_many`], under an id its caller chose (so a call handed over twice,
/// or stored while an earlier try was still committing, stays one job).
pub struct NewRow<'a> {
    pub id: Uuid,
    pub job: &'a NewJob,
    pub secret_enc: Option<&'a [u8]>,
}

/// Inserts many jobs and their sealed secrets in one statement (one
/// commit). Each new job is in the outbox (`job_unconfirmed`) until a publish of it is
/// confirmed ([`mark_published_many`]). Answers in input order: `New` for a row stored
/// now, `Duplicate` with the existing job's id for a repeated `(portal, event_token)`,
/// within the group too, or for an id already stored.
pub async fn insert_many(
    client: &impl GenericClient,
    rows: &[NewRow<'_>],
) -> Result<Vec<Inserted>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let portal_ids: Vec<i64> = rows.iter().map(|r| r.job.portal_id).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.job.kind.as_str()).collect();
    let codes: Vec<&str> = rows.iter().map(|r| r.job.code.as_str()).collect();
    let tokens: Vec<Option<&str>> = rows.iter().map(|r| r.job.event_token.as_deref()).collect();
    let workflows: Vec<Option<&str>> = rows.iter().map(|r| r.job.workflow_id.as_deref()).collect();
    let documents: Vec<&Value> = rows.iter().map(|r| &r.job.document_id).collect();
    let properties: Vec<&Value> = rows.iter().map(|r| &r.job.properties).collect();
    let timeouts: Vec<i64> = rows.iter().map(|r| r.job.timeout_duration).collect();
    let max_attempts: Vec<i32> = rows.iter().map(|r| r.job.max_attempts).collect();
    let secrets: Vec<Option<&[u8]>> = rows.iter().map(|r| r.secret_enc).collect();
    let runs_as: Vec<bool> = rows.iter().map(|r| r.job.runs_as_user).collect();
    // `ON CONFLICT DO NOTHING` without a target covers both the id and the event token.
    // Only the rows stored now come back: the happy path reads nothing else of `jobs` (a
    // lookup joined in here would be planned once per connection and scan the table as it
    // grows), and the rare repeated call looks its job up afterwards.
    let stored = client
        .query_prepared(
            "WITH input AS (
                 SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::jsonb[], $8::jsonb[], $9::int8[], $10::int4[],
                                      $11::bytea[], $12::bool[])
                     WITH ORDINALITY AS t(id, portal_id, kind, code, event_token, workflow_id,
                                          document_id, properties, timeout_duration,
                                          max_attempts, secret_enc, runs_as_user, n)
             ), ins AS (
                 INSERT INTO jobs (id, portal_id, kind, code, event_token, workflow_id, document_id,
                                   properties, timeout_duration, max_attempts, runs_as_user,
                                   published_at)
                 SELECT id, portal_id, kind, code, event_token, workflow_id, document_id,
                        properties, timeout_duration, max_attempts, runs_as_user, now()
                 FROM input ORDER BY n
                 ON CONFLICT DO NOTHING
                 RETURNING id
             ), unconfirmed AS (
                 INSERT INTO job_unconfirmed (job_id) SELECT id FROM ins
             ), sec AS (
                 INSERT INTO job_secrets (job_id, secret_enc)
                 SELECT i.id, i.secret_enc FROM input i JOIN ins USING (id)
                 WHERE i.secret_enc IS NOT NULL
             )
             SELECT id FROM ins",
            &[
                &ids,
                &portal_ids,
                &kinds,
                &codes,
                &tokens,
                &workflows,
                &documents,
                &properties,
                &timeouts,
                &max_attempts,
                &secrets,
                &runs_as,
            ],
        )
        .await?;
    let mut new: std::collections::HashSet<Uuid> = stored
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    // A second copy of a call within the group carries the same id as its first.
    let is_new: Vec<bool> = rows.iter().map(|input| new.remove(&input.id)).collect();
    let repeated: Vec<&NewRow> = rows
        .iter()
        .zip(&is_new)
        .filter(|(_, new)| !**new)
        .map(|(input, _)| input)
        .collect();
    let mut existing = existing_ids(client, &repeated).await?.into_iter();
    rows.iter()
        .zip(is_new)
        .map(|(input, new)| match new {
            true => Ok(Inserted::New(input.id)),
            false => existing
                .next()
                .map(Inserted::Duplicate)
                .ok_or_else(|| DbError::Config("a repeated call's job was not found".into())),
        })
        .collect()
}

/// The jobs that repeated calls are copies of (same portal and event token, or same id), in
/// their order; one statement for all of them.
async fn existing_ids(
    client: &impl GenericClient,
    rows: &[&NewRow<'_>],
) -> Result<Vec<Uuid>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let portal_ids: Vec<i64> = rows.iter().map(|r| r.job.portal_id).collect();
    let tokens: Vec<Option<&str>> = rows.iter().map(|r| r.job.event_token.as_deref()).collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let found = client
        .query_prepared(
            "SELECT j.id
             FROM unnest($1::int8[], $2::text[], $3::uuid[]) WITH ORDINALITY AS i(portal_id, event_token, id, n)
             CROSS JOIN LATERAL (
                 SELECT id FROM jobs
                 WHERE (portal_id = i.portal_id AND event_token = i.event_token) OR id = i.id
                 LIMIT 1
             ) j
             ORDER BY i.n",
            &[&portal_ids, &tokens, &ids],
        )
        .await?;
    if found.len() != rows.len() {
        return Err(DbError::Config(
            "a repeated call's job was not found".into(),
        ));
    }
    found.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Option<Job>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    client
        .query_opt_prepared(&sql, &[&id])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

pub async fn secret(client: &impl GenericClient, id: Uuid) -> Result<Option<Vec<u8>>, DbError> {
    Ok(client
        .query_opt_prepared(
            "SELECT secret_enc FROM job_secrets WHERE job_id = $1",
            &[&id],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
}

/// The job's sealed secrets, locked until the transaction ends: a rotated run-as token is
/// written back under this lock, so two attempts never spend one refresh token twice.
pub async fn lock_secret(tx: &impl GenericClient, id: Uuid) -> Result<Option<Vec<u8>>, DbError> {
    Ok(tx
        .query_opt_prepared(
            "SELECT secret_enc FROM job_secrets WHERE job_id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
}

/// Replaces the job's sealed secrets; false when they are gone (the job ended meanwhile),
/// so nothing is stored again after the end erased it.
pub async fn replace_secret(
    tx: &impl GenericClient,
    id: Uuid,
    secret_enc: &[u8],
) -> Result<bool, DbError> {
    let n = tx
        .execute_prepared(
            "UPDATE job_secrets SET secret_enc = $2 WHERE job_id = $1",
            &[&id, &secret_enc],
        )
        .await?;
    Ok(n == 1)
}

/// The broker confirmed the message carrying this job at `attempt`. A job that ran and was
/// handed back for a retry meanwhile has another attempt number and stays unpublished, so
/// the sweeper still publishes its retry.
pub async fn mark_published(
    client: &impl GenericClient,
    id: Uuid,
    attempt: i32,
) -> Result<(), DbError> {
    mark_published_many(client, &[(id, attempt)]).await
}

/// [`mark_published`] for many `(job, attempt)` confirms in one statement. Any confirmed
/// message of a job takes it out of the outbox (a narrow row: the broker holds the job
/// now, whichever attempt it names); the wide `jobs` row is written only for jobs the
/// sweeper or an operator put back in the queue.
pub async fn mark_published_many(
    client: &impl GenericClient,
    published: &[(Uuid, i32)],
) -> Result<(), DbError> {
    if published.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = published.iter().map(|p| p.0).collect();
    let attempts: Vec<i32> = published.iter().map(|p| p.1).collect();
    client
        .query_prepared(
            // A mark lost in a Postgres crash only makes the sweeper publish the job
            // again (a stale delivery), so its commit does not wait for the WAL flush.
            "WITH p AS (
                 SELECT * FROM unnest($1::uuid[], $2::int4[]) AS p(id, attempt)
             ), confirmed AS (
                 DELETE FROM job_unconfirmed u USING p
                 WHERE u.job_id = p.id
             ), requeued AS (
                 UPDATE jobs SET published_at = now()
                 FROM p
                 WHERE jobs.id = p.id AND jobs.state = 'queued' AND jobs.attempt = p.attempt
                   AND jobs.published_at IS NULL
             )
             SELECT set_config('synchronous_commit', 'off', true)",
            &[&ids, &attempts],
        )
        .await?;
    Ok(())
}

/// Takes a queued, due job for one attempt, with its sealed secrets in the same statement
/// (the attempt needs them to run and to answer). `None` when someone else owns it, it is
/// not due yet, it is finished, or an operator paused its portal (resuming publishes it
/// again): the delivery that asked is stale and can be dropped.
pub async fn claim(
    client: &impl GenericClient,
    id: Uuid,
    lease: Duration,
) -> Result<Option<Job>, DbError> {
    Ok(claim_many(client, &[id], lease).await?.pop().flatten())
}

/// [`claim`] for many jobs in one statement and one commit, answered in input order; an id
/// given twice is claimed once (the second copy answers `None`, a stale delivery).
pub async fn claim_many(
    client: &impl GenericClient,
    ids: &[Uuid],
    lease: Duration,
) -> Result<Vec<Option<Job>>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // The state is compared with IS NOT DISTINCT FROM (the same for a NOT NULL column) so
    // no index on `state` can answer it: the planner would otherwise read every queued job
    // and keep the asked ones, a plan it picks whenever its statistics (a young table, or
    // one last analyzed while quiet) say few jobs are queued, just when a burst has queued
    // thousands. The ids are the only way in: a few primary-key lookups whatever the queue.
    let sql = format!(
        "WITH upd AS (
             UPDATE jobs SET state = 'running', attempt = attempt + 1,
                 lease_until = now() + make_interval(secs => $2), updated_at = now()
             WHERE id = ANY($1) AND state IS NOT DISTINCT FROM 'queued' AND run_at <= now()
               AND NOT EXISTS (SELECT 1 FROM portals p WHERE p.id = jobs.portal_id AND p.paused_at IS NOT NULL)
             RETURNING {COLUMNS}
         ), ev AS (
             INSERT INTO job_events (job_id, attempt, from_state, to_state, message)
             SELECT id, attempt, 'queued', 'running', NULL FROM upd
         )
         SELECT upd.*, s.secret_enc FROM upd LEFT JOIN job_secrets s ON s.job_id = upd.id"
    );
    let rows = client
        .query_prepared(&sql, &[&ids, &lease.as_secs_f64()])
        .await?;
    let mut claimed = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let mut job = from_row(row)?;
        job.sealed_secret = row
            .try_get::<_, Option<Vec<u8>>>("secret_enc")?
            .map(SealedSecret);
        claimed.insert(job.id, job);
    }
    Ok(ids.iter().map(|id| claimed.remove(id)).collect())
}

/// Extends the lease of a running attempt; false when the attempt lost the job.
pub async fn heartbeat(
    client: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    lease: Duration,
) -> Result<bool, DbError> {
    let n = client
        .execute_prepared(
            // A lease extension lost in a Postgres crash at worst lets the reaper hand
            // the job to a new attempt, which the fencing allows; no flush wait.
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $3)
             FROM set_config('synchronous_commit', 'off', true)
             WHERE id = $1 AND attempt = $2 AND state = 'running'",
            &[&id, &attempt, &lease.as_secs_f64()],
        )
        .await?;
    Ok(n == 1)
}

/// Stores the activity's outcome before it is reported.
pub async fn record_outcome(
    client: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    outcome: &Outcome,
) -> Result<bool, DbError> {
    let value = serde_json::to_value(outcome).unwrap_or(Value::Null);
    let n = client
        .execute_prepared(
            "WITH upd AS (
                 UPDATE jobs SET outcome = $3, updated_at = now()
                 WHERE id = $1 AND attempt = $2 AND state = 'running'
                 RETURNING id, attempt
             )
             INSERT INTO job_events (job_id, attempt, from_state, to_state, message)
             SELECT id, attempt, 'running', 'running', $4 FROM upd",
            &[
                &id,
                &attempt,
                &value,
                &format!("ran: {}", if outcome.success { "success" } else { "error" }),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Ends the job. Its secrets are erased in the same statement.
pub async fn finish(
    client: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    state: JobState,
    result: Option<&Value>,
    error: Option<&str>,
    message: &str,
) -> Result<bool, DbError> {
    let write = Finish {
        id,
        attempt,
        state,
        result: result.cloned(),
        error: error.map(str::to_string),
        message: message.to_string(),
        outcome: None,
        rest_calls: None,
    };
    let finished = finish_many(client, std::slice::from_ref(&write)).await?;
    Ok(finished.first().copied().unwrap_or(false))
}

/// One job's end, for [`finish_many`].
#[derive(Clone, Debug)]
pub struct Finish {
    pub id: Uuid,
    pub attempt: i32,
    /// A terminal state.
    pub state: JobState,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// What the history says about the end.
    pub message: String,
    /// The outcome, when it was not stored before the answer went out (an activity whose
    /// run may be repeated); stored with the end, in the same statement.
    pub outcome: Option<Outcome>,
    /// The attempt's REST call log, stored in the same statement (whether or not the
    /// attempt still owned the job, like [`super::rest_calls::save`]).
    pub rest_calls: Option<RestCalls>,
}

/// Ends many jobs in one statement (one commit), each under its own guard: the answer, in
/// input order, is true for a job its attempt still owned (now ended, its secrets erased,
/// its history row written) and false for a stale attempt, whose row nothing changed. A
/// job may appear only once per call.
pub async fn finish_many(
    client: &impl GenericClient,
    ends: &[Finish],
) -> Result<Vec<bool>, DbError> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    debug_assert!(ends.iter().all(|e| e.state.is_terminal()));
    let ids: Vec<Uuid> = ends.iter().map(|e| e.id).collect();
    let attempts: Vec<i32> = ends.iter().map(|e| e.attempt).collect();
    let states: Vec<&str> = ends.iter().map(|e| e.state.as_str()).collect();
    let results: Vec<Option<&Value>> = ends.iter().map(|e| e.result.as_ref()).collect();
    let errors: Vec<Option<&str>> = ends.iter().map(|e| e.error.as_deref()).collect();
    let messages: Vec<&str> = ends.iter().map(|e| e.message.as_str()).collect();
    let outcomes: Vec<Option<Value>> = ends
        .iter()
        .map(|e| {
            e.outcome
                .as_ref()
                .and_then(|o| serde_json::to_value(o).ok())
        })
        .collect();
    let mut call_logs: Vec<Option<Value>> = Vec::with_capacity(ends.len());
    let mut omitted: Vec<Option<i32>> = Vec::with_capacity(ends.len());
    for end in ends {
        match end.rest_calls.as_ref().filter(|c| !c.is_empty()) {
            Some(calls) => {
                let (json, left_out) = super::rest_calls::encode(calls)?;
                call_logs.push(Some(json));
                omitted.push(Some(left_out));
            }
            None => {
                call_logs.push(None);
                omitted.push(None);
            }
        }
    }
    // Planned for each group, not prepared once: a connection's cached generic plan is
    // made while `jobs` is small (the install's registration jobs end first) and then kept
    // however much the table grows, and for this join it was a sequential scan of every
    // job for each group of ends (autovacuum's analyze, which would invalidate it, may
    // never run, or only minutes into a burst). `bench e2e` (10,000 calls) with
    // `pg_stat_statements`: 1,790 groups read 1.4M buffers in 9.9 s; planned per group,
    // 1,569 groups read 0.46M in 2.7 s, plus 1.0 s planning. A text query is parsed and
    // planned each time and costs one round trip more.
    let rows = client
        .query(
            concat!(
                "WITH input AS (
                 SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::jsonb[], $5::text[],
                                      $6::text[], $7::jsonb[], $8::jsonb[], $9::int4[])
                     WITH ORDINALITY AS t(id, attempt, state, result, error, message, outcome,
                                          calls, omitted, n)
             ), upd AS (
                 UPDATE jobs SET state = i.state, result = i.result,
                     outcome = COALESCE(i.outcome, jobs.outcome),
                     last_error = COALESCE(i.error, jobs.last_error),
                     lease_until = NULL, finished_at = now(), reported_at = now(), updated_at = now()
                 FROM input i
                 -- By id only, as in `claim_many`: `jobs_running_lease` could answer
                 -- `state = 'running'` and be read whole for every group of ends.
                 WHERE jobs.id = i.id AND jobs.attempt = i.attempt
                   AND jobs.state IS NOT DISTINCT FROM 'running'
                 RETURNING jobs.id
             ), ev AS (
                 -- One history row per end. An outcome stored with the end gets none of its
                 -- own (unlike one stored before the answer, `record_outcome`): the end's
                 -- message already says how the run went and what the workflow was told.
                 INSERT INTO job_events (job_id, attempt, from_state, to_state, message)
                 SELECT i.id, i.attempt, 'running', i.state, i.message
                 FROM input i JOIN upd USING (id) ORDER BY i.n
             ), sec AS (
                 DELETE FROM job_secrets WHERE job_id IN (SELECT id FROM upd)
             ), log AS (",
                super::rest_calls::store_rest_calls!(
                    "SELECT id, attempt, calls, omitted FROM input WHERE calls IS NOT NULL"
                ),
                "
             )
             SELECT i.n, upd.id IS NOT NULL AS ended
             FROM input i LEFT JOIN upd USING (id) ORDER BY i.n",
            ),
            &[
                &ids, &attempts, &states, &results, &errors, &messages, &outcomes, &call_logs,
                &omitted,
            ],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(1)?)).collect()
}

/// Hands the job back for another attempt at `run_at`; the sweeper publishes it then.
pub async fn schedule_retry(
    client: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    run_at: DateTime<Utc>,
    error: &str,
) -> Result<bool, DbError> {
    let row = client
        .query_opt_prepared(
            "WITH upd AS (
                 UPDATE jobs SET state = 'queued', run_at = $3, published_at = NULL,
                     lease_until = NULL, last_error = $4, updated_at = now()
                 WHERE id = $1 AND attempt = $2 AND state = 'running'
                 RETURNING id, attempt
             ), ev AS (
                 INSERT INTO job_events (job_id, attempt, from_state, to_state, message)
                 SELECT id, attempt, 'running', 'queued', $5 FROM upd
             )
             SELECT id FROM upd",
            &[
                &id,
                &attempt,
                &run_at,
                &error,
                &format!("retry at {} after: {error}", run_at.format("%H:%M:%S%.3f")),
            ],
        )
        .await?;
    Ok(row.is_some())
}

/// Gives a running attempt back without counting against it (graceful shutdown). The
/// attempt number is kept, so the next attempt gets a new one and treats this attempt's
/// markers like any earlier attempt's; one more attempt is allowed instead.
pub async fn release(client: &impl GenericClient, id: Uuid, attempt: i32) -> Result<bool, DbError> {
    let row = client
        .query_opt_prepared(
            "WITH upd AS (
                 UPDATE jobs SET state = 'queued', max_attempts = max_attempts + 1, run_at = now(),
                     published_at = NULL, lease_until = NULL, updated_at = now()
                 WHERE id = $1 AND attempt = $2 AND state = 'running'
                 RETURNING id, attempt
             ), ev AS (
                 INSERT INTO job_events (job_id, attempt, from_state, to_state, message)
                 SELECT id, attempt, 'running', 'queued', 'handed back at shutdown' FROM upd
             )
             SELECT id FROM upd",
            &[&id, &attempt],
        )
        .await?;
    Ok(row.is_some())
}

/// Queued jobs that need a (re-)publish: never confirmed by the broker (outbox), retries
/// that are due, and messages confirmed long ago whose delivery must have been lost.
/// `grace` keeps the sweeper off new jobs the ingress is publishing right now; retries
/// and reaped jobs (attempt > 0) only the sweeper publishes, as soon as they are due.
pub async fn due_for_publish(
    client: &impl GenericClient,
    grace: Duration,
    stale_after: Duration,
    limit: i64,
) -> Result<Vec<(Uuid, i32)>, DbError> {
    let rows = client
        .query_prepared(
            "SELECT id, attempt FROM (
                 SELECT j.id, j.attempt, j.run_at
                 FROM job_unconfirmed u JOIN jobs j ON j.id = u.job_id
                 WHERE u.stored_at <= now() - make_interval(secs => $1)
                   AND j.state = 'queued' AND j.run_at <= now()
                 UNION
                 SELECT id, attempt, run_at FROM jobs
                 WHERE state = 'queued' AND run_at <= now()
                   AND ((published_at IS NULL
                         AND (attempt > 0 OR updated_at <= now() - make_interval(secs => $1)))
                        OR published_at <= now() - make_interval(secs => $2))
             ) due
             ORDER BY run_at
             LIMIT $3",
            &[&grace.as_secs_f64(), &stale_after.as_secs_f64(), &limit],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Takes out of the outbox the jobs that are no longer queued although their confirm was
/// never recorded (the ingress died between the broker's confirm and its mark, and a worker
/// ran the job): nothing is left to publish for them.
pub async fn forget_settled_unconfirmed(
    client: &impl GenericClient,
    grace: Duration,
) -> Result<u64, DbError> {
    client
        .execute_prepared(
            "DELETE FROM job_unconfirmed u
             WHERE u.stored_at <= now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = u.job_id AND j.state = 'queued')",
            &[&grace.as_secs_f64()],
        )
        .await
        .map_err(Into::into)
}

/// Running attempts whose lease ran out (their worker died) go back to the queue.
pub async fn reap_expired(client: &impl GenericClient) -> Result<Vec<Uuid>, DbError> {
    let rows = client
        .query_prepared(
            "WITH upd AS (
                 UPDATE jobs SET state = 'queued', run_at = now(), published_at = NULL,
                     lease_until = NULL, last_error = 'worker lost (lease expired)', updated_at = now()
                 WHERE state = 'running' AND lease_until < now()
                 RETURNING id, attempt
             ), ev AS (
                 INSERT INTO job_events (job_id, attempt, from_state, to_state, message)
                 SELECT id, attempt, 'running', 'queued', 'lease expired: worker lost' FROM upd
             )
             SELECT id FROM upd",
            &[],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Counts per state, for progress displays and the dashboard.
pub async fn count_by_state(client: &impl GenericClient) -> Result<Vec<(String, i64)>, DbError> {
    let rows = client
        .query_prepared("SELECT state, count(*) FROM jobs GROUP BY state", &[])
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Attempts a job may take before it fails for good, unless an activity says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 8;

/// The idempotency marker of one side effect of a job (`started` or `done` with its value).
#[derive(Clone, Debug, PartialEq)]
pub enum SideEffect {
    Started,
    Done(Value),
}

pub async fn side_effect(
    client: &impl GenericClient,
    id: Uuid,
    key: &str,
) -> Result<Option<SideEffect>, DbError> {
    let row = client
        .query_opt_prepared(
            "SELECT state, value FROM job_side_effects WHERE job_id = $1 AND key = $2",
            &[&id, &key],
        )
        .await?;
    row.map(|r| -> Result<SideEffect, DbError> {
        let state: String = r.try_get(0)?;
        let value: Option<Value> = r.try_get(1)?;
        Ok(if state == "done" {
            SideEffect::Done(value.unwrap_or(Value::Null))
        } else {
            SideEffect::Started
        })
    })
    .transpose()
}

/// Records that a side effect is about to happen (before the request that causes it).
/// Refused (`false`) unless `attempt` still owns the job with a lease that has not run out:
/// an attempt that lost its lease must not start anything.
pub async fn side_effect_started(
    client: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    key: &str,
) -> Result<bool, DbError> {
    // FOR SHARE makes a concurrent reaper wait for this statement, or this statement see
    // the reaper's change: either way, no marker of an attempt that no longer owns the job.
    let row = client
        .query_one_prepared(
            "WITH owner AS (
                 SELECT id, attempt FROM jobs
                 WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_until > now()
                 FOR SHARE
             ), ins AS (
                 INSERT INTO job_side_effects (job_id, key, state, attempt)
                 SELECT id, $3, 'started', attempt FROM owner
                 ON CONFLICT (job_id, key) DO NOTHING
             )
             SELECT count(*) FROM owner",
            &[&id, &attempt, &key],
        )
        .await?;
    Ok(row.try_get::<_, i64>(0)? == 1)
}

/// Records that a side effect happened, with what it produced (e.g. the new invoice's id).
/// Refused (`false`) once a newer attempt took the job; an attempt whose lease merely ran
/// out still records it, because the effect did happen and a retry must know.
pub async fn side_effect_done(
    client: &impl GenericClient,
    id: Uuid,
    attempt: i32,
    key: &str,
    value: &Value,
) -> Result<bool, DbError> {
    let row = client
        .query_one_prepared(
            "WITH owner AS (
                 SELECT id, attempt FROM jobs WHERE id = $1 AND attempt = $2 FOR SHARE
             ), ins AS (
                 INSERT INTO job_side_effects (job_id, key, state, value, attempt)
                 SELECT id, $3, 'done', $4, attempt FROM owner
                 ON CONFLICT (job_id, key) DO UPDATE
                     SET state = 'done', value = $4, attempt = EXCLUDED.attempt, updated_at = now()
                     WHERE job_side_effects.attempt <= EXCLUDED.attempt
             )
             SELECT count(*) FROM owner",
            &[&id, &attempt, &key, value],
        )
        .await?;
    Ok(row.try_get::<_, i64>(0)? == 1)
}

#[cfg(test)]
mod kind_tests {
    use super::JobKind;

    #[test]
    fn every_kind_reads_back_and_an_unknown_one_is_refused() {
        for kind in [JobKind::Activity, JobKind::Register] {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(JobKind::parse("export"), None);
        assert_eq!(JobKind::parse(""), None);
    }
}
