//! The Core Lightning backend: the `clnrest` plugin (Core Lightning v24+, `https://<host>:3010`).
//!
//! Checked against the Core Lightning documentation (docs.corelightning.org: the REST page and
//! the JSON-RPC reference pages `invoice`, `listinvoices`, `pay`, `listfunds`,
//! `waitanyinvoice`, whose request/response schemas and examples live in the repository as
//! `doc/schemas/<method>.json`) and, for the HTTP envelope, against clnrest's source
//! (`plugins/rest-plugin/src/{handlers,shared}.rs`):
//!
//! - every call is `POST /v1/<method>` with the RPC's named parameters as a JSON object and the
//!   header `Rune: <rune>`;
//! - success is HTTP **201** with the RPC's result as the body (so any 2xx is accepted);
//! - a missing rune is HTTP 403 `{"code": 1501, "message": "Not authorized: Missing rune"}`, a
//!   rune that does not allow the call is HTTP 401 (`{"code": 1502, "message": "Rune is not
//!   valid"}` or `checkrune`'s error): both become [`BackendError::Unauthorized`];
//! - an RPC error is HTTP 500 with the JSON-RPC error object `{"code", "message", "data"?}`; an
//!   unknown method is HTTP 404 (code -32601);
//! - `msat` fields are JSON integers (older nodes wrote strings such as `"1000msat"`; both are
//!   read).
//!
//! Calls: `invoice` (create), `listinvoices {payment_hash}` (state), `pay {bolt11, maxfee,
//! retry_for}` (pay), `listfunds` (balance: `our_amount_msat` of `CHANNELD_NORMAL` channels),
//! `waitanyinvoice {lastpay_index, timeout}` (settlement stream, long poll).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::{Deserialize, Deserializer};
use tokio::sync::mpsc;

use crate::backend::{
    http, BackendError, CreateInvoice, CreatedInvoice, Description, InvoiceState, LightningBackend,
    PaymentHash, PaymentOutcome, CALL_TIMEOUT, MAX_ANSWER_BYTES,
};

const BACKEND: &str = "cln";

/// `retry_for` sent with `pay`: how long Core Lightning keeps retrying routes.
pub const PAY_RETRY_FOR_S: u64 = 60;

/// How long [`Cln::pay_invoice`] waits for `pay` to answer before answering `Pending`.
pub const PAY_WAIT: Duration = Duration::from_secs(PAY_RETRY_FOR_S + 30);

/// The `timeout` of one `waitanyinvoice` long poll; on error 904 (timeout) the next poll starts.
pub const LONG_POLL_S: u64 = 300;

/// Error code of `waitanyinvoice` when its `timeout` passed without a payment.
const WAIT_TIMED_OUT: i64 = 904;

/// A client of one Core Lightning node's `clnrest`.
#[derive(Clone)]
pub struct Cln {
    base: String,
    rune: HeaderValue,
    client: reqwest::Client,
    /// The highest `pay_index` seen by [`Cln::follow_settlements`] (0: none yet), so that a
    /// reconnect resumes where the previous poll stopped.
    last_pay_index: Arc<AtomicU64>,
}

impl fmt::Debug for Cln {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cln")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

/// Why a call failed: the node's JSON-RPC error (kept apart because some codes are answers,
/// e.g. `pay`'s 205 "unable to find a route"), or anything else.
enum CallError {
    Rpc {
        code: i64,
        message: String,
    },
    /// The request may have reached the node, but no (whole) answer came back.
    NoAnswer(BackendError),
    Other(BackendError),
}

impl From<BackendError> for CallError {
    fn from(error: BackendError) -> CallError {
        CallError::Other(error)
    }
}

impl From<CallError> for BackendError {
    fn from(error: CallError) -> BackendError {
        match error {
            CallError::Rpc { code, message } => BackendError::Rejected {
                backend: BACKEND,
                status: 500,
                message: format!("{code}: {message}").chars().take(300).collect(),
            },
            CallError::NoAnswer(error) | CallError::Other(error) => error,
        }
    }
}

/// A JSON-RPC error object as clnrest returns it.
#[derive(Deserialize)]
struct RpcError {
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

impl Cln {
    /// Builds the client (no network I/O): `url` is clnrest's base URL, `rune` a rune allowing
    /// the methods above, `tls_cert` clnrest's certificate (PEM), then the only one trusted.
    pub fn new(url: &str, rune: &str, tls_cert: Option<&str>) -> Result<Cln, BackendError> {
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
        let rune = rune.trim();
        let config_error = || BackendError::Config {
            backend: BACKEND,
            message: "rune must be a rune as createrune prints it (base64url)".to_owned(),
        };
        if rune.is_empty()
            || !rune
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
        {
            return Err(config_error());
        }
        let mut header = HeaderValue::from_str(rune).map_err(|_| config_error())?;
        header.set_sensitive(true);
        Ok(Cln {
            base,
            rune: header,
            client: http::client(BACKEND, tls_cert)?,
            last_pay_index: Arc::new(AtomicU64::new(0)),
        })
    }

    /// `POST /v1/<method>` with `params`; `timeout` overrides [`CALL_TIMEOUT`].
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<T, CallError> {
        let response = self
            .client
            .post(format!("{}/v1/{}", self.base, method))
            .header("Rune", self.rune.clone())
            .timeout(timeout.unwrap_or(CALL_TIMEOUT))
            .json(&params)
            .send()
            .await
            .map_err(|error| {
                if error.is_connect() || error.is_builder() {
                    CallError::Other(http::transport(BACKEND, error))
                } else {
                    CallError::NoAnswer(http::transport(BACKEND, error))
                }
            })?;
        let status = response.status();
        let body = read_bounded(response).await.map_err(|error| match error {
            unreachable @ BackendError::Unreachable { .. } => CallError::NoAnswer(unreachable),
            other => CallError::Other(other),
        })?;
        if status.is_success() {
            return Ok(http::json(BACKEND, &body)?);
        }
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        Err(match status.as_u16() {
            401 | 403 => CallError::Other(BackendError::Unauthorized {
                backend: BACKEND,
                status: status.as_u16(),
            }),
            500 => match serde_json::from_slice::<RpcError>(&body) {
                Ok(RpcError {
                    code: Some(code),
                    message,
                }) => CallError::Rpc { code, message },
                _ => CallError::Other(BackendError::Rejected {
                    backend: BACKEND,
                    status: 500,
                    message: text,
                }),
            },
            code => CallError::Other(BackendError::Rejected {
                backend: BACKEND,
                status: code,
                message: text,
            }),
        })
    }

    /// The `pay_index` of the first invoice paid after `after`, if one is paid already
    /// (`waitanyinvoice` with `timeout: 0` answers error 904 at once otherwise).
    async fn paid_after(&self, after: u64) -> Result<Option<u64>, BackendError> {
        let params = serde_json::json!({ "lastpay_index": after, "timeout": 0 });
        match self
            .call::<ListedInvoice>("waitanyinvoice", params, None)
            .await
        {
            Ok(invoice) => invoice.pay_index.map(Some).ok_or(BackendError::Decode {
                backend: BACKEND,
                message: "waitanyinvoice answered without pay_index".to_owned(),
            }),
            Err(CallError::Rpc { code, .. }) if code == WAIT_TIMED_OUT => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The node's highest `pay_index` (0 if nothing was ever paid), found with a handful of
    /// `paid_after` probes (exponential, then binary search) instead of listing every invoice.
    async fn highest_pay_index(&self) -> Result<u64, BackendError> {
        let mut low = 0u64; // some invoice has pay_index `low` (or low = 0)
        let mut high: Option<u64> = None; // no invoice has a pay_index above `high`
        let mut step = 1u64;
        for _ in 0..256 {
            let probe = match high {
                Some(high) if high <= low => return Ok(low),
                Some(high) => low + (high - low) / 2,
                None => low.saturating_add(step - 1),
            };
            match self.paid_after(probe).await? {
                Some(index) if index > probe => {
                    low = index;
                    step = step.saturating_mul(2);
                }
                Some(_) => {
                    return Err(BackendError::Decode {
                        backend: BACKEND,
                        message: "waitanyinvoice answered an older pay_index".to_owned(),
                    })
                }
                None => high = Some(probe),
            }
        }
        Ok(low)
    }
}

/// Reads a whole answer, at most [`MAX_ANSWER_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, BackendError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| http::transport(BACKEND, error))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(BackendError::Decode {
                backend: BACKEND,
                message: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An `msat` field: a JSON integer, or (older nodes) a string such as `"1000msat"`.
fn msat<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Msat {
        Number(u64),
        Text(String),
    }
    match Option::<Msat>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Msat::Number(n)) => Ok(Some(n)),
        Some(Msat::Text(text)) => text
            .strip_suffix("msat")
            .unwrap_or(&text)
            .parse()
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn parse_hash(text: &str) -> Result<PaymentHash, BackendError> {
    PaymentHash::from_hex(text).ok_or_else(|| BackendError::Decode {
        backend: BACKEND,
        message: "payment_hash is not 64 hex characters".to_owned(),
    })
}

/// The payment hash of a BOLT11 invoice, if it parses (for `Pending` when `pay` did not answer).
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

/// The answer of `invoice`.
#[derive(Deserialize)]
struct NewInvoice {
    payment_hash: String,
    bolt11: String,
}

/// The answer of `listinvoices`.
#[derive(Deserialize)]
struct ListInvoices {
    invoices: Vec<ListedInvoice>,
}

/// An invoice as `listinvoices` and `waitanyinvoice` show it (the fields used here).
#[derive(Deserialize)]
struct ListedInvoice {
    payment_hash: String,
    status: String,
    #[serde(default, deserialize_with = "msat")]
    amount_received_msat: Option<u64>,
    #[serde(default)]
    paid_at: Option<u64>,
    #[serde(default)]
    payment_preimage: Option<String>,
    #[serde(default)]
    pay_index: Option<u64>,
}

/// The answer of `pay`.
#[derive(Deserialize)]
struct Paid {
    payment_hash: String,
    #[serde(default)]
    payment_preimage: Option<String>,
    #[serde(default, deserialize_with = "msat")]
    amount_msat: Option<u64>,
    #[serde(default, deserialize_with = "msat")]
    amount_sent_msat: Option<u64>,
    status: String,
}

/// The answer of `listfunds` (channels only).
#[derive(Deserialize)]
struct Funds {
    channels: Vec<FundChannel>,
}

#[derive(Deserialize)]
struct FundChannel {
    #[serde(default, deserialize_with = "msat")]
    our_amount_msat: Option<u64>,
    state: String,
}

impl LightningBackend for Cln {
    fn name(&self) -> &'static str {
        BACKEND
    }

    /// `invoice {amount_msat, label, description, expiry}`, plus `deschashonly: true` for a
    /// hashed description (the node hashes the text; the BOLT11 carries only the hash).
    async fn create_invoice(
        &self,
        request: &CreateInvoice,
    ) -> Result<CreatedInvoice, BackendError> {
        let (description, hashed) = match &request.description {
            Description::Memo(memo) => (memo.as_str(), false),
            Description::Hashed(text) => (text.as_str(), true),
        };
        let mut params = serde_json::json!({
            "amount_msat": request.amount_msat,
            "label": request.label,
            "description": description,
            "expiry": request.expiry_s,
        });
        if hashed {
            params["deschashonly"] = serde_json::Value::Bool(true);
        }
        let answer: NewInvoice = self.call("invoice", params, None).await?;
        Ok(CreatedInvoice {
            payment_hash: parse_hash(&answer.payment_hash)?,
            bolt11: answer.bolt11,
        })
    }

    /// `listinvoices {payment_hash}`: `unpaid` is open, `paid` settled (`amount_received_msat`,
    /// `paid_at`, `payment_preimage`), `expired` canceled; no invoice is `NotFound`.
    async fn invoice_state(
        &self,
        payment_hash: &PaymentHash,
    ) -> Result<InvoiceState, BackendError> {
        let params = serde_json::json!({ "payment_hash": payment_hash.to_hex() });
        let list: ListInvoices = self.call("listinvoices", params, None).await?;
        let invoice = list
            .invoices
            .into_iter()
            .find(|invoice| PaymentHash::from_hex(&invoice.payment_hash) == Some(*payment_hash))
            .ok_or(BackendError::NotFound { backend: BACKEND })?;
        Ok(match invoice.status.as_str() {
            "unpaid" => InvoiceState::Open,
            "paid" => InvoiceState::Settled {
                amount_received_msat: invoice.amount_received_msat.ok_or(BackendError::Decode {
                    backend: BACKEND,
                    message: "paid invoice without amount_received_msat".to_owned(),
                })?,
                settled_at_s: invoice.paid_at,
                preimage: invoice.payment_preimage.map(|p| p.to_ascii_lowercase()),
            },
            "expired" => InvoiceState::Canceled,
            other => {
                return Err(BackendError::Decode {
                    backend: BACKEND,
                    message: format!(
                        "unknown invoice status {:?}",
                        other.chars().take(40).collect::<String>()
                    ),
                })
            }
        })
    }

    /// `pay {bolt11, maxfee, retry_for}`: `complete` succeeded (fee = `amount_sent_msat` −
    /// `amount_msat`), `pending` pending, `failed` failed; the documented failure codes (201,
    /// 203, 205, 206, 207, 210) are `Failed`; 200 (in progress), and a request that went out
    /// but got no answer (within [`PAY_WAIT`]), are `Pending` (hash read from the BOLT11).
    async fn pay_invoice(
        &self,
        bolt11: &str,
        max_fee_msat: u64,
    ) -> Result<PaymentOutcome, BackendError> {
        let params = serde_json::json!({
            "bolt11": bolt11.trim(),
            "maxfee": max_fee_msat,
            "retry_for": PAY_RETRY_FOR_S,
        });
        let paid: Paid = match self.call("pay", params, Some(PAY_WAIT)).await {
            Ok(paid) => paid,
            Err(CallError::Rpc { code, message }) => {
                return match code {
                    201 | 203 | 205 | 206 | 207 | 210 => Ok(PaymentOutcome::Failed {
                        reason: format!("{code}: {message}").chars().take(300).collect(),
                    }),
                    200 => match bolt11_hash(bolt11) {
                        Some(payment_hash) => Ok(PaymentOutcome::Pending { payment_hash }),
                        None => Err(CallError::Rpc { code, message }.into()),
                    },
                    _ => Err(CallError::Rpc { code, message }.into()),
                }
            }
            // The request may have gone out but no answer came: the payment may be under way.
            Err(CallError::NoAnswer(error)) => {
                return match bolt11_hash(bolt11) {
                    Some(payment_hash) => Ok(PaymentOutcome::Pending { payment_hash }),
                    None => Err(error),
                }
            }
            Err(error) => return Err(error.into()),
        };
        let payment_hash = parse_hash(&paid.payment_hash)?;
        Ok(match paid.status.as_str() {
            "complete" => PaymentOutcome::Succeeded {
                payment_hash,
                preimage: paid.payment_preimage.map(|p| p.to_ascii_lowercase()),
                fee_msat: paid
                    .amount_sent_msat
                    .unwrap_or(0)
                    .saturating_sub(paid.amount_msat.unwrap_or(0)),
            },
            "pending" => PaymentOutcome::Pending { payment_hash },
            "failed" => PaymentOutcome::Failed {
                reason: "pay: failed".to_owned(),
            },
            other => {
                return Err(BackendError::Decode {
                    backend: BACKEND,
                    message: format!(
                        "unknown pay status {:?}",
                        other.chars().take(40).collect::<String>()
                    ),
                })
            }
        })
    }

    /// `listfunds`: the sum of `our_amount_msat` over channels in state `CHANNELD_NORMAL`.
    async fn balance_msat(&self) -> Result<u64, BackendError> {
        let funds: Funds = self.call("listfunds", serde_json::json!({}), None).await?;
        Ok(funds
            .channels
            .iter()
            .filter(|channel| channel.state == "CHANNELD_NORMAL")
            .map(|channel| channel.our_amount_msat.unwrap_or(0))
            .fold(0u64, u64::saturating_add))
    }

    /// Long-polls `waitanyinvoice {lastpay_index, timeout: LONG_POLL_S}` and sends the
    /// `payment_hash` of every invoice it returns with status `paid`.
    ///
    /// Where it starts: on this client's first call, after the node's current highest
    /// `pay_index` (found with `waitanyinvoice` probes with `timeout: 0`), so invoices paid
    /// before the stream started are not replayed (polling covers them); on later calls, after
    /// the last `pay_index` this client saw, so nothing paid between reconnects is missed.
    /// Returns `Ok(())` when `settled` is closed.
    async fn follow_settlements(
        &self,
        settled: mpsc::Sender<PaymentHash>,
    ) -> Result<(), BackendError> {
        let mut last = self.last_pay_index.load(Ordering::Relaxed);
        if last == 0 {
            let Some(highest) = unless_closed(&settled, self.highest_pay_index()).await else {
                return Ok(());
            };
            last = highest?;
            self.last_pay_index.fetch_max(last, Ordering::Relaxed);
        }
        loop {
            let params = serde_json::json!({ "lastpay_index": last, "timeout": LONG_POLL_S });
            let wait = Some(Duration::from_secs(LONG_POLL_S) + CALL_TIMEOUT);
            let Some(answer) = unless_closed(
                &settled,
                self.call::<ListedInvoice>("waitanyinvoice", params, wait),
            )
            .await
            else {
                return Ok(());
            };
            let invoice = match answer {
                Ok(invoice) => invoice,
                Err(CallError::Rpc { code, .. }) if code == WAIT_TIMED_OUT => continue,
                Err(error) => return Err(error.into()),
            };
            let Some(index) = invoice.pay_index.filter(|&index| index > last) else {
                return Err(BackendError::Decode {
                    backend: BACKEND,
                    message: "waitanyinvoice answered without a newer pay_index".to_owned(),
                });
            };
            last = index;
            self.last_pay_index.fetch_max(last, Ordering::Relaxed);
            if invoice.status == "paid" {
                let hash = parse_hash(&invoice.payment_hash)?;
                if settled.send(hash).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
