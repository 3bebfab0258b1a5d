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

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use postgres::types::ToSql;
use postgres::{Row, Statement};
use tokio::runtime::Runtime;
use tokio_postgres::Client;

use crate::sql::{bound, Link, Param};
use crate::StoreError;

/// A statement waiting to be sent with the next one.
enum Queued {
    Execute(Statement, Vec<Param>),
    /// Statements without parameters or results (savepoints), in the simple protocol.
    Batch(String),
}

/// The writer's connection (see the module's docs).
pub(crate) struct Pipe {
    runtime: Runtime,
    client: Client,
    queued: Vec<Queued>,
    /// The first failure of a queued statement, once it is known.
    failure: Option<postgres::Error>,
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
        let queued = std::mem::take(&mut self.queued);
        let client = &self.client;
        let early: Vec<Early<'_>> = queued
            .iter()
            .map(|item| -> Early<'_> {
                match item {
                    Queued::Execute(statement, params) => Box::pin(async move {
                        client.execute(statement, &bound(params)).await.map(drop)
                    }),
                    Queued::Batch(sql) => Box::pin(client.batch_execute(sql)),
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
        self.queued.push(Queued::Execute(statement.clone(), params));
        Ok(())
    }

    /// Queued, not sent.
    fn batch_later(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.queued.push(Queued::Batch(sql.to_owned()));
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
