//! The ledger accounts and transfers the service books on, and what a ledger refusal means
//! to a caller. Every account belongs to one merchant (SPEC L1).

use farthing_core::ledger::{
    code, Account, AccountKind, Group, GroupError, Transfer, TransferAction, TransferError,
};
use farthing_core::{Currency, CustomerId, MerchantId, Rail, TransferId};

use crate::AppError;

/// The transfer codes the service uses.
pub use code::{CHARGE, PAYMENT, PAYOUT, REFUND, SUSPENSE, TOP_UP};

/// A customer's balance with a merchant.
pub fn customer(merchant: MerchantId, customer: CustomerId, currency: Currency) -> Account {
    Account::new(
        AccountKind::CustomerBalance { merchant, customer },
        currency,
    )
}

/// A merchant's balance.
pub fn merchant(merchant: MerchantId, currency: Currency) -> Account {
    Account::new(AccountKind::MerchantBalance { merchant }, currency)
}

/// Where a merchant's sandbox money comes from.
pub fn sandbox(merchant: MerchantId, currency: Currency) -> Account {
    rail(merchant, Rail::Sandbox, currency)
}

/// A merchant's external account on a rail: where money paid to that merchant on the rail
/// comes from and where money it refunds through the rail goes. Per merchant (SPEC L1), so no
/// merchant's bookings can change what another's can book.
pub fn rail(merchant: MerchantId, rail: Rail, currency: Currency) -> Account {
    Account::new(AccountKind::External { merchant, rail }, currency)
}

/// A merchant's suspense account on a rail: money the rail reported that could not be booked
/// where it belongs waits here for an operator (never dropped).
pub fn suspense(merchant: MerchantId, rail: Rail, currency: Currency) -> Account {
    Account::new(AccountKind::Suspense { merchant, rail }, currency)
}

/// One transfer `from` → `to`, creating both accounts if needed.
pub fn transfer(
    id: TransferId,
    from: Account,
    to: Account,
    amount_minor: u64,
    code: u16,
    reference: u128,
) -> Group {
    Group {
        accounts: vec![from, to],
        transfers: vec![Transfer {
            id,
            action: TransferAction::Single {
                debit: from.id,
                credit: to.id,
                currency: from.currency,
                amount_minor,
            },
            code,
            reference,
        }],
    }
}

/// What a ledger refusal means to the caller: `who` is whose balance paid ("the customer"),
/// `requested_minor` what was asked for.
pub fn refusal(error: GroupError, who: &str, currency: Currency, requested_minor: u64) -> AppError {
    match error {
        GroupError::Transfer {
            error: TransferError::ExceedsCredits { available_minor },
            ..
        } => AppError::InsufficientFunds {
            code: "insufficient_funds",
            message: format!(
                "insufficient funds: {who} has {} available and {} was asked",
                currency_amount(available_minor, currency),
                currency_amount(requested_minor, currency),
            ),
            available_minor: Some(available_minor),
            requested_minor: Some(requested_minor),
            param: None,
        },
        GroupError::Transfer {
            error: TransferError::DebitAccountNotFound(_),
            ..
        } => AppError::InsufficientFunds {
            code: "insufficient_funds",
            message: format!(
                "insufficient funds: {who} has no {currency} balance and {} was asked",
                currency_amount(requested_minor, currency)
            ),
            available_minor: Some(0),
            requested_minor: Some(requested_minor),
            param: None,
        },
        GroupError::Transfer {
            error: TransferError::OverflowsBalance | TransferError::BalanceTooLarge,
            ..
        } => AppError::invalid(
            "amount_too_large",
            format!(
                "the amount would take a balance beyond the largest amount farthing stores ({} minor units)",
                farthing_core::money::MAX_AMOUNT_MINOR
            ),
        ),
        other => AppError::internal(format!("ledger refused a write: {other}")),
    }
}

/// An amount as a person reads it in messages: "5 XTR" for currencies without minor units,
/// "250 BTC minor units (satoshis)"-style wording is avoided: minor units are named as such
/// only where the currency has them.
pub fn currency_amount(amount_minor: u64, currency: Currency) -> String {
    match farthing_core::Money::new(amount_minor, currency) {
        Ok(money) if currency.exponent() > 0 => format!(
            "{} {currency} ({amount_minor} minor units)",
            money.to_decimal_string()
        ),
        _ => format!("{amount_minor} {currency}"),
    }
}
