//! The OpenAPI document (SPEC A3) against the implementation.
//!
//! - Every route of [`farthing_server::ROUTES`] is in the document with its method, and the
//!   document has no other route.
//! - Every write documents `Idempotency-Key`; every operation documents its errors, in the one
//!   error shape; list, path and security parameters are where they belong.
//! - The response schemas match what `render` really writes: same property names both ways,
//!   and each value of the right type.
//! - A running server, driven through every route, answers only statuses the document lists
//!   for that operation, with bodies that validate (strictly: no undocumented property)
//!   against the documented schema; our request bodies validate against the documented
//!   request schemas; and every property of every response schema shows up in some answer.

use crate::support::init_data;
use crate::support::lnbits;
use crate::support::login_widget;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use farthing_core::invoice::{
    InvoiceAmount, InvoicePayment, InvoiceStatus, NewInvoice, MAX_DESCRIPTION_CHARS,
    MAX_EXPIRES_IN_S, MAX_PRESETS, MIN_EXPIRES_IN_S,
};
use farthing_core::{
    ChargeId, Currency, CustomerId, InvoiceId, MerchantId, PublicId, Rail, RefundId, TransferId,
    WebhookEndpointId,
};
use farthing_server::config::Config;
use farthing_server::ids::new_id;
use farthing_server::openapi;
use farthing_server::settlement::{settle_payment, IncomingPayment};
use farthing_server::state::Mode;
use farthing_server::web::error::ApiError;
use farthing_server::{create_merchant, render, start, ROUTES};
use farthing_store::{Charge, Customer, Refund, WebhookEndpoint};
use lnbits::Lnbits;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(openapi::json()).expect("the document is JSON")
}

/// Every operation of the document: `(METHOD, path, operation)`.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut all = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (key, operation) in item {
            assert!(
                METHODS.contains(&key.as_str()),
                "{path}: unexpected key {key:?} in the path item"
            );
            all.push((key.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    all
}

fn schemas(doc: &Value) -> &Map<String, Value> {
    doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas is an object")
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    schemas(doc)
        .get(name)
        .unwrap_or_else(|| panic!("no schema {name:?} in the document"))
}

fn properties(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("an object schema with properties")
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

/// The media type without its parameters: `text/html; charset=utf-8` → `text/html`.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_error_ref(response: &Value) -> bool {
    response["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
}

/// Operations that can't answer a 4xx at all, so document none: the probes, the document
/// itself, and the checkout page, whose "not found" is an HTML page for a person.
const NO_JSON_CLIENT_ERRORS: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/pay/{id}"),
];

/// Writes that take no Idempotency-Key because something else makes them idempotent. Outside
/// the Merchant API: the checkout page's sandbox button (paying twice is refused as
/// `invoice_not_open` instead), and Telegram's webhook, deduplicated by Telegram's own ids
/// (`telegram_payment_charge_id`). In it: a payout is idempotent by the BOLT11's payment hash
/// (a second payout of the same BOLT11 is refused 409 `payout_exists`, so a retry never pays
/// twice). Being idempotent by design, these document no 422 either.
const WRITES_WITHOUT_IDEMPOTENCY: &[(&str, &str)] = &[
    ("POST", "/pay/{id}/sandbox"),
    // The checkout page's TON Connect request for a jetton writes nothing: it is computed.
    ("POST", "/pay/{id}/ton-connect"),
    ("POST", "/telegram/{bot_id}/webhook"),
    ("POST", "/v1/payouts"),
    // A Mini App session writes only the customer `tg:<id>`, found again on the next call; a
    // Mini App payment is the invoice's own transfer (a repeat answers the paid invoice).
    ("POST", "/webapp/session"),
    ("POST", "/webapp/pay/{invoice}"),
    // A dashboard login writes nothing: it checks the widget's data and signs a session.
    ("POST", "/dashboard/login/telegram"),
    // An LNURL dashboard sign-in makes a fresh single-use challenge each time: a repeat makes
    // another challenge and moves nothing.
    ("POST", "/dashboard/login/lnurl"),
    // A refund request's decision is idempotent by the request: a repeat answers it as it
    // stands (the approval's refund is made under a key derived from the request id).
    ("POST", "/v1/refund_requests/{id}/approve"),
    ("POST", "/v1/refund_requests/{id}/decline"),
    // Step-up answers secrets (an enrolment, kept for no replay) or moves one state forward: a
    // repeat finds the state it left (`step_up_active`, a used code, step-up already off).
    ("POST", "/v1/step_up/enroll"),
    ("POST", "/v1/step_up/confirm"),
    ("DELETE", "/v1/step_up"),
];

/// The public LNURL endpoints wallets call (LUD-03, LUD-04, LUD-06, LUD-16) are exempt from
/// the one error shape: the LNURL protocol fixes their refusals as `{"status": "ERROR",
/// "reason": …}` (wallets show `reason` to the payer), so their JSON errors must reference the
/// `LnurlStatus` schema instead of `Error`, and they must document at least one such 4xx.
fn is_lnurl_public(path: &str) -> bool {
    path.starts_with("/lnurl/") || path.starts_with("/.well-known/lnurlp/")
}

fn is_lnurl_status_ref(response: &Value) -> bool {
    response["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/LnurlStatus"
}

// ---------------------------------------------------------------------------------------------
// A small JSON Schema checker for what utoipa writes: $ref, oneOf, type (one or a list), enum,
// minimum, properties / required / additionalProperties, items. Objects with `properties`
// are closed: an undocumented property is an error.
// ---------------------------------------------------------------------------------------------

struct Checker<'a> {
    schemas: &'a Map<String, Value>,
    /// For each component schema: the property names seen in values that matched it.
    seen: BTreeMap<String, BTreeSet<String>>,
}

impl<'a> Checker<'a> {
    fn new(doc: &'a Value) -> Self {
        Checker {
            schemas: schemas(doc),
            seen: BTreeMap::new(),
        }
    }

    fn merge(&mut self, seen: BTreeMap<String, BTreeSet<String>>) {
        for (name, keys) in seen {
            self.seen.entry(name).or_default().extend(keys);
        }
    }

    fn check(&mut self, value: &Value, schema: &Value, at: &str) -> Result<(), String> {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .ok_or_else(|| format!("{at}: unsupported $ref {reference}"))?;
            let target = self
                .schemas
                .get(name)
                .ok_or_else(|| format!("{at}: $ref to a missing schema {name}"))?;
            self.check(value, target, &format!("{at}<{name}>"))?;
            if let (Value::Object(map), Some(_)) = (value, target.get("properties")) {
                self.seen
                    .entry(name.to_owned())
                    .or_default()
                    .extend(map.keys().cloned());
            }
            return Ok(());
        }
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let mut matched = Vec::new();
            let mut failures = Vec::new();
            for branch in branches {
                let mut fork = Checker {
                    schemas: self.schemas,
                    seen: BTreeMap::new(),
                };
                match fork.check(value, branch, at) {
                    Ok(()) => matched.push(fork.seen),
                    Err(error) => failures.push(error),
                }
            }
            if matched.len() != 1 {
                return Err(format!(
                    "{at}: {value} matches {} of the oneOf branches (exactly one must): {failures:?}",
                    matched.len()
                ));
            }
            let seen = matched.pop().unwrap_or_default();
            self.merge(seen);
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                return Err(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                other => return Err(format!("{at}: bad type {other}")),
            };
            let fits = |kind: &str| match kind {
                "null" => value.is_null(),
                "boolean" => value.is_boolean(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "string" => value.is_string(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                _ => false,
            };
            if !types.iter().any(|kind| fits(kind)) {
                return Err(format!("{at}: {value} is not of type {types:?}"));
            }
        }
        if let (Some(minimum), Some(number)) = (
            schema.get("minimum").and_then(Value::as_f64),
            value.as_f64(),
        ) {
            if number < minimum {
                return Err(format!("{at}: {value} is below the minimum {minimum}"));
            }
        }
        match value {
            Value::Object(map) => {
                if let Some(required) = schema.get("required").and_then(Value::as_array) {
                    for name in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(name) {
                            return Err(format!("{at}: required property {name:?} is missing"));
                        }
                    }
                }
                let documented = schema.get("properties").and_then(Value::as_object);
                for (key, item) in map {
                    let path = format!("{at}.{key}");
                    match (
                        documented.and_then(|p| p.get(key)),
                        schema.get("additionalProperties"),
                    ) {
                        (Some(sub), _) => self.check(item, sub, &path)?,
                        (None, Some(extra @ Value::Object(_))) => self.check(item, extra, &path)?,
                        (None, Some(Value::Bool(true))) => {}
                        (None, _) if documented.is_some() => {
                            return Err(format!("{at}: undocumented property {key:?}"))
                        }
                        (None, _) => {}
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &format!("{at}[{i}]"))?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    #[track_caller]
    fn assert_valid(&mut self, value: &Value, schema_name: &str) {
        let reference = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        if let Err(error) = self.check(value, &reference, schema_name) {
            panic!("{value:#}\ndoes not match the documented schema: {error}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The document's structure
// ---------------------------------------------------------------------------------------------

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(routes.len(), ROUTES.len(), "ROUTES lists a route twice");
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /openapi.json: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&routes).collect();
    assert!(
        unserved.is_empty(),
        "/openapi.json documents routes the server does not have: {unserved:?}"
    );
}

#[test]
fn every_write_documents_the_idempotency_key() {
    let doc = document();
    let mut writes = 0;
    for (method, path, operation) in operations(&doc) {
        if method == "GET" || WRITES_WITHOUT_IDEMPOTENCY.contains(&(method.as_str(), path.as_str()))
        {
            continue;
        }
        writes += 1;
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let header = parameters
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap_or_else(|| panic!("{method} {path} does not document Idempotency-Key"));
        assert_eq!(header["in"], "header", "{method} {path}");
        assert_eq!(header["required"], false, "{method} {path}");
        assert!(
            operation["responses"]["422"].is_object(),
            "{method} {path} does not document 422 for a reused Idempotency-Key"
        );
        // A malformed key is refused before anything else (schemathesis found this missing).
        assert!(
            operation["responses"]["400"].is_object(),
            "{method} {path} does not document 400 for a malformed Idempotency-Key"
        );
    }
    // Every POST of the Merchant API, and DELETE.
    assert_eq!(
        writes,
        ROUTES
            .iter()
            .filter(|(m, p)| *m != "GET" && !WRITES_WITHOUT_IDEMPOTENCY.contains(&(*m, *p)))
            .count()
    );
    for (method, path) in ROUTES {
        if *method == "POST" && !path.starts_with("/v1/") {
            assert!(
                WRITES_WITHOUT_IDEMPOTENCY.contains(&(*method, *path)),
                "{method} {path}: a new POST outside /v1 must take Idempotency-Key or be listed"
            );
        }
    }
}

#[test]
fn every_operation_documents_its_errors_in_the_one_error_shape() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has no responses"));
        let success: Vec<_> = responses.keys().filter(|s| s.starts_with('2')).collect();
        assert!(!success.is_empty(), "{method} {path}: no success response");
        let exempt = NO_JSON_CLIENT_ERRORS.contains(&(method.as_str(), path.as_str()));
        let lnurl = is_lnurl_public(&path);
        // The error schema of this operation: LNURL's own for the public LNURL endpoints.
        let (error_schema, is_error_schema): (&str, fn(&Value) -> bool) = if lnurl {
            ("LnurlStatus", is_lnurl_status_ref)
        } else {
            ("Error", is_error_ref)
        };
        let client_errors: Vec<&String> = responses
            .iter()
            .filter(|(status, response)| status.starts_with('4') && is_error_schema(response))
            .map(|(status, _)| status)
            .collect();
        if !exempt {
            assert!(
                !client_errors.is_empty(),
                "{method} {path} documents no 4xx answer referencing the {error_schema} schema"
            );
        }
        for (status, response) in responses {
            let description = response["description"].as_str().unwrap_or("");
            assert!(
                !description.is_empty(),
                "{method} {path} {status}: no description"
            );
            let json_error = (status.starts_with('4') || status.starts_with('5'))
                && response["content"]
                    .as_object()
                    .is_some_and(|c| c.contains_key("application/json"));
            if json_error {
                assert!(
                    is_error_schema(response),
                    "{method} {path} {status}: a JSON error must reference the {error_schema} schema"
                );
            }
        }
        if path.starts_with("/v1/") {
            for status in ["401", "403", "500"] {
                assert!(
                    is_error_ref(&responses[status]),
                    "{method} {path}: every /v1 operation can answer {status}"
                );
            }
            if method != "GET" {
                assert!(
                    is_error_ref(&responses["503"]),
                    "{method} {path}: every /v1 write can answer 503"
                );
                if !WRITES_WITHOUT_IDEMPOTENCY.contains(&(method.as_str(), path.as_str())) {
                    assert!(
                        is_error_ref(&responses["422"]),
                        "{method} {path}: every /v1 write that takes an Idempotency-Key can answer 422"
                    );
                }
            }
            if method == "POST" {
                assert!(
                    is_error_ref(&responses["413"]),
                    "{method} {path}: every /v1 POST reads a body, so can answer 413"
                );
            }
            if path.contains("{id}") {
                assert!(
                    is_error_ref(&responses["404"]),
                    "{method} {path}: an operation on an id can answer 404"
                );
            }
        }
    }
    // The Error schema is the SPEC A2 shape, and nothing else.
    let error = schema(&doc, "Error");
    assert_eq!(properties(error), BTreeSet::from(["error".to_owned()]));
    let detail = schema(&doc, "ErrorDetail");
    let expected: BTreeSet<String> = [
        "type",
        "code",
        "message",
        "param",
        "available",
        "requested",
        "decision",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(properties(detail), expected);
    // The four are required; the amounts come with refused payments only.
    let required: BTreeSet<String> = detail["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    let four: BTreeSet<String> = ["type", "code", "message", "param"]
        .map(str::to_owned)
        .into();
    assert_eq!(required, four);
}

/// The main operations carry request and response examples, and every example in the
/// document matches the schema it illustrates (the checker above: types, enums, required and
/// undocumented properties).
#[test]
fn examples_exist_for_the_main_operations_and_match_their_schemas() {
    let doc = document();
    let mut checker = Checker::new(&doc);
    let mut illustrated = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut contents = Vec::new();
        if let Some(content) = operation["requestBody"]["content"].as_object() {
            contents.extend(
                content
                    .iter()
                    .map(|(_, c)| ("request".to_owned(), c.clone())),
            );
        }
        if let Some(responses) = operation["responses"].as_object() {
            for (status, response) in responses {
                if let Some(content) = response["content"].as_object() {
                    contents.extend(content.iter().map(|(_, c)| (status.clone(), c.clone())));
                }
            }
        }
        for (part, content) in contents {
            let Some(example) = content.get("example") else {
                continue;
            };
            if let Err(error) = checker.check(
                example,
                &content["schema"],
                &format!("{method} {path} {part}"),
            ) {
                panic!("{method} {path}: the {part} example does not match its schema: {error}");
            }
            illustrated.insert(format!("{id} {part}"));
        }
    }
    for wanted in [
        "create_invoice request",
        "create_invoice 201",
        "create_customer request",
        "create_customer 201",
        "create_charge request",
        "create_charge 201",
        "create_charge 402",
        "create_refund request",
        "create_refund 201",
        "customer_statement 200",
    ] {
        assert!(
            illustrated.contains(wanted),
            "no example for {wanted}: {illustrated:?}"
        );
    }
}

#[test]
fn operations_are_well_formed() {
    let doc = document();
    let text = openapi::json();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path}: no summary"
        );
        assert!(
            operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path}: no tag"
        );
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let named = |name: &str, place: &str| {
            parameters
                .iter()
                .any(|p| p["name"] == name && p["in"] == place)
        };
        // Path parameters: exactly those in the template, required.
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let in_path: BTreeSet<&str> = parameters
            .iter()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(in_template, in_path, "{method} {path}: path parameters");
        for p in parameters.iter().filter(|p| p["in"] == "path") {
            assert_eq!(p["required"], true, "{method} {path}");
            let description = p["description"].as_str().unwrap_or("");
            // Path parameters that are not prefixed farthing ids each say what they are.
            let (says, what) = match p["name"].as_str().unwrap_or("") {
                // Telegram's own numeric bot id, not a farthing id.
                "bot_id" => continue,
                // The LNURL paths' mode segment.
                "mode" => (
                    description.contains("`live`") && description.contains("`test`"),
                    "names the modes",
                ),
                // The local part of a Lightning Address.
                "name" => (
                    description.contains("`name@host`"),
                    "says it is the name of `name@host`",
                ),
                // LNURL links and challenges are named by their k1 (32 random bytes, hex), not
                // by a prefixed id, on the LNURL paths and in the Merchant API alike.
                "k1" => (description.contains("hex"), "says k1 is hex"),
                // The checkout page's embedded assets are named by file.
                "file" => (description.contains("`checkout.js`"), "names the files"),
                // A TON payment is named by its transaction hash.
                "id" if path.starts_with("/v1/rails/ton/payments/") => (
                    description.contains("url-safe base64"),
                    "says the id is the transaction hash",
                ),
                "id" if path.starts_with("/v1/lnurl/")
                    || path.starts_with("/v1/dashboard/owners/lnurl/")
                    || path.starts_with("/dashboard/login/lnurl/") =>
                {
                    (
                        description.contains("k1") && description.contains("hex"),
                        "says the id is the k1, hex",
                    )
                }
                _ => (description.contains("_…`"), "names the id's prefix"),
            };
            assert!(
                says,
                "{method} {path}: the parameter {what}: {description:?}"
            );
        }
        // Lists take limit and starting_after.
        let is_list = method == "GET"
            && path.starts_with("/v1/")
            && !path.contains('{')
            && path != "/v1/rails"
            && path != "/v1/settings"
            && path != "/v1/balance"
            && path != "/v1/step_up"
            && path != "/v1/risk/rules"
            && path != "/v1/api_keys";
        if is_list {
            assert!(named("limit", "query"), "{method} {path}: no limit");
            assert!(
                named("starting_after", "query"),
                "{method} {path}: no starting_after"
            );
            assert!(
                is_error_ref(&operation["responses"]["400"]),
                "{method} {path}: a bad limit is a 400"
            );
        }
        // The Merchant API needs the bearer key; a Mini App payment its session; the rest
        // needs nothing.
        if path.starts_with("/v1/") {
            assert_eq!(
                operation["security"],
                json!([{"bearer": []}]),
                "{method} {path}"
            );
        } else if path == "/webapp/pay/{invoice}" {
            assert_eq!(
                operation["security"],
                json!([{"webapp_session": []}]),
                "{method} {path}"
            );
        } else if path == "/dashboard/me" {
            assert_eq!(
                operation["security"],
                json!([{"dashboard_session": []}]),
                "{method} {path}"
            );
        } else {
            assert!(operation.get("security").is_none(), "{method} {path}");
        }
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let described = scheme["description"].as_str().unwrap_or("");
    assert!(described.contains("fk_live_") && described.contains("fk_test_"));
    // Every $ref resolves.
    for piece in text.split("\"$ref\":\"").skip(1) {
        let reference = piece.split('"').next().unwrap_or("");
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
        assert!(
            schemas(&doc).contains_key(name),
            "dangling $ref {reference}"
        );
    }
}

#[test]
fn schema_limits_and_enumerations_match_the_code() {
    let doc = document();
    let create = &schema(&doc, "CreateInvoice")["properties"];
    assert_eq!(create["expires_in"]["minimum"], json!(MIN_EXPIRES_IN_S));
    assert_eq!(create["expires_in"]["maximum"], json!(MAX_EXPIRES_IN_S));
    assert_eq!(
        create["expires_in"]["default"],
        json!(farthing_core::invoice::DEFAULT_EXPIRES_IN_S)
    );
    assert_eq!(
        create["description"]["maxLength"],
        json!(MAX_DESCRIPTION_CHARS)
    );
    assert_eq!(create["amount_presets"]["maxItems"], json!(MAX_PRESETS));
    // Amounts are integers in minor units wherever a request takes one.
    for (body, field) in [
        ("CreateInvoice", "amount"),
        ("CreateInvoice", "amount_min"),
        ("CreateInvoice", "amount_max"),
        ("PayInvoice", "amount"),
        ("CreateCharge", "amount"),
        ("CreateRefund", "amount"),
        ("SandboxPay", "amount"),
        ("TopUp", "amount"),
    ] {
        let property = &schema(&doc, body)["properties"][field];
        let kind = &property["type"];
        assert!(
            kind == "integer" || kind == &json!(["integer", "null"]),
            "{body}.{field} is documented as {kind}"
        );
        assert_eq!(property["minimum"], 1, "{body}.{field}");
    }
    // Every invoice status the document names is one the core knows, and all of them are named.
    let statuses = schema(&doc, "InvoiceStatus")["enum"]
        .as_array()
        .expect("InvoiceStatus is an enum")
        .clone();
    assert_eq!(statuses.len(), 6);
    for status in &statuses {
        let name = status.as_str().expect("a string");
        let parsed = InvoiceStatus::parse(name).unwrap_or_else(|| panic!("unknown {name}"));
        assert_eq!(parsed.as_str(), name);
    }
    let rails: Vec<Value> = Rail::ALL.iter().map(|r| json!(r.as_str())).collect();
    assert_eq!(schema(&doc, "RailName")["enum"], json!(rails));
    let events: Vec<Value> = farthing_server::http::events::EVENT_TYPES
        .iter()
        .map(|e| json!(e))
        .collect();
    assert_eq!(schema(&doc, "EventType")["enum"], json!(events));
    // Every kind of error the server makes is a documented `type`.
    let mut checker = Checker::new(&doc);
    for error in [
        ApiError::invalid("invalid_amount", "bad").param("amount"),
        ApiError::not_found("invoice", "inv_x"),
        ApiError::no_route("/nowhere"),
        ApiError::unauthorized("missing_api_key", "no key"),
        ApiError::forbidden("missing_scope", "no scope"),
        ApiError::payment("insufficient_funds", "poor"),
        ApiError::conflict("invoice_not_open", "paid"),
        ApiError::idempotency("reused"),
        ApiError::too_large(10),
        ApiError::unavailable("busy"),
        ApiError::internal("test"),
    ] {
        checker.assert_valid(&error.body(), "Error");
    }
}

// ---------------------------------------------------------------------------------------------
// render.rs against the schemas
// ---------------------------------------------------------------------------------------------

fn now_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_nanos()).expect("fits")
}

#[track_caller]
fn assert_same_properties(doc: &Value, name: &str, value: &Value, absent: &[&str]) {
    let mut documented = properties(schema(doc, name));
    for name in absent {
        assert!(documented.remove(*name), "{name} is not documented");
    }
    assert_eq!(
        keys(value),
        documented,
        "the {name} schema and the rendered JSON name different properties"
    );
}

#[test]
fn rendered_objects_match_their_schemas() {
    let doc = document();
    let mut checker = Checker::new(&doc);
    let now = now_ns();
    let merchant: MerchantId = new_id();
    let customer_id: CustomerId = new_id();
    let url = "http://127.0.0.1:8080/pay/inv_x";

    // Invoices: fixed and open, amountless and canceled, paid by a customer.
    let fixed = NewInvoice {
        currency: Currency::USD,
        amount: InvoiceAmount::Fixed(500),
        description: "Coffee".to_owned(),
        payload: Some("order-1".to_owned()),
        rails: vec![Rail::Balance, Rail::Sandbox],
        customer: Some(customer_id),
        expires_in_s: 900,
        metadata: vec![("plan".to_owned(), "pro".to_owned())],
    };
    let invoice_id: InvoiceId = new_id();
    let mut invoice = fixed
        .into_invoice(invoice_id, merchant, now)
        .expect("a valid invoice");
    let open = Value::from(render::invoice(&invoice, Mode::Test, url));
    assert_same_properties(&doc, "Invoice", &open, &[]);
    checker.assert_valid(&open, "Invoice");
    // With a Stars invoice link and a BOLT11: every rail's payment instructions.
    let mut instructed = invoice.clone();
    instructed.instructions.insert(
        Rail::Stars,
        serde_json::json!({"invoice_link": "https://t.me/$abc"}).to_string(),
    );
    instructed.instructions.insert(
        Rail::Card,
        serde_json::json!({"invoice_link": "https://t.me/$card"}).to_string(),
    );
    instructed.instructions.insert(
        Rail::Lightning,
        serde_json::json!({"bolt11": "lnbc5u1pexample", "uri": "lightning:lnbc5u1pexample"})
            .to_string(),
    );
    instructed.instructions.insert(
        Rail::Ton,
        serde_json::json!({"address": "UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p", "network": "mainnet",
            "currency": "TON", "jetton_master": null, "amount_minor": 500, "comment": "K7M2Q9XH4D",
            "comment_required": true, "link": "ton://transfer/UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p?amount=500&text=K7M2Q9XH4D",
            "ton_connect": {"valid_until": 1, "network": "-239", "messages": []}, "expires_at": 1, "warning": "Write the comment exactly."})
            .to_string(),
    );
    let rendered = Value::from(render::invoice(&instructed, Mode::Live, url));
    assert_same_properties(
        &doc,
        "PaymentInstructions",
        &rendered["payment_instructions"],
        &[],
    );
    assert_same_properties(
        &doc,
        "LightningInstructions",
        &rendered["payment_instructions"]["lightning"],
        &[],
    );
    assert_eq!(
        rendered["payment_instructions"]["lightning"]["uri"],
        "lightning:lnbc5u1pexample"
    );
    checker.assert_valid(&rendered, "Invoice");
    invoice
        .mark_paid(InvoicePayment {
            amount_minor: 500,
            rail: Rail::Balance,
            customer: Some(customer_id),
            transfer_id: TransferId(invoice_id.raw()),
            paid_at_ns: now,
        })
        .expect("pays");
    let paid = Value::from(render::invoice(&invoice, Mode::Live, url));
    assert_same_properties(&doc, "Invoice", &paid, &[]);
    checker.assert_valid(&paid, "Invoice");
    let amountless = NewInvoice {
        currency: Currency::XTR,
        amount: InvoiceAmount::Open {
            presets: vec![10, 50],
            min_minor: 1,
            max_minor: 1000,
        },
        description: String::new(),
        payload: None,
        rails: vec![Rail::Balance],
        customer: None,
        expires_in_s: 60,
        metadata: Vec::new(),
    };
    let mut amountless = amountless
        .into_invoice(new_id(), merchant, now)
        .expect("a valid invoice");
    amountless.cancel(now).expect("cancels");
    let canceled = Value::from(render::invoice(&amountless, Mode::Test, url));
    assert_same_properties(&doc, "Invoice", &canceled, &[]);
    checker.assert_valid(&canceled, "Invoice");
    let list = render::list(vec![open, paid, canceled], true, "/v1/invoices");
    assert_same_properties(&doc, "InvoiceList", &list, &[]);
    checker.assert_valid(&list, "InvoiceList");

    // A customer with a balance, and without.
    let customer = Customer {
        id: customer_id,
        merchant,
        external_id: Some("tg:42".to_owned()),
        metadata: vec![("k".to_owned(), "v".to_owned())],
        created_at_ns: now,
    };
    let rendered = Value::from(render::customer(
        &customer,
        Mode::Test,
        &[(Currency::USD, 1000, 900)],
    ));
    assert_same_properties(&doc, "Customer", &rendered, &[]);
    assert_same_properties(&doc, "Balance", &rendered["balances"][0], &[]);
    checker.assert_valid(&rendered, "Customer");
    let bare = Customer {
        external_id: None,
        metadata: Vec::new(),
        ..customer
    };
    checker.assert_valid(
        &Value::from(render::customer(&bare, Mode::Live, &[])),
        "Customer",
    );

    // A charge and refunds of it and of an invoice.
    let charge_id: ChargeId = new_id();
    let charge = Charge {
        id: charge_id,
        merchant,
        customer: customer_id,
        currency: Currency::USD,
        amount_minor: 100,
        refunded_minor: 40,
        description: "1 AI generation".to_owned(),
        metadata: vec![("generation".to_owned(), "gen_42".to_owned())],
        created_at_ns: now,
    };
    let rendered = Value::from(render::charge(&charge, Mode::Test));
    assert_same_properties(&doc, "Charge", &rendered, &[]);
    checker.assert_valid(&rendered, "Charge");
    let refund_id: RefundId = new_id();
    let refund = Refund {
        id: refund_id,
        merchant,
        invoice: None,
        charge: Some(charge_id),
        customer: customer_id,
        currency: Currency::USD,
        amount_minor: 40,
        reason: Some("duplicate".to_owned()),
        metadata: vec![("ticket".to_owned(), "T-7".to_owned())],
        created_at_ns: now,
        rail: None,
        status: farthing_store::RefundStatus::Succeeded,
        next_action: None,
    };
    let rendered = Value::from(render::refund(&refund, Mode::Test));
    assert_same_properties(&doc, "Refund", &rendered, &[]);
    checker.assert_valid(&rendered, "Refund");
    let of_invoice = Refund {
        invoice: Some(invoice_id),
        charge: None,
        reason: None,
        ..refund
    };
    checker.assert_valid(
        &Value::from(render::refund(&of_invoice, Mode::Live)),
        "Refund",
    );
    let through_rail = Refund {
        rail: Some(farthing_core::Rail::Stars),
        ..of_invoice
    };
    let rendered = Value::from(render::refund(&through_rail, Mode::Live));
    assert_eq!(rendered["destination"], "rail");
    checker.assert_valid(&rendered, "Refund");
    let pending = Refund {
        rail: Some(farthing_core::Rail::Ton),
        status: farthing_store::RefundStatus::Pending,
        next_action: Some(
            r#"{"type": "ton_transfer", "ton_transfer": {"comment": "Refund K7M2Q9XH4D"}}"#
                .to_owned(),
        ),
        ..through_rail
    };
    let rendered = Value::from(render::refund(&pending, Mode::Live));
    assert_eq!(rendered["status"], "pending");
    assert_eq!(rendered["next_action"]["type"], "ton_transfer");
    checker.assert_valid(&rendered, "Refund");

    // A webhook endpoint: the secret only when created; `deleted` only in DELETE's answer.
    let endpoint_id: WebhookEndpointId = new_id();
    let endpoint = WebhookEndpoint {
        id: endpoint_id,
        merchant,
        url: "https://example.com/hook".to_owned(),
        secret: "whsec_c2VjcmV0".to_owned(),
        events: vec!["invoice.paid".to_owned(), "charge.succeeded".to_owned()],
        status: "enabled".to_owned(),
        disabled_reason: None,
        created_at_ns: now,
    };
    let created = Value::from(render::endpoint(&endpoint, Mode::Test, true));
    assert_same_properties(&doc, "WebhookEndpoint", &created, &["deleted"]);
    checker.assert_valid(&created, "WebhookEndpoint");
    let disabled = WebhookEndpoint {
        status: "disabled".to_owned(),
        disabled_reason: Some("the endpoint answered 410 Gone".to_owned()),
        events: vec!["*".to_owned()],
        ..endpoint
    };
    let listed = Value::from(render::endpoint(&disabled, Mode::Test, false));
    assert_same_properties(&doc, "WebhookEndpoint", &listed, &["deleted", "secret"]);
    checker.assert_valid(&listed, "WebhookEndpoint");

    // A refund request made in the bot, pending and approved.
    let mut request = farthing_store::RefundRequest {
        id: new_id(),
        merchant: new_id(),
        customer: new_id(),
        invoice: new_id(),
        telegram_user_id: 777,
        lang: "fa".to_owned(),
        status: farthing_store::RefundRequestStatus::Pending,
        refund: None,
        created_at_ns: 1,
        updated_at_ns: 1,
    };
    for _ in 0..2 {
        let rendered = Value::from(farthing_server::http::settings::render_request(
            &request,
            Mode::Test,
        ));
        assert_same_properties(&doc, "RefundRequestObject", &rendered, &[]);
        checker.assert_valid(&rendered, "RefundRequestObject");
        request.status = farthing_store::RefundRequestStatus::Approved;
        request.refund = Some(new_id());
    }

    // The error shape.
    let error = ApiError::invalid("invalid_amount", "bad amount").param("amount");
    assert_same_properties(&doc, "Error", &error.body(), &[]);
    assert_same_properties(
        &doc,
        "ErrorDetail",
        &error.body()["error"],
        &["available", "requested", "decision"],
    );
    checker.assert_valid(&error.body(), "Error");
}

// ---------------------------------------------------------------------------------------------
// A running server against the document
// ---------------------------------------------------------------------------------------------

struct Client<'a> {
    base: String,
    http: reqwest::Client,
    doc: &'a Value,
    checker: Checker<'a>,
    /// Routes that answered 2xx at least once.
    succeeded: BTreeSet<(String, String)>,
}

struct Call<'k> {
    method: &'static str,
    /// The documented route, e.g. `/v1/invoices/{id}`.
    route: &'static str,
    /// The concrete path and query.
    path: String,
    key: Option<&'k str>,
    body: Option<Value>,
    idempotency_key: Option<&'k str>,
    headers: Vec<(&'static str, String)>,
}

fn call<'k>(method: &'static str, route: &'static str, path: impl Into<String>) -> Call<'k> {
    Call {
        method,
        route,
        path: path.into(),
        key: None,
        body: None,
        idempotency_key: None,
        headers: Vec::new(),
    }
}

impl<'k> Call<'k> {
    fn key(mut self, key: &'k str) -> Self {
        self.key = Some(key);
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn idempotency_key(mut self, key: &'k str) -> Self {
        self.idempotency_key = Some(key);
        self
    }
}

impl Client<'_> {
    fn operation(&self, method: &str, route: &str) -> &Value {
        let operation = &self.doc["paths"][route][method.to_ascii_lowercase()];
        assert!(operation.is_object(), "{method} {route} is not documented");
        operation
    }

    /// Sends `call` (a JSON body as it is, or `raw` bytes) and checks the answer against the
    /// document; returns the status and the body (JSON, or the text as a JSON string).
    async fn send_with(&mut self, call: Call<'_>, raw: Option<Vec<u8>>) -> (u16, Value) {
        let (method, route) = (call.method, call.route);
        let operation = self.operation(method, route).clone();
        if let Some(body) = &call.body {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                schema.is_object(),
                "{method} {route} documents no JSON request body"
            );
            if let Err(error) = self.checker.check(body, schema, "request") {
                panic!("{method} {route}: our request body {body} does not match the documented request schema: {error}");
            }
        }
        let mut request = self.http.request(
            method.parse().expect("a method"),
            format!("{}{}", self.base, call.path),
        );
        if let Some(key) = call.key {
            request = request.bearer_auth(key);
        }
        if let Some(idempotency_key) = call.idempotency_key {
            request = request.header("Idempotency-Key", idempotency_key);
        }
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &call.body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        } else if let Some(raw) = raw {
            request = request.header("Content-Type", "application/json").body(raw);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.expect("a body");
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {} answered {status}, which the document does not list for {method} {route}: {text}",
            call.path
        );
        let contents = documented["content"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let media = contents
            .iter()
            .find(|(documented, _)| essence(documented) == essence(&content_type))
            .unwrap_or_else(|| {
                panic!(
                    "{method} {route} {status}: answered {content_type:?}, documented {:?}",
                    contents.keys().collect::<Vec<_>>()
                )
            })
            .1
            .clone();
        if essence(&content_type) == "application/json" {
            let body: Value = serde_json::from_str(&text).expect("a JSON body");
            if let Err(error) = self.checker.check(&body, &media["schema"], route) {
                panic!("{method} {} answered {status} with\n{body:#}\nwhich does not match the documented schema: {error}", call.path);
            }
            if (200..300).contains(&status) {
                self.succeeded.insert((method.to_owned(), route.to_owned()));
            }
            (status, body)
        } else {
            assert_eq!(media["schema"]["type"], "string", "{method} {route}");
            if (200..300).contains(&status) {
                self.succeeded.insert((method.to_owned(), route.to_owned()));
            }
            (status, Value::String(text))
        }
    }

    async fn send(&mut self, call: Call<'_>) -> (u16, Value) {
        self.send_with(call, None).await
    }

    /// Sends and asserts the status; returns the body.
    async fn expect(&mut self, status: u16, call: Call<'_>) -> Value {
        let what = format!("{} {}", call.method, call.path);
        let (got, body) = self.send(call).await;
        assert_eq!(got, status, "{what}: {body}");
        body
    }
}

fn id(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

/// The path (and query) of an absolute URL the server wrote with its own base URL.
fn local(url: &Value, base: &str) -> String {
    url.as_str()
        .and_then(|url| url.strip_prefix(base))
        .unwrap_or_else(|| panic!("{url} is not a URL under {base}"))
        .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// LUD-04: the wallet signs the 32 bytes of k1 (DER-encoded ECDSA, hex).
fn sign_k1(k1: &str, key: &secp256k1::SecretKey) -> String {
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&k1[2 * i..2 * i + 2], 16).expect("hex k1");
    }
    let secp = secp256k1::Secp256k1::new();
    hex(&secp
        .sign_ecdsa(&secp256k1::Message::from_digest(bytes), key)
        .serialize_der())
}

/// Every schema reachable from a documented response.
fn response_schemas(doc: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut todo: Vec<Value> = Vec::new();
    for (_, _, operation) in operations(doc) {
        for response in operation["responses"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.values())
        {
            todo.push(response["content"].clone());
        }
    }
    while let Some(value) = todo.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    let name = reference.trim_start_matches("#/components/schemas/");
                    if names.insert(name.to_owned()) {
                        todo.push(schema(doc, name).clone());
                    }
                }
                todo.extend(map.into_iter().map(|(_, v)| v));
            }
            Value::Array(items) => todo.extend(items),
            _ => {}
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_answers_as_documented() {
    let doc = document();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database: dir
            .path()
            .join("farthing.db")
            .to_string_lossy()
            .into_owned(),
        public_url: "http://127.0.0.1:0".to_owned(),
        allow_private_webhooks: true,
        max_body_bytes: 4096,
        ..Config::default()
    };
    config.telegram.api_urls = vec!["*".to_owned()];
    config.lightning.allow_private_nodes = true;
    config.ton.allow_private_indexers = true;
    config.secrets_key = Some(crate::support::server::secrets_key());
    crate::support::server::relax_rate_limits(&mut config);
    // Lightning payments settle within a poll interval at worst.
    config.lightning.poll_interval_ms = 200;
    let (admin_key, admin_hash) =
        farthing_server::http::admin::generate_admin_key().expect("an operator key");
    config.admin_key_sha256 = admin_hash;
    let running = start(config).await.expect("server starts");
    let (live, test) = (
        running.state().store(Mode::Live).clone(),
        running.state().store(Mode::Test).clone(),
    );
    let merchant = tokio::task::spawn_blocking(move || create_merchant(&live, &test, "Shop"))
        .await
        .expect("join")
        .expect("a merchant");
    let (key, live_key) = (merchant.test_key.as_str(), merchant.live_key.as_str());
    let mut client = Client {
        base: format!("http://{}", running.addr()),
        http: reqwest::Client::new(),
        doc: &doc,
        checker: Checker::new(&doc),
        succeeded: BTreeSet::new(),
    };
    let c = &mut client;

    // Operations.
    c.expect(200, call("GET", "/healthz", "/healthz")).await;
    c.expect(200, call("GET", "/readyz", "/readyz")).await;
    c.expect(200, call("GET", "/metrics", "/metrics")).await;
    let served = c
        .expect(200, call("GET", "/openapi.json", "/openapi.json"))
        .await;
    assert_eq!(served, doc, "/openapi.json serves the document");

    // A webhook endpoint first, so later events get deliveries (to a closed port: they stay
    // pending with an error).
    let endpoint = c
        .expect(
            201,
            call("POST", "/v1/webhook_endpoints", "/v1/webhook_endpoints")
                .key(key)
                .body(json!({"url": "http://127.0.0.1:9/hook"})),
        )
        .await;
    assert!(endpoint["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("whsec_")));
    let we = id(&endpoint);
    c.expect(
        201,
        call("POST", "/v1/webhook_endpoints", "/v1/webhook_endpoints")
            .key(key)
            .body(json!({"url": "http://127.0.0.1:9/other", "enabled_events": ["invoice.paid"]})),
    )
    .await;
    c.expect(
        200,
        call("GET", "/v1/webhook_endpoints", "/v1/webhook_endpoints").key(key),
    )
    .await;
    c.expect(
        200,
        call(
            "GET",
            "/v1/webhook_endpoints/{id}",
            format!("/v1/webhook_endpoints/{we}"),
        )
        .key(key),
    )
    .await;

    // Customers and balances.
    let customer = c
        .expect(
            201,
            call("POST", "/v1/customers", "/v1/customers")
                .key(key)
                .body(json!({"external_id": "tg:1", "metadata": {"plan": "pro"}})),
        )
        .await;
    let cus = id(&customer);
    c.expect(201, call("POST", "/v1/customers", "/v1/customers").key(key))
        .await;
    c.expect(
        409,
        call("POST", "/v1/customers", "/v1/customers")
            .key(key)
            .body(json!({"external_id": "tg:1"})),
    )
    .await;
    let top_up = format!("/v1/test/customers/{cus}/top_up");
    c.expect(
        200,
        call("POST", "/v1/test/customers/{id}/top_up", top_up.clone())
            .key(key)
            .body(json!({"amount": 10_000, "currency": "USD"})),
    )
    .await;
    c.expect(
        403,
        call("POST", "/v1/test/customers/{id}/top_up", top_up)
            .key(live_key)
            .body(json!({"amount": 10_000, "currency": "USD"})),
    )
    .await;
    let fetched = c
        .expect(
            200,
            call("GET", "/v1/customers/{id}", format!("/v1/customers/{cus}")).key(key),
        )
        .await;
    assert_eq!(fetched["balances"][0]["balance"], 10_000);
    c.expect(
        200,
        call("POST", "/v1/customers/{id}", format!("/v1/customers/{cus}"))
            .key(key)
            .body(json!({"metadata": {"tier": "gold"}})),
    )
    .await;
    let balance = c
        .expect(200, call("GET", "/v1/balance", "/v1/balance").key(key))
        .await;
    assert_eq!(balance["object"], "balance");
    let made = c
        .expect(
            201,
            call("POST", "/v1/api_keys", "/v1/api_keys")
                .key(key)
                .body(json!({"scopes": ["customers:read"]})),
        )
        .await;
    c.expect(200, call("GET", "/v1/api_keys", "/v1/api_keys").key(key))
        .await;
    let made_id = made["id"].as_str().expect("id").to_owned();
    let rolled = c
        .expect(
            201,
            call(
                "POST",
                "/v1/api_keys/{id}/roll",
                format!("/v1/api_keys/{made_id}/roll"),
            )
            .key(key)
            .body(json!({"expires_in": 60})),
        )
        .await;
    assert!(rolled["secret"].is_string(), "{rolled}");
    c.expect(
        404,
        call(
            "POST",
            "/v1/api_keys/{id}/roll",
            "/v1/api_keys/key_0000000000000000/roll",
        )
        .key(key),
    )
    .await;
    // The rolled key, still in its grace period, can be revoked at once.
    c.expect(
        200,
        call(
            "POST",
            "/v1/api_keys/{id}/revoke",
            format!("/v1/api_keys/{made_id}/revoke"),
        )
        .key(key),
    )
    .await;
    c.expect(
        404,
        call(
            "POST",
            "/v1/api_keys/{id}/revoke",
            "/v1/api_keys/key_0000000000000000/revoke",
        )
        .key(key),
    )
    .await;
    c.expect(
        200,
        call("GET", "/v1/audit_log", "/v1/audit_log?limit=5").key(key),
    )
    .await;
    // Risk rules: refused when they cannot work, then one that refuses a EUR charge, whose
    // decision is listed; cleared again for the rest of the run.
    c.expect(
        400,
        call("PUT", "/v1/risk/rules", "/v1/risk/rules")
            .key(key)
            .body(json!({"block": {"ips": ["10.0.0.1/8"]}})),
    )
    .await;
    c.expect(
        200,
        call("PUT", "/v1/risk/rules", "/v1/risk/rules")
            .key(key)
            .body(json!({
                "limits": [{"currency": "EUR", "per_payment_max": 1, "per_customer_day_max": 1000, "new_customer_per_payment_max": 1, "step_up_above": 500}],
                "new_customers": {"days": 1, "payments": 1},
                "velocity": {"attempts_per_minute": 1000, "failures_per_minute": 1000},
                "block": {"telegram_users": [1], "wallets": ["uqx"], "ips": ["192.0.2.0/24"]},
            })),
    )
    .await;
    c.expect(
        200,
        call("GET", "/v1/risk/rules", "/v1/risk/rules").key(key),
    )
    .await;
    let risky = c
        .expect(201, call("POST", "/v1/customers", "/v1/customers").key(key))
        .await["id"]
        .as_str()
        .expect("customer")
        .to_owned();
    c.expect(
        200,
        call(
            "POST",
            "/v1/test/customers/{id}/top_up",
            format!("/v1/test/customers/{risky}/top_up"),
        )
        .key(key)
        .body(json!({"amount": 500, "currency": "EUR"})),
    )
    .await;
    let refused = c
        .expect(
            402,
            call("POST", "/v1/charges", "/v1/charges")
                .key(key)
                .body(json!({"customer": risky, "amount": 2, "currency": "EUR"})),
        )
        .await;
    assert_eq!(refused["error"]["code"], "risk_refused", "{refused}");
    let decisions = c
        .expect(
            200,
            call(
                "GET",
                "/v1/risk/decisions",
                "/v1/risk/decisions?outcome=refuse&limit=5",
            )
            .key(key),
        )
        .await;
    assert_eq!(decisions["data"][0]["id"], refused["error"]["decision"]);
    c.expect(
        200,
        call("PUT", "/v1/risk/rules", "/v1/risk/rules")
            .key(key)
            .body(json!({})),
    )
    .await;
    // The operator's API: a merchant added while the server runs; merchant keys are refused.
    let added = c
        .expect(
            201,
            call("POST", "/v1/admin/merchants", "/v1/admin/merchants")
                .key(&admin_key)
                .body(json!({"name": "Second shop"})),
        )
        .await;
    assert!(
        added["test_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("fk_test_")),
        "{added}"
    );
    c.expect(
        401,
        call("POST", "/v1/admin/merchants", "/v1/admin/merchants")
            .key(key)
            .body(json!({"name": "Not allowed"})),
    )
    .await;
    c.expect(
        200,
        call("GET", "/v1/admin/merchants", "/v1/admin/merchants").key(&admin_key),
    )
    .await;
    // Step-up on and off again (the operations below it guards run without it).
    c.expect(200, call("GET", "/v1/step_up", "/v1/step_up").key(key))
        .await;
    let enrolment = c
        .expect(
            201,
            call("POST", "/v1/step_up/enroll", "/v1/step_up/enroll").key(key),
        )
        .await;
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let code = |at: u64| farthing_app::step_up::code_at(&secret, at).expect("a code");
    c.expect(
        200,
        call("POST", "/v1/step_up/confirm", "/v1/step_up/confirm")
            .key(key)
            .body(json!({"code": code(now_s)})),
    )
    .await;
    c.expect(403, call("DELETE", "/v1/step_up", "/v1/step_up").key(key))
        .await;
    c.expect(
        200,
        call("DELETE", "/v1/step_up", "/v1/step_up")
            .key(key)
            .header("Farthing-Step-Up", code(now_s + 30)),
    )
    .await;
    c.expect(
        200,
        call("GET", "/v1/customers", "/v1/customers?limit=1").key(key),
    )
    .await;

    // Invoices: create (with replay and mismatch), amountless, pay, cancel, sandbox.
    let body = json!({"amount": 500, "currency": "USD", "description": "Coffee", "payload": "order-1", "metadata": {"table": "4"}});
    let invoice = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(body.clone())
                .idempotency_key("k-1"),
        )
        .await;
    let replay = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(body)
                .idempotency_key("k-1"),
        )
        .await;
    assert_eq!(invoice, replay);
    c.expect(
        422,
        call("POST", "/v1/invoices", "/v1/invoices")
            .key(key)
            .body(json!({"amount": 501, "currency": "USD"}))
            .idempotency_key("k-1"),
    )
    .await;
    let inv = id(&invoice);
    let amountless = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({
                    "currency": "USD",
                    "amount_presets": [100, 200],
                    "amount_min": 50,
                    "amount_max": 1000,
                    "customer": cus,
                    "rails": ["balance"],
                    "expires_in": 600,
                })),
        )
        .await;
    let open = id(&amountless);
    c.expect(
        200,
        call("GET", "/v1/invoices/{id}", format!("/v1/invoices/{inv}")).key(key),
    )
    .await;
    c.expect(200, call("GET", "/v1/invoices", "/v1/invoices").key(key))
        .await;
    let pay = format!("/v1/invoices/{inv}/pay");
    let paid = c
        .expect(
            200,
            call("POST", "/v1/invoices/{id}/pay", pay.clone())
                .key(key)
                .body(json!({"customer": cus})),
        )
        .await;
    assert_eq!(paid["status"], "paid");
    c.expect(
        409,
        call("POST", "/v1/invoices/{id}/pay", pay)
            .key(key)
            .body(json!({"customer": cus})),
    )
    .await;
    c.expect(
        200,
        call(
            "POST",
            "/v1/invoices/{id}/cancel",
            format!("/v1/invoices/{open}/cancel"),
        )
        .key(key),
    )
    .await;
    let sandboxed = id(&c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({"amount": 700, "currency": "USD"})),
        )
        .await);
    c.expect(
        200,
        call(
            "POST",
            "/v1/test/invoices/{id}/pay",
            format!("/v1/test/invoices/{sandboxed}/pay"),
        )
        .key(key)
        .body(json!({"rail": "sandbox"})),
    )
    .await;

    // Charges and refunds.
    let charge = c
        .expect(
            201,
            call("POST", "/v1/charges", "/v1/charges").key(key).body(
                json!({"customer": cus, "amount": 100, "currency": "USD", "description": "1 AI generation"}),
            ),
        )
        .await;
    let chg = id(&charge);
    c.expect(
        402,
        call("POST", "/v1/charges", "/v1/charges")
            .key(key)
            .body(json!({"customer": cus, "amount": 1_000_000, "currency": "USD"})),
    )
    .await;
    c.expect(
        200,
        call("GET", "/v1/charges/{id}", format!("/v1/charges/{chg}")).key(key),
    )
    .await;
    c.expect(200, call("GET", "/v1/charges", "/v1/charges").key(key))
        .await;
    let statement = c
        .expect(
            200,
            call(
                "GET",
                "/v1/customers/{id}/statement",
                format!("/v1/customers/{cus}/statement?currency=USD&limit=2"),
            )
            .key(key),
        )
        .await;
    assert_eq!(statement["data"][0]["source"], chg.as_str(), "{statement}");
    c.expect(
        400,
        call(
            "GET",
            "/v1/customers/{id}/statement",
            format!("/v1/customers/{cus}/statement?currency=USD&starting_after=inv_00000000000000000000000000"),
        )
        .key(key),
    )
    .await;
    let refund = c
        .expect(
            201,
            call("POST", "/v1/refunds", "/v1/refunds")
                .key(key)
                .body(json!({"charge": chg, "amount": 40, "reason": "duplicate"})),
        )
        .await;
    c.expect(
        201,
        call("POST", "/v1/refunds", "/v1/refunds")
            .key(key)
            .body(json!({"invoice": inv})),
    )
    .await;
    c.expect(
        409,
        call("POST", "/v1/refunds", "/v1/refunds")
            .key(key)
            .body(json!({"invoice": open})),
    )
    .await;
    c.expect(
        200,
        call(
            "GET",
            "/v1/refunds/{id}",
            format!("/v1/refunds/{}", id(&refund)),
        )
        .key(key),
    )
    .await;
    c.expect(200, call("GET", "/v1/refunds", "/v1/refunds").key(key))
        .await;

    // A rail payment credited to its payer (as a rail adapter settles it), so that an
    // `invoice.payment_credited` event with a rail payment object is among the events.
    let settled = {
        let store = running.state().store(Mode::Test).clone();
        let base = running.state().config().base_url().to_owned();
        let payment = IncomingPayment {
            merchant: MerchantId::parse(&merchant.id).expect("merchant id"),
            rail: Rail::Stars,
            external_id: "openapi-charge".to_owned(),
            invoice: Some(InvoiceId(42)),
            payer: None,
            payer_external_id: Some("tg:openapi".to_owned()),
            currency: Currency::XTR,
            amount_minor: 5,
            payload: None,
        };
        store
            .run(move |tx| settle_payment(tx, Mode::Test, payment, &base))
            .await
            .expect("committed")
            .expect("settled")
    };
    assert_eq!(settled.payment.credited_minor, 5);

    // Events, deliveries, redelivery; then the endpoint goes.
    let events = c
        .expect(
            200,
            call("GET", "/v1/events", "/v1/events?limit=100").key(key),
        )
        .await;
    let types: BTreeSet<&str> = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for expected in [
        "invoice.created",
        "invoice.paid",
        "invoice.canceled",
        "invoice.refunded",
        "charge.succeeded",
        "refund.succeeded",
        "customer.created",
        "customer.balance_changed",
        "invoice.payment_credited",
    ] {
        assert!(types.contains(expected), "no {expected} event in {types:?}");
    }
    let evt = id(&events["data"][0]);
    let event = c
        .expect(
            200,
            call("GET", "/v1/events/{id}", format!("/v1/events/{evt}")).key(key),
        )
        .await;
    assert!(
        event["deliveries"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "the newest event has deliveries: {event}"
    );
    let redeliver = format!("/v1/events/{evt}/redeliver");
    c.expect(
        200,
        call("POST", "/v1/events/{id}/redeliver", redeliver.clone()).key(key),
    )
    .await;
    c.expect(
        200,
        call("POST", "/v1/events/{id}/redeliver", redeliver)
            .key(key)
            .body(json!({"webhook_endpoint": we})),
    )
    .await;
    let deleted = c
        .expect(
            200,
            call(
                "DELETE",
                "/v1/webhook_endpoints/{id}",
                format!("/v1/webhook_endpoints/{we}"),
            )
            .key(key),
        )
        .await;
    assert_eq!(deleted["deleted"], true);
    c.expect(200, call("GET", "/v1/rails", "/v1/rails").key(key))
        .await;

    // Errors, each in the documented shape and status.
    c.expect(401, call("GET", "/v1/invoices", "/v1/invoices"))
        .await;
    c.expect(
        401,
        call("GET", "/v1/invoices", "/v1/invoices").key("fk_test_nope"),
    )
    .await;
    c.expect(
        400,
        call("GET", "/v1/invoices", "/v1/invoices?limit=0").key(key),
    )
    .await;
    c.expect(
        404,
        call("GET", "/v1/invoices/{id}", "/v1/invoices/inv_nope").key(key),
    )
    .await;
    c.expect(
        400,
        call("POST", "/v1/invoices", "/v1/invoices")
            .key(key)
            .body(json!({"amount": 5, "currency": "NOPE"})),
    )
    .await;
    let oversized = format!(
        "{{\"currency\": \"USD\", \"description\": \"{}\"}}",
        "x".repeat(8192)
    );
    let (status, _) = c
        .send_with(
            call("POST", "/v1/invoices", "/v1/invoices").key(key),
            Some(oversized.into_bytes()),
        )
        .await;
    assert_eq!(status, 413);

    // The checkout page.
    let checkout = id(&c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({"amount": 300, "currency": "USD"})),
        )
        .await);
    c.expect(200, call("GET", "/pay/{id}", format!("/pay/{checkout}")))
        .await;
    c.expect(
        200,
        call("GET", "/pay/{id}/status", format!("/pay/{checkout}/status")),
    )
    .await;
    c.expect(
        200,
        call(
            "POST",
            "/pay/{id}/sandbox",
            format!("/pay/{checkout}/sandbox"),
        ),
    )
    .await;
    let status = c
        .expect(
            200,
            call("GET", "/pay/{id}/status", format!("/pay/{checkout}/status")),
        )
        .await;
    assert_eq!(status["status"], "paid");
    c.expect(
        409,
        call(
            "POST",
            "/pay/{id}/sandbox",
            format!("/pay/{checkout}/sandbox"),
        ),
    )
    .await;
    c.expect(404, call("GET", "/pay/{id}", "/pay/inv_nope"))
        .await;
    c.expect(
        200,
        call(
            "GET",
            "/pay/{id}/tonconnect-manifest.json",
            format!("/pay/{checkout}/tonconnect-manifest.json"),
        ),
    )
    .await;
    c.expect(
        404,
        call(
            "GET",
            "/pay/{id}/tonconnect-manifest.json",
            "/pay/inv_nope/tonconnect-manifest.json",
        ),
    )
    .await;
    for file in [
        "checkout.js",
        "mini-app.js",
        "checkout.css",
        "tonconnect-ui.min.js",
        "icon.png",
    ] {
        c.expect(
            200,
            call("GET", "/pay/assets/{file}", format!("/pay/assets/{file}")),
        )
        .await;
    }
    c.expect(
        404,
        call("GET", "/pay/assets/{file}", "/pay/assets/..%2Fsecret"),
    )
    .await;
    c.expect(404, call("GET", "/pay/{id}/status", "/pay/inv_nope/status"))
        .await;

    // The Stars rail: connect a bot at a Bot API double (the webhook secret generated), list
    // the rails, and take a webhook from Telegram.
    let double = telegram_double::TelegramDouble::spawn()
        .await
        .expect("the Bot API double starts");
    let connected = c
        .expect(
            200,
            call("PUT", "/v1/rails/stars", "/v1/rails/stars")
                .key(key)
                .body(json!({"bot_token": double.token(), "api_url": double.base_url(), "mode": "webhook"})),
        )
        .await;
    let secret = connected["webhook_secret"]
        .as_str()
        .expect("a generated webhook secret")
        .to_owned();
    c.expect(
        400,
        call("PUT", "/v1/rails/stars", "/v1/rails/stars")
            .key(key)
            .body(json!({"bot_token": "nope", "mode": "polling"})),
    )
    .await;
    let rails = c
        .expect(200, call("GET", "/v1/rails", "/v1/rails").key(key))
        .await;
    assert!(rails["data"]
        .as_array()
        .is_some_and(|data| data.iter().any(|r| r["rail"] == "stars")));
    let webhook = format!("/telegram/{}/webhook", connected["bot_id"]);
    c.expect(
        200,
        call("POST", "/telegram/{bot_id}/webhook", webhook.clone())
            .header("X-Telegram-Bot-Api-Secret-Token", secret)
            .body(json!({"update_id": 1})),
    )
    .await;
    c.expect(
        401,
        call("POST", "/telegram/{bot_id}/webhook", webhook)
            .header("X-Telegram-Bot-Api-Secret-Token", "wrong")
            .body(json!({"update_id": 2})),
    )
    .await;
    // A Stars invoice carries its Telegram invoice link.
    let stars_invoice = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({"amount": 10, "currency": "XTR", "rails": ["stars"]})),
        )
        .await;
    assert!(
        stars_invoice["payment_instructions"]["stars"]["invoice_link"]
            .as_str()
            .is_some_and(|link| link.starts_with("https://t.me/"))
    );
    // It can be posted into a chat (`sendInvoice`), once; a canceled one cannot.
    let send = format!("/v1/invoices/{}/send", id(&stars_invoice));
    let sent = c
        .expect(
            200,
            call("POST", "/v1/invoices/{id}/send", send.clone())
                .key(key)
                .body(json!({"chat_id": 777001})),
        )
        .await;
    assert_eq!(sent["telegram_message"]["chat_id"], 777001);
    c.expect(
        400,
        call("POST", "/v1/invoices/{id}/send", send.clone())
            .key(key)
            .body(json!({"chat_id": 0})),
    )
    .await;
    c.expect(
        200,
        call(
            "POST",
            "/v1/invoices/{id}/cancel",
            format!("/v1/invoices/{}/cancel", id(&stars_invoice)),
        )
        .key(key),
    )
    .await;
    c.expect(
        409,
        call("POST", "/v1/invoices/{id}/send", send)
            .key(key)
            .body(json!({"chat_id": 777001})),
    )
    .await;
    // A Stars subscription: its invoice, the first payment (a webhook), then the
    // subscription listed, retrieved, canceled and resumed (editUserStarSubscription).
    let subscription_invoice = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices").key(key).body(
                json!({"amount": 30, "currency": "XTR", "rails": ["stars"], "subscription_period": 2592000}),
            ),
        )
        .await;
    assert_eq!(subscription_invoice["subscription_period"], 2592000);
    let subscriber = telegram_double::fixtures::user(777002, "Sub", "en");
    let mut first = telegram_double::fixtures::successful_payment_update(
        90,
        1_760_000_000,
        &subscriber,
        "XTR",
        30,
        &id(&subscription_invoice),
        "sub-charge-1",
    );
    first["update_id"] = json!(90);
    first["message"]["successful_payment"]["is_recurring"] = json!(true);
    first["message"]["successful_payment"]["is_first_recurring"] = json!(true);
    first["message"]["successful_payment"]["subscription_expiration_date"] =
        json!(4_000_000_000u64);
    c.expect(
        200,
        call(
            "POST",
            "/telegram/{bot_id}/webhook",
            format!("/telegram/{}/webhook", connected["bot_id"]),
        )
        .header(
            "X-Telegram-Bot-Api-Secret-Token",
            connected["webhook_secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
        )
        .body(first),
    )
    .await;
    let subscriptions = c
        .expect(
            200,
            call("GET", "/v1/subscriptions", "/v1/subscriptions").key(key),
        )
        .await;
    let subscription = id(&subscriptions["data"][0]);
    assert!(subscription.starts_with("sub_"), "{subscriptions}");
    let path = format!("/v1/subscriptions/{subscription}");
    c.expect(
        200,
        call("GET", "/v1/subscriptions/{id}", path.clone()).key(key),
    )
    .await;
    c.expect(
        404,
        call(
            "GET",
            "/v1/subscriptions/{id}",
            "/v1/subscriptions/sub_nope",
        )
        .key(key),
    )
    .await;
    let canceled = c
        .expect(
            200,
            call(
                "POST",
                "/v1/subscriptions/{id}/cancel",
                format!("{path}/cancel"),
            )
            .key(key),
        )
        .await;
    assert_eq!(canceled["status"], "canceled");
    c.expect(
        200,
        call(
            "POST",
            "/v1/subscriptions/{id}/resume",
            format!("{path}/resume"),
        )
        .key(key),
    )
    .await;
    double.assert_no_violations();

    // The bot's settings, and a refund request the subscriber makes with the bot's `/refund`
    // button (a callback), approved and then not declinable; another one declined.
    c.expect(200, call("GET", "/v1/settings", "/v1/settings").key(key))
        .await;
    let settings = c
        .expect(
            200,
            call("PUT", "/v1/settings", "/v1/settings").key(key).body(
                json!({"terms": "Digital goods.", "refund_policy": "14 days.", "contacts": "@help", "tip_presets": [1, 5], "reminders": true}),
            ),
        )
        .await;
    assert_eq!(settings["tip_presets"], json!([1, 5]));
    c.expect(
        400,
        call("PUT", "/v1/settings", "/v1/settings")
            .key(key)
            .body(json!({"tip_presets": [0]})),
    )
    .await;
    let bot_message = json!({"message_id": 5, "date": 1_760_000_000, "chat": {"id": 777002, "type": "private"}, "text": "/refund"});
    let mut press = telegram_double::fixtures::callback_query_update(
        "cb-refund-1",
        &subscriber,
        &bot_message,
        &format!("acct:refund:{}", id(&subscription_invoice)),
    );
    press["update_id"] = json!(91);
    c.expect(
        200,
        call(
            "POST",
            "/telegram/{bot_id}/webhook",
            format!("/telegram/{}/webhook", connected["bot_id"]),
        )
        .header(
            "X-Telegram-Bot-Api-Secret-Token",
            connected["webhook_secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
        )
        .body(press),
    )
    .await;
    let requests = c
        .expect(
            200,
            call("GET", "/v1/refund_requests", "/v1/refund_requests").key(key),
        )
        .await;
    let request = id(&requests["data"][0]);
    assert!(request.starts_with("rrq_"), "{requests}");
    let approved = c
        .expect(
            200,
            call(
                "POST",
                "/v1/refund_requests/{id}/approve",
                format!("/v1/refund_requests/{request}/approve"),
            )
            .key(key)
            .body(json!({"destination": "balance"})),
        )
        .await;
    assert_eq!(approved["status"], "approved");
    assert!(approved["refund"]
        .as_str()
        .is_some_and(|r| r.starts_with("ref_")));
    c.expect(
        409,
        call(
            "POST",
            "/v1/refund_requests/{id}/decline",
            format!("/v1/refund_requests/{request}/decline"),
        )
        .key(key),
    )
    .await;
    c.expect(
        404,
        call(
            "POST",
            "/v1/refund_requests/{id}/approve",
            "/v1/refund_requests/rrq_nope/approve",
        )
        .key(key),
    )
    .await;
    c.expect(
        404,
        call(
            "POST",
            "/v1/refund_requests/{id}/decline",
            "/v1/refund_requests/rrq_nope/decline",
        )
        .key(key),
    )
    .await;
    let other = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({"amount": 7, "currency": "XTR", "rails": ["stars"]})),
        )
        .await;
    let mut paid = telegram_double::fixtures::successful_payment_update(
        92,
        1_760_000_000,
        &subscriber,
        "XTR",
        7,
        &id(&other),
        "rr-charge-2",
    );
    paid["update_id"] = json!(92);
    let mut press = telegram_double::fixtures::callback_query_update(
        "cb-refund-2",
        &subscriber,
        &bot_message,
        &format!("acct:refund:{}", id(&other)),
    );
    press["update_id"] = json!(93);
    for update in [paid, press] {
        c.expect(
            200,
            call(
                "POST",
                "/telegram/{bot_id}/webhook",
                format!("/telegram/{}/webhook", connected["bot_id"]),
            )
            .header(
                "X-Telegram-Bot-Api-Secret-Token",
                connected["webhook_secret"]
                    .as_str()
                    .expect("secret")
                    .to_owned(),
            )
            .body(update),
        )
        .await;
    }
    let requests = c
        .expect(
            200,
            call("GET", "/v1/refund_requests", "/v1/refund_requests").key(key),
        )
        .await;
    let second = id(&requests["data"][0]);
    assert_ne!(second, request, "{requests}");
    let declined = c
        .expect(
            200,
            call(
                "POST",
                "/v1/refund_requests/{id}/decline",
                format!("/v1/refund_requests/{second}/decline"),
            )
            .key(key),
        )
        .await;
    assert_eq!(declined["status"], "declined");
    double.assert_no_violations();

    // The reconciliation over getStarTransactions records a Fragment withdrawal
    // (`stars.withdrawal`), shown in the events.
    double.set_star_transactions(vec![telegram_double::fixtures::fragment_withdrawal(
        "wd-1",
        5,
        i64::try_from(now_ns() / 1_000_000_000).expect("now"),
        "https://fragment.com/tx/wd-1",
    )]);
    let connected_bot = bot_id_of_double(&connected);
    let bot = running
        .state()
        .store(Mode::Test)
        .read(move |reader| reader.telegram_bots_by_id(connected_bot))
        .expect("read")
        .pop()
        .expect("the connected bot");
    farthing_server::rails::telegram::reconcile::reconcile_bot(
        running.state().rails().telegram().expect("telegram"),
        running.state().app(),
        Mode::Test,
        &bot,
    )
    .await
    .expect("reconciled");
    let events = c
        .expect(
            200,
            call("GET", "/v1/events", "/v1/events?limit=100").key(key),
        )
        .await;
    assert!(
        events["data"]
            .as_array()
            .is_some_and(|data| data.iter().any(|e| e["type"] == "stars.withdrawal")),
        "{events}"
    );
    double.assert_no_violations();

    // The Mini App: a session from init data signed with that bot's token (refused when
    // tampered), then a balance payment with it.
    let bot_id = connected["bot_id"].as_u64().expect("a bot id");
    let init = init_data::signed(
        &init_data::fields(&init_data::user(4242, "Ada", "fa"), init_data::now_s()),
        double.token(),
    );
    let webapp_invoice = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({"amount": 10, "currency": "XTR"})),
        )
        .await;
    let webapp_invoice = id(&webapp_invoice);
    c.expect(
        401,
        call("POST", "/webapp/session", "/webapp/session").body(
            json!({"bot_id": bot_id, "init_data": init.replace("4242", "4243"), "invoice": webapp_invoice}),
        ),
    )
    .await;
    let session = c
        .expect(
            200,
            call("POST", "/webapp/session", "/webapp/session")
                .body(json!({"bot_id": bot_id, "init_data": init, "invoice": webapp_invoice})),
        )
        .await;
    let token = session["session"].as_str().expect("a session").to_owned();
    let pay_path = format!("/webapp/pay/{webapp_invoice}");
    c.expect(401, call("POST", "/webapp/pay/{invoice}", pay_path.clone()))
        .await;
    c.expect(
        402,
        call("POST", "/webapp/pay/{invoice}", pay_path.clone())
            .header("Authorization", format!("Bearer {token}")),
    )
    .await;
    let tg_customer = session["customer"].as_str().expect("a customer");
    c.expect(
        200,
        call(
            "POST",
            "/v1/test/customers/{id}/top_up",
            format!("/v1/test/customers/{tg_customer}/top_up"),
        )
        .key(key)
        .body(json!({"amount": 10, "currency": "XTR"})),
    )
    .await;
    let paid = c
        .expect(
            200,
            call("POST", "/webapp/pay/{invoice}", pay_path.clone())
                .header("Authorization", format!("Bearer {token}")),
        )
        .await;
    assert_eq!(paid["status"], "paid");
    c.expect(
        404,
        call("POST", "/webapp/pay/{invoice}", "/webapp/pay/inv_nope")
            .header("Authorization", format!("Bearer {token}")),
    )
    .await;

    // The card rail through the same bot: a USD invoice gets a provider invoice link.
    c.expect(
        200,
        call("PUT", "/v1/rails/card", "/v1/rails/card")
            .key(key)
            .body(json!({"provider_token": "284685063:TEST:abc", "currencies": ["USD"]})),
    )
    .await;
    c.expect(
        400,
        call("PUT", "/v1/rails/card", "/v1/rails/card")
            .key(key)
            .body(json!({"provider_token": "284685063:TEST:abc", "currencies": ["XTR"]})),
    )
    .await;
    // The TON rail refuses an address with a bad checksum before it asks any indexer.
    c.expect(
        400,
        call("PUT", "/v1/rails/ton", "/v1/rails/ton")
            .key(key)
            .body(json!({"address": "UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0q", "network": "mainnet"})),
    )
    .await;
    // ...and connects a wallet watched through an indexer that has one payment for it: a
    // real sandbox transaction without a comment (crates/farthing-ton/tests/sandbox).
    let fixtures: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../farthing-ton/tests/sandbox/fixtures.json"
        ))
        .expect("fixtures"),
    )
    .expect("fixtures JSON");
    let wallet = fixtures["accounts"]["merchant"]["raw"].clone();
    let forgot = fixtures["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .find(|tx| tx["scenario"] == "ton_no_comment" && tx["role"] == "merchant")
        .expect("a payment without a comment")
        .clone();
    // The indexer serves what `served` holds, by account and logical time.
    let served = std::sync::Arc::new(std::sync::Mutex::new(vec![forgot.clone()]));
    let indexer = {
        let wallet = wallet.as_str().expect("raw").to_owned();
        let served = served.clone();
        let app = axum::Router::new().route(
            "/api/v3/transactions",
            axum::routing::get(
                move |axum::extract::Query(query): axum::extract::Query<Vec<(String, String)>>| {
                    let served = served.lock().expect("served").clone();
                    let wallet = wallet.clone();
                    async move {
                        let asked = |name: &str| {
                            query
                                .iter()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.clone())
                        };
                        let from: u64 = asked("start_lt").and_then(|s| s.parse().ok()).unwrap_or(0);
                        let lt = |tx: &Value| {
                            tx["lt"]
                                .as_str()
                                .and_then(|lt| lt.parse::<u64>().ok())
                                .unwrap_or(0)
                        };
                        let transactions: Vec<Value> =
                            if asked("account").as_deref() == Some(wallet.as_str()) {
                                served.into_iter().filter(|tx| lt(tx) >= from).collect()
                            } else {
                                Vec::new()
                            };
                        axum::Json(json!({"transactions": transactions, "address_book": {}}))
                    }
                },
            ),
        );
        // The master's get-method and the jetton-wallet index, as the sandbox answered them
        // (the merchant's USDT wallet), and the payer's USDT wallet the sandbox derived.
        let answers = fixtures["get_wallet_address"].clone();
        let accounts = fixtures["accounts"].clone();
        let raw = |role: &str| accounts[role]["raw"].as_str().expect("raw").to_owned();
        let payer_answer = json!({"gas_used": 0, "exit_code": 0, "stack": [{"type": "slice",
            "value": farthing_ton::body::address_slice_boc(
                &farthing_ton::Address::parse(&raw("payer_usdt_wallet")).expect("jw").address,
            ).expect("slice")}]});
        let (usdt_master, payer, merchant_jw) = (
            raw("usdt_master"),
            raw("payer"),
            raw("merchant_usdt_wallet"),
        );
        let run_get_method = move |axum::Json(request): axum::Json<Value>| {
            let owner = farthing_ton::body::read_address_slice(
                request["stack"][0]["value"].as_str().unwrap_or_default(),
            )
            .map(|owner| owner.raw())
            .unwrap_or_default();
            let master =
                farthing_ton::Address::parse(request["address"].as_str().unwrap_or_default())
                    .map(|master| master.address.raw())
                    .unwrap_or_default();
            let found = if owner == payer && master == usdt_master {
                Some(payer_answer.clone())
            } else {
                answers.as_array().and_then(|rows| {
                    rows.iter()
                        .find(|row| {
                            row["master"] == master.as_str() && row["owner"] == owner.as_str()
                        })
                        .map(|row| row["response"].clone())
                })
            };
            let answer =
                found.unwrap_or_else(|| json!({"gas_used": 0, "exit_code": 11, "stack": []}));
            async move { axum::Json(answer) }
        };
        let jetton_wallets = move || {
            let wallet = merchant_jw.clone();
            async move { axum::Json(json!({"jetton_wallets": [{"address": wallet}]})) }
        };
        let app = app
            .route("/api/v3/runGetMethod", axum::routing::post(run_get_method))
            .route("/api/v3/jetton/wallets", axum::routing::get(jetton_wallets));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("indexer") });
        format!("http://{addr}/api/v3")
    };
    c.expect(
        200,
        call("PUT", "/v1/rails/ton", "/v1/rails/ton")
            .key(key)
            .body(json!({
                "address": wallet,
                "network": "testnet",
                "api_url": indexer,
                "jettons": [{"symbol": "USDT", "master": fixtures["accounts"]["usdt_master"]["raw"], "decimals": 6}],
            })),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let unmatched = loop {
        let list = c
            .expect(
                200,
                call(
                    "GET",
                    "/v1/rails/ton/payments",
                    "/v1/rails/ton/payments?outcome=unmatched",
                )
                .key(key),
            )
            .await;
        if let Some(found) = list["data"].as_array().and_then(|data| data.first()) {
            break found["id"].as_str().expect("id").to_owned();
        }
        assert!(Instant::now() < deadline, "the TON payment was never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ton_customer = c
        .expect(
            201,
            call("POST", "/v1/customers", "/v1/customers")
                .key(key)
                .body(json!({"external_id": "ton-assignee"})),
        )
        .await["id"]
        .clone();
    c.expect(
        200,
        call(
            "POST",
            "/v1/rails/ton/payments/{id}/assign",
            format!("/v1/rails/ton/payments/{unmatched}/assign"),
        )
        .key(key)
        .body(json!({"customer": ton_customer})),
    )
    .await;
    // A TON invoice paid on chain (a sandbox payment with its comment, served after the first
    // one), then refunded through the rail: prepared for the merchant's wallet, pending until
    // sent, or canceled.
    let ton_invoice = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({"amount": 500_000_000u64, "currency": "TON", "rails": ["ton"]})),
        )
        .await;
    let comment = ton_invoice["payment_instructions"]["ton"]["comment"]
        .as_str()
        .expect("a comment")
        .to_owned();
    let made = crate::ton::sandbox(Some(json!({"scenarios": [
        crate::ton::ton("paid", "payer", "merchant", 500_000_000, Some(&comment)),
    ]})))
    .await;
    let mut paid = made["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .find(|tx| tx["role"] == "merchant")
        .expect("the merchant's transaction")
        .clone();
    // Later than the payment read before it (a fresh sandbox run starts its clock again).
    let after = forgot["lt"]
        .as_str()
        .and_then(|lt| lt.parse::<u64>().ok())
        .unwrap_or(0)
        + 1_000;
    paid["lt"] = json!(after.to_string());
    served.lock().expect("served").push(paid);
    let ton_invoice = id(&ton_invoice);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let invoice = c
            .expect(
                200,
                call(
                    "GET",
                    "/v1/invoices/{id}",
                    format!("/v1/invoices/{ton_invoice}"),
                )
                .key(key),
            )
            .await;
        if invoice["status"] == "paid" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the TON invoice was never paid: {invoice}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = c
        .expect(
            201,
            call("POST", "/v1/refunds", "/v1/refunds")
                .key(key)
                .body(json!({"invoice": ton_invoice, "destination": "rail"})),
        )
        .await;
    assert_eq!(pending["status"], "pending", "{pending}");
    c.expect(
        409,
        call("POST", "/v1/refunds", "/v1/refunds")
            .key(key)
            .body(json!({"invoice": ton_invoice})),
    )
    .await;
    // A USDT invoice's TON Connect request, for the wallet the payer connected.
    let usdt_invoice = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({"amount": 2_500_000u64, "currency": "USDT", "rails": ["ton"]})),
        )
        .await;
    let asked = c
        .expect(
            200,
            call(
                "POST",
                "/pay/{id}/ton-connect",
                format!("/pay/{}/ton-connect", id(&usdt_invoice)),
            )
            .body(json!({"payer": fixtures["accounts"]["payer"]["raw"]})),
        )
        .await;
    assert_eq!(
        asked["request"]["messages"][0]["amount"], "50000000",
        "{asked}"
    );
    c.expect(
        400,
        call(
            "POST",
            "/pay/{id}/ton-connect",
            format!("/pay/{}/ton-connect", id(&usdt_invoice)),
        )
        .body(json!({"payer": "not an address"})),
    )
    .await;
    c.expect(
        409,
        call(
            "POST",
            "/pay/{id}/ton-connect",
            format!("/pay/{ton_invoice}/ton-connect"),
        )
        .body(json!({"payer": fixtures["accounts"]["payer"]["raw"]})),
    )
    .await;
    let cancel = format!("/v1/refunds/{}/cancel", id(&pending));
    c.expect(
        200,
        call("POST", "/v1/refunds/{id}/cancel", cancel.clone()).key(key),
    )
    .await;
    c.expect(
        409,
        call("POST", "/v1/refunds/{id}/cancel", cancel).key(key),
    )
    .await;
    c.expect(
        404,
        call(
            "POST",
            "/v1/refunds/{id}/cancel",
            "/v1/refunds/ref_01m8xps3y3ds0d7vv0zr87f517/cancel",
        )
        .key(key),
    )
    .await;
    let rails = c
        .expect(200, call("GET", "/v1/rails", "/v1/rails").key(key))
        .await;
    assert!(rails["data"]
        .as_array()
        .is_some_and(|data| data.iter().any(|r| r["rail"] == "card")));
    let card_invoice = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(key)
                .body(json!({"amount": 500, "currency": "USD", "rails": ["card"]})),
        )
        .await;
    assert!(
        card_invoice["payment_instructions"]["card"]["invoice_link"]
            .as_str()
            .is_some(),
        "{card_invoice}"
    );
    double.assert_no_violations();

    // Dashboard login with the bot's Login Widget, for an owner the merchant named.
    c.expect(
        200,
        call("PUT", "/v1/dashboard/owners", "/v1/dashboard/owners")
            .key(key)
            .body(json!({"telegram_user_ids": [4242]})),
    )
    .await;
    let mut widget = login_widget::login(4242, "Ada", login_widget::now_s(), double.token());
    widget.insert("last_name".to_owned(), json!("Lovelace"));
    let widget = login_widget::signed(widget, double.token());
    let mut forged = widget.clone();
    forged.insert("id".to_owned(), json!(4243));
    c.expect(
        401,
        call(
            "POST",
            "/dashboard/login/telegram",
            "/dashboard/login/telegram",
        )
        .body(login_widget::body(bot_id, &forged)),
    )
    .await;
    let dashboard = c
        .expect(
            200,
            call(
                "POST",
                "/dashboard/login/telegram",
                "/dashboard/login/telegram",
            )
            .body(login_widget::body(bot_id, &widget)),
        )
        .await;
    let dashboard_token = dashboard["session"].as_str().expect("a session").to_owned();
    c.expect(401, call("GET", "/dashboard/me", "/dashboard/me"))
        .await;
    let me = c
        .expect(
            200,
            call("GET", "/dashboard/me", "/dashboard/me")
                .header("Authorization", format!("Bearer {dashboard_token}")),
        )
        .await;
    assert_eq!(me["user"]["id"], 4242);

    // The Lightning rail, in live mode, against a real LNbits (FakeWallet): its node is
    // farthing's merchant wallet; its funded customer wallet is the payer's wallet.
    let lnbits = tokio::task::spawn_blocking(Lnbits::start)
        .await
        .expect("join");
    let base = c.base.clone();
    c.expect(
        400,
        call("PUT", "/v1/rails/lightning", "/v1/rails/lightning")
            .key(live_key)
            .body(json!({"backend": "lnbits", "url": lnbits.url, "invoice_key": lnbits.merchant.invoice_key, "lightning_address": "Not A Name!"})),
    )
    .await;
    let rail = c
        .expect(
            200,
            call("PUT", "/v1/rails/lightning", "/v1/rails/lightning")
                .key(live_key)
                .body(json!({
                    "backend": "lnbits",
                    "url": lnbits.url,
                    "invoice_key": lnbits.merchant.invoice_key,
                    "admin_key": lnbits.merchant.admin_key,
                    "lightning_address": "tips",
                })),
        )
        .await;
    let host = base.trim_start_matches("http://");
    assert_eq!(rail["lightning_address"], format!("tips@{host}"), "{rail}");
    assert_eq!(rail["can_pay"], true, "{rail}");
    let rails = c
        .expect(200, call("GET", "/v1/rails", "/v1/rails").key(live_key))
        .await;
    assert!(
        rails["data"]
            .as_array()
            .is_some_and(|data| data.iter().any(|r| r["rail"] == "lightning")),
        "{rails}"
    );

    // A BTC invoice carries its BOLT11; the payer's wallet pays it (the merchant's sats pay
    // the payout below).
    let btc = c
        .expect(
            201,
            call("POST", "/v1/invoices", "/v1/invoices")
                .key(live_key)
                .body(json!({"amount": 250, "currency": "BTC", "rails": ["lightning"]})),
        )
        .await;
    let lightning = &btc["payment_instructions"]["lightning"];
    let bolt11 = lightning["bolt11"].as_str().expect("a BOLT11").to_owned();
    assert_eq!(lightning["uri"], format!("lightning:{bolt11}"));
    let (status, paid) = lnbits.pay(&bolt11).await;
    assert!(status < 300, "{status} {paid}");
    let btc_path = format!("/v1/invoices/{}", id(&btc));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let invoice = c
            .expect(
                200,
                call("GET", "/v1/invoices/{id}", btc_path.clone()).key(live_key),
            )
            .await;
        if invoice["status"] == "paid" {
            assert_eq!(invoice["paid_rail"], "lightning");
            break;
        }
        assert!(Instant::now() < deadline, "never paid: {invoice}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A customer's top-up link: its pay request and callback, as a wallet calls them; the
    // payer's wallet pays the BOLT11 and the customer's BTC balance is credited.
    let payer = id(&c
        .expect(
            201,
            call("POST", "/v1/customers", "/v1/customers")
                .key(live_key)
                .body(json!({"external_id": "ln:1"})),
        )
        .await);
    let link = c
        .expect(
            200,
            call(
                "GET",
                "/v1/customers/{id}/lightning",
                format!("/v1/customers/{payer}/lightning"),
            )
            .key(live_key),
        )
        .await;
    assert!(link["lnurl"]
        .as_str()
        .is_some_and(|l| l.starts_with("LNURL1") || l.starts_with("lnurl1")));
    let request = c
        .expect(
            200,
            call(
                "GET",
                "/lnurl/{mode}/topup/{customer}",
                local(&link["url"], &base),
            ),
        )
        .await;
    let callback = local(&request["callback"], &base);
    let answer = c
        .expect(
            200,
            call(
                "GET",
                "/lnurl/{mode}/topup/{customer}/callback",
                format!("{callback}?amount=800000"),
            ),
        )
        .await;
    let (status, paid) = lnbits.pay(answer["pr"].as_str().expect("pr")).await;
    assert!(status < 300, "{status} {paid}");
    let payer_path = format!("/v1/customers/{payer}");
    let customer_btc = |customer: &Value| {
        customer["balances"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["currency"] == "BTC"))
            .map(|b| b["balance"].clone())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let customer = c
            .expect(
                200,
                call("GET", "/v1/customers/{id}", payer_path.clone()).key(live_key),
            )
            .await;
        if customer_btc(&customer) == Some(json!(800)) {
            break;
        }
        assert!(Instant::now() < deadline, "never credited: {customer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // LNURL-withdraw: a link paying the customer back 300 sat, claimed by the payer's wallet
    // (its request, then its callback with a BOLT11 of that wallet), once.
    c.expect(
        402,
        call("POST", "/v1/lnurl/withdraws", "/v1/lnurl/withdraws")
            .key(live_key)
            .body(json!({"customer": payer, "amount": 900})),
    )
    .await;
    let withdraw = c
        .expect(
            201,
            call("POST", "/v1/lnurl/withdraws", "/v1/lnurl/withdraws")
                .key(live_key)
                .body(json!({"customer": payer, "amount": 300, "amount_min": 100, "description": "Refund", "expires_in": 600})),
        )
        .await;
    assert_eq!(withdraw["status"], "open");
    let withdraw_path = format!("/v1/lnurl/withdraws/{}", id(&withdraw));
    let request = c
        .expect(
            200,
            call(
                "GET",
                "/lnurl/{mode}/withdraw/{k1}",
                local(&withdraw["url"], &base),
            ),
        )
        .await;
    assert_eq!(request["maxWithdrawable"], 300_000, "{request}");
    let (claim, claim_hash) = lnbits.customer_invoice(300, "Refund").await;
    let claim_path = format!(
        "{}?k1={}&pr={claim}",
        local(&request["callback"], &base),
        request["k1"].as_str().expect("k1")
    );
    let ok = c
        .expect(
            200,
            call(
                "GET",
                "/lnurl/{mode}/withdraw/{k1}/callback",
                claim_path.clone(),
            ),
        )
        .await;
    assert_eq!(ok, json!({"status": "OK"}));
    // Single use: the second claim is refused, in LNURL's error shape.
    let refused = c
        .expect(
            409,
            call("GET", "/lnurl/{mode}/withdraw/{k1}/callback", claim_path),
        )
        .await;
    assert_eq!(refused["status"], "ERROR", "{refused}");
    assert!(refused["reason"].as_str().is_some_and(|r| !r.is_empty()));
    c.checker.assert_valid(&refused, "LnurlStatus");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let customer = c
            .expect(
                200,
                call("GET", "/v1/customers/{id}", payer_path.clone()).key(live_key),
            )
            .await;
        if customer_btc(&customer) == Some(json!(500)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the payout never posted: {customer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lnbits.customer_paid(&claim_hash).await,
        "the wallet got paid"
    );
    let claimed = c
        .expect(
            200,
            call("GET", "/v1/lnurl/withdraws/{id}", withdraw_path).key(live_key),
        )
        .await;
    assert_eq!(claimed["status"], "claimed", "{claimed}");
    assert_eq!(claimed["payment_hash"], claim_hash.as_str());

    // A payout of the merchant's own sats to a BOLT11 it submits: paid once.
    let (payout_bolt11, payout_hash) = lnbits.customer_invoice(100, "payout").await;
    let payout = c
        .expect(
            200,
            call("POST", "/v1/payouts", "/v1/payouts")
                .key(live_key)
                .body(json!({"bolt11": payout_bolt11})),
        )
        .await;
    assert_eq!(payout["status"], "succeeded", "{payout}");
    assert_eq!(payout["payment_hash"], payout_hash.as_str());
    c.expect(
        409,
        call("POST", "/v1/payouts", "/v1/payouts")
            .key(live_key)
            .body(json!({"bolt11": payout_bolt11})),
    )
    .await;

    // The Lightning Address: LUD-16's well-known URL, the same pay request under /lnurl, and
    // its callback (an invoice with its BOLT11; a bad amount refused in LNURL's shape).
    let address = c
        .expect(
            200,
            call(
                "GET",
                "/.well-known/lnurlp/{name}",
                "/.well-known/lnurlp/tips",
            ),
        )
        .await;
    assert!(address["metadata"]
        .as_str()
        .is_some_and(|m| m.contains(&format!("tips@{host}"))));
    let missing = c
        .expect(
            404,
            call(
                "GET",
                "/.well-known/lnurlp/{name}",
                "/.well-known/lnurlp/nobody",
            ),
        )
        .await;
    assert_eq!(missing["status"], "ERROR", "{missing}");
    let request = c
        .expect(
            200,
            call("GET", "/lnurl/{mode}/pay/{name}", "/lnurl/live/pay/tips"),
        )
        .await;
    assert_eq!(request, address, "the same pay request");
    let callback = local(&request["callback"], &base);
    c.expect(
        400,
        call(
            "GET",
            "/lnurl/{mode}/pay/{name}/callback",
            format!("{callback}?amount=1500"),
        ),
    )
    .await;
    let answer = c
        .expect(
            200,
            call(
                "GET",
                "/lnurl/{mode}/pay/{name}/callback",
                format!("{callback}?amount=21000&comment=thanks"),
            ),
        )
        .await;
    let (status, paid) = lnbits.pay(answer["pr"].as_str().expect("pr")).await;
    assert!(status < 300, "{status} {paid}");

    // LNURL-auth: a challenge, a wrong signature refused, the right one logs in.
    let auth = c
        .expect(
            201,
            call("POST", "/v1/lnurl/auth", "/v1/lnurl/auth")
                .key(live_key)
                .body(json!({"action": "login", "expires_in": 300})),
        )
        .await;
    let k1 = id(&auth);
    let auth_path = format!("/v1/lnurl/auth/{k1}");
    let pending = c
        .expect(
            200,
            call("GET", "/v1/lnurl/auth/{id}", auth_path.clone()).key(live_key),
        )
        .await;
    assert_eq!(pending["status"], "pending", "{pending}");
    let wallet = secp256k1::SecretKey::from_slice(&[7u8; 32]).expect("key");
    let other = secp256k1::SecretKey::from_slice(&[9u8; 32]).expect("key");
    let linking_key = hex(&wallet.public_key(&secp256k1::Secp256k1::new()).serialize());
    let challenge = local(&auth["url"], &base);
    c.expect(
        400,
        call(
            "GET",
            "/lnurl/{mode}/auth",
            format!("{challenge}&sig={}&key={linking_key}", sign_k1(&k1, &other)),
        ),
    )
    .await;
    let ok = c
        .expect(
            200,
            call(
                "GET",
                "/lnurl/{mode}/auth",
                format!(
                    "{challenge}&sig={}&key={linking_key}",
                    sign_k1(&k1, &wallet)
                ),
            ),
        )
        .await;
    assert_eq!(ok, json!({"status": "OK"}));
    let verified = c
        .expect(
            200,
            call("GET", "/v1/lnurl/auth/{id}", auth_path).key(live_key),
        )
        .await;
    assert_eq!(verified["status"], "verified", "{verified}");
    assert_eq!(verified["linking_key"], linking_key.as_str());
    assert!(verified["customer"]
        .as_str()
        .is_some_and(|c| c.starts_with("cus_")));

    // The same wallet signs in to the dashboard (LNURL-auth): refused until the merchant names
    // its linking key as an owner, then a session `GET /dashboard/me` accepts.
    let login = c
        .expect(
            201,
            call("POST", "/dashboard/login/lnurl", "/dashboard/login/lnurl").body(json!({})),
        )
        .await;
    let login_id = login["id"].as_str().expect("id").to_owned();
    let status_path = format!("/dashboard/login/lnurl/{login_id}");
    let pending = c
        .expect(
            200,
            call("GET", "/dashboard/login/lnurl/{id}", status_path.clone()),
        )
        .await;
    assert_eq!(pending["status"], "pending", "{pending}");
    let challenge = local(&login["url"], &base);
    c.expect(
        200,
        call(
            "GET",
            "/lnurl/{mode}/auth",
            format!(
                "{challenge}&sig={}&key={linking_key}",
                sign_k1(&login_id, &wallet)
            ),
        ),
    )
    .await;
    c.expect(
        401,
        call("GET", "/dashboard/login/lnurl/{id}", status_path.clone()),
    )
    .await;
    // The owner's wallet proves its key by signing an owner challenge, which adds it.
    let link = c
        .expect(
            201,
            call(
                "POST",
                "/v1/dashboard/owners/lnurl",
                "/v1/dashboard/owners/lnurl",
            )
            .key(live_key),
        )
        .await;
    let link_id = link["id"].as_str().expect("id").to_owned();
    c.expect(
        200,
        call(
            "GET",
            "/lnurl/{mode}/auth",
            format!(
                "{}&sig={}&key={linking_key}",
                local(&link["url"], &base),
                sign_k1(&link_id, &wallet)
            ),
        ),
    )
    .await;
    let linked = c
        .expect(
            200,
            call(
                "GET",
                "/v1/dashboard/owners/lnurl/{id}",
                format!("/v1/dashboard/owners/lnurl/{link_id}"),
            )
            .key(live_key),
        )
        .await;
    assert_eq!(linked["status"], "linked", "{linked}");
    c.expect(
        200,
        call("PUT", "/v1/dashboard/owners", "/v1/dashboard/owners")
            .key(live_key)
            .body(json!({"telegram_user_ids": [], "lnurl_linking_keys": [linking_key]})),
    )
    .await;
    let signed_in = c
        .expect(200, call("GET", "/dashboard/login/lnurl/{id}", status_path))
        .await;
    assert_eq!(signed_in["status"], "verified", "{signed_in}");
    assert_eq!(signed_in["user"]["linking_key"], linking_key.as_str());
    let me = c
        .expect(
            200,
            call("GET", "/dashboard/me", "/dashboard/me").header(
                "Authorization",
                format!("Bearer {}", signed_in["session"].as_str().expect("session")),
            ),
        )
        .await;
    assert_eq!(me["user"]["linking_key"], linking_key.as_str());

    // The live events: the Lightning payments, the top-up credit and both payouts, each
    // object in its documented schema.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = c
            .expect(
                200,
                call("GET", "/v1/events", "/v1/events?limit=100").key(live_key),
            )
            .await;
        let data = events["data"].as_array().cloned().unwrap_or_default();
        let payouts = data
            .iter()
            .filter(|e| e["type"] == "payout.succeeded")
            .count();
        let paid = data.iter().filter(|e| e["type"] == "invoice.paid").count();
        let credited = data.iter().any(|e| e["type"] == "invoice.payment_credited");
        if payouts == 2 && paid == 2 && credited {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing live events: {payouts} payouts, {paid} paid, credited {credited}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every route answered successfully at least once...
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let missed: Vec<_> = routes.difference(&client.succeeded).collect();
    assert!(missed.is_empty(), "routes never exercised: {missed:?}");
    // ...and every property of every response schema showed up in some answer: the
    // document describes nothing the server does not send.
    for name in response_schemas(&doc) {
        let Some(documented) = schema(&doc, &name)["properties"].as_object() else {
            continue;
        };
        let seen = client.checker.seen.get(&name).cloned().unwrap_or_default();
        let never: Vec<_> = documented.keys().filter(|k| !seen.contains(*k)).collect();
        assert!(
            never.is_empty(),
            "{name}: documented properties no answer carried: {never:?}"
        );
    }
    running.shutdown().await;
}

/// The bot id in a `PUT /v1/rails/stars` answer.
fn bot_id_of_double(connected: &Value) -> u64 {
    connected["bot_id"].as_u64().expect("a bot id")
}
