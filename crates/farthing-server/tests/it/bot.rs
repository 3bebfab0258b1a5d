//! The payment bot's flows (SPEC T2; issue 5 item 4) against `telegram-double`, which checks
//! every Bot API call farthing makes against the Bot API 10.1 spec.
//!
//! Covered: `/start inv_…` posts the invoice (`sendInvoice`) and a companion message with the
//! time left, an amountless invoice as a Pay button, an unknown invoice, the welcome, a resent
//! `/start` posting nothing twice; tips: the preset buttons make and post a Stars invoice for
//! the presser, "Custom amount" takes the next number; after a `successful_payment` the
//! companion is edited to paid, the receipt comes in the payer's language (en, fa, de) with the
//! goods of `deliver_text`/`deliver_url`, "Pay again" makes and posts a copy, "Share" points to
//! the bot's deep link, and a resent payment sends no second receipt; expiry edits the
//! companion to expired. Every test ends with no spec violation and a clean ledger audit.

use crate::support::telegram_app;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use telegram_app::{spawn, App};
use telegram_double::{fixtures, RecordedCall};

const PAYER: i64 = 777_001;

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn user(id: i64, lang: &str) -> Value {
    fixtures::user(id, "Ann", lang)
}

/// Sends `text` from `from` as message `message_id`; returns the update as posted.
async fn say(app: &App, from: &Value, message_id: i64, text: &str) -> Value {
    app.update(fixtures::text_message_update(
        message_id,
        now_s(),
        from,
        text,
    ))
    .await
}

/// Presses the button `data` under the bot's message `message` (as the double answered it).
async fn press(app: &App, id: &str, from: &Value, message: &Value, data: &str) -> Value {
    app.update(fixtures::callback_query_update(id, from, message, data))
        .await
}

/// `sendMessage` calls to `chat`, in order.
fn messages_to(app: &App, chat: i64) -> Vec<RecordedCall> {
    app.double
        .calls_to("sendMessage")
        .into_iter()
        .filter(|call| call.param_i64("chat_id") == Some(chat))
        .collect()
}

fn text_of(call: &RecordedCall) -> &str {
    call.param_str("text").unwrap_or_default()
}

/// Every button of a call's `reply_markup`, flattened.
fn buttons(call: &RecordedCall) -> Vec<Value> {
    call.param("reply_markup")
        .and_then(|markup| markup["inline_keyboard"].as_array())
        .map(|rows| {
            rows.iter()
                .flat_map(|row| row.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn button<'a>(buttons: &'a [Value], text: &str) -> &'a Value {
    buttons
        .iter()
        .find(|b| b["text"] == text)
        .unwrap_or_else(|| panic!("no button {text:?} in {buttons:?}"))
}

/// The last `sendInvoice` to `chat`.
fn last_invoice_to(app: &App, chat: i64) -> Option<RecordedCall> {
    app.double
        .calls_to("sendInvoice")
        .into_iter()
        .rfind(|call| call.param_i64("chat_id") == Some(chat))
}

async fn invoice_object(app: &App, id: &str) -> Value {
    let reply = app.get(&format!("/v1/invoices/{id}")).await;
    reply.expect(200);
    reply.body.clone()
}

#[tokio::test]
async fn start_with_an_invoice_posts_it_with_a_timer_once() {
    let app = spawn().await;
    app.connected().await;
    let ann = user(PAYER, "en");
    let id = app
        .invoice(json!({"amount": 50, "currency": "XTR", "description": "Coffee"}))
        .await;
    let start = say(&app, &ann, 1, &format!("/start {id}")).await;

    let calls = app.double.calls_to("sendInvoice");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.param_i64("chat_id"), Some(PAYER));
    assert_eq!(call.param_str("payload"), Some(id.as_str()));
    assert_eq!(call.param_str("currency"), Some("XTR"));
    assert_eq!(call.param_str("title"), Some("Coffee"));
    assert_eq!(
        call.param("prices"),
        Some(&json!([{"label": "Coffee", "amount": 50}]))
    );
    let sent = messages_to(&app, PAYER);
    assert_eq!(sent.len(), 1, "one companion message");
    let timer = text_of(&sent[0]);
    assert!(timer.contains("50 XTR"), "{timer}");
    assert!(timer.contains("expires in 14 min"), "{timer}");
    assert!(timer.contains(&id), "{timer}");

    // Telegram sends the same update again: nothing is posted twice.
    app.post_update(&start).await;
    assert_eq!(app.double.calls_to("sendInvoice").len(), 1);
    assert_eq!(messages_to(&app, PAYER).len(), 1);

    // An amountless invoice cannot be a Telegram invoice: a Pay button to the checkout page.
    let open = app
        .invoice(json!({"currency": "XTR", "amount_presets": [5, 10]}))
        .await;
    say(&app, &ann, 2, &format!("/start {open}")).await;
    assert_eq!(app.double.calls_to("sendInvoice").len(), 1);
    let sent = messages_to(&app, PAYER);
    let pay = button(&buttons(&sent[1]), "Pay").clone();
    assert!(
        pay["url"]
            .as_str()
            .expect("url")
            .ends_with(&format!("/pay/{open}")),
        "{pay}"
    );

    // An unknown invoice, and the plain welcome with the bot's username.
    say(&app, &ann, 3, "/start inv_0000000000000000000000000").await;
    assert!(text_of(messages_to(&app, PAYER).last().expect("answer")).contains("does not exist"));
    say(&app, &ann, 4, "/start").await;
    let welcome = messages_to(&app, PAYER);
    let welcome = text_of(welcome.last().expect("welcome"));
    assert!(
        welcome.contains(&format!("@{}", app.bot_username())),
        "{welcome}"
    );
    app.stop().await;
}

#[tokio::test]
async fn tip_presets_and_a_custom_amount_make_stars_invoices() {
    let app = spawn().await;
    app.connected().await;
    let ann = user(PAYER, "en");
    say(&app, &ann, 1, "/start tip").await;
    let prompt = messages_to(&app, PAYER).pop().expect("the tip prompt");
    let keys = buttons(&prompt);
    let texts: Vec<&str> = keys.iter().filter_map(|b| b["text"].as_str()).collect();
    assert_eq!(texts, ["⭐ 1", "⭐ 3", "⭐ 5", "⭐ 10", "Custom amount"]);
    let prompt_message = prompt.result().expect("sent").clone();

    // A preset.
    let five = button(&keys, "⭐ 5")["callback_data"]
        .as_str()
        .expect("data")
        .to_owned();
    let pressed = press(&app, "cb-1", &ann, &prompt_message, &five).await;
    let call = last_invoice_to(&app, PAYER).expect("sendInvoice");
    assert_eq!(call.param_str("title"), Some("Tip"));
    assert_eq!(
        call.param("prices"),
        Some(&json!([{"label": "Tip", "amount": 5}]))
    );
    let id = call.param_str("payload").expect("payload").to_owned();
    let invoice = invoice_object(&app, &id).await;
    assert_eq!(invoice["amount"], 5);
    assert_eq!(invoice["currency"], "XTR");
    assert_eq!(invoice["rails"], json!(["stars"]));
    assert_eq!(invoice["metadata"]["source"], "bot_tip");
    let customer = invoice["customer"].as_str().expect("customer").to_owned();
    let customer = app.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(customer.body["external_id"], format!("tg:{PAYER}"));
    assert!(app
        .double
        .calls_to("answerCallbackQuery")
        .iter()
        .any(|c| c.param_str("callback_query_id") == Some("cb-1")));
    // The same press delivered again makes no second invoice.
    app.post_update(&pressed).await;
    assert_eq!(app.double.calls_to("sendInvoice").len(), 1);

    // A custom amount: a non-number is answered with a hint, the next number is the amount.
    let custom = button(&keys, "Custom amount")["callback_data"]
        .as_str()
        .expect("data")
        .to_owned();
    press(&app, "cb-2", &ann, &prompt_message, &custom).await;
    assert!(text_of(messages_to(&app, PAYER).last().expect("question")).contains("How many Stars"));
    // Someone else's number is not Ann's amount.
    say(&app, &user(PAYER + 1, "en"), 1, "9").await;
    say(&app, &ann, 2, "a lot").await;
    assert!(text_of(messages_to(&app, PAYER).last().expect("hint")).contains("whole number"));
    assert_eq!(app.double.calls_to("sendInvoice").len(), 1);
    say(&app, &ann, 3, "7").await;
    let call = last_invoice_to(&app, PAYER).expect("sendInvoice");
    assert_eq!(
        call.param("prices"),
        Some(&json!([{"label": "Tip", "amount": 7}]))
    );
    // Only the next number.
    say(&app, &ann, 4, "8").await;
    assert_eq!(app.double.calls_to("sendInvoice").len(), 2);
    app.stop().await;
}

/// Buys `id` as `from` through `/start`; returns the companion message's id.
async fn open_invoice(app: &App, from: &Value, message_id: i64, id: &str) -> i64 {
    say(app, from, message_id, &format!("/start {id}")).await;
    let chat = from["id"].as_i64().expect("id");
    let companion = messages_to(app, chat).pop().expect("companion");
    companion.result().expect("sent")["message_id"]
        .as_i64()
        .expect("message_id")
}

async fn pay(
    app: &App,
    from: &Value,
    message_id: i64,
    id: &str,
    amount: i64,
    charge: &str,
) -> Value {
    app.update(fixtures::successful_payment_update(
        message_id,
        now_s(),
        from,
        "XTR",
        amount,
        id,
        charge,
    ))
    .await
}

#[tokio::test]
async fn a_payment_marks_the_timer_paid_and_sends_receipt_goods_and_buttons() {
    let app = spawn().await;
    app.connected().await;
    let username = app.bot_username();
    // (language, paid, receipt title, Pay again, Share)
    let cases = [
        ("en", "Paid ✓", "Receipt", "Pay again", "Share"),
        ("fa", "پرداخت شد ✓", "رسید", "پرداخت دوباره", "اشتراک‌گذاری"),
        ("de", "Bezahlt ✓", "Beleg", "Erneut bezahlen", "Teilen"),
    ];
    for (n, (lang, paid, title, again, share)) in cases.into_iter().enumerate() {
        let chat = PAYER + 10 * i64::try_from(n).expect("small");
        let payer = user(chat, lang);
        let id = app
            .invoice(json!({
                "amount": 50,
                "currency": "XTR",
                "description": "E-book",
                "metadata": {"deliver_text": "Your code: ABC-123", "deliver_url": "https://example.com/book.pdf"},
            }))
            .await;
        let companion = open_invoice(&app, &payer, 1, &id).await;
        let before = messages_to(&app, chat).len();
        let payment = pay(&app, &payer, 2, &id, 50, &format!("charge-{lang}")).await;
        app.wait_for_status(&id, "paid").await;

        // The companion message is edited to paid.
        let edits: Vec<RecordedCall> = app
            .double
            .calls_to("editMessageText")
            .into_iter()
            .filter(|c| c.param_i64("chat_id") == Some(chat))
            .collect();
        assert_eq!(edits.len(), 1, "{lang}");
        assert_eq!(edits[0].param_i64("message_id"), Some(companion));
        assert!(
            text_of(&edits[0]).starts_with(paid),
            "{lang}: {}",
            text_of(&edits[0])
        );
        assert!(text_of(&edits[0]).contains(&id));

        // The receipt, then the goods with the buttons.
        let sent = messages_to(&app, chat);
        let sent = &sent[before..];
        assert_eq!(sent.len(), 2, "{lang}: receipt and goods");
        let receipt = text_of(&sent[0]);
        assert!(receipt.starts_with(title), "{lang}: {receipt}");
        // SPEC T6: the merchant and the verified bot username are on the receipt.
        for part in [
            "50 XTR",
            "0 XTR",
            "—",
            "UTC",
            id.as_str(),
            "Shop",
            username.as_str(),
        ] {
            assert!(
                receipt.contains(part),
                "{lang}: {part} missing in {receipt}"
            );
        }
        assert_eq!(text_of(&sent[1]), "Your code: ABC-123");
        let keys = buttons(&sent[1]);
        assert!(keys
            .iter()
            .any(|b| b["url"] == "https://example.com/book.pdf"));
        let expected_share =
            format!("https://t.me/share/url?url=https%3A%2F%2Ft.me%2F{username}%3Fstart%3D{id}");
        assert_eq!(button(&keys, share)["url"], expected_share.as_str());
        let again_data = button(&keys, again)["callback_data"]
            .as_str()
            .expect("data")
            .to_owned();
        assert_eq!(again_data, format!("again:{id}"));

        // Telegram resends the payment: settled once, no second receipt.
        app.post_update(&payment).await;
        assert_eq!(messages_to(&app, chat).len(), before + 2, "{lang}");

        // Pay again: a new invoice, same amount and goods, posted to the payer.
        let goods_message = sent[1].result().expect("sent").clone();
        press(
            &app,
            &format!("again-{lang}"),
            &payer,
            &goods_message,
            &again_data,
        )
        .await;
        let call = last_invoice_to(&app, chat).expect("sendInvoice");
        let copy = call.param_str("payload").expect("payload").to_owned();
        assert_ne!(copy, id);
        let copy = invoice_object(&app, &copy).await;
        assert_eq!(copy["status"], "open");
        assert_eq!(copy["amount"], 50);
        assert_eq!(copy["metadata"]["deliver_text"], "Your code: ABC-123");
        let customer = app
            .get(&format!(
                "/v1/customers/{}",
                copy["customer"].as_str().expect("customer")
            ))
            .await;
        assert_eq!(customer.body["external_id"], format!("tg:{chat}"));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_tip_receipt_shares_the_tip_link() {
    let app = spawn().await;
    app.connected().await;
    let ann = user(PAYER, "en");
    say(&app, &ann, 1, "/start tip").await;
    let prompt = messages_to(&app, PAYER).pop().expect("prompt");
    press(&app, "cb", &ann, prompt.result().expect("sent"), "tip:3").await;
    let id = last_invoice_to(&app, PAYER)
        .expect("sendInvoice")
        .param_str("payload")
        .expect("payload")
        .to_owned();
    pay(&app, &ann, 2, &id, 3, "charge-tip").await;
    let receipt = messages_to(&app, PAYER).pop().expect("receipt");
    let share = button(&buttons(&receipt), "Share").clone();
    let expected = format!(
        "https://t.me/share/url?url=https%3A%2F%2Ft.me%2F{}%3Fstart%3Dtip",
        app.bot_username()
    );
    assert_eq!(share["url"], expected.as_str());
    app.stop().await;
}

#[tokio::test]
async fn expiry_marks_the_timer_expired() {
    let app = spawn().await;
    app.connected().await;
    let ann = user(PAYER, "ru");
    let id = app
        .invoice(json!({"amount": 5, "currency": "XTR", "expires_in": 5}))
        .await;
    let companion = open_invoice(&app, &ann, 1, &id).await;
    let edit = app
        .double
        .wait_for_call("editMessageText", Duration::from_secs(20))
        .await
        .expect("the companion is edited");
    assert_eq!(edit.param_i64("message_id"), Some(companion));
    assert!(text_of(&edit).starts_with("Истёк"), "{}", text_of(&edit));
    app.wait_for_status(&id, "expired").await;
    // Opening it again says so and offers to pay again.
    say(&app, &ann, 2, &format!("/start {id}")).await;
    let answer = messages_to(&app, PAYER).pop().expect("answer");
    assert!(text_of(&answer).starts_with("Истёк"));
    assert_eq!(buttons(&answer)[0]["callback_data"], format!("again:{id}"));
    app.stop().await;
}

#[tokio::test]
async fn an_invoice_sent_through_the_api_gets_a_companion_edited_when_paid() {
    let app = spawn().await;
    app.connected().await;
    let id = app
        .invoice(json!({"amount": 25, "currency": "XTR", "description": "Coffee"}))
        .await;
    app.post(
        &format!("/v1/invoices/{id}/send"),
        json!({"chat_id": PAYER}),
    )
    .await
    .expect(200);
    let companion = messages_to(&app, PAYER).pop().expect("companion");
    assert!(
        text_of(&companion).contains("expires in"),
        "{}",
        text_of(&companion)
    );
    let companion = companion.result().expect("sent")["message_id"].clone();
    pay(&app, &user(PAYER, "fr"), 5, &id, 25, "charge-api").await;
    let edit = app
        .double
        .calls_to("editMessageText")
        .pop()
        .expect("the companion is edited");
    assert_eq!(edit.param("message_id"), Some(&companion));
    // Recorded in English (the API does not know the reader's language).
    assert!(text_of(&edit).starts_with("Paid ✓"), "{}", text_of(&edit));
    // The receipt is in the payer's language.
    let receipt = messages_to(&app, PAYER).pop().expect("receipt");
    assert!(
        text_of(&receipt).starts_with("Reçu"),
        "{}",
        text_of(&receipt)
    );
    app.stop().await;
}

#[tokio::test]
async fn invoices_paid_or_canceled_elsewhere_update_their_timer() {
    let app = spawn().await;
    app.connected().await;
    let ann = user(PAYER, "de");
    // Paid on another rail (the test-mode sandbox).
    let paid = app.invoice(json!({"amount": 5, "currency": "XTR"})).await;
    let paid_companion = open_invoice(&app, &ann, 1, &paid).await;
    app.post(&format!("/v1/test/invoices/{paid}/pay"), json!({}))
        .await
        .expect(200);
    // Canceled by the merchant.
    let canceled = app.invoice(json!({"amount": 6, "currency": "XTR"})).await;
    let canceled_companion = open_invoice(&app, &ann, 2, &canceled).await;
    app.post(&format!("/v1/invoices/{canceled}/cancel"), json!({}))
        .await
        .expect(200);
    let edits = app
        .double
        .wait_for_calls("editMessageText", 2, Duration::from_secs(15))
        .await
        .expect("both companions are edited");
    assert_eq!(edits.len(), 2);
    let edit_of = |id: i64| {
        edits
            .iter()
            .find(|c| c.param_i64("message_id") == Some(id))
            .map(|c| text_of(c).to_owned())
            .expect("edited")
    };
    assert!(edit_of(paid_companion).starts_with("Bezahlt ✓"));
    assert!(edit_of(canceled_companion).contains("storniert"));
    // Each once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.double.calls_to("editMessageText").len(), 2);
    app.stop().await;
}
