//! `POST /b24/events`: `ONAPPINSTALL` and `ONAPPUNINSTALL` (protocol.md §1.2–1.4).
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use b24flow_common::bitrix::form;
use b24flow_common::db::jobs::{JobKind, NewJob, DEFAULT_MAX_ATTEMPTS};
use b24flow_common::db::portals::{self, Installation};
use serde_json::{json, Value};

use super::body::read_form;
use crate::enqueue;
use crate::error::ApiError;
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
            let domain = required("domain")?;
            let client_endpoint = match auth("client_endpoint") {
                Some(e) => validate_endpoint(&e)?,
                None => endpoint_for(&domain, Some("1"))?,
            };
            let installation = Installation {
                member_id: required("member_id")?,
                domain,
                client_endpoint,
                application_token: Some(required("application_token")?),
                access_token: required("access_token")?,
                refresh_token: required("refresh_token")?,
                expires_in: auth("expires_in")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(3600),
            };
            install_portal(&state, installation).await?;
            Ok(Json(json!({ "status": "installed" })))
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
            if !super::activity::token_matches(portal.application_token.as_deref(), &token) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_application_token",
                    "application_token does not match",
                ));
            }
            portals::mark_uninstalled(&client, portal.id).await?;
            state.bitrix.forget_portal(portal.id);
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

/// Confirms the token with the portal (`app.info`), stores the portal and enqueues the
/// registration of every activity.
pub(crate) async fn install_portal(
    state: &AppState,
    installation: Installation,
) -> Result<(), ApiError> {
    if let Err(e) = state
        .bitrix
        .call_with_token(
            &installation.client_endpoint,
            &installation.access_token,
            "app.info",
            json!({}),
        )
        .await
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "install_not_confirmed",
            format!(
                "the portal did not confirm the install token: {}",
                e.description()
            ),
        ));
    }
    let client = state.db.get().await?;
    let portal = portals::upsert_installed(&client, &state.config.secrets, &installation).await?;
    drop(client);
    state.bitrix.forget_portal(portal.id);
    tracing::info!(portal.member_id = %portal.member_id, portal.domain = %portal.domain, "portal installed");
    let job = NewJob {
        portal_id: portal.id,
        kind: JobKind::Register,
        code: "register".into(),
        event_token: None,
        workflow_id: None,
        document_id: Value::Null,
        properties: json!({ "handler": state.config.activity_handler_url() }),
        timeout_duration: 0,
        max_attempts: DEFAULT_MAX_ATTEMPTS,
    };
    enqueue::store_and_publish(state, &job, None).await?;
    Ok(())
}

/// `PROTOCOL` 0 = http, 1 = https; `DOMAIN` is a bare host with an optional port.
pub(crate) fn endpoint_for(domain: &str, protocol: Option<&str>) -> Result<String, ApiError> {
    let valid = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !valid {
        return Err(ApiError::bad_request(
            "invalid_domain",
            "DOMAIN must be a host name, optionally with a port",
        ));
    }
    let scheme = if protocol == Some("0") {
        "http"
    } else {
        "https"
    };
    Ok(format!("{scheme}://{domain}/rest/"))
}

fn validate_endpoint(endpoint: &str) -> Result<String, ApiError> {
    let ok = (endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        && endpoint.ends_with("/rest/")
        && !endpoint.contains(['?', '#', '@']);
    if ok {
        Ok(endpoint.to_string())
    } else {
        Err(ApiError::bad_request(
            "invalid_endpoint",
            "auth[client_endpoint] must be an http(s) URL ending in /rest/",
        ))
    }
}
