//! The ledger on PostgreSQL through the `farthing` binary: several instances under load, one of
//! them SIGKILLed again and again (SPEC P4, L4), and the commands that take a postgres:// URL.

#[path = "support/crash_writer.rs"]
mod crash_writer;
#[path = "../../farthing-store/tests/support/postgres.rs"]
mod pg_server;

use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use farthing_store::pg::PgLedger;
use farthing_store::{Ledger, StoreOptions};
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
    let seen = crash_writer::assert_stored(&Ledger::Postgres(ledger.clone()), &acks);
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
    crash_writer::assert_stored(&Ledger::Postgres(ledger.clone()), &acks);
    let report = ledger.audit().expect("audit");
    assert!(report.is_ok(), "{report}");
    ledger.shutdown();
}

/// `farthing migrate` and `audit` take a postgres:// URL; a newer schema is refused; `backup`
/// says what to do instead; a password never shows.
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
    assert!(text(&migrated).contains("test mode"), "{}", text(&migrated));
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

    // A server that cannot reach PostgreSQL says so; what does not run on PostgreSQL says
    // what to do instead; the password never shows.
    let secret = "postgres://shop:hunter2@127.0.0.1:1/farthing";
    let serve = run(&["serve", "--database", secret, "--listen", "127.0.0.1:0"]);
    assert!(!serve.status.success());
    assert!(text(&serve).contains("PostgreSQL"), "{}", text(&serve));
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

/// Every row of every table of an SQLite database, rendered (`table: v1 | v2 …`) and sorted.
fn sqlite_rows(path: &std::path::Path) -> Vec<String> {
    let connection = rusqlite::Connection::open(path).expect("open the SQLite copy source");
    let tables: Vec<String> = connection
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name != 'schema_migrations'",
        )
        .expect("tables")
        .query_map([], |row| row.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    let mut out = Vec::new();
    for table in tables {
        let mut statement = connection
            .prepare(&format!("SELECT * FROM {table}"))
            .expect("rows");
        let width = statement.column_count();
        let mut rows = statement.query([]).expect("rows");
        while let Some(row) = rows.next().expect("a row") {
            let cells: Vec<String> = (0..width)
                .map(|i| match row.get_ref(i).expect("a value") {
                    rusqlite::types::ValueRef::Null => "null".to_owned(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) => {
                        format!("{:?}", String::from_utf8_lossy(t))
                    }
                    rusqlite::types::ValueRef::Blob(b) => hex(b),
                    rusqlite::types::ValueRef::Real(r) => format!("real {r}"),
                })
                .collect();
            out.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    out.sort();
    out
}

/// The same for a PostgreSQL schema (the URL's `search_path`).
fn postgres_rows(url: &str) -> Vec<String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name != 'schema_migrations'",
            &[],
        )
        .expect("tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut out = Vec::new();
    for table in tables {
        for row in client
            .query(&format!("SELECT * FROM {table}"), &[])
            .expect("rows")
        {
            let cells: Vec<String> = row
                .columns()
                .iter()
                .enumerate()
                .map(|(i, column)| match column.type_().name() {
                    "int8" => row
                        .get::<_, Option<i64>>(i)
                        .map_or("null".to_owned(), |v| v.to_string()),
                    "text" => row
                        .get::<_, Option<String>>(i)
                        .map_or("null".to_owned(), |v| format!("{v:?}")),
                    "bytea" => row
                        .get::<_, Option<Vec<u8>>>(i)
                        .map_or("null".to_owned(), |v| hex(&v)),
                    other => panic!("{table}: a column of type {other}"),
                })
                .collect();
            out.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    out.sort();
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A child process killed when dropped (also when the test panics).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `farthing copy` moves a stopped shop to PostgreSQL: every row of every table of the live and
/// the test database arrives as it was (test-mode data in the schema beside the live one), and
/// `farthing audit` passes on the copy. A database a server holds, a PostgreSQL source and a
/// target that holds data are refused, and change nothing.
#[test]
fn copy_moves_a_stopped_shop_to_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shop.db");
    let created = farthing()
        .args([
            "merchant",
            "create",
            "--name",
            "Moving shop",
            "--json",
            "--database",
        ])
        .arg(&db)
        .output()
        .expect("merchant create");
    assert!(created.status.success(), "{}", text(&created));
    let merchant: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let server = KillOnDrop(
        farthing()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(&db)
            .env("RUST_LOG", "error")
            .env("FARTHING_ALLOW_PRIVATE_WEBHOOKS", "true")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("farthing serve"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            assert!(std::time::Instant::now() < deadline, "serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let call = |key: &str, path: &str, body: serde_json::Value| {
            let request = client
                .post(format!("{base}{path}"))
                .bearer_auth(key)
                .json(&body);
            async move {
                let response = request.send().await.expect("a request");
                let status = response.status();
                let body: serde_json::Value = response.json().await.expect("json");
                assert!(status.is_success(), "{status} {body}");
                body
            }
        };
        // Test mode: a customer with a balance, charges, a refund, an invoice, a webhook endpoint
        // (events and deliveries follow); live mode: a customer.
        let test_key = merchant["test_key"].as_str().expect("a test key");
        let live_key = merchant["live_key"].as_str().expect("a live key");
        let customer = call(
            test_key,
            "/v1/customers",
            serde_json::json!({"external_id": "u1"}),
        )
        .await;
        let customer = customer["id"].as_str().expect("id").to_owned();
        call(
            test_key,
            &format!("/v1/test/customers/{customer}/top_up"),
            serde_json::json!({"amount": 1000, "currency": "XTR"}),
        )
        .await;
        call(
            test_key,
            "/v1/webhook_endpoints",
            serde_json::json!({"url": "http://127.0.0.1:9/hooks"}),
        )
        .await;
        let mut charges = Vec::new();
        for amount in [5, 7, 11] {
            let charge = call(
                test_key,
                "/v1/charges",
                serde_json::json!({"customer": customer, "amount": amount, "currency": "XTR"}),
            )
            .await;
            charges.push(charge["id"].as_str().expect("id").to_owned());
        }
        call(
            test_key,
            "/v1/refunds",
            serde_json::json!({"charge": charges[0]}),
        )
        .await;
        call(
            test_key,
            "/v1/invoices",
            serde_json::json!({"amount": 50, "currency": "XTR", "description": "A paid post"}),
        )
        .await;
        call(
            live_key,
            "/v1/customers",
            serde_json::json!({"external_id": "live-1"}),
        )
        .await;
    });

    let postgres = Postgres::start();
    let url = postgres.schema();
    let refused = run(&["copy", "--from", &db.display().to_string(), "--to", &url]);
    assert!(
        !refused.status.success() && text(&refused).contains("in use"),
        "a served database is refused: {}",
        text(&refused)
    );
    drop(server);

    let test_db = farthing_server::config::test_database_path(&db);
    let (live_rows, test_rows) = (sqlite_rows(&db), sqlite_rows(&test_db));

    // A copy that fails half-way (a value PostgreSQL's column cannot take, in the test
    // database, copied after the live one) leaves no data behind, and a new copy may follow.
    let broken = dir.path().join("broken.db");
    let broken_test = farthing_server::config::test_database_path(&broken);
    for (from, to) in [(&db, &broken), (&test_db, &broken_test)] {
        for suffix in ["", "-wal"] {
            let from = std::path::PathBuf::from(format!("{}{suffix}", from.display()));
            if from.exists() {
                std::fs::copy(&from, format!("{}{suffix}", to.display())).expect("copy a file");
            }
        }
    }
    let changed = rusqlite::Connection::open(&broken_test)
        .expect("open")
        .execute("UPDATE merchants SET created_at_ns = 'later'", [])
        .expect("a bad value");
    assert_eq!(changed, 1);
    let failed = run(&[
        "copy",
        "--from",
        &broken.display().to_string(),
        "--to",
        &url,
    ]);
    assert!(
        !failed.status.success() && text(&failed).contains("nothing was copied"),
        "{}",
        text(&failed)
    );
    assert_eq!(
        postgres_rows(&url),
        vec!["ledger_meta: 1 | 0".to_owned()],
        "nothing of the live data stayed"
    );

    let copied = run(&[
        "copy",
        "--from",
        &format!("sqlite:{}", db.display()),
        "--to",
        &url,
    ]);
    assert!(copied.status.success(), "{}", text(&copied));
    let shown = text(&copied);
    assert!(
        shown.contains("customer_entries") && shown.contains("audit"),
        "{shown}"
    );
    let test_url = farthing_store::pg::test_mode_url(&url, false)
        .expect("the test schema")
        .expect("made by the copy");
    assert_eq!(postgres_rows(&url), live_rows, "the live data, row by row");
    assert_eq!(
        postgres_rows(&test_url),
        test_rows,
        "the test data, row by row"
    );
    assert!(
        test_rows.iter().any(|row| row.starts_with("charges: "))
            && test_rows
                .iter()
                .any(|row| row.starts_with("webhook_deliveries: "))
            && live_rows.iter().any(|row| row.starts_with("customers: ")),
        "the shop had data to copy"
    );
    let audit = run(&["audit", "--database", &url]);
    assert!(audit.status.success(), "{}", text(&audit));
    assert!(text(&audit).contains("test mode"), "{}", text(&audit));

    let again = run(&["copy", "--from", &db.display().to_string(), "--to", &url]);
    assert!(
        !again.status.success() && text(&again).contains("already holds data"),
        "{}",
        text(&again)
    );
    let backwards = run(&["copy", "--from", &url, "--to", &url]);
    assert!(!backwards.status.success() && text(&backwards).contains("--from"));
    assert_eq!(
        postgres_rows(&url),
        live_rows,
        "the refusals changed nothing"
    );
}

/// A store on `url` whose secrets are sealed with `key` (or stored as given without one).
fn secrets_store(url: &str, key: Option<&farthing_store::SecretsKey>) -> farthing_store::Store {
    farthing_store::Store::open_url(
        &farthing_store::DatabaseUrl::parse(url).expect("url"),
        StoreOptions {
            secrets: farthing_store::Secrets {
                key: key.cloned().map(std::sync::Arc::new),
                previous: Vec::new(),
                required: false,
            },
            ..StoreOptions::default()
        },
    )
    .expect("open")
}

/// What `url` stores in `table.column`, as stored (sealed or in clear), for `merchant`.
fn stored(url: &str, table: &str, column: &str) -> String {
    let psql = Command::new("psql")
        .arg(url)
        .args([
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("SELECT encode(CAST({column} AS BYTEA), 'escape') FROM {table}"),
        ])
        .output()
        .expect("psql");
    assert!(psql.status.success(), "{}", text(&psql));
    String::from_utf8_lossy(&psql.stdout).trim().to_owned()
}

/// `rotate-secrets-key` on PostgreSQL seals every secret of the live and test-mode schemas
/// again under the new key: text and bytes, several rows and several columns of a row, sealed
/// under the old key or stored in clear. The old key no longer opens them, the new one does,
/// and the values read are the same. While a server runs on the database, leader or follower
/// (each holds the serving lock shared), it is refused and changes nothing.
#[test]
fn rotate_secrets_key_on_postgres() {
    use farthing_core::MerchantId;
    use farthing_store::{Authenticator, CardProvider, SecretsKey, TelegramBot};
    let server = Postgres::start();
    let url = server.schema();
    let dir = tempfile::tempdir().expect("dir");
    let old = SecretsKey::generate().expect("key");
    let old_file = dir.path().join("old.key");
    std::fs::write(&old_file, old.to_hex()).expect("write");
    let new_file = dir.path().join("new.key");
    let test_url = farthing_store::pg::test_mode_url(&url, true)
        .expect("test schema")
        .expect("made");
    let merchant = MerchantId(7);
    let provider = |merchant: MerchantId, token: &str| CardProvider {
        merchant,
        provider_token: token.to_owned(),
        currencies: Some(vec!["USD".to_owned()]),
        created_at_ns: 1,
        updated_at_ns: 1,
    };
    let authenticator = Authenticator {
        secret: vec![0, 1, 2, 250, 251],
        active: true,
        last_step: None,
        recovery: Vec::new(),
        failures: 0,
        failures_since_ns: 0,
    };
    let provider_other =
        |live: bool| live.then(|| provider(MerchantId(8), "live:other-provider-token"));
    let bot = TelegramBot {
        merchant,
        bot_id: 42,
        username: "shop_bot".to_owned(),
        token: "42:live-bot-token".to_owned(),
        api_url: "https://api.telegram.org".to_owned(),
        mode: "webhook".to_owned(),
        webhook_secret: Some("live-webhook-secret".to_owned()),
        created_at_ns: 1,
        updated_at_ns: 1,
    };
    // Live: sealed under the old key, text and bytes, two providers and a bot's two secrets.
    // Test mode: in clear.
    for (at, key, token) in [
        (&url, Some(&old), "live:provider-token"),
        (&test_url, None, "test:provider-token"),
    ] {
        let store = secrets_store(at, key);
        let (provider, authenticator) = (provider(merchant, token), authenticator.clone());
        let (other, bot) = (provider_other(at == &url), bot.clone());
        store
            .execute(move |tx| {
                tx.upsert_card_provider(&provider)?;
                if let Some((other, bot)) = other.zip(Some(bot)) {
                    tx.upsert_card_provider(&other)?;
                    tx.upsert_telegram_bot(&bot)?;
                }
                tx.put_authenticator(merchant, &authenticator)
            })
            .expect("queued")
            .wait()
            .expect("committed")
            .expect("stored");
        store.shutdown();
    }
    assert!(stored(&url, "card_providers", "provider_token").starts_with("fse1:"));
    assert_eq!(
        stored(&test_url, "card_providers", "provider_token"),
        "test:provider-token"
    );
    let before = stored(&url, "card_providers", "provider_token");

    // Two running servers, a leader and a follower: refused while either runs.
    let running = secrets_store(&url, Some(&old));
    let leader = running
        .campaign(farthing_store::instances::BACKGROUND, |_| {})
        .expect("asks");
    let follower = running
        .campaign(farthing_store::instances::BACKGROUND, |_| {})
        .expect("asks");
    let rotate = |generate: bool| {
        let mut command = farthing();
        command.args(["rotate-secrets-key", "--database", &url, "--old-key-file"]);
        command.arg(&old_file).arg("--new-key-file").arg(&new_file);
        if generate {
            command.arg("--generate");
        }
        command.output().expect("run")
    };
    let refused = rotate(true);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("a farthing server is running on this database"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("nothing was changed"),
        "{}",
        text(&refused)
    );
    drop(leader);
    let refused = rotate(false);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "the follower runs: {}",
        text(&refused)
    );
    assert_eq!(stored(&url, "card_providers", "provider_token"), before);
    drop(follower);
    running.shutdown();

    let rotated = rotate(false);
    assert!(rotated.status.success(), "{}", text(&rotated));
    let new = SecretsKey::from_file(&new_file).expect("the new key");
    // Live: two providers, an authenticator, a bot's token and webhook secret. Test: two.
    for count in [5, 2] {
        assert!(
            text(&rotated).contains(&format!(
                "{count} secrets sealed under key {}",
                new.id_hex()
            )),
            "{}",
            text(&rotated)
        );
    }
    for (at, token) in [
        (&url, "live:provider-token"),
        (&test_url, "test:provider-token"),
    ] {
        let sealed = stored(at, "card_providers", "provider_token");
        assert!(sealed.starts_with("fse1:") && sealed != before, "{sealed}");
        assert!(stored(at, "step_up_totp", "secret").starts_with("fse1:"));
        let with_new = secrets_store(at, Some(&new));
        let (read, totp) = with_new
            .read(|reader| {
                Ok((
                    reader.card_provider(merchant)?,
                    reader.authenticator(merchant)?,
                ))
            })
            .expect("the new key opens them");
        assert_eq!(read.expect("provider").provider_token, token);
        assert_eq!(totp.expect("authenticator").secret, authenticator.secret);
        if at == &url {
            let (other, read_bot) = with_new
                .read(|reader| {
                    Ok((
                        reader.card_provider(MerchantId(8))?,
                        reader.telegram_bot(merchant)?,
                    ))
                })
                .expect("the new key opens them");
            assert_eq!(
                other.expect("provider").provider_token,
                "live:other-provider-token"
            );
            let read_bot = read_bot.expect("bot");
            assert_eq!(read_bot.token, bot.token);
            assert_eq!(read_bot.webhook_secret, bot.webhook_secret);
        }
        with_new.shutdown();
        let with_old = secrets_store(at, Some(&old));
        let error = with_old
            .read(|reader| reader.card_provider(merchant))
            .expect_err("the old key no longer opens them");
        assert!(error.to_string().contains(&new.id_hex()), "{error}");
        with_old.shutdown();
    }
}
