//! `POST /b24/events`: `ONAPPINSTALL` and `ONAPPUNINSTALL` (protocol.md §1.2–1.4).
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use b24flow_common::bitrix::form;
use b24flow_common::db::portals;
use serde_json::{json, Value};

use super::body::read_form;
use crate::error::ApiError;
use crate::portal_auth::{self, InstallClaim, InstallOutcome};
use crate::AppState;

pub async fn event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let form = read_form(&headers, body).await?;
    let auth = |k: &str| {
        form::str_at(&form, &["auth", k])
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let required = |k: &'static str| {
        auth(k).ok_or_else(|| {
            ApiError::bad_request("missing_field", format!("the event lacks auth[{k}]"))
        })
    };
    let event = form::str_at(&form, &["event"])
        .unwrap_or_default()
        .to_ascii_uppercase();
    match event.as_str() {
        "ONAPPINSTALL" => {
            let claim = InstallClaim {
                member_id: required("member_id")?,
                client_endpoint: match auth("client_endpoint") {
                    Some(e) => portal_auth::validate_endpoint(&e)?,
                    None => portal_auth::endpoint_for(&required("domain")?, Some("1"))?,
                },
                application_token: Some(required("application_token")?),
                refresh_token: required("refresh_token")?,
                language: form::str_at(&form, &["data", "LANGUAGE_ID"]).map(str::to_string),
                source: "ONAPPINSTALL",
            };
            let status = match portal_auth::install(&state, claim).await? {
                InstallOutcome::Installed => "installed",
                InstallOutcome::AlreadyInstalled => "already_installed",
            };
            Ok(Json(json!({ "status": status })))
        }
        "ONAPPUNINSTALL" => {
            let member_id = required("member_id")?;
            let token = required("application_token")?;
            let client = state.db.get().await?;
            let portal = portals::find_by_member_id(&client, &member_id)
                .await?
                .ok_or_else(|| {
                    ApiError::new(StatusCode::NOT_FOUND, "unknown_portal", "no such portal")
                })?;
            // The application_token is the only check possible for uninstall (§1.4).
            portal_auth::verify_application_token(&portal, &token)?;
            // Tokens erased, job history kept; workers hear of it through the
            // `portals_changed` trigger and drop their session.
            portals::mark_uninstalled(&client, portal.id).await?;
            tracing::info!(portal.member_id = %member_id, "portal uninstalled the app");
            Ok(Json(json!({ "status": "uninstalled" })))
        }
        "" => Err(ApiError::bad_request(
            "missing_field",
            "the event has no name",
        )),
        _ => Err(ApiError::bad_request(
            "unsupported_event",
            format!("event {event} is not handled"),
        )),
    }
}
