//! farthing's durable store: the ledger and the business tables on SQLite, and the ledger on
//! PostgreSQL ([`pg::PgLedger`]).
//!
//! A [`Store`] owns one writer thread. Callers submit [`Group`]s into a bounded queue; the
//! writer drains whatever is waiting (up to a batch limit), applies every group with the
//! domain's rules inside **one** SQLite transaction, commits it with `synchronous=FULL`, and
//! only then answers each caller (group commit). A caller that got `Ok` therefore holds a
//! durable result.
//!
//! Architecture invariant: the ledger's rules live in `farthing_core::ledger`; this crate only
//! loads, persists and schedules. SQLite specifics (WAL, pragmas, the single writer) stay here;
//! the PostgreSQL ledger (`pg`) applies the same rules to rows it reads under a lock in each
//! batch, so several instances can share one database.
//!
//! API boundary: [`Store`], [`StoreOptions`], [`WriteError`], [`audit`], [`DatabaseUrl`],
//! [`pg`], [`Ledger`] (either backend), [`copy`] (SQLite to PostgreSQL).

mod admin_log;
pub mod audit;
mod batch;
mod bot;
mod bot_messages;
mod business;
mod cards;
mod codec;
pub mod copy;
mod dashboard;
pub mod instances;
mod job;
mod lightning;
mod per_merchant;
pub mod pg;
mod pg_pipe;
mod pg_schema;
mod pg_tls;
mod rails;
pub mod risk;
mod schema;
mod sealed;
pub mod secrets;
mod sql;
mod statements;
mod step_up;
mod subscriptions;
mod telegram;
mod ton;
mod topics;
mod url;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use farthing_core::ledger::{AccountState, Group, GroupError, GroupOutcome, StoredTransfer};
use farthing_core::{AccountId, TransferId};
use rusqlite::Connection;

pub use admin_log::AuditEntry;

/// The newest database schema version this build knows (its last migration's number).
pub fn schema_version() -> i64 {
    schema::latest_version()
}
pub use bot::{RefundRequest, RefundRequestStatus, ReminderOptIn};
pub use bot_messages::InvoiceMessage;
pub use business::{
    ApiKeyListing, ApiKeyRecord, Charge, Customer, Delivery, EventRecord, ListFilter, Merchant,
    Page, PageRequest, Refund, RefundStatus, WebhookEndpoint,
};
pub use cards::CardProvider;
pub use job::{JobTicket, Tx};
pub use lightning::{LightningInvoice, LightningNode, LnurlSecret, WatchState};
pub use rails::RailPayment;
pub use risk::RiskDecisionRecord;
pub use secrets::{Secrets, SecretsKey};
pub use statements::CustomerEntry;
pub use step_up::Authenticator;
pub use subscriptions::Subscription;
pub use telegram::{StarOutflow, StarWatermark, TelegramBot};
pub use ton::{TonCursor, TonRefund, TonTransaction, TonWallet};
pub use url::{DatabaseUrl, PostgresUrl, UrlError};

/// A source of ledger time: nanoseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock, as ledger time.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
            })
    })
}

/// What the writer reports after each transaction, for metrics and benchmarks.
#[derive(Clone, Copy, Debug)]
pub struct BatchStats {
    /// Groups in the transaction.
    pub groups: usize,
    /// Transfers in those groups.
    pub transfers: usize,
    /// Holds expired in the transaction.
    pub expired: usize,
    /// Time from the start of the batch to the end of its commit.
    pub batch_time: Duration,
    /// Time of the `COMMIT` alone (the durable write).
    pub commit_time: Duration,
    /// Whether the transaction failed (every caller got an error).
    pub failed: bool,
}

impl BatchStats {
    /// The stats of a batch of `groups` (`transfers` in all) started at `started`: `done` holds
    /// its expired holds and commit time when it committed, `None` when it failed. Told to
    /// `observer` before any caller is answered, so metrics never lag answers.
    pub(crate) fn report(
        observer: Option<&Observer>,
        groups: usize,
        transfers: usize,
        started: std::time::Instant,
        done: Option<(usize, Duration)>,
    ) {
        let stats = BatchStats {
            groups,
            transfers,
            expired: done.map_or(0, |(expired, _)| expired),
            batch_time: started.elapsed(),
            commit_time: done.map_or(Duration::ZERO, |(_, commit)| commit),
            failed: done.is_none(),
        };
        if let Some(observer) = observer {
            observer(&stats);
        }
    }
}

/// Called by the writer after each transaction; must be quick.
pub type Observer = Arc<dyn Fn(&BatchStats) + Send + Sync>;

/// How a store runs.
#[derive(Clone)]
pub struct StoreOptions {
    /// Most transfers in one transaction (the group-commit batch limit).
    pub max_batch_transfers: usize,
    /// Most requests waiting in the queue; submitters block (or `try_submit` fails) beyond.
    pub queue_capacity: usize,
    /// Ledger time.
    pub clock: Clock,
    /// Told about every transaction.
    pub observer: Option<Observer>,
    /// How often the background checkpointer copies the WAL into the database.
    pub checkpoint_interval: Duration,
    /// Longest the writer sleeps without checking for expired holds.
    pub expiry_poll_interval: Duration,
    /// The keys that seal stored secrets (`secrets.rs`).
    pub secrets: Secrets,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_batch_transfers: 8_192,
            queue_capacity: 16_384,
            clock: system_clock(),
            observer: None,
            checkpoint_interval: Duration::from_millis(200),
            expiry_poll_interval: Duration::from_secs(1),
            secrets: Secrets::default(),
        }
    }
}

/// Why a store could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// PostgreSQL failed (or could not be reached).
    #[error("PostgreSQL: {}", pg::describe(.0))]
    Postgres(postgres::Error),
    /// A database URL that cannot be used (the message says why; never the password).
    #[error("{0}")]
    BadUrl(String),
    /// A stored secret could not be sealed or unsealed (no key, the wrong key, a damaged
    /// value): the message says which and what to do.
    #[error("{0}")]
    Secrets(String),
    /// A live-mode secret was to be stored, and this server has no key to seal it.
    #[error("{0}")]
    SecretsKeyMissing(String),
    /// The database holds data this build cannot read.
    #[error("database is corrupt or from another version: {0}")]
    Corrupt(String),
    /// The schema is newer than this build.
    #[error("database schema version {found} is newer than this farthing ({supported}); upgrade farthing")]
    SchemaTooNew {
        /// Found in the file.
        found: i64,
        /// Known to this build.
        supported: i64,
    },
    /// Another process (or another `Store` in this one) is writing this database.
    #[error("{0} is in use by another farthing process (lock file {0}.lock); stop it first")]
    Locked(PathBuf),
    /// No database where one was expected.
    #[error("no database at {0}: run `farthing serve` (or `farthing bench ledger`) to create one")]
    Missing(PathBuf),
    /// An operation refused for what the database holds (the message says what to do).
    #[error("{0}")]
    Refused(String),
    /// A thread could not be started.
    #[error("could not start the writer thread: {0}")]
    Thread(std::io::Error),
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        StoreError::Postgres(error)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        // The `seal`/`unseal` SQL functions fail with a `SecretsError`: keep its message.
        // SQLite hands the statement only the error's text, marked by `SecretsError`'s
        // `Display`.
        let found = match &error {
            rusqlite::Error::UserFunctionError(inner) => inner
                .downcast_ref::<secrets::SecretsError>()
                .map(|e| secrets::SecretsError(e.0.clone(), e.1)),
            rusqlite::Error::SqliteFailure(_, Some(message)) => secrets::from_message(message),
            _ => None,
        };
        match found {
            Some(secrets) if secrets.is_missing_key() => StoreError::SecretsKeyMissing(secrets.0),
            Some(secrets) => StoreError::Secrets(secrets.0),
            None => StoreError::Sqlite(error),
        }
    }
}

/// Why a write did not happen. In every case nothing of the group was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The ledger refused the group (bad input, insufficient funds, id reuse…).
    #[error(transparent)]
    Rejected(#[from] GroupError),
    /// The database failed to write the batch; the transaction was rolled back. Safe to retry
    /// with the same ids.
    #[error("the database failed to commit: {0}; nothing was written, retry with the same ids")]
    Failed(String),
    /// The connection to the database was lost while it committed, and it could not be told
    /// whether the write is stored. Retry with the same ids: a retry reports what is stored
    /// (`Exists`) or writes it once.
    #[error("the database connection was lost during the commit ({0}); the write may or may not be stored: retry with the same ids, which reports what is stored")]
    Unknown(String),
    /// The queue is full (only from `try_submit`).
    #[error("the ledger is busy: too many writes are waiting, retry shortly")]
    Busy,
    /// The store is shut down.
    #[error("the ledger is shut down")]
    Closed,
}

type Reply = tokio::sync::oneshot::Sender<Result<GroupOutcome, WriteError>>;

enum Request {
    Write { group: Group, reply: Reply },
    Job(Box<dyn job::ErasedJob>),
    Shutdown { done: std::sync::mpsc::Sender<()> },
}

fn job_request<T, E, F>(work: F) -> (Request, JobTicket<T, E>)
where
    F: FnOnce(&mut Tx<'_, '_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let (reply, receiver) = tokio::sync::oneshot::channel();
    let job = job::Job {
        work: Some(work),
        result: None,
        undone: None,
        reply,
    };
    (Request::Job(Box::new(job)), JobTicket(receiver))
}

/// Most idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 16;

/// A read connection borrowed from the pool; returned when dropped.
struct PooledReader<'a> {
    connection: Option<Result<Connection, StoreError>>,
    pool: &'a Mutex<Vec<Connection>>,
}

impl PooledReader<'_> {
    fn connection(&self) -> Result<&Connection, StoreError> {
        match &self.connection {
            Some(Ok(connection)) => Ok(connection),
            Some(Err(error)) => Err(StoreError::Corrupt(format!(
                "cannot open a read connection: {error}"
            ))),
            None => Err(StoreError::Corrupt("read connection gone".to_owned())),
        }
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(Ok(connection)) = self.connection.take() {
            let mut idle = self
                .pool
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(connection);
            }
        }
    }
}

/// Read access to committed data, outside the writer.
pub struct Reader<'a> {
    pub(crate) db: sql::Db<'a>,
}

impl<'a> Reader<'a> {
    /// The read connection, on either backend.
    pub(crate) fn db(&self) -> sql::Db<'a> {
        self.db
    }
}

/// A pending write: wait for it, blocking or async.
#[must_use = "a write is only known durable once its ticket says so"]
pub struct Ticket(tokio::sync::oneshot::Receiver<Result<GroupOutcome, WriteError>>);

impl Ticket {
    /// Blocks until the write is committed or refused. Not for async code: use `.await`.
    pub fn wait(self) -> Result<GroupOutcome, WriteError> {
        self.0.blocking_recv().unwrap_or(Err(WriteError::Closed))
    }
}

impl std::future::Future for Ticket {
    type Output = Result<GroupOutcome, WriteError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(WriteError::Closed)))
    }
}

struct Inner {
    path: PathBuf,
    /// An exclusive lock on `<database>.lock`, held while the writer runs: a second writer on
    /// the same file would trust its own in-memory balances and break the ledger.
    lock: Mutex<Option<std::fs::File>>,
    sender: SyncSender<Request>,
    /// Idle read connections; a reader takes one or opens a new one.
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<writer::Checkpointer>>,
    /// Registered on every new read connection.
    secrets: Secrets,
}

/// The store: the ledger and the business tables, on SQLite (one writer per database) or on
/// PostgreSQL (a [`pg::PgLedger`] instance; other instances may share the database). Cheap to
/// clone; all clones share one writer.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<Inner>),
    Postgres(pg::PgLedger),
}

impl Store {
    /// Opens (creating if needed, and migrating) the SQLite database at `path`.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let lock = lock_database(&path)?;
        let mut connection = schema::open_writer(&path)?;
        schema::migrate(&mut connection, (options.clock)())?;
        secrets::register(&connection, &options.secrets)?;
        let reader = schema::open_reader(&path)?;
        secrets::register(&reader, &options.secrets)?;
        let secrets = options.secrets.clone();
        let checkpointer = writer::Checkpointer::start(&path, options.checkpoint_interval)?;
        let (sender, receiver) = mpsc::sync_channel(options.queue_capacity.max(1));
        let mut state = writer::Writer::new(connection, options)?;
        let handle = std::thread::Builder::new()
            .name("farthing-ledger-writer".to_owned())
            .spawn(move || state.run(receiver))
            .map_err(StoreError::Thread)?;
        Ok(Store {
            backend: Backend::Sqlite(Arc::new(Inner {
                path,
                lock: Mutex::new(Some(lock)),
                sender,
                readers: Mutex::new(vec![reader]),
                writer: Mutex::new(Some(handle)),
                checkpointer: Mutex::new(Some(checkpointer)),
                secrets,
            })),
        })
    }

    /// Opens the database `url` names: an SQLite file, or PostgreSQL (connecting, migrating and
    /// starting this instance's writer).
    pub fn open_url(url: &DatabaseUrl, options: StoreOptions) -> Result<Store, StoreError> {
        match url {
            DatabaseUrl::Sqlite(path) => Store::open(path, options),
            DatabaseUrl::Postgres(url) => Ok(Store {
                backend: Backend::Postgres(pg::PgLedger::open(url.expose(), options)?),
            }),
        }
    }

    /// How many stored secrets are sealed, and how many are still in clear.
    pub fn secrets_census(&self) -> Result<(u64, u64), StoreError> {
        self.read(|reader| sealed::census(reader.db()))
    }

    /// Checks that this store's keys open what is sealed (one value per secret column); the
    /// error names the key that is needed.
    pub fn verify_secrets(&self) -> Result<(), StoreError> {
        self.read(|reader| sealed::verify(reader.db()))
    }

    /// Whether other instances may share this database (PostgreSQL): then caches must be kept
    /// in step and background work led by one instance (see [`instances`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// What names this database among others, the same from every instance that shares it:
    /// on PostgreSQL its database and schema (`None` on SQLite, which no other process opens).
    pub fn shared_identity(&self) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(_) => self.read(|reader| {
                reader.db().row(
                    "SELECT current_database()::text || '/' || current_schema()::text",
                    sql::args![],
                    |row| row.get::<_, String>(0),
                )
            }),
        }
    }

    /// Tells the other instances on this database that `topic` changed, now (for news that
    /// follows a commit; inside a job, use [`Tx::announce`]). Nothing on SQLite.
    pub fn announce(&self, topic: instances::Topic) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(_) => self.read(|reader| {
                reader
                    .db()
                    .execute(topics::NOTIFY_SQL, sql::args![topic.as_str()])
                    .map(drop)
            }),
        }
    }

    /// Listens for what other instances announce on this database (see
    /// [`instances::Listener`]); `None` on SQLite, where there are no others.
    pub fn listen(
        &self,
        on_heard: impl Fn(instances::Heard) + Send + 'static,
    ) -> Result<Option<instances::Listener>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(ledger) => {
                // The session runs on a thread of its own (never on an async thread).
                instances::Listener::start(ledger.url(), on_heard).map(Some)
            }
        }
    }

    /// Asks for leadership of `role` among the instances on this database (see
    /// [`instances::Leadership`]); `None` on SQLite, where this process is the only one and
    /// leads.
    pub fn campaign(
        &self,
        role: &str,
        on_change: impl FnMut(bool) + Send + 'static,
    ) -> Result<Option<instances::Leadership>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(ledger) => {
                instances::Leadership::campaign(ledger.url(), role, on_change).map(Some)
            }
        }
    }

    /// The SQLite database file (`None` on PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(inner) => Some(&inner.path),
            Backend::Postgres(_) => None,
        }
    }

    /// Where the data is, for messages: the file, or the PostgreSQL URL without its password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(inner) => inner.path.display().to_string(),
            Backend::Postgres(ledger) => ledger.location(),
        }
    }

    fn sender(&self) -> &SyncSender<Request> {
        match &self.backend {
            Backend::Sqlite(inner) => &inner.sender,
            Backend::Postgres(ledger) => ledger.sender(),
        }
    }

    /// Queues a group; blocks while the queue is full (back-pressure).
    pub fn submit(&self, group: Group) -> Result<Ticket, WriteError> {
        queue_write(self.sender(), group, true)
    }

    /// Queues a group, or fails with [`WriteError::Busy`] at once when the queue is full.
    pub fn try_submit(&self, group: Group) -> Result<Ticket, WriteError> {
        queue_write(self.sender(), group, false)
    }

    /// Queues a job (see [`Tx`]); blocks while the queue is full.
    pub fn execute<T, E, F>(&self, work: F) -> Result<JobTicket<T, E>, WriteError>
    where
        F: FnOnce(&mut Tx<'_, '_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        queue_job(self.sender(), work)
    }

    /// Runs a job from async code: waits (without blocking the runtime) while the queue is
    /// full, then until the job committed or failed.
    pub async fn run<T, E, F>(&self, work: F) -> Result<Result<T, E>, WriteError>
    where
        F: FnOnce(&mut Tx<'_, '_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (mut request, ticket) = job_request(work);
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            match self.sender().try_send(request) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    // Back-pressure: the writer is behind. Yield to the runtime and retry.
                    request = back;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(20));
                }
                Err(TrySendError::Disconnected(_)) => return Err(WriteError::Closed),
            }
        }
        ticket.await
    }

    /// Reads committed data (see [`Reader`]): on SQLite with a pooled read connection, on
    /// PostgreSQL with the instance's read connection.
    pub fn read<T: Send>(
        &self,
        work: impl FnOnce(&Reader<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(inner) => {
                let reader = reader(inner);
                work(&Reader {
                    db: sql::Db::Sqlite(reader.connection()?),
                })
            }
            Backend::Postgres(ledger) => ledger.read(work),
        }
    }

    /// Submits a group and waits until it is durable or refused.
    pub fn write(&self, group: Group) -> Result<GroupOutcome, WriteError> {
        self.submit(group)?.wait()
    }

    /// An account with its committed totals.
    pub fn account(&self, id: AccountId) -> Result<Option<AccountState>, StoreError> {
        self.read(|reader| codec::load_account(reader.db(), id))
    }

    /// A committed transfer.
    pub fn transfer(&self, id: TransferId) -> Result<Option<StoredTransfer>, StoreError> {
        self.read(|reader| codec::load_transfer(reader.db(), id))
    }

    /// Checks every ledger invariant on the committed data (see [`audit::audit_connection`],
    /// [`pg::audit`]).
    pub fn audit(&self) -> Result<audit::AuditReport, StoreError> {
        match &self.backend {
            Backend::Sqlite(inner) => audit::audit_connection(reader(inner).connection()?),
            Backend::Postgres(ledger) => ledger.audit(),
        }
    }

    /// Finishes every queued write, commits, and stops the writer (and the checkpointer).
    /// Writes submitted afterwards fail with [`WriteError::Closed`]. Idempotent.
    pub fn shutdown(&self) {
        let inner = match &self.backend {
            Backend::Sqlite(inner) => inner,
            Backend::Postgres(ledger) => return ledger.shutdown(),
        };
        stop_writer(&inner.sender, &inner.writer);
        let checkpointer = inner
            .checkpointer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop();
        }
        // Release the lock only once the writer is gone.
        inner
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}

impl From<pg::PgLedger> for Store {
    /// The store of one PostgreSQL ledger instance.
    fn from(ledger: pg::PgLedger) -> Store {
        Store {
            backend: Backend::Postgres(ledger),
        }
    }
}

/// A read connection of an SQLite store: an idle one from the pool, or a new one.
fn reader(inner: &Inner) -> PooledReader<'_> {
    // A panic while holding the pool lock cannot leave it inconsistent (a Vec of idle
    // connections), so a poisoned lock is still usable.
    let idle = inner
        .readers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop();
    let connection = idle.map(Ok).unwrap_or_else(|| {
        let connection = schema::open_reader(&inner.path)?;
        secrets::register(&connection, &inner.secrets)?;
        Ok(connection)
    });
    PooledReader {
        connection: Some(connection),
        pool: &inner.readers,
    }
}

/// The ledger on either backend, for what works on both (the benchmark, the crash test, tools):
/// the SQLite [`Store`] or a [`pg::PgLedger`] instance. Cheap to clone.
#[derive(Clone)]
pub enum Ledger {
    /// The SQLite store (one writer per database).
    Sqlite(Store),
    /// One instance of the PostgreSQL ledger (others may share the database).
    Postgres(pg::PgLedger),
}

impl Ledger {
    /// Opens the ledger `url` names (creating and migrating it if needed).
    pub fn open(url: &DatabaseUrl, options: StoreOptions) -> Result<Ledger, StoreError> {
        Ok(match url {
            DatabaseUrl::Sqlite(path) => Ledger::Sqlite(Store::open(path, options)?),
            DatabaseUrl::Postgres(url) => {
                Ledger::Postgres(pg::PgLedger::open(url.expose(), options)?)
            }
        })
    }

    /// Queues a group; blocks while the queue is full.
    pub fn submit(&self, group: Group) -> Result<Ticket, WriteError> {
        match self {
            Ledger::Sqlite(store) => store.submit(group),
            Ledger::Postgres(ledger) => ledger.submit(group),
        }
    }

    /// Submits a group and waits until it is durable or refused.
    pub fn write(&self, group: Group) -> Result<GroupOutcome, WriteError> {
        self.submit(group)?.wait()
    }

    /// Queues a job (see [`Tx`]); blocks while the queue is full.
    pub fn execute<T, E, F>(&self, work: F) -> Result<JobTicket<T, E>, WriteError>
    where
        F: FnOnce(&mut Tx<'_, '_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        match self {
            Ledger::Sqlite(store) => store.execute(work),
            Ledger::Postgres(ledger) => ledger.execute(work),
        }
    }

    /// Reads committed data (see [`Reader`]).
    pub fn read<T: Send>(
        &self,
        work: impl FnOnce(&Reader<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        match self {
            Ledger::Sqlite(store) => store.read(work),
            Ledger::Postgres(ledger) => ledger.read(work),
        }
    }

    /// An account with its committed totals.
    pub fn account(&self, id: AccountId) -> Result<Option<AccountState>, StoreError> {
        match self {
            Ledger::Sqlite(store) => store.account(id),
            Ledger::Postgres(ledger) => ledger.account(id),
        }
    }

    /// A committed transfer.
    pub fn transfer(&self, id: TransferId) -> Result<Option<StoredTransfer>, StoreError> {
        match self {
            Ledger::Sqlite(store) => store.transfer(id),
            Ledger::Postgres(ledger) => ledger.transfer(id),
        }
    }

    /// Checks every ledger invariant on the committed data.
    pub fn audit(&self) -> Result<audit::AuditReport, StoreError> {
        match self {
            Ledger::Sqlite(store) => store.audit(),
            Ledger::Postgres(ledger) => ledger.audit(),
        }
    }

    /// Finishes every queued write and stops the writer.
    pub fn shutdown(&self) {
        match self {
            Ledger::Sqlite(store) => store.shutdown(),
            Ledger::Postgres(ledger) => ledger.shutdown(),
        }
    }
}

/// Takes the exclusive lock of the database at `path` (the OS releases it if the process dies).
/// Re-seals every stored secret of the (stopped) database at `path` under `secrets.key`,
/// unsealing with it or `secrets.previous` and sealing what is in clear; all or nothing.
/// Returns how many values were written. Refused while a server holds the database.
pub fn rotate_secrets(path: &Path, secrets: &Secrets) -> Result<u64, StoreError> {
    let _lock = lock_database(path)?;
    if !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let mut connection = schema::open_writer(path)?;
    schema::migrate(&mut connection, system_clock()())?;
    secrets::rotate(&mut connection, secrets)
}

/// Re-seals every stored secret of the PostgreSQL schema `url` names, and of its test-mode
/// schema when there is one, under `secrets.key`, opening each with it or `secrets.previous`
/// and sealing what is in clear: one transaction per schema, all of a schema or none of it;
/// `sealed(schema, values)` is told as each commits (run again with the same keys after a
/// failure: what is sealed under the new key already opens with it). Refused while a farthing
/// server runs on the database (every instance holds its serving lock shared), and a server
/// that starts meanwhile is refused: servers with the old key could not read what is sealed
/// under the new one. The tables are vacuumed after, so that the old values' rows can be
/// reused (PostgreSQL does not overwrite them at once, and they stay in the write-ahead log
/// until it is recycled, and in backups).
pub fn rotate_secrets_postgres(
    url: &str,
    secrets: &Secrets,
    mut sealed: impl FnMut(&str, u64),
) -> Result<(), StoreError> {
    if secrets.key.is_none() {
        return Err(StoreError::Secrets("rotation needs the new key".to_owned()));
    }
    let Some(_alone) = instances::alone(url)? else {
        return Err(StoreError::Refused(
            "a farthing server is running on this database (or another maintenance is): stop \
             every instance, rotate, then start them with the new key"
                .to_owned(),
        ));
    };
    let mut schemas = vec![url.to_owned()];
    schemas.extend(pg::test_mode_url(url, false)?);
    for schema_url in schemas {
        let store = Store {
            backend: Backend::Postgres(pg::PgLedger::open(
                &schema_url,
                StoreOptions {
                    secrets: secrets.clone(),
                    ..StoreOptions::default()
                },
            )?),
        };
        let not_stored = |error: WriteError| {
            StoreError::Refused(format!("the secrets were not sealed again: {error}"))
        };
        let resealed = store
            .execute(|tx| sealed::reseal(tx.db()))
            .and_then(JobTicket::wait)
            .map_err(not_stored);
        store.shutdown();
        let count = resealed??;
        let mut client = pg::connect(&schema_url)?;
        let name: Option<String> = client
            .query_one("SELECT current_schema()", &[])?
            .try_get(0)?;
        sealed(&name.unwrap_or_default(), count);
        let mut tables: Vec<&str> = secrets::SECRET_COLUMNS
            .iter()
            .map(|(table, _)| *table)
            .collect();
        tables.sort_unstable();
        tables.dedup();
        client.batch_execute(&format!("VACUUM {}", tables.join(", ")))?;
    }
    Ok(())
}

fn lock_database(path: &Path) -> Result<std::fs::File, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| {
            StoreError::Corrupt(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&lock_path).map_err(|error| {
        StoreError::Corrupt(format!("cannot open {}: {error}", lock_path.display()))
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(path.to_path_buf())),
        Err(std::fs::TryLockError::Error(error)) => Err(StoreError::Corrupt(format!(
            "cannot lock {}: {error}",
            lock_path.display()
        ))),
    }
}

/// Queues a ledger group on a writer's queue: blocking while it is full (`wait`), or failing
/// with [`WriteError::Busy`] at once.
fn queue_write(
    sender: &SyncSender<Request>,
    group: Group,
    wait: bool,
) -> Result<Ticket, WriteError> {
    let (reply, receiver) = tokio::sync::oneshot::channel();
    let request = Request::Write { group, reply };
    if wait {
        sender.send(request).map_err(|_| WriteError::Closed)?;
    } else {
        match sender.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(WriteError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(WriteError::Closed),
        }
    }
    Ok(Ticket(receiver))
}

/// Queues a job on a writer's queue, blocking while it is full.
fn queue_job<T, E, F>(sender: &SyncSender<Request>, work: F) -> Result<JobTicket<T, E>, WriteError>
where
    F: FnOnce(&mut Tx<'_, '_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let (request, ticket) = job_request(work);
    sender.send(request).map_err(|_| WriteError::Closed)?;
    Ok(ticket)
}

/// Asks a writer to commit what is queued and stop, and waits for its thread. Idempotent.
fn stop_writer(sender: &SyncSender<Request>, writer: &Mutex<Option<JoinHandle<()>>>) {
    let (done, wait) = std::sync::mpsc::channel();
    if sender.send(Request::Shutdown { done }).is_ok() {
        let _ = wait.recv();
    }
    // A panic while holding this lock cannot leave an `Option<JoinHandle>` inconsistent.
    let handle = writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(handle) = handle {
        let _ = handle.join();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        stop_writer(&self.sender, &self.writer);
        if let Some(checkpointer) = self
            .checkpointer
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            checkpointer.stop();
        }
    }
}
