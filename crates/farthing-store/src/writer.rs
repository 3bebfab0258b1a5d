//! The single writer: group commit over a bounded queue, and the background checkpointer.
//!
//! The writer owns the only writing connection and an in-memory copy of every account it has
//! touched. Because nothing else writes, that copy is exact; it is thrown away whenever a
//! transaction fails, so memory never runs ahead of the disk. Callers are answered only after
//! `COMMIT` returned.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use farthing_core::ledger::{
    expire_pending, AccountState, Group, GroupError, GroupOutcome, TransferRecord,
};
use farthing_core::AccountId;
use rusqlite::{Connection, TransactionBehavior};

use crate::batch::BatchState;
use crate::job::{ErasedJob, Tx};
use crate::sql::Db;
use crate::{codec, schema, BatchStats, Reply, Request, StoreError, StoreOptions, WriteError};

/// One item of a batch, in arrival order.
pub(crate) enum Work {
    /// A ledger group (the fast path: no savepoint).
    Write(Group, Reply),
    /// A job: business writes and ledger groups, all or nothing.
    Job(Box<dyn ErasedJob>),
}

/// Transfers in a batch's groups (a job counts none), for `BatchStats`.
pub(crate) fn transfer_count(work: &[Work]) -> usize {
    work.iter()
        .map(|item| match item {
            Work::Write(group, _) => group.transfers.len(),
            Work::Job(_) => 0,
        })
        .sum()
}

/// How much of a batch's room `work` takes (as [`take_batch`] counts: a job counts as one).
pub(crate) fn weight(work: &[Work]) -> usize {
    work.iter()
        .map(|item| match item {
            Work::Write(group, _) => group.transfers.len().max(1),
            Work::Job(_) => 1,
        })
        .sum()
}

/// Group commit: `first` and whatever else is already waiting, up to `max_transfers` (a job
/// counts as one). A shutdown request ends the taking and is returned: what was queued before
/// it is committed, what comes after it is refused with `Closed` when the receiver is dropped.
pub(crate) fn take_batch(
    first: Option<Request>,
    receiver: &Receiver<Request>,
    max_transfers: usize,
) -> (Vec<Work>, Option<Sender<()>>) {
    let mut work = Vec::new();
    let mut weight = 0usize;
    let mut next = first;
    loop {
        match next.take() {
            Some(Request::Write { group, reply }) => {
                weight += group.transfers.len().max(1);
                work.push(Work::Write(group, reply));
            }
            Some(Request::Job(job)) => {
                weight += 1;
                work.push(Work::Job(job));
            }
            Some(Request::Shutdown { done }) => return (work, Some(done)),
            None => {}
        }
        if weight >= max_transfers {
            return (work, None);
        }
        match receiver.try_recv() {
            Ok(request) => next = Some(request),
            Err(_) => return (work, None),
        }
    }
}

/// Most holds expired in one transaction; the rest wait for the next one.
const MAX_EXPIRED_PER_BATCH: usize = 4_096;
/// How often the writer finishes the checkpointer's work between batches.
const CATCH_UP_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// Pause after a failed transaction before the writer takes more work.
const FAILURE_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) struct Writer {
    connection: Connection,
    options: StoreOptions,
    accounts: HashMap<AccountId, AccountState>,
    last_timestamp_ns: u64,
    next_expiry_ns: Option<u64>,
    last_checkpoint: Instant,
}

struct BatchResult {
    results: Vec<Result<GroupOutcome, GroupError>>,
    expired: usize,
    commit_time: Duration,
}

impl Writer {
    pub(crate) fn new(connection: Connection, options: StoreOptions) -> Result<Writer, StoreError> {
        let last_timestamp_ns = codec::load_last_timestamp(&connection)?;
        let next_expiry_ns = codec::next_expiry(&connection)?;
        Ok(Writer {
            connection,
            options,
            accounts: HashMap::new(),
            last_timestamp_ns,
            next_expiry_ns,
            last_checkpoint: Instant::now(),
        })
    }

    /// Serves the queue until a shutdown request (or until every sender is gone).
    pub(crate) fn run(&mut self, receiver: Receiver<Request>) {
        loop {
            let first = match receiver.recv_timeout(self.sleep_time()) {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let (work, shutdown) = take_batch(first, &receiver, self.options.max_batch_transfers);
            let now_ns = (self.options.clock)();
            let expiry_due = self.next_expiry_ns.is_some_and(|at| at <= now_ns);
            if !work.is_empty() || expiry_due {
                self.process(work);
            }
            self.catch_up_checkpoint();
            if let Some(done) = shutdown {
                let _ = done.send(());
                return;
            }
        }
    }

    /// Finishes the background checkpointer's work between two batches, now and then.
    ///
    /// The checkpointer copies WAL frames while the writer keeps appending, so under constant
    /// load it never catches up completely and SQLite never restarts the WAL from its start:
    /// the file grows and every commit pays for new blocks (the kernel zeroes them; measured
    /// as the top cost of the HTTP benchmark). A passive checkpoint here, with no commit in
    /// flight, copies only the few frames left and lets the next transaction reuse the WAL.
    fn catch_up_checkpoint(&mut self) {
        if self.last_checkpoint.elapsed() < CATCH_UP_CHECKPOINT_INTERVAL {
            return;
        }
        self.last_checkpoint = Instant::now();
        if let Err(error) = self
            .connection
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(%error, "catch-up WAL checkpoint failed; will retry");
        }
    }

    fn sleep_time(&self) -> Duration {
        let poll = self.options.expiry_poll_interval;
        match self.next_expiry_ns {
            None => poll,
            Some(at) => {
                let now = (self.options.clock)();
                Duration::from_nanos(at.saturating_sub(now)).min(poll)
            }
        }
    }

    fn process(&mut self, mut work: Vec<Work>) {
        let started = Instant::now();
        let now_ns = (self.options.clock)();
        let outcome = self.apply_batch(&mut work, now_ns);
        BatchStats::report(
            self.options.observer.as_ref(),
            work.len(),
            transfer_count(&work),
            started,
            outcome
                .as_ref()
                .ok()
                .map(|batch| (batch.expired, batch.commit_time)),
        );
        match outcome {
            Ok(batch) => {
                let mut results = batch.results.into_iter();
                for item in work {
                    match item {
                        Work::Write(_, reply) => {
                            let result = results
                                .next()
                                .unwrap_or(Err(GroupError::Empty))
                                .map_err(WriteError::Rejected);
                            let _ = reply.send(result);
                        }
                        Work::Job(job) => job.finish(None),
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, items = work.len(), "ledger batch failed; rolled back");
                // Memory may hold changes the disk refused: forget it all and re-read.
                self.accounts.clear();
                if let Ok(last) = codec::load_last_timestamp(&self.connection) {
                    self.last_timestamp_ns = last;
                }
                self.next_expiry_ns = codec::next_expiry(&self.connection).unwrap_or(None);
                let message = error.to_string();
                for item in work {
                    let failure = WriteError::Failed(message.clone());
                    match item {
                        Work::Write(_, reply) => {
                            let _ = reply.send(Err(failure));
                        }
                        Work::Job(job) => job.finish(Some(failure)),
                    }
                }
                // Do not spin on a failure that repeats (a full disk, say).
                std::thread::sleep(FAILURE_BACKOFF);
            }
        }
    }

    fn apply_batch(&mut self, work: &mut [Work], now_ns: u64) -> Result<BatchResult, StoreError> {
        let Writer {
            connection,
            accounts,
            last_timestamp_ns,
            next_expiry_ns,
            ..
        } = self;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut state = BatchState {
            accounts,
            transfers: HashMap::new(),
            new_accounts: Vec::new(),
            dirty_accounts: Vec::new(),
            new_transfers: Vec::new(),
            resolved: Vec::new(),
            last_timestamp_ns: *last_timestamp_ns,
            journal: Vec::new(),
            endpoints: HashMap::new(),
            customers: HashMap::new(),
            heads: HashMap::new(),
        };
        let mut expired = 0;
        let mut recheck_expiry = false;
        if next_expiry_ns.is_some_and(|at| at <= now_ns) {
            let due = codec::due_holds(&transaction, now_ns, MAX_EXPIRED_PER_BATCH)?;
            for id in due {
                if let Some(stored) = codec::load_transfer(Db::Sqlite(&transaction), id)? {
                    state.transfers.insert(id, stored);
                    state.load_accounts(
                        Db::Sqlite(&transaction),
                        [
                            stored.record.debit_account_id,
                            stored.record.credit_account_id,
                        ],
                    )?;
                }
                if expire_pending(&mut state, id, now_ns) {
                    expired += 1;
                } else {
                    // The schedule names a hold that is not open (the audit reports this as
                    // "expiry schedule out of step"). The entry is derived data: drop it, or
                    // the writer would find it due again at once, forever.
                    tracing::warn!(hold = %id, "dropping a stale hold expiry entry");
                    codec::drop_expiry(&transaction, id)?;
                }
            }
            recheck_expiry = true;
        }
        let mut results = Vec::with_capacity(work.len());
        for item in work.iter_mut() {
            match item {
                Work::Write(group, _) => {
                    results.push(state.apply(Db::Sqlite(&transaction), group, now_ns, false)?);
                }
                Work::Job(job) => {
                    // A savepoint undoes the job's SQL, the journal its ledger changes, so a
                    // failing job leaves nothing behind and does not disturb the others.
                    codec::run_cached(&transaction, "SAVEPOINT job")?;
                    state.begin_job();
                    let mut tx = Tx {
                        db: Db::Sqlite(&transaction),
                        state: &mut state,
                        now_ns,
                        deliveries_queued: 0,
                        announced: Vec::new(),
                    };
                    if job.run(&mut tx) {
                        state.end_job();
                        codec::run_cached(&transaction, "RELEASE job")?;
                    } else {
                        state.undo_job();
                        codec::run_cached(&transaction, "ROLLBACK TO job")?;
                        codec::run_cached(&transaction, "RELEASE job")?;
                    }
                }
            }
        }
        state.persist(&transaction)?;
        let earliest_new = state
            .new_transfers
            .iter()
            .filter_map(TransferRecord::expires_at_ns)
            .min();
        let next = if recheck_expiry {
            codec::next_expiry(&transaction)?
        } else {
            *next_expiry_ns
        };
        let last = state.last_timestamp_ns;
        let commit_started = Instant::now();
        transaction.commit()?;
        let commit_time = commit_started.elapsed();
        *last_timestamp_ns = last;
        *next_expiry_ns = match (next, earliest_new) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(BatchResult {
            results,
            expired,
            commit_time,
        })
    }
}

/// Copies the WAL into the database file in the background (`PRAGMA wal_checkpoint(PASSIVE)`),
/// so that commits never pay for it and the WAL stays small.
pub(crate) struct Checkpointer {
    stop: Sender<()>,
    handle: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path, interval: Duration) -> Result<Checkpointer, StoreError> {
        let connection = schema::open_checkpointer(path)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("farthing-checkpointer".to_owned())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(error) =
                            connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::warn!(%error, "WAL checkpoint failed; will retry");
                        }
                    }
                    _ => return,
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Checkpointer { stop, handle })
    }

    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.join();
    }
}
