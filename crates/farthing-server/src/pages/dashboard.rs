//! Dashboard login with Telegram (SPEC T5).
//!
//! A merchant names the Telegram users who may sign in to its dashboard with
//! `PUT /v1/dashboard/owners` (per mode: the list lives in the key's store). A user signs in
//! with the Telegram Login Widget of the merchant's connected bot: `POST
//! /dashboard/login/telegram` takes the widget's fields and the bot's id, checks them with
//! `farthing_telegram::login_widget` under that bot's token (HMAC-SHA256 keyed by SHA-256 of
//! the token; every field received is part of the check), refuses an `auth_date` older than
//! `telegram.login_max_age_s`, and, when the user is an owner of the bot's merchant, answers a
//! session. `GET /dashboard/me` answers who the session is.
//!
//! A session is a token `fds_<payload>.<mac>` signed like the Mini App's ([`crate::signed_token`],
//! the same session key, another prefix, so neither passes for the other): the payload
//! carries the mode, the merchant, the Telegram user id, the expiry and the user's names from
//! the widget, in the clear and nothing secret. Nothing is stored: with a per-process key
//! sessions end when the server restarts, and an owner removed from the list loses its
//! sessions at once, because every use checks the list again.
//!
//! This module never moves money and never answers an API key: a dashboard session is not a
//! Merchant API credential.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::{MerchantId, PublicId};
use farthing_telegram::login_widget::{self, LoginWidgetAuth};
use farthing_telegram::{BotToken, Freshness};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::http::write;
use crate::rails::lightning::OWNER_CHALLENGE;
use crate::signed_token::{u128_at, u64_at, SessionKey};
use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract;
use crate::web::extract::body_bytes;
use crate::web::spec;

/// Most owners a merchant may name (per mode).
pub const MAX_OWNERS: usize = 100;

const TOKEN_PREFIX: &str = "fds_";
const PAYLOAD_VERSION: u8 = 1;
/// Version, mode, merchant, user, expiry; then the user's names as JSON.
const FIXED_LEN: usize = 1 + 1 + 16 + 8 + 8;

/// The Telegram user of a dashboard session, as the Login Widget described them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct DashboardUser {
    /// The Telegram user id.
    pub id: u64,
    /// First name.
    pub first_name: String,
    /// Last name, when the user has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Username without `@`, when the user has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Profile photo URL, when the user shares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo_url: Option<String>,
    /// For a sign-in with a Lightning wallet (LNURL-auth): the wallet's linking key; `id` is
    /// then 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linking_key: Option<String>,
}

impl DashboardUser {
    fn from_login(auth: &LoginWidgetAuth) -> DashboardUser {
        DashboardUser {
            id: auth.id().get(),
            first_name: auth.first_name().to_owned(),
            last_name: auth.last_name().map(str::to_owned),
            username: auth.username().map(str::to_owned),
            photo_url: auth.photo_url().map(str::to_owned),
            linking_key: None,
        }
    }
}

/// What a valid dashboard session says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashboardSession {
    /// Live or test: the store whose owner list admitted the user.
    pub mode: Mode,
    /// The merchant whose dashboard it is.
    pub merchant: MerchantId,
    /// Who signed in.
    pub user: DashboardUser,
    /// When the session ends (Unix seconds).
    pub expires_at_unix_s: u64,
}

impl DashboardSession {
    /// The signed token of this session.
    pub fn token(&self, key: &SessionKey) -> String {
        let names = serde_json::to_vec(&self.user).unwrap_or_default();
        let mut payload = Vec::with_capacity(FIXED_LEN + names.len());
        payload.push(PAYLOAD_VERSION);
        payload.push(u8::from(self.mode.is_live()));
        payload.extend_from_slice(&self.merchant.raw().to_be_bytes());
        payload.extend_from_slice(&self.user.id.to_be_bytes());
        payload.extend_from_slice(&self.expires_at_unix_s.to_be_bytes());
        payload.extend_from_slice(&names);
        key.sign(TOKEN_PREFIX, &payload)
    }

    /// The session of `token`, if `key` signed it and it has not expired at `now_unix_s`.
    pub fn verify(
        token: &str,
        key: &SessionKey,
        now_unix_s: u64,
    ) -> Result<DashboardSession, ApiError> {
        let invalid = || {
            ApiError::unauthorized(
                "invalid_session",
                "the dashboard session is missing, malformed or was not issued by this server \
                 (on SQLite, sessions end when the server restarts): log in with Telegram again at POST \
                 /dashboard/login/telegram",
            )
        };
        let payload = key.open(TOKEN_PREFIX, token).ok_or_else(invalid)?;
        if payload.len() < FIXED_LEN || payload[0] != PAYLOAD_VERSION {
            return Err(invalid());
        }
        let user: DashboardUser =
            serde_json::from_slice(&payload[FIXED_LEN..]).map_err(|_| invalid())?;
        let id = u64_at(&payload, 18);
        if user.id != id {
            return Err(invalid());
        }
        let session = DashboardSession {
            mode: if payload[1] == 1 {
                Mode::Live
            } else {
                Mode::Test
            },
            merchant: MerchantId::from_raw(u128_at(&payload, 2)),
            user,
            expires_at_unix_s: u64_at(&payload, 26),
        };
        if session.expires_at_unix_s <= now_unix_s {
            return Err(ApiError::unauthorized(
                "session_expired",
                "the dashboard session has expired: log in with Telegram again at POST \
                 /dashboard/login/telegram",
            ));
        }
        Ok(session)
    }
}

/// `PUT /v1/dashboard/owners`: the request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDashboardOwners {
    /// The Telegram user ids that may sign in to the dashboard with the Login Widget (at most
    /// 100; replaces the list; `[]` lets nobody in).
    #[schema(value_type = Vec<u64>, example = json!([777001]), max_items = 100)]
    pub telegram_user_ids: Vec<Value>,
    /// The LNURL-auth linking keys (compressed secp256k1 public keys, hex) whose wallets may
    /// sign in with `POST /dashboard/login/lnurl` (at most 100; replaces the list when given).
    /// It keeps or removes keys; a key is added only by its wallet signing an owner challenge
    /// (`POST /v1/dashboard/owners/lnurl`), its proof of possession.
    #[schema(max_items = 100)]
    pub lnurl_linking_keys: Option<Vec<String>>,
}

/// A linking key as LUD-04 wallets send it: 33 bytes compressed (`02`/`03` + 32), hex.
fn linking_key(text: &str) -> Option<String> {
    let lower = text.trim().to_ascii_lowercase();
    (lower.len() == 66
        && (lower.starts_with("02") || lower.starts_with("03"))
        && lower.chars().all(|c| c.is_ascii_hexdigit()))
    .then_some(lower)
}

/// `POST /dashboard/login/telegram`: the request, documented field by field. The server reads
/// it as an object and checks every field but `bot_id` (so a field Telegram adds later is part
/// of the check too); numbers and strings are both accepted, as the widget's callback and its
/// redirect give them.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DashboardLogin {
    /// The bot whose Login Widget the page shows (the number before `:` in its token): a bot
    /// connected with `PUT /v1/rails/stars`.
    #[schema(example = 123456789)]
    pub bot_id: u64,
    /// The Telegram user id.
    #[schema(example = 777001)]
    pub id: u64,
    /// First name.
    pub first_name: String,
    /// Last name, when Telegram sent it.
    pub last_name: Option<String>,
    /// Username, when Telegram sent it.
    pub username: Option<String>,
    /// Profile photo URL, when Telegram sent it.
    pub photo_url: Option<String>,
    /// When the user logged in (Unix seconds).
    pub auth_date: u64,
    /// The widget's hash: hex HMAC-SHA256 of the other fields under SHA-256 of the bot token.
    pub hash: String,
}

/// Set who may sign in to the dashboard
///
/// Replaces the Telegram users who may sign in to this merchant's dashboard (in the key's
/// mode) with the Login Widget (`POST /dashboard/login/telegram`). A user removed from the
/// list loses any session at its next use.
#[utoipa::path(
    put,
    path = "/v1/dashboard/owners",
    tag = "dashboard",
    operation_id = "set_dashboard_owners",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = SetDashboardOwners, content_type = "application/json"),
    responses(
        (status = 200, description = "The owners now stored for this mode.", body = spec::DashboardOwners),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), or an id that is not a Telegram user id, or more than 100 (`invalid_telegram_user_ids`), or a linking key that is not an owner yet (`linking_key_unproven`: its wallet adds it by signing `POST /v1/dashboard/owners/lnurl`).", body = spec::Error),
        (status = 409, description = "A linking key is already a dashboard owner of another merchant (`linking_key_taken`): a wallet signs in to one merchant.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn set_owners(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("dashboard:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: SetDashboardOwners = extract::json_body(&headers, &body)?;
    if request.telegram_user_ids.len() > MAX_OWNERS {
        return Err(ApiError::invalid(
            "invalid_telegram_user_ids",
            format!("at most {MAX_OWNERS} dashboard owners"),
        )
        .param("telegram_user_ids"));
    }
    let mut users = Vec::with_capacity(request.telegram_user_ids.len());
    for (i, value) in request.telegram_user_ids.iter().enumerate() {
        let user = value
            .as_u64()
            .filter(|id| *id > 0 && i64::try_from(*id).is_ok())
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_telegram_user_ids",
                    "each telegram_user_ids entry must be a Telegram user id (a positive integer)",
                )
                .param(format!("telegram_user_ids[{i}]"))
            })?;
        if !users.contains(&user) {
            users.push(user);
        }
    }
    users.sort_unstable();
    let keys = match &request.lnurl_linking_keys {
        None => None,
        Some(list) => {
            if list.len() > MAX_OWNERS {
                return Err(ApiError::invalid(
                    "invalid_lnurl_linking_keys",
                    format!("at most {MAX_OWNERS} linking keys"),
                )
                .param("lnurl_linking_keys"));
            }
            let mut keys = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let key = linking_key(text).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_lnurl_linking_keys",
                        "each lnurl_linking_keys entry must be a compressed secp256k1 public key: 66 hex characters starting with 02 or 03",
                    )
                    .param(format!("lnurl_linking_keys[{i}]"))
                })?;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys.sort_unstable();
            Some(keys)
        }
    };
    let (merchant, mode) = (principal.merchant, principal.mode);
    let now = state.now_ns();
    write(
        &state,
        &principal,
        &headers,
        "PUT /v1/dashboard/owners",
        &body,
        move |tx| {
            tx.set_dashboard_owners(merchant, &users, now)?;
            if let Some(keys) = &keys {
                // A linking key signs in to one merchant only: were it listed by two, the
                // wallet's login would go to one of them, chosen by row order (another
                // merchant could take the owner's sign-in).
                let proven = tx.dashboard_lnurl_owners_in_job(merchant)?;
                for (i, key) in keys.iter().enumerate() {
                    // A key is added only by its wallet, signing a challenge of this merchant
                    // (proof of possession): this list can keep and remove keys, not add one.
                    if !proven.contains(key) {
                        return Err(ApiError::invalid(
                            "linking_key_unproven",
                            format!("the linking key {key} has not proven itself: make a challenge with POST /v1/dashboard/owners/lnurl and let the owner's wallet sign it (that adds the key)"),
                        )
                        .param(format!("lnurl_linking_keys[{i}]")));
                    }
                    if tx.dashboard_lnurl_key_taken(merchant, key)? {
                        return Err(ApiError::conflict(
                            "linking_key_taken",
                            format!("the linking key {key} is a dashboard owner of another merchant; a wallet signs in to one merchant"),
                        )
                        .param(format!("lnurl_linking_keys[{i}]")));
                    }
                }
                tx.set_dashboard_lnurl_owners(merchant, keys, now)?;
            }
            let keys = match keys {
                Some(keys) => keys,
                None => tx.dashboard_lnurl_owners_in_job(merchant)?,
            };
            Ok((
                StatusCode::OK,
                json!({
                    "object": "dashboard_owners",
                    "livemode": mode.is_live(),
                    "telegram_user_ids": users,
                    "lnurl_linking_keys": keys,
                }),
            ))
        },
    )
    .await
}

/// How long an owner's wallet has to sign an owner challenge, in seconds.
pub const OWNER_CHALLENGE_EXPIRES_S: u64 = 600;

fn render_owner_link(
    state: &AppState,
    mode: Mode,
    secret: &farthing_store::LnurlSecret,
    now_s: u64,
) -> Value {
    let status = match (&secret.result, secret.used_at_ns) {
        (Some(_), Some(_)) => "linked",
        _ if now_s >= secret.expires_at_ns / 1_000_000_000 => "expired",
        _ => "pending",
    };
    let mut answer = render_lnurl_login(state, mode, secret, status);
    answer["object"] = json!("dashboard_owner_link");
    answer["linking_key"] = json!(secret.result.clone().filter(|_| status == "linked"));
    answer
}

/// Add a dashboard owner by its wallet (LNURL-auth, proof of possession)
///
/// Makes a single-use LNURL-auth challenge of this merchant (ten minutes): the owner's wallet
/// signs it (show `lnurl` as a QR code), which adds the wallet's linking key to the merchant's
/// dashboard owners in this mode — unless it is an owner of another merchant (the wallet is
/// told so). A key can be added no other way: `PUT /v1/dashboard/owners` keeps or removes.
#[utoipa::path(
    post,
    path = "/v1/dashboard/owners/lnurl",
    tag = "dashboard",
    operation_id = "create_dashboard_owner_link",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    responses(
        (status = 201, description = "The challenge (`status` `pending`).", body = Value, example = json!({"object": "dashboard_owner_link", "id": "5f0c…", "livemode": false, "status": "pending", "url": "https://pay.example/lnurl/test/auth?tag=login&k1=5f0c…&action=login", "lnurl": "LNURL1…", "expires_at": 1796293900, "linking_key": null})),
        (status = 400, description = "A bad Idempotency-Key (`invalid_idempotency_key`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn create_owner_link(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require("dashboard:write")?;
    let mode = principal.mode;
    let mut secret = crate::rails::lightning::new_auth_secret(
        state.now_ns(),
        principal.merchant,
        "login",
        OWNER_CHALLENGE_EXPIRES_S,
    )?;
    secret.description = OWNER_CHALLENGE.to_owned();
    let answer = render_owner_link(&state, mode, &secret, state.app().clock().now_s());
    crate::http::write(
        &state,
        &principal,
        &headers,
        "POST /v1/dashboard/owners/lnurl",
        b"",
        move |tx| {
            tx.insert_lnurl_secret(&secret)?;
            Ok((StatusCode::CREATED, answer))
        },
    )
    .await
}

/// See an owner challenge: `pending`, `linked` (with the key it added) or `expired`.
#[utoipa::path(
    get,
    path = "/v1/dashboard/owners/lnurl/{id}",
    tag = "dashboard",
    operation_id = "retrieve_dashboard_owner_link",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The challenge's id (its k1, hex).")),
    responses(
        (status = 200, description = "The challenge and, once signed, the `linking_key` it added.", body = Value),
        (status = 404, description = "No such challenge of this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve_owner_link(
    State(state): State<AppState>,
    principal: Principal,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    principal.require("dashboard:write")?;
    let missing = || ApiError::not_found("dashboard_owner_link", &id);
    let k1 = crate::rails::lightning::k1_from_hex(&id).ok_or_else(missing)?;
    let merchant = principal.merchant;
    let secret = state
        .store(principal.mode)
        .read(move |reader| reader.lnurl_secret(&k1))?
        .filter(|s| s.kind == "auth" && s.description == OWNER_CHALLENGE && s.merchant == merchant)
        .ok_or_else(missing)?;
    let answer = render_owner_link(&state, principal.mode, &secret, state.app().clock().now_s());
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response())
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::unauthorized("invalid_telegram_login", message)
}

/// The widget's fields as name/value text, as Telegram signed them: strings as they are,
/// integers in decimal; `null` means absent.
fn widget_fields(body: Map<String, Value>) -> Result<(u64, Vec<(String, String)>), ApiError> {
    let mut bot_id = None;
    let mut fields = Vec::with_capacity(body.len());
    for (name, value) in body {
        if name == "bot_id" {
            bot_id = Some(value.as_u64().ok_or_else(|| {
                ApiError::invalid("invalid_body", "bot_id must be a Telegram bot id")
                    .param("bot_id")
            })?);
            continue;
        }
        let text = match value {
            Value::Null => continue,
            Value::String(text) => text,
            Value::Number(number) if number.is_u64() || number.is_i64() => number.to_string(),
            _ => {
                return Err(ApiError::invalid(
                    "invalid_body",
                    format!("{name} must be a string or an integer, as the Login Widget gives it"),
                )
                .param(name))
            }
        };
        fields.push((name, text));
    }
    let bot_id = bot_id
        .ok_or_else(|| ApiError::invalid("invalid_body", "bot_id is required").param("bot_id"))?;
    Ok((bot_id, fields))
}

/// Log in to the dashboard with Telegram
///
/// Checks Telegram Login Widget data with the token of the bot named by `bot_id` (SHA-256 of
/// the token as the HMAC key), refuses it when older than `telegram.login_max_age_s` (default
/// one day), and answers a dashboard session when the user is one of the owners of the bot's
/// merchant (`PUT /v1/dashboard/owners`). The session lasts `telegram.dashboard_session_ttl_s`
/// (default one hour) and, with a per-process session key (SQLite), ends when the server
/// restarts.
#[utoipa::path(
    post,
    path = "/dashboard/login/telegram",
    tag = "dashboard",
    operation_id = "dashboard_login_telegram",
    request_body(content = DashboardLogin, content_type = "application/json", description = "`bot_id` and every field the Login Widget returned, unchanged."),
    responses(
        (status = 200, description = "The session, the merchant and the Telegram user.", body = spec::DashboardSessionObject),
        (status = 400, description = "The body is not a JSON object with a `bot_id` and string or integer fields (`invalid_body`).", body = spec::Error),
        (status = 401, description = "The login is refused: its hash does not verify under the bot's token, it is older than the window, a field is missing, or no such bot is connected (`invalid_telegram_login`); or the user is not a dashboard owner of the bot's merchant (`not_a_dashboard_owner`). The message says which.", body = spec::Error),
        spec::TooLarge,
        spec::Internal,
        spec::Unavailable,
    ),
)]
pub async fn login_telegram(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: Map<String, Value> = extract::json_body(&headers, &body)?;
    let (bot_id, fields) = widget_fields(request)?;
    let settings = &state.config().telegram;
    let freshness = Freshness {
        max_age_s: settings.login_max_age_s,
        ..Freshness::DEFAULT
    };
    let mut candidates = Vec::new();
    for (mode, store) in state.stores() {
        for bot in store.read(move |reader| reader.telegram_bots_by_id(bot_id))? {
            candidates.push((mode, bot));
        }
    }
    if candidates.is_empty() {
        return Err(refused(format!(
            "no bot {bot_id} is connected to farthing (wrong bot id): the Login Widget must be \
             the one of the merchant's connected bot"
        )));
    }
    let now = state.app().clock().now_s();
    let mut first_error = None;
    let mut verified_not_owner = false;
    for (mode, bot) in candidates {
        let token = BotToken::parse(&bot.token).map_err(|_| {
            ApiError::internal(format!(
                "the stored token of bot {} is unreadable",
                bot.bot_id
            ))
        })?;
        let pairs = fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let auth = match login_widget::verify_fields(pairs, &token, freshness, now) {
            Ok(auth) => auth,
            Err(error) => {
                first_error.get_or_insert(error);
                continue;
            }
        };
        let (merchant, user) = (bot.merchant, auth.id().get());
        let owner = state
            .store(mode)
            .read(move |reader| reader.is_dashboard_owner(merchant, user))?;
        if !owner {
            verified_not_owner = true;
            continue;
        }
        let session = DashboardSession {
            mode,
            merchant,
            user: DashboardUser::from_login(&auth),
            expires_at_unix_s: now.saturating_add(settings.dashboard_session_ttl_s),
        };
        let mut answer = me_json(&state, &session)?;
        answer["object"] = json!("dashboard_session");
        answer["session"] = json!(session.token(state.webapp_key()));
        return Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response());
    }
    if verified_not_owner {
        return Err(not_an_owner());
    }
    Err(first_error.map_or_else(
        || refused("the Telegram login could not be verified"),
        |error| refused(error.to_string()),
    ))
}

pub use crate::rails::lightning::LNURL_LOGIN_MERCHANT;

/// How long an LNURL dashboard sign-in challenge lives, seconds.
const LNURL_LOGIN_EXPIRES_S: u64 = 300;

/// `POST /dashboard/login/lnurl`: the request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardLnurlLogin {
    /// `live` (default) or `test`: whose owner lists admit the wallet.
    pub mode: Option<String>,
}

fn login_mode(text: Option<&str>) -> Result<Mode, ApiError> {
    match text {
        None | Some("live") => Ok(Mode::Live),
        Some("test") => Ok(Mode::Test),
        Some(_) => Err(
            ApiError::invalid("invalid_mode", "mode must be \"live\" or \"test\"").param("mode"),
        ),
    }
}

fn render_lnurl_login(
    state: &AppState,
    mode: Mode,
    secret: &farthing_store::LnurlSecret,
    status: &str,
) -> Value {
    let (url, lnurl) =
        crate::rails::lightning::auth_link(state.app().base_url(), mode, &secret.k1, "login");
    json!({
        "object": "dashboard_lnurl_login",
        "id": crate::rails::lightning::k1_hex(&secret.k1),
        "livemode": mode.is_live(),
        "status": status,
        "url": url,
        "lnurl": lnurl,
        "expires_at": secret.expires_at_ns / 1_000_000_000,
    })
}

/// Log in to the dashboard with a Lightning wallet (LNURL-auth)
///
/// Makes a single-use LNURL-auth challenge (LUD-04, five minutes): show `lnurl` as a QR code;
/// the owner's wallet signs it; then `GET /dashboard/login/lnurl/{id}` answers the session.
#[utoipa::path(
    post,
    path = "/dashboard/login/lnurl",
    tag = "dashboard",
    operation_id = "dashboard_login_lnurl",
    request_body(content = Option<DashboardLnurlLogin>, content_type = "application/json", description = "Optional: `{\"mode\": \"test\"}` to sign in to test mode."),
    responses(
        (status = 201, description = "The challenge (`status` `pending`).", body = spec::DashboardLnurlLoginObject),
        (status = 400, description = "A malformed body or a bad `mode` (`invalid_body`, `invalid_mode`).", body = spec::Error),
        spec::TooLarge,
        spec::Internal,
        spec::Unavailable,
    ),
)]
pub async fn login_lnurl(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: DashboardLnurlLogin = if body.is_empty() {
        DashboardLnurlLogin::default()
    } else {
        extract::json_body(&headers, &body)?
    };
    let mode = login_mode(request.mode.as_deref())?;
    let secret = crate::rails::lightning::new_auth_secret(
        state.now_ns(),
        LNURL_LOGIN_MERCHANT,
        "login",
        LNURL_LOGIN_EXPIRES_S,
    )?;
    let answer = render_lnurl_login(&state, mode, &secret, "pending");
    state
        .store(mode)
        .run(move |tx| tx.insert_lnurl_secret(&secret))
        .await??;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(answer),
    )
        .into_response())
}

/// The `mode` query of `GET /dashboard/login/lnurl/{id}`.
#[derive(Debug, Deserialize)]
pub struct LnurlLoginQuery {
    mode: Option<String>,
}

/// Finish a dashboard sign-in with a Lightning wallet
///
/// `pending` until the wallet signed the challenge; then, when the wallet's linking key is an
/// owner of a merchant (`PUT /v1/dashboard/owners` `lnurl_linking_keys`), the session.
#[utoipa::path(
    get,
    path = "/dashboard/login/lnurl/{id}",
    tag = "dashboard",
    operation_id = "dashboard_login_lnurl_status",
    params(
        ("id" = String, Path, description = "The challenge's id (its k1, hex)."),
        ("mode" = Option<String>, Query, description = "`live` (default) or `test`, as when the challenge was made."),
    ),
    responses(
        (status = 200, description = "`status` `pending` or `expired` (the challenge), or `verified` with `session`, `merchant` and `user` (`linking_key`, `id` 0).", body = spec::DashboardLnurlLoginObject),
        (status = 400, description = "A bad `mode` (`invalid_mode`).", body = spec::Error),
        (status = 401, description = "The wallet signed, but its linking key is no merchant's dashboard owner (`not_a_dashboard_owner`; the message names the key to add).", body = spec::Error),
        (status = 404, description = "No such challenge (`resource_missing`).", body = spec::Error),
        spec::Internal,
    ),
)]
pub async fn login_lnurl_status(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<LnurlLoginQuery>,
) -> Result<Response, ApiError> {
    let mode = login_mode(query.mode.as_deref())?;
    let missing = || ApiError::not_found("dashboard_lnurl_login", &id);
    let k1 = crate::rails::lightning::k1_from_hex(&id).ok_or_else(missing)?;
    let secret = state
        .store(mode)
        .read(move |reader| reader.lnurl_secret(&k1))?
        .filter(|s| s.kind == "auth" && s.merchant == LNURL_LOGIN_MERCHANT)
        .ok_or_else(missing)?;
    let now = state.app().clock().now_s();
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    let Some(key) = secret
        .result
        .clone()
        .filter(|_| secret.used_at_ns.is_some())
    else {
        let status = if now >= secret.expires_at_ns / 1_000_000_000 {
            "expired"
        } else {
            "pending"
        };
        return Ok((
            no_store,
            axum::Json(render_lnurl_login(&state, mode, &secret, status)),
        )
            .into_response());
    };
    if now >= secret.expires_at_ns / 1_000_000_000 {
        return Ok((
            no_store,
            axum::Json(render_lnurl_login(&state, mode, &secret, "expired")),
        )
            .into_response());
    }
    let lookup = key.clone();
    let merchants = state
        .store(mode)
        .read(move |reader| reader.dashboard_merchants_of_key(&lookup))?;
    let Some(merchant) = merchants.first().copied() else {
        return Err(ApiError::unauthorized(
            "not_a_dashboard_owner",
            format!(
                "this wallet's linking key {key} may not sign in to any merchant's dashboard in this mode: the merchant makes an owner challenge (POST /v1/dashboard/owners/lnurl) and this wallet signs it"
            ),
        ));
    };
    let session = DashboardSession {
        mode,
        merchant,
        user: DashboardUser {
            id: 0,
            first_name: "Lightning wallet".to_owned(),
            last_name: None,
            username: None,
            photo_url: None,
            linking_key: Some(key),
        },
        expires_at_unix_s: now.saturating_add(state.config().telegram.dashboard_session_ttl_s),
    };
    let mut answer = me_json(&state, &session)?;
    answer["object"] = json!("dashboard_lnurl_login");
    answer["id"] = json!(id);
    answer["status"] = json!("verified");
    answer["session"] = json!(session.token(state.webapp_key()));
    Ok((no_store, axum::Json(answer)).into_response())
}

fn not_an_owner() -> ApiError {
    ApiError::unauthorized(
        "not_a_dashboard_owner",
        "this Telegram user may not sign in to this merchant's dashboard: the merchant names its \
         owners with PUT /v1/dashboard/owners",
    )
}

/// The merchant and the user of `session`, if the user is still an owner.
fn me_json(state: &AppState, session: &DashboardSession) -> Result<Value, ApiError> {
    let (merchant, user) = (session.merchant, session.user.id);
    let key = session.user.linking_key.clone();
    let (row, owner) = state.store(session.mode).read(move |reader| {
        let owner = match &key {
            Some(key) => reader.is_dashboard_lnurl_owner(merchant, key)?,
            None => reader.is_dashboard_owner(merchant, user)?,
        };
        Ok((reader.merchant(merchant)?, owner))
    })?;
    let Some(row) = row.filter(|_| owner) else {
        return Err(not_an_owner());
    };
    Ok(json!({
        "object": "dashboard_user",
        "expires_at": session.expires_at_unix_s,
        "livemode": session.mode.is_live(),
        "merchant": {"id": merchant.encode(), "name": row.name},
        "user": session.user,
    }))
}

/// Who is signed in to the dashboard
///
/// Answers the merchant and the Telegram user of a dashboard session. Refused when the session
/// is invalid or expired, or when the user is no longer one of the merchant's owners.
#[utoipa::path(
    get,
    path = "/dashboard/me",
    tag = "dashboard",
    operation_id = "dashboard_me",
    security(("dashboard_session" = [])),
    responses(
        (status = 200, description = "The merchant and the signed-in Telegram user.", body = spec::DashboardMe),
        (status = 401, description = "No session, a malformed or foreign one (`invalid_session`), an expired one (`session_expired`), or a user no longer an owner (`not_a_dashboard_owner`).", body = spec::Error),
        spec::Internal,
    ),
)]
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let session = DashboardSession::verify(
        token.trim(),
        state.webapp_key(),
        state.app().clock().now_s(),
    )?;
    let answer = me_json(&state, &session)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at_unix_s: u64) -> DashboardSession {
        DashboardSession {
            mode: Mode::Live,
            merchant: MerchantId::from_raw(7),
            user: DashboardUser {
                id: 42,
                first_name: "Ada".to_owned(),
                last_name: None,
                username: Some("ada".to_owned()),
                photo_url: None,
                linking_key: None,
            },
            expires_at_unix_s,
        }
    }

    #[test]
    fn a_dashboard_session_round_trips_and_is_not_a_mini_app_session() {
        let key = SessionKey::random();
        let token = session(1_000).token(&key);
        assert!(token.starts_with("fds_"));
        assert_eq!(
            DashboardSession::verify(&token, &key, 999).unwrap(),
            session(1_000)
        );
        assert_eq!(
            DashboardSession::verify(&token, &key, 1_000)
                .unwrap_err()
                .code,
            "session_expired"
        );
        assert_eq!(
            DashboardSession::verify(&token, &SessionKey::random(), 1)
                .unwrap_err()
                .code,
            "invalid_session"
        );
        // A Mini App session under the same key is not a dashboard session, nor the reverse.
        let webapp = crate::pages::webapp::Session {
            mode: Mode::Live,
            merchant: MerchantId::from_raw(7),
            customer: farthing_core::CustomerId::from_raw(9),
            user: 42,
            expires_at_unix_s: 1_000,
        }
        .token(&key);
        let renamed = webapp.replacen("wss_", "fds_", 1);
        assert_eq!(
            DashboardSession::verify(&renamed, &key, 1)
                .unwrap_err()
                .code,
            "invalid_session"
        );
        let renamed = token.replacen("fds_", "wss_", 1);
        assert_eq!(
            crate::pages::webapp::Session::verify(&renamed, &key, 1)
                .unwrap_err()
                .code,
            "invalid_session"
        );
    }

    #[test]
    fn widget_fields_are_text_as_telegram_signed_them() {
        let body = json!({"bot_id": 5, "id": 42, "first_name": "Ada", "last_name": null, "auth_date": 1700000000, "hash": "ab"});
        let Value::Object(map) = body else {
            unreachable!()
        };
        let (bot, mut fields) = widget_fields(map).unwrap();
        fields.sort();
        assert_eq!(bot, 5);
        assert_eq!(
            fields,
            [
                ("auth_date".to_owned(), "1700000000".to_owned()),
                ("first_name".to_owned(), "Ada".to_owned()),
                ("hash".to_owned(), "ab".to_owned()),
                ("id".to_owned(), "42".to_owned()),
            ]
        );
        let Value::Object(map) = json!({"id": 1.5, "bot_id": 5}) else {
            unreachable!()
        };
        assert_eq!(widget_fields(map).unwrap_err().code, "invalid_body");
        let Value::Object(map) = json!({"id": 1}) else {
            unreachable!()
        };
        assert_eq!(widget_fields(map).unwrap_err().code, "invalid_body");
    }
}
