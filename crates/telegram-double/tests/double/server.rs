//! The double over HTTP, as farthing's Telegram client will see it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use telegram_double::{fixtures, Failure, TelegramDouble, ViolationKind};

const WAIT: Duration = Duration::from_secs(5);

struct Bot {
    double: TelegramDouble,
    http: reqwest::Client,
}

async fn spawn_double() -> Bot {
    let double = TelegramDouble::spawn().await.expect("the double starts");
    Bot {
        double,
        http: reqwest::Client::new(),
    }
}

impl Bot {
    fn url(&self, method: &str) -> String {
        format!(
            "{}/bot{}/{method}",
            self.double.base_url(),
            self.double.token()
        )
    }

    async fn read(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("a body");
        let value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "the double answers JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, value)
    }

    async fn call(&self, method: &str, params: Value) -> (u16, Value) {
        self.call_url(&self.url(method), params).await
    }

    async fn call_url(&self, url: &str, params: Value) -> (u16, Value) {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(params.to_string())
            .send()
            .await
            .expect("the double answers");
        Bot::read(response).await
    }

    async fn call_form(&self, method: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let response = self
            .http
            .post(self.url(method))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("the double answers");
        Bot::read(response).await
    }

    async fn call_get(&self, method: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let response = self
            .http
            .get(format!("{}?{query}", self.url(method)))
            .send()
            .await
            .expect("the double answers");
        Bot::read(response).await
    }

    async fn ok(&self, method: &str, params: Value) -> Value {
        let (status, body) = self.call(method, params).await;
        assert_eq!(status, 200, "{method}: {body}");
        assert_eq!(body["ok"], true, "{body}");
        body["result"].clone()
    }

    async fn update_ids(&self, params: Value) -> Vec<i64> {
        let result = self.ok("getUpdates", params).await;
        result
            .as_array()
            .expect("an array of updates")
            .iter()
            .map(|u| u["update_id"].as_i64().expect("an update_id"))
            .collect()
    }
}

fn alice() -> Value {
    fixtures::user(42, "Alice", "en")
}

fn stars_invoice(chat_id: i64) -> Value {
    json!({
        "chat_id": chat_id, "title": "Coffee", "description": "One cup", "payload": "inv_1",
        "currency": "XTR", "prices": [{"label": "Coffee", "amount": 5}],
        "reply_markup": {"inline_keyboard": [[{"text": "Pay ⭐5", "pay": true}]]},
    })
}

#[tokio::test]
async fn records_calls_and_answers_a_payment_bot() {
    let bot = spawn_double().await;
    let me = bot.ok("getMe", json!({})).await;
    assert_eq!(me, bot.double.bot_user());
    assert_eq!(me["id"], 123_456_789, "the bot id is the token's prefix");

    let link = bot
        .ok("createInvoiceLink", json!({"title": "Coffee", "description": "One cup", "payload": "inv_1",
            "currency": "XTR", "prices": [{"label": "Coffee", "amount": 5}], "subscription_period": 2_592_000}))
        .await;
    let link = link.as_str().expect("a link");
    assert!(
        link.starts_with("https://t.me/$") && link.len() > 20,
        "{link}"
    );
    let other = bot
        .ok(
            "createInvoiceLink",
            json!({"title": "Tea", "description": "One cup", "payload": "inv_2",
            "currency": "XTR", "prices": [{"label": "Tea", "amount": 3}]}),
        )
        .await;
    assert_ne!(other.as_str(), Some(link), "each link is new");

    let first = bot.ok("sendInvoice", stars_invoice(42)).await;
    let second = bot
        .ok("sendMessage", json!({"chat_id": "42", "text": "Thanks!"}))
        .await;
    assert_eq!(
        second["chat"]["id"], 42,
        "a chat id may come as a string of digits"
    );
    assert_eq!(first["invoice"]["total_amount"], 5);
    assert_eq!(first["chat"]["id"], 42);
    assert!(second["message_id"].as_i64() > first["message_id"].as_i64());
    assert_eq!(
        bot.ok(
            "answerPreCheckoutQuery",
            json!({"pre_checkout_query_id": "q1", "ok": true})
        )
        .await,
        true
    );
    assert_eq!(
        bot.ok("answerCallbackQuery", json!({"callback_query_id": "cb1"}))
            .await,
        true
    );
    assert_eq!(
        bot.ok(
            "editUserStarSubscription",
            json!({"user_id": 42, "telegram_payment_charge_id": "ch", "is_canceled": true})
        )
        .await,
        true
    );

    let calls = bot.double.calls();
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "getMe",
            "createInvoiceLink",
            "createInvoiceLink",
            "sendInvoice",
            "sendMessage",
            "answerPreCheckoutQuery",
            "answerCallbackQuery",
            "editUserStarSubscription"
        ]
    );
    assert!(calls
        .iter()
        .all(|c| c.token_ok && c.answer.as_ref().is_some_and(|a| a.status == 200)));
    assert_eq!(calls[1].param_i64("subscription_period"), Some(2_592_000));
    assert_eq!(calls[1].result().and_then(Value::as_str), Some(link));
    assert!(calls.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(bot.double.calls_to("createInvoiceLink").len(), 2);
    bot.double.assert_no_violations();
}

#[tokio::test]
async fn a_wrong_token_gets_telegrams_401() {
    let bot = spawn_double().await;
    let url = format!("{}/bot123456789:wrong/getMe", bot.double.base_url());
    let (status, body) = bot.call_url(&url, json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    let calls = bot.double.calls();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].token_ok);
    let url = format!("{}/123456789:no-bot-prefix/getMe", bot.double.base_url());
    assert_eq!(bot.call_url(&url, json!({})).await.0, 404);
    bot.double.assert_no_violations();
}

#[tokio::test]
async fn spec_violations_are_refused_and_kept() {
    let bot = spawn_double().await;
    let (status, body) = bot
        .call(
            "createInvoiceLink",
            json!({"title": "Coffee", "description": "One cup", "payload": "inv_1",
            "currency": "XTR", "prices": [{"label": "Coffee", "amount": "5"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["ok"], false);
    assert_eq!(body["error_code"], 400);
    let description = body["description"].as_str().expect("a description");
    assert!(
        description.starts_with("Bad Request: createInvoiceLink.prices[0].amount"),
        "{description}"
    );

    let (status, body) = bot.call("sendInvoices", json!({})).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"ok": false, "error_code": 404, "description": "Not Found"})
        )
    );

    let (status, _) = bot
        .call(
            "answerPreCheckoutQuery",
            json!({"pre_checkout_query_id": "q", "ok": false}),
        )
        .await;
    assert_eq!(status, 400, "error_message is required when ok is false");

    let violations = bot.double.violations();
    let kinds: Vec<ViolationKind> = violations.iter().map(|v| v.violations[0].kind).collect();
    assert_eq!(
        kinds,
        [
            ViolationKind::WrongType,
            ViolationKind::UnknownMethod,
            ViolationKind::BrokenRule
        ]
    );
    assert_eq!(violations[0].call_seq, 0);
    let outcome = std::panic::catch_unwind(|| bot.double.assert_no_violations());
    assert!(
        outcome.is_err(),
        "assert_no_violations must fail after violations"
    );
}

#[tokio::test]
async fn form_bodies_and_query_strings_are_accepted_and_typed() {
    let bot = spawn_double().await;
    let (status, body) = bot
        .call_form(
            "createInvoiceLink",
            &[
                ("title", "Coffee"),
                ("description", "One cup"),
                ("payload", "inv_1"),
                ("currency", "XTR"),
                ("prices", r#"[{"label":"Coffee","amount":5}]"#),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bot
        .call_get("sendMessage", &[("chat_id", "42"), ("text", "hi")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["text"], "hi");
    let (status, _) = bot
        .call_form(
            "refundStarPayment",
            &[
                ("user_id", "forty-two"),
                ("telegram_payment_charge_id", "c"),
            ],
        )
        .await;
    assert_eq!(status, 400);

    let calls = bot.double.calls();
    assert_eq!(
        calls[0].raw_params["prices"],
        json!(r#"[{"label":"Coffee","amount":5}]"#)
    );
    assert_eq!(calls[0].params["prices"][0]["amount"], 5);
    assert_eq!(calls[1].http_method, "GET");
    assert_eq!(calls[1].param_i64("chat_id"), Some(42));
    assert_eq!(bot.double.violations().len(), 1);
    assert_eq!(
        bot.double.violations()[0].violations[0].path,
        "refundStarPayment.user_id"
    );
}

#[tokio::test]
async fn get_updates_follows_offset_semantics() {
    let bot = spawn_double().await;
    let ids: Vec<i64> = (1..=3)
        .map(|i| {
            bot.double.inject_update(fixtures::text_message_update(
                i,
                1_700_000_000,
                &alice(),
                "/start",
            ))
        })
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(bot.update_ids(json!({})).await, [1, 2, 3]);
    assert_eq!(
        bot.update_ids(json!({})).await,
        [1, 2, 3],
        "unconfirmed updates come again"
    );
    assert_eq!(bot.update_ids(json!({"limit": 2})).await, [1, 2]);
    assert_eq!(bot.update_ids(json!({"offset": 3})).await, [3]);
    assert_eq!(bot.double.pending_updates().len(), 1);
    assert_eq!(
        bot.update_ids(json!({"offset": 4})).await,
        Vec::<i64>::new()
    );
    for i in 4..=6 {
        bot.double.inject_update(fixtures::text_message_update(
            i,
            1_700_000_000,
            &alice(),
            "hi",
        ));
    }
    assert_eq!(
        bot.update_ids(json!({"offset": -1})).await,
        [6],
        "a negative offset keeps the last ones"
    );
    assert_eq!(bot.update_ids(json!({})).await, [6]);
    bot.double.assert_no_violations();
}

#[tokio::test]
async fn get_updates_waits_for_timeout_and_wakes_on_an_update() {
    let bot = spawn_double().await;
    let started = Instant::now();
    assert!(bot.update_ids(json!({"timeout": 1})).await.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    let double = bot.double.clone();
    let injector = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        double.inject_update(fixtures::pre_checkout_query_update(
            "q1",
            &alice(),
            "XTR",
            5,
            "inv_1",
        ))
    });
    let started = Instant::now();
    let ids = bot.update_ids(json!({"timeout": 10})).await;
    assert_eq!(ids, [injector.await.expect("injected")]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the long poll ended on the update"
    );
    bot.double.assert_no_violations();
}

#[tokio::test]
async fn a_second_poller_or_a_webhook_conflicts() {
    let bot = spawn_double().await;
    let url = bot.url("getUpdates");
    let http = bot.http.clone();
    let first = tokio::spawn(async move {
        let response = http
            .post(url)
            .header("content-type", "application/json")
            .body(json!({"timeout": 10}).to_string())
            .send()
            .await
            .expect("answered");
        Bot::read(response).await
    });
    bot.double
        .wait_until("the first long poll", WAIT, |calls| {
            calls.iter().any(|c| c.method == "getUpdates").then_some(())
        })
        .await
        .expect("the first poll arrives");
    assert!(bot.update_ids(json!({})).await.is_empty());
    let (status, body) = first.await.expect("the first poll ends");
    assert_eq!(status, 409, "{body}");
    assert!(body["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("Conflict: terminated by other getUpdates")));

    let hook = "https://farthing.example/telegram/123456789/webhook";
    bot.ok("setWebhook", json!({"url": hook, "secret_token": "s3cret", "allowed_updates": ["message", "pre_checkout_query"]}))
        .await;
    assert_eq!(
        bot.double.webhook().map(|w| w.secret_token),
        Some(Some("s3cret".to_owned()))
    );
    let info = bot.ok("getWebhookInfo", json!({})).await;
    assert_eq!(info["url"], hook);
    assert_eq!(bot.call("getUpdates", json!({})).await.0, 409);
    bot.ok("deleteWebhook", json!({"drop_pending_updates": true}))
        .await;
    assert_eq!(bot.ok("getWebhookInfo", json!({})).await["url"], "");
    assert!(bot.update_ids(json!({})).await.is_empty());
    bot.double.assert_no_violations();
}

#[tokio::test]
async fn allowed_updates_drop_what_the_bot_did_not_ask_for() {
    let bot = spawn_double().await;
    assert!(bot
        .update_ids(json!({"allowed_updates": ["message"]}))
        .await
        .is_empty());
    bot.double
        .inject_update(fixtures::pre_checkout_query_update(
            "q1",
            &alice(),
            "XTR",
            5,
            "inv_1",
        ));
    let kept = bot.double.inject_update(fixtures::text_message_update(
        1,
        1_700_000_000,
        &alice(),
        "hi",
    ));
    assert_eq!(bot.update_ids(json!({})).await, [kept]);
    assert_eq!(bot.double.filtered_updates().len(), 1);
    let error = bot
        .double
        .wait_for_call("answerPreCheckoutQuery", Duration::from_millis(100))
        .await
        .expect_err("nobody answers a query that was never delivered");
    assert!(
        error.to_string().contains("dropped by allowed_updates"),
        "{error}"
    );
}

#[tokio::test]
async fn star_transactions_are_paged() {
    let bot = spawn_double().await;
    let transactions: Vec<Value> = (0..250)
        .map(|i| {
            fixtures::star_payment(
                &format!("ch_{i}"),
                5,
                1_700_000_000 + i,
                42,
                &format!("inv_{i}"),
            )
        })
        .collect();
    bot.double.set_star_transactions(transactions);
    let page = |result: Value| -> Vec<String> {
        result["transactions"]
            .as_array()
            .expect("transactions")
            .iter()
            .map(|t| t["id"].as_str().expect("an id").to_owned())
            .collect()
    };
    let first = page(bot.ok("getStarTransactions", json!({})).await);
    assert_eq!(first.len(), 100);
    assert_eq!(first[0], "ch_0");
    assert_eq!(
        page(
            bot.ok("getStarTransactions", json!({"offset": 200, "limit": 100}))
                .await
        )
        .len(),
        50
    );
    assert_eq!(
        page(
            bot.ok("getStarTransactions", json!({"offset": 240, "limit": 3}))
                .await
        ),
        ["ch_240", "ch_241", "ch_242"]
    );
    assert!(page(bot.ok("getStarTransactions", json!({"offset": 250})).await).is_empty());
    bot.double.assert_no_violations();
}

#[tokio::test]
async fn programmed_failures_come_once_each() {
    let bot = spawn_double().await;
    bot.double
        .fail_next("sendMessage", Failure::TooManyRequests { retry_after_s: 3 });
    bot.double
        .fail_next("sendMessage", Failure::InternalServerError);
    let (status, body) = bot
        .call("sendMessage", json!({"chat_id": 42, "text": "hi"}))
        .await;
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3", "parameters": {"retry_after": 3}})
    );
    let (status, body) = bot
        .call("sendMessage", json!({"chat_id": 42, "text": "hi"}))
        .await;
    assert_eq!((status, body["error_code"].clone()), (500, json!(500)));
    assert_eq!(
        bot.call("sendMessage", json!({"chat_id": 42, "text": "hi"}))
            .await
            .0,
        200
    );

    bot.double.fail_next(
        "refundStarPayment",
        Failure::BadRequest("CHARGE_NOT_FOUND".into()),
    );
    let refund = json!({"user_id": 42, "telegram_payment_charge_id": "ch_1"});
    assert_eq!(
        bot.call("refundStarPayment", refund.clone()).await.1["description"],
        "Bad Request: CHARGE_NOT_FOUND"
    );
    assert_eq!(bot.ok("refundStarPayment", refund.clone()).await, true);
    let (status, body) = bot.call("refundStarPayment", refund).await;
    assert_eq!(
        (status, body["description"].clone()),
        (400, json!("Bad Request: CHARGE_ALREADY_REFUNDED"))
    );
    bot.double.assert_no_violations();
}

#[tokio::test]
async fn edits_behave_like_telegram() {
    let bot = spawn_double().await;
    let invoice = bot.ok("sendInvoice", stars_invoice(42)).await;
    let invoice_id = invoice["message_id"].as_i64().expect("an id");
    let (status, body) = bot
        .call(
            "editMessageText",
            json!({"chat_id": 42, "message_id": invoice_id, "text": "Paid"}),
        )
        .await;
    assert_eq!(status, 400, "an invoice has no text to edit: {body}");
    let paid = json!({"inline_keyboard": [[{"text": "Paid ✓", "callback_data": "noop"}]]});
    let edited = bot
        .ok(
            "editMessageReplyMarkup",
            json!({"chat_id": 42, "message_id": invoice_id, "reply_markup": paid}),
        )
        .await;
    assert_eq!(edited["message_id"], invoice_id);
    assert_eq!(edited["reply_markup"], paid);
    assert_eq!(
        bot.double
            .message(42, invoice_id)
            .map(|m| m["reply_markup"].clone()),
        Some(paid.clone())
    );

    let text = bot
        .ok("sendMessage", json!({"chat_id": 42, "text": "⏳ 15:00"}))
        .await;
    let text_id = text["message_id"].as_i64().expect("an id");
    let edit = json!({"chat_id": 42, "message_id": text_id, "text": "⏳ 14:00"});
    assert_eq!(
        bot.ok("editMessageText", edit.clone()).await["text"],
        "⏳ 14:00"
    );
    let (status, body) = bot.call("editMessageText", edit).await;
    assert_eq!(status, 400);
    assert!(
        body["description"]
            .as_str()
            .is_some_and(|d| d.contains("message is not modified")),
        "{body}"
    );
    let (status, _) = bot
        .call(
            "editMessageText",
            json!({"chat_id": 42, "message_id": 999, "text": "x"}),
        )
        .await;
    assert_eq!(status, 400, "message to edit not found");
    assert_eq!(
        bot.ok(
            "editMessageText",
            json!({"inline_message_id": "im1", "text": "x"})
        )
        .await,
        true
    );
    assert_eq!(bot.double.messages_in(42).len(), 2);
    bot.double.assert_no_violations();
}

#[tokio::test]
async fn waiting_for_a_call_returns_it_or_times_out() {
    let bot = spawn_double().await;
    let url = bot.url("answerPreCheckoutQuery");
    let http = bot.http.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        http.post(url)
            .header("content-type", "application/json")
            .body(json!({"pre_checkout_query_id": "q1", "ok": true}).to_string())
            .send()
            .await
    });
    let call = bot
        .double
        .wait_for_call("answerPreCheckoutQuery", WAIT)
        .await
        .expect("the answer arrives");
    assert_eq!(call.param_str("pre_checkout_query_id"), Some("q1"));
    assert_eq!(call.answer.map(|a| a.status), Some(200));
    let error = bot
        .double
        .wait_for_call("refundStarPayment", Duration::from_millis(100))
        .await
        .expect_err("nobody refunds");
    let message = error.to_string();
    assert!(
        message.contains("refundStarPayment") && message.contains("answerPreCheckoutQuery (200)"),
        "{message}"
    );
}
