//! `/v1/customers`: customers and their balances per currency.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use farthing_app::customers;
use farthing_core::{CustomerId, PublicId};
use serde::Deserialize;
use serde_json::Value;

use super::{list_answer, write};
use crate::render;
use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

/// `POST /v1/customers` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// The merchant's reference (e.g. a Telegram user id); unique per merchant.
    #[schema(min_length = 1, max_length = 200, example = "tg:123456789")]
    pub external_id: Option<String>,
    /// Merchant key/value data.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// `POST /v1/customers`
#[utoipa::path(
    post,
    path = "/v1/customers",
    tag = "customers",
    operation_id = "create_customer",
    summary = "Create a customer",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = Option<CreateCustomer>, content_type = "application/json", description = "Both fields are optional; an empty body creates a customer without them.", example = json!({"external_id": "tg:123456789", "metadata": {"plan": "pro"}})),
    responses(
        (status = 201, description = "The new customer (no balances yet); a `customer.created` event is written with it.", body = spec::Customer, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.")), example = json!({"id": "cus_01m8xps3vzdwahmws0hy00crqv", "object": "customer", "livemode": false, "external_id": "tg:123456789", "metadata": {"plan": "pro"}, "balances": [], "created": 1796293300})),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), a bad `external_id` (`invalid_external_id`) or bad metadata (`invalid_metadata`).", body = spec::Error),
        (status = 409, description = "Another customer of this merchant has this `external_id` (`external_id_taken`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Checked<CreateCustomer>,
) -> Result<Response, ApiError> {
    principal.require("customers:write")?;
    if let Some(external) = &body.value.external_id {
        if external.is_empty() || external.chars().count() > customers::MAX_EXTERNAL_ID_CHARS {
            return Err(ApiError::invalid(
                "invalid_external_id",
                format!(
                    "external_id must be 1 to {} characters",
                    customers::MAX_EXTERNAL_ID_CHARS
                ),
            )
            .param("external_id"));
        }
    }
    let metadata = extract::metadata(body.value.metadata.clone())?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let external_id = body.value.external_id.clone();
    write(
        &state,
        &principal,
        &body.headers,
        "POST /v1/customers",
        &body.raw,
        move |tx| {
            if let Some(external) = &external_id {
                if let Some(existing) = tx.customer_by_external_id(merchant, external)? {
                    return Err(ApiError::conflict(
                        "external_id_taken",
                        format!(
                            "customer {} already has external_id {external:?}; fetch it with GET /v1/customers?external_id=…",
                            existing.id.encode()
                        ),
                    )
                    .param("external_id"));
                }
            }
            let customer = customers::insert(tx, merchant, mode, external_id, metadata)?;
            Ok((
                StatusCode::CREATED,
                render::customer(&customer, mode, &[]).into(),
            ))
        },
    )
    .await
}

/// `GET /v1/customers/{id}`: with balances per currency.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}",
    tag = "customers",
    operation_id = "retrieve_customer",
    summary = "Retrieve a customer, with balances",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The customer, `cus_…` (a malformed id is not found: 404).")),
    responses(
        (status = 200, description = "The customer, with its balances per currency.", body = spec::Customer),
        (status = 404, description = "No such customer for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
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

/// `POST /v1/customers/{id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    /// The customer's metadata, replacing what it had (`{}` clears it); same rules as on
    /// creation.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub metadata: serde_json::Map<String, Value>,
}

/// `POST /v1/customers/{id}`: replaces the metadata. (The external id stays: it is how the bot
/// and integrations find the customer.)
#[utoipa::path(
    post,
    path = "/v1/customers/{id}",
    tag = "customers",
    operation_id = "update_customer",
    summary = "Update a customer's metadata",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The customer, `cus_…`."), spec::IdempotencyKey),
    request_body(content = UpdateCustomer, content_type = "application/json"),
    responses(
        (status = 200, description = "The customer, with its balances.", body = spec::Customer),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), or bad metadata (`invalid_metadata`).", body = spec::Error),
        (status = 404, description = "No such customer for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<UpdateCustomer>,
) -> Result<Response, ApiError> {
    principal.require("customers:write")?;
    let customer_id: CustomerId = extract::id_path(&id)?;
    let metadata = extract::metadata(Some(body.value.metadata.clone()))?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let route = format!("POST /v1/customers/{id}");
    write(
        &state,
        &principal,
        &body.headers,
        &route,
        &body.raw,
        move |tx| {
            let mut customer = tx
                .customer(customer_id)?
                .filter(|c| c.merchant == merchant)
                .ok_or_else(|| ApiError::not_found("customer", &customer_id.encode()))?;
            tx.set_customer_metadata(customer_id, &metadata)?;
            customer.metadata = metadata;
            let balances = tx.customer_balances_in_job(merchant, customer_id)?;
            Ok((
                StatusCode::OK,
                render::customer(&customer, mode, &balances).into(),
            ))
        },
    )
    .await
}

/// `GET /v1/balance`: the merchant's own money per currency.
#[utoipa::path(
    get,
    path = "/v1/balance",
    tag = "customers",
    operation_id = "retrieve_balance",
    summary = "Retrieve the merchant's balance",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Per currency the merchant has held: `available` (earned, free to pay out or refund from), `pending` and `fees`, in minor units. Customers' prepaid balances are theirs: see `GET /v1/customers/{id}`.", body = farthing_app::wire::MerchantBalance),
        spec::ReadErrors,
    ),
)]
pub async fn balance(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("balance:read")?;
    let accounts = state
        .store(principal.mode)
        .read(|reader| reader.merchant_accounts(principal.merchant))?;
    Ok(axum::Json(farthing_app::wire::merchant_balance(
        &accounts,
        principal.mode,
    ))
    .into_response())
}

/// `GET /v1/customers`
#[utoipa::path(
    get,
    path = "/v1/customers",
    tag = "customers",
    operation_id = "list_customers",
    summary = "List customers",
    security(("bearer" = [])),
    params(
        spec::ListParams,
        ("external_id" = Option<String>, Query, description = "Only the customer with this external id (your reference, e.g. `tg:12345`): a list of one, or empty. Paging parameters are ignored with it."),
    ),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::CustomerList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("customers:read")?;
    let query = extract::list_query_with(query.as_deref(), &["external_id"])?;
    // Checked even when `external_id` makes the answer one customer at most: a bad parameter
    // is an error wherever it stands.
    let request = query.page::<CustomerId>()?;
    if let Some(external_id) = query.filter("external_id") {
        // At most one customer has it (unique per merchant and mode).
        let external_id = external_id.to_owned();
        let found = state.store(principal.mode).read(|reader| {
            match reader.customer_by_external_id(principal.merchant, &external_id)? {
                Some(customer) => {
                    let balances = reader.customer_balances(principal.merchant, customer.id)?;
                    Ok(vec![render::customer(&customer, principal.mode, &balances)])
                }
                None => Ok(Vec::new()),
            }
        })?;
        return Ok(list_answer(found, false, "/v1/customers"));
    }
    let page = state.store(principal.mode).read(|reader| {
        let page = reader.customers(principal.merchant, request)?;
        page.data
            .into_iter()
            .map(|customer| {
                let balances = reader.customer_balances(principal.merchant, customer.id)?;
                Ok(render::customer(&customer, principal.mode, &balances))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|data| (data, page.has_more))
    })?;
    Ok(list_answer(page.0, page.1, "/v1/customers"))
}

/// `GET /v1/customers/{id}/statement`
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/statement",
    tag = "customers",
    operation_id = "customer_statement",
    summary = "List a customer's balance movements",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The customer, `cus_…`."),
        ("currency" = Option<String>, Query, description = "Which balance (e.g. `XTR`); needed only when the customer has balances in several currencies."),
        ("limit" = Option<u32>, Query, description = "How many entries to return, from 1 to 100 (default 10)."),
        ("starting_after" = Option<String>, Query, description = "Cursor: the id (`ble_…`) of the last entry of the previous page; this page holds older entries."),
        ("ending_before" = Option<String>, Query, description = "Cursor back: the id of the first entry of the page you have; this page holds the entries just newer, still newest first."),
    ),
    responses(
        (status = 200, description = "A page of the statement, newest first: every credit and debit of the balance with the object behind it and the balance after it (entries of a balance that was never used: an empty list).", body = spec::BalanceEntryList, example = json!({"object": "list", "url": "/v1/customers/cus_01m8xps3vzdwahmws0hy00crqv/statement", "has_more": false, "data": [{"id": "ble_0rxpvkth58agzs9w5pnynq5ryd", "object": "balance_entry", "livemode": false, "customer": "cus_01m8xps3vzdwahmws0hy00crqv", "currency": "XTR", "amount": 1, "balance_after": 498, "type": "refund", "source": "ref_01m8xps3y3ds0d7vv0zr87f517", "created": 1796293301}, {"id": "ble_0rxpvktgyv1v8s9w5pnynq5ryd", "object": "balance_entry", "livemode": false, "customer": "cus_01m8xps3vzdwahmws0hy00crqv", "currency": "XTR", "amount": -3, "balance_after": 497, "type": "charge", "source": "chg_01m8xps3xn47n0b22ztnhdjb39", "created": 1796293300}, {"id": "ble_0rxpvktgpyz2399w5pnynq5ryd", "object": "balance_entry", "livemode": false, "customer": "cus_01m8xps3vzdwahmws0hy00crqv", "currency": "XTR", "amount": 500, "balance_after": 500, "type": "top_up", "source": "inv_01m8xps3wrbby5q9em3ahfn5s3", "created": 1796293300}]})),
        (status = 400, description = "A bad `limit` (`invalid_limit`), a cursor that is not an entry of this balance (`invalid_id`), both cursors (`invalid_parameter`), an unknown currency (`invalid_currency`), no `currency` for a customer with several balances (`currency_required`, naming them), or an unknown query parameter (`unknown_parameter`).", body = spec::Error),
        (status = 404, description = "No such customer for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn statement(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("customers:read")?;
    let customer_id: CustomerId = extract::id_path(&id)?;
    let query = extract::list_query_with(query.as_deref(), &["currency"])?;
    let request = query.page::<farthing_core::BalanceEntryId>()?;
    let asked = query
        .filter("currency")
        .map(|code| extract::currency(code, "currency"))
        .transpose()?;
    let merchant = principal.merchant;
    let url = format!("/v1/customers/{id}/statement");
    let (customer, balances) = state.store(principal.mode).read(|reader| {
        let customer = reader
            .customer(customer_id)?
            .filter(|c| c.merchant == merchant);
        let balances = match &customer {
            Some(_) => reader.customer_balances(merchant, customer_id)?,
            None => Vec::new(),
        };
        Ok((customer, balances))
    })?;
    if customer.is_none() {
        return Err(ApiError::not_found("customer", &id));
    }
    let currency = match (asked, balances.as_slice()) {
        (Some(currency), _) => currency,
        (None, []) => return Ok(list_answer(Vec::<Value>::new(), false, &url)),
        (None, [(currency, ..)]) => *currency,
        (None, several) => {
            let codes: Vec<&str> = several.iter().map(|(c, ..)| c.code()).collect();
            return Err(ApiError::invalid(
                "currency_required",
                format!(
                    "this customer has balances in {}: say which with ?currency=",
                    codes.join(", ")
                ),
            )
            .param("currency"));
        }
    };
    let account = super::book::customer(merchant, customer_id, currency).id;
    // A cursor names a time of this balance's statement; one of another balance is refused.
    let cursor = |raw: Option<u128>, name: &str| -> Result<Option<u64>, ApiError> {
        raw.map(|raw| {
            let time = u64::try_from(raw >> 64).unwrap_or(u64::MAX);
            if farthing_app::wire::balance_entry_id(time, account).raw() != raw {
                return Err(ApiError::invalid(
                    "invalid_id",
                    format!("{name} is an entry of another balance's statement"),
                )
                .param(name.to_owned()));
            }
            Ok(time)
        })
        .transpose()
    };
    let before = cursor(request.starting_after, "starting_after")?;
    let after = cursor(request.ending_before, "ending_before")?;
    let (entries, has_more) = state
        .store(principal.mode)
        .read(|reader| reader.customer_entries(account, request.limit, before, after))?;
    let data: Vec<Value> = entries
        .iter()
        .map(|entry| {
            farthing_app::wire::balance_entry(entry, customer_id, currency, principal.mode).into()
        })
        .collect();
    Ok(list_answer(data, has_more, &url))
}
