//! `smtp_send` against a real SMTP server process (aiosmtpd) on loopback: plain, implicit
//! TLS and STARTTLS with a test CA, AUTH, recipients, HTML and Cyrillic text, Disk and link
//! attachments, refusals, retries and what happens to the password.
use serde_json::{json, Value};

use crate::support::smtp::{
    spawn_app_for_smtp, FileServer, Mode, Served, SmtpOptions, SmtpServer, TestCerts,
};
use crate::support::*;

const PASSWORD: &str = "S3cret-pa55-b24flow";

/// A call to `server` in plain mode without AUTH; `extra` overrides any key.
fn call(server: &SmtpServer, extra: Value) -> Value {
    let mut props = json!({
        "to": ["anna@example.com"],
        "subject": "Hello",
        "body": "Body text",
        "smtp_host": "127.0.0.1",
        "smtp_port": server.port.to_string(),
        "smtp_security": "none",
        "from": "robot@b24flow.test:Робот",
        "smtp_auth": "N",
    });
    for (k, v) in extra.as_object().expect("object") {
        props[k] = v.clone();
    }
    props
}

/// The last activity job: (state, attempt).
async fn job_state(app: &TestApp) -> (String, i32) {
    let client = app.pool.get().await.expect("db");
    let row = client
        .query_one(
            "SELECT state, attempt FROM jobs WHERE kind = 'activity' ORDER BY created_at DESC LIMIT 1",
            &[],
        )
        .await
        .expect("job");
    (row.get(0), row.get(1))
}

async fn wait_job_ended(app: &TestApp) {
    wait_until(|| async { matches!(job_state(app).await.0.as_str(), "succeeded" | "failed") })
        .await;
}

fn error_text(sent: &b24flow_sim::EventSend) -> String {
    sent.return_values["error_text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_message_reaches_to_cc_and_bcc_while_bcc_stays_out_of_the_headers() {
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let before = app.portal.request_count();
    let sent = app
        .run_activity(
            "smtp_send",
            call(
                &server,
                json!({
                    "to": ["anna@example.com:Анна Кох", " ben@example.com "],
                    "cc": "carl@example.com:Carl Doe",
                    "bcc": ["hidden@example.com"],
                    "body": "Plain body\nsecond line",
                }),
            ),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    assert_eq!(sent.return_values["result"], "OK");
    let mails = server.wait_for_messages(1).await;
    assert_eq!(mails.len(), 1, "one message for everybody");
    let mail = &mails[0];
    assert_eq!(mail.mail_from(), "robot@b24flow.test");
    assert_eq!(
        mail.rcpt_tos(),
        [
            "anna@example.com",
            "ben@example.com",
            "carl@example.com",
            "hidden@example.com"
        ]
    );
    assert_eq!(
        mail.addresses("to"),
        [
            ("Анна Кох".to_string(), "anna@example.com".to_string()),
            (String::new(), "ben@example.com".to_string())
        ]
    );
    assert_eq!(
        mail.addresses("cc"),
        [("Carl Doe".to_string(), "carl@example.com".to_string())]
    );
    assert_eq!(
        mail.addresses("from"),
        [("Робот".to_string(), "robot@b24flow.test".to_string())]
    );
    assert!(mail.header("bcc").is_empty(), "{:?}", mail.0);
    assert!(!mail.0["message"]["headers"]
        .to_string()
        .contains("hidden@example.com"));
    let (content_type, text) = mail.body();
    assert_eq!(content_type, "text/plain");
    assert_eq!(
        text.replace("\r\n", "\n").trim_end(),
        "Plain body\nsecond line"
    );
    assert!(!mail.tls());
    assert!(
        sent.log_message
            .starts_with("письмо принято для получателей: 4 (anna@example.com"),
        "{}",
        sent.log_message
    );
    // No portal request but the answer to the workflow.
    assert_eq!(app.portal.request_count() - before, 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_a_login_delivers_html_with_a_cyrillic_subject() {
    let certs = TestCerts::generate();
    let server = SmtpServer::start(SmtpOptions {
        mode: Some(Mode::Ssl),
        certs: Some(&certs),
        login: Some(("robot", PASSWORD)),
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, Some(&certs.ca_file), &[]).await;
    let sent = app
        .run_activity(
            "smtp_send",
            call(
                &server,
                json!({
                    "smtp_host": "localhost",
                    "smtp_security": "ssl",
                    "smtp_auth": "Y",
                    "smtp_login": "robot",
                    "smtp_password": PASSWORD,
                    "subject": "Счёт №42 — оплата до пятницы",
                    "body_type": "html",
                    "body": "<p>Здравствуйте, <b>Анна</b>!</p>",
                }),
            ),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    let mail = &server.wait_for_messages(1).await[0];
    assert!(mail.tls());
    assert_eq!(mail.auth_login(), Some("robot"));
    assert_eq!(mail.subject(), "Счёт №42 — оплата до пятницы");
    let (content_type, text) = mail.body();
    assert_eq!(content_type, "text/html");
    assert!(text.contains("<p>Здравствуйте, <b>Анна</b>!</p>"), "{text}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_upgrades_the_connection_before_logging_in() {
    let certs = TestCerts::generate();
    let server = SmtpServer::start(SmtpOptions {
        mode: Some(Mode::StartTls),
        certs: Some(&certs),
        login: Some(("robot", PASSWORD)),
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, Some(&certs.ca_file), &[]).await;
    let props = json!({
        "smtp_security": "starttls", "smtp_auth": "Y", "smtp_login": "robot", "smtp_password": PASSWORD,
    });
    let sent = app.run_activity("smtp_send", call(&server, props)).await;
    assert_eq!(error_text(&sent), "");
    let mail = &server.wait_for_messages(1).await[0];
    assert!(mail.tls(), "the message went over the upgraded connection");
    assert_eq!(mail.auth_login(), Some("robot"));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_required_against_a_server_without_it_fails_at_once_and_sends_nothing() {
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let sent = app
        .run_activity(
            "smtp_send",
            call(&server, json!({ "smtp_security": "starttls" })),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(
        error_text(&sent).contains("does not offer STARTTLS"),
        "{}",
        error_text(&sent)
    );
    wait_job_ended(&app).await;
    assert_eq!(
        job_state(&app).await,
        ("failed".to_string(), 1),
        "no retries"
    );
    assert!(server.messages().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_worker_does_not_trust_is_refused() {
    let certs = TestCerts::generate();
    let server = SmtpServer::start(SmtpOptions {
        mode: Some(Mode::Ssl),
        certs: Some(&certs),
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let sent = app
        .run_activity(
            "smtp_send",
            call(&server, json!({ "smtp_security": "ssl" })),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(
        error_text(&sent).to_lowercase().contains("certificate"),
        "{}",
        error_text(&sent)
    );
    wait_job_ended(&app).await;
    assert_eq!(job_state(&app).await, ("failed".to_string(), 1));
    assert!(server.messages().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_a_permanent_error_and_nothing_is_sent() {
    let certs = TestCerts::generate();
    let server = SmtpServer::start(SmtpOptions {
        mode: Some(Mode::StartTls),
        certs: Some(&certs),
        login: Some(("robot", PASSWORD)),
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, Some(&certs.ca_file), &[]).await;
    let props = json!({
        "smtp_security": "starttls", "smtp_auth": "Y", "smtp_login": "robot", "smtp_password": "wrong-password",
    });
    let sent = app.run_activity("smtp_send", call(&server, props)).await;
    assert_eq!(sent.return_values["result"], "ERROR");
    let error = error_text(&sent);
    assert!(
        error.contains("refused the login") && error.contains("535"),
        "{error}"
    );
    assert!(!error.contains("wrong-password"));
    wait_job_ended(&app).await;
    assert_eq!(
        job_state(&app).await,
        ("failed".to_string(), 1),
        "no retries"
    );
    assert!(server.messages().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_is_named_in_the_log_and_the_others_get_the_message() {
    let server = SmtpServer::start(SmtpOptions {
        refuse: vec!["ghost@example.com"],
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let sent = app
        .run_activity(
            "smtp_send",
            call(&server, json!({ "to": ["ghost@example.com", "anna@example.com"], "cc": ["not-an-address"] })),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    assert_eq!(sent.return_values["result"], "OK");
    let mail = &server.wait_for_messages(1).await[0];
    assert_eq!(mail.rcpt_tos(), ["anna@example.com"]);
    let log = &sent.log_message;
    assert!(
        log.contains("ghost@example.com") && log.contains("550"),
        "{log}"
    );
    assert!(log.contains("\"not-an-address\""), "{log}");
    assert!(!log.contains('\n'));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_recipient_is_refused_the_result_is_error_with_the_servers_reply() {
    let server = SmtpServer::start(SmtpOptions {
        refuse: vec!["ghost@example.com"],
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let sent = app
        .run_activity(
            "smtp_send",
            call(&server, json!({ "to": "ghost@example.com" })),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    let error = error_text(&sent);
    assert!(
        error.contains("550") && error.contains("User unknown"),
        "{error}"
    );
    wait_job_ended(&app).await;
    assert_eq!(job_state(&app).await, ("failed".to_string(), 1));
    assert!(server.messages().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_server_rejects_is_an_error_with_its_reply() {
    let server = SmtpServer::start(SmtpOptions {
        reject_data: true,
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let sent = app
        .run_activity("smtp_send", call(&server, json!({})))
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(
        error_text(&sent).contains("554 5.7.1 Message rejected"),
        "{}",
        error_text(&sent)
    );
    wait_job_ended(&app).await;
    assert_eq!(job_state(&app).await, ("failed".to_string(), 1));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_refusal_is_retried_with_backoff_until_the_attempts_run_out() {
    let server = SmtpServer::start(SmtpOptions {
        defer: vec!["busy@example.com"],
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let sent = app
        .run_activity(
            "smtp_send",
            call(&server, json!({ "to": "busy@example.com" })),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    assert!(error_text(&sent).contains("450"), "{}", error_text(&sent));
    wait_job_ended(&app).await;
    let (state, attempts) = job_state(&app).await;
    assert_eq!(state, "failed");
    assert!(attempts > 1, "a 4xx is retried; attempts: {attempts}");
    assert!(server.messages().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_to_address_the_call_fails_at_once_naming_the_bad_values() {
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let sent = app
        .run_activity(
            "smtp_send",
            call(
                &server,
                json!({ "to": ["nobody", "also@"], "cc": "carl@example.com" }),
            ),
        )
        .await;
    assert_eq!(sent.return_values["result"], "ERROR");
    let error = error_text(&sent);
    assert!(
        error.contains("\"nobody\"") && error.contains("\"also@\""),
        "{error}"
    );
    wait_job_ended(&app).await;
    assert_eq!(job_state(&app).await, ("failed".to_string(), 1));
    assert!(server.messages().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_message_to_the_same_server_and_login_reuses_the_connection() {
    let server = SmtpServer::start(SmtpOptions {
        login: Some(("robot", PASSWORD)),
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let login = json!({ "smtp_auth": "Y", "smtp_login": "robot", "smtp_password": PASSWORD });
    for _ in 0..2 {
        let sent = app
            .run_activity("smtp_send", call(&server, login.clone()))
            .await;
        assert_eq!(error_text(&sent), "");
    }
    // Another password never gets the authenticated connection.
    let wrong = json!({ "smtp_auth": "Y", "smtp_login": "robot", "smtp_password": "other" });
    let sent = app.run_activity("smtp_send", call(&server, wrong)).await;
    assert!(error_text(&sent).contains("535"), "{}", error_text(&sent));
    let mails = server.wait_for_messages(2).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[0].connection(),
        mails[1].connection(),
        "one connection for both"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_and_link_attachments_arrive_with_their_names_and_types() {
    let files = FileServer::start(vec![
        (
            "/download",
            Served {
                body: b"%PDF-1.4 price list".to_vec(),
                content_type: Some("application/octet-stream".into()),
                content_disposition: Some(
                    "attachment; filename*=UTF-8''%D0%9F%D1%80%D0%B0%D0%B9%D1%81.pdf".into(),
                ),
                ..Served::default()
            },
        ),
        (
            "/files/report.csv",
            Served {
                body: b"a;b\n1;2\n".to_vec(),
                ..Served::default()
            },
        ),
    ])
    .await;
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let app = spawn_app_for_smtp(&server, None, &["127.0.0.1/32"]).await;
    let contract = b"contract body bytes".to_vec();
    let disk_id = app.portal.add_disk_file("Договор.docx", contract.clone());
    let before = app.portal.request_count();
    let sent = app
        .run_activity(
            "smtp_send",
            call(
                &server,
                json!({
                    "attach_disk_ids": [disk_id.to_string()],
                    "attach_urls": [files.url("/download?sig=secret"), files.url("/files/report.csv")],
                }),
            ),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    assert!(
        sent.log_message.contains("вложений: 3"),
        "{}",
        sent.log_message
    );
    let mail = &server.wait_for_messages(1).await[0];
    let attachments = mail.attachments();
    let names: Vec<&str> = attachments
        .iter()
        .map(|a| a["filename"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["Договор.docx", "Прайс.pdf", "report.csv"]);
    let types: Vec<&str> = attachments
        .iter()
        .map(|a| a["content_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/pdf",
            "text/csv"
        ]
    );
    assert_eq!(attachments[0]["size"], contract.len());
    assert_eq!(
        attachments[2]["text"]
            .as_str()
            .map(|t| t.replace("\r\n", "\n")),
        Some("a;b\n1;2\n".into())
    );
    // One batch for the metadata, one download from the portal, one answer to the workflow.
    assert_eq!(app.portal.method_calls("disk.file.get"), 1);
    assert_eq!(app.portal.disk_downloads(disk_id), 1);
    assert_eq!(app.portal.request_count() - before, 3);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_that_cannot_be_fetched_are_logged_and_the_message_still_goes() {
    let big = vec![b'x'; 26 * 1024 * 1024];
    let files = FileServer::start(vec![(
        "/big.bin",
        Served {
            body: big.clone(),
            ..Served::default()
        },
    )])
    .await;
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let app = spawn_app_for_smtp(&server, None, &["127.0.0.1/32"]).await;
    let oversized = app.portal.add_disk_file("huge.zip", big);
    let trashed = app.portal.add_disk_file("old.txt", b"old".to_vec());
    app.portal.trash_disk_file(trashed);
    let forbidden = app
        .portal
        .add_disk_file("secret.txt", b"top secret".to_vec());
    app.portal.deny_disk_file(forbidden);
    let fine = app.portal.add_disk_file("fine.txt", b"fine".to_vec());
    let sent = app
        .run_activity(
            "smtp_send",
            call(
                &server,
                json!({
                    "attach_disk_ids": [oversized, trashed, forbidden, 987654, fine],
                    "attach_urls": [files.url("/big.bin"), files.url("/missing.txt?token=abc")],
                }),
            ),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    assert_eq!(sent.return_values["result"], "OK");
    let log = &sent.log_message;
    assert!(
        log.contains(&format!(
            "Disk file {oversized} (huge.zip) is 27262976 bytes, over the limit"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Disk file {trashed} (old.txt) is in the portal's trash"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("Disk file {forbidden}")) && log.contains("ACCESS_DENIED"),
        "{log}"
    );
    assert!(
        log.contains("Disk file 987654") && log.contains("ERROR_NOT_FOUND"),
        "{log}"
    );
    assert!(
        log.contains("/big.bin: is 27262976 bytes, over the limit"),
        "{log}"
    );
    assert!(
        log.contains("/missing.txt: the server answered HTTP 404") && !log.contains("token=abc"),
        "{log}"
    );
    assert!(
        !log.contains("download.json"),
        "Disk links carry a token: {log}"
    );
    // The oversized file was judged by its SIZE, never downloaded.
    assert_eq!(app.portal.disk_downloads(oversized), 0);
    let mail = &server.wait_for_messages(1).await[0];
    let names: Vec<String> = mail
        .attachments()
        .iter()
        .map(|a| a["filename"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["fine.txt"]);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_loopback_address_is_refused_unless_allowed() {
    let files = FileServer::start(vec![(
        "/internal.txt",
        Served {
            body: b"internal".to_vec(),
            ..Served::default()
        },
    )])
    .await;
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let sent = app
        .run_activity(
            "smtp_send",
            call(
                &server,
                json!({ "attach_urls": [files.url("/internal.txt"), "http://169.254.169.254/latest/meta-data"] }),
            ),
        )
        .await;
    assert_eq!(error_text(&sent), "");
    let log = &sent.log_message;
    assert!(
        log.contains("loopback") && log.contains("B24FLOW_FETCH_ALLOW"),
        "{log}"
    );
    assert!(log.contains("link-local"), "{log}");
    assert_eq!(files.hits("/internal.txt"), 0, "never contacted");
    let mail = &server.wait_for_messages(1).await[0];
    assert!(mail.attachments().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smtp_password_never_reaches_the_job_row_its_history_or_the_workflow_and_is_erased() {
    let server = SmtpServer::start(SmtpOptions {
        login: Some(("robot", PASSWORD)),
        ..SmtpOptions::default()
    })
    .await;
    let app = spawn_app_for_smtp(&server, None, &[]).await;
    let props = json!({ "smtp_auth": "Y", "smtp_login": "robot", "smtp_password": PASSWORD });
    let fired = app.fire("smtp_send", call(&server, props)).await;
    // While the job waits in the queue or runs, the password is only in job_secrets, sealed.
    let client = app.pool.get().await.expect("db");
    let sealed: Vec<Vec<u8>> = client
        .query("SELECT secret_enc FROM job_secrets", &[])
        .await
        .expect("secrets")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for s in &sealed {
        assert!(
            !String::from_utf8_lossy(s).contains(PASSWORD),
            "stored encrypted"
        );
    }
    let sent = app
        .portal
        .wait_event_send(&fired.event_token, WAIT)
        .await
        .expect("answered");
    assert_eq!(error_text(&sent), "");
    assert_eq!(
        server.wait_for_messages(1).await[0].auth_login(),
        Some("robot")
    );
    wait_job_ended(&app).await;
    let everything: String = client
        .query_one(
            "SELECT row_to_json(j)::text || coalesce((SELECT string_agg(row_to_json(e)::text, ' ') FROM job_events e WHERE e.job_id = j.id), '')
                 || coalesce((SELECT string_agg(row_to_json(s)::text, ' ') FROM job_side_effects s WHERE s.job_id = j.id), '')
             FROM jobs j WHERE kind = 'activity'",
            &[],
        )
        .await
        .expect("job")
        .get(0);
    assert!(
        everything.contains("robot"),
        "the login is not secret: {everything}"
    );
    assert!(!everything.contains(PASSWORD), "{everything}");
    let left: i64 = client
        .query_one("SELECT count(*) FROM job_secrets", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "erased when the job ended");
    assert!(!sent.return_values.to_string().contains(PASSWORD));
    assert!(!sent.log_message.contains(PASSWORD));
    app.cleanup().await;
}
