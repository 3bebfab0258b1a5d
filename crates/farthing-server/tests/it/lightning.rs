//! The Lightning rail over HTTP against a real LNbits 1.6.2 (SPEC RL3, I3; issue 4): farthing's
//! backend is one LNbits wallet, the payer another wallet of the same LNbits (FakeWallet: the
//! payment is internal to LNbits and instant, exactly as LNbits books it for real nodes).
//!
//! Covered: connecting the node (`PUT /v1/rails/lightning`, credentials checked, never
//! returned); a BOLT11 on a BTC invoice whose expiry ends no later than the invoice's; a
//! payment by the customer wallet marks the invoice paid, books it and sends `invoice.paid`;
//! expiry (LNbits refuses the BOLT11 once farthing's invoice expired); a late payment (the
//! invoice was canceled meanwhile) credited to the customer; a restart of farthing while an
//! invoice is open and paid meanwhile; LNbits down (the rail reports unhealthy, the balance
//! rail still works, settlement resumes when LNbits is back); LNURL-pay to a Lightning
//! Address and to a customer's top-up link; LNURL-withdraw claimed by the customer wallet
//! (single use); a merchant payout to a BOLT11; LNURL-auth with key pairs made here. Every
//! test ends with a clean ledger audit.

use crate::support::lnbits;
use crate::support::server;

use std::time::{Duration, Instant};

use farthing_server::config::Config;
use farthing_server::state::Mode;
use farthing_server::{start, NewMerchant, Running};
use lnbits::Lnbits;
use reqwest::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;

struct App {
    base: String,
    client: Client,
    merchant: NewMerchant,
    running: Option<Running>,
    database: String,
    hooks: mpsc::UnboundedReceiver<Value>,
    hook_url: String,
    _dir: tempfile::TempDir,
}

fn config(database: &str) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database: database.to_owned(),
        public_url: "http://127.0.0.1:0".to_owned(),
        allow_private_webhooks: true,
        ..Config::default()
    };
    config.lightning.poll_interval_ms = 200;
    config.lightning.allow_private_nodes = true;
    crate::support::server::relax_rate_limits(&mut config);
    config.webhooks.retry_schedule_s = vec![0.2, 0.5];
    // The same key across restarts of one database (as an operator keeps it).
    config.secrets_key = Some(crate::support::server::secrets_key());
    config
}

/// A webhook receiver on 127.0.0.1 that forwards every body.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (sender, hooks) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sender = sender.clone();
            async move {
                if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                    let _ = sender.send(value);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), hooks)
}

async fn spawn() -> App {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = dir
        .path()
        .join("farthing.db")
        .to_string_lossy()
        .into_owned();
    let running = start(config(&database)).await.expect("server starts");
    let merchant = server::merchant(&running, "Shop").await;
    let (hook_url, hooks) = receiver().await;
    let app = App {
        base: format!("http://{}", running.addr()),
        client: Client::new(),
        merchant,
        running: Some(running),
        database,
        hooks,
        hook_url,
        _dir: dir,
    };
    let (status, _) = app
        .post("/v1/webhook_endpoints", json!({"url": app.hook_url}))
        .await;
    assert_eq!(status, 201);
    app
}

async fn start_lnbits() -> Lnbits {
    tokio::task::spawn_blocking(Lnbits::start)
        .await
        .expect("join")
}

impl App {
    fn key(&self) -> &str {
        &self.merchant.live_key
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(self.key()),
        )
        .await
    }

    async fn public_get(&self, url: &str) -> (u16, Value) {
        self.send(self.client.get(url)).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(self.key())
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.client
                .put(format!("{}{path}", self.base))
                .bearer_auth(self.key())
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn connect(&self, lnbits: &Lnbits, address: Option<&str>) -> Value {
        let mut body = json!({
            "backend": "lnbits",
            "url": lnbits.url,
            "invoice_key": lnbits.merchant.invoice_key,
            "admin_key": lnbits.merchant.admin_key,
        });
        if let Some(name) = address {
            body["lightning_address"] = json!(name);
        }
        let (status, rail) = self.put("/v1/rails/lightning", body).await;
        assert_eq!(status, 200, "{rail}");
        rail
    }

    async fn invoice(&self, body: Value) -> Value {
        let (status, invoice) = self.post("/v1/invoices", body).await;
        assert_eq!(status, 201, "{invoice}");
        invoice
    }

    async fn wait_invoice(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, invoice) = self.get(&format!("/v1/invoices/{id}")).await;
            if invoice["status"] == status {
                return invoice;
            }
            assert!(
                Instant::now() < deadline,
                "invoice {id} never became {status}: {invoice}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next webhook of `event_type` (others are skipped).
    async fn hook(&mut self, event_type: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, self.hooks.recv())
                .await
                .unwrap_or_else(|_| panic!("no {event_type} webhook"))
                .expect("receiver open");
            if event["type"] == event_type {
                return event;
            }
        }
    }

    async fn merchant_btc(&self) -> u64 {
        let state = self.running.as_ref().expect("running").state().clone();
        let merchant: farthing_core::MerchantId =
            farthing_core::PublicId::parse(&self.merchant.id).expect("merchant id");
        let account = farthing_core::ledger::Account::new(
            farthing_core::ledger::AccountKind::MerchantBalance { merchant },
            farthing_core::Currency::BTC,
        );
        state
            .store(Mode::Live)
            .account(account.id)
            .expect("read")
            .map_or(0, |a| u64::try_from(a.balances.posted()).expect("positive"))
    }

    async fn customer_btc(&self, customer: &str) -> u64 {
        let (status, body) = self.get(&format!("/v1/customers/{customer}")).await;
        assert_eq!(status, 200, "{body}");
        body["balances"]
            .as_array()
            .and_then(|list| list.iter().find(|b| b["currency"] == "BTC"))
            .and_then(|b| b["available"].as_u64().or_else(|| b["amount"].as_u64()))
            .unwrap_or(0)
    }

    /// The Lightning rail of `GET /v1/rails`.
    async fn rail(&self) -> Value {
        let (_, rails) = self.get("/v1/rails").await;
        rails["data"]
            .as_array()
            .and_then(|list| list.iter().find(|r| r["rail"] == "lightning"))
            .cloned()
            .unwrap_or_else(|| panic!("no lightning rail in {rails}"))
    }

    async fn wait_health(&self, health: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rail = self.rail().await;
            if rail["health"] == health {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the rail never became {health}: {rail}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        let running = start(config(&self.database))
            .await
            .expect("server restarts");
        self.base = format!("http://{}", running.addr());
        self.running = Some(running);
    }

    async fn audit_and_stop(mut self) {
        self.stop().await;
        let report = farthing_store::audit::audit_path(std::path::Path::new(&self.database))
            .expect("audit runs");
        assert!(report.is_ok(), "ledger audit: {report}");
    }

    async fn post_as(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }
}

fn bolt11_of(invoice: &Value) -> String {
    invoice["payment_instructions"]["lightning"]["bolt11"]
        .as_str()
        .unwrap_or_else(|| panic!("no BOLT11 on {invoice}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wallet_pays_the_bolt11_and_farthing_books_it_and_sends_the_webhook() {
    let lnbits = start_lnbits().await;
    let mut app = spawn().await;

    // Credentials are checked with the node; refused keys write nothing.
    let (status, refused) = app
        .put(
            "/v1/rails/lightning",
            json!({"backend": "lnbits", "url": lnbits.url, "invoice_key": "0000wrong"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_lightning_credentials");
    let (_, rails) = app.get("/v1/rails").await;
    assert!(!rails.to_string().contains("lightning"), "{rails}");

    let rail = app.connect(&lnbits, None).await;
    assert_eq!(rail["rail"], "lightning");
    assert_eq!(rail["backend"], "lnbits");
    for secret in [&lnbits.merchant.invoice_key, &lnbits.merchant.admin_key] {
        assert!(
            !rail.to_string().contains(secret.as_str()),
            "secret in {rail}"
        );
    }

    // A non-BTC invoice cannot take Lightning; a BTC one gets a BOLT11 by default.
    let (status, wrong) = app
        .post(
            "/v1/invoices",
            json!({"currency": "XTR", "amount": 5, "rails": ["lightning"]}),
        )
        .await;
    assert_eq!(status, 400, "{wrong}");
    assert_eq!(wrong["error"]["code"], "rail_currency_mismatch");
    let invoice = app
        .invoice(json!({"currency": "BTC", "amount": 1_500, "description": "A paid post"}))
        .await;
    assert_eq!(invoice["rails"], json!(["balance", "lightning"]));
    let bolt11 = bolt11_of(&invoice);
    let checked = farthing_lightning::bolt11::parse(&bolt11).expect("a valid BOLT11");
    assert_eq!(checked.amount_msat, Some(1_500_000));
    let expires_at = invoice["expires_at"].as_u64().expect("expires_at");
    assert!(
        checked.expires_at_s <= expires_at,
        "the BOLT11 ({}) outlives the invoice ({expires_at})",
        checked.expires_at_s
    );
    assert!(
        checked.expires_at_s + 5 >= expires_at,
        "not much shorter either"
    );
    let id = invoice["id"].as_str().expect("id").to_owned();

    let (status, paid) = lnbits.pay(&bolt11).await;
    assert!(status < 300, "LNbits refused to pay: {status} {paid}");
    let done = app.wait_invoice(&id, "paid").await;
    assert_eq!(done["amount_paid"], 1_500, "{done}");
    let hook = app.hook("invoice.paid").await;
    assert_eq!(hook["data"]["object"]["id"], id.as_str(), "{hook}");
    assert_eq!(app.merchant_btc().await, 1_500);
    assert_eq!(lnbits.balance_msat(&lnbits.merchant).await, 1_500_000);

    // The rail is healthy, and the same payment seen again (the stream and the poller both
    // look) is booked once.
    let lightning = app.rail().await;
    assert_eq!(lightning["health"], "healthy", "{lightning}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.merchant_btc().await, 1_500);
    let (_, events) = app.get("/v1/events?limit=100").await;
    let paid_events = events["data"]
        .as_array()
        .map(|list| list.iter().filter(|e| e["type"] == "invoice.paid").count());
    assert_eq!(paid_events, Some(1), "{events}");
    app.audit_and_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bolt11_cannot_be_paid_after_the_invoice_expired() {
    let lnbits = start_lnbits().await;
    let app = spawn().await;
    app.connect(&lnbits, None).await;
    let invoice = app
        .invoice(json!({"currency": "BTC", "amount": 700, "expires_in": 6}))
        .await;
    let bolt11 = bolt11_of(&invoice);
    let checked = farthing_lightning::bolt11::parse(&bolt11).expect("valid");
    assert!(checked.expires_at_s <= invoice["expires_at"].as_u64().expect("expires_at"));
    let id = invoice["id"].as_str().expect("id").to_owned();
    app.wait_invoice(&id, "expired").await;
    // farthing's watcher asks LNbits right after the BOLT11's expiry, which makes LNbits mark
    // it failed; then the customer's wallet can no longer pay it.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before = lnbits.balance_msat(&lnbits.customer).await;
    let (status, refused) = lnbits.pay(&bolt11).await;
    assert!(
        status >= 400 || refused["status"] == "failed",
        "LNbits paid an expired BOLT11: {status} {refused}"
    );
    assert_eq!(
        lnbits.balance_msat(&lnbits.customer).await,
        before,
        "nothing left the wallet"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.merchant_btc().await, 0);
    assert_eq!(lnbits.balance_msat(&lnbits.merchant).await, 0);
    app.audit_and_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_payment_is_credited_to_the_customer_not_lost() {
    let lnbits = start_lnbits().await;
    let mut app = spawn().await;
    app.connect(&lnbits, None).await;
    let (status, customer) = app
        .post("/v1/customers", json!({"external_id": "reader-1"}))
        .await;
    assert_eq!(status, 201, "{customer}");
    let customer = customer["id"].as_str().expect("id").to_owned();
    let invoice = app
        .invoice(json!({"currency": "BTC", "amount": 900, "customer": customer}))
        .await;
    let id = invoice["id"].as_str().expect("id").to_owned();
    let bolt11 = bolt11_of(&invoice);
    // The merchant cancels; the payer's wallet still pays the BOLT11 it scanned.
    let (status, canceled) = app
        .post(&format!("/v1/invoices/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{canceled}");
    let (status, paid) = lnbits.pay(&bolt11).await;
    assert!(status < 300, "{status} {paid}");
    let credited = app.hook("invoice.payment_credited").await;
    let object = &credited["data"]["object"];
    assert_eq!(object["credit_reason"], "late", "{credited}");
    assert_eq!(object["amount_credited"], 900, "{credited}");
    assert_eq!(object["customer"], customer.as_str(), "{credited}");
    assert_eq!(app.customer_btc(&customer).await, 900);
    assert_eq!(app.merchant_btc().await, 0);
    let (_, still) = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(still["status"], "canceled", "{still}");
    app.audit_and_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_made_while_farthing_was_down_is_settled_after_the_restart() {
    let lnbits = start_lnbits().await;
    let mut app = spawn().await;
    app.connect(&lnbits, None).await;
    let invoice = app.invoice(json!({"currency": "BTC", "amount": 333})).await;
    let id = invoice["id"].as_str().expect("id").to_owned();
    app.stop().await;
    let (status, paid) = lnbits.pay(&bolt11_of(&invoice)).await;
    assert!(status < 300, "{status} {paid}");
    app.restart().await;
    let done = app.wait_invoice(&id, "paid").await;
    assert_eq!(done["amount_paid"], 333, "{done}");
    assert_eq!(app.merchant_btc().await, 333);
    app.audit_and_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lnbits_down_for_a_while_leaves_other_rails_working_and_settlement_resumes() {
    let lnbits = start_lnbits().await;
    let app = spawn().await;
    app.connect(&lnbits, None).await;
    let invoice = app.invoice(json!({"currency": "BTC", "amount": 444})).await;
    let id = invoice["id"].as_str().expect("id").to_owned();
    let bolt11 = bolt11_of(&invoice);

    tokio::task::block_in_place(|| lnbits.stop());
    // The rail reports unhealthy once the watcher failed to reach the node.
    app.wait_health("unhealthy").await;
    // A BTC invoice still gets created (without a BOLT11), and other rails still take
    // payments: a test-mode customer pays an invoice from its balance.
    let (status, created) = app
        .post(
            "/v1/invoices",
            json!({"currency": "BTC", "amount": 5, "rails": ["balance", "lightning"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(
        created["payment_instructions"].get("lightning").is_none(),
        "{created}"
    );
    let test_key = app.merchant.test_key.clone();
    let (status, customer) = app.post_as(&test_key, "/v1/customers", json!({})).await;
    assert_eq!(status, 201, "{customer}");
    let customer = customer["id"].as_str().expect("id").to_owned();
    let (status, topped) = app
        .post_as(
            &test_key,
            &format!("/v1/test/customers/{customer}/top_up"),
            json!({"currency": "XTR", "amount": 10}),
        )
        .await;
    assert_eq!(status, 200, "{topped}");
    let (status, other) = app
        .post_as(
            &test_key,
            "/v1/invoices",
            json!({"currency": "XTR", "amount": 4}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let other = other["id"].as_str().expect("id").to_owned();
    let (status, paid) = app
        .post_as(
            &test_key,
            &format!("/v1/invoices/{other}/pay"),
            json!({"customer": customer}),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "paid", "{paid}");

    // LNbits comes back. FakeWallet keeps its invoices' preimages in memory, so LNbits fails
    // the invoices it had open (a real node keeps them); farthing stops watching that one, and
    // new invoices get a BOLT11 and settle again.
    tokio::task::block_in_place(|| lnbits.restart());
    let (status, lost) = lnbits.pay(&bolt11).await;
    assert!(
        status >= 400 || lost["status"] == "failed",
        "{status} {lost}"
    );
    let again = app.invoice(json!({"currency": "BTC", "amount": 445})).await;
    let (status, paid) = lnbits.pay(&bolt11_of(&again)).await;
    assert!(status < 300, "{status} {paid}");
    app.wait_invoice(again["id"].as_str().expect("id"), "paid")
        .await;
    let (_, first) = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(first["status"], "open", "{first}");
    app.wait_health("healthy").await;
    app.audit_and_stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn k1_bytes(text: &str) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex k1");
    }
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn lnurl_pay_to_a_lightning_address_and_to_a_top_up_link() {
    let lnbits = start_lnbits().await;
    let mut app = spawn().await;
    let rail = app.connect(&lnbits, Some("tips")).await;
    let host = app.base.trim_start_matches("http://").to_owned();
    assert_eq!(rail["lightning_address"], format!("tips@{host}"), "{rail}");

    // LUD-16: the well-known URL answers the pay request, with the identifier in the metadata.
    let (status, request) = app
        .public_get(&format!("{}/.well-known/lnurlp/tips", app.base))
        .await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(request["tag"], "payRequest");
    let metadata = request["metadata"].as_str().expect("metadata").to_owned();
    assert!(metadata.contains(&format!("tips@{host}")), "{metadata}");
    let (status, missing) = app
        .public_get(&format!("{}/.well-known/lnurlp/nobody", app.base))
        .await;
    assert_eq!(status, 404);
    assert_eq!(missing["status"], "ERROR", "{missing}");

    // The callback refuses bad amounts in LNURL's error shape.
    let callback = request["callback"].as_str().expect("callback").to_owned();
    let (status, bad) = app.public_get(&format!("{callback}?amount=1500")).await;
    assert_eq!(status, 400);
    assert_eq!(bad["status"], "ERROR", "{bad}");
    let (status, direct) = app
        .public_get(&format!("{callback}?amount=2000&comment=hi"))
        .await;
    assert_eq!(status, 200, "{direct}");
    // The BOLT11 commits to the metadata (the description hash rule).
    let checked = farthing_lightning::bolt11::parse(direct["pr"].as_str().expect("pr"))
        .expect("valid BOLT11");
    assert_eq!(
        checked.description_hash,
        Some(farthing_lightning::lnurl::description_hash(&metadata))
    );
    assert_eq!(checked.amount_msat, Some(2_000));

    // The customer's LNbits wallet pays the address's LNURL, with a comment (LUD-12).
    let lnurl = farthing_lightning::lnurl::encode(&format!("{}/lnurl/live/pay/tips", app.base));
    let (status, paid) = lnbits.pay_lnurl(&lnurl, 21_000, Some("great post")).await;
    assert_eq!(status, 200, "{paid}");
    let hook = app.hook("invoice.paid").await;
    let object = &hook["data"]["object"];
    assert_eq!(object["amount_paid"], 21, "{hook}");
    assert_eq!(object["metadata"]["comment"], "great post", "{hook}");
    assert_eq!(app.merchant_btc().await, 21);

    // A customer's top-up link: any amount paid is credited to that customer.
    let (status, customer) = app
        .post("/v1/customers", json!({"external_id": "u-1"}))
        .await;
    assert_eq!(status, 201);
    let customer = customer["id"].as_str().expect("id").to_owned();
    let (status, link) = app
        .get(&format!("/v1/customers/{customer}/lightning"))
        .await;
    assert_eq!(status, 200, "{link}");
    let lnurl = link["lnurl"].as_str().expect("lnurl");
    let (status, paid) = lnbits.pay_lnurl(lnurl, 50_000, None).await;
    assert_eq!(status, 200, "{paid}");
    let credited = app.hook("invoice.payment_credited").await;
    assert_eq!(
        credited["data"]["object"]["credit_reason"], "top_up",
        "{credited}"
    );
    assert_eq!(credited["data"]["object"]["customer"], customer.as_str());
    assert_eq!(app.customer_btc(&customer).await, 50);
    app.audit_and_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lnurl_withdraw_is_claimed_once_and_a_payout_pays_a_bolt11() {
    let lnbits = start_lnbits().await;
    let mut app = spawn().await;
    app.connect(&lnbits, None).await;
    // Fund a customer (top-up link) and the merchant (an invoice).
    let (_, customer) = app.post("/v1/customers", json!({})).await;
    let customer = customer["id"].as_str().expect("id").to_owned();
    let (_, link) = app
        .get(&format!("/v1/customers/{customer}/lightning"))
        .await;
    let lnurl = link["lnurl"].as_str().expect("lnurl");
    let (status, paid) = lnbits.pay_lnurl(lnurl, 800_000, None).await;
    assert_eq!(status, 200, "{paid}");
    app.hook("invoice.payment_credited").await;
    assert_eq!(app.customer_btc(&customer).await, 800);

    // More than the balance is refused; a link for 300 sat is made.
    let (status, refused) = app
        .post(
            "/v1/lnurl/withdraws",
            json!({"customer": customer, "amount": 900}),
        )
        .await;
    assert_eq!(status, 402, "{refused}");
    let (status, withdraw) = app
        .post(
            "/v1/lnurl/withdraws",
            json!({"customer": customer, "amount": 300, "description": "Refund"}),
        )
        .await;
    assert_eq!(status, 201, "{withdraw}");
    assert_eq!(withdraw["status"], "open");
    let before = lnbits.balance_msat(&lnbits.customer).await;

    // The customer's wallet scans and claims it (as LNbits' own UI does).
    let lnurl = withdraw["lnurl"].as_str().expect("lnurl");
    let (scanned, (status, claimed)) = lnbits.claim_withdraw(lnurl, 300).await;
    assert_eq!(scanned["tag"], "withdrawRequest", "{scanned}");
    assert_eq!(scanned["maxWithdrawable"], 300_000, "{scanned}");
    assert_eq!(status, 201, "{claimed}");
    let hook = app.hook("payout.succeeded").await;
    assert_eq!(hook["data"]["object"]["amount"], 300, "{hook}");
    assert_eq!(app.customer_btc(&customer).await, 500);
    let hash = claimed["payment_hash"].as_str().expect("hash").to_owned();
    assert!(lnbits.customer_paid(&hash).await, "the wallet got paid");
    assert_eq!(
        lnbits.balance_msat(&lnbits.customer).await,
        before + 300_000
    );
    let id = withdraw["id"].as_str().expect("id");
    let (_, after) = app.get(&format!("/v1/lnurl/withdraws/{id}")).await;
    assert_eq!(after["status"], "claimed", "{after}");

    // Single use: a second claim is refused and pays nothing.
    let (status, again) = app
        .public_get(&format!(
            "{}/callback?k1={id}&pr={}",
            withdraw["url"].as_str().expect("url"),
            claimed["bolt11"].as_str().expect("bolt11")
        ))
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["status"], "ERROR");
    assert_eq!(app.customer_btc(&customer).await, 500);

    // A merchant payout to a BOLT11 of its own wallet: the merchant has 0 sat, so refused;
    // after a sale it pays, once.
    let (bolt11, _) = lnbits.customer_invoice(100, "payout").await;
    let (status, short) = app.post("/v1/payouts", json!({"bolt11": bolt11})).await;
    assert_eq!(status, 402, "{short}");
    let sale = app.invoice(json!({"currency": "BTC", "amount": 250})).await;
    let (status, _) = lnbits.pay(&bolt11_of(&sale)).await;
    assert!(status < 300);
    app.wait_invoice(sale["id"].as_str().expect("id"), "paid")
        .await;
    let (status, payout) = app.post("/v1/payouts", json!({"bolt11": bolt11})).await;
    assert_eq!(status, 200, "{payout}");
    assert_eq!(payout["status"], "succeeded", "{payout}");
    assert_eq!(app.merchant_btc().await, 150);
    let (status, twice) = app.post("/v1/payouts", json!({"bolt11": bolt11})).await;
    assert_eq!(status, 409, "{twice}");
    assert_eq!(app.merchant_btc().await, 150);
    app.audit_and_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lnurl_auth_links_a_wallet_key_to_a_customer() {
    use secp256k1::{Message, Secp256k1, SecretKey};
    let app = spawn().await;
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[7u8; 32]).expect("key");
    let other = SecretKey::from_slice(&[9u8; 32]).expect("key");
    let public = hex(&key.public_key(&secp).serialize());
    let sign = |k1: &str, with: &SecretKey| {
        hex(&secp
            .sign_ecdsa(&Message::from_digest(k1_bytes(k1)), with)
            .serialize_der())
    };
    let (status, auth) = app.post("/v1/lnurl/auth", json!({})).await;
    assert_eq!(status, 201, "{auth}");
    let k1 = auth["id"].as_str().expect("k1").to_owned();
    let callback = format!("{}/lnurl/live/auth", app.base);
    let decoded = farthing_lightning::lnurl::decode(auth["lnurl"].as_str().expect("lnurl"))
        .expect("a valid LNURL");
    assert!(
        decoded.contains(&format!("k1={k1}")) && decoded.contains("tag=login"),
        "{decoded}"
    );

    // A signature by another key than the one presented is refused; nothing is linked.
    let (status, wrong) = app
        .public_get(&format!(
            "{callback}?tag=login&k1={k1}&sig={}&key={public}",
            sign(&k1, &other)
        ))
        .await;
    assert_eq!(status, 400, "{wrong}");
    assert_eq!(wrong["status"], "ERROR");
    let (_, pending) = app.get(&format!("/v1/lnurl/auth/{k1}")).await;
    assert_eq!(pending["status"], "pending", "{pending}");

    // The right signature logs in and makes the customer.
    let (status, ok) = app
        .public_get(&format!(
            "{callback}?tag=login&k1={k1}&sig={}&key={public}",
            sign(&k1, &key)
        ))
        .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["status"], "OK");
    let (_, verified) = app.get(&format!("/v1/lnurl/auth/{k1}")).await;
    assert_eq!(verified["status"], "verified", "{verified}");
    assert_eq!(verified["linking_key"], public.as_str());
    let customer = verified["customer"].as_str().expect("customer").to_owned();

    // The same k1 again is refused (single use).
    let (status, reused) = app
        .public_get(&format!(
            "{callback}?tag=login&k1={k1}&sig={}&key={public}",
            sign(&k1, &key)
        ))
        .await;
    assert_eq!(status, 409, "{reused}");

    // A second login with the same key is the same customer.
    let (status, second) = app.post("/v1/lnurl/auth", json!({"action": "login"})).await;
    assert_eq!(status, 201, "{second}");
    let k1b = second["id"].as_str().expect("k1").to_owned();
    let (status, _) = app
        .public_get(&format!(
            "{callback}?tag=login&k1={k1b}&sig={}&key={public}",
            sign(&k1b, &key)
        ))
        .await;
    assert_eq!(status, 200);
    let (_, again) = app.get(&format!("/v1/lnurl/auth/{k1b}")).await;
    assert_eq!(again["customer"], customer.as_str(), "{again}");

    // An expired challenge is refused.
    let (status, short) = app.post("/v1/lnurl/auth", json!({"expires_in": 1})).await;
    assert_eq!(status, 201, "{short}");
    let k1c = short["id"].as_str().expect("k1").to_owned();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, expired) = app
        .public_get(&format!(
            "{callback}?tag=login&k1={k1c}&sig={}&key={public}",
            sign(&k1c, &key)
        ))
        .await;
    assert_eq!(status, 410, "{expired}");
    // The same wallet as a merchant login (the dashboard): no customer is made, the challenge
    // is single use, and only a linking key the merchant named gets a session.
    let (_, customers_before) = app.get("/v1/customers?limit=100").await;
    let (status, login) = app
        .send(
            app.client
                .post(format!("{}/dashboard/login/lnurl", app.base)),
        )
        .await;
    assert_eq!(status, 201, "{login}");
    let k1d = login["id"].as_str().expect("k1").to_owned();
    let status_url = format!("{}/dashboard/login/lnurl/{k1d}", app.base);
    let signed = format!(
        "{callback}?tag=login&k1={k1d}&sig={}&key={public}",
        sign(&k1d, &key)
    );
    let (status, _) = app.public_get(&signed).await;
    assert_eq!(status, 200);
    let (status, reused) = app.public_get(&signed).await;
    assert_eq!(status, 409, "{reused}");
    let (status, refused) = app.public_get(&status_url).await;
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&public)),
        "{refused}"
    );
    // Naming the key is not enough: its wallet proves it by signing an owner challenge of
    // this merchant, which adds it.
    let (status, unproven) = app
        .put(
            "/v1/dashboard/owners",
            json!({"telegram_user_ids": [], "lnurl_linking_keys": [public.to_uppercase().replace("0X", "")]}),
        )
        .await;
    assert_eq!(status, 400, "{unproven}");
    assert_eq!(unproven["error"]["code"], "linking_key_unproven");
    let (status, link) = app.post("/v1/dashboard/owners/lnurl", json!({})).await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(link["status"], "pending");
    let k1o = link["id"].as_str().expect("k1").to_owned();
    let (status, wrong) = app
        .public_get(&format!(
            "{callback}?tag=login&k1={k1o}&sig={}&key={public}",
            sign(&k1o, &other)
        ))
        .await;
    assert_eq!(
        status, 400,
        "a signature by another key proves nothing: {wrong}"
    );
    let (status, _) = app
        .public_get(&format!(
            "{callback}?tag=login&k1={k1o}&sig={}&key={public}",
            sign(&k1o, &key)
        ))
        .await;
    assert_eq!(status, 200);
    let (status, linked) = app.get(&format!("/v1/dashboard/owners/lnurl/{k1o}")).await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(
        (linked["status"].clone(), linked["linking_key"].clone()),
        (json!("linked"), json!(public))
    );
    let (status, owners) = app
        .put(
            "/v1/dashboard/owners",
            json!({"telegram_user_ids": [], "lnurl_linking_keys": [public.to_uppercase().replace("0X", "")]}),
        )
        .await;
    assert_eq!(status, 200, "{owners}");
    assert_eq!(owners["lnurl_linking_keys"], json!([public]));
    let (status, session) = app.public_get(&status_url).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["status"], "verified");
    assert_eq!(session["merchant"]["id"], app.merchant.id.as_str());
    let (status, me) = app
        .send(
            app.client
                .get(format!("{}/dashboard/me", app.base))
                .bearer_auth(session["session"].as_str().expect("session")),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["linking_key"], public.as_str());
    let (_, customers_after) = app.get("/v1/customers?limit=100").await;
    assert_eq!(
        customers_before["data"], customers_after["data"],
        "no customer for a login"
    );
    // Removing the key ends the session at its next use.
    let (status, _) = app
        .put(
            "/v1/dashboard/owners",
            json!({"telegram_user_ids": [], "lnurl_linking_keys": []}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .send(
            app.client
                .get(format!("{}/dashboard/me", app.base))
                .bearer_auth(session["session"].as_str().expect("session")),
        )
        .await;
    assert_eq!(status, 401);

    // A k1 nobody made is not found.
    let unknown = "ab".repeat(32);
    let (status, _) = app
        .public_get(&format!(
            "{callback}?tag=login&k1={unknown}&sig={}&key={public}",
            sign(&unknown, &key)
        ))
        .await;
    assert_eq!(status, 404);
    app.audit_and_stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lightning_refund_is_an_lnurl_withdraw_link_the_payer_claims() {
    let lnbits = start_lnbits().await;
    let mut app = spawn().await;
    app.connect(&lnbits, None).await;
    // A web checkout payment: no customer known.
    let invoice = app
        .invoice(json!({"currency": "BTC", "amount": 1_000}))
        .await;
    let id = invoice["id"].as_str().expect("id").to_owned();
    let (status, _) = lnbits.pay(&bolt11_of(&invoice)).await;
    assert!(status < 300);
    app.wait_invoice(&id, "paid").await;
    assert_eq!(app.merchant_btc().await, 1_000);

    // To the balance is impossible without a customer; as a withdraw link it works.
    let (status, refused) = app
        .post("/v1/refunds", json!({"invoice": id, "amount": 400}))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "no_customer");
    let (status, refund) = app
        .post(
            "/v1/refunds",
            json!({"invoice": id, "amount": 400, "destination": "lnurl_withdraw"}),
        )
        .await;
    assert_eq!(status, 201, "{refund}");
    let link = &refund["lnurl_withdraw"];
    assert_eq!(link["amount_max"], 400, "{refund}");
    assert_eq!(link["status"], "open", "{refund}");
    assert_eq!(app.merchant_btc().await, 600);
    let before = lnbits.balance_msat(&lnbits.customer).await;

    let lnurl = link["lnurl"].as_str().expect("lnurl");
    let (_, (status, claimed)) = lnbits.claim_withdraw(lnurl, 400).await;
    assert_eq!(status, 201, "{claimed}");
    app.hook("payout.succeeded").await;
    assert_eq!(
        lnbits.balance_msat(&lnbits.customer).await,
        before + 400_000
    );
    let (_, refunded) = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(refunded["status"], "partially_refunded", "{refunded}");
    assert_eq!(refunded["amount_refunded"], 400, "{refunded}");
    app.audit_and_stop().await;
}
