//! `b24flow all`: ingress and worker in one process, stopping together on SIGTERM / Ctrl-C.
//! The demo and the benchmarks run the same two roles on a listener of their own.
use anyhow::Context;
use b24flow_common::amqp::Topology;
use b24flow_common::{db, Config};
use tokio_util::sync::CancellationToken;

/// Migrates, declares the AMQP topology, then runs both roles until a signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    db::prepare(&config.database_url, 4)
        .await
        .context("preparing the database")?;
    Topology::new(&config.amqp_prefix)
        .declare_at(&config.amqp_url)
        .await
        .context("declaring the AMQP topology")?;
    run_roles(config, None, shutdown_on_signal()).await
}

/// Runs both roles; `listener` when the caller already bound one (demo, benchmarks).
pub async fn run_roles(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let worker = tokio::spawn(b24flow_worker::run(config.clone(), shutdown.clone()));
    let ingress_result = match listener {
        Some(listener) => {
            let state =
                b24flow_ingress::AppState::new(config, b24flow_worker::activities::codes())?;
            b24flow_ingress::serve(listener, state, shutdown.clone()).await
        }
        None => {
            b24flow_ingress::run(
                config,
                b24flow_worker::activities::codes(),
                shutdown.clone(),
            )
            .await
        }
    };
    // Whatever stopped the ingress stops the worker too.
    shutdown.cancel();
    let worker_result = worker.await.context("worker task")?;
    ingress_result?;
    worker_result?;
    Ok(())
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
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
