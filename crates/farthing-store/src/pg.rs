//! The ledger on PostgreSQL, shared by several farthing instances.
//!
//! SQLite's store (`writer.rs`) keeps one writer per database and trusts its in-memory copy of
//! every balance. Here several processes write the same database, so nothing is trusted from
//! memory: each instance still runs one writer thread that takes every group waiting in its
//! queue (group commit: one PostgreSQL transaction, one durable `COMMIT`, many callers), but each
//! batch starts by locking the ledger clock row (`ledger_meta … FOR UPDATE`), then reads every
//! account and transfer it refers to **inside that transaction**, applies the groups with the
//! domain's rules (`farthing_core::ledger::apply_group`, the same as on SQLite) and writes the
//! changes with array statements (`UNNEST`). The clock lock orders the batches of all instances
//! one after another: two instances can never spend one balance twice (SPEC L4), ids stay unique
//! (primary keys), and the ledger clock keeps handing out increasing times. An instance that
//! dies mid-batch leaves nothing: its transaction is rolled back and its lock released by the
//! server, and its callers never got an answer.
//!
//! What a lock serialises is one batch (thousands of transfers), not one transfer: the cost of
//! the shared database is one round of reads and one commit per batch, measured in
//! `BENCHMARKS.md`.
//!
//! Scope: the ledger (accounts, transfers, holds and their expiry, the clock, customers'
//! statements), every migration (`pg_schema.rs`: the whole schema), the ledger's audit, and jobs
//! ([`PgLedger::execute`]): business writes run in the batch's transaction, each in a savepoint,
//! through `sql::Db`, as every business module is written (so `farthing serve` runs whole on
//! PostgreSQL). Reads outside the writer take connections of their own (`Readers`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use farthing_core::ledger::{
    apply_group, expire_pending, AccountState, Group, GroupError, GroupOutcome, StoredTransfer,
    TransferKind,
};
use farthing_core::{AccountId, CustomerId, MerchantId, Rail, TransferId};
use postgres::types::Type;
use postgres::{Client, Statement};

use crate::audit::{AuditReport, Tally};
use crate::batch::BatchState;
use crate::codec;
use crate::job::Tx;
use crate::pg_pipe::{JobEnd, Pipe};
use crate::secrets::Secrets;
use crate::sql::{params, Columns, Db, Link, Session, StatementCache};
use crate::writer::Work;
use crate::{pg_schema, pg_tls};
use crate::{BatchStats, JobTicket, Reader, Request, StoreError, StoreOptions, Ticket, WriteError};

/// The advisory lock taken while migrating, so that instances starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6661_7274_6869_6e67; // "farthing"

/// The `application_name` of each instance's writer session.
pub const WRITER_NAME: &str = "farthing-ledger-writer";

/// Most holds expired in one batch; the rest wait for the next one.
const MAX_EXPIRED_PER_BATCH: i64 = 4_096;
/// How many times a batch is tried again after a conflict the server reports (deadlock,
/// serialization failure, a unique key another writer took), a lost connection or a COMMIT
/// that did not land, before its callers are told (the pauses add up to about a second).
const CONFLICT_RETRIES: usize = 5;
/// The first pause before a batch is tried again (doubling with each attempt).
const RETRY_PAUSE: Duration = Duration::from_millis(25);
/// Pause after a failed transaction before the writer takes more work.
const FAILURE_BACKOFF: Duration = Duration::from_millis(50);
/// Read connections a ledger opens at most (on demand, kept open): reads outside the writer run
/// on as many at once, so a slow read (a long list) does not hold up every other read of the
/// instance, as it did through one connection.
const READ_CONNECTIONS: usize = 4;

/// The newest schema version the PostgreSQL backend knows.
pub fn schema_version() -> i64 {
    pg_schema::MIGRATIONS
        .last()
        .map_or(0, |(version, _)| *version)
}

impl Columns for postgres::Row {
    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(index)?)
    }
    /// Any integer column (a literal or an expression may be narrower than BIGINT), or a
    /// boolean as 0 or 1, as SQLite gives it.
    fn int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        let ty = self
            .columns()
            .get(index)
            .map(|column| column.type_().clone());
        Ok(match ty {
            Some(Type::INT4) => self.try_get::<_, Option<i32>>(index)?.map(i64::from),
            Some(Type::INT2) => self.try_get::<_, Option<i16>>(index)?.map(i64::from),
            Some(Type::BOOL) => self.try_get::<_, Option<bool>>(index)?.map(i64::from),
            _ => self.try_get(index)?,
        })
    }
    fn text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(index)?)
    }
}

/// Connects to `url` (a `postgres://` URL; a Unix socket directory as `?host=/path`).
///
/// Every session gets the settings the ledger relies on, whatever the server's or role's
/// defaults: `synchronous_commit = on` (an answered write is on disk), a transaction left idle
/// for 10 s is ended by the server (`idle_in_transaction_session_timeout`), so a stalled
/// instance (a paused VM, a partition) cannot hold the ledger's clock lock for long, and
/// statements are planned for their actual ids (`plan_cache_mode`). Unless
/// the URL says otherwise, connecting gives up after 10 s and TCP keepalives start after 30 s.
pub(crate) fn connect(url: &str) -> Result<Client, StoreError> {
    connect_as(url, "farthing")
}

/// [`connect`], naming the session (`application_name`, seen in `pg_stat_activity`) unless
/// the URL names it.
pub(crate) fn connect_as(url: &str, name: &str) -> Result<Client, StoreError> {
    let (config, tls) = config_for(url, name)?;
    let mut client = postgres::Config::from(config).connect(tls)?;
    client.batch_execute(SESSION_SETTINGS)?;
    Ok(client)
}

/// [`connect_as`], pipelined: the writer's connection (`pg_pipe.rs`).
fn connect_pipe(url: &str, name: &str) -> Result<Pipe, StoreError> {
    let (config, tls) = config_for(url, name)?;
    let mut pipe = Pipe::connect(&config, tls)?;
    pipe.batch_execute(SESSION_SETTINGS)?;
    Ok(pipe)
}

/// The settings every session gets (see [`connect`]).
// Custom plans: the ledger's statements look rows up by arrays of ids, and a generic plan
// made while a table was small (a new database) kept scanning it as it grew — measured:
// 183 single-transfer batches/s with generic plans against 10 000 accounts, 620 with custom
// ones (BENCHMARKS.md). Planning a short statement costs far less than a wrong plan.
const SESSION_SETTINGS: &str = "SET synchronous_commit = on; \
     SET idle_in_transaction_session_timeout = '10s'; SET plan_cache_mode = force_custom_plan";

/// How to connect to `url` as `name` (see [`connect`]), and with which TLS connector.
fn config_for(
    url: &str,
    name: &str,
) -> Result<
    (
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    ),
    StoreError,
> {
    let (url, tls) = pg_tls::split(url)?;
    let mut config: tokio_postgres::Config = url.parse().map_err(|error: postgres::Error| {
        StoreError::BadUrl(format!(
            "the PostgreSQL URL cannot be used: {}",
            describe(&error)
        ))
    })?;
    if config.get_application_name().is_none() {
        config.application_name(name);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(30));
    }
    config.ssl_mode(if only_unix_sockets(&config) {
        postgres::config::SslMode::Disable
    } else {
        tls.ssl_mode()
    });
    Ok((config, tls.connector()?))
}

/// Whether every connection `config` can make goes to a Unix socket: the only case without
/// TLS whatever the URL asks (the server offers none there; libpq ignores sslmode too). A
/// `hostaddr` is TCP whatever the hosts say.
fn only_unix_sockets(config: &tokio_postgres::Config) -> bool {
    !config.get_hosts().is_empty()
        && config.get_hostaddrs().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|host| matches!(host, postgres::config::Host::Unix(_)))
}

/// What a PostgreSQL error says, in full: its own text says little ("db error"); the server's
/// message, detail and SQLSTATE (or the I/O cause) are what an operator needs. Never includes
/// the connection's password (the server does not repeat it, nor does the client).
pub(crate) fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let text = match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    };
    match pg_tls::hint(error) {
        Some(hint) => format!("{text} ({hint})"),
        None => text,
    }
}

/// A schema made by a newer farthing is refused, never guessed at.
fn refuse_newer(found: i64) -> Result<(), StoreError> {
    if found > schema_version() {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: schema_version(),
        });
    }
    Ok(())
}

fn current_version(client: &mut Client) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)?)
}

/// Applies every migration the database at `url` lacks (in one transaction, under an advisory
/// lock so instances starting together do it once) and returns the version it is at. Refuses a
/// schema newer than this build.
pub fn migrate(url: &str) -> Result<i64, StoreError> {
    off_runtime(|| {
        let mut client = connect(url)?;
        migrate_client(&mut client)
    })
}

fn migrate_client(client: &mut Client) -> Result<i64, StoreError> {
    // Up to date: nothing to lock or create (a role without CREATE rights can run farthing on
    // a schema `farthing migrate` prepared with another).
    let version = current_version(client)?;
    refuse_newer(version)?;
    if version == schema_version() {
        return Ok(version);
    }
    // One transaction under an advisory lock: instances starting together wait for each other
    // (even `CREATE TABLE IF NOT EXISTS` races between sessions), and DDL in PostgreSQL is
    // transactional, so a failed migration leaves the schema as it was.
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )?;
    let found: i64 = transaction
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)?;
    refuse_newer(found)?;
    for (number, parts) in pg_schema::MIGRATIONS.iter().filter(|(n, _)| *n > found) {
        let name = crate::schema::name(*number);
        transaction.batch_execute(&pg_schema::text(parts))?;
        transaction.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[number, &name],
        )?;
        tracing::info!(version = number, name, "applying PostgreSQL migration");
    }
    transaction.commit()?;
    Ok(schema_version())
}

/// Connects to an existing database of exactly this build's schema (for audits and reads).
fn open_existing(url: &str) -> Result<Client, StoreError> {
    let mut client = connect(url)?;
    let version = current_version(&mut client)?;
    refuse_newer(version)?;
    if version < schema_version() {
        return Err(StoreError::Corrupt(format!(
            "PostgreSQL schema version {version} is older than {}; run `farthing migrate --database …` first",
            schema_version()
        )));
    }
    Ok(client)
}

const ACCOUNT_SELECT: &str = "SELECT id, currency, kind, merchant_id, customer_id, rail, flags, \
     debits_pending, debits_posted, credits_pending, credits_posted, created_at_ns FROM accounts";
const TRANSFER_SELECT: &str = "SELECT t.id, t.kind, t.debit_account_id, t.credit_account_id, \
     t.currency, t.amount, t.pending_id, t.timeout_s, t.code, t.reference, t.timestamp_ns, \
     p.state FROM transfers t LEFT JOIN pending_transfers p ON p.id = t.id";

/// The writer's statements, prepared once per connection.
struct Statements {
    lock_clock: Statement,
    store_clock: Statement,
    due_holds: Statement,
    any_due: Statement,
    load_transfers: Statement,
    load_accounts: Statement,
    insert_accounts: Statement,
    update_accounts: Statement,
    insert_transfers: Statement,
    insert_pending: Statement,
    insert_expiries: Statement,
    resolve_pending: Statement,
    drop_expiries: Statement,
    insert_entries: Statement,
    load_heads: Statement,
    /// Jobs' statements (`sql.rs`), prepared on first use.
    cache: StatementCache,
}

impl Statements {
    fn prepare(client: &mut Pipe) -> Result<Statements, StoreError> {
        Ok(Statements {
            // The transaction id comes with the lock (locking a row assigns one anyway): if the
            // COMMIT's answer is lost, it tells whether the batch is stored.
            // And the schema's version: an instance that kept running while a newer farthing
            // migrated the database stops writing (it would not keep the new tables up).
            lock_clock: client.prepare(
                "SELECT last_timestamp_ns, pg_current_xact_id()::text, \
                 (SELECT MAX(version) FROM schema_migrations) FROM ledger_meta \
                 WHERE singleton = 1 FOR UPDATE",
            )?,
            store_clock: client
                .prepare("UPDATE ledger_meta SET last_timestamp_ns = $1 WHERE singleton = 1")?,
            due_holds: client.prepare(
                "SELECT id FROM hold_expiries WHERE expires_at_ns <= $1 ORDER BY expires_at_ns, id LIMIT $2",
            )?,
            any_due: client.prepare(
                "SELECT EXISTS (SELECT 1 FROM hold_expiries WHERE expires_at_ns <= $1)",
            )?,
            load_transfers: client.prepare(&format!("{TRANSFER_SELECT} WHERE t.id = ANY($1)"))?,
            // With each account's newest statement entry (`statements.rs`).
            load_accounts: client.prepare(&format!(
                "SELECT {}, last_entry_ns FROM accounts WHERE id = ANY($1)",
                codec::ACCOUNT_COLUMNS
            ))?,
            insert_accounts: client.prepare(
                "INSERT INTO accounts (id, currency, kind, merchant_id, customer_id, rail, flags, \
                 debits_pending, debits_posted, credits_pending, credits_posted, created_at_ns, \
                 last_entry_ns) \
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::bytea[], \
                 $5::bytea[], $6::text[], $7::int8[], $8::bytea[], $9::bytea[], $10::bytea[], \
                 $11::bytea[], $12::int8[], $13::int8[])",
            )?,
            update_accounts: client.prepare(
                "UPDATE accounts a SET debits_pending = u.dp, debits_posted = u.dpo, \
                 credits_pending = u.cp, credits_posted = u.cpo, last_entry_ns = u.last \
                 FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], \
                 $6::int8[]) AS u(id, dp, dpo, cp, cpo, last) WHERE a.id = u.id",
            )?,
            insert_transfers: client.prepare(
                "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, currency, \
                 amount, pending_id, timeout_s, code, reference, timestamp_ns) \
                 SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::bytea[], $4::bytea[], \
                 $5::text[], $6::int8[], $7::bytea[], $8::int8[], $9::int8[], $10::bytea[], \
                 $11::int8[])",
            )?,
            insert_pending: client.prepare(
                "INSERT INTO pending_transfers (id, state, expires_at_ns) \
                 SELECT id, 0, expires FROM UNNEST($1::bytea[], $2::int8[]) AS u(id, expires)",
            )?,
            insert_expiries: client.prepare(
                "INSERT INTO hold_expiries (expires_at_ns, id) \
                 SELECT * FROM UNNEST($1::int8[], $2::bytea[])",
            )?,
            resolve_pending: client.prepare(
                "UPDATE pending_transfers p SET state = u.state, resolved_at_ns = u.at \
                 FROM UNNEST($1::bytea[], $2::int8[], $3::int8[]) AS u(id, state, at) \
                 WHERE p.id = u.id AND p.state = 0",
            )?,
            drop_expiries: client.prepare("DELETE FROM hold_expiries WHERE id = ANY($1)")?,
            insert_entries: client.prepare(
                "INSERT INTO customer_entries (timestamp_ns, account_id, transfer_id, amount, \
                 balance_after, code, reference, prev_ns) \
                 SELECT * FROM UNNEST($1::int8[], $2::bytea[], $3::bytea[], $4::int8[], \
                 $5::int8[], $6::int8[], $7::bytea[], $8::int8[])",
            )?,
            load_heads: client
                .prepare("SELECT id, last_entry_ns FROM accounts WHERE id = ANY($1)")?,
            cache: StatementCache::new(),
        })
    }
}

/// A writer's session: connected, the schema checked (and migrated when behind: after a
/// reconnect this also refuses a schema another instance made newer), its statements prepared.
fn writer_session(url: &str) -> Result<(Pipe, Statements), StoreError> {
    // Migrated over a synchronous client of its own (the migrations are written for it).
    migrate_client(&mut connect_as(url, "farthing-migrate")?)?;
    let mut pipe = connect_pipe(url, WRITER_NAME)?;
    let statements = Statements::prepare(&mut pipe)?;
    Ok((pipe, statements))
}

struct Inner {
    url: String,
    sender: SyncSender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Connections for reads outside the writer.
    readers: Readers,
    /// The keys that seal and unseal stored secrets.
    secrets: Arc<Secrets>,
}

/// The ledger on a PostgreSQL database that other farthing instances may share. Cheap to
/// clone; all clones share one writer thread (one connection). Blocking: call it from threads,
/// not from async code.
#[derive(Clone)]
pub struct PgLedger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger").finish_non_exhaustive()
    }
}

impl PgLedger {
    /// Connects to `url`, applies the migrations it lacks and starts the writer.
    /// `options.checkpoint_interval` does not apply here; `options.secrets` seal and unseal the
    /// stored secrets jobs and reads write and read (`sql.rs`), as on SQLite.
    pub fn open(url: &str, options: StoreOptions) -> Result<PgLedger, StoreError> {
        let (sender, receiver) = mpsc::sync_channel(options.queue_capacity.max(1));
        let secrets = Arc::new(options.secrets.clone());
        let mut writer = Writer {
            url: url.to_owned(),
            connection: Some(off_runtime(|| writer_session(url))?),
            options,
            secrets: Arc::clone(&secrets),
        };
        let handle = std::thread::Builder::new()
            .name("farthing-pg-writer".to_owned())
            .spawn(move || writer.run(&receiver))
            .map_err(StoreError::Thread)?;
        Ok(PgLedger {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                sender,
                writer: Mutex::new(Some(handle)),
                readers: Readers::default(),
                secrets,
            }),
        })
    }

    /// Queues a group; blocks while the queue is full (back-pressure).
    pub fn submit(&self, group: Group) -> Result<Ticket, WriteError> {
        crate::queue_write(&self.inner.sender, group, true)
    }

    /// This instance's writer queue.
    pub(crate) fn sender(&self) -> &SyncSender<Request> {
        &self.inner.sender
    }

    /// The database's URL.
    pub(crate) fn url(&self) -> &str {
        &self.inner.url
    }

    /// The database, for messages: its URL without the password.
    pub fn location(&self) -> String {
        crate::url::PostgresUrl::new(self.inner.url.clone()).redacted()
    }

    /// Queues a group, or fails with [`WriteError::Busy`] at once when the queue is full.
    pub fn try_submit(&self, group: Group) -> Result<Ticket, WriteError> {
        crate::queue_write(&self.inner.sender, group, false)
    }

    /// Submits a group and waits until it is durable or refused.
    pub fn write(&self, group: Group) -> Result<GroupOutcome, WriteError> {
        self.submit(group)?.wait()
    }

    /// Queues a job (see [`Tx`]); blocks while the queue is full. The job runs inside one of
    /// this instance's batches, under the ledger clock lock, so jobs of every instance run one
    /// batch after another, as on SQLite's single writer. If the batch cannot commit, the job
    /// is answered with an error and nothing of it is stored: jobs are not run twice.
    pub fn execute<T, E, F>(&self, work: F) -> Result<JobTicket<T, E>, WriteError>
    where
        F: FnOnce(&mut Tx<'_, '_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        crate::queue_job(&self.inner.sender, work)
    }

    /// Reads committed data (see [`Reader`]) on this instance's read connection. Each statement
    /// sees what was committed when it started.
    pub fn read<T: Send>(
        &self,
        work: impl FnOnce(&Reader<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        let secrets = Arc::clone(&self.inner.secrets);
        self.with_client(|client, cache| {
            let session: RefCell<Session<'_, Client>> = RefCell::new(Session {
                client,
                cache,
                secrets,
                failed: false,
            });
            let reader = Reader {
                db: Db::Postgres(&session),
            };
            work(&reader)
        })
    }

    /// Runs `work` on this instance's read connection (off the async runtime: see
    /// [`off_runtime`]).
    fn with_client<T: Send>(
        &self,
        work: impl FnOnce(&mut Client, &mut StatementCache) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| self.with_client_here(work))
    }

    fn with_client_here<T>(
        &self,
        work: impl FnOnce(&mut Client, &mut StatementCache) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lease = self.inner.readers.take(&self.inner.url)?;
        let Some((client, cache)) = lease.connection.as_mut() else {
            return Err(StoreError::Corrupt("no read connection".to_owned()));
        };
        let result = work(client, cache);
        // A PostgreSQL error may leave the session unusable: it is closed, and a later read
        // opens a new one. So is one that a panic left mid-statement (the lease is not kept).
        lease.keep = !matches!(result, Err(StoreError::Postgres(_)));
        result
    }

    /// An account with its committed totals.
    pub fn account(&self, id: AccountId) -> Result<Option<AccountState>, StoreError> {
        self.read(|reader| codec::load_account(reader.db(), id))
    }

    /// A committed transfer.
    pub fn transfer(&self, id: TransferId) -> Result<Option<StoredTransfer>, StoreError> {
        self.read(|reader| codec::load_transfer(reader.db(), id))
    }

    /// Checks every ledger invariant on the committed data (see [`audit`]).
    pub fn audit(&self) -> Result<AuditReport, StoreError> {
        audit(&self.inner.url)
    }

    /// Finishes every queued write, commits, and stops the writer. Writes submitted afterwards
    /// fail with [`WriteError::Closed`]. Idempotent.
    pub fn shutdown(&self) {
        crate::stop_writer(&self.inner.sender, &self.inner.writer);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        crate::stop_writer(&self.sender, &self.writer);
        // Closing the synchronous client blocks on its own runtime: not on an async thread.
        let idle = std::mem::take(
            &mut self
                .readers
                .state
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .idle,
        );
        off_runtime(move || drop(idle));
    }
}

/// An instance's read connections: opened when a read finds none idle (up to
/// [`READ_CONNECTIONS`]; beyond that a read waits for one), kept open with the statements
/// prepared on them.
#[derive(Default)]
struct Readers {
    state: Mutex<ReadersState>,
    /// Signalled when a connection is given back or closed.
    freed: std::sync::Condvar,
}

#[derive(Default)]
struct ReadersState {
    idle: Vec<(Client, StatementCache)>,
    /// Connections open or being opened, idle or in use.
    open: usize,
}

/// A read connection in use; given back when dropped (closed unless `keep`).
struct Lease<'r> {
    readers: &'r Readers,
    connection: Option<(Client, StatementCache)>,
    keep: bool,
}

impl Readers {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadersState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection, a new one, or the first one given back.
    fn take(&self, url: &str) -> Result<Lease<'_>, StoreError> {
        let mut state = self.lock();
        loop {
            if let Some(connection) = state.idle.pop() {
                if connection.0.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(self.lease(Some(connection)));
            }
            if state.open < READ_CONNECTIONS {
                state.open += 1;
                drop(state);
                // Counted as open before it is: a failed connect gives its place back.
                let mut lease = self.lease(None);
                lease.connection = Some((connect(url)?, StatementCache::new()));
                return Ok(lease);
            }
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn lease(&self, connection: Option<(Client, StatementCache)>) -> Lease<'_> {
        Lease {
            readers: self,
            connection,
            keep: false,
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let connection = self.connection.take();
        let closed = {
            let mut state = self.readers.lock();
            match connection {
                Some(connection) if self.keep => {
                    state.idle.push(connection);
                    None
                }
                other => {
                    state.open -= 1;
                    other
                }
            }
        };
        self.readers.freed.notify_one();
        // Closed outside the lock (this runs off the async runtime, see `with_client`).
        drop(closed);
    }
}

/// Runs `work` where the synchronous PostgreSQL client may block: here, or, when called on a
/// thread that runs async tasks (the client drives its connection on a runtime of its own, and
/// a runtime cannot be entered from inside another), on a short-lived thread of its own.
///
/// On a multi-threaded runtime (the server's) it runs here, in `block_in_place`: the worker
/// hands its other tasks to another thread while this one blocks, and the runtime's context is
/// left, so the client may drive its own. That costs no new thread per call, and, unlike
/// waiting for one, does not stall the worker's other tasks meanwhile.
pub(crate) fn off_runtime<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return work();
    };
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(work);
    }
    std::thread::scope(|scope| scope.spawn(work).join())
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

struct Writer {
    url: String,
    /// The connection and its statements; `None` after a connection failure until the next
    /// batch reconnects.
    connection: Option<(Pipe, Statements)>,
    options: StoreOptions,
    /// The keys jobs seal and unseal stored secrets with.
    secrets: Arc<Secrets>,
}

/// What one committed batch answers.
struct Committed {
    results: Vec<Result<GroupOutcome, GroupError>>,
    expired: usize,
    commit_time: Duration,
}

/// Why a batch did not commit (or might not have).
enum Failure {
    /// Before `COMMIT`: the transaction is rolled back, nothing was written.
    Before(StoreError),
    /// `COMMIT` itself failed (its answer was lost with the connection): the batch may or may
    /// not be stored. `xid` is its transaction id, which tells which once a connection can
    /// ask the server (`pg_xact_status`).
    During {
        error: StoreError,
        committed: Box<Committed>,
        xid: String,
    },
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Before(error)
    }
}

impl From<postgres::Error> for Failure {
    fn from(error: postgres::Error) -> Self {
        Failure::Before(error.into())
    }
}

/// The session is gone: closed under the client, or ended by the server (an operator's
/// `pg_terminate_backend`, a shutdown or restart: SQLSTATE class 57P, or a connection
/// exception, class 08).
fn connection_lost(error: &postgres::Error) -> bool {
    // Without a SQLSTATE, an error is the client's: the connection failed (refused during a
    // restart), broke (I/O) or closed.
    error.is_closed()
        || error.code().is_none()
            && std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>())
        || error.code().is_some_and(|code| {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P")
        })
}

/// Worth trying the batch again at once: a conflict between writers the server reports
/// (deadlock, serialization failure, a unique key another writer took), or a connection that
/// was closed (a server restart, a terminated backend) before anything was committed.
fn is_retryable(error: &StoreError) -> bool {
    let StoreError::Postgres(error) = error else {
        return false;
    };
    connection_lost(error)
        || error.code().is_some_and(|code| {
            [
                postgres::error::SqlState::T_R_SERIALIZATION_FAILURE,
                postgres::error::SqlState::T_R_DEADLOCK_DETECTED,
                postgres::error::SqlState::UNIQUE_VIOLATION,
            ]
            .contains(code)
        })
}

impl Writer {
    fn run(&mut self, receiver: &Receiver<Request>) {
        loop {
            let first = match receiver.recv_timeout(self.options.expiry_poll_interval) {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let (work, mut shutdown) =
                crate::writer::take_batch(first, receiver, self.options.max_batch_transfers);
            if !work.is_empty() || self.expiry_due() {
                let late = self.process(work, shutdown.is_none().then_some(receiver));
                shutdown = shutdown.or(late);
            }
            if let Some(done) = shutdown {
                let _ = done.send(());
                return;
            }
        }
    }

    /// Whether any hold (of any instance) has expired; checked when the queue is idle.
    fn expiry_due(&mut self) -> bool {
        let now_ns = (self.options.clock)();
        let Ok(now) = codec::sql_amount(now_ns) else {
            return false;
        };
        let Ok((client, statements)) = self.connection() else {
            return false;
        };
        client
            .query_one(&statements.any_due, &[&now])
            .and_then(|row| row.try_get::<_, bool>(0))
            .unwrap_or(false)
    }

    fn connection(&mut self) -> Result<&mut (Pipe, Statements), StoreError> {
        if self
            .connection
            .as_ref()
            .is_none_or(|(client, _)| client.is_closed())
        {
            self.connection = Some(writer_session(&self.url)?);
        }
        self.connection
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("no connection".to_owned()))
    }

    /// Commits `work` in one transaction, with what else arrives by the time it holds the clock
    /// lock (taken from `receiver`, if given); a shutdown request taken so is returned.
    fn process(
        &mut self,
        mut work: Vec<Work>,
        receiver: Option<&Receiver<Request>>,
    ) -> Option<mpsc::Sender<()>> {
        let started = Instant::now();
        let secrets = Arc::clone(&self.secrets);
        let max = self.options.max_batch_transfers;
        let mut shutdown = None;
        // Group commit across instances: while this writer waits for the lock another
        // instance's batch holds, requests keep arriving; they join this batch rather than
        // wait for the next one (the lock is held by then, so they cost no wait of their own).
        let mut top_up = |work: &mut Vec<Work>| {
            let (Some(receiver), None) = (receiver, &shutdown) else {
                return;
            };
            let room = max.saturating_sub(crate::writer::weight(work));
            let (more, done) = crate::writer::take_batch(None, receiver, room);
            work.extend(more);
            shutdown = done;
        };
        let mut attempt = 0;
        let outcome: Result<Committed, WriteError> = loop {
            let now_ns = (self.options.clock)();
            let result = match self.connection() {
                Ok((client, statements)) => {
                    apply_batch(client, statements, &secrets, &mut work, &mut top_up, now_ns)
                }
                Err(error) => Err(Failure::Before(error)),
            };
            match result {
                Ok(committed) => break Ok(committed),
                Err(Failure::Before(error)) => {
                    if matches!(&error, StoreError::Postgres(e) if connection_lost(e)) {
                        self.connection = None;
                    }
                    // Nothing was committed: end the transaction (a connection that cannot is
                    // opened anew).
                    if let Some((pipe, _)) = self.connection.as_mut() {
                        pipe.clear();
                        if pipe.batch_execute("ROLLBACK").is_err() {
                            self.connection = None;
                        }
                    }
                    if !is_retryable(&error) || attempt >= CONFLICT_RETRIES {
                        // The connection may be broken in a way not seen yet: open a new one
                        // for the next batch.
                        self.connection = None;
                        tracing::error!(%error, items = work.len(), "PostgreSQL ledger batch failed; rolled back");
                        break Err(WriteError::Failed(error.to_string()));
                    }
                    fail_jobs(&mut work, &error.to_string());
                    attempt += 1;
                    tracing::debug!(%error, attempt, "PostgreSQL batch not committed; trying again");
                }
                Err(Failure::During {
                    error,
                    committed,
                    xid,
                }) => {
                    self.connection = None;
                    match self.outcome_of(&xid) {
                        Ok(true) => {
                            tracing::warn!(%error, "the COMMIT's answer was lost, but the batch is stored");
                            break Ok(*committed);
                        }
                        // Aborted, finally: nothing is stored, the batch can run again.
                        Ok(false) if attempt < CONFLICT_RETRIES => {
                            fail_jobs(&mut work, &error.to_string());
                            attempt += 1;
                            tracing::warn!(%error, "the COMMIT failed and the batch is not stored; trying again");
                        }
                        Ok(false) => break Err(WriteError::Failed(error.to_string())),
                        Err(check) => {
                            tracing::error!(%error, %check, "the COMMIT's outcome is unknown");
                            break Err(WriteError::Unknown(error.to_string()));
                        }
                    }
                }
            }
            // Before trying again: a server that is restarting needs a moment.
            std::thread::sleep(RETRY_PAUSE * (1 << attempt.min(4)));
        };
        BatchStats::report(
            self.options.observer.as_ref(),
            work.len(),
            crate::writer::transfer_count(&work),
            started,
            outcome
                .as_ref()
                .ok()
                .map(|batch| (batch.expired, batch.commit_time)),
        );
        let failed = outcome.is_err();
        let (mut results, failure) = match outcome {
            Ok(committed) => (committed.results.into_iter(), None),
            Err(failure) => (Vec::new().into_iter(), Some(failure)),
        };
        for item in work {
            match (item, &failure) {
                (Work::Write(_, reply), Some(failure)) => {
                    let _ = reply.send(Err(failure.clone()));
                }
                (Work::Write(_, reply), None) => {
                    let answer = results.next().map_or(
                        Err(WriteError::Failed("the group was not applied".to_owned())),
                        |result| result.map_err(WriteError::Rejected),
                    );
                    let _ = reply.send(answer);
                }
                (Work::Job(job), failure) => job.finish(failure.clone()),
            }
        }
        if failed {
            std::thread::sleep(FAILURE_BACKOFF);
        }
        shutdown
    }

    /// Whether the transaction `xid`, whose `COMMIT` answer was lost, is stored: asked over a new
    /// connection, after taking the clock lock — the lost transaction held it, so once it is
    /// ours that transaction has ended and its status is final (committed or aborted).
    fn outcome_of(&mut self, xid: &str) -> Result<bool, StoreError> {
        let (pipe, statements) = self.connection()?;
        pipe.batch_later("BEGIN")?;
        pipe.query_one(&statements.lock_clock, &[])?;
        let status = pipe.prepare("SELECT pg_xact_status($1::text::xid8)")?;
        let status: Option<String> = pipe.query_one(&status, &[&xid])?.try_get(0)?;
        pipe.batch_execute("ROLLBACK")?;
        match status.as_deref() {
            Some("committed") => Ok(true),
            Some("aborted") => Ok(false),
            other => Err(StoreError::Corrupt(format!(
                "transaction {xid} is {other:?} after its COMMIT was lost"
            ))),
        }
    }
}

/// Answers the jobs that ran in a batch that did not commit and is about to be tried again
/// without them: a job is run once (it may have done what cannot be done twice before it
/// wrote), so its caller is told that nothing of it was stored and may retry it (with the same
/// idempotency key, as the API's writes carry). Jobs the failure came before stay in the batch.
fn fail_jobs(work: &mut Vec<Work>, error: &str) {
    let mut kept = Vec::with_capacity(work.len());
    for item in work.drain(..) {
        match item {
            Work::Job(job) if job.ran() => job.finish(Some(WriteError::Failed(format!(
                "{error} (the batch was rolled back)"
            )))),
            other => kept.push(other),
        }
    }
    *work = kept;
}

/// The rows `statement` (`… WHERE id = ANY($1)`) finds for `ids`; no query when there are none.
fn rows_by_ids(
    transaction: &mut Pipe,
    statement: &Statement,
    ids: impl Iterator<Item = [u8; 16]>,
) -> Result<Vec<postgres::Row>, StoreError> {
    let wanted: Vec<Vec<u8>> = ids.map(|id| id.to_vec()).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    Ok(transaction.query(statement, &[&wanted])?)
}

/// One batch in one transaction: lock the clock, read what the groups refer to, apply them with
/// the domain's rules, write the changes, commit.
fn apply_batch(
    transaction: &mut Pipe,
    statements: &mut Statements,
    secrets: &Arc<Secrets>,
    work: &mut Vec<Work>,
    top_up: &mut dyn FnMut(&mut Vec<Work>),
    now_ns: u64,
) -> Result<Committed, Failure> {
    // READ COMMITTED whatever the server's default: each statement after the clock lock sees
    // what the previous holder committed (under REPEATABLE READ every batch that waited for the
    // lock would fail to update the row it waited for).
    transaction.start_transaction("START TRANSACTION ISOLATION LEVEL READ COMMITTED");
    let locked = transaction.query_one(&statements.lock_clock, &[])?;
    top_up(work);
    let groups: Vec<&Group> = work
        .iter()
        .filter_map(|item| match item {
            Work::Write(group, _) => Some(group),
            Work::Job(_) => None,
        })
        .collect();
    let clock: i64 = locked.try_get(0)?;
    let xid: String = locked.try_get(1)?;
    refuse_newer(locked.try_get::<_, Option<i64>>(2)?.unwrap_or(0))?;
    let last_timestamp_ns =
        u64::try_from(clock).map_err(|_| StoreError::Corrupt("negative ledger clock".into()))?;

    // What the groups (and the holds due to expire) refer to, read under the clock lock: every
    // other writer waits for it, so these rows are current and stay so until COMMIT.
    let due: Vec<TransferId> = transaction
        .query(
            &statements.due_holds,
            &[&codec::sql_amount(now_ns)?, &MAX_EXPIRED_PER_BATCH],
        )?
        .iter()
        .map(|row| {
            let bytes: Vec<u8> = row.try_get(0)?;
            TransferId::from_be_slice(&bytes)
                .ok_or_else(|| StoreError::Corrupt("a hold id is not 16 bytes".into()))
        })
        .collect::<Result<_, _>>()?;
    let mut transfer_ids: HashSet<TransferId> = due.iter().copied().collect();
    for group in &groups {
        transfer_ids.extend(group.transfer_ids());
    }
    let mut transfers = HashMap::new();
    for row in rows_by_ids(
        transaction,
        &statements.load_transfers,
        transfer_ids.iter().map(|id| id.to_be_bytes()),
    )? {
        let stored = codec::transfer_from_row(&row)?;
        transfers.insert(stored.record.id, stored);
    }
    let mut account_ids: HashSet<AccountId> = HashSet::new();
    for group in &groups {
        account_ids.extend(group.account_ids(|id| transfers.get(&id).map(|stored| stored.record)));
    }
    for id in &due {
        if let Some(stored) = transfers.get(id) {
            account_ids.insert(stored.record.debit_account_id);
            account_ids.insert(stored.record.credit_account_id);
        }
    }
    let mut accounts = HashMap::new();
    let mut heads = HashMap::new();
    for row in rows_by_ids(
        transaction,
        &statements.load_accounts,
        account_ids.iter().map(|id| id.to_be_bytes()),
    )? {
        let state = codec::account_from_row(&row)?;
        heads.insert(state.account.id, row.try_get::<_, Option<i64>>(12)?);
        accounts.insert(state.account.id, state);
    }

    let mut state = BatchState {
        accounts: &mut accounts,
        transfers,
        new_accounts: Vec::new(),
        dirty_accounts: Vec::new(),
        new_transfers: Vec::new(),
        resolved: Vec::new(),
        last_timestamp_ns,
        journal: Vec::new(),
        endpoints: HashMap::new(),
        customers: HashMap::new(),
        heads: HashMap::new(),
    };
    let mut expired = 0;
    let mut stale = Vec::new();
    for id in due {
        if expire_pending(&mut state, id, now_ns) {
            expired += 1;
        } else {
            // The schedule names a hold that is not open: derived data, dropped (as on SQLite).
            tracing::warn!(hold = %id, "dropping a stale hold expiry entry");
            stale.push(id.to_be_bytes().to_vec());
        }
    }
    let mut results = Vec::with_capacity(groups.len());
    let mut jobs_kept = false;
    for item in work.iter_mut() {
        match item {
            // Everything a group refers to was read above (or made by an earlier item).
            Work::Write(group, _) => results.push(apply_group(&mut state, group, now_ns)),
            Work::Job(job) => {
                jobs_kept |= run_job(
                    transaction,
                    &mut statements.cache,
                    secrets,
                    &mut state,
                    job.as_mut(),
                    now_ns,
                )?
            }
        }
    }

    let changed = !state.new_transfers.is_empty()
        || !state.new_accounts.is_empty()
        || !state.resolved.is_empty()
        || !stale.is_empty()
        || jobs_kept;
    if !changed {
        // Nothing to write (refusals only, or nothing due): no commit, no WAL flush.
        transaction.batch_execute("ROLLBACK")?;
        if let Some(error) = transaction.take_failure() {
            return Err(Failure::Before(error.into()));
        }
        return Ok(Committed {
            results,
            expired,
            commit_time: Duration::ZERO,
        });
    }
    for (id, head) in state.heads.drain() {
        heads.entry(id).or_insert(head);
    }
    load_missing_heads(transaction, statements, &state, &mut heads)?;
    persist(transaction, statements, &mut state, heads)?;
    if !stale.is_empty() {
        transaction.execute(&statements.drop_expiries, &[&stale])?;
    }
    let commit_started = Instant::now();
    let committed = transaction.batch_execute("COMMIT");
    let outcome = match (transaction.take_failure(), committed) {
        // The server refused a statement sent with the COMMIT: that aborted the transaction,
        // and PostgreSQL answers COMMIT with a rollback, not an error.
        (Some(error), _) if !connection_lost(&error) => return Err(Failure::Before(error.into())),
        (_, Err(error)) | (Some(error), Ok(())) => Err(error),
        (None, Ok(())) => Ok(()),
    };
    // Otherwise a failure is the connection's: the COMMIT may have reached the server.
    if let Err(error) = outcome {
        return Err(Failure::During {
            error: error.into(),
            committed: Box::new(Committed {
                results,
                expired,
                commit_time: commit_started.elapsed(),
            }),
            xid,
        });
    }
    Ok(Committed {
        results,
        expired,
        commit_time: commit_started.elapsed(),
    })
}

/// Runs one job inside a savepoint of the batch's transaction, its reads and writes on that
/// transaction (under the clock lock): if it fails, its SQL is rolled back and its ledger changes
/// undone, and the rest of the batch goes on. Whether it kept its changes.
///
/// The savepoint is taken only once something of the job is about to reach the server, and a
/// kept job's is left open, released when the next is taken (or by COMMIT): a job whose writes
/// are all rows queued to be sent later costs no savepoint (`pg_pipe.rs`).
fn run_job(
    transaction: &mut Pipe,
    cache: &mut StatementCache,
    secrets: &Arc<Secrets>,
    state: &mut BatchState<'_>,
    job: &mut dyn crate::job::ErasedJob,
    now_ns: u64,
) -> Result<bool, StoreError> {
    transaction.begin_job();
    let session = RefCell::new(Session {
        client: transaction,
        cache,
        secrets: Arc::clone(secrets),
        failed: false,
    });
    let db = Db::Postgres(&session);
    state.begin_job();
    let mut tx = Tx {
        db,
        state,
        now_ns,
        deliveries_queued: 0,
        announced: Vec::new(),
    };
    let kept = job.run(&mut tx);
    // A statement sent later failed: the transaction is aborted, and the batch fails.
    if let Some(error) = session.borrow_mut().client.take_failure() {
        tx.state.undo_job();
        return Err(error.into());
    }
    if kept && !session.borrow().failed {
        tx.state.end_job();
        session.borrow_mut().client.end_job(JobEnd::Kept);
        return Ok(true);
    }
    if kept {
        // A job that went on after one of its statements failed (SQLite would keep the rest)
        // may have left PostgreSQL's transaction aborted up to the savepoint (unless it rolled
        // back to a nested one): RELEASE fails then. Its changes are undone and its caller
        // told; the batch goes on. (A statement that failed was sent, so the savepoint is
        // taken.)
        match db.run("RELEASE SAVEPOINT job") {
            Ok(()) => {
                tx.state.end_job();
                session.borrow_mut().client.end_job(JobEnd::Released);
                return Ok(true);
            }
            Err(error) => job.undone(WriteError::Failed(format!(
                "{error} (a statement of this write failed inside it; nothing of it was stored)"
            ))),
        }
    }
    tx.state.undo_job();
    session.borrow_mut().client.end_job(JobEnd::Undone);
    Ok(false)
}

/// The newest statement entry of each account in memory whose entry was not read with it:
/// `statements::entries` chains each new entry to it. The batch's reads and the jobs' account
/// loads (`BatchState::heads`) carry it, so this reads nothing unless an account came in
/// another way; it stays so that such an account never starts a broken chain.
fn load_missing_heads(
    transaction: &mut Pipe,
    statements: &Statements,
    state: &BatchState<'_>,
    heads: &mut HashMap<AccountId, Option<i64>>,
) -> Result<(), StoreError> {
    let new: HashSet<&AccountId> = state.new_accounts.iter().collect();
    let missing: Vec<Vec<u8>> = state
        .accounts
        .keys()
        .filter(|id| !heads.contains_key(id) && !new.contains(id))
        .map(|id| id.to_be_bytes().to_vec())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for row in transaction.query(&statements.load_heads, &[&missing])? {
        let id: Vec<u8> = row.try_get(0)?;
        let id = AccountId::from_be_slice(&id)
            .ok_or_else(|| StoreError::Corrupt("an account id is not 16 bytes".into()))?;
        heads.insert(id, row.try_get(1)?);
    }
    Ok(())
}

/// The accounts' ids as a column.
fn account_ids(states: &[&AccountState]) -> Vec<Vec<u8>> {
    states
        .iter()
        .map(|state| state.account.id.to_be_bytes().to_vec())
        .collect()
}

/// The accounts' four running totals as columns, in the tables' order (debits pending, debits
/// posted, credits pending, credits posted), each in its stored form.
fn totals(states: &[&AccountState]) -> [Vec<Vec<u8>>; 4] {
    let column = |total: fn(&AccountState) -> u128| -> Vec<Vec<u8>> {
        states
            .iter()
            .map(|state| codec::sql_total(total(state)).to_vec())
            .collect()
    };
    [
        column(|s| s.balances.debits_pending),
        column(|s| s.balances.debits_posted),
        column(|s| s.balances.credits_pending),
        column(|s| s.balances.credits_posted),
    ]
}

/// Writes the batch's changes with one array statement per kind of change.
/// Writes what the batch changed. `heads` holds each loaded account's newest statement entry;
/// the batch's entries are computed first, so each account row is written once, with its totals
/// and its newest entry.
fn persist(
    transaction: &mut Pipe,
    statements: &Statements,
    state: &mut BatchState<'_>,
    mut heads: HashMap<AccountId, Option<i64>>,
) -> Result<(), StoreError> {
    // Customers' statements (`statements.rs`, as on SQLite); read under the clock lock, so the
    // newest entries are those of the batch before, whichever instance wrote it.
    let moves = crate::statements::moves(state.accounts, &state.new_transfers);
    let entries = crate::statements::entries(&moves, state.accounts, &mut heads)?;
    let last_entries = |states: &[&AccountState]| -> Vec<Option<i64>> {
        states
            .iter()
            .map(|s| heads.get(&s.account.id).copied().flatten())
            .collect()
    };
    let new: HashSet<AccountId> = state.new_accounts.iter().copied().collect();
    let created: Vec<&AccountState> = state
        .new_accounts
        .iter()
        .filter_map(|id| state.accounts.get(id))
        .collect();
    if !created.is_empty() {
        let [dp, dpo, cp, cpo] = totals(&created);
        let currencies: Vec<&str> = created.iter().map(|s| s.account.currency.code()).collect();
        let kinds: Vec<&str> = created.iter().map(|s| s.account.kind.code()).collect();
        let merchants: Vec<Option<Vec<u8>>> = created
            .iter()
            .map(|s| {
                s.account
                    .kind
                    .merchant()
                    .map(|m| MerchantId::to_be_bytes(m).to_vec())
            })
            .collect();
        let customers: Vec<Option<Vec<u8>>> = created
            .iter()
            .map(|s| {
                s.account
                    .kind
                    .customer()
                    .map(|c| CustomerId::to_be_bytes(c).to_vec())
            })
            .collect();
        let rails: Vec<Option<&str>> = created
            .iter()
            .map(|s| s.account.kind.rail().map(Rail::as_str))
            .collect();
        let flags: Vec<i64> = created
            .iter()
            .map(|s| i64::from(s.account.flags.bits()))
            .collect();
        let created_at: Vec<i64> = created
            .iter()
            .map(|s| codec::sql_amount(s.created_at_ns))
            .collect::<Result<_, _>>()?;
        transaction.execute_later(
            &statements.insert_accounts,
            params![
                account_ids(&created),
                currencies,
                kinds,
                merchants,
                customers,
                rails,
                flags,
                dp,
                dpo,
                cp,
                cpo,
                created_at,
                last_entries(&created),
            ],
        )?;
    }

    state.dirty_accounts.sort_unstable();
    state.dirty_accounts.dedup();
    let changed: Vec<&AccountState> = state
        .dirty_accounts
        .iter()
        .filter(|id| !new.contains(id))
        .filter_map(|id| state.accounts.get(id))
        .collect();
    if !changed.is_empty() {
        let [dp, dpo, cp, cpo] = totals(&changed);
        let updated = transaction.execute(
            &statements.update_accounts,
            &[
                &account_ids(&changed),
                &dp,
                &dpo,
                &cp,
                &cpo,
                &last_entries(&changed),
            ],
        )?;
        if updated != changed.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "{} of {} accounts vanished while a batch updated them",
                changed.len() as u64 - updated.min(changed.len() as u64),
                changed.len()
            )));
        }
    }

    let records = &state.new_transfers;
    if !records.is_empty() {
        let mut holds = Vec::new();
        let mut hold_expiries = Vec::new();
        let mut expiries = Vec::new();
        for record in records.iter().filter(|r| r.kind == TransferKind::Pending) {
            let expires_at = record.expires_at_ns().map(codec::sql_amount).transpose()?;
            holds.push(record.id.to_be_bytes().to_vec());
            hold_expiries.push(expires_at);
            if let Some(at) = expires_at {
                expiries.push((at, record.id.to_be_bytes().to_vec()));
            }
        }
        transaction.execute_later(
            &statements.insert_transfers,
            params![
                records
                    .iter()
                    .map(|r| r.id.to_be_bytes().to_vec())
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| i64::from(r.kind.to_u8()))
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| r.debit_account_id.to_be_bytes().to_vec())
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| r.credit_account_id.to_be_bytes().to_vec())
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| r.currency.code())
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| codec::sql_amount(r.amount_minor))
                    .collect::<Result<Vec<_>, _>>()?,
                records
                    .iter()
                    .map(|r| r.pending_id.map(|id| id.to_be_bytes().to_vec()))
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| i64::from(r.timeout_s))
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| i64::from(r.code))
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| (r.reference != 0).then(|| r.reference.to_be_bytes().to_vec()))
                    .collect::<Vec<_>>(),
                records
                    .iter()
                    .map(|r| codec::sql_amount(r.timestamp_ns))
                    .collect::<Result<Vec<_>, _>>()?,
            ],
        )?;
        if !holds.is_empty() {
            transaction.execute_later(&statements.insert_pending, params![holds, hold_expiries])?;
        }
        if !expiries.is_empty() {
            let (at, ids): (Vec<i64>, Vec<Vec<u8>>) = expiries.into_iter().unzip();
            transaction.execute_later(&statements.insert_expiries, params![at, ids])?;
        }
    }

    if !state.resolved.is_empty() {
        let ids: Vec<Vec<u8>> = state
            .resolved
            .iter()
            .map(|(id, _, _)| id.to_be_bytes().to_vec())
            .collect();
        let states: Vec<i64> = state
            .resolved
            .iter()
            .map(|(_, pending, _)| i64::from(pending.to_u8()))
            .collect();
        let at: Vec<i64> = state
            .resolved
            .iter()
            .map(|(_, _, at)| codec::sql_amount(*at))
            .collect::<Result<_, _>>()?;
        let resolved = transaction.execute(&statements.resolve_pending, &[&ids, &states, &at])?;
        if resolved != ids.len() as u64 {
            return Err(StoreError::Corrupt(
                "a hold was not open when the batch resolved it".to_owned(),
            ));
        }
        transaction.execute_later(&statements.drop_expiries, params![ids])?;
    }
    insert_entries(transaction, statements, &entries)?;
    transaction.execute_later(
        &statements.store_clock,
        params![codec::sql_amount(state.last_timestamp_ns)?],
    )?;
    Ok(())
}

/// Inserts a batch's statement entries (one array statement).
fn insert_entries(
    transaction: &mut Pipe,
    statements: &Statements,
    entries: &[crate::statements::NewEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let column = |value: fn(&crate::statements::NewEntry) -> i64| -> Vec<i64> {
        entries.iter().map(value).collect()
    };
    transaction.execute_later(
        &statements.insert_entries,
        params![
            column(|e| e.timestamp_ns),
            entries
                .iter()
                .map(|e| e.account.to_be_bytes().to_vec())
                .collect::<Vec<_>>(),
            entries
                .iter()
                .map(|e| e.transfer.to_be_bytes().to_vec())
                .collect::<Vec<_>>(),
            column(|e| e.amount),
            column(|e| e.balance_after),
            column(|e| i64::from(e.code)),
            entries
                .iter()
                .map(|e| e.reference.map(|bytes| bytes.to_vec()))
                .collect::<Vec<_>>(),
            entries.iter().map(|e| e.prev_ns).collect::<Vec<_>>(),
        ],
    )?;
    Ok(())
}

/// Checks SPEC L5 on the PostgreSQL database at `url` from one snapshot (`REPEATABLE READ`,
/// read only), while instances keep writing. The same checks as SQLite's audit: the ledger,
/// customers' statements and the rail payments (with money in suspense as findings).
pub fn audit(url: &str) -> Result<AuditReport, StoreError> {
    off_runtime(|| {
        let mut client = open_existing(url)?;
        let mut snapshot = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let mut tally = Tally::new(AuditReport::default());
        each_row(&mut snapshot, ACCOUNT_SELECT, |row| {
            tally.account(codec::account_from_row(row));
            Ok(())
        })?;
        each_row(&mut snapshot, TRANSFER_SELECT, |row| {
            tally.transfer(codec::transfer_from_row(row));
            Ok(())
        })?;
        let (mut report, max_timestamp_ns) = tally.finish();
        let mut statements = crate::statements::StatementCheck::default();
        each_row(
            &mut snapshot,
            &crate::statements::StatementCheck::accounts_sql(),
            |row| statements.account(row),
        )?;
        each_row(
            &mut snapshot,
            crate::statements::StatementCheck::ENTRIES_SQL,
            |row| statements.entry(row),
        )?;
        statements.finish(&mut report.problems);
        // The rail payments' checks, as on SQLite.
        each_row(&mut snapshot, crate::rails::BROKEN_SQL, |row| {
            report.problems.push(crate::rails::broken_problem(row)?);
            Ok(())
        })?;
        each_row(&mut snapshot, &crate::rails::suspended_sql(), |row| {
            report.findings.push(crate::rails::suspense_finding(row)?);
            Ok(())
        })?;
        let count =
            |snapshot: &mut postgres::Transaction<'_>, sql: &str| -> Result<i64, StoreError> {
                Ok(snapshot.query_one(sql, &[])?.try_get(0)?)
            };
        let orphans = count(
            &mut snapshot,
            "SELECT COUNT(*) FROM pending_transfers p LEFT JOIN transfers t ON t.id = p.id \
         WHERE t.id IS NULL OR t.kind != 1",
        )?;
        if orphans > 0 {
            report.problems.push(format!(
                "{orphans} hold state row(s) without a hold in the transfers table"
            ));
        }
        let stale_expiries = count(
            &mut snapshot,
            "SELECT COUNT(*) FROM hold_expiries e LEFT JOIN pending_transfers p ON p.id = e.id \
         WHERE p.id IS NULL OR p.state != 0 OR p.expires_at_ns IS DISTINCT FROM e.expires_at_ns",
        )?;
        let unscheduled = count(
            &mut snapshot,
            "SELECT COUNT(*) FROM pending_transfers p WHERE p.state = 0 \
         AND p.expires_at_ns IS NOT NULL AND NOT EXISTS (SELECT 1 FROM hold_expiries e \
         WHERE e.expires_at_ns = p.expires_at_ns AND e.id = p.id)",
        )?;
        if stale_expiries > 0 || unscheduled > 0 {
            report.problems.push(format!(
            "expiry schedule out of step: {stale_expiries} entries for holds that are not open, \
             {unscheduled} open holds with a timeout not scheduled"
        ));
        }
        let clock = count(
            &mut snapshot,
            "SELECT last_timestamp_ns FROM ledger_meta WHERE singleton = 1",
        )?;
        let Ok(clock) = u64::try_from(clock) else {
            report
                .problems
                .push(format!("the ledger clock is negative ({clock})"));
            snapshot.commit()?;
            return Ok(report);
        };
        if clock < max_timestamp_ns {
            report.problems.push(format!(
                "ledger clock {clock} is behind its newest transfer {max_timestamp_ns}"
            ));
        }
        snapshot.commit()?;
        Ok(report)
    })
}

/// Rebuilds customers' statements from the transfers (migration 19's fill, run again), under the
/// ledger's clock lock so no batch writes meanwhile; returns how many entries there are. What
/// the writers keep up batch by batch must equal this (a test checks it); also a repair for a
/// statement `farthing audit` finds broken (no command runs it yet).
#[doc(hidden)]
pub fn rebuild_statements(url: &str) -> Result<u64, StoreError> {
    off_runtime(|| {
        let mut client = open_existing(url)?;
        let mut transaction = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::ReadCommitted)
            .start()?;
        transaction.query_one(
            "SELECT last_timestamp_ns FROM ledger_meta WHERE singleton = 1 FOR UPDATE",
            &[],
        )?;
        transaction.batch_execute(
            "DELETE FROM customer_entries; \
         UPDATE accounts SET last_entry_ns = NULL WHERE last_entry_ns IS NOT NULL;",
        )?;
        transaction.batch_execute(pg_schema::CUSTOMER_ENTRIES_FILL)?;
        let count: i64 = transaction
            .query_one("SELECT COUNT(*) FROM customer_entries", &[])?
            .try_get(0)?;
        transaction.commit()?;
        Ok(u64::try_from(count).unwrap_or(0))
    })
}

/// Streams the rows of a query without parameters into `each` (the audit reads whole tables).
fn each_row(
    snapshot: &mut postgres::Transaction<'_>,
    sql: &str,
    mut each: impl FnMut(&postgres::Row) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let none: [&str; 0] = [];
    let mut rows = snapshot.query_raw(sql, none)?;
    while let Some(row) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
        each(&row)?;
    }
    Ok(())
}

/// A schema name farthing may put into SQL as it is.
fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if name.is_empty() || !plain {
        return Err(StoreError::BadUrl(format!(
            "schema name {name:?}: use a-z, 0-9 and _"
        )));
    }
    Ok(())
}

/// `url` with its connections' `search_path` set to `schema` (an `options=` parameter that set
/// one is replaced; one that sets anything else is refused, rather than lost).
pub fn with_search_path(url: &str, schema: &str) -> Result<String, StoreError> {
    check_schema_name(schema)?;
    let (base, query) = pg_tls::split_query(url);
    let mut kept = Vec::new();
    for parameter in query
        .map(|query| query.split('&'))
        .into_iter()
        .flatten()
        .filter(|parameter| !parameter.is_empty())
    {
        let Some(value) = parameter.strip_prefix("options=") else {
            kept.push(parameter.to_owned());
            continue;
        };
        let decoded = pg_tls::percent_decode(value)
            .map_err(|error| StoreError::BadUrl(format!("the URL's options=: {error}")))?;
        let words: Vec<&str> = decoded.split_whitespace().collect();
        let setting = match words.as_slice() {
            ["-c", setting] => Some(*setting),
            [joined] => joined.strip_prefix("-c"),
            _ => None,
        };
        let sets_search_path = setting
            .and_then(|setting| setting.strip_prefix("search_path="))
            .is_some_and(|name| !name.is_empty());
        if !sets_search_path {
            return Err(StoreError::BadUrl(
                "the URL's options= sets more than search_path: farthing chooses the schema of \
                 test-mode data itself; give the URL without other options"
                    .to_owned(),
            ));
        }
    }
    kept.push(format!("options=-c%20search_path%3D{schema}"));
    Ok(format!("{base}?{}", kept.join("&")))
}

/// Where test-mode data lives beside the live data of `url`: the schema `<schema>_test` of the
/// same database (as SQLite keeps `farthing-test.db` beside `farthing.db`), `<schema>` being the
/// live data's (the URL's `search_path`, or the role's default, usually `public`). With `create`
/// the schema is made when missing; without, `None` when there is none.
pub fn test_mode_url(url: &str, create: bool) -> Result<Option<String>, StoreError> {
    off_runtime(|| {
        let mut client = connect(url)?;
        let live: Option<String> = client
            .query_one("SELECT current_schema()", &[])?
            .try_get(0)?;
        let Some(live) = live else {
            return Err(StoreError::BadUrl(
                "the URL's search_path names no schema that exists: create it, or fix the URL"
                    .to_owned(),
            ));
        };
        let test = format!("{live}_test");
        check_schema_name(&test)?;
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&test],
            )?
            .try_get(0)?;
        if !exists {
            if !create {
                return Ok(None);
            }
            // Only when missing: CREATE SCHEMA needs the CREATE right even with IF NOT EXISTS.
            client.batch_execute(&format!("CREATE SCHEMA {test}"))?;
        }
        with_search_path(url, &test).map(Some)
    })
}

/// Makes a new, empty schema in the database at `url` and returns a URL whose connections use
/// it (`search_path`), for a benchmark or a test that must not touch what is there.
pub fn scratch_schema(url: &str, name: &str) -> Result<String, StoreError> {
    off_runtime(|| {
        check_schema_name(name)?;
        let mut client = connect(url)?;
        client.batch_execute(&format!("CREATE SCHEMA {name}"))?;
        with_search_path(url, name)
    })
}

/// Drops a schema made by [`scratch_schema`] with everything in it.
pub fn drop_scratch_schema(url: &str, name: &str) -> Result<(), StoreError> {
    off_runtime(|| {
        check_schema_name(name)?;
        let mut client = connect(url)?;
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_set_or_replaced_never_other_options_lost() {
        assert_eq!(
            with_search_path("postgres://u@h/db", "shop_test").expect("set"),
            "postgres://u@h/db?options=-c%20search_path%3Dshop_test"
        );
        assert_eq!(
            with_search_path(
                "postgres://u@/db?host=/run&options=-c%20search_path%3Dshop&sslmode=disable",
                "shop_test"
            )
            .expect("replaced"),
            "postgres://u@/db?host=/run&sslmode=disable&options=-c%20search_path%3Dshop_test"
        );
        assert!(matches!(
            with_search_path("postgres://h/db?options=-c%20statement_timeout%3D5s", "x"),
            Err(StoreError::BadUrl(text)) if text.contains("more than search_path")
        ));
        assert!(matches!(
            with_search_path("postgres://h/db", "Shop; DROP"),
            Err(StoreError::BadUrl(_))
        ));
        // A second setting hidden after the search path is not dropped silently.
        assert!(matches!(
            with_search_path(
                "postgres://h/db?options=-c%20search_path%3Ds%20--statement_timeout%3D5s",
                "x"
            ),
            Err(StoreError::BadUrl(_))
        ));
        assert_eq!(
            with_search_path("postgres://h/db?", "x").expect("a bare ?"),
            "postgres://h/db?options=-c%20search_path%3Dx"
        );
        assert_eq!(
            with_search_path("postgres://h/db?options=-csearch_path%3Dold", "x").expect("joined"),
            "postgres://h/db?options=-c%20search_path%3Dx"
        );
    }

    #[test]
    fn tls_is_off_only_when_every_connection_is_a_unix_socket() {
        let local = |url: &str| only_unix_sockets(&url.parse().expect("a URL"));
        assert!(local("postgres://u@/db?host=/run/postgresql"));
        assert!(!local("postgres://u@db.example/db"));
        assert!(!local("postgres://u@db.example/db?host=/run/postgresql"));
        // hostaddr is TCP, whatever the host says.
        assert!(!local(
            "postgres://u@/db?host=/run/postgresql&hostaddr=10.0.0.5"
        ));
        assert!(!local("postgres://u@/db?hostaddr=10.0.0.5"));
        assert!(!local("postgres://u@/db"));
    }
}
