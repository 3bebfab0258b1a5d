//! What several farthing instances on one PostgreSQL database share besides the data.
//!
//! - **News of changes** that per-process caches must drop (a revoked API key, new risk rules)
//!   or that another instance's background work waits for (events in the outbox, a rail
//!   configured). Sent with PostgreSQL's `NOTIFY` on the channel `farthing`, inside the
//!   transaction of the change (`Tx::announce`), so it is delivered
//!   exactly when the change is committed, and not at all when it is not. Each instance keeps a
//!   [`Listener`]; while it is not connected, it cannot know what changed, and says so
//!   ([`Heard::Deaf`]), so caches are not trusted until it is back ([`Heard::Listening`]).
//! - **Leadership** of the background work that must run on one instance at a time (webhook
//!   attempts, invoice expiries, renewals and reminders, Telegram long polling, Lightning
//!   streams, the TON watcher): a session advisory lock per schema ([`Leadership`]). The
//!   instances that do not hold it try again every second, so when the leader stops or dies
//!   (its session ends), another takes over within about a second.
//!
//! On SQLite one process owns the database (its lock file), so there is nothing to share and
//! the store neither announces nor listens.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use crate::StoreError;

pub use crate::topics::Topic;

/// What a [`Listener`] hears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Listening (again): anything announced before may have been missed, so drop what is
    /// cached; from now on every change is heard.
    Listening,
    /// The listening session was lost: changes may go unheard until [`Heard::Listening`], so
    /// do not trust caches meanwhile.
    Deaf,
    /// A change was committed.
    Changed(Topic),
}

/// How often a listener's thread looks whether it should stop, and how long it waits before
/// connecting again.
const LISTEN_TICK: Duration = Duration::from_millis(500);

/// Listens for the changes announced on one schema, on a session of its own, and tells
/// `on_heard` (from its thread). Stops when dropped.
pub struct Listener {
    _thread: Stopping,
}

/// A background thread's stop signal, and the channel that tells when it has ended: dropping
/// it stops the thread and waits a little for it (one stuck on an unreachable server is left
/// behind; it ends with its session).
struct Stopping {
    stop: Option<mpsc::Sender<()>>,
    /// In a mutex only so that the owner is `Sync`.
    ended: Mutex<mpsc::Receiver<()>>,
}

impl Drop for Stopping {
    fn drop(&mut self) {
        drop(self.stop.take());
        let ended = self
            .ended
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = ended.recv_timeout(Duration::from_secs(2));
    }
}

impl Listener {
    /// Starts listening on the schema `url` names. Returns once the first session listens
    /// (having told [`Heard::Listening`]), or with the error that kept it from connecting.
    pub fn start(
        url: &str,
        on_heard: impl Fn(Heard) + Send + 'static,
    ) -> Result<Listener, StoreError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let (ready, answer) = mpsc::channel();
        let (end, ended) = mpsc::channel::<()>();
        let url = url.to_owned();
        std::thread::Builder::new()
            .name("farthing-pg-listen".to_owned())
            .spawn(move || {
                let _end = end;
                let mut ready = Some(ready);
                loop {
                    match listen(&url) {
                        Ok((mut client, schema)) => {
                            on_heard(Heard::Listening);
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(Ok(()));
                            }
                            let ended = hear(&mut client, &schema, &stopped, &on_heard);
                            if ended {
                                return;
                            }
                            tracing::warn!(
                                "the PostgreSQL listening session was lost; reconnecting"
                            );
                            on_heard(Heard::Deaf);
                        }
                        Err(error) => {
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(Err(error));
                                return;
                            }
                            tracing::warn!(%error, "cannot listen on PostgreSQL; trying again");
                        }
                    }
                    if !matches!(
                        stopped.recv_timeout(LISTEN_TICK),
                        Err(RecvTimeoutError::Timeout)
                    ) {
                        return;
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        match answer.recv() {
            Ok(Ok(())) => Ok(Listener {
                _thread: Stopping {
                    stop: Some(stop),
                    ended: Mutex::new(ended),
                },
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::Refused(
                "the PostgreSQL listener could not start".to_owned(),
            )),
        }
    }
}

/// A session listening on the channel, and the schema whose news it passes on.
fn listen(url: &str) -> Result<(Client, String), StoreError> {
    let mut client = crate::pg::connect_as(url, "farthing-listen")?;
    client.batch_execute("SET idle_session_timeout = 0; LISTEN farthing")?;
    let schema: String = client
        .query_one("SELECT current_schema()::text", &[])?
        .try_get(0)?;
    Ok((client, schema))
}

/// Passes on what the session hears until it is told to stop (`true`) or the session is lost
/// (`false`).
fn hear(
    client: &mut Client,
    schema: &str,
    stopped: &mpsc::Receiver<()>,
    on_heard: &impl Fn(Heard),
) -> bool {
    loop {
        let mut notifications = client.notifications();
        let mut heard = notifications.timeout_iter(LISTEN_TICK);
        let lost = loop {
            // Told to stop: even under a steady stream of news.
            if !matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                return true;
            }
            match heard.next() {
                Ok(Some(notification)) => {
                    let payload = notification.payload();
                    // `<schema> <topic>`: a topic has no space, a schema name may.
                    let Some((from, topic)) = payload.rsplit_once(' ') else {
                        continue;
                    };
                    if from != schema {
                        continue;
                    }
                    if let Some(topic) = Topic::parse(topic) {
                        on_heard(Heard::Changed(topic));
                    }
                }
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        drop(heard);
        drop(notifications);
        if lost {
            return false;
        }
        if !matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Empty)) {
            return true;
        }
        if client.is_closed() || client.is_valid(LISTEN_TICK * 4).is_err() {
            return false;
        }
    }
}

/// Leadership of one role on a schema: held by at most one instance at a time (a session
/// advisory lock on a connection of its own), asked for again every second by the others, and
/// let go when the holder stops or dies (the server ends its session).
///
/// The holder checks its session every second. If the session is gone (a server restart or
/// failover, `pg_terminate_backend`), the lock may already be another's: the holder steps down
/// (`on_change(false)`) and asks again like the others. A slow answer is not a lost session,
/// but five checks in a row without an answer (about 20 s) are: a network cut leaves the
/// client's socket open for many minutes, while the server ends the silent session, and frees
/// the lock, only after about a minute (its keepalives), so the holder has stepped down before
/// another can lead. A session ended by the server while the network still works is noticed
/// at the next check: for about a second two instances may then both believe they lead. The
/// work a leader does is safe twice (jobs check state before they change it, and each webhook
/// attempt is claimed in a job first).
pub struct Leadership {
    _thread: Stopping,
}

/// How often leadership is asked for, and the holder's session checked.
const LEAD_CHECK: Duration = Duration::from_secs(1);

/// Checks in a row left unanswered (each waits up to 3 s, a second apart: about 20 s) after
/// which a session is given up, and a leader steps down.
const LEAD_SILENCE: u32 = 5;

/// The lock of `role` on the session's schema.
const LEAD_SQL: &str =
    "SELECT pg_try_advisory_lock(hashtext('farthing ' || $1 || ' ' || current_schema()))";
const UNLEAD_SQL: &str =
    "SELECT pg_advisory_unlock(hashtext('farthing ' || $1 || ' ' || current_schema()))";

/// The role whose leader runs the background work of a database (the server's scheduler,
/// webhook worker, rails): any running farthing server on it leads it or follows its leader.
pub const BACKGROUND: &str = "leader";

/// The lock every instance asking for leadership holds shared on the schema, leader or not,
/// for as long as its leadership session lives; maintenance that no server may run beside
/// (the secrets key's rotation) holds it alone ([`ALONE_SQL`]).
macro_rules! serving_key {
    () => {
        "hashtext('farthing serving ' || current_schema())"
    };
}
const SERVING_SQL: &str = concat!("SELECT pg_try_advisory_lock_shared(", serving_key!(), ")");
/// The serving lock, alone.
const ALONE_SQL: &str = concat!("SELECT pg_try_advisory_lock(", serving_key!(), ")");

/// A session holding the schema `url` names for maintenance, alone, for as long as it lives;
/// `None` while an instance serves it (each holds the serving lock shared), or another
/// maintenance holds it. An instance that starts meanwhile is refused.
pub(crate) fn alone(url: &str) -> Result<Option<Client>, StoreError> {
    let mut client = crate::pg::connect_as(url, "farthing-maintenance")?;
    // Not ended for being idle while it holds the lock (PostgreSQL 14+ can end idle sessions).
    client.batch_execute("SET idle_session_timeout = 0")?;
    let alone: bool = client.query_one(ALONE_SQL, &[])?.try_get(0)?;
    Ok(alone.then_some(client))
}

/// A session for asking: never ended for being idle (PostgreSQL 14+ can end idle sessions),
/// and, over TCP, the server notices within about a minute that the instance's machine is gone
/// (its own keepalives), so the lock of a dead instance does not block the next for hours. It
/// holds the serving lock shared ([`SERVING_SQL`]), and is refused while maintenance holds it.
fn candidate(url: &str) -> Result<Client, StoreError> {
    let mut client = crate::pg::connect_as(url, "farthing-leader")?;
    client.batch_execute(
        "SET idle_session_timeout = 0; SET tcp_keepalives_idle = 30; \
         SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3",
    )?;
    let serving: bool = client.query_one(SERVING_SQL, &[])?.try_get(0)?;
    if !serving {
        return Err(StoreError::Refused(
            "the database is held for maintenance (farthing rotate-secrets-key is running): \
             start again once it is done, with the key it sealed the secrets under"
                .to_owned(),
        ));
    }
    Ok(client)
}

impl Leadership {
    /// Asks for leadership of `role` on the schema `url` names, now and then every second
    /// until dropped. `on_change(true)` when this instance becomes the leader, `on_change(false)`
    /// when it stops being one (from the leadership's thread). Returns once the first answer
    /// is in (and told), or with the error that kept it from asking.
    pub fn campaign(
        url: &str,
        role: &str,
        mut on_change: impl FnMut(bool) + Send + 'static,
    ) -> Result<Leadership, StoreError> {
        let (ready, answer) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let (end, ended) = mpsc::channel::<()>();
        let (url, role) = (url.to_owned(), role.to_owned());
        std::thread::Builder::new()
            .name("farthing-pg-leader".to_owned())
            .spawn(move || {
                let _end = end;
                let mut ready = Some(ready);
                let mut session: Option<Client> = None;
                let mut leading = false;
                let mut unanswered = 0;
                loop {
                    let asked = ask(&url, &role, &mut session, leading, &mut unanswered);
                    match asked {
                        Ok(now) => {
                            if now != leading {
                                leading = now;
                                if leading {
                                    tracing::info!(role, "this instance leads now");
                                } else {
                                    tracing::warn!(
                                        role,
                                        "this instance's leadership session was lost: it steps down"
                                    );
                                }
                                on_change(leading);
                            }
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(Ok(()));
                            }
                        }
                        Err(error) => {
                            if leading {
                                leading = false;
                                tracing::warn!(role, %error, "leadership lost with its session: this instance steps down");
                                on_change(false);
                            }
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(Err(error));
                                return;
                            }
                            tracing::warn!(role, %error, "cannot ask PostgreSQL for leadership; trying again");
                        }
                    }
                    if !matches!(stopped.recv_timeout(LEAD_CHECK), Err(RecvTimeoutError::Timeout)) {
                        break;
                    }
                }
                // Let go before the session closes: the server ends a closed session's locks
                // only once its backend has exited, and the next leader should not wait.
                if let (true, Some(mut client)) = (leading, session) {
                    let _ = client.query_one(UNLEAD_SQL, &[&role]);
                }
            })
            .map_err(StoreError::Thread)?;
        let leadership = Leadership {
            _thread: Stopping {
                stop: Some(stop),
                ended: Mutex::new(ended),
            },
        };
        match answer.recv() {
            Ok(Ok(())) => Ok(leadership),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::Refused(
                "the PostgreSQL leadership could not be asked for".to_owned(),
            )),
        }
    }
}

/// One round: whether this instance leads now. A leader whose session is gone leads no more
/// (the lock went with it); a leader whose session answers slowly still leads.
fn ask(
    url: &str,
    role: &str,
    session: &mut Option<Client>,
    leading: bool,
    unanswered: &mut u32,
) -> Result<bool, StoreError> {
    if let Some(client) = session.as_mut() {
        let answers = client.is_valid(LEAD_CHECK * 3).is_ok();
        *unanswered = if answers { 0 } else { *unanswered + 1 };
        // Gone, or silent for long enough that the server may have ended it (its keepalives
        // end a dead peer's session within about a minute; the client's own socket can take
        // far longer to notice): the lock may be another's by now.
        if client.is_closed() || *unanswered >= LEAD_SILENCE {
            *session = None;
            *unanswered = 0;
            return Ok(false);
        }
        if leading {
            return Ok(true);
        }
        if !answers {
            return Ok(false);
        }
    }
    let client = match session {
        Some(client) => client,
        None => session.insert(candidate(url)?),
    };
    match client.query_one(LEAD_SQL, &[&role]) {
        Ok(row) => Ok(row.try_get(0)?),
        Err(error) => {
            if client.is_closed() {
                *session = None;
            }
            Err(error.into())
        }
    }
}
