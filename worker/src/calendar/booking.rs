//! The value of a resource-booking field (methods.md §4), shared by `booking_info` and
//! `booking_rename`: stored values are resource-booking IDs (a list or a joined string),
//! written values are `type|id|from|duration|service` strings. Also the portal's datetime
//! formats, so an end time computed from `from + duration` reads like the portal's own.
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime};

use crate::activity::{ActivityError, Input};
use crate::schema::Text;
use crate::{text, texts};

/// The `booking` property both booking activities take: the booking field's value.
pub fn booking_property() -> crate::schema::Property {
    crate::schema::Property::new(
        "booking",
        crate::schema::PropType::String,
        "Booking (field value)",
        "Бронирование (значение поля)",
    )
    .required()
    .multiple()
    .help(
        "The booking field's value, e.g. {=Document:UF_CRM_…}: booking IDs, or \
         user|5|01.05.2026 10:00:00|3600|Service strings (type|id|start|seconds|service).",
        "Значение поля бронирования, например {=Document:UF_CRM_…}: ID бронирований \
         или строки user|5|01.05.2026 10:00:00|3600|Услуга (тип|ID|начало|секунды|услуга).",
    )
}

/// A booking as the workflow gave it: IDs, written entries, or both.
#[derive(Debug, Default, PartialEq)]
pub struct BookingValue {
    /// Resource-booking IDs (`calendar.resource.booking.list` `resourceIdList`).
    pub ids: Vec<u64>,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    User,
    Resource,
}

/// The longest booking we read (a year); anything longer is a malformed value.
const MAX_DURATION_SECS: i64 = 366 * 24 * 3600;

/// One `type|id|from|duration|service` string.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub kind: EntryKind,
    /// A user ID or a resource (calendar section) ID.
    pub id: u64,
    /// As written, in the portal's format.
    pub from: String,
    pub duration_secs: i64,
    pub service: String,
}

impl Entry {
    /// The end, formatted like `from`; `None` if `from` is not a datetime we can read.
    pub fn to(&self) -> Option<String> {
        let (start, format) = PortalTime::parse(&self.from)?;
        Some(format.render(after(start, self.duration_secs)?))
    }
}

/// `start` plus `secs`, or `None` past the calendar's end.
pub fn after(start: NaiveDateTime, secs: i64) -> Option<NaiveDateTime> {
    start.checked_add_signed(Duration::try_seconds(secs)?)
}

impl BookingValue {
    /// Reads property `key`; empty or malformed values are clear errors (ACTIVITIES.md rules).
    pub fn read(input: &Input, key: &str) -> Result<Self, ActivityError> {
        let mut value = BookingValue::default();
        for raw in input.list(key) {
            if raw.contains('|') {
                value.entries.push(parse_entry(&raw).ok_or_else(|| {
                    ActivityError::invalid(text!(
                        "{key}: {raw:?} is not a booking (expected type|id|from|duration|service)",
                        "{key}: «{raw}» — не бронирование (ожидается тип|ID|начало|длительность|услуга)"
                    ))
                })?);
            } else {
                let ids = parse_ids(&raw).ok_or_else(|| {
                    ActivityError::invalid(text!(
                        "{key}: {raw:?} is neither booking IDs nor type|id|from|duration|service",
                        "{key}: «{raw}» — ни ID бронирований, ни тип|ID|начало|длительность|услуга"
                    ))
                })?;
                for id in ids {
                    if !value.ids.contains(&id) {
                        value.ids.push(id);
                    }
                }
            }
        }
        if value.ids.is_empty() && value.entries.is_empty() {
            return Err(ActivityError::invalid(texts::required_empty(key)));
        }
        Ok(value)
    }

    /// For logs: `10, 18` and/or `user 5 at 01.05.2026 10:00:00`.
    pub fn describe(&self) -> Text {
        let ids = self.ids.iter().map(|id| Text::from(id.to_string()));
        let entries = self.entries.iter().map(|e| {
            let (id, from) = (e.id, &e.from);
            match e.kind {
                EntryKind::User => text!("user {id} at {from}", "пользователь {id} на {from}"),
                EntryKind::Resource => text!("resource {id} at {from}", "ресурс {id} на {from}"),
            }
        });
        let all: Vec<Text> = ids.chain(entries).collect();
        Text {
            en: all
                .iter()
                .map(|t| t.en.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            ru: all
                .iter()
                .map(|t| t.ru.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// `10,18`, `[10, 18]`, `10 18`: all integers; anything but separators is malformed.
fn parse_ids(raw: &str) -> Option<Vec<u64>> {
    let is_separator = |c: char| c.is_whitespace() || matches!(c, ',' | ';' | '[' | ']' | '"');
    let ids: Option<Vec<u64>> = raw
        .split(is_separator)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<u64>().ok().filter(|id| *id > 0))
        .collect();
    ids.filter(|ids| !ids.is_empty())
}

/// Bitrix's own `parseValue` takes `type|id|from|duration|service`; a service name may
/// itself contain `|`, so the fifth part keeps the rest.
fn parse_entry(raw: &str) -> Option<Entry> {
    let mut parts = raw.splitn(5, '|');
    let kind = match parts.next()?.trim() {
        "user" => EntryKind::User,
        "resource" => EntryKind::Resource,
        _ => return None,
    };
    let id = parts
        .next()?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)?;
    let from = parts.next()?.trim().to_string();
    PortalTime::parse(&from)?;
    let duration_secs = parts
        .next()?
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|d| (1..=MAX_DURATION_SECS).contains(d))?;
    let service = parts.next().unwrap_or_default().trim().to_string();
    Some(Entry {
        kind,
        id,
        from,
        duration_secs,
        service,
    })
}

/// A datetime format the portal uses (site culture: `DD.MM.YYYY HH:MI:SS`, `MM/DD/YYYY
/// hh:mi:ss am`, or ISO 8601 from the REST layer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PortalTime {
    pattern: &'static str,
    /// Kept for ISO values with an offset, so the output carries the same one.
    offset: Option<FixedOffset>,
    date_only: bool,
}

const DATETIME_PATTERNS: &[&str] = &[
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%m/%d/%Y %I:%M:%S %P",
    "%m/%d/%Y %I:%M %P",
    "%m/%d/%Y %H:%M:%S",
];
const DATE_PATTERNS: &[&str] = &["%d.%m.%Y", "%Y-%m-%d", "%m/%d/%Y"];

impl PortalTime {
    /// The moment (in the value's own local time) and how it was written.
    pub fn parse(raw: &str) -> Option<(NaiveDateTime, PortalTime)> {
        let raw = raw.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(raw) {
            let format = PortalTime {
                pattern: "%Y-%m-%dT%H:%M:%S%:z",
                offset: Some(*dt.offset()),
                date_only: false,
            };
            return Some((dt.naive_local(), format));
        }
        for pattern in DATETIME_PATTERNS {
            if let Ok(dt) = NaiveDateTime::parse_from_str(raw, pattern) {
                let format = PortalTime {
                    pattern,
                    offset: None,
                    date_only: false,
                };
                return Some((dt, format));
            }
        }
        for pattern in DATE_PATTERNS {
            if let Ok(d) = NaiveDate::parse_from_str(raw, pattern) {
                let format = PortalTime {
                    pattern,
                    offset: None,
                    date_only: true,
                };
                return Some((d.and_hms_opt(0, 0, 0)?, format));
            }
        }
        None
    }

    pub fn render(&self, at: NaiveDateTime) -> String {
        if self.date_only {
            return at.date().format(self.pattern).to_string();
        }
        match self.offset {
            Some(offset) => match at.and_local_timezone(offset).single() {
                Some(dt) => dt.format(self.pattern).to_string(),
                None => at.format("%Y-%m-%dT%H:%M:%S").to_string(),
            },
            None => at.format(self.pattern).to_string(),
        }
    }
}

/// Two portal datetimes mean the same local moment, whatever their formats.
pub fn same_moment(a: &str, b: &str) -> bool {
    match (PortalTime::parse(a), PortalTime::parse(b)) {
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// The service of a booking's event: its description is `"<localized Service>: <name>"`
/// (methods.md §4).
pub fn service_from_description(description: &str) -> String {
    match description.split_once(": ") {
        Some((_, service)) => service.trim().to_string(),
        None => description.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_come_as_lists_joined_strings_or_numbers() {
        let input = Input::new(&json!({"a": ["10", 18], "b": "10, 18;22", "c": "[7]", "d": 5}));
        assert_eq!(BookingValue::read(&input, "a").unwrap().ids, vec![10, 18]);
        assert_eq!(
            BookingValue::read(&input, "b").unwrap().ids,
            vec![10, 18, 22]
        );
        assert_eq!(BookingValue::read(&input, "c").unwrap().ids, vec![7]);
        assert_eq!(BookingValue::read(&input, "d").unwrap().ids, vec![5]);
    }

    #[test]
    fn written_entries_are_parsed_and_their_end_keeps_the_format() {
        let input = Input::new(
            &json!({"b": ["user|5|20.12.2024 10:00:00|5400|Massage | deluxe", "resource|198|20.12.2024 10:00:00|5400|"]}),
        );
        let value = BookingValue::read(&input, "b").unwrap();
        assert!(value.ids.is_empty());
        let user = &value.entries[0];
        assert_eq!(
            (user.kind, user.id, user.duration_secs),
            (EntryKind::User, 5, 5400)
        );
        assert_eq!(user.service, "Massage | deluxe");
        assert_eq!(user.to().unwrap(), "20.12.2024 11:30:00");
        assert_eq!(value.entries[1].kind, EntryKind::Resource);
        let iso = parse_entry("user|5|2024-12-20T23:30:00+03:00|3600|").unwrap();
        assert_eq!(iso.to().unwrap(), "2024-12-21T00:30:00+03:00");
        let en = parse_entry("user|5|12/20/2024 11:30:00 pm|3600|").unwrap();
        assert_eq!(en.to().unwrap(), "12/21/2024 12:30:00 am");
    }

    #[test]
    fn malformed_or_empty_values_are_clear_errors() {
        for bad in [
            json!("user_5"),
            json!("room|5|20.12.2024|60|x"),
            json!("user|5|someday|60|x"),
            json!("user|5|20.12.2024|-1|x"),
            json!(""),
            json!([]),
        ] {
            let input = Input::new(&json!({ "booking": bad }));
            let err = BookingValue::read(&input, "booking").unwrap_err();
            assert!(err.message.en.contains("booking"), "{}", err.message);
        }
    }

    #[test]
    fn moments_compare_across_formats_and_services_are_read_from_descriptions() {
        assert!(same_moment("20.12.2024 10:00:00", "2024-12-20 10:00:00"));
        assert!(!same_moment("20.12.2024 10:00:00", "20.12.2024 11:00:00"));
        assert_eq!(service_from_description("Услуга: Массаж"), "Массаж");
        assert_eq!(service_from_description(""), "");
    }
}
