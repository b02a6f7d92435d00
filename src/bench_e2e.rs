//! `b24flow bench e2e`: the whole path on loopback over many portals. One simulator in this
//! process runs `--portals` portals without rate limits (ours set unlimited too); each
//! installs the app first, timed on its own. Then `--calls` `user_info` calls are fired at
//! once, each running as one of its portal's users, and every answer waited for: jobs/s and
//! p50/p99 from the call to its `bizproc.event.send`, how many succeeded, and the peak memory
//! and CPU of each process (`b24flow ingress` and `worker`s, or one `b24flow all`).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use b24flow_common::db;
use b24flow_common::Config;
use b24flow_sim::{ActivityCall, Cloud, CloudConfig, Portal, PortalConfig};
use clap::Args;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;
use tokio::process::Child;

use crate::bench_answers::{answered_count, refusal, wait_for_answers};
use crate::bench_pipeline::UNLIMITED;
use crate::bench_portal::percentile;
use crate::bench_procs::{free_loopback_address, role_process, wait_healthy, Role, Watched};

/// A run's jobs are taken as lost when no answer came for this long.
const ANSWER_STALL: Duration = Duration::from_secs(60);
/// Installs (and their registrations) in flight at once.
const INSTALLS_IN_FLIGHT: usize = 32;
/// Users per portal the calls run as.
const USERS_PER_PORTAL: usize = 3;

#[derive(Args)]
pub struct E2eArgs {
    /// Simulated portals, without rate limits, the calls are spread over.
    #[arg(long, default_value_t = 1000)]
    portals: usize,
    /// `user_info` calls, all fired before any answer is waited for.
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Worker processes beside the ingress process.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// One `b24flow all` process (ingress and worker) instead of separate ones.
    #[arg(long)]
    all: bool,
    /// Calls the portals have open to the ingress at once while firing.
    #[arg(long, default_value_t = 256)]
    parallel: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    /// `ingress + N workers` or `all`.
    layout: String,
    portals: usize,
    calls: usize,
    /// Installing every portal until its registration finished; not part of what follows.
    install_secs: f64,
    /// Calls answered 200, and how long until the last one was.
    accepted: usize,
    fire_secs: f64,
    /// Calls not accepted, by the ingress's status and error code (or the sender's error).
    refused: BTreeMap<String, usize>,
    /// Most jobs accepted and not yet answered at one look.
    peak_in_flight: usize,
    answered: usize,
    succeeded: usize,
    failed: usize,
    unanswered: usize,
    /// Answers per second from the first call to the last answer.
    jobs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    span_secs: f64,
    processes: Vec<ProcessRow>,
    load_average: String,
}

#[derive(Serialize)]
struct ProcessRow {
    process: String,
    /// While the calls were fired and answered (the peak is reset after the install).
    peak_rss_mib: f64,
    /// While the portals were installed and their registrations ran.
    install_peak_rss_mib: f64,
    /// From the first call on (not the install).
    cpu_secs: f64,
}

/// The scratch installation: its processes and the simulated cloud.
struct Installation {
    config: Config,
    cloud: Cloud,
    processes: Vec<(String, Child)>,
}

pub async fn e2e(base: Config, args: E2eArgs) -> anyhow::Result<()> {
    let load_before = crate::bench_ingress::load_average();
    let mut installation = Installation::start(&base, &args).await?;
    let result = measure(&installation, &args).await;
    installation.stop_processes().await;
    installation.cloud.shutdown().await;
    let _ = b24flow_common::amqp::Topology::new(&installation.config.amqp_prefix)
        .delete_at(&installation.config.amqp_url)
        .await;
    let mut report = result?;
    report.load_average = format!(
        "{load_before} (before) / {} (after)",
        crate::bench_ingress::load_average()
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if report.succeeded < report.accepted || report.accepted < report.calls {
        eprintln!(
            "kept the database {} for inspection",
            installation.config.database_url
        );
        anyhow::bail!(
            "{} of {} calls were accepted and {} of their jobs succeeded",
            report.accepted,
            report.calls,
            report.succeeded
        );
    }
    b24flow_common::db::drop_database(&installation.config.database_url).await?;
    Ok(())
}

impl Installation {
    async fn start(base: &Config, args: &E2eArgs) -> anyhow::Result<Self> {
        let mut config = base.clone();
        config.database_url =
            b24flow_common::db::scratch_database_url(&config.database_url, "bench_e2e")?;
        config.amqp_prefix = format!("{}-bench_e2e-{}", config.amqp_prefix, std::process::id());
        b24flow_common::db::drop_database(&config.database_url).await?;
        let cloud = Cloud::start(CloudConfig::default()).await?;
        config.listen = free_loopback_address()?;
        config.public_url = format!("http://{}", config.listen);
        config.oauth_url = cloud.oauth_url();
        config.client_id = Some(cloud.client_id().to_string());
        config.client_secret = Some(cloud.client_secret().to_string());
        if config.operator_token.is_none() {
            // Else the ingress makes one up and prints it.
            config.operator_token = Some(format!("bench-{}", uuid::Uuid::new_v4()));
        }
        let secret_key = crate::bench_procs::prepare_installation(&mut config).await?;
        let mut layout = if args.all {
            vec![("all".to_string(), Role::All)]
        } else {
            vec![("ingress".to_string(), Role::Ingress)]
        };
        if !args.all {
            layout.extend((1..=args.workers.max(1)).map(|i| (format!("worker {i}"), Role::Worker)));
        }
        let processes = layout
            .into_iter()
            .map(|(name, role)| Ok((name, role_process(role, &config, &secret_key, &[])?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let installation = Self {
            config,
            cloud,
            processes,
        };
        wait_healthy(&installation.config.public_url, Duration::from_secs(60)).await?;
        Ok(installation)
    }

    fn layout(&self) -> String {
        match self.processes.len() {
            1 => self.processes[0].0.clone(),
            n => format!("ingress + {} worker(s)", n - 1),
        }
    }

    fn watched(&self) -> Watched {
        Watched::new(
            self.processes
                .iter()
                .filter_map(|(name, child)| Some((name.clone(), child.id()?)))
                .chain(std::iter::once((
                    "bench (simulator)".to_string(),
                    std::process::id(),
                ))),
        )
    }

    /// Portals without limits, each with the app installed and its registration finished.
    async fn portals(&self, count: usize) -> anyhow::Result<Vec<(Portal, Vec<u64>)>> {
        let mut portals = Vec::with_capacity(count);
        for _ in 0..count {
            let portal = self
                .cloud
                .add_portal(PortalConfig {
                    rate_limit_enabled: false,
                    ..PortalConfig::default()
                })
                .await?;
            let users = portal.seed_demo_directory(USERS_PER_PORTAL);
            portals.push((portal, users));
        }
        let install_url = format!("{}/b24/install", self.config.public_url);
        stream::iter(portals.iter().map(|(portal, _)| portal.clone()))
            .map(|portal| {
                let install_url = install_url.clone();
                async move {
                    let status = portal.install(&install_url).await?;
                    anyhow::ensure!(status.is_success(), "install answered {status}");
                    portal
                        .wait_for_activities(&["user_info"], Duration::from_secs(600))
                        .await
                        .context("registration")
                }
            })
            .buffer_unordered(INSTALLS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        self.unlimit_and_settle().await?;
        Ok(portals)
    }

    /// Every portal's bucket unlimited, once no registration job is left running, so the
    /// measured jobs have the workers to themselves.
    async fn unlimit_and_settle(&self) -> anyhow::Result<()> {
        let pool = db::pool(&self.config.database_url, 1)?;
        let client = pool.get().await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let unfinished: i64 = db::jobs::count_by_state(&client)
                .await?
                .iter()
                .filter(|(state, _)| state == "queued" || state == "running")
                .map(|(_, n)| n)
                .sum();
            if unfinished == 0 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{unfinished} registration jobs still unfinished"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for portal in db::portals::list(&client).await? {
            db::portal_limits::set_plan(&client, portal.id, UNLIMITED).await?;
        }
        Ok(())
    }

    async fn stop_processes(&mut self) {
        for (_, child) in self.processes.iter_mut() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

async fn measure(installation: &Installation, args: &E2eArgs) -> anyhow::Result<Report> {
    let mut watched = installation.watched();
    eprintln!("  installing {} portals", args.portals);
    let installing = Instant::now();
    let portals = installation.portals(args.portals.max(1)).await?;
    let install_secs = installing.elapsed().as_secs_f64();
    eprintln!(
        "  installed in {install_secs:.1} s; firing {} calls",
        args.calls
    );
    watched.mark();

    let accepted = Arc::new(AtomicUsize::new(0));
    let firing_started = Instant::now();
    let refused = Arc::new(Mutex::new(BTreeMap::new()));
    let firing = tokio::spawn(fire_all(
        portals.clone(),
        args.calls,
        args.parallel,
        accepted.clone(),
        refused.clone(),
    ));
    let just_portals: Vec<Portal> = portals.into_iter().map(|(portal, _)| portal).collect();
    let mut peak_in_flight = 0usize;
    while !firing.is_finished() {
        watched.sample();
        let answered = answered_count(&just_portals);
        peak_in_flight =
            peak_in_flight.max(accepted.load(Ordering::Relaxed).saturating_sub(answered));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    firing.await.context("firing calls")?;
    let fire_secs = firing_started.elapsed().as_secs_f64();
    let accepted = accepted.load(Ordering::Relaxed);
    let answers = wait_for_answers(&just_portals, accepted, ANSWER_STALL, |answered| {
        watched.sample();
        peak_in_flight = peak_in_flight.max(accepted.saturating_sub(answered));
        eprint!("\r  answered {answered:>7}/{accepted}");
    })
    .await;
    eprintln!();
    watched.sample();

    let refused = std::mem::take(&mut *refused.lock().unwrap_or_else(|e| e.into_inner()));
    let latencies = answers.latencies();
    let span = answers.span().as_secs_f64();
    Ok(Report {
        layout: installation.layout(),
        portals: args.portals.max(1),
        calls: args.calls,
        install_secs,
        accepted,
        fire_secs,
        refused,
        peak_in_flight,
        answered: answers.sends.len(),
        succeeded: answers.succeeded(),
        failed: answers.failed(),
        unanswered: accepted.saturating_sub(answers.sends.len()),
        jobs_per_s: if span > 0.0 {
            answers.sends.len() as f64 / span
        } else {
            0.0
        },
        p50_ms: percentile(&latencies, 0.50) * 1000.0,
        p99_ms: percentile(&latencies, 0.99) * 1000.0,
        span_secs: span,
        processes: watched
            .readings()
            .zip(watched.setup_peaks())
            .map(|((name, stats), (_, install_peak))| ProcessRow {
                process: name.to_string(),
                peak_rss_mib: stats.peak_rss_mib,
                install_peak_rss_mib: install_peak,
                cpu_secs: stats.cpu_secs,
            })
            .collect(),
        load_average: String::new(),
    })
}

/// Fires the calls round robin over the portals, each as the next of its portal's users;
/// counts the ones the ingress accepted, and why the others were not.
async fn fire_all(
    portals: Vec<(Portal, Vec<u64>)>,
    calls: usize,
    parallel: usize,
    accepted: Arc<AtomicUsize>,
    refused: Arc<Mutex<BTreeMap<String, usize>>>,
) {
    stream::iter(0..calls)
        .for_each_concurrent(parallel.max(1), |i| {
            let (portal, users) = &portals[i % portals.len()];
            let user = users[(i / portals.len()) % users.len()];
            let (accepted, refused) = (accepted.clone(), refused.clone());
            async move {
                let call =
                    ActivityCall::new("user_info", json!({ "user_id": format!("user_{user}") }))
                        .run_as(user);
                let Some(reason) = refusal(&portal.fire(call).await) else {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut refused = refused.lock().unwrap_or_else(|e| e.into_inner());
                *refused.entry(reason).or_default() += 1;
            }
        })
        .await;
}

fn print_table(report: &Report) {
    let mut table = comfy_table::Table::new();
    table.set_header(vec![
        "layout",
        "portals",
        "install s",
        "calls",
        "accepted",
        "fire s",
        "peak in flight",
        "ok / failed / unanswered",
        "jobs/s",
        "p50 ms",
        "p99 ms",
    ]);
    table.add_row(vec![
        report.layout.clone(),
        report.portals.to_string(),
        format!("{:.1}", report.install_secs),
        report.calls.to_string(),
        report.accepted.to_string(),
        format!("{:.1}", report.fire_secs),
        report.peak_in_flight.to_string(),
        format!(
            "{} / {} / {}",
            report.succeeded, report.failed, report.unanswered
        ),
        format!("{:.0}", report.jobs_per_s),
        format!("{:.0}", report.p50_ms),
        format!("{:.0}", report.p99_ms),
    ]);
    let mut processes = comfy_table::Table::new();
    processes.set_header(vec![
        "process",
        "peak RSS MiB (calls)",
        "peak RSS MiB (install)",
        "CPU s",
        "cores",
    ]);
    for p in &report.processes {
        processes.add_row(vec![
            p.process.clone(),
            format!("{:.0}", p.peak_rss_mib),
            format!("{:.0}", p.install_peak_rss_mib),
            format!("{:.1}", p.cpu_secs),
            format!(
                "{:.2}",
                p.cpu_secs / report.span_secs.max(f64::MIN_POSITIVE)
            ),
        ]);
    }
    println!(
        "call → bizproc.event.send, every call fired before any answer; load average {}",
        report.load_average
    );
    println!("{table}");
    for (reason, count) in &report.refused {
        println!("not accepted: {count} × {reason}");
    }
    println!("{processes}");
}
