//! Customers' statements: one entry per posted movement of a customer balance (a charge, a
//! payment, a top-up, a refund, a payout), with the balance after it, written in the same
//! transaction as the transfer.
//!
//! The ledger's `transfers` table has no index by account on purpose (see the ledger schema);
//! this table is that index for customer balances only, keyed by (account, ledger time), so a
//! statement page is one range read. The balance after each entry is computed at commit from
//! the batch's final account totals walking back over the batch's own movements, so entries
//! agree with the accounts by construction (and `farthing audit` checks it).

use std::collections::HashMap;

use farthing_core::ledger::{AccountKind, AccountState, TransferKind, TransferRecord};
use farthing_core::{AccountId, TransferId};
use rusqlite::{params, Connection};

use crate::codec::sql_amount;
use crate::{Reader, StoreError};

/// Migration 19: the table, filled from the transfers already booked (a running sum per
/// account in ledger-time order, which is what the accounts' totals are).
pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE customer_entries (
        account_id    BLOB NOT NULL,
        timestamp_ns  INTEGER NOT NULL,
        transfer_id   BLOB NOT NULL,
        amount        INTEGER NOT NULL,
        balance_after INTEGER NOT NULL,
        code          INTEGER NOT NULL,
        reference     BLOB,
        PRIMARY KEY (account_id, timestamp_ns)
    ) WITHOUT ROWID;
    INSERT INTO customer_entries
        SELECT account_id, timestamp_ns, id, amount,
               SUM(amount) OVER (PARTITION BY account_id ORDER BY timestamp_ns
                                 ROWS UNBOUNDED PRECEDING),
               code, reference
        FROM (
            SELECT a.id AS account_id, t.timestamp_ns, t.id,
                   CASE WHEN t.credit_account_id = a.id THEN t.amount ELSE -t.amount END
                       AS amount,
                   t.code, t.reference
            FROM transfers t
            JOIN accounts a ON a.id = t.debit_account_id OR a.id = t.credit_account_id
            WHERE a.kind = 'customer_balance' AND t.kind IN (0, 2)
        );
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
    let mut statement = connection.prepare_cached(
        "INSERT INTO customer_entries \
         (account_id, timestamp_ns, transfer_id, amount, balance_after, code, reference) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for ((account, record, amount), balance) in moves.iter().zip(balance_after) {
        let signed = |value: i128| {
            i64::try_from(value)
                .map_err(|_| StoreError::Corrupt(format!("statement amount {value} overflows")))
        };
        statement.execute(params![
            account.to_be_bytes(),
            sql_amount(record.timestamp_ns)?,
            record.id.to_be_bytes(),
            signed(*amount)?,
            signed(balance)?,
            record.code,
            (record.reference != 0).then(|| record.reference.to_be_bytes()),
        ])?;
    }
    Ok(())
}

impl Reader<'_> {
    /// A page of a customer balance's entries, newest first: at most `limit` older than
    /// `before_ns`, or (paging back) the `limit` just newer than `after_ns`, with whether more
    /// follow in that direction.
    pub fn customer_entries(
        &self,
        account: AccountId,
        limit: usize,
        before_ns: Option<u64>,
        after_ns: Option<u64>,
    ) -> Result<(Vec<CustomerEntry>, bool), StoreError> {
        let limit = limit.clamp(1, 100);
        let backwards = after_ns.is_some();
        let upper = before_ns.map_or(Ok(i64::MAX), sql_amount)?;
        let lower = after_ns.map_or(Ok(-1), sql_amount)?;
        let sql = if backwards {
            "SELECT timestamp_ns, transfer_id, amount, balance_after, code, reference \
             FROM customer_entries WHERE account_id = ?1 AND timestamp_ns < ?2 \
             AND timestamp_ns > ?3 ORDER BY timestamp_ns ASC"
        } else {
            "SELECT timestamp_ns, transfer_id, amount, balance_after, code, reference \
             FROM customer_entries WHERE account_id = ?1 AND timestamp_ns < ?2 \
             AND timestamp_ns > ?3 ORDER BY timestamp_ns DESC"
        };
        let mut statement = self.connection.prepare_cached(sql)?;
        let mut rows = statement.query(params![account.to_be_bytes(), upper, lower])?;
        let mut entries = Vec::new();
        while entries.len() <= limit {
            let Some(row) = rows.next()? else { break };
            let blob = |value: Vec<u8>, what: &str| -> Result<u128, StoreError> {
                <[u8; 16]>::try_from(value.as_slice())
                    .map(u128::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt(format!("statement {what} is not 16 bytes")))
            };
            let timestamp: i64 = row.get(0)?;
            entries.push(CustomerEntry {
                account,
                timestamp_ns: u64::try_from(timestamp)
                    .map_err(|_| StoreError::Corrupt("statement time".to_owned()))?,
                transfer: TransferId(blob(row.get(1)?, "transfer")?),
                amount_minor: row.get(2)?,
                balance_after_minor: row.get(3)?,
                code: row.get(4)?,
                reference: row
                    .get::<_, Option<Vec<u8>>>(5)?
                    .map(|value| blob(value, "reference"))
                    .transpose()?
                    .unwrap_or(0),
            });
        }
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        if backwards {
            entries.reverse();
        }
        Ok((entries, has_more))
    }
}

/// `farthing audit`: every customer balance's entries sum to its posted balance, end at it,
/// and each entry's balance follows from the one before.
pub(crate) fn audit(connection: &Connection, problems: &mut Vec<String>) -> Result<(), StoreError> {
    // Totals are stored as 128-bit blobs: compare in Rust, not in SQL.
    let mut entries: HashMap<AccountId, (i128, i128)> = HashMap::new();
    {
        let mut statement = connection.prepare(
            "SELECT account_id, SUM(amount), \
             (SELECT l.balance_after FROM customer_entries l WHERE l.account_id = e.account_id \
              ORDER BY l.timestamp_ns DESC LIMIT 1) \
             FROM customer_entries e GROUP BY account_id",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: Vec<u8> = row.get(0)?;
            let id = AccountId::from_be_slice(&id)
                .ok_or_else(|| StoreError::Corrupt("statement account is not 16 bytes".into()))?;
            let sum: i64 = row.get(1)?;
            let last: i64 = row.get(2)?;
            entries.insert(id, (i128::from(sum), i128::from(last)));
        }
    }
    let mut disagreeing = 0_u64;
    let mut statement = connection.prepare(&format!(
        "SELECT {} FROM accounts WHERE kind = 'customer_balance'",
        crate::codec::ACCOUNT_COLUMNS
    ))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let state = crate::codec::account_from_row(row)?;
        let posted = state.balances.posted();
        let (sum, last) = entries.remove(&state.account.id).unwrap_or((0, 0));
        if sum != posted || last != posted {
            disagreeing += 1;
        }
    }
    // Entries of an account that is not a customer balance (or none at all).
    disagreeing += entries.len() as u64;
    if disagreeing > 0 {
        problems.push(format!(
            "{disagreeing} customer balance(s) whose statement does not add up to the balance"
        ));
    }
    let broken: i64 = connection.query_row(
        "SELECT COUNT(*) FROM (SELECT amount, balance_after, LAG(balance_after, 1, 0) \
         OVER (PARTITION BY account_id ORDER BY timestamp_ns) AS before FROM customer_entries) \
         WHERE before + amount != balance_after",
        [],
        |row| row.get(0),
    )?;
    if broken > 0 {
        problems.push(format!(
            "{broken} statement entr(ies) whose balance does not follow from the one before"
        ));
    }
    Ok(())
}
