//! Risk rules (SPEC S1, S2) through the public API: rules that say what is wrong with them,
//! each rule refusing a charge or a balance payment with its decision recorded and listed,
//! nothing booked by a refusal, a daily limit that holds under concurrent charges, step-up for
//! large charges, and no decisions (and no cost) for a merchant without rules. The Telegram
//! pre-checkout is in `stars.rs`, the Mini App in `webapp.rs`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::server::{self, Server};

struct Shop {
    server: Server,
    key: String,
}

impl Shop {
    async fn open(clock: farthing_app::Clock) -> Shop {
        let server = server::spawn_with_clock(|_| {}, clock).await;
        let key = server.merchant("Risky").await.test_key;
        Shop { server, key }
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> (StatusCode, Value) {
        let mut request = self
            .server
            .client
            .request(method, format!("{}{path}", self.server.base))
            .bearer_auth(&self.key);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, path, body, &[]).await
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    async fn rules(&self, rules: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, "/v1/risk/rules", Some(rules)).await
    }

    /// A customer holding `xtr` Stars.
    async fn customer(&self, external_id: &str, xtr: u64) -> String {
        let customer = self
            .ok(
                Method::POST,
                "/v1/customers",
                Some(json!({"external_id": external_id})),
            )
            .await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        self.ok(
            Method::POST,
            &format!("/v1/test/customers/{customer}/top_up"),
            Some(json!({"amount": xtr, "currency": "XTR"})),
        )
        .await;
        customer
    }

    async fn charge(&self, customer: &str, amount: u64) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/v1/charges",
            Some(json!({"customer": customer, "amount": amount, "currency": "XTR"})),
        )
        .await
    }

    async fn available(&self, customer: &str) -> i64 {
        self.ok(Method::GET, &format!("/v1/customers/{customer}"), None)
            .await["balances"][0]["available"]
            .as_i64()
            .expect("a balance")
    }

    async fn decisions(&self, query: &str) -> Vec<Value> {
        self.ok(Method::GET, &format!("/v1/risk/decisions{query}"), None)
            .await["data"]
            .as_array()
            .expect("a list")
            .clone()
    }
}

/// A refusal by `rule`: 402 `risk_refused` naming the rule, with the decision's id.
fn refused_by(answer: &(StatusCode, Value), rule: &str) -> String {
    let (status, body) = answer;
    assert_eq!(*status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["error"]["code"], "risk_refused", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(rule)),
        "{body}"
    );
    body["error"]["decision"]
        .as_str()
        .expect("the decision's id")
        .to_owned()
}

fn manual_clock() -> farthing_app::Clock {
    let clock = farthing_app::Clock::manual();
    clock.set(1_800_000_000 * 1_000_000_000);
    clock
}

#[tokio::test]
async fn rules_that_cannot_work_are_refused_saying_which_field() {
    let shop = Shop::open(manual_clock()).await;
    for (rules, param) in [
        (
            json!({"limits": [{"currency": "XXX"}]}),
            "limits[0].currency",
        ),
        (
            json!({"limits": [{"currency": "XTR"}, {"currency": "XTR"}]}),
            "limits[1].currency",
        ),
        (
            json!({"limits": [{"currency": "XTR", "per_payment_max": 10, "per_customer_day_max": 5}]}),
            "limits[0].per_customer_day_max",
        ),
        (
            json!({"block": {"ips": ["127.0.0.1", "10.0.0.1/8"]}}),
            "block.ips[1]",
        ),
        (json!({"block": {"wallets": [" "]}}), "block.wallets[0]"),
    ] {
        let (status, body) = shop.rules(rules.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{rules}: {body}");
        assert_eq!(body["error"]["code"], "invalid_risk_rules", "{body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    let (status, body) = shop.rules(json!({"limits": [], "surprise": 1})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_body")),
        "{body}"
    );
    // Nothing was stored by the refusals: still no rules.
    let stored = shop.ok(Method::GET, "/v1/risk/rules", None).await;
    assert_eq!(stored["limits"], json!([]), "{stored}");

    let rules = json!({
        "limits": [{"currency": "XTR", "per_payment_max": 50}],
        "velocity": {"attempts_per_minute": 9},
        "block": {"telegram_users": [1], "wallets": ["UQAbc"], "ips": ["203.0.113.0/24"]},
    });
    let (status, stored) = shop.rules(rules).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["object"], "risk_rules");
    let read = shop.ok(Method::GET, "/v1/risk/rules", None).await;
    assert_eq!(read, stored);
    assert_eq!(read["limits"][0]["per_payment_max"], 50);
    // The change is in the audit log.
    let log = shop.ok(Method::GET, "/v1/audit_log", None).await;
    assert!(
        log["data"]
            .as_array()
            .expect("list")
            .iter()
            .any(|entry| entry["action"] == "PUT /v1/risk/rules" && entry["status"] == 200),
        "{log}"
    );
    shop.server.running.shutdown().await;
}

#[tokio::test]
async fn each_rule_refuses_a_charge_books_nothing_and_is_listed_with_its_reason() {
    let clock = manual_clock();
    let shop = Shop::open(clock.clone()).await;
    let ann = shop.customer("tg:4242", 1_000).await;

    // No rules: charges go through and nothing is recorded.
    assert_eq!(shop.charge(&ann, 5).await.0, StatusCode::CREATED);
    assert!(shop.decisions("").await.is_empty());

    shop.rules(json!({"limits": [{"currency": "XTR", "per_payment_max": 100, "per_customer_day_max": 250, "new_customer_per_payment_max": 40}], "new_customers": {"days": 7, "payments": 0}}))
        .await;
    // Per payment.
    let decision = refused_by(&shop.charge(&ann, 101).await, "per_payment_max");
    assert_eq!(shop.available(&ann).await, 995, "a refusal books nothing");
    // New customer (created now): 40 at most.
    refused_by(&shop.charge(&ann, 41).await, "new_customer_per_payment_max");
    assert_eq!(shop.charge(&ann, 40).await.0, StatusCode::CREATED);
    // A week later Ann is no longer new, but the day's total counts what she paid in the last
    // 24 hours, charges and invoices alike.
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    assert_eq!(shop.charge(&ann, 100).await.0, StatusCode::CREATED);
    let invoice = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 100, "currency": "XTR", "rails": ["balance"], "customer": ann})),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, paid) = shop
        .call(
            Method::POST,
            &format!("/v1/invoices/{invoice}/pay"),
            Some(json!({"customer": ann})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    refused_by(&shop.charge(&ann, 51).await, "per_customer_day_max");
    assert_eq!(shop.charge(&ann, 50).await.0, StatusCode::CREATED);
    // A balance payment meets the same limit.
    let second = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 1, "currency": "XTR", "rails": ["balance"]})),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let answer = shop
        .call(
            Method::POST,
            &format!("/v1/invoices/{second}/pay"),
            Some(json!({"customer": ann})),
        )
        .await;
    refused_by(&answer, "per_customer_day_max");
    let open = shop
        .ok(Method::GET, &format!("/v1/invoices/{second}"), None)
        .await;
    assert_eq!(open["status"], "open", "a refused payment leaves it open");
    // The window rolls: a day later it is free again.
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(shop.charge(&ann, 100).await.0, StatusCode::CREATED);
    assert_eq!(
        shop.available(&ann).await,
        1_000 - 5 - 40 - 100 - 100 - 50 - 100
    );

    // Every decision is listed, newest first, with its rule, reason and subject.
    let all = shop.decisions("?limit=100").await;
    let outcomes: Vec<(&str, &str)> = all
        .iter()
        .map(|d| {
            (
                d["outcome"].as_str().expect("outcome"),
                d["rule"].as_str().expect("rule"),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("allow", "none"),
            ("refuse", "per_customer_day_max"),
            ("allow", "none"),
            ("refuse", "per_customer_day_max"),
            ("allow", "none"),
            ("allow", "none"),
            ("allow", "none"),
            ("refuse", "new_customer_per_payment_max"),
            ("refuse", "per_payment_max"),
        ]
    );
    let first = all.last().expect("the first decision");
    assert_eq!(first["id"], decision);
    assert_eq!(first["operation"], "charge");
    assert_eq!(first["customer"], ann);
    assert_eq!(
        first["telegram_user_id"], 4242,
        "read from the tg: customer"
    );
    assert_eq!(
        (first["amount"].clone(), first["currency"].clone()),
        (json!(101), json!("XTR"))
    );
    assert!(first["reason"]
        .as_str()
        .is_some_and(|r| r.contains("101 XTR")));
    assert!(first["subject"]
        .as_str()
        .is_some_and(|s| s.starts_with("chg_")));
    let refusals = shop.decisions("?outcome=refuse&limit=100").await;
    assert_eq!(refusals.len(), 4);
    assert_eq!(
        shop.decisions(&format!("?customer={ann}&limit=100"))
            .await
            .len(),
        9
    );
    let (status, body) = shop
        .call(Method::GET, "/v1/risk/decisions?outcome=maybe", None)
        .await;
    assert_eq!(
        (status, body["error"]["param"].clone()),
        (StatusCode::BAD_REQUEST, json!("outcome"))
    );
    shop.server.running.shutdown().await;
}

#[tokio::test]
async fn block_lists_and_velocity_stop_a_payer() {
    let clock = manual_clock();
    let shop = Shop::open(clock.clone()).await;
    let bob = shop.customer("tg:666", 100).await;
    let eve = shop.customer("eve@example.com", 100).await;
    shop.rules(json!({"block": {"telegram_users": [666]}, "velocity": {"attempts_per_minute": 4, "failures_per_minute": 2}}))
        .await;
    refused_by(&shop.charge(&bob, 1).await, "blocked_telegram_user");

    // Eve: four attempts a minute at most, and two failures (here for lack of funds) pause
    // her until the minute is over.
    assert_eq!(shop.charge(&eve, 60).await.0, StatusCode::CREATED);
    assert_eq!(shop.charge(&eve, 60).await.0, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        shop.charge(&eve, 60).await.1["error"]["code"],
        "insufficient_funds"
    );
    refused_by(&shop.charge(&eve, 1).await, "velocity_failures");
    clock.advance(Duration::from_secs(61));
    for _ in 0..4 {
        assert_eq!(shop.charge(&eve, 10).await.0, StatusCode::CREATED);
    }
    refused_by(&shop.charge(&eve, 1).await, "velocity_attempts");
    assert_eq!(shop.available(&eve).await, 0);
    // The failed charges' allowances were recorded too, though their jobs wrote nothing.
    let eves = shop.decisions(&format!("?customer={eve}&limit=100")).await;
    assert_eq!(eves.len(), 9, "{eves:?}");
    let failed_allowances = eves
        .iter()
        .filter(|d| d["outcome"] == "allow" && d["amount"] == 60)
        .count();
    assert_eq!(failed_allowances, 3);
    shop.server.running.shutdown().await;
}

#[tokio::test]
async fn a_daily_limit_holds_under_concurrent_charges() {
    let shop = Shop::open(manual_clock()).await;
    let carl = shop.customer("carl", 10_000).await;
    shop.rules(json!({"limits": [{"currency": "XTR", "per_customer_day_max": 500}]}))
        .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (client, base, key, carl) = (
            shop.server.client.clone(),
            shop.server.base.clone(),
            shop.key.clone(),
            carl.clone(),
        );
        tasks.spawn(async move {
            let response = client
                .post(format!("{base}/v1/charges"))
                .bearer_auth(key)
                .json(&json!({"customer": carl, "amount": 30, "currency": "XTR"}))
                .send()
                .await
                .expect("an answer");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        });
    }
    let answers = tasks.join_all().await;
    let made = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    for (status, body) in &answers {
        assert!(
            *status == StatusCode::CREATED || body["error"]["code"] == "risk_refused",
            "{status} {body}"
        );
    }
    // 16 × 30 = 480 ≤ 500 < 17 × 30.
    assert_eq!(made, 16);
    assert_eq!(shop.available(&carl).await, 10_000 - 480);
    assert_eq!(shop.decisions("?limit=100").await.len(), 40);
    shop.server.running.shutdown().await;
}

#[tokio::test]
async fn a_large_charge_needs_the_merchants_step_up_code_and_a_replay_is_not_decided_again() {
    let clock = manual_clock();
    let shop = Shop::open(clock.clone()).await;
    let dora = shop.customer("dora", 1_000).await;
    shop.rules(json!({"limits": [{"currency": "XTR", "step_up_above": 100}]}))
        .await;
    let (status, body) = shop.charge(&dora, 101).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("step_up_required")),
        "{body}"
    );
    assert!(body["error"]["decision"]
        .as_str()
        .is_some_and(|d| d.starts_with("rsk_")));

    // Enrol and confirm an authenticator, then send its code.
    let enrolment = shop.ok(Method::POST, "/v1/step_up/enroll", None).await;
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    let now_s = 1_800_000_000;
    shop.ok(
        Method::POST,
        "/v1/step_up/confirm",
        Some(json!({"code": crate::step_up::pyotp(&secret, now_s)})),
    )
    .await;
    clock.advance(Duration::from_secs(30));
    let code = crate::step_up::pyotp(&secret, now_s + 30);
    let body = json!({"customer": dora, "amount": 101, "currency": "XTR"});
    let headers = [
        ("Farthing-Step-Up", code),
        ("Idempotency-Key", "big-one".to_owned()),
    ];
    let (status, charged) = shop
        .call_with(Method::POST, "/v1/charges", Some(body.clone()), &headers)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{charged}");
    // The replay answers the stored charge without a new decision (or a second code).
    let (status, again) = shop
        .call_with(
            Method::POST,
            "/v1/charges",
            Some(body),
            &[("Idempotency-Key", "big-one".to_owned())],
        )
        .await;
    assert_eq!(
        (status, again["id"].clone()),
        (StatusCode::CREATED, charged["id"].clone())
    );
    let decisions = shop.decisions("").await;
    assert_eq!(decisions.len(), 2);
    assert_eq!(
        (
            decisions[0]["outcome"].clone(),
            decisions[1]["outcome"].clone()
        ),
        (json!("allow"), json!("step_up"))
    );
    assert_eq!(shop.available(&dora).await, 899);
    shop.server.running.shutdown().await;
}

#[tokio::test]
async fn a_payment_no_rule_saw_counts_toward_the_day_within_a_minute_or_at_once_on_postgres() {
    let clock = manual_clock();
    let shop = Shop::open(clock.clone()).await;
    let fay = shop.customer("fay", 1_000).await;
    shop.rules(json!({"limits": [{"currency": "XTR", "per_customer_day_max": 100}]}))
        .await;
    assert_eq!(shop.charge(&fay, 10).await.0, StatusCode::CREATED);
    // Fay pays an invoice outside farthing (the sandbox pays as a rail would): no risk check runs
    // there, yet the payment is hers.
    let invoice = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 80, "currency": "XTR", "customer": fay})),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let paid = shop
        .ok(
            Method::POST,
            &format!("/v1/test/invoices/{invoice}/pay"),
            Some(json!({})),
        )
        .await;
    assert_eq!(paid["paid_by"], fay, "{paid}");
    if crate::support::server::postgres_server().is_some() {
        // On a database other instances may share, nothing is cached: the store's total (10 +
        // 80) counts at once, and 15 more is over 100.
        refused_by(&shop.charge(&fay, 15).await, "per_customer_day_max");
        assert_eq!(shop.charge(&fay, 10).await.0, StatusCode::CREATED);
        refused_by(&shop.charge(&fay, 1).await, "per_customer_day_max");
        shop.server.running.shutdown().await;
        return;
    }
    // Within the minute the cached total (10) still lets 15 through; after it, the store's
    // total (10 + 80 + 15) counts and 1 more is over 100.
    assert_eq!(shop.charge(&fay, 15).await.0, StatusCode::CREATED);
    clock.advance(Duration::from_secs(61));
    refused_by(&shop.charge(&fay, 1).await, "per_customer_day_max");
    shop.server.running.shutdown().await;
}
