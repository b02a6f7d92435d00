//! Every activity that creates something, under one scenario: an earlier attempt of its
//! job died before the portal acted, after it acted (its answer lost), or after recording
//! what it made. A retry never does it twice (SPEC.md "Guarantees"); where nobody can look
//! up whether it happened (an e-mail, a phone call), the retry fails rather than risk it.
use serde_json::{json, Value};

use crate::crm_invoice::{props as invoice_properties, seed};
use crate::support::smtp::{spawn_app_for_smtp, SmtpOptions, SmtpServer};
use crate::support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Creator {
    CrmActivityAdd,
    CrmActivityDelete,
    CrmFeedPost,
    InvoiceFromDeal,
    SmtpSend,
    CallbackCall,
}

#[derive(Clone, Copy, Debug)]
enum Died {
    /// It marked the side effect started and stopped before its request.
    BeforeThePortalActed,
    /// Its request did the work and the answer was lost.
    AfterThePortalActed,
    /// It recorded what it made and stopped before answering the workflow.
    AfterRecordingIt,
}

/// The app (and SMTP server) one activity runs against, and what it was given to work on.
struct Subject {
    creator: Creator,
    app: TestApp,
    smtp: Option<SmtpServer>,
    /// A CRM item the activity works on (a lead, a deal for the invoice).
    item: u64,
    /// Activities planted for `crm_activity_delete` to delete.
    planted: usize,
}

impl Creator {
    fn code(self) -> &'static str {
        match self {
            Creator::CrmActivityAdd => "crm_activity_add",
            Creator::CrmActivityDelete => "crm_activity_delete",
            Creator::CrmFeedPost => "crm_feed_post",
            Creator::InvoiceFromDeal => "invoice_from_deal",
            Creator::SmtpSend => "smtp_send",
            Creator::CallbackCall => "callback_call",
        }
    }

    /// Whether a retry can ask the portal what an interrupted attempt did.
    fn looked_up(self) -> bool {
        !matches!(self, Creator::SmtpSend | Creator::CallbackCall)
    }

    /// The marker of what was made, and the one an interrupted attempt (number 1) left.
    fn markers(self) -> (&'static str, &'static str) {
        match self {
            Creator::CrmActivityAdd => ("crm.activity", "crm.activity"),
            Creator::CrmActivityDelete => ("crm.activity.delete", "crm.activity.delete"),
            Creator::CrmFeedPost => ("crm.timeline.comment", "crm.timeline.comment"),
            Creator::InvoiceFromDeal => ("invoice", "invoice"),
            Creator::SmtpSend => ("smtp.accepted", "smtp.attempt.1"),
            Creator::CallbackCall => ("callback.done", "callback.attempt.1"),
        }
    }

    /// What an attempt that finished recorded, and the return value the workflow then gets.
    fn recorded(self) -> (Value, Option<(&'static str, Value)>) {
        match self {
            Creator::CrmActivityAdd => (
                json!({"activity_id": 9001}),
                Some(("activity_id", json!(9001))),
            ),
            Creator::CrmActivityDelete => (json!(true), Some(("result", json!("true")))),
            Creator::CrmFeedPost => (
                json!({"comment_id": 9002}),
                Some(("comment_id", json!(9002))),
            ),
            Creator::InvoiceFromDeal => (
                json!({"invoice_id": 9003, "payment_url": "https://pay.example/9003", "invoice_number": "N-9003"}),
                Some(("invoice_id", json!(9003))),
            ),
            Creator::SmtpSend => (
                json!({"log_message": "e-mail accepted for 1"}),
                Some(("result", json!("OK"))),
            ),
            Creator::CallbackCall => (
                json!({"call_id": "callback.earlier.1"}),
                Some(("call_id", json!("callback.earlier.1"))),
            ),
        }
    }

    /// The request whose answer the simulated portal loses after doing its work.
    fn request(self) -> &'static str {
        match self {
            Creator::CrmActivityAdd => "crm.activity.add",
            Creator::CrmActivityDelete => "crm.activity.delete",
            Creator::CrmFeedPost => "crm.timeline.comment.add",
            Creator::InvoiceFromDeal => "crm.item.add",
            Creator::SmtpSend | Creator::CallbackCall => "",
        }
    }
}

impl Subject {
    async fn new(creator: Creator) -> Self {
        let (app, smtp) = match creator {
            Creator::SmtpSend => {
                let server = SmtpServer::start(SmtpOptions::default()).await;
                (spawn_app_for_smtp(&server, None, &[]).await, Some(server))
            }
            _ => (spawn_english_app().await, None),
        };
        let item = match creator {
            Creator::InvoiceFromDeal => seed(&app, true, true).deal,
            _ => app.portal.crm_add_item(1, json!({"title": "Lead"})),
        };
        if creator == Creator::CallbackCall {
            app.portal.add_phone_line("sip7", "Office PBX");
        }
        Self {
            creator,
            app,
            smtp,
            item,
            planted: 0,
        }
    }

    /// The call's properties; `run` tells runs apart where the portal is searched by text.
    fn properties(&mut self, run: &str) -> Value {
        let item = self.item.to_string();
        match self.creator {
            Creator::CrmActivityAdd => json!({
                "subject": format!("Meet ({run})"), "type": "meeting", "description": "d",
                "owner_type": "lead", "owner_id": item, "priority": "medium",
                "communication": "+49 30 1"
            }),
            Creator::CrmActivityDelete => {
                let id = self.app.portal.crm_add_activity(1, self.item, run);
                self.planted += 1;
                json!({ "activity_id": id.to_string() })
            }
            Creator::CrmFeedPost => json!({
                "entity_type": "lead", "entity_id": item, "title": run, "message": "M"
            }),
            Creator::InvoiceFromDeal => invoice_properties(self.item, "smart"),
            Creator::SmtpSend => {
                let server = self.smtp.as_ref().expect("smtp server");
                json!({
                    "to": ["anna@example.com"], "subject": run, "body": "Body text",
                    "smtp_host": "127.0.0.1", "smtp_port": server.port.to_string(),
                    "smtp_security": "none", "from": "robot@b24flow.test", "smtp_auth": "N",
                })
            }
            Creator::CallbackCall => json!({
                "phone": "+79123456789", "line": "sip7", "text": format!("Callback ({run})")
            }),
        }
    }

    /// How many things the activity made (for a delete: how many it deleted).
    fn made(&self) -> usize {
        let portal = &self.app.portal;
        match self.creator {
            Creator::CrmActivityAdd => portal.crm_activities().len(),
            Creator::CrmActivityDelete => self.planted - portal.crm_activities().len(),
            Creator::CrmFeedPost => portal.crm_comments().len(),
            Creator::InvoiceFromDeal => portal.crm_smart_invoices().len(),
            Creator::SmtpSend => self.smtp.as_ref().map_or(0, |s| s.messages().len()),
            Creator::CallbackCall => portal.callback_calls().len(),
        }
    }

    /// The ID of the newest thing made, as the workflow should get it.
    fn newest(&self) -> Option<(&'static str, Value)> {
        let portal = &self.app.portal;
        let newest = |items: Vec<Value>, field: &str| -> Option<u64> {
            items
                .iter()
                .filter_map(|v| {
                    let id = &v[field];
                    id.as_u64()
                        .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
                })
                .max()
        };
        let (key, id) = match self.creator {
            Creator::CrmActivityAdd => ("activity_id", newest(portal.crm_activities(), "ID")),
            Creator::CrmFeedPost => ("comment_id", newest(portal.crm_comments(), "ID")),
            Creator::InvoiceFromDeal => ("invoice_id", newest(portal.crm_smart_invoices(), "id")),
            _ => return None,
        };
        Some((key, json!(id.expect("an ID"))))
    }

    async fn marker_state(&self, event_token: &str, key: &str) -> Option<String> {
        let id = self.app.job_id_of(event_token).await;
        let client = self.app.pool.get().await.expect("db");
        client
            .query_opt(
                "SELECT state FROM job_side_effects WHERE job_id = $1 AND key = $2",
                &[&id, &key],
            )
            .await
            .expect("marker")
            .map(|row| row.get(0))
    }

    /// Runs the activity's job after an earlier attempt died as `died`.
    async fn after(&mut self, died: Died) -> b24flow_sim::EventSend {
        let properties = self.properties(&format!("{died:?}"));
        let code = self.creator.code();
        let (done, interrupted) = self.creator.markers();
        if let Died::AfterThePortalActed = died {
            if self.creator.looked_up() {
                self.app.portal.crm_fail_after(self.creator.request());
                return self.app.run_activity(code, properties).await;
            }
        }
        self.app.stop_worker().await;
        let fired = self.app.fire(code, properties).await;
        match died {
            Died::AfterRecordingIt => {
                let (value, _) = self.creator.recorded();
                self.app
                    .mark_side_effect_done(&fired.event_token, done, value)
                    .await;
            }
            // Nobody can tell these two apart for an e-mail or a call.
            Died::BeforeThePortalActed | Died::AfterThePortalActed => {
                self.app
                    .mark_side_effect_started(&fired.event_token, 1, interrupted)
                    .await;
            }
        }
        self.app.start_worker();
        self.app
            .portal
            .wait_event_send(&fired.event_token, WAIT)
            .await
            .expect("answered")
    }
}

fn error_text(sent: &b24flow_sim::EventSend) -> &str {
    sent.return_values["error_text"]
        .as_str()
        .unwrap_or_default()
}

fn mentions_an_earlier_attempt(text: &str) -> bool {
    [
        "earlier attempt",
        "interrupted attempt",
        "предыдущей попыткой",
        "прерванной попытки",
    ]
    .iter()
    .any(|said| text.contains(said))
}

async fn a_retry_never_repeats_the_side_effect_of(creator: Creator) {
    let mut subject = Subject::new(creator).await;
    let code = creator.code();

    // A run that nothing interrupts makes it once and records it.
    let properties = subject.properties("fresh");
    let fired = subject.app.fire(code, properties).await;
    let sent = subject
        .app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered");
    assert_eq!(error_text(&sent), "", "{code}: {}", sent.log_message);
    assert_eq!(subject.made(), 1, "{code}");
    wait_until(|| async {
        subject
            .marker_state(&fired.event_token, creator.markers().0)
            .await
            .as_deref()
            == Some("done")
    })
    .await;

    for died in [
        Died::AfterRecordingIt,
        Died::BeforeThePortalActed,
        Died::AfterThePortalActed,
    ] {
        let before = subject.made();
        let sent = subject.after(died).await;
        let made = subject.made() - before;
        let case = format!("{code}, died {died:?}");
        match (died, creator.looked_up()) {
            (Died::AfterRecordingIt, _) => {
                assert_eq!(error_text(&sent), "", "{case}: {}", sent.log_message);
                assert_eq!(made, 0, "{case}: the record is the answer");
                assert!(
                    mentions_an_earlier_attempt(&sent.log_message),
                    "{case}: {}",
                    sent.log_message
                );
                let (_, answer) = creator.recorded();
                if let Some((key, value)) = answer {
                    assert_eq!(sent.return_values[key], value, "{case}");
                }
            }
            (_, true) => {
                assert_eq!(error_text(&sent), "", "{case}: {}", sent.log_message);
                assert_eq!(made, 1, "{case}: made exactly once");
                if let Some((key, value)) = subject.newest() {
                    assert_eq!(sent.return_values[key], value, "{case}: its own ID");
                }
                if let Died::AfterThePortalActed = died {
                    assert!(
                        mentions_an_earlier_attempt(&sent.log_message),
                        "{case}: {}",
                        sent.log_message
                    );
                }
            }
            (_, false) => {
                assert_eq!(sent.return_values["result"], "ERROR", "{case}");
                let error = error_text(&sent);
                assert!(
                    error.contains("may have") || error.contains("могло"),
                    "{case}: {error}"
                );
                assert_eq!(made, 0, "{case}: not done again");
            }
        }
    }
    if creator == Creator::CallbackCall {
        assert_eq!(
            subject.app.portal.method_calls("voximplant.callback.start"),
            1,
            "only the uninterrupted run asked for a call"
        );
    }
    subject.app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_repeats_crm_activity_add() {
    a_retry_never_repeats_the_side_effect_of(Creator::CrmActivityAdd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_repeats_crm_activity_delete() {
    a_retry_never_repeats_the_side_effect_of(Creator::CrmActivityDelete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_repeats_crm_feed_post() {
    a_retry_never_repeats_the_side_effect_of(Creator::CrmFeedPost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_repeats_invoice_from_deal() {
    a_retry_never_repeats_the_side_effect_of(Creator::InvoiceFromDeal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_repeats_smtp_send() {
    a_retry_never_repeats_the_side_effect_of(Creator::SmtpSend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_repeats_callback_call() {
    a_retry_never_repeats_the_side_effect_of(Creator::CallbackCall).await;
}
