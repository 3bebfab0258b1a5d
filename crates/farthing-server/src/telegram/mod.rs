//! farthing's side of the Telegram Bot API: the typed client the Stars rail and the payment bot
//! use to talk to Telegram (or to Telegram's test environment, a local Bot API server, or the
//! `telegram-double` in tests).
//!
//! Updates arrive by webhook ([`webhook::receive`]) or long polling ([`poller`]); both hand
//! each one to [`webhook::handle_update`], so the two modes behave the same.
//!
//! Architecture invariant: nothing here decides that money moved. The client only carries
//! calls and answers; settling a `successful_payment` or answering a `pre_checkout_query` is
//! decided elsewhere, through the ledger. The bot token lives in a
//! [`farthing_telegram::BotToken`] and never reaches an error message, a `Debug` output or a log.
//!
//! API boundary: [`BotClient`] (one per bot), its parameter types ([`InvoiceParams`],
//! [`LabeledPrice`]), the objects it returns ([`Update`], [`Message`], [`User`],
//! [`SuccessfulPayment`], [`PreCheckoutQuery`], [`StarTransactions`], …) and [`BotApiError`].

pub mod bot;
pub mod commands;
pub mod i18n;
pub mod poller;
pub mod reconcile;
pub mod webhook;

/// The Bot API client (its own crate).
pub use farthing_botapi as client;
pub use farthing_botapi::{
    BotApiError, BotClient, CallbackQuery, Chat, Invoice, InvoiceParams, LabeledPrice, Message,
    PreCheckoutQuery, RevenueWithdrawalState, StarTransaction, StarTransactions, SuccessfulPayment,
    TransactionPartner, Update, User,
};
