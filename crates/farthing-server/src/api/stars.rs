//! `PUT /v1/rails/stars`: a merchant connects its Telegram bot, which turns on the Stars rail
//! (SPEC RL2) in the key's mode.
//!
//! The token is checked for its shape, then with `getMe` at the configured Bot API base URL
//! (Telegram, its test environment, a local Bot API server or a test double); only a token
//! Telegram accepts is stored. The token is never part of an answer, an error or a log line.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use farthing_core::MerchantId;
use farthing_store::TelegramBot;
use farthing_telegram::BotToken;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{body_bytes, write};
use crate::error::ApiError;
use crate::extract;
use crate::openapi as spec;
use crate::state::{AppState, Mode, Principal};
use crate::telegram::client::TELEGRAM_API_URL;
use crate::telegram::{BotApiError, BotClient};

/// How long `getMe` may take when a bot is connected.
const GET_ME_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `webhook_secret` (Telegram's `secret_token` limit).
const MAX_SECRET_CHARS: usize = 256;

/// The body of `PUT /v1/rails/stars`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectStars {
    /// The bot token from @BotFather (`123456:ABC…`). Stored, never returned.
    pub bot_token: String,
    /// The Bot API base URL; `https://api.telegram.org` by default.
    pub api_url: Option<String>,
    /// How updates arrive: `webhook` (`POST /telegram/{bot_id}/webhook`) or `polling`.
    pub mode: String,
    /// The `X-Telegram-Bot-Api-Secret-Token` Telegram must send with webhooks: 1 to 256 of
    /// `A-Z a-z 0-9 _ -`. Generated (and returned once) in `webhook` mode when absent.
    pub webhook_secret: Option<String>,
}

/// Whether the merchant has connected a bot in `mode`.
pub fn connected(state: &AppState, merchant: MerchantId, mode: Mode) -> Result<bool, ApiError> {
    Ok(state
        .store(mode)
        .read(move |reader| reader.telegram_bot(merchant))?
        .is_some())
}

/// The `rail` object of the Stars rail for a connected bot (no token, no secret).
pub fn rail_object(bot: &TelegramBot, mode: Mode) -> Value {
    json!({
        "object": "rail",
        "rail": "stars",
        "configured": true,
        "health": "healthy",
        "livemode": mode.is_live(),
        "bot_id": bot.bot_id,
        "username": bot.username,
        "mode": bot.mode,
    })
}

fn valid_secret(secret: &str) -> bool {
    !secret.is_empty()
        && secret.chars().count() <= MAX_SECRET_CHARS
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn generate_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn bad_token(message: &str) -> ApiError {
    ApiError::invalid("invalid_bot_token", message).param("bot_token")
}

/// Maps a failed `getMe` to the API's answer (the error never contains the token).
fn get_me_error(error: &BotApiError) -> ApiError {
    match error.error_code() {
        Some(401 | 404) => bad_token("Telegram refused this bot token (getMe: unauthorized)"),
        _ if error.is_transient() => {
            tracing::warn!(%error, "getMe failed while connecting a bot");
            let mut api =
                ApiError::unavailable("the Telegram Bot API could not be reached; try again later");
            api.status = StatusCode::BAD_GATEWAY;
            api.code = "telegram_unavailable";
            api
        }
        _ => {
            tracing::warn!(%error, "getMe failed while connecting a bot");
            let mut api = ApiError::unavailable(format!(
                "the Telegram Bot API refused getMe{}",
                error
                    .error_code()
                    .map_or_else(String::new, |code| format!(" ({code})"))
            ));
            api.status = StatusCode::BAD_GATEWAY;
            api.code = "telegram_error";
            api
        }
    }
}

/// `PUT /v1/rails/stars`
#[utoipa::path(
    put,
    path = "/v1/rails/stars",
    tag = "rails",
    operation_id = "connect_stars",
    summary = "Connect a Telegram bot (the Stars rail)",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = ConnectStars, content_type = "application/json", description = "The bot token, the Bot API base URL, how updates arrive and the webhook secret."),
    responses(
        (status = 200, description = "The bot answered `getMe` and is stored; the Stars rail is configured for this mode. The token is never returned.", body = spec::RailState),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), a bad or refused bot token (`invalid_bot_token`), a bad `mode` (`invalid_mode`), `api_url` (`invalid_api_url`) or `webhook_secret` (`invalid_webhook_secret`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 409, description = "Another merchant connected this bot (`bot_already_connected`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 502, description = "The Bot API could not be reached or answered with an error (`telegram_unavailable`, `telegram_error`).", body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn connect(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("rails:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: ConnectStars = extract::json_body(&headers, &body)?;
    let token = BotToken::parse(request.bot_token.trim())
        .map_err(|_| bad_token("bot_token is not a bot token (`<bot id>:<secret>`)"))?;
    let mode = match request.mode.as_str() {
        "webhook" | "polling" => request.mode.clone(),
        _ => {
            return Err(ApiError::invalid(
                "invalid_mode",
                "mode must be \"webhook\" or \"polling\"",
            )
            .param("mode"))
        }
    };
    let (webhook_secret, generated) = match request.webhook_secret {
        Some(secret) if valid_secret(&secret) => (Some(secret), false),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_webhook_secret",
                "webhook_secret must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -",
            )
            .param("webhook_secret"))
        }
        None if mode == "webhook" => (Some(generate_secret()?), true),
        None => (None, false),
    };
    let api_url = request
        .api_url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .unwrap_or(TELEGRAM_API_URL)
        .trim_end_matches('/')
        .to_owned();
    let client = BotClient::new(&api_url, token.clone(), GET_ME_TIMEOUT).map_err(|_| {
        ApiError::invalid(
            "invalid_api_url",
            "api_url must be an http or https base URL without a path to a bot",
        )
        .param("api_url")
    })?;
    let me = client.get_me().await.map_err(|e| get_me_error(&e))?;
    let bot_id = token.bot_id().get();
    if u64::try_from(me.id).ok() != Some(bot_id) || !me.is_bot {
        return Err(bad_token(
            "getMe answered with another user than the token's bot",
        ));
    }
    let Some(username) = me.username.filter(|name| !name.is_empty()) else {
        return Err(bad_token("getMe answered with a bot without a username"));
    };
    let (merchant, live) = (principal.merchant, principal.mode);
    let others = state
        .store(live)
        .read(move |reader| reader.telegram_bots_by_id(bot_id))?;
    if others.iter().any(|bot| bot.merchant != merchant) {
        return Err(ApiError::conflict(
            "bot_already_connected",
            "another merchant connected this bot; a bot serves one merchant",
        ));
    }
    let now = super::wall_clock_ns();
    let bot = TelegramBot {
        merchant,
        bot_id,
        username,
        token: token.expose_secret().to_owned(),
        api_url,
        mode,
        webhook_secret,
        created_at_ns: now,
        updated_at_ns: now,
    };
    let mut answer = rail_object(&bot, live);
    if generated {
        if let (Some(secret), Value::Object(map)) = (&bot.webhook_secret, &mut answer) {
            map.insert("webhook_secret".to_owned(), json!(secret));
        }
    }
    write(
        &state,
        &principal,
        &headers,
        "PUT /v1/rails/stars",
        &body,
        move |tx| {
            tx.upsert_telegram_bot(&bot)?;
            Ok((StatusCode::OK, answer))
        },
    )
    .await
}
