//! The Merchant API under `/v1` (SPEC section 9).
//!
//! Every write goes through [`write()`]: it honours `Idempotency-Key` (same key and body → the
//! stored answer; same key, other body → 422), runs the operation as one store job (its rows,
//! ledger transfers and events commit together or not at all) and answers after the commit.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod charges;
pub mod customers;
pub mod events;
pub mod invoices;
pub mod keys;
pub mod lightning;
pub mod lnurl;
pub mod rails;
pub mod risk;
pub mod settings;
pub mod stars;
pub mod step_up;
pub mod subscriptions;
pub mod test_mode;
pub mod ton;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::{EventId, MerchantId, PublicId};
use farthing_store::{EventRecord, Tx};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract;

/// What an operation answers: status and body.
pub type Answer = (StatusCode, Value);

/// Runs a write operation for `principal` with idempotency, inside one store job.
///
/// `op` must refuse (return `Err`) before writing anything it cannot keep; as a safety net it
/// runs in a nested savepoint, so an `Err` undoes whatever it wrote anyway. A 4xx answer is
/// stored under the idempotency key like a success (as Stripe does); a 5xx is not.
pub async fn write<F>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    op: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(&mut Tx<'_, '_>) -> Result<Answer, ApiError> + Send + 'static,
{
    write_revealing(state, principal, headers, route, body, None, op).await
}

/// A secret an answer shows once (a new API key): added to the fresh answer only, never to
/// what is stored under the Idempotency-Key, so it is not kept in clear; a replay answers
/// without it.
pub struct Reveal {
    /// The field it goes in, e.g. `secret`.
    pub field: &'static str,
    /// The secret.
    pub value: String,
}

/// [`write()`], with `reveal` added to a fresh successful answer.
pub async fn write_revealing<F>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    reveal: Option<Reveal>,
    op: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(&mut Tx<'_, '_>) -> Result<Answer, ApiError> + Send + 'static,
{
    let key = extract::idempotency_key(headers)?;
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    let fingerprint: Vec<u8> = hasher.finalize().to_vec();
    let merchant = principal.merchant;
    let outcome = state
        .app()
        .run(principal.mode, move |tx| -> Result<(Answer, bool), ApiError> {
            if let Some(key) = &key {
                if let Some((stored, status, body)) = tx.idempotency_key(merchant, key)? {
                    if stored != fingerprint {
                        return Err(ApiError::idempotency(format!(
                            "Idempotency-Key {key:?} was already used with a different request; use a new key for a new request"
                        )));
                    }
                    let status = StatusCode::from_u16(status).map_err(ApiError::internal)?;
                    let body = serde_json::from_str(&body).map_err(ApiError::internal)?;
                    return Ok(((status, body), true));
                }
            }
            let Some(key) = &key else {
                // Without a key nothing is stored, so an error can simply undo the job
                // (its savepoint) without the nested savepoint below: every savepoint level
                // copies each page it first touches.
                return op(tx).map(|answer| (answer, false));
            };
            let answer = match tx.nested(op)? {
                Ok(answer) => answer,
                Err(error) if error.status.is_client_error() => (error.status, error.body()),
                Err(error) => return Err(error),
            };
            tx.insert_idempotency_key(
                merchant,
                key,
                &fingerprint,
                answer.0.as_u16(),
                &answer.1.to_string(),
            )?;
            Ok((answer, false))
        })
        .await;
    let ((status, mut body), replayed) = outcome?;
    if let (Some(reveal), false, true) = (reveal, replayed, status.is_success()) {
        body[reveal.field] = Value::String(reveal.value);
    }
    let mut response = (status, axum::Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Writes an event (and its deliveries) to the outbox in the current job.
pub fn emit(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    mode: Mode,
    event_type: &str,
    object: Value,
) -> Result<EventId, ApiError> {
    Ok(farthing_app::outbox::emit(
        tx, merchant, mode, event_type, &object,
    )?)
}

/// An outbox event with its delivered body (see `farthing_app::outbox::event_record`).
pub fn event_record(
    merchant: MerchantId,
    mode: Mode,
    event_type: &str,
    object: &Value,
    created_at_ns: u64,
) -> EventRecord {
    farthing_app::outbox::event_record(merchant, mode, event_type, object, created_at_ns)
}

/// The merchant's customer named in a body parameter, or 400 `customer_not_found` (another
/// merchant's customer is not found either: ids don't leak across merchants).
pub fn require_customer(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    customer: farthing_core::CustomerId,
) -> Result<farthing_store::Customer, ApiError> {
    tx.customer(customer)?
        .filter(|c| c.merchant == merchant)
        .ok_or_else(|| {
            ApiError::invalid(
                "customer_not_found",
                format!("no such customer: {:?}", customer.encode()),
            )
            .param("customer")
        })
}

/// The merchant's invoice named in the path, or 404.
pub fn require_invoice(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    invoice: farthing_core::InvoiceId,
) -> Result<farthing_core::invoice::Invoice, ApiError> {
    tx.invoice(invoice)?
        .filter(|found| found.merchant == merchant)
        .ok_or_else(|| ApiError::not_found("invoice", &invoice.encode()))
}

/// Turns a list page into the API's list object.
pub fn list_answer<T: serde::Serialize>(data: Vec<T>, has_more: bool, url: &str) -> Response {
    axum::Json(crate::render::list(data, has_more, url)).into_response()
}

/// An API object of kind `object` in `mode` whose other fields are `fields`' (a struct that
/// serialises to a JSON object).
pub fn object_with(
    object: &str,
    mode: crate::state::Mode,
    fields: &impl serde::Serialize,
) -> Value {
    let mut rendered = serde_json::json!({"object": object, "livemode": mode.is_live()});
    if let (Value::Object(map), Ok(Value::Object(fields))) =
        (&mut rendered, serde_json::to_value(fields))
    {
        map.extend(fields);
    }
    rendered
}

/// The ledger accounts the API books on (the service's).
pub use farthing_app::book;
