//! What the integration tests share: a running server with its merchants ([`server`]), the
//! Telegram Bot API double ([`telegram_app`]), a real LNbits ([`lnbits`]) and signed Telegram
//! data ([`init_data`], [`login_widget`]).

pub mod init_data;
pub mod lnbits;
pub mod login_widget;
pub mod server;
pub mod telegram_app;
