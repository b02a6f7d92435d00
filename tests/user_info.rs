use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_info_call_returns_the_whole_profile_and_departments() {
    let app = spawn_app().await;
    let sales = app.portal.add_department("Sales", None);
    let north = app.portal.add_department("Продажи Север", Some(sales));
    let user = app.portal.add_user(json!({
        "NAME": "Анна", "LAST_NAME": "Koch", "SECOND_NAME": "Maria", "EMAIL": "a.koch@example.com",
        "ACTIVE": true, "IS_ONLINE": "Y", "PERSONAL_GENDER": "F", "PERSONAL_PROFESSION": "Engineer",
        "PERSONAL_WWW": "https://koch.example", "PERSONAL_BIRTHDAY": "1990-05-01T03:00:00+03:00",
        "PERSONAL_PHOTO": "https://cdn.example/p.jpg", "PERSONAL_ICQ": "12345", "PERSONAL_PHONE": "+49 30 1",
        "PERSONAL_FAX": "+49 30 2", "PERSONAL_MOBILE": "+49 170 3", "PERSONAL_PAGER": "p-4",
        "PERSONAL_STREET": "Hauptstr. 1", "PERSONAL_CITY": "Berlin", "PERSONAL_STATE": "BE",
        "PERSONAL_ZIP": "10115", "PERSONAL_COUNTRY": "DE", "WORK_COMPANY": "Acme", "WORK_POSITION": "Lead",
        "WORK_PHONE": "+49 30 5", "UF_DEPARTMENT": [sales, north], "UF_INTERESTS": "chess",
        "UF_SKILLS": "rust", "UF_WEB_SITES": "https://a.example", "UF_XING": "x", "UF_LINKEDIN": "l",
        "UF_FACEBOOK": "f", "UF_TWITTER": "t", "UF_SKYPE": "s", "UF_DISTRICT": "Mitte",
        "UF_PHONE_INNER": "204", "USER_TYPE": "employee"
    }));
    let before = app.portal.request_count();
    let sent = app
        .run_activity("user_info", json!({ "user_id": format!("user_{user}") }))
        .await;
    let v = &sent.return_values;
    assert_eq!(v["error_text"], "");
    let expected = [
        ("is_online", "Y"),
        ("active", "Y"),
        ("email", "a.koch@example.com"),
        ("name", "Анна"),
        ("last_name", "Koch"),
        ("second_name", "Maria"),
        ("gender", "F"),
        ("profession", "Engineer"),
        ("www", "https://koch.example"),
        ("birthday", "1990-05-01"),
        ("photo_url", "https://cdn.example/p.jpg"),
        ("icq", "12345"),
        ("personal_phone", "+49 30 1"),
        ("fax", "+49 30 2"),
        ("personal_mobile", "+49 170 3"),
        ("pager", "p-4"),
        ("street", "Hauptstr. 1"),
        ("city", "Berlin"),
        ("state", "BE"),
        ("zip", "10115"),
        ("country", "DE"),
        ("work_company", "Acme"),
        ("work_position", "Lead"),
        ("work_phone", "+49 30 5"),
        ("interests", "chess"),
        ("skills", "rust"),
        ("web_sites", "https://a.example"),
        ("xing", "x"),
        ("linkedin", "l"),
        ("facebook", "f"),
        ("twitter", "t"),
        ("skype", "s"),
        ("district", "Mitte"),
        ("inner_phone", "204"),
        ("user_type", "employee"),
    ];
    for (key, value) in expected {
        assert_eq!(v[key], value, "{key}");
    }
    assert_eq!(v["department_ids"], json!([sales, north]));
    assert_eq!(v["department_names"], json!(["Sales", "Продажи Север"]));
    assert!(
        sent.log_message.contains("Анна Koch"),
        "{}",
        sent.log_message
    );
    // One batch for the data, one bizproc.event.send.
    assert_eq!(app.portal.request_count() - before, 2);
    assert_eq!(app.portal.method_calls("user.get"), 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_numeric_user_id_is_accepted() {
    let app = spawn_app().await;
    let user = app
        .portal
        .add_user(json!({ "NAME": "Ben", "UF_DEPARTMENT": [] }));
    let sent = app
        .run_activity("user_info", json!({ "user_id": user.to_string() }))
        .await;
    assert_eq!(sent.return_values["error_text"], "");
    assert_eq!(sent.return_values["name"], "Ben");
    assert_eq!(sent.return_values["department_ids"], json!([]));
    assert_eq!(sent.return_values["department_names"], json!([]));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_user_is_a_clear_error() {
    let app = spawn_english_app().await;
    let sent = app
        .run_activity("user_info", json!({ "user_id": "user_987654" }))
        .await;
    let error = sent.return_values["error_text"].as_str().unwrap();
    assert!(
        error.contains("987654") && error.contains("does not exist"),
        "{error}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_property_reports_an_error_to_the_workflow_without_retrying() {
    let app = spawn_app().await;
    let sent = app.run_activity("user_info", json!({})).await;
    let error = sent.return_values["error_text"].as_str().unwrap();
    assert!(error.contains("user_id"), "{error}");
    // The workflow hears first; the terminal state is committed right after.
    wait_until(|| async {
        let client = app.pool.get().await.unwrap();
        let state: String = client
            .query_one("SELECT state FROM jobs WHERE kind = 'activity'", &[])
            .await
            .unwrap()
            .get(0);
        state == "failed"
    })
    .await;
    let client = app.pool.get().await.unwrap();
    let attempt: i32 = client
        .query_one("SELECT attempt FROM jobs WHERE kind = 'activity'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempt, 1, "bad input is not retried");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_at_most_once_per_job_and_every_job_succeeds() {
    let mut app = spawn_app().await;
    let user = app.portal.add_user(json!({ "NAME": "Cleo" }));
    let refreshes_before = app.portal.refresh_count();
    // Each call carries its own run-as token; they all expire before the jobs run.
    app.stop_worker().await;
    let mut tokens = Vec::new();
    for _ in 0..6 {
        tokens.push(
            app.fire("user_info", json!({ "user_id": format!("user_{user}") }))
                .await
                .event_token,
        );
    }
    app.portal.expire_access_tokens();
    app.start_worker();
    for token in tokens {
        let sent = app
            .portal
            .wait_event_send(&token, WAIT)
            .await
            .expect("answered");
        assert_eq!(sent.return_values["error_text"], "");
        assert_eq!(sent.return_values["name"], "Cleo");
    }
    // At most one refresh per job: its later requests reuse the new token. (Jobs of one
    // user may share a batch, which runs under one of their tokens, so fewer can do.)
    let refreshes = app.portal.refresh_count() - refreshes_before;
    assert!((1..=6).contains(&refreshes), "{refreshes} refreshes");
    app.cleanup().await;
}
