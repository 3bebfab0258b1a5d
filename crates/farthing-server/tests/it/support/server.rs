//! The one way the integration tests start farthing: a server on 127.0.0.1:0 over a fresh
//! database in a temporary directory, tuned by the test, with merchants created through the
//! same path as `farthing merchant create`.
//!
//! [`spawn_with_clock`] hands the server a manual [`Clock`]: expiries, session lifetimes and
//! retry schedules then move when the test advances the clock, not after a sleep.

use farthing_app::Clock;
use farthing_server::config::Config;
use farthing_server::state::Mode;
use farthing_server::{create_merchant, start_with_clock, NewMerchant, Running};
use reqwest::Client;

/// A running server and what a test needs to talk to it.
pub struct Server {
    pub running: Running,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub client: Client,
    /// The clock the server reads (manual only from [`spawn_with_clock`]).
    pub clock: Clock,
    /// The database directory; dropped last by the owner, after the server stopped.
    pub dir: tempfile::TempDir,
}

/// The test configuration over `dir`: loopback listener, database in `dir`, short Telegram long
/// polls (so that updates and shutdown are quick).
pub fn config(dir: &tempfile::TempDir) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database: database(dir),
        public_url: "http://127.0.0.1:0".to_owned(),
        ..Config::default()
    };
    // Stored secrets are sealed in every test, as in production (SECURITY.md).
    config.secrets_key = Some(secrets_key());
    config.telegram.poll_timeout_s = 1;
    // The tests' Bot API double, LNbits and TON indexers listen on 127.0.0.1: allowed here as an operator
    // would allow a local Bot API server or node (both are off by default).
    config.telegram.api_urls = vec!["*".to_owned()];
    config.lightning.allow_private_nodes = true;
    config.ton.allow_private_indexers = true;
    relax_rate_limits(&mut config);
    config
}

/// The database of a test's server: an SQLite file in `dir`; or, when `FARTHING_TEST_POSTGRES`
/// names a PostgreSQL server (`./scripts/test` runs the suite a second time so), a schema of its
/// own there, the same for the same `dir` (a restarted server finds what it stored).
pub fn database(dir: &tempfile::TempDir) -> String {
    match postgres_server() {
        Some(server) => {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            dir.path().hash(&mut hasher);
            let name = format!("it_{:016x}", hasher.finish());
            farthing_store::pg::scratch_schema(&server, &name).unwrap_or_else(|_| {
                // Made by the first start in this directory.
                farthing_store::pg::with_search_path(&server, &name).expect("the schema's URL")
            })
        }
        None => dir
            .path()
            .join("farthing.db")
            .to_string_lossy()
            .into_owned(),
    }
}

/// The PostgreSQL server the suite runs on, if it runs on one (`FARTHING_TEST_POSTGRES`).
pub fn postgres_server() -> Option<String> {
    std::env::var("FARTHING_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Everything the test-mode database of a server over `database` (made in `dir`) stores, as
/// bytes: the SQLite file and its WAL, or on PostgreSQL every row of every table of the test
/// schema, as text.
pub fn test_database_bytes(dir: &tempfile::TempDir, database: &str) -> Vec<u8> {
    let Some(_) = postgres_server() else {
        let test = dir.path().join("farthing-test.db");
        let mut bytes = std::fs::read(&test).expect("the test database");
        if let Ok(wal) = std::fs::read(format!("{}-wal", test.display())) {
            bytes.extend(wal);
        }
        return bytes;
    };
    // The synchronous client blocks on a runtime of its own: not on the test's.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let url = farthing_store::pg::test_mode_url(database, false)
                    .expect("the test schema")
                    .expect("a test schema");
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                // BYTEA as its bytes where printable, so text stored in a BYTEA column shows.
                client
                    .batch_execute("SET bytea_output = 'escape'")
                    .expect("set");
                let tables: Vec<String> = client
                    .query(
                        "SELECT table_name::text FROM information_schema.tables \
                         WHERE table_schema = current_schema()",
                        &[],
                    )
                    .expect("tables")
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let mut bytes = Vec::new();
                for table in tables {
                    for row in client
                        .query(&format!("SELECT t::text FROM {table} t"), &[])
                        .expect("rows")
                    {
                        bytes.extend(row.get::<_, String>(0).into_bytes());
                    }
                }
                bytes
            })
            .join()
            .expect("read the test schema")
    })
}

/// The key that seals the tests' stored secrets (one for every test, so a restarted server over
/// the same database reads what it stored).
pub fn secrets_key() -> farthing_store::SecretsKey {
    farthing_store::SecretsKey::parse(&"5e".repeat(32)).expect("the test secrets key")
}

/// Rate limits far above what a test sends: every test talks from 127.0.0.1 with one key, and
/// some send hundreds of requests (or bad keys) on purpose. `security.rs` tests the limits.
pub fn relax_rate_limits(config: &mut Config) {
    let limits = &mut config.rate_limits;
    limits.api_key_per_s = 1_000_000;
    limits.api_key_burst = 1_000_000;
    limits.client_per_s = 1_000_000;
    limits.client_burst = 1_000_000;
    limits.failed_auth_per_s = 1_000_000;
    limits.failed_auth_burst = 1_000_000;
}

/// farthing with the test configuration changed by `tune`, on the system clock.
pub async fn spawn(tune: impl FnOnce(&mut Config)) -> Server {
    spawn_with_clock(tune, Clock::system()).await
}

/// farthing with the test configuration changed by `tune`, reading time from `clock`.
pub async fn spawn_with_clock(tune: impl FnOnce(&mut Config), clock: Clock) -> Server {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = config(&dir);
    tune(&mut config);
    config.validate().expect("the test configuration is valid");
    let running = start_with_clock(config, clock.clone())
        .await
        .expect("server starts");
    Server {
        base: format!("http://{}", running.addr()),
        client: Client::new(),
        clock,
        running,
        dir,
    }
}

/// Creates merchant `name` (live and test keys) on `running`.
pub async fn merchant(running: &Running, name: &'static str) -> NewMerchant {
    // `create_merchant` waits for the store's writer, so it runs off the async threads.
    let live = running.state().store(Mode::Live).clone();
    let test = running.state().store(Mode::Test).clone();
    tokio::task::spawn_blocking(move || create_merchant(&live, &test, name))
        .await
        .expect("join")
        .expect("merchant")
}

impl Server {
    /// Creates merchant `name` on this server.
    pub async fn merchant(&self, name: &'static str) -> NewMerchant {
        merchant(&self.running, name).await
    }
}

/// The value of the Prometheus sample `series` (its name and labels, as `/metrics` writes
/// them) on the server at `base`, if it is there.
pub async fn metric(client: &Client, base: &str, series: &str) -> Option<String> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')
            .map(str::to_owned)
    })
}
