//! API keys (SPEC A1): generated here, shown once, stored as SHA-256 hashes, checked in
//! constant time, cached in memory after the first lookup.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use farthing_core::{MerchantId, PublicId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;

/// A new secret key of `mode`: prefix + 32 random bytes in URL-safe base64.
pub fn generate_key(mode: Mode) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{}{}",
        mode.key_prefix(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// What is stored of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The first characters of a key, safe to show in lists and logs.
pub fn key_hint(key: &str) -> String {
    let visible: String = key.chars().take(12).collect();
    format!("{visible}…")
}

/// The mode a key claims by its prefix.
pub fn key_mode(key: &str) -> Option<Mode> {
    if key.starts_with(Mode::Live.key_prefix()) {
        Some(Mode::Live)
    } else if key.starts_with(Mode::Test.key_prefix()) {
        Some(Mode::Test)
    } else {
        None
    }
}

/// Checks a presented key and returns its principal.
pub fn authenticate(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    let invalid = || {
        ApiError::unauthorized(
            "invalid_api_key",
            "invalid API key: use a key printed by `farthing merchant create`",
        )
    };
    let mode = key_mode(key).ok_or_else(invalid)?;
    let hash = hash_key(key);
    let now = state.app().now_ns();
    let expired = |at: Option<u64>| at.is_some_and(|at| at <= now);
    if let Some(principal) = state.cached_key(&hash) {
        if expired(principal.expires_at_ns) {
            state.uncache_key(&hash);
            return Err(invalid());
        }
        return Ok(principal);
    }
    let generation = state.key_generation();
    let record = state
        .store(mode)
        .read(|reader| reader.api_key(&hash))?
        .ok_or_else(invalid)?;
    // The lookup was by hash; compare again in constant time so the answer's timing says
    // nothing about how much of a guess matched.
    // A revocation time in the future is a rolled key's grace period: it works until then.
    if !bool::from(record.key_hash.ct_eq(&hash)) || expired(record.revoked_at_ns) {
        return Err(invalid());
    }
    let principal = Principal {
        merchant: record.merchant,
        mode,
        scopes: record.scopes,
        key_hash: hash,
        expires_at_ns: record.revoked_at_ns,
    };
    state.cache_key(hash, principal.clone(), generation);
    Ok(principal)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_api_key",
                    "no API key: send `Authorization: Bearer <key>`",
                )
            })?;
        let value = header.to_str().unwrap_or_default();
        // The scheme name is case-insensitive (RFC 9110 11.1).
        let key = value
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_api_key",
                    "malformed Authorization header: send `Authorization: Bearer <key>`",
                )
            })?;
        authenticate(state, key)
    }
}

/// Formats a merchant id for output.
pub fn merchant_public_id(id: MerchantId) -> String {
    id.encode()
}
