//! The classic "I forgot the comment" ticket, solved in one call: a TON payment that named no
//! invoice was credited to its payer's balance (the customer `ton:<address>`) and listed as
//! `unmatched`; the merchant assigns it to the invoice it was meant for (paid from that balance,
//! `invoice.paid`) or to the customer it belongs to (moved to their balance,
//! `customer.balance_changed` for both). Once: a payment assigned is no longer unmatched.

use farthing_core::invoice::Invoice;
use farthing_core::{Currency, CustomerId, InvoiceId, Rail, TransferId};
use farthing_store::{TonTransaction, Tx};

use farthing_app::risk::RiskCheck;
use farthing_app::{customers, AppError};

/// Where an unmatched payment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Pay this invoice from the payer's balance.
    Invoice(InvoiceId),
    /// Move the payment to this customer's balance.
    Customer(CustomerId),
}

/// The transfer that moves an assigned payment between balances: one per transaction hash.
fn assign_transfer_id(hash: &str) -> TransferId {
    TransferId::derived("farthing/ton-assign/v1", &[hash.as_bytes()])
}

/// Assigns the unmatched payment `hash` of the checked merchant (`risk` names it and the mode)
/// inside the caller's job. Returns the payment as it now stands and the invoice it paid.
pub fn assign(
    tx: &mut Tx<'_, '_>,
    risk: &RiskCheck,
    hash: &str,
    target: Target,
) -> Result<(TonTransaction, Option<Invoice>), AppError> {
    let (merchant, mode) = (risk.merchant(), risk.mode());
    let row = tx
        .ton_transaction(hash)?
        .filter(|row| row.merchant == merchant)
        .ok_or_else(|| AppError::not_found("TON payment", hash.to_owned()))?;
    if row.outcome != "unmatched" {
        return Err(AppError::conflict(
            "ton_payment_not_unmatched",
            format!(
                "this TON payment is {} ({}): only an unmatched payment can be assigned",
                row.outcome,
                row.reason.as_deref().unwrap_or("no reason")
            ),
        ));
    }
    let (Some(payer), Some(amount), Some(currency)) = (
        row.customer,
        row.amount_minor,
        row.currency
            .as_deref()
            .and_then(|code| Currency::parse(code).ok()),
    ) else {
        return Err(AppError::internal(format!(
            "unmatched TON payment {hash} has no payer, amount or currency"
        )));
    };
    let invoice = match target {
        Target::Invoice(invoice) => Some(farthing_app::invoices::complete_from_balance(
            tx,
            risk,
            invoice,
            payer,
            Rail::Ton,
        )?),
        Target::Customer(customer) => {
            customers::move_balance(
                tx,
                merchant,
                mode,
                payer,
                customer,
                currency,
                amount,
                assign_transfer_id(hash),
            )?;
            None
        }
    };
    let (invoice_id, customer) = match target {
        Target::Invoice(id) => (Some(id), payer),
        Target::Customer(customer) => (None, customer),
    };
    if !tx.assign_ton_transaction(hash, invoice_id, customer)? {
        return Err(AppError::conflict(
            "ton_payment_not_unmatched",
            "this TON payment was assigned meanwhile",
        ));
    }
    let row = tx
        .ton_transaction(hash)?
        .ok_or_else(|| AppError::internal("an assigned TON payment vanished"))?;
    Ok((row, invoice))
}
