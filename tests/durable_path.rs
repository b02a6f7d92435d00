//! The durable hand-off of activity calls (issue 10, issue 15 item 4): group commit, the
//! outbox after an ingress dies between commit and confirm, and the broker taking whole
//! calls while Postgres is down.
use std::collections::HashMap;
use std::time::Duration;

use b24flow_common::db::portals;
use b24flow_sim::{ActivityCall, PortalConfig};
use serde_json::{json, Value};

use crate::support::proxy::Proxy;
use crate::support::*;

const LONG_WAIT: Duration = Duration::from_secs(90);

fn unlimited_portal() -> PortalConfig {
    PortalConfig {
        rate_limit_enabled: false,
        ..PortalConfig::default()
    }
}

/// `n` calls the portal's workflows make, as (event token, handler form body), not sent.
fn prepare(app: &TestApp, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            app.portal
                .prepare_body(&ActivityCall::new(
                    "user_info",
                    json!({ "user_id": "user_1" }),
                ))
                .expect("prepare a call")
        })
        .collect()
}

fn tokens_of(calls: &[(String, String)]) -> Vec<String> {
    calls.iter().map(|(token, _)| token.clone()).collect()
}

/// One call answered, so the ingress has seen the portal (its last known row stands in
/// while Postgres is down); its event token.
async fn warm_up(app: &TestApp) -> String {
    let warm = app.fire("user_info", json!({ "user_id": "user_1" })).await;
    app.portal
        .wait_event_send(&warm.event_token, WAIT)
        .await
        .expect("warm-up answered");
    warm.event_token
}

/// POSTs a call's form body to the ingress at `address`.
async fn post_call(app: &TestApp, address: &str, body: &str) -> reqwest::Result<(u16, Value)> {
    let response = app
        .http
        .post(format!("{address}/b24/activity"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Every token was answered exactly once, and each job reached one terminal state.
async fn assert_each_answered_once(app: &TestApp, tokens: &[String]) {
    let deadline = tokio::time::Instant::now() + LONG_WAIT;
    loop {
        let sends = app.portal.event_sends();
        let answered = tokens
            .iter()
            .filter(|t| sends.iter().any(|s| &s.event_token == *t))
            .count();
        if answered == tokens.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {answered} of {} calls answered",
            tokens.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut per_token: HashMap<String, usize> = HashMap::new();
    for send in app.portal.event_sends() {
        *per_token.entry(send.event_token).or_default() += 1;
    }
    for token in tokens {
        assert_eq!(per_token.get(token), Some(&1), "call {token} answered once");
    }
    let client = app.pool.get().await.expect("db");
    // The answer goes out before the terminal state is committed.
    wait_until(|| async {
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM jobs WHERE event_token = ANY($1)
                   AND state NOT IN ('succeeded', 'failed', 'discarded')",
                &[&tokens],
            )
            .await
            .expect("open jobs")
            .get(0);
        open == 0
    })
    .await;
    for token in tokens {
        let row = client
            .query_one(
                "SELECT count(DISTINCT j.id), count(e.id) FROM jobs j
                 LEFT JOIN job_events e ON e.job_id = j.id
                      AND e.to_state IN ('succeeded', 'failed', 'discarded')
                 WHERE j.event_token = $1",
                &[token],
            )
            .await
            .expect("job of the call");
        assert_eq!(row.get::<_, i64>(0), 1, "one job for {token}");
        assert_eq!(row.get::<_, i64>(1), 1, "one terminal state for {token}");
    }
}

async fn stored_calls(app: &TestApp, tokens: &[String]) -> i64 {
    let client = app.pool.get().await.expect("db");
    client
        .query_one(
            "SELECT count(*) FROM jobs WHERE event_token = ANY($1)",
            &[&tokens],
        )
        .await
        .expect("count")
        .get(0)
}

/// Rounds of the burst below before its calls must have been gathered at least once: a
/// machine loaded enough may send one round's calls one by one.
const GATHER_ROUNDS: usize = 3;
const CALLS_A_ROUND: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_arriving_together_are_stored_together_and_a_repeated_call_stays_one_job() {
    let app = spawn_app_with(AppOptions {
        portal: unlimited_portal(),
        ..Default::default()
    })
    .await;
    let mut all_tokens = Vec::new();
    let mut commits_per_round = Vec::new();
    for _ in 0..GATHER_ROUNDS {
        let (tokens, commits) = burst_of_repeated_calls(&app, CALLS_A_ROUND).await;
        all_tokens.extend(tokens);
        commits_per_round.push(commits);
        if commits < CALLS_A_ROUND as i64 {
            break;
        }
    }
    assert!(
        commits_per_round.iter().any(|&c| c < CALLS_A_ROUND as i64),
        "{CALLS_A_ROUND} calls a round took {commits_per_round:?} commits: none were gathered"
    );
    assert_each_answered_once(&app, &all_tokens).await;
    app.cleanup().await;
}

/// `n` calls, each sent twice and all at once while Postgres holds the first commits back;
/// checks each copy pair names one job, and returns the tokens and how many commits
/// stored them.
async fn burst_of_repeated_calls(app: &TestApp, n: usize) -> (Vec<String>, i64) {
    let prepared = prepare(app, n);
    let tokens = tokens_of(&prepared);
    // Postgres holds the first commits back until the calls are in: the calls that arrive
    // while the ingress's flush slots wait are gathered.
    let mut holder = app.pool.get().await.expect("db");
    let hold = holder.transaction().await.expect("transaction");
    hold.execute("LOCK TABLE jobs IN SHARE MODE", &[])
        .await
        .expect("lock");
    // Every call twice, all at once: the copies meet in the same group or in groups
    // committed at the same moment.
    let calls = prepared
        .iter()
        .chain(prepared.iter())
        .map(|(_, body)| post_call(app, &app.address, body));
    let release = async {
        let waiting_inserts = || async {
            let client = app.pool.get().await.expect("db");
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'
                       AND query LIKE '%INSERT INTO jobs%'",
                    &[],
                )
                .await
                .expect("waiting")
                .get::<_, i64>(0)
        };
        wait_until(|| async { waiting_inserts().await > 0 }).await;
        // Once every flush slot waits, each call that arrives queues behind them and joins
        // the next group. Released well within the 1.5 s after which a waiting group
        // goes to the broker instead (a legal path too, see below).
        let first_waiter = tokio::time::Instant::now();
        while waiting_inserts().await < b24flow_ingress::FLUSH_SLOTS as i64
            && first_waiter.elapsed() < Duration::from_millis(900)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        hold.commit().await.expect("release");
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(calls), release);
    let mut job_of: HashMap<String, Value> = HashMap::new();
    for (token, answer) in tokens.iter().chain(tokens.iter()).zip(answers) {
        let (status, body) = answer.expect("answered");
        assert_eq!(status, 200, "{token}: {body}");
        let id = body["job_id"].clone();
        if let Some(first) = job_of.insert(token.clone(), id.clone()) {
            assert_eq!(first, id, "both copies of {token} name one job");
        }
    }
    // On a loaded machine a group may wait past the 1.5 s and go to the broker: a legal
    // path whose calls the worker's intake stores a moment later, under the same ids.
    // Either way each call ends up as one job.
    wait_until(|| async { stored_calls(app, &tokens).await >= tokens.len() as i64 }).await;
    assert_eq!(stored_calls(app, &tokens).await, tokens.len() as i64);
    // Rows committed by one statement share their transaction's `now()`.
    let client = app.pool.get().await.expect("db");
    let commits: i64 = client
        .query_one(
            "SELECT count(DISTINCT created_at) FROM jobs WHERE event_token = ANY($1)",
            &[&tokens],
        )
        .await
        .expect("commits")
        .get(0);
    (tokens, commits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_committed_while_its_portals_token_is_being_refreshed() {
    let app = spawn_app_with(AppOptions {
        worker: false,
        ..Default::default()
    })
    .await;
    let mut refresher = app.pool.get().await.expect("db");
    let portal_id: i64 = refresher
        .query_one(
            "SELECT id FROM portals WHERE member_id = $1",
            &[&app.portal.member_id()],
        )
        .await
        .expect("portal")
        .get(0);
    // A refresh holds the portal's token row for as long as the OAuth server takes.
    let refresh = refresher.transaction().await.expect("tx");
    portals::lock_tokens(&refresh, &app.config.secrets, portal_id)
        .await
        .expect("lock")
        .expect("tokens");
    let call = raw_call(&app, "user_info", "e-during-refresh");
    assert_eq!(app.post_form("/b24/activity", call).await.status(), 200);
    // Committed, not handed to the broker because the insert waited on the row lock (no
    // worker runs here, so a handed-off call would not be in `jobs`).
    let client = app.pool.get().await.expect("db");
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM jobs WHERE event_token = 'e-during-refresh'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 1);
    refresh.rollback().await.expect("rollback");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_killed_between_commit_and_confirm_loses_no_gathered_call() {
    let proxy = Proxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let app = spawn_app_with(AppOptions {
        portal: unlimited_portal(),
        ..Default::default()
    })
    .await;
    let (mut ingress, address) = app
        .spawn_ingress_process(&format!("amqp://guest:guest@{}/%2f", proxy.addr))
        .await;
    // The ingress connects to the broker with its first call; then the broker goes silent.
    let (warm, warm_body) = prepare(&app, 1).remove(0);
    let (status, body) = post_call(&app, &address, &warm_body)
        .await
        .expect("warm-up");
    assert_eq!(status, 200, "{body}");
    proxy.stall();

    let prepared = prepare(&app, 30);
    let tokens = tokens_of(&prepared);
    // The row is the outbox: every call is answered once its group is committed, while
    // the broker has not confirmed (nor even received) a single publish.
    let answers = futures::future::join_all(
        prepared
            .iter()
            .map(|(_, body)| post_call(&app, &address, body)),
    )
    .await;
    for answer in &answers {
        let (status, body) = answer.as_ref().expect("answered");
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(stored_calls(&app, &tokens).await, tokens.len() as i64);
    let client = app.pool.get().await.expect("db");
    let unconfirmed: i64 = client
        .query_one(
            "SELECT count(*) FROM jobs j JOIN job_unconfirmed u ON u.job_id = j.id
             WHERE j.event_token = ANY($1)",
            &[&tokens],
        )
        .await
        .expect("count")
        .get(0);
    ingress.start_kill().expect("SIGKILL");
    let _ = ingress.wait().await;
    assert_eq!(
        unconfirmed,
        tokens.len() as i64,
        "the kill must come after the commit and before any confirm"
    );
    let mut all = tokens.clone();
    all.push(warm);
    assert_each_answered_once(&app, &all).await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_while_postgres_is_down_go_through_the_broker_and_run_once_it_returns() {
    let postgres = Proxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let app = spawn_app_with(AppOptions {
        portal: unlimited_portal(),
        ingress_postgres_port: Some(postgres.addr.port()),
        worker_postgres_port: Some(postgres.addr.port()),
        ..Default::default()
    })
    .await;
    let warm = warm_up(&app).await;

    postgres.cut();
    let prepared = prepare(&app, 5);
    let tokens = tokens_of(&prepared);
    for (token, call) in &prepared {
        let (status, body) = post_call(&app, &app.address, call).await.expect("answered");
        assert_eq!(status, 200, "{token}: {body}");
        assert_eq!(body["status"], "accepted", "{body}");
    }
    // Nothing could reach Postgres: the calls wait in the broker, whole.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_calls(&app, &tokens).await, 0);

    postgres.restore();
    let mut all = tokens.clone();
    all.push(warm);
    assert_each_answered_once(&app, &all).await;
    app.cleanup().await;
}

/// A call handed to the broker while Postgres was down, that Postgres then refuses to store
/// (jsonb cannot hold a NUL character), is answered with an error instead of dropped:
/// Bitrix24 never repeats a call, so its workflow would wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_off_call_postgres_refuses_to_store_is_answered_with_an_error() {
    let postgres = Proxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let app = spawn_app_with(AppOptions {
        portal: unlimited_portal(),
        ingress_postgres_port: Some(postgres.addr.port()),
        ..Default::default()
    })
    .await;
    warm_up(&app).await;

    postgres.cut();
    let (token, body) = app
        .portal
        .prepare_body(&ActivityCall::new(
            "user_info",
            json!({ "user_id": "user_1\u{0}" }),
        ))
        .expect("prepare a call");
    let (status, answer) = post_call(&app, &app.address, &body)
        .await
        .expect("answered");
    assert_eq!(status, 200, "{answer}");
    postgres.restore();

    let send = app
        .portal
        .wait_event_send(&token, LONG_WAIT)
        .await
        .expect("the workflow is answered");
    let error = send.return_values["error_text"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("отказалась его сохранить"), "{error}");
    assert_eq!(stored_calls(&app, std::slice::from_ref(&token)).await, 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_neither_postgres_nor_the_broker_takes_is_refused_quickly() {
    let postgres = Proxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let broker = Proxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let app = spawn_app_with(AppOptions {
        portal: unlimited_portal(),
        ingress_postgres_port: Some(postgres.addr.port()),
        ingress_amqp_url: Some(format!("amqp://guest:guest@{}/%2f", broker.addr)),
        ..Default::default()
    })
    .await;
    let warm = warm_up(&app).await;

    postgres.cut();
    broker.cut();
    let (refused, refused_body) = prepare(&app, 1).remove(0);
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        post_call(&app, &app.address, &refused_body),
    )
    .await
    .expect("an answer within seconds, not a hang")
    .expect("answered");
    assert_eq!(answer.0, 503, "{}", answer.1);
    assert_eq!(answer.1["error"], "store_unavailable", "{}", answer.1);
    let metrics = app
        .api(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("b24flow_ingress_calls_total{outcome=\"store_unavailable\"}"),
        "refusal counted"
    );

    postgres.restore();
    broker.restore();
    assert_eq!(stored_calls(&app, std::slice::from_ref(&refused)).await, 0);
    // Once either store is back, calls are taken again.
    let (back, back_body) = prepare(&app, 1).remove(0);
    wait_until(|| async {
        matches!(
            post_call(&app, &app.address, &back_body).await,
            Ok((200, _))
        )
    })
    .await;
    assert_each_answered_once(&app, &[warm, back]).await;
    app.cleanup().await;
}

/// Runs `b24flow bench <args> --json` on its own database and AMQP prefix; its report.
async fn run_bench(args: &[&str]) -> Value {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("b24flow_test_bench_{}", &unique[..12]);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_b24flow"))
        .arg("bench")
        .args(args)
        .arg("--json")
        // Logs go to stdout too; the report must be all there is.
        .env("RUST_LOG", "off")
        .env(
            "B24FLOW_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{database}"),
        )
        .env("B24FLOW_AMQP_URL", AMQP_URL)
        .env("B24FLOW_AMQP_PREFIX", format!("b24flow-test-{unique}"))
        .env(
            "B24FLOW_SECRET_KEY",
            b24flow_common::crypto::SecretBox::generate_key(),
        )
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the bench");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON report")
}

/// A short run of `b24flow bench ingress`: it measures every target and prints sane JSON,
/// and every job of the `all` target (its calls run as the portal's users) succeeded.
/// Otherwise only the shape is checked; the numbers are for the bench itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ingress_runs_and_reports_each_target() {
    let report = run_bench(&[
        "ingress",
        "--duration",
        "0.5",
        "--connections",
        "4",
        "--rate",
        "100",
    ])
    .await;
    let rows = report["rows"].as_array().expect("rows");
    let targets: Vec<&str> = rows.iter().filter_map(|r| r["target"].as_str()).collect();
    assert_eq!(targets, ["bare", "ingress", "all"]);
    for row in rows {
        assert!(row["calls_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert!(
            row["p99_ms"].as_f64().unwrap_or(0.0) >= row["p50_ms"].as_f64().unwrap_or(f64::MAX),
            "{row}"
        );
    }
    let all = &rows[2];
    assert!(all["accepted"].as_u64().unwrap_or(0) > 0, "{all}");
    assert_eq!(all["jobs_succeeded"], all["accepted"], "{all}");
    assert_eq!(all["jobs_failed"], 0, "{all}");
    assert_eq!(all["jobs_unanswered"], 0, "{all}");
    assert!(
        rows[1]["jobs_succeeded"].is_null(),
        "no worker, no jobs run"
    );
    assert_eq!(report["share_of_bare"].as_array().map(Vec::len), Some(2));
}

/// A short run of `b24flow bench e2e` with separate ingress and worker processes: every
/// call was accepted and its job answered with success, and each process was measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_e2e_answers_every_job_with_success() {
    let report = run_bench(&["e2e", "--portals", "5", "--calls", "50", "--workers", "1"]).await;
    assert_eq!(report["portals"], 5, "{report}");
    assert_eq!(report["accepted"], 50, "{report}");
    assert_eq!(report["succeeded"], 50, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["unanswered"], 0, "{report}");
    assert!(
        report["jobs_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    assert!(
        report["p99_ms"].as_f64().unwrap_or(0.0) >= report["p50_ms"].as_f64().unwrap_or(f64::MAX),
        "{report}"
    );
    let processes: Vec<&str> = report["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["process"].as_str())
        .collect();
    assert_eq!(processes, ["ingress", "worker 1", "bench (simulator)"]);
    for process in report["processes"].as_array().into_iter().flatten() {
        for peak in ["peak_rss_mib", "install_peak_rss_mib"] {
            assert!(
                process[peak].as_f64().unwrap_or(0.0) > 0.0,
                "{peak}: {process}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_row_whose_job_already_ran_is_forgotten_without_a_publish() {
    let app = spawn_app().await;
    let token = warm_up(&app).await;
    let id = app.job_id_of(&token).await;
    // The ingress died after the broker's confirm and before its mark: the job ran, but
    // its outbox row stayed.
    let client = app.pool.get().await.expect("db");
    client
        .execute(
            "INSERT INTO job_unconfirmed (job_id, stored_at) VALUES ($1, now() - interval '1 hour')",
            &[&id],
        )
        .await
        .expect("outbox row");
    let publisher = publisher_of(&app);
    let published = b24flow_worker::sweeper::sweep(&app.pool, &publisher)
        .await
        .expect("sweep");
    assert_eq!(
        published, 0,
        "nothing is left to publish for a finished job"
    );
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM job_unconfirmed WHERE job_id = $1",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
    assert_each_answered_once(&app, &[token]).await;
    drop(client);
    app.cleanup().await;
}

/// A short run of `b24flow bench limiter`: both ways of asking the shared bucket grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_limiter_measures_single_and_gathered_grants() {
    let report = run_bench(&[
        "limiter",
        "--portals",
        "20",
        "--seconds",
        "0.5",
        "--concurrency",
        "4",
    ])
    .await;
    let rows = report.as_array().expect("rows");
    let modes: Vec<&str> = rows.iter().filter_map(|r| r["mode"].as_str()).collect();
    assert_eq!(modes, ["one statement per request", "gathered"]);
    for row in rows {
        assert!(row["grants"].as_u64().unwrap_or(0) > 0, "{row}");
    }
}

fn publisher_of(app: &TestApp) -> b24flow_common::amqp::Publisher {
    b24flow_common::amqp::Publisher::new(
        &app.config.amqp_url,
        b24flow_common::amqp::Topology::new(&app.config.amqp_prefix),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_first_confirm_was_never_recorded_is_published_once() {
    let app = spawn_app_with(AppOptions {
        worker: false,
        install: true,
        ..Default::default()
    })
    .await;
    let client = app.pool.get().await.expect("db");
    let portal_id = portals::find_by_member_id(&client, &app.portal.member_id())
        .await
        .expect("lookup")
        .expect("installed")
        .id;
    let job = b24flow_common::db::jobs::NewJob {
        portal_id,
        kind: b24flow_common::db::jobs::JobKind::Activity,
        code: "user_info".into(),
        event_token: Some("retry-outbox".into()),
        workflow_id: None,
        document_id: Value::Null,
        properties: json!({ "user_id": "user_1" }),
        timeout_duration: 0,
        max_attempts: 3,
        runs_as_user: false,
    };
    let id = b24flow_common::db::jobs::insert(&client, &job, None)
        .await
        .expect("job")
        .id();
    // Its first message went out unconfirmed and ran; the attempt failed and the job waits
    // for its retry, due now, with the first publish's outbox row still there.
    client
        .execute(
            "UPDATE jobs SET attempt = 1, published_at = NULL, run_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .expect("retry");
    client
        .execute(
            "INSERT INTO job_unconfirmed (job_id, stored_at) VALUES ($1, now() - interval '1 hour')
             ON CONFLICT (job_id) DO UPDATE SET stored_at = EXCLUDED.stored_at",
            &[&id],
        )
        .await
        .expect("outbox row");
    let publisher = publisher_of(&app);
    let sweep = || b24flow_worker::sweeper::sweep(&app.pool, &publisher);
    assert_eq!(sweep().await.expect("sweep"), 1, "the retry is published");
    assert_eq!(
        sweep().await.expect("sweep"),
        0,
        "its confirm took it out of the outbox too: no second publish"
    );
    drop(client);
    app.cleanup().await;
}

/// The ids the work queue holds now, message by message (taken off the queue).
async fn drain_work_queue(app: &TestApp) -> Vec<Vec<uuid::Uuid>> {
    let conn = b24flow_common::amqp::connect(AMQP_URL, "test-drain")
        .await
        .expect("broker");
    let channel = conn.create_channel().await.expect("channel");
    let queue = b24flow_common::amqp::Topology::new(&app.config.amqp_prefix).work_queue();
    let mut messages = Vec::new();
    while let Some(message) = channel
        .basic_get(
            queue.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("get")
    {
        let carried: b24flow_common::amqp::JobMessage =
            serde_json::from_slice(&message.delivery.data).expect("a work message");
        messages.push(carried.job_ids().collect());
    }
    let _ = conn.close(200, "ok".into()).await;
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_ids_are_published_many_to_a_message_in_their_order() {
    let app = spawn_app_with(AppOptions {
        worker: false,
        install: false,
        ..Default::default()
    })
    .await;
    let ids: Vec<uuid::Uuid> = (0..130).map(|_| uuid::Uuid::new_v4()).collect();
    let publisher = publisher_of(&app);
    let grouped = publisher.publish_many(&ids).await;
    assert_eq!(grouped.len(), ids.len(), "one answer per id");
    assert!(grouped.iter().all(Result::is_ok));
    let messages = drain_work_queue(&app).await;
    let sizes: Vec<usize> = messages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [64, 64, 2]);
    assert_eq!(messages.concat(), ids);
    assert!(publisher
        .publish_each(&ids[..3])
        .await
        .iter()
        .all(Result::is_ok));
    assert_eq!(
        drain_work_queue(&app).await,
        ids[..3].iter().map(|&id| vec![id]).collect::<Vec<_>>()
    );
    // An older worker reads only `job_id`: the first job of a message, the form it wrote.
    #[derive(serde::Deserialize)]
    struct OlderJobMessage {
        job_id: uuid::Uuid,
    }
    let message = b24flow_common::amqp::JobMessage::carrying(&ids[..2]).expect("a message");
    let older: OlderJobMessage =
        serde_json::from_slice(&serde_json::to_vec(&message).unwrap()).expect("older form");
    assert_eq!(older.job_id, ids[0]);
    let single: b24flow_common::amqp::JobMessage =
        serde_json::from_value(json!({ "job_id": ids[0] })).expect("older message");
    assert_eq!(single.job_ids().collect::<Vec<_>>(), [ids[0]]);
    publisher.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_of_several_jobs_is_split_and_each_job_runs_once() {
    // The worker registers the activities, then stops until the message is ready.
    let mut app = spawn_app().await;
    app.stop_worker().await;
    let client = app.pool.get().await.expect("db");
    let portal_id = portals::find_by_member_id(&client, &app.portal.member_id())
        .await
        .expect("lookup")
        .expect("installed")
        .id;
    // Calls the portal's workflows made, stored as their jobs without the ingress.
    let tokens = tokens_of(&prepare(&app, 3));
    let mut ids = Vec::new();
    for token in &tokens {
        let job = b24flow_common::db::jobs::NewJob {
            portal_id,
            kind: b24flow_common::db::jobs::JobKind::Activity,
            code: "user_info".into(),
            event_token: Some(token.clone()),
            workflow_id: None,
            document_id: Value::Null,
            properties: json!({ "user_id": "user_1" }),
            timeout_duration: 0,
            max_attempts: 3,
            runs_as_user: false,
        };
        let id = b24flow_common::db::jobs::insert(&client, &job, None)
            .await
            .expect("job")
            .id();
        ids.push((id, 0));
    }
    // As if their message was confirmed: only the one below carries them.
    b24flow_common::db::jobs::mark_published_many(&client, &ids)
        .await
        .expect("marked");
    drain_work_queue(&app).await;
    let job_ids: Vec<uuid::Uuid> = ids.iter().map(|(id, _)| *id).collect();
    let publisher = publisher_of(&app);
    assert!(publisher
        .publish_many(&job_ids)
        .await
        .iter()
        .all(Result::is_ok));
    // A consumer takes the message and goes away without settling it: it comes again,
    // marked redelivered, with one delivery counted against all three jobs.
    let conn = b24flow_common::amqp::connect(AMQP_URL, "test-taker")
        .await
        .expect("broker");
    let channel = conn.create_channel().await.expect("channel");
    let queue = b24flow_common::amqp::Topology::new(&app.config.amqp_prefix).work_queue();
    let taken = channel
        .basic_get(
            queue.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: false },
        )
        .await
        .expect("get")
        .expect("the message");
    let carried: b24flow_common::amqp::JobMessage =
        serde_json::from_slice(&taken.delivery.data).expect("a work message");
    assert_eq!(carried.job_count(), 3);
    let _ = conn.close(200, "gone".into()).await;

    let split_before = b24flow_common::metrics::REDELIVERED_SPLIT.get();
    app.start_worker();
    for token in &tokens {
        app.portal
            .wait_event_send(token, LONG_WAIT)
            .await
            .expect("answered");
    }
    assert!(
        b24flow_common::metrics::REDELIVERED_SPLIT.get() >= split_before + 3,
        "the redelivered message's jobs went out one per message"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for token in &tokens {
        let answers = app
            .portal
            .event_sends()
            .iter()
            .filter(|s| &s.event_token == token)
            .count();
        assert_eq!(answers, 1, "{token} answered once");
    }
    drop(client);
    publisher.close().await;
    app.cleanup().await;
}
