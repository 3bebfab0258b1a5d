//! Settlement of rail payments: the one function every rail calls when it learns that money
//! arrived — Telegram Stars `successful_payment`, a settled Lightning invoice, a confirmed TON
//! transaction (SPEC P1, RL2–RL4).
//!
//! [`settle_payment`] runs inside a store job. It is idempotent by the rail's own payment id
//! (SPEC P3: Telegram charge id, Lightning payment hash, TON transaction hash), and it never
//! loses money (SPEC I3): `farthing_core::invoice::Invoice::settle` splits what arrived between
//! paying the invoice and crediting the payer's balance, and both parts are booked on the
//! ledger, from the rail's `external` account, in the same transaction as the invoice's new
//! status, the events and the `rail_payments` row that records the split.
//!
//! Why a second booking is impossible:
//! - the `rail_payments` row, keyed by `(merchant, rail, external_id)`, is looked up first: a
//!   report already settled returns the stored result (`duplicate: true`) and changes nothing,
//!   or is refused when its money differs;
//! - the paying transfer's id is the invoice id, so the ledger itself refuses to pay one
//!   invoice twice (if it ever does, that part is credited as `already_paid` instead);
//! - the credit transfer's id is derived from `(merchant, rail, external_id)`
//!   ([`credit_transfer_id`]).
//!
//! Why nothing is ever dropped: every booking is on the merchant's own accounts (SPEC L1), and
//! when the ledger still refuses one (a balance would exceed what farthing stores), the whole
//! payment is booked from the rail's external account to the merchant's suspense account for
//! the rail instead, recorded with the reason, announced (`rail_payment.suspended`), counted
//! (`farthing_rail_payments_suspended_total`) and listed by `farthing audit` until an
//! operator resolves it. A report is refused outright only when it cannot be real (more than
//! the rail's published maximum for one payment) or contradicts a settled one.

use farthing_core::invoice::{CreditReason, Invoice, InvoicePayment, Settlement};
use farthing_core::ledger::{GroupError, Outcome, TransferError};
use farthing_core::money::MAX_AMOUNT_MINOR;
use farthing_core::{Currency, CustomerId, InvoiceId, MerchantId, PublicId, Rail, TransferId};
use farthing_store::{RailPayment, Tx};
use serde_json::{json, Value};

use crate::customers::{self, emit_balance_changed};
use crate::outbox::emit;
use crate::{book, wire, AppError, Mode};

/// Longest rail payment id, in characters (a TON transaction hash in base64 is 44, a Lightning
/// payment hash in hex 64, a Telegram charge id well under 100).
pub const MAX_EXTERNAL_ID_CHARS: usize = 200;
/// Longest payer reference (`payer_external_id`), in characters: the customers API's limit.
pub const MAX_PAYER_EXTERNAL_ID_CHARS: usize = 200;
/// Largest rail payload, in bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024;

/// The event written when (part of) a rail payment is credited to the payer's balance.
pub const PAYMENT_CREDITED: &str = "invoice.payment_credited";

/// The event written when a rail payment could not be booked where it belongs and is held in
/// the merchant's suspense account.
pub const PAYMENT_SUSPENDED: &str = "rail_payment.suspended";

/// Rail payments held in suspense by this process (a Prometheus counter).
static SUSPENDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Rail reports refused by this process (a Prometheus counter).
static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many rail payments this process has put in suspense.
pub fn suspended_total() -> u64 {
    SUSPENDED.load(std::sync::atomic::Ordering::Relaxed)
}

/// How many rail reports this process has refused (bad, impossible, or contradicting a
/// settled payment).
pub fn refused_total() -> u64 {
    REFUSED.load(std::sync::atomic::Ordering::Relaxed)
}

fn refused(error: AppError) -> AppError {
    REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    error
}

/// Why a settlement could not book as usual.
enum Failure {
    /// The report itself is refused (bad, or contradicting a settled one): nothing is booked.
    Refused(AppError),
    /// The ledger refused a booking: the money goes to suspense instead.
    Ledger(String),
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        Failure::Refused(error)
    }
}

impl From<farthing_store::StoreError> for Failure {
    fn from(error: farthing_store::StoreError) -> Self {
        Failure::Refused(AppError::from(error))
    }
}

/// A payment a rail reports, as the rail's adapter hands it over after verifying it.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingPayment {
    /// Whose money it is.
    pub merchant: MerchantId,
    /// The rail that brought it (not `balance`; `sandbox` in test mode only).
    pub rail: Rail,
    /// The rail's own payment id: Telegram `telegram_payment_charge_id`, Lightning payment
    /// hash, TON transaction hash. 1 to [`MAX_EXTERNAL_ID_CHARS`] characters.
    pub external_id: String,
    /// The invoice the payment names, if any.
    pub invoice: Option<InvoiceId>,
    /// The paying customer, when the rail adapter knows it.
    pub payer: Option<CustomerId>,
    /// The payer's reference with the merchant (e.g. `"tg:12345"`): used to find or create
    /// the merchant's customer when a credit is needed and `payer` is `None`.
    pub payer_external_id: Option<String>,
    /// Currency of the amount.
    pub currency: Currency,
    /// What arrived, in minor units (1 to `MAX_AMOUNT_MINOR`).
    pub amount_minor: u64,
    /// Rail-specific data to keep with the payment (e.g. Telegram's charge ids); at most
    /// [`MAX_PAYLOAD_BYTES`] of JSON.
    pub payload: Option<Value>,
}

/// The result of a settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledPayment {
    /// The stored record: how the payment was split.
    pub payment: RailPayment,
    /// The invoice after the settlement (`None` when the payment named none, or one the
    /// merchant does not have).
    pub invoice: Option<Invoice>,
    /// `true` when this payment had been settled before: nothing changed now.
    pub duplicate: bool,
}

/// Settles a payment that a rail reports, inside the caller's store job.
///
/// - A payment already settled (same `rail` and `external_id`) returns the stored result with
///   `duplicate: true` and changes nothing; if its merchant, invoice, currency, amount or
///   payer differ from the stored ones it is refused (`409 rail_payment_mismatch`).
/// - Otherwise the invoice (if the merchant has it) decides the split
///   (`Invoice::settle`): the paying part goes `external/{rail}` → merchant balance and marks
///   the invoice paid (`invoice.paid`); the rest goes `external/{rail}` → the payer's balance
///   (`customer.balance_changed` and `invoice.payment_credited`). A payment naming no invoice
///   but a payer (`payer` or `payer_external_id`) is a top-up (`top_up`); any other payment naming no invoice
///   known to the merchant is credited whole (`unknown_invoice`).
/// - A top-up invoice (metadata `purpose=top_up`, made by the bot's `/balance` buttons) is
///   paid like any other, and in the same job its paying part moves on from the merchant's
///   balance to the payer's (transfer id derived from the invoice id: [`top_up_transfer_id`]),
///   so the merchant keeps nothing of it and a resent report credits nothing twice.
/// - The payer for a credit is `payer`, else the customer with `payer_external_id` (created
///   if needed), else the invoice's customer, else a new customer with no external id (the
///   money is never refused for want of a payer: the merchant can refund it from there).
///
/// `checkout_base` is the server's public base URL (`Config::base_url`), for the invoice's
/// `checkout_url` in events. Everything happens in a nested savepoint: on `Err` nothing of it
/// stays, even if the caller's job goes on. After the job commits, the caller should wake the
/// webhook worker (`AppState::deliveries().notify_one()`).
pub fn settle_payment(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    payment: IncomingPayment,
    checkout_base: &str,
) -> Result<SettledPayment, AppError> {
    let payload = check(&payment, mode).map_err(refused)?;
    let attempt =
        tx.nested(|tx| settle_checked(tx, mode, &payment, payload.clone(), checkout_base))?;
    match attempt {
        Ok(settled) => Ok(settled),
        Err(Failure::Refused(error)) if error.is_refusal() => Err(refused(error)),
        Err(Failure::Refused(error)) => Err(error),
        Err(Failure::Ledger(reason)) => {
            tx.nested(|tx| suspend(tx, mode, &payment, payload, reason))?
        }
    }
}

/// The deterministic id of the credit transfer of the merchant's rail payment
/// `(rail, external_id)`.
pub fn credit_transfer_id(merchant: MerchantId, rail: Rail, external_id: &str) -> TransferId {
    TransferId::derived(
        "farthing/rail-payment-credit/v2",
        &[
            &merchant.to_be_bytes(),
            rail.as_str().as_bytes(),
            external_id.as_bytes(),
        ],
    )
}

/// The deterministic id of the transfer that holds a rail payment in suspense.
pub fn suspense_transfer_id(merchant: MerchantId, rail: Rail, external_id: &str) -> TransferId {
    TransferId::derived(
        "farthing/rail-payment-suspense/v1",
        &[
            &merchant.to_be_bytes(),
            rail.as_str().as_bytes(),
            external_id.as_bytes(),
        ],
    )
}

/// The ledger refused to book a rail payment where it belongs: it is booked whole from the
/// rail's external account to the merchant's suspense account, recorded with the reason, and
/// announced. Nothing else changes (the invoice stays as it was). Fails only when the database
/// fails — then the caller must answer the rail "not handled" so that it reports again.
fn suspend(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    payment: &IncomingPayment,
    payload: Option<String>,
    reason: String,
) -> Result<SettledPayment, AppError> {
    let merchant = payment.merchant;
    let group = book::transfer(
        suspense_transfer_id(merchant, payment.rail, &payment.external_id),
        book::rail(merchant, payment.rail, payment.currency),
        book::suspense(merchant, payment.rail, payment.currency),
        payment.amount_minor,
        book::SUSPENSE,
        payment.invoice.map_or(0, InvoiceId::raw),
    );
    tx.apply(&group)?.map_err(|error| {
        AppError::internal(format!(
            "a {} payment could not even be held in suspense: {error}",
            payment.rail
        ))
    })?;
    let record = RailPayment {
        rail: payment.rail,
        external_id: payment.external_id.clone(),
        merchant,
        invoice: payment.invoice,
        customer: payment.payer,
        currency: payment.currency,
        amount_minor: payment.amount_minor,
        paid_minor: 0,
        credited_minor: 0,
        credit_reason: None,
        payload,
        created_at_ns: tx.now_ns(),
        suspended_minor: payment.amount_minor,
        suspense_reason: Some(reason.clone()),
    };
    tx.insert_rail_payment(&record)?;
    emit(
        tx,
        merchant,
        mode,
        PAYMENT_SUSPENDED,
        &render_rail_payment(&record, mode),
    )?;
    SUSPENDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::error!(
        merchant = %merchant.encode(),
        rail = %payment.rail,
        external_id = %payment.external_id,
        amount_minor = payment.amount_minor,
        currency = %payment.currency,
        %reason,
        "a rail payment could not be booked where it belongs and is held in suspense; `farthing audit` lists it"
    );
    let invoice = load_invoice(tx, merchant, payment.invoice)?;
    Ok(SettledPayment {
        payment: record,
        invoice,
        duplicate: false,
    })
}

/// The wire form of a rail payment: the object of `invoice.payment_credited`.
pub fn render_rail_payment(payment: &RailPayment, mode: Mode) -> Value {
    json!({
        "object": "rail_payment",
        "livemode": mode.is_live(),
        "rail": payment.rail.as_str(),
        "external_id": payment.external_id,
        "invoice": payment.invoice.map(PublicId::encode),
        "customer": payment.customer.map(PublicId::encode),
        "currency": payment.currency.code(),
        "amount": payment.amount_minor,
        "amount_paid": payment.paid_minor,
        "amount_credited": payment.credited_minor,
        "credit_reason": payment.credit_reason.map(CreditReason::as_str),
        "amount_suspended": payment.suspended_minor,
        "suspense_reason": payment.suspense_reason,
        "created": wire::unix_s(payment.created_at_ns),
    })
}

fn invalid(param: &str, message: String) -> AppError {
    AppError::invalid("invalid_rail_payment", message).param(param)
}

/// Checks what does not need the database; returns the payload as JSON text.
fn check(payment: &IncomingPayment, mode: Mode) -> Result<Option<String>, AppError> {
    match payment.rail {
        Rail::Balance => {
            return Err(invalid(
                "rail",
                "the balance rail moves money inside the ledger; settle_payment is for money \
                 arriving on an outside rail (stars, card, lightning, ton)"
                    .to_owned(),
            ))
        }
        Rail::Sandbox if mode.is_live() => {
            return Err(invalid(
                "rail",
                "the sandbox rail exists in test mode only: settle sandbox payments in the test \
                 store"
                    .to_owned(),
            ))
        }
        _ => {}
    }
    let chars = payment.external_id.chars().count();
    if chars == 0
        || chars > MAX_EXTERNAL_ID_CHARS
        || payment.external_id.trim() != payment.external_id
    {
        return Err(invalid(
            "external_id",
            format!(
                "external_id must be the rail's payment id: 1 to {MAX_EXTERNAL_ID_CHARS} \
                 characters without surrounding spaces"
            ),
        ));
    }
    if let Some(payer) = &payment.payer_external_id {
        let chars = payer.chars().count();
        if chars == 0 || chars > MAX_PAYER_EXTERNAL_ID_CHARS {
            return Err(invalid(
                "payer_external_id",
                format!(
                    "payer_external_id must be 1 to {MAX_PAYER_EXTERNAL_ID_CHARS} characters, \
                     e.g. \"tg:12345\""
                ),
            ));
        }
    }
    if payment.amount_minor == 0 || payment.amount_minor > MAX_AMOUNT_MINOR {
        return Err(invalid(
            "amount_minor",
            format!(
                "amount_minor must be between 1 and {MAX_AMOUNT_MINOR} minor units of {}",
                payment.currency
            ),
        ));
    }
    // More than the rail's published maximum for one payment cannot be a real report (e.g. a
    // forged `successful_payment` on a merchant's own bot): refused at the edge.
    if let Some(max) = payment.rail.max_payment_minor(payment.currency) {
        if payment.amount_minor > max {
            return Err(invalid(
                "amount_minor",
                format!(
                    "{} {} is more than one {} payment can carry ({max}): the rail cannot have reported it",
                    payment.amount_minor, payment.currency, payment.rail
                ),
            ));
        }
    }
    let payload = payment.payload.as_ref().map(Value::to_string);
    if payload
        .as_ref()
        .is_some_and(|text| text.len() > MAX_PAYLOAD_BYTES)
    {
        return Err(invalid(
            "payload",
            format!("payload must be at most {MAX_PAYLOAD_BYTES} bytes of JSON: keep only the rail's ids"),
        ));
    }
    Ok(payload)
}

fn settle_checked(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    payment: &IncomingPayment,
    payload: Option<String>,
    checkout_base: &str,
) -> Result<SettledPayment, Failure> {
    let merchant = payment.merchant;
    if let Some(existing) = tx.rail_payment(merchant, payment.rail, &payment.external_id)? {
        refuse_if_different(tx, &existing, payment)?;
        let invoice = load_invoice(tx, merchant, existing.invoice)?;
        return Ok(SettledPayment {
            payment: existing,
            invoice,
            duplicate: true,
        });
    }

    let now_ns = tx.now_ns();
    let mut invoice = load_invoice(tx, merchant, payment.invoice)?;
    // The payer, as far as it is known without creating anyone.
    let mut customer = match payment.payer {
        Some(payer) => Some(customers::require(tx, merchant, payer)?.id),
        None => match &payment.payer_external_id {
            Some(external) => tx
                .customer_by_external_id(merchant, external)?
                .map(|c| c.id),
            None => None,
        },
    };
    let Settlement { pays_minor, credit } = match &invoice {
        Some(invoice) => {
            invoice.settle(payment.rail, payment.currency, payment.amount_minor, now_ns)
        }
        // No invoice named, but a payer: a top-up of the payer's balance.
        None if payment.invoice.is_none()
            && (payment.payer.is_some() || payment.payer_external_id.is_some()) =>
        {
            Settlement {
                pays_minor: 0,
                credit: Some((payment.amount_minor, CreditReason::TopUp)),
            }
        }
        None => Settlement {
            pays_minor: 0,
            credit: Some((payment.amount_minor, CreditReason::UnknownInvoice)),
        },
    };
    let (mut credit_minor, mut reason) = match credit {
        Some((amount, reason)) => (amount, Some(reason)),
        None => (0, None),
    };
    let total = pays_minor.checked_add(credit_minor);
    if total != Some(payment.amount_minor) {
        return Err(Failure::Ledger(format!(
            "the invoice rule split {} into {pays_minor} + {credit_minor}",
            payment.amount_minor
        )));
    }
    let external = book::rail(merchant, payment.rail, payment.currency);

    // The paying part: its transfer id is the invoice id, so one invoice is paid once.
    let mut paid_minor = 0;
    let mut paid_invoice = None;
    if let (Some(found), true) = (invoice.as_mut(), pays_minor > 0) {
        let transfer_id = TransferId(found.id.raw());
        let group = book::transfer(
            transfer_id,
            external,
            book::merchant(merchant, payment.currency),
            pays_minor,
            book::PAYMENT,
            found.id.raw(),
        );
        match tx.apply(&group)? {
            Ok(outcome)
                if outcome.transfers.first().map(|t| t.outcome) == Some(Outcome::Created) =>
            {
                paid_minor = pays_minor;
                found
                    .mark_paid(InvoicePayment {
                        amount_minor: pays_minor,
                        rail: payment.rail,
                        customer: customer.or(found.customer),
                        transfer_id,
                        paid_at_ns: now_ns,
                    })
                    .map_err(|error| {
                        Failure::Ledger(format!(
                            "invoice {} could not be marked paid after settling: {error}",
                            found.id.encode()
                        ))
                    })?;
                tx.update_invoice(found)?;
                paid_invoice = Some(found.clone());
                if is_top_up(found) {
                    credit_top_up(tx, mode, found, customer.or(found.customer), pays_minor)?;
                }
            }
            // The ledger already holds a payment of this invoice: this money did not pay it,
            // so it is credited like any payment of a paid invoice.
            Ok(_)
            | Err(GroupError::Transfer {
                error:
                    TransferError::ExistsWithDifferentKind(_)
                    | TransferError::ExistsWithDifferentDebitAccount
                    | TransferError::ExistsWithDifferentCreditAccount
                    | TransferError::ExistsWithDifferentCurrency
                    | TransferError::ExistsWithDifferentAmount { .. }
                    | TransferError::ExistsWithDifferentPendingId
                    | TransferError::ExistsWithDifferentTimeout
                    | TransferError::ExistsWithDifferentCode
                    | TransferError::ExistsWithDifferentReference,
                ..
            }) => {
                tracing::warn!(
                    invoice = %found.id.encode(),
                    rail = %payment.rail,
                    external_id = %payment.external_id,
                    "the ledger already holds this invoice's payment; crediting the payer instead"
                );
                credit_minor = payment.amount_minor;
                reason = Some(CreditReason::AlreadyPaid);
            }
            Err(error) => {
                return Err(Failure::Ledger(ledger_refusal(
                    &error,
                    "paying the invoice",
                )))
            }
        }
    }

    // The credited part: to the payer's balance, with an id derived from the rail payment.
    if credit_minor > 0 {
        let payer = match customer {
            Some(payer) => payer,
            None => credit_customer(tx, mode, payment, invoice.as_ref())?,
        };
        customer = Some(payer);
        let group = book::transfer(
            credit_transfer_id(merchant, payment.rail, &payment.external_id),
            external,
            book::customer(merchant, payer, payment.currency),
            credit_minor,
            book::TOP_UP,
            payment.invoice.map_or(0, InvoiceId::raw),
        );
        tx.apply(&group)?
            .map_err(|error| Failure::Ledger(ledger_refusal(&error, "crediting the payer")))?;
    }

    let record = RailPayment {
        rail: payment.rail,
        external_id: payment.external_id.clone(),
        merchant,
        invoice: payment.invoice,
        customer,
        currency: payment.currency,
        amount_minor: payment.amount_minor,
        paid_minor,
        credited_minor: credit_minor,
        credit_reason: reason.filter(|_| credit_minor > 0),
        payload,
        created_at_ns: now_ns,
        suspended_minor: 0,
        suspense_reason: None,
    };
    if let Some(paid) = &paid_invoice {
        let url = format!(
            "{}/pay/{}",
            checkout_base.trim_end_matches('/'),
            paid.id.encode()
        );
        emit(
            tx,
            merchant,
            mode,
            "invoice.paid",
            &wire::invoice(paid, mode, &url),
        )?;
    }
    if let (Some(payer), true) = (customer, credit_minor > 0) {
        emit_balance_changed(tx, merchant, mode, payer, payment.currency)?;
        emit(
            tx,
            merchant,
            mode,
            PAYMENT_CREDITED,
            &render_rail_payment(&record, mode),
        )?;
    }
    tx.insert_rail_payment(&record)?;
    Ok(SettledPayment {
        payment: record,
        invoice,
        duplicate: false,
    })
}

/// Why the ledger refused a settlement's booking, for the suspense record.
fn ledger_refusal(error: &GroupError, what: &str) -> String {
    let detail = match error {
        GroupError::Transfer { error, .. } => error.to_string(),
        other => other.to_string(),
    };
    format!("{what}: {detail}")
}

/// The metadata an invoice carries when paying it tops up the payer's balance (the bot's
/// `/balance` buttons make such invoices).
pub const TOP_UP_METADATA: (&str, &str) = ("purpose", "top_up");

/// Whether paying `invoice` is a top-up of the payer's balance.
pub fn is_top_up(invoice: &Invoice) -> bool {
    invoice
        .metadata
        .iter()
        .any(|(key, value)| key == TOP_UP_METADATA.0 && value == TOP_UP_METADATA.1)
}

/// The id of the transfer that moves a paid top-up invoice's money from the merchant to the
/// payer: derived from the invoice id, so one invoice tops up once.
pub fn top_up_transfer_id(invoice: InvoiceId) -> TransferId {
    // The v1 form (kept: ids already on ledgers were made this way): SHA-256 of the tag with
    // its NUL and the id's bytes.
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"farthing/top-up-invoice/v1\0")
        .chain_update(invoice.raw().to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    for (to, from) in bytes.iter_mut().zip(digest.iter()) {
        *to = *from;
    }
    TransferId(u128::from_be_bytes(bytes).max(1))
}

/// A top-up invoice was just paid to the merchant: in the same job, its money goes on from the
/// merchant's balance to the payer's (a second transfer, so the invoice is paid like any other
/// and the ledger shows both steps). Without a known payer the money stays with the merchant.
fn credit_top_up(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    invoice: &Invoice,
    payer: Option<CustomerId>,
    amount_minor: u64,
) -> Result<(), Failure> {
    let Some(payer) = payer else {
        tracing::warn!(invoice = %invoice.id.encode(), "a top-up invoice was paid by an unknown payer; the money stays with the merchant");
        return Ok(());
    };
    let group = book::transfer(
        top_up_transfer_id(invoice.id),
        book::merchant(invoice.merchant, invoice.currency),
        book::customer(invoice.merchant, payer, invoice.currency),
        amount_minor,
        book::TOP_UP,
        invoice.id.raw(),
    );
    tx.apply(&group)?
        .map_err(|error| Failure::Ledger(ledger_refusal(&error, "topping up the payer")))?;
    Ok(emit_balance_changed(
        tx,
        invoice.merchant,
        mode,
        payer,
        invoice.currency,
    )?)
}

/// The merchant's invoice `id`, if it has one (another merchant's invoice is not found).
fn load_invoice(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    id: Option<InvoiceId>,
) -> Result<Option<Invoice>, AppError> {
    let Some(id) = id else { return Ok(None) };
    Ok(tx
        .invoice(id)?
        .filter(|invoice| invoice.merchant == merchant))
}

/// Who gets a credit when the payer is not known yet: the customer with `payer_external_id`
/// (created now), else the invoice's customer, else a new customer without an external id.
fn credit_customer(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    payment: &IncomingPayment,
    invoice: Option<&Invoice>,
) -> Result<CustomerId, AppError> {
    if payment.payer_external_id.is_none() {
        if let Some(customer) = invoice.and_then(|invoice| invoice.customer) {
            return Ok(customer);
        }
    }
    let metadata = match &payment.payer_external_id {
        Some(_) => Vec::new(),
        None => vec![
            ("created_for".to_owned(), "rail_payment".to_owned()),
            ("rail".to_owned(), payment.rail.as_str().to_owned()),
            ("rail_payment_id".to_owned(), payment.external_id.clone()),
        ],
    };
    let customer = customers::insert(
        tx,
        payment.merchant,
        mode,
        payment.payer_external_id.clone(),
        metadata,
    )?;
    Ok(customer.id)
}

/// Refuses a second report of a settled payment whose money differs from the first.
fn refuse_if_different(
    tx: &mut Tx<'_, '_>,
    existing: &RailPayment,
    payment: &IncomingPayment,
) -> Result<(), Failure> {
    let show = |id: Option<InvoiceId>| id.map_or_else(|| "none".to_owned(), |id| id.encode());
    let mut differences = Vec::new();
    if existing.merchant != payment.merchant {
        differences.push(format!(
            "merchant (settled for {}, reported for {})",
            existing.merchant.encode(),
            payment.merchant.encode()
        ));
    }
    if existing.invoice != payment.invoice {
        differences.push(format!(
            "invoice (settled {}, reported {})",
            show(existing.invoice),
            show(payment.invoice)
        ));
    }
    if existing.currency != payment.currency {
        differences.push(format!(
            "currency (settled {}, reported {})",
            existing.currency, payment.currency
        ));
    }
    if existing.amount_minor != payment.amount_minor {
        differences.push(format!(
            "amount_minor (settled {}, reported {})",
            existing.amount_minor, payment.amount_minor
        ));
    }
    if let (Some(settled), Some(reported)) = (existing.customer, payment.payer) {
        if settled != reported {
            differences.push(format!(
                "payer (settled {}, reported {})",
                settled.encode(),
                reported.encode()
            ));
        }
    }
    if let (Some(settled), Some(reported)) = (existing.customer, &payment.payer_external_id) {
        let known = tx.customer(settled)?.and_then(|c| c.external_id);
        if let Some(known) = known.filter(|known| known != reported) {
            differences.push(format!(
                "payer_external_id (settled {known:?}, reported {reported:?})"
            ));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(Failure::Refused(AppError::conflict(
        "rail_payment_mismatch",
        format!(
            "{} payment {:?} was already settled and this report differs in {}: a rail payment \
             id names one payment forever, so the settled one stands; check the rail adapter",
            existing.rail,
            existing.external_id,
            differences.join(", ")
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_transfer_ids_are_stable_and_distinct() {
        let m = MerchantId(1);
        let a = credit_transfer_id(m, Rail::Stars, "charge-1");
        assert_eq!(a, credit_transfer_id(m, Rail::Stars, "charge-1"));
        assert_ne!(a, credit_transfer_id(m, Rail::Ton, "charge-1"));
        assert_ne!(a, credit_transfer_id(m, Rail::Stars, "charge-2"));
        // Another merchant's payment with the same id is another credit.
        assert_ne!(
            a,
            credit_transfer_id(MerchantId(2), Rail::Stars, "charge-1")
        );
        assert_ne!(a, suspense_transfer_id(m, Rail::Stars, "charge-1"));
        assert!(!a.is_zero());
    }

    fn incoming() -> IncomingPayment {
        IncomingPayment {
            merchant: MerchantId(1),
            rail: Rail::Stars,
            external_id: "charge".to_owned(),
            invoice: None,
            payer: None,
            payer_external_id: None,
            currency: Currency::XTR,
            amount_minor: 5,
            payload: None,
        }
    }

    #[test]
    fn bad_reports_are_refused_before_anything_is_read() {
        assert!(check(&incoming(), Mode::Live).is_ok());
        let refused = |change: fn(&mut IncomingPayment), mode: Mode| {
            let mut payment = incoming();
            change(&mut payment);
            check(&payment, mode)
                .expect_err("refused")
                .param_name()
                .map(str::to_owned)
        };
        let param = |p: &str| Some(p.to_owned());
        assert_eq!(
            refused(|p| p.rail = Rail::Balance, Mode::Test),
            param("rail")
        );
        assert_eq!(
            refused(|p| p.rail = Rail::Sandbox, Mode::Live),
            param("rail")
        );
        assert!(check(
            &IncomingPayment {
                rail: Rail::Sandbox,
                ..incoming()
            },
            Mode::Test
        )
        .is_ok());
        assert_eq!(
            refused(|p| p.external_id.clear(), Mode::Live),
            param("external_id")
        );
        assert_eq!(
            refused(|p| p.external_id = "x".repeat(201), Mode::Live),
            param("external_id")
        );
        assert_eq!(
            refused(|p| p.external_id = " x".to_owned(), Mode::Live),
            param("external_id")
        );
        assert_eq!(
            refused(|p| p.payer_external_id = Some(String::new()), Mode::Live),
            param("payer_external_id")
        );
        assert_eq!(
            refused(|p| p.amount_minor = 0, Mode::Live),
            param("amount_minor")
        );
        assert_eq!(
            refused(|p| p.amount_minor = u64::MAX, Mode::Live),
            param("amount_minor")
        );
        assert_eq!(
            refused(
                |p| p.payload = Some(Value::String("x".repeat(MAX_PAYLOAD_BYTES))),
                Mode::Live
            ),
            param("payload")
        );
    }
}
