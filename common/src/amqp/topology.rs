use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::{connect, AmqpError};

/// How long declaring or deleting everything may take once connected: a broker that stops
/// answering half-way must not hold a setup (or a test's cleanup) forever.
const SETUP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Names of every exchange and queue, all under one prefix so test runs and deployments
/// can share a broker.
#[derive(Clone, Debug)]
pub struct Topology {
    pub prefix: String,
    /// Deliveries of one message before RabbitMQ dead-letters it (a poison message).
    pub delivery_limit: i32,
}

pub const WORK_ROUTING_KEY: &str = "work";
/// Whole calls the ingress could not store in Postgres (see `IntakeMessage`).
pub const INTAKE_ROUTING_KEY: &str = "intake";

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            delivery_limit: 5,
        }
    }
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    pub fn work_queue(&self) -> String {
        format!("{}.work", self.prefix)
    }
    /// Whole calls waiting for Postgres. No delivery limit: a call must never be
    /// dead-lettered for a database outage.
    pub fn intake_queue(&self) -> String {
        format!("{}.intake", self.prefix)
    }
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Connects to `amqp_url`, declares everything and disconnects: the setup before anything
    /// publishes (`b24flow all`, the demo, benchmarks, tests).
    pub async fn declare_at(&self, amqp_url: &str) -> Result<(), AmqpError> {
        let conn = connect(amqp_url, "b24flow-setup").await?;
        let declare = async {
            let channel = conn.create_channel().await?;
            let declared = self.declare(&channel).await;
            close_channel(&channel).await;
            declared
        };
        let declared = tokio::time::timeout(SETUP_WAIT, declare)
            .await
            .unwrap_or(Err(AmqpError::Timeout("declaring the queues")));
        super::close(&conn, "done").await;
        declared
    }

    /// Like [`Topology::declare_at`], removing everything (scratch prefixes of the demo,
    /// benchmarks and tests).
    pub async fn delete_at(&self, amqp_url: &str) -> Result<(), AmqpError> {
        let conn = connect(amqp_url, "b24flow-cleanup").await?;
        let delete = async {
            let channel = conn.create_channel().await?;
            let deleted = self.delete(&channel).await;
            close_channel(&channel).await;
            deleted
        };
        let deleted = tokio::time::timeout(SETUP_WAIT, delete)
            .await
            .unwrap_or(Err(AmqpError::Timeout("deleting the queues")));
        super::close(&conn, "done").await;
        deleted
    }

    /// Declares everything (idempotent). Quorum queues: replicated, and the only kind with
    /// delivery limits and at-least-once dead-lettering on RabbitMQ 3.10.
    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.jobs_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dead_letter_exchange().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;

        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), string("quorum"));
        channel
            .queue_declare(
                self.dead_letter_queue().into(),
                QueueDeclareOptions::durable(),
                dead_args,
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue().into(),
                self.dead_letter_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut work_args = FieldTable::default();
        work_args.insert("x-queue-type".into(), string("quorum"));
        work_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(self.delivery_limit),
        );
        work_args.insert(
            "x-dead-letter-exchange".into(),
            string(&self.dead_letter_exchange()),
        );
        // at-least-once dead-lettering requires reject-publish overflow.
        work_args.insert("x-dead-letter-strategy".into(), string("at-least-once"));
        work_args.insert("x-overflow".into(), string("reject-publish"));
        channel
            .queue_declare(
                self.work_queue().into(),
                QueueDeclareOptions::durable(),
                work_args,
            )
            .await?;
        channel
            .queue_bind(
                self.work_queue().into(),
                self.jobs_exchange().into(),
                WORK_ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut intake_args = FieldTable::default();
        intake_args.insert("x-queue-type".into(), string("quorum"));
        channel
            .queue_declare(
                self.intake_queue().into(),
                QueueDeclareOptions::durable(),
                intake_args,
            )
            .await?;
        channel
            .queue_bind(
                self.intake_queue().into(),
                self.jobs_exchange().into(),
                INTAKE_ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// Removes everything (tests clean up after themselves).
    pub async fn delete(&self, channel: &Channel) -> Result<(), AmqpError> {
        for queue in [
            self.work_queue(),
            self.dead_letter_queue(),
            self.intake_queue(),
        ] {
            channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [self.jobs_exchange(), self.dead_letter_exchange()] {
            channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Closes a setup channel before its connection. A channel dropped open is closed in the
/// background, and when that close races the connection's, lapin logs "invalid channel
/// state: Closing" as an error (seen at the start of `b24flow all`), which an operator
/// would take for a fault. A channel the broker already closed (a failed step) just
/// answers an error here, which says nothing new.
async fn close_channel(channel: &lapin::Channel) {
    let _ = tokio::time::timeout(super::CLOSE_WAIT, channel.close(200, "done".into())).await;
}
