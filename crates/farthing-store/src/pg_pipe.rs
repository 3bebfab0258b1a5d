//! The PostgreSQL writer's connection, pipelined: tokio-postgres driven on a small runtime of
//! the writer thread's own, as the synchronous client drives its own, except that statements
//! whose answer nobody waits for (savepoints, the inserts of fresh rows, the batch's array
//! writes) are queued and sent together with the next statement that needs its answer, in one
//! round trip. Every statement still runs in the order it was issued.
//!
//! A queued statement that fails has left the transaction aborted, and the statement that sent
//! it learns of it late: the failure is kept ([`Pipe::take_failure`]), and the writer fails the
//! whole batch (nothing of it is stored), as it does when the connection breaks. Only
//! statements that cannot fail on valid data are queued, so that is the server's trouble (a
//! full disk, a lost connection), never a request's.
//!
//! Two things make a batch of many jobs cheap for the server as well:
//! - **Rows merge.** The rows of an insert ([`Pipe::insert_later`]) queued one after another,
//!   by one job or by many, go out as one statement (the insert's `UNNEST` form, one array per
//!   column), one per insert text, until another kind of statement is queued or sent. Inserts
//!   into different tables are taken in any order among themselves (the schema has no foreign
//!   keys or triggers); rows of one table keep theirs.
//! - **A job's savepoint is taken only when it is needed.** A job ([`Pipe::begin_job`]) whose
//!   writes are all rows still queued when it ends needs none: if it is undone, its rows are
//!   taken back out of the queue, unsent. The savepoint is put in the queue, before the job's
//!   first row, as soon as anything of the job is about to reach the server: another kind of
//!   statement, or any round trip (a read sends the queued rows with it).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use postgres::types::ToSql;
use postgres::{Row, Statement};
use tokio::runtime::Runtime;
use tokio_postgres::Client;

use crate::sql::{bound, boxed, Link, Owned, Param};
use crate::StoreError;

/// A statement waiting to be sent with the next one.
enum Queued {
    Execute(Statement, Vec<Param>),
    /// Statements without parameters or results (savepoints), in the simple protocol.
    Batch(String),
    /// Rows of inserts queued with nothing else between them, each insert's in order.
    Rows(Vec<Inserts>),
}

/// The queued rows of one insert.
struct Inserts {
    /// The insert's text, which tells inserts apart.
    text: String,
    /// The insert of one row.
    one: Statement,
    /// Its form for many rows: one array per parameter.
    many: Statement,
    rows: Vec<Vec<Owned>>,
}

impl Inserts {
    /// The statement that sends these rows, with its values.
    fn into_statement(self) -> (Statement, Vec<Param>) {
        let Inserts {
            one,
            many,
            mut rows,
            ..
        } = self;
        if rows.len() == 1 {
            let row = rows.pop().unwrap_or_default();
            return (one, boxed(row));
        }
        let width = rows.first().map_or(0, Vec::len);
        let mut columns: Vec<Vec<Owned>> =
            (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
        for row in rows {
            for (column, value) in columns.iter_mut().zip(row) {
                column.push(value);
            }
        }
        let params = columns.into_iter().map(|c| Box::new(c) as Param).collect();
        (many, params)
    }
}

/// Where the running job began in the queue, and whether its savepoint is taken.
struct JobMark {
    /// How many items were queued.
    items: usize,
    /// When the last of them was rows: how many rows each insert of it had.
    rows: Option<Vec<usize>>,
    /// Whether the job's savepoint is queued or sent (then it is undone by rolling back to it).
    saved: bool,
}

/// The writer's connection (see the module's docs).
pub(crate) struct Pipe {
    runtime: Runtime,
    client: Client,
    queued: Vec<Queued>,
    /// The first failure of a queued statement, once it is known.
    failure: Option<postgres::Error>,
    /// The job running, if any.
    job: Option<JobMark>,
    /// Whether the savepoint of a kept job is still open (released when the next is taken,
    /// or by the COMMIT).
    open: bool,
}

/// How a job ended, for [`Pipe::end_job`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobEnd {
    /// Kept; its savepoint, if taken, is left open.
    Kept,
    /// Kept, and its savepoint released already.
    Released,
    /// Undone.
    Undone,
}

type Early<'a> = Pin<Box<dyn Future<Output = Result<(), postgres::Error>> + 'a>>;

/// A request on the client, made when it is sent.
type Request<'c, T> = Pin<Box<dyn Future<Output = Result<T, postgres::Error>> + 'c>>;

impl Pipe {
    /// Connects with `config` (see `pg::connect_as`), TLS as `tls` says.
    pub(crate) fn connect(
        config: &tokio_postgres::Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
    ) -> Result<Pipe, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| StoreError::Corrupt(format!("no runtime for PostgreSQL: {error}")))?;
        let (client, connection) = runtime.block_on(config.connect(tls))?;
        // Driven whenever the writer waits for an answer (a current-thread runtime runs its
        // tasks inside `block_on`).
        runtime.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "the writer's PostgreSQL connection ended");
            }
        });
        Ok(Pipe {
            runtime,
            client,
            queued: Vec::new(),
            failure: None,
            job: None,
            open: false,
        })
    }

    /// Whether the connection is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The first failure of a queued statement since the last call, if any: the transaction is
    /// aborted then, and its batch must fail.
    pub(crate) fn take_failure(&mut self) -> Option<postgres::Error> {
        self.failure.take()
    }

    /// Forgets what is queued and the failure seen (after a rollback).
    pub(crate) fn clear(&mut self) {
        self.queued.clear();
        self.failure = None;
        self.job = None;
        self.open = false;
    }

    /// Queues `sql`, the start of a transaction: no savepoint is open yet.
    pub(crate) fn start_transaction(&mut self, sql: &str) {
        self.job = None;
        self.open = false;
        self.queued.push(Queued::Batch(sql.to_owned()));
    }

    /// A job starts: what it writes from here on is undone if it is (see the module's docs).
    pub(crate) fn begin_job(&mut self) {
        let rows = match self.queued.last() {
            Some(Queued::Rows(inserts)) => Some(inserts.iter().map(|i| i.rows.len()).collect()),
            _ => None,
        };
        self.job = Some(JobMark {
            items: self.queued.len(),
            rows,
            saved: false,
        });
    }

    /// The running job ends. Undone: rolled back to its savepoint, or, if none was taken, its
    /// rows taken back out of the queue (nothing of it was sent).
    pub(crate) fn end_job(&mut self, end: JobEnd) {
        let Some(mark) = self.job.take() else {
            return;
        };
        match (end, mark.saved) {
            (JobEnd::Kept, saved) => self.open |= saved,
            (JobEnd::Released, _) => self.open = false,
            (JobEnd::Undone, true) => {
                self.open = false;
                self.queued.push(Queued::Batch(
                    "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job".to_owned(),
                ));
            }
            (JobEnd::Undone, false) => {
                self.queued.truncate(mark.items);
                if let (Some(counts), Some(Queued::Rows(inserts))) =
                    (&mark.rows, self.queued.last_mut())
                {
                    inserts.truncate(counts.len());
                    for (insert, kept) in inserts.iter_mut().zip(counts) {
                        insert.rows.truncate(*kept);
                    }
                }
            }
        }
    }

    /// Takes the running job's savepoint, if not yet: queued where the job began, so the rows
    /// queued since are undone with it and those of the jobs before are not.
    fn save_job(&mut self) {
        let Some(mark) = self.job.as_mut() else {
            return;
        };
        if mark.saved {
            return;
        }
        mark.saved = true;
        let at = mark.items;
        if let (Some(counts), Some(Queued::Rows(inserts))) = (
            &mark.rows,
            at.checked_sub(1).and_then(|last| self.queued.get_mut(last)),
        ) {
            let since: Vec<Inserts> = inserts
                .iter_mut()
                .enumerate()
                .filter_map(|(index, insert)| {
                    let before = counts.get(index).copied().unwrap_or(0);
                    (insert.rows.len() > before).then(|| Inserts {
                        text: insert.text.clone(),
                        one: insert.one.clone(),
                        many: insert.many.clone(),
                        rows: insert.rows.split_off(before),
                    })
                })
                .collect();
            inserts.retain(|insert| !insert.rows.is_empty());
            if !since.is_empty() {
                self.queued.insert(at, Queued::Rows(since));
            }
        }
        let sql = if self.open {
            "RELEASE SAVEPOINT job; SAVEPOINT job"
        } else {
            "SAVEPOINT job"
        };
        self.open = false;
        self.queued.insert(at, Queued::Batch(sql.to_owned()));
    }

    /// Runs a query that returns exactly one row.
    pub(crate) fn query_one(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        self.round_trip(|client| Box::pin(client.query_one(statement, params)))
    }

    /// Sends what is queued and then the request `make` makes, in one round trip; that
    /// request's answer. A queued statement's failure is kept for [`Pipe::take_failure`] (the
    /// request then fails too: the transaction is aborted).
    fn round_trip<'c, T>(
        &'c mut self,
        make: impl FnOnce(&'c Client) -> Request<'c, T>,
    ) -> Result<T, postgres::Error> {
        self.save_job();
        let mut queued = Vec::with_capacity(self.queued.len());
        for item in std::mem::take(&mut self.queued) {
            match item {
                Queued::Rows(inserts) => queued.extend(inserts.into_iter().map(|insert| {
                    let (statement, params) = insert.into_statement();
                    Queued::Execute(statement, params)
                })),
                other => queued.push(other),
            }
        }
        let client = &self.client;
        let early: Vec<Early<'_>> = queued
            .iter()
            .map(|item| -> Early<'_> {
                match item {
                    Queued::Execute(statement, params) => Box::pin(async move {
                        client.execute(statement, &bound(params)).await.map(drop)
                    }),
                    Queued::Batch(sql) => Box::pin(client.batch_execute(sql)),
                    // Made statements above.
                    Queued::Rows(_) => Box::pin(std::future::ready(Ok(()))),
                }
            })
            .collect();
        let (early, last) = self.runtime.block_on(in_order(early, make(client)));
        if let (Err(error), None) = (early, &self.failure) {
            self.failure = Some(error);
        }
        last
    }
}

impl Link for Pipe {
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        self.round_trip(|client| Box::pin(client.prepare(sql)))
    }

    fn query(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        self.round_trip(|client| Box::pin(client.query(statement, params)))
    }

    fn execute(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        self.round_trip(|client| Box::pin(client.execute(statement, params)))
    }

    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.round_trip(|client| Box::pin(client.batch_execute(sql)))
    }

    /// Queued, not sent.
    fn execute_later(
        &mut self,
        statement: &Statement,
        params: Vec<Param>,
    ) -> Result<(), postgres::Error> {
        self.save_job();
        self.queued.push(Queued::Execute(statement.clone(), params));
        Ok(())
    }

    /// Queued, not sent.
    fn batch_later(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.save_job();
        self.queued.push(Queued::Batch(sql.to_owned()));
        Ok(())
    }

    fn merges_rows(&self) -> bool {
        true
    }

    /// Queued with the rows of the same insert queued last, if nothing else came between.
    fn insert_later(
        &mut self,
        text: &str,
        one: &Statement,
        many: Option<&Statement>,
        row: Vec<Owned>,
    ) -> Result<(), postgres::Error> {
        let Some(many) = many else {
            return self.execute_later(one, boxed(row));
        };
        if !matches!(self.queued.last(), Some(Queued::Rows(_))) {
            self.queued.push(Queued::Rows(Vec::new()));
        }
        if let Some(Queued::Rows(inserts)) = self.queued.last_mut() {
            match inserts.iter_mut().find(|insert| insert.text == text) {
                Some(insert) => insert.rows.push(row),
                None => inserts.push(Inserts {
                    text: text.to_owned(),
                    one: one.clone(),
                    many: many.clone(),
                    rows: vec![row],
                }),
            }
        }
        Ok(())
    }
}

/// Polls `early` and then `last`, each first in that order (a tokio-postgres request is sent
/// when its future is first polled, so they go out in order and are answered in order), until
/// all are done: the first failure among `early`, and `last`'s answer.
async fn in_order<T>(
    early: Vec<Early<'_>>,
    last: impl Future<Output = Result<T, postgres::Error>>,
) -> (Result<(), postgres::Error>, Result<T, postgres::Error>) {
    let mut early: Vec<Option<Early<'_>>> = early.into_iter().map(Some).collect();
    let mut failure = None;
    let mut last = std::pin::pin!(last);
    let mut answer = None;
    let last_answer = std::future::poll_fn(|cx| {
        let mut waiting = false;
        for slot in &mut early {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        *slot = None;
                        if let (Err(error), None) = (result, &failure) {
                            failure = Some(error);
                        }
                    }
                    Poll::Pending => waiting = true,
                }
            }
        }
        if answer.is_none() {
            match last.as_mut().poll(cx) {
                Poll::Ready(result) => answer = Some(result),
                Poll::Pending => waiting = true,
            }
        }
        match (waiting, answer.take()) {
            (false, Some(result)) => Poll::Ready(result),
            (_, taken) => {
                answer = taken;
                Poll::Pending
            }
        }
    })
    .await;
    (failure.map_or(Ok(()), Err), last_answer)
}
