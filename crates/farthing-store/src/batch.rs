//! One batch's view of the ledger: the writer's in-memory accounts plus what the batch has
//! changed, with a journal per running job so a failed job's ledger changes can be undone.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use farthing_core::ledger::{
    apply_group, AccountState, Balances, Group, GroupError, GroupOutcome, LedgerState,
    PendingState, StoredTransfer, TransferKind, TransferRecord,
};
use farthing_core::{AccountId, CustomerId, MerchantId, TransferId, WebhookEndpointId};
use rusqlite::Connection;

use crate::sql::Db;
use crate::{codec, Customer, StoreError};

/// What one batch reads and changes: the domain's view of the store.
pub(crate) struct BatchState<'a> {
    pub(crate) accounts: &'a mut HashMap<AccountId, AccountState>,
    pub(crate) transfers: HashMap<TransferId, StoredTransfer>,
    pub(crate) new_accounts: Vec<AccountId>,
    pub(crate) dirty_accounts: Vec<AccountId>,
    pub(crate) new_transfers: Vec<TransferRecord>,
    pub(crate) resolved: Vec<(TransferId, PendingState, u64)>,
    pub(crate) last_timestamp_ns: u64,
    /// While a job runs: how to undo its ledger changes if it fails; one entry per open
    /// (nested) savepoint, innermost last.
    pub(crate) journal: Vec<Journal>,
    /// Each merchant's enabled webhook endpoints (id and the event types it wants), as read
    /// by this batch: endpoints change only in jobs, and the batch holds the ledger lock on
    /// every backend, so they change only through this batch, which forgets them then.
    pub(crate) endpoints: HashMap<MerchantId, Endpoints>,
    /// Customers as read by this batch: they change only in jobs, so only through this batch,
    /// which forgets one when it writes it, and all when a job is undone.
    pub(crate) customers: HashMap<CustomerId, Customer>,
    /// The newest statement entry of each account this batch's jobs loaded, read with it
    /// (PostgreSQL chains the batch's new entries to them; SQLite reads its own).
    pub(crate) heads: HashMap<AccountId, Option<i64>>,
}

/// A merchant's enabled webhook endpoints, each with the event types it wants.
pub(crate) type Endpoints = Rc<[(WebhookEndpointId, Vec<String>)]>;

/// Undo information for the ledger changes of one job (SQL changes are undone by its
/// savepoint).
pub(crate) struct Journal {
    accounts: Vec<(AccountId, Option<AccountState>)>,
    transfers: Vec<(TransferId, Option<StoredTransfer>)>,
    new_accounts: usize,
    dirty_accounts: usize,
    new_transfers: usize,
    resolved: usize,
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
        self.remember_account(state.account.id);
        self.new_accounts.push(state.account.id);
        self.accounts.insert(state.account.id, state);
    }

    fn update_balances(&mut self, id: AccountId, balances: Balances) {
        self.remember_account(id);
        if let Some(state) = self.accounts.get_mut(&id) {
            state.balances = balances;
            self.dirty_accounts.push(id);
        }
    }

    fn insert_transfer(&mut self, record: TransferRecord) {
        self.remember_transfer(record.id);
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
        self.remember_transfer(id);
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
    fn remember_account(&mut self, id: AccountId) {
        if let Some(journal) = self.journal.last_mut() {
            if !journal.accounts.iter().any(|(seen, _)| *seen == id) {
                journal.accounts.push((id, self.accounts.get(&id).copied()));
            }
        }
    }

    fn remember_transfer(&mut self, id: TransferId) {
        if let Some(journal) = self.journal.last_mut() {
            if !journal.transfers.iter().any(|(seen, _)| *seen == id) {
                journal
                    .transfers
                    .push((id, self.transfers.get(&id).copied()));
            }
        }
    }

    /// Starts recording a job's (or a nested savepoint's) ledger changes.
    pub(crate) fn begin_job(&mut self) {
        self.journal.push(Journal {
            accounts: Vec::new(),
            transfers: Vec::new(),
            new_accounts: self.new_accounts.len(),
            dirty_accounts: self.dirty_accounts.len(),
            new_transfers: self.new_transfers.len(),
            resolved: self.resolved.len(),
            last_timestamp_ns: self.last_timestamp_ns,
        });
    }

    /// Keeps the innermost recording's changes; an enclosing recording takes over what it
    /// must undo if it fails later.
    pub(crate) fn end_job(&mut self) {
        let Some(inner) = self.journal.pop() else {
            return;
        };
        if let Some(outer) = self.journal.last_mut() {
            for (id, before) in inner.accounts {
                if !outer.accounts.iter().any(|(seen, _)| *seen == id) {
                    outer.accounts.push((id, before));
                }
            }
            for (id, before) in inner.transfers {
                if !outer.transfers.iter().any(|(seen, _)| *seen == id) {
                    outer.transfers.push((id, before));
                }
            }
        }
    }

    /// Undoes the innermost recording's ledger changes.
    pub(crate) fn undo_job(&mut self) {
        let Some(journal) = self.journal.pop() else {
            return;
        };
        for (id, before) in journal.accounts.into_iter().rev() {
            match before {
                Some(state) => self.accounts.insert(id, state),
                None => self.accounts.remove(&id),
            };
        }
        for (id, before) in journal.transfers.into_iter().rev() {
            match before {
                Some(stored) => self.transfers.insert(id, stored),
                None => self.transfers.remove(&id),
            };
        }
        self.new_accounts.truncate(journal.new_accounts);
        self.dirty_accounts.truncate(journal.dirty_accounts);
        self.new_transfers.truncate(journal.new_transfers);
        self.resolved.truncate(journal.resolved);
        self.last_timestamp_ns = journal.last_timestamp_ns;
        // The endpoints and customers read may include one this job made or changed and SQL
        // now undoes.
        self.endpoints.clear();
        self.customers.clear();
    }

    /// An account, loaded into memory if needed.
    pub(crate) fn load_account(
        &mut self,
        db: Db<'_>,
        id: AccountId,
    ) -> Result<Option<AccountState>, StoreError> {
        self.load_accounts(db, [id])?;
        Ok(self.accounts.get(&id).copied())
    }

    /// Preloads and applies a group (all or nothing). With `fresh`, the group's own transfer
    /// ids were just made at random and are not looked for in the store (see `Tx::apply_fresh`).
    pub(crate) fn apply(
        &mut self,
        db: Db<'_>,
        group: &Group,
        now_ns: u64,
        fresh: bool,
    ) -> Result<Result<GroupOutcome, GroupError>, StoreError> {
        self.preload(db, group, fresh)?;
        Ok(apply_group(self, group, now_ns))
    }

    /// Loads what `group` refers to and is not in memory yet (with `fresh`, not its own ids).
    fn preload(&mut self, db: Db<'_>, group: &Group, fresh: bool) -> Result<(), StoreError> {
        for id in group.transfer_ids() {
            if fresh && group.transfers.iter().any(|transfer| transfer.id == id) {
                continue;
            }
            if let Entry::Vacant(slot) = self.transfers.entry(id) {
                if let Some(stored) = codec::load_transfer(db, id)? {
                    slot.insert(stored);
                }
            }
        }
        let transfers = &self.transfers;
        let wanted: Vec<AccountId> = group
            .account_ids(|id| transfers.get(&id).map(|stored| stored.record))
            .filter(|id| !self.accounts.contains_key(id))
            .collect();
        self.load_accounts(db, wanted)
    }

    /// Loads the accounts of `ids` not in memory yet, in one statement, with their newest
    /// statement entries (`heads`).
    pub(crate) fn load_accounts(
        &mut self,
        db: Db<'_>,
        ids: impl IntoIterator<Item = AccountId>,
    ) -> Result<(), StoreError> {
        let mut wanted: Vec<AccountId> = ids
            .into_iter()
            .filter(|id| !self.accounts.contains_key(id))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        for (state, head) in codec::load_accounts(db, &wanted)? {
            self.heads.insert(state.account.id, head);
            self.accounts.entry(state.account.id).or_insert(state);
        }
        Ok(())
    }

    /// Writes every change of the batch; called inside the transaction.
    pub(crate) fn persist(&mut self, connection: &Connection) -> Result<(), StoreError> {
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
        crate::statements::persist(connection, self.accounts, &self.new_transfers)?;
        for (id, state, at_ns) in &self.resolved {
            codec::resolve_pending(connection, *id, *state, *at_ns)?;
        }
        codec::store_last_timestamp(connection, self.last_timestamp_ns)
    }
}
