//! `booking_rename` (ACTIVITIES.md #5): renames every user's calendar event of a resource
//! booking. Two requests (methods.md §5): one batch finds the events
//! (`calendar.resource.booking.list`, or `calendar.event.get` per written `user|…` entry),
//! one batch updates them all with `calendar.event.update`. Renaming twice is harmless, so
//! a retry needs no idempotency marker.
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use b24flow_common::bitrix::{Batch, ErrorKind};
use chrono::Duration;
use serde_json::{json, Map, Value};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::calendar::booking::{after, same_moment, BookingValue, Entry, EntryKind, PortalTime};
use crate::schema::{ActivityDef, PropType, Property, Text};
use crate::text;
use crate::values::{id_of, text_of};

pub struct BookingRename;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(BookingRename)
}

/// The contract's limit (ACTIVITIES.md #5): longer names are an error, not cut.
const MAX_NAME_CHARS: usize = 255;
/// Bitrix24 batch limit; one command is kept for the users' names.
const MAX_UPDATES: usize = 49;
/// `EVENT_TYPE` of the events a booking creates (methods.md §4).
const BOOKING_EVENT_TYPE: &str = "#resourcebooking#";

/// One user's event of the booking, with what `calendar.event.update` must be given back.
#[derive(Clone, Debug, PartialEq)]
struct UserEvent {
    event_id: u64,
    owner_id: u64,
    event: Value,
}

/// A user whose event could not be renamed, and why.
struct Failure {
    user: u64,
    reason: Text,
}

#[async_trait]
impl Activity for BookingRename {
    fn definition(&self) -> ActivityDef {
        ActivityDef {
            code: "booking_rename",
            name: Text::new(
                "Rename the booking's calendar events",
                "Переименовать событие бронирования ресурсов",
            ),
            description: Text::new(
                "Renames every user's calendar event of a resource booking",
                "Переименовывает события бронирования в календарях всех пользователей",
            ),
            properties: vec![
                crate::calendar::booking::booking_property(),
                Property::new(
                    "name",
                    PropType::String,
                    "New name (at most 255 characters)",
                    "Новое название (не более 255 символов)",
                )
                .required()
                .help(
                    "The new name of every user's booking event. A longer name is an error, not cut.",
                    "Новое название события бронирования у каждого пользователя. Более длинное \
                     название — ошибка, оно не обрезается.",
                ),
                Property::new("description", PropType::Text, "Description", "Описание").help(
                    "The events' new description. Empty: the description stays as it is.",
                    "Новое описание событий. Пусто — описание не меняется.",
                ),
            ],
            returns: vec![crate::values::result_property()],
        }
    }

    fn failure_values(&self) -> Map<String, Value> {
        crate::values::result_error()
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let name = input.required_string("name")?;
        let length = name.chars().count();
        if length > MAX_NAME_CHARS {
            return Err(ActivityError::invalid(text!(
                "name is {length} characters long; at most {MAX_NAME_CHARS} are allowed",
                "name: длина названия {length} символов, допускается не более {MAX_NAME_CHARS}"
            )));
        }
        let description = input.string("description");
        let booking = BookingValue::read(input, "booking")?;
        let user_entries: Vec<&Entry> = booking
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::User)
            .collect();
        if user_entries.len() > MAX_UPDATES {
            let users = user_entries.len();
            return Err(ActivityError::invalid(text!(
                "booking names {users} users; at most {MAX_UPDATES} can be renamed in one run",
                "в бронировании пользователей: {users}; за один запуск можно переименовать не более {MAX_UPDATES}"
            )));
        }

        let (events, mut failures) = find_user_events(ctx, &booking, &user_entries).await?;
        if events.is_empty() && failures.is_empty() {
            let booking = booking.describe();
            return Err(ActivityError::invalid(Text {
                en: format!(
                    "no users' events found for booking {} (nothing to rename)",
                    booking.en
                ),
                ru: format!(
                    "у пользователей нет событий бронирования {} (нечего переименовывать)",
                    booking.ru
                ),
            }));
        }
        if events.len() > MAX_UPDATES {
            let (booking, count) = (booking.describe(), events.len());
            return Err(ActivityError::invalid(Text {
                en: format!(
                    "booking {} has {count} users' events; at most {MAX_UPDATES} can be renamed in one run",
                    booking.en
                ),
                ru: format!(
                    "у бронирования {} событий пользователей: {count}; за один запуск можно переименовать не более {MAX_UPDATES}",
                    booking.ru
                ),
            }));
        }

        let mut batch = Batch::new(false);
        for ev in &events {
            batch.push(
                &update_key(ev.event_id),
                "calendar.event.update",
                &update_params(ev, &name, description.as_deref()),
            );
        }
        let mut owners: Vec<u64> = events.iter().map(|e| e.owner_id).collect();
        owners.extend(failures.iter().map(|f| f.user));
        owners.sort_unstable();
        owners.dedup();
        batch.push("names", "user.get", &json!({ "filter": { "ID": owners } }));
        let answer = if events.is_empty() {
            None
        } else {
            Some(ctx.b24.batch(&batch).await?)
        };

        let mut renamed = Vec::new();
        if let Some(answer) = &answer {
            for ev in &events {
                match answer.get(&update_key(ev.event_id)) {
                    Ok(_) => renamed.push(ev.owner_id),
                    // A portal hiccup inside the batch: renaming again is harmless, so retry.
                    Err(e) if e.kind() != ErrorKind::Permanent => return Err(e.into()),
                    Err(e) => failures.push(Failure {
                        user: ev.owner_id,
                        reason: Text::from(e.description()),
                    }),
                }
            }
        }
        let names = answer
            .as_ref()
            .and_then(|a| a.get("names").ok())
            .map(user_names)
            .unwrap_or_default();
        let who = |id: &u64| match names.get(id) {
            Some(n) if !n.is_empty() => text!("{n} (user {id})", "{n} (пользователь {id})"),
            _ => text!("user {id}", "пользователь {id}"),
        };
        let join = |texts: Vec<Text>, sep: &str| Text {
            en: texts
                .iter()
                .map(|t| t.en.as_str())
                .collect::<Vec<_>>()
                .join(sep),
            ru: texts
                .iter()
                .map(|t| t.ru.as_str())
                .collect::<Vec<_>>()
                .join(sep),
        };
        let renamed_text = join(renamed.iter().map(who).collect(), ", ");
        if !failures.is_empty() {
            let failed = join(
                failures
                    .iter()
                    .map(|f| {
                        let user = who(&f.user);
                        Text {
                            en: format!("{}: {}", user.en, f.reason.en),
                            ru: format!("{}: {}", user.ru, f.reason.ru),
                        }
                    })
                    .collect(),
                "; ",
            );
            let done = if renamed.is_empty() {
                text!("nothing renamed", "ничего не переименовано")
            } else {
                Text {
                    en: format!("renamed for {}", renamed_text.en),
                    ru: format!("переименовано у: {}", renamed_text.ru),
                }
            };
            return Err(ActivityError::invalid(Text {
                en: format!(
                    "could not rename the booking's event for {} ({})",
                    failed.en, done.en
                ),
                ru: format!(
                    "не удалось переименовать событие бронирования у: {} ({})",
                    failed.ru, done.ru
                ),
            }));
        }
        let mut values = Map::new();
        values.insert("result".into(), json!("OK"));
        let (booking, count) = (booking.describe(), renamed.len());
        Ok(Output {
            return_values: values,
            log_message: Text {
                en: format!(
                    "booking {}: {count} events renamed to {name:?} for {}",
                    booking.en, renamed_text.en
                ),
                ru: format!(
                    "бронирование {}: событий переименовано: {count}, новое название «{name}», у: {}",
                    booking.ru, renamed_text.ru
                ),
            },
        })
    }
}

/// Request 1: the users' events of the booking. Written `user|id|from|…` entries carry
/// no event ID, so each is looked up among that user's events of the day.
async fn find_user_events(
    ctx: &RunContext,
    booking: &BookingValue,
    user_entries: &[&Entry],
) -> Result<(Vec<UserEvent>, Vec<Failure>), ActivityError> {
    let mut batch = Batch::new(false);
    if !booking.ids.is_empty() {
        batch.push(
            "bookings",
            "calendar.resource.booking.list",
            &json!({ "filter": { "resourceIdList": booking.ids } }),
        );
    }
    for (i, entry) in user_entries.iter().enumerate() {
        batch.push(&format!("e{i}"), "calendar.event.get", &day_query(entry));
    }
    if batch.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let answer = ctx.b24.batch(&batch).await?;
    let mut events: Vec<UserEvent> = Vec::new();
    let mut failures = Vec::new();
    let mut add = |ev: UserEvent| {
        if !events.iter().any(|e| e.event_id == ev.event_id) {
            events.push(ev);
        }
    };
    if !booking.ids.is_empty() {
        for event in answer.get("bookings")?.as_array().into_iter().flatten() {
            if text_of(event.get("CAL_TYPE")) == "user" && text_of(event.get("DELETED")) != "Y" {
                if let Some(ev) = user_event(event) {
                    add(ev);
                }
            }
        }
    }
    for (i, entry) in user_entries.iter().enumerate() {
        let found = match answer.get(&format!("e{i}")) {
            Ok(list) => list
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| text_of(e.get("EVENT_TYPE")) == BOOKING_EVENT_TYPE)
                .find(|e| same_moment(&text_of(e.get("DATE_FROM")), &entry.from))
                .and_then(user_event),
            Err(e) if e.kind() != ErrorKind::Permanent => return Err(e.into()),
            Err(e) => {
                failures.push(Failure {
                    user: entry.id,
                    reason: Text::from(e.description()),
                });
                continue;
            }
        };
        match found {
            Some(ev) => add(ev),
            None => failures.push(Failure {
                user: entry.id,
                reason: text!(
                    "no booking event at {} in the user's calendar",
                    "в календаре пользователя нет события бронирования на {}",
                    entry.from
                ),
            }),
        }
    }
    Ok((events, failures))
}

fn user_event(event: &Value) -> Option<UserEvent> {
    Some(UserEvent {
        event_id: id_of(event.get("ID"))?,
        owner_id: id_of(event.get("OWNER_ID")).filter(|id| *id > 0)?,
        event: event.clone(),
    })
}

/// `calendar.event.get` over the entry's day(s) in the user's calendar.
fn day_query(entry: &Entry) -> Value {
    let mut params = json!({ "type": "user", "ownerId": entry.id });
    let parsed = PortalTime::parse(&entry.from).and_then(|(start, _)| {
        let end = after(start, entry.duration_secs)?.checked_add_signed(Duration::days(1))?;
        Some((start, end))
    });
    if let Some((start, end)) = parsed {
        params["from"] = json!(start.date().format("%Y-%m-%d").to_string());
        params["to"] = json!(end.date().format("%Y-%m-%d").to_string());
    }
    params
}

fn update_key(event_id: u64) -> String {
    format!("u{event_id}")
}

/// The REST handler copies `from`/`to` into the event unconditionally (methods.md §5), so
/// the event's own interval, all-day flag and time zones go back with the new name.
fn update_params(ev: &UserEvent, name: &str, description: Option<&str>) -> Value {
    let mut params = Map::new();
    params.insert("id".into(), json!(ev.event_id));
    params.insert("type".into(), json!("user"));
    params.insert("ownerId".into(), json!(ev.owner_id));
    params.insert("name".into(), json!(name));
    if let Some(description) = description {
        params.insert("description".into(), json!(description));
    }
    for (param, field) in [
        ("from", "DATE_FROM"),
        ("to", "DATE_TO"),
        ("skip_time", "DT_SKIP_TIME"),
        ("timezone_from", "TZ_FROM"),
        ("timezone_to", "TZ_TO"),
    ] {
        let value = text_of(ev.event.get(field));
        if !value.is_empty() {
            params.insert(param.into(), json!(value));
        }
    }
    Value::Object(params)
}

/// `user.get` → ID → "First Last".
fn user_names(users: &Value) -> HashMap<u64, String> {
    users
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| {
            let name = format!("{} {}", text_of(u.get("NAME")), text_of(u.get("LAST_NAME")));
            Some((id_of(u.get("ID"))?, name.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_resend_the_events_own_interval() {
        let ev = user_event(&json!({"ID": "1408", "OWNER_ID": "5", "DATE_FROM": "20.12.2024 10:00:00",
            "DATE_TO": "20.12.2024 11:00:00", "DT_SKIP_TIME": "N", "TZ_FROM": "Europe/Riga", "TZ_TO": "Europe/Riga"}))
        .unwrap();
        let params = update_params(&ev, "Massage – Acme", None);
        assert_eq!(params["id"], 1408);
        assert_eq!(params["ownerId"], 5);
        assert_eq!(params["type"], "user");
        assert_eq!(params["from"], "20.12.2024 10:00:00");
        assert_eq!(params["to"], "20.12.2024 11:00:00");
        assert_eq!(params["skip_time"], "N");
        assert_eq!(params["timezone_from"], "Europe/Riga");
        assert!(params.get("description").is_none());
        assert_eq!(update_params(&ev, "x", Some("d"))["description"], "d");
    }

    #[test]
    fn written_entries_are_looked_up_over_their_days() {
        let entry = Entry {
            kind: EntryKind::User,
            id: 5,
            from: "20.12.2024 23:30:00".into(),
            duration_secs: 3600,
            service: String::new(),
        };
        let q = day_query(&entry);
        assert_eq!(
            (q["ownerId"].clone(), q["from"].clone(), q["to"].clone()),
            (json!(5), json!("2024-12-20"), json!("2024-12-22"))
        );
        assert_eq!(
            user_names(&json!([{"ID": "5", "NAME": "Anna", "LAST_NAME": "Koch"}]))[&5],
            "Anna Koch"
        );
    }
}
