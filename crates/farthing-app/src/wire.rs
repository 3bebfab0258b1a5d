//! The wire form of every API object (snapshot-tested): Stripe-like JSON with prefixed ids,
//! integer minor units, Unix-second timestamps and `livemode`.

use farthing_core::invoice::{Invoice, InvoiceAmount};
use farthing_core::{Currency, PublicId};
use farthing_store::{Charge, Customer, EventRecord, Refund, WebhookEndpoint};
use serde_json::{json, Map, Value};

use crate::Mode;

/// Unix seconds from ledger nanoseconds.
pub fn unix_s(ns: u64) -> u64 {
    ns / 1_000_000_000
}

/// Metadata pairs as a JSON object.
pub fn metadata(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// How to pay an invoice on each rail that made instructions for it (`{}` when none): each
/// rail's own JSON object (the Stars or card invoice link, the BOLT11 with its `lightning:`
/// URI, …), keyed by rail name.
fn payment_instructions(invoice: &Invoice) -> Value {
    let mut instructions = Map::new();
    for (rail, text) in &invoice.instructions {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                instructions.insert(rail.as_str().to_owned(), value);
            }
            Err(error) => {
                tracing::error!(invoice = %invoice.id.encode(), %rail, %error, "unreadable payment instructions");
            }
        }
    }
    Value::Object(instructions)
}

/// An invoice.
pub fn invoice(invoice: &Invoice, mode: Mode, checkout_url: &str) -> Value {
    let (amount, min, max, presets) = match &invoice.amount {
        InvoiceAmount::Fixed(amount) => (Some(*amount), None, None, None),
        InvoiceAmount::Open {
            presets,
            min_minor,
            max_minor,
        } => (
            None,
            Some(*min_minor),
            Some(*max_minor),
            Some(presets.clone()),
        ),
    };
    let payment = invoice.payment;
    json!({
        "id": invoice.id.encode(),
        "object": "invoice",
        "livemode": mode.is_live(),
        "status": invoice.status.as_str(),
        "amount": amount,
        "amount_min": min,
        "amount_max": max,
        "amount_presets": presets,
        "currency": invoice.currency.code(),
        "description": invoice.description,
        "payload": invoice.payload,
        "rails": invoice.rails.iter().map(|rail| rail.as_str()).collect::<Vec<_>>(),
        "customer": invoice.customer.map(PublicId::encode),
        "metadata": metadata(&invoice.metadata),
        "amount_paid": payment.map(|p| p.amount_minor),
        "amount_refunded": invoice.amount_refunded_minor,
        "paid_rail": payment.map(|p| p.rail.as_str()),
        "paid_by": payment.and_then(|p| p.customer).map(PublicId::encode),
        "paid_at": payment.map(|p| unix_s(p.paid_at_ns)),
        "created": unix_s(invoice.created_at_ns),
        "expires_at": unix_s(invoice.expires_at_ns),
        "closed_at": invoice.closed_at_ns.map(unix_s),
        "checkout_url": checkout_url,
        "payment_instructions": payment_instructions(invoice),
        "subscription_period": invoice.subscription_period_s,
    })
}

/// A customer with balances: `(currency, balance, available)` in minor units.
pub fn customer(customer: &Customer, mode: Mode, balances: &[(Currency, i128, i128)]) -> Value {
    json!({
        "id": customer.id.encode(),
        "object": "customer",
        "livemode": mode.is_live(),
        "external_id": customer.external_id,
        "metadata": metadata(&customer.metadata),
        "balances": balances.iter().map(|(currency, balance, available)| json!({
            "currency": currency.code(),
            "balance": i64::try_from(*balance).unwrap_or(i64::MAX),
            "available": i64::try_from(*available).unwrap_or(i64::MAX),
        })).collect::<Vec<_>>(),
        "created": unix_s(customer.created_at_ns),
    })
}

/// A customer's balance in one currency: the object of `customer.balance_changed`.
pub fn customer_balance(
    customer: farthing_core::CustomerId,
    mode: Mode,
    currency: Currency,
    balances: &farthing_core::ledger::Balances,
) -> Value {
    json!({
        "object": "customer_balance",
        "livemode": mode.is_live(),
        "customer": customer.encode(),
        "currency": currency.code(),
        "balance": i64::try_from(balances.posted()).unwrap_or(i64::MAX),
        "available": i64::try_from(balances.available()).unwrap_or(i64::MAX),
    })
}

/// A charge.
pub fn charge(charge: &Charge, mode: Mode) -> Value {
    json!({
        "id": charge.id.encode(),
        "object": "charge",
        "livemode": mode.is_live(),
        "status": "succeeded",
        "customer": charge.customer.encode(),
        "amount": charge.amount_minor,
        "amount_refunded": charge.refunded_minor,
        "currency": charge.currency.code(),
        "description": charge.description,
        "created": unix_s(charge.created_at_ns),
    })
}

/// A refund.
pub fn refund(refund: &Refund, mode: Mode) -> Value {
    json!({
        "id": refund.id.encode(),
        "object": "refund",
        "livemode": mode.is_live(),
        "status": "succeeded",
        "invoice": refund.invoice.map(PublicId::encode),
        "charge": refund.charge.map(PublicId::encode),
        "customer": refund.customer.encode(),
        "amount": refund.amount_minor,
        "currency": refund.currency.code(),
        "reason": refund.reason,
        "destination": if refund.rail.is_some() { "rail" } else { "balance" },
        "created": unix_s(refund.created_at_ns),
    })
}

/// A stored event (its body is kept exactly as delivered).
pub fn event(event: &EventRecord) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(
        |_| json!({"id": event.id.encode(), "object": "event", "type": event.event_type}),
    )
}

/// A webhook endpoint; the secret only when it is first created.
pub fn endpoint(endpoint: &WebhookEndpoint, mode: Mode, with_secret: bool) -> Value {
    let mut value = json!({
        "id": endpoint.id.encode(),
        "object": "webhook_endpoint",
        "livemode": mode.is_live(),
        "url": endpoint.url,
        "enabled_events": endpoint.events,
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason,
        "created": unix_s(endpoint.created_at_ns),
    });
    if with_secret {
        value["secret"] = Value::String(endpoint.secret.clone());
    }
    value
}

/// A list page.
pub fn list(data: Vec<Value>, has_more: bool, url: &str) -> Value {
    json!({"object": "list", "url": url, "data": data, "has_more": has_more})
}

/// A refund request customers made in the bot.
pub fn refund_request(request: &farthing_store::RefundRequest, mode: Mode) -> Value {
    json!({
        "object": "refund_request",
        "id": request.id.encode(),
        "livemode": mode.is_live(),
        "status": request.status.as_str(),
        "customer": request.customer.encode(),
        "invoice": request.invoice.encode(),
        "telegram_user_id": request.telegram_user_id,
        "refund": request.refund.map(PublicId::encode),
        "created": unix_s(request.created_at_ns),
        "updated": unix_s(request.updated_at_ns),
    })
}
