//! `POST /b24/install`: the install page Bitrix24 opens (protocol.md §1.1). Once the OAuth
//! server confirms the install, stores the portal and enqueues the registration of every
//! activity as a worker job.
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Html;
use b24flow_common::bitrix::form;

use super::body::read_form;
use crate::error::ApiError;
use crate::portal_auth::{self, InstallClaim};
use crate::AppState;

pub async fn install(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Html<String>, ApiError> {
    let form = read_form(&headers, body).await?;
    let query = form::decode(query.unwrap_or_default().as_bytes())
        .map_err(|e| ApiError::bad_request("malformed_query", e.to_string()))?;
    let field = |name: &str| -> Option<String> {
        form::str_at(&form, &[name])
            .or_else(|| form::str_at(&query, &[name]))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let required = |name: &'static str| {
        field(name).ok_or_else(|| {
            ApiError::bad_request("missing_field", format!("the install form lacks {name}"))
        })
    };
    let domain = required("DOMAIN")?;
    let claim = InstallClaim {
        member_id: required("member_id")?,
        client_endpoint: portal_auth::endpoint_for(&domain, field("PROTOCOL").as_deref())?,
        application_token: field("APPLICATION_TOKEN"),
        refresh_token: required("REFRESH_ID")?,
        language: field("LANG"),
        source: "install page",
    };
    portal_auth::install(&state, claim).await?;
    Ok(Html(INSTALL_FINISHED_PAGE.to_string()))
}

/// The install is complete only after `BX24.installFinish()` (protocol.md §1.1).
const INSTALL_FINISHED_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>b24flow</title>
<script src="//api.bitrix24.com/api/v1/"></script></head>
<body><p>b24flow is installed; its activities are being registered.</p>
<script>if (window.BX24) { BX24.init(function () { BX24.installFinish(); }); }</script>
</body></html>"#;
