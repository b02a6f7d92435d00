//! Old invoices (deprecated, methods.md §1B, §11): `crm.invoice.add/get/list/getexternallink/
//! fields`, `crm.persontype.list`, `crm.paysystem.list`. `CCrmInvoiceRestProxy` and its
//! siblings answer bare messages with an empty code ("Not found", "Access denied.").
use serde_json::{json, Map, Value};

use super::{int_param, legacy_error, lost_answer, param};
use crate::methods::{page, start_param, Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::auth::random_hex;
use crate::state::invoicing::{self, Invoicing};

pub(super) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "crm.invoice.add" => invoice_add,
        "crm.invoice.get" => invoice_get,
        "crm.invoice.list" => invoice_list,
        "crm.invoice.getexternallink" => external_link,
        "crm.invoice.fields" => invoice_fields,
        "crm.persontype.list" => person_type_list,
        "crm.paysystem.list" => pay_system_list,
        _ => return None,
    };
    Some(handler)
}

/// Payer properties the two payer types have (crm-invoice-fields.md).
const COMPANY_PROPERTIES: &[&str] = &[
    "COMPANY",
    "COMPANY_ADR",
    "CONTACT_PERSON",
    "EMAIL",
    "PHONE",
    "FAX",
    "INN",
    "KPP",
    "ZIP",
    "CITY",
    "LOCATION",
    "ADDRESS",
];
const CONTACT_PROPERTIES: &[&str] = &[
    "FIO", "ADDRESS", "EMAIL", "PHONE", "ZIP", "CITY", "LOCATION",
];

const TEXT_FIELDS: &[&str] = &[
    "COMMENTS",
    "USER_DESCRIPTION",
    "DATE_BILL",
    "DATE_PAY_BEFORE",
    "XML_ID",
];

const ID_FIELDS: &[&str] = &[
    "UF_DEAL_ID",
    "UF_QUOTE_ID",
    "UF_COMPANY_ID",
    "UF_CONTACT_ID",
    "UF_MYCOMPANY_ID",
];

fn num(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(other) => php::to_string(other)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0.0),
        None => 0.0,
    }
}

fn invoice_add(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let fields = php::upper_keys(param(&params, "fields").unwrap_or(&Value::Null));
    let text = |k: &str| fields.get(k).and_then(php::to_string).unwrap_or_default();
    let int = |k: &str| fields.get(k).map(php::intval).unwrap_or(0).max(0) as u64;
    let caller = ctx.caller.user_id;
    let id = ctx.portal.crm(|c| {
        invoicing::ensure_invoice_dictionaries(c);
        let base_currency = c.currencies.first().map(|(code, _)| code.clone());
        let status = match text("STATUS_ID") {
            s if s.is_empty() => "N".to_string(),
            s => s,
        };
        if !c
            .stages_of("INVOICE_STATUS")
            .iter()
            .any(|s| s.status_id == status)
        {
            return Err(legacy_error(
                "The field STATUS_ID is not defined or invalid.",
            ));
        }
        let id = ctx.portal.invoicing(|inv| {
            if inv.create_denied.contains(&5) {
                return Err(legacy_error("Access denied."));
            }
            if text("ORDER_TOPIC").trim().is_empty() {
                return Err(legacy_error("The field ORDER_TOPIC is required."));
            }
            let person_type = int("PERSON_TYPE_ID");
            if !inv.person_types.iter().any(|(id, _)| *id == person_type) {
                return Err(legacy_error(
                    "The field PERSON_TYPE_ID is not defined or invalid.",
                ));
            }
            let pay_system = int("PAY_SYSTEM_ID");
            if !inv.pay_systems.iter().any(|s| s.id == pay_system) {
                return Err(legacy_error(
                    "The field PAY_SYSTEM_ID is not defined or invalid.",
                ));
            }
            let id = inv.new_id("legacy_invoice");
            let mut out = Map::new();
            out.insert("ID".into(), json!(id.to_string()));
            out.insert(
                "ACCOUNT_NUMBER".into(),
                json!(format!("{}{id}", inv.number_prefix)),
            );
            out.insert("ORDER_TOPIC".into(), json!(text("ORDER_TOPIC")));
            out.insert("STATUS_ID".into(), json!(status));
            out.insert("PERSON_TYPE_ID".into(), json!(person_type.to_string()));
            out.insert("PAY_SYSTEM_ID".into(), json!(pay_system.to_string()));
            for k in ID_FIELDS {
                out.insert((*k).into(), json!(int(k).to_string()));
            }
            for k in TEXT_FIELDS {
                out.insert((*k).into(), json!(text(k)));
            }
            let responsible = match int("RESPONSIBLE_ID") {
                0 => caller,
                n => n,
            };
            out.insert("RESPONSIBLE_ID".into(), json!(responsible.to_string()));
            out.insert("CURRENCY".into(), json!(base_currency));
            out.insert("PAYED".into(), json!("N"));
            out.insert("DATE_INSERT".into(), json!(chrono::Utc::now().to_rfc3339()));
            let allowed = if person_type == 1 {
                COMPANY_PROPERTIES
            } else {
                CONTACT_PROPERTIES
            };
            let props: Map<String, Value> =
                php::upper_keys(fields.get("INVOICE_PROPERTIES").unwrap_or(&Value::Null))
                    .into_iter()
                    .filter(|(k, _)| allowed.contains(&k.as_str()))
                    .map(|(k, v)| (k, json!(php::to_string(&v).unwrap_or_default())))
                    .collect();
            out.insert("INVOICE_PROPERTIES".into(), Value::Object(props));
            let mut price = 0.0;
            let mut rows = Vec::new();
            for r in php::values(fields.get("PRODUCT_ROWS").unwrap_or(&Value::Null)) {
                let r = php::upper_keys(&r);
                let (p, q) = (num(r.get("PRICE")), num(r.get("QUANTITY")));
                price += p * q;
                let row_id = inv.new_id("legacy_row");
                rows.push(json!({
                    "ID": row_id.to_string(), "ORDER_ID": id.to_string(),
                    "PRODUCT_ID": php::intval(r.get("PRODUCT_ID").unwrap_or(&Value::Null)).to_string(),
                    "PRODUCT_NAME": r.get("PRODUCT_NAME").and_then(php::to_string).unwrap_or_default(),
                    "PRICE": p, "QUANTITY": q,
                    "DISCOUNT_PRICE": num(r.get("DISCOUNT_PRICE")),
                    "VAT_RATE": num(r.get("VAT_RATE")),
                    "VAT_INCLUDED": r.get("VAT_INCLUDED").and_then(php::to_string).filter(|s| !s.is_empty()).unwrap_or_else(|| "N".into()),
                    "MEASURE_CODE": r.get("MEASURE_CODE").and_then(php::to_string).unwrap_or_default(),
                    "MEASURE_NAME": r.get("MEASURE_NAME").and_then(php::to_string).unwrap_or_default(),
                }));
            }
            out.insert("PRODUCT_ROWS".into(), json!(rows));
            out.insert("PRICE".into(), json!(price));
            let user_fields: Vec<String> = inv
                .user_fields
                .get(&5)
                .map(|f| f.iter().map(|u| u.name.clone()).collect())
                .unwrap_or_default();
            for name in user_fields {
                if let Some(v) = fields.get(&name) {
                    out.insert(name, v.clone());
                }
            }
            out.insert("_HASH".into(), json!(random_hex(32)));
            inv.legacy.insert(id, out);
            Ok(id)
        })?;
        c.writes.push(("crm.invoice.add".into(), 5, id));
        Ok::<u64, RestError>(id)
    })?;
    lost_answer(ctx, "crm.invoice.add")?;
    Ok(json!(id).into())
}

/// The invoice as `crm.invoice.get` shows it (internal keys start with `_`).
fn render(invoice: &Map<String, Value>) -> Value {
    Value::Object(
        invoice
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// The readable invoice `id`, with the proxy's errors.
fn readable(ctx: &Ctx<'_>, params: &Value) -> Result<Map<String, Value>, RestError> {
    let id = int_param(params, "id");
    if id <= 0 {
        return Err(legacy_error("ID is not defined or invalid."));
    }
    let denied = ctx.portal.crm(|c| c.denied.contains(&(5, id as u64)));
    let invoice = ctx
        .portal
        .invoicing(|inv| inv.legacy.get(&(id as u64)).cloned())
        .ok_or_else(|| legacy_error("Not found"))?;
    if denied {
        return Err(legacy_error("Access denied."));
    }
    Ok(invoice)
}

fn invoice_get(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    Ok(render(&readable(ctx, &params)?).into())
}

fn external_link(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let invoice = readable(ctx, &params)?;
    let id = php::to_string(&invoice["ID"]).unwrap_or_default();
    let hash = php::to_string(&invoice["_HASH"]).unwrap_or_default();
    Ok(json!(format!(
        "{}/pub/invoice.php?invoice_id={id}&hash={hash}",
        ctx.portal.base_url()
    ))
    .into())
}

/// Exact matches on UPPER_CASE fields; no properties or rows (crm-invoice-list.md).
fn invoice_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let filter = php::upper_keys(param(&params, "filter").unwrap_or(&Value::Null));
    let select: Vec<String> = param(&params, "select")
        .map(php::values)
        .unwrap_or_default()
        .iter()
        .filter_map(php::to_string)
        .map(|s| s.to_uppercase())
        .filter(|s| s != "*")
        .collect();
    let denied = ctx.portal.crm(|c| c.denied.clone());
    let list = ctx.portal.invoicing(|inv| {
        inv.legacy
            .iter()
            .filter(|(id, _)| !denied.contains(&(5, **id)))
            .map(|(_, i)| i)
            .filter(|i| {
                filter.iter().all(|(k, v)| {
                    let field = k.trim_start_matches('=');
                    i.get(field).and_then(php::to_string).unwrap_or_default()
                        == php::to_string(v).unwrap_or_default()
                })
            })
            .map(|i| {
                let mut out: Map<String, Value> = match render(i) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                out.remove("INVOICE_PROPERTIES");
                out.remove("PRODUCT_ROWS");
                if !select.is_empty() {
                    out.retain(|k, _| select.contains(k));
                }
                Value::Object(out)
            })
            .collect::<Vec<_>>()
    });
    Ok(page(list, start_param(&params)))
}

fn invoice_fields(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    let describe = |t: &str, title: &str, required: bool, read_only: bool| {
        json!({"type": t, "isRequired": required, "isReadOnly": read_only, "isImmutable": false,
            "isMultiple": false, "isDynamic": false, "title": title})
    };
    let mut out = Map::new();
    for (name, t, required, read_only) in [
        ("ID", "integer", false, true),
        ("ACCOUNT_NUMBER", "string", true, false),
        ("ORDER_TOPIC", "string", true, false),
        ("STATUS_ID", "crm_status", false, false),
        ("PERSON_TYPE_ID", "integer", true, false),
        ("PAY_SYSTEM_ID", "integer", true, false),
        ("UF_DEAL_ID", "integer", false, false),
        ("UF_COMPANY_ID", "integer", false, false),
        ("UF_CONTACT_ID", "integer", false, false),
        ("UF_MYCOMPANY_ID", "integer", false, false),
        ("RESPONSIBLE_ID", "user", false, false),
        ("PRICE", "double", false, true),
        ("CURRENCY", "string", false, true),
        ("XML_ID", "string", false, false),
        ("INVOICE_PROPERTIES", "object", false, false),
        ("PRODUCT_ROWS", "product_row", false, false),
    ] {
        out.insert(name.into(), describe(t, name, required, read_only));
    }
    let user_fields = ctx
        .portal
        .invoicing(|inv| inv.user_fields.get(&5).cloned().unwrap_or_default());
    for u in user_fields {
        // The legacy proxies keep the code in `title` and the label in the *Label keys.
        out.insert(
            u.name.clone(),
            json!({"type": u.type_id, "isRequired": false, "isReadOnly": false, "isImmutable": false,
                "isMultiple": false, "isDynamic": true, "title": u.name, "listLabel": u.label,
                "formLabel": u.label, "filterLabel": u.label}),
        );
    }
    Ok(Value::Object(out).into())
}

fn settings_readable(ctx: &Ctx<'_>) -> Result<(), RestError> {
    if ctx.portal.invoicing(|inv| inv.settings_denied) {
        return Err(legacy_error("Access denied."));
    }
    Ok(())
}

fn person_type_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    settings_readable(ctx)?;
    let list = ctx.portal.invoicing(|inv| {
        inv.person_types
            .iter()
            .map(|(id, name)| json!({"ID": id.to_string(), "NAME": name}))
            .collect::<Vec<_>>()
    });
    Ok(page(list, start_param(&params)))
}

fn pay_system_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    settings_readable(ctx)?;
    let list = ctx.portal.invoicing(|inv: &mut Invoicing| {
        inv.pay_systems
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"ID": s.id.to_string(), "NAME": s.name, "ACTIVE": "Y", "SORT": ((i + 1) * 100).to_string(),
                    "DESCRIPTION": "", "PERSON_TYPE_ID": s.person_type_id.to_string(),
                    "ACTION_FILE": "bill", "HANDLER": "bill", "HANDLER_CODE": "bill", "HANDLER_NAME": s.name})
            })
            .collect::<Vec<_>>()
    });
    Ok(page(list, start_param(&params)))
}
