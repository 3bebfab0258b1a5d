//! Telegram's numeric identifiers, each its own type so a user id can't be passed as a bot id.
//!
//! Telegram promises that user, bot and chat ids have at most 52 significant bits
//! (core.telegram.org/bots/webapps, WebAppUser and WebAppChat). The constructors accept anything
//! a double holds exactly (53 bits), which is what every Telegram client can send, and nothing
//! larger; zero is never an id.

use std::fmt;

/// The largest integer a double-precision float holds exactly (2^53 − 1). Telegram's ids fit in
/// it by design, since its JavaScript clients parse them as doubles.
const MAX_ID: u64 = (1 << 53) - 1;

/// A Telegram bot's id: the number before the `:` of its token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BotId(u64);

impl BotId {
    /// The id, if it is one Telegram can issue (1 ..= 2^53 − 1).
    pub fn new(id: u64) -> Option<Self> {
        (1..=MAX_ID).contains(&id).then_some(Self(id))
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for BotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Telegram user's id (the `id` of `WebAppUser` or of Login Widget data). Only ever positive.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TelegramUserId(u64);

impl TelegramUserId {
    /// The id, if it is one Telegram can issue (1 ..= 2^53 − 1).
    pub fn new(id: u64) -> Option<Self> {
        (1..=MAX_ID).contains(&id).then_some(Self(id))
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TelegramUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Telegram chat's id. Group and channel ids are negative (e.g. `-1001234567890`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TelegramChatId(i64);

impl TelegramChatId {
    /// The id, if it is non-zero and within ±(2^53 − 1).
    pub fn new(id: i64) -> Option<Self> {
        (id != 0 && id.unsigned_abs() <= MAX_ID).then_some(Self(id))
    }

    /// The id as a number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for TelegramChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_zero_and_values_a_double_cannot_hold() {
        assert_eq!(TelegramUserId::new(0), None);
        assert_eq!(TelegramUserId::new(MAX_ID + 1), None);
        assert_eq!(
            TelegramUserId::new(MAX_ID).map(TelegramUserId::get),
            Some(MAX_ID)
        );
        assert_eq!(BotId::new(0), None);
        assert_eq!(
            BotId::new(7_342_037_359).map(BotId::get),
            Some(7_342_037_359)
        );
        assert_eq!(TelegramChatId::new(0), None);
        assert_eq!(TelegramChatId::new(i64::MIN), None);
        assert_eq!(
            TelegramChatId::new(-1_001_234_567_890).map(TelegramChatId::get),
            Some(-1_001_234_567_890)
        );
    }
}
