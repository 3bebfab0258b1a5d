//! The Mini App API (SPEC T4): `POST /webapp/session` checks `initData` (bot-token hash, or
//! Telegram's Ed25519 third-party signature with a key pair made here) and answers a session;
//! `POST /webapp/pay/{invoice}` pays from the session customer's balance in one call.

use crate::support::init_data;
use crate::support::server;
use farthing_app::Clock;

use std::time::Duration;

use farthing_server::config::Config;
use farthing_server::state::Mode;
use serde_json::{json, Value};
use telegram_double::TelegramDouble;

use init_data::{fields, now_s, signed, third_party, user};

struct App {
    running: farthing_server::Running,
    base: String,
    key: String,
    bot_id: u64,
    token: String,
    _double: TelegramDouble,
    /// The server's clock: a test moves it to expire sessions.
    clock: Clock,
    _dir: tempfile::TempDir,
}

async fn spawn_app(tune: impl FnOnce(&mut Config)) -> App {
    let server = server::spawn_with_clock(tune, Clock::manual()).await;
    let merchant = server.merchant("Mini Shop").await;
    let double = TelegramDouble::spawn().await.expect("double");
    let (running, dir) = (server.running, server.dir);
    let mut app = App {
        base: server.base,
        clock: server.clock,
        running,
        key: merchant.test_key,
        bot_id: 0,
        token: double.token().to_owned(),
        _double: double,
        _dir: dir,
    };
    let api_url = app._double.base_url().to_owned();
    let (status, connected) = app
        .call(
            "PUT",
            "/v1/rails/stars",
            Some(json!({"bot_token": app.token, "api_url": api_url, "mode": "webhook"})),
        )
        .await;
    assert_eq!(status, 200, "{connected}");
    app.bot_id = connected["bot_id"].as_u64().expect("bot id");
    app
}

impl App {
    async fn send(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new().request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if !bearer.is_empty() {
            request = request.bearer_auth(bearer);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A Merchant API call with the test key.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, &self.key, body).await
    }

    async fn session(&self, bot_id: u64, init_data: &str, invoice: Option<&str>) -> (u16, Value) {
        let mut body = json!({"bot_id": bot_id, "init_data": init_data});
        if let Some(invoice) = invoice {
            body["invoice"] = json!(invoice);
        }
        self.send("POST", "/webapp/session", "", Some(body)).await
    }

    fn init_data(&self, user_id: u64, language: &str) -> String {
        signed(
            &fields(&user(user_id, "Ada", language), now_s()),
            &self.token,
        )
    }

    async fn invoice(&self, body: Value) -> String {
        let (status, invoice) = self.call("POST", "/v1/invoices", Some(body)).await;
        assert_eq!(status, 201, "{invoice}");
        invoice["id"].as_str().expect("id").to_owned()
    }

    async fn top_up(&self, customer: &str, amount: u64) {
        let (status, body) = self
            .call(
                "POST",
                &format!("/v1/test/customers/{customer}/top_up"),
                Some(json!({"amount": amount, "currency": "XTR"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn pay(&self, invoice: &str, session: &str, body: Option<Value>) -> (u16, Value) {
        self.send("POST", &format!("/webapp/pay/{invoice}"), session, body)
            .await
    }
}

fn refused(answer: &(u16, Value), code: &str, says: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 401, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

#[tokio::test]
async fn valid_init_data_makes_a_session_and_the_customer_once() {
    let app = spawn_app(|_| {}).await;
    let (status, first) = app
        .session(app.bot_id, &app.init_data(777, "fr"), None)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["object"], "webapp_session");
    assert!(first["session"]
        .as_str()
        .is_some_and(|s| s.starts_with("wss_")));
    assert_eq!(first["livemode"], false);
    assert_eq!(
        first["user"],
        json!({"id": 777, "first_name": "Ada", "username": "user777", "language_code": "fr"})
    );
    let expires_at = first["expires_at"].as_u64().expect("expires_at");
    assert!((now_s() + 3500..=now_s() + 3600).contains(&expires_at));
    assert_eq!(first["balances"], json!([]));
    let customer = first["customer"].as_str().expect("customer").to_owned();
    let (_, found) = app
        .call("GET", &format!("/v1/customers/{customer}"), None)
        .await;
    assert_eq!(found["external_id"], "tg:777");
    // The session carries no secret: the bot token appears nowhere.
    assert!(!first.to_string().contains(&app.token));

    // Second contact: the same customer, now with the balance it was given.
    app.top_up(&customer, 40).await;
    let (status, second) = app
        .session(app.bot_id, &app.init_data(777, "fr"), None)
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["customer"], customer.as_str());
    assert_eq!(second["balances"][0]["currency"], "XTR");
    assert_eq!(second["balances"][0]["available"], 40);
    // Tied to an invoice of this merchant.
    let invoice = app.invoice(json!({"amount": 5, "currency": "XTR"})).await;
    let (status, body) = app
        .session(app.bot_id, &app.init_data(777, "fr"), Some(&invoice))
        .await;
    assert_eq!((status, body["customer"].clone()), (200, json!(customer)));
    app.running.shutdown().await;
}

#[tokio::test]
async fn bad_init_data_is_refused_saying_why() {
    let app = spawn_app(|config| config.telegram.init_data_max_age_s = 600).await;
    let alice = user(777, "Ada", "en");

    // Tampered: another user id after signing.
    let good = app.init_data(777, "en");
    let tampered = good.replace("%3A777", "%3A778");
    assert_ne!(good, tampered);
    refused(
        &app.session(app.bot_id, &tampered, None).await,
        "invalid_init_data",
        "hash does not match",
    );

    // Signed by another bot's token (same id claimed).
    let other = signed(
        &fields(&alice, now_s()),
        "999:AAother-token-of-another-bot-xxxxxxxxxx",
    );
    refused(
        &app.session(app.bot_id, &other, None).await,
        "invalid_init_data",
        "another bot",
    );
    // A bot farthing does not know.
    refused(
        &app.session(424242, &good, None).await,
        "invalid_init_data",
        "no bot 424242",
    );

    // Stale, by the configured window (600 s), and from the future.
    let stale = signed(&fields(&alice, now_s() - 700), &app.token);
    refused(
        &app.session(app.bot_id, &stale, None).await,
        "invalid_init_data",
        "more than the 600 s",
    );
    let future = signed(&fields(&alice, now_s() + 3600), &app.token);
    refused(
        &app.session(app.bot_id, &future, None).await,
        "invalid_init_data",
        "ahead",
    );

    // Missing fields: no user, no auth_date, no hash.
    let no_user = signed(&[("auth_date", now_s().to_string())], &app.token);
    refused(
        &app.session(app.bot_id, &no_user, None).await,
        "invalid_init_data",
        "`user`",
    );
    let no_date = signed(&[("user", alice.clone())], &app.token);
    refused(
        &app.session(app.bot_id, &no_date, None).await,
        "invalid_init_data",
        "`auth_date`",
    );
    let no_hash = good.split("&hash=").next().expect("fields").to_owned();
    refused(
        &app.session(app.bot_id, &no_hash, None).await,
        "invalid_init_data",
        "no `hash`",
    );
    refused(
        &app.session(app.bot_id, "", None).await,
        "invalid_init_data",
        "empty",
    );

    // The body itself must be right.
    let (status, body) = app
        .send(
            "POST",
            "/webapp/session",
            "",
            Some(json!({"init_data": good})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_body"))
    );
    let (status, body) = app.session(app.bot_id, &good, Some("inv_nope")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_invoice"))
    );

    // An invoice of another merchant: its bot is not this one.
    let (live, test) = (
        app.running.state().store(Mode::Live).clone(),
        app.running.state().store(Mode::Test).clone(),
    );
    let stranger = tokio::task::spawn_blocking(move || {
        farthing_server::create_merchant(&live, &test, "Other Shop")
    })
    .await
    .expect("join")
    .expect("merchant");
    let (status, invoice) = app
        .send(
            "POST",
            "/v1/invoices",
            &stranger.test_key,
            Some(json!({"amount": 5, "currency": "XTR"})),
        )
        .await;
    assert_eq!(status, 201);
    let foreign = invoice["id"].as_str().expect("id");
    refused(
        &app.session(app.bot_id, &good, Some(foreign)).await,
        "invalid_init_data",
        "not the bot of this invoice's merchant",
    );
    app.running.shutdown().await;
}

#[tokio::test]
async fn third_party_ed25519_signatures_verify_with_the_configured_key() {
    let telegram = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public: String = telegram
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let app = spawn_app(|config| config.telegram.init_data_public_key = public).await;
    let pairs = fields(&user(31337, "Grace", "de"), now_s());

    // Only the signature (a third party's copy without the hash).
    let signed_only = third_party(&pairs, app.bot_id, &telegram);
    let (status, body) = app.session(app.bot_id, &signed_only, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], 31337);
    // With a hash that does not verify (made with another token), the signature still does.
    let with_bad_hash = format!(
        "{signed_only}&hash={}",
        init_data::hash(&pairs, "1:not-the-token")
    );
    assert_eq!(app.session(app.bot_id, &with_bad_hash, None).await.0, 200);

    // Signed by another key, or for another bot id.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    refused(
        &app.session(
            app.bot_id,
            &third_party(&pairs, app.bot_id, &stranger),
            None,
        )
        .await,
        "invalid_init_data",
        "signature does not verify",
    );
    refused(
        &app.session(
            app.bot_id,
            &third_party(&pairs, app.bot_id + 1, &telegram),
            None,
        )
        .await,
        "invalid_init_data",
        "signature does not verify",
    );
    // Stale even though genuine.
    let old = fields(&user(31337, "Grace", "de"), now_s() - 4000);
    refused(
        &app.session(app.bot_id, &third_party(&old, app.bot_id, &telegram), None)
            .await,
        "invalid_init_data",
        "old",
    );
    app.running.shutdown().await;
}

#[tokio::test]
async fn a_session_pays_balance_invoices_in_one_call_until_it_expires() {
    let app = spawn_app(|config| config.telegram.webapp_session_ttl_s = 3).await;
    let (_, started) = app
        .session(app.bot_id, &app.init_data(555, "ru"), None)
        .await;
    let session = started["session"].as_str().expect("session").to_owned();
    let customer = started["customer"].as_str().expect("customer").to_owned();
    app.top_up(&customer, 100).await;

    // One call pays; repeating it answers the same (the invoice id is the transfer id).
    let invoice = app
        .invoice(json!({"amount": 30, "currency": "XTR", "description": "A sticker"}))
        .await;
    let (status, paid) = app.pay(&invoice, &session, None).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["paid_rail"], "balance");
    assert_eq!(paid["amount_paid"], 30);
    assert_eq!(app.pay(&invoice, &session, None).await, (200, paid.clone()));
    let (_, seen) = app
        .call("GET", &format!("/v1/customers/{customer}"), None)
        .await;
    assert_eq!(seen["balances"][0]["available"], 70, "{seen}");

    // The same session pays another (amountless) invoice: reuse.
    let open = app
        .invoice(json!({"currency": "XTR", "amount_min": 5, "amount_max": 50, "amount_presets": [5, 10]}))
        .await;
    let (status, body) = app.pay(&open, &session, None).await;
    assert_eq!(
        (status, body["error"]["param"].clone()),
        (400, json!("amount")),
        "{body}"
    );
    let (status, body) = app.pay(&open, &session, Some(json!({"amount": 10}))).await;
    assert_eq!(
        (status, body["amount_paid"].clone()),
        (200, json!(10)),
        "{body}"
    );

    // More than the balance (60 left): 402, nothing booked.
    let dear = app.invoice(json!({"amount": 61, "currency": "XTR"})).await;
    let (status, body) = app.pay(&dear, &session, None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (402, json!("insufficient_funds")),
        "{body}"
    );
    let (_, still_open) = app.call("GET", &format!("/v1/invoices/{dear}"), None).await;
    assert_eq!(still_open["status"], "open");

    // Not open: 409. Unknown invoice: 404.
    let canceled = app.invoice(json!({"amount": 1, "currency": "XTR"})).await;
    app.call("POST", &format!("/v1/invoices/{canceled}/cancel"), None)
        .await;
    let (status, body) = app.pay(&canceled, &session, None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("invoice_not_open")),
        "{body}"
    );
    assert_eq!(app.pay("inv_nope", &session, None).await.0, 404);

    // No session, a forged one, then the real one after it expired.
    let (status, body) = app.pay(&dear, "", None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("invalid_session"))
    );
    let forged = format!("{}x", &session[..session.len() - 1]);
    assert_eq!(
        app.pay(&dear, &forged, None).await.1["error"]["code"],
        "invalid_session"
    );
    app.clock.advance(Duration::from_secs(4));
    let cheap = app.invoice(json!({"amount": 1, "currency": "XTR"})).await;
    let (status, body) = app.pay(&cheap, &session, None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("session_expired")),
        "{body}"
    );
    app.running.shutdown().await;
}

#[tokio::test]
async fn sessions_end_when_the_server_restarts() {
    let first = spawn_app(|_| {}).await;
    let (_, started) = first
        .session(first.bot_id, &first.init_data(1, "en"), None)
        .await;
    let session = started["session"].as_str().expect("session").to_owned();
    // Another process has another key.
    let second = spawn_app(|_| {}).await;
    let invoice = second
        .invoice(json!({"amount": 1, "currency": "XTR"}))
        .await;
    let (status, body) = second.pay(&invoice, &session, None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("invalid_session"))
    );
    first.running.shutdown().await;
    second.running.shutdown().await;
}

/// The Mini App's one-tap payment meets the merchant's risk rules (SPEC S1), with the buyer's
/// own address: a blocked network is refused (402 `risk_refused`, nothing paid), and so is a
/// blocked Telegram user.
#[tokio::test]
async fn a_mini_app_payment_meets_the_risk_rules_with_the_buyers_address() {
    let app = spawn_app(|_| {}).await;
    let (_, started) = app
        .session(app.bot_id, &app.init_data(556, "en"), None)
        .await;
    let session = started["session"].as_str().expect("session").to_owned();
    let customer = started["customer"].as_str().expect("customer").to_owned();
    app.top_up(&customer, 100).await;
    let invoice = app
        .invoice(json!({"amount": 30, "currency": "XTR", "description": "A sticker"}))
        .await;

    let (status, stored) = app
        .call(
            "PUT",
            "/v1/risk/rules",
            Some(json!({"block": {"ips": ["127.0.0.0/8"]}})),
        )
        .await;
    assert_eq!(status, 200, "{stored}");
    let risk_refused = |(status, body): (u16, Value), rule: &str| {
        assert_eq!(status, 402, "{body}");
        assert_eq!(body["error"]["code"], "risk_refused", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(rule)),
            "{body}"
        );
    };
    risk_refused(app.pay(&invoice, &session, None).await, "blocked_ip");

    app.call(
        "PUT",
        "/v1/risk/rules",
        Some(json!({"block": {"telegram_users": [556]}})),
    )
    .await;
    risk_refused(
        app.pay(&invoice, &session, None).await,
        "blocked_telegram_user",
    );
    let (_, seen) = app
        .call("GET", &format!("/v1/invoices/{invoice}"), None)
        .await;
    assert_eq!(seen["status"], "open");

    app.call("PUT", "/v1/risk/rules", Some(json!({}))).await;
    let (status, paid) = app.pay(&invoice, &session, None).await;
    assert_eq!(
        (status, paid["status"].clone()),
        (200, json!("paid")),
        "{paid}"
    );
    let (_, decisions) = app.call("GET", "/v1/risk/decisions", None).await;
    let rules: Vec<&str> = decisions["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            assert_eq!(d["operation"], "mini_app");
            d["rule"].as_str().expect("rule")
        })
        .collect();
    // The last payment ran without rules: not recorded.
    assert_eq!(rules, ["blocked_telegram_user", "blocked_ip"]);
    app.running.shutdown().await;
}
