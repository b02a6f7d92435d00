//! Issue 15, limits: slow clients are cut off, a blackholed broker does not hold the
//! answer, and calls too wide for a job are refused.
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

fn ingress_only() -> AppOptions {
    AppOptions {
        worker: false,
        ..Default::default()
    }
}

/// Reads until the server closes the connection; what it said, or `None` if it kept the
/// connection open past `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_or_body_is_cut_off() {
    let app = spawn_app_with(ingress_only()).await;
    let addr = app.address.trim_start_matches("http://").to_string();

    // Slowloris: a header line every half second, never the end of the headers.
    let mut slow_headers = TcpStream::connect(&addr).await.expect("connect");
    slow_headers
        .write_all(b"POST /b24/activity HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let trickle = tokio::spawn(async move {
        for i in 0..60 {
            if slow_headers
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        slow_headers
    });

    // Headers in full, then a body that never arrives.
    let mut slow_body = TcpStream::connect(&addr).await.expect("connect");
    slow_body
        .write_all(
            b"POST /b24/activity HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncode=",
        )
        .await
        .expect("write");
    let answer = closed_within(&mut slow_body, Duration::from_secs(25))
        .await
        .expect("the stalled body is answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");

    let mut slow_headers = trickle.await.expect("trickle");
    assert!(
        closed_within(&mut slow_headers, Duration::from_secs(25))
            .await
            .is_some(),
        "the trickled headers are cut off"
    );
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

/// A TCP listener that accepts and never says a word, like a blackholed broker behind a
/// load balancer.
async fn blackhole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (format!("amqp://guest:guest@127.0.0.1:{port}/%2f"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_broker_does_not_hold_the_answer_and_nothing_is_lost() {
    let (url, hole) = blackhole().await;
    let app = spawn_app_with(AppOptions {
        ingress_amqp_url: Some(url),
        ..Default::default()
    })
    .await;
    // The worker and its sweeper use the real broker: stored calls are published from
    // the outbox and answered.
    let calls = (0..5).map(|_| {
        app.portal.fire(b24flow_sim::ActivityCall::new(
            "user_info",
            serde_json::json!({ "user_id": "user_1" }),
        ))
    });
    let fired = tokio::time::timeout(Duration::from_secs(15), futures::future::join_all(calls))
        .await
        .expect("every call answered within seconds, not minutes");
    for call in &fired {
        let call = call.as_ref().expect("fired");
        assert!(call.status.is_success(), "{}: {}", call.status, call.body);
    }
    for call in fired {
        let token = call.expect("fired").event_token;
        let sent = app
            .portal
            .wait_event_send(&token, WAIT)
            .await
            .expect("stored, published from the outbox and answered");
        assert_eq!(sent.return_values["error_text"], "");
    }
    hole.abort();
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_too_wide_for_a_job_are_refused() {
    let app = spawn_app_with(ingress_only()).await;
    let base = raw_call(&app, "user_info", "e-wide");
    let many_keys: String = (0..101)
        .map(|i| format!("&properties%5Bp{i}%5D=x"))
        .collect();
    let many_values: String = (0..1001)
        .map(|i| format!("&properties%5Blist%5D%5B{i}%5D=x"))
        .collect();
    let long_key = format!("&properties%5B{}%5D=x", "k".repeat(65));
    for extra in [many_keys, many_values, long_key] {
        let response = app
            .post_form("/b24/activity", format!("{base}{extra}"))
            .await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "property_limit", "{body}");
    }
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}
