//! `POST /telegram/{bot_id}/webhook`: the updates Telegram pushes to a connected bot (SPEC RL2),
//! and [`handle_update`], the one place an update is acted on — for webhooks and for long
//! polling ([`super::poller`]) alike, so both modes behave the same.
//!
//! The request must carry the bot's `X-Telegram-Bot-Api-Secret-Token` (compared in constant
//! time); anything else is refused with 401 before the body is read as an update.
//!
//! - first contact (SPEC P6): the sender of a `message`, `pre_checkout_query` or
//!   `callback_query` becomes the merchant's customer `tg:<user id>` if it is not one yet
//!   (user id only; `customer.created` is written with it), the same customer
//!   `successful_payment` credits.
//! - `pre_checkout_query`: answered `ok` only when the invoice named by the payload (`inv_…`)
//!   is the merchant's, open, not expired, accepts the payment's rail (Stars for `XTR`, `card`
//!   for a fiat currency paid through the bot's payment provider), and the currency and amount
//!   match;
//!   otherwise refused with a human-readable `error_message`.
//! - `message.successful_payment`: settled through [`crate::settlement::settle_payment`] (and,
//!   for Stars subscriptions, [`farthing_app::subscriptions`]) on rail `stars` (`XTR`) or
//!   `card` (fiat, `provider_payment_charge_id` kept in the payload), keyed
//!   by `telegram_payment_charge_id` (never by payload), so a repeated update settles once and
//!   a second payment of a paid invoice is credited to the payer's balance. Once settled (not
//!   for a duplicate), [`crate::bot::payment_settled`] sends the receipt and the goods.
//! - other messages and `callback_query`: the payment bot's flows, [`crate::bot`].
//!
//! Architecture invariant: this module only reads the store to decide the pre-checkout answer;
//! money moves only inside the settlement's store job.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_app::{AppError, Mode};
use farthing_botapi::{Update, User};
use farthing_store::TelegramBot;
use serde_json::json;

use crate::rails::telegram::TelegramRails;
use crate::state::AppState;
use crate::web::error::ApiError;

/// The header Telegram sends the webhook's secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// `POST /telegram/{bot_id}/webhook`
#[utoipa::path(
    post,
    path = "/telegram/{bot_id}/webhook",
    tag = "rails",
    operation_id = "telegram_webhook",
    summary = "Receive a Telegram update (called by Telegram)",
    params(
        ("bot_id" = u64, Path, description = "The bot's id (the token's prefix)."),
        ("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "The webhook secret given to `PUT /v1/rails/stars`."),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "A Bot API `Update`."),
    responses(
        (status = 200, description = "The update was handled (or ignored: kinds the Stars rail does not use). `{\"ok\": true}`.", body = serde_json::Value),
        (status = 401, description = "The secret token is missing or wrong (`invalid_webhook_secret`).", body = crate::web::spec::Error),
        (status = 500, description = "The update could not be handled now; Telegram sends it again.", body = crate::web::spec::Error),
        crate::web::spec::TooLarge,
    ),
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(bot_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let refused = || {
        ApiError::unauthorized(
            "invalid_webhook_secret",
            "the X-Telegram-Bot-Api-Secret-Token header is missing or wrong",
        )
    };
    let bot_id: u64 = bot_id.parse().map_err(|_| refused())?;
    let secret = headers
        .get(SECRET_HEADER)
        .map(|value| value.as_bytes().to_vec())
        .ok_or_else(refused)?;
    let (mode, bot) = telegram(&state)?
        .find_by_secret(state.app(), bot_id, &secret)?
        .ok_or_else(refused)?;
    let body = crate::web::extract::body_bytes(body, state.config().max_body_bytes)?;
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            // Telegram would resend it forever: take it and log.
            tracing::warn!(bot_id, %error, "a webhook update did not decode");
            return Ok(ok());
        }
    };
    handle_update(&state, mode, &bot, &update).await?;
    Ok(ok())
}

/// The Telegram rails (registered on every server).
pub fn telegram(state: &AppState) -> Result<&TelegramRails, AppError> {
    state
        .rails()
        .telegram()
        .ok_or_else(|| AppError::internal("the Telegram rails are not registered"))
}

/// Acts on one update of `bot` (connected in `mode`), whether it came by webhook or by
/// `getUpdates`. Idempotent: Telegram may deliver an update twice, and a poller retries one
/// whose handling failed. An `Err` means "not handled, deliver again" (the database is
/// unavailable); kinds farthing does not use are taken and ignored.
pub async fn handle_update(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    update: &Update,
) -> Result<(), AppError> {
    let rails = telegram(state)?;
    if let Some(query) = &update.pre_checkout_query {
        // Telegram gives the payer 10 s: answer first, then record the customer.
        rails.pre_checkout(state.app(), mode, bot, query).await?;
        first_contact(state, mode, bot, Some(&query.from)).await?;
    } else if let Some(message) = &update.message {
        first_contact(state, mode, bot, message.from.as_ref()).await?;
        if let Some(payment) = &message.successful_payment {
            let settled = rails
                .successful_payment(state.app(), mode, bot, payment, message)
                .await?;
            // A duplicate (Telegram resent the update) changed nothing and gets no second
            // receipt.
            if let Some(settled) = settled.filter(|settled| !settled.duplicate) {
                crate::bot::payment_settled(
                    state,
                    mode,
                    bot,
                    &settled,
                    &message.chat,
                    message.from.as_ref(),
                )
                .await;
            }
        } else {
            crate::bot::on_message(state, mode, bot, message).await?;
        }
    } else if let Some(query) = &update.callback_query {
        first_contact(state, mode, bot, Some(&query.from)).await?;
        crate::bot::on_callback(state, mode, bot, query).await?;
    } else if update.other.keys().any(|key| key != "update_id") {
        tracing::debug!(
            bot_id = bot.bot_id,
            update_id = update.update_id,
            "an update of a kind farthing does not use (or that did not decode) was ignored"
        );
    }
    Ok(())
}

/// Makes the Telegram user `from` the merchant's customer `tg:<id>` if it is not one yet (SPEC
/// P6: the user id only). Bots and unusable ids are skipped.
async fn first_contact(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    from: Option<&User>,
) -> Result<(), AppError> {
    let Some(user) = from.filter(|user| !user.is_bot).and_then(User::user_id) else {
        return Ok(());
    };
    let merchant = bot.merchant;
    let external = format!("tg:{}", user.get());
    // The common case (a known user) is a read, not a job on the writer.
    let known = state
        .app()
        .read(mode, move |reader| {
            reader.customer_by_external_id(merchant, &external)
        })?
        .is_some();
    if known {
        return Ok(());
    }
    // Re-checked inside the job, so two updates racing create one customer.
    state
        .app()
        .run(mode, move |tx| {
            farthing_app::customers::telegram(tx, merchant, mode, user.get())
        })
        .await?;
    Ok(())
}

fn ok() -> Response {
    (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response()
}
