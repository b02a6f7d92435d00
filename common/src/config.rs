//! Configuration from the environment (`../shared/SPEC.md` "Configuration"); every variable
//! has a default that works on a developer machine.
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::crypto::{KeyError, SecretBox};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error(transparent)]
    Key(#[from] KeyError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub amqp_url: String,
    pub listen: SocketAddr,
    /// A second address serving only `/metrics`, without the operator token (keep it private).
    pub metrics_listen: Option<SocketAddr>,
    pub public_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub oauth_url: String,
    pub operator_token: Option<String>,
    pub secrets: SecretBox,
    pub worker_concurrency: usize,
    pub amqp_prefix: String,
    pub extra_ca_file: Option<PathBuf>,
    pub fetch_allow: Vec<String>,
    /// Largest e-mail attachment, and all attachments of one message together, in bytes.
    pub attachment_max_bytes: u64,
    pub attachments_total_max_bytes: u64,
    pub log_format: LogFormat,
    /// How long a running attempt owns its job without a heartbeat.
    pub job_lease: std::time::Duration,
    /// How often the sweeper re-publishes jobs the broker never confirmed and reaps orphans.
    pub sweep_interval: std::time::Duration,
    /// How long in-flight jobs get to finish after SIGTERM before they are handed back.
    pub shutdown_deadline: std::time::Duration,
    /// Commands of different jobs of one portal may share a `batch` request (benchmarks turn
    /// it off to compare).
    pub cross_job_batching: bool,
    /// REST commands kept in a job attempt's call log for operators; the rest are counted.
    pub rest_calls_per_attempt: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("oauth_url", &self.oauth_url)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("amqp_prefix", &self.amqp_prefix)
            .finish_non_exhaustive()
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn bytes(name: &'static str) -> Result<Option<u64>, ConfigError> {
    var(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ConfigError::Invalid {
                    var: name,
                    reason: format!("{v:?} is not a positive number of bytes"),
                })
        })
        .transpose()
}

fn duration_secs(name: &'static str) -> Result<Option<std::time::Duration>, ConfigError> {
    var(name)
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && s.is_finite())
                .map(std::time::Duration::from_secs_f64)
                .ok_or(ConfigError::Invalid {
                    var: name,
                    reason: format!("{v:?} is not a positive number of seconds"),
                })
        })
        .transpose()
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let listen_raw = var("B24FLOW_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_raw.parse().map_err(|e| ConfigError::Invalid {
            var: "B24FLOW_LISTEN",
            reason: format!("{listen_raw:?}: {e}"),
        })?;
        let metrics_listen = var("B24FLOW_METRICS_LISTEN")
            .map(|raw| {
                raw.parse().map_err(|e| ConfigError::Invalid {
                    var: "B24FLOW_METRICS_LISTEN",
                    reason: format!("{raw:?}: {e}"),
                })
            })
            .transpose()?;
        let concurrency_raw = var("B24FLOW_WORKER_CONCURRENCY").unwrap_or_else(|| "64".into());
        let worker_concurrency = concurrency_raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ConfigError::Invalid {
                var: "B24FLOW_WORKER_CONCURRENCY",
                reason: format!("{concurrency_raw:?} is not a number between 1 and 10000"),
            })?;
        let log_format = match var("B24FLOW_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "B24FLOW_LOG_FORMAT",
                    reason: format!("{other:?} is neither text nor json"),
                })
            }
        };
        let secrets = SecretBox::from_env_or_key_file(
            var("B24FLOW_SECRET_KEY"),
            var("B24FLOW_SECRET_KEY_OLD"),
            std::path::Path::new("b24flow.secret.key"),
        )?;
        let defaults = Self::local(secrets);
        Ok(Self {
            database_url: var("B24FLOW_DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/b24flow".into()),
            amqp_url: var("B24FLOW_AMQP_URL")
                .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            listen,
            metrics_listen,
            public_url: var("B24FLOW_PUBLIC_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8080".into())
                .trim_end_matches('/')
                .to_string(),
            client_id: var("B24FLOW_CLIENT_ID"),
            client_secret: var("B24FLOW_CLIENT_SECRET"),
            oauth_url: var("B24FLOW_OAUTH_URL")
                .unwrap_or_else(|| "https://oauth.bitrix.info".into())
                .trim_end_matches('/')
                .to_string(),
            operator_token: var("B24FLOW_OPERATOR_TOKEN"),
            worker_concurrency,
            amqp_prefix: var("B24FLOW_AMQP_PREFIX").unwrap_or_else(|| "b24flow".into()),
            extra_ca_file: var("B24FLOW_EXTRA_CA_FILE").map(PathBuf::from),
            fetch_allow: var("B24FLOW_FETCH_ALLOW")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            attachment_max_bytes: bytes("B24FLOW_ATTACHMENT_MAX_BYTES")?
                .unwrap_or(defaults.attachment_max_bytes),
            attachments_total_max_bytes: bytes("B24FLOW_ATTACHMENTS_TOTAL_MAX_BYTES")?
                .unwrap_or(defaults.attachments_total_max_bytes),
            log_format,
            // Internal knobs for fault tests and benchmarks; not part of the contract.
            job_lease: duration_secs("B24FLOW_JOB_LEASE_SECS")?.unwrap_or(defaults.job_lease),
            sweep_interval: duration_secs("B24FLOW_SWEEP_INTERVAL_SECS")?
                .unwrap_or(defaults.sweep_interval),
            shutdown_deadline: duration_secs("B24FLOW_SHUTDOWN_DEADLINE_SECS")?
                .unwrap_or(defaults.shutdown_deadline),
            cross_job_batching: var("B24FLOW_CROSS_JOB_BATCHING").as_deref() != Some("off"),
            ..defaults
        })
    }

    /// The defaults of a developer machine, without reading the environment (tests, demo).
    pub fn local(secrets: SecretBox) -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/b24flow".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            public_url: "http://127.0.0.1:8080".into(),
            client_id: None,
            client_secret: None,
            oauth_url: "https://oauth.bitrix.info".into(),
            operator_token: None,
            secrets,
            worker_concurrency: 64,
            amqp_prefix: "b24flow".into(),
            extra_ca_file: None,
            fetch_allow: Vec::new(),
            attachment_max_bytes: 25 * 1024 * 1024,
            attachments_total_max_bytes: 25 * 1024 * 1024,
            log_format: LogFormat::Text,
            job_lease: std::time::Duration::from_secs(60),
            sweep_interval: std::time::Duration::from_secs(5),
            shutdown_deadline: std::time::Duration::from_secs(25),
            cross_job_batching: true,
            rest_calls_per_attempt: crate::bitrix::call_log::DEFAULT_CALLS_PER_ATTEMPT,
        }
    }

    /// The URL Bitrix24 posts activity calls to (`HANDLER` of `bizproc.activity.add`).
    pub fn activity_handler_url(&self) -> String {
        format!("{}/b24/activity", self.public_url)
    }
}
