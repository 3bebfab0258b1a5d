//! The audit log (SPEC S5): every administrative action — keys, rails, webhooks, settings,
//! owners, refunds, payouts — recorded with actor, time, origin and outcome, append-only, and
//! listed at `GET /v1/audit_log`. Failed attempts are recorded too (their status says how they
//! ended), as long as the key that made them is the merchant's.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use farthing_core::{AuditEntryId, PublicId};
use farthing_store::AuditEntry;
use serde_json::{json, Value};

use super::auth::hash_key;
use super::keys::key_id;
use super::list_answer;
use crate::render::unix_s;
use crate::state::{AppState, Principal};
use crate::web::error::ApiError;
use crate::web::{extract, spec};

/// The operations recorded: method and route.
pub const AUDITED: [(&str, &str); 20] = [
    ("POST", "/v1/api_keys"),
    ("POST", "/v1/api_keys/{id}/revoke"),
    ("POST", "/v1/api_keys/{id}/roll"),
    ("PUT", "/v1/rails/stars"),
    ("PUT", "/v1/rails/lightning"),
    ("PUT", "/v1/rails/card"),
    ("POST", "/v1/webhook_endpoints"),
    ("DELETE", "/v1/webhook_endpoints/{id}"),
    ("PUT", "/v1/settings"),
    ("PUT", "/v1/dashboard/owners"),
    ("POST", "/v1/dashboard/owners/lnurl"),
    ("POST", "/v1/refunds"),
    ("POST", "/v1/refund_requests/{id}/approve"),
    ("POST", "/v1/refund_requests/{id}/decline"),
    ("POST", "/v1/lnurl/withdraws"),
    ("POST", "/v1/payouts"),
    ("POST", "/v1/step_up/enroll"),
    ("POST", "/v1/step_up/confirm"),
    ("DELETE", "/v1/step_up"),
    ("PUT", "/v1/risk/rules"),
];

/// The middleware of administrative operations: before one runs, the step-up check of those
/// step-up guards (`super::step_up::GUARDED`, all audited); after it answered, its audit entry.
/// Every other request passes with one route comparison and no allocation.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let audited = request.extensions().get::<MatchedPath>().and_then(|path| {
        AUDITED
            .iter()
            .find(|(m, r)| *m == request.method().as_str() && *r == path.as_str())
            .copied()
    });
    let Some((method, route)) = audited else {
        return next.run(request).await;
    };
    let target = request.uri().path().to_owned();
    let origin = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip().to_string());
    let key_hash = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .map(|(_, key)| hash_key(key.trim()));
    let guarded = super::step_up::GUARDED.contains(&(method, route));
    let response = match guarded {
        true => match super::step_up::check_request(&state, request.headers()).await {
            Ok(()) => next.run(request).await,
            Err(refused) => refused.into_response(),
        },
        false => next.run(request).await,
    };
    // The key's merchant, known once the handler authenticated it; an unknown key acted for no
    // merchant and is not the merchant's to see (failed authentication is rate-limited).
    let Some((hash, principal)) =
        key_hash.and_then(|hash| state.checked_key(&hash).map(|principal| (hash, principal)))
    else {
        return response;
    };
    let entry = AuditEntry {
        // Sequential: the log lists actions in the order they happened, even within a
        // millisecond.
        id: farthing_app::ids::new_sequential_id(),
        merchant: principal.merchant,
        action: format!("{method} {route}"),
        target,
        actor: key_id(&hash),
        origin,
        status: response.status().as_u16(),
        created_at_ns: state.now_ns(),
    };
    let written = state
        .app()
        .run(principal.mode, move |tx| -> Result<(), ApiError> {
            Ok(tx.append_audit_entry(&entry)?)
        })
        .await;
    if let Err(error) = written {
        tracing::error!(error = %error.message, "cannot append to the audit log");
    }
    response
}

fn render(entry: &AuditEntry, principal: &Principal) -> Value {
    json!({
        "object": "audit_entry",
        "id": entry.id.encode(),
        "livemode": principal.mode.is_live(),
        "action": entry.action,
        "target": entry.target,
        "actor": entry.actor,
        "origin": entry.origin,
        "status": entry.status,
        "created": unix_s(entry.created_at_ns),
    })
}

/// `GET /v1/audit_log`
#[utoipa::path(
    get,
    path = "/v1/audit_log",
    tag = "api_keys",
    operation_id = "list_audit_log",
    summary = "List the audit log",
    security(("bearer" = [])),
    params(spec::ListParams),
    responses(
        (status = 200, description = "A page of administrative actions in this mode (keys, rails, webhooks, settings, owners, refunds, payouts), newest first, with who (`actor`: the key), from where (`origin`: the client's address) and how it ended (`status`).", body = spec::AuditEntryList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("audit_log:read")?;
    let request = extract::list_query(query.as_deref())?.page::<AuditEntryId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.audit_log(principal.merchant, request))?;
    let data: Vec<Value> = page
        .data
        .iter()
        .map(|entry| render(entry, &principal))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/audit_log").into_response())
}
