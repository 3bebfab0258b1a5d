//! The checkout page as a Telegram Mini App in a real browser (Debian's headless Chromium driven
//! by playwright-core), with a stubbed `window.Telegram.WebApp` whose `initData` this test signs
//! with the bot token of a Bot API double: the page makes a session, shows the amount, pays from
//! the balance in one tap and switches to paid (and keeps its session over a reload without
//! init data); an amountless invoice offers its presets; with no balance it pays through `openInvoice` and follows the server to paid; a
//! `fa` user gets a right-to-left page. Screenshots are saved in `target/test-artifacts/`.

use crate::support::init_data;
use crate::support::server;

use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use telegram_double::TelegramDouble;

struct App {
    running: farthing_server::Running,
    base: String,
    key: String,
    token: String,
    double: TelegramDouble,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> App {
    let server = server::spawn(|_| {}).await;
    let merchant = server.merchant("Mini Shop").await;
    let double = TelegramDouble::spawn().await.expect("double");
    let (running, dir) = (server.running, server.dir);
    let app = App {
        base: server.base,
        running,
        key: merchant.test_key,
        token: double.token().to_owned(),
        double,
        _dir: dir,
    };
    app.post(
        "PUT",
        "/v1/rails/stars",
        json!({"bot_token": app.token, "api_url": app.double.base_url(), "mode": "webhook"}),
    )
    .await;
    app
}

impl App {
    /// A Merchant API call that must succeed.
    async fn post(&self, method: &str, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).expect("json")
    }

    async fn get(&self, path: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("request");
        serde_json::from_str(&response.text().await.expect("body")).expect("json")
    }

    /// The Telegram user's customer (`tg:<id>`) with `amount` XTR on its balance.
    async fn funded_user(&self, user_id: u64, amount: u64) -> String {
        let customer = self
            .post(
                "POST",
                "/v1/customers",
                json!({"external_id": format!("tg:{user_id}")}),
            )
            .await;
        let id = customer["id"].as_str().expect("id").to_owned();
        self.post(
            "POST",
            &format!("/v1/test/customers/{id}/top_up"),
            json!({"amount": amount, "currency": "XTR"}),
        )
        .await;
        id
    }

    fn init_data(&self, user_id: u64, first_name: &str, language: &str) -> String {
        init_data::signed(
            &init_data::fields(
                &init_data::user(user_id, first_name, language),
                init_data::now_s(),
            ),
            &self.token,
        )
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

fn driver(args: &[&str]) -> std::process::Child {
    Command::new("node")
        .arg("webapp.mjs")
        .args(args)
        .current_dir(browser_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node")
}

/// Waits for the driver; its verdict and what it printed.
async fn finish(child: std::process::Child) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let output = child.wait_with_output().expect("wait");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mini_app_pays_from_the_balance_in_one_tap() {
    require_browser();
    let app = spawn_app().await;
    let customer = app.funded_user(777, 100).await;
    let invoice = app
        .post(
            "POST",
            "/v1/invoices",
            json!({"amount": 50, "currency": "XTR", "description": "One AI generation"}),
        )
        .await;
    let (id, url) = (
        invoice["id"].as_str().expect("id"),
        invoice["checkout_url"].as_str().expect("url"),
    );
    let shot = artifact("webapp-balance-paid.png");
    let init = app.init_data(777, "Ada", "en");
    let (ok, output) = finish(driver(&[
        "balance",
        url,
        "50 Stars",
        &shot.display().to_string(),
        &init,
    ]))
    .await;
    assert!(ok, "browser run failed: {output}");
    let paid = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(paid["status"], "paid", "the server must agree");
    assert_eq!(paid["paid_rail"], "balance", "{paid}");
    let balance = app.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(balance["balances"][0]["available"], 50);
    assert!(shot.metadata().expect("screenshot").len() > 1000);
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amountless_invoice_offers_presets() {
    require_browser();
    let app = spawn_app().await;
    app.funded_user(321, 100).await;
    let invoice = app
        .post(
            "POST",
            "/v1/invoices",
            json!({"currency": "XTR", "amount_min": 1, "amount_max": 50, "amount_presets": [5, 10, 25], "description": "A tip"}),
        )
        .await;
    let (id, url) = (
        invoice["id"].as_str().expect("id"),
        invoice["checkout_url"].as_str().expect("url"),
    );
    let shot = artifact("webapp-presets-paid.png");
    let init = app.init_data(321, "Ivan", "ru");
    let (ok, output) = finish(driver(&[
        "presets",
        url,
        "Stars",
        &shot.display().to_string(),
        &init,
    ]))
    .await;
    assert!(ok, "browser run failed: {output}");
    let paid = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["amount_paid"], 10, "{paid}");
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mini_app_pays_with_stars_and_follows_the_server_to_paid() {
    require_browser();
    let app = spawn_app().await;
    let invoice = app
        .post(
            "POST",
            "/v1/invoices",
            json!({"amount": 25, "currency": "XTR", "rails": ["stars", "balance"], "description": "Paid post"}),
        )
        .await;
    let id = invoice["id"].as_str().expect("id").to_owned();
    let link = invoice["payment_instructions"]["stars"]["invoice_link"]
        .as_str()
        .expect("a Stars invoice link")
        .to_owned();
    let url = invoice["checkout_url"].as_str().expect("url").to_owned();
    let shot = artifact("webapp-stars-paid.png").display().to_string();
    let init = app.init_data(888, "Grace", "de");
    let mut child = driver(&["stars", &url, "25 Stars", &shot, &init]);
    let stdout = child.stdout.take().expect("stdout");
    let opened = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        (line, reader)
    });
    let (line, mut reader) = tokio::time::timeout(Duration::from_secs(30), opened)
        .await
        .expect("the page did not open the invoice in time")
        .expect("join");
    assert_eq!(
        line.trim(),
        format!("OPENED {link}"),
        "the page opened another link"
    );
    // Telegram takes the payment; here the sandbox settles the invoice on the server.
    app.post("POST", &format!("/v1/test/invoices/{id}/pay"), json!({}))
        .await;
    let (ok, rest) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        (child.wait().map(|s| s.success()).unwrap_or(false), rest)
    })
    .await
    .expect("join");
    assert!(ok, "the page did not switch to paid: {rest}");
    assert!(Path::new(&shot).metadata().expect("screenshot").len() > 1000);
    app.double.assert_no_violations();
    app.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persian_user_gets_a_right_to_left_page() {
    require_browser();
    let app = spawn_app().await;
    app.funded_user(999, 100).await;
    let invoice = app
        .post(
            "POST",
            "/v1/invoices",
            json!({"amount": 30, "currency": "XTR", "description": "یک استیکر"}),
        )
        .await;
    let url = invoice["checkout_url"].as_str().expect("url");
    let shot = artifact("webapp-rtl-fa.png");
    let init = app.init_data(999, "Dariush", "fa");
    let (ok, output) = finish(driver(&[
        "rtl",
        url,
        "30 Stars",
        &shot.display().to_string(),
        &init,
    ]))
    .await;
    assert!(ok, "browser run failed: {output}");
    assert!(shot.metadata().expect("screenshot").len() > 1000);
    app.running.shutdown().await;
}
