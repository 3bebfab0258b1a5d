//! What every HTTP-facing adapter shares: the error shape ([`error::ApiError`]), the checked
//! request extractors ([`extract`]) and the OpenAPI schema types ([`spec`]).
//!
//! The Merchant API (`http`), the checkout and Mini App pages (`pages`) and the Telegram webhook
//! (`telegram`) all answer in this shape; none of them reaches into another for it.

pub mod error;
pub mod extract;
pub mod limits;
pub mod spec;
