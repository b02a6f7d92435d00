//! The worker: consumes job ids from RabbitMQ, runs the activity, retries transient faults,
//! records every state change in Postgres and answers the workflow with `bizproc.event.send`.
pub mod activities;
pub mod activity;
mod admission;
mod calendar;
mod claimer;
mod consumer;
mod crm;
mod finisher;
mod heartbeat;
mod intake;
mod once;
mod registration;
mod report;
mod retry;
pub mod runner;
pub mod schema;
pub mod sweeper;
pub mod texts;
mod values;

use std::sync::Arc;

use b24flow_common::amqp::{Publisher, Topology};
use b24flow_common::bitrix::Bitrix;
use b24flow_common::db;
use b24flow_common::Config;
use tokio_util::sync::CancellationToken;

pub use retry::RetryPolicy;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Db(#[from] db::DbError),
}

/// Jobs of one portal running at once per process, at most; slower portals get less
/// (see `admission::running_cap`).
pub const PER_PORTAL_RUNNING_CEILING: usize = 256;
/// Jobs received ahead (unacked) per process; see `ConsumerSettings::prefetch`.
pub const PREFETCH: u16 = 20_000;

/// Postgres connections of a worker process running `concurrency` jobs at once.
pub fn db_pool_size(concurrency: usize) -> usize {
    concurrency.min(64) + 4
}

/// Runs the consumer and the sweeper until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), WorkerError> {
    run_with_policy(config, RetryPolicy::default(), shutdown).await
}

pub async fn run_with_policy(
    config: Config,
    policy: RetryPolicy,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    run_with_activities(config, policy, activities::all(), shutdown).await
}

/// Like [`run_with_policy`], running the given activities (tests wrap one to misbehave).
pub async fn run_with_activities(
    config: Config,
    policy: RetryPolicy,
    activities: Vec<Arc<dyn activity::Activity>>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let pool = db::pool(
        &config.database_url,
        db_pool_size(config.worker_concurrency),
    )?;
    let topology = Topology::new(&config.amqp_prefix);
    let bitrix = Bitrix::from_config(pool.clone(), &config);
    let portal_changes = {
        let bitrix = bitrix.clone();
        let database_url = config.database_url.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            bitrix
                .follow_portal_changes(database_url, stop.cancelled_owned())
                .await
        })
    };
    let catalogue = Arc::new(activities::Catalogue::new(activities));
    publish_catalogue(&pool, &catalogue).await?;
    bitrix.set_cross_job_batching(config.cross_job_batching);
    let runner = Arc::new(runner::Runner {
        db: pool.clone(),
        claimer: claimer::Claimer::start(pool.clone(), config.job_lease),
        finisher: finisher::Finisher::start(pool.clone()),
        bitrix,
        secrets: config.secrets.clone(),
        policy,
        lease: config.job_lease,
        catalogue,
        handler_url: config.activity_handler_url(),
        config: Arc::new(config.clone()),
    });
    let publisher = Arc::new(Publisher::new(&config.amqp_url, topology.clone()));
    let sweeper = tokio::spawn(sweeper::run(
        pool.clone(),
        publisher.clone(),
        config.sweep_interval,
        shutdown.clone(),
    ));
    let intake = tokio::spawn(intake::run(
        intake::Stores {
            db: pool.clone(),
            bitrix: runner.bitrix.clone(),
            catalogue: runner.catalogue.clone(),
            publisher: publisher.clone(),
        },
        config.amqp_url.clone(),
        topology.clone(),
        shutdown.clone(),
    ));
    consumer::run(
        runner,
        consumer::ConsumerSettings {
            amqp_url: config.amqp_url.clone(),
            topology,
            concurrency: config.worker_concurrency,
            per_portal_ceiling: PER_PORTAL_RUNNING_CEILING,
            prefetch: PREFETCH,
            shutdown_deadline: config.shutdown_deadline,
            publisher: publisher.clone(),
        },
        shutdown,
    )
    .await;
    let _ = sweeper.await;
    let _ = intake.await;
    portal_changes.abort();
    publisher.close().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Tells the ingress (the app page) which activities this worker runs.
async fn publish_catalogue(
    pool: &db::Pool,
    catalogue: &activities::Catalogue,
) -> Result<(), WorkerError> {
    let entries: Vec<db::registrations::CatalogueEntry> = catalogue
        .definitions()
        .iter()
        .map(|def| db::registrations::CatalogueEntry {
            code: def.code.to_string(),
            name: def.name.to_json(),
            description: def.description.to_json(),
        })
        .collect();
    let mut client = pool.get().await.map_err(db::DbError::from)?;
    db::registrations::publish_catalogue(&mut client, &entries).await?;
    Ok(())
}
