//! `smtp_send` (ACTIVITIES.md #2): one message to all recipients through the workflow's
//! own SMTP server, with attachments from the portal's Disk and from links. The only
//! portal call is one `disk.file.get` batch (methods.md §2).
mod attachments;
mod download;
mod message;
mod pool;
mod recipients;
mod settings;
mod ssrf;
mod transport;

use std::sync::Arc;

use async_trait::async_trait;
use b24flow_common::bitrix::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::once::NotDone;
use crate::schema::{ActivityDef, Lang, PropType, Property, Text};
use crate::text;
use attachments::{Fetched, Limits};
use settings::{quoted, Settings};
use transport::{Delivery, Session, Timeouts, Trust};

pub struct SmtpSend;

pub(super) fn activity() -> Arc<dyn Activity> {
    Arc::new(SmtpSend)
}

/// Marker of the accepted message; its value is the run's log line.
const ACCEPTED: &str = "smtp.accepted";

/// Markers of each attempt's transaction (`smtp.attempt.<n>`): started right before
/// MAIL FROM, done when the server's answer (or a clean failure) came back.
const ATTEMPT: &str = "smtp.attempt";

/// What the accepted message's marker keeps: the run's log line, replayed by a retry as it
/// is, so in the portal's language.
#[derive(Serialize, Deserialize)]
struct Accepted {
    #[serde(default)]
    log_message: String,
}

#[async_trait]
impl Activity for SmtpSend {
    fn definition(&self) -> ActivityDef {
        let text = |key, ty, en, ru| Property::new(key, ty, en, ru);
        ActivityDef {
            code: "smtp_send",
            name: Text::new("Send e-mail through SMTP", "Отправить письмо через SMTP"),
            description: Text::new(
                "Sends one message through your SMTP server, with attachments from Disk and links",
                "Отправляет письмо через ваш SMTP-сервер, с вложениями с Диска и по ссылкам",
            ),
            properties: vec![
                text(
                    "to",
                    PropType::String,
                    "To (addr or addr:Name)",
                    "Кому (адрес или адрес:Имя)",
                )
                .required()
                .multiple()
                .help(
                    "Recipients, one per value: ivan@acme.ru or ivan@acme.ru:Ivan Petrov. \
                     A bad address is skipped and noted in the log.",
                    "Получатели, по одному в значении: ivan@acme.ru или ivan@acme.ru:Иван Петров. \
                     Неверный адрес пропускается, это видно в журнале.",
                ),
                text("cc", PropType::String, "Cc", "Копия").multiple().help(
                    "Copy recipients, in the same form as To.",
                    "Получатели копии, в том же виде, что и «Кому».",
                ),
                text("bcc", PropType::String, "Bcc", "Скрытая копия")
                    .multiple()
                    .help(
                        "Hidden copy recipients, in the same form as To; the others do not see them.",
                        "Получатели скрытой копии, в том же виде, что и «Кому»; остальные их не видят.",
                    ),
                text("subject", PropType::String, "Subject", "Тема")
                    .required()
                    .help("The message's subject line.", "Тема письма."),
                text("body", PropType::Text, "Body", "Текст письма")
                    .required()
                    .help(
                        "The message: plain text, or HTML if the body type says so.",
                        "Текст письма: обычный текст или HTML, если выбран тип текста HTML.",
                    ),
                text("body_type", PropType::Select, "Body type", "Тип текста")
                    .options(&[
                        ("text", "Plain text", "Обычный текст"),
                        ("html", "HTML", "HTML-разметка"),
                    ])
                    .default("text")
                    .help(
                        "How the body is written: plain text or HTML markup.",
                        "Как написан текст письма: обычный текст или HTML-разметка.",
                    ),
                text(
                    "attach_disk_ids",
                    PropType::Int,
                    "Disk file IDs",
                    "ID файлов на Диске",
                )
                .multiple()
                .help(
                    "Files from the portal's Disk to attach, by file ID, one per value; the \
                     user the activity runs as needs access to them.",
                    "Файлы с Диска портала для вложения, по ID файла, по одному в значении; \
                     у пользователя, от имени которого выполняется действие, должен быть к ним доступ.",
                ),
                text(
                    "attach_urls",
                    PropType::String,
                    "Attachment links",
                    "Ссылки на вложения",
                )
                .multiple()
                .help(
                    "Direct https:// links to files to attach, one per value; the file name \
                     comes from the link. A file that cannot be fetched is left out and noted in the log.",
                    "Прямые ссылки https:// на файлы для вложения, по одной в значении; имя файла \
                     берётся из ссылки. Файл, который не удалось скачать, не вкладывается, это видно в журнале.",
                ),
                text("smtp_host", PropType::String, "SMTP server", "SMTP-сервер")
                    .required()
                    .help(
                        "The SMTP server's host name, e.g. smtp.yandex.ru.",
                        "Имя SMTP-сервера, например smtp.yandex.ru.",
                    ),
                text(
                    "smtp_security",
                    PropType::Select,
                    "Encryption",
                    "Шифрование",
                )
                .options(&[
                    ("ssl", "SSL/TLS (usually port 465)", "SSL/TLS (обычно порт 465)"),
                    ("starttls", "STARTTLS (usually port 587)", "STARTTLS (обычно порт 587)"),
                    ("none", "None (usually port 25)", "Без шифрования (обычно порт 25)"),
                ])
                .default("ssl")
                .help(
                    "How the connection is encrypted; ask your mail provider.",
                    "Как шифруется соединение; уточните у своего почтового сервиса.",
                ),
                text("smtp_port", PropType::Int, "SMTP port", "SMTP-порт")
                    .required()
                    .default(465)
                    .help(
                        "465 for SSL/TLS, 587 for STARTTLS, 25 without encryption.",
                        "465 для SSL/TLS, 587 для STARTTLS, 25 без шифрования.",
                    ),
                text(
                    "from",
                    PropType::String,
                    "From (addr or addr:Name)",
                    "От кого (адрес или адрес:Имя)",
                )
                .required()
                .help(
                    "The sender: sales@acme.ru or sales@acme.ru:Acme Sales. Most servers \
                     accept only their own account's address.",
                    "Отправитель: sales@acme.ru или sales@acme.ru:Отдел продаж. Большинство \
                     серверов принимают только адрес своей учётной записи.",
                ),
                text("smtp_auth", PropType::Bool, "Log in", "Авторизация")
                    .default("Y")
                    .help(
                        "Y: log in with the login and password below; N: send without logging in.",
                        "Y — входить с логином и паролем ниже; N — отправлять без входа.",
                    ),
                text("smtp_login", PropType::String, "Login", "Логин").help(
                    "The mailbox's login, usually the full address.",
                    "Логин почтового ящика, обычно полный адрес.",
                ),
                text("smtp_password", PropType::String, "Password", "Пароль")
                    .secret()
                    .help(
                    "The mailbox's password or app password. Stored encrypted and erased \
                     when the job is done.",
                    "Пароль почтового ящика или пароль приложения. Хранится в зашифрованном \
                     виде и удаляется после выполнения.",
                ),
            ],
            returns: vec![crate::values::result_property()],
        }
    }

    fn failure_values(&self) -> Map<String, Value> {
        crate::values::result_error()
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError> {
        // Before reading the input: a retry may no longer have the password (it is erased
        // with the job) and needs none to say the message already went out.
        let once = ctx
            .once_per_attempt(ACCEPTED, ATTEMPT, || {
                ActivityError::invalid(text!(
                    "an earlier attempt stopped while handing the message to the SMTP server; \
                     it may have been delivered, so it is not sent again",
                    "предыдущая попытка прервалась во время передачи письма SMTP-серверу; \
                     письмо могло быть доставлено, поэтому повторно оно не отправляется"
                ))
            })
            .await?;
        if let Some(Accepted { log_message }) = once.recorded() {
            return Ok(ok_output(text!(
                "already sent by an earlier attempt: {log_message}",
                "уже отправлено предыдущей попыткой: {log_message}"
            )));
        }
        let settings = Settings::read(input)?;
        let trust = Trust::from_file(ctx.config.extra_ca_file.as_deref())?;
        let fetched = if settings.disk_ids.is_empty() && settings.links.is_empty() {
            Fetched::default()
        } else {
            let downloader = downloader(ctx, &trust).await?;
            attachments::fetch_all(
                ctx,
                &downloader,
                &settings.disk_ids,
                &settings.links,
                Limits::from_config(&ctx.config),
            )
            .await?
        };
        let bytes = message::render(&message::Letter {
            from: &settings.from,
            recipients: &settings.recipients,
            subject: &settings.subject,
            body: &settings.body,
            html: settings.html,
            attachments: &fetched.files,
            message_id: format!("<b24flow.{}@{}>", ctx.job.id, settings.from.email.domain()),
        })?;
        let policy = ssrf::Guard::new(&ctx.config.fetch_allow);
        let mut session =
            Session::open(&settings.server, &trust, &policy, Timeouts::default()).await?;
        let accepted = once
            .run_per_attempt(ATTEMPT, || async {
                let delivery = session
                    .deliver(
                        &settings.from.email,
                        &settings.recipients.envelope(),
                        &bytes,
                    )
                    .await
                    .map_err(|failure| NotDone::Refused {
                        note: json!({ "error": failure.message }),
                        error: failure.into(),
                    })?;
                if delivery.accepted.is_empty() {
                    session.release();
                    return Err(NotDone::Refused {
                        error: nobody_accepted(&delivery),
                        note: json!({ "accepted": 0 }),
                    });
                }
                let reused = session.reused;
                let log_message = log_line(&settings, &fetched, &delivery, reused);
                session.release();
                tracing::info!(
                    recipients = delivery.accepted.len(),
                    refused = delivery.refused.len(),
                    attachments = fetched.files.len(),
                    reused,
                    "e-mail accepted by the SMTP server"
                );
                Ok(Accepted {
                    log_message: log_message.get(ctx.lang).to_string(),
                })
            })
            .await?;
        Ok(ok_output(Text::same(&accepted.into_value().log_message)))
    }
}

fn ok_output(log_message: Text) -> Output {
    let mut return_values = Map::new();
    return_values.insert("result".into(), json!("OK"));
    Output {
        return_values,
        log_message,
    }
}

/// Links and Disk downloads alike go through the outbound policy.
async fn downloader(
    ctx: &RunContext,
    trust: &Trust,
) -> Result<download::Downloader, ActivityError> {
    let guard = ssrf::Guard::new(&ctx.config.fetch_allow);
    download::Downloader::new(guard, trust.extra_roots_pem())
}

/// Every recipient refused: worth retrying only if some refusal was temporary (4xx).
fn nobody_accepted(d: &Delivery) -> ActivityError {
    let replies: Vec<String> = d
        .refused
        .iter()
        .map(|r| format!("{}: {}", r.address, r.reply))
        .collect();
    let kind = if d.refused.iter().any(|r| r.kind == ErrorKind::Transient) {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    };
    let replies = one_line(&replies.join("; "));
    ActivityError {
        kind,
        message: text!(
            "the SMTP server accepted no recipient ({replies})",
            "SMTP-сервер не принял ни одного получателя ({replies})"
        ),
    }
}

/// What happened, in one line for the workflow log.
fn log_line(s: &Settings, fetched: &Fetched, d: &Delivery, reused: bool) -> Text {
    let accepted: Vec<String> = d.accepted.iter().map(ToString::to_string).collect();
    let (count, list, files, reply) = (
        accepted.len(),
        accepted.join(", "),
        fetched.files.len(),
        &d.reply,
    );
    let mut parts = vec![text!(
        "e-mail accepted for {count} ({list}) with {files} attachment(s): {reply}",
        "письмо принято для получателей: {count} ({list}), вложений: {files}: {reply}"
    )];
    if reused {
        parts.push(text!(
            "reused connection",
            "соединение использовано повторно"
        ));
    }
    if !s.recipients.invalid.is_empty() {
        parts.push(text!(
            "not addresses, skipped: {}",
            "не адреса, пропущены: {}",
            quoted(&s.recipients.invalid)
        ));
    }
    for r in &d.refused {
        parts.push(text!(
            "refused by the server: {} ({})",
            "сервер отказал: {} ({})",
            r.address,
            r.reply
        ));
    }
    for problem in &fetched.problems {
        parts.push(text!(
            "attachment left out: {problem}",
            "вложение пропущено: {problem}"
        ));
    }
    let join = |lang: Lang| {
        let all: Vec<&str> = parts.iter().map(|p| p.get(lang)).collect();
        one_line(&all.join("; "))
    };
    Text {
        en: join(Lang::En),
        ru: join(Lang::Ru),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_follows_the_contract() {
        let def = SmtpSend.definition();
        let keys: Vec<&str> = def.properties.iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "to",
                "cc",
                "bcc",
                "subject",
                "body",
                "body_type",
                "attach_disk_ids",
                "attach_urls",
                "smtp_host",
                "smtp_security",
                "smtp_port",
                "from",
                "smtp_auth",
                "smtp_login",
                "smtp_password"
            ]
        );
        let reg = def.registration(
            "https://x.example/b24/activity",
            false,
            crate::schema::Lang::Ru,
        );
        assert_eq!(reg["PROPERTIES"]["smtp_port"]["Default"], 465);
        assert_eq!(reg["PROPERTIES"]["smtp_security"]["Default"], "ssl");
        assert_eq!(reg["PROPERTIES"]["to"]["Multiple"], "Y");
        assert_eq!(SmtpSend.failure_values()["result"], "ERROR");
    }

    #[test]
    fn a_refusal_is_retried_only_when_it_was_temporary() {
        let refusal = |kind| transport::Refusal {
            address: "a@example.com".parse().expect("address"),
            reply: "550 5.1.1 no such user".into(),
            kind,
        };
        let permanent = Delivery {
            refused: vec![refusal(ErrorKind::Permanent)],
            ..Delivery::default()
        };
        let err = nobody_accepted(&permanent);
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert!(
            err.message.en.contains("550 5.1.1 no such user"),
            "{}",
            err.message
        );
        let temporary = Delivery {
            refused: vec![refusal(ErrorKind::Permanent), refusal(ErrorKind::Transient)],
            ..Delivery::default()
        };
        assert_eq!(nobody_accepted(&temporary).kind, ErrorKind::Transient);
    }
}
