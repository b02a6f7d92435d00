//! `/api/portals`: portals with their queues, one portal with its operators' actions, and
//! pause / resume, and its limiter plan.
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use b24flow_common::db::ops::{self, PortalDetail, PortalSummary};
use b24flow_common::db::portal_limits::{self, LimitState, Plan};
use serde::Deserialize;

use crate::console::actions;
use crate::error::ApiError;
use crate::operator::Operator;
use crate::AppState;

pub async fn list(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Json<Vec<PortalSummary>>, ApiError> {
    let client = state.db.get().await?;
    Ok(Json(ops::portals(&client).await?))
}

pub async fn detail(state: &AppState, portal: &str) -> Result<PortalDetail, ApiError> {
    let client = state.db.get().await?;
    ops::portal_detail(&client, portal)
        .await?
        .ok_or_else(|| ApiError::portal_not_found(portal))
}

pub async fn show(
    _op: Operator,
    State(state): State<AppState>,
    Path(portal): Path<String>,
) -> Result<Json<PortalDetail>, ApiError> {
    Ok(Json(detail(&state, &portal).await?))
}

pub async fn pause(
    op: Operator,
    State(state): State<AppState>,
    Path(portal): Path<String>,
) -> Result<Json<PortalDetail>, ApiError> {
    let id = actions::find_portal(&state, &portal).await?;
    actions::pause(&state, id, &op.actor).await?;
    Ok(Json(detail(&state, &id.to_string()).await?))
}

pub async fn resume(
    op: Operator,
    State(state): State<AppState>,
    Path(portal): Path<String>,
) -> Result<Json<PortalDetail>, ApiError> {
    let id = actions::find_portal(&state, &portal).await?;
    actions::resume(&state, id, &op.actor).await?;
    Ok(Json(detail(&state, &id.to_string()).await?))
}

/// The portal's shared REST limiter: plan, bucket level, parked methods, refusals seen.
pub async fn limits(
    _op: Operator,
    State(state): State<AppState>,
    Path(portal): Path<String>,
) -> Result<Json<LimitState>, ApiError> {
    let id = actions::find_portal(&state, &portal).await?;
    limit_state(&state, id, &portal).await.map(Json)
}

async fn limit_state(state: &AppState, id: i64, portal: &str) -> Result<LimitState, ApiError> {
    let client = state.db.get().await?;
    portal_limits::get_state(&client, id)
        .await?
        .ok_or_else(|| ApiError::portal_not_found(portal))
}

/// A new plan: `{"plan": "standard" | "enterprise"}` or
/// `{"plan": "custom", "rate_per_sec": 4, "burst": 10}`.
#[derive(Debug, Deserialize)]
pub struct PlanBody {
    pub plan: String,
    #[serde(alias = "rate")]
    pub rate_per_sec: Option<f64>,
    pub burst: Option<i64>,
}

impl PlanBody {
    pub fn to_plan(&self) -> Result<Plan, ApiError> {
        Plan::parse(&self.plan, self.rate_per_sec, self.burst)
            .map_err(|why| ApiError::bad_request("invalid_plan", why))
    }
}

/// Sets the portal's limiter plan (audited); every worker's next request follows it.
pub async fn set_limits(
    op: Operator,
    State(state): State<AppState>,
    Path(portal): Path<String>,
    body: Result<Json<PlanBody>, JsonRejection>,
) -> Result<Json<LimitState>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let plan = body.to_plan()?;
    let id = actions::find_portal(&state, &portal).await?;
    actions::set_plan(&state, id, plan, &op.actor).await?;
    limit_state(&state, id, &portal).await.map(Json)
}
