//! A real LNbits (PyPI `lnbits==1.6.2`, FakeWallet backend, SQLite) for the Lightning tests,
//! started by `scripts/lnbits` (which the README's test command installs): two wallets, the
//! merchant's (farthing's backend) and a funded customer's, and the LNbits calls a customer's
//! wallet makes (pay a BOLT11, pay an LNURL-pay link, claim an LNURL-withdraw link).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

/// One LNbits wallet's keys.
#[derive(Clone, Debug)]
pub struct Wallet {
    /// The invoice/read key.
    pub invoice_key: String,
    /// The admin key.
    pub admin_key: String,
}

/// A running LNbits; stopped on drop.
pub struct Lnbits {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port.
    pub port: u16,
    /// farthing's wallet.
    pub merchant: Wallet,
    /// The payer's wallet (funded).
    pub customer: Wallet,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lnbits")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn wallet(value: &Value) -> Wallet {
    let field = |name: &str| {
        value[name]
            .as_str()
            .unwrap_or_else(|| panic!("scripts/lnbits printed no {name}: {value}"))
            .to_owned()
    };
    Wallet {
        invoice_key: field("invoice_key"),
        admin_key: field("admin_key"),
    }
}

fn run_start(dir: &std::path::Path, port: u16, verb: &str) -> Value {
    let output = Command::new("bash")
        .arg(script())
        .arg(verb)
        .arg(dir)
        .arg(port.to_string())
        .output()
        .expect("scripts/lnbits runs");
    assert!(
        output.status.success(),
        "scripts/lnbits start failed (run the README's test command, which installs LNbits):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("scripts/lnbits printed no JSON ({error}): {stdout}"))
}

impl Lnbits {
    /// Starts a fresh LNbits on a free port (blocking: call from `spawn_blocking` or before the
    /// runtime is busy).
    pub fn start() -> Lnbits {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let info = run_start(dir.path(), port, "start");
        Lnbits {
            url: info["url"].as_str().expect("url").to_owned(),
            port,
            merchant: wallet(&info["merchant"]),
            customer: wallet(&info["customer"]),
            dir,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    /// Stops LNbits (its data stays in its folder).
    pub fn stop(&self) {
        let status = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status()
            .expect("scripts/lnbits runs");
        assert!(status.success(), "scripts/lnbits stop failed");
    }

    /// Starts it again on the same port and data (the same wallets and keys).
    pub fn restart(&self) {
        let info = run_start(self.dir.path(), self.port, "resume");
        assert_eq!(
            info["merchant"]["invoice_key"].as_str(),
            Some(self.merchant.invoice_key.as_str()),
            "a restart keeps the wallets"
        );
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("LNbits answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The customer wallet pays a BOLT11: `(HTTP status, LNbits' answer)`.
    pub async fn pay(&self, bolt11: &str) -> (u16, Value) {
        self.call(
            self.client
                .post(format!("{}/api/v1/payments", self.url))
                .header("X-Api-Key", &self.customer.admin_key)
                .header("content-type", "application/json")
                .body(json!({"out": true, "bolt11": bolt11}).to_string()),
        )
        .await
    }

    /// A wallet's balance, millisatoshis.
    pub async fn balance_msat(&self, wallet: &Wallet) -> i64 {
        let (status, body) = self
            .call(
                self.client
                    .get(format!("{}/api/v1/wallet", self.url))
                    .header("X-Api-Key", &wallet.invoice_key),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["balance"].as_i64().expect("balance")
    }

    /// A BOLT11 of `sats` made by the customer wallet (for payouts to it).
    pub async fn customer_invoice(&self, sats: u64, memo: &str) -> (String, String) {
        let (status, body) = self
            .call(
                self.client
                    .post(format!("{}/api/v1/payments", self.url))
                    .header("X-Api-Key", &self.customer.invoice_key)
                    .header("content-type", "application/json")
                    .body(
                        json!({"out": false, "amount": sats, "unit": "sat", "memo": memo})
                            .to_string(),
                    ),
            )
            .await;
        assert!(status == 201 || status == 200, "{status} {body}");
        (
            body["bolt11"].as_str().expect("bolt11").to_owned(),
            body["payment_hash"].as_str().expect("hash").to_owned(),
        )
    }

    /// Whether a payment of the customer wallet (by hash) is paid.
    pub async fn customer_paid(&self, payment_hash: &str) -> bool {
        let (_, body) = self
            .call(
                self.client
                    .get(format!("{}/api/v1/payments/{payment_hash}", self.url))
                    .header("X-Api-Key", &self.customer.invoice_key),
            )
            .await;
        body["paid"].as_bool().unwrap_or(false)
    }

    /// The customer wallet pays an LNURL-pay link (`POST /api/v1/payments/lnurl`): LNbits
    /// fetches the pay request, calls its callback with the amount and pays the BOLT11.
    pub async fn pay_lnurl(
        &self,
        lnurl: &str,
        amount_msat: u64,
        comment: Option<&str>,
    ) -> (u16, Value) {
        let mut body = json!({"lnurl": lnurl, "amount": amount_msat});
        if let Some(comment) = comment {
            body["comment"] = json!(comment);
        }
        self.call(
            self.client
                .post(format!("{}/api/v1/payments/lnurl", self.url))
                .header("X-Api-Key", &self.customer.admin_key)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// The customer wallet claims an LNURL-withdraw link as LNbits' own UI does: scan it, then
    /// make an invoice of `sats` with the scanned request, which makes LNbits call the link's
    /// callback with it. Returns the scan and the claim answers.
    pub async fn claim_withdraw(&self, lnurl: &str, sats: u64) -> (Value, (u16, Value)) {
        let (status, scanned) = self
            .call(
                self.client
                    .get(format!("{}/api/v1/lnurlscan/{lnurl}", self.url))
                    .header("X-Api-Key", &self.customer.invoice_key),
            )
            .await;
        assert_eq!(status, 200, "lnurlscan: {scanned}");
        let claim =
            json!({"out": false, "amount": sats, "memo": "withdraw", "lnurl_withdraw": scanned});
        let claimed = self
            .call(
                self.client
                    .post(format!("{}/api/v1/payments", self.url))
                    .header("X-Api-Key", &self.customer.invoice_key)
                    .header("content-type", "application/json")
                    .body(claim.to_string()),
            )
            .await;
        (scanned, claimed)
    }
}

impl Drop for Lnbits {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
