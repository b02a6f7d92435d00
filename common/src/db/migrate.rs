use super::{DbError, Pool};

refinery::embed_migrations!("../migrations");

/// Creates the database named in `database_url` when it does not exist yet.
pub async fn ensure_database(database_url: &str) -> Result<(), DbError> {
    let config = super::pg_config(database_url)?;
    let name = config
        .get_dbname()
        .ok_or_else(|| DbError::Config("B24FLOW_DATABASE_URL names no database".into()))?
        .to_string();
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(DbError::Config(format!(
            "database name {name:?} may only hold letters, digits, '_' and '-'"
        )));
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another process created it at the same moment.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(client);
    let _ = conn.await;
    Ok(())
}

/// The database created if missing and migrated, with a pool of `max_size` connections: what
/// every command that starts the roles does first.
pub async fn prepare(database_url: &str, max_size: usize) -> Result<Pool, DbError> {
    ensure_database(database_url).await?;
    let pool = super::pool(database_url, max_size)?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Applies `migrations/`. An advisory lock keeps processes that start together from racing.
pub async fn migrate(pool: &Pool) -> Result<(), DbError> {
    const LOCK: i64 = 0x0062_3234_666c_6f77;
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let pg: &mut tokio_postgres::Client = &mut client;
    let report = migrations::runner().run_async(pg).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await?;
    let report = report.map_err(|e| DbError::Migrate(e.to_string()))?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied migration");
    }
    Ok(())
}
