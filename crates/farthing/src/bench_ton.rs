//! `farthing bench ton`: time from a TON transaction appearing at the indexer to farthing's
//! invoice being paid.
//!
//! Starts farthing in this process on a fresh database (127.0.0.1, a free port) and a local
//! indexer answering toncenter v3's `/transactions` shape. A merchant connects the sandbox's
//! merchant wallet as its TON rail and makes `--payments` TON invoices; TON's own
//! `@ton/sandbox` (`crates/farthing-ton/tests/sandbox/generate.mjs`, installed by the test
//! command) makes one real payment for each invoice's comment. Then, one at a time, a payment
//! is handed to the indexer (t0) and the invoice is read until it is paid (t1, read every
//! 5 ms). The releases are spread at random over the watcher's rest, so the figures are those
//! of payments arriving at any moment. Everything runs on 127.0.0.1 and every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use farthing_server::config::Config;
use farthing_server::state::Mode;
use serde_json::{json, Value};

use crate::bench::{ms, percentile};

/// Arguments of `farthing bench ton`.
#[derive(clap::Args, Debug)]
pub struct TonArgs {
    /// Payments to measure.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=200))]
    payments: u64,
    /// farthing's `ton.poll_interval_ms` (the watcher's rest once it reached the head).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    poll_interval_ms: u64,
    /// farthing's `ton.request_interval_ms` (1100: toncenter without a key).
    #[arg(long, default_value_t = 1_100, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    request_interval_ms: u64,
    /// The directory of `generate.mjs` (default: the source tree's
    /// `crates/farthing-ton/tests/sandbox`, where `./scripts/test` installs it).
    #[arg(long)]
    sandbox_dir: Option<PathBuf>,
    /// How long to wait for one payment before counting it as failed, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout_s: u64,
}

fn sandbox_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(dir) => vec![dir.to_path_buf()],
        None => vec![
            PathBuf::from("crates/farthing-ton/tests/sandbox"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../farthing-ton/tests/sandbox"),
        ],
    };
    for dir in &candidates {
        if dir.join("generate.mjs").is_file() && dir.join("node_modules/@ton/sandbox").is_dir() {
            return Ok(dir.clone());
        }
    }
    bail!(
        "no installed TON sandbox in {candidates:?}: run ./scripts/test once (it runs npm ci there), or give --sandbox-dir"
    )
}

fn generate(dir: &Path, spec: Option<&Value>) -> anyhow::Result<Value> {
    use std::io::Write;
    let mut child = Command::new("node")
        .current_dir(dir)
        .arg("generate.mjs")
        .arg(if spec.is_some() { "run" } else { "accounts" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running node generate.mjs")?;
    if let Some(spec) = spec {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(spec.to_string().as_bytes())?;
    } else {
        drop(child.stdin.take());
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "generate.mjs failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

type Released = Arc<Mutex<Vec<Value>>>;

/// A local indexer: `/api/v3/transactions` from the released transactions.
async fn indexer(released: Released) -> anyhow::Result<String> {
    use axum::extract::{Query, State};
    async fn transactions(
        State(released): State<Released>,
        Query(query): Query<Vec<(String, String)>>,
    ) -> axum::Json<Value> {
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let account = param("account").unwrap_or_default();
        let start: u64 = param("start_lt").and_then(|v| v.parse().ok()).unwrap_or(0);
        let limit: usize = param("limit").and_then(|v| v.parse().ok()).unwrap_or(10);
        let lt = |tx: &Value| {
            tx["lt"]
                .as_str()
                .and_then(|lt| lt.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut page: Vec<Value> = released
            .lock()
            .map(|txs| {
                txs.iter()
                    .filter(|tx| tx["account"].as_str() == Some(account.as_str()))
                    .filter(|tx| lt(tx) >= start)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        page.sort_by_key(lt);
        page.truncate(limit);
        axum::Json(json!({"transactions": page, "address_book": {}}))
    }
    let app = axum::Router::new()
        .route("/api/v3/transactions", axum::routing::get(transactions))
        .with_state(released);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/api/v3"))
}

pub fn run(args: &TonArgs) -> anyhow::Result<ExitCode> {
    let dir = sandbox_dir(args.sandbox_dir.as_deref())?;
    let work = std::env::temp_dir().join(format!("farthing-bench-ton-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(drive(args, &dir, &work));
    drop(runtime);
    let _ = std::fs::remove_dir_all(&work);
    outcome
}

async fn drive(args: &TonArgs, sandbox: &Path, work: &Path) -> anyhow::Result<ExitCode> {
    let accounts = generate(sandbox, None)?;
    let wallet = accounts["accounts"]["merchant"]["raw"]
        .as_str()
        .context("merchant address")?
        .to_owned();
    let released: Released = Arc::default();
    let api_url = indexer(released.clone()).await?;
    let mut config = Config {
        listen: "127.0.0.1:0".parse()?,
        database: work.join("farthing.db").to_string_lossy().into_owned(),
        public_url: "http://127.0.0.1:0".to_owned(),
        ..Config::default()
    };
    config.ton.allow_private_indexers = true;
    config.ton.poll_interval_ms = args.poll_interval_ms;
    config.ton.request_interval_ms = args.request_interval_ms;
    config.validate()?;
    let running = farthing_server::start(config)
        .await
        .context("starting farthing")?;
    let live = running.state().store(Mode::Live).clone();
    let test = running.state().store(Mode::Test).clone();
    let merchant = tokio::task::spawn_blocking(move || {
        farthing_server::create_merchant(&live, &test, "TON bench")
    })
    .await?
    .map_err(|error| anyhow::anyhow!("creating the merchant: {error}"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://{}", running.addr());
    let key = merchant.test_key;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await?;
            let status = response.status();
            let value: Value = response.json().await?;
            if !status.is_success() {
                bail!("{status}: {value}");
            }
            anyhow::Ok(value)
        }
    };
    call(
        reqwest::Method::PUT,
        "/v1/rails/ton",
        Some(json!({"address": wallet, "network": "testnet", "api_url": api_url, "jettons": []})),
    )
    .await
    .context("PUT /v1/rails/ton")?;
    let mut invoices = Vec::new();
    let mut scenarios = Vec::new();
    for n in 0..args.payments {
        let invoice = call(
            reqwest::Method::POST,
            "/v1/invoices",
            Some(json!({"currency": "TON", "amount": 1_000_000_000u64, "rails": ["ton"]})),
        )
        .await?;
        let comment = invoice["payment_instructions"]["ton"]["comment"]
            .as_str()
            .context("TON instructions")?
            .to_owned();
        invoices.push(invoice["id"].as_str().context("id")?.to_owned());
        scenarios.push(
            json!({"id": format!("p{n}"), "kind": "ton", "from": "payer", "to": "merchant",
            "amount": "1000000000", "comment": comment, "bounce": false}),
        );
    }
    println!("generating {} payments with @ton/sandbox…", scenarios.len());
    let made = generate(sandbox, Some(&json!({"scenarios": scenarios})))?;
    let transactions = made["transactions"].as_array().context("transactions")?;
    let mut samples = Vec::new();
    let mut failures = 0;
    let mut seed = 0x7011_u64;
    for (n, invoice) in invoices.iter().enumerate() {
        // Arrive at a random moment of the watcher's cycle.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let spread = args.poll_interval_ms + 2 * args.request_interval_ms;
        tokio::time::sleep(Duration::from_millis((seed >> 33) % spread.max(1))).await;
        let payment = transactions
            .iter()
            .find(|tx| tx["scenario"] == format!("p{n}") && tx["role"] == "merchant")
            .context("the payment's transaction")?
            .clone();
        let t0 = Instant::now();
        released
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(payment);
        loop {
            let status = call(
                reqwest::Method::GET,
                &format!("/v1/invoices/{invoice}"),
                None,
            )
            .await?["status"]
                .clone();
            if status == "paid" {
                samples.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(args.timeout_s) {
                failures += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), running.shutdown()).await;
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len().max(1))?;
    println!(
        "TON: indexer → invoice paid, {} payments (poll_interval_ms {}, request_interval_ms {}): \
         p50 {}, p90 {}, max {}, mean {}; {failures} not paid within {} s",
        samples.len(),
        args.poll_interval_ms,
        args.request_interval_ms,
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(samples.last().copied().unwrap_or_default()),
        ms(mean),
        args.timeout_s
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
