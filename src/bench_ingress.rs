//! `b24flow bench ingress`: `POST /b24/activity` with the durable hand-off, measured side by
//! side in one run with a bare axum endpoint that only parses the same form. For each
//! target: calls/s and p50/p99 from `--connections` closed loops, then p50/p99 at a fixed
//! `--rate` (an open loop: latency counts from when the call was due). Targets: `bare`,
//! `ingress` (the ingress alone, as `b24flow ingress`) and `all` (ingress and worker in one
//! process, as `b24flow all`, the worker answering every job on a simulated portal).
//! Every durable call carries a live "run as" token of the portal's users, as Bitrix24's
//! calls do; for `all` the calls are the simulator's own, so their jobs can succeed, and the
//! report says how many did.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use b24flow_common::bitrix::form;
use b24flow_common::Config;
use b24flow_sim::{ActivityCall, Cloud, CloudConfig, Portal, PortalConfig, TokenPair};
use clap::Args;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::bench_answers::wait_for_answers;

/// A run's jobs are taken as lost when no answer came for this long.
const ANSWER_STALL: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct IngressArgs {
    /// Seconds of each measurement (closed loop, then fixed rate), per target.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Connections of the closed loop.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Calls per second of the fixed-rate measurement.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Which durable targets to measure besides `bare`.
    #[arg(long, value_enum, default_value_t = Targets::Both)]
    targets: Targets,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Targets {
    Ingress,
    All,
    Both,
}

#[derive(Serialize)]
struct Row {
    target: &'static str,
    calls_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    fixed_rate: u32,
    fixed_achieved_per_s: f64,
    fixed_p50_ms: f64,
    fixed_p99_ms: f64,
    fixed_errors: usize,
    /// Calls answered 200, both measurements together.
    accepted: usize,
    /// Of those calls' jobs (`all` only, `null` where no worker runs): answered with
    /// success, answered with an error, never answered.
    jobs_succeeded: Option<usize>,
    jobs_failed: Option<usize>,
    jobs_unanswered: Option<usize>,
    /// Where a durable call's time went, over both measurements (the ingress's own
    /// metrics): calls per group commit, and mean time per group storing and confirming.
    mean_group_size: f64,
    mean_commit_ms: f64,
    mean_confirm_ms: f64,
}

/// Sums and counts of the group-commit metrics, to take differences of.
#[derive(Clone, Copy, Default)]
struct GroupStats {
    groups: f64,
    calls: f64,
    commit_s: f64,
    commits: f64,
    confirm_s: f64,
    confirms: f64,
}

impl GroupStats {
    fn now() -> Self {
        use b24flow_common::metrics::{INGRESS_GROUP_SECONDS, INGRESS_GROUP_SIZE};
        let commit = INGRESS_GROUP_SECONDS.with_label_values(&["commit"]);
        let confirm = INGRESS_GROUP_SECONDS.with_label_values(&["confirm"]);
        Self {
            groups: INGRESS_GROUP_SIZE.get_sample_count() as f64,
            calls: INGRESS_GROUP_SIZE.get_sample_sum(),
            commit_s: commit.get_sample_sum(),
            commits: commit.get_sample_count() as f64,
            confirm_s: confirm.get_sample_sum(),
            confirms: confirm.get_sample_count() as f64,
        }
    }

    fn since(self, before: Self) -> (f64, f64, f64) {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        (
            ratio(self.calls - before.calls, self.groups - before.groups),
            ratio(
                self.commit_s - before.commit_s,
                self.commits - before.commits,
            ) * 1000.0,
            ratio(
                self.confirm_s - before.confirm_s,
                self.confirms - before.confirms,
            ) * 1000.0,
        )
    }
}

#[derive(Serialize)]
struct Report {
    connections: usize,
    duration_s: f64,
    load_average: String,
    rows: Vec<Row>,
    /// Durable calls/s of each target as a share of the bare endpoint's.
    share_of_bare: Vec<(&'static str, f64)>,
}

pub async fn ingress(config: Config, args: IngressArgs) -> anyhow::Result<()> {
    let load_before = load_average();
    let mut rows = Vec::new();
    let (bare_url, bare_stop) = start_bare().await?;
    let body = || bare_body(&next_token("bare"));
    rows.push(measure("bare", &bare_url, &args, &body).await);
    bare_stop.cancel();

    let mut targets = Vec::new();
    if args.targets != Targets::All {
        targets.push(("ingress", false));
    }
    if args.targets != Targets::Ingress {
        targets.push(("all", true));
    }
    for (name, with_worker) in targets {
        let stack = Stack::start(&config, name, with_worker).await?;
        let url = format!("{}/b24/activity", stack.url);
        let mut row = if with_worker {
            let body = simulated_call(&stack.portal, &stack.users);
            measure(name, &url, &args, &body).await
        } else {
            // Nothing is registered without a worker, so the simulator cannot make the
            // call; the same form with a live user token seals as much as a real one.
            let (member_id, app_token) =
                (stack.portal.member_id(), stack.portal.application_token());
            let auth = run_as_fields(&stack.portal.issue_token(stack.users[0]));
            let body = move || activity_body(&next_token(name), &member_id, &app_token, &auth);
            measure(name, &url, &args, &body).await
        };
        if with_worker {
            let portals = std::slice::from_ref(&stack.portal);
            let answers = wait_for_answers(portals, row.accepted, ANSWER_STALL, |_| {}).await;
            row.jobs_succeeded = Some(answers.succeeded());
            row.jobs_failed = Some(answers.failed());
            row.jobs_unanswered = Some(row.accepted.saturating_sub(answers.sends.len()));
        }
        rows.push(row);
        stack.stop().await?;
    }
    let bare = rows[0].calls_per_s.max(f64::MIN_POSITIVE);
    let report = Report {
        connections: args.connections,
        duration_s: args.duration,
        load_average: format!("{load_before} (before) / {} (after)", load_average()),
        share_of_bare: rows[1..]
            .iter()
            .map(|r| (r.target, r.calls_per_s / bare))
            .collect(),
        rows,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &Report) {
    let mut table = comfy_table::Table::new();
    table.set_header(vec![
        "target",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "fixed rate",
        "achieved/s",
        "p50 ms @rate",
        "p99 ms @rate",
        "errors @rate",
        "calls/group",
        "commit ms",
        "confirm ms",
        "jobs ok / failed / unanswered",
    ]);
    for r in &report.rows {
        table.add_row(vec![
            r.target.to_string(),
            format!("{:.0}", r.calls_per_s),
            format!("{:.2}", r.p50_ms),
            format!("{:.2}", r.p99_ms),
            r.errors.to_string(),
            r.fixed_rate.to_string(),
            format!("{:.0}", r.fixed_achieved_per_s),
            format!("{:.2}", r.fixed_p50_ms),
            format!("{:.2}", r.fixed_p99_ms),
            r.fixed_errors.to_string(),
            format!("{:.1}", r.mean_group_size),
            format!("{:.2}", r.mean_commit_ms),
            format!("{:.2}", r.mean_confirm_ms),
            match (r.jobs_succeeded, r.jobs_failed, r.jobs_unanswered) {
                (Some(ok), Some(failed), Some(unanswered)) => {
                    format!("{ok} / {failed} / {unanswered}")
                }
                _ => "-".to_string(),
            },
        ]);
    }
    println!(
        "POST /b24/activity, {} connections, {} s per measurement; load average {}",
        report.connections, report.duration_s, report.load_average
    );
    println!("{table}");
    for (target, share) in &report.share_of_bare {
        println!("{target}: {:.1} % of the bare endpoint", share * 100.0);
    }
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One target: a closed loop, then a fixed rate.
async fn measure(
    target: &'static str,
    url: &str,
    args: &IngressArgs,
    body: &(dyn Fn() -> String + Sync),
) -> Row {
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections.max(1))
        .build()
        .unwrap_or_default();
    let before = GroupStats::now();
    let closed = closed_loop(&client, url, args.connections, duration, body).await;
    let fixed = fixed_rate(&client, url, args.rate, duration, body).await;
    let (mean_group_size, mean_commit_ms, mean_confirm_ms) = GroupStats::now().since(before);
    Row {
        target,
        calls_per_s: closed.latencies.len() as f64 / closed.elapsed.as_secs_f64(),
        p50_ms: percentile(&closed.latencies, 0.50),
        p99_ms: percentile(&closed.latencies, 0.99),
        errors: closed.errors,
        fixed_rate: args.rate,
        fixed_achieved_per_s: fixed.latencies.len() as f64 / fixed.elapsed.as_secs_f64(),
        fixed_p50_ms: percentile(&fixed.latencies, 0.50),
        fixed_p99_ms: percentile(&fixed.latencies, 0.99),
        fixed_errors: fixed.errors,
        accepted: closed.latencies.len() + fixed.latencies.len(),
        jobs_succeeded: None,
        jobs_failed: None,
        jobs_unanswered: None,
        mean_group_size,
        mean_commit_ms,
        mean_confirm_ms,
    }
}

struct Sample {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

static TOKENS: AtomicUsize = AtomicUsize::new(0);

fn next_token(target: &str) -> String {
    format!(
        "bench-{target}-{}-{}",
        std::process::id(),
        TOKENS.fetch_add(1, Ordering::Relaxed)
    )
}

async fn call(client: &reqwest::Client, url: &str, body: String) -> bool {
    match client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
    {
        Ok(response) => {
            let ok = response.status().is_success();
            let _ = response.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    connections: usize,
    duration: Duration,
    body: &(dyn Fn() -> String + Sync),
) -> Sample {
    let started = Instant::now();
    let until = started + duration;
    let loops = (0..connections.max(1)).map(|_| async move {
        let (mut latencies, mut errors) = (Vec::new(), 0usize);
        while Instant::now() < until {
            let payload = body();
            let sent = Instant::now();
            if call(client, url, payload).await {
                latencies.push(sent.elapsed());
            } else {
                errors += 1;
            }
        }
        (latencies, errors)
    });
    let results = futures::future::join_all(loops).await;
    let elapsed = started.elapsed();
    let mut sample = Sample {
        latencies: Vec::new(),
        errors: 0,
        elapsed,
    };
    for (latencies, errors) in results {
        sample.latencies.extend(latencies);
        sample.errors += errors;
    }
    sample
}

async fn fixed_rate(
    client: &reqwest::Client,
    url: &str,
    rate: u32,
    duration: Duration,
    body: &(dyn Fn() -> String + Sync),
) -> Sample {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let count = (duration.as_secs_f64() * f64::from(rate.max(1))) as usize;
    // Made before the clock starts: a simulated portal's calls take its lock to register
    // their workflows, which would otherwise push every call past its due time.
    let payloads: Vec<String> = (0..count).map(|_| body()).collect();
    let started = Instant::now();
    let calls = payloads.into_iter().enumerate().map(|(i, payload)| {
        let due = started + interval * i as u32;
        async move {
            tokio::time::sleep_until(due.into()).await;
            // From when it was due: a sender that falls behind counts against the target.
            call(client, url, payload).await.then(|| due.elapsed())
        }
    });
    let results: Vec<Option<Duration>> = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    let errors = results.iter().filter(|r| r.is_none()).count();
    Sample {
        latencies: results.into_iter().flatten().collect(),
        errors,
        elapsed,
    }
}

fn percentile(latencies: &[Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// Calls the simulated portal makes itself (a new workflow instance each, signed event
/// token), running as its users in turn, so the worker can answer them.
fn simulated_call(portal: &Portal, users: &[u64]) -> impl Fn() -> String + Sync {
    let (portal, users) = (portal.clone(), users.to_vec());
    let turn = AtomicUsize::new(0);
    move || {
        let user = users[turn.fetch_add(1, Ordering::Relaxed) % users.len()];
        let call = ActivityCall::new("user_info", json!({ "user_id": format!("user_{user}") }))
            .run_as(user);
        // A call it cannot make goes out empty and counts as an error.
        portal
            .prepare_body(&call)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

/// `auth[…]` of a call running as the token's user (§4). Simulator tokens are hex, so
/// nothing needs escaping.
fn run_as_fields(token: &TokenPair) -> String {
    format!(
        "&auth%5Baccess_token%5D={}&auth%5Brefresh_token%5D={}&auth%5Bexpires%5D={}\
         &auth%5Bexpires_in%5D={}&auth%5Buser_id%5D={}",
        token.access_token, token.refresh_token, token.expires, token.expires_in, token.user_id
    )
}

/// The same form an activity call carries (protocol.md §4), about 800 bytes with `auth`.
fn activity_body(event_token: &str, member_id: &str, app_token: &str, auth: &str) -> String {
    format!(
        "workflow_id=wf-bench&code=user_info&event_token={event_token}\
         &document_id%5B0%5D=crm&document_id%5B1%5D=CCrmDocumentDeal&document_id%5B2%5D=DEAL_1\
         &document_type%5B0%5D=crm&document_type%5B1%5D=CCrmDocumentDeal&document_type%5B2%5D=DEAL\
         &properties%5Buser_id%5D=user_1&use_subscription=Y&timeout_duration=0&ts=1733000000\
         &auth%5Bdomain%5D=bench.bitrix24.ru&auth%5Bclient_endpoint%5D=https%3A%2F%2Fbench.bitrix24.ru%2Frest%2F\
         &auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F\
         &auth%5Bmember_id%5D={member_id}&auth%5Bapplication_token%5D={app_token}{auth}"
    )
}

fn bare_body(event_token: &str) -> String {
    let token = TokenPair {
        access_token: "0123456789abcdef".repeat(4),
        refresh_token: "fedcba9876543210".repeat(4),
        expires: 1_733_003_600,
        expires_in: 3600,
        user_id: 1,
    };
    activity_body(
        event_token,
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
        &run_as_fields(&token),
    )
}

/// An axum endpoint that reads and parses the form, then answers as the ingress does.
async fn start_bare() -> anyhow::Result<(String, CancellationToken)> {
    async fn parse_only(body: axum::body::Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        match form::decode(&body) {
            Ok(form) => {
                let token = form::str_at(&form, &["event_token"]).unwrap_or_default();
                axum::Json(serde_json::json!({ "status": "accepted", "job_id": token }))
                    .into_response()
            }
            Err(_) => axum::http::StatusCode::BAD_REQUEST.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/b24/activity", listener.local_addr()?);
    let app = axum::Router::new().route("/b24/activity", axum::routing::post(parse_only));
    let stop = CancellationToken::new();
    let until = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(until.cancelled_owned())
            .await;
    });
    Ok((url, stop))
}

/// The ingress (and, for `all`, a worker) on a scratch database and AMQP prefix, with a
/// simulated portal without limits that installed the app.
struct Stack {
    url: String,
    portal: Portal,
    /// Users of the portal the calls run as.
    users: Vec<u64>,
    cloud: Cloud,
    config: Config,
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Stack {
    async fn start(base: &Config, name: &str, with_worker: bool) -> anyhow::Result<Stack> {
        let mut config = base.clone();
        let suffix = format!("bench_ingress_{name}");
        config.database_url =
            b24flow_common::db::scratch_database_url(&config.database_url, &suffix)?;
        config.amqp_prefix = format!("{}-{suffix}-{}", config.amqp_prefix, std::process::id());
        b24flow_common::db::drop_database(&config.database_url).await?;
        let cloud = Cloud::start(CloudConfig::default()).await?;
        let portal = cloud
            .add_portal(PortalConfig {
                rate_limit_enabled: false,
                ..PortalConfig::default()
            })
            .await?;
        let users = portal.seed_demo_directory(20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        config.listen = listener.local_addr()?;
        config.public_url = format!("http://{}", listener.local_addr()?);
        config.oauth_url = cloud.oauth_url();
        config.client_id = Some(cloud.client_id().to_string());
        config.client_secret = Some(cloud.client_secret().to_string());
        if config.operator_token.is_none() {
            config.operator_token = Some(format!("bench-{}", uuid::Uuid::new_v4()));
        }
        b24flow_common::db::prepare(&config.database_url, 4).await?;
        b24flow_common::amqp::Topology::new(&config.amqp_prefix)
            .declare_at(&config.amqp_url)
            .await?;
        let shutdown = CancellationToken::new();
        let running = if with_worker {
            tokio::spawn(crate::all::run_roles(
                config.clone(),
                Some(listener),
                shutdown.clone(),
            ))
        } else {
            let state = b24flow_ingress::AppState::new(
                config.clone(),
                b24flow_worker::activities::codes(),
            )?;
            let stop = shutdown.clone();
            tokio::spawn(async move {
                b24flow_ingress::serve(listener, state, stop).await?;
                Ok(())
            })
        };
        let status = portal
            .install(&format!("{}/b24/install", config.public_url))
            .await?;
        anyhow::ensure!(status.is_success(), "install answered {status}");
        if with_worker {
            portal
                .wait_for_activities(&["user_info"], Duration::from_secs(60))
                .await
                .context("registration")?;
        }
        // The simulated portal has no limits; nor may our limiter's plan for it, or `all`
        // measures Bitrix24's 2 requests/s instead of b24flow.
        let pool = b24flow_common::db::pool(&config.database_url, 1)?;
        let client = pool.get().await?;
        for row in b24flow_common::db::portals::list(&client).await? {
            b24flow_common::db::portal_limits::set_plan(
                &client,
                row.id,
                crate::bench_pipeline::UNLIMITED,
            )
            .await?;
        }
        drop(client);
        Ok(Stack {
            url: config.public_url.clone(),
            portal,
            users,
            cloud,
            config,
            shutdown,
            running,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.running).await;
        self.cloud.shutdown().await;
        let _ = b24flow_common::amqp::Topology::new(&self.config.amqp_prefix)
            .delete_at(&self.config.amqp_url)
            .await;
        b24flow_common::db::drop_database(&self.config.database_url).await?;
        Ok(())
    }
}
