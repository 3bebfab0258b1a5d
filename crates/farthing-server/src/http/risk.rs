//! `/v1/risk/rules` (the merchant's limits, new-customer rules, velocity and block lists, SPEC
//! S1, S2) and `/v1/risk/decisions` (every decision the rules made: allow, step up, refuse,
//! with the rule and the reason). The rules are decided by `farthing_core::risk`, applied by
//! `farthing_app::risk` inside each payment's job.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use farthing_app::risk::{self, RulesDoc};
use farthing_core::{PublicId, RiskDecisionId};
use farthing_store::RiskDecisionRecord;
use serde_json::{json, Value};

use axum::http::StatusCode;

use super::{list_answer, write};
use crate::state::{AppState, Mode, Principal};
use crate::web::error::ApiError;
use crate::web::extract::{self, Checked};
use crate::web::spec;

fn render_rules(doc: &RulesDoc, mode: Mode) -> Value {
    super::object_with("risk_rules", mode, doc)
}

/// A decision as the API shows it.
pub fn render_decision(record: &RiskDecisionRecord, mode: Mode) -> Value {
    json!({
        "object": "risk_decision",
        "id": record.id.encode(),
        "livemode": mode.is_live(),
        "operation": record.operation,
        "outcome": record.outcome,
        "rule": record.rule,
        "reason": record.reason,
        "customer": record.customer.map(|c| c.encode()),
        "telegram_user_id": record.telegram_user,
        "subject": record.subject,
        "amount": record.amount_minor,
        "currency": record.currency.code(),
        "created": record.created_at_ns / 1_000_000_000,
    })
}

/// `GET /v1/risk/rules`
#[utoipa::path(
    get,
    path = "/v1/risk/rules",
    tag = "risk",
    operation_id = "retrieve_risk_rules",
    summary = "Retrieve the merchant's risk rules",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rules of this mode (none set: no limits, no lists; every payment is allowed).", body = spec::RiskRulesObject),
        spec::ReadErrors,
    ),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require("settings:read")?;
    let doc = risk::get_rules(state.app(), principal.mode, principal.merchant)?;
    Ok(axum::Json(render_rules(&doc, principal.mode)).into_response())
}

/// `PUT /v1/risk/rules`
#[utoipa::path(
    put,
    path = "/v1/risk/rules",
    tag = "risk",
    operation_id = "update_risk_rules",
    summary = "Replace the merchant's risk rules",
    description = "The rules apply at once to every payment of this mode: charges, balance payments (API and Mini App), Telegram's pre-checkout (Stars, cards) and payouts. Limits are per currency, in minor units; the daily limit counts what a customer paid (charges and invoices) in the current hour and the 23 before it. Velocity counts per payer (customer, else Telegram user, else client address) over the last minute, in memory of each farthing process. `step_up_above` asks API callers for the merchant's authenticator code (`Farthing-Step-Up`); buyer-side payments above it are refused. An empty body `{}` removes every rule.",
    security(("bearer" = [])),
    params(spec::IdempotencyKey),
    request_body(content = RulesDoc, content_type = "application/json", example = json!({"limits": [{"currency": "XTR", "per_payment_max": 2500, "per_customer_day_max": 10000, "new_customer_per_payment_max": 500, "step_up_above": 5000}], "new_customers": {"days": 7, "payments": 3}, "velocity": {"attempts_per_minute": 20, "failures_per_minute": 5}, "block": {"telegram_users": [777000], "wallets": [], "ips": ["203.0.113.0/24"]}})),
    responses(
        (status = 200, description = "The stored rules, in force now.", body = spec::RiskRulesObject),
        (status = 400, description = "Malformed JSON, an unknown field or a wrong type (`invalid_body`), a non-JSON content type (`unsupported_content_type`), or rules that cannot work: an unknown or repeated currency, a daily limit below the per-payment one, a bad IP network, a list over 10 000 entries (`invalid_risk_rules`, `param` names the field).", body = spec::Error),
        spec::WriteErrors,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    body: Checked<RulesDoc>,
) -> Result<Response, ApiError> {
    principal.require("settings:write")?;
    let doc = body.value.clone();
    let (merchant, mode) = (principal.merchant, principal.mode);
    let object = render_rules(&doc, mode);
    let answer = write(
        &state,
        &principal,
        &body.headers,
        "PUT /v1/risk/rules",
        &body.raw,
        move |tx| {
            risk::store_rules(tx, merchant, &doc)?;
            Ok((StatusCode::OK, object))
        },
    )
    .await;
    // Whatever happened (stored, replayed, refused), the next payment reads the rules from
    // the store: a replay of an older change must not bring back older rules.
    risk::forget_rules(state.app(), mode, merchant);
    answer
}

/// `GET /v1/risk/decisions`
#[utoipa::path(
    get,
    path = "/v1/risk/decisions",
    tag = "risk",
    operation_id = "list_risk_decisions",
    summary = "List the risk rules' decisions",
    security(("bearer" = [])),
    params(
        spec::ListParams,
        ("outcome" = Option<String>, Query, description = "Only `allow`, `step_up` or `refuse`."),
        ("customer" = Option<String>, Query, description = "Only decisions about this customer, `cus_…`."),
        ("created[gte]" = Option<u64>, Query, description = "Only decisions made at or after this Unix time."),
        ("created[lte]" = Option<u64>, Query, description = "Only decisions made at or before this Unix time."),
    ),
    responses(
        (status = 200, description = "A page of decisions, newest first (recorded only while the merchant has rules).", body = spec::RiskDecisionList),
        (status = 400, description = spec::E400_LIST, body = spec::Error),
        spec::ReadErrors,
    ),
)]
pub async fn decisions(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("settings:read")?;
    let query = extract::list_query_with(
        query.as_deref(),
        &["outcome", "customer", "created[gte]", "created[lte]"],
    )?;
    let mut filter = extract::list_filter(&query, &[])?;
    if let Some(outcome) = query.filter("outcome") {
        if farthing_core::risk::Outcome::parse(outcome).is_none() {
            return Err(ApiError::invalid(
                "invalid_outcome",
                "outcome must be one of allow, step_up, refuse",
            )
            .param("outcome"));
        }
        filter.status = Some(outcome.to_owned());
    }
    let request = query.page::<RiskDecisionId>()?;
    let page = state
        .store(principal.mode)
        .read(|reader| reader.risk_decisions(principal.merchant, request, &filter))?;
    let data = page
        .data
        .iter()
        .map(|record| render_decision(record, principal.mode))
        .collect();
    Ok(list_answer(data, page.has_more, "/v1/risk/decisions"))
}
