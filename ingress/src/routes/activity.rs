//! `POST /b24/activity`: one activity call from a workflow (protocol.md §4). Verified,
//! committed, published, answered 200. Bitrix24 never retries this call, so once we said
//! 200 the job must reach its workflow whatever fails later.
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use b24flow_common::bitrix::form;
use b24flow_common::db::jobs::{Inserted, JobKind, NewJob, DEFAULT_MAX_ATTEMPTS};
use b24flow_common::{metrics, secrets};
use serde_json::{json, Value};

use super::body::read_form;
use crate::enqueue::{self, Stored};
use crate::error::ApiError;
use crate::portal_auth;
use crate::portal_cache::Found;
use crate::AppState;

/// Longest `event_token` we store; real ones are about 100 characters.
const MAX_EVENT_TOKEN: usize = 512;

/// Longest `timeout_duration` we take: ten years. Longer is not a timeout a workflow can
/// mean, and must not reach date arithmetic.
pub const MAX_TIMEOUT_DURATION: i64 = 10 * 365 * 24 * 3600;

/// Most properties a call may carry; our activities declare at most 20.
const MAX_PROPERTIES: usize = 100;
/// Longest property key (ours are under 30 characters).
const MAX_PROPERTY_KEY: usize = 64;
/// Most values one multiple property may carry.
const MAX_PROPERTY_VALUES: usize = 1000;

/// Caps on the shape of `properties`, so no call makes a job row or an activity's input
/// arbitrarily wide (the 1 MiB body cap bounds the rest).
fn check_property_limits(properties: &Value) -> Result<(), ApiError> {
    let refuse = |why: String| Err(ApiError::bad_request("property_limit", why));
    let Some(map) = properties.as_object() else {
        return Ok(());
    };
    if map.len() > MAX_PROPERTIES {
        return refuse(format!(
            "a call may carry at most {MAX_PROPERTIES} properties"
        ));
    }
    for (key, value) in map {
        if key.len() > MAX_PROPERTY_KEY {
            return refuse(format!(
                "property names are at most {MAX_PROPERTY_KEY} characters"
            ));
        }
        let values = match value {
            Value::Array(items) => items.len(),
            Value::Object(items) => items.len(),
            _ => 1,
        };
        if values > MAX_PROPERTY_VALUES {
            return refuse(format!(
                "property {key} has {values} values; at most {MAX_PROPERTY_VALUES} are taken"
            ));
        }
    }
    Ok(())
}

pub async fn accept(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let result = accept_inner(&state, &headers, body).await;
    match &result {
        Ok(_) => {}
        Err(e) => {
            metrics::INGRESS_CALLS.with_label_values(&[e.code]).inc();
        }
    }
    result
}

async fn accept_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let form = read_form(headers, body).await?;
    let text = |path: &[&str]| {
        form::str_at(&form, path)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let required = |path: &[&str]| {
        text(path).ok_or_else(|| {
            ApiError::bad_request(
                "missing_field",
                format!("the call lacks {}", path.join(".")),
            )
        })
    };
    let member_id = required(&["auth", "member_id"])?;
    let app_token = required(&["auth", "application_token"])?;
    let code = required(&["code"])?;
    let event_token = required(&["event_token"])?;
    if event_token.len() > MAX_EVENT_TOKEN {
        return Err(ApiError::bad_request(
            "malformed_body",
            "event_token is too long",
        ));
    }
    if code.len() > 64
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ApiError::bad_request(
            "malformed_body",
            "code is not an activity code",
        ));
    }
    if !state.activity_codes.is_activity(&code) {
        // Refused before anything is stored or counted under its name: a caller inventing
        // codes costs one counter increment under `unknown_activity`.
        return Err(ApiError::bad_request(
            "unknown_activity",
            "b24flow has no activity with this code",
        ));
    }
    let mut properties = match form.get("properties") {
        None => json!({}),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        // PHP sends an empty array as nothing at all; anything else is not a property map.
        Some(Value::String(s)) if s.is_empty() => json!({}),
        Some(_) => {
            return Err(ApiError::bad_request(
                "malformed_body",
                "properties must be key=value pairs",
            ))
        }
    };
    check_property_limits(&properties)?;
    let timeout_duration = match text(&["timeout_duration"]) {
        None => 0,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=MAX_TIMEOUT_DURATION).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "malformed_body",
                    format!(
                        "timeout_duration must be a whole number of seconds from 0 to \
                         {MAX_TIMEOUT_DURATION} (ten years)"
                    ),
                )
            })?,
    };

    // Held until the job is stored.
    let _pass = state.portal_gate.enter(&member_id).await;
    let portal = match state.portals.find(&state.db, &member_id).await? {
        Found::Current(portal) => portal,
        // Postgres does not answer: the call can still be handed to the broker.
        Found::LastKnown(portal) => Some(portal),
    };
    let portal = portal.ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_portal",
            "this portal has not installed the app",
        )
    })?;
    if !portal.is_installed() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "portal_not_installed",
            "this portal uninstalled the app",
        ));
    }
    portal_auth::verify_application_token(&portal, &app_token)?;

    // The token of the user the workflow runs as (§4) goes with the job's secrets, never
    // into the row, its history, a log line or an answer.
    let raw = |key: &str| form::str_at(&form, &["auth", key]);
    let run_as = secrets::RunAs::from_call(
        raw("access_token"),
        raw("refresh_token"),
        raw("expires"),
        raw("expires_in"),
        raw("user_id"),
        chrono::Utc::now().timestamp(),
    );
    let sealed = secrets::split_secrets(
        &mut properties,
        state.activity_codes.secret_properties(),
        run_as.as_ref(),
        &state.config.secrets,
    );
    let job = NewJob {
        portal_id: portal.id,
        kind: JobKind::Activity,
        code,
        event_token: Some(event_token),
        workflow_id: text(&["workflow_id"]),
        document_id: form.get("document_id").cloned().unwrap_or(Value::Null),
        properties,
        timeout_duration,
        max_attempts: DEFAULT_MAX_ATTEMPTS,
        runs_as_user: run_as.is_some(),
    };
    let code = job.code.clone();
    let stored = enqueue::store_and_publish(state, job, sealed).await?;
    let (status, outcome) = match stored {
        Stored::Committed(Inserted::New(_)) => ("accepted", "accepted"),
        Stored::Committed(Inserted::Duplicate(_)) => ("duplicate", "duplicate"),
        Stored::HandedOff(_) => ("accepted", "handed_off"),
    };
    metrics::INGRESS_CALLS.with_label_values(&[outcome]).inc();
    tracing::info!(job.id = %stored.id(), portal.member_id = %portal.member_id, activity.code = %code, run_as.user = ?run_as.as_ref().and_then(|r| r.user_id), status, outcome, "activity call");
    Ok(Json(json!({ "status": status, "job_id": stored.id() })))
}
