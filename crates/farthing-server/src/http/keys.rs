//! `/v1/api_keys`: a merchant's API keys while the server runs — create one with the scopes a
//! job needs (shown once), list them (never the key), revoke one (it stops working at once on
//! this server, and within the key cache's lifetime on any other process).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use farthing_store::{ApiKeyListing, ApiKeyRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{generate_key, hash_key, key_hint};
use super::{list_answer, write, write_revealing, Reveal};
use crate::render::unix_s;
use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract::Checked;
use crate::web::spec;

/// Every scope an operation requires; `*` grants them all.
pub const SCOPES: [&str; 19] = [
    "api_keys:write",
    "audit_log:read",
    "balance:read",
    "charges:read",
    "charges:write",
    "customers:read",
    "customers:write",
    "dashboard:write",
    "events:read",
    "invoices:read",
    "invoices:write",
    "rails:write",
    "refunds:read",
    "refunds:write",
    "settings:read",
    "settings:write",
    "step_up:write",
    "webhooks:read",
    "webhooks:write",
];

/// The public id of a key: `key_` and the first 16 hex digits of its SHA-256.
pub fn key_id(hash: &[u8; 32]) -> String {
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("key_{hex}")
}

fn render(listing: &ApiKeyListing, mode: Mode, secret: Option<&str>) -> Value {
    let mut object = json!({
        "object": "api_key",
        "id": key_id(&listing.key_hash),
        "livemode": mode.is_live(),
        "hint": listing.hint,
        "scopes": listing.scopes,
        "created": unix_s(listing.created_at_ns),
        "revoked_at": listing.revoked_at_ns.map(unix_s),
    });
    if let Some(secret) = secret {
        object["secret"] = json!(secret);
    }
    object
}

/// A new key of `merchant` in `mode`: its secret (shown once) and what is stored of it.
fn new_key(
    mode: Mode,
    merchant: farthing_core::MerchantId,
    scopes: Vec<String>,
) -> Result<(String, ApiKeyRecord), ApiError> {
    let secret = generate_key(mode).map_err(ApiError::internal)?;
    let record = ApiKeyRecord {
        key_hash: hash_key(&secret),
        merchant,
        scopes,
        hint: key_hint(&secret),
        revoked_at_ns: None,
    };
    Ok((secret, record))
}

/// Stores a new key in the current job; answers it as lists show it (never its secret).
fn insert(
    tx: &mut farthing_store::Tx<'_, '_>,
    record: &ApiKeyRecord,
    mode: Mode,
) -> Result<super::Answer, ApiError> {
    tx.insert_api_key(record)?;
    let listing = ApiKeyListing {
        key_hash: record.key_hash,
        scopes: record.scopes.clone(),
        hint: record.hint.clone(),
        created_at_ns: tx.now_ns(),
        revoked_at_ns: None,
    };
    Ok((StatusCode::CREATED, render(&listing, mode, None)))
}

/// The principal's merchant's key `id` (`key_…`), or 404.
fn find(state: &AppState, principal: &Principal, id: &str) -> Result<ApiKeyListing, ApiError> {
    state
        .store(principal.mode)
        .read(|reader| reader.api_keys(principal.merchant))?
        .into_iter()
        .find(|key| key_id(&key.key_hash) == id)
        .ok_or_else(|| ApiError::not_found("api_key", id))
}

/// `POST /v1/api_keys` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key may do: scopes such as `charges:write`, or `["*"]` for everything. A key
    /// can only grant what the key making it has.
    #[schema(example = json!(["charges:write", "customers:read"]))]
    pub scopes: Vec<String>,
}

/// `POST /v1/api_keys`
#[utoipa::path(
    post,
    path = "/v1/api_keys",
    tag = "api_keys",
    operation_id = "create_api_key",
    summary = "Create an API key",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateApiKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The key, with its `secret` shown this once, in the mode of the key that made it. A replay under the same Idempotency-Key answers the key without its `secret`: farthing never stores it in clear.", body = spec::ApiKey),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), no scopes or an unknown one (`invalid_scopes`), or a scope the requesting key does not have (`scope_not_held`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Checked<CreateApiKey>,
) -> Result<Response, ApiError> {
    principal.require("api_keys:write")?;
    let mut scopes = body.value.scopes.clone();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::invalid(
            "invalid_scopes",
            "scopes is empty: name what the key may do, or [\"*\"] for everything",
        )
        .param("scopes"));
    }
    for (i, scope) in scopes.iter().enumerate() {
        if scope != "*" && !SCOPES.contains(&scope.as_str()) {
            return Err(ApiError::invalid(
                "invalid_scopes",
                format!(
                    "unknown scope {scope:?}; scopes are: *, {}",
                    SCOPES.join(", ")
                ),
            )
            .param(format!("scopes[{i}]")));
        }
        if principal.require(scope).is_err() {
            return Err(ApiError::invalid(
                "scope_not_held",
                format!("this key cannot grant {scope:?}: it does not hold it"),
            )
            .param(format!("scopes[{i}]")));
        }
    }
    let (merchant, mode) = (principal.merchant, principal.mode);
    let (secret, record) = new_key(mode, merchant, scopes)?;
    write_revealing(
        &state,
        &principal,
        &body.headers,
        "POST /v1/api_keys",
        &body.raw,
        Some(Reveal {
            field: "secret",
            value: secret,
        }),
        move |tx| insert(tx, &record, mode),
    )
    .await
}

/// `GET /v1/api_keys`
#[utoipa::path(
    get,
    path = "/v1/api_keys",
    tag = "api_keys",
    operation_id = "list_api_keys",
    summary = "List API keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every key of the merchant in this mode, newest first (never the keys themselves); `has_more` is always false.", body = spec::ApiKeyList),
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("api_keys:write")?;
    let keys = state
        .store(principal.mode)
        .read(|reader| reader.api_keys(principal.merchant))?;
    let data: Vec<Value> = keys
        .iter()
        .map(|key| render(key, principal.mode, None))
        .collect();
    Ok(list_answer(data, false, "/v1/api_keys"))
}

/// `POST /v1/api_keys/{id}/revoke`
#[utoipa::path(
    post,
    path = "/v1/api_keys/{id}/revoke",
    tag = "api_keys",
    operation_id = "revoke_api_key",
    summary = "Revoke an API key",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The key, `key_…` (from `GET /v1/api_keys`)."), spec::IdempotencyKey),
    responses(
        (status = 200, description = "The key, revoked: it answers 401 from now on (a rolled key still in its grace period included).", body = spec::ApiKey),
        (status = 400, description = "A bad Idempotency-Key (`invalid_idempotency_key`).", body = spec::Error),
        (status = 404, description = "No such key for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The key is the one making this request (`revoking_own_key`: revoke it with another key), or already revoked (`already_revoked`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    principal.require("api_keys:write")?;
    let listing = find(&state, &principal, &id)?;
    if listing.key_hash == principal.key_hash {
        return Err(ApiError::conflict(
            "revoking_own_key",
            "this is the key making the request: revoke it with another key, so that you keep one that works",
        ));
    }
    // A rolled key still in its grace period may be revoked at once.
    if listing
        .revoked_at_ns
        .is_some_and(|at| at <= state.app().now_ns())
    {
        return Err(ApiError::conflict(
            "already_revoked",
            "this key is already revoked",
        ));
    }
    let (merchant, mode, hash) = (principal.merchant, principal.mode, listing.key_hash);
    let route = format!("POST /v1/api_keys/{id}/revoke");
    let response = write(&state, &principal, &headers, &route, &[], move |tx| {
        if !tx.revoke_api_key(merchant, &hash)? {
            return Err(ApiError::conflict(
                "already_revoked",
                "this key is already revoked",
            ));
        }
        let revoked = ApiKeyListing {
            revoked_at_ns: Some(tx.now_ns()),
            ..listing
        };
        Ok((StatusCode::OK, render(&revoked, mode, None)))
    })
    .await?;
    // Stops working at once here (other processes re-check within the cache's lifetime).
    state.uncache_key(&hash);
    Ok(response.into_response())
}

/// Longest grace period of a rolled key: 7 days.
pub const MAX_ROLL_GRACE_S: u64 = 7 * 24 * 3600;

/// `POST /v1/api_keys/{id}/roll` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollApiKey {
    /// How long the old key keeps working, in seconds: 0 (the default) stops it at once, at
    /// most 604800 (7 days) gives the services that use it time to switch.
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 604800, default = 0, example = 3600)]
    pub expires_in: Option<Value>,
}

/// `POST /v1/api_keys/{id}/roll`: a new key with the same scopes; the old one stops working
/// now or after the grace period chosen.
#[utoipa::path(
    post,
    path = "/v1/api_keys/{id}/roll",
    tag = "api_keys",
    operation_id = "roll_api_key",
    summary = "Roll an API key",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The key to replace, `key_…` (from `GET /v1/api_keys`)."), spec::IdempotencyKey),
    request_body(content = Option<RollApiKey>, content_type = "application/json", description = "Optional; an empty body stops the old key at once."),
    responses(
        (status = 201, description = "The new key with the old one's scopes, its `secret` shown this once (not in a replay); the old key's `revoked_at` is set to when it stops working (listed by `GET /v1/api_keys`).", body = spec::ApiKey),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), or an `expires_in` that is not 0 to 604800 seconds (`invalid_expires_in`).", body = spec::Error),
        (status = 404, description = "No such key for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The key is already revoked (`already_revoked`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn roll(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<RollApiKey>,
) -> Result<Response, ApiError> {
    principal.require("api_keys:write")?;
    let grace_s = match &body.value.expires_in {
        None | Some(Value::Null) => 0,
        Some(value) => value
            .as_u64()
            .filter(|s| *s <= MAX_ROLL_GRACE_S)
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_expires_in",
                    format!("expires_in must be a whole number of seconds from 0 to {MAX_ROLL_GRACE_S} (7 days)"),
                )
                .param("expires_in")
            })?,
    };
    let old = find(&state, &principal, &id)?;
    let now = state.app().now_ns();
    if old.revoked_at_ns.is_some_and(|at| at <= now) {
        return Err(ApiError::conflict(
            "already_revoked",
            "this key is already revoked: roll or create another",
        ));
    }
    let (merchant, mode) = (principal.merchant, principal.mode);
    let (secret, record) = new_key(mode, merchant, old.scopes.clone())?;
    let stops_at = now.saturating_add(grace_s.saturating_mul(1_000_000_000));
    let old_hash = old.key_hash;
    let route = format!("POST /v1/api_keys/{id}/roll");
    let response = write_revealing(
        &state,
        &principal,
        &body.headers,
        &route,
        &body.raw,
        Some(Reveal {
            field: "secret",
            value: secret,
        }),
        move |tx| {
            // A grace period never extends a key that already stops sooner.
            tx.revoke_api_key_at(merchant, &old_hash, stops_at)?;
            insert(tx, &record, mode)
        },
    )
    .await?;
    // The cached copy would not know the new end of the old key's life.
    state.uncache_key(&old_hash);
    Ok(response.into_response())
}
