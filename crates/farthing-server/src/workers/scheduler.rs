//! Background work on a timer: expiring open invoices whose time ran out (through the service,
//! which reads only what expires, through the `invoice_expiries` schedule), and forgetting
//! idempotency keys older than the configured time to live. It waits on the service's clock,
//! so a test's manual clock moves it without anyone sleeping.

use std::time::Duration;

use farthing_app::invoices::{self, EXPIRE_PER_JOB};
use farthing_app::AppError;

use crate::state::{AppState, Mode};

/// How often idempotency keys past their time to live are forgotten.
const CLEANUP_INTERVAL_NS: u64 = 600 * 1_000_000_000;

/// Expires due invoices in `mode`; returns how many.
pub async fn expire_invoices(state: &AppState, mode: Mode) -> Result<usize, AppError> {
    let expired = invoices::expire_due(state.app(), mode).await?;
    // The payment bot edits the messages it posted for invoices closed since (expired now, or
    // paid or canceled elsewhere) to say so.
    crate::bot::sweep(state, mode);
    Ok(expired)
}

/// Runs until `shutdown` fires.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let clock = state.app().clock().clone();
    let mut last_cleanup_ns = clock.now_ns();
    loop {
        let mut next: Option<u64> = None;
        for mode in [Mode::Live, Mode::Test] {
            loop {
                match expire_invoices(&state, mode).await {
                    Ok(n) if n >= EXPIRE_PER_JOB => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::error!(%error, "invoice expiry failed");
                        break;
                    }
                }
            }
            if let Ok(Some(at)) = invoices::next_expiry(state.app(), mode) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        let now_ns = clock.now_ns();
        if now_ns.saturating_sub(last_cleanup_ns) > CLEANUP_INTERVAL_NS {
            last_cleanup_ns = now_ns;
            let before = now_ns.saturating_sub(state.config().idempotency_ttl_s * 1_000_000_000);
            for (_, store) in state.stores() {
                let _ = store
                    .run(move |tx| tx.expire_idempotency_keys(before))
                    .await;
                // Expired sign-in challenges are kept an hour (their status page says
                // "expired"), then forgotten.
                let challenges = now_ns.saturating_sub(3_600 * 1_000_000_000);
                let _ = store
                    .run(move |tx| tx.forget_expired_lnurl_auth(challenges))
                    .await;
            }
        }
        let sleep = next.map_or(Duration::from_secs(1), |at| {
            Duration::from_nanos(at.saturating_sub(clock.now_ns()))
                .clamp(Duration::from_millis(20), Duration::from_secs(1))
        });
        tokio::select! {
            _ = clock.sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
    }
}
