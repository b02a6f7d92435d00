//! Requisites (methods.md §1A): `crm.requisite.list/get`, `crm.requisite.bankdetail.list`,
//! `crm.requisite.link.get/register`. These are `CCrmRestProxyBase` proxies: errors are a bare
//! message with an empty code (crm-requisite-link-get.md: `{"error":"","error_description":
//! "Not found"}` when an entity has no link; crm-requisite-link-register.md for the checks).
use serde_json::{json, Value};

use super::{int_param, legacy_error, lost_answer, param};
use crate::methods::{page, start_param, Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::crm::Crm;
use crate::state::invoicing::{Invoicing, Link};

pub(super) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "crm.requisite.list" => requisite_list,
        "crm.requisite.get" => requisite_get,
        "crm.requisite.bankdetail.list" => bank_detail_list,
        "crm.requisite.link.get" => link_get,
        "crm.requisite.link.register" => link_register,
        _ => return None,
    };
    Some(handler)
}

/// A value against a list filter: `=KEY`/`KEY` exact, `@KEY` in a list.
fn matches(filter: &[(String, Value)], get: impl Fn(&str) -> String) -> bool {
    filter.iter().all(|(k, want)| {
        if let Some(field) = k.strip_prefix('@') {
            let have = get(&field.to_uppercase());
            return php::values(want)
                .iter()
                .any(|w| php::to_string(w).unwrap_or_default() == have);
        }
        let field = k.trim_start_matches('=').to_uppercase();
        get(&field) == php::to_string(want).unwrap_or_default()
    })
}

fn descending(params: &Value) -> bool {
    php::upper_keys(param(params, "order").unwrap_or(&Value::Null))
        .get("ID")
        .and_then(php::to_string)
        .is_some_and(|d| d.eq_ignore_ascii_case("desc"))
}

fn requisite_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let filter = php::entries(param(&params, "filter").unwrap_or(&Value::Null));
    let mut list = ctx.portal.crm(|c| {
        ctx.portal.invoicing(|inv| {
            inv.requisites
                .values()
                .filter(|r| !c.denied.contains(&(r.entity_type_id, r.entity_id)))
                .map(Invoicing::render_requisite)
                .filter(|r| matches(&filter, |k| php::to_string(&r[k]).unwrap_or_default()))
                .collect::<Vec<_>>()
        })
    });
    if descending(&params) {
        list.reverse();
    }
    Ok(page(list, start_param(&params)))
}

fn requisite_get(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let id = int_param(&params, "id");
    if id <= 0 {
        return Err(legacy_error("ID is not defined or invalid."));
    }
    ctx.portal.crm(|c| {
        ctx.portal.invoicing(|inv| {
            let r = inv
                .requisites
                .get(&(id as u64))
                .ok_or_else(|| legacy_error("Not found"))?;
            if c.denied.contains(&(r.entity_type_id, r.entity_id)) {
                return Err(legacy_error("Access denied."));
            }
            Ok(Invoicing::render_requisite(r).into())
        })
    })
}

fn bank_detail_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let filter = php::entries(param(&params, "filter").unwrap_or(&Value::Null));
    let mut list = ctx.portal.crm(|c| {
        ctx.portal.invoicing(|inv| {
            inv.bank_details
                .values()
                .filter(|b| {
                    inv.requisites
                        .get(&b.requisite_id)
                        .is_some_and(|r| !c.denied.contains(&(r.entity_type_id, r.entity_id)))
                })
                .map(Invoicing::render_bank_detail)
                .filter(|b| matches(&filter, |k| php::to_string(&b[k]).unwrap_or_default()))
                .collect::<Vec<_>>()
        })
    });
    if descending(&params) {
        list.reverse();
    }
    Ok(page(list, start_param(&params)))
}

/// Types a requisite link may belong to: deals, old and new invoices, estimates, smart processes.
fn linkable(t: i64) -> bool {
    matches!(t, 2 | 5 | 7 | 31) || t >= 128
}

/// The parties of an entity: (company, contact, my company), or `None` if it does not exist.
pub(super) fn parties(c: &Crm, inv: &Invoicing, t: u64, id: u64) -> Option<(u64, u64, u64)> {
    let n = |v: Option<&Value>| v.map(php::intval).unwrap_or(0).max(0) as u64;
    if t == 5 {
        let i = inv.legacy.get(&id)?;
        return Some((
            n(i.get("UF_COMPANY_ID")),
            n(i.get("UF_CONTACT_ID")),
            n(i.get("UF_MYCOMPANY_ID")),
        ));
    }
    let item = c.items.get(&(t, id))?;
    let f = &item.fields;
    let contact = match f.get("contactIds") {
        Some(ids) => php::values(ids)
            .first()
            .map(php::intval)
            .unwrap_or(0)
            .max(0) as u64,
        None => n(f.get("contactId")),
    };
    Some((n(f.get("companyId")), contact, n(f.get("mycompanyId"))))
}

fn link_get(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let t = int_param(&params, "entityTypeId");
    if !linkable(t) {
        return Err(legacy_error("entityTypeId is not defined or invalid."));
    }
    let id = int_param(&params, "entityId");
    if id <= 0 {
        return Err(legacy_error("entityId is not defined or invalid."));
    }
    let (t, id) = (t as u64, id as u64);
    ctx.portal.crm(|c| {
        if c.denied.contains(&(t, id)) {
            return Err(legacy_error("Access denied"));
        }
        ctx.portal.invoicing(|inv| {
            let link = inv
                .links
                .get(&(t, id))
                .ok_or_else(|| legacy_error("Not found"))?;
            Ok(json!({
                "ENTITY_TYPE_ID": t, "ENTITY_ID": id,
                "REQUISITE_ID": link.requisite_id.to_string(),
                "BANK_DETAIL_ID": link.bank_detail_id.to_string(),
                "MC_REQUISITE_ID": link.mc_requisite_id.to_string(),
                "MC_BANK_DETAIL_ID": link.mc_bank_detail_id.to_string(),
            })
            .into())
        })
    })
}

fn link_register(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let fields = php::upper_keys(param(&params, "fields").unwrap_or(&Value::Null));
    // All six are required; 0 means "none" for the four requisite IDs.
    let mut ids = [0i64; 6];
    for (i, key) in [
        "ENTITY_TYPE_ID",
        "ENTITY_ID",
        "REQUISITE_ID",
        "BANK_DETAIL_ID",
        "MC_REQUISITE_ID",
        "MC_BANK_DETAIL_ID",
    ]
    .iter()
    .enumerate()
    {
        let v = fields.get(*key).map(php::intval);
        let ok = match (i, v) {
            (0, Some(t)) => linkable(t),
            (1, Some(id)) => id > 0,
            (_, Some(id)) => id >= 0,
            _ => false,
        };
        if !ok {
            return Err(legacy_error(&format!("{key} is not defined or invalid.")));
        }
        ids[i] = v.unwrap_or(0);
    }
    let [t, id, rq, bd, mcrq, mcbd] = ids.map(|v| v as u64);
    ctx.portal.crm(|c| {
        ctx.portal.invoicing(|inv| {
            let (company, contact, my_company) =
                parties(c, inv, t, id).ok_or_else(|| legacy_error("Entity is not found"))?;
            if c.denied.contains(&(t, id)) {
                return Err(legacy_error("Access denied"));
            }
            if rq > 0 {
                let r = inv.requisites.get(&rq).ok_or_else(|| {
                    legacy_error(&format!("The Requisite with ID '{rq}' is not found"))
                })?;
                let (owner_type, owner, name) = if company > 0 || contact == 0 {
                    (4, company, "Company")
                } else {
                    (3, contact, "Contact")
                };
                if (r.entity_type_id, r.entity_id) != (owner_type, owner) {
                    return Err(legacy_error(&format!(
                        "The Requisite with ID '{rq}' is not assigned to {name} with ID '{owner}'"
                    )));
                }
            }
            if bd > 0 {
                let b = inv.bank_details.get(&bd).ok_or_else(|| {
                    legacy_error(&format!("The BankDetail with ID '{bd}' is not found"))
                })?;
                if b.requisite_id != rq {
                    return Err(legacy_error(&format!(
                        "The BankDetail with ID '{bd}' is not assigned to Requisite with ID '{rq}'"
                    )));
                }
            }
            if mcrq > 0 {
                let r = inv.requisites.get(&mcrq).ok_or_else(|| {
                    legacy_error(&format!(
                        "The Requisite of your company with ID '{mcrq}' is not found"
                    ))
                })?;
                if (r.entity_type_id, r.entity_id) != (4, my_company) {
                    return Err(legacy_error(&format!(
                        "The Requisite with ID '{mcrq}' is not assigned to your company with ID '{my_company}'"
                    )));
                }
            }
            if mcbd > 0 {
                let b = inv.bank_details.get(&mcbd).ok_or_else(|| {
                    legacy_error(&format!(
                        "The BankDetail of your company with ID '{mcbd}' is not found"
                    ))
                })?;
                if b.requisite_id != mcrq {
                    return Err(legacy_error(&format!(
                        "The BankDetail of your company with ID '{mcbd}' is not assigned to Requisite of your company with ID '{mcrq}'"
                    )));
                }
            }
            inv.links.insert(
                (t, id),
                Link {
                    requisite_id: rq,
                    bank_detail_id: bd,
                    mc_requisite_id: mcrq,
                    mc_bank_detail_id: mcbd,
                },
            );
            Ok(())
        })?;
        c.writes.push(("crm.requisite.link.register".into(), t, id));
        Ok::<(), RestError>(())
    })?;
    lost_answer(ctx, "crm.requisite.link.register")?;
    Ok(json!(true).into())
}
