//! The processes benchmarks run: `b24flow all`, `ingress` or `worker` started from this
//! binary with a scratch installation's environment, and their peak memory and CPU.
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use b24flow_common::Config;
use tokio::process::{Child, Command};

use crate::proc_stats::ProcessStats;

/// Makes `config` a ready scratch installation: a new secrets key (returned, for the
/// processes started with it), the database migrated, the queues declared.
pub(crate) async fn prepare_installation(config: &mut Config) -> anyhow::Result<String> {
    let secret_key = b24flow_common::crypto::SecretBox::generate_key();
    config.secrets = b24flow_common::crypto::SecretBox::from_base64(&secret_key, None)?;
    b24flow_common::db::prepare(&config.database_url, 4).await?;
    b24flow_common::amqp::Topology::new(&config.amqp_prefix)
        .declare_at(&config.amqp_url)
        .await?;
    Ok(secret_key)
}

/// A role of the `b24flow` binary, run as its own process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    All,
    Ingress,
    Worker,
}

impl Role {
    pub(crate) fn command(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingress => "ingress",
            Role::Worker => "worker",
        }
    }
}

pub(crate) fn worker_process(config: &Config, secret_key: &str) -> anyhow::Result<Child> {
    worker_process_with(config, secret_key, &[])
}

/// A worker process with extra environment (e.g. `B24FLOW_WORKER_CONCURRENCY`).
pub(crate) fn worker_process_with(
    config: &Config,
    secret_key: &str,
    extra_env: &[(&str, String)],
) -> anyhow::Result<Child> {
    role_process(Role::Worker, config, secret_key, extra_env)
}

/// `b24flow <role>` on `config`'s database, AMQP names, portal credentials and listen
/// address; its logs kept to errors and its stdout dropped, so the bench's own output is
/// all there is.
pub(crate) fn role_process(
    role: Role,
    config: &Config,
    secret_key: &str,
    extra_env: &[(&str, String)],
) -> anyhow::Result<Child> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg(role.command())
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "error")
        .env(
            "B24FLOW_CROSS_JOB_BATCHING",
            if config.cross_job_batching {
                "on"
            } else {
                "off"
            },
        )
        .env("B24FLOW_DATABASE_URL", &config.database_url)
        .env("B24FLOW_AMQP_URL", &config.amqp_url)
        .env("B24FLOW_AMQP_PREFIX", &config.amqp_prefix)
        .env("B24FLOW_PUBLIC_URL", &config.public_url)
        .env("B24FLOW_OAUTH_URL", &config.oauth_url)
        .env(
            "B24FLOW_CLIENT_ID",
            config.client_id.clone().unwrap_or_default(),
        )
        .env(
            "B24FLOW_CLIENT_SECRET",
            config.client_secret.clone().unwrap_or_default(),
        )
        .env("B24FLOW_SECRET_KEY", secret_key)
        .env(
            "B24FLOW_JOB_LEASE_SECS",
            config.job_lease.as_secs_f64().to_string(),
        )
        .env(
            "B24FLOW_SWEEP_INTERVAL_SECS",
            config.sweep_interval.as_secs_f64().to_string(),
        );
    if role != Role::Worker {
        command.env("B24FLOW_LISTEN", config.listen.to_string());
    }
    if let Some(token) = &config.operator_token {
        command.env("B24FLOW_OPERATOR_TOKEN", token);
    }
    command
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting a `b24flow {}` process", role.command()))
}

/// A loopback address nobody listens on, for a child process to bind. Another program
/// could take it in between; on a bench machine that does not happen.
pub(crate) fn free_loopback_address() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Waits until `{base_url}/healthz` answers 2xx, or fails after `timeout`.
pub(crate) async fn wait_healthy(base_url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    let url = format!("{base_url}/healthz");
    loop {
        if let Ok(response) = client.get(&url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{url} did not answer within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Named processes whose peak memory and CPU a run reports. The peak (VmHWM) is gone with
/// the process, so it is read while they run.
pub(crate) struct Watched {
    processes: Vec<WatchedProcess>,
}

struct WatchedProcess {
    name: String,
    pid: u32,
    last: ProcessStats,
    /// CPU time at [`Watched::mark`], so a setup phase is not counted.
    cpu_at_mark: f64,
    /// Peak memory before the mark (the setup phase's); after it the peak starts afresh.
    setup_peak_rss_mib: f64,
}

impl Watched {
    pub(crate) fn new(processes: impl IntoIterator<Item = (String, u32)>) -> Self {
        Self {
            processes: processes
                .into_iter()
                .map(|(name, pid)| WatchedProcess {
                    name,
                    pid,
                    last: ProcessStats::default(),
                    cpu_at_mark: 0.0,
                    setup_peak_rss_mib: 0.0,
                })
                .collect(),
        }
    }

    /// Takes a reading of every process still there.
    pub(crate) fn sample(&mut self) {
        for p in self.processes.iter_mut() {
            if let Some(now) = ProcessStats::read(p.pid) {
                p.last = ProcessStats {
                    peak_rss_mib: now.peak_rss_mib.max(p.last.peak_rss_mib),
                    ..now
                };
            }
        }
    }

    /// From now on CPU time and peak memory count; the peak so far is kept apart as the
    /// setup's.
    pub(crate) fn mark(&mut self) {
        self.sample();
        for p in self.processes.iter_mut() {
            p.cpu_at_mark = p.last.cpu_secs;
            p.setup_peak_rss_mib = p.last.peak_rss_mib;
            if crate::proc_stats::reset_peak_rss(p.pid) {
                p.last.peak_rss_mib = p.last.rss_mib;
            } else {
                eprintln!(
                    "  (the peak memory of {} cannot be reset: its peak includes the setup)",
                    p.name
                );
            }
        }
    }

    /// Each process's name, peak memory and CPU time since the mark.
    pub(crate) fn readings(&self) -> impl Iterator<Item = (&str, ProcessStats)> {
        self.processes.iter().map(|p| {
            (
                p.name.as_str(),
                ProcessStats {
                    cpu_secs: p.last.cpu_secs - p.cpu_at_mark,
                    ..p.last
                },
            )
        })
    }

    /// Each process's name and its peak memory before the mark.
    pub(crate) fn setup_peaks(&self) -> impl Iterator<Item = (&str, f64)> {
        self.processes
            .iter()
            .map(|p| (p.name.as_str(), p.setup_peak_rss_mib))
    }
}
