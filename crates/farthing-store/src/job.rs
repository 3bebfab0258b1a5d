//! Jobs: business writes that commit together with the ledger.
//!
//! A job is a closure run by the writer inside the batch's transaction, with a [`Tx`] that
//! reads and writes business rows and applies ledger groups. Each job runs inside its own
//! savepoint: if it returns `Err`, its SQL is rolled back and its ledger changes are undone,
//! and the rest of the batch is unaffected. Its caller is answered after the batch commits.
//!
//! Rules for job code: keep it short (it runs on the writer thread, between other callers'
//! writes), do no I/O other than through `Tx`, and read ledger balances through `Tx` (the
//! batch's in-memory state), never with SQL: ledger rows are written at the end of the batch.

use farthing_core::ledger::{AccountState, Group, GroupError, GroupOutcome};
use farthing_core::AccountId;

use crate::batch::BatchState;
use crate::sql::Db;
use crate::topics::Topic;
use crate::{StoreError, WriteError};

/// A job's view of the store inside the writer's transaction.
pub struct Tx<'a, 'b> {
    /// The batch's transaction (on either backend).
    pub(crate) db: Db<'a>,
    pub(crate) state: &'a mut BatchState<'b>,
    pub(crate) now_ns: u64,
    /// Webhook deliveries this job queued (counted even if a nested savepoint undid some: a
    /// caller uses it to wake the webhook worker after the commit, where a spare wake-up is
    /// harmless and a missed one is not).
    pub(crate) deliveries_queued: usize,
    /// What this job announced ([`Tx::announce`]), kept like `deliveries_queued`: the caller
    /// drops what it cached of those topics after the commit.
    pub(crate) announced: Vec<Topic>,
}

impl<'a> Tx<'a, '_> {
    /// Ledger time of this batch (the same for every job in it).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// How many webhook deliveries this job has queued so far (an event for which no
    /// endpoint asks queues none).
    pub fn deliveries_queued(&self) -> usize {
        self.deliveries_queued
    }

    /// The topics this job announced so far, on either backend: the instance that ran it drops
    /// what it cached of them after the commit (other instances on the database hear the
    /// announcement). Kept even if a nested savepoint undid the change: a spare forgetting
    /// costs a read.
    pub fn announced(&self) -> &[Topic] {
        &self.announced
    }

    /// Applies a ledger group: all of it, or (on `Ok(Err(_))`) nothing.
    pub fn apply(&mut self, group: &Group) -> Result<Result<GroupOutcome, GroupError>, StoreError> {
        self.state.apply(self.db, group, self.now_ns, false)
    }

    /// [`Tx::apply`] for a group whose transfer ids were just made at random (80 random bits
    /// after the time, as `new_id` makes them), so no earlier transfer has them: the store does not look
    /// for one (a read less). Should one exist after all, the transfers' unique key fails the
    /// batch when it is written, and nothing of it is stored: never booked twice.
    pub fn apply_fresh(
        &mut self,
        group: &Group,
    ) -> Result<Result<GroupOutcome, GroupError>, StoreError> {
        self.state.apply(self.db, group, self.now_ns, true)
    }

    /// An account with its totals as of this point of the batch.
    pub fn account(&mut self, id: AccountId) -> Result<Option<AccountState>, StoreError> {
        self.state.load_account(self.db, id)
    }

    /// Runs `work` inside a nested savepoint: if it returns `Err`, everything it wrote (SQL
    /// and ledger) is undone and the job goes on; if `Ok`, its writes stay part of the job.
    pub fn nested<T, E>(
        &mut self,
        work: impl FnOnce(&mut Tx<'_, '_>) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        self.db.run_later("SAVEPOINT nested")?;
        self.state.begin_job();
        let result = work(self);
        if result.is_ok() {
            self.state.end_job();
            self.db.run_later("RELEASE nested")?;
        } else {
            self.state.undo_job();
            self.db.run_later("ROLLBACK TO nested")?;
            self.db.run_later("RELEASE nested")?;
        }
        Ok(result)
    }

    /// Tells the other instances on this database that `topic` changed, when (and only if)
    /// this job commits (see `instances.rs`). Nothing is sent on SQLite, where one process
    /// owns the database; the topic is noted for this job's caller either way
    /// ([`Tx::announced`]).
    pub fn announce(&mut self, topic: Topic) -> Result<(), StoreError> {
        if !self.announced.contains(&topic) {
            self.announced.push(topic);
        }
        if self.db.is_postgres() {
            self.db
                .execute(crate::topics::NOTIFY_SQL, crate::sql::args![topic.as_str()])?;
        }
        Ok(())
    }

    /// The batch's transaction, on either backend.
    pub(crate) fn db(&self) -> Db<'a> {
        self.db
    }
}

/// The type-erased job the writer runs.
pub(crate) trait ErasedJob: Send {
    /// Runs the job; `true` keeps its changes, `false` undoes them.
    fn run(&mut self, tx: &mut Tx<'_, '_>) -> bool;
    /// Answers the caller once the batch committed (`None`) or failed.
    fn finish(self: Box<Self>, failure: Option<WriteError>);
    /// Whether the job has run (a job runs once).
    fn ran(&self) -> bool;
    /// Turns a job that returned `Ok` into a failure after its changes were undone (its
    /// transaction could not keep them): the caller gets `failure`.
    fn undone(&mut self, failure: WriteError);
}

pub(crate) type JobReply<T, E> = tokio::sync::oneshot::Sender<Result<Result<T, E>, WriteError>>;

pub(crate) struct Job<F, T, E> {
    pub(crate) work: Option<F>,
    pub(crate) result: Option<Result<T, E>>,
    /// Set when the job's changes were undone after it returned `Ok`.
    pub(crate) undone: Option<WriteError>,
    pub(crate) reply: JobReply<T, E>,
}

impl<F, T, E> ErasedJob for Job<F, T, E>
where
    F: FnOnce(&mut Tx<'_, '_>) -> Result<T, E> + Send,
    T: Send,
    E: Send,
{
    fn run(&mut self, tx: &mut Tx<'_, '_>) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(tx);
        let keep = result.is_ok();
        self.result = Some(result);
        keep
    }

    fn finish(self: Box<Self>, failure: Option<WriteError>) {
        let answer = match (failure.or(self.undone), self.result) {
            (Some(failure), _) => Err(failure),
            (None, Some(result)) => Ok(result),
            (None, None) => Err(WriteError::Failed("the job did not run".to_owned())),
        };
        let _ = self.reply.send(answer);
    }

    fn ran(&self) -> bool {
        self.work.is_none()
    }

    fn undone(&mut self, failure: WriteError) {
        self.undone = Some(failure);
    }
}

/// The answer to a job: `Err(WriteError)` when the batch did not commit; otherwise the job's
/// own result (an `Err` of the job wrote nothing).
pub struct JobTicket<T, E>(
    pub(crate) tokio::sync::oneshot::Receiver<Result<Result<T, E>, WriteError>>,
);

impl<T, E> JobTicket<T, E> {
    /// Blocks until the job committed or failed. Not for async code: `.await` it there.
    pub fn wait(self) -> Result<Result<T, E>, WriteError> {
        self.0.blocking_recv().unwrap_or(Err(WriteError::Closed))
    }
}

impl<T, E> std::future::Future for JobTicket<T, E> {
    type Output = Result<Result<T, E>, WriteError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(WriteError::Closed)))
    }
}
