//! `b24flow jobs`: the operators' command line, a client of the ingress's `/api` (so it needs
//! only the URL and the operator token, never database access). Tables by default, `--json`
//! for scripts.
use anyhow::{bail, Context};
use b24flow_common::Config;
use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Args)]
pub struct JobsArgs {
    /// The ingress (default: B24FLOW_URL, else B24FLOW_PUBLIC_URL). The operator token is read
    /// from B24FLOW_OPERATOR_TOKEN.
    #[arg(long, env = "B24FLOW_URL", global = true)]
    url: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(Args, Default)]
struct FilterArgs {
    /// Portal id, domain or member_id.
    #[arg(long)]
    portal: Option<String>,
    /// Activity code.
    #[arg(long)]
    activity: Option<String>,
    /// queued, retrying, running, succeeded, failed or discarded.
    #[arg(long)]
    state: Option<String>,
    /// transient, activity, unanswered, registration or operator.
    #[arg(long)]
    error_class: Option<String>,
    /// Created at or after (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Created before (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Text in the error, code, workflow, job or document id.
    #[arg(long = "search", short = 'q')]
    q: Option<String>,
}

impl FilterArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("portal", &self.portal),
            ("activity", &self.activity),
            ("state", &self.state),
            ("error_class", &self.error_class),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
    fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Jobs, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (printed under a full page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One job: properties (secrets masked), attempts, history, the answer.
    Show { id: String },
    /// Run a job now (one id), or every retryable job matching the filters.
    Retry {
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// End a job (or every matching job) and answer its workflow with this error.
    Discard {
        id: Option<String>,
        #[arg(long = "error", value_name = "TEXT")]
        error_text: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Stop claiming a portal's jobs (they wait, spending no attempts).
    Pause { portal: String },
    /// Let a paused portal's jobs run again.
    Resume { portal: String },
    /// Set a portal's REST limiter plan: standard (2/s, burst 50), enterprise (5/s, burst
    /// 250) or custom with --rate and --burst. Every worker follows it at its next request.
    Plan {
        portal: String,
        #[arg(value_parser = ["standard", "enterprise", "custom"])]
        plan: String,
        /// Requests per second (custom only).
        #[arg(long)]
        rate: Option<f64>,
        /// Requests the portal's bucket holds (custom only).
        #[arg(long)]
        burst: Option<i64>,
    },
    /// Counts by state, per portal and per activity, and queue depths.
    Stats,
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    operator: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-b24flow-operator", &self.operator)
            .query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value["message"].as_str().unwrap_or("no details");
        match status {
            StatusCode::UNAUTHORIZED => {
                bail!("refused: {message} (is B24FLOW_OPERATOR_TOKEN right?)")
            }
            _ => bail!("{method} {path}: {status}: {message}"),
        }
    }
}

pub async fn run(config: Config, args: JobsArgs) -> anyhow::Result<()> {
    let token = config
        .operator_token
        .clone()
        .context("set B24FLOW_OPERATOR_TOKEN to the ingress's operator token")?;
    let api = Api {
        http: reqwest::Client::new(),
        base: args
            .url
            .clone()
            .unwrap_or_else(|| config.public_url.clone())
            .trim_end_matches('/')
            .to_string(),
        token,
        operator: std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .map(|u| format!("{u}@cli"))
            .unwrap_or_else(|| "cli".into()),
    };
    let value = match &args.command {
        JobsCommand::List {
            filter,
            limit,
            cursor,
        } => {
            let mut query = filter.pairs();
            query.push(("limit", limit.to_string()));
            if let Some(c) = cursor {
                query.push(("cursor", c.clone()));
            }
            api.call(Method::GET, "/api/jobs", &query, None).await?
        }
        JobsCommand::Show { id } => {
            api.call(Method::GET, &format!("/api/jobs/{id}"), &[], None)
                .await?
        }
        JobsCommand::Retry { id, filter } => {
            action(&api, "retry", id.as_deref(), filter, json!({})).await?
        }
        JobsCommand::Discard {
            id,
            error_text,
            filter,
        } => {
            action(
                &api,
                "discard",
                id.as_deref(),
                filter,
                json!({ "error_text": error_text }),
            )
            .await?
        }
        JobsCommand::Pause { portal } => {
            api.call(
                Method::POST,
                &format!("/api/portals/{portal}/pause"),
                &[],
                None,
            )
            .await?
        }
        JobsCommand::Resume { portal } => {
            api.call(
                Method::POST,
                &format!("/api/portals/{portal}/resume"),
                &[],
                None,
            )
            .await?
        }
        JobsCommand::Plan {
            portal,
            plan,
            rate,
            burst,
        } => {
            let mut body = json!({ "plan": plan });
            if let Some(rate) = rate {
                body["rate_per_sec"] = json!(rate);
            }
            if let Some(burst) = burst {
                body["burst"] = json!(burst);
            }
            api.call(
                Method::PUT,
                &format!("/api/portals/{portal}/limits"),
                &[],
                Some(body),
            )
            .await?
        }
        JobsCommand::Stats => {
            let counts = api.call(Method::GET, "/api/stats", &[], None).await?;
            let queues = api
                .call(Method::GET, "/api/queues", &[], None)
                .await
                .unwrap_or(Value::Null);
            json!({ "counts": counts, "queues": queues })
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    match &args.command {
        JobsCommand::List { .. } => print_jobs(&value),
        JobsCommand::Show { .. }
        | JobsCommand::Retry { id: Some(_), .. }
        | JobsCommand::Discard { id: Some(_), .. } => print_job(&value),
        JobsCommand::Retry { .. } | JobsCommand::Discard { .. } => {
            println!(
                "{} job(s){}",
                value["count"],
                if value["truncated"] == true {
                    " (limit reached: run again for more)"
                } else {
                    ""
                }
            );
        }
        JobsCommand::Pause { .. } | JobsCommand::Resume { .. } => print_portal(&value),
        JobsCommand::Plan { .. } => print_limits(&value),
        JobsCommand::Stats => print_stats(&value),
    }
    Ok(())
}

async fn action(
    api: &Api,
    verb: &str,
    id: Option<&str>,
    filter: &FilterArgs,
    mut body: Value,
) -> anyhow::Result<Value> {
    match id {
        Some(id) if filter.is_empty() => {
            api.call(
                Method::POST,
                &format!("/api/jobs/{id}/{verb}"),
                &[],
                Some(body),
            )
            .await
        }
        Some(_) => bail!("give either a job id or filters, not both"),
        None if filter.is_empty() => bail!("give a job id, or filters for a bulk {verb}"),
        None => {
            if let Some(map) = body.as_object_mut() {
                for (k, v) in filter.pairs() {
                    map.insert(k.into(), Value::String(v));
                }
            }
            api.call(Method::POST, &format!("/api/jobs/{verb}"), &[], Some(body))
                .await
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// RFC 3339 to `YYYY-MM-DD HH:MM:SS` (UTC).
fn time(v: &Value) -> String {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn print_jobs(page: &Value) {
    let mut t = table(&[
        "id", "status", "activity", "portal", "attempt", "created", "error",
    ]);
    for j in page["jobs"].as_array().into_iter().flatten() {
        t.add_row(vec![
            text(&j["id"]),
            text(&j["status"]),
            text(&j["code"]),
            text(&j["portal_domain"]),
            format!("{}/{}", j["attempt"], j["max_attempts"]),
            time(&j["created_at"]),
            short(&text(&j["last_error"]), 60),
        ]);
    }
    println!("{t}");
    if let Some(cursor) = page["next_cursor"].as_str() {
        println!("more: --cursor {cursor}");
    }
}

fn print_job(job: &Value) {
    let mut t = table(&["field", "value"]);
    for (label, key) in [
        ("job", "id"),
        ("status", "status"),
        ("activity", "code"),
        ("portal", "portal_domain"),
        ("workflow", "workflow_id"),
        ("error", "last_error"),
        ("error class", "error_class"),
    ] {
        t.add_row(vec![label.to_string(), text(&job[key])]);
    }
    t.add_row(vec![
        "attempt".to_string(),
        format!("{}/{}", job["attempt"], job["max_attempts"]),
    ]);
    t.add_row(vec!["document".to_string(), text(&job["document_id"])]);
    t.add_row(vec!["properties".to_string(), text(&job["properties"])]);
    if job["has_secret_properties"] == true {
        t.add_row(vec!["secrets", "stored encrypted, not shown"]);
    }
    t.add_row(vec!["answer".to_string(), text(&job["answer"])]);
    t.add_row(vec!["answered".to_string(), text(&job["answered"])]);
    println!("{t}");
    let mut h = table(&["at", "attempt", "change", "message", "by"]);
    for e in job["history"].as_array().into_iter().flatten() {
        h.add_row(vec![
            time(&e["at"]),
            text(&e["attempt"]),
            format!(
                "{} → {}",
                e["from_state"].as_str().unwrap_or("-"),
                text(&e["to_state"])
            ),
            text(&e["message"]),
            text(&e["actor"]),
        ]);
    }
    println!("{h}");
    print_rest_calls(job);
}

/// Per attempt, the REST commands it made.
fn print_rest_calls(job: &Value) {
    for a in job["attempts"].as_array().into_iter().flatten() {
        let calls = a["rest_calls"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let omitted = a["rest_calls_omitted"].as_u64().unwrap_or(0);
        if calls.is_empty() && omitted == 0 {
            continue;
        }
        println!("attempt {} REST calls:", a["number"]);
        let mut t = table(&["at", "method", "outcome", "ms", "request", "sends"]);
        for c in calls {
            t.add_row(vec![
                time(&c["at"]),
                text(&c["method"]),
                rest_outcome(c),
                text(&c["duration_ms"]),
                match c["request"].as_str() {
                    Some("shared_batch") => format!("shared batch (+{})", c["others"]),
                    Some("own_batch") => format!("own batch (+{})", c["others"]),
                    other => other.unwrap_or_default().replace('_', " "),
                },
                text(&c["sends"]),
            ]);
        }
        println!("{t}");
        if omitted > 0 {
            println!("… and {omitted} more not kept");
        }
    }
}

/// `ok`, `error ACCESS_DENIED (HTTP 403)`, `bad_response (HTTP 502)`, `transport`.
fn rest_outcome(call: &Value) -> String {
    let mut out = text(&call["outcome"]);
    if let Some(code) = call["code"].as_str() {
        out.push(' ');
        out.push_str(code);
    }
    if let Some(status) = call["status"].as_u64() {
        out.push_str(&format!(" (HTTP {status})"));
    }
    out
}

fn print_limits(l: &Value) {
    println!(
        "portal {}: plan {} ({}/s, burst {}); bucket {:.1} of {}",
        l["portal_id"],
        text(&l["plan"]),
        l["rate_per_sec"].as_f64().unwrap_or(0.0),
        text(&l["burst"]),
        l["level"].as_f64().unwrap_or(0.0),
        text(&l["burst"]),
    );
}

fn print_portal(p: &Value) {
    let paused = if p["paused_at"].is_null() {
        "running".to_string()
    } else {
        format!("paused by {}", text(&p["paused_by"]))
    };
    println!(
        "portal {} ({}): {paused}; {} queued, {} running",
        p["id"],
        text(&p["domain"]),
        p["queued"],
        p["running"]
    );
}

fn print_stats(v: &Value) {
    let mut states = table(&["state", "jobs"]);
    for row in v["counts"]["by_state"].as_array().into_iter().flatten() {
        states.add_row(vec![text(&row[0]), text(&row[1])]);
    }
    println!("{states}");
    for (title, key) in [("portal", "by_portal"), ("activity", "by_activity")] {
        let mut t = table(&[title, "state", "jobs"]);
        for row in v["counts"][key].as_array().into_iter().flatten() {
            t.add_row(vec![
                text(&row["key"]),
                text(&row["state"]),
                text(&row["count"]),
            ]);
        }
        println!("{t}");
    }
    let mut q = table(&["queue", "messages", "consumers"]);
    for row in v["queues"].as_array().into_iter().flatten() {
        q.add_row(vec![
            text(&row["name"]),
            text(&row["messages"]),
            text(&row["consumers"]),
        ]);
    }
    println!("{q}");
}
