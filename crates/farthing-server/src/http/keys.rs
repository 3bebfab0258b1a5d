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
use super::{list_answer, write};
use crate::render::unix_s;
use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract::Checked;
use crate::web::spec;

/// Every scope an operation requires; `*` grants them all.
pub const SCOPES: [&str; 18] = [
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
        (status = 201, description = "The key, with its `secret` shown this once, in the mode of the key that made it.", body = spec::ApiKey),
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
    let secret = generate_key(mode).map_err(ApiError::internal)?;
    let record = ApiKeyRecord {
        key_hash: hash_key(&secret),
        merchant,
        scopes: scopes.clone(),
        hint: key_hint(&secret),
        revoked_at_ns: None,
    };
    write(
        &state,
        &principal,
        &body.headers,
        "POST /v1/api_keys",
        &body.raw,
        move |tx| {
            tx.insert_api_key(&record)?;
            let listing = ApiKeyListing {
                key_hash: record.key_hash,
                scopes: record.scopes.clone(),
                hint: record.hint.clone(),
                created_at_ns: tx.now_ns(),
                revoked_at_ns: None,
            };
            Ok((StatusCode::CREATED, render(&listing, mode, Some(&secret))))
        },
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
        (status = 200, description = "The key, revoked: it answers 401 from now on.", body = spec::ApiKey),
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
    let keys = state
        .store(principal.mode)
        .read(|reader| reader.api_keys(principal.merchant))?;
    let listing = keys
        .into_iter()
        .find(|key| key_id(&key.key_hash) == id)
        .ok_or_else(|| ApiError::not_found("api_key", &id))?;
    if listing.key_hash == principal.key_hash {
        return Err(ApiError::conflict(
            "revoking_own_key",
            "this is the key making the request: revoke it with another key, so that you keep one that works",
        ));
    }
    if listing.revoked_at_ns.is_some() {
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
