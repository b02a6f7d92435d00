//! CRM activities and timeline comments (ACTIVITIES.md #12–14) against the simulated portal.
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_todo_is_created_with_the_todo_api_in_one_request() {
    let app = spawn_app().await;
    let deal = app.portal.crm_add_item(2, json!({"title": "Deal"}));
    let before = app.portal.request_count();
    let sent = app
        .run_activity("crm_activity_add", json!({
            "subject": "Send the offer", "type": "todo", "description": "Offer v2", "owner_type": "deal",
            "owner_id": deal.to_string(), "priority": "high", "communication": "-", "responsible": "user_1",
            "deadline": "01.09.2026 10:00:00"
        }))
        .await;
    assert_eq!(sent.return_values["error_text"], "", "{}", sent.log_message);
    assert_eq!(app.portal.request_count() - before, 2);
    let id = sent.return_values["activity_id"].as_u64().unwrap();
    let activities = app.portal.crm_activities();
    assert_eq!(activities.len(), 1);
    let a = &activities[0];
    assert_eq!(a["ID"], id.to_string());
    assert_eq!(a["PROVIDER_ID"], "CRM_TODO");
    assert_eq!(a["SUBJECT"], "Send the offer");
    assert_eq!(a["DEADLINE"], "2026-09-01T10:00:00");
    assert_eq!(a["OWNER_TYPE_ID"], "2");
    assert_eq!(app.portal.method_calls("crm.activity.todo.add"), 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_todo_without_a_deadline_is_due_at_the_end_of_the_portals_next_working_day() {
    let app = spawn_app().await;
    let deal = app.portal.crm_add_item(2, json!({"title": "Deal"}));
    let sent = app
        .run_activity("crm_activity_add", json!({
            "subject": "Follow up", "type": "todo", "description": "Call back", "owner_type": "deal",
            "owner_id": deal.to_string(), "priority": "medium", "communication": "-", "deadline": ""
        }))
        .await;
    assert_eq!(sent.return_values["error_text"], "", "{}", sent.log_message);
    assert_eq!(app.portal.method_calls("server.time"), 1);
    let activities = app.portal.crm_activities();
    let deadline = activities[0]["DEADLINE"].as_str().unwrap().to_string();
    let due = chrono::DateTime::parse_from_rfc3339(&deadline).unwrap();
    // The simulated portal keeps Moscow time.
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(3 * 3600).unwrap())
        .date_naive();
    use chrono::Datelike;
    assert_eq!(due.offset().local_minus_utc(), 3 * 3600, "{deadline}");
    assert_eq!(
        due.time(),
        chrono::NaiveTime::from_hms_opt(18, 0, 0).unwrap()
    );
    assert!(due.date_naive() > today, "{deadline}");
    assert!(
        due.date_naive() <= today + chrono::Days::new(3),
        "{deadline}"
    );
    assert!(
        due.weekday().number_from_monday() <= 5,
        "{deadline} is a working day"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_keeps_its_priority_and_communication() {
    let app = spawn_app().await;
    let contact = app
        .portal
        .crm_add_item(3, json!({"name": "Eva", "assignedById": 1}));
    let sent = app
        .run_activity("crm_activity_add", json!({
            "subject": "Call Eva", "type": "call", "description": "About the invoice", "owner_type": "contact",
            "owner_id": contact.to_string(), "priority": "low", "communication": "+49 30 1234"
        }))
        .await;
    assert_eq!(sent.return_values["error_text"], "", "{}", sent.log_message);
    let a = &app.portal.crm_activities()[0];
    assert_eq!(a["TYPE_ID"], "2");
    assert_eq!(a["PRIORITY"], "1");
    assert_eq!(a["RESPONSIBLE_ID"], "1");
    assert_eq!(a["COMMUNICATIONS"][0]["VALUE"], "+49 30 1234");
    assert_eq!(a["COMMUNICATIONS"][0]["TYPE"], "PHONE");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_add_errors_are_clear_and_create_nothing() {
    let app = spawn_app().await;
    let denied = app.portal.crm_add_item(2, json!({"title": "Secret"}));
    app.portal.crm_deny_item(2, denied);
    let base = json!({"subject": "S", "type": "todo", "description": "D", "owner_type": "deal", "owner_id": "1",
        "priority": "low", "communication": "x", "deadline": "2026-09-01 10:00"});
    let with = |extra: serde_json::Value| {
        let mut p = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let cases = [
        (with(json!({"owner_id": "987654"})), "Owner not found"),
        (
            with(json!({"owner_id": denied.to_string()})),
            "Access denied",
        ),
        (
            with(json!({"type": "call", "owner_id": "987654", "communication": "+49 1"})),
            "Access denied",
        ),
        (with(json!({"type": "fax"})), "type"),
        (
            with(json!({"type": "email", "communication": "+49 1"})),
            "e-mail",
        ),
    ];
    for (props, expected) in cases {
        let sent = app.run_activity("crm_activity_add", props.clone()).await;
        let error = sent.return_values["error_text"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains(expected), "{props}: {error}");
    }
    assert!(app.portal.crm_activities().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_is_deleted_and_a_missing_one_is_an_error() {
    let app = spawn_app().await;
    let deal = app.portal.crm_add_item(2, json!({"title": "Deal"}));
    let id = app.portal.crm_add_activity(2, deal, "Old call");
    let before = app.portal.request_count();
    let sent = app
        .run_activity(
            "crm_activity_delete",
            json!({"activity_id": id.to_string()}),
        )
        .await;
    assert_eq!(sent.return_values["error_text"], "");
    assert_eq!(sent.return_values["result"], "true");
    assert_eq!(app.portal.request_count() - before, 2);
    assert!(app.portal.crm_activities().is_empty());
    let sent = app
        .run_activity(
            "crm_activity_delete",
            json!({"activity_id": id.to_string()}),
        )
        .await;
    assert!(sent.return_values["error_text"]
        .as_str()
        .unwrap()
        .contains("Activity is not found"));
    assert_eq!(sent.return_values["result"], "false");
    let other = app.portal.crm_add_item(2, json!({"title": "Secret"}));
    let kept = app.portal.crm_add_activity(2, other, "Kept");
    app.portal.crm_deny_item(2, other);
    let sent = app
        .run_activity(
            "crm_activity_delete",
            json!({"activity_id": kept.to_string()}),
        )
        .await;
    assert!(sent.return_values["error_text"]
        .as_str()
        .unwrap()
        .contains("Access denied"));
    assert_eq!(app.portal.crm_activities().len(), 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_post_is_a_timeline_comment_with_a_bold_title() {
    let app = spawn_app().await;
    let company = app.portal.crm_add_item(4, json!({"title": "Acme"}));
    let before = app.portal.request_count();
    let sent = app
        .run_activity("crm_feed_post", json!({
            "entity_type": "company", "entity_id": company.to_string(), "title": "Invoice sent", "message": "Link: https://pay.example/1"
        }))
        .await;
    assert_eq!(sent.return_values["error_text"], "");
    assert_eq!(sent.return_values["result"], "true");
    assert_eq!(app.portal.request_count() - before, 2);
    let comments = app.portal.crm_comments();
    assert_eq!(comments.len(), 1);
    assert_eq!(
        comments[0]["COMMENT"],
        "[B]Invoice sent[/B]\nLink: https://pay.example/1"
    );
    assert_eq!(comments[0]["ENTITY_TYPE"], "company");
    assert_eq!(
        sent.return_values["comment_id"],
        json!(comments[0]["ID"].as_str().unwrap().parse::<u64>().unwrap())
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_post_errors_are_clear() {
    let app = spawn_app().await;
    let sent = app
        .run_activity(
            "crm_feed_post",
            json!({"entity_type": "lead", "entity_id": "987654", "title": "T", "message": "M"}),
        )
        .await;
    assert!(sent.return_values["error_text"]
        .as_str()
        .unwrap()
        .contains("Owner not found"));
    assert_eq!(sent.return_values["result"], "false");
    let sent = app
        .run_activity(
            "crm_feed_post",
            json!({"entity_type": "order", "entity_id": "1", "title": "T", "message": "M"}),
        )
        .await;
    assert!(sent.return_values["error_text"]
        .as_str()
        .unwrap()
        .contains("entity_type"));
    assert!(app.portal.crm_comments().is_empty());
    app.cleanup().await;
}
