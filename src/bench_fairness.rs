//! `b24flow bench fairness`: portal A floods jobs, portal B sends one call a second; B's
//! time to `event.send`, and where that time goes (until the ingress stored the job, until a
//! worker claimed it, until it finished: REST calls and the report), read from the job rows
//! and their events (one machine, so the portal's and Postgres's clocks agree).
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use b24flow_common::db::{self, portal_limits::Plan};
use b24flow_common::Config;
use b24flow_sim::{ActivityCall, Portal};
use clap::Args;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::bench_portal::{percentile, Rig, ANSWER_WAIT};
use crate::proc_stats::{io_full_stall_secs, MachineCpu, ProcessStats};

#[derive(Args)]
pub struct FairnessArgs {
    /// Jobs portal A fires at once.
    #[arg(long, default_value_t = 10_000)]
    flood: usize,
    /// Calls portal B makes, one a second, while A's flood is queued.
    #[arg(long, default_value_t = 30)]
    quiet_calls: usize,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Calls of portal A in flight at once while firing.
    #[arg(long, default_value_t = 400)]
    parallel: usize,
    #[arg(long)]
    json: bool,
}

/// One of B's calls as the portal saw it.
struct QuietCall {
    event_token: String,
    /// When the portal sent the call (unix seconds).
    sent_at: f64,
    /// Until the ingress answered the call.
    ingress: Duration,
    /// Until `bizproc.event.send` arrived.
    total: Duration,
}

pub async fn fairness(config: Config, args: FairnessArgs) -> anyhow::Result<()> {
    let rig = Rig::start(&config, "bench_fairness", args.workers, true).await?;
    let flooding = rig.portal(Plan::Standard).await?;
    let quiet = rig.portal(Plan::Standard).await?;
    let users_a = flooding.seed_demo_directory(100);
    let users_b = quiet.seed_demo_directory(10);
    let fired_a = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let (cpu_before, stall_before) = (MachineCpu::read(), io_full_stall_secs());
    let flood = tokio::spawn(fire_flood(
        flooding.clone(),
        users_a,
        args.flood,
        args.parallel,
        fired_a.clone(),
        started,
    ));
    let mut quiet_calls = Vec::new();
    for i in 0..args.quiet_calls {
        let portal = quiet.clone();
        let user = users_b[i % users_b.len()];
        quiet_calls.push(tokio::spawn(async move {
            let call = ActivityCall::new("user_info", json!({ "user_id": format!("user_{user}") }));
            let asked = Instant::now();
            let sent_at = unix_now();
            let fired = portal.fire(call).await.ok()?;
            let ingress = asked.elapsed();
            let send = portal
                .wait_event_send(&fired.event_token, ANSWER_WAIT)
                .await?;
            Some(QuietCall {
                event_token: fired.event_token,
                sent_at,
                ingress,
                total: send.at.duration_since(send.fired_at),
            })
        }));
        eprint!(
            "\r  quiet portal call {}/{}  flood fired {:>6}/{}",
            i + 1,
            args.quiet_calls,
            fired_a.load(Ordering::Relaxed),
            args.flood
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!();
    let mut calls = Vec::new();
    for c in quiet_calls {
        if let Some(call) = c.await? {
            calls.push(call);
        }
    }
    let flood_fired_in = flood.await?;
    let wall = started.elapsed().as_secs_f64();
    let machine_busy = MachineCpu::read().busy_share_since(&cpu_before);
    // Share of the run in which every runnable task waited for the disk (fsyncs of
    // Postgres commits and RabbitMQ's quorum queue sit on B's path).
    let io_stalled = match (stall_before, io_full_stall_secs()) {
        (Some(a), Some(b)) => Some((b - a) / wall),
        _ => None,
    };
    let worker_peak_rss_mib = rig
        .worker_pids()
        .into_iter()
        .filter_map(ProcessStats::read)
        .map(|s| s.peak_rss_mib)
        .fold(0.0, f64::max);
    let flood_answered = flooding.event_sends().len();
    let stages = stages_of(&rig.config, &quiet, &calls).await?;
    let mut totals: Vec<Duration> = calls.iter().map(|c| c.total).collect();
    totals.sort();
    let row = json!({
        "flood_jobs": args.flood,
        "flood_fired_secs": flood_fired_in.as_secs_f64(),
        "flood_answered_meanwhile": flood_answered,
        "workers": args.workers,
        "quiet_calls": args.quiet_calls,
        "quiet_answered": calls.len(),
        "quiet_p50_secs": percentile(&totals, 0.50),
        "quiet_p99_secs": percentile(&totals, 0.99),
        "quiet_max_secs": totals.last().map(Duration::as_secs_f64).unwrap_or_default(),
        "query_limit_exceeded": flooding.rejected_by_rate_limit() + quiet.rejected_by_rate_limit(),
        "quiet_stages": stages,
        "worker_peak_rss_mib": worker_peak_rss_mib,
        "machine_cpu_busy_share": machine_busy,
        "machine_io_full_stall_share": io_stalled,
    });
    rig.stop().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&row)?);
        return Ok(());
    }
    print_table(&row);
    Ok(())
}

/// Fires portal A's flood as fast as the ingress takes it; answers are not awaited here.
async fn fire_flood(
    portal: Portal,
    users: Vec<u64>,
    flood: usize,
    parallel: usize,
    fired: Arc<AtomicUsize>,
    started: Instant,
) -> Duration {
    stream::iter(0..flood)
        .map(|i| {
            let portal = portal.clone();
            let user = users[i % users.len()];
            let fired = fired.clone();
            async move {
                let call =
                    ActivityCall::new("user_info", json!({ "user_id": format!("user_{user}") }));
                let ok = portal.fire(call).await.is_ok_and(|f| f.status.is_success());
                fired.fetch_add(usize::from(ok), Ordering::Relaxed);
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// p50/p99 per stage of B's jobs: the ingress's answer as the portal saw it, sent → row
/// stored, stored → claimed by a worker (publish, queue, admission, claim), claimed →
/// finished (REST calls and the report).
async fn stages_of(config: &Config, quiet: &Portal, calls: &[QuietCall]) -> anyhow::Result<Value> {
    let pool = db::pool(&config.database_url, 1)?;
    let client = pool.get().await?;
    let portal_id = db::portals::find_by_member_id(&client, &quiet.member_id())
        .await?
        .context("quiet portal not stored")?
        .id;
    let rows = client
        .query(
            "SELECT j.event_token, extract(epoch FROM j.created_at)::float8,
                    extract(epoch FROM (SELECT min(e.at) FROM job_events e
                                         WHERE e.job_id = j.id AND e.to_state = 'running'))::float8,
                    extract(epoch FROM j.finished_at)::float8,
                    j.attempt
               FROM jobs j WHERE j.portal_id = $1 AND j.kind = 'activity'",
            &[&portal_id],
        )
        .await?;
    type Times = (f64, Option<f64>, Option<f64>, i32);
    let by_token: HashMap<String, Times> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect();
    let span =
        |from: f64, to: Option<f64>| to.map(|to| Duration::from_secs_f64((to - from).max(0.0)));
    let (mut ingress, mut stored, mut claimed, mut finished) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut attempts_over_one = 0;
    for c in calls {
        ingress.push(c.ingress);
        let Some(&(created, running, done, attempt)) = by_token.get(&c.event_token) else {
            continue;
        };
        stored.extend(span(c.sent_at, Some(created)));
        claimed.extend(span(created, running));
        finished.extend(running.and_then(|r| span(r, done)));
        attempts_over_one += usize::from(attempt > 1);
    }
    let stat = |mut v: Vec<Duration>| {
        v.sort();
        json!({ "p50_secs": percentile(&v, 0.5), "p99_secs": percentile(&v, 0.99) })
    };
    Ok(json!({
        "ingress_answer": stat(ingress),
        "sent_to_stored": stat(stored),
        "stored_to_claimed": stat(claimed),
        "claimed_to_finished": stat(finished),
        "jobs_with_more_than_one_attempt": attempts_over_one,
    }))
}

fn print_table(row: &Value) {
    let secs = |v: &Value| v.as_f64().unwrap_or_default();
    println!();
    println!("| flood (portal A) | fired in | A answered meanwhile | workers | B calls (1/s) | B answered | B p50 | B p99 | B max | QUERY_LIMIT_EXCEEDED |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} s | {} | {} | {} | {} | {:.3} s | {:.3} s | {:.3} s | {} |",
        row["flood_jobs"],
        secs(&row["flood_fired_secs"]),
        row["flood_answered_meanwhile"],
        row["workers"],
        row["quiet_calls"],
        row["quiet_answered"],
        secs(&row["quiet_p50_secs"]),
        secs(&row["quiet_p99_secs"]),
        secs(&row["quiet_max_secs"]),
        row["query_limit_exceeded"],
    );
    println!();
    println!("Where portal B's time goes (p50 / p99):");
    println!();
    println!("| ingress answers the call | sent → row stored | stored → claimed | claimed → finished | worker peak RSS | machine CPU busy | machine I/O-stalled |");
    println!("|---|---|---|---|---|---|---|");
    let stage = |name: &str| {
        let s = &row["quiet_stages"][name];
        format!(
            "{:.3} s / {:.3} s",
            secs(&s["p50_secs"]),
            secs(&s["p99_secs"])
        )
    };
    println!(
        "| {} | {} | {} | {} | {:.0} MiB | {:.0} % | {:.0} % |",
        stage("ingress_answer"),
        stage("sent_to_stored"),
        stage("stored_to_claimed"),
        stage("claimed_to_finished"),
        secs(&row["worker_peak_rss_mib"]),
        secs(&row["machine_cpu_busy_share"]) * 100.0,
        secs(&row["machine_io_full_stall_share"]) * 100.0,
    );
}
