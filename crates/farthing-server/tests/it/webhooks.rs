//! Webhook delivery (SPEC A4, issue 3 item 7) end to end: a real server on a random port, a
//! real HTTP receiver inside the test, and the independent Python `standardwebhooks` package
//! checking every signature farthing produced.
//!
//! What is covered: interoperability with Standard Webhooks, the secret shown once, retries
//! with growing gaps and the same `webhook-id`, giving up after the schedule, `410 Gone`
//! disabling an endpoint, redelivery, refusal of private addresses, and a slow endpoint not
//! slowing the payment path.
//!
//! The server runs with a retry schedule of 0.2 s, 0.4 s, 0.8 s (instead of the ~3 days of the
//! default) so the whole file runs in a few seconds.

use crate::support::server;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use farthing_server::config::WebhookConfig;
use serde_json::{json, Value};

/// Delays before each retry, in seconds (the server's `webhooks.retry_schedule_s`).
const RETRY_SCHEDULE_S: [f64; 3] = [0.2, 0.4, 0.8];
/// Random spread added to each delay (the server's `webhooks.jitter`).
const JITTER: f64 = 0.1;
/// How long a test waits for something asynchronous before failing.
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The server under test.

struct TestApp {
    running: farthing_server::Running,
    base: String,
    http: reqwest::Client,
    test_key: String,
    live_key: String,
    // Last: the database files outlive the server.
    _dir: tempfile::TempDir,
}

/// A server that may deliver to the test's loopback receiver.
async fn spawn_app() -> TestApp {
    spawn_app_with(true).await
}

/// A server on 127.0.0.1:0 over a fresh database, with one merchant.
async fn spawn_app_with(allow_private_webhooks: bool) -> TestApp {
    let server = server::spawn(|config| {
        config.allow_private_webhooks = allow_private_webhooks;
        config.webhooks = WebhookConfig {
            retry_schedule_s: RETRY_SCHEDULE_S.to_vec(),
            jitter: JITTER,
            timeout_s: 10.0,
            ..WebhookConfig::default()
        };
    })
    .await;
    let merchant = server.merchant("Webhook Test Shop").await;
    let (running, base, dir) = (server.running, server.base, server.dir);
    TestApp {
        running,
        base,
        // No proxy: a proxy from the environment must not sit between the test and 127.0.0.1.
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client"),
        test_key: merchant.test_key,
        live_key: merchant.live_key,
        _dir: dir,
    }
}

impl TestApp {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).expect("JSON"));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: no answer: {error}"));
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("a response body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                panic!(
                    "{method} {path}: answer is not JSON ({error}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    /// POST with the test-mode key; panics unless the answer has status `expected`.
    async fn post(&self, path: &str, body: Value, expected: u16) -> Value {
        let (status, answer) = self
            .call(reqwest::Method::POST, path, &self.test_key, Some(&body))
            .await;
        assert_eq!(status, expected, "POST {path} {body}: {answer}");
        answer
    }

    /// GET with the test-mode key; panics unless 200.
    async fn get(&self, path: &str) -> Value {
        let (status, answer) = self
            .call(reqwest::Method::GET, path, &self.test_key, None)
            .await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }

    /// Registers an endpoint; returns (id, secret).
    async fn register(&self, url: &str, events: &[&str]) -> (String, String) {
        let endpoint = self
            .post(
                "/v1/webhook_endpoints",
                json!({"url": url, "enabled_events": events}),
                201,
            )
            .await;
        let id = text(&endpoint, "id");
        let secret = text(&endpoint, "secret");
        assert!(id.starts_with("we_"), "{endpoint}");
        assert!(secret.starts_with("whsec_"), "{endpoint}");
        assert_eq!(endpoint["status"], "enabled", "{endpoint}");
        (id, secret)
    }

    async fn create_invoice(&self, amount: u64, description: &str) -> Value {
        let invoice = self
            .post(
                "/v1/invoices",
                json!({"amount": amount, "currency": "USD", "description": description}),
                201,
            )
            .await;
        assert!(text(&invoice, "id").starts_with("inv_"), "{invoice}");
        invoice
    }

    /// Polls `GET /v1/events/{id}` until `done` holds for it.
    async fn event_until(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let event = self.get(&format!("/v1/events/{id}")).await;
            if done(&event) {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "event {id}: still not {what} after {PATIENCE:?}: {event}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The ids of every event of the test-mode merchant, with their types.
    async fn events(&self) -> BTreeMap<String, String> {
        let list = self.get("/v1/events?limit=100").await;
        assert_eq!(list["has_more"], false, "more than 100 events: {list}");
        list["data"]
            .as_array()
            .expect("data is a list")
            .iter()
            .map(|event| (text(event, "id"), text(event, "type")))
            .collect()
    }

    /// Stops the server (bounded: a test must not hang on shutdown).
    async fn stop(self) {
        tokio::time::timeout(Duration::from_secs(10), self.running.shutdown())
            .await
            .expect("the server stops within 10 s");
    }
}

fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field:?} is not a string in {value}"))
        .to_owned()
}

/// The delivery of an event to one endpoint, from `GET /v1/events/{id}`.
fn delivery_to<'a>(event: &'a Value, endpoint: &str) -> Option<&'a Value> {
    event["deliveries"]
        .as_array()
        .expect("the event lists its deliveries")
        .iter()
        .find(|d| d["webhook_endpoint"] == endpoint)
}

// ---------------------------------------------------------------------------------------------
// The test receiver: an axum server that records every request and answers with a programmed
// sequence of statuses.

#[derive(Clone, Debug)]
struct Received {
    /// Lower-case header names (HTTP/1 headers are case-insensitive; axum lower-cases them).
    headers: BTreeMap<String, String>,
    /// The raw body as sent; must be UTF-8 JSON (a non-UTF-8 body is kept lossily and then
    /// fails the signature check, as it should).
    body: String,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("the body is not JSON ({error}): {}", self.body))
    }
}

struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Statuses to answer, in order of arrival; then `then` forever.
    answers: Mutex<VecDeque<u16>>,
    then: u16,
    /// How long to wait before answering.
    delay: Duration,
}

struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver that answers 200 at once.
    async fn ok() -> Receiver {
        Receiver::start(&[], 200, Duration::ZERO).await
    }

    async fn start(answers: &[u16], then: u16, delay: Duration) -> Receiver {
        let state = Arc::new(ReceiverState {
            received: Mutex::new(Vec::new()),
            answers: Mutex::new(answers.iter().copied().collect()),
            then,
            delay,
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the receiver binds");
        let addr = listener.local_addr().expect("the receiver's address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hooks/farthing"),
            state,
            task,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Waits until at least `count` requests arrived; returns them all.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} of {count} expected deliveries within {PATIENCE:?}: {:?}",
                received.len(),
                received.iter().map(|r| &r.body).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let received = Received {
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    // The answer is picked at arrival, so the sequence follows the order of arrival.
    let answer = {
        let mut received_all = state.received.lock().expect("lock");
        received_all.push(received);
        state
            .answers
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(state.then)
    };
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    StatusCode::from_u16(answer).expect("a valid status")
}

// ---------------------------------------------------------------------------------------------
// Independent verification.

/// Verifies every delivery with the Python `standardwebhooks` package (which also checks that
/// tampered copies are refused). Fails, never skips, when Python or the package is missing:
/// `./scripts/test` installs it.
fn verify_with_standardwebhooks(secret: &str, deliveries: &[Received]) {
    assert!(!deliveries.is_empty(), "nothing to verify");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cases: Vec<Value> = deliveries
        .iter()
        .map(|d| json!({"secret": secret, "headers": d.headers, "body": d.body}))
        .collect();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&cases).expect("JSON")).expect("write the cases");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_webhooks.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run python3 ({error}); the webhook interoperability check needs python3 \
                 with the standardwebhooks package: run ./scripts/test, which installs it"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => panic!(
            "the Python package standardwebhooks is not installed, so farthing's webhook \
             signatures cannot be checked independently: run ./scripts/test (it installs \
             standardwebhooks==1.1.0)\n{stderr}"
        ),
        other => panic!(
            "standardwebhooks refused farthing's deliveries (exit {other:?}):\n{stdout}\n{stderr}"
        ),
    }
    // Guard against a script that exits 0 without checking anything.
    assert!(
        stdout.contains(&format!("verified {} deliveries", deliveries.len())),
        "unexpected output of {}: {stdout}",
        script.display()
    );
}

/// Checks the headers every delivery must carry and returns the event it carries.
fn check_headers(delivery: &Received) -> Value {
    let event = delivery.json();
    let id = delivery.header("webhook-id");
    assert!(id.starts_with("evt_"), "webhook-id {id:?}");
    // The webhook-id is the event id, so a receiver can drop duplicates by it.
    assert_eq!(event["id"], id, "body {}", delivery.body);
    assert!(
        delivery
            .header("content-type")
            .starts_with("application/json"),
        "{:?}",
        delivery.headers
    );
    let signature = delivery.header("webhook-signature");
    assert!(
        signature.starts_with("v1,"),
        "webhook-signature {signature:?}"
    );
    let timestamp: u64 = delivery
        .header("webhook-timestamp")
        .parse()
        .expect("webhook-timestamp is whole seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(
        timestamp.abs_diff(now) <= 60,
        "webhook-timestamp {timestamp} is not about now ({now})"
    );
    event
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// Every delivery of a realistic sequence (invoice created and paid in the sandbox, customer
/// topped up and charged, charge refunded) verifies with the independent Standard Webhooks
/// library, and the signing secret is shown exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_verify_with_the_standardwebhooks_package() {
    let app = spawn_app().await;
    let receiver = Receiver::ok().await;

    let created = app
        .post("/v1/webhook_endpoints", json!({"url": receiver.url}), 201)
        .await;
    let endpoint = text(&created, "id");
    let secret = text(&created, "secret");
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(created["enabled_events"], json!(["*"]), "{created}");
    // Shown once: neither the retrieve nor the list endpoint carries it again.
    let (status, fetched) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/webhook_endpoints/{endpoint}"),
            &app.test_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{fetched}");
    assert!(fetched.get("secret").is_none(), "{fetched}");
    assert!(!fetched.to_string().contains(&secret), "{fetched}");
    let list = app.get("/v1/webhook_endpoints").await;
    assert_eq!(list["data"][0]["id"], endpoint.as_str(), "{list}");
    assert!(!list.to_string().contains(&secret), "{list}");
    // Test-mode endpoints are not visible to the live key.
    let (_, live_list) = app
        .call(
            reqwest::Method::GET,
            "/v1/webhook_endpoints",
            &app.live_key,
            None,
        )
        .await;
    assert_eq!(live_list["data"], json!([]), "{live_list}");

    // Non-ASCII text, quotes and backslashes in the body: the signature must cover the exact
    // bytes sent, not a re-serialisation.
    let invoice = app
        .create_invoice(500, "Café ☕ \"flat white\" \\ 5 € — 🐈")
        .await;
    let invoice_id = text(&invoice, "id");
    let paid = app
        .post(
            &format!("/v1/test/invoices/{invoice_id}/pay"),
            json!({}),
            200,
        )
        .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    let customer = app
        .post("/v1/customers", json!({"external_id": "tg:4242"}), 201)
        .await;
    let customer_id = text(&customer, "id");
    app.post(
        &format!("/v1/test/customers/{customer_id}/top_up"),
        json!({"amount": 1000, "currency": "USD"}),
        200,
    )
    .await;
    let charge = app
        .post(
            "/v1/charges",
            json!({"customer": customer_id, "amount": 300, "currency": "USD", "description": "one API call"}),
            201,
        )
        .await;
    app.post(
        "/v1/refunds",
        json!({"charge": text(&charge, "id"), "amount": 100}),
        201,
    )
    .await;

    let events = app.events().await;
    let types: BTreeSet<&str> = events.values().map(String::as_str).collect();
    for wanted in [
        "invoice.created",
        "invoice.paid",
        "customer.created",
        "customer.balance_changed",
        "charge.succeeded",
        "refund.succeeded",
    ] {
        assert!(types.contains(wanted), "no {wanted} event in {events:?}");
    }

    let deliveries = receiver.wait_for(events.len()).await;
    // Give a duplicate a moment to show up: every endpoint answered 200, so each event must
    // arrive exactly once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deliveries_now = receiver.received();
    assert_eq!(
        deliveries_now.len(),
        events.len(),
        "one delivery per event expected; events {events:?}, deliveries {:?}",
        deliveries_now
            .iter()
            .map(|d| d.header("webhook-id").to_owned())
            .collect::<Vec<_>>()
    );
    let mut delivered_ids = BTreeSet::new();
    for delivery in &deliveries {
        let body = check_headers(delivery);
        let id = delivery.header("webhook-id").to_owned();
        // The body is the event the API shows.
        let shown = app.get(&format!("/v1/events/{id}")).await;
        assert_eq!(body["type"], shown["type"], "{shown}");
        assert_eq!(body["data"], shown["data"], "{shown}");
        assert_eq!(body["livemode"], false, "{body}");
        assert!(!delivery.body.contains(&secret));
        delivered_ids.insert(id);
    }
    assert_eq!(
        delivered_ids,
        events.keys().cloned().collect::<BTreeSet<_>>(),
        "every event delivered, nothing else"
    );
    let description_delivered = deliveries.iter().any(|d| d.body.contains("Café ☕"));
    assert!(
        description_delivered,
        "the invoice's UTF-8 description travels as UTF-8"
    );

    verify_with_standardwebhooks(&secret, &deliveries);

    // Every delivery is recorded as delivered on the first attempt.
    for id in events.keys() {
        let event = app
            .event_until(id, "delivered", |e| {
                delivery_to(e, &endpoint).is_some_and(|d| d["status"] == "delivered")
            })
            .await;
        let delivery = delivery_to(&event, &endpoint).expect("a delivery");
        assert_eq!(delivery["attempts"], 1, "{event}");
        assert_eq!(delivery["last_status_code"], 200, "{event}");
    }
    app.stop().await;
}

/// A failing endpoint is retried on the configured schedule with the same webhook-id, and
/// the event then shows the delivery delivered after 3 attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_growing_gaps() {
    let app = spawn_app().await;
    let receiver = Receiver::start(&[500, 500], 200, Duration::ZERO).await;
    let (endpoint, secret) = app.register(&receiver.url, &["invoice.created"]).await;
    app.create_invoice(700, "retried").await;

    let deliveries = receiver.wait_for(3).await;
    let first = check_headers(&deliveries[0]);
    let event_id = text(&first, "id");
    for delivery in &deliveries {
        assert_eq!(delivery.header("webhook-id"), event_id);
        assert_eq!(
            delivery.body, deliveries[0].body,
            "a retry sends the same body"
        );
    }
    // A retry is scheduled when the failed attempt is recorded, which is after the receiver
    // saw it: so each gap is at least its delay (10 ms spared for clock granularity). Growing
    // gaps: the second delay is twice the first; the jitter (at most 10 %) cannot reorder them.
    let gaps: Vec<f64> = deliveries
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at).as_secs_f64())
        .collect();
    for (gap, delay) in gaps.iter().zip(RETRY_SCHEDULE_S) {
        assert!(
            *gap >= delay - 0.01,
            "retried after {gap:.3} s, before the scheduled {delay} s: gaps {gaps:?}"
        );
        // Loose bound for each gap (scheduling on a busy 2-core machine): catches a retry
        // that waits minutes (the default schedule) or far too long.
        assert!(
            *gap < delay * (1.0 + JITTER) + 0.5,
            "retried after {gap:.3} s, scheduled {delay} s: gaps {gaps:?}"
        );
    }
    // Tighter bound on the sum, with 0.3 s to spare for scheduling: 0.2 + 0.4 s plus at most
    // 10 % jitter is 0.66 s, while a schedule used one step late (0.4 + 0.8 s) takes 1.2 s.
    let expected: f64 = RETRY_SCHEDULE_S[..2].iter().sum();
    let total: f64 = gaps.iter().sum();
    assert!(
        total < expected * (1.0 + JITTER) + 0.3,
        "the two retries took {total:.3} s, scheduled {expected} s: gaps {gaps:?}"
    );
    assert!(gaps[1] > gaps[0], "the gaps grow: {gaps:?}");

    let event = app
        .event_until(&event_id, "delivered", |e| {
            delivery_to(e, &endpoint).is_some_and(|d| d["status"] == "delivered")
        })
        .await;
    let delivery = delivery_to(&event, &endpoint).expect("a delivery");
    assert_eq!(delivery["attempts"], 3, "{event}");
    assert_eq!(delivery["last_status_code"], 200, "{event}");
    assert_eq!(delivery["next_attempt_at"], Value::Null, "{event}");
    // Delivered means done: no fourth request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3);

    // Retries are re-signed (new timestamp) and still verify independently.
    verify_with_standardwebhooks(&secret, &deliveries);
    app.stop().await;
}

/// An endpoint that keeps failing gets the first attempt plus one retry per schedule step,
/// then the delivery is marked failed and nothing more is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_after_the_schedule() {
    let app = spawn_app().await;
    let receiver = Receiver::start(&[], 503, Duration::ZERO).await;
    let (endpoint, _) = app.register(&receiver.url, &["invoice.created"]).await;
    let invoice = app.create_invoice(100, "never delivered").await;
    let attempts = 1 + RETRY_SCHEDULE_S.len();
    let deliveries = receiver.wait_for(attempts).await;
    let event_id = deliveries[0].header("webhook-id").to_owned();
    let event = app
        .event_until(&event_id, "failed", |e| {
            delivery_to(e, &endpoint).is_some_and(|d| d["status"] == "failed")
        })
        .await;
    let delivery = delivery_to(&event, &endpoint).expect("a delivery");
    assert_eq!(delivery["attempts"], attempts, "{event}");
    assert_eq!(delivery["last_status_code"], 503, "{event}");
    assert_eq!(delivery["next_attempt_at"], Value::Null, "{event}");
    assert_eq!(event["data"]["object"]["id"], invoice["id"], "{event}");
    // Longer than the last delay with its jitter: a fifth attempt would have come by now.
    tokio::time::sleep(Duration::from_secs_f64(
        RETRY_SCHEDULE_S[2] * (1.0 + JITTER) + 0.2,
    ))
    .await;
    assert_eq!(receiver.received().len(), attempts);
    // A failed delivery does not disable the endpoint (only 410 does).
    let fetched = app.get(&format!("/v1/webhook_endpoints/{endpoint}")).await;
    assert_eq!(fetched["status"], "enabled", "{fetched}");
    app.stop().await;
}

/// `410 Gone` disables the endpoint at once: no retry, and later events are not sent to it
/// (while another endpoint keeps getting them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint() {
    let app = spawn_app().await;
    let gone = Receiver::start(&[], 410, Duration::ZERO).await;
    let (gone_endpoint, _) = app.register(&gone.url, &["*"]).await;
    app.create_invoice(100, "first").await;

    let first = gone.wait_for(1).await;
    let first_event = first[0].header("webhook-id").to_owned();
    let deadline = Instant::now() + PATIENCE;
    let fetched = loop {
        let fetched = app
            .get(&format!("/v1/webhook_endpoints/{gone_endpoint}"))
            .await;
        if fetched["status"] == "disabled" {
            break fetched;
        }
        assert!(Instant::now() < deadline, "still enabled: {fetched}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let reason = fetched["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("410"), "{fetched}");
    let event = app.get(&format!("/v1/events/{first_event}")).await;
    let delivery = delivery_to(&event, &gone_endpoint).expect("a delivery");
    assert_eq!(delivery["status"], "failed", "{event}");
    assert_eq!(delivery["last_status_code"], 410, "{event}");
    assert_eq!(delivery["attempts"], 1, "{event}");
    // The list shows it disabled too.
    let list = app.get("/v1/webhook_endpoints").await;
    assert_eq!(list["data"][0]["status"], "disabled", "{list}");

    // A later event: a healthy endpoint gets it, the disabled one does not.
    let healthy = Receiver::ok().await;
    let (healthy_endpoint, _) = app.register(&healthy.url, &["*"]).await;
    app.create_invoice(200, "second").await;
    let second = healthy.wait_for(1).await;
    let second_event = second[0].header("webhook-id").to_owned();
    assert_ne!(second_event, first_event);
    let event = app.get(&format!("/v1/events/{second_event}")).await;
    assert!(
        delivery_to(&event, &gone_endpoint).is_none(),
        "nothing queued for a disabled endpoint: {event}"
    );
    assert!(delivery_to(&event, &healthy_endpoint).is_some(), "{event}");
    // Past the first retry delay: a retry of the 410 would have arrived by now.
    tokio::time::sleep(Duration::from_secs_f64(
        RETRY_SCHEDULE_S[0] * (1.0 + JITTER) + 0.3,
    ))
    .await;
    assert_eq!(
        gone.received().len(),
        1,
        "a disabled endpoint got more requests"
    );

    // Redelivering to it explicitly is refused rather than silently dropped.
    let (status, answer) = app
        .call(
            reqwest::Method::POST,
            &format!("/v1/events/{first_event}/redeliver"),
            &app.test_key,
            Some(&json!({"webhook_endpoint": gone_endpoint})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "endpoint_disabled", "{answer}");
    app.stop().await;
}

/// `POST /v1/events/{id}/redeliver` sends the event again, with the same webhook-id and body,
/// freshly signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_resends_the_same_message() {
    let app = spawn_app().await;
    let receiver = Receiver::ok().await;
    let (endpoint, secret) = app.register(&receiver.url, &["invoice.created"]).await;
    app.create_invoice(900, "redelivered").await;
    let first = receiver.wait_for(1).await;
    let event_id = first[0].header("webhook-id").to_owned();
    app.event_until(&event_id, "delivered", |e| {
        delivery_to(e, &endpoint).is_some_and(|d| d["status"] == "delivered")
    })
    .await;

    let answer = app
        .post(&format!("/v1/events/{event_id}/redeliver"), json!({}), 200)
        .await;
    assert_eq!(answer["webhook_endpoints"], json!([endpoint]), "{answer}");
    let both = receiver.wait_for(2).await;
    assert_eq!(both.len(), 2, "exactly one more delivery");
    assert_eq!(both[1].header("webhook-id"), event_id);
    assert_eq!(both[1].body, both[0].body);
    check_headers(&both[1]);

    // To one named endpoint, too.
    app.post(
        &format!("/v1/events/{event_id}/redeliver"),
        json!({"webhook_endpoint": endpoint}),
        200,
    )
    .await;
    let all = receiver.wait_for(3).await;
    assert_eq!(all[2].header("webhook-id"), event_id);
    let event = app
        .event_until(&event_id, "delivered 3 times", |e| {
            delivery_to(e, &endpoint).is_some_and(|d| d["attempts"] == 3)
        })
        .await;
    assert_eq!(
        delivery_to(&event, &endpoint).expect("a delivery")["status"],
        "delivered",
        "{event}"
    );
    verify_with_standardwebhooks(&secret, &all);

    // An unknown event is 404, and nothing is sent.
    let (status, answer) = app
        .call(
            reqwest::Method::POST,
            "/v1/events/evt_00000000000000000000000001/redeliver",
            &app.test_key,
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 3);
    app.stop().await;
}

/// Without `allow_private_webhooks`, URLs that reach loopback, private, link-local or
/// otherwise internal addresses are refused with 400 on `url`, naming the switch that allows
/// them, and nothing is stored. A public address is accepted (the check is not "refuse all").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_unless_allowed() {
    let app = spawn_app_with(false).await;
    let receiver = Receiver::ok().await;
    let port = receiver
        .url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .expect("a port")
        .to_owned();
    let refused = [
        receiver.url.clone(),
        format!("http://localhost:{port}/hooks"),
        format!("http://[::1]:{port}/hooks"),
        format!("http://[::ffff:127.0.0.1]:{port}/hooks"),
        format!("http://0.0.0.0:{port}/hooks"),
        // Other spellings of 127.0.0.1 that URL parsers normalise.
        format!("http://127.1:{port}/hooks"),
        format!("http://2130706433:{port}/hooks"),
        format!("http://0x7f.0.0.1:{port}/hooks"),
        "http://10.0.0.1/hooks".to_owned(),
        "http://192.168.1.10/hooks".to_owned(),
        "http://172.16.5.4/hooks".to_owned(),
        "http://100.64.0.1/hooks".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00::1]/hooks".to_owned(),
        "http://[fe80::1]/hooks".to_owned(),
    ];
    for key in [&app.live_key, &app.test_key] {
        for url in &refused {
            let (status, answer) = app
                .call(
                    reqwest::Method::POST,
                    "/v1/webhook_endpoints",
                    key,
                    Some(&json!({"url": url})),
                )
                .await;
            assert_eq!(status, 400, "{url}: {answer}");
            assert_eq!(answer["error"]["param"], "url", "{url}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("FARTHING_ALLOW_PRIVATE_WEBHOOKS"),
                "{url}: the message must say how to allow it: {answer}"
            );
            assert!(answer.get("secret").is_none(), "{answer}");
        }
        let (status, list) = app
            .call(reqwest::Method::GET, "/v1/webhook_endpoints", key, None)
            .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["data"], json!([]), "nothing stored: {list}");
    }
    // With nothing stored, an event reaches no one.
    app.create_invoice(100, "nobody listens").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());

    // A public address literal (no DNS needed) is accepted. It subscribes to an event this
    // test never causes, so nothing is sent to it.
    let public = app
        .post(
            "/v1/webhook_endpoints",
            json!({"url": "https://1.1.1.1/hooks", "enabled_events": ["invoice.refunded"]}),
            201,
        )
        .await;
    let (status, deleted) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/webhook_endpoints/{}", text(&public, "id")),
            &app.test_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    app.stop().await;
}

/// Deliveries never sit on the payment path: while the only endpoint takes 3 s to answer,
/// 20 invoice creations (each writes an event and queues its delivery) still answer fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_slow_the_payment_path() {
    const SLEEP: Duration = Duration::from_secs(3);
    let app = spawn_app().await;
    let receiver = Receiver::start(&[], 200, SLEEP).await;
    app.register(&receiver.url, &["invoice.created"]).await;
    // Make sure the worker is stuck in a 3 s request before measuring.
    app.create_invoice(100, "warm-up").await;
    receiver.wait_for(1).await;

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let one = Instant::now();
        let invoice = app
            .create_invoice(100 + i, "while the endpoint sleeps")
            .await;
        assert_eq!(invoice["status"], "open", "{invoice}");
        slowest = slowest.max(one.elapsed());
    }
    let total = started.elapsed();
    // If a creation waited for a delivery, it alone would take about 3 s, and 20 of them a
    // minute. 20 durable commits take well under 0.5 s here; 2 s leaves room for a loaded
    // 2-core machine while staying clearly below one 3 s answer.
    assert!(
        total < Duration::from_secs(2),
        "20 invoice creations took {total:?} (slowest {slowest:?}) while the webhook endpoint \
         sleeps {SLEEP:?}: the payment path waits on deliveries"
    );
    // The measurement started after the warm-up request arrived and ended before its 3 s
    // answer could have come: it overlapped the slow delivery throughout.
    assert!(
        started.elapsed() < SLEEP,
        "the measurement did not overlap the slow answer"
    );
    // No shutdown: it would wait for the worker's in-flight 3 s requests. Dropping the runtime
    // at the end of the test cancels them.
}

/// One slow endpoint must not hold up deliveries to the other endpoints (the module doc of
/// src/webhooks.rs: "a slow or dead endpoint delays its own deliveries, nothing else").
/// Regression: the worker used to await every attempt of a batch before reading what else
/// was due, so a 3 s endpoint delayed everyone's deliveries by 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_delay_other_endpoints() {
    const SLEEP: Duration = Duration::from_secs(3);
    let app = spawn_app().await;
    let slow = Receiver::start(&[], 200, SLEEP).await;
    app.register(&slow.url, &["invoice.created"]).await;
    app.create_invoice(100, "warm-up").await;
    // The worker is now inside a 3 s request to the slow endpoint.
    slow.wait_for(1).await;

    let fast = Receiver::ok().await;
    app.register(&fast.url, &["invoice.paid"]).await;
    let invoice = app
        .create_invoice(200, "paid while the other endpoint sleeps")
        .await;
    app.post(
        &format!("/v1/test/invoices/{}/pay", text(&invoice, "id")),
        json!({}),
        200,
    )
    .await;
    let paid_at = Instant::now();
    let deadline = paid_at + PATIENCE;
    while fast.received().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = paid_at.elapsed();
    assert!(!fast.received().is_empty(), "never delivered");
    // Normally a few milliseconds; 1 s is far below the slow endpoint's 3 s.
    assert!(
        waited < Duration::from_secs(1),
        "invoice.paid reached a healthy endpoint {waited:?} after the payment because another \
         endpoint is slow"
    );
    // No shutdown: it would wait for the in-flight 3 s requests.
}
