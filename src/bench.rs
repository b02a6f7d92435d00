//! `b24flow bench chaos`: many calls through the whole system while the portal fails a share
//! of requests, tokens expire, and worker processes are SIGKILLed and restarted. Prints what
//! was accepted, answered, lost, duplicated and how long answers took.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use b24flow_common::Config;
use b24flow_sim::{ActivityCall, Cloud, CloudConfig, Faults, PortalConfig};
use clap::{Args, Subcommand};
use futures::stream::{self, StreamExt};
use serde_json::json;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

/// How long a call may still wait for its answer once the storm is over: under 20 %
/// faults an answer can need many tries, and backoff grows to 5 minutes between them.
const ANSWER_WAIT: Duration = Duration::from_secs(10 * 60);

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Calls under faults and worker kills; reports lost, duplicated and hanging work.
    Chaos(ChaosArgs),
    /// One portal at Bitrix24's real limit: jobs/s, refusals, requests per job, latency;
    /// with and without cross-job batching, standard and Enterprise plans.
    Portal(crate::bench_portal::PortalArgs),
    /// A quiet portal's latency while another floods jobs.
    Fairness(crate::bench_fairness::FairnessArgs),
    /// `POST /b24/activity` with the durable hand-off beside a bare parse-only endpoint:
    /// calls/s, p50/p99, and p99 at a fixed rate; the ingress alone and `all`.
    Ingress(crate::bench_ingress::IngressArgs),
    /// The whole path over many portals without limits: jobs/s and p50/p99 from call to
    /// `event.send` with every job in flight at once, and each process's peak memory.
    E2e(crate::bench_e2e::E2eArgs),
    /// The shared limiter's cost over many portals: one Postgres statement per request
    /// side by side with requests gathered into shared statements.
    Limiter(crate::bench_portal::LimiterArgs),
    /// One worker process's jobs/s, CPU and memory per concurrency (no rate limit).
    Pipeline(crate::bench_pipeline::PipelineArgs),
}

#[derive(Args)]
pub struct ChaosArgs {
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Worker processes running at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seconds between SIGKILLs of a worker process (0 = never).
    #[arg(long, default_value_t = 5.0)]
    kill_every: f64,
    /// Share of portal requests answered 500 / 503 each.
    #[arg(long, default_value_t = 0.1)]
    fault_share: f64,
    /// Calls in flight from the portal at once.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// Seconds the storm (faults, kills, token expiry) goes on after the last call was
    /// fired; then it ends, and every accepted call must still be answered: a job still
    /// in its backoff when the storm ends is late, not lost.
    #[arg(long, default_value_t = 60.0)]
    storm_tail: f64,
}

pub async fn run(config: Config, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Chaos(args) => chaos(config, args).await,
        BenchCommand::Portal(args) => crate::bench_portal::portal(config, args).await,
        BenchCommand::Fairness(args) => crate::bench_fairness::fairness(config, args).await,
        BenchCommand::Limiter(args) => crate::bench_portal::limiter(config, args).await,
        BenchCommand::Pipeline(args) => crate::bench_pipeline::pipeline(config, args).await,
        BenchCommand::Ingress(args) => crate::bench_ingress::ingress(config, args).await,
        BenchCommand::E2e(args) => crate::bench_e2e::e2e(config, args).await,
    }
}

async fn chaos(mut config: Config, args: ChaosArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    config.database_url = b24flow_common::db::scratch_database_url(&config.database_url, "chaos")?;
    config.amqp_prefix = format!("{}-chaos-{}", config.amqp_prefix, std::process::id());
    config.job_lease = Duration::from_secs(5);
    config.sweep_interval = Duration::from_millis(500);
    b24flow_common::db::drop_database(&config.database_url).await?;

    let cloud = Cloud::start(CloudConfig::default()).await?;
    // Bitrix24's real limit (2 requests/s, burst 50) on top of the faults.
    let portal = cloud.add_portal(PortalConfig::default()).await?;
    let users = portal.seed_demo_directory(100);
    let deal = portal.seed_demo_crm()["deal"].clone();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    config.public_url = format!("http://{}", listener.local_addr()?);
    config.oauth_url = cloud.oauth_url();
    config.client_id = Some(cloud.client_id().to_string());
    config.client_secret = Some(cloud.client_secret().to_string());
    let secret_key = crate::bench_procs::prepare_installation(&mut config).await?;

    let shutdown = CancellationToken::new();
    let state =
        b24flow_ingress::AppState::new(config.clone(), b24flow_worker::activities::codes())?;
    let ingress = tokio::spawn(b24flow_ingress::serve(listener, state, shutdown.clone()));
    let spawn_worker = {
        let config = config.clone();
        let secret_key = secret_key.clone();
        move || crate::bench_procs::worker_process(&config, &secret_key)
    };
    let mut workers: Vec<Child> = (0..args.workers.max(1))
        .map(|_| spawn_worker())
        .collect::<anyhow::Result<_>>()?;

    portal
        .install(&format!("{}/b24/install", config.public_url))
        .await?;
    portal
        .wait_for_activities(&["user_info"], Duration::from_secs(60))
        .await
        .context("registration")?;
    portal.set_faults(Faults {
        error_500: args.fault_share,
        error_503: args.fault_share,
        slow: 0.02,
        slow_delay: Duration::from_millis(500),
    });

    // Kill a worker now and then, and expire the portal's tokens now and then.
    let kills = Arc::new(AtomicUsize::new(0));
    let chaos_stop = CancellationToken::new();
    let chaos_task = {
        let kills = kills.clone();
        let stop = chaos_stop.clone();
        let portal = portal.clone();
        let kill_every = args.kill_every;
        tokio::spawn(async move {
            let mut round = 0usize;
            loop {
                let pause = if kill_every > 0.0 { kill_every } else { 3600.0 };
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(pause)) => {}
                    _ = stop.cancelled() => return workers,
                }
                if kill_every > 0.0 {
                    let victim = round % workers.len();
                    let _ = workers[victim].start_kill();
                    let _ = workers[victim].wait().await;
                    kills.fetch_add(1, Ordering::Relaxed);
                    match spawn_worker() {
                        Ok(w) => workers[victim] = w,
                        Err(e) => eprintln!("cannot restart worker: {e}"),
                    }
                }
                if round % 3 == 2 {
                    portal.expire_access_tokens();
                }
                round += 1;
            }
        })
    };

    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let fired = Arc::new(AtomicUsize::new(0));
    let answered_in_storm = Arc::new(AtomicUsize::new(usize::MAX));
    let storm_over_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let storm_end = {
        let (fired, answered, answered_in_storm) =
            (fired.clone(), answered.clone(), answered_in_storm.clone());
        let storm_over_at = storm_over_at.clone();
        let (stop, portal, total) = (chaos_stop.clone(), portal.clone(), args.calls);
        let tail = Duration::from_secs_f64(args.storm_tail.max(0.0));
        tokio::spawn(async move {
            while fired.load(Ordering::Relaxed) < total && !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(tail) => {}
                _ = stop.cancelled() => {}
            }
            answered_in_storm.store(answered.load(Ordering::Relaxed), Ordering::Relaxed);
            portal.set_faults(Faults::default());
            let _ = storm_over_at.set(Instant::now());
            stop.cancel();
            eprintln!("\n  the storm is over: no more faults or kills; waiting for the rest");
        })
    };
    let progress_stop = CancellationToken::new();
    let progress = {
        let (accepted, answered, stop) =
            (accepted.clone(), answered.clone(), progress_stop.clone());
        let kills = kills.clone();
        let total = args.calls;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => { eprintln!(); return; }
                }
                eprint!(
                    "\r  accepted {:>6}/{total}  answered {:>6}  worker kills {:>3}",
                    accepted.load(Ordering::Relaxed),
                    answered.load(Ordering::Relaxed),
                    kills.load(Ordering::Relaxed)
                );
            }
        })
    };

    let results: Vec<Option<(String, Duration)>> = stream::iter(0..args.calls)
        .map(|i| {
            let portal = portal.clone();
            let (accepted, answered, refused) =
                (accepted.clone(), answered.clone(), refused.clone());
            let fired_count = fired.clone();
            let storm_over_at = storm_over_at.clone();
            let user = users[i % users.len()];
            let deal = deal.clone();
            async move {
                // One call in ten creates something (a feed comment): retries must not repeat it.
                let call = if i % 10 == 0 {
                    let message = format!("chaos-{i}");
                    ActivityCall::new(
                        "crm_feed_post",
                        json!({ "entity_type": "deal", "entity_id": deal, "title": "chaos", "message": message }),
                    )
                } else {
                    ActivityCall::new("user_info", json!({ "user_id": format!("user_{user}") }))
                };
                let fired = portal.fire(call).await;
                fired_count.fetch_add(1, Ordering::Relaxed);
                if let Some(reason) = crate::bench_answers::refusal(&fired) {
                    let mut refused = refused.lock().unwrap_or_else(|e| e.into_inner());
                    *refused.entry(reason).or_insert(0usize) += 1;
                    return None;
                }
                let fired = fired.ok()?;
                accepted.fetch_add(1, Ordering::Relaxed);
                // However long the storm lasts, each call has ANSWER_WAIT after it ends.
                let send = loop {
                    let waited = portal
                        .wait_event_send(&fired.event_token, Duration::from_secs(30))
                        .await;
                    match (waited, storm_over_at.get()) {
                        (Some(send), _) => break send,
                        (None, Some(over)) if over.elapsed() > ANSWER_WAIT => return None,
                        (None, _) => continue,
                    }
                };
                answered.fetch_add(1, Ordering::Relaxed);
                Some((fired.event_token, send.at.duration_since(send.fired_at)))
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    progress_stop.cancel();
    let _ = progress.await;
    chaos_stop.cancel();
    let _ = storm_end.await;
    let mut workers = chaos_task.await?;
    let answered_in_storm = answered_in_storm.load(Ordering::Relaxed);

    let accepted = accepted.load(Ordering::Relaxed);
    let mut latencies: Vec<Duration> = results.iter().flatten().map(|(_, d)| *d).collect();
    latencies.sort();
    let successful: std::collections::HashSet<String> = portal
        .event_sends()
        .into_iter()
        .filter(|s| s.return_values["error_text"] == "")
        .map(|s| s.event_token)
        .collect();
    let answered_ok = results
        .iter()
        .flatten()
        .filter(|(token, _)| successful.contains(token))
        .count();
    let mut comments_per_call: HashMap<String, usize> = HashMap::new();
    for comment in portal.crm_comments() {
        let text = comment
            .get("COMMENT")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if let Some(marker) = text.split_whitespace().find(|w| w.starts_with("chaos-")) {
            *comments_per_call.entry(marker.to_string()).or_default() += 1;
        }
    }
    let side_effects = comments_per_call.len();
    let duplicated_side_effects: usize = comments_per_call.values().map(|n| n - 1).sum();
    let terminal = terminal_states_per_job(&config).await?;
    let duplicated = terminal.values().filter(|n| **n > 1).count();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!();
    println!("calls                 {}", args.calls);
    println!("accepted (200)        {accepted}");
    for (reason, count) in refused.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("  refused: {reason:<12} {count}");
    }
    println!("answered              {}", latencies.len());
    println!("  during the storm    {answered_in_storm}");
    println!("  of them successful  {answered_ok}");
    println!("lost (never answered) {}", accepted - latencies.len());
    println!("jobs with >1 terminal {duplicated}");
    println!("side effects (posts)  {side_effects} (one call in ten posts a feed comment)");
    println!("duplicated posts      {duplicated_side_effects}");
    println!("duplicate event.send  {}", portal.duplicate_event_sends());
    println!("worker kills          {}", kills.load(Ordering::Relaxed));
    println!("token refreshes       {}", portal.refresh_count());
    println!(
        "p50 to event.send     {:.0} ms",
        pct(0.50).as_secs_f64() * 1000.0
    );
    println!(
        "p99 to event.send     {:.0} ms",
        pct(0.99).as_secs_f64() * 1000.0
    );
    println!(
        "wall time             {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for w in workers.iter_mut() {
        let _ = w.start_kill();
        let _ = w.wait().await;
    }
    shutdown.cancel();
    let _ = ingress.await;
    cloud.shutdown().await;
    b24flow_common::amqp::Topology::new(&config.amqp_prefix)
        .delete_at(&config.amqp_url)
        .await?;
    if accepted != latencies.len() || duplicated > 0 || duplicated_side_effects > 0 {
        eprintln!("kept the database {} for inspection", config.database_url);
        anyhow::bail!("chaos found lost or duplicated work");
    }
    b24flow_common::db::drop_database(&config.database_url).await?;
    Ok(())
}

/// Terminal transitions per job: exactly one each, or something ran twice.
async fn terminal_states_per_job(config: &Config) -> anyhow::Result<HashMap<uuid::Uuid, i64>> {
    let pool = b24flow_common::db::pool(&config.database_url, 2)?;
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT j.id, count(e.id) FROM jobs j
             LEFT JOIN job_events e ON e.job_id = j.id AND e.to_state IN ('succeeded', 'failed', 'discarded')
             WHERE j.kind = 'activity' GROUP BY j.id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
