//! `crm_activity_delete` (ACTIVITIES.md #13): one `crm.activity.delete`, which removes
//! activities of every type, to-dos included (methods.md §13).
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::once::{Found, Once, Prior};
use crate::schema::{ActivityDef, PropType, Property, Text};
use crate::text;

use crate::crm::{self, portal_error, result_values};

pub struct CrmActivityDelete;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(CrmActivityDelete)
}

const MARKER: &str = "crm.activity.delete";

#[async_trait]
impl Activity for CrmActivityDelete {
    fn definition(&self) -> ActivityDef {
        ActivityDef {
            code: "crm_activity_delete",
            name: Text::new("Delete a CRM activity", "Удаление дела"),
            description: Text::new(
                "Deletes a CRM activity by its ID",
                "Удаляет дело CRM по его ID",
            ),
            properties: vec![
                Property::new("activity_id", PropType::Int, "Activity ID", "ID дела")
                    .required()
                    .help(
                        "The ID of the activity to delete, e.g. the activity_id returned by \
                         \"Create a CRM activity\". Works for activities of every type, to-dos included.",
                        "ID удаляемого дела, например activity_id из действия «Создание своего \
                         дела в crm». Подходят дела любого типа.",
                    ),
            ],
            returns: vec![Property::new(
                "result",
                PropType::String,
                "Result (true/false)",
                "Результат (true/false)",
            )],
        }
    }

    fn failure_values(&self) -> Map<String, Value> {
        result_values(false)
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let id = crm::required_id(input, "activity_id")?;
        // Nothing to look up first: the delete's own answer tells whether it is gone. The
        // marker keeps whether this attempt deleted it (`true`) or found it gone (`false`).
        let deleted = ctx
            .once(MARKER)
            .await?
            .run(
                || async { Ok(Found::Nothing) },
                |prior: Prior| async move {
                    match ctx
                        .b24
                        .call("crm.activity.delete", json!({ "id": id }))
                        .await
                    {
                        Ok(_) => Ok(true),
                        // An interrupted earlier attempt may have deleted it before its
                        // answer was lost.
                        Err(e) if prior == Prior::Unknown && is_not_found(&e.description()) => {
                            Ok(false)
                        }
                        Err(e) => Err(portal_error(
                            text!("activity {id} was not deleted", "дело {id} не удалено"),
                            e,
                        )),
                    }
                },
            )
            .await?;
        Ok(output(match deleted {
            Once::Acted(true) => text!("activity {id} deleted", "дело {id} удалено"),
            Once::Acted(false) | Once::Found(_) => text!(
                "activity {id} was deleted by an earlier attempt",
                "дело {id} удалено предыдущей попыткой"
            ),
            Once::Recorded(_) => text!(
                "activity {id} already deleted by an earlier attempt",
                "дело {id} уже удалено предыдущей попыткой"
            ),
        }))
    }
}

/// The legacy CRM proxy answers a bare message (`Activity is not found.`) with no code.
fn is_not_found(description: &str) -> bool {
    description.to_ascii_lowercase().contains("not found")
}

fn output(log_message: Text) -> Output {
    Output {
        return_values: result_values(true),
        log_message,
    }
}
