//! The ingress: answers Bitrix24 fast. It checks who is calling, stores the job durably in
//! Postgres, publishes its id to RabbitMQ and acknowledges. It also serves the install
//! handler, app events, `/metrics` and health checks.
mod enqueue;
mod error;
mod portal_auth;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use b24flow_common::amqp::{Publisher, Topology};
use b24flow_common::bitrix::{Bitrix, OAuthApp};
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
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, IngressError> {
        let db = db::pool(&config.database_url, 32)?;
        let publisher = Arc::new(Publisher::new(
            &config.amqp_url,
            Topology::new(&config.amqp_prefix),
        ));
        let bitrix = Bitrix::new(
            db.clone(),
            config.secrets.clone(),
            OAuthApp {
                oauth_url: config.oauth_url.clone(),
                client_id: config.client_id.clone(),
                client_secret: config.client_secret.clone(),
            },
        );
        Ok(Self {
            config: Arc::new(config),
            db,
            publisher,
            bitrix,
        })
    }
}

/// Binds `B24FLOW_LISTEN` and serves until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), IngressError> {
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| IngressError::Bind { addr, source })?;
    serve(listener, AppState::new(config)?, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 first).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), IngressError> {
    let publisher = state.publisher.clone();
    tracing::info!(addr = ?listener.local_addr().ok(), "ingress listening");
    let app = routes::router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(IngressError::Serve);
    publisher.close().await;
    result
}
