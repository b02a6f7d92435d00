use serde_json::Value;

use crate::support::*;

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

fn no_worker() -> AppOptions {
    AppOptions {
        worker: false,
        install: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_application_token_is_rejected_and_creates_no_job() {
    let app = spawn_app().await;
    let body = raw_call(&app, "user_info", "e-forged").replace(
        &format!("application_token%5D={}", app.portal.application_token()),
        "application_token%5D=forged",
    );
    let (status, code) = error_code(app.post_form("/b24/activity", body).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_application_token"));
    assert_eq!(app.job_count().await, 0);
    let metrics = app
        .api(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("outcome=\"invalid_application_token\""),
        "rejection counted"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_portal_is_rejected_and_creates_no_job() {
    let app = spawn_app().await;
    let body = raw_call(&app, "user_info", "e-unknown")
        .replace(&app.portal.member_id(), "0123456789abcdef0123456789abcdef");
    let (status, code) = error_code(app.post_form("/b24/activity", body).await).await;
    assert_eq!((status, code.as_str()), (403, "unknown_portal"));
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_calls_are_rejected_with_a_code_and_create_no_job() {
    let app = spawn_app_with(no_worker()).await;
    let good = raw_call(&app, "user_info", "e-malformed");
    let cases = [
        (good.replace("code=user_info&", ""), "missing_field"),
        (
            good.replace("event_token=e-malformed&", ""),
            "missing_field",
        ),
        (
            good.replace("code=user_info", "code=%3Cscript%3E"),
            "malformed_body",
        ),
        (
            good.replace("properties%5Buser_id%5D=user_1", "properties=scalar"),
            "malformed_body",
        ),
        (
            good.replace("timeout_duration=0", "timeout_duration=soon"),
            "malformed_body",
        ),
        ("%ZZ%%=&&[[".to_string(), "malformed_body"),
    ];
    for (body, expected) in cases {
        let (status, code) = error_code(app.post_form("/b24/activity", body.clone()).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(code, expected, "{body}");
    }
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_with_413() {
    let app = spawn_app_with(no_worker()).await;
    let huge = format!(
        "{}&properties%5Bpad%5D={}",
        raw_call(&app, "user_info", "e-big"),
        "x".repeat(1024 * 1024 + 10)
    );
    let (status, code) = error_code(app.post_form("/b24/activity", huge).await).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_token_twice_makes_one_job() {
    let app = spawn_app_with(no_worker()).await;
    let body = raw_call(&app, "user_info", "e-twice");
    let first: Value = app
        .post_form("/b24/activity", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .post_form("/b24/activity", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["status"], "accepted");
    assert_eq!(second["status"], "duplicate");
    assert_eq!(first["job_id"], second["job_id"]);
    assert_eq!(app.job_count().await, 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_call_is_committed_before_the_answer_and_then_published() {
    let app = spawn_app_with(no_worker()).await;
    let answer: Value = app
        .post_form("/b24/activity", raw_call(&app, "user_info", "e-durable"))
        .await
        .json()
        .await
        .unwrap();
    let id: uuid::Uuid = answer["job_id"].as_str().unwrap().parse().unwrap();
    let client = app.pool.get().await.unwrap();
    let state: String = client
        .query_one("SELECT state FROM jobs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "queued", "the row is committed before the 200");
    // The committed row is the outbox: its id is published after the answer, so the work
    // queue gets it soon, without a worker or the sweeper's next round.
    let conn = b24flow_common::amqp::connect(AMQP_URL, "test-peek")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let queue = b24flow_common::amqp::Topology::new(&app.config.amqp_prefix).work_queue();
    let deadline = std::time::Instant::now() + WAIT;
    let mut queued = Vec::new();
    while !queued.contains(&id) && std::time::Instant::now() < deadline {
        match channel
            .basic_get(
                queue.as_str().into(),
                lapin::options::BasicGetOptions::default(),
            )
            .await
            .unwrap()
        {
            Some(message) => {
                let job: b24flow_common::amqp::JobMessage =
                    serde_json::from_slice(&message.delivery.data).unwrap();
                queued.extend(job.job_ids());
            }
            None => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let _ = conn.close(200, "ok".into()).await;
    assert!(queued.contains(&id), "the committed call was published");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer() {
    let app = spawn_app_with(AppOptions {
        install: false,
        ..Default::default()
    })
    .await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"postgres": true, "rabbitmq": true})
    );
    app.cleanup().await;
}
