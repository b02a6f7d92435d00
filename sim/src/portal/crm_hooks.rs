//! Test and demo hooks of the CRM area: add items with multi-fields, pipelines, take
//! access away, make a method lose its answer, and read items, activities and comments back.
use serde_json::{json, Map, Value};

use super::Portal;
use crate::state::crm::{Fm, Item};

impl Portal {
    /// Adds a CRM item of `entity_type` (1 lead, 2 deal, 3 contact, 4 company) from
    /// camelCase fields; `fm` may be `[{"typeId","valueType","value"}]`. Returns its ID.
    pub fn crm_add_item(&self, entity_type: u64, fields: Value) -> u64 {
        self.crm(|c| {
            let id = c.new_id(entity_type);
            let mut item = Item::default();
            for (k, v) in fields.as_object().cloned().unwrap_or_default() {
                if k == "fm" {
                    for f in v.as_array().cloned().unwrap_or_default() {
                        let text = |k: &str| {
                            f.get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        let fm_id = c.new_fm_id();
                        item.fm.push(Fm {
                            id: fm_id,
                            type_id: text("typeId"),
                            value_type: text("valueType"),
                            value: text("value"),
                        });
                    }
                } else {
                    item.fields.insert(k, v);
                }
            }
            if entity_type == 2 {
                item.fields.entry("categoryId").or_insert(json!(0));
                item.fields.entry("stageId").or_insert(json!("NEW"));
            }
            if entity_type == 1 {
                item.fields.entry("stageId").or_insert(json!("NEW"));
            }
            c.items.insert((entity_type, id), item);
            id
        })
    }

    /// The item as `crm.item.get` shows it (with `fm`), plus legacy-only fields
    /// (`ADDRESS`…) as stored.
    pub fn crm_item(&self, entity_type: u64, id: u64) -> Option<Value> {
        self.crm(|c| c.render(entity_type, id))
    }

    /// A new deal pipeline with stages `C<id>:NEW`, `C<id>:WON`, `C<id>:LOSE`; its ID.
    pub fn crm_add_deal_category(&self, name: &str) -> u64 {
        self.crm(|c| c.add_deal_category(name))
    }

    /// Adds a dictionary entry (`crm.status.list`), e.g. `("INDUSTRY", "AGRO", "Agriculture")`.
    pub fn crm_add_status(&self, entity_id: &str, status_id: &str, name: &str) {
        self.crm(|c| c.add_status(entity_id, status_id, name, 1000, None, None));
    }

    /// Nobody may read or change this item any more (`ACCESS_DENIED`).
    pub fn crm_deny_item(&self, entity_type: u64, id: u64) {
        self.crm(|c| {
            c.denied.insert((entity_type, id));
        });
    }

    /// Only admins and the item's responsible user (`assignedById`) may read or change this
    /// item from now on; others get `ACCESS_DENIED` as crm-item-get.md / crm-item-update.md
    /// document it (HTTP 400).
    pub fn crm_make_private(&self, entity_type: u64, id: u64) {
        self.crm(|c| {
            c.private.insert((entity_type, id));
        });
    }

    /// The next call of `method` does its work, then answers 500 (the answer is lost).
    pub fn crm_fail_after(&self, method: &str) {
        self.crm(|c| {
            c.fail_after.insert(method.to_lowercase());
        });
    }

    /// Writes the CRM area accepted: `(method, entity type, id)` in order.
    pub fn crm_writes(&self) -> Vec<(String, u64, u64)> {
        self.crm(|c| c.writes.clone())
    }

    /// All CRM activities as `crm.activity.list` would show them (UPPER_CASE fields).
    pub fn crm_activities(&self) -> Vec<Value> {
        self.crm(|c| {
            c.activities
                .values()
                .map(|a| Value::Object(a.clone()))
                .collect()
        })
    }

    /// Adds a call activity on an owner; its ID.
    pub fn crm_add_activity(&self, owner_type: u64, owner_id: u64, subject: &str) -> u64 {
        self.crm(|c| {
            let id = c.new_activity_id();
            let mut a = Map::new();
            a.insert("ID".into(), json!(id.to_string()));
            a.insert("OWNER_TYPE_ID".into(), json!(owner_type.to_string()));
            a.insert("OWNER_ID".into(), json!(owner_id.to_string()));
            a.insert("TYPE_ID".into(), json!("2"));
            a.insert("SUBJECT".into(), json!(subject));
            c.activities.insert(id, a);
            id
        })
    }

    /// All timeline comments (`ID`, `ENTITY_TYPE`, `ENTITY_ID`, `COMMENT`…).
    pub fn crm_comments(&self) -> Vec<Value> {
        self.crm(|c| {
            c.comments
                .values()
                .map(|m| Value::Object(m.clone()))
                .collect()
        })
    }

    /// What `b24flow demo` needs for the CRM activities: a company with a phone, a contact,
    /// a lead, and a deal of both in a second pipeline. Returns `{company, contact, lead, deal}`.
    pub fn seed_demo_crm(&self) -> Value {
        let company = self.crm_add_item(
            4,
            json!({
                "title": "Acme GmbH", "industry": "IT", "currencyId": "EUR", "assignedById": 1,
                "fm": [{"typeId": "PHONE", "valueType": "WORK", "value": "+49 30 1234567"}]
            }),
        );
        let contact = self.crm_add_item(
            3,
            json!({
                "name": "Eva", "lastName": "Lang", "companyIds": [company], "assignedById": 1,
                "fm": [{"typeId": "EMAIL", "valueType": "WORK", "value": "eva.lang@acme.example"}]
            }),
        );
        let lead = self.crm_add_item(
            1,
            json!({"title": "Website enquiry", "name": "Tom", "assignedById": 1}),
        );
        let deal = self.crm_add_item(2, json!({
            "title": "Audit 2026", "companyId": company, "contactId": contact, "contactIds": [contact],
            "currencyId": "EUR", "opportunity": 1000, "assignedById": 1
        }));
        json!({"company": company, "contact": contact, "lead": lead, "deal": deal})
    }
}
