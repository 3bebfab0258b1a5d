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
    fn names_round_trip() {
        for rail in Rail::ALL {
            assert_eq!(rail.as_str().parse::<Rail>(), Ok(rail));
        }
        assert!("Lightning".parse::<Rail>().is_err());
    }
}
