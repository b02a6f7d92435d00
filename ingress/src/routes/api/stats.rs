//! `/api/stats`, `/api/stats/timeseries`, `/api/queues`.
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use b24flow_common::amqp::QueueDepth;
use b24flow_common::db::ops::{self, Counts, SeriesBucket, Window};
use serde::Deserialize;

use crate::error::ApiError;
use crate::operator::Operator;
use crate::AppState;

pub async fn counts(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Json<Counts>, ApiError> {
    let client = state.db.get().await?;
    Ok(Json(ops::counts(&client).await?))
}

#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    window: Option<String>,
}

pub async fn timeseries(
    _op: Operator,
    State(state): State<AppState>,
    Query(query): Query<SeriesQuery>,
) -> Result<Json<Vec<SeriesBucket>>, ApiError> {
    let window = match query.window.as_deref() {
        None => Window::Hour,
        Some(w) => Window::parse(w)
            .ok_or_else(|| ApiError::bad_request("invalid_window", "window must be hour or day"))?,
    };
    let client = state.db.get().await?;
    Ok(Json(ops::timeseries(&client, window).await?))
}

pub async fn queue_depths(state: &AppState) -> Result<Vec<QueueDepth>, ApiError> {
    state.publisher.queue_depths().await.map_err(|e| {
        tracing::warn!(error = %e, "queue depths unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            "RabbitMQ did not answer; try again",
        )
    })
}

pub async fn queues(
    _op: Operator,
    State(state): State<AppState>,
) -> Result<Json<Vec<QueueDepth>>, ApiError> {
    Ok(Json(queue_depths(&state).await?))
}
