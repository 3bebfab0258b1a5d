//! `/v1/settings` (what the payment bot tells customers: terms, refund policy, contacts, tip
//! presets, and whether it may send payment reminders) and `/v1/refund_requests` (refunds
//! customers asked for with `/refund` in the bot, which the merchant approves or declines).
//!
//! An approval is a refund made through `POST /v1/refunds` ([`super::charges::create_refund`])
//! under an idempotency key derived from the request id, so approving twice, or retrying after
//! a failure between the refund and the request's new status, books one refund.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::{MerchantId, PublicId, RefundId, RefundRequestId};
use farthing_store::{RefundRequest, RefundRequestStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{body_bytes, emit, list_answer, write};
use crate::error::ApiError;
use crate::extract;
use crate::openapi as spec;
use crate::render;
use crate::state::{AppState, Mode, Principal};

/// Longest `terms`, in characters (the three texts fit one Telegram message of 4096).
pub const MAX_TERMS_CHARS: usize = 2000;
/// Longest `refund_policy`, in characters.
pub const MAX_REFUND_POLICY_CHARS: usize = 1000;
/// Longest `contacts`, in characters.
pub const MAX_CONTACTS_CHARS: usize = 500;
/// Most tip presets (one row of buttons each).
pub const MAX_TIP_PRESETS: usize = 8;
/// Largest tip preset, in Stars (Telegram's limit for one Stars invoice).
pub const MAX_TIP_PRESET_STARS: u64 = 10_000;

/// The merchant's settings, as stored and as `GET /v1/settings` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MerchantSettings {
    /// The offer the bot's `/terms` shows (empty: not set).
    #[schema(
        max_length = 2000,
        example = "Digital goods are delivered right after payment."
    )]
    pub terms: String,
    /// The refund policy `/terms` shows (empty: not set).
    #[schema(
        max_length = 1000,
        example = "Refunds within 14 days on request (/refund)."
    )]
    pub refund_policy: String,
    /// How to reach the merchant, shown by `/terms` (empty: not set).
    #[schema(max_length = 500, example = "@shop_support")]
    pub contacts: String,
    /// The tip and top-up buttons, in Stars (at most 8, each 1 to 10000; empty: the server's
    /// `telegram.tip_presets`).
    #[schema(example = json!([1, 3, 5, 10]))]
    pub tip_presets: Vec<u64>,
    /// Whether the bot reminds customers who opted in (`/remind on`) of invoices they left
    /// open, once per invoice.
    pub reminders: bool,
}

impl MerchantSettings {
    fn check(&self) -> Result<(), ApiError> {
        for (field, text, max) in [
            ("terms", &self.terms, MAX_TERMS_CHARS),
            (
                "refund_policy",
                &self.refund_policy,
                MAX_REFUND_POLICY_CHARS,
            ),
            ("contacts", &self.contacts, MAX_CONTACTS_CHARS),
        ] {
            if text.chars().count() > max {
                return Err(ApiError::invalid(
                    "invalid_settings",
                    format!("{field} must be at most {max} characters"),
                )
                .param(field));
            }
        }
        if self.tip_presets.len() > MAX_TIP_PRESETS
            || self
                .tip_presets
                .iter()
                .any(|stars| !(1..=MAX_TIP_PRESET_STARS).contains(stars))
        {
            return Err(ApiError::invalid(
                "invalid_settings",
                format!(
                    "tip_presets must be at most {MAX_TIP_PRESETS} amounts of 1 to \
                     {MAX_TIP_PRESET_STARS} Stars"
                ),
            )
            .param("tip_presets"));
        }
        Ok(())
    }
}

/// The merchant's settings in `mode` (the defaults when it never stored any).
pub fn load(
    state: &AppState,
    mode: Mode,
    merchant: MerchantId,
) -> Result<MerchantSettings, ApiError> {
    let stored = state
        .store(mode)
        .read(move |reader| reader.merchant_settings(merchant))?;
    match stored {
        None => Ok(MerchantSettings::default()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|error| ApiError::internal(format!("stored settings unreadable: {error}"))),
    }
}

fn render_settings(settings: &MerchantSettings, mode: Mode) -> Value {
    let mut object = json!({"object": "settings", "livemode": mode.is_live()});
    if let (Value::Object(map), Ok(Value::Object(fields))) =
        (&mut object, serde_json::to_value(settings))
    {
        map.extend(fields);
    }
    object
}

/// `GET /v1/settings`
#[utoipa::path(
    get,
    path = "/v1/settings",
    tag = "settings",
    operation_id = "retrieve_settings",
    summary = "Retrieve the merchant's bot settings",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings of this mode (defaults: empty texts, no presets, reminders off).", body = spec::SettingsObject),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
    ),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("settings:read")?;
    let settings = load(&state, principal.mode, principal.merchant)?;
    Ok(axum::Json(render_settings(&settings, principal.mode)).into_response())
}

/// `PUT /v1/settings`
#[utoipa::path(
    put,
    path = "/v1/settings",
    tag = "settings",
    operation_id = "update_settings",
    summary = "Replace the merchant's bot settings",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = MerchantSettings, content_type = "application/json", description = "All fields; a field left out takes its default."),
    responses(
        (status = 200, description = "The stored settings.", body = spec::SettingsObject),
        (status = 400, description = "Malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), or a text too long or bad presets (`invalid_settings`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 422, description = spec::E422, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("settings:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let settings: MerchantSettings = extract::json_body(&headers, &body)?;
    settings.check()?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let text = serde_json::to_string(&settings).map_err(ApiError::internal)?;
    let object = render_settings(&settings, mode);
    write(
        &state,
        &principal,
        &headers,
        "PUT /v1/settings",
        &body,
        move |tx| {
            tx.set_merchant_settings(merchant, &text)?;
            Ok((StatusCode::OK, object))
        },
    )
    .await
}

/// The wire form of a refund request.
pub fn render_request(request: &RefundRequest, mode: Mode) -> Value {
    json!({
        "object": "refund_request",
        "id": request.id.encode(),
        "livemode": mode.is_live(),
        "status": request.status.as_str(),
        "customer": request.customer.encode(),
        "invoice": request.invoice.encode(),
        "telegram_user_id": request.telegram_user_id,
        "refund": request.refund.map(PublicId::encode),
        "created": render::unix_s(request.created_at_ns),
        "updated": render::unix_s(request.updated_at_ns),
    })
}

/// `GET /v1/refund_requests`
#[utoipa::path(
    get,
    path = "/v1/refund_requests",
    tag = "refunds",
    operation_id = "list_refund_requests",
    summary = "List refund requests customers made in the bot",
    security(("bearer" = [])),
    params(spec::ListParams),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::RefundRequestList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
    ),
)]
pub async fn list_requests(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("refunds:read")?;
    let request = extract::list_query(query.as_deref())?.page::<RefundRequestId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.refund_requests(principal.merchant, request))?;
    let data = page
        .data
        .iter()
        .map(|r| render_request(r, principal.mode))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/refund_requests"))
}

/// `POST /v1/refund_requests/{id}/approve` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRefundRequest {
    /// Where the money goes, as in `POST /v1/refunds`: `balance` (default) or `rail`
    /// (Telegram `refundStarPayment` for a Stars-paid invoice).
    #[schema(value_type = Option<String>, pattern = "^(balance|rail)$", default = "balance")]
    pub destination: Option<String>,
}

fn load_request(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<RefundRequest, ApiError> {
    let parsed: RefundRequestId = extract::id_path(id)?;
    let merchant = principal.merchant;
    state
        .store(principal.mode)
        .read(move |reader| reader.refund_request(parsed))?
        .filter(|r| r.merchant == merchant)
        .ok_or_else(|| ApiError::not_found("refund request", id))
}

fn not_pending(request: &RefundRequest) -> ApiError {
    ApiError::conflict(
        "refund_request_not_pending",
        format!("this refund request is already {}", request.status.as_str()),
    )
}

/// `POST /v1/refund_requests/{id}/approve`
#[utoipa::path(
    post,
    path = "/v1/refund_requests/{id}/approve",
    tag = "refunds",
    operation_id = "approve_refund_request",
    summary = "Approve a refund request: refund the invoice and tell the customer",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The refund request, `rrq_…`.")),
    request_body(content = ApproveRefundRequest, content_type = "application/json", description = "Optional."),
    responses(
        (status = 200, description = "The invoice was refunded (`refund` names the refund, made as `POST /v1/refunds` with the invoice and `destination`); the request is `approved`, `refund_request.approved` is written and the customer is told in the bot. Approving an approved request answers it again.", body = spec::RefundRequestObject),
        (status = 400, description = "Malformed JSON or an unknown field (`invalid_body`), a bad `destination` (`invalid_destination`), or any refusal of `POST /v1/refunds` (e.g. `rail_refund_unsupported`).", body = spec::Error),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 402, description = "The merchant's balance is too small to refund from (`insufficient_funds`).", body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 404, description = "No such refund request (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The request was declined (`refund_request_not_pending`), or the invoice is no longer refundable (`invoice_not_paid`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 502, description = "With `destination: rail`: Telegram refused the refund (`telegram_refund_failed`); nothing was booked.", body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let approval: ApproveRefundRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveRefundRequest::default()
    } else {
        extract::json_body(&headers, &body)?
    };
    let destination = match approval.destination.as_deref() {
        None | Some("balance") => "balance",
        Some("rail") => "rail",
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_destination",
                "destination must be \"balance\" or \"rail\"",
            )
            .param("destination"))
        }
    };
    let request = load_request(&state, &principal, &id)?;
    match request.status {
        RefundRequestStatus::Pending => {}
        RefundRequestStatus::Approved => {
            return Ok(axum::Json(render_request(&request, principal.mode)).into_response())
        }
        RefundRequestStatus::Declined => return Err(not_pending(&request)),
    }
    // The refund itself, exactly as POST /v1/refunds makes it, idempotent by the request id.
    let refund_body = json!({
        "invoice": request.invoice.encode(),
        "destination": destination,
        "reason": format!("refund request {}", request.id.encode()),
    })
    .to_string();
    let mut refund_headers = HeaderMap::new();
    refund_headers.insert("content-type", HeaderValue::from_static("application/json"));
    let key = format!("farthing-refund-request:{}", request.id.encode());
    refund_headers.insert(
        "idempotency-key",
        HeaderValue::from_str(&key).map_err(ApiError::internal)?,
    );
    let response = super::charges::create_refund(
        State(state.clone()),
        principal.clone(),
        refund_headers,
        Ok(Bytes::from(refund_body)),
    )
    .await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .map_err(ApiError::internal)?;
    let answer: Value = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    if !status.is_success() {
        // The refund's own refusal, as POST /v1/refunds gave it. It is not kept under the
        // request's key: approving again (e.g. once the merchant's balance suffices) tries again.
        let merchant = principal.merchant;
        state
            .store(principal.mode)
            .run(move |tx| tx.forget_refused_idempotency_key(merchant, &key))
            .await??;
        return Ok((status, axum::Json(answer)).into_response());
    }
    let refund: RefundId = answer["id"]
        .as_str()
        .and_then(|id| RefundId::parse(id).ok())
        .ok_or_else(|| ApiError::internal("the refund answer has no id"))?;
    let updated = finish(
        &state,
        principal.mode,
        request.id,
        RefundRequestStatus::Approved,
        Some(refund),
    )
    .await?;
    let amount = answer["amount"].as_u64().unwrap_or(0);
    let currency = answer["currency"].as_str().unwrap_or("").to_owned();
    crate::telegram::commands::tell_refund_decision(
        &state,
        principal.mode,
        &updated,
        Some((amount, &currency, destination)),
    )
    .await;
    Ok(axum::Json(render_request(&updated, principal.mode)).into_response())
}

/// `POST /v1/refund_requests/{id}/decline`
#[utoipa::path(
    post,
    path = "/v1/refund_requests/{id}/decline",
    tag = "refunds",
    operation_id = "decline_refund_request",
    summary = "Decline a refund request and tell the customer",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The refund request, `rrq_…`.")),
    responses(
        (status = 200, description = "The request is `declined`; `refund_request.declined` is written and the customer is told in the bot. Declining a declined request answers it again.", body = spec::RefundRequestObject),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 404, description = "No such refund request (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The request was approved (`refund_request_not_pending`).", body = spec::Error),
        (status = 413, description = spec::E413, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
        (status = 503, description = spec::E503, body = spec::Error),
    ),
)]
pub async fn decline(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let request = load_request(&state, &principal, &id)?;
    match request.status {
        RefundRequestStatus::Pending => {}
        RefundRequestStatus::Declined => {
            return Ok(axum::Json(render_request(&request, principal.mode)).into_response())
        }
        RefundRequestStatus::Approved => return Err(not_pending(&request)),
    }
    let updated = finish(
        &state,
        principal.mode,
        request.id,
        RefundRequestStatus::Declined,
        None,
    )
    .await?;
    crate::telegram::commands::tell_refund_decision(&state, principal.mode, &updated, None).await;
    Ok(axum::Json(render_request(&updated, principal.mode)).into_response())
}

/// Moves a pending request to `status` with its event; refuses one that moved meanwhile.
async fn finish(
    state: &AppState,
    mode: Mode,
    id: RefundRequestId,
    status: RefundRequestStatus,
    refund: Option<RefundId>,
) -> Result<RefundRequest, ApiError> {
    let updated = state
        .store(mode)
        .run(move |tx| -> Result<RefundRequest, ApiError> {
            let current = tx
                .refund_request(id)?
                .ok_or_else(|| ApiError::not_found("refund request", &id.encode()))?;
            if current.status == status {
                return Ok(current);
            }
            if current.status != RefundRequestStatus::Pending {
                return Err(not_pending(&current));
            }
            tx.update_refund_request(id, status, refund)?;
            let updated = tx
                .refund_request(id)?
                .ok_or_else(|| ApiError::internal("the refund request vanished"))?;
            let event = match status {
                RefundRequestStatus::Approved => "refund_request.approved",
                _ => "refund_request.declined",
            };
            emit(
                tx,
                updated.merchant,
                mode,
                event,
                render_request(&updated, mode),
            )?;
            Ok(updated)
        })
        .await??;
    state.deliveries().notify_one();
    Ok(updated)
}
