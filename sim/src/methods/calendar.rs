//! `calendar.resource.list`, `calendar.resource.booking.list`, `calendar.event.get` and
//! `calendar.event.update` (methods.md §4–5), following `CCalendarRestService`: errors carry
//! an empty code and the module's message (HTTP 400), `calendar.event.update` needs `id`,
//! `type` and `ownerId`, and refuses "Access denied." where the caller may not edit.
use chrono::{Duration, NaiveDateTime, Utc};
use serde_json::{json, Value};

use super::{page, start_param, Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::telephony_calendar::{parse_datetime, EventUpdate, DATETIME_FORMAT};

pub(crate) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "calendar.resource.list" => resource_list,
        "calendar.resource.booking.list" => booking_list,
        "calendar.event.get" => event_get,
        "calendar.event.update" => event_update,
        _ => return None,
    };
    Some(handler)
}

/// `RestException` with the calendar module's message and no code.
fn calendar_error(message: impl Into<String>) -> RestError {
    RestError::bad_request("", message)
}

/// `CAL_REST_PARAM_EXCEPTION`.
fn missing(param: &str, method: &str) -> RestError {
    calendar_error(format!(
        "The required parameter \"{param}\" for the method \"{method}\" is not set."
    ))
}

fn ids(v: Option<&Value>) -> Vec<u64> {
    v.filter(|v| !php::is_empty(v))
        .map(php::values)
        .unwrap_or_default()
        .iter()
        .map(php::intval)
        .filter(|id| *id > 0)
        .map(|id| id as u64)
        .collect()
}

fn resource_list(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    let list = ctx.portal.telephony_calendar(|a| {
        a.calendar
            .resources
            .values()
            .map(|r| json!({ "ID": r.id.to_string(), "NAME": r.name, "CREATED_BY": r.created_by.to_string() }))
            .collect::<Vec<_>>()
    });
    Ok(json!(list).into())
}

fn booking_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let filter = params.get("filter").cloned().unwrap_or(Value::Null);
    let by_booking = ids(filter.get("resourceIdList"));
    let by_resource = ids(filter.get("resourceTypeIdList"));
    if by_booking.is_empty() && by_resource.is_empty() {
        return Err(calendar_error(
            "The required parameter \"filter['resourceTypeIdList']\" is not set for the method \"calendar.resource.booking.list\"",
        ));
    }
    let window = (
        filter
            .get("from")
            .and_then(php::to_string)
            .and_then(|s| parse_datetime(&s)),
        filter
            .get("to")
            .and_then(php::to_string)
            .and_then(|s| parse_datetime(&s)),
    );
    let items = ctx.portal.telephony_calendar(|a| {
        let cal = &a.calendar;
        if !by_booking.is_empty() {
            by_booking
                .iter()
                .filter_map(|b| Some((*b, cal.events.get(cal.bookings.get(b)?)?)))
                .map(|(b, e)| e.to_rest(Some(b)))
                .collect::<Vec<_>>()
        } else {
            cal.bookings
                .iter()
                .filter_map(|(b, e)| Some((*b, cal.events.get(e)?)))
                .filter(|(_, e)| e.cal_type == "resource" && by_resource.contains(&e.section_id))
                .filter(|(_, e)| overlaps(&e.date_from, &e.date_to, window))
                .map(|(b, e)| e.to_rest(Some(b)))
                .collect()
        }
    });
    Ok(page(items, start_param(&params)))
}

/// Whether an event touches `[from day 00:00, to day 24:00)`; open ends are unbounded.
fn overlaps(
    date_from: &str,
    date_to: &str,
    (from, to): (Option<NaiveDateTime>, Option<NaiveDateTime>),
) -> bool {
    let (Some(start), Some(end)) = (parse_datetime(date_from), parse_datetime(date_to)) else {
        return false;
    };
    let day = |d: NaiveDateTime| d.date().and_hms_opt(0, 0, 0).unwrap_or(d);
    from.is_none_or(|f| end >= day(f)) && to.is_none_or(|t| start < day(t) + Duration::days(1))
}

fn event_get(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let method = "calendar.event.get";
    let cal_type = params
        .get("type")
        .and_then(php::to_string)
        .ok_or_else(|| missing("type", method))?;
    let owner = match params.get("ownerId") {
        Some(v) => php::intval(v).max(0) as u64,
        None if cal_type == "user" => ctx.caller.user_id,
        None => return Err(missing("ownerId", method)),
    };
    // Without from/to the module reads one month back and three ahead.
    let now = Utc::now().naive_utc();
    let bound = |key: &str, default: NaiveDateTime| {
        params
            .get(key)
            .and_then(php::to_string)
            .and_then(|s| parse_datetime(&s))
            .or(Some(default))
    };
    let window = (
        bound("from", now - Duration::days(31)),
        bound("to", now + Duration::days(92)),
    );
    let events = ctx.portal.telephony_calendar(|a| {
        a.calendar
            .events
            .values()
            .filter(|e| !e.deleted && e.cal_type == cal_type && e.owner_id == owner)
            .filter(|e| overlaps(&e.date_from, &e.date_to, window))
            .map(|e| e.to_rest(None))
            .collect::<Vec<_>>()
    });
    Ok(json!(events).into())
}

fn event_update(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let method = "calendar.event.update";
    let caller = ctx.caller.clone();
    let record = |ctx: &Ctx<'_>, applied: bool| {
        ctx.portal.telephony_calendar(|a| {
            a.calendar.updates.push(EventUpdate {
                caller: caller.user_id,
                params: params.clone(),
                applied,
            });
        });
    };
    for required in ["id", "ownerId", "type"] {
        if params.get(required).is_none_or(php::is_empty) {
            record(ctx, false);
            return Err(missing(required, method));
        }
    }
    let id = php::intval(&params["id"]).max(0) as u64;
    let owner = php::intval(&params["ownerId"]).max(0) as u64;
    let cal_type = php::to_string(&params["type"]).unwrap_or_default();
    let text = |key: &str| params.get(key).and_then(php::to_string);
    let date = |key: &str| -> Result<Option<String>, RestError> {
        match text(key) {
            None => Ok(None),
            Some(raw) => parse_datetime(&raw)
                .map(|d| Some(d.format(DATETIME_FORMAT).to_string()))
                .ok_or_else(|| calendar_error("An error occurred while modifying the event.")),
        }
    };
    let outcome = (|| {
        let (from, to) = (date("from")?, date("to")?);
        ctx.portal.telephony_calendar(|a| {
            let may_edit = a.calendar.may_edit(caller.user_id, caller.is_admin, owner);
            let Some(event) = a
                .calendar
                .events
                .get_mut(&id)
                .filter(|e| !e.deleted && e.cal_type == cal_type && e.owner_id == owner)
            else {
                return Err(calendar_error(
                    "An error occurred while modifying the event.",
                ));
            };
            if !may_edit {
                return Err(calendar_error("Access denied."));
            }
            if let Some(name) = text("name") {
                let name = name.trim();
                event.name = if name.is_empty() {
                    "New event".to_string()
                } else {
                    name.to_string()
                };
            }
            if let Some(description) = text("description") {
                event.description = description.trim().to_string();
            }
            if let Some(skip) = text("skip_time") {
                event.skip_time = skip == "Y";
            }
            if let Some(from) = from {
                event.date_from = from;
            }
            if let Some(to) = to {
                event.date_to = to;
            }
            if !event.skip_time {
                if let Some(tz) = text("timezone_from") {
                    event.timezone = tz;
                }
            }
            Ok(id)
        })
    })();
    record(ctx, outcome.is_ok());
    outcome.map(|id| json!(id).into())
}
