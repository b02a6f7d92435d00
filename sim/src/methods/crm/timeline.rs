//! Activities and timeline comments (methods.md §12–14): `crm.activity.todo.add` (coded
//! errors), the deprecated `crm.activity.add`/`.delete`/`.list` as `CCrmActivityRestProxy`
//! does them (owner and communications checks, bare-message errors), and
//! `crm.timeline.comment.add`/`.list` (lower-case `fields`, lower-case entity names).
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::{denied, int_param, legacy_error, lost_answer, owner_type, param};
use crate::methods::{page, start_param, Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::crm::Crm;

pub(super) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "crm.activity.todo.add" => todo_add,
        "crm.activity.add" => activity_add,
        "crm.activity.delete" => activity_delete,
        "crm.activity.list" => activity_list,
        "crm.timeline.comment.add" => comment_add,
        "crm.timeline.comment.list" => comment_list,
        _ => return None,
    };
    Some(handler)
}

fn owner_state(c: &Crm, t: u64, id: u64) -> Result<(), RestError> {
    if c.denied.contains(&(t, id)) {
        return Err(denied());
    }
    if !c.items.contains_key(&(t, id)) {
        return Err(RestError::bad_request("OWNER_NOT_FOUND", "Owner not found"));
    }
    Ok(())
}

fn valid_datetime(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%d.%m.%Y %H:%M:%S").is_ok()
}

fn todo_add(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let t = int_param(&params, "ownerTypeId").max(0) as u64;
    let owner = int_param(&params, "ownerId").max(0) as u64;
    let Some(deadline) = param(&params, "deadline")
        .and_then(php::to_string)
        .filter(|d| !d.is_empty())
    else {
        return Err(RestError::bad_request(
            "100",
            "Could not find value for parameter {deadline}",
        ));
    };
    if !valid_datetime(&deadline) {
        return Err(RestError::bad_request(
            "WRONG_DATETIME_FORMAT",
            "Wrong datetime format",
        ));
    }
    let text = |k: &str| {
        param(&params, k)
            .and_then(php::to_string)
            .unwrap_or_default()
    };
    let caller = ctx.caller.user_id;
    let id = ctx.portal.crm(|c| {
        owner_state(c, t, owner)?;
        let responsible = match int_param(&params, "responsibleId") {
            n if n > 0 => n as u64,
            _ => caller,
        };
        let id = c.new_activity_id();
        let mut a = Map::new();
        a.insert("ID".into(), json!(id.to_string()));
        a.insert("OWNER_TYPE_ID".into(), json!(t.to_string()));
        a.insert("OWNER_ID".into(), json!(owner.to_string()));
        a.insert("TYPE_ID".into(), json!("6"));
        a.insert("PROVIDER_ID".into(), json!("CRM_TODO"));
        a.insert("SUBJECT".into(), json!(text("title")));
        a.insert("DESCRIPTION".into(), json!(text("description")));
        a.insert("DEADLINE".into(), json!(deadline));
        a.insert("RESPONSIBLE_ID".into(), json!(responsible.to_string()));
        a.insert("PRIORITY".into(), json!("2"));
        a.insert("CREATED".into(), json!(Utc::now().to_rfc3339()));
        c.activities.insert(id, a);
        c.writes.push(("crm.activity.todo.add".into(), t, owner));
        Ok::<u64, RestError>(id)
    })?;
    lost_answer(ctx, "crm.activity.todo.add")?;
    Ok(json!({ "id": id }).into())
}

fn activity_add(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let fields = php::upper_keys(param(&params, "fields").unwrap_or(&Value::Null));
    let int = |k: &str| fields.get(k).map(php::intval).unwrap_or(0);
    let text = |k: &str| fields.get(k).and_then(php::to_string).unwrap_or_default();
    let (t, owner, type_id) = (
        int("OWNER_TYPE_ID").max(0) as u64,
        int("OWNER_ID").max(0) as u64,
        int("TYPE_ID"),
    );
    let caller = ctx.caller.user_id;
    let id = ctx.portal.crm(|c| {
        if !(1..=6).contains(&type_id) {
            return Err(legacy_error("The field TYPE_ID is not defined or invalid."));
        }
        if ![1, 2, 4].contains(&type_id) {
            return Err(legacy_error(
                "The activity type is not supported in current context.",
            ));
        }
        // CheckUpdatePermission fails for an owner that does not exist.
        if c.denied.contains(&(t, owner)) || !c.items.contains_key(&(t, owner)) {
            return Err(legacy_error("Access denied."));
        }
        let comms: Vec<Value> = fields
            .get("COMMUNICATIONS")
            .map(php::values)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| {
                v.get("VALUE")
                    .and_then(php::to_string)
                    .is_some_and(|s| !s.is_empty())
            })
            .collect();
        if comms.is_empty() {
            return Err(legacy_error(
                "The field COMMUNICATIONS is not defined or invalid.",
            ));
        }
        if text("SUBJECT").is_empty() {
            return Err(legacy_error("The field SUBJECT is required."));
        }
        let responsible = match int("RESPONSIBLE_ID") {
            n if n > 0 => n as u64,
            _ => c.items[&(t, owner)]
                .fields
                .get("assignedById")
                .map(php::intval)
                .filter(|n| *n > 0)
                .map(|n| n as u64)
                .unwrap_or(caller),
        };
        let id = c.new_activity_id();
        let mut a = Map::new();
        for k in [
            "SUBJECT",
            "DESCRIPTION",
            "DESCRIPTION_TYPE",
            "PRIORITY",
            "DIRECTION",
            "COMPLETED",
            "START_TIME",
            "END_TIME",
            "ORIGIN_ID",
        ] {
            if let Some(v) = fields.get(k) {
                a.insert(k.into(), json!(php::to_string(v).unwrap_or_default()));
            }
        }
        a.insert("ID".into(), json!(id.to_string()));
        a.insert("OWNER_TYPE_ID".into(), json!(t.to_string()));
        a.insert("OWNER_ID".into(), json!(owner.to_string()));
        a.insert("TYPE_ID".into(), json!(type_id.to_string()));
        a.insert(
            "PROVIDER_ID".into(),
            json!(match type_id {
                2 => "VOXIMPLANT_CALL",
                4 => "CRM_EMAIL",
                _ => "CRM_MEETING",
            }),
        );
        a.insert("RESPONSIBLE_ID".into(), json!(responsible.to_string()));
        let comm_type = match type_id {
            2 => "PHONE",
            4 => "EMAIL",
            _ => "",
        };
        let comms: Vec<Value> = comms
            .iter()
            .map(|v| json!({"VALUE": v.get("VALUE").and_then(php::to_string), "TYPE": comm_type, "ENTITY_TYPE_ID": t.to_string(), "ENTITY_ID": owner.to_string()}))
            .collect();
        a.insert("COMMUNICATIONS".into(), json!(comms));
        a.insert("CREATED".into(), json!(Utc::now().to_rfc3339()));
        c.activities.insert(id, a);
        c.writes.push(("crm.activity.add".into(), t, owner));
        Ok(id)
    })?;
    lost_answer(ctx, "crm.activity.add")?;
    Ok(json!(id).into())
}

fn activity_delete(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let id = int_param(&params, "id");
    if id <= 0 {
        return Err(legacy_error("ID is not defined or invalid."));
    }
    ctx.portal.crm(|c| {
        let Some(a) = c.activities.get(&(id as u64)) else {
            return Err(legacy_error("Activity is not found."));
        };
        let owner = (
            a.get("OWNER_TYPE_ID").map(php::intval).unwrap_or(0) as u64,
            a.get("OWNER_ID").map(php::intval).unwrap_or(0) as u64,
        );
        if c.denied.contains(&owner) {
            return Err(legacy_error("Access denied."));
        }
        c.activities.remove(&(id as u64));
        c.writes
            .push(("crm.activity.delete".into(), owner.0, owner.1));
        Ok(())
    })?;
    lost_answer(ctx, "crm.activity.delete")?;
    Ok(json!(true).into())
}

/// Exact matches on the given fields, `>=CREATED` as a time bound.
fn activity_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let filter = php::upper_keys(param(&params, "filter").unwrap_or(&Value::Null));
    let desc = php::upper_keys(param(&params, "order").unwrap_or(&Value::Null))
        .get("ID")
        .and_then(php::to_string)
        .is_some_and(|d| d.eq_ignore_ascii_case("desc"));
    let mut list = ctx.portal.crm(|c| {
        c.activities
            .values()
            .filter(|a| {
                let owner = (
                    a.get("OWNER_TYPE_ID").map(php::intval).unwrap_or(0) as u64,
                    a.get("OWNER_ID").map(php::intval).unwrap_or(0) as u64,
                );
                !c.denied.contains(&owner)
            })
            .filter(|a| {
                filter.iter().all(|(k, v)| {
                    let want = php::to_string(v).unwrap_or_default();
                    if let Some(field) = k.strip_prefix(">=") {
                        let have = a
                            .get(field)
                            .and_then(Value::as_str)
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
                        let bound = chrono::DateTime::parse_from_rfc3339(&want).ok();
                        return matches!((have, bound), (Some(h), Some(b)) if h >= b);
                    }
                    a.get(k).and_then(php::to_string).unwrap_or_default() == want
                })
            })
            .map(|a| Value::Object(a.clone()))
            .collect::<Vec<_>>()
    });
    if desc {
        list.reverse();
    }
    Ok(page(list, start_param(&params)))
}

fn comment_add(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    // Since crm 23.100.0 only the lower-case key is read (methods.md §14).
    let Some(fields) = params.get("fields").filter(|f| php::is_array(f)) else {
        return Err(RestError::bad_request(
            "100",
            "Could not find value for parameter {fields}",
        ));
    };
    let fields = php::upper_keys(fields);
    let Some(t) = fields.get("ENTITY_TYPE").and_then(owner_type) else {
        return Err(RestError::bad_request("NOT_FOUND", "Entity type not found"));
    };
    let owner = fields.get("ENTITY_ID").map(php::intval).unwrap_or(0).max(0) as u64;
    let comment = fields
        .get("COMMENT")
        .and_then(php::to_string)
        .unwrap_or_default();
    if comment.trim().is_empty() {
        return Err(RestError::bad_request(
            "INVALID_ARG_VALUE",
            "Comment is empty",
        ));
    }
    let author = ctx.caller.user_id;
    let id = ctx.portal.crm(|c| {
        owner_state(c, t, owner)?;
        let id = c.new_comment_id();
        let mut m = Map::new();
        m.insert("ID".into(), json!(id.to_string()));
        m.insert("ENTITY_TYPE".into(), json!(type_name(t)));
        m.insert("ENTITY_ID".into(), json!(owner.to_string()));
        m.insert("COMMENT".into(), json!(comment));
        m.insert("AUTHOR_ID".into(), json!(author.to_string()));
        m.insert("CREATED".into(), json!(Utc::now().to_rfc3339()));
        c.comments.insert(id, m);
        c.writes.push(("crm.timeline.comment.add".into(), t, owner));
        Ok::<u64, RestError>(id)
    })?;
    lost_answer(ctx, "crm.timeline.comment.add")?;
    Ok(json!(id).into())
}

pub(super) fn type_name(t: u64) -> &'static str {
    match t {
        1 => "lead",
        2 => "deal",
        3 => "contact",
        _ => "company",
    }
}

fn comment_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let filter = php::upper_keys(param(&params, "filter").unwrap_or(&Value::Null));
    let Some(t) = filter.get("ENTITY_TYPE").and_then(owner_type) else {
        return Err(RestError::bad_request("NOT_FOUND", "Entity type not found"));
    };
    let owner = filter.get("ENTITY_ID").map(php::intval).unwrap_or(0).max(0) as u64;
    let mut list = ctx.portal.crm(|c| {
        owner_state(c, t, owner)?;
        Ok::<Vec<Value>, RestError>(
            c.comments
                .values()
                .filter(|m| {
                    m.get("ENTITY_TYPE") == Some(&json!(type_name(t)))
                        && m.get("ENTITY_ID") == Some(&json!(owner.to_string()))
                })
                .map(|m| Value::Object(m.clone()))
                .collect(),
        )
    })?;
    list.reverse();
    Ok(page(list, start_param(&params)))
}
