//! Connections, pragmas and versioned migrations.
//!
//! Every connection runs in WAL mode with `synchronous=FULL`: a commit returns only after the
//! WAL is on stable storage, so an acknowledged write survives power loss (SPEC P4).
//! Migrations are numbered, applied in order, each in its own transaction, and recorded in
//! `schema_migrations`; a database newer than this build is refused rather than guessed at.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::StoreError;

/// Code a migration runs after its SQL, in the same transaction, with the ledger time.
type MigrationCode = fn(&rusqlite::Transaction<'_>, u64) -> Result<(), StoreError>;

/// What a migration does: SQL, then (optionally) code that needs the domain's rules.
struct Step {
    sql: &'static str,
    code: Option<MigrationCode>,
}

const fn sql(sql: &'static str) -> Step {
    Step { sql, code: None }
}

/// `(version, name, step)`, in order. Never edit a released entry: add a new one.
const MIGRATIONS: &[(i64, &str, Step)] = &[
    (
        1,
        "ledger",
        sql(r#"
    -- Ids are 16-byte big-endian blobs (u128); amounts are minor units in INTEGER (i64).
    CREATE TABLE accounts (
        id              BLOB PRIMARY KEY,
        currency        TEXT NOT NULL,
        kind            TEXT NOT NULL,
        merchant_id     BLOB,
        customer_id     BLOB,
        rail            TEXT,
        flags           INTEGER NOT NULL,
        debits_pending  INTEGER NOT NULL DEFAULT 0,
        debits_posted   INTEGER NOT NULL DEFAULT 0,
        credits_pending INTEGER NOT NULL DEFAULT 0,
        credits_posted  INTEGER NOT NULL DEFAULT 0,
        created_at_ns   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX accounts_by_owner ON accounts (merchant_id, customer_id);

    -- Immutable: rows are only ever inserted.
    CREATE TABLE transfers (
        id                BLOB PRIMARY KEY,
        kind              INTEGER NOT NULL,
        debit_account_id  BLOB NOT NULL,
        credit_account_id BLOB NOT NULL,
        currency          TEXT NOT NULL,
        amount            INTEGER NOT NULL,
        pending_id        BLOB,
        timeout_s         INTEGER NOT NULL,
        code              INTEGER NOT NULL,
        reference         BLOB,
        timestamp_ns      INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Deliberately no index by account: with thousands of active accounts every batch would
    -- rewrite a leaf page per account and per index (measured: 3x fewer durable transfers/s,
    -- see BENCHMARKS.md). Statements per customer come from the business tables; `audit`
    -- scans.

    -- Where each hold stands; the hold itself stays unchanged in `transfers`.
    CREATE TABLE pending_transfers (
        id             BLOB PRIMARY KEY,
        state          INTEGER NOT NULL,
        expires_at_ns  INTEGER,
        resolved_at_ns INTEGER
    ) WITHOUT ROWID;
    -- Exactly the open holds that have a timeout, in expiry order: expiry reads what expires,
    -- not everything open. (A table rather than a partial index: a partial index makes SQLite
    -- re-prepare statements that bind parameters on that table, at every execution.)
    CREATE TABLE hold_expiries (
        expires_at_ns INTEGER NOT NULL,
        id            BLOB NOT NULL,
        PRIMARY KEY (expires_at_ns, id)
    ) WITHOUT ROWID;

    CREATE TABLE ledger_meta (
        singleton         INTEGER PRIMARY KEY CHECK (singleton = 1),
        last_timestamp_ns INTEGER NOT NULL
    );
    INSERT INTO ledger_meta (singleton, last_timestamp_ns) VALUES (1, 0);
    "#),
    ),
    (2, "business", sql(crate::business::SCHEMA)),
    (3, "rail_payments", sql(crate::rails::SCHEMA)),
    (4, "telegram_bots", sql(crate::telegram::SCHEMA)),
    (
        5,
        "stars_links_and_rail_refunds",
        sql(crate::telegram::INVOICE_LINK_SCHEMA),
    ),
    (6, "lightning", sql(crate::lightning::SCHEMA)),
    (7, "subscriptions", sql(crate::subscriptions::SCHEMA)),
    (
        8,
        "telegram_poll_offsets",
        sql(crate::telegram::POLL_OFFSET_SCHEMA),
    ),
    (
        9,
        "stars_reconciliation",
        sql(crate::telegram::RECONCILE_SCHEMA),
    ),
    (
        10,
        "telegram_invoice_messages",
        sql(crate::bot_messages::SCHEMA),
    ),
    (11, "bot_accounts", sql(crate::bot::SCHEMA)),
    (12, "dashboard_owners", sql(crate::dashboard::SCHEMA)),
    (13, "card_providers", sql(crate::cards::SCHEMA)),
    (
        14,
        "dashboard_lnurl_owners",
        sql(crate::dashboard::LNURL_SCHEMA),
    ),
    (
        15,
        "per_merchant_accounts",
        Step {
            sql: crate::per_merchant::SCHEMA,
            code: Some(crate::per_merchant::move_shared_balances),
        },
    ),
    (
        16,
        "payment_instructions",
        sql(crate::business::INSTRUCTIONS_SCHEMA),
    ),
    (17, "audit_log", sql(crate::admin_log::SCHEMA)),
    (
        18,
        "metadata_and_return_url",
        sql(crate::business::CHARGE_REFUND_METADATA_SCHEMA),
    ),
    (19, "customer_statements", sql(crate::statements::SCHEMA)),
    (20, "step_up_totp", sql(crate::step_up::SCHEMA)),
    (21, "risk_rules", sql(crate::risk::SCHEMA)),
    (22, "ton", sql(crate::ton::SCHEMA)),
    (
        23,
        "refund_status",
        sql(crate::business::REFUND_STATUS_SCHEMA),
    ),
    (24, "ton_refunds", sql(crate::ton::REFUNDS_SCHEMA)),
];

/// Every migration's number, in order (PostgreSQL's forms have the same: `pg_schema.rs`).
#[cfg(test)]
pub(crate) fn numbers() -> Vec<i64> {
    MIGRATIONS.iter().map(|(version, _, _)| *version).collect()
}

/// A migration's name.
pub(crate) fn name(version: i64) -> &'static str {
    MIGRATIONS
        .iter()
        .find(|(number, _, _)| *number == version)
        .map_or("unknown", |(_, name, _)| name)
}

/// The newest schema this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

fn apply_pragmas(connection: &Connection) -> Result<(), StoreError> {
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "could not switch the database to WAL mode (got {mode})"
        )));
    }
    connection.execute_batch(
        "PRAGMA synchronous=FULL;
         PRAGMA foreign_keys=OFF;
         PRAGMA temp_store=MEMORY;
         PRAGMA cache_size=-65536;",
    )?;
    Ok(())
}

/// Makes the database file readable and writable by its owner only (`0600`): it holds bot
/// tokens, webhook secrets and node keys. A new file is created that way; an existing one (and
/// its `-wal`/`-shm`, which SQLite creates with the database's mode) is tightened.
pub(crate) fn private_file(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let failed = |what: &Path, error: std::io::Error| {
            StoreError::Corrupt(format!("cannot restrict {}: {error}", what.display()))
        };
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| failed(path, error))?;
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::metadata(&file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .map_err(|error| failed(&file, error))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The writer's connection. Automatic checkpoints are off: a background thread does them, so
/// that no commit pays for copying the WAL.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| {
            StoreError::Corrupt(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    private_file(path)?;
    let connection = Connection::open(path)?;
    apply_pragmas(&connection)?;
    connection.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
    connection.set_prepared_statement_cache_capacity(256);
    Ok(connection)
}

/// A connection for reads (and the checkpointer).
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    apply_pragmas(&connection)?;
    connection.execute_batch("PRAGMA query_only=ON;")?;
    Ok(connection)
}

/// The background checkpointer's connection (it writes pages of the database file, so it is not
/// `query_only`).
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    apply_pragmas(&connection)?;
    Ok(connection)
}

/// Opens an existing database for inspection, refusing a missing file or an unknown schema.
pub(crate) fn open_existing(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let connection = open_reader(path)?;
    let version = current_version(&connection)?;
    if version > latest_version() {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: latest_version(),
        });
    }
    if version < latest_version() {
        return Err(StoreError::Corrupt(format!(
            "schema version {version} is older than {}; open it once with `farthing serve` to migrate",
            latest_version()
        )));
    }
    Ok(connection)
}

fn current_version(connection: &Connection) -> Result<i64, StoreError> {
    let has_table: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    Ok(connection.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?)
}

/// Applies every migration the database lacks.
pub(crate) fn migrate(connection: &mut Connection, now_ns: u64) -> Result<(), StoreError> {
    migrate_to(connection, latest_version(), now_ns)
}

/// Applies the migrations the database lacks, up to `target` (tests build old schemas).
pub(crate) fn migrate_to(
    connection: &mut Connection,
    target: i64,
    now_ns: u64,
) -> Result<(), StoreError> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        )",
    )?;
    let version = current_version(connection)?;
    if version > latest_version() {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: latest_version(),
        });
    }
    let pending: Vec<_> = MIGRATIONS
        .iter()
        .filter(|(n, _, _)| *n > version && *n <= target)
        .collect();
    for (number, name, step) in &pending {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute_batch(step.sql)?;
        if let Some(code) = step.code {
            code(&transaction, now_ns)?;
        }
        transaction.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            rusqlite::params![number, name],
        )?;
        transaction.commit()?;
        tracing::debug!(version = number, name, "applied migration");
    }
    if let (Some(first), Some(last)) = (pending.first(), pending.last()) {
        tracing::info!(
            from = first.0 - 1,
            to = last.0,
            count = pending.len(),
            "database schema migrated"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_idempotent() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].0 < pair[1].0);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut connection = open_writer(&path).unwrap();
        migrate(&mut connection, 1).unwrap();
        migrate(&mut connection, 1).unwrap();
        assert_eq!(current_version(&connection).unwrap(), latest_version());
        let mode: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "synchronous must be FULL");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut connection = open_writer(&path).unwrap();
        migrate(&mut connection, 1).unwrap();
        connection
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?1, 'future')",
                [latest_version() + 1],
            )
            .unwrap();
        assert!(matches!(
            migrate(&mut connection, 1),
            Err(StoreError::SchemaTooNew { .. })
        ));
        assert!(matches!(
            open_existing(&path),
            Err(StoreError::SchemaTooNew { .. })
        ));
        assert!(matches!(
            open_existing(&dir.path().join("none.db")),
            Err(StoreError::Missing(_))
        ));
    }
}
