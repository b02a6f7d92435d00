//! What a fired activity call carries, and `bizproc.event.send` closing it once.

use std::time::Duration;

use b24flow_sim::ActivityCall;
use serde_json::json;

use crate::support::{capture_server, form_map, sim, unlimited};

#[tokio::test]
async fn a_fired_call_carries_the_documented_payload_and_event_send_closes_it_once() {
    let s = sim(unlimited()).await;
    let (app, seen) = capture_server().await;
    assert_eq!(
        s.register("ping", &format!("{app}/act"), false).await.0,
        200
    );
    let call = ActivityCall::new(
        "ping",
        json!({"user_id": "user_1", "tags": ["a", "b"], "undeclared": "x"}),
    );
    let fired = s.portal.fire(call).await.unwrap();
    assert_eq!(fired.status, 200);

    let (path, raw) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/act");
    assert!(raw.contains("auth%5Baccess_token%5D="), "{raw}");
    let f = form_map(&raw);
    let wf = &f["workflow_id"];
    assert_eq!(wf, &fired.workflow_id);
    let (head, tail) = wf.split_once('.').unwrap();
    assert!(
        head.len() == 14 && head.bytes().all(|b| b.is_ascii_hexdigit()) && tail.len() == 8,
        "{wf}"
    );
    let token = &f["event_token"];
    assert_eq!(token, &fired.event_token);
    let (value, signature) = token.rsplit_once('.').unwrap();
    let parts: Vec<&str> = value.split('|').collect();
    assert_eq!(parts[0], wf);
    assert!(
        parts[1].starts_with('A') && parts[1].split('_').count() == 4,
        "{token}"
    );
    assert_eq!(parts[2].len(), 32);
    assert!(signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(f["code"], "ping");
    assert_eq!(f["document_id[2]"], "DEAL_1");
    assert_eq!(f["document_type[1]"], "CCrmDocumentDeal");
    assert_eq!(f["properties[user_id]"], "user_1");
    assert_eq!(
        (
            f["properties[tags][0]"].as_str(),
            f["properties[tags][1]"].as_str()
        ),
        ("a", "b")
    );
    assert!(!f.contains_key("properties[undeclared]"));
    assert_eq!(f["use_subscription"], "Y");
    assert_eq!(f["timeout_duration"], "0");
    assert_eq!(f["auth[application_token]"], s.portal.application_token());
    assert_eq!(f["auth[member_id]"], s.portal.member_id());
    assert_eq!(f["auth[domain]"], s.portal.domain());
    assert_eq!(f["auth[client_endpoint]"], s.portal.rest_url());
    assert_eq!(
        f["auth[server_endpoint]"],
        format!("{}/rest/", s.cloud.oauth_url())
    );
    assert_eq!(f["auth[user_id]"], "1");
    for key in [
        "auth[expires]",
        "auth[expires_in]",
        "auth[scope]",
        "auth[status]",
        "auth[refresh_token]",
        "ts",
    ] {
        assert!(f.contains_key(key), "{key}");
    }

    // The call's own token answers; keys match case-insensitively, unknown ones are dropped.
    let call_token = f["auth[access_token]"].clone();
    let log = s
        .call_as(
            &call_token,
            "bizproc.activity.log",
            json!({"EVENT_TOKEN": token, "LOG_MESSAGE": "working"}),
        )
        .await;
    assert_eq!(log.0, 200);
    let empty = s
        .call_as(
            &call_token,
            "bizproc.activity.log",
            json!({"EVENT_TOKEN": token, "LOG_MESSAGE": ""}),
        )
        .await;
    assert_eq!(empty.1["error"], "ERROR_EMPTY_LOG_MESSAGE");
    let send = json!({"event_token": token, "return_values": {"RESULT": "done", "count": "5", "Ok": "Y", "junk": 1}, "log_message": "finished"});
    let (status, body) = s
        .call_as(&call_token, "bizproc.event.send", send.clone())
        .await;
    assert_eq!((status, &body["result"]), (200, &json!(true)));
    let sent = s
        .portal
        .wait_event_send(token, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        sent.return_values,
        json!({"result": "done", "count": 5, "ok": "Y"})
    );
    assert_eq!(sent.raw_return_values["junk"], 1);
    assert_eq!(sent.log_message, "finished");
    assert!(sent.at >= sent.fired_at);
    assert_eq!(s.portal.activity_logs(token), ["working", "finished"]);

    // A second send is ignored and still `true`.
    let (status, body) = s.call_as(&call_token, "bizproc.event.send", send).await;
    assert_eq!((status, &body["result"]), (200, &json!(true)));
    assert_eq!(s.portal.duplicate_event_sends(), 1);
    assert_eq!(s.portal.event_sends().len(), 1);

    // A forged token is refused; a finished workflow's instance is gone: error "404".
    let mut forged = token.clone();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(forged.len() - 1.., last);
    let (status, body) = s
        .call("bizproc.event.send", json!({"EVENT_TOKEN": forged}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ACCESS_DENIED"))
    );
    assert!(s.portal.finish_workflow(token));
    let (status, body) = s
        .call("bizproc.event.send", json!({"EVENT_TOKEN": token}))
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("404")));

    // Waiting for an answer that never comes times out.
    let unanswered = s
        .portal
        .fire(ActivityCall::new("ping", json!({"user_id": "1"})))
        .await
        .unwrap();
    assert!(s
        .portal
        .wait_event_send(&unanswered.event_token, Duration::from_millis(50))
        .await
        .is_none());
    assert!(s
        .portal
        .fire(ActivityCall {
            robot: true,
            ..ActivityCall::new("ping", json!({}))
        })
        .await
        .is_err());
    s.cloud.shutdown().await;
}
