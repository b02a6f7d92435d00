//! Install, uninstall and update events as the protocol sends them.

use std::time::Duration;

use serde_json::json;

use crate::support::{capture_server, decode, form_map, sim, unlimited};

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
