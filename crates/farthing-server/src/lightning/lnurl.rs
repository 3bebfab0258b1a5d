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
use farthing_core::invoice::{InvoiceAmount, NewInvoice};
use farthing_core::ledger::{Account, Group, Outcome, Transfer, TransferAction};
use farthing_core::{Currency, CustomerId, InvoiceId, MerchantId, PublicId, Rail, TransferId};
use farthing_lightning::backend::Description;
use farthing_lightning::bolt11;
use farthing_lightning::lnurl::{self as proto, PayCallbackAnswer, PayRequest, WithdrawRequest};
use farthing_lightning::{LightningBackend, PaymentHash, PaymentOutcome};
use farthing_store::{Customer, LnurlSecret, Tx};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{make_bolt11, Node, MSAT_PER_SAT};
use crate::api::{book, customers::emit_balance_changed, emit, wall_clock_ns};
use crate::error::ApiError;
use crate::ids::new_id;
use crate::render;
use crate::state::{AppState, Mode};

/// Longest LUD-12 comment accepted.
pub const COMMENT_MAX: u16 = 255;
/// Smallest LNURL-pay amount, millisatoshis (1 satoshi).
pub const PAY_MIN_MSAT: u64 = 1_000;
/// Largest LNURL-pay amount, millisatoshis (0.1 BTC).
pub const PAY_MAX_MSAT: u64 = 10_000_000 * 1_000;
/// How long an LNURL-pay invoice (and its BOLT11) lives, seconds.
pub const PAY_EXPIRES_S: u64 = 600;
/// Routing fee allowed on a payout: 1 % plus 10 sat.
fn max_fee_msat(amount_msat: u64) -> u64 {
    amount_msat / 100 + 10_000
}

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

impl From<ApiError> for LnurlError {
    fn from(error: ApiError) -> LnurlError {
        LnurlError::new(error.status, error.message)
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

/// `live` or `test` in an LNURL path.
pub fn mode_segment(mode: Mode) -> &'static str {
    if mode.is_live() {
        "live"
    } else {
        "test"
    }
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

fn node_of(state: &AppState, mode: Mode, merchant: MerchantId) -> Result<Arc<Node>, LnurlError> {
    state
        .lightning()
        .get(state, mode, merchant)?
        .ok_or_else(|| LnurlError::not_found("this merchant takes no Lightning payments"))
}

/// The LUD-06 metadata of a merchant's Lightning Address.
fn address_metadata(state: &AppState, name: &str) -> String {
    let address = format!("{name}@{}", crate::api::lightning::address_host(state));
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
pub async fn well_known(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    address_request(&state, Mode::Live, &name)
}

/// `GET /lnurl/{mode}/pay/{name}`: a Lightning Address's pay request in either mode.
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
pub async fn pay_callback(
    State(state): State<AppState>,
    Path((mode, name)): Path<(String, String)>,
    Query(query): Query<PayQuery>,
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
    let address = format!("{name}@{}", crate::api::lightning::address_host(&state));
    let mut metadata = vec![
        ("source".to_owned(), "lightning_address".to_owned()),
        ("lightning_address".to_owned(), address.clone()),
    ];
    if let Some(comment) = &comment {
        metadata.push(("comment".to_owned(), comment.clone()));
    }
    let id: InvoiceId = new_id();
    let invoice = NewInvoice {
        currency: Currency::BTC,
        amount: InvoiceAmount::Fixed(sats),
        description: format!("Payment to {address}"),
        payload: None,
        rails: vec![Rail::Lightning],
        customer: None,
        expires_in_s: PAY_EXPIRES_S,
        metadata,
    }
    .into_invoice(id, merchant, wall_clock_ns())
    .map_err(|error| LnurlError::bad(error.to_string()))?;
    // The BOLT11 first: when the node fails, no invoice is left behind.
    let mut made = make_bolt11(
        &state,
        &node,
        merchant,
        amount_msat,
        Description::Hashed(address_metadata(&state, &name)),
        format!("farthing:{}:lnurlp", id.encode()),
        invoice.expires_at_ns,
    )
    .await?;
    made.row.invoice = Some(id);
    made.row.comment = comment;
    let mut invoice = invoice;
    invoice.instructions.insert(
        farthing_core::Rail::Lightning,
        crate::instructions::bolt11_json(&made.row.bolt11),
    );
    let object = render::invoice(&invoice, mode, &state.checkout_url(&id.encode()));
    let event = crate::api::event_record(
        merchant,
        mode,
        "invoice.created",
        &object,
        invoice.created_at_ns,
    );
    let row = made.row;
    let pr = row.bolt11.clone();
    state
        .store(mode)
        .run(move |tx| -> Result<(), ApiError> {
            tx.insert_invoice(&invoice)?;
            tx.insert_lightning_invoice(&row)?;
            tx.insert_event(&event)?;
            Ok(())
        })
        .await??;
    state.deliveries().notify_one();
    node.wake.notify_one();
    ok_json(PayCallbackAnswer::new(pr))
}

fn parse_customer(text: &str) -> Result<CustomerId, LnurlError> {
    CustomerId::parse(text).map_err(|_| LnurlError::not_found("no such top-up link"))
}

fn customer_of(state: &AppState, mode: Mode, id: CustomerId) -> Result<Customer, LnurlError> {
    state
        .store(mode)
        .read(move |reader| reader.customer(id))?
        .ok_or_else(|| LnurlError::not_found("no such top-up link"))
}

/// The top-up link of a customer (`/lnurl/{mode}/topup/{customer}`), as URL and LNURL.
pub fn top_up_link(state: &AppState, mode: Mode, customer: CustomerId) -> (String, String) {
    let url = format!(
        "{}/lnurl/{}/topup/{}",
        state.config().base_url(),
        mode_segment(mode),
        customer.encode()
    );
    let lnurl = proto::encode(&url);
    (url, lnurl)
}

/// `GET /lnurl/{mode}/topup/{customer}`: the pay request of a customer's top-up.
pub async fn top_up(
    State(state): State<AppState>,
    Path((mode, customer)): Path<(String, String)>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let id = parse_customer(&customer)?;
    let found = customer_of(&state, mode, id)?;
    node_of(&state, mode, found.merchant)?;
    let (url, _) = top_up_link(&state, mode, id);
    ok_json(pay_request(format!("{url}/callback"), top_up_metadata(id)))
}

/// `GET /lnurl/{mode}/topup/{customer}/callback?amount=…`: a BOLT11 crediting the customer.
pub async fn top_up_callback(
    State(state): State<AppState>,
    Path((mode, customer)): Path<(String, String)>,
    Query(query): Query<PayQuery>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let (amount_msat, comment) = pay_amount(&query)?;
    let id = parse_customer(&customer)?;
    let found = customer_of(&state, mode, id)?;
    let node = node_of(&state, mode, found.merchant)?;
    let limit = wall_clock_ns().saturating_add(PAY_EXPIRES_S * 1_000_000_000);
    let mut made = make_bolt11(
        &state,
        &node,
        found.merchant,
        amount_msat,
        Description::Hashed(top_up_metadata(id)),
        format!("farthing:{}:topup:{}", id.encode(), wall_clock_ns()),
        limit,
    )
    .await?;
    made.row.customer = Some(id);
    made.row.top_up = true;
    made.row.comment = comment;
    let row = made.row;
    let pr = row.bolt11.clone();
    state
        .store(mode)
        .run(move |tx| tx.insert_lightning_invoice(&row))
        .await??;
    node.wake.notify_one();
    ok_json(PayCallbackAnswer::new(pr))
}

// ---------------------------------------------------------------------------------------
// LNURL-withdraw

fn parse_k1(text: &str) -> Option<[u8; 32]> {
    PaymentHash::from_hex(text).map(|hash| hash.0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The URL and LNURL of a withdraw link.
pub fn withdraw_link(state: &AppState, mode: Mode, k1: &[u8; 32]) -> (String, String) {
    let url = format!(
        "{}/lnurl/{}/withdraw/{}",
        state.config().base_url(),
        mode_segment(mode),
        hex(k1)
    );
    let lnurl = proto::encode(&url);
    (url, lnurl)
}

/// The key of one payout attempt: the LNURL-withdraw link (or `None` for a BOLT11 the merchant
/// submitted) and the payment hash it pays. Every ledger id of the payout derives from it, so
/// the same BOLT11 is never held (nor paid) twice, and a new attempt after a failure — with a
/// new invoice from the wallet, as LNURL-withdraw wallets make — gets new ids.
pub fn payout_key(k1: Option<&[u8; 32]>, payment_hash: &PaymentHash) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"farthing/lightning-payout/v1\0")
        .chain_update(k1.map_or(&[0u8; 32][..], |k| &k[..]))
        .chain_update(payment_hash.0)
        .finalize()
        .into()
}

/// The ledger ids of a payout's hold and its resolution (`hold`, `post`, `void`).
pub fn payout_transfer_id(key: &[u8; 32], step: &str) -> TransferId {
    let digest = Sha256::new()
        .chain_update(b"farthing/lightning-payout-transfer/v1\0")
        .chain_update(step.as_bytes())
        .chain_update([0u8])
        .chain_update(key)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TransferId(u128::from_be_bytes(bytes).max(1))
}

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
pub async fn withdraw(
    State(state): State<AppState>,
    Path((mode, k1)): Path<(String, String)>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let key = parse_k1(&k1).ok_or_else(|| LnurlError::not_found("no such LNURL-withdraw link"))?;
    let secret = state
        .store(mode)
        .read(move |reader| reader.lnurl_secret(&key))?;
    let secret = open_secret(secret, "withdraw", wall_clock_ns())?;
    let (url, _) = withdraw_link(&state, mode, &key);
    ok_json(WithdrawRequest {
        tag: Default::default(),
        callback: format!("{url}/callback"),
        k1: hex(&key),
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

/// Where a payout's money comes from.
fn payout_source(merchant: MerchantId, customer: Option<CustomerId>) -> Account {
    match customer {
        Some(customer) => book::customer(merchant, customer, Currency::BTC),
        None => book::merchant(merchant, Currency::BTC),
    }
}

/// `GET /lnurl/{mode}/withdraw/{k1}/callback?k1=…&pr=…`: checks the wallet's BOLT11, holds the
/// money, answers `OK`, and pays in the background.
pub async fn withdraw_callback(
    State(state): State<AppState>,
    Path((mode, k1)): Path<(String, String)>,
    Query(query): Query<WithdrawQuery>,
) -> Answer {
    let mode = parse_mode(&mode)?;
    let key = parse_k1(&k1).ok_or_else(|| LnurlError::not_found("no such LNURL-withdraw link"))?;
    if query.k1.as_deref().map(str::to_ascii_lowercase) != Some(hex(&key)) {
        return Err(LnurlError::bad("k1 must be the link's k1"));
    }
    let pr = query
        .pr
        .ok_or_else(|| LnurlError::bad("pr (the BOLT11 to pay) is required"))?;
    let now_ns = wall_clock_ns();
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
        .store(mode)
        .run(move |tx| -> Result<(), LnurlError> {
            let now = tx.now_ns();
            open_secret(tx.lnurl_secret(&key)?, "withdraw", now)?;
            hold(tx, mode, merchant, customer, &payout, sats)?;
            if !tx.use_lnurl_secret(&key, &hash.to_hex(), now)? {
                return Err(LnurlError::new(
                    StatusCode::CONFLICT,
                    "this LNURL-withdraw link was already used",
                ));
            }
            Ok(())
        })
        .await
        .map_err(ApiError::from)??;
    state.deliveries().notify_one();
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
        let _ = pay_out(&paying, mode, &node, &target, &pr).await;
    });
    ok_json(proto::status_ok())
}

/// Holds `sats` from the payout source on the ledger (`external/lightning` is credited when it
/// is posted). Refuses with 402 `insufficient_funds` when the balance is short, and with 409
/// `payout_exists` when this payout (same link or BOLT11, same payment hash) was held before.
pub fn hold(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    merchant: MerchantId,
    customer: Option<CustomerId>,
    key: &[u8; 32],
    sats: u64,
) -> Result<(), ApiError> {
    let id = payout_transfer_id(key, "hold");
    let from = payout_source(merchant, customer);
    let to = book::rail(merchant, Rail::Lightning, Currency::BTC);
    let group = Group {
        accounts: vec![from, to],
        transfers: vec![Transfer {
            id,
            action: TransferAction::Pending {
                debit: from.id,
                credit: to.id,
                currency: Currency::BTC,
                amount_minor: sats,
                timeout_s: 0,
            },
            code: book::PAYOUT,
            reference: 0,
        }],
    };
    let outcome = tx
        .apply(&group)?
        .map_err(|error| crate::api::ledger_error(error, "the balance", Currency::BTC))?;
    if outcome.transfers.first().map(|t| t.outcome) != Some(Outcome::Created) {
        return Err(ApiError::conflict(
            "payout_exists",
            "this payment was already paid out (or is being paid): a payout is never sent \
             twice; after a failed payout, ask the wallet for a new invoice",
        ));
    }
    if let Some(customer) = customer {
        emit_balance_changed(tx, merchant, mode, customer, Currency::BTC)?;
    }
    Ok(())
}

/// Resolves a payout's hold: `post` on success, void otherwise.
fn resolve(tx: &mut Tx<'_, '_>, key: &[u8; 32], post: bool) -> Result<(), ApiError> {
    let pending_id = payout_transfer_id(key, "hold");
    let (id, action) = if post {
        (
            payout_transfer_id(key, "post"),
            TransferAction::PostPending {
                pending_id,
                amount_minor: None,
            },
        )
    } else {
        (
            payout_transfer_id(key, "void"),
            TransferAction::VoidPending { pending_id },
        )
    };
    let group = Group {
        accounts: Vec::new(),
        transfers: vec![Transfer {
            id,
            action,
            code: book::PAYOUT,
            reference: 0,
        }],
    };
    tx.apply(&group)?
        .map_err(|error| crate::api::ledger_error(error, "the balance", Currency::BTC))?;
    Ok(())
}

/// A held payout.
#[derive(Clone, Copy, Debug)]
pub struct Payout {
    /// Whose money.
    pub merchant: MerchantId,
    /// The customer whose balance pays (`None`: the merchant's).
    pub customer: Option<CustomerId>,
    /// The payout key ([`payout_key`]).
    pub key: [u8; 32],
    /// The LNURL-withdraw link, reopened when the payment fails.
    pub link: Option<[u8; 32]>,
    /// The amount, millisatoshis (whole satoshis).
    pub amount_msat: u64,
}

/// Pays a held payout and books the outcome: posted on success; voided, with the link
/// reopened, on failure; left held (and logged) while the node says it is in flight or did
/// not answer (never paid twice).
pub async fn pay_out(
    state: &AppState,
    mode: Mode,
    node: &Node,
    payout: &Payout,
    bolt11: &str,
) -> Result<PaymentOutcome, farthing_lightning::BackendError> {
    let Payout {
        merchant,
        customer,
        key,
        link,
        amount_msat,
    } = *payout;
    let outcome = node
        .backend
        .pay_invoice(bolt11, max_fee_msat(amount_msat))
        .await;
    let (post, event, detail) = match &outcome {
        Ok(PaymentOutcome::Succeeded { fee_msat, .. }) => (
            Some(true),
            "payout.succeeded",
            json!({"fee_msat": fee_msat}),
        ),
        Ok(PaymentOutcome::Failed { reason }) => (
            Some(false),
            "payout.failed",
            json!({"failure_reason": reason}),
        ),
        Ok(PaymentOutcome::Pending { .. }) => (None, "", Value::Null),
        // The node did not answer: the payment may or may not have gone out. Keep the hold;
        // an operator (or a later lookup) decides. Never pay twice.
        Err(error) => {
            tracing::error!(%error, payout = %hex(&key), "a Lightning payout's outcome is unknown; its hold stays");
            return outcome;
        }
    };
    let Some(post) = post else {
        tracing::warn!(payout = %hex(&key), "a Lightning payout is in flight; its hold stays until it resolves");
        return outcome;
    };
    let sats = amount_msat / MSAT_PER_SAT;
    let object = json!({
        "object": "payout",
        "id": hex(&key),
        "livemode": mode.is_live(),
        "customer": customer.map(PublicId::encode),
        "currency": "BTC",
        "amount": sats,
        "status": if post { "succeeded" } else { "failed" },
        "detail": detail,
    });
    let booked = state
        .store(mode)
        .run(move |tx| -> Result<(), ApiError> {
            resolve(tx, &key, post)?;
            if let (false, Some(link)) = (post, link) {
                tx.release_lnurl_secret(&link)?;
            }
            if let Some(customer) = customer {
                emit_balance_changed(tx, merchant, mode, customer, Currency::BTC)?;
            }
            emit(tx, merchant, mode, event, object)?;
            Ok(())
        })
        .await;
    match booked {
        Ok(Ok(())) => state.deliveries().notify_one(),
        Ok(Err(error)) => {
            tracing::error!(code = error.code, message = %error.message, payout = %hex(&key), "a Lightning payout's outcome could not be booked")
        }
        Err(error) => {
            tracing::error!(%error, payout = %hex(&key), "a Lightning payout's outcome could not be booked")
        }
    }
    outcome
}

/// Makes an LNURL-withdraw link paying up to `max_sats` from `customer`'s balance (or the
/// merchant's when `None`). Returns the stored secret.
pub fn new_withdraw_secret(
    merchant: MerchantId,
    customer: Option<CustomerId>,
    min_sats: u64,
    max_sats: u64,
    description: String,
    expires_in_s: u64,
) -> Result<LnurlSecret, ApiError> {
    let mut k1 = [0u8; 32];
    getrandom::fill(&mut k1).map_err(ApiError::internal)?;
    let now = wall_clock_ns();
    Ok(LnurlSecret {
        k1,
        kind: "withdraw".to_owned(),
        merchant,
        customer,
        min_msat: min_sats.saturating_mul(MSAT_PER_SAT),
        max_msat: max_sats.saturating_mul(MSAT_PER_SAT),
        description,
        expires_at_ns: now.saturating_add(expires_in_s.saturating_mul(1_000_000_000)),
        used_at_ns: None,
        result: None,
        created_at_ns: now,
    })
}

// ---------------------------------------------------------------------------------------
// LNURL-auth

/// The auth callback's query (LUD-04).
#[derive(Deserialize)]
pub struct AuthQuery {
    tag: Option<String>,
    k1: Option<String>,
    sig: Option<String>,
    key: Option<String>,
}

/// The URL and LNURL of an auth challenge.
pub fn auth_link(state: &AppState, mode: Mode, k1: &[u8; 32], action: &str) -> (String, String) {
    let base = format!(
        "{}/lnurl/{}/auth",
        state.config().base_url(),
        mode_segment(mode)
    );
    let url = proto::auth_url(&base, &hex(k1), Some(action));
    let lnurl = proto::encode(&url);
    (url, lnurl)
}

/// `GET /lnurl/{mode}/auth?tag=login&k1=…&sig=…&key=…`: verifies and links the key.
pub async fn auth(
    State(state): State<AppState>,
    Path(mode): Path<String>,
    Query(query): Query<AuthQuery>,
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
    let secret = open_secret(secret, "auth", wall_clock_ns())?;
    let linking =
        proto::verify_auth(&k1, &sig, &key).map_err(|error| LnurlError::bad(error.to_string()))?;
    let merchant = secret.merchant;
    let linking_key = linking.as_str().to_owned();
    if merchant == crate::dashboard::LNURL_LOGIN_MERCHANT {
        // A dashboard sign-in: the key is only recorded; the page asks which merchant it owns.
        state
            .store(mode)
            .run(move |tx| -> Result<(), LnurlError> {
                let now = tx.now_ns();
                open_secret(tx.lnurl_secret(&k1_bytes)?, "auth", now)?;
                if !tx.use_lnurl_secret(&k1_bytes, &linking_key, now)? {
                    return Err(LnurlError::new(
                        StatusCode::CONFLICT,
                        "this LNURL-auth challenge was already used",
                    ));
                }
                Ok(())
            })
            .await
            .map_err(ApiError::from)??;
        return ok_json(proto::status_ok());
    }
    let created = state
        .store(mode)
        .run(move |tx| -> Result<bool, LnurlError> {
            let now = tx.now_ns();
            open_secret(tx.lnurl_secret(&k1_bytes)?, "auth", now)?;
            if !tx.use_lnurl_secret(&k1_bytes, &linking_key, now)? {
                return Err(LnurlError::new(
                    StatusCode::CONFLICT,
                    "this LNURL-auth challenge was already used",
                ));
            }
            if tx.lnurl_identity(merchant, &linking_key)?.is_some() {
                return Ok(false);
            }
            let customer = Customer {
                id: new_id(),
                merchant,
                external_id: Some(format!("lnurl:{linking_key}")),
                metadata: vec![("created_for".to_owned(), "lnurl_auth".to_owned())],
                created_at_ns: now,
            };
            tx.insert_customer(&customer)?;
            tx.insert_lnurl_identity(merchant, &linking_key, customer.id, now)?;
            emit(
                tx,
                merchant,
                mode,
                "customer.created",
                render::customer(&customer, mode, &[]),
            )?;
            Ok(true)
        })
        .await
        .map_err(ApiError::from)??;
    if created {
        state.deliveries().notify_one();
    }
    ok_json(proto::status_ok())
}

/// Makes an LNURL-auth challenge valid for `expires_in_s`.
pub fn new_auth_secret(
    merchant: MerchantId,
    action: &str,
    expires_in_s: u64,
) -> Result<LnurlSecret, ApiError> {
    let mut k1 = [0u8; 32];
    getrandom::fill(&mut k1).map_err(ApiError::internal)?;
    let now = wall_clock_ns();
    Ok(LnurlSecret {
        k1,
        kind: "auth".to_owned(),
        merchant,
        customer: None,
        min_msat: 0,
        max_msat: 0,
        description: action.to_owned(),
        expires_at_ns: now.saturating_add(expires_in_s.saturating_mul(1_000_000_000)),
        used_at_ns: None,
        result: None,
        created_at_ns: now,
    })
}

/// Hex of a k1 (the public id of LNURL objects).
pub fn k1_hex(k1: &[u8; 32]) -> String {
    hex(k1)
}

/// Parses the hex id of an LNURL object.
pub fn k1_from_hex(text: &str) -> Option<[u8; 32]> {
    parse_k1(text)
}
