//! Charges (SPEC PR2): pay-per-use debits of a customer's balance, at once.

use farthing_core::{ChargeId, Currency, CustomerId, MerchantId, PublicId, TransferId};
use farthing_store::{Charge, EventRecord, Tx};

use crate::ids::new_id;
use crate::outbox::event_record;
use crate::{book, customers, wire, App, AppError, Mode};

/// Longest charge description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// A charge to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Whose balance pays.
    pub customer: CustomerId,
    /// How much, in minor units.
    pub amount_minor: u64,
    /// Of which currency.
    pub currency: Currency,
    /// Shown in statements.
    pub description: String,
    /// The merchant's key/value data, kept on the charge (checked by the caller).
    pub metadata: Vec<(String, String)>,
}

/// A checked charge, not booked yet, with its `charge.succeeded` event, built outside the
/// writer's job.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The charge.
    pub charge: Charge,
    /// Its event.
    pub event: EventRecord,
}

/// Checks a charge request and builds the charge (new id, now).
pub fn prepare(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    request: ChargeRequest,
) -> Result<Prepared, AppError> {
    if request.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(AppError::invalid(
            "invalid_description",
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        )
        .param("description"));
    }
    let charge = Charge {
        id: new_id::<ChargeId>(),
        merchant,
        customer: request.customer,
        currency: request.currency,
        amount_minor: request.amount_minor,
        refunded_minor: 0,
        description: request.description,
        metadata: request.metadata,
        created_at_ns: app.now_ns(),
    };
    let object = wire::charge(&charge, mode);
    let event = event_record(
        merchant,
        mode,
        "charge.succeeded",
        &object,
        charge.created_at_ns,
    );
    Ok(Prepared { charge, event })
}

/// Books a prepared charge in the current job: the customer's balance → the merchant's
/// (transfer id = charge id); `insufficient_funds` writes nothing.
pub fn book(tx: &mut Tx<'_, '_>, mode: Mode, prepared: &Prepared) -> Result<(), AppError> {
    let charge = &prepared.charge;
    let (merchant, customer, currency) = (charge.merchant, charge.customer, charge.currency);
    customers::require(tx, merchant, customer)?;
    let group = book::transfer(
        TransferId(charge.id.raw()),
        book::customer(merchant, customer, currency),
        book::merchant(merchant, currency),
        charge.amount_minor,
        book::CHARGE,
        charge.id.raw(),
    );
    // The charge's id was made in `prepare`, at random: no earlier transfer has it.
    tx.apply_fresh(&group)?
        .map_err(|error| book::refusal(error, "the customer", currency, charge.amount_minor))?;
    tx.insert_charge(charge)?;
    tx.insert_event(&prepared.event)?;
    customers::emit_balance_changed(tx, merchant, mode, customer, currency)
}
