//! `/v1/subscriptions`: Telegram Stars subscriptions (SPEC RL2, PR4) — list, retrieve, and
//! cancel or resume through Telegram's `editUserStarSubscription`.
//!
//! A subscription starts when its invoice (`subscription_period`) is first paid; each renewal
//! is a paid renewal invoice (see [`farthing_app::subscriptions`]).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::SubscriptionId;

use super::{list_answer, write};
use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::extract;
use crate::web::spec;
use farthing_app::subscriptions::{self, parse_id, render_subscription};

/// `GET /v1/subscriptions`
#[utoipa::path(
    get,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    operation_id = "list_subscriptions",
    summary = "List subscriptions",
    security(("bearer" = [])),
    params(spec::ListParams),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::SubscriptionList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("invoices:read")?;
    let request = extract::list_query(query.as_deref())?.page::<SubscriptionId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.subscriptions(principal.merchant, request))?;
    let now = state.now_ns();
    let data = page
        .data
        .iter()
        .map(|s| render_subscription(s, principal.mode, now))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/subscriptions"))
}

fn load(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<farthing_store::Subscription, ApiError> {
    let parsed = parse_id(id)?;
    let merchant = principal.merchant;
    state
        .store(principal.mode)
        .read(move |reader| reader.subscription(parsed))?
        .filter(|s| s.merchant == merchant)
        .ok_or_else(|| ApiError::not_found("subscription", id))
}

/// `GET /v1/subscriptions/{id}`
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{id}",
    tag = "subscriptions",
    operation_id = "retrieve_subscription",
    summary = "Retrieve a subscription",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription, `sub_…`.")),
    responses(
        (status = 200, description = "The subscription; `status` is `active`, `canceled` (paid until `current_period_end`, not renewing) or `expired`.", body = spec::SubscriptionObject),
        (status = 404, description = "No such subscription for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("invoices:read")?;
    let subscription = load(&state, &principal, &id)?;
    Ok(axum::Json(render_subscription(
        &subscription,
        principal.mode,
        state.now_ns(),
    ))
    .into_response())
}

async fn set_canceled(
    state: AppState,
    principal: Principal,
    headers: HeaderMap,
    id: String,
    canceled: bool,
) -> Result<Response, ApiError> {
    principal.require("invoices:write")?;
    let subscription = load(&state, &principal, &id)?;
    let mode = principal.mode;
    subscriptions::ask_rail(state.app(), state.rails(), mode, &subscription, canceled).await?;
    let route = if canceled {
        format!("POST /v1/subscriptions/{id}/cancel")
    } else {
        format!("POST /v1/subscriptions/{id}/resume")
    };
    let sub_id = subscription.id;
    write(&state, &principal, &headers, &route, &[], move |tx| {
        let current = subscriptions::record_canceled(tx, mode, sub_id, canceled)?;
        let now = tx.now_ns();
        Ok((StatusCode::OK, render_subscription(&current, mode, now)))
    })
    .await
}

/// `POST /v1/subscriptions/{id}/cancel`
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{id}/cancel",
    tag = "subscriptions",
    operation_id = "cancel_subscription",
    summary = "Cancel a subscription at the end of its paid period",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription, `sub_…`."), spec::IdempotencyKey),
    responses(
        (status = 200, description = "Telegram accepted `editUserStarSubscription` with `is_canceled: true`: the subscription does not renew (`status` `canceled`, `cancel_at_period_end` true) and stays paid until `current_period_end`; `subscription.canceled` is written.", body = spec::SubscriptionObject),
        (status = 400, description = "The stars rail is not configured (`rail_not_configured`).", body = spec::Error),
        (status = 404, description = "No such subscription for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The paid period is over (`subscription_expired`).", body = spec::Error),
        (status = 502, description = "Telegram refused or could not be reached (`telegram_error`); nothing changed.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_canceled(state, principal, headers, id, true).await
}

/// `POST /v1/subscriptions/{id}/resume`
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{id}/resume",
    tag = "subscriptions",
    operation_id = "resume_subscription",
    summary = "Resume a canceled subscription before its paid period ends",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription, `sub_…`."), spec::IdempotencyKey),
    responses(
        (status = 200, description = "Telegram accepted `editUserStarSubscription` with `is_canceled: false`: the subscription renews again (`status` `active`); `subscription.resumed` is written.", body = spec::SubscriptionObject),
        (status = 400, description = "The stars rail is not configured (`rail_not_configured`).", body = spec::Error),
        (status = 404, description = "No such subscription for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The paid period is over (`subscription_expired`).", body = spec::Error),
        (status = 502, description = "Telegram refused or could not be reached (`telegram_error`); nothing changed.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn resume(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_canceled(state, principal, headers, id, false).await
}
