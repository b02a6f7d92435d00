//! What b24flow registered on each portal (`bizproc.activity.add` / `bizproc.robot.add`
//! parameters): the app page compares a refresh against it.
use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::{DbError, Prepared};

/// Stores the registration of `code` (or its robot twin) as sent.
pub async fn save(
    client: &impl GenericClient,
    portal_id: i64,
    code: &str,
    is_robot: bool,
    registration: &Value,
) -> Result<(), DbError> {
    client
        .execute_prepared(
            "INSERT INTO portal_registrations (portal_id, code, is_robot, registration)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (portal_id, code, is_robot)
             DO UPDATE SET registration = EXCLUDED.registration, updated_at = now()",
            &[&portal_id, &code, &is_robot, registration],
        )
        .await?;
    Ok(())
}

pub async fn remove(
    client: &impl GenericClient,
    portal_id: i64,
    code: &str,
    is_robot: bool,
) -> Result<(), DbError> {
    client
        .execute_prepared(
            "DELETE FROM portal_registrations WHERE portal_id = $1 AND code = $2 AND is_robot = $3",
            &[&portal_id, &code, &is_robot],
        )
        .await?;
    Ok(())
}

/// The last registration sent for `code` (or its robot twin), if any.
pub async fn find(
    client: &impl GenericClient,
    portal_id: i64,
    code: &str,
    is_robot: bool,
) -> Result<Option<Value>, DbError> {
    let row = client
        .query_opt_prepared(
            "SELECT registration FROM portal_registrations
             WHERE portal_id = $1 AND code = $2 AND is_robot = $3",
            &[&portal_id, &code, &is_robot],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// One activity as the workers describe it: `name` and `description` are `{en, ru}` maps.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CatalogueEntry {
    pub code: String,
    pub name: Value,
    pub description: Value,
}

/// Replaces the catalogue with what this worker runs.
pub async fn publish_catalogue(
    client: &mut deadpool_postgres::Client,
    entries: &[CatalogueEntry],
) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    let codes: Vec<&str> = entries.iter().map(|e| e.code.as_str()).collect();
    tx.execute_prepared(
        "DELETE FROM activity_catalogue WHERE NOT (code = ANY($1))",
        &[&codes],
    )
    .await?;
    for (position, e) in entries.iter().enumerate() {
        tx.execute_prepared(
            "INSERT INTO activity_catalogue (code, position, name, description)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (code) DO UPDATE SET position = EXCLUDED.position,
                 name = EXCLUDED.name, description = EXCLUDED.description, updated_at = now()",
            &[&e.code, &(position as i32), &e.name, &e.description],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn catalogue(client: &impl GenericClient) -> Result<Vec<CatalogueEntry>, DbError> {
    let rows = client
        .query_prepared(
            "SELECT code, name, description FROM activity_catalogue ORDER BY position",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(CatalogueEntry {
                code: r.try_get(0)?,
                name: r.try_get(1)?,
                description: r.try_get(2)?,
            })
        })
        .collect()
}

/// When the portal's options were last refreshed, and what changed then (the result of
/// its newest finished `refresh` registration job).
pub async fn last_refresh(
    client: &impl GenericClient,
    portal_id: i64,
) -> Result<Option<(chrono::DateTime<chrono::Utc>, Value)>, DbError> {
    let row = client
        .query_opt_prepared(
            "SELECT finished_at, result FROM jobs
             WHERE portal_id = $1 AND kind = 'register' AND state = 'succeeded'
               AND result->>'action' = 'refresh'
             ORDER BY finished_at DESC LIMIT 1",
            &[&portal_id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((row.try_get(0)?, row.try_get(1)?)))
}
