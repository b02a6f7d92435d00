//! Downloading one attachment: through the SSRF guard, streamed, stopped at a size cap,
//! with deadlines; and naming it (Content-Disposition, else the link's last segment).
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use percent_encoding::percent_decode_str;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};

use super::ssrf::{refusal_in, Guard, GuardedResolver};
use crate::activity::ActivityError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const WHOLE_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_REDIRECTS: usize = 5;

/// A downloaded body with what the server said about it.
pub struct Downloaded {
    pub bytes: Vec<u8>,
    /// From Content-Disposition, if the server sent one.
    pub disposition_name: Option<String>,
    /// The link after redirects, for a name taken from its path.
    pub final_url: url::Url,
    pub content_type: Option<String>,
}

/// One client for every link, the portal's own Disk downloads included: the portal's host
/// is held to the same outbound policy as any other (its name is set by whoever installed
/// the app, and may resolve anywhere).
pub struct Downloader {
    http: reqwest::Client,
    guard: Arc<Guard>,
}

impl Downloader {
    /// `extra_roots_pem`: `B24FLOW_EXTRA_CA_FILE`'s content, trusted besides the built-in roots.
    pub fn new(guard: Guard, extra_roots_pem: Option<&[u8]>) -> Result<Self, ActivityError> {
        let guard = Arc::new(guard);
        Ok(Self {
            http: client(guard.clone(), extra_roots_pem)?,
            guard,
        })
    }

    /// Fetches `url` unless it is refused or grows past `cap` bytes. The error text never
    /// contains the URL (Disk links carry an auth token).
    pub async fn fetch(&self, url: &str, cap: u64) -> Result<Downloaded, String> {
        let url = url::Url::parse(url).map_err(|_| "not a valid link".to_string())?;
        self.guard.check_url(&url).map_err(|r| r.to_string())?;
        let response = self.http.get(url).send().await.map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered HTTP {}", status.as_u16()));
        }
        if let Some(length) = response.content_length().filter(|l| *l > cap) {
            return Err(too_big(length, cap));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                })
        };
        let disposition_name =
            header(CONTENT_DISPOSITION).and_then(|v| filename_from_disposition(&v));
        let content_type = header(CONTENT_TYPE);
        let final_url = response.url().clone();
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(describe)?;
            if (bytes.len() + chunk.len()) as u64 > cap {
                return Err(format!("is larger than the limit of {cap} bytes"));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Downloaded {
            bytes,
            disposition_name,
            final_url,
            content_type,
        })
    }
}

fn client(
    guard: Arc<Guard>,
    extra_roots_pem: Option<&[u8]>,
) -> Result<reqwest::Client, ActivityError> {
    let redirect_guard = guard.clone();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("b24flow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .timeout(WHOLE_TIMEOUT)
        // A proxy would resolve the host itself, past the guard.
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver(guard)))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            match redirect_guard.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        }));
    if let Some(pem) = extra_roots_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            ActivityError::invalid(format!(
                "B24FLOW_EXTRA_CA_FILE holds no usable certificate: {e}"
            ))
        })?;
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    builder
        .build()
        .map_err(|e| ActivityError::invalid(format!("HTTP client: {e}")))
}

pub fn too_big(size: u64, cap: u64) -> String {
    format!("is {size} bytes, over the limit of {cap} bytes")
}

fn describe(e: reqwest::Error) -> String {
    if let Some(refused) = refusal_in(&e) {
        return refused;
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The file name in a Content-Disposition value; `filename*` (RFC 6266/5987) wins.
pub fn filename_from_disposition(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for param in split_params(value) {
        let Some((key, val)) = param.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => extended = decode_extended(val.trim()),
            "filename" => plain = Some(unquote(val.trim())),
            _ => {}
        }
    }
    extended
        .or(plain)
        .map(|n| sanitize(&n))
        .filter(|n| !n.is_empty())
}

/// Splits on `;` outside quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut params = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                params.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    params.push(current);
    params
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_string(),
    }
}

/// `UTF-8''%D0%A1%D1%87%D1%91%D1%82.pdf` → `Счёт.pdf`.
fn decode_extended(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next()?.to_ascii_lowercase();
    let _language = parts.next()?;
    let bytes: Vec<u8> = percent_decode_str(parts.next()?).collect();
    match charset.as_str() {
        "utf-8" => String::from_utf8(bytes).ok(),
        "iso-8859-1" => Some(bytes.into_iter().map(char::from).collect()),
        _ => None,
    }
}

/// The last path segment of a link, decoded, or `None` for `https://host/`.
pub fn filename_from_url(url: &url::Url) -> Option<String> {
    let last = url.path_segments()?.rev().find(|s| !s.is_empty())?;
    let decoded = percent_decode_str(last).decode_utf8_lossy().into_owned();
    Some(sanitize(&decoded)).filter(|n| !n.is_empty())
}

/// A name safe for a MIME header and a recipient's disk: no path, no control characters.
pub fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().trim_matches('.').trim();
    clean.chars().take(200).collect()
}

/// A link for the workflow log: no credentials, query or fragment (signed links carry tokens).
pub fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or_default();
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", url.scheme(), url.path())
        }
        Err(_) => raw.split(['?', '#']).next().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers every request with `response` (raw HTTP) and returns its base URL.
    async fn http_server(response: String) -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        url::Url::parse(&base).expect("url")
    }

    fn ok_body(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn loopback_links_are_refused_unless_allowed_even_on_the_portals_host() {
        let server = http_server(ok_body("hello")).await;
        let link = server.join("file.txt").expect("url");
        let guarded = Downloader::new(Guard::new(&[]), None).expect("downloader");
        let err = guarded
            .fetch(link.as_str(), 100)
            .await
            .err()
            .expect("refused");
        assert!(
            err.contains("loopback") && err.contains("B24FLOW_FETCH_ALLOW"),
            "{err}"
        );
        assert!(
            !err.contains("127.0.0.1"),
            "the rule, not the address: {err}"
        );
        let by_name = format!("http://localhost:{}/file.txt", server.port().expect("port"));
        let err = guarded
            .fetch(&by_name, 100)
            .await
            .err()
            .expect("refused after resolution");
        assert!(err.contains("loopback"), "{err}");

        let allowed =
            Downloader::new(Guard::new(&["127.0.0.0/8".into()]), None).expect("downloader");
        assert_eq!(
            allowed
                .fetch(link.as_str(), 100)
                .await
                .expect("fetched")
                .bytes,
            b"hello"
        );

        // A portal whose name resolves to loopback gets no special treatment either.
        let portal_file = format!(
            "http://localhost:{}/rest/download.json?auth=SECRET",
            server.port().expect("port")
        );
        let err = guarded
            .fetch(&portal_file, 100)
            .await
            .err()
            .expect("refused");
        assert!(err.contains("loopback") && !err.contains("SECRET"), "{err}");
    }

    #[tokio::test]
    async fn a_redirect_to_an_internal_address_is_refused() {
        let server = http_server(
            "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\n\r\n".into(),
        )
        .await;
        let downloader =
            Downloader::new(Guard::new(&["127.0.0.0/8".into()]), None).expect("downloader");
        let err = downloader
            .fetch(server.as_str(), 100)
            .await
            .err()
            .expect("refused");
        assert!(err.contains("link-local"), "{err}");
    }

    #[tokio::test]
    async fn a_download_stops_at_the_cap_without_naming_the_link() {
        let server = http_server(format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}",
            "x".repeat(5000)
        ))
        .await;
        let link = server.join("f?auth=SECRET").expect("url");
        let downloader =
            Downloader::new(Guard::new(&["127.0.0.0/8".into()]), None).expect("downloader");
        let err = downloader
            .fetch(link.as_str(), 1000)
            .await
            .err()
            .expect("too big");
        assert!(err.contains("limit of 1000 bytes"), "{err}");
        let sized = http_server(ok_body(&"y".repeat(3000))).await;
        let err = downloader
            .fetch(sized.as_str(), 1000)
            .await
            .err()
            .expect("too big");
        assert!(err.contains("is 3000 bytes"), "{err}");
        let missing =
            http_server("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into()).await;
        let link = missing.join("x?auth=SECRET").expect("url");
        let err = downloader
            .fetch(link.as_str(), 1000)
            .await
            .err()
            .expect("404");
        assert!(err.contains("404") && !err.contains("SECRET"), "{err}");
    }

    #[test]
    fn content_disposition_names_are_decoded() {
        assert_eq!(
            filename_from_disposition("attachment; filename=\"offer.pdf\"").as_deref(),
            Some("offer.pdf")
        );
        assert_eq!(
            filename_from_disposition(
                "attachment; filename=\"fallback.pdf\"; filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82.pdf"
            )
            .as_deref(),
            Some("Счёт.pdf")
        );
        assert_eq!(
            filename_from_disposition("attachment; filename=\"a;b.txt\"").as_deref(),
            Some("a;b.txt")
        );
        assert_eq!(
            filename_from_disposition("attachment; filename=\"../../etc/passwd\"").as_deref(),
            Some("passwd")
        );
        assert_eq!(filename_from_disposition("inline"), None);
    }

    #[test]
    fn url_names_and_redaction() {
        let url = url::Url::parse(
            "https://cdn.example.com/files/%D0%9F%D1%80%D0%B0%D0%B9%D1%81.xlsx?sig=abc",
        )
        .expect("url");
        assert_eq!(filename_from_url(&url).as_deref(), Some("Прайс.xlsx"));
        let root = url::Url::parse("https://cdn.example.com/").expect("url");
        assert_eq!(filename_from_url(&root), None);
        assert_eq!(
            redact(
                "https://user:pw@portal.example.com/rest/download.json?auth=SECRET&token=disk|1"
            ),
            "https://portal.example.com/rest/download.json"
        );
    }
}
