//! The rail adapters of this server, one module each, registered in the registry (`registry.rs`): the
//! Telegram rails (Stars and cards through a payment provider), Lightning and TON. The balance and
//! sandbox rails live in the service (`farthing_app::rails`): they need no outside peer.
//!
//! Architecture invariant: a rail module imports the service, the store's types, its own
//! protocol crates and the server's shared `config` and `net` — never another rail, the HTTP
//! layer, the pages, the bot or the workers (`tests/layering.rs` checks it).

pub mod lightning;
pub mod telegram;
pub mod ton;
