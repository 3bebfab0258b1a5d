//! `PUT /v1/rails/stars`: a merchant connects its Telegram bot, which turns on the Stars rail
//! (SPEC RL2) in the key's mode.
//!
//! The token is checked for its shape, then with `getMe` at the configured Bot API base URL
//! (Telegram, its test environment, a local Bot API server or a test double); only a token
//! Telegram accepts is stored. The token is never part of an answer, an error or a log line.
//! Then Telegram is told where updates go: `setWebhook` to `<public_url>/telegram/<bot_id>/webhook`
//! in `webhook` mode (when farthing has a public HTTPS URL, or when asked), `deleteWebhook` in
//! `polling` mode (the poller, [`crate::telegram::poller`], then takes the updates). A failure
//! there stores nothing.
//!
//! `POST /v1/invoices/{id}/send` posts an invoice into a Telegram chat (`sendInvoice`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use farthing_core::{InvoiceId, MerchantId, PublicId, Rail};
use farthing_store::TelegramBot;
use farthing_telegram::{BotToken, TelegramChatId};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{body_bytes, write};
use crate::error::ApiError;
use crate::extract;
use crate::openapi as spec;
use crate::state::{AppState, Mode, Principal};
use crate::telegram::client::TELEGRAM_API_URL;
use crate::telegram::poller::ALLOWED_UPDATES;
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
    /// `webhook` mode: whether farthing calls `setWebhook` (url
    /// `<public_url>/telegram/<bot_id>/webhook`, the `webhook_secret` as `secret_token`,
    /// `allowed_updates` `message`, `pre_checkout_query`, `callback_query`). Default: when the
    /// server's `public_url` is `https` on a host other than localhost (Telegram only pushes to
    /// public HTTPS URLs); `true` forces it (a local Bot API server), `false` leaves the webhook
    /// to you. Must not be `true` in `polling` mode, where `deleteWebhook` is always called.
    pub set_webhook: Option<bool>,
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
        _ => telegram_error("getMe", error),
    }
}

/// A failed Bot API call as a 502: `telegram_unavailable` when it may pass, else
/// `telegram_error` with Telegram's description (which never contains the token).
fn telegram_error(method: &str, error: &BotApiError) -> ApiError {
    tracing::warn!(%error, "{method} failed");
    let mut api = if error.is_transient() {
        let mut api =
            ApiError::unavailable("the Telegram Bot API could not be reached; try again later");
        api.code = "telegram_unavailable";
        api
    } else {
        let mut api = ApiError::unavailable(match error {
            BotApiError::Api { description, .. } => {
                format!("the Telegram Bot API refused {method}: {description}")
            }
            _ => format!("the Telegram Bot API refused {method}"),
        });
        api.code = "telegram_error";
        api
    };
    api.status = StatusCode::BAD_GATEWAY;
    api
}

/// Whether `public_url` is one Telegram can push webhooks to: `https`, not localhost.
fn is_public_https(public_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(public_url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let local = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    };
    url.scheme() == "https" && !local
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
        (status = 200, description = "The bot answered `getMe`, Telegram was told where its updates go, and it is stored; the Stars rail is configured for this mode. The token is never returned. In `webhook` mode farthing calls `setWebhook` (url `<public_url>/telegram/<bot_id>/webhook`, `secret_token` the webhook secret, `allowed_updates` `message`, `pre_checkout_query`, `callback_query`) when its `public_url` is `https` and not localhost, or when `set_webhook` is `true`. In `polling` mode it calls `deleteWebhook` and this instance polls `getUpdates` (Telegram allows one consumer per bot: only one farthing instance may poll a bot).", body = spec::RailState),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), a bad or refused bot token (`invalid_bot_token`), a bad `mode` (`invalid_mode`), `api_url` (`invalid_api_url`) or `webhook_secret` (`invalid_webhook_secret`), or `set_webhook: true` in polling mode (`invalid_set_webhook`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 409, description = "Another merchant connected this bot (`bot_already_connected`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 502, description = "The Bot API could not be reached or refused `getMe`, `setWebhook` or `deleteWebhook` (`telegram_unavailable`, `telegram_error`); nothing was stored.", body = spec::Error),
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
    if request.set_webhook == Some(true) && mode == "polling" {
        return Err(ApiError::invalid(
            "invalid_set_webhook",
            "set_webhook applies to mode \"webhook\"; in polling mode the webhook is deleted",
        )
        .param("set_webhook"));
    }
    let set_webhook = mode == "webhook"
        && request
            .set_webhook
            .unwrap_or_else(|| is_public_https(state.config().base_url()));
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
    // Telegram is told where updates go before anything is stored: a refusal stores nothing.
    if set_webhook {
        let url = format!("{}/telegram/{bot_id}/webhook", state.config().base_url());
        client
            .set_webhook(&url, webhook_secret.as_deref(), Some(ALLOWED_UPDATES))
            .await
            .map_err(|e| telegram_error("setWebhook", &e))?;
    } else if mode == "polling" {
        // getUpdates refuses to run while a webhook is set; pending updates are kept.
        client
            .delete_webhook(false)
            .await
            .map_err(|e| telegram_error("deleteWebhook", &e))?;
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
    let response = write(
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
    .await?;
    // The poller starts, restarts or stops this bot's long polling now.
    state.telegram_bots_changed().notify_one();
    Ok(response)
}

/// `POST /v1/invoices/{id}/send` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendInvoice {
    /// The Telegram chat to post the invoice into: for a private chat, the user's id.
    #[schema(value_type = i64, example = 777001)]
    pub chat_id: Value,
}

/// The answer of `POST /v1/invoices/{id}/send`.
#[derive(ToSchema)]
pub struct SentInvoice {
    /// The invoice, as it stands.
    pub invoice: spec::Invoice,
    /// The invoice message Telegram posted.
    pub telegram_message: TelegramMessage,
}

/// A message the bot posted.
#[derive(ToSchema)]
pub struct TelegramMessage {
    /// The chat it is in.
    pub chat_id: i64,
    /// Its id within the chat.
    pub message_id: i64,
}

/// `POST /v1/invoices/{id}/send`: `sendInvoice` of an open, fixed-amount `XTR` invoice that
/// accepts `stars` (or a fixed-amount fiat invoice that accepts `card`: then with the card
/// rail's payment provider token), with the same title, description, payload (the invoice id) and price as its
/// invoice link, followed by the bot's companion text message (time left; edited to paid or
/// expired, see [`crate::telegram::bot`]). Telegram is called before the answer is stored under
/// the Idempotency-Key; a replay answers from the store without posting again.
#[utoipa::path(
    post,
    path = "/v1/invoices/{id}/send",
    tag = "invoices",
    operation_id = "send_invoice",
    summary = "Send a Stars invoice into a Telegram chat",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The invoice, `inv_…` (a malformed id is not found: 404)."), spec::IdempotencyKey),
    request_body(content = SendInvoice, content_type = "application/json"),
    responses(
        (status = 200, description = "The merchant's bot posted the invoice into the chat (`sendInvoice`: currency `XTR`, one price, payload the invoice id; for a fiat invoice that accepts `card`, the card rail's provider token, the invoice's currency and amount); the payer pays it in Telegram and the payment settles the invoice.", body = SentInvoice, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), a `chat_id` that is not a Telegram chat id (`invalid_chat_id`), an invoice that accepts neither `stars` nor `card` (`rail_not_accepted`) or is not a fixed amount in `XTR` or in a currency of the card rail (`invoice_not_sendable`), or no connected bot in this mode (`rail_not_configured`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 404, description = "No such invoice for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`) or has expired (`invoice_expired`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 502, description = "The Bot API could not be reached (`telegram_unavailable`) or refused `sendInvoice` (`telegram_error`, with Telegram's description, e.g. `Bad Request: chat not found`); nothing was posted.", body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn send_invoice(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: SendInvoice = extract::json_body(&headers, &body)?;
    let invoice_id: InvoiceId = extract::id_path(&id)?;
    let chat = request
        .chat_id
        .as_i64()
        .and_then(TelegramChatId::new)
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_chat_id",
                "chat_id must be a Telegram chat id (an integer)",
            )
            .param("chat_id")
        })?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    // A retried request with a stored answer is replayed by `write` without posting again.
    let key = extract::idempotency_key(&headers)?;
    let replay = match key {
        Some(key) => state
            .store(mode)
            .read(move |reader| reader.idempotency_key(merchant, &key))?
            .is_some(),
        None => false,
    };
    let sent = if replay {
        None
    } else {
        let invoice = super::invoices::load(&state, &principal, &id)?;
        let now = super::wall_clock_ns();
        match invoice.status {
            farthing_core::invoice::InvoiceStatus::Open if invoice.expires_at_ns > now => {}
            farthing_core::invoice::InvoiceStatus::Open => {
                return Err(ApiError::conflict(
                    "invoice_expired",
                    "the invoice has expired",
                ))
            }
            _ => {
                return Err(ApiError::conflict(
                    "invoice_not_open",
                    "the invoice is not open",
                ))
            }
        }
        let bot = state
            .store(mode)
            .read(move |reader| reader.telegram_bot(merchant))?
            .ok_or_else(|| {
                ApiError::invalid(
                    "rail_not_configured",
                    "no Telegram bot is connected in this mode; see PUT /v1/rails/stars",
                )
            })?;
        // A fiat invoice that accepts `card` is sent with the payment provider (the card rail).
        let card = state
            .store(mode)
            .read(move |reader| reader.card_provider(merchant))?
            .filter(|_| invoice.rails.contains(&Rail::Card))
            .and_then(|provider| super::cards::link_params(&invoice, &provider));
        let params = match card {
            Some(params) => params,
            None => {
                if !invoice.rails.contains(&Rail::Stars) {
                    return Err(ApiError::invalid(
                        "rail_not_accepted",
                        "this invoice accepts neither the stars rail nor the card rail",
                    ));
                }
                super::invoices::stars_link_params(&invoice).ok_or_else(|| {
                    ApiError::invalid(
                        "invoice_not_sendable",
                        "only a fixed-amount XTR invoice (stars) or a fixed-amount invoice in a \
                         currency of the card rail can be sent as a Telegram invoice",
                    )
                })?
            }
        };
        let message = crate::telegram::webhook::client(&bot)?
            .send_invoice(chat, &params)
            .await
            .map_err(|e| telegram_error("sendInvoice", &e))?;
        tracing::info!(invoice = %invoice_id.encode(), bot_id = bot.bot_id, message_id = message.message_id, "Stars invoice sent into a chat");
        // The message the bot edits to paid or expired (an invoice message cannot be).
        crate::telegram::bot::invoice_sent(&state, mode, &bot, chat, &invoice, message.message_id)
            .await;
        Some(json!({"chat_id": message.chat.id, "message_id": message.message_id}))
    };
    let url = state.checkout_url(&id);
    let route = format!("POST /v1/invoices/{id}/send");
    write(&state, &principal, &headers, &route, &body, move |tx| {
        let Some(sent) = sent else {
            return Err(ApiError::internal(
                "a replayed sendInvoice has no stored answer",
            ));
        };
        let invoice = super::require_invoice(tx, merchant, invoice_id)?;
        let object = crate::render::invoice(&invoice, mode, &url);
        Ok((
            StatusCode::OK,
            json!({"invoice": object, "telegram_message": sent}),
        ))
    })
    .await
}
