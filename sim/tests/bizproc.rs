//! `bizproc.activity.add` / `bizproc.robot.add` validate like the core.

use serde_json::{json, Value};

use crate::support::{sim, unlimited};

#[tokio::test]
async fn activity_registration_validates_like_the_core() {
    let s = sim(unlimited()).await;
    let ok = json!({"CODE": "ping", "HANDLER": "https://app.example.com/act", "NAME": "Ping"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (
            json!({}),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty data!",
        ),
        (
            with("CODE", json!("")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty activity code!",
        ),
        (
            with("CODE", json!("bad code!")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong activity code!",
        ),
        (
            with("HANDLER", json!("http://localhost/act")),
            "ERROR_WRONG_HANDLER_URL",
            "Wrong handler URL",
        ),
        (
            with("HANDLER", json!("ftp://app.example.com/act")),
            "ERROR_UNSUPPORTED_PROTOCOL",
            "Unsupported handler protocol",
        ),
        (
            with("NAME", json!("")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty activity NAME!",
        ),
        (
            with("PROPERTIES", json!("x")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong properties array!",
        ),
        (
            with("PROPERTIES", json!({"1st": {"Name": "x"}})),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong property key (1st)!",
        ),
        (
            with("RETURN_PROPERTIES", json!({"out": {"Type": "string"}})),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Empty property NAME (out)!",
        ),
        (
            with("FILTER", json!("b24")),
            "ERROR_ACTIVITY_VALIDATION_FAILURE",
            "Wrong activity FILTER!",
        ),
    ];
    for (body, code, text) in cases {
        let (status, answer) = s.call("bizproc.activity.add", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"], code, "{body}");
        assert_eq!(answer["error_description"], text, "{body}");
    }
    assert!(s.portal.activities().is_empty());

    // Keys are case-insensitive and stored upper-case; property keys keep their case.
    let (status, answer) = s.register("Ping.v1", "http://127.0.0.1:9/act", false).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], true);
    let a = &s.portal.activities()[0];
    assert_eq!(
        (a.code.as_str(), a.is_robot, a.auth_user_id),
        ("Ping.v1", false, 1)
    );
    assert_eq!(a.properties["user_id"]["REQUIRED"], "Y");
    assert_eq!(a.name["EN"], "Ping");

    // Activities and robots share one namespace; update finds only its own kind.
    let (status, answer) = s.register("Ping.v1", "http://127.0.0.1:9/act", true).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("ERROR_ACTIVITY_ALREADY_INSTALLED"))
    );
    let (_, answer) = s
        .call(
            "bizproc.robot.update",
            json!({"code": "Ping.v1", "fields": {"NAME": "x"}}),
        )
        .await;
    assert_eq!(answer["error"], "ERROR_ACTIVITY_NOT_FOUND");
    let (_, answer) = s
        .call(
            "bizproc.activity.update",
            json!({"code": "Ping.v1", "fields": {}}),
        )
        .await;
    assert_eq!(answer["error_description"], "No fields to update");
    let (status, _) = s
        .call(
            "bizproc.activity.update",
            json!({"code": "Ping.v1", "fields": {"handler": "https://app.example.com/v2"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.portal.activities()[0].handler,
        "https://app.example.com/v2"
    );
    assert_eq!(
        s.call("bizproc.activity.list", json!({})).await.1["result"],
        json!(["Ping.v1"])
    );
    assert_eq!(
        s.call("bizproc.robot.list", json!({})).await.1["result"],
        json!([])
    );

    // Only an admin registers.
    let user = s.portal.add_user(json!({"NAME": "Eve"}));
    let token = s.portal.issue_token(user).access_token;
    let (status, answer) = s
        .call_as(
            &token,
            "bizproc.activity.delete",
            json!({"code": "Ping.v1"}),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("ACCESS_DENIED"))
    );
    assert_eq!(
        s.call("bizproc.activity.delete", json!({"code": "Ping.v1"}))
            .await
            .0,
        200
    );
    assert!(s.portal.activities().is_empty());
    s.cloud.shutdown().await;
}
