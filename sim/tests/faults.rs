//! Injected faults answer errors without changing the portal.

use std::time::{Duration, Instant};

use b24flow_sim::Faults;

use crate::support::{sim, unlimited};

#[tokio::test]
async fn a_faulted_request_changes_nothing() {
    let s = sim(unlimited()).await;
    s.portal.set_faults(Faults {
        error_500: 1.0,
        ..Faults::default()
    });
    let (status, body) = s
        .register("ping", "https://app.example.com/act", false)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("INTERNAL_SERVER_ERROR"))
    );
    s.portal.set_faults(Faults {
        error_503: 1.0,
        ..Faults::default()
    });
    for _ in 0..4 {
        assert_eq!(
            s.register("ping", "https://app.example.com/act", false)
                .await
                .0,
            503
        );
    }
    assert!(s.portal.activities().is_empty());
    assert_eq!(s.portal.method_calls("bizproc.activity.add"), 0);
    assert_eq!(s.portal.request_count(), 5);

    s.portal.set_faults(Faults {
        slow: 1.0,
        slow_delay: Duration::from_millis(150),
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(
        s.register("ping", "https://app.example.com/act", false)
            .await
            .0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(s.portal.activities().len(), 1);
    s.cloud.shutdown().await;
}
