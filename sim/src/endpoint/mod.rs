//! Layer 4 of the simulator: a portal over HTTP on its own loopback listener. `/rest/…`
//! (`rest`, with `batch`), the Disk download links (`download`) and the page that shows the
//! app to a user (`app_frame`). It uses the layers below (`methods`, `portal`, `state`,
//! `php`); only `cloud`, which starts portals, uses it.

mod app_frame;
mod batch;
mod download;
mod fault_response;
mod rest;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::portal::{Portal, PortalConfig};
use crate::state::auth::IssuedTokens;

fn router(portal: Portal) -> Router {
    Router::new()
        .route("/rest/{*method}", any(rest::handle))
        .route("/rest/download.json", get(download::download))
        .route("/app-frame", get(app_frame::app_frame))
        .with_state(portal)
}

/// Serves `portal` on `listener` until the portal's shutdown.
fn serve(portal: &Portal, listener: TcpListener) -> JoinHandle<()> {
    let app = router(portal.clone());
    let stop = portal.inner.shutdown.clone();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(error) = serve.await {
            tracing::warn!(%error, "simulated portal stopped");
        }
    })
}

impl Portal {
    pub(crate) async fn start(
        cfg: PortalConfig,
        oauth_url: String,
        registry: Arc<IssuedTokens>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Portal> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let domain = listener.local_addr()?.to_string();
        let portal = Portal::new(cfg, domain, oauth_url, registry, shutdown)?;
        let handle = serve(&portal, listener);
        *portal.inner.server.lock().unwrap() = Some(handle);
        Ok(portal)
    }

    pub(crate) async fn stop(&self) {
        self.inner.shutdown.cancel();
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

    /// The portal changes its address, as when an admin renames the portal's domain: a new
    /// listener serves it, the OAuth server and later installs name the new address, and
    /// requests to the old one are refused (and counted) from now on. Returns the new domain.
    pub async fn move_to_new_address(&self) -> anyhow::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let new_domain = listener.local_addr()?.to_string();
        serve(self, listener);
        let old = std::mem::replace(&mut *self.inner.domain.lock().unwrap(), new_domain.clone());
        self.inner.old_domains.lock().unwrap().push(old);
        Ok(new_domain)
    }
}
