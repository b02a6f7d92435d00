//! Delivery guarantees under faults (SPEC.md "Guarantees"): real worker processes killed
//! mid-run, connections cut by a proxy, a portal that fails and expires tokens.
use std::collections::HashMap;
use std::time::Duration;

use b24flow_common::amqp::{self, Topology};
use b24flow_sim::{Faults, PortalConfig};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::json;

use crate::support::proxy::Proxy;
use crate::support::*;

const LONG_WAIT: Duration = Duration::from_secs(90);

fn slow_portal(share: f64, delay_ms: u64) -> PortalConfig {
    PortalConfig {
        rate_limit_enabled: false,
        faults: Faults {
            slow: share,
            slow_delay: Duration::from_millis(delay_ms),
            ..Faults::default()
        },
        ..PortalConfig::default()
    }
}

async fn fire_many(app: &TestApp, n: usize) -> Vec<String> {
    let user = app.portal.add_user(json!({ "NAME": "Dora" }));
    let mut tokens = Vec::new();
    for _ in 0..n {
        let fired = app
            .fire("user_info", json!({ "user_id": format!("user_{user}") }))
            .await;
        tokens.push(fired.event_token);
    }
    tokens
}

async fn wait_answered(app: &TestApp, n: usize) {
    let deadline = tokio::time::Instant::now() + LONG_WAIT;
    while app.portal.event_sends().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} answered",
            app.portal.event_sends().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every call was answered, successfully, and every job reached exactly one terminal state.
async fn assert_each_ended_exactly_once(app: &TestApp, tokens: &[String]) {
    wait_answered(app, tokens.len()).await;
    let sends: HashMap<String, _> = app
        .portal
        .event_sends()
        .into_iter()
        .map(|s| (s.event_token.clone(), s))
        .collect();
    for token in tokens {
        let send = sends
            .get(token)
            .unwrap_or_else(|| panic!("call {token} never answered"));
        assert_eq!(send.return_values["error_text"], "", "{token}");
    }
    wait_until(|| async {
        let client = app.pool.get().await.expect("count open jobs");
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM jobs WHERE kind = 'activity' AND state NOT IN ('succeeded')",
                &[],
            )
            .await
            .expect("count open jobs")
            .get(0);
        open == 0
    })
    .await;
    let client = app.pool.get().await.expect("read the terminal transitions");
    let rows = client
        .query(
            "SELECT j.id, count(e.id) FROM jobs j
             LEFT JOIN job_events e ON e.job_id = j.id AND e.to_state IN ('succeeded', 'failed', 'discarded')
             WHERE j.kind = 'activity' GROUP BY j.id",
            &[],
        )
        .await
        .expect("read the terminal transitions");
    assert_eq!(rows.len(), tokens.len(), "one job per call");
    for row in rows {
        assert_eq!(
            row.get::<_, i64>(1),
            1,
            "job {} has one terminal state",
            row.get::<_, uuid::Uuid>(0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_process_loses_no_call_and_each_ends_once() {
    let app = spawn_app_with(AppOptions {
        worker: false,
        install: false,
        portal: slow_portal(1.0, 800),
        ..Default::default()
    })
    .await;
    let mut worker = app.spawn_worker_process();
    app.install_only().await;
    app.wait_registered().await;
    let tokens = fire_many(&app, 40).await;
    // Killed while attempts are under way. Counting answers instead raced the worker: jobs
    // claimed together are answered in one batch, so "5 answered" could mean all 40.
    wait_until(|| async {
        let client = app.pool.get().await.expect("db");
        let running: i64 = client
            .query_one(
                "SELECT count(*) FROM jobs WHERE kind = 'activity' AND state = 'running'",
                &[],
            )
            .await
            .expect("count running jobs")
            .get(0);
        running >= 5
    })
    .await;
    worker.start_kill().expect("SIGKILL");
    let _ = worker.wait().await;
    let answered_at_kill = app.portal.event_sends().len();
    assert!(
        answered_at_kill < 40,
        "the kill came too late to test anything"
    );
    let mut restarted = app.spawn_worker_process();
    assert_each_ended_exactly_once(&app, &tokens).await;
    restarted.start_kill().ok();
    let _ = restarted.wait().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_jobs_in_flight_exits_cleanly_and_loses_none() {
    let app = spawn_app_with(AppOptions {
        worker: false,
        install: false,
        portal: slow_portal(1.0, 300),
        ..Default::default()
    })
    .await;
    let mut worker = app.spawn_worker_process();
    app.install_only().await;
    app.wait_registered().await;
    let tokens = fire_many(&app, 30).await;
    wait_until(|| async { app.portal.event_sends().len() >= 3 }).await;
    let pid = worker.id().expect("pid").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(40), worker.wait())
        .await
        .expect("worker stops within its shutdown deadline")
        .expect("exit status");
    assert!(status.success(), "worker exited with {status}");
    let mut restarted = app.spawn_worker_process();
    assert_each_ended_exactly_once(&app, &tokens).await;
    restarted.start_kill().ok();
    let _ = restarted.wait().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_cut_while_the_ingress_publishes_loses_nothing() {
    let proxy = Proxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let app = spawn_app_with(AppOptions {
        ingress_amqp_url: Some(format!("amqp://guest:guest@{}/%2f", proxy.addr)),
        ..Default::default()
    })
    .await;
    proxy.cut();
    // Every call is still accepted: the job is committed; publishing waits for the sweeper.
    let tokens = fire_many(&app, 10).await;
    assert_each_ended_exactly_once(&app, &tokens).await;
    proxy.restore();
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_cut_while_the_worker_consumes_loses_nothing() {
    let proxy = Proxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let app = spawn_app_with(AppOptions {
        worker_amqp_url: Some(format!("amqp://guest:guest@{}/%2f", proxy.addr)),
        portal: slow_portal(0.5, 300),
        ..Default::default()
    })
    .await;
    let tokens = fire_many(&app, 30).await;
    wait_until(|| async { app.portal.event_sends().len() >= 3 }).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    assert_each_ended_exactly_once(&app, &tokens).await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_cut_during_jobs_loses_nothing() {
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = spawn_app_with(AppOptions {
        worker_postgres_port: Some(proxy.addr.port()),
        portal: slow_portal(0.5, 300),
        ..Default::default()
    })
    .await;
    let tokens = fire_many(&app, 30).await;
    wait_until(|| async { app.portal.event_sends().len() >= 3 }).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    assert_each_ended_exactly_once(&app, &tokens).await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_portal_that_expires_tokens_mid_run_still_gets_every_answer() {
    let app = spawn_app().await;
    let refreshes_at_install = app.portal.refresh_count();
    app.portal.set_faults(Faults {
        error_500: 0.1,
        error_503: 0.1,
        slow: 0.05,
        slow_delay: Duration::from_millis(200),
    });
    let tokens = fire_many(&app, 40).await;
    wait_until(|| async { app.portal.event_sends().len() >= 10 }).await;
    app.portal.expire_access_tokens();
    assert_each_ended_exactly_once(&app, &tokens).await;
    assert!(app.portal.refresh_count() > refreshes_at_install);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_is_dead_lettered_and_work_goes_on() {
    let app = spawn_app().await;
    let topology = Topology::new(&app.config.amqp_prefix);
    let conn = amqp::connect(AMQP_URL, "poison").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .basic_publish(
            topology.jobs_exchange().into(),
            "work".into(),
            BasicPublishOptions::default(),
            b"\xff not json",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let dead_letters = || async {
        let q = channel
            .queue_declare(
                topology.dead_letter_queue().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        q.message_count()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while dead_letters().await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "poison message not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    assert_eq!(sent.return_values["error_text"], "");
    let _ = conn.close(200, "ok".into()).await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_exhausts_its_retries_reaches_the_workflow_with_an_error() {
    let app = spawn_app().await;
    // Every batch fails; bizproc.event.send still works, so the error can be reported.
    app.portal.fail_method("batch", true);
    let sent = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    let error = sent.return_values["error_text"].as_str().unwrap();
    // The portal is Russian: so is our verdict; the portal's own words stay as they are.
    assert!(error.contains("сделано попыток: 8"), "{error}");
    assert!(error.contains("Internal server error"), "{error}");
    wait_until(|| async {
        let client = app.pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT state, attempt FROM jobs WHERE kind = 'activity'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, String>(0) == "failed" && row.get::<_, i32>(1) == 8
    })
    .await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_whose_timeout_would_pass_before_the_next_try_gets_the_error_now() {
    let app = spawn_app().await;
    app.portal.fail_method("batch", true);
    let mut call = b24flow_sim::ActivityCall::new("user_info", json!({ "user_id": "user_1" }));
    // One second: the first backoff (~100 ms) fits, later ones do not.
    call.timeout_duration = 1;
    let fired = app.portal.fire(call).await.unwrap();
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered");
    let error = sent.return_values["error_text"].as_str().unwrap();
    assert!(
        error.contains("время ожидания бизнес-процесса истечёт"),
        "{error}"
    );
    let client = app.pool.get().await.unwrap();
    let attempt: i32 = client
        .query_one("SELECT attempt FROM jobs WHERE kind = 'activity'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(attempt < 8, "gave up early, after {attempt} attempts");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_false_while_the_broker_is_unreachable_and_back_after() {
    let proxy = Proxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let app = spawn_app_with(AppOptions {
        install: false,
        ingress_amqp_url: Some(format!("amqp://guest:guest@{}/%2f", proxy.addr)),
        ..Default::default()
    })
    .await;
    let ready = || async {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(ready().await.0, 200);
    proxy.cut();
    wait_until(|| async { ready().await.0 == 503 }).await;
    assert_eq!(
        ready().await.1,
        json!({"postgres": true, "rabbitmq": false})
    );
    proxy.restore();
    wait_until(|| async { ready().await.0 == 200 }).await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_keeps_being_retried_beyond_the_activity_attempts_until_the_portal_takes_it() {
    let app = spawn_app().await;
    app.portal.fail_method("bizproc.event.send", true);
    let fired = app.fire("user_info", json!({ "user_id": "user_1" })).await;
    // Past the activity's 8 attempts, the job is still trying to answer.
    wait_until(|| async {
        let client = app.pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT state, attempt FROM jobs WHERE kind = 'activity'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i32>(1) > 9 && row.get::<_, String>(0) != "failed"
    })
    .await;
    app.portal.fail_method("bizproc.event.send", false);
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered once the portal recovered");
    assert_eq!(sent.return_values["error_text"], "");
    // The activity itself ran once; only the answer was repeated.
    assert_eq!(app.portal.method_calls("user.get"), 1);
    app.cleanup().await;
}
