use b24flow_sim::PortalConfig;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_registers_every_activity_and_its_robot() {
    let app = spawn_app().await;
    let registered = app.portal.activities();
    for def in b24flow_worker::activities::all()
        .iter()
        .map(|a| a.definition())
    {
        let activity = registered
            .iter()
            .find(|a| a.code == def.code && !a.is_robot)
            .unwrap_or_else(|| panic!("{} not registered", def.code));
        assert_eq!(activity.handler, app.url("/b24/activity"));
        assert_eq!(activity.use_subscription, "Y");
        assert!(
            activity.return_properties.get("error_text").is_some()
                || activity.return_properties.get("ERROR_TEXT").is_some()
        );
        let robot_code = format!("robot_{}", def.code);
        assert!(
            registered
                .iter()
                .any(|a| a.code == robot_code && a.is_robot),
            "{robot_code} not registered"
        );
    }
    let user_info = registered.iter().find(|a| a.code == "user_info").unwrap();
    let user_id = user_info
        .properties
        .get("user_id")
        .expect("user_id property");
    let required = user_id
        .get("REQUIRED")
        .or_else(|| user_id.get("Required"))
        .unwrap();
    assert_eq!(required, "Y");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_update_deletes_activities_and_the_next_install_registers_them_again() {
    let app = spawn_app().await;
    app.portal.simulate_app_update();
    assert!(app.portal.activities().is_empty());
    app.install().await;
    assert!(app
        .portal
        .activities()
        .iter()
        .any(|a| a.code == "user_info"));
    // A second install while they exist updates them instead of failing.
    app.install().await;
    let client = app.pool.get().await.unwrap();
    let rows = client
        .query("SELECT state FROM jobs WHERE kind = 'register'", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    wait_until(|| async {
        let client = app.pool.get().await.unwrap();
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM jobs WHERE kind = 'register' AND state = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        done == 3
    })
    .await;
    let ok = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    assert_eq!(ok.return_values["error_text"], "");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_the_portal_does_not_confirm_is_refused() {
    let app = spawn_app_with(AppOptions {
        install: false,
        ..Default::default()
    })
    .await;
    let response = app
        .http
        .post(format!(
            "{}?DOMAIN={}&PROTOCOL=0",
            app.url("/b24/install"),
            app.portal.domain()
        ))
        .form(&[
            ("AUTH_ID", "forged"),
            ("REFRESH_ID", "forged"),
            ("member_id", "m1"),
            ("AUTH_EXPIRES", "3600"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "install_not_confirmed");
    let client = app.pool.get().await.unwrap();
    let portals: i64 = client
        .query_one("SELECT count(*) FROM portals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(portals, 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_install_event_stores_the_portal_and_registers_the_activities() {
    let app = spawn_app_with(AppOptions {
        install: false,
        ..Default::default()
    })
    .await;
    let status = app
        .portal
        .send_app_install_event(&app.url("/b24/events"))
        .await
        .unwrap();
    assert!(status.is_success(), "{status}");
    app.portal
        .wait_for_activities(&["user_info"], WAIT)
        .await
        .unwrap();
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_needs_the_right_token_and_then_calls_are_refused() {
    let app = spawn_app().await;
    let forged = app
        .post_form(
            "/b24/events",
            format!(
                "event=ONAPPUNINSTALL&auth%5Bmember_id%5D={}&auth%5Bapplication_token%5D=forged",
                app.portal.member_id()
            ),
        )
        .await;
    assert_eq!(forged.status(), 401);
    let status = app
        .portal
        .send_app_uninstall_event(&app.url("/b24/events"))
        .await
        .unwrap();
    assert!(status.is_success(), "{status}");
    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one("SELECT status, access_token_enc IS NULL FROM portals", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "uninstalled");
    assert!(row.get::<_, bool>(1), "tokens erased");
    let call = app
        .post_form(
            "/b24/activity",
            raw_call(&app, "user_info", "tok-after-uninstall"),
        )
        .await;
    assert_eq!(call.status(), 403);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_installed_without_application_token_refuses_calls_until_an_install_event_brings_one(
) {
    let app = spawn_app_with(AppOptions {
        portal: PortalConfig {
            send_application_token_on_install: false,
            rate_limit_enabled: false,
            ..PortalConfig::default()
        },
        ..Default::default()
    })
    .await;
    // Nothing is pinned on a first call: whatever it carries, it is refused with a way out.
    let call = app
        .post_form("/b24/activity", raw_call(&app, "user_info", "e1"))
        .await;
    assert_eq!(call.status(), 403);
    let body: serde_json::Value = call.json().await.unwrap();
    assert_eq!(body["error"], "application_token_missing");
    assert!(body["message"].as_str().unwrap().contains("reinstall"));
    assert_eq!(app.job_count().await, 0);

    // ONAPPINSTALL carries the token, and the OAuth server confirms its install.
    let status = app
        .portal
        .send_app_install_event(&app.url("/b24/events"))
        .await
        .unwrap();
    assert!(status.is_success(), "{status}");
    let sent = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    assert_eq!(sent.return_values["error_text"], "");
    app.cleanup().await;
}
