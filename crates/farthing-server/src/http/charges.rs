//! `/v1/charges` (pay-per-use against a balance, SPEC PR2) and `/v1/refunds` (back to the
//! customer's balance, or through Telegram for a Stars-paid invoice; never more than was paid).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_app::charges::{self, ChargeRequest};
use farthing_app::refunds::{self, RefundRequest, Target, UnnamedPayer};
use farthing_app::risk::RiskCheck;
use farthing_core::risk::Operation;
use farthing_core::{ChargeId, CustomerId, PublicId, RefundId};
use serde::Deserialize;
use serde_json::Value;

use super::{list_answer, write};
use crate::render;
use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

/// `POST /v1/charges` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCharge {
    /// Whose balance pays, `cus_…`.
    pub customer: String,
    /// Amount in minor units.
    #[schema(value_type = u64, minimum = 1, example = 100)]
    pub amount: Value,
    /// Currency of the balance.
    #[schema(example = "USD")]
    pub currency: String,
    /// Shown in statements (e.g. "1 AI generation").
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Merchant key/value data kept on the charge (at most 50 keys of 1-40 characters, string
    /// values of at most 500), e.g. the generation it paid for.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// `POST /v1/charges`: debits the balance at once; 402 `insufficient_funds` writes nothing.
#[utoipa::path(
    post,
    path = "/v1/charges",
    tag = "charges",
    operation_id = "create_charge",
    summary = "Charge a customer's balance",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateCharge, content_type = "application/json", example = json!({"customer": "cus_01m8xps3vzdwahmws0hy00crqv", "amount": 3, "currency": "XTR", "description": "1 API call", "metadata": {"request": "req_881"}})),
    responses(
        (status = 201, description = "The charge; `charge.succeeded` and `customer.balance_changed` events are written with it.", body = spec::Charge, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.")), example = json!({"id": "chg_01m8xps3xn47n0b22ztnhdjb39", "object": "charge", "livemode": false, "status": "succeeded", "customer": "cus_01m8xps3vzdwahmws0hy00crqv", "amount": 3, "amount_refunded": 0, "currency": "XTR", "description": "1 API call", "metadata": {"request": "req_881"}, "created": 1796293300})),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), an unknown customer (`invalid_id`, `customer_not_found`), a bad amount (`invalid_amount`), an unknown currency (`invalid_currency`), a description over 500 characters (`invalid_description`), bad metadata (`invalid_metadata`), or a charge that would take the merchant's balance beyond the largest amount farthing stores (`amount_too_large`).", body = spec::Error),
        (status = 402, description = "The customer's balance is too small (`insufficient_funds`); nothing was written. `available` and `requested` say by how much. Or the merchant's risk rules refused the payment (`risk_refused`, with `decision`: see `GET /v1/risk/decisions`); nothing was written.", body = spec::Error, example = json!({"error": {"type": "payment_error", "code": "insufficient_funds", "message": "insufficient funds: the customer has 2 XTR available and 3 XTR was asked", "param": null, "available": 2, "requested": 3}})),
        spec::WriteErrors,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Checked<CreateCharge>,
) -> Result<Response, ApiError> {
    principal.require("charges:write")?;
    let request = &body.value;
    let customer: CustomerId = extract::id_param(&request.customer, "customer")?;
    let amount_minor = extract::amount(&request.amount, "amount")?;
    let currency = extract::currency(&request.currency, "currency")?;
    let metadata = extract::metadata(request.metadata.clone())?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    // Built on the async workers, not in the writer's job (the writer is the bottleneck).
    let prepared = charges::prepare(
        state.app(),
        mode,
        merchant,
        ChargeRequest {
            customer,
            amount_minor,
            currency,
            description: request.description.clone().unwrap_or_default(),
            metadata,
        },
    )?;
    // Rendered here, on the async workers: the job runs on the single writer thread.
    let object: Value = render::charge(&prepared.charge, mode).into();
    let risk = RiskCheck::new(state.app(), mode, merchant, Operation::Charge)
        .subject(prepared.charge.id.encode())
        .stepped_up(super::step_up::passed(&state, &principal, &body.headers).await?);
    let guard = risk.clone();
    let answer = write(
        &state,
        &principal,
        &body.headers,
        "POST /v1/charges",
        &body.raw,
        move |tx| {
            guard.guard(tx, amount_minor, currency, Some(customer), |tx| {
                charges::book(tx, mode, &prepared)
            })?;
            Ok((StatusCode::CREATED, object))
        },
    )
    .await;
    risk.finish().await?;
    answer
}

/// `GET /v1/charges/{id}`
#[utoipa::path(
    get,
    path = "/v1/charges/{id}",
    tag = "charges",
    operation_id = "retrieve_charge",
    summary = "Retrieve a charge",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The charge, `chg_…` (a malformed id is not found: 404).")),
    responses(
        (status = 200, description = "The charge.", body = spec::Charge),
        (status = 404, description = "No such charge for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("charges:read")?;
    let charge_id: ChargeId = extract::id_path(&id)?;
    let charge = state
        .store(principal.mode)
        .read(|reader| reader.charge(charge_id))?
        .filter(|c| c.merchant == principal.merchant)
        .ok_or_else(|| ApiError::not_found("charge", &id))?;
    Ok(axum::Json(render::charge(&charge, principal.mode)).into_response())
}

/// `GET /v1/charges`
#[utoipa::path(
    get,
    path = "/v1/charges",
    tag = "charges",
    operation_id = "list_charges",
    summary = "List charges",
    security(("bearer" = [])),
    params(
        spec::ListParams,
        ("customer" = Option<String>, Query, description = "Only those of this customer, `cus_…`."),
        ("created[gte]" = Option<u64>, Query, description = "Only those created at or after this time (Unix seconds)."),
        ("created[lte]" = Option<u64>, Query, description = "Only those created at or before this time (Unix seconds)."),
    ),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::ChargeList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("charges:read")?;
    let query = extract::list_query_with(query.as_deref(), &extract::OBJECT_FILTERS[1..])?;
    let filter = extract::list_filter(&query, &[])?;
    let request = query.page::<ChargeId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.charges_where(principal.merchant, request, &filter))?;
    let data = page
        .data
        .iter()
        .map(|c| render::charge(c, principal.mode))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/charges"))
}

/// `POST /v1/refunds` body: exactly one of `invoice` and `charge`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefund {
    /// The paid invoice to refund, `inv_…`.
    pub invoice: Option<String>,
    /// The charge to refund, `chg_…`.
    pub charge: Option<String>,
    /// Amount in minor units (default: everything not yet refunded).
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub amount: Option<Value>,
    /// Why, for the merchant's records.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    /// Where the money goes: `balance` (default: the customer's balance with the merchant),
    /// `rail` (back through the rail that paid the invoice: Telegram `refundStarPayment` for
    /// `stars`, the whole payment only), or `lnurl_withdraw` (a BTC invoice: the refund is
    /// credited to the payer's balance — a new customer when the invoice had none — and an
    /// LNURL-withdraw link for that amount is returned in `lnurl_withdraw`, for the payer to
    /// claim with any Lightning wallet).
    #[schema(value_type = Option<String>, pattern = "^(balance|rail|lnurl_withdraw)$", default = "balance")]
    pub destination: Option<String>,
    /// Merchant key/value data kept on the refund (same rules as on invoices).
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// `POST /v1/refunds`: back to the customer's balance, or through the rail that paid.
#[utoipa::path(
    post,
    path = "/v1/refunds",
    tag = "refunds",
    operation_id = "create_refund",
    summary = "Refund an invoice or a charge",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateRefund, content_type = "application/json", description = "Exactly one of `invoice` and `charge`; `amount` defaults to everything not yet refunded. `destination: rail` refunds a Stars-paid invoice through Telegram (`refundStarPayment`, the whole payment), a Lightning one through the merchant's node; a TON- or USDT-paid invoice is refunded from the merchant's own wallet: the refund is `pending`, its amount held, and its `next_action` is the transfer to sign (a `ton://` link and a TON Connect request carrying the refund's comment) until the watcher sees it leave the wallet (`refund.succeeded`), or it is canceled (`POST /v1/refunds/{id}/cancel`).", example = json!({"charge": "chg_01m8xps3xn47n0b22ztnhdjb39", "amount": 1, "reason": "slow answer", "metadata": {"ticket": "T-7"}})),
    responses(
        (status = 201, description = "The refund; `refund.succeeded` and `customer.balance_changed` events are written with it (and `invoice.refunded` or `invoice.partially_refunded` for an invoice); a refund the merchant sends from their own wallet (TON, `destination: rail`) is `pending` with its `next_action`, and `refund.pending` is written.", body = spec::Refund, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.")), example = json!({"id": "ref_01m8xps3y3ds0d7vv0zr87f517", "object": "refund", "livemode": false, "status": "succeeded", "invoice": null, "charge": "chg_01m8xps3xn47n0b22ztnhdjb39", "customer": "cus_01m8xps3vzdwahmws0hy00crqv", "amount": 1, "currency": "XTR", "reason": "slow answer", "destination": "balance", "next_action": null, "metadata": {"ticket": "T-7"}, "created": 1796293301})),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), not exactly one of `invoice` and `charge` (`invalid_refund`), an unknown invoice or charge (`invalid_id`, `invoice_not_found`, `charge_not_found`), a bad amount (`invalid_amount`), more than is left to refund (`refund_too_large`), an invoice paid without a customer (`no_customer`), a reason over 500 characters (`invalid_reason`), bad metadata (`invalid_metadata`), a refund that would take the customer's balance beyond the largest amount farthing stores (`amount_too_large`), an unknown `destination` (`invalid_destination`), or, with `destination: rail`, an invoice paid on a rail with no way back (`rail_refund_unsupported`: balance, sandbox), a partial amount of a Stars payment (`invalid_amount`; Telegram refunds whole payments), no connected bot or TON wallet (`rail_not_configured`), or an invoice refunded in part before (`refund_too_large`).", body = spec::Error),
        (status = 402, description = "The merchant's balance is too small to refund from (`insufficient_funds`); nothing was written.", body = spec::Error),
        (status = 409, description = "The invoice is not paid (`invoice_not_paid`), a refund of it waits for the merchant to send it (`refund_pending`: send or cancel it first), or, with `destination: rail`, the payer (Telegram user, TON wallet) is not known (`payer_unknown`).", body = spec::Error),
        (status = 502, description = "With `destination: rail`: Telegram refused `refundStarPayment` or could not be reached (`telegram_refund_failed`, with Telegram's description); nothing was booked.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn create_refund(
    State(state): State<AppState>,
    principal: Principal,
    body: Checked<CreateRefund>,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let request = refund_request(&body.value)?;
    let destination = body.value.destination.clone();
    refund(
        &state,
        &principal,
        &body.headers,
        &body.raw,
        request,
        destination.as_deref(),
    )
    .await
}

/// Checks and parses a refund body (the service checks the rest).
fn refund_request(body: &CreateRefund) -> Result<RefundRequest, ApiError> {
    let target = match (&body.invoice, &body.charge) {
        (Some(invoice), None) => Target::Invoice(extract::id_param(invoice, "invoice")?),
        (None, Some(charge)) => Target::Charge(extract::id_param(charge, "charge")?),
        _ => {
            return Err(ApiError::invalid(
                "invalid_refund",
                "give exactly one of invoice and charge",
            )
            .param("invoice"))
        }
    };
    let request = RefundRequest {
        target,
        amount_minor: extract::optional_amount(&body.amount, "amount")?,
        reason: body.reason.clone(),
        metadata: extract::metadata(body.metadata.clone())?,
    };
    request.check()?;
    Ok(request)
}

/// Makes a refund to `destination` (`balance` by default, `rail`, `lnurl_withdraw`) as
/// `POST /v1/refunds` does: the one refund path of the API and of approving a refund request.
pub async fn refund(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: &[u8],
    request: RefundRequest,
    destination: Option<&str>,
) -> Result<Response, ApiError> {
    let (merchant, mode) = (principal.merchant, principal.mode);
    let unnamed = match destination {
        None | Some("balance") => UnnamedPayer::Refuse,
        Some("lnurl_withdraw") => {
            if !matches!(request.target, Target::Invoice(_)) {
                return Err(ApiError::invalid(
                    "invalid_refund",
                    "only an invoice can be refunded as an LNURL-withdraw link",
                )
                .param("destination"));
            }
            super::lightning::require_paying_node(state, principal)?;
            // The payer is known only by the withdraw link they will claim: a customer holds
            // the refund until then.
            UnnamedPayer::HoldFor(vec![(
                "created_for".to_owned(),
                "lnurl_withdraw_refund".to_owned(),
            )])
        }
        Some("rail") => {
            if !matches!(request.target, Target::Invoice(_)) {
                return Err(ApiError::invalid(
                    "invalid_refund",
                    "only an invoice paid on a rail can be refunded to the rail; a charge is refunded to the balance",
                )
                .param("destination"));
            }
            return rail_refund(state, principal, headers, body, request).await;
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_destination",
                "destination must be \"balance\", \"rail\" or \"lnurl_withdraw\"",
            )
            .param("destination"))
        }
    };
    let withdraw = matches!(unnamed, UnnamedPayer::HoldFor(_));
    let app = state.app().clone();
    let links = state.clone();
    write(
        state,
        principal,
        headers,
        "POST /v1/refunds",
        body,
        move |tx| {
            if withdraw {
                if let Target::Invoice(invoice) = request.target {
                    let found = tx.invoice(invoice)?.filter(|i| i.merchant == merchant);
                    if found.is_some_and(|i| i.currency != farthing_core::Currency::BTC) {
                        return Err(ApiError::invalid(
                            "invalid_refund",
                            "an LNURL-withdraw refund pays BTC: this invoice is not in BTC",
                        )
                        .param("destination"));
                    }
                }
            }
            let refund = refunds::to_balance(tx, &app, mode, merchant, &request, &unnamed)?;
            let mut object: Value = render::refund(&refund, mode).into();
            if withdraw {
                let secret = crate::rails::lightning::new_withdraw_secret(
                    tx.now_ns(),
                    merchant,
                    Some(refund.customer),
                    refund.amount_minor,
                    refund.amount_minor,
                    format!("Refund {}", refund.id.encode()),
                    30 * 24 * 3600,
                )?;
                tx.insert_lnurl_secret(&secret)?;
                object["lnurl_withdraw"] = super::lightning::render_withdraw(&links, mode, &secret);
            }
            Ok((StatusCode::CREATED, object))
        },
    )
    .await
}

/// A refund through the rail that paid the invoice: the rail first (network I/O, outside any
/// store job; nothing is booked when it refuses), then the booking. A retried request with a
/// stored answer is replayed by `write` without calling the rail again.
async fn rail_refund(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: &[u8],
    request: RefundRequest,
) -> Result<Response, ApiError> {
    let (merchant, mode) = (principal.merchant, principal.mode);
    let key = extract::idempotency_key(headers)?;
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
        Some(refunds::send_through_rail(state.app(), state.rails(), mode, merchant, request).await?)
    };
    let app = state.app().clone();
    write(
        state,
        principal,
        headers,
        "POST /v1/refunds",
        body,
        move |tx| {
            let Some(sent) = sent else {
                return Err(ApiError::internal(
                    "a replayed rail refund has no stored answer",
                ));
            };
            let refund = refunds::book_rail_refund(tx, &app, mode, merchant, &sent)?;
            Ok((StatusCode::CREATED, render::refund(&refund, mode).into()))
        },
    )
    .await
}

/// `GET /v1/refunds/{id}`
#[utoipa::path(
    get,
    path = "/v1/refunds/{id}",
    tag = "refunds",
    operation_id = "retrieve_refund",
    summary = "Retrieve a refund",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The refund, `ref_…` (a malformed id is not found: 404).")),
    responses(
        (status = 200, description = "The refund.", body = spec::Refund),
        (status = 404, description = "No such refund for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve_refund(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("refunds:read")?;
    let refund_id: RefundId = extract::id_path(&id)?;
    let refund = state
        .store(principal.mode)
        .read(|reader| reader.refund(refund_id))?
        .filter(|r| r.merchant == principal.merchant)
        .ok_or_else(|| ApiError::not_found("refund", &id))?;
    Ok(axum::Json(render::refund(&refund, principal.mode)).into_response())
}

/// `POST /v1/refunds/{id}/cancel`: gives up a pending refund (one the merchant was to send from
/// their own wallet and has not).
#[utoipa::path(
    post,
    path = "/v1/refunds/{id}/cancel",
    tag = "refunds",
    operation_id = "cancel_refund",
    summary = "Cancel a pending refund",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The refund, `ref_…` (a malformed id is not found: 404)."),
        spec::IdempotencyKey,
    ),
    responses(
        (status = 200, description = "The refund, `canceled`: its hold released (the amount is available again), the invoice unchanged, `refund.canceled` written. Send nothing for it afterwards: a transfer with its comment is then listed by the rail, not booked.", body = spec::Refund),
        (status = 400, description = "A bad Idempotency-Key (`invalid_idempotency_key`).", body = spec::Error),
        (status = 404, description = "No such refund for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The refund is not pending (`refund_not_pending`): it succeeded (the rail saw it sent) or was canceled before.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn cancel_refund(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let refund_id: RefundId = extract::id_path(&id)?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    write(
        &state,
        &principal,
        &headers,
        "POST /v1/refunds/{id}/cancel",
        id.as_bytes(),
        move |tx| {
            let refund = refunds::cancel_pending(tx, mode, merchant, refund_id)?;
            Ok((StatusCode::OK, render::refund(&refund, mode).into()))
        },
    )
    .await
}

/// `GET /v1/refunds`
#[utoipa::path(
    get,
    path = "/v1/refunds",
    tag = "refunds",
    operation_id = "list_refunds",
    summary = "List refunds",
    security(("bearer" = [])),
    params(
        spec::ListParams,
        ("customer" = Option<String>, Query, description = "Only those of this customer, `cus_…`."),
        ("created[gte]" = Option<u64>, Query, description = "Only those created at or after this time (Unix seconds)."),
        ("created[lte]" = Option<u64>, Query, description = "Only those created at or before this time (Unix seconds)."),
    ),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::RefundList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list_refunds(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("refunds:read")?;
    let query = extract::list_query_with(query.as_deref(), &extract::OBJECT_FILTERS[1..])?;
    let filter = extract::list_filter(&query, &[])?;
    let request = query.page::<RefundId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.refunds_where(principal.merchant, request, &filter))?;
    let data = page
        .data
        .iter()
        .map(|r| render::refund(r, principal.mode))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/refunds"))
}
