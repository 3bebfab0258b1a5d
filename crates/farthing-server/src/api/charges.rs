//! `/v1/charges` (pay-per-use against a balance, SPEC PR2) and `/v1/refunds` (back to the
//! customer's balance, never more than was paid).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::{ChargeId, CustomerId, InvoiceId, PublicId, RefundId, TransferId};
use farthing_store::{Charge, Refund};
use serde::Deserialize;
use serde_json::Value;

use super::invoices::map_invoice_error;
use super::{body_bytes, book, emit, ledger_error, list_answer, write};
use crate::error::ApiError;
use crate::extract;
use crate::ids::new_id;
use crate::openapi as spec;
use crate::render;
use crate::state::{AppState, Principal};

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
    request_body(content = CreateCharge, content_type = "application/json"),
    responses(
        (status = 201, description = "The charge; `charge.succeeded` and `customer.balance_changed` events are written with it.", body = spec::Charge, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), an unknown customer (`invalid_id`, `customer_not_found`), a bad amount (`invalid_amount`), an unknown currency (`invalid_currency`), a description over 500 characters (`invalid_description`), or a charge that would take the merchant's balance beyond the largest amount farthing stores (`amount_too_large`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 402, description = "The customer's balance is too small (`insufficient_funds`); nothing was written.", body = spec::Error),
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
    principal.require("charges:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: CreateCharge = extract::json_body(&headers, &body)?;
    let customer: CustomerId = extract::id_param(&request.customer, "customer")?;
    let amount_minor = extract::amount(&request.amount, "amount")?;
    let currency = extract::currency(&request.currency, "currency")?;
    let description = request.description.unwrap_or_default();
    if description.chars().count() > 500 {
        return Err(ApiError::invalid(
            "invalid_description",
            "description must be at most 500 characters",
        )
        .param("description"));
    }
    let (merchant, mode) = (principal.merchant, principal.mode);
    // Built on the async workers, not in the writer's job (the writer is the bottleneck).
    let id: ChargeId = new_id();
    let charge = Charge {
        id,
        merchant,
        customer,
        currency,
        amount_minor,
        refunded_minor: 0,
        description,
        created_at_ns: super::wall_clock_ns(),
    };
    let object = render::charge(&charge, mode);
    let event = super::event_record(
        merchant,
        mode,
        "charge.succeeded",
        &object,
        charge.created_at_ns,
    );
    write(
        &state,
        &principal,
        &headers,
        "POST /v1/charges",
        &body,
        move |tx| {
            super::require_customer(tx, merchant, customer)?;
            let group = book::transfer(
                TransferId(id.raw()),
                book::customer(merchant, customer, currency),
                book::merchant(merchant, currency),
                amount_minor,
                book::CHARGE,
                id.raw(),
            );
            tx.apply(&group)?
                .map_err(|error| ledger_error(error, "the customer", currency))?;
            tx.insert_charge(&charge)?;
            tx.insert_event(&event)?;
            super::customers::emit_balance_changed(tx, merchant, mode, customer, currency)?;
            Ok((StatusCode::CREATED, object))
        },
    )
    .await
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
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 404, description = "No such charge for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
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
    params(spec::ListParams),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::ChargeList),
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
    principal.require("charges:read")?;
    let request = extract::list_query(query.as_deref())?.page::<ChargeId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.charges(principal.merchant, request))?;
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
}

/// `POST /v1/refunds`: back to the customer's balance.
#[utoipa::path(
    post,
    path = "/v1/refunds",
    tag = "refunds",
    operation_id = "create_refund",
    summary = "Refund an invoice or a charge",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateRefund, content_type = "application/json", description = "Exactly one of `invoice` and `charge`; `amount` defaults to everything not yet refunded."),
    responses(
        (status = 201, description = "The refund; `refund.succeeded` and `customer.balance_changed` events are written with it (and `invoice.refunded` or `invoice.partially_refunded` for an invoice).", body = spec::Refund, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), not exactly one of `invoice` and `charge` (`invalid_refund`), an unknown invoice or charge (`invalid_id`, `invoice_not_found`, `charge_not_found`), a bad amount (`invalid_amount`), more than is left to refund (`refund_too_large`), an invoice paid without a customer (`no_customer`), a reason over 500 characters (`invalid_reason`), or a refund that would take the customer's balance beyond the largest amount farthing stores (`amount_too_large`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 402, description = "The merchant's balance is too small to refund from (`insufficient_funds`); nothing was written.", body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 409, description = "The invoice is not paid (`invoice_not_paid`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn create_refund(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: CreateRefund = extract::json_body(&headers, &body)?;
    enum Target {
        Invoice(InvoiceId),
        Charge(ChargeId),
    }
    let target = match (&request.invoice, &request.charge) {
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
    let amount = extract::optional_amount(&request.amount, "amount")?;
    let reason = request.reason;
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(
            ApiError::invalid("invalid_reason", "reason must be at most 500 characters")
                .param("reason"),
        );
    }
    let (merchant, mode) = (principal.merchant, principal.mode);
    let checkout = state.checkout_url("");
    write(&state, &principal, &headers, "POST /v1/refunds", &body, move |tx| {
        let id: RefundId = new_id();
        let now = tx.now_ns();
        let (customer, currency, amount_minor, invoice_id, charge_id) = match target {
            Target::Invoice(invoice_id) => {
                let mut invoice = tx
                    .invoice(invoice_id)?
                    .filter(|i| i.merchant == merchant)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "invoice_not_found",
                            format!("no such invoice: {:?}", invoice_id.encode()),
                        )
                        .param("invoice")
                    })?;
                // Status first: an unpaid invoice has no payer to refund, whatever its customer.
                if !matches!(
                    invoice.status,
                    farthing_core::invoice::InvoiceStatus::Paid
                        | farthing_core::invoice::InvoiceStatus::PartiallyRefunded
                ) {
                    return Err(map_invoice_error(
                        farthing_core::invoice::InvoiceError::NotPaid(invoice.status),
                    )
                    .param("invoice"));
                }
                let amount_minor = amount.unwrap_or_else(|| invoice.refundable_minor());
                let customer = invoice
                    .payment
                    .and_then(|p| p.customer)
                    .or(invoice.customer)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "no_customer",
                            "this invoice was paid without a customer, so there is no balance to refund to; rail refunds arrive with the rails",
                        )
                        .param("invoice")
                    })?;
                invoice
                    .apply_refund(amount_minor)
                    .map_err(|e| map_invoice_error(e).param("amount"))?;
                tx.update_invoice(&invoice)?;
                let event = if invoice.refundable_minor() == 0 {
                    "invoice.refunded"
                } else {
                    "invoice.partially_refunded"
                };
                let url = format!("{checkout}{}", invoice.id.encode());
                emit(tx, merchant, mode, event, render::invoice(&invoice, mode, &url))?;
                (customer, invoice.currency, amount_minor, Some(invoice_id), None)
            }
            Target::Charge(charge_id) => {
                let charge = tx
                    .charge(charge_id)?
                    .filter(|c| c.merchant == merchant)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "charge_not_found",
                            format!("no such charge: {:?}", charge_id.encode()),
                        )
                        .param("charge")
                    })?;
                let refundable = charge.amount_minor - charge.refunded_minor.min(charge.amount_minor);
                let amount_minor = amount.unwrap_or(refundable);
                if amount_minor == 0 || amount_minor > refundable {
                    return Err(ApiError::invalid(
                        "refund_too_large",
                        format!("refund exceeds what is left to refund ({refundable} minor units)"),
                    )
                    .param("amount"));
                }
                tx.set_charge_refunded(charge_id, charge.refunded_minor + amount_minor)?;
                (charge.customer, charge.currency, amount_minor, None, Some(charge_id))
            }
        };
        let group = book::transfer(
            TransferId(id.raw()),
            book::merchant(merchant, currency),
            book::customer(merchant, customer, currency),
            amount_minor,
            book::REFUND,
            id.raw(),
        );
        tx.apply(&group)?
            .map_err(|error| ledger_error(error, "the merchant", currency))?;
        let refund = Refund {
            id,
            merchant,
            invoice: invoice_id,
            charge: charge_id,
            customer,
            currency,
            amount_minor,
            reason,
            created_at_ns: now,
        };
        tx.insert_refund(&refund)?;
        let object = render::refund(&refund, mode);
        emit(tx, merchant, mode, "refund.succeeded", object.clone())?;
        super::customers::emit_balance_changed(tx, merchant, mode, customer, currency)?;
        Ok((StatusCode::CREATED, object))
    })
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
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 404, description = "No such refund for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
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

/// `GET /v1/refunds`
#[utoipa::path(
    get,
    path = "/v1/refunds",
    tag = "refunds",
    operation_id = "list_refunds",
    summary = "List refunds",
    security(("bearer" = [])),
    params(spec::ListParams),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::RefundList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
    ),
)]
pub async fn list_refunds(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("refunds:read")?;
    let request = extract::list_query(query.as_deref())?.page::<RefundId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.refunds(principal.merchant, request))?;
    let data = page
        .data
        .iter()
        .map(|r| render::refund(r, principal.mode))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/refunds"))
}
