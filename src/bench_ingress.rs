//! `b24flow bench ingress`: `POST /b24/activity` with the durable hand-off, measured side by
//! side in one run with a bare axum endpoint that only parses the same form. For each
//! target: calls/s and p50/p99 from `--connections` closed loops, then p50/p99 at a fixed
//! `--rate` (an open loop: latency counts from when the call was due). Targets: `bare`,
//! `ingress` (the ingress alone, as `b24flow ingress`) and `all` (ingress and worker in one
//! process, as `b24flow all`, the worker answering every job on a simulated portal).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use b24flow_common::bitrix::form;
use b24flow_common::Config;
use b24flow_sim::{Cloud, CloudConfig, Portal, PortalConfig};
use clap::Args;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

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
    let body = |token: &str| bare_body(token);
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
        let (member_id, app_token) = (stack.portal.member_id(), stack.portal.application_token());
        let body = move |token: &str| activity_body(token, &member_id, &app_token);
        rows.push(measure(name, &format!("{}/b24/activity", stack.url), &args, &body).await);
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

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One target: a closed loop, then a fixed rate.
async fn measure(
    target: &'static str,
    url: &str,
    args: &IngressArgs,
    body: &(dyn Fn(&str) -> String + Sync),
) -> Row {
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections.max(1))
        .build()
        .unwrap_or_default();
    let before = GroupStats::now();
    let closed = closed_loop(&client, url, target, args.connections, duration, body).await;
    let fixed = fixed_rate(&client, url, target, args.rate, duration, body).await;
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
    target: &str,
    connections: usize,
    duration: Duration,
    body: &(dyn Fn(&str) -> String + Sync),
) -> Sample {
    let started = Instant::now();
    let until = started + duration;
    let loops = (0..connections.max(1)).map(|_| async move {
        let (mut latencies, mut errors) = (Vec::new(), 0usize);
        while Instant::now() < until {
            let payload = body(&next_token(target));
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
    target: &str,
    rate: u32,
    duration: Duration,
    body: &(dyn Fn(&str) -> String + Sync),
) -> Sample {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let count = (duration.as_secs_f64() * f64::from(rate.max(1))) as usize;
    let started = Instant::now();
    let calls = (0..count).map(|i| {
        let due = started + interval * i as u32;
        let payload = body(&next_token(target));
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

/// The same form an activity call carries (protocol.md §4), about 600 bytes.
fn activity_body(event_token: &str, member_id: &str, app_token: &str) -> String {
    format!(
        "workflow_id=wf-bench&code=user_info&event_token={event_token}\
         &document_id%5B0%5D=crm&document_id%5B1%5D=CCrmDocumentDeal&document_id%5B2%5D=DEAL_1\
         &document_type%5B0%5D=crm&document_type%5B1%5D=CCrmDocumentDeal&document_type%5B2%5D=DEAL\
         &properties%5Buser_id%5D=user_1&use_subscription=Y&timeout_duration=0&ts=1733000000\
         &auth%5Bdomain%5D=bench.bitrix24.ru&auth%5Bclient_endpoint%5D=https%3A%2F%2Fbench.bitrix24.ru%2Frest%2F\
         &auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F\
         &auth%5Bmember_id%5D={member_id}&auth%5Bapplication_token%5D={app_token}"
    )
}

fn bare_body(event_token: &str) -> String {
    activity_body(
        event_token,
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
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
    cloud: Cloud,
    config: Config,
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Stack {
    async fn start(base: &Config, name: &str, with_worker: bool) -> anyhow::Result<Stack> {
        let mut config = base.clone();
        let suffix = format!("bench_ingress_{name}");
        config.database_url = crate::demo::scratch_database_url(&config.database_url, &suffix)?;
        config.amqp_prefix = format!("{}-{suffix}-{}", config.amqp_prefix, std::process::id());
        crate::demo::reset_database(&config.database_url).await?;
        let cloud = Cloud::start(CloudConfig::default()).await?;
        let portal = cloud
            .add_portal(PortalConfig {
                rate_limit_enabled: false,
                ..PortalConfig::default()
            })
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        config.listen = listener.local_addr()?;
        config.public_url = format!("http://{}", listener.local_addr()?);
        config.oauth_url = cloud.oauth_url();
        config.client_id = Some(cloud.client_id().to_string());
        config.client_secret = Some(cloud.client_secret().to_string());
        if config.operator_token.is_none() {
            config.operator_token = Some(format!("bench-{}", uuid::Uuid::new_v4()));
        }
        crate::prepare_database(&config).await?;
        crate::declare_topology(&config).await?;
        let shutdown = CancellationToken::new();
        let running = if with_worker {
            tokio::spawn(crate::run_roles(
                config.clone(),
                Some(listener),
                shutdown.clone(),
            ))
        } else {
            let state = b24flow_ingress::AppState::new(config.clone())?;
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
        Ok(Stack {
            url: config.public_url.clone(),
            portal,
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
        let _ = crate::delete_topology(&self.config).await;
        crate::demo::reset_database(&self.config.database_url).await?;
        Ok(())
    }
}
