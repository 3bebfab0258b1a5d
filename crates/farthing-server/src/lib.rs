//! farthing's HTTP surface: the Merchant API (`/v1`), the checkout page (`/pay`), health and
//! metrics, and the background workers (invoice expiry, webhook delivery).
//!
//! Architecture invariant: handlers parse and check input, then hand one job to the store;
//! the rules live in `farthing_core` (ledger, invoices) and the SQL in `farthing_store`.
//! Nothing here decides that money moved except through a ledger group inside a job.

pub mod bot;
pub mod config;
pub mod http;
pub mod instructions;
pub mod metrics;
pub mod net;
pub mod openapi;
pub mod pages;
pub mod rails;
pub mod registry;
pub mod serve;
pub mod signed_token;
pub mod state;
pub mod telegram;
pub mod web;
pub mod workers;

// The service's modules, under the names the server used before the service crate existed.
pub use farthing_app::{ids, settlement, wire as render};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use farthing_core::{MerchantId, PublicId};
use farthing_store::{ApiKeyRecord, DatabaseUrl, Merchant, Store, StoreOptions};

use crate::config::{test_database_path, Config};
use crate::metrics::Metrics;
use crate::state::{AppState, Mode};
use crate::web::error::ApiError;

/// Every route of the server, with its method: the OpenAPI test checks each is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/invoices"),
    ("GET", "/v1/invoices"),
    ("GET", "/v1/invoices/{id}"),
    ("POST", "/v1/invoices/{id}/cancel"),
    ("POST", "/v1/invoices/{id}/pay"),
    ("POST", "/v1/invoices/{id}/send"),
    ("POST", "/v1/customers"),
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/{id}"),
    ("POST", "/v1/charges"),
    ("GET", "/v1/charges"),
    ("GET", "/v1/charges/{id}"),
    ("POST", "/v1/refunds"),
    ("GET", "/v1/refunds"),
    ("GET", "/v1/refunds/{id}"),
    ("POST", "/v1/refunds/{id}/cancel"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/{id}"),
    ("POST", "/v1/events/{id}/redeliver"),
    ("POST", "/v1/webhook_endpoints"),
    ("GET", "/v1/webhook_endpoints"),
    ("GET", "/v1/webhook_endpoints/{id}"),
    ("DELETE", "/v1/webhook_endpoints/{id}"),
    ("GET", "/v1/rails"),
    ("PUT", "/v1/rails/stars"),
    ("PUT", "/v1/rails/lightning"),
    ("PUT", "/v1/rails/card"),
    ("PUT", "/v1/rails/ton"),
    ("GET", "/v1/rails/ton/payments"),
    ("POST", "/v1/rails/ton/payments/{id}/assign"),
    ("PUT", "/v1/dashboard/owners"),
    ("POST", "/v1/dashboard/owners/lnurl"),
    ("GET", "/v1/dashboard/owners/lnurl/{id}"),
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/{id}"),
    ("POST", "/v1/subscriptions/{id}/cancel"),
    ("POST", "/v1/subscriptions/{id}/resume"),
    ("GET", "/v1/settings"),
    ("PUT", "/v1/settings"),
    ("GET", "/v1/refund_requests"),
    ("POST", "/v1/refund_requests/{id}/approve"),
    ("POST", "/v1/refund_requests/{id}/decline"),
    ("POST", "/v1/lnurl/withdraws"),
    ("GET", "/v1/lnurl/withdraws/{id}"),
    ("POST", "/v1/lnurl/auth"),
    ("GET", "/v1/lnurl/auth/{id}"),
    ("GET", "/v1/customers/{id}/lightning"),
    ("POST", "/v1/payouts"),
    ("GET", "/.well-known/lnurlp/{name}"),
    ("GET", "/lnurl/{mode}/pay/{name}"),
    ("GET", "/lnurl/{mode}/pay/{name}/callback"),
    ("GET", "/lnurl/{mode}/topup/{customer}"),
    ("GET", "/lnurl/{mode}/topup/{customer}/callback"),
    ("GET", "/lnurl/{mode}/withdraw/{k1}"),
    ("GET", "/lnurl/{mode}/withdraw/{k1}/callback"),
    ("GET", "/lnurl/{mode}/auth"),
    ("POST", "/v1/test/invoices/{id}/pay"),
    ("POST", "/v1/test/customers/{id}/top_up"),
    ("GET", "/v1/balance"),
    ("GET", "/v1/customers/{id}/statement"),
    ("POST", "/v1/customers/{id}"),
    ("POST", "/v1/api_keys"),
    ("GET", "/v1/api_keys"),
    ("POST", "/v1/api_keys/{id}/revoke"),
    ("POST", "/v1/api_keys/{id}/roll"),
    ("GET", "/v1/audit_log"),
    ("GET", "/v1/risk/rules"),
    ("PUT", "/v1/risk/rules"),
    ("GET", "/v1/risk/decisions"),
    ("POST", "/v1/admin/merchants"),
    ("GET", "/v1/admin/merchants"),
    ("GET", "/v1/step_up"),
    ("DELETE", "/v1/step_up"),
    ("POST", "/v1/step_up/enroll"),
    ("POST", "/v1/step_up/confirm"),
    ("GET", "/pay/assets/{file}"),
    ("GET", "/pay/{id}"),
    ("GET", "/pay/{id}/status"),
    ("GET", "/pay/{id}/tonconnect-manifest.json"),
    ("POST", "/pay/{id}/ton-connect"),
    ("POST", "/pay/{id}/sandbox"),
    ("POST", "/webapp/session"),
    ("POST", "/webapp/pay/{invoice}"),
    ("POST", "/telegram/{bot_id}/webhook"),
    ("POST", "/dashboard/login/telegram"),
    ("POST", "/dashboard/login/lnurl"),
    ("GET", "/dashboard/login/lnurl/{id}"),
    ("GET", "/dashboard/me"),
];

/// The router over `state`.
pub fn router(state: AppState) -> Router {
    use crate::http::lnurl;
    use http::{
        charges, customers, events, invoices, keys, lightning, rails, settings, stars,
        subscriptions, test_mode, ton,
    };
    use pages::{checkout, dashboard, webapp};
    let limit = state.config().max_body_bytes;
    let body_timeout = state.config().http.limits().body_timeout;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/invoices", post(invoices::create).get(invoices::list))
        .route("/v1/invoices/{id}", get(invoices::retrieve))
        .route("/v1/invoices/{id}/cancel", post(invoices::cancel))
        .route("/v1/invoices/{id}/pay", post(invoices::pay))
        .route("/v1/invoices/{id}/send", post(stars::send_invoice))
        .route(
            "/v1/customers",
            post(customers::create).get(customers::list),
        )
        .route(
            "/v1/customers/{id}",
            get(customers::retrieve).post(customers::update),
        )
        .route("/v1/balance", get(customers::balance))
        .route("/v1/customers/{id}/statement", get(customers::statement))
        .route("/v1/api_keys", post(keys::create).get(keys::list))
        .route("/v1/api_keys/{id}/revoke", post(keys::revoke))
        .route("/v1/api_keys/{id}/roll", post(keys::roll))
        .route(
            "/v1/admin/merchants",
            post(http::admin::create).get(http::admin::list),
        )
        .route(
            "/v1/step_up",
            get(http::step_up::retrieve).delete(http::step_up::disable),
        )
        .route("/v1/step_up/enroll", post(http::step_up::enroll))
        .route("/v1/step_up/confirm", post(http::step_up::confirm))
        .route("/v1/audit_log", get(http::audit::list))
        .route(
            "/v1/risk/rules",
            get(http::risk::retrieve).put(http::risk::update),
        )
        .route("/v1/risk/decisions", get(http::risk::decisions))
        .route("/v1/charges", post(charges::create).get(charges::list))
        .route("/v1/charges/{id}", get(charges::retrieve))
        .route(
            "/v1/refunds",
            post(charges::create_refund).get(charges::list_refunds),
        )
        .route("/v1/refunds/{id}", get(charges::retrieve_refund))
        .route("/v1/refunds/{id}/cancel", post(charges::cancel_refund))
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}", get(events::retrieve))
        .route("/v1/events/{id}/redeliver", post(events::redeliver))
        .route(
            "/v1/webhook_endpoints",
            post(events::create_endpoint).get(events::list_endpoints),
        )
        .route(
            "/v1/webhook_endpoints/{id}",
            get(events::retrieve_endpoint).delete(events::delete_endpoint),
        )
        .route("/v1/rails", get(rails::list))
        .route("/v1/rails/stars", put(rails::connect_stars))
        .route("/v1/rails/lightning", put(rails::connect_lightning))
        .route("/v1/rails/card", put(rails::connect_card))
        .route("/v1/rails/ton", put(rails::connect_ton))
        .route("/v1/rails/ton/payments", get(ton::list))
        .route("/v1/rails/ton/payments/{id}/assign", post(ton::assign))
        .route("/v1/dashboard/owners", put(dashboard::set_owners))
        .route(
            "/v1/dashboard/owners/lnurl",
            post(dashboard::create_owner_link),
        )
        .route(
            "/v1/dashboard/owners/lnurl/{id}",
            get(dashboard::retrieve_owner_link),
        )
        .route("/v1/subscriptions", get(subscriptions::list))
        .route("/v1/subscriptions/{id}", get(subscriptions::retrieve))
        .route("/v1/subscriptions/{id}/cancel", post(subscriptions::cancel))
        .route("/v1/subscriptions/{id}/resume", post(subscriptions::resume))
        .route(
            "/v1/settings",
            get(settings::retrieve).put(settings::update),
        )
        .route("/v1/refund_requests", get(settings::list_requests))
        .route("/v1/refund_requests/{id}/approve", post(settings::approve))
        .route("/v1/refund_requests/{id}/decline", post(settings::decline))
        .route("/v1/lnurl/withdraws", post(lightning::create_withdraw))
        .route(
            "/v1/lnurl/withdraws/{id}",
            get(lightning::retrieve_withdraw),
        )
        .route("/v1/lnurl/auth", post(lightning::create_auth))
        .route("/v1/lnurl/auth/{id}", get(lightning::retrieve_auth))
        .route(
            "/v1/customers/{id}/lightning",
            get(lightning::customer_top_up),
        )
        .route("/v1/payouts", post(lightning::create_payout))
        .route("/.well-known/lnurlp/{name}", get(lnurl::well_known))
        .route("/lnurl/{mode}/pay/{name}", get(lnurl::pay))
        .route(
            "/lnurl/{mode}/pay/{name}/callback",
            get(lnurl::pay_callback),
        )
        .route("/lnurl/{mode}/topup/{customer}", get(lnurl::top_up))
        .route(
            "/lnurl/{mode}/topup/{customer}/callback",
            get(lnurl::top_up_callback),
        )
        .route("/lnurl/{mode}/withdraw/{k1}", get(lnurl::withdraw))
        .route(
            "/lnurl/{mode}/withdraw/{k1}/callback",
            get(lnurl::withdraw_callback),
        )
        .route("/lnurl/{mode}/auth", get(lnurl::auth))
        .route("/v1/test/invoices/{id}/pay", post(test_mode::pay_invoice))
        .route("/v1/test/customers/{id}/top_up", post(test_mode::top_up))
        .route("/pay/assets/{file}", get(checkout::asset))
        .route("/pay/{id}", get(checkout::page))
        .route("/pay/{id}/status", get(checkout::status))
        .route(
            "/pay/{id}/tonconnect-manifest.json",
            get(checkout::tonconnect_manifest),
        )
        .route("/pay/{id}/ton-connect", post(checkout::ton_connect))
        .route("/pay/{id}/sandbox", post(checkout::sandbox))
        .route("/webapp/session", post(webapp::create_session))
        .route("/webapp/pay/{invoice}", post(webapp::pay))
        .route("/dashboard/login/telegram", post(dashboard::login_telegram))
        .route("/dashboard/login/lnurl", post(dashboard::login_lnurl))
        .route(
            "/dashboard/login/lnurl/{id}",
            get(dashboard::login_lnurl_status),
        )
        .route("/dashboard/me", get(dashboard::me))
        .route(
            "/telegram/{bot_id}/webhook",
            post(telegram::webhook::receive),
        )
        .fallback(|uri: axum::http::Uri| async move { ApiError::no_route(uri.path()) })
        .method_not_allowed_fallback(|| async {
            let mut error = ApiError::invalid(
                "method_not_allowed",
                "this endpoint does not take that method; see /openapi.json",
            );
            error.status = StatusCode::METHOD_NOT_ALLOWED;
            error
        })
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            serve::body_deadline(body_timeout, request, next)
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::limits::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Records every request in the metrics, by matched route (never the raw path).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Labels only from known values: a client may send any method token, and each new label
    // would be a metrics series kept forever.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let request_id = request_id(request.headers());
    // The mode from the key's public prefix; the key itself is never logged.
    let mode = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            if value.contains("fk_live_") {
                "live"
            } else if value.contains("fk_test_") {
                "test"
            } else {
                "-"
            }
        })
        .unwrap_or("-");
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics()
        .observe_request(method, &route, status, elapsed);
    tracing::info!(
        target: "farthing::access",
        request_id = %request_id,
        method,
        route = %route,
        status,
        mode,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

/// The request's id: the client's `X-Request-Id` (or `Request-Id`) when it is 1 to 128
/// visible ASCII characters, else a new one (`req_` and 24 hex digits, unique per process).
fn request_id(headers: &axum::http::HeaderMap) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::LazyLock;
    static PREFIX: LazyLock<u64> = LazyLock::new(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_be_bytes(bytes)
    });
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let given = ["x-request-id", "request-id"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|value| value.to_str().ok())
        .filter(|text| {
            !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic())
        });
    match given {
        Some(text) => text.to_owned(),
        None => format!(
            "req_{:016x}{:08x}",
            *PREFIX,
            NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff
        ),
    }
}

/// Liveness
///
/// Answers as long as the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "`{\"status\": \"ok\"}`.", body = crate::web::spec::HealthStatus))
)]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness
///
/// Ready when both databases (live and test) can be read.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`.", body = crate::web::spec::HealthStatus),
        (status = 503, description = "A database is not readable (`service_unavailable`).", body = crate::web::spec::Error),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    for (_, store) in state.stores() {
        if let Err(error) = store.read(|reader| reader.next_invoice_expiry()) {
            tracing::warn!(%error, "not ready");
            return ApiError::unavailable("the database is not readable").into_response();
        }
    }
    axum::Json(serde_json::json!({"status": "ready"})).into_response()
}

/// Prometheus metrics
///
/// Request counts and latencies by route, ledger batch sizes and commit times, webhook
/// deliveries.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((status = 200, description = "The Prometheus text exposition format, version 0.0.4.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"))
)]
async fn metrics_text(State(state): State<AppState>) -> Response {
    use std::fmt::Write as _;
    let mut text = state.metrics().render();
    // Gauges read at scrape time: open invoices and the webhook backlog per mode.
    let now = state.now_ns();
    let mut gauges = String::new();
    let _ = writeln!(gauges, "# HELP farthing_open_invoices Invoices waiting for payment.\n# TYPE farthing_open_invoices gauge");
    let mut backlog = String::new();
    let _ = writeln!(backlog, "# HELP farthing_webhook_backlog Webhook delivery attempts still to make.\n# TYPE farthing_webhook_backlog gauge");
    let mut lag = String::new();
    let _ = writeln!(lag, "# HELP farthing_webhook_oldest_due_seconds How long the earliest due webhook attempt has waited (0: none is overdue).\n# TYPE farthing_webhook_oldest_due_seconds gauge");
    for (mode, store) in state.stores() {
        let name = if mode == Mode::Live { "live" } else { "test" };
        match store.read(|reader| reader.backlog()) {
            Ok((open, queued, oldest)) => {
                let waited = oldest.map_or(0.0, |due| now.saturating_sub(due) as f64 / 1e9);
                let _ = writeln!(gauges, "farthing_open_invoices{{mode=\"{name}\"}} {open}");
                let _ = writeln!(
                    backlog,
                    "farthing_webhook_backlog{{mode=\"{name}\"}} {queued}"
                );
                let _ = writeln!(
                    lag,
                    "farthing_webhook_oldest_due_seconds{{mode=\"{name}\"}} {waited:.3}"
                );
            }
            Err(error) => tracing::warn!(%error, "metrics: cannot read the backlog"),
        }
    }
    text.push_str(&gauges);
    text.push_str(&backlog);
    text.push_str(&lag);
    text.push_str(&process_metrics());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The process's resident memory, CPU time and open file descriptors (Linux `/proc/self`;
/// nothing elsewhere), in the standard `process_*` names.
fn process_metrics() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kb) = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
        {
            let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}", kb * 1024);
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces): utime and stime are the
        // 12th and 13th of them, in clock ticks (100 a second on Linux).
        if let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
                let _ = writeln!(out, "# HELP process_cpu_seconds_total CPU time used.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {:.2}", (user + system) as f64 / 100.0);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(out, "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}", entries.count());
    }
    out
}

/// This document
///
/// The OpenAPI 3.1 description of every route, generated from the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = serde_json::Value, content_type = "application/json"))
)]
async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi::json(),
    )
        .into_response()
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad `--database`.
    #[error(transparent)]
    Url(#[from] farthing_store::UrlError),
    /// A database could not be opened.
    #[error("{location}: {error}")]
    Store {
        /// Which database (a file, or a PostgreSQL URL without its password).
        location: String,
        /// Why.
        error: farthing_store::StoreError,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// Stored live secrets, and no key to read them.
    #[error("{0}")]
    SecretsKey(String),
}

/// The live and test databases of a `--database` value: two SQLite files side by side, or on
/// PostgreSQL the schema the URL names and `<schema>_test` beside it (created when missing).
pub fn database_urls(database: &str) -> Result<(DatabaseUrl, DatabaseUrl), StartError> {
    Ok(match DatabaseUrl::parse(database)? {
        DatabaseUrl::Sqlite(live) => {
            let test = test_database_path(&live);
            (DatabaseUrl::Sqlite(live), DatabaseUrl::Sqlite(test))
        }
        DatabaseUrl::Postgres(url) => {
            let test = farthing_store::pg::test_mode_url(url.expose(), true)
                .map_err(|error| StartError::Store {
                    location: url.to_string(),
                    error,
                })?
                .ok_or_else(|| StartError::Store {
                    location: url.to_string(),
                    error: farthing_store::StoreError::Refused(
                        "no schema for test mode could be made beside this one".to_owned(),
                    ),
                })?;
            let test = DatabaseUrl::parse(&test)?;
            (DatabaseUrl::Postgres(url), test)
        }
    })
}

/// Opens the live and test stores, reporting ledger batches to `metrics`, with ledger time
/// from `clock`.
///
/// Stored secrets are sealed with `secrets_key`; without one, test-mode secrets are stored as
/// given and live-mode ones are refused (`secrets.rs` in the store).
pub fn open_stores(
    database: &str,
    metrics: &Metrics,
    clock: &farthing_app::Clock,
    secrets_key: Option<&farthing_store::SecretsKey>,
) -> Result<(Store, Store), StartError> {
    let (live_url, test_url) = database_urls(database)?;
    let key = secrets_key.cloned().map(Arc::new);
    let open = |url: &DatabaseUrl, mode: &'static str| {
        let metrics = metrics.clone();
        let options = StoreOptions {
            observer: Some(Arc::new(move |stats: &farthing_store::BatchStats| {
                metrics.observe_batch(mode, stats)
            })),
            clock: clock.for_store(),
            secrets: farthing_store::Secrets {
                key: key.clone(),
                previous: Vec::new(),
                required: mode == "live",
            },
            ..StoreOptions::default()
        };
        Store::open_url(url, options).map_err(|error| StartError::Store {
            location: match url {
                DatabaseUrl::Sqlite(path) => path.display().to_string(),
                DatabaseUrl::Postgres(url) => url.to_string(),
            },
            error,
        })
    };
    Ok((open(&live_url, "live")?, open(&test_url, "test")?))
}

/// Refuses to start a live database that holds secrets without the key to read them; warns
/// about secrets still stored in clear.
fn check_secrets(live: &Store, test: &Store, config: &Config) -> Result<(), StartError> {
    let (sealed, clear) = live.secrets_census().map_err(|error| StartError::Store {
        location: live.location(),
        error,
    })?;
    if config.secrets_key.is_none() && sealed + clear > 0 {
        return Err(StartError::SecretsKey(format!(
            "the live database holds {} stored secrets (bot tokens, webhook and provider \
             secrets, node credentials, authenticators) and no secrets key is configured: set \
             secrets_key_file or FARTHING_SECRETS_KEY{}",
            sealed + clear,
            if clear > 0 {
                ", then seal those stored in clear with `farthing rotate-secrets-key`"
            } else {
                ""
            }
        )));
    }
    for store in [live, test] {
        store.verify_secrets().map_err(|error| StartError::Store {
            location: store.location(),
            error,
        })?;
    }
    if clear > 0 {
        tracing::warn!(
            clear,
            "live secrets are stored in clear: seal them with `farthing rotate-secrets-key` (every instance stopped)"
        );
    }
    Ok(())
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// On PostgreSQL: this instance's bid to lead the background work, let go after the stores
    /// stop.
    leadership: Option<farthing_store::instances::Leadership>,
    /// On PostgreSQL: the sessions that hear other instances' changes.
    listeners: Vec<farthing_store::instances::Listener>,
}

impl Running {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether this instance runs the background work now (always on SQLite; on PostgreSQL
    /// while it leads the instances on the database).
    pub fn leads(&self) -> bool {
        self.state.metrics().leader()
    }

    /// Its state (for tests and the demo).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Resolves when the server was asked to stop.
    pub async fn stopped(&self) {
        let mut receiver = self.shutdown.subscribe();
        let _ = receiver.wait_for(|stop| *stop).await;
    }

    /// Stops accepting, lets in-flight requests finish, stops the workers, and commits what
    /// the stores still hold.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let mut tasks = self.tasks.into_iter();
        // The background work first (attempts under way finish and are recorded): then another
        // instance may take it over at once, while this one's requests drain.
        if let Some(background) = tasks.next() {
            let _ = background.await;
        }
        let leadership = self.leadership;
        let _ = tokio::task::spawn_blocking(move || drop(leadership)).await;
        for task in tasks {
            let _ = task.await;
        }
        for (_, store) in self.state.stores() {
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
        }
        let listeners = self.listeners;
        let _ = tokio::task::spawn_blocking(move || drop(listeners)).await;
    }

    /// A handle that asks the server to stop (e.g. on a signal).
    pub fn stopper(&self) -> tokio::sync::watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the stores, binds `config.listen` and starts serving and the workers.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with_clock(config, farthing_app::Clock::system()).await
}

/// [`start`] with `clock` as the time every rule reads (a test's manual clock).
pub async fn start_with_clock(
    config: Config,
    clock: farthing_app::Clock,
) -> Result<Running, StartError> {
    let metrics = Metrics::default();
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let (live, test) = open_stores(
        &config.database,
        &metrics,
        &clock,
        config.secrets_key.as_ref(),
    )?;
    check_secrets(&live, &test, &config)?;
    if live.is_shared() && config.secrets_key.is_none() {
        tracing::warn!(
            "no secrets key: Mini App and dashboard sessions are signed with a key of this \
             instance alone, so other instances on this database refuse them; set the same \
             secrets key on every instance"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| StartError::Bind {
            addr: config.listen,
            error,
        })?;
    let addr = listener.local_addr().map_err(|error| StartError::Bind {
        addr: config.listen,
        error,
    })?;
    let mut config = config;
    if config.listen.port() == 0 && config.public_url.contains(":0") {
        config.public_url = format!("http://{addr}");
    }
    let state = AppState::with_clock(live, test, config, metrics, clock);
    let app = router(state.clone());
    let server = tokio::spawn(serve::serve(
        listener,
        app,
        state.config().http.limits(),
        state.metrics().clone(),
        shutdown.subscribe(),
    ));
    // On PostgreSQL, other instances may serve the same database: hear their changes (caches
    // are not trusted until both stores' listeners listen), and lead the background work only
    // while this instance holds the leadership. On SQLite this process is the only one.
    let mut listeners = Vec::new();
    let shared: Vec<Store> = state
        .stores()
        .into_iter()
        .filter(|(_, store)| store.is_shared())
        .map(|(_, store)| store.clone())
        .collect();
    state.expect_listeners(shared.len());
    for store in &shared {
        let heard = state.clone();
        if let Some(listener) = store
            .listen(move |news| heard.heard(news))
            .map_err(|error| StartError::Store {
                location: store.location(),
                error,
            })?
        {
            listeners.push(listener);
        }
    }
    // Told by the leadership's first answer before `campaign` returns.
    let (leading, led) = tokio::sync::watch::channel(!state.store(Mode::Live).is_shared());
    let leadership = state
        .store(Mode::Live)
        .campaign(farthing_store::instances::BACKGROUND, move |now| {
            leading.send_replace(now);
        })
        .map_err(|error| StartError::Store {
            location: state.store(Mode::Live).location(),
            error,
        })?;
    state.metrics().set_leader(*led.borrow());
    let background = tokio::spawn(workers::lead(
        state.clone(),
        led,
        shutdown.subscribe(),
        background_work,
    ));
    Ok(Running {
        addr,
        state,
        shutdown,
        // The background work first: `shutdown` lets its leadership go before the HTTP drain.
        tasks: vec![background, server],
        leadership,
        listeners,
    })
}

/// Starts the work the leading instance does (`workers::lead`), each task until `stop` fires:
/// the scheduler, the webhook worker, Telegram long polling, the bot's reminders and each
/// rail's tasks (streams, polling, reconciliation).
fn background_work(
    state: &AppState,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(workers::scheduler::run(state.clone(), stop.clone())),
        tokio::spawn(workers::webhooks::run_worker(state.clone(), stop.clone())),
        tokio::spawn(telegram::poller::run(state.clone(), stop.clone())),
        tokio::spawn(bot::run_reminders(state.clone(), stop.clone())),
    ];
    tasks.extend(
        state
            .rails()
            .tasks(state.app(), stop)
            .into_iter()
            .map(tokio::spawn),
    );
    tasks
}

/// A new merchant with its two secret keys.
#[derive(Clone, Debug)]
pub struct NewMerchant {
    /// `mer_…`
    pub id: String,
    /// `fk_live_…`, shown once.
    pub live_key: String,
    /// `fk_test_…`, shown once.
    pub test_key: String,
}

/// Why a merchant was not created (nothing of it stays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateMerchantError {
    /// The name is empty or longer than 100 characters.
    InvalidName(String),
    /// A store did not take the write (overloaded or shutting down: the same request may be
    /// tried again; or failed).
    Write(farthing_store::WriteError),
    /// A store or the key generator failed.
    Failed(String),
    /// The caller's claim on the creation (an Idempotency-Key's reservation) was taken over by
    /// another request, which makes the merchant instead: nothing of this one was stored.
    Claimed,
}

impl std::fmt::Display for CreateMerchantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreateMerchantError::InvalidName(message) => f.write_str(message),
            CreateMerchantError::Write(error) => {
                write!(f, "the merchant could not be stored: {error}")
            }
            CreateMerchantError::Failed(message) => {
                write!(f, "the merchant could not be stored: {message}")
            }
            CreateMerchantError::Claimed => f.write_str(
                "another request with this Idempotency-Key took the creation over: retry in a \
                 moment (it answers with the merchant it made)",
            ),
        }
    }
}

impl std::error::Error for CreateMerchantError {}

impl From<farthing_store::WriteError> for CreateMerchantError {
    fn from(error: farthing_store::WriteError) -> Self {
        CreateMerchantError::Write(error)
    }
}

impl From<farthing_store::StoreError> for CreateMerchantError {
    fn from(error: farthing_store::StoreError) -> Self {
        CreateMerchantError::Failed(error.to_string())
    }
}

/// Creates a merchant in both stores, with a live and a test key holding every scope.
pub fn create_merchant(
    live: &Store,
    test: &Store,
    name: &str,
) -> Result<NewMerchant, CreateMerchantError> {
    create_merchant_as(live, test, name, ids::new_id(), |_| Ok(true))
}

/// [`create_merchant`] with the id `id`, chosen by the caller, and `claim` run in the live
/// job that makes the merchant exist, after its rows (the admin API completes the request's
/// Idempotency-Key there, so the merchant and the key's record are stored together or not at
/// all; `Ok(false)`, the claim is gone, stores neither and answers
/// [`CreateMerchantError::Claimed`]).
///
/// The test database is written first, and whatever an earlier attempt with the same id left
/// there (its test key was never shown) is replaced: a request retried after a crash makes the
/// merchant it planned, once. Two databases, two transactions: if the live one fails, the test
/// one is undone, so a merchant never exists in one mode only.
pub(crate) fn create_merchant_as(
    live: &Store,
    test: &Store,
    name: &str,
    id: MerchantId,
    claim: impl FnOnce(&mut farthing_store::Tx<'_, '_>) -> Result<bool, farthing_store::StoreError>
        + Send
        + 'static,
) -> Result<NewMerchant, CreateMerchantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(CreateMerchantError::InvalidName(
            "the merchant name must be 1 to 100 characters".to_owned(),
        ));
    }
    let key_for = |mode: Mode| -> Result<(String, ApiKeyRecord), CreateMerchantError> {
        let key = http::auth::generate_key(mode)
            .map_err(|error| CreateMerchantError::Failed(error.to_string()))?;
        let record = ApiKeyRecord {
            key_hash: http::auth::hash_key(&key),
            merchant: id,
            scopes: vec!["*".to_owned()],
            hint: http::auth::key_hint(&key),
            revoked_at_ns: None,
        };
        Ok((key, record))
    };
    let (test_key, test_record) = key_for(Mode::Test)?;
    let (live_key, live_record) = key_for(Mode::Live)?;
    let test_name = name.to_owned();
    wait_for(test.execute(move |tx| -> Result<(), CreateMerchantError> {
        tx.delete_new_merchant(id)?;
        let created_at_ns = tx.now_ns();
        tx.insert_merchant(&Merchant {
            id,
            name: test_name,
            created_at_ns,
        })?;
        Ok(tx.insert_api_key(&test_record)?)
    }))?;
    let live_name = name.to_owned();
    let written = wait_for(live.execute(move |tx| -> Result<(), CreateMerchantError> {
        let created_at_ns = tx.now_ns();
        tx.insert_merchant(&Merchant {
            id,
            name: live_name,
            created_at_ns,
        })?;
        tx.insert_api_key(&live_record)?;
        // An error undoes the job: neither the merchant nor the claim's record is stored.
        match claim(tx)? {
            true => Ok(()),
            false => Err(CreateMerchantError::Claimed),
        }
    }));
    match written {
        Ok(()) => {}
        // Another request holds the claim now, and makes this merchant: its test rows stay.
        Err(CreateMerchantError::Claimed) => return Err(CreateMerchantError::Claimed),
        Err(error) => {
            let undone = wait_for(test.execute(move |tx| -> Result<(), CreateMerchantError> {
                Ok(tx.delete_new_merchant(id)?)
            }));
            if let Err(undo) = undone {
                tracing::error!(merchant = %id.encode(), %undo, "a half-created merchant could not be removed");
            }
            return Err(error);
        }
    }
    Ok(NewMerchant {
        id: id.encode(),
        live_key,
        test_key,
    })
}

/// Waits for a queued job of [`create_merchant_as`].
fn wait_for(
    queued: Result<farthing_store::JobTicket<(), CreateMerchantError>, farthing_store::WriteError>,
) -> Result<(), CreateMerchantError> {
    queued
        .map_err(CreateMerchantError::from)
        .and_then(|ticket| ticket.wait().map_err(CreateMerchantError::from))
        .and_then(|result| result)
}
