//! The RabbitMQ consumer: manual acks, prefetch = concurrency, reconnect with backoff, and
//! a shutdown that stops taking work, lets in-flight jobs finish until a deadline, then
//! hands the rest back.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use b24flow_common::amqp::{self, AmqpError, JobMessage, Topology};
use b24flow_common::bitrix::slots;
use b24flow_common::db::portal_limits::{self, JobPortal};
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicRejectOptions};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{running_cap, Admission};
use crate::runner::{Disposition, Runner};

pub struct ConsumerSettings {
    pub amqp_url: String,
    pub topology: Topology,
    /// Jobs running at once (waiting for a portal's limiter does not count).
    pub concurrency: usize,
    /// Jobs of one portal running at once in this process, at most (each portal's own cap
    /// follows its rate: `admission::running_cap`).
    pub per_portal_ceiling: usize,
    /// Deliveries held unacked: jobs received but waiting for their portal's turn. Large, so
    /// that one portal's flood is taken off the queue and cannot stand before other portals.
    pub prefetch: u16,
    pub shutdown_deadline: Duration,
}

/// The worker's slots, and the admission tickets of received jobs that do not hold one yet
/// (they claim their row meanwhile, see `common::bitrix::slots`); `concurrency` of each.
#[derive(Clone)]
struct Capacity {
    slots: Arc<Semaphore>,
    tickets: Arc<Semaphore>,
}

/// Deliveries looked up together (one query for their portals).
const ARRIVALS_PER_LOOKUP: usize = 500;

/// A received job.
struct Arrival {
    delivery: Delivery,
    job_id: uuid::Uuid,
}

/// Consumes until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(runner: Arc<Runner>, settings: ConsumerSettings, shutdown: CancellationToken) {
    let tracker = &TaskTracker::new();
    let hand_back = CancellationToken::new();
    let capacity = Capacity {
        slots: Arc::new(Semaphore::new(settings.concurrency)),
        tickets: Arc::new(Semaphore::new(settings.concurrency)),
    };
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match consume_once(
            &runner, &settings, &shutdown, tracker, &hand_back, &capacity,
        )
        .await
        {
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
    capacity: &Capacity,
) -> Result<(), AmqpError> {
    let conn = amqp::connect(&settings.amqp_url, "b24flow-worker").await?;
    let prefetch = settings.prefetch.max(1);
    let (channel, mut consumer) = amqp::consume(
        &conn,
        &settings.topology,
        &settings.topology.work_queue(),
        prefetch,
    )
    .await?;
    tracing::info!(queue = %settings.topology.work_queue(), prefetch, "consuming");
    let admission = Arc::new(Admission::<Arrival>::new());
    let stop_admitting = CancellationToken::new();
    let admitter = tokio::spawn(admit(
        runner.clone(),
        admission.clone(),
        capacity.clone(),
        tracker.clone(),
        hand_back.clone(),
        stop_admitting.clone(),
    ));
    let outcome = loop {
        let next = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.cancelled() => break Ok(()),
        };
        let mut received = vec![next];
        // Whatever else has already arrived joins this lookup.
        while received.len() < ARRIVALS_PER_LOOKUP {
            match consumer.next().now_or_never() {
                Some(d) => received.push(d),
                None => break,
            }
        }
        let mut arrivals = Vec::with_capacity(received.len());
        let mut failure = None;
        for next in received {
            match next {
                Some(Ok(delivery)) => {
                    if let Some(arrival) = read(delivery).await {
                        arrivals.push(arrival);
                    }
                }
                Some(Err(e)) => failure = Some(AmqpError::from(e)),
                None => {
                    failure = Some(AmqpError::Nacked("consumer cancelled by the broker".into()))
                }
            }
        }
        let portals = portals_of(runner, &arrivals).await;
        for arrival in arrivals {
            let (portal, cap) = match portals.get(&arrival.job_id) {
                Some(p) => (
                    p.portal_id,
                    running_cap(p.rate_per_sec, settings.per_portal_ceiling),
                ),
                None => (0, settings.per_portal_ceiling),
            };
            admission.push(portal, cap, arrival);
        }
        if let Some(e) = failure {
            break Err(e);
        }
    };
    stop_admitting.cancel();
    let _ = admitter.await;
    let waiting = admission.waiting();
    if waiting > 0 {
        tracing::info!(
            waiting,
            "jobs received but not started go back to the queue"
        );
    }
    // Stop receiving; in-flight jobs still need this channel to ack. What is left unacked
    // when the connection closes goes back to the queue, and the row decides who runs it.
    let _ = amqp::step(
        "cancelling the consumer",
        channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await;
    finish_in_flight(tracker, hand_back, settings.shutdown_deadline).await;
    b24flow_common::amqp::close(&conn, "shutdown").await;
    outcome
}

/// Starts received jobs as tickets free up, portals taking turns.
async fn admit(
    runner: Arc<Runner>,
    admission: Arc<Admission<Arrival>>,
    capacity: Capacity,
    tracker: TaskTracker,
    hand_back: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        let ticket = tokio::select! {
            t = capacity.tickets.clone().acquire_owned() => match t { Ok(t) => t, Err(_) => return },
            _ = stop.cancelled() => return,
        };
        let (portal, arrival) = tokio::select! {
            a = admission.take() => a,
            _ = stop.cancelled() => return,
        };
        let (runner, admission, slots, hand_back) = (
            runner.clone(),
            admission.clone(),
            capacity.slots.clone(),
            hand_back.clone(),
        );
        tracker.spawn(async move {
            slots::hold(slots, ticket, handle_delivery(&runner, arrival, hand_back)).await;
            admission.done(portal);
        });
    }
}

/// The job id of a delivery; a message nobody can read goes to the dead-letter queue, not
/// back to work.
async fn read(delivery: Delivery) -> Option<Arrival> {
    match serde_json::from_slice::<JobMessage>(&delivery.data) {
        Ok(m) => Some(Arrival {
            job_id: m.job_id,
            delivery,
        }),
        Err(e) => {
            tracing::error!(error = %e, "unreadable message dead-lettered");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            None
        }
    }
}

/// The portal of each arrival, in one query; portal 0 for all when Postgres does not answer
/// (the runner then holds them until it does).
async fn portals_of(runner: &Runner, arrivals: &[Arrival]) -> HashMap<uuid::Uuid, JobPortal> {
    let ids: Vec<uuid::Uuid> = arrivals.iter().map(|a| a.job_id).collect();
    if ids.is_empty() {
        return HashMap::new();
    }
    let lookup = async {
        let client = runner.db.get().await?;
        portal_limits::portals_of_jobs(&client, &ids).await
    };
    match lookup.await {
        Ok(pairs) => pairs.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up the portals of received jobs");
            HashMap::new()
        }
    }
}

async fn handle_delivery(runner: &Runner, arrival: Arrival, hand_back: CancellationToken) {
    let Arrival { delivery, job_id } = arrival;
    let message = JobMessage { job_id };
    // While Postgres is unreachable the delivery is held, not requeued: requeueing would
    // spin it towards the delivery limit and the dead-letter queue.
    let mut pause = Duration::from_millis(250);
    let acked = loop {
        match runner.handle(message.job_id, hand_back.clone()).await {
            Disposition::Ack => {
                break amqp::step("acking", delivery.ack(BasicAckOptions::default())).await
            }
            Disposition::Requeue if hand_back.is_cancelled() => {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                break amqp::step("requeueing", delivery.nack(requeue)).await;
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
