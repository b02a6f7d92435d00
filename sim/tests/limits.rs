//! The leaky-bucket rate limit (protocol.md §7.1).

use std::time::Duration;

use b24flow_sim::PortalConfig;
use serde_json::json;

use crate::support::sim;

#[tokio::test]
async fn the_rate_limit_answers_503_after_the_burst_and_drains() {
    let s = sim(PortalConfig {
        rate_burst: 5,
        rate_drain_per_sec: 2.0,
        ..PortalConfig::default()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(s.call("app.info", json!({})).await.0, 200);
    }
    let (status, body) = s.call("app.info", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("QUERY_LIMIT_EXCEEDED"))
    );
    assert_eq!(s.portal.rejected_by_rate_limit(), 1);
    assert_eq!(
        s.portal.method_calls("app.info"),
        5,
        "a refused request does not run"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s.call("app.info", json!({})).await.0, 200);
    s.portal.set_rate_limit(false);
    for _ in 0..10 {
        assert_eq!(s.call("app.info", json!({})).await.0, 200);
    }
    s.cloud.shutdown().await;
}
