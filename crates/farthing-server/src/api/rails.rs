//! `GET /v1/rails`: the rails a merchant can take, with their health. Rails that need
//! configuring have their own `PUT /v1/rails/{rail}` (Stars: [`super::stars`]; cards:
//! [`super::cards`]).

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
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("invoices:read")?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let (bot, node, card) = state.store(mode).read(move |reader| {
        Ok((
            reader.telegram_bot(merchant)?,
            reader.lightning_node(merchant)?,
            reader.card_provider(merchant)?,
        ))
    })?;
    // The card rail sells through the bot (no token shown).
    let card = card.map(|provider| super::cards::rail_object(&provider, bot.as_ref(), mode));
    let mut data: Vec<_> = configured_rails(mode, false, false)
        .into_iter()
        .map(|rail| {
            json!({
                "object": "rail",
                "rail": rail.as_str(),
                "configured": true,
                // Internal rails have no remote peer, so they are healthy while the ledger is.
                "health": "healthy",
                "livemode": mode.is_live(),
            })
        })
        .collect();
    if let Some(bot) = bot {
        // The bot answered `getMe` when it was connected; live checks come with the poller.
        let mut object = super::stars::rail_object(&bot, mode);
        // The last Stars reconciliation (`getStarTransactions`), if any.
        let bot_id = bot.bot_id;
        let mark = state
            .store(mode)
            .read(move |reader| reader.star_watermark(merchant, bot_id))?;
        object["reconciled_at"] = json!(mark
            .as_ref()
            .map(|m| crate::render::unix_s(m.reconciled_at_ns)));
        object["reconcile_error"] = json!(mark.and_then(|m| m.last_error));
        data.push(object);
    }
    data.extend(card);
    if let Some(row) = node {
        // The health the watcher saw last (it asks the node every poll interval).
        let client = state.lightning().for_row(mode, &row).ok();
        data.push(super::lightning::rail_object(
            &state,
            &row,
            client.as_deref(),
            mode,
        ));
    }
    Ok(
        axum::Json(json!({"object": "list", "url": "/v1/rails", "data": data, "has_more": false}))
            .into_response(),
    )
}
