//! The per-process taker of jobs: claims of concurrently arriving deliveries go out as one
//! statement and one commit, as the ends do (`finisher`). Each job keeps its own guard, so
//! every delivery learns whether it got an attempt (`Some`) or was stale (`None`).
use std::time::Duration;

use b24flow_common::db::jobs::{self, Job};
use b24flow_common::db::{DbError, Pool};
use b24flow_common::gather::{GatherSettings, Gatherer};
use uuid::Uuid;

/// No wait of its own: deliveries that arrive while a claim runs join the next one.
const SETTINGS: GatherSettings = GatherSettings {
    window: Duration::ZERO,
    max_group: 256,
    slots: 2,
    queue: 16_384,
};

#[derive(Clone)]
pub(crate) struct Claimer {
    claims: Gatherer<Uuid, Result<Option<Job>, DbError>>,
}

impl Claimer {
    /// Starts the taker (it stops when the last clone is dropped).
    pub(crate) fn start(db: Pool, lease: Duration) -> Self {
        let claims = Gatherer::start(SETTINGS, move |ids: Vec<Uuid>| {
            let db = db.clone();
            async move { claim(&db, &ids, lease).await }
        });
        Self { claims }
    }

    /// The job for one attempt, or `None` when it is not claimable now (see `jobs::claim`).
    pub(crate) async fn claim(&self, id: Uuid) -> Result<Option<Job>, DbError> {
        self.claims
            .submit(id)
            .await
            .unwrap_or(Err(DbError::Config("the job taker stopped".into())))
    }
}

async fn claim(db: &Pool, ids: &[Uuid], lease: Duration) -> Vec<Result<Option<Job>, DbError>> {
    let claimed = match db.get().await {
        Ok(client) => jobs::claim_many(&client, ids, lease).await,
        Err(e) => Err(e.into()),
    };
    match claimed {
        Ok(jobs) => jobs.into_iter().map(Ok).collect(),
        Err(e) => {
            tracing::warn!(error = %e, jobs = ids.len(), "the claims were not stored");
            ids.iter().map(|_| Err(e.copy_for_group("claim"))).collect()
        }
    }
}
