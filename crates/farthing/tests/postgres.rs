//! The ledger on PostgreSQL through the `farthing` binary: several instances under load, one of
//! them SIGKILLed again and again (SPEC P4, L4), and the commands that take a postgres:// URL.

#[path = "support/crash_writer.rs"]
mod crash_writer;
#[path = "../../farthing-store/tests/support/postgres.rs"]
mod pg_server;

use std::collections::HashSet;
use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use farthing_store::pg::PgLedger;
use farthing_store::StoreOptions;
use pg_server::Postgres;

fn farthing() -> Command {
    Command::new(env!("CARGO_BIN_EXE_farthing"))
}

fn run(args: &[&str]) -> Output {
    farthing().args(args).output().expect("run farthing")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A crash writer (`farthing internal crash-writer`) on `url`, with its stdout lines.
struct Writer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Writer {
    fn spawn(url: &str, seed: u64, retry: &std::path::Path) -> Writer {
        let (child, lines) = crash_writer::spawn(url, seed, retry);
        Writer { child, lines }
    }

    /// Waits until it has opened (and, the first time, migrated) the ledger.
    fn ready(self) -> Writer {
        let ready = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the crash writer did not start");
        assert_eq!(ready, "ready");
        self
    }

    /// SIGKILL, then every line it printed.
    fn kill(mut self) -> Vec<String> {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        self.lines.iter().collect()
    }
}

impl Drop for Writer {
    /// A failing test must not leave writers running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks that every transfer of the `ack` lines is stored with its kind and amount; returns
/// their ids.
fn assert_stored(ledger: &PgLedger, acks: &[String]) -> HashSet<farthing_core::TransferId> {
    let mut seen = HashSet::new();
    for line in acks {
        for (id, kind, amount) in crash_writer::acked_transfers(line) {
            let stored = ledger
                .transfer(id)
                .expect("read")
                .unwrap_or_else(|| panic!("acknowledged {id} is missing ({line})"));
            assert_eq!(
                format!("{:?}", stored.record.kind),
                crash_writer::kind_name(kind),
                "{line}"
            );
            if let Some(amount) = amount {
                assert_eq!(stored.record.amount_minor, amount, "{line}");
            }
            seen.insert(id);
        }
    }
    seen
}

/// Two farthing instances write the same PostgreSQL ledger at once (the same eight customer
/// balances: top-ups, charges with fees, holds with timeouts, posts, voids, and retries of what
/// either instance acknowledged before). Eight times, one of them is SIGKILLed mid-load and
/// started again while the other keeps writing. Afterwards every acknowledged transfer is in
/// the database with its kind and amount, no retry was applied twice, and `farthing audit`
/// passes: balances sum to zero, each equals its transfers, none is overdrawn.
#[test]
fn two_instances_under_load_survive_sigkill_and_audit_passes() {
    let server = Postgres::start();
    let url = server.schema();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed: u64 = std::env::var("FARTHING_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut acks: Vec<String> = Vec::new();
    let mut retried = 0usize;
    let mut collect = |lines: Vec<String>, acks: &mut Vec<String>| {
        let violations: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("violation"))
            .collect();
        assert!(violations.is_empty(), "{violations:?}");
        retried += lines.iter().filter(|l| *l == "retried").count();
        acks.extend(lines.into_iter().filter(|l| l.starts_with("ack ")));
    };
    let retry_file = |n: usize, acks: &[String], rng: &mut fastrand::Rng| {
        let path = dir.path().join(format!("retry-{n}.txt"));
        let sample: Vec<&str> = (0..acks.len().min(200))
            .map(|_| acks[rng.usize(..acks.len())].as_str())
            .collect();
        std::fs::write(&path, sample.join("\n")).expect("write retry file");
        path
    };
    // Both start at once on the empty schema: they migrate it together (once).
    let first = retry_file(0, &acks, &mut rng);
    let starting = [
        Writer::spawn(&url, seed, &first),
        Writer::spawn(&url, seed + 1, &first),
    ];
    let mut writers = starting.map(|writer| Some(writer.ready()));
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(rng.u64(150..700)));
        let victim = round % 2;
        let lines = writers[victim].take().expect("running").kill();
        collect(lines, &mut acks);
        let retry = retry_file(round + 1, &acks, &mut rng);
        writers[victim] =
            Some(Writer::spawn(&url, seed.wrapping_add(100 + round as u64), &retry).ready());
    }
    std::thread::sleep(Duration::from_millis(300));
    for writer in &mut writers {
        let lines = writer.take().expect("running").kill();
        collect(lines, &mut acks);
    }

    let ledger = PgLedger::open(&url, StoreOptions::default()).expect("open after the kills");
    let seen = assert_stored(&ledger, &acks);
    let report = ledger.audit().expect("audit");
    assert!(report.is_ok(), "{report}");
    assert!(report.transfers as usize >= seen.len());
    ledger.shutdown();
    let cli = run(&["audit", "--database", &url]);
    assert!(
        cli.status.success(),
        "farthing audit failed: {}",
        text(&cli)
    );
    assert!(
        text(&cli).contains("ok: per currency the balances sum to zero"),
        "{}",
        text(&cli)
    );
    assert!(
        acks.len() > 100,
        "too few writes acknowledged to mean anything: {}",
        acks.len()
    );
    assert!(retried > 0, "no retry of an earlier acknowledged write ran");
    eprintln!(
        "{} acknowledged writes ({} transfers), {retried} retries, {ROUNDS} SIGKILLs",
        acks.len(),
        seen.len()
    );
}

/// PostgreSQL itself crashes (stopped at once: no checkpoint, its WAL replayed at the next
/// start) while two instances write. Every write either instance acknowledged before is there
/// after the restart, instances started afterwards write on (retrying earlier acknowledged
/// writes, which must report what is stored), and `farthing audit` passes.
#[test]
fn acknowledged_writes_survive_a_postgres_crash() {
    let server = Postgres::start();
    let url = server.schema();
    let dir = tempfile::tempdir().expect("tempdir");
    let none = dir.path().join("none.txt");
    std::fs::write(&none, "").expect("write");
    let mut acks: Vec<String> = Vec::new();
    let keep = |lines: Vec<String>, acks: &mut Vec<String>| {
        let violations: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("violation"))
            .collect();
        assert!(violations.is_empty(), "{violations:?}");
        acks.extend(lines.into_iter().filter(|l| l.starts_with("ack ")));
    };
    let writers = [
        Writer::spawn(&url, 21, &none).ready(),
        Writer::spawn(&url, 22, &none).ready(),
    ];
    std::thread::sleep(Duration::from_millis(700));
    server.crash_and_restart();
    // The writers saw their batch fail (the server was gone) and stopped, or are still retrying.
    for writer in writers {
        keep(writer.kill(), &mut acks);
    }
    let before_crash = acks.len();
    assert!(
        before_crash > 50,
        "too few writes before the crash: {before_crash}"
    );

    let retry = dir.path().join("retry.txt");
    std::fs::write(&retry, acks.join("\n")).expect("write");
    let writers = [
        Writer::spawn(&url, 23, &retry).ready(),
        Writer::spawn(&url, 24, &retry).ready(),
    ];
    std::thread::sleep(Duration::from_millis(700));
    let mut retried = 0;
    for writer in writers {
        let lines = writer.kill();
        retried += lines.iter().filter(|l| *l == "retried").count();
        keep(lines, &mut acks);
    }
    assert!(
        retried > 0,
        "no acknowledged write was retried after the crash"
    );
    assert!(
        acks.len() > before_crash,
        "nothing was written after the restart"
    );

    let ledger = PgLedger::open(&url, StoreOptions::default()).expect("open after the crash");
    assert_stored(&ledger, &acks);
    let report = ledger.audit().expect("audit");
    assert!(report.is_ok(), "{report}");
    ledger.shutdown();
}

/// `farthing migrate` and `audit` take a postgres:// URL; a newer schema is refused; `serve`,
/// `backup` and `rotate-secrets-key` say what to do instead; a password never shows.
#[test]
fn commands_on_a_postgres_url() {
    let server = Postgres::start();
    let url = server.schema();

    let migrated = run(&["migrate", "--database", &url]);
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert!(
        text(&migrated).contains(&format!(
            "schema at version {} (PostgreSQL)",
            farthing_store::pg::schema_version()
        )),
        "{}",
        text(&migrated)
    );
    // Twice is fine: nothing left to apply.
    assert!(run(&["migrate", "--database", &url]).status.success());
    let audited = run(&["audit", "--database", &url]);
    assert!(audited.status.success(), "{}", text(&audited));

    // A schema from a newer farthing is refused, by migrate and audit alike.
    let ledger = PgLedger::open(&url, StoreOptions::default()).expect("open");
    ledger.shutdown();
    let future = farthing_store::pg::schema_version() + 1;
    let psql = Command::new("psql")
        .arg(&url)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("INSERT INTO schema_migrations (version, name) VALUES ({future}, 'future')"),
        ])
        .output()
        .expect("psql");
    assert!(psql.status.success(), "{}", text(&psql));
    for command in ["migrate", "audit"] {
        let refused = run(&[command, "--database", &url]);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        assert!(
            text(&refused).contains("newer than this farthing"),
            "{command}: {}",
            text(&refused)
        );
    }

    // What does not run on PostgreSQL yet says so, names the way, and hides the password.
    let secret = "postgres://shop:hunter2@127.0.0.1:1/farthing";
    let serve = run(&["serve", "--database", secret, "--listen", "127.0.0.1:0"]);
    assert!(!serve.status.success());
    assert!(
        text(&serve).contains("serves from SQLite only"),
        "{}",
        text(&serve)
    );
    let backup = run(&["backup", "--database", secret, "--to", "/tmp/never"]);
    assert_eq!(backup.status.code(), Some(2));
    assert!(text(&backup).contains("pg_dump"), "{}", text(&backup));
    for output in [&serve, &backup] {
        assert!(!text(output).contains("hunter2"), "{}", text(output));
        assert!(text(output).contains("shop:***@"), "{}", text(output));
    }
    // `farthing config` and `--help` show the URL without its password.
    let config = farthing()
        .arg("config")
        .env("FARTHING_DATABASE", secret)
        .output()
        .expect("run");
    assert!(config.status.success(), "{}", text(&config));
    assert!(
        text(&config).contains("database = \"postgres://shop:***@127.0.0.1:1/farthing\""),
        "{}",
        text(&config)
    );
    let help = farthing()
        .args(["audit", "--help"])
        .env("FARTHING_DATABASE", secret)
        .output()
        .expect("run");
    assert!(!text(&config).contains("hunter2") && !text(&help).contains("hunter2"));
    // An unreachable server: a clear error, no password.
    let unreachable = run(&["audit", "--database", secret]);
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        text(&unreachable).contains("PostgreSQL: error connecting to server"),
        "{}",
        text(&unreachable)
    );
    assert!(!text(&unreachable).contains("hunter2"));
}
