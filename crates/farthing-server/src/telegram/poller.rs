//! Long polling (`getUpdates`) for the bots connected in `polling` mode: the way updates arrive
//! when farthing has no public HTTPS URL for Telegram to push them to (SPEC RL2).
//!
//! One background task ([`run`], started with the server) looks at both stores for bots with
//! `mode = 'polling'` at start, whenever a bot is connected or reconfigured
//! ([`crate::rails::telegram::TelegramRails::bots_changed`]) and every few seconds, and keeps one polling loop per
//! bot. Each loop asks `getUpdates` with a long-poll timeout (`telegram.poll_timeout_s`), hands
//! every update to [`handle_update`] — the same function the webhook uses — and records the next
//! offset in the store (`telegram_poll_offsets`) only after the update was handled. Telegram
//! forgets updates below the offset a later call sends, and a restart polls from the stored
//! offset, so an update is handled again only if farthing stopped between handling it and
//! recording it (handling is idempotent: settlement by `telegram_payment_charge_id`, customers
//! by `tg:<id>`).
//!
//! - An update that could not be handled now (the database failed) is retried with backoff,
//!   never skipped: skipping a `successful_payment` would lose money. One that can never be
//!   handled (it does not decode; handling refused it as invalid) is skipped with a warning.
//! - `429` waits `retry_after`; transport errors and `5xx` back off (up to a minute).
//! - `409` because a webhook is set: `deleteWebhook` once (after checking that the bot is still
//!   in `polling` mode: it may just have been switched to `webhook`), then polling goes on.
//! - `409` because another `getUpdates` is running: Telegram allows **one consumer per bot**,
//!   so only one farthing instance may poll a bot; this one backs off and logs.
//! - `401`: the token was revoked; the loop waits until the bot is reconnected.
//!
//! A bot connected in polling mode in both the live and the test store is polled once, for the
//! most recently connected of the two (as Telegram delivers a webhook's updates to the last
//! URL set).
//!
//! Architecture invariant: this module moves no money; it only carries updates to
//! [`handle_update`] and remembers how far it got.

use std::collections::HashMap;
use std::time::Duration;

use farthing_store::TelegramBot;
use farthing_telegram::BotToken;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use farthing_app::AppError;
use farthing_botapi::{BotApiError, BotClient, Update};

use super::webhook::handle_update;
use crate::rails::telegram::ALLOWED_UPDATES;
use crate::state::{AppState, Mode};

/// How often the stores are re-read for bots connected, reconfigured or switched away from
/// polling, besides the wake-up a `PUT /v1/rails/stars` gives.
const RESCAN_INTERVAL: Duration = Duration::from_secs(5);

/// Time limit of a `getUpdates` call on top of its long-poll time, and of `deleteWebhook`.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The first and the longest wait after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Longest `retry_after` honoured as given (a larger one is capped: Telegram's are seconds).
const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);

/// The polling loop of one bot and what it was started with (to notice a reconfiguration).
struct Loop {
    mode: Mode,
    bot: TelegramBot,
    task: JoinHandle<()>,
}

/// Runs until `shutdown` turns true, keeping one polling loop per bot in `polling` mode.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut loops: HashMap<u64, Loop> = HashMap::new();
    loop {
        match polling_bots(&state) {
            Ok(wanted) => reconcile_loops(&state, &shutdown, &mut loops, wanted),
            Err(error) => {
                tracing::warn!(%error, "could not read the bots to poll; trying again");
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = bots_changed(&state) => {}
            _ = tokio::time::sleep(RESCAN_INTERVAL) => {}
        }
    }
    for (_, running) in loops.drain() {
        // Each loop watches `shutdown` itself and ends its long poll at once.
        let _ = running.task.await;
    }
}

/// Resolves when a bot is connected or reconfigured (never, without the Telegram rails).
async fn bots_changed(state: &AppState) {
    match state.rails().telegram() {
        Some(telegram) => telegram.bots_changed().notified().await,
        None => std::future::pending().await,
    }
}

/// The bots to poll, by bot id: for a bot polling in both stores, the last connected.
fn polling_bots(state: &AppState) -> Result<HashMap<u64, (Mode, TelegramBot)>, AppError> {
    let mut wanted: HashMap<u64, (Mode, TelegramBot)> = HashMap::new();
    for (mode, store) in state.stores() {
        for bot in store
            .read(|reader| reader.telegram_polling_bots())
            .map_err(AppError::from)?
        {
            let newer = wanted
                .get(&bot.bot_id)
                .is_none_or(|(_, other)| bot.updated_at_ns > other.updated_at_ns);
            if newer {
                wanted.insert(bot.bot_id, (mode, bot));
            }
        }
    }
    Ok(wanted)
}

/// Stops the loops of bots no longer polled (or reconfigured) and starts the missing ones.
fn reconcile_loops(
    state: &AppState,
    shutdown: &watch::Receiver<bool>,
    loops: &mut HashMap<u64, Loop>,
    mut wanted: HashMap<u64, (Mode, TelegramBot)>,
) {
    loops.retain(|bot_id, running| {
        let keep = !running.task.is_finished()
            && wanted
                .get(bot_id)
                .is_some_and(|(mode, bot)| *mode == running.mode && *bot == running.bot);
        if !keep {
            running.task.abort();
        }
        keep
    });
    for (bot_id, (mode, bot)) in wanted.drain() {
        if loops.contains_key(&bot_id) {
            continue;
        }
        tracing::info!(bot_id, username = %bot.username, ?mode, "polling the Bot API for updates");
        let task = tokio::spawn(poll_bot(state.clone(), mode, bot.clone(), shutdown.clone()));
        loops.insert(bot_id, Loop { mode, bot, task });
    }
}

/// Sleeps `wait`, or less if the server stops; false when it stops.
async fn pause(shutdown: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    let stopped = tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => true,
        _ = tokio::time::sleep(wait) => false,
    };
    !stopped && !*shutdown.borrow()
}

fn next_backoff(backoff: Duration) -> Duration {
    backoff.saturating_mul(2).min(BACKOFF_MAX)
}

/// How long Telegram asked to wait, if it did.
fn retry_after(error: &BotApiError) -> Option<Duration> {
    error
        .retry_after()
        .map(|s| Duration::from_secs(s).clamp(Duration::from_secs(1), RETRY_AFTER_MAX))
}

/// Whether the bot is still connected in polling mode as `bot` describes it.
fn still_polling(state: &AppState, mode: Mode, bot: &TelegramBot) -> bool {
    let merchant = bot.merchant;
    matches!(
        state.store(mode).read(move |reader| reader.telegram_bot(merchant)),
        Ok(Some(current)) if current == *bot
    )
}

/// The polling loop of one bot.
async fn poll_bot(
    state: AppState,
    mode: Mode,
    bot: TelegramBot,
    mut shutdown: watch::Receiver<bool>,
) {
    let bot_id = bot.bot_id;
    let client = match BotToken::parse(&bot.token)
        .map_err(|_| "the stored token is unreadable".to_owned())
        .and_then(|token| {
            BotClient::new(&bot.api_url, token, CALL_TIMEOUT).map_err(|e| e.to_string())
        }) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(bot_id, %error, "cannot poll this bot");
            // Ended: the supervisor starts a new loop once the bot is reconnected.
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
    };
    let timeout_s = state.config().telegram.poll_timeout_s;
    let mut offset = match state
        .store(mode)
        .read(move |reader| reader.telegram_poll_offset(bot_id))
    {
        Ok(offset) => offset,
        Err(error) => {
            tracing::warn!(bot_id, %error, "could not read the polling offset; polling from Telegram's");
            None
        }
    };
    let mut backoff = BACKOFF_MIN;
    let mut deleted_webhook = false;
    loop {
        let polled = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            polled = client.get_updates(offset, timeout_s, Some(ALLOWED_UPDATES)) => polled,
        };
        let updates = match polled {
            Ok(updates) => {
                backoff = BACKOFF_MIN;
                updates
            }
            Err(error) => {
                let wait = match error.error_code() {
                    Some(409) if error.to_string().contains("webhook") => {
                        // The bot may have just been switched to `webhook` (setWebhook is
                        // called before the switch is stored): look again before undoing it.
                        if !pause(&mut shutdown, Duration::from_secs(1)).await {
                            return;
                        }
                        if !still_polling(&state, mode, &bot) {
                            return;
                        }
                        if deleted_webhook {
                            tracing::warn!(bot_id, "a webhook is set again for a bot in polling mode; reconnect the bot with PUT /v1/rails/stars");
                            backoff
                        } else {
                            deleted_webhook = true;
                            tracing::warn!(
                                bot_id,
                                "a webhook is set for a bot in polling mode; deleting it"
                            );
                            if let Err(error) = client.delete_webhook(false).await {
                                tracing::warn!(bot_id, %error, "deleteWebhook failed");
                            }
                            Duration::ZERO
                        }
                    }
                    Some(409) => {
                        tracing::warn!(bot_id, %error, "another getUpdates consumer polls this bot: only one farthing instance may poll a bot");
                        backoff
                    }
                    Some(401) => {
                        tracing::error!(bot_id, "Telegram refused the bot token (revoked?); polling stops until the bot is reconnected");
                        let _ = shutdown.wait_for(|stop| *stop).await;
                        return;
                    }
                    _ => {
                        tracing::warn!(bot_id, %error, "getUpdates failed; retrying");
                        retry_after(&error).unwrap_or(backoff)
                    }
                };
                backoff = next_backoff(backoff);
                if !wait.is_zero() && !pause(&mut shutdown, wait).await {
                    return;
                }
                continue;
            }
        };
        for update in updates {
            if offset.is_some_and(|next| update.update_id < next) {
                // Already handled (Telegram sent it again before it saw our offset).
                continue;
            }
            if !handle_with_retry(&state, mode, &bot, &update, &mut shutdown).await {
                return;
            }
            let next = update.update_id.saturating_add(1);
            if !record_offset(&state, mode, bot_id, next, &mut shutdown).await {
                return;
            }
            offset = Some(next);
        }
    }
}

/// Handles `update`, retrying with backoff while the failure is one that may pass. False when
/// the server stops first (the update is then handled after the restart).
async fn handle_with_retry(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    update: &Update,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = BACKOFF_MIN;
    loop {
        match handle_update(state, mode, bot, update).await {
            Ok(()) => return true,
            Err(error) if !error.is_refusal() => {
                tracing::error!(bot_id = bot.bot_id, update_id = update.update_id, code = error.code(), %error, "an update could not be handled; retrying (it is not skipped)");
            }
            Err(error) => {
                tracing::warn!(bot_id = bot.bot_id, update_id = update.update_id, code = error.code(), %error, "an update was refused and is skipped");
                return true;
            }
        }
        if !pause(shutdown, backoff).await {
            return false;
        }
        backoff = next_backoff(backoff);
    }
}

/// Stores that updates below `next` are handled, retrying while the store fails.
async fn record_offset(
    state: &AppState,
    mode: Mode,
    bot_id: u64,
    next: i64,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = BACKOFF_MIN;
    loop {
        let stored = state
            .store(mode)
            .run(move |tx| tx.set_telegram_poll_offset(bot_id, next))
            .await;
        match stored {
            Ok(Ok(())) => return true,
            Ok(Err(error)) => {
                tracing::warn!(bot_id, %error, "could not store the polling offset; retrying")
            }
            Err(error) => {
                tracing::warn!(bot_id, %error, "could not store the polling offset; retrying")
            }
        }
        if !pause(shutdown, backoff).await {
            return false;
        }
        backoff = next_backoff(backoff);
    }
}
