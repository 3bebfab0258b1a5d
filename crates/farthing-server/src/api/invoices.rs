//! `/v1/invoices`: create, retrieve, list, cancel, and pay from a customer balance (SPEC I1–I4,
//! RL1).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::invoice::{
    InvoiceAmount, InvoiceError, InvoicePayment, NewInvoice, DEFAULT_EXPIRES_IN_S,
};
use farthing_core::{Currency, CustomerId, InvoiceId, PublicId, Rail, TransferId};
use farthing_store::TelegramBot;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body_bytes, book, emit, ledger_error, list_answer, write};
use crate::error::ApiError;
use crate::extract;
use crate::ids::new_id;
use crate::openapi as spec;
use crate::render;
use crate::state::{AppState, Mode, Principal};
use crate::telegram::InvoiceParams;

/// `POST /v1/invoices` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvoice {
    /// Fixed amount in minor units; omit for an amountless invoice.
    #[schema(value_type = Option<u64>, minimum = 1, example = 500)]
    pub amount: Option<Value>,
    /// Currency or asset code.
    #[schema(example = "USD")]
    pub currency: String,
    /// Shown to the payer.
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Opaque merchant data.
    pub payload: Option<String>,
    /// Seconds until expiry (default 900).
    #[schema(value_type = Option<u64>, minimum = 5, maximum = 2592000, default = 900)]
    pub expires_in: Option<Value>,
    /// Accepted rails (default: every rail the merchant has configured).
    #[schema(value_type = Option<Vec<spec::RailName>>)]
    pub rails: Option<Vec<String>>,
    /// Expected payer, `cus_…`.
    pub customer: Option<String>,
    /// Amountless: suggested amounts.
    #[schema(value_type = Option<Vec<u64>>, max_items = 12)]
    pub amount_presets: Option<Vec<Value>>,
    /// Amountless: smallest amount (default 1).
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub amount_min: Option<Value>,
    /// Amountless: largest amount (default the maximum).
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub amount_max: Option<Value>,
    /// Merchant key/value data (at most 50 keys of 1–40 characters, values of at most 500).
    /// Keys the payment bot reads: `deliver_text` (sent to the payer as a message right after
    /// the payment, with the receipt: a code, a thank-you, instructions) and `deliver_url` (an
    /// `https://` link sent as a button with it: the digital goods).
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// A Telegram Stars subscription: the period in seconds, `2592000` (30 days, the only
    /// period Telegram allows). Needs a fixed amount in `XTR` and the `stars` rail; the
    /// invoice link is then a subscription link, and each renewal is paid as an invoice of its
    /// own (`GET /v1/subscriptions`).
    #[schema(value_type = Option<u64>, example = 2592000)]
    pub subscription_period: Option<Value>,
}

/// The rails a merchant can take in `mode`: `balance`, `sandbox` in test mode, `stars` when
/// the merchant connected a bot and `lightning` when it connected a Lightning node.
///
/// `stars` says whether the merchant has connected a Telegram bot in this mode
/// (`PUT /v1/rails/stars`, see [`super::stars::connected`]); `lightning` whether it has a
/// Lightning node (`PUT /v1/rails/lightning`).
pub fn configured_rails(mode: Mode, stars: bool, lightning: bool) -> Vec<Rail> {
    let mut rails = match mode {
        Mode::Live => vec![Rail::Balance],
        Mode::Test => vec![Rail::Balance, Rail::Sandbox],
    };
    if stars {
        rails.push(Rail::Stars);
    }
    if lightning {
        rails.push(Rail::Lightning);
    }
    rails
}

fn invoice_error(error: InvoiceError) -> ApiError {
    let param = match &error {
        InvoiceError::AmountOutOfRange | InvoiceError::AmountMismatch { .. } => Some("amount"),
        InvoiceError::AmountRequired { .. } => Some("amount"),
        InvoiceError::BadBounds => Some("amount_min"),
        InvoiceError::BadPresets => Some("amount_presets"),
        InvoiceError::BadExpiry => Some("expires_in"),
        InvoiceError::DescriptionTooLong => Some("description"),
        InvoiceError::PayloadTooLong => Some("payload"),
        InvoiceError::NoRails => Some("rails"),
        _ => None,
    };
    let api = match &error {
        InvoiceError::NotOpen(_) => ApiError::conflict("invoice_not_open", error.to_string()),
        InvoiceError::Expired => ApiError::conflict("invoice_expired", error.to_string()),
        InvoiceError::NotPaid(_) => ApiError::conflict("invoice_not_paid", error.to_string()),
        InvoiceError::RefundTooLarge { .. } => {
            ApiError::invalid("refund_too_large", error.to_string())
        }
        InvoiceError::RailNotAccepted(_) => {
            ApiError::invalid("rail_not_accepted", error.to_string())
        }
        InvoiceError::BadExpiry => ApiError::invalid("invalid_expires_in", error.to_string()),
        _ => ApiError::invalid("invalid_invoice", error.to_string()),
    };
    match param {
        Some(param) => api.param(param),
        None => api,
    }
}

/// Maps invoice rule refusals to API errors (shared with refunds).
pub fn map_invoice_error(error: InvoiceError) -> ApiError {
    invoice_error(error)
}

fn parse_new(
    request: CreateInvoice,
    mode: Mode,
    stars: bool,
    lightning: bool,
    card: Option<&farthing_store::CardProvider>,
) -> Result<NewInvoice, ApiError> {
    let currency = extract::currency(&request.currency, "currency")?;
    let amount = match extract::optional_amount(&request.amount, "amount")? {
        Some(amount) => {
            if request.amount_presets.is_some()
                || request.amount_min.is_some()
                || request.amount_max.is_some()
            {
                return Err(ApiError::invalid(
                    "invalid_invoice",
                    "give either amount, or amount_presets/amount_min/amount_max for an amountless invoice, not both",
                )
                .param("amount"));
            }
            InvoiceAmount::Fixed(amount)
        }
        None => {
            let presets = request
                .amount_presets
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, v)| extract::amount(v, &format!("amount_presets[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            InvoiceAmount::Open {
                presets,
                min_minor: extract::optional_amount(&request.amount_min, "amount_min")?
                    .unwrap_or(1),
                max_minor: extract::optional_amount(&request.amount_max, "amount_max")?
                    .unwrap_or(farthing_core::money::MAX_AMOUNT_MINOR),
            }
        }
    };
    let expires_in_s = match &request.expires_in {
        None | Some(Value::Null) => DEFAULT_EXPIRES_IN_S,
        Some(value) => value.as_u64().ok_or_else(|| {
            ApiError::invalid(
                "invalid_expires_in",
                "expires_in must be a whole number of seconds",
            )
            .param("expires_in")
        })?,
    };
    let mut accepted = configured_rails(mode, stars, lightning);
    if card.is_some() {
        accepted.push(Rail::Card);
    }
    // The card rail carries the fiat currencies its provider was set up for.
    let card_takes = card.is_some_and(|provider| super::cards::takes(provider, currency));
    // The smallest amount the invoice can be paid with: a rail whose published maximum for one
    // payment is below it cannot carry the invoice.
    let least_minor = match &amount {
        InvoiceAmount::Fixed(fixed) => *fixed,
        InvoiceAmount::Open { min_minor, .. } => *min_minor,
    };
    let fits = |rail: Rail| {
        rail.max_payment_minor(currency)
            .is_none_or(|max| least_minor <= max)
    };
    let rails = match request.rails {
        // By default every configured rail that can carry the currency and the amount:
        // Lightning carries BTC only (amounts in satoshis).
        None => accepted
            .into_iter()
            .filter(|rail| *rail != Rail::Lightning || currency == Currency::BTC)
            .filter(|rail| *rail != Rail::Card || card_takes)
            .filter(|rail| fits(*rail))
            .collect(),
        Some(names) => {
            let mut rails = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let rail: Rail =
                    name.parse()
                        .map_err(|error: farthing_core::rail::UnknownRail| {
                            ApiError::invalid("invalid_rail", error.to_string())
                                .param(format!("rails[{i}]"))
                        })?;
                if !accepted.contains(&rail) {
                    return Err(ApiError::invalid(
                        "rail_not_configured",
                        format!(
                            "the {rail} rail is not configured for this merchant{}; see GET /v1/rails",
                            if mode.is_live() { "" } else { " in test mode" }
                        ),
                    )
                    .param(format!("rails[{i}]")));
                }
                if rail == Rail::Lightning && currency != Currency::BTC {
                    return Err(ApiError::invalid(
                        "rail_currency_mismatch",
                        format!(
                            "the lightning rail takes BTC invoices (amounts in satoshis), not {currency}"
                        ),
                    )
                    .param(format!("rails[{i}]")));
                }
                if !fits(rail) {
                    return Err(ApiError::invalid(
                        "amount_exceeds_rail_limit",
                        format!(
                            "one {rail} payment carries at most {} {currency} minor units (the rail's published limit); lower the amount or leave {rail} out",
                            rail.max_payment_minor(currency).unwrap_or_default()
                        ),
                    )
                    .param(format!("rails[{i}]")));
                }
                if rail == Rail::Card && !card_takes {
                    return Err(ApiError::invalid(
                        "rail_currency_mismatch",
                        format!(
                            "the card rail takes the fiat currencies set with PUT /v1/rails/card, not {currency}"
                        ),
                    )
                    .param(format!("rails[{i}]")));
                }
                if !rails.contains(&rail) {
                    rails.push(rail);
                }
            }
            rails
        }
    };
    let customer = request
        .customer
        .as_deref()
        .map(|id| extract::id_param::<CustomerId>(id, "customer"))
        .transpose()?;
    Ok(NewInvoice {
        currency,
        amount,
        description: request.description.unwrap_or_default(),
        payload: request.payload,
        rails,
        customer,
        expires_in_s,
        metadata: extract::metadata(request.metadata)?,
    })
}

/// `POST /v1/invoices`
#[utoipa::path(
    post,
    path = "/v1/invoices",
    tag = "invoices",
    operation_id = "create_invoice",
    summary = "Create an invoice",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateInvoice, content_type = "application/json", description = "A fixed `amount`, or none for an amountless invoice (then `amount_presets`, `amount_min`, `amount_max`)."),
    responses(
        (status = 201, description = "The new open invoice; an `invoice.created` event is written with it. A fixed-amount `XTR` invoice that accepts `stars` carries `payment_instructions.stars.invoice_link`, and a fixed-amount fiat invoice that accepts `card` carries `payment_instructions.card.invoice_link` (Telegram `createInvoiceLink`, with the payment provider token for `card`, asked after the invoice is stored; when Telegram fails the invoice is created without it).", body = spec::Invoice, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), an unknown currency (`invalid_currency`), a bad amount (`invalid_amount`), a bad amountless setup, expiry, description or payload (`invalid_invoice`, `invalid_expires_in`), an unknown or unconfigured rail (`invalid_rail`, `rail_not_configured`), a rail that does not carry the currency (`rail_currency_mismatch`: lightning takes BTC, card the fiat currencies of `PUT /v1/rails/card`), an amount above a requested rail's published limit for one payment (`amount_exceeds_rail_limit`: 100000 XTR for stars, 10000 XTR per period for a stars subscription; without `rails` such a rail is left out), an unknown customer (`invalid_id`, `customer_not_found`), or bad metadata (`invalid_metadata`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: CreateInvoice = extract::json_body(&headers, &body)?;
    let subscription = request.subscription_period.clone();
    let (merchant, mode) = (principal.merchant, principal.mode);
    let (bot, node, card) = state.store(mode).read(move |reader| {
        Ok((
            reader.telegram_bot(merchant)?,
            reader.lightning_node(merchant)?,
            reader.card_provider(merchant)?,
        ))
    })?;
    let card = card.filter(|_| bot.is_some());
    let new = parse_new(
        request,
        principal.mode,
        bot.is_some(),
        node.is_some(),
        card.as_ref(),
    )?;
    // Everything that does not depend on the database is built here, on the async workers,
    // so that the single writer thread only checks and inserts (it is the bottleneck under
    // load, see BENCHMARKS.md).
    let customer = new.customer;
    let id: InvoiceId = new_id();
    let mut invoice = new
        .into_invoice(id, merchant, super::wall_clock_ns())
        .map_err(invoice_error)?;
    invoice.subscription_period_s = subscription_period(&subscription, &invoice)?;
    let object = render::invoice(&invoice, mode, &state.checkout_url(&id.encode()));
    // A Stars invoice link is asked for only once the invoice is committed (network I/O never
    // runs inside a store job), and only for a fixed-amount XTR invoice that accepts `stars`.
    // Likewise the card rail's provider invoice link, for a fixed amount in a fiat currency.
    let card_params = card
        .as_ref()
        .filter(|_| invoice.rails.contains(&Rail::Card))
        .and_then(|provider| super::cards::link_params(&invoice, provider));
    let link_request = match card_params {
        Some(params) => bot.map(|bot| (bot, params, object.clone(), Rail::Card)),
        None => bot
            .filter(|_| invoice.rails.contains(&Rail::Stars))
            .and_then(|bot| {
                stars_link_params(&invoice).map(|params| (bot, params, object.clone(), Rail::Stars))
            }),
    };
    let lightning_invoice = crate::lightning::wants_bolt11(&invoice).then(|| invoice.clone());
    let event = super::event_record(
        merchant,
        mode,
        "invoice.created",
        &object,
        invoice.created_at_ns,
    );
    let response = write(
        &state,
        &principal,
        &headers,
        "POST /v1/invoices",
        &body,
        move |tx| {
            if let Some(customer) = customer {
                super::require_customer(tx, merchant, customer)?;
            }
            tx.insert_invoice(&invoice)?;
            tx.insert_event(&event)?;
            Ok((StatusCode::CREATED, object))
        },
    )
    .await?;
    if response.status() != StatusCode::CREATED
        || response.headers().contains_key("idempotent-replayed")
    {
        return Ok(response);
    }
    if let Some(invoice) = lightning_invoice {
        // The BOLT11 is made once the invoice is committed; when the node fails, the invoice
        // stands without it and the checkout page asks the node again when it is opened.
        return match crate::lightning::attach_bolt11(&state, mode, &invoice).await {
            Ok(Some(bolt11)) => {
                let mut invoice = invoice;
                invoice
                    .instructions
                    .insert(Rail::Lightning, crate::instructions::bolt11_json(&bolt11));
                let object = render::invoice(&invoice, mode, &state.checkout_url(&id.encode()));
                Ok((StatusCode::CREATED, axum::Json(object)).into_response())
            }
            Ok(None) => Ok(response),
            Err(error) => {
                tracing::warn!(invoice = %id.encode(), code = error.code, message = %error.message, "the invoice has no BOLT11 yet");
                Ok(response)
            }
        };
    }
    let Some((bot, params, mut object, rail)) = link_request else {
        return Ok(response);
    };
    let Some(link) = create_stars_link(&bot, &params).await else {
        return Ok(response);
    };
    let stored = link.clone();
    let saved = state
        .store(mode)
        .run(move |tx| match rail {
            Rail::Card => tx.set_instructions(
                id,
                Rail::Card,
                &crate::instructions::invoice_link_json(&stored),
            ),
            _ => tx.set_instructions(
                id,
                Rail::Stars,
                &crate::instructions::invoice_link_json(&stored),
            ),
        })
        .await;
    match saved {
        Ok(Ok(true)) => {
            object["payment_instructions"][rail.as_str()] = json!({"invoice_link": link});
            Ok((StatusCode::CREATED, axum::Json(object)).into_response())
        }
        Ok(Ok(false)) => Ok(response),
        Ok(Err(error)) => {
            tracing::warn!(%error, invoice = %id.encode(), "could not store the Stars invoice link");
            Ok(response)
        }
        Err(error) => {
            tracing::warn!(%error, invoice = %id.encode(), "could not store the Stars invoice link");
            Ok(response)
        }
    }
}

/// Checks `subscription_period`: only Telegram's 30 days, on a fixed-amount `XTR` invoice that
/// accepts `stars` (the rail that renews it).
fn subscription_period(
    value: &Option<Value>,
    invoice: &farthing_core::invoice::Invoice,
) -> Result<Option<u32>, ApiError> {
    let period = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value.as_u64(),
    };
    let bad = |message: &str| {
        ApiError::invalid("invalid_subscription", message.to_owned()).param("subscription_period")
    };
    let period = period
        .filter(|p| *p == u64::from(crate::telegram::client::STARS_SUBSCRIPTION_PERIOD_S))
        .ok_or_else(|| bad("subscription_period must be 2592000 (30 days), the only period Telegram Stars subscriptions have"))?;
    if invoice.currency.code() != "XTR" || !matches!(invoice.amount, InvoiceAmount::Fixed(_)) {
        return Err(bad(
            "a subscription invoice has a fixed amount in XTR (Telegram Stars)",
        ));
    }
    if !invoice.rails.contains(&Rail::Stars) {
        return Err(bad(
            "a subscription is paid and renewed by Telegram Stars: the invoice must accept the stars rail (PUT /v1/rails/stars)",
        ));
    }
    if matches!(invoice.amount, InvoiceAmount::Fixed(amount) if amount > farthing_core::rail::MAX_STARS_SUBSCRIPTION)
    {
        return Err(ApiError::invalid(
            "amount_exceeds_rail_limit",
            format!(
                "a Telegram Stars subscription costs at most {} XTR per period (Bot API)",
                farthing_core::rail::MAX_STARS_SUBSCRIPTION
            ),
        )
        .param("amount"));
    }
    u32::try_from(period)
        .map(Some)
        .map_err(|_| bad("subscription_period is too large"))
}

/// Cuts `text` to at most `max` characters.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The title (1–32 characters) and description (1–255) of an invoice's Telegram invoice: its
/// description, else "Payment" and its id.
pub(crate) fn link_texts(invoice: &farthing_core::invoice::Invoice) -> (String, String) {
    let text = invoice.description.trim();
    if text.is_empty() {
        ("Payment".to_owned(), invoice.id.encode())
    } else {
        (cut(text, 32), cut(text, 255))
    }
}

/// The `createInvoiceLink` parameters of a fixed-amount `XTR` invoice (`None` otherwise): one
/// price, no provider token, the invoice id as payload.
pub(crate) fn stars_link_params(
    invoice: &farthing_core::invoice::Invoice,
) -> Option<InvoiceParams> {
    let InvoiceAmount::Fixed(amount) = invoice.amount else {
        return None;
    };
    if invoice.currency.code() != "XTR" {
        return None;
    }
    let amount = i64::try_from(amount).ok()?;
    let id = invoice.id.encode();
    let (title, description) = link_texts(invoice);
    Some(match invoice.subscription_period_s {
        Some(_) => InvoiceParams::stars_subscription(&title, &description, &id, amount),
        None => InvoiceParams::stars(&title, &description, &id, amount),
    })
}

/// Asks Telegram for the Stars invoice link; `None` (and a warning) when it fails: the invoice
/// stays valid without it.
async fn create_stars_link(bot: &TelegramBot, params: &InvoiceParams) -> Option<String> {
    let client = match crate::telegram::webhook::client(bot) {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(error = %error.message, bot_id = bot.bot_id, "no Bot API client for the Stars invoice link");
            return None;
        }
    };
    match client.create_invoice_link(params).await {
        Ok(link) => Some(link),
        Err(error) => {
            tracing::warn!(%error, bot_id = bot.bot_id, invoice = %params.payload, "createInvoiceLink failed; the invoice has no Telegram invoice link");
            None
        }
    }
}

/// Loads an invoice of the principal's merchant, or 404.
pub fn load(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<farthing_core::invoice::Invoice, ApiError> {
    let invoice_id: InvoiceId = extract::id_path(id)?;
    state
        .store(principal.mode)
        .read(|reader| reader.invoice(invoice_id))?
        .filter(|invoice| invoice.merchant == principal.merchant)
        .ok_or_else(|| ApiError::not_found("invoice", id))
}

/// `GET /v1/invoices/{id}`
#[utoipa::path(
    get,
    path = "/v1/invoices/{id}",
    tag = "invoices",
    operation_id = "retrieve_invoice",
    summary = "Retrieve an invoice",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The invoice, `inv_…` (a malformed id is not found: 404).")),
    responses(
        (status = 200, description = "The invoice.", body = spec::Invoice),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 404, description = "No such invoice for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
    ),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("invoices:read")?;
    let invoice = load(&state, &principal, &id)?;
    let url = state.checkout_url(&invoice.id.encode());
    Ok(axum::Json(render::invoice(&invoice, principal.mode, &url)).into_response())
}

/// `GET /v1/invoices`
#[utoipa::path(
    get,
    path = "/v1/invoices",
    tag = "invoices",
    operation_id = "list_invoices",
    summary = "List invoices",
    security(("bearer" = [])),
    params(spec::ListParams),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::InvoiceList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("invoices:read")?;
    let request = extract::list_query(query.as_deref())?.page::<InvoiceId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.invoices(principal.merchant, request))?;
    let data = page
        .data
        .iter()
        .map(|invoice| {
            render::invoice(
                invoice,
                principal.mode,
                &state.checkout_url(&invoice.id.encode()),
            )
        })
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/invoices"))
}

/// `POST /v1/invoices/{id}/cancel`
#[utoipa::path(
    post,
    path = "/v1/invoices/{id}/cancel",
    tag = "invoices",
    operation_id = "cancel_invoice",
    summary = "Cancel an invoice",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The invoice, `inv_…` (a malformed id is not found: 404)."), spec::IdempotencyKey),
    request_body(content = Option<EmptyBody>, content_type = "application/json", description = "Empty, or `{}`."),
    responses(
        (status = 200, description = "The canceled invoice; an `invoice.canceled` event is written with it.", body = spec::Invoice, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 404, description = "No such invoice for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let _: EmptyBody = extract::json_body(&headers, &body)?;
    let invoice_id: InvoiceId = extract::id_path(&id)?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let url = state.checkout_url(&id);
    let route = format!("POST /v1/invoices/{id}/cancel");
    write(&state, &principal, &headers, &route, &body, move |tx| {
        let mut invoice = super::require_invoice(tx, merchant, invoice_id)?;
        invoice.cancel(tx.now_ns()).map_err(invoice_error)?;
        tx.update_invoice(&invoice)?;
        let object = render::invoice(&invoice, mode, &url);
        emit(tx, merchant, mode, "invoice.canceled", object.clone())?;
        Ok((StatusCode::OK, object))
    })
    .await
}

/// A body that must be empty or `{}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// `POST /v1/invoices/{id}/pay` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayInvoice {
    /// The paying customer, `cus_…`.
    pub customer: String,
    /// For amountless invoices: the amount chosen.
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub amount: Option<Value>,
}

/// `POST /v1/invoices/{id}/pay`: pays from the customer's balance (rail `balance`).
#[utoipa::path(
    post,
    path = "/v1/invoices/{id}/pay",
    tag = "invoices",
    operation_id = "pay_invoice",
    summary = "Pay an invoice from a customer's balance",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The invoice, `inv_…` (a malformed id is not found: 404)."), spec::IdempotencyKey),
    request_body(content = PayInvoice, content_type = "application/json"),
    responses(
        (status = 200, description = "The paid invoice; `invoice.paid` and `customer.balance_changed` events are written with it.", body = spec::Invoice, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), an unknown customer (`invalid_id`, `customer_not_found`), another customer than the invoice expects (`customer_mismatch`), a bad amount (`invalid_amount`, `invalid_invoice`: an amount that differs from a fixed one, or outside an amountless invoice's range), an invoice that does not accept the `balance` rail (`rail_not_accepted`), or a payment that would take the merchant's balance beyond the largest amount farthing stores (`amount_too_large`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 402, description = "The customer's balance is too small (`insufficient_funds`); nothing was written.", body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 404, description = "No such invoice for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`) or has expired (`invoice_expired`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn pay(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: PayInvoice = extract::json_body(&headers, &body)?;
    let invoice_id: InvoiceId = extract::id_path(&id)?;
    let customer: CustomerId = extract::id_param(&request.customer, "customer")?;
    let amount = extract::optional_amount(&request.amount, "amount")?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let url = state.checkout_url(&id);
    let route = format!("POST /v1/invoices/{id}/pay");
    write(&state, &principal, &headers, &route, &body, move |tx| {
        pay_from_balance(tx, merchant, mode, invoice_id, customer, amount, &url)
    })
    .await
}

/// Pays `invoice_id` from `customer`'s balance inside the current job: the one booking path of
/// `POST /v1/invoices/{id}/pay` and the Mini App's `POST /webapp/pay/{invoice}`. The transfer id
/// is the invoice's, so the ledger refuses a second booking of the same invoice.
pub(crate) fn pay_from_balance(
    tx: &mut farthing_store::Tx<'_, '_>,
    merchant: farthing_core::MerchantId,
    mode: crate::state::Mode,
    invoice_id: InvoiceId,
    customer: CustomerId,
    amount: Option<u64>,
    url: &str,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    let mut invoice = super::require_invoice(tx, merchant, invoice_id)?;
    super::require_customer(tx, merchant, customer)?;
    if invoice
        .customer
        .is_some_and(|expected| expected != customer)
    {
        return Err(
            ApiError::invalid("customer_mismatch", "this invoice is for another customer")
                .param("customer"),
        );
    }
    let amount_minor = invoice
        .payable_amount(Rail::Balance, amount, tx.now_ns())
        .map_err(invoice_error)?;
    let currency = invoice.currency;
    // The payment's transfer id is the invoice's: the ledger itself refuses a second one.
    let transfer_id = TransferId(invoice_id.raw());
    let group = book::transfer(
        transfer_id,
        book::customer(merchant, customer, currency),
        book::merchant(merchant, currency),
        amount_minor,
        book::PAYMENT,
        invoice_id.raw(),
    );
    tx.apply(&group)?
        .map_err(|error| ledger_error(error, "the customer", currency))?;
    invoice
        .mark_paid(InvoicePayment {
            amount_minor,
            rail: Rail::Balance,
            customer: Some(customer),
            transfer_id,
            paid_at_ns: tx.now_ns(),
        })
        .map_err(invoice_error)?;
    tx.update_invoice(&invoice)?;
    let object = render::invoice(&invoice, mode, url);
    emit(tx, merchant, mode, "invoice.paid", object.clone())?;
    super::customers::emit_balance_changed(tx, merchant, mode, customer, currency)?;
    Ok((StatusCode::OK, object))
}
