//! Model-based tests of the ledger: random sequences of transfers, holds, posts, voids, retries,
//! clock jumps with expiry, and linked groups, run both against `MemoryLedger` (through
//! `apply_group` and `expire_pending`) and against a deliberately naive reference model written
//! here: four plain `i128` totals per account and a map of open holds.
//!
//! After every step the two must agree on the result of the step (the exact record or the exact
//! error), on every balance, on every stored transfer and on ledger time; the auditor must find
//! nothing wrong; and no customer or merchant balance may be overdrawn (SPEC L4, L5).

use std::collections::BTreeMap;

use farthing_core::ledger::{
    apply_group, check_invariants, code, expire_pending, Account, AccountKind, Balances, Group,
    GroupError, LedgerState, MemoryLedger, Outcome, PendingState, StoredTransfer, Transfer,
    TransferAction, TransferError, TransferKind, TransferOutcome, TransferRecord, MAX_TIMEOUT_S,
};
use farthing_core::{AccountId, Currency, CustomerId, MerchantId, Rail, TransferId};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const SEC: u64 = 1_000_000_000;
const START_NS: u64 = 1_000 * SEC;
const XTR: Currency = Currency::XTR;
/// Account 0 is the outside world and may go negative; 1..=3 are customer balances and 4 is the
/// merchant's balance, none of which may.
const EXTERNAL: usize = 0;
const ACCOUNTS: usize = 5;
/// An id the test never hands out (fresh ids count up from 1).
const NEVER_USED: TransferId = TransferId(u128::MAX);
/// How many of the newest holds a post or void picks from, so that most of them hit open holds.
const RECENT_HOLDS: usize = 4;

fn account(i: usize) -> Account {
    let merchant = MerchantId(1);
    let kind = match i {
        EXTERNAL => AccountKind::External {
            merchant: MerchantId(1),
            rail: Rail::Stars,
        },
        4 => AccountKind::MerchantBalance { merchant },
        n => AccountKind::CustomerBalance {
            merchant,
            customer: CustomerId(n as u128),
        },
    };
    Account::new(kind, XTR)
}

/// The model's own idea of which balances cannot go below zero (not read from the ledger).
fn cannot_go_negative(i: usize) -> bool {
    i != EXTERNAL
}

// ---------------------------------------------------------------------------------------------
// Operations and their generators

/// Which transfer a post or void names.
#[derive(Clone, Debug)]
enum HoldRef {
    /// One of the newest holds (often still open).
    Recent(Index),
    /// Any transfer written so far (often not a hold, or already resolved).
    Any(Index),
    /// An id that does not exist.
    Missing,
}

/// How much a post asks for.
#[derive(Clone, Debug)]
enum PostAmount {
    /// `None`: the whole hold.
    Whole,
    /// The hold's amount, spelled out.
    Exact,
    /// Some amount in 1..=reserved.
    Part(Index),
    /// One more than reserved.
    TooMuch,
    /// Zero.
    Zero,
}

/// A write with a fresh id.
#[derive(Clone, Debug)]
enum Move {
    Transfer {
        debit: usize,
        credit: usize,
        amount: u64,
    },
    Hold {
        debit: usize,
        credit: usize,
        amount: u64,
        timeout_s: u32,
    },
    Post {
        hold: HoldRef,
        amount: PostAmount,
    },
    Void {
        hold: HoldRef,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Move(Move),
    /// The same request as an earlier successful write (for a post of a whole hold, possibly
    /// switching between `None` and the explicit amount).
    Retry {
        which: Index,
        switch_whole: bool,
    },
    /// An earlier successful write's id with one field changed.
    RetryChanged {
        which: Index,
        change: Index,
    },
    /// Let time pass, then (usually) run expire_pending over every open hold with a timeout.
    Advance {
        ns: u64,
        expire: bool,
    },
    /// Set the clock to the earliest expiry of an open hold, or 1 ns before it (`early`):
    /// random steps would almost never hit that boundary exactly.
    AdvanceToExpiry {
        early: bool,
        expire: bool,
    },
    /// expire_pending on one arbitrary id.
    ExpireOne(Index),
    /// A linked group of fresh writes; any member may fail, failing all.
    Group(Vec<Move>),
}

fn account_index() -> impl Strategy<Value = usize> {
    // The external account pays often enough to keep the balances funded.
    prop_oneof![2 => Just(EXTERNAL), 5 => 0..ACCOUNTS]
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 12 => 1..=60u64, 2 => 61..=400u64]
}

fn timeout() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => Just(0u32),
        4 => 1..=5u32,
        1 => Just(MAX_TIMEOUT_S),
        1 => Just(MAX_TIMEOUT_S + 1),
    ]
}

fn hold_ref() -> impl Strategy<Value = HoldRef> {
    prop_oneof![
        8 => any::<Index>().prop_map(HoldRef::Recent),
        1 => any::<Index>().prop_map(HoldRef::Any),
        1 => Just(HoldRef::Missing),
    ]
}

fn post_amount() -> impl Strategy<Value = PostAmount> {
    prop_oneof![
        3 => Just(PostAmount::Whole),
        2 => Just(PostAmount::Exact),
        4 => any::<Index>().prop_map(PostAmount::Part),
        1 => Just(PostAmount::TooMuch),
        1 => Just(PostAmount::Zero),
    ]
}

fn a_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => (account_index(), account_index(), amount())
            .prop_map(|(debit, credit, amount)| Move::Transfer { debit, credit, amount }),
        3 => (account_index(), account_index(), amount(), timeout()).prop_map(
            |(debit, credit, amount, timeout_s)| Move::Hold { debit, credit, amount, timeout_s }
        ),
        3 => (hold_ref(), post_amount()).prop_map(|(hold, amount)| Move::Post { hold, amount }),
        1 => hold_ref().prop_map(|hold| Move::Void { hold }),
    ]
}

fn clock_step() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 1..1_000u64,
        2 => SEC / 2..=2 * SEC,
        // Past every timeout the generator uses (at most 5 s).
        1 => 3 * SEC..=10 * SEC,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => a_move().prop_map(Op::Move),
        2 => (any::<Index>(), any::<bool>())
            .prop_map(|(which, switch_whole)| Op::Retry { which, switch_whole }),
        2 => (any::<Index>(), any::<Index>())
            .prop_map(|(which, change)| Op::RetryChanged { which, change }),
        2 => (clock_step(), prop::bool::weighted(0.75))
            .prop_map(|(ns, expire)| Op::Advance { ns, expire }),
        1 => (any::<bool>(), any::<bool>())
            .prop_map(|(early, expire)| Op::AdvanceToExpiry { early, expire }),
        1 => any::<Index>().prop_map(Op::ExpireOne),
        2 => prop::collection::vec(a_move(), 2..=3).prop_map(Op::Group),
    ]
}

// ---------------------------------------------------------------------------------------------
// The reference model

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    debits_pending: i128,
    debits_posted: i128,
    credits_pending: i128,
    credits_posted: i128,
}

impl Totals {
    fn of(balances: Balances) -> Totals {
        Totals {
            debits_pending: i128::try_from(balances.debits_pending).expect("small"),
            debits_posted: i128::try_from(balances.debits_posted).expect("small"),
            credits_pending: i128::try_from(balances.credits_pending).expect("small"),
            credits_posted: i128::try_from(balances.credits_posted).expect("small"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct OpenHold {
    debit: usize,
    credit: usize,
    amount: u64,
    expires_at_ns: Option<u64>,
}

#[derive(Clone, Debug)]
struct Model {
    ids: [AccountId; ACCOUNTS],
    now_ns: u64,
    last_timestamp_ns: u64,
    totals: [Totals; ACCOUNTS],
    open: BTreeMap<TransferId, OpenHold>,
    /// Holds that are no longer open, and how they ended.
    closed: BTreeMap<TransferId, PendingState>,
    /// Every hold, oldest first.
    holds: Vec<TransferId>,
    /// Every transfer written: the request and the record it must have produced.
    written: Vec<(Transfer, TransferRecord)>,
    position: BTreeMap<TransferId, usize>,
    next_id: u128,
}

impl Model {
    /// The model after the ledger created the five accounts at `START_NS`.
    fn new() -> Model {
        Model {
            ids: std::array::from_fn(|i| account(i).id),
            now_ns: START_NS,
            // Each account creation takes one timestamp.
            last_timestamp_ns: START_NS + ACCOUNTS as u64 - 1,
            totals: [Totals::default(); ACCOUNTS],
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            holds: Vec::new(),
            written: Vec::new(),
            position: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Ledger time of the next write: the clock, but always after the previous write.
    fn tick(&mut self) -> u64 {
        self.last_timestamp_ns = self.now_ns.max(self.last_timestamp_ns + 1);
        self.last_timestamp_ns
    }

    fn index(&self, id: AccountId) -> usize {
        self.ids
            .iter()
            .position(|known| *known == id)
            .expect("the test only names its own accounts")
    }

    fn available(&self, i: usize) -> i128 {
        let t = self.totals[i];
        t.credits_posted - t.debits_posted - t.debits_pending
    }

    fn record(&self, id: TransferId) -> Option<TransferRecord> {
        self.position.get(&id).map(|&i| self.written[i].1)
    }

    /// What a transfer with a fresh id does: its record, or why it is refused.
    fn write(&mut self, transfer: Transfer) -> Result<TransferRecord, TransferError> {
        let record = match transfer.action {
            TransferAction::Single {
                debit,
                credit,
                amount_minor,
                ..
            } => self.book(&transfer, debit, credit, amount_minor, None)?,
            TransferAction::Pending {
                debit,
                credit,
                amount_minor,
                timeout_s,
                ..
            } => self.book(&transfer, debit, credit, amount_minor, Some(timeout_s))?,
            TransferAction::PostPending {
                pending_id,
                amount_minor,
            } => self.resolve(&transfer, pending_id, Some(amount_minor))?,
            TransferAction::VoidPending { pending_id } => {
                self.resolve(&transfer, pending_id, None)?
            }
        };
        self.position.insert(record.id, self.written.len());
        self.written.push((transfer, record));
        Ok(record)
    }

    /// A single transfer (`timeout_s` = `None`) or a hold.
    fn book(
        &mut self,
        transfer: &Transfer,
        debit: AccountId,
        credit: AccountId,
        amount: u64,
        timeout_s: Option<u32>,
    ) -> Result<TransferRecord, TransferError> {
        let (d, c) = (self.index(debit), self.index(credit));
        if timeout_s.is_some_and(|timeout| timeout > MAX_TIMEOUT_S) {
            return Err(TransferError::TimeoutTooLarge);
        }
        if d == c {
            return Err(TransferError::AccountsMustBeDifferent);
        }
        if amount == 0 {
            return Err(TransferError::AmountMustNotBeZero);
        }
        let available = self.available(d);
        if cannot_go_negative(d) && available < i128::from(amount) {
            return Err(TransferError::ExceedsCredits {
                available_minor: u64::try_from(available).expect("never negative"),
            });
        }
        let timestamp_ns = self.tick();
        let a = i128::from(amount);
        let kind = match timeout_s {
            Some(timeout) => {
                self.totals[d].debits_pending += a;
                self.totals[c].credits_pending += a;
                let expires_at_ns = (timeout > 0).then(|| timestamp_ns + u64::from(timeout) * SEC);
                let hold = OpenHold {
                    debit: d,
                    credit: c,
                    amount,
                    expires_at_ns,
                };
                self.open.insert(transfer.id, hold);
                self.holds.push(transfer.id);
                TransferKind::Pending
            }
            None => {
                self.totals[d].debits_posted += a;
                self.totals[c].credits_posted += a;
                TransferKind::Single
            }
        };
        Ok(TransferRecord {
            id: transfer.id,
            kind,
            debit_account_id: debit,
            credit_account_id: credit,
            currency: XTR,
            amount_minor: amount,
            pending_id: None,
            timeout_s: timeout_s.unwrap_or(0),
            code: transfer.code,
            reference: transfer.reference,
            timestamp_ns,
        })
    }

    /// A post (`post` = `Some(requested amount)`) or a void of `pending_id`.
    fn resolve(
        &mut self,
        transfer: &Transfer,
        pending_id: TransferId,
        post: Option<Option<u64>>,
    ) -> Result<TransferRecord, TransferError> {
        let Some(hold) = self.open.get(&pending_id).copied() else {
            return Err(match self.closed.get(&pending_id) {
                Some(PendingState::Posted) => {
                    TransferError::PendingTransferAlreadyPosted(pending_id)
                }
                Some(PendingState::Voided) => {
                    TransferError::PendingTransferAlreadyVoided(pending_id)
                }
                Some(PendingState::Expired) => TransferError::PendingTransferExpired(pending_id),
                Some(PendingState::Pending) => unreachable!("closed holds are not pending"),
                None if self.position.contains_key(&pending_id) => {
                    TransferError::PendingTransferNotPending(pending_id)
                }
                None => TransferError::PendingTransferNotFound(pending_id),
            });
        };
        // Due is expired, whether or not expire_pending has run yet.
        if self.is_due(&hold) {
            return Err(TransferError::PendingTransferExpired(pending_id));
        }
        let amount = match post {
            Some(requested) => {
                let requested = requested.unwrap_or(hold.amount);
                if requested == 0 {
                    return Err(TransferError::AmountMustNotBeZero);
                }
                if requested > hold.amount {
                    return Err(TransferError::ExceedsPendingTransferAmount {
                        requested_minor: requested,
                        pending_minor: hold.amount,
                    });
                }
                requested
            }
            None => hold.amount,
        };
        self.release(pending_id, &hold);
        if post.is_some() {
            self.totals[hold.debit].debits_posted += i128::from(amount);
            self.totals[hold.credit].credits_posted += i128::from(amount);
        }
        let (kind, state) = if post.is_some() {
            (TransferKind::PostPending, PendingState::Posted)
        } else {
            (TransferKind::VoidPending, PendingState::Voided)
        };
        self.closed.insert(pending_id, state);
        Ok(TransferRecord {
            id: transfer.id,
            kind,
            debit_account_id: self.ids[hold.debit],
            credit_account_id: self.ids[hold.credit],
            currency: XTR,
            amount_minor: amount,
            pending_id: Some(pending_id),
            timeout_s: 0,
            code: transfer.code,
            reference: transfer.reference,
            timestamp_ns: self.tick(),
        })
    }

    /// Whether a hold's timeout has passed: from that instant on it can no longer be used.
    fn is_due(&self, hold: &OpenHold) -> bool {
        hold.expires_at_ns.is_some_and(|at| self.now_ns >= at)
    }

    fn release(&mut self, id: TransferId, hold: &OpenHold) {
        self.totals[hold.debit].debits_pending -= i128::from(hold.amount);
        self.totals[hold.credit].credits_pending -= i128::from(hold.amount);
        self.open.remove(&id);
    }

    /// What expire_pending(id, now) does: expire an open hold that is due, and nothing else.
    fn expire(&mut self, id: TransferId) -> bool {
        let Some(hold) = self.open.get(&id).copied() else {
            return false;
        };
        if !self.is_due(&hold) {
            return false;
        }
        self.release(id, &hold);
        self.closed.insert(id, PendingState::Expired);
        self.tick();
        true
    }

    /// Every transfer as the ledger must store it, by id.
    fn expected_transfers(&self) -> Vec<StoredTransfer> {
        let mut stored: Vec<StoredTransfer> = self
            .written
            .iter()
            .map(|(_, record)| StoredTransfer {
                record: *record,
                pending_state: (record.kind == TransferKind::Pending).then(|| {
                    self.closed
                        .get(&record.id)
                        .copied()
                        .unwrap_or(PendingState::Pending)
                }),
            })
            .collect();
        stored.sort_by_key(|stored| stored.record.id);
        stored
    }

    fn pick(&self, hold: &HoldRef) -> TransferId {
        match hold {
            HoldRef::Recent(i) if !self.holds.is_empty() => {
                let n = self.holds.len().min(RECENT_HOLDS);
                self.holds[self.holds.len() - 1 - i.index(n)]
            }
            HoldRef::Any(i) if !self.written.is_empty() => {
                self.written[i.index(self.written.len())].0.id
            }
            _ => NEVER_USED,
        }
    }

    /// The request for `mv` under a fresh id.
    fn request(&mut self, mv: &Move) -> Transfer {
        let id = TransferId(self.next_id);
        self.next_id += 1;
        let (action, why) = match *mv {
            Move::Transfer {
                debit,
                credit,
                amount,
            } => (
                TransferAction::Single {
                    debit: self.ids[debit],
                    credit: self.ids[credit],
                    currency: XTR,
                    amount_minor: amount,
                },
                code::PAYMENT,
            ),
            Move::Hold {
                debit,
                credit,
                amount,
                timeout_s,
            } => (
                TransferAction::Pending {
                    debit: self.ids[debit],
                    credit: self.ids[credit],
                    currency: XTR,
                    amount_minor: amount,
                    timeout_s,
                },
                code::CHARGE,
            ),
            Move::Post {
                ref hold,
                ref amount,
            } => {
                let pending_id = self.pick(hold);
                let reserved = self.record(pending_id).map_or(1, |r| r.amount_minor);
                let amount_minor = match amount {
                    PostAmount::Whole => None,
                    PostAmount::Exact => Some(reserved),
                    PostAmount::Part(i) => Some(1 + i.index(reserved as usize) as u64),
                    PostAmount::TooMuch => Some(reserved + 1),
                    PostAmount::Zero => Some(0),
                };
                let action = TransferAction::PostPending {
                    pending_id,
                    amount_minor,
                };
                (action, code::CHARGE)
            }
            Move::Void { ref hold } => (
                TransferAction::VoidPending {
                    pending_id: self.pick(hold),
                },
                code::REFUND,
            ),
        };
        Transfer {
            id,
            action,
            code: why,
            reference: id.0 * 3,
        }
    }

    /// Ways to change one field of an earlier request, each with the error the retry must get.
    fn variations(
        &self,
        request: Transfer,
        record: TransferRecord,
    ) -> Vec<(Transfer, TransferError)> {
        use TransferError::*;
        let with = |action| Transfer { action, ..request };
        let other = |id: AccountId| self.ids[(self.index(id) + 1) % ACCOUNTS];
        let kind = ExistsWithDifferentKind("");
        let amount = ExistsWithDifferentAmount {
            existing_minor: record.amount_minor,
        };
        let mut changes = vec![
            (
                Transfer {
                    code: request.code.wrapping_add(1),
                    ..request
                },
                ExistsWithDifferentCode,
            ),
            (
                Transfer {
                    reference: request.reference + 1,
                    ..request
                },
                ExistsWithDifferentReference,
            ),
        ];
        match request.action {
            TransferAction::Single {
                debit,
                credit,
                currency,
                amount_minor,
            }
            | TransferAction::Pending {
                debit,
                credit,
                currency,
                amount_minor,
                ..
            } => {
                let timeout = match request.action {
                    TransferAction::Pending { timeout_s, .. } => Some(timeout_s),
                    _ => None,
                };
                let action =
                    |debit, credit, currency, amount_minor, timeout: Option<u32>| match timeout {
                        Some(timeout_s) => TransferAction::Pending {
                            debit,
                            credit,
                            currency,
                            amount_minor,
                            timeout_s,
                        },
                        None => TransferAction::Single {
                            debit,
                            credit,
                            currency,
                            amount_minor,
                        },
                    };
                let flipped = match timeout {
                    Some(_) => None,
                    None => Some(0),
                };
                changes.extend([
                    (
                        with(action(debit, credit, currency, amount_minor, flipped)),
                        kind,
                    ),
                    (
                        with(action(
                            other(debit),
                            credit,
                            currency,
                            amount_minor,
                            timeout,
                        )),
                        ExistsWithDifferentDebitAccount,
                    ),
                    (
                        with(action(
                            debit,
                            other(credit),
                            currency,
                            amount_minor,
                            timeout,
                        )),
                        ExistsWithDifferentCreditAccount,
                    ),
                    (
                        with(action(debit, credit, Currency::TON, amount_minor, timeout)),
                        ExistsWithDifferentCurrency,
                    ),
                    (
                        with(action(debit, credit, currency, amount_minor + 1, timeout)),
                        amount,
                    ),
                ]);
                if let Some(timeout_s) = timeout {
                    changes.push((
                        with(action(
                            debit,
                            credit,
                            currency,
                            amount_minor,
                            Some(timeout_s + 1),
                        )),
                        ExistsWithDifferentTimeout,
                    ));
                }
            }
            TransferAction::PostPending { pending_id, .. } => {
                changes.extend([
                    (with(TransferAction::VoidPending { pending_id }), kind),
                    (
                        with(TransferAction::PostPending {
                            pending_id: NEVER_USED,
                            amount_minor: Some(record.amount_minor),
                        }),
                        ExistsWithDifferentPendingId,
                    ),
                    (
                        with(TransferAction::PostPending {
                            pending_id,
                            amount_minor: Some(record.amount_minor + 1),
                        }),
                        amount,
                    ),
                ]);
                let reserved = self.record(pending_id).expect("hold exists").amount_minor;
                if record.amount_minor < reserved {
                    // A partial post retried as a post of the whole hold.
                    let whole = TransferAction::PostPending {
                        pending_id,
                        amount_minor: None,
                    };
                    changes.push((with(whole), amount));
                }
            }
            TransferAction::VoidPending { pending_id } => changes.extend([
                (
                    with(TransferAction::PostPending {
                        pending_id,
                        amount_minor: None,
                    }),
                    kind,
                ),
                (
                    with(TransferAction::VoidPending {
                        pending_id: NEVER_USED,
                    }),
                    ExistsWithDifferentPendingId,
                ),
            ]),
        }
        changes
    }
}

// ---------------------------------------------------------------------------------------------
// Running operations against both

/// How often each kind of thing happened: proof that a run exercised what it claims to.
#[derive(Debug, Default)]
struct Stats {
    created: u64,
    refused: u64,
    posted: u64,
    voided: u64,
    expired: u64,
    retries: u64,
    groups_applied: u64,
    groups_refused: u64,
}

struct Harness {
    ledger: MemoryLedger,
    model: Model,
    stats: Stats,
}

fn refusal(index: usize, error: TransferError) -> GroupError {
    GroupError::Transfer { index, error }
}

impl Harness {
    fn new() -> Harness {
        let mut ledger = MemoryLedger::new();
        let group = Group {
            accounts: (0..ACCOUNTS).map(account).collect(),
            transfers: vec![],
        };
        apply_group(&mut ledger, &group, START_NS).expect("accounts are created");
        Harness {
            ledger,
            model: Model::new(),
            stats: Stats::default(),
        }
    }

    fn submit(&mut self, transfers: Vec<Transfer>) -> Result<Vec<TransferOutcome>, GroupError> {
        let group = Group {
            accounts: vec![],
            transfers,
        };
        apply_group(&mut self.ledger, &group, self.model.now_ns).map(|outcome| outcome.transfers)
    }

    fn count(&mut self, record: &TransferRecord) {
        self.stats.created += 1;
        match record.kind {
            TransferKind::PostPending => self.stats.posted += 1,
            TransferKind::VoidPending => self.stats.voided += 1,
            _ => {}
        }
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Move(mv) => {
                let request = self.model.request(mv);
                let expected = self.model.write(request).map(|record| {
                    self.count(&record);
                    vec![TransferOutcome {
                        outcome: Outcome::Created,
                        record,
                    }]
                });
                let expected = expected.map_err(|error| {
                    self.stats.refused += 1;
                    refusal(0, error)
                });
                let actual = self.submit(vec![request]);
                assert_eq!(actual, expected, "{request:?}");
            }
            Op::Retry {
                which,
                switch_whole,
            } => {
                let Some(&(mut request, record)) = self.pick_written(which) else {
                    return;
                };
                if *switch_whole {
                    request = self.switch_whole(request);
                }
                self.stats.retries += 1;
                let expected = vec![TransferOutcome {
                    outcome: Outcome::Exists,
                    record,
                }];
                assert_eq!(
                    self.submit(vec![request]),
                    Ok(expected),
                    "retry {request:?}"
                );
            }
            Op::RetryChanged { which, change } => {
                let Some(&(request, record)) = self.pick_written(which) else {
                    return;
                };
                let variations = self.model.variations(request, record);
                let (changed, expected) = variations[change.index(variations.len())];
                self.stats.retries += 1;
                let actual = self.submit(vec![changed]);
                match expected {
                    // The kind's description is prose: only the variant matters here.
                    TransferError::ExistsWithDifferentKind(_) => assert!(
                        matches!(
                            actual,
                            Err(GroupError::Transfer {
                                index: 0,
                                error: TransferError::ExistsWithDifferentKind(_)
                            })
                        ),
                        "{changed:?} of {request:?}: {actual:?}"
                    ),
                    _ => assert_eq!(
                        actual,
                        Err(refusal(0, expected)),
                        "{changed:?} of {request:?}"
                    ),
                }
            }
            Op::Advance { ns, expire } => {
                self.model.now_ns += ns;
                if *expire {
                    self.expire_all();
                }
            }
            Op::AdvanceToExpiry { early, expire } => {
                let next = self
                    .model
                    .open
                    .values()
                    .filter_map(|hold| hold.expires_at_ns)
                    .min();
                let Some(at) = next else {
                    return;
                };
                let target = if *early { at - 1 } else { at };
                self.model.now_ns = self.model.now_ns.max(target);
                if *expire {
                    self.expire_all();
                }
            }
            Op::ExpireOne(which) => {
                let id = self.pick_written(which).map_or(NEVER_USED, |(t, _)| t.id);
                let expected = self.model.expire(id);
                self.stats.expired += u64::from(expected);
                let now = self.model.now_ns;
                assert_eq!(
                    expire_pending(&mut self.ledger, id, now),
                    expected,
                    "{id:?}"
                );
            }
            Op::Group(moves) => self.run_group(moves),
        }
    }

    /// Applies `moves` to a copy of the model, member after member; the group must fail at the
    /// first member the model refuses, and then leave everything as it was.
    fn run_group(&mut self, moves: &[Move]) {
        let mut trial = self.model.clone();
        let mut requests = Vec::new();
        let mut outcomes = Ok(Vec::new());
        for (index, mv) in moves.iter().enumerate() {
            // Built against the group's own effects so far: a post may name a hold placed by
            // an earlier member.
            let request = trial.request(mv);
            requests.push(request);
            if let Ok(done) = &mut outcomes {
                match trial.write(request) {
                    Ok(record) => done.push(TransferOutcome {
                        outcome: Outcome::Created,
                        record,
                    }),
                    Err(error) => outcomes = Err(refusal(index, error)),
                }
            }
        }
        let actual = self.submit(requests.clone());
        assert_eq!(actual, outcomes, "group {requests:?}");
        match outcomes {
            Ok(done) => {
                self.model = trial;
                self.stats.groups_applied += 1;
                for outcome in &done {
                    self.count(&outcome.record);
                }
            }
            Err(_) => {
                // Ids are never reused, even those of a refused group.
                self.model.next_id = trial.next_id;
                self.stats.groups_refused += 1;
            }
        }
    }

    /// expire_pending over MemoryLedger::open_holds_with_timeout, as the server's sweeper does.
    fn expire_all(&mut self) {
        let mut listed: Vec<(TransferId, u64)> = self.ledger.open_holds_with_timeout().collect();
        listed.sort();
        let expected: Vec<(TransferId, u64)> = self
            .model
            .open
            .iter()
            .filter_map(|(id, hold)| hold.expires_at_ns.map(|at| (*id, at)))
            .collect();
        assert_eq!(listed, expected, "open holds with a timeout");
        let now = self.model.now_ns;
        for (id, _) in listed {
            let expected = self.model.expire(id);
            self.stats.expired += u64::from(expected);
            assert_eq!(
                expire_pending(&mut self.ledger, id, now),
                expected,
                "{id:?}"
            );
        }
    }

    fn pick_written(&self, which: &Index) -> Option<&(Transfer, TransferRecord)> {
        let written = &self.model.written;
        (!written.is_empty()).then(|| &written[which.index(written.len())])
    }

    /// For a post of a whole hold: the same request with `None` and the amount swapped.
    fn switch_whole(&self, request: Transfer) -> Transfer {
        let TransferAction::PostPending {
            pending_id,
            amount_minor,
        } = request.action
        else {
            return request;
        };
        let reserved = self.model.record(pending_id).expect("hold").amount_minor;
        let amount_minor = match amount_minor {
            None => Some(reserved),
            Some(amount) if amount == reserved => None,
            other => other,
        };
        Transfer {
            action: TransferAction::PostPending {
                pending_id,
                amount_minor,
            },
            ..request
        }
    }

    /// Cheap checks, after every step: balances, constraints and ledger time.
    fn check_balances(&self) {
        for i in 0..ACCOUNTS {
            let state = self.ledger.account(self.model.ids[i]).expect("account");
            let b = state.balances;
            assert_eq!(Totals::of(b), self.model.totals[i], "account {i}");
            if cannot_go_negative(i) {
                assert!(
                    b.credits_posted >= b.debits_posted + b.debits_pending,
                    "account {i} is overdrawn: {b:?}"
                );
            }
        }
        assert_eq!(
            self.ledger.last_timestamp_ns(),
            self.model.last_timestamp_ns,
            "ledger time"
        );
    }

    /// Everything: the cheap checks, every stored transfer, and the auditor.
    fn check_everything(&self) {
        self.check_balances();
        let mut stored: Vec<StoredTransfer> = self.ledger.transfers().copied().collect();
        stored.sort_by_key(|stored| stored.record.id);
        assert_eq!(stored, self.model.expected_transfers(), "stored transfers");
        let violations = check_invariants(self.ledger.accounts(), self.ledger.transfers());
        assert!(violations.is_empty(), "violations: {violations:#?}");
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        // A failure prints its shrunk input; don't write regression files next to the test.
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn the_ledger_agrees_with_the_model(ops in prop::collection::vec(op(), 1..=60)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.run(op);
            harness.check_everything();
        }
    }
}

/// One long deterministic run: enough steps for balances to build up, many holds to expire and
/// retries to hit old transfers. Fully checked every 1000 steps (the per-step checks stay cheap).
#[test]
fn a_seeded_simulation_of_20k_operations_keeps_every_invariant() {
    const SEED: [u8; 32] = *b"farthing ledger simulation seed!";
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let ops = op();
    let mut harness = Harness::new();
    for step in 1..=20_000 {
        let op = ops.new_tree(&mut runner).expect("generate").current();
        harness.run(&op);
        harness.check_balances();
        if step % 1_000 == 0 {
            harness.check_everything();
        }
    }
    // A generator that drifted into doing nothing would make the checks above vacuous.
    let stats = &harness.stats;
    eprintln!("{stats:?}");
    for (what, count) in [
        ("created", stats.created),
        ("refused", stats.refused),
        ("posted", stats.posted),
        ("voided", stats.voided),
        ("expired", stats.expired),
        ("retries", stats.retries),
        ("groups applied", stats.groups_applied),
        ("groups refused", stats.groups_refused),
    ] {
        assert!(count >= 200, "only {count} {what} in 20k steps: {stats:?}");
    }
}
