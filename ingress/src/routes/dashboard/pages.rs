//! The dashboard's pages and the actions their forms post. Reads and actions go through the
//! same code as `/api` (the `ops` repository and `console::actions`).
use std::collections::BTreeMap;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use b24flow_common::db::ops::{self, ErrorClass, StateFilter};
use b24flow_common::db::portal_limits::Plan;
use minijinja::context;
use serde::Deserialize;
use uuid::Uuid;

use super::render;
use super::session::DashboardUser;
use crate::console::actions::{self as act, JobAction};
use crate::console::query::{error_text, FilterQuery, PageQuery};
use crate::error::ApiError;
use crate::AppState;

/// Rows per page of the job list.
const PAGE: i64 = 50;
/// States in the order operators read them.
const STATE_ORDER: [&str; 6] = [
    "queued",
    "retrying",
    "running",
    "succeeded",
    "failed",
    "discarded",
];

/// An error page for `e`, in the dashboard's frame.
fn failed(user: &DashboardUser, e: ApiError) -> Response {
    render::page(
        e.status,
        "error.html",
        context! { title => "Not possible", message => e.message, csrf => &user.csrf, operator => &user.name },
    )
}

/// A short confirmation chosen by code, so a link cannot make the page say anything else.
fn flash(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "retried" => "Retry requested: the job runs now.",
        "discarded" => "Discarded: the workflow gets your error text.",
        "paused" => "Portal paused: its queued jobs wait.",
        "resumed" => "Portal resumed: its queued jobs run again.",
        "plan" => "Plan saved: every worker's next request to this portal follows it.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct FlashQuery {
    ok: Option<String>,
}

pub async fn overview(State(state): State<AppState>, user: DashboardUser) -> Response {
    match overview_inner(&state, &user).await {
        Ok(page) => page,
        Err(e) => failed(&user, e),
    }
}

async fn overview_inner(state: &AppState, user: &DashboardUser) -> Result<Response, ApiError> {
    let client = state.db.get().await?;
    let counts = ops::counts(&client).await?;
    let portals = ops::portals(&client).await?;
    drop(client);
    let queues: Vec<_> = state
        .publisher
        .queue_depths()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|q| {
            let label = if q.name.ends_with(".dead") {
                "dead letters"
            } else {
                "work queue"
            };
            context! { label, name => q.name, messages => q.messages, consumers => q.consumers }
        })
        .collect();
    let by_state: BTreeMap<&str, i64> = counts
        .by_state
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    let states: Vec<_> = STATE_ORDER
        .iter()
        .map(|s| context! { state => s, count => by_state.get(s).copied().unwrap_or(0) })
        .collect();
    let matrix_states = ["queued", "running", "succeeded", "failed", "discarded"];
    let mut by_code: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for row in &counts.by_activity {
        let cells = by_code
            .entry(row.key.as_str())
            .or_insert_with(|| vec![0; matrix_states.len()]);
        if let Some(i) = matrix_states.iter().position(|s| *s == row.state) {
            cells[i] = row.count;
        }
    }
    let by_activity: Vec<_> = by_code
        .into_iter()
        .map(|(code, counts)| context! { code, counts })
        .collect();
    let busiest: Vec<_> = portals.iter().take(8).collect();
    let mut failing: Vec<_> = portals.iter().filter(|p| p.failed_last_day > 0).collect();
    failing.sort_by_key(|p| std::cmp::Reverse(p.failed_last_day));
    failing.truncate(8);
    Ok(render::page(
        StatusCode::OK,
        "overview.html",
        context! {
            nav => "overview", csrf => &user.csrf, operator => &user.name,
            states, queues, busiest, failing, by_activity, matrix_states,
        },
    ))
}

/// `datetime-local` inputs carry no zone; the form says UTC, so read them as UTC.
fn as_rfc3339(v: &Option<String>) -> Option<String> {
    let v = v.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
    if chrono::DateTime::parse_from_rfc3339(v).is_ok() {
        return Some(v.to_string());
    }
    chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
        .map(|t| t.and_utc().to_rfc3339())
        .ok()
        .or_else(|| Some(v.to_string()))
}

fn normalized(mut f: FilterQuery) -> FilterQuery {
    f.since = as_rfc3339(&f.since);
    f.until = as_rfc3339(&f.until);
    f
}

/// The filter as a query string (`?a=b&…`, or empty), for links, live refresh and bulk forms.
fn query_string(f: &FilterQuery) -> String {
    let pairs: Vec<(&str, &str)> = [
        ("q", &f.q),
        ("state", &f.state),
        ("error_class", &f.error_class),
        ("activity", &f.activity),
        ("portal", &f.portal),
        ("since", &f.since),
        ("until", &f.until),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (k, v))
    })
    .collect();
    if pairs.is_empty() {
        return String::new();
    }
    format!(
        "?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

fn local(v: &Option<String>) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_deref()?).ok()?;
    Some(
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M")
            .to_string(),
    )
}

pub async fn jobs(
    State(state): State<AppState>,
    user: DashboardUser,
    Query(query): Query<PageQuery>,
) -> Response {
    let filter_query = normalized(query.filter.clone());
    let result = async {
        let filter = filter_query.to_filter()?;
        let cursor = query.cursor()?;
        let client = state.db.get().await?;
        let page = ops::list_jobs(&client, &filter, cursor, PAGE).await?;
        let activities: Vec<String> = {
            let mut codes: Vec<String> = ops::counts(&client)
                .await?
                .by_activity
                .into_iter()
                .map(|r| r.key)
                .collect();
            codes.dedup();
            codes
        };
        Ok::<_, ApiError>((filter, page, activities))
    }
    .await;
    let (filter, page, activities) = match result {
        Ok(r) => r,
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            return render::page(
                StatusCode::BAD_REQUEST,
                "error.html",
                context! { title => "Filter not understood", message => e.message, csrf => &user.csrf, operator => &user.name },
            )
        }
        Err(e) => return failed(&user, e),
    };
    render::page(
        StatusCode::OK,
        "jobs.html",
        context! {
            nav => "jobs", csrf => &user.csrf, operator => &user.name,
            jobs => page.jobs, next_cursor => page.next_cursor,
            f => &filter_query, filtered => !filter.is_empty(),
            query_string => query_string(&filter_query),
            since_local => local(&filter_query.since), until_local => local(&filter_query.until),
            all_states => StateFilter::ALL.map(StateFilter::as_str),
            all_classes => ErrorClass::ALL.map(ErrorClass::as_str),
            activities,
        },
    )
}

/// The rows of the job list alone, for the page's live refresh.
pub async fn job_rows(
    State(state): State<AppState>,
    _user: DashboardUser,
    Query(query): Query<PageQuery>,
) -> Response {
    let result = async {
        let filter = normalized(query.filter.clone()).to_filter()?;
        let client = state.db.get().await?;
        Ok::<_, ApiError>(ops::list_jobs(&client, &filter, None, PAGE).await?)
    }
    .await;
    match result {
        Ok(page) => render::page(
            StatusCode::OK,
            "job_rows.html",
            context! { jobs => page.jobs },
        ),
        Err(e) => e.into_response(),
    }
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "job_not_found", "no such job"))
}

pub async fn job(
    State(state): State<AppState>,
    user: DashboardUser,
    Path(id): Path<String>,
    Query(flash_query): Query<FlashQuery>,
) -> Response {
    let result = async {
        let id = parse_id(&id)?;
        let client = state.db.get().await?;
        ops::job_detail(&client, id).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "job_not_found",
                format!("no job {id}"),
            )
        })
    }
    .await;
    match result {
        Ok(job) => render::page(
            StatusCode::OK,
            "job.html",
            context! {
                nav => "jobs", csrf => &user.csrf, operator => &user.name, job,
                flash => flash(flash_query.ok.as_deref()),
            },
        ),
        Err(e) => failed(&user, e),
    }
}

pub async fn portal(
    State(state): State<AppState>,
    user: DashboardUser,
    Path(portal): Path<String>,
    Query(flash_query): Query<FlashQuery>,
) -> Response {
    let result = async {
        let client = state.db.get().await?;
        let detail = ops::portal_detail(&client, &portal)
            .await?
            .ok_or_else(|| ApiError::portal_not_found(portal))?;
        let filter = ops::JobFilter {
            portal: Some(detail.summary.id.to_string()),
            ..ops::JobFilter::default()
        };
        let jobs = ops::list_jobs(&client, &filter, None, 20).await?.jobs;
        let limits =
            b24flow_common::db::portal_limits::get_state(&client, detail.summary.id).await?;
        Ok::<_, ApiError>((detail, jobs, limits))
    }
    .await;
    match result {
        Ok((detail, jobs, limits)) => render::page(
            StatusCode::OK,
            "portal.html",
            context! {
                csrf => &user.csrf, operator => &user.name, portal => detail, jobs, limits,
                flash => flash(flash_query.ok.as_deref()),
            },
        ),
        Err(e) => failed(&user, e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    error_text: Option<String>,
    action: Option<String>,
}

async fn on_job(
    state: &AppState,
    user: &DashboardUser,
    id: &str,
    form: &ActionForm,
    discard: bool,
) -> Response {
    if let Some(refused) = user.csrf_refusal(state, &form.csrf) {
        return refused;
    }
    let result = async {
        let id = parse_id(id)?;
        let action = if discard {
            JobAction::Discard(error_text(form.error_text.as_deref())?)
        } else {
            JobAction::Retry
        };
        act::on_job(state, id, &action, &user.actor).await?;
        Ok::<_, ApiError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!(
            "/dashboard/jobs/{id}?ok={}",
            if discard { "discarded" } else { "retried" }
        ))
        .into_response(),
        Err(e) => failed(user, e),
    }
}

pub async fn retry(
    State(state): State<AppState>,
    user: DashboardUser,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    on_job(&state, &user, &id, &form, false).await
}

pub async fn discard(
    State(state): State<AppState>,
    user: DashboardUser,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    on_job(&state, &user, &id, &form, true).await
}

/// Retry or discard every actionable job matching the list's filter (in the query string).
pub async fn bulk(
    State(state): State<AppState>,
    user: DashboardUser,
    RawQuery(raw): RawQuery,
    Query(query): Query<FilterQuery>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&state, &form.csrf) {
        return refused;
    }
    let result = async {
        let filter = normalized(query).to_filter()?;
        let action = match form.action.as_deref() {
            Some("discard") => JobAction::Discard(error_text(form.error_text.as_deref())?),
            _ => JobAction::Retry,
        };
        Ok::<_, ApiError>(
            act::on_matching(&state, &filter, &action, &user.actor)
                .await?
                .jobs
                .len(),
        )
    }
    .await;
    match result {
        Ok(count) => render::page(
            StatusCode::OK,
            "error.html",
            context! {
                title => "Done",
                message => format!("{count} job(s) {}.", if form.action.as_deref() == Some("discard") { "discarded" } else { "sent to run now" }),
                csrf => &user.csrf, operator => &user.name,
                back => format!("/dashboard/jobs?{}", raw.unwrap_or_default()),
            },
        ),
        Err(e) => failed(&user, e),
    }
}

async fn on_portal(
    state: &AppState,
    user: &DashboardUser,
    portal: &str,
    form: &ActionForm,
    pause: bool,
) -> Response {
    if let Some(refused) = user.csrf_refusal(state, &form.csrf) {
        return refused;
    }
    let result = async {
        let id = act::find_portal(state, portal).await?;
        if pause {
            act::pause(state, id, &user.actor).await?;
        } else {
            act::resume(state, id, &user.actor).await?;
        }
        Ok::<_, ApiError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!(
            "/dashboard/portals/{id}?ok={}",
            if pause { "paused" } else { "resumed" }
        ))
        .into_response(),
        Err(e) => failed(user, e),
    }
}

pub async fn pause(
    State(state): State<AppState>,
    user: DashboardUser,
    Path(portal): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    on_portal(&state, &user, &portal, &form, true).await
}

pub async fn resume(
    State(state): State<AppState>,
    user: DashboardUser,
    Path(portal): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    on_portal(&state, &user, &portal, &form, false).await
}

#[derive(Debug, Default, Deserialize)]
pub struct PlanForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    plan: String,
    rate_per_sec: Option<String>,
    burst: Option<String>,
}

impl PlanForm {
    /// The form always sends the custom fields; they count only with the custom plan.
    fn to_plan(&self) -> Result<Plan, ApiError> {
        let refused = |why: String| ApiError::bad_request("invalid_plan", why);
        let custom = self.plan.trim().eq_ignore_ascii_case("custom");
        fn field(raw: &Option<String>, custom: bool) -> Option<&str> {
            raw.as_deref()
                .map(str::trim)
                .filter(|v| custom && !v.is_empty())
        }
        let rate = field(&self.rate_per_sec, custom)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| refused(format!("the rate {v:?} is not a number")))
            })
            .transpose()?;
        let burst = field(&self.burst, custom)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| refused(format!("the burst {v:?} is not a whole number")))
            })
            .transpose()?;
        Plan::parse(&self.plan, rate, burst).map_err(refused)
    }
}

/// Sets the portal's limiter plan from its page's form.
pub async fn set_plan(
    State(state): State<AppState>,
    user: DashboardUser,
    Path(portal): Path<String>,
    Form(form): Form<PlanForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&state, &form.csrf) {
        return refused;
    }
    let result = async {
        let plan = form.to_plan()?;
        let id = act::find_portal(&state, &portal).await?;
        act::set_plan(&state, id, plan, &user.actor).await?;
        Ok::<_, ApiError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/dashboard/portals/{id}?ok=plan")).into_response(),
        Err(e) => failed(&user, e),
    }
}
