//! The payment rails farthing knows, as plain names.
//!
//! Only the name lives here; each rail's protocol lives in its own adapter crate and nothing
//! else knows it.

use std::fmt;
use std::str::FromStr;

/// A way money reaches farthing (SPEC section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rail {
    /// Internal transfer from a customer's prepaid balance (RL1).
    Balance,
    /// Telegram Stars (RL2).
    Stars,
    /// Cards and other fiat through Telegram's payment providers (RL2).
    Card,
    /// Bitcoin Lightning (RL3).
    Lightning,
    /// TON and USDT on TON (RL4).
    Ton,
    /// Test-mode simulated payer (RL5).
    Sandbox,
}

impl Rail {
    /// Every rail, in a stable order.
    pub const ALL: [Rail; 6] = [
        Rail::Balance,
        Rail::Stars,
        Rail::Card,
        Rail::Lightning,
        Rail::Ton,
        Rail::Sandbox,
    ];

    /// The wire and storage name, e.g. `"lightning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rail::Balance => "balance",
            Rail::Stars => "stars",
            Rail::Card => "card",
            Rail::Lightning => "lightning",
            Rail::Ton => "ton",
            Rail::Sandbox => "sandbox",
        }
    }
}

/// The most Telegram Stars one payment can carry. The Bot API 10.1 states no separate bound for
/// `sendInvoice`/`createInvoiceLink` in `XTR`; the largest Stars price it documents for any
/// single payment is 100 000 (suggested posts: "price in Telegram Stars must be between 5 and
/// 100000"), so a report above it did not come from Telegram.
pub const MAX_STARS_PAYMENT: u64 = 100_000;

/// The one period a Telegram Stars subscription has: 30 days, in seconds (Bot API,
/// `createInvoiceLink` `subscription_period`).
pub const STARS_SUBSCRIPTION_PERIOD_S: u32 = 2_592_000;

/// The most Telegram Stars one subscription period can cost (Bot API 10.1, `createInvoiceLink`
/// `subscription_period`: "Subscription price must no exceed 10000 Telegram Stars").
pub const MAX_STARS_SUBSCRIPTION: u64 = 10_000;

/// The most satoshis that can exist (21 million BTC): no Lightning payment can carry more.
pub const MAX_BTC_SATS: u64 = 2_100_000_000_000_000;

impl Rail {
    /// The largest amount, in minor units of `currency`, that one payment on this rail can
    /// carry according to the rail's published limits; `None` where the rail publishes none
    /// (farthing's own cap, `MAX_AMOUNT_MINOR`, still applies). Amounts above it are refused
    /// at the edge: at invoice creation, and in reports from the rail (which cannot be real).
    pub fn max_payment_minor(self, currency: crate::Currency) -> Option<u64> {
        match (self, currency.code()) {
            (Rail::Stars, "XTR") => Some(MAX_STARS_PAYMENT),
            (Rail::Lightning, "BTC") => Some(MAX_BTC_SATS),
            _ => None,
        }
    }
}

impl fmt::Display for Rail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rail name that farthing does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown rail {0:?}: use one of balance, stars, card, lightning, ton, sandbox")]
pub struct UnknownRail(pub String);

impl FromStr for Rail {
    type Err = UnknownRail;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Rail::ALL
            .into_iter()
            .find(|rail| rail.as_str() == text)
            .ok_or_else(|| UnknownRail(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_limits() {
        use crate::Currency;
        assert_eq!(Rail::Stars.max_payment_minor(Currency::XTR), Some(100_000));
        assert_eq!(
            Rail::Lightning.max_payment_minor(Currency::BTC),
            Some(21_000_000 * 100_000_000)
        );
        assert_eq!(Rail::Balance.max_payment_minor(Currency::XTR), None);
        assert_eq!(Rail::Card.max_payment_minor(Currency::XTR), None);
    }

    #[test]
    fn names_round_trip() {
        for rail in Rail::ALL {
            assert_eq!(rail.as_str().parse::<Rail>(), Ok(rail));
        }
        assert!("Lightning".parse::<Rail>().is_err());
    }
}
