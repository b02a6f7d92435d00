//! Select options the CRM update activities read from the portal at registration: all CRM
//! dictionaries in one `crm.status.list` (it has no paging), currencies, deal pipelines.
//! The registration job merges these identical queries of the four activities into one.
use serde_json::{json, Value};

use crate::activity::{OptionAnswers, OptionQuery};
use crate::schema::ActivityDef;

use crate::crm::{id_of, text_of};

const STATUSES: &str = "statuses";
const CURRENCIES: &str = "currencies";
const DEAL_CATEGORIES: &str = "deal_categories";

/// Where a select property's options come from.
#[derive(Clone, Copy, Debug)]
pub enum OptionSource {
    /// `crm.status.list` entries of one `ENTITY_ID` (INDUSTRY, SOURCE, STATUS...).
    Status(&'static str),
    Currencies,
    DealCategories,
    /// `DEAL_STAGE` and `DEAL_STAGE_<n>` of every pipeline, titled "pipeline: stage".
    DealStages,
}

pub fn queries(sources: &[(&'static str, OptionSource)]) -> Vec<OptionQuery> {
    let mut keys = Vec::new();
    for (_, source) in sources {
        let needed: &[&'static str] = match source {
            OptionSource::Status(_) => &[STATUSES],
            OptionSource::Currencies => &[CURRENCIES],
            OptionSource::DealCategories => &[DEAL_CATEGORIES],
            OptionSource::DealStages => &[STATUSES, DEAL_CATEGORIES],
        };
        for key in needed {
            if !keys.contains(key) {
                keys.push(*key);
            }
        }
    }
    keys.into_iter().map(query).collect()
}

fn query(key: &'static str) -> OptionQuery {
    let (method, params) = match key {
        STATUSES => ("crm.status.list", json!({ "order": { "SORT": "ASC" } })),
        CURRENCIES => ("crm.currency.list", json!({ "order": { "SORT": "ASC" } })),
        _ => ("crm.category.list", json!({ "entityTypeId": 2 })),
    };
    OptionQuery {
        key,
        method,
        params,
    }
}

/// Fills the options of `def`'s select properties. A failed read (missing rights) leaves
/// that select without options: the activity still registers and takes typed values.
pub fn fill(
    def: &mut ActivityDef,
    answers: &OptionAnswers,
    sources: &[(&'static str, OptionSource)],
) {
    let answer = |key: &str| answers.get(key).and_then(|r| r.as_ref().ok());
    for (property, source) in sources {
        let options = match source {
            OptionSource::Status(entity) => answer(STATUSES).map(|s| statuses(s, entity)),
            OptionSource::Currencies => answer(CURRENCIES).map(currencies),
            OptionSource::DealCategories => answer(DEAL_CATEGORIES).map(categories),
            OptionSource::DealStages => answer(STATUSES).map(|s| {
                deal_stages(
                    s,
                    answer(DEAL_CATEGORIES).map(categories).unwrap_or_default(),
                )
            }),
        };
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            if let Some(p) = def.properties.iter_mut().find(|p| p.key == *property) {
                p.set_portal_options(options);
            }
        }
    }
}

fn entries(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn statuses(all: &Value, entity: &str) -> Vec<(String, String)> {
    entries(all)
        .filter(|s| s.get("ENTITY_ID").and_then(Value::as_str) == Some(entity))
        .map(|s| (text_of(s.get("STATUS_ID")), text_of(s.get("NAME"))))
        .filter(|(id, _)| !id.is_empty())
        .collect()
}

fn currencies(all: &Value) -> Vec<(String, String)> {
    entries(all)
        .map(|c| {
            let code = text_of(c.get("CURRENCY"));
            let name = text_of(c.get("FULL_NAME"));
            let title = if name.is_empty() { code.clone() } else { name };
            (code, title)
        })
        .filter(|(code, _)| !code.is_empty())
        .collect()
}

/// `crm.category.list` → `{categories: [{id, name}]}`.
fn categories(answer: &Value) -> Vec<(String, String)> {
    answer
        .get("categories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            (
                id_of(c.get("id")).unwrap_or(0).to_string(),
                text_of(c.get("name")),
            )
        })
        .collect()
}

fn deal_stages(all: &Value, categories: Vec<(String, String)>) -> Vec<(String, String)> {
    let pipeline = |entity: &str| -> Option<String> {
        let category = if entity == "DEAL_STAGE" {
            "0"
        } else {
            entity.strip_prefix("DEAL_STAGE_")?
        };
        Some(
            categories
                .iter()
                .find(|(id, _)| id == category)
                .map(|(_, name)| name.clone())
                .unwrap_or_else(|| format!("#{category}")),
        )
    };
    entries(all)
        .filter_map(|s| {
            let entity = s.get("ENTITY_ID").and_then(Value::as_str)?;
            let pipeline = pipeline(entity)?;
            let id = text_of(s.get("STATUS_ID"));
            let name = text_of(s.get("NAME"));
            Some((id, format!("{pipeline}: {name}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{PropType, Property, Text};

    fn def() -> ActivityDef {
        ActivityDef {
            code: "x",
            name: Text::new("x", "x"),
            description: Text::new("x", "x"),
            properties: vec![
                Property::new("industry", PropType::Select, "I", "I"),
                Property::new("currency", PropType::Select, "C", "C"),
                Property::new("stage_id", PropType::Select, "S", "S"),
                Property::new("category_id", PropType::Select, "P", "P"),
            ],
            returns: vec![],
        }
    }

    const SOURCES: &[(&str, OptionSource)] = &[
        ("industry", OptionSource::Status("INDUSTRY")),
        ("currency", OptionSource::Currencies),
        ("stage_id", OptionSource::DealStages),
        ("category_id", OptionSource::DealCategories),
    ];

    #[test]
    fn each_portal_read_is_asked_once() {
        let keys: Vec<&str> = queries(SOURCES).iter().map(|q| q.key).collect();
        assert_eq!(keys, vec![STATUSES, CURRENCIES, DEAL_CATEGORIES]);
    }

    #[test]
    fn options_come_from_the_answers_and_failures_leave_none() {
        let mut answers = OptionAnswers::new();
        answers.insert(
            STATUSES,
            Ok(json!([
                {"ENTITY_ID": "INDUSTRY", "STATUS_ID": "IT", "NAME": "IT"},
                {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "NEW", "NAME": "New"},
                {"ENTITY_ID": "DEAL_STAGE_3", "STATUS_ID": "C3:NEW", "NAME": "Start"},
                {"ENTITY_ID": "SOURCE", "STATUS_ID": "CALL", "NAME": "Call"}
            ])),
        );
        answers.insert(
            DEAL_CATEGORIES,
            Ok(json!({"categories": [{"id": 0, "name": "General"}, {"id": 3, "name": "Retail"}]})),
        );
        answers.insert(
            CURRENCIES,
            Err(b24flow_common::bitrix::B24Error::Api {
                method: "crm.currency.list".into(),
                status: 403,
                code: "ACCESS_DENIED".into(),
                description: "Access denied.".into(),
            }),
        );
        let mut d = def();
        fill(&mut d, &answers, SOURCES);
        let opts = |k: &str| {
            d.properties
                .iter()
                .find(|p| p.key == k)
                .unwrap()
                .options
                .iter()
                .map(|c| (c.value.clone(), c.title.en.clone()))
                .collect::<Vec<(String, String)>>()
        };
        assert_eq!(opts("industry"), vec![("IT".into(), "IT".into())]);
        assert!(opts("currency").is_empty());
        assert_eq!(
            opts("stage_id"),
            vec![
                ("NEW".into(), "General: New".into()),
                ("C3:NEW".into(), "Retail: Start".into())
            ]
        );
        assert_eq!(opts("category_id")[1], ("3".into(), "Retail".into()));
    }
}
