//! Jobs are taken and ended together (one statement for the jobs claimed or ending at
//! once), each under its own guard, with its history row and its REST call log.
use std::time::Duration;

use b24flow_common::bitrix::call_log::RestCalls;
use b24flow_common::db::jobs::{self, Finish, JobState, Outcome};
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

const JOBS: usize = 40;

/// (from_state, to_state, message) of the job as operators read it, oldest first.
async fn history(app: &TestApp, id: Uuid) -> Vec<(Option<String>, String, Option<String>)> {
    let client = app.pool.get().await.expect("db");
    b24flow_common::db::ops::job_detail(&client, id)
        .await
        .expect("job detail")
        .expect("job")
        .history
        .into_iter()
        .map(|e| (e.from_state, e.to_state, e.message))
        .collect()
}

/// History rows stored for the job (the acceptance is the job row itself).
async fn stored_history_rows(app: &TestApp, id: Uuid) -> i64 {
    let client = app.pool.get().await.expect("db");
    client
        .query_one("SELECT count(*) FROM job_events WHERE job_id = $1", &[&id])
        .await
        .expect("history rows")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_jobs_ending_at_once_each_end_in_their_own_state_with_their_history() {
    let app = spawn_english_app().await;
    let user = app.portal.add_user(json!({ "NAME": "Ann" }));
    // Every other call names a user that does not exist: those end failed.
    let fired = futures::future::join_all((0..JOBS).map(|i| {
        let user_id = if i % 2 == 0 {
            user.to_string()
        } else {
            "user_987654".to_string()
        };
        let app = &app;
        async move { app.fire("user_info", json!({ "user_id": user_id })).await }
    }))
    .await;
    for (i, call) in fired.iter().enumerate() {
        let sent = app
            .portal
            .wait_event_send(&call.event_token, Duration::from_secs(30))
            .await
            .expect("answered");
        let error = sent.return_values["error_text"].as_str().unwrap_or("");
        assert_eq!(error.is_empty(), i % 2 == 0, "call {i}: {error}");
    }
    let client = app.pool.get().await.expect("db");
    wait_until(|| async {
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM jobs WHERE kind = 'activity' AND finished_at IS NULL",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        open == 0
    })
    .await;
    for (i, call) in fired.iter().enumerate() {
        let id = app.job_id_of(&call.event_token).await;
        let job = jobs::get(&client, id).await.expect("get").expect("job");
        let expected = if i % 2 == 0 { "succeeded" } else { "failed" };
        assert_eq!(job.state.as_str(), expected, "call {i}");
        assert_eq!(job.attempt, 1, "call {i}");
        // A read's outcome is stored with its end, in the same statement.
        let outcome = job.outcome.expect("outcome stored");
        assert_eq!(outcome.success, i % 2 == 0, "call {i}");
        let message = if i % 2 == 0 {
            "reported success".to_string()
        } else {
            format!("reported error: {}", outcome.error_text)
        };
        assert_eq!(
            history(&app, id).await,
            vec![
                (None, "queued".into(), Some("accepted".into())),
                (Some("queued".into()), "running".into(), None),
                (Some("running".into()), expected.into(), Some(message)),
            ],
            "call {i}"
        );
        assert_eq!(
            stored_history_rows(&app, id).await,
            2,
            "call {i}: a claim and an end"
        );
        assert!(
            job.result.is_none(),
            "call {i}: the outcome is the result, stored once"
        );
        let logs = b24flow_common::db::rest_calls::for_job(&client, id)
            .await
            .expect("call log");
        assert_eq!(logs.len(), 1, "call {i}: one log, stored with the end");
        assert_eq!(logs[0].0, 1);
        assert!(
            logs[0]
                .1
                .calls
                .iter()
                .any(|c| c.method == "bizproc.event.send"),
            "call {i}: {:?}",
            logs[0].1.calls
        );
    }
    let secrets: i64 = client
        .query_one("SELECT count(*) FROM job_secrets", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(secrets, 0, "every end erased its job's secrets");
    app.cleanup().await;
}

fn end(id: Uuid, attempt: i32, state: JobState, message: &str) -> Finish {
    Finish {
        id,
        attempt,
        state,
        result: Some(json!({ "by": message })),
        error: None,
        message: message.into(),
        outcome: Some(Outcome {
            success: true,
            ..Outcome::default()
        }),
        rest_calls: Some(RestCalls::default()),
    }
}

/// Jobs of accepted calls, one per event token, left queued (the app runs no worker).
async fn queued_jobs(app: &TestApp, tokens: &[&str]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for token in tokens {
        let call = raw_call(app, "user_info", token);
        assert_eq!(app.post_form("/b24/activity", call).await.status(), 200);
        ids.push(app.job_id_of(token).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempts_end_in_a_group_changes_nothing_and_the_others_end() {
    let app = spawn_app_with(AppOptions {
        worker: false,
        ..Default::default()
    })
    .await;
    let ids = queued_jobs(&app, &["e-end-a", "e-end-b", "e-end-c"]).await;
    let client = app.pool.get().await.expect("db");
    let lease = Duration::from_secs(30);
    for &id in &ids {
        jobs::claim(&client, id, lease)
            .await
            .expect("claim")
            .expect("claimable");
    }
    // Job b's first attempt loses its lease and a newer attempt takes the job.
    let stale = ids[1];
    client
        .execute(
            "UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1",
            &[&stale],
        )
        .await
        .expect("expire");
    jobs::reap_expired(&client).await.expect("reap");
    let newer = jobs::claim(&client, stale, lease)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(newer.attempt, 2);
    let history_before = history(&app, stale).await;

    let ended = jobs::finish_many(
        &client,
        &[
            end(ids[0], 1, JobState::Succeeded, "a ended"),
            end(stale, 1, JobState::Failed, "stale end"),
            end(ids[2], 1, JobState::Failed, "c ended"),
        ],
    )
    .await
    .expect("ends");
    assert_eq!(ended, vec![true, false, true]);

    let b = jobs::get(&client, stale).await.expect("get").expect("job");
    assert_eq!(
        b.state,
        JobState::Running,
        "the newer attempt still owns it"
    );
    assert_eq!(b.attempt, 2);
    assert!(b.result.is_none() && b.outcome.is_none() && b.finished_at.is_none());
    assert_eq!(history(&app, stale).await, history_before, "no history row");
    // The newer attempt's own end still applies.
    assert_eq!(
        jobs::finish_many(&client, &[end(stale, 2, JobState::Succeeded, "b ended")])
            .await
            .expect("end"),
        vec![true]
    );
    for (id, state, message) in [
        (ids[0], JobState::Succeeded, "a ended"),
        (stale, JobState::Succeeded, "b ended"),
        (ids[2], JobState::Failed, "c ended"),
    ] {
        let job = jobs::get(&client, id).await.expect("get").expect("job");
        assert_eq!(job.state, state);
        assert_eq!(job.result, Some(json!({ "by": message })));
        assert!(job.outcome.is_some_and(|o| o.success));
        let last = history(&app, id).await.pop().expect("history");
        assert_eq!(
            last,
            (
                Some("running".into()),
                state.as_str().into(),
                Some(message.into())
            )
        );
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_taken_together_each_get_one_attempt_in_their_order_and_a_repeated_id_is_stale() {
    let app = spawn_app_with(AppOptions {
        worker: false,
        ..Default::default()
    })
    .await;
    let ids = queued_jobs(&app, &["e-claim-a", "e-claim-b", "e-claim-c"]).await;
    let client = app.pool.get().await.expect("db");
    let lease = Duration::from_secs(30);
    // Job c is already taken by someone else; job a is asked for twice in the group.
    jobs::claim(&client, ids[2], lease)
        .await
        .expect("claim")
        .expect("claimable");
    let unknown = Uuid::new_v4();
    let asked = [ids[1], ids[0], ids[2], ids[0], unknown];
    let claimed = jobs::claim_many(&client, &asked, lease)
        .await
        .expect("claims");
    let got: Vec<Option<(Uuid, i32)>> = claimed
        .iter()
        .map(|job| job.as_ref().map(|j| (j.id, j.attempt)))
        .collect();
    assert_eq!(
        got,
        vec![Some((ids[1], 1)), Some((ids[0], 1)), None, None, None]
    );
    for id in [ids[0], ids[1]] {
        let job = jobs::get(&client, id).await.expect("get").expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Running, 1));
        let steps: Vec<String> = history(&app, id)
            .await
            .into_iter()
            .map(|(_, to, _)| to)
            .collect();
        assert_eq!(steps, ["queued", "running"], "one history row per claim");
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_accepted_before_v15_shows_its_stored_acceptance_once() {
    let app = spawn_english_app().await;
    let call = app.fire("user_info", json!({ "user_id": "user_1" })).await;
    let id = app.job_id_of(&call.event_token).await;
    let client = app.pool.get().await.expect("db");
    client
        .execute(
            "INSERT INTO job_events (job_id, attempt, from_state, to_state, message)
             VALUES ($1, 0, NULL, 'queued', 'accepted')",
            &[&id],
        )
        .await
        .expect("an acceptance row as V14 wrote it");
    let accepted: Vec<_> = history(&app, id)
        .await
        .into_iter()
        .filter(|(from, _, _)| from.is_none())
        .collect();
    assert_eq!(
        accepted,
        [(None, "queued".to_string(), Some("accepted".to_string()))]
    );
    app.cleanup().await;
}
