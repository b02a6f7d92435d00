//! Group commit: concurrent calls are gathered (`common::gather`) for at most a
//! millisecond (longer while every flush slot is busy) and stored in one multi-row
//! statement and one commit. A caller is answered once its row is committed: the row is
//! the outbox. Its id is then published with pipelined confirms in the background, and a
//! committed job the broker never confirmed (the ingress died, the broker refused) is
//! published by the sweeper, so after a `200` the call is never lost. Waiting for the
//! confirm before answering would add the broker's own disk write to every call's latency
//! without making the call any safer.
//!
//! When Postgres does not take a group within [`COMMIT_WAIT`], each call is handed whole
//! to RabbitMQ's intake queue (confirmed, persistent, secrets already sealed) and a worker
//! stores it under its pre-chosen id once Postgres is back. A call the broker does not take
//! either gets one more, longer chance at Postgres (a stalled disk slows both stores at
//! once, and a 503 leaves the workflow waiting forever: Bitrix24 never repeats a call).
//! Only when that fails too is the answer `503 store_unavailable`.
use std::sync::Arc;
use std::time::Duration;

use b24flow_common::amqp::{IntakeMessage, Publisher};
use b24flow_common::db::jobs::{self, Inserted, NewJob, NewRow};
use b24flow_common::db::{DbError, Pool};
use b24flow_common::gather::{GatherSettings, Gatherer};
use b24flow_common::metrics;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::error::ApiError;

/// Groups (Postgres connections) stored at once.
pub const FLUSH_SLOTS: usize = 8;
/// How calls are grouped: the first call of a group waits a millisecond for others, a
/// group holds at most 64 calls, and [`FLUSH_SLOTS`] groups are stored at once.
const GATHER: GatherSettings = GatherSettings {
    window: Duration::from_millis(1),
    max_group: 64,
    slots: FLUSH_SLOTS,
    // Calls waiting to be gathered; beyond it callers wait to hand theirs over.
    queue: 16_384,
};
/// Groups whose publishes are in flight after their answers. When the broker falls this
/// far behind, the next group waits for a free place before answering, so unpublished ids
/// cannot pile up in memory (they are safe in Postgres either way).
const PUBLISHING: usize = 64;
/// How long a group may wait for its commit before its calls go to the broker instead.
const COMMIT_WAIT: Duration = Duration::from_millis(1500);
/// How long a publish waits for its confirms; past it the jobs are left to the sweeper.
const PUBLISH_WAIT: Duration = Duration::from_secs(3);
/// The last chance at Postgres for calls the broker did not take either.
const LAST_CHANCE_WAIT: Duration = Duration::from_secs(5);

/// How a call was made durable.
#[derive(Clone, Copy, Debug)]
pub enum Stored {
    /// Its row is committed (or it repeats a committed call).
    Committed(Inserted),
    /// Postgres did not take it; the broker holds it whole until a worker stores it.
    HandedOff(Uuid),
}

impl Stored {
    pub fn id(self) -> Uuid {
        match self {
            Stored::Committed(inserted) => inserted.id(),
            Stored::HandedOff(id) => id,
        }
    }
}

struct Pending {
    id: Uuid,
    job: NewJob,
    secret_enc: Option<Vec<u8>>,
}

type Answer = Result<Stored, ApiError>;

#[derive(Clone)]
pub struct GroupCommit {
    calls: Gatherer<Pending, Answer>,
}

/// What a flush needs besides its group.
struct Stores {
    db: Pool,
    publisher: Arc<Publisher>,
    publishing: Arc<Semaphore>,
}

impl GroupCommit {
    /// Starts the gathering task (it ends when the last `GroupCommit` is dropped).
    pub fn start(db: Pool, publisher: Arc<Publisher>) -> Self {
        let stores = Arc::new(Stores {
            db,
            publisher,
            publishing: Arc::new(Semaphore::new(PUBLISHING)),
        });
        let calls = Gatherer::start(GATHER, move |group: Vec<Pending>| {
            let stores = stores.clone();
            async move { stores.flush(group).await }
        });
        Self { calls }
    }

    /// Makes `job` durable; see the module documentation for what the answer means.
    pub async fn store(&self, job: NewJob, secret_enc: Option<Vec<u8>>) -> Answer {
        let pending = Pending {
            id: job_id(&job),
            job,
            secret_enc,
        };
        self.calls
            .submit(pending)
            .await
            .unwrap_or_else(|| Err(stopping()))
    }
}

/// The id a call's job will have. A workflow's call is named by its portal and event
/// token, so every copy of it gets the same id whichever store takes it first: a copy
/// handed to the broker and one committed later answer with the one job that exists.
fn job_id(job: &NewJob) -> Uuid {
    use sha2::{Digest, Sha256};
    let Some(event_token) = job.event_token.as_deref() else {
        return Uuid::new_v4();
    };
    let digest = Sha256::new()
        .chain_update(b"b24flow job\0")
        .chain_update(job.portal_id.to_be_bytes())
        .chain_update(event_token.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn stopping() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the ingress is stopping; try again",
    )
}

fn store_unavailable() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "neither the database nor the message broker took the call; try again",
    )
}

impl Stores {
    async fn flush(&self, group: Vec<Pending>) -> Vec<Answer> {
        metrics::INGRESS_GROUP_SIZE.observe(group.len() as f64);
        let started = std::time::Instant::now();
        let committed = commit_within(&self.db, &group, COMMIT_WAIT).await;
        metrics::INGRESS_GROUP_SECONDS
            .with_label_values(&["commit"])
            .observe(started.elapsed().as_secs_f64());
        match committed {
            Ok(inserted) => self.answer_committed(inserted).await,
            Err(e) if e.is_unreachable() => {
                tracing::warn!(error = %e, calls = group.len(), "Postgres did not take the calls; handing them to the broker");
                self.hand_off(group).await
            }
            Err(e) => {
                let error = ApiError::from(e);
                group.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }

    /// The answers of committed rows, once their new ids are on their way to the broker.
    async fn answer_committed(&self, inserted: Vec<Result<Inserted, DbError>>) -> Vec<Answer> {
        let new_ids: Vec<Uuid> = inserted
            .iter()
            .filter_map(|i| match i {
                Ok(Inserted::New(id)) => Some(*id),
                _ => None,
            })
            .collect();
        if !new_ids.is_empty() {
            // Never closed; without a place the ids simply wait for the sweeper.
            let place = self.publishing.clone().acquire_owned().await.ok();
            let (db, publisher) = (self.db.clone(), self.publisher.clone());
            tokio::spawn(async move {
                publish_and_mark(&db, &publisher, &new_ids).await;
                drop(place);
            });
        }
        inserted
            .into_iter()
            .map(|r| r.map(Stored::Committed).map_err(ApiError::from))
            .collect()
    }

    async fn hand_off(&self, group: Vec<Pending>) -> Vec<Answer> {
        let messages: Vec<IntakeMessage> = group
            .iter()
            .map(|p| IntakeMessage {
                job_id: p.id,
                job: p.job.clone(),
                secret_enc: p.secret_enc.clone(),
            })
            .collect();
        // No answer in time counts as refused: the caller gets 503, never a silent 200.
        let results = tokio::time::timeout(PUBLISH_WAIT, self.publisher.hand_off(&messages))
            .await
            .unwrap_or_default();
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(group.len());
        let mut refused = Vec::new();
        let mut results = results.into_iter();
        for (n, pending) in group.into_iter().enumerate() {
            match results.next() {
                Some(Ok(())) => answers.push(Some(Ok(Stored::HandedOff(pending.id)))),
                other => {
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "no confirm in time".to_string(),
                    };
                    tracing::warn!(job.id = %pending.id, error = %why, "the broker did not take the call either; trying Postgres once more");
                    answers.push(None);
                    refused.push((n, pending));
                }
            }
        }
        if !refused.is_empty() {
            let (places, refused): (Vec<usize>, Vec<Pending>) = refused.into_iter().unzip();
            for (n, answer) in places.into_iter().zip(self.last_chance(refused).await) {
                answers[n] = Some(answer);
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(store_unavailable())))
            .collect()
    }

    /// One more insert under the same ids: the first one may have committed after all (its
    /// rows then come back as duplicates of themselves, already durable, published by the
    /// sweeper).
    async fn last_chance(&self, group: Vec<Pending>) -> Vec<Answer> {
        match commit_within(&self.db, &group, LAST_CHANCE_WAIT).await {
            Ok(inserted) => self.answer_committed(inserted).await,
            Err(e) => group
                .iter()
                .map(|pending| {
                    tracing::error!(job.id = %pending.id, error = %e, "neither Postgres nor the broker took the call");
                    Err(store_unavailable())
                })
                .collect(),
        }
    }
}

/// The group's rows stored, or a timeout once `wait` has passed.
async fn commit_within(
    db: &Pool,
    group: &[Pending],
    wait: Duration,
) -> Result<Vec<Result<Inserted, DbError>>, DbError> {
    let rows: Vec<NewRow> = group
        .iter()
        .map(|p| NewRow {
            id: p.id,
            job: &p.job,
            secret_enc: p.secret_enc.as_deref(),
        })
        .collect();
    match tokio::time::timeout(wait, insert_group(db, &rows)).await {
        Ok(result) => result,
        Err(_) => Err(DbError::Timeout("group commit")),
    }
}

/// One statement for the group. When Postgres refuses it (a value it cannot store), the
/// rows are stored one by one, so one bad call cannot fail the others.
async fn insert_group(
    db: &Pool,
    rows: &[NewRow<'_>],
) -> Result<Vec<Result<Inserted, DbError>>, DbError> {
    let client = db.get().await?;
    match jobs::insert_many(&client, rows).await {
        Ok(inserted) => Ok(inserted.into_iter().map(Ok).collect()),
        Err(e) if rows.len() > 1 && !e.is_unreachable() => {
            let mut one_by_one = Vec::with_capacity(rows.len());
            for row in rows {
                let single = std::slice::from_ref(row);
                match jobs::insert_many(&client, single).await {
                    Ok(mut inserted) => one_by_one.push(
                        inserted
                            .pop()
                            .ok_or(DbError::Config("insert returned no row".into())),
                    ),
                    Err(e) if e.is_unreachable() => return Err(e),
                    Err(e) => one_by_one.push(Err(e)),
                }
            }
            Ok(one_by_one)
        }
        Err(e) => Err(e),
    }
}

/// Publishes committed jobs and marks those the broker confirmed; whatever fails is left
/// to the sweeper, which publishes every committed job the broker never confirmed.
async fn publish_and_mark(db: &Pool, publisher: &Publisher, ids: &[Uuid]) {
    let started = std::time::Instant::now();
    let confirmed: Vec<(Uuid, i32)> = match tokio::time::timeout(
        PUBLISH_WAIT,
        publisher.publish_many(ids),
    )
    .await
    {
        Ok(results) => {
            let failed = results.iter().filter(|r| r.is_err()).count();
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                tracing::warn!(error = %e, failed, "publish failed; the sweeper will publish the stored jobs");
            }
            ids.iter()
                .zip(results)
                .filter_map(|(id, r)| r.is_ok().then_some((*id, 0)))
                .collect()
        }
        Err(_) => {
            tracing::warn!(
                jobs = ids.len(),
                "no confirms in time; the sweeper will publish the stored jobs"
            );
            Vec::new()
        }
    };
    metrics::INGRESS_GROUP_SECONDS
        .with_label_values(&["confirm"])
        .observe(started.elapsed().as_secs_f64());
    // The mark only keeps the sweeper from publishing again.
    if !confirmed.is_empty() {
        let marked = match db.get().await {
            Ok(client) => jobs::mark_published_many(&client, &confirmed).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = marked {
            tracing::warn!(error = %e, jobs = confirmed.len(), "published but not marked; the sweeper may publish them again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use b24flow_common::db::jobs::JobKind;
    use serde_json::json;

    fn call(portal_id: i64, event_token: Option<&str>) -> NewJob {
        NewJob {
            portal_id,
            kind: JobKind::Activity,
            code: "user_info".into(),
            event_token: event_token.map(str::to_string),
            workflow_id: None,
            document_id: json!(null),
            properties: json!({}),
            timeout_duration: 0,
            max_attempts: 1,
            runs_as_user: false,
        }
    }

    #[test]
    fn copies_of_one_call_get_one_id_and_other_calls_other_ids() {
        assert_eq!(job_id(&call(1, Some("t1"))), job_id(&call(1, Some("t1"))));
        assert_ne!(job_id(&call(1, Some("t1"))), job_id(&call(1, Some("t2"))));
        assert_ne!(job_id(&call(1, Some("t1"))), job_id(&call(2, Some("t1"))));
        assert_ne!(job_id(&call(1, None)), job_id(&call(1, None)));
        assert_eq!(
            job_id(&call(1, Some("t1"))).get_version(),
            Some(uuid::Version::Custom)
        );
    }
}
