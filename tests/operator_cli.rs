//! `b24flow jobs`: the command line over the operators' API.
use serde_json::{json, Value};

use crate::support::*;

/// Runs `b24flow jobs <args>` against the app with its operator token; (exit ok, stdout, stderr).
async fn jobs_cli(app: &TestApp, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_b24flow"))
        .arg("jobs")
        .args(["--url", &app.address])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("B24FLOW_OPERATOR_TOKEN", token)
        .env("B24FLOW_SECRET_KEY", &app.secret_key)
        .env("USER", "carol")
        .output()
        .await
        .expect("run b24flow jobs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_command_lists_shows_pauses_and_retries_through_the_api() {
    let app = spawn_app_with(AppOptions {
        slow_retries: true,
        ..AppOptions::default()
    })
    .await;
    let token = app.operator_token.clone();
    let (ok, _, stderr) = jobs_cli(&app, "wrong", &["stats"]).await;
    assert!(!ok);
    assert!(stderr.contains("B24FLOW_OPERATOR_TOKEN"), "{stderr}");

    app.portal.fail_method("batch", true);
    let fired = app.fire("user_info", json!({ "user_id": "user_1" })).await;
    let id = app.job_id_of(&fired.event_token).await.to_string();
    wait_until(|| async { app.api_get(&format!("/api/jobs/{id}")).await["status"] == "retrying" })
        .await;

    let (ok, table, _) = jobs_cli(&app, &token, &["list", "--state", "retrying"]).await;
    assert!(ok);
    assert!(
        table.contains(&id) && table.contains("retrying") && table.contains("user_info"),
        "{table}"
    );
    let (ok, shown, _) = jobs_cli(&app, &token, &["--json", "show", &id]).await;
    assert!(ok);
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["status"], "retrying");

    let domain = app.portal.domain();
    let (ok, paused, _) = jobs_cli(&app, &token, &["pause", &domain]).await;
    assert!(
        ok && paused.contains("paused by carol@cli via api"),
        "{paused}"
    );
    let (ok, _, _) = jobs_cli(&app, &token, &["resume", &domain]).await;
    assert!(ok);

    app.portal.fail_method("batch", false);
    let (ok, bulk, stderr) = jobs_cli(
        &app,
        &token,
        &[
            "retry",
            "--state",
            "retrying",
            "-q",
            "Internal server error",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(bulk.trim(), "1 job(s)");
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered");
    assert_eq!(sent.return_values["error_text"], "");
    let (ok, stats, _) = jobs_cli(&app, &token, &["stats"]).await;
    assert!(
        ok && stats.contains("user_info") && stats.contains(".work"),
        "{stats}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_set_through_the_api_and_the_cli_is_audited_and_the_running_worker_follows_it() {
    let app = spawn_app().await;
    let token = app.operator_token.clone();
    // One request per 1000 s: whatever the job asks next waits in the worker's limiter.
    let slow = app
        .api(reqwest::Method::PUT, "/api/portals/1/limits")
        .json(&json!({ "plan": "custom", "rate_per_sec": 0.001, "burst": 1 }))
        .send()
        .await
        .expect("api");
    assert_eq!(slow.status(), 200);
    let fired = app.fire("user_info", json!({ "user_id": "user_1" })).await;
    assert!(
        app.portal
            .wait_event_send(&fired.event_token, std::time::Duration::from_secs(2))
            .await
            .is_none(),
        "at one request per 1000 s the job cannot have answered yet"
    );

    let (ok, _, stderr) = jobs_cli(&app, &token, &["plan", "1", "custom", "--burst", "5"]).await;
    assert!(!ok);
    assert!(stderr.contains("needs a rate"), "{stderr}");
    let (ok, stdout, stderr) = jobs_cli(&app, &token, &["plan", "1", "enterprise"]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("plan enterprise (5/s, burst 250)"),
        "{stdout}"
    );
    // The worker's waiting request hears of the change and asks the bucket again: the job
    // answers well before the old plan (or the limiter's longest sleep) would let it.
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, std::time::Duration::from_secs(30))
        .await
        .expect("answered under the new plan");
    assert_eq!(sent.return_values["error_text"], "");

    let portal = app.api_get("/api/portals/1").await;
    let changes: Vec<(String, String)> = portal["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "plan")
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(changes.len(), 2, "{portal}");
    // Newest first.
    assert!(changes[0].0.starts_with("carol@cli via api"), "{changes:?}");
    assert_eq!(
        changes[0].1,
        "enterprise 5/s burst 250 (was custom 0.001/s burst 1)"
    );

    // `jobs show` lists the job's REST calls per attempt.
    let id = app.job_id_of(&fired.event_token).await.to_string();
    wait_until(|| async {
        let (_, shown, _) = jobs_cli(&app, &token, &["show", &id]).await;
        shown.contains("attempt 1 REST calls") && shown.contains("bizproc.event.send")
    })
    .await;
    let (_, shown, _) = jobs_cli(&app, &token, &["show", &id]).await;
    assert!(
        shown.contains("user.get") && shown.contains("ok"),
        "{shown}"
    );
    app.cleanup().await;
}
