//! Reading a form body with a hard size limit (SPEC.md: over 1 MiB is refused with 413
//! before it is read whole) and a deadline.
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use b24flow_common::bitrix::form;
use serde_json::Value;

use crate::error::ApiError;

pub const MAX_BODY: usize = 1024 * 1024;

/// A body must arrive whole within this long; a client trickling it is answered 408 and
/// no longer holds the connection.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("bodies over {MAX_BODY} bytes are refused"),
    )
}

/// Reads and decodes a PHP-style form body.
pub async fn read_form(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let bytes = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
        })?
        .map_err(|_| too_large())?;
    form::decode(&bytes).map_err(|e| ApiError::bad_request("malformed_body", e.to_string()))
}
