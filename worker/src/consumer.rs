//! The RabbitMQ consumer: manual acks, prefetch = concurrency, reconnect with backoff, and
//! a shutdown that stops taking work, lets in-flight jobs finish until a deadline, then
//! hands the rest back.
use std::sync::Arc;
use std::time::Duration;

use b24flow_common::amqp::{self, AmqpError, JobMessage, Topology};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runner::{Disposition, Runner};

pub struct ConsumerSettings {
    pub amqp_url: String,
    pub topology: Topology,
    pub concurrency: usize,
    pub shutdown_deadline: Duration,
}

/// Consumes until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(runner: Arc<Runner>, settings: ConsumerSettings, shutdown: CancellationToken) {
    let tracker = &TaskTracker::new();
    let hand_back = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match consume_once(&runner, &settings, &shutdown, tracker, &hand_back, &slots).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                let delay = Duration::from_millis(200 * 2u64.pow(failures.min(6)));
                tracing::warn!(error = %e, retry_in = ?delay, "consumer lost the broker; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    finish_in_flight(tracker, &hand_back, settings.shutdown_deadline).await;
}

/// Waits for in-flight jobs until the deadline, then tells the rest to hand their job back.
async fn finish_in_flight(
    tracker: &TaskTracker,
    hand_back: &CancellationToken,
    deadline: Duration,
) {
    tracker.close();
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed; handing unfinished jobs back");
        hand_back.cancel();
        tracker.wait().await;
    }
}

async fn consume_once(
    runner: &Arc<Runner>,
    settings: &ConsumerSettings,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    hand_back: &CancellationToken,
    slots: &Arc<Semaphore>,
) -> Result<(), AmqpError> {
    let conn = amqp::connect(&settings.amqp_url, "b24flow-worker").await?;
    let channel = conn.create_channel().await?;
    settings.topology.declare(&channel).await?;
    let prefetch = u16::try_from(settings.concurrency).unwrap_or(u16::MAX);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            settings.topology.work_queue().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %settings.topology.work_queue(), prefetch, "consuming");
    loop {
        let next = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.cancelled() => break,
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(AmqpError::Nacked("consumer cancelled by the broker".into())),
        };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(|_| AmqpError::Nacked("closed".into()))?,
            _ = shutdown.cancelled() => break,
        };
        let runner = runner.clone();
        let hand_back = hand_back.clone();
        tracker.spawn(async move {
            handle_delivery(&runner, delivery, hand_back).await;
            drop(permit);
        });
    }
    // Stop receiving; in-flight jobs still need this channel to ack. What is left unacked
    // when the connection closes goes back to the queue, and the row decides who runs it.
    let _ = channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    finish_in_flight(tracker, hand_back, settings.shutdown_deadline).await;
    let _ = conn.close(200, "shutdown".into()).await;
    Ok(())
}

async fn handle_delivery(runner: &Runner, delivery: Delivery, hand_back: CancellationToken) {
    let message: JobMessage = match serde_json::from_slice(&delivery.data) {
        Ok(m) => m,
        Err(e) => {
            // A message nobody can read goes to the dead-letter queue, not back to work.
            tracing::error!(error = %e, "unreadable message dead-lettered");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    // While Postgres is unreachable the delivery is held, not requeued: requeueing would
    // spin it towards the delivery limit and the dead-letter queue.
    let mut pause = Duration::from_millis(250);
    let acked = loop {
        match runner.handle(message.job_id, hand_back.clone()).await {
            Disposition::Ack => break delivery.ack(BasicAckOptions::default()).await,
            Disposition::Requeue if hand_back.is_cancelled() => {
                break delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
            }
            Disposition::Requeue => {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = hand_back.cancelled() => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    };
    if let Err(e) = acked {
        // The channel is gone; RabbitMQ redelivers and the row decides who runs it.
        tracing::debug!(job.id = %message.job_id, error = %e, "could not settle delivery");
    }
}
