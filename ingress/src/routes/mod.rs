mod activity;
mod api;
mod body;
mod events;
mod health;
mod install;

use axum::routing::{get, post};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/b24/activity", post(activity::accept))
        .route("/b24/install", post(install::install))
        .route("/b24/events", post(events::event))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api", api::router())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
