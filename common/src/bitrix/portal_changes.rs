//! Every process hears at once when a portal is reinstalled or uninstalled: a trigger on
//! `portals` (migrations/V2) sends `NOTIFY b24flow_portal_changed, '<id>'`, and this listener
//! drops that portal's cached session, so its next job reads the new endpoint and tokens.
//! While the listener is not connected, [`Bitrix`] caches nothing and reads every portal fresh.
//! The ingress's portal cache follows the same notices through [`PortalChangeSink`].
//! It also hears operators' plan changes (`db::portal_limits::set_plan`) and wakes requests
//! waiting for the old plan's rate.
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::client::Bitrix;
use crate::db::portal_limits::LIMITS_CHANGED_CHANNEL;

const CHANNEL: &str = "b24flow_portal_changed";
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A cache of portal rows that must hear every change: it may trust what it holds only
/// while `watching` is true, and drops entries as told.
pub trait PortalChangeSink: Send + Sync {
    fn set_watching(&self, watching: bool);
    fn forget_all(&self);
    fn forget_portal(&self, portal_id: i64);
    /// An operator changed a portal's limiter plan.
    fn plans_changed(&self) {}
}

impl PortalChangeSink for Bitrix {
    fn set_watching(&self, watching: bool) {
        Bitrix::set_watching(self, watching)
    }
    fn forget_all(&self) {
        Bitrix::forget_all(self)
    }
    fn forget_portal(&self, portal_id: i64) {
        Bitrix::forget_portal(self, portal_id)
    }
    fn plans_changed(&self) {
        Bitrix::plans_changed(self)
    }
}

impl Bitrix {
    /// Listens for portal changes until `shutdown` resolves.
    pub async fn follow_portal_changes(
        &self,
        database_url: String,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        follow_portal_changes(self, database_url, shutdown).await
    }
}

/// Tells `sink` about every portal change until `shutdown` resolves.
pub async fn follow_portal_changes(
    sink: &impl PortalChangeSink,
    database_url: String,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::select! {
        _ = shutdown => {}
        _ = listen_forever(sink, &database_url) => {}
    }
    sink.set_watching(false);
    sink.forget_all();
}

async fn listen_forever(sink: &impl PortalChangeSink, database_url: &str) {
    loop {
        if let Err(error) = listen_once(sink, database_url).await {
            tracing::warn!(%error, "portal change listener disconnected; reading portals fresh until it is back");
        }
        sink.set_watching(false);
        sink.forget_all();
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn listen_once(
    sink: &impl PortalChangeSink,
    database_url: &str,
) -> Result<(), tokio_postgres::Error> {
    let connect = tokio_postgres::connect(database_url, NoTls);
    let Ok(connected) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await else {
        tracing::warn!("portal change listener: connecting to Postgres timed out");
        return Ok(());
    };
    let (client, mut connection) = connected?;
    let (notices, mut received) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let notice = (n.channel().to_string(), n.payload().to_string());
                    if notices.send(notice).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "portal change listener connection failed");
                    return;
                }
            }
        }
    });
    let listening = client
        .batch_execute(&format!(
            "LISTEN {CHANNEL}; LISTEN {LIMITS_CHANGED_CHANNEL}"
        ))
        .await;
    if let Err(error) = listening {
        driver.abort();
        return Err(error);
    }
    // Whatever was cached before we listened may already be stale.
    sink.forget_all();
    sink.set_watching(true);
    tracing::debug!("listening for portal changes");
    while let Some((channel, payload)) = received.recv().await {
        if channel == LIMITS_CHANGED_CHANNEL {
            tracing::debug!(portal.id = %payload, "portal plan changed; waiting requests ask again");
            sink.plans_changed();
            continue;
        }
        match payload.parse::<i64>() {
            Ok(portal_id) => {
                tracing::debug!(
                    portal.id = portal_id,
                    "portal changed; dropping its session"
                );
                sink.forget_portal(portal_id);
            }
            Err(_) => tracing::warn!(%payload, "unreadable portal change notice"),
        }
    }
    sink.set_watching(false);
    driver.abort();
    drop(client);
    Ok(())
}
