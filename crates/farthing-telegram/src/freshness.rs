//! How old signed Telegram data may be.
//!
//! A valid hash proves Telegram issued the data, not that it was issued now: a copied
//! `initData` or login link stays valid forever unless its `auth_date` is checked. This module
//! only compares numbers it is given; it never reads a clock.

/// The accepted age of signed data: at most `max_age_s` old, and at most `max_future_skew_s`
/// ahead of the server's clock (clocks drift; a larger lead means a wrong clock or forged data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// The oldest accepted data, in seconds (default 3600: one hour, SPEC T4).
    pub max_age_s: u64,
    /// How far in the future `auth_date` may be, in seconds (default 60).
    pub max_future_skew_s: u64,
}

impl Freshness {
    /// One hour back, one minute ahead.
    pub const DEFAULT: Self = Self {
        max_age_s: 3600,
        max_future_skew_s: 60,
    };

    /// Checks `auth_date_unix_s` against `now_unix_s`.
    pub(crate) fn check(&self, auth_date_unix_s: u64, now_unix_s: u64) -> Result<(), Stale> {
        if auth_date_unix_s > now_unix_s {
            let ahead_s = auth_date_unix_s - now_unix_s;
            if ahead_s > self.max_future_skew_s {
                return Err(Stale::FromTheFuture {
                    ahead_s,
                    max_future_skew_s: self.max_future_skew_s,
                });
            }
            return Ok(());
        }
        let age_s = now_unix_s - auth_date_unix_s;
        if age_s > self.max_age_s {
            return Err(Stale::TooOld {
                age_s,
                max_age_s: self.max_age_s,
            });
        }
        Ok(())
    }
}

impl Default for Freshness {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why data is outside the window; each caller turns it into its own error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stale {
    TooOld {
        age_s: u64,
        max_age_s: u64,
    },
    FromTheFuture {
        ahead_s: u64,
        max_future_skew_s: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_edges() {
        let f = Freshness {
            max_age_s: 100,
            max_future_skew_s: 10,
        };
        assert_eq!(f.check(1000, 1000), Ok(()));
        assert_eq!(f.check(900, 1000), Ok(()));
        assert_eq!(
            f.check(899, 1000),
            Err(Stale::TooOld {
                age_s: 101,
                max_age_s: 100
            })
        );
        assert_eq!(f.check(1010, 1000), Ok(()));
        assert_eq!(
            f.check(1011, 1000),
            Err(Stale::FromTheFuture {
                ahead_s: 11,
                max_future_skew_s: 10
            })
        );
        assert_eq!(
            f.check(0, u64::MAX),
            Err(Stale::TooOld {
                age_s: u64::MAX,
                max_age_s: 100
            })
        );
        assert_eq!(Freshness::default().max_age_s, 3600);
    }
}
