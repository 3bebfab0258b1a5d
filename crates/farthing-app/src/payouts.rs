//! Payouts: money leaving a balance for the outside world through a rail — a customer claiming
//! a refund or a merchant withdrawing (LNURL-withdraw, a BOLT11 payout), or a withdrawal the
//! rail reports made outside farthing (Telegram Stars to Fragment).
//!
//! A payout the rail sends is held first (a pending transfer from the balance to the rail's
//! external account, in the same job that marks what starts it), sent, then posted on success
//! or voided on failure; its ledger ids derive from the payout's key, so one payment is never
//! held (nor sent) twice.

use farthing_core::ledger::{Account, Group, Outcome, Transfer, TransferAction};
use farthing_core::{Currency, CustomerId, MerchantId, Rail, TransferId};
use farthing_store::Tx;
use sha2::{Digest, Sha256};

use crate::{book, customers, AppError, Mode};

/// The ledger ids of a payout's hold and its resolution (`hold`, `post`, `void`), from the
/// payout's key (this derivation is stored on ledgers: never change it).
pub fn transfer_id(key: &[u8; 32], step: &str) -> TransferId {
    let digest = Sha256::new()
        .chain_update(b"farthing/lightning-payout-transfer/v1\0")
        .chain_update(step.as_bytes())
        .chain_update([0u8])
        .chain_update(key)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TransferId(u128::from_be_bytes(bytes).max(1))
}

/// Where a payout's money comes from: the customer's balance, or the merchant's.
pub fn source(merchant: MerchantId, customer: Option<CustomerId>, currency: Currency) -> Account {
    match customer {
        Some(customer) => book::customer(merchant, customer, currency),
        None => book::merchant(merchant, currency),
    }
}

/// A payout to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Whose money.
    pub merchant: MerchantId,
    /// The customer whose balance pays (`None`: the merchant's).
    pub customer: Option<CustomerId>,
    /// The rail it leaves through.
    pub rail: Rail,
    /// Its currency.
    pub currency: Currency,
    /// Its key (every ledger id derives from it).
    pub key: [u8; 32],
    /// How much, in minor units.
    pub amount_minor: u64,
    /// The ledger code its transfers carry ([`book::PAYOUT`]; [`book::REFUND`] for a refund the
    /// merchant sends).
    pub code: u16,
}

/// Holds a payout in the current job (the rail's external account is credited when it is
/// posted). Refuses with `insufficient_funds` when the balance is short, and with
/// `payout_exists` when this payout was held before.
pub fn hold(tx: &mut Tx<'_, '_>, mode: Mode, payout: &Hold) -> Result<(), AppError> {
    let from = source(payout.merchant, payout.customer, payout.currency);
    let to = book::rail(payout.merchant, payout.rail, payout.currency);
    let group = Group {
        accounts: vec![from, to],
        transfers: vec![Transfer {
            id: transfer_id(&payout.key, "hold"),
            action: TransferAction::Pending {
                debit: from.id,
                credit: to.id,
                currency: payout.currency,
                amount_minor: payout.amount_minor,
                timeout_s: 0,
            },
            code: payout.code,
            reference: 0,
        }],
    };
    let outcome = tx.apply(&group)?.map_err(|error| {
        book::refusal(error, "the balance", payout.currency, payout.amount_minor)
    })?;
    if outcome.transfers.first().map(|t| t.outcome) != Some(Outcome::Created) {
        return Err(AppError::conflict(
            "payout_exists",
            "this payment was already paid out (or is being paid): a payout is never sent \
             twice; after a failed payout, ask the wallet for a new invoice",
        ));
    }
    if let Some(customer) = payout.customer {
        customers::emit_balance_changed(tx, payout.merchant, mode, customer, payout.currency)?;
    }
    Ok(())
}

/// Resolves a payout's hold in the current job: posted when the rail sent it, voided when it
/// failed (`code`: the hold's).
pub fn resolve(tx: &mut Tx<'_, '_>, key: &[u8; 32], sent: bool, code: u16) -> Result<(), AppError> {
    let pending_id = transfer_id(key, "hold");
    let (id, action) = if sent {
        (
            transfer_id(key, "post"),
            TransferAction::PostPending {
                pending_id,
                amount_minor: None,
            },
        )
    } else {
        (
            transfer_id(key, "void"),
            TransferAction::VoidPending { pending_id },
        )
    };
    let group = Group {
        accounts: Vec::new(),
        transfers: vec![Transfer {
            id,
            action,
            code,
            reference: 0,
        }],
    };
    tx.apply(&group)?
        .map_err(|error| AppError::internal(format!("a payout's hold did not resolve: {error}")))?;
    Ok(())
}

/// What booking a withdrawal made outside farthing did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Withdrawn {
    /// Booked from the merchant's balance, minor units.
    pub booked_minor: u64,
    /// What the balance could not cover (money the ledger never held for the merchant).
    pub shortfall_minor: u64,
}

/// Books, in the current job, a withdrawal a rail reports the merchant made outside farthing
/// (Stars to Fragment): merchant's balance → the rail's external account, as much as the
/// available balance covers (transfer id `id`, so a report seen twice books once); the rest is
/// the shortfall.
pub fn book_withdrawal(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    rail: Rail,
    currency: Currency,
    id: TransferId,
    amount_minor: u64,
) -> Result<Withdrawn, AppError> {
    let merchant_account = book::merchant(merchant, currency);
    let available = tx
        .account(merchant_account.id)?
        .map_or(0, |account| account.balances.available());
    let available = u64::try_from(available.max(0)).unwrap_or(u64::MAX);
    let booked_minor = amount_minor.min(available);
    if booked_minor > 0 {
        let group = book::transfer(
            id,
            merchant_account,
            book::rail(merchant, rail, currency),
            booked_minor,
            book::PAYOUT,
            0,
        );
        tx.apply(&group)?
            .map_err(|error| book::refusal(error, "the merchant", currency, booked_minor))?;
    }
    Ok(Withdrawn {
        booked_minor,
        shortfall_minor: amount_minor - booked_minor,
    })
}
