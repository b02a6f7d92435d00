//! Committing a job and handing it to RabbitMQ. The row is committed first: if publishing
//! fails, the sweeper publishes it later (outbox), so an accepted call is never lost.
//! Calls are gathered into group commits (`group_commit`).
use b24flow_common::db::jobs::{self, NewJob};
use uuid::Uuid;

use crate::error::ApiError;
pub use crate::group_commit::Stored;
use crate::AppState;

pub async fn store_and_publish(
    state: &AppState,
    job: NewJob,
    secret: Option<Vec<u8>>,
) -> Result<Stored, ApiError> {
    state.group_commit.store(job, secret).await
}

/// Publishes a job whose `attempt` is already past 0 (operators' actions) and records the
/// confirmation; a failure is logged and left to the sweeper.
pub async fn publish_attempt(state: &AppState, id: Uuid, attempt: i32) {
    match state.publisher.publish_job(id).await {
        Ok(()) => {
            if let Ok(client) = state.db.get().await {
                if let Err(e) = jobs::mark_published(&client, id, attempt).await {
                    tracing::warn!(job.id = %id, error = %e, "published but not marked; the sweeper may publish it again");
                }
            }
        }
        Err(e) => {
            tracing::warn!(job.id = %id, error = %e, "publish failed; the sweeper will publish the stored job");
        }
    }
}

/// Enqueues a registration job for a portal: the install's "register everything" or an app
/// page action (`action`, `codes`). `handler` is added here, so every caller registers the
/// same activity URL.
pub async fn registration(
    state: &AppState,
    portal_id: i64,
    mut properties: serde_json::Value,
) -> Result<Stored, ApiError> {
    properties["handler"] = serde_json::json!(state.config.activity_handler_url());
    let job = NewJob {
        portal_id,
        kind: jobs::JobKind::Register,
        code: "register".into(),
        event_token: None,
        workflow_id: None,
        document_id: serde_json::Value::Null,
        properties,
        timeout_duration: 0,
        max_attempts: jobs::DEFAULT_MAX_ATTEMPTS,
        runs_as_user: false,
    };
    store_and_publish(state, job, None).await
}
