//! What an injected fault (`state::faults`) answers on the wire.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::state::faults::Fault;

pub(crate) fn error_response(fault: &Fault) -> Option<Response> {
    let json = |status: StatusCode, body: &'static str| {
        (
            status,
            [("content-type", "application/json; charset=utf-8")],
            body,
        )
            .into_response()
    };
    match fault {
        Fault::Error500 => Some(json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"INTERNAL_SERVER_ERROR","error_description":"Internal server error"}"#,
        )),
        Fault::Error503Json => Some(json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"SERVICE_UNAVAILABLE","error_description":"Service temporarily unavailable"}"#,
        )),
        Fault::Error503Html => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "text/html")],
                "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
            )
                .into_response(),
        ),
        Fault::None | Fault::Slow(_) => None,
    }
}
