//! The new invoice (type 31) in one linked `halt` batch (methods.md §1A step 3): create,
//! set the rows, link the requisites, create the payment with its products, read the
//! public payment URL and the number.
use b24flow_common::bitrix::{Batch, BatchResult};
use serde_json::{json, Map, Value};

use crate::activity::{ActivityError, RunContext};
use crate::crm::{id_of, portal_error, text_of};
use crate::once::Found;
use crate::schema::Text;
use crate::text;

use super::read::Source;
use super::{Created, Earlier};

/// Commands per batch (protocol.md §6.5).
const MAX_COMMANDS: usize = 50;

const INV: &str = "$result[inv][item][id]";

/// The batch keys written before the per-row payment products.
const FIXED_COMMANDS: usize = 6;

pub fn invoice_fields(src: &Source, xml_id: &str) -> Map<String, Value> {
    let mut f = src.copied_fields.clone();
    let title = text_of(src.deal.get("title"));
    f.insert(
        "title".into(),
        json!(if title.is_empty() {
            format!("Invoice for deal {}", src.deal_id)
        } else {
            title
        }),
    );
    f.insert("parentId2".into(), json!(src.deal_id));
    f.insert("xmlId".into(), json!(xml_id));
    if let Some(c) = src.company_id {
        f.insert("companyId".into(), json!(c));
    }
    if !src.contact_ids.is_empty() {
        f.insert("contactIds".into(), json!(src.contact_ids));
    }
    if let Some(my) = src.my_company_id {
        f.insert("mycompanyId".into(), json!(my));
    }
    for key in ["currencyId", "assignedById"] {
        if let Some(v) = src.deal.get(key).filter(|v| !v.is_null()) {
            f.insert(key.into(), v.clone());
        }
    }
    f
}

/// A deal row as an invoice row (the fields `crm.item.productrow.set` takes).
fn invoice_row(row: &Value) -> Value {
    let mut out = Map::new();
    for key in [
        "productId",
        "productName",
        "price",
        "quantity",
        "discountTypeId",
        "discountRate",
        "discountSum",
        "taxRate",
        "taxIncluded",
        "measureCode",
        "measureName",
        "sort",
    ] {
        if let Some(v) = row.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// Creates the invoice, or completes `existing` (one an interrupted attempt created: rows are
/// replaced and the link re-registered, both idempotent; it has no payment yet).
pub async fn create(
    ctx: &RunContext,
    src: &Source,
    pay_system: u64,
    xml_id: &str,
    existing: Option<u64>,
) -> Result<Created, ActivityError> {
    let rows: Vec<Value> = src.rows.iter().map(invoice_row).collect();
    let inv = existing.map_or_else(|| INV.to_string(), |id| id.to_string());
    let inv = inv.as_str();
    let mut batch = Batch::new(true);
    if existing.is_none() {
        batch.push(
            "inv",
            "crm.item.add",
            &json!({ "entityTypeId": 31, "fields": invoice_fields(src, xml_id) }),
        );
    }
    batch.push(
        "rows",
        "crm.item.productrow.set",
        &json!({ "ownerType": "SI", "ownerId": inv, "productRows": rows }),
    );
    if src.client.requisite_id > 0 || src.my.requisite_id > 0 {
        batch.push(
            "link",
            "crm.requisite.link.register",
            &json!({ "fields": {
                "ENTITY_TYPE_ID": 31, "ENTITY_ID": inv,
                "REQUISITE_ID": src.client.requisite_id, "BANK_DETAIL_ID": src.client.bank_detail_id,
                "MC_REQUISITE_ID": src.my.requisite_id, "MC_BANK_DETAIL_ID": src.my.bank_detail_id,
            } }),
        );
    }
    batch.push(
        "pay",
        "crm.item.payment.add",
        &json!({ "entityTypeId": 31, "entityId": inv, "fields": { "paySystemId": pay_system } }),
    );
    // Rows beyond what fits go into follow-up batches; the URL and number come last.
    let in_first = rows.len().min(MAX_COMMANDS - FIXED_COMMANDS);
    for (i, row) in rows.iter().enumerate().take(in_first) {
        push_payment_product(&mut batch, i, row, "$result[pay]");
    }
    let mut later = Vec::new();
    if in_first == rows.len() {
        push_reads(&mut batch, inv, "$result[pay]");
    } else {
        later = rows.iter().enumerate().skip(in_first).collect();
    }
    let answer = ctx
        .b24
        .batch(&batch)
        .await
        .map_err(|e| portal_error(no_invoice_created(), e))?;
    let invoice_id = match (existing, answer.get("inv")) {
        (Some(id), _) => id,
        (None, Ok(inv)) => id_of(inv.get("item").and_then(|i| i.get("id"))).ok_or_else(|| {
            ActivityError::invalid(text!(
                "crm.item.add answered no invoice ID",
                "crm.item.add не вернул ID счёта"
            ))
        })?,
        (None, Err(e)) => return Err(portal_error(no_invoice_created(), e)),
    };
    let incomplete = |e| Incomplete(invoice_id, e);
    // After the invoice exists every failure says so: it is not created again.
    for key in ["rows", "link", "pay"] {
        if answer.results.contains_key(key) || answer.errors.contains_key(key) {
            answer
                .get(key)
                .map_err(|e| incomplete(portal_error(key, e)))?;
        }
    }
    let payment_id = answer
        .get("pay")
        .ok()
        .and_then(|p| id_of(Some(p)))
        .ok_or_else(|| {
            incomplete(ActivityError::invalid(
                "crm.item.payment.add answered no payment ID",
            ))
        })?;
    let answer = if later.is_empty() {
        answer
    } else {
        let row_ids: Vec<u64> = answer
            .get("rows")
            .ok()
            .and_then(|r| r.get("productRows"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| id_of(r.get("id")))
            .collect();
        add_remaining(ctx, invoice_id, payment_id, &later, &row_ids).await?
    };
    let check = |key: &str| {
        answer
            .get(key)
            .map_err(|e| incomplete(portal_error(key, e)))
    };
    for i in 0..in_first {
        check(&format!("pp{i}"))?;
    }
    let url = check("url")?;
    let number = check("get")?;
    Ok(Created {
        invoice_id,
        payment_url: text_of(url.get("payment").and_then(|p| p.get("url"))),
        invoice_number: text_of(number.get("item").and_then(|i| i.get("accountNumber"))),
    })
}

/// An error after the invoice was created, carrying its ID. It keeps its kind: a retry
/// finds the invoice by its marker and finishes it (`find_earlier`) instead of creating one.
pub struct Incomplete(pub u64, pub ActivityError);

impl From<Incomplete> for ActivityError {
    fn from(Incomplete(id, e): Incomplete) -> Self {
        ActivityError {
            kind: e.kind,
            message: Text {
                en: format!(
                    "invoice {id} was created but is incomplete ({}); it is not created again",
                    e.message.en
                ),
                ru: format!(
                    "счёт {id} создан, но оформлен не полностью ({}); повторно он не создаётся",
                    e.message.ru
                ),
            },
        }
    }
}

fn push_payment_product(batch: &mut Batch, i: usize, row: &Value, payment: &str) {
    batch.push(
        &format!("pp{i}"),
        "crm.item.payment.product.add",
        &json!({
            "paymentId": payment,
            "rowId": format!("$result[rows][productRows][{i}][id]"),
            "quantity": row.get("quantity").cloned().unwrap_or(json!(1)),
        }),
    );
}

fn push_reads(batch: &mut Batch, invoice: &str, payment: &str) {
    batch.push(
        "url",
        "salescenter.payment.getPublicUrl",
        &json!({ "id": payment }),
    );
    batch.push(
        "get",
        "crm.item.get",
        &json!({ "entityTypeId": 31, "id": invoice }),
    );
}

/// Payment products for rows past the first batch, then the URL and the number.
async fn add_remaining(
    ctx: &RunContext,
    invoice_id: u64,
    payment_id: u64,
    rows: &[(usize, &Value)],
    row_ids: &[u64],
) -> Result<BatchResult, ActivityError> {
    let chunks: Vec<&[(usize, &Value)]> = rows.chunks(MAX_COMMANDS - 2).collect();
    let mut last = BatchResult::default();
    for (n, chunk) in chunks.iter().enumerate() {
        let mut batch = Batch::new(true);
        for (i, row) in chunk.iter() {
            let row_id = row_ids.get(*i).copied().unwrap_or(0);
            batch.push(
                &format!("pp{i}"),
                "crm.item.payment.product.add",
                &json!({ "paymentId": payment_id, "rowId": row_id, "quantity": row.get("quantity").cloned().unwrap_or(json!(1)) }),
            );
        }
        if n + 1 == chunks.len() {
            push_reads(&mut batch, &invoice_id.to_string(), &payment_id.to_string());
        }
        let answer = ctx.b24.batch(&batch).await.map_err(|e| {
            ActivityError::from(Incomplete(invoice_id, portal_error("payment products", e)))
        })?;
        for (i, _) in chunk.iter() {
            answer.get(&format!("pp{i}")).map_err(|e| {
                ActivityError::from(Incomplete(invoice_id, portal_error("payment product", e)))
            })?;
        }
        last = answer;
    }
    Ok(last)
}

/// The invoice an interrupted attempt may have created, found by its `xmlId`: complete
/// (it has a payment: its link and number), or still without a payment.
pub async fn find_earlier(ctx: &RunContext, xml_id: &str) -> Result<Earlier, ActivityError> {
    let mut batch = Batch::new(false);
    batch.push(
        "found",
        "crm.item.list",
        &json!({ "entityTypeId": 31, "filter": { "=xmlId": xml_id }, "select": ["id"] }),
    );
    batch.push(
        "pays",
        "crm.item.payment.list",
        &json!({ "entityTypeId": 31, "entityId": "$result[found][items][0][id]" }),
    );
    batch.push(
        "url",
        "salescenter.payment.getPublicUrl",
        &json!({ "id": "$result[pays][0][id]" }),
    );
    batch.push(
        "get",
        "crm.item.get",
        &json!({ "entityTypeId": 31, "id": "$result[found][items][0][id]" }),
    );
    // An answer lost among the payment products leaves some rows unpaid.
    batch.push(
        "rows",
        "crm.item.productrow.list",
        &json!({ "filter": { "=ownerType": "SI", "=ownerId": "$result[found][items][0][id]" } }),
    );
    batch.push(
        "paid",
        "crm.item.payment.product.list",
        &json!({ "paymentId": "$result[pays][0][id]" }),
    );
    let context = text!(
        "cannot check for an invoice of an earlier attempt",
        "не удалось проверить, создала ли счёт предыдущая попытка"
    );
    let answer = ctx
        .b24
        .batch(&batch)
        .await
        .map_err(|e| portal_error(context.clone(), e))?;
    let found = answer
        .get("found")
        .map_err(|e| portal_error(context.clone(), e))?;
    let Some(invoice_id) = found
        .get("items")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .and_then(|i| id_of(i.get("id")))
    else {
        return Ok(Found::Nothing);
    };
    let paid = answer
        .get("pays")
        .map_err(|e| portal_error(context.clone(), e))?
        .as_array()
        .is_some_and(|p| !p.is_empty());
    if !paid {
        return Ok(Found::Partly(invoice_id));
    }
    let list = |key: &str| {
        answer
            .get(key)
            .map(|v| {
                v.get("productRows")
                    .unwrap_or(v)
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map_err(|e| portal_error(context.clone(), e))
    };
    let (rows, paid_rows) = (list("rows")?, list("paid")?);
    let row_ids: Vec<u64> = rows.iter().filter_map(|r| id_of(r.get("id"))).collect();
    let unpaid: Vec<(usize, &Value)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            !paid_rows
                .iter()
                .any(|p| id_of(p.get("rowId")) == id_of(r.get("id")))
        })
        .collect();
    let answer = if unpaid.is_empty() {
        answer
    } else {
        let payment_id = answer
            .get("pays")
            .ok()
            .and_then(|p| p.get(0))
            .and_then(|p| id_of(p.get("id")))
            .unwrap_or(0);
        add_remaining(ctx, invoice_id, payment_id, &unpaid, &row_ids).await?
    };
    let url = answer
        .get("url")
        .map_err(|e| portal_error(context.clone(), e))?;
    let get = answer
        .get("get")
        .map_err(|e| portal_error(context.clone(), e))?;
    Ok(Found::Done(Created {
        invoice_id,
        payment_url: text_of(url.get("payment").and_then(|p| p.get("url"))),
        invoice_number: text_of(get.get("item").and_then(|i| i.get("accountNumber"))),
    }))
}

pub fn no_invoice_created() -> Text {
    text!("no invoice created", "счёт не создан")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activities::invoice_from_deal::read::Side;

    #[test]
    fn the_invoice_takes_the_deal_parties_and_the_marker() {
        let src = Source {
            deal_id: 812,
            deal: json!({"title": "Audit", "currencyId": "EUR", "assignedById": 5}),
            rows: vec![],
            company_id: Some(45),
            contact_ids: vec![7],
            my_company_id: Some(1),
            client: Side::default(),
            my: Side::default(),
            copied_fields: json!({"ufCrm_SMART_INVOICE_1": "C-1"})
                .as_object()
                .unwrap()
                .clone(),
            company: None,
            contact: None,
            person_types: vec![],
        };
        let f = invoice_fields(&src, "b24flow:x");
        assert_eq!(f["title"], "Audit");
        assert_eq!(f["parentId2"], 812);
        assert_eq!(f["companyId"], 45);
        assert_eq!(f["contactIds"], json!([7]));
        assert_eq!(f["mycompanyId"], 1);
        assert_eq!(f["currencyId"], "EUR");
        assert_eq!(f["xmlId"], "b24flow:x");
        assert_eq!(f["ufCrm_SMART_INVOICE_1"], "C-1");
        assert_eq!(
            invoice_row(
                &json!({"id": 3, "productName": "A", "price": 5, "quantity": 2, "ownerId": 812})
            ),
            json!({"productName": "A", "price": 5, "quantity": 2})
        );
    }
}
