//! Test doubles of LND's REST gateway and Core Lightning's clnrest, built with axum on
//! 127.0.0.1:0. They answer with the JSON shapes of the documentation (LND: the REST encoding
//! of `lightning.swagger.json` / `router.swagger.json`, i.e. 64-bit integers as strings and
//! bytes as base64; Core Lightning: the examples of `doc/schemas/<method>.json`, msat as
//! integers), check the authentication header, and record every request.
//!
//! `chunked` is a raw HTTP/1.1 server for the streaming cases that need control over chunk
//! boundaries and pauses (a line split across chunks, a stream held open): axum can only stream
//! a body from a `futures::Stream`, and no crate providing one is a dependency of this crate.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The BOLT #11 specification's example "Please send $3 for a cup of coffee to the same peer,
/// within one minute" (payment hash [`SPEC_HASH`]).
pub const SPEC_BOLT11: &str = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";

/// The payment hash of [`SPEC_BOLT11`].
pub const SPEC_HASH: &str = "0001020304050607080900010203040506070809000102030405060708090102";

/// A request a double received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Serves `router` on 127.0.0.1:0; returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    format!("http://{address}")
}

/// A URL where nothing listens (connection refused).
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{address}")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

pub mod lnd {
    //! LND's REST gateway.
    use super::*;

    /// What the LND double knows and saw.
    #[derive(Default)]
    pub struct Node {
        pub macaroon: String,
        pub seen: Mutex<Vec<Seen>>,
        /// `lnrpc.Invoice` objects by payment hash (hex).
        pub invoices: Mutex<HashMap<String, Value>>,
        /// The AddInvoice answer.
        pub added: Mutex<Value>,
        /// The lines `/v2/router/send` streams.
        pub pay_lines: Mutex<Vec<Value>>,
        /// The lines `/v1/invoices/subscribe` streams.
        pub subscribe_lines: Mutex<Vec<Value>>,
    }

    impl Node {
        pub fn last(&self) -> Seen {
            self.seen
                .lock()
                .expect("lock")
                .last()
                .cloned()
                .expect("a request")
        }
    }

    /// `lnrpc.Invoice` as LookupInvoice / SubscribeInvoices answer it (REST encoding).
    pub fn invoice(hash: &[u8; 32], state: &str, amt_paid_msat: u64, settle_index: u64) -> Value {
        let settled = state == "SETTLED";
        json!({
            "memo": "coffee",
            "r_preimage": b64(&[0x42; 32]),
            "r_hash": b64(hash),
            "value": "21",
            "value_msat": "21000",
            "settled": settled,
            "creation_date": "1700000000",
            "settle_date": if settled { "1700000100" } else { "0" },
            "payment_request": SPEC_BOLT11,
            "description_hash": "",
            "expiry": "600",
            "fallback_addr": "",
            "cltv_expiry": "80",
            "route_hints": [],
            "private": false,
            "add_index": "7",
            "settle_index": settle_index.to_string(),
            "amt_paid": (amt_paid_msat / 1000).to_string(),
            "amt_paid_sat": (amt_paid_msat / 1000).to_string(),
            "amt_paid_msat": amt_paid_msat.to_string(),
            "state": state,
            "htlcs": [],
            "features": {},
            "is_keysend": false,
            "payment_addr": b64(&[0x11; 32]),
            "is_amp": false,
            "amp_invoice_state": {}
        })
    }

    /// `lnrpc.Payment` as SendPaymentV2 streams it (hashes and preimages as hex strings).
    pub fn payment(
        hash_hex: &str,
        status: &str,
        preimage_hex: &str,
        fee_msat: u64,
        failure: &str,
    ) -> Value {
        json!({
            "payment_hash": hash_hex,
            "value": "250000",
            "creation_date": "1700000000",
            "fee": (fee_msat / 1000).to_string(),
            "payment_preimage": preimage_hex,
            "value_sat": "250000",
            "value_msat": "250000000",
            "payment_request": SPEC_BOLT11,
            "status": status,
            "fee_sat": (fee_msat / 1000).to_string(),
            "fee_msat": fee_msat.to_string(),
            "creation_time_ns": "1700000000000000000",
            "htlcs": [],
            "payment_index": "3",
            "failure_reason": failure,
            "first_hop_custom_records": {}
        })
    }

    pub async fn start(macaroon: &str) -> (String, Arc<Node>) {
        let node = Arc::new(Node {
            macaroon: macaroon.to_owned(),
            ..Node::default()
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(node.clone());
        (serve(router).await, node)
    }

    fn status(code: u16, grpc_code: i64, message: &str) -> Response {
        json_response(
            StatusCode::from_u16(code).expect("status"),
            &json!({ "code": grpc_code, "message": message, "details": [] }),
        )
    }

    fn lines(lines: &[Value]) -> Response {
        let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }

    async fn handle(
        axum::extract::State(node): axum::extract::State<Arc<Node>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        node.seen.lock().expect("lock").push(Seen {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers.clone(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        // LND answers a bad or missing macaroon with HTTP 500, gRPC code 2 (Unknown).
        match headers
            .get("grpc-metadata-macaroon")
            .and_then(|v| v.to_str().ok())
        {
            None => return status(500, 2, "expected 1 macaroon, got 0"),
            Some(given) if given != node.macaroon => {
                return status(
                    500,
                    2,
                    "verification failed: signature mismatch after caveat verification",
                )
            }
            Some(_) => {}
        }
        let path = uri.path();
        match (method.as_str(), path) {
            ("POST", "/v1/invoices") => {
                json_response(StatusCode::OK, &node.added.lock().expect("lock"))
            }
            ("GET", "/v1/balance/channels") => json_response(
                StatusCode::OK,
                &json!({
                    "balance": "1509503",
                    "pending_open_balance": "0",
                    "local_balance": { "sat": "1509503", "msat": "1509503210" },
                    "remote_balance": { "sat": "490496", "msat": "490496790" },
                    "unsettled_local_balance": { "sat": "0", "msat": "0" },
                    "unsettled_remote_balance": { "sat": "0", "msat": "0" },
                    "pending_open_local_balance": { "sat": "0", "msat": "0" },
                    "pending_open_remote_balance": { "sat": "0", "msat": "0" }
                }),
            ),
            ("POST", "/v2/router/send") => lines(&node.pay_lines.lock().expect("lock")),
            ("GET", "/v1/invoices/subscribe") => lines(&node.subscribe_lines.lock().expect("lock")),
            ("GET", _) if path.starts_with("/v1/invoice/") => {
                let hash = &path["/v1/invoice/".len()..];
                match node.invoices.lock().expect("lock").get(hash) {
                    Some(invoice) => json_response(StatusCode::OK, invoice),
                    None => status(404, 5, "unable to locate invoice"),
                }
            }
            _ => status(404, 5, "Not Found"),
        }
    }

    pub fn hash_hex(hash: &[u8; 32]) -> String {
        hex(hash)
    }

    pub fn unhex_hash(text: &str) -> Vec<u8> {
        unhex(text)
    }
}

pub mod cln {
    //! Core Lightning's clnrest.
    use super::*;

    /// What the clnrest double knows and saw.
    #[derive(Default)]
    pub struct Node {
        pub rune: String,
        pub seen: Mutex<Vec<Seen>>,
        /// `listinvoices` entries.
        pub invoices: Mutex<Vec<Value>>,
        /// The answer to `pay`: HTTP status and body.
        pub pay: Mutex<Option<(u16, Value)>>,
        /// Invoices paid before the test's stream started (`waitanyinvoice` entries).
        pub history: Mutex<Vec<Value>>,
        /// An invoice paid while a long poll (`timeout` > 0) waits.
        pub fresh: Mutex<Option<Value>>,
    }

    impl Node {
        pub fn last(&self) -> Seen {
            self.seen
                .lock()
                .expect("lock")
                .last()
                .cloned()
                .expect("a request")
        }

        pub fn calls(&self, method: &str) -> Vec<Seen> {
            let path = format!("/v1/{method}");
            self.seen
                .lock()
                .expect("lock")
                .iter()
                .filter(|seen| seen.path == path)
                .cloned()
                .collect()
        }
    }

    /// A `listinvoices` / `waitanyinvoice` entry.
    pub fn invoice(label: &str, hash_hex: &str, status: &str, pay_index: Option<u64>) -> Value {
        let mut entry = json!({
            "label": label,
            "bolt11": SPEC_BOLT11,
            "payment_hash": hash_hex,
            "amount_msat": 400000,
            "status": status,
            "description": "l21 description",
            "expires_at": 1738604800u64,
            "created_index": 2
        });
        if let Some(pay_index) = pay_index {
            entry["pay_index"] = json!(pay_index);
            entry["amount_received_msat"] = json!(400000);
            entry["paid_at"] = json!(1738000000u64);
            entry["payment_preimage"] =
                json!("08377744ca985c1908377744ca985c1908377744ca985c1908377744ca985c19");
            entry["updated_index"] = json!(pay_index);
        }
        entry
    }

    pub async fn start(rune: &str) -> (String, Arc<Node>) {
        let node = Arc::new(Node {
            rune: rune.to_owned(),
            ..Node::default()
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(node.clone());
        (serve(router).await, node)
    }

    fn error(status: u16, code: i64, message: &str) -> Response {
        json_response(
            StatusCode::from_u16(status).expect("status"),
            &json!({ "code": code, "message": message }),
        )
    }

    async fn handle(
        axum::extract::State(node): axum::extract::State<Arc<Node>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        node.seen.lock().expect("lock").push(Seen {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers.clone(),
            body: params.clone(),
        });
        // clnrest: missing rune 403 (1501), rune refused 401 (1502).
        match headers.get("rune").and_then(|v| v.to_str().ok()) {
            None => return error(403, 1501, "Not authorized: Missing rune"),
            Some(given) if given != node.rune => return error(401, 1502, "Rune is not valid"),
            Some(_) => {}
        }
        if method != Method::POST {
            return error(404, -32601, "Path not registered");
        }
        let created = |body: &Value| json_response(StatusCode::CREATED, body);
        match uri.path() {
            "/v1/invoice" => created(&json!({
                "payment_hash": "9562ee18e942b0eb2e36050c108efcb34cb07e5cdbe28d08d26bb71af1556c2f",
                "expires_at": 1738604800u64,
                "bolt11": SPEC_BOLT11,
                "payment_secret": "c2e882ab5464eb650a67ce396d04d97f670127f1e12aea33961b3f5cef65728e",
                "created_index": 2
            })),
            "/v1/listinvoices" => {
                let wanted = params["payment_hash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let invoices: Vec<Value> = node
                    .invoices
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|invoice| invoice["payment_hash"] == wanted.as_str())
                    .cloned()
                    .collect();
                created(&json!({ "invoices": invoices }))
            }
            "/v1/pay" => match node.pay.lock().expect("lock").clone() {
                Some((status, body)) => {
                    json_response(StatusCode::from_u16(status).expect("status"), &body)
                }
                None => error(500, -1, "no pay answer configured"),
            },
            "/v1/listfunds" => created(&json!({
                "outputs": [{
                    "txid": "59d7273c7dde3b2786f7325da08a303779ee718443aaa25d03db19c9e909591b",
                    "output": 6,
                    "amount_msat": 1000000,
                    "scriptpubkey": "00146a1845bb0ea1f8efa63f00f325641db7350dcd5b",
                    "address": "bcrt1qdgvytwcw58uwlf3lqrej2eqaku6smn2mdvkycp",
                    "status": "confirmed",
                    "blockheight": 141,
                    "reserved": false
                }],
                "channels": [
                    {
                        "peer_id": "035d2b1192dfba134e10e540875d366ebc8bc353d5aa766b80c090b39c3a5d885d",
                        "connected": true,
                        "state": "CHANNELD_NORMAL",
                        "channel_id": "ecabe6d86abdd57565b3fb7e7c5d724e60ca1a07633951769b5dbfa48dc884b3",
                        "short_channel_id": "124x1x1",
                        "our_amount_msat": 899996000,
                        "amount_msat": 1000000000,
                        "funding_txid": "148a366c9a72e40af01daca6acc24e0a5648d0efb7e01f4708f23412d9deba69",
                        "funding_output": 1
                    },
                    {
                        "peer_id": "0266e4598d1d3c415f572a8488830b60f7e744ed9235eb0b1ba93283b315c03518",
                        "connected": true,
                        "state": "CHANNELD_NORMAL",
                        "channel_id": "252d1b0a1e57895e84137f28cf19ab2c35847e284c112fefdecc7afeaa5c1de7",
                        "short_channel_id": "110x1x0",
                        "our_amount_msat": 609507210,
                        "amount_msat": 1000000000,
                        "funding_txid": "63f74346eda6b8620ec24f86e2f8982ef3dade95f8efd00b372a75b2893b6f0d",
                        "funding_output": 0
                    },
                    {
                        "peer_id": "0382ce59ebf18be7d84677c2e35f23294b9992ceca95491fcf8a56c6cb2d9de199",
                        "connected": false,
                        "state": "CLOSINGD_COMPLETE",
                        "channel_id": "f4e1de801de57374d5737da622611e3a1ad9f16d5df9c30fceecc11ce732eeeb",
                        "short_channel_id": "160x1x1",
                        "our_amount_msat": 500000000,
                        "amount_msat": 1000000000,
                        "funding_txid": "1c863d8172c0a588a7d34426b7249d4a939f04d4ca4bad6c28d5913ed2dff12a",
                        "funding_output": 1
                    }
                ]
            })),
            "/v1/waitanyinvoice" => {
                let after = params["lastpay_index"].as_u64().unwrap_or(0);
                let timeout = params["timeout"].as_u64();
                let mut candidates: Vec<Value> = node.history.lock().expect("lock").clone();
                if timeout != Some(0) {
                    candidates.extend(node.fresh.lock().expect("lock").clone());
                }
                let next = candidates
                    .into_iter()
                    .filter(|invoice| invoice["pay_index"].as_u64().unwrap_or(0) > after)
                    .min_by_key(|invoice| invoice["pay_index"].as_u64().unwrap_or(0));
                match (next, timeout) {
                    (Some(invoice), _) => created(&invoice),
                    (None, Some(0)) => error(500, 904, "Timed out"),
                    (None, _) => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        error(500, 904, "Timed out")
                    }
                }
            }
            _ => error(404, -32601, "Unknown command"),
        }
    }
}

pub mod chunked {
    //! A raw HTTP/1.1 server answering one request with a chunked body, chunk by chunk.
    use super::*;

    /// Serves one connection: records the request head, answers 200 with `chunks` (each after
    /// its pause), then ends the body, or holds the connection open if `hold_open`.
    pub async fn start(
        chunks: Vec<(Duration, Vec<u8>)>,
        hold_open: bool,
    ) -> (String, Arc<Mutex<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port");
        let address = listener.local_addr().expect("local address");
        let head = Arc::new(Mutex::new(String::new()));
        let seen = head.clone();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buffer).await.expect("read");
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            *seen.lock().expect("lock") = String::from_utf8_lossy(&request).into_owned();
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                )
                .await
                .expect("write");
            for (pause, chunk) in chunks {
                tokio::time::sleep(pause).await;
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                if socket.write_all(&framed).await.is_err() {
                    return;
                }
                let _ = socket.flush().await;
            }
            if hold_open {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            } else {
                let _ = socket.write_all(b"0\r\n\r\n").await;
                let _ = socket.flush().await;
                // Let the client read the end before the socket closes.
                let _ = socket.read(&mut buffer).await;
            }
        });
        (format!("http://{address}"), head)
    }
}
