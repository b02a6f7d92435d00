//! The REST envelope (`result`, `time`, errors) and how a request authenticates.

use serde_json::json;

use crate::support::{decode, sim, unlimited};

#[tokio::test]
async fn rest_answers_with_the_documented_envelopes_and_auth_errors() {
    let s = sim(unlimited()).await;
    let (status, body) = s.call("app.info", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["CODE"], "b24flow");
    assert_eq!(
        body["result"]["INSTALLED"], false,
        "not installed until the install finished"
    );
    for key in [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating_reset_at",
        "operating",
    ] {
        assert!(body["time"].get(key).is_some(), "time.{key}");
    }
    // Method names are case-insensitive; the token may come as a Bearer header.
    let r = s
        .http
        .get(format!("{}APP.Info.json", s.portal.rest_url()))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, body) = s.call("no.such.method", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("ERROR_METHOD_NOT_FOUND"))
    );
    let (status, body) = s.call_as("made-up", "app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("NO_AUTH_FOUND"))
    );
    let r = s
        .http
        .post(format!("{}app.info", s.portal.rest_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(decode(r).await.1["error"], "NO_AUTH_FOUND");

    // A token of another portal of the same cloud is known but invalid here.
    let other = s.cloud.add_portal(unlimited()).await.unwrap();
    let foreign = other.issue_token(1).access_token;
    let (status, body) = s.call_as(&foreign, "app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    s.cloud.shutdown().await;
}
