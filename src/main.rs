//! `b24flow`: one binary, one subcommand per role (SPEC.md "Processes and commands").
mod bench;
mod bench_answers;
mod bench_e2e;
mod bench_fairness;
mod bench_ingress;
mod bench_pipeline;
mod bench_portal;
mod bench_procs;
mod demo;
mod demo_tour;
mod jobs_cli;
mod proc_stats;

use anyhow::Context;
use b24flow_common::amqp::{self, Topology};
use b24flow_common::{db, telemetry, Config};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "b24flow",
    version,
    about = "Bitrix24 workflow activities backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, declare the AMQP topology, run the ingress and the workers in one process.
    All,
    /// Run only the HTTP ingress.
    Ingress,
    /// Run only a worker.
    Worker,
    /// Apply the database migrations and exit.
    Migrate,
    /// Start a simulated portal, install the app and run workflows through the whole path.
    Demo(demo::DemoArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Operators' command line (a client of the ingress's /api).
    Jobs(Box<jobs_cli::JobsArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env().context("configuration")?;
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Bench { .. });
    telemetry::init_with_default(config.log_format, if quiet { "warn" } else { "info" });
    match cli.command {
        Command::All => run_all(config).await,
        Command::Ingress => {
            let shutdown = shutdown_on_signal();
            b24flow_ingress::run(config, shutdown).await?;
            Ok(())
        }
        Command::Worker => {
            let shutdown = shutdown_on_signal();
            b24flow_worker::run(config, shutdown).await?;
            Ok(())
        }
        Command::Migrate => {
            prepare_database(&config).await?;
            Ok(())
        }
        Command::Demo(args) => demo::run(config, args).await,
        Command::Bench { command } => bench::run(config, command).await,
        Command::Jobs(args) => jobs_cli::run(config, *args).await,
    }
}

async fn prepare_database(config: &Config) -> anyhow::Result<db::Pool> {
    db::ensure_database(&config.database_url)
        .await
        .context("creating the database")?;
    let pool = db::pool(&config.database_url, 4)?;
    db::migrate(&pool).await.context("migrating")?;
    Ok(pool)
}

async fn declare_topology(config: &Config) -> anyhow::Result<()> {
    let conn = amqp::connect(&config.amqp_url, "b24flow-setup")
        .await
        .context("connecting to RabbitMQ")?;
    let channel = conn.create_channel().await?;
    Topology::new(&config.amqp_prefix)
        .declare(&channel)
        .await
        .context("declaring the AMQP topology")?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// Removes the exchanges and queues of a scratch prefix (demo, benchmarks).
async fn delete_topology(config: &Config) -> anyhow::Result<()> {
    let conn = amqp::connect(&config.amqp_url, "b24flow-cleanup").await?;
    let channel = conn.create_channel().await?;
    Topology::new(&config.amqp_prefix).delete(&channel).await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// Ingress and worker in one process, stopping together on SIGTERM / Ctrl-C.
pub async fn run_all(config: Config) -> anyhow::Result<()> {
    prepare_database(&config).await?;
    declare_topology(&config).await?;
    let shutdown = shutdown_on_signal();
    run_roles(config, None, shutdown).await
}

/// Runs both roles; `listener` when the caller already bound one (demo, tests).
pub async fn run_roles(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let worker = tokio::spawn(b24flow_worker::run(config.clone(), shutdown.clone()));
    let ingress_result = match listener {
        Some(listener) => {
            let state = b24flow_ingress::AppState::new(config)?;
            b24flow_ingress::serve(listener, state, shutdown.clone()).await
        }
        None => b24flow_ingress::run(config, shutdown.clone()).await,
    };
    // Whatever stopped the ingress stops the worker too.
    shutdown.cancel();
    let worker_result = worker.await.context("worker task")?;
    ingress_result?;
    worker_result?;
    Ok(())
}

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler installs");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    token
}
