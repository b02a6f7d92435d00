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
    // The event token authorizes the answer, any user's token carries it (§5.1): the
    // call's own token first; the installer's when that one cannot be used (a user
    // deactivated since, a refresh token that died), so the workflow is still answered.
    let sent = match b24.call("bizproc.event.send", params.clone()).await {
        Err(e) if !b24.is_installer() && token_unusable(&e) => {
            tracing::warn!(error = %e, "the run-as user's token cannot answer the workflow; the installer's token does");
            b24.as_installer().call("bizproc.event.send", params).await
        }
        other => other,
    };
    match sent {
        Ok(_) => Ok(Reported::Delivered),
        Err(e) if e.code() == Some("404") && e.kind() == ErrorKind::Permanent => {
            Ok(Reported::WorkflowGone)
        }
        Err(e) => Err(e),
    }
}

fn token_unusable(e: &B24Error) -> bool {
    e.kind() == ErrorKind::Auth || matches!(e, B24Error::Refresh { .. })
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}
