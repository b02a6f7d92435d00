use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use b24flow_common::db;

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready = Postgres and RabbitMQ both answer.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (postgres, rabbitmq) = tokio::join!(db::ping(&state.db), state.publisher.is_ready());
    let status = if postgres && rabbitmq {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "postgres": postgres, "rabbitmq": rabbitmq })),
    )
}
