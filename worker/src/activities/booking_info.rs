//! `booking_info` (ACTIVITIES.md #4): what a resource booking holds (resources, users,
//! interval, service) from one batch of `calendar.resource.booking.list` +
//! `calendar.resource.list` (methods.md §4).
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use b24flow_common::bitrix::Batch;
use serde_json::{json, Map, Value};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::calendar::booking::{service_from_description, BookingValue, EntryKind};
use crate::schema::{ActivityDef, PropType, Property, Text};
use crate::values::{id_of, text_of};

pub struct BookingInfo;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(BookingInfo)
}

/// What the booking holds, joined from its events and the written entries.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    resource_ids: Vec<u64>,
    users: Vec<u64>,
    date_from: String,
    date_to: String,
    service: String,
}

impl Summary {
    fn is_empty(&self) -> bool {
        self.resource_ids.is_empty() && self.users.is_empty()
    }

    fn add_resource(&mut self, id: u64) {
        if !self.resource_ids.contains(&id) {
            self.resource_ids.push(id);
        }
    }

    fn add_user(&mut self, id: u64) {
        if !self.users.contains(&id) {
            self.users.push(id);
        }
    }

    /// One field value shares one interval and service (methods.md §4): the first wins.
    fn set_interval(&mut self, from: String, to: String, service: String) {
        if self.date_from.is_empty() {
            self.date_from = from;
            self.date_to = to;
        }
        if self.service.is_empty() {
            self.service = service;
        }
    }

    /// From `calendar.resource.booking.list`: one event per booked user or resource.
    fn add_events(&mut self, events: &[Value]) {
        for event in events {
            if text_of(event.get("DELETED")) == "Y" {
                continue;
            }
            if text_of(event.get("CAL_TYPE")) == "user" {
                if let Some(user) = id_of(event.get("OWNER_ID")).filter(|id| *id > 0) {
                    self.add_user(user);
                }
            } else if let Some(section) =
                id_of(event.get("SECTION_ID")).or(id_of(event.get("SECT_ID")))
            {
                self.add_resource(section);
            }
            self.set_interval(
                text_of(event.get("DATE_FROM")),
                text_of(event.get("DATE_TO")),
                service_from_description(&text_of(event.get("DESCRIPTION"))),
            );
        }
    }

    fn add_entries(&mut self, booking: &BookingValue) {
        for entry in &booking.entries {
            match entry.kind {
                EntryKind::User => self.add_user(entry.id),
                EntryKind::Resource => self.add_resource(entry.id),
            }
            let to = entry.to().unwrap_or_default();
            self.set_interval(entry.from.clone(), to, entry.service.clone());
        }
    }
}

#[async_trait]
impl Activity for BookingInfo {
    fn reads_only(&self) -> bool {
        true
    }

    fn definition(&self) -> ActivityDef {
        ActivityDef {
            code: "booking_info",
            name: Text::new(
                "Resource booking info",
                "Информация о бронировании ресурсов",
            ),
            description: Text::new(
                "Reads the resources, users, time and service of a resource booking",
                "Получает ресурсы, пользователей, время и услугу бронирования",
            ),
            properties: vec![crate::calendar::booking::booking_property()],
            returns: vec![
                Property::new("resource_names", PropType::String, "Resources", "Ресурсы")
                    .multiple(),
                Property::new("resource_ids", PropType::Int, "Resource IDs", "ID ресурсов")
                    .multiple(),
                Property::new("users", PropType::User, "Users", "Пользователи").multiple(),
                Property::new("date_from", PropType::Datetime, "Start", "Начало"),
                Property::new("date_to", PropType::Datetime, "End", "Окончание"),
                Property::new("service_name", PropType::String, "Service", "Услуга"),
            ],
        }
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let booking = BookingValue::read(input, "booking")?;
        let mut batch = Batch::new(false);
        if !booking.ids.is_empty() {
            batch.push(
                "bookings",
                "calendar.resource.booking.list",
                &json!({ "filter": { "resourceIdList": booking.ids } }),
            );
        }
        batch.push("resources", "calendar.resource.list", &json!({}));
        let answer = ctx.b24.batch(&batch).await?;

        let mut summary = Summary::default();
        if !booking.ids.is_empty() {
            let events = answer
                .get("bookings")?
                .as_array()
                .cloned()
                .unwrap_or_default();
            summary.add_events(&events);
        }
        summary.add_entries(&booking);
        if summary.is_empty() {
            let booking = booking.describe();
            return Err(ActivityError::invalid(Text {
                en: format!("no bookings found for {}", booking.en),
                ru: format!("бронирования не найдены: {}", booking.ru),
            }));
        }
        let names = resource_names(answer.get("resources")?);
        // A resource deleted since the booking has no name any more; keep the lists aligned.
        let resource_names: Vec<String> = summary
            .resource_ids
            .iter()
            .map(|id| names.get(id).cloned().unwrap_or_default())
            .collect();

        let users: Vec<String> = summary
            .users
            .iter()
            .map(|id| format!("user_{id}"))
            .collect();
        let mut values = Map::new();
        values.insert("resource_names".into(), json!(resource_names));
        values.insert("resource_ids".into(), json!(summary.resource_ids));
        values.insert("users".into(), json!(users));
        values.insert("date_from".into(), json!(summary.date_from));
        values.insert("date_to".into(), json!(summary.date_to));
        values.insert("service_name".into(), json!(summary.service));
        let described = booking.describe();
        let (from, to) = (&summary.date_from, &summary.date_to);
        let users = summary
            .users
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let resources = resource_names.join(", ");
        let service = &summary.service;
        let log_message = Text {
            en: format!(
                "booking {}: {from} – {to}{}; users [{users}]; resources [{resources}]",
                described.en,
                if service.is_empty() {
                    String::new()
                } else {
                    format!(", service {service}")
                },
            ),
            ru: format!(
                "бронирование {}: {from} – {to}{}; пользователи [{users}]; ресурсы [{resources}]",
                described.ru,
                if service.is_empty() {
                    String::new()
                } else {
                    format!(", услуга {service}")
                },
            ),
        };
        Ok(Output {
            return_values: values,
            log_message,
        })
    }
}

/// `calendar.resource.list` → `[{ID, NAME, CREATED_BY}]`.
fn resource_names(list: &Value) -> HashMap<u64, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((id_of(r.get("ID"))?, text_of(r.get("NAME")))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_give_users_resources_interval_and_service() {
        let mut summary = Summary::default();
        summary.add_events(&[
            json!({"ID": "1408", "CAL_TYPE": "user", "OWNER_ID": "5", "DESCRIPTION": "Service: Massage",
                   "DATE_FROM": "20.12.2024 10:00:00", "DATE_TO": "20.12.2024 11:00:00"}),
            json!({"ID": "1409", "CAL_TYPE": "resource", "OWNER_ID": "0", "SECTION_ID": "198",
                   "DATE_FROM": "20.12.2024 10:00:00", "DATE_TO": "20.12.2024 11:00:00"}),
            json!({"ID": "1410", "CAL_TYPE": "user", "OWNER_ID": "9", "DELETED": "Y"}),
        ]);
        assert_eq!(summary.users, vec![5]);
        assert_eq!(summary.resource_ids, vec![198]);
        assert_eq!(summary.date_to, "20.12.2024 11:00:00");
        assert_eq!(summary.service, "Massage");
        let names = resource_names(&json!([{"ID": "198", "NAME": "Room A"}]));
        assert_eq!(names.get(&198).map(String::as_str), Some("Room A"));
    }

    #[test]
    fn every_contract_return_value_is_declared() {
        let def = BookingInfo.definition();
        let keys: Vec<&str> = def.returns.iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "resource_names",
                "resource_ids",
                "users",
                "date_from",
                "date_to",
                "service_name"
            ]
        );
        assert!(def.properties[0].required && def.properties[0].multiple);
    }
}
