//! Payments of deals and new invoices (methods.md §1A, §11): `crm.item.payment.add/list`,
//! `crm.item.payment.product.add/list`, `salescenter.payment.getPublicUrl`. Business errors
//! carry code `0` and the text (payment/index.md); the URL method's own code is `200640400001`.
use serde_json::{json, Value};

use super::{int_param, lost_answer, param};
use crate::methods::{Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::auth::random_hex;
use crate::state::invoicing::{Payment, PaymentProduct};

pub(super) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "crm.item.payment.add" => payment_add,
        "crm.item.payment.list" => payment_list,
        "crm.item.payment.product.add" => product_add,
        "crm.item.payment.product.list" => product_list,
        "salescenter.payment.getpublicurl" => public_url,
        _ => return None,
    };
    Some(handler)
}

fn business(message: &str) -> RestError {
    RestError::bad_request("0", message)
}

fn required(params: &Value, name: &str) -> Result<i64, RestError> {
    match param(params, name) {
        Some(v) if !php::is_empty(v) => Ok(php::intval(v)),
        _ => Err(RestError::bad_request(
            "100",
            format!("Could not find value for parameter {{{name}}}"),
        )),
    }
}

/// Payments exist only for deals and new invoices (payment/index.md).
fn payment_owner(ctx: &Ctx<'_>, t: i64, id: i64) -> Result<(u64, u64), RestError> {
    if t != 2 && t != 31 {
        return Err(business("Invalid entity type"));
    }
    let key = (t as u64, id.max(0) as u64);
    ctx.portal.crm(|c| {
        if c.denied.contains(&key) {
            return Err(business("Access denied"));
        }
        if !c.items.contains_key(&key) {
            return Err(business(&format!(
                "Entity with identifier №{id} does not exist"
            )));
        }
        Ok(key)
    })
}

fn payment_add(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let id = required(&params, "entityId")?;
    let t = required(&params, "entityTypeId")?;
    let key = payment_owner(ctx, t, id)?;
    let pay_system = param(&params, "fields")
        .and_then(|f| f.get("paySystemId"))
        .map(php::intval)
        .unwrap_or(0);
    let payment_id = ctx.portal.crm(|c| {
        let item = c.render(key.0, key.1).unwrap_or(Value::Null);
        let number = php::to_string(item.get("accountNumber").unwrap_or(&Value::Null))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| key.1.to_string());
        let currency =
            php::to_string(item.get("currencyId").unwrap_or(&Value::Null)).unwrap_or_default();
        let payment_id = ctx.portal.invoicing(|inv| {
            let pay_system_id = match pay_system {
                n if n > 0 => n as u64,
                _ => inv.pay_systems.first().map(|s| s.id).unwrap_or(0),
            };
            let n = inv
                .payments
                .values()
                .filter(|p| (p.entity_type_id, p.entity_id) == key)
                .count()
                + 1;
            let id = inv.new_id("payment");
            // Created with sum 0; products added later raise it (payment.php).
            inv.payments.insert(
                id,
                Payment {
                    id,
                    entity_type_id: key.0,
                    entity_id: key.1,
                    account_number: format!("{number}/{n}"),
                    pay_system_id,
                    currency,
                    sum: 0.0,
                    products: Vec::new(),
                    access: random_hex(32),
                },
            );
            id
        });
        c.writes.push(("crm.item.payment.add".into(), key.0, key.1));
        payment_id
    });
    lost_answer(ctx, "crm.item.payment.add")?;
    Ok(json!(payment_id).into())
}

fn payment_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let id = required(&params, "entityId")?;
    let t = required(&params, "entityTypeId")?;
    let key = payment_owner(ctx, t, id)?;
    let list = ctx.portal.invoicing(|inv| {
        inv.payments
            .values()
            .filter(|p| (p.entity_type_id, p.entity_id) == key)
            .map(|p| inv.render_payment(p))
            .collect::<Vec<_>>()
    });
    Ok(json!(list).into())
}

fn product_add(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let payment_id = required(&params, "paymentId")?.max(0) as u64;
    let row_id = required(&params, "rowId")?.max(0) as u64;
    let quantity = param(&params, "quantity")
        .and_then(|q| match q {
            Value::Number(n) => n.as_f64(),
            other => php::to_string(other).and_then(|s| s.trim().parse().ok()),
        })
        .ok_or_else(|| {
            RestError::bad_request("100", "Could not find value for parameter {quantity}")
        })?;
    let owner = ctx
        .portal
        .invoicing(|inv| {
            inv.payments
                .get(&payment_id)
                .map(|p| (p.entity_type_id, p.entity_id))
        })
        .ok_or_else(|| business("Payment has not been found"))?;
    let key = payment_owner(ctx, owner.0 as i64, owner.1 as i64)?;
    let id = ctx.portal.crm(|c| {
        let id = ctx.portal.invoicing(|inv| {
            let row = inv
                .rows
                .get(&key)
                .and_then(|rows| rows.iter().find(|r| r["id"] == json!(row_id)))
                .cloned()
                .ok_or_else(|| business("Product item has not been found"))?;
            if quantity <= 0.0 {
                return Err(business(
                    "Product quantity cannot be less than or equal to 0",
                ));
            }
            let taken: f64 = inv
                .payments
                .values()
                .filter(|p| (p.entity_type_id, p.entity_id) == key)
                .flat_map(|p| p.products.iter())
                .filter(|pp| pp.row_id == row_id)
                .map(|pp| pp.quantity)
                .sum();
            if taken + quantity > row["quantity"].as_f64().unwrap_or(0.0) + 1e-9 {
                return Err(business("Insufficient product quantity to add to payment"));
            }
            let id = inv.new_id("payment_product");
            let price = row["price"].as_f64().unwrap_or(0.0);
            if let Some(p) = inv.payments.get_mut(&payment_id) {
                p.products.push(PaymentProduct {
                    id,
                    row_id,
                    quantity,
                });
                p.sum += price * quantity;
            }
            Ok(id)
        })?;
        c.writes
            .push(("crm.item.payment.product.add".into(), key.0, key.1));
        Ok::<u64, RestError>(id)
    })?;
    lost_answer(ctx, "crm.item.payment.product.add")?;
    Ok(json!(id).into())
}

fn product_list(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let payment_id = required(&params, "paymentId")?.max(0) as u64;
    let payment = ctx
        .portal
        .invoicing(|inv| inv.payments.get(&payment_id).cloned())
        .ok_or_else(|| business("Payment has not been found"))?;
    payment_owner(ctx, payment.entity_type_id as i64, payment.entity_id as i64)?;
    let list: Vec<Value> = payment
        .products
        .iter()
        .map(|pp| json!({"id": pp.id, "rowId": pp.row_id, "quantity": pp.quantity}))
        .collect();
    Ok(json!(list).into())
}

fn public_url(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let id = int_param(&params, "id");
    if id <= 0 {
        return Err(RestError::bad_request(
            "100",
            "Could not find value for parameter {id}",
        ));
    }
    let payment = ctx
        .portal
        .invoicing(|inv| inv.payments.get(&(id as u64)).cloned())
        .ok_or_else(|| RestError::bad_request("200640400001", "payment is not exists"))?;
    let base = ctx.portal.base_url();
    Ok(json!({ "payment": {
        "url": format!("{base}/pub/site/10/payment/?orderId={}&access={}&paymentId={}", payment.entity_id, payment.access, payment.id),
        "shortUrl": format!("{base}/~{}", &payment.access[..5]),
        "qr": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAcCBlCwAAAABJRU5ErkJggg==",
    }})
    .into())
}
