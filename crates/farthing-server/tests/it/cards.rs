//! The card rail over HTTP (SPEC RL2: cards and other fiat through Telegram's payment
//! providers; issue 5 item 2), against `telegram-double`, which checks every call farthing
//! makes against the Bot API 10.1 spec (a fiat invoice needs a provider token).
//!
//! Covered: `PUT /v1/rails/card` needs a connected bot, stores the provider token without ever
//! showing it, refuses non-fiat currencies; `GET /v1/rails` lists the card rail; a USD invoice
//! accepting `card` gets `payment_instructions.card.invoice_link` from `createInvoiceLink`
//! with the provider token, the currency and one price in cents, and is sent into a chat with
//! `sendInvoice` the same way; the rail's currencies bound
//! which invoices may take it; pre-checkout answers (accepted, refused for a wrong amount,
//! currency or rail); `successful_payment` in USD settles once with rail `card`, keeping
//! `provider_payment_charge_id`. Every test ends with no spec violation in the double and a
//! clean ledger audit.

use crate::support::server;
use farthing_core::ledger::{Account, AccountKind};
use farthing_core::{Currency, MerchantId, PublicId, Rail};
use farthing_server::state::Mode;
use farthing_server::{NewMerchant, Running};
use reqwest::Client;
use serde_json::{json, Value};
use telegram_double::{fixtures, TelegramDouble};

const SECRET: &str = "webhook-secret_123";
const PAYER: i64 = 777_001;
const PROVIDER_TOKEN: &str = "284685063:TEST:Y2FyZHNfc2VjcmV0";

struct App {
    base: String,
    client: Client,
    merchant: NewMerchant,
    running: Running,
    double: TelegramDouble,
    _dir: tempfile::TempDir,
}

async fn spawn() -> App {
    let server = server::spawn(|_| {}).await;
    let merchant = server.merchant("Shop").await;
    let double = TelegramDouble::spawn().await.expect("the double starts");
    App {
        base: server.base,
        client: server.client,
        merchant,
        running: server.running,
        double,
        _dir: server.dir,
    }
}

impl App {
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, String, Value) {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, text, body)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.merchant.test_key);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let (status, text, body) = self.send(request).await;
        assert!(
            !text.contains("Y2FyZHNfc2VjcmV0"),
            "the provider token leaked: {text}"
        );
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn connect_bot(&self) {
        let (status, body) = self
            .put(
                "/v1/rails/stars",
                json!({"bot_token": self.double.token(), "api_url": self.double.base_url(), "mode": "webhook", "webhook_secret": SECRET}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    fn bot_id(&self) -> u64 {
        let token = self.double.token();
        token
            .split_once(':')
            .and_then(|(id, _)| id.parse().ok())
            .expect("bot id")
    }

    async fn webhook(&self, update: Value) {
        let id = self.double.inject_update(update);
        let update = self
            .double
            .pending_updates()
            .into_iter()
            .find(|u| u["update_id"] == id)
            .expect("the injected update");
        let (status, text, _) = self
            .send(
                self.client
                    .post(format!("{}/telegram/{}/webhook", self.base, self.bot_id()))
                    .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
                    .header("content-type", "application/json")
                    .body(update.to_string()),
            )
            .await;
        assert_eq!(status, 200, "{text}");
    }

    async fn invoice(&self, body: Value) -> Value {
        let (status, body) = self.post("/v1/invoices", body).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn pre_checkout(
        &self,
        query: &str,
        currency: &str,
        amount: i64,
        payload: &str,
    ) -> (bool, Option<String>) {
        let from = fixtures::user(PAYER, "Ann", "en");
        self.webhook(fixtures::pre_checkout_query_update(
            query, &from, currency, amount, payload,
        ))
        .await;
        let call = self
            .double
            .calls_to("answerPreCheckoutQuery")
            .into_iter()
            .find(|c| c.param_str("pre_checkout_query_id") == Some(query))
            .expect("answerPreCheckoutQuery was called");
        (
            call.param("ok").and_then(Value::as_bool).expect("ok"),
            call.param_str("error_message").map(str::to_owned),
        )
    }

    async fn pay(&self, message_id: i64, amount: i64, payload: &str, charge: &str) {
        let from = fixtures::user(PAYER, "Ann", "en");
        let mut update = fixtures::successful_payment_update(
            message_id,
            1_760_000_000,
            &from,
            "USD",
            amount,
            payload,
            charge,
        );
        update["message"]["successful_payment"]["provider_payment_charge_id"] =
            json!(format!("pi_{charge}"));
        self.webhook(update).await;
    }

    fn merchant_usd(&self) -> i128 {
        let merchant = MerchantId::parse(&self.merchant.id).expect("merchant id");
        let account = Account::new(AccountKind::MerchantBalance { merchant }, Currency::USD);
        self.running
            .state()
            .store(Mode::Test)
            .account(account.id)
            .expect("read")
            .map_or(0, |state| state.balances.posted())
    }

    async fn stop(self) {
        self.double.assert_no_violations();
        for mode in [Mode::Live, Mode::Test] {
            let report = self
                .running
                .state()
                .store(mode)
                .audit()
                .expect("audit runs");
            assert!(report.is_ok(), "{mode:?} ledger audit failed: {report}");
        }
        self.running.shutdown().await;
    }
}

#[tokio::test]
async fn connecting_the_card_rail_needs_a_bot_and_never_shows_the_token() {
    let app = spawn().await;
    // No bot yet: nothing to sell through.
    let (status, body) = app
        .put("/v1/rails/card", json!({"provider_token": PROVIDER_TOKEN}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "rail_not_configured");
    let (status, body) = app
        .post(
            "/v1/invoices",
            json!({"amount": 500, "currency": "USD", "rails": ["card"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "rail_not_configured");

    app.connect_bot().await;
    for (bad, code) in [
        (json!({"provider_token": ""}), "invalid_provider_token"),
        (json!({"provider_token": "a b"}), "invalid_provider_token"),
        (
            json!({"provider_token": PROVIDER_TOKEN, "currencies": ["XTR"]}),
            "invalid_currency",
        ),
        (
            json!({"provider_token": PROVIDER_TOKEN, "currencies": ["NOPE"]}),
            "invalid_currency",
        ),
        (
            json!({"provider_token": PROVIDER_TOKEN, "currencies": []}),
            "invalid_currency",
        ),
        (
            json!({"provider_token": PROVIDER_TOKEN, "extra": 1}),
            "invalid_body",
        ),
    ] {
        let (status, body) = app.put("/v1/rails/card", bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let (status, rail) = app
        .put(
            "/v1/rails/card",
            json!({"provider_token": PROVIDER_TOKEN, "currencies": ["USD", "usd"]}),
        )
        .await;
    assert_eq!(status, 200, "{rail}");
    assert_eq!(rail["object"], "rail");
    assert_eq!(rail["rail"], "card");
    assert_eq!(rail["configured"], true);
    assert_eq!(rail["health"], "healthy");
    assert_eq!(rail["currencies"], json!(["USD"]));
    assert_eq!(rail["bot_id"], app.bot_id());

    let (status, rails) = app.get("/v1/rails").await;
    assert_eq!(status, 200, "{rails}");
    let card = rails["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|r| r["rail"] == "card")
        .cloned()
        .expect("the card rail is listed");
    assert_eq!(card["currencies"], json!(["USD"]));
    assert_eq!(card["livemode"], false);

    // Only in the key's mode.
    let (status, live) = app
        .send(
            app.client
                .get(format!("{}/v1/rails", app.base))
                .bearer_auth(&app.merchant.live_key),
        )
        .await
        .into_pair();
    assert_eq!(status, 200);
    assert!(!live.to_string().contains("\"card\""), "{live}");
    app.stop().await;
}

trait IntoPair {
    fn into_pair(self) -> (u16, Value);
}

impl IntoPair for (u16, String, Value) {
    fn into_pair(self) -> (u16, Value) {
        (self.0, self.2)
    }
}

#[tokio::test]
async fn a_usd_invoice_is_paid_by_card_through_the_bot() {
    let app = spawn().await;
    app.connect_bot().await;
    let (status, body) = app
        .put(
            "/v1/rails/card",
            json!({"provider_token": PROVIDER_TOKEN, "currencies": ["USD"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A USD invoice taking cards gets a provider invoice link.
    let invoice = app
        .invoice(
            json!({"amount": 500, "currency": "USD", "rails": ["card"], "description": "Pro plan"}),
        )
        .await;
    let id = invoice["id"].as_str().expect("id").to_owned();
    let link = invoice["payment_instructions"]["card"]["invoice_link"]
        .as_str()
        .expect("a card invoice link")
        .to_owned();
    assert!(invoice["payment_instructions"].get("stars").is_none());
    let calls = app.double.calls_to("createInvoiceLink");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.param_str("provider_token"), Some(PROVIDER_TOKEN));
    assert_eq!(call.param_str("currency"), Some("USD"));
    assert_eq!(call.param_str("payload"), Some(id.as_str()));
    assert_eq!(call.param_str("title"), Some("Pro plan"));
    let prices = call.param("prices").expect("prices");
    assert_eq!(prices.as_array().map(Vec::len), Some(1), "{prices}");
    assert_eq!(prices[0]["amount"], 500, "cents: {prices}");
    assert!(call.param("subscription_period").is_none());
    // Stored: the invoice shows it later.
    let (_, fetched) = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(
        fetched["payment_instructions"]["card"]["invoice_link"],
        link
    );

    // It can be sent into a chat too: sendInvoice with the provider token.
    let (status, sent) = app
        .post(
            &format!("/v1/invoices/{id}/send"),
            json!({ "chat_id": PAYER }),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let calls = app.double.calls_to("sendInvoice");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param_str("provider_token"), Some(PROVIDER_TOKEN));
    assert_eq!(calls[0].param_str("currency"), Some("USD"));
    assert_eq!(
        calls[0].param("prices"),
        Some(&json!([{"label": "Pro plan", "amount": 500}]))
    );

    // Default rails: USD takes card; XTR and EUR (not listed) do not, and refuse it.
    let usd = app.invoice(json!({"amount": 300, "currency": "USD"})).await;
    assert!(usd["rails"]
        .as_array()
        .is_some_and(|r| r.contains(&json!("card"))));
    for currency in ["XTR", "EUR"] {
        let other = app
            .invoice(json!({"amount": 300, "currency": currency}))
            .await;
        assert!(
            !other["rails"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("card"))),
            "{other}"
        );
        let (status, body) = app
            .post(
                "/v1/invoices",
                json!({"amount": 300, "currency": currency, "rails": ["card"]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "rail_currency_mismatch");
    }
    // An amountless USD invoice takes cards but has no link (Telegram needs a price).
    let open = app
        .invoice(json!({"currency": "USD", "rails": ["card"], "amount_presets": [100, 200]}))
        .await;
    assert!(open["payment_instructions"].get("card").is_none(), "{open}");

    // Pre-checkout: the same rules as Stars, on the card rail.
    assert_eq!(app.pre_checkout("q1", "USD", 500, &id).await, (true, None));
    let (ok, message) = app.pre_checkout("q2", "USD", 499, &id).await;
    assert!(!ok);
    assert!(message.is_some_and(|m| m.contains("amount")));
    let (ok, message) = app.pre_checkout("q3", "EUR", 500, &id).await;
    assert!(!ok);
    assert!(message.is_some_and(|m| m.contains("currency")));
    let balance_only = app
        .invoice(json!({"amount": 500, "currency": "USD", "rails": ["balance"]}))
        .await;
    let balance_only = balance_only["id"].as_str().expect("id").to_owned();
    let (ok, message) = app.pre_checkout("q4", "USD", 500, &balance_only).await;
    assert!(!ok);
    assert!(message.is_some_and(|m| m.contains("card")));

    // The payment settles once, on the card rail.
    app.pay(10, 500, &id, "tg_charge_1").await;
    app.pay(10, 500, &id, "tg_charge_1").await;
    let (_, paid) = app.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["paid_rail"], "card");
    assert_eq!(paid["amount_paid"], 500);
    assert_eq!(app.merchant_usd(), 500);
    let payment = app
        .running
        .state()
        .store(Mode::Test)
        .read(|reader| {
            reader.rail_payment(
                MerchantId::parse(&app.merchant.id).expect("merchant id"),
                Rail::Card,
                "tg_charge_1",
            )
        })
        .expect("read")
        .expect("the card payment is recorded");
    assert_eq!(payment.amount_minor, 500);
    let payload: Value =
        serde_json::from_str(payment.payload.as_deref().expect("a payload")).expect("json");
    assert_eq!(payload["provider_payment_charge_id"], "pi_tg_charge_1");
    assert_eq!(payload["telegram_payment_charge_id"], "tg_charge_1");
    let stars = app
        .running
        .state()
        .store(Mode::Test)
        .read(|reader| {
            reader.rail_payment(
                MerchantId::parse(&app.merchant.id).expect("merchant id"),
                Rail::Stars,
                "tg_charge_1",
            )
        })
        .expect("read");
    assert!(stars.is_none(), "a card payment is not a Stars payment");
    let (_, events) = app.get("/v1/events?limit=100").await;
    let paid_events = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["type"] == "invoice.paid")
        .count();
    assert_eq!(paid_events, 1);
    // Paid: a new pre-checkout is refused.
    let (ok, _) = app.pre_checkout("q5", "USD", 500, &id).await;
    assert!(!ok);
    app.stop().await;
}

/// The rails a merchant can take are kept in memory between invoices: a rail connected or
/// reconfigured counts for the very next invoice.
#[tokio::test]
async fn an_invoice_right_after_a_rail_changes_takes_the_change() {
    let app = spawn().await;
    let rails = |invoice: &Value| -> Vec<String> {
        invoice["rails"]
            .as_array()
            .expect("rails")
            .iter()
            .filter_map(|rail| rail.as_str().map(str::to_owned))
            .collect()
    };
    let before = app.invoice(json!({"amount": 5, "currency": "XTR"})).await;
    assert!(!rails(&before).contains(&"stars".to_owned()), "{before}");
    let (status, body) = app
        .post(
            "/v1/invoices",
            json!({"amount": 500, "currency": "USD", "rails": ["card"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "rail_not_configured");

    app.connect_bot().await;
    let after = app.invoice(json!({"amount": 5, "currency": "XTR"})).await;
    assert!(rails(&after).contains(&"stars".to_owned()), "{after}");
    let (status, body) = app
        .put(
            "/v1/rails/card",
            json!({"provider_token": PROVIDER_TOKEN, "currencies": ["USD"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let card = app
        .invoice(json!({"amount": 500, "currency": "USD", "rails": ["card"]}))
        .await;
    assert_eq!(rails(&card), ["card"]);

    // Reconfigured to take euros only: the next dollar invoice cannot take it.
    let (status, body) = app
        .put(
            "/v1/rails/card",
            json!({"provider_token": PROVIDER_TOKEN, "currencies": ["EUR"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            "/v1/invoices",
            json!({"amount": 500, "currency": "USD", "rails": ["card"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "rail_currency_mismatch", "{body}");
    app.stop().await;
}
