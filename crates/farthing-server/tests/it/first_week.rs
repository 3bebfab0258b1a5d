//! What an integrator hits in the first week (the "Merchant API and checkout" issue), each
//! through the public API: top-ups, a truthful sandbox, lookups by external id, errors a
//! program can use, the merchant's balance, refunds that say what will work.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::server::{self, Server};

struct Shop {
    server: Server,
    key: String,
}

impl Shop {
    async fn open() -> Shop {
        let server = server::spawn(|_| {}).await;
        let key = server.merchant("Shop").await.test_key;
        Shop { server, key }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .server
            .client
            .request(method, format!("{}{path}", self.server.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn customer(&self, external_id: &str) -> String {
        self.ok(
            Method::POST,
            "/v1/customers",
            Some(json!({"external_id": external_id})),
        )
        .await["id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    async fn available(&self, customer: &str, currency: &str) -> i64 {
        let body = self
            .ok(Method::GET, &format!("/v1/customers/{customer}"), None)
            .await;
        body["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|b| b["currency"] == currency)
            .map_or(0, |b| b["available"].as_i64().expect("a number"))
    }
}

/// The walls "Sandbox lies" and "Top-ups": `rail: balance` on an empty balance answered paid
/// and debited nothing; a top-up invoice paid in the sandbox left the balance empty.
#[tokio::test]
async fn the_sandbox_pays_as_the_real_rails_would_and_top_ups_land_on_the_balance() {
    let shop = Shop::open().await;
    let customer = shop.customer("tg:501").await;
    // A balance payment from an empty balance is refused with the amounts, not "paid".
    let invoice = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 40, "currency": "XTR", "rails": ["balance", "sandbox"]})),
        )
        .await;
    let id = invoice["id"].as_str().expect("id");
    let (status, body) = shop
        .call(
            Method::POST,
            &format!("/v1/test/invoices/{id}/pay"),
            Some(json!({"rail": "balance", "customer": customer})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_funds");
    assert_eq!(body["error"]["available"], 0);
    assert_eq!(body["error"]["requested"], 40);
    assert_eq!(body["error"]["param"], "amount");
    let still = shop
        .ok(Method::GET, &format!("/v1/invoices/{id}"), None)
        .await;
    assert_eq!(still["status"], "open", "nothing changed");
    // `balance` without a customer: refused, saying what is missing.
    let (status, body) = shop
        .call(
            Method::POST,
            &format!("/v1/test/invoices/{id}/pay"),
            Some(json!({"rail": "balance"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "customer_required");

    // A top-up: the first-class way to fund a balance, paid here in the sandbox.
    let (status, body) = shop
        .call(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 100, "currency": "XTR", "top_up": true})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a top-up names its customer: {body}"
    );
    assert_eq!(body["error"]["code"], "customer_required");
    let (status, body) = shop
        .call(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 100, "currency": "XTR", "top_up": true, "customer": customer, "rails": ["balance"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_rail");
    let top_up = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 100, "currency": "XTR", "top_up": true, "customer": customer})),
        )
        .await;
    assert_eq!(top_up["metadata"]["purpose"], "top_up");
    assert!(
        !top_up["rails"]
            .as_array()
            .expect("rails")
            .contains(&json!("balance")),
        "{top_up}"
    );
    let top_up_id = top_up["id"].as_str().expect("id");
    let paid = shop
        .ok(
            Method::POST,
            &format!("/v1/test/invoices/{top_up_id}/pay"),
            Some(json!({})),
        )
        .await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(shop.available(&customer, "XTR").await, 100);
    // Now the balance pays.
    let paid = shop
        .ok(
            Method::POST,
            &format!("/v1/test/invoices/{id}/pay"),
            Some(json!({"rail": "balance", "customer": customer})),
        )
        .await;
    assert_eq!(paid["paid_rail"], "balance");
    assert_eq!(shop.available(&customer, "XTR").await, 60);
    // And the merchant's balance shows what it earned: 100 topped up went on to the
    // customer, 40 paid the invoice.
    let balance = shop.ok(Method::GET, "/v1/balance", None).await;
    assert_eq!(balance["object"], "balance");
    let xtr = balance["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .find(|b| b["currency"] == "XTR")
        .cloned()
        .expect("an XTR entry");
    assert_eq!(xtr["available"], 40, "{balance}");
    shop.server.running.shutdown().await;
}

/// "Finding things": no lookup by external id (a second create gave 409 with the id only in
/// the message).
#[tokio::test]
async fn customers_are_found_by_external_id() {
    let shop = Shop::open().await;
    let id = shop.customer("user-77").await;
    shop.customer("user-78").await;
    let found = shop
        .ok(Method::GET, "/v1/customers?external_id=user-77", None)
        .await;
    let data = found["data"].as_array().expect("a list");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], id);
    let none = shop
        .ok(Method::GET, "/v1/customers?external_id=nobody", None)
        .await;
    assert_eq!(none["data"], json!([]));
    let (status, body) = shop
        .call(
            Method::GET,
            "/v1/customers?external_id=a&external_id=b",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = shop
        .call(
            Method::POST,
            "/v1/customers",
            Some(json!({"external_id": "user-77"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains(&id) && m.contains("external_id=")));
    shop.server.running.shutdown().await;
}

/// "Errors a program can use": refunding a payment made without a customer pointed to
/// `destination: rail`, which pointed back.
#[tokio::test]
async fn a_sandbox_payment_without_a_customer_is_refunded_through_its_rail() {
    let shop = Shop::open().await;
    let invoice = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 25, "currency": "XTR"})),
        )
        .await;
    let id = invoice["id"].as_str().expect("id");
    shop.ok(
        Method::POST,
        &format!("/v1/test/invoices/{id}/pay"),
        Some(json!({"rail": "sandbox"})),
    )
    .await;
    let (status, body) = shop
        .call(Method::POST, "/v1/refunds", Some(json!({"invoice": id})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "no_customer");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("destination rail")));
    let refund = shop
        .ok(
            Method::POST,
            "/v1/refunds",
            Some(json!({"invoice": id, "destination": "rail"})),
        )
        .await;
    assert_eq!(refund["destination"], "rail");
    assert_eq!(refund["amount"], 25);
    let after = shop
        .ok(Method::GET, &format!("/v1/invoices/{id}"), None)
        .await;
    assert_eq!(after["status"], "refunded");
    shop.server.running.shutdown().await;
}

/// "Keys": scoped keys existed in the docs but nothing created one; keys could not be created
/// or revoked while the server ran (and a revoked key stayed valid while cached).
#[tokio::test]
async fn scoped_keys_are_made_listed_and_revoked_while_running() {
    let shop = Shop::open().await;
    let made = shop
        .ok(
            Method::POST,
            "/v1/api_keys",
            Some(json!({"scopes": ["customers:read", "charges:write"]})),
        )
        .await;
    let secret = made["secret"].as_str().expect("the key, once").to_owned();
    assert!(secret.starts_with("fk_test_"));
    let id = made["id"].as_str().expect("id").to_owned();
    let with = |key: &str, method: Method, path: &str| {
        let request = shop
            .server
            .client
            .request(method, format!("{}{path}", shop.server.base))
            .bearer_auth(key);
        async move { request.send().await.expect("answer").status() }
    };
    // It may do what it holds, and nothing else.
    assert_eq!(
        with(&secret, Method::GET, "/v1/customers").await,
        StatusCode::OK
    );
    assert_eq!(
        with(&secret, Method::GET, "/v1/invoices").await,
        StatusCode::FORBIDDEN
    );
    // It cannot make keys (no api_keys:write), and no key grants what it lacks.
    let escalate = shop
        .server
        .client
        .post(format!("{}/v1/api_keys", shop.server.base))
        .bearer_auth(&secret)
        .json(&json!({"scopes": ["*"]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(escalate.status(), StatusCode::FORBIDDEN);
    let (status, body) = shop
        .call(
            Method::POST,
            "/v1/api_keys",
            Some(json!({"scopes": ["nope:write"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_scopes");
    // Listed without the key.
    let listed = shop.ok(Method::GET, "/v1/api_keys", None).await;
    let entry = listed["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|key| key["id"] == id.as_str())
        .cloned()
        .expect("listed");
    assert!(entry.get("secret").is_none(), "{entry}");
    assert!(!listed.to_string().contains(&secret));
    // Revoked: it stops at once (it was cached by the calls above).
    let revoked = shop
        .ok(Method::POST, &format!("/v1/api_keys/{id}/revoke"), None)
        .await;
    assert!(revoked["revoked_at"].is_u64(), "{revoked}");
    assert_eq!(
        with(&secret, Method::GET, "/v1/customers").await,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = shop
        .call(Method::POST, &format!("/v1/api_keys/{id}/revoke"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The key making the request cannot revoke itself.
    let own = shop.ok(Method::GET, "/v1/api_keys", None).await["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|key| key["revoked_at"].is_null() && key["scopes"] == json!(["*"]))
        .cloned()
        .expect("the merchant's own key");
    let (status, body) = shop
        .call(
            Method::POST,
            &format!("/v1/api_keys/{}/revoke", own["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "revoking_own_key");
    shop.server.running.shutdown().await;
}

/// "Finding things": no list filters at all.
#[tokio::test]
async fn lists_filter_by_status_customer_and_creation_time() {
    let shop = Shop::open().await;
    let (ann, bob) = (shop.customer("ann").await, shop.customer("bob").await);
    let invoice = |customer: &str| {
        let body = json!({"amount": 5, "currency": "XTR", "customer": customer});
        let shop = &shop;
        async move {
            shop.ok(Method::POST, "/v1/invoices", Some(body)).await["id"]
                .as_str()
                .expect("id")
                .to_owned()
        }
    };
    let first = invoice(&ann).await;
    invoice(&ann).await;
    invoice(&bob).await;
    shop.ok(
        Method::POST,
        &format!("/v1/test/invoices/{first}/pay"),
        Some(json!({"rail": "sandbox"})),
    )
    .await;
    let count = |path: String| {
        let shop = &shop;
        async move {
            shop.ok(Method::GET, &path, None).await["data"]
                .as_array()
                .expect("a list")
                .len()
        }
    };
    assert_eq!(count("/v1/invoices?status=paid".into()).await, 1);
    assert_eq!(count("/v1/invoices?status=open".into()).await, 2);
    assert_eq!(count(format!("/v1/invoices?customer={ann}")).await, 2);
    assert_eq!(
        count(format!("/v1/invoices?customer={ann}&status=open")).await,
        1
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    assert_eq!(
        count(format!("/v1/invoices?created%5Bgte%5D={}", now + 3600)).await,
        0
    );
    assert_eq!(
        count(format!(
            "/v1/invoices?created%5Bgte%5D={}&created%5Blte%5D={}",
            now - 3600,
            now + 1
        ))
        .await,
        3
    );
    // Paging still works inside a filter.
    let page = shop
        .ok(
            Method::GET,
            &format!("/v1/invoices?customer={ann}&limit=1"),
            None,
        )
        .await;
    assert_eq!(page["has_more"], true);
    // Charges by customer.
    shop.ok(
        Method::POST,
        &format!("/v1/test/customers/{bob}/top_up"),
        Some(json!({"amount": 10, "currency": "XTR"})),
    )
    .await;
    shop.ok(
        Method::POST,
        "/v1/charges",
        Some(json!({"customer": bob, "amount": 1, "currency": "XTR"})),
    )
    .await;
    assert_eq!(count(format!("/v1/charges?customer={bob}")).await, 1);
    assert_eq!(count(format!("/v1/charges?customer={ann}")).await, 0);
    // Bad filters say what to fix.
    let (status, body) = shop
        .call(Method::GET, "/v1/invoices?status=lost", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_status");
    let (status, body) = shop
        .call(Method::GET, "/v1/charges?status=paid", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "unknown_parameter");
    let (status, body) = shop
        .call(Method::GET, "/v1/invoices?created%5Bgte%5D=yesterday", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "created[gte]");
    shop.server.running.shutdown().await;
}

/// "The checkout page": English only in a browser, "XTR" instead of Stars, raw rail names.
#[tokio::test]
async fn the_checkout_page_speaks_the_browsers_language() {
    let shop = Shop::open().await;
    let invoice = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 5, "currency": "XTR"})),
        )
        .await;
    let url = invoice["checkout_url"].as_str().expect("url").to_owned();
    let page = |lang: Option<&str>, query: &str| {
        let mut request = shop.server.client.get(format!("{url}{query}"));
        if let Some(lang) = lang {
            request = request.header("Accept-Language", lang);
        }
        async move {
            request
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("html")
        }
    };
    let english = page(None, "").await;
    assert!(english.contains("<html lang=en dir=ltr>"));
    assert!(english.contains("5 Stars"), "Stars, not XTR");
    assert!(english.contains("Awaiting payment"));
    assert!(
        english.contains("</svg>Balance</span>, <span class=rail><svg"),
        "human rail names"
    );
    let german = page(Some("de-DE,de;q=0.9,en;q=0.5"), "").await;
    assert!(german.contains("<html lang=de dir=ltr>"));
    assert!(german.contains("Bezahlen mit"));
    assert!(german.contains("Zahlung ausstehend"));
    let persian = page(Some("de"), "?lang=fa").await;
    assert!(persian.contains("<html lang=fa dir=rtl>"), "?lang= wins");
    assert!(persian.contains("پرداخت با"));
    shop.server.running.shutdown().await;
}

/// "Operations": /metrics had no webhook backlog, open-invoice gauge or process metrics; no
/// request id.
#[tokio::test]
async fn metrics_show_the_backlog_and_the_process_and_answers_carry_a_request_id() {
    let shop = Shop::open().await;
    shop.ok(
        Method::POST,
        "/v1/invoices",
        Some(json!({"amount": 5, "currency": "XTR"})),
    )
    .await;
    let metrics = shop
        .server
        .client
        .get(format!("{}/metrics", shop.server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("farthing_open_invoices{mode=\"test\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("farthing_webhook_backlog{mode=\"test\"} 0"));
    assert!(metrics.contains("farthing_webhook_oldest_due_seconds{mode=\"live\"}"));
    #[cfg(target_os = "linux")]
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(metrics.contains(&format!("\n{name} ")), "{name}");
    }
    // A request id on every answer: the client's when it sends a valid one.
    let answer = shop
        .server
        .client
        .get(format!("{}/healthz", shop.server.base))
        .header("X-Request-Id", "trace-42")
        .send()
        .await
        .expect("health");
    assert_eq!(answer.headers()["request-id"], "trace-42");
    let answer = shop
        .server
        .client
        .get(format!("{}/healthz", shop.server.base))
        .send()
        .await
        .expect("health");
    let made = answer.headers()["request-id"].to_str().expect("text");
    assert!(made.starts_with("req_") && made.len() == 28, "{made}");
    shop.server.running.shutdown().await;
}

/// "Finding things": no customer update.
#[tokio::test]
async fn a_customers_metadata_can_be_replaced() {
    let shop = Shop::open().await;
    let id = shop.customer("tg:900").await;
    shop.ok(
        Method::POST,
        &format!("/v1/test/customers/{id}/top_up"),
        Some(json!({"amount": 7, "currency": "XTR"})),
    )
    .await;
    let updated = shop
        .ok(
            Method::POST,
            &format!("/v1/customers/{id}"),
            Some(json!({"metadata": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(updated["metadata"], json!({"plan": "pro"}));
    assert_eq!(updated["external_id"], "tg:900", "the external id stays");
    assert_eq!(updated["balances"][0]["available"], 7, "{updated}");
    let fetched = shop
        .ok(Method::GET, &format!("/v1/customers/{id}"), None)
        .await;
    assert_eq!(fetched["metadata"], json!({"plan": "pro"}));
    let (status, body) = shop
        .call(
            Method::POST,
            &format!("/v1/customers/{id}"),
            Some(json!({"metadata": {"plan": "pro"}, "external_id": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = shop
        .call(
            Method::POST,
            "/v1/customers/cus_0000000000000000000000",
            Some(json!({"metadata": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    shop.server.running.shutdown().await;
}

#[tokio::test]
async fn lists_page_back_with_ending_before() {
    let shop = Shop::open().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(shop.customer(&format!("c{n}")).await);
        // Ids order by their millisecond (then at random within it, as capabilities must not
        // be guessable): one each, so that creation order is list order.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let ids_of = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_owned())
            .collect()
    };
    // Newest first: c4 c3 | c2 c1 | c0.
    let first = shop.ok(Method::GET, "/v1/customers?limit=2", None).await;
    assert_eq!(ids_of(&first), [ids[4].clone(), ids[3].clone()]);
    let second = shop
        .ok(
            Method::GET,
            &format!("/v1/customers?limit=2&starting_after={}", ids[3]),
            None,
        )
        .await;
    assert_eq!(ids_of(&second), [ids[2].clone(), ids[1].clone()]);
    // Back from the second page's first object: the first page again, newest first, and
    // nothing newer beyond it.
    let back = shop
        .ok(
            Method::GET,
            &format!("/v1/customers?limit=2&ending_before={}", ids[2]),
            None,
        )
        .await;
    assert_eq!(ids_of(&back), [ids[4].clone(), ids[3].clone()]);
    assert_eq!(back["has_more"], false);
    // Back from the oldest with a short limit: the one just newer, and more beyond it.
    let back = shop
        .ok(
            Method::GET,
            &format!("/v1/customers?limit=1&ending_before={}", ids[0]),
            None,
        )
        .await;
    assert_eq!(ids_of(&back), [ids[1].clone()]);
    assert_eq!(back["has_more"], true);
    // Both cursors at once, or a cursor of another list's type, are refused by name.
    let (status, body) = shop
        .call(
            Method::GET,
            &format!(
                "/v1/customers?starting_after={}&ending_before={}",
                ids[3], ids[1]
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "ending_before");
    let (status, body) = shop
        .call(
            Method::GET,
            "/v1/invoices?ending_before=cus_0000000000000000000000000",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "ending_before");
}

/// "Charges refuse `metadata`": charges and refunds keep it, by the invoice's rules, and a bad
/// one changes nothing.
#[tokio::test]
async fn charges_and_refunds_keep_metadata() {
    let shop = Shop::open().await;
    let customer = shop.customer("meta").await;
    shop.ok(
        Method::POST,
        &format!("/v1/test/customers/{customer}/top_up"),
        Some(json!({"amount": 50, "currency": "XTR"})),
    )
    .await;
    let charge = shop
        .ok(
            Method::POST,
            "/v1/charges",
            Some(
                json!({"customer": customer, "amount": 10, "currency": "XTR",
                "metadata": {"generation": "gen_42"}}),
            ),
        )
        .await;
    assert_eq!(charge["metadata"], json!({"generation": "gen_42"}));
    let id = charge["id"].as_str().expect("id");
    let fetched = shop
        .ok(Method::GET, &format!("/v1/charges/{id}"), None)
        .await;
    assert_eq!(fetched["metadata"], json!({"generation": "gen_42"}));
    // Without metadata: an empty object, not null.
    let plain = shop
        .ok(
            Method::POST,
            "/v1/charges",
            Some(json!({"customer": customer, "amount": 1, "currency": "XTR"})),
        )
        .await;
    assert_eq!(plain["metadata"], json!({}));

    let refund = shop
        .ok(
            Method::POST,
            "/v1/refunds",
            Some(json!({"charge": id, "amount": 4, "metadata": {"ticket": "T-7"}})),
        )
        .await;
    assert_eq!(refund["metadata"], json!({"ticket": "T-7"}));
    let listed = shop
        .ok(
            Method::GET,
            &format!("/v1/refunds?customer={customer}"),
            None,
        )
        .await;
    assert_eq!(listed["data"][0]["metadata"], json!({"ticket": "T-7"}));
    assert_eq!(shop.available(&customer, "XTR").await, 50 - 10 - 1 + 4);

    // Bad metadata: 400 naming the key, and neither money nor objects move.
    for (path, body) in [
        (
            "/v1/charges",
            json!({"customer": customer, "amount": 5, "currency": "XTR", "metadata": {"n": 1}}),
        ),
        (
            "/v1/refunds",
            json!({"charge": id, "amount": 1, "metadata": {"": "empty key"}}),
        ),
    ] {
        let (status, error) = shop.call(Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {error}");
        assert_eq!(
            error["error"]["code"], "invalid_metadata",
            "{path}: {error}"
        );
    }
    assert_eq!(shop.available(&customer, "XTR").await, 43);
    let charges = shop.ok(Method::GET, "/v1/charges", None).await;
    assert_eq!(charges["data"].as_array().expect("list").len(), 2);
}

/// "The checkout page": no return link, no terms or contact, a dead end for a balance-only
/// invoice in a browser.
#[tokio::test]
async fn the_checkout_leads_back_to_the_shop_and_never_into_a_dead_end() {
    let shop = Shop::open().await;
    // A bad return link is refused by name; nothing is created.
    for bad in [
        "javascript:alert(1)",
        "/orders/42",
        "https://user:pw@shop.example/",
        "ftp://shop.example/",
    ] {
        let (status, body) = shop
            .call(
                Method::POST,
                "/v1/invoices",
                Some(json!({"amount": 5, "currency": "XTR", "return_url": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_return_url", "{bad}");
        assert_eq!(body["error"]["param"], "return_url");
    }
    let list = shop.ok(Method::GET, "/v1/invoices", None).await;
    assert_eq!(list["data"], json!([]));

    shop.ok(
        Method::PUT,
        "/v1/settings",
        Some(json!({"terms": "Delivered at once.", "contacts": "@shop_support"})),
    )
    .await;
    let invoice = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 5, "currency": "XTR",
                "return_url": "https://shop.example/orders/42"})),
        )
        .await;
    assert_eq!(invoice["return_url"], "https://shop.example/orders/42");
    let id = invoice["id"].as_str().expect("id");
    let url = invoice["checkout_url"].as_str().expect("url").to_owned();
    let page = || async {
        shop.server
            .client
            .get(&url)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html")
    };
    let open = page().await;
    assert!(open
        .contains("href=\"https://shop.example/orders/42\" rel=\"noopener noreferrer\" hidden>"));
    assert!(open.contains("Delivered at once."));
    assert!(open.contains("@shop_support"));
    shop.ok(
        Method::POST,
        &format!("/v1/test/invoices/{id}/pay"),
        Some(json!({"rail": "sandbox"})),
    )
    .await;
    let paid = page().await;
    assert!(paid.contains(
        "href=\"https://shop.example/orders/42\" rel=\"noopener noreferrer\">Back to the shop</a>"
    ));

    // Live, balance only, no bot: refused at creation, saying why and what to do.
    let live = shop.server.merchant("Live shop").await.live_key;
    let response = shop
        .server
        .client
        .post(format!("{}/v1/invoices", shop.server.base))
        .bearer_auth(&live)
        .json(&json!({"amount": 5, "currency": "XTR", "rails": ["balance"]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invoice_not_payable", "{body}");
    assert_eq!(body["error"]["param"], "rails");
    shop.server.running.shutdown().await;
}

/// "Keys": a key is rolled with a grace period the merchant chooses; the old one works until
/// then (the clock is moved, not slept through) and the new one has its scopes.
#[tokio::test]
async fn a_rolled_key_works_through_its_grace_period_and_then_stops() {
    let server = server::spawn_with_clock(|_| {}, farthing_app::Clock::manual()).await;
    let owner = server.merchant("Roll shop").await.test_key;
    let post = |key: &str, path: &str, body: Value| {
        let request = server
            .client
            .post(format!("{}{path}", server.base))
            .bearer_auth(key)
            .json(&body);
        async move {
            let response = request.send().await.expect("answer");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let status_with = |key: &str| {
        let request = server
            .client
            .get(format!("{}/v1/customers", server.base))
            .bearer_auth(key);
        async move { request.send().await.expect("answer").status() }
    };
    let (_, made) = post(
        &owner,
        "/v1/api_keys",
        json!({"scopes": ["customers:read"]}),
    )
    .await;
    let old = made["secret"].as_str().expect("secret").to_owned();
    let old_id = made["id"].as_str().expect("id").to_owned();
    // Warm the key cache: the grace period must end even for a cached key.
    assert_eq!(status_with(&old).await, StatusCode::OK);

    let (status, body) = post(
        &owner,
        &format!("/v1/api_keys/{old_id}/roll"),
        json!({"expires_in": 604_801}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "expires_in");

    let (status, rolled) = post(
        &owner,
        &format!("/v1/api_keys/{old_id}/roll"),
        json!({"expires_in": 3600}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rolled}");
    let new = rolled["secret"]
        .as_str()
        .expect("the new key, once")
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(rolled["scopes"], json!(["customers:read"]));
    assert_eq!(status_with(&new).await, StatusCode::OK);
    assert_eq!(
        status_with(&old).await,
        StatusCode::OK,
        "in its grace period"
    );

    server.clock.advance(std::time::Duration::from_secs(3599));
    assert_eq!(status_with(&old).await, StatusCode::OK);
    server.clock.advance(std::time::Duration::from_secs(2));
    assert_eq!(status_with(&old).await, StatusCode::UNAUTHORIZED, "past it");
    assert_eq!(status_with(&new).await, StatusCode::OK);

    // Rolling the expired key again is refused; the new one rolls at once by default.
    let (status, body) = post(&owner, &format!("/v1/api_keys/{old_id}/roll"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let new_id = rolled["id"].as_str().expect("id").to_owned();
    let (status, newest) = post(&owner, &format!("/v1/api_keys/{new_id}/roll"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{newest}");
    assert_eq!(status_with(&new).await, StatusCode::UNAUTHORIZED);
    let newest = newest["secret"].as_str().expect("secret").to_owned();
    assert_eq!(status_with(&newest).await, StatusCode::OK);

    // Both rolls are in the audit log.
    let log = server
        .client
        .get(format!("{}/v1/audit_log", server.base))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("answer")
        .json::<Value>()
        .await
        .expect("json");
    let rolls = log["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|entry| entry.to_string().contains("/roll"))
        .count();
    assert!(rolls >= 3, "{log}");
    server.running.shutdown().await;
}

/// "No per-customer statement": every credit and debit with its object and the balance after
/// it, newest first, paged both ways, per currency.
#[tokio::test]
async fn a_customer_statement_lists_every_movement_with_the_balance_after_it() {
    let shop = Shop::open().await;
    let customer = shop.customer("stmt").await;
    let empty = shop
        .ok(
            Method::GET,
            &format!("/v1/customers/{customer}/statement"),
            None,
        )
        .await;
    assert_eq!(empty["data"], json!([]));
    // A top-up invoice paid in the sandbox, two charges, a refund of one, and an invoice paid
    // from the balance.
    let top_up = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 100, "currency": "XTR", "top_up": true, "customer": customer})),
        )
        .await;
    let top_up = top_up["id"].as_str().expect("id").to_owned();
    shop.ok(
        Method::POST,
        &format!("/v1/test/invoices/{top_up}/pay"),
        Some(json!({"rail": "sandbox"})),
    )
    .await;
    let mut charges = Vec::new();
    for amount in [30, 20] {
        let charge = shop
            .ok(
                Method::POST,
                "/v1/charges",
                Some(json!({"customer": customer, "amount": amount, "currency": "XTR"})),
            )
            .await;
        charges.push(charge["id"].as_str().expect("id").to_owned());
    }
    let refund = shop
        .ok(
            Method::POST,
            "/v1/refunds",
            Some(json!({"charge": charges[0], "amount": 10})),
        )
        .await;
    let invoice = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"amount": 15, "currency": "XTR", "customer": customer})),
        )
        .await;
    let invoice = invoice["id"].as_str().expect("id").to_owned();
    shop.ok(
        Method::POST,
        &format!("/v1/test/invoices/{invoice}/pay"),
        Some(json!({"rail": "balance", "customer": customer})),
    )
    .await;

    let all = shop
        .ok(
            Method::GET,
            &format!("/v1/customers/{customer}/statement?limit=100"),
            None,
        )
        .await;
    let rows: Vec<(String, i64, i64, Value)> = all["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type").to_owned(),
                e["amount"].as_i64().expect("amount"),
                e["balance_after"].as_i64().expect("balance"),
                e["source"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("payment".to_owned(), -15, 45, json!(invoice)),
            ("refund".to_owned(), 10, 60, refund["id"].clone()),
            ("charge".to_owned(), -20, 50, json!(charges[1])),
            ("charge".to_owned(), -30, 70, json!(charges[0])),
            ("top_up".to_owned(), 100, 100, json!(top_up)),
        ],
        "{all}"
    );
    assert_eq!(shop.available(&customer, "XTR").await, 45);

    // Paged: two, then the rest after the cursor, then back.
    let first = shop
        .ok(
            Method::GET,
            &format!("/v1/customers/{customer}/statement?limit=2"),
            None,
        )
        .await;
    assert_eq!(first["has_more"], true);
    let cursor = first["data"][1]["id"].as_str().expect("id").to_owned();
    let rest = shop
        .ok(
            Method::GET,
            &format!("/v1/customers/{customer}/statement?limit=10&starting_after={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["data"].as_array().expect("list").len(), 3);
    assert_eq!(rest["data"][0]["type"], "charge");
    assert_eq!(rest["has_more"], false);
    let oldest_of_rest = rest["data"][0]["id"].as_str().expect("id").to_owned();
    let back = shop
        .ok(
            Method::GET,
            &format!("/v1/customers/{customer}/statement?ending_before={oldest_of_rest}"),
            None,
        )
        .await;
    assert_eq!(back["data"], first["data"]);

    // A second currency: the customer's balance must then be named.
    shop.ok(
        Method::POST,
        &format!("/v1/test/customers/{customer}/top_up"),
        Some(json!({"amount": 500, "currency": "USD"})),
    )
    .await;
    let (status, body) = shop
        .call(
            Method::GET,
            &format!("/v1/customers/{customer}/statement"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "currency_required");
    let usd = shop
        .ok(
            Method::GET,
            &format!("/v1/customers/{customer}/statement?currency=USD"),
            None,
        )
        .await;
    assert_eq!(usd["data"][0]["amount"], 500);
    assert_eq!(
        usd["data"][0]["source"],
        Value::Null,
        "a sandbox top-up has no invoice"
    );
    // Another balance's cursor is refused by name.
    let (status, body) = shop
        .call(
            Method::GET,
            &format!("/v1/customers/{customer}/statement?currency=USD&starting_after={cursor}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "starting_after");
}

/// A merchant the store cannot take is refused as the server's trouble (503, to be tried again),
/// not as a bad name, and its Idempotency-Key is let go: the retry is answered the same way,
/// not as a key in use.
#[tokio::test]
async fn a_merchant_the_store_cannot_take_is_refused_as_unavailable() {
    let (admin, hash) = farthing_server::http::admin::generate_admin_key().expect("key");
    let server = server::spawn(move |config| config.admin_key_sha256 = hash).await;
    let state = server.running.state();
    let test = state.store(farthing_server::state::Mode::Test).clone();
    tokio::task::spawn_blocking(move || test.shutdown())
        .await
        .expect("join");
    for attempt in 0..2 {
        let answer = server
            .client
            .post(format!("{}/v1/admin/merchants", server.base))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "add-while-closed")
            .json(&json!({"name": "Closed shop"}))
            .send()
            .await
            .expect("answer");
        let status = answer.status();
        let body: Value = answer.json().await.expect("json");
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "attempt {attempt}: {body}"
        );
        assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
    }
    let live = state.store(farthing_server::state::Mode::Live).clone();
    let names = tokio::task::spawn_blocking(move || {
        live.read(|reader| reader.merchants(farthing_store::PageRequest::newest(100)))
            .expect("read")
            .data
            .into_iter()
            .map(|merchant| merchant.name)
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    assert!(!names.contains(&"Closed shop".to_owned()), "{names:?}");
    server.running.shutdown().await;
}

/// "Keys and merchants while running": the operator adds a merchant through the admin API
/// (off unless configured), its keys work at once, a repeated Idempotency-Key creates nothing.
#[tokio::test]
async fn the_operator_adds_merchants_while_the_server_runs() {
    let off = server::spawn(|_| {}).await;
    let answer = off
        .client
        .post(format!("{}/v1/admin/merchants", off.base))
        .bearer_auth("fa_admin_anything")
        .json(&json!({"name": "Shop"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    off.running.shutdown().await;

    let (admin, hash) = farthing_server::http::admin::generate_admin_key().expect("key");
    let server = server::spawn(move |config| config.admin_key_sha256 = hash).await;
    let merchant_key = server.merchant("Existing").await.test_key;
    let add = |key: &str, body: Value, idempotency: Option<&str>| {
        let mut request = server
            .client
            .post(format!("{}/v1/admin/merchants", server.base))
            .bearer_auth(key)
            .json(&body);
        if let Some(idempotency) = idempotency {
            request = request.header("Idempotency-Key", idempotency);
        }
        async move {
            let response = request.send().await.expect("answer");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for key in [merchant_key.as_str(), "fa_admin_wrong", ""] {
        let (status, body) = add(key, json!({"name": "Shop"}), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}: {body}");
    }
    let (status, body) = add(&admin, json!({"name": "  "}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "name");

    let (status, added) = add(&admin, json!({"name": "New shop"}), Some("add-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let key = added["test_key"].as_str().expect("test key").to_owned();
    let customers = server
        .client
        .get(format!("{}/v1/customers", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("answer");
    assert_eq!(
        customers.status(),
        StatusCode::OK,
        "the new key works at once"
    );
    // The same key again: nothing new, and the keys are not shown twice.
    let (status, again) = add(&admin, json!({"name": "New shop"}), Some("add-1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "secret_already_shown");
    assert!(again["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains(added["id"].as_str().expect("id"))));
    let (status, other) = add(&admin, json!({"name": "Other"}), Some("add-1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
    let listed = server
        .client
        .get(format!("{}/v1/admin/merchants?limit=100", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("answer")
        .json::<Value>()
        .await
        .expect("json");
    let mut names: Vec<&str> = listed["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    // (Newest first by id; two made within one millisecond may list either way.)
    names.sort_unstable();
    assert_eq!(names, ["Existing", "New shop"], "{listed}");
    server.running.shutdown().await;
}

/// A new key's secret is shown once: a replay under the same Idempotency-Key answers the key
/// without it, and the stored answer (the idempotency table) never holds it in clear.
#[tokio::test]
async fn a_new_keys_secret_is_never_stored_for_replays() {
    let shop = Shop::open().await;
    let create = || {
        shop.server
            .client
            .post(format!("{}/v1/api_keys", shop.server.base))
            .bearer_auth(&shop.key)
            .header("Idempotency-Key", "new-key-1")
            .json(&json!({"scopes": ["customers:read"]}))
            .send()
    };
    let first = create().await.expect("answer");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    let secret = first["secret"].as_str().expect("shown once").to_owned();
    let again = create().await.expect("answer");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    assert!(again.get("secret").is_none(), "{again}");
    // Nowhere in the database in clear.
    let database = shop.server.running.state().config().database.clone();
    shop.server.running.shutdown().await;
    let bytes = server::test_database_bytes(&shop.server.dir, &database);
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is stored in clear"
    );
}

/// An amountless invoice shows its suggested amounts on the checkout page, and the one chosen
/// is what the sandbox pays; an amount outside the bounds is refused and pays nothing.
#[tokio::test]
async fn an_amountless_invoice_is_paid_with_the_amount_chosen() {
    let shop = Shop::open().await;
    let invoice = shop
        .ok(
            Method::POST,
            "/v1/invoices",
            Some(json!({"currency": "XTR", "amount_min": 5, "amount_max": 100, "amount_presets": [5, 10, 25]})),
        )
        .await;
    let id = invoice["id"].as_str().expect("id").to_owned();
    let url = invoice["checkout_url"].as_str().expect("url").to_owned();
    let html = shop
        .server
        .client
        .get(&url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("data-minor=\"10\" aria-pressed=\"false\">10 Stars</button>"),
        "{html}"
    );
    let press = |amount: &str| {
        let request = shop
            .server
            .client
            .post(format!("{url}/sandbox?amount={amount}"));
        async move { request.send().await.expect("answer") }
    };
    for bad in ["1000", "4", "ten"] {
        let answer = press(bad).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let answer = press("10").await;
    assert_eq!(answer.status(), StatusCode::OK);
    let paid = shop
        .ok(Method::GET, &format!("/v1/invoices/{id}"), None)
        .await;
    assert_eq!(paid["amount_paid"], 10, "{paid}");
}

/// A merchant is made in the live and the test database; when the second cannot be written,
/// the first is undone, so no merchant exists in one mode only.
#[tokio::test]
async fn a_merchant_is_never_half_created() {
    let server = server::spawn(|_| {}).await;
    let (live, test) = (
        server
            .running
            .state()
            .store(farthing_server::state::Mode::Live)
            .clone(),
        server
            .running
            .state()
            .store(farthing_server::state::Mode::Test)
            .clone(),
    );
    let names = |store: &farthing_store::Store| {
        store
            .read(|reader| reader.merchants(farthing_store::PageRequest::newest(100)))
            .expect("read")
            .data
            .into_iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
    };
    let made = tokio::task::spawn_blocking(move || {
        test.shutdown();
        let made = farthing_server::create_merchant(&live, &test, "Half");
        (made, names(&live))
    })
    .await
    .expect("join");
    assert!(made.0.is_err(), "the test database was closed");
    assert!(!made.1.contains(&"Half".to_owned()), "{:?}", made.1);
    server.running.shutdown().await;
}

/// The live database fails after the test one took the merchant: the test one is undone.
#[tokio::test]
async fn a_merchant_the_live_database_refuses_is_undone_in_test_mode() {
    let server = server::spawn(|_| {}).await;
    let state = server.running.state();
    let live = state.store(farthing_server::state::Mode::Live).clone();
    let test = state.store(farthing_server::state::Mode::Test).clone();
    let (made, names) = tokio::task::spawn_blocking(move || {
        live.shutdown();
        let made = farthing_server::create_merchant(&live, &test, "Half live");
        let names: Vec<String> = test
            .read(|reader| reader.merchants(farthing_store::PageRequest::newest(100)))
            .expect("read")
            .data
            .into_iter()
            .map(|merchant| merchant.name)
            .collect();
        (made, names)
    })
    .await
    .expect("join");
    assert!(made.is_err(), "the live database was closed");
    assert!(!names.contains(&"Half live".to_owned()), "{names:?}");
    server.running.shutdown().await;
}

/// A merchant creation whose server died half way (its Idempotency-Key reserved, the merchant
/// planned and made in test mode only) is finished by the retry once the reservation is
/// abandoned: the merchant planned is made, once, with new keys (the test key made before the
/// crash was never shown, and no longer works), and the key's record names it.
#[tokio::test]
async fn a_creation_retried_after_a_crash_makes_the_planned_merchant_once() {
    use farthing_core::{MerchantId, PublicId};
    use farthing_server::state::Mode;
    use sha2::{Digest, Sha256};
    let (admin, hash) = farthing_server::http::admin::generate_admin_key().expect("key");
    let server = server::spawn(move |config| config.admin_key_sha256 = hash).await;
    let state = server.running.state();
    let body = r#"{"name":"Crashed shop"}"#;
    let planned = MerchantId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    let lost_key =
        farthing_server::http::auth::generate_key(farthing_server::state::Mode::Test).expect("key");
    // What the crashed request left: its reservation, six minutes old, and the test side.
    let fingerprint = Sha256::digest(body.as_bytes()).to_vec();
    state
        .store(Mode::Live)
        .run(move |tx| {
            let reservation = json!({
                "id": null,
                "planned": planned.encode(),
                "reserved_at_ns": tx.now_ns() - 360_000_000_000,
            })
            .to_string();
            tx.insert_idempotency_key(MerchantId(0), "crashed", &fingerprint, 202, &reservation)
        })
        .await
        .expect("queued")
        .expect("stored");
    let lost = farthing_store::ApiKeyRecord {
        key_hash: farthing_server::http::auth::hash_key(&lost_key),
        merchant: planned,
        scopes: vec!["*".to_owned()],
        hint: farthing_server::http::auth::key_hint(&lost_key),
        revoked_at_ns: None,
    };
    state
        .store(Mode::Test)
        .run(move |tx| {
            let created_at_ns = tx.now_ns();
            tx.insert_merchant(&farthing_store::Merchant {
                id: planned,
                name: "Crashed shop".to_owned(),
                created_at_ns,
            })?;
            tx.insert_api_key(&lost)
        })
        .await
        .expect("queued")
        .expect("stored");

    let create = || {
        server
            .client
            .post(format!("{}/v1/admin/merchants", server.base))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "crashed")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let answer = create().await.expect("answer");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let made: Value = answer.json().await.expect("json");
    assert_eq!(made["id"], planned.encode(), "{made}");
    let works = |key: String| {
        let request = server
            .client
            .get(format!("{}/v1/customers", server.base))
            .bearer_auth(key)
            .send();
        async move { request.await.expect("answer").status() }
    };
    let test_key = made["test_key"].as_str().expect("test key").to_owned();
    let live_key = made["live_key"].as_str().expect("live key").to_owned();
    assert_eq!(works(test_key).await, StatusCode::OK);
    assert_eq!(works(live_key).await, StatusCode::OK);
    assert_eq!(works(lost_key).await, StatusCode::UNAUTHORIZED);

    // Again with the same key: the record names the merchant, and nothing more is made.
    let again = create().await.expect("answer");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let again: Value = again.json().await.expect("json");
    assert!(
        again.to_string().contains(&planned.encode()),
        "the answer names the merchant: {again}"
    );
    for mode in [Mode::Live, Mode::Test] {
        let store = state.store(mode).clone();
        let named = tokio::task::spawn_blocking(move || {
            store
                .read(|reader| reader.merchants(farthing_store::PageRequest::newest(100)))
                .expect("read")
                .data
                .into_iter()
                .filter(|merchant| merchant.name == "Crashed shop")
                .map(|merchant| merchant.id)
                .collect::<Vec<_>>()
        })
        .await
        .expect("join");
        assert_eq!(named, [planned], "{mode:?}");
    }
    server.running.shutdown().await;
}

/// A second server on an SQLite database a running one serves refuses to start and says why
/// (the file's lock); once the first stopped, it starts. On PostgreSQL it starts beside the
/// first, which keeps leading the background work until it stops (`instances.rs` tests the two
/// serving together).
#[tokio::test]
async fn a_second_server_on_the_same_database_waits_its_turn() {
    let first = server::spawn(|_| {}).await;
    let config = server::config(&first.dir);
    config.validate().expect("valid");
    if server::postgres_server().is_some() {
        let second = farthing_server::start(config)
            .await
            .expect("a second instance starts on PostgreSQL");
        assert!(first.running.leads(), "the first keeps leading");
        assert!(!second.leads(), "the second follows");
        first.running.shutdown().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !second.leads() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(second.leads(), "the second leads once the first stopped");
        second.shutdown().await;
        return;
    }
    let refused = farthing_server::start(config.clone())
        .await
        .err()
        .expect("the second server is refused");
    let message = refused.to_string();
    assert!(message.contains("another farthing process"), "{message}");
    first.running.shutdown().await;
    let second = farthing_server::start(config)
        .await
        .expect("starts once the first stopped");
    second.shutdown().await;
}
