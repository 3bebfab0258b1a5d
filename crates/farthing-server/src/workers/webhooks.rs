//! Webhooks (SPEC A4): Standard Webhooks signing, the endpoint URL check against
//! server-side request forgery, and the delivery worker.
//!
//! Events reach the outbox in the transaction of the change they describe; this worker only
//! reads what is due, sends it, and records the attempt. It never touches the payment path:
//! a slow or dead endpoint delays its own deliveries, nothing else.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::state::{AppState, Mode};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("whsec_{}", B64.encode(bytes)))
}

/// The `webhook-signature` value of a message: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
/// keyed with the base64-decoded part of the secret after `whsec_`.
pub fn sign(
    secret: &str,
    message_id: &str,
    timestamp_s: u64,
    body: &str,
) -> Result<String, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = B64
        .decode(encoded)
        .map_err(|error| format!("webhook secret is not valid base64: {error}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|error| error.to_string())?;
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

pub use crate::net::{check_url, is_internal};

/// A resolver that refuses internal addresses, so that a host which resolved to a public
/// address when the endpoint was created cannot be re-pointed inside the network later.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_internal(a.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The HTTP client of the worker.
pub fn client(state: &AppState) -> Result<reqwest::Client, reqwest::Error> {
    let timeout = Duration::from_secs_f64(state.config().webhooks.timeout_s);
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("farthing-webhooks/", env!("CARGO_PKG_VERSION")));
    if !state.config().allow_private_webhooks {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build()
}

fn jitter_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_be_bytes(bytes)) / f64::from(u32::MAX)
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// 2xx.
    Delivered(u16),
    /// 410 Gone: the endpoint is disabled.
    Gone,
    /// Any other status, or no answer.
    Failed(Option<u16>, String),
}

/// Sends one signed event.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    message_id: &str,
    body: &str,
    allow_private: bool,
) -> AttemptResult {
    // IP literals bypass the resolver; check them here.
    if !allow_private {
        if let Some(host) = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        {
            if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
                if is_internal(ip) {
                    return AttemptResult::Failed(None, format!("{ip} is not a public address"));
                }
            }
        }
    }
    // The signature's timestamp is checked by the receiver against its own wall clock, so it
    // is the one time here that is not the service's clock.
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = match sign(secret, message_id, timestamp, body) {
        Ok(signature) => signature,
        Err(error) => return AttemptResult::Failed(None, error),
    };
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            if response.status().is_success() {
                AttemptResult::Delivered(status)
            } else if status == 410 {
                AttemptResult::Gone
            } else {
                AttemptResult::Failed(Some(status), format!("endpoint answered HTTP {status}"))
            }
        }
        Err(error) => {
            // reqwest's message can carry the URL; the URL is the merchant's own, not a
            // secret, but keep the message short.
            let kind = if error.is_timeout() {
                "timed out".to_owned()
            } else if error.is_connect() {
                "could not connect".to_owned()
            } else {
                error.to_string()
            };
            AttemptResult::Failed(None, kind)
        }
    }
}

/// Shortest pause between two passes of the worker after a notification.
const NOTIFY_DEBOUNCE: Duration = Duration::from_millis(5);

/// A delivery being attempted: `(mode, event, endpoint)`.
type InFlight = std::collections::HashSet<(Mode, u128, u128)>;

/// How long a claimed attempt is held before another instance may try it (its claimant died):
/// the request's time limit (to connect, then to answer) and a margin to record the result.
fn lease_ns(timeout: &Duration) -> u64 {
    let lease = timeout
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(10));
    u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX)
}

/// Records one attempt's result: delivered, disabled on 410, or scheduled for a retry (with
/// jitter) until the schedule is used up.
/// `claim`: the end of this instance's lease on the delivery (on a shared database); the
/// attempt is not recorded when the claim no longer holds.
async fn record(
    store: &farthing_store::Store,
    delivery: farthing_store::Delivery,
    result: AttemptResult,
    schedule: Vec<Duration>,
    jitter: f64,
    claim: Option<u64>,
) -> Result<(), String> {
    let recorded = store
        .run(move |tx| -> Result<(), farthing_store::StoreError> {
            if let Some(until) = claim {
                if !tx.release_claim(delivery.event, delivery.endpoint, until)? {
                    tracing::warn!(
                        "a webhook attempt outlived its claim; another instance has the delivery now, so this attempt is not recorded"
                    );
                    return Ok(());
                }
            }
            let now = tx.now_ns();
            let attempts_done = delivery.attempts as usize + 1;
            match result {
                AttemptResult::Delivered(code) => tx.record_attempt(
                    delivery.event,
                    delivery.endpoint,
                    "delivered",
                    Some(code),
                    None,
                    None,
                ),
                AttemptResult::Gone => {
                    tx.record_attempt(
                        delivery.event,
                        delivery.endpoint,
                        "failed",
                        Some(410),
                        Some("endpoint answered 410 Gone; endpoint disabled"),
                        None,
                    )?;
                    tx.disable_endpoint(delivery.endpoint, "answered 410 Gone")
                }
                AttemptResult::Failed(code, error) => {
                    let next = schedule.get(attempts_done - 1).map(|delay| {
                        let wait = delay.as_secs_f64() * (1.0 + jitter * jitter_fraction());
                        now.saturating_add((wait * 1e9) as u64)
                    });
                    let status = if next.is_some() { "pending" } else { "failed" };
                    tx.record_attempt(
                        delivery.event,
                        delivery.endpoint,
                        status,
                        code,
                        Some(&error),
                        next,
                    )
                }
            }
        })
        .await;
    match recorded {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// Delivers due events of both modes until `shutdown` fires.
///
/// Each attempt is its own task (at most `webhooks.concurrency` at once), so a slow or dead
/// endpoint holds only its own deliveries; the loop keeps dispatching what else is due.
pub async fn run_worker(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let client = match client(&state) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; webhooks are off");
            return;
        }
    };
    let schedule = state.config().retry_schedule();
    let jitter = state.config().webhooks.jitter;
    let concurrency = state.config().webhooks.concurrency;
    let allow_private = state.config().allow_private_webhooks;
    let timeout = Duration::from_secs_f64(state.config().webhooks.timeout_s);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let in_flight: Arc<std::sync::Mutex<InFlight>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let clock = state.app().clock().clone();
    loop {
        let mut next_due: Option<u64> = None;
        let mut dispatched = false;
        for (mode, store) in state.stores() {
            // The in-flight set stays locked from the read until every due row is dispatched:
            // an attempt that finishes in between (recorded, then removed from the set) would
            // otherwise leave this read's stale copy of its row looking due and unclaimed, and
            // the event would be sent twice.
            let Ok(mut flying) = in_flight.lock() else {
                break;
            };
            // Ask for more than the free permits: some due rows may already be in flight.
            let want = permits.available_permits() + flying.len();
            let due = match store.read(|reader| reader.due_deliveries(clock.now_ns(), want.max(1)))
            {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(%error, "cannot read due webhook deliveries");
                    continue;
                }
            };
            for (delivery, event, endpoint) in due {
                let key = (mode, delivery.event.0, delivery.endpoint.0);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    break;
                };
                if !flying.insert(key) {
                    continue;
                }
                dispatched = true;
                let (client, store, state) = (client.clone(), store.clone(), state.clone());
                let (schedule, in_flight) = (schedule.clone(), in_flight.clone());
                let schedule_timeout = timeout;
                tasks.spawn(async move {
                    // Several instances on one database: the attempt is claimed first, so that
                    // an instance that still believes it leads cannot send it as well.
                    let mut claim = None;
                    if store.is_shared() {
                        let lease = lease_ns(&schedule_timeout);
                        let (event_id, endpoint_id) = (delivery.event, delivery.endpoint);
                        let claimed = store
                            .run(move |tx| {
                                let until = tx.now_ns().saturating_add(lease);
                                Ok::<_, farthing_store::StoreError>(
                                    tx.claim_delivery(event_id, endpoint_id, until)?
                                        .then_some(until),
                                )
                            })
                            .await;
                        match claimed {
                            Ok(Ok(Some(until))) => claim = Some(until),
                            _ => {
                                if let Ok(mut flying) = in_flight.lock() {
                                    flying.remove(&key);
                                }
                                return;
                            }
                        }
                    }
                    let result = send(
                        &client,
                        &endpoint.url,
                        &endpoint.secret,
                        &farthing_core::PublicId::encode(event.id),
                        &event.data,
                        allow_private,
                    )
                    .await;
                    let label = match &result {
                        AttemptResult::Delivered(_) => "delivered",
                        AttemptResult::Gone => "disabled",
                        AttemptResult::Failed(..) => "retry",
                    };
                    let mode_name = if mode == Mode::Live { "live" } else { "test" };
                    state.metrics().observe_delivery(mode_name, label);
                    let endpoint_id = farthing_core::PublicId::encode(endpoint.id);
                    let event_id = farthing_core::PublicId::encode(event.id);
                    match &result {
                        AttemptResult::Delivered(_) => {}
                        AttemptResult::Gone => tracing::warn!(
                            endpoint = %endpoint_id, event = %event_id, mode = mode_name,
                            "webhook endpoint answered 410 Gone: it is disabled"
                        ),
                        AttemptResult::Failed(status, error) => tracing::warn!(
                            endpoint = %endpoint_id, event = %event_id, mode = mode_name,
                            status = status.map(i64::from).unwrap_or(-1), %error,
                            "webhook delivery failed; it will be retried on its schedule"
                        ),
                    }
                    if let Err(error) =
                        record(&store, delivery, result, schedule, jitter, claim).await
                    {
                        tracing::error!(%error, "cannot record a webhook attempt");
                    }
                    if let Ok(mut flying) = in_flight.lock() {
                        flying.remove(&key);
                    }
                    drop(permit);
                    // Something may have become due while this attempt ran.
                    state.deliveries().notify_one();
                });
            }
            drop(flying);
            if let Ok(Some(at)) = store.read(|reader| reader.next_delivery_at()) {
                next_due = Some(next_due.map_or(at, |n| n.min(at)));
            }
        }
        while tasks.try_join_next().is_some() {}
        // What is due but not dispatched is in flight (or waits for a permit): its task's
        // completion wakes the loop, so don't poll for it.
        let sleep = match next_due {
            Some(at) if at > clock.now_ns() || dispatched => {
                Duration::from_nanos(at.saturating_sub(clock.now_ns())).min(Duration::from_secs(1))
            }
            _ => Duration::from_secs(1),
        };
        tokio::select! {
            _ = state.deliveries().notified() => {
                // Every committed write notifies; under load that is thousands of wake-ups a
                // second. Gather them: a few milliseconds of webhook latency, not a DB read
                // per payment.
                tokio::time::sleep(NOTIFY_DEBOUNCE).await;
            }
            _ = clock.sleep(sleep) => {}
            _ = shutdown.changed() => {
                // Let attempts under way finish and be recorded, within their timeout.
                while tasks.join_next().await.is_some() {}
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[tokio::test]
    async fn urls_are_checked_before_they_are_stored() {
        assert!(check_url("ftp://example.com/x", true).await.is_err());
        assert!(check_url("not a url", true).await.is_err());
        assert!(check_url("http://user:pw@127.0.0.1/", true).await.is_err());
        let refused = check_url("http://127.0.0.1:9/hook", false)
            .await
            .unwrap_err();
        assert!(
            refused.contains("FARTHING_ALLOW_PRIVATE_WEBHOOKS"),
            "{refused}"
        );
        assert!(check_url("http://127.0.0.1:9/hook", true).await.is_ok());
        assert!(check_url("http://[::1]:9/hook", false).await.is_err());
    }
}
