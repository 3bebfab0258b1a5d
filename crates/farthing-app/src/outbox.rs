//! The outbox (SPEC A4): events are rows written in the same store job as the change they
//! describe, so an event exists exactly when its change committed. The webhook worker sends
//! them; [`crate::App::run`] wakes it after every commit that wrote events, so no caller has to
//! remember to.

use farthing_core::{EventId, MerchantId, PublicId};
use farthing_store::{EventRecord, Tx};
use serde::Serialize;
use serde_json::json;

use crate::ids::new_sequential_id;
use crate::{AppError, Mode};

/// Event types a webhook endpoint can subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "invoice.created",
    "invoice.paid",
    "invoice.expired",
    "invoice.canceled",
    "invoice.partially_refunded",
    "invoice.refunded",
    "invoice.payment_credited",
    "rail_payment.suspended",
    "charge.succeeded",
    "refund.succeeded",
    "refund.pending",
    "refund.canceled",
    "customer.created",
    "customer.balance_changed",
    "payout.succeeded",
    "payout.failed",
    "subscription.created",
    "subscription.renewed",
    "subscription.canceled",
    "subscription.resumed",
    "refund_request.created",
    "refund_request.approved",
    "refund_request.declined",
    "stars.withdrawal",
];

/// An outbox event with its delivered body (`{id, object: "event", type, livemode, created,
/// data: {object}}`), built where it is cheapest: outside the writer's job when the object is
/// known before the job runs (creations), inside it otherwise.
pub fn event_record(
    merchant: MerchantId,
    mode: Mode,
    event_type: &str,
    object: &impl Serialize,
    created_at_ns: u64,
) -> EventRecord {
    let id: EventId = new_sequential_id();
    let body = json!({
        "id": id.encode(),
        "object": "event",
        "type": event_type,
        "livemode": mode.is_live(),
        "created": crate::wire::unix_s(created_at_ns),
        "data": {"object": object},
    });
    EventRecord {
        id,
        merchant,
        event_type: event_type.to_owned(),
        data: body.to_string(),
        created_at_ns,
    }
}

/// Writes an event (and, through the store, its deliveries) in the current job.
pub fn emit(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    mode: Mode,
    event_type: &str,
    object: &impl Serialize,
) -> Result<EventId, AppError> {
    let event = event_record(merchant, mode, event_type, object, tx.now_ns());
    tx.insert_event(&event)?;
    Ok(event.id)
}
