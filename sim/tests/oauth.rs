//! Access tokens expire; the OAuth refresh rotates the single-use refresh token.

use serde_json::json;

use crate::support::{decode, sim, unlimited, Sim};

#[tokio::test]
async fn tokens_expire_and_refresh_rotates_the_refresh_token() {
    let s = sim(unlimited()).await;
    let pair = s.portal.issue_token(1);
    s.portal.expire_access_tokens();
    let (status, body) = s.call_as(&pair.access_token, "app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("expired_token"))
    );

    let refresh = |token: &str, secret: &str| {
        let url = format!(
            "{}/oauth/token/?grant_type=refresh_token&client_id={}&client_secret={secret}&refresh_token={token}",
            s.cloud.oauth_url(),
            s.cloud.client_id()
        );
        s.http.get(url).send()
    };
    let (status, body) = decode(
        refresh(&pair.refresh_token, s.cloud.client_secret())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for key in [
        "access_token",
        "refresh_token",
        "expires",
        "expires_in",
        "client_endpoint",
        "server_endpoint",
        "member_id",
        "scope",
        "status",
        "user_id",
    ] {
        assert!(body.get(key).is_some(), "{key} in {body}");
    }
    assert_eq!(body["domain"], "oauth.bitrix.info");
    assert_eq!(body["client_endpoint"], s.portal.rest_url());
    assert_eq!(body["member_id"], s.portal.member_id());
    assert_eq!(s.portal.refresh_count(), 1);
    let fresh = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.call_as(&fresh, "app.info", json!({})).await.0, 200);

    // The old refresh token was rotated out.
    let (status, body) = decode(
        refresh(&pair.refresh_token, s.cloud.client_secret())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Wrong client credentials.
    let next = body_refresh_token(&s);
    let (status, body) = decode(refresh(&next, "wrong").await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // A POST form is accepted too.
    let r = s
        .http
        .post(format!("{}/oauth/token/", s.cloud.oauth_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", s.cloud.client_id()),
            ("client_secret", s.cloud.client_secret()),
            ("refresh_token", next.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.portal.refresh_count(), 2);
    s.cloud.shutdown().await;
}

fn body_refresh_token(s: &Sim) -> String {
    s.portal.issue_token(1).refresh_token
}
