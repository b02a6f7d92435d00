//! Dashboard sessions ended by a logout before their cookie expires (migration V10). The
//! cookie itself is signed and stateless; this list is what makes a logout final.
use chrono::{DateTime, Utc};

use super::{DbError, GenericClient, Prepared};

/// Lists a session as ended until `expires_at`, and forgets sessions that expired anyway.
pub async fn revoke(
    client: &impl GenericClient,
    nonce: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    client
        .execute_prepared(
            "WITH gone AS (DELETE FROM revoked_sessions WHERE expires_at < now())
             INSERT INTO revoked_sessions (nonce, expires_at) VALUES ($1, $2)
             ON CONFLICT (nonce) DO NOTHING",
            &[&nonce, &expires_at],
        )
        .await?;
    Ok(())
}

pub async fn is_revoked(client: &impl GenericClient, nonce: &str) -> Result<bool, DbError> {
    Ok(client
        .query_opt_prepared("SELECT 1 FROM revoked_sessions WHERE nonce = $1", &[&nonce])
        .await?
        .is_some())
}
