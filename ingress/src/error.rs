//! The one error type of the ingress: a stable snake_case code in a JSON body. Causes are
//! logged here, never sent.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use b24flow_common::db::DbError;

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// No portal answers to what an operator named (id, domain or member_id).
    pub fn portal_not_found(portal: impl std::fmt::Debug) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "portal_not_found",
            format!("no portal {portal:?}"),
        )
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        tracing::error!(error = %e, "database unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is not reachable; try again",
        )
    }
}

impl From<b24flow_common::db::PoolError> for ApiError {
    fn from(e: b24flow_common::db::PoolError) -> Self {
        DbError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        } else {
            tracing::info!(code = self.code, message = %self.message, "request refused");
        }
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}
