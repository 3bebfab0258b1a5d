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
//!   for Stars subscriptions, [`crate::telegram::subscriptions`]) on rail `stars` (`XTR`) or
//!   `card` (fiat, `provider_payment_charge_id` kept in the payload), keyed
//!   by `telegram_payment_charge_id` (never by payload), so a repeated update settles once and
//!   a second payment of a paid invoice is credited to the payer's balance. Once settled (not
//!   for a duplicate), [`super::bot::payment_settled`] sends the receipt and the goods.
//! - other messages and `callback_query`: the payment bot's flows, [`super::bot`].
//!
//! Architecture invariant: this module only reads the store to decide the pre-checkout answer;
//! money moves only inside the settlement's store job.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::invoice::{Invoice, InvoiceAmount, InvoiceStatus};
use farthing_core::{Currency, InvoiceId, PublicId, Rail};
use farthing_store::TelegramBot;
use farthing_telegram::BotToken;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{BotClient, Message, PreCheckoutQuery, SuccessfulPayment, Update, User};
use crate::error::ApiError;
use crate::settlement::IncomingPayment;
use crate::state::{AppState, Mode};

/// The header Telegram sends the webhook's secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// How long a Bot API call made while handling an update may take (Telegram gives a
/// pre-checkout query 10 s in all).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

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
        (status = 401, description = "The secret token is missing or wrong (`invalid_webhook_secret`).", body = crate::openapi::Error),
        (status = 413, description = crate::openapi::E413, body = crate::openapi::Error),
        (status = 500, description = "The update could not be handled now; Telegram sends it again.", body = crate::openapi::Error),
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
    let (mode, bot) = find_bot(&state, bot_id, &secret)?.ok_or_else(refused)?;
    let body = crate::api::body_bytes(body, state.config().max_body_bytes)?;
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

/// Acts on one update of `bot` (connected in `mode`), whether it came by webhook or by
/// `getUpdates`. Idempotent: Telegram may deliver an update twice, and a poller retries one
/// whose handling failed. An `Err` means "not handled, deliver again" (a 5xx: the database is
/// unavailable); kinds the Stars rail does not use are taken and ignored.
pub async fn handle_update(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    update: &Update,
) -> Result<(), ApiError> {
    if let Some(query) = &update.pre_checkout_query {
        // Telegram gives the payer 10 s: answer first, then record the customer.
        pre_checkout(state, mode, bot, query).await?;
        first_contact(state, mode, bot, Some(&query.from)).await?;
    } else if let Some(message) = &update.message {
        first_contact(state, mode, bot, message.from.as_ref()).await?;
        if let Some(payment) = &message.successful_payment {
            successful_payment(state, mode, bot, payment, message).await?;
        } else {
            super::bot::on_message(state, mode, bot, message).await?;
        }
    } else if let Some(query) = &update.callback_query {
        first_contact(state, mode, bot, Some(&query.from)).await?;
        super::bot::on_callback(state, mode, bot, query).await?;
    } else if update.other.keys().any(|key| key != "update_id") {
        tracing::debug!(
            bot_id = bot.bot_id,
            update_id = update.update_id,
            "an update of a kind the Stars rail does not use (or that did not decode) was ignored"
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
) -> Result<(), ApiError> {
    let Some(user) = from.filter(|user| !user.is_bot).and_then(User::user_id) else {
        return Ok(());
    };
    let merchant = bot.merchant;
    let external = format!("tg:{}", user.get());
    // The common case (a known user) is a read, not a job on the writer.
    let known = state
        .store(mode)
        .read(move |reader| reader.customer_by_external_id(merchant, &external))?
        .is_some();
    if known {
        return Ok(());
    }
    // Re-checked inside the job, so two updates racing create one customer.
    state
        .store(mode)
        .run(move |tx| crate::api::charges::telegram_customer(tx, merchant, mode, user))
        .await??;
    state.deliveries().notify_one();
    Ok(())
}

fn ok() -> Response {
    (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response()
}

/// The connection of bot `bot_id` whose webhook secret is `secret`, in either mode.
fn find_bot(
    state: &AppState,
    bot_id: u64,
    secret: &[u8],
) -> Result<Option<(Mode, TelegramBot)>, ApiError> {
    // Digests have the same length whatever was sent, so the comparison is constant-time.
    let sent = Sha256::digest(secret);
    let mut found = None;
    for (mode, store) in state.stores() {
        for bot in store.read(move |reader| reader.telegram_bots_by_id(bot_id))? {
            let Some(expected) = bot.webhook_secret.as_deref() else {
                continue;
            };
            let expected = Sha256::digest(expected.as_bytes());
            if bool::from(expected.ct_eq(&sent)) && found.is_none() {
                found = Some((mode, bot));
            }
        }
    }
    Ok(found)
}

/// A Bot API client for a stored bot, with the short timeout of calls made while answering.
pub(crate) fn client(bot: &TelegramBot) -> Result<BotClient, ApiError> {
    let token = BotToken::parse(&bot.token).map_err(|_| {
        ApiError::internal(format!(
            "the stored token of bot {} is unreadable",
            bot.bot_id
        ))
    })?;
    BotClient::new(&bot.api_url, token, CALL_TIMEOUT).map_err(ApiError::internal)
}

/// Why the invoice cannot be paid with this pre-checkout query, as the payer will read it.
pub fn refusal(
    invoice: Option<&Invoice>,
    query_currency: &str,
    total_amount: i64,
    now_ns: u64,
) -> Option<&'static str> {
    let Some(invoice) = invoice else {
        return Some("This invoice does not exist.");
    };
    match invoice.status {
        InvoiceStatus::Open => {}
        InvoiceStatus::Expired => return Some("This invoice has expired."),
        InvoiceStatus::Canceled => return Some("This invoice was canceled."),
        _ => return Some("This invoice is already paid."),
    }
    if invoice.expires_at_ns <= now_ns {
        return Some("This invoice has expired.");
    }
    // Stars are paid in XTR; any other currency is a card payment through the bot's provider.
    if query_currency == "XTR" && !invoice.rails.contains(&Rail::Stars) {
        return Some("This invoice cannot be paid with Telegram Stars.");
    }
    if query_currency != "XTR" && !invoice.rails.contains(&Rail::Card) {
        return Some("This invoice cannot be paid by card.");
    }
    if invoice.currency.code() != query_currency {
        return Some("The currency does not match the invoice.");
    }
    let Ok(amount) = u64::try_from(total_amount) else {
        return Some("The amount does not match the invoice.");
    };
    let matches = match &invoice.amount {
        InvoiceAmount::Fixed(fixed) => *fixed == amount,
        InvoiceAmount::Open {
            min_minor,
            max_minor,
            ..
        } => (*min_minor..=*max_minor).contains(&amount),
    };
    (!matches).then_some("The amount does not match the invoice.")
}

async fn pre_checkout(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    query: &PreCheckoutQuery,
) -> Result<(), ApiError> {
    let merchant = bot.merchant;
    let invoice = match InvoiceId::parse(&query.invoice_payload) {
        Ok(id) => state
            .store(mode)
            .read(move |reader| reader.invoice(id))?
            .filter(|invoice| invoice.merchant == merchant),
        Err(_) => None,
    };
    let refused = refusal(
        invoice.as_ref(),
        &query.currency,
        query.total_amount,
        crate::api::wall_clock_ns(),
    );
    if let Err(error) = client(bot)?
        .answer_pre_checkout_query(&query.id, refused.is_none(), refused)
        .await
    {
        // Too late to matter for this payer (Telegram gives 10 s); Telegram cancels it.
        tracing::warn!(bot_id = bot.bot_id, %error, "answerPreCheckoutQuery failed");
    }
    Ok(())
}

/// The rail a Telegram payment came through: Stars in `XTR`, else a card (or other fiat
/// method) through the bot's payment provider.
pub fn payment_rail(currency: &str) -> Rail {
    if currency == "XTR" {
        Rail::Stars
    } else {
        Rail::Card
    }
}

async fn successful_payment(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    payment: &SuccessfulPayment,
    message: &Message,
) -> Result<(), ApiError> {
    let from = message.from.as_ref();
    let (Ok(currency), Ok(amount_minor)) = (
        Currency::parse(&payment.currency),
        u64::try_from(payment.total_amount),
    ) else {
        tracing::warn!(
            bot_id = bot.bot_id,
            "a successful_payment with an unusable currency or amount"
        );
        return Ok(());
    };
    // A subscription payment (first or renewal) also starts or extends a subscription.
    let subscription = match (
        payment.is_recurring,
        payment.subscription_expiration_date,
        from,
    ) {
        (true, Some(expires), Some(user)) => {
            Some(farthing_app::subscriptions::SubscriptionPayment {
                telegram_user_id: user.id,
                expires_at_s: u64::try_from(expires).unwrap_or(0),
                first: payment.is_first_recurring,
            })
        }
        _ => None,
    };
    let incoming = IncomingPayment {
        merchant: bot.merchant,
        rail: payment_rail(&payment.currency),
        external_id: payment.telegram_payment_charge_id.clone(),
        invoice: InvoiceId::parse(&payment.invoice_payload).ok(),
        payer: None,
        payer_external_id: from.map(|user| format!("tg:{}", user.id)),
        currency,
        amount_minor,
        payload: Some(json!({
            "bot_id": bot.bot_id,
            // The payer, for refundStarPayment (the customer may not exist yet).
            "user_id": from.map(|user| user.id),
            "telegram_payment_charge_id": payment.telegram_payment_charge_id,
            "provider_payment_charge_id": payment.provider_payment_charge_id,
            "invoice_payload": payment.invoice_payload,
        })),
    };
    let base = state.config().base_url().to_owned();
    let settled = state
        .store(mode)
        .run(move |tx| {
            farthing_app::subscriptions::settle_stars_payment(
                tx,
                mode,
                incoming,
                subscription,
                &base,
            )
        })
        .await?;
    match settled {
        Ok(settled) => {
            // A duplicate (Telegram resent the update) changed nothing and gets no second
            // receipt.
            if !settled.duplicate {
                state.deliveries().notify_one();
                super::bot::payment_settled(state, mode, bot, &settled, &message.chat, from).await;
            }
            Ok(())
        }
        // A refusal (e.g. the same charge id with other money) will not change on a resend.
        Err(error) if error.is_refusal() => {
            tracing::error!(bot_id = bot.bot_id, code = error.code(), message = %error, "a successful_payment was refused: money reported by Telegram is NOT booked; investigate");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}
