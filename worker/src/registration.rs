//! Registering activities (and their robot twins) on a portal, as registration jobs. Bitrix24
//! deletes them on app update (protocol.md §1.3), so every install registers all of them:
//! add, and update what is already there. The app page adds actions on single activities:
//! install, uninstall, and "refresh options" (re-read the portal's dictionaries and update
//! the registrations in place, saying what changed).
use std::sync::Arc;

use b24flow_common::bitrix::{Batch, ErrorKind, PortalClient};
use b24flow_common::db::jobs::Job;
use b24flow_common::db::{self, registrations, Pool};
use serde_json::{json, Map, Value};

use crate::activities::Catalogue;
use crate::activity::{Activity, ActivityError, OptionAnswers, Output};
use crate::schema::{ActivityDef, Lang, ROBOT_PREFIX};

const ALREADY_INSTALLED: &str = "ERROR_ACTIVITY_ALREADY_INSTALLED";
const NOT_FOUND: &str = "ERROR_ACTIVITY_NOT_FOUND";

/// What a registration job does: its `action` and `codes` properties (none: install all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    InstallAll,
    Install(Vec<String>),
    Uninstall(Vec<String>),
    Refresh,
}

impl Action {
    pub fn from_properties(properties: &Value) -> Result<Action, ActivityError> {
        let codes = || -> Vec<String> {
            properties
                .get("codes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        match properties.get("action").and_then(Value::as_str) {
            None | Some("install_all") => Ok(Action::InstallAll),
            Some("install") => Ok(Action::Install(codes())),
            Some("uninstall") => Ok(Action::Uninstall(codes())),
            Some("refresh") => Ok(Action::Refresh),
            Some(other) => Err(ActivityError::invalid(format!(
                "unknown registration action {other:?}"
            ))),
        }
    }
}

/// Runs a registration job: its action, with the handler URL and language it names (the
/// process's handler URL when it names none). Its summary is the output's return values.
pub async fn run_job(
    b24: &PortalClient,
    db: &Pool,
    catalogue: &Catalogue,
    job: &Job,
    default_handler: &str,
) -> Result<Output, ActivityError> {
    let handler = job
        .properties
        .get("handler")
        .and_then(Value::as_str)
        .unwrap_or(default_handler);
    let lang = Lang::from_code(job.properties.get("lang").and_then(Value::as_str));
    let action = Action::from_properties(&job.properties)?;
    let summary = run(b24, db, catalogue, &action, handler, lang).await?;
    Ok(Output {
        return_values: summary,
        log_message: "registered".into(),
    })
}

/// Runs one registration action on the portal.
async fn run(
    b24: &PortalClient,
    db: &Pool,
    catalogue: &Catalogue,
    action: &Action,
    handler: &str,
    lang: Lang,
) -> Result<Map<String, Value>, ActivityError> {
    let summary = match action {
        Action::InstallAll => register(b24, db, catalogue.activities(), handler, lang).await,
        Action::Install(codes) => {
            let chosen = pick(catalogue, codes)?;
            register(b24, db, &chosen, handler, lang).await
        }
        Action::Uninstall(codes) => {
            let chosen = pick(catalogue, codes)?;
            unregister(b24, db, &chosen).await
        }
        Action::Refresh => refresh(b24, db, catalogue.activities(), handler, lang).await,
    }?;
    Ok(match summary {
        Value::Object(summary) => summary,
        other => Map::from_iter([("summary".to_string(), other)]),
    })
}

fn pick(catalogue: &Catalogue, codes: &[String]) -> Result<Vec<Arc<dyn Activity>>, ActivityError> {
    codes
        .iter()
        .map(|code| {
            catalogue
                .get(code)
                .cloned()
                .ok_or_else(|| ActivityError::invalid(format!("b24flow has no activity {code:?}")))
        })
        .collect()
}

/// Adds (or updates) `activities` and their robots.
async fn register(
    b24: &PortalClient,
    db: &Pool,
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
        return Err(incomplete(&failures, "registration"));
    }
    let client = db.get().await.map_err(db::DbError::from)?;
    for (_, kind, reg) in &entries {
        let code = reg["CODE"].as_str().unwrap_or_default();
        let (code, is_robot) = split_code(code, *kind == "robot");
        registrations::save(&client, b24.portal_id(), code, is_robot, reg).await?;
    }
    tracing::info!(
        portal.id = b24.portal_id(),
        added = added_count,
        updated = updated_count,
        "activities registered"
    );
    Ok(json!({ "action": "install", "added": added_count, "updated": updated_count }))
}

/// `robot_user_info` → (`user_info`, true).
fn split_code(code: &str, is_robot: bool) -> (&str, bool) {
    (code.strip_prefix(ROBOT_PREFIX).unwrap_or(code), is_robot)
}

/// Deletes `activities` and their robots; one that is already gone counts as deleted.
async fn unregister(
    b24: &PortalClient,
    db: &Pool,
    activities: &[Arc<dyn Activity>],
) -> Result<Value, ActivityError> {
    let mut batch = Batch::new(false);
    let mut keys = Vec::new();
    for activity in activities {
        let code = activity.definition().code;
        for (kind, registered_code) in [
            ("activity", code.to_string()),
            ("robot", format!("{ROBOT_PREFIX}{code}")),
        ] {
            let key = format!("{}_{code}", &kind[..1]);
            batch.push(
                &key,
                &format!("bizproc.{kind}.delete"),
                &json!({ "CODE": registered_code }),
            );
            keys.push((key, code, kind == "robot"));
        }
    }
    let answer = b24.batch(&batch).await?;
    let client = db.get().await.map_err(db::DbError::from)?;
    let mut removed = 0;
    let mut failures = Vec::new();
    for (key, code, is_robot) in &keys {
        match answer.get(key) {
            Ok(_) => removed += 1,
            Err(e) if e.code() == Some(NOT_FOUND) => {}
            Err(e) => {
                failures.push((key.clone(), e));
                continue;
            }
        }
        registrations::remove(&client, b24.portal_id(), code, *is_robot).await?;
    }
    if !failures.is_empty() {
        return Err(incomplete(&failures, "uninstall"));
    }
    tracing::info!(
        portal.id = b24.portal_id(),
        removed,
        "activities uninstalled"
    );
    Ok(json!({ "action": "uninstall", "removed": removed }))
}

/// Re-reads the portal's dictionaries and updates every installed activity and robot in
/// place; the answer lists each select whose options changed.
async fn refresh(
    b24: &PortalClient,
    db: &Pool,
    catalogue: &[Arc<dyn Activity>],
    handler: &str,
    lang: Lang,
) -> Result<Value, ActivityError> {
    let mut lists = Batch::new(false);
    lists.push("activities", "bizproc.activity.list", &json!({}));
    lists.push("robots", "bizproc.robot.list", &json!({}));
    let listed = b24.batch(&lists).await?;
    let installed = |key: &str| -> Result<Vec<String>, ActivityError> {
        Ok(listed
            .get(key)?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect())
    };
    let (activities, robots) = (installed("activities")?, installed("robots")?);
    let mine: Vec<Arc<dyn Activity>> = catalogue
        .iter()
        .filter(|a| {
            let code = a.definition().code;
            activities.iter().any(|c| c == code)
                || robots.iter().any(|c| *c == format!("{ROBOT_PREFIX}{code}"))
        })
        .cloned()
        .collect();
    let definitions = definitions_with_options(b24, &mine).await?;
    let client = db.get().await.map_err(db::DbError::from)?;
    let mut update = Batch::new(false);
    let mut entries = Vec::new();
    let mut changes = Vec::new();
    for def in &definitions {
        for robot in [false, true] {
            let registered_code = if robot {
                format!("{ROBOT_PREFIX}{}", def.code)
            } else {
                def.code.to_string()
            };
            let present = if robot { &robots } else { &activities };
            if !present.contains(&registered_code) {
                continue;
            }
            let reg = def.registration(handler, robot, lang);
            let before = registrations::find(&client, b24.portal_id(), def.code, robot).await?;
            if !robot {
                changes.extend(option_changes(def.code, before.as_ref(), &reg));
            }
            let kind = if robot { "robot" } else { "activity" };
            let key = format!("{}_{}", &kind[..1], def.code);
            let mut fields = reg.clone();
            if let Some(map) = fields.as_object_mut() {
                map.remove("CODE");
            }
            update.push(
                &key,
                &format!("bizproc.{kind}.update"),
                &json!({ "CODE": registered_code, "FIELDS": fields }),
            );
            entries.push((key, def.code, robot, reg));
        }
    }
    drop(client);
    let updated = if update.is_empty() {
        None
    } else {
        Some(b24.batch(&update).await?)
    };
    let client = db.get().await.map_err(db::DbError::from)?;
    let mut failures = Vec::new();
    let mut count = 0;
    for (key, code, robot, reg) in &entries {
        match updated.as_ref().map(|u| u.get(key)) {
            Some(Ok(_)) => {
                count += 1;
                registrations::save(&client, b24.portal_id(), code, *robot, reg).await?;
            }
            Some(Err(e)) => failures.push((key.clone(), e)),
            None => {}
        }
    }
    if !failures.is_empty() {
        return Err(incomplete(&failures, "refresh"));
    }
    tracing::info!(
        portal.id = b24.portal_id(),
        updated = count,
        changed = changes.len(),
        "registrations refreshed"
    );
    Ok(json!({ "action": "refresh", "updated": count, "changes": changes }))
}

/// Which select options of `code` differ between the last registration and `now`.
fn option_changes(code: &str, before: Option<&Value>, now: &Value) -> Vec<Value> {
    let options = |reg: Option<&Value>, key: &str| -> Map<String, Value> {
        reg.and_then(|r| r["PROPERTIES"][key]["Options"].as_object())
            .cloned()
            .unwrap_or_default()
    };
    let Some(properties) = now["PROPERTIES"].as_object() else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    for key in properties.keys() {
        let (old, new) = (options(before, key), options(Some(now), key));
        if old == new {
            continue;
        }
        let titles = |from: &Map<String, Value>, other: &Map<String, Value>| -> Vec<Value> {
            from.iter()
                .filter(|(value, title)| other.get(*value) != Some(*title))
                .map(|(_, title)| title.clone())
                .collect()
        };
        changes.push(json!({
            "code": code,
            "property": key,
            "added": titles(&new, &old),
            "removed": titles(&old, &new),
        }));
    }
    changes
}

fn incomplete(
    failures: &[(String, b24flow_common::bitrix::B24Error)],
    what: &str,
) -> ActivityError {
    let transient = failures
        .iter()
        .any(|(_, e)| e.kind() != ErrorKind::Permanent);
    let text = failures
        .iter()
        .map(|(k, e)| format!("{k}: {}", e.description()))
        .collect::<Vec<_>>()
        .join("; ");
    if transient {
        ActivityError::transient(format!("{what} incomplete: {text}"))
    } else {
        ActivityError::invalid(format!("{what} refused: {text}"))
    }
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
