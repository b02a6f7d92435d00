//! Portals that installed the app, and their OAuth tokens (encrypted at rest).
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::{DbError, Prepared};
use crate::crypto::SecretBox;

#[derive(Clone, Debug)]
pub struct Portal {
    pub id: i64,
    pub member_id: String,
    pub domain: String,
    pub client_endpoint: String,
    pub application_token: Option<String>,
    pub status: String,
    /// Grows with every confirmed install and every uninstall; sessions cached by workers
    /// belong to one generation.
    pub install_generation: i64,
    /// The admin whose install the OAuth server confirmed.
    pub installer_user_id: Option<i64>,
    /// The portal's language code as its install said (`ru`, `en`, …), if it said.
    pub language: Option<String>,
}

impl Portal {
    pub fn is_installed(&self) -> bool {
        self.status == "installed"
    }
}

/// The portal's current token pair. `version` grows with every rotation, so a caller that
/// saw a token fail can tell whether someone else already replaced it.
#[derive(Clone)]
pub struct PortalTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub install_generation: i64,
}

impl std::fmt::Debug for PortalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalTokens")
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// An install (install page or `ONAPPINSTALL`) whose portal, endpoint and tokens the OAuth
/// server confirmed; nothing else may write a portal's endpoint or tokens.
pub struct Installation {
    pub member_id: String,
    pub domain: String,
    pub client_endpoint: String,
    pub application_token: Option<String>,
    pub installer_user_id: Option<i64>,
    pub language: Option<String>,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

const COLUMNS: &str = "id, member_id, domain, client_endpoint, application_token, status, \
                       install_generation, installer_user_id, language";

fn from_row(row: &tokio_postgres::Row) -> Result<Portal, DbError> {
    Ok(Portal {
        id: row.try_get("id")?,
        member_id: row.try_get("member_id")?,
        domain: row.try_get("domain")?,
        client_endpoint: row.try_get("client_endpoint")?,
        application_token: row.try_get("application_token")?,
        status: row.try_get("status")?,
        install_generation: row.try_get("install_generation")?,
        installer_user_id: row.try_get("installer_user_id")?,
        language: row.try_get("language")?,
    })
}

/// Stores (or re-stores after a reinstall) a portal with fresh tokens. A reinstall issues
/// a new `application_token`; when the install did not carry one, the old one is dropped and
/// calls are refused until an install or `ONAPPINSTALL` that carries one.
pub async fn upsert_installed(
    client: &impl GenericClient,
    secrets: &SecretBox,
    inst: &Installation,
) -> Result<Portal, DbError> {
    let sql = format!(
        "INSERT INTO portals (member_id, domain, client_endpoint, application_token,
                              access_token_enc, refresh_token_enc, token_expires_at, status,
                              installer_user_id, language)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), 'installed', $8, $9)
         ON CONFLICT (member_id) DO UPDATE SET
             domain = EXCLUDED.domain,
             client_endpoint = EXCLUDED.client_endpoint,
             application_token = EXCLUDED.application_token,
             installer_user_id = EXCLUDED.installer_user_id,
             language = COALESCE(EXCLUDED.language, portals.language),
             install_generation = portals.install_generation + 1,
             access_token_enc = EXCLUDED.access_token_enc,
             refresh_token_enc = EXCLUDED.refresh_token_enc,
             token_expires_at = EXCLUDED.token_expires_at,
             token_version = portals.token_version + 1,
             status = 'installed',
             updated_at = now(),
             uninstalled_at = NULL
         RETURNING {COLUMNS}"
    );
    let row = client
        .query_one_prepared(
            &sql,
            &[
                &inst.member_id,
                &inst.domain,
                &inst.client_endpoint,
                &inst.application_token,
                &secrets.encrypt_str(&inst.access_token),
                &secrets.encrypt_str(&inst.refresh_token),
                &(inst.expires_in as f64),
                &inst.installer_user_id,
                &inst.language,
            ],
        )
        .await?;
    from_row(&row)
}

pub async fn find_by_member_id(
    client: &impl GenericClient,
    member_id: &str,
) -> Result<Option<Portal>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM portals WHERE member_id = $1");
    client
        .query_opt_prepared(&sql, &[&member_id])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

pub async fn get(client: &impl GenericClient, id: i64) -> Result<Option<Portal>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM portals WHERE id = $1");
    client
        .query_opt_prepared(&sql, &[&id])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

pub async fn list(client: &impl GenericClient) -> Result<Vec<Portal>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM portals ORDER BY id");
    client
        .query_prepared(&sql, &[])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn load_tokens(
    client: &impl GenericClient,
    secrets: &SecretBox,
    id: i64,
) -> Result<Option<PortalTokens>, DbError> {
    read_tokens(client, secrets, TOKENS_SQL, id).await
}

/// Locks the portal's token row for a refresh (the caller holds the transaction) and
/// returns the tokens as they are now. `FOR NO KEY UPDATE`, not `FOR UPDATE`: the lock spans
/// the OAuth call, and a full row lock would also stop every insert of a job for the portal
/// (its foreign key check takes `FOR KEY SHARE`), holding up the portal's calls for as long
/// as the OAuth server takes.
pub async fn lock_tokens(
    tx: &impl GenericClient,
    secrets: &SecretBox,
    id: i64,
) -> Result<Option<PortalTokens>, DbError> {
    let sql = format!("{TOKENS_SQL} FOR NO KEY UPDATE");
    read_tokens(tx, secrets, &sql, id).await
}

/// The stored token pair of a portal that has one.
const TOKENS_SQL: &str = "SELECT access_token_enc, refresh_token_enc, token_expires_at,
                                 token_version, install_generation
                          FROM portals WHERE id = $1 AND access_token_enc IS NOT NULL";

async fn read_tokens(
    client: &impl GenericClient,
    secrets: &SecretBox,
    sql: &str,
    id: i64,
) -> Result<Option<PortalTokens>, DbError> {
    let Some(row) = client.query_opt_prepared(sql, &[&id]).await? else {
        return Ok(None);
    };
    let access: Vec<u8> = row.try_get(0)?;
    let refresh: Vec<u8> = row.try_get(1)?;
    Ok(Some(PortalTokens {
        access_token: secrets.decrypt_str(&access)?,
        refresh_token: secrets.decrypt_str(&refresh)?,
        expires_at: row.try_get(2)?,
        version: row.try_get(3)?,
        install_generation: row.try_get(4)?,
    }))
}

/// Persists a rotated token pair; returns the new version.
pub async fn save_tokens(
    client: &impl GenericClient,
    secrets: &SecretBox,
    id: i64,
    access_token: &str,
    refresh_token: &str,
    expires_in: i64,
) -> Result<i64, DbError> {
    let row = client
        .query_one_prepared(
            "UPDATE portals SET access_token_enc = $2, refresh_token_enc = $3,
                 token_expires_at = now() + make_interval(secs => $4),
                 token_version = token_version + 1, updated_at = now()
             WHERE id = $1 RETURNING token_version",
            &[
                &id,
                &secrets.encrypt_str(access_token),
                &secrets.encrypt_str(refresh_token),
                &(expires_in as f64),
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// The portal removed the app: its tokens no longer work (protocol.md §1.3) and are erased.
pub async fn mark_uninstalled(client: &impl GenericClient, id: i64) -> Result<(), DbError> {
    client
        .execute_prepared(
            "UPDATE portals SET status = 'uninstalled', access_token_enc = NULL,
                 refresh_token_enc = NULL, token_expires_at = NULL,
                 token_version = token_version + 1, install_generation = install_generation + 1,
                 updated_at = now(), uninstalled_at = now()
             WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// Jobs of a portal that have not ended yet (queued, waiting to retry, or running).
pub async fn unfinished_jobs(client: &impl GenericClient, id: i64) -> Result<i64, DbError> {
    let row = client
        .query_one_prepared(
            "SELECT count(*) FROM jobs WHERE portal_id = $1 AND state IN ('queued', 'running')",
            &[&id],
        )
        .await?;
    Ok(row.try_get(0)?)
}
