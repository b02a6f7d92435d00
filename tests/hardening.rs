//! Issue 15: no input stalls a worker. Absurd values are refused at the ingress, a panic in
//! an attempt becomes the workflow's error, a lost lease stops the attempt before its next
//! side effect, and a job handed back at shutdown does not send its mail twice.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use b24flow_common::db::jobs;
use b24flow_worker::activity::{
    Activity, ActivityError, Input, OptionAnswers, OptionQuery, Output, RunContext,
};
use b24flow_worker::schema::ActivityDef;
use serde_json::{json, Map, Value};

use crate::support::smtp::{spawn_app_for_smtp, SmtpOptions, SmtpServer};
use crate::support::*;

fn error_text(sent: &b24flow_sim::EventSend) -> String {
    sent.return_values["error_text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
        body["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn ingress_only() -> AppOptions {
    AppOptions {
        worker: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_timeout_duration_is_refused_with_a_clear_error() {
    let app = spawn_app_with(ingress_only()).await;
    let good = raw_call(&app, "user_info", "e-timeout");
    for absurd in ["9223372036854775807", "-1", "315360001", "1e9"] {
        let body = good.replace("timeout_duration=0", &format!("timeout_duration={absurd}"));
        let (status, code, message) = error_of(app.post_form("/b24/activity", body).await).await;
        assert_eq!((status, code.as_str()), (400, "malformed_body"), "{absurd}");
        assert!(message.contains("timeout_duration"), "{message}");
    }
    assert_eq!(app.job_count().await, 0);
    let longest = good.replace("timeout_duration=0", "timeout_duration=315360000");
    assert_eq!(app.post_form("/b24/activity", longest).await.status(), 200);
    app.cleanup().await;
}

#[test]
fn a_stored_timeout_too_long_for_the_calendar_means_no_deadline() {
    let job = jobs::Job {
        id: uuid::Uuid::new_v4(),
        portal_id: 1,
        kind: jobs::JobKind::Activity,
        code: "user_info".into(),
        event_token: None,
        workflow_id: None,
        document_id: Value::Null,
        properties: json!({}),
        timeout_duration: i64::MAX,
        state: jobs::JobState::Running,
        attempt: 1,
        max_attempts: 8,
        outcome: None,
        result: None,
        last_error: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        finished_at: None,
        runs_as_user: false,
        sealed_secret: None,
    };
    assert_eq!(job.workflow_deadline(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_activity_codes_are_refused_and_add_no_metric_series() {
    let app = spawn_app_with(ingress_only()).await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let metrics = || async {
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    };
    // One refusal first, so its own counter series exists before counting.
    let body = raw_call(&app, "invented_0", "e-code-0");
    let (status, code, _) = error_of(app.post_form("/b24/activity", body).await).await;
    assert_eq!((status, code.as_str()), (400, "unknown_activity"));
    let before = series(&metrics().await);
    for i in 1..=500 {
        let body = raw_call(&app, &format!("invented_{i}"), &format!("e-code-{i}"));
        let status = app.post_form("/b24/activity", body).await.status();
        assert_eq!(status, 400);
    }
    let after = metrics().await;
    assert_eq!(series(&after), before, "no new series");
    assert!(!after.contains("invented_"), "codes never become labels");
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

/// `user_info` that panics when asked about user 666: a test-only activity, handed to the
/// worker through its library API.
struct PanicsOnDemand(Arc<dyn Activity>);

#[async_trait]
impl Activity for PanicsOnDemand {
    fn definition(&self) -> ActivityDef {
        self.0.definition()
    }
    fn option_queries(&self) -> Vec<OptionQuery> {
        self.0.option_queries()
    }
    fn definition_with_options(&self, answers: &OptionAnswers) -> ActivityDef {
        self.0.definition_with_options(answers)
    }
    fn failure_values(&self) -> Map<String, Value> {
        self.0.failure_values()
    }
    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        if input.string("user_id").as_deref() == Some("user_666") {
            panic!("injected by the test");
        }
        self.0.run(ctx, input).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_an_activity_answers_the_workflow_and_the_worker_keeps_going() {
    let mut app = spawn_app_with(AppOptions {
        worker: false,
        install: false,
        ..Default::default()
    })
    .await;
    // Two slots: three panics that kept theirs would stop this worker.
    app.worker_config.worker_concurrency = 2;
    // "Not retried" is checked as attempt 1: a machine stall longer than the tests' 5 s
    // lease would rightly hand the job to a second attempt, so the lease is long here.
    app.worker_config.job_lease = Duration::from_secs(60);
    let activities = b24flow_worker::activities::all()
        .into_iter()
        .map(|a| -> Arc<dyn Activity> {
            if a.definition().code == "user_info" {
                Arc::new(PanicsOnDemand(a))
            } else {
                a
            }
        })
        .collect();
    app.start_worker_with(activities);
    app.install().await;

    let mut tokens = Vec::new();
    for _ in 0..3 {
        let fired = app
            .fire("user_info", json!({ "user_id": "user_666" }))
            .await;
        tokens.push(fired.event_token);
    }
    for token in &tokens {
        let sent = app
            .portal
            .wait_event_send(token, WAIT)
            .await
            .expect("a panicked attempt is answered");
        assert!(
            error_text(&sent).contains("внутренняя ошибка b24flow"),
            "{}",
            error_text(&sent)
        );
    }
    let fine = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    assert_eq!(error_text(&fine), "", "the worker keeps going");

    let client = app.pool.get().await.expect("db");
    for token in &tokens {
        let row = client
            .query_one(
                "SELECT state, attempt, lease_until IS NULL FROM jobs WHERE event_token = $1",
                &[token],
            )
            .await
            .expect("job");
        let (state, attempt, no_lease): (String, i32, bool) = (row.get(0), row.get(1), row.get(2));
        assert_eq!((state.as_str(), attempt, no_lease), ("failed", 1, true));
    }
    app.cleanup().await;
}

fn mail(server: &SmtpServer, extra: Value) -> Value {
    let mut props = json!({
        "to": ["anna@example.com"],
        "subject": "Hello",
        "body": "Body text",
        "smtp_host": "127.0.0.1",
        "smtp_port": server.port.to_string(),
        "smtp_security": "none",
        "from": "robot@b24flow.test",
        "smtp_auth": "N",
    });
    for (k, v) in extra.as_object().expect("object") {
        props[k] = v.clone();
    }
    props
}

async fn job_row(app: &TestApp, token: &str) -> (String, i32) {
    let client = app.pool.get().await.expect("db");
    let row = client
        .query_one(
            "SELECT state, attempt FROM jobs WHERE event_token = $1",
            &[&token],
        )
        .await
        .expect("job");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_mid_attempt_stops_it_before_its_side_effect() {
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let app = spawn_app_for_smtp(&server, None, &["127.0.0.1/32"]).await;
    let disk_id = app.portal.add_disk_file("offer.txt", b"offer".to_vec());
    // Every portal request takes 2 s: the attempt is still fetching its attachment when
    // its lease is taken away, as a database stall longer than the lease would.
    app.portal.set_faults(b24flow_sim::Faults {
        slow: 1.0,
        slow_delay: Duration::from_secs(2),
        ..Default::default()
    });
    let fired = app
        .fire(
            "smtp_send",
            mail(&server, json!({ "attach_disk_ids": [disk_id.to_string()] })),
        )
        .await;
    let token = fired.event_token.clone();
    wait_until(|| async { job_row(&app, &token).await == ("running".into(), 1) }).await;
    let client = app.pool.get().await.expect("db");
    client
        .execute(
            "UPDATE jobs SET lease_until = now() - interval '1 second' WHERE event_token = $1",
            &[&token],
        )
        .await
        .expect("expire the lease");
    let sent = app
        .portal
        .wait_event_send(&token, Duration::from_secs(40))
        .await
        .expect("answered");
    assert_eq!(error_text(&sent), "");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.messages().len(),
        1,
        "one mail, from the newer attempt"
    );
    assert_eq!(app.portal.event_sends().len(), 1, "one answer");
    let history: Vec<i32> = client
        .query(
            "SELECT DISTINCT e.attempt FROM job_side_effects e JOIN jobs j ON j.id = e.job_id
             WHERE j.event_token = $1",
            &[&token],
        )
        .await
        .expect("markers")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        history,
        [2],
        "only the attempt that owns the job wrote markers"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_in_the_middle_of_a_mail_does_not_send_it_again() {
    let server = SmtpServer::start(SmtpOptions {
        data_delay: Some(4.0),
        ..Default::default()
    })
    .await;
    let mut app = spawn_app_with(AppOptions {
        worker: false,
        install: false,
        ..Default::default()
    })
    .await;
    app.worker_config.fetch_allow = vec![server.allow_entry()];
    app.worker_config.shutdown_deadline = Duration::from_millis(500);
    app.start_worker();
    app.install().await;
    let fired = app.fire("smtp_send", mail(&server, json!({}))).await;
    server.wait_for_messages(1).await;
    // The server has the message and has not answered yet: stop the worker now.
    app.stop_worker().await;
    assert_eq!(
        job_row(&app, &fired.event_token).await,
        ("queued".into(), 1),
        "handed back, attempt number kept"
    );
    app.start_worker();
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered");
    assert!(
        error_text(&sent).contains("письмо могло быть доставлено"),
        "{}",
        error_text(&sent)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(server.messages().len(), 1, "no second mail");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_are_refused_for_an_attempt_that_no_longer_owns_the_job() {
    let app = spawn_app_with(ingress_only()).await;
    let call = raw_call(&app, "user_info", "e-markers");
    assert_eq!(app.post_form("/b24/activity", call).await.status(), 200);
    let id = app.job_id_of("e-markers").await;
    let client = app.pool.get().await.expect("db");
    let job = jobs::claim(&client, id, Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable");
    assert!(jobs::side_effect_started(&client, id, job.attempt, "a")
        .await
        .expect("marker"));
    assert!(
        !jobs::side_effect_started(&client, id, job.attempt + 1, "b")
            .await
            .expect("marker")
    );
    // Its lease ran out: it may not start anything more, but may record what it did.
    client
        .execute(
            "UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("expire");
    assert!(!jobs::side_effect_started(&client, id, job.attempt, "c")
        .await
        .expect("marker"));
    assert!(
        jobs::side_effect_done(&client, id, job.attempt, "a", &json!(1))
            .await
            .expect("marker")
    );
    // Reaped and taken by a newer attempt: the old one records nothing.
    jobs::reap_expired(&client).await.expect("reap");
    let newer = jobs::claim(&client, id, Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable");
    assert!(
        !jobs::side_effect_done(&client, id, job.attempt, "a", &json!(2))
            .await
            .expect("marker")
    );
    assert!(!jobs::finish(
        &client,
        id,
        job.attempt,
        jobs::JobState::Failed,
        None,
        None,
        "x"
    )
    .await
    .expect("finish"));
    assert!(jobs::side_effect_started(&client, id, newer.attempt, "c")
        .await
        .expect("marker"));
    // A release at shutdown keeps the attempt number: the next attempt gets a new one.
    assert!(jobs::release(&client, id, newer.attempt)
        .await
        .expect("release"));
    let after = jobs::claim(&client, id, Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(after.attempt, newer.attempt + 1);
    assert_eq!(after.max_attempts, newer.max_attempts + 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_host_on_loopback_gets_no_exception_from_the_outbound_policy() {
    let server = SmtpServer::start(SmtpOptions::default()).await;
    // Only the SMTP server is allowed; the portal (the simulator) lives on 127.0.0.1.
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let disk_id = app
        .portal
        .add_disk_file("secrets.txt", b"internal".to_vec());
    let sent = app
        .run_activity(
            "smtp_send",
            mail(&server, json!({ "attach_disk_ids": [disk_id.to_string()] })),
        )
        .await;
    assert_eq!(error_text(&sent), "", "the message goes without it");
    assert!(
        sent.log_message.contains("вложение пропущено") && sent.log_message.contains("loopback"),
        "{}",
        sent.log_message
    );
    let mail = &server.wait_for_messages(1).await[0];
    assert!(
        mail.attachments().is_empty(),
        "nothing from the portal's host"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_host_on_a_private_address_or_port_is_refused() {
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let mut app = spawn_app_with(AppOptions {
        worker: false,
        install: false,
        ..Default::default()
    })
    .await;
    // Loopback opened as a network, not the server's port.
    app.worker_config.fetch_allow = vec!["127.0.0.0/8".into()];
    app.start_worker();
    app.install().await;
    let cases = [
        ("10.20.30.40", "25", "private network"),
        ("169.254.169.254", "587", "link-local"),
        ("127.0.0.1", &*server.port.to_string(), "SMTP port"),
    ];
    for (host, port, rule) in cases {
        let sent = app
            .run_activity(
                "smtp_send",
                mail(&server, json!({ "smtp_host": host, "smtp_port": port })),
            )
            .await;
        let error = error_text(&sent);
        assert_eq!(sent.return_values["result"], "ERROR");
        assert!(error.contains(rule), "{host}:{port}: {error}");
        assert!(
            !error.contains("10.20.30.40 ") && !error.contains("::1"),
            "{error}"
        );
    }
    let client = app.pool.get().await.expect("db");
    let attempts: i64 = client
        .query_one(
            "SELECT max(attempt)::bigint FROM jobs WHERE code = 'smtp_send'",
            &[],
        )
        .await
        .expect("attempts")
        .get(0);
    assert_eq!(attempts, 1, "a refusal is permanent, not retried");
    assert!(server.messages().is_empty());
    app.cleanup().await;
}
