//! New ids: time-ordered (so lists page by id and rows append to their index) with 80 random
//! bits (so ids can't be guessed: a checkout URL is a capability).

use std::time::{SystemTime, UNIX_EPOCH};

use farthing_core::ids::time_ordered_raw;
use farthing_core::PublicId;

/// Now by the clock ids are made with (the system's, whatever clock the service reads), in
/// nanoseconds since the Unix epoch.
pub fn system_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A new id of type `T`.
pub fn new_id<T: PublicId>() -> T {
    let unix_ms = system_now_ns() / 1_000_000;
    let mut bytes = [0u8; 16];
    // The OS random source failing is not recoverable; fall back to the clock's nanoseconds
    // mixed with a counter rather than panic, and log it.
    if let Err(error) = getrandom::fill(&mut bytes) {
        tracing::error!(%error, "OS random source failed; ids fall back to clock entropy");
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&count.to_be_bytes());
        bytes[8..12].copy_from_slice(&nanos.to_be_bytes());
    }
    T::from_raw(time_ordered_raw(unix_ms, u128::from_be_bytes(bytes)))
}

/// A new id of type `T` that sorts after every id this process made before: for events,
/// whose list order must follow creation even within one millisecond. Not for ids that act
/// as capabilities (invoices): a successor is easy to guess.
pub fn new_sequential_id<T: PublicId>() -> T {
    static LAST: std::sync::Mutex<u128> = std::sync::Mutex::new(0);
    let candidate = new_id::<T>().raw();
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let next = if candidate > *last {
        candidate
    } else {
        last.saturating_add(1)
    };
    *last = next;
    T::from_raw(next)
}
