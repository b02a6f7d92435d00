//! The Bitrix24 cloud around the portals: the OAuth server (`oauth.bitrix.info`,
//! protocol.md §2) on its own loopback listener, and the portals it knows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::portal::{Portal, PortalConfig};
use crate::state::auth::{IssuedTokens, SCOPE};

/// The app's OAuth credentials as the cloud knows them.
#[derive(Clone, Debug)]
pub struct CloudConfig {
    pub client_id: String,
    pub client_secret: String,
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            client_id: "app.b24flow.test".into(),
            client_secret: "sim-client-secret".into(),
        }
    }
}

/// The simulated cloud; cheap to clone.
#[derive(Clone)]
pub struct Cloud {
    inner: Arc<CloudInner>,
}

struct CloudInner {
    cfg: CloudConfig,
    oauth_url: String,
    portals: Mutex<Vec<Portal>>,
    registry: Arc<IssuedTokens>,
    shutdown: CancellationToken,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Cloud {
    /// Starts the OAuth server on `127.0.0.1:0`.
    pub async fn start(cfg: CloudConfig) -> anyhow::Result<Cloud> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let oauth_url = format!("http://{}", listener.local_addr()?);
        let cloud = Cloud {
            inner: Arc::new(CloudInner {
                cfg,
                oauth_url,
                portals: Mutex::new(Vec::new()),
                registry: Arc::new(IssuedTokens::default()),
                shutdown: CancellationToken::new(),
                server: Mutex::new(None),
            }),
        };
        let app = Router::new()
            .route("/oauth/token/", any(token))
            .route("/oauth/token", any(token))
            .with_state(cloud.clone());
        let stop = cloud.inner.shutdown.clone();
        let handle = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "simulated OAuth server stopped");
            }
        });
        *cloud.inner.server.lock().unwrap() = Some(handle);
        Ok(cloud)
    }

    /// `http://127.0.0.1:PORT`; the refresh endpoint is `{oauth_url}/oauth/token/`.
    pub fn oauth_url(&self) -> String {
        self.inner.oauth_url.clone()
    }
    pub fn client_id(&self) -> &str {
        &self.inner.cfg.client_id
    }
    pub fn client_secret(&self) -> &str {
        &self.inner.cfg.client_secret
    }

    /// Starts a portal on its own `127.0.0.1:0` listener.
    pub async fn add_portal(&self, cfg: PortalConfig) -> anyhow::Result<Portal> {
        let portal = Portal::start(
            cfg,
            self.inner.oauth_url.clone(),
            self.inner.registry.clone(),
            self.inner.shutdown.child_token(),
        )
        .await?;
        self.inner.portals.lock().unwrap().push(portal.clone());
        Ok(portal)
    }

    /// Stops the OAuth server and every portal.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let portals: Vec<Portal> = self.inner.portals.lock().unwrap().clone();
        for portal in portals {
            portal.stop().await;
        }
        let handle = self.inner.server.lock().unwrap().take();
        if let Some(mut handle) = handle {
            if tokio::time::timeout(Duration::from_secs(5), &mut handle)
                .await
                .is_err()
            {
                handle.abort();
            }
        }
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `GET /oauth/token/?grant_type=refresh_token&client_id&client_secret&refresh_token`
/// (a POST form is accepted too).
async fn token(State(cloud): State<Cloud>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let mut p: HashMap<String, String> = HashMap::new();
    let query = query.unwrap_or_default();
    for source in [query.as_bytes(), &body[..]] {
        for (k, v) in url::form_urlencoded::parse(source) {
            p.insert(k.into_owned(), v.into_owned());
        }
    }
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "refresh_token" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Unsupported grant_type",
        );
    }
    let cfg = &cloud.inner.cfg;
    if get("client_id") != cfg.client_id || get("client_secret") != cfg.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client credentials",
        );
    }
    let refresh_token = get("refresh_token");
    let portals: Vec<Portal> = cloud.inner.portals.lock().unwrap().clone();
    for portal in portals {
        match portal.oauth_refresh(refresh_token) {
            RefreshOutcome::NotMine => continue,
            RefreshOutcome::AppNotInstalled => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Application not installed",
                )
            }
            RefreshOutcome::Refreshed(body) => {
                return (StatusCode::OK, axum::Json(body)).into_response()
            }
        }
    }
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "Invalid refresh token",
    )
}

pub(crate) enum RefreshOutcome {
    NotMine,
    AppNotInstalled,
    Refreshed(Value),
}

impl Portal {
    /// Spends a refresh token of this portal and answers the §2 JSON.
    pub(crate) fn oauth_refresh(&self, refresh_token: &str) -> RefreshOutcome {
        let ttl = self.inner.cfg.access_token_ttl;
        let registry = self.inner.registry.clone();
        let pair = {
            let mut st = self.lock();
            if !st.tokens.knows_refresh(refresh_token) {
                return RefreshOutcome::NotMine;
            }
            if !st.app_installed {
                return RefreshOutcome::AppNotInstalled;
            }
            match st.tokens.refresh(refresh_token, ttl, &registry) {
                Some(pair) => pair,
                None => return RefreshOutcome::NotMine,
            }
        };
        self.inner
            .refresh_count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RefreshOutcome::Refreshed(json!({
            "access_token": pair.access_token,
            "expires": pair.expires,
            "expires_in": pair.expires_in,
            "scope": SCOPE,
            "domain": "oauth.bitrix.info",
            "server_endpoint": format!("{}/rest/", self.inner.oauth_url),
            "status": "P",
            "client_endpoint": self.rest_url(),
            "member_id": self.inner.member_id,
            "user_id": pair.user_id,
            "refresh_token": pair.refresh_token,
        }))
    }
}
