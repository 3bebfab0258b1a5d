//! `GET /v1/rails`: the rails a merchant can take, with their health; and
//! `PUT /v1/rails/{rail}`: a merchant connects a rail (each rail checks its own configuration;
//! see the rail modules under `crate::rails`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_app::rail::RailSet;
use farthing_core::Rail;
use serde_json::json;

use super::write;
use crate::registry::ConfigParser;
use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::extract;
use crate::web::spec;

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
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("invoices:read")?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let mut data = Vec::new();
    for rail in state.rails().registered() {
        if let Some(status) = state
            .rails()
            .status(state.app(), mode, merchant, rail)
            .await?
        {
            data.push(serde_json::to_value(status).map_err(ApiError::internal)?);
        }
    }
    Ok(
        axum::Json(json!({"object": "list", "url": "/v1/rails", "data": data, "has_more": false}))
            .into_response(),
    )
}

/// The request body, read with the API's checks into whatever the rail's configuration is.
struct Body<'a> {
    headers: &'a HeaderMap,
    raw: &'a [u8],
}

impl ConfigParser for Body<'_> {
    type Error = ApiError;

    fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, ApiError> {
        extract::json_body(self.headers, self.raw)
    }
}

/// `PUT /v1/rails/{rail}`: the rail checks the configuration against its peer, then it is
/// stored under the request's Idempotency-Key (a replay answers from the store without asking
/// the peer again), then the rail's own follow-up runs (e.g. the poller picks up a bot).
async fn connect(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    raw: &[u8],
    rail: Rail,
) -> Result<Response, ApiError> {
    principal.require("rails:write")?;
    extract::idempotency_key(headers)?;
    let route = format!("PUT /v1/rails/{rail}");
    let (merchant, mode) = (principal.merchant, principal.mode);
    let key = extract::idempotency_key(headers)?;
    let replay = match key {
        Some(key) => state
            .store(mode)
            .read(move |reader| reader.idempotency_key(merchant, &key))?
            .is_some(),
        None => false,
    };
    let adapter = state
        .rails()
        .get(rail)
        .ok_or_else(|| ApiError::not_found("rail", rail.as_str()))?;
    let connected = if replay {
        None
    } else {
        Some(
            adapter
                .connect(state.app(), mode, merchant, Body { headers, raw })
                .await?,
        )
    };
    let after = connected.as_ref().map(|_| ());
    let (status_store, after_commit) = match connected {
        Some(connected) => (
            Some((connected.status, connected.store)),
            connected.after_commit,
        ),
        None => (None, None),
    };
    let response = write(state, principal, headers, &route, raw, move |tx| {
        let Some((status, store)) = status_store else {
            return Err(ApiError::internal(
                "a replayed rail connection has no stored answer",
            ));
        };
        store(tx)?;
        Ok((
            StatusCode::OK,
            serde_json::to_value(status).map_err(ApiError::internal)?,
        ))
    })
    .await?;
    if let (Some(()), Some(after_commit), true) =
        (after, after_commit, response.status().is_success())
    {
        after_commit();
    }
    Ok(response)
}

/// `PUT /v1/rails/stars`
#[utoipa::path(
    put,
    path = "/v1/rails/stars",
    tag = "rails",
    operation_id = "connect_stars",
    summary = "Connect a Telegram bot (the Stars rail)",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = crate::rails::telegram::ConnectStars, content_type = "application/json", description = "The bot token, the Bot API base URL, how updates arrive and the webhook secret."),
    responses(
        (status = 200, description = "The bot answered `getMe`, Telegram was told where its updates go, and it is stored; the Stars rail is configured for this mode. The token is never returned. In `webhook` mode farthing calls `setWebhook` (url `<public_url>/telegram/<bot_id>/webhook`, `secret_token` the webhook secret, `allowed_updates` `message`, `pre_checkout_query`, `callback_query`) when its `public_url` is `https` and not localhost, or when `set_webhook` is `true`. In `polling` mode it calls `deleteWebhook` and this instance polls `getUpdates` (Telegram allows one consumer per bot: only one farthing instance may poll a bot).", body = spec::RailState),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), a bad or refused bot token (`invalid_bot_token`), a bad `mode` (`invalid_mode`), `api_url` (`invalid_api_url`) or `webhook_secret` (`invalid_webhook_secret`), or `set_webhook: true` in polling mode (`invalid_set_webhook`).", body = spec::Error),
        (status = 409, description = "Another merchant connected this bot (`bot_already_connected`).", body = spec::Error),
        (status = 502, description = "The Bot API could not be reached or refused `getMe`, `setWebhook` or `deleteWebhook` (`telegram_unavailable`, `telegram_error`); nothing was stored.", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn connect_stars(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    connect(&state, &principal, &headers, &body, Rail::Stars).await
}

/// `PUT /v1/rails/card`
#[utoipa::path(
    put,
    path = "/v1/rails/card",
    tag = "rails",
    operation_id = "connect_card",
    summary = "Take cards through a Telegram payment provider (the card rail)",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = crate::rails::telegram::ConnectCard, content_type = "application/json", description = "The payment provider token of the connected bot, and the currencies to take."),
    responses(
        (status = 200, description = "The provider token is stored (never returned); the card rail is configured for this mode. Fixed-amount invoices in a fiat currency it takes that accept `card` get `payment_instructions.card.invoice_link` (`createInvoiceLink` with the provider token).", body = spec::RailState),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), an empty or malformed token (`invalid_provider_token`), a currency that is unknown or not fiat (`invalid_currency`), or no bot connected in this mode (`rail_not_configured`: connect one with `PUT /v1/rails/stars` first).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn connect_card(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    connect(&state, &principal, &headers, &body, Rail::Card).await
}

/// `PUT /v1/rails/lightning`
#[utoipa::path(
    put,
    path = "/v1/rails/lightning",
    tag = "rails",
    operation_id = "connect_lightning",
    summary = "Connect a Lightning node (the Lightning rail)",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = crate::rails::lightning::ConnectLightning, content_type = "application/json", description = "`{\"backend\": \"lnbits\", \"url\", \"invoice_key\", \"admin_key\"}`, `{\"backend\": \"lnd\", \"url\", \"macaroon\", \"tls_cert\"}` or `{\"backend\": \"cln\", \"url\", \"rune\", \"tls_cert\"}`, with the optional `network` and `lightning_address`."),
    responses(
        (status = 200, description = "The node answered and is stored; the Lightning rail is configured for this mode. Secrets are never returned.", body = spec::RailState),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), a bad backend, URL, field or network (`invalid_lightning_config`), credentials the node refused (`invalid_lightning_credentials`), or a bad `lightning_address` (`invalid_lightning_address`).", body = spec::Error),
        (status = 409, description = "Another merchant has this Lightning Address (`lightning_address_taken`).", body = spec::Error),
        (status = 502, description = "The node could not be reached or failed (`lightning_unavailable`, `lightning_node_error`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn connect_lightning(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    connect(&state, &principal, &headers, &body, Rail::Lightning).await
}

/// `PUT /v1/rails/ton`
#[utoipa::path(
    put,
    path = "/v1/rails/ton",
    tag = "rails",
    operation_id = "connect_ton",
    summary = "Receive TON and USDT in the merchant's own wallet (the TON rail)",
    description = "farthing holds no keys: payers pay the merchant's wallet directly, and farthing watches the chain through a toncenter v3 indexer. The address may be given in any form (raw, bounceable, non-bounceable; the checksum is checked). For each jetton, the merchant's jetton wallet is derived with the master's own `get_wallet_address` and checked against the indexer before anything is stored.",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = crate::rails::ton::ConnectTon, content_type = "application/json", example = json!({"address": "UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p", "network": "mainnet"})),
    responses(
        (status = 200, description = "The wallet is stored and watched; the TON rail is configured for this mode. The API key is never returned. Open TON and USDT invoices that accept `ton` get `payment_instructions.ton`.", body = spec::RailState),
        (status = 400, description = "The request is invalid: malformed JSON or an unknown field (`invalid_body`), a bad address (`invalid_ton_address`), a testnet-only address or master on mainnet (`ton_wrong_network`), a bad network, URL or key (`invalid_ton_config`), a jetton farthing does not book (`ton_jetton_unsupported`), or a jetton wallet the chain does not confirm (`ton_jetton_unverified`).", body = spec::Error),
        (status = 409, description = "Another merchant on this server receives payments to this wallet (`ton_wallet_taken`).", body = spec::Error),
        (status = 502, description = "The indexer could not be reached or failed (`ton_indexer_unavailable`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn connect_ton(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    connect(&state, &principal, &headers, &body, Rail::Ton).await
}
