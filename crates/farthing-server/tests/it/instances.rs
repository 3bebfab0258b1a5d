//! Two `farthing serve` instances on one PostgreSQL database (issue "PostgreSQL backend and
//! several instances", SPEC L4): both serve the same merchant at once; one balance spent through
//! both is never overdrawn; an idempotency key sent to both charges once; a key revoked or a risk
//! rule changed through one holds at once on the other; the background work runs on one of them
//! only (each webhook delivered once), and passes to the other when it stops.
//!
//! On the suite's PostgreSQL run the server it names is used; otherwise the test starts a
//! throwaway one of its own (`scripts/postgres`), so this runs on every run of the suite.

#[path = "../../../farthing-store/tests/support/postgres.rs"]
mod pg_server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use farthing_server::config::Config;
use farthing_server::Running;
use farthing_store::instances::{Heard, Topic};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::server;

/// What the webhook receiver got: how often each `webhook-id` arrived.
type Received = Arc<Mutex<HashMap<String, usize>>>;

/// A webhook receiver on 127.0.0.1 that answers 200 to everything.
async fn receiver() -> (String, Received, tokio::task::JoinHandle<()>) {
    let received: Received = Arc::default();
    let counted = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let counted = Arc::clone(&counted);
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                *counted.lock().expect("lock").entry(id).or_default() += 1;
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received, task)
}

/// One instance's configuration over the shared `database`.
fn config(dir: &tempfile::TempDir, database: &str, admin_hash: &str) -> Config {
    let mut config = server::config(dir);
    config.database = database.to_owned();
    config.allow_private_webhooks = true;
    config.admin_key_sha256 = admin_hash.to_owned();
    config
}

struct Instance {
    running: Running,
    base: String,
}

async fn start(config: Config) -> Instance {
    config.validate().expect("valid");
    let running = farthing_server::start(config).await.expect("starts");
    Instance {
        base: format!("http://{}", running.addr()),
        running,
    }
}

/// Calls with one merchant's key.
struct Api {
    client: reqwest::Client,
    key: String,
}

impl Api {
    async fn call(
        &self,
        instance: &Instance,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", instance.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn charge(
        &self,
        instance: &Instance,
        customer: &str,
        amount: u64,
    ) -> (StatusCode, Value) {
        self.call(
            instance,
            Method::POST,
            "/v1/charges",
            Some(json!({"customer": customer, "amount": amount, "currency": "XTR"})),
        )
        .await
    }
}

async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serve_one_database() {
    let own = server::postgres_server()
        .is_none()
        .then(pg_server::Postgres::start);
    let postgres = server::postgres_server()
        .unwrap_or_else(|| own.as_ref().map(|p| p.url().to_owned()).unwrap_or_default());
    // A schema of this run's own (a server named by the environment may outlive the run).
    let name = format!(
        "two_instances_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis())
    );
    let database = farthing_store::pg::scratch_schema(&postgres, &name).expect("a new schema");
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (admin, admin_hash) = farthing_server::http::admin::generate_admin_key().expect("key");
    let a = start(config(&dir_a, &database, &admin_hash)).await;
    let b = start(config(&dir_b, &database, &admin_hash)).await;
    let client = reqwest::Client::new();
    assert!(
        eventually(Duration::from_secs(5), || a.running.leads()).await,
        "the first instance leads"
    );
    assert!(!b.running.leads(), "the second does not");
    let merchant = server::merchant(&a.running, "Two instances").await;
    let key = merchant.test_key.as_str();
    let api = Api {
        client: client.clone(),
        key: key.to_owned(),
    };

    // A webhook endpoint made through the follower; deliveries come from the leader.
    let (hook, received, _receiver) = receiver().await;
    let (status, endpoint) = api
        .call(
            &b,
            Method::POST,
            "/v1/webhook_endpoints",
            Some(json!({"url": hook})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");

    // One balance of 100, spent through both at once: 20 charges of 10, each idempotency key
    // sent to both instances. Exactly 10 charges exist; each key got one charge.
    let (_, customer) = api
        .call(&a, Method::POST, "/v1/customers", Some(json!({})))
        .await;
    let customer = customer["id"].as_str().expect("customer").to_owned();
    let (status, _) = api
        .call(
            &b,
            Method::POST,
            &format!("/v1/test/customers/{customer}/top_up"),
            Some(json!({"amount": 100, "currency": "XTR"})),
        )
        .await;
    assert!(status.is_success());
    let mut attempts = Vec::new();
    for n in 0..20 {
        for instance in [&a, &b] {
            let (client, base, customer) =
                (client.clone(), instance.base.clone(), customer.clone());
            let key = key.to_owned();
            attempts.push(tokio::spawn(async move {
                let response = client
                    .post(format!("{base}/v1/charges"))
                    .bearer_auth(&key)
                    .header("Idempotency-Key", format!("spend-{n}"))
                    .json(&json!({"customer": customer, "amount": 10, "currency": "XTR"}))
                    .send()
                    .await
                    .expect("an answer");
                let status = response.status();
                let body: Value = response.json().await.expect("json");
                (n, status, body)
            }));
        }
    }
    let mut charged: HashMap<u32, String> = HashMap::new();
    for attempt in attempts {
        let (n, status, body) = attempt.await.expect("join");
        match status {
            StatusCode::CREATED => {
                let id = body["id"].as_str().expect("id").to_owned();
                if let Some(before) = charged.insert(n, id.clone()) {
                    assert_eq!(before, id, "key spend-{n} answered with two charges");
                }
            }
            // Refused for funds, or the twin request under the same key still running.
            StatusCode::PAYMENT_REQUIRED | StatusCode::CONFLICT => {}
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    let (_, listed) = api
        .call(&b, Method::GET, "/v1/charges?limit=100", None)
        .await;
    let listed = listed["data"].as_array().expect("charges").len();
    assert_eq!(listed, 10, "exactly the balance's worth of charges");
    assert!(charged.len() <= 10);
    let (_, state) = api
        .call(&a, Method::GET, &format!("/v1/customers/{customer}"), None)
        .await;
    assert_eq!(state["balances"][0]["balance"], json!(0), "{state}");

    // Every event is delivered, once, by the leader alone.
    let (_, events) = api
        .call(&a, Method::GET, "/v1/events?limit=100", None)
        .await;
    let events = events["data"].as_array().expect("events").len();
    assert!(events >= 10, "{events} events");
    assert!(
        eventually(Duration::from_secs(15), || received
            .lock()
            .expect("lock")
            .len()
            >= events)
        .await,
        "every event is delivered"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        let received = received.lock().expect("lock");
        assert_eq!(received.len(), events);
        assert!(
            received.values().all(|times| *times == 1),
            "an event was delivered twice: {received:?}"
        );
    }

    // The operator's merchant creation, the same request with one Idempotency-Key sent to
    // both instances at once: one merchant is made, and the other answer says why not.
    let create = |instance: &Instance| {
        client
            .post(format!("{}/v1/admin/merchants", instance.base))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "add-once")
            .json(&json!({"name": "Made once"}))
            .send()
    };
    let (first, second) = tokio::join!(create(&a), create(&b));
    let mut statuses = Vec::new();
    for answer in [first, second] {
        let answer = answer.expect("an answer");
        let status = answer.status();
        let body: Value = answer.json().await.expect("json");
        if status == StatusCode::CONFLICT {
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                code == "secret_already_shown" || code == "idempotency_key_in_use",
                "{body}"
            );
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let operator = Api {
        client: client.clone(),
        key: admin.clone(),
    };
    let (status, listed) = operator
        .call(&b, Method::GET, "/v1/admin/merchants?limit=100", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let made = listed["data"]
        .as_array()
        .expect("merchants")
        .iter()
        .filter(|merchant| merchant["name"] == "Made once")
        .count();
    assert_eq!(made, 1, "{listed}");

    // Idle, the instances stay quiet: news of the outbox is forwarded once, never echoed
    // back and forth.
    let outbox_news = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&outbox_news);
    let listening = database.clone();
    let listener = tokio::task::spawn_blocking(move || {
        farthing_store::instances::Listener::start(&listening, move |news| {
            if news == Heard::Changed(Topic::Outbox) {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .expect("listens")
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle_news = outbox_news.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        idle_news <= 1,
        "{idle_news} outbox announcements while idle"
    );

    // Events no endpoint asks for wake nobody: a merchant without endpoints charges through
    // the follower, and no news of the outbox goes out; a charge of the merchant with an
    // endpoint, through the follower, sends it.
    let quiet = server::merchant(&a.running, "No endpoints").await;
    let quiet_api = Api {
        client: client.clone(),
        key: quiet.test_key.clone(),
    };
    let (_, buyer) = quiet_api
        .call(&b, Method::POST, "/v1/customers", Some(json!({})))
        .await;
    let buyer = buyer["id"].as_str().expect("customer").to_owned();
    let (status, _) = quiet_api
        .call(
            &b,
            Method::POST,
            &format!("/v1/test/customers/{buyer}/top_up"),
            Some(json!({"amount": 50, "currency": "XTR"})),
        )
        .await;
    assert!(status.is_success());
    for _ in 0..5 {
        let (status, body) = quiet_api
            .call(
                &b,
                Method::POST,
                "/v1/charges",
                Some(json!({"customer": buyer, "amount": 10, "currency": "XTR"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quiet_news = outbox_news.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        quiet_news, idle_news,
        "charges whose events no endpoint asks for sent news of the outbox"
    );
    let (status, _) = api
        .call(
            &b,
            Method::POST,
            &format!("/v1/test/customers/{customer}/top_up"),
            Some(json!({"amount": 10, "currency": "XTR"})),
        )
        .await;
    assert!(status.is_success());
    let (status, body) = api
        .call(
            &b,
            Method::POST,
            "/v1/charges",
            Some(json!({"customer": customer, "amount": 10, "currency": "XTR"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        eventually(Duration::from_secs(5), || outbox_news
            .load(std::sync::atomic::Ordering::SeqCst)
            > quiet_news)
        .await,
        "a charge whose events an endpoint asks for, made on the follower, tells the leader"
    );
    tokio::task::spawn_blocking(move || drop(listener))
        .await
        .expect("join");

    // A key revoked through one instance stops working on the other at once (there it was
    // cached, having just been used).
    let (_, made) = api
        .call(
            &a,
            Method::POST,
            "/v1/api_keys",
            Some(json!({"scopes": ["*"]})),
        )
        .await;
    let (extra, extra_id) = (
        made["secret"].as_str().expect("secret").to_owned(),
        made["id"].as_str().expect("id").to_owned(),
    );
    let status_on_b = |key: String| {
        let (client, base) = (client.clone(), b.base.clone());
        async move {
            client
                .get(format!("{base}/v1/customers"))
                .bearer_auth(key)
                .send()
                .await
                .expect("answer")
                .status()
        }
    };
    assert_eq!(status_on_b(extra.clone()).await, StatusCode::OK);
    let (status, _) = api
        .call(
            &a,
            Method::POST,
            &format!("/v1/api_keys/{extra_id}/revoke"),
            None,
        )
        .await;
    assert!(status.is_success());
    let mut refused = false;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !refused && Instant::now() < deadline {
        refused = status_on_b(extra.clone()).await == StatusCode::UNAUTHORIZED;
    }
    assert!(refused, "the revoked key still works on the other instance");

    // Risk rules set through one instance hold on the other, whose cache held the old ones;
    // and the day's total counts what was paid through either instance.
    let (_, ann) = api
        .call(&a, Method::POST, "/v1/customers", Some(json!({})))
        .await;
    let ann = ann["id"].as_str().expect("customer").to_owned();
    api.call(
        &a,
        Method::POST,
        &format!("/v1/test/customers/{ann}/top_up"),
        Some(json!({"amount": 1000, "currency": "XTR"})),
    )
    .await;
    assert_eq!(
        api.charge(&b, &ann, 60).await.0,
        StatusCode::CREATED,
        "no rules yet"
    );
    let (status, rules) = api.call(
        &a,
        Method::PUT,
        "/v1/risk/rules",
        Some(json!({"limits": [{"currency": "XTR", "per_payment_max": 50, "per_customer_day_max": 150}]})),
    )
    .await;
    assert!(status.is_success(), "{rules}");
    let mut held = false;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !held && Instant::now() < deadline {
        held = api.charge(&b, &ann, 60).await.0 == StatusCode::PAYMENT_REQUIRED;
    }
    assert!(
        held,
        "the new per-payment limit holds on the other instance"
    );
    // 60 paid; 50 through each instance makes 160 > 150: the second is refused.
    assert_eq!(api.charge(&a, &ann, 50).await.0, StatusCode::CREATED);
    let (status, body) = api.charge(&b, &ann, 50).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["error"]["code"], "risk_refused", "{body}");

    // A Mini App session made by one instance pays through the other (a load balancer sends
    // the buyer's next request anywhere): the instances sign sessions with one key.
    let double = telegram_double::TelegramDouble::spawn()
        .await
        .expect("the Bot API double");
    // The other instance keeps the rails the merchant can take in memory: it takes the bot
    // connected through this one, and the card provider, once it hears of them.
    let takes_on_b = |body: Value, rail: &'static str| {
        let (api, b) = (&api, &b);
        async move {
            let (status, invoice) = api.call(b, Method::POST, "/v1/invoices", Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{invoice}");
            invoice["rails"]
                .as_array()
                .is_some_and(|rails| rails.iter().any(|taken| taken == rail))
        }
    };
    let xtr = json!({"amount": 30, "currency": "XTR"});
    let usd = json!({"amount": 500, "currency": "USD"});
    assert!(!takes_on_b(xtr.clone(), "stars").await, "no bot yet");
    let (status, connected) = api
        .call(
            &a,
            Method::PUT,
            "/v1/rails/stars",
            Some(json!({"bot_token": double.token(), "api_url": double.base_url(), "mode": "webhook"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{connected}");
    let mut taken = false;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !taken && Instant::now() < deadline {
        taken = takes_on_b(xtr.clone(), "stars").await;
    }
    assert!(
        taken,
        "the bot connected through one instance is offered by the other"
    );
    assert!(
        !takes_on_b(usd.clone(), "card").await,
        "no card provider yet"
    );
    let (status, card) = api
        .call(
            &a,
            Method::PUT,
            "/v1/rails/card",
            Some(
                json!({"provider_token": "284685063:TEST:Y2FyZHNfc2VjcmV0", "currencies": ["USD"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{card}");
    let mut taken = false;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !taken && Instant::now() < deadline {
        taken = takes_on_b(usd.clone(), "card").await;
    }
    assert!(
        taken,
        "the card provider set through one instance is offered by the other"
    );
    let init_data = crate::support::init_data::signed(
        &crate::support::init_data::fields(
            &crate::support::init_data::user(77, "Ada", "en"),
            crate::support::init_data::now_s(),
        ),
        double.token(),
    );
    let started: Value = client
        .post(format!("{}/webapp/session", a.base))
        .json(&json!({"bot_id": connected["bot_id"], "init_data": init_data}))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    let session = started["session"].as_str().expect("a session").to_owned();
    let buyer = started["customer"].as_str().expect("customer").to_owned();
    api.call(
        &b,
        Method::POST,
        &format!("/v1/test/customers/{buyer}/top_up"),
        Some(json!({"amount": 100, "currency": "XTR"})),
    )
    .await;
    let (_, invoice) = api
        .call(
            &a,
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 30, "currency": "XTR"})),
        )
        .await;
    let invoice = invoice["id"].as_str().expect("invoice").to_owned();
    let paid = client
        .post(format!("{}/webapp/pay/{invoice}", b.base))
        .bearer_auth(&session)
        .send()
        .await
        .expect("pay");
    assert_eq!(paid.status(), StatusCode::OK, "{:?}", paid.text().await);

    // The leader stops: the other instance takes over the background work, and delivers.
    let delivered_before = received.lock().expect("lock").len();
    a.running.shutdown().await;
    assert!(
        eventually(Duration::from_secs(5), || b.running.leads()).await,
        "the remaining instance leads"
    );
    assert_eq!(api.charge(&b, &ann, 10).await.0, StatusCode::CREATED);
    assert!(
        eventually(Duration::from_secs(10), || received
            .lock()
            .expect("lock")
            .len()
            > delivered_before)
        .await,
        "the new leader delivers webhooks"
    );
    b.running.shutdown().await;
    drop(own);
}
