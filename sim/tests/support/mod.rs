//! Shared setup: a cloud with one portal and an admin token, calls in the ways apps make
//! them, and an "app" that records what the portal sends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use b24flow_sim::{Cloud, CloudConfig, Portal, PortalConfig};
use serde_json::{json, Value};

pub struct Sim {
    pub cloud: Cloud,
    pub portal: Portal,
    pub http: reqwest::Client,
    pub admin: String,
}

pub fn unlimited() -> PortalConfig {
    PortalConfig {
        rate_limit_enabled: false,
        ..PortalConfig::default()
    }
}

pub async fn sim(cfg: PortalConfig) -> Sim {
    let cloud = Cloud::start(CloudConfig::default()).await.unwrap();
    let portal = cloud.add_portal(cfg).await.unwrap();
    let admin = portal.issue_token(1).access_token;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Sim {
        cloud,
        portal,
        http,
        admin,
    }
}

pub async fn decode(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl Sim {
    /// A JSON call with the admin token.
    pub async fn call(&self, method: &str, body: Value) -> (u16, Value) {
        self.call_as(&self.admin.clone(), method, body).await
    }
    pub async fn call_as(&self, token: &str, method: &str, mut body: Value) -> (u16, Value) {
        body["auth"] = json!(token);
        let r = self
            .http
            .post(format!("{}{method}", self.portal.rest_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        decode(r).await
    }
    /// A form-encoded call (PHP bracket keys), token appended.
    pub async fn form(&self, method: &str, body: &str) -> (u16, Value) {
        let body = format!("{body}&auth={}", self.admin);
        let r = self
            .http
            .post(format!("{}{method}.json", self.portal.rest_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        decode(r).await
    }
    pub async fn register(&self, code: &str, handler: &str, robot: bool) -> (u16, Value) {
        let method = if robot {
            "bizproc.robot.add"
        } else {
            "bizproc.activity.add"
        };
        self.call(
            method,
            json!({
                "code": code, "handler": handler, "auth_user_id": 1, "use_subscription": "Y",
                "name": {"en": "Ping", "ru": "Пинг"},
                "properties": {
                    "user_id": {"Name": "User", "Type": "user", "Required": "Y"},
                    "tags": {"Name": "Tags", "Type": "string", "Multiple": "Y"},
                },
                "return_properties": {
                    "result": {"Name": "Result", "Type": "string"},
                    "count": {"Name": "Count", "Type": "int"},
                    "ok": {"Name": "OK", "Type": "bool"},
                },
            }),
        )
        .await
    }
}

/// An "app" that records every POST body it gets at any path.
pub async fn capture_server() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push((uri.to_string(), body));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

pub fn form_map(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}
