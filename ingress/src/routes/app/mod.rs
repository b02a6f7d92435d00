//! `GET|POST /b24/app`: the page Bitrix24 opens in its iframe for the portal's admin
//! (protocol.md §1.1 fields: `AUTH_ID`, `member_id`, `DOMAIN`, `LANG`…). Nothing is shown or
//! changed before the portal itself, at its confirmed endpoint, says the `AUTH_ID` belongs
//! to one of its administrators. Every action is a registration job, like the install's.
mod csrf;
mod texts;

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use b24flow_common::bitrix::form;
use b24flow_common::bitrix::{Batch, BatchResult, ErrorKind};
use b24flow_common::db::ops::{self, JobFilter};
use b24flow_common::db::portals::{self, Portal};
use b24flow_common::db::registrations;
use minijinja::{context, Environment};
use serde_json::{json, Value};

use super::body::read_form;
use crate::enqueue;
use crate::error::ApiError;
use crate::AppState;
use texts::{job_state, refusal, words, Lang, Refusal};

const RECENT_JOBS: i64 = 15;

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("page.html", include_str!("page.html"))
            .expect("the app page template parses");
        env
    })
}

/// What the request says; nothing of it is trusted yet.
struct Request {
    fields: Value,
    query: Value,
}

impl Request {
    fn field(&self, name: &str) -> Option<String> {
        form::str_at(&self.fields, &[name])
            .or_else(|| form::str_at(&self.query, &[name]))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }
}

pub async fn page(
    State(state): State<AppState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let query = form::decode(query.unwrap_or_default().as_bytes())
        .map_err(|e| ApiError::bad_request("malformed_query", e.to_string()))?;
    let fields = if method == Method::POST {
        read_form(&headers, body).await?
    } else {
        json!({})
    };
    let request = Request { fields, query };
    let asked_lang = request.field("LANG");
    let lang = Lang::from_code(asked_lang.as_deref());
    let (Some(auth_id), Some(member_id)) = (request.field("AUTH_ID"), request.field("member_id"))
    else {
        return Ok(refused(
            lang,
            Refusal::NotFromPortal,
            StatusCode::UNAUTHORIZED,
            None,
        ));
    };
    let client = state.db.get().await?;
    let portal = portals::find_by_member_id(&client, &member_id).await?;
    drop(client);
    let Some(portal) = portal.filter(Portal::is_installed) else {
        return Ok(refused(
            lang,
            Refusal::NotInstalled,
            StatusCode::FORBIDDEN,
            None,
        ));
    };
    let lang = match asked_lang {
        Some(_) => lang,
        None => Lang::from_code(portal.language.as_deref()),
    };
    let origin = origin_of(&portal.client_endpoint);
    let seen = match look_as_admin(&state, &portal, &auth_id).await {
        Ok(seen) => seen,
        Err((why, status)) => {
            tracing::info!(portal.member_id = %portal.member_id, ?why, "app page refused");
            return Ok(refused(lang, why, status, origin.as_deref()));
        }
    };

    let mut notice = None;
    if let Some(action) = request.field("action") {
        let token = request.field("csrf").unwrap_or_default();
        if !csrf::verify(&state.config.secrets, &token, &member_id, &auth_id) {
            return Ok(refused(
                lang,
                Refusal::Expired,
                StatusCode::FORBIDDEN,
                origin.as_deref(),
            ));
        }
        enqueue_action(&state, &portal, &action, request.field("code"), lang).await?;
        notice = Some(words(lang).queued_action);
    }
    let nonce = nonce();
    let html = render(&state, &portal, &auth_id, lang, &seen, notice, &nonce).await?;
    Ok(with_headers(
        Html(html).into_response(),
        origin.as_deref(),
        &nonce,
    ))
}

/// One batch with the caller's own token on the portal's confirmed endpoint: is the caller
/// an administrator, and which activities and robots are installed now.
async fn look_as_admin(
    state: &AppState,
    portal: &Portal,
    auth_id: &str,
) -> Result<BatchResult, (Refusal, StatusCode)> {
    let mut batch = Batch::new(false);
    batch.push("admin", "user.admin", &json!({}));
    batch.push("activities", "bizproc.activity.list", &json!({}));
    batch.push("robots", "bizproc.robot.list", &json!({}));
    let seen = match state.bitrix.batch_as_user(portal.id, auth_id, &batch).await {
        Ok(seen) => seen,
        Err(e) if e.kind() == ErrorKind::Transient => {
            return Err((Refusal::PortalUnavailable, StatusCode::SERVICE_UNAVAILABLE))
        }
        Err(_) => return Err((Refusal::NotFromPortal, StatusCode::UNAUTHORIZED)),
    };
    let is_admin = seen.get("admin").ok().is_some_and(|v| {
        v.as_bool() == Some(true) || v.as_str().is_some_and(|s| s == "true" || s == "1")
    });
    if is_admin {
        Ok(seen)
    } else {
        Err((Refusal::NotAdmin, StatusCode::FORBIDDEN))
    }
}

async fn enqueue_action(
    state: &AppState,
    portal: &Portal,
    action: &str,
    code: Option<String>,
    lang: Lang,
) -> Result<(), ApiError> {
    let client = state.db.get().await?;
    let known: Vec<String> = registrations::catalogue(&client)
        .await?
        .into_iter()
        .map(|e| e.code)
        .collect();
    drop(client);
    let one = || -> Result<Vec<String>, ApiError> {
        code.clone()
            .filter(|c| known.contains(c))
            .map(|c| vec![c])
            .ok_or_else(|| ApiError::bad_request("unknown_activity", "no such activity"))
    };
    let (action, codes) = match action {
        "install" => ("install", one()?),
        "uninstall" => ("uninstall", one()?),
        "install_all" => ("install_all", Vec::new()),
        "uninstall_all" => ("uninstall", known.clone()),
        "refresh" => ("refresh", Vec::new()),
        _ => return Err(ApiError::bad_request("unknown_action", "no such action")),
    };
    enqueue::registration(
        state,
        portal.id,
        json!({ "lang": lang.code(), "action": action, "codes": codes }),
    )
    .await?;
    tracing::info!(portal.member_id = %portal.member_id, action, ?codes, "app page action queued");
    Ok(())
}

async fn render(
    state: &AppState,
    portal: &Portal,
    auth_id: &str,
    lang: Lang,
    seen: &BatchResult,
    notice: Option<&str>,
    nonce: &str,
) -> Result<String, ApiError> {
    let listed = |key: &str| -> Vec<String> {
        seen.get(key)
            .ok()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let (activities, robots) = (listed("activities"), listed("robots"));
    let client = state.db.get().await?;
    let catalogue = registrations::catalogue(&client).await?;
    let pick = |v: &Value| v[lang.code()].as_str().unwrap_or_default().to_string();
    let rows: Vec<Value> = catalogue
        .iter()
        .map(|e| {
            json!({
                "code": e.code,
                "name": pick(&e.name),
                "description": pick(&e.description),
                "activity": activities.contains(&e.code),
                "robot": robots.contains(&format!("robot_{}", e.code)),
            })
        })
        .collect();
    let filter = JobFilter {
        portal: Some(portal.id.to_string()),
        ..JobFilter::default()
    };
    let jobs = ops::list_jobs(&client, &filter, None, RECENT_JOBS)
        .await?
        .jobs;
    let jobs: Vec<Value> = jobs
        .iter()
        .map(|j| {
            json!({
                "code": j.code, "status": job_state(lang, &j.status), "last_error": j.last_error,
                "created_at": j.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            })
        })
        .collect();
    let unfinished = portals::unfinished_jobs(&client, portal.id).await?;
    let last_refresh =
        registrations::last_refresh(&client, portal.id)
            .await?
            .map(|(at, result)| {
                json!({
                    "at": at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    "changes": result.get("changes").cloned().unwrap_or(json!([])),
                })
            });
    let other = match lang {
        Lang::Ru => Lang::En,
        Lang::En => Lang::Ru,
    };
    templates()
        .get_template("page.html")
        .and_then(|t| {
            t.render(context! {
                lang => lang.code(),
                w => words(lang),
                nonce => nonce,
                refusal => Value::Null,
                page_url => format!("/b24/app?LANG={}", lang.code()),
                other_lang_url => format!("/b24/app?LANG={}", other.code()),
                auth_id => auth_id,
                member_id => portal.member_id,
                csrf => csrf::issue(&state.config.secrets, &portal.member_id, auth_id),
                domain => portal.domain,
                notice => notice,
                activities => rows,
                jobs => jobs,
                unfinished => unfinished,
                last_refresh => last_refresh,
            })
        })
        .map_err(|e| {
            tracing::error!(error = %e, "the app page did not render");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "render_failed",
                "the page could not be shown",
            )
        })
}

fn refused(lang: Lang, why: Refusal, status: StatusCode, origin: Option<&str>) -> Response {
    let nonce = nonce();
    let html = templates()
        .get_template("page.html")
        .and_then(|t| {
            t.render(context! {
                lang => lang.code(), w => words(lang), nonce => nonce,
                refusal => refusal(lang, why),
            })
        })
        .unwrap_or_else(|_| refusal(lang, why).to_string());
    with_headers((status, Html(html)).into_response(), origin, &nonce)
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `https://acme.bitrix24.com` from `https://acme.bitrix24.com/rest/`.
fn origin_of(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    Some(url.origin().ascii_serialization()).filter(|o| o != "null")
}

/// The page lives in the portal's iframe: only that portal may frame it; scripts and styles
/// only with this response's nonce (plus Bitrix24's own BX24 library).
fn with_headers(mut response: Response, origin: Option<&str>, nonce: &str) -> Response {
    let frame = origin.unwrap_or("'none'");
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}' https://api.bitrix24.com; \
         style-src 'nonce-{nonce}'; img-src 'self' data:; form-action 'self'; \
         base-uri 'none'; frame-ancestors {frame}"
    );
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
