//! Rows to domain values and back. Every value read is parsed into its domain type; a row that
//! does not parse is reported as corruption, never guessed at.

use farthing_core::ledger::{
    Account, AccountFlags, AccountKind, AccountState, Balances, PendingState, StoredTransfer,
    TransferKind, TransferRecord,
};
use farthing_core::{AccountId, Currency, CustomerId, MerchantId, Rail, TransferId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::sql::Columns;
use crate::sql::{args, Db};
use crate::StoreError;

pub(crate) const ACCOUNT_COLUMNS: &str =
    "id, currency, kind, merchant_id, customer_id, rail, flags, \
     debits_pending, debits_posted, credits_pending, credits_posted, created_at_ns";

/// Columns of `transfers t` plus the hold's state. A correlated subquery rather than a LEFT
/// JOIN: SQLite re-prepares a cached LEFT JOIN statement at every execution with a new id.
pub(crate) const TRANSFER_COLUMNS: &str = "t.id, t.kind, t.debit_account_id, t.credit_account_id, \
     t.currency, t.amount, t.pending_id, t.timeout_s, t.code, t.reference, t.timestamp_ns, \
     (SELECT p.state FROM pending_transfers p WHERE p.id = t.id)";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, StoreError> {
    value.ok_or_else(|| StoreError::Corrupt(format!("{what} is NULL")))
}

fn blob_id<T>(
    row: &impl Columns,
    index: usize,
    parse: fn(&[u8]) -> Option<T>,
) -> Result<T, StoreError> {
    let bytes = required(row.bytes(index)?, "an id")?;
    parse(&bytes).ok_or_else(|| corrupt("an id is not 16 bytes"))
}

fn optional_blob_id<T>(
    row: &impl Columns,
    index: usize,
    parse: fn(&[u8]) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    let bytes = row.bytes(index)?;
    bytes
        .map(|bytes| parse(&bytes).ok_or_else(|| corrupt("an id is not 16 bytes")))
        .transpose()
}

fn amount(row: &impl Columns, index: usize) -> Result<u64, StoreError> {
    let value = required(row.int(index)?, "an amount")?;
    u64::try_from(value).map_err(|_| corrupt("a negative amount"))
}

/// A running total: a 16-byte big-endian blob (totals are 128-bit, see
/// `farthing_core::ledger::MAX_TOTAL_MINOR`).
fn total(row: &impl Columns, index: usize) -> Result<u128, StoreError> {
    let bytes = required(row.bytes(index)?, "an account total")?;
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt("an account total is not 16 bytes"))?;
    let value = u128::from_be_bytes(array);
    if value > farthing_core::ledger::MAX_TOTAL_MINOR {
        return Err(corrupt("an account total above the largest total"));
    }
    Ok(value)
}

/// The stored form of a running total.
pub(crate) fn sql_total(value: u128) -> [u8; 16] {
    value.to_be_bytes()
}

fn currency(row: &impl Columns, index: usize) -> Result<Currency, StoreError> {
    let code = required(row.text(index)?, "a currency")?;
    Currency::parse(&code).map_err(|_| StoreError::Corrupt(format!("unknown currency {code:?}")))
}

/// Reads a row selected with [`ACCOUNT_COLUMNS`].
pub(crate) fn account_from_row(row: &impl Columns) -> Result<AccountState, StoreError> {
    let kind_code = required(row.text(2)?, "an account kind")?;
    let rail = row.text(5)?;
    let rail = rail
        .map(|name| name.parse::<Rail>().map_err(|_| corrupt("unknown rail")))
        .transpose()?;
    let kind = AccountKind::from_parts(
        &kind_code,
        optional_blob_id(row, 3, MerchantId::from_be_slice)?,
        optional_blob_id(row, 4, CustomerId::from_be_slice)?,
        rail,
    )
    .ok_or_else(|| StoreError::Corrupt(format!("account kind {kind_code:?} with wrong owners")))?;
    let flags = required(row.int(6)?, "account flags")?;
    let flags = u32::try_from(flags)
        .ok()
        .and_then(AccountFlags::from_bits)
        .ok_or_else(|| corrupt("unknown account flags"))?;
    let created_at_ns = required(row.int(11)?, "a creation time")?;
    Ok(AccountState {
        account: Account {
            id: blob_id(row, 0, AccountId::from_be_slice)?,
            currency: currency(row, 1)?,
            kind,
            flags,
        },
        balances: Balances {
            debits_pending: total(row, 7)?,
            debits_posted: total(row, 8)?,
            credits_pending: total(row, 9)?,
            credits_posted: total(row, 10)?,
        },
        created_at_ns: u64::try_from(created_at_ns).map_err(|_| corrupt("negative time"))?,
    })
}

/// Reads a row selected with [`TRANSFER_COLUMNS`].
pub(crate) fn transfer_from_row(row: &impl Columns) -> Result<StoredTransfer, StoreError> {
    let kind = required(row.int(1)?, "a transfer kind")?;
    let kind = u8::try_from(kind)
        .ok()
        .and_then(TransferKind::from_u8)
        .ok_or_else(|| corrupt("unknown transfer kind"))?;
    let timeout_s = required(row.int(7)?, "a timeout")?;
    let code = required(row.int(8)?, "a transfer code")?;
    let reference = row.bytes(9)?;
    let reference = match reference {
        None => 0,
        Some(bytes) => {
            u128::from_be_bytes(bytes.try_into().map_err(|_| corrupt("reference size"))?)
        }
    };
    let timestamp_ns = required(row.int(10)?, "a timestamp")?;
    let state = row.int(11)?;
    let pending_state = state
        .map(|state| {
            u8::try_from(state)
                .ok()
                .and_then(PendingState::from_u8)
                .ok_or_else(|| corrupt("unknown pending state"))
        })
        .transpose()?;
    Ok(StoredTransfer {
        record: TransferRecord {
            id: blob_id(row, 0, TransferId::from_be_slice)?,
            kind,
            debit_account_id: blob_id(row, 2, AccountId::from_be_slice)?,
            credit_account_id: blob_id(row, 3, AccountId::from_be_slice)?,
            currency: currency(row, 4)?,
            amount_minor: amount(row, 5)?,
            pending_id: optional_blob_id(row, 6, TransferId::from_be_slice)?,
            timeout_s: u32::try_from(timeout_s).map_err(|_| corrupt("timeout range"))?,
            code: u16::try_from(code).map_err(|_| corrupt("code range"))?,
            reference,
            timestamp_ns: u64::try_from(timestamp_ns).map_err(|_| corrupt("negative time"))?,
        },
        pending_state,
    })
}

pub(crate) fn load_account(db: Db<'_>, id: AccountId) -> Result<Option<AccountState>, StoreError> {
    db.row(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
        args![id.to_be_bytes()],
        |row| account_from_row(row),
    )
}

/// The accounts of `ids` that exist, each with its newest statement entry (`statements.rs`),
/// in one statement.
pub(crate) fn load_accounts(
    db: Db<'_>,
    ids: &[AccountId],
) -> Result<Vec<(AccountState, Option<i64>)>, StoreError> {
    let keys: Vec<[u8; 16]> = ids.iter().map(|id| id.to_be_bytes()).collect();
    let args: Vec<&dyn crate::sql::Arg> =
        keys.iter().map(|key| key as &dyn crate::sql::Arg).collect();
    let placeholders: Vec<String> = (1..=keys.len()).map(|n| format!("?{n}")).collect();
    let head = ACCOUNT_COLUMNS.split(',').count();
    db.rows(
        &format!(
            "SELECT {ACCOUNT_COLUMNS}, last_entry_ns FROM accounts WHERE id IN ({})",
            placeholders.join(", ")
        ),
        &args,
        |row| Ok((account_from_row(row)?, row.get(head)?)),
    )
}

pub(crate) fn load_transfer(
    db: Db<'_>,
    id: TransferId,
) -> Result<Option<StoredTransfer>, StoreError> {
    db.row(
        &format!("SELECT {TRANSFER_COLUMNS} FROM transfers t WHERE t.id = ?1"),
        args![id.to_be_bytes()],
        |row| transfer_from_row(row),
    )
}

/// Stored form of a u64 that the ledger keeps at or below `i64::MAX`.
pub(crate) fn sql_amount(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| corrupt("an amount above i64::MAX reached the store"))
}

pub(crate) fn insert_account(
    connection: &Connection,
    state: &AccountState,
) -> Result<(), StoreError> {
    let account = &state.account;
    let mut statement = connection.prepare_cached(&format!(
        "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?;
    statement.execute(params![
        account.id.to_be_bytes(),
        account.currency.code(),
        account.kind.code(),
        account.kind.merchant().map(MerchantId::to_be_bytes),
        account.kind.customer().map(CustomerId::to_be_bytes),
        account.kind.rail().map(Rail::as_str),
        account.flags.bits(),
        sql_total(state.balances.debits_pending),
        sql_total(state.balances.debits_posted),
        sql_total(state.balances.credits_pending),
        sql_total(state.balances.credits_posted),
        sql_amount(state.created_at_ns)?,
    ])?;
    Ok(())
}

pub(crate) fn update_balances(
    connection: &Connection,
    id: AccountId,
    balances: &Balances,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "UPDATE accounts SET debits_pending = ?2, debits_posted = ?3, credits_pending = ?4, \
         credits_posted = ?5 WHERE id = ?1",
    )?;
    let changed = statement.execute(params![
        id.to_be_bytes(),
        sql_total(balances.debits_pending),
        sql_total(balances.debits_posted),
        sql_total(balances.credits_pending),
        sql_total(balances.credits_posted),
    ])?;
    if changed != 1 {
        return Err(StoreError::Corrupt(format!("account {id} vanished")));
    }
    Ok(())
}

pub(crate) fn insert_transfer(
    connection: &Connection,
    record: &TransferRecord,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, currency, amount, \
         pending_id, timeout_s, code, reference, timestamp_ns) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    statement.execute(params![
        record.id.to_be_bytes(),
        record.kind.to_u8(),
        record.debit_account_id.to_be_bytes(),
        record.credit_account_id.to_be_bytes(),
        record.currency.code(),
        sql_amount(record.amount_minor)?,
        record.pending_id.map(TransferId::to_be_bytes),
        record.timeout_s,
        record.code,
        (record.reference != 0).then(|| record.reference.to_be_bytes()),
        sql_amount(record.timestamp_ns)?,
    ])?;
    if record.kind == TransferKind::Pending {
        let mut statement = connection.prepare_cached(
            "INSERT INTO pending_transfers (id, state, expires_at_ns) VALUES (?1, 0, ?2)",
        )?;
        let expires_at_ns = record.expires_at_ns().map(sql_amount).transpose()?;
        statement.execute(params![record.id.to_be_bytes(), expires_at_ns])?;
        if let Some(expires_at_ns) = expires_at_ns {
            let mut statement = connection
                .prepare_cached("INSERT INTO hold_expiries (expires_at_ns, id) VALUES (?1, ?2)")?;
            statement.execute(params![expires_at_ns, record.id.to_be_bytes()])?;
        }
    }
    Ok(())
}

pub(crate) fn resolve_pending(
    connection: &Connection,
    id: TransferId,
    state: PendingState,
    at_ns: u64,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "UPDATE pending_transfers SET state = ?2, resolved_at_ns = ?3 WHERE id = ?1 AND state = 0",
    )?;
    let changed =
        statement.execute(params![id.to_be_bytes(), state.to_u8(), sql_amount(at_ns)?])?;
    if changed != 1 {
        return Err(StoreError::Corrupt(format!(
            "hold {id} was not open when it was resolved"
        )));
    }
    let mut statement = connection.prepare_cached(
        "DELETE FROM hold_expiries WHERE expires_at_ns = \
         (SELECT expires_at_ns FROM pending_transfers WHERE id = ?1) AND id = ?1",
    )?;
    statement.execute([id.to_be_bytes()])?;
    Ok(())
}

/// Removes every expiry entry of hold `id`.
pub(crate) fn drop_expiry(connection: &Connection, id: TransferId) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached("DELETE FROM hold_expiries WHERE id = ?1")?;
    statement.execute([id.to_be_bytes()])?;
    Ok(())
}

/// The ledger clock as persisted.
pub(crate) fn load_last_timestamp(connection: &Connection) -> Result<u64, StoreError> {
    let value: i64 = connection.query_row(
        "SELECT last_timestamp_ns FROM ledger_meta WHERE singleton = 1",
        [],
        |row| row.get(0),
    )?;
    u64::try_from(value).map_err(|_| corrupt("negative ledger clock"))
}

pub(crate) fn store_last_timestamp(connection: &Connection, value: u64) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare_cached("UPDATE ledger_meta SET last_timestamp_ns = ?1 WHERE singleton = 1")?;
    statement.execute([sql_amount(value)?])?;
    Ok(())
}

/// Open holds whose timeout has passed at `now_ns`, oldest first, at most `limit`: read
/// through the expiry schedule, so the cost follows what expires.
pub(crate) fn due_holds(
    connection: &Connection,
    now_ns: u64,
    limit: usize,
) -> Result<Vec<TransferId>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id FROM hold_expiries WHERE expires_at_ns <= ?1 ORDER BY expires_at_ns",
    )?;
    // No `LIMIT ?` (it would re-prepare the statement each time); the walk is lazy.
    let rows = statement.query_map(params![sql_amount(now_ns)?], |row| row.get::<_, Vec<u8>>(0))?;
    let mut ids = Vec::new();
    for bytes in rows.take(limit) {
        ids.push(TransferId::from_be_slice(&bytes?).ok_or_else(|| corrupt("id size"))?);
    }
    Ok(ids)
}

/// When the next open hold expires, if any hold with a timeout is open.
pub(crate) fn next_expiry(connection: &Connection) -> Result<Option<u64>, StoreError> {
    let mut statement =
        connection.prepare_cached("SELECT MIN(expires_at_ns) FROM hold_expiries")?;
    let value: Option<i64> = statement
        .query_row([], |row| row.get(0))
        .optional()?
        .flatten();
    Ok(value.and_then(|value| u64::try_from(value).ok()))
}

/// Runs a parameterless statement through the statement cache (savepoints run once or twice
/// per job; parsing them each time showed in profiles).
pub(crate) fn run_cached(connection: &Connection, sql: &str) -> Result<(), StoreError> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}
