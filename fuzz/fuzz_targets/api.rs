//! The whole HTTP surface in-process: every route (the Merchant API's JSON bodies and query
//! strings, the checkout, the Mini App, LNURL callbacks, dashboard login, webhooks) behind the
//! real router and middleware, over a real SQLite database in a temporary directory.
//!
//! An input reads like a small HTTP request:
//!
//! ```text
//! POST /v1/invoices?x=1
//! auth: test
//! idempotency-key: k1
//!
//! {"amount": 100, "currency": "XTR"}
//! ```
//!
//! `auth: live|test` becomes the merchant's bearer key; other lines are headers as given. A
//! server error (500, or any 5xx but the gateway answers about an unreachable outside service)
//! or a panic is a finding.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::Router;
use farthing_server::config::Config;
use farthing_server::state::Mode;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    live_key: String,
    test_key: String,
    _dir: tempfile::TempDir,
    _running: farthing_server::Running,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database: dir.path().join("farthing.db").to_string_lossy().into_owned(),
            public_url: "http://127.0.0.1:0".to_owned(),
            ..Config::default()
        };
        // The fuzzer is one client sending as fast as it can: limits would answer 429 to
        // nearly everything and hide the handlers.
        let limits = &mut config.rate_limits;
        limits.api_key_per_s = 0;
        limits.client_per_s = 0;
        limits.failed_auth_per_s = 0;
        let running = runtime
            .block_on(farthing_server::start(config))
            .expect("server starts");
        let state = running.state().clone();
        let merchant = farthing_server::create_merchant(
            state.store(Mode::Live),
            state.store(Mode::Test),
            "Fuzz shop",
        )
        .expect("merchant");
        Harness {
            router: farthing_server::router(state),
            runtime,
            live_key: merchant.live_key,
            test_key: merchant.test_key,
            _dir: dir,
            _running: running,
        }
    })
}

fn request(h: &Harness, data: &[u8]) -> Option<Request<Body>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(target);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("auth") {
            let key = if value == "live" { &h.live_key } else { &h.test_key };
            builder = builder.header("authorization", format!("Bearer {key}"));
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(name, value);
        }
    }
    let mut request = builder.body(Body::from(body.to_vec())).ok()?;
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(request)
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let Some(request) = request(h, data) else {
        return;
    };
    let shown = format!("{} {}", request.method(), request.uri());
    let (status, body) = h.runtime.block_on(async {
        let response = h.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap_or_default();
        (status, body)
    });
    let gateway = matches!(status.as_u16(), 502 | 503 | 504);
    if status.is_server_error() && !gateway {
        panic!(
            "{shown} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
});
