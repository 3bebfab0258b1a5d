//! The single writer: group commit over a bounded queue, and the background checkpointer.
//!
//! The writer owns the only writing connection and an in-memory copy of every account it has
//! touched. Because nothing else writes, that copy is exact; it is thrown away whenever a
//! transaction fails, so memory never runs ahead of the disk. Callers are answered only after
//! `COMMIT` returned.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use farthing_core::ledger::{
    apply_group, expire_pending, AccountState, Balances, Group, GroupError, GroupOutcome,
    LedgerState, PendingState, StoredTransfer, TransferKind, TransferRecord,
};
use farthing_core::{AccountId, TransferId};
use rusqlite::{Connection, TransactionBehavior};

use crate::{codec, schema, BatchStats, Reply, Request, StoreError, StoreOptions, WriteError};

/// Most holds expired in one transaction; the rest wait for the next one.
const MAX_EXPIRED_PER_BATCH: usize = 4_096;
/// Pause after a failed transaction before the writer takes more work.
const FAILURE_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) struct Writer {
    connection: Connection,
    options: StoreOptions,
    accounts: HashMap<AccountId, AccountState>,
    last_timestamp_ns: u64,
    next_expiry_ns: Option<u64>,
}

/// What one batch reads and changes: the domain's view of the store.
struct BatchState<'a> {
    accounts: &'a mut HashMap<AccountId, AccountState>,
    transfers: HashMap<TransferId, StoredTransfer>,
    new_accounts: Vec<AccountId>,
    dirty_accounts: Vec<AccountId>,
    new_transfers: Vec<TransferRecord>,
    resolved: Vec<(TransferId, PendingState, u64)>,
    last_timestamp_ns: u64,
}

impl LedgerState for BatchState<'_> {
    fn account(&self, id: AccountId) -> Option<&AccountState> {
        self.accounts.get(&id)
    }

    fn transfer(&self, id: TransferId) -> Option<&StoredTransfer> {
        self.transfers.get(&id)
    }

    fn last_timestamp_ns(&self) -> u64 {
        self.last_timestamp_ns
    }

    fn insert_account(&mut self, state: AccountState) {
        self.new_accounts.push(state.account.id);
        self.accounts.insert(state.account.id, state);
    }

    fn update_balances(&mut self, id: AccountId, balances: Balances) {
        if let Some(state) = self.accounts.get_mut(&id) {
            state.balances = balances;
            self.dirty_accounts.push(id);
        }
    }

    fn insert_transfer(&mut self, record: TransferRecord) {
        let pending_state = (record.kind == TransferKind::Pending).then_some(PendingState::Pending);
        self.transfers.insert(
            record.id,
            StoredTransfer {
                record,
                pending_state,
            },
        );
        self.new_transfers.push(record);
    }

    fn resolve_pending(&mut self, id: TransferId, state: PendingState, at_ns: u64) {
        if let Some(stored) = self.transfers.get_mut(&id) {
            stored.pending_state = Some(state);
        }
        self.resolved.push((id, state, at_ns));
    }

    fn set_last_timestamp_ns(&mut self, timestamp_ns: u64) {
        self.last_timestamp_ns = timestamp_ns;
    }
}

impl BatchState<'_> {
    /// Loads what `group` refers to and is not in memory yet.
    fn preload(&mut self, connection: &Connection, group: &Group) -> Result<(), StoreError> {
        for id in group.transfer_ids() {
            if let Entry::Vacant(slot) = self.transfers.entry(id) {
                if let Some(stored) = codec::load_transfer(connection, id)? {
                    slot.insert(stored);
                }
            }
        }
        let transfers = &self.transfers;
        let wanted: Vec<AccountId> = group
            .account_ids(|id| transfers.get(&id).map(|stored| stored.record))
            .filter(|id| !self.accounts.contains_key(id))
            .collect();
        self.load_accounts(connection, wanted)
    }

    fn load_accounts(
        &mut self,
        connection: &Connection,
        ids: impl IntoIterator<Item = AccountId>,
    ) -> Result<(), StoreError> {
        for id in ids {
            if let Entry::Vacant(slot) = self.accounts.entry(id) {
                if let Some(state) = codec::load_account(connection, id)? {
                    slot.insert(state);
                }
            }
        }
        Ok(())
    }

    /// Writes every change of the batch; called inside the transaction.
    fn persist(&mut self, connection: &Connection) -> Result<(), StoreError> {
        let new: HashSet<AccountId> = self.new_accounts.iter().copied().collect();
        for id in &self.new_accounts {
            if let Some(state) = self.accounts.get(id) {
                codec::insert_account(connection, state)?;
            }
        }
        self.dirty_accounts.sort_unstable();
        self.dirty_accounts.dedup();
        for id in &self.dirty_accounts {
            if new.contains(id) {
                continue;
            }
            if let Some(state) = self.accounts.get(id) {
                codec::update_balances(connection, *id, &state.balances)?;
            }
        }
        for record in &self.new_transfers {
            codec::insert_transfer(connection, record)?;
        }
        for (id, state, at_ns) in &self.resolved {
            codec::resolve_pending(connection, *id, *state, *at_ns)?;
        }
        codec::store_last_timestamp(connection, self.last_timestamp_ns)
    }
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
        })
    }

    /// Serves the queue until a shutdown request (or until every sender is gone).
    pub(crate) fn run(&mut self, receiver: Receiver<Request>) {
        let mut shutdown: Option<Sender<()>> = None;
        loop {
            let first = match receiver.recv_timeout(self.sleep_time()) {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut writes: Vec<(Group, Reply)> = Vec::new();
            let mut transfers = 0usize;
            let mut next = first;
            // Group commit: take whatever else is already waiting, up to the batch limit. A
            // shutdown request ends the taking: what was queued before it is committed, what
            // comes after it is refused with `Closed` when the receiver is dropped.
            loop {
                match next.take() {
                    Some(Request::Write { group, reply }) => {
                        transfers += group.transfers.len().max(1);
                        writes.push((group, reply));
                    }
                    Some(Request::Shutdown { done }) => {
                        shutdown = Some(done);
                        break;
                    }
                    None => {}
                }
                if transfers >= self.options.max_batch_transfers {
                    break;
                }
                match receiver.try_recv() {
                    Ok(request) => next = Some(request),
                    Err(_) => break,
                }
            }
            let now_ns = (self.options.clock)();
            let expiry_due = self.next_expiry_ns.is_some_and(|at| at <= now_ns);
            if !writes.is_empty() || expiry_due {
                self.process(writes);
            }
            if let Some(done) = shutdown.take() {
                let _ = done.send(());
                return;
            }
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

    fn process(&mut self, writes: Vec<(Group, Reply)>) {
        let started = Instant::now();
        let now_ns = (self.options.clock)();
        let outcome = self.apply_batch(&writes, now_ns);
        let transfers = writes.iter().map(|(group, _)| group.transfers.len()).sum();
        let groups = writes.len();
        let stats = match outcome {
            Ok(batch) => {
                let stats = BatchStats {
                    groups,
                    transfers,
                    expired: batch.expired,
                    batch_time: started.elapsed(),
                    commit_time: batch.commit_time,
                    failed: false,
                };
                for ((_, reply), result) in writes.into_iter().zip(batch.results) {
                    let _ = reply.send(result.map_err(WriteError::Rejected));
                }
                stats
            }
            Err(error) => {
                tracing::error!(%error, groups, "ledger batch failed; rolled back");
                // Memory may hold changes the disk refused: forget it all and re-read.
                self.accounts.clear();
                if let Ok(last) = codec::load_last_timestamp(&self.connection) {
                    self.last_timestamp_ns = last;
                }
                self.next_expiry_ns = codec::next_expiry(&self.connection).unwrap_or(None);
                let message = error.to_string();
                for (_, reply) in writes {
                    let _ = reply.send(Err(WriteError::Failed(message.clone())));
                }
                // Do not spin on a failure that repeats (a full disk, say).
                std::thread::sleep(FAILURE_BACKOFF);
                BatchStats {
                    groups,
                    transfers,
                    expired: 0,
                    batch_time: started.elapsed(),
                    commit_time: Duration::ZERO,
                    failed: true,
                }
            }
        };
        if let Some(observer) = &self.options.observer {
            observer(&stats);
        }
    }

    fn apply_batch(
        &mut self,
        writes: &[(Group, Reply)],
        now_ns: u64,
    ) -> Result<BatchResult, StoreError> {
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
        };
        let mut expired = 0;
        let mut recheck_expiry = false;
        if next_expiry_ns.is_some_and(|at| at <= now_ns) {
            let due = codec::due_holds(&transaction, now_ns, MAX_EXPIRED_PER_BATCH)?;
            for id in due {
                if let Some(stored) = codec::load_transfer(&transaction, id)? {
                    state.transfers.insert(id, stored);
                    state.load_accounts(
                        &transaction,
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
        let mut results = Vec::with_capacity(writes.len());
        for (group, _) in writes {
            state.preload(&transaction, group)?;
            results.push(apply_group(&mut state, group, now_ns));
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
