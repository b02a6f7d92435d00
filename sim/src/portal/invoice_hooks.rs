//! Test and demo hooks of invoicing: product rows, requisites and bank details, requisite
//! links, user fields, new and old invoices, rights; and the state read back.
use serde_json::{json, Map, Value};

use super::Portal;
use crate::state::crm::Item;
use crate::state::invoicing::{
    self, abbr_of, BankDetail, Invoicing, Link, Requisite, UserField, SMART_INVOICE_CATEGORY,
};

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl Portal {
    /// Replaces the product rows of a lead, deal or new invoice (camelCase fields as
    /// `crm.item.productrow.set` takes them); returns the row IDs.
    pub fn crm_set_product_rows(&self, entity_type: u64, owner_id: u64, rows: Value) -> Vec<u64> {
        let rows: Vec<Map<String, Value>> = self.invoicing(|inv| {
            let rows: Vec<_> = rows
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| inv.new_row(abbr_of(entity_type), owner_id, r))
                .collect();
            inv.rows.insert((entity_type, owner_id), rows.clone());
            rows
        });
        rows.iter()
            .filter_map(|r| r.get("id").and_then(Value::as_u64))
            .collect()
    }

    /// The product rows of an owner as `crm.item.productrow.list` shows them.
    pub fn crm_product_rows(&self, entity_type: u64, owner_id: u64) -> Vec<Value> {
        self.invoicing(|inv| {
            inv.rows
                .get(&(entity_type, owner_id))
                .map(|rows| rows.iter().cloned().map(Value::Object).collect())
                .unwrap_or_default()
        })
    }

    /// A requisite of a company (4) or contact (3): `NAME`, `PRESET_ID`, `RQ_*` fields.
    pub fn crm_add_requisite(&self, entity_type: u64, entity_id: u64, fields: Value) -> u64 {
        self.invoicing(|inv| {
            let id = inv.new_id("requisite");
            inv.requisites.insert(
                id,
                Requisite {
                    id,
                    entity_type_id: entity_type,
                    entity_id,
                    fields: object(fields),
                },
            );
            id
        })
    }

    /// A bank detail of a requisite: `NAME`, `RQ_BANK_NAME`, `RQ_IBAN`… fields.
    pub fn crm_add_bank_detail(&self, requisite_id: u64, fields: Value) -> u64 {
        self.invoicing(|inv| {
            let id = inv.new_id("bank_detail");
            inv.bank_details.insert(
                id,
                BankDetail {
                    id,
                    requisite_id,
                    fields: object(fields),
                },
            );
            id
        })
    }

    /// Chooses requisites for a deal or an invoice, as the card's requisite selector does.
    pub fn crm_set_requisite_link(
        &self,
        entity_type: u64,
        entity_id: u64,
        [requisite_id, bank_detail_id, mc_requisite_id, mc_bank_detail_id]: [u64; 4],
    ) {
        self.invoicing(|inv| {
            inv.links.insert(
                (entity_type, entity_id),
                Link {
                    requisite_id,
                    bank_detail_id,
                    mc_requisite_id,
                    mc_bank_detail_id,
                },
            );
        });
    }

    /// The requisites chosen for an entity: `[client requisite, bank detail, my company's
    /// requisite, bank detail]`, or `None` without a link.
    pub fn crm_requisite_link(&self, entity_type: u64, entity_id: u64) -> Option<[u64; 4]> {
        self.invoicing(|inv| {
            inv.links.get(&(entity_type, entity_id)).map(|l| {
                [
                    l.requisite_id,
                    l.bank_detail_id,
                    l.mc_requisite_id,
                    l.mc_bank_detail_id,
                ]
            })
        })
    }

    /// A user field of deals (2, `ufCrm_…`), new invoices (31, `ufCrm_SMART_INVOICE_…`) or
    /// old invoices (5, `UF_CRM_…`), with its type (`string`, `double`…) and label.
    pub fn crm_add_user_field(&self, entity_type: u64, name: &str, type_id: &str, label: &str) {
        self.invoicing(|inv| {
            inv.user_fields
                .entry(entity_type)
                .or_default()
                .push(UserField {
                    name: name.into(),
                    type_id: type_id.into(),
                    label: label.into(),
                });
        });
    }

    /// All new invoices (type 31) as `crm.item.get` shows them.
    pub fn crm_smart_invoices(&self) -> Vec<Value> {
        self.crm(|c| {
            let ids: Vec<u64> = c
                .items
                .keys()
                .filter(|(t, _)| *t == 31)
                .map(|(_, id)| *id)
                .collect();
            ids.iter().filter_map(|id| c.render(31, *id)).collect()
        })
    }

    /// A new invoice in the default pipeline (stage `DT31_2:N` unless `stageId` is given);
    /// its ID. Use it to watch statuses without creating one through REST.
    pub fn crm_add_smart_invoice(&self, fields: Value) -> u64 {
        let prefix = self.invoicing(|inv| inv.number_prefix.clone());
        self.crm(|c| {
            invoicing::ensure_invoice_dictionaries(c);
            let id = c.new_id(31);
            let mut item = Item {
                fields: object(fields),
                fm: Vec::new(),
            };
            item.fields
                .entry("categoryId")
                .or_insert(json!(SMART_INVOICE_CATEGORY));
            item.fields
                .entry("stageId")
                .or_insert(json!(format!("DT31_{SMART_INVOICE_CATEGORY}:N")));
            item.fields
                .entry("accountNumber")
                .or_insert(json!(format!("{prefix}{id}")));
            c.items.insert((31, id), item);
            id
        })
    }

    /// An old invoice with UPPER_CASE fields (`STATUS_ID` defaults to `N`); its ID.
    pub fn crm_add_legacy_invoice(&self, fields: Value) -> u64 {
        self.crm(invoicing::ensure_invoice_dictionaries);
        self.invoicing(|inv| {
            let id = inv.new_id("legacy_invoice");
            let mut f = object(fields);
            f.insert("ID".into(), json!(id.to_string()));
            f.entry("STATUS_ID").or_insert(json!("N"));
            f.entry("ACCOUNT_NUMBER")
                .or_insert(json!(format!("{}{id}", inv.number_prefix)));
            f.entry("_HASH").or_insert(json!("0"));
            inv.legacy.insert(id, f);
            id
        })
    }

    /// All old invoices as `crm.invoice.get` shows them.
    pub fn crm_legacy_invoices(&self) -> Vec<Value> {
        self.invoicing(|inv| {
            inv.legacy
                .values()
                .map(|i| {
                    Value::Object(
                        i.iter()
                            .filter(|(k, _)| !k.starts_with('_'))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )
                })
                .collect()
        })
    }

    /// The payments of a deal or new invoice as `crm.item.payment.list` shows them, each
    /// with `products`: `[{id, rowId, quantity}]`.
    pub fn crm_payments(&self, entity_type: u64, entity_id: u64) -> Vec<Value> {
        self.invoicing(|inv: &mut Invoicing| {
            inv.payments
                .values()
                .filter(|p| (p.entity_type_id, p.entity_id) == (entity_type, entity_id))
                .map(|p| {
                    let mut v = inv.render_payment(p);
                    v["products"] = json!(p
                        .products
                        .iter()
                        .map(|pp| json!({"id": pp.id, "rowId": pp.row_id, "quantity": pp.quantity}))
                        .collect::<Vec<_>>());
                    v
                })
                .collect()
        })
    }

    /// The caller may no longer create items of this type (31 new, 5 old invoices).
    pub fn crm_deny_create(&self, entity_type: u64) {
        self.invoicing(|inv| {
            inv.create_denied.insert(entity_type);
        });
    }

    /// The caller loses "read CRM settings" (payer types and pay systems answer "Access denied.").
    pub fn crm_deny_settings(&self) {
        self.invoicing(|inv| inv.settings_denied = true);
    }

    /// What `b24flow demo` needs for `invoice_from_deal` on top of [`Portal::seed_demo_crm`]
    /// (pass its answer): products on the deal, a requisite with a bank detail for the
    /// company, and "my company" with its own. Returns `{deal, my_company, paysystem_company,
    /// paysystem_contact}`.
    pub fn seed_demo_invoice(&self, crm: &Value) -> Value {
        let id = |k: &str| crm.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (deal, company) = (id("deal"), id("company"));
        self.crm_set_product_rows(
            2,
            deal,
            json!([
                {"productName": "Security audit", "price": 800, "quantity": 1, "taxRate": 19, "taxIncluded": "Y"},
                {"productName": "Report (per page)", "price": 20, "quantity": 10, "measureCode": 796, "measureName": "pcs"}
            ]),
        );
        let rq = self.crm_add_requisite(
            4,
            company,
            json!({"NAME": "Acme GmbH", "RQ_COMPANY_NAME": "Acme GmbH", "RQ_VAT_ID": "DE123456789"}),
        );
        self.crm_add_bank_detail(
            rq,
            json!({"NAME": "Main account", "RQ_BANK_NAME": "Berliner Bank", "RQ_IBAN": "DE02100500000054540402", "RQ_BIC": "BELADEBEXXX"}),
        );
        let mine = self.crm_add_item(
            4,
            json!({"title": "b24flow Demo Ltd", "isMyCompany": "Y", "assignedById": 1}),
        );
        let my_rq = self.crm_add_requisite(
            4,
            mine,
            json!({"NAME": "b24flow Demo Ltd", "RQ_COMPANY_NAME": "b24flow Demo Ltd"}),
        );
        self.crm_add_bank_detail(
            my_rq,
            json!({"NAME": "Operating account", "RQ_BANK_NAME": "Demo Bank", "RQ_IBAN": "DE89370400440532013000"}),
        );
        json!({"deal": deal, "my_company": mine, "paysystem_company": 1, "paysystem_contact": 2})
    }
}
