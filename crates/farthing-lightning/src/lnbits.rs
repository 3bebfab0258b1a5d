//! The LNbits backend: one LNbits wallet, reached by its REST API (checked against LNbits
//! 1.6.2's source, `lnbits/core/views/payment_api.py`, `wallet_api.py`, `websocket_api.py`, and
//! against a running LNbits in the tests).
//!
//! - create: `POST /api/v1/payments` with the invoice key, `{"out": false, "amount": sats,
//!   "unit": "sat", "memo" | "unhashed_description" (hex), "expiry": seconds}`;
//! - state: `GET /api/v1/payments/{payment_hash}` with the invoice key →
//!   `{"paid": bool, "status": "pending" | "success" | "failed", "preimage", "details": Payment}`
//!   (`details.amount` in millisatoshis);
//! - pay: `POST /api/v1/payments` with the admin key, `{"out": true, "bolt11": …}`;
//! - balance: `GET /api/v1/wallet` → `{"balance": msat, …}`;
//! - settlements: the websocket `/api/v1/ws/{invoice_key}`, on which LNbits sends
//!   `{"wallet_balance": …, "payment": Payment}` for every payment of the wallet.
//!
//! LNbits takes amounts in whole satoshis (`unit: "sat"`), so an amount that is not a whole
//! number of satoshis is refused before any call.

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::backend::{
    http, BackendError, CreateInvoice, CreatedInvoice, Description, InvoiceState, LightningBackend,
    PaymentHash, PaymentOutcome,
};

const NAME: &str = "lnbits";

/// An LNbits wallet.
#[derive(Clone)]
pub struct Lnbits {
    base: String,
    invoice_key: String,
    admin_key: Option<String>,
    client: reqwest::Client,
    /// For payments: LNbits answers `POST /api/v1/payments` (out) only once the payment is
    /// done or given up, which may take longer than the usual call limit.
    pay_client: reqwest::Client,
}

impl std::fmt::Debug for Lnbits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lnbits")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The Payment object of LNbits (only what farthing reads).
#[derive(Deserialize)]
struct Payment {
    payment_hash: String,
    /// Millisatoshis; negative for outgoing payments.
    #[serde(default)]
    amount: i64,
    /// Millisatoshis; LNbits stores fees of outgoing payments as negative numbers.
    #[serde(default)]
    fee: i64,
    #[serde(default)]
    status: String,
    #[serde(default)]
    preimage: Option<String>,
    #[serde(default)]
    bolt11: Option<String>,
    #[serde(default)]
    payment_request: Option<String>,
    #[serde(default)]
    time: Option<Value>,
}

#[derive(Deserialize)]
struct Status {
    paid: bool,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    preimage: Option<String>,
    #[serde(default)]
    details: Option<Payment>,
}

#[derive(Deserialize)]
struct Wallet {
    balance: i64,
}

#[derive(Deserialize)]
struct Notification {
    payment: Payment,
}

fn hash_of(text: &str) -> Result<PaymentHash, BackendError> {
    PaymentHash::from_hex(text).ok_or_else(|| BackendError::Decode {
        backend: NAME,
        message: format!("payment_hash {text:?} is not 64 hex characters"),
    })
}

fn key_ok(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Unix seconds of LNbits' `time` (an ISO 8601 date-time in 1.x, a number in 0.x).
fn unix_s(time: &Option<Value>) -> Option<u64> {
    match time.as_ref()? {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => parse_iso_s(text),
        _ => None,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac][Z|+00:00]` (what pydantic writes for UTC) to Unix
/// seconds; `None` for anything else (the time is informative only).
fn parse_iso_s(text: &str) -> Option<u64> {
    let date = text.get(0..10)?;
    let time = text.get(11..19)?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from 1970-01-01 to y-m-day (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3_600 + mm * 60 + ss).ok()
}

impl Lnbits {
    /// A client of the LNbits wallet at `url` with its invoice key, and its admin key when it
    /// should also pay (refunds and payouts). No network I/O.
    pub fn new(
        url: &str,
        invoice_key: &str,
        admin_key: Option<&str>,
    ) -> Result<Lnbits, BackendError> {
        let base = http::base_url(NAME, url)?;
        if !key_ok(invoice_key) || admin_key.is_some_and(|key| !key_ok(key)) {
            return Err(BackendError::Config {
                backend: NAME,
                message: "invoice_key and admin_key must be the wallet's API keys (letters and \
                          digits, as LNbits shows them under \"API info\")"
                    .to_owned(),
            });
        }
        let pay_client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|error| BackendError::Config {
                backend: NAME,
                message: format!("cannot build an HTTP client: {error}"),
            })?;
        Ok(Lnbits {
            base,
            invoice_key: invoice_key.to_owned(),
            admin_key: admin_key.map(str::to_owned),
            client: http::client(NAME, None)?,
            pay_client,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, BackendError> {
        let response = request
            .send()
            .await
            .map_err(|error| http::transport(NAME, error))?;
        let body = http::read(NAME, response).await?;
        http::json(NAME, &body)
    }

    /// The websocket URL of the wallet's notifications (contains the invoice key: never log).
    fn websocket_url(&self) -> String {
        let base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{base}/api/v1/ws/{}", self.invoice_key)
    }
}

impl LightningBackend for Lnbits {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn create_invoice(
        &self,
        request: &CreateInvoice,
    ) -> Result<CreatedInvoice, BackendError> {
        if request.amount_msat == 0 || !request.amount_msat.is_multiple_of(1000) {
            return Err(BackendError::Config {
                backend: NAME,
                message: format!(
                    "LNbits invoices are in whole satoshis; {} msat is not",
                    request.amount_msat
                ),
            });
        }
        let mut body = json!({
            "out": false,
            "amount": request.amount_msat / 1000,
            "unit": "sat",
            "expiry": request.expiry_s,
            "extra": {"farthing_label": request.label},
        });
        match &request.description {
            Description::Memo(memo) => body["memo"] = json!(memo),
            Description::Hashed(text) => {
                let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
                body["unhashed_description"] = json!(hex);
            }
        }
        let payment: Payment = self
            .call(
                self.client
                    .post(format!("{}/api/v1/payments", self.base))
                    .header("X-Api-Key", &self.invoice_key)
                    .json(&body),
            )
            .await?;
        let bolt11 =
            payment
                .bolt11
                .or(payment.payment_request)
                .ok_or_else(|| BackendError::Decode {
                    backend: NAME,
                    message: "the new payment has no bolt11".to_owned(),
                })?;
        Ok(CreatedInvoice {
            bolt11,
            payment_hash: hash_of(&payment.payment_hash)?,
        })
    }

    async fn invoice_state(
        &self,
        payment_hash: &PaymentHash,
    ) -> Result<InvoiceState, BackendError> {
        let status: Status = self
            .call(
                self.client
                    .get(format!(
                        "{}/api/v1/payments/{}",
                        self.base,
                        payment_hash.to_hex()
                    ))
                    .header("X-Api-Key", &self.invoice_key),
            )
            .await?;
        if status.paid {
            let details = status.details.ok_or_else(|| BackendError::Decode {
                backend: NAME,
                message: "a paid payment without details: is invoice_key this wallet's key?"
                    .to_owned(),
            })?;
            let amount = u64::try_from(details.amount).map_err(|_| BackendError::Decode {
                backend: NAME,
                message: format!(
                    "payment {payment_hash} is outgoing ({} msat), not an invoice of this wallet",
                    details.amount
                ),
            })?;
            return Ok(InvoiceState::Settled {
                amount_received_msat: amount,
                settled_at_s: unix_s(&details.time),
                preimage: status.preimage.or(details.preimage),
            });
        }
        let failed = status.status.as_deref() == Some("failed")
            || status
                .details
                .as_ref()
                .is_some_and(|details| details.status == "failed");
        Ok(if failed {
            InvoiceState::Canceled
        } else {
            InvoiceState::Open
        })
    }

    async fn pay_invoice(
        &self,
        bolt11: &str,
        _max_fee_msat: u64,
    ) -> Result<PaymentOutcome, BackendError> {
        let Some(admin_key) = &self.admin_key else {
            return Err(BackendError::Config {
                backend: NAME,
                message: "paying needs the wallet's admin_key (PUT /v1/rails/lightning)".to_owned(),
            });
        };
        // LNbits has no per-payment fee limit in its API; its own `lightning_fee_reserve`
        // settings bound the fee.
        let result: Result<Payment, BackendError> = self
            .call(
                self.pay_client
                    .post(format!("{}/api/v1/payments", self.base))
                    .header("X-Api-Key", admin_key)
                    .json(&json!({"out": true, "bolt11": bolt11})),
            )
            .await;
        match result {
            Ok(payment) => {
                let payment_hash = hash_of(&payment.payment_hash)?;
                Ok(match payment.status.as_str() {
                    "success" => PaymentOutcome::Succeeded {
                        payment_hash,
                        preimage: payment.preimage,
                        fee_msat: payment.fee.unsigned_abs(),
                    },
                    "failed" => PaymentOutcome::Failed {
                        reason: "LNbits reports the payment failed".to_owned(),
                    },
                    _ => PaymentOutcome::Pending { payment_hash },
                })
            }
            // LNbits answers 520 (or 400) with {"detail": …} when a payment fails before any
            // money moved: expired, already paid, insufficient balance, no route.
            Err(BackendError::Rejected {
                status: 400 | 520,
                message,
                ..
            }) => Ok(PaymentOutcome::Failed { reason: message }),
            Err(error) => Err(error),
        }
    }

    async fn balance_msat(&self) -> Result<u64, BackendError> {
        // LNbits answers an unknown key with 404 "Wallet not found" (and a malformed one with
        // 401): both mean the key is not this LNbits' wallet key.
        let wallet: Wallet = self
            .call(
                self.client
                    .get(format!("{}/api/v1/wallet", self.base))
                    .header("X-Api-Key", &self.invoice_key),
            )
            .await
            .map_err(|error| match error {
                BackendError::NotFound { backend } => BackendError::Unauthorized {
                    backend,
                    status: 404,
                },
                other => other,
            })?;
        Ok(u64::try_from(wallet.balance).unwrap_or(0))
    }

    async fn follow_settlements(
        &self,
        settled: mpsc::Sender<PaymentHash>,
    ) -> Result<(), BackendError> {
        let (mut socket, _) = tokio::time::timeout(
            crate::backend::CALL_TIMEOUT,
            tokio_tungstenite::connect_async(self.websocket_url()),
        )
        .await
        .map_err(|_| BackendError::Unreachable {
            backend: NAME,
            message: "websocket: timed out connecting".to_owned(),
        })?
        .map_err(|error| BackendError::Unreachable {
            backend: NAME,
            // tungstenite's errors do not contain the URL.
            message: format!("websocket: {error}"),
        })?;
        while let Some(message) = socket.next().await {
            let message = message.map_err(|error| BackendError::Unreachable {
                backend: NAME,
                message: format!("websocket: {error}"),
            })?;
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => break,
                _ => continue,
            };
            let Ok(notification) = serde_json::from_str::<Notification>(text.as_str()) else {
                tracing::debug!("LNbits websocket message that is not a payment notification");
                continue;
            };
            let payment = notification.payment;
            if payment.amount <= 0 || payment.status != "success" {
                continue;
            }
            let Some(hash) = PaymentHash::from_hex(&payment.payment_hash) else {
                continue;
            };
            if settled.send(hash).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_parse_to_unix_seconds() {
        assert_eq!(parse_iso_s("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso_s("2026-11-21T11:30:05.123456+00:00"),
            Some(1_795_260_605)
        );
        assert_eq!(parse_iso_s("2000-02-29T12:00:00"), Some(951_825_600));
        assert_eq!(parse_iso_s("garbage"), None);
    }

    #[test]
    fn keys_and_urls_are_checked_before_any_call() {
        assert!(Lnbits::new("http://127.0.0.1:5000", "abc123", None).is_ok());
        assert!(Lnbits::new("ftp://x", "abc", None).is_err());
        assert!(Lnbits::new("http://127.0.0.1:5000", "", None).is_err());
        assert!(Lnbits::new("http://127.0.0.1:5000", "a b", None).is_err());
        assert!(Lnbits::new("http://127.0.0.1:5000", "abc", Some("x/y")).is_err());
        let lnbits = Lnbits::new("https://ln.example/", "key", None).expect("valid");
        assert_eq!(lnbits.websocket_url(), "wss://ln.example/api/v1/ws/key");
        assert!(!format!("{lnbits:?}").contains("key\""));
    }
}
