//! The SMTP conversation: connect (implicit TLS, required STARTTLS or plain), AUTH, then
//! one transaction with each recipient asked for separately, so one refused address does
//! not stop the others. Every step has a deadline. What each failure is ([`fault_of`] for
//! lettre's errors) is read here; which faults are worth another try is decided in
//! `b24flow_common::error_kind`.
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use b24flow_common::error_kind::{Classify, ErrorKind, SmtpFault};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::Error as SmtpError;
use lettre::Address;

use super::pool::{self, PoolKey};
use super::ssrf::{Guard, Refused};
use crate::activity::ActivityError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Security {
    /// TLS from the first byte (usually port 465).
    Ssl,
    /// Plain connect, then STARTTLS; a server that does not offer it is an error, never a
    /// silent fallback to plain text (usually port 587).
    StartTls,
    /// No encryption (usually port 25).
    None,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::Ssl => 465,
            Security::StartTls => 587,
            Security::None => 25,
        }
    }
}

/// Where and how to connect. The password stays out of `Debug`.
#[derive(Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("login", &self.credentials.as_ref().map(|(l, _)| l))
            .finish()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect, TLS, greeting and EHLO together.
    pub connect: Duration,
    /// Each command (AUTH, MAIL, RCPT, DATA, NOOP).
    pub command: Duration,
    /// The message body up to the server's final reply (RFC 5321 §4.5.3.2.6 allows 10 min).
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(60),
            data: Duration::from_secs(300),
        }
    }
}

/// A step of the conversation, to say where it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Connect,
    StartTls,
    Auth,
    Sender,
    Recipient,
    Message,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::Connect => "connecting to the SMTP server failed",
            Step::StartTls => "STARTTLS failed",
            Step::Auth => "the SMTP server refused the login",
            Step::Sender => "the SMTP server refused the sender",
            Step::Recipient => "the SMTP server refused the recipient",
            Step::Message => "the SMTP server refused the message",
        }
    }
}

/// A failed step, already classified.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<Failure> for ActivityError {
    fn from(f: Failure) -> Self {
        // The SMTP server's own words: not translated.
        ActivityError {
            kind: f.kind,
            message: f.message.into(),
        }
    }
}

/// What a lettre error says happened at `step`.
fn fault_of(step: Step, err: &SmtpError) -> SmtpFault {
    if err.is_permanent() {
        SmtpFault::PermanentReply
    } else if err.is_transient() {
        SmtpFault::TemporaryReply
    } else if err.is_client() || err.is_tls() || is_tls_verification(err) {
        SmtpFault::RefusedHere
    } else if err.is_response() {
        SmtpFault::UnreadableReply {
            to_auth: step == Step::Auth,
        }
    } else {
        SmtpFault::Network
    }
}

/// rustls reports certificate and protocol failures as `InvalidData` I/O errors.
fn is_tls_verification(err: &SmtpError) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io_err) = e.downcast_ref::<io::Error>() {
            return io_err.kind() == io::ErrorKind::InvalidData;
        }
        source = e.source();
    }
    false
}

/// `550 5.1.1 No such user` from an error that carries a reply; otherwise the innermost
/// cause (`invalid peer certificate: UnknownIssuer`), which says the most.
pub fn reply_text(err: &SmtpError) -> String {
    let mut innermost: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(next) = innermost.and_then(|e| e.source()) {
        innermost = Some(next);
    }
    match (err.status(), innermost) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        (Some(code), None) => code.to_string(),
        (None, Some(cause)) => cause.to_string(),
        (None, None) => err.to_string(),
    }
}

fn response_text(r: &Response) -> String {
    let lines: Vec<&str> = r.message().collect();
    format!("{} {}", r.code(), lines.join(" "))
        .trim()
        .to_string()
}

fn failed(step: Step, err: &SmtpError) -> Failure {
    Failure {
        kind: fault_of(step, err).kind(),
        message: format!("{}: {}", step.describe(), reply_text(err)),
    }
}

fn timed_out(step: Step, after: Duration) -> Failure {
    Failure {
        kind: SmtpFault::Network.kind(),
        message: format!(
            "{}: no answer within {} s",
            step.describe(),
            after.as_secs_f64()
        ),
    }
}

fn maybe_delivered(why: &str) -> Failure {
    Failure {
        kind: SmtpFault::MaybeDelivered.kind(),
        message: format!(
            "the connection failed while the SMTP server was confirming the message ({why}); \
             it may have been delivered, so it is not sent again"
        ),
    }
}

async fn within<T>(
    step: Step,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, SmtpError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(step, &e)),
        Err(_) => Err(timed_out(step, limit)),
    }
}

/// What TLS trusts: the built-in roots plus the operator's extra CA file.
#[derive(Clone, Default)]
pub struct Trust {
    extra_roots_pem: Option<Vec<u8>>,
}

impl Trust {
    /// Reads `B24FLOW_EXTRA_CA_FILE`; a file that cannot be read is the operator's mistake.
    pub fn from_file(path: Option<&std::path::Path>) -> Result<Self, ActivityError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let pem = std::fs::read(path).map_err(|e| {
            ActivityError::invalid(format!(
                "B24FLOW_EXTRA_CA_FILE {} cannot be read: {e}",
                path.display()
            ))
        })?;
        Ok(Self {
            extra_roots_pem: Some(pem),
        })
    }

    pub fn extra_roots_pem(&self) -> Option<&[u8]> {
        self.extra_roots_pem.as_deref()
    }

    fn parameters(&self, host: &str) -> Result<TlsParameters, Failure> {
        let mut builder = TlsParameters::builder(host.to_string());
        if let Some(pem) = &self.extra_roots_pem {
            let roots = Certificate::from_pem(pem).map_err(|e| Failure {
                kind: SmtpFault::Refused.kind(),
                message: format!("B24FLOW_EXTRA_CA_FILE holds no usable certificate: {e}"),
            })?;
            builder = builder.add_root_certificate(roots);
        }
        builder
            .build_rustls()
            .map_err(|e| failed(Step::Connect, &e))
    }
}

/// An open, authenticated connection, ready for a transaction.
pub struct Session {
    conn: AsyncSmtpConnection,
    key: PoolKey,
    timeouts: Timeouts,
    /// Whether it came from the pool (for the log and the tests).
    pub reused: bool,
}

/// The server's answer to one transaction.
#[derive(Debug, Default)]
pub struct Delivery {
    pub accepted: Vec<Address>,
    /// Refused recipients with the server's reply and whether it was a 4xx.
    pub refused: Vec<Refusal>,
    /// The final reply to the message (e.g. `250 2.0.0 Ok: queued as 4F1`).
    pub reply: String,
}

#[derive(Debug)]
pub struct Refusal {
    pub address: Address,
    pub reply: String,
    pub kind: ErrorKind,
}

impl Session {
    /// A pooled connection for the same server and login if one is idle and alive, else a
    /// new one.
    pub async fn open(
        server: &Server,
        trust: &Trust,
        policy: &Guard,
        timeouts: Timeouts,
    ) -> Result<Self, Failure> {
        let key = PoolKey::new(server);
        while let Some(mut conn) = pool::take(&key) {
            let alive = tokio::time::timeout(timeouts.command, conn.test_connected()).await;
            if matches!(alive, Ok(true)) {
                return Ok(Self {
                    conn,
                    key,
                    timeouts,
                    reused: true,
                });
            }
        }
        let conn = connect(server, trust, policy, timeouts).await?;
        Ok(Self {
            conn,
            key,
            timeouts,
            reused: false,
        })
    }

    /// MAIL FROM, one RCPT TO per recipient, DATA. Refused recipients are collected; when
    /// none is accepted the transaction is reset and nothing is sent.
    pub async fn deliver(
        &mut self,
        from: &Address,
        recipients: &[Address],
        message: &[u8],
    ) -> Result<Delivery, Failure> {
        let t = self.timeouts;
        let mut parameters = Vec::new();
        let non_ascii = std::iter::once(from)
            .chain(recipients)
            .any(|a| !a.to_string().is_ascii());
        if non_ascii {
            if !self
                .conn
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(Failure {
                    kind: SmtpFault::Unsupported.kind(),
                    message:
                        "an address is not ASCII and the SMTP server does not support SMTPUTF8"
                            .into(),
                });
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        within(
            Step::Sender,
            t.command,
            self.conn.command(Mail::new(Some(from.clone()), parameters)),
        )
        .await?;
        let mut delivery = Delivery::default();
        for address in recipients {
            let answer = tokio::time::timeout(
                t.command,
                self.conn.command(Rcpt::new(address.clone(), vec![])),
            )
            .await
            .map_err(|_| timed_out(Step::Recipient, t.command))?;
            match answer {
                Ok(_) => delivery.accepted.push(address.clone()),
                Err(e) if e.is_permanent() || e.is_transient() => delivery.refused.push(Refusal {
                    address: address.clone(),
                    reply: reply_text(&e),
                    kind: fault_of(Step::Recipient, &e).kind(),
                }),
                Err(e) => return Err(failed(Step::Recipient, &e)),
            }
        }
        if delivery.accepted.is_empty() {
            within(Step::Recipient, t.command, self.conn.command(Rset)).await?;
            return Ok(delivery);
        }
        within(Step::Message, t.command, self.conn.command(Data)).await?;
        // Once the body is on its way, silence or a broken connection leaves it unknown
        // whether the server took the message (RFC 1047): better no retry than a duplicate.
        let reply = match tokio::time::timeout(t.data, self.conn.message(message)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) if e.is_permanent() || e.is_transient() => {
                return Err(failed(Step::Message, &e))
            }
            Ok(Err(e)) => return Err(maybe_delivered(&reply_text(&e))),
            Err(_) => {
                return Err(maybe_delivered(&format!(
                    "no answer within {} s",
                    t.data.as_secs_f64()
                )))
            }
        };
        delivery.reply = response_text(&reply);
        Ok(delivery)
    }

    /// Hands the connection back for the next job with the same server and login.
    pub fn release(self) {
        if !self.conn.has_broken() {
            pool::put(self.key, self.conn);
        }
    }
}

/// The addresses the outbound policy lets this connection go to. A refusal is permanent
/// (the same server is refused next time); a name that does not resolve may resolve later.
async fn checked_addresses(server: &Server, policy: &Guard) -> Result<Vec<SocketAddr>, Failure> {
    policy
        .smtp_addresses(&server.host, server.port)
        .await
        .map_err(|refused| Failure {
            kind: match refused {
                Refused::Unresolvable(_) => SmtpFault::Unresolvable,
                _ => SmtpFault::Refused,
            }
            .kind(),
            message: format!("{}: {refused}", Step::Connect.describe()),
        })
}

async fn connect(
    server: &Server,
    trust: &Trust,
    policy: &Guard,
    t: Timeouts,
) -> Result<AsyncSmtpConnection, Failure> {
    let hello = ClientId::default();
    let implicit = match server.security {
        Security::Ssl => Some(trust.parameters(&server.host)?),
        Security::StartTls | Security::None => None,
    };
    let addresses = checked_addresses(server, policy).await?;
    let mut conn = within(
        Step::Connect,
        t.connect,
        AsyncSmtpConnection::connect_tokio1(
            addresses.as_slice(),
            Some(t.connect),
            &hello,
            implicit,
            None,
        ),
    )
    .await
    .map_err(|f| Failure {
        message: format!("{} ({}:{})", f.message, server.host, server.port),
        ..f
    })?;
    if server.security == Security::StartTls {
        if !conn.can_starttls() {
            return Err(Failure {
                kind: SmtpFault::Unsupported.kind(),
                message: format!(
                    "{}:{} does not offer STARTTLS; refusing to send unencrypted (choose \"none\" to allow that)",
                    server.host, server.port
                ),
            });
        }
        let parameters = trust.parameters(&server.host)?;
        within(Step::StartTls, t.connect, conn.starttls(parameters, &hello)).await?;
    }
    if let Some((login, password)) = &server.credentials {
        // lettre's `tracing` feature stays off: it would log the AUTH exchange.
        let credentials = Credentials::new(login.clone(), password.clone());
        within(
            Step::Auth,
            t.command,
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
        )
        .await?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(300),
            command: Duration::from_millis(300),
            data: Duration::from_millis(300),
        }
    }

    /// The outbound policy of a test: this loopback port is allowed.
    fn lab(port: u16) -> Guard {
        Guard::new(&[format!("127.0.0.1:{port}")])
    }

    fn server(port: u16, security: Security) -> Server {
        Server {
            host: "127.0.0.1".into(),
            port,
            security,
            credentials: None,
        }
    }

    #[tokio::test]
    async fn a_server_that_never_greets_is_a_transient_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let err = match Session::open(
            &server(port, Security::None),
            &Trust::default(),
            &lab(port),
            quick(),
        )
        .await
        {
            Ok(_) => panic!("a silent server must time out"),
            Err(e) => e,
        };
        assert_eq!(err.kind, ErrorKind::Transient);
        assert!(err.message.contains("no answer within"), "{}", err.message);
        hold.abort();
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transient_connection_failure() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        let err = match Session::open(
            &server(port, Security::None),
            &Trust::default(),
            &lab(port),
            quick(),
        )
        .await
        {
            Ok(_) => panic!("nobody listens"),
            Err(e) => e,
        };
        assert_eq!(err.kind, ErrorKind::Transient, "{}", err.message);
        assert!(
            err.message.contains(&format!("127.0.0.1:{port}")),
            "{}",
            err.message
        );
    }

    /// A scripted server: greets, then answers each line with `answer(line)`; `None` hangs
    /// up. Returns the lines it read.
    async fn scripted(
        answer: fn(&str) -> Option<&'static str>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            let mut seen = Vec::new();
            write.write_all(b"220 test ESMTP\r\n").await.expect("greet");
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push(line.clone());
                let Some(reply) = answer(&line) else { break };
                if !reply.is_empty() && write.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
            seen
        });
        (port, task)
    }

    async fn no_starttls_server() -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        scripted(|line| {
            Some(if line.starts_with("EHLO") {
                "250-test\r\n250 AUTH PLAIN\r\n"
            } else {
                "221 bye\r\n"
            })
        })
        .await
    }

    #[tokio::test]
    async fn a_connection_lost_while_the_message_is_confirmed_is_not_retried() {
        let (port, _task) = scripted(|line| match line {
            l if l.starts_with("EHLO") => Some("250-test\r\n250 8BITMIME\r\n"),
            l if l.starts_with("MAIL") || l.starts_with("RCPT") => Some("250 ok\r\n"),
            "DATA" => Some("354 go ahead\r\n"),
            "." => None,
            _ => Some(""),
        })
        .await;
        let mut session = Session::open(
            &server(port, Security::None),
            &Trust::default(),
            &lab(port),
            quick(),
        )
        .await
        .map_err(|f| f.message)
        .expect("session");
        let from: Address = "a@example.com".parse().expect("address");
        let err = session
            .deliver(
                &from,
                std::slice::from_ref(&from),
                b"Subject: x\r\n\r\nbody\r\n",
            )
            .await
            .expect_err("no confirmation");
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert!(
            err.message.contains("may have been delivered"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn starttls_that_is_not_offered_is_refused_before_any_credentials_are_sent() {
        let (port, task) = no_starttls_server().await;
        let mut s = server(port, Security::StartTls);
        s.credentials = Some(("user".into(), "hunter2".into()));
        let err = match Session::open(&s, &Trust::default(), &lab(port), quick()).await {
            Ok(_) => panic!("a downgrade must be refused"),
            Err(e) => e,
        };
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert!(
            err.message.contains("does not offer STARTTLS"),
            "{}",
            err.message
        );
        let seen = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server ends")
            .expect("server task");
        assert!(seen.iter().all(|l| !l.starts_with("AUTH")), "{seen:?}");
    }
}
