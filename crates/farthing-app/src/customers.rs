//! Customers: "find or create" written once (the Telegram user `tg:<id>`, the LNURL-auth key
//! `lnurl:<key>`, a payer known only to a rail), the merchant's-customer check, and the
//! balance event.

use farthing_core::{Currency, CustomerId, InvoiceId, MerchantId, PublicId};
use farthing_store::{Customer, Tx};

use crate::ids::new_id;
use crate::outbox::emit;
use crate::{book, wire, AppError, Mode};

/// Longest `external_id`, in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 200;

/// The merchant's customer `customer`, or `customer_not_found` on parameter `customer`
/// (another merchant's customer is not found either: ids don't leak across merchants).
pub fn require(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    customer: CustomerId,
) -> Result<Customer, AppError> {
    tx.customer(customer)?
        .filter(|c| c.merchant == merchant)
        .ok_or_else(|| {
            AppError::invalid(
                "customer_not_found",
                format!("no such customer: {:?}", customer.encode()),
            )
            .param("customer")
        })
}

/// The merchant's invoice `invoice`, or not found.
pub fn require_invoice(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    invoice: InvoiceId,
) -> Result<farthing_core::invoice::Invoice, AppError> {
    tx.invoice(invoice)?
        .filter(|found| found.merchant == merchant)
        .ok_or_else(|| AppError::not_found("invoice", invoice.encode()))
}

/// A new customer of `merchant` (`customer.created` is written with it). The caller checks
/// that `external_id` is free.
pub fn insert(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    mode: Mode,
    external_id: Option<String>,
    metadata: Vec<(String, String)>,
) -> Result<Customer, AppError> {
    let customer = Customer {
        id: new_id(),
        merchant,
        external_id,
        metadata,
        created_at_ns: tx.now_ns(),
    };
    tx.insert_customer(&customer)?;
    emit(
        tx,
        merchant,
        mode,
        "customer.created",
        &wire::customer(&customer, mode, &[]),
    )?;
    Ok(customer)
}

/// The merchant's customer with `external_id`, created now (with `metadata`) if there is none:
/// the one way a payer known by a reference (`tg:<user id>`, `lnurl:<key>`) becomes a customer.
/// Inside a job, so two racing callers make one customer. Returns it and whether it is new.
pub fn find_or_create(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    mode: Mode,
    external_id: &str,
    metadata: Vec<(String, String)>,
) -> Result<(Customer, bool), AppError> {
    if let Some(found) = tx.customer_by_external_id(merchant, external_id)? {
        return Ok((found, false));
    }
    let customer = insert(tx, merchant, mode, Some(external_id.to_owned()), metadata)?;
    Ok((customer, true))
}

/// The external id of a Telegram user: `tg:<user id>`.
pub fn telegram_external_id(user_id: u64) -> String {
    format!("tg:{user_id}")
}

/// The merchant's customer `tg:<user>`, created now if the Telegram user has none yet.
pub fn telegram(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    mode: Mode,
    user_id: u64,
) -> Result<CustomerId, AppError> {
    find_or_create(
        tx,
        merchant,
        mode,
        &telegram_external_id(user_id),
        Vec::new(),
    )
    .map(|(customer, _)| customer.id)
}

/// Writes `customer.balance_changed` with the customer's balance in `currency` as of now.
pub fn emit_balance_changed(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    mode: Mode,
    customer: CustomerId,
    currency: Currency,
) -> Result<(), AppError> {
    let account = book::customer(merchant, customer, currency);
    let balances = tx
        .account(account.id)?
        .map(|state| state.balances)
        .unwrap_or_default();
    emit(
        tx,
        merchant,
        mode,
        "customer.balance_changed",
        &wire::customer_balance(customer, mode, currency, &balances),
    )?;
    Ok(())
}

/// Moves `amount_minor` of `currency` from one customer's balance to another's in the current
/// job (a correction the merchant makes, e.g. assigning a payment a rail credited to the wrong
/// payer), once per `transfer` id: a repeated id books nothing again. Both customers must be
/// the merchant's; refused, with nothing booked, when `from`'s balance does not cover it.
/// Writes `customer.balance_changed` for both.
#[allow(clippy::too_many_arguments)]
pub fn move_balance(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    mode: Mode,
    from: CustomerId,
    to: CustomerId,
    currency: Currency,
    amount_minor: u64,
    transfer: farthing_core::TransferId,
) -> Result<(), AppError> {
    require(tx, merchant, from)?;
    require(tx, merchant, to)?;
    if from == to || amount_minor == 0 {
        return Ok(());
    }
    let group = book::transfer(
        transfer,
        book::customer(merchant, from, currency),
        book::customer(merchant, to, currency),
        amount_minor,
        farthing_core::ledger::code::CORRECTION,
        to.raw(),
    );
    tx.apply(&group)?
        .map_err(|error| book::refusal(error, "the customer", currency, amount_minor))?;
    emit_balance_changed(tx, merchant, mode, from, currency)?;
    emit_balance_changed(tx, merchant, mode, to, currency)
}
