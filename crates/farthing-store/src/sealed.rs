//! How many stored secrets are sealed, and whether this server's keys open them: the checks
//! `farthing serve` runs at start, on either backend (`sql::Db`).

use crate::secrets::{hex, Plain, PREFIX, SECRET_COLUMNS};
use crate::sql::{args, Columns, Db};
use crate::StoreError;

/// Whether a secret column's value is sealed, as SQL for `db`. SQLite reads any value as text.
/// On PostgreSQL a column is TEXT or BYTEA (step-up secrets: SQLite's BLOB), and the prefix is
/// compared as what it is, not through a cast whose form depends on server settings.
fn sealed_condition(db: Db<'_>, table: &str, column: &str) -> Result<String, StoreError> {
    if !db.is_postgres() {
        return Ok(format!("CAST({column} AS TEXT) LIKE '{PREFIX}%'"));
    }
    let data_type: Option<String> = db.row(
        "SELECT CAST(data_type AS TEXT) FROM information_schema.columns \
         WHERE table_schema = current_schema() AND CAST(table_name AS TEXT) = ?1 \
         AND CAST(column_name AS TEXT) = ?2",
        args![table, column],
        |row| row.get(0),
    )?;
    Ok(if data_type.as_deref() == Some("bytea") {
        format!(
            "substring({column} from 1 for {}) = decode('{}', 'hex')",
            PREFIX.len(),
            hex(PREFIX.as_bytes())
        )
    } else {
        format!("starts_with({column}, '{PREFIX}')")
    })
}

/// How many stored secrets are sealed and how many are in clear, over every secret column.
pub(crate) fn census(db: Db<'_>) -> Result<(u64, u64), StoreError> {
    let (mut sealed, mut clear) = (0u64, 0u64);
    for (table, column) in SECRET_COLUMNS {
        let condition = sealed_condition(db, table, column)?;
        let counts: Option<(i64, i64)> = db.row(
            &format!(
                "SELECT COUNT(*) FILTER (WHERE {condition}), \
                 COUNT(*) FILTER (WHERE {column} IS NOT NULL AND NOT {condition}) FROM {table}"
            ),
            args![],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let (s, c) = counts.unwrap_or((0, 0));
        sealed += u64::try_from(s).unwrap_or(0);
        clear += u64::try_from(c).unwrap_or(0);
    }
    Ok((sealed, clear))
}

/// Opens one sealed value of each secret column with the connection's keys: a server given the
/// wrong key refuses to start instead of failing at the first payment.
pub(crate) fn verify(db: Db<'_>) -> Result<(), StoreError> {
    for (table, column) in SECRET_COLUMNS {
        let condition = sealed_condition(db, table, column)?;
        db.row(
            &format!("SELECT unseal({column}) FROM {table} WHERE {condition} LIMIT 1"),
            args![],
            // SQLite unseals in the statement; PostgreSQL when the column is read.
            |row| match db {
                Db::Postgres(_) => row.bytes(0).map(drop),
                Db::Sqlite(_) => Ok(()),
            },
        )?;
    }
    Ok(())
}

/// Seals every stored secret again under the connection's key, opening each with it or its
/// previous keys (a secret in clear is sealed): PostgreSQL's rotation, run as one job, so all
/// of it commits or none. Returns how many values were written. (SQLite's rotation is one
/// `UPDATE … SET c = seal(unseal(c))` per column, `secrets::rotate`.)
pub(crate) fn reseal(db: Db<'_>) -> Result<u64, StoreError> {
    let mut written = 0u64;
    for (table, column) in SECRET_COLUMNS {
        // Each row by its place in the table: the job holds the ledger clock's lock, and every
        // write of every instance takes it first, so no row moves meanwhile.
        let rows = db.rows(
            &format!(
                "SELECT CAST(ctid AS TEXT), unseal({column}) FROM {table} \
                 WHERE {column} IS NOT NULL"
            ),
            args![],
            |row| Ok((row.get::<_, String>(0)?, row.secret(1)?)),
        )?;
        let update =
            format!("UPDATE {table} SET {column} = seal(?1) WHERE ctid = CAST(?2 AS TEXT)::tid");
        for (place, secret) in rows {
            let changed = match secret {
                Plain::Text(text) => db.execute(&update, args![text, place])?,
                Plain::Bytes(bytes) => db.execute(&update, args![bytes, place])?,
                Plain::Null => 0,
            };
            if changed != 1 {
                return Err(StoreError::Corrupt(format!(
                    "{table}.{column}: a secret to seal again was not found where it was read"
                )));
            }
            written += 1;
        }
    }
    Ok(written)
}
