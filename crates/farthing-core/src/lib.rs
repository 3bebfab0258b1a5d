//! farthing's domain: money, identifiers and the ledger rules.
//!
//! Architecture invariant: this crate does no I/O, spawns no threads, has no async code and never
//! reads a clock. Time comes in as arguments (`now_ns`); storage lives behind the
//! [`ledger::LedgerState`] trait, implemented by `farthing-store`. Everything here is therefore
//! deterministic and can be tested by simulation.

pub mod ids;
pub mod invoice;
pub mod ledger;
pub mod money;
pub mod rail;
pub mod risk;

pub use ids::{
    AccountId, AuditEntryId, BalanceEntryId, ChargeId, CustomerId, EventId, InvoiceId, MerchantId,
    PublicId, RefundId, RefundRequestId, RiskDecisionId, SubscriptionId, TransferId,
    WebhookEndpointId,
};
pub use money::{Currency, Money, MoneyError};
pub use rail::Rail;
