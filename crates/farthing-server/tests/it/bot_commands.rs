//! The payment bot's account commands (SPEC T2–T3; issue 5 item 4) against `telegram-double`,
//! which checks every Bot API call farthing makes against the Bot API 10.1 spec.
//!
//! Covered: `GET`/`PUT /v1/settings` (defaults, limits, per mode); `/terms` (not set, then the
//! merchant's texts); `/balance` with its top-up buttons, a top-up paid and credited to the
//! payer's balance once (the merchant keeps nothing; the ledger audits clean); `/history`
//! (payment, charge and refund, newest first); `/subscriptions` with Cancel and Resume through
//! `editUserStarSubscription`; `/refund` → a refund request → approved (refund booked to the
//! balance, the user told, a second approval changes nothing) or declined (the user told);
//! `/remind on|off` and reminders: only for opted-in customers, only when the merchant turned
//! them on, once per invoice. Each command in at least two languages, Persian among them.
//! Every test ends with no spec violation in the double and a clean ledger audit.

use crate::support::telegram_app;

use std::time::{SystemTime, UNIX_EPOCH};

use farthing_core::ledger::{Account, AccountKind};
use farthing_core::{Currency, MerchantId, PublicId};
use farthing_server::state::Mode;
use serde_json::{json, Value};
use telegram_app::{spawn, spawn_with, App, JsonBody};
use telegram_double::{fixtures, RecordedCall};

const ANN: i64 = 777_101;
const BOB: i64 = 777_102;

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn user(id: i64, lang: &str) -> Value {
    fixtures::user(id, "Ann", lang)
}

async fn say(app: &App, from: &Value, message_id: i64, text: &str) {
    app.update(fixtures::text_message_update(
        message_id,
        now_s(),
        from,
        text,
    ))
    .await;
}

async fn press(app: &App, id: &str, from: &Value, message: &Value, data: &str) {
    app.update(fixtures::callback_query_update(id, from, message, data))
        .await;
}

fn messages_to(app: &App, chat: i64) -> Vec<RecordedCall> {
    app.double
        .calls_to("sendMessage")
        .into_iter()
        .filter(|call| call.param_i64("chat_id") == Some(chat))
        .collect()
}

/// The last message to `chat`: its text, its buttons and the message as Telegram answered.
fn last_message(app: &App, chat: i64) -> (String, Vec<Value>, Value) {
    let call = messages_to(app, chat)
        .pop()
        .unwrap_or_else(|| panic!("no message to {chat}"));
    let text = call.param_str("text").unwrap_or_default().to_owned();
    let buttons = call
        .param("reply_markup")
        .and_then(|markup| markup["inline_keyboard"].as_array())
        .map(|rows| {
            rows.iter()
                .flat_map(|row| row.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let message = call.result().cloned().expect("the sent message");
    (text, buttons, message)
}

/// The reply to `text` from `from`.
async fn ask(app: &App, from: &Value, message_id: i64, text: &str) -> (String, Vec<Value>, Value) {
    let before = messages_to(app, from["id"].as_i64().expect("id")).len();
    say(app, from, message_id, text).await;
    let after = messages_to(app, from["id"].as_i64().expect("id")).len();
    assert!(after > before, "no answer to {text}");
    last_message(app, from["id"].as_i64().expect("id"))
}

fn data_of(buttons: &[Value]) -> Vec<String> {
    buttons
        .iter()
        .map(|b| b["callback_data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Ann pays `invoice` (`amount` Stars) in the bot.
async fn pay(app: &App, from: &Value, invoice: &str, amount: i64, charge: &str) {
    app.update(fixtures::successful_payment_update(
        900,
        now_s(),
        from,
        "XTR",
        amount,
        invoice,
        charge,
    ))
    .await;
}

/// The test-mode customer `tg:<user>`.
async fn customer_of(app: &App, user: i64) -> Value {
    let list = app.get("/v1/customers?limit=100").await;
    list.expect(200);
    list.body["data"]
        .as_array()
        .and_then(|data| {
            data.iter()
                .find(|c| c["external_id"] == format!("tg:{user}"))
                .cloned()
        })
        .unwrap_or_else(|| panic!("no customer tg:{user}: {}", list.text))
}

async fn balance_of(app: &App, user: i64, currency: &str) -> i64 {
    let customer = customer_of(app, user).await;
    let reply = app
        .get(&format!(
            "/v1/customers/{}",
            customer["id"].as_str().expect("id")
        ))
        .await;
    reply.expect(200);
    reply.body["balances"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["currency"] == currency).cloned())
        .map_or(0, |b| b["available"].as_i64().unwrap_or(0))
}

async fn put_settings(app: &App, body: Value) -> telegram_app::Reply {
    app.send(
        app.client
            .put(format!("{}/v1/settings", app.base))
            .bearer_auth(app.key())
            .json_body(&body),
    )
    .await
}

#[tokio::test]
async fn settings_are_checked_stored_and_kept_per_mode() {
    let app = spawn().await;
    let defaults = app.get("/v1/settings").await;
    defaults.expect(200);
    assert_eq!(
        defaults.body,
        json!({"object": "settings", "livemode": false, "terms": "", "refund_policy": "", "contacts": "", "tip_presets": [], "reminders": false})
    );
    let stored = put_settings(
        &app,
        json!({"terms": "Goods are digital.", "contacts": "@help", "tip_presets": [2, 4], "reminders": true}),
    )
    .await;
    stored.expect(200);
    assert_eq!(stored.body["refund_policy"], "");
    assert_eq!(app.get("/v1/settings").await.body, stored.body);
    for (bad, param) in [
        (json!({"terms": "x".repeat(2001)}), "terms"),
        (json!({"contacts": "x".repeat(501)}), "contacts"),
        (json!({"tip_presets": [0]}), "tip_presets"),
        (
            json!({"tip_presets": [1, 2, 3, 4, 5, 6, 7, 8, 9]}),
            "tip_presets",
        ),
        (json!({"tip_presets": [10_001]}), "tip_presets"),
    ] {
        let refused = put_settings(&app, bad).await;
        refused.expect(400);
        assert_eq!(refused.body["error"]["code"], "invalid_settings");
        assert_eq!(refused.body["error"]["param"], param);
    }
    let unknown = put_settings(&app, json!({"colour": "red"})).await;
    unknown.expect(400);
    // The live mode has its own settings.
    let live = app
        .send(
            app.client
                .get(format!("{}/v1/settings", app.base))
                .bearer_auth(&app.merchant.live_key),
        )
        .await;
    live.expect(200);
    assert_eq!(live.body["terms"], "");
    assert_eq!(live.body["livemode"], true);
    app.stop().await;
}

#[tokio::test]
async fn terms_show_the_merchants_texts_or_a_localized_not_set() {
    let app = spawn().await;
    app.connected().await;
    let (en, fa) = (user(ANN, "en"), user(BOB, "fa"));
    let (text, _, _) = ask(&app, &en, 1, "/terms").await;
    assert_eq!(text, "The shop has not published its terms yet.");
    let (text, _, _) = ask(&app, &fa, 2, "/terms").await;
    assert_eq!(text, "فروشگاه هنوز شرایط خود را منتشر نکرده است.");
    put_settings(
        &app,
        json!({"terms": "Digital goods.", "refund_policy": "14 days.", "contacts": "@help"}),
    )
    .await
    .expect(200);
    let (text, _, _) = ask(&app, &en, 3, "/terms").await;
    assert_eq!(
        text,
        "Terms\nDigital goods.\n\nRefund policy\n14 days.\n\nContacts\n@help"
    );
    let (text, _, _) = ask(&app, &fa, 4, "/terms@shop_bot").await;
    assert_eq!(
        text,
        "شرایط\nDigital goods.\n\nسیاست بازپرداخت\n14 days.\n\nتماس\n@help"
    );
    app.stop().await;
}

#[tokio::test]
async fn balance_top_up_is_credited_to_the_payer_once() {
    let app = spawn().await;
    app.connected().await;
    let fa = user(ANN, "fa");
    let (text, buttons, message) = ask(&app, &fa, 1, "/balance").await;
    assert!(text.starts_with("موجودی شما خالی است."), "{text}");
    assert_eq!(
        data_of(&buttons),
        [
            "acct:topup:1",
            "acct:topup:3",
            "acct:topup:5",
            "acct:topup:10"
        ]
    );
    // A button that is not a preset makes nothing.
    press(&app, "cb-0", &fa, &message, "acct:topup:7").await;
    assert!(app.double.calls_to("sendInvoice").is_empty());
    press(&app, "cb-1", &fa, &message, "acct:topup:5").await;
    let sent = app.double.calls_to("sendInvoice");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].param_i64("chat_id"), Some(ANN));
    assert_eq!(sent[0].param("prices").expect("prices")[0]["amount"], 5);
    let invoice = sent[0].param_str("payload").expect("payload").to_owned();
    let object = app.get(&format!("/v1/invoices/{invoice}")).await;
    assert_eq!(object.body["metadata"], json!({"purpose": "top_up"}));

    pay(&app, &fa, &invoice, 5, "topup-charge-1").await;
    pay(&app, &fa, &invoice, 5, "topup-charge-1").await; // Telegram resends
    app.wait_for_status(&invoice, "paid").await;
    assert_eq!(balance_of(&app, ANN, "XTR").await, 5);
    // The merchant kept nothing of it.
    let merchant = MerchantId::parse(&app.merchant.id).expect("merchant id");
    let account = Account::new(AccountKind::MerchantBalance { merchant }, Currency::XTR);
    let held = app
        .running
        .state()
        .store(Mode::Test)
        .account(account.id)
        .expect("read")
        .map_or(0, |a| a.balances.available());
    assert_eq!(held, 0);
    // The merchant's presets replace the server's; the balance shows in English too.
    put_settings(&app, json!({"tip_presets": [25]}))
        .await
        .expect(200);
    let (text, buttons, _) = ask(&app, &user(ANN, "en"), 2, "/balance").await;
    assert!(text.starts_with("Your balance:\n• 5 XTR"), "{text}");
    assert_eq!(data_of(&buttons), ["acct:topup:25"]);
    app.stop().await;
}

#[tokio::test]
async fn history_lists_payments_charges_and_refunds_newest_first() {
    let app = spawn().await;
    app.connected().await;
    let ru = user(ANN, "ru");
    let (text, _, _) = ask(&app, &ru, 1, "/history").await;
    assert_eq!(text, "Платежей пока нет.");
    let invoice = app
        .invoice(json!({"amount": 40, "currency": "XTR", "description": "Coffee"}))
        .await;
    pay(&app, &ru, &invoice, 40, "hist-1").await;
    app.wait_for_status(&invoice, "paid").await;
    let customer = customer_of(&app, ANN).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.post(
        &format!("/v1/test/customers/{customer}/top_up"),
        json!({"amount": 100, "currency": "XTR"}),
    )
    .await
    .expect(200);
    let charge = app
        .post(
            "/v1/charges",
            json!({"customer": customer, "amount": 7, "currency": "XTR", "description": "1 AI image"}),
        )
        .await;
    charge.expect(201);
    let charge = charge.body["id"].as_str().expect("id").to_owned();
    let refund = app
        .post("/v1/refunds", json!({"charge": charge, "amount": 2}))
        .await;
    refund.expect(201);
    let refund = refund.body["id"].as_str().expect("id").to_owned();

    let (text, _, _) = ask(&app, &ru, 2, "/history").await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Ваши последние платежи:");
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[1].contains("Возврат · +2 XTR") && lines[1].ends_with(&refund),
        "{text}"
    );
    assert!(
        lines[2].contains("Списание · −7 XTR · 1 AI image") && lines[2].ends_with(&charge),
        "{text}"
    );
    assert!(
        lines[3].contains("Платёж · −40 XTR · Coffee") && lines[3].ends_with(&invoice),
        "{text}"
    );
    let (text, _, _) = ask(&app, &user(ANN, "fa"), 3, "/history").await;
    assert!(text.starts_with("آخرین پرداخت‌های شما:"), "{text}");
    // Right to left: every amount, date and id is isolated (U+2068 … U+2069), so "+2 XTR"
    // keeps its order inside the Persian line.
    assert!(
        text.contains("بازپرداخت · \u{2068}+2 XTR\u{2069}"),
        "{text}"
    );
    assert_eq!(
        text.matches('\u{2068}').count(),
        text.matches('\u{2069}').count(),
        "{text}"
    );
    // Another user sees none of it.
    let (text, _, _) = ask(&app, &user(BOB, "fa"), 4, "/history").await;
    assert_eq!(text, "هنوز پرداختی انجام نشده است.");
    app.stop().await;
}

#[tokio::test]
async fn subscriptions_are_canceled_and_resumed_from_the_bot() {
    let app = spawn().await;
    app.connected().await;
    let de = user(ANN, "de");
    let (text, buttons, _) = ask(&app, &de, 1, "/subscriptions").await;
    assert_eq!(text, "Sie haben keine Abonnements.");
    assert!(buttons.is_empty());
    let invoice = app
        .invoice(json!({"amount": 30, "currency": "XTR", "rails": ["stars"], "subscription_period": 2592000}))
        .await;
    let mut first =
        fixtures::successful_payment_update(90, now_s(), &de, "XTR", 30, &invoice, "sub-1");
    first["message"]["successful_payment"]["is_recurring"] = json!(true);
    first["message"]["successful_payment"]["is_first_recurring"] = json!(true);
    first["message"]["successful_payment"]["subscription_expiration_date"] =
        json!(now_s() + 2_592_000);
    app.update(first).await;

    let (text, buttons, message) = ask(&app, &de, 2, "/subscriptions").await;
    assert!(
        text.starts_with("Ihre Abonnements:\n1. 30 XTR / 30 · verlängert sich am "),
        "{text}"
    );
    let data = data_of(&buttons);
    assert_eq!(buttons[0]["text"], "Kündigen #1");
    let subscription = data[0]
        .strip_prefix("acct:sub:cancel:")
        .expect("a cancel button")
        .to_owned();
    // Someone else's press does nothing.
    press(&app, "cb-x", &user(BOB, "de"), &message, &data[0]).await;
    assert!(app.double.calls_to("editUserStarSubscription").is_empty());
    press(&app, "cb-1", &de, &message, &data[0]).await;
    let edits = app.double.calls_to("editUserStarSubscription");
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].param_i64("user_id"), Some(ANN));
    assert_eq!(
        edits[0].param_str("telegram_payment_charge_id"),
        Some("sub-1")
    );
    assert_eq!(edits[0].param("is_canceled"), Some(&json!(true)));
    let answered = app.double.calls_to("answerCallbackQuery");
    assert_eq!(
        answered.last().and_then(|c| c.param_str("text")),
        Some("Abonnement gekündigt.")
    );
    let object = app.get(&format!("/v1/subscriptions/{subscription}")).await;
    assert_eq!(object.body["status"], "canceled");
    // The list was edited to offer Resume.
    let edited = app.double.calls_to("editMessageText");
    let last = edited.last().expect("the list edited");
    assert!(last
        .param_str("text")
        .unwrap_or_default()
        .contains("gekündigt, bezahlt bis"));

    let fa = user(ANN, "fa");
    let (text, buttons, message) = ask(&app, &fa, 3, "/subscriptions").await;
    assert!(text.contains("لغو شده، پرداخت‌شده تا"), "{text}");
    assert_eq!(buttons[0]["text"], "ادامه #1");
    press(&app, "cb-2", &fa, &message, &data_of(&buttons)[0]).await;
    let edits = app.double.calls_to("editUserStarSubscription");
    assert_eq!(edits.len(), 2);
    assert_eq!(edits[1].param("is_canceled"), Some(&json!(false)));
    let object = app.get(&format!("/v1/subscriptions/{subscription}")).await;
    assert_eq!(object.body["status"], "active");
    app.stop().await;
}

async fn events(app: &App, kind: &str) -> Vec<Value> {
    let reply = app.get("/v1/events?limit=100").await;
    reply.expect(200);
    reply.body["data"]
        .as_array()
        .map(|data| data.iter().filter(|e| e["type"] == kind).cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_refund_request_approved_is_booked_and_told() {
    let app = spawn().await;
    app.connected().await;
    let fa = user(ANN, "fa");
    let (text, buttons, _) = ask(&app, &fa, 1, "/refund").await;
    assert_eq!(text, "پرداخت قابل بازپرداختی ندارید.");
    assert!(buttons.is_empty());
    let invoice = app
        .invoice(json!({"amount": 25, "currency": "XTR", "description": "Course"}))
        .await;
    pay(&app, &fa, &invoice, 25, "rr-1").await;
    app.wait_for_status(&invoice, "paid").await;

    let (text, buttons, message) = ask(&app, &fa, 2, "/refund").await;
    assert!(text.starts_with("کدام پرداخت بازپرداخت شود؟"), "{text}");
    assert_eq!(data_of(&buttons), [format!("acct:refund:{invoice}")]);
    // Bob cannot ask for Ann's money (answered in Bob's language, under the pressed message).
    press(
        &app,
        "cb-x",
        &user(BOB, "en"),
        &message,
        &data_of(&buttons)[0],
    )
    .await;
    assert_eq!(
        last_message(&app, ANN).0,
        "This payment cannot be refunded."
    );
    assert!(events(&app, "refund_request.created").await.is_empty());
    press(&app, "cb-1", &fa, &message, &data_of(&buttons)[0]).await;
    assert_eq!(
        last_message(&app, ANN).0,
        "درخواست بازپرداخت شما برای فروشگاه ارسال شد. پاسخ را همین‌جا دریافت می‌کنید."
    );
    press(&app, "cb-2", &fa, &message, &data_of(&buttons)[0]).await;
    assert!(last_message(&app, ANN)
        .0
        .starts_with("شما قبلاً این بازپرداخت"));
    assert_eq!(events(&app, "refund_request.created").await.len(), 1);

    let list = app.get("/v1/refund_requests").await;
    list.expect(200);
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1));
    let request = list.body["data"][0].clone();
    assert_eq!(request["status"], "pending");
    assert_eq!(request["invoice"], invoice.as_str());
    let id = request["id"].as_str().expect("id").to_owned();

    let approved = app
        .post(&format!("/v1/refund_requests/{id}/approve"), json!({}))
        .await;
    approved.expect(200);
    assert_eq!(approved.body["status"], "approved");
    let refund = approved.body["refund"]
        .as_str()
        .expect("a refund")
        .to_owned();
    let booked = app.get(&format!("/v1/refunds/{refund}")).await;
    booked.expect(200);
    assert_eq!(booked.body["amount"], 25);
    assert_eq!(booked.body["destination"], "balance");
    assert_eq!(balance_of(&app, ANN, "XTR").await, 25);
    assert_eq!(
        last_message(&app, ANN).0,
        "بازپرداخت شما تأیید شد: \u{2068}25 XTR\u{2069} به موجودی شما اضافه شد (/balance)."
    );
    // Approving again answers the same request and books nothing more.
    let again = app
        .post(&format!("/v1/refund_requests/{id}/approve"), json!({}))
        .await;
    again.expect(200);
    assert_eq!(again.body["refund"], refund.as_str());
    let refunds = app.get("/v1/refunds").await;
    assert_eq!(refunds.body["data"].as_array().map(Vec::len), Some(1));
    app.post(&format!("/v1/refund_requests/{id}/decline"), json!({}))
        .await
        .expect(409);
    assert_eq!(events(&app, "refund_request.approved").await.len(), 1);
    // Nothing left to refund.
    let (text, _, _) = ask(&app, &fa, 3, "/refund").await;
    assert_eq!(text, "پرداخت قابل بازپرداختی ندارید.");
    app.stop().await;
}

#[tokio::test]
async fn a_refund_request_declined_is_told() {
    let app = spawn().await;
    app.connected().await;
    let fr = user(ANN, "fr");
    let invoice = app.invoice(json!({"amount": 9, "currency": "XTR"})).await;
    pay(&app, &fr, &invoice, 9, "rd-1").await;
    app.wait_for_status(&invoice, "paid").await;
    let (text, buttons, message) = ask(&app, &fr, 1, "/refund").await;
    assert!(
        text.starts_with("Quel paiement faut-il rembourser ?"),
        "{text}"
    );
    press(&app, "cb-1", &fr, &message, &data_of(&buttons)[0]).await;
    let list = app.get("/v1/refund_requests").await;
    let id = list.body["data"][0]["id"].as_str().expect("id").to_owned();
    let declined = app
        .post(&format!("/v1/refund_requests/{id}/decline"), json!({}))
        .await;
    declined.expect(200);
    assert_eq!(declined.body["status"], "declined");
    assert_eq!(declined.body["refund"], Value::Null);
    assert!(
        last_message(&app, ANN)
            .0
            .starts_with("La boutique a refusé votre demande de remboursement."),
        "{:?}",
        last_message(&app, ANN).0
    );
    app.post(&format!("/v1/refund_requests/{id}/approve"), json!({}))
        .await
        .expect(409);
    assert_eq!(events(&app, "refund_request.declined").await.len(), 1);
    let refunds = app.get("/v1/refunds").await;
    assert_eq!(refunds.body["data"].as_array().map(Vec::len), Some(0));
    // The invoice can be asked about again (in English this time).
    let (text, buttons, _) = ask(&app, &user(ANN, "en"), 2, "/refund").await;
    assert!(
        text.starts_with("Which payment should be refunded?"),
        "{text}"
    );
    assert_eq!(buttons.len(), 1);
    app.stop().await;
}

fn reminders_to(app: &App, chat: i64) -> Vec<RecordedCall> {
    messages_to(app, chat)
        .into_iter()
        .filter(|call| {
            let text = call.param_str("text").unwrap_or_default();
            text.starts_with("You started a payment") || text.starts_with("شما پرداختی به مبلغ")
        })
        .collect()
}

#[tokio::test]
async fn reminders_go_once_and_only_to_customers_who_opted_in() {
    let app = spawn_with(|config| config.telegram.reminder_after_s = 0).await;
    app.connected().await;
    let (ann, bob) = (user(ANN, "fa"), user(BOB, "en"));
    let (text, _, _) = ask(&app, &ann, 1, "/remind on").await;
    assert!(text.starts_with("یادآوری روشن است"), "{text}");
    assert!(
        text.contains("(این فروشگاه در حال حاضر یادآوری نمی‌فرستد.)"),
        "{text}"
    );
    let (text, _, _) = ask(&app, &bob, 2, "/remind").await;
    assert_eq!(text, "Reminders are off. Turn them on with /remind on.");
    let ann_id = customer_of(&app, ANN).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bob_id = customer_of(&app, BOB).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let ann_invoice = app
        .invoice(json!({"amount": 12, "currency": "XTR", "customer": ann_id, "description": "Tea"}))
        .await;
    app.invoice(json!({"amount": 13, "currency": "XTR", "customer": bob_id}))
        .await;
    let state = app.running.state();

    // The merchant has not turned reminders on: none.
    farthing_server::bot::commands::send_reminders(state).await;
    assert!(reminders_to(&app, ANN).is_empty());
    put_settings(&app, json!({"reminders": true}))
        .await
        .expect(200);
    let (text, _, _) = ask(&app, &ann, 3, "/remind on").await;
    assert!(!text.contains("(این فروشگاه"), "{text}");

    farthing_server::bot::commands::send_reminders(state).await;
    farthing_server::bot::commands::send_reminders(state).await;
    let sent = reminders_to(&app, ANN);
    assert_eq!(sent.len(), 1, "one reminder per invoice");
    let text = sent[0].param_str("text").unwrap_or_default();
    assert!(
        text.starts_with("شما پرداختی به مبلغ \u{2068}12 XTR\u{2069}"),
        "{text}"
    );
    assert!(text.contains("Tea"), "{text}");
    assert!(reminders_to(&app, BOB).is_empty(), "Bob did not opt in");

    // An invoice the bot posted into Ann's chat (`/start inv_…`) names no customer; it is
    // reminded of too, once; Bob's is not.
    let posted = app
        .invoice(json!({"amount": 15, "currency": "XTR", "description": "Posted"}))
        .await;
    say(&app, &ann, 10, &format!("/start {posted}")).await;
    let bobs = app.invoice(json!({"amount": 16, "currency": "XTR"})).await;
    say(&app, &bob, 11, &format!("/start {bobs}")).await;
    farthing_server::bot::commands::send_reminders(state).await;
    farthing_server::bot::commands::send_reminders(state).await;
    let sent = reminders_to(&app, ANN);
    assert_eq!(sent.len(), 2, "one more reminder");
    assert!(sent[1]
        .param_str("text")
        .unwrap_or_default()
        .contains("Posted"));
    assert!(reminders_to(&app, BOB).is_empty(), "Bob did not opt in");

    // "Pay" under the reminder sends the invoice.
    let message = sent[0].result().cloned().expect("the reminder");
    press(
        &app,
        "cb-1",
        &ann,
        &message,
        &format!("acct:pay:{ann_invoice}"),
    )
    .await;
    let invoices = app.double.calls_to("sendInvoice");
    assert_eq!(
        invoices.last().and_then(|c| c.param_str("payload")),
        Some(ann_invoice.as_str())
    );

    // Opted out: a new invoice is not reminded of.
    let (text, _, _) = ask(&app, &user(ANN, "en"), 4, "/remind off").await;
    assert_eq!(text, "Reminders are off. Turn them on with /remind on.");
    app.invoice(json!({"amount": 14, "currency": "XTR", "customer": ann_id}))
        .await;
    farthing_server::bot::commands::send_reminders(state).await;
    assert_eq!(reminders_to(&app, ANN).len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn an_approved_request_can_refund_through_telegram() {
    let app = spawn().await;
    app.connected().await;
    let de = user(ANN, "de");
    let invoice = app
        .invoice(json!({"amount": 15, "currency": "XTR", "rails": ["stars"]}))
        .await;
    pay(&app, &de, &invoice, 15, "rail-1").await;
    app.wait_for_status(&invoice, "paid").await;
    let (_, buttons, message) = ask(&app, &de, 1, "/refund").await;
    press(&app, "cb-1", &de, &message, &data_of(&buttons)[0]).await;
    let list = app.get("/v1/refund_requests").await;
    let id = list.body["data"][0]["id"].as_str().expect("id").to_owned();
    let refused = app
        .post(
            &format!("/v1/refund_requests/{id}/approve"),
            json!({"destination": "moon"}),
        )
        .await;
    refused.expect(400);
    let approved = app
        .post(
            &format!("/v1/refund_requests/{id}/approve"),
            json!({"destination": "rail"}),
        )
        .await;
    approved.expect(200);
    let refunds = app.double.calls_to("refundStarPayment");
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].param_i64("user_id"), Some(ANN));
    assert_eq!(
        refunds[0].param_str("telegram_payment_charge_id"),
        Some("rail-1")
    );
    let refund = approved.body["refund"].as_str().expect("a refund");
    let booked = app.get(&format!("/v1/refunds/{refund}")).await;
    assert_eq!(booked.body["destination"], "rail");
    assert_eq!(balance_of(&app, ANN, "XTR").await, 0);
    assert_eq!(
        last_message(&app, ANN).0,
        "Ihre Erstattung wurde genehmigt: 15 XTR wird Ihnen zurückgezahlt."
    );
    app.stop().await;
}

#[tokio::test]
async fn an_approval_refused_for_want_of_funds_can_be_retried() {
    let app = spawn().await;
    app.connected().await;
    let ru = user(ANN, "ru");
    let invoice = app.invoice(json!({"amount": 10, "currency": "XTR"})).await;
    pay(&app, &ru, &invoice, 10, "funds-1").await;
    app.wait_for_status(&invoice, "paid").await;
    let (text, buttons, message) = ask(&app, &ru, 1, "/refund").await;
    assert!(text.starts_with("Какой платёж вернуть?"), "{text}");
    press(&app, "cb-1", &ru, &message, &data_of(&buttons)[0]).await;
    assert_eq!(
        last_message(&app, ANN).0,
        "Ваш запрос на возврат отправлен магазину. Ответ придёт сюда."
    );
    let list = app.get("/v1/refund_requests").await;
    let id = list.body["data"][0]["id"].as_str().expect("id").to_owned();
    // The merchant withdraws its Stars to Fragment: nothing left to refund from.
    app.double
        .set_star_transactions(vec![fixtures::fragment_withdrawal(
            "wd-1",
            10,
            now_s(),
            "https://fragment.com/tx/wd-1",
        )]);
    let bot_id = app.bot_id();
    let bot = app
        .running
        .state()
        .store(Mode::Test)
        .read(move |reader| reader.telegram_bots_by_id(bot_id))
        .expect("read")
        .pop()
        .expect("the bot");
    farthing_server::rails::telegram::reconcile::reconcile_bot(
        app.running.state().rails().telegram().expect("telegram"),
        app.running.state().app(),
        Mode::Test,
        &bot,
    )
    .await
    .expect("reconciled");
    let poor = app
        .post(&format!("/v1/refund_requests/{id}/approve"), json!({}))
        .await;
    poor.expect(402);
    assert_eq!(
        app.get("/v1/refund_requests").await.body["data"][0]["status"],
        "pending"
    );
    // Money comes in again; the same approval now goes through.
    let other = app.invoice(json!({"amount": 10, "currency": "XTR"})).await;
    pay(&app, &user(BOB, "en"), &other, 10, "funds-2").await;
    app.wait_for_status(&other, "paid").await;
    let approved = app
        .post(&format!("/v1/refund_requests/{id}/approve"), json!({}))
        .await;
    approved.expect(200);
    assert_eq!(balance_of(&app, ANN, "XTR").await, 10);
    assert_eq!(
        last_message(&app, ANN).0,
        "Ваш возврат одобрен: 10 XTR зачислено на ваш баланс (/balance)."
    );
    app.stop().await;
}
