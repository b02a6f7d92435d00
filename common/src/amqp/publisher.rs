use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::topology::{INTAKE_ROUTING_KEY, WORK_ROUTING_KEY};
use super::{connect, AmqpError, IntakeMessage, JobMessage, Topology, JOBS_PER_MESSAGE};

/// One queue's depth as RabbitMQ reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QueueDepth {
    pub name: String,
    pub messages: u32,
    pub consumers: u32,
}

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a publish waits for another caller that is (re)connecting right now.
const LINK_WAIT: Duration = Duration::from_secs(1);
/// After a failed connect, publishes fail at once for this long instead of each waiting
/// for its own connect to time out; the stored jobs are published by the sweeper.
const RECONNECT_PAUSE: Duration = Duration::from_secs(3);

/// Publishes job ids with publisher confirms and `mandatory`, so "published" means the
/// broker has the message in a queue. Reconnects lazily after the connection drops; while
/// the broker is unreachable, callers get an error within about a second, not minutes.
pub struct Publisher {
    url: String,
    topology: Topology,
    link: Mutex<Option<(Connection, Channel)>>,
    /// Until when a new connect is not tried (set after a failed one).
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Publisher {
    pub fn new(url: &str, topology: Topology) -> Self {
        Self {
            url: url.to_string(),
            topology,
            link: Mutex::new(None),
            paused_until: std::sync::Mutex::new(None),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    fn paused(&self) -> bool {
        let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| tokio::time::Instant::now() < t)
    }

    fn pause(&self, pause: bool) {
        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) =
            pause.then(|| tokio::time::Instant::now() + RECONNECT_PAUSE);
    }

    async fn channel(&self) -> Result<Channel, AmqpError> {
        if self.paused() {
            return Err(AmqpError::Unavailable);
        }
        // Someone holding the lock for longer than a moment is connecting: do not queue
        // behind a connect that may time out.
        let mut link = tokio::time::timeout(LINK_WAIT, self.link.lock())
            .await
            .map_err(|_| AmqpError::Unavailable)?;
        if let Some((conn, channel)) = link.as_ref() {
            if conn.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *link = None;
        let opened = tokio::time::timeout(super::CONNECT_TIMEOUT, self.open())
            .await
            .unwrap_or(Err(AmqpError::ConnectTimeout));
        self.pause(opened.is_err());
        let (conn, channel) = opened?;
        *link = Some((conn, channel.clone()));
        Ok(channel)
    }

    async fn open(&self) -> Result<(Connection, Channel), AmqpError> {
        let conn = connect(&self.url, "b24flow-publisher").await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare(&channel).await?;
        Ok((conn, channel))
    }

    /// Forgets the connection; skipped when someone is replacing it right now.
    async fn drop_link(&self) {
        if let Ok(mut link) = self.link.try_lock() {
            *link = None;
        }
    }

    /// True when the broker answers now: a passive declare of the jobs exchange is a real
    /// round trip, so a connection that died silently is noticed (and replaced next time).
    pub async fn is_ready(&self) -> bool {
        let probe = async {
            let channel = self.channel().await?;
            channel
                .exchange_declare(
                    self.topology.jobs_exchange().into(),
                    lapin::ExchangeKind::Direct,
                    lapin::options::ExchangeDeclareOptions {
                        passive: true,
                        durable: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            Ok::<(), AmqpError>(())
        };
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(())) => true,
            _ => {
                self.drop_link().await;
                false
            }
        }
    }

    /// Messages ready and consumers of the work and dead-letter queues (passive declares:
    /// nothing is created). For operators; a broker that does not answer is an error.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, AmqpError> {
        let probe = async {
            let channel = self.channel().await?;
            let mut out = Vec::new();
            for name in [
                self.topology.work_queue(),
                self.topology.dead_letter_queue(),
            ] {
                let queue = channel
                    .queue_declare(
                        name.as_str().into(),
                        lapin::options::QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        lapin::types::FieldTable::default(),
                    )
                    .await?;
                out.push(QueueDepth {
                    name,
                    messages: queue.message_count(),
                    consumers: queue.consumer_count(),
                });
            }
            Ok::<_, AmqpError>(out)
        };
        let result = tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .unwrap_or(Err(AmqpError::ConfirmTimeout));
        if result.is_err() {
            self.drop_link().await;
        }
        result
    }

    pub async fn publish_job(&self, job_id: Uuid) -> Result<(), AmqpError> {
        self.publish_many(&[job_id])
            .await
            .pop()
            .unwrap_or(Err(AmqpError::Unavailable))
    }

    /// Publishes job ids with pipelined confirms, [`JOBS_PER_MESSAGE`] to a message: every
    /// message is sent before the first confirm is awaited. One answer per id, in order (a
    /// message's answer is that of each id it carries).
    pub async fn publish_many(&self, job_ids: &[Uuid]) -> Vec<Result<(), AmqpError>> {
        self.publish_carried(job_ids, JOBS_PER_MESSAGE).await
    }

    /// Like [`Publisher::publish_many`], one message per id: for jobs that must not share
    /// a message's delivery count (see the consumer's redeliveries).
    pub async fn publish_each(&self, job_ids: &[Uuid]) -> Vec<Result<(), AmqpError>> {
        self.publish_carried(job_ids, 1).await
    }

    async fn publish_carried(
        &self,
        job_ids: &[Uuid],
        per_message: usize,
    ) -> Vec<Result<(), AmqpError>> {
        let chunks: Vec<&[Uuid]> = job_ids.chunks(per_message.max(1)).collect();
        let messages = chunks.iter().filter_map(|ids| {
            let message = JobMessage::carrying(ids)?;
            let payload = serde_json::to_vec(&message).unwrap_or_default();
            Some((message.job_id, WORK_ROUTING_KEY, payload))
        });
        let settled = self.publish_confirmed(messages.collect()).await;
        chunks
            .iter()
            .zip(settled)
            .flat_map(|(ids, result)| {
                let copies = ids.len() - 1;
                let again = result.as_ref().err().map(ToString::to_string);
                std::iter::once(result).chain((0..copies).map(move |_| match &again {
                    None => Ok(()),
                    Some(why) => Err(AmqpError::Nacked(why.clone())),
                }))
            })
            .collect()
    }

    /// Hands whole calls to the intake queue (Postgres did not take them); a worker
    /// stores each under its id once Postgres answers. One answer per call, in order.
    pub async fn hand_off(&self, calls: &[IntakeMessage]) -> Vec<Result<(), AmqpError>> {
        let messages = calls.iter().map(|call| {
            let payload = serde_json::to_vec(call).unwrap_or_default();
            (call.job_id, INTAKE_ROUTING_KEY, payload)
        });
        self.publish_confirmed(messages.collect()).await
    }

    async fn publish_confirmed(
        &self,
        messages: Vec<(Uuid, &'static str, Vec<u8>)>,
    ) -> Vec<Result<(), AmqpError>> {
        if messages.is_empty() {
            return Vec::new();
        }
        let count = messages.len();
        let results = match self.try_publish_confirmed(messages).await {
            Ok(results) => results,
            Err(e) => {
                let text = e.to_string();
                let mut all = vec![Err(e)];
                all.extend((1..count).map(|_| Err(AmqpError::Nacked(text.clone()))));
                all
            }
        };
        if results.iter().any(Result::is_err) {
            self.drop_link().await;
        }
        results
    }

    async fn try_publish_confirmed(
        &self,
        messages: Vec<(Uuid, &'static str, Vec<u8>)>,
    ) -> Result<Vec<Result<(), AmqpError>>, AmqpError> {
        let channel = self.channel().await?;
        // All sends are started together: awaiting each before the next costs one io-loop
        // hand-over per message, seconds for a large group on a busy machine.
        let sends = messages.iter().map(|(id, routing_key, payload)| {
            channel.basic_publish(
                self.topology.jobs_exchange().into(),
                (*routing_key).into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                payload,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(id.to_string().into()),
            )
        });
        let sent = futures::future::join_all(sends).await;
        let mut confirms = Vec::with_capacity(messages.len());
        for ((id, _, _), confirm) in messages.iter().zip(sent) {
            confirms.push((*id, confirm?));
        }
        let settled = confirms.into_iter().map(|(id, confirm)| async move {
            match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                Err(_) => Err(AmqpError::ConfirmTimeout),
                Ok(Err(e)) => Err(AmqpError::from(e)),
                Ok(Ok(confirmation)) => settle(id, confirmation),
            }
        });
        Ok(futures::future::join_all(settled).await)
    }

    pub async fn close(&self) {
        if let Some((conn, _)) = self.link.lock().await.take() {
            super::close(&conn, "bye").await;
        }
    }
}

fn settle(id: Uuid, confirmation: Confirmation) -> Result<(), AmqpError> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(AmqpError::Unroutable(format!(
            "{} {}",
            returned.reply_code, returned.reply_text
        ))),
        Confirmation::Nack(_) => Err(AmqpError::Nacked(format!("job {id}"))),
    }
}
