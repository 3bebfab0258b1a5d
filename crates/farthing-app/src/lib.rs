//! farthing's payments service: every operation that moves money or changes a payment's state
//! — invoices, balance payments, charges, refunds, subscriptions, payouts, top-ups, settling
//! what a rail reports — written once, over the store.
//!
//! Adapters (the HTTP API, the checkout pages, the bot, the rails, the workers) call this crate;
//! this crate calls the store; the store calls the domain (`farthing-core`). The service knows
//! no HTTP and no rail's protocol: a rail is reached only through the [`rail`] interface an
//! adapter implements.
//!
//! Architecture invariant: money moves only here — a ledger group applied inside a store job
//! run by [`App::run`] — and every job that writes outbox events wakes the webhook worker after
//! its commit, without the caller doing anything.
//!
//! API boundary: [`App`] (the stores, the clock, the outbox), [`AppError`], [`Mode`],
//! [`Clock`], the operation modules, [`settlement`] (the one entry point for money a rail
//! reports) and [`wire`] (the objects adapters show and events carry).

pub mod book;
mod cache;
pub mod charges;
pub mod clock;
pub mod customers;
pub mod error;
pub mod ids;
pub mod invoices;
pub mod mode;
pub mod outbox;
pub mod payouts;
pub mod rail;
pub mod rails;
pub mod refund_requests;
pub mod refunds;
pub mod risk;
pub mod sandbox;
pub mod settings;
pub mod settlement;
pub mod step_up;
pub mod subscriptions;
pub mod wire;

use std::sync::Arc;

use farthing_core::{InvoiceId, PublicId};
use farthing_store::{Reader, Store, StoreError, Tx};
use tokio::sync::Notify;

pub use clock::Clock;
pub use error::AppError;
pub use mode::Mode;

/// The service: both stores (live and test mode), the clock, and the outbox's wake-up.
/// Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    live: Store,
    test: Store,
    clock: Clock,
    outbox: Notify,
    /// The public base URL (no trailing slash), for the checkout links objects carry.
    base_url: String,
    /// Told of each fresh settlement's lag (the server's metrics), once set.
    settlement_observer: std::sync::OnceLock<SettlementObserver>,
    /// The merchants' risk rules (cached) and velocity windows.
    risk: risk::RiskState,
    /// The rails each merchant's invoices can take, by mode (see [`invoices::offered`]).
    offers: cache::NewsCache<(Mode, farthing_core::MerchantId), invoices::Offered>,
}

/// Told of each fresh settlement a rail reported: the rail, and the seconds from when the rail
/// says the payment happened to its booking (the settlement lag an operator watches).
pub type SettlementObserver = Arc<dyn Fn(farthing_core::Rail, f64) + Send + Sync>;

impl App {
    /// The service over opened stores. `base_url` is where payers reach farthing.
    pub fn new(live: Store, test: Store, clock: Clock, base_url: &str) -> App {
        App {
            inner: Arc::new(Inner {
                live,
                test,
                clock,
                outbox: Notify::new(),
                base_url: base_url.trim_end_matches('/').to_owned(),
                settlement_observer: std::sync::OnceLock::new(),
                risk: risk::RiskState::default(),
                offers: cache::NewsCache::new(invoices::MAX_CACHED_OFFERS),
            }),
        }
    }

    /// Sets who is told of settlement lags (once; later calls are ignored).
    pub fn set_settlement_observer(&self, observer: SettlementObserver) {
        let _ = self.inner.settlement_observer.set(observer);
    }

    /// A rail adapter booked a payment the rail says happened at `happened_at_s` (Unix
    /// seconds): reports the lag from then to now.
    pub fn observe_settlement(&self, rail: farthing_core::Rail, happened_at_s: u64) {
        if let Some(observer) = self.inner.settlement_observer.get() {
            let now_s = self.now_ns() as f64 / 1e9;
            observer(rail, (now_s - happened_at_s as f64).max(0.0));
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

    /// The clock every business rule reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Now, in nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        self.inner.clock.now_ns()
    }

    /// Woken after every commit that queued webhook deliveries: the webhook worker waits on it.
    /// (An event no endpoint asks for queues none, and wakes nobody.)
    pub fn outbox(&self) -> &Notify {
        &self.inner.outbox
    }

    /// The public base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The checkout page of an invoice.
    pub fn checkout_url(&self, invoice: InvoiceId) -> String {
        format!("{}/pay/{}", self.inner.base_url, invoice.encode())
    }

    /// Runs `op` as one store job in `mode` (all of it commits or none of it), and after the
    /// commit wakes the webhook worker if the job queued deliveries, and forgets what it keeps
    /// in memory of each topic the job announced ([`App::forget`]). `E` is the caller's error
    /// type (the service's own, or an adapter's that wraps it).
    pub async fn run<T, E, F>(&self, mode: Mode, op: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_, '_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<AppError> + Send + 'static,
    {
        let ran = self
            .store(mode)
            .run(move |tx| {
                let value = op(tx)?;
                Ok::<_, E>((value, tx.deliveries_queued(), tx.announced().to_vec()))
            })
            .await
            .map_err(|error| E::from(AppError::from(error)))?;
        let (value, deliveries, announced) = ran?;
        if deliveries > 0 {
            self.inner.outbox.notify_one();
        }
        for topic in announced {
            self.forget(topic);
        }
        Ok(value)
    }

    /// Drops what the service keeps in memory of `topic` (a job of this instance changed it,
    /// another instance on the database did, or its news may have been missed): risk rules,
    /// and the rails merchants can take. Other topics keep nothing here.
    pub fn forget(&self, topic: farthing_store::instances::Topic) {
        use farthing_store::instances::Topic;
        match topic {
            Topic::RiskRules => self.inner.risk.rules.forget_all(),
            Topic::Rails => self.inner.offers.forget_all(),
            Topic::ApiKeys | Topic::Outbox => {}
        }
    }

    /// Whether what the service keeps in memory may be used: on a database other instances
    /// share, only while their changes are heard (`farthing_store::instances`). Until then
    /// every use reads the store. Forget every topic before trusting again.
    pub fn trust_cached(&self, trusted: bool) {
        self.inner.risk.rules.trust(trusted);
        self.inner.offers.trust(trusted);
    }

    /// Reads committed data of `mode`.
    pub fn read<T: Send>(
        &self,
        mode: Mode,
        work: impl FnOnce(&Reader<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, AppError> {
        Ok(self.store(mode).read(work)?)
    }
}
