//! `GET /v1/rails`: the rails a merchant can take, with their health. Rail issues add
//! `PUT /v1/rails/{rail}` to configure their own.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::invoices::configured_rails;
use crate::error::ApiError;
use crate::openapi as spec;
use crate::state::{AppState, Principal};

/// `GET /v1/rails`
#[utoipa::path(
    get,
    path = "/v1/rails",
    tag = "rails",
    operation_id = "list_rails",
    summary = "List the rails, with their health",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every rail the merchant can take in this mode, with its health (one page).", body = spec::RailList),
        (status = 401, description = spec::E401, body = spec::Error),
        (status = 403, description = spec::E403, body = spec::Error),
        (status = 500, description = spec::E500, body = spec::Error),
    ),
)]
pub async fn list(
    State(_state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("invoices:read")?;
    let data: Vec<_> = configured_rails(principal.mode)
        .into_iter()
        .map(|rail| {
            json!({
                "object": "rail",
                "rail": rail.as_str(),
                "configured": true,
                // Internal rails have no remote peer, so they are healthy while the ledger is.
                "health": "healthy",
                "livemode": principal.mode.is_live(),
            })
        })
        .collect();
    Ok(
        axum::Json(json!({"object": "list", "url": "/v1/rails", "data": data, "has_more": false}))
            .into_response(),
    )
}
