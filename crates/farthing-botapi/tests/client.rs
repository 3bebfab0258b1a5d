//! The Bot API client (`farthing_botapi`) against `telegram-double`, a local Bot API
//! server that checks every call against the Bot API 10.1 spec (`shared/telegram/bot-api-10.1.json`).
//!
//! What is covered: every client method round-trips and decodes the answer; the double records
//! no spec violation for any call the client makes (method exists, required parameters present,
//! types right, the documented Stars rules); Telegram's error shape maps to
//! `BotApiError::Api` (429 with `retry_after`, 401 for a wrong token, 400/409 descriptions);
//! timeouts and refused connections map to `BotApiError::Http`; `getUpdates` returns injected
//! fixtures with `successful_payment` (subscription fields included) and `pre_checkout_query`;
//! and the bot token never appears in an error's `Display` or `Debug`, even when the server at
//! `api_url` echoes the request URL back.

use std::time::{Duration, Instant};

use farthing_botapi::{
    BotApiError, BotClient, InvoiceParams, LabeledPrice, RevenueWithdrawalState, TransactionPartner,
};
use farthing_telegram::{BotToken, TelegramChatId, TelegramUserId};
use serde_json::json;
use telegram_double::{fixtures, Encoding, Failure, TelegramDouble};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(5);

fn token(text: &str) -> BotToken {
    BotToken::parse(text).expect("a valid bot token")
}

async fn double_and_client() -> (TelegramDouble, BotClient) {
    let double = TelegramDouble::spawn().await.expect("the double starts");
    let client = BotClient::new(double.base_url(), token(double.token()), TIMEOUT)
        .expect("the client builds");
    (double, client)
}

fn chat(id: i64) -> TelegramChatId {
    TelegramChatId::new(id).expect("a chat id")
}

fn user_id(id: u64) -> TelegramUserId {
    TelegramUserId::new(id).expect("a user id")
}

/// No spec violation, and every call was a JSON POST.
fn assert_clean(double: &TelegramDouble) {
    double.assert_no_violations();
    for call in double.calls() {
        assert_eq!(call.http_method, "POST", "{}", call.method);
        assert_eq!(call.encoding, Encoding::Json, "{}", call.method);
        assert!(
            call.token_ok,
            "{} was sent with the wrong token",
            call.method
        );
    }
}

fn secret_of(token: &str) -> &str {
    token.split_once(':').map_or(token, |(_, secret)| secret)
}

/// Neither `Display` nor `Debug` of `error` shows the token or its secret part.
#[track_caller]
fn assert_no_token(error: &BotApiError, token: &str) {
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(token), "token in error: {shown}");
        assert!(
            !shown.contains(secret_of(token)),
            "secret in error: {shown}"
        );
    }
}

#[tokio::test]
async fn get_me_returns_the_bot() {
    let (double, client) = double_and_client().await;
    let me = client.get_me().await.expect("getMe");
    assert!(me.is_bot);
    assert_eq!(me.id, 123_456_789);
    assert_eq!(me.username.as_deref(), Some("farthing_test_bot"));
    assert_eq!(me.first_name, "Farthing Test Bot");
    assert_eq!(client.bot_id().get(), 123_456_789);
    assert_clean(&double);
}

#[tokio::test]
async fn invoices_stars_subscription_and_provider_are_valid_calls() {
    let (double, client) = double_and_client().await;

    let stars = InvoiceParams::stars("Tea", "A cup of tea", "inv_01", 5);
    let link = client
        .create_invoice_link(&stars)
        .await
        .expect("Stars link");
    assert!(link.starts_with("https://t.me/$"), "{link}");

    let subscription = InvoiceParams::stars_subscription("Club", "Monthly club", "sub_01", 100);
    let link = client
        .create_invoice_link(&subscription)
        .await
        .expect("subscription link");
    assert!(link.starts_with("https://t.me/$"), "{link}");

    let card = InvoiceParams::provider(
        "Book",
        "A paper book",
        "inv_02",
        "284685063:TEST:ZmFydGhpbmc",
        "EUR",
        vec![
            LabeledPrice {
                label: "Book".to_owned(),
                amount: 1_250,
            },
            LabeledPrice {
                label: "Shipping".to_owned(),
                amount: 300,
            },
        ],
    );
    client.create_invoice_link(&card).await.expect("card link");

    let calls = double.calls_to("createInvoiceLink");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].param_str("currency"), Some("XTR"));
    assert_eq!(calls[0].param("provider_token"), None);
    assert_eq!(calls[0].param("subscription_period"), None);
    assert_eq!(
        calls[0].param("prices"),
        Some(&json!([{"label": "Tea", "amount": 5}]))
    );
    assert_eq!(calls[1].param_i64("subscription_period"), Some(2_592_000));
    assert_eq!(
        calls[2].param_str("provider_token"),
        Some("284685063:TEST:ZmFydGhpbmc")
    );
    assert_eq!(calls[2].param_str("currency"), Some("EUR"));

    let message = client
        .send_invoice(chat(42), &stars)
        .await
        .expect("sendInvoice");
    let invoice = message.invoice.expect("an invoice message");
    assert_eq!(
        (invoice.currency.as_str(), invoice.total_amount),
        ("XTR", 5)
    );
    assert_eq!(message.chat.id, 42);
    let call = double
        .wait_for_call("sendInvoice", TIMEOUT)
        .await
        .expect("recorded");
    assert_eq!(call.param_i64("chat_id"), Some(42));
    assert_eq!(call.param_str("payload"), Some("inv_01"));

    let card_message = client
        .send_invoice(chat(42), &card)
        .await
        .expect("card sendInvoice");
    assert_eq!(card_message.invoice.map(|i| i.total_amount), Some(1_550));

    let refused = client
        .send_invoice(chat(42), &subscription)
        .await
        .expect_err("sendInvoice has no subscription_period");
    assert!(
        matches!(refused, BotApiError::InvalidRequest { .. }),
        "{refused:?}"
    );
    assert_eq!(
        double.calls_to("sendInvoice").len(),
        2,
        "the refused call was not sent"
    );
    assert_clean(&double);
}

#[tokio::test]
async fn pre_checkout_answers_refunds_and_subscription_edits() {
    let (double, client) = double_and_client().await;
    client
        .answer_pre_checkout_query("pcq_1", true, None)
        .await
        .expect("ok answer");
    client
        .answer_pre_checkout_query("pcq_2", false, Some("This invoice has expired."))
        .await
        .expect("refusal");
    let missing = client
        .answer_pre_checkout_query("pcq_3", false, Some("  "))
        .await
        .expect_err("a refusal needs a message");
    assert!(matches!(missing, BotApiError::InvalidRequest { .. }));
    let calls = double.calls_to("answerPreCheckoutQuery");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].param("ok"), Some(&json!(true)));
    assert_eq!(calls[0].param("error_message"), None);
    assert_eq!(calls[1].param_str("pre_checkout_query_id"), Some("pcq_2"));
    assert_eq!(
        calls[1].param_str("error_message"),
        Some("This invoice has expired.")
    );

    client
        .refund_star_payment(user_id(42), "stxCharge1")
        .await
        .expect("refund");
    let again = client
        .refund_star_payment(user_id(42), "stxCharge1")
        .await
        .expect_err("a second refund is refused");
    match &again {
        BotApiError::Api {
            error_code,
            description,
            retry_after,
            ..
        } => {
            assert_eq!(*error_code, 400);
            assert!(
                description.contains("CHARGE_ALREADY_REFUNDED"),
                "{description}"
            );
            assert_eq!(*retry_after, None);
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    let refund = &double.calls_to("refundStarPayment")[0];
    assert_eq!(refund.param_i64("user_id"), Some(42));

    client
        .edit_user_star_subscription(user_id(42), "stxSub1", true)
        .await
        .expect("cancel");
    client
        .edit_user_star_subscription(user_id(42), "stxSub1", false)
        .await
        .expect("resume");
    let edits = double.calls_to("editUserStarSubscription");
    assert_eq!(edits[0].param("is_canceled"), Some(&json!(true)));
    assert_eq!(edits[1].param("is_canceled"), Some(&json!(false)));
    assert_clean(&double);
}

#[tokio::test]
async fn star_transactions_page_and_decode() {
    let (double, client) = double_and_client().await;
    double.set_star_transactions(vec![
        fixtures::star_payment("stxA", 5, 1_700_000_000, 42, "inv_01"),
        {
            let mut sub = fixtures::star_payment("stxB", 100, 1_700_000_050, 43, "sub_01");
            sub["source"]["subscription_period"] = json!(2_592_000);
            sub["nanostar_amount"] = json!(250_000_000);
            sub
        },
        fixtures::star_refund("stxA", 5, 1_700_000_100, 42),
        fixtures::fragment_withdrawal("wd_1", 1_000, 1_700_000_200, "https://fragment.com/tx/1"),
    ]);
    let all = client.get_star_transactions(0, 100).await.expect("page");
    assert_eq!(all.transactions.len(), 4);
    let payment = &all.transactions[0];
    assert_eq!((payment.id.as_str(), payment.amount), ("stxA", 5));
    match &payment.source {
        Some(TransactionPartner::User {
            transaction_type,
            user,
            invoice_payload,
            subscription_period,
        }) => {
            assert_eq!(transaction_type, "invoice_payment");
            assert_eq!(user.id, 42);
            assert_eq!(invoice_payload.as_deref(), Some("inv_01"));
            assert_eq!(*subscription_period, None);
        }
        other => panic!("expected a user source, got {other:?}"),
    }
    assert_eq!(all.transactions[1].nanostar_amount, Some(250_000_000));
    assert!(matches!(
        &all.transactions[1].source,
        Some(TransactionPartner::User {
            subscription_period: Some(2_592_000),
            ..
        })
    ));
    assert!(matches!(
        &all.transactions[2].receiver,
        Some(TransactionPartner::User { .. })
    ));
    match &all.transactions[3].receiver {
        Some(TransactionPartner::Fragment {
            withdrawal_state: Some(RevenueWithdrawalState::Succeeded { url, .. }),
        }) => assert_eq!(url, "https://fragment.com/tx/1"),
        other => panic!("expected a Fragment withdrawal, got {other:?}"),
    }

    let page = client
        .get_star_transactions(1, 2)
        .await
        .expect("second page");
    let ids: Vec<&str> = page.transactions.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["stxB", "stxA"]);
    let last = &double.calls_to("getStarTransactions")[1];
    assert_eq!(
        (last.param_i64("offset"), last.param_i64("limit")),
        (Some(1), Some(2))
    );
    assert_clean(&double);
}

#[tokio::test]
async fn get_updates_returns_injected_payments_and_queries() {
    let (double, client) = double_and_client().await;
    let alice = fixtures::user(42, "Alice", "fa");
    double.inject_update(fixtures::text_message_update(
        1,
        1_700_000_000,
        &alice,
        "/start inv_01",
    ));
    double.inject_update(fixtures::pre_checkout_query_update(
        "pcq_1", &alice, "XTR", 5, "inv_01",
    ));
    let mut renewal = fixtures::successful_payment_update(
        2,
        1_700_000_010,
        &alice,
        "XTR",
        100,
        "sub_01",
        "stxRenewal",
    );
    renewal["message"]["successful_payment"]["subscription_expiration_date"] = json!(1_702_592_010);
    renewal["message"]["successful_payment"]["is_recurring"] = json!(true);
    double.inject_update(fixtures::successful_payment_update(
        3,
        1_700_000_005,
        &alice,
        "XTR",
        5,
        "inv_01",
        "stxOneOff",
    ));
    double.inject_update(renewal);
    let bot_message = json!({"message_id": 9, "date": 1_700_000_000,
        "chat": {"id": 42, "type": "private"}, "text": "Tip?"});
    double.inject_update(fixtures::callback_query_update(
        "cb_1",
        &alice,
        &bot_message,
        "tip:5",
    ));

    let updates = client.get_updates(None, 0, None).await.expect("getUpdates");
    assert_eq!(updates.len(), 5);
    let ids: Vec<i64> = updates.iter().map(|u| u.update_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let start = updates[0].message.as_ref().expect("a message");
    assert_eq!(start.text.as_deref(), Some("/start inv_01"));
    assert_eq!(
        start.from.as_ref().and_then(|u| u.language_code.as_deref()),
        Some("fa")
    );

    let query = updates[1]
        .pre_checkout_query
        .as_ref()
        .expect("a pre-checkout query");
    assert_eq!(query.id, "pcq_1");
    assert_eq!((query.currency.as_str(), query.total_amount), ("XTR", 5));
    assert_eq!(query.invoice_payload, "inv_01");
    assert_eq!(query.from.user_id(), TelegramUserId::new(42));

    let one_off = updates[2]
        .message
        .as_ref()
        .and_then(|m| m.successful_payment.as_ref())
        .expect("a successful payment");
    assert_eq!(one_off.telegram_payment_charge_id, "stxOneOff");
    assert_eq!(one_off.provider_payment_charge_id, "");
    assert!(!one_off.is_recurring && !one_off.is_first_recurring);
    assert_eq!(one_off.subscription_expiration_date, None);

    let renewal = updates[3]
        .message
        .as_ref()
        .and_then(|m| m.successful_payment.as_ref())
        .expect("a renewal");
    assert!(renewal.is_recurring);
    assert!(!renewal.is_first_recurring);
    assert_eq!(renewal.subscription_expiration_date, Some(1_702_592_010));
    assert_eq!(
        (renewal.total_amount, renewal.invoice_payload.as_str()),
        (100, "sub_01")
    );

    let callback = updates[4]
        .callback_query
        .as_ref()
        .expect("a callback query");
    assert_eq!(callback.data.as_deref(), Some("tip:5"));
    assert_eq!(callback.message.as_ref().map(|m| m.message_id), Some(9));

    // Confirming with offset = last + 1 empties the queue; allowed_updates is sent typed.
    let allowed = ["message", "callback_query", "pre_checkout_query"];
    let next = client
        .get_updates(Some(ids[4] + 1), 0, Some(&allowed))
        .await
        .expect("confirm");
    assert!(next.is_empty());
    assert!(double.pending_updates().is_empty());
    let confirm = &double.calls_to("getUpdates")[1];
    assert_eq!(confirm.param("allowed_updates"), Some(&json!(allowed)));
    assert_clean(&double);
}

#[tokio::test]
async fn unknown_and_undecodable_updates_keep_their_id() {
    let (double, client) = double_and_client().await;
    let alice = fixtures::user(42, "Alice", "en");
    // A kind newer than the spec the double knows (Bot API 10.2's `subscription`).
    let newer = double.inject_update_unchecked(
        json!({"subscription": {"user": alice.clone(), "state": "cancelled"}}),
    );
    // A message that does not decode (Telegram changed a type): still confirmable.
    let broken = double.inject_update_unchecked(json!({"message": {"message_id": "x"}}));
    let updates = client.get_updates(None, 0, None).await.expect("getUpdates");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].update_id, newer);
    assert!(updates[0].other.contains_key("subscription"));
    assert!(updates[0].message.is_none());
    assert_eq!(updates[1].update_id, broken);
    assert!(updates[1].message.is_none());
    assert!(updates[1].other.contains_key("message"));
    // The double flags its own answer (the updates are not in its spec); the client's calls
    // are all valid.
    for violation in double.violations() {
        assert!(
            violation.method.ends_with("(answer of the double)"),
            "a call of the client breaks the spec: {violation}"
        );
    }
}

#[tokio::test]
async fn a_long_poll_outlasts_the_call_timeout_and_wakes_on_an_update() {
    let double = TelegramDouble::spawn().await.expect("the double starts");
    let client = BotClient::new(
        double.base_url(),
        token(double.token()),
        Duration::from_millis(500),
    )
    .expect("client");
    // The poll time is added to the call's time limit: 1 s of polling with a 0.5 s timeout.
    let started = Instant::now();
    let empty = client
        .get_updates(None, 1, None)
        .await
        .expect("an empty poll");
    assert!(empty.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));

    let injector = double.clone();
    let alice = fixtures::user(42, "Alice", "en");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        injector.inject_update(fixtures::text_message_update(
            1,
            1_700_000_000,
            &alice,
            "hi",
        ));
    });
    let started = Instant::now();
    let updates = client.get_updates(None, 10, None).await.expect("a poll");
    assert_eq!(updates.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_clean(&double);
}

#[tokio::test]
async fn webhooks_set_and_delete() {
    let (double, client) = double_and_client().await;
    let allowed = ["message", "callback_query", "pre_checkout_query"];
    client
        .set_webhook(
            "https://pay.example.com/telegram/123456789/webhook",
            Some("s3cret-Header_value"),
            Some(&allowed),
        )
        .await
        .expect("setWebhook");
    let webhook = double.webhook().expect("a webhook is set");
    assert_eq!(
        webhook.url,
        "https://pay.example.com/telegram/123456789/webhook"
    );
    assert_eq!(webhook.secret_token.as_deref(), Some("s3cret-Header_value"));
    assert_eq!(
        webhook.allowed_updates,
        Some(allowed.iter().map(|s| (*s).to_owned()).collect())
    );

    let conflict = client
        .get_updates(None, 0, None)
        .await
        .expect_err("409 while a webhook is set");
    assert_eq!(conflict.error_code(), Some(409));

    client.delete_webhook(true).await.expect("deleteWebhook");
    assert!(double.webhook().is_none());
    client
        .get_updates(None, 0, None)
        .await
        .expect("polling works again");
    assert_clean(&double);
}

#[tokio::test]
async fn messages_are_sent_and_edited() {
    let (double, client) = double_and_client().await;
    let keyboard = json!({"inline_keyboard": [[
        {"text": "1 ⭐", "callback_data": "tip:1"},
        {"text": "5 ⭐", "callback_data": "tip:5"}
    ]]});
    let sent = client
        .send_message(chat(42), "Leave a tip?", Some(&keyboard))
        .await
        .expect("sendMessage");
    assert_eq!(sent.text.as_deref(), Some("Leave a tip?"));
    assert_eq!(sent.reply_markup.as_ref(), Some(&keyboard));
    assert_eq!(sent.from.as_ref().map(|u| u.is_bot), Some(true));

    let edited = client
        .edit_message_text(chat(42), sent.message_id, "Paid ✓", None)
        .await
        .expect("editMessageText");
    assert_eq!(edited.text.as_deref(), Some("Paid ✓"));
    assert!(edited.edit_date.is_some());
    assert_eq!(edited.reply_markup, None);

    let again = json!({"inline_keyboard": [[{"text": "Pay again", "callback_data": "again"}]]});
    let with_button = client
        .edit_message_reply_markup(chat(42), sent.message_id, Some(&again))
        .await
        .expect("editMessageReplyMarkup");
    assert_eq!(with_button.reply_markup.as_ref(), Some(&again));
    let stored = double
        .message(42, sent.message_id)
        .expect("the double keeps it");
    assert_eq!(stored["reply_markup"], again);

    let missing = client
        .edit_message_text(chat(42), 9_999, "nope", None)
        .await
        .expect_err("no such message");
    assert_eq!(missing.error_code(), Some(400));

    client
        .answer_callback_query("cb_1", Some("Thanks!"))
        .await
        .expect("answerCallbackQuery");
    client
        .answer_callback_query("cb_2", None)
        .await
        .expect("answerCallbackQuery without text");
    assert_clean(&double);
}

#[tokio::test]
async fn flood_control_maps_to_retry_after() {
    let (double, client) = double_and_client().await;
    double.fail_next("sendMessage", Failure::TooManyRequests { retry_after_s: 7 });
    let error = client
        .send_message(chat(42), "hello", None)
        .await
        .expect_err("429");
    match &error {
        BotApiError::Api {
            method,
            error_code,
            description,
            retry_after,
            ..
        } => {
            assert_eq!(*method, "sendMessage");
            assert_eq!(*error_code, 429);
            assert!(
                description.starts_with("Too Many Requests"),
                "{description}"
            );
            assert_eq!(*retry_after, Some(7));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(error.retry_after(), Some(7));
    assert!(error.is_transient());

    double.fail_next("getMe", Failure::InternalServerError);
    let error = client.get_me().await.expect_err("500");
    assert_eq!(error.error_code(), Some(500));
    assert!(error.is_transient());
    client
        .send_message(chat(42), "hello", None)
        .await
        .expect("then it works");
    assert_no_token(&error, double.token());
    assert_clean(&double);
}

#[tokio::test]
async fn a_wrong_token_is_401_and_never_shown() {
    let double = TelegramDouble::spawn().await.expect("the double starts");
    let wrong = "123456789:AAE-wrong-token-never-shown";
    let client = BotClient::new(double.base_url(), token(wrong), TIMEOUT).expect("client");
    let error = client.get_me().await.expect_err("401");
    assert_eq!(error.error_code(), Some(401));
    assert!(error.is_unauthorized());
    assert!(!error.is_transient());
    assert_no_token(&error, wrong);
    let calls = double.calls();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].token_ok);
    double.assert_no_violations();
    assert!(!format!("{client:?}").contains(secret_of(wrong)));
}

/// A plain TCP server: `answer` gets the request head and returns the raw HTTP response to
/// write, or `None` to hold the connection open without answering.
async fn raw_server(answer: fn(&str) -> Option<String>) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buffer = [0_u8; 4096];
                let head_end = loop {
                    let Ok(n) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    received.extend_from_slice(&buffer[..n]);
                    if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&received[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                while received.len() < head_end + length {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => received.extend_from_slice(&buffer[..n]),
                    }
                }
                match answer(&head) {
                    Some(response) => {
                        let _ = socket.write_all(response.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    format!("http://{address}")
}

fn http_response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The request line (`POST /bot<token>/getMe HTTP/1.1`), which carries the token.
fn request_line(head: &str) -> String {
    head.lines().next().unwrap_or_default().to_owned()
}

const HOSTILE_TOKEN: &str = "987654321:AAH-hostile-echo-Secret_42";

#[tokio::test]
async fn a_timeout_is_an_http_error_without_the_token() {
    let api_url = raw_server(|_| None).await;
    let client =
        BotClient::new(&api_url, token(HOSTILE_TOKEN), Duration::from_millis(300)).expect("client");
    let started = Instant::now();
    let error = client.get_me().await.expect_err("no answer");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            error,
            BotApiError::Http {
                timed_out: true,
                method: "getMe",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert!(
        error.to_string().starts_with("Bot API getMe: timed out"),
        "{error}"
    );
    assert_no_token(&error, HOSTILE_TOKEN);
}

#[tokio::test]
async fn a_refused_connection_is_an_http_error_without_the_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let client = BotClient::new(&format!("http://{address}"), token(HOSTILE_TOKEN), TIMEOUT)
        .expect("client");
    let error = client.get_me().await.expect_err("nothing listens");
    assert!(
        matches!(
            error,
            BotApiError::Http {
                timed_out: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("Bot API getMe: transport error"),
        "{error}"
    );
    assert_no_token(&error, HOSTILE_TOKEN);
}

#[tokio::test]
async fn answers_that_echo_the_url_are_redacted() {
    // A Bot API error whose description repeats the request line, token included.
    let api_url = raw_server(|head| {
        let description = format!("Bad Request: cannot route {}", request_line(head));
        let body = json!({"ok": false, "error_code": 400, "description": description});
        Some(http_response(
            "400 Bad Request",
            "application/json",
            &body.to_string(),
        ))
    })
    .await;
    let client = BotClient::new(&api_url, token(HOSTILE_TOKEN), TIMEOUT).expect("client");
    let error = client.get_me().await.expect_err("400");
    match &error {
        BotApiError::Api { description, .. } => {
            assert!(
                description.contains("/bot<redacted>/getMe"),
                "{description}"
            );
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_no_token(&error, HOSTILE_TOKEN);

    // A proxy's HTML error page mentioning the URL.
    let api_url = raw_server(|head| {
        Some(http_response(
            "502 Bad Gateway",
            "text/html",
            &format!("<h1>502</h1><p>{}</p>", request_line(head)),
        ))
    })
    .await;
    let client = BotClient::new(&api_url, token(HOSTILE_TOKEN), TIMEOUT).expect("client");
    let error = client.get_me().await.expect_err("502");
    assert_eq!(error.error_code(), Some(502));
    assert!(error.is_transient());
    assert_no_token(&error, HOSTILE_TOKEN);

    // A 200 whose body is not the Bot API's, and one whose result has the wrong type.
    let api_url = raw_server(|head| {
        Some(http_response(
            "200 OK",
            "application/json",
            &format!("{{\"{}", request_line(head)),
        ))
    })
    .await;
    let client = BotClient::new(&api_url, token(HOSTILE_TOKEN), TIMEOUT).expect("client");
    let error = client.get_me().await.expect_err("not JSON");
    assert!(matches!(error, BotApiError::Decode { .. }), "{error:?}");
    assert_no_token(&error, HOSTILE_TOKEN);

    let api_url = raw_server(|head| {
        let body = json!({"ok": true, "result": request_line(head)});
        Some(http_response(
            "200 OK",
            "application/json",
            &body.to_string(),
        ))
    })
    .await;
    let client = BotClient::new(&api_url, token(HOSTILE_TOKEN), TIMEOUT).expect("client");
    let error = client.get_me().await.expect_err("a string is not a User");
    assert!(matches!(error, BotApiError::Decode { .. }), "{error:?}");
    assert_no_token(&error, HOSTILE_TOKEN);
}

#[test]
fn an_api_url_with_the_token_is_refused_without_showing_it() {
    let error = BotClient::new(
        &format!("https://api.telegram.org/bot{HOSTILE_TOKEN}"),
        token(HOSTILE_TOKEN),
        TIMEOUT,
    )
    .expect_err("the token does not belong in api_url");
    assert!(matches!(error, BotApiError::Setup { .. }));
    assert_no_token(&error, HOSTILE_TOKEN);
}
