//! Layer 3 of the simulator: the REST method router. Each module owns one scope's methods and exposes
//! `route(method) -> Option<Handler>`; adding a scope is one line in [`find`].
//!
//! Handlers get parameters as the portal's PHP sees them: a JSON body as decoded, or form /
//! query / batch sub-query data through `parse_str` (strings, and lists or maps for arrays).

pub(crate) mod app;
pub(crate) mod bizproc;
pub(crate) mod calendar;
pub(crate) mod crm;
pub(crate) mod department;
pub(crate) mod disk;
pub(crate) mod telephony;
pub(crate) mod user;

use axum::http::StatusCode;
use serde_json::Value;

use crate::portal::Portal;
use crate::state::State;

/// Who calls: the user behind the OAuth token. Every token here is an app token, so the
/// "application context" the bizproc methods require is always present.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub user_id: u64,
    pub is_admin: bool,
}

/// What a handler works on: the portal, its locked state and the caller.
pub(crate) struct Ctx<'a> {
    pub portal: &'a Portal,
    pub state: &'a mut State,
    pub caller: &'a Caller,
}

/// A method's result; list methods add `total`/`next` (protocol.md §6.2, §6.4).
#[derive(Debug)]
pub(crate) struct Reply {
    pub result: Value,
    pub total: Option<u64>,
    pub next: Option<u64>,
}

impl From<Value> for Reply {
    fn from(result: Value) -> Self {
        Reply {
            result,
            total: None,
            next: None,
        }
    }
}

/// `{"error": code, "error_description": text}` with its HTTP status (protocol.md §6.3).
#[derive(Clone, Debug)]
pub(crate) struct RestError {
    pub status: StatusCode,
    pub code: String,
    pub description: String,
}

impl RestError {
    pub fn new(status: StatusCode, code: &str, description: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            description: description.into(),
        }
    }
    /// `RestException`: HTTP 400 unless told otherwise.
    pub fn bad_request(code: &str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }
    /// `AccessException`: 403 `ACCESS_DENIED`, message "Access denied!" plus a detail.
    pub fn access_denied(detail: &str) -> Self {
        let description = if detail.is_empty() {
            "Access denied!".to_string()
        } else {
            format!("Access denied! {detail}")
        };
        Self::new(StatusCode::FORBIDDEN, "ACCESS_DENIED", description)
    }
    /// The method's time budget is spent (protocol.md §7.2).
    pub fn operation_time_limit() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "OPERATION_TIME_LIMIT",
            "Method is blocked due to operation time limit.",
        )
    }
    pub fn method_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ERROR_METHOD_NOT_FOUND",
            "Method not found!",
        )
    }
    pub fn no_auth() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "NO_AUTH_FOUND",
            "Wrong authorization data",
        )
    }
    pub fn expired_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "expired_token",
            "The access token provided has expired.",
        )
    }
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token provided is invalid.",
        )
    }

    pub fn body(&self) -> Value {
        serde_json::json!({ "error": self.code, "error_description": self.description })
    }
}

pub(crate) type Handler = fn(&mut Ctx<'_>, Value) -> Result<Reply, RestError>;

/// Looks a method up by its lower-cased name.
pub(crate) fn find(method: &str) -> Option<Handler> {
    app::route(method)
        .or_else(|| bizproc::route(method))
        .or_else(|| user::route(method))
        .or_else(|| department::route(method))
        .or_else(|| disk::route(method))
        .or_else(|| telephony::route(method))
        .or_else(|| calendar::route(method))
        .or_else(|| crm::route(method))
}

/// Runs one method call.
pub(crate) fn dispatch(ctx: &mut Ctx<'_>, method: &str, params: Value) -> Result<Reply, RestError> {
    let method = method.to_lowercase();
    let handler = find(&method).ok_or_else(RestError::method_not_found)?;
    if !ctx.state.operating.admits(&method) {
        return Err(RestError::operation_time_limit());
    }
    *ctx.state.method_calls.entry(method).or_insert(0) += 1;
    handler(ctx, params)
}

/// The page a list method answers for `start` (50 per page), with `total`/`next`.
pub(crate) fn page(items: Vec<Value>, offset: usize) -> Reply {
    let total = items.len();
    let result: Vec<Value> = items.into_iter().skip(offset).take(50).collect();
    let next = (offset + 50 < total).then_some((offset + 50) as u64);
    Reply {
        result: Value::Array(result),
        total: Some(total as u64),
        next,
    }
}

/// The `start` parameter (the REST server reads it before the method does).
pub(crate) fn start_param(params: &Value) -> usize {
    let v = params.get("start").or_else(|| params.get("START"));
    v.map(crate::php::intval).unwrap_or(0).max(0) as usize
}
