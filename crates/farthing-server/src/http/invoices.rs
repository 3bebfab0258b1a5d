//! `/v1/invoices`: create, retrieve, list, cancel, and pay from a customer balance (SPEC I1–I4,
//! RL1).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use farthing_app::invoices::{self, InvoiceRequest};
use farthing_app::risk::RiskCheck;
use farthing_core::invoice::{InvoiceAmount, InvoiceError, DEFAULT_EXPIRES_IN_S};
use farthing_core::risk::Operation;
use farthing_core::{CustomerId, InvoiceId, PublicId, Rail};
use serde::Deserialize;
use serde_json::Value;

use super::{list_answer, write};
use crate::render;
use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

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
    /// A top-up: paying the invoice (on any rail but `balance`) puts the money on `customer`'s
    /// balance (required), with `invoice.paid` and then `customer.balance_changed`. Fixed or
    /// amountless (the payer chooses within `amount_min`/`amount_max`). Sets
    /// `metadata.purpose = "top_up"`.
    #[schema(default = false)]
    pub top_up: Option<bool>,
    /// Where the checkout page sends the payer back to your shop once the invoice is paid
    /// (or expired): an absolute `https://` (or `http://`) URL of at most 2000 characters,
    /// shown as a "Back to …" link with the receipt.
    #[schema(max_length = 2000, example = "https://shop.example/orders/42")]
    pub return_url: Option<String>,
}

/// Maps invoice rule refusals to API errors (shared with refunds).
pub fn map_invoice_error(error: InvoiceError) -> ApiError {
    farthing_app::invoices::invoice_error(error).into()
}

/// The service's request from the API's body: amounts, names and ids parsed (the rules are the
/// service's).
fn parse_request(request: CreateInvoice) -> Result<InvoiceRequest, ApiError> {
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
    let rails = request
        .rails
        .map(|names| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    name.parse::<Rail>()
                        .map_err(|error: farthing_core::rail::UnknownRail| {
                            ApiError::invalid("invalid_rail", error.to_string())
                                .param(format!("rails[{i}]"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let customer = request
        .customer
        .as_deref()
        .map(|id| extract::id_param::<CustomerId>(id, "customer"))
        .transpose()?;
    let subscription_period_s = match &request.subscription_period {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            ApiError::invalid(
                "invalid_subscription",
                "subscription_period must be 2592000 (30 days), the only period Telegram Stars subscriptions have",
            )
            .param("subscription_period")
        })?),
    };
    let mut metadata = extract::metadata(request.metadata)?;
    if request.top_up == Some(true) {
        let (key, value) = farthing_app::settlement::TOP_UP_METADATA;
        match metadata.iter().find(|(k, _)| k == key) {
            Some((_, existing)) if existing != value => {
                return Err(ApiError::invalid(
                    "invalid_metadata",
                    format!(
                        "metadata.{key} is reserved for top-ups (\"{value}\"); use another key"
                    ),
                )
                .param(format!("metadata[{key}]")))
            }
            Some(_) => {}
            None => metadata.push((key.to_owned(), value.to_owned())),
        }
    }
    let return_url = request
        .return_url
        .map(|url| check_return_url(&url).map(|()| url))
        .transpose()?;
    Ok(InvoiceRequest {
        return_url,
        currency,
        amount,
        description: request.description.unwrap_or_default(),
        payload: request.payload,
        rails,
        customer,
        expires_in_s,
        metadata,
        subscription_period_s,
    })
}

/// Longest `return_url`, in bytes.
const MAX_RETURN_URL_BYTES: usize = 2000;

/// A return link the checkout may show: absolute, `http(s)`, with a host and no credentials.
fn check_return_url(text: &str) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        Err(ApiError::invalid(
            "invalid_return_url",
            format!("return_url {why}: give an absolute https:// URL of at most {MAX_RETURN_URL_BYTES} characters, e.g. https://shop.example/orders/42"),
        )
        .param("return_url"))
    };
    if text.len() > MAX_RETURN_URL_BYTES {
        return refuse("is too long");
    }
    let Ok(url) = reqwest::Url::parse(text) else {
        return refuse("is not a URL");
    };
    if !matches!(url.scheme(), "https" | "http") {
        return refuse("must use https or http");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return refuse("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("must not carry credentials");
    }
    Ok(())
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
    request_body(content = CreateInvoice, content_type = "application/json", description = "A fixed `amount`, or none for an amountless invoice (then `amount_presets`, `amount_min`, `amount_max`).", example = json!({"amount": 50, "currency": "XTR", "description": "One AI generation", "customer": "cus_01m8xps3vzdwahmws0hy00crqv", "metadata": {"generation": "gen_42"}, "return_url": "https://shop.example/generations/42"})),
    responses(
        (status = 201, description = "The new open invoice; an `invoice.created` event is written with it. A fixed-amount `XTR` invoice that accepts `stars` carries `payment_instructions.stars.invoice_link`, and a fixed-amount fiat invoice that accepts `card` carries `payment_instructions.card.invoice_link` (Telegram `createInvoiceLink`, with the payment provider token for `card`, asked after the invoice is stored; when Telegram fails the invoice is created without it).", body = spec::Invoice, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.")), example = json!({"id": "inv_01m8xps3tw42zjzftw7hb4kdkh", "object": "invoice", "livemode": false, "status": "open", "amount": 50, "amount_presets": null, "amount_min": null, "amount_max": null, "currency": "XTR", "description": "One AI generation", "payload": null, "rails": ["stars", "balance"], "customer": "cus_01m8xps3vzdwahmws0hy00crqv", "metadata": {"generation": "gen_42"}, "amount_paid": null, "amount_refunded": 0, "paid_rail": null, "paid_by": null, "paid_at": null, "created": 1796293300, "expires_at": 1796294200, "closed_at": null, "checkout_url": "https://pay.shop.example/pay/inv_01m8xps3tw42zjzftw7hb4kdkh", "return_url": "https://shop.example/generations/42", "payment_instructions": {"stars": {"invoice_link": "https://t.me/$AbCdEfGhIjKl"}}, "subscription_period": null})),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), an unknown currency (`invalid_currency`), a bad amount (`invalid_amount`), a bad amountless setup, expiry, description or payload (`invalid_invoice`, `invalid_expires_in`), an unknown or unconfigured rail (`invalid_rail`, `rail_not_configured`), a rail that does not carry the currency (`rail_currency_mismatch`: lightning takes BTC, card the fiat currencies of `PUT /v1/rails/card`), an amount above a requested rail's published limit for one payment (`amount_exceeds_rail_limit`: 100000 XTR for stars, 10000 XTR per period for a stars subscription; without `rails` such a rail is left out), an unknown customer (`invalid_id`, `customer_not_found`), or bad metadata (`invalid_metadata`), a bad `return_url` (`invalid_return_url`), or, in live mode, `rails: [\"balance\"]` for a merchant without a Telegram bot, which no payer could reach (`invoice_not_payable`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Checked<CreateInvoice>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let request = parse_request(body.value)?;
    // Everything that does not depend on the database is built here, on the async workers,
    // so that the single writer thread only checks and inserts (it is the bottleneck under
    // load, see BENCHMARKS.md).
    // Asked for explicitly: a merchant with no rail configured yet still gets its (balance)
    // invoice, whose page then says it cannot be paid there.
    let balance_only = request.rails.as_deref() == Some(&[Rail::Balance][..]);
    let prepared = invoices::prepare(state.app(), state.rails(), mode, merchant, request)?;
    if mode.is_live() && balance_only {
        // A balance is reached only through the merchant's bot (its Mini App and buttons): with
        // none, such an invoice would be a dead end for every payer.
        let has_bot = state
            .store(mode)
            .read(move |reader| reader.telegram_bot(merchant))?
            .is_some();
        if !has_bot {
            return Err(ApiError::invalid(
                "invoice_not_payable",
                "an invoice whose only rail is balance can be paid only through your Telegram bot (its Mini App or buttons), and this merchant has no bot: connect one with PUT /v1/rails/stars, or accept a rail a browser can pay (leave rails out for all configured ones)",
            )
            .param("rails"));
        }
    }
    // Rendered here, on the async workers: the job runs on the single writer thread.
    let object: Value = render::invoice(
        &prepared.invoice,
        mode,
        &state.app().checkout_url(prepared.invoice.id),
    )
    .into();
    let stored = prepared.clone();
    let response = write(
        &state,
        &principal,
        &body.headers,
        "POST /v1/invoices",
        &body.raw,
        move |tx| {
            invoices::insert(tx, &stored)?;
            Ok((StatusCode::CREATED, object))
        },
    )
    .await?;
    if response.status() != StatusCode::CREATED
        || response.headers().contains_key("idempotent-replayed")
    {
        return Ok(response);
    }
    // Each rail's payment instructions, made once the invoice is committed (network I/O never
    // runs inside a store job); a rail that fails leaves the invoice without its instructions.
    let needs = prepared
        .invoice
        .rails
        .iter()
        .any(|rail| !matches!(rail, Rail::Balance | Rail::Sandbox));
    if !needs {
        return Ok(response);
    }
    let invoice =
        invoices::attach_instructions(state.app(), state.rails(), mode, prepared.invoice).await;
    if invoice.instructions.is_empty() {
        return Ok(response);
    }
    let object = render::invoice(&invoice, mode, &state.app().checkout_url(invoice.id));
    Ok((StatusCode::CREATED, axum::Json(object)).into_response())
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
        (status = 404, description = "No such invoice for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
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
    params(
        spec::ListParams,
        ("customer" = Option<String>, Query, description = "Only those of this customer, `cus_…`."),
        ("created[gte]" = Option<u64>, Query, description = "Only those created at or after this time (Unix seconds)."),
        ("created[lte]" = Option<u64>, Query, description = "Only those created at or before this time (Unix seconds)."),
        ("status" = Option<String>, Query, description = "Only those in this status: `open`, `paid`, `expired`, `canceled`, `partially_refunded` or `refunded`."),
    ),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::InvoiceList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("invoices:read")?;
    let query = extract::list_query_with(query.as_deref(), &extract::OBJECT_FILTERS)?;
    let filter = extract::list_filter(
        &query,
        &[
            "open",
            "paid",
            "expired",
            "canceled",
            "partially_refunded",
            "refunded",
        ],
    )?;
    let request = query.page::<InvoiceId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.invoices_where(principal.merchant, request, &filter))?;
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
        (status = 404, description = "No such invoice for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<EmptyBody>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let invoice_id: InvoiceId = extract::id_path(&id)?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let route = format!("POST /v1/invoices/{id}/cancel");
    let app = state.app().clone();
    write(
        &state,
        &principal,
        &body.headers,
        &route,
        &body.raw,
        move |tx| {
            let invoice = invoices::cancel(tx, &app, mode, merchant, invoice_id)?;
            let object = render::invoice(&invoice, mode, &app.checkout_url(invoice.id));
            Ok((StatusCode::OK, object.into()))
        },
    )
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
        (status = 402, description = "The customer's balance is too small (`insufficient_funds`); nothing was written. Or the merchant's risk rules refused the payment (`risk_refused`, with `decision`: see `GET /v1/risk/decisions`); nothing was written.", body = spec::Error),
        (status = 404, description = "No such invoice for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`) or has expired (`invoice_expired`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn pay(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<PayInvoice>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let invoice_id: InvoiceId = extract::id_path(&id)?;
    let customer: CustomerId = extract::id_param(&body.value.customer, "customer")?;
    let amount = extract::optional_amount(&body.value.amount, "amount")?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let route = format!("POST /v1/invoices/{id}/pay");
    let app = state.app().clone();
    let risk = RiskCheck::new(state.app(), mode, merchant, Operation::BalancePayment)
        .subject(invoice_id.encode())
        .stepped_up(super::step_up::passed(&state, &principal, &body.headers).await?);
    let guard = risk.clone();
    let answer = write(
        &state,
        &principal,
        &body.headers,
        &route,
        &body.raw,
        move |tx| {
            let invoice = invoices::pay_from_balance(tx, &guard, invoice_id, customer, amount)?;
            let object = render::invoice(&invoice, mode, &app.checkout_url(invoice.id));
            Ok((StatusCode::OK, object.into()))
        },
    )
    .await;
    risk.finish().await?;
    answer
}
