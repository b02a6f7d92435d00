//! `crm.item.get/list/update/fields` for types 1–4, `crm.company.update` (only what
//! `crm.item` no longer writes: addresses), `crm.status.list`, `crm.category.list`,
//! `crm.currency.list` (methods.md §7–10, crm-item-update.md).
use serde_json::{json, Map, Value};

use super::{denied, int_param, legacy_error, lost_answer, not_found, param};
use crate::methods::{page, start_param, Caller, Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::crm::{Crm, Fm};

pub(super) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "crm.item.get" => item_get,
        "crm.item.list" => item_list,
        "crm.item.update" => item_update,
        "crm.company.update" => company_update,
        "crm.status.list" => status_list,
        "crm.category.list" => category_list,
        "crm.currency.list" => currency_list,
        _ => return None,
    };
    Some(handler)
}

const TYPES: &[u64] = &[1, 2, 3, 4, 31];

pub(super) fn entity_type(params: &Value) -> Result<u64, RestError> {
    let t = int_param(params, "entityTypeId");
    if t == 5 {
        return Err(RestError::bad_request(
            "ENTITY_TYPE_NOT_SUPPORTED",
            "Entity type 5 is not supported",
        ));
    }
    u64::try_from(t)
        .ok()
        .filter(|t| TYPES.contains(t))
        .ok_or_else(|| RestError::bad_request("NOT_FOUND", "Smart process not found"))
}

fn item_get(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let t = entity_type(&params)?;
    let id = int_param(&params, "id").max(0) as u64;
    let caller = ctx.caller.clone();
    ctx.portal.crm(|c| {
        if c.denied.contains(&(t, id)) {
            return Err(denied());
        }
        if !may_touch(c, &caller, t, id) {
            return Err(RestError::bad_request(
                "ACCESS_DENIED",
                "You do not have permission to view this item",
            ));
        }
        c.render(t, id)
            .map(|item| json!({ "item": item }).into())
            .ok_or_else(|| not_found("Item"))
    })
}

/// The caller's role permission on a private item: admins and the responsible user only
/// (an unknown item is left to the not-found path).
pub(super) fn may_touch(c: &Crm, caller: &Caller, t: u64, id: u64) -> bool {
    if caller.is_admin || !c.private.contains(&(t, id)) {
        return true;
    }
    c.items
        .get(&(t, id))
        .and_then(|item| item.fields.get("assignedById"))
        .map(php::intval)
        .is_some_and(|responsible| responsible == caller.user_id as i64)
}

/// `filter` with exact field matches (`=field` or `field`), `order` by id.
fn item_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let t = entity_type(&params)?;
    let filter: Vec<(String, Value)> = param(&params, "filter")
        .map(php::entries)
        .unwrap_or_default();
    let desc = param(&params, "order")
        .and_then(|o| o.get("id"))
        .and_then(php::to_string)
        .is_some_and(|d| d.eq_ignore_ascii_case("desc"));
    let caller = ctx.caller.clone();
    let items = ctx.portal.crm(|c| {
        let mut out: Vec<Value> = c
            .items
            .keys()
            .filter(|(et, id)| *et == t && !c.denied.contains(&(t, *id)))
            .filter(|(_, id)| may_touch(c, &caller, t, *id))
            .filter_map(|(_, id)| c.render(t, *id))
            .filter(|item| {
                filter.iter().all(|(k, v)| {
                    let field = k.trim_start_matches('=');
                    let have = item.get(field).and_then(php::to_string).unwrap_or_default();
                    let want = php::to_string(v).unwrap_or_default();
                    have == want || (want == "Y" && item.get(field) == Some(&json!(true)))
                })
            })
            .collect();
        if desc {
            out.reverse();
        }
        out
    });
    let reply = page(items, start_param(&params));
    Ok(Reply {
        result: json!({ "items": reply.result }),
        total: reply.total,
        next: reply.next,
    })
}

/// Fields the simulated `crm.item.update` knows per type; others are ignored, as documented.
fn writable(t: u64) -> &'static [&'static str] {
    match t {
        1 => &[
            "title",
            "name",
            "lastName",
            "secondName",
            "birthdate",
            "honorific",
            "sourceId",
            "stageId",
            "statusDescription",
            "companyId",
            "comments",
            "opportunity",
            "isManualOpportunity",
            "assignedById",
            "currencyId",
        ],
        2 => &[
            "title",
            "typeId",
            "categoryId",
            "stageId",
            "currencyId",
            "sourceId",
            "sourceDescription",
            "probability",
            "taxValue",
            "opportunity",
            "isManualOpportunity",
            "companyId",
            "contactIds",
            "assignedById",
            "comments",
        ],
        3 => &[
            "name",
            "lastName",
            "secondName",
            "birthdate",
            "typeId",
            "sourceId",
            "companyIds",
            "post",
            "assignedById",
            "comments",
            "honorific",
        ],
        4 => &[
            "title",
            "industry",
            "currencyId",
            "typeId",
            "employees",
            "revenue",
            "contactIds",
            "assignedById",
            "comments",
        ],
        _ => &["title", "assignedById", "comments"],
    }
}

fn invalid(field: &str) -> RestError {
    RestError::bad_request(
        "CRM_FIELD_ERROR_VALUE_NOT_VALID",
        format!("Field \"{field}\" has an invalid value"),
    )
}

fn item_update(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let t = entity_type(&params)?;
    let id = int_param(&params, "id").max(0) as u64;
    let fields = param(&params, "fields").cloned().unwrap_or(Value::Null);
    if !php::is_array(&fields) {
        return Err(RestError::bad_request(
            "100",
            "Could not find value for parameter {fields}",
        ));
    }
    let caller = ctx.caller.clone();
    ctx.portal.crm(|c| {
        if c.denied.contains(&(t, id)) {
            return Err(denied());
        }
        if !may_touch(c, &caller, t, id) {
            return Err(RestError::bad_request("ACCESS_DENIED", "Access denied"));
        }
        let Some(current) = c.items.get(&(t, id)).cloned() else {
            return Err(not_found("Item"));
        };
        let mut item = current.clone();
        for (k, v) in php::entries(&fields) {
            if writable(t).contains(&k.as_str()) {
                let v = if NUMERIC.contains(&k.as_str()) {
                    number(&v)
                } else {
                    v
                };
                item.fields.insert(k, v);
            }
        }
        check_stage(c, t, &current.fields, &mut item.fields)?;
        if let Some(fm) = fields.get("fm") {
            apply_fm(c, &mut item.fm, fm)?;
        }
        c.items.insert((t, id), item);
        c.writes.push(("crm.item.update".into(), t, id));
        Ok::<(), RestError>(())
    })?;
    lost_answer(ctx, "crm.item.update")?;
    item_get(ctx, json!({ "entityTypeId": t, "id": id }))
}

/// Fields the portal stores as numbers (IDs, amounts), whatever the request's encoding.
const NUMERIC: &[&str] = &[
    "companyId",
    "contactIds",
    "companyIds",
    "assignedById",
    "categoryId",
    "probability",
    "opportunity",
    "taxValue",
    "revenue",
];

/// A form/batch value (strings, PHP arrays) as the number(s) the portal stores.
fn number(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Array(m.values().map(number).collect()),
        Value::Array(a) => Value::Array(a.iter().map(number).collect()),
        Value::String(s) => {
            if let Ok(n) = s.trim().parse::<i64>() {
                json!(n)
            } else if let Ok(f) = s.trim().parse::<f64>() {
                json!(f)
            } else {
                json!(php::intval_str(s))
            }
        }
        other => other.clone(),
    }
}

/// Stages must belong to the item's pipeline; a new pipeline without a stage starts at its
/// first stage (the deal is moved, crm-item-update.md).
fn check_stage(
    c: &Crm,
    t: u64,
    before: &Map<String, Value>,
    after: &mut Map<String, Value>,
) -> Result<(), RestError> {
    let entity = match t {
        1 => "STATUS".to_string(),
        2 => {
            let category = after.get("categoryId").map(php::intval).unwrap_or(0);
            if category < 0
                || !c
                    .categories
                    .iter()
                    .any(|k| k.entity_type_id == 2 && k.id == category as u64)
            {
                return Err(invalid("categoryId"));
            }
            let moved = before.get("categoryId").map(php::intval).unwrap_or(0) != category;
            let entity = Crm::deal_stage_entity(category as u64);
            let stage_given = after.get("stageId") != before.get("stageId");
            if moved && !stage_given {
                if let Some(first) = c.stages_of(&entity).first() {
                    after.insert("stageId".into(), json!(first.status_id));
                }
            }
            entity
        }
        _ => return Ok(()),
    };
    if let Some(stage) = after.get("stageId").and_then(php::to_string) {
        if !c.stages_of(&entity).iter().any(|s| s.status_id == stage) {
            return Err(invalid("stageId"));
        }
    }
    Ok(())
}

/// `fm`: `n<k>` keys add, a numeric key changes that value, an empty value deletes it.
fn apply_fm(c: &mut Crm, fm: &mut Vec<Fm>, ops: &Value) -> Result<(), RestError> {
    for (key, op) in php::entries(ops) {
        let text = |k: &str| op.get(k).and_then(php::to_string).unwrap_or_default();
        let type_id = text("typeId").to_uppercase();
        if !["PHONE", "EMAIL", "WEB", "IM", "LINK"].contains(&type_id.as_str()) {
            return Err(invalid("fm"));
        }
        let value = text("value");
        let value_type = text("valueType").to_uppercase();
        if key.starts_with('n') {
            if !value.is_empty() {
                let id = c.new_fm_id();
                fm.push(Fm {
                    id,
                    type_id,
                    value_type: if value_type.is_empty() {
                        "WORK".into()
                    } else {
                        value_type
                    },
                    value,
                });
            }
        } else {
            let id = php::intval_str(&key) as u64;
            if value.is_empty() {
                fm.retain(|f| f.id != id);
            } else if let Some(f) = fm.iter_mut().find(|f| f.id == id) {
                f.value = value;
                if !value_type.is_empty() {
                    f.value_type = value_type;
                }
            }
        }
    }
    Ok(())
}

/// `CCrmCompanyRestProxy::innerUpdate`; the sim keeps the address fields only.
fn company_update(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let id = int_param(&params, "id");
    if id <= 0 {
        return Err(legacy_error("ID is not defined or invalid."));
    }
    let fields = param(&params, "fields").cloned().unwrap_or(Value::Null);
    let caller = ctx.caller.clone();
    ctx.portal.crm(|c| {
        let key = (4, id as u64);
        if c.denied.contains(&key) || !may_touch(c, &caller, 4, id as u64) {
            return Err(legacy_error("Access denied."));
        }
        let Some(item) = c.items.get_mut(&key) else {
            return Err(legacy_error("Not found"));
        };
        for (k, v) in php::upper_keys(&fields) {
            if ["ADDRESS", "ADDRESS_2", "ADDRESS_CITY"].contains(&k.as_str()) {
                item.fields.insert(k, v);
            }
        }
        c.writes.push(("crm.company.update".into(), 4, id as u64));
        Ok(())
    })?;
    Ok(json!(true).into())
}

fn status_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let filter = php::upper_keys(param(&params, "filter").unwrap_or(&Value::Null));
    let want = |k: &str| filter.get(k).and_then(php::to_string);
    let list = ctx.portal.crm(|c| {
        let mut all: Vec<_> = c
            .statuses
            .iter()
            .filter(|s| want("ENTITY_ID").is_none_or(|e| e == s.entity_id))
            .filter(|s| want("STATUS_ID").is_none_or(|e| e == s.status_id))
            .cloned()
            .collect();
        all.sort_by(|a, b| a.entity_id.cmp(&b.entity_id).then(a.sort.cmp(&b.sort)));
        all.iter()
            .map(|s| {
                let extra = match s.semantics {
                    Some("S") => "success",
                    Some("F") => "failure",
                    _ => "process",
                };
                json!({
                    "ID": s.id.to_string(), "ENTITY_ID": s.entity_id, "STATUS_ID": s.status_id, "NAME": s.name,
                    "NAME_INIT": s.name, "SORT": s.sort.to_string(), "SYSTEM": "N",
                    "CATEGORY_ID": s.category_id.map(|c| c.to_string()), "SEMANTICS": s.semantics,
                    "EXTRA": { "SEMANTICS": extra },
                })
            })
            .collect::<Vec<_>>()
    });
    // No navigation: the whole list in one answer.
    Ok(json!(list).into())
}

fn category_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let t = int_param(&params, "entityTypeId");
    let list = ctx.portal.crm(|c| {
        c.categories
            .iter()
            .filter(|k| k.entity_type_id as i64 == t)
            .map(|k| json!({"id": k.id, "name": k.name, "sort": (k.id + 1) * 100, "entityTypeId": t, "isDefault": if k.id == 0 { "Y" } else { "N" }}))
            .collect::<Vec<_>>()
    });
    if list.is_empty() {
        return Err(RestError::bad_request(
            "NOT_FOUND",
            "Entity type not found or has no categories",
        ));
    }
    let total = list.len() as u64;
    Ok(Reply {
        result: json!({ "categories": list }),
        total: Some(total),
        next: None,
    })
}

fn currency_list(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    let list = ctx.portal.crm(|c| {
        c.currencies
            .iter()
            .enumerate()
            .map(|(i, (code, name))| json!({"CURRENCY": code, "FULL_NAME": name, "SORT": ((i + 1) * 100).to_string(), "BASE": if i == 0 { "Y" } else { "N" }, "AMOUNT_CNT": "1"}))
            .collect::<Vec<_>>()
    });
    let total = list.len() as u64;
    Ok(Reply {
        result: json!(list),
        total: Some(total),
        next: None,
    })
}
