//! `/v1/customers`: customers and their balances per currency.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::{Currency, CustomerId, MerchantId, PublicId};
use farthing_store::{Customer, Tx};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body_bytes, book, emit, list_answer, write};
use crate::error::ApiError;
use crate::extract;
use crate::ids::new_id;
use crate::render;
use crate::state::{AppState, Mode, Principal};

/// `POST /v1/customers` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// The merchant's reference (e.g. a Telegram user id); unique per merchant.
    pub external_id: Option<String>,
    /// Merchant key/value data.
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// `POST /v1/customers`
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("customers:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: CreateCustomer = extract::json_body(&headers, &body)?;
    if let Some(external) = &request.external_id {
        if external.is_empty() || external.chars().count() > 200 {
            return Err(ApiError::invalid(
                "invalid_external_id",
                "external_id must be 1 to 200 characters",
            )
            .param("external_id"));
        }
    }
    let metadata = extract::metadata(request.metadata)?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let external_id = request.external_id;
    write(
        &state,
        &principal,
        &headers,
        "POST /v1/customers",
        &body,
        move |tx| {
            if let Some(external) = &external_id {
                if let Some(existing) = tx.customer_by_external_id(merchant, external)? {
                    return Err(ApiError::conflict(
                        "external_id_taken",
                        format!(
                            "customer {} already has external_id {external:?}",
                            existing.id.encode()
                        ),
                    )
                    .param("external_id"));
                }
            }
            let customer = Customer {
                id: new_id(),
                merchant,
                external_id,
                metadata,
                created_at_ns: tx.now_ns(),
            };
            tx.insert_customer(&customer)?;
            let object = render::customer(&customer, mode, &[]);
            emit(tx, merchant, mode, "customer.created", object.clone())?;
            Ok((StatusCode::CREATED, object))
        },
    )
    .await
}

/// `GET /v1/customers/{id}`: with balances per currency.
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("customers:read")?;
    let customer_id: CustomerId = extract::id_path(&id)?;
    let (customer, balances) = state.store(principal.mode).read(|reader| {
        let customer = reader
            .customer(customer_id)?
            .filter(|c| c.merchant == principal.merchant);
        let balances = match &customer {
            Some(_) => reader.customer_balances(principal.merchant, customer_id)?,
            None => Vec::new(),
        };
        Ok((customer, balances))
    })?;
    let customer = customer.ok_or_else(|| ApiError::not_found("customer", &id))?;
    Ok(axum::Json(render::customer(&customer, principal.mode, &balances)).into_response())
}

/// `GET /v1/customers`
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("customers:read")?;
    let request = extract::list_query(query.as_deref())?.page::<CustomerId>()?;
    let page = state.store(principal.mode).read(|reader| {
        let page = reader.customers(principal.merchant, request)?;
        page.data
            .into_iter()
            .map(|customer| {
                let balances = reader.customer_balances(principal.merchant, customer.id)?;
                Ok(render::customer(&customer, principal.mode, &balances))
            })
            .collect::<Result<Vec<Value>, _>>()
            .map(|data| (data, page.has_more))
    })?;
    Ok(list_answer(page.0, page.1, "/v1/customers"))
}

/// Emits `customer.balance_changed` with the customer's balance in `currency` as of this
/// point of the job.
pub fn emit_balance_changed(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    mode: Mode,
    customer: CustomerId,
    currency: Currency,
) -> Result<(), ApiError> {
    let account = book::customer(merchant, customer, currency);
    let balances = tx
        .account(account.id)?
        .map(|state| state.balances)
        .unwrap_or_default();
    let object = json!({
        "object": "customer_balance",
        "customer": customer.encode(),
        "currency": currency.code(),
        "balance": i64::try_from(balances.posted()).unwrap_or(i64::MAX),
        "available": i64::try_from(balances.available()).unwrap_or(i64::MAX),
    });
    emit(tx, merchant, mode, "customer.balance_changed", object)?;
    Ok(())
}
