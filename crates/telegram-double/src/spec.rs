//! The Bot API reference as data, and a checker for calls and objects against it.
//!
//! [`Spec`] loads `bot-api-10.1.json` (generated from Telegram's documentation) and answers one
//! question: does this method call — or this object — have the shape the documentation
//! describes? Method exists, required fields present, no unknown fields, every value of a
//! declared type, recursively through arrays, objects and unions. A few conditions the docs
//! state in prose ("Required if ok is False", "exactly one item for payments in Telegram
//! Stars") are checked separately by [`Spec::check_documented_rules`].
//!
//! This module never does I/O beyond reading the spec file once, and never guesses: a value that
//! the docs do not allow is a [`SpecViolation`], with the path to it and what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

/// Environment variable that overrides where the spec file is read from.
pub const SPEC_ENV_VAR: &str = "FARTHING_BOT_API_SPEC";

/// Where the spec lives when nothing overrides it: `shared/` is a sibling of the repository root
/// (locally and in CI), and this crate sits at `<repo root>/crates/telegram-double`.
const DEFAULT_SPEC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/telegram/bot-api-10.1.json"
);

/// Update kinds Telegram leaves out when `allowed_updates` is empty or was never set.
const NOT_DELIVERED_BY_DEFAULT: [&str; 3] =
    ["chat_member", "message_reaction", "message_reaction_count"];

/// Why the spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file is not there (or not readable).
    #[error(
        "cannot read the Telegram Bot API spec at {path} (location taken from {origin}): {source}. \
         The spec is expected in `shared/telegram/bot-api-10.1.json` next to the repository root \
         (as CI lays it out); set {SPEC_ENV_VAR} to the file's path to use another copy"
    )]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// Where the path came from: the environment variable or the default.
        origin: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("the Telegram Bot API spec at {path} is not in the expected format: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The file names a type it does not define, or similar.
    #[error("the Telegram Bot API spec is inconsistent: {0}")]
    Inconsistent(String),
}

/// A Bot API type expression as the docs write it: `Integer`, `Array of LabeledPrice`, `Message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeExpr {
    /// A JSON integer (Telegram's ids fit in 52 bits).
    Integer,
    /// A JSON number.
    Float,
    /// A JSON string.
    String,
    /// `true` or `false`.
    Boolean,
    /// `Array of X`.
    Array(Box<TypeExpr>),
    /// A type defined in the spec's `types` (an object, a union, or `InputFile`).
    Named(String),
}

impl TypeExpr {
    fn parse(text: &str) -> TypeExpr {
        match text {
            "Integer" => TypeExpr::Integer,
            "Float" => TypeExpr::Float,
            "String" => TypeExpr::String,
            "Boolean" | "True" => TypeExpr::Boolean,
            _ => match text.strip_prefix("Array of ") {
                Some(inner) => TypeExpr::Array(Box::new(TypeExpr::parse(inner))),
                None => TypeExpr::Named(text.to_owned()),
            },
        }
    }

    fn named(&self) -> Option<&str> {
        match self {
            TypeExpr::Array(inner) => inner.named(),
            TypeExpr::Named(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for TypeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeExpr::Integer => f.write_str("Integer"),
            TypeExpr::Float => f.write_str("Float"),
            TypeExpr::String => f.write_str("String"),
            TypeExpr::Boolean => f.write_str("Boolean"),
            TypeExpr::Array(inner) => write!(f, "Array of {inner}"),
            TypeExpr::Named(name) => f.write_str(name),
        }
    }
}

/// One field of a method or object type.
#[derive(Clone, Debug)]
pub struct Field {
    /// The field's name, as sent on the wire.
    pub name: String,
    /// The accepted types; a value must match one of them.
    pub types: Vec<TypeExpr>,
    /// Whether the docs mark the field required.
    pub required: bool,
    /// For the discriminator of a union member (`type`, `status`, `source`): the only value the
    /// docs allow, taken from "always \"user\"" / "must be photo".
    pub constant: Option<String>,
}

/// What a named type is.
#[derive(Clone, Debug)]
pub enum TypeKind {
    /// A JSON object with these fields (placeholders such as `CallbackGame` have none).
    Object(Vec<Field>),
    /// "It can be one of": a value matching any member is accepted.
    Union(Vec<TypeExpr>),
    /// File contents; in JSON or form bodies only a `file_id`, URL or `attach://` string can
    /// stand for one.
    InputFile,
}

/// A Bot API method.
#[derive(Clone, Debug)]
pub struct Method {
    /// The method name, e.g. `createInvoiceLink`.
    pub name: String,
    /// Its parameters.
    pub fields: Vec<Field>,
    /// What it returns on success (`Boolean` means `True`).
    pub returns: Vec<TypeExpr>,
}

/// How the parameters of a call were encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// A JSON object body: values carry their JSON types.
    Json,
    /// `application/x-www-form-urlencoded` or a query string: every value is text, so integers,
    /// booleans and floats are accepted in their text form and objects/arrays as JSON text.
    Form,
}

/// What kind of deviation from the docs a violation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// No method of that name.
    UnknownMethod,
    /// A required field (or parameter) is absent.
    MissingField,
    /// A field (or parameter) the docs do not define.
    UnknownField,
    /// A value of a type the docs do not allow.
    WrongType,
    /// A discriminator with another value than the one the docs fix.
    WrongValue,
    /// A condition the docs state in prose (see [`Spec::check_documented_rules`]).
    BrokenRule,
}

/// One way in which a call or object differs from the docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecViolation {
    /// Where: `createInvoiceLink.prices[0].amount`.
    pub path: String,
    /// What kind of difference.
    pub kind: ViolationKind,
    /// What the docs want there.
    pub expected: String,
    /// What was there instead.
    pub found: String,
}

impl fmt::Display for SpecViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.path, self.expected, self.found
        )
    }
}

/// The loaded Bot API reference.
#[derive(Clone, Debug)]
pub struct Spec {
    version: String,
    methods: BTreeMap<String, Method>,
    types: BTreeMap<String, TypeKind>,
}

#[derive(Deserialize)]
struct RawSpec {
    version: String,
    methods: BTreeMap<String, RawMethod>,
    types: BTreeMap<String, RawType>,
}

#[derive(Deserialize)]
struct RawMethod {
    name: String,
    #[serde(default)]
    fields: Vec<RawField>,
    returns: Vec<String>,
}

#[derive(Deserialize)]
struct RawType {
    #[serde(default)]
    fields: Option<Vec<RawField>>,
    #[serde(default)]
    subtypes: Vec<String>,
    #[serde(default)]
    subtype_of: Vec<String>,
}

#[derive(Deserialize)]
struct RawField {
    name: String,
    types: Vec<String>,
    required: bool,
    #[serde(default)]
    description: String,
}

/// Where the spec file is: `override_path` (the value of [`SPEC_ENV_VAR`]) if set and non-empty,
/// else the default next to the repository root. Returns the path and a word on its origin.
pub fn locate(override_path: Option<&str>) -> (PathBuf, &'static str) {
    match override_path {
        Some(path) if !path.trim().is_empty() => (PathBuf::from(path), SPEC_ENV_VAR),
        _ => (
            PathBuf::from(DEFAULT_SPEC_PATH),
            "CARGO_MANIFEST_DIR/../../../shared",
        ),
    }
}

/// The spec, loaded once per test binary from [`SPEC_ENV_VAR`] or the default location.
///
/// # Panics
/// If the spec cannot be loaded — with a message saying where it looked and how to override it.
/// Tests that depend on the spec must fail, not skip, when it is missing.
pub fn shared() -> &'static Spec {
    static SPEC: std::sync::OnceLock<Spec> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| match Spec::load_default() {
        Ok(spec) => spec,
        Err(error) => panic!("{error}"),
    })
}

impl Spec {
    /// Loads the spec from [`SPEC_ENV_VAR`] or, if unset, from `shared/` next to the repository.
    pub fn load_default() -> Result<Spec, SpecError> {
        let env = std::env::var(SPEC_ENV_VAR).ok();
        let (path, origin) = locate(env.as_deref());
        Spec::load_from(&path, origin)
    }

    /// Loads the spec from a file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        Spec::load_from(path, "the caller")
    }

    fn load_from(path: &Path, origin: &'static str) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            origin,
            source,
        })?;
        let raw: RawSpec = serde_json::from_str(&text).map_err(|source| SpecError::Parse {
            path: path.to_owned(),
            source,
        })?;
        Spec::from_raw(raw)
    }

    /// Parses the spec from its JSON text.
    pub fn from_json_str(text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = serde_json::from_str(text).map_err(|source| SpecError::Parse {
            path: PathBuf::from("<string>"),
            source,
        })?;
        Spec::from_raw(raw)
    }

    fn from_raw(raw: RawSpec) -> Result<Spec, SpecError> {
        let mut types = BTreeMap::new();
        for (name, raw_type) in &raw.types {
            let kind = if let Some(fields) = &raw_type.fields {
                let is_union_member = !raw_type.subtype_of.is_empty();
                TypeKind::Object(fields.iter().map(|f| field(f, is_union_member)).collect())
            } else if !raw_type.subtypes.is_empty() {
                TypeKind::Union(
                    raw_type
                        .subtypes
                        .iter()
                        .map(|t| TypeExpr::parse(t))
                        .collect(),
                )
            } else if name == "InputFile" {
                TypeKind::InputFile
            } else {
                // Placeholders ("currently holds no information"): an object with no fields.
                TypeKind::Object(Vec::new())
            };
            types.insert(name.clone(), kind);
        }
        let methods: BTreeMap<String, Method> = raw
            .methods
            .values()
            .map(|m| {
                let method = Method {
                    name: m.name.clone(),
                    fields: m.fields.iter().map(|f| field(f, false)).collect(),
                    returns: m.returns.iter().map(|t| TypeExpr::parse(t)).collect(),
                };
                (m.name.clone(), method)
            })
            .collect();
        let spec = Spec {
            version: raw.version,
            methods,
            types,
        };
        spec.check_references()?;
        Ok(spec)
    }

    /// Every type named anywhere must be defined, or validation would silently accept anything.
    fn check_references(&self) -> Result<(), SpecError> {
        let mut exprs: Vec<(String, &TypeExpr)> = Vec::new();
        for method in self.methods.values() {
            for f in &method.fields {
                exprs.extend(
                    f.types
                        .iter()
                        .map(|t| (format!("{}.{}", method.name, f.name), t)),
                );
            }
            exprs.extend(method.returns.iter().map(|t| (method.name.clone(), t)));
        }
        for (name, kind) in &self.types {
            match kind {
                TypeKind::Object(fields) => {
                    for f in fields {
                        exprs.extend(f.types.iter().map(|t| (format!("{name}.{}", f.name), t)));
                    }
                }
                TypeKind::Union(members) => exprs.extend(members.iter().map(|t| (name.clone(), t))),
                TypeKind::InputFile => {}
            }
        }
        for (place, expr) in exprs {
            if let Some(named) = expr.named() {
                if !self.types.contains_key(named) {
                    return Err(SpecError::Inconsistent(format!(
                        "{place} refers to type {named}, which is not defined"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The spec's version string, e.g. `Bot API 10.1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A method by its exact name.
    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods.get(name)
    }

    /// A named type.
    pub fn type_kind(&self, name: &str) -> Option<&TypeKind> {
        self.types.get(name)
    }

    /// The update kinds (`message`, `pre_checkout_query`, …): the fields of `Update` other
    /// than `update_id`.
    pub fn update_kinds(&self) -> Vec<String> {
        match self.types.get("Update") {
            Some(TypeKind::Object(fields)) => fields
                .iter()
                .filter(|f| f.name != "update_id")
                .map(|f| f.name.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether Telegram delivers an update of `kind` under an `allowed_updates` setting
    /// (`None`: never set; an empty list means the default, too).
    pub fn update_allowed(kind: &str, allowed_updates: Option<&[String]>) -> bool {
        match allowed_updates {
            Some(list) if !list.is_empty() => list.iter().any(|k| k == kind),
            _ => !NOT_DELIVERED_BY_DEFAULT.contains(&kind),
        }
    }

    /// Checks a call whose parameters came as a JSON object body.
    pub fn validate(
        &self,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<(), Vec<SpecViolation>> {
        self.validate_call(method, params, Encoding::Json)
    }

    /// Checks a call: the method exists, required parameters are present, no unknown
    /// parameters, and every value has one of its declared types.
    pub fn validate_call(
        &self,
        method: &str,
        params: &Map<String, Value>,
        encoding: Encoding,
    ) -> Result<(), Vec<SpecViolation>> {
        let Some(spec_method) = self.methods.get(method) else {
            let hint = self
                .methods
                .keys()
                .find(|name| name.eq_ignore_ascii_case(method))
                .map(|name| format!(" (the docs spell it `{name}`)"))
                .unwrap_or_default();
            return Err(vec![SpecViolation {
                path: method.to_owned(),
                kind: ViolationKind::UnknownMethod,
                expected: format!("a method of {}", self.version),
                found: format!("unknown method `{method}`{hint}"),
            }]);
        };
        let text_scalars = encoding == Encoding::Form;
        let mut out = Vec::new();
        self.check_fields(
            method,
            &spec_method.fields,
            params,
            method,
            text_scalars,
            &mut out,
        );
        if out.is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    }

    /// Checks a value against a type expression as the docs write it (`Message`,
    /// `Array of Update`, `StarTransaction`). `path` names the value in violations.
    pub fn validate_value(
        &self,
        type_expr: &str,
        value: &Value,
        path: &str,
    ) -> Result<(), Vec<SpecViolation>> {
        let expr = TypeExpr::parse(type_expr);
        if let Some(named) = expr.named() {
            if !self.types.contains_key(named) {
                return Err(vec![SpecViolation {
                    path: path.to_owned(),
                    kind: ViolationKind::WrongType,
                    expected: format!("a type of {}", self.version),
                    found: format!("unknown type `{named}`"),
                }]);
            }
        }
        let out = self.check(&expr, value, path, false);
        if out.is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    }

    /// Checks a method's `result` against what the method is documented to return.
    pub fn validate_result(&self, method: &str, result: &Value) -> Result<(), Vec<SpecViolation>> {
        let path = format!("{method}.result");
        let Some(spec_method) = self.methods.get(method) else {
            return Err(vec![SpecViolation {
                path,
                kind: ViolationKind::UnknownMethod,
                expected: format!("a method of {}", self.version),
                found: format!("unknown method `{method}`"),
            }]);
        };
        let out = self.check_alternatives(&spec_method.returns, result, &path, false);
        if out.is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    }

    /// Turns the parameters of a valid call into typed JSON: form text becomes integers,
    /// booleans, numbers, objects and arrays where the docs declare those types, and
    /// JSON-serialized strings for object/array parameters are parsed. Values that do not
    /// convert are left as they are.
    pub fn normalize(
        &self,
        method: &str,
        params: &Map<String, Value>,
        encoding: Encoding,
    ) -> Map<String, Value> {
        let Some(spec_method) = self.methods.get(method) else {
            return params.clone();
        };
        params
            .iter()
            .map(|(name, value)| {
                let converted = spec_method
                    .fields
                    .iter()
                    .find(|f| &f.name == name)
                    .and_then(|f| self.convert_text(&f.types, value, encoding));
                (name.clone(), converted.unwrap_or_else(|| value.clone()))
            })
            .collect()
    }

    fn convert_text(&self, alts: &[TypeExpr], value: &Value, encoding: Encoding) -> Option<Value> {
        let Value::String(text) = value else {
            return None;
        };
        // A string that a String alternative accepts stays a string in JSON bodies.
        let text_is_declared = alts.iter().any(|a| match a {
            TypeExpr::String => true,
            TypeExpr::Named(name) => matches!(self.types.get(name), Some(TypeKind::InputFile)),
            _ => false,
        });
        if encoding == Encoding::Json && text_is_declared {
            return None;
        }
        let mut candidates = Vec::new();
        if encoding == Encoding::Form {
            if alts.contains(&TypeExpr::Integer) && is_integer_text(text) {
                candidates.extend(text.parse::<i64>().ok().map(Value::from));
            }
            if alts.contains(&TypeExpr::Boolean) && (text == "true" || text == "false") {
                candidates.push(Value::Bool(text == "true"));
            }
            if alts.contains(&TypeExpr::Float) {
                candidates.extend(
                    text.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number),
                );
            }
        }
        if let Ok(parsed @ (Value::Array(_) | Value::Object(_))) =
            serde_json::from_str::<Value>(text)
        {
            candidates.push(parsed);
        }
        candidates.into_iter().find(|candidate| {
            self.check_alternatives(alts, candidate, "", false)
                .is_empty()
        })
    }

    /// Conditions the docs state in prose, which the field tables cannot express. `params` are
    /// typed (see [`Spec::normalize`]). Only rules a payment bot can break are checked:
    /// - `answerPreCheckoutQuery`: `error_message` is "Required if ok is False".
    /// - `createInvoiceLink`/`sendInvoice` in `XTR`: `prices` "must contain exactly one item",
    ///   `provider_token` empty or absent, no tips ("Not supported for payments in Telegram
    ///   Stars"), amounts positive; in any other currency a provider token is needed.
    /// - `createInvoiceLink.subscription_period`: "must always be 2592000", currency `XTR`,
    ///   price at most 10000 Stars.
    /// - `editMessageText`/`editMessageReplyMarkup`: `chat_id` and `message_id` are "Required if
    ///   inline_message_id is not specified".
    pub fn check_documented_rules(
        &self,
        method: &str,
        params: &Map<String, Value>,
    ) -> Vec<SpecViolation> {
        let mut out = Vec::new();
        let mut broken = |field: &str, expected: &str, found: String| {
            out.push(SpecViolation {
                path: format!("{method}.{field}"),
                kind: ViolationKind::BrokenRule,
                expected: expected.to_owned(),
                found,
            });
        };
        let absent_or = |name: &str| {
            params
                .get(name)
                .map(describe)
                .unwrap_or_else(|| "nothing".to_owned())
        };
        match method {
            "answerPreCheckoutQuery" => {
                let ok = params.get("ok").and_then(Value::as_bool);
                let message = params
                    .get("error_message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if ok == Some(false) && message.trim().is_empty() {
                    broken(
                        "error_message",
                        "a human-readable error_message when ok is false",
                        absent_or("error_message"),
                    );
                }
            }
            "createInvoiceLink" | "sendInvoice" => {
                let currency = params.get("currency").and_then(Value::as_str).unwrap_or("");
                let prices = params.get("prices").and_then(Value::as_array);
                let provider_token = params
                    .get("provider_token")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if currency == "XTR" {
                    if let Some(prices) = prices {
                        if prices.len() != 1 {
                            broken(
                                "prices",
                                "exactly one price for payments in Telegram Stars",
                                format!("{} prices", prices.len()),
                            );
                        }
                        for (i, price) in prices.iter().enumerate() {
                            if price
                                .get("amount")
                                .and_then(Value::as_i64)
                                .is_some_and(|a| a < 1)
                            {
                                broken(
                                    &format!("prices[{i}].amount"),
                                    "a positive number of Stars",
                                    describe(&price["amount"]),
                                );
                            }
                        }
                    }
                    if !provider_token.is_empty() {
                        broken(
                            "provider_token",
                            "no provider token (or an empty one) for payments in Telegram Stars",
                            absent_or("provider_token"),
                        );
                    }
                    for tip in ["max_tip_amount", "suggested_tip_amounts"] {
                        if params.contains_key(tip) {
                            broken(
                                tip,
                                "no tips for payments in Telegram Stars",
                                absent_or(tip),
                            );
                        }
                    }
                } else if !currency.is_empty() && provider_token.is_empty() {
                    broken(
                        "provider_token",
                        "a payment provider token for a fiat currency",
                        absent_or("provider_token"),
                    );
                }
                if let Some(period) = params.get("subscription_period") {
                    if period.as_i64() != Some(2_592_000) {
                        broken("subscription_period", "2592000 (30 days)", describe(period));
                    }
                    if currency != "XTR" {
                        broken(
                            "currency",
                            "\"XTR\" for a subscription",
                            absent_or("currency"),
                        );
                    }
                    let total: i64 = prices
                        .map(|p| {
                            p.iter()
                                .filter_map(|x| x.get("amount").and_then(Value::as_i64))
                                .sum()
                        })
                        .unwrap_or(0);
                    if total > 10_000 {
                        broken(
                            "prices",
                            "a subscription price of at most 10000 Stars",
                            total.to_string(),
                        );
                    }
                }
            }
            "editMessageText" | "editMessageReplyMarkup"
                if !params.contains_key("inline_message_id") =>
            {
                for name in ["chat_id", "message_id"] {
                    if !params.contains_key(name) {
                        broken(
                            name,
                            "chat_id and message_id when inline_message_id is not given",
                            "nothing".to_owned(),
                        );
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn check_fields(
        &self,
        owner: &str,
        fields: &[Field],
        object: &Map<String, Value>,
        path: &str,
        text_scalars: bool,
        out: &mut Vec<SpecViolation>,
    ) {
        // In the docs' order, so violations read like the documentation.
        for f in fields {
            let field_path = format!("{path}.{}", f.name);
            let Some(value) = object.get(&f.name) else {
                if f.required {
                    out.push(SpecViolation {
                        path: field_path,
                        kind: ViolationKind::MissingField,
                        expected: format!("required field of type {}", join(&f.types)),
                        found: "nothing".to_owned(),
                    });
                }
                continue;
            };
            let before = out.len();
            out.extend(self.check_alternatives(&f.types, value, &field_path, text_scalars));
            if out.len() == before {
                if let (Some(constant), Some(actual)) = (&f.constant, value.as_str()) {
                    if actual != constant {
                        out.push(SpecViolation {
                            path: field_path,
                            kind: ViolationKind::WrongValue,
                            expected: format!("\"{constant}\""),
                            found: describe(value),
                        });
                    }
                }
            }
        }
        for (name, value) in object {
            if !fields.iter().any(|f| &f.name == name) {
                out.push(SpecViolation {
                    path: format!("{path}.{name}"),
                    kind: ViolationKind::UnknownField,
                    expected: format!("no field `{name}` (not defined for {owner})"),
                    found: describe(value),
                });
            }
        }
    }

    /// A value must match one of `alts`. When none does, the violations reported are those of
    /// the alternative the value was evidently meant as (by its discriminator, or the only one
    /// of its JSON kind); failing that, one violation listing all alternatives.
    fn check_alternatives(
        &self,
        alts: &[TypeExpr],
        value: &Value,
        path: &str,
        text_scalars: bool,
    ) -> Vec<SpecViolation> {
        if let [only] = alts {
            return self.check(only, value, path, text_scalars);
        }
        let mut attempts = Vec::with_capacity(alts.len());
        for alt in alts {
            let violations = self.check(alt, value, path, text_scalars);
            if violations.is_empty() {
                return Vec::new();
            }
            attempts.push((alt, violations));
        }
        let by_discriminator: Vec<usize> = (0..attempts.len())
            .filter(|&i| self.discriminator_matches(attempts[i].0, value))
            .collect();
        let by_kind: Vec<usize> = (0..attempts.len())
            .filter(|&i| self.kind_compatible(attempts[i].0, value))
            .collect();
        let chosen = match (by_discriminator.as_slice(), by_kind.as_slice()) {
            ([one], _) | ([], [one]) => Some(*one),
            _ => None,
        };
        if let Some(i) = chosen {
            return attempts.swap_remove(i).1;
        }
        let closest = by_kind
            .iter()
            .min_by_key(|&&i| attempts[i].1.len())
            .map(|&i| {
                let (alt, violations) = &attempts[i];
                let first = violations
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                format!(" (closest: {alt}, which fails with {first})")
            })
            .unwrap_or_default();
        vec![SpecViolation {
            path: path.to_owned(),
            kind: ViolationKind::WrongType,
            expected: format!("one of {}{closest}", join(alts)),
            found: describe(value),
        }]
    }

    fn discriminator_matches(&self, alt: &TypeExpr, value: &Value) -> bool {
        let (TypeExpr::Named(name), Value::Object(object)) = (alt, value) else {
            return false;
        };
        let Some(TypeKind::Object(fields)) = self.types.get(name) else {
            return false;
        };
        fields.iter().any(|f| match &f.constant {
            Some(constant) => object.get(&f.name).and_then(Value::as_str) == Some(constant),
            None => false,
        })
    }

    fn kind_compatible(&self, alt: &TypeExpr, value: &Value) -> bool {
        match (alt, value) {
            (TypeExpr::Integer | TypeExpr::Float, Value::Number(_)) => true,
            (TypeExpr::String, Value::String(_)) => true,
            (TypeExpr::Boolean, Value::Bool(_)) => true,
            (TypeExpr::Array(_), Value::Array(_)) => true,
            (TypeExpr::Named(name), _) => match self.types.get(name) {
                Some(TypeKind::Object(_)) => value.is_object(),
                Some(TypeKind::InputFile) => value.is_string(),
                Some(TypeKind::Union(members)) => {
                    members.iter().any(|m| self.kind_compatible(m, value))
                }
                None => false,
            },
            _ => false,
        }
    }

    /// `text_scalars`: the value is a top-level form parameter, so scalars come as text.
    fn check(
        &self,
        expr: &TypeExpr,
        value: &Value,
        path: &str,
        text_scalars: bool,
    ) -> Vec<SpecViolation> {
        let mismatch = |expected: String| {
            vec![SpecViolation {
                path: path.to_owned(),
                kind: ViolationKind::WrongType,
                expected,
                found: describe(value),
            }]
        };
        match expr {
            TypeExpr::Integer => match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => Vec::new(),
                Value::String(s) if text_scalars && is_integer_text(s) => Vec::new(),
                _ => mismatch("Integer".to_owned()),
            },
            TypeExpr::Float => match value {
                Value::Number(_) => Vec::new(),
                Value::String(s) if text_scalars && s.parse::<f64>().is_ok_and(f64::is_finite) => {
                    Vec::new()
                }
                _ => mismatch("Float".to_owned()),
            },
            TypeExpr::String => match value {
                Value::String(_) => Vec::new(),
                _ => mismatch("String".to_owned()),
            },
            TypeExpr::Boolean => match value {
                Value::Bool(_) => Vec::new(),
                Value::String(s) if text_scalars && (s == "true" || s == "false") => Vec::new(),
                _ => mismatch("Boolean".to_owned()),
            },
            TypeExpr::Array(inner) => match value {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .flat_map(|(i, item)| self.check(inner, item, &format!("{path}[{i}]"), false))
                    .collect(),
                Value::String(text) => match serde_json::from_str::<Value>(text) {
                    Ok(parsed @ Value::Array(_)) => self.check(expr, &parsed, path, false),
                    _ => mismatch(format!(
                        "{expr} (a JSON array, or a JSON-serialized string of one)"
                    )),
                },
                _ => mismatch(expr.to_string()),
            },
            TypeExpr::Named(name) => match self.types.get(name) {
                Some(TypeKind::InputFile) => match value {
                    Value::String(_) => Vec::new(),
                    _ => {
                        mismatch("InputFile (a file_id, an HTTP URL or attach://<name>)".to_owned())
                    }
                },
                Some(TypeKind::Union(members)) => {
                    self.check_alternatives(members, value, path, text_scalars)
                }
                Some(TypeKind::Object(fields)) => match value {
                    Value::Object(object) => {
                        let mut out = Vec::new();
                        self.check_fields(name, fields, object, path, false, &mut out);
                        out
                    }
                    Value::String(text) => match serde_json::from_str::<Value>(text) {
                        Ok(parsed @ Value::Object(_)) => self.check(expr, &parsed, path, false),
                        _ => mismatch(format!(
                            "{name} (a JSON object, or a JSON-serialized string of one)"
                        )),
                    },
                    _ => mismatch(format!("{name} (a JSON object)")),
                },
                None => mismatch(format!("{name} (which the spec does not define)")),
            },
        }
    }
}

fn field(raw: &RawField, is_union_member: bool) -> Field {
    let types: Vec<TypeExpr> = raw.types.iter().map(|t| TypeExpr::parse(t)).collect();
    let constant = if is_union_member
        && matches!(raw.name.as_str(), "type" | "status" | "source")
        && types == [TypeExpr::String]
    {
        discriminator_constant(&raw.description)
    } else {
        None
    };
    Field {
        name: raw.name.clone(),
        types,
        required: raw.required,
        constant,
    }
}

/// `Type of the transaction partner, always "user"` → `user`;
/// `Type of the media, must be photo` → `photo`.
fn discriminator_constant(description: &str) -> Option<String> {
    if let Some((_, rest)) = description.split_once("always \"") {
        return rest.split_once('"').map(|(value, _)| value.to_owned());
    }
    let (_, rest) = description.rsplit_once("must be ")?;
    let value = rest.trim_end_matches('.');
    let is_word = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    is_word.then(|| value.to_owned())
}

fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.len() <= 19 && digits.chars().all(|c| c.is_ascii_digit())
}

fn join(types: &[TypeExpr]) -> String {
    types
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A short description of a value for violation messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(60).collect();
            let ellipsis = if shown.len() < s.len() { "…" } else { "" };
            format!("string {shown:?}{ellipsis}")
        }
        Value::Array(items) => format!("array of {} items", items.len()),
        Value::Object(object) => {
            let keys: Vec<&str> = object.keys().map(String::as_str).take(8).collect();
            format!("object {{{}}}", keys.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discriminators_are_read_from_descriptions() {
        assert_eq!(
            discriminator_constant("Type of the transaction partner, always \"user\"").as_deref(),
            Some("user")
        );
        assert_eq!(
            discriminator_constant("Type of the result, must be mpeg4_gif").as_deref(),
            Some("mpeg4_gif")
        );
        assert_eq!(
            discriminator_constant("Type of the chat, can be either \"private\""),
            None
        );
    }

    #[test]
    fn type_expressions_round_trip() {
        for text in [
            "Integer",
            "Array of Array of InlineKeyboardButton",
            "Message",
            "Array of String",
        ] {
            assert_eq!(TypeExpr::parse(text).to_string(), text);
        }
        assert_eq!(
            TypeExpr::parse("Array of Array of X"),
            TypeExpr::Array(Box::new(TypeExpr::Array(Box::new(TypeExpr::Named(
                "X".into()
            )))))
        );
    }

    #[test]
    fn integer_text_is_digits_with_an_optional_sign() {
        assert!(is_integer_text("2592000"));
        assert!(is_integer_text("-1001234"));
        assert!(!is_integer_text("5.0"));
        assert!(!is_integer_text(""));
        assert!(!is_integer_text("-"));
        assert!(!is_integer_text("12a"));
    }

    #[test]
    fn the_override_wins_and_the_default_is_beside_the_repository() {
        let (path, origin) = locate(Some("/tmp/elsewhere.json"));
        assert_eq!(path, PathBuf::from("/tmp/elsewhere.json"));
        assert_eq!(origin, SPEC_ENV_VAR);
        let (path, _) = locate(None);
        assert!(
            path.ends_with("shared/telegram/bot-api-10.1.json"),
            "{}",
            path.display()
        );
        let (empty, _) = locate(Some("  "));
        assert_eq!(empty, path);
    }

    #[test]
    fn a_missing_spec_fails_loudly_naming_the_path_and_the_override() {
        let error = Spec::load(Path::new("/nonexistent/bot-api.json"))
            .expect_err("a missing file must be an error");
        let message = error.to_string();
        assert!(message.contains("/nonexistent/bot-api.json"), "{message}");
        assert!(message.contains(SPEC_ENV_VAR), "{message}");
    }

    #[test]
    fn an_undefined_type_reference_is_rejected_at_load() {
        let text = r#"{"version":"x","methods":{"m":{"name":"m","fields":[
            {"name":"a","types":["Nope"],"required":true,"description":""}],"returns":["Boolean"]}},
            "types":{}}"#;
        let error = Spec::from_json_str(text).expect_err("Nope is not defined");
        assert!(error.to_string().contains("Nope"), "{error}");
    }
}
