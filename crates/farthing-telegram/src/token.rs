//! The bot token: a secret that can't reach a log by accident.
//!
//! A token is `<bot id>:<secret>` as BotFather issues it. [`BotToken`] is built only by
//! [`BotToken::parse`], never prints its secret (`Debug` shows the bot id only, and there is no
//! `Display`), and hands the secret out only through [`BotToken::expose_secret`], whose name
//! makes every use easy to find.

use std::fmt;

use crate::ids::BotId;

/// The longest secret part accepted. BotFather's secrets are 35 characters; the bound only
/// keeps absurd input out.
const MAX_SECRET_LEN: usize = 128;

/// A Telegram bot token (`123456789:AA…`), checked for shape, with its bot id.
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken {
    text: String,
    bot_id: BotId,
}

/// Why a string is not a bot token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BotTokenError {
    /// The `<bot id>:` part is missing or not a positive number.
    #[error(
        "a bot token starts with the bot's numeric id and a colon (\"123456789:AA…\"): copy the \
         whole token from BotFather"
    )]
    MissingBotId,
    /// The part after the colon is empty, too long or has characters a token never has.
    #[error(
        "the part of the bot token after the colon must be 1 to {MAX_SECRET_LEN} letters, digits, \
         '_' or '-': copy the whole token from BotFather, without spaces or quotes"
    )]
    BadSecret,
}

impl BotToken {
    /// Checks the token's shape: a positive decimal bot id, `:`, then 1 to 128 characters of
    /// `[A-Za-z0-9_-]`. It does not ask Telegram whether the token is live.
    pub fn parse(text: &str) -> Result<Self, BotTokenError> {
        let (id, secret) = text.split_once(':').ok_or(BotTokenError::MissingBotId)?;
        let id_ok = !id.is_empty() && id.len() <= 16 && id.bytes().all(|b| b.is_ascii_digit());
        let bot_id = id_ok
            .then(|| id.parse::<u64>().ok())
            .flatten()
            .and_then(BotId::new)
            .ok_or(BotTokenError::MissingBotId)?;
        let secret_ok = !secret.is_empty()
            && secret.len() <= MAX_SECRET_LEN
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !secret_ok {
            return Err(BotTokenError::BadSecret);
        }
        Ok(Self {
            text: text.to_owned(),
            bot_id,
        })
    }

    /// The bot's id (public: it is the number before the colon).
    pub fn bot_id(&self) -> BotId {
        self.bot_id
    }

    /// The whole token, for the few places that must use it (key derivation, Bot API URLs).
    pub fn expose_secret(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotToken({}:<redacted>)", self.bot_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_botfather_token_and_keeps_its_id() {
        let token = BotToken::parse("7342037359:AAHI25ES9xCOMPokpYoz-p8XVrZUdygo2J4");
        let token = token.expect("a real token's shape");
        assert_eq!(token.bot_id().get(), 7_342_037_359);
        assert_eq!(
            token.expose_secret(),
            "7342037359:AAHI25ES9xCOMPokpYoz-p8XVrZUdygo2J4"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = BotToken::parse("123456:SECRET_part-1").expect("valid");
        let shown = format!("{token:?}");
        assert_eq!(shown, "BotToken(123456:<redacted>)");
        assert!(!shown.contains("SECRET"));
    }

    #[test]
    fn rejects_what_is_not_a_token() {
        for bad in [
            "",
            "abc",
            ":secret",
            "0:secret",
            "12a:secret",
            "-1:secret",
            "+1:x",
        ] {
            assert_eq!(
                BotToken::parse(bad),
                Err(BotTokenError::MissingBotId),
                "{bad:?}"
            );
        }
        let too_long = format!("1:{}", "a".repeat(MAX_SECRET_LEN + 1));
        for bad in [
            "1:",
            "1:has space",
            "1:semi;colon",
            "1:a:b",
            too_long.as_str(),
        ] {
            assert_eq!(
                BotToken::parse(bad),
                Err(BotTokenError::BadSecret),
                "{bad:?}"
            );
        }
    }
}
