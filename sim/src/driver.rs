//! The portal acting as Bitrix24 towards the app: the install page POST (protocol.md §1.1),
//! the ONAPPINSTALL / ONAPPUNINSTALL events (§1.2, §1.3), app updates, and workflows
//! reaching a registered activity, which POST the handler exactly as §4 describes and then
//! wait for `bizproc.event.send`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use rand::distributions::Alphanumeric;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::php;
use crate::portal::Portal;
use crate::state::auth::{random_hex, unix_now, TokenPair, SCOPE};
use crate::state::{EventSend, RegisteredActivity, State, Workflow};

/// One activity (or robot) run to fire at the app.
#[derive(Clone, Debug)]
pub struct ActivityCall {
    pub code: String,
    /// key -> string | [strings] | number, as the workflow computed them.
    pub properties: Value,
    pub document_id: [String; 3],
    pub document_type: [String; 3],
    pub timeout_duration: u64,
    pub robot: bool,
    /// The user the workflow runs as ("Запускать от имени" in the designer); `None` is
    /// the activity's `AUTH_USER_ID`, or the admin when that is 0.
    pub run_as: Option<u64>,
}

impl ActivityCall {
    /// A call on deal 1 (`crm`/`CCrmDocumentDeal`/`DEAL_1`), no timeout, an activity.
    pub fn new(code: &str, properties: Value) -> Self {
        Self {
            code: code.to_string(),
            properties,
            document_id: ["crm".into(), "CCrmDocumentDeal".into(), "DEAL_1".into()],
            document_type: ["crm".into(), "CCrmDocumentDeal".into(), "DEAL".into()],
            timeout_duration: 0,
            robot: false,
            run_as: None,
        }
    }

    /// The call carries `user_id`'s token pair in `auth[…]` (§4), as when the designer's
    /// "run as" names that user.
    pub fn run_as(mut self, user_id: u64) -> Self {
        self.run_as = Some(user_id);
        self
    }
}

/// What the handler answered to a fired call (Bitrix itself never reads it, §4).
#[derive(Clone, Debug)]
pub struct FiredCall {
    pub event_token: String,
    pub workflow_id: String,
    pub status: StatusCode,
    pub body: String,
}

impl Portal {
    fn server_endpoint(&self) -> String {
        format!("{}/rest/", self.inner.oauth_url)
    }

    /// Starts an installation: after an uninstall the app gets a new application token and
    /// old refresh tokens die. Issues a fresh admin token pair.
    fn begin_install(&self, finished: bool) -> (TokenPair, String) {
        let ttl = self.inner.cfg.access_token_ttl;
        let registry = self.inner.registry.clone();
        let admin = self.inner.cfg.admin_user_id;
        let mut st = self.lock();
        if !st.app_installed {
            st.app_installed = true;
            st.install_finished = false;
            st.application_token = random_hex(32);
            st.tokens.revoke_all();
        }
        if finished {
            st.install_finished = true;
        }
        (
            st.tokens.issue(admin, ttl, &registry),
            st.application_token.clone(),
        )
    }

    /// `auth[…]` of events and activity calls (§1.2, §4).
    fn auth_fields(&self, pair: &TokenPair, application_token: &str) -> Vec<(String, String)> {
        [
            ("access_token", pair.access_token.clone()),
            ("expires", pair.expires.to_string()),
            ("expires_in", pair.expires_in.to_string()),
            ("scope", SCOPE.to_string()),
            ("domain", self.domain()),
            ("server_endpoint", self.server_endpoint()),
            ("status", "P".to_string()),
            ("client_endpoint", self.rest_url()),
            ("member_id", self.member_id()),
            ("user_id", pair.user_id.to_string()),
            ("refresh_token", pair.refresh_token.clone()),
            ("application_token", application_token.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("auth[{k}]"), v))
        .collect()
    }

    async fn post_form(
        &self,
        url: &str,
        pairs: &[(String, String)],
        user_agent: &str,
    ) -> anyhow::Result<(StatusCode, String)> {
        let response = self
            .inner
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", user_agent)
            .body(php::build_query(pairs))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok((status, body))
    }

    /// Opens the app's install page as an admin's browser would: a POST with `DOMAIN`,
    /// `PROTOCOL`, `LANG`, `APP_SID` in the query and the tokens in the form (§1.1). When the
    /// page answers 2xx the install counts as finished (its `BX24.installFinish()`), so
    /// `app.info` says `INSTALLED: true` only from then on.
    pub async fn install(&self, install_url: &str) -> anyhow::Result<StatusCode> {
        let (pair, application_token) = self.begin_install(false);
        let sep = if install_url.contains('?') { '&' } else { '?' };
        let query = php::build_query(&[
            ("DOMAIN".into(), self.domain()),
            ("PROTOCOL".into(), "0".into()),
            ("LANG".into(), self.inner.cfg.language.clone()),
            ("APP_SID".into(), random_hex(32)),
        ]);
        let mut form: Vec<(String, String)> = vec![
            ("AUTH_ID".into(), pair.access_token.clone()),
            ("AUTH_EXPIRES".into(), pair.expires_in.to_string()),
            ("REFRESH_ID".into(), pair.refresh_token.clone()),
            ("SERVER_ENDPOINT".into(), self.server_endpoint()),
            ("member_id".into(), self.member_id()),
            ("status".into(), "P".into()),
            ("PLACEMENT".into(), "DEFAULT".into()),
            ("PLACEMENT_OPTIONS".into(), "{}".into()),
        ];
        if self.inner.cfg.send_application_token_on_install {
            form.push(("APPLICATION_TOKEN".into(), application_token));
        }
        let browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";
        let (status, _) = self
            .post_form(&format!("{install_url}{sep}{query}"), &form, browser)
            .await?;
        if status.is_success() {
            self.lock().install_finished = true;
            self.notify();
        }
        Ok(status)
    }

    /// Installs as an app without UI: installed at once, then `ONAPPINSTALL` with full
    /// `auth[…]` including the refresh token (§1.2).
    pub async fn send_app_install_event(&self, events_url: &str) -> anyhow::Result<StatusCode> {
        let (pair, application_token) = self.begin_install(true);
        let mut form: Vec<(String, String)> = vec![
            ("event".into(), "ONAPPINSTALL".into()),
            ("data[VERSION]".into(), "1".into()),
            ("data[ACTIVE]".into(), "Y".into()),
            ("data[INSTALLED]".into(), "Y".into()),
            ("data[LANGUAGE_ID]".into(), self.inner.cfg.language.clone()),
            ("ts".into(), unix_now().to_string()),
        ];
        form.extend(self.auth_fields(&pair, &application_token));
        let (status, _) = self
            .post_form(events_url, &form, "Bitrix24 Webhook Engine")
            .await?;
        Ok(status)
    }

    /// Uninstalls: API access ends, the app's activities and robots are deleted, then
    /// `ONAPPUNINSTALL` goes out without tokens (§1.3).
    pub async fn send_app_uninstall_event(&self, events_url: &str) -> anyhow::Result<StatusCode> {
        let application_token = {
            let mut st = self.lock();
            st.app_installed = false;
            st.install_finished = false;
            st.tokens.revoke_access();
            st.activities.clear();
            st.application_token.clone()
        };
        self.notify();
        let form: Vec<(String, String)> = vec![
            ("event".into(), "ONAPPUNINSTALL".into()),
            ("data[LANGUAGE_ID]".into(), self.inner.cfg.language.clone()),
            ("data[CLEAN]".into(), "0".into()),
            ("ts".into(), unix_now().to_string()),
            ("auth[domain]".into(), self.domain()),
            ("auth[server_endpoint]".into(), self.server_endpoint()),
            ("auth[client_endpoint]".into(), self.rest_url()),
            ("auth[member_id]".into(), self.member_id()),
            ("auth[application_token]".into(), application_token),
        ];
        let (status, _) = self
            .post_form(events_url, &form, "Bitrix24 Webhook Engine")
            .await?;
        Ok(status)
    }

    /// An app update deletes every registered activity and robot (`onRestAppUpdate`, §1.3).
    pub fn simulate_app_update(&self) {
        self.lock().activities.clear();
        self.notify();
    }

    /// Waits on the portal's change notifications until `check` yields or `timeout` passes.
    async fn wait_for<T>(
        &self,
        timeout: Duration,
        check: impl Fn(&State) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = check(&self.lock()) {
                return Some(found);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return check(&self.lock()),
            }
        }
    }

    /// Waits until every code is registered (as an activity or a robot).
    pub async fn wait_for_activities(
        &self,
        codes: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let missing = |st: &State| -> Vec<String> {
            codes
                .iter()
                .filter(|c| !st.activities.iter().any(|a| a.code == **c))
                .map(|c| c.to_string())
                .collect()
        };
        let done = self
            .wait_for(timeout, |st| missing(st).is_empty().then_some(()))
            .await;
        match done {
            Some(()) => Ok(()),
            None => Err(anyhow!(
                "not registered within {timeout:?}: {:?}",
                missing(&self.lock())
            )),
        }
    }

    /// Waits for the first `bizproc.event.send` of the instance behind `event_token`.
    pub async fn wait_event_send(&self, event_token: &str, timeout: Duration) -> Option<EventSend> {
        self.wait_for(timeout, |st| {
            st.event_send_index
                .get(event_token)
                .and_then(|&i| st.event_sends.get(i))
                .cloned()
        })
        .await
    }

    /// A workflow reaches the activity (or robot) `call.code`: a new waiting instance, a
    /// token for the activity's AUTH_USER_ID, and the handler POST of §4.
    pub async fn fire(&self, call: ActivityCall) -> anyhow::Result<FiredCall> {
        let call = self.prepare_call(&call)?;
        let (status, body) = self
            .post_form(&call.handler, &call.form, "Bitrix24 Webhook Engine")
            .await?;
        Ok(FiredCall {
            event_token: call.event_token,
            workflow_id: call.workflow_id,
            status,
            body,
        })
    }

    /// A workflow reaches the activity as [`Portal::fire`] would, but the handler POST is
    /// left to the caller: its form body, to send (even more than once) wherever it likes.
    pub fn prepare_body(&self, call: &ActivityCall) -> anyhow::Result<(String, String)> {
        let call = self.prepare_call(call)?;
        Ok((call.event_token, php::build_query(&call.form)))
    }

    fn prepare_call(&self, call: &ActivityCall) -> anyhow::Result<PreparedCall> {
        let ttl = self.inner.cfg.access_token_ttl;
        let registry = self.inner.registry.clone();
        let mut st = self.lock();
        let activity: RegisteredActivity = st
            .activities
            .iter()
            .find(|a| a.code == call.code && a.is_robot == call.robot)
            .cloned()
            .ok_or_else(|| {
                let kind = if call.robot { "robot" } else { "activity" };
                anyhow!("{kind} {} is not registered on this portal", call.code)
            })?;
        let user = call.run_as.unwrap_or(match activity.auth_user_id {
            0 => self.inner.cfg.admin_user_id,
            id => id,
        });
        let pair = st.tokens.issue(user, ttl, &registry);
        let mut rng = rand::thread_rng();
        let workflow_id = loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            // uniqid('', true): 8+5 hex digits of time, then a random "%.8F".
            let id = format!(
                "{:08x}{:05x}{}.{:08}",
                now.as_secs(),
                now.subsec_micros(),
                rng.gen_range(0..10),
                rng.gen_range(0..100_000_000u32)
            );
            if !st.workflows.contains_key(&id) {
                break id;
            }
        };
        let activity_name = format!(
            "A{}_{}_{}_{}",
            rng.gen_range(10000..100000),
            rng.gen_range(10000..100000),
            rng.gen_range(10000..100000),
            rng.gen_range(10000..100000)
        );
        let event_id: String = (&mut rng)
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let event_token = self.sign_event_token(&workflow_id, &activity_name, &event_id);
        // Empty USE_SUBSCRIPTION leaves it to the template, whose default is N (§8.3).
        let use_subscription = if activity.use_subscription == "Y" {
            "Y"
        } else {
            "N"
        };

        let mut form: Vec<(String, String)> = vec![
            ("workflow_id".into(), workflow_id.clone()),
            ("code".into(), activity.code.clone()),
        ];
        for (i, part) in call.document_id.iter().enumerate() {
            form.push((format!("document_id[{i}]"), part.clone()));
        }
        for (i, part) in call.document_type.iter().enumerate() {
            form.push((format!("document_type[{i}]"), part.clone()));
        }
        form.push(("event_token".into(), event_token.clone()));
        form.extend(property_fields(
            &activity.properties,
            &call.properties,
            &call.code,
        ));
        form.push(("use_subscription".into(), use_subscription.into()));
        form.push(("timeout_duration".into(), call.timeout_duration.to_string()));
        form.push(("ts".into(), unix_now().to_string()));
        let application_token = st.application_token.clone();
        form.extend(self.auth_fields(&pair, &application_token));

        st.workflows.insert(
            workflow_id.clone(),
            Workflow {
                activity_name,
                event_id,
                event_token: event_token.clone(),
                return_properties: activity.return_properties.clone(),
                // Without subscription the activity closes right after sending (§4).
                closed: use_subscription == "N",
                fired_at: Instant::now(),
                logs: Vec::new(),
            },
        );
        Ok(PreparedCall {
            handler: activity.handler,
            form,
            event_token,
            workflow_id,
        })
    }
}

struct PreparedCall {
    handler: String,
    form: Vec<(String, String)>,
    event_token: String,
    workflow_id: String,
}

/// `properties[<key>]` for every declared property (§4): values as the workflow gives them,
/// a missing one as `""`; Multiple ones as `[0]`, `[1]`… (an empty list sends nothing);
/// booleans as Y/N. Keys the activity does not declare never reach the handler.
fn property_fields(declared: &Value, given: &Value, code: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let declared: Vec<(String, Value)> = php::entries(declared);
    if let Value::Object(given) = given {
        for key in given.keys() {
            if !declared.iter().any(|(d, _)| d == key) {
                tracing::warn!(
                    code,
                    key,
                    "property not declared by the activity; Bitrix would not send it"
                );
            }
        }
    }
    for (key, desc) in declared {
        let multiple = desc.get("MULTIPLE").and_then(Value::as_str) == Some("Y");
        let value = given.get(&key).cloned().unwrap_or(Value::Null);
        let prefix = format!("properties[{key}]");
        let scalar = |v: &Value| match v {
            Value::Bool(b) => json!(if *b { "Y" } else { "N" }),
            Value::Null => json!(""),
            other => other.clone(),
        };
        if multiple {
            let items = match &value {
                Value::Null => Vec::new(),
                Value::Array(_) | Value::Object(_) => php::values(&value),
                other => vec![other.clone()],
            };
            for (i, item) in items.iter().enumerate() {
                php::flatten_into(&format!("{prefix}[{i}]"), &scalar(item), &mut out);
            }
        } else {
            match &value {
                Value::Array(_) | Value::Object(_) => php::flatten_into(&prefix, &value, &mut out),
                other => php::flatten_into(&prefix, &scalar(other), &mut out),
            }
        }
    }
    out
}
