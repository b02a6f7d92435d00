//! The reads before an invoice is created (methods.md §1A steps 1–2): one batch with the
//! deal, its rows, its requisite link and the field lists; a second one only when the deal
//! has no requisites chosen (first requisite and first bank detail by ID, chained in-batch).
use b24flow_common::bitrix::{Batch, BatchResult};
use serde_json::{json, Map, Value};

use crate::activity::{ActivityError, RunContext};

use crate::crm::{id_of, portal_error, text_of};
use crate::schema::Text;
use crate::text;

/// Which invoice API the run writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceKind {
    Smart,
    Legacy,
}

/// Everything the writes need.
pub struct Source {
    pub deal_id: u64,
    pub deal: Value,
    pub rows: Vec<Value>,
    pub company_id: Option<u64>,
    pub contact_ids: Vec<u64>,
    pub my_company_id: Option<u64>,
    pub client: Side,
    pub my: Side,
    /// Deal user-field values for the invoice's fields of the same name and type.
    pub copied_fields: Map<String, Value>,
    /// Legacy only: the company and contact cards and the payer types.
    pub company: Option<Value>,
    pub contact: Option<Value>,
    pub person_types: Vec<Value>,
}

/// A party's requisite and bank detail (0 = none) and the requisite's data.
#[derive(Default)]
pub struct Side {
    pub requisite_id: u64,
    pub bank_detail_id: u64,
    pub requisite: Option<Value>,
}

impl Source {
    /// The payer is the company when the deal has one, else its contact.
    pub fn payer_is_company(&self) -> bool {
        self.company_id.is_some()
    }
}

pub async fn read(
    ctx: &RunContext,
    deal_id: u64,
    configured_my_company: Option<u64>,
    kind: InvoiceKind,
) -> Result<Source, ActivityError> {
    let mut batch = Batch::new(false);
    batch.push(
        "deal",
        "crm.item.get",
        &json!({ "entityTypeId": 2, "id": deal_id }),
    );
    batch.push(
        "rows",
        "crm.item.productrow.list",
        &json!({ "filter": { "=ownerType": "D", "=ownerId": deal_id } }),
    );
    batch.push(
        "dlink",
        "crm.requisite.link.get",
        &json!({ "entityTypeId": 2, "entityId": deal_id }),
    );
    // Fail harmlessly (ID 0 or an unresolved reference) when the deal has no link.
    batch.push(
        "crq",
        "crm.requisite.get",
        &json!({ "id": "$result[dlink][REQUISITE_ID]" }),
    );
    batch.push(
        "mcrq",
        "crm.requisite.get",
        &json!({ "id": "$result[dlink][MC_REQUISITE_ID]" }),
    );
    if configured_my_company.is_none() {
        batch.push(
            "my",
            "crm.item.list",
            &json!({ "entityTypeId": 4, "filter": { "isMyCompany": "Y" }, "order": { "id": "ASC" }, "select": ["id"] }),
        );
    }
    batch.push("dfields", "crm.item.fields", &json!({ "entityTypeId": 2 }));
    match kind {
        InvoiceKind::Smart => {
            batch.push("ifields", "crm.item.fields", &json!({ "entityTypeId": 31 }))
        }
        InvoiceKind::Legacy => batch.push("ifields", "crm.invoice.fields", &json!({})),
    };
    if kind == InvoiceKind::Legacy {
        batch.push(
            "company",
            "crm.item.get",
            &json!({ "entityTypeId": 4, "id": "$result[deal][item][companyId]" }),
        );
        batch.push(
            "contact",
            "crm.item.get",
            &json!({ "entityTypeId": 3, "id": "$result[deal][item][contactId]" }),
        );
        batch.push("persontypes", "crm.persontype.list", &json!({}));
    }
    let r1 = ctx
        .b24
        .batch(&batch)
        .await
        .map_err(|e| portal_error(deal_not_read(deal_id), e))?;
    let deal = r1
        .get("deal")
        .map_err(|e| portal_error(deal_not_read(deal_id), e))?
        .get("item")
        .cloned()
        .unwrap_or(Value::Null);
    let rows: Vec<Value> = r1
        .get("rows")
        .map_err(|e| {
            portal_error(
                text!(
                    "the products of deal {deal_id} were not read",
                    "товары сделки {deal_id} не прочитаны"
                ),
                e,
            )
        })?
        .get("productRows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        return Err(ActivityError::invalid(text!(
            "deal {deal_id} has no products: no invoice created",
            "в сделке {deal_id} нет товаров: счёт не создан"
        )));
    }
    let company_id = id_of(deal.get("companyId"));
    let mut contact_ids: Vec<u64> = deal
        .get("contactIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| id_of(Some(v)))
        .collect();
    if contact_ids.is_empty() {
        contact_ids.extend(id_of(deal.get("contactId")));
    }
    if company_id.is_none() && contact_ids.is_empty() {
        return Err(ActivityError::invalid(text!(
            "deal {deal_id} has neither a company nor a contact: no invoice created",
            "в сделке {deal_id} нет ни компании, ни контакта: счёт не создан"
        )));
    }
    if kind == InvoiceKind::Legacy {
        let types = r1.get("persontypes").map_err(|e| {
            portal_error(
                text!(
                    "payer types were not read",
                    "типы плательщиков не прочитаны"
                ),
                e,
            )
        })?;
        if types.as_array().is_none_or(|t| t.is_empty()) {
            return Err(ActivityError::invalid(text!(
                "the portal has no payer types for old invoices",
                "на портале нет типов плательщиков для старых счетов"
            )));
        }
    }

    let link = r1.get("dlink").ok().cloned().unwrap_or(Value::Null);
    let mut client = chosen(&link, "REQUISITE_ID", "BANK_DETAIL_ID", r1.get("crq").ok());
    let mc_requisite = r1
        .get("mcrq")
        .ok()
        .filter(|_| id_of(link.get("MC_REQUISITE_ID")).is_some());
    let mc_owner = mc_requisite
        .filter(|rq| id_of(rq.get("ENTITY_TYPE_ID")) == Some(4))
        .and_then(|rq| id_of(rq.get("ENTITY_ID")));
    // The deal's chosen seller requisite wins unless it belongs to another configured company.
    let (my_company_id, mut my) = match (configured_my_company, mc_owner) {
        (Some(c), Some(owner)) if c == owner => (
            Some(c),
            chosen(&link, "MC_REQUISITE_ID", "MC_BANK_DETAIL_ID", mc_requisite),
        ),
        (Some(c), _) => (Some(c), Side::default()),
        (None, Some(owner)) => (
            Some(owner),
            chosen(&link, "MC_REQUISITE_ID", "MC_BANK_DETAIL_ID", mc_requisite),
        ),
        (None, None) => (first_my_company(&r1), Side::default()),
    };

    let client_entity = match company_id {
        Some(c) => (4, c),
        None => (3, contact_ids[0]),
    };
    let my_entity = my_company_id.map(|c| (4, c));
    let need_client = client.requisite_id == 0;
    let need_my = my.requisite_id == 0 && my_entity.is_some();
    if need_client || need_my {
        let mut batch = Batch::new(false);
        if need_client {
            push_requisite_lookup(&mut batch, "client", client_entity);
        }
        if let (true, Some(entity)) = (need_my, my_entity) {
            push_requisite_lookup(&mut batch, "my", entity);
        }
        let r2 = ctx.b24.batch(&batch).await.map_err(|e| {
            portal_error(
                text!("requisites were not read", "реквизиты не прочитаны"),
                e,
            )
        })?;
        if need_client {
            client = first_requisite(&r2, "client");
        }
        if need_my {
            my = first_requisite(&r2, "my");
        }
    }

    let copied_fields = copied_fields(&deal, r1.get("dfields").ok(), r1.get("ifields").ok());
    let card = |key: &str| r1.get(key).ok().and_then(|v| v.get("item")).cloned();
    Ok(Source {
        deal_id,
        rows,
        company_id,
        contact_ids,
        my_company_id,
        client,
        my,
        copied_fields,
        company: if kind == InvoiceKind::Legacy {
            card("company")
        } else {
            None
        },
        contact: if kind == InvoiceKind::Legacy {
            card("contact")
        } else {
            None
        },
        person_types: r1
            .get("persontypes")
            .ok()
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        deal,
    })
}

fn chosen(link: &Value, rq_key: &str, bd_key: &str, requisite: Option<&Value>) -> Side {
    match id_of(link.get(rq_key)) {
        Some(rq) => Side {
            requisite_id: rq,
            bank_detail_id: id_of(link.get(bd_key)).unwrap_or(0),
            requisite: requisite.cloned(),
        },
        None => Side::default(),
    }
}

fn first_my_company(r1: &BatchResult) -> Option<u64> {
    r1.get("my")
        .ok()?
        .get("items")?
        .as_array()?
        .first()
        .and_then(|c| id_of(c.get("id")))
}

/// The party's first requisite and that requisite's first bank detail, in one round trip:
/// the bank-detail read takes the requisite's ID by reference.
fn push_requisite_lookup(batch: &mut Batch, side: &str, (entity_type, entity_id): (u8, u64)) {
    batch.push(
        &format!("rq_{side}"),
        "crm.requisite.list",
        &json!({ "filter": { "ENTITY_TYPE_ID": entity_type, "ENTITY_ID": entity_id }, "order": { "ID": "ASC" } }),
    );
    batch.push(
        &format!("bd_{side}"),
        "crm.requisite.bankdetail.list",
        &json!({ "filter": { "ENTITY_ID": format!("$result[rq_{side}][0][ID]") }, "order": { "ID": "ASC" } }),
    );
}

fn first_requisite(r2: &BatchResult, side: &str) -> Side {
    let first = |key: String| {
        r2.get(&key)
            .ok()
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .cloned()
    };
    let Some(requisite) = first(format!("rq_{side}")) else {
        return Side::default();
    };
    let requisite_id = id_of(requisite.get("ID")).unwrap_or(0);
    let bank_detail_id = first(format!("bd_{side}"))
        .filter(|bd| id_of(bd.get("ENTITY_ID")) == Some(requisite_id))
        .and_then(|bd| id_of(bd.get("ID")))
        .unwrap_or(0);
    Side {
        requisite_id,
        bank_detail_id,
        requisite: Some(requisite),
    }
}

/// A field's label: `crm.item.fields` has `title`; the legacy lists keep the code in `title`
/// and the label in `formLabel`/`listLabel`.
fn label(f: &Value) -> String {
    ["formLabel", "listLabel", "title"]
        .iter()
        .map(|k| text_of(f.get(*k)))
        .find(|s| !s.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

fn is_user_field(name: &str, f: &Value) -> bool {
    f.get("isDynamic").and_then(Value::as_bool) == Some(true)
        || name.starts_with("ufCrm")
        || (name.starts_with("UF_CRM") && !name.starts_with("UF_CRM_SYS"))
}

/// Deal user fields whose label and type match an invoice user field (ACTIVITIES.md #1, new).
pub fn copied_fields(
    deal: &Value,
    deal_fields: Option<&Value>,
    invoice_fields: Option<&Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let (Some(Value::Object(df)), Some(Value::Object(inv))) = (
        deal_fields.and_then(|f| f.get("fields")).or(deal_fields),
        invoice_fields
            .and_then(|f| f.get("fields"))
            .or(invoice_fields),
    ) else {
        return out;
    };
    for (dname, dfield) in df.iter().filter(|(n, f)| is_user_field(n, f)) {
        let Some(value) = deal.get(dname).filter(|v| !is_empty(v)) else {
            continue;
        };
        let dlabel = label(dfield);
        if dlabel.is_empty() {
            continue;
        }
        let found = inv.iter().find(|(iname, ifield)| {
            is_user_field(iname, ifield)
                && label(ifield) == dlabel
                && text_of(ifield.get("type")) == text_of(dfield.get("type"))
        });
        if let Some((iname, _)) = found {
            out.insert(iname.clone(), value.clone());
        }
    }
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn deal_not_read(deal_id: u64) -> Text {
    text!(
        "deal {deal_id} was not read",
        "сделка {deal_id} не прочитана"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_fields_are_copied_by_label_and_type() {
        let deal = json!({"ufCrm1": "C-17", "ufCrm2": "x", "ufCrm3": "", "title": "T"});
        let dfields = json!({"fields": {
            "ufCrm1": {"type": "string", "title": "Contract", "isDynamic": true},
            "ufCrm2": {"type": "string", "title": "Other", "isDynamic": true},
            "ufCrm3": {"type": "string", "title": "Empty", "isDynamic": true},
            "title": {"type": "string", "title": "Contract"}
        }});
        let smart = json!({"fields": {
            "ufCrm_SMART_INVOICE_9": {"type": "string", "title": "contract ", "isDynamic": true},
            "ufCrm_SMART_INVOICE_8": {"type": "string", "title": "Empty", "isDynamic": true}
        }});
        let copied = copied_fields(&deal, Some(&dfields), Some(&smart));
        assert_eq!(
            copied,
            json!({"ufCrm_SMART_INVOICE_9": "C-17"})
                .as_object()
                .unwrap()
                .clone()
        );
        let legacy = json!({
            "UF_CRM_5": {"type": "string", "title": "UF_CRM_5", "formLabel": "Contract"},
            "UF_DEAL_ID": {"type": "integer", "title": "Deal"}
        });
        let copied = copied_fields(&deal, Some(&dfields), Some(&legacy));
        assert_eq!(
            copied,
            json!({"UF_CRM_5": "C-17"}).as_object().unwrap().clone()
        );
    }
}
