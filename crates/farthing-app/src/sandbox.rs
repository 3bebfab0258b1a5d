//! The sandbox (SPEC RL5), test mode only: a simulated payer for any rail, and test balances.
//! Sandbox money comes from the merchant's `external/sandbox` account of the test ledger.

use farthing_core::invoice::{Invoice, InvoiceError};
use farthing_core::ledger::Balances;
use farthing_core::TransferId;
use farthing_core::{ChargeId, Currency, CustomerId, InvoiceId, MerchantId, PublicId, Rail};
use farthing_store::Tx;

use crate::invoices::invoice_error;
use crate::settlement::{self, IncomingPayment};
use crate::{book, customers, invoices, AppError, Mode};

/// Pays an invoice as a simulated payer of `rail` in the current test job; shared by the API
/// and the checkout page's sandbox button. It does exactly what the real rail would: `balance`
/// debits the paying customer's balance through [`invoices::pay_from_balance`] (or answers
/// 402 `insufficient_funds`); every other rail reports the payment to
/// [`settlement::settle_payment`] as its adapter would (from the merchant's `external` account
/// of that rail, a top-up invoice landing on the payer's balance). The default rail is the
/// invoice's first rail other than `balance` (`balance` when it takes nothing else).
pub fn pay(
    tx: &mut Tx<'_, '_>,
    risk: &crate::risk::RiskCheck,
    invoice_id: InvoiceId,
    rail: Option<Rail>,
    amount: Option<u64>,
    customer: Option<CustomerId>,
) -> Result<Invoice, AppError> {
    let (app, merchant) = (risk.app(), risk.merchant());
    let mode = Mode::Test;
    let invoice = customers::require_invoice(tx, merchant, invoice_id)?;
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
    // The default: the payer outside farthing the invoice takes first (a rail other than
    // `balance`), or `balance` when that is all it takes.
    let rail = rail
        .or_else(|| {
            invoice
                .rails
                .iter()
                .copied()
                .find(|rail| *rail != Rail::Balance)
        })
        .or_else(|| invoice.rails.first().copied())
        .unwrap_or(Rail::Sandbox);
    if rail != Rail::Sandbox && !invoice.rails.contains(&rail) {
        return Err(invoice_error(InvoiceError::RailNotAccepted(rail)).param("rail"));
    }
    let payer = customer.or(invoice.customer);
    if rail == Rail::Balance {
        let payer = payer.ok_or_else(|| {
            AppError::invalid(
                "customer_required",
                "a balance payment is made by a customer: pass `customer` (whose balance pays), or create the invoice for one",
            )
            .param("customer")
        })?;
        return invoices::pay_from_balance(tx, risk, invoice_id, payer, amount);
    }
    let amount_minor = invoice
        .payable_amount(rail, amount, tx.now_ns())
        .map_err(invoice_error)?;
    let settled = settlement::settle_payment(
        tx,
        mode,
        IncomingPayment {
            merchant,
            rail,
            external_id: payment_id(invoice_id),
            invoice: Some(invoice_id),
            payer,
            payer_external_id: None,
            currency: invoice.currency,
            amount_minor,
            payload: None,
        },
        app.base_url(),
    )?;
    settled
        .invoice
        .ok_or_else(|| AppError::internal("the sandbox payment settled no invoice"))
}

/// The rail payment id the sandbox gives its payment of `invoice` (one per invoice).
pub fn payment_id(invoice: InvoiceId) -> String {
    format!("sandbox:{}", invoice.encode())
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
