//! `/dashboard`: the operators' web console, server-rendered (minijinja templates compiled
//! into the binary) over the same operations as `/api`. A login with the operator token
//! sets a signed session cookie (`HttpOnly`, `SameSite=Strict`); every form carries the
//! session's CSRF token; every answer carries strict security headers (no inline script,
//! nothing from other origins: the charting library is served from the binary too).
mod assets;
mod login;
mod pages;
mod render;
mod session;

use axum::http::{header, HeaderName, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

pub fn router() -> Router<AppState> {
    let headers = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ),
    ];
    let mut router = Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/rows", get(pages::job_rows))
        .route("/jobs/bulk", post(pages::bulk))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/retry", post(pages::retry))
        .route("/jobs/{id}/discard", post(pages::discard))
        .route("/portals/{portal}", get(pages::portal))
        .route("/portals/{portal}/pause", post(pages::pause))
        .route("/portals/{portal}/resume", post(pages::resume))
        .route("/portals/{portal}/limits", post(pages::set_plan))
        .route("/assets/{name}", get(assets::serve));
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
}
