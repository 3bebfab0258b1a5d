//! Telegram Stars subscriptions (SPEC RL2, PR4).
//!
//! A subscription invoice (`subscription_period`, Stars only, 30 days) gets a subscription
//! invoice link from `createInvoiceLink`. Its first payment (`is_first_recurring`) pays the
//! invoice like any Stars payment and starts a [`Subscription`]; each renewal Telegram charges
//! by itself (`is_recurring`, a new `telegram_payment_charge_id`, the same payload) is paid as
//! a **renewal invoice** of its own — a copy of the subscription invoice for the subscriber —
//! so every period's money is an `invoice.paid` on the ledger like any other, and the
//! subscription's paid period moves to Telegram's `subscription_expiration_date`.
//!
//! Everything happens in the settlement's store job and is idempotent by the charge id: a
//! resent update finds its `rail_payments` row and changes nothing. Cancel and resume go
//! through `editUserStarSubscription` (the subscriber keeps what they paid for until the end of
//! the period).

use farthing_core::invoice::{InvoiceAmount, NewInvoice};
use farthing_core::{CustomerId, InvoiceId, PublicId, Rail, SubscriptionId};
use farthing_store::{Subscription, Tx};
use serde_json::{json, Value};

use crate::ids::new_id;
use crate::outbox::emit;
use crate::rail::RailSet;
use crate::settlement::{settle_payment, IncomingPayment, SettledPayment};
use crate::{customers, wire, App, AppError, Mode};

/// How long a renewal invoice stays open (it is paid in the same job it is made in).
const RENEWAL_EXPIRES_IN_S: u64 = 900;

/// What a `successful_payment` says about a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionPayment {
    /// The payer's Telegram user id.
    pub telegram_user_id: i64,
    /// `subscription_expiration_date`: when the paid period ends, Unix seconds.
    pub expires_at_s: u64,
    /// `is_first_recurring`.
    pub first: bool,
}

/// The subscriber `tg:<user id>` of the merchant, created when missing.
fn subscriber(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    incoming: &IncomingPayment,
    telegram_user_id: i64,
) -> Result<CustomerId, AppError> {
    let external = format!("tg:{telegram_user_id}");
    customers::find_or_create(tx, incoming.merchant, mode, &external, Vec::new())
        .map(|(customer, _)| customer.id)
}

/// Settles a Stars payment, as [`settle_payment`] does, and when it belongs to a subscription
/// invoice, starts or renews the payer's subscription (see the module docs). Runs inside the
/// caller's store job, in a savepoint of its own.
pub fn settle_stars_payment(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    incoming: IncomingPayment,
    subscription: Option<SubscriptionPayment>,
    checkout_base: &str,
) -> Result<SettledPayment, AppError> {
    let Some(subscription) = subscription else {
        return settle_payment(tx, mode, incoming, checkout_base);
    };
    tx.nested(|tx| settle_subscription(tx, mode, incoming, subscription, checkout_base))?
}

fn settle_subscription(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    mut incoming: IncomingPayment,
    payment: SubscriptionPayment,
    checkout_base: &str,
) -> Result<SettledPayment, AppError> {
    // A resent update: the stored settlement stands (a renewal was stored under its renewal
    // invoice, so it is not compared with the subscription invoice named in the payload).
    if let Some(existing) =
        tx.rail_payment(incoming.merchant, incoming.rail, &incoming.external_id)?
    {
        return Ok(SettledPayment {
            payment: existing,
            invoice: None,
            duplicate: true,
        });
    }
    let merchant = incoming.merchant;
    let invoice = match incoming.invoice {
        Some(id) => tx.invoice(id)?.filter(|i| i.merchant == merchant),
        None => None,
    };
    let Some(invoice) = invoice.filter(|i| i.subscription_period_s.is_some()) else {
        // Not one of our subscription invoices: an ordinary payment (credited if need be).
        return settle_payment(tx, mode, incoming, checkout_base);
    };
    let period_s = u64::from(invoice.subscription_period_s.unwrap_or_default());
    let now = tx.now_ns();
    let existing = tx.subscription_of_payer(merchant, invoice.id, payment.telegram_user_id)?;
    let Some(mut subscription) = existing else {
        // The first payment: it pays the subscription invoice itself.
        let customer = subscriber(tx, mode, &incoming, payment.telegram_user_id)?;
        incoming.payer = Some(customer);
        let charge_id = incoming.external_id.clone();
        let settled = settle_payment(tx, mode, incoming, checkout_base)?;
        let subscription = Subscription {
            id: new_id(),
            merchant,
            customer,
            invoice: invoice.id,
            telegram_user_id: payment.telegram_user_id,
            first_charge_id: charge_id.clone(),
            last_charge_id: charge_id,
            last_invoice: invoice.id,
            currency: invoice.currency,
            amount_minor: fixed_amount(&invoice.amount),
            period_s,
            current_period_end_s: payment.expires_at_s,
            renewals: 0,
            canceled: false,
            created_at_ns: now,
            updated_at_ns: now,
        };
        tx.upsert_subscription(&subscription)?;
        emit(
            tx,
            merchant,
            mode,
            "subscription.created",
            &render_subscription(&subscription, mode, now),
        )?;
        return Ok(settled);
    };
    // A renewal: a renewal invoice for the subscriber, paid by this payment.
    let mut metadata = invoice.metadata.clone();
    metadata.retain(|(key, _)| key != "renewal_of" && key != "subscription");
    metadata.push(("renewal_of".to_owned(), invoice.id.encode()));
    metadata.push(("subscription".to_owned(), subscription.id.encode()));
    let id: InvoiceId = new_id();
    let mut renewal = NewInvoice {
        currency: invoice.currency,
        amount: invoice.amount.clone(),
        description: invoice.description.clone(),
        payload: invoice.payload.clone(),
        rails: vec![Rail::Stars],
        customer: Some(subscription.customer),
        expires_in_s: RENEWAL_EXPIRES_IN_S,
        metadata,
    }
    .into_invoice(id, merchant, now)
    .map_err(|error| AppError::internal(format!("renewal invoice: {error}")))?;
    renewal.subscription_period_s = invoice.subscription_period_s;
    tx.insert_invoice(&renewal)?;
    let url = format!(
        "{}/pay/{}",
        checkout_base.trim_end_matches('/'),
        id.encode()
    );
    emit(
        tx,
        merchant,
        mode,
        "invoice.created",
        &wire::invoice(&renewal, mode, &url),
    )?;
    incoming.invoice = Some(id);
    incoming.payer = Some(subscription.customer);
    let charge_id = incoming.external_id.clone();
    let settled = settle_payment(tx, mode, incoming, checkout_base)?;
    subscription.last_charge_id = charge_id;
    subscription.last_invoice = id;
    subscription.renewals = subscription.renewals.saturating_add(1);
    subscription.current_period_end_s = subscription.current_period_end_s.max(payment.expires_at_s);
    subscription.canceled = false;
    subscription.updated_at_ns = now;
    tx.upsert_subscription(&subscription)?;
    emit(
        tx,
        merchant,
        mode,
        "subscription.renewed",
        &render_subscription(&subscription, mode, now),
    )?;
    Ok(settled)
}

fn fixed_amount(amount: &InvoiceAmount) -> u64 {
    match amount {
        InvoiceAmount::Fixed(amount) => *amount,
        InvoiceAmount::Open { min_minor, .. } => *min_minor,
    }
}

/// `active` (paid and renewing), `canceled` (paid until the period's end, not renewing) or
/// `expired` (the paid period is over).
pub fn status(subscription: &Subscription, now_ns: u64) -> &'static str {
    if now_ns / 1_000_000_000 >= subscription.current_period_end_s {
        "expired"
    } else if subscription.canceled {
        "canceled"
    } else {
        "active"
    }
}

/// The wire form of a subscription.
pub fn render_subscription(subscription: &Subscription, mode: Mode, now_ns: u64) -> Value {
    json!({
        "object": "subscription",
        "id": subscription.id.encode(),
        "livemode": mode.is_live(),
        "status": status(subscription, now_ns),
        "customer": subscription.customer.encode(),
        "invoice": subscription.invoice.encode(),
        "latest_invoice": subscription.last_invoice.encode(),
        "telegram_user_id": subscription.telegram_user_id,
        "currency": subscription.currency.code(),
        "amount": subscription.amount_minor,
        "period": subscription.period_s,
        "current_period_end": subscription.current_period_end_s,
        "renewals": subscription.renewals,
        "cancel_at_period_end": subscription.canceled,
        "created": wire::unix_s(subscription.created_at_ns),
    })
}

/// Parses a subscription id from a path.
pub fn parse_id(text: &str) -> Result<SubscriptionId, AppError> {
    SubscriptionId::parse(text).map_err(|_| AppError::not_found("subscription", text))
}

/// Records, inside a store job, that the rail accepted the cancel or resume of subscription
/// `id` (with `subscription.canceled` / `subscription.resumed` when it changed).
pub fn record_canceled(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    id: SubscriptionId,
    canceled: bool,
) -> Result<Subscription, AppError> {
    let mut current = tx
        .subscription(id)?
        .ok_or_else(|| AppError::not_found("subscription", id.encode()))?;
    let now = tx.now_ns();
    if current.canceled != canceled {
        current.canceled = canceled;
        current.updated_at_ns = now;
        tx.upsert_subscription(&current)?;
        let event = if canceled {
            "subscription.canceled"
        } else {
            "subscription.resumed"
        };
        emit(
            tx,
            current.merchant,
            mode,
            event,
            &render_subscription(&current, mode, now),
        )?;
    }
    Ok(current)
}

/// The merchant's subscription, or not found.
pub fn load(
    app: &App,
    mode: Mode,
    merchant: farthing_core::MerchantId,
    id: SubscriptionId,
) -> Result<Subscription, AppError> {
    app.read(mode, move |reader| reader.subscription(id))?
        .filter(|s| s.merchant == merchant)
        .ok_or_else(|| AppError::not_found("subscription", id.encode()))
}

/// Checks that `subscription` may be canceled or resumed (its paid period is not over) and
/// asks the rail that renews it (Telegram first: its answer decides).
pub async fn ask_rail(
    app: &App,
    rails: &impl RailSet,
    mode: Mode,
    subscription: &Subscription,
    canceled: bool,
) -> Result<(), AppError> {
    if app.now_ns() / 1_000_000_000 >= subscription.current_period_end_s {
        return Err(AppError::conflict(
            "subscription_expired",
            "this subscription's paid period is over; the subscriber starts a new one by paying the invoice again",
        ));
    }
    rails
        .edit_subscription(app, mode, Rail::Stars, subscription, canceled)
        .await
}

/// Cancels (at the end of its paid period) or resumes a subscription: the rail first, then the
/// record (the one path of the API and of the bot's `/subscriptions` buttons).
pub async fn set_canceled(
    app: &App,
    rails: &impl RailSet,
    mode: Mode,
    merchant: farthing_core::MerchantId,
    id: SubscriptionId,
    canceled: bool,
) -> Result<Subscription, AppError> {
    let subscription = load(app, mode, merchant, id)?;
    ask_rail(app, rails, mode, &subscription, canceled).await?;
    app.run(mode, move |tx| record_canceled(tx, mode, id, canceled))
        .await
}
