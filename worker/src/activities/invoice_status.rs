//! `invoice_status` (ACTIVITIES.md #11): an invoice's status, name and semantics in one
//! batch. Smart invoices: `crm.item.get` (type 31) and their stage looked up in
//! `crm.status.list` by the stage ID the same batch read; legacy invoices: `crm.invoice.get`
//! and the `INVOICE_STATUS` entry (methods.md §11). The status lookups ride in the batch,
//! so no status cache is needed and names are never stale.
use std::sync::Arc;

use async_trait::async_trait;
use b24flow_common::bitrix::{B24Error, Batch, BatchResult};
use serde_json::{json, Map, Value};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::schema::{ActivityDef, PropType, Property, Text};
use crate::{text, texts};

use crate::crm::{self, portal_error, text_of};

pub struct InvoiceStatus;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(InvoiceStatus)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Auto,
    Smart,
    Legacy,
}

#[async_trait]
impl Activity for InvoiceStatus {
    fn reads_only(&self) -> bool {
        true
    }

    fn definition(&self) -> ActivityDef {
        let p = Property::new;
        ActivityDef {
            code: "invoice_status",
            name: Text::new("Watch an invoice's status", "Слежение за статусом Счёта"),
            description: Text::new(
                "Reads an invoice's status, its name and whether it is in progress, won or lost",
                "Получает статус счёта, его название и семантику (в работе, успех, провал)",
            ),
            properties: vec![
                p("invoice_id", PropType::Int, "Invoice ID", "ID счёта")
                    .required()
                    .help(
                        "The ID of the invoice to watch, e.g. the invoice_id returned by \"Create an invoice from a deal\".",
                        "ID счёта, статус которого нужно узнать, например invoice_id из действия «Создать счет на основании сделки».",
                    ),
                p(
                    "invoice_kind",
                    PropType::Select,
                    "Invoice kind",
                    "Вид счёта",
                )
                .options(&[
                    ("auto", "Auto (new or old)", "Авто (новый или старый)"),
                    ("smart", "New invoice", "Новый счёт"),
                    ("legacy", "Old invoice", "Старый счёт"),
                ])
                .default("auto")
                .help(
                    "New invoices (the current CRM) or old ones. Auto looks in both and refuses a number that exists in both.",
                    "Новые счета (современная CRM) или старые. «Авто» ищет в обоих и откажет, если счёт с таким ID есть и там, и там.",
                ),
            ],
            returns: vec![
                p("status", PropType::String, "Status", "Статус"),
                p(
                    "status_name",
                    PropType::String,
                    "Status name",
                    "Название статуса",
                ),
                p(
                    "status_semantics",
                    PropType::String,
                    "Semantics (process/success/failure)",
                    "Семантика (process/success/failure)",
                ),
            ],
        }
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        let id = crm::required_id(input, "invoice_id")?;
        let kind = match input
            .string("invoice_kind")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("auto") => Kind::Auto,
            Some("smart") => Kind::Smart,
            Some("legacy") => Kind::Legacy,
            Some(other) => {
                return Err(ActivityError::invalid(texts::not_one_of(
                    "invoice_kind",
                    other,
                    "auto, smart, legacy",
                )))
            }
        };
        // No halt: in `auto` both are read, and usually one of the two reads fails.
        let mut batch = Batch::new(false);
        if kind != Kind::Legacy {
            batch.push(
                "smart",
                "crm.item.get",
                &json!({ "entityTypeId": 31, "id": id }),
            );
            batch.push(
                "smart_stage",
                "crm.status.list",
                &json!({ "filter": { "STATUS_ID": "$result[smart][item][stageId]" } }),
            );
        }
        if kind != Kind::Smart {
            batch.push("legacy", "crm.invoice.get", &json!({ "id": id }));
            batch.push(
                "legacy_status",
                "crm.status.list",
                &json!({ "filter": { "ENTITY_ID": "INVOICE_STATUS", "STATUS_ID": "$result[legacy][STATUS_ID]" } }),
            );
        }
        let answer = ctx.b24.batch(&batch).await.map_err(|e| {
            portal_error(
                text!("invoice {id} was not read", "счёт {id} не прочитан"),
                e,
            )
        })?;
        let status = match kind {
            Kind::Smart => smart(&answer)
                .map_err(|e| portal_error(text!("new invoice {id}", "новый счёт {id}"), e))?,
            Kind::Legacy => legacy(&answer)
                .map_err(|e| portal_error(text!("old invoice {id}", "старый счёт {id}"), e))?,
            Kind::Auto => auto(id, smart(&answer), legacy(&answer))?,
        };
        let (status_id, name, semantics) = (&status.id, &status.name, status.semantics);
        let log_message = if status.kind == "new" {
            text!(
                "new invoice {id}: {status_id} ({name}, {semantics})",
                "новый счёт {id}: {status_id} ({name}, {semantics})"
            )
        } else {
            text!(
                "old invoice {id}: {status_id} ({name}, {semantics})",
                "старый счёт {id}: {status_id} ({name}, {semantics})"
            )
        };
        let mut values = Map::new();
        values.insert("status".into(), json!(status.id));
        values.insert("status_name".into(), json!(status.name));
        values.insert("status_semantics".into(), json!(status.semantics));
        Ok(Output {
            return_values: values,
            log_message,
        })
    }
}

struct Status {
    kind: &'static str,
    id: String,
    name: String,
    semantics: &'static str,
}

/// `auto`: exactly one of the two kinds must have the number. When both do, guessing would
/// report another invoice's status, so the workflow author is asked to choose.
fn auto(
    id: u64,
    smart: Result<Status, B24Error>,
    legacy: Result<Status, B24Error>,
) -> Result<Status, ActivityError> {
    use b24flow_common::bitrix::ErrorKind;
    match (smart, legacy) {
        (Ok(_), Ok(_)) => Err(ActivityError::invalid(text!(
            "invoice {id} exists both as a new invoice and as an old one; set invoice_kind to \
             smart or legacy to say which one to watch",
            "счёт {id} есть и среди новых, и среди старых счетов; выберите в свойстве invoice_kind \
             «Новый счёт» или «Старый счёт»"
        ))),
        (Ok(status), Err(e)) | (Err(e), Ok(status)) if e.kind() == ErrorKind::Permanent => {
            Ok(status)
        }
        // One kind could not be read for a passing reason: it may hold the same number.
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => Err(ActivityError {
            kind: ErrorKind::Transient,
            message: text!("invoice {id}: {}", "счёт {id}: {}", e.description()),
        }),
        (Err(smart_error), Err(legacy_error)) => {
            let kind = if [&smart_error, &legacy_error]
                .iter()
                .all(|e| e.kind() == ErrorKind::Permanent)
            {
                ErrorKind::Permanent
            } else {
                ErrorKind::Transient
            };
            Err(ActivityError {
                kind,
                message: text!(
                    "invoice {id} was found neither as a new invoice ({}) nor as an old one ({})",
                    "счёт {id} не найден ни среди новых ({}), ни среди старых счетов ({})",
                    smart_error.description(),
                    legacy_error.description()
                ),
            })
        }
    }
}

fn smart(answer: &BatchResult) -> Result<Status, B24Error> {
    let item = answer
        .get("smart")?
        .get("item")
        .cloned()
        .unwrap_or(Value::Null);
    let id = text_of(item.get("stageId"));
    let entry = status_entry(answer, "smart_stage", &id, |e| {
        e.starts_with("SMART_INVOICE_STAGE")
    });
    Ok(Status {
        kind: "new",
        name: entry.map(|e| text_of(e.get("NAME"))).unwrap_or_default(),
        semantics: semantics(entry, &id, false),
        id,
    })
}

fn legacy(answer: &BatchResult) -> Result<Status, B24Error> {
    let invoice = answer.get("legacy")?;
    let id = text_of(invoice.get("STATUS_ID"));
    let entry = status_entry(answer, "legacy_status", &id, |e| e == "INVOICE_STATUS");
    Ok(Status {
        kind: "old",
        name: entry.map(|e| text_of(e.get("NAME"))).unwrap_or_default(),
        semantics: semantics(entry, &id, true),
        id,
    })
}

fn status_entry<'a>(
    answer: &'a BatchResult,
    key: &str,
    status_id: &str,
    entity: impl Fn(&str) -> bool,
) -> Option<&'a Value> {
    answer.get(key).ok()?.as_array()?.iter().find(|s| {
        text_of(s.get("STATUS_ID")) == status_id
            && entity(
                s.get("ENTITY_ID")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )
    })
}

/// `SEMANTICS` is `S`, `F`, or empty/null for in progress (methods.md §11); newer portals
/// also spell it out in `EXTRA.SEMANTICS`. Legacy statuses without either: `P` paid, `D` declined.
fn semantics(entry: Option<&Value>, status_id: &str, legacy: bool) -> &'static str {
    let code = entry
        .map(|e| text_of(e.get("SEMANTICS")))
        .unwrap_or_default();
    let extra = entry
        .and_then(|e| e.get("EXTRA"))
        .map(|x| text_of(x.get("SEMANTICS")))
        .unwrap_or_default();
    match (code.as_str(), extra.as_str()) {
        ("S", _) | (_, "success") => "success",
        ("F", _) | (_, "failure") | (_, "apology") => "failure",
        _ if legacy && status_id == "P" => "success",
        _ if legacy && status_id == "D" => "failure",
        _ => "process",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantics_read_the_code_then_extra_then_the_legacy_letters() {
        assert_eq!(
            semantics(Some(&json!({"SEMANTICS": "S"})), "x", false),
            "success"
        );
        assert_eq!(
            semantics(
                Some(&json!({"SEMANTICS": null, "EXTRA": {"SEMANTICS": "failure"}})),
                "x",
                false
            ),
            "failure"
        );
        assert_eq!(
            semantics(Some(&json!({"SEMANTICS": ""})), "x", false),
            "process"
        );
        assert_eq!(semantics(None, "P", true), "success");
        assert_eq!(semantics(None, "D", true), "failure");
        assert_eq!(semantics(None, "N", true), "process");
    }

    #[test]
    fn auto_falls_back_to_the_legacy_answer() {
        let answer = BatchResult {
            results: json!({
                "legacy": {"ID": "9", "STATUS_ID": "P"},
                "legacy_status": [{"ENTITY_ID": "INVOICE_STATUS", "STATUS_ID": "P", "NAME": "Paid"}],
                "smart_stage": []
            })
            .as_object()
            .unwrap()
            .clone(),
            errors: json!({"smart": {"error": "NOT_FOUND", "error_description": "not found"}})
                .as_object()
                .unwrap()
                .clone(),
            totals: Map::new(),
            ..Default::default()
        };
        assert!(smart(&answer).is_err());
        let s = legacy(&answer).unwrap();
        assert_eq!(
            (s.id.as_str(), s.name.as_str(), s.semantics),
            ("P", "Paid", "success")
        );
    }
}
