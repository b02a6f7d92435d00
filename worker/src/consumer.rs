//! The RabbitMQ consumer: manual acks, a large prefetch, reconnect with backoff, and a
//! shutdown that stops taking work, lets in-flight jobs finish until a deadline, then hands
//! the rest back. A message may carry several jobs (`JobMessage`); it is settled once the
//! last of them is done.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use b24flow_common::amqp::{self, AmqpError, JobMessage, Publisher, Topology};
use b24flow_common::bitrix::slots;
use b24flow_common::db::portal_limits::{self, JobPortal};
use b24flow_common::metrics;
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
    /// Publishes the jobs of a redelivered message one by one (see [`split`]).
    pub publisher: Arc<Publisher>,
}

/// The worker's slots, and the admission tickets of received jobs that do not hold one yet
/// (they claim their row meanwhile, see `common::bitrix::slots`); `concurrency` of each.
#[derive(Clone)]
struct Capacity {
    slots: Arc<Semaphore>,
    tickets: Arc<Semaphore>,
}

/// Received jobs looked up together (one query for their portals).
const ARRIVALS_PER_LOOKUP: usize = 500;

/// A received job.
struct Arrival {
    carrier: Arc<Carrier>,
    job_id: uuid::Uuid,
}

/// The delivery that brought one or more jobs. It is settled when the last of them is
/// done: acked, or handed back to the queue when any of them was handed back (the others
/// then come again and the row says they are done). Dropped unsettled (the consumer
/// stopped before a job started), it goes back to the queue with the connection.
struct Carrier {
    delivery: Delivery,
    open: AtomicUsize,
    hand_back: AtomicBool,
}

impl Carrier {
    fn new(delivery: Delivery, jobs: usize) -> Arc<Self> {
        Arc::new(Self {
            delivery,
            open: AtomicUsize::new(jobs),
            hand_back: AtomicBool::new(false),
        })
    }

    /// One of its jobs is done (`hand_back`: it goes back to the queue).
    async fn settle(&self, hand_back: bool) -> Result<(), AmqpError> {
        if hand_back {
            self.hand_back.store(true, Ordering::Release);
        }
        if self.open.fetch_sub(1, Ordering::AcqRel) != 1 {
            return Ok(());
        }
        if self.hand_back.load(Ordering::Acquire) {
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            amqp::step("requeueing", self.delivery.nack(requeue))
                .await
                .map(drop)
        } else {
            amqp::step("acking", self.delivery.ack(BasicAckOptions::default()))
                .await
                .map(drop)
        }
    }
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
        let mut arrivals = Vec::new();
        let mut redelivered = Vec::new();
        let mut taken = 0;
        let mut failure = None;
        let mut next = Some(next);
        // Whatever else has already arrived joins this lookup.
        while let Some(received) = next.take() {
            match received {
                Some(Ok(delivery)) => match read(delivery).await {
                    Some(Read::Jobs(jobs)) => {
                        taken += jobs.len();
                        arrivals.extend(jobs);
                    }
                    Some(Read::Redelivered(message)) => {
                        taken += message.1.job_count();
                        redelivered.push(*message);
                    }
                    None => {}
                },
                Some(Err(e)) => failure = Some(AmqpError::from(e)),
                None => {
                    failure = Some(AmqpError::Nacked("consumer cancelled by the broker".into()))
                }
            }
            if taken < ARRIVALS_PER_LOOKUP && failure.is_none() {
                next = consumer.next().now_or_never();
            }
        }
        if !redelivered.is_empty() {
            tracker.spawn(split(settings.publisher.clone(), redelivered));
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

/// What a delivery brought.
enum Read {
    Jobs(Vec<Arrival>),
    /// Several jobs that were delivered before (see [`split`]).
    Redelivered(Box<(Delivery, JobMessage)>),
}

/// The jobs of a delivery; a message nobody can read goes to the dead-letter queue, not
/// back to work.
async fn read(delivery: Delivery) -> Option<Read> {
    match serde_json::from_slice::<JobMessage>(&delivery.data) {
        Ok(m) if delivery.redelivered && m.job_count() > 1 => {
            Some(Read::Redelivered(Box::new((delivery, m))))
        }
        Ok(m) => {
            let carrier = Carrier::new(delivery, m.job_count());
            let jobs = m.job_ids().map(|job_id| Arrival {
                carrier: carrier.clone(),
                job_id,
            });
            Some(Read::Jobs(jobs.collect()))
        }
        Err(e) => {
            tracing::error!(error = %e, "unreadable message dead-lettered");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            None
        }
    }
}

/// Publishes each job of redelivered messages on its own, then acks those messages. A
/// redelivery counts towards the queue's delivery limit for the whole message, and it
/// follows a worker that stopped (perhaps killed by one of its jobs): apart, a job that
/// keeps killing workers reaches the dead-letter queue alone instead of taking the jobs
/// that shared its message along. Whatever is not published stays unacked and comes again.
async fn split(publisher: Arc<Publisher>, redelivered: Vec<(Delivery, JobMessage)>) {
    let ids: Vec<uuid::Uuid> = redelivered.iter().flat_map(|(_, m)| m.job_ids()).collect();
    let mut published = publisher.publish_each(&ids).await.into_iter();
    for (delivery, message) in redelivered {
        let sent: Vec<_> = published.by_ref().take(message.job_count()).collect();
        if sent.iter().all(Result::is_ok) {
            metrics::REDELIVERED_SPLIT.inc_by(message.job_count() as u64);
            let _ = amqp::step("acking", delivery.ack(BasicAckOptions::default())).await;
        } else {
            tracing::warn!(
                jobs = message.job_count(),
                "could not split a redelivered message; handing it back"
            );
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            let _ = amqp::step("requeueing", delivery.nack(requeue)).await;
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
    let Arrival { carrier, job_id } = arrival;
    // While Postgres is unreachable the delivery is held, not requeued: requeueing would
    // spin it towards the delivery limit and the dead-letter queue.
    let mut pause = Duration::from_millis(250);
    let acked = loop {
        match runner.handle(job_id, hand_back.clone()).await {
            Disposition::Ack => break carrier.settle(false).await,
            Disposition::Requeue if hand_back.is_cancelled() => break carrier.settle(true).await,
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
        tracing::debug!(job.id = %job_id, error = %e, "could not settle delivery");
    }
}
