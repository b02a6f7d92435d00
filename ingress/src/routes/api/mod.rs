//! `/api`: the operators' JSON API (bearer token; see `crate::operator`). The dashboard and
//! `b24flow jobs` use the same logic through `crate::console` and the `ops` repository.
mod jobs;
mod portals;
mod stats;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(jobs::list))
        .route("/jobs/retry", post(jobs::bulk_retry))
        .route("/jobs/discard", post(jobs::bulk_discard))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/jobs/{id}/discard", post(jobs::discard))
        .route("/stats", get(stats::counts))
        .route("/stats/timeseries", get(stats::timeseries))
        .route("/queues", get(stats::queues))
        .route("/portals", get(portals::list))
        .route("/portals/{portal}", get(portals::show))
        .route(
            "/portals/{portal}/limits",
            get(portals::limits)
                .put(portals::set_limits)
                .post(portals::set_limits),
        )
        .route("/portals/{portal}/pause", post(portals::pause))
        .route("/portals/{portal}/resume", post(portals::resume))
}
