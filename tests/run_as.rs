//! "Run as" (issue 12 item 2): each job's REST calls use the token of the user its workflow
//! runs as (the call's `auth[…]`), kept encrypted with the job's secrets, refreshed with the
//! job's refresh token, never shared with another user's requests in one batch.
use std::collections::HashSet;

use b24flow_common::bitrix::Bitrix;
use b24flow_common::db::{self, portal_limits::Plan};
use b24flow_common::secrets::{self, RunAs};
use b24flow_sim::{ActivityCall, EventSend, FiredCall, TokenPair};
use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

const ADMIN: u64 = 1;

async fn fire_as(app: &TestApp, code: &str, properties: Value, user: u64) -> FiredCall {
    let fired = app
        .portal
        .fire(ActivityCall::new(code, properties).run_as(user))
        .await
        .expect("fire activity call");
    assert!(
        fired.status.is_success(),
        "handler answered {}",
        fired.status
    );
    fired
}

async fn run_as(app: &TestApp, code: &str, properties: Value, user: u64) -> EventSend {
    let fired = fire_as(app, code, properties, user).await;
    app.portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .unwrap_or_else(|| panic!("no bizproc.event.send for {code} within {WAIT:?}"))
}

fn error_text(sent: &EventSend) -> String {
    sent.return_values["error_text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A deal only admins and `owner` may see or change.
fn private_deal(app: &TestApp, owner: u64, title: &str) -> u64 {
    let deal = app
        .portal
        .crm_add_item(2, json!({"title": title, "assignedById": owner}));
    app.portal.crm_make_private(2, deal);
    deal
}

fn seller(app: &TestApp, name: &str) -> u64 {
    app.portal
        .add_user(json!({"NAME": name, "LAST_NAME": "Seller"}))
}

/// The run-as token sealed with a job's secrets, and the raw sealed bytes.
async fn sealed_run_as(app: &TestApp, job: Uuid) -> Option<(RunAs, Vec<u8>)> {
    let client = app.pool.get().await.expect("db");
    let sealed = db::jobs::secret(&client, job).await.expect("secret")?;
    let run_as = secrets::run_as(Some(&sealed), &app.config.secrets)
        .expect("readable")
        .expect("a run-as token");
    Some((run_as, sealed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_change_the_deal_gets_the_portals_refusal_and_an_admin_succeeds() {
    let app = spawn_app().await;
    let sam = seller(&app, "Sam");
    let deal = private_deal(&app, ADMIN, "Big deal");
    let properties = json!({"deal_id": deal.to_string(), "title": "Renamed"});

    let refused = run_as(&app, "deal_update", properties.clone(), sam).await;
    let error = error_text(&refused);
    assert!(
        error.contains("нет права на изменение этого элемента CRM")
            && error.contains("crm.item.update")
            && error.contains("ACCESS_DENIED"),
        "{error}"
    );
    assert_eq!(refused.return_values["result"], "false");
    assert_eq!(app.portal.crm_item(2, deal).unwrap()["title"], "Big deal");
    assert!(
        app.portal
            .requests_by_user()
            .iter()
            .any(|(_, user)| *user == sam),
        "the job's requests came with the seller's token"
    );

    let done = run_as(&app, "deal_update", properties, ADMIN).await;
    assert_eq!(error_text(&done), "");
    assert_eq!(done.return_values["result"], "true");
    assert_eq!(app.portal.crm_item(2, deal).unwrap()["title"], "Renamed");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refusal_names_the_missing_right_in_english_on_an_english_portal() {
    let app = spawn_english_app().await;
    let sam = seller(&app, "Sam");
    let deal = private_deal(&app, ADMIN, "Big deal");
    let refused = run_as(
        &app,
        "deal_update",
        json!({"deal_id": deal.to_string(), "title": "Renamed"}),
        sam,
    )
    .await;
    let error = error_text(&refused);
    assert!(
        error.contains(
            "the user this activity runs as lacks the permission to change this CRM item"
        ) && error.contains("ACCESS_DENIED"),
        "{error}"
    );
    // The deal's responsible user may change it.
    let own = private_deal(&app, sam, "Sam's deal");
    let done = run_as(
        &app,
        "deal_update",
        json!({"deal_id": own.to_string(), "title": "Sam renamed it"}),
        sam,
    )
    .await;
    assert_eq!(error_text(&done), "");
    assert_eq!(
        app.portal.crm_item(2, own).unwrap()["title"],
        "Sam renamed it"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_user_token_is_refreshed_with_the_jobs_refresh_token_and_stored_encrypted() {
    let mut app = spawn_app_with(AppOptions {
        slow_retries: true,
        ..AppOptions::default()
    })
    .await;
    let sam = seller(&app, "Sam");
    let deal = private_deal(&app, sam, "Sam's deal");
    app.stop_worker().await;
    let fired = fire_as(
        &app,
        "deal_update",
        json!({"deal_id": deal.to_string(), "title": "Renamed"}),
        sam,
    )
    .await;
    let job = app.job_id_of(&fired.event_token).await;
    let (original, _) = sealed_run_as(&app, job).await.expect("sealed at ingress");
    assert_eq!(original.user_id, Some(sam as i64));
    assert_eq!(app.portal.token_user(&original.access_token), Some(sam));

    // The token dies before the job runs; the answer to the workflow fails, so the job
    // (and its secrets) stay after the activity ran.
    app.portal.expire_access_tokens();
    app.portal.fail_method("bizproc.event.send", true);
    app.start_worker();
    wait_until(|| async {
        let client = app.pool.get().await.expect("db");
        let job = db::jobs::get(&client, job)
            .await
            .expect("job")
            .expect("row");
        job.outcome.is_some() && job.state.as_str() == "queued"
    })
    .await;

    assert_eq!(app.portal.crm_item(2, deal).unwrap()["title"], "Renamed");
    let (rotated, sealed) = sealed_run_as(&app, job).await.expect("still stored");
    assert_ne!(rotated.access_token, original.access_token);
    assert_eq!(app.portal.token_user(&rotated.access_token), Some(sam));
    assert_eq!(rotated.user_id, Some(sam as i64));
    let new_refresh = rotated.refresh_token.clone().expect("a refresh token");
    assert!(app.portal.refresh_token_is_live(&new_refresh));
    assert!(!app
        .portal
        .refresh_token_is_live(original.refresh_token.as_deref().unwrap()));
    let raw = String::from_utf8_lossy(&sealed);
    assert!(!raw.contains(&rotated.access_token) && !raw.contains(&new_refresh));
    // The activity's own request went with the refreshed seller's token.
    assert!(app
        .portal
        .requests_by_user()
        .iter()
        .any(|(method, user)| *user == sam && (method == "crm.item.update" || method == "batch")));
    app.cleanup().await;
}

/// The whole text a job shows anywhere but its secrets: row, history, operator API.
async fn visible_text(app: &TestApp, job: Uuid) -> String {
    let client = app.pool.get().await.expect("db");
    let row: String = client
        .query_one(
            "SELECT row_to_json(j)::text FROM jobs j WHERE id = $1",
            &[&job],
        )
        .await
        .expect("row")
        .get(0);
    let history: String = client
        .query_one(
            "SELECT COALESCE(string_agg(row_to_json(e)::text, ' '), '') FROM job_events e WHERE job_id = $1",
            &[&job],
        )
        .await
        .expect("history")
        .get(0);
    let api = app.api_get(&format!("/api/jobs/{job}")).await;
    format!("{row} {history} {api}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_tokens_never_show_in_the_job_and_are_erased_when_it_ends() {
    let mut app = spawn_app().await;
    let sam = seller(&app, "Sam");
    app.stop_worker().await;
    let fired = fire_as(&app, "user_info", json!({"user_id": "user_1"}), sam).await;
    let job = app.job_id_of(&fired.event_token).await;
    let (run_as, sealed) = sealed_run_as(&app, job).await.expect("sealed");
    let refresh = run_as
        .refresh_token
        .clone()
        .expect("the call's refresh token");
    let raw = String::from_utf8_lossy(&sealed);
    assert!(!raw.contains(&run_as.access_token) && !raw.contains(&refresh));
    let shown = visible_text(&app, job).await;
    assert!(!shown.contains(&run_as.access_token) && !shown.contains(&refresh));

    app.start_worker();
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered");
    assert_eq!(error_text(&sent), "");
    wait_until(|| async {
        let client = app.pool.get().await.expect("db");
        let job = db::jobs::get(&client, job)
            .await
            .expect("job")
            .expect("row");
        job.state.is_terminal()
    })
    .await;
    assert!(
        sealed_run_as(&app, job).await.is_none(),
        "erased at the end"
    );
    let shown = visible_text(&app, job).await;
    assert!(!shown.contains(&run_as.access_token) && !shown.contains(&refresh));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_user_token_runs_with_the_installers() {
    let app = spawn_app().await;
    let response = app
        .post_form("/b24/activity", raw_call(&app, "user_info", "no-token-1"))
        .await;
    assert!(response.status().is_success());
    let job = app.job_id_of("no-token-1").await;
    assert!(sealed_run_as(&app, job).await.is_none(), "nothing to seal");
    // The hand-made event token is not the portal's, so only the run itself is looked at:
    // without any token the portal would have refused every read.
    let outcome = || async {
        let client = app.pool.get().await.expect("db");
        db::jobs::get(&client, job)
            .await
            .expect("job")
            .and_then(|j| j.outcome)
    };
    wait_until(|| async { outcome().await.is_some() }).await;
    let outcome = outcome().await.expect("ran");
    assert!(outcome.success, "{}", outcome.error_text);
    app.cleanup().await;
}

fn run_as_of(pair: &TokenPair) -> RunAs {
    RunAs {
        user_id: Some(pair.user_id as i64),
        access_token: pair.access_token.clone(),
        refresh_token: Some(pair.refresh_token.clone()),
        expires_at: Some(pair.expires as i64),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_requests_never_share_a_batch_and_one_users_do() {
    let app = spawn_app().await;
    let (ann, ben) = (seller(&app, "Ann"), seller(&app, "Ben"));
    let portal_id = {
        let client = app.pool.get().await.expect("db");
        let id = db::portals::find_by_member_id(&client, &app.portal.member_id())
            .await
            .expect("lookup")
            .expect("installed")
            .id;
        // One request now, then one a second: what is asked for meanwhile piles up.
        let plan = Plan::Custom {
            rate_per_sec: 1.0,
            burst: 1,
        };
        assert!(db::portal_limits::set_plan(&client, id, plan)
            .await
            .expect("plan"));
        id
    };
    let bitrix = Bitrix::from_config(app.pool.clone(), &app.config);
    let installer = bitrix.portal(portal_id).await.expect("portal client");
    installer
        .call("app.info", json!({}))
        .await
        .expect("spend the bucket's one request");
    let before = app.portal.requests_by_user().len();

    // Five jobs of each user (each job with its own token), and the installer.
    let mut clients = vec![(ADMIN, installer.clone())];
    for user in [ann, ben] {
        for _ in 0..5 {
            let token = run_as_of(&app.portal.issue_token(user));
            clients.push((user, installer.as_user(Uuid::new_v4(), token)));
        }
    }
    let reads = clients.iter().map(|(user, b24)| async move {
        let me = b24
            .call("user.current", json!({}))
            .await
            .expect("user.current");
        (
            *user,
            me.result["ID"].to_string().trim_matches('"').to_string(),
        )
    });
    for (user, answered) in join_all(reads).await {
        assert_eq!(answered, user.to_string(), "each caller sees itself");
    }
    let requests: Vec<(String, u64)> = app.portal.requests_by_user()[before..].to_vec();
    let users: HashSet<u64> = requests.iter().map(|(_, u)| *u).collect();
    assert_eq!(users, HashSet::from([ADMIN, ann, ben]), "{requests:?}");
    // One request per identity: each user's five calls left together, alone with them.
    assert_eq!(requests.len(), 3, "{requests:?}");
    for (method, user) in &requests {
        if *user != ADMIN {
            assert_eq!(method, "batch", "{requests:?}");
        }
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_two_users_on_a_busy_portal_each_change_only_what_their_user_may() {
    let app = spawn_app().await;
    let (ann, ben) = (seller(&app, "Ann"), seller(&app, "Ben"));
    {
        let client = app.pool.get().await.expect("db");
        let id = db::portals::find_by_member_id(&client, &app.portal.member_id())
            .await
            .expect("lookup")
            .expect("installed")
            .id;
        let plan = Plan::Custom {
            rate_per_sec: 2.0,
            burst: 1,
        };
        assert!(db::portal_limits::set_plan(&client, id, plan)
            .await
            .expect("plan"));
    }
    let deals: Vec<(u64, u64)> = (0..4)
        .flat_map(|i| {
            [
                (ann, private_deal(&app, ann, &format!("Ann {i}"))),
                (ben, private_deal(&app, ben, &format!("Ben {i}"))),
            ]
        })
        .collect();
    let runs = deals.iter().map(|(user, deal)| {
        let app = &app;
        async move {
            let sent = run_as(
                app,
                "deal_update",
                json!({"deal_id": deal.to_string(), "title": format!("done {deal}")}),
                *user,
            )
            .await;
            (*deal, error_text(&sent))
        }
    });
    for (deal, error) in join_all(runs).await {
        assert_eq!(error, "", "deal {deal}");
        assert_eq!(
            app.portal.crm_item(2, deal).unwrap()["title"],
            format!("done {deal}")
        );
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installers_expired_token_is_refreshed_once_for_many_app_level_calls() {
    let app = spawn_app().await;
    let portal_id = {
        let client = app.pool.get().await.expect("db");
        db::portals::find_by_member_id(&client, &app.portal.member_id())
            .await
            .expect("lookup")
            .expect("installed")
            .id
    };
    let bitrix = Bitrix::from_config(app.pool.clone(), &app.config);
    // Each call its own request, so each meets the expired token.
    bitrix.set_cross_job_batching(false);
    let installer = bitrix.portal(portal_id).await.expect("portal client");
    let before = app.portal.refresh_count();
    app.portal.expire_access_tokens();
    let calls = (0..5).map(|_| installer.call("user.current", json!({})));
    for answer in join_all(calls).await {
        let me = answer.expect("answered after the refresh");
        assert_eq!(
            me.result["ID"].to_string().trim_matches('"'),
            ADMIN.to_string()
        );
    }
    assert_eq!(app.portal.refresh_count() - before, 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_again_after_its_run_as_token_was_erased_never_falls_back_to_the_installer() {
    let app = spawn_app().await;
    let sam = seller(&app, "Sam");
    let deal = app
        .portal
        .crm_add_item(2, json!({"title": "Sam's deal", "assignedById": sam}));
    let fired = fire_as(
        &app,
        "deal_update",
        json!({"deal_id": deal.to_string(), "title": "Renamed by Sam"}),
        sam,
    )
    .await;
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered");
    assert_eq!(error_text(&sent), "");
    let id = app.job_id_of(&fired.event_token).await;
    let path = format!("/api/jobs/{id}");
    wait_until(|| async { app.api_get(&path).await["state"] == "succeeded" }).await;
    // The job ended and its sealed tokens with it; now it runs once more without an
    // outcome (what an operator's retry of a job that never got one does).
    let client = app.pool.get().await.expect("db");
    assert!(db::jobs::secret(&client, id)
        .await
        .expect("secret")
        .is_none());
    client
        .execute(
            "UPDATE jobs SET state = 'queued', outcome = NULL, result = NULL, finished_at = NULL,
                 run_at = now(), published_at = NULL, max_attempts = attempt + 1
             WHERE id = $1",
            &[&id],
        )
        .await
        .expect("queue the job again");
    let writes_before = app.portal.crm_writes().len();
    wait_until(|| async { app.api_get(&path).await["state"] == "failed" }).await;
    let job = app.api_get(&path).await;
    let error = job["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("не используются"), "{job}");
    // With the installer's (an admin's) token the update would have gone through again.
    assert_eq!(app.portal.crm_writes().len(), writes_before);
    app.cleanup().await;
}
