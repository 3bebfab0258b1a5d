//! The one trait every Lightning node backend implements ("create an invoice with amount,
//! memo and expiry; stream or poll its state; pay an invoice; balance"), and `node::Backend`, the
//! enum over the three implementations that the server holds per merchant.
//!
//! Why an enum and not `dyn LightningBackend`: the methods are `async` (return `impl Future`),
//! which keeps the trait free of boxing and of the `async-trait` crate but makes it not
//! object-safe; the set of backends is closed and known here, so a `match` dispatches.
//!
//! Secrets (LNbits keys, LND macaroons, CLN runes) live in [`BackendConfig`]; its `Debug`
//! leaves them out, and no [`BackendError`] ever contains them: request URLs and headers are
//! never copied into an error.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// How long one backend call may take (a `pay_invoice` may take longer; see its docs).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest answer read from a node (a `listinvoices` page is far below it).
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A Lightning payment hash: SHA-256 of the preimage, 32 bytes. Shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentHash(pub [u8; 32]);

impl PaymentHash {
    /// Lowercase hex, 64 characters (LNbits, CLN and the API show it so).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(text: &str) -> Option<PaymentHash> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(PaymentHash(bytes))
    }
}

impl fmt::Display for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentHash({})", self.to_hex())
    }
}

/// What the BOLT11 invoice's description commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Description {
    /// A plain memo, carried in the invoice (`d` field).
    Memo(String),
    /// The invoice commits to SHA-256 of this text (`h` field): the LNURL-pay metadata
    /// (LUD-06), or metadata plus payer data. The backend receives the text and hashes it
    /// (LNbits `unhashed_description`, CLN `deschashonly`) or receives the hash (LND
    /// `description_hash`).
    Hashed(String),
}

/// An invoice to create on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateInvoice {
    /// The amount, in millisatoshis (at least 1).
    pub amount_msat: u64,
    /// The description.
    pub description: Description,
    /// Seconds from now until the invoice can no longer be paid (at least 1). The caller makes
    /// sure this ends no later than farthing's own invoice (SPEC I3) and checks the BOLT11 it
    /// gets back (`bolt11::check`).
    pub expiry_s: u32,
    /// A label unique on the node (Core Lightning requires one; others keep it as a memo
    /// extra or ignore it), e.g. `farthing:inv_…:1`.
    pub label: String,
}

/// An invoice the node made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedInvoice {
    /// The BOLT11 payment request.
    pub bolt11: String,
    /// Its payment hash.
    pub payment_hash: PaymentHash,
}

/// Where an invoice of the node stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvoiceState {
    /// Not paid (yet); may still be paid until it expires.
    Open,
    /// Paid: the node holds the money.
    Settled {
        /// What arrived, in millisatoshis (a payer may pay more than asked; never less).
        amount_received_msat: u64,
        /// When the node settled it, Unix seconds, if the node says.
        settled_at_s: Option<u64>,
        /// The preimage, hex, if the node shows it.
        preimage: Option<String>,
    },
    /// Expired or canceled unpaid: it can no longer be paid.
    Canceled,
}

/// How an outgoing payment went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Paid; the preimage proves it.
    Succeeded {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// The preimage, hex, if the node shows it.
        preimage: Option<String>,
        /// Routing fees paid, millisatoshis.
        fee_msat: u64,
    },
    /// In flight: the node has not finished it. Check again later; never pay again.
    Pending {
        /// The payment hash.
        payment_hash: PaymentHash,
    },
    /// Failed for good: no money left.
    Failed {
        /// The node's reason.
        reason: String,
    },
}

/// Why a backend call failed. Never contains a key, macaroon or rune.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The node could not be reached, or did not answer in time.
    #[error("{backend}: unreachable: {message}")]
    Unreachable {
        /// `lnbits`, `lnd` or `cln`.
        backend: &'static str,
        /// What failed (no URL, no headers).
        message: String,
    },
    /// The node refused the credentials.
    #[error("{backend}: the node refused the credentials ({status})")]
    Unauthorized {
        /// `lnbits`, `lnd` or `cln`.
        backend: &'static str,
        /// The HTTP status.
        status: u16,
    },
    /// The node does not know the invoice or payment.
    #[error("{backend}: not found")]
    NotFound {
        /// `lnbits`, `lnd` or `cln`.
        backend: &'static str,
    },
    /// The node answered with an error.
    #[error("{backend}: refused ({status}): {message}")]
    Rejected {
        /// `lnbits`, `lnd` or `cln`.
        backend: &'static str,
        /// The HTTP status.
        status: u16,
        /// The node's message, cut to 300 characters.
        message: String,
    },
    /// The answer was not what the node's API documents.
    #[error("{backend}: unreadable answer: {message}")]
    Decode {
        /// `lnbits`, `lnd` or `cln`.
        backend: &'static str,
        /// What did not decode.
        message: String,
    },
    /// The configuration cannot work (bad URL, bad certificate, bad macaroon hex, …).
    #[error("{backend}: {message}")]
    Config {
        /// `lnbits`, `lnd` or `cln`.
        backend: &'static str,
        /// What to fix.
        message: String,
    },
}

impl BackendError {
    /// Whether trying again later may succeed (the node was unreachable or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Unreachable { .. } => true,
            BackendError::Rejected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A backend's health, for `GET /v1/rails`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendHealth {
    /// The node answered.
    pub reachable: bool,
    /// Its spendable balance, millisatoshis, when it answered.
    pub balance_msat: Option<u64>,
    /// Why it is unhealthy, when it is.
    pub error: Option<String>,
}

/// What every Lightning node backend can do.
pub trait LightningBackend {
    /// `lnbits`, `lnd` or `cln`.
    fn name(&self) -> &'static str;

    /// Creates an invoice.
    fn create_invoice(
        &self,
        request: &CreateInvoice,
    ) -> impl Future<Output = Result<CreatedInvoice, BackendError>> + Send;

    /// The current state of the node's invoice with this payment hash (the polling path, and
    /// the authority: a stream only says *which* invoice to look at).
    fn invoice_state(
        &self,
        payment_hash: &PaymentHash,
    ) -> impl Future<Output = Result<InvoiceState, BackendError>> + Send;

    /// Pays a BOLT11 invoice, paying at most `max_fee_msat` in routing fees. Waits up to the
    /// backend's own limit; `Pending` means the payment may still complete: never pay the
    /// same invoice again, look it up later.
    fn pay_invoice(
        &self,
        bolt11: &str,
        max_fee_msat: u64,
    ) -> impl Future<Output = Result<PaymentOutcome, BackendError>> + Send;

    /// The node's (or wallet's) spendable balance, millisatoshis.
    fn balance_msat(&self) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// Follows the node's settlement stream (LNbits websocket, LND
    /// `/v1/invoices/subscribe`, CLN `waitanyinvoice`), sending the payment hash of every
    /// invoice the node reports settled, until the stream ends, fails or `settled` is closed.
    /// The caller reconnects with a backoff and polls [`Self::invoice_state`] meanwhile: the
    /// stream only makes settlement fast; polling makes it certain.
    fn follow_settlements(
        &self,
        settled: mpsc::Sender<PaymentHash>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// How a merchant's Lightning backend is reached (`PUT /v1/rails/lightning`). Stored as JSON;
/// `Debug` never shows the secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// An LNbits wallet.
    Lnbits {
        /// The LNbits base URL, e.g. `https://lnbits.example.com`.
        url: String,
        /// The wallet's invoice/read key (`X-Api-Key` for invoices and status).
        invoice_key: String,
        /// The wallet's admin key (`X-Api-Key` for payments); without it, refunds and payouts
        /// over Lightning are off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin_key: Option<String>,
    },
    /// An LND node's REST API.
    Lnd {
        /// The REST base URL, e.g. `https://127.0.0.1:8080`.
        url: String,
        /// The macaroon, hex (`Grpc-Metadata-macaroon`): an invoice macaroon for receiving,
        /// admin to also pay.
        macaroon: String,
        /// LND's `tls.cert` (PEM): the only certificate trusted for this node (pinning).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_cert: Option<String>,
    },
    /// A Core Lightning node's REST API (clnrest).
    Cln {
        /// The clnrest base URL, e.g. `https://127.0.0.1:3010`.
        url: String,
        /// The rune (`Rune` header).
        rune: String,
        /// clnrest's certificate (PEM), when it uses its own: the only one trusted (pinning).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_cert: Option<String>,
    },
}

impl BackendConfig {
    /// `lnbits`, `lnd` or `cln`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Lnbits { .. } => "lnbits",
            BackendConfig::Lnd { .. } => "lnd",
            BackendConfig::Cln { .. } => "cln",
        }
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        match self {
            BackendConfig::Lnbits { url, .. }
            | BackendConfig::Lnd { url, .. }
            | BackendConfig::Cln { url, .. } => url,
        }
    }

    /// Whether this configuration can pay (refunds and payouts over Lightning).
    pub fn can_pay(&self) -> bool {
        match self {
            BackendConfig::Lnbits { admin_key, .. } => admin_key.is_some(),
            BackendConfig::Lnd { .. } | BackendConfig::Cln { .. } => true,
        }
    }
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendConfig")
            .field("backend", &self.name())
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// Shared HTTP plumbing of the backends.
pub(crate) mod http {
    use super::{BackendError, CALL_TIMEOUT, MAX_ANSWER_BYTES};

    /// A client for one node: no redirects, a call timeout, and either the built-in web roots
    /// or only `pinned_pem` (the node's own certificate) as trust anchor.
    pub fn client(
        backend: &'static str,
        pinned_pem: Option<&str>,
    ) -> Result<reqwest::Client, BackendError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(CALL_TIMEOUT);
        if let Some(pem) = pinned_pem {
            let certificate = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|error| {
                BackendError::Config {
                    backend,
                    message: format!("tls_cert is not a PEM certificate: {error}"),
                }
            })?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(certificate);
        }
        builder.build().map_err(|error| BackendError::Config {
            backend,
            message: format!("cannot build an HTTP client: {error}"),
        })
    }

    /// Checks a base URL: `http` or `https`, with a host; returns it without a trailing `/`.
    pub fn base_url(backend: &'static str, url: &str) -> Result<String, BackendError> {
        let parsed = reqwest::Url::parse(url).map_err(|error| BackendError::Config {
            backend,
            message: format!("url is not a URL: {error}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(BackendError::Config {
                backend,
                message: "url must be an http:// or https:// URL with a host".to_owned(),
            });
        }
        Ok(url.trim_end_matches('/').to_owned())
    }

    /// A transport error, without the URL (which may carry nothing secret, but is noise).
    pub fn transport(backend: &'static str, error: reqwest::Error) -> BackendError {
        let what = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else {
            "transport error"
        };
        BackendError::Unreachable {
            backend,
            message: format!("{what}: {}", error.without_url()),
        }
    }

    /// Reads an answer (bounded) and maps HTTP errors; returns the body of a 2xx answer.
    pub async fn read(
        backend: &'static str,
        response: reqwest::Response,
    ) -> Result<Vec<u8>, BackendError> {
        let status = response.status();
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| transport(backend, error))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(BackendError::Decode {
                    backend,
                    message: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        Err(match status.as_u16() {
            401 | 403 => BackendError::Unauthorized {
                backend,
                status: status.as_u16(),
            },
            404 => BackendError::NotFound { backend },
            code => BackendError::Rejected {
                backend,
                status: code,
                message: text,
            },
        })
    }

    /// Decodes JSON.
    pub fn json<T: serde::de::DeserializeOwned>(
        backend: &'static str,
        body: &[u8],
    ) -> Result<T, BackendError> {
        serde_json::from_slice(body).map_err(|error| BackendError::Decode {
            backend,
            message: error.to_string(),
        })
    }
}
