//! Scenario tests of the ledger rules (SPEC L1–L6) through the public API: `apply_group`,
//! `expire_pending`, `MemoryLedger` and the auditor.
//!
//! Every refusal goes through [`refuse`], which also checks that the refused write left the
//! ledger exactly as it was (P7: bad input changes nothing).

use farthing_core::ledger::{
    apply_group, check_invariants, code, expire_pending, Account, AccountError, AccountFlags,
    AccountKind, AccountState, Auditor, Balances, Group, GroupError, LedgerState, MemoryLedger,
    Outcome, PendingState, StoredTransfer, Transfer, TransferAction, TransferError, TransferKind,
    TransferOutcome, Violation, MAX_GROUP_ACCOUNTS, MAX_GROUP_TRANSFERS, MAX_TIMEOUT_S,
};
use farthing_core::money::MAX_AMOUNT_MINOR;
use farthing_core::{AccountId, Currency, CustomerId, MerchantId, Rail, TransferId};

/// Ledger time of the fixtures, in ns (an arbitrary wall-clock-like value).
const T0: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;
const XTR: Currency = Currency::XTR;
const SHOP: MerchantId = MerchantId(7);

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers

fn external() -> Account {
    Account::new(
        AccountKind::External {
            merchant: SHOP,
            rail: Rail::Stars,
        },
        XTR,
    )
}

fn customer(n: u128) -> Account {
    Account::new(
        AccountKind::CustomerBalance {
            merchant: SHOP,
            customer: CustomerId(n),
        },
        XTR,
    )
}

fn alice() -> Account {
    customer(1)
}

fn bob() -> Account {
    customer(2)
}

fn shop() -> Account {
    Account::new(AccountKind::MerchantBalance { merchant: SHOP }, XTR)
}

fn single(id: u128, debit: &Account, credit: &Account, amount_minor: u64) -> Transfer {
    Transfer {
        id: TransferId(id),
        action: TransferAction::Single {
            debit: debit.id,
            credit: credit.id,
            currency: XTR,
            amount_minor,
        },
        code: code::PAYMENT,
        reference: 0,
    }
}

fn hold(
    id: u128,
    debit: &Account,
    credit: &Account,
    amount_minor: u64,
    timeout_s: u32,
) -> Transfer {
    Transfer {
        id: TransferId(id),
        action: TransferAction::Pending {
            debit: debit.id,
            credit: credit.id,
            currency: XTR,
            amount_minor,
            timeout_s,
        },
        code: code::PAYMENT,
        reference: 0,
    }
}

fn post(id: u128, pending: u128, amount_minor: Option<u64>) -> Transfer {
    Transfer {
        id: TransferId(id),
        action: TransferAction::PostPending {
            pending_id: TransferId(pending),
            amount_minor,
        },
        code: code::PAYMENT,
        reference: 0,
    }
}

fn void(id: u128, pending: u128) -> Transfer {
    Transfer {
        id: TransferId(id),
        action: TransferAction::VoidPending {
            pending_id: TransferId(pending),
        },
        code: code::PAYMENT,
        reference: 0,
    }
}

fn totals(
    debits_pending: u64,
    debits_posted: u64,
    credits_pending: u64,
    credits_posted: u64,
) -> Balances {
    Balances {
        debits_pending: debits_pending.into(),
        debits_posted: debits_posted.into(),
        credits_pending: credits_pending.into(),
        credits_posted: credits_posted.into(),
    }
}

/// external, alice, bob and the shop, with alice topped up by 100 (transfer 1) at `T0`.
fn funded() -> MemoryLedger {
    let mut ledger = MemoryLedger::new();
    let group = Group {
        accounts: vec![external(), alice(), bob(), shop()],
        transfers: vec![single(1, &external(), &alice(), 100)],
    };
    apply_group(&mut ledger, &group, T0).expect("fixture applies");
    ledger
}

/// Everything observable about a ledger, in a comparable order.
#[derive(Debug, PartialEq)]
struct Snapshot {
    accounts: Vec<AccountState>,
    transfers: Vec<StoredTransfer>,
    last_timestamp_ns: u64,
}

impl Snapshot {
    fn of(ledger: &MemoryLedger) -> Snapshot {
        let mut accounts: Vec<AccountState> = ledger.accounts().copied().collect();
        accounts.sort_by_key(|state| state.account.id);
        let mut transfers: Vec<StoredTransfer> = ledger.transfers().copied().collect();
        transfers.sort_by_key(|stored| stored.record.id);
        Snapshot {
            accounts,
            transfers,
            last_timestamp_ns: ledger.last_timestamp_ns(),
        }
    }
}

/// Applies one transfer that must succeed.
fn apply(ledger: &mut MemoryLedger, transfer: Transfer, now_ns: u64) -> TransferOutcome {
    match apply_group(ledger, &Group::transfer(transfer), now_ns) {
        Ok(outcome) => outcome.transfers[0],
        Err(error) => panic!("{transfer:?} was refused: {error}"),
    }
}

/// Applies one transfer that must be refused; checks that nothing changed and returns why.
fn refuse(ledger: &mut MemoryLedger, transfer: Transfer, now_ns: u64) -> TransferError {
    let before = Snapshot::of(ledger);
    let result = apply_group(ledger, &Group::transfer(transfer), now_ns);
    assert_eq!(
        Snapshot::of(ledger),
        before,
        "refusing {transfer:?} changed the ledger"
    );
    match result {
        Err(GroupError::Transfer { index: 0, error }) => error,
        other => panic!("expected {transfer:?} to be refused, got {other:?}"),
    }
}

fn balances(ledger: &MemoryLedger, account: &Account) -> Balances {
    ledger
        .account(account.id)
        .unwrap_or_else(|| panic!("account {:?} exists", account.id))
        .balances
}

fn pending_state(ledger: &MemoryLedger, id: u128) -> Option<PendingState> {
    ledger
        .transfer(TransferId(id))
        .expect("transfer exists")
        .pending_state
}

fn assert_healthy(ledger: &MemoryLedger) {
    let violations = check_invariants(ledger.accounts(), ledger.transfers());
    assert!(violations.is_empty(), "violations: {violations:#?}");
}

// ---------------------------------------------------------------------------------------------
// Validation of new transfers

#[test]
fn malformed_transfers_are_refused_with_the_matching_error() {
    let mut ledger = funded();
    let (ext, alice, bob) = (external(), alice(), bob());
    let ton = Account::new(
        AccountKind::External {
            merchant: SHOP,
            rail: Rail::Ton,
        },
        Currency::TON,
    );
    apply_group(
        &mut ledger,
        &Group {
            accounts: vec![ton],
            transfers: vec![],
        },
        T0,
    )
    .expect("TON account is created");
    let ghost = customer(999); // never created
    let with_accounts = |debit: AccountId, credit: AccountId, currency: Currency| Transfer {
        action: TransferAction::Single {
            debit,
            credit,
            currency,
            amount_minor: 1,
        },
        ..single(10, &alice, &bob, 1)
    };
    let hold_with_accounts = |debit: AccountId, credit: AccountId| Transfer {
        action: TransferAction::Pending {
            debit,
            credit,
            currency: XTR,
            amount_minor: 1,
            timeout_s: 0,
        },
        ..single(10, &alice, &bob, 1)
    };
    use TransferError::*;
    let cases: Vec<(&str, Transfer, TransferError)> = vec![
        (
            "zero transfer id",
            Transfer {
                id: TransferId(0),
                ..single(10, &alice, &bob, 1)
            },
            IdMustNotBeZero,
        ),
        (
            "zero debit account",
            with_accounts(AccountId(0), bob.id, XTR),
            AccountIdMustNotBeZero,
        ),
        (
            "zero credit account",
            with_accounts(alice.id, AccountId(0), XTR),
            AccountIdMustNotBeZero,
        ),
        (
            "zero account on a hold",
            hold_with_accounts(AccountId(0), bob.id),
            AccountIdMustNotBeZero,
        ),
        (
            "same account on both sides",
            single(10, &alice, &alice, 1),
            AccountsMustBeDifferent,
        ),
        (
            "same account on both sides of a hold",
            hold_with_accounts(alice.id, alice.id),
            AccountsMustBeDifferent,
        ),
        (
            "zero amount",
            single(10, &alice, &bob, 0),
            AmountMustNotBeZero,
        ),
        (
            "zero hold",
            hold(10, &alice, &bob, 0, 0),
            AmountMustNotBeZero,
        ),
        (
            "amount above MAX_AMOUNT_MINOR",
            single(10, &ext, &bob, MAX_AMOUNT_MINOR + 1),
            AmountTooLarge,
        ),
        (
            "hold above MAX_AMOUNT_MINOR",
            hold(10, &ext, &bob, MAX_AMOUNT_MINOR + 1, 0),
            AmountTooLarge,
        ),
        (
            "timeout above MAX_TIMEOUT_S",
            hold(10, &alice, &bob, 1, MAX_TIMEOUT_S + 1),
            TimeoutTooLarge,
        ),
        (
            "missing debit account",
            single(10, &ghost, &bob, 1),
            DebitAccountNotFound(ghost.id),
        ),
        (
            "missing credit account",
            single(10, &alice, &ghost, 1),
            CreditAccountNotFound(ghost.id),
        ),
        (
            "missing credit account of a hold",
            hold(10, &alice, &ghost, 1, 0),
            CreditAccountNotFound(ghost.id),
        ),
        (
            "debit account holds another currency",
            with_accounts(ton.id, bob.id, XTR),
            CurrencyMismatch {
                transfer: XTR,
                debit: Currency::TON,
                credit: XTR,
            },
        ),
        (
            "credit account holds another currency",
            with_accounts(ext.id, ton.id, XTR),
            CurrencyMismatch {
                transfer: XTR,
                debit: XTR,
                credit: Currency::TON,
            },
        ),
        (
            "transfer in a currency neither account holds",
            with_accounts(alice.id, bob.id, Currency::TON),
            CurrencyMismatch {
                transfer: Currency::TON,
                debit: XTR,
                credit: XTR,
            },
        ),
    ];
    for (what, transfer, expected) in cases {
        assert_eq!(refuse(&mut ledger, transfer, T0 + SEC), expected, "{what}");
    }
    // The refused ids were never taken: a valid transfer may still use id 10.
    assert_eq!(
        apply(&mut ledger, single(10, &alice, &bob, 1), T0 + SEC).outcome,
        Outcome::Created
    );
}

#[test]
fn the_largest_amount_and_timeout_are_accepted() {
    let mut ledger = funded();
    apply(
        &mut ledger,
        single(10, &external(), &bob(), MAX_AMOUNT_MINOR - 100),
        T0 + SEC,
    );
    apply(
        &mut ledger,
        hold(11, &alice(), &shop(), 1, MAX_TIMEOUT_S),
        T0 + SEC,
    );
    // external has sent 100 + (MAX - 100) = MAX.
    assert_eq!(
        balances(&ledger, &external()).debits_posted,
        u128::from(MAX_AMOUNT_MINOR)
    );
    assert_healthy(&ledger);
}

#[test]
fn insufficient_funds_reports_what_is_available() {
    let mut ledger = funded();
    let (alice, bob) = (alice(), bob());
    // A hold of 30 reserves funds: 70 of alice's 100 remain available.
    apply(&mut ledger, hold(10, &alice, &bob, 30, 0), T0 + SEC);
    assert_eq!(
        refuse(&mut ledger, single(11, &alice, &bob, 71), T0 + SEC),
        TransferError::ExceedsCredits {
            available_minor: 70
        }
    );
    assert_eq!(
        refuse(&mut ledger, hold(11, &alice, &bob, 71, 0), T0 + SEC),
        TransferError::ExceedsCredits {
            available_minor: 70
        }
    );
    // Exactly the available amount is fine, after which nothing is left.
    apply(&mut ledger, single(11, &alice, &bob, 70), T0 + SEC);
    assert_eq!(
        refuse(&mut ledger, single(12, &alice, &bob, 1), T0 + SEC),
        TransferError::ExceedsCredits { available_minor: 0 }
    );
    // The shop has received nothing yet: a merchant balance cannot go below zero even by 1.
    assert_eq!(
        refuse(&mut ledger, single(12, &shop(), &alice, 1), T0 + SEC),
        TransferError::ExceedsCredits { available_minor: 0 }
    );
    assert_eq!(balances(&ledger, &alice), totals(30, 70, 0, 100));
    assert_healthy(&ledger);
}

#[test]
fn a_credits_limited_account_refuses_credits_beyond_its_debits() {
    let mut ledger = funded();
    let ext = external();
    let clearing = Account {
        flags: AccountFlags {
            debits_must_not_exceed_credits: false,
            credits_must_not_exceed_debits: true,
        },
        ..Account::new(
            AccountKind::RailClearing {
                merchant: SHOP,
                rail: Rail::Stars,
            },
            XTR,
        )
    };
    apply_group(
        &mut ledger,
        &Group {
            accounts: vec![clearing],
            transfers: vec![],
        },
        T0,
    )
    .expect("clearing account is created");
    assert_eq!(
        refuse(&mut ledger, single(10, &ext, &clearing, 1), T0 + SEC),
        TransferError::ExceedsDebits
    );
    // Debited 50 first, it may then be credited up to 50, pending credits included.
    apply(&mut ledger, single(10, &clearing, &ext, 50), T0 + SEC);
    apply(&mut ledger, single(11, &ext, &clearing, 40), T0 + SEC);
    apply(&mut ledger, hold(12, &ext, &clearing, 10, 0), T0 + SEC);
    assert_eq!(
        refuse(&mut ledger, single(13, &ext, &clearing, 1), T0 + SEC),
        TransferError::ExceedsDebits
    );
    assert_eq!(
        refuse(&mut ledger, hold(13, &ext, &clearing, 1, 0), T0 + SEC),
        TransferError::ExceedsDebits
    );
    assert_healthy(&ledger);
}

#[test]
fn balances_are_capped_but_lifetime_totals_keep_growing() {
    let mut ledger = funded();
    let ext = external();
    let (c3, c4) = (customer(3), customer(4));
    apply_group(
        &mut ledger,
        &Group {
            accounts: vec![c3, c4],
            transfers: vec![],
        },
        T0,
    )
    .expect("accounts are created");

    // The outside world may send MAX over and over: its totals are 128-bit and keep growing,
    // so no sequence of large transfers can block later bookings on it (the attack of one
    // merchant pushing a shared total to its limit).
    apply(
        &mut ledger,
        single(10, &ext, &c3, MAX_AMOUNT_MINOR - 1_000),
        T0 + SEC,
    );
    apply(
        &mut ledger,
        single(11, &c3, &shop(), MAX_AMOUNT_MINOR - 1_000),
        T0 + SEC,
    );
    apply(
        &mut ledger,
        single(12, &ext, &c3, MAX_AMOUNT_MINOR),
        T0 + SEC,
    );
    apply(&mut ledger, single(13, &ext, &alice(), 5), T0 + SEC);
    let totals = balances(&ledger, &ext);
    // Beyond the old 64-bit cap (i64::MAX), which would have refused everything after.
    assert!(
        totals.debits_posted > 2 * u128::from(MAX_AMOUNT_MINOR) - 2_000,
        "{totals:?}"
    );

    // What a customer holds is capped at MAX: c3 is full, one more unit is refused…
    assert_eq!(
        refuse(&mut ledger, single(14, &ext, &c3, 1), T0 + SEC),
        TransferError::BalanceTooLarge
    );
    // …also as a hold (credits reserved count as held)…
    assert_eq!(
        refuse(&mut ledger, hold(14, &ext, &c3, 1, 0), T0 + SEC),
        TransferError::BalanceTooLarge
    );
    // …but once it spends, it can be credited again.
    apply(&mut ledger, single(15, &c3, &alice(), 10), T0 + SEC);
    apply(&mut ledger, single(16, &ext, &c3, 10), T0 + SEC);
    assert_eq!(
        balances(&ledger, &c3).posted(),
        i128::from(MAX_AMOUNT_MINOR)
    );

    // A hold placed while there was room is posted even if the balance is full meanwhile:
    // posting never makes a constrained account hold more than its hold reserved.
    apply(&mut ledger, hold(17, &ext, &c4, 7, 0), T0 + SEC);
    apply(
        &mut ledger,
        single(18, &ext, &c4, MAX_AMOUNT_MINOR - 7),
        T0 + SEC,
    );
    apply(&mut ledger, post(19, 17, None), T0 + SEC);
    assert_eq!(
        balances(&ledger, &c4).posted(),
        i128::from(MAX_AMOUNT_MINOR)
    );
    assert_healthy(&ledger);
}

#[test]
fn totals_near_their_limit_refuse_rather_than_wrap() {
    // An account whose totals are at the 128-bit limit (unreachable by traffic: seeded here).
    let mut ledger = funded();
    let ext = external();
    let full = Account::new(
        AccountKind::External {
            merchant: SHOP,
            rail: Rail::Card,
        },
        XTR,
    );
    ledger.insert_account(AccountState {
        account: full,
        balances: Balances {
            debits_posted: farthing_core::ledger::MAX_TOTAL_MINOR,
            credits_posted: farthing_core::ledger::MAX_TOTAL_MINOR,
            ..Balances::default()
        },
        created_at_ns: T0,
    });
    assert_eq!(
        refuse(&mut ledger, single(10, &full, &ext, 1), T0 + SEC),
        TransferError::OverflowsBalance
    );
    assert_eq!(
        refuse(&mut ledger, single(10, &ext, &full, 1), T0 + SEC),
        TransferError::OverflowsBalance
    );
}

// ---------------------------------------------------------------------------------------------
// Posting and voiding holds

#[test]
fn posts_and_voids_of_unusable_holds_are_refused() {
    let mut ledger = funded();
    let (alice, shop) = (alice(), shop());
    let now = T0 + SEC;
    apply(&mut ledger, hold(10, &alice, &shop, 40, 0), now);
    use TransferError::*;

    assert_eq!(
        refuse(&mut ledger, post(20, 999, None), now),
        PendingTransferNotFound(TransferId(999))
    );
    assert_eq!(
        refuse(&mut ledger, void(20, 999), now),
        PendingTransferNotFound(TransferId(999))
    );
    // Transfer 1 is the fixture's single transfer, not a hold.
    assert_eq!(
        refuse(&mut ledger, post(20, 1, None), now),
        PendingTransferNotPending(TransferId(1))
    );
    assert_eq!(
        refuse(&mut ledger, void(20, 1), now),
        PendingTransferNotPending(TransferId(1))
    );
    assert_eq!(
        refuse(&mut ledger, post(20, 10, Some(41)), now),
        ExceedsPendingTransferAmount {
            requested_minor: 41,
            pending_minor: 40
        }
    );
    assert_eq!(
        refuse(&mut ledger, post(20, 10, Some(0)), now),
        AmountMustNotBeZero
    );

    apply(&mut ledger, post(20, 10, None), now);
    assert_eq!(
        refuse(&mut ledger, post(21, 10, None), now),
        PendingTransferAlreadyPosted(TransferId(10))
    );
    assert_eq!(
        refuse(&mut ledger, void(21, 10), now),
        PendingTransferAlreadyPosted(TransferId(10))
    );
    // A post is not a hold either.
    assert_eq!(
        refuse(&mut ledger, void(21, 20), now),
        PendingTransferNotPending(TransferId(20))
    );

    apply(&mut ledger, hold(30, &alice, &shop, 10, 0), now);
    apply(&mut ledger, void(31, 30), now);
    assert_eq!(
        refuse(&mut ledger, post(32, 30, None), now),
        PendingTransferAlreadyVoided(TransferId(30))
    );
    assert_eq!(
        refuse(&mut ledger, void(32, 30), now),
        PendingTransferAlreadyVoided(TransferId(30))
    );
    assert_healthy(&ledger);
}

#[test]
fn an_expired_hold_cannot_be_posted_or_voided_before_or_after_expire_pending() {
    let mut ledger = funded();
    let (alice, shop) = (alice(), shop());
    let a = apply(&mut ledger, hold(10, &alice, &shop, 40, 5), T0 + SEC).record;
    let b = apply(&mut ledger, hold(11, &alice, &shop, 20, 5), T0 + SEC).record;
    let a_expires = a.timestamp_ns + 5 * SEC;
    assert_eq!(a.expires_at_ns(), Some(a_expires));

    // One ns before its expiry a hold is still usable.
    let b_expires = b.expires_at_ns().expect("b has a timeout");
    apply(&mut ledger, post(21, 11, Some(5)), b_expires - 1);

    // At its expiry it is expired, even though expire_pending has not run yet…
    assert_eq!(
        refuse(&mut ledger, post(20, 10, None), a_expires),
        TransferError::PendingTransferExpired(TransferId(10))
    );
    assert_eq!(
        refuse(&mut ledger, void(20, 10), a_expires),
        TransferError::PendingTransferExpired(TransferId(10))
    );
    // …and until it runs, the funds stay reserved.
    assert_eq!(balances(&ledger, &alice), totals(40, 5, 0, 100));

    assert!(expire_pending(&mut ledger, TransferId(10), a_expires));
    assert_eq!(pending_state(&ledger, 10), Some(PendingState::Expired));
    assert_eq!(balances(&ledger, &alice), totals(0, 5, 0, 100));
    assert_eq!(balances(&ledger, &shop), totals(0, 0, 0, 5));
    assert_eq!(
        refuse(&mut ledger, post(20, 10, None), a_expires + SEC),
        TransferError::PendingTransferExpired(TransferId(10))
    );
    assert_eq!(
        refuse(&mut ledger, void(20, 10), a_expires + SEC),
        TransferError::PendingTransferExpired(TransferId(10))
    );
    assert_healthy(&ledger);
}

#[test]
fn a_partial_post_releases_the_rest_of_the_hold() {
    let mut ledger = funded();
    let (alice, shop) = (alice(), shop());
    apply(&mut ledger, hold(10, &alice, &shop, 60, 0), T0 + SEC);
    assert_eq!(balances(&ledger, &alice), totals(60, 0, 0, 100));
    assert_eq!(balances(&ledger, &shop), totals(0, 0, 60, 0));

    let posted = apply(&mut ledger, post(11, 10, Some(25)), T0 + SEC).record;
    assert_eq!(posted.kind, TransferKind::PostPending);
    assert_eq!(posted.amount_minor, 25);
    assert_eq!(posted.pending_id, Some(TransferId(10)));
    assert_eq!(
        (posted.debit_account_id, posted.credit_account_id),
        (alice.id, shop.id)
    );
    // Nothing is pending any more: 25 moved, 35 went back to alice.
    assert_eq!(balances(&ledger, &alice), totals(0, 25, 0, 100));
    assert_eq!(balances(&ledger, &shop), totals(0, 0, 0, 25));
    assert_eq!(balances(&ledger, &alice).available(), 75);
    assert_eq!(pending_state(&ledger, 10), Some(PendingState::Posted));
    // The released 35 is spendable again.
    apply(&mut ledger, single(12, &alice, &shop, 75), T0 + SEC);
    assert_healthy(&ledger);
}

#[test]
fn holds_reserve_funds_until_voided() {
    let mut ledger = funded();
    let (alice, bob, shop) = (alice(), bob(), shop());
    apply(&mut ledger, hold(10, &alice, &shop, 70, 0), T0 + SEC);
    assert_eq!(
        refuse(&mut ledger, hold(11, &alice, &shop, 31, 0), T0 + SEC),
        TransferError::ExceedsCredits {
            available_minor: 30
        }
    );
    assert_eq!(
        refuse(&mut ledger, single(11, &alice, &bob, 31), T0 + SEC),
        TransferError::ExceedsCredits {
            available_minor: 30
        }
    );
    // A pending credit is not spendable by its receiver either.
    assert_eq!(
        refuse(&mut ledger, single(11, &shop, &bob, 1), T0 + SEC),
        TransferError::ExceedsCredits { available_minor: 0 }
    );
    let voided = apply(&mut ledger, void(11, 10), T0 + SEC).record;
    assert_eq!(voided.kind, TransferKind::VoidPending);
    assert_eq!(voided.amount_minor, 70, "a void records what it released");
    assert_eq!(balances(&ledger, &alice), totals(0, 0, 0, 100));
    assert_eq!(balances(&ledger, &shop), totals(0, 0, 0, 0));
    apply(&mut ledger, single(12, &alice, &bob, 100), T0 + SEC);
    assert_healthy(&ledger);
}

#[test]
fn expire_pending_only_expires_open_holds_that_are_due() {
    let mut ledger = funded();
    let (alice, shop) = (alice(), shop());
    let now = T0 + SEC;
    let timed = apply(&mut ledger, hold(10, &alice, &shop, 10, 10), now).record;
    apply(&mut ledger, hold(11, &alice, &shop, 10, 0), now); // no timeout
    apply(&mut ledger, hold(12, &alice, &shop, 10, 1), now); // posted before it is due
    apply(&mut ledger, post(13, 12, None), now);
    apply(&mut ledger, hold(14, &alice, &shop, 10, 1), now); // voided before it is due
    apply(&mut ledger, void(15, 14), now);
    let due = timed.expires_at_ns().expect("hold 10 has a timeout");

    let mut open: Vec<(TransferId, u64)> = ledger.open_holds_with_timeout().collect();
    open.sort();
    assert_eq!(open, vec![(TransferId(10), due)]);

    let far_future = due + 1_000 * SEC;
    let unchanged = Snapshot::of(&ledger);
    // Not due yet; never due; already resolved; not a hold; missing.
    assert!(!expire_pending(&mut ledger, TransferId(10), due - 1));
    assert!(!expire_pending(&mut ledger, TransferId(11), far_future));
    assert!(!expire_pending(&mut ledger, TransferId(12), far_future));
    assert!(!expire_pending(&mut ledger, TransferId(14), far_future));
    assert!(!expire_pending(&mut ledger, TransferId(1), far_future));
    assert!(!expire_pending(&mut ledger, TransferId(999), far_future));
    assert_eq!(
        Snapshot::of(&ledger),
        unchanged,
        "a no-op expiry changed something"
    );

    assert!(expire_pending(&mut ledger, TransferId(10), due));
    assert_eq!(pending_state(&ledger, 10), Some(PendingState::Expired));
    // Hold 11 (10) stays reserved, hold 12 posted 10, hold 10 released.
    assert_eq!(balances(&ledger, &alice), totals(10, 10, 0, 100));
    assert_eq!(balances(&ledger, &shop), totals(0, 0, 10, 10));
    assert!(ledger.last_timestamp_ns() > unchanged.last_timestamp_ns);
    assert_eq!(ledger.open_holds_with_timeout().count(), 0);

    // Expiring twice does nothing the second time.
    let after = Snapshot::of(&ledger);
    assert!(!expire_pending(&mut ledger, TransferId(10), far_future));
    assert_eq!(Snapshot::of(&ledger), after);
    assert_healthy(&ledger);
}

// ---------------------------------------------------------------------------------------------
// Idempotency (P3)

#[test]
fn a_retry_reports_the_original_even_after_the_balance_was_spent() {
    let mut ledger = funded();
    let (alice, shop) = (alice(), shop());
    let first = apply(&mut ledger, single(10, &alice, &shop, 100), T0 + SEC);
    assert_eq!(first.outcome, Outcome::Created);
    assert_eq!(first.record.timestamp_ns, T0 + SEC);

    // Alice has nothing left, so only the idempotency check can make this retry succeed.
    let before = Snapshot::of(&ledger);
    let retry = apply(&mut ledger, single(10, &alice, &shop, 100), T0 + 9 * SEC);
    assert_eq!(retry.outcome, Outcome::Exists);
    assert_eq!(
        retry.record, first.record,
        "the original, with its timestamp"
    );
    assert_eq!(Snapshot::of(&ledger), before, "a retry changes nothing");
    // The same request under a new id is refused, which shows the funds are really gone.
    assert_eq!(
        refuse(&mut ledger, single(11, &alice, &shop, 100), T0 + 9 * SEC),
        TransferError::ExceedsCredits { available_minor: 0 }
    );
    // Retrying a hold that has been posted since also reports the original hold.
    let hold_record = apply(&mut ledger, hold(12, &shop, &alice, 30, 0), T0 + 10 * SEC).record;
    apply(&mut ledger, post(13, 12, None), T0 + 10 * SEC);
    let retry = apply(&mut ledger, hold(12, &shop, &alice, 30, 0), T0 + 11 * SEC);
    assert_eq!(
        (retry.outcome, retry.record),
        (Outcome::Exists, hold_record)
    );
    assert_healthy(&ledger);
}

#[test]
fn a_post_of_the_whole_hold_may_be_retried_with_or_without_its_amount() {
    let mut ledger = funded();
    let (alice, shop) = (alice(), shop());
    let now = T0 + SEC;
    apply(&mut ledger, hold(10, &alice, &shop, 40, 0), now);
    let explicit = apply(&mut ledger, post(11, 10, Some(40)), now).record;
    let retry = apply(&mut ledger, post(11, 10, None), now + SEC);
    assert_eq!((retry.outcome, retry.record), (Outcome::Exists, explicit));

    apply(&mut ledger, hold(20, &alice, &shop, 40, 0), now);
    let implicit = apply(&mut ledger, post(21, 20, None), now).record;
    assert_eq!(implicit.amount_minor, 40);
    let retry = apply(&mut ledger, post(21, 20, Some(40)), now + SEC);
    assert_eq!((retry.outcome, retry.record), (Outcome::Exists, implicit));
    assert_eq!(
        refuse(&mut ledger, post(21, 20, Some(39)), now + SEC),
        TransferError::ExistsWithDifferentAmount { existing_minor: 40 }
    );
    assert_eq!(balances(&ledger, &alice), totals(0, 80, 0, 100));
    assert_healthy(&ledger);
}

#[test]
fn a_retry_with_different_fields_is_refused_with_the_field_named() {
    let mut ledger = funded();
    let (alice, bob, shop) = (alice(), bob(), shop());
    let now = T0 + SEC;
    let with_ref = |transfer: Transfer| Transfer {
        reference: 7,
        ..transfer
    };
    let original_single = with_ref(single(10, &alice, &shop, 10));
    let original_hold = with_ref(hold(11, &alice, &shop, 20, 60));
    let original_post = with_ref(post(12, 11, Some(15)));
    let original_void = with_ref(void(14, 13));
    for transfer in [
        original_single,
        original_hold,
        original_post,
        with_ref(hold(13, &alice, &shop, 5, 0)),
        original_void,
    ] {
        apply(&mut ledger, transfer, now);
    }
    let action = |transfer: Transfer, action: TransferAction| Transfer { action, ..transfer };
    let single_action =
        |debit: &Account, credit: &Account, currency, amount_minor| TransferAction::Single {
            debit: debit.id,
            credit: credit.id,
            currency,
            amount_minor,
        };
    use TransferError::*;
    let cases: Vec<(&str, Transfer, TransferError)> = vec![
        (
            "single retried as a hold",
            action(original_single, hold(10, &alice, &shop, 10, 0).action),
            ExistsWithDifferentKind("a single transfer"),
        ),
        (
            "single retried as a post",
            action(original_single, post(10, 11, None).action),
            ExistsWithDifferentKind("a single transfer"),
        ),
        (
            "debit account",
            action(original_single, single_action(&bob, &shop, XTR, 10)),
            ExistsWithDifferentDebitAccount,
        ),
        (
            "credit account",
            action(original_single, single_action(&alice, &bob, XTR, 10)),
            ExistsWithDifferentCreditAccount,
        ),
        (
            "currency",
            action(
                original_single,
                single_action(&alice, &shop, Currency::TON, 10),
            ),
            ExistsWithDifferentCurrency,
        ),
        (
            "amount of a single transfer",
            action(original_single, single_action(&alice, &shop, XTR, 11)),
            ExistsWithDifferentAmount { existing_minor: 10 },
        ),
        (
            "code",
            Transfer {
                code: code::REFUND,
                ..original_single
            },
            ExistsWithDifferentCode,
        ),
        (
            "reference",
            Transfer {
                reference: 8,
                ..original_single
            },
            ExistsWithDifferentReference,
        ),
        (
            "amount of a hold",
            action(original_hold, hold(11, &alice, &shop, 21, 60).action),
            ExistsWithDifferentAmount { existing_minor: 20 },
        ),
        (
            "timeout of a hold",
            action(original_hold, hold(11, &alice, &shop, 20, 61).action),
            ExistsWithDifferentTimeout,
        ),
        (
            "hold retried as a single transfer",
            action(original_hold, single_action(&alice, &shop, XTR, 20)),
            ExistsWithDifferentKind("a pending transfer (hold)"),
        ),
        (
            "post of another hold",
            action(original_post, post(12, 13, Some(15)).action),
            ExistsWithDifferentPendingId,
        ),
        (
            "post of another amount",
            action(original_post, post(12, 11, Some(16)).action),
            ExistsWithDifferentAmount { existing_minor: 15 },
        ),
        (
            "partial post retried as a post of the whole hold",
            action(original_post, post(12, 11, None).action),
            ExistsWithDifferentAmount { existing_minor: 15 },
        ),
        (
            "post retried as a void",
            action(original_post, void(12, 11).action),
            ExistsWithDifferentKind("the posting of a hold"),
        ),
        (
            "void of another hold",
            action(original_void, void(14, 11).action),
            ExistsWithDifferentPendingId,
        ),
        (
            "void retried as a post",
            action(original_void, post(14, 13, None).action),
            ExistsWithDifferentKind("the voiding of a hold"),
        ),
        (
            "code of a void",
            Transfer {
                code: code::REFUND,
                ..original_void
            },
            ExistsWithDifferentCode,
        ),
    ];
    for (what, transfer, expected) in cases {
        assert_eq!(refuse(&mut ledger, transfer, now + SEC), expected, "{what}");
    }
    // The unchanged requests are still accepted as retries.
    for original in [original_single, original_hold, original_post, original_void] {
        assert_eq!(
            apply(&mut ledger, original, now + SEC).outcome,
            Outcome::Exists
        );
    }
}

#[test]
fn a_group_may_not_reuse_an_id_for_a_different_transfer() {
    let mut ledger = funded();
    let (ext, bob) = (external(), bob());
    let before = Snapshot::of(&ledger);
    for second in [single(20, &ext, &bob, 6), hold(20, &ext, &bob, 5, 0)] {
        let group = Group {
            accounts: vec![],
            transfers: vec![single(20, &ext, &bob, 5), second],
        };
        assert_eq!(
            apply_group(&mut ledger, &group, T0 + SEC),
            Err(GroupError::Transfer {
                index: 1,
                error: TransferError::DuplicateIdInGroup
            })
        );
        assert_eq!(Snapshot::of(&ledger), before);
    }
    // A hold and its post under one id is just as wrong.
    let group = Group {
        accounts: vec![],
        transfers: vec![hold(20, &ext, &bob, 5, 0), post(20, 20, None)],
    };
    assert_eq!(
        apply_group(&mut ledger, &group, T0 + SEC),
        Err(GroupError::Transfer {
            index: 1,
            error: TransferError::DuplicateIdInGroup
        })
    );
    // An identical repeat is an idempotent retry: it moves the money once.
    let group = Group {
        accounts: vec![],
        transfers: vec![single(20, &ext, &bob, 5), single(20, &ext, &bob, 5)],
    };
    let outcome = apply_group(&mut ledger, &group, T0 + SEC).expect("identical repeat");
    assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
    assert_eq!(outcome.transfers[1].outcome, Outcome::Exists);
    assert_eq!(outcome.transfers[1].record, outcome.transfers[0].record);
    assert_eq!(balances(&ledger, &bob), totals(0, 0, 0, 5));
    assert_healthy(&ledger);
}

// ---------------------------------------------------------------------------------------------
// Linked groups (L2)

#[test]
fn a_group_whose_last_transfer_fails_changes_nothing() {
    let mut ledger = funded();
    let (ext, alice, bob, shop) = (external(), alice(), bob(), shop());
    let carol = customer(3);
    let good = vec![
        single(10, &ext, &carol, 50),  // carol is topped up…
        single(11, &carol, &shop, 30), // …and pays out of it
        hold(12, &alice, &shop, 60, 0),
        post(13, 12, Some(10)),
    ];
    let mut transfers = good.clone();
    // Carol has 50 - 30 = 20, all of it from this very group.
    transfers.push(single(14, &carol, &bob, 21));
    let group = Group {
        accounts: vec![carol],
        transfers,
    };
    let before = Snapshot::of(&ledger);
    assert_eq!(
        apply_group(&mut ledger, &group, T0 + SEC),
        Err(GroupError::Transfer {
            index: 4,
            error: TransferError::ExceedsCredits {
                available_minor: 20
            }
        })
    );
    assert_eq!(Snapshot::of(&ledger), before);
    assert!(ledger.account(carol.id).is_none(), "carol was not created");
    for id in 10..=14 {
        assert!(ledger.transfer(TransferId(id)).is_none(), "transfer {id}");
    }
    assert_eq!(ledger.last_timestamp_ns(), before.last_timestamp_ns);

    // Without the failing transfer, the group creates carol and uses her at once.
    let group = Group {
        accounts: vec![carol],
        transfers: good,
    };
    let outcome = apply_group(&mut ledger, &group, T0 + SEC).expect("group applies");
    assert_eq!(outcome.accounts, vec![Outcome::Created]);
    assert!(outcome
        .transfers
        .iter()
        .all(|transfer| transfer.outcome == Outcome::Created));
    assert_eq!(balances(&ledger, &carol), totals(0, 30, 0, 50));
    assert_eq!(balances(&ledger, &alice), totals(0, 10, 0, 100));
    assert_eq!(balances(&ledger, &shop), totals(0, 0, 0, 40));
    assert_eq!(pending_state(&ledger, 12), Some(PendingState::Posted));

    // Retrying the whole group is a no-op that reports every part as existing.
    let after = Snapshot::of(&ledger);
    let retry = apply_group(&mut ledger, &group, T0 + 2 * SEC).expect("retry applies");
    assert_eq!(retry.accounts, vec![Outcome::Exists]);
    assert!(retry
        .transfers
        .iter()
        .zip(&outcome.transfers)
        .all(|(again, first)| again.outcome == Outcome::Exists && again.record == first.record));
    assert_eq!(Snapshot::of(&ledger), after);
    assert_healthy(&ledger);
}

#[test]
fn a_hold_can_be_placed_and_resolved_in_one_group() {
    let mut ledger = funded();
    let (alice, shop) = (alice(), shop());
    let group = Group {
        accounts: vec![],
        transfers: vec![hold(10, &alice, &shop, 30, 60), post(11, 10, None)],
    };
    apply_group(&mut ledger, &group, T0 + SEC).expect("hold and post");
    assert_eq!(pending_state(&ledger, 10), Some(PendingState::Posted));
    assert_eq!(balances(&ledger, &alice), totals(0, 30, 0, 100));
    assert_eq!(balances(&ledger, &shop), totals(0, 0, 0, 30));

    let group = Group {
        accounts: vec![],
        transfers: vec![hold(20, &alice, &shop, 30, 0), void(21, 20)],
    };
    apply_group(&mut ledger, &group, T0 + SEC).expect("hold and void");
    assert_eq!(pending_state(&ledger, 20), Some(PendingState::Voided));
    assert_eq!(balances(&ledger, &alice), totals(0, 30, 0, 100));

    // The group sees its own resolution: a second resolution of the same hold is refused.
    let group = Group {
        accounts: vec![],
        transfers: vec![
            hold(30, &alice, &shop, 30, 0),
            post(31, 30, Some(1)),
            void(32, 30),
        ],
    };
    assert_eq!(
        apply_group(&mut ledger, &group, T0 + SEC),
        Err(GroupError::Transfer {
            index: 2,
            error: TransferError::PendingTransferAlreadyPosted(TransferId(30))
        })
    );
    assert!(ledger.transfer(TransferId(30)).is_none());
    assert_healthy(&ledger);
}

#[test]
fn timestamps_strictly_increase_even_when_the_clock_does_not() {
    let mut ledger = MemoryLedger::new();
    let (ext, alice) = (external(), alice());
    let group = Group {
        accounts: vec![ext, alice],
        transfers: vec![single(1, &ext, &alice, 10), single(2, &ext, &alice, 10)],
    };
    let outcome = apply_group(&mut ledger, &group, T0).expect("group applies");
    let created: Vec<u64> = [ext, alice]
        .iter()
        .map(|account| ledger.account(account.id).expect("exists").created_at_ns)
        .collect();
    assert_eq!(created, vec![T0, T0 + 1]);
    let stamps: Vec<u64> = outcome
        .transfers
        .iter()
        .map(|transfer| transfer.record.timestamp_ns)
        .collect();
    assert_eq!(stamps, vec![T0 + 2, T0 + 3]);

    // The same instant again, then a clock that went back: still later than everything.
    assert_eq!(
        apply(&mut ledger, single(3, &ext, &alice, 1), T0)
            .record
            .timestamp_ns,
        T0 + 4
    );
    assert_eq!(
        apply(&mut ledger, hold(4, &ext, &alice, 1, 1), T0 - 60 * SEC)
            .record
            .timestamp_ns,
        T0 + 5
    );
    // A clock ahead of the ledger is used as is.
    assert_eq!(
        apply(&mut ledger, single(5, &ext, &alice, 1), T0 + 10 * SEC)
            .record
            .timestamp_ns,
        T0 + 10 * SEC
    );
    // Expiry at a time earlier than the last write still moves ledger time forward.
    assert!(expire_pending(&mut ledger, TransferId(4), T0 + 5 + SEC));
    assert_eq!(ledger.last_timestamp_ns(), T0 + 10 * SEC + 1);
    assert_eq!(
        apply(&mut ledger, single(6, &ext, &alice, 1), T0 + 2 * SEC)
            .record
            .timestamp_ns,
        T0 + 10 * SEC + 2
    );
}

// ---------------------------------------------------------------------------------------------
// Groups and accounts

#[test]
fn empty_and_oversized_groups_are_refused() {
    let mut ledger = funded();
    let before = Snapshot::of(&ledger);
    assert_eq!(
        apply_group(&mut ledger, &Group::default(), T0),
        Err(GroupError::Empty)
    );
    let (ext, bob) = (external(), bob());
    let many_transfers = |n: u128| Group {
        accounts: vec![],
        transfers: (0..n).map(|i| single(100 + i, &ext, &bob, 1)).collect(),
    };
    let many_accounts = |n: u128| Group {
        accounts: (0..n).map(|i| customer(100 + i)).collect(),
        transfers: vec![],
    };
    let limit_t = MAX_GROUP_TRANSFERS as u128;
    let limit_a = MAX_GROUP_ACCOUNTS as u128;
    assert_eq!(
        apply_group(&mut ledger, &many_transfers(limit_t + 1), T0),
        Err(GroupError::TooLarge)
    );
    assert_eq!(
        apply_group(&mut ledger, &many_accounts(limit_a + 1), T0),
        Err(GroupError::TooLarge)
    );
    assert_eq!(Snapshot::of(&ledger), before);
    // Exactly at the limits is fine.
    apply_group(&mut ledger, &many_transfers(limit_t), T0).expect("largest group of transfers");
    apply_group(&mut ledger, &many_accounts(limit_a), T0).expect("largest group of accounts");
    assert_eq!(
        balances(&ledger, &bob).credits_posted,
        MAX_GROUP_TRANSFERS as u128
    );
    assert_healthy(&ledger);
}

#[test]
fn account_ids_are_derived_from_kind_owner_and_currency() {
    let kinds = [
        AccountKind::CustomerBalance {
            merchant: MerchantId(1),
            customer: CustomerId(2),
        },
        // The same numbers in the other roles.
        AccountKind::CustomerBalance {
            merchant: MerchantId(2),
            customer: CustomerId(1),
        },
        AccountKind::CustomerBalance {
            merchant: MerchantId(1),
            customer: CustomerId(3),
        },
        AccountKind::MerchantBalance {
            merchant: MerchantId(1),
        },
        AccountKind::MerchantBalance {
            merchant: MerchantId(2),
        },
        AccountKind::MerchantPending {
            merchant: MerchantId(1),
        },
        AccountKind::PlatformFees {
            merchant: MerchantId(1),
        },
        AccountKind::PlatformFees {
            merchant: MerchantId(2),
        },
        AccountKind::RailClearing {
            merchant: MerchantId(1),
            rail: Rail::Stars,
        },
        AccountKind::RailClearing {
            merchant: MerchantId(1),
            rail: Rail::Ton,
        },
        AccountKind::RailClearing {
            merchant: MerchantId(2),
            rail: Rail::Stars,
        },
        AccountKind::External {
            merchant: MerchantId(1),
            rail: Rail::Stars,
        },
        AccountKind::External {
            merchant: MerchantId(1),
            rail: Rail::Ton,
        },
        AccountKind::External {
            merchant: MerchantId(2),
            rail: Rail::Stars,
        },
        AccountKind::Suspense {
            merchant: MerchantId(1),
            rail: Rail::Stars,
        },
        AccountKind::Suspense {
            merchant: MerchantId(2),
            rail: Rail::Stars,
        },
    ];
    let mut ids = Vec::new();
    for kind in kinds {
        for currency in [Currency::XTR, Currency::TON, Currency::USDT] {
            let id = AccountId::derive(&kind, currency);
            assert_eq!(id, AccountId::derive(&kind, currency), "deterministic");
            assert!(!id.is_zero());
            let account = Account::new(kind, currency);
            assert_eq!(account.id, id);
            assert_eq!(account.flags, kind.default_flags());
            ids.push(id);
        }
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        count,
        "every (kind, owner, currency) has its own id"
    );
    // Balances owed to someone cannot go negative; the outside world can.
    assert!(customer(1).flags.debits_must_not_exceed_credits);
    assert!(shop().flags.debits_must_not_exceed_credits);
    assert_eq!(external().flags, AccountFlags::default());
}

#[test]
fn conflicting_account_definitions_are_refused() {
    let mut ledger = funded();
    let alice = alice();
    let before = Snapshot::of(&ledger);
    let refuse_account = |ledger: &mut MemoryLedger, account: Account| {
        let result = apply_group(
            ledger,
            &Group {
                accounts: vec![account],
                transfers: vec![],
            },
            T0 + SEC,
        );
        assert_eq!(Snapshot::of(ledger), before, "refusing {account:?}");
        match result {
            Err(GroupError::Account { index: 0, error }) => error,
            other => panic!("expected {account:?} to be refused, got {other:?}"),
        }
    };
    use AccountError::*;
    let cases = [
        (
            "zero id",
            Account {
                id: AccountId(0),
                ..customer(3)
            },
            IdMustNotBeZero,
        ),
        (
            "another kind",
            Account {
                kind: AccountKind::MerchantBalance { merchant: SHOP },
                ..alice
            },
            ExistsWithDifferentKind,
        ),
        (
            "another owner",
            Account {
                kind: customer(3).kind,
                ..alice
            },
            ExistsWithDifferentKind,
        ),
        (
            "another currency",
            Account {
                currency: Currency::TON,
                ..alice
            },
            ExistsWithDifferentCurrency,
        ),
        (
            "other flags",
            Account {
                flags: AccountFlags::default(),
                ..alice
            },
            ExistsWithDifferentFlags,
        ),
        (
            "both flags",
            Account {
                flags: AccountFlags {
                    debits_must_not_exceed_credits: true,
                    credits_must_not_exceed_debits: true,
                },
                ..customer(3)
            },
            FlagsAreMutuallyExclusive,
        ),
    ];
    for (what, account, expected) in cases {
        assert_eq!(refuse_account(&mut ledger, account), expected, "{what}");
    }
    // An identical definition is an idempotent retry.
    let outcome = apply_group(
        &mut ledger,
        &Group {
            accounts: vec![alice],
            transfers: vec![],
        },
        T0 + SEC,
    )
    .expect("identical account");
    assert_eq!(outcome.accounts, vec![Outcome::Exists]);
    assert_eq!(Snapshot::of(&ledger), before);

    // A group sees its own accounts: a conflict with an earlier one fails the whole group.
    let carol = customer(3);
    let group = Group {
        accounts: vec![
            carol,
            Account {
                currency: Currency::TON,
                ..carol
            },
        ],
        transfers: vec![],
    };
    assert_eq!(
        apply_group(&mut ledger, &group, T0 + SEC),
        Err(GroupError::Account {
            index: 1,
            error: ExistsWithDifferentCurrency
        })
    );
    assert!(ledger.account(carol.id).is_none());
}

// ---------------------------------------------------------------------------------------------
// The auditor (L5)

/// A ledger that has seen every kind of write: singles, a partial post, a void, an expiry, an
/// open hold, a group that created an account.
fn busy_ledger() -> MemoryLedger {
    let mut ledger = funded();
    let (ext, alice, bob, shop) = (external(), alice(), bob(), shop());
    let now = T0 + SEC;
    apply(&mut ledger, single(10, &alice, &shop, 10), now);
    apply(&mut ledger, hold(11, &alice, &shop, 20, 0), now);
    apply(&mut ledger, post(12, 11, Some(15)), now);
    apply(&mut ledger, hold(13, &alice, &bob, 5, 0), now);
    apply(&mut ledger, void(14, 13), now);
    let expiring = apply(&mut ledger, hold(15, &alice, &shop, 7, 1), now).record;
    apply(&mut ledger, hold(16, &alice, &bob, 3, 0), now);
    let carol = customer(3);
    let group = Group {
        accounts: vec![carol],
        transfers: vec![single(17, &ext, &carol, 9), single(18, &carol, &shop, 4)],
    };
    apply_group(&mut ledger, &group, now).expect("group applies");
    let due = expiring.expires_at_ns().expect("timeout");
    assert!(expire_pending(&mut ledger, TransferId(15), due));
    ledger
}

fn audit(accounts: &[AccountState], transfers: &[StoredTransfer]) -> Vec<Violation> {
    check_invariants(accounts, transfers)
}

fn parts(ledger: &MemoryLedger) -> (Vec<AccountState>, Vec<StoredTransfer>) {
    let snapshot = Snapshot::of(ledger);
    (snapshot.accounts, snapshot.transfers)
}

fn position(accounts: &[AccountState], account: &Account) -> usize {
    accounts
        .iter()
        .position(|state| state.account.id == account.id)
        .expect("account is listed")
}

#[test]
fn the_auditor_finds_nothing_wrong_with_a_healthy_ledger() {
    let ledger = busy_ledger();
    let (accounts, transfers) = parts(&ledger);
    let mut auditor = Auditor::new();
    for state in &accounts {
        auditor.add_account(state);
    }
    // Streaming order must not matter: posts may come before their holds.
    for stored in transfers.iter().rev() {
        auditor.add_transfer(stored);
    }
    assert_eq!(auditor.accounts_seen(), 5);
    assert_eq!(auditor.transfers_seen(), 10);
    assert_eq!(auditor.finish(), vec![]);
    assert_eq!(audit(&accounts, &transfers), vec![]);
}

#[test]
fn the_auditor_detects_a_tampered_balance() {
    let (mut accounts, transfers) = parts(&busy_ledger());
    let i = position(&accounts, &alice());
    let computed = accounts[i].balances;
    accounts[i].balances.credits_posted += 1;
    assert_eq!(
        audit(&accounts, &transfers),
        vec![
            Violation::BalanceMismatch {
                account: alice().id,
                stored: accounts[i].balances,
                computed,
            },
            Violation::Unbalanced {
                currency: XTR,
                posted_difference: 1,
                pending_difference: 0,
            },
        ]
    );
}

#[test]
fn the_auditor_detects_a_missing_account() {
    let (mut accounts, transfers) = parts(&busy_ledger());
    accounts.remove(position(&accounts, &shop()));
    let violations = audit(&accounts, &transfers);
    // Every transfer that credits the shop now names a missing account.
    for id in [10, 11, 12, 15, 18] {
        assert!(
            violations.iter().any(|violation| matches!(
                violation,
                Violation::DanglingReference { transfer, .. } if *transfer == TransferId(id)
            )),
            "transfer {id} not reported in {violations:#?}"
        );
    }
    // Without the shop's balance the rest no longer sums to zero.
    assert!(violations
        .iter()
        .any(|violation| matches!(violation, Violation::Unbalanced { .. })));
}

#[test]
fn the_auditor_detects_a_transfer_booked_on_one_side_only() {
    let (mut accounts, transfers) = parts(&busy_ledger());
    // Take the credit side of payment 10 (10 to the shop) out of the shop's totals.
    let i = position(&accounts, &shop());
    accounts[i].balances.credits_posted -= 10;
    let violations = audit(&accounts, &transfers);
    assert!(
        violations.contains(&Violation::Unbalanced {
            currency: XTR,
            posted_difference: -10,
            pending_difference: 0,
        }),
        "{violations:#?}"
    );
    // The same on the pending side: drop alice's reservation for open hold 16.
    let (mut accounts, transfers) = parts(&busy_ledger());
    let i = position(&accounts, &alice());
    accounts[i].balances.debits_pending -= 3;
    assert!(
        audit(&accounts, &transfers).contains(&Violation::Unbalanced {
            currency: XTR,
            posted_difference: 0,
            pending_difference: 3,
        })
    );
}

#[test]
fn the_auditor_detects_broken_holds_and_constraints() {
    let ledger = busy_ledger();

    // A post whose hold is gone.
    let (accounts, mut transfers) = parts(&ledger);
    transfers.retain(|stored| stored.record.id != TransferId(11));
    let violations = audit(&accounts, &transfers);
    assert!(
        matches!(violations.as_slice(), [Violation::DanglingReference { transfer, .. }] if *transfer == TransferId(12)),
        "{violations:#?}"
    );

    // A posted hold marked open again: it is named by a post and counts twice.
    let (accounts, mut transfers) = parts(&ledger);
    for stored in &mut transfers {
        if stored.record.id == TransferId(11) {
            stored.pending_state = Some(PendingState::Pending);
        }
    }
    let violations = audit(&accounts, &transfers);
    assert!(violations.iter().any(|violation| matches!(
        violation,
        Violation::DanglingReference { transfer, .. } if *transfer == TransferId(11)
    )));
    assert!(violations
        .iter()
        .any(|violation| matches!(violation, Violation::BalanceMismatch { .. })));

    // A customer balance below zero.
    let (mut accounts, transfers) = parts(&ledger);
    let i = position(&accounts, &bob());
    accounts[i].balances.debits_posted += 1_000;
    assert!(
        audit(&accounts, &transfers).contains(&Violation::ConstraintBroken {
            account: bob().id,
            balances: accounts[i].balances,
        })
    );
}
