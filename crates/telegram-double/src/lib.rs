//! A Telegram Bot API test double, checked against the published Bot API reference.
//!
//! - [`spec`] loads `shared/telegram/bot-api-10.1.json` (generated from Telegram's docs) and
//!   checks method calls and objects against it.
//! - [`TelegramDouble`] is a local HTTP server speaking the Bot API for a payment bot: it
//!   records every call, checks each against the spec, serves injected updates to `getUpdates`,
//!   pages through Star transactions, and fails on demand.
//! - [`answers`] builds the objects the double answers with; [`fixtures`] builds the updates and
//!   transactions tests inject. Both are checked against the spec by their own tests.
//!
//! This crate is for tests only (`publish = false`). It must never reach the network beyond
//! 127.0.0.1, and never accept a call the spec does not allow without recording it.

pub mod answers;
pub mod fixtures;
pub mod server;
pub mod spec;

pub use server::{Answer, Failure, RecordedCall, RecordedViolation, TelegramDouble, WaitTimeout};
pub use spec::{Encoding, Spec, SpecViolation, ViolationKind};
