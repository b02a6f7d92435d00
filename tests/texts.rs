//! What a portal's users read is in the portal's language (issue 12): option titles and
//! help in the registrations, error texts and log lines sent to the workflow.
use b24flow_sim::RegisteredActivity;
use serde_json::{json, Value};

use crate::support::*;

/// A descriptor key as we send it (`Options`) or as a portal may spell it (`OPTIONS`).
fn key<'a>(descriptor: &'a Value, name: &str) -> &'a Value {
    descriptor
        .as_object()
        .and_then(|d| d.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
        .map(|(_, v)| v)
        .unwrap_or(&Value::Null)
}

fn property<'a>(registered: &'a [RegisteredActivity], code: &str, prop: &str) -> &'a Value {
    let activity = registered
        .iter()
        .find(|a| a.code == code && !a.is_robot)
        .unwrap_or_else(|| panic!("{code} not registered"));
    &activity.properties[prop]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_russian_portal_reads_russian_options_help_errors_and_log_lines() {
    // The simulator's portals are Russian unless told otherwise.
    let app = spawn_app().await;
    let registered = app.portal.activities();

    let priority = property(&registered, "crm_activity_add", "priority");
    assert_eq!(key(priority, "Options")["high"], "Высокая");
    assert_eq!(
        key(
            property(&registered, "crm_feed_post", "entity_type"),
            "Options"
        )["deal"],
        "Сделка"
    );
    let security = property(&registered, "smtp_send", "smtp_security");
    assert_eq!(
        key(security, "Options")["none"],
        "Без шифрования (обычно порт 25)"
    );
    // The robot registration carries the same.
    let robot = registered
        .iter()
        .find(|a| a.code == "robot_invoice_status")
        .expect("robot registered");
    assert_eq!(
        key(&robot.properties["invoice_kind"], "Options")["legacy"],
        "Старый счёт"
    );
    // Help: a {ru, en} map on every property (the portal upper-cases its keys), e.g. the
    // multi-field format of the updates.
    let phone_help = key(property(&registered, "deal_update", "title"), "Description");
    assert!(key(phone_help, "ru")
        .as_str()
        .unwrap()
        .contains("Пусто — не меняется"));
    let contact_phone = key(
        property(&registered, "contact_update", "phone"),
        "Description",
    );
    assert!(
        key(contact_phone, "ru")
            .as_str()
            .unwrap()
            .contains(":MOBILE"),
        "{contact_phone}"
    );
    assert!(key(contact_phone, "en")
        .as_str()
        .unwrap()
        .contains("Added to"));

    let missing = app.run_activity("user_info", json!({})).await;
    assert_eq!(
        missing.return_values["error_text"],
        "не заполнено обязательное свойство user_id"
    );
    assert_eq!(
        missing.log_message,
        "ошибка: не заполнено обязательное свойство user_id"
    );
    let malformed = app
        .run_activity("crm_activity_delete", json!({ "activity_id": "abc" }))
        .await;
    assert_eq!(
        malformed.return_values["error_text"],
        "activity_id: «abc» — не целое число"
    );

    let ok = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    assert_eq!(ok.return_values["error_text"], "", "{}", ok.log_message);
    assert!(
        ok.log_message.starts_with("получен профиль пользователя 1"),
        "{}",
        ok.log_message
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_english_portal_reads_english_options_help_errors_and_log_lines() {
    let app = spawn_english_app().await;
    let registered = app.portal.activities();

    let priority = property(&registered, "crm_activity_add", "priority");
    assert_eq!(key(priority, "Options")["high"], "High");
    assert_eq!(
        key(
            property(&registered, "crm_feed_post", "entity_type"),
            "Options"
        )["deal"],
        "Deal"
    );
    // Help and names stay {ru, en} maps: the portal shows its own language.
    let help = key(property(&registered, "user_info", "user_id"), "Description");
    assert!(
        key(help, "en").as_str().unwrap().contains("user_5 or 5"),
        "{help}"
    );
    assert!(
        key(help, "ru").as_str().unwrap().contains("user_5 или 5"),
        "{help}"
    );

    let missing = app.run_activity("user_info", json!({})).await;
    assert_eq!(
        missing.return_values["error_text"],
        "the required property user_id is empty"
    );
    assert_eq!(
        missing.log_message,
        "error: the required property user_id is empty"
    );
    let ok = app
        .run_activity("user_info", json!({ "user_id": "user_1" }))
        .await;
    assert!(
        ok.log_message.starts_with("user 1 (") && ok.log_message.ends_with(") read"),
        "{}",
        ok.log_message
    );
    app.cleanup().await;
}
