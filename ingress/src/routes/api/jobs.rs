//! `/api/jobs`: search, one job in full, and the actions on one job or a filtered set.
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use b24flow_common::db::ops::{self, JobDetail, JobPage};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::console::actions::{self, JobAction};
use crate::console::query::{error_text, FilterQuery, PageQuery};
use crate::error::ApiError;
use crate::operator::Operator;
use crate::AppState;

pub async fn list(
    _op: Operator,
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let filter = query.filter.to_filter()?;
    let (cursor, limit) = (query.cursor()?, query.limit()?);
    let client = state.db.get().await?;
    Ok(Json(ops::list_jobs(&client, &filter, cursor, limit).await?))
}

fn job_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("invalid_job_id", "a job id is a UUID"))
}

pub async fn detail(state: &AppState, id: Uuid) -> Result<JobDetail, ApiError> {
    let client = state.db.get().await?;
    ops::job_detail(&client, id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("no job {id}"),
        )
    })
}

pub async fn show(
    _op: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(detail(&state, job_id(&id)?).await?))
}

pub async fn retry(
    op: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let id = job_id(&id)?;
    actions::on_job(&state, id, &JobAction::Retry, &op.actor).await?;
    Ok(Json(detail(&state, id).await?))
}

#[derive(Debug, Default, Deserialize)]
pub struct DiscardBody {
    pub error_text: Option<String>,
}

pub async fn discard(
    op: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<DiscardBody>>,
) -> Result<Json<JobDetail>, ApiError> {
    let id = job_id(&id)?;
    let text = error_text(body.as_ref().and_then(|b| b.error_text.as_deref()))?;
    actions::on_job(&state, id, &JobAction::Discard(text), &op.actor).await?;
    Ok(Json(detail(&state, id).await?))
}

#[derive(Debug, Default, Deserialize)]
pub struct BulkBody {
    #[serde(flatten)]
    pub filter: FilterQuery,
    pub error_text: Option<String>,
}

fn bulk_answer(outcome: &ops::ActionOutcome) -> Json<Value> {
    Json(json!({
        "count": outcome.jobs.len(),
        "truncated": outcome.truncated,
        "jobs": outcome.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
    }))
}

pub async fn bulk_retry(
    op: Operator,
    State(state): State<AppState>,
    Json(body): Json<BulkBody>,
) -> Result<Json<Value>, ApiError> {
    let filter = body.filter.to_filter()?;
    let outcome = actions::on_matching(&state, &filter, &JobAction::Retry, &op.actor).await?;
    Ok(bulk_answer(&outcome))
}

pub async fn bulk_discard(
    op: Operator,
    State(state): State<AppState>,
    Json(body): Json<BulkBody>,
) -> Result<Json<Value>, ApiError> {
    let filter = body.filter.to_filter()?;
    let text = error_text(body.error_text.as_deref())?;
    let outcome =
        actions::on_matching(&state, &filter, &JobAction::Discard(text), &op.actor).await?;
    Ok(bulk_answer(&outcome))
}
