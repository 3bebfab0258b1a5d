//! `PUT /v1/rails/card`: cards and other fiat through a Telegram payment provider (SPEC RL2,
//! "the same flow with a provider token and a fiat currency").
//!
//! The merchant's connected bot (`PUT /v1/rails/stars`) sells in fiat with the payment provider
//! token BotFather gave it for that bot (Stripe, a test provider…). The token is stored and
//! never part of an answer, an error or a log line. An invoice in a fiat currency that accepts
//! `card` then gets a provider invoice link (`createInvoiceLink` with the token, the currency
//! and one price in the currency's minor units), the pre-checkout query is answered like a
//! Stars one, and the `successful_payment` settles with rail `card` (see
//! [`crate::telegram::webhook`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use farthing_core::invoice::{Invoice, InvoiceAmount};
use farthing_core::money::CurrencyKind;
use farthing_core::{Currency, PublicId};
use farthing_store::{CardProvider, TelegramBot};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{body_bytes, write};
use crate::error::ApiError;
use crate::extract;
use crate::openapi as spec;
use crate::state::{AppState, Mode, Principal};
use crate::telegram::{InvoiceParams, LabeledPrice};

/// Longest provider token accepted (Telegram's are well under this).
const MAX_TOKEN_CHARS: usize = 256;

/// Most currencies a card rail may list.
const MAX_CURRENCIES: usize = 50;

/// The body of `PUT /v1/rails/card`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectCard {
    /// The payment provider token BotFather gave the connected bot (`Payments` in the bot's
    /// settings; e.g. `284685063:TEST:…` for a test provider). Stored, never returned.
    pub provider_token: String,
    /// The ISO 4217 currencies invoices on this rail may use (default: any fiat currency; the
    /// provider refuses those it does not support).
    #[schema(example = json!(["USD", "EUR"]), max_items = 50)]
    pub currencies: Option<Vec<String>>,
}

/// Whether the card rail `provider` can carry an invoice in `currency`: a fiat currency the
/// merchant listed (any fiat currency when it listed none).
pub fn takes(provider: &CardProvider, currency: Currency) -> bool {
    currency.kind() == CurrencyKind::Fiat
        && provider
            .currencies
            .as_ref()
            .is_none_or(|codes| codes.iter().any(|code| code == currency.code()))
}

/// The `rail` object of the card rail (no token).
pub fn rail_object(provider: &CardProvider, bot: Option<&TelegramBot>, mode: Mode) -> Value {
    json!({
        "object": "rail",
        "rail": "card",
        "configured": true,
        "health": if bot.is_some() { "healthy" } else { "unhealthy" },
        "livemode": mode.is_live(),
        "bot_id": bot.map(|bot| bot.bot_id),
        "username": bot.map(|bot| bot.username.clone()),
        "currencies": provider.currencies,
    })
}

/// The `createInvoiceLink` parameters of a fixed-amount invoice in a currency the card rail
/// takes (`None` otherwise): the provider token, the invoice's currency, one price in its
/// minor units (Telegram's "smallest units of the currency"), the invoice id as payload.
pub(crate) fn link_params(invoice: &Invoice, provider: &CardProvider) -> Option<InvoiceParams> {
    let InvoiceAmount::Fixed(amount) = invoice.amount else {
        return None;
    };
    if !takes(provider, invoice.currency) {
        return None;
    }
    let amount = i64::try_from(amount).ok()?;
    let (title, description) = super::invoices::link_texts(invoice);
    Some(InvoiceParams::provider(
        &title,
        &description,
        &invoice.id.encode(),
        &provider.provider_token,
        invoice.currency.code(),
        vec![LabeledPrice {
            label: title.clone(),
            amount,
        }],
    ))
}

/// `PUT /v1/rails/card`
#[utoipa::path(
    put,
    path = "/v1/rails/card",
    tag = "rails",
    operation_id = "connect_card",
    summary = "Take cards through a Telegram payment provider (the card rail)",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = ConnectCard, content_type = "application/json", description = "The payment provider token of the connected bot, and the currencies to take."),
    responses(
        (status = 200, description = "The provider token is stored (never returned); the card rail is configured for this mode. Fixed-amount invoices in a fiat currency it takes that accept `card` get `payment_instructions.card.invoice_link` (`createInvoiceLink` with the provider token).", body = spec::RailState),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), an empty or malformed token (`invalid_provider_token`), a currency that is unknown or not fiat (`invalid_currency`), or no bot connected in this mode (`rail_not_configured`: connect one with `PUT /v1/rails/stars` first).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
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
    let request: ConnectCard = extract::json_body(&headers, &body)?;
    let token = request.provider_token.trim().to_owned();
    if token.is_empty()
        || token.chars().count() > MAX_TOKEN_CHARS
        || token.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::invalid(
            "invalid_provider_token",
            "provider_token must be the payment provider token BotFather gave the bot",
        )
        .param("provider_token"));
    }
    let currencies = match request.currencies {
        None => None,
        Some(codes) => {
            if codes.is_empty() || codes.len() > MAX_CURRENCIES {
                return Err(ApiError::invalid(
                    "invalid_currency",
                    format!("currencies lists 1 to {MAX_CURRENCIES} codes; leave it out to take any fiat currency"),
                )
                .param("currencies"));
            }
            let mut parsed: Vec<String> = Vec::with_capacity(codes.len());
            for (i, code) in codes.iter().enumerate() {
                let param = format!("currencies[{i}]");
                let currency = extract::currency(code, &param)?;
                if currency.kind() != CurrencyKind::Fiat {
                    return Err(ApiError::invalid(
                        "invalid_currency",
                        format!("the card rail takes fiat currencies, not {currency} (Stars are the stars rail)"),
                    )
                    .param(param));
                }
                if !parsed.iter().any(|c| c == currency.code()) {
                    parsed.push(currency.code().to_owned());
                }
            }
            Some(parsed)
        }
    };
    let (merchant, mode) = (principal.merchant, principal.mode);
    let bot = state
        .store(mode)
        .read(move |reader| reader.telegram_bot(merchant))?
        .ok_or_else(|| {
            ApiError::invalid(
                "rail_not_configured",
                "the card rail sells through the merchant's Telegram bot: connect one in this \
                 mode with PUT /v1/rails/stars first",
            )
        })?;
    let now = super::wall_clock_ns();
    let provider = CardProvider {
        merchant,
        provider_token: token,
        currencies,
        created_at_ns: now,
        updated_at_ns: now,
    };
    let answer = rail_object(&provider, Some(&bot), mode);
    write(
        &state,
        &principal,
        &headers,
        "PUT /v1/rails/card",
        &body,
        move |tx| {
            tx.upsert_card_provider(&provider)?;
            Ok((StatusCode::OK, answer))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use farthing_core::MerchantId;

    fn provider(currencies: Option<&[&str]>) -> CardProvider {
        CardProvider {
            merchant: MerchantId::from_raw(1),
            provider_token: "284685063:TEST:abc".to_owned(),
            currencies: currencies.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            created_at_ns: 0,
            updated_at_ns: 0,
        }
    }

    #[test]
    fn the_card_rail_takes_fiat_only_and_only_what_it_lists() {
        assert!(takes(&provider(None), Currency::USD));
        assert!(takes(&provider(None), Currency::EUR));
        assert!(!takes(&provider(None), Currency::XTR));
        assert!(!takes(&provider(None), Currency::BTC));
        assert!(takes(&provider(Some(&["USD"])), Currency::USD));
        assert!(!takes(&provider(Some(&["USD"])), Currency::EUR));
        // The token never prints.
        assert!(!format!("{:?}", provider(None)).contains("TEST"));
    }
}
