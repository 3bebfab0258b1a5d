//! The objects the double answers with, built as Telegram builds them.
//!
//! Pure functions: no state, no clock (time is passed in). Every object built here must be a
//! valid instance of the type the method is documented to return — the unit tests below check
//! each against the spec, and the server re-checks every answer it sends.

use serde_json::{json, Map, Value};

/// The `getMe` answer unless a test configures another: a bot that can be added to groups.
pub fn default_bot_user(bot_id: i64) -> Value {
    json!({
        "id": bot_id,
        "is_bot": true,
        "first_name": "Farthing Test Bot",
        "username": "farthing_test_bot",
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
        "can_connect_to_business": false,
        "has_main_web_app": false,
    })
}

/// The numeric bot id Telegram puts before the colon of a token (`123456:ABC…` → 123456).
pub fn bot_id_from_token(token: &str) -> Option<i64> {
    token.split_once(':')?.0.parse().ok()
}

/// A `createInvoiceLink` answer: `https://t.me/$` and a random slug, as Telegram makes them.
pub fn invoice_link(rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let slug: String = (0..22)
        .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
        .collect();
    format!("https://t.me/${slug}")
}

/// The `Chat` a `chat_id` parameter names: a private chat for a positive id, a supergroup for a
/// negative one, a channel for `@username` (given the id the double assigned to that name).
pub fn chat_for(chat_id: i64, username: Option<&str>) -> Value {
    match username {
        Some(name) => json!({"id": chat_id, "type": "channel", "title": name, "username": name}),
        None if chat_id > 0 => json!({"id": chat_id, "type": "private", "first_name": "Test User"}),
        None => json!({"id": chat_id, "type": "supergroup", "title": "Test Group"}),
    }
}

/// A message the bot just sent with `method` and (typed) `params`.
pub fn sent_message(
    method: &str,
    message_id: i64,
    date_s: i64,
    chat: Value,
    from: &Value,
    params: &Map<String, Value>,
) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "date": date_s,
        "chat": chat,
        "from": from,
    });
    if let Some(text) = params.get("text") {
        message["text"] = text.clone();
    }
    if let Some(entities) = params.get("entities") {
        message["entities"] = entities.clone();
    }
    if let Some(markup) = inline_markup(params) {
        message["reply_markup"] = markup;
    }
    if method == "sendInvoice" {
        let total: i64 = params
            .get("prices")
            .and_then(Value::as_array)
            .map(|prices| {
                prices
                    .iter()
                    .filter_map(|p| p.get("amount").and_then(Value::as_i64))
                    .sum()
            })
            .unwrap_or(0);
        message["invoice"] = json!({
            "title": params.get("title").cloned().unwrap_or_default(),
            "description": params.get("description").cloned().unwrap_or_default(),
            "start_parameter": params.get("start_parameter").cloned().unwrap_or_else(|| json!("")),
            "currency": params.get("currency").cloned().unwrap_or_default(),
            "total_amount": total,
        });
    }
    message
}

/// `message` after an edit through `method` with (typed) `params`: as Telegram does, the reply
/// markup becomes what the edit passes (absent: removed).
pub fn edited_message(
    method: &str,
    message: &Value,
    date_s: i64,
    params: &Map<String, Value>,
) -> Value {
    let mut edited = message.clone();
    if let Some(object) = edited.as_object_mut() {
        object.insert("edit_date".to_owned(), json!(date_s));
        if method == "editMessageText" {
            for key in ["text", "entities"] {
                match params.get(key) {
                    Some(value) => object.insert(key.to_owned(), value.clone()),
                    None => object.remove(key),
                };
            }
        }
        match inline_markup(params) {
            Some(markup) => object.insert("reply_markup".to_owned(), markup),
            None => object.remove("reply_markup"),
        };
    }
    edited
}

/// A message only keeps an inline keyboard; reply keyboards are not part of the `Message`.
fn inline_markup(params: &Map<String, Value>) -> Option<Value> {
    params
        .get("reply_markup")
        .filter(|m| m.get("inline_keyboard").is_some())
        .cloned()
}

/// What `setWebhook` set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// The URL Telegram would POST updates to.
    pub url: String,
    /// The value of `X-Telegram-Bot-Api-Secret-Token` Telegram would send.
    pub secret_token: Option<String>,
    /// `max_connections`, if given.
    pub max_connections: Option<i64>,
    /// `allowed_updates`, if given.
    pub allowed_updates: Option<Vec<String>>,
}

/// The `getWebhookInfo` answer.
pub fn webhook_info(webhook: Option<&Webhook>, pending_update_count: usize) -> Value {
    let mut info = json!({
        "url": webhook.map(|w| w.url.as_str()).unwrap_or(""),
        "has_custom_certificate": false,
        "pending_update_count": pending_update_count,
    });
    if let Some(webhook) = webhook {
        if let Some(max) = webhook.max_connections {
            info["max_connections"] = json!(max);
        }
        if let Some(allowed) = &webhook.allowed_updates {
            info["allowed_updates"] = json!(allowed);
        }
    }
    info
}

/// The `getStarTransactions` answer: `limit` transactions after skipping `offset`.
pub fn star_transactions(all: &[Value], offset: usize, limit: usize) -> Value {
    let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
    json!({ "transactions": page })
}

/// Telegram's error shape: `{"ok":false,"error_code":…,"description":…}`, with
/// `parameters.retry_after` for flood control.
pub fn error_body(error_code: u16, description: &str, retry_after_s: Option<u32>) -> Value {
    let mut body = json!({"ok": false, "error_code": error_code, "description": description});
    if let Some(retry_after) = retry_after_s {
        body["parameters"] = json!({ "retry_after": retry_after });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn assert_valid_result(method: &str, result: &Value) {
        if let Err(violations) = spec::shared().validate_result(method, result) {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            panic!("canned {method} result is not valid:\n{}", list.join("\n"));
        }
    }

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn every_canned_result_is_valid_per_the_spec() {
        let bot = default_bot_user(123_456);
        assert_valid_result("getMe", &bot);

        let mut rng = fastrand::Rng::with_seed(7);
        let link = invoice_link(&mut rng);
        assert!(
            link.starts_with("https://t.me/$") && link.len() == 14 + 22,
            "{link}"
        );
        assert_valid_result("createInvoiceLink", &json!(link));

        let keyboard = json!({"inline_keyboard": [[{"text": "Pay", "pay": true}], [{"text": "Share", "url": "https://t.me/x"}]]});
        let invoice_params = params(json!({
            "chat_id": 42, "title": "Coffee", "description": "One cup", "payload": "inv_1",
            "currency": "XTR", "prices": [{"label": "Coffee", "amount": 5}], "reply_markup": keyboard,
        }));
        let chats = [
            chat_for(42, None),
            chat_for(-100_123, None),
            chat_for(-100_777, Some("shop")),
        ];
        for chat in chats {
            let invoice = sent_message(
                "sendInvoice",
                1,
                1_700_000_000,
                chat.clone(),
                &bot,
                &invoice_params,
            );
            assert_eq!(invoice["invoice"]["total_amount"], 5);
            assert_valid_result("sendInvoice", &invoice);
            let text = params(
                json!({"chat_id": 42, "text": "Paid ✓", "reply_markup": {"inline_keyboard": []}}),
            );
            let message = sent_message("sendMessage", 2, 1_700_000_000, chat, &bot, &text);
            assert_valid_result("sendMessage", &message);
            let edit = params(json!({"chat_id": 42, "message_id": 2, "text": "Expired"}));
            let edited = edited_message("editMessageText", &message, 1_700_000_100, &edit);
            assert_eq!(edited["text"], "Expired");
            assert!(edited.get("reply_markup").is_none());
            assert_valid_result("editMessageText", &edited);
            let markup = params(json!({"chat_id": 42, "message_id": 1, "reply_markup": keyboard}));
            assert_valid_result(
                "editMessageReplyMarkup",
                &edited_message("editMessageReplyMarkup", &invoice, 1_700_000_100, &markup),
            );
        }
        assert_valid_result("editMessageText", &json!(true));

        for method in [
            "answerPreCheckoutQuery",
            "answerCallbackQuery",
            "refundStarPayment",
            "editUserStarSubscription",
            "setWebhook",
            "deleteWebhook",
        ] {
            assert_valid_result(method, &json!(true));
        }

        assert_valid_result("getWebhookInfo", &webhook_info(None, 0));
        let hook = Webhook {
            url: "https://example.test/telegram/1/webhook".into(),
            secret_token: Some("s3cret".into()),
            max_connections: Some(40),
            allowed_updates: Some(vec!["message".into(), "pre_checkout_query".into()]),
        };
        assert_valid_result("getWebhookInfo", &webhook_info(Some(&hook), 3));

        let transactions: Vec<Value> = (0..3)
            .map(|i| {
                crate::fixtures::star_payment(&format!("ch_{i}"), 5, 1_700_000_000 + i, 42, "inv")
            })
            .collect();
        assert_valid_result(
            "getStarTransactions",
            &star_transactions(&transactions, 1, 100),
        );
        assert_valid_result("getStarTransactions", &star_transactions(&[], 0, 100));
        assert_valid_result("getUpdates", &json!([]));
    }

    #[test]
    fn error_bodies_match_the_response_parameters_type() {
        let body = error_body(429, "Too Many Requests: retry after 3", Some(3));
        assert_eq!(body["parameters"]["retry_after"], 3);
        spec::shared()
            .validate_value("ResponseParameters", &body["parameters"], "parameters")
            .expect("ResponseParameters");
    }

    #[test]
    fn bot_ids_come_from_the_token() {
        assert_eq!(bot_id_from_token("123456:ABC-def"), Some(123_456));
        assert_eq!(bot_id_from_token("nonsense"), None);
    }
}
