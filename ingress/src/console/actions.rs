//! Operators' actions, shared by the API and the dashboard: run the repository action, then
//! publish what went back to the queue (the sweeper publishes anything this misses).
use axum::http::StatusCode;
use b24flow_common::db::ops::{self, ActionOutcome, JobFilter, Target};
use b24flow_common::db::portal_limits::Plan;
use uuid::Uuid;

use crate::enqueue;
use crate::error::ApiError;
use crate::AppState;

/// Jobs published right away after a bulk action; the sweeper publishes the rest.
const PUBLISH_NOW: usize = 500;

pub enum JobAction {
    Retry,
    Discard(String),
}

async fn publish(state: &AppState, outcome: &ActionOutcome) {
    for job in outcome.jobs.iter().filter(|j| j.queued).take(PUBLISH_NOW) {
        enqueue::publish_attempt(state, job.id, job.attempt).await;
    }
}

/// One job. A job that is not actionable gets a 404 or a 409 saying why.
pub async fn on_job(
    state: &AppState,
    id: Uuid,
    action: &JobAction,
    actor: &str,
) -> Result<(), ApiError> {
    let outcome = run(state, &Target::Job(id), action, actor).await?;
    if !outcome.jobs.is_empty() {
        return Ok(());
    }
    let client = state.db.get().await?;
    let Some(job) = ops::job_detail(&client, id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("no job {id}"),
        ));
    };
    let why = match job.summary.state.as_str() {
        "running" => "the job is running now; act on it when this attempt ends".to_string(),
        s => format!("the job is {s} and its workflow already has its answer"),
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "job_not_actionable",
        why,
    ))
}

/// Every actionable job matching a non-empty filter.
pub async fn on_matching(
    state: &AppState,
    filter: &JobFilter,
    action: &JobAction,
    actor: &str,
) -> Result<ActionOutcome, ApiError> {
    if filter.is_empty() {
        return Err(ApiError::bad_request(
            "filter_required",
            "a bulk action needs at least one filter (portal, activity, state, error_class, since, until, q)",
        ));
    }
    run(state, &Target::Matching(filter), action, actor).await
}

async fn run(
    state: &AppState,
    target: &Target<'_>,
    action: &JobAction,
    actor: &str,
) -> Result<ActionOutcome, ApiError> {
    let client = state.db.get().await?;
    let outcome = match action {
        JobAction::Retry => ops::retry(&client, target, actor).await?,
        JobAction::Discard(text) => ops::discard(&client, target, text, actor).await?,
    };
    drop(client);
    tracing::info!(
        %actor,
        action = match action { JobAction::Retry => "retry", JobAction::Discard(_) => "discard" },
        jobs = outcome.jobs.len(),
        "operator action"
    );
    publish(state, &outcome).await;
    Ok(outcome)
}

/// The portal an operator named (id, domain or member_id).
pub async fn find_portal(state: &AppState, portal: &str) -> Result<i64, ApiError> {
    let client = state.db.get().await?;
    ops::portal_detail(&client, portal)
        .await?
        .map(|p| p.summary.id)
        .ok_or_else(|| ApiError::portal_not_found(portal))
}

pub async fn pause(state: &AppState, portal_id: i64, actor: &str) -> Result<bool, ApiError> {
    let client = state.db.get().await?;
    let paused = ops::pause_portal(&client, portal_id, actor).await?;
    tracing::info!(%actor, portal.id = portal_id, changed = paused, "operator paused a portal");
    Ok(paused)
}

/// Resumes the portal and publishes its jobs that are due.
pub async fn resume(state: &AppState, portal_id: i64, actor: &str) -> Result<bool, ApiError> {
    let client = state.db.get().await?;
    let due = ops::resume_portal(&client, portal_id, actor).await?;
    drop(client);
    tracing::info!(%actor, portal.id = portal_id, changed = due.is_some(), "operator resumed a portal");
    let Some(due) = due else {
        return Ok(false);
    };
    for (id, attempt) in due.into_iter().take(PUBLISH_NOW) {
        enqueue::publish_attempt(state, id, attempt).await;
    }
    Ok(true)
}

/// Sets a portal's limiter plan, recorded with who did it.
pub async fn set_plan(
    state: &AppState,
    portal_id: i64,
    plan: Plan,
    actor: &str,
) -> Result<(), ApiError> {
    let mut client = state.db.get().await?;
    if !ops::set_portal_plan(&mut client, portal_id, plan, actor).await? {
        return Err(ApiError::portal_not_found(portal_id));
    }
    let (rate, burst) = plan.rate_and_burst();
    tracing::info!(%actor, portal.id = portal_id, plan = plan.name(), rate, burst, "operator set a portal's plan");
    Ok(())
}
