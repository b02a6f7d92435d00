//! The CRM area of a portal: items (leads, deals, contacts, companies) with multi-fields,
//! dictionaries (statuses, stages), pipelines, currencies, activities and timeline comments,
//! and who may not touch which item. One per portal, in its `Areas`.
use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};

/// A multi-field value (`crm_multifield`).
#[derive(Clone, Debug)]
pub(crate) struct Fm {
    pub id: u64,
    pub type_id: String,
    pub value_type: String,
    pub value: String,
}

/// One CRM item: camelCase fields as `crm.item.get` shows them, plus multi-fields.
#[derive(Clone, Debug, Default)]
pub(crate) struct Item {
    pub fields: Map<String, Value>,
    pub fm: Vec<Fm>,
}

#[derive(Clone, Debug)]
pub(crate) struct Status {
    pub id: u64,
    pub entity_id: String,
    pub status_id: String,
    pub name: String,
    pub sort: u64,
    /// `S`, `F` or none (in progress).
    pub semantics: Option<&'static str>,
    pub category_id: Option<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct Category {
    pub entity_type_id: u64,
    pub id: u64,
    pub name: String,
}

/// A seeded dictionary entry: status ID, name, semantics.
type DictionaryEntry = (&'static str, &'static str, Option<&'static str>);

pub(crate) struct Crm {
    pub items: BTreeMap<(u64, u64), Item>,
    next_id: HashMap<u64, u64>,
    next_fm: u64,
    pub statuses: Vec<Status>,
    next_status: u64,
    pub categories: Vec<Category>,
    /// (code, full name)
    pub currencies: Vec<(String, String)>,
    /// `crm.activity.*` records, UPPER_CASE fields.
    pub activities: BTreeMap<u64, Map<String, Value>>,
    next_activity: u64,
    pub comments: BTreeMap<u64, Map<String, Value>>,
    next_comment: u64,
    /// Items nobody may read or change (entity type, id).
    pub denied: HashSet<(u64, u64)>,
    /// Items only admins and the item's responsible user (`assignedById`) may read or change,
    /// as with the role permission "own items only" (entity type, id).
    pub private: HashSet<(u64, u64)>,
    /// The next call of this method does its work, then answers 500 (a lost answer).
    pub fail_after: HashSet<String>,
    /// Every write the area accepted, in order: (method, entity type, id).
    pub writes: Vec<(String, u64, u64)>,
}

impl Crm {
    pub(crate) fn new() -> Self {
        let mut crm = Crm {
            items: BTreeMap::new(),
            next_id: HashMap::new(),
            next_fm: 1,
            statuses: Vec::new(),
            next_status: 1,
            categories: vec![Category {
                entity_type_id: 2,
                id: 0,
                name: "General".into(),
            }],
            currencies: vec![
                ("EUR".into(), "Euro".into()),
                ("USD".into(), "US Dollar".into()),
                ("RUB".into(), "Russian Ruble".into()),
            ],
            activities: BTreeMap::new(),
            next_activity: 1,
            comments: BTreeMap::new(),
            next_comment: 1,
            denied: HashSet::new(),
            private: HashSet::new(),
            fail_after: HashSet::new(),
            writes: Vec::new(),
        };
        let dictionaries: &[(&str, &[DictionaryEntry])] = &[
            (
                "STATUS",
                &[
                    ("NEW", "Unassigned", None),
                    ("IN_PROCESS", "In progress", None),
                    ("PROCESSED", "Processed", None),
                    ("JUNK", "Junk lead", Some("F")),
                    ("CONVERTED", "Good lead", Some("S")),
                ],
            ),
            (
                "SOURCE",
                &[
                    ("CALL", "Call", None),
                    ("EMAIL", "E-Mail", None),
                    ("WEB", "Website", None),
                    ("ADVERTISING", "Advertising", None),
                    ("PARTNER", "Existing client", None),
                    ("OTHER", "Other", None),
                ],
            ),
            (
                "CONTACT_TYPE",
                &[
                    ("CLIENT", "Clients", None),
                    ("SUPPLIER", "Suppliers", None),
                    ("PARTNER", "Partners", None),
                    ("OTHER", "Other", None),
                ],
            ),
            (
                "COMPANY_TYPE",
                &[
                    ("CUSTOMER", "Client", None),
                    ("SUPPLIER", "Supplier", None),
                    ("COMPETITOR", "Competitor", None),
                    ("PARTNER", "Partner", None),
                    ("OTHER", "Other", None),
                ],
            ),
            (
                "INDUSTRY",
                &[
                    ("IT", "Information Technology", None),
                    ("TELECOM", "Telecommunication", None),
                    ("MANUFACTURING", "Manufacturing", None),
                    ("BANKING", "Banking Services", None),
                    ("CONSULTING", "Consulting", None),
                    ("OTHER", "Other", None),
                ],
            ),
            (
                "EMPLOYEES",
                &[
                    ("EMPLOYEES_1", "less than 50", None),
                    ("EMPLOYEES_2", "50-250", None),
                    ("EMPLOYEES_3", "250-500", None),
                    ("EMPLOYEES_4", "over 500", None),
                ],
            ),
            (
                "HONORIFIC",
                &[
                    ("HNR_EN_1", "Mr.", None),
                    ("HNR_EN_2", "Mrs.", None),
                    ("HNR_EN_3", "Ms.", None),
                    ("HNR_EN_4", "Dr.", None),
                ],
            ),
            (
                "DEAL_TYPE",
                &[
                    ("SALE", "Sales", None),
                    ("COMPLEX", "Integrated sale", None),
                    ("GOODS", "Merchandise sales", None),
                    ("SERVICES", "Service sales", None),
                ],
            ),
            (
                "DEAL_STAGE",
                &[
                    ("NEW", "New", None),
                    ("PREPARATION", "Document preparation", None),
                    ("EXECUTING", "In progress", None),
                    ("WON", "Deal won", Some("S")),
                    ("LOSE", "Deal lost", Some("F")),
                ],
            ),
        ];
        for (entity, entries) in dictionaries {
            for (i, (status, name, semantics)) in entries.iter().enumerate() {
                let category = (*entity == "DEAL_STAGE").then_some(0);
                crm.add_status(
                    entity,
                    status,
                    name,
                    (i as u64 + 1) * 10,
                    *semantics,
                    category,
                );
            }
        }
        crm
    }

    pub fn add_status(
        &mut self,
        entity: &str,
        status: &str,
        name: &str,
        sort: u64,
        semantics: Option<&'static str>,
        category: Option<u64>,
    ) {
        let id = self.next_status;
        self.next_status += 1;
        self.statuses.push(Status {
            id,
            entity_id: entity.into(),
            status_id: status.into(),
            name: name.into(),
            sort,
            semantics,
            category_id: category,
        });
    }

    /// A new deal pipeline with its own stages `C<id>:NEW`, `C<id>:WON`, `C<id>:LOSE`.
    pub fn add_deal_category(&mut self, name: &str) -> u64 {
        let id = self.categories.iter().map(|c| c.id).max().unwrap_or(0) + 1;
        self.categories.push(Category {
            entity_type_id: 2,
            id,
            name: name.into(),
        });
        let entity = format!("DEAL_STAGE_{id}");
        for (i, (code, title, semantics)) in [
            ("NEW", "New", None),
            ("WON", "Won", Some("S")),
            ("LOSE", "Lost", Some("F")),
        ]
        .iter()
        .enumerate()
        {
            self.add_status(
                &entity,
                &format!("C{id}:{code}"),
                title,
                (i as u64 + 1) * 10,
                *semantics,
                Some(id),
            );
        }
        id
    }

    pub fn new_id(&mut self, entity_type: u64) -> u64 {
        let next = self.next_id.entry(entity_type).or_insert(1);
        let id = *next;
        *next += 1;
        id
    }

    pub fn new_fm_id(&mut self) -> u64 {
        let id = self.next_fm;
        self.next_fm += 1;
        id
    }

    pub fn new_activity_id(&mut self) -> u64 {
        let id = self.next_activity;
        self.next_activity += 1;
        id
    }

    pub fn new_comment_id(&mut self) -> u64 {
        let id = self.next_comment;
        self.next_comment += 1;
        id
    }

    /// The stage entity of a deal pipeline (`DEAL_STAGE` for the general one).
    pub fn deal_stage_entity(category: u64) -> String {
        if category == 0 {
            "DEAL_STAGE".into()
        } else {
            format!("DEAL_STAGE_{category}")
        }
    }

    pub fn stages_of(&self, entity: &str) -> Vec<&Status> {
        let mut s: Vec<&Status> = self
            .statuses
            .iter()
            .filter(|s| s.entity_id == entity)
            .collect();
        s.sort_by_key(|s| s.sort);
        s
    }

    /// The item as `crm.item.get` renders it.
    pub fn render(&self, entity_type: u64, id: u64) -> Option<Value> {
        let item = self.items.get(&(entity_type, id))?;
        let mut out = item.fields.clone();
        out.insert("id".into(), json!(id));
        out.insert("entityTypeId".into(), json!(entity_type));
        if matches!(entity_type, 1 | 3 | 4) {
            let fm: Vec<Value> = item
                .fm
                .iter()
                .map(|f| json!({"id": f.id, "typeId": f.type_id, "valueType": f.value_type, "value": f.value}))
                .collect();
            out.insert("fm".into(), json!(fm));
        }
        Some(Value::Object(out))
    }
}
