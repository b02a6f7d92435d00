//! The activity's properties read and checked before anything is fetched or sent; a
//! malformed value fails the run at once (ACTIVITIES.md "Rules for every activity").
use lettre::message::Mailbox;

use super::recipients::{parse_mailbox, Recipients};
use super::transport::{Security, Server};
use crate::activity::{ActivityError, Input};
use crate::{text, texts};

/// Most recipients of one message (to, cc and bcc together), as mail services cap them.
pub const MAX_RECIPIENTS: usize = 100;
/// Most attachments of one message (Disk files and links together).
pub const MAX_ATTACHMENTS: usize = 20;

pub struct Settings {
    pub server: Server,
    pub from: Mailbox,
    pub recipients: Recipients,
    pub subject: String,
    pub body: String,
    pub html: bool,
    pub disk_ids: Vec<u64>,
    pub links: Vec<String>,
}

impl Settings {
    pub fn read(input: &Input) -> Result<Self, ActivityError> {
        let security = match input
            .string("smtp_security")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("ssl") => Security::Ssl,
            Some("starttls") => Security::StartTls,
            Some("none") => Security::None,
            Some(other) => {
                return Err(ActivityError::invalid(texts::not_one_of(
                    "smtp_security",
                    other,
                    "ssl, starttls, none",
                )))
            }
        };
        let port = match input.int("smtp_port")? {
            None => security.default_port(),
            Some(p) => u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                ActivityError::invalid(text!(
                    "smtp_port: {p} is not a port (1-65535)",
                    "smtp_port: {p} — не номер порта (1–65535)"
                ))
            })?,
        };
        let host = input.required_string("smtp_host")?;
        if host.contains(char::is_whitespace) || host.contains('/') {
            return Err(ActivityError::invalid(text!(
                "smtp_host: {host:?} is not a host name",
                "smtp_host: «{host}» — не имя сервера"
            )));
        }
        let credentials = if input.bool("smtp_auth")?.unwrap_or(true) {
            let login = input.string("smtp_login").ok_or_else(|| {
                ActivityError::invalid(text!(
                    "smtp_auth is Y but smtp_login is empty",
                    "smtp_auth = Y, но логин (smtp_login) не заполнен"
                ))
            })?;
            let password = input.string("smtp_password").ok_or_else(|| {
                ActivityError::invalid(text!(
                    "smtp_auth is Y but smtp_password is empty",
                    "smtp_auth = Y, но пароль (smtp_password) не заполнен"
                ))
            })?;
            Some((login, password))
        } else {
            None
        };
        let from_raw = input.required_string("from")?;
        let from = parse_mailbox(&from_raw).map_err(|()| {
            ActivityError::invalid(text!(
                "from: {from_raw:?} is not an e-mail address",
                "from: «{from_raw}» — не адрес e-mail"
            ))
        })?;
        let html = match input
            .string("body_type")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("text") | Some("plain") => false,
            Some("html") => true,
            Some(other) => {
                return Err(ActivityError::invalid(texts::not_one_of(
                    "body_type",
                    other,
                    "text, html",
                )))
            }
        };
        let recipients =
            Recipients::parse(&input.list("to"), &input.list("cc"), &input.list("bcc"));
        if recipients.to.is_empty() {
            let why = if recipients.invalid.is_empty() {
                texts::required_empty("to")
            } else {
                text!(
                    "no valid address in to (not addresses: {})",
                    "в to нет ни одного верного адреса (не адреса: {})",
                    quoted(&recipients.invalid)
                )
            };
            return Err(ActivityError::invalid(why));
        }
        let count = recipients.to.len() + recipients.cc.len() + recipients.bcc.len();
        if count > MAX_RECIPIENTS {
            return Err(ActivityError::invalid(text!(
                "{count} recipients in to, cc and bcc; at most {MAX_RECIPIENTS} are sent to",
                "получателей в to, cc и bcc: {count}; допускается не более {MAX_RECIPIENTS}"
            )));
        }
        let disk_ids = disk_ids(&input.list("attach_disk_ids"))?;
        let links = input.list("attach_urls");
        if disk_ids.len() + links.len() > MAX_ATTACHMENTS {
            let count = disk_ids.len() + links.len();
            return Err(ActivityError::invalid(text!(
                "{count} attachments in attach_disk_ids and attach_urls; at most {MAX_ATTACHMENTS} are taken",
                "вложений в attach_disk_ids и attach_urls: {count}; допускается не более {MAX_ATTACHMENTS}"
            )));
        }
        Ok(Self {
            server: Server {
                host,
                port,
                security,
                credentials,
            },
            from,
            recipients,
            subject: input.required_string("subject")?,
            body: input.required_string("body")?,
            html,
            disk_ids,
            links,
        })
    }
}

/// Disk file IDs: `123`, or `n123` as Disk file fields give them in a workflow.
fn disk_ids(values: &[String]) -> Result<Vec<u64>, ActivityError> {
    let mut ids = Vec::new();
    for raw in values {
        let digits = raw.trim().trim_start_matches(['n', 'N']);
        let id = digits
            .parse::<u64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| {
                ActivityError::invalid(text!(
                    "attach_disk_ids: {raw:?} is not a file ID",
                    "attach_disk_ids: «{raw}» — не ID файла"
                ))
            })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

pub fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({
            "to": ["a@example.com"], "subject": "s", "body": "b", "smtp_host": "smtp.example.com",
            "from": "me@example.com", "smtp_login": "me", "smtp_password": "pw"
        })
    }

    fn with(extra: serde_json::Value) -> Result<Settings, ActivityError> {
        let mut props = base();
        for (k, v) in extra.as_object().expect("object") {
            props[k] = v.clone();
        }
        Settings::read(&Input::new(&props))
    }

    #[test]
    fn defaults_are_ssl_on_465_with_auth() {
        let s = with(json!({})).expect("settings");
        assert_eq!((s.server.security, s.server.port), (Security::Ssl, 465));
        assert!(s.server.credentials.is_some());
        let s = with(json!({"smtp_security": "starttls", "smtp_auth": "N"})).expect("settings");
        assert_eq!(
            (s.server.security, s.server.port),
            (Security::StartTls, 587)
        );
        assert!(s.server.credentials.is_none());
        assert!(!format!("{:?}", with(json!({})).expect("settings").server).contains("pw"));
    }

    #[test]
    fn malformed_values_are_clear_errors() {
        let err = |extra| with(extra).err().map(|e| e.message.en).unwrap_or_default();
        assert!(err(json!({"smtp_security": "tls13"})).contains("smtp_security"));
        assert!(err(json!({"smtp_port": "70000"})).contains("smtp_port"));
        assert!(err(json!({"smtp_password": ""})).contains("smtp_password"));
        assert!(err(json!({"from": "nobody"})).contains("from"));
        assert!(err(json!({"to": ["bad", "worse"]})).contains("\"bad\", \"worse\""));
        assert!(err(json!({"attach_disk_ids": ["12", "x"]})).contains("attach_disk_ids"));
        assert!(err(json!({"body_type": "rtf"})).contains("body_type"));
    }

    #[test]
    fn recipients_and_attachments_are_capped() {
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("u{i}@example.com"))
            .collect();
        let err = with(json!({ "cc": many }))
            .err()
            .map(|e| e.message.en)
            .unwrap_or_default();
        assert!(err.contains("at most 100"), "{err}");
        let links: Vec<String> = (0..15)
            .map(|i| format!("https://example.com/{i}"))
            .collect();
        let ids: Vec<String> = (1..=6).map(|i| i.to_string()).collect();
        let err = with(json!({ "attach_urls": links, "attach_disk_ids": ids }))
            .err()
            .map(|e| e.message.en)
            .unwrap_or_default();
        assert!(err.contains("at most 20"), "{err}");
        let links: Vec<String> = (0..20)
            .map(|i| format!("https://example.com/{i}"))
            .collect();
        assert!(with(json!({ "attach_urls": links })).is_ok());
    }

    #[test]
    fn disk_ids_take_the_n_prefix_and_drop_repeats() {
        assert_eq!(
            disk_ids(&["n12".into(), "12".into(), " 7 ".into()]).expect("ids"),
            [12, 7]
        );
    }
}
