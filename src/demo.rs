//! `b24flow demo`: a simulated portal, the app installed on it, and a few hundred
//! workflows through the real path (ingress → Postgres → RabbitMQ → worker → portal),
//! with live progress and a latency summary. Needs only local Postgres and RabbitMQ.
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use b24flow_common::db;
use b24flow_common::Config;
use b24flow_sim::{ActivityCall, Cloud, CloudConfig, PortalConfig};
use clap::Args;
use futures::stream::{self, StreamExt};
use rand::Rng;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct DemoArgs {
    /// Workflows to fire.
    #[arg(long, default_value_t = 300)]
    workflows: usize,
    /// Calls in flight at once from the simulated portal.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// Run without Bitrix24's REST limit: the portal does not enforce 2 requests/s with a
    /// burst of 50, and b24flow's limiter gives the portal a practically unlimited plan.
    #[arg(long)]
    no_limits: bool,
    /// Keep the ingress, the worker and the simulated portal running after the workflows,
    /// so the operators' dashboard can be explored; Ctrl-C stops.
    #[arg(long)]
    serve: bool,
    /// The ingress address (default: a free port on loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // A database and AMQP names of its own, so the demo never touches real jobs.
    config.database_url = db::scratch_database_url(&config.database_url, "demo")?;
    config.amqp_prefix = format!("{}-demo-{}", config.amqp_prefix, std::process::id());
    db::drop_database(&config.database_url).await?;

    let cloud = Cloud::start(CloudConfig::default()).await?;
    let portal = cloud
        .add_portal(PortalConfig {
            rate_limit_enabled: !args.no_limits,
            ..PortalConfig::default()
        })
        .await?;
    let users = portal.seed_demo_directory(50);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    config.public_url = format!("http://{address}");
    config.listen = address;
    config.oauth_url = cloud.oauth_url();
    config.client_id = Some(cloud.client_id().to_string());
    config.client_secret = Some(cloud.client_secret().to_string());
    config.sweep_interval = Duration::from_secs(1);
    let operator_token = config
        .operator_token
        .get_or_insert_with(b24flow_ingress::operator::generate_token)
        .clone();

    b24flow_common::db::prepare(&config.database_url, 4).await?;
    b24flow_common::amqp::Topology::new(&config.amqp_prefix)
        .declare_at(&config.amqp_url)
        .await?;
    let shutdown = CancellationToken::new();
    let app = tokio::spawn(crate::all::run_roles(
        config.clone(),
        Some(listener),
        shutdown.clone(),
    ));

    eprintln!(
        "b24flow demo: simulated portal at {}, ingress at {}",
        portal.base_url(),
        config.public_url
    );
    print_dashboard(&config.public_url, &operator_token);
    let status = portal
        .install(&format!("{}/b24/install", config.public_url))
        .await?;
    if !status.is_success() {
        bail!("install answered {status}");
    }
    let codes: Vec<&str> = b24flow_worker::activities::all()
        .iter()
        .map(|a| a.definition().code)
        .collect();
    portal
        .wait_for_activities(&codes, Duration::from_secs(30))
        .await
        .context("activities were not registered")?;
    println!(
        "installed: {} activities and robots registered",
        portal.activities().len()
    );
    if args.no_limits {
        set_unlimited_plan(&config, &portal).await?;
        println!("limits: none (--no-limits)");
    } else {
        println!("limits: Bitrix24's real ones, 2 requests/s with a burst of 50 (--no-limits to lift them)");
    }
    println!("one workflow per activity:");
    let tour_failures = crate::demo_tour::run(&portal, &users).await?;
    println!("{} user_info workflows at once:", args.workflows);

    let total = args.workflows;
    let answered = Arc::new(AtomicUsize::new(0));
    let fired = Arc::new(AtomicUsize::new(0));
    let progress = {
        let (answered, fired) = (answered.clone(), fired.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let (f, a) = (
                    fired.load(Ordering::Relaxed),
                    answered.load(Ordering::Relaxed),
                );
                eprint!("\r  fired {f:>5}/{total}   answered {a:>5}/{total}");
                let _ = std::io::stderr().flush();
                if a >= total {
                    eprintln!();
                    return;
                }
            }
        })
    };

    let results: Vec<_> = stream::iter(0..total)
        .map(|i| {
            let portal = portal.clone();
            let (answered, fired) = (answered.clone(), fired.clone());
            // One call in fifty asks for a user that does not exist: errors are answered too.
            let user = if i % 50 == 49 {
                999_999
            } else {
                users[rand::thread_rng().gen_range(0..users.len())]
            };
            async move {
                let call =
                    ActivityCall::new("user_info", json!({ "user_id": format!("user_{user}") }));
                let fired_call = portal.fire(call).await;
                fired.fetch_add(1, Ordering::Relaxed);
                let send = match fired_call {
                    Ok(c) if c.status.is_success() => {
                        portal
                            .wait_event_send(&c.event_token, Duration::from_secs(120))
                            .await
                    }
                    _ => None,
                };
                answered.fetch_add(1, Ordering::Relaxed);
                send
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    let _ = progress.await;

    let mut latencies: Vec<Duration> = Vec::new();
    let (mut ok, mut errors, mut missing) = (0, 0, 0);
    for send in &results {
        match send {
            Some(s) => {
                latencies.push(s.at.duration_since(s.fired_at));
                let error_text = s
                    .return_values
                    .get("error_text")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                if error_text.is_empty() {
                    ok += 1;
                } else {
                    errors += 1;
                }
            }
            None => missing += 1,
        }
    }
    latencies.sort();
    let pct = |p: f64| -> Duration {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        latencies[((latencies.len() as f64 - 1.0) * p).round() as usize]
    };
    println!();
    println!("workflows        {total}");
    println!("completed        {ok}   (user found, all return values sent)");
    println!("failed           {errors}   (expected: one in fifty asks for a missing user)");
    println!("never answered   {missing}");
    println!(
        "latency p50      {:.1} ms",
        pct(0.50).as_secs_f64() * 1000.0
    );
    println!(
        "latency p99      {:.1} ms",
        pct(0.99).as_secs_f64() * 1000.0
    );
    println!(
        "REST requests    {} (portal side, incl. install)",
        portal.request_count()
    );
    println!("wall time        {:.1} s", started.elapsed().as_secs_f64());

    if args.serve {
        println!();
        print_dashboard(&config.public_url, &operator_token);
        println!("serving until Ctrl-C or SIGTERM (the simulated portal keeps answering)");
        crate::all::shutdown_on_signal().cancelled().await;
    }
    shutdown.cancel();
    let _ = app.await;
    cloud.shutdown().await;
    b24flow_common::amqp::Topology::new(&config.amqp_prefix)
        .delete_at(&config.amqp_url)
        .await?;
    if missing > 0 {
        bail!("{missing} workflows were never answered");
    }
    if tour_failures > 0 {
        bail!("{tour_failures} activities of the tour failed");
    }
    Ok(())
}

/// Where the operators' dashboard is and how to log in (the link logs in by itself).
fn print_dashboard(public_url: &str, token: &str) {
    println!("dashboard        {public_url}/dashboard/login#token={token}");
    println!("operator token   {token}   (also for /api and `b24flow jobs --url {public_url}`)");
}

/// Gives the demo portal a plan far above anything the demo sends.
async fn set_unlimited_plan(config: &Config, portal: &b24flow_sim::Portal) -> anyhow::Result<()> {
    use b24flow_common::db::portal_limits;
    let pool = db::pool(&config.database_url, 1)?;
    let client = pool.get().await?;
    let id = db::portals::find_by_member_id(&client, &portal.member_id())
        .await?
        .context("the demo portal is not installed")?
        .id;
    portal_limits::set_plan(
        &client,
        id,
        portal_limits::Plan::Custom {
            rate_per_sec: 10_000.0,
            burst: 100_000,
        },
    )
    .await?;
    Ok(())
}
