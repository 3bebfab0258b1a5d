//! Rate limits (SPEC S4), as a middleware in front of every route: per API key on `/v1`, per
//! client address on the public pages and callbacks (checkout, Mini App, dashboard login,
//! LNURL), and per client address for failed authentication. A refused request gets `429` with
//! `Retry-After` in the API's error shape, changes nothing, and is counted in
//! `farthing_http_refused_total{reason}`.
//!
//! Each limit is a GCRA bucket (a rate and a burst) kept in memory per key; the keys are
//! hashed with a per-process random seed, so no secret is kept and no one can aim collisions.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::RateLimitConfig;
use crate::state::AppState;
use crate::web::error::ApiError;

/// Buckets kept before expired ones are dropped.
const PRUNE_AT: usize = 100_000;

/// One rate limit: `per_s` requests a second on average, `burst` at once.
pub struct Limiter {
    /// Time one request costs.
    interval: Duration,
    /// How far ahead of now a bucket may run (`interval × burst`).
    tolerance: Duration,
    buckets: Mutex<HashMap<u64, Instant>>,
}

impl Limiter {
    /// `None` when `per_s` is 0 (the limit is off).
    pub fn new(per_s: u32, burst: u32) -> Option<Limiter> {
        if per_s == 0 {
            return None;
        }
        let interval = Duration::from_secs(1) / per_s;
        Some(Limiter {
            interval,
            tolerance: interval * burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one request for `key` at `now`, or says how long to wait.
    pub fn take(&self, key: u64, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|_, theoretical| *theoretical > now);
        }
        let theoretical = buckets.get(&key).copied().unwrap_or(now).max(now);
        let next = theoretical + self.interval;
        if next > now + self.tolerance {
            return Err(next - (now + self.tolerance));
        }
        buckets.insert(key, next);
        Ok(())
    }

    /// Whether `key` could take a request at `now` (without taking one).
    pub fn would_allow(&self, key: u64, now: Instant) -> Result<(), Duration> {
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let theoretical = buckets.get(&key).copied().unwrap_or(now).max(now);
        let next = theoretical + self.interval;
        if next > now + self.tolerance {
            return Err(next - (now + self.tolerance));
        }
        Ok(())
    }
}

/// The server's rate limits.
pub struct Limits {
    seed: RandomState,
    api_key: Option<Limiter>,
    client: Option<Limiter>,
    failed_auth: Option<Limiter>,
    trust_forwarded_for: bool,
}

impl Limits {
    /// From the configuration.
    pub fn new(config: &RateLimitConfig) -> Arc<Limits> {
        Arc::new(Limits {
            seed: RandomState::new(),
            api_key: Limiter::new(config.api_key_per_s, config.api_key_burst),
            client: Limiter::new(config.client_per_s, config.client_burst),
            failed_auth: Limiter::new(config.failed_auth_per_s, config.failed_auth_burst),
            trust_forwarded_for: config.trust_forwarded_for,
        })
    }

    fn hash(&self, scope: u8, bytes: &[u8]) -> u64 {
        self.seed.hash_one((scope, bytes))
    }
}

/// What a route is limited by.
enum Scope {
    /// `/v1`: the API key (and failed authentication per client).
    Api,
    /// Public pages and callbacks: the client's address.
    Public,
    /// Health, metrics, the OpenAPI document, and Telegram's webhook (authenticated by its
    /// secret, and Telegram's own traffic).
    Exempt,
}

fn scope(path: &str) -> Scope {
    if path.starts_with("/v1/") {
        Scope::Api
    } else if [
        "/pay/",
        "/webapp/",
        "/dashboard/",
        "/lnurl/",
        "/.well-known/",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
    {
        Scope::Public
    } else {
        Scope::Exempt
    }
}

/// The address of the client of a public page (checkout, Mini App, login, LNURL), as the rate
/// limits saw it: set on each such request before its handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

/// The client's address: the connection's peer, or (behind a reverse proxy the operator
/// trusts) the last address of `X-Forwarded-For`.
fn client(request: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|part| part.trim().parse::<IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

fn refused(state: &AppState, reason: &'static str, what: &str, wait: Duration) -> Response {
    state.metrics().refused(reason);
    // Whole seconds, rounded up: a client that waits that long is let in.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::rate_limited(what, seconds).into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The middleware.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = Arc::clone(state.limits());
    let now = Instant::now();
    match scope(request.uri().path()) {
        Scope::Exempt => next.run(request).await,
        Scope::Public => {
            let ip = client(&request, limits.trust_forwarded_for);
            if let (Some(limiter), Some(ip)) = (&limits.client, ip) {
                let key = limits.hash(1, ip.to_string().as_bytes());
                if let Err(wait) = limiter.take(key, now) {
                    return refused(&state, "rate_limit_client", "from this address", wait);
                }
            }
            // The buyer's address, for the risk rules' block list of networks.
            let mut request = request;
            request.extensions_mut().insert(ClientIp(ip));
            next.run(request).await
        }
        Scope::Api => {
            let ip = client(&request, limits.trust_forwarded_for);
            let failed_key = ip.map(|ip| limits.hash(2, ip.to_string().as_bytes()));
            if let (Some(limiter), Some(key)) = (&limits.failed_auth, failed_key) {
                if let Err(wait) = limiter.would_allow(key, now) {
                    return refused(
                        &state,
                        "rate_limit_failed_auth",
                        "with failed authentication from this address",
                        wait,
                    );
                }
            }
            if let Some(limiter) = &limits.api_key {
                if let Some(authorization) = request.headers().get(header::AUTHORIZATION) {
                    let key = limits.hash(3, authorization.as_bytes());
                    if let Err(wait) = limiter.take(key, now) {
                        return refused(&state, "rate_limit_api_key", "with this API key", wait);
                    }
                }
            }
            let response = next.run(request).await;
            if response.status() == StatusCode::UNAUTHORIZED {
                if let (Some(limiter), Some(key)) = (&limits.failed_auth, failed_key) {
                    let _ = limiter.take(key, now);
                }
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_the_burst_through_then_the_rate() {
        let limiter = Limiter::new(10, 5).expect("on");
        let start = Instant::now();
        for n in 0..5 {
            assert!(limiter.take(1, start).is_ok(), "request {n} of the burst");
        }
        let wait = limiter
            .take(1, start)
            .expect_err("the sixth at once is refused");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert!(limiter.take(2, start).is_ok());
        // After one interval, one more.
        let later = start + Duration::from_millis(100);
        assert!(limiter.take(1, later).is_ok());
        assert!(limiter.take(1, later).is_err());
        // After a long pause, the full burst again.
        let much_later = start + Duration::from_secs(10);
        for _ in 0..5 {
            assert!(limiter.take(1, much_later).is_ok());
        }
        assert!(limiter.take(1, much_later).is_err());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        assert!(Limiter::new(0, 10).is_none());
    }

    #[test]
    fn routes_fall_into_their_scope() {
        assert!(matches!(scope("/v1/charges"), Scope::Api));
        assert!(matches!(scope("/pay/inv_1/status"), Scope::Public));
        assert!(matches!(scope("/dashboard/login/lnurl"), Scope::Public));
        assert!(matches!(scope("/lnurl/test/auth"), Scope::Public));
        assert!(matches!(scope("/telegram/1/webhook"), Scope::Exempt));
        assert!(matches!(scope("/healthz"), Scope::Exempt));
    }
}
