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
}

impl Principal {
    /// Refuses with 403 unless the key carries `scope` (or `*`).
    pub fn require(&self, scope: &str) -> Result<(), crate::error::ApiError> {
        if self.scopes.iter().any(|s| s == "*" || s == scope) {
            Ok(())
        } else {
            Err(crate::error::ApiError::forbidden(
                "missing_scope",
                format!("this API key lacks the {scope:?} scope"),
            ))
        }
    }

    /// The merchant's public id.
    pub fn merchant_id(&self) -> String {
        self.merchant.encode()
    }
}

/// Everything the handlers and workers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    live: Store,
    test: Store,
    config: Config,
    keys: RwLock<HashMap<[u8; 32], Principal>>,
    metrics: Metrics,
    deliveries: Notify,
    /// Wakes the Telegram poller when a bot is connected or reconfigured.
    telegram_bots: Notify,
    lightning: crate::lightning::Nodes,
    /// Signs Mini App sessions; random per process, so sessions end on restart.
    webapp_key: crate::webapp::SessionKey,
}

impl AppState {
    /// Wraps opened stores.
    pub fn new(live: Store, test: Store, config: Config, metrics: Metrics) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                live,
                test,
                config,
                keys: RwLock::new(HashMap::new()),
                metrics,
                deliveries: Notify::new(),
                telegram_bots: Notify::new(),
                lightning: crate::lightning::Nodes::default(),
                webapp_key: crate::webapp::SessionKey::random(),
            }),
        }
    }

    /// The store of `mode`.
    pub fn store(&self, mode: Mode) -> &Store {
        match mode {
            Mode::Live => &self.inner.live,
            Mode::Test => &self.inner.test,
        }
    }

    /// Both stores with their mode.
    pub fn stores(&self) -> [(Mode, &Store); 2] {
        [
            (Mode::Live, &self.inner.live),
            (Mode::Test, &self.inner.test),
        ]
    }

    /// Configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The merchants' Lightning nodes.
    pub fn lightning(&self) -> &crate::lightning::Nodes {
        &self.inner.lightning
    }

    /// The key that signs Mini App sessions.
    pub fn webapp_key(&self) -> &crate::webapp::SessionKey {
        &self.inner.webapp_key
    }

    /// Wakes the webhook worker (after a commit that wrote events).
    pub fn deliveries(&self) -> &Notify {
        &self.inner.deliveries
    }

    /// Wakes the Telegram poller (after a bot was connected or reconfigured).
    pub fn telegram_bots_changed(&self) -> &Notify {
        &self.inner.telegram_bots
    }

    pub(crate) fn cached_key(&self, hash: &[u8; 32]) -> Option<Principal> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(hash)
            .cloned()
    }

    pub(crate) fn cache_key(&self, hash: [u8; 32], principal: Principal) {
        self.inner
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(hash, principal);
    }

    /// The checkout URL of an invoice.
    pub fn checkout_url(&self, invoice: &str) -> String {
        format!("{}/pay/{invoice}", self.config().base_url())
    }
}
