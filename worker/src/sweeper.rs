//! The sweeper: hands orphans back (running attempts whose lease expired) and publishes
//! every queued job the broker does not hold: never confirmed (outbox), retries that are
//! due, and deliveries lost long ago. Duplicates are harmless: the claim is guarded.
use std::sync::Arc;
use std::time::Duration;

use b24flow_common::amqp::Publisher;
use b24flow_common::db::{jobs, DbError, Pool};
use b24flow_common::metrics;
use tokio_util::sync::CancellationToken;

/// Time the ingress gets to publish a job itself before the sweeper steps in.
const PUBLISH_GRACE: Duration = Duration::from_secs(2);
/// A confirmed message whose job is still queued this long later was lost (dead-lettered
/// or purged); publish it again.
const STALE_PUBLISH: Duration = Duration::from_secs(600);
const BATCH: i64 = 500;

pub async fn run(
    db: Pool,
    publisher: Arc<Publisher>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = sweep(&db, &publisher).await {
            tracing::warn!(error = %e, "sweep failed; will try again");
        }
    }
}

/// One pass; returns how many jobs were published.
pub async fn sweep(db: &Pool, publisher: &Publisher) -> Result<usize, DbError> {
    let client = db.get().await?;
    let reaped = jobs::reap_expired(&client).await?;
    if !reaped.is_empty() {
        metrics::SWEPT
            .with_label_values(&["reaped"])
            .inc_by(reaped.len() as u64);
        tracing::warn!(
            count = reaped.len(),
            "orphaned jobs handed back (their worker stopped)"
        );
    }
    jobs::forget_settled_unconfirmed(&client, PUBLISH_GRACE).await?;
    let mut published = 0;
    loop {
        let due = jobs::due_for_publish(&client, PUBLISH_GRACE, STALE_PUBLISH, BATCH).await?;
        if due.is_empty() {
            break;
        }
        let count = due.len();
        // Pipelined confirms and one statement for the marks: after an outage the backlog
        // goes out at the broker's pace, not one confirm round trip per job.
        let ids: Vec<_> = due.iter().map(|(id, _)| *id).collect();
        let results = publisher.publish_many(&ids).await;
        let confirmed: Vec<_> = due
            .iter()
            .zip(&results)
            .filter_map(|(job, r)| r.is_ok().then_some(*job))
            .collect();
        jobs::mark_published_many(&client, &confirmed).await?;
        published += confirmed.len();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            tracing::warn!(error = %e, failed = count - confirmed.len(), "sweeper could not publish; next pass");
            return Ok(published);
        }
        metrics::SWEPT
            .with_label_values(&["published"])
            .inc_by(count as u64);
        if (count as i64) < BATCH {
            break;
        }
    }
    Ok(published)
}
