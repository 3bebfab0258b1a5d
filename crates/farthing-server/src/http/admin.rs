//! `/v1/admin`: the operator's API — add merchants while the server runs (no downtime for a
//! host adding a shop), list them. Authenticated by the operator key whose SHA-256 is the
//! `admin_key_sha256` setting (off when empty); merchant keys never reach it.

use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::{MerchantId, PublicId};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::auth::hash_key;
use super::list_answer;
use crate::render::unix_s;
use crate::state::{AppState, Mode};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

/// The operator, authenticated.
pub struct Operator;

/// Where the operator's idempotency keys are kept: the reserved zero merchant id of the live
/// database (no merchant has it).
const OPERATOR: MerchantId = MerchantId(0);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let configured = &state.config().admin_key_sha256;
        if configured.is_empty() {
            return Err(ApiError::forbidden(
                "admin_api_off",
                "the admin API is off on this server: the operator sets admin_key_sha256 (`farthing admin-key` prints a key and its hash)",
            ));
        }
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .unwrap_or_default();
        let hash: String = hash_key(presented)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let expected = configured.to_ascii_lowercase();
        if presented.is_empty() || !bool::from(hash.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(ApiError::unauthorized(
                "invalid_admin_key",
                "invalid operator key: send `Authorization: Bearer <the operator key>` (merchant keys do not work here)",
            ));
        }
        Ok(Operator)
    }
}

/// `POST /v1/admin/merchants` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchant {
    /// Shown on checkout pages and receipts (1 to 100 characters).
    #[schema(min_length = 1, max_length = 100, example = "Tiny Tips Shop")]
    pub name: String,
}

fn render(id: MerchantId, name: &str, created_at_ns: u64) -> Value {
    json!({
        "object": "merchant",
        "id": id.encode(),
        "name": name,
        "created": unix_s(created_at_ns),
    })
}

/// `POST /v1/admin/merchants`
#[utoipa::path(
    post,
    path = "/v1/admin/merchants",
    tag = "admin",
    operation_id = "admin_create_merchant",
    summary = "Add a merchant (operator)",
    description = "Creates a merchant in the live and test databases, with a live and a test key holding every scope, while the server runs. The keys are in this answer only: farthing keeps their hashes. With an `Idempotency-Key`, a repeated request does not create a second merchant, even after a server died half way (once its reservation of the key is five minutes old, a retry makes the merchant the first request planned, with new keys); as the keys cannot be shown twice, it answers 409 `secret_already_shown` naming the merchant (roll its keys with `POST /v1/api_keys/{id}/roll` if they were lost).",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateMerchant, content_type = "application/json"),
    responses(
        (status = 201, description = "The merchant with `live_key` and `test_key`, shown once.", body = Value, example = json!({"object": "merchant", "id": "mer_01m8xppq83ysgw6tvywe4kcaw5", "name": "Tiny Tips Shop", "created": 1796293300, "live_key": "fk_live_…", "test_key": "fk_test_…"})),
        (status = 400, description = "Malformed JSON or an unknown field (`invalid_body`), a bad Idempotency-Key (`invalid_idempotency_key`) or a bad name (`invalid_name`).", body = spec::Error),
        (status = 401, description = "No or a wrong operator key (`invalid_admin_key`).", body = spec::Error),
        (status = 403, description = "The admin API is off on this server (`admin_api_off`).", body = spec::Error),
        (status = 409, description = "This Idempotency-Key already created a merchant, whose keys were shown then (`secret_already_shown`); or a creation with it is under way, on this or another instance (`idempotency_key_in_use`: retry in a moment).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    _operator: Operator,
    body: Checked<CreateMerchant>,
) -> Result<Response, ApiError> {
    let name = body.value.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(
            ApiError::invalid("invalid_name", "name must be 1 to 100 characters").param("name"),
        );
    }
    let key = extract::idempotency_key(&body.headers)?;
    let fingerprint = farthing_core_fingerprint(&body.raw);
    // In a task of its own: a client that gives up (a timeout, then a retry with the same key)
    // does not stop a creation half way, between the merchant and its key's record.
    tokio::spawn(create_once(state, name, key, fingerprint))
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?
}

/// Makes the merchant of one creation request, its Idempotency-Key (if any) reserved first.
async fn create_once(
    state: AppState,
    name: String,
    key: Option<String>,
    fingerprint: Vec<u8>,
) -> Result<Response, ApiError> {
    // One creation at a time in this process; across instances on a shared database, the key
    // is reserved in a job first (jobs of every instance run one at a time), so a repeated
    // request finds the first one's record, finished or under way.
    let _serial = state.admin_lock().lock().await;
    // The merchant's id is chosen with the reservation and kept in it: a request that takes
    // over a reservation left by a crash makes that merchant, not a second one.
    let mut planned: MerchantId = crate::ids::new_id();
    let mut reserved = None;
    if let Some(key) = key {
        let (reserving, reserving_key) = (fingerprint.clone(), key.clone());
        let earlier = state
            .store(Mode::Live)
            .run(move |tx| -> Result<_, farthing_store::StoreError> {
                let now_ns = tx.now_ns();
                let reservation = |id: MerchantId| {
                    json!({"id": null, "planned": id.encode(), "reserved_at_ns": now_ns})
                        .to_string()
                };
                match tx.idempotency_key(OPERATOR, &reserving_key)? {
                    None => {
                        let reservation = reservation(planned);
                        tx.insert_idempotency_key(
                            OPERATOR,
                            &reserving_key,
                            &reserving,
                            202,
                            &reservation,
                        )?;
                        Ok(Ok((planned, reservation)))
                    }
                    // A reservation whose instance died before it finished: taken over, with
                    // the merchant it planned.
                    Some((stored_fingerprint, _, stored))
                        if stored_fingerprint == reserving && abandoned(&stored, now_ns) =>
                    {
                        let planned = planned_in(&stored).unwrap_or(planned);
                        let reservation = reservation(planned);
                        tx.complete_idempotency_key(
                            OPERATOR,
                            &reserving_key,
                            &stored,
                            202,
                            &reservation,
                        )?;
                        Ok(Ok((planned, reservation)))
                    }
                    Some((stored_fingerprint, _, stored)) => Ok(Err((stored_fingerprint, stored))),
                }
            })
            .await?
            .map_err(|error| ApiError::internal(error.to_string()))?;
        match earlier {
            Ok((id, reservation)) => {
                planned = id;
                reserved = Some((key, reservation));
            }
            Err((stored_fingerprint, stored)) => {
                return Err(answer_repeat(&fingerprint, &stored_fingerprint, &stored))
            }
        }
    }
    let (live, test) = (
        state.store(Mode::Live).clone(),
        state.store(Mode::Test).clone(),
    );
    // The key's record names the merchant only (keys are never stored in clear), and is
    // completed in the job that makes the merchant: both are stored, or neither.
    let claim = reserved.clone();
    let created = match tokio::task::spawn_blocking(move || {
        crate::create_merchant_as(&live, &test, &name, planned, move |tx| match claim {
            Some((key, reservation)) => {
                let record = json!({"id": planned.encode()}).to_string();
                tx.complete_idempotency_key(OPERATOR, &key, &reservation, 201, &record)
            }
            None => Ok(true),
        })
        .map(|made| (made, name))
    })
    .await
    {
        Ok(Ok(created)) => Ok(created),
        Ok(Err(crate::CreateMerchantError::InvalidName(message))) => {
            Err(ApiError::invalid("invalid_name", message).param("name"))
        }
        // As every write's: 503 when the store is busy or shutting down, else 500.
        Ok(Err(crate::CreateMerchantError::Write(error))) => Err(ApiError::from(error)),
        Ok(Err(error @ crate::CreateMerchantError::Claimed)) => Err(ApiError::conflict(
            "idempotency_key_in_use",
            error.to_string(),
        )),
        Ok(Err(error)) => Err(ApiError::internal(error)),
        Err(error) => Err(ApiError::internal(error.to_string())),
    };
    let (made, name) = match created {
        Ok(created) => created,
        Err(error) => {
            // Nothing was made: the key may be used again (only if still this request's).
            if let Some((key, reservation)) = reserved {
                let forgotten = state
                    .store(Mode::Live)
                    .run(move |tx| tx.forget_idempotency_key(OPERATOR, &key, &reservation))
                    .await;
                if !matches!(forgotten, Ok(Ok(true))) {
                    tracing::error!(
                        "a failed merchant creation's Idempotency-Key could not be released"
                    );
                }
            }
            return Err(error);
        }
    };
    let id = made.id.clone();
    tracing::info!(target: "farthing::admin", merchant = %id, "merchant added by the operator");
    let mut object = render(
        MerchantId::parse(&id).unwrap_or(OPERATOR),
        &name,
        state.app().now_ns(),
    );
    object["live_key"] = json!(made.live_key);
    object["test_key"] = json!(made.test_key);
    Ok((StatusCode::CREATED, axum::Json(object)).into_response())
}

/// The answer to a creation whose Idempotency-Key was seen before (`stored`: its record).
fn answer_repeat(fingerprint: &[u8], stored_fingerprint: &[u8], stored: &str) -> ApiError {
    if stored_fingerprint != fingerprint {
        return ApiError::idempotency(
            "this Idempotency-Key was used for another request: use a new key for a new merchant",
        );
    }
    let id = serde_json::from_str::<Value>(stored)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned));
    let Some(id) = id else {
        return ApiError::conflict(
            "idempotency_key_in_use",
            "a merchant creation with this Idempotency-Key is under way: retry in a moment \
             (it answers with the merchant it made)",
        );
    };
    ApiError::conflict(
        "secret_already_shown",
        format!(
            "this Idempotency-Key already created merchant {id}; its keys were shown once then (roll them with POST /v1/api_keys/{{id}}/roll if they were lost)"
        ),
    )
}

/// How long a reserved Idempotency-Key waits for its merchant: making one takes milliseconds,
/// so a reservation this old was left by an instance that died on the way, and a retry takes
/// it over. Minutes, so that instances' clocks that differ a little never take over a live one.
const RESERVATION_NS: u64 = 300_000_000_000;

/// The merchant a reservation planned (reservations made before ids were planned have none).
fn planned_in(stored: &str) -> Option<MerchantId> {
    let stored: Value = serde_json::from_str(stored).ok()?;
    MerchantId::parse(stored["planned"].as_str()?).ok()
}

/// Whether a stored answer is a reservation left for longer than [`RESERVATION_NS`].
fn abandoned(stored: &str, now_ns: u64) -> bool {
    let Ok(stored) = serde_json::from_str::<Value>(stored) else {
        return false;
    };
    match stored["reserved_at_ns"].as_u64() {
        Some(at) if stored["id"].is_null() => now_ns.saturating_sub(at) > RESERVATION_NS,
        _ => false,
    }
}

fn farthing_core_fingerprint(body: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(body).to_vec()
}

/// `GET /v1/admin/merchants`
#[utoipa::path(
    get,
    path = "/v1/admin/merchants",
    tag = "admin",
    operation_id = "admin_list_merchants",
    summary = "List merchants (operator)",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "How many, from 1 to 100 (default 10)."),
        ("starting_after" = Option<String>, Query, description = "Cursor: the last merchant id of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of the merchants, newest first (never their keys).", body = Value),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        (status = 401, description = "No or a wrong operator key (`invalid_admin_key`).", body = spec::Error),
        (status = 403, description = "The admin API is off on this server (`admin_api_off`).", body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
    RawQuery(query): RawQuery,
    _headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = extract::list_query(query.as_deref())?.page::<MerchantId>()?;
    if request.ending_before.is_some() {
        return Err(ApiError::invalid(
            "unknown_parameter",
            "this list takes limit and starting_after",
        )
        .param("ending_before"));
    }
    let page = state
        .store(Mode::Live)
        .read(|reader| reader.merchants(request))?;
    let data: Vec<Value> = page
        .data
        .iter()
        .map(|m| render(m.id, &m.name, m.created_at_ns))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/admin/merchants"))
}

/// A new operator key and the SHA-256 (hex) the server is configured with.
pub fn generate_admin_key() -> Result<(String, String), getrandom::Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let key = format!(
        "fa_admin_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_key(&key).iter().map(|b| format!("{b:02x}")).collect();
    Ok((key, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_old_reservation_is_abandoned() {
        let at = 1_000_000_000_000u64;
        let reservation = json!({"id": null, "reserved_at_ns": at}).to_string();
        assert!(!abandoned(&reservation, at + RESERVATION_NS));
        assert!(abandoned(&reservation, at + RESERVATION_NS + 1));
        // A finished creation is never taken over, however old.
        let finished = json!({"id": "m_1", "reserved_at_ns": at}).to_string();
        assert!(!abandoned(&finished, at + 10 * RESERVATION_NS));
        assert!(!abandoned("not json", u64::MAX));
    }
}
