//! farthing's Telegram checks: who is on the other side of a Mini App or a dashboard login.
//!
//! [`init_data`] verifies the `initData` a Telegram Mini App hands its page (the bot-token
//! HMAC, or Telegram's Ed25519 `signature` for third parties) and turns it into typed values;
//! [`login_widget`] does the same for the Telegram Login Widget. Both reject data older than a
//! [`Freshness`] window.
//!
//! Architecture invariant: this crate does no I/O, has no async code and never reads a clock:
//! the current time arrives as `now_unix_s`. It knows nothing about HTTP, the Bot API or the
//! store; the server calls it with the raw string it received and maps its errors to 401.
//!
//! API boundary: [`BotToken`] (which never prints its secret), the ids, [`Freshness`],
//! [`init_data::verify_with_bot_token`], [`init_data::verify_third_party`] with a
//! [`init_data::TelegramPublicKey`], and [`login_widget::verify`]. A value of
//! [`init_data::InitData`] or [`login_widget::LoginWidgetAuth`] can only be obtained from a
//! successful verification, so holding one means the data came from Telegram.

mod fields;
mod freshness;
mod ids;
pub mod init_data;
pub mod login_widget;
mod token;

pub use freshness::Freshness;
pub use ids::{BotId, TelegramChatId, TelegramUserId};
pub use token::{BotToken, BotTokenError};

#[cfg(test)]
mod test_support;
