//! `b24flow bench pipeline`: how many jobs one worker process gets through, and what it
//! costs in CPU and memory, for each concurrency (jobs running at once). The calls are
//! queued first with no worker running, on portals without a rate limit, so the number is
//! the worker's own, not the ingress's or Bitrix24's. The README's sizing comes from here.
use std::time::{Duration, Instant};

use b24flow_common::db::portal_limits::Plan;
use b24flow_common::Config;
use b24flow_sim::{ActivityCall, Portal};
use clap::Args;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::bench_portal::Rig;
use crate::proc_stats::{io_full_stall_secs, MachineCpu, ProcessStats};

#[derive(Args)]
pub struct PipelineArgs {
    /// `user_info` calls queued before the worker starts.
    #[arg(long, default_value_t = 3000)]
    calls: usize,
    /// Portals the calls are spread over (each runs at most its share of a process).
    #[arg(long, default_value_t = 4)]
    portals: usize,
    /// Worker concurrency (`B24FLOW_WORKER_CONCURRENCY`), one run per value.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    concurrency: Vec<usize>,
    /// Calls in flight from the portals at once while queueing.
    #[arg(long, default_value_t = 400)]
    parallel: usize,
    #[arg(long)]
    json: bool,
}

/// No limit worth the name: the worker, not the bucket, is measured.
pub(crate) const UNLIMITED: Plan = Plan::Custom {
    rate_per_sec: 100_000.0,
    burst: 1_000_000,
};

pub async fn pipeline(config: Config, args: PipelineArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &concurrency in &args.concurrency {
        rows.push(pipeline_run(&config, &args, concurrency).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!();
    println!("| concurrency | DB pool | calls | answered | jobs/s | worker CPU (cores) | machine CPU busy | worker peak RSS | machine I/O-stalled |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.0} % | {:.0} MiB | {:.0} % |",
            r["concurrency"],
            r["db_pool"],
            r["calls"],
            r["answered"],
            r["jobs_per_sec"].as_f64().unwrap_or_default(),
            r["worker_cores"].as_f64().unwrap_or_default(),
            r["machine_busy_share"].as_f64().unwrap_or_default() * 100.0,
            r["worker_peak_rss_mib"].as_f64().unwrap_or_default(),
            r["machine_io_full_stall_share"]
                .as_f64()
                .unwrap_or_default()
                * 100.0,
        );
    }
    Ok(())
}

async fn pipeline_run(
    base: &Config,
    args: &PipelineArgs,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let mut rig = Rig::start(base, "bench_pipeline", 1, true).await?;
    let mut portals = Vec::new();
    for _ in 0..args.portals.max(1) {
        let portal = rig.portal(UNLIMITED).await?;
        let users = portal.seed_demo_directory(20);
        portals.push((portal, users));
    }
    // Registered; now the calls queue up with nobody to take them.
    rig.kill_workers().await;
    let queued = queue_calls(&portals, args.calls, args.parallel).await;
    eprintln!("  concurrency {concurrency}: {queued} calls queued; starting the worker");
    let (machine_before, stall_before) = (MachineCpu::read(), io_full_stall_secs());
    let started = Instant::now();
    let pid = rig.add_worker(&[("B24FLOW_WORKER_CONCURRENCY", concurrency.to_string())])?;
    let deadline = started + Duration::from_secs(600);
    let mut peak_rss = 0.0f64;
    let mut last_stats = ProcessStats::default();
    let answered = loop {
        if let Some(stats) = ProcessStats::read(pid) {
            peak_rss = peak_rss.max(stats.peak_rss_mib);
            last_stats = stats;
        }
        let answered: usize = portals.iter().map(|(p, _)| p.event_send_count()).sum();
        if answered >= queued || Instant::now() > deadline {
            break answered;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    let machine = MachineCpu::read().busy_share_since(&machine_before);
    let io_stalled = match (stall_before, io_full_stall_secs()) {
        (Some(a), Some(b)) => Some((b - a) / wall),
        _ => None,
    };
    rig.stop().await?;
    Ok(json!({
        "concurrency": concurrency,
        "db_pool": b24flow_worker::db_pool_size(concurrency),
        "calls": queued,
        "answered": answered,
        "wall_secs": wall,
        "jobs_per_sec": answered as f64 / wall,
        "worker_cores": last_stats.cpu_secs / wall,
        "worker_cpu_ms_per_job": last_stats.cpu_secs * 1000.0 / answered.max(1) as f64,
        "machine_busy_share": machine,
        "worker_peak_rss_mib": peak_rss,
        "machine_io_full_stall_share": io_stalled,
    }))
}

/// Fires the calls round robin over the portals; how many the ingress accepted.
async fn queue_calls(portals: &[(Portal, Vec<u64>)], calls: usize, parallel: usize) -> usize {
    stream::iter(0..calls)
        .map(|i| {
            let (portal, users) = &portals[i % portals.len()];
            let portal = portal.clone();
            let user = users[(i / portals.len()) % users.len()];
            async move {
                let call =
                    ActivityCall::new("user_info", json!({ "user_id": format!("user_{user}") }));
                usize::from(portal.fire(call).await.is_ok_and(|f| f.status.is_success()))
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect::<Vec<usize>>()
        .await
        .into_iter()
        .sum()
}
