//! The MIME message: headers with UTF-8 names and subject encoded by lettre (RFC 2047),
//! the body as plain text or HTML, attachments as `multipart/mixed`. Bcc recipients are
//! only in the envelope, never in a header.
use lettre::address::Envelope;
use lettre::message::{
    header::ContentType, Attachment as MimeAttachment, Mailbox, MultiPart, SinglePart,
};
use lettre::Message;

use super::attachments::Attachment;
use super::recipients::Recipients;
use crate::activity::ActivityError;

pub struct Letter<'a> {
    pub from: &'a Mailbox,
    pub recipients: &'a Recipients,
    pub subject: &'a str,
    pub body: &'a str,
    pub html: bool,
    pub attachments: &'a [Attachment],
    /// Stable across retries, so a receiving system can recognise a duplicate.
    pub message_id: String,
}

/// The message as it goes over the wire after DATA.
pub fn render(letter: &Letter<'_>) -> Result<Vec<u8>, ActivityError> {
    let mut builder = Message::builder()
        .from(letter.from.clone())
        .subject(letter.subject)
        .message_id(Some(letter.message_id.clone()));
    for to in &letter.recipients.to {
        builder = builder.to(to.clone());
    }
    for cc in &letter.recipients.cc {
        builder = builder.cc(cc.clone());
    }
    let envelope = Envelope::new(
        Some(letter.from.email.clone()),
        letter.recipients.envelope(),
    )
    .map_err(|e| ActivityError::invalid(format!("no recipients: {e}")))?;
    builder = builder.envelope(envelope);
    let text = if letter.html {
        SinglePart::builder()
            .header(ContentType::TEXT_HTML)
            .body(letter.body.to_string())
    } else {
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(letter.body.to_string())
    };
    let message = if letter.attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut mixed = MultiPart::mixed().singlepart(text);
        for a in letter.attachments {
            mixed = mixed.singlepart(
                MimeAttachment::new(a.name.clone()).body(a.bytes.clone(), a.content_type.clone()),
            );
        }
        builder.multipart(mixed)
    };
    message
        .map(|m| m.formatted())
        .map_err(|e| ActivityError::invalid(format!("the message cannot be built: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_stays_out_of_the_headers_and_utf8_is_encoded() {
        let recipients = Recipients::parse(
            &["to@example.com:Иван Петров".into()],
            &["cc@example.com".into()],
            &["hidden@example.com".into()],
        );
        let from =
            super::super::recipients::parse_mailbox("from@example.com:Отдел продаж").expect("from");
        let bytes = render(&Letter {
            from: &from,
            recipients: &recipients,
            subject: "Счёт №5",
            body: "Здравствуйте!",
            html: false,
            attachments: &[],
            message_id: "<b24flow.1@example.com>".into(),
        })
        .expect("message");
        let text = String::from_utf8(bytes).expect("ascii");
        assert!(text.is_ascii(), "headers and body are 7-bit encoded");
        assert!(!text.contains("hidden@example.com"), "{text}");
        assert!(text.contains("Cc: cc@example.com"), "{text}");
        assert!(text.contains("Subject: =?utf-8?"), "{text}");
        assert!(
            text.contains("Message-ID: <b24flow.1@example.com>"),
            "{text}"
        );
    }
}
