//! Secrets never reach the log, even at `RUST_LOG=trace` (the security issue, item 2):
//! `farthing serve` runs with every crate at trace level while a merchant connects a Stars bot
//! (the Telegram double), a Lightning node (a real LNbits, whose websocket URL carries its key),
//! creates a webhook endpoint and invoices, and calls the API with its key; then its whole log
//! is searched for each secret.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn lnbits(verb: &str, dir: &std::path::Path, port: Option<u16>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lnbits");
    let mut command = Command::new("bash");
    command.arg(script).arg(verb).arg(dir);
    if let Some(port) = port {
        command.arg(port.to_string());
    }
    let output = command.output().expect("scripts/lnbits runs");
    assert!(
        output.status.success(),
        "scripts/lnbits {verb} failed (run ./scripts/test, which installs LNbits): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_trace_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ln_dir = tempfile::tempdir().expect("tempdir");
    let ln_port = free_port();
    let node = tokio::task::spawn_blocking({
        let path = ln_dir.path().to_path_buf();
        move || lnbits("start", &path, Some(ln_port))
    })
    .await
    .expect("join");
    let admin_key = node["merchant"]["admin_key"]
        .as_str()
        .expect("admin key")
        .to_owned();
    let invoice_key = node["merchant"]["invoice_key"]
        .as_str()
        .expect("invoice key")
        .to_owned();
    let bot_token = "7310042:AAFsecretTOKENpart0123456789abcdefXYZ";
    let double = telegram_double::TelegramDouble::builder()
        .token(bot_token)
        .spawn()
        .await
        .expect("the Telegram double");

    let db = dir.path().join("shop.db");
    let created = Command::new(env!("CARGO_BIN_EXE_farthing"))
        .args([
            "merchant",
            "create",
            "--name",
            "Trace shop",
            "--json",
            "--database",
        ])
        .arg(&db)
        .output()
        .expect("merchant create");
    let created: Value = serde_json::from_slice(&created.stdout).expect("json");
    let key = created["test_key"].as_str().expect("test key").to_owned();
    let live_key = created["live_key"].as_str().expect("live key").to_owned();

    let config = dir.path().join("farthing.toml");
    std::fs::write(
        &config,
        "allow_private_webhooks = true\n[telegram]\napi_urls = [\"*\"]\n[lightning]\nallow_private_nodes = true\npoll_interval_ms = 200\n",
    )
    .expect("config");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = dir.path().join("trace.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut server = Command::new(env!("CARGO_BIN_EXE_farthing"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .arg("--database")
        .arg(&db)
        .env("RUST_LOG", "trace")
        .env_remove("FARTHING_CONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("farthing serve");
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let call = |method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let webhook_secret = "tg-webhook-SECRET-0123456789";
    let stars = call(
        reqwest::Method::PUT,
        "/v1/rails/stars",
        json!({"bot_token": bot_token, "api_url": double.base_url(), "mode": "webhook", "webhook_secret": webhook_secret}),
    )
    .await
    .expect("stars");
    assert!(
        stars.status().is_success(),
        "{}",
        stars.text().await.unwrap_or_default()
    );
    let lightning = call(
        reqwest::Method::PUT,
        "/v1/rails/lightning",
        json!({"backend": "lnbits", "url": node["url"], "invoice_key": invoice_key, "admin_key": admin_key}),
    )
    .await
    .expect("lightning");
    assert!(
        lightning.status().is_success(),
        "{}",
        lightning.text().await.unwrap_or_default()
    );
    let endpoint: Value = call(
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        json!({"url": format!("{base}/healthz")}),
    )
    .await
    .expect("endpoint")
    .json()
    .await
    .expect("json");
    let signing_secret = endpoint["secret"].as_str().expect("whsec").to_owned();
    for body in [
        json!({"amount": 5, "currency": "XTR", "rails": ["stars"]}),
        json!({"amount": 1000, "currency": "BTC", "rails": ["lightning"]}),
    ] {
        let answer = call(reqwest::Method::POST, "/v1/invoices", body)
            .await
            .expect("invoice");
        assert!(
            answer.status().is_success(),
            "{}",
            answer.text().await.unwrap_or_default()
        );
    }
    // Let the Lightning watcher open its stream (the URL with the key) and deliveries run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let _ = tokio::task::spawn_blocking({
        let path = ln_dir.path().to_path_buf();
        move || lnbits("stop", &path, None)
    })
    .await;

    let text = std::fs::read_to_string(&log_path).expect("the log");
    // The log is really at trace level and saw the traffic (else this test proves nothing).
    assert!(
        text.contains("TRACE"),
        "no trace lines in:\n{}",
        &text[..text.len().min(2000)]
    );
    assert!(
        text.contains("/v1/rails/lightning"),
        "the requests are not in the log"
    );
    let token_secret_part = bot_token
        .split_once(':')
        .map(|(_, s)| s)
        .unwrap_or(bot_token);
    for (name, secret) in [
        ("the bot token", token_secret_part),
        ("the Telegram webhook secret", webhook_secret),
        ("the LNbits admin key", admin_key.as_str()),
        ("the LNbits invoice key", invoice_key.as_str()),
        ("the webhook signing secret", signing_secret.as_str()),
        ("the test API key", key.as_str()),
        ("the live API key", live_key.as_str()),
    ] {
        let found = BufReader::new(text.as_bytes())
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains(secret));
        assert!(found.is_none(), "{name} is in the log: {found:?}");
    }
}
