//! `/v1/events` (the outbox, with redelivery) and `/v1/webhook_endpoints` (SPEC A4).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_core::{EventId, PublicId, WebhookEndpointId};
use farthing_store::{PageRequest, WebhookEndpoint};
use serde::Deserialize;
use serde_json::json;

use super::{list_answer, write};

/// Webhook endpoints a merchant may have per mode.
pub const MAX_ENDPOINTS: u64 = 16;
use crate::ids::new_id;
use crate::render;
use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::extract;
use crate::web::extract::body_bytes;
use crate::web::spec;
use crate::workers;

pub use farthing_app::outbox::EVENT_TYPES;

/// `GET /v1/events`
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    operation_id = "list_events",
    summary = "List events",
    security(("bearer" = [])),
    params(spec::ListParams),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::EventList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("events:read")?;
    let request = extract::list_query(query.as_deref())?.page::<EventId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.events(principal.merchant, request))?;
    let data = page.data.iter().map(render::event).collect();
    Ok(list_answer(data, page.has_more, "/v1/events"))
}

/// `GET /v1/events/{id}`: the event with its deliveries.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    operation_id = "retrieve_event",
    summary = "Retrieve an event, with its deliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The event, `evt_…` (a malformed id is not found: 404).")),
    responses(
        (status = 200, description = "The event, with its deliveries.", body = spec::Event),
        (status = 404, description = "No such event for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("events:read")?;
    let event_id: EventId = extract::id_path(&id)?;
    let (event, deliveries) = state.store(principal.mode).read(|reader| {
        let event = reader
            .event(event_id)?
            .filter(|e| e.merchant == principal.merchant);
        let deliveries = match event {
            Some(_) => reader.deliveries_of(event_id)?,
            None => Vec::new(),
        };
        Ok((event, deliveries))
    })?;
    let event = event.ok_or_else(|| ApiError::not_found("event", &id))?;
    let mut body = render::event(&event);
    body["deliveries"] = deliveries
        .iter()
        .map(|d| {
            json!({
                "webhook_endpoint": d.endpoint.encode(),
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at_ns.map(render::unix_s),
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
            })
        })
        .collect();
    Ok(axum::Json(body).into_response())
}

/// `POST /v1/events/{id}/redeliver` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redeliver {
    /// Only to this endpoint (default: every enabled endpoint that wants the event's type).
    pub webhook_endpoint: Option<String>,
}

/// `POST /v1/events/{id}/redeliver`: queues the event again, now.
#[utoipa::path(
    post,
    path = "/v1/events/{id}/redeliver",
    tag = "events",
    operation_id = "redeliver_event",
    summary = "Redeliver an event",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The event, `evt_…` (a malformed id is not found: 404)."), spec::IdempotencyKey),
    request_body(content = Option<Redeliver>, content_type = "application/json", description = "Empty for every enabled endpoint that wants the event's type, or one endpoint."),
    responses(
        (status = 200, description = "The endpoints the event was queued for.", body = spec::Redelivery, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), or an unknown webhook endpoint (`invalid_id`, `endpoint_not_found`).", body = spec::Error),
        (status = 404, description = "No such event for this merchant in this mode (`resource_missing`).", body = spec::Error),
        (status = 409, description = "The named webhook endpoint is disabled (`endpoint_disabled`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn redeliver(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("webhooks:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: Redeliver = extract::json_body(&headers, &body)?;
    let event_id: EventId = extract::id_path(&id)?;
    let only = request
        .webhook_endpoint
        .as_deref()
        .map(|text| extract::id_param::<WebhookEndpointId>(text, "webhook_endpoint"))
        .transpose()?;
    let merchant = principal.merchant;
    // Which endpoints: read before the job (endpoints change rarely; the job re-checks each).
    let endpoints: Vec<WebhookEndpoint> = state.store(principal.mode).read(|reader| {
        let mut all = Vec::new();
        let mut request = PageRequest::newest(100);
        loop {
            let page = reader.endpoints(merchant, request)?;
            let last = page.data.last().map(|e| e.id.raw());
            all.extend(page.data);
            match (page.has_more, last) {
                (true, Some(last)) => request.starting_after = Some(last),
                _ => break,
            }
        }
        Ok(all)
    })?;
    let route = format!("POST /v1/events/{id}/redeliver");
    write(&state, &principal, &headers, &route, &body, move |tx| {
        let event = tx
            .event(event_id)?
            .filter(|e| e.merchant == merchant)
            .ok_or_else(|| ApiError::not_found("event", &event_id.encode()))?;
        let mut queued = Vec::new();
        for endpoint in endpoints {
            if only.is_some_and(|only| only != endpoint.id) {
                continue;
            }
            let wanted = endpoint
                .events
                .iter()
                .any(|kind| kind == "*" || *kind == event.event_type);
            if endpoint.status != "enabled" || (only.is_none() && !wanted) {
                if only.is_some() {
                    return Err(ApiError::conflict(
                        "endpoint_disabled",
                        format!("webhook endpoint {} is disabled", endpoint.id.encode()),
                    ));
                }
                continue;
            }
            tx.queue_delivery(event.id, endpoint.id, tx.now_ns())?;
            queued.push(endpoint.id.encode());
        }
        if let Some(only) = only {
            if queued.is_empty() {
                return Err(ApiError::invalid(
                    "endpoint_not_found",
                    format!("no such webhook endpoint: {:?}", only.encode()),
                )
                .param("webhook_endpoint"));
            }
        }
        Ok((
            StatusCode::OK,
            json!({"object": "redelivery", "event": event.id.encode(), "webhook_endpoints": queued}),
        ))
    })
    .await
}

/// `POST /v1/webhook_endpoints` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where to deliver: `https://…` (or `http://…`).
    #[schema(example = "https://example.com/farthing/webhooks")]
    pub url: String,
    /// Event types to deliver (default `["*"]`, every type).
    #[schema(schema_with = spec::enabled_events_schema)]
    pub enabled_events: Option<Vec<String>>,
}

/// `POST /v1/webhook_endpoints`: the answer carries the signing secret, once.
#[utoipa::path(
    post,
    path = "/v1/webhook_endpoints",
    tag = "webhook_endpoints",
    operation_id = "create_webhook_endpoint",
    summary = "Create a webhook endpoint",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = CreateEndpoint, content_type = "application/json"),
    responses(
        (status = 201, description = "The new endpoint, with its signing secret `secret` (shown this once).", body = spec::WebhookEndpoint, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "The request is invalid: malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), a bad Idempotency-Key (`invalid_idempotency_key`), a URL that is not http(s) or resolves to a loopback or private address the operator does not allow (`invalid_url`), or unknown event types (`invalid_events`).", body = spec::Error),
        (status = 409, description = "The merchant already has 16 webhook endpoints in this mode (`too_many_webhook_endpoints`).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require("webhooks:write")?;
    let body = body_bytes(body, state.config().max_body_bytes)?;
    let request: CreateEndpoint = extract::json_body(&headers, &body)?;
    workers::check_webhook_url(&request.url, state.config().allow_private_webhooks)
        .await
        .map_err(|message| ApiError::invalid("invalid_url", message).param("url"))?;
    let events = request
        .enabled_events
        .unwrap_or_else(|| vec!["*".to_owned()]);
    if events.is_empty() {
        return Err(ApiError::invalid(
            "invalid_events",
            "enabled_events must name at least one event type, or \"*\"",
        )
        .param("enabled_events"));
    }
    for (i, kind) in events.iter().enumerate() {
        if kind != "*" && !EVENT_TYPES.contains(&kind.as_str()) {
            return Err(ApiError::invalid(
                "invalid_events",
                format!(
                    "unknown event type {kind:?}; known: {}",
                    EVENT_TYPES.join(", ")
                ),
            )
            .param(format!("enabled_events[{i}]")));
        }
    }
    let secret = workers::new_webhook_secret().map_err(ApiError::internal)?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let url = request.url;
    write(
        &state,
        &principal,
        &headers,
        "POST /v1/webhook_endpoints",
        &body,
        move |tx| {
            // Every write fans out to every endpoint: a bounded number keeps one merchant's
            // writes from turning into hundreds of deliveries each.
            if tx.endpoint_count(merchant)? >= MAX_ENDPOINTS {
                return Err(ApiError::conflict(
                    "too_many_webhook_endpoints",
                    format!("a merchant has at most {MAX_ENDPOINTS} webhook endpoints per mode; delete one first (one endpoint may take every event type)"),
                ));
            }
            let endpoint = WebhookEndpoint {
                id: new_id(),
                merchant,
                url,
                secret,
                events,
                status: "enabled".to_owned(),
                disabled_reason: None,
                created_at_ns: tx.now_ns(),
            };
            tx.insert_endpoint(&endpoint)?;
            Ok((
                StatusCode::CREATED,
                render::endpoint(&endpoint, mode, true).into(),
            ))
        },
    )
    .await
}

/// `GET /v1/webhook_endpoints`
#[utoipa::path(
    get,
    path = "/v1/webhook_endpoints",
    tag = "webhook_endpoints",
    operation_id = "list_webhook_endpoints",
    summary = "List webhook endpoints",
    security(("bearer" = [])),
    params(spec::ListParams),
    responses(
        (status = 200, description = "A page of the list, newest first.", body = spec::WebhookEndpointList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("webhooks:read")?;
    let request = extract::list_query(query.as_deref())?.page::<WebhookEndpointId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.endpoints(principal.merchant, request))?;
    let data = page
        .data
        .iter()
        .map(|e| render::endpoint(e, principal.mode, false))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/webhook_endpoints"))
}

/// `GET /v1/webhook_endpoints/{id}`
#[utoipa::path(
    get,
    path = "/v1/webhook_endpoints/{id}",
    tag = "webhook_endpoints",
    operation_id = "retrieve_webhook_endpoint",
    summary = "Retrieve a webhook endpoint",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook endpoint, `we_…` (a malformed id is not found: 404).")),
    responses(
        (status = 200, description = "The endpoint (without its secret).", body = spec::WebhookEndpoint),
        (status = 404, description = "No such webhook endpoint for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("webhooks:read")?;
    let endpoint_id: WebhookEndpointId = extract::id_path(&id)?;
    let endpoint = state
        .store(principal.mode)
        .read(|reader| reader.endpoint(endpoint_id))?
        .filter(|e| e.merchant == principal.merchant)
        .ok_or_else(|| ApiError::not_found("webhook endpoint", &id))?;
    Ok(axum::Json(render::endpoint(&endpoint, principal.mode, false)).into_response())
}

/// `DELETE /v1/webhook_endpoints/{id}`: stops deliveries to it at once.
#[utoipa::path(
    delete,
    path = "/v1/webhook_endpoints/{id}",
    tag = "webhook_endpoints",
    operation_id = "delete_webhook_endpoint",
    summary = "Delete a webhook endpoint",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook endpoint, `we_…` (a malformed id is not found: 404)."), spec::IdempotencyKey),
    responses(
        (status = 200, description = "The deleted endpoint, with `deleted: true`; its pending deliveries are canceled.", body = spec::WebhookEndpoint, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "A bad Idempotency-Key (`invalid_idempotency_key`).", body = spec::Error),
        (status = 404, description = "No such webhook endpoint for this merchant in this mode (`resource_missing`).", body = spec::Error),
        spec::ReadErrors,
        spec::IdempotencyMismatch,
        spec::Unavailable,
    ),
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require("webhooks:write")?;
    let endpoint_id: WebhookEndpointId = extract::id_path(&id)?;
    let (merchant, mode) = (principal.merchant, principal.mode);
    let route = format!("DELETE /v1/webhook_endpoints/{id}");
    write(&state, &principal, &headers, &route, b"", move |tx| {
        let endpoint = tx
            .endpoint(endpoint_id)?
            .filter(|e| e.merchant == merchant)
            .ok_or_else(|| ApiError::not_found("webhook endpoint", &endpoint_id.encode()))?;
        tx.delete_endpoint(endpoint_id)?;
        let mut object = render::endpoint(&endpoint, mode, false);
        object.deleted = Some(true);
        Ok((StatusCode::OK, object.into()))
    })
    .await
}
