//! A client of the toncenter API v3 indexer: the transactions of an account after a logical
//! time (ascending, bounded pages), and the get-method and jetton-wallet lookups the rail's
//! set-up checks. Only what the rail reads is modelled; unknown fields are ignored.
//!
//! `/api/v3/transactions` returns finalized transactions only (in a masterchain block), so a
//! transaction seen here is final.

use std::time::Duration;

use serde::Deserialize;

use crate::body;
use crate::Address;

/// Mainnet's public endpoint.
pub const MAINNET_URL: &str = "https://toncenter.com/api/v3";
/// Testnet's public endpoint.
pub const TESTNET_URL: &str = "https://testnet.toncenter.com/api/v3";

/// The largest page the rail asks for.
pub const MAX_PAGE: u32 = 256;

/// A page of `/api/v3/transactions`.
#[derive(Clone, Debug, Deserialize)]
pub struct TransactionsPage {
    /// The transactions.
    pub transactions: Vec<Transaction>,
}

/// A transaction as toncenter v3 shows it.
#[derive(Clone, Debug, Deserialize)]
pub struct Transaction {
    /// The account, raw upper-case.
    pub account: String,
    /// The transaction hash, standard base64.
    pub hash: String,
    /// Logical time, as a decimal string.
    pub lt: String,
    /// Unix seconds.
    pub now: u64,
    /// The masterchain block that includes it.
    #[serde(default)]
    pub mc_block_seqno: Option<u64>,
    /// The phases.
    pub description: Description,
    /// The inbound message (`None` for a tick-tock).
    #[serde(default)]
    pub in_msg: Option<Message>,
    /// The messages it sent.
    #[serde(default)]
    pub out_msgs: Vec<Message>,
}

impl Transaction {
    /// The logical time as a number.
    pub fn lt(&self) -> Option<u64> {
        self.lt.parse().ok()
    }
}

/// The phases of a transaction.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Description {
    /// Whether the compute or action phase failed (or was skipped).
    #[serde(default)]
    pub aborted: bool,
    /// The credit phase (an internal message's value arriving).
    #[serde(default)]
    pub credit_ph: Option<CreditPhase>,
    /// The compute phase.
    #[serde(default)]
    pub compute_ph: Option<ComputePhase>,
    /// The action phase.
    #[serde(default)]
    pub action: Option<ActionPhase>,
    /// The bounce phase: present when the message's value went back to its sender.
    #[serde(default)]
    pub bounce: Option<serde_json::Value>,
}

/// The credit phase.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CreditPhase {
    /// Nanoton credited, as a decimal string.
    #[serde(default)]
    pub credit: Option<String>,
}

/// The compute phase.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ComputePhase {
    /// Skipped (then `reason` says why: `no_state`, `no_gas`…).
    #[serde(default)]
    pub skipped: bool,
    /// Why it was skipped.
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether the code ran to success.
    #[serde(default)]
    pub success: Option<bool>,
}

/// The action phase.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ActionPhase {
    /// Whether every action was done.
    #[serde(default)]
    pub success: Option<bool>,
}

/// A message.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Message {
    /// The message hash.
    #[serde(default)]
    pub hash: Option<String>,
    /// The sender (`None` for an external message).
    #[serde(default)]
    pub source: Option<String>,
    /// The receiver.
    #[serde(default)]
    pub destination: Option<String>,
    /// Nanoton, as a decimal string.
    #[serde(default)]
    pub value: Option<String>,
    /// Whether this is a bounce of an earlier message.
    #[serde(default)]
    pub bounced: Option<bool>,
    /// The body.
    #[serde(default)]
    pub message_content: Option<Content>,
}

/// A message body.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Content {
    /// The body cell's hash, standard base64.
    #[serde(default)]
    pub hash: Option<String>,
    /// The body as a base64 bag of cells.
    #[serde(default)]
    pub body: Option<String>,
}

/// What went wrong talking to the indexer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToncenterError {
    /// 429: over the rate limit; wait.
    #[error("the indexer says the rate limit is exceeded (429)")]
    RateLimited,
    /// 5xx or no answer: retry later.
    #[error("the indexer is unavailable: {0}")]
    Unavailable(String),
    /// 401/403: the key is wrong or for another network.
    #[error("the indexer refused the API key ({0}): check api_key and the network")]
    Unauthorized(u16),
    /// Another 4xx, or an answer the rail cannot read.
    #[error("the indexer answered {0}")]
    Invalid(String),
}

impl ToncenterError {
    /// Whether waiting and asking again may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ToncenterError::RateLimited | ToncenterError::Unavailable(_)
        )
    }
}

/// A toncenter v3 client.
#[derive(Clone)]
pub struct Toncenter {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl std::fmt::Debug for Toncenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toncenter")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .finish()
    }
}

#[derive(Deserialize)]
struct GetMethodAnswer {
    exit_code: i64,
    #[serde(default)]
    stack: Vec<StackEntry>,
}

#[derive(Deserialize)]
struct StackEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value: serde_json::Value,
}

#[derive(Deserialize)]
struct JettonWallets {
    #[serde(default)]
    jetton_wallets: Vec<JettonWallet>,
}

#[derive(Deserialize)]
struct JettonWallet {
    address: String,
}

impl Toncenter {
    /// A client of `base` (e.g. [`MAINNET_URL`]), with the API key if there is one (sent as
    /// `X-API-Key`). Each call gives up after `timeout`.
    pub fn new(base: &str, api_key: Option<String>, timeout: Duration) -> Toncenter {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Toncenter {
            http,
            base: base.trim_end_matches('/').to_owned(),
            api_key,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, ToncenterError> {
        let request = match &self.api_key {
            Some(key) => request.header("X-API-Key", key),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|error| ToncenterError::Unavailable(without_url(error)))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ToncenterError::Unavailable(without_url(error)))?;
        match status {
            200..=299 => Ok(bytes.to_vec()),
            429 => Err(ToncenterError::RateLimited),
            401 | 403 => Err(ToncenterError::Unauthorized(status)),
            500..=599 => Err(ToncenterError::Unavailable(format!("HTTP {status}"))),
            _ => Err(ToncenterError::Invalid(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))),
        }
    }

    /// The account's transactions with logical time at least `start_lt`, oldest first, at most
    /// `limit` (≤ [`MAX_PAGE`]).
    pub async fn transactions(
        &self,
        account: &Address,
        start_lt: u64,
        limit: u32,
    ) -> Result<Vec<Transaction>, ToncenterError> {
        let url = format!("{}/transactions", self.base);
        let query = [
            ("account", account.raw()),
            ("start_lt", start_lt.to_string()),
            ("sort", "asc".to_owned()),
            ("limit", limit.clamp(1, MAX_PAGE).to_string()),
            ("offset", "0".to_owned()),
        ];
        let bytes = self.send(self.http.get(url).query(&query)).await?;
        let page: TransactionsPage = serde_json::from_slice(&bytes)
            .map_err(|error| ToncenterError::Invalid(format!("transactions page: {error}")))?;
        Ok(page.transactions)
    }

    /// `master.get_wallet_address(owner)`: the owner's jetton wallet, by the master's own code.
    pub async fn get_wallet_address(
        &self,
        master: &Address,
        owner: &Address,
    ) -> Result<Address, ToncenterError> {
        let argument = body::address_slice_boc(owner)
            .map_err(|error| ToncenterError::Invalid(error.to_string()))?;
        let request = serde_json::json!({
            "address": master.raw(),
            "method": "get_wallet_address",
            "stack": [{"type": "slice", "value": argument}],
        });
        let url = format!("{}/runGetMethod", self.base);
        let bytes = self.send(self.http.post(url).json(&request)).await?;
        let answer: GetMethodAnswer = serde_json::from_slice(&bytes)
            .map_err(|error| ToncenterError::Invalid(format!("runGetMethod: {error}")))?;
        if answer.exit_code != 0 {
            return Err(ToncenterError::Invalid(format!(
                "get_wallet_address exited with {} (is {} a jetton master?)",
                answer.exit_code,
                master.raw()
            )));
        }
        let entry = answer
            .stack
            .first()
            .filter(|entry| matches!(entry.kind.as_str(), "slice" | "cell"))
            .and_then(|entry| entry.value.as_str())
            .ok_or_else(|| ToncenterError::Invalid("get_wallet_address: no slice".to_owned()))?;
        body::read_address_slice(entry)
            .map_err(|error| ToncenterError::Invalid(format!("get_wallet_address: {error}")))
    }

    /// The jetton wallet the indexer knows for `owner` and `master` (`None` before the wallet
    /// is deployed, which happens with its first incoming transfer).
    pub async fn jetton_wallet(
        &self,
        owner: &Address,
        master: &Address,
    ) -> Result<Option<Address>, ToncenterError> {
        let url = format!("{}/jetton/wallets", self.base);
        let query = [
            ("owner_address", owner.raw()),
            ("jetton_address", master.raw()),
            ("limit", "1".to_owned()),
        ];
        let bytes = self.send(self.http.get(url).query(&query)).await?;
        let wallets: JettonWallets = serde_json::from_slice(&bytes)
            .map_err(|error| ToncenterError::Invalid(format!("jetton/wallets: {error}")))?;
        wallets
            .jetton_wallets
            .first()
            .map(|wallet| {
                Address::parse(&wallet.address)
                    .map(|parsed| parsed.address)
                    .map_err(|error| ToncenterError::Invalid(format!("jetton/wallets: {error}")))
            })
            .transpose()
    }
}

/// A reqwest error's text without its URL (the URL carries the account and query).
fn without_url(error: reqwest::Error) -> String {
    let timeout = error.is_timeout();
    let text = error.without_url().to_string();
    if timeout {
        format!("timed out ({text})")
    } else {
        text
    }
}
