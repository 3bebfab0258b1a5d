//! Configuration: a TOML file, then `FARTHING_*` environment variables, then command-line
//! flags, each overriding the one before. Every field has a default that works on a laptop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Server configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The live database (SQLite path or `sqlite://` URL); test-mode data lives beside it in
    /// `<name>-test.<ext>`.
    pub database: String,
    /// The URL customers reach farthing at, for checkout links.
    pub public_url: String,
    /// Whether webhook endpoints may resolve to loopback or private addresses.
    pub allow_private_webhooks: bool,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long idempotency keys are kept, in seconds (at least 24 h).
    pub idempotency_ttl_s: u64,
    /// Webhook delivery.
    pub webhooks: WebhookConfig,
    /// Exchange rates: `"USD/TON" = "0.2"` (1 USD = 0.2 TON).
    pub rates: std::collections::BTreeMap<String, String>,
    /// The Lightning rail's watcher.
    pub lightning: LightningConfig,
    /// The TON rail's watcher.
    pub ton: TonConfig,
    /// The Telegram bots (Stars rail).
    pub telegram: TelegramConfig,
    /// Connection limits of the HTTP server.
    pub http: HttpConfig,
    /// Rate limits (SPEC S4).
    pub rate_limits: RateLimitConfig,
    /// SHA-256 (64 hex digits) of the operator key that may use `/v1/admin` (add merchants
    /// while the server runs); empty: the admin API is off. `farthing admin-key` makes one.
    pub admin_key_sha256: String,
    /// A file holding the key that seals stored secrets (64 hex digits, SECURITY.md); empty:
    /// none (or the key itself in `FARTHING_SECRETS_KEY`).
    pub secrets_key_file: String,
    /// The key, once read from `secrets_key_file` or `FARTHING_SECRETS_KEY`; never written out
    /// (its `Debug` shows only its id).
    #[serde(skip)]
    pub secrets_key: Option<farthing_store::SecretsKey>,
}

/// Rate limits (SPEC S4): requests a second on average (`_per_s`, 0 = off) and at once
/// (`_burst`). A refused request gets 429 with `Retry-After`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Per API key, on `/v1`.
    pub api_key_per_s: u32,
    /// Burst per API key.
    pub api_key_burst: u32,
    /// Per client address, on the public pages and callbacks (checkout, Mini App, dashboard
    /// login, LNURL).
    pub client_per_s: u32,
    /// Burst per client address.
    pub client_burst: u32,
    /// Failed authentications (401) per client address on `/v1`; past it, every `/v1`
    /// request from that address is refused until the bucket drains.
    pub failed_auth_per_s: u32,
    /// Burst of failed authentications per client address.
    pub failed_auth_burst: u32,
    /// Take the client's address from the last `X-Forwarded-For` entry (only behind a
    /// reverse proxy that sets it; otherwise clients could choose their own address).
    pub trust_forwarded_for: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            api_key_per_s: 1_000,
            api_key_burst: 2_000,
            client_per_s: 20,
            client_burst: 100,
            failed_auth_per_s: 1,
            failed_auth_burst: 20,
            trust_forwarded_for: false,
        }
    }
}

/// Connection limits and rate limits of the HTTP server (SPEC S4).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Seconds a client may take to send a request's headers; also how long a keep-alive
    /// connection may sit idle.
    pub header_timeout_s: u64,
    /// Seconds a client may take to send a whole request body.
    pub body_timeout_s: u64,
    /// Open connections at most; keep it below the process's file-descriptor limit
    /// (`ulimit -n`), with room for the databases and outbound calls.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_s: 10,
            body_timeout_s: 30,
            max_connections: 1024,
        }
    }
}

impl HttpConfig {
    /// As the server's limits.
    pub fn limits(&self) -> crate::serve::Limits {
        crate::serve::Limits {
            header_timeout: Duration::from_secs(self.header_timeout_s),
            body_timeout: Duration::from_secs(self.body_timeout_s),
            max_connections: self.max_connections,
        }
    }
}

/// Telegram settings (SPEC RL2).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// How long one `getUpdates` long poll waits for an update, in seconds (bots connected in
    /// `polling` mode). Tests use 1 so that shutdown is quick.
    pub poll_timeout_s: u32,
    /// The oldest Mini App `initData` `POST /webapp/session` accepts, by its `auth_date`, in
    /// seconds (SPEC T4: one hour).
    pub init_data_max_age_s: u64,
    /// Whose Ed25519 key checks the third-party `signature` of Mini App `initData` when the
    /// bot-token hash does not: `production` (Telegram's key), `test` (Telegram's test
    /// environment key) or a key as 64 hex digits (tests).
    pub init_data_public_key: String,
    /// How long a Mini App session (`POST /webapp/session`) lasts, in seconds.
    pub webapp_session_ttl_s: u64,
    /// The script the checkout page loads when it is opened as a Mini App (`tgWebAppData` in
    /// its URL) and the host has not already provided `window.Telegram.WebApp`; empty: never.
    pub web_app_script_url: String,
    /// How often every connected bot's `getStarTransactions` is read to settle payments the
    /// updates missed and record Fragment withdrawals, in seconds (also once at start).
    pub reconcile_interval_s: u64,
    /// The oldest Telegram Login Widget data `POST /dashboard/login/telegram` accepts, by its
    /// `auth_date`, in seconds (default one day).
    pub login_max_age_s: u64,
    /// How long a dashboard session lasts, in seconds (default one hour).
    pub dashboard_session_ttl_s: u64,
    /// The tip buttons the payment bot offers after `/start tip`, in Stars (SPEC T2), when the
    /// merchant has not set its own.
    pub tip_presets: Vec<u64>,
    /// How old an open invoice of a customer who opted in to reminders (`/remind on`) must be
    /// before the bot reminds them of it, once, in seconds (SPEC T3; default ten minutes).
    pub reminder_after_s: u64,
    /// The Bot API base URLs a merchant may name as `api_url` in `PUT /v1/rails/stars` (a local
    /// Bot API server the operator runs), besides `https://api.telegram.org`, which is always
    /// allowed. `["*"]` allows any URL: for development and tests only, as a merchant could
    /// then make farthing call any address. An operator setting, never a merchant's.
    pub api_urls: Vec<String>,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            poll_timeout_s: 25,
            init_data_max_age_s: 3600,
            init_data_public_key: "production".to_owned(),
            webapp_session_ttl_s: 3600,
            web_app_script_url: "https://telegram.org/js/telegram-web-app.js".to_owned(),
            reconcile_interval_s: 300,
            login_max_age_s: 86_400,
            dashboard_session_ttl_s: 3600,
            tip_presets: vec![1, 3, 5, 10],
            reminder_after_s: 600,
            api_urls: Vec::new(),
        }
    }
}

/// The Lightning rail's watcher settings (SPEC RL3, I3).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LightningConfig {
    /// How often every open node invoice is asked about, in milliseconds (the fallback when a
    /// node's settlement stream is down; the stream itself is immediate).
    pub poll_interval_ms: u64,
    /// How long a node invoice stays watched after its BOLT11 expired, in seconds, so that a
    /// payment the node settled while farthing was not looking is still found and credited.
    pub late_watch_s: u64,
    /// Whether `PUT /v1/rails/lightning` may name a node on a loopback or private address. Off
    /// by default: on a server several merchants share, a merchant's node URL must not reach
    /// farthing's own network. An operator running its own node beside farthing turns it on
    /// (`FARTHING_ALLOW_PRIVATE_NODES=1`).
    pub allow_private_nodes: bool,
}

impl Default for LightningConfig {
    fn default() -> Self {
        LightningConfig {
            poll_interval_ms: 2_000,
            late_watch_s: 24 * 3600,
            allow_private_nodes: false,
        }
    }
}

/// The TON rail's watcher settings (SPEC RL4).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TonConfig {
    /// How long the watcher rests after a round over every watched account that found the
    /// indexer's head, in milliseconds (a configured wallet wakes it at once).
    pub poll_interval_ms: u64,
    /// The least time between two requests to one indexer without an API key (toncenter
    /// allows 1 request/s), in milliseconds.
    pub request_interval_ms: u64,
    /// The same with an API key (toncenter's free key: 10 requests/s).
    pub request_interval_with_key_ms: u64,
    /// Transactions asked for per request (1 to 256).
    pub page_size: u32,
    /// Whether `PUT /v1/rails/ton` may name an indexer on a loopback or private address (an
    /// operator's own indexer beside farthing; off by default, as for Lightning nodes).
    pub allow_private_indexers: bool,
}

impl Default for TonConfig {
    fn default() -> Self {
        TonConfig {
            poll_interval_ms: 1_000,
            request_interval_ms: 1_100,
            request_interval_with_key_ms: 110,
            page_size: 100,
            allow_private_indexers: false,
        }
    }
}

/// Webhook delivery settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Delays before each retry, in seconds. The default spreads 9 retries over about 3 days.
    pub retry_schedule_s: Vec<f64>,
    /// Random spread added to each delay, as a fraction of it (0.2 = up to +20 %).
    pub jitter: f64,
    /// Timeout of one delivery attempt, in seconds.
    pub timeout_s: f64,
    /// How many deliveries run at once.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            // 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 12 h, 24 h: about 2.7 days in all.
            retry_schedule_s: vec![
                5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, 43200.0, 86400.0,
            ],
            jitter: 0.2,
            timeout_s: 10.0,
            concurrency: 16,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: "data/farthing.db".to_owned(),
            public_url: "http://127.0.0.1:8080".to_owned(),
            allow_private_webhooks: false,
            max_body_bytes: 64 * 1024,
            idempotency_ttl_s: 24 * 3600,
            webhooks: WebhookConfig::default(),
            rates: Default::default(),
            lightning: LightningConfig::default(),
            ton: TonConfig::default(),
            telegram: TelegramConfig::default(),
            http: HttpConfig::default(),
            rate_limits: RateLimitConfig::default(),
            admin_key_sha256: String::new(),
            secrets_key_file: String::new(),
            secrets_key: None,
        }
    }
}

/// Every configuration key, in the order `farthing config` prints them: `key` or
/// `section.key`, its TOML type, and what it does. A test checks that it names exactly the
/// fields [`Config`] has, so the reference cannot drift from the code.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("listen", "string (address:port)", "Address to listen on. Env FARTHING_LISTEN, flag --listen."),
    ("database", "string (path, sqlite:// or postgres:// URL)", "The live database; test-mode data lives beside it in <name>-test.<ext>. A postgres:// URL is taken by migrate, audit and bench ledger (the ledger so far; serve needs SQLite); its password is never printed. Env FARTHING_DATABASE, flag --database."),
    ("public_url", "string (URL)", "The URL customers reach farthing at, for checkout links. Env FARTHING_PUBLIC_URL, flag --public-url."),
    ("allow_private_webhooks", "boolean", "Whether webhook endpoints may resolve to loopback or private addresses. Env FARTHING_ALLOW_PRIVATE_WEBHOOKS."),
    ("max_body_bytes", "integer (bytes)", "Largest request body."),
    ("idempotency_ttl_s", "integer (seconds, at least 86400)", "How long idempotency keys are kept."),
    ("admin_key_sha256", "string (64 hex digits, or empty)", "SHA-256 of the operator key for /v1/admin (adding merchants while the server runs); empty turns the admin API off. farthing admin-key prints a key and this value. Env FARTHING_ADMIN_KEY_SHA256."),
    ("secrets_key_file", "string (path, or empty)", "A file holding the key (64 hex digits) that seals stored secrets — bot tokens, webhook and provider secrets, node credentials, authenticators — at rest. Without a key, test-mode secrets are stored as given, live-mode ones are refused, and a live database holding secrets does not start. Env FARTHING_SECRETS_KEY_FILE, or the key itself in FARTHING_SECRETS_KEY. farthing rotate-secrets-key makes a key and re-seals what is stored."),
    ("rates", "table of strings", "Exchange rates for amounts shown in another currency, \"BASE/QUOTE\" = \"decimal\": \"USD/TON\" = \"0.2\" means 1 USD = 0.2 TON. Empty by default."),
    ("webhooks.retry_schedule_s", "array of numbers (seconds)", "Delays before each retry; the default spreads 9 retries over about 2.7 days."),
    ("webhooks.jitter", "number (fraction, 0 to 1)", "Random spread added to each delay: 0.2 = up to +20 %. A number, not a boolean."),
    ("webhooks.timeout_s", "number (seconds)", "Timeout of one delivery attempt."),
    ("webhooks.concurrency", "integer", "How many deliveries run at once."),
    ("lightning.poll_interval_ms", "integer (milliseconds)", "How often every open node invoice is asked about when a node's settlement stream is down. Env FARTHING_LIGHTNING_POLL_INTERVAL_MS."),
    ("lightning.late_watch_s", "integer (seconds)", "How long a node invoice stays watched after its BOLT11 expired, so a late settlement is still credited."),
    ("lightning.allow_private_nodes", "boolean", "Whether PUT /v1/rails/lightning may name a node on a loopback or private address (off: merchants' node URLs cannot reach the operator's network). Env FARTHING_ALLOW_PRIVATE_NODES."),
    ("ton.poll_interval_ms", "integer (milliseconds)", "How long the TON watcher rests after a round that reached the indexer's head (a newly configured wallet wakes it). Env FARTHING_TON_POLL_INTERVAL_MS."),
    ("ton.request_interval_ms", "integer (milliseconds)", "The least time between two requests to one TON indexer without an API key (toncenter allows 1 request/s)."),
    ("ton.request_interval_with_key_ms", "integer (milliseconds)", "The same with an API key (toncenter's free key allows 10 requests/s)."),
    ("ton.page_size", "integer (1 to 256)", "Transactions the TON watcher asks for per request."),
    ("ton.allow_private_indexers", "boolean", "Whether PUT /v1/rails/ton may name an indexer on a loopback or private address. Env FARTHING_ALLOW_PRIVATE_INDEXERS."),
    ("telegram.poll_timeout_s", "integer (seconds)", "How long one getUpdates long poll waits (bots in polling mode)."),
    ("telegram.init_data_max_age_s", "integer (seconds)", "The oldest Mini App initData accepted, by its auth_date."),
    ("telegram.init_data_public_key", "string", "Whose Ed25519 key checks initData signatures: production, test, or 64 hex digits."),
    ("telegram.webapp_session_ttl_s", "integer (seconds)", "How long a Mini App session lasts."),
    ("telegram.web_app_script_url", "string (URL, or empty for never)", "The Telegram Mini App script the checkout page loads when opened as a Mini App without one."),
    ("telegram.reconcile_interval_s", "integer (seconds)", "How often each bot's getStarTransactions is read to settle payments the updates missed."),
    ("telegram.login_max_age_s", "integer (seconds)", "The oldest Telegram Login Widget data the dashboard login accepts."),
    ("telegram.dashboard_session_ttl_s", "integer (seconds)", "How long a dashboard session lasts."),
    ("telegram.tip_presets", "array of integers (Stars)", "The tip buttons after /start tip when the merchant has set none."),
    ("telegram.reminder_after_s", "integer (seconds)", "How old an open invoice must be before the bot reminds a customer who opted in, once."),
    ("telegram.api_urls", "array of strings (URLs)", "Bot API servers merchants may name as api_url besides https://api.telegram.org; [\"*\"] allows any (development only)."),
    ("http.header_timeout_s", "integer (seconds)", "Time a client may take to send a request's headers; also the keep-alive idle limit."),
    ("http.body_timeout_s", "integer (seconds)", "Time a client may take to send a whole request body."),
    ("http.max_connections", "integer", "Open connections at most; keep it below the file-descriptor limit."),
    ("rate_limits.api_key_per_s", "integer (requests/s, 0 = off)", "Per API key, on /v1. Env FARTHING_RATE_LIMIT_API_KEY_PER_S."),
    ("rate_limits.api_key_burst", "integer", "Burst per API key."),
    ("rate_limits.client_per_s", "integer (requests/s, 0 = off)", "Per client address on the public pages and callbacks (checkout, Mini App, dashboard login, LNURL)."),
    ("rate_limits.client_burst", "integer", "Burst per client address."),
    ("rate_limits.failed_auth_per_s", "integer (failures/s, 0 = off)", "Failed authentications per client address on /v1; past it every /v1 request from that address gets 429."),
    ("rate_limits.failed_auth_burst", "integer", "Burst of failed authentications per client address."),
    ("rate_limits.trust_forwarded_for", "boolean", "Take the client address from the last X-Forwarded-For entry (only behind a proxy that sets it)."),
];

impl Config {
    /// This configuration as a commented TOML file: every key with its type, what it does and
    /// its value (`farthing config`; with the defaults, the configuration reference). The
    /// text parses back into the same configuration.
    pub fn reference(&self) -> Result<String, String> {
        let values = toml::Value::try_from(self).map_err(|error| error.to_string())?;
        let mut out = String::from(
            "# farthing configuration: every key, its type and its value.\n\
             # Precedence: this file (--config or FARTHING_CONFIG), then FARTHING_* variables,\n\
             # then flags. Unknown keys are refused.\n",
        );
        let mut section = "";
        for (key, kind, doc) in KEYS {
            let (in_section, name) = key.split_once('.').unwrap_or(("", key));
            if in_section != section {
                out.push_str(&format!("\n[{in_section}]\n"));
                section = in_section;
            }
            let value = if in_section.is_empty() {
                values.get(name)
            } else {
                values.get(in_section).and_then(|table| table.get(name))
            }
            .ok_or_else(|| format!("no value for configuration key {key}"))?;
            // A PostgreSQL URL may carry a password: shown without it.
            let value = match (*key, farthing_store::DatabaseUrl::parse(&self.database)) {
                ("database", Ok(farthing_store::DatabaseUrl::Postgres(url))) => {
                    toml::Value::String(url.redacted())
                }
                _ => value.clone(),
            };
            out.push_str(&format!("\n# {doc}\n# Type: {kind}.\n{name} = {value}\n"));
        }
        Ok(out)
    }
}

/// A configuration that can't be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file can't be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not valid TOML for farthing.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

fn env_flag(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(ConfigError::Env {
            name,
            message: format!("{other:?} is not a boolean: use 1 or 0"),
        }),
    }
}

impl Config {
    /// Reads the file (if given), then applies `FARTHING_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                })?;
                toml::from_str(&text).map_err(|error| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: error.to_string(),
                })?
            }
            None => Config::default(),
        };
        if let Some(value) = env("FARTHING_LISTEN") {
            config.listen = value.parse().map_err(|_| ConfigError::Env {
                name: "FARTHING_LISTEN",
                message: format!("{value:?} is not an address such as 127.0.0.1:8080"),
            })?;
        }
        if let Some(value) = env("FARTHING_ADMIN_KEY_SHA256") {
            config.admin_key_sha256 = value;
        }
        if let Some(value) = env("FARTHING_DATABASE") {
            config.database = value;
        }
        if let Some(value) = env("FARTHING_SECRETS_KEY_FILE") {
            config.secrets_key_file = value;
        }
        if let Some(value) = env("FARTHING_SECRETS_KEY") {
            config.secrets_key = Some(farthing_store::SecretsKey::parse(&value).map_err(
                |message| ConfigError::Env {
                    name: "FARTHING_SECRETS_KEY",
                    message,
                },
            )?);
        } else if !config.secrets_key_file.is_empty() {
            let path = PathBuf::from(&config.secrets_key_file);
            config.secrets_key =
                Some(farthing_store::SecretsKey::from_file(&path).map_err(ConfigError::Invalid)?);
        }
        if let Some(value) = env("FARTHING_PUBLIC_URL") {
            config.public_url = value;
        }
        if let Some(value) = env("FARTHING_LIGHTNING_POLL_INTERVAL_MS") {
            config.lightning.poll_interval_ms = value.parse().map_err(|_| ConfigError::Env {
                name: "FARTHING_LIGHTNING_POLL_INTERVAL_MS",
                message: format!("{value:?} is not a number of milliseconds"),
            })?;
        }
        if let Some(value) = env("FARTHING_ALLOW_PRIVATE_WEBHOOKS") {
            config.allow_private_webhooks = env_flag("FARTHING_ALLOW_PRIVATE_WEBHOOKS", &value)?;
        }
        if let Some(value) = env("FARTHING_RATE_LIMIT_API_KEY_PER_S") {
            config.rate_limits.api_key_per_s = value.parse().map_err(|_| ConfigError::Env {
                name: "FARTHING_RATE_LIMIT_API_KEY_PER_S",
                message: format!("{value:?} is not a number of requests a second"),
            })?;
            config.rate_limits.api_key_burst = config
                .rate_limits
                .api_key_burst
                .max(config.rate_limits.api_key_per_s.saturating_mul(2));
        }
        if let Some(value) = env("FARTHING_TON_POLL_INTERVAL_MS") {
            config.ton.poll_interval_ms = value.parse().map_err(|_| ConfigError::Env {
                name: "FARTHING_TON_POLL_INTERVAL_MS",
                message: format!("{value:?} is not a number of milliseconds"),
            })?;
        }
        if let Some(value) = env("FARTHING_ALLOW_PRIVATE_INDEXERS") {
            config.ton.allow_private_indexers =
                env_flag("FARTHING_ALLOW_PRIVATE_INDEXERS", &value)?;
        }
        if let Some(value) = env("FARTHING_ALLOW_PRIVATE_NODES") {
            config.lightning.allow_private_nodes =
                env_flag("FARTHING_ALLOW_PRIVATE_NODES", &value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.admin_key_sha256.is_empty()
            && (self.admin_key_sha256.len() != 64
                || !self.admin_key_sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ConfigError::Invalid(
                "admin_key_sha256 must be 64 hex digits (the SHA-256 of the operator key; `farthing admin-key` prints one), or empty".to_owned(),
            ));
        }
        if self.http.header_timeout_s == 0 || self.http.body_timeout_s == 0 {
            return Err(ConfigError::Invalid(
                "http.header_timeout_s and http.body_timeout_s must be at least 1".to_owned(),
            ));
        }
        if self.http.max_connections < 16 {
            return Err(ConfigError::Invalid(
                "http.max_connections must be at least 16".to_owned(),
            ));
        }
        if self.idempotency_ttl_s < 24 * 3600 {
            return Err(ConfigError::Invalid(
                "idempotency_ttl_s must be at least 86400 (24 h)".to_owned(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".to_owned(),
            ));
        }
        let hooks = &self.webhooks;
        if hooks.retry_schedule_s.is_empty()
            || hooks
                .retry_schedule_s
                .iter()
                .any(|s| !s.is_finite() || *s < 0.0)
            || !(0.0..=1.0).contains(&hooks.jitter)
            || !(hooks.timeout_s > 0.0 && hooks.timeout_s <= 120.0)
            || hooks.concurrency == 0
        {
            return Err(ConfigError::Invalid(
                "webhooks: retry_schedule_s must be non-empty and non-negative, jitter within 0..=1, timeout_s within (0, 120], concurrency at least 1".to_owned(),
            ));
        }
        if !(50..=600_000).contains(&self.lightning.poll_interval_ms) {
            return Err(ConfigError::Invalid(
                "lightning.poll_interval_ms must be within 50..=600000".to_owned(),
            ));
        }
        if !(10..=600_000).contains(&self.ton.poll_interval_ms)
            || self.ton.request_interval_ms > 600_000
            || self.ton.request_interval_with_key_ms > 600_000
            || !(1..=farthing_ton::toncenter::MAX_PAGE).contains(&self.ton.page_size)
        {
            return Err(ConfigError::Invalid(
                "ton: poll_interval_ms must be within 10..=600000, the request intervals at most 600000, page_size within 1..=256".to_owned(),
            ));
        }
        if !(1..=50).contains(&self.telegram.poll_timeout_s) {
            return Err(ConfigError::Invalid(
                "telegram.poll_timeout_s must be within 1..=50".to_owned(),
            ));
        }
        if self.telegram.init_data_max_age_s == 0
            || !(1..=86_400).contains(&self.telegram.webapp_session_ttl_s)
        {
            return Err(ConfigError::Invalid(
                "telegram.init_data_max_age_s must be at least 1, telegram.webapp_session_ttl_s within 1..=86400".to_owned(),
            ));
        }
        if self.telegram.login_max_age_s == 0
            || !(1..=86_400).contains(&self.telegram.dashboard_session_ttl_s)
        {
            return Err(ConfigError::Invalid(
                "telegram.login_max_age_s must be at least 1, telegram.dashboard_session_ttl_s within 1..=86400".to_owned(),
            ));
        }
        if self.telegram.reminder_after_s > 30 * 86_400 {
            return Err(ConfigError::Invalid(
                "telegram.reminder_after_s must be at most 2592000 (30 days)".to_owned(),
            ));
        }
        if !(1..=86_400).contains(&self.telegram.reconcile_interval_s) {
            return Err(ConfigError::Invalid(
                "telegram.reconcile_interval_s must be within 1..=86400".to_owned(),
            ));
        }
        let presets = &self.telegram.tip_presets;
        if presets.is_empty()
            || presets.len() > 8
            || presets.iter().any(|stars| !(1..=10_000).contains(stars))
        {
            return Err(ConfigError::Invalid(
                "telegram.tip_presets must hold 1 to 8 amounts within 1..=10000 Stars".to_owned(),
            ));
        }
        if telegram_public_key(&self.telegram.init_data_public_key).is_none() {
            return Err(ConfigError::Invalid(
                "telegram.init_data_public_key must be production, test or 64 hex digits"
                    .to_owned(),
            ));
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "public_url {:?} must start with http:// or https://",
                self.public_url
            )));
        }
        Ok(())
    }

    /// The retry delays as durations.
    pub fn retry_schedule(&self) -> Vec<Duration> {
        self.webhooks
            .retry_schedule_s
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .collect()
    }

    /// The public URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }
}

/// The path of the test-mode database beside the live one: `data/farthing.db` →
/// `data/farthing-test.db`.
pub fn test_database_path(live: &Path) -> PathBuf {
    let stem = live
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "farthing".to_owned());
    let name = match live.extension() {
        Some(ext) => format!("{stem}-test.{}", ext.to_string_lossy()),
        None => format!("{stem}-test"),
    };
    live.with_file_name(name)
}

/// The Telegram key that `telegram.init_data_public_key` names: `production`, `test`, or 64
/// hex digits; `None` for anything else.
pub fn telegram_public_key(
    setting: &str,
) -> Option<farthing_telegram::init_data::TelegramPublicKey> {
    use farthing_telegram::init_data::TelegramEnvironment;
    match setting {
        "production" => Some(
            farthing_telegram::init_data::TelegramPublicKey::for_environment(
                TelegramEnvironment::Production,
            ),
        ),
        "test" => Some(
            farthing_telegram::init_data::TelegramPublicKey::for_environment(
                TelegramEnvironment::Test,
            ),
        ),
        hex if hex.len() == 64 => {
            let mut bytes = [0u8; 32];
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            farthing_telegram::init_data::TelegramPublicKey::from_bytes(bytes).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    /// The reference names exactly the fields the configuration has: a new key without a line
    /// in [`KEYS`] (or a line for a removed one) fails here.
    #[test]
    fn the_reference_names_every_key_and_nothing_else() {
        let values = toml::Value::try_from(Config::default()).expect("serialisable");
        let mut fields = Vec::new();
        for (key, value) in values.as_table().expect("a table") {
            match value.as_table() {
                Some(table) if key != "rates" => {
                    fields.extend(table.keys().map(|name| format!("{key}.{name}")))
                }
                _ => fields.push(key.clone()),
            }
        }
        fields.sort();
        let mut documented: Vec<String> =
            KEYS.iter().map(|(key, _, _)| (*key).to_owned()).collect();
        documented.sort();
        assert_eq!(documented, fields);
    }

    /// What `farthing config --defaults` prints is valid configuration, and the defaults.
    #[test]
    fn the_reference_parses_back_into_the_same_configuration() {
        let mut config = Config::default();
        config.rates.insert("USD/TON".to_owned(), "0.2".to_owned());
        config.webhooks.jitter = 0.5;
        let text = config.reference().expect("reference");
        assert!(
            text.contains("# Type: number (fraction, 0 to 1)."),
            "{text}"
        );
        let back: Config = toml::from_str(&text).expect("parses");
        assert_eq!(
            toml::Value::try_from(&back).expect("back"),
            toml::Value::try_from(&config).expect("config")
        );
        let defaults: Config = toml::from_str(&Config::default().reference().expect("text"))
            .expect("the defaults parse");
        assert_eq!(defaults.webhooks.retry_schedule_s.len(), 9);
        assert_eq!(defaults.telegram.tip_presets, vec![1, 3, 5, 10]);
    }

    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("farthing.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[webhooks]\nretry_schedule_s = [0.1, 0.2]\n",
        )
        .unwrap();
        let env = |name: &str| (name == "FARTHING_ALLOW_PRIVATE_WEBHOOKS").then(|| "1".to_owned());
        let config = Config::load(Some(&path), env).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert!(config.allow_private_webhooks);
        assert_eq!(config.retry_schedule().len(), 2);

        std::fs::write(&path, "listen = 5\n").unwrap();
        let error = Config::load(Some(&path), |_| None).unwrap_err().to_string();
        assert!(error.contains("invalid configuration"), "{error}");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let error = Config::load(Some(&path), |_| None).unwrap_err().to_string();
        assert!(error.contains("unknown field"), "{error}");
        let bad_env = |name: &str| (name == "FARTHING_LISTEN").then(|| "nope".to_owned());
        assert!(Config::load(None, bad_env).is_err());
    }

    #[test]
    fn test_database_sits_beside_the_live_one() {
        assert_eq!(
            test_database_path(Path::new("data/farthing.db")),
            PathBuf::from("data/farthing-test.db")
        );
        assert_eq!(
            test_database_path(Path::new("/x/ledger")),
            PathBuf::from("/x/ledger-test")
        );
    }
}
