//! The rail interface: what every rail adapter (balance, sandbox, Stars, cards, Lightning, TON…)
//! implements, and what the service asks of the set of rails a server runs.
//!
//! A rail adapter lives in its own crate or module and knows its protocol; nothing else does.
//! It is asked, through [`RailAdapter`]:
//! - whether a merchant can take it and which currencies it carries ([`RailAdapter::offer`]);
//! - to connect a merchant's configuration, checking it against the rail first
//!   ([`RailAdapter::connect`], `PUT /v1/rails/{rail}`), and for its health
//!   ([`RailAdapter::status`], `GET /v1/rails`);
//! - for the payment instructions of an invoice, after the invoice committed — never inside a
//!   store job ([`RailAdapter::instructions`]);
//! - to refund a payment through the rail ([`RailAdapter::refund`]);
//! - for its background work ([`RailAdapter::tasks`]: streams, polling, reconciliation), which
//!   reports money only through [`crate::settlement`].
//!
//! Dispatch is static: the server registers its adapters once, in an enum over them (as
//! `farthing_lightning::Backend` does for nodes), and implements [`RailSet`] for it, which is
//! how the service reaches a rail without knowing any.

use std::future::Future;
use std::pin::Pin;

use farthing_core::invoice::{Invoice, InvoiceAmount};
use farthing_core::{Currency, CustomerId, InvoiceId, MerchantId, Rail, RefundId};
use tokio::sync::watch;

use crate::{App, AppError, Mode};

/// A rail's background work, run by the server until shutdown.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Which currencies a rail carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CurrencySet {
    /// Any currency.
    Any,
    /// Any fiat (ISO 4217) currency.
    Fiat,
    /// Only these.
    Only(Vec<Currency>),
}

/// What a rail can carry for a merchant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carries {
    /// The currencies.
    pub currencies: CurrencySet,
    /// What a merchant asking for another currency is told the rail takes (e.g. "the lightning
    /// rail takes BTC invoices (amounts in satoshis)").
    pub why_not: String,
}

impl Carries {
    /// Any currency.
    pub fn any() -> Carries {
        Carries {
            currencies: CurrencySet::Any,
            why_not: String::new(),
        }
    }

    /// Whether `currency` is carried.
    pub fn takes(&self, currency: Currency) -> bool {
        match &self.currencies {
            CurrencySet::Any => true,
            CurrencySet::Fiat => currency.kind() == farthing_core::money::CurrencyKind::Fiat,
            CurrencySet::Only(currencies) => currencies.contains(&currency),
        }
    }
}

/// A rail as `GET /v1/rails` shows it: configured or not, its health, and the details the rail
/// adds (bot, node, network…).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RailStatus {
    /// Always `rail`.
    pub object: &'static str,
    /// The rail's name.
    pub rail: &'static str,
    /// Whether the merchant has it (every rail listed is).
    pub configured: bool,
    /// `healthy`, `unhealthy` or `unknown`.
    pub health: &'static str,
    /// Live or test mode.
    pub livemode: bool,
    /// What the rail adds, as its own fields.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl RailStatus {
    /// A configured rail with no details yet.
    pub fn new(rail: Rail, mode: Mode, health: &'static str) -> RailStatus {
        RailStatus {
            object: "rail",
            rail: rail.as_str(),
            configured: true,
            health,
            livemode: mode.is_live(),
            details: serde_json::Map::new(),
        }
    }

    /// Adds a field of the rail's own.
    pub fn with(mut self, name: &str, value: impl serde::Serialize) -> RailStatus {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.details.insert(name.to_owned(), value);
        self
    }
}

/// Stores an accepted rail configuration inside the caller's store job.
pub type StoreConnection =
    Box<dyn FnOnce(&mut farthing_store::Tx<'_, '_>) -> Result<(), AppError> + Send>;

/// A rail configuration that the rail accepted: what to answer, what to store (in the caller's
/// store job, with its idempotency record), and what to do once it committed (e.g. wake the
/// rail's worker).
pub struct Connected {
    /// The rail as it will stand.
    pub status: RailStatus,
    /// Stores the configuration; refuses (and so stores nothing) when something changed since
    /// the check (e.g. another merchant took a name meanwhile).
    pub store: StoreConnection,
    /// Runs after the commit.
    pub after_commit: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A refund the service asks a rail to send back to the payer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RailRefund {
    /// The merchant refunding.
    pub merchant: MerchantId,
    /// The refund's id (a rail may use it as its own idempotency key).
    pub refund: RefundId,
    /// The paid invoice.
    pub invoice: InvoiceId,
    /// How much, in minor units of the invoice's currency; `None` for all that is refundable.
    pub amount_minor: Option<u64>,
}

/// What a rail did for a refund.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RailRefunded {
    /// How much went back, in minor units.
    pub amount_minor: u64,
    /// The payer the refund is booked for, when the rail knows one the invoice does not name
    /// (e.g. the Telegram user who paid): made the merchant's customer.
    pub payer_external_id: Option<String>,
    /// `Some` when the rail only prepared the refund and the merchant sends it (a TON wallet
    /// farthing holds no key for): the refund's next action as a JSON object. The amount is
    /// then held, the refund `pending` until the rail sees it sent
    /// (the service's `complete_sent`).
    pub pending: Option<String>,
}

/// One rail's adapter.
pub trait RailAdapter: Send + Sync + 'static {
    /// What `PUT /v1/rails/{rail}` takes (typed; the adapter checks it against the rail).
    type Config: serde::de::DeserializeOwned + Send + 'static;

    /// Which rail this is.
    fn rail(&self) -> Rail;

    /// Whether `merchant` can take this rail in `mode` (`None` when it is not configured), and
    /// what it carries. A store read at most: invoice creation asks every rail.
    fn offer(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<Carries>, AppError>;

    /// Checks the merchant's configuration against the rail (a token with `getMe`, a node with
    /// its balance…) and answers what to store; nothing is stored when the check fails.
    fn connect(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        config: Self::Config,
    ) -> impl Future<Output = Result<Connected, AppError>> + Send;

    /// How the rail stands for the merchant (`None` when it is not configured).
    fn status(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> impl Future<Output = Result<Option<RailStatus>, AppError>> + Send;

    /// The payment instructions of a committed, open invoice that accepts this rail, as a JSON
    /// object, or `None` when the rail has none for it (an amountless invoice, a currency it
    /// does not carry, a rail that needs none). The adapter stores what it must (its own rows);
    /// the caller stores the instructions on the invoice.
    fn instructions(
        &self,
        app: &App,
        mode: Mode,
        invoice: &Invoice,
    ) -> impl Future<Output = Result<Option<String>, AppError>> + Send;

    /// Sends a refund back through the rail — or prepares it for the merchant to send
    /// ([`RailRefunded::pending`]). Called before anything is booked; when it fails nothing is.
    /// Rails that cannot refund answer `rail_refund_unsupported`.
    fn refund(
        &self,
        app: &App,
        mode: Mode,
        request: RailRefund,
    ) -> impl Future<Output = Result<RailRefunded, AppError>> + Send;

    /// The rail's background work (streams, polling, reconciliation), each until `shutdown`.
    fn tasks(&self, app: &App, shutdown: watch::Receiver<bool>) -> Vec<Task>;

    /// Cancels or resumes a subscription the rail renews by itself (Telegram Stars); rails
    /// without subscriptions refuse.
    fn edit_subscription(
        &self,
        _app: &App,
        _mode: Mode,
        _subscription: &farthing_store::Subscription,
        _canceled: bool,
    ) -> impl Future<Output = Result<(), AppError>> + Send {
        let rail = self.rail();
        async move {
            Err(AppError::invalid(
                "subscription_unsupported",
                format!("the {rail} rail renews no subscriptions"),
            ))
        }
    }
}

/// The rails a server runs, as the service reaches them: by rail name, through the server's
/// registry (static dispatch over its adapters).
pub trait RailSet: Send + Sync + 'static {
    /// Every registered rail, in the order invoices list them by default.
    fn registered(&self) -> Vec<Rail>;

    /// [`RailAdapter::offer`] of `rail` (`None` when the rail is not registered either).
    fn offer(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        rail: Rail,
    ) -> Result<Option<Carries>, AppError>;

    /// [`RailAdapter::instructions`] of `rail`.
    fn instructions(
        &self,
        app: &App,
        mode: Mode,
        rail: Rail,
        invoice: &Invoice,
    ) -> impl Future<Output = Result<Option<String>, AppError>> + Send;

    /// [`RailAdapter::refund`] of `rail`.
    fn refund(
        &self,
        app: &App,
        mode: Mode,
        rail: Rail,
        request: RailRefund,
    ) -> impl Future<Output = Result<RailRefunded, AppError>> + Send;

    /// [`RailAdapter::edit_subscription`] of `rail`.
    fn edit_subscription(
        &self,
        app: &App,
        mode: Mode,
        rail: Rail,
        subscription: &farthing_store::Subscription,
        canceled: bool,
    ) -> impl Future<Output = Result<(), AppError>> + Send;

    /// [`RailAdapter::status`] of `rail`.
    fn status(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        rail: Rail,
    ) -> impl Future<Output = Result<Option<RailStatus>, AppError>> + Send;
}

/// The smallest amount an invoice can be paid with (its fixed amount, or its minimum).
pub fn least_amount(amount: &InvoiceAmount) -> u64 {
    match amount {
        InvoiceAmount::Fixed(fixed) => *fixed,
        InvoiceAmount::Open { min_minor, .. } => *min_minor,
    }
}

/// The customer a rail refund is booked for: the invoice's payer, else its customer.
pub fn refund_customer(invoice: &Invoice) -> Option<CustomerId> {
    invoice
        .payment
        .and_then(|payment| payment.customer)
        .or(invoice.customer)
}
