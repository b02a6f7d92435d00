//! Layer 2 of the simulator: one portal as tests, the driver and the methods hold it. The
//! [`Portal`] handle owns its identity (domain, `member_id`, event-token key), the core
//! state and the areas of `state` (freed with the last handle), and offers the test
//! and demo hooks (`*_hooks.rs`, one file per area). It imports only `state`;
//! serving the portal over HTTP is the `endpoint` module, the driver side `driver`.

mod crm_hooks;
mod disk_hooks;
mod invoice_hooks;
mod telephony_calendar_hooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::auth::{random_hex, IssuedTokens};
use crate::state::crm::Crm;
use crate::state::disk::Disk;
use crate::state::invoicing::Invoicing;
use crate::state::telephony_calendar::TelephonyCalendar;
use crate::state::{Areas, EventSend, Faults, RegisteredActivity, State, TokenPair};

/// How a portal behaves.
#[derive(Clone, Debug)]
pub struct PortalConfig {
    /// Leaky bucket size X (protocol.md §7.1).
    pub rate_burst: u32,
    /// Leaky bucket drain Y per second.
    pub rate_drain_per_sec: f64,
    pub rate_limit_enabled: bool,
    pub access_token_ttl: Duration,
    pub faults: Faults,
    /// The install form carries `APPLICATION_TOKEN` (real captures sometimes lack it, §1.1).
    pub send_application_token_on_install: bool,
    /// The installing admin, created as a user with the portal.
    pub admin_user_id: u64,
    /// The portal's language (`LANG` of the install page, `data[LANGUAGE_ID]` of events).
    pub language: String,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            rate_burst: 50,
            rate_drain_per_sec: 2.0,
            rate_limit_enabled: true,
            access_token_ttl: Duration::from_secs(3600),
            faults: Faults::default(),
            send_application_token_on_install: true,
            admin_user_id: 1,
            language: "ru".into(),
        }
    }
}

pub(crate) struct PortalInner {
    pub cfg: PortalConfig,
    /// `127.0.0.1:PORT`; changes when the portal moves (`move_to_new_address`).
    pub domain: Mutex<String>,
    /// Addresses the portal no longer answers on, and how many requests still reached them.
    pub old_domains: Mutex<Vec<String>>,
    pub requests_to_old_domains: AtomicU64,
    pub member_id: String,
    pub oauth_url: String,
    signing_key: Vec<u8>,
    pub registry: Arc<IssuedTokens>,
    pub state: Mutex<State>,
    pub areas: Areas,
    /// Woken on every state change (activities, event sends).
    pub changed: Notify,
    pub request_count: AtomicU64,
    pub rejected_by_rate_limit: AtomicU64,
    pub refresh_count: AtomicU64,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A simulated portal; cheap to clone.
#[derive(Clone)]
pub struct Portal {
    pub(crate) inner: Arc<PortalInner>,
}

impl Portal {
    /// A portal answering at `domain`; the `endpoint` module binds the listener and serves it.
    pub(crate) fn new(
        cfg: PortalConfig,
        domain: String,
        oauth_url: String,
        registry: Arc<IssuedTokens>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Portal> {
        let state = State::new(
            cfg.admin_user_id,
            cfg.faults.clone(),
            cfg.rate_limit_enabled,
        );
        let http = reqwest::Client::builder()
            .no_proxy()
            .user_agent("Bitrix24 Webhook Engine")
            .timeout(Duration::from_secs(60))
            // Shorter than any server's keep-alive limit (an application's server may close
            // an idle connection after a few seconds): a pooled connection the server is
            // closing just as a call reuses it fails that call before it arrives
            // ("connection closed before message completed", seen in `bench e2e`).
            .pool_idle_timeout(Duration::from_secs(4))
            .build()?;
        Ok(Portal {
            inner: Arc::new(PortalInner {
                cfg,
                domain: Mutex::new(domain),
                old_domains: Mutex::new(Vec::new()),
                requests_to_old_domains: AtomicU64::new(0),
                member_id: random_hex(32),
                oauth_url,
                signing_key: random_hex(64).into_bytes(),
                registry,
                state: Mutex::new(state),
                areas: Areas::new(),
                changed: Notify::new(),
                request_count: AtomicU64::new(0),
                rejected_by_rate_limit: AtomicU64::new(0),
                refresh_count: AtomicU64::new(0),
                http,
                shutdown,
                server: Mutex::new(None),
            }),
        })
    }

    // ---- identity ----

    /// `127.0.0.1:PORT`
    pub fn domain(&self) -> String {
        self.inner.domain.lock().unwrap().clone()
    }
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.domain())
    }
    /// `http://127.0.0.1:PORT/rest/` (the `client_endpoint`).
    pub fn rest_url(&self) -> String {
        format!("http://{}/rest/", self.domain())
    }

    /// Requests that reached an address the portal moved away from.
    pub fn requests_to_old_addresses(&self) -> u64 {
        self.inner.requests_to_old_domains.load(Ordering::Relaxed)
    }
    pub fn member_id(&self) -> String {
        self.inner.member_id.clone()
    }
    /// Fixed per installation of the app; a reinstall after uninstall gets a new one.
    pub fn application_token(&self) -> String {
        self.lock().application_token.clone()
    }
    pub fn set_faults(&self, f: Faults) {
        self.lock().faults = f;
    }
    /// Makes every HTTP request to `method` (e.g. `batch`) answer 500 until called with
    /// `false`; the request changes nothing.
    pub fn fail_method(&self, method: &str, failing: bool) {
        let method = method.to_lowercase();
        let mut st = self.lock();
        if failing {
            st.failing_methods.insert(method);
        } else {
            st.failing_methods.remove(&method);
        }
    }

    pub fn set_rate_limit(&self, enabled: bool) {
        self.lock().rate_limit_enabled = enabled;
    }

    /// From now on `method`'s answers report `time.operating` = `operating` seconds and a
    /// budget window that resets after `reset_after` (protocol.md §7.2).
    pub fn set_method_operating(&self, method: &str, operating: f64, reset_after: Duration) {
        self.lock()
            .operating
            .set(method, operating, reset_after, false);
    }

    /// `method` has spent its time budget: its calls, alone or in a batch, get 429
    /// `OPERATION_TIME_LIMIT` until the reset its answers announced (see
    /// [`Portal::set_method_operating`]), or for `duration` when they announced none.
    pub fn block_method(&self, method: &str, duration: Duration) {
        self.lock().operating.block(method, duration);
    }

    /// Calls of `method` refused with 429 `OPERATION_TIME_LIMIT`.
    pub fn operation_time_refusals(&self, method: &str) -> u64 {
        self.lock().operating.refusals(method)
    }

    // ---- data ----

    /// Adds a department under `parent` (the root department 1 when `None`).
    pub fn add_department(&self, name: &str, parent: Option<u64>) -> u64 {
        self.lock().directory.add_department(name, parent)
    }
    /// Sets a department's head (`UF_HEAD`).
    pub fn set_department_head(&self, department: u64, user: u64) {
        if let Some(d) = self.lock().directory.departments.get_mut(&department) {
            d.head = Some(user);
        }
    }
    /// Adds a user from Bitrix field names (`NAME`, `EMAIL`, `UF_DEPARTMENT: [..]`,
    /// `PERSONAL_BIRTHDAY`, `IS_ONLINE` …); missing fields get realistic defaults.
    pub fn add_user(&self, fields: Value) -> u64 {
        self.lock().directory.add_user(&fields)
    }
    /// Departments and users with every field filled, for the demo.
    pub fn seed_demo_directory(&self, users: usize) -> Vec<u64> {
        self.lock().directory.seed_demo(users)
    }

    /// Issues a token pair for any user of this portal, as the OAuth server would.
    pub fn issue_token(&self, user_id: u64) -> TokenPair {
        let ttl = self.inner.cfg.access_token_ttl;
        let registry = self.inner.registry.clone();
        self.lock().tokens.issue(user_id, ttl, &registry)
    }

    // ---- observation ----

    pub fn activities(&self) -> Vec<RegisteredActivity> {
        self.lock().activities.clone()
    }
    /// Accepted (first) `bizproc.event.send` per workflow, in arrival order.
    pub fn event_sends(&self) -> Vec<EventSend> {
        self.lock().event_sends.clone()
    }
    /// How many `bizproc.event.send` calls were accepted, without copying them (a bench
    /// counting answers while the portal serves must not hold its lock for long).
    pub fn event_send_count(&self) -> usize {
        self.lock().event_sends.len()
    }
    /// Later `bizproc.event.send` calls for an instance already closed (answered `true`).
    pub fn duplicate_event_sends(&self) -> usize {
        self.lock().duplicate_event_sends
    }
    /// HTTP requests to `/rest` (a batch is one).
    pub fn request_count(&self) -> u64 {
        self.inner.request_count.load(Ordering::Relaxed)
    }
    /// Executed calls of `method`, including calls inside batches.
    pub fn method_calls(&self, method: &str) -> u64 {
        self.lock()
            .method_calls
            .get(&method.to_lowercase())
            .copied()
            .unwrap_or(0)
    }
    /// Executed calls of every method, inside batches or not (a batch itself not counted).
    pub fn command_count(&self) -> u64 {
        self.lock()
            .method_calls
            .iter()
            .filter(|(m, _)| m.as_str() != "batch")
            .map(|(_, n)| *n)
            .sum()
    }
    pub fn rejected_by_rate_limit(&self) -> u64 {
        self.inner.rejected_by_rate_limit.load(Ordering::Relaxed)
    }
    /// Successful OAuth refreshes for this portal.
    pub fn refresh_count(&self) -> u64 {
        self.inner.refresh_count.load(Ordering::Relaxed)
    }
    /// Every authenticated HTTP request so far: its method (`batch` for a batch) and the
    /// user whose token it came with.
    pub fn requests_by_user(&self) -> Vec<(String, u64)> {
        self.lock().requests_by_user.clone()
    }
    /// The user behind a live access token of this portal.
    pub fn token_user(&self, access_token: &str) -> Option<u64> {
        self.lock().tokens.check(access_token).ok()
    }
    /// Whether a refresh token can still be spent (it is single-use, §2).
    pub fn refresh_token_is_live(&self, refresh_token: &str) -> bool {
        self.lock().tokens.knows_refresh(refresh_token)
    }
    /// Every access token issued so far is expired from now on.
    pub fn expire_access_tokens(&self) {
        self.lock().tokens.expire_all();
    }
    /// `bizproc.activity.log` messages (and the `LOG_MESSAGE` of the accepted event.send)
    /// of the instance behind `event_token`.
    pub fn activity_logs(&self, event_token: &str) -> Vec<String> {
        let Some((workflow_id, _, _)) = self.extract_event_token(event_token) else {
            return Vec::new();
        };
        self.lock()
            .workflows
            .get(&workflow_id)
            .map(|w| w.logs.clone())
            .unwrap_or_default()
    }
    /// Test hook: the workflow behind `event_token` finished and its instance is gone, so a
    /// later `bizproc.event.send` gets error `404`. Returns whether it existed.
    pub fn finish_workflow(&self, event_token: &str) -> bool {
        let Some((workflow_id, _, _)) = self.extract_event_token(event_token) else {
            return false;
        };
        self.lock().workflows.remove(&workflow_id).is_some()
    }

    // ---- internals ----

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap()
    }

    pub(crate) fn crm<R>(&self, f: impl FnOnce(&mut Crm) -> R) -> R {
        f(&mut lock_area(&self.inner.areas.crm))
    }

    pub(crate) fn invoicing<R>(&self, f: impl FnOnce(&mut Invoicing) -> R) -> R {
        f(&mut lock_area(&self.inner.areas.invoicing))
    }

    pub(crate) fn disk<R>(&self, f: impl FnOnce(&mut Disk) -> R) -> R {
        f(&mut lock_area(&self.inner.areas.disk))
    }

    pub(crate) fn telephony_calendar<R>(&self, f: impl FnOnce(&mut TelephonyCalendar) -> R) -> R {
        f(&mut lock_area(&self.inner.areas.telephony_calendar))
    }

    pub(crate) fn notify(&self) {
        self.inner.changed.notify_waiters();
    }

    /// `CBPRestActivity::generateToken`: `workflowId|activityName|eventId` signed with the
    /// portal's key (`Signer`: value, `.`, HMAC-SHA256 hex).
    pub(crate) fn sign_event_token(
        &self,
        workflow_id: &str,
        activity: &str,
        event_id: &str,
    ) -> String {
        let value = format!("{workflow_id}|{activity}|{event_id}");
        format!("{value}.{}", self.signature(&value))
    }

    fn signature(&self, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.inner.signing_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(value.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `CBPRestActivity::extractToken`: `None` for a forged or malformed token.
    pub(crate) fn extract_event_token(&self, token: &str) -> Option<(String, String, String)> {
        let (value, signature) = token.rsplit_once('.')?;
        if self.signature(value) != signature {
            return None;
        }
        let mut parts = value.split('|');
        let (w, a, e) = (parts.next()?, parts.next()?, parts.next()?);
        Some((w.to_string(), a.to_string(), e.to_string()))
    }

    pub(crate) fn is_admin(&self, user_id: u64) -> bool {
        user_id == self.inner.cfg.admin_user_id
    }
}

/// An area stays usable after a panicking test hook, as the process-wide areas did.
fn lock_area<T>(area: &Mutex<T>) -> MutexGuard<'_, T> {
    area.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_portals_areas_go_with_its_last_handle() {
        let portal = Portal::new(
            PortalConfig::default(),
            "127.0.0.1:1".into(),
            "http://127.0.0.1:2".into(),
            Arc::default(),
            CancellationToken::new(),
        )
        .unwrap();
        portal.crm_add_item(2, serde_json::json!({"title": "Deal"}));
        portal.add_disk_file("a.txt", b"a".to_vec());
        let held = portal.clone();
        let inner = Arc::downgrade(&portal.inner);
        drop(portal);
        assert!(inner.upgrade().is_some(), "a clone still holds the portal");
        drop(held);
        assert!(
            inner.upgrade().is_none(),
            "nothing else keeps a portal's state"
        );
    }
}
