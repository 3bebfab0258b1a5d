//! farthing's TON rail, the parts without a database: addresses in every form
//! ([`address`]), the message bodies it writes and reads ([`body`]: comments and TEP-74 jetton
//! messages), the rules that decide which transaction is a payment ([`classify`]), what a
//! payer's wallet is handed ([`pay`]) and the toncenter v3 indexer client ([`toncenter`]).
//!
//! Architecture invariant: nothing here touches the ledger or the store; the server's rail
//! adapter settles what [`classify`] reports through the payments service.

pub mod address;
pub mod body;
pub mod classify;
pub mod pay;
pub mod toncenter;

pub use address::{Address, AddressError, Network, Parsed};
