//! The LND backend: LND's REST API (the gRPC gateway, `https://<host>:8080`).
//!
//! Checked against the LND API reference (lightning.engineering / api.lightning.community,
//! pages AddInvoice, LookupInvoice, SendPaymentV2, ChannelBalance, SubscribeInvoices) and the
//! gateway's own OpenAPI files in the LND repository (`lnrpc/lightning.swagger.json`,
//! `lnrpc/routerrpc/router.swagger.json`), which give the REST encoding:
//!
//! - authentication: header `Grpc-Metadata-macaroon: <macaroon as hex>`;
//! - `int64`/`uint64` fields travel as JSON strings (`"value_msat": "1000"`), `int32` as numbers
//!   (`timeout_seconds`), `bytes` fields as base64 (`r_hash`, `r_preimage`,
//!   `description_hash`), enums as their names (`"state": "SETTLED"`);
//! - `lnrpc.Payment` carries `payment_hash` and `payment_preimage` as hex *strings* (not bytes);
//! - server-streaming calls (`/v2/router/send`, `/v1/invoices/subscribe`) answer one JSON object
//!   per line, `{"result": …}` or `{"error": {"code", "message", "details"}}`;
//! - errors are `rpcStatus` objects `{"code": <gRPC code>, "message": …, "details": []}` with
//!   the gateway's HTTP status for the gRPC code.
//!
//! Endpoints: `POST /v1/invoices` (AddInvoice), `GET /v1/invoice/{r_hash_str}` (LookupInvoice,
//! hash as hex), `POST /v2/router/send` (SendPaymentV2, streamed), `GET /v1/balance/channels`
//! (ChannelBalance), `GET /v1/invoices/subscribe` (SubscribeInvoices, streamed).
//!
//! Not in the reference, taken from LND's behaviour as reported by its users: a wrong or missing
//! macaroon is *not* a 401; LND answers HTTP 500 with gRPC code 2 and a message such as
//! `verification failed: signature mismatch after caveat verification` or `expected 1 macaroon,
//! got 0` (or `permission denied` for a macaroon lacking the permission). Such answers become
//! [`BackendError::Unauthorized`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::backend::{
    http, BackendError, CreateInvoice, CreatedInvoice, Description, InvoiceState, LightningBackend,
    PaymentHash, PaymentOutcome, MAX_ANSWER_BYTES,
};

const BACKEND: &str = "lnd";

/// The macaroon header of LND's REST gateway.
const MACAROON_HEADER: &str = "Grpc-Metadata-macaroon";

/// `timeout_seconds` sent with SendPaymentV2: how long LND may look for routes before the
/// first HTLC (once HTLCs are in flight LND waits for them regardless).
pub const PAY_TIMEOUT_S: u32 = 60;

/// How long [`Lnd::pay_invoice`] reads the payment stream before answering `Pending`.
pub const PAY_WAIT: Duration = Duration::from_secs(90);

/// How long one `/v1/invoices/subscribe` request may stay open; then
/// [`Lnd::follow_settlements`] returns `Ok(())` and the caller reconnects (resuming from the
/// last settle index seen, so nothing is skipped).
pub const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3600);

/// A client of one LND node's REST API.
#[derive(Clone)]
pub struct Lnd {
    base: String,
    macaroon: HeaderValue,
    client: reqwest::Client,
    /// The highest `settle_index` seen by [`Lnd::follow_settlements`] (0: none yet), so that a
    /// reconnect resumes where the previous stream stopped.
    last_settle_index: Arc<AtomicU64>,
}

impl fmt::Debug for Lnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lnd")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

impl Lnd {
    /// Builds the client (no network I/O): `url` is the REST base URL, `macaroon` the macaroon
    /// as hex, `tls_cert` LND's `tls.cert` (PEM), which then is the only trusted certificate.
    pub fn new(url: &str, macaroon: &str, tls_cert: Option<&str>) -> Result<Lnd, BackendError> {
        let base = http::base_url(BACKEND, url)?;
        if let Some(pem) = tls_cert {
            // reqwest reads PEM lazily and skips text without a certificate block, which would
            // leave a client trusting nothing: refuse that here.
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(BackendError::Config {
                    backend: BACKEND,
                    message: "tls_cert must be a PEM certificate (-----BEGIN CERTIFICATE-----)"
                        .to_owned(),
                });
            }
        }
        let macaroon = macaroon.trim();
        if macaroon.is_empty()
            || !macaroon.len().is_multiple_of(2)
            || !macaroon.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(BackendError::Config {
                backend: BACKEND,
                message: "macaroon must be the macaroon file's bytes as hex".to_owned(),
            });
        }
        let mut header = HeaderValue::from_str(macaroon).map_err(|_| BackendError::Config {
            backend: BACKEND,
            message: "macaroon must be the macaroon file's bytes as hex".to_owned(),
        })?;
        header.set_sensitive(true);
        Ok(Lnd {
            base,
            macaroon: header,
            client: http::client(BACKEND, tls_cert)?,
            last_settle_index: Arc::new(AtomicU64::new(0)),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
            .header(MACAROON_HEADER, self.macaroon.clone())
    }

    /// Sends a unary call and decodes its JSON answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, BackendError> {
        let response = request
            .send()
            .await
            .map_err(|error| http::transport(BACKEND, error))?;
        let body = http::read(BACKEND, response).await.map_err(refine)?;
        http::json(BACKEND, &body)
    }
}

/// Turns LND's "bad macaroon" answers (HTTP 500, gRPC code 2) into `Unauthorized`, and keeps
/// only the `message` of an `rpcStatus` body.
fn refine(error: BackendError) -> BackendError {
    match error {
        BackendError::Rejected {
            backend,
            status,
            message,
        } => {
            let message = serde_json::from_str::<RpcStatus>(&message)
                .ok()
                .and_then(|s| s.message)
                .unwrap_or(message);
            status_error(backend, status, message)
        }
        other => other,
    }
}

fn status_error(backend: &'static str, status: u16, message: String) -> BackendError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("macaroon")
        || lower.contains("verification failed")
        || lower.contains("permission denied")
    {
        return BackendError::Unauthorized { backend, status };
    }
    match status {
        401 | 403 => BackendError::Unauthorized { backend, status },
        404 => BackendError::NotFound { backend },
        _ => BackendError::Rejected {
            backend,
            status,
            message: message.chars().take(300).collect(),
        },
    }
}

/// The HTTP status LND's gateway uses for a gRPC code (for errors inside a stream).
fn http_status_of(code: i64) -> u16 {
    match code {
        3 | 9 | 11 => 400,
        16 => 401,
        7 => 403,
        5 => 404,
        6 | 10 => 409,
        8 => 429,
        1 => 499,
        12 => 501,
        14 => 503,
        4 => 504,
        _ => 500,
    }
}

fn stream_error(status: RpcStatus) -> BackendError {
    let code = status.code.unwrap_or(2);
    status_error(
        BACKEND,
        http_status_of(code),
        status.message.unwrap_or_default(),
    )
}

/// `rpcStatus`: LND's error body.
#[derive(Deserialize)]
struct RpcStatus {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// One line of a server stream: `{"result": T}` or `{"error": rpcStatus}`.
#[derive(Deserialize)]
struct StreamLine<T> {
    result: Option<T>,
    error: Option<RpcStatus>,
}

/// An `int64`/`uint64` as LND's gateway writes it (a decimal string), or a plain number.
fn u64_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Text(String),
        Number(u64),
    }
    match Text::deserialize(deserializer)? {
        Text::Number(n) => Ok(n),
        Text::Text(s) if s.is_empty() => Ok(0),
        Text::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, BackendError> {
    BASE64.decode(text).map_err(|error| BackendError::Decode {
        backend: BACKEND,
        message: format!("{field} is not base64: {error}"),
    })
}

fn hash_from_base64(field: &str, text: &str) -> Result<PaymentHash, BackendError> {
    let bytes = decode_base64(field, text)?;
    let array: [u8; 32] = bytes.try_into().map_err(|_| BackendError::Decode {
        backend: BACKEND,
        message: format!("{field} is not 32 bytes"),
    })?;
    Ok(PaymentHash(array))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The payment hash of a BOLT11 invoice, if it parses (used for `Pending` when the node said
/// nothing before the stream broke).
fn bolt11_hash(bolt11: &str) -> Option<PaymentHash> {
    let invoice: lightning_invoice::Bolt11Invoice = bolt11.trim().parse().ok()?;
    let bytes: &[u8; 32] = invoice.payment_hash().as_ref();
    Some(PaymentHash(*bytes))
}

/// Runs `work` until it finishes or `settled` is closed (then `None`).
async fn unless_closed<F: Future>(
    settled: &mpsc::Sender<PaymentHash>,
    work: F,
) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    let mut closed = std::pin::pin!(settled.closed());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Splits a streamed body into lines (one JSON object each), bounded in size.
#[derive(Default)]
struct Lines {
    buffer: Vec<u8>,
}

impl Lines {
    /// Adds a chunk; returns the complete lines it finished.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, BackendError> {
        self.buffer.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                lines.push(line);
            }
        }
        if self.buffer.len() > MAX_ANSWER_BYTES {
            return Err(BackendError::Decode {
                backend: BACKEND,
                message: format!("stream line longer than {MAX_ANSWER_BYTES} bytes"),
            });
        }
        Ok(lines)
    }

    /// What is left when the stream ends (a last object without a newline).
    fn rest(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buffer);
        rest.iter()
            .any(|b| !b.is_ascii_whitespace())
            .then_some(rest)
    }
}

/// AddInvoiceResponse.
#[derive(Deserialize)]
struct AddInvoiceResponse {
    r_hash: String,
    payment_request: String,
}

/// The fields of `lnrpc.Invoice` used here.
#[derive(Deserialize)]
struct Invoice {
    #[serde(default)]
    r_hash: String,
    #[serde(default)]
    r_preimage: String,
    #[serde(default)]
    state: String,
    #[serde(default, deserialize_with = "u64_text")]
    amt_paid_msat: u64,
    #[serde(default, deserialize_with = "u64_text")]
    settle_date: u64,
    #[serde(default, deserialize_with = "u64_text")]
    settle_index: u64,
}

/// The fields of `lnrpc.Payment` used here.
#[derive(Deserialize)]
struct Payment {
    #[serde(default)]
    payment_hash: String,
    #[serde(default)]
    payment_preimage: String,
    #[serde(default)]
    status: String,
    #[serde(default, deserialize_with = "u64_text")]
    fee_msat: u64,
    #[serde(default)]
    failure_reason: String,
}

/// ChannelBalanceResponse.
#[derive(Deserialize)]
struct ChannelBalance {
    #[serde(default)]
    local_balance: Option<Amount>,
    /// Deprecated satoshi sum, for nodes older than `local_balance`.
    #[serde(default, deserialize_with = "u64_text")]
    balance: u64,
}

/// `lnrpc.Amount`.
#[derive(Deserialize)]
struct Amount {
    #[serde(default, deserialize_with = "u64_text")]
    msat: u64,
}

fn invoice_state(invoice: Invoice) -> Result<InvoiceState, BackendError> {
    Ok(match invoice.state.as_str() {
        // ACCEPTED: HTLCs are held (hold invoice), not settled yet.
        "OPEN" | "ACCEPTED" => InvoiceState::Open,
        "SETTLED" => {
            let preimage = if invoice.r_preimage.is_empty() {
                None
            } else {
                Some(hex(&decode_base64("r_preimage", &invoice.r_preimage)?))
            };
            InvoiceState::Settled {
                amount_received_msat: invoice.amt_paid_msat,
                settled_at_s: (invoice.settle_date > 0).then_some(invoice.settle_date),
                preimage,
            }
        }
        "CANCELED" => InvoiceState::Canceled,
        other => {
            return Err(BackendError::Decode {
                backend: BACKEND,
                message: format!(
                    "unknown invoice state {:?}",
                    other.chars().take(40).collect::<String>()
                ),
            })
        }
    })
}

/// What one payment update means.
enum Step {
    Done(PaymentOutcome),
    InFlight(Option<PaymentHash>),
}

fn payment_step(payment: Payment) -> Result<Step, BackendError> {
    let hash = PaymentHash::from_hex(&payment.payment_hash);
    match payment.status.as_str() {
        "SUCCEEDED" => {
            let payment_hash = hash.ok_or_else(|| BackendError::Decode {
                backend: BACKEND,
                message: "payment_hash is not 64 hex characters".to_owned(),
            })?;
            Ok(Step::Done(PaymentOutcome::Succeeded {
                payment_hash,
                preimage: (!payment.payment_preimage.is_empty())
                    .then(|| payment.payment_preimage.to_ascii_lowercase()),
                fee_msat: payment.fee_msat,
            }))
        }
        "FAILED" => Ok(Step::Done(PaymentOutcome::Failed {
            reason: if payment.failure_reason.is_empty() {
                "FAILED".to_owned()
            } else {
                payment.failure_reason.chars().take(300).collect()
            },
        })),
        // IN_FLIGHT, INITIATED, UNKNOWN (deprecated): not finished.
        _ => Ok(Step::InFlight(hash)),
    }
}

impl LightningBackend for Lnd {
    fn name(&self) -> &'static str {
        BACKEND
    }

    /// `POST /v1/invoices` with `value_msat` and `expiry` (strings), and `memo` or
    /// `description_hash` (base64 of SHA-256 of the text). The label is not sent: LND has no
    /// label, and its `memo` would go into the invoice.
    async fn create_invoice(
        &self,
        request: &CreateInvoice,
    ) -> Result<CreatedInvoice, BackendError> {
        let mut body = serde_json::json!({
            "value_msat": request.amount_msat.to_string(),
            "expiry": request.expiry_s.to_string(),
        });
        match &request.description {
            Description::Memo(memo) => body["memo"] = serde_json::Value::from(memo.as_str()),
            Description::Hashed(text) => {
                body["description_hash"] =
                    serde_json::Value::from(BASE64.encode(Sha256::digest(text.as_bytes())));
            }
        }
        let answer: AddInvoiceResponse = self
            .call(
                self.request(reqwest::Method::POST, "/v1/invoices")
                    .json(&body),
            )
            .await?;
        Ok(CreatedInvoice {
            bolt11: answer.payment_request,
            payment_hash: hash_from_base64("r_hash", &answer.r_hash)?,
        })
    }

    /// `GET /v1/invoice/{r_hash_str}` (hex). `OPEN` and `ACCEPTED` are open, `SETTLED` settled
    /// (`amt_paid_msat`, `settle_date`, `r_preimage`), `CANCELED` canceled (LND cancels
    /// expired invoices).
    async fn invoice_state(
        &self,
        payment_hash: &PaymentHash,
    ) -> Result<InvoiceState, BackendError> {
        let invoice: Invoice = self
            .call(self.request(
                reqwest::Method::GET,
                &format!("/v1/invoice/{}", payment_hash.to_hex()),
            ))
            .await?;
        if !invoice.r_hash.is_empty()
            && hash_from_base64("r_hash", &invoice.r_hash)? != *payment_hash
        {
            return Err(BackendError::Decode {
                backend: BACKEND,
                message: "the node answered about another invoice".to_owned(),
            });
        }
        invoice_state(invoice)
    }

    /// `POST /v2/router/send` with `payment_request`, `fee_limit_msat` (string) and
    /// `timeout_seconds` ([`PAY_TIMEOUT_S`]); reads the stream of `Payment` updates until
    /// `SUCCEEDED` or `FAILED`. If the stream ends, breaks or runs past [`PAY_WAIT`] while the
    /// payment is in flight, the answer is `Pending`.
    async fn pay_invoice(
        &self,
        bolt11: &str,
        max_fee_msat: u64,
    ) -> Result<PaymentOutcome, BackendError> {
        let body = serde_json::json!({
            "payment_request": bolt11.trim(),
            "fee_limit_msat": max_fee_msat.to_string(),
            "timeout_seconds": PAY_TIMEOUT_S,
        });
        let sent = self
            .request(reqwest::Method::POST, "/v2/router/send")
            .timeout(PAY_WAIT)
            .json(&body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            // Not connected: nothing was sent.
            Err(error) if error.is_connect() || error.is_builder() => {
                return Err(http::transport(BACKEND, error))
            }
            // The request may have reached LND: the payment may be under way.
            Err(error) => {
                return match bolt11_hash(bolt11) {
                    Some(payment_hash) => Ok(PaymentOutcome::Pending { payment_hash }),
                    None => Err(http::transport(BACKEND, error)),
                }
            }
        };
        if !response.status().is_success() {
            return Err(http::read(BACKEND, response)
                .await
                .err()
                .map(refine)
                .unwrap_or(BackendError::Decode {
                    backend: BACKEND,
                    message: "unexpected answer".to_owned(),
                }));
        }
        // From here on the payment may be under way: anything but a final update is Pending.
        let mut known_hash: Option<PaymentHash> = None;
        let pending = |known: Option<PaymentHash>| known.or_else(|| bolt11_hash(bolt11));
        let mut lines = Lines::default();
        loop {
            let chunk = match response.chunk().await {
                Ok(chunk) => chunk,
                Err(error) => {
                    return match pending(known_hash) {
                        Some(payment_hash) => Ok(PaymentOutcome::Pending { payment_hash }),
                        None => Err(http::transport(BACKEND, error)),
                    }
                }
            };
            let finished = chunk.is_none();
            let batch = match chunk {
                Some(chunk) => lines.push(&chunk)?,
                None => lines.rest().into_iter().collect(),
            };
            for line in batch {
                let update: StreamLine<Payment> = http::json(BACKEND, &line)?;
                if let Some(error) = update.error {
                    return match known_hash {
                        Some(payment_hash) => Ok(PaymentOutcome::Pending { payment_hash }),
                        None => Err(stream_error(error)),
                    };
                }
                if let Some(payment) = update.result {
                    match payment_step(payment)? {
                        Step::Done(outcome) => return Ok(outcome),
                        Step::InFlight(hash) => known_hash = hash.or(known_hash),
                    }
                }
            }
            if finished {
                return match pending(known_hash) {
                    Some(payment_hash) => Ok(PaymentOutcome::Pending { payment_hash }),
                    None => Err(BackendError::Decode {
                        backend: BACKEND,
                        message: "the payment stream ended without an update".to_owned(),
                    }),
                };
            }
        }
    }

    /// `GET /v1/balance/channels`: `local_balance.msat` (or, on old nodes, `balance` × 1000).
    async fn balance_msat(&self) -> Result<u64, BackendError> {
        let balance: ChannelBalance = self
            .call(self.request(reqwest::Method::GET, "/v1/balance/channels"))
            .await?;
        Ok(match balance.local_balance {
            Some(amount) => amount.msat,
            None => balance.balance.saturating_mul(1000),
        })
    }

    /// `GET /v1/invoices/subscribe` (with `settle_index` = the last one seen by this client, so
    /// a reconnect replays what settled in between): sends the payment hash (`r_hash`) of every
    /// streamed invoice whose `state` is `SETTLED`. Returns `Ok(())` when the stream ends, after
    /// [`SUBSCRIBE_WAIT`], or when `settled` is closed.
    async fn follow_settlements(
        &self,
        settled: mpsc::Sender<PaymentHash>,
    ) -> Result<(), BackendError> {
        let since = self.last_settle_index.load(Ordering::Relaxed);
        let mut request = self
            .request(reqwest::Method::GET, "/v1/invoices/subscribe")
            .timeout(SUBSCRIBE_WAIT);
        if since > 0 {
            request = request.query(&[("settle_index", since.to_string())]);
        }
        let Some(sent) = unless_closed(&settled, request.send()).await else {
            return Ok(());
        };
        let mut response = sent.map_err(|error| http::transport(BACKEND, error))?;
        if !response.status().is_success() {
            return Err(http::read(BACKEND, response)
                .await
                .err()
                .map(refine)
                .unwrap_or(BackendError::Decode {
                    backend: BACKEND,
                    message: "unexpected answer".to_owned(),
                }));
        }
        let mut lines = Lines::default();
        loop {
            let Some(chunk) = unless_closed(&settled, response.chunk()).await else {
                return Ok(());
            };
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) if error.is_timeout() => return Ok(()),
                Err(error) => return Err(http::transport(BACKEND, error)),
            };
            let finished = chunk.is_none();
            let batch = match chunk {
                Some(chunk) => lines.push(&chunk)?,
                None => lines.rest().into_iter().collect(),
            };
            for line in batch {
                let update: StreamLine<Invoice> = http::json(BACKEND, &line)?;
                if let Some(error) = update.error {
                    return Err(stream_error(error));
                }
                let Some(invoice) = update.result else {
                    continue;
                };
                if invoice.state != "SETTLED" {
                    continue;
                }
                let hash = hash_from_base64("r_hash", &invoice.r_hash)?;
                self.last_settle_index
                    .fetch_max(invoice.settle_index, Ordering::Relaxed);
                if settled.send(hash).await.is_err() {
                    return Ok(());
                }
            }
            if finished {
                return Ok(());
            }
        }
    }
}
