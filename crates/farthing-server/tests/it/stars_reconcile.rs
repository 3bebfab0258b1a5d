//! The Stars reconciliation (SPEC RL2; issue 5 item 2) against `telegram-double`, which pages
//! `getStarTransactions` like Telegram and checks every call against the Bot API 10.1 spec.
//!
//! Covered: a payment only `getStarTransactions` knows of is settled (invoice paid,
//! `invoice.paid` written), by a direct call and by the background task; a payment both the
//! webhook and the reconciliation see is booked once, whichever comes first; paging over more
//! than 100 transactions in the documented (oldest first) order and newest first, with the
//! watermark limiting later runs; a Fragment withdrawal recorded once across runs, booked as a
//! payout when it succeeds (pending first: nothing booked, the watermark held), a shortfall
//! when the merchant's balance is smaller; a refund made outside farthing recorded, one made
//! by farthing not; missed subscription payments start and renew the subscription (through
//! `telegram::subscriptions`, like the webhook). Every test ends with no spec violation in the
//! double and a clean ledger audit.

use crate::support::server;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use farthing_core::ledger::{Account, AccountKind};
use farthing_core::{Currency, MerchantId, PublicId, Rail};
use farthing_server::rails::telegram::reconcile::{reconcile_bot, Reconciled};
use farthing_server::state::Mode;
use farthing_server::{NewMerchant, Running};
use farthing_store::{StarOutflow, TelegramBot};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use telegram_double::{fixtures, TelegramDouble};

/// `reqwest` is built without its `json` feature here.
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

const SECRET: &str = "webhook-secret_123";
const PAYER: i64 = 777_001;

struct App {
    base: String,
    client: Client,
    merchant: NewMerchant,
    running: Running,
    double: TelegramDouble,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    text: String,
    body: Value,
}

impl Reply {
    #[track_caller]
    fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        self
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn spawn_with(reconcile_interval_s: u64) -> App {
    let server = server::spawn(|config| {
        config.telegram.reconcile_interval_s = reconcile_interval_s;
    })
    .await;
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

/// The background reconciliation runs at start and then every 300 s: these tests call
/// `reconcile_bot` themselves.
async fn spawn() -> App {
    spawn_with(300).await
}

impl App {
    fn key(&self) -> &str {
        &self.merchant.test_key
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, text, body }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(self.key()),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(self.key())
                .json_body(&body),
        )
        .await
    }

    async fn connected(&self) {
        let reply = self
            .send(
                self.client
                    .put(format!("{}/v1/rails/stars", self.base))
                    .bearer_auth(self.key())
                    .json_body(&json!({
                        "bot_token": self.double.token(),
                        "api_url": self.double.base_url(),
                        "mode": "webhook",
                        "webhook_secret": SECRET,
                    })),
            )
            .await;
        reply.expect(200);
    }

    fn bot_id(&self) -> u64 {
        self.double
            .token()
            .split_once(':')
            .and_then(|(id, _)| id.parse().ok())
            .expect("bot id")
    }

    fn merchant_id(&self) -> MerchantId {
        MerchantId::parse(&self.merchant.id).expect("merchant id")
    }

    fn bot(&self) -> TelegramBot {
        let merchant = self.merchant_id();
        self.running
            .state()
            .store(Mode::Test)
            .read(move |reader| reader.telegram_bot(merchant))
            .expect("read")
            .expect("a connected bot")
    }

    async fn reconcile(&self) -> Reconciled {
        reconcile_bot(
            self.running.state().rails().telegram().expect("telegram"),
            self.running.state().app(),
            Mode::Test,
            &self.bot(),
        )
        .await
        .expect("reconciled")
    }

    fn outflows(&self) -> Vec<StarOutflow> {
        let bot_id = self.bot_id();
        self.running
            .state()
            .store(Mode::Test)
            .read(move |reader| reader.star_outflows(bot_id))
            .expect("read")
    }

    /// Posts `update` to the webhook (the double checks it and gives it an `update_id`).
    async fn webhook(&self, update: Value) -> Reply {
        let id = self.double.inject_update(update);
        let update = self
            .double
            .pending_updates()
            .into_iter()
            .find(|u| u["update_id"] == id)
            .expect("the injected update");
        self.send(
            self.client
                .post(format!("{}/telegram/{}/webhook", self.base, self.bot_id()))
                .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
                .json_body(&update),
        )
        .await
    }

    async fn pay_by_webhook(&self, message_id: i64, amount: i64, payload: &str, charge: &str) {
        let from = fixtures::user(PAYER, "Ann", "en");
        self.webhook(fixtures::successful_payment_update(
            message_id,
            now_s(),
            &from,
            "XTR",
            amount,
            payload,
            charge,
        ))
        .await
        .expect(200);
    }

    async fn invoice(&self, amount: u64) -> String {
        let reply = self
            .post(
                "/v1/invoices",
                json!({"amount": amount, "currency": "XTR", "rails": ["stars"]}),
            )
            .await;
        reply.expect(201);
        reply.body["id"].as_str().expect("id").to_owned()
    }

    async fn status(&self, invoice: &str) -> String {
        let reply = self.get(&format!("/v1/invoices/{invoice}")).await;
        reply.expect(200);
        reply.body["status"].as_str().expect("status").to_owned()
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

    /// The payer's `tg:<id>` customer with its balances.
    async fn payer(&self) -> Value {
        let reply = self.get("/v1/customers?limit=100").await;
        reply.expect(200);
        let found = reply.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|c| c["external_id"] == format!("tg:{PAYER}"))
            .cloned()
            .expect("the payer's customer");
        let id = found["id"].as_str().expect("id").to_owned();
        self.get(&format!("/v1/customers/{id}")).await.body
    }

    /// The offsets of the `getStarTransactions` calls made so far (each with limit 100).
    fn offsets(&self) -> Vec<i64> {
        self.double
            .calls_to("getStarTransactions")
            .iter()
            .map(|call| {
                assert_eq!(call.param_i64("limit"), Some(100));
                call.param_i64("offset").unwrap_or(0)
            })
            .collect()
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

fn pending_withdrawal(id: &str, amount: i64, date_s: i64) -> Value {
    json!({
        "id": id,
        "amount": amount,
        "date": date_s,
        "receiver": {"type": "fragment", "withdrawal_state": {"type": "pending"}},
    })
}

#[tokio::test]
async fn a_payment_the_webhook_missed_is_settled_by_reconciliation() {
    let app = spawn().await;
    app.connected().await;
    let invoice = app.invoice(10).await;
    let now = now_s();
    // Telegram took the payment while farthing was down: no update ever arrives.
    app.double
        .set_star_transactions(vec![fixtures::star_payment(
            "charge-missed",
            10,
            now,
            PAYER,
            &invoice,
        )]);

    let done = app.reconcile().await;
    assert_eq!((done.settled, done.already_settled), (1, 0), "{done:?}");
    assert_eq!(app.status(&invoice).await, "paid");
    let paid = app.events("invoice.paid").await;
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0]["data"]["object"]["id"], invoice.as_str());
    assert_eq!(app.merchant_balance(), 10);
    // Settled exactly as the webhook would: keyed by the charge id, naming the invoice.
    let payment = app
        .running
        .state()
        .store(Mode::Test)
        .read(|reader| reader.rail_payment(app.merchant_id(), Rail::Stars, "charge-missed"))
        .expect("read")
        .expect("the rail payment");
    assert_eq!(payment.invoice.map(|i| i.encode()), Some(invoice.clone()));
    assert_eq!((payment.amount_minor, payment.paid_minor), (10, 10));
    let payload: Value =
        serde_json::from_str(payment.payload.as_deref().expect("payload")).expect("JSON payload");
    assert_eq!(payload["user_id"], PAYER, "kept for refundStarPayment");
    // Its settlement lag is measured from Telegram's date too.
    let lags = crate::support::server::metric(
        &app.client,
        &app.base,
        "farthing_settlement_lag_seconds_count{rail=\"stars\"}",
    )
    .await;
    assert_eq!(lags.as_deref(), Some("1"));

    // The Stars rail shows when it was reconciled.
    let rails = app.get("/v1/rails").await;
    let stars = rails.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|r| r["rail"] == "stars")
        .cloned()
        .expect("stars rail");
    assert!(
        stars["reconciled_at"].as_u64().expect("reconciled_at") >= now as u64 - 5,
        "{stars}"
    );
    assert_eq!(stars["reconcile_error"], Value::Null);

    // A second run finds nothing new (the listing is read from where the last run stopped);
    // a webhook arriving late settles nothing either.
    let again = app.reconcile().await;
    assert_eq!((again.settled, again.pages), (0, 1), "{again:?}");
    app.pay_by_webhook(1, 10, &invoice, "charge-missed").await;
    assert_eq!(app.merchant_balance(), 10);
    assert_eq!(app.events("invoice.paid").await.len(), 1);
    assert_eq!(app.events("invoice.payment_credited").await.len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn the_background_task_reconciles_every_interval() {
    let app = spawn_with(1).await;
    app.connected().await;
    let invoice = app.invoice(7).await;
    app.double
        .set_star_transactions(vec![fixtures::star_payment(
            "charge-background",
            7,
            now_s(),
            PAYER,
            &invoice,
        )]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.status(&invoice).await != "paid" {
        assert!(
            Instant::now() < deadline,
            "the reconciliation task did not settle the payment"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.merchant_balance(), 7);
    assert_eq!(app.events("invoice.paid").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_payment_seen_by_the_webhook_and_the_reconciliation_is_booked_once() {
    let app = spawn().await;
    app.connected().await;
    let first = app.invoice(10).await;
    let second = app.invoice(20).await;
    let now = now_s();

    // The webhook first, then the reconciliation.
    app.pay_by_webhook(1, 10, &first, "charge-a").await;
    assert_eq!(app.status(&first).await, "paid");
    app.double
        .set_star_transactions(vec![fixtures::star_payment(
            "charge-a", 10, now, PAYER, &first,
        )]);
    let done = app.reconcile().await;
    assert_eq!((done.settled, done.already_settled), (0, 1), "{done:?}");

    // The reconciliation first, then the webhook.
    app.double.set_star_transactions(vec![
        fixtures::star_payment("charge-a", 10, now, PAYER, &first),
        fixtures::star_payment("charge-b", 20, now + 1, PAYER, &second),
    ]);
    // (Telegram lists oldest first: the run resumes after charge-a, read last time.)
    let done = app.reconcile().await;
    assert_eq!((done.settled, done.already_settled), (1, 0), "{done:?}");
    app.pay_by_webhook(2, 20, &second, "charge-b").await;

    assert_eq!(app.status(&second).await, "paid");
    assert_eq!(app.merchant_balance(), 30);
    assert_eq!(app.events("invoice.paid").await.len(), 2);
    assert_eq!(app.events("invoice.payment_credited").await.len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn paging_reads_more_than_100_transactions_oldest_first() {
    let app = spawn().await;
    app.connected().await;
    let invoices = [app.invoice(5).await, app.invoice(6).await];
    let base = now_s();
    // 250 payments, oldest first as the Bot API documents: two pay invoices, the rest name no
    // invoice and top up the payer's balance (1 Star each).
    let mut transactions: Vec<Value> = (0..248)
        .map(|i| fixtures::star_payment(&format!("charge-{i}"), 1, base + i, PAYER, "tip"))
        .collect();
    transactions.insert(
        120,
        fixtures::star_payment("charge-inv-0", 5, base + 120, PAYER, &invoices[0]),
    );
    transactions.push(fixtures::star_payment(
        "charge-inv-1",
        6,
        base + 300,
        PAYER,
        &invoices[1],
    ));
    for (i, transaction) in transactions.iter_mut().enumerate() {
        transaction["date"] = json!(base + i as i64);
    }
    app.double.set_star_transactions(transactions.clone());

    let done = app.reconcile().await;
    assert!(!done.newest_first);
    assert_eq!(done.settled, 250, "{done:?}");
    assert_eq!(app.offsets(), vec![0, 100, 200]);
    for invoice in &invoices {
        assert_eq!(app.status(invoice).await, "paid");
    }
    assert_eq!(app.merchant_balance(), 11);
    let payer = app.payer().await;
    assert_eq!(payer["balances"][0]["available"], 248, "{payer}");

    // The next run resumes where this one stopped: the first page (to read the order) and
    // the end of the listing.
    let done = app.reconcile().await;
    assert_eq!(done.settled, 0, "{done:?}");
    assert_eq!(app.offsets(), vec![0, 100, 200, 0, 250]);

    // Two new payments are appended: found from the stored offset.
    transactions.push(fixtures::star_payment(
        "charge-new-1",
        3,
        base + 400,
        PAYER,
        "tip",
    ));
    transactions.push(fixtures::star_payment(
        "charge-new-2",
        4,
        base + 401,
        PAYER,
        "tip",
    ));
    app.double.set_star_transactions(transactions);
    let done = app.reconcile().await;
    assert_eq!((done.settled, done.already_settled), (2, 0), "{done:?}");
    assert_eq!(app.offsets()[5..], [0, 250]);
    let payer = app.payer().await;
    assert_eq!(payer["balances"][0]["available"], 255, "{payer}");
    app.stop().await;
}

#[tokio::test]
async fn paging_reads_newest_first_back_to_the_watermark() {
    let app = spawn().await;
    app.connected().await;
    let invoice = app.invoice(9).await;
    let base = now_s();
    // Newest first, as Telegram's servers have been seen to list: 230 top-ups and, oldest of
    // all, an invoice payment.
    let mut transactions: Vec<Value> = (0..230)
        .rev()
        .map(|i| fixtures::star_payment(&format!("charge-{i}"), 1, base + 1 + i, PAYER, "tip"))
        .collect();
    transactions.push(fixtures::star_payment(
        "charge-inv",
        9,
        base,
        PAYER,
        &invoice,
    ));
    app.double.set_star_transactions(transactions.clone());

    let done = app.reconcile().await;
    assert!(done.newest_first);
    assert_eq!(done.settled, 231, "{done:?}");
    assert_eq!(app.offsets(), vec![0, 100, 200]);
    assert_eq!(app.status(&invoice).await, "paid");

    // A new payment on top: one page is enough, it reaches below the watermark.
    transactions.insert(
        0,
        fixtures::star_payment("charge-newest", 2, base + 500, PAYER, "tip"),
    );
    app.double.set_star_transactions(transactions);
    let done = app.reconcile().await;
    assert_eq!(done.settled, 1, "{done:?}");
    assert_eq!(app.offsets(), vec![0, 100, 200, 0]);
    let payer = app.payer().await;
    assert_eq!(payer["balances"][0]["available"], 232, "{payer}");
    assert_eq!(app.merchant_balance(), 9);
    app.stop().await;
}

#[tokio::test]
async fn a_fragment_withdrawal_is_recorded_once_and_booked_when_it_succeeds() {
    let app = spawn().await;
    app.connected().await;
    let invoice = app.invoice(50).await;
    let now = now_s();
    let payment = fixtures::star_payment("charge-w", 50, now, PAYER, &invoice);

    // Pending: recorded, nothing booked.
    app.double.set_star_transactions(vec![
        payment.clone(),
        pending_withdrawal("wd-1", 30, now + 1),
    ]);
    let done = app.reconcile().await;
    assert_eq!((done.settled, done.withdrawals), (1, 1), "{done:?}");
    assert_eq!(app.merchant_balance(), 50);
    let outflows = app.outflows();
    assert_eq!(outflows.len(), 1);
    assert_eq!(
        (outflows[0].kind.as_str(), outflows[0].state.as_str()),
        ("withdrawal", "pending")
    );
    let events = app.events("stars.withdrawal").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["object"]["state"], "pending");

    // Later runs read it again while it is pending (the watermark holds there); it succeeded.
    let mut transactions = vec![
        payment.clone(),
        fixtures::fragment_withdrawal("wd-1", 30, now + 1, "https://fragment.com/tx/1"),
    ];
    app.double.set_star_transactions(transactions.clone());
    let done = app.reconcile().await;
    assert_eq!(done.withdrawals, 1, "{done:?}");
    assert_eq!(app.merchant_balance(), 20, "booked as a payout");
    let object = &app.events("stars.withdrawal").await[0]["data"]["object"];
    assert_eq!(object["object"], "stars_withdrawal");
    assert_eq!(object["id"], "wd-1");
    assert_eq!(object["state"], "succeeded");
    assert_eq!(object["amount"], 30);
    assert_eq!(object["amount_booked"], 30);
    assert_eq!(object["shortfall"], 0);
    assert_eq!(object["url"], "https://fragment.com/tx/1");

    // A second run over the same listing records and books nothing more.
    let done = app.reconcile().await;
    assert_eq!(done.withdrawals, 0, "{done:?}");
    assert_eq!(app.events("stars.withdrawal").await.len(), 2);
    assert_eq!(app.merchant_balance(), 20);
    assert_eq!(app.outflows().len(), 1);

    // A withdrawal larger than the balance: booked as far as it goes, the rest a shortfall.
    // A refund made outside farthing is recorded (not booked).
    transactions.push(fixtures::fragment_withdrawal(
        "wd-2",
        45,
        now + 2,
        "https://fragment.com/tx/2",
    ));
    transactions.push(fixtures::star_refund("charge-w", 50, now + 3, PAYER));
    app.double.set_star_transactions(transactions.clone());
    let done = app.reconcile().await;
    assert_eq!(
        (done.withdrawals, done.external_refunds),
        (1, 1),
        "{done:?}"
    );
    assert_eq!(app.merchant_balance(), 0);
    let outflows = app.outflows();
    assert_eq!(outflows.len(), 3, "{outflows:?}");
    let second = outflows
        .iter()
        .find(|o| o.transaction_id == "wd-2")
        .expect("wd-2");
    assert_eq!((second.booked_minor, second.shortfall_minor), (20, 25));
    let refund = outflows
        .iter()
        .find(|o| o.kind == "refund")
        .expect("the refund");
    assert_eq!(
        (
            refund.transaction_id.as_str(),
            refund.amount,
            refund.user_id
        ),
        ("charge-w", 50, Some(PAYER as u64))
    );
    assert_eq!(
        app.status(&invoice).await,
        "paid",
        "not changed by farthing"
    );

    // And once more: nothing new.
    let done = app.reconcile().await;
    assert_eq!(
        (done.withdrawals, done.external_refunds),
        (0, 0),
        "{done:?}"
    );
    assert_eq!(app.events("stars.withdrawal").await.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_refund_made_by_farthing_is_not_recorded_as_outside() {
    let app = spawn().await;
    app.connected().await;
    let invoice = app.invoice(10).await;
    let now = now_s();
    app.pay_by_webhook(1, 10, &invoice, "charge-r").await;
    app.post(
        "/v1/refunds",
        json!({"invoice": invoice, "destination": "rail"}),
    )
    .await
    .expect(201);
    assert_eq!(app.double.calls_to("refundStarPayment").len(), 1);
    app.double.set_star_transactions(vec![
        fixtures::star_payment("charge-r", 10, now, PAYER, &invoice),
        fixtures::star_refund("charge-r", 10, now + 1, PAYER),
    ]);
    let done = app.reconcile().await;
    assert_eq!(
        (done.settled, done.already_settled, done.external_refunds),
        (0, 1, 0),
        "{done:?}"
    );
    assert!(app.outflows().is_empty());
    assert_eq!(app.merchant_balance(), 0);
    app.stop().await;
}

#[tokio::test]
async fn missed_subscription_payments_start_and_renew_the_subscription() {
    let app = spawn().await;
    app.connected().await;
    let period = 2_592_000;
    let reply = app
        .post(
            "/v1/invoices",
            json!({"amount": 15, "currency": "XTR", "rails": ["stars"], "subscription_period": period}),
        )
        .await;
    reply.expect(201);
    let invoice = reply.body["id"].as_str().expect("id").to_owned();
    let now = now_s();
    let subscription_payment = |charge: &str, date: i64| {
        let mut transaction = fixtures::star_payment(charge, 15, date, PAYER, &invoice);
        transaction["source"]["subscription_period"] = json!(period);
        transaction
    };
    // Neither the first payment nor the renewal reached farthing as an update.
    let mut transactions = vec![subscription_payment("charge-sub-1", now)];
    app.double.set_star_transactions(transactions.clone());
    let done = app.reconcile().await;
    assert_eq!(done.settled, 1, "{done:?}");
    assert_eq!(app.status(&invoice).await, "paid");
    assert_eq!(app.events("subscription.created").await.len(), 1);

    transactions.push(subscription_payment("charge-sub-2", now + 1));
    app.double.set_star_transactions(transactions);
    let done = app.reconcile().await;
    assert_eq!(done.settled, 1, "{done:?}");
    let renewed = app.events("subscription.renewed").await;
    assert_eq!(renewed.len(), 1);
    // Each period is an invoice paid of its own; nothing lands on the payer's balance.
    assert_eq!(app.events("invoice.paid").await.len(), 2);
    assert_eq!(app.events("invoice.payment_credited").await.len(), 0);
    assert_eq!(app.merchant_balance(), 30);
    app.stop().await;
}
