//! Builders for the updates and transactions a payment-bot test injects.
//!
//! Each builds the smallest object Telegram would send that is valid per the spec (checked by
//! the tests below); tests add fields with `value["field"] = …` when they need more. Updates
//! are built without `update_id`: [`crate::TelegramDouble::inject_update`] assigns one.

use serde_json::{json, Value};

/// A Telegram user (a person, not a bot).
pub fn user(id: i64, first_name: &str, language_code: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": first_name, "language_code": language_code})
}

/// A private-chat text message from `from` (e.g. `/start inv_123`), with a `bot_command` entity
/// when the text starts with `/`.
pub fn text_message_update(message_id: i64, date_s: i64, from: &Value, text: &str) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "date": date_s,
        "chat": private_chat(from),
        "from": from,
        "text": text,
    });
    if text.starts_with('/') {
        let command_len = text
            .split_whitespace()
            .next()
            .map_or(0, |c| c.encode_utf16().count());
        message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": command_len}]);
    }
    json!({ "message": message })
}

/// A `pre_checkout_query` update: the user confirmed the payment; the bot has 10 s to answer.
pub fn pre_checkout_query_update(
    id: &str,
    from: &Value,
    currency: &str,
    total_amount: i64,
    invoice_payload: &str,
) -> Value {
    json!({
        "pre_checkout_query": {
            "id": id,
            "from": from,
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": invoice_payload,
        }
    })
}

/// A service message with `successful_payment`. For Stars, `provider_payment_charge_id` is
/// empty. Subscriptions: set `successful_payment.subscription_expiration_date`,
/// `is_recurring` and `is_first_recurring` on the result.
pub fn successful_payment_update(
    message_id: i64,
    date_s: i64,
    from: &Value,
    currency: &str,
    total_amount: i64,
    invoice_payload: &str,
    telegram_payment_charge_id: &str,
) -> Value {
    json!({
        "message": {
            "message_id": message_id,
            "date": date_s,
            "chat": private_chat(from),
            "from": from,
            "successful_payment": {
                "currency": currency,
                "total_amount": total_amount,
                "invoice_payload": invoice_payload,
                "telegram_payment_charge_id": telegram_payment_charge_id,
                "provider_payment_charge_id": "",
            }
        }
    })
}

/// A press on an inline button with `data` under the bot's message `message`.
pub fn callback_query_update(id: &str, from: &Value, message: &Value, data: &str) -> Value {
    json!({
        "callback_query": {
            "id": id,
            "from": from,
            "message": message,
            "chat_instance": format!("ci-{}", from["id"]),
            "data": data,
        }
    })
}

/// An incoming Stars payment as `getStarTransactions` lists it; `id` is the
/// `telegram_payment_charge_id` of the `successful_payment`.
pub fn star_payment(
    id: &str,
    amount: i64,
    date_s: i64,
    user_id: i64,
    invoice_payload: &str,
) -> Value {
    json!({
        "id": id,
        "amount": amount,
        "date": date_s,
        "source": {
            "type": "user",
            "transaction_type": "invoice_payment",
            "user": user(user_id, "Payer", "en"),
            "invoice_payload": invoice_payload,
        }
    })
}

/// A refund of the payment `id` (Telegram reuses the original id).
pub fn star_refund(id: &str, amount: i64, date_s: i64, user_id: i64) -> Value {
    json!({
        "id": id,
        "amount": amount,
        "date": date_s,
        "receiver": {
            "type": "user",
            "transaction_type": "invoice_payment",
            "user": user(user_id, "Payer", "en"),
        }
    })
}

/// A withdrawal of Stars to Fragment that succeeded.
pub fn fragment_withdrawal(id: &str, amount: i64, date_s: i64, url: &str) -> Value {
    json!({
        "id": id,
        "amount": amount,
        "date": date_s,
        "receiver": {
            "type": "fragment",
            "withdrawal_state": {"type": "succeeded", "date": date_s, "url": url},
        }
    })
}

fn private_chat(user: &Value) -> Value {
    json!({"id": user["id"], "type": "private", "first_name": user["first_name"]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn assert_valid(type_expr: &str, value: &Value) {
        let mut value = value.clone();
        if type_expr == "Update" {
            value["update_id"] = json!(1);
        }
        if let Err(violations) = spec::shared().validate_value(type_expr, &value, type_expr) {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            panic!("fixture is not a valid {type_expr}:\n{}", list.join("\n"));
        }
    }

    #[test]
    fn every_fixture_is_valid_per_the_spec() {
        let alice = user(42, "Alice", "fa");
        assert_valid("User", &alice);
        let start = text_message_update(1, 1_700_000_000, &alice, "/start inv_1");
        assert_eq!(start["message"]["entities"][0]["length"], 6);
        assert_valid("Update", &start);
        assert_valid(
            "Update",
            &pre_checkout_query_update("pcq_1", &alice, "XTR", 5, "inv_1"),
        );
        assert_valid(
            "Update",
            &successful_payment_update(2, 1_700_000_000, &alice, "XTR", 5, "inv_1", "ch_1"),
        );
        let bot_message = json!({"message_id": 9, "date": 1_700_000_000, "chat": {"id": 42, "type": "private"}, "text": "Tip?"});
        assert_valid(
            "Update",
            &callback_query_update("cb_1", &alice, &bot_message, "tip:5"),
        );
        assert_valid(
            "StarTransaction",
            &star_payment("ch_1", 5, 1_700_000_000, 42, "inv_1"),
        );
        assert_valid(
            "StarTransaction",
            &star_refund("ch_1", 5, 1_700_000_100, 42),
        );
        assert_valid(
            "StarTransaction",
            &fragment_withdrawal("wd_1", 1000, 1_700_000_200, "https://fragment.com/tx/1"),
        );
    }

    #[test]
    fn a_wrong_discriminator_is_caught() {
        let mut withdrawal =
            fragment_withdrawal("wd_1", 1000, 1_700_000_200, "https://fragment.com/tx/1");
        withdrawal["receiver"]["withdrawal_state"]["type"] = json!("succeded");
        let violations = spec::shared()
            .validate_value("StarTransaction", &withdrawal, "tx")
            .expect_err("a misspelt state type is not a RevenueWithdrawalState");
        assert!(!violations.is_empty());
    }
}
