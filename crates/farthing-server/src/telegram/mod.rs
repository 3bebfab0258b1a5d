//! The Telegram channel: how updates reach farthing — by webhook
//! ([`webhook::receive`], `POST /telegram/{bot_id}/webhook`) or long polling ([`poller`]) — and
//! [`webhook::handle_update`], the one place an update is dispatched, so both modes behave the
//! same: payments (pre-checkout queries, `successful_payment`) go to the Telegram rails
//! (`crate::rails::telegram`), messages and button presses to the bot (`crate::bot`).
//!
//! Architecture invariant: nothing here decides that money moved; the rails settle through
//! the service.

pub mod poller;
pub mod webhook;
