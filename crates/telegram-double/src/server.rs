//! A Bot API server for tests: answers `/bot<token>/<method>` on 127.0.0.1 like Telegram does
//! for a payment bot, checks every call against the spec, and records everything.
//!
//! A test spawns a [`TelegramDouble`], gives its [`base_url`](TelegramDouble::base_url) to
//! farthing as `api_url`, injects updates, and then reads what farthing called. Every call is
//! checked with [`Spec`]; a call that breaks the spec is answered
//! `400 Bad Request` (or `404 Not Found` for an unknown method, as Telegram does) *and* kept in
//! [`violations`](TelegramDouble::violations), so a test can assert there were none even if
//! farthing swallowed the error.
//!
//! The double never talks to the network beyond its own listener and never delivers webhooks:
//! with a webhook set, the test posts updates to farthing itself.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Notify};

use crate::answers::{self, Webhook};
use crate::spec::{self, describe, Encoding, Spec, SpecViolation, ViolationKind};

/// The token the double accepts unless a test sets another.
pub const DEFAULT_TOKEN: &str = "123456789:AAE-telegram-double-test-token";

/// `getUpdates` and `getStarTransactions` return at most this many items, as Telegram does.
const LIST_LIMIT_MAX: usize = 100;

/// Bound on a long poll, so a test that asks for a huge timeout still ends.
const LONG_POLL_TIMEOUT_S_MAX: u64 = 300;

/// A call the double received.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    /// Position in the order of arrival, from 0.
    pub seq: usize,
    /// The method name as it appeared in the URL.
    pub method: String,
    /// Whether the URL carried the configured token.
    pub token_ok: bool,
    /// `GET` or `POST`.
    pub http_method: String,
    /// How the parameters came.
    pub encoding: Encoding,
    /// The parameters as received (form values are strings).
    pub raw_params: Map<String, Value>,
    /// The parameters typed per the spec: integers as numbers, JSON-serialized objects and
    /// arrays parsed (see [`Spec::normalize`]).
    pub params: Map<String, Value>,
    /// When the call arrived.
    pub at: SystemTime,
    /// The answer, once sent (a long poll is recorded before it is answered).
    pub answer: Option<Answer>,
}

impl RecordedCall {
    /// A typed parameter.
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name)
    }

    /// A typed parameter as a string, if it is one.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    /// A typed parameter as an integer, if it is one.
    pub fn param_i64(&self, name: &str) -> Option<i64> {
        self.params.get(name).and_then(Value::as_i64)
    }

    /// The `result` of a successful answer.
    pub fn result(&self) -> Option<&Value> {
        self.answer
            .as_ref()
            .filter(|a| a.status == 200)
            .and_then(|a| a.body.get("result"))
    }
}

/// The HTTP answer the double gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// HTTP status (200, 400, 401, 404, 409, 429, 500…).
    pub status: u16,
    /// The JSON body (`{"ok":true,"result":…}` or Telegram's error shape).
    pub body: Value,
}

/// Spec violations found in one call (or in an answer of the double itself).
#[derive(Clone, Debug)]
pub struct RecordedViolation {
    /// The call's [`RecordedCall::seq`].
    pub call_seq: usize,
    /// The method called.
    pub method: String,
    /// What was wrong.
    pub violations: Vec<SpecViolation>,
}

impl fmt::Display for RecordedViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call #{} {}:", self.call_seq, self.method)?;
        for violation in &self.violations {
            write!(f, "\n    {violation}")?;
        }
        Ok(())
    }
}

/// A failure to answer the next call to a method with, instead of the normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `429 Too Many Requests: retry after N` with `parameters.retry_after`.
    TooManyRequests {
        /// Seconds the client must wait.
        retry_after_s: u32,
    },
    /// `500 Internal Server Error`.
    InternalServerError,
    /// `400 Bad Request: <description>`, e.g. `QUERY_ID_INVALID`.
    BadRequest(String),
    /// `403 Forbidden: <description>`, e.g. `bot was blocked by the user`.
    Forbidden(String),
}

impl Failure {
    fn answer(&self) -> Answer {
        let (status, description, retry_after) = match self {
            Failure::TooManyRequests { retry_after_s } => (
                429,
                format!("Too Many Requests: retry after {retry_after_s}"),
                Some(*retry_after_s),
            ),
            Failure::InternalServerError => (500, "Internal Server Error".to_owned(), None),
            Failure::BadRequest(d) => (400, format!("Bad Request: {d}"), None),
            Failure::Forbidden(d) => (403, format!("Forbidden: {d}"), None),
        };
        error(status, &description, retry_after)
    }
}

/// A wait for a call that did not come in time.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WaitTimeout(String);

/// A running Bot API double. Cloning gives another handle to the same server; the server stops
/// when the last handle is dropped.
#[derive(Clone)]
pub struct TelegramDouble {
    shared: Arc<Shared>,
    base_url: String,
    _server: Arc<AbortOnDrop>,
}

/// Configures a [`TelegramDouble`] before it starts.
pub struct Builder {
    token: String,
    bot_user: Option<Value>,
    spec: Option<&'static Spec>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    spec: &'static Spec,
    token: String,
    state: Mutex<State>,
    /// Woken when an update is injected or a newer `getUpdates` arrives.
    updates_changed: Notify,
    /// Bumped whenever a call is recorded or answered.
    calls_changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    bot_user: Value,
    calls: Vec<RecordedCall>,
    violations: Vec<RecordedViolation>,
    updates: VecDeque<Value>,
    next_update_id: i64,
    filtered_updates: Vec<Value>,
    /// `None`: never set. Set by `getUpdates` and `setWebhook`, as on Telegram.
    allowed_updates: Option<Vec<String>>,
    poll_generation: u64,
    next_message_id: i64,
    /// The bot's messages by (chat id, message id), as sent and edited.
    messages: BTreeMap<(i64, i64), Value>,
    /// Chat ids assigned to `@username` chat ids.
    channel_ids: HashMap<String, i64>,
    star_transactions: Vec<Value>,
    failures: HashMap<String, VecDeque<Failure>>,
    fixed_answers: HashMap<String, Value>,
    webhook: Option<Webhook>,
    refunded_charges: HashSet<String>,
    rng: Option<fastrand::Rng>,
}

impl Builder {
    /// The bot token the double accepts (default [`DEFAULT_TOKEN`]).
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        self.token = token.into();
        self
    }

    /// The `User` `getMe` answers with (default: a bot whose id is the token's prefix).
    pub fn bot_user(mut self, user: Value) -> Builder {
        self.bot_user = Some(user);
        self
    }

    /// Another spec than [`spec::shared`].
    pub fn spec(mut self, spec: &'static Spec) -> Builder {
        self.spec = Some(spec);
        self
    }

    /// Starts the server on 127.0.0.1 on a free port, on the current tokio runtime.
    ///
    /// # Panics
    /// If the spec cannot be loaded, or the configured bot user is not a valid `User`.
    pub async fn spawn(self) -> std::io::Result<TelegramDouble> {
        let spec = self.spec.unwrap_or_else(spec::shared);
        let bot_id = answers::bot_id_from_token(&self.token).unwrap_or(123_456_789);
        let bot_user = self
            .bot_user
            .unwrap_or_else(|| answers::default_bot_user(bot_id));
        expect_valid(spec, "User", &bot_user, "bot_user");
        let shared = Arc::new(Shared {
            spec,
            token: self.token,
            state: Mutex::new(State {
                bot_user,
                next_update_id: 1,
                next_message_id: 1,
                rng: Some(fastrand::Rng::new()),
                ..State::default()
            }),
            updates_changed: Notify::new(),
            calls_changed: watch::Sender::new(0),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/{bot}/{method}", any(handle))
            .fallback(|| async { error(404, "Not Found", None).into_response() })
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            // Ends only when the task is aborted (last handle dropped) or the listener fails.
            let _ = axum::serve(listener, app).await;
        });
        Ok(TelegramDouble {
            shared,
            base_url: format!("http://{address}"),
            _server: Arc::new(AbortOnDrop(server)),
        })
    }
}

impl TelegramDouble {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder {
            token: DEFAULT_TOKEN.to_owned(),
            bot_user: None,
            spec: None,
        }
    }

    /// Starts a double with the defaults.
    pub async fn spawn() -> std::io::Result<TelegramDouble> {
        TelegramDouble::builder().spawn().await
    }

    /// The base URL to give farthing as `api_url` (`http://127.0.0.1:<port>`, no trailing slash);
    /// methods are at `<base_url>/bot<token>/<method>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The token the double accepts.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The spec calls are checked against.
    pub fn spec(&self) -> &'static Spec {
        self.shared.spec
    }

    /// The `User` `getMe` answers with.
    pub fn bot_user(&self) -> Value {
        self.shared.lock().bot_user.clone()
    }

    /// Queues an update for `getUpdates`, assigning `update_id` when it has none. Returns the
    /// update's id. An update Telegram would not deliver under the current `allowed_updates`
    /// is dropped, as Telegram drops it, and listed in [`filtered_updates`](Self::filtered_updates).
    ///
    /// # Panics
    /// If the update is not a valid `Update` per the spec (a broken fixture). Use
    /// [`inject_update_unchecked`](Self::inject_update_unchecked) for updates newer than the spec.
    #[track_caller]
    pub fn inject_update(&self, update: Value) -> i64 {
        let mut checked = update.clone();
        if checked.get("update_id").is_none() {
            checked["update_id"] = json!(0);
        }
        expect_valid(self.shared.spec, "Update", &checked, "update");
        self.inject_update_unchecked(update)
    }

    /// [`inject_update`](Self::inject_update) without checking the update against the spec,
    /// for kinds the spec does not know yet (Bot API 10.2's `subscription`).
    ///
    /// # Panics
    /// If `update` is not a JSON object.
    #[track_caller]
    pub fn inject_update_unchecked(&self, mut update: Value) -> i64 {
        assert!(
            update.is_object(),
            "an update is a JSON object, not {}",
            describe(&update)
        );
        let mut state = self.shared.lock();
        let update_id = match update.get("update_id").and_then(Value::as_i64) {
            Some(id) => id,
            None => {
                let id = state.next_update_id;
                update["update_id"] = json!(id);
                id
            }
        };
        state.next_update_id = state.next_update_id.max(update_id + 1);
        let kind = update
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
            .unwrap_or_default();
        if Spec::update_allowed(&kind, state.allowed_updates.as_deref()) {
            state.updates.push_back(update);
        } else {
            state.filtered_updates.push(update);
        }
        drop(state);
        self.shared.updates_changed.notify_waiters();
        update_id
    }

    /// Updates dropped because `allowed_updates` excluded their kind.
    pub fn filtered_updates(&self) -> Vec<Value> {
        self.shared.lock().filtered_updates.clone()
    }

    /// Updates queued and not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> Vec<Value> {
        self.shared.lock().updates.iter().cloned().collect()
    }

    /// The transactions `getStarTransactions` pages through (chronological order).
    ///
    /// # Panics
    /// If one is not a valid `StarTransaction`.
    #[track_caller]
    pub fn set_star_transactions(&self, transactions: Vec<Value>) {
        for (i, transaction) in transactions.iter().enumerate() {
            expect_valid(
                self.shared.spec,
                "StarTransaction",
                transaction,
                &format!("transactions[{i}]"),
            );
        }
        self.shared.lock().star_transactions = transactions;
    }

    /// The next call to `method` is answered with `failure` (after the spec check passes).
    /// Several queued failures are used in order.
    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.shared
            .lock()
            .failures
            .entry(method.to_owned())
            .or_default()
            .push_back(failure);
    }

    /// From now on, calls to `method` get `result` (for methods the double has no answer for,
    /// or to replace one).
    ///
    /// # Panics
    /// If `result` is not what the spec says `method` returns.
    #[track_caller]
    pub fn answer_with(&self, method: &str, result: Value) {
        if let Err(violations) = self.shared.spec.validate_result(method, &result) {
            panic!(
                "answer for {method} is not valid per the spec:\n{}",
                list(&violations)
            );
        }
        self.shared
            .lock()
            .fixed_answers
            .insert(method.to_owned(), result);
    }

    /// Adds a message the bot can edit without having sent it through the double (e.g. one
    /// a callback query in a fixture points at).
    ///
    /// # Panics
    /// If it is not a valid `Message`.
    #[track_caller]
    pub fn add_message(&self, message: Value) {
        expect_valid(self.shared.spec, "Message", &message, "message");
        let chat_id = message["chat"]["id"].as_i64().unwrap_or_default();
        let message_id = message["message_id"].as_i64().unwrap_or_default();
        let mut state = self.shared.lock();
        state.next_message_id = state.next_message_id.max(message_id + 1);
        state.messages.insert((chat_id, message_id), message);
    }

    /// A message of the bot in its current state (after edits).
    pub fn message(&self, chat_id: i64, message_id: i64) -> Option<Value> {
        self.shared
            .lock()
            .messages
            .get(&(chat_id, message_id))
            .cloned()
    }

    /// All the bot's messages in a chat, in order, in their current state.
    pub fn messages_in(&self, chat_id: i64) -> Vec<Value> {
        self.shared
            .lock()
            .messages
            .range((chat_id, i64::MIN)..=(chat_id, i64::MAX))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// What `setWebhook` set, if a webhook is active.
    pub fn webhook(&self) -> Option<Webhook> {
        self.shared.lock().webhook.clone()
    }

    /// Every call so far, in order of arrival.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// Every call to `method` so far.
    pub fn calls_to(&self, method: &str) -> Vec<RecordedCall> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Every spec violation so far (calls by farthing, and answers of the double).
    pub fn violations(&self) -> Vec<RecordedViolation> {
        self.shared.lock().violations.clone()
    }

    /// Fails the test, listing them, if any call broke the spec.
    #[track_caller]
    pub fn assert_no_violations(&self) {
        let violations = self.violations();
        if !violations.is_empty() {
            let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
            panic!(
                "Bot API calls that break the spec:\n  {}",
                text.join("\n  ")
            );
        }
    }

    /// Waits until a call to `method` has been answered; returns the first such call.
    pub async fn wait_for_call(
        &self,
        method: &str,
        timeout: Duration,
    ) -> Result<RecordedCall, WaitTimeout> {
        let mut calls = self.wait_for_calls(method, 1, timeout).await?;
        Ok(calls.swap_remove(0))
    }

    /// Waits until `count` calls to `method` have been answered; returns all answered calls to
    /// it (at least `count`).
    pub async fn wait_for_calls(
        &self,
        method: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedCall>, WaitTimeout> {
        let description = format!("{count} answered call(s) to {method}");
        self.wait_until(&description, timeout, |calls| {
            let answered: Vec<RecordedCall> = calls
                .iter()
                .filter(|c| c.method == method && c.answer.is_some())
                .cloned()
                .collect();
            (answered.len() >= count).then_some(answered)
        })
        .await
    }

    /// Waits until `check` finds what it looks for in the calls so far.
    pub async fn wait_until<T>(
        &self,
        description: &str,
        timeout: Duration,
        check: impl Fn(&[RecordedCall]) -> Option<T>,
    ) -> Result<T, WaitTimeout> {
        let mut changes = self.shared.calls_changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if let Some(found) = check(&self.shared.lock().calls) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(self.timeout_error(description, timeout)),
            }
        }
    }

    fn timeout_error(&self, description: &str, timeout: Duration) -> WaitTimeout {
        let state = self.shared.lock();
        let mut seen: Vec<String> = Vec::new();
        for call in &state.calls {
            let status = call
                .answer
                .as_ref()
                .map_or("pending".to_owned(), |a| a.status.to_string());
            seen.push(format!("{} ({status})", call.method));
        }
        let mut text = format!(
            "no {description} within {timeout:?}; calls so far: [{}]",
            seen.join(", ")
        );
        if !state.filtered_updates.is_empty() {
            let ids: Vec<String> = state
                .filtered_updates
                .iter()
                .map(|u| u["update_id"].to_string())
                .collect();
            text.push_str(&format!(
                "; updates dropped by allowed_updates {:?}: {}",
                state.allowed_updates,
                ids.join(", ")
            ));
        }
        if !state.violations.is_empty() {
            let v: Vec<String> = state.violations.iter().map(ToString::to_string).collect();
            text.push_str(&format!("; spec violations: {}", v.join("; ")));
        }
        WaitTimeout(text)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the calls recorded so far.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, call: RecordedCall) -> usize {
        let mut state = self.lock();
        let seq = state.calls.len();
        state.calls.push(RecordedCall { seq, ..call });
        drop(state);
        self.calls_changed.send_modify(|n| *n += 1);
        seq
    }

    fn answered(&self, seq: usize, answer: &Answer) {
        if let Some(call) = self.lock().calls.get_mut(seq) {
            call.answer = Some(answer.clone());
        }
        self.calls_changed.send_modify(|n| *n += 1);
    }
}

fn error(status: u16, description: &str, retry_after_s: Option<u32>) -> Answer {
    Answer {
        status,
        body: answers::error_body(status, description, retry_after_s),
    }
}

fn ok(result: Value) -> Answer {
    Answer {
        status: 200,
        body: json!({"ok": true, "result": result}),
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

#[track_caller]
fn expect_valid(spec: &Spec, type_expr: &str, value: &Value, what: &str) {
    if let Err(violations) = spec.validate_value(type_expr, value, what) {
        panic!(
            "{what} is not a valid {type_expr} per the spec:\n{}",
            list(&violations)
        );
    }
}

fn list(violations: &[SpecViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads the parameters from the query string and the body.
fn read_params(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<(Map<String, Value>, Encoding), String> {
    let mut params = Map::new();
    if let Some(query) = query {
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            params.insert(key.into_owned(), Value::String(value.into_owned()));
        }
    }
    if body.is_empty() {
        return Ok((params, Encoding::Form));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => {
                params.extend(object);
                Ok((params, Encoding::Json))
            }
            Ok(other) => Err(format!("a JSON object body, found {}", describe(&other))),
            Err(e) => Err(format!("a JSON object body, found invalid JSON ({e})")),
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (key, value) in form_urlencoded::parse(body) {
            params.insert(key.into_owned(), Value::String(value.into_owned()));
        }
        Ok((params, Encoding::Form))
    } else {
        Err(format!(
            "a JSON or application/x-www-form-urlencoded body (the double does not read `{content_type}`)"
        ))
    }
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    http_method: axum::http::Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some(token) = bot.strip_prefix("bot") else {
        return error(404, "Not Found", None).into_response();
    };
    let token_ok = token == shared.token;
    let parsed = read_params(&headers, query.as_deref(), &body);
    let (raw_params, encoding) = match &parsed {
        Ok((params, encoding)) => (params.clone(), *encoding),
        Err(_) => (Map::new(), Encoding::Json),
    };
    let params = shared.spec.normalize(&method, &raw_params, encoding);
    let seq = shared.record(RecordedCall {
        seq: 0,
        method: method.clone(),
        token_ok,
        http_method: http_method.to_string(),
        encoding,
        raw_params: raw_params.clone(),
        params: params.clone(),
        at: SystemTime::now(),
        answer: None,
    });
    let answer = answer_call(
        &shared,
        seq,
        &method,
        token_ok,
        parsed.err(),
        &raw_params,
        &params,
        encoding,
    )
    .await;
    shared.answered(seq, &answer);
    answer.into_response()
}

#[allow(clippy::too_many_arguments)]
async fn answer_call(
    shared: &Shared,
    seq: usize,
    method: &str,
    token_ok: bool,
    body_error: Option<String>,
    raw_params: &Map<String, Value>,
    params: &Map<String, Value>,
    encoding: Encoding,
) -> Answer {
    if !token_ok {
        return error(401, "Unauthorized", None);
    }
    let violations = match body_error {
        Some(expected) => vec![SpecViolation {
            path: method.to_owned(),
            kind: ViolationKind::WrongType,
            expected,
            found: "an unreadable body".to_owned(),
        }],
        None => match shared.spec.validate_call(method, raw_params, encoding) {
            Ok(()) => shared.spec.check_documented_rules(method, params),
            Err(violations) => violations,
        },
    };
    if !violations.is_empty() {
        let unknown_method = violations
            .iter()
            .any(|v| v.kind == ViolationKind::UnknownMethod);
        let description: Vec<String> = violations.iter().map(ToString::to_string).collect();
        shared.lock().violations.push(RecordedViolation {
            call_seq: seq,
            method: method.to_owned(),
            violations,
        });
        return if unknown_method {
            error(404, "Not Found", None)
        } else {
            error(
                400,
                &format!("Bad Request: {}", description.join("; ")),
                None,
            )
        };
    }
    let failure = shared
        .lock()
        .failures
        .get_mut(method)
        .and_then(VecDeque::pop_front);
    if let Some(failure) = failure {
        return failure.answer();
    }
    let answer = if method == "getUpdates" {
        get_updates(shared, params).await
    } else {
        answer_now(shared, method, params)
    };
    if answer.status == 200 {
        if let Err(violations) = shared.spec.validate_result(method, &answer.body["result"]) {
            // The double's own answer is wrong: a bug here, but the test must hear of it.
            shared.lock().violations.push(RecordedViolation {
                call_seq: seq,
                method: format!("{method} (answer of the double)"),
                violations,
            });
        }
    }
    answer
}

/// Every method except the long poll: answered at once from the state.
fn answer_now(shared: &Shared, method: &str, p: &Map<String, Value>) -> Answer {
    let mut state = shared.lock();
    if let Some(result) = state.fixed_answers.get(method) {
        return ok(result.clone());
    }
    let returns = shared
        .spec
        .method(method)
        .map(|m| m.returns.clone())
        .unwrap_or_default();
    match method {
        "getMe" => ok(state.bot_user.clone()),
        "createInvoiceLink" => {
            let rng = state.rng.get_or_insert_with(fastrand::Rng::new);
            ok(json!(answers::invoice_link(rng)))
        }
        "getStarTransactions" => {
            let offset = p.get("offset").and_then(Value::as_i64).unwrap_or(0).max(0);
            let limit = p.get("limit").and_then(Value::as_i64).unwrap_or(100);
            let limit = usize::try_from(limit.clamp(1, 100)).unwrap_or(LIST_LIMIT_MAX);
            let offset = usize::try_from(offset).unwrap_or(usize::MAX);
            ok(answers::star_transactions(
                &state.star_transactions,
                offset,
                limit,
            ))
        }
        "refundStarPayment" => {
            let charge = p
                .get("telegram_payment_charge_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            if state.refunded_charges.insert(charge.to_owned()) {
                ok(json!(true))
            } else {
                error(400, "Bad Request: CHARGE_ALREADY_REFUNDED", None)
            }
        }
        "setWebhook" => {
            let allowed = p.get("allowed_updates").map(string_list);
            if let Some(allowed) = &allowed {
                state.allowed_updates = Some(allowed.clone());
            }
            let url = p
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            state.webhook = (!url.is_empty()).then(|| Webhook {
                url,
                secret_token: p
                    .get("secret_token")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                max_connections: p.get("max_connections").and_then(Value::as_i64),
                allowed_updates: allowed,
            });
            ok(json!(true))
        }
        "deleteWebhook" => {
            state.webhook = None;
            if p.get("drop_pending_updates").and_then(Value::as_bool) == Some(true) {
                state.updates.clear();
            }
            ok(json!(true))
        }
        "getWebhookInfo" => ok(answers::webhook_info(
            state.webhook.as_ref(),
            state.updates.len(),
        )),
        "editMessageText" | "editMessageReplyMarkup" => edit_message(&mut state, method, p),
        _ if returns == [spec::TypeExpr::Named("Message".to_owned())] => {
            send_message(&mut state, method, p)
        }
        _ if returns == [spec::TypeExpr::Boolean] => ok(json!(true)),
        _ => error(
            500,
            &format!(
                "Internal Server Error: telegram-double has no answer for {method}; \
                 give it one with TelegramDouble::answer_with"
            ),
            None,
        ),
    }
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The chat id and `Chat` a `chat_id` parameter names.
fn resolve_chat(state: &mut State, chat_id: Option<&Value>) -> (i64, Value) {
    match chat_id {
        Some(Value::String(text)) if text.parse::<i64>().is_ok() => {
            let id = text.parse::<i64>().unwrap_or_default();
            (id, answers::chat_for(id, None))
        }
        Some(Value::String(name)) => {
            let next = -1_000_000_000_000 - i64::try_from(state.channel_ids.len()).unwrap_or(0);
            let id = *state.channel_ids.entry(name.clone()).or_insert(next);
            (
                id,
                answers::chat_for(id, Some(name.trim_start_matches('@'))),
            )
        }
        other => {
            let id = other.and_then(Value::as_i64).unwrap_or_default();
            (id, answers::chat_for(id, None))
        }
    }
}

fn send_message(state: &mut State, method: &str, p: &Map<String, Value>) -> Answer {
    let (chat_id, chat) = resolve_chat(state, p.get("chat_id"));
    let message_id = state.next_message_id;
    state.next_message_id += 1;
    let message = answers::sent_message(method, message_id, now_s(), chat, &state.bot_user, p);
    state
        .messages
        .insert((chat_id, message_id), message.clone());
    ok(message)
}

fn edit_message(state: &mut State, method: &str, p: &Map<String, Value>) -> Answer {
    if p.contains_key("inline_message_id") {
        return ok(json!(true));
    }
    let (chat_id, _) = resolve_chat(state, p.get("chat_id"));
    let message_id = p
        .get("message_id")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let Some(current) = state.messages.get(&(chat_id, message_id)) else {
        return error(400, "Bad Request: message to edit not found", None);
    };
    if method == "editMessageText" && current.get("text").is_none() {
        return error(
            400,
            "Bad Request: there is no text in the message to edit",
            None,
        );
    }
    let edited = answers::edited_message(method, current, now_s(), p);
    let unchanged = ["text", "entities", "reply_markup"]
        .iter()
        .all(|key| edited.get(key) == current.get(key));
    if unchanged {
        return error(
            400,
            "Bad Request: message is not modified: specified new message content and reply markup \
             are exactly the same as a current content and reply markup of the message",
            None,
        );
    }
    state.messages.insert((chat_id, message_id), edited.clone());
    ok(edited)
}

/// `getUpdates`: confirms updates below `offset`, then returns what is queued, waiting up to
/// `timeout` seconds for something to arrive. A newer `getUpdates` ends an older one with
/// 409 Conflict, and a webhook forbids polling — both as on Telegram.
async fn get_updates(shared: &Shared, p: &Map<String, Value>) -> Answer {
    let offset = p.get("offset").and_then(Value::as_i64);
    let limit = p.get("limit").and_then(Value::as_i64).unwrap_or(100);
    let limit = usize::try_from(limit.clamp(1, 100)).unwrap_or(LIST_LIMIT_MAX);
    let timeout_s = p.get("timeout").and_then(Value::as_i64).unwrap_or(0);
    let timeout_s = u64::try_from(timeout_s)
        .unwrap_or(0)
        .min(LONG_POLL_TIMEOUT_S_MAX);
    let generation = {
        let mut state = shared.lock();
        if state.webhook.is_some() {
            return error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                None,
            );
        }
        if let Some(allowed) = p.get("allowed_updates") {
            state.allowed_updates = Some(string_list(allowed));
        }
        match offset {
            Some(offset) if offset > 0 => state
                .updates
                .retain(|u| u["update_id"].as_i64().is_some_and(|id| id >= offset)),
            Some(offset) if offset < 0 => {
                let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
                while state.updates.len() > keep {
                    state.updates.pop_front();
                }
            }
            _ => {}
        }
        state.poll_generation += 1;
        state.poll_generation
    };
    // Ends any older long poll (it sees a newer generation).
    shared.updates_changed.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_s);
    loop {
        let notified = shared.updates_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let state = shared.lock();
            if state.poll_generation != generation {
                return error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                    None,
                );
            }
            let batch: Vec<Value> = state.updates.iter().take(limit).cloned().collect();
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return ok(Value::Array(batch));
            }
        }
        // A timeout just leads to one last look at the queue above.
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}
