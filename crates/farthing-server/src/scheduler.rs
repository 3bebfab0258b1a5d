//! Background work on a timer: expiring open invoices whose time ran out (reading only what
//! expires, through the `invoice_expiries` schedule), and forgetting idempotency keys older
//! than the configured time to live.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use farthing_core::PublicId;

use crate::api::emit;
use crate::error::ApiError;
use crate::render;
use crate::state::{AppState, Mode};

/// Most invoices expired in one job.
const EXPIRE_PER_JOB: usize = 500;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Expires due invoices in `mode`; returns how many.
pub async fn expire_invoices(state: &AppState, mode: Mode) -> Result<usize, ApiError> {
    let checkout = state.checkout_url("");
    let expired = state
        .store(mode)
        .run(move |tx| -> Result<usize, ApiError> {
            let mut expired = 0;
            for id in tx.due_invoices(EXPIRE_PER_JOB)? {
                let Some(mut invoice) = tx.invoice(id)? else {
                    tx.unschedule_invoice(id)?;
                    continue;
                };
                if invoice.expire(tx.now_ns()) {
                    tx.update_invoice(&invoice)?;
                    let url = format!("{checkout}{}", invoice.id.encode());
                    let object = render::invoice(&invoice, mode, &url);
                    emit(tx, invoice.merchant, mode, "invoice.expired", object)?;
                    expired += 1;
                } else if invoice.status != farthing_core::invoice::InvoiceStatus::Open {
                    // Paid or canceled in the meantime: the entry is stale.
                    tx.unschedule_invoice(id)?;
                }
            }
            Ok(expired)
        })
        .await??;
    if expired > 0 {
        state.deliveries().notify_one();
    }
    // The payment bot edits the messages it posted for invoices closed since (expired now, or
    // paid or canceled elsewhere) to say so.
    crate::telegram::bot::sweep(state, mode);
    Ok(expired)
}

/// Runs until `shutdown` fires.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut last_cleanup = std::time::Instant::now();
    loop {
        let mut next: Option<u64> = None;
        for mode in [Mode::Live, Mode::Test] {
            loop {
                match expire_invoices(&state, mode).await {
                    Ok(n) if n >= EXPIRE_PER_JOB => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::error!(error = %error.message, "invoice expiry failed");
                        break;
                    }
                }
            }
            if let Ok(Some(at)) = state.store(mode).read(|r| r.next_invoice_expiry()) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        if last_cleanup.elapsed() > Duration::from_secs(600) {
            last_cleanup = std::time::Instant::now();
            let before = now_ns().saturating_sub(state.config().idempotency_ttl_s * 1_000_000_000);
            for (_, store) in state.stores() {
                let _ = store
                    .run(move |tx| tx.expire_idempotency_keys(before))
                    .await;
            }
        }
        let sleep = next.map_or(Duration::from_secs(1), |at| {
            Duration::from_nanos(at.saturating_sub(now_ns()))
                .clamp(Duration::from_millis(20), Duration::from_secs(1))
        });
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
    }
}
