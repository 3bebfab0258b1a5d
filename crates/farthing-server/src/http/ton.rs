//! `/v1/rails/ton/payments`: every transaction the TON watcher read for the merchant (settled,
//! unmatched, assigned or ignored, with the reason), and the assignment of an unmatched payment
//! to the invoice or customer it was meant for (`rails::ton::assign`).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use farthing_app::risk::RiskCheck;
use farthing_core::risk::Operation;
use farthing_core::{CustomerId, InvoiceId, PublicId};
use farthing_store::TonTransaction;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{list_answer, write};
use crate::rails::ton::{self as ton_rail, Target};
use crate::render;
use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

/// The outcomes a listed payment can have.
const OUTCOMES: [&str; 4] = ["settled", "unmatched", "assigned", "ignored"];

/// The API id of a transaction: its hash in url-safe base64 (43 characters, no padding).
fn payment_id(hash: &str) -> String {
    STANDARD
        .decode(hash)
        .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
        .unwrap_or_else(|_| hash.to_owned())
}

/// The stored hash of an API id, if it is one (a 32-byte hash in url-safe base64).
fn hash_of(id: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
    (bytes.len() == 32).then(|| STANDARD.encode(bytes))
}

/// A TON payment as the API shows it.
pub fn render_payment(row: &TonTransaction, mode: Mode) -> Value {
    json!({
        "object": "ton_payment",
        "id": payment_id(&row.hash),
        "hash": row.hash,
        "livemode": mode.is_live(),
        "account": row.account,
        "lt": row.lt.to_string(),
        "outcome": row.outcome,
        "reason": row.reason,
        "currency": row.currency,
        "amount": row.amount_minor,
        "payer": row.payer,
        "comment": row.comment,
        "invoice": row.invoice.map(|id| id.encode()),
        "customer": row.customer.map(|id| id.encode()),
        "transaction_at": row.tx_now_s,
        "created": row.created_at_ns / 1_000_000_000,
    })
}

/// `GET /v1/rails/ton/payments`
#[utoipa::path(
    get,
    path = "/v1/rails/ton/payments",
    tag = "rails",
    operation_id = "list_ton_payments",
    summary = "List the transactions the TON watcher read",
    description = "Every transaction read on the merchant's wallet and jetton wallets, once, newest (highest logical time) first: `settled` (it named an invoice), `unmatched` (it named none: credited to the payer's balance, the customer `ton:<address>`; assign it with `POST /v1/rails/ton/payments/{id}/assign`), `assigned`, or `ignored` with the reason (`fake_jetton`, `bounced_to_payer`, `excesses`…).",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "How many, from 1 to 100 (default 10)."),
        ("starting_after" = Option<String>, Query, description = "Cursor: the id of the last payment of the previous page."),
        ("outcome" = Option<String>, Query, description = "Only `settled`, `unmatched`, `assigned` or `ignored`."),
    ),
    responses(
        (status = 200, description = "A page of TON payments.", body = spec::TonPaymentList),
        (status = 400, description = "A bad `limit` (`invalid_limit`), `outcome` (`invalid_outcome`) or `starting_after` (`invalid_id`), `ending_before` (`invalid_parameter`: this list pages forward only), a repeated parameter (`invalid_parameter`), or an unknown query parameter (`unknown_parameter`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("settings:read")?;
    let query = extract::list_query_with(query.as_deref(), &["outcome"])?;
    let limit = u32::try_from(query.limit()?).unwrap_or(100);
    if query.ending_before.is_some() {
        return Err(ApiError::invalid(
            "invalid_parameter",
            "this list pages forward only: use starting_after",
        )
        .param("ending_before"));
    }
    let outcome = query.filter("outcome").map(str::to_owned);
    if let Some(outcome) = &outcome {
        if !OUTCOMES.contains(&outcome.as_str()) {
            return Err(ApiError::invalid(
                "invalid_outcome",
                format!("outcome must be one of {}", OUTCOMES.join(", ")),
            )
            .param("outcome"));
        }
    }
    let merchant = principal.merchant;
    let after = match &query.starting_after {
        None => None,
        Some(id) => {
            let invalid = || {
                ApiError::invalid(
                    "invalid_id",
                    format!("{id:?} is not a TON payment id (43 characters of url-safe base64)"),
                )
                .param("starting_after")
            };
            let hash = hash_of(id).ok_or_else(invalid)?;
            let row = state
                .store(principal.mode)
                .read(|reader| reader.ton_transaction(&hash))?
                .filter(|row| row.merchant == merchant)
                .ok_or_else(invalid)?;
            Some((row.lt, row.hash))
        }
    };
    let mut rows = state.store(principal.mode).read(|reader| {
        reader.ton_transactions(
            merchant,
            outcome.as_deref(),
            after.as_ref().map(|(lt, hash)| (*lt, hash.as_str())),
            limit + 1,
        )
    })?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let data = rows
        .iter()
        .map(|row| render_payment(row, principal.mode))
        .collect();
    Ok(list_answer(data, has_more, "/v1/rails/ton/payments"))
}

/// `POST /v1/rails/ton/payments/{id}/assign` body: exactly one of the two.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTonPayment {
    /// The invoice the payment was meant for, `inv_…`: paid from the payer's balance, which the
    /// payment was credited to.
    pub invoice: Option<String>,
    /// The customer the payment belongs to, `cus_…`: the payment moves to their balance.
    pub customer: Option<String>,
}

/// `POST /v1/rails/ton/payments/{id}/assign`
#[utoipa::path(
    post,
    path = "/v1/rails/ton/payments/{id}/assign",
    tag = "rails",
    operation_id = "assign_ton_payment",
    summary = "Assign an unmatched TON payment to an invoice or a customer",
    description = "For a payment that named no invoice (a forgotten or mistyped comment): with `invoice`, the invoice is paid from the payer's balance (`invoice.paid`), which the payment was credited to — a payment smaller than the invoice leaves it open and answers 402; with `customer`, the payment moves from the payer's balance to the customer's (`customer.balance_changed` for both). A payment is assigned once.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The TON payment's id (its transaction hash in url-safe base64; a malformed id is not found: 404)."), spec::IdempotencyKey),
    request_body(content = AssignTonPayment, content_type = "application/json"),
    responses(
        (status = 200, description = "The assigned payment, with the invoice it paid (or `null`).", body = spec::AssignedTonPayment, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), neither or both of `invoice` and `customer` (`invalid_parameter`), a malformed id (`invalid_id`), an unknown customer (`customer_not_found`), or an invoice that cannot be paid this way (`invalid_invoice`, `rail_not_accepted`: the invoice must accept `ton`).", body = spec::Error),
        (status = 402, description = "The payer's balance does not cover the invoice (`insufficient_funds`), or the risk rules refused (`risk_refused`); nothing was written.", body = spec::Error),
        (status = 404, description = "No such TON payment, invoice or customer for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The payment is not unmatched (`ton_payment_not_unmatched`), or the invoice is not open (`invoice_not_open`, `invoice_expired`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn assign(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<AssignTonPayment>,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let hash = hash_of(&id).ok_or_else(|| ApiError::not_found("TON payment", &id))?;
    let target = match (&body.value.invoice, &body.value.customer) {
        (Some(invoice), None) => Target::Invoice(extract::id_param::<InvoiceId>(invoice, "invoice")?),
        (None, Some(customer)) => {
            Target::Customer(extract::id_param::<CustomerId>(customer, "customer")?)
        }
        _ => {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "give the invoice the payment was meant for, or the customer it belongs to (one of the two)",
            )
            .param("invoice"))
        }
    };
    let (merchant, mode) = (principal.merchant, principal.mode);
    let route = format!("POST /v1/rails/ton/payments/{id}/assign");
    let app = state.app().clone();
    let subject = match target {
        Target::Invoice(invoice) => invoice.encode(),
        Target::Customer(customer) => customer.encode(),
    };
    let risk = RiskCheck::new(state.app(), mode, merchant, Operation::BalancePayment)
        .subject(subject)
        .stepped_up(super::step_up::passed(&state, &principal, &body.headers).await?);
    let guard = risk.clone();
    let answer = write(
        &state,
        &principal,
        &body.headers,
        &route,
        &body.raw,
        move |tx| {
            let (row, invoice) = ton_rail::assign(tx, &guard, &hash, target)?;
            let mut object = render_payment(&row, mode);
            object["paid_invoice"] = match invoice {
                Some(invoice) => serde_json::to_value(render::invoice(
                    &invoice,
                    mode,
                    &app.checkout_url(invoice.id),
                ))
                .map_err(farthing_app::AppError::internal)?,
                None => Value::Null,
            };
            Ok((StatusCode::OK, object))
        },
    )
    .await;
    risk.finish().await?;
    answer
}
