//! LNURL on the Lightning rail (SPEC RL3): the public endpoints wallets call, and the payouts
//! they start.
//!
//! - **LNURL-pay (LUD-06) and Lightning Address (LUD-16)**: `GET /.well-known/lnurlp/{name}`
//!   (live) or `/lnurl/{mode}/pay/{name}` answers the pay request; its callback makes a farthing
//!   invoice (BTC, `lightning` only, so the merchant sees every tip as an `invoice.paid`) and a
//!   BOLT11 committing to SHA-256 of the metadata (the description hash rule). Comments
//!   (LUD-12) up to [`COMMENT_MAX`] characters are kept with the invoice.
//!   `/lnurl/{mode}/topup/{customer}` is the same for a customer's top-up: its BOLT11 names no
//!   invoice, and settlement credits the customer (`top_up`).
//! - **LNURL-withdraw (LUD-03)**: `/lnurl/{mode}/withdraw/{k1}` answers the withdraw request of
//!   a link made by `POST /v1/lnurl/withdraws` (a refund the customer claims, or a merchant
//!   payout); the callback checks the wallet's BOLT11 (network, amount within the link's
//!   bounds, not expired), marks the link used, holds the amount on the ledger (customer or
//!   merchant balance → `external/lightning`), answers `OK`, then pays in the background:
//!   success posts the hold, failure voids it and reopens the link. Single use: marking the
//!   link used and holding the money happen in one store job, so two callbacks cannot both
//!   pay.
//! - **LNURL-auth (LUD-04)**: `/lnurl/{mode}/auth?tag=login&k1&sig&key` verifies the
//!   secp256k1 signature of a challenge made by `POST /v1/lnurl/auth` (single use, short-lived)
//!   and links the key to a customer ("the payment method is the account").
//!
//! Answers follow the LNURL shape: the request objects, or `{"status": "OK"}`, or
//! `{"status": "ERROR", "reason": …}` (with HTTP 400/404/409 for refusals, so both wallets
//! and people can read them).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use farthing_app::AppError;
use farthing_core::invoice::InvoiceAmount;
use farthing_core::{Currency, CustomerId, MerchantId, PublicId, Rail};
use farthing_lightning::backend::Description;
use farthing_lightning::bolt11;
use farthing_lightning::lnurl::{self as proto, PayCallbackAnswer, PayRequest, WithdrawRequest};
use farthing_store::LnurlSecret;
use serde::Deserialize;

use crate::rails::lightning::{
    hold, k1_hex, make_bolt11, mode_segment, parse_k1, pay_out, payout_key, top_up_link,
    withdraw_link, LightningRail, Node, Payout, LNURL_LOGIN_MERCHANT, MSAT_PER_SAT,
};
use crate::state::{AppState, Mode};
use crate::web::error::ApiError;

/// Longest LUD-12 comment accepted.
pub const COMMENT_MAX: u16 = 255;
/// Smallest LNURL-pay amount, millisatoshis (1 satoshi).
pub const PAY_MIN_MSAT: u64 = 1_000;
/// Largest LNURL-pay amount, millisatoshis (0.1 BTC).
pub const PAY_MAX_MSAT: u64 = 10_000_000 * 1_000;
/// How long an LNURL-pay invoice (and its BOLT11) lives, seconds.
pub const PAY_EXPIRES_S: u64 = 600;
/// An LNURL-protocol answer: `status` and `{"status": "ERROR", "reason": …}`.
pub struct LnurlError {
    status: StatusCode,
    reason: String,
}

impl LnurlError {
    fn new(status: StatusCode, reason: impl Into<String>) -> LnurlError {
        LnurlError {
            status,
            reason: reason.into(),
        }
    }

    fn bad(reason: impl Into<String>) -> LnurlError {
        LnurlError::new(StatusCode::BAD_REQUEST, reason)
    }

    fn not_found(reason: impl Into<String>) -> LnurlError {
        LnurlError::new(StatusCode::NOT_FOUND, reason)
    }
}

/// The query string of an LNURL request, or an LNURL error (400 `{"status": "ERROR"}`) when
/// it does not parse (a duplicated or malformed parameter): wallets read only that shape.
pub struct LnurlQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for LnurlQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = LnurlError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| LnurlQuery(value))
            .map_err(|rejection| {
                LnurlError::bad(format!("bad query string: {}", rejection.body_text()))
            })
    }
}

impl From<ApiError> for LnurlError {
    fn from(error: ApiError) -> LnurlError {
        LnurlError::new(error.status, error.message)
    }
}

impl From<AppError> for LnurlError {
    fn from(error: AppError) -> LnurlError {
        LnurlError::from(ApiError::from(error))
    }
}

impl From<farthing_store::StoreError> for LnurlError {
    fn from(error: farthing_store::StoreError) -> LnurlError {
        LnurlError::from(ApiError::from(error))
    }
}

impl From<farthing_store::WriteError> for LnurlError {
    fn from(error: farthing_store::WriteError) -> LnurlError {
        LnurlError::from(ApiError::from(error))
    }
}

impl IntoResponse for LnurlError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(proto::status_error(&self.reason))).into_response()
    }
}

type Answer = Result<Response, LnurlError>;

fn ok_json(value: impl serde::Serialize) -> Answer {
    Ok(axum::Json(value).into_response())
}

fn parse_mode(segment: &str) -> Result<Mode, LnurlError> {
    match segment {
        "live" => Ok(Mode::Live),
        "test" => Ok(Mode::Test),
        _ => Err(LnurlError::not_found(
            "unknown LNURL mode: use live or test",
        )),
    }
}

/// The Lightning rail (registered on every server).
fn rail(state: &AppState) -> Result<&LightningRail, LnurlError> {
    state
        .rails()
        .lightning()
        .ok_or_else(|| LnurlError::not_found("this server takes no Lightning payments"))
}

fn node_of(state: &AppState, mode: Mode, merchant: MerchantId) -> Result<Arc<Node>, LnurlError> {
    rail(state)?
        .nodes()
        .get(state.app(), mode, merchant)?
        .ok_or_else(|| LnurlError::not_found("this merchant takes no Lightning payments"))
}

/// The LUD-06 metadata of a merchant's Lightning Address.
fn address_metadata(state: &AppState, name: &str) -> String {
    let address = format!(
        "{name}@{}",
        rail(state)
            .map(LightningRail::address_host)
            .unwrap_or_default()
    );
    proto::pay_metadata(&format!("Payment to {address}"), Some(&address))
}

/// The LUD-06 metadata of a customer's top-up link.
fn top_up_metadata(customer: CustomerId) -> String {
    proto::pay_metadata(&format!("Top-up of balance {}", customer.encode()), None)
}

fn pay_request(callback: String, metadata: String) -> PayRequest {
    PayRequest {
        callback,
        max_sendable: PAY_MAX_MSAT,
        min_sendable: PAY_MIN_MSAT,
        metadata,
        tag: Default::default(),
        comment_allowed: Some(COMMENT_MAX),
    }
}

/// `GET /.well-known/lnurlp/{name}`: a live Lightning Address (LUD-16).
#[utoipa::path(
    get,
    path = "/.well-known/lnurlp/{name}",
    tag = "lnurl",
    operation_id = "lnurl_well_known",
    summary = "A live Lightning Address (LUD-16): its LNURL-pay request",
    params(("name" = String, Path, description = "The name part of `name@host`.")),
    responses(
        (status = 200, description = "The LUD-06 pay request: `callback`, `minSendable`, `maxSendable` (msat), `metadata` (with `text/identifier`), `commentAllowed`, `tag` `payRequest`.", body = crate::web::spec::LnurlPayRequest),
        (status = 404, description = "No such address.", body = crate::web::spec::LnurlStatus),
        (status = 500, description = crate::web::spec::E500, body = crate::web::spec::LnurlStatus),
    )
)]
pub async fn well_known(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    address_request(&state, Mode::Live, &name)
}

/// `GET /lnurl/{mode}/pay/{name}`: a Lightning Address's pay request in either mode.
#[utoipa::path(
    get,
    path = "/lnurl/{mode}/pay/{name}",
    tag = "lnurl",
    operation_id = "lnurl_pay",
    summary = "A Lightning Address's LNURL-pay request, in live or test mode",
    params(
        ("mode" = String, Path, description = "`live` or `test`."),
        ("name" = String, Path, description = "The name part of `name@host`."),
    ),
    responses(
        (status = 200, description = "The LUD-06 pay request.", body = crate::web::spec::LnurlPayRequest),
        (status = 404, description = "No such address or mode.", body = crate::web::spec::LnurlStatus),
        (status = 500, description = crate::web::spec::E500, body = crate::web::spec::LnurlStatus),
    )
)]
pub async fn pay(
    State(state): State<AppState>,
    Path((mode, name)): Path<(String, String)>,
) -> Answer {
    address_request(&state, parse_mode(&mode)?, &name)
}

fn address_request(state: &AppState, mode: Mode, name: &str) -> Answer {
    let lookup = name.to_owned();
    let node = state
        .store(mode)
        .read(move |reader| reader.lightning_node_by_address(&lookup))?;
    if node.is_none() {
        return Err(LnurlError::not_found(format!(
            "no Lightning Address {name:?} here"
        )));
    }
    let callback = format!(
        "{}/lnurl/{}/pay/{name}/callback",
        state.config().base_url(),
        mode_segment(mode)
    );
    ok_json(pay_request(callback, address_metadata(state, name)))
}

/// The callback's query (LUD-06, LUD-12).
#[derive(Deserialize)]
pub struct PayQuery {
    amount: Option<String>,
    comment: Option<String>,
}

fn pay_amount(query: &PayQuery) -> Result<(u64, Option<String>), LnurlError> {
    let amount: u64 = query
        .amount
        .as_deref()
        .ok_or_else(|| LnurlError::bad("amount (millisatoshis) is required"))?
        .parse()
        .map_err(|_| LnurlError::bad("amount must be a whole number of millisatoshis"))?;
    if !(PAY_MIN_MSAT..=PAY_MAX_MSAT).contains(&amount) {
        return Err(LnurlError::bad(format!(
            "amount must be between {PAY_MIN_MSAT} and {PAY_MAX_MSAT} millisatoshis"
        )));
    }
    if !amount.is_multiple_of(MSAT_PER_SAT) {
        return Err(LnurlError::bad(
            "amount must be whole satoshis (a multiple of 1000 millisatoshis)",
        ));
    }
    let comment = query.comment.clone().filter(|c| !c.is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > usize::from(COMMENT_MAX))
    {
        return Err(LnurlError::bad(format!(
            "comment must be at most {COMMENT_MAX} characters"
        )));
    }
    Ok((amount, comment))
}

/// `GET /lnurl/{mode}/pay/{name}/callback?amount=…&comment=…`: makes an invoice and its BOLT11.
#[utoipa::path(
    get,
    path = "/lnurl/{mode}/pay/{name}/callback",
    tag = "lnurl",
    operation_id = "lnurl_pay_callback",
    summary = "LNURL-pay callback: makes an invoice and its BOLT11",
    params(
        ("mode" = String, Path, description = "`live` or `test`."),
        ("name" = String, Path, description = "The name part of `name@host`."),
        ("amount" = u64, Query, description = "Millisatoshis, whole satoshis, within the pay request's bounds."),
        ("comment" = Option<String>, Query, description = "LUD-12 comment, at most 255 characters."),
    ),
    responses(
        (status = 200, description = "`{\"pr\": BOLT11, \"routes\": []}`: the BOLT11 commits to SHA-256 of the metadata; a farthing invoice (BTC, `lightning`) is created with it.", body = crate::web::spec::LnurlPayCallback),
        (status = 400, description = "A missing or bad amount or comment.", body = crate::web::spec::LnurlStatus),
        (status = 404, description = "No such address or mode, or the address's merchant no longer has a Lightning node.", body = crate::web::spec::LnurlStatus),
        (status = 409, description = "Too little time left for a BOLT11 (never in practice).", body = crate::web::spec::LnurlStatus),
        (status = 500, description = crate::web::spec::E500, body = crate::web::spec::LnurlStatus),
        (status = 502, description = "The merchant's Lightning node failed.", body = crate::web::spec::LnurlStatus),
        (status = 503, description = crate::web::spec::LNURL_503, body = crate::web::spec::LnurlStatus),
    )
)]
pub async fn pay_callback(
    State(state): State<AppState>,
    Path((mode, name)): Path<(String, String)>,
    LnurlQuery(query): LnurlQuery<PayQuery>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let (amount_msat, comment) = pay_amount(&query)?;
    let lookup = name.clone();
    let row = state
        .store(mode)
        .read(move |reader| reader.lightning_node_by_address(&lookup))?
        .ok_or_else(|| LnurlError::not_found(format!("no Lightning Address {name:?} here")))?;
    let merchant = row.merchant;
    let node = node_of(&state, mode, merchant)?;
    let sats = amount_msat / MSAT_PER_SAT;
    let address = format!("{name}@{}", rail(&state)?.address_host());
    let mut metadata = vec![
        ("source".to_owned(), "lightning_address".to_owned()),
        ("lightning_address".to_owned(), address.clone()),
    ];
    if let Some(comment) = &comment {
        metadata.push(("comment".to_owned(), comment.clone()));
    }
    let mut prepared = farthing_app::invoices::prepare(
        state.app(),
        state.rails(),
        mode,
        merchant,
        farthing_app::invoices::InvoiceRequest {
            currency: Currency::BTC,
            amount: InvoiceAmount::Fixed(sats),
            description: format!("Payment to {address}"),
            payload: None,
            rails: Some(vec![Rail::Lightning]),
            customer: None,
            expires_in_s: PAY_EXPIRES_S,
            metadata,
            subscription_period_s: None,
            return_url: None,
        },
    )
    .map_err(|error| LnurlError::bad(error.to_string()))?;
    let id = prepared.invoice.id;
    // The BOLT11 first: when the node fails, no invoice is left behind.
    let mut made = make_bolt11(
        state.app(),
        rail(&state)?.config(),
        &node,
        merchant,
        amount_msat,
        Description::Hashed(address_metadata(&state, &name)),
        format!("farthing:{}:lnurlp", id.encode()),
        prepared.invoice.expires_at_ns,
    )
    .await?;
    made.row.invoice = Some(id);
    made.row.comment = comment;
    prepared.with_instructions(
        state.app(),
        mode,
        Rail::Lightning,
        crate::instructions::bolt11_json(&made.row.bolt11),
    );
    let row = made.row;
    let pr = row.bolt11.clone();
    state
        .app()
        .run(mode, move |tx| -> Result<(), LnurlError> {
            farthing_app::invoices::insert(tx, &prepared)?;
            tx.insert_lightning_invoice(&row)?;
            Ok(())
        })
        .await?;
    node.wake.notify_one();
    ok_json(PayCallbackAnswer::new(pr))
}

fn parse_customer(text: &str) -> Result<CustomerId, LnurlError> {
    CustomerId::parse(text).map_err(|_| LnurlError::not_found("no such top-up link"))
}

fn customer_of(
    state: &AppState,
    mode: Mode,
    id: CustomerId,
) -> Result<farthing_store::Customer, LnurlError> {
    state
        .store(mode)
        .read(move |reader| reader.customer(id))?
        .ok_or_else(|| LnurlError::not_found("no such top-up link"))
}

/// `GET /lnurl/{mode}/topup/{customer}`: the pay request of a customer's top-up.
#[utoipa::path(
    get,
    path = "/lnurl/{mode}/topup/{customer}",
    tag = "lnurl",
    operation_id = "lnurl_top_up",
    summary = "A customer's top-up link: its LNURL-pay request",
    params(
        ("mode" = String, Path, description = "`live` or `test`."),
        ("customer" = String, Path, description = "The customer, `cus_…`."),
    ),
    responses(
        (status = 200, description = "The LUD-06 pay request.", body = crate::web::spec::LnurlPayRequest),
        (status = 404, description = "No such customer, or its merchant takes no Lightning payments.", body = crate::web::spec::LnurlStatus),
        (status = 500, description = crate::web::spec::E500, body = crate::web::spec::LnurlStatus),
    )
)]
pub async fn top_up(
    State(state): State<AppState>,
    Path((mode, customer)): Path<(String, String)>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let id = parse_customer(&customer)?;
    let found = customer_of(&state, mode, id)?;
    node_of(&state, mode, found.merchant)?;
    let (url, _) = top_up_link(state.app().base_url(), mode, id);
    ok_json(pay_request(format!("{url}/callback"), top_up_metadata(id)))
}

/// `GET /lnurl/{mode}/topup/{customer}/callback?amount=…`: a BOLT11 crediting the customer.
#[utoipa::path(
    get,
    path = "/lnurl/{mode}/topup/{customer}/callback",
    tag = "lnurl",
    operation_id = "lnurl_top_up_callback",
    summary = "Top-up callback: a BOLT11 whose payment is credited to the customer",
    params(
        ("mode" = String, Path, description = "`live` or `test`."),
        ("customer" = String, Path, description = "The customer, `cus_…`."),
        ("amount" = u64, Query, description = "Millisatoshis, whole satoshis."),
        ("comment" = Option<String>, Query, description = "LUD-12 comment."),
    ),
    responses(
        (status = 200, description = "`{\"pr\": BOLT11, \"routes\": []}`.", body = crate::web::spec::LnurlPayCallback),
        (status = 400, description = "A missing or bad amount or comment.", body = crate::web::spec::LnurlStatus),
        (status = 404, description = "No such customer.", body = crate::web::spec::LnurlStatus),
        (status = 409, description = "Too little time left for a BOLT11 (never in practice).", body = crate::web::spec::LnurlStatus),
        (status = 500, description = crate::web::spec::E500, body = crate::web::spec::LnurlStatus),
        (status = 502, description = "The merchant's Lightning node failed.", body = crate::web::spec::LnurlStatus),
        (status = 503, description = crate::web::spec::LNURL_503, body = crate::web::spec::LnurlStatus),
    )
)]
pub async fn top_up_callback(
    State(state): State<AppState>,
    Path((mode, customer)): Path<(String, String)>,
    LnurlQuery(query): LnurlQuery<PayQuery>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let (amount_msat, comment) = pay_amount(&query)?;
    let id = parse_customer(&customer)?;
    let found = customer_of(&state, mode, id)?;
    let node = node_of(&state, mode, found.merchant)?;
    let limit = state.now_ns().saturating_add(PAY_EXPIRES_S * 1_000_000_000);
    let mut made = make_bolt11(
        state.app(),
        rail(&state)?.config(),
        &node,
        found.merchant,
        amount_msat,
        Description::Hashed(top_up_metadata(id)),
        format!("farthing:{}:topup:{}", id.encode(), state.now_ns()),
        limit,
    )
    .await?;
    made.row.customer = Some(id);
    made.row.top_up = true;
    made.row.comment = comment;
    let row = made.row;
    let pr = row.bolt11.clone();
    state
        .app()
        .run(mode, move |tx| -> Result<(), LnurlError> {
            Ok(tx.insert_lightning_invoice(&row)?)
        })
        .await?;
    node.wake.notify_one();
    ok_json(PayCallbackAnswer::new(pr))
}

// ---------------------------------------------------------------------------------------
// LNURL-withdraw

fn open_secret(
    secret: Option<LnurlSecret>,
    kind: &str,
    now_ns: u64,
) -> Result<LnurlSecret, LnurlError> {
    let secret = secret
        .filter(|s| s.kind == kind)
        .ok_or_else(|| LnurlError::not_found(format!("no such LNURL-{kind} link")))?;
    if secret.used_at_ns.is_some() {
        return Err(LnurlError::new(
            StatusCode::CONFLICT,
            format!("this LNURL-{kind} link was already used"),
        ));
    }
    if now_ns >= secret.expires_at_ns {
        return Err(LnurlError::new(
            StatusCode::GONE,
            format!("this LNURL-{kind} link has expired"),
        ));
    }
    Ok(secret)
}

/// `GET /lnurl/{mode}/withdraw/{k1}`: the withdraw request (LUD-03).
#[utoipa::path(
    get,
    path = "/lnurl/{mode}/withdraw/{k1}",
    tag = "lnurl",
    operation_id = "lnurl_withdraw",
    summary = "An LNURL-withdraw link's request (LUD-03)",
    params(
        ("mode" = String, Path, description = "`live` or `test`."),
        ("k1" = String, Path, description = "The link's k1 (hex)."),
    ),
    responses(
        (status = 200, description = "`{\"tag\": \"withdrawRequest\", \"callback\", \"k1\", \"defaultDescription\", \"minWithdrawable\", \"maxWithdrawable\"}` (msat).", body = crate::web::spec::LnurlWithdrawRequest),
        (status = 404, description = "No such link.", body = crate::web::spec::LnurlStatus),
        (status = 409, description = "The link was already used.", body = crate::web::spec::LnurlStatus),
        (status = 410, description = "The link has expired.", body = crate::web::spec::LnurlStatus),
        (status = 500, description = crate::web::spec::E500, body = crate::web::spec::LnurlStatus),
    )
)]
pub async fn withdraw(
    State(state): State<AppState>,
    Path((mode, k1)): Path<(String, String)>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let key = parse_k1(&k1).ok_or_else(|| LnurlError::not_found("no such LNURL-withdraw link"))?;
    let secret = state
        .store(mode)
        .read(move |reader| reader.lnurl_secret(&key))?;
    let secret = open_secret(secret, "withdraw", state.now_ns())?;
    let (url, _) = withdraw_link(state.app().base_url(), mode, &key);
    ok_json(WithdrawRequest {
        tag: Default::default(),
        callback: format!("{url}/callback"),
        k1: k1_hex(&key),
        default_description: secret.description,
        min_withdrawable: secret.min_msat,
        max_withdrawable: secret.max_msat,
    })
}

/// The withdraw callback's query.
#[derive(Deserialize)]
pub struct WithdrawQuery {
    k1: Option<String>,
    pr: Option<String>,
}

/// `GET /lnurl/{mode}/withdraw/{k1}/callback?k1=…&pr=…`: checks the wallet's BOLT11, holds the
/// money, answers `OK`, and pays in the background.
#[utoipa::path(
    get,
    path = "/lnurl/{mode}/withdraw/{k1}/callback",
    tag = "lnurl",
    operation_id = "lnurl_withdraw_callback",
    summary = "LNURL-withdraw callback: the wallet's BOLT11 to pay",
    params(
        ("mode" = String, Path, description = "`live` or `test`."),
        ("k1" = String, Path, description = "The link's k1 (hex)."),
        ("pr" = String, Query, description = "The BOLT11 to pay: on the node's network, not expired, with an amount within the link's bounds, whole satoshis."),
    ),
    responses(
        (status = 200, description = "`{\"status\": \"OK\"}`: the link is used and the amount held; the payment goes out now (`payout.succeeded` or `payout.failed`; a failure releases the hold and reopens the link).", body = crate::web::spec::LnurlStatus),
        (status = 400, description = "A missing or wrong `k1`, a missing or bad BOLT11 (other network, expired, no amount, not whole satoshis), or an amount outside the link's bounds.", body = crate::web::spec::LnurlStatus),
        (status = 402, description = "The balance that pays the link is now smaller than the BOLT11's amount.", body = crate::web::spec::LnurlStatus),
        (status = 404, description = "No such link, or its merchant no longer has a Lightning node.", body = crate::web::spec::LnurlStatus),
        (status = 409, description = "The link was already used.", body = crate::web::spec::LnurlStatus),
        (status = 410, description = "The link has expired.", body = crate::web::spec::LnurlStatus),
        (status = 500, description = crate::web::spec::E500, body = crate::web::spec::LnurlStatus),
        (status = 503, description = crate::web::spec::LNURL_503, body = crate::web::spec::LnurlStatus),
    )
)]
pub async fn withdraw_callback(
    State(state): State<AppState>,
    Path((mode, k1)): Path<(String, String)>,
    LnurlQuery(query): LnurlQuery<WithdrawQuery>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let key = parse_k1(&k1).ok_or_else(|| LnurlError::not_found("no such LNURL-withdraw link"))?;
    if query.k1.as_deref().map(str::to_ascii_lowercase) != Some(k1_hex(&key)) {
        return Err(LnurlError::bad("k1 must be the link's k1"));
    }
    let pr = query
        .pr
        .ok_or_else(|| LnurlError::bad("pr (the BOLT11 to pay) is required"))?;
    let now_ns = state.now_ns();
    let secret = state
        .store(mode)
        .read(move |reader| reader.lnurl_secret(&key))?;
    let secret = open_secret(secret, "withdraw", now_ns)?;
    let node = node_of(&state, mode, secret.merchant)?;
    let checked = bolt11::check(
        &pr,
        &bolt11::Expect {
            network: Some(node.network),
            now_s: Some(now_ns / 1_000_000_000),
            ..Default::default()
        },
    )
    .map_err(|error| LnurlError::bad(format!("pr: {error}")))?;
    let amount_msat = checked
        .amount_msat
        .ok_or_else(|| LnurlError::bad("pr must carry an amount"))?;
    if amount_msat < secret.min_msat || amount_msat > secret.max_msat {
        return Err(LnurlError::bad(format!(
            "pr asks {amount_msat} msat; this link pays {} to {} msat",
            secret.min_msat, secret.max_msat
        )));
    }
    if !amount_msat.is_multiple_of(MSAT_PER_SAT) {
        return Err(LnurlError::bad("pr must ask whole satoshis"));
    }
    let sats = amount_msat / MSAT_PER_SAT;
    let hash = checked.payment_hash;
    let (merchant, customer) = (secret.merchant, secret.customer);
    let payout = payout_key(Some(&key), &hash);
    // One job: the link is marked used and the money held, or neither.
    state
        .app()
        .run(mode, move |tx| -> Result<(), LnurlError> {
            let now = tx.now_ns();
            open_secret(tx.lnurl_secret(&key)?, "withdraw", now)?;
            hold(tx, mode, merchant, customer, &payout, sats).map_err(ApiError::from)?;
            if !tx.use_lnurl_secret(&key, &hash.to_hex(), now)? {
                return Err(LnurlError::new(
                    StatusCode::CONFLICT,
                    "this LNURL-withdraw link was already used",
                ));
            }
            Ok(())
        })
        .await?;
    let paying = state.clone();
    tokio::spawn(async move {
        let target = Payout {
            merchant,
            customer,
            key: payout,
            link: Some(key),
            amount_msat,
        };
        // The outcome is booked and logged inside.
        let _ = pay_out(paying.app(), mode, &node, &target, &pr).await;
    });
    ok_json(proto::status_ok())
}

/// The auth callback's query (LUD-04).
#[derive(Deserialize)]
pub struct AuthQuery {
    tag: Option<String>,
    k1: Option<String>,
    sig: Option<String>,
    key: Option<String>,
}

/// `GET /lnurl/{mode}/auth?tag=login&k1=…&sig=…&key=…`: verifies and links the key.
#[utoipa::path(
    get,
    path = "/lnurl/{mode}/auth",
    tag = "lnurl",
    operation_id = "lnurl_auth",
    summary = "LNURL-auth callback (LUD-04): a wallet signs the challenge",
    params(
        ("mode" = String, Path, description = "`live` or `test`."),
        ("tag" = Option<String>, Query, description = "`login`."),
        ("k1" = String, Query, description = "The challenge (hex)."),
        ("sig" = String, Query, description = "DER-encoded secp256k1 ECDSA signature of k1, hex."),
        ("key" = String, Query, description = "The linking public key, compressed, hex."),
    ),
    responses(
        (status = 200, description = "`{\"status\": \"OK\"}`: verified; the key is linked to a customer (created on first login).", body = crate::web::spec::LnurlStatus),
        (status = 400, description = "A missing or malformed parameter, or a signature that does not verify.", body = crate::web::spec::LnurlStatus),
        (status = 404, description = "No such challenge.", body = crate::web::spec::LnurlStatus),
        (status = 409, description = "The challenge was already used.", body = crate::web::spec::LnurlStatus),
        (status = 410, description = "The challenge has expired.", body = crate::web::spec::LnurlStatus),
        (status = 500, description = crate::web::spec::E500, body = crate::web::spec::LnurlStatus),
        (status = 503, description = crate::web::spec::LNURL_503, body = crate::web::spec::LnurlStatus),
    )
)]
pub async fn auth(
    State(state): State<AppState>,
    Path(mode): Path<String>,
    LnurlQuery(query): LnurlQuery<AuthQuery>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    if query.tag.as_deref().is_some_and(|tag| tag != "login") {
        return Err(LnurlError::bad("tag must be login"));
    }
    let (Some(k1), Some(sig), Some(key)) = (query.k1, query.sig, query.key) else {
        return Err(LnurlError::bad("k1, sig and key are required"));
    };
    let k1_bytes = parse_k1(&k1).ok_or_else(|| LnurlError::bad("k1 must be 64 hex characters"))?;
    let secret = state
        .store(mode)
        .read(move |reader| reader.lnurl_secret(&k1_bytes))?;
    let secret = open_secret(secret, "auth", state.now_ns())?;
    let linking =
        proto::verify_auth(&k1, &sig, &key).map_err(|error| LnurlError::bad(error.to_string()))?;
    let merchant = secret.merchant;
    let linking_key = linking.as_str().to_owned();
    // What the challenge was made for: adding a dashboard owner (`POST
    // /v1/dashboard/owners/lnurl`), a dashboard sign-in (the key is only recorded; the page
    // asks which merchant it owns), or linking the key to a customer of the merchant.
    let owner = secret.description == crate::rails::lightning::OWNER_CHALLENGE;
    let login = !owner && merchant == LNURL_LOGIN_MERCHANT;
    state
        .app()
        .run(mode, move |tx| -> Result<(), LnurlError> {
            let now = tx.now_ns();
            open_secret(tx.lnurl_secret(&k1_bytes)?, "auth", now)?;
            // Checked before the challenge is used up: a refused owner may try again.
            if owner && tx.dashboard_lnurl_key_taken(merchant, &linking_key)? {
                return Err(LnurlError::new(
                    StatusCode::CONFLICT,
                    "this wallet's key is a dashboard owner of another merchant; a wallet signs in to one merchant",
                ));
            }
            if !tx.use_lnurl_secret(&k1_bytes, &linking_key, now)? {
                return Err(LnurlError::new(
                    StatusCode::CONFLICT,
                    "this LNURL-auth challenge was already used",
                ));
            }
            if owner {
                // The wallet proved it holds the key: it becomes an owner of the merchant.
                let mut owners = tx.dashboard_lnurl_owners_in_job(merchant)?;
                if !owners.contains(&linking_key) {
                    owners.push(linking_key);
                    tx.set_dashboard_lnurl_owners(merchant, &owners, now)?;
                }
                return Ok(());
            }
            if login || tx.lnurl_identity(merchant, &linking_key)?.is_some() {
                return Ok(());
            }
            let (customer, _) = farthing_app::customers::find_or_create(
                tx,
                merchant,
                mode,
                &format!("lnurl:{linking_key}"),
                vec![("created_for".to_owned(), "lnurl_auth".to_owned())],
            )?;
            tx.insert_lnurl_identity(merchant, &linking_key, customer.id, now)?;
            Ok(())
        })
        .await?;
    ok_json(proto::status_ok())
}
