//! Time, injected: every read of "now" in the service and its adapters goes through a
//! [`Clock`], so tests move time instead of sleeping through expiries.
//!
//! Ids are the one exception: they embed the wall clock's milliseconds so that they sort by
//! creation (`ids`), which is about identity, not about what time the business rules see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

/// Where "now" comes from: the system's wall clock, or a clock a test sets and advances.
#[derive(Clone)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
    /// Woken whenever a manual clock moves, so that workers waiting for a time re-check it.
    moved: Arc<Notify>,
}

struct Manual {
    now_ns: AtomicU64,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(manual) => write!(f, "Clock::manual({})", manual.now_ns.load(Ordering::SeqCst)),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

/// The wall clock as nanoseconds since the Unix epoch.
fn system_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock {
            manual: None,
            moved: Arc::new(Notify::new()),
        }
    }

    /// A clock that stands still at the wall clock's current time until [`Clock::advance`]
    /// or [`Clock::set`] moves it (tests).
    pub fn manual() -> Clock {
        Clock {
            manual: Some(Arc::new(Manual {
                now_ns: AtomicU64::new(system_now_ns()),
            })),
            moved: Arc::new(Notify::new()),
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        match &self.manual {
            None => system_now_ns(),
            Some(manual) => manual.now_ns.load(Ordering::SeqCst),
        }
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_s(&self) -> u64 {
        self.now_ns() / 1_000_000_000
    }

    /// Whether this is a test's manual clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Moves a manual clock forward by `by` (a system clock ignores it) and wakes every worker
    /// waiting on [`Clock::sleep`].
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.manual {
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            let _ = manual
                .now_ns
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                    Some(now.saturating_add(by))
                });
            self.moved.notify_waiters();
        }
    }

    /// Sets a manual clock to `now_ns` (never backwards: the ledger's time only moves on).
    pub fn set(&self, now_ns: u64) {
        if let Some(manual) = &self.manual {
            manual.now_ns.fetch_max(now_ns, Ordering::SeqCst);
            self.moved.notify_waiters();
        }
    }

    /// Waits until `duration` of this clock's time has passed, or the clock was moved (a
    /// manual clock): callers re-check their condition after waking. On the system clock it
    /// is a plain sleep.
    pub async fn sleep(&self, duration: Duration) {
        match &self.manual {
            None => tokio::time::sleep(duration).await,
            Some(_) => {
                // A manual clock only moves when a test moves it; still wake now and then so
                // that a worker never depends on a notification it subscribed to too late.
                let moved = self.moved.notified();
                tokio::select! {
                    () = moved => {}
                    () = tokio::time::sleep(duration.min(Duration::from_millis(50))) => {}
                }
            }
        }
    }

    /// The store's form of this clock (ledger time).
    pub fn for_store(&self) -> farthing_store::Clock {
        let clock = self.clone();
        Arc::new(move || clock.now_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_never_goes_back() {
        let clock = Clock::manual();
        let start = clock.now_ns();
        assert_eq!(clock.now_ns(), start);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now_ns(), start + 5_000_000_000);
        clock.set(start);
        assert_eq!(clock.now_ns(), start + 5_000_000_000, "never backwards");
        assert_eq!((clock.for_store())(), clock.now_ns());
        let system = Clock::system();
        assert!(system.now_ns() >= start);
        system.advance(Duration::from_secs(3600));
        assert!(system.now_ns() < start + 3_600_000_000_000);
    }
}
