use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::batch::{Batch, BatchResult, MAX_COMMANDS};
use super::body::{read_capped, BodyError, MAX_REST_BODY};
use super::call_log::{self, Asked, CallLog};
use super::dispatch::{Answer, Dispatcher, Pending, Work};
use super::error::B24Error;
use super::identity::{Identity, UserToken};
use super::limiter::Limiter;
use super::oauth::{InstallProof, OAuthApp};
use super::slots;
use crate::crypto::SecretBox;
use crate::db::{self, Pool};
use crate::error_kind::ErrorKind;
use crate::metrics;
use crate::secrets::RunAs;

/// Bitrix24 cloud answers within 60 s or not at all (protocol.md §6.1).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(65);

/// The client for all portals; cheap to clone.
#[derive(Clone)]
pub struct Bitrix {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    db: Pool,
    secrets: SecretBox,
    oauth: OAuthApp,
    sessions: DashMap<i64, Arc<PortalSession>>,
    /// True while this process hears about reinstalls and uninstalls (see
    /// `portal_changes`); without that, nothing about a portal may be cached.
    watching: AtomicBool,
    /// Grows whenever cached sessions are dropped, so a session read from the database before
    /// a drop is not cached after it.
    epoch: AtomicU64,
    limiter: Limiter,
    /// Commands of different jobs may share one `batch` request.
    cross_job_batching: AtomicBool,
}

/// Per-portal state shared by every job of that portal in this process.
struct PortalSession {
    portal_id: i64,
    /// The install this session belongs to; tokens of another install are never used with it.
    install_generation: i64,
    endpoint: String,
    language: Option<String>,
    token: RwLock<Option<CachedToken>>,
    /// One refresh at a time per portal in this process; the row lock covers other processes.
    refresh_gate: Mutex<()>,
    /// This process's queue of requests waiting for the portal's limiter.
    dispatcher: Dispatcher,
    /// Portal reads an activity may reuse for a short while (see [`PortalClient::memo_get`]).
    memo: DashMap<String, (Value, std::time::Instant)>,
}

#[derive(Clone)]
struct CachedToken {
    access_token: String,
    version: i64,
}

/// A successful REST answer (protocol.md §6.2).
#[derive(Clone, Debug)]
pub struct RestResponse {
    pub result: Value,
    pub total: Option<u64>,
    pub next: Option<u64>,
}

impl Bitrix {
    /// The client every role and test builds: the configuration's secret key and OAuth app.
    pub fn from_config(db: Pool, config: &crate::Config) -> Self {
        Self::new(db, config.secrets.clone(), OAuthApp::from_config(config))
    }

    pub fn new(db: Pool, secrets: SecretBox, oauth: OAuthApp) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("b24flow/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .expect("a reqwest client with static settings builds");
        Self {
            inner: Arc::new(Inner {
                http,
                db: db.clone(),
                secrets,
                oauth,
                sessions: DashMap::new(),
                watching: AtomicBool::new(false),
                epoch: AtomicU64::new(0),
                limiter: Limiter::new(db),
                cross_job_batching: AtomicBool::new(true),
            }),
        }
    }

    /// The client for one portal. Its endpoint is the one stored by the last confirmed
    /// install, never one taken from a request.
    pub async fn portal(&self, portal_id: i64) -> Result<PortalClient, B24Error> {
        let watching = self.inner.watching.load(Ordering::Acquire);
        if watching {
            if let Some(session) = self.inner.sessions.get(&portal_id) {
                return Ok(PortalClient {
                    inner: self.inner.clone(),
                    session: session.clone(),
                    identity: Identity::Installer,
                });
            }
        }
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let client = self.inner.db.get().await.map_err(db::DbError::from)?;
        let portal = db::portals::get(&client, portal_id)
            .await?
            .filter(|p| p.is_installed())
            .ok_or(B24Error::NotInstalled(portal_id))?;
        let session = Arc::new(PortalSession {
            portal_id,
            install_generation: portal.install_generation,
            endpoint: portal.client_endpoint.clone(),
            language: portal.language.clone(),
            token: RwLock::new(None),
            refresh_gate: Mutex::new(()),
            dispatcher: Dispatcher::default(),
            memo: DashMap::new(),
        });
        // Cache only when no reinstall notice can have slipped in since the read above.
        let session = if watching && epoch == self.inner.epoch.load(Ordering::Acquire) {
            self.inner
                .sessions
                .entry(portal_id)
                .or_insert(session)
                .clone()
        } else {
            session
        };
        Ok(PortalClient {
            inner: self.inner.clone(),
            session,
            identity: Identity::Installer,
        })
    }

    /// Whether commands of different jobs may share one `batch` (on by default; benchmarks
    /// turn it off to compare).
    pub fn set_cross_job_batching(&self, on: bool) {
        self.inner.cross_job_batching.store(on, Ordering::Relaxed);
    }

    /// Forgets what this process cached about a portal (after a reinstall or uninstall).
    pub fn forget_portal(&self, portal_id: i64) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.sessions.remove(&portal_id);
    }

    pub(crate) fn forget_all(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.sessions.clear();
    }

    pub(crate) fn plans_changed(&self) {
        self.inner.limiter.plans_changed();
    }

    pub(crate) fn set_watching(&self, watching: bool) {
        self.inner.watching.store(watching, Ordering::Release);
    }

    /// A batch on the portal's stored endpoint with a token a browser gave us (the app
    /// page's `AUTH_ID`): it proves who the user is. Never refreshed, never cached.
    pub async fn batch_as_user(
        &self,
        portal_id: i64,
        access_token: &str,
        batch: &Batch,
    ) -> Result<BatchResult, B24Error> {
        let portal = self.portal(portal_id).await?;
        // It counts against the portal's rate like any other request.
        self.inner.limiter.acquire(portal_id).await?;
        let (response, _) = send(
            &self.inner.http,
            &portal.session.endpoint,
            access_token,
            "batch",
            batch.to_params(),
        )
        .await?;
        Ok(BatchResult::from_result(response.result))
    }

    /// Asks the OAuth server, not the caller, whose `refresh_token` this is (protocol.md §2):
    /// the one proof of an install that a forger who knows a `member_id` cannot fake.
    /// Spends the offered refresh token; the proof carries the new pair.
    pub async fn confirm_install(&self, refresh_token: &str) -> Result<InstallProof, B24Error> {
        self.inner
            .oauth
            .refresh(&self.inner.http, refresh_token)
            .await?
            .try_into()
    }
}

/// Every REST request of one portal passes through here, under one identity: the
/// installer's stored token ([`Bitrix::portal`]) or a job's run-as user ([`PortalClient::as_user`]).
#[derive(Clone)]
pub struct PortalClient {
    inner: Arc<Inner>,
    session: Arc<PortalSession>,
    identity: Identity,
}

impl PortalClient {
    /// The same portal under the token of the user job `job_id`'s workflow runs as. When
    /// that token expires it is refreshed with the job's refresh token and the rotated pair
    /// is stored back into the job's secrets (see [`crate::secrets`]).
    pub fn as_user(&self, job_id: uuid::Uuid, run_as: RunAs) -> PortalClient {
        PortalClient {
            inner: self.inner.clone(),
            session: self.session.clone(),
            identity: Identity::User(Arc::new(UserToken::new(job_id, run_as))),
        }
    }

    /// The same portal under the installer's token (app-level calls).
    pub fn as_installer(&self) -> PortalClient {
        PortalClient {
            inner: self.inner.clone(),
            session: self.session.clone(),
            identity: Identity::Installer,
        }
    }

    /// True when requests carry the installer's token.
    pub fn is_installer(&self) -> bool {
        matches!(self.identity, Identity::Installer)
    }

    pub fn portal_id(&self) -> i64 {
        self.session.portal_id
    }

    /// The portal's REST endpoint as stored at install (e.g. `https://x.bitrix24.de/rest/`);
    /// its host is where the portal's own Disk downloads come from.
    pub fn endpoint(&self) -> &str {
        &self.session.endpoint
    }

    /// The portal's language as its install said (`ru`, `en`, …).
    pub fn language(&self) -> Option<&str> {
        self.session.language.as_deref()
    }

    /// Calls one method. The call waits for the portal's shared limiter and may leave in
    /// one `batch` with other jobs' calls; its answer or error is its own either way.
    pub async fn call(&self, method: &str, params: Value) -> Result<RestResponse, B24Error> {
        let work = Work::Call {
            method: method.to_string(),
            params,
        };
        match self.submit(work).await? {
            Answer::Call(response) => Ok(response),
            Answer::Batch(_) => Err(B24Error::BadResponse {
                method: method.to_string(),
                status: 0,
            }),
        }
    }

    /// Runs a batch (≤ 50 commands) as one HTTP request, or, without `halt`, as part of one
    /// shared with other jobs' commands; its own commands keep their order either way.
    pub async fn batch(&self, batch: &Batch) -> Result<BatchResult, B24Error> {
        if batch.len() > MAX_COMMANDS {
            return Err(B24Error::Api {
                method: "batch".into(),
                status: 400,
                code: "ERROR_BATCH_LENGTH_EXCEEDED".into(),
                description: format!("{} commands, at most {MAX_COMMANDS}", batch.len()),
            });
        }
        match self.submit(Work::Batch(batch.clone())).await? {
            Answer::Batch(result) => Ok(result.with_methods(batch)),
            Answer::Call(_) => Err(B24Error::BadResponse {
                method: "batch".into(),
                status: 0,
            }),
        }
    }

    async fn submit(&self, work: Work) -> Result<Answer, B24Error> {
        let merge = self.inner.cross_job_batching.load(Ordering::Relaxed);
        let asked = call_log::current().map(|log| asked(log, &work));
        let (mut pending, answer) = Pending::new(work, merge, self.identity.clone());
        if let Some(asked) = &asked {
            pending.note_sends_in(asked.note.clone());
        }
        self.session.dispatcher.submit(self, pending);
        let answer = slots::while_waiting(answer).await.unwrap_or_else(|_| {
            Err(B24Error::Transport {
                method: "batch".into(),
                message: "the request was dropped before it was answered".into(),
            })
        });
        match (asked, &answer) {
            (None, _) => {}
            (Some(asked), Ok(Answer::Batch(result))) => asked.answered_batch(Ok(&**result)),
            (Some(asked), Err(e)) if asked.is_batch() => asked.answered_batch(Err(e)),
            (Some(asked), answer) => asked.answered_call(answer),
        }
        answer
    }

    /// A value read from this portal within `ttl` under this client's identity, if this
    /// process has one (what one user may read is not shown to another).
    pub fn memo_get(&self, key: &str, ttl: Duration) -> Option<Value> {
        self.session
            .memo
            .get(&self.memo_key(key))
            .filter(|e| e.1.elapsed() < ttl)
            .map(|e| e.0.clone())
    }

    /// Keeps a value read from this portal for [`PortalClient::memo_get`]; forgotten with the
    /// portal's session (reinstall).
    pub fn memo_put(&self, key: &str, value: Value) {
        self.session
            .memo
            .insert(self.memo_key(key), (value, std::time::Instant::now()));
    }

    fn memo_key(&self, key: &str) -> String {
        format!("{}/{key}", self.identity.key())
    }

    pub(crate) fn dispatcher(&self) -> &Dispatcher {
        &self.session.dispatcher
    }

    pub(crate) fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// One HTTP request now (the limiter already granted it) under `identity`, with the
    /// answer's `time`. An auth error refreshes the token once and repeats the request.
    pub(crate) async fn send_authed(
        &self,
        identity: &Identity,
        method: &str,
        params: Value,
    ) -> Result<(RestResponse, Option<Value>), B24Error> {
        if let Identity::User(user) = identity {
            return self.send_as_user(user, method, params).await;
        }
        let token = self.current_token().await?;
        match send(
            &self.inner.http,
            &self.session.endpoint,
            &token.access_token,
            method,
            params.clone(),
        )
        .await
        {
            Err(e) if e.kind() == ErrorKind::Auth => {
                tracing::info!(portal.id = self.session.portal_id, %method, code = ?e.code(), "token refused; refreshing");
                let fresh = self.refresh(token.version).await?;
                self.take_another_request().await?;
                send(
                    &self.inner.http,
                    &self.session.endpoint,
                    &fresh.access_token,
                    method,
                    params,
                )
                .await
            }
            other => other,
        }
    }

    /// The request sent again after a refresh is one more request to the portal's bucket:
    /// sent unmetered, many jobs refreshing at once overrun it and the portal answers
    /// `QUERY_LIMIT_EXCEEDED`, which empties our view of the bucket for everyone.
    async fn take_another_request(&self) -> Result<(), B24Error> {
        self.limiter()
            .acquire(self.session.portal_id)
            .await
            .map(|_| ())
            .map_err(B24Error::Db)
    }

    /// [`PortalClient::send_authed`] with a job's run-as token: refreshed first when it is
    /// known to have expired, and once more when the portal refuses it.
    async fn send_as_user(
        &self,
        user: &Arc<UserToken>,
        method: &str,
        params: Value,
    ) -> Result<(RestResponse, Option<Value>), B24Error> {
        let mut token = user.current().await;
        if token.expired(super::dispatch::unix_now()) && user.can_refresh().await {
            token = self.refresh_user(user, token.version).await?;
        }
        let endpoint = &self.session.endpoint;
        match send(
            &self.inner.http,
            endpoint,
            &token.access_token,
            method,
            params.clone(),
        )
        .await
        {
            Err(e) if e.kind() == ErrorKind::Auth => {
                tracing::info!(portal.id = self.session.portal_id, job.id = %user.job_id(), user.id = ?user.user_id(), %method, code = ?e.code(), "the run-as user's token was refused; refreshing");
                let fresh = self.refresh_user(user, token.version).await?;
                self.take_another_request().await?;
                send(
                    &self.inner.http,
                    endpoint,
                    &fresh.access_token,
                    method,
                    params,
                )
                .await
            }
            other => other,
        }
    }

    /// Refreshes a job's run-as token with the job's refresh token, unless someone already
    /// replaced the version that failed. The rotated pair is stored (encrypted) before it is
    /// used: the old refresh token is spent once the OAuth server answered.
    async fn refresh_user(
        &self,
        user: &Arc<UserToken>,
        failed_version: u64,
    ) -> Result<super::identity::CachedUserToken, B24Error> {
        let _gate = user.refresh_gate().lock().await;
        let cached = user.current().await;
        if cached.version > failed_version {
            return Ok(cached);
        }
        let gone = || B24Error::Refresh {
            message: "the run-as user's token is no longer stored with the job".into(),
            kind: ErrorKind::Permanent,
        };
        let mut client = self.inner.db.get().await.map_err(db::DbError::from)?;
        // The row lock spans the OAuth call: another attempt of the same job (a worker that
        // lost its lease) must not spend the same single-use refresh token.
        let tx = client.transaction().await.map_err(db::DbError::from)?;
        let sealed = db::jobs::lock_secret(&tx, user.job_id())
            .await?
            .ok_or_else(gone)?;
        let stored = crate::secrets::run_as(Some(&sealed), &self.inner.secrets)
            .map_err(db::DbError::from)?
            .ok_or_else(gone)?;
        if stored.access_token != cached.access_token {
            // Rotated meanwhile by another attempt: use what it stored.
            tx.commit().await.map_err(db::DbError::from)?;
            return Ok(user.replace(stored).await);
        }
        let Some(refresh_token) = stored.refresh_token.clone() else {
            return Err(B24Error::Refresh {
                message:
                    "the run-as user's token expired and the activity call carried no refresh token"
                        .into(),
                kind: ErrorKind::Permanent,
            });
        };
        let refreshed = match self
            .inner
            .oauth
            .refresh(&self.inner.http, &refresh_token)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                metrics::OAUTH_REFRESHES.with_label_values(&["error"]).inc();
                tracing::warn!(portal.id = self.session.portal_id, job.id = %user.job_id(), user.id = ?stored.user_id, error = %e, "the run-as user's token could not be refreshed");
                return Err(e);
            }
        };
        // The OAuth server, not the call, says whose token this is. Requests are batched by
        // user, so a token must belong to the user its call named.
        if let (Some(claimed), Some(actual)) = (stored.user_id, refreshed.user_id_number()) {
            if claimed != actual {
                drop(tx);
                return Err(B24Error::Refresh {
                    message: format!("the run-as token belongs to user {actual}, not to user {claimed} as the activity call said"),
                    kind: ErrorKind::Permanent,
                });
            }
        }
        let rotated = RunAs {
            user_id: stored.user_id.or(refreshed.user_id_number()),
            access_token: refreshed.access_token.clone(),
            refresh_token: Some(refreshed.refresh_token.clone()),
            expires_at: Some(super::dispatch::unix_now() as i64 + refreshed.expires_in_secs()),
        };
        let resealed = crate::secrets::with_run_as(&sealed, &rotated, &self.inner.secrets)
            .map_err(db::DbError::from)?;
        db::jobs::replace_secret(&tx, user.job_id(), &resealed).await?;
        tx.commit().await.map_err(db::DbError::from)?;
        metrics::OAUTH_REFRESHES.with_label_values(&["ok"]).inc();
        tracing::info!(portal.id = self.session.portal_id, job.id = %user.job_id(), user.id = ?rotated.user_id, "run-as token refreshed");
        Ok(user.replace(rotated).await)
    }

    fn check_generation(&self, stored: i64) -> Result<(), B24Error> {
        if stored == self.session.install_generation {
            return Ok(());
        }
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner
            .sessions
            .remove_if(&self.session.portal_id, |_, s| {
                Arc::ptr_eq(s, &self.session)
            });
        tracing::info!(
            portal.id = self.session.portal_id,
            "portal reinstalled meanwhile; dropping its old session"
        );
        Err(B24Error::PortalChanged(self.session.portal_id))
    }

    async fn current_token(&self) -> Result<CachedToken, B24Error> {
        if let Some(token) = self.session.token.read().await.clone() {
            return Ok(token);
        }
        let client = self.inner.db.get().await.map_err(db::DbError::from)?;
        let tokens = db::portals::load_tokens(&client, &self.inner.secrets, self.session.portal_id)
            .await?
            .ok_or(B24Error::NotInstalled(self.session.portal_id))?;
        self.check_generation(tokens.install_generation)?;
        let token = CachedToken {
            access_token: tokens.access_token,
            version: tokens.version,
        };
        *self.session.token.write().await = Some(token.clone());
        Ok(token)
    }

    /// Refreshes the portal's tokens unless someone already replaced the version that failed.
    async fn refresh(&self, failed_version: i64) -> Result<CachedToken, B24Error> {
        let _gate = self.session.refresh_gate.lock().await;
        if let Some(token) = self.session.token.read().await.clone() {
            if token.version > failed_version {
                return Ok(token);
            }
        }
        let mut client = self.inner.db.get().await.map_err(db::DbError::from)?;
        // The row lock spans the OAuth call on purpose: the refresh token is single-use, so
        // two processes refreshing at once would leave one holding a spent token.
        let tx = client.transaction().await.map_err(db::DbError::from)?;
        let stored = db::portals::lock_tokens(&tx, &self.inner.secrets, self.session.portal_id)
            .await?
            .ok_or(B24Error::NotInstalled(self.session.portal_id))?;
        // Never send a token of the new install to the endpoint of the old one.
        self.check_generation(stored.install_generation)?;
        if stored.version > failed_version {
            tx.commit().await.map_err(db::DbError::from)?;
            let token = CachedToken {
                access_token: stored.access_token,
                version: stored.version,
            };
            *self.session.token.write().await = Some(token.clone());
            return Ok(token);
        }
        let refreshed = match self
            .inner
            .oauth
            .refresh(&self.inner.http, &stored.refresh_token)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                metrics::OAUTH_REFRESHES.with_label_values(&["error"]).inc();
                drop(tx);
                if e.kind() == ErrorKind::Permanent {
                    tracing::error!(portal.id = self.session.portal_id, error = %e, "token refresh refused; the portal must reinstall the app");
                }
                return Err(e);
            }
        };
        let version = db::portals::save_tokens(
            &tx,
            &self.inner.secrets,
            self.session.portal_id,
            &refreshed.access_token,
            &refreshed.refresh_token,
            refreshed.expires_in_secs(),
        )
        .await?;
        tx.commit().await.map_err(db::DbError::from)?;
        metrics::OAUTH_REFRESHES.with_label_values(&["ok"]).inc();
        tracing::info!(
            portal.id = self.session.portal_id,
            version,
            "token refreshed"
        );
        let token = CachedToken {
            access_token: refreshed.access_token,
            version,
        };
        *self.session.token.write().await = Some(token.clone());
        Ok(token)
    }
}

/// What the attempt's log needs to know of a group before it leaves: its commands' keys and methods.
fn asked(log: CallLog, work: &Work) -> Asked {
    match work {
        Work::Call { method, .. } => Asked::new(log, vec![(String::new(), method.clone())], false),
        Work::Batch(b) => Asked::new(
            log,
            b.commands()
                .iter()
                .map(|c| (c.key.clone(), c.method.clone()))
                .collect(),
            true,
        ),
    }
}

/// One HTTP request: JSON body, token in `auth` (protocol.md §6.1).
async fn send(
    http: &reqwest::Client,
    endpoint: &str,
    access_token: &str,
    method: &str,
    params: Value,
) -> Result<(RestResponse, Option<Value>), B24Error> {
    let mut body = match params {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            let mut m = Map::new();
            m.insert("params".into(), other);
            m
        }
    };
    body.insert("auth".into(), Value::String(access_token.to_string()));
    let url = format!("{}/{method}", endpoint.trim_end_matches('/'));
    let outcome = |o: &str| metrics::REST_REQUESTS.with_label_values(&[method, o]).inc();
    let response = match http.post(url).json(&body).send().await {
        Ok(r) => r,
        Err(e) => {
            outcome("transport_error");
            return Err(B24Error::transport(method, e));
        }
    };
    let status = response.status().as_u16();
    if status == 429 || status == 503 {
        metrics::REST_THROTTLED
            .with_label_values(&[&status.to_string()])
            .inc();
    }
    let bytes = match read_capped(response, MAX_REST_BODY).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(limit)) => {
            outcome("too_large");
            return Err(B24Error::TooLarge {
                method: method.to_string(),
                limit,
            });
        }
        Err(BodyError::Transport(e)) => {
            outcome("transport_error");
            return Err(B24Error::transport(method, e));
        }
    };
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    match json {
        Some(Value::Object(mut map)) if status < 300 && map.contains_key("result") => {
            outcome("ok");
            Ok((
                RestResponse {
                    result: map.remove("result").unwrap_or(Value::Null),
                    total: map.get("total").and_then(Value::as_u64),
                    next: map.get("next").and_then(Value::as_u64),
                },
                map.remove("time"),
            ))
        }
        Some(Value::Object(map)) if map.contains_key("error") => {
            outcome("error");
            let code = match map.get("error") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            Err(B24Error::Api {
                method: method.to_string(),
                status,
                code,
                description: map
                    .get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
        }
        _ => {
            outcome("bad_response");
            Err(B24Error::BadResponse {
                method: method.to_string(),
                status,
            })
        }
    }
}
