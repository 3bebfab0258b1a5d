//! `POST /v1/invoices/{id}/send`: posts an invoice into a Telegram chat (`sendInvoice`, with the
//! card rail's payment provider for a fiat invoice that accepts `card`), followed by the bot's
//! companion message.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use farthing_core::InvoiceId;
use farthing_telegram::TelegramChatId;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::write;
use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

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
/// expired, see [`crate::bot`]). Telegram is called before the answer is stored under
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
        (status = 404, description = "No such invoice for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`) or has expired (`invoice_expired`).", body = spec::Error),
        (status = 502, description = "The Bot API could not be reached (`telegram_unavailable`) or refused `sendInvoice` (`telegram_error`, with Telegram's description, e.g. `Bad Request: chat not found`); nothing was posted.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn send_invoice(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<SendInvoice>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let invoice_id: InvoiceId = extract::id_path(&id)?;
    let chat = body
        .value
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
    let key = extract::idempotency_key(&body.headers)?;
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
        let message = crate::bot::send_invoice_to_chat(&state, mode, chat, &invoice).await?;
        Some(json!({"chat_id": message.chat.id, "message_id": message.message_id}))
    };
    let route = format!("POST /v1/invoices/{id}/send");
    let app = state.app().clone();
    write(
        &state,
        &principal,
        &body.headers,
        &route,
        &body.raw,
        move |tx| {
            let Some(sent) = sent else {
                return Err(ApiError::internal(
                    "a replayed sendInvoice has no stored answer",
                ));
            };
            let invoice = farthing_app::customers::require_invoice(tx, merchant, invoice_id)?;
            let object = crate::render::invoice(&invoice, mode, &app.checkout_url(invoice.id));
            Ok((
                StatusCode::OK,
                json!({"invoice": object, "telegram_message": sent}),
            ))
        },
    )
    .await
}
