//! The operators' JSON API: who may call it, what it finds, what its actions do to jobs and
//! workflows, and the audit trail they leave.
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

/// A `user_info` call whose REST requests fail (500) until the fault is lifted: with slow
/// retries it waits in `retrying`. Returns the event token and the job id.
async fn retrying_job(app: &TestApp) -> (String, String) {
    app.portal.fail_method("batch", true);
    let fired = app.fire("user_info", json!({ "user_id": "user_1" })).await;
    let id = app.job_id_of(&fired.event_token).await.to_string();
    wait_until(|| async { app.api_get(&format!("/api/jobs/{id}")).await["status"] == "retrying" })
        .await;
    (fired.event_token, id)
}

/// The line of a metric with all these labels, in the Prometheus text format.
fn metric_line<'a>(text: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
    text.lines().find(|l| {
        l.starts_with(&format!("{name}{{")) && labels.iter().all(|label| l.contains(label))
    })
}

fn retrying_app() -> AppOptions {
    AppOptions {
        slow_retries: true,
        ..AppOptions::default()
    }
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_metrics_refuse_callers_without_the_operator_token_and_throttle_guessing() {
    let app = spawn_app_with(AppOptions {
        install: false,
        worker: false,
        ..AppOptions::default()
    })
    .await;
    let get = |path: &str, token: Option<&str>| {
        let mut request = app.http.get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        status_and_code(get("/api/jobs", None).await.unwrap()).await,
        (401, "operator_token_required".into())
    );
    assert_eq!(get("/metrics", None).await.unwrap().status(), 401);
    assert_eq!(
        status_and_code(get("/api/jobs", Some("wrong")).await.unwrap()).await,
        (401, "operator_token_invalid".into())
    );
    assert_eq!(
        get("/api/jobs", Some(&app.operator_token))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/metrics", Some(&app.operator_token))
            .await
            .unwrap()
            .status(),
        200
    );
    // Keep guessing: the address runs out of failures and is refused even with the token.
    let mut throttled = false;
    for _ in 0..20 {
        if get("/api/jobs", Some("guess")).await.unwrap().status() == 429 {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "wrong tokens were never throttled");
    assert_eq!(
        status_and_code(get("/api/jobs", Some(&app.operator_token)).await.unwrap()).await,
        (429, "too_many_failed_attempts".into())
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_found_by_state_activity_portal_error_text_and_time_and_paged_by_cursor() {
    let app = spawn_app().await;
    let user = app
        .portal
        .add_user(json!({ "NAME": "Ann", "ACTIVE": true }));
    for _ in 0..2 {
        app.run_activity("user_info", json!({ "user_id": format!("user_{user}") }))
            .await;
    }
    let failed = app
        .run_activity("user_info", json!({ "user_id": "user_999999" }))
        .await;
    let error = failed.return_values["error_text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!error.is_empty());
    // Each job ends just after its answer reaches the portal.
    wait_until(|| async {
        let finished = app.api_get("/api/jobs?activity=user_info&limit=10").await;
        finished["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["finished_at"].is_string())
    })
    .await;
    let ids = |page: &Value| -> Vec<String> {
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = app.api_get("/api/jobs?activity=user_info").await;
    assert_eq!(ids(&all).len(), 3);
    let by_state = app.api_get("/api/jobs?state=failed").await;
    assert_eq!(ids(&by_state).len(), 1);
    assert_eq!(by_state["jobs"][0]["error_class"], "activity");
    let by_class = app.api_get("/api/jobs?error_class=activity").await;
    assert_eq!(ids(&by_class), ids(&by_state));
    // A distinctive word of the error, in another case.
    let word = error
        .split_whitespace()
        .max_by_key(|w| w.len())
        .unwrap()
        .to_uppercase();
    let by_text = app
        .api(Method::GET, "/api/jobs")
        .query(&[("q", word.as_str())])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(ids(&by_text), ids(&by_state), "search for {word:?}");
    let domain = app.portal.domain();
    let by_portal = app
        .api_get(&format!(
            "/api/jobs?portal={domain}&state=succeeded&activity=user_info"
        ))
        .await;
    assert_eq!(ids(&by_portal).len(), 2);
    assert_eq!(
        ids(&app.api_get("/api/jobs?portal=nowhere.example").await).len(),
        0
    );
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let later = app
        .api(Method::GET, "/api/jobs")
        .query(&[("since", future.as_str())])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(ids(&later).len(), 0);
    // Pages of one, newest first, each job exactly once.
    let mut seen = Vec::new();
    let mut path = "/api/jobs?activity=user_info&limit=1".to_string();
    loop {
        let page = app.api_get(&path).await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/jobs?activity=user_info&limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all));
    // Bad filters are refused with a reason.
    for (query, code) in [
        ("state=exploded", "invalid_state"),
        ("since=yesterday", "invalid_time"),
        ("cursor=xyz", "invalid_cursor"),
        ("limit=0", "invalid_limit"),
        ("error_class=cosmic", "invalid_error_class"),
    ] {
        let response = app
            .api(Method::GET, &format!("/api/jobs?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (400, code.to_string()),
            "{query}"
        );
    }
    // Counts by state, per portal and per activity.
    let stats = app.api_get("/api/stats").await;
    let activity_rows = stats["by_activity"].as_array().unwrap();
    assert!(activity_rows.contains(
        &json!({"key": "user_info", "portal_id": null, "state": "succeeded", "count": 2})
    ));
    assert!(activity_rows
        .contains(&json!({"key": "user_info", "portal_id": null, "state": "failed", "count": 1})));
    assert!(stats["by_portal"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["key"] == domain
            && r["state"] == "succeeded"
            && r["count"].as_i64() >= Some(2)));
    let series = app.api_get("/api/stats/timeseries?window=hour").await;
    let buckets = series.as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    let answered: i64 = buckets
        .iter()
        .map(|b| b["succeeded"].as_i64().unwrap() + b["failed"].as_i64().unwrap())
        .sum();
    assert_eq!(answered, 3);
    assert!(buckets.iter().any(|b| b["latency_p50_seconds"].is_number()));
    assert_eq!(
        app.api_get("/api/stats/timeseries?window=day")
            .await
            .as_array()
            .unwrap()
            .len(),
        48
    );
    let queues = app.api_get("/api/queues").await;
    assert_eq!(
        queues[0]["name"],
        format!("{}.work", app.config.amqp_prefix)
    );
    assert_eq!(queues[0]["consumers"], 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_shows_its_properties_attempts_history_and_answer_without_secrets() {
    let app = spawn_app().await;
    let sent = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    let id = app.job_id_of(&sent.event_token).await;
    // The job ends just after its answer reaches the portal.
    wait_until(|| async { app.api_get(&format!("/api/jobs/{id}")).await["state"] == "succeeded" })
        .await;
    let job = app.api_get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["properties"]["user_id"], "user_1");
    assert_eq!(job["answered"], true);
    assert_eq!(job["answer"]["success"], true);
    assert_eq!(job["attempts"][0]["number"], 1);
    assert_eq!(job["attempts"][0]["result"], "succeeded");
    let steps: Vec<&str> = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["queued", "running", "succeeded"]);
    let missing = app
        .api(Method::GET, &format!("/api/jobs/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(missing).await,
        (404, "job_not_found".into())
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_failing_job_runs_it_now_and_the_audit_trail_names_the_operator() {
    let app = spawn_app_with(retrying_app()).await;
    let (event_token, id) = retrying_job(&app).await;
    app.portal.fail_method("batch", false);
    let response = app
        .api(Method::POST, &format!("/api/jobs/{id}/retry"))
        .header("x-b24flow-operator", "ann")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The next attempt was an hour away; the retry runs it now.
    let sent = app
        .portal
        .wait_event_send(&event_token, WAIT)
        .await
        .expect("answered after the retry");
    assert_eq!(sent.return_values["error_text"], "");
    wait_until(|| async { app.api_get(&format!("/api/jobs/{id}")).await["state"] == "succeeded" })
        .await;
    let job = app.api_get(&format!("/api/jobs/{id}")).await;
    let audit = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["actor"].is_string())
        .expect("the retry is in the history")
        .clone();
    assert_eq!(audit["message"], "retry requested by an operator");
    assert!(
        audit["actor"]
            .as_str()
            .unwrap()
            .starts_with("ann via api from 127.0.0.1"),
        "{audit}"
    );
    assert!(audit["at"].is_string());
    // A finished job that answered its workflow cannot be retried.
    let again = app
        .api(Method::POST, &format!("/api/jobs/{id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(again).await,
        (409, "job_not_actionable".into())
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarding_a_job_answers_its_workflow_once_with_the_operators_error() {
    let app = spawn_app_with(retrying_app()).await;
    let (event_token, id) = retrying_job(&app).await;
    let refused = app
        .api(Method::POST, &format!("/api/jobs/{id}/discard"))
        .json(&json!({ "error_text": "  " }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(refused).await,
        (400, "error_text_required".into())
    );
    let response = app
        .api(Method::POST, &format!("/api/jobs/{id}/discard"))
        .json(&json!({ "error_text": "cancelled by support, ticket 42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = app
        .portal
        .wait_event_send(&event_token, WAIT)
        .await
        .expect("the workflow is answered");
    assert_eq!(
        sent.return_values["error_text"],
        "cancelled by support, ticket 42"
    );
    wait_until(|| async { app.api_get(&format!("/api/jobs/{id}")).await["state"] == "discarded" })
        .await;
    let job = app.api_get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["error_class"], "operator");
    assert_eq!(job["answered"], true);
    let history = job["history"].as_array().unwrap();
    assert!(history.iter().any(|e| e["message"]
        == "discard requested: cancelled by support, ticket 42"
        && e["actor"].as_str().unwrap().contains("via api")));
    assert_eq!(history.last().unwrap()["to_state"], "discarded");
    let sends = app
        .portal
        .event_sends()
        .iter()
        .filter(|s| s.event_token == event_token)
        .count();
    assert_eq!(sends, 1, "exactly one bizproc.event.send");
    // The activity did not run again for the discard.
    assert_eq!(app.portal.method_calls("bizproc.event.send"), 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_job_answers_with_the_activitys_failure_values_too() {
    let app = spawn_app_with(retrying_app()).await;
    let company = app.portal.crm_add_item(4, json!({"title": "Acme"}));
    app.portal.fail_method("crm.timeline.comment.add", true);
    app.portal.fail_method("crm.timeline.comment.list", true);
    let fired = app
        .fire(
            "crm_feed_post",
            json!({ "entity_type": "company", "entity_id": company.to_string(), "title": "T", "message": "M" }),
        )
        .await;
    let id = app.job_id_of(&fired.event_token).await;
    wait_until(|| async { app.api_get(&format!("/api/jobs/{id}")).await["status"] == "retrying" })
        .await;
    let response = app
        .api(Method::POST, &format!("/api/jobs/{id}/discard"))
        .json(&json!({ "error_text": "not needed any more" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered");
    assert_eq!(sent.return_values["error_text"], "not needed any more");
    // The workflow can branch on `result` exactly as for the activity's own errors.
    assert_eq!(sent.return_values["result"], "false");
    assert!(app.portal.crm_comments().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_need_a_filter_and_act_on_every_matching_job() {
    let app = spawn_app_with(retrying_app()).await;
    let (first, _) = retrying_job(&app).await;
    let (second, _) = retrying_job(&app).await;
    let unfiltered = app
        .api(Method::POST, "/api/jobs/retry")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(unfiltered).await,
        (400, "filter_required".into())
    );
    let discarded = app
        .api(Method::POST, "/api/jobs/discard")
        .json(&json!({ "state": "retrying", "q": "Internal server error", "error_text": "portal retired" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(discarded["count"], 2, "{discarded}");
    // The two answers may share one `batch` request (cross-job batching), so the portal
    // must take batches again before they can arrive.
    app.portal.fail_method("batch", false);
    for token in [&first, &second] {
        let sent = app
            .portal
            .wait_event_send(token, WAIT)
            .await
            .expect("answered");
        assert_eq!(sent.return_values["error_text"], "portal retired");
    }
    // A bulk retry finds nothing left to do.
    let retried = app
        .api(Method::POST, "/api/jobs/retry")
        .json(&json!({ "activity": "user_info" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(retried["count"], 0, "{retried}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_portals_jobs_wait_without_spending_attempts_and_run_when_resumed() {
    let app = spawn_app().await;
    let domain = app.portal.domain();
    let paused = app
        .api(Method::POST, &format!("/api/portals/{domain}/pause"))
        .header("x-b24flow-operator", "bob")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(paused["paused_at"].is_string(), "{paused}");
    assert!(paused["paused_by"]
        .as_str()
        .unwrap()
        .starts_with("bob via api"));
    let fired = app.fire("user_info", json!({ "user_id": "user_1" })).await;
    let id = app.job_id_of(&fired.event_token).await;
    // The delivery reached the worker and was refused; the job waits with no attempt spent.
    wait_until(|| async {
        let client = app.pool.get().await.unwrap();
        client
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM job_unconfirmed WHERE job_id = $1)",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let job = app.api_get(&format!("/api/jobs/{id}")).await;
    assert_eq!(
        (job["status"].as_str(), job["attempt"].as_i64()),
        (Some("paused"), Some(0))
    );
    let metrics = app
        .api(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric_line(
            &metrics,
            "b24flow_jobs_current",
            &["state=\"paused\"", "code=\"user_info\""]
        )
        .is_some_and(|l| l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        metric_line(&metrics, "b24flow_queue_consumers", &["queue=\"work\""])
            .is_some_and(|l| l.ends_with(" 1"))
    );
    assert!(app
        .portal
        .wait_event_send(&fired.event_token, std::time::Duration::from_millis(10))
        .await
        .is_none());
    let resumed = app
        .api(Method::POST, &format!("/api/portals/{domain}/resume"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(resumed["paused_at"].is_null());
    let actions: Vec<&str> = resumed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["resume", "pause"]);
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered after resume");
    assert_eq!(sent.return_values["error_text"], "");
    let job = app.api_get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["attempt"], 1);
    let portals = app.api_get("/api/portals").await;
    assert_eq!(portals[0]["domain"], domain);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_alerting_series_and_can_be_served_on_a_private_address_without_a_token()
{
    let app = spawn_app().await;
    app.run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap();
    drop(free);
    let mut config = app.config.clone();
    config.metrics_listen = Some(metrics_addr);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let state =
        b24flow_ingress::AppState::new(config, b24flow_worker::activities::codes()).unwrap();
    let server = tokio::spawn(b24flow_ingress::serve(listener, state, stop.clone()));
    let url = format!("http://{metrics_addr}/metrics");
    wait_until(|| async {
        app.http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let text = app
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "b24flow_ingress_calls_total",
        "b24flow_jobs_finished_total",
        "b24flow_job_seconds_bucket",
        "b24flow_job_attempts_bucket",
        "b24flow_rest_requests_total",
        "b24flow_queue_messages",
        "b24flow_jobs_current",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
    // Secrets never reach metrics.
    assert!(!text.contains(&app.operator_token));
    stop.cancel();
    let _ = server.await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portals_shared_limiter_state_is_reported() {
    let app = spawn_app().await;
    app.run_activity("user_info", serde_json::json!({ "user_id": "user_1" }))
        .await;
    let limits = app.api_get("/api/portals/1/limits").await;
    assert_eq!(limits["plan"], "standard", "{limits}");
    assert_eq!(limits["burst"], 50);
    assert!(limits["requests"].as_i64().unwrap_or(0) >= 1, "{limits}");
    assert_eq!(limits["throttled"], 0);
    app.cleanup().await;
}

/// The REST calls of attempt `number` of a job's answer.
fn rest_calls_of(job: &Value, number: i64) -> Vec<Value> {
    job["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["number"] == number)
        .flat_map(|a| a["rest_calls"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The job once attempt `number`'s REST call log is stored (just after the attempt ends).
async fn job_with_rest_calls(app: &TestApp, id: &str, number: i64) -> Value {
    wait_until(|| async {
        let job = app.api_get(&format!("/api/jobs/{id}")).await;
        let attempt = job["attempts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["number"] == number)
            .cloned()
            .unwrap_or(Value::Null);
        !rest_calls_of(&job, number).is_empty() || attempt["rest_calls_omitted"].as_u64() > Some(0)
    })
    .await;
    app.api_get(&format!("/api/jobs/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_rest_calls_show_each_attempts_methods_and_outcomes_without_secrets() {
    let app = spawn_app_with(retrying_app()).await;
    let (event_token, id) = retrying_job(&app).await;
    // The first attempt: its batch was refused with 500 INTERNAL_SERVER_ERROR.
    let job = job_with_rest_calls(&app, &id, 1).await;
    let first = rest_calls_of(&job, 1);
    assert!(!first.is_empty(), "{job}");
    let user_get = first
        .iter()
        .find(|c| c["method"] == "user.get")
        .unwrap_or_else(|| panic!("user.get in {first:?}"));
    assert_eq!(user_get["outcome"], "error", "{user_get}");
    assert_eq!(user_get["code"], "INTERNAL_SERVER_ERROR");
    assert_eq!(user_get["status"], 500);
    assert!(["own_batch", "shared_batch", "alone"].contains(&user_get["request"].as_str().unwrap()));
    assert!(user_get["duration_ms"].is_u64());
    assert!(user_get["at"].is_string());
    assert!(user_get["sends"].as_u64() >= Some(1));

    app.portal.fail_method("batch", false);
    let retried = app
        .api(Method::POST, &format!("/api/jobs/{id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    app.portal
        .wait_event_send(&event_token, WAIT)
        .await
        .expect("answered after the retry");
    wait_until(|| async { app.api_get(&format!("/api/jobs/{id}")).await["state"] == "succeeded" })
        .await;
    let job = job_with_rest_calls(&app, &id, 2).await;
    let second = rest_calls_of(&job, 2);
    let outcome_of = |method: &str| {
        second
            .iter()
            .find(|c| c["method"] == method)
            .map(|c| c["outcome"].clone())
    };
    assert_eq!(outcome_of("user.get"), Some(json!("ok")), "{second:?}");
    // The answer to the workflow is one of the attempt's calls too.
    assert_eq!(
        outcome_of("bizproc.event.send"),
        Some(json!("ok")),
        "{second:?}"
    );
    // The first attempt's log is still there, unchanged.
    assert_eq!(rest_calls_of(&job, 1), first);

    // Names, codes and numbers only: no token, no parameters, no answers.
    let client = app.pool.get().await.expect("db");
    let tokens = b24flow_common::db::portals::load_tokens(&client, &app.config.secrets, 1)
        .await
        .expect("tokens")
        .expect("installed");
    let text = job.to_string();
    assert!(!text.contains(&tokens.access_token));
    assert!(!text.contains(&tokens.refresh_token));
    let calls_text = Value::Array(second).to_string();
    assert!(!calls_text.contains(&event_token), "{calls_text}");
    assert!(!calls_text.contains("user_1"), "{calls_text}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempts_rest_call_log_keeps_the_first_calls_and_counts_the_rest() {
    let mut app = spawn_app().await;
    app.stop_worker().await;
    app.worker_config.rest_calls_per_attempt = 2;
    app.start_worker();
    let sent = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    let id = app.job_id_of(&sent.event_token).await.to_string();
    // user.get and department.get, then bizproc.event.send: one more than the cap.
    let job = job_with_rest_calls(&app, &id, 1).await;
    assert_eq!(rest_calls_of(&job, 1).len(), 2, "{job}");
    assert!(job["attempts"][0]["rest_calls_omitted"].as_u64() >= Some(1));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_set_a_portals_plan_with_clear_refusals_and_an_audit_record() {
    let app = spawn_app().await;
    let put = |body: Value| {
        app.api(Method::PUT, "/api/portals/1/limits")
            .header("x-b24flow-operator", "ann")
            .json(&body)
    };
    for (body, code, words) in [
        (json!({ "plan": "gold" }), "invalid_plan", "unknown plan"),
        (
            json!({ "plan": "custom", "burst": 5 }),
            "invalid_plan",
            "needs a rate",
        ),
        (
            json!({ "plan": "custom", "rate_per_sec": -1, "burst": 5 }),
            "invalid_plan",
            "more than 0",
        ),
        (
            json!({ "plan": "custom", "rate_per_sec": 2, "burst": 0 }),
            "invalid_plan",
            "between 1 and",
        ),
        (
            json!({ "plan": "standard", "rate_per_sec": 9 }),
            "invalid_plan",
            "only with the custom plan",
        ),
        (json!({ "rate_per_sec": 9 }), "invalid_body", "plan"),
    ] {
        let response = put(body.clone()).send().await.unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], code, "{body}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains(words),
            "{body}: {answer}"
        );
    }
    let nowhere = app
        .api(Method::PUT, "/api/portals/nowhere.bitrix24.com/limits")
        .json(&json!({ "plan": "enterprise" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(nowhere).await,
        (404, "portal_not_found".into())
    );
    let anonymous = app
        .http
        .put(app.url("/api/portals/1/limits"))
        .json(&json!({ "plan": "enterprise" }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // Nothing refused changed anything.
    assert_eq!(
        app.api_get("/api/portals/1/limits").await["plan"],
        "standard"
    );

    let set = put(json!({ "plan": "custom", "rate_per_sec": 4, "burst": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let limits: Value = set.json().await.unwrap();
    assert_eq!(limits["plan"], "custom", "{limits}");
    assert_eq!(limits["rate_per_sec"], 4.0);
    assert_eq!(limits["burst"], 10);
    assert_eq!(app.api_get("/api/portals/1/limits").await["plan"], "custom");

    let portal = app.api_get("/api/portals/1").await;
    let event = portal["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "plan")
        .unwrap_or_else(|| panic!("the plan change is audited: {portal}"))
        .clone();
    assert!(
        event["actor"]
            .as_str()
            .unwrap()
            .starts_with("ann via api from 127.0.0.1"),
        "{event}"
    );
    assert_eq!(
        event["message"],
        "custom 4/s burst 10 (was standard 2/s burst 50)"
    );
    assert!(event["at"].is_string());
    // POST does the same (forms and clients that cannot PUT).
    let posted = app
        .api(Method::POST, "/api/portals/1/limits")
        .json(&json!({ "plan": "enterprise" }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(app.api_get("/api/portals/1/limits").await["burst"], 250);
    app.cleanup().await;
}
