//! An operator sets a portal's REST limiter plan; the change is recorded in the portal's
//! events with who did it and what the plan was before.
use deadpool_postgres::GenericClient;

use crate::db::portal_limits::{self, Plan};
use crate::db::DbError;

/// `rate/s, burst` as operators read it.
fn describe(plan: &str, rate: f64, burst: i32) -> String {
    format!("{plan} {rate}/s burst {burst}")
}

/// Sets the plan and records it; false when the portal does not exist.
pub async fn set_portal_plan(
    client: &mut impl GenericClient,
    portal_id: i64,
    plan: Plan,
    actor: &str,
) -> Result<bool, DbError> {
    let tx = client.transaction().await?;
    let before = portal_limits::get_state(&tx, portal_id).await?;
    if !portal_limits::set_plan(&tx, portal_id, plan).await? {
        return Ok(false);
    }
    let (rate, burst) = plan.rate_and_burst();
    let mut message = describe(plan.name(), rate, burst);
    if let Some(b) = before {
        message.push_str(&format!(
            " (was {})",
            describe(&b.plan, b.rate_per_sec, b.burst)
        ));
    }
    tx.execute(
        "INSERT INTO portal_events (portal_id, actor, action, message) VALUES ($1, $2, 'plan', $3)",
        &[&portal_id, &actor, &message],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
