//! Verifying a Telegram Mini App's `initData` and reading who opened the Mini App.
//!
//! `Telegram.WebApp.initData` is a query string of fields (`user` and the other objects are
//! JSON inside it). The page sends it unchanged to the server, which accepts it only if
//! Telegram signed it and it is fresh. Two checks exist; both are from
//! <https://core.telegram.org/bots/webapps> (read through a mirror of that page in the public
//! code index, sections "Validating data received via the Mini App", "Validating data for
//! Third-Party Use" and the `WebAppInitData` table):
//!
//! * **Bot token (HMAC)**, [`verify_with_bot_token`]: `secret_key = HMAC-SHA-256(key =
//!   "WebAppData", message = bot_token)`; the data-check-string is "a chain of all received
//!   fields, sorted alphabetically, in the format `key=<value>`" joined by `\n`, leaving out
//!   `hash` itself; `hash` must equal `hex(HMAC-SHA-256(key = secret_key, message =
//!   data_check_string))`. **`signature` is one of the fields hashed**: the page defines `hash`
//!   as "a hash of all passed parameters" and `signature` as "a signature of all passed
//!   parameters (except *hash*)", so the hash covers the signature and only `hash` is left
//!   out. `@telegram-apps/init-data-node` 2.0.10 does the same (its `validate` skips only
//!   `hash`; its `sign` always adds a `signature` field, empty when none is given), and the
//!   real Telegram-issued sample in `tests` (with a signature) only verifies this way.
//! * **Third party (Ed25519)**, [`verify_third_party`]: `signature` is the base64url (no
//!   padding) Ed25519 signature of `"{bot_id}:WebAppData\n"` followed by the sorted `key=value`
//!   lines of all fields except `hash` and `signature`, under Telegram's published key:
//!   test environment `40055058a4ee38156a06562e52eece92a771bcd8346a8c4615cb7376eddf72ec`,
//!   production `e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d` (hex, as
//!   published on that page).
//!
//! Then `auth_date` must be within the [`Freshness`] window, and the known fields are parsed.
//! Unknown fields count for the check (they are signed too) but are ignored in the result.
//!
//! This module must never return data it did not verify: there is deliberately no "parse
//! without checking" function, and [`InitData`] has no public constructor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

use crate::fields::{self, Fields, FieldsError};
use crate::freshness::{Freshness, Stale};
use crate::ids::{BotId, TelegramChatId, TelegramUserId};
use crate::token::BotToken;

/// Why `initData` was refused. Every message says what is wrong and what to do; none repeats
/// the bot token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InitDataError {
    /// There is no `hash` field.
    #[error(
        "the init data has no `hash` field: send `Telegram.WebApp.initData` exactly as the Mini \
         App received it (not `initDataUnsafe`, not re-encoded)"
    )]
    MissingHash,
    /// The `hash` does not match the fields under this bot's token.
    #[error(
        "the init data's hash does not match: it was changed after Telegram signed it, or it \
         belongs to another bot (check that this is the bot whose Mini App sent it)"
    )]
    BadHash,
    /// The Ed25519 `signature` does not verify under Telegram's key for this bot id.
    #[error(
        "the init data's Ed25519 signature does not verify: it was changed after Telegram \
         signed it, or it was issued for another bot id, or by the other Telegram environment \
         (test vs production)"
    )]
    BadSignature,
    /// `auth_date` is older than the freshness window allows.
    #[error(
        "the init data is {age_s} s old, more than the {max_age_s} s accepted: reopen the Mini \
         App to get fresh init data"
    )]
    Stale {
        /// How old the data is, in seconds.
        age_s: u64,
        /// The configured maximum, in seconds.
        max_age_s: u64,
    },
    /// `auth_date` is further in the future than the allowed clock skew.
    #[error(
        "the init data's auth_date is {ahead_s} s ahead of the server's clock, more than the \
         {max_future_skew_s} s accepted: check the server's clock (NTP)"
    )]
    FromTheFuture {
        /// How far ahead `auth_date` is, in seconds.
        ahead_s: u64,
        /// The configured maximum skew, in seconds.
        max_future_skew_s: u64,
    },
    /// A field that is needed is absent (`auth_date`, `signature` for third-party checks, or
    /// `user` when asked for through [`InitData::require_user`]).
    #[error(
        "the init data has no `{0}` field, which is required here: open the Mini App from the \
         bot (menu button, direct link or inline button) and send `Telegram.WebApp.initData` \
         exactly as received"
    )]
    MissingField(&'static str),
    /// A field appears more than once.
    #[error(
        "the init data has the field `{0}` more than once: send `Telegram.WebApp.initData` \
         exactly as received, without appending to it"
    )]
    DuplicateField(String),
    /// The input can't be decoded, or a signed field does not have the shape Telegram
    /// documents.
    #[error(
        "the init data is malformed: {0}; send `Telegram.WebApp.initData` exactly as received"
    )]
    Malformed(String),
}

impl From<FieldsError> for InitDataError {
    fn from(error: FieldsError) -> Self {
        match error {
            FieldsError::Malformed(reason) => Self::Malformed(reason),
            FieldsError::Duplicate(key) => Self::DuplicateField(key),
        }
    }
}

impl From<Stale> for InitDataError {
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

/// Which Telegram environment issued the data: the test environment (test accounts, test
/// bots, `api.telegram.org/bot<token>/test/…`) signs with its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TelegramEnvironment {
    /// The real Telegram.
    Production,
    /// Telegram's test environment.
    Test,
}

/// An Ed25519 public key that third-party `initData` signatures are checked against.
/// Production code uses [`TelegramPublicKey::for_environment`]; tests inject their own key with
/// [`TelegramPublicKey::from_bytes`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TelegramPublicKey([u8; 32]);

impl TelegramPublicKey {
    /// Telegram's production key, as published at
    /// <https://core.telegram.org/bots/webapps#validating-data-for-third-party-use>.
    pub const PRODUCTION: Self = Self(hex_32_const(
        "e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d",
    ));

    /// Telegram's test-environment key, published on the same page.
    pub const TEST_ENVIRONMENT: Self = Self(hex_32_const(
        "40055058a4ee38156a06562e52eece92a771bcd8346a8c4615cb7376eddf72ec",
    ));

    /// The published key of `environment`.
    pub fn for_environment(environment: TelegramEnvironment) -> Self {
        match environment {
            TelegramEnvironment::Production => Self::PRODUCTION,
            TelegramEnvironment::Test => Self::TEST_ENVIRONMENT,
        }
    }

    /// A key from its 32 bytes, if they encode a point of the curve.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, InvalidPublicKey> {
        VerifyingKey::from_bytes(&bytes)
            .map(|_| Self(bytes))
            .map_err(|_| InvalidPublicKey)
    }

    /// The key's 32 bytes.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

/// The bytes given are not an Ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an Ed25519 public key: give the 32 bytes of a curve point (Telegram publishes its keys \
     as 64 hex digits)"
)]
pub struct InvalidPublicKey;

/// Verified `initData`: Telegram issued it for this bot, within the freshness window.
/// Obtained only from [`verify_with_bot_token`] or [`verify_third_party`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitData {
    auth_date_unix_s: u64,
    query_id: Option<String>,
    user: Option<WebAppUser>,
    receiver: Option<WebAppUser>,
    chat: Option<WebAppChat>,
    chat_type: Option<ChatType>,
    chat_instance: Option<String>,
    start_param: Option<String>,
    can_send_after_s: Option<u64>,
}

impl InitData {
    /// When the Mini App was opened (`auth_date`), in Unix seconds.
    pub fn auth_date_unix_s(&self) -> u64 {
        self.auth_date_unix_s
    }

    /// `query_id`: identifies the Mini App session for `answerWebAppQuery`. Not a nonce.
    pub fn query_id(&self) -> Option<&str> {
        self.query_id.as_deref()
    }

    /// The user who opened the Mini App, when Telegram sent one.
    pub fn user(&self) -> Option<&WebAppUser> {
        self.user.as_ref()
    }

    /// The user who opened the Mini App, or [`InitDataError::MissingField`]`("user")`: for
    /// callers (like a checkout session) that need to know who pays.
    pub fn require_user(&self) -> Result<&WebAppUser, InitDataError> {
        self.user
            .as_ref()
            .ok_or(InitDataError::MissingField("user"))
    }

    /// The chat partner, for Mini Apps opened from the attachment menu of a private chat.
    pub fn receiver(&self) -> Option<&WebAppUser> {
        self.receiver.as_ref()
    }

    /// The group, supergroup or channel, for Mini Apps opened from its attachment menu.
    pub fn chat(&self) -> Option<&WebAppChat> {
        self.chat.as_ref()
    }

    /// The type of chat the Mini App was opened from (direct links only).
    pub fn chat_type(&self) -> Option<&ChatType> {
        self.chat_type.as_ref()
    }

    /// A global identifier of the chat the Mini App was opened from (direct links only).
    pub fn chat_instance(&self) -> Option<&str> {
        self.chat_instance.as_deref()
    }

    /// The `startapp`/`startattach` parameter of the link that opened the Mini App.
    pub fn start_param(&self) -> Option<&str> {
        self.start_param.as_deref()
    }

    /// `can_send_after`: seconds after which a message can be sent via `answerWebAppQuery`.
    pub fn can_send_after_s(&self) -> Option<u64> {
        self.can_send_after_s
    }
}

/// A Telegram user as the Mini App sees them (`WebAppUser`). Fields Telegram adds later are
/// ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebAppUser {
    /// The user's (or bot's) id.
    pub id: TelegramUserId,
    /// Whether this is a bot (only ever set in `receiver`).
    pub is_bot: bool,
    /// First name; never empty in practice, but not checked.
    pub first_name: String,
    /// Last name.
    pub last_name: Option<String>,
    /// Username, without `@`.
    pub username: Option<String>,
    /// IETF language tag of the user's Telegram app (`user` only), e.g. `fa` or `pt-br`.
    pub language_code: Option<String>,
    /// Whether the user has Telegram Premium.
    pub is_premium: bool,
    /// Whether the user added the bot to the attachment menu.
    pub added_to_attachment_menu: bool,
    /// Whether the user allowed the bot to message them.
    pub allows_write_to_pm: bool,
    /// URL of the profile photo (`.jpeg` or `.svg`).
    pub photo_url: Option<String>,
}

/// A chat the Mini App was opened in (`WebAppChat`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebAppChat {
    /// The chat's id (negative for groups and channels).
    pub id: TelegramChatId,
    /// `group`, `supergroup` or `channel`.
    pub chat_type: ChatType,
    /// The chat's title.
    pub title: String,
    /// The chat's username, without `@`.
    pub username: Option<String>,
    /// URL of the chat's photo.
    pub photo_url: Option<String>,
}

/// A chat type as Telegram names it. Values added later arrive as [`ChatType::Other`] rather
/// than failing verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatType {
    /// A private chat with the user who opened the link.
    Sender,
    /// A private chat.
    Private,
    /// A basic group.
    Group,
    /// A supergroup.
    Supergroup,
    /// A channel.
    Channel,
    /// A type this version does not know.
    Other(String),
}

impl ChatType {
    fn parse(text: &str) -> Self {
        match text {
            "sender" => Self::Sender,
            "private" => Self::Private,
            "group" => Self::Group,
            "supergroup" => Self::Supergroup,
            "channel" => Self::Channel,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The name Telegram uses.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sender => "sender",
            Self::Private => "private",
            Self::Group => "group",
            Self::Supergroup => "supergroup",
            Self::Channel => "channel",
            Self::Other(other) => other,
        }
    }
}

/// Verifies `init_data` (the raw `Telegram.WebApp.initData` string) with the bot's token: the
/// `hash` check, then freshness against `now_unix_s`, then parsing.
pub fn verify_with_bot_token(
    init_data: &str,
    bot_token: &BotToken,
    freshness: Freshness,
    now_unix_s: u64,
) -> Result<InitData, InitDataError> {
    let fields = Fields::parse_query(init_data)?;
    let received = fields.get("hash").ok_or(InitDataError::MissingHash)?;
    let expected = fields::hmac_sha256(b"WebAppData", bot_token.expose_secret().as_bytes())
        .and_then(|secret_key| {
            fields::hmac_sha256(&secret_key, fields.data_check_string(&["hash"]).as_bytes())
        })
        .ok_or(InitDataError::BadHash)?;
    match fields::hash_matches(&expected, received) {
        Some(true) => {}
        Some(false) => return Err(InitDataError::BadHash),
        None => {
            return Err(InitDataError::Malformed(
                "`hash` is not 64 hex digits".into(),
            ))
        }
    }
    read_verified(&fields, freshness, now_unix_s)
}

/// Verifies `init_data` without the bot token, by its Ed25519 `signature` for `bot_id` under
/// `public_key` (normally [`TelegramPublicKey::for_environment`]), then freshness, then
/// parsing. The `hash` field is neither needed nor checked.
pub fn verify_third_party(
    init_data: &str,
    bot_id: BotId,
    public_key: &TelegramPublicKey,
    freshness: Freshness,
    now_unix_s: u64,
) -> Result<InitData, InitDataError> {
    let fields = Fields::parse_query(init_data)?;
    let encoded = fields
        .get("signature")
        .ok_or(InitDataError::MissingField("signature"))?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            InitDataError::Malformed(
                "`signature` is not 64 bytes in base64url without padding".into(),
            )
        })?;
    let message = format!(
        "{bot_id}:WebAppData\n{}",
        fields.data_check_string(&["hash", "signature"])
    );
    // The published keys are valid points (checked by a test), and `from_bytes` admits only
    // valid points, so this fails only if that test fails; refusing is the safe answer then.
    let key = VerifyingKey::from_bytes(&public_key.0).map_err(|_| InitDataError::BadSignature)?;
    // `verify_strict` also refuses small-order keys and non-canonical signatures, which no
    // honest signer produces.
    key.verify_strict(message.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| InitDataError::BadSignature)?;
    read_verified(&fields, freshness, now_unix_s)
}

/// Freshness, then the typed fields, of fields whose signature has been checked.
fn read_verified(
    fields: &Fields,
    freshness: Freshness,
    now_unix_s: u64,
) -> Result<InitData, InitDataError> {
    let auth_date = fields
        .get("auth_date")
        .ok_or(InitDataError::MissingField("auth_date"))?;
    let auth_date_unix_s = parse_unsigned(auth_date).ok_or_else(|| {
        InitDataError::Malformed("`auth_date` is not a Unix time in seconds".into())
    })?;
    freshness.check(auth_date_unix_s, now_unix_s)?;

    let can_send_after_s = match fields.get("can_send_after") {
        None => None,
        Some(text) => Some(parse_unsigned(text).ok_or_else(|| {
            InitDataError::Malformed("`can_send_after` is not a number of seconds".into())
        })?),
    };
    Ok(InitData {
        auth_date_unix_s,
        query_id: fields.get("query_id").map(str::to_owned),
        user: fields
            .get("user")
            .map(|json| parse_user("user", json))
            .transpose()?,
        receiver: fields
            .get("receiver")
            .map(|json| parse_user("receiver", json))
            .transpose()?,
        chat: fields.get("chat").map(parse_chat).transpose()?,
        chat_type: fields.get("chat_type").map(ChatType::parse),
        chat_instance: fields.get("chat_instance").map(str::to_owned),
        start_param: fields.get("start_param").map(str::to_owned),
        can_send_after_s,
    })
}

/// A decimal number of at most 19 digits (no sign, no spaces), so it fits a `u64`.
pub(crate) fn parse_unsigned(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[derive(Deserialize)]
struct RawUser {
    id: u64,
    #[serde(default)]
    is_bot: bool,
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    language_code: Option<String>,
    #[serde(default)]
    is_premium: bool,
    #[serde(default)]
    added_to_attachment_menu: bool,
    #[serde(default)]
    allows_write_to_pm: bool,
    photo_url: Option<String>,
}

#[derive(Deserialize)]
struct RawChat {
    id: i64,
    #[serde(rename = "type")]
    chat_type: String,
    title: String,
    username: Option<String>,
    photo_url: Option<String>,
}

fn parse_user(field: &'static str, json: &str) -> Result<WebAppUser, InitDataError> {
    let raw: RawUser = serde_json::from_str(json).map_err(|error| {
        InitDataError::Malformed(format!(
            "`{field}` is not a WebAppUser JSON object ({error})"
        ))
    })?;
    let id = TelegramUserId::new(raw.id).ok_or_else(|| {
        InitDataError::Malformed(format!("`{field}.id` is not a valid Telegram user id"))
    })?;
    Ok(WebAppUser {
        id,
        is_bot: raw.is_bot,
        first_name: raw.first_name,
        last_name: raw.last_name,
        username: raw.username,
        language_code: raw.language_code,
        is_premium: raw.is_premium,
        added_to_attachment_menu: raw.added_to_attachment_menu,
        allows_write_to_pm: raw.allows_write_to_pm,
        photo_url: raw.photo_url,
    })
}

fn parse_chat(json: &str) -> Result<WebAppChat, InitDataError> {
    let raw: RawChat = serde_json::from_str(json).map_err(|error| {
        InitDataError::Malformed(format!("`chat` is not a WebAppChat JSON object ({error})"))
    })?;
    let id = TelegramChatId::new(raw.id).ok_or_else(|| {
        InitDataError::Malformed("`chat.id` is not a valid Telegram chat id".into())
    })?;
    Ok(WebAppChat {
        id,
        chat_type: ChatType::parse(&raw.chat_type),
        title: raw.title,
        username: raw.username,
        photo_url: raw.photo_url,
    })
}

/// Decodes 64 lowercase hex digits at compile time. Used only in `const` items, so a typo is a
/// build error, never a runtime panic.
const fn hex_32_const(text: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("a published key must be lowercase hex"),
        }
    }
    let bytes = text.as_bytes();
    assert!(bytes.len() == 64, "a published key must be 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(bytes[2 * i]) << 4 | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
