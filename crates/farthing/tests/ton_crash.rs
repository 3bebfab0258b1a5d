//! The TON rail through the binary. The watcher killed between fetching and committing
//! (SPEC RL4, M1): `farthing serve`
//! is SIGKILLed again and again right after the indexer handed it a page, at random moments
//! around the page's store job; restarted on the same database each time, it must book every
//! payment exactly once (the cursor moves in the job that books the page, and the transaction
//! hash is the payment id), and `farthing audit` must pass. And `farthing bench ton` runs.
//!
//! The payments are real `@ton/sandbox` transactions (`crates/farthing-ton/tests/sandbox`),
//! served by a minimal indexer in this process answering toncenter v3's `/transactions` shape.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn farthing() -> Command {
    Command::new(env!("CARGO_BIN_EXE_farthing"))
}

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../farthing-ton/tests/sandbox/fixtures.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixtures")).expect("json")
}

/// Serves `/api/v3/transactions` for `wallet` from `transactions` (ascending by lt, `limit`
/// and `start_lt` honoured, other accounts empty); reports the lt of every non-empty page it
/// answered on `served`.
fn indexer(wallet: String, transactions: Vec<Value>, served: mpsc::Sender<u64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (wallet, transactions, served) =
                (wallet.clone(), transactions.clone(), served.clone());
            std::thread::spawn(move || answer(stream, &wallet, &transactions, &served));
        }
    });
    port
}

fn answer(mut stream: TcpStream, wallet: &str, transactions: &[Value], served: &mpsc::Sender<u64>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.replace("%3A", ":"))
    };
    let lt = |tx: &Value| {
        tx["lt"]
            .as_str()
            .and_then(|lt| lt.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let page: Vec<Value> = if target.starts_with("/api/v3/transactions")
        && param("account").as_deref() == Some(wallet)
    {
        let start: u64 = param("start_lt").and_then(|s| s.parse().ok()).unwrap_or(0);
        let limit: usize = param("limit").and_then(|s| s.parse().ok()).unwrap_or(10);
        transactions
            .iter()
            .filter(|tx| lt(tx) >= start)
            .take(limit)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let body = json!({"transactions": page, "address_book": {}}).to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(response.as_bytes()).is_ok() {
        let _ = stream.flush();
        if let Some(last) = page.last() {
            let _ = served.send(lt(last));
        }
    }
}

fn serve(db: &Path, config: &Path, port: u16) -> Child {
    let child = farthing()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(db)
        .arg("--config")
        .arg(config)
        .env_remove("FARTHING_SECRETS_KEY")
        .env_remove("FARTHING_SECRETS_KEY_FILE")
        .stdout(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(db.with_extension("out"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(db.with_extension("log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("farthing serve");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn the_ton_watcher_killed_mid_page_books_every_payment_exactly_once() {
    let fixtures = fixtures();
    let wallet = fixtures["accounts"]["merchant"]["raw"]
        .as_str()
        .expect("raw")
        .to_owned();
    // Every transaction of the merchant's wallet: TON payments, none naming an invoice of this
    // shop (each is credited to its payer's balance, once), and jetton notifications (own and
    // fake: recorded, never credited).
    let mut payments: Vec<Value> = fixtures["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .filter(|tx| tx["role"] == "merchant")
        .cloned()
        .collect();
    payments.sort_by_key(|tx| tx["lt"].as_str().and_then(|lt| lt.parse::<u64>().ok()));
    let expected = |payer: &str| -> u64 {
        payments
            .iter()
            .filter(|tx| tx["in_msg"]["source"] == fixtures["accounts"][payer]["raw"])
            .filter(|tx| tx["in_msg"]["opcode"] != "0x7362d09c")
            .map(|tx| {
                tx["description"]["credit_ph"]["credit"]
                    .as_str()
                    .expect("credit")
                    .parse::<u64>()
                    .expect("n")
            })
            .sum()
    };
    let (payer_total, payer2_total) = (expected("payer"), expected("payer2"));
    assert!(payments.len() >= 3 && payer_total > 0 && payer2_total > 0);
    let (served_tx, served) = mpsc::channel();
    let indexer_port = indexer(wallet.clone(), payments.clone(), served_tx);

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shop.db");
    let config = dir.path().join("farthing.toml");
    // One transaction per page, so every payment is its own fetch and its own commit, and
    // 40 ms between fetches, so a kill lands before the next page is asked for.
    std::fs::write(
        &config,
        "[ton]\npoll_interval_ms = 10\nrequest_interval_ms = 40\npage_size = 1\nallow_private_indexers = true\n",
    )
    .expect("config");
    let created = farthing()
        .args([
            "merchant",
            "create",
            "--name",
            "Ton",
            "--json",
            "--database",
        ])
        .arg(&db)
        .output()
        .expect("merchant create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let merchant: Value = serde_json::from_slice(&created.stdout).expect("json");
    let key = merchant["test_key"].as_str().expect("test key").to_owned();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // No pooled connections: the server behind the port changes with every kill.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let port = free_port();
    let mut server = serve(&db, &config, port);
    let base = format!("http://127.0.0.1:{port}");
    let connected = runtime.block_on(async {
        client
            .put(format!("{base}/v1/rails/ton"))
            .bearer_auth(&key)
            .json(&json!({"address": wallet, "network": "testnet",
                "api_url": format!("http://127.0.0.1:{indexer_port}/api/v3"), "jettons": []}))
            .send()
            .await
            .expect("connect")
            .status()
    });
    assert!(connected.is_success(), "PUT /v1/rails/ton: {connected}");

    // Kill it right after a page was handed over, at 0 to 3 ms, several times.
    let mut kills = 0;
    let mut seed = 0x5eed_u64;
    while kills < 8 {
        let Ok(lt) = served.recv_timeout(Duration::from_secs(20)) else {
            eprintln!("no page for 20 s; server exited: {:?}", server.try_wait());
            break; // everything was read and committed before a kill could land
        };
        eprintln!("served a page up to lt {lt}; killing");
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_micros((seed >> 33) % 3_000));
        server.kill().expect("SIGKILL");
        server.wait().expect("reaped");
        kills += 1;
        while served.try_recv().is_ok() {}
        server = serve(&db, &config, port);
    }
    let log = std::fs::read_to_string(db.with_extension("log")).unwrap_or_default()
        + &std::fs::read_to_string(db.with_extension("out")).unwrap_or_default();
    assert!(kills >= 3, "only {kills} kills landed; server log:\n{log}");

    // Let the last one finish, then read the balances.
    let balance = |external: String| {
        runtime.block_on(async {
            let text = client
                .get(format!("{base}/v1/customers"))
                .query(&[("external_id", external.as_str())])
                .bearer_auth(&key)
                .send()
                .await
                .expect("customers")
                .text()
                .await
                .expect("text");
            let list: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
            list["data"][0]["balances"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["currency"] == "TON"))
                .and_then(|b| b["balance"].as_u64())
                .unwrap_or(0)
        })
    };
    let payer = format!(
        "ton:{}",
        fixtures["accounts"]["payer"]["raw"].as_str().expect("raw")
    );
    let payer2 = format!(
        "ton:{}",
        fixtures["accounts"]["payer2"]["raw"].as_str().expect("raw")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while (balance(payer.clone()), balance(payer2.clone())) != (payer_total, payer2_total) {
        assert!(
            Instant::now() < deadline,
            "after {kills} kills: payer {} of {payer_total}, payer2 {} of {payer2_total}",
            balance(payer.clone()),
            balance(payer2.clone())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing more arrives later (no page booked twice).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (balance(payer.clone()), balance(payer2.clone())),
        (payer_total, payer2_total)
    );
    server.kill().expect("stop");
    server.wait().expect("reaped");
    let audit = farthing()
        .args(["audit", "--database"])
        .arg(format!("sqlite://{}", db.display()))
        .output()
        .expect("audit");
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    println!("{kills} kills mid-page; every TON payment booked once");
}

/// `farthing bench ton` pays real sandbox transactions through a local indexer and reports the
/// time from each reaching the indexer to its invoice being paid.
#[test]
fn bench_ton_pays_every_invoice_and_reports_the_latency() {
    let output = farthing()
        .args([
            "bench",
            "ton",
            "--payments",
            "3",
            "--poll-interval-ms",
            "20",
            "--request-interval-ms",
            "5",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("run bench");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = text
        .lines()
        .find(|line| line.starts_with("TON: indexer → invoice paid, 3 payments"))
        .unwrap_or_else(|| panic!("no report in {text}"));
    assert!(line.contains("0 not paid"), "{line}");
}
