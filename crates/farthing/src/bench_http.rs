//! `farthing bench http`: invoice creations and balance charges per second over HTTP.
//!
//! Starts `farthing serve` (this same binary) as a child process on a fresh SQLite database
//! with durable commits, creates a merchant and a customer with a large test balance, then
//! drives `--clients` keep-alive connections against it: first `POST /v1/invoices`, then
//! `POST /v1/charges`, each phase for `--seconds`. The load generator runs on the same machine
//! (and shares its cores), as the target in BENCHMARKS.md assumes. After each phase it prints
//! the machine's CPU time per operation (from Linux's `/proc`): all of it, and all but the
//! load generator's (the servers, PostgreSQL, the kernel's network work), with how busy the
//! cores were and how much time the hypervisor took. Rates drift by a third between hours on
//! a shared virtual machine; the CPU per operation drifts much less, so it is the figure to
//! compare across days.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::bench::{ms, percentile};

/// Arguments of `farthing bench http`.
#[derive(clap::Args, Debug)]
pub struct HttpArgs {
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Directory for the fresh database (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Port for the server (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Drive an already running server at this base URL instead of starting one (its
    /// database is not audited afterwards). Repeat it for several instances on one database:
    /// the clients are spread over them, one in turn. Start each with a per-key rate limit
    /// above what it reaches (`FARTHING_RATE_LIMIT_API_KEY_PER_S`), or a phase fails with 429s.
    #[arg(long, requires = "key")]
    url: Vec<String>,
    /// Test-mode API key for `--url`.
    #[arg(long)]
    key: Option<String>,
    /// Turn every rate limit off (default: on, with the per-key limit set above what the
    /// machine reaches, so its cost is measured but it never refuses).
    #[arg(long)]
    no_rate_limits: bool,
    /// Give the merchant a full set of risk rules that every charge passes (limits that need
    /// the customer's last-24-hour total and payment count, velocity, block lists of 1 000
    /// users and 100 networks): the charges phase then measures what the checks cost.
    #[arg(long)]
    risk_rules: bool,
}

/// Rules every bench charge passes, yet each reads what the rules can read: the customer's
/// 24-hour total and payment count, its velocity window, the block lists.
fn bench_rules() -> Value {
    let users: Vec<i64> = (1..=1_000).collect();
    let networks: Vec<String> = (0..100).map(|i| format!("198.51.{i}.0/24")).collect();
    json!({
        "limits": [{
            "currency": "XTR",
            "per_payment_max": 1_000,
            "per_customer_day_max": 1_000_000_000_000u64,
            "new_customer_per_payment_max": 1_000,
        }],
        "new_customers": {"days": 7, "payments": 3},
        "velocity": {"attempts_per_minute": 1_000_000_000u32, "failures_per_minute": 1_000_000u32},
        "block": {"telegram_users": users, "wallets": ["uqblocked"], "ips": networks},
    })
}

struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        // SIGTERM-like graceful stop is not needed for a throwaway bench database.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The machine's CPU time so far (Linux `/proc`, in ticks of 1/100 s, the unit `/proc`
/// reports on every mainstream architecture): busy, stolen by the hypervisor, all, and this
/// process's own, the load generator's (a server the benchmark starts is a child process).
#[derive(Clone, Copy)]
struct CpuTicks {
    busy: u64,
    steal: u64,
    total: u64,
    own: u64,
}

impl CpuTicks {
    /// `None` where `/proc` is not Linux's.
    fn now() -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4)?;
        let steal = *fields.get(7)?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let after = own.rsplit_once(')')?.1;
        let own_fields: Vec<&str> = after.split_whitespace().collect();
        let own =
            own_fields.get(11)?.parse::<u64>().ok()? + own_fields.get(12)?.parse::<u64>().ok()?;
        Some(CpuTicks {
            busy: total - idle - steal,
            steal,
            total,
            own,
        })
    }

    /// What the machine did between `self` and `later`, for `ops` operations.
    fn report(self, later: CpuTicks, ops: usize) -> String {
        const TICK_US: f64 = 10_000.0;
        let per_op = |ticks: u64| ticks as f64 * TICK_US / ops.max(1) as f64;
        let busy = later.busy.saturating_sub(self.busy);
        let own = later.own.saturating_sub(self.own);
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        format!(
            "CPU per op {:.0} µs ({:.0} µs outside the load generator), machine busy {:.0} %, stolen {:.0} %",
            per_op(busy),
            per_op(busy.saturating_sub(own)),
            busy as f64 * 100.0 / total,
            later.steal.saturating_sub(self.steal) as f64 * 100.0 / total,
        )
    }
}

async fn phase(
    name: &str,
    clients: u64,
    seconds: u64,
    make: Arc<dyn Fn(u64) -> (String, Value) + Send + Sync>,
    key: &str,
) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let cpu_before = CpuTicks::now();
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let stop = stop.clone();
        let make = make.clone();
        let key = key.to_owned();
        // One client (one keep-alive connection) per task.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut limited) = (0u64, 0u64);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (url, body) = make(client_index * 1_000_000_000 + n);
                n += 1;
                let sent = Instant::now();
                let response = client.post(&url).bearer_auth(&key).json(&body).send().await;
                match response {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    Ok(response) => {
                        errors += 1;
                        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                            limited += 1;
                        }
                        let _ = response.bytes().await;
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors, limited)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu_after = CpuTicks::now();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let (mut errors, mut limited) = (0, 0);
    for task in tasks {
        let (mut lat, err, refused) = task.await?;
        latencies.append(&mut lat);
        errors += err;
        limited += refused;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{name}: {} ok, {errors} errors in {:.2} s: {rate:.0}/s, latency p50 {}, p99 {}, max {}",
        latencies.len(),
        elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        // Over the phase's seconds, before the clients stop (their last answers are few).
        let answered = (rate * seconds as f64) as usize;
        println!("{name}: {}", before.report(after, answered));
    }
    if limited > 0 {
        bail!(
            "{name}: {errors} requests failed, {limited} of them refused by the server's rate \
             limit (429): this measures the limit, not the server. Start each server with a \
             higher per-key limit (FARTHING_RATE_LIMIT_API_KEY_PER_S, as the benchmark does for \
             a server it starts itself)"
        );
    }
    if errors > 0 {
        bail!("{name}: {errors} requests failed");
    }
    Ok(rate)
}

/// Creates a funded customer (and the risk rules, with `risk_rules`) through the first of
/// `bases`, then runs both phases against all of them (client `i` talks to `bases[i % n]`).
async fn drive(
    bases: &[String],
    key: &str,
    clients: u64,
    seconds: u64,
    risk_rules: bool,
) -> anyhow::Result<(f64, f64)> {
    let base = bases.first().context("no base URL")?.as_str();
    // The URL of client `i` (its requests are numbered from `i` × 1 000 000 000).
    let on = |bases: &[String], path: &str| {
        let urls: Vec<String> = bases.iter().map(|base| format!("{base}{path}")).collect();
        move |seq: u64| urls[(seq / 1_000_000_000) as usize % urls.len()].clone()
    };
    let client = reqwest::Client::new();
    if risk_rules {
        let set = client
            .put(format!("{base}/v1/risk/rules"))
            .bearer_auth(key)
            .json(&bench_rules())
            .send()
            .await?;
        if !set.status().is_success() {
            bail!("setting the risk rules failed: {}", set.text().await?);
        }
    }
    let customer: Value = client
        .post(format!("{base}/v1/customers"))
        .bearer_auth(key)
        .json(&json!({}))
        .send()
        .await?
        .json()
        .await?;
    let customer = customer["id"].as_str().context("customer id")?.to_owned();
    let funded = client
        .post(format!("{base}/v1/test/customers/{customer}/top_up"))
        .bearer_auth(key)
        .json(&json!({"amount": 1_000_000_000_000u64, "currency": "XTR"}))
        .send()
        .await?;
    if !funded.status().is_success() {
        bail!("top-up failed: {}", funded.text().await?);
    }
    let invoices_url = on(bases, "/v1/invoices");
    let invoices = phase(
        "invoice creations",
        clients,
        seconds,
        Arc::new(move |seq| {
            (
                invoices_url(seq),
                json!({"amount": 50, "currency": "XTR", "description": "bench"}),
            )
        }),
        key,
    )
    .await?;
    let charges_url = on(bases, "/v1/charges");
    let charges = phase(
        "balance charges",
        clients,
        seconds,
        Arc::new(move |seq| {
            (
                charges_url(seq),
                json!({"customer": customer, "amount": 1, "currency": "XTR"}),
            )
        }),
        key,
    )
    .await?;
    Ok((invoices, charges))
}

pub fn run(args: &HttpArgs) -> anyhow::Result<ExitCode> {
    if let (false, Some(key)) = (args.url.is_empty(), &args.key) {
        let bases: Vec<String> = args
            .url
            .iter()
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect();
        let runtime = tokio::runtime::Runtime::new()?;
        let (invoices, charges) = runtime.block_on(drive(
            &bases,
            key,
            args.clients,
            args.seconds,
            args.risk_rules,
        ))?;
        println!("http: {invoices:.0} invoice creations/s, {charges:.0} charges/s durable");
        return Ok(ExitCode::SUCCESS);
    }
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = dir.join(format!("farthing-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let database = work.join("farthing.db");
    let exe = std::env::current_exe()?;
    let created = Command::new(&exe)
        .args([
            "merchant",
            "create",
            "--name",
            "Bench shop",
            "--json",
            "--database",
        ])
        .arg(&database)
        .output()?;
    if !created.status.success() {
        bail!(
            "merchant create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let merchant: Value = serde_json::from_slice(&created.stdout)?;
    let key = merchant["test_key"]
        .as_str()
        .context("test key")?
        .to_owned();
    let port = match args.port {
        Some(port) => port,
        None => free_port()?,
    };
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = Command::new(&exe);
    serve
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(&database)
        .env("RUST_LOG", "warn");
    if args.no_rate_limits {
        let config = work.join("farthing.toml");
        std::fs::write(
            &config,
            "[rate_limits]\napi_key_per_s = 0\nclient_per_s = 0\nfailed_auth_per_s = 0\n",
        )?;
        serve.arg("--config").arg(&config);
    } else {
        // One key drives the whole load: the per-key rate limit still runs (its cost is part
        // of the figure) but is set above what the machine can reach.
        serve.env("FARTHING_RATE_LIMIT_API_KEY_PER_S", "10000000");
    }
    let child = serve
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let _guard = ServerGuard(child);
    println!(
        "http bench: {} clients, {} s per phase, server {base}, database {}, rate limits {}, risk rules {}",
        args.clients,
        args.seconds,
        database.display(),
        if args.no_rate_limits { "off" } else { "on" },
        if args.risk_rules { "on" } else { "off" },
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let client = reqwest::Client::new();
        let ready_by = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get(format!("{base}/readyz")).send().await.is_ok() {
                break;
            }
            if Instant::now() > ready_by {
                bail!("the server did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drive(
            std::slice::from_ref(&base),
            &key,
            args.clients,
            args.seconds,
            args.risk_rules,
        )
        .await
    });
    drop(_guard);
    let (invoices, charges) = result?;
    let audit = Command::new(&exe)
        .args(["audit", "--database"])
        .arg(&database)
        .output()?;
    println!(
        "audit: {}",
        if audit.status.success() {
            "ok"
        } else {
            "FAILED"
        }
    );
    let _ = std::fs::remove_dir_all(&work);
    println!("http: {invoices:.0} invoice creations/s, {charges:.0} charges/s durable");
    Ok(if audit.status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
