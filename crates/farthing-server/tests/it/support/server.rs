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
        database: dir
            .path()
            .join("farthing.db")
            .to_string_lossy()
            .into_owned(),
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
