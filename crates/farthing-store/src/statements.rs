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
use crate::{Reader, StoreError};

/// Migration 19: the table, filled from the transfers already booked (a running sum per
/// account in ledger-time order, which is what the accounts' totals are), and each customer
/// account's newest entry.
pub(crate) const SCHEMA: &str = r#"
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
        );
    ALTER TABLE accounts ADD COLUMN last_entry_ns INTEGER;
    CREATE TEMP TABLE statement_heads (account_id BLOB PRIMARY KEY, last_ns INTEGER NOT NULL);
    INSERT INTO statement_heads
        SELECT account_id, MAX(timestamp_ns) FROM customer_entries GROUP BY account_id;
    UPDATE accounts SET last_entry_ns =
        (SELECT last_ns FROM statement_heads h WHERE h.account_id = accounts.id)
        WHERE kind = 'customer_balance';
    DROP TABLE statement_heads;
"#;

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

/// The entries of a batch's new transfers, for the customer balances they post to.
pub(crate) fn persist(
    connection: &Connection,
    accounts: &HashMap<AccountId, AccountState>,
    new_transfers: &[TransferRecord],
) -> Result<(), StoreError> {
    let is_customer = |id: &AccountId| {
        accounts
            .get(id)
            .is_some_and(|state| matches!(state.account.kind, AccountKind::CustomerBalance { .. }))
    };
    let mut moves: Vec<(AccountId, &TransferRecord, i128)> = Vec::new();
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
    if moves.is_empty() {
        return Ok(());
    }
    // Walk back from each account's balance after the batch.
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
    // Each account's newest entry before this batch: its row is in the page cache (the batch
    // just rewrote it).
    let mut head: HashMap<AccountId, Option<i64>> = HashMap::new();
    {
        let mut statement =
            connection.prepare_cached("SELECT last_entry_ns FROM accounts WHERE id = ?1")?;
        for (account, _, _) in &moves {
            if let std::collections::hash_map::Entry::Vacant(slot) = head.entry(*account) {
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
    for ((account, record, amount), balance) in moves.iter().zip(balance_after) {
        let signed = |value: i128| {
            i64::try_from(value)
                .map_err(|_| StoreError::Corrupt(format!("statement amount {value} overflows")))
        };
        let timestamp = sql_amount(record.timestamp_ns)?;
        let previous = head.insert(*account, Some(timestamp)).flatten();
        insert.execute(params![
            timestamp,
            account.to_be_bytes(),
            record.id.to_be_bytes(),
            signed(*amount)?,
            signed(balance)?,
            record.code,
            (record.reference != 0).then(|| record.reference.to_be_bytes()),
            previous,
        ])?;
    }
    let mut update =
        connection.prepare_cached("UPDATE accounts SET last_entry_ns = ?2 WHERE id = ?1")?;
    for (account, last) in head {
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
            .connection
            .prepare_cached("SELECT last_entry_ns FROM accounts WHERE id = ?1")?
            .query_row([account.to_be_bytes()], |row| row.get(0))
            .optional()?
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
        let mut statement = self.connection.prepare_cached(
            "SELECT transfer_id, amount, balance_after, code, reference, prev_ns \
             FROM customer_entries WHERE timestamp_ns = ?1 AND account_id = ?2",
        )?;
        let mut rows = statement.query(params![timestamp_ns, account.to_be_bytes()])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let blob = |value: Vec<u8>, what: &str| -> Result<u128, StoreError> {
            <[u8; 16]>::try_from(value.as_slice())
                .map(u128::from_be_bytes)
                .map_err(|_| StoreError::Corrupt(format!("statement {what} is not 16 bytes")))
        };
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
        Ok(Some((entry, row.get(5)?)))
    }
}

/// `farthing audit`: per customer balance the entries chain back from the account's newest,
/// each balance follows from the one before, and the last equals the posted balance.
pub(crate) fn audit(connection: &Connection, problems: &mut Vec<String>) -> Result<(), StoreError> {
    // Totals are stored as 128-bit blobs: compare in Rust, not in SQL.
    let mut accounts: HashMap<AccountId, (i128, Option<i64>)> = HashMap::new();
    {
        let mut statement = connection.prepare(&format!(
            "SELECT {}, last_entry_ns FROM accounts WHERE kind = 'customer_balance'",
            crate::codec::ACCOUNT_COLUMNS
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let state = crate::codec::account_from_row(row)?;
            accounts.insert(state.account.id, (state.balances.posted(), row.get(12)?));
        }
    }
    let (mut unstated, mut broken) = (0_u64, 0_u64);
    // One pass in (account, time) order: (account, balance so far, newest time so far).
    let mut current: Option<(AccountId, i128, i64)> = None;
    let mut finish = |done: Option<(AccountId, i128, i64)>, unstated: &mut u64| {
        if let Some((account, balance, last)) = done {
            match accounts.remove(&account) {
                Some((posted, head)) if posted == balance && head == Some(last) => {}
                _ => *unstated += 1,
            }
        }
    };
    let mut statement = connection.prepare(
        "SELECT account_id, timestamp_ns, amount, balance_after, prev_ns FROM customer_entries \
         ORDER BY account_id, timestamp_ns",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id: Vec<u8> = row.get(0)?;
        let account = AccountId::from_be_slice(&id)
            .ok_or_else(|| StoreError::Corrupt("statement account is not 16 bytes".into()))?;
        let (at, amount, after, prev): (i64, i64, i64, Option<i64>) =
            (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
        let (balance, last) = match current {
            Some((same, balance, last)) if same == account => (balance, Some(last)),
            other => {
                finish(other, &mut unstated);
                (0, None)
            }
        };
        if prev != last || balance + i128::from(amount) != i128::from(after) {
            broken += 1;
        }
        current = Some((account, i128::from(after), at));
    }
    finish(current, &mut unstated);
    // Customer balances with no entries must be zero and point nowhere.
    unstated += accounts
        .values()
        .filter(|(posted, head)| *posted != 0 || head.is_some())
        .count() as u64;
    if unstated > 0 {
        problems.push(format!(
            "{unstated} customer balance(s) whose statement does not add up to the balance"
        ));
    }
    if broken > 0 {
        problems.push(format!(
            "{broken} statement entr(ies) whose balance or link does not follow from the one before"
        ));
    }
    Ok(())
}
