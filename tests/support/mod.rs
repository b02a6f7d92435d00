//! `spawn_app()`: the ingress and a worker in-process against a fresh database, fresh AMQP
//! names and a simulated portal on loopback.
#![allow(dead_code)]

pub mod browser;
pub mod proxy;
pub mod smtp;

use std::time::Duration;

use b24flow_common::amqp::Topology;
use b24flow_common::crypto::SecretBox;
use b24flow_common::{db, Config};
use b24flow_sim::{ActivityCall, Cloud, CloudConfig, EventSend, FiredCall, Portal, PortalConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestApp {
    pub address: String,
    pub config: Config,
    pub pool: db::Pool,
    pub cloud: Cloud,
    pub portal: Portal,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    worker: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// The worker's own configuration (fault tests route it through proxies).
    pub worker_config: Config,
    pub secret_key: String,
    /// The operator token of `/api`, `/dashboard` and `/metrics`.
    pub operator_token: String,
    slow_retries: bool,
    cleaned: bool,
}

/// Options for [`spawn_app_with`].
#[derive(Clone)]
pub struct AppOptions {
    pub portal: PortalConfig,
    /// Install the app on the portal and wait for the activities to be registered.
    pub install: bool,
    /// Run a worker (tests of the ingress alone turn it off to look at queued jobs).
    pub worker: bool,
    /// Where the ingress and the worker reach RabbitMQ / Postgres (fault tests use proxies).
    pub ingress_amqp_url: Option<String>,
    pub worker_amqp_url: Option<String>,
    pub worker_postgres_port: Option<u16>,
    pub ingress_postgres_port: Option<u16>,
    /// Where the app's OAuth server is, instead of the simulator's (tests of a broken one).
    pub oauth_url: Option<String>,
    /// Retries wait an hour, so a failing job stays `retrying` until an operator acts.
    pub slow_retries: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            // Bitrix24's real limit (2 requests/s, burst 50): the product must live with it.
            portal: PortalConfig::default(),
            install: true,
            worker: true,
            ingress_amqp_url: None,
            worker_amqp_url: None,
            worker_postgres_port: None,
            ingress_postgres_port: None,
            oauth_url: None,
            slow_retries: false,
        }
    }
}

impl AppOptions {
    /// A portal in English (the simulator's are Russian by default), for tests that read
    /// our English wording.
    pub fn english() -> Self {
        let mut options = Self::default();
        options.portal.language = "en".into();
        options
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// [`spawn_app`] with an English portal.
pub async fn spawn_english_app() -> TestApp {
    spawn_app_with(AppOptions::english()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    b24flow_common::telemetry::init_for_tests();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let db_name = format!("b24flow_test_{}", &unique[..16]);
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
    let pool = db::prepare(&database_url, 8)
        .await
        .expect("create and migrate the test database");

    let cloud = Cloud::start(CloudConfig::default())
        .await
        .expect("simulator");
    let portal = cloud
        .add_portal(options.portal.clone())
        .await
        .expect("portal");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let secret_key = SecretBox::generate_key();
    let secrets = SecretBox::from_base64(&secret_key, None).expect("key");
    let mut config = Config::local(secrets);
    config.database_url = database_url;
    config.amqp_url = AMQP_URL.into();
    config.public_url = address.clone();
    config.oauth_url = options
        .oauth_url
        .clone()
        .unwrap_or_else(|| cloud.oauth_url());
    config.client_id = Some(cloud.client_id().to_string());
    config.client_secret = Some(cloud.client_secret().to_string());
    config.amqp_prefix = format!("b24flow-test-{unique}");
    config.worker_concurrency = 16;
    config.sweep_interval = Duration::from_millis(300);
    config.job_lease = Duration::from_secs(5);
    let operator_token = format!("test-operator-{unique}");
    config.operator_token = Some(operator_token.clone());

    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut ingress_config = config.clone();
    if let Some(url) = &options.ingress_amqp_url {
        ingress_config.amqp_url = url.clone();
    }
    if let Some(port) = options.ingress_postgres_port {
        ingress_config.database_url = config
            .database_url
            .replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"));
    }
    let mut worker_config = config.clone();
    if let Some(url) = &options.worker_amqp_url {
        worker_config.amqp_url = url.clone();
    }
    if let Some(port) = options.worker_postgres_port {
        worker_config.database_url = config
            .database_url
            .replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"));
    }
    let state = b24flow_ingress::AppState::new(ingress_config, b24flow_worker::activities::codes())
        .expect("ingress state");
    {
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let _ = b24flow_ingress::serve(listener, state, shutdown).await;
        }));
    }
    // Declared before anything publishes, as `b24flow all` does.
    Topology::new(&config.amqp_prefix)
        .declare_at(AMQP_URL)
        .await
        .expect("topology");
    let mut app = TestApp {
        address,
        config,
        pool,
        cloud,
        portal,
        http: reqwest::Client::new(),
        shutdown,
        tasks,
        worker: None,
        worker_config,
        secret_key,
        operator_token,
        slow_retries: options.slow_retries,
        cleaned: false,
    };
    if options.worker {
        app.start_worker();
    }
    if options.install {
        app.install().await;
    }
    app
}

/// Retries quickly so tests of retry paths stay short.
pub fn fast_retries() -> b24flow_worker::RetryPolicy {
    b24flow_worker::RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(800),
        multiplier: 2.0,
        jitter: 0.2,
    }
}

/// Retries an hour apart: a failing job waits for an operator.
pub fn slow_retries() -> b24flow_worker::RetryPolicy {
    b24flow_worker::RetryPolicy {
        initial: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
        multiplier: 1.0,
        jitter: 0.0,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Installs the app through the install page and, with an in-process worker, waits for
    /// the registration job.
    pub async fn install(&self) {
        self.install_only().await;
        if self.worker.is_some() {
            self.wait_registered().await;
        }
    }

    pub async fn install_only(&self) {
        let status = self
            .portal
            .install(&self.url("/b24/install"))
            .await
            .expect("install request");
        assert!(status.is_success(), "install answered {status}");
    }

    /// Waits until no registration job (install, app page action) is queued or running.
    pub async fn wait_registrations(&self) {
        wait_until(|| async {
            let client = self.pool.get().await.expect("db");
            let open: i64 = client
                .query_one(
                    "SELECT count(*) FROM jobs WHERE kind = 'register' AND state IN ('queued', 'running')",
                    &[],
                )
                .await
                .expect("count")
                .get(0);
            open == 0
        })
        .await;
    }

    pub async fn wait_registered(&self) {
        let codes: Vec<&str> = b24flow_worker::activities::all()
            .iter()
            .map(|a| a.definition().code)
            .collect();
        self.portal
            .wait_for_activities(&codes, WAIT)
            .await
            .expect("activities registered");
    }

    /// Fires an activity call as Bitrix24 would and waits for its `bizproc.event.send`.
    pub async fn run_activity(&self, code: &str, properties: Value) -> EventSend {
        let fired = self.fire(code, properties).await;
        self.portal
            .wait_event_send(&fired.event_token, WAIT)
            .await
            .unwrap_or_else(|| panic!("no bizproc.event.send for {code} within {WAIT:?}"))
    }

    pub async fn fire(&self, code: &str, properties: Value) -> FiredCall {
        let fired = self
            .portal
            .fire(ActivityCall::new(code, properties))
            .await
            .expect("fire activity call");
        assert!(
            fired.status.is_success(),
            "handler answered {}: {}",
            fired.status,
            fired.body
        );
        fired
    }

    /// POSTs a raw form body to a route of the ingress.
    pub async fn post_form(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn job_count(&self) -> i64 {
        let client = self.pool.get().await.expect("db");
        client
            .query_one("SELECT count(*) FROM jobs WHERE kind = 'activity'", &[])
            .await
            .expect("count")
            .get(0)
    }

    pub async fn jobs_by_state(&self) -> Vec<(String, i64)> {
        let client = self.pool.get().await.expect("db");
        db::jobs::count_by_state(&client).await.expect("counts")
    }

    /// Starts an in-process worker (with quick retries unless `slow_retries`).
    pub fn start_worker(&mut self) {
        self.start_worker_with(b24flow_worker::activities::all());
    }

    /// Starts an in-process worker that runs `activities` (a test wraps one to misbehave).
    pub fn start_worker_with(
        &mut self,
        activities: Vec<std::sync::Arc<dyn b24flow_worker::activity::Activity>>,
    ) {
        let config = self.worker_config.clone();
        let policy = if self.slow_retries {
            slow_retries()
        } else {
            fast_retries()
        };
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            let _ = b24flow_worker::run_with_activities(config, policy, activities, token).await;
        });
        self.worker = Some((stop, handle));
    }

    /// Starts `b24flow worker` as a separate process with this app's configuration, so a
    /// test can SIGKILL or SIGTERM it.
    pub fn spawn_worker_process(&self) -> tokio::process::Child {
        let c = &self.worker_config;
        tokio::process::Command::new(env!("CARGO_BIN_EXE_b24flow"))
            .arg("worker")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("B24FLOW_DATABASE_URL", &c.database_url)
            .env("B24FLOW_AMQP_URL", &c.amqp_url)
            .env("B24FLOW_AMQP_PREFIX", &c.amqp_prefix)
            .env("B24FLOW_PUBLIC_URL", &c.public_url)
            .env("B24FLOW_OAUTH_URL", &c.oauth_url)
            .env("B24FLOW_CLIENT_ID", c.client_id.clone().unwrap_or_default())
            .env(
                "B24FLOW_CLIENT_SECRET",
                c.client_secret.clone().unwrap_or_default(),
            )
            .env("B24FLOW_SECRET_KEY", &self.secret_key)
            .env(
                "B24FLOW_WORKER_CONCURRENCY",
                c.worker_concurrency.to_string(),
            )
            .env(
                "B24FLOW_JOB_LEASE_SECS",
                c.job_lease.as_secs_f64().to_string(),
            )
            .env(
                "B24FLOW_SWEEP_INTERVAL_SECS",
                c.sweep_interval.as_secs_f64().to_string(),
            )
            .kill_on_drop(true)
            .spawn()
            .expect("start the b24flow worker process")
    }

    /// Starts `b24flow ingress` as a separate process with this app's configuration and
    /// RabbitMQ at `amqp_url`, so a test can SIGKILL it. Returns it with its address.
    pub async fn spawn_ingress_process(&self, amqp_url: &str) -> (tokio::process::Child, String) {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr").port()
        };
        let c = &self.config;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_b24flow"))
            .arg("ingress")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("B24FLOW_LISTEN", format!("127.0.0.1:{port}"))
            .env("B24FLOW_DATABASE_URL", &c.database_url)
            .env("B24FLOW_AMQP_URL", amqp_url)
            .env("B24FLOW_AMQP_PREFIX", &c.amqp_prefix)
            .env("B24FLOW_PUBLIC_URL", &c.public_url)
            .env("B24FLOW_OAUTH_URL", &c.oauth_url)
            .env("B24FLOW_CLIENT_ID", c.client_id.clone().unwrap_or_default())
            .env(
                "B24FLOW_CLIENT_SECRET",
                c.client_secret.clone().unwrap_or_default(),
            )
            .env("B24FLOW_SECRET_KEY", &self.secret_key)
            .env("B24FLOW_OPERATOR_TOKEN", &self.operator_token)
            .kill_on_drop(true)
            .spawn()
            .expect("start the b24flow ingress process");
        let address = format!("http://127.0.0.1:{port}");
        let health = format!("{address}/healthz");
        wait_until(|| async { self.http.get(&health).send().await.is_ok() }).await;
        (child, address)
    }

    /// Stops the worker as SIGTERM would and waits for it; a worker that outlives its own
    /// shutdown deadline by far fails the test (a hang there would otherwise hold the suite).
    pub async fn stop_worker(&mut self) {
        if let Some((stop, handle)) = self.worker.take() {
            stop.cancel();
            let limit = self.config.shutdown_deadline + Duration::from_secs(30);
            if tokio::time::timeout(limit, handle).await.is_err() {
                panic!("the worker did not stop within {limit:?} of its shutdown");
            }
        }
    }

    /// Stops everything and removes the database and the AMQP names.
    pub async fn cleanup(mut self) {
        self.stop_worker().await;
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        self.cloud.shutdown().await;
        drop_resources(&self.config.database_url, &self.config.amqp_prefix).await;
        self.cleaned = true;
    }
}

async fn drop_resources(database_url: &str, prefix: &str) {
    let _ = Topology::new(prefix).delete_at(AMQP_URL).await;
    let _ = db::drop_database(database_url).await;
}

impl Drop for TestApp {
    /// A test that panicked never reached `cleanup`: remove what it made anyway.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        self.shutdown.cancel();
        if let Some((stop, handle)) = self.worker.take() {
            stop.cancel();
            handle.abort();
        }
        let (database_url, prefix) = (
            self.config.database_url.clone(),
            self.config.amqp_prefix.clone(),
        );
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_resources(&database_url, &prefix));
            }
        })
        .join();
    }
}

impl TestApp {
    /// A request to the operators' API with the operator token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.operator_token)
    }

    /// GETs an `/api` path and returns its JSON, asserting success.
    pub async fn api_get(&self, path: &str) -> Value {
        let response = self
            .api(reqwest::Method::GET, path)
            .send()
            .await
            .expect("api request");
        let status = response.status();
        let body: Value = response.json().await.expect("api json");
        assert!(status.is_success(), "GET {path} answered {status}: {body}");
        body
    }
}

/// A hand-made activity call body with this portal's real `application_token`.
pub fn raw_call(app: &TestApp, code: &str, event_token: &str) -> String {
    format!(
        "workflow_id=wf1&code={code}&event_token={event_token}\
         &document_id%5B0%5D=crm&document_id%5B1%5D=CCrmDocumentDeal&document_id%5B2%5D=DEAL_1\
         &properties%5Buser_id%5D=user_1&use_subscription=Y&timeout_duration=0&ts=1\
         &auth%5Bmember_id%5D={}&auth%5Bapplication_token%5D={}",
        app.portal.member_id(),
        app.portal.application_token()
    )
}

/// Polls `check` until it holds or [`WAIT`] passes.
pub async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within {WAIT:?}");
}

impl TestApp {
    /// The id of the job of a fired call.
    pub async fn job_id_of(&self, event_token: &str) -> uuid::Uuid {
        let client = self.pool.get().await.expect("db");
        client
            .query_one(
                "SELECT id FROM jobs WHERE event_token = $1",
                &[&event_token],
            )
            .await
            .expect("job of the call")
            .get(0)
    }

    /// Pretends an earlier attempt of this call's job completed side effect `key`.
    pub async fn mark_side_effect_done(&self, event_token: &str, key: &str, value: Value) {
        let id = self.job_id_of(event_token).await;
        let client = self.pool.get().await.expect("db");
        let attempt: i32 = client
            .query_one("SELECT attempt FROM jobs WHERE id = $1", &[&id])
            .await
            .expect("job")
            .get(0);
        assert!(
            db::jobs::side_effect_done(&client, id, attempt, key, &value)
                .await
                .expect("marker"),
            "marker refused"
        );
    }

    /// Pretends attempt `attempt` of this call's job began side effect `key` and died.
    pub async fn mark_side_effect_started(&self, event_token: &str, attempt: i32, key: &str) {
        let id = self.job_id_of(event_token).await;
        let client = self.pool.get().await.expect("db");
        client
            .execute(
                "UPDATE jobs SET attempt = $2 WHERE id = $1",
                &[&id, &attempt],
            )
            .await
            .expect("attempt");
        // Written directly: the repository starts side effects only for the attempt that
        // owns the job, and this pretends an attempt that is gone.
        client
            .execute(
                "INSERT INTO job_side_effects (job_id, key, state, attempt)
                 VALUES ($1, $2, 'started', $3)",
                &[&id, &key, &attempt],
            )
            .await
            .expect("marker");
    }
}
