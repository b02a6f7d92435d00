//! Headless Chromium for browser tests, driven through chromedriver (WebDriver). Debian's
//! `chromium` and `chromium-driver` (.ci/run installs them). Screenshots land in
//! `target/screenshots/`.
use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::{wait_until, WAIT};

/// chromedriver on a free loopback port, killed when dropped.
pub struct Driver {
    _process: tokio::process::Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

pub async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free loopback port")
        .local_addr()
        .expect("a free loopback port")
        .port();
    let process = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver (Debian: apt-get install chromium chromium-driver; .ci/run does it)");
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    wait_until(|| async {
        reqwest::get(&status)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let profile = std::env::temp_dir().join(format!("b24flow-chromium-{}", uuid::Uuid::new_v4()));
    Driver {
        _process: process,
        url,
        profile,
    }
}

pub async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1366,900",
                format!("--user-data-dir={}", driver.profile.display()),
            ]
        }),
    );
    // chromedriver is on loopback: plain HTTP, no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a headless Chromium session")
}

pub async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("write the screenshot");
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
}

/// A screenshot of a long page: the window grows for it, then returns to a laptop's size.
pub async fn screenshot_tall(client: &Client, name: &str) {
    client
        .set_window_size(1366, 1700)
        .await
        .expect("resize the browser window");
    screenshot(client, name).await;
    client
        .set_window_size(1366, 900)
        .await
        .expect("resize the browser window");
}

pub async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(el) => el.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits (no reload: after a click, or for the live refresh) until `css` shows `expected`.
pub async fn wait_text(client: &Client, css: &str, expected: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = text_of(client, css).await;
        if text.contains(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} shows {text:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads `url` until the element `css` shows `expected`.
pub async fn wait_for_text(client: &Client, url: &str, css: &str, expected: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        client.goto(url).await.expect("open the page");
        let text = text_of(client, css).await;
        if text.contains(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} on {url} shows {text:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
