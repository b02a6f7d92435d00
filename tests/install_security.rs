//! Issue 11: installs that cannot be forged, tokens that cannot be stolen. Each test plays
//! an attacker who knows the victim portal's `member_id` (every user of it can read it).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use b24flow_sim::PortalConfig;
use serde_json::json;

use crate::support::*;

/// A server the attacker controls; counts every connection made to it.
async fn attacker_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let domain = listener.local_addr().expect("addr").to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (domain, connections)
}

/// What a takeover would change: endpoint, application_token, token and install versions.
async fn portal_row(app: &TestApp) -> (String, Option<String>, i64, i64) {
    let client = app.pool.get().await.expect("db");
    let row = client
        .query_one(
            "SELECT client_endpoint, application_token, token_version, install_generation
             FROM portals WHERE member_id = $1",
            &[&app.portal.member_id()],
        )
        .await
        .expect("victim portal");
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

fn encode(pairs: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

async fn forged_install_page(
    app: &TestApp,
    domain: &str,
    refresh_token: &str,
) -> reqwest::Response {
    app.http
        .post(format!(
            "{}?DOMAIN={domain}&PROTOCOL=0",
            app.url("/b24/install")
        ))
        .form(&[
            ("AUTH_ID", "attacker-access"),
            ("REFRESH_ID", refresh_token),
            ("AUTH_EXPIRES", "3600"),
            ("member_id", app.portal.member_id().as_str()),
            ("APPLICATION_TOKEN", "attacker-app-token"),
        ])
        .send()
        .await
        .expect("request")
}

async fn forged_install_event(
    app: &TestApp,
    domain: &str,
    refresh_token: &str,
    application_token: &str,
) -> reqwest::Response {
    let body = encode(&[
        ("event", "ONAPPINSTALL".into()),
        ("auth[access_token]", "attacker-access".into()),
        ("auth[refresh_token]", refresh_token.into()),
        ("auth[domain]", domain.into()),
        ("auth[client_endpoint]", format!("http://{domain}/rest/")),
        ("auth[member_id]", app.portal.member_id()),
        ("auth[application_token]", application_token.into()),
    ]);
    app.post_form("/b24/events", body).await
}

/// The victim's workflows still run against the victim's own portal.
async fn victim_still_served(app: &TestApp) {
    let sent = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    assert_eq!(sent.return_values["error_text"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_install_page_for_a_known_member_id_changes_nothing() {
    let app = spawn_app().await;
    let before = portal_row(&app).await;
    let (attacker_domain, attacker_hits) = attacker_server().await;

    // Made-up tokens: the OAuth server knows no such refresh token.
    let made_up = forged_install_page(&app, &attacker_domain, "made-up-refresh").await;
    assert_eq!(
        error_of(made_up).await,
        (403, "install_not_confirmed".into())
    );

    // A real refresh token of the attacker's own portal: the OAuth server names that
    // portal, not the victim.
    let own_portal = app
        .cloud
        .add_portal(PortalConfig::default())
        .await
        .expect("attacker's portal");
    let own = own_portal.issue_token(1);
    let mismatch = forged_install_page(&app, &attacker_domain, &own.refresh_token).await;
    assert_eq!(error_of(mismatch).await, (403, "install_mismatch".into()));

    assert_eq!(portal_row(&app).await, before, "nothing stored");
    assert_eq!(
        attacker_hits.load(Ordering::SeqCst),
        0,
        "no request to the attacker"
    );
    assert_eq!(
        own_portal.request_count(),
        0,
        "no REST request to the attacker's portal"
    );
    victim_still_served(&app).await;
    assert_eq!(attacker_hits.load(Ordering::SeqCst), 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_app_install_event_for_a_known_member_id_changes_nothing() {
    let app = spawn_app().await;
    let before = portal_row(&app).await;
    let (attacker_domain, attacker_hits) = attacker_server().await;

    let made_up =
        forged_install_event(&app, &attacker_domain, "made-up-refresh", "attacker-app").await;
    assert_eq!(
        error_of(made_up).await,
        (403, "install_not_confirmed".into())
    );
    let own_portal = app
        .cloud
        .add_portal(PortalConfig::default())
        .await
        .expect("attacker's portal");
    let own = own_portal.issue_token(1);
    let mismatch =
        forged_install_event(&app, &attacker_domain, &own.refresh_token, "attacker-app").await;
    assert_eq!(error_of(mismatch).await, (403, "install_mismatch".into()));

    assert_eq!(portal_row(&app).await, before, "nothing stored");
    assert_eq!(
        attacker_hits.load(Ordering::SeqCst),
        0,
        "no request to the attacker"
    );
    victim_still_served(&app).await;
    assert_eq!(attacker_hits.load(Ordering::SeqCst), 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_delivered_twice_is_recognised_by_its_application_token_and_changes_nothing() {
    let app = spawn_app().await;
    let before = portal_row(&app).await;
    let domain = app.portal.domain();
    // Its refresh token was spent by the first delivery; the application_token is the proof.
    let replay = forged_install_event(
        &app,
        &domain,
        "spent-refresh",
        &app.portal.application_token(),
    )
    .await;
    assert_eq!(replay.status(), 200);
    let body: serde_json::Value = replay.json().await.expect("json");
    assert_eq!(body["status"], "already_installed");
    // Without the application_token the same replay is a forgery.
    let forged = forged_install_event(&app, &domain, "spent-refresh", "guessed").await;
    assert_eq!(
        error_of(forged).await,
        (403, "install_not_confirmed".into())
    );
    assert_eq!(portal_row(&app).await, before);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_uninstall_is_refused_and_the_portal_keeps_working() {
    let app = spawn_app().await;
    let before = portal_row(&app).await;
    let forged = app
        .post_form(
            "/b24/events",
            encode(&[
                ("event", "ONAPPUNINSTALL".into()),
                ("auth[member_id]", app.portal.member_id()),
                ("auth[application_token]", "guessed".into()),
            ]),
        )
        .await;
    assert_eq!(
        error_of(forged).await,
        (401, "invalid_application_token".into())
    );
    assert_eq!(portal_row(&app).await, before);
    victim_still_served(&app).await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinstall_at_a_new_address_is_picked_up_by_a_separate_worker_process() {
    let app = spawn_app_with(AppOptions {
        worker: false,
        install: false,
        ..Default::default()
    })
    .await;
    let mut worker = app.spawn_worker_process();
    app.install_only().await;
    app.wait_registered().await;
    // The worker process now holds a session for the portal's first address.
    victim_still_served(&app).await;

    let new_domain = app.portal.move_to_new_address().await.expect("move");
    app.install_only().await;
    let (endpoint, ..) = portal_row(&app).await;
    assert_eq!(endpoint, format!("http://{new_domain}/rest/"));
    app.wait_registered().await;
    victim_still_served(&app).await;
    assert_eq!(
        app.portal.requests_to_old_addresses(),
        0,
        "the worker process kept using the old address"
    );
    let _ = worker.kill().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstalled_portals_queued_job_is_answered_deliberately_and_never_run() {
    let mut app = spawn_app().await;
    app.stop_worker().await;
    app.fire("user_info", json!({ "user_id": "user_1" })).await;
    let status = app
        .portal
        .send_app_uninstall_event(&app.url("/b24/events"))
        .await
        .expect("uninstall");
    assert!(status.is_success(), "{status}");
    let user_gets_before = app.portal.method_calls("user.get");
    app.start_worker();
    wait_until(|| async {
        let client = app.pool.get().await.expect("db");
        let state: String = client
            .query_one("SELECT state FROM jobs WHERE kind = 'activity'", &[])
            .await
            .expect("job")
            .get(0);
        state == "failed"
    })
    .await;
    assert_eq!(app.portal.method_calls("user.get"), user_gets_before);
    let client = app.pool.get().await.expect("db");
    let error: String = client
        .query_one("SELECT last_error FROM jobs WHERE kind = 'activity'", &[])
        .await
        .expect("job")
        .get(0);
    assert!(error.contains("not installed"), "{error}");
    let history: i64 = client
        .query_one("SELECT count(*) FROM job_events", &[])
        .await
        .expect("history")
        .get(0);
    assert!(history > 0, "the job history is kept");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_from_the_oauth_server_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An OAuth server that answers 200 and then streams forever.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endless_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                if socket.write_all(head).await.is_err() {
                    return;
                }
                let chunk = [b'{'; 8192];
                while socket.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    let app = spawn_app_with(AppOptions {
        install: false,
        oauth_url: Some(endless_url),
        ..Default::default()
    })
    .await;
    let status = app
        .portal
        .install(&app.url("/b24/install"))
        .await
        .expect("install request");
    // Refused as unconfirmed (the answer was cut off), not a timeout (503) after minutes.
    assert_eq!(status.as_u16(), 403);
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}
