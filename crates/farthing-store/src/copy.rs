//! `farthing copy`: a stopped shop's SQLite database, every table, into PostgreSQL.
//!
//! The two backends have the same schema (the same migrations; a test compares them column by
//! column), so the copy is table by table and column by column with no knowledge of what the
//! tables mean: each row is read from SQLite and written with PostgreSQL's binary `COPY`, the
//! live and the test database in one PostgreSQL transaction (a failed copy leaves no data in the
//! target; its schemas may have been created). Stored secrets are copied sealed, as they are:
//! the same key opens them. The sources are locked (no server may hold them) and brought to this
//! build's schema first; the target must be empty. Afterwards each table's row count is
//! compared, and the caller runs `farthing audit` on the target.

use std::path::Path;

use postgres::types::{ToSql, Type};
use rusqlite::types::ValueRef;

use crate::{pg, schema, StoreError};

/// What was copied: each table and its rows, in the order copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// `(table, rows)`.
    pub tables: Vec<(String, u64)>,
}

impl CopyReport {
    /// Rows copied in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, rows)| rows).sum()
    }
}

/// Rows between two progress reports within a table.
const PROGRESS_EVERY: u64 = 100_000;

/// Which of a shop's two databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Live mode: real money.
    Live,
    /// Test mode: beside the live data (`<schema>_test` on PostgreSQL, see
    /// [`pg::test_mode_url`]).
    Test,
}

/// Copies a stopped shop's SQLite databases — `live`, and `test` when it has one — into the
/// empty PostgreSQL database (or schema) at `target` and the test-mode schema beside it, in one
/// PostgreSQL transaction: both are copied or neither is. `progress(mode, table, rows, done)` is
/// told every 100 000 rows of a table and when the table is done.
pub fn sqlite_to_postgres(
    live: &Path,
    test: Option<&Path>,
    target: &str,
    mut progress: impl FnMut(Mode, &str, u64, bool),
) -> Result<Vec<(Mode, CopyReport)>, StoreError> {
    // Both databases locked for the whole copy: no server may start on either meanwhile.
    let mut sources = Vec::new();
    let mut locks = Vec::new();
    for (mode, path) in [(Mode::Live, Some(live)), (Mode::Test, test)] {
        let Some(path) = path else { continue };
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        locks.push(crate::lock_database(path)?);
        let mut sqlite = schema::open_writer(path)?;
        schema::migrate(&mut sqlite, crate::system_clock()())?;
        sources.push((mode, sqlite));
    }

    pg::migrate(target)?;
    let mut client = pg::connect(target)?;
    let live_schema: Option<String> = client
        .query_one("SELECT current_schema()", &[])?
        .try_get(0)?;
    let live_schema = live_schema.ok_or_else(|| {
        StoreError::BadUrl("the URL's search_path names no schema that exists".to_owned())
    })?;
    if test.is_some() {
        let test_url = pg::test_mode_url(target, true)?
            .ok_or_else(|| StoreError::Refused("no schema for test-mode data".to_owned()))?;
        pg::migrate(&test_url)?;
    }
    let mut transaction = client.transaction()?;
    let mut reports = Vec::new();
    for (mode, sqlite) in &mut sources {
        let schema = match mode {
            Mode::Live => live_schema.clone(),
            Mode::Test => format!("{live_schema}_test"),
        };
        transaction.batch_execute(&format!("SET LOCAL search_path TO {schema}"))?;
        let report = copy_one(&mut transaction, sqlite, &schema, |table, rows, done| {
            progress(*mode, table, rows, done)
        })?;
        reports.push((*mode, report));
    }
    transaction.commit()?;
    drop(locks);
    Ok(reports)
}

/// Copies one SQLite database into the schema the transaction's `search_path` names.
fn copy_one(
    transaction: &mut postgres::Transaction<'_>,
    sqlite: &mut rusqlite::Connection,
    schema: &str,
    mut progress: impl FnMut(&str, u64, bool),
) -> Result<CopyReport, StoreError> {
    let tables = tables(sqlite)?;
    // The ledger clock's lock first: an instance writing this schema waits (or makes this copy
    // wait) instead of racing the check below.
    if transaction
        .query_opt(
            "SELECT last_timestamp_ns FROM ledger_meta WHERE singleton = 1 FOR UPDATE",
            &[],
        )?
        .is_none()
    {
        return Err(StoreError::Refused(format!(
            "{schema}.ledger_meta has no clock row: this is not a schema `farthing migrate` made"
        )));
    }
    for table in &tables {
        let rows: i64 = transaction
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])?
            .try_get(0)?;
        // The ledger clock's row is made by the migration; its value comes from the source.
        let made_by_migration = i64::from(table == "ledger_meta");
        if rows > made_by_migration {
            return Err(StoreError::Refused(format!(
                "the target already holds data ({schema}.{table} has {rows} rows): copy into an \
                 empty PostgreSQL database or schema; nothing was copied"
            )));
        }
    }
    let read = sqlite.transaction()?;
    let mut report = CopyReport::default();
    // The clock row stays (an instance waiting for its lock then reads the new value): its
    // value is set from the source's.
    let clock: i64 = read.query_row(
        "SELECT last_timestamp_ns FROM ledger_meta WHERE singleton = 1",
        [],
        |row| row.get(0),
    )?;
    transaction.execute(
        "UPDATE ledger_meta SET last_timestamp_ns = $1 WHERE singleton = 1",
        &[&clock],
    )?;
    progress("ledger_meta", 1, true);
    report.tables.push(("ledger_meta".to_owned(), 1));
    for table in tables.iter().filter(|table| *table != "ledger_meta") {
        let columns = columns(&read, table)?;
        let list = columns.join(", ");
        let types: Vec<Type> = transaction
            .prepare(&format!("SELECT {list} FROM {table}"))?
            .columns()
            .iter()
            .map(|column| column.type_().clone())
            .collect();
        let sink =
            transaction.copy_in(&format!("COPY {table} ({list}) FROM STDIN (FORMAT binary)"))?;
        let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        let mut statement = read.prepare(&format!("SELECT {list} FROM {table}"))?;
        let mut rows = statement.query([])?;
        let mut copied = 0_u64;
        while let Some(row) = rows.next()? {
            let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(columns.len());
            for (index, kind) in types.iter().enumerate() {
                values.push(value(row.get_ref(index)?, kind).map_err(|what| {
                    StoreError::Corrupt(format!(
                        "{table}.{} holds {what}; nothing was copied",
                        columns[index]
                    ))
                })?);
            }
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|value| &**value).collect();
            writer.write(&refs)?;
            copied += 1;
            if copied.is_multiple_of(PROGRESS_EVERY) {
                progress(table, copied, false);
            }
        }
        let written = writer.finish()?;
        if written != copied {
            return Err(StoreError::Corrupt(format!(
                "{table}: {copied} rows read, {written} written; nothing was copied"
            )));
        }
        progress(table, copied, true);
        report.tables.push((table.clone(), copied));
    }
    read.finish()?;
    // Read back: every table holds what was copied.
    for (table, copied) in &report.tables {
        let found: i64 = transaction
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])?
            .try_get(0)?;
        if u64::try_from(found).ok() != Some(*copied) {
            return Err(StoreError::Corrupt(format!(
                "{table}: {copied} rows copied, {found} found; nothing was copied"
            )));
        }
    }
    Ok(report)
}

/// The tables of the SQLite schema (not SQLite's own, not the migrations' record: PostgreSQL
/// keeps its own).
fn tables(connection: &rusqlite::Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name != 'schema_migrations' ORDER BY name",
    )?;
    let names = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(names)
}

fn columns(connection: &rusqlite::Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut statement =
        connection.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
    let names = statement
        .query_map([table], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(names)
}

/// An SQLite value as the PostgreSQL column takes it; what it is, if it does not fit.
fn value(cell: ValueRef<'_>, kind: &Type) -> Result<Box<dyn ToSql + Sync>, String> {
    Ok(match (cell, kind) {
        (ValueRef::Null, _) if *kind == Type::INT8 => Box::new(None::<i64>),
        (ValueRef::Null, _) if *kind == Type::BYTEA => Box::new(None::<Vec<u8>>),
        (ValueRef::Null, _) => Box::new(None::<String>),
        (ValueRef::Integer(value), _) if *kind == Type::INT8 => Box::new(value),
        (ValueRef::Blob(bytes), _) if *kind == Type::BYTEA => Box::new(bytes.to_vec()),
        // SQLite keeps a column's values as written: a sealed secret is text (`fse1:…`) even
        // in a BLOB column (step-up secrets). PostgreSQL's BYTEA takes its bytes, which is
        // what farthing reads there (`sql.rs` unseals bytes that start with the sealed prefix).
        // Any other text in a BLOB column is refused, as before.
        (ValueRef::Text(text), _)
            if *kind == Type::BYTEA && text.starts_with(crate::secrets::PREFIX.as_bytes()) =>
        {
            Box::new(text.to_vec())
        }
        (ValueRef::Text(text), _) if *kind == Type::TEXT => Box::new(
            std::str::from_utf8(text)
                .map_err(|_| "text that is not UTF-8".to_owned())?
                .to_owned(),
        ),
        (other, _) => {
            return Err(format!(
                "a {:?} value where PostgreSQL's column is {kind}",
                other.data_type()
            ))
        }
    })
}
