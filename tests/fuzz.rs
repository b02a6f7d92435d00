//! Property-based tests (issue 15) of what portal users and portals send us: every activity
//! of the catalogue runs with random values for its declared properties against a
//! "portal" that answers every request with a random shape (a random `result`, a batch of
//! random results, an error, a non-JSON page, any status). Each run must end in an output
//! or an error, never a panic. The case count is fixed (PROPTEST_CASES overrides it).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use b24flow_common::bitrix::Bitrix;
use b24flow_common::db::jobs::{Job, JobKind, JobState};
use b24flow_worker::activity::{Input, RunContext};
use b24flow_worker::schema::{PropType, Property};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

use crate::support::*;

/// What the fake portal answers: a status and a body, or (for a batch) one result per
/// command key, filled in from the request.
#[derive(Clone, Debug)]
enum Answer {
    Result(Value),
    Batch(Value),
    BatchErrors(Value),
    Error(u16, String),
    Raw(u16, Vec<u8>),
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,16}".prop_map(Value::String),
        "[0-9]{1,12}".prop_map(Value::String),
        Just(json!("2024-05-01T10:00:00+03:00")),
        Just(json!("Y")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        "[A-Za-z_]{1,12}",
                        Just("ID".to_string()),
                        Just("id".to_string()),
                        Just("items".to_string()),
                        Just("result".to_string()),
                        Just("DOWNLOAD_URL".to_string()),
                        Just("SIZE".to_string()),
                        Just("NAME".to_string()),
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        4 => json_value().prop_map(Answer::Result),
        4 => json_value().prop_map(Answer::Batch),
        1 => json_value().prop_map(Answer::BatchErrors),
        1 => (prop::sample::select(vec![400u16, 401, 403, 404, 429, 500, 503]), "[A-Z_]{0,24}")
            .prop_map(|(s, c)| Answer::Error(s, c)),
        1 => (
            prop::sample::select(vec![200u16, 302, 500, 502]),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(s, b)| Answer::Raw(s, b)),
    ]
}

/// A value of no particular shape, as a careless workflow may pass.
fn wild() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[0-9]{1,20}",
        "-?[0-9]{1,4}",
        "user_[0-9]{1,12}",
        "\\PC{0,24}",
        "[A-Z_]{1,10}",
        "[0-9 ]{1,12}",
        Just("999999999999999999999999".to_string()),
        Just("anna@example.com:Анна".to_string()),
    ]
    .boxed()
}

/// A value of the property's declared type (a user, a number, one of its options...).
/// Hosts and links stay on addresses that need no DNS, so the run is fast and offline.
fn typed(p: &Property) -> BoxedStrategy<String> {
    let ids = || "[1-9][0-9]{0,3}".boxed();
    match (p.key, p.ty) {
        ("smtp_host", _) => {
            prop::sample::select(vec!["127.0.0.1", "10.0.0.1", "[::1]", "bad host"])
                .prop_map(str::to_string)
                .boxed()
        }
        ("attach_urls", _) => prop::sample::select(vec![
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/latest",
            "file:///etc/passwd",
            "not a link",
        ])
        .prop_map(str::to_string)
        .boxed(),
        (key, _) if key.contains("booking") || key == "value" => {
            "(user|resource)\\|[1-9][0-9]{0,3}\\|01\\.05\\.2024 10:00:00\\|[0-9]{1,7}\\|\\PC{0,8}"
                .boxed()
        }
        (key, PropType::String | PropType::Text)
            if key == "to" || key == "cc" || key == "bcc" || key == "from" =>
        {
            prop::sample::select(vec!["anna@example.com", "b@example.com:Bob", "nobody"])
                .prop_map(str::to_string)
                .boxed()
        }
        (_, PropType::Bool) => prop::sample::select(vec!["Y", "N"])
            .prop_map(str::to_string)
            .boxed(),
        (_, PropType::User) => ids().prop_map(|id| format!("user_{id}")).boxed(),
        (_, PropType::Int) => ids(),
        (_, PropType::Double) => "[0-9]{1,5}(\\.[0-9]{1,2})?".boxed(),
        (_, PropType::Date) => Just("01.05.2024".to_string()).boxed(),
        (_, PropType::Datetime) => Just("01.05.2024 10:00:00".to_string()).boxed(),
        (_, PropType::Select) if !p.options.is_empty() => prop::sample::select(
            p.options
                .iter()
                .map(|c| c.value.clone())
                .collect::<Vec<_>>(),
        )
        .boxed(),
        _ => prop_oneof![
            "[1-9][0-9]{0,3}",
            "(DEAL|LEAD|CONTACT|COMPANY)_[1-9][0-9]{0,3}",
            "\\PC{1,24}",
        ]
        .boxed(),
    }
}

/// One property: mostly of its type, sometimes wild; a list when it is multiple.
fn property_value(p: &Property) -> BoxedStrategy<Value> {
    let one = prop_oneof![4 => typed(p), 1 => wild()].boxed();
    if p.multiple {
        prop::collection::vec(one, 0..4)
            .prop_map(|items| Value::Array(items.into_iter().map(Value::String).collect()))
            .boxed()
    } else {
        one.prop_map(Value::String).boxed()
    }
}

fn properties(props: &[Property]) -> BoxedStrategy<Value> {
    let per_key: Vec<BoxedStrategy<Option<(String, Value)>>> = props
        .iter()
        .map(|p| {
            let key = p.key.to_string();
            let value = property_value(p).prop_map(move |v| (key.clone(), v));
            // Required properties are nearly always there; others half the time.
            let present = if p.required { 0.95 } else { 0.5 };
            prop::option::weighted(present, value).boxed()
        })
        .collect();
    per_key
        .prop_map(|pairs| Value::Object(pairs.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// The fake portal's reply to `request` (a batch gets one result per command key).
fn reply(answer: &Answer, method: &str, request: &[u8]) -> (StatusCode, Vec<u8>) {
    let keys = || -> Vec<String> {
        serde_json::from_slice::<Value>(request)
            .ok()
            .and_then(|v| v.get("cmd").and_then(Value::as_object).cloned())
            .map(|cmd| cmd.keys().cloned().collect())
            .unwrap_or_default()
    };
    let each = |v: &Value| -> Value {
        Value::Object(keys().into_iter().map(|k| (k, v.clone())).collect())
    };
    let ok = |v: Value| (StatusCode::OK, v.to_string().into_bytes());
    match answer {
        Answer::Result(v) if method == "batch" => ok(json!({ "result": { "result": each(v) } })),
        Answer::Result(v) => ok(json!({ "result": v })),
        Answer::Batch(v) => {
            ok(json!({ "result": { "result": each(v), "result_total": each(&json!(1)) } }))
        }
        Answer::BatchErrors(v) => {
            ok(json!({ "result": { "result": [], "result_error": each(v) } }))
        }
        Answer::Error(status, code) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            json!({ "error": code, "error_description": "fuzz" })
                .to_string()
                .into_bytes(),
        ),
        Answer::Raw(status, body) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
            body.clone(),
        ),
    }
}

/// A portal that answers whatever the current case says, counting the requests.
async fn chaos_portal(current: Arc<Mutex<Answer>>, requests: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: Bytes| {
        let current = current.clone();
        requests.fetch_add(1, Ordering::Relaxed);
        async move {
            let method = uri
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let method = method.trim_end_matches(".json").to_string();
            let answer = current.lock().expect("answer").clone();
            let (status, bytes) = reply(&answer, &method, &body);
            (status, [("content-type", "application/json")], bytes)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/rest/", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

#[test]
fn no_property_value_or_portal_answer_makes_an_activity_panic() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let current = Arc::new(Mutex::new(Answer::Result(Value::Null)));
    let requests = Arc::new(AtomicUsize::new(0));
    let (app, ctx_parts) = rt.block_on(async {
        let app = spawn_app_with(AppOptions {
            worker: false,
            ..Default::default()
        })
        .await;
        let endpoint = chaos_portal(current.clone(), requests.clone()).await;
        let client = app.pool.get().await.expect("db");
        let portal_id: i64 = client
            .query_one("SELECT id FROM portals LIMIT 1", &[])
            .await
            .expect("the installed portal")
            .get(0);
        client
            .execute(
                "UPDATE portals SET client_endpoint = $1 WHERE id = $2",
                &[&endpoint, &portal_id],
            )
            .await
            .expect("point the portal at the fake");
        let bitrix = Bitrix::from_config(app.pool.clone(), &app.config);
        let b24 = bitrix.portal(portal_id).await.expect("portal client");
        (app, (b24, portal_id))
    });
    let (b24, portal_id) = ctx_parts;
    let activities = b24flow_worker::activities::all();
    let definitions: Vec<Vec<Property>> = activities
        .iter()
        .map(|a| a.definition().properties)
        .collect();
    let strategy = (0..definitions.len())
        .prop_flat_map(move |i| (Just(i), properties(&definitions[i]), answer()));
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let config = Arc::new(app.worker_config.clone());
    let outcome = runner.run(&strategy, |(i, props, answer)| {
        *current.lock().expect("answer") = answer;
        let activity = activities[i].clone();
        let ctx = RunContext {
            b24: b24.clone(),
            job: fuzz_job(portal_id, activity.definition().code, &props),
            db: app.pool.clone(),
            config: config.clone(),
            lang: b24flow_worker::schema::Lang::Ru,
        };
        let finished = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                activity.run(&ctx, &Input::new(&props)),
            )
            .await
        });
        prop_assert!(
            finished.is_ok(),
            "{} did not finish",
            activity.definition().code
        );
        Ok(())
    });
    rt.block_on(app.cleanup());
    if let Err(e) = outcome {
        panic!("{e}");
    }
    // Most runs get past their input to the portal; a run that never asked it tests less.
    let asked = requests.load(Ordering::Relaxed);
    eprintln!("{asked} portal requests in {} cases", cases());
    assert!(asked as u32 >= cases() / 4, "only {asked} portal requests");
}

fn fuzz_job(portal_id: i64, code: &str, properties: &Value) -> Job {
    let now = chrono::Utc::now();
    Job {
        id: uuid::Uuid::new_v4(),
        portal_id,
        kind: JobKind::Activity,
        code: code.to_string(),
        event_token: Some("fuzz".into()),
        workflow_id: Some("fuzz".into()),
        document_id: json!(["crm", "CCrmDocumentDeal", "DEAL_1"]),
        properties: properties.clone(),
        timeout_duration: 0,
        state: JobState::Running,
        attempt: 1,
        max_attempts: 8,
        outcome: None,
        result: None,
        last_error: None,
        created_at: now,
        updated_at: now,
        finished_at: None,
        runs_as_user: false,
        sealed_secret: None,
    }
}
