//! The shared per-portal REST limiter state (migration V4): one row per portal, taken with
//! one statement per request by every worker process, editable by operators.
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::grants_ahead::GrantedAhead;
use super::{DbError, GenericClient, Pool, Prepared};
use crate::gather::{GatherSettings, Gatherer};

/// Where a plan change is announced to every process.
pub const LIMITS_CHANGED_CHANNEL: &str = "b24flow_portal_limits_changed";

/// Bounds of an operator's custom plan: far above any Bitrix24 portal, low enough that a
/// typo cannot turn the limiter off.
pub const MAX_RATE_PER_SEC: f64 = 1000.0;
pub const MAX_BURST: i32 = 10_000;

/// Bitrix24's published limits (protocol.md §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// 2 requests/s, burst 50.
    Standard,
    /// 5 requests/s, burst 250.
    Enterprise,
    /// Operator-set rate and burst (e.g. an on-premise portal).
    Custom { rate_per_sec: f64, burst: i32 },
}

impl Plan {
    pub fn rate_and_burst(self) -> (f64, i32) {
        match self {
            Plan::Standard => (2.0, 50),
            Plan::Enterprise => (5.0, 250),
            Plan::Custom {
                rate_per_sec,
                burst,
            } => (rate_per_sec, burst),
        }
    }

    /// A plan as an operator names it: `standard`, `enterprise`, or `custom` with a rate
    /// (requests per second, up to 1000) and a burst (1 to 10000). The error says what is wrong.
    pub fn parse(
        name: &str,
        rate_per_sec: Option<f64>,
        burst: Option<i64>,
    ) -> Result<Self, String> {
        let fixed = |plan: Plan| {
            if rate_per_sec.is_some() || burst.is_some() {
                Err(format!(
                    "the {} plan has its own rate and burst; give them only with the custom plan",
                    plan.name()
                ))
            } else {
                Ok(plan)
            }
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "standard" => fixed(Plan::Standard),
            "enterprise" => fixed(Plan::Enterprise),
            "custom" => {
                let rate =
                    rate_per_sec.ok_or("the custom plan needs a rate (requests per second)")?;
                let burst = burst.ok_or("the custom plan needs a burst (requests)")?;
                if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_PER_SEC) {
                    return Err(format!(
                        "the rate must be more than 0 and at most {MAX_RATE_PER_SEC} requests per second (got {rate})"
                    ));
                }
                let burst = i32::try_from(burst)
                    .ok()
                    .filter(|b| (1..=MAX_BURST).contains(b))
                    .ok_or(format!(
                        "the burst must be between 1 and {MAX_BURST} (got {burst})"
                    ))?;
                Ok(Plan::Custom {
                    rate_per_sec: rate,
                    burst,
                })
            }
            other => Err(format!(
                "unknown plan {other:?}: standard, enterprise or custom"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Plan::Standard => "standard",
            Plan::Enterprise => "enterprise",
            Plan::Custom { .. } => "custom",
        }
    }
}

/// One answer of the shared bucket.
#[derive(Clone, Debug)]
pub struct Acquired {
    pub granted: bool,
    /// When not granted: seconds until a request would be.
    pub wait_secs: f64,
    /// Parked methods: method → unix time until which it must not be called.
    pub parked: Value,
}

/// Takes one request from the portal's bucket, or says how long to wait (GCRA, one row lock).
pub async fn acquire(
    client: &impl GenericClient,
    portal_id: i64,
    headroom: i32,
) -> Result<Acquired, DbError> {
    // Committed without waiting for the WAL flush (`synchronous_commit` off for this one
    // transaction): a grant lost in a Postgres crash only forgets one request, and the
    // headroom and the portal's own `QUERY_LIMIT_EXCEEDED` answer cover that.
    let row = client
        .query_one_prepared(
            "SELECT granted, wait_secs, parked
             FROM portal_limit_acquire($1, $2),
                  set_config('synchronous_commit', 'off', true)",
            &[&portal_id, &headroom],
        )
        .await?;
    Ok(acquired(&row))
}

/// A row of `granted, wait_secs, parked`.
fn acquired(row: &tokio_postgres::Row) -> Acquired {
    Acquired {
        granted: row.get(0),
        wait_secs: row.get::<_, f64>(1).max(0.0),
        parked: row.get(2),
    }
}

/// Takes one request from each listed portal's bucket in one statement and one commit (a
/// portal may be listed more than once): the answers in input order, each as
/// [`acquire`] would give it.
pub async fn acquire_many(
    client: &impl GenericClient,
    portal_ids: &[i64],
    headroom: i32,
) -> Result<Vec<Acquired>, DbError> {
    let rows = client
        .query_prepared(
            "SELECT granted, wait_secs, parked FROM portal_limit_acquire_many($1, $2) ORDER BY n",
            &[&portal_ids, &headroom],
        )
        .await?;
    Ok(rows.iter().map(acquired).collect())
}

/// Like [`acquire_many`], and each portal whose asks were all granted also gets up to
/// `ahead` more requests per ask while its bucket stays at most a quarter full (migration V17):
/// the answers in input order, each with its portal's requests granted ahead (the same on
/// each of the portal's rows, so counted once per portal).
pub async fn acquire_ahead(
    client: &impl GenericClient,
    portal_ids: &[i64],
    headroom: i32,
    ahead: i32,
) -> Result<Vec<(Acquired, u32)>, DbError> {
    let rows = client
        .query_prepared(
            "SELECT granted, wait_secs, parked, ahead
             FROM portal_limit_acquire_ahead($1, $2, $3) ORDER BY n",
            &[&portal_ids, &headroom, &ahead],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let ahead = u32::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0);
            Ok((acquired(row), ahead))
        })
        .collect()
}

/// The grants of one process gathered (`crate::gather`): requests that ask while a group
/// statement runs go out together in the next one, so a busy worker pays one commit for
/// many grants instead of one each, and a lone request waits for nobody. Each group also
/// takes requests ahead ([`acquire_ahead`]), which the next requests to the same portal
/// spend without asking Postgres at all.
#[derive(Clone)]
pub struct GatheredGrants {
    asks: Gatherer<i64, Result<Acquired, DbError>>,
    ahead: GrantedAhead,
}

const GATHER_GRANTS: GatherSettings = GatherSettings {
    window: std::time::Duration::ZERO,
    max_group: 256,
    slots: 2,
    queue: 16_384,
};

/// Requests taken ahead per request asked: a job's next request (at the least its
/// `bizproc.event.send`) then finds its grant waiting.
const AHEAD_PER_ASK: i32 = 1;

impl GatheredGrants {
    /// Starts the gathering task (it ends when the last clone is dropped).
    pub fn start(db: Pool, headroom: i32) -> Self {
        let ahead = GrantedAhead::default();
        let keep = ahead.clone();
        let asks = Gatherer::start(GATHER_GRANTS, move |portal_ids: Vec<i64>| {
            let db = db.clone();
            let keep = keep.clone();
            async move {
                let asked = keep.asking();
                let granted = match db.get().await {
                    Ok(client) => {
                        acquire_ahead(&client, &portal_ids, headroom, AHEAD_PER_ASK).await
                    }
                    Err(e) => Err(e.into()),
                };
                match granted {
                    Ok(answers) => {
                        keep.keep(asked, &portal_ids, &answers);
                        answers.into_iter().map(|(a, _)| Ok(a)).collect()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, requests = portal_ids.len(), "the limiter's bucket did not answer");
                        portal_ids
                            .iter()
                            .map(|_| Err(e.copy_for_group("limiter grant")))
                            .collect()
                    }
                }
            }
        });
        Self { asks, ahead }
    }

    /// One request from the portal's bucket, or how long to wait; see [`acquire`]. A request
    /// granted ahead for this portal, while fresh, answers without a statement.
    pub async fn acquire(&self, portal_id: i64) -> Result<Acquired, DbError> {
        if let Some(granted) = self.ahead.spend(portal_id) {
            return Ok(granted);
        }
        self.asks
            .submit(portal_id)
            .await
            .unwrap_or(Err(DbError::Config("the limiter stopped".into())))
    }

    /// The portal's bucket is not what we counted (it refused a request): what was granted
    /// ahead for it is dropped.
    pub fn forget(&self, portal_id: i64) {
        self.ahead.forget(portal_id);
    }

    /// Plans changed: everything granted ahead under the old ones is dropped.
    pub fn forget_all(&self) {
        self.ahead.forget_all();
    }
}

/// The portal refused a request with `QUERY_LIMIT_EXCEEDED`: its bucket is full, whatever
/// we thought; nothing more until it has drained a full burst's worth.
pub async fn note_throttled(client: &impl GenericClient, portal_id: i64) -> Result<(), DbError> {
    client
        .execute_prepared(
            "UPDATE portal_limits
                SET tat = greatest(tat, clock_timestamp() + make_interval(secs => burst / rate_per_sec)),
                    throttled = throttled + 1, last_throttled_at = now(), updated_at = now()
              WHERE portal_id = $1",
            &[&portal_id],
        )
        .await?;
    Ok(())
}

/// Parks `method` for the portal until `until_unix` (429 `OPERATION_TIME_LIMIT`, or a
/// `time.operating` close to the budget). A later park never shortens an earlier one.
pub async fn park_method(
    client: &impl GenericClient,
    portal_id: i64,
    method: &str,
    until_unix: i64,
) -> Result<(), DbError> {
    client
        .execute_prepared(
            "INSERT INTO portal_limits (portal_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&portal_id],
        )
        .await?;
    client
        .execute_prepared(
            "UPDATE portal_limits
                SET parked = jsonb_set(parked, ARRAY[$2::text],
                        to_jsonb(greatest(coalesce((parked->>$2)::bigint, 0), $3::bigint))),
                    updated_at = now()
              WHERE portal_id = $1",
            &[&portal_id, &method, &until_unix],
        )
        .await?;
    Ok(())
}

/// Sets a portal's plan (operators). The bucket keeps its level in requests, at most the
/// new burst.
pub async fn set_plan(
    client: &impl GenericClient,
    portal_id: i64,
    plan: Plan,
) -> Result<bool, DbError> {
    let (rate, burst) = plan.rate_and_burst();
    if !(rate > 0.0 && rate.is_finite()) || burst < 1 {
        return Err(DbError::Config(format!(
            "a portal limit needs a positive rate and a burst of at least 1 (got {rate}/s, {burst})"
        )));
    }
    let exists = client
        .query_opt_prepared("SELECT 1 FROM portals WHERE id = $1", &[&portal_id])
        .await?
        .is_some();
    if !exists {
        return Ok(false);
    }
    // Every acquire reads the row, so the next request of any process follows the new plan;
    // the notice wakes requests already waiting for the old one (`bitrix::portal_changes`).
    client
        .query_prepared(
            "WITH up AS (
                 INSERT INTO portal_limits (portal_id, plan, rate_per_sec, burst) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (portal_id) DO UPDATE
                   SET plan = EXCLUDED.plan, rate_per_sec = EXCLUDED.rate_per_sec,
                       burst = EXCLUDED.burst, updated_at = now(),
                       tat = clock_timestamp() + least(
                           greatest(portal_limits.tat - clock_timestamp(), interval '0')
                               * (portal_limits.rate_per_sec / EXCLUDED.rate_per_sec),
                           make_interval(secs => EXCLUDED.burst / EXCLUDED.rate_per_sec))
                 RETURNING portal_id
             )
             SELECT pg_notify($5, portal_id::text) FROM up",
            &[&portal_id, &plan.name(), &rate, &burst, &LIMITS_CHANGED_CHANNEL],
        )
        .await?;
    Ok(true)
}

/// What operators see of a portal's limiter.
#[derive(Clone, Debug, Serialize)]
pub struct LimitState {
    pub portal_id: i64,
    pub plan: String,
    pub rate_per_sec: f64,
    pub burst: i32,
    /// Requests the portal's bucket holds now by our count (0 = idle, `burst` = full).
    pub level: f64,
    /// Methods parked now, with the unix time they are parked until.
    pub parked: Value,
    /// Requests granted (those taken ahead counted when taken, spent or not) and
    /// `QUERY_LIMIT_EXCEEDED` answers seen since the row was made.
    pub requests: i64,
    pub throttled: i64,
    pub last_throttled_at: Option<DateTime<Utc>>,
}

/// Every portal's limiter state (portals never used yet show the standard plan, idle).
pub async fn list_states(client: &impl GenericClient) -> Result<Vec<LimitState>, DbError> {
    states(client, None).await
}

/// One portal's limiter state.
pub async fn get_state(
    client: &impl GenericClient,
    portal_id: i64,
) -> Result<Option<LimitState>, DbError> {
    Ok(states(client, Some(portal_id)).await?.into_iter().next())
}

async fn states(
    client: &impl GenericClient,
    portal_id: Option<i64>,
) -> Result<Vec<LimitState>, DbError> {
    let rows = client
        .query_prepared(
            "SELECT p.id, coalesce(l.plan, 'standard'), coalesce(l.rate_per_sec, 2),
                    coalesce(l.burst, 50),
                    coalesce(greatest(extract(epoch FROM (l.tat - clock_timestamp())), 0)
                             * l.rate_per_sec, 0)::float8,
                    coalesce((SELECT jsonb_object_agg(k, v) FROM jsonb_each(l.parked) AS e(k, v)
                               WHERE v::text::bigint > extract(epoch FROM now())), '{}'::jsonb),
                    coalesce(l.requests, 0), coalesce(l.throttled, 0), l.last_throttled_at
               FROM portals p LEFT JOIN portal_limits l ON l.portal_id = p.id
              WHERE $1::bigint IS NULL OR p.id = $1
              ORDER BY p.id",
            &[&portal_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LimitState {
            portal_id: r.get(0),
            plan: r.get(1),
            rate_per_sec: r.get(2),
            burst: r.get(3),
            level: r.get(4),
            parked: r.get(5),
            requests: r.get(6),
            throttled: r.get(7),
            last_throttled_at: r.get(8),
        })
        .collect())
}

/// A received job's portal and that portal's request rate (standard when it has no row
/// yet).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobPortal {
    pub portal_id: i64,
    pub rate_per_sec: f64,
}

/// The portal of each job id (jobs that no longer exist are left out).
pub async fn portals_of_jobs(
    client: &impl GenericClient,
    job_ids: &[uuid::Uuid],
) -> Result<Vec<(uuid::Uuid, JobPortal)>, DbError> {
    let rows = client
        .query_prepared(
            "SELECT j.id, j.portal_id, coalesce(l.rate_per_sec, 2)
               FROM jobs j LEFT JOIN portal_limits l ON l.portal_id = j.portal_id
              WHERE j.id = ANY($1)",
            &[&job_ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                JobPortal {
                    portal_id: r.get(1),
                    rate_per_sec: r.get(2),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_parsed_with_clear_refusals() {
        assert_eq!(Plan::parse("Enterprise", None, None), Ok(Plan::Enterprise));
        assert_eq!(
            Plan::parse("custom", Some(4.0), Some(10)),
            Ok(Plan::Custom {
                rate_per_sec: 4.0,
                burst: 10
            })
        );
        assert!(Plan::parse("standard", Some(3.0), None)
            .unwrap_err()
            .contains("only with the custom plan"));
        assert!(Plan::parse("custom", None, Some(5))
            .unwrap_err()
            .contains("needs a rate"));
        assert!(Plan::parse("custom", Some(0.0), Some(5))
            .unwrap_err()
            .contains("more than 0"));
        assert!(Plan::parse("custom", Some(f64::NAN), Some(5)).is_err());
        assert!(Plan::parse("custom", Some(2.0), Some(0))
            .unwrap_err()
            .contains("between 1 and"));
        assert!(Plan::parse("gold", None, None)
            .unwrap_err()
            .contains("unknown plan"));
    }
}
