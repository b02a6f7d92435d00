//! Registering every activity (and its robot twin) on a portal. Bitrix24 deletes them on
//! app update (protocol.md §1.3), so this runs after every install: add, and update what
//! is already there.
use std::sync::Arc;

use b24flow_common::bitrix::{Batch, ErrorKind, PortalClient};
use serde_json::{json, Value};

use crate::activity::{Activity, ActivityError, OptionAnswers};
use crate::schema::{ActivityDef, Lang};

const ALREADY_INSTALLED: &str = "ERROR_ACTIVITY_ALREADY_INSTALLED";

pub async fn register_all(
    b24: &PortalClient,
    activities: &[Arc<dyn Activity>],
    handler: &str,
    lang: Lang,
) -> Result<Value, ActivityError> {
    let definitions = definitions_with_options(b24, activities).await?;
    // (batch key, kind, registration); activities and robots: 2 per activity ≤ 50.
    let mut entries = Vec::new();
    for def in &definitions {
        for robot in [false, true] {
            let kind = if robot { "robot" } else { "activity" };
            let key = format!("{}_{}", &kind[..1], def.code);
            entries.push((key, kind, def.registration(handler, robot, lang)));
        }
    }
    let mut add = Batch::new(false);
    for (key, kind, reg) in &entries {
        add.push(key, &format!("bizproc.{kind}.add"), reg);
    }
    let added = b24.batch(&add).await?;

    let mut update = Batch::new(false);
    let mut failures = Vec::new();
    let mut added_count = 0;
    for (key, kind, reg) in &entries {
        match added.get(key) {
            Ok(_) => added_count += 1,
            Err(e) if e.code() == Some(ALREADY_INSTALLED) => {
                let mut fields = reg.clone();
                let code = fields
                    .as_object_mut()
                    .and_then(|m| m.remove("CODE"))
                    .unwrap_or(Value::Null);
                update.push(
                    key,
                    &format!("bizproc.{kind}.update"),
                    &json!({ "CODE": code, "FIELDS": fields }),
                );
            }
            Err(e) => failures.push((key.clone(), e)),
        }
    }
    let mut updated_count = 0;
    if !update.is_empty() {
        let updated = b24.batch(&update).await?;
        for (key, _, _) in &entries {
            if updated.results.contains_key(key) || updated.errors.contains_key(key) {
                match updated.get(key) {
                    Ok(_) => updated_count += 1,
                    Err(e) => failures.push((key.clone(), e)),
                }
            }
        }
    }
    if !failures.is_empty() {
        let transient = failures
            .iter()
            .any(|(_, e)| e.kind() != ErrorKind::Permanent);
        let text = failures
            .iter()
            .map(|(k, e)| format!("{k}: {}", e.description()))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(if transient {
            ActivityError::transient(format!("registration incomplete: {text}"))
        } else {
            ActivityError::permanent(format!("registration refused: {text}"))
        });
    }
    tracing::info!(
        portal.id = b24.portal_id(),
        added = added_count,
        updated = updated_count,
        "activities registered"
    );
    Ok(json!({ "added": added_count, "updated": updated_count }))
}

/// Every activity's definition with its select options read from the portal: the option
/// queries of all activities go out in one batch, identical ones once.
async fn definitions_with_options(
    b24: &PortalClient,
    activities: &[Arc<dyn Activity>],
) -> Result<Vec<ActivityDef>, ActivityError> {
    let mut batch = Batch::new(false);
    let mut keys_by_query: Vec<(String, String)> = Vec::new();
    let mut wanted = Vec::new();
    for activity in activities {
        for query in activity.option_queries() {
            let identity = format!("{}?{}", query.method, query.params);
            let batch_key = match keys_by_query.iter().find(|(id, _)| *id == identity) {
                Some((_, key)) => key.clone(),
                None => {
                    let key = format!("o{}", keys_by_query.len());
                    batch.push(&key, query.method, &query.params);
                    keys_by_query.push((identity, key.clone()));
                    key
                }
            };
            wanted.push((activity.clone(), query.key, batch_key));
        }
    }
    let answers = if batch.is_empty() {
        None
    } else {
        Some(b24.batch(&batch).await?)
    };
    Ok(activities
        .iter()
        .map(|activity| {
            let mut mine = OptionAnswers::new();
            if let Some(answers) = &answers {
                for (owner, key, batch_key) in &wanted {
                    if Arc::ptr_eq(owner, activity) {
                        mine.insert(*key, answers.get(batch_key).cloned());
                    }
                }
            }
            activity.definition_with_options(&mine)
        })
        .collect())
}
