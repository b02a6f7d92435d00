//! `b24flow`: one binary, one subcommand per role (SPEC.md "Processes and commands").
mod all;
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
use b24flow_common::{db, telemetry, Config};
use clap::{Parser, Subcommand};

/// Every role's allocator (see Cargo.toml for why).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        Command::All => all::run(config).await,
        Command::Ingress => {
            let shutdown = all::shutdown_on_signal();
            // The ingress refuses codes the worker does not implement; only this binary links both.
            b24flow_ingress::run(config, b24flow_worker::activities::codes(), shutdown).await?;
            Ok(())
        }
        Command::Worker => {
            let shutdown = all::shutdown_on_signal();
            b24flow_worker::run(config, shutdown).await?;
            Ok(())
        }
        Command::Migrate => {
            db::prepare(&config.database_url, 4)
                .await
                .context("preparing the database")?;
            Ok(())
        }
        Command::Demo(args) => demo::run(config, args).await,
        Command::Bench { command } => bench::run(config, command).await,
        Command::Jobs(args) => jobs_cli::run(config, *args).await,
    }
}
