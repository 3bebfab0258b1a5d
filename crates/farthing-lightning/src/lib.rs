//! farthing's Lightning rail (SPEC RL3).
//!
//! - [`bolt11`]: parsing and checking BOLT11 invoices (amount, payment hash, expiry, network)
//!   with the maintained `lightning-invoice` crate.
//! - [`lnurl`]: LNURL encoding (LUD-01), LNURL-pay metadata and its description hash (LUD-06,
//!   LUD-16), LNURL-withdraw answers (LUD-03), LNURL-auth challenges and signatures (LUD-04).
//! - [`backend`]: the one trait every Lightning node backend implements; [`node`]: [`Backend`],
//!   the enum the server holds, over [`lnbits`], [`lnd`] (LND REST) and [`cln`] (Core Lightning REST).

pub mod backend;
pub mod bolt11;
pub mod cln;
pub mod lnbits;
pub mod lnd;
pub mod lnurl;
pub mod node;

pub use backend::{
    BackendError, BackendHealth, CreateInvoice, CreatedInvoice, InvoiceState, LightningBackend,
    PaymentHash, PaymentOutcome,
};
pub use node::Backend;
