//! The Stars rail over HTTP (SPEC RL2; issue 5 items 1–2), against `telegram-double`, a local
//! Bot API server that checks every call farthing makes against the Bot API 10.1 spec.
//!
//! Covered: connecting a bot with `PUT /v1/rails/stars` (`getMe` called, the token never in an
//! answer or in `GET /v1/rails`), a refused token writes nothing, the webhook's secret-token
//! check, pre-checkout answers (accepted for an open invoice; refused with an `error_message`
//! when expired, paid, or the amount is wrong), `successful_payment` settling an invoice, the
//! same update twice settling once, and a second payment of a paid invoice credited to the
//! payer; Stars invoice links (`createInvoiceLink` made after creation, stored and returned in
//! `payment_instructions`; no call without stars; a Telegram failure still creates the
//! invoice); refunds through `refundStarPayment` (booked to the rail, or nothing booked when
//! Telegram refuses). Long polling: a bot connected in `polling` mode gets `deleteWebhook`,
//! its updates arrive through `getUpdates` and are handled like webhooks, and the stored offset
//! keeps a restarted farthing from handling them again. `setWebhook` in webhook mode (url,
//! secret, allowed updates; a refusal stores nothing); `POST /v1/invoices/{id}/send`
//! (`sendInvoice`, idempotent, and its refusals); first contact makes exactly one customer.
//! Every test ends with no spec violation in the double and a clean ledger audit.

use crate::support::telegram_app;

use std::time::{Duration, Instant};

use farthing_core::ledger::{Account, AccountKind};
use farthing_core::{Currency, MerchantId, PublicId};
use farthing_server::start;
use farthing_server::state::Mode;
use serde_json::{json, Value};
use telegram_app::{config, spawn, App, JsonBody, Reply, SECRET};
use telegram_double::{fixtures, Failure};

const PAYER: i64 = 777_001;

impl App {
    async fn connect(&self, token: &str) -> Reply {
        self.send(
            self.client
                .put(format!("{}/v1/rails/stars", self.base))
                .bearer_auth(self.key())
                .json_body(&json!({
                    "bot_token": token,
                    "api_url": self.double.base_url(),
                    "mode": "webhook",
                    "webhook_secret": SECRET,
                })),
        )
        .await
    }

    /// Posts `update` (a fixture, checked by the double and given an `update_id`) to the
    /// webhook with `secret`.
    async fn webhook(&self, update: Value, secret: Option<&str>) -> Reply {
        let id = self.double.inject_update(update);
        let update = self
            .double
            .pending_updates()
            .into_iter()
            .find(|u| u["update_id"] == id)
            .expect("the injected update");
        let mut request = self
            .client
            .post(format!("{}/telegram/{}/webhook", self.base, self.bot_id()))
            .json_body(&update);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        self.send(request).await
    }

    async fn pre_checkout(&self, id: &str, amount: i64, payload: &str) -> (bool, Option<String>) {
        let from = fixtures::user(PAYER, "Ann", "en");
        self.webhook(
            fixtures::pre_checkout_query_update(id, &from, "XTR", amount, payload),
            Some(SECRET),
        )
        .await
        .expect(200);
        let call = self
            .double
            .calls_to("answerPreCheckoutQuery")
            .into_iter()
            .find(|c| c.param_str("pre_checkout_query_id") == Some(id))
            .expect("answerPreCheckoutQuery was called");
        (
            call.param("ok").and_then(Value::as_bool).expect("ok"),
            call.param_str("error_message").map(str::to_owned),
        )
    }

    async fn pay(&self, message_id: i64, amount: i64, payload: &str, charge: &str) -> Reply {
        let from = fixtures::user(PAYER, "Ann", "en");
        self.webhook(
            fixtures::successful_payment_update(
                message_id,
                1_760_000_000,
                &from,
                "XTR",
                amount,
                payload,
                charge,
            ),
            Some(SECRET),
        )
        .await
    }

    fn merchant_id(&self) -> MerchantId {
        MerchantId::parse(&self.merchant.id).expect("merchant id")
    }

    fn balance(&self, kind: AccountKind) -> i128 {
        let account = Account::new(kind, Currency::XTR);
        self.running
            .state()
            .store(Mode::Test)
            .account(account.id)
            .expect("read")
            .map_or(0, |state| state.balances.posted())
    }

    fn merchant_balance(&self) -> i128 {
        self.balance(AccountKind::MerchantBalance {
            merchant: self.merchant_id(),
        })
    }

    async fn events(&self, kind: &str) -> Vec<Value> {
        let reply = self.get("/v1/events?limit=100").await;
        reply.expect(200);
        reply.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    }

    /// The payer's customer, by `tg:<id>`.
    async fn payer(&self) -> Option<Value> {
        let reply = self.get("/v1/customers?limit=100").await;
        reply.expect(200);
        let found = reply.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|c| c["external_id"] == format!("tg:{PAYER}"))
            .cloned()?;
        let id = found["id"].as_str()?.to_owned();
        Some(self.get(&format!("/v1/customers/{id}")).await.body)
    }

    /// Stops farthing and starts it again on the same databases (the double stays).
    async fn restart(self) -> App {
        let App {
            client,
            merchant,
            running,
            double,
            dir,
            ..
        } = self;
        running.shutdown().await;
        let running = start(config(&dir)).await.expect("server restarts");
        App {
            base: format!("http://{}", running.addr()),
            client,
            merchant,
            running,
            double,
            dir,
        }
    }

    async fn connect_with(&self, body: Value) -> Reply {
        self.send(
            self.client
                .put(format!("{}/v1/rails/stars", self.base))
                .bearer_auth(self.key())
                .json_body(&body),
        )
        .await
    }

    /// The merchant's customers whose external id is `tg:<user>`.
    async fn telegram_customers(&self, user: i64) -> Vec<Value> {
        let reply = self.get("/v1/customers?limit=100").await;
        reply.expect(200);
        reply.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|c| c["external_id"] == format!("tg:{user}"))
            .cloned()
            .collect()
    }

    /// Waits until the merchant has a customer `tg:<user>`.
    async fn wait_for_customer(&self, user: i64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.telegram_customers(user).await.is_empty() {
            assert!(Instant::now() < deadline, "no customer tg:{user} was made");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn secret_part(token: &str) -> &str {
    token.split_once(':').map_or(token, |(_, s)| s)
}

#[tokio::test]
async fn connecting_a_bot_verifies_it_and_never_shows_the_token() {
    let app = spawn().await;
    let token = app.double.token().to_owned();

    // Before: no stars rail, and invoices refuse it.
    let rails = app.get("/v1/rails").await;
    rails.expect(200);
    assert!(!rails.text.contains("stars"), "{}", rails.text);
    let refused = app
        .post(
            "/v1/invoices",
            json!({"amount": 10, "currency": "XTR", "rails": ["stars"]}),
        )
        .await;
    refused.expect(400);
    assert_eq!(refused.body["error"]["code"], "rail_not_configured");

    let reply = app.connect(&token).await;
    reply.expect(200);
    assert_eq!(reply.body["object"], "rail");
    assert_eq!(reply.body["rail"], "stars");
    assert_eq!(reply.body["bot_id"], app.bot_id());
    assert_eq!(reply.body["username"], "farthing_test_bot");
    assert_eq!(reply.body["mode"], "webhook");
    assert_eq!(reply.body["health"], "healthy");
    assert!(!reply.text.contains(secret_part(&token)), "{}", reply.text);
    assert!(
        !reply.text.contains(SECRET),
        "the given secret is not echoed"
    );
    let get_me = app.double.calls_to("getMe");
    assert_eq!(get_me.len(), 1);
    assert!(get_me[0].token_ok);

    let rails = app.get("/v1/rails").await;
    rails.expect(200);
    assert!(!rails.text.contains(secret_part(&token)), "{}", rails.text);
    let stars = rails.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|r| r["rail"] == "stars")
        .cloned()
        .expect("the stars rail is listed");
    assert_eq!(stars["configured"], true);
    assert_eq!(stars["username"], "farthing_test_bot");
    assert_eq!(stars["health"], "healthy");

    // Invoices now take the stars rail; by default too.
    let id = app
        .invoice(json!({"amount": 10, "currency": "XTR", "rails": ["stars"]}))
        .await;
    let invoice = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(invoice.body["rails"], json!(["stars"]));
    let default = app
        .post("/v1/invoices", json!({"amount": 10, "currency": "XTR"}))
        .await;
    default.expect(201);
    assert!(default.body["rails"]
        .as_array()
        .expect("rails")
        .contains(&json!("stars")));

    // The live mode has no bot.
    let live = app
        .send(
            app.client
                .get(format!("{}/v1/rails", app.base))
                .bearer_auth(&app.merchant.live_key),
        )
        .await;
    assert!(!live.text.contains("stars"), "{}", live.text);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_token_is_refused_and_nothing_is_stored() {
    let app = spawn().await;
    // Not a token at all: refused before any call.
    let reply = app.connect("not-a-token").await;
    reply.expect(400);
    assert_eq!(reply.body["error"]["code"], "invalid_bot_token");
    assert!(app.double.calls_to("getMe").is_empty());

    // Well-formed, but Telegram refuses it (401).
    let wrong = "123456789:AAwrong-token-wrong-token-wrong-tok";
    let reply = app.connect(wrong).await;
    reply.expect(400);
    assert_eq!(reply.body["error"]["code"], "invalid_bot_token");
    assert!(!reply.text.contains(secret_part(wrong)), "{}", reply.text);
    assert_eq!(app.double.calls_to("getMe").len(), 1);

    // Telegram failing or unreachable: 502 in the error shape.
    app.double.fail_next("getMe", Failure::InternalServerError);
    let reply = app.connect(app.double.token()).await;
    assert_eq!(reply.status.as_u16(), 502, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "telegram_unavailable");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let reply = app
        .send(
            app.client
                .put(format!("{}/v1/rails/stars", app.base))
                .bearer_auth(app.key())
                .json_body(&json!({
                    "bot_token": app.double.token(),
                    "api_url": closed_url,
                    "mode": "polling",
                })),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 502, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "telegram_unavailable");
    assert!(!reply.text.contains(secret_part(app.double.token())));

    let rails = app.get("/v1/rails").await;
    assert!(!rails.text.contains("stars"), "{}", rails.text);
    let refused = app
        .post(
            "/v1/invoices",
            json!({"amount": 10, "currency": "XTR", "rails": ["stars"]}),
        )
        .await;
    assert_eq!(refused.body["error"]["code"], "rail_not_configured");
    app.stop().await;
}

#[tokio::test]
async fn the_webhook_needs_the_secret_token() {
    let app = spawn().await;
    app.connected().await;
    let id = app
        .invoice(json!({"amount": 10, "currency": "XTR", "rails": ["stars"]}))
        .await;
    let from = fixtures::user(PAYER, "Ann", "en");
    for secret in [None, Some("wrong"), Some("")] {
        let update = fixtures::successful_payment_update(
            1,
            1_760_000_000,
            &from,
            "XTR",
            10,
            &id,
            "charge-secret",
        );
        let reply = app.webhook(update, secret).await;
        reply.expect(401);
        assert_eq!(reply.body["error"]["code"], "invalid_webhook_secret");
        let query = fixtures::pre_checkout_query_update("q-secret", &from, "XTR", 10, &id);
        app.webhook(query, secret).await.expect(401);
    }
    // An unknown bot is refused the same way.
    let reply = app
        .send(
            app.client
                .post(format!("{}/telegram/1/webhook", app.base))
                .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
                .json_body(&json!({"update_id": 1})),
        )
        .await;
    reply.expect(401);
    // Nothing was done.
    assert!(app.double.calls_to("answerPreCheckoutQuery").is_empty());
    let invoice = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(invoice.body["status"], "open");
    assert_eq!(app.merchant_balance(), 0);
    assert!(app.payer().await.is_none());
    app.stop().await;
}

#[tokio::test]
async fn pre_checkout_accepts_only_an_open_matching_invoice() {
    let app = spawn().await;
    app.connected().await;
    let started = Instant::now();
    let short = app
        .invoice(json!({"amount": 10, "currency": "XTR", "rails": ["stars"], "expires_in": 5}))
        .await;
    let open = app
        .invoice(json!({"amount": 10, "currency": "XTR", "rails": ["stars"]}))
        .await;

    assert_eq!(app.pre_checkout("q1", 10, &open).await, (true, None));

    let (ok, message) = app.pre_checkout("q2", 11, &open).await;
    assert!(!ok);
    assert!(message.expect("error_message").contains("amount"));

    let (ok, message) = app.pre_checkout("q3", 10, "inv_nonexistent").await;
    assert!(!ok);
    assert!(message.is_some());

    // Paid: settle it, then ask again.
    app.pay(5, 10, &open, "charge-pre-1").await.expect(200);
    let (ok, message) = app.pre_checkout("q4", 10, &open).await;
    assert!(!ok);
    assert!(message.expect("error_message").contains("paid"));

    // Expired.
    let wait = Duration::from_millis(5_300).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let (ok, message) = app.pre_checkout("q5", 10, &short).await;
    assert!(!ok);
    assert!(message.expect("error_message").contains("expired"));
    app.stop().await;
}

#[tokio::test]
async fn successful_payment_settles_once_and_a_second_payment_is_credited() {
    let app = spawn().await;
    app.connected().await;
    let id = app
        .invoice(json!({"amount": 25, "currency": "XTR", "rails": ["stars"]}))
        .await;

    app.pay(10, 25, &id, "charge-1").await.expect(200);
    let invoice = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(invoice.body["status"], "paid", "{}", invoice.text);
    assert_eq!(app.merchant_balance(), 25);
    assert_eq!(app.events("invoice.paid").await.len(), 1);
    // The settlement lag from the message's date is measured, once per payment.
    let lags = || {
        crate::support::server::metric(
            &app.client,
            &app.base,
            "farthing_settlement_lag_seconds_count{rail=\"stars\"}",
        )
    };
    assert_eq!(lags().await.as_deref(), Some("1"));

    // Telegram resends the same update: settled once.
    app.pay(10, 25, &id, "charge-1").await.expect(200);
    assert_eq!(
        lags().await.as_deref(),
        Some("1"),
        "a resend is not a settlement"
    );
    assert_eq!(app.merchant_balance(), 25);
    assert_eq!(app.events("invoice.paid").await.len(), 1);
    assert!(app.events("invoice.payment_credited").await.is_empty());

    // The old invoice is paid again (another charge id): credited to the payer, not lost.
    app.pay(11, 25, &id, "charge-2").await.expect(200);
    assert_eq!(app.merchant_balance(), 25);
    assert_eq!(app.events("invoice.payment_credited").await.len(), 1);
    let payer = app.payer().await.expect("the payer became a customer");
    let balance = payer["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["currency"] == "XTR")
        .cloned()
        .expect("an XTR balance");
    assert_eq!(balance["available"], 25, "{payer}");
    // And that one too is settled once.
    app.pay(11, 25, &id, "charge-2").await.expect(200);
    assert_eq!(app.events("invoice.payment_credited").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_stars_invoice_gets_an_invoice_link_stored_and_returned() {
    let app = spawn().await;

    // Before a bot is connected: no stars, no Telegram call, empty instructions.
    let plain = app
        .post("/v1/invoices", json!({"amount": 10, "currency": "XTR"}))
        .await;
    plain.expect(201);
    assert_eq!(plain.body["payment_instructions"], json!({}));

    app.connected().await;
    let description = "A very long product name that Telegram would refuse as a title";
    let reply = app
        .post(
            "/v1/invoices",
            json!({"amount": 25, "currency": "XTR", "description": description}),
        )
        .await;
    reply.expect(201);
    let id = reply.body["id"].as_str().expect("id").to_owned();
    let calls = app.double.calls_to("createInvoiceLink");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call.token_ok);
    assert_eq!(call.param_str("currency"), Some("XTR"));
    assert_eq!(call.param_str("payload"), Some(id.as_str()));
    let title: String = description.chars().take(32).collect();
    assert_eq!(call.param_str("title"), Some(title.as_str()));
    assert_eq!(call.param_str("description"), Some(description));
    assert!(call.param("provider_token").is_none());
    let prices = call
        .param("prices")
        .and_then(Value::as_array)
        .expect("prices");
    assert_eq!(prices.len(), 1);
    assert_eq!(prices[0]["amount"], 25);
    let link = call
        .result()
        .and_then(Value::as_str)
        .expect("the double made a link")
        .to_owned();
    assert!(link.starts_with("https://t.me/"), "{link}");
    assert_eq!(
        reply.body["payment_instructions"],
        json!({"stars": {"invoice_link": link}})
    );
    // Stored: a later read returns it too.
    let read = app.get(&format!("/v1/invoices/{id}")).await;
    read.expect(200);
    assert_eq!(
        read.body["payment_instructions"]["stars"]["invoice_link"],
        link
    );

    // No description: the title is "Payment" and the description the invoice id.
    let bare = app.invoice(json!({"amount": 3, "currency": "XTR"})).await;
    let calls = app.double.calls_to("createInvoiceLink");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].param_str("title"), Some("Payment"));
    assert_eq!(calls[1].param_str("description"), Some(bare.as_str()));

    // No Telegram call for an invoice that does not accept stars, is not in XTR, or is
    // amountless.
    let no_stars = app
        .post(
            "/v1/invoices",
            json!({"amount": 10, "currency": "XTR", "rails": ["balance"]}),
        )
        .await;
    no_stars.expect(201);
    assert_eq!(no_stars.body["payment_instructions"], json!({}));
    app.invoice(json!({"amount": 10, "currency": "USD"})).await;
    app.invoice(json!({"currency": "XTR", "amount_presets": [1, 5]}))
        .await;
    assert_eq!(app.double.calls_to("createInvoiceLink").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_telegram_failure_still_creates_the_invoice_without_a_link() {
    let app = spawn().await;
    app.connected().await;
    app.double
        .fail_next("createInvoiceLink", Failure::InternalServerError);
    let reply = app
        .post(
            "/v1/invoices",
            json!({"amount": 25, "currency": "XTR", "description": "Coffee"}),
        )
        .await;
    reply.expect(201);
    assert_eq!(reply.body["status"], "open");
    assert_eq!(reply.body["payment_instructions"], json!({}));
    let id = reply.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.double.calls_to("createInvoiceLink").len(), 1);
    let read = app.get(&format!("/v1/invoices/{id}")).await;
    read.expect(200);
    assert_eq!(read.body["payment_instructions"], json!({}));
    assert_eq!(app.events("invoice.created").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_rail_refund_calls_refund_star_payment_and_books_the_refund() {
    let app = spawn().await;
    app.connected().await;
    let id = app
        .invoice(json!({"amount": 25, "currency": "XTR", "rails": ["stars"]}))
        .await;
    app.pay(20, 25, &id, "charge-refund-1").await.expect(200);
    assert_eq!(app.merchant_balance(), 25);

    // Telegram refunds whole payments only; charges cannot go to a rail.
    let partial = app
        .post(
            "/v1/refunds",
            json!({"invoice": id, "amount": 10, "destination": "rail"}),
        )
        .await;
    partial.expect(400);
    assert_eq!(partial.body["error"]["param"], "amount");
    let unknown = app
        .post("/v1/refunds", json!({"invoice": id, "destination": "card"}))
        .await;
    unknown.expect(400);
    assert_eq!(unknown.body["error"]["code"], "invalid_destination");
    assert!(app.double.calls_to("refundStarPayment").is_empty());

    let reply = app
        .post(
            "/v1/refunds",
            json!({"invoice": id, "destination": "rail", "reason": "changed my mind"}),
        )
        .await;
    reply.expect(201);
    assert_eq!(reply.body["destination"], "rail");
    assert_eq!(reply.body["amount"], 25);
    assert_eq!(reply.body["invoice"], id.as_str());
    let calls = app.double.calls_to("refundStarPayment");
    assert_eq!(calls.len(), 1);
    assert!(calls[0].token_ok);
    assert_eq!(calls[0].param_i64("user_id"), Some(PAYER));
    assert_eq!(
        calls[0].param_str("telegram_payment_charge_id"),
        Some("charge-refund-1")
    );
    assert_eq!(app.merchant_balance(), 0);
    let invoice = app.get(&format!("/v1/invoices/{id}")).await;
    invoice.expect(200);
    assert_eq!(invoice.body["status"], "refunded");
    assert_eq!(invoice.body["amount_refunded"], 25);
    assert_eq!(app.events("refund.succeeded").await.len(), 1);
    assert_eq!(app.events("invoice.refunded").await.len(), 1);
    let refund_id = reply.body["id"].as_str().expect("id").to_owned();
    let stored = app.get(&format!("/v1/refunds/{refund_id}")).await;
    stored.expect(200);
    assert_eq!(stored.body["destination"], "rail");
    // The payer's balance is untouched: the Stars went back through Telegram.
    let payer = app.payer().await.expect("the payer is a customer");
    assert!(
        payer["balances"]
            .as_array()
            .is_none_or(|b| b.iter().all(|b| b["balance"] == 0)),
        "{payer}"
    );

    // Refunded already: nothing more goes to Telegram.
    let again = app
        .post("/v1/refunds", json!({"invoice": id, "destination": "rail"}))
        .await;
    again.expect(409);
    assert_eq!(app.double.calls_to("refundStarPayment").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_rail_refund_books_nothing() {
    let app = spawn().await;
    app.connected().await;
    let id = app
        .invoice(json!({"amount": 25, "currency": "XTR", "rails": ["stars"]}))
        .await;
    app.pay(21, 25, &id, "charge-refund-2").await.expect(200);
    app.double.fail_next(
        "refundStarPayment",
        Failure::BadRequest("CHARGE_NOT_FOUND".to_owned()),
    );
    let reply = app
        .post("/v1/refunds", json!({"invoice": id, "destination": "rail"}))
        .await;
    reply.expect(502);
    assert_eq!(reply.body["error"]["code"], "telegram_refund_failed");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("CHARGE_NOT_FOUND")),
        "{}",
        reply.text
    );
    assert_eq!(app.double.calls_to("refundStarPayment").len(), 1);
    assert_eq!(app.merchant_balance(), 25);
    let invoice = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(invoice.body["status"], "paid");
    assert!(app.events("refund.succeeded").await.is_empty());
    let refunds = app.get("/v1/refunds").await;
    refunds.expect(200);
    assert_eq!(refunds.body["data"], json!([]));
    app.stop().await;
}

/// Telegram refunded the charge but farthing's booking never committed (a crash right after
/// the call): a retry gets CHARGE_ALREADY_REFUNDED from Telegram and books the refund once,
/// instead of leaving the ledger behind Telegram forever.
#[tokio::test]
async fn a_refund_telegram_already_made_is_booked_on_retry() {
    let app = spawn().await;
    app.connected().await;
    let id = app
        .invoice(json!({"amount": 25, "currency": "XTR", "rails": ["stars"]}))
        .await;
    app.pay(22, 25, &id, "charge-refund-3").await.expect(200);
    app.double.fail_next(
        "refundStarPayment",
        Failure::BadRequest("CHARGE_ALREADY_REFUNDED".to_owned()),
    );
    let reply = app
        .post("/v1/refunds", json!({"invoice": id, "destination": "rail"}))
        .await;
    reply.expect(201);
    assert_eq!(reply.body["destination"], "rail");
    assert_eq!(app.merchant_balance(), 0);
    let invoice = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(invoice.body["status"], "refunded");
    assert_eq!(app.events("refund.succeeded").await.len(), 1);
    // Booked once: a further attempt is refused by the invoice's state, not sent again.
    let again = app
        .post("/v1/refunds", json!({"invoice": id, "destination": "rail"}))
        .await;
    again.expect(409);
    assert_eq!(app.double.calls_to("refundStarPayment").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn polling_mode_handles_updates_from_get_updates_once_even_after_a_restart() {
    let app = spawn().await;
    let reply = app
        .connect_with(json!({
            "bot_token": app.double.token(),
            "api_url": app.double.base_url(),
            "mode": "polling",
        }))
        .await;
    reply.expect(200);
    assert_eq!(reply.body["mode"], "polling");
    assert!(reply.body.get("webhook_secret").is_none(), "{}", reply.text);
    assert_eq!(app.double.calls_to("deleteWebhook").len(), 1);
    assert!(app.double.calls_to("setWebhook").is_empty());
    let id = app
        .invoice(json!({"amount": 15, "currency": "XTR", "rails": ["stars"]}))
        .await;

    // The payer confirms: farthing takes the query from getUpdates and answers it.
    let from = fixtures::user(PAYER, "Ann", "en");
    let query = fixtures::pre_checkout_query_update("poll-q1", &from, "XTR", 15, &id);
    let query_id = app.double.inject_update(query.clone());
    let answer = app
        .double
        .wait_for_call("answerPreCheckoutQuery", Duration::from_secs(15))
        .await
        .expect("the pre-checkout query is answered");
    assert_eq!(answer.param_str("pre_checkout_query_id"), Some("poll-q1"));
    assert_eq!(answer.param("ok"), Some(&json!(true)));
    let polls = app.double.calls_to("getUpdates");
    assert!(polls.iter().all(|c| c.token_ok));
    assert_eq!(polls[0].param("timeout"), Some(&json!(1)));
    assert_eq!(
        polls[0].param("allowed_updates"),
        Some(&json!(["message", "pre_checkout_query", "callback_query"]))
    );

    // Telegram reports the payment: settled through the ledger.
    let payment =
        fixtures::successful_payment_update(40, 1_760_000_000, &from, "XTR", 15, &id, "poll-c1");
    let payment_id = app.double.inject_update(payment.clone());
    app.wait_for_status(&id, "paid").await;
    assert_eq!(app.merchant_balance(), 15);
    assert_eq!(app.telegram_customers(PAYER).await.len(), 1);

    // The offset moves past both updates: Telegram forgets them.
    app.double
        .wait_until(
            "getUpdates past the payment",
            Duration::from_secs(15),
            |calls| {
                calls
                    .iter()
                    .any(|c| {
                        c.method == "getUpdates" && c.param_i64("offset") == Some(payment_id + 1)
                    })
                    .then_some(())
            },
        )
        .await
        .expect("the offset advances");
    assert!(app.double.pending_updates().is_empty());
    assert_eq!(app.double.calls_to("answerPreCheckoutQuery").len(), 1);

    // Restart farthing. As if Telegram had missed the confirmation, both updates are queued
    // again with their ids: the stored offset confirms them before anything is handled.
    let polled_before = app.double.calls_to("getUpdates").len();
    let app = app.restart().await;
    let mut again = query;
    again["update_id"] = json!(query_id);
    app.double.inject_update(again);
    let mut again = payment;
    again["update_id"] = json!(payment_id);
    app.double.inject_update(again);
    // A new message after them shows when the restarted poller has got that far.
    let newcomer = fixtures::user(PAYER + 1, "Bea", "de");
    app.double.inject_update(fixtures::text_message_update(
        41,
        1_760_000_100,
        &newcomer,
        "hi",
    ));
    app.wait_for_customer(PAYER + 1).await;
    let first = app.double.calls_to("getUpdates")[polled_before].clone();
    assert_eq!(
        first.param_i64("offset"),
        Some(payment_id + 1),
        "the restarted poller starts at the stored offset"
    );
    assert_eq!(app.double.calls_to("answerPreCheckoutQuery").len(), 1);
    assert_eq!(app.merchant_balance(), 15);
    assert_eq!(app.events("invoice.paid").await.len(), 1);
    assert!(app.events("invoice.payment_credited").await.is_empty());
    assert_eq!(app.telegram_customers(PAYER).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn polling_retries_after_telegram_fails_and_deletes_a_webhook_set_meanwhile() {
    let app = spawn().await;
    app.double
        .fail_next("getUpdates", Failure::InternalServerError);
    app.double
        .fail_next("getUpdates", Failure::TooManyRequests { retry_after_s: 1 });
    app.connect_with(json!({
        "bot_token": app.double.token(),
        "api_url": app.double.base_url(),
        "mode": "polling",
    }))
    .await
    .expect(200);
    // Someone sets a webhook behind farthing's back: getUpdates answers 409, farthing
    // deletes the webhook (the bot is still in polling mode) and goes on.
    app.double
        .wait_for_calls("getUpdates", 2, Duration::from_secs(15))
        .await
        .expect("getUpdates is retried");
    let client = reqwest::Client::new();
    let set = client
        .post(format!(
            "{}/bot{}/setWebhook",
            app.double.base_url(),
            app.double.token()
        ))
        .json_body(&json!({"url": "https://example.com/hook"}))
        .send()
        .await
        .expect("setWebhook");
    assert!(set.status().is_success());
    app.double
        .wait_for_calls("deleteWebhook", 2, Duration::from_secs(20))
        .await
        .expect("the poller deletes the webhook");
    let from = fixtures::user(PAYER, "Ann", "en");
    app.double.inject_update(fixtures::text_message_update(
        1,
        1_760_000_000,
        &from,
        "/start",
    ));
    app.wait_for_customer(PAYER).await;
    app.stop().await;
}

#[tokio::test]
async fn webhook_mode_sets_the_webhook_with_the_secret() {
    let app = spawn().await;
    let bot_id = app.bot_id();
    // farthing's public URL here is plain http on 127.0.0.1, which Telegram cannot reach: no
    // setWebhook unless asked.
    app.connected().await;
    assert!(app.double.calls_to("setWebhook").is_empty());
    assert!(app.double.calls_to("deleteWebhook").is_empty());

    // `set_webhook: true` in polling mode makes no sense.
    let reply = app
        .connect_with(json!({
            "bot_token": app.double.token(),
            "api_url": app.double.base_url(),
            "mode": "polling",
            "set_webhook": true,
        }))
        .await;
    reply.expect(400);
    assert_eq!(reply.body["error"]["code"], "invalid_set_webhook");

    // Telegram refuses the webhook: 502, and the earlier connection stands unchanged.
    app.double.fail_next(
        "setWebhook",
        Failure::BadRequest("bad webhook: Failed to resolve host".to_owned()),
    );
    let body = json!({
        "bot_token": app.double.token(),
        "api_url": app.double.base_url(),
        "mode": "webhook",
        "webhook_secret": "another-secret",
        "set_webhook": true,
    });
    let reply = app.connect_with(body.clone()).await;
    assert_eq!(reply.status.as_u16(), 502, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "telegram_error");
    assert!(!reply.text.contains(secret_part(app.double.token())));
    assert!(app.double.webhook().is_none());
    let id = app
        .invoice(json!({"amount": 10, "currency": "XTR", "rails": ["stars"]}))
        .await;
    assert_eq!(app.pre_checkout("wq1", 10, &id).await, (true, None));

    let reply = app.connect_with(body).await;
    reply.expect(200);
    let calls = app.double.calls_to("setWebhook");
    assert_eq!(calls.len(), 2);
    let call = &calls[1];
    assert!(call.token_ok);
    let url = format!("{}/telegram/{bot_id}/webhook", app.base);
    assert_eq!(call.param_str("url"), Some(url.as_str()));
    assert_eq!(call.param_str("secret_token"), Some("another-secret"));
    assert_eq!(
        call.param("allowed_updates"),
        Some(&json!(["message", "pre_checkout_query", "callback_query"]))
    );
    let webhook = app.double.webhook().expect("a webhook is set");
    assert_eq!(webhook.url, url);
    // The new secret is the one the webhook now takes.
    let from = fixtures::user(PAYER, "Ann", "en");
    let query = fixtures::pre_checkout_query_update("wq2", &from, "XTR", 10, &id);
    app.webhook(query.clone(), Some(SECRET)).await.expect(401);
    app.webhook(query, Some("another-secret")).await.expect(200);

    // Switching to polling deletes the webhook.
    app.connect_with(json!({
        "bot_token": app.double.token(),
        "api_url": app.double.base_url(),
        "mode": "polling",
    }))
    .await
    .expect(200);
    assert_eq!(app.double.calls_to("deleteWebhook").len(), 1);
    assert!(app.double.webhook().is_none());
    app.stop().await;
}

#[tokio::test]
async fn an_invoice_is_sent_into_a_chat_with_send_invoice() {
    let app = spawn().await;
    let plain = app
        .invoice(json!({"amount": 25, "currency": "XTR", "rails": ["balance"]}))
        .await;
    let send = |id: &str| format!("/v1/invoices/{id}/send");
    // No bot yet.
    let reply = app.post(&send(&plain), json!({"chat_id": PAYER})).await;
    reply.expect(400);
    assert_eq!(reply.body["error"]["code"], "rail_not_configured");

    app.connected().await;
    let id = app
        .invoice(json!({"amount": 25, "currency": "XTR", "description": "Coffee"}))
        .await;
    let request = || {
        app.client
            .post(format!("{}{}", app.base, send(&id)))
            .bearer_auth(app.key())
            .header("Idempotency-Key", "send-1")
            .json_body(&json!({"chat_id": PAYER}))
    };
    let reply = app.send(request()).await;
    reply.expect(200);
    assert_eq!(reply.body["invoice"]["id"], id.as_str());
    assert_eq!(reply.body["invoice"]["status"], "open");
    assert_eq!(reply.body["telegram_message"]["chat_id"], PAYER);
    let message_id = reply.body["telegram_message"]["message_id"]
        .as_i64()
        .expect("message_id");
    let calls = app.double.calls_to("sendInvoice");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call.token_ok);
    assert_eq!(call.param_i64("chat_id"), Some(PAYER));
    assert_eq!(call.param_str("payload"), Some(id.as_str()));
    assert_eq!(call.param_str("currency"), Some("XTR"));
    assert_eq!(call.param_str("title"), Some("Coffee"));
    assert_eq!(call.param_str("description"), Some("Coffee"));
    assert!(call.param("provider_token").is_none());
    assert_eq!(
        call.param("prices"),
        Some(&json!([{"label": "Coffee", "amount": 25}]))
    );
    let posted = app.double.message(PAYER, message_id).expect("the message");
    assert_eq!(posted["invoice"]["total_amount"], 25);

    // The same request again is answered from the store, without a second message.
    let again = app.send(request()).await;
    again.expect(200);
    assert_eq!(again.body, reply.body);
    assert_eq!(app.double.calls_to("sendInvoice").len(), 1);

    // Refusals.
    let reply = app.post(&send(&id), json!({"chat_id": "me"})).await;
    reply.expect(400);
    assert_eq!(reply.body["error"]["code"], "invalid_chat_id");
    let reply = app.post(&send(&plain), json!({"chat_id": PAYER})).await;
    reply.expect(400);
    assert_eq!(reply.body["error"]["code"], "rail_not_accepted");
    let amountless = app
        .invoice(json!({"currency": "XTR", "amount_presets": [1, 5]}))
        .await;
    let reply = app
        .post(&send(&amountless), json!({"chat_id": PAYER}))
        .await;
    reply.expect(400);
    assert_eq!(reply.body["error"]["code"], "invoice_not_sendable");
    app.double.fail_next(
        "sendInvoice",
        Failure::Forbidden("bot was blocked by the user".to_owned()),
    );
    let reply = app.post(&send(&id), json!({"chat_id": PAYER})).await;
    assert_eq!(reply.status.as_u16(), 502, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "telegram_error");
    assert!(reply.text.contains("blocked"), "{}", reply.text);
    app.post(&format!("/v1/invoices/{id}/cancel"), json!({}))
        .await
        .expect(200);
    let reply = app.post(&send(&id), json!({"chat_id": PAYER})).await;
    reply.expect(409);
    assert_eq!(reply.body["error"]["code"], "invoice_not_open");
    let reply = app.post(&send("inv_nope"), json!({"chat_id": PAYER})).await;
    reply.expect(404);
    assert_eq!(app.double.calls_to("sendInvoice").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_new_telegram_user_becomes_exactly_one_customer() {
    let app = spawn().await;
    app.connected().await;
    const NEW: i64 = 555_123;
    let from = fixtures::user(NEW, "Cy", "fr");
    assert!(app.telegram_customers(NEW).await.is_empty());
    app.webhook(
        fixtures::text_message_update(1, 1_760_000_000, &from, "hello"),
        Some(SECRET),
    )
    .await
    .expect(200);
    let customers = app.telegram_customers(NEW).await;
    assert_eq!(customers.len(), 1, "{customers:?}");
    let created = app.events("customer.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]["data"]["object"]["external_id"],
        format!("tg:{NEW}")
    );

    // More contact from the same user: still one customer.
    app.webhook(
        fixtures::text_message_update(2, 1_760_000_001, &from, "/start"),
        Some(SECRET),
    )
    .await
    .expect(200);
    let message =
        json!({"message_id": 3, "date": 1_760_000_002, "chat": {"id": NEW, "type": "private"}});
    app.webhook(
        fixtures::callback_query_update("cb-1", &from, &message, "tip:3"),
        Some(SECRET),
    )
    .await
    .expect(200);
    let id = app
        .invoice(json!({"amount": 10, "currency": "XTR", "rails": ["stars"]}))
        .await;
    app.webhook(
        fixtures::pre_checkout_query_update("q-new", &from, "XTR", 10, &id),
        Some(SECRET),
    )
    .await
    .expect(200);
    app.webhook(
        fixtures::successful_payment_update(4, 1_760_000_003, &from, "XTR", 10, &id, "c-new"),
        Some(SECRET),
    )
    .await
    .expect(200);
    assert_eq!(app.telegram_customers(NEW).await.len(), 1);
    assert_eq!(app.events("customer.created").await.len(), 1);
    let invoice = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(invoice.body["status"], "paid");

    // A bot is not a customer.
    let mut robot = fixtures::user(NEW + 1, "Robo", "en");
    robot["is_bot"] = json!(true);
    app.webhook(
        fixtures::text_message_update(5, 1_760_000_004, &robot, "beep"),
        Some(SECRET),
    )
    .await
    .expect(200);
    assert!(app.telegram_customers(NEW + 1).await.is_empty());
    assert_eq!(app.events("customer.created").await.len(), 1);
    app.stop().await;
}

/// A `successful_payment` of a Stars subscription (the first one or a renewal).
async fn pay_subscription(
    app: &App,
    message_id: i64,
    amount: i64,
    payload: &str,
    charge: &str,
    first: bool,
    expires_at_s: i64,
) -> Reply {
    let from = fixtures::user(PAYER, "Ann", "en");
    let mut update = fixtures::successful_payment_update(
        message_id,
        1_760_000_000,
        &from,
        "XTR",
        amount,
        payload,
        charge,
    );
    let payment = &mut update["message"]["successful_payment"];
    payment["is_recurring"] = json!(true);
    payment["is_first_recurring"] = json!(first);
    payment["subscription_expiration_date"] = json!(expires_at_s);
    app.webhook(update, Some(SECRET)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_starts_renews_once_per_charge_and_is_canceled_and_resumed() {
    let app = spawn().await;
    app.connected().await;
    // Only Telegram's 30 days, on a fixed XTR invoice.
    let bad = app
        .post(
            "/v1/invoices",
            json!({"amount": 50, "currency": "XTR", "subscription_period": 86400}),
        )
        .await;
    bad.expect(400);
    assert_eq!(bad.body["error"]["code"], "invalid_subscription");
    let bad = app
        .post(
            "/v1/invoices",
            json!({"amount": 50, "currency": "USD", "subscription_period": 2592000}),
        )
        .await;
    bad.expect(400);

    let created = app
        .post(
            "/v1/invoices",
            json!({"amount": 50, "currency": "XTR", "description": "Premium", "subscription_period": 2592000}),
        )
        .await;
    created.expect(201);
    assert_eq!(created.body["subscription_period"], 2592000);
    let id = created.body["id"].as_str().expect("id").to_owned();
    // The invoice link is a subscription link.
    let link = app
        .double
        .calls_to("createInvoiceLink")
        .into_iter()
        .find(|c| c.param_str("payload") == Some(id.as_str()))
        .expect("createInvoiceLink was called");
    assert_eq!(
        link.param("subscription_period").and_then(Value::as_i64),
        Some(2_592_000)
    );

    // The first payment pays the invoice and starts the subscription.
    let (ok, _) = app.pre_checkout("q-sub-1", 50, &id).await;
    assert!(ok);
    let period_end = 1_900_000_000;
    pay_subscription(&app, 10, 50, &id, "charge-1", true, period_end)
        .await
        .expect(200);
    let paid = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(paid.body["status"], "paid", "{}", paid.text);
    let list = app.get("/v1/subscriptions").await;
    list.expect(200);
    let subscription = list.body["data"][0].clone();
    assert_eq!(subscription["status"], "active", "{subscription}");
    assert_eq!(subscription["invoice"], id.as_str());
    assert_eq!(subscription["current_period_end"], period_end);
    assert_eq!(subscription["renewals"], 0);
    let sub_id = subscription["id"].as_str().expect("id").to_owned();
    assert!(sub_id.starts_with("sub_"));
    assert_eq!(app.events("subscription.created").await.len(), 1);
    assert_eq!(app.merchant_balance(), 50);

    // A renewal: a new charge id, the same payload. It pays a renewal invoice of its own.
    let renewed_end = period_end + 2_592_000;
    for _ in 0..2 {
        // The second time is Telegram resending the same update: nothing changes.
        pay_subscription(&app, 11, 50, &id, "charge-2", false, renewed_end)
            .await
            .expect(200);
    }
    let renewed = app.get(&format!("/v1/subscriptions/{sub_id}")).await;
    renewed.expect(200);
    assert_eq!(renewed.body["renewals"], 1, "{}", renewed.text);
    assert_eq!(renewed.body["current_period_end"], renewed_end);
    let latest = renewed.body["latest_invoice"]
        .as_str()
        .expect("latest")
        .to_owned();
    assert_ne!(latest, id);
    let renewal = app.get(&format!("/v1/invoices/{latest}")).await;
    assert_eq!(renewal.body["status"], "paid", "{}", renewal.text);
    assert_eq!(renewal.body["metadata"]["renewal_of"], id.as_str());
    assert_eq!(renewal.body["paid_by"], subscription["customer"]);
    assert_eq!(app.merchant_balance(), 100, "each charge is booked once");
    assert_eq!(app.events("subscription.renewed").await.len(), 1);
    let payer = app.payer().await.expect("the subscriber is a customer");
    assert_eq!(payer["id"], subscription["customer"]);

    // Cancel: Telegram is told (the first charge id is the subscription's handle); the
    // subscription stays paid until its period ends. Resume turns renewals back on.
    let canceled = app
        .post(&format!("/v1/subscriptions/{sub_id}/cancel"), json!({}))
        .await;
    canceled.expect(200);
    assert_eq!(canceled.body["status"], "canceled", "{}", canceled.text);
    assert_eq!(canceled.body["cancel_at_period_end"], true);
    let edits = app.double.calls_to("editUserStarSubscription");
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].param_i64("user_id"), Some(PAYER));
    assert_eq!(
        edits[0].param_str("telegram_payment_charge_id"),
        Some("charge-1")
    );
    assert_eq!(
        edits[0].param("is_canceled").and_then(Value::as_bool),
        Some(true)
    );
    let resumed = app
        .post(&format!("/v1/subscriptions/{sub_id}/resume"), json!({}))
        .await;
    resumed.expect(200);
    assert_eq!(resumed.body["status"], "active", "{}", resumed.text);
    let edits = app.double.calls_to("editUserStarSubscription");
    assert_eq!(edits.len(), 2);
    assert_eq!(
        edits[1].param("is_canceled").and_then(Value::as_bool),
        Some(false)
    );
    assert_eq!(app.events("subscription.canceled").await.len(), 1);
    assert_eq!(app.events("subscription.resumed").await.len(), 1);

    // Telegram refusing the edit changes nothing.
    app.double.fail_next(
        "editUserStarSubscription",
        Failure::BadRequest("SUBSCRIPTION_NOT_FOUND".to_owned()),
    );
    let refused = app
        .post(&format!("/v1/subscriptions/{sub_id}/cancel"), json!({}))
        .await;
    refused.expect(502);
    let after = app.get(&format!("/v1/subscriptions/{sub_id}")).await;
    assert_eq!(after.body["status"], "active");
    let missing = app.get("/v1/subscriptions/sub_nope").await;
    missing.expect(404);
    app.stop().await;
}

/// Security issue item 1 (regression): a merchant forging a `successful_payment` of
/// 9 223 372 036 854 773 676 Stars on its own bot (it knows its own webhook secret) used to push
/// the shared Stars account to its cap, after which genuine payments were answered `ok` to
/// Telegram and never booked. Now the forged report is refused at the edge (no Stars payment can
/// be that large), and the next genuine payment settles.
#[tokio::test]
async fn a_forged_giant_payment_is_refused_and_a_genuine_one_still_settles() {
    let app = spawn().await;
    app.connected().await;
    let forged = app
        .invoice(json!({"amount": 5, "currency": "XTR", "rails": ["stars"]}))
        .await;
    // Telegram cannot have sent it: taken (200, so it is not "resent") but not booked.
    app.pay(20, 9_223_372_036_854_773_676, &forged, "forged-charge")
        .await
        .expect(200);
    assert_eq!(app.merchant_balance(), 0);
    assert!(app.events("invoice.payment_credited").await.is_empty());
    let invoice = app.get(&format!("/v1/invoices/{forged}")).await;
    assert_eq!(invoice.body["status"], "open");

    let id = app
        .invoice(json!({"amount": 5, "currency": "XTR", "rails": ["stars"]}))
        .await;
    app.pay(21, 5, &id, "genuine-charge").await.expect(200);
    let invoice = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(invoice.body["status"], "paid", "{}", invoice.text);
    assert_eq!(app.merchant_balance(), 5);
    // Invoices above the Stars limits are refused when stars is asked for, and leave stars out
    // when no rails are named.
    let refused = app
        .post(
            "/v1/invoices",
            json!({"amount": 100_001, "currency": "XTR", "rails": ["stars"]}),
        )
        .await;
    refused.expect(400);
    assert_eq!(refused.body["error"]["code"], "amount_exceeds_rail_limit");
    assert_eq!(refused.body["error"]["param"], "rails[0]");
    let created = app
        .post(
            "/v1/invoices",
            json!({"amount": 100_001, "currency": "XTR"}),
        )
        .await;
    created.expect(201);
    assert!(
        !created.body["rails"]
            .as_array()
            .expect("rails")
            .contains(&json!("stars")),
        "{}",
        created.text
    );
    let subscription = app
        .post(
            "/v1/invoices",
            json!({"amount": 10_001, "currency": "XTR", "rails": ["stars"], "subscription_period": 2_592_000}),
        )
        .await;
    subscription.expect(400);
    assert_eq!(subscription.body["error"]["param"], "amount");
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await;
    let metrics = metrics.expect("metrics").text().await.expect("text");
    assert!(
        metrics.contains("farthing_rail_payments_refused_total"),
        "{metrics}"
    );
    app.stop().await;
}

/// The merchant's risk rules answer Telegram's pre-checkout (SPEC S1): a blocked payer or an
/// amount over the limit is refused with a message for the buyer, an allowed one accepted, and
/// each decision is listed with the Telegram user.
#[tokio::test]
async fn pre_checkout_meets_the_merchants_risk_rules() {
    let app = spawn().await;
    app.connected().await;
    let invoice = app
        .invoice(json!({"amount": 10, "currency": "XTR", "rails": ["stars"]}))
        .await;
    let rules = |rules: Value| {
        app.send(
            app.client
                .put(format!("{}/v1/risk/rules", app.base))
                .bearer_auth(app.key())
                .json_body(&rules),
        )
    };
    // A first-time buyer (no customer yet: this is the payer's first update) is the newest customer there is.
    rules(json!({"limits": [{"currency": "XTR", "new_customer_per_payment_max": 9}], "new_customers": {"days": 7}}))
        .await
        .expect(200);
    assert!(!app.pre_checkout("risk-new", 10, &invoice).await.0);

    rules(json!({"block": {"telegram_users": [PAYER]}}))
        .await
        .expect(200);
    let (ok, message) = app.pre_checkout("risk-1", 10, &invoice).await;
    assert!(!ok);
    assert!(message
        .expect("error_message")
        .contains("cannot be accepted"));

    rules(json!({"limits": [{"currency": "XTR", "per_payment_max": 9}]}))
        .await
        .expect(200);
    let (ok, _) = app.pre_checkout("risk-2", 10, &invoice).await;
    assert!(!ok, "10 Stars is over the limit of 9");
    // Step-up cannot happen in Telegram's checkout: refused too.
    rules(json!({"limits": [{"currency": "XTR", "step_up_above": 9}]}))
        .await
        .expect(200);
    assert!(!app.pre_checkout("risk-3", 10, &invoice).await.0);

    rules(json!({"limits": [{"currency": "XTR", "per_payment_max": 10}]}))
        .await
        .expect(200);
    assert_eq!(app.pre_checkout("risk-4", 10, &invoice).await, (true, None));

    let listed = app
        .send(
            app.client
                .get(format!("{}/v1/risk/decisions", app.base))
                .bearer_auth(app.key()),
        )
        .await;
    listed.expect(200);
    let decisions: Vec<(String, String)> = listed.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            assert_eq!(d["operation"], "pre_checkout");
            assert_eq!(d["telegram_user_id"], PAYER);
            assert_eq!(d["subject"], invoice.as_str());
            (
                d["outcome"].as_str().expect("outcome").to_owned(),
                d["rule"].as_str().expect("rule").to_owned(),
            )
        })
        .collect();
    let expected = [
        ("allow", "none"),
        ("step_up", "step_up_above"),
        ("refuse", "per_payment_max"),
        ("refuse", "blocked_telegram_user"),
        ("refuse", "new_customer_per_payment_max"),
    ]
    .map(|(o, r)| (o.to_owned(), r.to_owned()));
    assert_eq!(decisions, expected);
    app.stop().await;
}
