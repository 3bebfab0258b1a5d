//! Integration tests of the ledger store (SPEC §4, P3, P4) through its public API.
//!
//! Every test runs against a fresh database in a temporary directory, with a manual ledger
//! clock (`Arc<AtomicU64>`, nanoseconds) and an observer that records every batch. The model
//! check and the concurrency test also run on PostgreSQL (a throwaway server, `support/`), the
//! concurrency test there with two instances sharing the database.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farthing_core::ledger::{
    apply_group, check_invariants, code, expire_pending, Account, AccountKind, AccountState, Group,
    GroupError, GroupOutcome, MemoryLedger, Outcome, PendingState, StoredTransfer, Transfer,
    TransferAction, TransferError, TransferKind,
};
use farthing_core::{ChargeId, Currency, CustomerId, MerchantId, Rail, TransferId};
use farthing_store::audit::{audit_path, AuditReport};
use farthing_store::pg::PgLedger;
use farthing_store::{
    BatchStats, Charge, Customer, Ledger, Merchant, PageRequest, Store, StoreError, StoreOptions,
    Ticket, WriteError,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rusqlite::Connection;
use support::postgres::Postgres;

const NS: u64 = 1_000_000_000;
/// Ledger time at which every test starts.
const T0: u64 = 1_700_000_000 * NS;
const XTR: Currency = Currency::XTR;
const MERCHANT: MerchantId = MerchantId(7);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn customer(n: u128) -> Account {
    Account::new(
        AccountKind::CustomerBalance {
            merchant: MERCHANT,
            customer: CustomerId(n),
        },
        XTR,
    )
}

fn merchant() -> Account {
    Account::new(AccountKind::MerchantBalance { merchant: MERCHANT }, XTR)
}

fn external() -> Account {
    Account::new(
        AccountKind::External {
            merchant: MERCHANT,
            rail: Rail::Stars,
        },
        XTR,
    )
}

fn fees() -> Account {
    Account::new(AccountKind::PlatformFees { merchant: MERCHANT }, XTR)
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
        code: code::CHARGE,
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

fn post(id: u128, pending: TransferId, amount_minor: Option<u64>) -> Transfer {
    Transfer {
        id: TransferId(id),
        action: TransferAction::PostPending {
            pending_id: pending,
            amount_minor,
        },
        code: code::PAYMENT,
        reference: 0,
    }
}

fn void(id: u128, pending: TransferId) -> Transfer {
    Transfer {
        id: TransferId(id),
        action: TransferAction::VoidPending {
            pending_id: pending,
        },
        code: code::PAYMENT,
        reference: 0,
    }
}

fn group(transfers: Vec<Transfer>) -> Group {
    Group {
        accounts: Vec::new(),
        transfers,
    }
}

/// The refusal of transfer `index` of a group for `error`.
fn rejected(index: usize, error: TransferError) -> WriteError {
    WriteError::Rejected(GroupError::Transfer { index, error })
}

/// A temporary database, a manual ledger clock and a record of every batch the writer commits.
struct Harness {
    dir: tempfile::TempDir,
    clock: Arc<AtomicU64>,
    batches: Arc<Mutex<Vec<BatchStats>>>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            dir: tempfile::tempdir().expect("a temporary directory"),
            clock: Arc::new(AtomicU64::new(T0)),
            batches: Arc::default(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    fn options(&self) -> StoreOptions {
        let clock = Arc::clone(&self.clock);
        let batches = Arc::clone(&self.batches);
        StoreOptions {
            clock: Arc::new(move || clock.load(SeqCst)),
            observer: Some(Arc::new(move |stats: &BatchStats| {
                batches
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(*stats);
            })),
            expiry_poll_interval: Duration::from_millis(20),
            ..StoreOptions::default()
        }
    }

    fn open(&self) -> Store {
        self.open_with(|_| {})
    }

    fn open_with(&self, adjust: impl FnOnce(&mut StoreOptions)) -> Store {
        let mut options = self.options();
        adjust(&mut options);
        Store::open(self.path(), options).expect("the store opens")
    }

    fn now(&self) -> u64 {
        self.clock.load(SeqCst)
    }

    fn set_clock(&self, ns: u64) {
        self.clock.store(ns, SeqCst);
    }

    fn batches(&self) -> Vec<BatchStats> {
        self.batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn expired_total(&self) -> usize {
        self.batches().iter().map(|stats| stats.expired).sum()
    }
}

fn account(store: &Store, account: &Account) -> AccountState {
    ledger_account(&Ledger::Sqlite(store.clone()), account)
}

fn ledger_account(store: &Ledger, account: &Account) -> AccountState {
    store
        .account(account.id)
        .expect("the account can be read")
        .expect("the account exists")
}

fn transfer(store: &Store, id: TransferId) -> StoredTransfer {
    ledger_transfer(&Ledger::Sqlite(store.clone()), id)
}

fn ledger_transfer(store: &Ledger, id: TransferId) -> StoredTransfer {
    store
        .transfer(id)
        .expect("the transfer can be read")
        .expect("the transfer exists")
}

fn assert_audit_ok(report: &AuditReport) {
    assert!(report.is_ok(), "audit failed:\n{report}");
}

/// Whether an audit problem contains every one of `needles`.
fn has_problem(report: &AuditReport, needles: &[&str]) -> bool {
    report
        .problems
        .iter()
        .any(|problem| needles.iter().all(|needle| problem.contains(needle)))
}

/// Polls `condition` until it holds or `limit` passes.
fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// External, merchant, fee accounts and customer 1, funded with `funding` by one top-up (id 1).
fn setup_funded(store: &Store, funding: u64) -> GroupOutcome {
    setup_funded_ledger(&Ledger::Sqlite(store.clone()), funding)
}

fn setup_funded_ledger(store: &Ledger, funding: u64) -> GroupOutcome {
    store
        .write(Group {
            accounts: vec![external(), merchant(), fees(), customer(1)],
            transfers: vec![single(1, &external(), &customer(1), funding)],
        })
        .expect("setup is accepted")
}

// ---------------------------------------------------------------------------------------------
// 1. Concurrency: concurrent spends of one balance never overdraw it (SPEC L4)
// ---------------------------------------------------------------------------------------------

/// What one thread of the concurrency test saw committed.
#[derive(Default)]
struct SpendLog {
    /// Every committed transfer with its expected kind, amount and (for holds) final state.
    committed: Vec<(TransferId, TransferKind, u64, Option<PendingState>)>,
    /// Minor units moved from the customer to the merchant (singles and posts).
    debited: u64,
    refused: usize,
}

#[test]
fn concurrent_spends_of_one_balance_never_overdraw_it() {
    let h = Harness::new();
    let store = h.open();
    let path = store.path().expect("an SQLite store").to_path_buf();
    spend_concurrently(&h, &[Ledger::Sqlite(store)], Some(&path));
}

/// The same on PostgreSQL with two instances (two writers, two connections) sharing the
/// database: each spender goes through one of them, so every batch of one instance races the
/// other's for the same balance.
#[test]
fn concurrent_spends_through_two_postgres_instances_never_overdraw_it() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let instances = postgres_instances(&postgres, &h, 2);
    spend_concurrently(&h, &instances, None);
}

/// `count` instances of the PostgreSQL ledger sharing a fresh schema of `postgres`.
fn postgres_instances(postgres: &Postgres, h: &Harness, count: usize) -> Vec<Ledger> {
    let url = postgres.schema();
    (0..count)
        .map(|_| Ledger::Postgres(PgLedger::open(&url, h.options()).expect("the ledger opens")))
        .collect()
}

/// 64 threads spend one balance through `ledgers` (spender n uses `ledgers[n % len]`) with
/// singles and holds (posted whole, in part, or voided) while a watcher keeps reading and
/// auditing; nothing may overdraw it, and every committed transfer must be stored as answered.
fn spend_concurrently(h: &Harness, ledgers: &[Ledger], file: Option<&Path>) {
    const FUNDING: u64 = 10_000;
    const THREADS: u128 = 64;
    const OPS: u128 = 24;
    let store = &ledgers[0];
    let (cust, merch) = (customer(1), merchant());
    setup_funded_ledger(store, FUNDING);

    let stop = AtomicBool::new(false);
    let logs: Vec<SpendLog> = std::thread::scope(|scope| {
        // A reader that keeps checking the committed balance while the spenders run, and
        // audits snapshots of a ledger that is being written.
        let watcher = scope.spawn(|| {
            let mut reads = 0u64;
            while !stop.load(SeqCst) {
                if reads.is_multiple_of(16) {
                    assert_audit_ok(&store.audit().expect("audit while writing"));
                    if let Some(file) = file {
                        assert_audit_ok(&audit_path(file).expect("audit_path while writing"));
                    }
                }
                let state = ledger_account(store, &cust);
                assert!(
                    state.balances.satisfies(state.account.flags)
                        && state.balances.available() >= 0,
                    "customer balance went below zero: {:?}",
                    state.balances
                );
                assert_eq!(state.balances.credits_posted, u128::from(FUNDING));
                reads += 1;
            }
            reads
        });
        let spenders: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = ledgers[usize::try_from(thread).unwrap_or(0) % ledgers.len()].clone();
                scope.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(u64::try_from(thread).unwrap_or(0));
                    let mut log = SpendLog::default();
                    for op in 0..OPS {
                        let base = 1_000_000 + thread * 10_000 + op * 4;
                        let amount = rng.u64(1..=60);
                        let try_hold = rng.u8(0..4) == 0;
                        let first = if try_hold {
                            hold(base, &cust, &merch, amount, 0)
                        } else {
                            single(base, &cust, &merch, amount)
                        };
                        match store.submit(group(vec![first])).expect("queued").wait() {
                            Err(error) => {
                                let refused_for_funds = matches!(
                                    &error,
                                    WriteError::Rejected(GroupError::Transfer {
                                        index: 0,
                                        error: TransferError::ExceedsCredits { available_minor },
                                    }) if *available_minor < amount
                                );
                                assert!(refused_for_funds, "unexpected refusal: {error:?}");
                                log.refused += 1;
                            }
                            Ok(outcome) => {
                                assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
                                if !try_hold {
                                    log.committed.push((
                                        first.id,
                                        TransferKind::Single,
                                        amount,
                                        None,
                                    ));
                                    log.debited += amount;
                                    continue;
                                }
                                // Resolve the hold: post all, post part, or void.
                                let (resolution, kind, moved, state) = match rng.u8(0..3) {
                                    0 => (
                                        post(base + 1, first.id, None),
                                        TransferKind::PostPending,
                                        amount,
                                        PendingState::Posted,
                                    ),
                                    1 => {
                                        let part = rng.u64(1..=amount);
                                        (
                                            post(base + 1, first.id, Some(part)),
                                            TransferKind::PostPending,
                                            part,
                                            PendingState::Posted,
                                        )
                                    }
                                    _ => (
                                        void(base + 1, first.id),
                                        TransferKind::VoidPending,
                                        amount,
                                        PendingState::Voided,
                                    ),
                                };
                                let resolved = store
                                    .submit(group(vec![resolution]))
                                    .expect("queued")
                                    .wait();
                                assert!(resolved.is_ok(), "resolving a hold failed: {resolved:?}");
                                log.committed.push((
                                    first.id,
                                    TransferKind::Pending,
                                    amount,
                                    Some(state),
                                ));
                                log.committed.push((resolution.id, kind, moved, None));
                                if kind == TransferKind::PostPending {
                                    log.debited += moved;
                                }
                            }
                        }
                    }
                    log
                })
            })
            .collect();
        // Join everything before failing, so that a panicking spender cannot leave the
        // watcher running forever.
        let joined: Vec<_> = spenders.into_iter().map(|spender| spender.join()).collect();
        stop.store(true, SeqCst);
        assert!(watcher.join().expect("the watcher panicked") > 0);
        joined
            .into_iter()
            .map(|log| log.expect("a spender panicked"))
            .collect()
    });

    let debited: u64 = logs.iter().map(|log| log.debited).sum();
    let refused: usize = logs.iter().map(|log| log.refused).sum();
    let committed: usize = logs.iter().map(|log| log.committed.len()).sum();
    assert!(debited <= FUNDING, "spent {debited} of {FUNDING}");
    assert!(refused > 0, "the test must exhaust the balance");
    assert!(committed > 0);

    let state = ledger_account(store, &cust);
    assert_eq!(state.balances.credits_posted, u128::from(FUNDING));
    assert_eq!(state.balances.debits_posted, u128::from(debited));
    assert_eq!(state.balances.debits_pending, 0);
    assert_eq!(state.balances.posted(), i128::from(FUNDING - debited));
    assert_eq!(
        ledger_account(store, &merch).balances.credits_posted,
        u128::from(debited)
    );

    for (id, kind, amount, pending_state) in logs.iter().flat_map(|log| &log.committed) {
        let stored = ledger_transfer(store, *id);
        assert_eq!(stored.record.kind, *kind, "{id}");
        assert_eq!(stored.record.amount_minor, *amount, "{id}");
        assert_eq!(stored.pending_state, *pending_state, "{id}");
    }

    let report = store.audit().expect("audit runs");
    assert_audit_ok(&report);
    assert_eq!(report.open_holds, 0);
    assert_eq!(report.transfers, 1 + committed as u64);

    let batches = h.batches();
    let largest = batches.iter().map(|stats| stats.groups).max().unwrap_or(0);
    assert!(
        largest > 1,
        "no group commit happened: {} batches, largest {largest}",
        batches.len()
    );
    assert!(batches.iter().all(|stats| !stats.failed));
    ledgers.iter().for_each(Ledger::shutdown);
}

// ---------------------------------------------------------------------------------------------
// 2. Model check: the store behaves exactly like `MemoryLedger` + `apply_group`
// ---------------------------------------------------------------------------------------------
//
// Random ops become groups that are applied to a `MemoryLedger` and to the store at the same
// ledger time; results (including every record and timestamp) must be equal, and so must the
// final accounts and transfers. Expiry: the writer voids due holds at the start of a batch and
// when it wakes up, always at the clock's current value; the model voids them just before each
// group. So that both sides void the same holds at the same time, the clock only moves when no
// write is in flight, and every move is followed by a write (`ModelRun::sync`) before the next.

#[derive(Clone, Debug)]
enum Op {
    /// Top up a customer from outside.
    Fund { customer: usize, amount: u64 },
    /// Customer pays the merchant; with a fee, the merchant pays the platform in the same group.
    Charge {
        customer: usize,
        amount: u64,
        fee: Option<u64>,
    },
    /// A hold from a customer to the merchant; timeout 0 = none.
    Hold {
        customer: usize,
        amount: u64,
        timeout_s: u32,
    },
    /// Post (all or part of) an earlier hold.
    Post { hold: Index, amount: Option<u64> },
    /// Void an earlier hold.
    Void { hold: Index },
    /// Submit an earlier group again, unchanged.
    Retry { group: Index },
    /// Reuse an earlier transfer id with another amount.
    Conflict { transfer: Index },
    /// Create a customer account (customer 2 exists only after this).
    CreateCustomer { customer: usize },
    /// Move the ledger clock by this many milliseconds (possibly backwards).
    Tick { delta_ms: i64 },
    /// Put the clock right next to the earliest open hold's expiry.
    ToExpiry { offset_ns: i64 },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Customer 2 exists only once an op creates it: refer to it less often.
    let who = || prop_oneof![3 => 0..2usize, 1 => Just(2usize)];
    prop_oneof![
        4 => (who(), 1..=400u64).prop_map(|(customer, amount)| Op::Fund { customer, amount }),
        4 => (who(), 1..=120u64, proptest::option::weighted(0.3, 1..=60u64))
            .prop_map(|(customer, amount, fee)| Op::Charge { customer, amount, fee }),
        4 => (who(), 1..=100u64, prop_oneof![Just(0u32), 1..=3u32])
            .prop_map(|(customer, amount, timeout_s)| Op::Hold { customer, amount, timeout_s }),
        3 => (any::<Index>(), proptest::option::of(1..=120u64))
            .prop_map(|(hold, amount)| Op::Post { hold, amount }),
        2 => any::<Index>().prop_map(|hold| Op::Void { hold }),
        2 => any::<Index>().prop_map(|group| Op::Retry { group }),
        1 => any::<Index>().prop_map(|transfer| Op::Conflict { transfer }),
        1 => (0..3usize).prop_map(|customer| Op::CreateCustomer { customer }),
        3 => (-2_500i64..=6_000).prop_map(|delta_ms| Op::Tick { delta_ms }),
        1 => (-1i64..=1).prop_map(|offset_ns| Op::ToExpiry { offset_ns }),
    ]
}

/// What the model-check runs covered, summed over all cases.
struct Coverage {
    expired: AtomicUsize,
    retries_exists: AtomicUsize,
    refused: AtomicUsize,
    resolve_expired: AtomicUsize,
    largest_batch: AtomicUsize,
}

impl Coverage {
    const fn new() -> Coverage {
        Coverage {
            expired: AtomicUsize::new(0),
            retries_exists: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            resolve_expired: AtomicUsize::new(0),
            largest_batch: AtomicUsize::new(0),
        }
    }

    /// The generator must reach the interesting paths, or agreement means little.
    fn assert_reached(&self) {
        assert!(self.expired.load(SeqCst) > 0, "no hold ever expired");
        assert!(
            self.resolve_expired.load(SeqCst) > 0,
            "no post or void of an expired hold"
        );
        assert!(
            self.retries_exists.load(SeqCst) > 0,
            "no retry of an accepted group"
        );
        assert!(self.refused.load(SeqCst) > 0, "nothing was ever refused");
    }
}

static SEQUENTIAL: Coverage = Coverage::new();
static PIPELINED: Coverage = Coverage::new();
static PG_SEQUENTIAL: Coverage = Coverage::new();
static PG_PIPELINED: Coverage = Coverage::new();

/// Voids, like the writer does at the start of a batch, every open hold whose time has come.
fn expire_due(model: &mut MemoryLedger, now_ns: u64, coverage: &Coverage) {
    let mut due: Vec<(u64, TransferId)> = model
        .open_holds_with_timeout()
        .filter(|(_, at)| *at <= now_ns)
        .map(|(id, at)| (at, id))
        .collect();
    due.sort_unstable();
    for (_, id) in due {
        assert!(expire_pending(model, id, now_ns));
        coverage.expired.fetch_add(1, SeqCst);
    }
}

struct ModelRun {
    harness: Harness,
    store: Ledger,
    model: MemoryLedger,
    next_id: u128,
    holds: Vec<TransferId>,
    /// Every group submitted, with whether it was accepted.
    groups: Vec<(Group, bool)>,
    /// Every single transfer and hold submitted.
    transfers: Vec<Transfer>,
    /// Whether groups are submitted without waiting (checked before the clock moves), so that
    /// the writer commits many of them per batch.
    pipelined: bool,
    in_flight: Vec<(Ticket, Result<GroupOutcome, WriteError>, Group)>,
    coverage: &'static Coverage,
}

impl ModelRun {
    fn id(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }

    /// Applies `group` to the model and to the store at the current clock; they must agree
    /// (checked at once, or by [`ModelRun::flush`] when pipelined). Returns the model's result.
    fn apply(&mut self, group: Group) -> Result<Result<GroupOutcome, WriteError>, TestCaseError> {
        let now = self.harness.now();
        expire_due(&mut self.model, now, self.coverage);
        let expected = apply_group(&mut self.model, &group, now).map_err(WriteError::Rejected);
        if self.pipelined {
            let ticket = self
                .store
                .submit(group.clone())
                .map_err(|error| TestCaseError::fail(format!("submit: {error}")))?;
            self.in_flight
                .push((ticket, expected.clone(), group.clone()));
        } else {
            let actual = self.store.write(group.clone());
            prop_assert_eq!(&actual, &expected, "group {:?} at {}", group, now);
        }
        if expected.is_err() {
            self.coverage.refused.fetch_add(1, SeqCst);
        }
        self.groups.push((group, expected.is_ok()));
        Ok(expected)
    }

    /// Waits for every pipelined write and compares it with the model's result.
    fn flush(&mut self) -> Result<(), TestCaseError> {
        for (ticket, expected, group) in std::mem::take(&mut self.in_flight) {
            let actual = ticket.wait();
            prop_assert_eq!(&actual, &expected, "pipelined group {:?}", group);
        }
        Ok(())
    }

    /// Moves the ledger clock, once every write at the old time is done.
    fn set_clock(&mut self, ns: u64) -> Result<(), TestCaseError> {
        self.flush()?;
        self.harness.set_clock(ns);
        self.sync()
    }

    /// [`ModelRun::apply`] when the outcome needs no further look.
    fn check(&mut self, group: Group) -> Result<(), TestCaseError> {
        self.apply(group).map(|_| ())
    }

    /// A write that changes nothing: after a clock jump it makes both sides catch up on
    /// expiry at the new time before the clock may move again.
    fn sync(&mut self) -> Result<(), TestCaseError> {
        let result = self.apply(Group {
            accounts: vec![merchant()],
            transfers: Vec::new(),
        })?;
        prop_assert_eq!(
            result.map(|outcome| outcome.accounts),
            Ok(vec![Outcome::Exists])
        );
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Fund {
                customer: n,
                amount,
            } => {
                let transfer = single(self.id(), &external(), &customer(n as u128), amount);
                self.transfers.push(transfer);
                self.check(group(vec![transfer]))?;
            }
            Op::Charge {
                customer: n,
                amount,
                fee,
            } => {
                let charge = single(self.id(), &customer(n as u128), &merchant(), amount);
                self.transfers.push(charge);
                let mut transfers = vec![charge];
                if let Some(fee) = fee {
                    let fee = single(self.id(), &merchant(), &fees(), fee);
                    self.transfers.push(fee);
                    transfers.push(fee);
                }
                self.check(group(transfers))?;
            }
            Op::Hold {
                customer: n,
                amount,
                timeout_s,
            } => {
                let transfer = hold(
                    self.id(),
                    &customer(n as u128),
                    &merchant(),
                    amount,
                    timeout_s,
                );
                self.transfers.push(transfer);
                if self.apply(group(vec![transfer]))?.is_ok() {
                    self.holds.push(transfer.id);
                }
            }
            Op::Post { hold, amount } => {
                let pending = self.pick_hold(hold);
                let id = self.id();
                self.resolve(post(id, pending, amount))?;
            }
            Op::Void { hold } => {
                let pending = self.pick_hold(hold);
                let id = self.id();
                self.resolve(void(id, pending))?;
            }
            Op::Retry { group: index } => {
                if self.groups.is_empty() {
                    return Ok(());
                }
                let (original, accepted) = self.groups[index.index(self.groups.len())].clone();
                let result = self.apply(original)?;
                if accepted {
                    // P3: a retry of an accepted group settles nothing new.
                    let outcome = result.map_err(|error| {
                        TestCaseError::fail(format!("retry of an accepted group failed: {error}"))
                    })?;
                    prop_assert!(outcome
                        .accounts
                        .iter()
                        .chain(outcome.transfers.iter().map(|t| &t.outcome))
                        .all(|outcome| *outcome == Outcome::Exists));
                    self.coverage.retries_exists.fetch_add(1, SeqCst);
                }
            }
            Op::Conflict { transfer: index } => {
                if self.transfers.is_empty() {
                    return Ok(());
                }
                let mut transfer = self.transfers[index.index(self.transfers.len())];
                match &mut transfer.action {
                    TransferAction::Single { amount_minor, .. }
                    | TransferAction::Pending { amount_minor, .. } => *amount_minor += 1,
                    _ => {}
                }
                self.check(group(vec![transfer]))?;
            }
            Op::CreateCustomer { customer: n } => {
                self.check(Group {
                    accounts: vec![customer(n as u128)],
                    transfers: Vec::new(),
                })?;
            }
            Op::Tick { delta_ms } => {
                let delta = delta_ms.unsigned_abs() * 1_000_000;
                let now = self.harness.now();
                let next = if delta_ms < 0 {
                    now - delta
                } else {
                    now + delta
                };
                self.set_clock(next)?;
            }
            Op::ToExpiry { offset_ns } => {
                let Some(at) = self.model.open_holds_with_timeout().map(|(_, at)| at).min() else {
                    return Ok(());
                };
                self.set_clock(at.saturating_add_signed(offset_ns))?;
            }
        }
        Ok(())
    }

    /// Posts or voids a hold.
    fn resolve(&mut self, transfer: Transfer) -> Result<(), TestCaseError> {
        let result = self.apply(group(vec![transfer]))?;
        if matches!(
            result,
            Err(WriteError::Rejected(GroupError::Transfer {
                error: TransferError::PendingTransferExpired(_),
                ..
            }))
        ) {
            self.coverage.resolve_expired.fetch_add(1, SeqCst);
        }
        Ok(())
    }

    /// An accepted hold (posted, voided, expired or open), or a missing one if none.
    fn pick_hold(&self, index: Index) -> TransferId {
        if self.holds.is_empty() {
            TransferId(u128::from(u64::MAX))
        } else {
            self.holds[index.index(self.holds.len())]
        }
    }

    /// Both sides hold the same accounts and transfers, and both pass the audit.
    fn check_final(mut self) -> Result<(), TestCaseError> {
        self.sync()?;
        self.flush()?;
        let violations = check_invariants(self.model.accounts(), self.model.transfers());
        prop_assert!(violations.is_empty(), "the model broke: {:?}", violations);
        for state in self.model.accounts() {
            let stored = self.store.account(state.account.id).expect("readable");
            prop_assert_eq!(stored.as_ref(), Some(state));
        }
        for stored in self.model.transfers() {
            let found = self.store.transfer(stored.record.id).expect("readable");
            prop_assert_eq!(found.as_ref(), Some(stored));
        }
        let report = self.store.audit().expect("audit runs");
        prop_assert!(report.is_ok(), "audit failed:\n{}", report);
        prop_assert_eq!(report.accounts, self.model.accounts().count() as u64);
        prop_assert_eq!(report.transfers, self.model.transfers().count() as u64);
        let open = self
            .model
            .transfers()
            .filter(|stored| stored.pending_state == Some(PendingState::Pending))
            .count();
        prop_assert_eq!(report.open_holds, open as u64);
        let batches = self.harness.batches();
        prop_assert!(batches.iter().all(|stats| !stats.failed));
        let largest = batches.iter().map(|stats| stats.groups).max().unwrap_or(0);
        self.coverage.largest_batch.fetch_max(largest, SeqCst);
        self.store.shutdown();
        Ok(())
    }
}

/// Runs `ops` on SQLite (`postgres: None`) or in a fresh schema of a PostgreSQL server.
fn run_model(
    ops: &[Op],
    pipelined: bool,
    postgres: Option<&Postgres>,
) -> Result<(), TestCaseError> {
    let harness = Harness::new();
    let (store, coverage) = match postgres {
        None => {
            let store = harness.open_with(|options| {
                options.expiry_poll_interval = Duration::from_millis(5);
            });
            let coverage = if pipelined { &PIPELINED } else { &SEQUENTIAL };
            (Ledger::Sqlite(store), coverage)
        }
        Some(postgres) => {
            let mut options = harness.options();
            options.expiry_poll_interval = Duration::from_millis(5);
            let ledger = PgLedger::open(&postgres.schema(), options).expect("the ledger opens");
            let coverage = if pipelined {
                &PG_PIPELINED
            } else {
                &PG_SEQUENTIAL
            };
            (Ledger::Postgres(ledger), coverage)
        }
    };
    let mut run = ModelRun {
        harness,
        store,
        model: MemoryLedger::new(),
        next_id: 100,
        holds: Vec::new(),
        groups: Vec::new(),
        transfers: Vec::new(),
        pipelined,
        in_flight: Vec::new(),
        coverage,
    };
    run.check(Group {
        accounts: vec![external(), fees(), merchant(), customer(0), customer(1)],
        transfers: Vec::new(),
    })?;
    for op in ops {
        run.step(op)?;
    }
    run.check_final()
}

fn model_runner() -> TestRunner {
    // A fixed seed (override with FARTHING_PROPTEST_SEED) keeps the coverage checks below
    // deterministic: with a fresh random seed, a run of 24 cases occasionally generated no
    // expiry at all and failed `assert_reached` for no fault of the store.
    let seed: u64 = std::env::var("FARTHING_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        ProptestConfig {
            cases: 24,
            // One file only: a failure prints the minimal op list instead of writing a
            // regression file next to this one.
            failure_persistence: None,
            ..ProptestConfig::default()
        },
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        ),
    )
}

/// One write at a time: every outcome is compared as soon as it is known.
#[test]
fn store_agrees_with_the_memory_ledger_model() {
    let ops = proptest::collection::vec(op_strategy(), 30..=45);
    if let Err(error) = model_runner().run(&ops, |ops| run_model(&ops, false, None)) {
        panic!("{error}");
    }
    SEQUENTIAL.assert_reached();
}

/// The PostgreSQL ledger against the same model: the same rules, clock, expiry and answers.
#[test]
fn postgres_ledger_agrees_with_the_memory_ledger_model() {
    let postgres = Postgres::start();
    let ops = proptest::collection::vec(op_strategy(), 30..=45);
    if let Err(error) = model_runner().run(&ops, |ops| run_model(&ops, false, Some(&postgres))) {
        panic!("{error}");
    }
    PG_SEQUENTIAL.assert_reached();
}

/// Pipelined on PostgreSQL: many groups per batch, applied in one transaction.
#[test]
fn postgres_ledger_agrees_with_the_model_when_writes_are_pipelined() {
    let postgres = Postgres::start();
    let ops = proptest::collection::vec(op_strategy(), 30..=45);
    if let Err(error) = model_runner().run(&ops, |ops| run_model(&ops, true, Some(&postgres))) {
        panic!("{error}");
    }
    PG_PIPELINED.assert_reached();
    assert!(
        PG_PIPELINED.largest_batch.load(SeqCst) > 1,
        "pipelined writes were never committed together"
    );
}

/// Every write between two clock moves in flight at once: the writer applies many groups in
/// one transaction (group commit), and each must still see exactly the groups before it.
#[test]
fn store_agrees_with_the_model_when_writes_are_pipelined() {
    let ops = proptest::collection::vec(op_strategy(), 30..=45);
    if let Err(error) = model_runner().run(&ops, |ops| run_model(&ops, true, None)) {
        panic!("{error}");
    }
    PIPELINED.assert_reached();
    assert!(
        PIPELINED.largest_batch.load(SeqCst) > 1,
        "pipelined writes were never committed together"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Durability across reopen (SPEC P4) and the persisted ledger clock
// ---------------------------------------------------------------------------------------------

#[test]
fn everything_survives_a_reopen_and_the_ledger_clock_never_goes_back() {
    let h = Harness::new();
    let (ext, cust, merch) = (external(), customer(1), merchant());
    let store = h.open();
    setup_funded(&store, 1_000);
    let charge = group(vec![single(2, &cust, &merch, 100)]);
    let charged = store.write(charge.clone()).expect("charge");
    h.set_clock(T0 + NS);
    store
        .write(group(vec![
            hold(3, &cust, &merch, 50, 0),
            post(4, TransferId(3), Some(30)),
            hold(5, &cust, &merch, 40, 0),
            void(6, TransferId(5)),
            hold(7, &cust, &merch, 20, 0),
            hold(8, &cust, &merch, 10, 3_600),
        ]))
        .expect("holds");
    let ids: Vec<TransferId> = (1..=8).map(TransferId).collect();
    let transfers_before: Vec<StoredTransfer> =
        ids.iter().map(|id| transfer(&store, *id)).collect();
    let accounts_before: Vec<AccountState> = [ext, cust, merch, fees()]
        .iter()
        .map(|a| account(&store, a))
        .collect();
    let newest_before = transfers_before
        .iter()
        .map(|stored| stored.record.timestamp_ns)
        .max()
        .unwrap_or(0);
    let cust_before = account(&store, &cust).balances;
    assert_eq!(cust_before.debits_posted, 130);
    assert_eq!(cust_before.debits_pending, 30);
    store.shutdown();
    drop(store);

    // The injected clock goes far back: the ledger's own clock must not.
    h.set_clock(T0 - 1_000 * NS);
    let store = h.open();
    for (id, before) in ids.iter().zip(&transfers_before) {
        assert_eq!(&transfer(&store, *id), before, "transfer {id}");
    }
    for before in &accounts_before {
        assert_eq!(&account(&store, &before.account), before);
    }
    assert_eq!(
        transfer(&store, TransferId(3)).pending_state,
        Some(PendingState::Posted)
    );
    assert_eq!(
        transfer(&store, TransferId(5)).pending_state,
        Some(PendingState::Voided)
    );
    assert_eq!(
        transfer(&store, TransferId(7)).pending_state,
        Some(PendingState::Pending)
    );
    assert_eq!(
        transfer(&store, TransferId(8)).pending_state,
        Some(PendingState::Pending)
    );
    assert_audit_ok(&store.audit().expect("audit"));

    // Retries after the reopen are recognised (P3) and report the original.
    let retried = store.write(charge).expect("retry");
    assert_eq!(retried.transfers[0].outcome, Outcome::Exists);
    assert_eq!(retried.transfers[0].record, charged.transfers[0].record);
    let retried = store
        .write(Group {
            accounts: vec![ext, merch, fees(), cust],
            transfers: vec![single(1, &ext, &cust, 1_000)],
        })
        .expect("retry of the setup");
    assert!(retried.accounts.iter().all(|o| *o == Outcome::Exists));
    assert_eq!(retried.transfers[0].outcome, Outcome::Exists);

    // New writes get timestamps after everything before the reopen.
    let new = store
        .write(group(vec![
            single(9, &cust, &merch, 5),
            post(10, TransferId(7), None),
        ]))
        .expect("new writes");
    for outcome in &new.transfers {
        assert_eq!(outcome.outcome, Outcome::Created);
        assert!(
            outcome.record.timestamp_ns > newest_before,
            "timestamp {} is not after {newest_before}",
            outcome.record.timestamp_ns
        );
    }
    assert!(new.transfers[1].record.timestamp_ns > new.transfers[0].record.timestamp_ns);

    // The hold with a timeout still expires at its original ledger time (the expiry schedule
    // was reloaded), not earlier.
    let expires_at = transfer(&store, TransferId(8))
        .record
        .expires_at_ns()
        .expect("hold 8 has a timeout");
    h.set_clock(expires_at - 1);
    store
        .write(group(vec![single(11, &cust, &merch, 1)]))
        .expect("write");
    assert_eq!(
        transfer(&store, TransferId(8)).pending_state,
        Some(PendingState::Pending)
    );
    h.set_clock(expires_at);
    store
        .write(group(vec![single(12, &cust, &merch, 1)]))
        .expect("write");
    assert_eq!(
        transfer(&store, TransferId(8)).pending_state,
        Some(PendingState::Expired)
    );
    let after = account(&store, &cust).balances;
    assert_eq!(after.debits_pending, 0);
    assert_eq!(after.debits_posted, 130 + 5 + 20 + 2);
    let state_after: Vec<StoredTransfer> = (1..=12)
        .map(|id| transfer(&store, TransferId(id)))
        .collect();
    store.shutdown();
    drop(store);

    // A second reopen sees the writes made after the first one.
    let store = h.open();
    for stored in &state_after {
        assert_eq!(&transfer(&store, stored.record.id), stored);
    }
    assert_eq!(account(&store, &cust).balances, after);
    assert_audit_ok(&store.audit().expect("audit"));
    store.shutdown();
}

// ---------------------------------------------------------------------------------------------
// 4. Expiry of holds (SPEC L3)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_hold_with_a_timeout_is_voided_by_the_writer_when_it_expires() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open_with(|options| options.expiry_poll_interval = Duration::from_millis(10));
    setup_funded(&store, 100);
    let created = store
        .write(group(vec![hold(2, &cust, &merch, 60, 2)]))
        .expect("hold");
    let expires_at = created.transfers[0]
        .record
        .expires_at_ns()
        .expect("timeout");
    assert_eq!(
        expires_at,
        created.transfers[0].record.timestamp_ns + 2 * NS
    );
    assert_eq!(account(&store, &cust).balances.available(), 40);

    // One nanosecond before: still open, through a batch and through wake-ups.
    h.set_clock(expires_at - 1);
    store
        .write(group(vec![single(3, &cust, &merch, 1)]))
        .expect("write");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        transfer(&store, TransferId(2)).pending_state,
        Some(PendingState::Pending)
    );
    assert_eq!(h.expired_total(), 0);

    // At the expiry time the writer voids it by itself (no write needed).
    h.set_clock(expires_at);
    let expired = eventually(Duration::from_secs(5), || {
        transfer(&store, TransferId(2)).pending_state == Some(PendingState::Expired)
    });
    assert!(expired, "the writer did not expire the hold within 5 s");
    eventually(Duration::from_secs(2), || h.expired_total() >= 1);
    assert_eq!(h.expired_total(), 1);
    let balances = account(&store, &cust).balances;
    assert_eq!(balances.debits_pending, 0);
    assert_eq!(balances.available(), 99);
    assert_eq!(account(&store, &merch).balances.credits_pending, 0);

    assert_eq!(
        store.write(group(vec![post(4, TransferId(2), None)])),
        Err(rejected(
            0,
            TransferError::PendingTransferExpired(TransferId(2))
        ))
    );
    assert_eq!(
        store.write(group(vec![void(5, TransferId(2))])),
        Err(rejected(
            0,
            TransferError::PendingTransferExpired(TransferId(2))
        ))
    );

    // A post submitted right after the clock passes the expiry, before any wake-up could
    // matter, is refused too, and the hold ends expired.
    let created = store
        .write(group(vec![hold(6, &cust, &merch, 30, 2)]))
        .expect("hold");
    h.set_clock(
        created.transfers[0]
            .record
            .expires_at_ns()
            .expect("timeout")
            + NS,
    );
    assert_eq!(
        store.write(group(vec![post(7, TransferId(6), Some(10))])),
        Err(rejected(
            0,
            TransferError::PendingTransferExpired(TransferId(6))
        ))
    );
    assert_eq!(
        transfer(&store, TransferId(6)).pending_state,
        Some(PendingState::Expired)
    );
    assert_eq!(account(&store, &cust).balances.available(), 99);

    let report = store.audit().expect("audit");
    assert_audit_ok(&report);
    assert_eq!(report.open_holds, 0);
    store.shutdown();
}

#[test]
fn expiry_touches_only_the_holds_that_are_due() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    // A long poll interval: expiry happens at the start of the next batch.
    let store = h.open_with(|options| options.expiry_poll_interval = Duration::from_secs(3_600));
    setup_funded(&store, 10_000);
    let tickets: Vec<_> = (0..4u128)
        .map(|chunk| {
            let holds = (0..250u128)
                .map(|n| hold(1_000 + chunk * 250 + n, &cust, &merch, 1, 0))
                .collect();
            store.submit(group(holds)).expect("queued")
        })
        .collect();
    for ticket in tickets {
        ticket.wait().expect("holds without timeout");
    }
    h.set_clock(T0 + NS);
    store
        .write(group(vec![
            hold(2, &cust, &merch, 5, 1),
            hold(3, &cust, &merch, 6, 2),
            hold(4, &cust, &merch, 7, 3),
            hold(5, &cust, &merch, 8, 3_600),
            hold(6, &cust, &merch, 9, 7_200),
        ]))
        .expect("holds with timeout");
    assert_eq!(account(&store, &cust).balances.debits_pending, 1_000 + 35);
    assert_eq!(h.expired_total(), 0);

    h.set_clock(T0 + 10 * NS);
    store
        .write(group(vec![single(7, &cust, &merch, 1)]))
        .expect("write");
    // The observer runs after the callers are answered: give it a moment.
    eventually(Duration::from_secs(2), || h.expired_total() >= 3);
    assert_eq!(h.expired_total(), 3, "exactly the three due holds expire");
    for id in 2..=4 {
        assert_eq!(
            transfer(&store, TransferId(id)).pending_state,
            Some(PendingState::Expired)
        );
    }
    for id in [5, 6, 1_000, 1_999] {
        assert_eq!(
            transfer(&store, TransferId(id)).pending_state,
            Some(PendingState::Pending)
        );
    }
    assert_eq!(account(&store, &cust).balances.debits_pending, 1_000 + 17);
    let report = store.audit().expect("audit");
    assert_audit_ok(&report);
    assert_eq!(report.open_holds, 1_002);
    store.shutdown();
}

#[test]
fn more_due_holds_than_one_batch_takes_all_expire() {
    const HOLDS: u128 = 5_000;
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open_with(|options| options.expiry_poll_interval = Duration::from_millis(10));
    setup_funded(&store, 1_000_000);
    let tickets: Vec<_> = (0..HOLDS / 250)
        .map(|chunk| {
            let holds = (0..250u128)
                .map(|n| hold(1_000 + chunk * 250 + n, &cust, &merch, 1, 1))
                .collect();
            store.submit(group(holds)).expect("queued")
        })
        .collect();
    for ticket in tickets {
        ticket.wait().expect("holds");
    }
    h.set_clock(T0 + 2 * NS);
    let all = eventually(Duration::from_secs(10), || {
        account(&store, &cust).balances.debits_pending == 0
    });
    assert!(
        all,
        "holds left open: {:?}",
        account(&store, &cust).balances
    );
    eventually(Duration::from_secs(2), || h.expired_total() >= 5_000);
    assert_eq!(h.expired_total(), 5_000);
    // The writer splits the work across transactions rather than one unbounded one.
    let per_batch: Vec<usize> = h
        .batches()
        .iter()
        .map(|stats| stats.expired)
        .filter(|expired| *expired > 0)
        .collect();
    assert!(per_batch.len() >= 2, "{per_batch:?}");
    assert!(
        per_batch.iter().all(|expired| *expired <= 4_096),
        "{per_batch:?}"
    );
    let report = store.audit().expect("audit");
    assert_audit_ok(&report);
    assert_eq!(report.open_holds, 0);
    store.shutdown();
}

// ---------------------------------------------------------------------------------------------
// 5. The audit catches corruption (SPEC L5)
// ---------------------------------------------------------------------------------------------

/// Copies a closed database (with its WAL content) into `to`.
fn copy_database(from: &Path, to: &Path) {
    let connection = Connection::open(from).expect("open the original");
    connection
        .execute("VACUUM INTO ?1", [to.to_str().expect("utf-8 path")])
        .expect("copy");
}

fn corrupt(path: &Path, sql: &str, params: impl rusqlite::Params) {
    let connection = Connection::open(path).expect("open for corruption");
    let changed = connection.execute(sql, params).expect("corrupt");
    assert_eq!(changed, 1, "{sql}");
}

#[test]
fn audit_reports_each_kind_of_corruption() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open();
    setup_funded(&store, 500);
    store
        .write(group(vec![
            single(2, &cust, &merch, 70),
            hold(3, &cust, &merch, 20, 0),
            post(4, TransferId(3), None),
            hold(5, &cust, &merch, 30, 60),
            void(6, TransferId(5)),
            hold(7, &cust, &merch, 40, 60),
        ]))
        .expect("writes");
    let clean = store.audit().expect("audit");
    assert_audit_ok(&clean);
    store.shutdown();
    drop(store);

    let path = h.path();
    let report = audit_path(&path).expect("audit of the closed file");
    assert_audit_ok(&report);
    assert_eq!(
        (report.accounts, report.transfers, report.open_holds),
        (4, 7, 1)
    );

    let copy = |name: &str| {
        let to = h.dir.path().join(name);
        copy_database(&path, &to);
        assert_audit_ok(&audit_path(&to).expect("audit of the copy"));
        to
    };
    let cust_hex = cust.id.to_string();
    let merch_hex = merch.id.to_string();

    // (a) An account's total edited in place.
    let edited = copy("edited.db");
    let credits_posted: Vec<u8> = Connection::open(&edited)
        .expect("open")
        .query_row(
            "SELECT credits_posted FROM accounts WHERE id = ?1",
            [cust.id.to_be_bytes()],
            |row| row.get(0),
        )
        .expect("a 16-byte total");
    let plus_one = u128::from_be_bytes(credits_posted.try_into().expect("16 bytes")) + 1;
    corrupt(
        &edited,
        "UPDATE accounts SET credits_posted = ?2 WHERE id = ?1",
        (cust.id.to_be_bytes(), plus_one.to_be_bytes()),
    );
    let report = audit_path(&edited).expect("audit");
    assert!(!report.is_ok());
    assert!(
        has_problem(
            &report,
            &[&cust_hex, "differ from the sums of its transfers"]
        ),
        "{report}"
    );
    assert!(
        has_problem(&report, &["XTR", "do not sum to zero"]),
        "{report}"
    );

    // (b) A transfer deleted.
    let deleted = copy("deleted.db");
    corrupt(
        &deleted,
        "DELETE FROM transfers WHERE id = ?1",
        [TransferId(2).to_be_bytes()],
    );
    let report = audit_path(&deleted).expect("audit");
    assert!(!report.is_ok());
    assert!(
        has_problem(
            &report,
            &[&cust_hex, "differ from the sums of its transfers"]
        ),
        "{report}"
    );
    assert!(
        has_problem(
            &report,
            &[&merch_hex, "differ from the sums of its transfers"]
        ),
        "{report}"
    );
    assert_eq!(report.transfers, 6);

    // (b') The posting of a hold deleted: the hold says posted but nothing posts it.
    let unposted = copy("unposted.db");
    corrupt(
        &unposted,
        "DELETE FROM transfers WHERE id = ?1",
        [TransferId(4).to_be_bytes()],
    );
    let report = audit_path(&unposted).expect("audit");
    assert!(
        has_problem(
            &report,
            &[&TransferId(3).to_string(), "is named by 0 posts"]
        ),
        "{report}"
    );

    // (c) An expiry scheduled for a hold that is no longer open (hold 5 was voided).
    let scheduled = copy("scheduled.db");
    corrupt(
        &scheduled,
        "INSERT INTO hold_expiries (expires_at_ns, id) VALUES (?1, ?2)",
        rusqlite::params![
            i64::try_from(T0).expect("fits"),
            TransferId(5).to_be_bytes()
        ],
    );
    let report = audit_path(&scheduled).expect("audit");
    assert!(!report.is_ok());
    assert!(
        has_problem(
            &report,
            &[
                "expiry schedule out of step",
                "1 entries for holds that are not open"
            ]
        ),
        "{report}"
    );

    // (d) An account deleted: its transfers now dangle.
    let dangling = copy("dangling.db");
    corrupt(
        &dangling,
        "DELETE FROM accounts WHERE id = ?1",
        [merch.id.to_be_bytes()],
    );
    let report = audit_path(&dangling).expect("audit");
    assert!(
        has_problem(&report, &["credit account", &merch_hex, "does not exist"]),
        "{report}"
    );

    // The original is untouched by all of this.
    assert_audit_ok(&audit_path(&path).expect("audit"));
}

/// Regression: a due `hold_expiries` entry that cannot be expired (here the hold was already
/// voided, which the audit reports as "expiry schedule out of step") used to stay due forever,
/// and the writer committed empty transactions in a tight loop (~29,000 in 500 ms). The writer
/// now drops such a stale entry, so it makes at most about one attempt per poll interval.
#[test]
fn a_stale_expiry_entry_does_not_make_the_writer_spin() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open();
    setup_funded(&store, 500);
    store
        .write(group(vec![
            hold(2, &cust, &merch, 30, 60),
            void(3, TransferId(2)),
        ]))
        .expect("writes");
    store.shutdown();
    drop(store);
    corrupt(
        &h.path(),
        "INSERT INTO hold_expiries (expires_at_ns, id) VALUES (?1, ?2)",
        rusqlite::params![
            i64::try_from(T0).expect("fits"),
            TransferId(2).to_be_bytes()
        ],
    );
    let before = h.batches().len();
    let store = h.open_with(|options| options.expiry_poll_interval = Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(500));
    let batches = h.batches().len() - before;
    store.shutdown();
    assert!(
        batches <= 5,
        "{batches} transactions in 500 ms with nothing to write"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Shutdown, back-pressure and failed batches
// ---------------------------------------------------------------------------------------------

#[test]
fn shutdown_finishes_every_queued_write() {
    const WRITES: u128 = 2_000;
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    // Small batches, so the queue is still full of writes when the shutdown request arrives.
    let store = h.open_with(|options| options.max_batch_transfers = 50);
    setup_funded(&store, 10_000);
    let tickets: Vec<_> = (0..WRITES)
        .map(|n| {
            store
                .submit(group(vec![single(10 + n, &cust, &merch, 1)]))
                .expect("queued")
        })
        .collect();
    store.shutdown();
    for (n, ticket) in tickets.into_iter().enumerate() {
        let outcome = ticket
            .wait()
            .unwrap_or_else(|error| panic!("write {n} lost: {error}"));
        assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
    }
    assert!(
        h.batches().len() > 2,
        "the writes were not split into batches"
    );
    assert_eq!(account(&store, &merch).balances.credits_posted, 2_000);

    let late = group(vec![single(5, &cust, &merch, 1)]);
    assert!(matches!(
        store.submit(late.clone()),
        Err(WriteError::Closed)
    ));
    assert!(matches!(
        store.try_submit(late.clone()),
        Err(WriteError::Closed)
    ));
    assert_eq!(store.write(late), Err(WriteError::Closed));
    store.shutdown(); // idempotent
    drop(store);

    let store = h.open();
    assert_eq!(account(&store, &merch).balances.credits_posted, 2_000);
    assert!(store.transfer(TransferId(5)).expect("readable").is_none());
    store.shutdown();
}

type RaceResults = Vec<(TransferId, Result<GroupOutcome, WriteError>)>;

/// Eight threads write as fast as they can (32 writes in flight each) until the store says
/// `Closed` or `writers_stop` passes; `shutdown` is called 100 ms after they start. Returns what
/// every write got, how long `shutdown` took, and the harness to reopen the database.
fn race_shutdown(writers_stop: Duration) -> (Harness, RaceResults, Duration) {
    const THREADS: u128 = 8;
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open_with(|options| options.max_batch_transfers = 16);
    setup_funded(&store, 1_000_000_000);
    let started = Instant::now();
    let mut shutdown_took = Duration::ZERO;
    let results = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = store.clone();
                scope.spawn(move || {
                    let mut results = Vec::new();
                    let mut tickets = Vec::new();
                    for n in 0u128.. {
                        if started.elapsed() > writers_stop {
                            break;
                        }
                        let id = 1_000_000_000 * (thread + 1) + n;
                        match store.submit(group(vec![single(id, &cust, &merch, 1)])) {
                            Ok(ticket) => tickets.push((TransferId(id), ticket)),
                            Err(error) => {
                                results.push((TransferId(id), Err(error)));
                                break;
                            }
                        }
                        if tickets.len() >= 32 {
                            for (id, ticket) in tickets.drain(..) {
                                results.push((id, ticket.wait()));
                            }
                        }
                    }
                    for (id, ticket) in tickets {
                        results.push((id, ticket.wait()));
                    }
                    results
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let shutdown_started = Instant::now();
        store.shutdown();
        shutdown_took = shutdown_started.elapsed();
        writers
            .into_iter()
            .flat_map(|writer| writer.join().expect("a writer panicked"))
            .collect()
    });
    (h, results, shutdown_took)
}

#[test]
fn dropping_the_last_handle_finishes_queued_writes() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open();
    setup_funded(&store, 1_000);
    let tickets: Vec<Ticket> = (0..300u128)
        .map(|n| {
            store
                .submit(group(vec![single(10 + n, &cust, &merch, 1)]))
                .expect("queued")
        })
        .collect();
    drop(store); // no shutdown: the last handle going away must do the same
    for ticket in tickets {
        ticket.wait().expect("a queued write was lost by drop");
    }
    let store = h.open();
    assert_eq!(account(&store, &merch).balances.credits_posted, 300);
    assert_audit_ok(&store.audit().expect("audit"));
    store.shutdown();
}

#[test]
fn nothing_acknowledged_is_lost_when_shutdown_races_with_writers() {
    let (h, results, _) = race_shutdown(Duration::from_millis(1_500));
    for (id, result) in &results {
        assert!(
            matches!(result, Ok(_) | Err(WriteError::Closed)),
            "{id}: {result:?}"
        );
    }
    let acknowledged = results.iter().filter(|(_, result)| result.is_ok()).count();
    assert!(acknowledged > 0);

    let store = h.open();
    for (id, result) in &results {
        let stored = store.transfer(*id).expect("readable");
        // Acknowledged means durable (P4); refused with Closed means not written at all.
        assert_eq!(
            stored.is_some(),
            result.is_ok(),
            "transfer {id}: {result:?}"
        );
    }
    assert_eq!(
        account(&store, &merchant()).balances.credits_posted,
        acknowledged as u128
    );
    assert_audit_ok(&store.audit().expect("audit"));
    store.shutdown();
}

/// Regression: `Store::shutdown` promises that writes submitted afterwards fail with
/// `WriteError::Closed`. The writer used to keep draining the queue after the shutdown request
/// until it was momentarily empty, so with clients still writing it never returned (measured
/// 33 s, 800,000 writes accepted after the request). It now stops at the request.
#[test]
fn shutdown_returns_promptly_while_clients_keep_writing() {
    let (_h, results, shutdown_took) = race_shutdown(Duration::from_secs(4));
    assert!(
        shutdown_took < Duration::from_secs(2),
        "shutdown took {shutdown_took:?}: it waited for the clients to stop writing"
    );
    assert!(
        results
            .iter()
            .any(|(_, result)| *result == Err(WriteError::Closed)),
        "no write was refused after the shutdown"
    );
}

#[test]
fn try_submit_is_busy_while_the_queue_is_full() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open_with(|options| options.queue_capacity = 1);
    setup_funded(&store, 1_000);

    // Another connection holds SQLite's write lock, so the writer blocks in `BEGIN IMMEDIATE`
    // (for up to its 5 s busy timeout) and stops draining the queue.
    let blocker = Connection::open(h.path()).expect("open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let mut accepted = Vec::new();
    let mut busy = false;
    for n in 0..20u128 {
        match store.try_submit(group(vec![single(100 + n, &cust, &merch, 1)])) {
            Ok(ticket) => accepted.push(ticket),
            Err(WriteError::Busy) => {
                busy = true;
                break;
            }
            Err(error) => panic!("unexpected {error:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(busy, "try_submit never reported Busy");
    // The writer holds at most what it took plus one queued request.
    assert!((1..=3).contains(&accepted.len()), "{}", accepted.len());
    blocker.execute_batch("ROLLBACK").expect("release the lock");

    let accepted_count = accepted.len() as u128;
    for ticket in accepted {
        ticket
            .wait()
            .expect("an accepted write commits once the lock is gone");
    }
    assert_eq!(
        account(&store, &merch).balances.credits_posted,
        accepted_count
    );
    store
        .try_submit(group(vec![single(200, &cust, &merch, 1)]))
        .expect("room again")
        .wait()
        .expect("committed");
    store.shutdown();
}

#[test]
fn a_failed_batch_writes_nothing_and_can_be_retried() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open();
    setup_funded(&store, 1_000);

    // Make the database refuse any transfer of 666 minor units, as a full disk would refuse
    // the batch: the writer has already applied the group to its in-memory accounts by then.
    let admin = Connection::open(h.path()).expect("open");
    admin
        .execute_batch(
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON transfers WHEN NEW.amount = 666 \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .expect("trigger");
    let doomed = group(vec![
        single(2, &cust, &merch, 10),
        single(3, &cust, &merch, 666),
    ]);
    let failed = store.write(doomed.clone());
    assert!(
        matches!(&failed, Err(WriteError::Failed(message)) if message.contains("injected failure")),
        "{failed:?}"
    );
    assert!(store.transfer(TransferId(2)).expect("readable").is_none());
    assert_eq!(account(&store, &cust).balances.debits_posted, 0);

    // The writer must not remember the refused batch: the next write starts from disk.
    store
        .write(group(vec![single(4, &cust, &merch, 5)]))
        .expect("write");
    assert_eq!(account(&store, &cust).balances.debits_posted, 5);
    assert_audit_ok(&store.audit().expect("audit"));

    admin
        .execute_batch("DROP TRIGGER refuse_666")
        .expect("drop trigger");
    let retried = store.write(doomed).expect("the retry succeeds");
    assert!(retried
        .transfers
        .iter()
        .all(|t| t.outcome == Outcome::Created));
    assert_eq!(account(&store, &cust).balances.debits_posted, 5 + 676);
    assert_eq!(account(&store, &merch).balances.credits_posted, 5 + 676);
    assert_audit_ok(&store.audit().expect("audit"));
    assert_eq!(h.batches().iter().filter(|stats| stats.failed).count(), 1);
    store.shutdown();
}

/// Regression: a second `Store` (a second `farthing serve`, or a bench, on the same file) used
/// to open a database that already had a live writer; each writer trusted its own in-memory
/// balances, so a customer funded with 100 could be charged 180 (SPEC L4 broken). `Store::open`
/// now takes an exclusive lock on `<database>.lock`, and the ledger stays correct.
#[test]
fn a_second_store_on_the_same_file_cannot_corrupt_the_ledger() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let first = h.open();
    setup_funded(&first, 100);
    match Store::open(h.path(), h.options()) {
        Err(farthing_store::StoreError::Locked(path)) => assert_eq!(path, h.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second writer opened a database that has a live writer"),
    }
    // The first writer is unaffected, and once it is shut down the file can be opened again.
    first
        .write(group(vec![single(2, &cust, &merch, 80)]))
        .expect("first writer still works");
    first.shutdown();
    let again = Store::open(h.path(), h.options()).expect("reopen after shutdown");
    let refused = again.write(group(vec![single(3, &cust, &merch, 90)]));
    assert!(refused.is_err(), "90 more than the 20 left must be refused");
    assert_audit_ok(&again.audit().expect("audit"));
    again.shutdown();
}

// ---------------------------------------------------------------------------------------------
// 7. Schema versions
// ---------------------------------------------------------------------------------------------

#[test]
fn a_database_from_a_newer_farthing_is_refused() {
    let h = Harness::new();
    let store = h.open();
    setup_funded(&store, 1);
    store.shutdown();
    drop(store);

    let connection = Connection::open(h.path()).expect("open");
    let version: i64 = connection
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |row| {
            row.get(0)
        })
        .expect("a version");
    connection
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, 'from the future')",
            [version + 1],
        )
        .expect("insert");
    drop(connection);

    match Store::open(h.path(), h.options()) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (version + 1, version));
        }
        Err(other) => panic!("expected SchemaTooNew, got {other:?}"),
        Ok(_) => panic!("a newer schema was opened"),
    }
    assert!(matches!(
        audit_path(&h.path()),
        Err(StoreError::SchemaTooNew { .. })
    ));
    assert!(matches!(
        audit_path(&h.dir.path().join("missing.db")),
        Err(StoreError::Missing(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// 8. More of the write path: async tickets, group limits, duplicates in one batch, kill -9
// ---------------------------------------------------------------------------------------------

/// Runs a future to completion on this thread (the store's tickets need no runtime).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

#[test]
fn tickets_can_be_awaited() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open();
    setup_funded(&store, 100);
    let ticket = store
        .submit(group(vec![single(2, &cust, &merch, 40)]))
        .expect("queued");
    let outcome = block_on(ticket).expect("committed");
    assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
    let refused = store
        .submit(group(vec![single(3, &cust, &merch, 61)]))
        .expect("queued");
    assert_eq!(
        block_on(refused),
        Err(rejected(
            0,
            TransferError::ExceedsCredits {
                available_minor: 60
            }
        ))
    );
    store.shutdown();
}

#[test]
fn group_limits_and_empty_groups_are_refused_whole() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    // A batch limit below the size of one group must not stop the group.
    let store = h.open_with(|options| options.max_batch_transfers = 10);
    setup_funded(&store, 10_000);
    let largest: Vec<Transfer> = (0..256u128)
        .map(|n| single(1_000 + n, &cust, &merch, 1))
        .collect();
    let outcome = store.write(group(largest)).expect("256 transfers fit");
    assert_eq!(outcome.transfers.len(), 256);

    let too_large: Vec<Transfer> = (0..257u128)
        .map(|n| single(2_000 + n, &cust, &merch, 1))
        .collect();
    assert_eq!(
        store.write(group(too_large)),
        Err(WriteError::Rejected(GroupError::TooLarge))
    );
    assert_eq!(
        store.write(Group::default()),
        Err(WriteError::Rejected(GroupError::Empty))
    );
    // A group whose last transfer fails writes none of the others.
    let mut doomed: Vec<Transfer> = (0..10u128)
        .map(|n| single(3_000 + n, &cust, &merch, 1))
        .collect();
    doomed.push(single(3_010, &cust, &merch, 1_000_000));
    assert!(matches!(
        store.write(group(doomed)),
        Err(WriteError::Rejected(GroupError::Transfer {
            index: 10,
            error: TransferError::ExceedsCredits { .. }
        }))
    ));
    for id in [2_000, 2_256, 3_000, 3_009] {
        assert!(store.transfer(TransferId(id)).expect("readable").is_none());
    }
    assert_eq!(account(&store, &cust).balances.debits_posted, 256);
    assert_audit_ok(&store.audit().expect("audit"));
    store.shutdown();
}

#[test]
fn the_same_write_submitted_many_times_at_once_settles_once() {
    let h = Harness::new();
    let (cust, merch) = (customer(1), merchant());
    let store = h.open();
    setup_funded(&store, 1_000);
    let payment = Group {
        accounts: vec![merch],
        transfers: vec![
            hold(2, &cust, &merch, 300, 0),
            post(3, TransferId(2), Some(250)),
        ],
    };
    let outcomes: Vec<GroupOutcome> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (store, payment) = (store.clone(), payment.clone());
                scope.spawn(move || {
                    let tickets: Vec<Ticket> = (0..8)
                        .map(|_| store.submit(payment.clone()).expect("queued"))
                        .collect();
                    tickets
                        .into_iter()
                        .map(|ticket| ticket.wait().expect("accepted"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("a submitter panicked"))
            .collect()
    });
    let created: Vec<&GroupOutcome> = outcomes
        .iter()
        .filter(|outcome| outcome.transfers[0].outcome == Outcome::Created)
        .collect();
    assert_eq!(created.len(), 1, "exactly one of 128 submissions applies");
    let first = created[0];
    for outcome in &outcomes {
        for (transfer, original) in outcome.transfers.iter().zip(&first.transfers) {
            assert_eq!(transfer.record, original.record);
        }
    }
    let balances = account(&store, &cust).balances;
    assert_eq!((balances.debits_posted, balances.debits_pending), (250, 0));
    assert!(h.batches().iter().any(|stats| stats.groups > 1));
    assert_audit_ok(&store.audit().expect("audit"));
    store.shutdown();
}

/// Set for the child process of [`a_kill_9_loses_no_acknowledged_write`]: the database path.
const KILL9_DATABASE: &str = "FARTHING_STORE_TEST_KILL9_DATABASE";

/// The victim of [`a_kill_9_loses_no_acknowledged_write`]: writes until killed, printing the
/// id of every write the store acknowledged.
#[test]
#[ignore = "child process of a_kill_9_loses_no_acknowledged_write; does nothing on its own"]
fn kill_9_child() {
    use std::io::Write;
    let Some(path) = std::env::var_os(KILL9_DATABASE) else {
        return;
    };
    let store = Store::open(&path, StoreOptions::default()).expect("open");
    let (cust, merch) = (customer(1), merchant());
    std::thread::scope(|scope| {
        for thread in 0..4u128 {
            let store = store.clone();
            scope.spawn(move || {
                for n in 0u128.. {
                    let id = 1_000_000_000 * (thread + 1) + n;
                    let result = store.write(group(vec![single(id, &cust, &merch, 1)]));
                    if result.is_ok() {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {id}").expect("stdout");
                        out.flush().expect("stdout");
                    }
                }
            });
        }
    });
}

/// SPEC P4 against process death: a child process writes as fast as it can and reports each
/// acknowledged write; it is killed with SIGKILL mid-stream, and every write it reported must
/// be in the database afterwards.
#[test]
fn a_kill_9_loses_no_acknowledged_write() {
    use std::io::BufRead;
    let h = Harness::new();
    let store = h.open();
    setup_funded(&store, 1_000_000_000);
    store.shutdown();
    drop(store);

    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "kill_9_child", "--ignored", "--nocapture"])
        .env(KILL9_DATABASE, h.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let acknowledged = Arc::new(Mutex::new(Vec::<u128>::new()));
    let reader = {
        let acknowledged = Arc::clone(&acknowledged);
        std::thread::spawn(move || {
            let mut stdout = std::io::BufReader::new(stdout);
            let mut line = String::new();
            // Only complete lines count: the kill may cut the last one.
            while stdout.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
                if let Some(id) = line.strip_prefix("ack ") {
                    let id = id.trim_end().parse().expect("an id");
                    acknowledged.lock().expect("lock").push(id);
                }
                line.clear();
            }
        })
    };
    let enough = eventually(Duration::from_secs(20), || {
        acknowledged.lock().expect("lock").len() >= 500
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("reap the child");
    reader.join().expect("the reader panicked");
    assert!(enough, "the child acknowledged too little before the kill");

    let acknowledged = acknowledged.lock().expect("lock").clone();
    let store = h.open();
    for id in &acknowledged {
        assert!(
            store.transfer(TransferId(*id)).expect("readable").is_some(),
            "acknowledged transfer {id} was lost"
        );
    }
    let report = store.audit().expect("audit");
    assert_audit_ok(&report);
    // Everything past the top-up is a child's write: at least the acknowledged ones.
    assert!(report.transfers > acknowledged.len() as u64);
    store.shutdown();
}

/// Regression (security issue item 9): database files were created world-readable, and they
/// hold bot tokens, webhook secrets and node keys. New files are `0600`, their `-wal`/`-shm`
/// too, and an existing database with a wider mode is tightened when it is opened.
#[cfg(unix)]
#[test]
fn database_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .expect("the file exists")
            .permissions()
            .mode()
            & 0o777
    };
    let h = Harness::new();
    let store = h.open();
    setup_funded(&store, 100);
    let wal = PathBuf::from(format!("{}-wal", h.path().display()));
    let lock = PathBuf::from(format!("{}.lock", h.path().display()));
    for path in [h.path(), wal.clone(), lock.clone()] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    store.shutdown();
    std::fs::set_permissions(h.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let again = h.open();
    assert_eq!(mode(&h.path()), 0o600, "tightened on open");
    again.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Customers' statements
// ---------------------------------------------------------------------------------------------

/// Every posted movement of a customer balance is a statement entry with the balance after it
/// (holds and voids are not; the posting of a hold is), and migration 19 builds the same
/// entries from the transfers of a database that had none.
#[test]
fn statements_follow_the_balance_and_the_migration_rebuilds_them() {
    let h = Harness::new();
    let store = h.open();
    setup_funded(&store, 1_000);
    let hold_id = TransferId(30);
    store
        .write(group(vec![
            single(10, &customer(1), &merchant(), 100),
            hold(30, &customer(1), &merchant(), 200, 0),
        ]))
        .expect("written");
    store
        .write(group(vec![
            post(31, hold_id, Some(150)),
            single(11, &merchant(), &customer(1), 40),
        ]))
        .expect("written");
    let account_id = customer(1).id;
    let read = |store: &Store| {
        store
            .read(|reader| reader.customer_entries(account_id, 100, None, None))
            .expect("read")
            .0
            .iter()
            .map(|e| (e.transfer, e.amount_minor, e.balance_after_minor))
            .collect::<Vec<_>>()
    };
    let entries = read(&store);
    assert_eq!(
        entries,
        vec![
            (TransferId(11), 40, 790),
            (TransferId(31), -150, 750),
            (TransferId(10), -100, 900),
            (TransferId(1), 1_000, 1_000),
        ]
    );
    assert_eq!(account(&store, &customer(1)).balances.posted(), 790);
    store.shutdown();
    drop(store);
    assert_audit_ok(&audit_path(&h.path()).expect("audit"));

    // As if the database predated the statements (schema 18): migration 19 fills them from the
    // transfers (and the later migrations run again after it).
    let connection = Connection::open(h.path()).expect("open");
    connection
        .execute_batch(
            "DROP TABLE customer_entries; ALTER TABLE accounts DROP COLUMN last_entry_ns; \
             DROP TABLE step_up_totp; DROP TABLE risk_rules; DROP TABLE risk_decisions; \
             DROP TABLE ton_wallets; DROP TABLE ton_cursors; DROP TABLE ton_references; \
             DROP TABLE ton_transactions; DROP TABLE ton_refunds; \
             DROP INDEX refunds_pending_by_invoice; ALTER TABLE refunds DROP COLUMN next_action; \
             ALTER TABLE refunds DROP COLUMN status; \
             DELETE FROM schema_migrations WHERE version >= 19;",
        )
        .expect("undo migration 19");
    drop(connection);
    let store = h.open();
    assert_eq!(read(&store), entries);
    // Paging: after a cursor, and back from one.
    let page = |before: Option<u64>, after: Option<u64>| {
        store
            .read(|reader| reader.customer_entries(account_id, 2, before, after))
            .expect("read")
    };
    let all = page(None, None);
    assert!(all.1, "more than two entries");
    let older = page(Some(all.0[1].timestamp_ns), None);
    assert_eq!(
        older.0.iter().map(|e| e.transfer).collect::<Vec<_>>(),
        [TransferId(10), TransferId(1)]
    );
    assert!(!older.1);
    let back = page(None, Some(older.0[0].timestamp_ns));
    assert_eq!(back.0, all.0);
    assert!(!back.1);
    let back_one = store
        .read(|reader| reader.customer_entries(account_id, 1, None, Some(older.0[1].timestamp_ns)))
        .expect("read");
    assert_eq!(back_one.0[0].transfer, TransferId(10));
    assert!(back_one.1, "newer entries follow");
    store.shutdown();
    drop(store);
    assert_audit_ok(&audit_path(&h.path()).expect("audit"));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: what only a shared server database can do to the ledger
// ---------------------------------------------------------------------------------------------

/// Runs SQL on the test server as its superuser.
fn psql(url: &str, sql: &str) -> String {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let mut out = Vec::new();
    for message in client.simple_query(sql).expect("sql runs") {
        if let postgres::SimpleQueryMessage::Row(row) = message {
            out.push(row.get(0).unwrap_or("").to_owned());
        }
    }
    out.join(",")
}

/// Ends every ledger writer's session on `server` (as an operator's `pg_terminate_backend`
/// would); how many there were.
fn kill_writer_sessions(server: &Postgres) -> String {
    psql(
        server.url(),
        &format!(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = '{}'",
            farthing_store::pg::WRITER_NAME
        ),
    )
}

/// The server ends the writer's session (a restart, an operator's `pg_terminate_backend`):
/// the next write (or job) reconnects and commits once; nothing is lost or doubled.
#[test]
fn postgres_writer_reconnects_after_its_session_is_killed() {
    let server = Postgres::start();
    let url = server.schema();
    let h = Harness::new();
    // No idle expiry poll: the write below must be the first to meet the dead session.
    let mut options = h.options();
    options.expiry_poll_interval = Duration::from_secs(3_600);
    let ledger = Ledger::Postgres(PgLedger::open(&url, options).expect("open"));
    setup_funded_ledger(&ledger, 1_000);
    let killed = kill_writer_sessions(&server);
    assert_eq!(killed, "1", "the writer's session was found and ended");
    let (cust, merch) = (customer(1), merchant());
    let outcome = ledger
        .write(group(vec![single(2, &cust, &merch, 300)]))
        .expect("the write after the kill commits");
    assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
    let retry = ledger
        .write(group(vec![single(2, &cust, &merch, 300)]))
        .expect("a retry is answered");
    assert_eq!(retry.transfers[0].outcome, Outcome::Exists);
    assert_eq!(ledger_account(&ledger, &cust).balances.posted(), 700);
    // A job meeting a dead session: the failure comes before the job ran, so the batch is
    // tried again with it, and it commits once.
    let killed = kill_writer_sessions(&server);
    assert_eq!(killed, "1");
    let job = ledger
        .execute(move |tx| tx.apply(&group(vec![single(3, &customer(1), &merchant(), 200)])))
        .expect("queued")
        .wait()
        .expect("the job after the kill commits")
        .expect("no store error")
        .expect("the group is applied");
    assert_eq!(job.transfers[0].outcome, Outcome::Created);
    assert_eq!(ledger_account(&ledger, &cust).balances.posted(), 500);
    assert_audit_ok(&ledger.audit().expect("audit"));
    assert!(
        h.batches().iter().all(|stats| !stats.failed),
        "no caller saw a failure"
    );
    ledger.shutdown();
}

/// Instances starting together on an empty database migrate it once, and all serve.
#[test]
fn postgres_instances_starting_together_migrate_once() {
    let server = Postgres::start();
    let url = server.schema();
    let ledgers: Vec<PgLedger> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PgLedger::open(&url, StoreOptions::default())))
            .collect();
        starting
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .expect("no panic")
                    .expect("each instance opens")
            })
            .collect()
    });
    assert_eq!(
        psql(
            &url,
            "SELECT COUNT(*) || ':' || MAX(version) FROM schema_migrations"
        ),
        format!("{0}:{0}", farthing_store::pg::schema_version(),),
        "every migration applied once (they are numbered 1, 2, 3, …)"
    );
    let all: Vec<Ledger> = ledgers.into_iter().map(Ledger::Postgres).collect();
    setup_funded_ledger(&all[3], 50);
    assert_eq!(ledger_account(&all[0], &customer(1)).balances.posted(), 50);
    all.iter().for_each(Ledger::shutdown);
}

/// A role that may read and write the tables but not create anything runs the ledger on a
/// schema `farthing migrate` prepared (PostgreSQL 15 grants no CREATE on `public` to all).
#[test]
fn postgres_ledger_runs_as_a_role_without_create_rights() {
    let server = Postgres::start();
    let url = server.schema();
    farthing_store::pg::migrate(&url).expect("the owner migrates");
    let schema = psql(&url, "SELECT current_schema()");
    psql(
        server.url(),
        &format!(
            "CREATE ROLE shop LOGIN; GRANT USAGE ON SCHEMA {schema} TO shop; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO shop"
        ),
    );
    let as_shop = url.replacen("postgres://postgres@", "postgres://shop@", 1);
    assert_ne!(as_shop, url);
    let ledger =
        Ledger::Postgres(PgLedger::open(&as_shop, StoreOptions::default()).expect("opens"));
    setup_funded_ledger(&ledger, 10);
    assert_audit_ok(&ledger.audit().expect("audit as the role"));
    ledger.shutdown();
    // And it cannot create tables: the check above did not pass by accident.
    let mut client = postgres::Client::connect(&as_shop, postgres::NoTls).expect("connect");
    assert!(client.batch_execute("CREATE TABLE t (x int)").is_err());
}

/// A TCP proxy to the test server's Unix socket that can cut a session at its next `COMMIT`:
/// after forwarding it (the server commits, the answer is lost) or before (the server sees the
/// session end inside the transaction and rolls it back).
struct CommitCutter {
    port: u16,
    /// 0: pass everything; `CUT_AFTER` or `CUT_BEFORE`: cut at the next COMMIT (then 0 again).
    mode: Arc<std::sync::atomic::AtomicU8>,
}

const CUT_AFTER: u8 = 1;
const CUT_BEFORE: u8 = 2;

impl CommitCutter {
    fn start(socket: PathBuf) -> CommitCutter {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let armed = Arc::clone(&mode);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let Ok(mut server) = std::os::unix::net::UnixStream::connect(&socket) else {
                    continue;
                };
                let (Ok(mut from_server), Ok(mut to_client)) =
                    (server.try_clone(), client.try_clone())
                else {
                    continue;
                };
                let cut = Arc::new(AtomicBool::new(false));
                let answered = Arc::clone(&cut);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 65_536];
                    while let Ok(n) = from_server.read(&mut buffer) {
                        if n == 0
                            || answered.load(SeqCst)
                            || to_client.write_all(&buffer[..n]).is_err()
                        {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                let mode = Arc::clone(&armed);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 65_536];
                    while let Ok(n) = client.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        let chunk = &buffer[..n];
                        let is_commit = chunk.windows(7).any(|w| w == b"COMMIT\0");
                        let how = if is_commit { mode.swap(0, SeqCst) } else { 0 };
                        if how == CUT_BEFORE {
                            cut.store(true, SeqCst);
                            let _ = server.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                        if server.write_all(chunk).is_err() {
                            break;
                        }
                        if how == CUT_AFTER {
                            // The server has the COMMIT; its answer never reaches the client.
                            cut.store(true, SeqCst);
                            break;
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CommitCutter { port, mode }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn arm(&self, how: u8) {
        self.mode.store(how, SeqCst);
    }

    fn fired(&self) -> bool {
        self.mode.load(SeqCst) == 0
    }
}

/// The connection breaks while a batch commits. When the COMMIT reached the server, the
/// callers are answered with what the batch did (it is stored: their writes happened once);
/// when it did not, the batch runs again and is stored once. Nobody is told "failed" for a
/// write that happened, or "done" for one that did not.
#[test]
fn postgres_commit_whose_answer_is_lost_is_decided_by_its_transaction() {
    let server = Postgres::start();
    let proxy = CommitCutter::start(server.socket());
    let url = farthing_store::pg::scratch_schema(&proxy.url(), "lost_commit").expect("schema");
    let h = Harness::new();
    let mut options = h.options();
    options.expiry_poll_interval = Duration::from_secs(3_600);
    let ledger = Ledger::Postgres(PgLedger::open(&url, options).expect("open"));
    setup_funded_ledger(&ledger, 1_000);
    let (cust, merch) = (customer(1), merchant());

    proxy.arm(CUT_AFTER);
    let first = ledger
        .write(group(vec![single(2, &cust, &merch, 100)]))
        .expect("stored, so answered as stored");
    assert!(proxy.fired(), "the COMMIT's answer was cut");
    assert_eq!(first.transfers[0].outcome, Outcome::Created);

    proxy.arm(CUT_BEFORE);
    let second = ledger
        .write(group(vec![single(3, &cust, &merch, 200)]))
        .expect("rolled back, run again, stored");
    assert!(proxy.fired(), "the COMMIT was cut");
    assert_eq!(second.transfers[0].outcome, Outcome::Created);

    for (id, amount) in [(2, 100), (3, 200)] {
        let again = ledger
            .write(group(vec![single(id, &cust, &merch, amount)]))
            .expect("a retry is answered");
        assert_eq!(again.transfers[0].outcome, Outcome::Exists, "transfer {id}");
    }
    assert_eq!(ledger_account(&ledger, &cust).balances.posted(), 700);
    assert_eq!(ledger_account(&ledger, &merch).balances.posted(), 300);
    assert_audit_ok(&ledger.audit().expect("audit"));
    assert!(h.batches().iter().all(|stats| !stats.failed));
    ledger.shutdown();
}

/// A remote PostgreSQL over TLS, with libpq's `sslmode`/`sslrootcert`: the ledger's sessions
/// are encrypted (the server says so), `verify-full` checks both the CA and the host name,
/// `verify-ca` the CA only, a certificate from an unknown CA is refused with a hint, and a
/// server that takes TLS only refuses `sslmode=disable`.
#[test]
fn postgres_over_tls_checks_the_certificate_as_sslmode_says() {
    let server = Postgres::start_tls();
    let (ca, other_ca) = server.ca();
    let (ca, other_ca) = (ca.display(), other_ca.display());
    // "localhost" is the certificate's name; 127.0.0.1 is the same server under another name.
    let by_name = server.tcp_url().to_owned();
    let by_address = by_name.replace("@localhost:", "@127.0.0.1:");
    let encrypted_writers = || {
        psql(
            server.url(),
            &format!(
                "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = '{}' AND s.ssl",
                farthing_store::pg::WRITER_NAME
            ),
        )
    };
    for (url, what) in [
        (
            format!("{by_name}?sslmode=verify-full&sslrootcert={ca}"),
            "verify-full, the host the certificate names",
        ),
        (
            format!("{by_address}?sslmode=verify-ca&sslrootcert={ca}"),
            "verify-ca, another name for the host",
        ),
        (format!("{by_address}?sslmode=require"), "require"),
        (by_address.clone(), "prefer (no sslmode)"),
    ] {
        let ledger = Ledger::Postgres(PgLedger::open(&url, StoreOptions::default()).expect(what));
        setup_funded_ledger(&ledger, 10);
        assert_eq!(
            encrypted_writers(),
            "1",
            "{what}: the writer's session is TLS"
        );
        assert_audit_ok(&ledger.audit().expect("audit"));
        ledger.shutdown();
    }
    let refused = |url: String| match PgLedger::open(&url, StoreOptions::default()) {
        Ok(ledger) => {
            ledger.shutdown();
            panic!("{url} connected")
        }
        Err(error) => error.to_string(),
    };
    let wrong_name = refused(format!("{by_address}?sslmode=verify-full&sslrootcert={ca}"));
    assert!(
        wrong_name.contains("certificate") && wrong_name.contains("verify-ca skips the name"),
        "{wrong_name}"
    );
    let unknown_ca = refused(format!(
        "{by_name}?sslmode=verify-full&sslrootcert={other_ca}"
    ));
    assert!(
        unknown_ca.contains("UnknownIssuer") && unknown_ca.contains("must hold the CA"),
        "{unknown_ca}"
    );
    // As libpq: a root certificate given is checked in require and prefer too.
    for mode in ["require", "prefer"] {
        let wrong_ca = refused(format!("{by_name}?sslmode={mode}&sslrootcert={other_ca}"));
        assert!(wrong_ca.contains("UnknownIssuer"), "{mode}: {wrong_ca}");
    }
    let plain = refused(format!("{by_name}?sslmode=disable"));
    assert!(
        plain.contains("no encryption") && plain.contains("28000"),
        "the server's own refusal: {plain}"
    );
    assert!(!format!("{wrong_name}{unknown_ca}{plain}").contains("farthing-test"));
    // The Unix socket never uses TLS, whatever the URL asks.
    let local = format!("{}&sslmode=verify-full&sslrootcert={ca}", server.url());
    let ledger = PgLedger::open(&local, StoreOptions::default()).expect("the socket");
    ledger.shutdown();
}

/// The PostgreSQL migrations make the same schema as SQLite's: the same tables with the same
/// columns in the same order (BLOB ~ bytea, INTEGER ~ bigint, TEXT ~ text), the same nullability
/// and defaults, the same indexes on the same columns; and the same numbers and names.
#[test]
fn postgres_schema_is_sqlites() {
    let server = Postgres::start();
    let url = server.schema();
    assert_eq!(
        farthing_store::pg::migrate(&url).expect("migrate"),
        farthing_store::schema_version()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("schema.db");
    Store::open(&path, StoreOptions::default())
        .expect("open")
        .shutdown();
    let sqlite = Connection::open(&path).expect("sqlite");

    let mut lite_columns = Vec::new();
    let mut lite_indexes = Vec::new();
    let tables: Vec<String> = sqlite
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations'",
        )
        .expect("tables")
        .query_map([], |row| row.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    for table in &tables {
        let mut statement = sqlite
            .prepare(&format!("PRAGMA table_info({table})"))
            .expect("columns");
        let mut rows = statement.query([]).expect("columns");
        while let Some(row) = rows.next().expect("a column") {
            let (position, name, kind): (i64, String, String) = (
                row.get(0).unwrap(),
                row.get(1).unwrap(),
                row.get(2).unwrap(),
            );
            let (not_null, default, pk): (bool, Option<String>, i64) = (
                row.get(3).unwrap(),
                row.get(4).unwrap(),
                row.get(5).unwrap(),
            );
            let kind = match kind.as_str() {
                "BLOB" => "bytea",
                "INTEGER" => "bigint",
                "TEXT" => "text",
                other => panic!("{table}.{name}: SQLite type {other} has no PostgreSQL match here"),
            };
            let nullable = if not_null || pk > 0 {
                "not null"
            } else {
                "null"
            };
            lite_columns.push((
                table.clone(),
                position,
                format!(
                    "{table}.{name} {kind} {nullable} default {}",
                    default.unwrap_or_default()
                ),
            ));
        }
    }
    let mut statement = sqlite
        .prepare("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        .expect("indexes");
    let mut rows = statement.query([]).expect("indexes");
    while let Some(row) = rows.next().expect("an index") {
        let (name, table, sql): (String, String, String) = (
            row.get(0).unwrap(),
            row.get(1).unwrap(),
            row.get(2).unwrap(),
        );
        lite_indexes.push(index_line(&name, &table, &sql));
    }
    drop(rows);
    // A UNIQUE column is an automatic index on SQLite, a `<table>_<column>_key` on PostgreSQL.
    for table in &tables {
        let unique: Vec<String> = sqlite
            .prepare(&format!(
                "SELECT name FROM pragma_index_list('{table}') WHERE origin = 'u'"
            ))
            .expect("unique constraints")
            .query_map([], |row| row.get(0))
            .expect("unique constraints")
            .collect::<Result<_, _>>()
            .expect("unique constraints");
        for index in unique {
            let columns: Vec<String> = sqlite
                .prepare(&format!(
                    "SELECT name FROM pragma_index_info('{index}') ORDER BY seqno"
                ))
                .expect("columns")
                .query_map([], |row| row.get(0))
                .expect("columns")
                .collect::<Result<_, _>>()
                .expect("columns");
            let name = format!("{table}_{}_key", columns.join("_"));
            let sql = format!(
                "CREATE UNIQUE INDEX {name} ON {table} ({})",
                columns.join(", ")
            );
            lite_indexes.push(index_line(&name, table, &sql));
        }
    }

    let pg_columns: Vec<(String, i64, String)> = psql(
        &url,
        "SELECT string_agg(table_name || '|' || ordinal_position || '|' || table_name || '.' \
         || column_name || ' ' || data_type || ' ' \
         || CASE WHEN is_nullable = 'NO' THEN 'not null' ELSE 'null' END \
         || ' default ' || COALESCE(regexp_replace(column_default, '::[a-z ]+$', ''), ''), E'\\n') \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name != 'schema_migrations'",
    )
    .lines()
    .map(|line| {
        let mut parts = line.splitn(3, '|');
        let table = parts.next().unwrap().to_owned();
        let position: i64 = parts.next().unwrap().parse().unwrap();
        (table, position, parts.next().unwrap().to_owned())
    })
    .collect();
    // PostgreSQL numbers columns from 1 and keeps the numbers of dropped ones: compare in order.
    let ordered = |mut columns: Vec<(String, i64, String)>| {
        columns.sort();
        columns
            .into_iter()
            .map(|(_, _, line)| line)
            .collect::<Vec<_>>()
    };
    let (lite, pg) = (ordered(lite_columns), ordered(pg_columns));
    let differ: Vec<_> = lite.iter().zip(&pg).filter(|(a, b)| a != b).collect();
    assert!(
        differ.is_empty(),
        "columns differ (SQLite, PostgreSQL): {differ:#?}"
    );
    assert_eq!(lite.len(), pg.len(), "the same number of columns");
    assert!(
        lite.len() > 200,
        "the whole schema was compared: {} columns",
        lite.len()
    );

    let mut pg_indexes: Vec<String> = psql(
        &url,
        "SELECT string_agg(indexname || '|' || tablename || '|' || indexdef, E'\\n') \
         FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%_pkey'",
    )
    .lines()
    .map(|line| {
        let mut parts = line.splitn(3, '|');
        let (name, table) = (parts.next().unwrap(), parts.next().unwrap());
        index_line(name, table, parts.next().unwrap())
    })
    .collect();
    lite_indexes.sort();
    pg_indexes.sort();
    assert_eq!(lite_indexes, pg_indexes, "the same indexes");
    assert!(
        lite_indexes.len() > 30,
        "{} indexes compared",
        lite_indexes.len()
    );
    assert_eq!(
        psql(&url, "SELECT string_agg(version || ' ' || name, ';' ORDER BY version) FROM schema_migrations"),
        sqlite
            .query_row(
                "SELECT group_concat(version || ' ' || name, ';') FROM \
                 (SELECT version, name FROM schema_migrations ORDER BY version)",
                [],
                |row| row.get::<_, String>(0)
            )
            .expect("names"),
        "the same migrations, numbers and names"
    );
}

/// An index as both databases describe it: name, table, unique or not, its columns, partial or
/// not. `sql` is SQLite's `CREATE … INDEX` or PostgreSQL's `indexdef`.
fn index_line(name: &str, table: &str, sql: &str) -> String {
    let unique = sql.to_ascii_uppercase().starts_with("CREATE UNIQUE");
    let after_on = &sql[sql.find(" ON ").expect("ON") + 4..];
    let open = after_on.find('(').expect("columns");
    let close = open + after_on[open..].find(')').expect("columns");
    let columns: String = after_on[open + 1..close].split_whitespace().collect();
    let partial = after_on[close..].to_ascii_uppercase().contains("WHERE");
    format!("{name} on {table} unique={unique} ({columns}) partial={partial}")
}

/// Customers' statements on PostgreSQL: two instances write movements of several customer
/// balances (charges, top-ups, a hold posted and one voided); the entries each batch wrote are
/// exactly what migration 19's fill makes from the transfers, and `farthing audit` checks them
/// (it finds a missing entry).
#[test]
fn postgres_statements_are_what_the_transfers_say() {
    let server = Postgres::start();
    let url = server.schema();
    let a = Ledger::Postgres(PgLedger::open(&url, StoreOptions::default()).expect("a"));
    let b = Ledger::Postgres(PgLedger::open(&url, StoreOptions::default()).expect("b"));
    setup_funded_ledger(&a, 1_000);
    let mut next = 100;
    let mut id = || {
        next += 1;
        next
    };
    b.write(Group {
        accounts: vec![customer(2), customer(3)],
        transfers: vec![
            single(id(), &external(), &customer(2), 500),
            single(id(), &external(), &customer(3), 70),
        ],
    })
    .expect("top-ups");
    let held = id();
    let voided = id();
    for round in 0..20_u64 {
        let (ledger, other) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // Two writers at once: the batches of both instances interleave.
        let first = ledger
            .submit(group(vec![single(id(), &customer(1), &merchant(), 7)]))
            .expect("queued");
        let second = other
            .submit(group(vec![
                single(id(), &customer(2), &merchant(), 3),
                single(id(), &merchant(), &customer(3), 1),
            ]))
            .expect("queued");
        first.wait().expect("a charge");
        second.wait().expect("a charge and a credit");
    }
    a.write(group(vec![
        hold(held, &customer(1), &merchant(), 50, 0),
        hold(voided, &customer(2), &merchant(), 40, 0),
    ]))
    .expect("holds");
    b.write(group(vec![
        post(id(), TransferId(held), Some(30)),
        void(id(), TransferId(voided)),
    ]))
    .expect("post and void");
    assert_audit_ok(&a.audit().expect("audit"));
    assert_eq!(
        ledger_account(&a, &customer(1)).balances.posted(),
        1_000 - 140 - 30
    );

    let entries = |url: &str| {
        psql(
            url,
            "SELECT string_agg(encode(account_id, 'hex') || ' ' || timestamp_ns || ' ' \
             || encode(transfer_id, 'hex') || ' ' || amount || ' ' || balance_after || ' ' \
             || code || ' ' || COALESCE(prev_ns::text, '-'), ';' \
             ORDER BY account_id, timestamp_ns) FROM customer_entries",
        )
    };
    let written = entries(&url);
    let heads = psql(
        &url,
        "SELECT string_agg(encode(id, 'hex') || ' ' || COALESCE(last_entry_ns::text, '-'), ';' \
         ORDER BY id) FROM accounts",
    );
    // 1 funding + 20 charges + 1 post for customer 1; 1 + 20 for 2; 1 + 20 for 3.
    assert_eq!(written.split(';').count(), 22 + 21 + 21, "{written}");
    assert_eq!(
        farthing_store::pg::rebuild_statements(&url).expect("rebuild"),
        64
    );
    assert_eq!(
        entries(&url),
        written,
        "the writers' entries are the fill's"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT string_agg(encode(id, 'hex') || ' ' || COALESCE(last_entry_ns::text, '-'), \
             ';' ORDER BY id) FROM accounts",
        ),
        heads
    );

    psql(
        &url,
        "DELETE FROM customer_entries WHERE timestamp_ns = (SELECT MAX(timestamp_ns) \
         FROM customer_entries)",
    );
    let report = a.audit().expect("audit");
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("statement does not add up")),
        "a missing entry is found: {:?}",
        report.problems
    );
    farthing_store::pg::rebuild_statements(&url).expect("rebuild");
    assert_audit_ok(&a.audit().expect("audit"));
    a.shutdown();
    b.shutdown();
}

/// An instance that keeps running while a newer farthing migrates the database stops writing
/// (each batch checks the schema's version under the clock lock): it would not keep the newer
/// tables up to date. Nothing of the refused write is stored.
#[test]
fn postgres_writer_stops_once_a_newer_farthing_migrated() {
    let server = Postgres::start();
    let url = server.schema();
    let ledger = Ledger::Postgres(PgLedger::open(&url, StoreOptions::default()).expect("open"));
    setup_funded_ledger(&ledger, 100);
    psql(
        &url,
        &format!(
            "INSERT INTO schema_migrations (version, name) VALUES ({}, 'from the future')",
            farthing_store::pg::schema_version() + 1
        ),
    );
    let refused = ledger
        .write(group(vec![single(2, &customer(1), &merchant(), 10)]))
        .expect_err("refused");
    assert!(
        refused.to_string().contains("newer than this farthing"),
        "{refused}"
    );
    assert!(ledger.transfer(TransferId(2)).expect("read").is_none());
    ledger.shutdown();
}

/// `farthing audit` on PostgreSQL checks the rail payments as on SQLite: parts that do not add
/// up are a problem, money held in suspense a finding for the operator.
#[test]
fn postgres_audit_checks_rail_payments() {
    let server = Postgres::start();
    let url = server.schema();
    farthing_store::pg::migrate(&url).expect("migrate");
    assert_audit_ok(&farthing_store::pg::audit(&url).expect("audit"));
    let merchant = format!("decode('{:032x}', 'hex')", 7);
    psql(
        &url,
        &format!(
            "INSERT INTO rail_payments (merchant_id, rail, external_id, currency, amount_minor, \
             paid_minor, credited_minor, created_at_ns, suspended_minor, suspense_reason) VALUES \
             ({merchant}, 'stars', 'broken', 'XTR', 10, 3, 0, 1, 0, NULL), \
             ({merchant}, 'stars', 'held', 'XTR', 10, 0, 0, 2, 10, 'no open invoice')"
        ),
    );
    let report = farthing_store::pg::audit(&url).expect("audit");
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(report.problems[0].contains("\"broken\""), "{report}");
    assert_eq!(report.findings.len(), 1, "{report}");
    assert!(
        report.findings[0].contains("\"held\"") && report.findings[0].contains("no open invoice"),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Jobs (business rows written with the ledger) on both backends
// ---------------------------------------------------------------------------------------------

/// A charge job as the API's balance charge makes one: the idempotency key is looked up, the
/// customer's balance debited, the charge and its key stored; all in one job.
fn charge_job(
    ledger: &Ledger,
    n: u128,
    key: String,
    amount_minor: u64,
) -> Result<Result<ChargeId, String>, WriteError> {
    ledger
        .execute(move |tx| {
            if tx
                .idempotency_key(MERCHANT, &key)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Err("key used".to_owned());
            }
            let transfer = single(1_000 + n, &customer(1), &merchant(), amount_minor);
            match tx
                .apply(&group(vec![transfer]))
                .map_err(|e| e.to_string())?
            {
                Ok(_) => {}
                Err(refused) => return Err(refused.to_string()),
            }
            let id = ChargeId(n);
            tx.insert_charge(&Charge {
                id,
                merchant: MERCHANT,
                customer: CustomerId(1),
                currency: XTR,
                amount_minor,
                refunded_minor: 0,
                description: format!("charge {n}"),
                metadata: Vec::new(),
                created_at_ns: tx.now_ns(),
            })
            .map_err(|e| e.to_string())?;
            tx.insert_idempotency_key(MERCHANT, &key, b"fingerprint", 200, "{}")
                .map_err(|e| e.to_string())?;
            Ok(id)
        })?
        .wait()
}

/// Jobs on `ledgers` (several instances on PostgreSQL, one store on SQLite): business rows and
/// ledger groups commit together, a failing job leaves nothing, concurrent charges from every
/// instance never overdraw the balance, and what one instance wrote the others read.
fn jobs_scenario(ledgers: &[Ledger]) {
    const FUNDING: u64 = 1_000;
    let first = &ledgers[0];
    let last = &ledgers[ledgers.len() - 1];
    first
        .execute(|tx| {
            tx.insert_merchant(&Merchant {
                id: MERCHANT,
                name: "Shop".to_owned(),
                created_at_ns: tx.now_ns(),
            })?;
            tx.insert_customer(&Customer {
                id: CustomerId(1),
                merchant: MERCHANT,
                external_id: Some("tg:42".to_owned()),
                metadata: vec![("plan".to_owned(), "gold".to_owned())],
                created_at_ns: tx.now_ns(),
            })?;
            let funding = Group {
                accounts: vec![external(), merchant(), fees(), customer(1)],
                transfers: vec![single(1, &external(), &customer(1), FUNDING)],
            };
            tx.apply(&funding)?
                .map_err(|e| StoreError::Refused(e.to_string()))?;
            Ok::<_, StoreError>(())
        })
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("the setup job succeeds");

    // Another instance reads it all.
    let (merchant_row, found, balances) = last
        .read(|reader| {
            Ok((
                reader.merchant(MERCHANT)?,
                reader.customer_by_external_id(MERCHANT, "tg:42")?,
                reader.customer_balances(MERCHANT, CustomerId(1))?,
            ))
        })
        .expect("read");
    assert_eq!(merchant_row.map(|m| m.name), Some("Shop".to_owned()));
    let found = found.expect("the customer is found by its external id");
    assert_eq!(found.metadata, vec![("plan".to_owned(), "gold".to_owned())]);
    assert_eq!(
        balances,
        vec![(XTR, i128::from(FUNDING), i128::from(FUNDING))]
    );

    // A job that fails after writing leaves nothing (its customer row and its transfer go),
    // while the jobs batched with it keep theirs: 20 failing and 20 succeeding jobs queued at
    // once, so they share batches (a failing job alone in a batch would prove nothing: the
    // batch writes nothing and is rolled back whole).
    let tickets: Vec<_> = (0..40u128)
        .map(|n| {
            let fail = n % 2 == 0;
            // Each instance gets failing and succeeding jobs.
            ledgers[(n as usize / 2) % ledgers.len()]
                .execute(move |tx| {
                    tx.insert_customer(&Customer {
                        id: CustomerId(100 + n),
                        merchant: MERCHANT,
                        external_id: None,
                        metadata: Vec::new(),
                        created_at_ns: tx.now_ns(),
                    })?;
                    if fail {
                        let spend = group(vec![single(100 + n, &customer(1), &merchant(), 10)]);
                        tx.apply(&spend)?
                            .map_err(|e| StoreError::Refused(e.to_string()))?;
                        return Err(StoreError::Refused("changed my mind".to_owned()));
                    }
                    Ok(())
                })
                .expect("queued")
        })
        .collect();
    for (n, ticket) in tickets.into_iter().enumerate() {
        let result = ticket.wait().expect("the batch committed");
        assert_eq!(result.is_err(), n % 2 == 0, "job {n}: {result:?}");
    }
    for n in 0..40u128 {
        let stored = first
            .read(|reader| reader.customer(CustomerId(100 + n)))
            .expect("read");
        assert_eq!(stored.is_some(), n % 2 == 1, "customer of job {n}");
        if n % 2 == 0 {
            let spend = first.transfer(TransferId(100 + n)).expect("read");
            assert_eq!(spend, None, "the failed job {n}'s transfer is not stored");
        }
    }
    let balance = first
        .read(|reader| reader.customer_balances(MERCHANT, CustomerId(1)))
        .expect("read");
    assert_eq!(balance[0].1, i128::from(FUNDING));

    // 40 charges of 100 from every instance at once against 1 000, each idempotency key sent
    // twice (through different instances when there are several): exactly 10 are stored, no
    // key twice.
    let outcomes: Vec<Result<ChargeId, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..40u128)
            .map(|n| {
                let ledger = &ledgers[(n as usize) % ledgers.len()];
                let key = format!("charge-{}", n / 2);
                scope.spawn(move || {
                    charge_job(ledger, n + 1, key, 100).expect("the batch committed")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("no panic"))
            .collect()
    });
    let charged: Vec<ChargeId> = outcomes.iter().filter_map(|o| o.clone().ok()).collect();
    assert_eq!(charged.len(), 10, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|e| e.contains("insufficient") || e == "key used"),
        "{outcomes:?}"
    );
    let mut keys_charged: Vec<u128> = charged.iter().map(|id| (id.0 - 1) / 2).collect();
    keys_charged.sort();
    keys_charged.dedup();
    assert_eq!(keys_charged.len(), 10, "no key charged twice: {charged:?}");
    let (page, balances, keys) = last
        .read(|reader| {
            let page = reader.charges(MERCHANT, PageRequest::newest(100))?;
            let mut keys = 0;
            for n in 0..20u128 {
                keys += usize::from(
                    reader
                        .idempotency_key(MERCHANT, &format!("charge-{n}"))?
                        .is_some(),
                );
            }
            Ok((
                page,
                reader.customer_balances(MERCHANT, CustomerId(1))?,
                keys,
            ))
        })
        .expect("read");
    let mut stored: Vec<ChargeId> = page.data.iter().map(|c| c.id).collect();
    stored.sort();
    let mut expected = charged.clone();
    expected.sort();
    assert_eq!(stored, expected, "the charges stored are those answered Ok");
    assert_eq!(
        keys, 10,
        "a key for each stored charge, none for the refused"
    );
    assert_eq!(balances, vec![(XTR, 0, 0)]);
    // A charge repeated with its key is refused by the job, on any instance.
    let again = charge_job(first, 99, format!("charge-{}", (charged[0].0 - 1) / 2), 100)
        .expect("the batch committed");
    assert_eq!(again, Err("key used".to_owned()));
    assert_audit_ok(&first.audit().expect("audit"));
}

#[test]
fn jobs_write_business_rows_with_the_ledger_on_sqlite() {
    let h = Harness::new();
    jobs_scenario(&[Ledger::Sqlite(h.open())]);
}

#[test]
fn jobs_write_business_rows_with_the_ledger_on_two_postgres_instances() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let instances = postgres_instances(&postgres, &h, 2);
    jobs_scenario(&instances);

    // A job that goes on after one of its statements failed (and returns Ok): SQLite would
    // keep its other writes, PostgreSQL's transaction cannot, so the job is answered with an
    // error and nothing of it is stored; the jobs batched with it are not disturbed.
    let customer_row = |n: u128| Customer {
        id: CustomerId(n),
        merchant: MERCHANT,
        external_id: None,
        metadata: Vec::new(),
        created_at_ns: T0,
    };
    let ledger = &instances[0];
    let (duplicate, fresh) = (customer_row(1), customer_row(500));
    let careless = ledger
        .execute(move |tx| {
            assert!(tx.insert_customer(&duplicate).is_err(), "customer 1 exists");
            let _ = tx.insert_customer(&fresh);
            Ok::<_, StoreError>(())
        })
        .expect("queued");
    let next = customer_row(501);
    let careful = ledger
        .execute(move |tx| tx.insert_customer(&next))
        .expect("queued");
    match careless.wait() {
        Err(WriteError::Failed(message)) => {
            assert!(message.contains("nothing of it was stored"), "{message}");
        }
        other => panic!("the careless job must fail: {other:?}"),
    }
    careful
        .wait()
        .expect("committed")
        .expect("the other job is stored");
    let (lost, kept) = ledger
        .read(|reader| {
            Ok((
                reader.customer(CustomerId(500))?,
                reader.customer(CustomerId(501))?,
            ))
        })
        .expect("read");
    assert_eq!(lost, None);
    assert!(kept.is_some());
}

/// Leadership of the background work among the instances on one PostgreSQL schema: exactly one
/// of two candidates leads, another schema has a leader of its own, the other candidate takes
/// over within seconds once the leader lets go, and a leader whose session is ended steps down
/// (someone leads again afterwards, never two at once once the dust settles).
#[test]
fn postgres_leadership_passes_to_another_instance() {
    use farthing_store::instances::Leadership;
    let server = Postgres::start();
    let (shop, other) = (server.schema(), server.schema());
    let candidate = |url: &str| {
        let leads = Arc::new(AtomicBool::new(false));
        let told = Arc::clone(&leads);
        let leadership =
            Leadership::campaign(url, "leader", move |now| told.store(now, SeqCst)).expect("asks");
        (leadership, leads)
    };
    let (first, first_leads) = candidate(&shop);
    assert!(
        first_leads.load(SeqCst),
        "the first candidate leads at once"
    );
    let (second, second_leads) = candidate(&shop);
    assert!(!second_leads.load(SeqCst), "one leader per schema");
    let (beside, beside_leads) = candidate(&other);
    assert!(beside_leads.load(SeqCst), "another schema leads on its own");

    // The leader stops: the other takes over.
    drop(first);
    assert!(
        eventually(Duration::from_secs(5), || second_leads.load(SeqCst)),
        "the second candidate takes over once the first let go"
    );

    // The leader's session is ended (a failover, an operator): it steps down; then one of the
    // candidates leads again (a third one joined meanwhile), and only one.
    let (third, third_leads) = candidate(&shop);
    assert!(!third_leads.load(SeqCst));
    // (The other schema's leader goes first, so that the one exclusive advisory lock held is
    // the shop's; every candidate also holds its schema's serving lock, shared.)
    drop(beside);
    let killed = psql(
        server.url(),
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'",
    );
    assert_eq!(
        killed, "1",
        "the leader holds the one exclusive advisory lock"
    );
    let one_leader = || second_leads.load(SeqCst) as u8 + third_leads.load(SeqCst) as u8 == 1;
    assert!(
        eventually(Duration::from_secs(10), || third_leads.load(SeqCst)
            || (second_leads.load(SeqCst) && one_leader())),
        "someone leads after the leader's session ended"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(one_leader(), "exactly one leader once settled");
    drop((second, third));
}

/// News between instances: a job's announcement reaches the listeners on its schema when the
/// job commits, not those of another schema, and not at all when the job fails; an
/// announcement outside a job arrives too. A listener whose session is ended says it is deaf,
/// then listens again (and says so, as anything announced meanwhile may be missed).
#[test]
fn postgres_announcements_reach_the_other_instances_on_commit_only() {
    use farthing_store::instances::{Heard, Listener, Topic};
    use farthing_store::Store;
    let server = Postgres::start();
    let (shop, other) = (server.schema(), server.schema());
    let open = |url: &str| {
        Store::open_url(
            &farthing_store::DatabaseUrl::parse(url).expect("url"),
            StoreOptions::default(),
        )
        .expect("opens")
    };
    let (writer, elsewhere) = (open(&shop), open(&other));
    let heard = |url: &str| {
        let (tell, told) = std::sync::mpsc::channel::<Heard>();
        let listener = Listener::start(url, move |news| {
            let _ = tell.send(news);
        })
        .expect("listens");
        assert_eq!(told.recv().expect("first news"), Heard::Listening);
        (listener, told)
    };
    let (_here, here_told) = heard(&shop);
    let (_there, there_told) = heard(&other);
    let next = |told: &std::sync::mpsc::Receiver<Heard>| told.recv_timeout(Duration::from_secs(3));

    // Committed: heard on its schema only.
    writer
        .execute(|tx| tx.announce(Topic::ApiKeys))
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("announced");
    assert_eq!(next(&here_told), Ok(Heard::Changed(Topic::ApiKeys)));
    // A failed job's announcement is undone with its other writes.
    let failed = writer
        .execute(|tx| -> Result<(), StoreError> {
            tx.announce(Topic::RiskRules)?;
            Err(StoreError::Refused("changed its mind".to_owned()))
        })
        .expect("queued")
        .wait()
        .expect("the batch committed");
    assert!(failed.is_err());
    writer.announce(Topic::Outbox).expect("announced");
    assert_eq!(
        next(&here_told),
        Ok(Heard::Changed(Topic::Outbox)),
        "the failed job's topic was not heard; the next one was"
    );
    assert!(next(&there_told).is_err(), "another schema hears nothing");
    elsewhere.announce(Topic::Rails).expect("announced");
    assert_eq!(next(&there_told), Ok(Heard::Changed(Topic::Rails)));

    // The listening session is ended: deaf, then listening again.
    let killed = psql(
        server.url(),
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'farthing-listen'",
    );
    assert_eq!(killed, "2");
    assert_eq!(next(&here_told), Ok(Heard::Deaf));
    assert_eq!(next(&here_told), Ok(Heard::Listening));
    writer.announce(Topic::ApiKeys).expect("announced");
    assert_eq!(next(&here_told), Ok(Heard::Changed(Topic::ApiKeys)));
    writer.shutdown();
    elsewhere.shutdown();
}

/// A due webhook attempt is claimed by one instance only: two instances on one database claim
/// it, one wins; it is not due for anyone during the lease; once the lease has run out (its
/// claimant stalled), it is due and can be claimed again, and the stalled claimant's late
/// release is refused (its attempt must not be recorded over the newer one), while the new
/// claimant's holds.
#[test]
fn postgres_webhook_attempts_are_claimed_by_one_instance() {
    use farthing_core::{EventId, WebhookEndpointId};
    let server = Postgres::start();
    let url = server.schema();
    let [one, two] = [(); 2].map(|_| PgLedger::open(&url, StoreOptions::default()).expect("open"));
    let (event, endpoint) = (EventId(9), WebhookEndpointId(5));
    one.execute(move |tx| {
        tx.insert_endpoint(&farthing_store::WebhookEndpoint {
            id: endpoint,
            merchant: MerchantId(7),
            url: "https://shop.example/hooks".to_owned(),
            secret: "whsec_x".to_owned(),
            events: vec!["*".to_owned()],
            status: "enabled".to_owned(),
            disabled_reason: None,
            created_at_ns: 1,
        })?;
        tx.insert_event(&farthing_store::EventRecord {
            id: event,
            merchant: MerchantId(7),
            event_type: "charge.succeeded".to_owned(),
            data: "{}".to_owned(),
            created_at_ns: 2,
        })
    })
    .expect("queued")
    .wait()
    .expect("committed")
    .expect("stored");
    let claim = |ledger: &PgLedger, lease_s: u64| {
        ledger
            .execute(move |tx| {
                let until = tx.now_ns() + lease_s * 1_000_000_000;
                Ok::<_, StoreError>(tx.claim_delivery(event, endpoint, until)?.then_some(until))
            })
            .expect("queued")
            .wait()
            .expect("committed")
            .expect("claimed or not")
    };
    let release = |ledger: &PgLedger, until: u64| {
        ledger
            .execute(move |tx| tx.release_claim(event, endpoint, until))
            .expect("queued")
            .wait()
            .expect("committed")
            .expect("released or not")
    };
    let due = |ledger: &PgLedger| {
        ledger
            .read(|reader| reader.due_deliveries(farthing_store::system_clock()(), 10))
            .expect("read")
            .len()
    };
    assert_eq!(due(&two), 1, "due before any claim");
    let [first, second] = [&one, &two].map(|ledger| claim(ledger, 60));
    let stalled = first.expect("the first claim wins");
    assert_eq!(second, None, "the second claim loses");
    assert_eq!(due(&two), 0, "not due for anyone during the lease");
    assert_eq!(claim(&one, 60), None, "not even for its claimant");
    // The claim of an instance that died: its lease is over (a lease of no time here).
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    client
        .execute("UPDATE delivery_queue SET next_attempt_at_ns = 0", &[])
        .expect("lease ends");
    assert_eq!(due(&two), 1, "due again once the lease ended");
    let taken = claim(&two, 60).expect("and claimed again");
    assert!(!release(&one, stalled), "the stalled claim no longer holds");
    assert!(release(&two, taken), "the new one does");
    one.shutdown();
    two.shutdown();
}

/// Events are queued to the endpoints as they are at that point of the batch, though the batch
/// reads each merchant's endpoints once: an endpoint added, one added and undone by a nested
/// savepoint, one disabled, each seen by the next event of the same job.
fn events_follow_the_endpoints_within_a_batch(ledger: &Ledger) {
    use farthing_core::{EventId, WebhookEndpointId};
    use farthing_store::{EventRecord, WebhookEndpoint};
    let endpoint = |n: u128| WebhookEndpoint {
        id: WebhookEndpointId(n),
        merchant: MERCHANT,
        url: format!("https://shop.example/hooks/{n}"),
        secret: "whsec_x".to_owned(),
        events: vec!["*".to_owned()],
        status: "enabled".to_owned(),
        disabled_reason: None,
        created_at_ns: T0,
    };
    let event = |n: u128| EventRecord {
        id: EventId(n),
        merchant: MERCHANT,
        event_type: "charge.succeeded".to_owned(),
        data: "{}".to_owned(),
        created_at_ns: T0 + 1,
    };
    ledger
        .execute(move |tx| {
            tx.insert_event(&event(1))?;
            tx.insert_endpoint(&endpoint(1))?;
            tx.insert_event(&event(2))?;
            let undone = tx.nested(|tx| {
                tx.insert_endpoint(&endpoint(2))?;
                tx.insert_event(&event(3))?;
                Err::<(), StoreError>(StoreError::Corrupt("undone on purpose".to_owned()))
            })?;
            assert!(undone.is_err());
            tx.insert_event(&event(4))?;
            tx.disable_endpoint(WebhookEndpointId(1), "test")?;
            tx.insert_event(&event(5))
        })
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("stored");
    let endpoints_of = |n: u128| {
        let mut endpoints: Vec<u128> = ledger
            .read(|reader| reader.deliveries_of(EventId(n)))
            .expect("read")
            .iter()
            .map(|delivery| delivery.endpoint.0)
            .collect();
        endpoints.sort_unstable();
        endpoints
    };
    assert_eq!(endpoints_of(1), Vec::<u128>::new(), "no endpoint yet");
    assert_eq!(endpoints_of(2), [1], "the endpoint just added");
    assert_eq!(endpoints_of(3), Vec::<u128>::new(), "undone with its event");
    assert_eq!(
        endpoints_of(4),
        [1],
        "not the endpoint the nested savepoint undid"
    );
    assert_eq!(
        endpoints_of(5),
        Vec::<u128>::new(),
        "not the disabled endpoint"
    );
}

#[test]
fn events_follow_the_endpoints_within_a_batch_on_sqlite() {
    let h = Harness::new();
    events_follow_the_endpoints_within_a_batch(&Ledger::Sqlite(h.open()));
}

#[test]
fn events_follow_the_endpoints_within_a_batch_on_postgres() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let instances = postgres_instances(&postgres, &h, 1);
    events_follow_the_endpoints_within_a_batch(&instances[0]);
}

type KeyJob = Box<dyn FnOnce(&mut farthing_store::Tx<'_, '_>) -> Result<bool, StoreError> + Send>;

/// A reserved idempotency key is completed or forgotten only by the request that reserved it:
/// one whose reservation was taken over changes nothing.
#[test]
fn an_idempotency_reservation_is_completed_only_by_its_holder() {
    let h = Harness::new();
    let ledger = Ledger::Sqlite(h.open());
    let job = |work: KeyJob| {
        ledger
            .execute(work)
            .expect("queued")
            .wait()
            .expect("committed")
            .expect("ran")
    };
    let (mine, theirs) = (
        r#"{"id":null,"reserved_at_ns":1}"#,
        r#"{"id":null,"reserved_at_ns":2}"#,
    );
    job(Box::new(move |tx| {
        tx.insert_idempotency_key(MERCHANT, "k", b"f", 202, theirs)?;
        Ok(true)
    }));
    assert!(!job(Box::new(
        move |tx| tx.complete_idempotency_key(MERCHANT, "k", mine, 201, "{}")
    )));
    assert!(!job(Box::new(
        move |tx| tx.forget_idempotency_key(MERCHANT, "k", mine)
    )));
    let stored = ledger
        .read(|reader| reader.idempotency_key(MERCHANT, "k"))
        .expect("read")
        .map(|(_, status, body)| (status, body));
    assert_eq!(stored, Some((202, theirs.to_owned())), "untouched");
    assert!(job(Box::new(move |tx| tx.complete_idempotency_key(
        MERCHANT,
        "k",
        theirs,
        201,
        r#"{"id":"m"}"#
    ))));
    assert!(job(Box::new(move |tx| tx.forget_idempotency_key(
        MERCHANT,
        "k",
        r#"{"id":"m"}"#
    ))));
}

/// Rows a job inserts without waiting for the database (on PostgreSQL they go out with the
/// writer's next statement, `pg_pipe.rs`) and ledger groups applied as "fresh" (their ids not
/// looked for): should one fail after all, its whole batch fails — nothing of it stored, its
/// caller told — and the store goes on. Never booked twice, never acknowledged unstored.
fn rows_sent_later_fail_their_batch_whole(ledger: &Ledger, postgres: bool) {
    setup_funded_ledger(ledger, 1_000);
    let (cust, merch) = (customer(1), merchant());
    let charge = |description: &str| Charge {
        id: ChargeId(77),
        merchant: MERCHANT,
        customer: CustomerId(1),
        currency: XTR,
        amount_minor: 10,
        refunded_minor: 0,
        description: description.to_owned(),
        metadata: Vec::new(),
        created_at_ns: T0,
    };
    let first = charge("first");
    ledger
        .execute(move |tx| tx.insert_charge(&first))
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("stored");

    // The same charge id again, with a transfer in the same job: refused whole.
    let again = charge("again");
    let answer = ledger
        .execute(move |tx| {
            tx.apply(&group(vec![single(2, &cust, &merch, 10)]))?
                .expect("the transfer applies");
            tx.insert_charge(&again)
        })
        .expect("queued")
        .wait();
    assert!(
        !matches!(answer, Ok(Ok(()))),
        "a duplicate charge id is not acknowledged"
    );
    assert!(
        ledger.transfer(TransferId(2)).expect("read").is_none(),
        "nothing of the refused job is stored"
    );
    assert_eq!(
        ledger_account(ledger, &customer(1)).balances.credits_posted,
        1_000
    );

    // A "fresh" transfer whose id exists (the top-up's, 1): not booked a second time.
    let (cust, merch) = (customer(1), merchant());
    let answer = ledger
        .execute(move |tx| tx.apply_fresh(&group(vec![single(1, &cust, &merch, 10)])))
        .expect("queued")
        .wait();
    assert!(
        !matches!(answer, Ok(Ok(Ok(_)))),
        "an existing id applied as fresh is not acknowledged"
    );
    let customer_after = ledger_account(ledger, &customer(1));
    assert_eq!(customer_after.balances.debits_posted, 0, "nothing booked");
    assert_eq!(
        ledger_transfer(ledger, TransferId(1)).record.amount_minor,
        1_000
    );

    // PostgreSQL refuses a NUL in text: that insert fails in its own job, at once (it is not
    // sent later, where it would fail the whole batch at its COMMIT).
    if postgres {
        let nul = Charge {
            id: ChargeId(78),
            ..charge("a\0b")
        };
        let answer = ledger
            .execute(move |tx| tx.insert_charge(&nul))
            .expect("queued")
            .wait();
        assert!(
            matches!(answer, Ok(Err(_))),
            "the job itself saw its insert fail, and its batch committed: {answer:?}"
        );
    }

    // The store goes on.
    let (cust, merch) = (customer(1), merchant());
    let outcome = ledger
        .write(group(vec![single(3, &cust, &merch, 10)]))
        .expect("stored");
    assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
    assert_eq!(
        ledger_account(ledger, &customer(1)).balances.debits_posted,
        10
    );
}

#[test]
fn rows_sent_later_fail_their_batch_whole_on_sqlite() {
    let h = Harness::new();
    rows_sent_later_fail_their_batch_whole(&Ledger::Sqlite(h.open()), false);
}

#[test]
fn rows_sent_later_fail_their_batch_whole_on_postgres() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let instances = postgres_instances(&postgres, &h, 1);
    rows_sent_later_fail_their_batch_whole(&instances[0], true);
}

/// Reads on PostgreSQL run on several connections at once: a read that waits inside does not
/// hold up another (through one connection, HTTP writes that read first reached the writer one
/// by one).
#[test]
fn reads_run_side_by_side_on_postgres() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let ledger = PgLedger::open(&postgres.schema(), h.options()).expect("the ledger opens");
    let (tell, told) = std::sync::mpsc::channel::<()>();
    let first = ledger.clone();
    let waiting = std::thread::spawn(move || {
        first
            .read(move |reader| {
                reader.charge(ChargeId(1))?;
                Ok(told.recv_timeout(Duration::from_secs(10)).is_ok())
            })
            .expect("the first read")
    });
    // The first read now holds its connection until told.
    std::thread::sleep(Duration::from_millis(300));
    let second = ledger
        .read(|reader| reader.charge(ChargeId(2)))
        .expect("the second read");
    assert!(second.is_none());
    let _ = tell.send(());
    assert!(
        waiting.join().expect("join"),
        "the second read waited for the first to let go of its connection"
    );
}

/// On a multi-threaded runtime (the server's) a read from async code runs on the calling
/// worker thread, in `block_in_place`, rather than on a new thread the worker waits for (which
/// cost a thread per read and stalled the worker's other tasks meanwhile); on a current-thread
/// runtime it still runs on a thread of its own. Either way the client drives its own runtime.
#[test]
fn reads_from_async_code_run_in_place_on_a_multi_threaded_runtime_on_postgres() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let ledger = PgLedger::open(&postgres.schema(), h.options()).expect("the ledger opens");
    let read_here = |ledger: PgLedger| async move {
        let caller = std::thread::current().id();
        let reader = ledger
            .read(|reader| {
                reader.charge(ChargeId(1))?;
                Ok(std::thread::current().id())
            })
            .expect("read");
        (caller, reader)
    };
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let task = read_here(ledger.clone());
    let (caller, reader) = multi
        .block_on(async { tokio::spawn(task).await })
        .expect("join");
    assert_eq!(caller, reader, "read on the worker thread itself");
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (caller, reader) = single.block_on(read_here(ledger));
    assert_ne!(caller, reader, "read on a thread of its own");
}

/// A batch's balance update checks how many accounts it changed: if an account is not there
/// to update (a trigger here skips its row), the batch fails whole, nothing of it is stored,
/// and the store goes on.
#[test]
fn a_batch_whose_balance_update_misses_an_account_stores_nothing_on_postgres() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let url = postgres.schema();
    let ledger = Ledger::Postgres(PgLedger::open(&url, h.options()).expect("the ledger opens"));
    setup_funded_ledger(&ledger, 1_000);
    let (cust, merch) = (customer(1), merchant());
    let id: String = merch
        .id
        .to_be_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$; \
             CREATE TRIGGER skip_merchant BEFORE UPDATE ON accounts FOR EACH ROW \
             WHEN (OLD.id = '\\x{id}'::bytea) EXECUTE FUNCTION skip_row()"
        ))
        .expect("the trigger");
    let answer = ledger.write(group(vec![single(2, &cust, &merch, 10)]));
    assert!(
        matches!(&answer, Err(WriteError::Failed(text)) if text.contains("1 of 2 accounts vanished")),
        "{answer:?}"
    );
    assert!(ledger.transfer(TransferId(2)).expect("read").is_none());
    assert_eq!(ledger_account(&ledger, &cust).balances.debits_posted, 0);

    admin
        .batch_execute("DROP TRIGGER skip_merchant ON accounts")
        .expect("dropped");
    let outcome = ledger
        .write(group(vec![single(3, &cust, &merch, 10)]))
        .expect("stored");
    assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
    assert_eq!(ledger_account(&ledger, &cust).balances.debits_posted, 10);
    assert_eq!(ledger_account(&ledger, &merch).balances.credits_posted, 10);
}

type RowJob = Box<dyn FnOnce(&mut farthing_store::Tx<'_, '_>) -> Result<String, String> + Send>;

/// Jobs of one batch whose writes are rows sent later (on PostgreSQL merged into one statement
/// per table, a job's savepoint taken only once something of it reaches the server): a job
/// undone takes back its own rows and no one else's — whether they were still queued, sent
/// with a read, or written inside a nested savepoint — and every job reads what the jobs kept
/// before it wrote, and its own rows.
fn jobs_of_a_batch_undo_only_their_own_rows(ledger: &Ledger, hold: Option<&str>) {
    let charge = |n: u64| Charge {
        id: ChargeId(u128::from(n)),
        merchant: MERCHANT,
        customer: CustomerId(1),
        currency: XTR,
        amount_minor: n,
        refunded_minor: 0,
        description: format!("charge {n}"),
        metadata: Vec::new(),
        created_at_ns: T0,
    };
    let event = |n: u128| farthing_store::EventRecord {
        id: farthing_core::EventId(n),
        merchant: MERCHANT,
        event_type: "charge.succeeded".to_owned(),
        data: format!("{{\"n\":{n}}}"),
        created_at_ns: T0,
    };
    fn fail(error: StoreError) -> String {
        error.to_string()
    }
    fn seen(tx: &mut farthing_store::Tx<'_, '_>, n: u64) -> Result<bool, String> {
        Ok(tx.charge(ChargeId(u128::from(n))).map_err(fail)?.is_some())
    }
    let jobs: Vec<RowJob> = vec![
        // 1: kept, its rows queued.
        Box::new(move |tx| {
            tx.insert_charge(&charge(101)).map_err(fail)?;
            tx.insert_event(&event(1)).map_err(fail)?;
            Ok("kept".to_owned())
        }),
        // 2: undone while its rows are still queued.
        Box::new(move |tx| {
            tx.insert_charge(&charge(102)).map_err(fail)?;
            tx.insert_event(&event(2)).map_err(fail)?;
            Err("undone".to_owned())
        }),
        // 3: its rows go out with its reads, then it is undone.
        Box::new(move |tx| {
            tx.insert_charge(&charge(103)).map_err(fail)?;
            tx.insert_event(&event(3)).map_err(fail)?;
            let seen = (seen(tx, 101)?, seen(tx, 102)?, seen(tx, 103)?);
            Err(format!("undone, saw {seen:?}"))
        }),
        // 4: reads its own row, kept.
        Box::new(move |tx| {
            tx.insert_charge(&charge(104)).map_err(fail)?;
            Ok(format!("kept, saw {}", seen(tx, 104)?))
        }),
        // 5: kept, but what it wrote in a nested savepoint is undone.
        Box::new(move |tx| {
            tx.insert_charge(&charge(105)).map_err(fail)?;
            let inner = tx
                .nested(|tx| {
                    tx.insert_charge(&charge(106))?;
                    Err::<(), StoreError>(StoreError::Corrupt("nested, undone".to_owned()))
                })
                .map_err(fail)?;
            Ok(format!("kept, nested {}", inner.is_err()))
        }),
        // 6: undone with its rows queued, after a job whose savepoint was taken.
        Box::new(move |tx| {
            tx.insert_charge(&charge(107)).map_err(fail)?;
            Err("undone".to_owned())
        }),
        // 7: kept, its rows queued.
        Box::new(move |tx| {
            tx.insert_charge(&charge(108)).map_err(fail)?;
            Ok("kept".to_owned())
        }),
        // 8: writes after a kept job's queued rows, sends them all with its reads, is undone.
        Box::new(move |tx| {
            tx.insert_charge(&charge(109)).map_err(fail)?;
            let seen = (
                seen(tx, 102)?,
                seen(tx, 107)?,
                seen(tx, 108)?,
                seen(tx, 109)?,
            );
            Err(format!("undone, saw {seen:?}"))
        }),
        // 9: kept, its rows queued until the batch's own writes.
        Box::new(move |tx| {
            tx.insert_charge(&charge(110)).map_err(fail)?;
            Ok("kept".to_owned())
        }),
    ];
    // On PostgreSQL, hold the clock lock while the jobs are queued, so they make one batch.
    let mut blocker = hold.map(|url| {
        let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
        client
            .batch_execute("BEGIN; SELECT 1 FROM ledger_meta WHERE singleton = 1 FOR UPDATE")
            .expect("the clock lock");
        client
    });
    let tickets: Vec<_> = jobs
        .into_iter()
        .map(|job| ledger.execute(job).expect("queued"))
        .collect();
    if let Some(client) = blocker.as_mut() {
        std::thread::sleep(Duration::from_millis(300));
        client.batch_execute("ROLLBACK").expect("the lock let go");
    }
    let answers: Vec<Result<String, String>> = tickets
        .into_iter()
        .map(|ticket| ticket.wait().expect("the batch committed"))
        .collect();
    let ok = |text: &str| Ok::<String, String>(text.to_owned());
    let err = |text: &str| Err::<String, String>(text.to_owned());
    assert_eq!(
        answers,
        vec![
            ok("kept"),
            err("undone"),
            err("undone, saw (true, false, true)"),
            ok("kept, saw true"),
            ok("kept, nested true"),
            err("undone"),
            ok("kept"),
            err("undone, saw (false, false, true, true)"),
            ok("kept"),
        ]
    );
    let stored: Vec<u64> = (101..=110)
        .filter(|n| {
            ledger
                .read(move |reader| reader.charge(ChargeId(u128::from(*n))))
                .expect("read")
                .is_some()
        })
        .collect();
    assert_eq!(
        stored,
        vec![101, 104, 105, 108, 110],
        "the kept jobs' charges"
    );
    let events: Vec<u128> = (1..=3)
        .filter(|n| {
            ledger
                .read(move |reader| reader.event(farthing_core::EventId(*n)))
                .expect("read")
                .is_some()
        })
        .collect();
    assert_eq!(events, vec![1], "the kept job's event");
}

#[test]
fn jobs_of_a_batch_undo_only_their_own_rows_on_sqlite() {
    let h = Harness::new();
    jobs_of_a_batch_undo_only_their_own_rows(&Ledger::Sqlite(h.open()), None);
}

#[test]
fn jobs_of_a_batch_undo_only_their_own_rows_on_postgres() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let url = postgres.schema();
    let ledger = Ledger::Postgres(PgLedger::open(&url, h.options()).expect("the ledger opens"));
    jobs_of_a_batch_undo_only_their_own_rows(&ledger, Some(&url));
    assert!(
        h.batches().iter().any(|batch| batch.groups == 9),
        "the nine jobs made one batch: {:?}",
        h.batches()
    );
}

/// A batch reads each customer once, yet a job sees a customer as the batch left it: changed,
/// or changed and then undone by a nested savepoint.
fn customers_read_once_a_batch_follow_its_changes(ledger: &Ledger) {
    let customer = Customer {
        id: CustomerId(5),
        merchant: MERCHANT,
        external_id: None,
        metadata: Vec::new(),
        created_at_ns: T0,
    };
    let seen = ledger
        .execute(move |tx| {
            let metadata = |tx: &mut farthing_store::Tx<'_, '_>| -> Result<_, StoreError> {
                Ok(tx.customer(CustomerId(5))?.map(|c| c.metadata))
            };
            let mut seen = vec![metadata(tx)?];
            tx.insert_customer(&customer)?;
            seen.push(metadata(tx)?);
            tx.set_customer_metadata(CustomerId(5), &[("a".to_owned(), "1".to_owned())])?;
            seen.push(metadata(tx)?);
            let undone = tx.nested(|tx| {
                tx.set_customer_metadata(CustomerId(5), &[("b".to_owned(), "2".to_owned())])?;
                let inside = metadata(tx)?;
                Err::<(), StoreError>(StoreError::Corrupt(format!("undone: {inside:?}")))
            })?;
            assert!(
                matches!(&undone, Err(StoreError::Corrupt(text)) if text.contains("\"b\"")),
                "the nested savepoint saw its change: {undone:?}"
            );
            seen.push(metadata(tx)?);
            Ok::<_, StoreError>(seen)
        })
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("ran");
    let a = vec![("a".to_owned(), "1".to_owned())];
    assert_eq!(
        seen,
        vec![None, Some(Vec::new()), Some(a.clone()), Some(a)],
        "not yet, made, changed, the undone change forgotten"
    );
}

#[test]
fn customers_read_once_a_batch_follow_its_changes_on_sqlite() {
    let h = Harness::new();
    customers_read_once_a_batch_follow_its_changes(&Ledger::Sqlite(h.open()));
}

#[test]
fn customers_read_once_a_batch_follow_its_changes_on_postgres() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let instances = postgres_instances(&postgres, &h, 1);
    customers_read_once_a_batch_follow_its_changes(&instances[0]);
}

/// On PostgreSQL too, a shutdown commits every write queued before it, whether a batch took
/// the shutdown request when it formed or once it held the clock lock (a batch takes in what
/// arrived while it waited), and refuses what comes after.
#[test]
fn shutdown_finishes_every_queued_write_on_postgres() {
    const WRITES: u128 = 1_000;
    let postgres = Postgres::start();
    let h = Harness::new();
    let url = postgres.schema();
    let mut options = h.options();
    // Small batches, so the queue is still full of writes when the shutdown request arrives.
    options.max_batch_transfers = 50;
    let ledger = PgLedger::open(&url, options).expect("the ledger opens");
    setup_funded_ledger(&Ledger::Postgres(ledger.clone()), 10_000);
    let (cust, merch) = (customer(1), merchant());
    let tickets: Vec<_> = (0..WRITES)
        .map(|n| {
            ledger
                .submit(group(vec![single(10 + n, &cust, &merch, 1)]))
                .expect("queued")
        })
        .collect();
    ledger.shutdown();
    for (n, ticket) in tickets.into_iter().enumerate() {
        let outcome = ticket
            .wait()
            .unwrap_or_else(|error| panic!("write {n} lost: {error}"));
        assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
    }
    let late = group(vec![single(5, &cust, &merch, 1)]);
    assert_eq!(ledger.write(late), Err(WriteError::Closed));
    drop(ledger);

    let reopened = Ledger::Postgres(PgLedger::open(&url, h.options()).expect("reopens"));
    assert_eq!(
        ledger_account(&reopened, &merch).balances.credits_posted,
        WRITES
    );
    assert!(reopened
        .transfer(TransferId(5))
        .expect("readable")
        .is_none());
}

/// Writes and a shutdown request that arrive while a batch waits for the clock lock (another
/// session holds it) join that batch: the writes are committed with it, the writer stops, and
/// later writes are refused.
#[test]
fn what_arrives_while_a_batch_awaits_the_lock_joins_it_on_postgres() {
    let postgres = Postgres::start();
    let h = Harness::new();
    let url = postgres.schema();
    let ledger = PgLedger::open(&url, h.options()).expect("the ledger opens");
    setup_funded_ledger(&Ledger::Postgres(ledger.clone()), 10_000);
    let (cust, merch) = (customer(1), merchant());

    let mut blocker = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut holding = blocker.transaction().expect("begin");
    holding
        .execute(
            "SELECT 1 FROM ledger_meta WHERE singleton = 1 FOR UPDATE",
            &[],
        )
        .expect("the clock lock");
    let first = ledger
        .submit(group(vec![single(10, &cust, &merch, 1)]))
        .expect("queued");
    // The writer's batch (the first write) now waits for the lock; these arrive meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    let more: Vec<_> = (11..15u128)
        .map(|n| {
            ledger
                .submit(group(vec![single(n, &cust, &merch, 1)]))
                .expect("queued")
        })
        .collect();
    let (stopped, done) = std::sync::mpsc::channel();
    let stopping = ledger.clone();
    std::thread::spawn(move || {
        stopping.shutdown();
        let _ = stopped.send(());
    });
    std::thread::sleep(Duration::from_millis(300));
    holding.rollback().expect("the lock let go");
    done.recv_timeout(Duration::from_secs(30))
        .expect("the shutdown returns once the batch that took it in commits");
    for ticket in std::iter::once(first).chain(more) {
        let outcome = ticket.wait().expect("committed before the shutdown");
        assert_eq!(outcome.transfers[0].outcome, Outcome::Created);
    }
    assert!(
        h.batches().iter().any(|batch| batch.transfers == 5),
        "the writes that arrived while the batch waited for the lock joined it: {:?}",
        h.batches()
    );
    let late = group(vec![single(5, &cust, &merch, 1)]);
    assert_eq!(ledger.write(late), Err(WriteError::Closed));
    drop(ledger);
    let reopened = Ledger::Postgres(PgLedger::open(&url, h.options()).expect("reopens"));
    assert_eq!(ledger_account(&reopened, &merch).balances.credits_posted, 5);
    assert!(reopened
        .transfer(TransferId(5))
        .expect("readable")
        .is_none());
}
