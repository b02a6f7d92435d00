//! New invoices and product rows (methods.md §1A): `crm.item.add` (types 1–4 and 31, with the
//! invoice fields `accountNumber`, `stageId` `DT31_<cat>:N`, `categoryId`, `parentId2`,
//! `mycompanyId`, `xmlId`), `crm.item.fields` (with user fields), and
//! `crm.item.productrow.list/set` (set replaces all rows, crm-item-productrow-set.md).
use serde_json::{json, Map, Value};

use super::items::entity_type;
use super::{denied, lost_answer, param};
use crate::methods::{Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::crm::{Crm, Item};
use crate::state::invoicing::{self, owner_of_abbr, SMART_INVOICE_CATEGORY};

pub(super) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "crm.item.add" => item_add,
        "crm.item.fields" => item_fields,
        "crm.item.productrow.list" => productrow_list,
        "crm.item.productrow.set" => productrow_set,
        _ => return None,
    };
    Some(handler)
}

fn missing(name: &str) -> RestError {
    RestError::bad_request(
        "100",
        format!("Could not find value for parameter {{{name}}}"),
    )
}

fn invalid(field: &str) -> RestError {
    RestError::bad_request(
        "CRM_FIELD_ERROR_VALUE_NOT_VALID",
        format!("Field \"{field}\" has an invalid value"),
    )
}

/// Fields `crm.item.add` takes (besides `parentId<type>` and the type's user fields).
const WRITABLE: &[&str] = &[
    "title",
    "name",
    "lastName",
    "secondName",
    "stageId",
    "categoryId",
    "companyId",
    "companyIds",
    "contactId",
    "contactIds",
    "mycompanyId",
    "currencyId",
    "assignedById",
    "begindate",
    "closedate",
    "comments",
    "xmlId",
    "opportunity",
    "isManualOpportunity",
    "isMyCompany",
    "typeId",
    "sourceId",
];

const NUMERIC: &[&str] = &[
    "categoryId",
    "companyId",
    "companyIds",
    "contactId",
    "contactIds",
    "mycompanyId",
    "assignedById",
    "opportunity",
];

/// A form/batch value as the number(s) the portal stores.
fn number(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Array(m.values().map(number).collect()),
        Value::Array(a) => Value::Array(a.iter().map(number).collect()),
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => s
                .trim()
                .parse::<f64>()
                .map(|f| json!(f))
                .unwrap_or_else(|_| json!(php::intval_str(s))),
        },
        other => other.clone(),
    }
}

/// `UF_CRM_…` of a `crm.item` user field name (`ufCrm_1`, `ufCrm44_1`, `ufCrm_SMART_INVOICE_1`).
fn upper_name(name: &str) -> String {
    match name.strip_prefix("ufCrm") {
        Some(rest) if rest.starts_with('_') => format!("UF_CRM{rest}"),
        Some(rest) => format!("UF_CRM_{rest}"),
        None => name.to_uppercase(),
    }
}

fn item_add(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let t = entity_type(&params)?;
    let fields = param(&params, "fields").cloned().unwrap_or(Value::Null);
    if !php::is_array(&fields) {
        return Err(missing("fields"));
    }
    let caller = ctx.caller.user_id;
    let id = ctx.portal.crm(|c| {
        invoicing::ensure_invoice_dictionaries(c);
        let (user_fields, create_denied, prefix) = ctx.portal.invoicing(|inv| {
            (
                inv.user_fields
                    .get(&t)
                    .map(|f| f.iter().map(|u| u.name.clone()).collect::<Vec<_>>())
                    .unwrap_or_default(),
                inv.create_denied.contains(&t),
                inv.number_prefix.clone(),
            )
        });
        if create_denied {
            return Err(denied());
        }
        let mut item = Item::default();
        for (k, v) in php::entries(&fields) {
            let parent = k
                .strip_prefix("parentId")
                .is_some_and(|n| n.parse::<u64>().is_ok());
            if parent || NUMERIC.contains(&k.as_str()) {
                item.fields.insert(k, number(&v));
            } else if WRITABLE.contains(&k.as_str()) || user_fields.contains(&k) {
                item.fields.insert(k, v);
            }
        }
        if let Some(deal) = item.fields.get("parentId2").map(php::intval) {
            if deal > 0 && !c.items.contains_key(&(2, deal as u64)) {
                return Err(invalid("parentId2"));
            }
        }
        if t == 31 {
            complete_invoice(c, &mut item.fields, caller)?;
        }
        if let Some(first) = item
            .fields
            .get("contactIds")
            .and_then(|ids| php::values(ids).first().cloned())
        {
            item.fields.entry("contactId").or_insert(first);
        }
        item.fields.entry("assignedById").or_insert(json!(caller));
        item.fields.insert("createdBy".into(), json!(caller));
        item.fields
            .insert("createdTime".into(), json!(chrono::Utc::now().to_rfc3339()));
        let id = c.new_id(t);
        if t == 31 {
            item.fields
                .insert("accountNumber".into(), json!(format!("{prefix}{id}")));
        }
        c.items.insert((t, id), item);
        c.writes.push(("crm.item.add".into(), t, id));
        Ok(id)
    })?;
    lost_answer(ctx, "crm.item.add")?;
    let item = ctx.portal.crm(|c| c.render(t, id));
    Ok(json!({ "item": item }).into())
}

/// Defaults and checks of a new invoice: pipeline and stage, seller, currency, sum.
fn complete_invoice(c: &Crm, f: &mut Map<String, Value>, caller: u64) -> Result<(), RestError> {
    let category = match f.get("categoryId").map(php::intval) {
        None => SMART_INVOICE_CATEGORY,
        Some(k)
            if k > 0
                && c.categories
                    .iter()
                    .any(|x| x.entity_type_id == 31 && x.id == k as u64) =>
        {
            k as u64
        }
        Some(_) => return Err(invalid("categoryId")),
    };
    f.insert("categoryId".into(), json!(category));
    let stages = c.stages_of(&invoicing::smart_stage_entity(category));
    match f.get("stageId").and_then(php::to_string) {
        Some(stage) if !stage.is_empty() => {
            if !stages.iter().any(|s| s.status_id == stage) {
                return Err(invalid("stageId"));
            }
        }
        _ => {
            let first = stages.first().map(|s| s.status_id.clone());
            f.insert("stageId".into(), json!(first));
        }
    }
    if !f.contains_key("mycompanyId") {
        // Omitted: the first "my company" (crm-item-add.md).
        let mine = c
            .items
            .iter()
            .find(|((t, _), i)| {
                *t == 4
                    && i.fields
                        .get("isMyCompany")
                        .is_some_and(|v| v == "Y" || v == &json!(true))
            })
            .map(|((_, id), _)| *id);
        if let Some(mine) = mine {
            f.insert("mycompanyId".into(), json!(mine));
        }
    }
    let base = c.currencies.first().map(|(code, _)| code.clone());
    f.entry("currencyId").or_insert(json!(base));
    f.entry("opportunity").or_insert(json!(0));
    f.entry("xmlId").or_insert(json!(""));
    f.entry("assignedById").or_insert(json!(caller));
    f.insert("previousStageId".into(), json!(""));
    f.insert("movedTime".into(), json!(chrono::Utc::now().to_rfc3339()));
    Ok(())
}

fn field(type_id: &str, title: &str, read_only: bool, multiple: bool) -> Value {
    json!({
        "type": type_id, "isRequired": false, "isReadOnly": read_only, "isImmutable": false,
        "isMultiple": multiple, "isDynamic": false, "title": title,
    })
}

fn item_fields(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let t = entity_type(&params)?;
    let mut fields = Map::new();
    let mut add = |name: &str, v: Value| {
        let mut v = v;
        v["upperName"] = json!(upper_name_standard(name));
        fields.insert(name.into(), v);
    };
    add("id", field("integer", "ID", true, false));
    add("title", field("string", "Name", false, false));
    add(
        "assignedById",
        field("user", "Responsible person", false, false),
    );
    add(
        "currencyId",
        field("crm_currency", "Currency", false, false),
    );
    add("opportunity", field("double", "Amount", false, false));
    add("xmlId", field("string", "External ID", false, false));
    if matches!(t, 2 | 31) {
        add("companyId", field("crm_company", "Company", false, false));
        add("contactIds", field("crm_contact", "Contacts", false, true));
        add("stageId", field("crm_status", "Stage", false, false));
        add(
            "categoryId",
            field("crm_category", "Pipeline", false, false),
        );
    }
    if t == 31 {
        add("accountNumber", field("string", "Invoice #", false, false));
        add(
            "mycompanyId",
            field("crm_company", "Your company details", false, false),
        );
        add("parentId2", field("crm_entity", "Deal", false, false));
    }
    let user_fields = ctx
        .portal
        .invoicing(|inv| inv.user_fields.get(&t).cloned().unwrap_or_default());
    for u in user_fields {
        fields.insert(
            u.name.clone(),
            json!({
                "type": u.type_id, "isRequired": false, "isReadOnly": false, "isImmutable": false,
                "isMultiple": false, "isDynamic": true, "title": u.label, "listLabel": u.label,
                "formLabel": u.label, "filterLabel": u.label, "settings": {},
                "upperName": upper_name(&u.name),
            }),
        );
    }
    Ok(json!({ "fields": fields }).into())
}

/// `assignedById` → `ASSIGNED_BY_ID`.
fn upper_name_standard(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_uppercase()
            || (ch.is_ascii_digit() && !out.ends_with(|c: char| c.is_ascii_digit()))
        {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// The owner of product rows: (entity type, abbreviation, id), checked.
fn row_owner(c: &Crm, abbr: &Value, id: &Value) -> Result<(u64, String, u64), RestError> {
    let abbr = php::to_string(abbr).unwrap_or_default().to_uppercase();
    let t = owner_of_abbr(&abbr).ok_or_else(|| {
        RestError::bad_request("ENTITY_TYPE_NOT_SUPPORTED", "Entity type is not supported")
    })?;
    let id = php::intval(id).max(0) as u64;
    if c.denied.contains(&(t, id)) {
        return Err(denied());
    }
    if !c.items.contains_key(&(t, id)) {
        return Err(RestError::bad_request(
            "OWNER_NOT_FOUND",
            "Owner was not found",
        ));
    }
    Ok((t, abbr, id))
}

fn productrow_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let filter = param(&params, "filter").cloned().unwrap_or(Value::Null);
    let (Some(abbr), Some(owner)) = (filter.get("=ownerType"), filter.get("=ownerId")) else {
        return Err(RestError::bad_request(
            "INVALID_ARG_VALUE",
            "The filter must contain =ownerType and =ownerId",
        ));
    };
    let rows = ctx.portal.crm(|c| {
        let abbr_text = php::to_string(abbr).unwrap_or_default().to_uppercase();
        let t = owner_of_abbr(&abbr_text).ok_or_else(|| {
            RestError::bad_request("ENTITY_TYPE_NOT_SUPPORTED", "Entity type is not supported")
        })?;
        let id = php::intval(owner).max(0) as u64;
        if c.denied.contains(&(t, id)) {
            return Err(denied());
        }
        // A missing owner simply has no rows: this is a filtered list.
        Ok(ctx
            .portal
            .invoicing(|inv| inv.rows.get(&(t, id)).cloned().unwrap_or_default()))
    })?;
    let total = rows.len() as u64;
    let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
    Ok(Reply {
        result: json!({ "productRows": rows }),
        total: Some(total),
        next: None,
    })
}

fn productrow_set(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let abbr = param(&params, "ownerType").ok_or_else(|| missing("ownerType"))?;
    let owner = param(&params, "ownerId").ok_or_else(|| missing("ownerId"))?;
    let given = params
        .get("productRows")
        .ok_or_else(|| missing("productRows"))?;
    let given = php::values(given);
    let rows = ctx.portal.crm(|c| {
        let (t, abbr, id) = row_owner(c, abbr, owner)?;
        let rows = ctx.portal.invoicing(|inv| {
            let rows: Vec<Map<String, Value>> =
                given.iter().map(|r| inv.new_row(&abbr, id, r)).collect();
            inv.rows.insert((t, id), rows.clone());
            rows
        });
        let item = c.items.get_mut(&(t, id)).ok_or_else(denied)?;
        if item
            .fields
            .get("isManualOpportunity")
            .and_then(php::to_string)
            .as_deref()
            != Some("Y")
        {
            let sum: f64 = rows
                .iter()
                .map(|r| r["price"].as_f64().unwrap_or(0.0) * r["quantity"].as_f64().unwrap_or(0.0))
                .sum();
            item.fields.insert("opportunity".into(), json!(sum));
        }
        c.writes.push(("crm.item.productrow.set".into(), t, id));
        Ok::<_, RestError>(rows)
    })?;
    lost_answer(ctx, "crm.item.productrow.set")?;
    let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
    Ok(json!({ "productRows": rows }).into())
}
