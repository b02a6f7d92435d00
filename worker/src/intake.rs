//! The intake: whole calls the ingress handed to RabbitMQ because Postgres did not take
//! them (issue 15). Each is stored under the id the ingress chose, then published like any
//! new job, and only then acked; while Postgres is still down the delivery is held, never
//! requeued or dead-lettered. A call stored twice (redelivery, or a commit that landed
//! late after all) stays one job: the insert skips an existing id or event token.
//! A call Postgres keeps refusing (a value it cannot store) is answered with an error,
//! since Bitrix24 never repeats a call and its workflow would otherwise wait forever.
use std::sync::Arc;
use std::time::Duration;

use b24flow_common::amqp::{self, AmqpError, IntakeMessage, Publisher, Topology};
use b24flow_common::bitrix::Bitrix;
use b24flow_common::db::jobs::{self, Inserted, NewRow, Outcome};
use b24flow_common::db::{DbError, Pool};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use tokio_util::sync::CancellationToken;

use crate::activities::Catalogue;
use crate::report::{self, Reported};
use crate::schema::Lang;
use crate::texts;

/// Handed-off calls stored at once per process; the path is for outages, not for speed.
const PREFETCH: u16 = 64;
/// Times Postgres may answer a handed-off call with an error (not an outage) before the
/// call is given up: a value Postgres will never store must not hold the intake forever.
const REFUSALS_BEFORE_GIVING_UP: usize = 5;
/// Tries at answering the workflow of a call that could not be stored.
const ANSWER_TRIES: u32 = 5;

/// What the intake needs besides the broker: where calls are stored, and the portals'
/// REST clients to answer a call that cannot be.
#[derive(Clone)]
pub struct Stores {
    pub db: Pool,
    pub bitrix: Bitrix,
    pub catalogue: Arc<Catalogue>,
    pub publisher: Arc<Publisher>,
}

pub async fn run(
    stores: Stores,
    amqp_url: String,
    topology: Topology,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match consume_once(&stores, &amqp_url, &topology, &shutdown).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                let delay = Duration::from_millis(200 * 2u64.pow(failures.min(6)));
                tracing::warn!(error = %e, retry_in = ?delay, "intake lost the broker; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
}

async fn consume_once(
    stores: &Stores,
    amqp_url: &str,
    topology: &Topology,
    shutdown: &CancellationToken,
) -> Result<(), AmqpError> {
    let conn = amqp::connect(amqp_url, "b24flow-intake").await?;
    let (_channel, mut consumer) =
        amqp::consume(&conn, topology, &topology.intake_queue(), PREFETCH).await?;
    let outcome = loop {
        let next = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.cancelled() => break Ok(()),
        };
        match next {
            Some(Ok(delivery)) => {
                // Unacked at shutdown: the broker delivers it again, the id keeps it one job.
                tokio::select! {
                    _ = take(stores, delivery) => {}
                    _ = shutdown.cancelled() => break Ok(()),
                }
            }
            Some(Err(e)) => break Err(AmqpError::from(e)),
            None => break Err(AmqpError::Nacked("intake consumer cancelled".into())),
        }
    };
    b24flow_common::amqp::close(&conn, "shutdown").await;
    outcome
}

async fn take(stores: &Stores, delivery: Delivery) {
    let Stores { db, publisher, .. } = stores;
    let call = match serde_json::from_slice::<IntakeMessage>(&delivery.data) {
        Ok(call) => call,
        Err(e) => {
            tracing::error!(error = %e, "unreadable handed-off call dead-lettered");
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let mut pause = Duration::from_millis(250);
    let mut refusals = 0;
    let inserted = loop {
        match store(db, &call).await {
            Ok(inserted) => break inserted,
            Err(e) if !e.is_unreachable() && refusals >= REFUSALS_BEFORE_GIVING_UP => {
                tracing::error!(job.id = %call.job_id, error = %e, "Postgres refuses a handed-off call; answering its workflow with an error");
                answer_unstorable(stores, &call).await;
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
                return;
            }
            Err(e) => {
                refusals += usize::from(!e.is_unreachable());
                tracing::warn!(job.id = %call.job_id, error = %e, "cannot store a handed-off call yet; holding it");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    };
    if let Inserted::New(id) = inserted {
        tracing::info!(job.id = %id, "handed-off call stored");
        // A failed publish is left to the sweeper, as for any committed job.
        if publisher.publish_job(id).await.is_ok() {
            if let Ok(client) = db.get().await {
                let _ = jobs::mark_published_many(&client, &[(id, 0)]).await;
            }
        }
    }
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        tracing::debug!(job.id = %call.job_id, error = %e, "could not ack a stored call; it will be stored again as the same job");
    }
}

async fn store(db: &Pool, call: &IntakeMessage) -> Result<Inserted, DbError> {
    let client = db.get().await?;
    let row = NewRow {
        id: call.job_id,
        job: &call.job,
        secret_enc: call.secret_enc.as_deref(),
    };
    jobs::insert_many(&client, std::slice::from_ref(&row))
        .await?
        .pop()
        .ok_or(DbError::Config("insert returned no row".into()))
}

/// Answers the workflow of a call that was accepted but can never be stored, with the
/// activity's failure values, as the runner answers a permanent error.
async fn answer_unstorable(stores: &Stores, call: &IntakeMessage) {
    let Some(event_token) = call.job.event_token.as_deref() else {
        return;
    };
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=ANSWER_TRIES {
        let sent = match stores.bitrix.portal(call.job.portal_id).await {
            Ok(b24) => {
                let outcome = Outcome {
                    success: false,
                    return_values: stores
                        .catalogue
                        .find(&call.job.code)
                        .map(|a| a.failure_values())
                        .unwrap_or_default(),
                    error_text: texts::call_not_stored()
                        .get(Lang::from_code(b24.language()))
                        .to_string(),
                    ..Outcome::default()
                };
                report::send(&b24, event_token, &outcome).await
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(Reported::Delivered) => {
                tracing::info!(job.id = %call.job_id, "the workflow of an unstorable call was answered with an error");
                return;
            }
            Ok(Reported::WorkflowGone) => return,
            Err(e) if attempt == ANSWER_TRIES => {
                tracing::error!(job.id = %call.job_id, error = %e, "the workflow of an unstorable call could not be answered");
            }
            Err(e) => {
                tracing::warn!(job.id = %call.job_id, error = %e, "cannot answer the workflow of an unstorable call yet");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}
