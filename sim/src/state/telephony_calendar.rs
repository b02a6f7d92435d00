//! The telephony and calendar areas of a portal (methods.md §3–5): lines, the default
//! outgoing line, voices and the callback calls started; calendar resources, resource
//! bookings (resource-table rows) with the calendar events they created, which user
//! calendars only their owner may edit, and every `calendar.event.update` received.
//!
//! One per portal, in its `Areas`.
use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDateTime;
use serde_json::{json, Value};

pub(crate) struct TelephonyCalendar {
    pub telephony: Telephony,
    pub calendar: Calendar,
}

impl TelephonyCalendar {
    pub(crate) fn new() -> Self {
        TelephonyCalendar {
            telephony: Telephony::new(),
            calendar: Calendar::default(),
        }
    }
}

/// The portal's `voximplant` side.
pub(crate) struct Telephony {
    /// `voximplant.line.get`: line ID → name.
    pub lines: BTreeMap<String, String>,
    /// `voximplant.line.outgoing.get`.
    pub default_line: String,
    /// The Bitrix24 base number behind `LINK_BASE_NUMBER`, when the portal has one.
    pub base_number: Option<String>,
    pub voices: BTreeMap<String, String>,
    /// Users without "Outgoing Call — Execute".
    pub cannot_call: HashSet<u64>,
    pub calls: Vec<CallbackCall>,
}

/// The line ID of the Bitrix24 base number (`voximplant.line.outgoing.get` docs).
pub(crate) const BASE_NUMBER_LINE: &str = "LINK_BASE_NUMBER";

impl Telephony {
    fn new() -> Self {
        // A portal without rented numbers or SIP lines calls from its base number.
        let voices = [
            ("ruinternalfemale", "Russian (Female) (Default)"),
            ("ruinternalmale", "Russian (Male) (Default)"),
            ("usenglishfemale", "American English (Female) (Default)"),
            ("eurgermanfemale", "German (Female) (Default)"),
        ];
        Telephony {
            lines: BTreeMap::new(),
            default_line: BASE_NUMBER_LINE.to_string(),
            base_number: None,
            voices: voices
                .iter()
                .map(|(id, name)| (id.to_string(), name.to_string()))
                .collect(),
            cannot_call: HashSet::new(),
            calls: Vec::new(),
        }
    }
}

/// A callback call the portal started (`voximplant.callback.start`).
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackCall {
    pub call_id: String,
    pub from_line: String,
    pub to_number: String,
    pub text: String,
    pub voice: Option<String>,
    /// Whose token started it.
    pub user_id: u64,
}

/// The portal's `calendar` side.
#[derive(Default)]
pub(crate) struct Calendar {
    /// Sections of calendar type `resource` (`calendar.resource.list`).
    pub resources: BTreeMap<u64, CalendarResource>,
    pub events: BTreeMap<u64, CalendarEvent>,
    /// Resource-booking ID (the field's stored value) → its event.
    pub bookings: BTreeMap<u64, u64>,
    /// User calendars that nobody but their owner may edit.
    pub owner_only: HashSet<u64>,
    pub updates: Vec<EventUpdate>,
    next_section: u64,
    next_event: u64,
    next_booking: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CalendarResource {
    pub id: u64,
    pub name: String,
    pub created_by: u64,
}

/// A calendar event as stored: dates in the portal's format (`DD.MM.YYYY HH:MI:SS`).
#[derive(Clone, Debug, PartialEq)]
pub struct CalendarEvent {
    pub id: u64,
    /// `user` or `resource`.
    pub cal_type: String,
    /// The user for `user` events, 0 for `resource` ones.
    pub owner_id: u64,
    pub section_id: u64,
    pub name: String,
    pub description: String,
    pub date_from: String,
    pub date_to: String,
    pub timezone: String,
    pub skip_time: bool,
    pub event_type: String,
    pub created_by: u64,
    pub deleted: bool,
}

/// One `calendar.event.update` call: who sent what, and whether it was applied.
#[derive(Clone, Debug, PartialEq)]
pub struct EventUpdate {
    pub caller: u64,
    pub params: Value,
    pub applied: bool,
}

/// The portal's datetime format (Russian site culture) and its time zone.
pub(crate) const DATETIME_FORMAT: &str = "%d.%m.%Y %H:%M:%S";
pub(crate) const TIMEZONE: &str = "Europe/Moscow";
/// Moscow has had no daylight saving time since 2014.
const TIMEZONE_OFFSET: i64 = 3 * 3600;
pub(crate) const BOOKING_EVENT_TYPE: &str = "#resourcebooking#";

pub(crate) fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, DATETIME_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.naive_local())
        })
        .or_else(|| {
            ["%d.%m.%Y", "%Y-%m-%d"]
                .iter()
                .find_map(|f| chrono::NaiveDate::parse_from_str(s, f).ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

impl CalendarEvent {
    fn seconds(s: &str) -> i64 {
        parse_datetime(s).map_or(0, |d| d.and_utc().timestamp())
    }

    /// The event as `calendar.resource.booking.list` / `calendar.event.get` render it.
    pub(crate) fn to_rest(&self, booking_id: Option<u64>) -> Value {
        let (from, to) = (Self::seconds(&self.date_from), Self::seconds(&self.date_to));
        let mut v = json!({
            "ID": self.id.to_string(),
            "PARENT_ID": self.id.to_string(),
            "DELETED": if self.deleted { "Y" } else { "N" },
            "CAL_TYPE": self.cal_type,
            "OWNER_ID": self.owner_id.to_string(),
            "NAME": self.name,
            "DATE_FROM": self.date_from,
            "DATE_TO": self.date_to,
            "TZ_FROM": self.timezone,
            "TZ_TO": self.timezone,
            "TZ_OFFSET_FROM": TIMEZONE_OFFSET.to_string(),
            "TZ_OFFSET_TO": TIMEZONE_OFFSET.to_string(),
            "DATE_FROM_TS_UTC": (from - TIMEZONE_OFFSET).to_string(),
            "DATE_TO_TS_UTC": (to - TIMEZONE_OFFSET).to_string(),
            "DT_SKIP_TIME": if self.skip_time { "Y" } else { "N" },
            "DT_LENGTH": to - from,
            "EVENT_TYPE": self.event_type,
            "CREATED_BY": self.created_by.to_string(),
            "DESCRIPTION": self.description,
            "IS_MEETING": false,
            "MEETING_STATUS": "Y",
            "MEETING_HOST": "0",
            "VERSION": "1",
            "SECTION_ID": self.section_id.to_string(),
            "SECT_ID": self.section_id.to_string(),
        });
        if let Some(id) = booking_id {
            v["RESOURCE_BOOKING_ID"] = json!(id.to_string());
        }
        v
    }
}

impl Calendar {
    pub(crate) fn add_resource(&mut self, name: &str, created_by: u64) -> u64 {
        self.next_section = self.next_section.max(190) + 1;
        let id = self.next_section;
        self.resources.insert(
            id,
            CalendarResource {
                id,
                name: name.to_string(),
                created_by,
            },
        );
        id
    }

    /// What the `resourcebooking` field's `onBeforeSaveAll` does: one event and one
    /// resource-table row per booked user or resource; returns the rows' IDs (the value).
    pub(crate) fn book(&mut self, booking: &Booking<'_>) -> Vec<u64> {
        let to = parse_datetime(booking.from)
            .map(|d| {
                (d + chrono::Duration::seconds(booking.duration_secs))
                    .format(DATETIME_FORMAT)
                    .to_string()
            })
            .unwrap_or_default();
        let name = format!("Booking: {}", booking.deal_title);
        let description = if booking.service.is_empty() {
            String::new()
        } else {
            format!("Service: {}", booking.service)
        };
        let targets = booking
            .users
            .iter()
            .map(|u| ("user", *u, 0))
            .chain(booking.resources.iter().map(|r| ("resource", 0, *r)));
        let mut ids = Vec::new();
        for (cal_type, owner_id, section_id) in targets {
            self.next_event = self.next_event.max(1400) + 1;
            self.next_booking += 1;
            let event = CalendarEvent {
                id: self.next_event,
                cal_type: cal_type.to_string(),
                owner_id,
                section_id,
                name: name.clone(),
                description: description.clone(),
                date_from: booking.from.to_string(),
                date_to: to.clone(),
                timezone: TIMEZONE.to_string(),
                skip_time: false,
                event_type: BOOKING_EVENT_TYPE.to_string(),
                created_by: booking.created_by,
                deleted: false,
            };
            self.events.insert(event.id, event);
            self.bookings.insert(self.next_booking, self.next_event);
            ids.push(self.next_booking);
        }
        ids
    }

    /// Whether `caller` may change events in `owner`'s calendar.
    pub(crate) fn may_edit(&self, caller: u64, caller_is_admin: bool, owner: u64) -> bool {
        caller == owner || (caller_is_admin && !self.owner_only.contains(&owner))
    }
}

/// A booking to create, as a deal's resource-booking field would.
pub(crate) struct Booking<'a> {
    pub users: &'a [u64],
    pub resources: &'a [u64],
    pub from: &'a str,
    pub duration_secs: i64,
    pub service: &'a str,
    pub deal_title: &'a str,
    pub created_by: u64,
}
