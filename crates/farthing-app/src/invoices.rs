//! Invoices (SPEC I1–I4): create (choosing and checking the rails), attach each rail's payment
//! instructions after the commit, cancel, expire, and pay from a customer's balance (RL1).

use std::sync::Arc;

use farthing_core::invoice::{
    Invoice, InvoiceAmount, InvoiceError, InvoicePayment, InvoiceStatus, NewInvoice,
};
use farthing_core::rail::{MAX_STARS_SUBSCRIPTION, STARS_SUBSCRIPTION_PERIOD_S};
use farthing_core::{Currency, CustomerId, InvoiceId, MerchantId, PublicId, Rail, TransferId};
use farthing_store::{EventRecord, Tx};

use crate::ids::new_id;
use crate::outbox::{emit, event_record};
use crate::rail::{least_amount, Carries, RailSet};
use crate::{book, customers, wire, App, AppError, Mode};

/// Most invoices expired in one job.
pub const EXPIRE_PER_JOB: usize = 500;

/// A new invoice as an adapter asks for it (amounts and names already parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceRequest {
    /// Currency or asset.
    pub currency: Currency,
    /// Fixed, or chosen by the payer within bounds.
    pub amount: InvoiceAmount,
    /// Shown to the payer.
    pub description: String,
    /// Opaque merchant data.
    pub payload: Option<String>,
    /// The rails asked for, or `None` for every configured rail that carries the invoice.
    pub rails: Option<Vec<Rail>>,
    /// The expected payer.
    pub customer: Option<CustomerId>,
    /// Seconds until it expires.
    pub expires_in_s: u64,
    /// Merchant key/value data (already checked).
    pub metadata: Vec<(String, String)>,
    /// A Telegram Stars subscription's period, seconds.
    pub subscription_period_s: Option<u64>,
    /// Where the checkout sends the payer back afterwards (checked by the caller).
    pub return_url: Option<String>,
}

/// The refusal of an invoice rule, as the service reports it.
pub fn invoice_error(error: InvoiceError) -> AppError {
    let param = match &error {
        InvoiceError::AmountOutOfRange | InvoiceError::AmountMismatch { .. } => Some("amount"),
        InvoiceError::AmountRequired { .. } => Some("amount"),
        InvoiceError::BadBounds => Some("amount_min"),
        InvoiceError::BadPresets => Some("amount_presets"),
        InvoiceError::BadExpiry => Some("expires_in"),
        InvoiceError::DescriptionTooLong => Some("description"),
        InvoiceError::PayloadTooLong => Some("payload"),
        InvoiceError::NoRails => Some("rails"),
        _ => None,
    };
    let app = match &error {
        InvoiceError::NotOpen(_) => AppError::conflict("invoice_not_open", error.to_string()),
        InvoiceError::Expired => AppError::conflict("invoice_expired", error.to_string()),
        InvoiceError::NotPaid(_) => AppError::conflict("invoice_not_paid", error.to_string()),
        InvoiceError::RefundTooLarge { .. } => {
            AppError::invalid("refund_too_large", error.to_string())
        }
        InvoiceError::RailNotAccepted(_) => {
            AppError::invalid("rail_not_accepted", error.to_string())
        }
        InvoiceError::BadExpiry => AppError::invalid("invalid_expires_in", error.to_string()),
        _ => AppError::invalid("invalid_invoice", error.to_string()),
    };
    match param {
        Some(param) => app.param(param),
        None => app,
    }
}

/// The rails a merchant can take, with what each carries.
pub type Offered = Arc<Vec<(Rail, Carries)>>;

/// Merchants (times modes) whose offered rails are kept at most.
pub(crate) const MAX_CACHED_OFFERS: usize = 100_000;

/// The rails `merchant` can take in `mode`, in the registry's order, with what each carries.
///
/// Asking every rail costs a store read each, and every invoice asks, so the answer is kept in
/// memory per merchant and mode until a rail's configuration changes: after the commit of a
/// job run by [`App::run`] that changed one, or on another instance's news of it
/// ([`App::forget`]). The server has one rail set, so the cache does not tell sets apart.
pub fn offered(
    app: &App,
    rails: &impl RailSet,
    mode: Mode,
    merchant: MerchantId,
) -> Result<Offered, AppError> {
    app.inner.offers.get_or_read((mode, merchant), || {
        let mut offered = Vec::new();
        for rail in rails.registered() {
            if let Some(carries) = rails.offer(app, mode, merchant, rail)? {
                offered.push((rail, carries));
            }
        }
        Ok(Arc::new(offered))
    })
}

/// The rails an invoice takes: those asked for, each checked (configured, carrying the currency,
/// within its published limit for one payment), or by default every configured rail that
/// carries the currency and the amount.
pub fn choose_rails(
    offered: &[(Rail, Carries)],
    mode: Mode,
    currency: Currency,
    amount: &InvoiceAmount,
    requested: Option<&[Rail]>,
) -> Result<Vec<Rail>, AppError> {
    let least_minor = least_amount(amount);
    let fits = |rail: Rail| {
        rail.max_payment_minor(currency)
            .is_none_or(|max| least_minor <= max)
    };
    let Some(requested) = requested else {
        return Ok(offered
            .iter()
            .filter(|(rail, carries)| carries.takes(currency) && fits(*rail))
            .map(|(rail, _)| *rail)
            .collect());
    };
    let mut rails = Vec::new();
    for (i, rail) in requested.iter().copied().enumerate() {
        let param = format!("rails[{i}]");
        let Some((_, carries)) = offered.iter().find(|(offered, _)| *offered == rail) else {
            return Err(AppError::invalid(
                "rail_not_configured",
                format!(
                    "the {rail} rail is not configured for this merchant{}; see GET /v1/rails",
                    if mode.is_live() { "" } else { " in test mode" }
                ),
            )
            .param(param));
        };
        if !carries.takes(currency) {
            return Err(AppError::invalid(
                "rail_currency_mismatch",
                format!("{}, not {currency}", carries.why_not),
            )
            .param(param));
        }
        if !fits(rail) {
            return Err(AppError::invalid(
                "amount_exceeds_rail_limit",
                format!(
                    "one {rail} payment carries at most {} {currency} minor units (the rail's published limit); lower the amount or leave {rail} out",
                    rail.max_payment_minor(currency).unwrap_or_default()
                ),
            )
            .param(param));
        }
        if !rails.contains(&rail) {
            rails.push(rail);
        }
    }
    Ok(rails)
}

/// Checks `subscription_period`: only Telegram's 30 days, on a fixed-amount `XTR` invoice that
/// accepts `stars` (the rail that renews it), at most Telegram's price for a period.
fn subscription_period(period: Option<u64>, invoice: &Invoice) -> Result<Option<u32>, AppError> {
    let Some(period) = period else {
        return Ok(None);
    };
    let bad = |message: &str| {
        AppError::invalid("invalid_subscription", message.to_owned()).param("subscription_period")
    };
    if period != u64::from(STARS_SUBSCRIPTION_PERIOD_S) {
        return Err(bad("subscription_period must be 2592000 (30 days), the only period Telegram Stars subscriptions have"));
    }
    if invoice.currency.code() != "XTR" || !matches!(invoice.amount, InvoiceAmount::Fixed(_)) {
        return Err(bad(
            "a subscription invoice has a fixed amount in XTR (Telegram Stars)",
        ));
    }
    if !invoice.rails.contains(&Rail::Stars) {
        return Err(bad(
            "a subscription is paid and renewed by Telegram Stars: the invoice must accept the stars rail (PUT /v1/rails/stars)",
        ));
    }
    if matches!(invoice.amount, InvoiceAmount::Fixed(amount) if amount > MAX_STARS_SUBSCRIPTION) {
        return Err(AppError::invalid(
            "amount_exceeds_rail_limit",
            format!(
                "a Telegram Stars subscription costs at most {MAX_STARS_SUBSCRIPTION} XTR per period (Bot API)"
            ),
        )
        .param("amount"));
    }
    u32::try_from(period)
        .map(Some)
        .map_err(|_| bad("subscription_period is too large"))
}

/// A checked invoice, not stored yet, with its `invoice.created` event: built outside the
/// writer's job (the writer is the bottleneck under load), so that the job only checks and
/// inserts.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The invoice.
    pub invoice: Invoice,
    /// Its `invoice.created` event.
    pub event: EventRecord,
}

impl Prepared {
    /// Adds a rail's payment instructions made before the invoice is stored (e.g. a BOLT11
    /// that must exist before the invoice does), and remakes the `invoice.created` event so
    /// that it shows them.
    pub fn with_instructions(&mut self, app: &App, mode: Mode, rail: Rail, data: String) {
        self.invoice.instructions.insert(rail, data);
        let object = wire::invoice(&self.invoice, mode, &app.checkout_url(self.invoice.id));
        self.event = event_record(
            self.invoice.merchant,
            mode,
            "invoice.created",
            &object,
            self.invoice.created_at_ns,
        );
    }
}

/// Checks `request` for `merchant` and builds the invoice (with a new id, created now).
pub fn prepare(
    app: &App,
    rails: &impl RailSet,
    mode: Mode,
    merchant: MerchantId,
    request: InvoiceRequest,
) -> Result<Prepared, AppError> {
    let offered = offered(app, rails, mode, merchant)?;
    prepare_with(app, &offered, mode, merchant, request)
}

/// [`prepare`] with the offered rails already read.
pub fn prepare_with(
    app: &App,
    offered: &[(Rail, Carries)],
    mode: Mode,
    merchant: MerchantId,
    request: InvoiceRequest,
) -> Result<Prepared, AppError> {
    let top_up = request.metadata.iter().any(|(key, value)| {
        key == crate::settlement::TOP_UP_METADATA.0 && value == crate::settlement::TOP_UP_METADATA.1
    });
    // A top-up funds a customer's balance: it needs that customer, and the balance itself
    // cannot pay it (the money would go round in a circle).
    let offered: Vec<(Rail, Carries)> = if top_up {
        if request.customer.is_none() {
            return Err(AppError::invalid(
                "customer_required",
                "a top-up invoice funds a customer's balance: give the `customer` whose balance it tops up",
            )
            .param("customer"));
        }
        if let Some(i) = request
            .rails
            .as_deref()
            .and_then(|rails| rails.iter().position(|rail| *rail == Rail::Balance))
        {
            return Err(AppError::invalid(
                "invalid_rail",
                "a top-up cannot be paid from the balance it funds: leave `balance` out",
            )
            .param(format!("rails[{i}]")));
        }
        offered
            .iter()
            .filter(|(rail, _)| *rail != Rail::Balance)
            .cloned()
            .collect()
    } else {
        offered.to_vec()
    };
    let rails = choose_rails(
        &offered,
        mode,
        request.currency,
        &request.amount,
        request.rails.as_deref(),
    )?;
    let id: InvoiceId = new_id();
    let mut invoice = NewInvoice {
        currency: request.currency,
        amount: request.amount,
        description: request.description,
        payload: request.payload,
        rails,
        customer: request.customer,
        expires_in_s: request.expires_in_s,
        metadata: request.metadata,
    }
    .into_invoice(id, merchant, app.now_ns())
    .map_err(invoice_error)?;
    invoice.subscription_period_s = subscription_period(request.subscription_period_s, &invoice)?;
    invoice.return_url = request.return_url;
    let object = wire::invoice(&invoice, mode, &app.checkout_url(id));
    let event = event_record(
        merchant,
        mode,
        "invoice.created",
        &object,
        invoice.created_at_ns,
    );
    Ok(Prepared { invoice, event })
}

/// Stores a prepared invoice in the current job: its customer must be the merchant's.
pub fn insert(tx: &mut Tx<'_, '_>, prepared: &Prepared) -> Result<(), AppError> {
    let invoice = &prepared.invoice;
    if let Some(customer) = invoice.customer {
        customers::require(tx, invoice.merchant, customer)?;
    }
    tx.insert_invoice(invoice)?;
    tx.insert_event(&prepared.event)?;
    Ok(())
}

/// Asks every rail the committed invoice accepts for its payment instructions and stores the
/// ones made; returns the invoice with them. A rail that fails leaves the invoice without its
/// instructions (logged): the invoice stands, and the checkout page asks again when opened.
pub async fn attach_instructions(
    app: &App,
    rails: &impl RailSet,
    mode: Mode,
    mut invoice: Invoice,
) -> Invoice {
    for rail in invoice.rails.clone() {
        if invoice.instructions.contains_key(&rail) {
            continue;
        }
        let made = match rails.instructions(app, mode, rail, &invoice).await {
            Ok(Some(made)) => made,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(invoice = %invoice.id.encode(), %rail, %error, "no payment instructions from the rail; the invoice stands without them");
                continue;
            }
        };
        let (id, data) = (invoice.id, made.clone());
        let stored = app
            .run(mode, move |tx| -> Result<bool, AppError> {
                Ok(tx.set_instructions(id, rail, &data)?)
            })
            .await;
        match stored {
            Ok(true) => {
                invoice.instructions.insert(rail, made);
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(invoice = %invoice.id.encode(), %rail, %error, "could not store the payment instructions");
            }
        }
    }
    invoice
}

/// Creates an invoice (check, store, then each rail's instructions): the one way the bot, the
/// Mini App and other adapters without an idempotency key make invoices.
pub async fn create(
    app: &App,
    rails: &impl RailSet,
    mode: Mode,
    merchant: MerchantId,
    request: InvoiceRequest,
) -> Result<Invoice, AppError> {
    let prepared = prepare(app, rails, mode, merchant, request)?;
    let stored = prepared.clone();
    app.run(mode, move |tx| insert(tx, &stored)).await?;
    Ok(attach_instructions(app, rails, mode, prepared.invoice).await)
}

/// Cancels the merchant's open invoice in the current job (`invoice.canceled`).
pub fn cancel(
    tx: &mut Tx<'_, '_>,
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    invoice: InvoiceId,
) -> Result<Invoice, AppError> {
    let mut invoice = customers::require_invoice(tx, merchant, invoice)?;
    invoice.cancel(tx.now_ns()).map_err(invoice_error)?;
    tx.update_invoice(&invoice)?;
    let object = wire::invoice(&invoice, mode, &app.checkout_url(invoice.id));
    emit(tx, merchant, mode, "invoice.canceled", &object)?;
    Ok(invoice)
}

/// Pays `invoice` from `customer`'s balance in the current job, under the merchant's risk rules
/// (`risk` names the merchant and the mode): the one booking path of a
/// balance payment (the API's `POST /v1/invoices/{id}/pay`, the Mini App's one-tap pay). The
/// transfer id is the invoice's, so the ledger refuses a second booking of the same invoice.
pub fn pay_from_balance(
    tx: &mut Tx<'_, '_>,
    risk: &crate::risk::RiskCheck,
    invoice: InvoiceId,
    customer: CustomerId,
    amount: Option<u64>,
) -> Result<Invoice, AppError> {
    let (app, mode, merchant) = (risk.app(), risk.mode(), risk.merchant());
    let invoice = customers::require_invoice(tx, merchant, invoice)?;
    customers::require(tx, merchant, customer)?;
    if invoice
        .customer
        .is_some_and(|expected| expected != customer)
    {
        return Err(
            AppError::invalid("customer_mismatch", "this invoice is for another customer")
                .param("customer"),
        );
    }
    let amount_minor = invoice
        .payable_amount(Rail::Balance, amount, tx.now_ns())
        .map_err(invoice_error)?;
    let currency = invoice.currency;
    risk.guard(tx, amount_minor, currency, Some(customer), |tx| {
        book_balance_payment(tx, app, mode, merchant, invoice, customer, amount_minor)
    })
}

/// Completes an open fixed-amount invoice from `customer`'s balance after `rail` brought
/// part payments for it that were credited there (SPEC I3: a short payment is credited, and a
/// second one before expiry completes the invoice). Unlike [`pay_from_balance`] the invoice
/// need not accept the balance rail: the money on the balance came through `rail`, which it
/// does accept. Refused (and nothing booked) when the balance does not cover the invoice.
pub fn complete_from_balance(
    tx: &mut Tx<'_, '_>,
    risk: &crate::risk::RiskCheck,
    invoice: InvoiceId,
    customer: CustomerId,
    rail: Rail,
) -> Result<Invoice, AppError> {
    let (app, mode, merchant) = (risk.app(), risk.mode(), risk.merchant());
    let invoice = customers::require_invoice(tx, merchant, invoice)?;
    customers::require(tx, merchant, customer)?;
    let amount_minor = invoice
        .payable_amount(rail, None, tx.now_ns())
        .map_err(invoice_error)?;
    let currency = invoice.currency;
    risk.guard(tx, amount_minor, currency, Some(customer), |tx| {
        book_balance_payment(tx, app, mode, merchant, invoice, customer, amount_minor)
    })
}

fn book_balance_payment(
    tx: &mut Tx<'_, '_>,
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    mut invoice: Invoice,
    customer: CustomerId,
    amount_minor: u64,
) -> Result<Invoice, AppError> {
    let currency = invoice.currency;
    let transfer_id = TransferId(invoice.id.raw());
    let group = book::transfer(
        transfer_id,
        book::customer(merchant, customer, currency),
        book::merchant(merchant, currency),
        amount_minor,
        book::PAYMENT,
        invoice.id.raw(),
    );
    tx.apply(&group)?
        .map_err(|error| book::refusal(error, "the customer", currency, amount_minor))?;
    invoice
        .mark_paid(InvoicePayment {
            amount_minor,
            rail: Rail::Balance,
            customer: Some(customer),
            transfer_id,
            paid_at_ns: tx.now_ns(),
        })
        .map_err(invoice_error)?;
    tx.update_invoice(&invoice)?;
    let object = wire::invoice(&invoice, mode, &app.checkout_url(invoice.id));
    emit(tx, merchant, mode, "invoice.paid", &object)?;
    customers::emit_balance_changed(tx, merchant, mode, customer, currency)?;
    Ok(invoice)
}

/// Expires the open invoices of `mode` whose time ran out (at most [`EXPIRE_PER_JOB`] per call,
/// read through the expiry schedule: the cost follows what expires); returns how many.
pub async fn expire_due(app: &App, mode: Mode) -> Result<usize, AppError> {
    let base = app.clone();
    app.run(mode, move |tx| -> Result<usize, AppError> {
        let mut expired = 0;
        for id in tx.due_invoices(EXPIRE_PER_JOB)? {
            let Some(mut invoice) = tx.invoice(id)? else {
                tx.unschedule_invoice(id)?;
                continue;
            };
            if invoice.expire(tx.now_ns()) {
                tx.update_invoice(&invoice)?;
                let object = wire::invoice(&invoice, mode, &base.checkout_url(invoice.id));
                emit(tx, invoice.merchant, mode, "invoice.expired", &object)?;
                expired += 1;
            } else if invoice.status != InvoiceStatus::Open {
                // Paid or canceled in the meantime: the entry is stale.
                tx.unschedule_invoice(id)?;
            }
        }
        Ok(expired)
    })
    .await
}

/// When the next open invoice of `mode` expires, if any.
pub fn next_expiry(app: &App, mode: Mode) -> Result<Option<u64>, AppError> {
    app.read(mode, |reader| reader.next_invoice_expiry())
}
