//! The invoicing side of a portal's CRM (methods.md §1, §11): product rows, requisites with
//! bank details and their links to deals and invoices, payments of new invoices, old invoices
//! with payer types and pay systems, and user fields. New invoices themselves are CRM items of
//! type 31 in the CRM area. One per portal, in its `Areas`. Lock order: the CRM area may be
//! held when this is taken, never the other way round.
use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::crm::{Category, Crm};

/// The default pipeline of new invoices; live portals number it like any category.
pub(crate) const SMART_INVOICE_CATEGORY: u64 = 2;

/// Every portal has new-invoice stages and old-invoice statuses; the CRM area is created
/// without them, so the invoice methods add them on first use.
pub(crate) fn ensure_invoice_dictionaries(c: &mut Crm) {
    if c.categories.iter().any(|k| k.entity_type_id == 31) {
        return;
    }
    c.categories.push(Category {
        entity_type_id: 31,
        id: SMART_INVOICE_CATEGORY,
        name: "General".into(),
    });
    let entity = format!("SMART_INVOICE_STAGE_{SMART_INVOICE_CATEGORY}");
    let stages: [(&str, &str, Option<&'static str>); 4] = [
        ("N", "New", None),
        ("S", "Sent to client", None),
        ("P", "Paid", Some("S")),
        ("D", "Declined", Some("F")),
    ];
    for (i, (code, name, semantics)) in stages.iter().enumerate() {
        let status = format!("DT31_{SMART_INVOICE_CATEGORY}:{code}");
        let sort = (i as u64 + 1) * 10;
        c.add_status(
            &entity,
            &status,
            name,
            sort,
            *semantics,
            Some(SMART_INVOICE_CATEGORY),
        );
        c.add_status("INVOICE_STATUS", code, name, sort, *semantics, None);
    }
}

pub(crate) fn smart_stage_entity(category: u64) -> String {
    format!("SMART_INVOICE_STAGE_{category}")
}

#[derive(Clone, Debug)]
pub(crate) struct Requisite {
    pub id: u64,
    pub entity_type_id: u64,
    pub entity_id: u64,
    /// `NAME`, `PRESET_ID`, `RQ_*`… as given.
    pub fields: Map<String, Value>,
}

#[derive(Clone, Debug)]
pub(crate) struct BankDetail {
    pub id: u64,
    pub requisite_id: u64,
    pub fields: Map<String, Value>,
}

/// The requisites chosen for a deal or an invoice; 0 = none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Link {
    pub requisite_id: u64,
    pub bank_detail_id: u64,
    pub mc_requisite_id: u64,
    pub mc_bank_detail_id: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct PaymentProduct {
    pub id: u64,
    pub row_id: u64,
    pub quantity: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Payment {
    pub id: u64,
    pub entity_type_id: u64,
    pub entity_id: u64,
    pub account_number: String,
    pub pay_system_id: u64,
    pub currency: String,
    pub sum: f64,
    pub products: Vec<PaymentProduct>,
    pub access: String,
}

#[derive(Clone, Debug)]
pub(crate) struct PaySystem {
    pub id: u64,
    pub name: String,
    pub person_type_id: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct UserField {
    /// As the entity's API names it: `ufCrm_…` for `crm.item`, `UF_CRM_…` for old invoices.
    pub name: String,
    pub type_id: String,
    pub label: String,
}

pub(crate) struct Invoicing {
    counters: HashMap<&'static str, u64>,
    pub requisites: BTreeMap<u64, Requisite>,
    pub bank_details: BTreeMap<u64, BankDetail>,
    /// (entity type, entity id) → link.
    pub links: BTreeMap<(u64, u64), Link>,
    /// (entity type, owner id) → rows as `crm.item.productrow.list` shows them.
    pub rows: BTreeMap<(u64, u64), Vec<Map<String, Value>>>,
    pub payments: BTreeMap<u64, Payment>,
    /// Old invoices, UPPER_CASE fields as `crm.invoice.get` shows them.
    pub legacy: BTreeMap<u64, Map<String, Value>>,
    /// (ID, NAME) as `crm.persontype.list` names them.
    pub person_types: Vec<(u64, &'static str)>,
    pub pay_systems: Vec<PaySystem>,
    /// entity type → its user fields (5 = old invoices).
    pub user_fields: BTreeMap<u64, Vec<UserField>>,
    /// Entity types the caller may not create.
    pub create_denied: HashSet<u64>,
    /// No "read CRM settings" permission (payer types, pay systems).
    pub settings_denied: bool,
    /// The numerator's prefix of invoice numbers (`accountNumber`, `ACCOUNT_NUMBER`).
    pub number_prefix: String,
}

impl Invoicing {
    pub(crate) fn new() -> Self {
        Invoicing {
            counters: HashMap::new(),
            requisites: BTreeMap::new(),
            bank_details: BTreeMap::new(),
            links: BTreeMap::new(),
            rows: BTreeMap::new(),
            payments: BTreeMap::new(),
            legacy: BTreeMap::new(),
            person_types: vec![(1, "CRM_COMPANY"), (2, "CRM_CONTACT")],
            pay_systems: vec![
                PaySystem {
                    id: 1,
                    name: "Bank transfer".into(),
                    person_type_id: 1,
                },
                PaySystem {
                    id: 2,
                    name: "Card payment".into(),
                    person_type_id: 2,
                },
                PaySystem {
                    id: 3,
                    name: "Cash".into(),
                    person_type_id: 2,
                },
            ],
            user_fields: BTreeMap::new(),
            create_denied: HashSet::new(),
            settings_denied: false,
            number_prefix: "INV-".into(),
        }
    }

    /// IDs per kind, from 1 (rows start high, as on live portals, so they never look
    /// like the owner's ID).
    pub fn new_id(&mut self, kind: &'static str) -> u64 {
        let start = if kind == "row" { 1001 } else { 1 };
        let next = self.counters.entry(kind).or_insert(start);
        let id = *next;
        *next += 1;
        id
    }

    pub fn render_requisite(r: &Requisite) -> Value {
        let mut out = r.fields.clone();
        out.insert("ID".into(), json!(r.id.to_string()));
        out.insert("ENTITY_TYPE_ID".into(), json!(r.entity_type_id.to_string()));
        out.insert("ENTITY_ID".into(), json!(r.entity_id.to_string()));
        out.entry("PRESET_ID").or_insert(json!("1"));
        out.entry("NAME").or_insert(json!("Organization"));
        out.entry("ACTIVE").or_insert(json!("Y"));
        out.entry("SORT").or_insert(json!("500"));
        Value::Object(out)
    }

    pub fn render_bank_detail(b: &BankDetail) -> Value {
        let mut out = b.fields.clone();
        out.insert("ID".into(), json!(b.id.to_string()));
        out.insert("ENTITY_ID".into(), json!(b.requisite_id.to_string()));
        out.entry("COUNTRY_ID").or_insert(json!("1"));
        out.entry("NAME").or_insert(json!("Bank details"));
        out.entry("ACTIVE").or_insert(json!("Y"));
        out.entry("SORT").or_insert(json!("500"));
        Value::Object(out)
    }

    /// A product row in the `crm.item.productrow.*` shape, numbers as numbers.
    pub fn new_row(
        &mut self,
        owner_abbr: &str,
        owner_id: u64,
        given: &Value,
    ) -> Map<String, Value> {
        let num = |k: &str, default: f64| {
            given
                .get(k)
                .and_then(|v| match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                })
                .unwrap_or(default)
        };
        let text = |k: &str, default: &str| {
            given
                .get(k)
                .and_then(crate::php::to_string)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let price = num("price", 0.0);
        let quantity = num("quantity", 1.0);
        let tax_rate = given
            .get("taxRate")
            .filter(|v| !crate::php::is_empty(v) || v.as_str() == Some("0"))
            .map(|_| json!(num("taxRate", 0.0)))
            .unwrap_or(Value::Null);
        let id = self.new_id("row");
        let mut row = Map::new();
        row.insert("id".into(), json!(id));
        row.insert("ownerId".into(), json!(owner_id));
        row.insert("ownerType".into(), json!(owner_abbr));
        row.insert("productId".into(), json!(num("productId", 0.0) as u64));
        row.insert("productName".into(), json!(text("productName", "")));
        for key in [
            "price",
            "priceAccount",
            "priceExclusive",
            "priceNetto",
            "priceBrutto",
        ] {
            row.insert(key.into(), json!(num(key, price)));
        }
        row.insert("price".into(), json!(price));
        row.insert("quantity".into(), json!(quantity));
        row.insert(
            "discountTypeId".into(),
            json!(num("discountTypeId", 2.0) as u64),
        );
        row.insert("discountRate".into(), json!(num("discountRate", 0.0)));
        row.insert("discountSum".into(), json!(num("discountSum", 0.0)));
        row.insert("taxRate".into(), tax_rate);
        row.insert("taxIncluded".into(), json!(text("taxIncluded", "N")));
        row.insert("customized".into(), json!("Y"));
        row.insert(
            "measureCode".into(),
            json!(num("measureCode", 796.0) as u64),
        );
        row.insert("measureName".into(), json!(text("measureName", "pcs")));
        row.insert("sort".into(), json!(num("sort", 10.0) as u64));
        row.insert("xmlId".into(), json!(text("xmlId", "")));
        row.insert("type".into(), json!(4));
        row
    }

    pub fn render_payment(&self, p: &Payment) -> Value {
        let name = self
            .pay_systems
            .iter()
            .find(|s| s.id == p.pay_system_id)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        json!({
            "id": p.id, "accountNumber": p.account_number, "paid": "N", "datePaid": null,
            "empPaidId": null, "paySystemId": p.pay_system_id, "sum": p.sum,
            "currency": p.currency, "paySystemName": name,
        })
    }
}

/// The product-row owner abbreviation (methods.md §0.1) → entity type.
pub(crate) fn owner_of_abbr(abbr: &str) -> Option<u64> {
    match abbr.to_uppercase().as_str() {
        "L" => Some(1),
        "D" => Some(2),
        "Q" => Some(7),
        "SI" => Some(31),
        _ => None,
    }
}

pub(crate) fn abbr_of(entity_type: u64) -> &'static str {
    match entity_type {
        1 => "L",
        2 => "D",
        3 => "C",
        4 => "CO",
        5 => "I",
        7 => "Q",
        _ => "SI",
    }
}
