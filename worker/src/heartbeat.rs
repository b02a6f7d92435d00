//! Keeps a running attempt's lease alive, and says when the attempt lost it.
use std::time::Duration;

use b24flow_common::db::jobs::{self, Job};
use b24flow_common::db::Pool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Renews the lease every third of it until dropped. Cancels `lost` when the row says
/// another attempt owns the job, or when no renewal succeeded for (almost) a whole lease:
/// by then the reaper may have handed the job to someone else.
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    pub fn spawn(db: &Pool, job: &Job, lease: Duration, lost: CancellationToken) -> Self {
        let db = db.clone();
        let (id, attempt) = (job.id, job.attempt);
        Self(tokio::spawn(async move {
            // A margin for the clocks of this process and the database disagreeing.
            let expires_after = lease - lease / 10;
            let mut renewed = Instant::now();
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                let expiry = renewed + expires_after;
                match tokio::time::timeout_at(expiry, renew(&db, id, attempt, lease)).await {
                    Ok(Ok(true)) => renewed = Instant::now(),
                    Ok(Ok(false)) => {
                        tracing::warn!(job.id = %id, attempt, "lost the job's lease: a newer attempt owns it");
                        lost.cancel();
                        return;
                    }
                    Ok(Err(e)) => tracing::warn!(job.id = %id, error = %e, "heartbeat failed"),
                    Err(_) => {}
                }
                if Instant::now() >= renewed + expires_after {
                    tracing::warn!(job.id = %id, attempt, "lost the job's lease: no renewal within the lease");
                    lost.cancel();
                    return;
                }
            }
        }))
    }
}

async fn renew(
    db: &Pool,
    id: Uuid,
    attempt: i32,
    lease: Duration,
) -> Result<bool, b24flow_common::db::DbError> {
    let client = db.get().await?;
    jobs::heartbeat(&client, id, attempt, lease).await
}

impl Drop for Heartbeat {
    /// The attempt is over, however it ended (a panic included): stop renewing.
    fn drop(&mut self) {
        self.0.abort();
    }
}
