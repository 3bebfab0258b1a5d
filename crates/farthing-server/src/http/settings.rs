//! `/v1/settings` (what the payment bot tells customers: terms, refund policy, contacts, tip
//! presets, and whether it may send payment reminders) and `/v1/refund_requests` (refunds
//! customers asked for with `/refund` in the bot, which the merchant approves or declines).
//!
//! An approval is a refund made by the service in the same job as the request's move to
//! `approved` (`farthing_app::refund_requests`), so approving twice books one refund.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use farthing_app::refund_requests::{self, Destination};
use farthing_core::RefundRequestId;
use serde::Deserialize;
use serde_json::Value;

use super::{list_answer, write};
use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

pub use farthing_app::settings::{load as load_settings, MerchantSettings};

/// The merchant's settings in `mode` (the defaults when it never stored any).
pub fn load(
    state: &AppState,
    mode: Mode,
    merchant: farthing_core::MerchantId,
) -> Result<MerchantSettings, ApiError> {
    Ok(load_settings(state.app(), mode, merchant)?)
}

fn render_settings(settings: &MerchantSettings, mode: Mode) -> Value {
    super::object_with("settings", mode, settings)
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
        spec::ReadErrors,
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
        spec::WriteErrors,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    body: Checked<MerchantSettings>,
) -> Result<Response, ApiError> {
    principal.require("settings:write")?;
    body.value.check()?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let object = render_settings(&body.value, mode);
    let settings = body.value.clone();
    write(
        &state,
        &principal,
        &body.headers,
        "PUT /v1/settings",
        &body.raw,
        move |tx| {
            farthing_app::settings::store(tx, merchant, &settings)?;
            Ok((StatusCode::OK, object))
        },
    )
    .await
}

pub use farthing_app::wire::refund_request as render_request;

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
        spec::ReadErrors,
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
        (status = 402, description = "The merchant's balance is too small to refund from (`insufficient_funds`).", body = spec::Error),
        (status = 404, description = "No such refund request (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The request was declined (`refund_request_not_pending`), or the invoice is no longer refundable (`invoice_not_paid`).", body = spec::Error),
        (status = 502, description = "With `destination: rail`: Telegram refused the refund (`telegram_refund_failed`); nothing was booked.", body = spec::Error),
        spec::ReadErrors,
        spec::TooLarge,
        spec::Unavailable,
    ),
)]
pub async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Checked<ApproveRefundRequest>,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let destination = match body.value.destination.as_deref() {
        None | Some("balance") => Destination::Balance,
        Some("rail") => Destination::Rail,
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_destination",
                "destination must be \"balance\" or \"rail\"",
            )
            .param("destination"))
        }
    };
    let request: RefundRequestId = extract::id_path(&id)?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let approved = refund_requests::approve(
        state.app(),
        state.rails(),
        mode,
        merchant,
        request,
        destination,
    )
    .await?;
    if let Some(refund) = &approved.refund {
        let name = match destination {
            Destination::Balance => "balance",
            Destination::Rail => "rail",
        };
        crate::bot::tell_refund_decision(
            &state,
            mode,
            &approved.request,
            Some((refund.amount_minor, refund.currency.code(), name)),
        )
        .await;
    }
    Ok(axum::Json(render_request(&approved.request, mode)).into_response())
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
        (status = 404, description = "No such refund request (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The request was approved (`refund_request_not_pending`).", body = spec::Error),
        spec::ReadErrors,
        spec::TooLarge,
        spec::Unavailable,
    ),
)]
pub async fn decline(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("refunds:write")?;
    let request: RefundRequestId = extract::id_path(&id)?;
    let before = refund_requests::load(state.app(), principal.mode, principal.merchant, request)?;
    let updated =
        refund_requests::decline(state.app(), principal.mode, principal.merchant, request).await?;
    if before.status != updated.status {
        crate::bot::tell_refund_decision(&state, principal.mode, &updated, None).await;
    }
    Ok(axum::Json(render_request(&updated, principal.mode)).into_response())
}
