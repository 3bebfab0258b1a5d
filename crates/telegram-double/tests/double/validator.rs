//! The checker accepts the calls a Stars payment bot makes and rejects each kind of mistake,
//! naming where it is.

use serde_json::{json, Map, Value};
use telegram_double::spec::{self, Encoding, SpecViolation, ViolationKind};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        other => panic!("test params must be an object, not {other}"),
    }
}

#[track_caller]
fn accepts(method: &str, params: Value) {
    if let Err(violations) = spec::shared().validate(method, &object(params)) {
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        panic!("{method} should be accepted, but:\n{}", text.join("\n"));
    }
}

#[track_caller]
fn rejects(method: &str, params: Value) -> Vec<SpecViolation> {
    match spec::shared().validate(method, &object(params)) {
        Ok(()) => panic!("{method} should be rejected"),
        Err(violations) => violations,
    }
}

#[track_caller]
fn only(violations: &[SpecViolation]) -> &SpecViolation {
    assert_eq!(
        violations.len(),
        1,
        "expected exactly one violation: {violations:#?}"
    );
    &violations[0]
}

fn stars_invoice_link() -> Value {
    json!({
        "title": "Coffee",
        "description": "One cup of coffee",
        "payload": "inv_01J9Z",
        "currency": "XTR",
        "prices": [{"label": "Coffee", "amount": 5}],
    })
}

#[test]
fn the_spec_is_bot_api_10_1() {
    assert_eq!(spec::shared().version(), "Bot API 10.1");
}

#[test]
fn accepts_a_stars_invoice_link_and_a_subscription() {
    accepts("createInvoiceLink", stars_invoice_link());
    let mut subscription = stars_invoice_link();
    subscription["subscription_period"] = json!(2_592_000);
    accepts("createInvoiceLink", subscription);
    let mut empty_token = stars_invoice_link();
    empty_token["provider_token"] = json!("");
    accepts("createInvoiceLink", empty_token);
}

#[test]
fn accepts_send_invoice_with_a_pay_button_to_a_user_or_a_channel() {
    let mut invoice = stars_invoice_link();
    invoice["chat_id"] = json!(42);
    invoice["start_parameter"] = json!("inv_01J9Z");
    invoice["reply_markup"] = json!({"inline_keyboard": [
        [{"text": "Pay ⭐5", "pay": true}],
        [{"text": "Share", "url": "https://t.me/share/url?url=x"}],
    ]});
    accepts("sendInvoice", invoice.clone());
    invoice["chat_id"] = json!("@farthing_shop");
    accepts("sendInvoice", invoice);
}

#[test]
fn accepts_pre_checkout_answers_refunds_and_subscription_edits() {
    accepts(
        "answerPreCheckoutQuery",
        json!({"pre_checkout_query_id": "pcq_1", "ok": true}),
    );
    accepts(
        "answerPreCheckoutQuery",
        json!({"pre_checkout_query_id": "pcq_1", "ok": false, "error_message": "This invoice has expired."}),
    );
    accepts(
        "refundStarPayment",
        json!({"user_id": 42, "telegram_payment_charge_id": "stxAbC"}),
    );
    for is_canceled in [true, false] {
        accepts(
            "editUserStarSubscription",
            json!({"user_id": 42, "telegram_payment_charge_id": "stxAbC", "is_canceled": is_canceled}),
        );
    }
    accepts("getStarTransactions", json!({}));
    accepts("getStarTransactions", json!({"offset": 100, "limit": 100}));
    accepts("getMe", json!({}));
    accepts(
        "getUpdates",
        json!({"offset": 7, "timeout": 30, "allowed_updates": ["message", "pre_checkout_query"]}),
    );
}

#[test]
fn accepts_json_serialized_objects_inside_strings() {
    let mut link = stars_invoice_link();
    link["prices"] = json!(r#"[{"label":"Coffee","amount":5}]"#);
    accepts("createInvoiceLink", link);
    accepts(
        "sendMessage",
        json!({"chat_id": 42, "text": "Tip?", "reply_markup": r#"{"inline_keyboard":[[{"text":"1 ⭐","callback_data":"tip:1"}]]}"#}),
    );
}

#[test]
fn form_encoded_values_are_text_and_still_checked() {
    let form = |pairs: &[(&str, &str)]| -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect()
    };
    let link = form(&[
        ("title", "Coffee"),
        ("description", "One cup"),
        ("payload", "inv_1"),
        ("currency", "XTR"),
        ("prices", r#"[{"label":"Coffee","amount":5}]"#),
        ("subscription_period", "2592000"),
    ]);
    let spec = spec::shared();
    spec.validate_call("createInvoiceLink", &link, Encoding::Form)
        .expect("valid form call");
    let typed = spec.normalize("createInvoiceLink", &link, Encoding::Form);
    assert_eq!(typed["subscription_period"], json!(2_592_000));
    assert_eq!(typed["prices"][0]["amount"], json!(5));
    // Inside the JSON text, types are JSON types again.
    let mut bad = link.clone();
    bad.insert(
        "prices".into(),
        json!(r#"[{"label":"Coffee","amount":"5"}]"#),
    );
    let violations = spec
        .validate_call("createInvoiceLink", &bad, Encoding::Form)
        .expect_err("amount is text");
    assert_eq!(only(&violations).path, "createInvoiceLink.prices[0].amount");
    let yes = form(&[("pre_checkout_query_id", "q"), ("ok", "yes")]);
    let violations = spec
        .validate_call("answerPreCheckoutQuery", &yes, Encoding::Form)
        .expect_err("yes is no Boolean");
    assert_eq!(only(&violations).path, "answerPreCheckoutQuery.ok");
    let chat = form(&[("chat_id", "-1001234"), ("text", "hi")]);
    let typed = spec.normalize("sendMessage", &chat, Encoding::Form);
    assert_eq!(typed["chat_id"], json!(-1_001_234_i64));
}

#[test]
fn rejects_an_unknown_method_and_names_the_right_spelling() {
    let violation = rejects("createInvoiceUrl", json!({})).remove(0);
    assert_eq!(violation.kind, ViolationKind::UnknownMethod);
    let violation = rejects("createinvoicelink", stars_invoice_link()).remove(0);
    assert_eq!(violation.kind, ViolationKind::UnknownMethod);
    assert!(violation.found.contains("createInvoiceLink"), "{violation}");
}

#[test]
fn rejects_a_missing_required_field() {
    let mut link = stars_invoice_link();
    if let Some(fields) = link.as_object_mut() {
        fields.remove("payload");
    }
    let violations = rejects("createInvoiceLink", link);
    let violation = only(&violations);
    assert_eq!(violation.kind, ViolationKind::MissingField);
    assert_eq!(violation.path, "createInvoiceLink.payload");
    let violations = rejects("answerPreCheckoutQuery", json!({"ok": true}));
    assert_eq!(
        only(&violations).path,
        "answerPreCheckoutQuery.pre_checkout_query_id"
    );
}

#[test]
fn rejects_an_amount_given_as_a_string() {
    let mut link = stars_invoice_link();
    link["prices"][0]["amount"] = json!("5");
    let violations = rejects("createInvoiceLink", link);
    let violation = only(&violations);
    assert_eq!(violation.kind, ViolationKind::WrongType);
    assert_eq!(violation.path, "createInvoiceLink.prices[0].amount");
    assert_eq!(violation.expected, "Integer");
    assert_eq!(violation.found, "string \"5\"");
    assert_eq!(
        violation.to_string(),
        "createInvoiceLink.prices[0].amount: expected Integer, found string \"5\""
    );
}

#[test]
fn rejects_prices_given_as_an_object() {
    let mut link = stars_invoice_link();
    link["prices"] = json!({"label": "Coffee", "amount": 5});
    let violations = rejects("createInvoiceLink", link);
    let violation = only(&violations);
    assert_eq!(violation.kind, ViolationKind::WrongType);
    assert_eq!(violation.path, "createInvoiceLink.prices");
    assert_eq!(violation.expected, "Array of LabeledPrice");
}

#[test]
fn rejects_unknown_fields_at_the_top_and_inside() {
    let mut link = stars_invoice_link();
    link["provider_tokn"] = json!("");
    let violation = only(&rejects("createInvoiceLink", link)).clone();
    assert_eq!(violation.kind, ViolationKind::UnknownField);
    assert_eq!(violation.path, "createInvoiceLink.provider_tokn");
    let mut link = stars_invoice_link();
    link["prices"][0]["currency"] = json!("XTR");
    let violation = only(&rejects("createInvoiceLink", link)).clone();
    assert_eq!(violation.kind, ViolationKind::UnknownField);
    assert_eq!(violation.path, "createInvoiceLink.prices[0].currency");
}

#[test]
fn rejects_a_wrong_type_nested_in_prices() {
    let mut link = stars_invoice_link();
    link["prices"] = json!([{"label": "Coffee", "amount": 5}, {"label": 7, "amount": 1.5}]);
    let violations = rejects("createInvoiceLink", link);
    let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "createInvoiceLink.prices[1].label",
            "createInvoiceLink.prices[1].amount"
        ]
    );
    let mut link = stars_invoice_link();
    link["prices"][0] = json!({"label": "Coffee"});
    let violation = only(&rejects("createInvoiceLink", link)).clone();
    assert_eq!(violation.kind, ViolationKind::MissingField);
    assert_eq!(violation.path, "createInvoiceLink.prices[0].amount");
}

#[test]
fn rejects_a_flat_keyboard_where_rows_are_expected() {
    let violations = rejects(
        "sendMessage",
        json!({"chat_id": 42, "text": "Tip?", "reply_markup": {"inline_keyboard": [{"text": "1 ⭐", "callback_data": "tip:1"}]}}),
    );
    // reply_markup is a union of four keyboards; the violation still points inside it.
    let violation = only(&violations);
    assert!(
        violation.path.starts_with("sendMessage.reply_markup"),
        "{violation}"
    );
    let violations = rejects(
        "sendInvoice",
        json!({"chat_id": 42, "title": "t", "description": "d", "payload": "p", "currency": "XTR",
               "prices": [{"label": "x", "amount": 1}],
               "reply_markup": {"inline_keyboard": [{"text": "Pay", "pay": true}]}}),
    );
    assert_eq!(
        only(&violations).path,
        "sendInvoice.reply_markup.inline_keyboard[0]"
    );
    assert_eq!(only(&violations).expected, "Array of InlineKeyboardButton");
}

#[test]
fn rejects_json_types_that_only_look_right() {
    let violations = rejects(
        "answerPreCheckoutQuery",
        json!({"pre_checkout_query_id": "q", "ok": "true"}),
    );
    assert_eq!(only(&violations).expected, "Boolean");
    let violations = rejects(
        "refundStarPayment",
        json!({"user_id": 42.5, "telegram_payment_charge_id": "c"}),
    );
    assert_eq!(only(&violations).path, "refundStarPayment.user_id");
    let violations = rejects(
        "refundStarPayment",
        json!({"user_id": null, "telegram_payment_charge_id": "c"}),
    );
    assert_eq!(only(&violations).found, "null");
    let violations = rejects("getStarTransactions", json!({"limit": "100"}));
    assert_eq!(only(&violations).path, "getStarTransactions.limit");
    let mut link = stars_invoice_link();
    link["prices"] = json!("not json");
    assert_eq!(
        only(&rejects("createInvoiceLink", link)).path,
        "createInvoiceLink.prices"
    );
}

#[test]
fn unions_are_told_apart_by_their_discriminator() {
    let spec = spec::shared();
    let partner = json!({"type": "user", "transaction_type": "invoice_payment"});
    let violations = spec
        .validate_value("TransactionPartner", &partner, "source")
        .expect_err("a user partner needs its user");
    let violation = only(&violations);
    assert_eq!(violation.kind, ViolationKind::MissingField);
    assert_eq!(violation.path, "source.user");
    spec.validate_value("TransactionPartner", &json!({"type": "other"}), "source")
        .expect("the `other` partner has only a type");
    let violations = spec
        .validate_value("TransactionPartner", &json!({"type": "others"}), "source")
        .expect_err("no partner type is `others`");
    assert!(!violations.is_empty());
}

#[test]
fn documented_prose_rules_are_checked() {
    let spec = spec::shared();
    let rules = |method: &str, params: Value| spec.check_documented_rules(method, &object(params));
    let mut two_prices = stars_invoice_link();
    two_prices["prices"] = json!([{"label": "a", "amount": 5}, {"label": "b", "amount": 1}]);
    let broken = rules("createInvoiceLink", two_prices);
    assert_eq!(only(&broken).kind, ViolationKind::BrokenRule);
    assert_eq!(only(&broken).path, "createInvoiceLink.prices");
    let mut weekly = stars_invoice_link();
    weekly["subscription_period"] = json!(604_800);
    assert_eq!(
        only(&rules("createInvoiceLink", weekly)).path,
        "createInvoiceLink.subscription_period"
    );
    let mut with_token = stars_invoice_link();
    with_token["provider_token"] = json!("284685063:TEST:abc");
    assert_eq!(
        only(&rules("createInvoiceLink", with_token)).path,
        "createInvoiceLink.provider_token"
    );
    let mut fiat = stars_invoice_link();
    fiat["currency"] = json!("EUR");
    assert_eq!(
        only(&rules("createInvoiceLink", fiat.clone())).path,
        "createInvoiceLink.provider_token"
    );
    fiat["provider_token"] = json!("284685063:TEST:abc");
    assert!(rules("createInvoiceLink", fiat).is_empty());
    let refusal = rules(
        "answerPreCheckoutQuery",
        json!({"pre_checkout_query_id": "q", "ok": false}),
    );
    assert_eq!(only(&refusal).path, "answerPreCheckoutQuery.error_message");
    assert!(rules(
        "answerPreCheckoutQuery",
        json!({"pre_checkout_query_id": "q", "ok": true})
    )
    .is_empty());
    let edit = rules("editMessageText", json!({"chat_id": 42, "text": "x"}));
    assert_eq!(only(&edit).path, "editMessageText.message_id");
    assert!(rules("createInvoiceLink", stars_invoice_link()).is_empty());
}
