//! The sandbox rail (SPEC RL5), test mode only: simulate a payer for any rail, fund a test
//! balance. Sandbox money comes from the test ledger's `external/sandbox` account.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use farthing_app::sandbox;
use farthing_core::{CustomerId, InvoiceId, Rail};
use serde::Deserialize;
use serde_json::Value;

use super::write;
use crate::render;
use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

fn test_only(principal: &Principal) -> Result<(), ApiError> {
    if principal.mode == Mode::Test {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "test_mode_only",
            "the sandbox is only for test mode: use a fk_test_ key",
        ))
    }
}

/// `POST /v1/test/invoices/{id}/pay` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxPay {
    /// The rail to simulate (default: the invoice's first rail other than `balance`, or
    /// `balance` when it takes nothing else). The sandbox does what that
    /// rail would: `balance` debits `customer`'s balance (or answers 402); any other rail
    /// reports the payment to the same settlement as a real one (a top-up invoice lands on
    /// the payer's balance).
    #[schema(value_type = Option<spec::RailName>)]
    pub rail: Option<String>,
    /// For amountless invoices: the amount chosen.
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub amount: Option<Value>,
    /// The paying customer, if the simulated payer is one.
    pub customer: Option<String>,
}

/// `POST /v1/test/invoices/{id}/pay`
#[utoipa::path(
    post,
    path = "/v1/test/invoices/{id}/pay",
    tag = "sandbox",
    operation_id = "sandbox_pay_invoice",
    summary = "Pay an invoice as a simulated payer (test mode)",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The invoice, `inv_…` (a malformed id is not found: 404)."), spec::IdempotencyKey),
    request_body(content = Option<SandboxPay>, content_type = "application/json", description = "All fields are optional."),
    responses(
        (status = 200, description = "The paid invoice; an `invoice.paid` event is written with it.", body = spec::Invoice, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), an unknown rail or one the invoice does not accept (`invalid_rail`, `rail_not_accepted`), a bad amount (`invalid_amount`, `invalid_invoice`), an unknown customer (`invalid_id`, `customer_not_found`), a balance payment without a customer (`customer_required`), or a payment that would take the merchant's balance beyond the largest amount farthing stores (`amount_too_large`).", body = spec::Error),
        (status = 402, description = "`rail: balance` and the customer's balance is too small (`insufficient_funds`, with `available` and `requested`); nothing was written. Or the merchant's risk rules refused the payment (`risk_refused`, with `decision`: see `GET /v1/risk/decisions`); nothing was written.", body = spec::Error),
        (status = 403, description = "A live-mode key (`test_mode_only`), or a key without the `invoices:write` scope (`missing_scope`).", body = spec::Error),
        (status = 404, description = "No such invoice for this merchant in test mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`) or has expired (`invoice_expired`).", body = spec::Error),
        spec::Unauthorized,
        spec::TooLarge,
        spec::IdempotencyMismatch,
        spec::Internal,
        spec::Unavailable,
    ),
)]
pub async fn pay_invoice(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<SandboxPay>,
) -> Result<Response, ApiError> {
    test_only(&principal)?;
    principal.require("invoices:write")?;
    let request = &body.value;
    let invoice_id: InvoiceId = extract::id_path(&id)?;
    let rail = request
        .rail
        .as_deref()
        .map(|name| {
            name.parse::<Rail>()
                .map_err(|error| ApiError::invalid("invalid_rail", error.to_string()).param("rail"))
        })
        .transpose()?;
    let amount = extract::optional_amount(&request.amount, "amount")?;
    let customer = request
        .customer
        .as_deref()
        .map(|text| extract::id_param::<CustomerId>(text, "customer"))
        .transpose()?;
    let merchant = principal.merchant;
    let route = format!("POST /v1/test/invoices/{id}/pay");
    let app = state.app().clone();
    // A simulated balance payment meets the merchant's risk rules like a real one.
    let risk = farthing_app::risk::RiskCheck::new(
        state.app(),
        Mode::Test,
        merchant,
        farthing_core::risk::Operation::BalancePayment,
    )
    .subject(farthing_core::PublicId::encode(invoice_id));
    let guard = risk.clone();
    let answer = write(
        &state,
        &principal,
        &body.headers,
        &route,
        &body.raw,
        move |tx| {
            let invoice = sandbox::pay(tx, &guard, invoice_id, rail, amount, customer)?;
            let object = render::invoice(&invoice, Mode::Test, &app.checkout_url(invoice.id));
            Ok((StatusCode::OK, object.into()))
        },
    )
    .await;
    risk.finish().await?;
    answer
}

/// `POST /v1/test/customers/{id}/top_up` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// Amount in minor units.
    #[schema(value_type = u64, minimum = 1, example = 10000)]
    pub amount: Value,
    /// Currency of the balance.
    #[schema(example = "USD")]
    pub currency: String,
}

/// `POST /v1/test/customers/{id}/top_up`: funds a test balance.
#[utoipa::path(
    post,
    path = "/v1/test/customers/{id}/top_up",
    tag = "sandbox",
    operation_id = "sandbox_top_up",
    summary = "Fund a customer's test balance (test mode)",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The customer, `cus_…` (a malformed id is not found: 404)."), spec::IdempotencyKey),
    request_body(content = TopUp, content_type = "application/json"),
    responses(
        (status = 200, description = "The customer's balance in that currency after the top-up; a `customer.balance_changed` event is written.", body = spec::CustomerBalance, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), a bad amount (`invalid_amount`), an unknown currency (`invalid_currency`), or a top-up that would take the balance beyond the largest amount farthing stores (`amount_too_large`).", body = spec::Error),
        (status = 403, description = "A live-mode key (`test_mode_only`), or a key without the `customers:write` scope (`missing_scope`).", body = spec::Error),
        (status = 404, description = "No such customer for this merchant in test mode (`resource_missing`).", body = spec::Error),
        spec::Unauthorized,
        spec::TooLarge,
        spec::IdempotencyMismatch,
        spec::Internal,
        spec::Unavailable,
    ),
)]
pub async fn top_up(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<TopUp>,
) -> Result<Response, ApiError> {
    test_only(&principal)?;
    principal.require("customers:write")?;
    let customer: CustomerId = extract::id_path(&id)?;
    let amount_minor = extract::amount(&body.value.amount, "amount")?;
    let currency = extract::currency(&body.value.currency, "currency")?;
    let merchant = principal.merchant;
    let route = format!("POST /v1/test/customers/{id}/top_up");
    write(
        &state,
        &principal,
        &body.headers,
        &route,
        &body.raw,
        move |tx| {
            let balance = sandbox::top_up(tx, merchant, customer, amount_minor, currency)?;
            Ok((
                StatusCode::OK,
                render::customer_balance(customer, Mode::Test, currency, &balance).into(),
            ))
        },
    )
    .await
}
