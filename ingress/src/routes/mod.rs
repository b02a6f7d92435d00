mod activity;
pub(crate) mod api;
mod app;
mod body;
mod dashboard;
mod events;
mod health;
mod install;
pub mod metrics;

use axum::routing::{get, post};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/b24/activity", post(activity::accept))
        .route("/b24/install", post(install::install))
        .route("/b24/events", post(events::event))
        .route("/b24/app", get(app::page).post(app::page))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::with_token))
        .nest("/api", api::router())
        .nest("/dashboard", dashboard::router())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Only `/metrics`, without the operator token, for `B24FLOW_METRICS_LISTEN`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::open))
        .with_state(state)
}
