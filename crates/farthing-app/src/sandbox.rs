//! The sandbox (SPEC RL5), test mode only: a simulated payer for any rail, and test balances.
//! Sandbox money comes from the merchant's `external/sandbox` account of the test ledger.

use farthing_core::invoice::{Invoice, InvoiceError, InvoicePayment};
use farthing_core::ledger::Balances;
use farthing_core::TransferId;
use farthing_core::{ChargeId, Currency, CustomerId, InvoiceId, MerchantId, PublicId, Rail};
use farthing_store::Tx;

use crate::invoices::invoice_error;
use crate::outbox::emit;
use crate::{book, customers, wire, App, AppError, Mode};

/// Pays an invoice as a simulated payer of `rail` (default: the sandbox) in the current test
/// job; shared by the API and the checkout page's sandbox button.
pub fn pay(
    tx: &mut Tx<'_, '_>,
    app: &App,
    merchant: MerchantId,
    invoice_id: InvoiceId,
    rail: Option<Rail>,
    amount: Option<u64>,
    customer: Option<CustomerId>,
) -> Result<Invoice, AppError> {
    let mode = Mode::Test;
    let mut invoice = customers::require_invoice(tx, merchant, invoice_id)?;
    if let Some(customer) = customer {
        customers::require(tx, merchant, customer)?;
    }
    if let (Some(expected), Some(given)) = (invoice.customer, customer) {
        if expected != given {
            return Err(AppError::invalid(
                "customer_mismatch",
                "this invoice is for another customer",
            )
            .param("customer"));
        }
    }
    let rail = rail.unwrap_or(Rail::Sandbox);
    if rail != Rail::Sandbox && !invoice.rails.contains(&rail) {
        return Err(invoice_error(InvoiceError::RailNotAccepted(rail)).param("rail"));
    }
    let amount_minor = invoice
        .payable_amount(Rail::Sandbox, amount, tx.now_ns())
        .map_err(invoice_error)?;
    let currency = invoice.currency;
    let transfer_id = TransferId(invoice_id.raw());
    let group = book::transfer(
        transfer_id,
        book::sandbox(merchant, currency),
        book::merchant(merchant, currency),
        amount_minor,
        book::PAYMENT,
        invoice_id.raw(),
    );
    tx.apply(&group)?
        .map_err(|error| book::refusal(error, "the sandbox", currency, amount_minor))?;
    invoice
        .mark_paid(InvoicePayment {
            amount_minor,
            rail,
            customer: customer.or(invoice.customer),
            transfer_id,
            paid_at_ns: tx.now_ns(),
        })
        .map_err(invoice_error)?;
    tx.update_invoice(&invoice)?;
    let object = wire::invoice(&invoice, mode, &app.checkout_url(invoice.id));
    emit(tx, merchant, mode, "invoice.paid", &object)?;
    Ok(invoice)
}

/// Funds a customer's test balance in the current test job (`customer.balance_changed`);
/// returns the balance after it.
pub fn top_up(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    customer: CustomerId,
    amount_minor: u64,
    currency: Currency,
) -> Result<Balances, AppError> {
    tx.customer(customer)?
        .filter(|c| c.merchant == merchant)
        .ok_or_else(|| AppError::not_found("customer", customer.encode()))?;
    let transfer: ChargeId = crate::ids::new_id();
    let group = book::transfer(
        TransferId(transfer.raw()),
        book::sandbox(merchant, currency),
        book::customer(merchant, customer, currency),
        amount_minor,
        book::TOP_UP,
        customer.raw(),
    );
    tx.apply(&group)?
        .map_err(|error| book::refusal(error, "the sandbox", currency, amount_minor))?;
    customers::emit_balance_changed(tx, merchant, Mode::Test, customer, currency)?;
    Ok(tx
        .account(book::customer(merchant, customer, currency).id)?
        .map(|state| state.balances)
        .unwrap_or_default())
}
