//! Injected failures of the portal's REST endpoint: a share of requests answers 500 or 503
//! (as an nginx page or a JSON error) or answers late. A failed request changes nothing.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;

/// Shares (0.0..=1.0) of REST requests (not OAuth, not the driver) that fail or are slow.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer 500 `{"error":"INTERNAL_SERVER_ERROR",…}`.
    pub error_500: f64,
    /// Answer 503 "service unavailable" (half as an HTML page, half as a JSON error).
    pub error_503: f64,
    /// Wait `slow_delay`, then handle the request normally.
    pub slow: f64,
    pub slow_delay: Duration,
}

pub(crate) enum Fault {
    None,
    Error500,
    Error503Html,
    Error503Json,
    Slow(Duration),
}

impl Faults {
    pub(crate) fn roll(&self) -> Fault {
        let mut rng = rand::thread_rng();
        let r: f64 = rng.gen();
        if r < self.error_500 {
            Fault::Error500
        } else if r < self.error_500 + self.error_503 {
            if rng.gen_bool(0.5) {
                Fault::Error503Html
            } else {
                Fault::Error503Json
            }
        } else if r < self.error_500 + self.error_503 + self.slow {
            Fault::Slow(self.slow_delay)
        } else {
            Fault::None
        }
    }
}

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
