//! `b24flow bench portal | limiter` (and the rig `bench fairness` shares): the product against Bitrix24's real REST
//! limit on a simulated portal (loopback), through the whole path (ingress → Postgres →
//! RabbitMQ → worker processes → portal).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use b24flow_common::db::{self, portal_limits::Plan};
use b24flow_common::Config;
use b24flow_sim::{ActivityCall, Cloud, CloudConfig, EventSend, Portal, PortalConfig};
use clap::Args;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

pub(crate) const ANSWER_WAIT: Duration = Duration::from_secs(900);

#[derive(Args)]
pub struct PortalArgs {
    /// `user_info` calls fired at once (batching on).
    #[arg(long, default_value_t = 3000)]
    calls: usize,
    /// Calls of the run with cross-job batching off (each job then costs two requests at
    /// 2 requests/s, so a smaller number keeps the run short).
    #[arg(long, default_value_t = 150)]
    unbatched_calls: usize,
    /// Worker processes, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    workers: Vec<usize>,
    /// Calls in flight from the portal at once while firing.
    #[arg(long, default_value_t = 400)]
    parallel: usize,
    /// Distinct "run as" users the calls are spread over, one run per value (0: every call
    /// runs as the activity's default user, the admin). Requests of different users never
    /// share a batch, so more users mean more requests per job.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    run_as_users: Vec<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LimiterArgs {
    /// Portals whose rows are taken at random.
    #[arg(long, default_value_t = 1000)]
    portals: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Requests asking for grants at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long)]
    json: bool,
}

/// A scratch installation: database, AMQP names, ingress in-process, worker processes.
pub(crate) struct Rig {
    pub(crate) config: Config,
    pub(crate) cloud: Cloud,
    shutdown: CancellationToken,
    ingress: tokio::task::JoinHandle<anyhow::Result<()>>,
    workers: Vec<Child>,
    secret_key: String,
}

impl Rig {
    pub(crate) async fn start(
        base: &Config,
        name: &str,
        workers: usize,
        batching: bool,
    ) -> anyhow::Result<Rig> {
        let mut config = base.clone();
        config.database_url = b24flow_common::db::scratch_database_url(&config.database_url, name)?;
        config.amqp_prefix = format!("{}-{name}-{}", config.amqp_prefix, std::process::id());
        config.cross_job_batching = batching;
        b24flow_common::db::drop_database(&config.database_url).await?;
        let cloud = Cloud::start(CloudConfig::default()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        config.public_url = format!("http://{}", listener.local_addr()?);
        config.oauth_url = cloud.oauth_url();
        config.client_id = Some(cloud.client_id().to_string());
        config.client_secret = Some(cloud.client_secret().to_string());
        let secret_key = crate::bench_procs::prepare_installation(&mut config).await?;
        let shutdown = CancellationToken::new();
        let state =
            b24flow_ingress::AppState::new(config.clone(), b24flow_worker::activities::codes())?;
        let ingress = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                b24flow_ingress::serve(listener, state, shutdown).await?;
                Ok(())
            }
        });
        let workers = (0..workers.max(1))
            .map(|_| crate::bench_procs::worker_process(&config, &secret_key))
            .collect::<anyhow::Result<_>>()?;
        Ok(Rig {
            config,
            cloud,
            shutdown,
            ingress,
            workers,
            secret_key,
        })
    }

    /// Kills every worker process (SIGKILL: what they hold goes back to the queue).
    pub(crate) async fn kill_workers(&mut self) {
        for w in self.workers.iter_mut() {
            let _ = w.start_kill();
            let _ = w.wait().await;
        }
        self.workers.clear();
    }

    /// Starts one more worker process with extra environment; its process id.
    pub(crate) fn add_worker(&mut self, extra_env: &[(&str, String)]) -> anyhow::Result<u32> {
        let worker =
            crate::bench_procs::worker_process_with(&self.config, &self.secret_key, extra_env)?;
        let pid = worker.id().context("worker process id")?;
        self.workers.push(worker);
        Ok(pid)
    }

    /// Process ids of the running worker processes.
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(Child::id).collect()
    }

    /// A portal with the plan's limit enforced, the app installed and the bucket drained.
    pub(crate) async fn portal(&self, plan: Plan) -> anyhow::Result<Portal> {
        let (rate, burst) = plan.rate_and_burst();
        let portal = self
            .cloud
            .add_portal(PortalConfig {
                rate_burst: burst as u32,
                rate_drain_per_sec: rate,
                ..PortalConfig::default()
            })
            .await?;
        portal
            .install(&format!("{}/b24/install", self.config.public_url))
            .await?;
        portal
            .wait_for_activities(&["user_info"], Duration::from_secs(120))
            .await
            .context("registration")?;
        let pool = db::pool(&self.config.database_url, 1)?;
        let client = pool.get().await?;
        let id = db::portals::find_by_member_id(&client, &portal.member_id())
            .await?
            .context("portal not stored")?
            .id;
        db::portal_limits::set_plan(&client, id, plan).await?;
        // The registration's requests drain away before the measured burst.
        let used = portal.request_count() as f64;
        tokio::time::sleep(Duration::from_secs_f64(used / rate + 1.0)).await;
        Ok(portal)
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.kill_workers().await;
        self.shutdown.cancel();
        let _ = self.ingress.await;
        self.cloud.shutdown().await;
        b24flow_common::amqp::Topology::new(&self.config.amqp_prefix)
            .delete_at(&self.config.amqp_url)
            .await?;
        b24flow_common::db::drop_database(&self.config.database_url).await?;
        Ok(())
    }
}

/// Fires `calls` `user_info` calls (at most `parallel` in flight) and waits for each answer.
/// With `run_as_users` > 0, call `i` runs as the `i % run_as_users`-th user and asks about
/// that user (whom a non-admin may read).
async fn fire_user_info(
    portal: &Portal,
    calls: usize,
    parallel: usize,
    users: &[u64],
    run_as_users: usize,
    answered: Arc<AtomicUsize>,
) -> Vec<Option<EventSend>> {
    stream::iter(0..calls)
        .map(|i| {
            let portal = portal.clone();
            let run_as = (run_as_users > 0).then(|| users[i % run_as_users.min(users.len())]);
            let user = run_as.unwrap_or(users[i % users.len()]);
            let answered = answered.clone();
            async move {
                let call =
                    ActivityCall::new("user_info", json!({ "user_id": format!("user_{user}") }));
                let call = match run_as {
                    Some(id) => call.run_as(id),
                    None => call,
                };
                let fired = portal
                    .fire(call)
                    .await
                    .ok()
                    .filter(|f| f.status.is_success())?;
                let send = portal
                    .wait_event_send(&fired.event_token, ANSWER_WAIT)
                    .await;
                answered.fetch_add(1, Ordering::Relaxed);
                send
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64()
}

fn progress(
    label: String,
    total: usize,
    answered: Arc<AtomicUsize>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => { eprintln!(); return; }
                }
                eprint!(
                    "\r  {label}: answered {:>6}/{total}",
                    answered.load(Ordering::Relaxed)
                );
            }
        }
    });
    (stop, handle)
}

pub async fn portal(config: Config, args: PortalArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &workers in &args.workers {
        for &run_as_users in &args.run_as_users {
            for (plan, batching, calls) in [
                (Plan::Standard, true, args.calls),
                (Plan::Standard, false, args.unbatched_calls),
                (Plan::Enterprise, true, args.calls),
            ] {
                if calls == 0 {
                    continue;
                }
                let run = PortalRun {
                    plan,
                    batching,
                    workers,
                    calls,
                    parallel: args.parallel,
                    run_as_users,
                };
                rows.push(portal_run(&config, run).await?);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!();
    println!("| plan (rate/burst) | batching | workers | run-as users | calls | answered ok | jobs/s after burst | QUERY_LIMIT_EXCEEDED | REST requests/job | p50 to event.send | p99 to event.send | wall |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.3} | {:.1} s | {:.1} s | {:.0} s |",
            r["plan"].as_str().unwrap_or_default(),
            if r["batching"] == true { "on" } else { "off" },
            r["workers"],
            match r["run_as_users"].as_u64() {
                Some(0) | None => "admin".to_string(),
                Some(n) => n.to_string(),
            },
            r["calls"],
            r["answered_ok"],
            r["jobs_per_sec_after_burst"].as_f64().unwrap_or_default(),
            r["query_limit_exceeded"],
            r["requests_per_job"].as_f64().unwrap_or_default(),
            r["p50_secs"].as_f64().unwrap_or_default(),
            r["p99_secs"].as_f64().unwrap_or_default(),
            r["wall_secs"].as_f64().unwrap_or_default(),
        );
    }
    let rate = |plan: &str, batching: bool| {
        rows.iter()
            .filter(|r| {
                r["plan"].as_str().is_some_and(|p| p.starts_with(plan)) && r["batching"] == batching
            })
            .filter_map(|r| r["jobs_per_sec_after_burst"].as_f64())
            .fold(0.0f64, f64::max)
    };
    let (on, off) = (rate("standard", true), rate("standard", false));
    if off > 0.0 {
        println!(
            "\nstandard portal, batching on vs off: {:.1}× the jobs/s",
            on / off
        );
    }
    Ok(())
}

/// One measured run of `bench portal`.
struct PortalRun {
    plan: Plan,
    batching: bool,
    workers: usize,
    calls: usize,
    parallel: usize,
    run_as_users: usize,
}

async fn portal_run(base: &Config, run: PortalRun) -> anyhow::Result<Value> {
    let PortalRun {
        plan,
        batching,
        workers,
        calls,
        parallel,
        run_as_users,
    } = run;
    let (rate, burst) = plan.rate_and_burst();
    let label = format!("{} {rate}/s+{burst}", plan.name());
    let rig = Rig::start(base, "bench_portal", workers, batching).await?;
    let portal = rig.portal(plan).await?;
    let users = portal.seed_demo_directory(100);
    let requests_before = portal.request_count();
    let refused_before = portal.rejected_by_rate_limit();
    let answered = Arc::new(AtomicUsize::new(0));
    let (stop, bar) = progress(
        format!(
            "{label}, batching {}, {workers} worker(s)",
            if batching { "on" } else { "off" }
        ),
        calls,
        answered.clone(),
    );
    let started = Instant::now();
    let sends = fire_user_info(&portal, calls, parallel, &users, run_as_users, answered).await;
    let wall = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = bar.await;
    let requests = portal.request_count() - requests_before;
    let refused = portal.rejected_by_rate_limit() - refused_before;
    let ok: Vec<&EventSend> = sends
        .iter()
        .flatten()
        .filter(|s| s.return_values["error_text"] == "")
        .collect();
    let mut latencies: Vec<Duration> = sends
        .iter()
        .flatten()
        .map(|s| s.at.duration_since(s.fired_at))
        .collect();
    latencies.sort();
    // After the burst: from the answer that ends the first fifth to the last one.
    let mut answered_at: Vec<Instant> = sends.iter().flatten().map(|s| s.at).collect();
    answered_at.sort();
    let sustained = match (answered_at.get(answered_at.len() / 5), answered_at.last()) {
        (Some(from), Some(to)) if to > from => {
            (answered_at.len() - answered_at.len() / 5) as f64
                / to.duration_since(*from).as_secs_f64()
        }
        _ => 0.0,
    };
    let answered_count = latencies.len();
    rig.stop().await?;
    Ok(json!({
        "plan": label,
        "batching": batching,
        "workers": workers,
        "run_as_users": run_as_users,
        "calls": calls,
        "answered": answered_count,
        "answered_ok": ok.len(),
        "jobs_per_sec_after_burst": sustained,
        "query_limit_exceeded": refused,
        "requests": requests,
        "requests_per_job": requests as f64 / answered_count.max(1) as f64,
        "p50_secs": percentile(&latencies, 0.50),
        "p99_secs": percentile(&latencies, 0.99),
        "wall_secs": wall,
    }))
}

/// The cost of the shared bucket: `portal_limit_acquire` on random portals, many at once.
pub async fn limiter(mut config: Config, args: LimiterArgs) -> anyhow::Result<()> {
    config.database_url =
        b24flow_common::db::scratch_database_url(&config.database_url, "bench_limiter")?;
    b24flow_common::db::drop_database(&config.database_url).await?;
    let pool = b24flow_common::db::prepare(&config.database_url, 4).await?;
    let pool_big = db::pool(&config.database_url, args.concurrency.max(1))?;
    {
        let client = pool.get().await?;
        client
            .execute(
                "INSERT INTO portals (member_id, domain, client_endpoint)
                 SELECT 'bench-' || g, 'p' || g || '.example', 'https://p' || g || '.example/rest/'
                   FROM generate_series(1, $1::int) g",
                &[&(args.portals as i32)],
            )
            .await?;
        // Every portal's bucket effectively unlimited, so each statement is a grant.
        client
            .execute(
                "INSERT INTO portal_limits (portal_id, plan, rate_per_sec, burst)
                 SELECT id, 'custom', 1000000, 1000000 FROM portals",
                &[],
            )
            .await?;
    }
    // Side by side in one run: each request its own statement, then this process's
    // concurrent requests gathered into shared statements (what the worker does).
    let requests_pool = pool_big.clone();
    let single = limiter_round(&args, move |portal| {
        let pool = requests_pool.clone();
        async move {
            let client = pool.get().await?;
            db::portal_limits::acquire(&client, portal, 3).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    let grants = db::portal_limits::GatheredGrants::start(pool_big.clone(), 3);
    let gatherer = grants.clone();
    let gathered = limiter_round(&args, move |portal| {
        let grants = gatherer.clone();
        async move {
            grants.acquire(portal).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    drop(grants);
    let rows: Vec<Value> = [
        ("one statement per request", single),
        ("gathered", gathered),
    ]
    .into_iter()
    .map(|(mode, mut took)| {
        took.sort();
        json!({
            "mode": mode,
            "portals": args.portals,
            "requests_in_flight": args.concurrency,
            "grants": took.len(),
            "grants_per_sec": took.len() as f64 / args.seconds,
            "p50_ms": percentile(&took, 0.50) * 1000.0,
            "p99_ms": percentile(&took, 0.99) * 1000.0,
            "needed_at_standard_rate_per_sec": args.portals as f64 * 2.0,
        })
    })
    .collect();
    drop(pool_big);
    drop(pool);
    b24flow_common::db::drop_database(&config.database_url).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("| mode | portals | requests in flight | grants/s | p50 | p99 | needed at 2 req/s per portal |");
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0}/s |",
            row["mode"].as_str().unwrap_or_default(),
            row["portals"],
            row["requests_in_flight"],
            row["grants_per_sec"].as_f64().unwrap_or_default(),
            row["p50_ms"].as_f64().unwrap_or_default(),
            row["p99_ms"].as_f64().unwrap_or_default(),
            row["needed_at_standard_rate_per_sec"]
                .as_f64()
                .unwrap_or_default(),
        );
    }
    Ok(())
}

/// `concurrency` requesters asking for random portals' grants for `seconds`; how long
/// each grant took.
async fn limiter_round<F, Fut>(args: &LimiterArgs, grant: F) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let grant = grant.clone();
            let portals = args.portals as i64;
            tokio::spawn(async move {
                let mut took = Vec::new();
                while Instant::now() < deadline {
                    let portal = rand::random::<u32>() as i64 % portals + 1;
                    let t = Instant::now();
                    grant(portal).await?;
                    took.push(t.elapsed());
                }
                anyhow::Ok(took)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}
