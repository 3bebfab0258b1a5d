//! Refunds: back to the customer's balance (of a paid invoice or a charge), or through the rail
//! that paid the invoice (SPEC L6: a refund is a new transfer). Never more than was paid.

use farthing_core::invoice::{InvoiceError, InvoiceStatus};
use farthing_core::{
    ChargeId, Currency, CustomerId, InvoiceId, MerchantId, PublicId, Rail, RefundId, TransferId,
};
use farthing_store::{Refund, RefundStatus, Tx};

use crate::invoices::invoice_error;
use crate::outbox::emit;
use crate::rail::{RailRefund, RailRefunded, RailSet};
use crate::{book, customers, wire, App, AppError, Mode};

/// Longest refund reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What is refunded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A paid invoice.
    Invoice(InvoiceId),
    /// A charge.
    Charge(ChargeId),
}

/// A refund to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// What is refunded.
    pub target: Target,
    /// How much, in minor units; `None` for everything not yet refunded.
    pub amount_minor: Option<u64>,
    /// Why, for the merchant's records.
    pub reason: Option<String>,
    /// The merchant's key/value data, kept on the refund (checked by the caller).
    pub metadata: Vec<(String, String)>,
}

impl RefundRequest {
    /// Checks what needs no database.
    pub fn check(&self) -> Result<(), AppError> {
        if self
            .reason
            .as_ref()
            .is_some_and(|reason| reason.chars().count() > MAX_REASON_CHARS)
        {
            return Err(AppError::invalid(
                "invalid_reason",
                format!("reason must be at most {MAX_REASON_CHARS} characters"),
            )
            .param("reason"));
        }
        Ok(())
    }
}

/// Who holds a refund to the balance of an invoice that was paid without a customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnnamedPayer {
    /// Refuse (`no_customer`).
    Refuse,
    /// Make a customer with these metadata to hold it (e.g. until an LNURL-withdraw link is
    /// claimed).
    HoldFor(Vec<(String, String)>),
}

fn invoice_not_found(invoice: InvoiceId) -> AppError {
    AppError::invalid(
        "invoice_not_found",
        format!("no such invoice: {:?}", invoice.encode()),
    )
    .param("invoice")
}

/// Refuses a second refund of an invoice while one waits for the merchant to send it (the
/// pending one would no longer fit when it is sent).
fn refuse_while_pending(tx: &mut Tx<'_, '_>, invoice: InvoiceId) -> Result<(), AppError> {
    match tx.pending_refund_of(invoice)? {
        Some(pending) => Err(AppError::conflict(
            "refund_pending",
            format!(
                "refund {} of this invoice waits for you to send it (its next_action says how); send it, or cancel it with POST /v1/refunds/{}/cancel, before refunding again",
                pending.id.encode(),
                pending.id.encode()
            ),
        )),
        None => Ok(()),
    }
}

/// Refunds to the customer's balance in the current job: merchant's balance → customer's
/// (transfer id = refund id), the invoice or charge marked, `refund.succeeded` and the
/// balance and invoice events written.
pub fn to_balance(
    tx: &mut Tx<'_, '_>,
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    request: &RefundRequest,
    unnamed: &UnnamedPayer,
) -> Result<Refund, AppError> {
    request.check()?;
    let id: RefundId = crate::ids::new_id();
    let now = tx.now_ns();
    let amount = request.amount_minor;
    let (customer, currency, amount_minor, invoice_id, charge_id) = match request.target {
        Target::Invoice(invoice_id) => {
            let mut invoice = tx
                .invoice(invoice_id)?
                .filter(|i| i.merchant == merchant)
                .ok_or_else(|| invoice_not_found(invoice_id))?;
            refuse_while_pending(tx, invoice_id)?;
            // Status first: an unpaid invoice has no payer to refund, whatever its customer.
            if !matches!(
                invoice.status,
                InvoiceStatus::Paid | InvoiceStatus::PartiallyRefunded
            ) {
                return Err(invoice_error(InvoiceError::NotPaid(invoice.status)).param("invoice"));
            }
            let amount_minor = amount.unwrap_or_else(|| invoice.refundable_minor());
            let known = crate::rail::refund_customer(&invoice);
            let customer = match (known, unnamed) {
                (Some(customer), _) => customer,
                (None, UnnamedPayer::HoldFor(metadata)) => {
                    let mut metadata = metadata.clone();
                    metadata.push(("invoice".to_owned(), invoice.id.encode()));
                    customers::insert(tx, merchant, mode, None, metadata)?.id
                }
                (None, UnnamedPayer::Refuse) => {
                    return Err(AppError::invalid(
                        "no_customer",
                        "this invoice was paid without a customer, so there is no balance to refund to; refund it through the rail that paid it (destination rail), or for a BTC invoice as an LNURL-withdraw link (destination lnurl_withdraw)",
                    )
                    .param("invoice"))
                }
            };
            invoice
                .apply_refund(amount_minor)
                .map_err(|e| invoice_error(e).param("amount"))?;
            tx.update_invoice(&invoice)?;
            let event = if invoice.refundable_minor() == 0 {
                "invoice.refunded"
            } else {
                "invoice.partially_refunded"
            };
            let object = wire::invoice(&invoice, mode, &app.checkout_url(invoice.id));
            emit(tx, merchant, mode, event, &object)?;
            (
                customer,
                invoice.currency,
                amount_minor,
                Some(invoice_id),
                None,
            )
        }
        Target::Charge(charge_id) => {
            let charge = tx
                .charge(charge_id)?
                .filter(|c| c.merchant == merchant)
                .ok_or_else(|| {
                    AppError::invalid(
                        "charge_not_found",
                        format!("no such charge: {:?}", charge_id.encode()),
                    )
                    .param("charge")
                })?;
            let refundable = charge.amount_minor - charge.refunded_minor.min(charge.amount_minor);
            let amount_minor = amount.unwrap_or(refundable);
            if amount_minor == 0 || amount_minor > refundable {
                return Err(AppError::invalid(
                    "refund_too_large",
                    format!("refund exceeds what is left to refund ({refundable} minor units)"),
                )
                .param("amount"));
            }
            tx.set_charge_refunded(charge_id, charge.refunded_minor + amount_minor)?;
            (
                charge.customer,
                charge.currency,
                amount_minor,
                None,
                Some(charge_id),
            )
        }
    };
    let group = book::transfer(
        TransferId(id.raw()),
        book::merchant(merchant, currency),
        book::customer(merchant, customer, currency),
        amount_minor,
        book::REFUND,
        id.raw(),
    );
    tx.apply(&group)?
        .map_err(|error| book::refusal(error, "the merchant", currency, amount_minor))?;
    let refund = Refund {
        id,
        merchant,
        invoice: invoice_id,
        charge: charge_id,
        customer,
        currency,
        amount_minor,
        reason: request.reason.clone(),
        metadata: request.metadata.clone(),
        created_at_ns: now,
        rail: None,
        status: RefundStatus::Succeeded,
        next_action: None,
    };
    tx.insert_refund(&refund)?;
    emit(
        tx,
        merchant,
        mode,
        "refund.succeeded",
        &wire::refund(&refund, mode),
    )?;
    customers::emit_balance_changed(tx, merchant, mode, customer, currency)?;
    Ok(refund)
}

/// A refund a rail has sent, to be booked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentThroughRail {
    /// The refund's id (the one the rail was given).
    pub refund: RefundId,
    /// The rail that sent it.
    pub rail: Rail,
    /// The invoice refunded.
    pub invoice: InvoiceId,
    /// What the rail did.
    pub sent: RailRefunded,
    /// Why, for the merchant's records.
    pub reason: Option<String>,
    /// The merchant's key/value data for the refund.
    pub metadata: Vec<(String, String)>,
}

/// Sends a refund of `invoice` back through the rail that paid it — before anything is booked
/// (a rail cannot take a refund back, so the checks come first: the invoice is paid, not partly
/// refunded, and the merchant's balance covers it). Book it with [`book_rail_refund`].
pub async fn send_through_rail(
    app: &App,
    rails: &impl RailSet,
    mode: Mode,
    merchant: MerchantId,
    request: RefundRequest,
) -> Result<SentThroughRail, AppError> {
    request.check()?;
    let RefundRequest {
        target,
        amount_minor,
        reason,
        metadata,
    } = request;
    let Target::Invoice(invoice_id) = target else {
        return Err(AppError::invalid(
            "invalid_refund",
            "only an invoice paid on a rail can be refunded to the rail; a charge is refunded to the balance",
        )
        .param("destination"));
    };
    let invoice = app
        .read(mode, move |reader| reader.invoice(invoice_id))?
        .filter(|i| i.merchant == merchant)
        .ok_or_else(|| invoice_not_found(invoice_id))?;
    if invoice.status != InvoiceStatus::Paid {
        let error = match invoice.status {
            InvoiceStatus::PartiallyRefunded => AppError::invalid(
                "refund_too_large",
                "this invoice was refunded in part before; a refund through the rail must be its first: refund the rest to the balance",
            ),
            status => invoice_error(InvoiceError::NotPaid(status)),
        };
        return Err(error.param("invoice"));
    }
    let Some(payment) = invoice.payment else {
        return Err(AppError::internal(format!(
            "paid invoice {} has no payment",
            invoice_id.encode()
        )));
    };
    let rail = payment.rail;
    // A test-mode payment the sandbox made (on any rail it simulated) is refunded by the
    // sandbox too, as that rail would: nothing real was paid, so nothing real goes back.
    let sandbox_id = crate::sandbox::payment_id(invoice_id);
    let simulated = mode == Mode::Test
        && (rail == Rail::Sandbox
            || app
                .read(mode, move |reader| {
                    reader.rail_payment(merchant, rail, &sandbox_id)
                })?
                .is_some());
    if !simulated
        && (matches!(rail, Rail::Balance | Rail::Sandbox) || !rails.registered().contains(&rail))
    {
        let instead = if invoice.customer.or(payment.customer).is_some() {
            "refund it to the customer's balance (leave out destination)"
        } else if invoice.currency == farthing_core::Currency::BTC {
            "it was paid without a customer, so refund it as an LNURL-withdraw link (destination lnurl_withdraw)"
        } else {
            "it was paid without a customer, so no refund can reach the payer through farthing; settle it with the payer directly"
        };
        return Err(AppError::invalid(
            "rail_refund_unsupported",
            format!("this invoice was paid on the {rail} rail, which has no way back; {instead}"),
        )
        .param("destination"));
    }
    // The rail cannot take it back: the booking must not fail afterwards for want of money.
    let wanted = amount_minor.unwrap_or(payment.amount_minor);
    let balance = app
        .store(mode)
        .account(book::merchant(merchant, invoice.currency).id)?
        .map_or(0, |account| account.balances.available());
    if balance < i128::from(wanted) {
        return Err(AppError::InsufficientFunds {
            code: "insufficient_funds",
            message: format!(
                "the merchant's balance is too small to refund from: {} available and {} needed",
                book::currency_amount(u64::try_from(balance.max(0)).unwrap_or(0), invoice.currency),
                book::currency_amount(wanted, invoice.currency)
            ),
            available_minor: Some(u64::try_from(balance.max(0)).unwrap_or(0)),
            requested_minor: Some(wanted),
            param: None,
        });
    }
    let refund: RefundId = crate::ids::new_id();
    let sent = if simulated {
        RailRefunded {
            amount_minor: wanted,
            payer_external_id: None,
            pending: None,
        }
    } else {
        rails
            .refund(
                app,
                mode,
                rail,
                RailRefund {
                    merchant,
                    refund,
                    invoice: invoice_id,
                    amount_minor,
                },
            )
            .await?
    };
    Ok(SentThroughRail {
        refund,
        rail,
        invoice: invoice_id,
        sent,
        reason,
        metadata,
    })
}

/// Books a refund the rail sent, in the current job: merchant's balance → the rail's external
/// account, the invoice marked refunded, `invoice.refunded` and `refund.succeeded` written. A
/// refund the rail only prepared (the merchant sends it: `sent.pending`) is held on the
/// merchant's balance instead, stored `pending` with its next action, and `refund.pending`
/// written; [`complete_sent`] books it when the rail sees it sent, [`cancel_pending`]
/// releases it.
pub fn book_rail_refund(
    tx: &mut Tx<'_, '_>,
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    sent: &SentThroughRail,
) -> Result<Refund, AppError> {
    let id = sent.refund;
    let now = tx.now_ns();
    refuse_while_pending(tx, sent.invoice)?;
    let mut invoice = tx
        .invoice(sent.invoice)?
        .filter(|i| i.merchant == merchant)
        .ok_or_else(|| invoice_not_found(sent.invoice))?;
    let customer: CustomerId = match (
        crate::rail::refund_customer(&invoice),
        &sent.sent.payer_external_id,
    ) {
        (Some(customer), _) => customer,
        (None, Some(external)) => {
            customers::find_or_create(tx, merchant, mode, external, Vec::new())?
                .0
                .id
        }
        (None, None) => {
            customers::insert(
                tx,
                merchant,
                mode,
                None,
                vec![("created_for".to_owned(), "rail_refund".to_owned())],
            )?
            .id
        }
    };
    let amount_minor = sent.sent.amount_minor;
    let currency: Currency = invoice.currency;
    let mut refund = Refund {
        id,
        merchant,
        invoice: Some(sent.invoice),
        charge: None,
        customer,
        currency,
        amount_minor,
        reason: sent.reason.clone(),
        metadata: sent.metadata.clone(),
        created_at_ns: now,
        rail: Some(sent.rail),
        status: RefundStatus::Succeeded,
        next_action: None,
    };
    if let Some(next_action) = &sent.sent.pending {
        // Nothing left yet: the amount is held so that it is there when the merchant sends it,
        // and the invoice is refunded only then.
        if invoice.refundable_minor() < amount_minor {
            return Err(invoice_error(InvoiceError::RefundTooLarge {
                refundable_minor: invoice.refundable_minor(),
            })
            .param("amount"));
        }
        crate::payouts::hold(
            tx,
            mode,
            &crate::payouts::Hold {
                merchant,
                customer: None,
                rail: sent.rail,
                currency,
                key: pending_key(id),
                amount_minor,
                code: book::REFUND,
            },
        )?;
        refund.status = RefundStatus::Pending;
        refund.next_action = Some(next_action.clone());
        tx.insert_refund(&refund)?;
        emit(
            tx,
            merchant,
            mode,
            "refund.pending",
            &wire::refund(&refund, mode),
        )?;
        return Ok(refund);
    }
    book_sent(tx, app, mode, &mut invoice, &refund, false)?;
    tx.insert_refund(&refund)?;
    Ok(refund)
}

/// Books the money of a rail refund that has left, in the current job: the invoice refunded,
/// the amount from the merchant's balance to the rail's external account — by posting the hold
/// of a refund that waited (`held`), else by a transfer of its own (id = refund id) —, and
/// `invoice.refunded` (or `partially_refunded`) and `refund.succeeded` (of `refund`, which
/// says `succeeded`) written.
fn book_sent(
    tx: &mut Tx<'_, '_>,
    app: &App,
    mode: Mode,
    invoice: &mut farthing_core::invoice::Invoice,
    refund: &Refund,
    held: bool,
) -> Result<(), AppError> {
    let (id, merchant, currency, amount_minor) = (
        refund.id,
        refund.merchant,
        refund.currency,
        refund.amount_minor,
    );
    invoice
        .apply_refund(amount_minor)
        .map_err(|e| invoice_error(e).param("invoice"))?;
    tx.update_invoice(invoice)?;
    if held {
        crate::payouts::resolve(tx, &pending_key(id), true, book::REFUND)?;
    } else {
        let rail = refund
            .rail
            .ok_or_else(|| AppError::internal("a rail refund without a rail"))?;
        let group = book::transfer(
            TransferId(id.raw()),
            book::merchant(merchant, currency),
            book::rail(merchant, rail, currency),
            amount_minor,
            book::REFUND,
            id.raw(),
        );
        tx.apply(&group)?
            .map_err(|error| book::refusal(error, "the merchant", currency, amount_minor))?;
    }
    emit_refunded(tx, app, mode, merchant, invoice)?;
    emit(
        tx,
        merchant,
        mode,
        "refund.succeeded",
        &wire::refund(refund, mode),
    )?;
    Ok(())
}

fn emit_refunded(
    tx: &mut Tx<'_, '_>,
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    invoice: &farthing_core::invoice::Invoice,
) -> Result<(), AppError> {
    let object = wire::invoice(invoice, mode, &app.checkout_url(invoice.id));
    let event = if invoice.refundable_minor() == 0 {
        "invoice.refunded"
    } else {
        "invoice.partially_refunded"
    };
    emit(tx, merchant, mode, event, &object)?;
    Ok(())
}

/// The key a pending refund's hold derives its ledger ids from.
fn pending_key(id: RefundId) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(b"farthing/pending-refund/v1\0")
        .chain_update(id.raw().to_be_bytes())
        .finalize()
        .into()
}

fn not_pending(refund: &Refund) -> AppError {
    AppError::conflict(
        "refund_not_pending",
        format!(
            "refund {} is {}, not pending",
            refund.id.encode(),
            refund.status.as_str()
        ),
    )
}

/// The merchant's refund `id`, if it is pending (`refund_not_pending` otherwise).
fn pending_refund(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    id: RefundId,
) -> Result<Refund, AppError> {
    let refund = tx
        .refund(id)?
        .filter(|refund| refund.merchant == merchant)
        .ok_or_else(|| AppError::not_found("refund", id.encode()))?;
    if refund.status != RefundStatus::Pending {
        return Err(not_pending(&refund));
    }
    Ok(refund)
}

/// Books a prepared refund the rail saw the merchant send, in the current job: the invoice
/// marked refunded, `invoice.refunded` (or `partially_refunded`) and `refund.succeeded`
/// written, and the money moved from the merchant's balance to the rail's external account —
/// by posting its hold while it is pending, or, when it was canceled before the transfer was
/// seen (the merchant had signed it already), by a transfer of its own: the money left the
/// wallet either way. A refund that succeeded before (a replay) answers `refund_not_pending`
/// and changes nothing.
pub fn complete_sent(
    tx: &mut Tx<'_, '_>,
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    id: RefundId,
) -> Result<Refund, AppError> {
    let mut refund = tx
        .refund(id)?
        .filter(|refund| refund.merchant == merchant)
        .ok_or_else(|| AppError::not_found("refund", id.encode()))?;
    let was = refund.status;
    if was == RefundStatus::Succeeded {
        return Err(not_pending(&refund));
    }
    let invoice_id = refund
        .invoice
        .ok_or_else(|| AppError::internal("a prepared refund without an invoice"))?;
    let mut invoice = tx
        .invoice(invoice_id)?
        .ok_or_else(|| invoice_not_found(invoice_id))?;
    refund.status = RefundStatus::Succeeded;
    refund.next_action = None;
    book_sent(
        tx,
        app,
        mode,
        &mut invoice,
        &refund,
        was == RefundStatus::Pending,
    )?;
    tx.set_refund_status(id, RefundStatus::Succeeded)?;
    Ok(refund)
}

/// Cancels a pending refund in the current job: its hold voided (the amount available again),
/// the refund `canceled`, `refund.canceled` written. Only a pending refund can be canceled
/// (`refund_not_pending`). A transfer the merchant had already signed that shows up afterwards
/// is booked all the same ([`complete_sent`]).
pub fn cancel_pending(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    merchant: MerchantId,
    id: RefundId,
) -> Result<Refund, AppError> {
    let mut refund = pending_refund(tx, merchant, id)?;
    crate::payouts::resolve(tx, &pending_key(id), false, book::REFUND)?;
    tx.set_refund_status(id, RefundStatus::Canceled)?;
    refund.status = RefundStatus::Canceled;
    refund.next_action = None;
    emit(
        tx,
        merchant,
        mode,
        "refund.canceled",
        &wire::refund(&refund, mode),
    )?;
    Ok(refund)
}
