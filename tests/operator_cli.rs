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
