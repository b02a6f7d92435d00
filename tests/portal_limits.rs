//! The per-portal limiter shared by worker processes, cross-job batching, per-method parking
//! and fairness between portals (issue 9).
use std::time::{Duration, Instant};

use b24flow_common::bitrix::{Batch, Bitrix};
use b24flow_common::db::{self, portal_limits::Plan};
use b24flow_sim::{ActivityCall, Portal, PortalConfig};
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde_json::json;

use crate::support::*;

/// Our id of a simulated portal.
async fn portal_id(app: &TestApp, portal: &Portal) -> i64 {
    let client = app.pool.get().await.expect("db");
    db::portals::find_by_member_id(&client, &portal.member_id())
        .await
        .expect("portal lookup")
        .expect("portal installed")
        .id
}

async fn set_plan(app: &TestApp, portal: &Portal, plan: Plan) {
    let id = portal_id(app, portal).await;
    let client = app.pool.get().await.expect("db");
    assert!(db::portal_limits::set_plan(&client, id, plan)
        .await
        .expect("plan"));
}

/// A REST client of this app's database, as a worker process has.
fn bitrix(app: &TestApp) -> Bitrix {
    Bitrix::from_config(app.pool.clone(), &app.config)
}

/// Waits until `n` consumers take jobs from the work queue.
/// `n` portals stored without an install (only their limiter rows matter), by id.
async fn bare_portals(client: &impl db::GenericClient, name: &str, n: i32) -> Vec<i64> {
    client
        .query(
            "INSERT INTO portals (member_id, domain, client_endpoint)
             SELECT $1 || '-' || g, $1 || g || '.example', 'https://' || $1 || g || '.example/rest/'
               FROM generate_series(1, $2) g
             RETURNING id",
            &[&name, &n],
        )
        .await
        .expect("portals")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A bucket so slow (one request per 100 s) that nothing drains while a test runs.
async fn slow_bucket(client: &impl db::GenericClient, portal_id: i64, burst: i32) {
    let plan = Plan::Custom {
        rate_per_sec: 0.01,
        burst,
    };
    db::portal_limits::set_plan(client, portal_id, plan)
        .await
        .expect("plan");
}

/// The requests the portal's bucket has granted so far.
async fn requests_counted(client: &impl db::GenericClient, portal_id: i64) -> i64 {
    db::portal_limits::get_state(client, portal_id)
        .await
        .expect("state")
        .expect("portal")
        .requests
}

/// A group's grants follow the one-request rule exactly: twin buckets in the same state,
/// one asked by a group and the other by the same requests one at a time, grant the same
/// requests, count the same, and tell the refused the same wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_grants_exactly_what_the_same_requests_one_at_a_time_would() {
    let app = spawn_app().await;
    let client = app.pool.get().await.expect("db");
    let ids = bare_portals(&client, "twin", 6).await;
    // Three pairs: an empty bucket, one half full, one already over its limit. The rate is
    // slow enough that nothing drains between the two ways of asking.
    let pairs = [
        (ids[0], ids[1], 0.0),
        (ids[2], ids[3], 350.0),
        (ids[4], ids[5], 900.0),
    ];
    for (grouped, single, ahead_secs) in pairs {
        for id in [grouped, single] {
            slow_bucket(&client, id, 8).await;
        }
        client
            .execute(
                "UPDATE portal_limits SET tat = now() + make_interval(secs => $2), requests = 0
                 WHERE portal_id = ANY($1)",
                &[&vec![grouped, single], &ahead_secs],
            )
            .await
            .expect("bucket state");
    }
    let order = [0usize, 1, 0, 2, 0, 0, 1, 2, 0, 1, 0, 0];
    let grouped_asks: Vec<i64> = order.iter().map(|&p| pairs[p].0).collect();
    let grouped = db::portal_limits::acquire_many(&client, &grouped_asks, 2)
        .await
        .expect("grouped grants");
    let mut single = Vec::new();
    for &p in &order {
        single.push(
            db::portal_limits::acquire(&client, pairs[p].1, 2)
                .await
                .expect("single grant"),
        );
    }
    for (i, (g, s)) in grouped.iter().zip(&single).enumerate() {
        assert_eq!(g.granted, s.granted, "request {i}");
        assert!(
            (g.wait_secs - s.wait_secs).abs() < 5.0,
            "request {i}: {} vs {}",
            g.wait_secs,
            s.wait_secs
        );
    }
    assert!(grouped.iter().any(|a| a.granted) && grouped.iter().any(|a| !a.granted));
    for (grouped, single, _) in pairs {
        assert_eq!(
            requests_counted(&client, grouped).await,
            requests_counted(&client, single).await
        );
    }
    app.cleanup().await;
}

/// The unflushed commit of a grant is the grant's own: the connection's later statements
/// commit as usual.
async fn assert_later_commits_wait_for_the_flush(client: &impl db::GenericClient) {
    let setting: String = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(setting, "on");
}

async fn wait_for_consumers(app: &TestApp, n: u32) {
    let conn = b24flow_common::amqp::connect(AMQP_URL, "test-consumers")
        .await
        .expect("amqp");
    let channel = conn.create_channel().await.expect("channel");
    let queue = b24flow_common::amqp::Topology::new(&app.config.amqp_prefix)
        .work_queue()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue");
        if q.consumer_count() >= n {
            break;
        }
        assert!(Instant::now() < deadline, "{n} consumers did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = conn.close(200, "ok".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_never_send_a_portal_more_than_its_rate() {
    // A small bucket so the limit binds within seconds: 10 requests, draining 4/s.
    let mut app = spawn_app_with(AppOptions {
        portal: PortalConfig {
            rate_burst: 10,
            rate_drain_per_sec: 4.0,
            ..PortalConfig::default()
        },
        install: false,
        ..AppOptions::default()
    })
    .await;
    // Installed at the standard plan; from then on the portal's small bucket applies.
    app.portal.set_rate_limit(false);
    app.install().await;
    app.stop_worker().await;
    set_plan(
        &app,
        &app.portal,
        Plan::Custom {
            rate_per_sec: 4.0,
            burst: 10,
        },
    )
    .await;
    app.portal.set_rate_limit(true);
    let mut workers = [app.spawn_worker_process(), app.spawn_worker_process()];
    wait_for_consumers(&app, 2).await;
    let users = app.portal.seed_demo_directory(20);
    let before = app.portal.request_count();

    let calls = 300;
    let answers: Vec<_> = stream::iter(0..calls)
        .map(|i| {
            let user = users[i % users.len()];
            let portal = app.portal.clone();
            async move {
                let fired = portal
                    .fire(ActivityCall::new(
                        "user_info",
                        json!({ "user_id": format!("user_{user}") }),
                    ))
                    .await
                    .expect("fire");
                assert!(fired.status.is_success());
                portal
                    .wait_event_send(&fired.event_token, Duration::from_secs(120))
                    .await
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let answered_ok = answers
        .iter()
        .flatten()
        .filter(|s| s.return_values["error_text"] == "")
        .count();
    let requests = app.portal.request_count() - before;
    for w in workers.iter_mut() {
        let _ = w.start_kill();
        let _ = w.wait().await;
    }
    assert_eq!(answered_ok, calls, "every call answered with success");
    // The portal's own bucket is the judge: it never had to refuse a request.
    assert_eq!(app.portal.rejected_by_rate_limit(), 0);
    // And the limit was really in play: more requests than one burst.
    assert!(requests > 10, "only {requests} requests");
    // 300 jobs × 3 commands cannot be 900 requests: they were batched.
    assert!(requests < 100, "{requests} requests for {calls} jobs");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_many_jobs_share_one_batch_and_each_gets_its_own_answer() {
    let app = spawn_app().await;
    // One request now, then one a second: everything asked for meanwhile leaves together.
    set_plan(
        &app,
        &app.portal,
        Plan::Custom {
            rate_per_sec: 1.0,
            burst: 1,
        },
    )
    .await;
    let sales = app.portal.add_department("Sales", None);
    let users: Vec<u64> = (0..20)
        .map(|i| {
            app.portal.add_user(json!({
                "NAME": format!("User{i}"), "UF_DEPARTMENT": [sales]
            }))
        })
        .collect();
    let id = portal_id(&app, &app.portal).await;
    let b24 = bitrix(&app).portal(id).await.expect("portal client");
    // Spend the one request the bucket holds.
    b24.call("app.info", json!({})).await.expect("app.info");
    let requests_before = app.portal.request_count();
    let batches_before = app.portal.method_calls("batch");

    let reads = users.iter().map(|user| {
        let b24 = b24.clone();
        async move {
            b24.call("user.get", json!({ "filter": { "ID": user } }))
                .await
        }
    });
    let failing = b24.call("no.such.method", json!({ "x": "1" }));
    let dependent = async {
        let mut batch = Batch::new(false);
        batch.push("user", "user.get", &json!({ "filter": { "ID": users[0] } }));
        batch.push(
            "departments",
            "department.get",
            &json!({ "ID": "$result[user][0][UF_DEPARTMENT]" }),
        );
        b24.batch(&batch).await
    };
    let (reads, failing, dependent) = tokio::join!(join_all(reads), failing, dependent);

    // 20 calls, a failing call and a two-command batch of dependent commands: 23 commands
    // in one request.
    assert_eq!(app.portal.request_count() - requests_before, 1);
    assert_eq!(app.portal.method_calls("batch") - batches_before, 1);
    for (user, read) in users.iter().zip(reads) {
        let answer = read.expect("each read answered");
        assert_eq!(
            answer.result[0]["ID"].to_string().trim_matches('"'),
            user.to_string()
        );
    }
    let err = failing.expect_err("its own error");
    assert_eq!(err.code(), Some("ERROR_METHOD_NOT_FOUND"));
    assert!(err.to_string().starts_with("no.such.method"), "{err}");
    let dependent = dependent.expect("the dependent batch");
    let departments = dependent.get("departments").expect("resolved reference");
    assert_eq!(departments[0]["NAME"], "Sales");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_parks_that_method_and_not_the_others() {
    let app = spawn_app().await;
    let id = portal_id(&app, &app.portal).await;
    let b24 = bitrix(&app).portal(id).await.expect("portal client");
    // user.get's window resets in 3 s; then it is over budget until then.
    app.portal
        .set_method_operating("user.get", 100.0, Duration::from_secs(3));
    b24.call("user.get", json!({ "filter": { "ID": 1 } }))
        .await
        .expect("a good answer first");
    app.portal.block_method("user.get", Duration::from_secs(3));

    let parked_read = {
        let b24 = b24.clone();
        tokio::spawn(async move {
            let r = b24.call("user.get", json!({ "filter": { "ID": 1 } })).await;
            (r, Instant::now())
        })
    };
    // Let the refusal arrive and the park reach the shared row, then ask for user.get
    // again and for another method.
    wait_until(|| async { app.portal.operation_time_refusals("user.get") >= 1 }).await;
    wait_until(|| async {
        let client = app.pool.get().await.expect("db");
        let state = db::portal_limits::get_state(&client, id)
            .await
            .expect("state")
            .expect("row");
        state.parked.get("user.get").is_some()
    })
    .await;
    let second_read = {
        let b24 = b24.clone();
        tokio::spawn(async move {
            let r = b24.call("user.get", json!({ "filter": { "ID": 1 } })).await;
            (r, Instant::now())
        })
    };
    let other = b24.call("department.get", json!({})).await;
    let other_at = Instant::now();
    assert!(other.is_ok(), "another method still runs: {other:?}");

    let (first, first_at) = parked_read.await.expect("task");
    let (second, second_at) = second_read.await.expect("task");
    assert!(
        first.is_ok(),
        "the parked call ran once its window reset: {first:?}"
    );
    assert!(second.is_ok(), "{second:?}");
    assert!(other_at < first_at && other_at < second_at);
    // Refused once; after that the method waited instead of asking again.
    assert_eq!(app.portal.operation_time_refusals("user.get"), 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_portal_does_not_delay_another() {
    // Portal A is slow (one request every 2 s) and gets 300 jobs at once.
    let app = spawn_app_with(AppOptions {
        portal: PortalConfig {
            rate_burst: 2,
            rate_drain_per_sec: 0.5,
            ..PortalConfig::default()
        },
        install: false,
        ..AppOptions::default()
    })
    .await;
    app.portal.set_rate_limit(false);
    app.install().await;
    set_plan(
        &app,
        &app.portal,
        Plan::Custom {
            rate_per_sec: 0.5,
            burst: 2,
        },
    )
    .await;
    app.portal.set_rate_limit(true);
    let quiet = app
        .cloud
        .add_portal(PortalConfig::default())
        .await
        .expect("portal B");
    quiet
        .install(&app.url("/b24/install"))
        .await
        .expect("install B");
    quiet
        .wait_for_activities(&["user_info"], WAIT)
        .await
        .expect("B registered");

    let flood = 300;
    let mut fired = Vec::new();
    for chunk in (0..flood).collect::<Vec<_>>().chunks(50) {
        let calls = chunk.iter().map(|_| {
            app.portal.fire(ActivityCall::new(
                "user_info",
                json!({ "user_id": "user_1" }),
            ))
        });
        for f in join_all(calls).await {
            fired.push(f.expect("fire A").event_token);
        }
    }
    // B's calls, one at a time, while A's jobs wait.
    for _ in 0..3 {
        let call = quiet
            .fire(ActivityCall::new(
                "user_info",
                json!({ "user_id": "user_1" }),
            ))
            .await
            .expect("fire B");
        let sent = quiet
            .wait_event_send(&call.event_token, WAIT)
            .await
            .expect("B answered");
        assert_eq!(sent.return_values["error_text"], "");
    }
    let a_answered = app.portal.event_sends().len();
    assert!(
        a_answered < flood / 2,
        "B was served while A's flood was still queued ({a_answered} of {flood} answered)"
    );
    // Let A finish so nothing is left running at cleanup.
    for token in fired {
        app.portal
            .wait_event_send(&token, Duration::from_secs(120))
            .await
            .expect("A answered");
    }
    assert_eq!(app.portal.rejected_by_rate_limit(), 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_bucket_grants_its_burst_less_headroom_then_names_the_wait() {
    let app = spawn_app().await;
    let id = portal_id(&app, &app.portal).await;
    // One request per 100 s: nothing drains during the test.
    set_plan(
        &app,
        &app.portal,
        Plan::Custom {
            rate_per_sec: 0.01,
            burst: 5,
        },
    )
    .await;
    let client = app.pool.get().await.expect("db");
    client
        .execute(
            "UPDATE portal_limits SET tat = now(), requests = 0 WHERE portal_id = $1",
            &[&id],
        )
        .await
        .expect("empty bucket");
    // Burst 5 less 3 of headroom: two now, then the next in about 100 s.
    for _ in 0..2 {
        let granted = db::portal_limits::acquire(&client, id, 3)
            .await
            .expect("acquire");
        assert!(granted.granted);
    }
    let refused = db::portal_limits::acquire(&client, id, 3)
        .await
        .expect("acquire");
    assert!(!refused.granted);
    assert!(
        refused.wait_secs > 50.0 && refused.wait_secs <= 100.0,
        "{}",
        refused.wait_secs
    );
    let state = db::portal_limits::get_state(&client, id)
        .await
        .expect("state")
        .expect("portal");
    assert_eq!(state.requests, 2);
    assert_later_commits_wait_for_the_flush(&client).await;
    // A portal without a row gets one, on the standard plan, with its first grant.
    client
        .execute("DELETE FROM portal_limits WHERE portal_id = $1", &[&id])
        .await
        .expect("delete row");
    let first = db::portal_limits::acquire(&client, id, 3)
        .await
        .expect("acquire");
    assert!(first.granted);
    let state = db::portal_limits::get_state(&client, id)
        .await
        .expect("state")
        .expect("portal");
    assert_eq!((state.plan.as_str(), state.requests), ("standard", 1));
    drop(client);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_asked_together_come_in_their_order_each_from_its_own_portals_bucket() {
    let app = spawn_app().await;
    let slow = portal_id(&app, &app.portal).await;
    let client = app.pool.get().await.expect("db");
    let others = bare_portals(&client, "grouped", 2).await;
    let (roomy, unseen) = (others[0], others[1]);
    // Burst 5 less 3 of headroom: two grants each, and nothing drains during the test.
    for id in [slow, roomy] {
        slow_bucket(&client, id, 5).await;
    }
    client
        .execute(
            "UPDATE portal_limits SET tat = now(), requests = 0 WHERE portal_id = ANY($1)",
            &[&vec![slow, roomy]],
        )
        .await
        .expect("empty buckets");
    let asked = [slow, roomy, slow, slow, unseen, roomy];
    let answers = db::portal_limits::acquire_many(&client, &asked, 3)
        .await
        .expect("grants");
    let granted: Vec<bool> = answers.iter().map(|a| a.granted).collect();
    assert_eq!(granted, [true, true, true, false, true, true]);
    assert!(answers[3].wait_secs > 50.0, "{}", answers[3].wait_secs);
    for (id, requests, plan) in [
        (slow, 2, "custom"),
        (roomy, 2, "custom"),
        (unseen, 1, "standard"),
    ] {
        let state = db::portal_limits::get_state(&client, id)
            .await
            .expect("state")
            .expect("portal");
        assert_eq!(
            (state.requests, state.plan.as_str()),
            (requests, plan),
            "portal {id}"
        );
    }
    assert_later_commits_wait_for_the_flush(&client).await;
    drop(client);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_log_says_which_calls_shared_a_batch_and_with_how_many_commands() {
    use b24flow_common::bitrix::call_log::{CallLog, Outcome, Request};
    let app = spawn_app().await;
    set_plan(
        &app,
        &app.portal,
        Plan::Custom {
            rate_per_sec: 1.0,
            burst: 1,
        },
    )
    .await;
    let id = portal_id(&app, &app.portal).await;
    let b24 = bitrix(&app).portal(id).await.expect("portal client");
    // Spend the one request the bucket holds, outside any log.
    b24.call("app.info", json!({})).await.expect("app.info");
    let log = CallLog::new(10);
    let (a, b, failing) = log
        .record(async {
            tokio::join!(
                b24.call("user.get", json!({ "filter": { "ID": "1" } })),
                b24.call("department.get", json!({ "ID": "1" })),
                b24.call("no.such.method", json!({ "x": "1" })),
            )
        })
        .await;
    assert!(a.is_ok() && b.is_ok() && failing.is_err());
    let calls = log.snapshot().calls;
    assert_eq!(calls.len(), 3, "{calls:?}");
    for c in &calls {
        assert_eq!(c.request, Request::SharedBatch, "{c:?}");
        assert_eq!(c.others, 2, "{c:?}");
        assert_eq!(c.sends, 1, "{c:?}");
    }
    let failed = calls
        .iter()
        .find(|c| c.method == "no.such.method")
        .expect("the failing call");
    assert_eq!(failed.outcome, Outcome::Error);
    assert_eq!(failed.code.as_deref(), Some("ERROR_METHOD_NOT_FOUND"));
    assert_eq!(failed.status, Some(404));
    app.cleanup().await;
}

/// A group takes requests ahead only for a portal whose asks were all granted, and only
/// while its bucket stays at most a quarter full with them counted; each is counted as granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_taken_ahead_only_from_a_bucket_at_most_a_quarter_full() {
    let app = spawn_app().await;
    let client = app.pool.get().await.expect("db");
    let ids = bare_portals(&client, "ahead", 5).await;
    // One request per 100 s and burst 17 less 2 of headroom: full at 1,400 s of requests
    // queued, a quarter full at 350 s. Nothing drains during the test.
    let (empty, twice, over_a_quarter, over_limit, nearly_full) =
        (ids[0], ids[1], ids[2], ids[3], ids[4]);
    for (id, queued_secs) in [
        (empty, 0.0),
        (twice, 0.0),
        (over_a_quarter, 350.0),
        (over_limit, 1450.0),
        (nearly_full, 1350.0),
    ] {
        slow_bucket(&client, id, 17).await;
        client
            .execute(
                "UPDATE portal_limits SET tat = now() + make_interval(secs => $2), requests = 0
                 WHERE portal_id = $1",
                &[&id, &queued_secs],
            )
            .await
            .expect("bucket state");
    }
    let asked = [empty, over_a_quarter, over_limit, nearly_full, nearly_full];
    let answers = db::portal_limits::acquire_ahead(&client, &asked, 2, 1)
        .await
        .expect("grants");
    let seen: Vec<(bool, u32)> = answers.iter().map(|(a, n)| (a.granted, *n)).collect();
    assert_eq!(
        seen,
        [(true, 1), (true, 0), (false, 0), (true, 0), (false, 0)],
        "granted and taken ahead, per ask"
    );
    assert!(answers[2].0.wait_secs > 0.0 && answers[4].0.wait_secs > 0.0);
    // Two asks, five ahead each allowed: the quarter mark stops it at two more.
    let answers = db::portal_limits::acquire_ahead(&client, &[twice, twice], 2, 5)
        .await
        .expect("grants");
    let seen: Vec<(bool, u32)> = answers.iter().map(|(a, n)| (a.granted, *n)).collect();
    assert_eq!(seen, [(true, 2), (true, 2)]);
    for (id, requests) in [
        (empty, 2),
        (twice, 4),
        (over_a_quarter, 1),
        (over_limit, 0),
        (nearly_full, 1),
    ] {
        assert_eq!(requests_counted(&client, id).await, requests, "portal {id}");
    }
    drop(client);
    app.cleanup().await;
}

/// A process's next request to a portal spends what its last grant took ahead, without a
/// statement; what lapses or is forgotten is asked for again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_request_spends_the_grant_taken_ahead() {
    let app = spawn_app().await;
    let client = app.pool.get().await.expect("db");
    let portal = bare_portals(&client, "spend", 1).await[0];
    let grants = db::portal_limits::GatheredGrants::start(app.pool.clone(), 3);
    let counted = || requests_counted(&client, portal);
    let acquire = || async { grants.acquire(portal).await.expect("grant").granted };
    // The standard plan's bucket is empty: one request and one ahead, then the one ahead.
    assert!(acquire().await);
    assert_eq!(counted().await, 2);
    assert!(acquire().await);
    assert_eq!(counted().await, 2, "spent without asking the bucket");
    assert!(acquire().await);
    assert_eq!(counted().await, 4);
    grants.forget(portal);
    assert!(acquire().await);
    assert_eq!(counted().await, 6, "forgotten: asked again");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(acquire().await);
    assert_eq!(counted().await, 8, "lapsed: asked again");
    drop(client);
    app.cleanup().await;
}
