//! The old invoice (deprecated `crm.invoice.*`, kept because the property asks for it,
//! methods.md §1B): one linked `halt` batch creates it with payer type, pay system, payer
//! properties and rows, links the requisites and reads the public link and the number.
use b24flow_common::bitrix::Batch;
use serde_json::{json, Map, Value};

use crate::activity::{ActivityError, RunContext};
use crate::crm::{id_of, portal_error, text_of};
use crate::once::Found;

use super::read::Source;
use super::smart::Incomplete;
use super::{Created, Earlier};

/// `PERSON_TYPE_ID` of the payer: `crm.persontype.list` names them `CRM_COMPANY` / `CRM_CONTACT`.
fn person_type(src: &Source) -> Result<u64, ActivityError> {
    let wanted = if src.payer_is_company() {
        "CRM_COMPANY"
    } else {
        "CRM_CONTACT"
    };
    src.person_types
        .iter()
        .find(|t| text_of(t.get("NAME")) == wanted)
        .and_then(|t| id_of(t.get("ID")))
        .ok_or_else(|| ActivityError::invalid(format!("the portal has no payer type {wanted}")))
}

/// The first multi-field value of a type (`fm` of `crm.item.get`), else the flat field.
fn first_fm(card: Option<&Value>, type_id: &str, flat: &str) -> String {
    let Some(card) = card else {
        return String::new();
    };
    card.get("fm")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| text_of(m.get("typeId")) == type_id)
        .map(|m| text_of(m.get("value")))
        .unwrap_or_else(|| text_of(card.get(flat)))
}

fn full_name(card: Option<&Value>) -> String {
    let Some(card) = card else {
        return String::new();
    };
    ["lastName", "name", "secondName"]
        .iter()
        .map(|k| text_of(card.get(*k)))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Payer properties (ACTIVITIES.md #1): with a company, its requisite (else card) names the
/// payer and the contact gives person, phone and e-mail; with only a contact, its own.
pub fn invoice_properties(src: &Source) -> Map<String, Value> {
    let rq = src.client.requisite.as_ref();
    let rq_text = |k: &str| rq.map(|r| text_of(r.get(k))).unwrap_or_default();
    let mut p = Map::new();
    let contact = src.contact.as_ref();
    if src.payer_is_company() {
        let company = src.company.as_ref();
        let name = Some(rq_text("RQ_COMPANY_NAME"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| company.map(|c| text_of(c.get("title"))).unwrap_or_default());
        let (phone_from, email_from) = if contact.is_some() {
            (contact, contact)
        } else {
            (company, company)
        };
        p.insert("COMPANY".into(), json!(name));
        p.insert("CONTACT_PERSON".into(), json!(full_name(contact)));
        p.insert(
            "PHONE".into(),
            json!(first_fm(phone_from, "PHONE", "phone")),
        );
        p.insert(
            "EMAIL".into(),
            json!(first_fm(email_from, "EMAIL", "email")),
        );
        p.insert("INN".into(), json!(rq_text("RQ_INN")));
        p.insert("KPP".into(), json!(rq_text("RQ_KPP")));
    } else {
        let rq_name = ["RQ_LAST_NAME", "RQ_FIRST_NAME", "RQ_SECOND_NAME"]
            .iter()
            .map(|k| rq_text(k))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let name = if rq_name.is_empty() {
            full_name(contact)
        } else {
            rq_name
        };
        p.insert("FIO".into(), json!(name));
        p.insert("PHONE".into(), json!(first_fm(contact, "PHONE", "phone")));
        p.insert("EMAIL".into(), json!(first_fm(contact, "EMAIL", "email")));
    }
    p.retain(|_, v| v.as_str().is_some_and(|s| !s.is_empty()));
    p
}

/// A deal row in the old invoice's shape (`VAT_RATE` is a fraction there, a percent on deals).
fn invoice_row(row: &Value) -> Value {
    let num = |k: &str| {
        row.get(k)
            .and_then(|v| v.as_f64().or_else(|| text_of(Some(v)).parse().ok()))
    };
    let mut r = json!({
        "ID": 0,
        "PRODUCT_ID": id_of(row.get("productId")).unwrap_or(0),
        "PRODUCT_NAME": text_of(row.get("productName")),
        "PRICE": num("price").unwrap_or(0.0),
        "QUANTITY": num("quantity").unwrap_or(1.0),
    });
    if let Some(rate) = num("taxRate") {
        r["VAT_RATE"] = json!(rate / 100.0);
        r["VAT_INCLUDED"] = json!(text_of(row.get("taxIncluded")));
    }
    if let Some(code) = row.get("measureCode").filter(|v| !v.is_null()) {
        r["MEASURE_CODE"] = code.clone();
        r["MEASURE_NAME"] = json!(text_of(row.get("measureName")));
    }
    r
}

pub fn invoice_fields(
    src: &Source,
    pay_system: u64,
    xml_id: &str,
) -> Result<Map<String, Value>, ActivityError> {
    let mut f = src.copied_fields.clone();
    let title = text_of(src.deal.get("title"));
    let topic = if title.is_empty() {
        format!("Invoice for deal {}", src.deal_id)
    } else {
        title
    };
    f.insert("ORDER_TOPIC".into(), json!(topic));
    f.insert("PERSON_TYPE_ID".into(), json!(person_type(src)?));
    f.insert("PAY_SYSTEM_ID".into(), json!(pay_system));
    f.insert("STATUS_ID".into(), json!("N"));
    f.insert("XML_ID".into(), json!(xml_id));
    f.insert("UF_DEAL_ID".into(), json!(src.deal_id));
    if let Some(c) = src.company_id {
        f.insert("UF_COMPANY_ID".into(), json!(c));
    }
    if let Some(c) = src.contact_ids.first() {
        f.insert("UF_CONTACT_ID".into(), json!(c));
    }
    if let Some(my) = src.my_company_id {
        f.insert("UF_MYCOMPANY_ID".into(), json!(my));
    }
    if let Some(user) = id_of(src.deal.get("assignedById")) {
        f.insert("RESPONSIBLE_ID".into(), json!(user));
    }
    f.insert(
        "INVOICE_PROPERTIES".into(),
        Value::Object(invoice_properties(src)),
    );
    f.insert(
        "PRODUCT_ROWS".into(),
        json!(src.rows.iter().map(invoice_row).collect::<Vec<_>>()),
    );
    Ok(f)
}

/// Creates the invoice, or finishes `existing` (link, public link, number).
pub async fn create(
    ctx: &RunContext,
    src: &Source,
    pay_system: u64,
    xml_id: &str,
    existing: Option<u64>,
) -> Result<Created, ActivityError> {
    let fields = invoice_fields(src, pay_system, xml_id)?;
    let inv = existing.map_or_else(|| "$result[inv]".to_string(), |id| id.to_string());
    let inv = inv.as_str();
    let mut batch = Batch::new(true);
    if existing.is_none() {
        batch.push("inv", "crm.invoice.add", &json!({ "fields": fields }));
    }
    if src.client.requisite_id > 0 || src.my.requisite_id > 0 {
        batch.push(
            "link",
            "crm.requisite.link.register",
            &json!({ "fields": {
                "ENTITY_TYPE_ID": 5, "ENTITY_ID": inv,
                "REQUISITE_ID": src.client.requisite_id, "BANK_DETAIL_ID": src.client.bank_detail_id,
                "MC_REQUISITE_ID": src.my.requisite_id, "MC_BANK_DETAIL_ID": src.my.bank_detail_id,
            } }),
        );
    }
    batch.push("url", "crm.invoice.getexternallink", &json!({ "id": inv }));
    batch.push("get", "crm.invoice.get", &json!({ "id": inv }));
    let answer = ctx
        .b24
        .batch(&batch)
        .await
        .map_err(|e| portal_error(super::smart::no_invoice_created(), e))?;
    let invoice_id = match (existing, answer.get("inv")) {
        (Some(id), _) => id,
        (None, Ok(id)) => id_of(Some(id)).ok_or_else(|| {
            ActivityError::invalid(crate::text!(
                "crm.invoice.add answered no invoice ID",
                "crm.invoice.add не вернул ID счёта"
            ))
        })?,
        (None, Err(e)) => return Err(portal_error(super::smart::no_invoice_created(), e)),
    };
    let step = |key: &str| {
        answer
            .get(key)
            .map_err(|e| ActivityError::from(Incomplete(invoice_id, portal_error(key, e))))
    };
    if src.client.requisite_id > 0 || src.my.requisite_id > 0 {
        step("link")?;
    }
    let url = step("url")?;
    let get = step("get")?;
    Ok(Created {
        invoice_id,
        payment_url: text_of(Some(url)),
        invoice_number: text_of(get.get("ACCOUNT_NUMBER")),
    })
}

/// The old invoice an interrupted attempt may have created, found by its `XML_ID`. It is
/// always finished again: `crm.invoice.add` wrote it whole, but the requisite link after it
/// may be missing, and registering it twice is harmless.
pub async fn find_earlier(ctx: &RunContext, xml_id: &str) -> Result<Earlier, ActivityError> {
    let answer = ctx
        .b24
        .call(
            "crm.invoice.list",
            json!({ "filter": { "XML_ID": xml_id }, "select": ["ID"] }),
        )
        .await
        .map_err(|e| {
            portal_error(
                crate::text!(
                    "cannot check for an invoice of an earlier attempt",
                    "не удалось проверить, создала ли счёт предыдущая попытка"
                ),
                e,
            )
        })?;
    Ok(answer
        .result
        .as_array()
        .and_then(|l| l.first())
        .and_then(|i| id_of(i.get("ID")))
        .map_or(Found::Nothing, Found::Partly))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activities::invoice_from_deal::read::Side;

    fn source(company: bool) -> Source {
        Source {
            deal_id: 812,
            deal: json!({"title": "Audit", "assignedById": 5}),
            rows: vec![
                json!({"productName": "A", "price": 100, "quantity": 2, "taxRate": 20, "taxIncluded": "Y"}),
            ],
            company_id: company.then_some(45),
            contact_ids: vec![7],
            my_company_id: Some(1),
            client: Side {
                requisite_id: 60,
                bank_detail_id: 0,
                requisite: Some(
                    json!({"RQ_COMPANY_NAME": "Acme GmbH", "RQ_INN": "123", "RQ_FIRST_NAME": "Eva", "RQ_LAST_NAME": "Lang"}),
                ),
            },
            my: Side::default(),
            copied_fields: Map::new(),
            company: Some(
                json!({"title": "Acme card", "fm": [{"typeId": "PHONE", "value": "+1"}]}),
            ),
            contact: Some(
                json!({"name": "Eva", "lastName": "Lang", "fm": [{"typeId": "EMAIL", "value": "eva@x.example"}, {"typeId": "PHONE", "value": "+49"}]}),
            ),
            person_types: vec![
                json!({"ID": "1", "NAME": "CRM_COMPANY"}),
                json!({"ID": "2", "NAME": "CRM_CONTACT"}),
            ],
        }
    }

    #[test]
    fn a_company_payer_takes_its_requisite_and_the_contact_person() {
        let f = invoice_fields(&source(true), 3, "m").unwrap();
        assert_eq!(f["PERSON_TYPE_ID"], 1);
        assert_eq!(f["PAY_SYSTEM_ID"], 3);
        let p = &f["INVOICE_PROPERTIES"];
        assert_eq!(p["COMPANY"], "Acme GmbH");
        assert_eq!(p["CONTACT_PERSON"], "Lang Eva");
        assert_eq!(p["EMAIL"], "eva@x.example");
        assert_eq!(p["PHONE"], "+49");
        assert_eq!(p["INN"], "123");
        assert!(p.get("KPP").is_none());
        assert_eq!(f["PRODUCT_ROWS"][0]["VAT_RATE"], json!(0.2));
    }

    #[test]
    fn a_contact_payer_takes_its_own_data() {
        let f = invoice_fields(&source(false), 4, "m").unwrap();
        assert_eq!(f["PERSON_TYPE_ID"], 2);
        assert_eq!(f["INVOICE_PROPERTIES"]["FIO"], "Lang Eva");
        assert!(f.get("UF_COMPANY_ID").is_none());
        assert_eq!(f["UF_CONTACT_ID"], 7);
    }
}
