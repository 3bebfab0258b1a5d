//! Customers' statements: one entry per posted movement of a customer balance (a charge, a
//! payment, a top-up, a refund, a payout), with the balance after it, written in the same
//! transaction as the transfer.
//!
//! The ledger's `transfers` table has no index by account on purpose: with thousands of active
//! accounts every batch would rewrite a leaf page per account (measured: a table keyed by
//! (account, time) made durable transfers between 10 000 customers 2.8 times slower). So the
//! entries are appended in ledger-time order (as cheap as the transfers themselves) and each
//! points to the previous entry of its account; the account row, which every batch rewrites
//! anyway, holds the newest (`accounts.last_entry_ns`). A statement page follows that chain
//! from the newest entry or a cursor: one primary-key read per entry. The balance after each
//! entry is computed at commit from the batch's final account totals walking back over the
//! batch's own movements, so entries agree with the accounts by construction (and
//! `farthing audit` checks it).

use std::collections::HashMap;

use farthing_core::ledger::{AccountKind, AccountState, TransferKind, TransferRecord};
use farthing_core::{AccountId, TransferId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::codec::sql_amount;
use crate::sql::Columns;
use crate::sql::{args, Row};
use crate::{Reader, StoreError};

/// Migration 19: the table, filled from the transfers already booked (a running sum per
/// account in ledger-time order, which is what the accounts' totals are), and each customer
/// account's newest entry.
/// Migration 19's fill of `customer_entries` from the transfers already booked, up to the
/// closing parenthesis of its subquery (PostgreSQL 15 wants that subquery named: `pg_schema.rs`).
macro_rules! customer_entries_fill {
    () => {
        r#"
    INSERT INTO customer_entries
        SELECT timestamp_ns, account_id, id, amount,
               SUM(amount) OVER (PARTITION BY account_id ORDER BY timestamp_ns
                                 ROWS UNBOUNDED PRECEDING),
               code, reference,
               LAG(timestamp_ns) OVER (PARTITION BY account_id ORDER BY timestamp_ns)
        FROM (
            SELECT a.id AS account_id, t.timestamp_ns, t.id,
                   CASE WHEN t.credit_account_id = a.id THEN t.amount ELSE -t.amount END
                       AS amount,
                   t.code, t.reference
            FROM transfers t
            JOIN accounts a ON a.id = t.debit_account_id OR a.id = t.credit_account_id
            WHERE a.kind = 'customer_balance' AND t.kind IN (0, 2)
        )"#
    };
}
pub(crate) use customer_entries_fill;

pub(crate) const SCHEMA: &str = concat!(
    r#"
    CREATE TABLE customer_entries (
        timestamp_ns  INTEGER NOT NULL,
        account_id    BLOB NOT NULL,
        transfer_id   BLOB NOT NULL,
        amount        INTEGER NOT NULL,
        balance_after INTEGER NOT NULL,
        code          INTEGER NOT NULL,
        reference     BLOB,
        prev_ns       INTEGER,
        PRIMARY KEY (timestamp_ns, account_id)
    ) WITHOUT ROWID;
"#,
    customer_entries_fill!(),
    r#";
    ALTER TABLE accounts ADD COLUMN last_entry_ns INTEGER;
    CREATE TEMP TABLE statement_heads (account_id BLOB PRIMARY KEY, last_ns INTEGER NOT NULL);
    INSERT INTO statement_heads
        SELECT account_id, MAX(timestamp_ns) FROM customer_entries GROUP BY account_id;
    UPDATE accounts SET last_entry_ns =
        (SELECT last_ns FROM statement_heads h WHERE h.account_id = accounts.id)
        WHERE kind = 'customer_balance';
    DROP TABLE statement_heads;
"#
);

/// One movement of a customer balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomerEntry {
    /// The balance account.
    pub account: AccountId,
    /// Ledger time of the transfer (unique per transfer, increasing).
    pub timestamp_ns: u64,
    /// The transfer.
    pub transfer: TransferId,
    /// Signed minor units: positive credits the customer, negative debits.
    pub amount_minor: i64,
    /// The posted balance right after it.
    pub balance_after_minor: i64,
    /// Why (the transfer's code).
    pub code: u16,
    /// The business object behind it (the transfer's reference; 0 for none).
    pub reference: u128,
}

/// One movement of a customer balance a batch's new transfer makes: the account, the
/// transfer, and the signed amount (positive credits the customer).
pub(crate) type Move<'r> = (AccountId, &'r TransferRecord, i128);

/// The movements of customer balances among a batch's new transfers, in ledger order.
pub(crate) fn moves<'r>(
    accounts: &HashMap<AccountId, AccountState>,
    new_transfers: &'r [TransferRecord],
) -> Vec<Move<'r>> {
    let is_customer = |id: &AccountId| {
        accounts
            .get(id)
            .is_some_and(|state| matches!(state.account.kind, AccountKind::CustomerBalance { .. }))
    };
    let mut moves = Vec::new();
    for record in new_transfers {
        // Holds and voids change no posted balance; the posting of a hold does.
        if !matches!(
            record.kind,
            TransferKind::Single | TransferKind::PostPending
        ) {
            continue;
        }
        let amount = i128::from(record.amount_minor);
        if is_customer(&record.debit_account_id) {
            moves.push((record.debit_account_id, record, -amount));
        }
        if is_customer(&record.credit_account_id) {
            moves.push((record.credit_account_id, record, amount));
        }
    }
    moves
}

/// A row of `customer_entries`, as stored.
pub(crate) struct NewEntry {
    pub(crate) timestamp_ns: i64,
    pub(crate) account: AccountId,
    pub(crate) transfer: TransferId,
    pub(crate) amount: i64,
    pub(crate) balance_after: i64,
    pub(crate) code: u16,
    pub(crate) reference: Option<[u8; 16]>,
    pub(crate) prev_ns: Option<i64>,
}

/// The entries of `moves`. `heads` holds each moved account's newest entry before the batch
/// (`None`: it has none) and afterwards holds its newest entry after it. The balance after each
/// entry is found walking back from the account's balance after the batch.
pub(crate) fn entries(
    moves: &[Move<'_>],
    accounts: &HashMap<AccountId, AccountState>,
    heads: &mut HashMap<AccountId, Option<i64>>,
) -> Result<Vec<NewEntry>, StoreError> {
    let mut after: HashMap<AccountId, i128> = HashMap::new();
    let mut balance_after = vec![0_i128; moves.len()];
    for (i, (account, _, amount)) in moves.iter().enumerate().rev() {
        let current = *after.entry(*account).or_insert_with(|| {
            accounts
                .get(account)
                .map_or(0, |state| state.balances.posted())
        });
        balance_after[i] = current;
        after.insert(*account, current - amount);
    }
    let signed = |value: i128| {
        i64::try_from(value)
            .map_err(|_| StoreError::Corrupt(format!("statement amount {value} overflows")))
    };
    let mut out = Vec::with_capacity(moves.len());
    for ((account, record, amount), balance) in moves.iter().zip(balance_after) {
        let timestamp_ns = sql_amount(record.timestamp_ns)?;
        out.push(NewEntry {
            timestamp_ns,
            account: *account,
            transfer: record.id,
            amount: signed(*amount)?,
            balance_after: signed(balance)?,
            code: record.code,
            reference: (record.reference != 0).then(|| record.reference.to_be_bytes()),
            prev_ns: heads.insert(*account, Some(timestamp_ns)).flatten(),
        });
    }
    Ok(out)
}

/// Writes the entries of a batch's new transfers, for the customer balances they post to.
pub(crate) fn persist(
    connection: &Connection,
    accounts: &HashMap<AccountId, AccountState>,
    new_transfers: &[TransferRecord],
) -> Result<(), StoreError> {
    let moves = moves(accounts, new_transfers);
    if moves.is_empty() {
        return Ok(());
    }
    // Each account's newest entry before this batch: its row is in the page cache (the batch
    // just rewrote it).
    let mut heads: HashMap<AccountId, Option<i64>> = HashMap::new();
    {
        let mut statement =
            connection.prepare_cached("SELECT last_entry_ns FROM accounts WHERE id = ?1")?;
        for (account, _, _) in &moves {
            if let std::collections::hash_map::Entry::Vacant(slot) = heads.entry(*account) {
                let last: Option<i64> = statement
                    .query_row([account.to_be_bytes()], |row| row.get(0))
                    .optional()?
                    .flatten();
                slot.insert(last);
            }
        }
    }
    let mut insert = connection.prepare_cached(
        "INSERT INTO customer_entries (timestamp_ns, account_id, transfer_id, amount, \
         balance_after, code, reference, prev_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for entry in entries(&moves, accounts, &mut heads)? {
        insert.execute(params![
            entry.timestamp_ns,
            entry.account.to_be_bytes(),
            entry.transfer.to_be_bytes(),
            entry.amount,
            entry.balance_after,
            entry.code,
            entry.reference,
            entry.prev_ns,
        ])?;
    }
    let mut update =
        connection.prepare_cached("UPDATE accounts SET last_entry_ns = ?2 WHERE id = ?1")?;
    for (account, last) in heads {
        update.execute(params![account.to_be_bytes(), last])?;
    }
    Ok(())
}

impl Reader<'_> {
    /// A page of a customer balance's entries, newest first: at most `limit` older than
    /// `before_ns`, or (paging back) the `limit` just newer than `after_ns`, with whether more
    /// follow in that direction. Paging back walks from the newest entry to the cursor.
    pub fn customer_entries(
        &self,
        account: AccountId,
        limit: usize,
        before_ns: Option<u64>,
        after_ns: Option<u64>,
    ) -> Result<(Vec<CustomerEntry>, bool), StoreError> {
        let limit = limit.clamp(1, 100);
        let head: Option<i64> = self
            .db()
            .row(
                "SELECT last_entry_ns FROM accounts WHERE id = ?1",
                args![account.to_be_bytes()],
                |row| row.get(0),
            )?
            .flatten();
        let mut next = match before_ns {
            // The entry at the cursor, then its predecessor.
            Some(before) => self
                .entry(account, sql_amount(before)?)?
                .and_then(|(_, prev)| prev),
            None => head,
        };
        let after = after_ns.map(sql_amount).transpose()?;
        let mut entries: Vec<CustomerEntry> = Vec::new();
        let mut has_more = false;
        while let Some(at) = next {
            if after.is_some_and(|after| at <= after) {
                break;
            }
            let Some((entry, prev)) = self.entry(account, at)? else {
                return Err(StoreError::Corrupt(format!(
                    "statement entry {at} of account {account} is missing"
                )));
            };
            if after.is_some() {
                // Paging back: keep the `limit` entries closest to the cursor.
                if entries.len() == limit {
                    entries.remove(0);
                    has_more = true;
                }
                entries.push(entry);
            } else {
                if entries.len() == limit {
                    has_more = true;
                    break;
                }
                entries.push(entry);
            }
            next = prev;
        }
        Ok((entries, has_more))
    }

    fn entry(
        &self,
        account: AccountId,
        timestamp_ns: i64,
    ) -> Result<Option<(CustomerEntry, Option<i64>)>, StoreError> {
        let blob = |value: Vec<u8>, what: &str| -> Result<u128, StoreError> {
            <[u8; 16]>::try_from(value.as_slice())
                .map(u128::from_be_bytes)
                .map_err(|_| StoreError::Corrupt(format!("statement {what} is not 16 bytes")))
        };
        let read = |row: &Row<'_>| -> Result<(CustomerEntry, Option<i64>), StoreError> {
            let entry = CustomerEntry {
                account,
                timestamp_ns: u64::try_from(timestamp_ns)
                    .map_err(|_| StoreError::Corrupt("statement time".to_owned()))?,
                transfer: TransferId(blob(row.get(0)?, "transfer")?),
                amount_minor: row.get(1)?,
                balance_after_minor: row.get(2)?,
                code: row.get(3)?,
                reference: row
                    .get::<_, Option<Vec<u8>>>(4)?
                    .map(|value| blob(value, "reference"))
                    .transpose()?
                    .unwrap_or(0),
            };
            Ok((entry, row.get(5)?))
        };
        self.db().row(
            "SELECT transfer_id, amount, balance_after, code, reference, prev_ns \
             FROM customer_entries WHERE timestamp_ns = ?1 AND account_id = ?2",
            args![timestamp_ns, account.to_be_bytes()],
            read,
        )
    }
}

/// `farthing audit`: per customer balance the entries chain back from the account's newest,
/// each balance follows from the one before, and the last equals the posted balance.
pub(crate) fn audit(connection: &Connection, problems: &mut Vec<String>) -> Result<(), StoreError> {
    let mut check = StatementCheck::default();
    let mut statement = connection.prepare(&StatementCheck::accounts_sql())?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        check.account(row)?;
    }
    let mut statement = connection.prepare(StatementCheck::ENTRIES_SQL)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        check.entry(row)?;
    }
    check.finish(problems);
    Ok(())
}

/// The statement checks of `farthing audit`, fed with rows of either backend: first every
/// customer balance ([`StatementCheck::accounts_sql`]), then every entry in (account, time)
/// order ([`StatementCheck::ENTRIES_SQL`]).
#[derive(Default)]
pub(crate) struct StatementCheck {
    /// Per customer balance: its posted balance and newest entry (removed once its entries
    /// are checked).
    accounts: HashMap<AccountId, (i128, Option<i64>)>,
    /// The account being walked: (account, balance so far, newest time so far).
    current: Option<(AccountId, i128, i64)>,
    unstated: u64,
    broken: u64,
}

impl StatementCheck {
    /// Every customer balance (totals are 128-bit blobs: compared in Rust, not in SQL).
    pub(crate) fn accounts_sql() -> String {
        format!(
            "SELECT {}, last_entry_ns FROM accounts WHERE kind = 'customer_balance'",
            crate::codec::ACCOUNT_COLUMNS
        )
    }

    /// Every entry, in (account, time) order.
    pub(crate) const ENTRIES_SQL: &'static str =
        "SELECT account_id, timestamp_ns, amount, balance_after, prev_ns FROM customer_entries \
         ORDER BY account_id, timestamp_ns";

    pub(crate) fn account(&mut self, row: &impl Columns) -> Result<(), StoreError> {
        let state = crate::codec::account_from_row(row)?;
        self.accounts
            .insert(state.account.id, (state.balances.posted(), row.int(12)?));
        Ok(())
    }

    pub(crate) fn entry(&mut self, row: &impl Columns) -> Result<(), StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("statement {what}"));
        let id = row.bytes(0)?.ok_or_else(|| corrupt("account is NULL"))?;
        let account =
            AccountId::from_be_slice(&id).ok_or_else(|| corrupt("account is not 16 bytes"))?;
        let int = |index: usize| row.int(index)?.ok_or_else(|| corrupt("value is NULL"));
        let (at, amount, after, prev) = (int(1)?, int(2)?, int(3)?, row.int(4)?);
        let (balance, last) = match self.current {
            Some((same, balance, last)) if same == account => (balance, Some(last)),
            other => {
                self.close(other);
                (0, None)
            }
        };
        if prev != last || balance + i128::from(amount) != i128::from(after) {
            self.broken += 1;
        }
        self.current = Some((account, i128::from(after), at));
        Ok(())
    }

    /// The walk of one account is over: its last balance and time must be the account's.
    fn close(&mut self, done: Option<(AccountId, i128, i64)>) {
        if let Some((account, balance, last)) = done {
            match self.accounts.remove(&account) {
                Some((posted, head)) if posted == balance && head == Some(last) => {}
                _ => self.unstated += 1,
            }
        }
    }

    pub(crate) fn finish(mut self, problems: &mut Vec<String>) {
        let current = self.current.take();
        self.close(current);
        // Customer balances with no entries must be zero and point nowhere.
        self.unstated += self
            .accounts
            .values()
            .filter(|(posted, head)| *posted != 0 || head.is_some())
            .count() as u64;
        if self.unstated > 0 {
            problems.push(format!(
                "{} customer balance(s) whose statement does not add up to the balance",
                self.unstated
            ));
        }
        if self.broken > 0 {
            problems.push(format!(
                "{} statement entr(ies) whose balance or link does not follow from the one before",
                self.broken
            ));
        }
    }
}
