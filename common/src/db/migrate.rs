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

/// The configured database's name with a suffix: a scratch database of its own (demo,
/// benchmarks).
pub fn scratch_database_url(database_url: &str, suffix: &str) -> Result<String, DbError> {
    let mut parsed = url::Url::parse(database_url)
        .map_err(|e| DbError::Config(format!("B24FLOW_DATABASE_URL: {e}")))?;
    let name = match parsed.path().trim_start_matches('/') {
        "" => "b24flow".to_string(),
        name => name.to_string(),
    };
    parsed.set_path(&format!("/{name}_{suffix}"));
    Ok(parsed.to_string())
}

/// Drops the database named in `database_url` even while others are connected: scratch
/// databases of the demo, benchmarks and tests start empty and leave nothing behind.
pub async fn drop_database(database_url: &str) -> Result<(), DbError> {
    let config = super::pg_config(database_url)?;
    let name = config
        .get_dbname()
        .ok_or_else(|| DbError::Config("the database URL names no database".into()))?
        .replace('"', "\"\"");
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(connection);
    let dropped = client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
    drop(client);
    let _ = conn.await;
    Ok(dropped?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_database_is_named_after_the_configured_one() {
        let scratch = |url| scratch_database_url(url, "demo").expect("a valid URL");
        assert_eq!(
            scratch("postgres://postgres@127.0.0.1:5432/b24flow?connect_timeout=2"),
            "postgres://postgres@127.0.0.1:5432/b24flow_demo?connect_timeout=2"
        );
        assert_eq!(
            scratch("postgres://postgres@127.0.0.1:5432"),
            "postgres://postgres@127.0.0.1:5432/b24flow_demo"
        );
        assert!(scratch_database_url("not a url", "demo").is_err());
    }
}
