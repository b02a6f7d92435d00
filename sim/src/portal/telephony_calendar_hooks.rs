//! Test and demo hooks of the telephony and calendar areas: seed lines, voices, resources and
//! bookings, take rights away, and read back the calls started and the events as stored.
use super::Portal;
use crate::state::telephony_calendar::{Booking, CalendarEvent, CallbackCall, EventUpdate};

/// What [`Portal::seed_demo_telephony_and_calendar`] made.
#[derive(Clone, Debug)]
pub struct TelephonyCalendarDemo {
    /// A SIP line that is also the default outgoing line.
    pub line: String,
    /// A client's number as people write it (`8 (912) …`).
    pub client_phone: String,
    /// A booking of two users and a room: the resource-booking field's value.
    pub booking: Vec<u64>,
}

impl Portal {
    /// Adds a telephony line (`voximplant.line.get` lists it).
    pub fn add_phone_line(&self, id: &str, name: &str) {
        self.telephony_calendar(|a| {
            a.telephony.lines.insert(id.to_string(), name.to_string());
        });
    }

    /// Sets the default outgoing line (`voximplant.line.outgoing.get`).
    pub fn set_default_outgoing_line(&self, id: &str) {
        self.telephony_calendar(|a| a.telephony.default_line = id.to_string());
    }

    /// Gives the portal a Bitrix24 base number, so `LINK_BASE_NUMBER` can call.
    pub fn set_base_number(&self, number: &str) {
        self.telephony_calendar(|a| a.telephony.base_number = Some(number.to_string()));
    }

    /// Takes "Outgoing Call — Execute" away from `user_id`.
    pub fn deny_outgoing_calls(&self, user_id: u64) {
        self.telephony_calendar(|a| {
            a.telephony.cannot_call.insert(user_id);
        });
    }

    /// Callback calls started, in order.
    pub fn callback_calls(&self) -> Vec<CallbackCall> {
        self.telephony_calendar(|a| a.telephony.calls.clone())
    }

    /// Adds a bookable resource (a calendar section of type `resource`); returns its ID.
    pub fn add_calendar_resource(&self, name: &str) -> u64 {
        let admin = self.inner.cfg.admin_user_id;
        self.telephony_calendar(|a| a.calendar.add_resource(name, admin))
    }

    /// Books `users` and `resources` from `from` (`DD.MM.YYYY HH:MI:SS`) for `duration_secs`,
    /// as a deal's resource-booking field does: one event per user and resource, named
    /// `Booking: <deal_title>`, described `Service: <service>`. Returns the field's value
    /// (resource-booking IDs, users first).
    pub fn add_booking(
        &self,
        users: &[u64],
        resources: &[u64],
        from: &str,
        duration_secs: i64,
        service: &str,
        deal_title: &str,
    ) -> Vec<u64> {
        let created_by = self.inner.cfg.admin_user_id;
        self.telephony_calendar(|a| {
            a.calendar.book(&Booking {
                users,
                resources,
                from,
                duration_secs,
                service,
                deal_title,
                created_by,
            })
        })
    }

    /// From now on only `user_id` may edit events in `user_id`'s calendar (not even admins).
    pub fn restrict_calendar_to_owner(&self, user_id: u64) {
        self.telephony_calendar(|a| {
            a.calendar.owner_only.insert(user_id);
        });
    }

    /// The events behind resource-booking IDs, as stored now.
    pub fn booking_events(&self, booking: &[u64]) -> Vec<CalendarEvent> {
        self.telephony_calendar(|a| {
            booking
                .iter()
                .filter_map(|b| a.calendar.bookings.get(b))
                .filter_map(|e| a.calendar.events.get(e).cloned())
                .collect()
        })
    }

    /// Every `calendar.event.update` received, applied or refused.
    pub fn calendar_event_updates(&self) -> Vec<EventUpdate> {
        self.telephony_calendar(|a| a.calendar.updates.clone())
    }

    /// For `b24flow demo`: a SIP line (the default outgoing one), a base number, and a
    /// booking of the first two of `users` plus a meeting room.
    pub fn seed_demo_telephony_and_calendar(&self, users: &[u64]) -> TelephonyCalendarDemo {
        let line = "sip1";
        self.add_phone_line(line, "Office PBX");
        self.add_phone_line("reg151083", "Cloud PBX (9)");
        self.set_default_outgoing_line(line);
        self.set_base_number("+74951234567");
        let room = self.add_calendar_resource("Meeting room A");
        let booked: Vec<u64> = users.iter().copied().take(2).collect();
        let booking = self.add_booking(
            &booked,
            &[room],
            "20.12.2024 10:00:00",
            3600,
            "Consultation",
            "Deal #812",
        );
        TelephonyCalendarDemo {
            line: line.to_string(),
            client_phone: "8 (912) 345-67-89".to_string(),
            booking,
        }
    }
}
