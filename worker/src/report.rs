//! Answering the workflow with `bizproc.event.send` (protocol.md §5.1).
use b24flow_common::bitrix::{B24Error, ErrorKind, PortalClient};
use b24flow_common::db::jobs::Outcome;
use serde_json::{json, Value};

use crate::schema::Lang;
use crate::texts;

/// Bitrix24 writes LOG_MESSAGE into the workflow log; keep it one readable line.
const MAX_LOG_MESSAGE: usize = 1000;

pub enum Reported {
    Delivered,
    /// The workflow no longer exists (error "404"); nobody is waiting any more.
    WorkflowGone,
}

pub async fn send(
    b24: &PortalClient,
    event_token: &str,
    outcome: &Outcome,
) -> Result<Reported, B24Error> {
    let mut values = outcome.return_values.clone();
    values.insert(
        "error_text".into(),
        Value::String(outcome.error_text.clone()),
    );
    let error = texts::error_prefix();
    let error = error.get(Lang::from_code(b24.language()));
    let log = if outcome.success {
        outcome.log_message.clone()
    } else if outcome.log_message.is_empty() {
        format!("{error}: {}", outcome.error_text)
    } else {
        format!("{}; {error}: {}", outcome.log_message, outcome.error_text)
    };
    let params = json!({
        "EVENT_TOKEN": event_token,
        "RETURN_VALUES": values,
        "LOG_MESSAGE": truncate(&log, MAX_LOG_MESSAGE),
    });
    match b24.call("bizproc.event.send", params).await {
        Ok(_) => Ok(Reported::Delivered),
        Err(e) if e.code() == Some("404") && e.kind() == ErrorKind::Permanent => {
            Ok(Reported::WorkflowGone)
        }
        Err(e) => Err(e),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}
