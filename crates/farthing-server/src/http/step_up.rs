//! `/v1/step_up`: a merchant's TOTP authenticator (SPEC S3) — enrol, confirm, see, disable —
//! and [`require`], which the sensitive operations call: payouts, refunds and decisions on
//! refund requests, API keys, webhook endpoints, rail credentials, dashboard owners. With
//! step-up on, each needs a current code in the `Farthing-Step-Up` header (or a recovery code).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_app::step_up::{self, Refusal};
use farthing_core::PublicId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::extract::Checked;
use crate::web::spec;

/// The header that carries a step-up code.
pub const HEADER: &str = "farthing-step-up";

fn account(principal: &Principal) -> String {
    principal.merchant.encode()
}

fn refusal(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Required => ApiError::forbidden(
            "step_up_required",
            "this action needs a current code of the merchant's authenticator (step-up is on): send it in the Farthing-Step-Up header, or a recovery code",
        ),
        Refusal::Invalid => ApiError::forbidden(
            "step_up_invalid",
            "the Farthing-Step-Up code is wrong or expired: send the code your authenticator shows now (or an unused recovery code)",
        ),
        Refusal::Replayed => ApiError::forbidden(
            "step_up_replayed",
            "this code was already used: wait for the next one (codes change every 30 seconds)",
        ),
        Refusal::Locked { retry_after_s } => ApiError::rate_limited(
            &format!("with wrong step-up codes ({} in a row)", step_up::MAX_FAILURES),
            retry_after_s,
        ),
        Refusal::NotEnrolled => ApiError::conflict(
            "step_up_not_enrolled",
            "no enrolment waits for a code: start one with POST /v1/step_up/enroll",
        ),
    }
}

/// Checks the step-up code of a sensitive operation (nothing when step-up is off).
pub async fn require(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let code = headers.get(HEADER).and_then(|value| value.to_str().ok());
    step_up::check(
        state.app(),
        principal.mode,
        principal.merchant,
        code,
        &account(principal),
    )
    .await?
    .map_err(refusal)
}

/// Whether this request passed step-up: a valid current code in the header of a merchant whose
/// step-up is on (the code is then used up). No header, or step-up off: `false` — a risk rule
/// that wants step-up then refuses with `step_up_required`. A wrong or replayed code is an
/// error, as for every guarded operation.
pub async fn passed(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    if !headers.contains_key(HEADER) {
        return Ok(false);
    }
    let (status, _) = step_up::status(state.app(), principal.mode, principal.merchant)?;
    if status != "on" {
        return Ok(false);
    }
    require(state, principal, headers).await?;
    Ok(true)
}

fn status_object(state: &AppState, principal: &Principal) -> Result<Value, ApiError> {
    let (status, left) = step_up::status(state.app(), principal.mode, principal.merchant)?;
    Ok(json!({
        "object": "step_up",
        "livemode": principal.mode.is_live(),
        "status": status,
        "recovery_codes_left": left,
    }))
}

/// `GET /v1/step_up`
#[utoipa::path(
    get,
    path = "/v1/step_up",
    tag = "step_up",
    operation_id = "retrieve_step_up",
    summary = "Whether step-up is on",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`status`: `off`, `pending` (enrolled, waiting for the first code) or `on` (sensitive operations need a code); `recovery_codes_left`.", body = Value, example = json!({"object": "step_up", "livemode": false, "status": "on", "recovery_codes_left": 9})),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("step_up:write")?;
    Ok(axum::Json(status_object(&state, &principal)?).into_response())
}

/// `POST /v1/step_up/enroll`
#[utoipa::path(
    post,
    path = "/v1/step_up/enroll",
    tag = "step_up",
    operation_id = "enroll_step_up",
    summary = "Enrol an authenticator",
    description = "A new TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s) as base32 and as an `otpauth://` URI for a QR code, and ten single-use recovery codes — all shown once. Step-up is `pending` until `POST /v1/step_up/confirm` receives a first code; enrolling again before that starts over. Not idempotent by key: it returns secrets, which farthing does not keep for replays.",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The enrolment, shown once.", body = Value, example = json!({"object": "step_up_enrolment", "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "otpauth_uri": "otpauth://totp/farthing:mer_01m8xppq83ysgw6tvywe4kcaw5?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=farthing", "recovery_codes": ["abcd-efgh-jkmn"]})),
        (status = 409, description = "Step-up is already on (`step_up_active`): disable it first.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn enroll(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("step_up:write")?;
    let enrolment = step_up::enrol(
        state.app(),
        principal.mode,
        principal.merchant,
        &account(&principal),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "object": "step_up_enrolment",
            "secret": enrolment.secret_base32,
            "otpauth_uri": enrolment.otpauth_uri,
            "recovery_codes": enrolment.recovery_codes,
        })),
    )
        .into_response())
}

/// `POST /v1/step_up/confirm` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmStepUp {
    /// The 6-digit code the authenticator shows now.
    #[schema(example = "123456")]
    pub code: String,
}

/// `POST /v1/step_up/confirm`
#[utoipa::path(
    post,
    path = "/v1/step_up/confirm",
    tag = "step_up",
    operation_id = "confirm_step_up",
    summary = "Confirm an enrolment with a first code",
    security(("bearer" = [])),
    request_body(content = ConfirmStepUp, content_type = "application/json"),
    responses(
        (status = 200, description = "Step-up is on.", body = Value),
        (status = 400, description = "Malformed JSON or an unknown field (`invalid_body`).", body = spec::Error),
        (status = 403, description = "The code is wrong (`step_up_invalid`) or was used (`step_up_replayed`).", body = spec::Error),
        (status = 409, description = "No enrolment waits (`step_up_not_enrolled`) or step-up is already on (`step_up_active`).", body = spec::Error),
        (status = 429, description = "Five wrong codes in a row: locked for five minutes (`rate_limited`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn confirm(
    State(state): State<AppState>,
    principal: Principal,
    body: Checked<ConfirmStepUp>,
) -> Result<Response, ApiError> {
    principal.require("step_up:write")?;
    step_up::confirm(
        state.app(),
        principal.mode,
        principal.merchant,
        &body.value.code,
        &account(&principal),
    )
    .await?
    .map_err(refusal)?;
    Ok(axum::Json(status_object(&state, &principal)?).into_response())
}

/// `DELETE /v1/step_up`
#[utoipa::path(
    delete,
    path = "/v1/step_up",
    tag = "step_up",
    operation_id = "disable_step_up",
    summary = "Turn step-up off",
    security(("bearer" = [])),
    params(("Farthing-Step-Up" = Option<String>, Header, description = "A current code (or a recovery code), required while step-up is on.")),
    responses(
        (status = 200, description = "Step-up is off; the secret and recovery codes are deleted.", body = Value),
        (status = 429, description = "Five wrong codes in a row: locked for five minutes (`rate_limited`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require("step_up:write")?;
    require(&state, &principal, &headers).await?;
    step_up::disable(state.app(), principal.mode, principal.merchant).await?;
    Ok(axum::Json(status_object(&state, &principal)?).into_response())
}

/// The operations that need a step-up code while step-up is on.
pub const GUARDED: [(&str, &str); 15] = [
    ("POST", "/v1/api_keys"),
    ("POST", "/v1/api_keys/{id}/revoke"),
    ("POST", "/v1/api_keys/{id}/roll"),
    ("PUT", "/v1/rails/stars"),
    ("PUT", "/v1/rails/lightning"),
    ("PUT", "/v1/rails/card"),
    ("POST", "/v1/webhook_endpoints"),
    ("DELETE", "/v1/webhook_endpoints/{id}"),
    ("PUT", "/v1/dashboard/owners"),
    ("POST", "/v1/dashboard/owners/lnurl"),
    ("POST", "/v1/refunds"),
    ("POST", "/v1/refund_requests/{id}/approve"),
    ("POST", "/v1/lnurl/withdraws"),
    ("POST", "/v1/payouts"),
    ("POST", "/v1/step_up/enroll"),
];

/// The step-up check of a guarded operation, run by the audit middleware before the handler
/// (one place, so no handler can forget it). A request without a usable key goes on to the
/// handler's 401.
pub async fn check_request(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let principal = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, key)| super::auth::authenticate(state, key.trim()).ok());
    match principal {
        Some(principal) => require(state, &principal, headers).await,
        None => Ok(()),
    }
}
