//! `farthing bench lightning`: time from a Lightning payment to farthing's `invoice.paid`
//! webhook, against a real LNbits.
//!
//! Starts a throwaway LNbits (FakeWallet backend) with `scripts/lnbits start`, which makes a
//! merchant wallet and a funded customer wallet, and farthing in this process on a fresh
//! database (127.0.0.1, a free port). A merchant gets a webhook endpoint pointing at a
//! receiver in this process and connects the merchant wallet as its Lightning rail. Then, for
//! each of `--payments` payments (`--concurrency` at a time): farthing makes a BTC invoice
//! (with a BOLT11 from LNbits), the customer wallet pays the BOLT11 (`POST /api/v1/payments`),
//! and the receiver notes when `invoice.paid` arrives for that invoice. Times: t0 right
//! before the pay call, t1 when LNbits answers it, t2 when the webhook arrives. A webhook
//! missing `--timeout-s` after t0 is a failure, reported with the figures. Everything runs on
//! 127.0.0.1 and every wait is bounded; LNbits is stopped at the end, also on errors.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use farthing_server::config::Config;
use farthing_server::state::Mode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::bench::{ms, percentile};

/// Arguments of `farthing bench lightning`.
#[derive(clap::Args, Debug)]
pub struct LightningArgs {
    /// Payments to measure (after one warm-up payment that is not counted).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    payments: u64,
    /// Payments under way at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    concurrency: u64,
    /// farthing's `lightning.poll_interval_ms` (the fallback poll of open invoices; the
    /// default is the server's, so the figure is the settlement stream's).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    poll_interval_ms: u64,
    /// Amount of each invoice, in satoshis.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    amount_sat: u64,
    /// How long to wait for a payment's `invoice.paid` webhook before counting it as failed,
    /// in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout_s: u64,
    /// `scripts/lnbits` (default: ./scripts/lnbits, else the one of the source tree this
    /// binary was built from).
    #[arg(long)]
    lnbits_script: Option<PathBuf>,
    /// Where to put the run's LNbits data and fresh farthing databases, in a directory of
    /// their own that is removed afterwards (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also print the figures as one line of JSON (the last line of stdout).
    #[arg(long)]
    json: bool,
}

/// How long `scripts/lnbits start` may take (it installs LNbits first when it is missing).
const SCRIPT_START_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `scripts/lnbits stop` may take (it waits 5 s for SIGTERM, then SIGKILLs).
const SCRIPT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of every HTTP call to farthing or LNbits.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

fn find_script(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--lnbits-script {}: no such file", path.display());
    }
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::current_dir() {
        candidates.push(dir.join("scripts/lnbits"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lnbits"));
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    bail!(
        "scripts/lnbits not found (looked at {}): run this from the farthing source tree or pass --lnbits-script",
        looked.join(" and ")
    )
}

/// Runs `bash SCRIPT ARGS…`, killing it after `timeout`: `(success, stdout, stderr)`.
fn run_script(
    script: &Path,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<(bool, String, String)> {
    let mut child = Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running bash {}", script.display()))?;
    let reader = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        bail!(
            "{} {} did not finish within {} s",
            script.display(),
            args.join(" "),
            timeout.as_secs()
        );
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok((status.success(), stdout, stderr))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A running LNbits; stopped (`scripts/lnbits stop`) on drop.
struct Lnbits {
    script: PathBuf,
    dir: PathBuf,
    url: String,
    merchant_invoice_key: String,
    merchant_admin_key: String,
    customer_admin_key: String,
}

impl Lnbits {
    fn start(script: &Path, dir: &Path) -> anyhow::Result<Lnbits> {
        let dir_arg = dir.to_string_lossy().into_owned();
        // The port is free when picked; another process may take it before LNbits binds it,
        // which the script reports: then try another.
        let mut attempt = 0;
        let stdout = loop {
            attempt += 1;
            let port = free_port()?.to_string();
            let (ok, stdout, stderr) =
                run_script(script, &["start", &dir_arg, &port], SCRIPT_START_TIMEOUT)?;
            match (ok, stdout, stderr) {
                (true, stdout, _) => break stdout,
                (false, _, stderr)
                    if attempt < 3
                        && (stderr.contains("is not free")
                            || stderr.contains("already in use")) =>
                {
                    continue
                }
                (false, _, stderr) => {
                    // The script stops what it started when its setup fails; make sure.
                    let _ = run_script(script, &["stop", &dir_arg], SCRIPT_STOP_TIMEOUT);
                    bail!(
                        "{} start failed (`scripts/lnbits install`, or the README's test command, installs LNbits):\n{}",
                        script.display(),
                        stderr.trim_end()
                    );
                }
            }
        };
        let line = stdout.lines().last().unwrap_or_default();
        let info: Value = match serde_json::from_str(line) {
            Ok(info) => info,
            Err(error) => {
                let _ = run_script(script, &["stop", &dir_arg], SCRIPT_STOP_TIMEOUT);
                bail!("scripts/lnbits start printed no JSON ({error}): {stdout}");
            }
        };
        // From here on, an error drops `lnbits`, which stops it.
        let mut lnbits = Lnbits {
            script: script.to_path_buf(),
            dir: dir.to_path_buf(),
            url: String::new(),
            merchant_invoice_key: String::new(),
            merchant_admin_key: String::new(),
            customer_admin_key: String::new(),
        };
        let field = |wallet: &str, name: &str| -> anyhow::Result<String> {
            let value = if wallet.is_empty() {
                &info[name]
            } else {
                &info[wallet][name]
            };
            value
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("scripts/lnbits printed no {wallet} {name}: {info}"))
        };
        lnbits.url = field("", "url")?;
        lnbits.merchant_invoice_key = field("merchant", "invoice_key")?;
        lnbits.merchant_admin_key = field("merchant", "admin_key")?;
        lnbits.customer_admin_key = field("customer", "admin_key")?;
        Ok(lnbits)
    }
}

impl Drop for Lnbits {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        match run_script(&self.script, &["stop", &dir], SCRIPT_STOP_TIMEOUT) {
            Ok((true, _, _)) => {}
            Ok((false, _, stderr)) => eprintln!("scripts/lnbits stop failed: {}", stderr.trim()),
            Err(error) => eprintln!("scripts/lnbits stop failed: {error:#}"),
        }
    }
}

/// The bench's directory; removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Who waits for which invoice's `invoice.paid`: registered before the payment, so a webhook
/// can't arrive before its waiter.
type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

/// A webhook receiver on 127.0.0.1: notes the arrival time of each `invoice.paid`.
async fn receiver(
    waiters: Waiters,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let arrived = Instant::now();
            let waiters = waiters.clone();
            async move {
                if let Ok(event) = serde_json::from_slice::<Value>(&body) {
                    if event["type"] == "invoice.paid" {
                        if let Some(id) = event["data"]["object"]["id"].as_str() {
                            let waiter = waiters.lock().ok().and_then(|mut map| map.remove(id));
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(arrived);
                            }
                        }
                    }
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
    });
    Ok((format!("http://{addr}/hook"), task))
}

/// One measured payment.
struct Sample {
    /// t2 - t0: from the pay call to the webhook.
    to_webhook: Duration,
    /// t2 - t1: from LNbits' answer to the webhook (zero when the webhook came first).
    after_answer: Duration,
    /// t1 - t0: LNbits' pay call.
    pay_call: Duration,
    /// Whether the webhook arrived before LNbits answered the pay call.
    webhook_first: bool,
}

/// One failed payment.
struct Failure {
    payment: u64,
    invoice: Option<String>,
    stage: &'static str,
    error: String,
}

struct Ctx {
    client: reqwest::Client,
    base: String,
    key: String,
    lnbits_url: String,
    customer_admin_key: String,
    waiters: Waiters,
    amount_sat: u64,
    timeout: Duration,
}

async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let response = request.send().await.map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|error| error.to_string())?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

impl Ctx {
    async fn farthing(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    /// One payment, measured.
    async fn pay_one(&self, payment: u64) -> Result<Sample, Failure> {
        let fail = |invoice: Option<&str>, stage: &'static str, error: String| Failure {
            payment,
            invoice: invoice.map(str::to_owned),
            stage,
            error,
        };
        let (status, invoice) = self
            .farthing(
                reqwest::Method::POST,
                "/v1/invoices",
                Some(json!({
                    "currency": "BTC",
                    "amount": self.amount_sat,
                    "description": format!("bench payment {payment}"),
                })),
            )
            .await
            .map_err(|error| fail(None, "create invoice", error))?;
        if status != 201 {
            return Err(fail(
                None,
                "create invoice",
                format!("HTTP {status}: {invoice}"),
            ));
        }
        let id = invoice["id"].as_str().unwrap_or_default().to_owned();
        let Some(bolt11) = invoice["payment_instructions"]["lightning"]["bolt11"].as_str() else {
            return Err(fail(
                Some(&id),
                "create invoice",
                format!("no BOLT11 on {invoice}"),
            ));
        };
        let (sender, arrival) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.insert(id.clone(), sender);
        }
        let request = self
            .client
            .post(format!("{}/api/v1/payments", self.lnbits_url))
            .header("X-Api-Key", &self.customer_admin_key)
            .json(&json!({"out": true, "bolt11": bolt11}));
        let t0 = Instant::now();
        let paid = send(request).await;
        let t1 = Instant::now();
        let forget = || {
            if let Ok(mut waiters) = self.waiters.lock() {
                waiters.remove(&id);
            }
        };
        match paid {
            Ok((status, _)) if status < 300 => {}
            Ok((status, body)) => {
                forget();
                return Err(fail(
                    Some(&id),
                    "pay",
                    format!("LNbits: HTTP {status}: {body}"),
                ));
            }
            Err(error) => {
                forget();
                return Err(fail(Some(&id), "pay", format!("LNbits: {error}")));
            }
        }
        let left = self.timeout.saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, arrival).await {
            Ok(Ok(t2)) => Ok(Sample {
                to_webhook: t2.saturating_duration_since(t0),
                after_answer: t2.saturating_duration_since(t1),
                pay_call: t1 - t0,
                webhook_first: t2 < t1,
            }),
            _ => {
                forget();
                Err(fail(
                    Some(&id),
                    "webhook",
                    format!(
                        "no invoice.paid webhook within {} s of the payment",
                        self.timeout.as_secs()
                    ),
                ))
            }
        }
    }
}

/// p50, p90, p99, max of `values` (sorted here).
fn summary(values: &mut [Duration]) -> [Duration; 4] {
    values.sort_unstable();
    [
        percentile(values, 0.50),
        percentile(values, 0.90),
        percentile(values, 0.99),
        values.last().copied().unwrap_or_default(),
    ]
}

fn summary_json(figures: &[Duration; 4]) -> Value {
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 1e2;
    json!({
        "p50": ms(figures[0]),
        "p90": ms(figures[1]),
        "p99": ms(figures[2]),
        "max": ms(figures[3]),
    })
}

struct Outcome {
    samples: Vec<Sample>,
    failures: Vec<Failure>,
    elapsed: Duration,
    warmup: Duration,
    stream: String,
    database: PathBuf,
}

async fn drive(args: &LightningArgs, lnbits: &Lnbits, work: &Path) -> anyhow::Result<Outcome> {
    let database = work.join("farthing.db");
    let mut config = Config {
        listen: "127.0.0.1:0".parse()?,
        database: database.to_string_lossy().into_owned(),
        public_url: "http://127.0.0.1:0".to_owned(),
        allow_private_webhooks: true,
        ..Config::default()
    };
    config.lightning.poll_interval_ms = args.poll_interval_ms;
    // The bench's LNbits runs on 127.0.0.1.
    config.lightning.allow_private_nodes = true;
    // A throwaway database: a throwaway key seals its live secrets (the node's keys).
    config.secrets_key = Some(farthing_store::SecretsKey::generate()?);
    config.validate()?;
    let running = farthing_server::start(config)
        .await
        .context("starting farthing")?;
    let (stop_receiver, _) = tokio::sync::watch::channel(false);
    let waiters: Waiters = Arc::default();
    let result = async {
        let (hook_url, receiver_task) =
            receiver(waiters.clone(), stop_receiver.subscribe()).await?;
        let outcome = measure(args, lnbits, &running, waiters.clone(), &hook_url).await;
        let _ = stop_receiver.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), receiver_task).await;
        outcome
    }
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), running.shutdown()).await;
    let (samples, failures, elapsed, warmup, stream) = result?;
    Ok(Outcome {
        samples,
        failures,
        elapsed,
        warmup,
        stream,
        database,
    })
}

type Measured = (Vec<Sample>, Vec<Failure>, Duration, Duration, String);

async fn measure(
    args: &LightningArgs,
    lnbits: &Lnbits,
    running: &farthing_server::Running,
    waiters: Waiters,
    hook_url: &str,
) -> anyhow::Result<Measured> {
    let live = running.state().store(Mode::Live).clone();
    let test = running.state().store(Mode::Test).clone();
    let merchant = tokio::task::spawn_blocking(move || {
        farthing_server::create_merchant(&live, &test, "Lightning bench")
    })
    .await?
    .map_err(|error| anyhow::anyhow!("creating the merchant: {error}"))?;
    let ctx = Arc::new(Ctx {
        client: reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?,
        base: format!("http://{}", running.addr()),
        key: merchant.live_key,
        lnbits_url: lnbits.url.clone(),
        customer_admin_key: lnbits.customer_admin_key.clone(),
        waiters,
        amount_sat: args.amount_sat,
        timeout: Duration::from_secs(args.timeout_s),
    });
    let (status, body) = ctx
        .farthing(
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            Some(json!({"url": hook_url})),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    if status != 201 {
        bail!("creating the webhook endpoint: HTTP {status}: {body}");
    }
    let (status, body) = ctx
        .farthing(
            reqwest::Method::PUT,
            "/v1/rails/lightning",
            Some(json!({
                "backend": "lnbits",
                "url": lnbits.url,
                "invoice_key": lnbits.merchant_invoice_key,
                "admin_key": lnbits.merchant_admin_key,
            })),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    if status != 200 {
        bail!("connecting the Lightning rail: HTTP {status}: {body}");
    }
    // The watcher starts following LNbits' websocket right after the rail is connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    while settlement_stream(&ctx).await != "connected" {
        if Instant::now() > deadline {
            bail!("farthing's Lightning settlement stream did not connect within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One payment not counted: connections are opened, caches warmed, and the websocket is
    // surely subscribed.
    let warmup_started = Instant::now();
    if let Err(failure) = ctx.pay_one(0).await {
        bail!(
            "the warm-up payment failed ({}): {}",
            failure.stage,
            failure.error
        );
    }
    let warmup = warmup_started.elapsed();

    let next = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let ctx = ctx.clone();
        let next = next.clone();
        let payments = args.payments;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut failures = Vec::new();
            loop {
                let payment = next.fetch_add(1, Ordering::Relaxed);
                if payment > payments {
                    break;
                }
                match ctx.pay_one(payment).await {
                    Ok(sample) => samples.push(sample),
                    Err(failure) => failures.push(failure),
                }
            }
            (samples, failures)
        }));
    }
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        let (mut s, mut f) = task.await?;
        samples.append(&mut s);
        failures.append(&mut f);
    }
    let elapsed = started.elapsed();
    failures.sort_by_key(|failure| failure.payment);
    let stream = settlement_stream(&ctx).await;
    Ok((samples, failures, elapsed, warmup, stream))
}

/// farthing's view of its LNbits websocket (`GET /v1/rails`).
async fn settlement_stream(ctx: &Ctx) -> String {
    let Ok((200, rails)) = ctx.farthing(reqwest::Method::GET, "/v1/rails", None).await else {
        return "unknown".to_owned();
    };
    rails["data"]
        .as_array()
        .and_then(|rails| rails.iter().find(|rail| rail["rail"] == "lightning"))
        .and_then(|rail| rail["settlement_stream"].as_str())
        .unwrap_or("unknown")
        .to_owned()
}

/// Resolves on SIGINT or SIGTERM. Caught from the call on (also while LNbits starts), so an
/// interrupted run still stops LNbits. Call inside a runtime.
#[cfg(unix)]
fn interrupts() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn interrupts() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

pub fn run(args: &LightningArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let script = find_script(args.lnbits_script.as_deref())?;
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir(dir.join(format!(
        "farthing-bench-lightning-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    )));
    std::fs::create_dir_all(&work.0).with_context(|| format!("creating {}", work.0.display()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let interrupted = {
        let _context = runtime.enter();
        interrupts()?
    };
    let lnbits_started = Instant::now();
    let lnbits = Lnbits::start(&script, &work.0.join("lnbits"))?;
    println!(
        "lightning bench: {} payments of {} sat, concurrency {}, poll interval {} ms; LNbits (FakeWallet) at {} started in {:.1} s",
        args.payments,
        args.amount_sat,
        args.concurrency,
        args.poll_interval_ms,
        lnbits.url,
        lnbits_started.elapsed().as_secs_f64()
    );
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = drive(args, &lnbits, &work.0) => outcome,
            () = interrupted => Err(anyhow::anyhow!("interrupted")),
        }
    });
    drop(runtime);
    // Stop LNbits before reporting (and on errors, before the work directory goes).
    drop(lnbits);
    let outcome = outcome?;
    let report = farthing_store::audit::audit_path(&outcome.database)?;
    report_outcome(args, &outcome, report.is_ok());
    if !report.is_ok() {
        println!("{report}");
    }
    Ok(if report.is_ok() && outcome.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report_outcome(args: &LightningArgs, outcome: &Outcome, audit_ok: bool) {
    let samples = &outcome.samples;
    let mut to_webhook: Vec<Duration> = samples.iter().map(|s| s.to_webhook).collect();
    let mut after_answer: Vec<Duration> = samples.iter().map(|s| s.after_answer).collect();
    let mut pay_call: Vec<Duration> = samples.iter().map(|s| s.pay_call).collect();
    let webhook_first = samples.iter().filter(|s| s.webhook_first).count();
    let rows = [
        (
            "payment → invoice.paid webhook (t2-t0)",
            summary(&mut to_webhook),
        ),
        (
            "LNbits' answer → webhook (t2-t1)",
            summary(&mut after_answer),
        ),
        ("LNbits pay call (t1-t0)", summary(&mut pay_call)),
    ];
    println!(
        "setup: warm-up payment (not counted) in {}; settlement stream {}",
        ms(outcome.warmup),
        outcome.stream
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>10}",
        "", "p50", "p90", "p99", "max"
    );
    for (name, figures) in &rows {
        println!(
            "{name:<40} {:>10} {:>10} {:>10} {:>10}",
            ms(figures[0]),
            ms(figures[1]),
            ms(figures[2]),
            ms(figures[3])
        );
    }
    let rate = samples.len() as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
    println!(
        "payments: {} ok, {} failed in {:.2} s ({rate:.1}/s); webhook before LNbits' answer: {webhook_first}",
        samples.len(),
        outcome.failures.len(),
        outcome.elapsed.as_secs_f64()
    );
    for failure in &outcome.failures {
        println!(
            "failed: payment {} (invoice {}) at {}: {}",
            failure.payment,
            failure.invoice.as_deref().unwrap_or("-"),
            failure.stage,
            failure.error
        );
    }
    println!("audit: {}", if audit_ok { "ok" } else { "FAILED" });
    println!(
        "lightning: payment to invoice.paid webhook p50 {}, p99 {} over {} payments",
        ms(rows[0].1[0]),
        ms(rows[0].1[2]),
        samples.len()
    );
    if args.json {
        let failures: Vec<Value> = outcome
            .failures
            .iter()
            .map(|failure| {
                json!({
                    "payment": failure.payment,
                    "invoice": failure.invoice,
                    "stage": failure.stage,
                    "error": failure.error,
                })
            })
            .collect();
        let line = json!({
            "bench": "lightning",
            "payments": args.payments,
            "ok": samples.len(),
            "failed": outcome.failures.len(),
            "failures": failures,
            "concurrency": args.concurrency,
            "poll_interval_ms": args.poll_interval_ms,
            "amount_sat": args.amount_sat,
            "elapsed_s": (outcome.elapsed.as_secs_f64() * 1e3).round() / 1e3,
            "settlement_stream": outcome.stream,
            "payment_to_webhook_ms": summary_json(&rows[0].1),
            "answer_to_webhook_ms": summary_json(&rows[1].1),
            "lnbits_pay_ms": summary_json(&rows[2].1),
            "webhook_before_answer": webhook_first,
            "audit": if audit_ok { "ok" } else { "failed" },
        });
        println!("{line}");
    }
}
