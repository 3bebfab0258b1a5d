//! The Lightning rail's objects in the Merchant API: LNURL-withdraw links (refunds customers
//! claim, merchant payouts), LNURL-auth challenges, customers' top-up links, and payouts to a
//! BOLT11. The rail's own logic lives in `crate::rails::lightning`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_lightning::backend::BackendConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::write;
use crate::rails::lightning::Node;
use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract;
use crate::web::extract::body_bytes;
use crate::web::spec;

use axum::extract::Path;
use farthing_app::risk::RiskCheck;
use farthing_core::risk::Operation;
use farthing_core::{Currency, CustomerId, PublicId};
use farthing_store::LnurlSecret;

use crate::rails::lightning as links;

/// Largest `expires_in` of an LNURL link, seconds (30 days).
const MAX_LINK_EXPIRES_S: u64 = 30 * 24 * 3600;

/// The wire form of an LNURL-withdraw link.
pub fn render_withdraw(state: &AppState, mode: Mode, secret: &LnurlSecret) -> Value {
    let (url, lnurl) = links::withdraw_link(state.app().base_url(), mode, &secret.k1);
    let status = if secret.used_at_ns.is_some() {
        "claimed"
    } else if state.now_ns() >= secret.expires_at_ns {
        "expired"
    } else {
        "open"
    };
    json!({
        "object": "lnurl_withdraw",
        "id": links::k1_hex(&secret.k1),
        "livemode": mode.is_live(),
        "status": status,
        "customer": secret.customer.map(PublicId::encode),
        "currency": "BTC",
        "amount_min": secret.min_msat / 1000,
        "amount_max": secret.max_msat / 1000,
        "description": secret.description,
        "payment_hash": secret.result,
        "url": url,
        "lnurl": lnurl,
        "created": crate::render::unix_s(secret.created_at_ns),
        "expires_at": crate::render::unix_s(secret.expires_at_ns),
    })
}

fn render_auth(
    state: &AppState,
    mode: Mode,
    secret: &LnurlSecret,
    customer: Option<CustomerId>,
) -> Value {
    let (url, lnurl) = links::auth_link(
        state.app().base_url(),
        mode,
        &secret.k1,
        &secret.description,
    );
    let status = if secret.used_at_ns.is_some() {
        "verified"
    } else if state.now_ns() >= secret.expires_at_ns {
        "expired"
    } else {
        "pending"
    };
    json!({
        "object": "lnurl_auth",
        "id": links::k1_hex(&secret.k1),
        "livemode": mode.is_live(),
        "status": status,
        "action": secret.description,
        "linking_key": secret.result,
        "customer": customer.map(PublicId::encode),
        "url": url,
        "lnurl": lnurl,
        "created": crate::render::unix_s(secret.created_at_ns),
        "expires_at": crate::render::unix_s(secret.expires_at_ns),
    })
}

fn expires_in(value: Option<u64>, default: u64) -> Result<u64, ApiError> {
    let value = value.unwrap_or(default);
    if value == 0 || value > MAX_LINK_EXPIRES_S {
        return Err(ApiError::invalid(
            "invalid_expires_in",
            format!("expires_in must be 1 to {MAX_LINK_EXPIRES_S} seconds"),
        )
        .param("expires_in"));
    }
    Ok(value)
}

/// The merchant's node, which must be able to pay (refunds and payouts over Lightning).
pub fn require_paying_node(
    state: &AppState,
    principal: &Principal,
) -> Result<std::sync::Arc<Node>, ApiError> {
    require_node(state, principal, true)
}

fn require_node(
    state: &AppState,
    principal: &Principal,
    pay: bool,
) -> Result<std::sync::Arc<Node>, ApiError> {
    let node = state
        .rails()
        .lightning()
        .ok_or_else(|| ApiError::internal("the lightning rail is not registered"))?
        .nodes()
        .get(state.app(), principal.mode, principal.merchant)?
        .ok_or_else(|| {
            ApiError::invalid(
                "rail_not_configured",
                "the lightning rail is not configured: PUT /v1/rails/lightning first",
            )
        })?;
    if pay {
        let row = state.store(principal.mode).read({
            let merchant = principal.merchant;
            move |reader| reader.lightning_node(merchant)
        })?;
        let can_pay = row
            .and_then(|row| serde_json::from_str::<BackendConfig>(&row.config).ok())
            .is_some_and(|config| config.can_pay());
        if !can_pay {
            return Err(ApiError::invalid(
                "lightning_cannot_pay",
                "the Lightning node is connected without a key that can pay (LNbits admin_key)",
            ));
        }
    }
    Ok(node)
}

/// The body of `POST /v1/lnurl/withdraws`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWithdraw {
    /// The customer whose BTC balance pays (a refund they claim); absent: the merchant's own
    /// balance (a payout).
    pub customer: Option<String>,
    /// The most the link pays, in satoshis.
    #[schema(minimum = 1)]
    pub amount: u64,
    /// The least the link pays, in satoshis (default 1).
    #[schema(minimum = 1)]
    pub amount_min: Option<u64>,
    /// Shown by the wallet.
    pub description: Option<String>,
    /// Seconds until the link stops working (default 86400, at most 30 days).
    pub expires_in: Option<u64>,
}

/// `POST /v1/lnurl/withdraws`
#[utoipa::path(
    post,
    path = "/v1/lnurl/withdraws",
    tag = "lightning",
    operation_id = "create_lnurl_withdraw",
    summary = "Make a single-use LNURL-withdraw link (a refund the customer claims, or a payout)",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateWithdraw, content_type = "application/json"),
    responses(
        (status = 201, description = "The link (`lnurl_withdraw`): `lnurl` for a QR, `url`, `status` `open`. The money is held when a wallet claims it, and booked when the payment succeeds (`payout.succeeded`).", body = spec::LnurlWithdraw),
        (status = 400, description = "Invalid body, amount, customer or expiry; the Lightning rail is not configured or cannot pay (`rail_not_configured`, `lightning_cannot_pay`).", body = spec::Error),
        (status = 402, description = "The balance is smaller than `amount` now (`insufficient_funds`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn create_withdraw(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: CreateWithdraw = extract::json_body(&headers, &body)?;
    require_node(&state, &principal, true)?;
    let customer = request
        .customer
        .as_deref()
        .map(|id| extract::id_param::<CustomerId>(id, "customer"))
        .transpose()?;
    let min = request.amount_min.unwrap_or(1);
    if request.amount == 0 || request.amount > farthing_core::money::MAX_AMOUNT_MINOR / 1000 {
        return Err(ApiError::invalid(
            "invalid_amount",
            "amount must be a positive number of satoshis",
        )
        .param("amount"));
    }
    if min == 0 || min > request.amount {
        return Err(
            ApiError::invalid("invalid_amount", "amount_min must be 1 to amount")
                .param("amount_min"),
        );
    }
    let description = request
        .description
        .unwrap_or_else(|| "Withdrawal".to_owned());
    if description.chars().count() > 200 {
        return Err(ApiError::invalid(
            "invalid_description",
            "description must be at most 200 characters",
        )
        .param("description"));
    }
    let expires = expires_in(request.expires_in, 24 * 3600)?;
    let secret = links::new_withdraw_secret(
        state.now_ns(),
        principal.merchant,
        customer,
        min,
        request.amount,
        description,
        expires,
    )?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let object = render_withdraw(&state, mode, &secret);
    let amount = request.amount;
    write(
        &state,
        &principal,
        &headers,
        "POST /v1/lnurl/withdraws",
        &body,
        move |tx| {
            if let Some(customer) = customer {
                super::require_customer(tx, merchant, customer)?;
            }
            let account = match customer {
                Some(customer) => {
                    super::book::customer(merchant, customer, farthing_core::Currency::BTC)
                }
                None => super::book::merchant(merchant, farthing_core::Currency::BTC),
            };
            let available = tx
                .account(account.id)?
                .map_or(0, |a| u64::try_from(a.balances.available()).unwrap_or(0));
            if available < amount {
                return Err(ApiError::payment(
                    "insufficient_funds",
                    format!(
                    "the balance holds {available} BTC satoshis; the link would pay up to {amount}"
                ),
                ));
            }
            tx.insert_lnurl_secret(&secret)?;
            Ok((StatusCode::CREATED, object))
        },
    )
    .await
}

/// `GET /v1/lnurl/withdraws/{id}`
#[utoipa::path(
    get,
    path = "/v1/lnurl/withdraws/{id}",
    tag = "lightning",
    operation_id = "retrieve_lnurl_withdraw",
    summary = "Retrieve an LNURL-withdraw link",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The link's id (its k1, hex).")),
    responses(
        (status = 200, description = "The link; `status` is `open`, `claimed` or `expired`.", body = spec::LnurlWithdraw),
        (status = 404, description = "No such link for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve_withdraw(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("refunds:read")?;
    let secret = find_secret(&state, &principal, &id, "withdraw", "lnurl_withdraw")?;
    Ok(axum::Json(render_withdraw(&state, principal.mode, &secret)).into_response())
}

fn find_secret(
    state: &AppState,
    principal: &Principal,
    id: &str,
    kind: &str,
    object: &str,
) -> Result<LnurlSecret, ApiError> {
    let k1 = links::k1_from_hex(id).ok_or_else(|| ApiError::not_found(object, id))?;
    state
        .store(principal.mode)
        .read(move |reader| reader.lnurl_secret(&k1))?
        .filter(|s| s.merchant == principal.merchant && s.kind == kind)
        .ok_or_else(|| ApiError::not_found(object, id))
}

/// The body of `POST /v1/lnurl/auth`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAuth {
    /// LUD-04 action: `login` (default), `register`, `link` or `auth`.
    pub action: Option<String>,
    /// Seconds the challenge stays valid (default 300, at most 3600).
    pub expires_in: Option<u64>,
}

/// `POST /v1/lnurl/auth`
#[utoipa::path(
    post,
    path = "/v1/lnurl/auth",
    tag = "lightning",
    operation_id = "create_lnurl_auth",
    summary = "Make an LNURL-auth challenge (log a customer in with their wallet)",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateAuth, content_type = "application/json"),
    responses(
        (status = 201, description = "The challenge (`lnurl_auth`, `status` `pending`): show `lnurl` as a QR; poll `GET /v1/lnurl/auth/{id}` until `verified`, which names the `customer` the wallet's linking key belongs to (created on first login).", body = spec::LnurlAuth),
        (status = 400, description = "Invalid body, action or expiry.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn create_auth(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("customers:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: CreateAuth = extract::json_body(&headers, &body)?;
    let action = request.action.unwrap_or_else(|| "login".to_owned());
    if !matches!(action.as_str(), "login" | "register" | "link" | "auth") {
        return Err(ApiError::invalid(
            "invalid_action",
            "action must be login, register, link or auth",
        )
        .param("action"));
    }
    let expires = request.expires_in.unwrap_or(300);
    if expires == 0 || expires > 3600 {
        return Err(ApiError::invalid(
            "invalid_expires_in",
            "expires_in must be 1 to 3600 seconds",
        )
        .param("expires_in"));
    }
    let secret = links::new_auth_secret(state.now_ns(), principal.merchant, &action, expires)?;
    let object = render_auth(&state, principal.mode, &secret, None);
    write(
        &state,
        &principal,
        &headers,
        "POST /v1/lnurl/auth",
        &body,
        move |tx| {
            tx.insert_lnurl_secret(&secret)?;
            Ok((StatusCode::CREATED, object))
        },
    )
    .await
}

/// `GET /v1/lnurl/auth/{id}`
#[utoipa::path(
    get,
    path = "/v1/lnurl/auth/{id}",
    tag = "lightning",
    operation_id = "retrieve_lnurl_auth",
    summary = "Retrieve an LNURL-auth challenge",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The challenge's id (its k1, hex).")),
    responses(
        (status = 200, description = "The challenge; `status` is `pending`, `verified` (with `linking_key` and `customer`) or `expired`.", body = spec::LnurlAuth),
        (status = 404, description = "No such challenge for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve_auth(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("customers:read")?;
    let secret = find_secret(&state, &principal, &id, "auth", "lnurl_auth")?;
    let customer = match &secret.result {
        Some(key) => {
            let (merchant, key) = (principal.merchant, key.clone());
            state
                .store(principal.mode)
                .read(move |reader| reader.lnurl_identity(merchant, &key))?
        }
        None => None,
    };
    Ok(axum::Json(render_auth(&state, principal.mode, &secret, customer)).into_response())
}

/// `GET /v1/customers/{id}/lightning`
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/lightning",
    tag = "lightning",
    operation_id = "customer_lightning_top_up",
    summary = "The customer's LNURL-pay top-up link",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The customer (`cus_…`).")),
    responses(
        (status = 200, description = "`{\"object\": \"lnurl_pay\", \"customer\", \"url\", \"lnurl\"}`: any amount paid to it is credited to the customer's BTC balance (`invoice.payment_credited` with `credit_reason` `top_up`).", body = spec::CustomerTopUpLink),
        (status = 400, description = "The Lightning rail is not configured (`rail_not_configured`).", body = spec::Error),
        (status = 404, description = "No such customer for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn customer_top_up(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("customers:read")?;
    let customer: CustomerId = extract::id_path(&id)?;
    let merchant = principal.merchant;
    let found = state
        .store(principal.mode)
        .read(move |reader| reader.customer(customer))?
        .filter(|c| c.merchant == merchant);
    if found.is_none() {
        return Err(ApiError::not_found("customer", &id));
    }
    require_node(&state, &principal, false)?;
    let (url, lnurl) = links::top_up_link(state.app().base_url(), principal.mode, customer);
    Ok(axum::Json(json!({
        "object": "lnurl_pay",
        "livemode": principal.mode.is_live(),
        "customer": id,
        "url": url,
        "lnurl": lnurl,
    }))
    .into_response())
}

/// The body of `POST /v1/payouts`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayout {
    /// A BOLT11 with an amount, on the node's network: the merchant's own wallet invoice.
    pub bolt11: String,
}

/// `POST /v1/payouts`
#[utoipa::path(
    post,
    path = "/v1/payouts",
    tag = "lightning",
    operation_id = "create_payout",
    summary = "Pay out the merchant's BTC balance to a BOLT11 it submits",
    security(("bearer" = [])),
    request_body(content = CreatePayout, content_type = "application/json"),
    responses(
        (status = 200, description = "`{\"object\": \"payout\", \"status\": \"succeeded\" | \"failed\" | \"pending\"}`. The amount is held first, posted on success, released on failure; `pending` keeps it held (the node has not finished).", body = spec::Payout),
        (status = 400, description = "Invalid body or BOLT11 (`invalid_bolt11`: unparsable, other network, expired, no amount, not whole satoshis); the rail is not configured or cannot pay.", body = spec::Error),
        (status = 402, description = "The merchant's BTC balance is short (`insufficient_funds`). Or the merchant's risk rules refused the payment (`risk_refused`, with `decision`: see `GET /v1/risk/decisions`); nothing was written.", body = spec::Error),
        (status = 409, description = "This BOLT11 was already submitted for a payout (`payout_exists`), whatever came of it: a BOLT11 is paid out at most once, so this operation takes no Idempotency-Key and a retry never pays twice. After a `failed` payout, submit a new BOLT11.", body = spec::Error),
        (status = 502, description = "The node did not answer; the amount stays held until the payment's outcome is known (`lightning_unavailable`).", body = spec::Error),
        spec::ReadErrors,
        spec::TooLarge,
        spec::Unavailable,
    ),
)]
pub async fn create_payout(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: CreatePayout = extract::json_body(&headers, &body)?;
    let node = require_node(&state, &principal, true)?;
    let now_s = state.now_ns() / 1_000_000_000;
    let bad = |message: String| ApiError::invalid("invalid_bolt11", message).param("bolt11");
    let checked = farthing_lightning::bolt11::check(
        request.bolt11.trim(),
        &farthing_lightning::bolt11::Expect {
            network: Some(node.network),
            now_s: Some(now_s),
            ..Default::default()
        },
    )
    .map_err(|error| bad(error.to_string()))?;
    let amount_msat = checked
        .amount_msat
        .ok_or_else(|| bad("the BOLT11 must carry an amount".to_owned()))?;
    if !amount_msat.is_multiple_of(1000) {
        return Err(bad("the BOLT11 must ask whole satoshis".to_owned()));
    }
    let key = links::payout_key(None, &checked.payment_hash);
    let (merchant, mode) = (principal.merchant, principal.mode);
    // Payouts are guarded: with step-up on, the audit middleware has checked the code already.
    let (step_up, _) = farthing_app::step_up::status(state.app(), mode, merchant)?;
    let risk = RiskCheck::new(state.app(), mode, merchant, Operation::Payout)
        .wallet(Some(checked.payee.clone()))
        .stepped_up(step_up == "on")
        .subject(checked.payment_hash.to_hex());
    let guard = risk.clone();
    let held = state
        .app()
        .run(mode, move |tx| -> Result<(), ApiError> {
            let sats = amount_msat / 1000;
            Ok(guard.guard(tx, sats, Currency::BTC, None, |tx| {
                links::hold(tx, mode, merchant, None, &key, sats)
            })?)
        })
        .await;
    risk.finish().await?;
    held?;
    let payout = links::Payout {
        merchant,
        customer: None,
        key,
        link: None,
        amount_msat,
    };
    let outcome = links::pay_out(state.app(), mode, &node, &payout, request.bolt11.trim()).await;
    let (status, detail) = match &outcome {
        Ok(farthing_lightning::PaymentOutcome::Succeeded { fee_msat, .. }) => {
            ("succeeded", json!({"fee_msat": fee_msat}))
        }
        Ok(farthing_lightning::PaymentOutcome::Failed { reason }) => {
            ("failed", json!({"failure_reason": reason}))
        }
        Ok(farthing_lightning::PaymentOutcome::Pending { .. }) => ("pending", Value::Null),
        Err(error) => return Err(ApiError::from(crate::rails::lightning::node_error(error))),
    };
    Ok(axum::Json(json!({
        "object": "payout",
        "id": links::k1_hex(&key),
        "livemode": mode.is_live(),
        "currency": "BTC",
        "amount": amount_msat / 1000,
        "payment_hash": checked.payment_hash.to_hex(),
        "status": status,
        "detail": detail,
    }))
    .into_response())
}
