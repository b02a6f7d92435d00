//! The driver works from spawned tasks.

use std::time::Duration;

use b24flow_sim::ActivityCall;
use serde_json::json;

use crate::support::{capture_server, sim, unlimited};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_runs_on_spawned_tasks() {
    let s = sim(unlimited()).await;
    let (app, _seen) = capture_server().await;
    assert_eq!(
        s.register("ping", &format!("{app}/act"), false).await.0,
        200
    );
    let portal = s.portal.clone();
    let fired = tokio::spawn(async move {
        portal
            .fire(ActivityCall::new("ping", json!({"user_id": "1"})))
            .await
    })
    .await
    .unwrap()
    .unwrap();
    let portal = s.portal.clone();
    let token = fired.event_token.clone();
    let waiter =
        tokio::spawn(async move { portal.wait_event_send(&token, Duration::from_secs(5)).await });
    let (status, _) = s
        .call(
            "bizproc.event.send",
            json!({"event_token": fired.event_token, "return_values": {"result": "x"}}),
        )
        .await;
    assert_eq!(status, 200);
    let sent = waiter.await.unwrap().expect("the waiter wakes on the send");
    assert_eq!(sent.return_values, json!({"result": "x"}));
    s.cloud.shutdown().await;
}
