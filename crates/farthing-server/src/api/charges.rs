//! `/v1/charges` (pay-per-use against a balance, SPEC PR2) and `/v1/refunds` (back to the
//! customer's balance, or through Telegram for a Stars-paid invoice; never more than was paid).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::invoice::{InvoiceError, InvoiceStatus};
use farthing_core::{ChargeId, CustomerId, InvoiceId, PublicId, Rail, RefundId, TransferId};
use farthing_store::{Charge, Refund};
use farthing_telegram::TelegramUserId;
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
use crate::telegram::BotApiError;

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
    /// Where the money goes: `balance` (default: the customer's balance with the merchant),
    /// `rail` (back through the rail that paid the invoice: Telegram `refundStarPayment` for
    /// `stars`, the whole payment only), or `lnurl_withdraw` (a BTC invoice: the refund is
    /// credited to the payer's balance — a new customer when the invoice had none — and an
    /// LNURL-withdraw link for that amount is returned in `lnurl_withdraw`, for the payer to
    /// claim with any Lightning wallet).
    #[schema(value_type = Option<String>, pattern = "^(balance|rail|lnurl_withdraw)$", default = "balance")]
    pub destination: Option<String>,
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
    request_body(content = CreateRefund, content_type = "application/json", description = "Exactly one of `invoice` and `charge`; `amount` defaults to everything not yet refunded. `destination: rail` refunds a Stars-paid invoice through Telegram (`refundStarPayment`, the whole payment)."),
    responses(
        (status = 201, description = "The refund; `refund.succeeded` and `customer.balance_changed` events are written with it (and `invoice.refunded` or `invoice.partially_refunded` for an invoice).", body = spec::Refund, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), not exactly one of `invoice` and `charge` (`invalid_refund`), an unknown invoice or charge (`invalid_id`, `invoice_not_found`, `charge_not_found`), a bad amount (`invalid_amount`), more than is left to refund (`refund_too_large`), an invoice paid without a customer (`no_customer`), a reason over 500 characters (`invalid_reason`), a refund that would take the customer's balance beyond the largest amount farthing stores (`amount_too_large`), an unknown `destination` (`invalid_destination`), or, with `destination: rail`, an invoice not paid on the stars rail (`rail_refund_unsupported`), a partial amount (`invalid_amount`; Telegram refunds whole payments) or no connected bot (`rail_not_configured`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 402, description = "The merchant's balance is too small to refund from (`insufficient_funds`); nothing was written.", body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 409, description = "The invoice is not paid (`invoice_not_paid`), or, with `destination: rail`, the Telegram user who paid it is not known (`payer_unknown`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 502, description = "With `destination: rail`: Telegram refused `refundStarPayment` or could not be reached (`telegram_refund_failed`, with Telegram's description); nothing was booked.", body = spec::Error),
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
    let mut withdraw = false;
    match request.destination.as_deref() {
        None | Some("balance") => {}
        Some("lnurl_withdraw") => {
            if !matches!(target, Target::Invoice(_)) {
                return Err(ApiError::invalid(
                    "invalid_refund",
                    "only an invoice can be refunded as an LNURL-withdraw link",
                )
                .param("destination"));
            }
            super::lightning::require_paying_node(&state, &principal)?;
            withdraw = true;
        }
        Some("rail") => {
            let Target::Invoice(invoice) = target else {
                return Err(ApiError::invalid(
                    "invalid_refund",
                    "only an invoice paid on a rail can be refunded to the rail; a charge is refunded to the balance",
                )
                .param("destination"));
            };
            return rail_refund(&state, &principal, &headers, &body, invoice, amount, reason).await;
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_destination",
                "destination must be \"balance\", \"rail\" or \"lnurl_withdraw\"",
            )
            .param("destination"))
        }
    }
    let (merchant, mode) = (principal.merchant, principal.mode);
    let checkout = state.checkout_url("");
    let links = state.clone();
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
                if withdraw && invoice.currency != farthing_core::Currency::BTC {
                    return Err(ApiError::invalid(
                        "invalid_refund",
                        "an LNURL-withdraw refund pays BTC: this invoice is not in BTC",
                    )
                    .param("destination"));
                }
                let known = invoice.payment.and_then(|p| p.customer).or(invoice.customer);
                let customer = match known {
                    Some(customer) => customer,
                    // The payer is known only by the withdraw link they will claim: a customer
                    // holds the refund until then.
                    None if withdraw => {
                        let customer = farthing_store::Customer {
                            id: new_id(),
                            merchant,
                            external_id: None,
                            metadata: vec![
                                ("created_for".to_owned(), "lnurl_withdraw_refund".to_owned()),
                                ("invoice".to_owned(), invoice.id.encode()),
                            ],
                            created_at_ns: now,
                        };
                        tx.insert_customer(&customer)?;
                        emit(tx, merchant, mode, "customer.created", render::customer(&customer, mode, &[]))?;
                        customer.id
                    }
                    None => {
                        return Err(ApiError::invalid(
                            "no_customer",
                            "this invoice was paid without a customer, so there is no balance to refund to; refund a BTC invoice with destination lnurl_withdraw, or through the rail",
                        )
                        .param("invoice"))
                    }
                };
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
            rail: None,
        };
        tx.insert_refund(&refund)?;
        let mut object = render::refund(&refund, mode);
        emit(tx, merchant, mode, "refund.succeeded", object.clone())?;
        super::customers::emit_balance_changed(tx, merchant, mode, customer, currency)?;
        if withdraw {
            let secret = crate::lightning::lnurl::new_withdraw_secret(
                merchant,
                Some(customer),
                amount_minor,
                amount_minor,
                format!("Refund {}", id.encode()),
                30 * 24 * 3600,
            )?;
            tx.insert_lnurl_secret(&secret)?;
            object["lnurl_withdraw"] = super::lightning::render_withdraw(&links, mode, &secret);
        }
        Ok((StatusCode::CREATED, object))
    })
    .await
}

fn invoice_not_found(invoice: InvoiceId) -> ApiError {
    ApiError::invalid(
        "invoice_not_found",
        format!("no such invoice: {:?}", invoice.encode()),
    )
    .param("invoice")
}

fn telegram_refund_failed(message: String) -> ApiError {
    let mut api = ApiError::unavailable(message);
    api.status = StatusCode::BAD_GATEWAY;
    api.code = "telegram_refund_failed";
    api
}

/// What a rail refund of an invoice needs, read before Telegram is called.
struct RailRefund {
    bot: farthing_store::TelegramBot,
    user: TelegramUserId,
    charge_id: String,
    amount_minor: u64,
}

/// Checks that `invoice` can be refunded through its rail (paid on `stars`, not refunded yet,
/// the whole amount) and finds the payer and Telegram's charge id in its `rail_payments` row.
fn plan_rail_refund(
    state: &AppState,
    principal: &Principal,
    invoice_id: InvoiceId,
    amount: Option<u64>,
) -> Result<RailRefund, ApiError> {
    let merchant = principal.merchant;
    let (invoice, payments, bot) = state.store(principal.mode).read(move |reader| {
        Ok((
            reader.invoice(invoice_id)?,
            reader.rail_payments_of_invoice(merchant, invoice_id)?,
            reader.telegram_bot(merchant)?,
        ))
    })?;
    let invoice = invoice
        .filter(|i| i.merchant == merchant)
        .ok_or_else(|| invoice_not_found(invoice_id))?;
    if invoice.status != InvoiceStatus::Paid {
        let error = match invoice.status {
            InvoiceStatus::PartiallyRefunded => ApiError::invalid(
                "refund_too_large",
                "this invoice was partly refunded to the balance; Telegram refunds whole payments only",
            ),
            status => map_invoice_error(InvoiceError::NotPaid(status)),
        };
        return Err(error.param("invoice"));
    }
    let payment = invoice
        .payment
        .filter(|p| p.rail == Rail::Stars)
        .ok_or_else(|| {
            ApiError::invalid(
                "rail_refund_unsupported",
                "this invoice was not paid on the stars rail; refund it to the balance",
            )
            .param("destination")
        })?;
    let amount_minor = payment.amount_minor;
    if amount.is_some_and(|a| a != amount_minor) {
        return Err(ApiError::invalid(
            "invalid_amount",
            format!(
                "Telegram refunds whole payments: the amount must be {amount_minor} (or left out)"
            ),
        )
        .param("amount"));
    }
    let row = payments
        .into_iter()
        .find(|p| p.rail == Rail::Stars && p.paid_minor > 0)
        .ok_or_else(|| {
            ApiError::internal(format!(
                "paid invoice {} has no stars rail payment",
                invoice_id.encode()
            ))
        })?;
    // The payer: recorded with the payment, else the payer's `tg:<id>` customer.
    let recorded = row
        .payload
        .as_deref()
        .and_then(|payload| serde_json::from_str::<Value>(payload).ok())
        .and_then(|payload| payload.get("user_id").and_then(Value::as_u64));
    let from_customer = match row.customer {
        Some(customer) if recorded.is_none() => state
            .store(principal.mode)
            .read(move |reader| reader.customer(customer))?
            .and_then(|c| c.external_id)
            .and_then(|e| e.strip_prefix("tg:").and_then(|id| id.parse::<u64>().ok())),
        _ => None,
    };
    let user = recorded
        .or(from_customer)
        .and_then(TelegramUserId::new)
        .ok_or_else(|| {
            ApiError::conflict(
                "payer_unknown",
                "the Telegram user who paid this invoice is not known; refund it to the balance",
            )
            .param("invoice")
        })?;
    let bot = bot.ok_or_else(|| {
        ApiError::invalid(
            "rail_not_configured",
            "no Telegram bot is connected to refund through; see PUT /v1/rails/stars",
        )
        .param("destination")
    })?;
    // Telegram cannot take the refund back, so the booking must not fail afterwards for want
    // of money: check the merchant's balance first.
    let balance = state
        .store(principal.mode)
        .account(book::merchant(merchant, invoice.currency).id)?
        .map_or(0, |account| account.balances.available());
    if balance < i128::from(amount_minor) {
        let mut error = ApiError::invalid(
            "insufficient_funds",
            "the merchant's balance is too small to refund from",
        );
        error.status = StatusCode::PAYMENT_REQUIRED;
        return Err(error);
    }
    Ok(RailRefund {
        bot,
        user,
        charge_id: row.external_id,
        amount_minor,
    })
}

/// The merchant's customer `tg:<user>`, created now if the Telegram user has none yet.
pub(crate) fn telegram_customer(
    tx: &mut farthing_store::Tx<'_, '_>,
    merchant: farthing_core::MerchantId,
    mode: crate::state::Mode,
    user: TelegramUserId,
) -> Result<CustomerId, ApiError> {
    let external = format!("tg:{}", user.get());
    if let Some(customer) = tx.customer_by_external_id(merchant, &external)? {
        return Ok(customer.id);
    }
    let customer = farthing_store::Customer {
        id: new_id(),
        merchant,
        external_id: Some(external),
        metadata: Vec::new(),
        created_at_ns: tx.now_ns(),
    };
    tx.insert_customer(&customer)?;
    emit(
        tx,
        merchant,
        mode,
        "customer.created",
        render::customer(&customer, mode, &[]),
    )?;
    Ok(customer.id)
}

/// `POST /v1/refunds` with `destination: rail`: Telegram `refundStarPayment` first (network
/// I/O, outside any store job), then the refund is booked (merchant balance → the rail's
/// external account), the invoice marked refunded, `refund.succeeded` and `invoice.refunded`
/// written. If Telegram refuses, nothing is booked.
async fn rail_refund(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: &[u8],
    invoice_id: InvoiceId,
    amount: Option<u64>,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    let (merchant, mode) = (principal.merchant, principal.mode);
    // A retried request with a stored answer is replayed by `write` without calling Telegram.
    let key = extract::idempotency_key(headers)?;
    let replay = match key {
        Some(key) => state
            .store(mode)
            .read(move |reader| reader.idempotency_key(merchant, &key))?
            .is_some(),
        None => false,
    };
    let charge_id = if replay {
        None
    } else {
        let plan = plan_rail_refund(state, principal, invoice_id, amount)?;
        let client = crate::telegram::webhook::client(&plan.bot)?;
        let refunded = client.refund_star_payment(plan.user, &plan.charge_id).await;
        // Telegram refunded this charge before but the booking did not commit (a crash or a
        // database failure right after the call): book it now instead of leaving the ledger
        // behind Telegram. The invoice's own state stops a second booking.
        let already = matches!(&refunded, Err(BotApiError::Api { description, .. })
            if description.contains("CHARGE_ALREADY_REFUNDED"));
        if already {
            tracing::warn!(invoice = %invoice_id.encode(), "Telegram had already refunded this charge; booking the refund now");
        } else if let Err(error) = refunded {
            tracing::warn!(%error, invoice = %invoice_id.encode(), "refundStarPayment failed");
            let message = match &error {
                BotApiError::Api { description, .. } => {
                    format!("Telegram refused the refund: {description}")
                }
                _ => "the Telegram Bot API could not be reached; nothing was refunded".to_owned(),
            };
            return Err(telegram_refund_failed(message));
        }
        Some((plan.charge_id, plan.amount_minor, plan.user))
    };
    let checkout = state.checkout_url("");
    write(state, principal, headers, "POST /v1/refunds", body, move |tx| {
        let Some((charge_id, amount_minor, user)) = charge_id else {
            return Err(ApiError::internal("a replayed rail refund has no stored answer"));
        };
        let id: RefundId = new_id();
        let now = tx.now_ns();
        let mut invoice = tx
            .invoice(invoice_id)?
            .filter(|i| i.merchant == merchant)
            .ok_or_else(|| invoice_not_found(invoice_id))?;
        let customer = match invoice.payment.and_then(|p| p.customer).or(invoice.customer) {
            Some(customer) => customer,
            None => telegram_customer(tx, merchant, mode, user)?,
        };
        tracing::info!(invoice = %invoice_id.encode(), charge = %charge_id, "Stars payment refunded through Telegram");
        invoice
            .apply_refund(amount_minor)
            .map_err(|e| map_invoice_error(e).param("invoice"))?;
        tx.update_invoice(&invoice)?;
        let currency = invoice.currency;
        let group = book::transfer(
            TransferId(id.raw()),
            book::merchant(merchant, currency),
            book::rail(merchant, Rail::Stars, currency),
            amount_minor,
            book::REFUND,
            id.raw(),
        );
        tx.apply(&group)?
            .map_err(|error| ledger_error(error, "the merchant", currency))?;
        let url = format!("{checkout}{}", invoice.id.encode());
        emit(tx, merchant, mode, "invoice.refunded", render::invoice(&invoice, mode, &url))?;
        let refund = Refund {
            id,
            merchant,
            invoice: Some(invoice_id),
            charge: None,
            customer,
            currency,
            amount_minor,
            reason,
            created_at_ns: now,
            rail: Some(Rail::Stars),
        };
        tx.insert_refund(&refund)?;
        let object = render::refund(&refund, mode);
        emit(tx, merchant, mode, "refund.succeeded", object.clone())?;
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
