//! Postgres: the pool, migrations, and the repositories of portals and jobs.
mod grants_ahead;
pub mod jobs;
mod migrate;
pub mod ops;
pub mod portal_limits;
pub mod portals;
mod prepared;
pub mod registrations;
pub mod rest_calls;
pub mod revoked_sessions;

pub use deadpool_postgres::{GenericClient, Pool, PoolError};
pub use migrate::{drop_database, ensure_database, migrate, prepare, scratch_database_url};
pub use prepared::Prepared;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("migrations: {0}")]
    Migrate(String),
    #[error("stored secret cannot be decrypted: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("database did not answer in time: {0}")]
    Timeout(&'static str),
}

impl DbError {
    /// Postgres did not answer at all (no connection, no reply in time), as opposed to
    /// answering with an error: the same statement may well succeed once it is back.
    pub fn is_unreachable(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Timeout(_) => true,
            DbError::Pg(e) => e.code().is_none(),
            DbError::Config(_) | DbError::Migrate(_) | DbError::Crypto(_) => false,
        }
    }
}

impl DbError {
    /// This error for each member of a group whose one statement failed (`DbError` is not
    /// `Clone`): of the same kind, so each member retries or gives up as it would alone.
    pub fn copy_for_group(&self, what: &'static str) -> DbError {
        if self.is_unreachable() {
            DbError::Timeout(what)
        } else {
            DbError::Config(format!("{what}: {self}"))
        }
    }
}

/// How long a connect to Postgres may take unless the URL says otherwise
/// (`connect_timeout=`): a blackholed server must not hold a request for minutes.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `database_url` parsed, with [`CONNECT_TIMEOUT`] unless the URL sets one.
pub fn pg_config(database_url: &str) -> Result<tokio_postgres::Config, DbError> {
    let mut pg: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e| DbError::Config(format!("B24FLOW_DATABASE_URL: {e}")))?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(pg)
}

pub fn pool(database_url: &str, max_size: usize) -> Result<Pool, DbError> {
    let pg = pg_config(database_url)?;
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// True when a connection can be had and answers.
pub async fn ping(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
