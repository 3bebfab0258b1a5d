//! LNURL on the Lightning rail (SPEC RL3): the links (LUD-01), the payouts LNURL-withdraw and
//! the merchant's `POST /v1/payouts` start (a hold on the ledger, the payment, then the hold
//! posted or voided), and the single-use secrets of withdraw links and auth challenges. The
//! public endpoints wallets call are the HTTP layer's (`http/lnurl.rs`).

use farthing_app::outbox::emit;
use farthing_app::{App, AppError, Mode};
use farthing_core::{Currency, CustomerId, MerchantId, PublicId, Rail};
use farthing_lightning::lnurl as proto;
use farthing_lightning::{LightningBackend, PaymentHash, PaymentOutcome};
use farthing_store::{LnurlSecret, Tx};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Node, MSAT_PER_SAT};

/// The merchant id LNURL-auth challenges made for a dashboard sign-in are stored under: the
/// merchant is known only once the wallet has signed (by its linking key).
pub const LNURL_LOGIN_MERCHANT: MerchantId = MerchantId(0);

/// Routing fee allowed on a payout: 1 % plus 10 sat.
pub fn max_fee_msat(amount_msat: u64) -> u64 {
    amount_msat / 100 + 10_000
}

/// `live` or `test` in an LNURL path.
pub fn mode_segment(mode: Mode) -> &'static str {
    if mode.is_live() {
        "live"
    } else {
        "test"
    }
}

/// The top-up link of a customer (`/lnurl/{mode}/topup/{customer}`), as URL and LNURL.
pub fn top_up_link(base_url: &str, mode: Mode, customer: CustomerId) -> (String, String) {
    let url = format!(
        "{}/lnurl/{}/topup/{}",
        base_url,
        mode_segment(mode),
        customer.encode()
    );
    let lnurl = proto::encode(&url);
    (url, lnurl)
}

pub fn parse_k1(text: &str) -> Option<[u8; 32]> {
    PaymentHash::from_hex(text).map(|hash| hash.0)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The URL and LNURL of a withdraw link.
pub fn withdraw_link(base_url: &str, mode: Mode, k1: &[u8; 32]) -> (String, String) {
    let url = format!(
        "{}/lnurl/{}/withdraw/{}",
        base_url,
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

/// The ledger ids of a payout's hold and its resolution (the service's derivation).
pub use farthing_app::payouts::transfer_id as payout_transfer_id;

/// Holds `sats` from the payout source (the customer's BTC balance, or the merchant's) on the
/// ledger. Refuses with `insufficient_funds` when the balance is short, and with `payout_exists`
/// when this payout (same link or BOLT11, same payment hash) was held before.
pub fn hold(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    merchant: MerchantId,
    customer: Option<CustomerId>,
    key: &[u8; 32],
    sats: u64,
) -> Result<(), AppError> {
    farthing_app::payouts::hold(
        tx,
        mode,
        &farthing_app::payouts::Hold {
            merchant,
            customer,
            rail: Rail::Lightning,
            currency: Currency::BTC,
            key: *key,
            amount_minor: sats,
            code: farthing_app::book::PAYOUT,
        },
    )
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
    app: &App,
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
    let booked = app
        .run(mode, move |tx| -> Result<(), AppError> {
            farthing_app::payouts::resolve(tx, &key, post, farthing_app::book::PAYOUT)?;
            if let (false, Some(link)) = (post, link) {
                tx.release_lnurl_secret(&link)?;
            }
            if let Some(customer) = customer {
                farthing_app::customers::emit_balance_changed(
                    tx,
                    merchant,
                    mode,
                    customer,
                    Currency::BTC,
                )?;
            }
            emit(tx, merchant, mode, event, &object)?;
            Ok(())
        })
        .await;
    if let Err(error) = booked {
        tracing::error!(code = error.code(), %error, payout = %hex(&key), "a Lightning payout's outcome could not be booked");
    }
    outcome
}

/// Makes an LNURL-withdraw link paying up to `max_sats` from `customer`'s balance (or the
/// merchant's when `None`). Returns the stored secret.
pub fn new_withdraw_secret(
    now: u64,
    merchant: MerchantId,
    customer: Option<CustomerId>,
    min_sats: u64,
    max_sats: u64,
    description: String,
    expires_in_s: u64,
) -> Result<LnurlSecret, AppError> {
    let mut k1 = [0u8; 32];
    getrandom::fill(&mut k1).map_err(AppError::internal)?;
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

/// The URL and LNURL of an auth challenge.
pub fn auth_link(base_url: &str, mode: Mode, k1: &[u8; 32], action: &str) -> (String, String) {
    let base = format!("{}/lnurl/{}/auth", base_url, mode_segment(mode));
    let url = proto::auth_url(&base, &hex(k1), Some(action));
    let lnurl = proto::encode(&url);
    (url, lnurl)
}

/// Makes an LNURL-auth challenge valid for `expires_in_s`.
/// What an owner challenge (`POST /v1/dashboard/owners/lnurl`) holds where other LNURL-auth
/// challenges hold their LUD-04 action: its callback adds the signing key to the merchant's
/// dashboard owners.
pub const OWNER_CHALLENGE: &str = "dashboard_owner";

/// A new single-use LNURL-auth challenge of `merchant`.
pub fn new_auth_secret(
    now: u64,
    merchant: MerchantId,
    action: &str,
    expires_in_s: u64,
) -> Result<LnurlSecret, AppError> {
    let mut k1 = [0u8; 32];
    getrandom::fill(&mut k1).map_err(AppError::internal)?;
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
