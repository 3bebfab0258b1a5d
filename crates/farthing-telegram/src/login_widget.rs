//! Verifying Telegram Login Widget data, for signing in to the dashboard (SPEC T5).
//!
//! The widget hands the page (or the `data-auth-url` redirect) the fields `id`, `first_name`,
//! `last_name`, `username`, `photo_url`, `auth_date` and `hash`. The rule, from
//! <https://core.telegram.org/widgets/login> ("Checking authorization"): the data-check-string
//! is "a concatenation of all received fields, sorted in alphabetical order, in the format
//! `key=<value>`" joined by `\n`, leaving out `hash`; `secret_key = SHA-256(bot_token)`;
//! `hash` must equal `hex(HMAC-SHA-256(key = secret_key, message = data_check_string))`. Then
//! `auth_date` must be fresh.
//!
//! The key derivation differs from the Mini App's (`WebAppData`), so data signed for one can
//! never pass as the other. This module must never return data it did not verify, and it does
//! not know about sessions or merchants: the server decides what a verified user may do.

use sha2::{Digest, Sha256};

use crate::fields::{self, Fields, FieldsError};
use crate::freshness::{Freshness, Stale};
use crate::ids::TelegramUserId;
use crate::init_data::parse_unsigned;
use crate::token::BotToken;

/// Why Login Widget data was refused. Every message says what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginWidgetError {
    /// There is no `hash` field.
    #[error(
        "the Telegram login data has no `hash` field: pass every field the Login Widget returned, \
         unchanged"
    )]
    MissingHash,
    /// The `hash` does not match the fields under this bot's token.
    #[error(
        "the Telegram login data's hash does not match: it was changed after Telegram signed it, \
         or the widget belongs to another bot (check the bot configured for dashboard login)"
    )]
    BadHash,
    /// `auth_date` is older than the freshness window allows.
    #[error(
        "the Telegram login is {age_s} s old, more than the {max_age_s} s accepted: log in with \
         Telegram again"
    )]
    Stale {
        /// How old the login is, in seconds.
        age_s: u64,
        /// The configured maximum, in seconds.
        max_age_s: u64,
    },
    /// `auth_date` is further in the future than the allowed clock skew.
    #[error(
        "the Telegram login's auth_date is {ahead_s} s ahead of the server's clock, more than the \
         {max_future_skew_s} s accepted: check the server's clock (NTP)"
    )]
    FromTheFuture {
        /// How far ahead `auth_date` is, in seconds.
        ahead_s: u64,
        /// The configured maximum skew, in seconds.
        max_future_skew_s: u64,
    },
    /// A required field (`id`, `first_name` or `auth_date`) is absent.
    #[error(
        "the Telegram login data has no `{0}` field: pass every field the Login Widget \
         returned, unchanged"
    )]
    MissingField(&'static str),
    /// A field appears more than once.
    #[error(
        "the Telegram login data has the field `{0}` more than once: pass the Login Widget's \
         fields once each, without the page's own query parameters"
    )]
    DuplicateField(String),
    /// The input can't be decoded, or a signed field does not have the documented shape.
    #[error(
        "the Telegram login data is malformed: {0}; pass every field the Login Widget returned, \
         unchanged"
    )]
    Malformed(String),
}

impl From<FieldsError> for LoginWidgetError {
    fn from(error: FieldsError) -> Self {
        match error {
            FieldsError::Malformed(reason) => Self::Malformed(reason),
            FieldsError::Duplicate(key) => Self::DuplicateField(key),
        }
    }
}

impl From<Stale> for LoginWidgetError {
    fn from(stale: Stale) -> Self {
        match stale {
            Stale::TooOld { age_s, max_age_s } => Self::Stale { age_s, max_age_s },
            Stale::FromTheFuture {
                ahead_s,
                max_future_skew_s,
            } => Self::FromTheFuture {
                ahead_s,
                max_future_skew_s,
            },
        }
    }
}

/// A verified Telegram login. Obtained only from [`verify`] or [`verify_fields`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginWidgetAuth {
    id: TelegramUserId,
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    photo_url: Option<String>,
    auth_date_unix_s: u64,
}

impl LoginWidgetAuth {
    /// The user who logged in.
    pub fn id(&self) -> TelegramUserId {
        self.id
    }

    /// First name.
    pub fn first_name(&self) -> &str {
        &self.first_name
    }

    /// Last name, if the user has one.
    pub fn last_name(&self) -> Option<&str> {
        self.last_name.as_deref()
    }

    /// Username without `@`, if the user has one.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Profile photo URL, if the user shares one.
    pub fn photo_url(&self) -> Option<&str> {
        self.photo_url.as_deref()
    }

    /// When the user logged in, in Unix seconds.
    pub fn auth_date_unix_s(&self) -> u64 {
        self.auth_date_unix_s
    }
}

/// Verifies Login Widget data received as a query string (`id=…&first_name=…&hash=…`, as the
/// widget's `data-auth-url` redirect sends it). Pass only the widget's fields: a parameter of
/// the page's own URL would be hashed too and make the check fail.
pub fn verify(
    query: &str,
    bot_token: &BotToken,
    freshness: Freshness,
    now_unix_s: u64,
) -> Result<LoginWidgetAuth, LoginWidgetError> {
    verify_parsed(
        &Fields::parse_query(query)?,
        bot_token,
        freshness,
        now_unix_s,
    )
}

/// Verifies Login Widget data received as decoded name/value pairs (the JavaScript callback's
/// object, numbers written in decimal as Telegram sends them).
pub fn verify_fields<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    bot_token: &BotToken,
    freshness: Freshness,
    now_unix_s: u64,
) -> Result<LoginWidgetAuth, LoginWidgetError> {
    verify_parsed(
        &Fields::from_pairs(fields)?,
        bot_token,
        freshness,
        now_unix_s,
    )
}

fn verify_parsed(
    fields: &Fields,
    bot_token: &BotToken,
    freshness: Freshness,
    now_unix_s: u64,
) -> Result<LoginWidgetAuth, LoginWidgetError> {
    let received = fields.get("hash").ok_or(LoginWidgetError::MissingHash)?;
    let secret_key: [u8; 32] = Sha256::digest(bot_token.expose_secret().as_bytes()).into();
    let expected = fields::hmac_sha256(&secret_key, fields.data_check_string(&["hash"]).as_bytes())
        .ok_or(LoginWidgetError::BadHash)?;
    match fields::hash_matches(&expected, received) {
        Some(true) => {}
        Some(false) => return Err(LoginWidgetError::BadHash),
        None => {
            return Err(LoginWidgetError::Malformed(
                "`hash` is not 64 hex digits".into(),
            ))
        }
    }

    let auth_date = fields
        .get("auth_date")
        .ok_or(LoginWidgetError::MissingField("auth_date"))?;
    let auth_date_unix_s = parse_unsigned(auth_date).ok_or_else(|| {
        LoginWidgetError::Malformed("`auth_date` is not a Unix time in seconds".into())
    })?;
    freshness.check(auth_date_unix_s, now_unix_s)?;

    let id = fields
        .get("id")
        .ok_or(LoginWidgetError::MissingField("id"))?;
    let id = parse_unsigned(id)
        .and_then(TelegramUserId::new)
        .ok_or_else(|| LoginWidgetError::Malformed("`id` is not a Telegram user id".into()))?;
    let first_name = fields
        .get("first_name")
        .ok_or(LoginWidgetError::MissingField("first_name"))?;
    Ok(LoginWidgetAuth {
        id,
        first_name: first_name.to_owned(),
        last_name: fields.get("last_name").map(str::to_owned),
        username: fields.get("username").map(str::to_owned),
        photo_url: fields.get("photo_url").map(str::to_owned),
        auth_date_unix_s,
    })
}

#[cfg(test)]
mod tests;
