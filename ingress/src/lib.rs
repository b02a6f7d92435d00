//! The ingress: answers Bitrix24 fast. It checks who is calling, stores the job durably in
//! Postgres, publishes its id to RabbitMQ and acknowledges. It also serves the install
//! handler, app events, the operators' console (`/api`, `/dashboard`), `/metrics` and
//! health checks.
mod console;
mod enqueue;
mod error;
mod group_commit;
pub mod operator;
mod portal_auth;
mod portal_cache;
mod portal_gate;
mod routes;
mod server;

pub use group_commit::FLUSH_SLOTS;

use std::net::SocketAddr;
use std::sync::Arc;

use b24flow_common::amqp::{Publisher, Topology};
use b24flow_common::bitrix::{follow_portal_changes, Bitrix};
use b24flow_common::catalogue::Codes;
use b24flow_common::db::{self, Pool};
use b24flow_common::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Db(#[from] db::DbError),
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Pool,
    pub publisher: Arc<Publisher>,
    pub bitrix: Bitrix,
    pub operator: Arc<operator::OperatorAuth>,
    /// Activity calls of one portal share the pool only up to a point (`portal_gate`).
    pub(crate) portal_gate: Arc<portal_gate::PortalGate>,
    /// Stores activity calls and registrations durably, many per commit.
    pub group_commit: group_commit::GroupCommit,
    pub portals: portal_cache::PortalCache,
    /// The activity codes calls may carry: the worker's catalogue, handed over by whoever
    /// starts the ingress (this crate does not import the worker).
    pub activity_codes: Arc<Codes>,
}

impl AppState {
    pub fn new(mut config: Config, activity_codes: Codes) -> Result<Self, IngressError> {
        let token = match &config.operator_token {
            Some(token) => token.clone(),
            None => {
                let token = operator::generate_token();
                // Printed once, on the terminal only (never through the log pipeline).
                eprintln!(
                    "b24flow: B24FLOW_OPERATOR_TOKEN is not set; this process generated one.\n  \
                     dashboard: {}/dashboard/login#token={token}\n  \
                     set B24FLOW_OPERATOR_TOKEN to keep it across restarts and ingress processes",
                    config.public_url
                );
                config.operator_token = Some(token.clone());
                token
            }
        };
        let operator = Arc::new(operator::OperatorAuth::new(
            &token,
            config.public_url.starts_with("https://"),
        ));
        let db = db::pool(&config.database_url, portal_gate::DB_POOL)?;
        let publisher = Arc::new(Publisher::new(
            &config.amqp_url,
            Topology::new(&config.amqp_prefix),
        ));
        let bitrix = Bitrix::from_config(db.clone(), &config);
        let group_commit = group_commit::GroupCommit::start(db.clone(), publisher.clone());
        Ok(Self {
            config: Arc::new(config),
            db,
            publisher,
            bitrix,
            operator,
            portal_gate: Arc::default(),
            group_commit,
            portals: portal_cache::PortalCache::default(),
            activity_codes: Arc::new(activity_codes),
        })
    }
}

/// Binds `B24FLOW_LISTEN` and serves calls for `activity_codes` until `shutdown`.
pub async fn run(
    config: Config,
    activity_codes: Codes,
    shutdown: CancellationToken,
) -> Result<(), IngressError> {
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| IngressError::Bind { addr, source })?;
    serve(listener, AppState::new(config, activity_codes)?, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 first).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), IngressError> {
    let publisher = state.publisher.clone();
    {
        let (portals, database_url) = (state.portals.clone(), state.config.database_url.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            follow_portal_changes(&portals, database_url, stop.cancelled_owned()).await
        });
    }
    if let Some(addr) = state.config.metrics_listen {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| IngressError::Bind { addr, source })?;
        tracing::info!(%addr, "metrics listening (no token)");
        let app = routes::metrics_router(state.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(server::serve(metrics_listener, app, shutdown));
    }
    tracing::info!(addr = ?listener.local_addr().ok(), "ingress listening");
    server::serve(listener, routes::router(state), shutdown).await;
    publisher.close().await;
    Ok(())
}
