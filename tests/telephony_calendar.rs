//! `callback_call`, `booking_info` and `booking_rename` against the simulated portal's
//! telephony and calendar: what the portal recorded (calls started, events renamed), the
//! portal's own refusals, input errors caught before any call, and retries.
use serde_json::{json, Value};

use crate::support::*;

fn error_text(sent: &b24flow_sim::EventSend) -> String {
    sent.return_values["error_text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const CALL_TEXT: &str = "Client Acme asked for a callback";

fn call(phone: &str, line: &str) -> Value {
    json!({ "phone": phone, "line": line, "text": CALL_TEXT, "voice": "ruinternalfemale" })
}

// ---- callback_call ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_call_rings_the_chosen_line_and_dials_the_normalised_number() {
    let app = spawn_app().await;
    app.portal.add_phone_line("reg151083", "Cloud PBX (9)");
    let before = app.portal.request_count();
    let sent = app
        .run_activity("callback_call", call("8 (912) 345-67-89", "reg151083"))
        .await;
    assert_eq!(error_text(&sent), "");
    assert_eq!(sent.return_values["result"], "OK");
    let calls = app.portal.callback_calls();
    assert_eq!(calls.len(), 1);
    let started = &calls[0];
    assert_eq!(started.from_line, "reg151083");
    assert_eq!(started.to_number, "+79123456789");
    assert_eq!(started.text, CALL_TEXT);
    assert_eq!(started.voice.as_deref(), Some("ruinternalfemale"));
    assert_eq!(sent.return_values["call_id"], started.call_id.as_str());
    assert!(
        sent.log_message.contains(&started.call_id),
        "{}",
        sent.log_message
    );
    // voximplant.callback.start, then bizproc.event.send.
    assert_eq!(app.portal.request_count() - before, 2);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_outgoing_line_is_read_when_the_call_starts_in_the_same_request() {
    let app = spawn_app().await;
    app.portal.add_phone_line("sip7", "Office PBX");
    app.portal.add_phone_line("reg151083", "Cloud PBX (9)");
    // Changed after the activity was registered: the call still follows it.
    app.portal.set_default_outgoing_line("sip7");
    let before = app.portal.request_count();
    let sent = app
        .run_activity("callback_call", call("+49 170 1234567", "default"))
        .await;
    assert_eq!(error_text(&sent), "");
    let calls = app.portal.callback_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].from_line, "sip7");
    assert_eq!(calls[0].to_number, "+491701234567");
    assert!(sent.log_message.contains("sip7"), "{}", sent.log_message);
    assert_eq!(app.portal.request_count() - before, 2);
    assert_eq!(
        app.portal.method_calls("voximplant.line.outgoing.get"),
        2,
        "registration and this run"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_station_number_entry_calls_from_the_portals_base_number() {
    let app = spawn_app().await;
    app.portal.set_base_number("+74951234567");
    let sent = app
        .run_activity(
            "callback_call",
            call("+7 912 345 67 89", "LINK_BASE_NUMBER"),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    assert_eq!(app.portal.callback_calls()[0].from_line, "LINK_BASE_NUMBER");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_line_is_an_error_with_the_portals_reason_and_starts_no_call() {
    let app = spawn_app().await;
    let sent = app
        .run_activity("callback_call", call("+79123456789", "reg000000"))
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(
        error_text(&sent).contains("Could not find line reg000000"),
        "{}",
        error_text(&sent)
    );
    assert!(
        sent.log_message.contains("Could not find line"),
        "{}",
        sent.log_message
    );
    assert!(app.portal.callback_calls().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_the_portal_rejects_is_an_error_and_starts_no_call() {
    let app = spawn_app().await;
    app.portal.add_phone_line("sip7", "Office PBX");
    let sent = app
        .run_activity("callback_call", call("12-34", "sip7"))
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(
        error_text(&sent).contains("Phone number is not correct"),
        "{}",
        error_text(&sent)
    );
    assert!(app.portal.callback_calls().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_the_outgoing_call_permission_gets_access_denied() {
    let app = spawn_app().await;
    app.portal.add_phone_line("sip7", "Office PBX");
    app.portal.deny_outgoing_calls(1);
    let sent = app
        .run_activity("callback_call", call("+79123456789", "sip7"))
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(
        error_text(&sent).contains("Access denied"),
        "{}",
        error_text(&sent)
    );
    assert!(app.portal.callback_calls().is_empty());
    assert_eq!(
        app.portal.method_calls("voximplant.callback.start"),
        1,
        "no retry of a refusal"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_phone_or_text_fails_at_once_without_calling() {
    let app = spawn_app().await;
    app.portal.add_phone_line("sip7", "Office PBX");
    let sent = app
        .run_activity(
            "callback_call",
            json!({ "phone": "", "line": "sip7", "text": CALL_TEXT }),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(error_text(&sent).contains("phone"), "{}", error_text(&sent));
    let sent = app
        .run_activity(
            "callback_call",
            json!({ "phone": "+79123456789", "line": "sip7" }),
        )
        .await;
    assert!(error_text(&sent).contains("text"), "{}", error_text(&sent));
    assert_eq!(app.portal.method_calls("voximplant.callback.start"), 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_options_come_from_the_portal_and_a_new_registration_refreshes_them() {
    let app = spawn_app().await;
    let line_options = |app: &TestApp| -> Value {
        app.portal
            .activities()
            .into_iter()
            .find(|a| a.code == "callback_call")
            .map(|a| a.properties["line"]["OPTIONS"].clone())
            .unwrap_or(Value::Null)
    };
    let options = line_options(&app);
    assert!(
        options.get("default").is_some() && options.get("LINK_BASE_NUMBER").is_some(),
        "{options}"
    );
    assert!(options.get("sip9").is_none());
    let voices = app
        .portal
        .activities()
        .into_iter()
        .find(|a| a.code == "callback_call")
        .map(|a| a.properties["voice"]["OPTIONS"].clone())
        .unwrap_or(Value::Null);
    assert!(voices.get("ruinternalfemale").is_some(), "{voices}");

    // A line added later appears after the registration job runs again (no reinstall).
    app.portal.add_phone_line("sip9", "New office");
    app.portal.set_default_outgoing_line("sip9");
    app.install().await;
    wait_until(|| async { line_options(&app).get("sip9").is_some() }).await;
    let options = line_options(&app);
    assert_eq!(options["sip9"], "New office");
    // The simulated portal speaks Russian, so the registration does too.
    assert_eq!(options["default"], "Линия по умолчанию (сейчас New office)");
    assert!(app.portal.method_calls("bizproc.activity.update") > 0);
    app.cleanup().await;
}

// ---- booking_info ----

/// Two users and a room booked for 90 minutes; returns (users, room, booking IDs).
fn seed_booking(app: &TestApp) -> (Vec<u64>, u64, Vec<u64>) {
    let anna = app
        .portal
        .add_user(json!({ "NAME": "Anna", "LAST_NAME": "Koch" }));
    let ben = app
        .portal
        .add_user(json!({ "NAME": "Ben", "LAST_NAME": "Wagner" }));
    let room = app.portal.add_calendar_resource("Room A");
    let booking = app.portal.add_booking(
        &[anna, ben],
        &[room],
        "20.12.2024 10:00:00",
        5400,
        "Massage",
        "Acme",
    );
    (vec![anna, ben], room, booking)
}

fn id_strings(ids: &[u64]) -> Vec<String> {
    ids.iter().map(u64::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_info_returns_resources_users_interval_and_service_from_one_batch() {
    let app = spawn_app().await;
    let (users, room, booking) = seed_booking(&app);
    let before = app.portal.request_count();
    let sent = app
        .run_activity("booking_info", json!({ "booking": id_strings(&booking) }))
        .await;
    let v = &sent.return_values;
    assert_eq!(error_text(&sent), "");
    assert_eq!(v["resource_names"], json!(["Room A"]));
    assert_eq!(v["resource_ids"], json!([room]));
    assert_eq!(
        v["users"],
        json!([format!("user_{}", users[0]), format!("user_{}", users[1])])
    );
    assert_eq!(v["date_from"], "20.12.2024 10:00:00");
    assert_eq!(v["date_to"], "20.12.2024 11:30:00");
    assert_eq!(v["service_name"], "Massage");
    assert!(sent.log_message.contains("Room A"), "{}", sent.log_message);
    // One batch, then bizproc.event.send.
    assert_eq!(app.portal.request_count() - before, 2);
    assert_eq!(app.portal.method_calls("calendar.resource.booking.list"), 1);
    assert_eq!(app.portal.method_calls("calendar.resource.list"), 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_info_takes_the_ids_as_one_joined_string() {
    let app = spawn_app().await;
    let (_, room, booking) = seed_booking(&app);
    let joined = id_strings(&booking).join(", ");
    let sent = app
        .run_activity("booking_info", json!({ "booking": joined }))
        .await;
    assert_eq!(error_text(&sent), "");
    assert_eq!(sent.return_values["resource_ids"], json!([room]));
    assert_eq!(
        sent.return_values["users"].as_array().map(Vec::len),
        Some(2)
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_info_reads_written_type_id_from_duration_service_values() {
    let app = spawn_app().await;
    let room = app.portal.add_calendar_resource("Room B");
    let value = json!([
        "user|5|21.12.2024 09:30:00|3600|Manicure",
        format!("resource|{room}|21.12.2024 09:30:00|3600|Manicure"),
    ]);
    let before = app.portal.request_count();
    let sent = app
        .run_activity("booking_info", json!({ "booking": value }))
        .await;
    let v = &sent.return_values;
    assert_eq!(error_text(&sent), "");
    assert_eq!(v["users"], json!(["user_5"]));
    assert_eq!(v["resource_ids"], json!([room]));
    assert_eq!(v["resource_names"], json!(["Room B"]));
    assert_eq!(v["date_from"], "21.12.2024 09:30:00");
    assert_eq!(v["date_to"], "21.12.2024 10:30:00");
    assert_eq!(v["service_name"], "Manicure");
    assert_eq!(app.portal.request_count() - before, 2);
    assert_eq!(app.portal.method_calls("calendar.resource.booking.list"), 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_info_for_a_booking_that_does_not_exist_is_a_clear_error() {
    let app = spawn_english_app().await;
    let sent = app
        .run_activity("booking_info", json!({ "booking": ["987654"] }))
        .await;
    let error = error_text(&sent);
    assert!(
        error.contains("no bookings found") && error.contains("987654"),
        "{error}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_info_with_a_malformed_value_fails_before_any_calendar_call() {
    let app = spawn_app().await;
    let sent = app
        .run_activity("booking_info", json!({ "booking": "user_5" }))
        .await;
    assert!(
        error_text(&sent).contains("booking"),
        "{}",
        error_text(&sent)
    );
    let sent = app.run_activity("booking_info", json!({})).await;
    assert!(
        error_text(&sent).contains("booking"),
        "{}",
        error_text(&sent)
    );
    assert_eq!(app.portal.method_calls("calendar.resource.list"), 0);
    app.cleanup().await;
}

// ---- booking_rename ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_rename_renames_every_users_event_in_one_batch_keeping_the_interval() {
    let app = spawn_app().await;
    let (users, _, booking) = seed_booking(&app);
    let before = app.portal.request_count();
    let sent = app
        .run_activity(
            "booking_rename",
            json!({ "booking": id_strings(&booking), "name": "Massage – Acme VIP", "description": "Room A, bring towels" }),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    assert_eq!(sent.return_values["result"], "OK");
    assert!(
        sent.log_message.contains("Anna Koch") && sent.log_message.contains("Ben Wagner"),
        "{}",
        sent.log_message
    );
    let events = app.portal.booking_events(&booking);
    for event in &events {
        assert_eq!(event.date_from, "20.12.2024 10:00:00", "interval kept");
        assert_eq!(event.date_to, "20.12.2024 11:30:00", "interval kept");
        if event.cal_type == "user" {
            assert!(users.contains(&event.owner_id));
            assert_eq!(event.name, "Massage – Acme VIP");
            assert_eq!(event.description, "Room A, bring towels");
        } else {
            assert_eq!(
                event.name, "Booking: Acme",
                "resource events are not users' events"
            );
        }
    }
    let updates = app.portal.calendar_event_updates();
    assert_eq!(updates.len(), 2);
    for update in &updates {
        assert!(update.applied);
        assert_eq!(update.params["type"], "user");
        assert_eq!(
            update.params["from"], "20.12.2024 10:00:00",
            "the event's own from is resent"
        );
        assert_eq!(update.params["to"], "20.12.2024 11:30:00");
    }
    // booking.list, one batch of updates, bizproc.event.send.
    assert_eq!(app.portal.request_count() - before, 3);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_rename_finds_the_events_of_written_user_entries() {
    let app = spawn_app().await;
    let (users, _, booking) = seed_booking(&app);
    let value = json!([format!(
        "user|{}|20.12.2024 10:00:00|5400|Massage",
        users[1]
    )]);
    let sent = app
        .run_activity(
            "booking_rename",
            json!({ "booking": value, "name": "Ben's massage" }),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    let events = app.portal.booking_events(&booking);
    let renamed: Vec<u64> = events
        .iter()
        .filter(|e| e.name == "Ben's massage")
        .map(|e| e.owner_id)
        .collect();
    assert_eq!(renamed, vec![users[1]]);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_over_255_characters_is_refused_before_any_call() {
    let app = spawn_app().await;
    let (_, _, booking) = seed_booking(&app);
    let name = "я".repeat(256);
    let sent = app
        .run_activity(
            "booking_rename",
            json!({ "booking": id_strings(&booking), "name": name }),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(error_text(&sent).contains("255"), "{}", error_text(&sent));
    assert_eq!(app.portal.method_calls("calendar.resource.booking.list"), 0);
    assert!(app.portal.calendar_event_updates().is_empty());
    // Exactly 255 is allowed.
    let sent = app
        .run_activity(
            "booking_rename",
            json!({ "booking": id_strings(&booking), "name": "я".repeat(255) }),
        )
        .await;
    assert_eq!(sent.return_values["result"], "OK", "{}", error_text(&sent));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_calendar_may_not_be_edited_is_named_and_the_result_is_error() {
    let app = spawn_english_app().await;
    let (users, _, booking) = seed_booking(&app);
    app.portal.restrict_calendar_to_owner(users[1]);
    let sent = app
        .run_activity(
            "booking_rename",
            json!({ "booking": id_strings(&booking), "name": "Renamed" }),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    let error = error_text(&sent);
    assert!(
        error.contains("Ben Wagner") && error.contains("Access denied"),
        "{error}"
    );
    assert!(error.contains("renamed for Anna Koch"), "{error}");
    assert!(
        sent.log_message.contains("Ben Wagner"),
        "{}",
        sent.log_message
    );
    for event in app.portal.booking_events(&booking) {
        if event.owner_id == users[0] {
            assert_eq!(event.name, "Renamed");
        } else if event.owner_id == users[1] {
            assert_eq!(event.name, "Booking: Acme");
        }
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_rename_of_a_booking_that_does_not_exist_is_a_clear_error() {
    let app = spawn_app().await;
    let sent = app
        .run_activity(
            "booking_rename",
            json!({ "booking": "987654", "name": "Renamed" }),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(
        error_text(&sent).contains("987654"),
        "{}",
        error_text(&sent)
    );
    assert!(app.portal.calendar_event_updates().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_refuses_an_event_update_without_id_type_or_owner() {
    let app = spawn_app().await;
    let (users, _, booking) = seed_booking(&app);
    let event = app.portal.booking_events(&booking)[0].clone();
    let token = app.portal.issue_token(1);
    let update = |params: Value| {
        let http = app.http.clone();
        let url = format!("{}calendar.event.update", app.portal.rest_url());
        let mut params = params;
        params["auth"] = json!(token.access_token);
        async move {
            let response = http.post(url).json(&params).send().await.expect("request");
            (
                response.status().as_u16(),
                response.json::<Value>().await.expect("json"),
            )
        }
    };
    for missing in ["id", "type", "ownerId"] {
        let mut params =
            json!({ "id": event.id, "type": "user", "ownerId": users[0], "name": "x" });
        params.as_object_mut().expect("object").remove(missing);
        let (status, body) = update(params).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.contains(&format!("\"{missing}\"")),
            "{description}"
        );
    }
    assert_eq!(app.portal.booking_events(&booking)[0].name, "Booking: Acme");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_seed_lets_all_three_activities_succeed() {
    let app = spawn_app().await;
    let users = app.portal.seed_demo_directory(3);
    let demo = app.portal.seed_demo_telephony_and_calendar(&users);
    let call = app
        .run_activity(
            "callback_call",
            json!({ "phone": demo.client_phone, "line": "default", "text": "Demo callback" }),
        )
        .await;
    assert_eq!(error_text(&call), "");
    assert_eq!(app.portal.callback_calls()[0].from_line, demo.line);
    let booking = id_strings(&demo.booking);
    let info = app
        .run_activity("booking_info", json!({ "booking": booking }))
        .await;
    assert_eq!(error_text(&info), "");
    assert_eq!(
        info.return_values["resource_names"],
        json!(["Meeting room A"])
    );
    let renamed = app
        .run_activity(
            "booking_rename",
            json!({ "booking": booking, "name": "Demo: consultation" }),
        )
        .await;
    assert_eq!(
        renamed.return_values["result"],
        "OK",
        "{}",
        error_text(&renamed)
    );
    app.cleanup().await;
}
