//! A real SMTP server process for the `smtp_send` tests (aiosmtpd, tests/support/smtp_server.py)
//! on 127.0.0.1 with an OS-assigned port, a test CA and certificate for its TLS modes, and
//! a tiny HTTP server for link attachments. Needs `pip install -r .ci/requirements-smtp.txt`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::{spawn_app_with, AppOptions, TestApp, WAIT};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_server.py");

/// A test app whose worker trusts `ca_file` (`B24FLOW_EXTRA_CA_FILE`), may reach `server`
/// (its loopback port is allowed) and may fetch links from `fetch_allow`
/// (`B24FLOW_FETCH_ALLOW`).
pub async fn spawn_app_for_smtp(
    server: &SmtpServer,
    ca_file: Option<&Path>,
    fetch_allow: &[&str],
) -> TestApp {
    let mut app = spawn_app_with(AppOptions {
        worker: false,
        install: false,
        ..AppOptions::default()
    })
    .await;
    app.worker_config.extra_ca_file = ca_file.map(Path::to_path_buf);
    app.worker_config.fetch_allow = fetch_allow.iter().map(|s| s.to_string()).collect();
    app.worker_config.fetch_allow.push(server.allow_entry());
    app.start_worker();
    app.install().await;
    app
}

/// A throwaway CA and a server certificate for `localhost` and `127.0.0.1`, as PEM files.
pub struct TestCerts {
    dir: PathBuf,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCerts {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "b24flow test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("server certificate");

        let dir =
            std::env::temp_dir().join(format!("b24flow-smtp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cert dir");
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        Self {
            ca_file: write("ca.pem", ca_cert.pem()),
            cert_file: write("cert.pem", cert.pem()),
            key_file: write("key.pem", key.serialize_pem()),
            dir,
        }
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Ssl,
    StartTls,
}

/// How the server behaves.
#[derive(Default)]
pub struct SmtpOptions<'a> {
    pub mode: Option<Mode>,
    pub certs: Option<&'a TestCerts>,
    /// Require AUTH with this login and password.
    pub login: Option<(&'a str, &'a str)>,
    /// Recipients answered with 550.
    pub refuse: Vec<&'a str>,
    /// Recipients answered with 450.
    pub defer: Vec<&'a str>,
    /// Answer the message itself with 554.
    pub reject_data: bool,
    /// Seconds to wait before answering the message (it counts as received at once).
    pub data_delay: Option<f64>,
}

pub struct SmtpServer {
    pub port: u16,
    child: Child,
    _stdin: ChildStdin,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl SmtpServer {
    pub async fn start(options: SmtpOptions<'_>) -> Self {
        let mode = options.mode.unwrap_or(Mode::Plain);
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT).arg("--mode").arg(match mode {
            Mode::Plain => "plain",
            Mode::Ssl => "ssl",
            Mode::StartTls => "starttls",
        });
        if let Some(certs) = options.certs {
            cmd.arg("--cert")
                .arg(&certs.cert_file)
                .arg("--key")
                .arg(&certs.key_file);
        }
        if let Some((login, password)) = options.login {
            cmd.args(["--login", login, "--password", password]);
        }
        for r in &options.refuse {
            cmd.args(["--refuse", r]);
        }
        for r in &options.defer {
            cmd.args(["--defer", r]);
        }
        if options.reject_data {
            cmd.arg("--reject-data");
        }
        if let Some(delay) = options.data_delay {
            cmd.args(["--data-delay", &delay.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start python3 tests/support/smtp_server.py");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the SMTP server did not start in time")
            .expect("read the SMTP server's output");
        let port = first
            .as_deref()
            .and_then(|l| l.strip_prefix("PORT "))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the SMTP server did not start (is aiosmtpd installed? pip install -r .ci/requirements-smtp.txt); said {first:?}"
                )
            });
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sink = mails.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(json) = line.strip_prefix("MAIL ") {
                    let value: Value = serde_json::from_str(json).expect("the server's JSON");
                    sink.lock().expect("mails").push(ReceivedMail(value));
                }
            }
        });
        Self {
            port,
            child,
            _stdin: stdin,
            mails,
        }
    }

    /// The `B24FLOW_FETCH_ALLOW` entry that lets the worker reach this server.
    pub fn allow_entry(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.mails.lock().expect("mails").clone()
    }

    /// The first `n` messages, waiting for them up to [`WAIT`].
    pub async fn wait_for_messages(&self, n: usize) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mails = self.messages();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} message(s) expected, got {}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// One message as the server received and Python's email parser read it.
#[derive(Clone, Debug)]
pub struct ReceivedMail(pub Value);

impl ReceivedMail {
    pub fn rcpt_tos(&self) -> Vec<String> {
        strings(&self.0["rcpt_tos"])
    }
    pub fn mail_from(&self) -> &str {
        self.0["mail_from"].as_str().unwrap_or_default()
    }
    pub fn tls(&self) -> bool {
        self.0["tls"].as_bool().unwrap_or(false)
    }
    pub fn auth_login(&self) -> Option<&str> {
        self.0["auth_login"].as_str()
    }
    pub fn connection(&self) -> u64 {
        self.0["connection"].as_u64().unwrap_or(0)
    }
    pub fn subject(&self) -> &str {
        self.0["message"]["subject"].as_str().unwrap_or_default()
    }
    /// `(display name, address)` pairs of an address header: `from`, `to` or `cc`.
    pub fn addresses(&self, header: &str) -> Vec<(String, String)> {
        self.0["message"][header]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or_default().to_string(),
                    a["address"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
    /// The decoded values of a header (lower-case name), empty when absent.
    pub fn header(&self, name: &str) -> Vec<String> {
        strings(&self.0["message"]["headers"][name])
    }
    pub fn parts(&self) -> Vec<Value> {
        self.0["message"]["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
    /// The first non-attachment part: (content type, text).
    pub fn body(&self) -> (String, String) {
        self.parts()
            .into_iter()
            .find(|p| p["disposition"].as_str() != Some("attachment"))
            .map(|p| {
                (
                    p["content_type"].as_str().unwrap_or_default().to_string(),
                    p["text"].as_str().unwrap_or_default().to_string(),
                )
            })
            .unwrap_or_default()
    }
    pub fn attachments(&self) -> Vec<Value> {
        self.parts()
            .into_iter()
            .filter(|p| p["disposition"].as_str() == Some("attachment"))
            .collect()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// A file an HTTP route serves.
#[derive(Clone, Default)]
pub struct Served {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
    /// Redirect here instead of serving a body.
    pub location: Option<String>,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 for link attachments; counts requests per path.
pub struct FileServer {
    pub base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    pub async fn start(routes: Vec<(&str, Served)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let routes: Arc<HashMap<String, Served>> = Arc::new(
            routes
                .into_iter()
                .map(|(p, s)| (p.to_string(), s))
                .collect(),
        );
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let routes = routes.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let path = path.split('?').next().unwrap_or_default().to_string();
                    *counter
                        .lock()
                        .expect("hits")
                        .entry(path.clone())
                        .or_insert(0) += 1;
                    let response = match routes.get(&path) {
                        Some(Served { location: Some(to), .. }) => {
                            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .into_bytes()
                        }
                        Some(file) => {
                            let mut head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n", file.body.len());
                            if let Some(ct) = &file.content_type {
                                head.push_str(&format!("Content-Type: {ct}\r\n"));
                            }
                            if let Some(cd) = &file.content_disposition {
                                head.push_str(&format!("Content-Disposition: {cd}\r\n"));
                            }
                            head.push_str("\r\n");
                            let mut bytes = head.into_bytes();
                            bytes.extend_from_slice(&file.body);
                            bytes
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = socket.write_all(&response).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { base, hits, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
