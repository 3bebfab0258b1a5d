//! The checkout page in a real browser (Debian's headless Chromium driven by playwright-core):
//! it shows the amount and a countdown, pays a sandbox invoice in one tap, and follows the
//! invoice's status from the server (paid, expired) without a reload. Screenshots are saved
//! in `target/test-artifacts/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use farthing_server::config::Config;
use farthing_server::state::Mode;
use serde_json::{json, Value};

struct App {
    running: farthing_server::Running,
    base: String,
    key: String,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database: dir.path().join("farthing.db").display().to_string(),
        public_url: "http://127.0.0.1:0".to_owned(),
        allow_private_webhooks: true,
        ..Config::default()
    };
    let running = farthing_server::start(config).await.expect("start");
    let (live, test) = (
        running.state().store(Mode::Live).clone(),
        running.state().store(Mode::Test).clone(),
    );
    let merchant = tokio::task::spawn_blocking(move || {
        farthing_server::create_merchant(&live, &test, "Browser Shop")
    })
    .await
    .expect("join")
    .expect("merchant");
    let base = format!("http://{}", running.addr());
    App {
        running,
        base,
        key: merchant.test_key,
        _dir: dir,
    }
}

impl App {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).expect("json")
    }

    async fn invoice(&self, body: Value) -> (String, String) {
        let invoice = self.post("/v1/invoices", body).await;
        (
            invoice["id"].as_str().expect("id").to_owned(),
            invoice["checkout_url"].as_str().expect("url").to_owned(),
        )
    }

    async fn status(&self, id: &str) -> String {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/invoices/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("request");
        let body: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("json");
        body["status"].as_str().expect("status").to_owned()
    }
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir.join(name)
}

/// Fails (never skips) when the browser or the driver is missing.
fn require_browser() {
    assert!(
        browser_dir().join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "Chromium or playwright-core is missing: run ./scripts/test, which installs them"
    );
}

fn node(args: &[&str]) -> std::process::Child {
    Command::new("node")
        .arg("checkout.mjs")
        .args(args)
        .current_dir(browser_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node")
}

/// Waits for the driver in a blocking task; returns its output lines and success.
async fn finish(child: std::process::Child) -> (bool, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let output = child.wait_with_output().expect("wait");
        let lines = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        (output.status.success(), lines)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_invoice_is_paid_in_one_tap() {
    require_browser();
    let app = spawn_app().await;
    let (id, url) = app
        .invoice(json!({"amount": 50, "currency": "XTR", "description": "One AI generation"}))
        .await;
    let shot = artifact("checkout-sandbox-paid.png");
    let child = node(&["sandbox", &url, "50 XTR", &shot.display().to_string()]);
    let (ok, lines) = finish(child).await;
    assert!(ok, "browser run failed: {lines:?}");
    assert_eq!(app.status(&id).await, "paid", "the server must agree");
    assert!(shot.metadata().expect("screenshot").len() > 1000);
    app.running.shutdown().await;
}

/// A driver in `follow` mode that printed READY; its stdout stays open until it exits.
struct Following {
    child: std::process::Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Following {
    /// Waits for the driver; its verdict and the rest of what it printed.
    async fn finish(mut self) -> (bool, String) {
        tokio::task::spawn_blocking(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
            let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
            (ok, rest)
        })
        .await
        .expect("join")
    }
}

/// Starts the driver in `follow` mode and waits until the page is open (READY); the page must
/// then show `expected` by itself.
async fn follows(url: &str, expected: &str, shot: &str) -> Following {
    let mut child = node(&[
        "follow",
        url,
        expected,
        &artifact(shot).display().to_string(),
    ]);
    let stdout = child.stdout.take().expect("stdout");
    let ready = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        (line, reader)
    });
    let (line, stdout) = tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .expect("the browser did not open the page in time")
        .expect("join");
    assert_eq!(line.trim(), "READY");
    Following { child, stdout }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_follows_the_server_to_paid_and_expired_without_reload() {
    require_browser();
    let app = spawn_app().await;

    // Paid by someone else (here the sandbox API) while the page is open.
    let (id, url) = app
        .invoice(json!({"amount": 25, "currency": "XTR", "description": "Paid post"}))
        .await;
    let following = follows(&url, "paid", "checkout-followed-paid.png").await;
    app.post(&format!("/v1/test/invoices/{id}/pay"), json!({}))
        .await;
    let (ok, output) = following.finish().await;
    assert!(ok, "page did not switch to paid: {output}");

    // Left to expire (5 s is the shortest life an invoice may have).
    let (id, url) = app
        .invoice(json!({"amount": 25, "currency": "XTR", "expires_in": 5}))
        .await;
    let following = follows(&url, "expired", "checkout-followed-expired.png").await;
    let (ok, output) = following.finish().await;
    assert!(ok, "page did not switch to expired: {output}");
    assert_eq!(app.status(&id).await, "expired");
    app.running.shutdown().await;
}
