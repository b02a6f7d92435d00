//! The simulator against the protocol (../shared/bitrix/protocol.md): REST envelope and
//! auth, batch, rate limit, OAuth refresh, bizproc registration and event.send, injected
//! faults, and what the driver sends to the app. Loopback only.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use b24flow_sim::{ActivityCall, Cloud, CloudConfig, Faults, Portal, PortalConfig};
use serde_json::{json, Value};

struct Sim {
    cloud: Cloud,
    portal: Portal,
    http: reqwest::Client,
    admin: String,
}

fn unlimited() -> PortalConfig {
    PortalConfig {
        rate_limit_enabled: false,
        ..PortalConfig::default()
    }
}

async fn sim(cfg: PortalConfig) -> Sim {
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

async fn decode(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl Sim {
    /// A JSON call with the admin token.
    async fn call(&self, method: &str, body: Value) -> (u16, Value) {
        self.call_as(&self.admin.clone(), method, body).await
    }
    async fn call_as(&self, token: &str, method: &str, mut body: Value) -> (u16, Value) {
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
    async fn form(&self, method: &str, body: &str) -> (u16, Value) {
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
    async fn register(&self, code: &str, handler: &str, robot: bool) -> (u16, Value) {
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
async fn capture_server() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
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

fn form_map(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test]
async fn rest_answers_with_the_documented_envelopes_and_auth_errors() {
    let s = sim(unlimited()).await;
    let (status, body) = s.call("app.info", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["CODE"], "b24flow");
    assert_eq!(
        body["result"]["INSTALLED"], false,
        "not installed until the install finished"
    );
    for key in [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating_reset_at",
        "operating",
    ] {
        assert!(body["time"].get(key).is_some(), "time.{key}");
    }
    // Method names are case-insensitive; the token may come as a Bearer header.
    let r = s
        .http
        .get(format!("{}APP.Info.json", s.portal.rest_url()))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, body) = s.call("no.such.method", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("ERROR_METHOD_NOT_FOUND"))
    );
    let (status, body) = s.call_as("made-up", "app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("NO_AUTH_FOUND"))
    );
    let r = s
        .http
        .post(format!("{}app.info", s.portal.rest_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(decode(r).await.1["error"], "NO_AUTH_FOUND");

    // A token of another portal of the same cloud is known but invalid here.
    let other = s.cloud.add_portal(unlimited()).await.unwrap();
    let foreign = other.issue_token(1).access_token;
    let (status, body) = s.call_as(&foreign, "app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn tokens_expire_and_refresh_rotates_the_refresh_token() {
    let s = sim(unlimited()).await;
    let pair = s.portal.issue_token(1);
    s.portal.expire_access_tokens();
    let (status, body) = s.call_as(&pair.access_token, "app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("expired_token"))
    );

    let refresh = |token: &str, secret: &str| {
        let url = format!(
            "{}/oauth/token/?grant_type=refresh_token&client_id={}&client_secret={secret}&refresh_token={token}",
            s.cloud.oauth_url(),
            s.cloud.client_id()
        );
        s.http.get(url).send()
    };
    let (status, body) = decode(
        refresh(&pair.refresh_token, s.cloud.client_secret())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for key in [
        "access_token",
        "refresh_token",
        "expires",
        "expires_in",
        "client_endpoint",
        "server_endpoint",
        "member_id",
        "scope",
        "status",
        "user_id",
    ] {
        assert!(body.get(key).is_some(), "{key} in {body}");
    }
    assert_eq!(body["domain"], "oauth.bitrix.info");
    assert_eq!(body["client_endpoint"], s.portal.rest_url());
    assert_eq!(body["member_id"], s.portal.member_id());
    assert_eq!(s.portal.refresh_count(), 1);
    let fresh = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.call_as(&fresh, "app.info", json!({})).await.0, 200);

    // The old refresh token was rotated out.
    let (status, body) = decode(
        refresh(&pair.refresh_token, s.cloud.client_secret())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Wrong client credentials.
    let next = body_refresh_token(&s);
    let (status, body) = decode(refresh(&next, "wrong").await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // A POST form is accepted too.
    let r = s
        .http
        .post(format!("{}/oauth/token/", s.cloud.oauth_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", s.cloud.client_id()),
            ("client_secret", s.cloud.client_secret()),
            ("refresh_token", next.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.portal.refresh_count(), 2);
    s.cloud.shutdown().await;
}

fn body_refresh_token(s: &Sim) -> String {
    s.portal.issue_token(1).refresh_token
}

#[tokio::test]
async fn batch_resolves_references_like_the_core() {
    let s = sim(unlimited()).await;
    let sales = s.portal.add_department("Sales", None);
    let north = s.portal.add_department("Продажи Север", Some(sales));
    let user = s
        .portal
        .add_user(json!({"NAME": "Анна", "UF_DEPARTMENT": [sales, north]}));
    let before = s.portal.request_count();
    // Raw JSON: commands run in the order sent (a serde_json::Value would sort the keys).
    let batch = format!(
        r#"{{"auth":"{}","halt":1,"cmd":{{
            "u":"user.get?filter[ID]={user}",
            "all":"department.get?ID=$result[u][0][UF_DEPARTMENT]",
            "first":"department.get?ID=$result[u][0][UF_DEPARTMENT][0]",
            "text":"user.get?filter[NAME]=$result[u][0][NAME]"}}}}"#,
        s.admin
    );
    let r = s
        .http
        .post(format!("{}batch", s.portal.rest_url()))
        .header("content-type", "application/json")
        .body(batch)
        .send()
        .await
        .unwrap();
    let (status, body) = decode(r).await;
    assert_eq!(status, 200, "{body}");
    let r = &body["result"];
    assert_eq!(r["result_error"], json!([]));
    assert_eq!(r["result"]["u"][0]["ID"], user.to_string());
    let names: Vec<&str> = r["result"]["all"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["NAME"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Sales", "Продажи Север"]);
    assert_eq!(r["result"]["first"][0]["ID"], sales.to_string());
    assert_eq!(r["result"]["text"][0]["ID"], user.to_string());
    assert_eq!(r["result_total"]["all"], 2);
    assert!(r["result_time"]["u"].get("start").is_some());
    assert_eq!(
        s.portal.request_count() - before,
        1,
        "a batch is one request"
    );
    assert_eq!(s.portal.method_calls("user.get"), 2);
    assert_eq!(s.portal.method_calls("department.get"), 2);

    // An empty list filters nothing in department.get (CIBlock::FilterCreateEx).
    let nobody = s
        .portal
        .add_user(json!({"NAME": "Ben", "UF_DEPARTMENT": []}));
    // Keys sorted on purpose: "d" would run before "u" (its reference finds nothing).
    let (_, body) = s
        .call(
            "batch",
            json!({"cmd": {
                "a_user": format!("user.get?ID={nobody}"),
                "d": "department.get?ID=$result[a_user][0][UF_DEPARTMENT]",
            }}),
        )
        .await;
    assert_eq!(
        body["result"]["result"]["a_user"][0]["UF_DEPARTMENT"],
        json!([])
    );
    assert_eq!(
        body["result"]["result"]["d"].as_array().unwrap().len(),
        3,
        "root, Sales, North"
    );
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn batch_halt_length_limit_and_nesting() {
    let s = sim(unlimited()).await;
    // Form encoding: cmd values are encoded twice, keys keep their order.
    let cmd = |key: &str, call: &str| {
        format!(
            "cmd%5B{key}%5D={}",
            url::form_urlencoded::byte_serialize(call.as_bytes()).collect::<String>()
        )
    };
    let body = format!(
        "halt=1&{}&{}",
        cmd("bad", "no.such.method?x=1"),
        cmd("info", "app.info")
    );
    let (status, body) = s.form("batch", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["result_error"]["bad"]["error"],
        "ERROR_METHOD_NOT_FOUND"
    );
    assert_eq!(
        body["result"]["result"],
        json!([]),
        "halt stops before app.info"
    );

    let (_, body) = s
        .call("batch", json!({"halt": 0, "cmd": {"bad": "no.such.method", "info": "app.info", "nested": "batch?cmd[a]=app.info"}}))
        .await;
    assert_eq!(body["result"]["result"]["info"]["CODE"], "b24flow");
    assert_eq!(
        body["result"]["result_error"]["nested"]["error"],
        "ERROR_BATCH_METHOD_NOT_ALLOWED"
    );

    let cmds: serde_json::Map<String, Value> = (0..51)
        .map(|i| (format!("c{i:02}"), json!("app.info")))
        .collect();
    let (status, body) = s.call("batch", json!({"cmd": cmds})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["result"].as_object().unwrap().len(), 50);
    assert_eq!(
        body["result"]["result_error"]["c50"]["error"],
        "ERROR_BATCH_LENGTH_EXCEEDED"
    );
    assert_eq!(s.portal.method_calls("app.info"), 51);
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_answers_503_after_the_burst_and_drains() {
    let s = sim(PortalConfig {
        rate_burst: 5,
        rate_drain_per_sec: 2.0,
        ..PortalConfig::default()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(s.call("app.info", json!({})).await.0, 200);
    }
    let (status, body) = s.call("app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("QUERY_LIMIT_EXCEEDED"))
    );
    assert_eq!(s.portal.rejected_by_rate_limit(), 1);
    assert_eq!(
        s.portal.method_calls("app.info"),
        5,
        "a refused request does not run"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s.call("app.info", json!({})).await.0, 200);
    s.portal.set_rate_limit(false);
    for _ in 0..10 {
        assert_eq!(s.call("app.info", json!({})).await.0, 200);
    }
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn activity_registration_validates_like_the_core() {
    let s = sim(unlimited()).await;
    let ok = json!({"CODE": "ping", "HANDLER": "https://app.example.com/act", "NAME": "Ping"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (
            json!({}),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty data!",
        ),
        (
            with("CODE", json!("")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty activity code!",
        ),
        (
            with("CODE", json!("bad code!")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong activity code!",
        ),
        (
            with("HANDLER", json!("http://localhost/act")),
            "ERROR_WRONG_HANDLER_URL",
            "Wrong handler URL",
        ),
        (
            with("HANDLER", json!("ftp://app.example.com/act")),
            "ERROR_UNSUPPORTED_PROTOCOL",
            "Unsupported handler protocol",
        ),
        (
            with("NAME", json!("")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty activity NAME!",
        ),
        (
            with("PROPERTIES", json!("x")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong properties array!",
        ),
        (
            with("PROPERTIES", json!({"1st": {"Name": "x"}})),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong property key (1st)!",
        ),
        (
            with("RETURN_PROPERTIES", json!({"out": {"Type": "string"}})),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty property NAME (out)!",
        ),
        (
            with("FILTER", json!("b24")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong activity FILTER!",
        ),
    ];
    for (body, code, text) in cases {
        let (status, answer) = s.call("bizproc.activity.add", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"], code, "{body}");
        assert_eq!(answer["error_description"], text, "{body}");
    }
    assert!(s.portal.activities().is_empty());

    // Keys are case-insensitive and stored upper-case; property keys keep their case.
    let (status, answer) = s.register("Ping.v1", "http://127.0.0.1:9/act", false).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], true);
    let a = &s.portal.activities()[0];
    assert_eq!(
        (a.code.as_str(), a.is_robot, a.auth_user_id),
        ("Ping.v1", false, 1)
    );
    assert_eq!(a.properties["user_id"]["REQUIRED"], "Y");
    assert_eq!(a.name["EN"], "Ping");

    // Activities and robots share one namespace; update finds only its own kind.
    let (status, answer) = s.register("Ping.v1", "http://127.0.0.1:9/act", true).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("ERROR_ACTIVITY_ALREADY_INSTALLED"))
    );
    let (_, answer) = s
        .call(
            "bizproc.robot.update",
            json!({"code": "Ping.v1", "fields": {"NAME": "x"}}),
        )
        .await;
    assert_eq!(answer["error"], "ERROR_ACTIVITY_NOT_FOUND");
    let (_, answer) = s
        .call(
            "bizproc.activity.update",
            json!({"code": "Ping.v1", "fields": {}}),
        )
        .await;
    assert_eq!(answer["error_description"], "No fields to update");
    let (status, _) = s
        .call(
            "bizproc.activity.update",
            json!({"code": "Ping.v1", "fields": {"handler": "https://app.example.com/v2"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.portal.activities()[0].handler,
        "https://app.example.com/v2"
    );
    assert_eq!(
        s.call("bizproc.activity.list", json!({})).await.1["result"],
        json!(["Ping.v1"])
    );
    assert_eq!(
        s.call("bizproc.robot.list", json!({})).await.1["result"],
        json!([])
    );

    // Only an admin registers.
    let user = s.portal.add_user(json!({"NAME": "Eve"}));
    let token = s.portal.issue_token(user).access_token;
    let (status, answer) = s
        .call_as(
            &token,
            "bizproc.activity.delete",
            json!({"code": "Ping.v1"}),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("ACCESS_DENIED"))
    );
    assert_eq!(
        s.call("bizproc.activity.delete", json!({"code": "Ping.v1"}))
            .await
            .0,
        200
    );
    assert!(s.portal.activities().is_empty());
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn a_fired_call_carries_the_documented_payload_and_event_send_closes_it_once() {
    let s = sim(unlimited()).await;
    let (app, seen) = capture_server().await;
    assert_eq!(
        s.register("ping", &format!("{app}/act"), false).await.0,
        200
    );
    let call = ActivityCall::new(
        "ping",
        json!({"user_id": "user_1", "tags": ["a", "b"], "undeclared": "x"}),
    );
    let fired = s.portal.fire(call).await.unwrap();
    assert_eq!(fired.status, 200);

    let (path, raw) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/act");
    assert!(raw.contains("auth%5Baccess_token%5D="), "{raw}");
    let f = form_map(&raw);
    let wf = &f["workflow_id"];
    assert_eq!(wf, &fired.workflow_id);
    let (head, tail) = wf.split_once('.').unwrap();
    assert!(
        head.len() == 14 && head.bytes().all(|b| b.is_ascii_hexdigit()) && tail.len() == 8,
        "{wf}"
    );
    let token = &f["event_token"];
    assert_eq!(token, &fired.event_token);
    let (value, signature) = token.rsplit_once('.').unwrap();
    let parts: Vec<&str> = value.split('|').collect();
    assert_eq!(parts[0], wf);
    assert!(
        parts[1].starts_with('A') && parts[1].split('_').count() == 4,
        "{token}"
    );
    assert_eq!(parts[2].len(), 32);
    assert!(signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(f["code"], "ping");
    assert_eq!(f["document_id[2]"], "DEAL_1");
    assert_eq!(f["document_type[1]"], "CCrmDocumentDeal");
    assert_eq!(f["properties[user_id]"], "user_1");
    assert_eq!(
        (
            f["properties[tags][0]"].as_str(),
            f["properties[tags][1]"].as_str()
        ),
        ("a", "b")
    );
    assert!(!f.contains_key("properties[undeclared]"));
    assert_eq!(f["use_subscription"], "Y");
    assert_eq!(f["timeout_duration"], "0");
    assert_eq!(f["auth[application_token]"], s.portal.application_token());
    assert_eq!(f["auth[member_id]"], s.portal.member_id());
    assert_eq!(f["auth[domain]"], s.portal.domain());
    assert_eq!(f["auth[client_endpoint]"], s.portal.rest_url());
    assert_eq!(
        f["auth[server_endpoint]"],
        format!("{}/rest/", s.cloud.oauth_url())
    );
    assert_eq!(f["auth[user_id]"], "1");
    for key in [
        "auth[expires]",
        "auth[expires_in]",
        "auth[scope]",
        "auth[status]",
        "auth[refresh_token]",
        "ts",
    ] {
        assert!(f.contains_key(key), "{key}");
    }

    // The call's own token answers; keys match case-insensitively, unknown ones are dropped.
    let call_token = f["auth[access_token]"].clone();
    let log = s
        .call_as(
            &call_token,
            "bizproc.activity.log",
            json!({"EVENT_TOKEN": token, "LOG_MESSAGE": "working"}),
        )
        .await;
    assert_eq!(log.0, 200);
    let empty = s
        .call_as(
            &call_token,
            "bizproc.activity.log",
            json!({"EVENT_TOKEN": token, "LOG_MESSAGE": ""}),
        )
        .await;
    assert_eq!(empty.1["error"], "ERROR_EMPTY_LOG_MESSAGE");
    let send = json!({"event_token": token, "return_values": {"RESULT": "done", "count": "5", "Ok": "Y", "junk": 1}, "log_message": "finished"});
    let (status, body) = s
        .call_as(&call_token, "bizproc.event.send", send.clone())
        .await;
    assert_eq!((status, &body["result"]), (200, &json!(true)));
    let sent = s
        .portal
        .wait_event_send(token, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        sent.return_values,
        json!({"result": "done", "count": 5, "ok": "Y"})
    );
    assert_eq!(sent.raw_return_values["junk"], 1);
    assert_eq!(sent.log_message, "finished");
    assert!(sent.at >= sent.fired_at);
    assert_eq!(s.portal.activity_logs(token), ["working", "finished"]);

    // A second send is ignored and still `true`.
    let (status, body) = s.call_as(&call_token, "bizproc.event.send", send).await;
    assert_eq!((status, &body["result"]), (200, &json!(true)));
    assert_eq!(s.portal.duplicate_event_sends(), 1);
    assert_eq!(s.portal.event_sends().len(), 1);

    // A forged token is refused; a finished workflow's instance is gone: error "404".
    let mut forged = token.clone();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(forged.len() - 1.., last);
    let (status, body) = s
        .call("bizproc.event.send", json!({"EVENT_TOKEN": forged}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ACCESS_DENIED"))
    );
    assert!(s.portal.finish_workflow(token));
    let (status, body) = s
        .call("bizproc.event.send", json!({"EVENT_TOKEN": token}))
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("404")));

    // Waiting for an answer that never comes times out.
    let unanswered = s
        .portal
        .fire(ActivityCall::new("ping", json!({"user_id": "1"})))
        .await
        .unwrap();
    assert!(s
        .portal
        .wait_event_send(&unanswered.event_token, Duration::from_millis(50))
        .await
        .is_none());
    assert!(s
        .portal
        .fire(ActivityCall {
            robot: true,
            ..ActivityCall::new("ping", json!({}))
        })
        .await
        .is_err());
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn a_faulted_request_changes_nothing() {
    let s = sim(unlimited()).await;
    s.portal.set_faults(Faults {
        error_500: 1.0,
        ..Faults::default()
    });
    let (status, body) = s
        .register("ping", "https://app.example.com/act", false)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("INTERNAL_SERVER_ERROR"))
    );
    s.portal.set_faults(Faults {
        error_503: 1.0,
        ..Faults::default()
    });
    for _ in 0..4 {
        assert_eq!(
            s.register("ping", "https://app.example.com/act", false)
                .await
                .0,
            503
        );
    }
    assert!(s.portal.activities().is_empty());
    assert_eq!(s.portal.method_calls("bizproc.activity.add"), 0);
    assert_eq!(s.portal.request_count(), 5);

    s.portal.set_faults(Faults {
        slow: 1.0,
        slow_delay: Duration::from_millis(150),
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(
        s.register("ping", "https://app.example.com/act", false)
            .await
            .0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(s.portal.activities().len(), 1);
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn install_uninstall_and_update_follow_the_protocol() {
    let s = sim(unlimited()).await;
    let (app, seen) = capture_server().await;
    assert_eq!(
        s.portal.install(&format!("{app}/install")).await.unwrap(),
        200
    );
    let (uri, raw) = seen.lock().unwrap()[0].clone();
    let query = form_map(uri.split_once('?').unwrap().1);
    assert_eq!(query["DOMAIN"], s.portal.domain());
    assert_eq!(query["PROTOCOL"], "0");
    assert!(query.contains_key("APP_SID"));
    let f = form_map(&raw);
    assert_eq!(f["member_id"], s.portal.member_id());
    assert_eq!(f["APPLICATION_TOKEN"], s.portal.application_token());
    assert_eq!(
        (
            f["status"].as_str(),
            f["PLACEMENT"].as_str(),
            f["AUTH_EXPIRES"].as_str()
        ),
        ("P", "DEFAULT", "3600")
    );
    let admin = f["AUTH_ID"].clone();
    let refresh_id = f["REFRESH_ID"].clone();
    let (_, info) = s.call_as(&admin, "app.info", json!({})).await;
    assert_eq!(info["result"]["INSTALLED"], true);

    assert_eq!(
        s.register("ping", &format!("{app}/act"), false).await.0,
        200
    );
    s.portal.simulate_app_update();
    assert!(s.portal.activities().is_empty());
    assert_eq!(
        s.register("ping", &format!("{app}/act"), false).await.0,
        200
    );
    s.portal
        .wait_for_activities(&["ping"], Duration::from_millis(100))
        .await
        .unwrap();
    assert!(s
        .portal
        .wait_for_activities(&["pong"], Duration::from_millis(50))
        .await
        .is_err());

    let old_token = s.portal.application_token();
    assert_eq!(
        s.portal
            .send_app_uninstall_event(&format!("{app}/events"))
            .await
            .unwrap(),
        200
    );
    let f = form_map(&seen.lock().unwrap()[1].1);
    assert_eq!(f["event"], "ONAPPUNINSTALL");
    assert_eq!(f["auth[application_token]"], old_token);
    assert!(!f.contains_key("auth[access_token]"));
    assert!(s.portal.activities().is_empty());
    let (status, body) = s.call_as(&admin, "app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    let url = format!(
        "{}/oauth/token/?grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
        s.cloud.oauth_url(),
        s.cloud.client_id(),
        s.cloud.client_secret(),
        refresh_id
    );
    let (status, body) = decode(s.http.get(url).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    assert_eq!(
        s.portal
            .send_app_install_event(&format!("{app}/events"))
            .await
            .unwrap(),
        200
    );
    let f = form_map(&seen.lock().unwrap()[2].1);
    assert_eq!(f["event"], "ONAPPINSTALL");
    assert_ne!(
        f["auth[application_token]"], old_token,
        "a reinstall gets a new application token"
    );
    assert_eq!(f["auth[application_token]"], s.portal.application_token());
    let (_, info) = s
        .call_as(&f["auth[access_token]"], "app.info", json!({}))
        .await;
    assert_eq!(info["result"]["INSTALLED"], true);
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn user_get_returns_bitrix_formats() {
    let s = sim(unlimited()).await;
    let dept = s.portal.add_department("Sales", None);
    let id = s.portal.add_user(json!({
        "NAME": "Анна", "LAST_NAME": "Koch", "ACTIVE": true, "IS_ONLINE": "Y", "PERSONAL_GENDER": "F",
        "PERSONAL_BIRTHDAY": "1990-05-01", "UF_DEPARTMENT": [dept], "UF_PHONE_INNER": 204,
    }));
    let (status, body) = s.form("user.get", &format!("filter%5BID%5D={id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    let u = &body["result"][0];
    assert_eq!(u["ID"], id.to_string());
    assert_eq!(u["ACTIVE"], true);
    assert_eq!(u["IS_ONLINE"], "Y");
    assert_eq!(u["PERSONAL_BIRTHDAY"], "1990-05-01T03:00:00+03:00");
    assert_eq!(u["UF_DEPARTMENT"], json!([dept]));
    assert_eq!(u["UF_PHONE_INNER"], "204");
    assert_eq!(u["USER_TYPE"], "employee");
    assert!(u["UF_SKYPE"].is_null(), "unset fields are present as null");
    assert!(u["EMAIL"].as_str().unwrap().contains('@'));

    // A missing user is an empty list without `total`.
    let (status, body) = s.call("user.get", json!({"ID": 987654})).await;
    assert_eq!((status, &body["result"]), (200, &json!([])));
    assert!(body.get("total").is_none());

    // Without a department a user is visible to an admin asking by ID, not to others.
    let loner = s
        .portal
        .add_user(json!({"NAME": "Ben", "UF_DEPARTMENT": []}));
    assert_eq!(
        s.call("user.get", json!({"filter": {"ID": loner}})).await.1["result"][0]["NAME"],
        "Ben"
    );
    let other = s.portal.issue_token(id).access_token;
    assert_eq!(
        s.call_as(&other, "user.get", json!({"filter": {"ID": loner}}))
            .await
            .1["result"],
        json!([])
    );
    let (_, me) = s.call_as(&other, "user.current", json!({})).await;
    assert_eq!(me["result"]["NAME"], "Анна");

    let ids = s.portal.seed_demo_directory(60);
    assert_eq!(ids.len(), 60);
    let (_, page) = s.call("user.get", json!({})).await;
    assert_eq!(page["result"].as_array().unwrap().len(), 50);
    assert_eq!(page["next"], 50);
    let (_, page2) = s.call("user.get", json!({"start": 50})).await;
    assert_eq!(page2["total"], page["total"]);
    s.cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_runs_on_spawned_tasks() {
    let s = sim(unlimited()).await;
    let (app, _seen) = capture_server().await;
    assert_eq!(
        s.register("ping", &format!("{app}/act"), false).await.0,
        200
    );
    let portal = s.portal.clone();
    let fired = tokio::spawn(async move {
        portal
            .fire(ActivityCall::new("ping", json!({"user_id": "1"})))
            .await
    })
    .await
    .unwrap()
    .unwrap();
    let portal = s.portal.clone();
    let token = fired.event_token.clone();
    let waiter =
        tokio::spawn(async move { portal.wait_event_send(&token, Duration::from_secs(5)).await });
    let (status, _) = s
        .call(
            "bizproc.event.send",
            json!({"event_token": fired.event_token, "return_values": {"result": "x"}}),
        )
        .await;
    assert_eq!(status, 200);
    let sent = waiter.await.unwrap().expect("the waiter wakes on the send");
    assert_eq!(sent.return_values, json!({"result": "x"}));
    s.cloud.shutdown().await;
}
