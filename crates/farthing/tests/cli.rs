//! End-to-end tests of the `farthing` binary: the crash test (SIGKILL at random moments) and
//! `farthing audit`'s exit codes and report.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use farthing_store::{Ledger, Store, StoreOptions};
use std::io::{BufRead, BufReader};

#[path = "support/crash_writer.rs"]
mod crash_writer;

fn farthing() -> Command {
    Command::new(env!("CARGO_BIN_EXE_farthing"))
}

fn audit(path: &Path) -> Output {
    farthing()
        .args(["audit", "--database"])
        .arg(format!("sqlite://{}", path.display()))
        .output()
        .expect("run farthing audit")
}

/// Starts the crash writer on the SQLite file `db`.
fn spawn_writer(db: &Path, seed: u64, retry: &Path) -> (Child, mpsc::Receiver<String>) {
    crash_writer::spawn(&db.display().to_string(), seed, retry)
}

/// SPEC P4: a write answered as durable survives `kill -9`. Each round a child process applies
/// random writes from several threads (group commit), printing `ack` after each durable
/// answer; it is SIGKILLed at a random moment; then every acknowledged transfer must be in
/// the database with its fields, and `farthing audit` must pass. Later rounds also retry
/// writes acknowledged in earlier rounds, which must report `Exists` (applied once).
#[test]
fn acknowledged_writes_survive_sigkill_and_audit_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let retry = dir.path().join("acks.txt");
    let seed: u64 = std::env::var("FARTHING_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut previous: Vec<String> = Vec::new();
    let (mut acked, mut retried) = (0usize, 0usize);
    const ROUNDS: u64 = 24;
    for round in 0..ROUNDS {
        let sample: Vec<&str> = (0..previous.len().min(200))
            .map(|_| previous[rng.usize(..previous.len())].as_str())
            .collect();
        std::fs::write(&retry, sample.join("\n")).expect("write retry file");
        let (mut child, lines) = spawn_writer(&db, seed.wrapping_add(round), &retry);
        let ready = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("crash writer did not start");
        assert_eq!(ready, "ready");
        std::thread::sleep(Duration::from_millis(rng.u64(30..600)));
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
        child.wait().expect("reap child");
        let output: Vec<String> = lines.iter().collect();
        let violations: Vec<&String> = output
            .iter()
            .filter(|l| l.starts_with("violation"))
            .collect();
        assert!(violations.is_empty(), "round {round}: {violations:?}");
        retried += output.iter().filter(|l| *l == "retried").count();
        let acks: Vec<String> = output
            .into_iter()
            .filter(|l| l.starts_with("ack "))
            .collect();

        let store = Store::open(&db, StoreOptions::default()).expect("reopen after SIGKILL");
        crash_writer::assert_stored(&Ledger::Sqlite(store.clone()), &acks);
        let report = store.audit().expect("audit");
        assert!(report.is_ok(), "round {round}: {report}");
        assert!(report.transfers as usize >= acks.len());
        store.shutdown();
        let cli = audit(&db);
        assert!(
            cli.status.success(),
            "round {round}: farthing audit failed: {}",
            String::from_utf8_lossy(&cli.stdout)
        );
        acked += acks.len();
        previous.extend(acks);
    }
    assert!(
        acked > 200,
        "too few writes acknowledged to mean anything: {acked}"
    );
    assert!(retried > 0, "no retry of an earlier acknowledged write ran");
}

#[test]
fn audit_exit_codes_and_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("audit.db");

    let missing = audit(&db);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no database at"));

    let bad_url = farthing()
        .args(["audit", "--database", "mysql://localhost/x"])
        .output()
        .expect("run");
    assert_eq!(bad_url.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("unsupported database URL"));

    // A healthy ledger written by the crash writer's account set.
    let no_retries = dir.path().join("none.txt");
    std::fs::write(&no_retries, "").expect("write");
    let (mut child, lines) = spawn_writer(&db, 1, &no_retries);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(60)).as_deref(),
        Ok("ready")
    );
    let mut acks = 0;
    while acks < 50 {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("writes");
        acks += usize::from(line.starts_with("ack "));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    let ok = audit(&db);
    let text = String::from_utf8_lossy(&ok.stdout).to_string();
    assert_eq!(ok.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ok: per currency the balances sum to zero"),
        "{text}"
    );

    // Break one balance behind the ledger's back: audit must name the account and fail.
    // (Totals are 16-byte big-endian blobs.)
    let connection = rusqlite::Connection::open(&db).expect("open");
    let (id, total): (Vec<u8>, Vec<u8>) = connection
        .query_row(
            "SELECT id, credits_posted FROM accounts WHERE kind = 'merchant_balance'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the merchant's account");
    let plus_one = u128::from_be_bytes(total.try_into().expect("16 bytes")) + 1;
    connection
        .execute(
            "UPDATE accounts SET credits_posted = ?2 WHERE id = ?1",
            (id, plus_one.to_be_bytes()),
        )
        .expect("tamper");
    drop(connection);
    let broken = audit(&db);
    let text = String::from_utf8_lossy(&broken.stdout).to_string();
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(
        text.contains("differ from the sums of its transfers"),
        "{text}"
    );
    assert!(text.contains("do not sum to zero"), "{text}");
    assert!(text.contains("FAILED"), "{text}");

    // A customer's statement edited behind the ledger's back is found too.
    let connection = rusqlite::Connection::open(&db).expect("open");
    // (The table has no rowid: the row is named by its key.)
    connection
        .execute(
            "UPDATE customer_entries SET amount = amount + 1 WHERE (account_id, timestamp_ns) = \
             (SELECT account_id, timestamp_ns FROM customer_entries LIMIT 1)",
            [],
        )
        .expect("tamper with a statement");
    drop(connection);
    let text = String::from_utf8_lossy(&audit(&db).stdout).to_string();
    assert!(
        text.contains("does not follow from the one before"),
        "{text}"
    );
    assert!(text.contains("FAILED"), "{text}");
}

/// `farthing bench ledger` runs end to end on a fresh database, audits it, and ends with the
/// line operators and scripts read. (Its figures are not asserted: performance is measured,
/// not tested.)
#[test]
fn bench_ledger_reports_durable_transfers_per_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = farthing()
        .args([
            "bench",
            "ledger",
            "--seconds",
            "1",
            "--accounts",
            "3",
            "--batch",
            "100",
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run bench");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("audit: ok"), "{text}");
    let last = text.lines().last().unwrap_or_default();
    let rate: f64 = last
        .strip_prefix("ledger: ")
        .and_then(|rest| rest.strip_suffix(" transfers/s durable"))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("unexpected last line {last:?}"));
    assert!(rate > 0.0, "{text}");
    // The fresh database is removed afterwards unless --keep is given.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

/// `farthing bench http` runs both phases end to end against the server it starts, audits
/// the database, and after each phase tells the machine's CPU per operation (read from
/// `/proc`), all of it and all but the load generator's. (Its figures are not asserted beyond
/// being there: performance is measured, not tested.)
#[test]
fn bench_http_reports_rates_and_cpu_per_operation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = farthing()
        .args(["bench", "http", "--seconds", "1", "--clients", "2", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run bench");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("audit: ok"), "{text}");
    for phase in ["invoice creations", "balance charges"] {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{phase}: CPU per op ")))
            .unwrap_or_else(|| panic!("no CPU line for {phase}: {text}"));
        let numbers: Vec<f64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|part| !part.is_empty())
            .filter_map(|part| part.parse().ok())
            .collect();
        // Per op, outside the load generator, busy %, stolen %.
        assert_eq!(numbers.len(), 4, "{line}");
        assert!(numbers[1] <= numbers[0], "{line}");
        assert!(numbers[2] > 0.0 && numbers[2] <= 100.0, "{line}");
    }
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("http: ") && last.ends_with(" charges/s durable"),
        "{text}"
    );
}

/// `farthing bench lightning` runs end to end against a real LNbits (installed by the README's
/// test command through `scripts/lnbits install`): every payment gets its `invoice.paid`
/// webhook, the JSON line counts them, and LNbits and the databases are gone afterwards.
/// (Its figures are not asserted.)
#[test]
fn bench_lightning_pays_and_reports_each_webhook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = farthing()
        .args(["bench", "lightning", "--payments", "3", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run bench");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    let report: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|_| panic!("no JSON last line in {text}"));
    assert_eq!(report["payments"], 3, "{report}");
    assert_eq!(report["ok"], 3, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
    assert_eq!(report["audit"], "ok", "{report}");
    let p50 = report["payment_to_webhook_ms"]["p50"]
        .as_f64()
        .expect("p50");
    assert!(p50 > 0.0, "{report}");
    // LNbits was stopped and the work directory (its data, farthing's databases) removed.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

/// `farthing backup` copies a database while a writer keeps committing to it, as one
/// consistent snapshot that `farthing audit` passes, refuses to overwrite a file, and keeps
/// the copy private to its owner.
#[test]
fn backup_copies_a_database_under_writes_and_the_copy_audits_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("busy.db");
    let retry = dir.path().join("acks.txt");
    std::fs::write(&retry, "").expect("write retry file");
    let (mut child, lines) = spawn_writer(&db, 7, &retry);
    let ready = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the writer did not start");
    assert_eq!(ready, "ready");
    // Let it commit for a while, then copy while it still writes.
    let mut acked = 0;
    while acked < 20 {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer acknowledges writes");
        acked += usize::from(line.starts_with("ack"));
    }
    let copy = dir.path().join("copy.db");
    let output = farthing()
        .args(["backup", "--database"])
        .arg(&db)
        .arg("--to")
        .arg(&copy)
        .output()
        .expect("run farthing backup");
    let again = farthing()
        .args(["backup", "--database"])
        .arg(&db)
        .arg("--to")
        .arg(&copy)
        .output()
        .expect("run farthing backup");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("audit of the copy: ok"), "{stdout}");
    assert_eq!(again.status.code(), Some(2), "never overwrites");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let report = audit(&copy);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stdout)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).expect("copy").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// `farthing migrate` applies the migrations to both databases, and refuses (saying why) while
/// a server holds them.
#[test]
fn migrate_applies_the_schema_and_refuses_a_database_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shop.db");
    let output = farthing()
        .args(["migrate", "--database"])
        .arg(&db)
        .output()
        .expect("run farthing migrate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let version = format!("schema at version {}", farthing_store::schema_version());
    assert_eq!(stdout.matches(&version).count(), 2, "{stdout}");
    assert!(dir.path().join("shop-test.db").exists());
    let held = Store::open(&db, StoreOptions::default()).expect("open");
    let refused = farthing()
        .args(["migrate", "--database"])
        .arg(&db)
        .output()
        .expect("run farthing migrate");
    held.shutdown();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("in use by a running farthing"));
}

/// `farthing demo` keeps its merchant, key and customer across restarts (it used to make a new
/// merchant and key at every start); `--fresh` starts over.
#[test]
fn the_demo_keeps_its_merchant_across_restarts_and_fresh_starts_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.db");
    let run = |fresh: bool| -> (String, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut command = farthing();
        command
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(&db)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if fresh {
            command.arg("--fresh");
        }
        let mut child = command.spawn().expect("spawn the demo");
        let stdout = child.stdout.take().expect("stdout");
        let (mut key, mut customer) = (String::new(), String::new());
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            if let Some(rest) = line.trim().strip_prefix("test API key:") {
                key = rest.trim().to_owned();
            }
            if let Some(rest) = line.trim().strip_prefix("customer:") {
                customer = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            if line.contains("Press Ctrl-C") {
                break;
            }
        }
        child.kill().expect("stop the demo");
        child.wait().expect("reap");
        assert!(key.starts_with("fk_test_"), "{key:?}");
        (key, customer)
    };
    let first = run(false);
    let second = run(false);
    assert_eq!(
        first, second,
        "a restart keeps the merchant, key and customer"
    );
    let fresh = run(true);
    assert_ne!(fresh.0, first.0, "--fresh makes a new merchant");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key_file = dir.path().join("demo.key");
        let mode = std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// `farthing config --defaults` is the configuration reference (every key, type, default),
/// and `farthing config` shows the file and the environment applied.
#[test]
fn config_prints_every_key_with_its_type_and_value() {
    let output = farthing()
        .args(["config", "--defaults"])
        .env_remove("FARTHING_CONFIG")
        .output()
        .expect("run farthing config");
    assert!(output.status.success());
    let reference = String::from_utf8_lossy(&output.stdout);
    for line in [
        "[webhooks]",
        "jitter = 0.2",
        "# Type: number (fraction, 0 to 1).",
        "concurrency = 16",
        "rates = {}",
        "[rate_limits]",
    ] {
        assert!(reference.contains(line), "{line:?} missing:\n{reference}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("farthing.toml");
    std::fs::write(&file, "[webhooks]\nconcurrency = 4\n").expect("write");
    let output = farthing()
        .args(["config", "--config"])
        .arg(&file)
        .env("FARTHING_LISTEN", "127.0.0.1:9999")
        .output()
        .expect("run farthing config");
    let effective = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{effective}");
    assert!(effective.contains("concurrency = 4"), "{effective}");
    assert!(
        effective.contains("listen = \"127.0.0.1:9999\""),
        "{effective}"
    );
    // A bad file is refused with where and why.
    std::fs::write(&file, "[webhooks]\njitter = true\n").expect("write");
    let output = farthing()
        .args(["config", "--config"])
        .arg(&file)
        .output()
        .expect("run farthing config");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("jitter"));
}

/// Adding a merchant and managing its keys while `farthing serve` runs: `farthing admin-key`,
/// `farthing merchant create --server`, `farthing keys create|list|roll|revoke`.
#[test]
fn merchants_and_keys_are_managed_from_the_cli_while_the_server_runs() {
    let made = farthing().arg("admin-key").output().expect("admin-key");
    let text = String::from_utf8_lossy(&made.stdout).to_string();
    let admin = text
        .lines()
        .find_map(|l| l.strip_prefix("operator key: "))
        .expect("a key")
        .to_owned();
    let hash = text
        .split("admin_key_sha256 = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("its hash")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = farthing()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(dir.path().join("shop.db"))
        .env("FARTHING_ADMIN_KEY_SHA256", &hash)
        .env_remove("FARTHING_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("farthing serve");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = |args: &[&str], env: (&str, &str)| {
        let output = farthing()
            .args(args)
            .env("FARTHING_URL", &url)
            .env(env.0, env.1)
            .output()
            .expect("run farthing");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, out, err) = run(
        &[
            "merchant",
            "create",
            "--name",
            "Live shop",
            "--json",
            "--server",
            &url,
        ],
        ("FARTHING_ADMIN_KEY", &admin),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let created: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let key = created["test_key"].as_str().expect("test key").to_owned();
    // A wrong operator key is refused with the server's words.
    let (code, _, err) = run(
        &["merchant", "create", "--name", "X", "--server", &url],
        ("FARTHING_ADMIN_KEY", "fa_admin_wrong"),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid_admin_key"), "{err}");

    let (code, out, err) = run(
        &["keys", "create", "--scopes", "customers:read,charges:write"],
        ("FARTHING_API_KEY", &key),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let scoped: serde_json::Value = serde_json::from_str(&out).expect("json");
    let id = scoped["id"].as_str().expect("id").to_owned();
    assert!(scoped["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("fk_test_")));
    let (code, out, _) = run(&["keys", "list"], ("FARTHING_API_KEY", &key));
    assert_eq!(code, Some(0));
    assert!(out.contains(&id), "{out}");
    let (code, out, err) = run(
        &["keys", "roll", &id, "--expires-in", "60"],
        ("FARTHING_API_KEY", &key),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["keys", "revoke", &id], ("FARTHING_API_KEY", &key));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("revoked_at"), "{out}");
    let (code, _, err) = run(&["keys", "revoke", &id], ("FARTHING_API_KEY", &key));
    assert_eq!(code, Some(2));
    assert!(err.contains("already_revoked"), "{err}");
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}

/// Stored secrets and the operator's key (SECURITY.md): without a key, a live secret is refused
/// (409 `secrets_key_missing`) while test mode works; `rotate-secrets-key --generate` makes a
/// key and seals what test mode stored in clear; with the key a live webhook secret is stored
/// sealed (it is in no database file); and a live database holding secrets refuses to start
/// without the key.
#[test]
fn live_secrets_need_the_operators_key_and_are_never_stored_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shop.db");
    let key_file = dir.path().join("secrets.key");
    let created = farthing()
        .args([
            "merchant",
            "create",
            "--name",
            "Sealed",
            "--json",
            "--database",
        ])
        .arg(&db)
        .output()
        .expect("merchant create");
    assert!(created.status.success());
    let merchant: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
    let (live, test) = (
        merchant["live_key"].as_str().expect("live").to_owned(),
        merchant["test_key"].as_str().expect("test").to_owned(),
    );
    let serve = |key_file: Option<&Path>| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut command = farthing();
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(&db)
            .env_remove("FARTHING_CONFIG")
            .env_remove("FARTHING_SECRETS_KEY")
            .env_remove("FARTHING_SECRETS_KEY_FILE")
            .env("FARTHING_ALLOW_PRIVATE_WEBHOOKS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(file) = key_file {
            command.env("FARTHING_SECRETS_KEY_FILE", file);
        }
        (command.spawn().expect("farthing serve"), port)
    };
    let wait_for = |child: &mut Child, port: u16| {
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                child.try_wait().expect("status").is_none(),
                "the server exited"
            );
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let endpoint = |port: u16, key: &str| -> (String, serde_json::Value) {
        let output = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {key}"))
            .args(["-H", "Content-Type: application/json", "-d"])
            .arg(r#"{"url": "http://127.0.0.1:9/hook"}"#)
            .arg(format!("http://127.0.0.1:{port}/v1/webhook_endpoints"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (body, status) = text.rsplit_once('\n').expect("status line");
        (
            status.to_owned(),
            serde_json::from_str(body).unwrap_or_default(),
        )
    };

    let (mut server, port) = serve(None);
    wait_for(&mut server, port);
    let (status, refused) = endpoint(port, &live);
    assert_eq!(status, "409", "{refused}");
    assert_eq!(refused["error"]["code"], "secrets_key_missing");
    assert!(refused["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("FARTHING_SECRETS_KEY")));
    let (status, made) = endpoint(port, &test);
    assert_eq!(status, "201", "test mode needs no key: {made}");
    let _ = server.kill();
    let _ = server.wait();

    let rotated = farthing()
        .args(["rotate-secrets-key", "--generate", "--new-key-file"])
        .arg(&key_file)
        .arg("--database")
        .arg(&db)
        .output()
        .expect("rotate");
    let said = String::from_utf8_lossy(&rotated.stdout).to_string();
    assert!(
        rotated.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(said.contains("1 secrets sealed"), "{said}");
    let test_secret = made["secret"].as_str().expect("the test secret").to_owned();

    let (mut server, port) = serve(Some(&key_file));
    wait_for(&mut server, port);
    let (status, sealed) = endpoint(port, &live);
    assert_eq!(status, "201", "{sealed}");
    let live_secret = sealed["secret"].as_str().expect("shown once").to_owned();
    let _ = server.kill();
    let _ = server.wait();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().contains("shop") {
            bytes.extend(std::fs::read(&path).expect("read"));
        }
    }
    for secret in [&live_secret, &test_secret] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is stored in clear"
        );
    }

    // The live database now holds a secret: no start without the key.
    let (mut server, _) = serve(None);
    let status = server.wait().expect("it exits");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(stderr.contains("no secrets key is configured"), "{stderr}");
}
