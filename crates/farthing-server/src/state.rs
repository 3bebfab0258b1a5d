//! Shared server state: the two stores (live and test mode), configuration, the API-key
//! cache, and notifications between the API and the background workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use farthing_core::{MerchantId, PublicId};
use farthing_store::instances::{Heard, Topic};
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
/// by another process on SQLite (the CLI) stops working within this time; one revoked through
/// this server's API, or through another instance on a shared PostgreSQL database (it announces
/// the change), stops at once.
const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything the handlers and workers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// Checked API keys, by hash.
#[derive(Default)]
struct KeyCache {
    entries: RwLock<HashMap<[u8; 32], CachedKey>>,
    /// Raised whenever every cached key must be read again (another instance revoked one):
    /// entries of an older generation are not used, and a key read before the raise is cached
    /// with the generation it was read in (so a revocation that lands during the read is not
    /// lost to it).
    generation: AtomicU64,
    /// How many of this server's change listeners are away (on a shared database): while any
    /// is, a revocation could go unheard, so no cached key is used.
    deaf: AtomicUsize,
    /// Held while a listener's report changes `deaf` and the rules' trust.
    listening: std::sync::Mutex<()>,
}

struct CachedKey {
    principal: Principal,
    cached_at: std::time::Instant,
    generation: u64,
}

struct Inner {
    app: farthing_app::App,
    config: Config,
    keys: KeyCache,
    metrics: Metrics,
    /// The rails this server runs.
    rails: crate::registry::Rails,
    /// Signs Mini App and dashboard sessions: random per process (sessions end on restart), or
    /// on a shared PostgreSQL database derived from the secrets key (every instance accepts
    /// them).
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
        // Several instances on one database must accept each other's sessions (and only
        // they: the key is bound to the database as well as to the secrets key).
        let shared = app
            .store(Mode::Live)
            .shared_identity()
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot name the shared database: sessions are signed with a key of this instance alone");
                None
            });
        let webapp_key = match (&config.secrets_key, shared) {
            (Some(key), Some(database)) => crate::signed_token::SessionKey::from_bytes(
                key.derive(&format!("sessions {database}")),
            ),
            _ => crate::signed_token::SessionKey::random(),
        };
        let limits = crate::web::limits::Limits::new(&config.rate_limits);
        AppState {
            inner: Arc::new(Inner {
                limits,
                app,
                config,
                keys: KeyCache::default(),
                metrics,
                rails,
                webapp_key,
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

    /// A checked key from memory, if it may be used.
    pub(crate) fn cached_key(&self, hash: &[u8; 32]) -> Option<Principal> {
        let keys = &self.inner.keys;
        if keys.deaf.load(Ordering::Acquire) > 0 {
            return None;
        }
        let generation = keys.generation.load(Ordering::Acquire);
        keys.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(hash)
            .filter(|cached| {
                cached.generation == generation && cached.cached_at.elapsed() < KEY_CACHE_TTL
            })
            .map(|cached| cached.principal.clone())
    }

    /// The principal a key had when it was last checked, within the cache's time to live
    /// (the audit log names who acted, after the handler checked the key), whether or not
    /// the cache may answer authentication now.
    pub(crate) fn checked_key(&self, hash: &[u8; 32]) -> Option<Principal> {
        self.inner
            .keys
            .entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(hash)
            .filter(|cached| cached.cached_at.elapsed() < KEY_CACHE_TTL)
            .map(|cached| cached.principal.clone())
    }

    /// Forgets a cached key (it was revoked), and makes every cached key be read again (a
    /// request that read this one just before the revocation must not cache it as current).
    pub(crate) fn uncache_key(&self, hash: &[u8; 32]) {
        self.forget_keys();
        self.inner
            .keys
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(hash);
    }

    /// The key cache's generation: read it before reading a key from the store, and cache the
    /// key with it ([`AppState::cache_key`]).
    pub(crate) fn key_generation(&self) -> u64 {
        self.inner.keys.generation.load(Ordering::Acquire)
    }

    /// Caches a key read from the store in `generation`.
    pub(crate) fn cache_key(&self, hash: [u8; 32], principal: Principal, generation: u64) {
        self.inner
            .keys
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                hash,
                CachedKey {
                    principal,
                    cached_at: std::time::Instant::now(),
                    generation,
                },
            );
    }

    /// Makes every cached key be read again.
    fn forget_keys(&self) {
        self.inner.keys.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// This server is about to listen for other instances' changes on `listeners` sessions:
    /// caches are not trusted until each of them listens.
    pub(crate) fn expect_listeners(&self, listeners: usize) {
        self.inner.keys.deaf.store(listeners, Ordering::Release);
        self.app().trust_cached(listeners == 0);
    }

    /// Acts on what a listener heard from the other instances on the database.
    pub(crate) fn heard(&self, heard: Heard) {
        let app = self.app();
        match heard {
            Heard::Listening | Heard::Deaf => {
                // The two listeners' reports may cross: the count and the rules' trust change
                // together.
                let _together = self
                    .inner
                    .keys
                    .listening
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let deaf = &self.inner.keys.deaf;
                if heard == Heard::Listening {
                    // What was announced while away is unknown: read everything again.
                    self.forget_keys();
                    for topic in Topic::ALL {
                        app.forget(topic);
                    }
                    let _ = deaf.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        Some(n.saturating_sub(1))
                    });
                } else {
                    deaf.fetch_add(1, Ordering::AcqRel);
                }
                app.trust_cached(deaf.load(Ordering::Acquire) == 0);
                if heard == Heard::Listening {
                    // What was announced while away is unknown: look at everything again.
                    self.wake_webhooks();
                    if self.metrics().leader() {
                        self.rails().wake();
                    }
                }
            }
            Heard::Changed(topic) => {
                // What the service keeps of it first, then what the server keeps or runs.
                app.forget(topic);
                match topic {
                    Topic::ApiKeys => self.forget_keys(),
                    Topic::RiskRules => {}
                    Topic::Outbox => self.wake_webhooks(),
                    Topic::Rails => self.rails().wake(),
                }
            }
        }
    }

    /// Wakes the webhook worker, if this instance runs it. (A follower's outbox wake-up is
    /// what it forwards to the leader: waking it for news heard from the database would
    /// forward that news again, without end.) The rails' watchers are not woken by outbox
    /// news: they have news of their own (`Topic::Rails`), and under load the outbox news
    /// comes every few milliseconds, each wake-up reading every rail's configuration again.
    fn wake_webhooks(&self) {
        if self.metrics().leader() {
            self.deliveries().notify_one();
        }
    }

    /// The checkout URL of an invoice.
    pub fn checkout_url(&self, invoice: &str) -> String {
        format!("{}/pay/{invoice}", self.inner.app.base_url())
    }
}
