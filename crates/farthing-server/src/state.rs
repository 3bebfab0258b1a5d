//! Shared server state: the two stores (live and test mode), configuration, the API-key
//! cache, and notifications between the API and the background workers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use farthing_core::{MerchantId, PublicId};
use farthing_store::Store;
use tokio::sync::Notify;

use crate::config::Config;
use crate::metrics::Metrics;

pub use farthing_app::Mode;

/// Who is calling, once their key checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The merchant.
    pub merchant: MerchantId,
    /// Live or test.
    pub mode: Mode,
    /// What the key may do: `*`, or scopes such as `invoices:write`.
    pub scopes: Vec<String>,
    /// SHA-256 of the key that authenticated (its public id is derived from it).
    pub key_hash: [u8; 32],
    /// When the key stops working (a rolled key's grace period ends), if it does.
    pub expires_at_ns: Option<u64>,
}

impl Principal {
    /// Refuses (403 `missing_scope` in the API) unless the key carries `scope` (or `*`).
    pub fn require(&self, scope: &str) -> Result<(), MissingScope> {
        if self.scopes.iter().any(|s| s == "*" || s == scope) {
            Ok(())
        } else {
            Err(MissingScope(scope.to_owned()))
        }
    }

    /// The merchant's public id.
    pub fn merchant_id(&self) -> String {
        self.merchant.encode()
    }
}

/// An API key lacks the scope an operation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingScope(pub String);

/// How long a checked key is trusted from memory before the store is asked again: a key revoked
/// by another process (the CLI, another instance) stops working within this time; one revoked
/// through this server's API stops at once.
const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything the handlers and workers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    app: farthing_app::App,
    config: Config,
    keys: RwLock<HashMap<[u8; 32], (Principal, std::time::Instant)>>,
    metrics: Metrics,
    /// The rails this server runs.
    rails: crate::registry::Rails,
    /// Signs Mini App sessions; random per process, so sessions end on restart.
    webapp_key: crate::signed_token::SessionKey,
    /// The rate limits' buckets.
    limits: Arc<crate::web::limits::Limits>,
    /// Serialises the operator's merchant creations (rare; a repeated Idempotency-Key must
    /// find the first one's record).
    admin: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Wraps opened stores, with the system clock.
    pub fn new(live: Store, test: Store, config: Config, metrics: Metrics) -> AppState {
        AppState::with_clock(live, test, config, metrics, farthing_app::Clock::system())
    }

    /// Wraps opened stores with `clock` (a test's manual clock).
    pub fn with_clock(
        live: Store,
        test: Store,
        config: Config,
        metrics: Metrics,
        clock: farthing_app::Clock,
    ) -> AppState {
        let app = farthing_app::App::new(live, test, clock, config.base_url());
        let observed = metrics.clone();
        app.set_settlement_observer(Arc::new(move |rail, lag_s| {
            observed.observe_settlement(rail.as_str(), lag_s)
        }));
        let rails = crate::registry::Rails::new(&config);
        let limits = crate::web::limits::Limits::new(&config.rate_limits);
        AppState {
            inner: Arc::new(Inner {
                limits,
                app,
                config,
                keys: RwLock::new(HashMap::new()),
                metrics,
                rails,
                webapp_key: crate::signed_token::SessionKey::random(),
                admin: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The lock the operator's merchant creations take.
    pub fn admin_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.admin
    }

    /// The rate limits.
    pub fn limits(&self) -> &Arc<crate::web::limits::Limits> {
        &self.inner.limits
    }

    /// The payments service.
    pub fn app(&self) -> &farthing_app::App {
        &self.inner.app
    }

    /// The store of `mode`.
    pub fn store(&self, mode: Mode) -> &Store {
        self.inner.app.store(mode)
    }

    /// Both stores with their mode.
    pub fn stores(&self) -> [(Mode, &Store); 2] {
        self.inner.app.stores()
    }

    /// Now, by the service's clock, in nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        self.inner.app.now_ns()
    }

    /// Configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The rails this server runs.
    pub fn rails(&self) -> &crate::registry::Rails {
        &self.inner.rails
    }

    /// The key that signs Mini App sessions.
    pub fn webapp_key(&self) -> &crate::signed_token::SessionKey {
        &self.inner.webapp_key
    }

    /// Wakes the webhook worker (after a commit that wrote events; `App::run` does it itself).
    pub fn deliveries(&self) -> &Notify {
        self.inner.app.outbox()
    }

    pub(crate) fn cached_key(&self, hash: &[u8; 32]) -> Option<Principal> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(hash)
            .filter(|(_, cached_at)| cached_at.elapsed() < KEY_CACHE_TTL)
            .map(|(principal, _)| principal.clone())
    }

    /// Forgets a cached key (it was revoked).
    pub(crate) fn uncache_key(&self, hash: &[u8; 32]) {
        self.inner
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(hash);
    }

    pub(crate) fn cache_key(&self, hash: [u8; 32], principal: Principal) {
        self.inner
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(hash, (principal, std::time::Instant::now()));
    }

    /// The checkout URL of an invoice.
    pub fn checkout_url(&self, invoice: &str) -> String {
        format!("{}/pay/{invoice}", self.inner.app.base_url())
    }
}
