//! RabbitMQ: the topology (quorum work queue with a delivery limit and at-least-once
//! dead-lettering), a confirmed publisher that reconnects, and connection helpers.
mod publisher;
mod topology;

pub use publisher::{Publisher, QueueDepth};
pub use topology::{Topology, INTAKE_ROUTING_KEY, WORK_ROUTING_KEY};

use lapin::{Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("rabbitmq: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("rabbitmq refused the message: {0}")]
    Nacked(String),
    #[error("rabbitmq could not route the message: {0}")]
    Unroutable(String),
    #[error("rabbitmq did not confirm in time")]
    ConfirmTimeout,
    #[error("rabbitmq did not answer the connect in time")]
    ConnectTimeout,
    #[error("rabbitmq did not answer in time: {0}")]
    Timeout(&'static str),
    #[error("rabbitmq is unreachable; not trying again for a moment")]
    Unavailable,
}

/// What a work message carries: the ids of jobs stored together (one ingress group, one
/// sweep), at most [`JOBS_PER_MESSAGE`]; the jobs themselves stay in Postgres. One message
/// per group instead of per job spares the broker, the publisher and the consumer most of
/// their per-message work.
///
/// The first id is written as `job_id`, the form of one job per message that older
/// processes read: an older worker runs that job and ignores the others, which stay queued
/// until the sweeper publishes them again (stale publishes), so a rolling upgrade delays
/// jobs but loses none.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: Uuid,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_job_ids: Vec<Uuid>,
}

/// Job ids carried by one work message, at most.
pub const JOBS_PER_MESSAGE: usize = 64;

impl JobMessage {
    /// The message carrying `ids` (none is not a message).
    pub fn carrying(ids: &[Uuid]) -> Option<Self> {
        let (&job_id, more) = ids.split_first()?;
        Some(Self {
            job_id,
            more_job_ids: more.to_vec(),
        })
    }

    pub fn job_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        std::iter::once(self.job_id).chain(self.more_job_ids.iter().copied())
    }

    pub fn job_count(&self) -> usize {
        1 + self.more_job_ids.len()
    }
}

/// A whole activity call the ingress could not store in Postgres, handed to RabbitMQ
/// instead; its secrets are already sealed with the secret key. A worker stores it under
/// `job_id`, so a call handed over twice (or committed late after all) stays one job.
#[derive(Debug, Serialize, Deserialize)]
pub struct IntakeMessage {
    pub job_id: Uuid,
    pub job: crate::db::jobs::NewJob,
    pub secret_enc: Option<Vec<u8>>,
}

/// How long connecting to RabbitMQ (TCP, AMQP handshake) may take: a blackholed broker
/// must not hold the caller for the minutes a TCP connect can otherwise last.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn connect(url: &str, name: &str) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props))
        .await
        .map_err(|_| AmqpError::ConnectTimeout)?
        .map_err(AmqpError::from)
}

/// How long a polite close may wait for the broker's `close-ok`. lapin can leave the close
/// waiting forever when the socket went away first (seen: a test hung in its cleanup after
/// the broker logged "client unexpectedly closed TCP connection"); past this the connection
/// is simply dropped, which the broker handles like any lost client.
pub const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long one step on a channel (open, declare, qos, consume, cancel) may wait for the
/// broker. Like a close, lapin can leave such a step waiting forever when the socket went
/// away under it (seen: a worker that never stopped after a broker cut, its consumer's
/// cancel unanswered); past this the step fails and the caller reconnects or stops.
pub const STEP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs one channel step within [`STEP_WAIT`].
pub async fn step<T, E: Into<AmqpError>>(
    what: &'static str,
    step: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, AmqpError> {
    tokio::time::timeout(STEP_WAIT, step)
        .await
        .map_err(|_| AmqpError::Timeout(what))?
        .map_err(Into::into)
}

/// Opens a channel on `conn`, declares the topology and consumes `queue` with at most
/// `prefetch` unacked deliveries, each step within [`STEP_WAIT`].
pub async fn consume(
    conn: &Connection,
    topology: &Topology,
    queue: &str,
    prefetch: u16,
) -> Result<(lapin::Channel, lapin::Consumer), AmqpError> {
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    let channel = step("opening a channel", conn.create_channel()).await?;
    step("declaring the queues", topology.declare(&channel)).await?;
    step(
        "setting the prefetch",
        channel.basic_qos(prefetch, BasicQosOptions::default()),
    )
    .await?;
    let consumer = step(
        "starting the consumer",
        channel.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        ),
    )
    .await?;
    Ok((channel, consumer))
}

/// Closes `conn` politely, waiting at most [`CLOSE_WAIT`].
pub async fn close(conn: &Connection, why: &str) {
    let _ = tokio::time::timeout(CLOSE_WAIT, conn.close(200, why.into())).await;
}
