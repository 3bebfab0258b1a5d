//! Background workers: the scheduler (invoice expiry, idempotency-key cleanup) and the webhook
//! delivery worker. Each runs until the server stops. (The rails' own work — streams, polling,
//! reconciliation — is theirs; the bot's reminders are the bot's.)
//!
//! All of this background work runs on one instance at a time: the one that leads ([`lead`]).

pub mod scheduler;
pub mod webhooks;

use std::time::Duration;

use tokio::sync::watch;

use crate::state::{AppState, Mode};

pub use webhooks::{check_url as check_webhook_url, generate_secret as new_webhook_secret};

/// Runs the background work while this instance leads (always, on SQLite; on PostgreSQL while
/// it holds the leadership, see `farthing_store::instances`), until `shutdown` fires. The work
/// is started when leadership is gained and stopped when it is lost (letting attempts under way
/// finish). While another instance leads, this one tells it when its own writes queued webhook
/// deliveries, so that webhooks leave as fast as from the leader's own writes.
///
/// `start` starts the leader's work (the composition root knows what it is) and answers its
/// tasks, which end when the receiver it is given fires.
pub async fn lead(
    state: AppState,
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    start: impl Fn(&AppState, &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>>,
) {
    loop {
        let leads = *leading.borrow_and_update();
        state.metrics().set_leader(leads);
        let (stop, stopped) = watch::channel(false);
        let tasks = if leads {
            if state.store(Mode::Live).is_shared() {
                tracing::info!("this instance runs the background work now");
            }
            start(&state, &stopped)
        } else {
            vec![tokio::spawn(forward_outbox(state.clone(), stopped))]
        };
        let changed = tokio::select! {
            changed = leading.changed() => changed.is_ok(),
            _ = shutdown.wait_for(|stop| *stop) => false,
        };
        if !changed {
            // No leadership to lose (SQLite: this process is the only one), or stopping: the
            // work runs until shutdown.
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
        let stopping = !changed;
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        if stopping || *shutdown.borrow() {
            return;
        }
        if leads {
            tracing::warn!("this instance no longer leads: its background work stopped");
        }
    }
}

/// Gathers wake-ups for a few milliseconds into one announcement.
const FORWARD_DEBOUNCE: Duration = Duration::from_millis(5);

/// While another instance leads: after each of this instance's commits that queued webhook
/// deliveries, tells the leader (through the live database; its listeners wake its webhook
/// worker).
async fn forward_outbox(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = state.deliveries().notified() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        tokio::time::sleep(FORWARD_DEBOUNCE).await;
        let store = state.store(Mode::Live).clone();
        let sent = tokio::task::spawn_blocking(move || {
            store.announce(farthing_store::instances::Topic::Outbox)
        })
        .await;
        if let Ok(Err(error)) = sent {
            // The leader's webhook worker also looks every second.
            tracing::warn!(%error, "cannot tell the leading instance of new webhook events");
        }
    }
}
