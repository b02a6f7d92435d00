//! RabbitMQ: the topology (quorum work queue with a delivery limit and at-least-once
//! dead-lettering), a confirmed publisher that reconnects, and connection helpers.
mod publisher;
mod topology;

pub use publisher::{Publisher, QueueDepth};
pub use topology::Topology;

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
}

/// What a message carries: only the job id; the job itself stays in Postgres.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: Uuid,
}

pub async fn connect(url: &str, name: &str) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url, props).await?)
}
