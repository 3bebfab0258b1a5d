//! The TON rail (SPEC RL4): TON and USDT-on-TON paid straight into the merchant's own wallet
//! (farthing holds no keys), watched on chain through a toncenter v3 indexer. [`TonRail`] is
//! its adapter ([`RailAdapter`]).
//!
//! - `PUT /v1/rails/ton` ([`RailAdapter::connect`]) normalises the wallet address (any form,
//!   checksum checked, a testnet-only address refused on mainnet), asks the indexer for the
//!   wallet's transactions (so a bad URL or key fails now, not later), and for each allowed
//!   jetton derives the merchant's jetton wallet with the master's own `get_wallet_address`
//!   and checks it against the indexer's jetton-wallet index before anything is stored.
//! - An invoice in TON or USDT gets a short reference ([`farthing_ton::pay::reference`]) to
//!   write as the comment, a `ton://transfer` link and, for TON, a TON Connect request
//!   ([`RailAdapter::instructions`]).
//! - [`watch`] reads every watched account (the wallet and its jetton wallets) from a persisted
//!   cursor and settles what [`farthing_ton::classify`] calls a payment through the payments
//!   service, keyed by the transaction hash, moving the cursor in the same store job.
//!
//! Architecture invariant: this module knows TON and the indexer; it reaches the ledger only
//! through the service (`farthing_app`), and no other rail.

pub mod assign;
pub mod watch;

pub use assign::{assign, Target};

use std::sync::Arc;
use std::time::Duration;

use farthing_core::invoice::{Invoice, InvoiceAmount, InvoiceStatus};
use farthing_core::{Currency, MerchantId, PublicId, Rail};
use farthing_store::TonWallet;
use farthing_ton::toncenter::{Toncenter, ToncenterError};
use farthing_ton::{Address, Network};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch as signal;

use farthing_app::rail::{Carries, RailAdapter, RailRefund, RailRefunded, RailStatus, Task};
use farthing_app::{App, AppError, Mode};

use crate::config::TonConfig;

/// USDT's master contract on mainnet (Tether's, TEP-74).
pub const USDT_MAINNET_MASTER: &str =
    "0:B113A994B5024A16719F69139328EB759596C38A25F59028B146FECDC3621DFE";

/// How long the indexer may take to answer each check of `PUT /v1/rails/ton` (the client's
/// own timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// A jetton the merchant accepts, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jetton {
    /// The currency it is (`USDT`).
    pub symbol: String,
    /// Its master, raw form.
    pub master: String,
    /// Its decimals.
    pub decimals: u8,
    /// The merchant's jetton wallet of this master, raw form (checked against the chain).
    pub wallet: String,
}

/// Nanoton a jetton transfer carries for gas (the rest comes back as `excesses`).
const JETTON_TRANSFER_GAS: u128 = 50_000_000;

/// A refund's next action: the transfer the merchant sends from their wallet to `payer` — the
/// address, amount and comment, a `ton://` link, and a TON Connect request (for a jetton: a
/// `transfer` to the merchant's own jetton wallet, 0.05 TON for gas, the comment as the forward
/// payload).
fn refund_transfer(
    wallet: &Wallet,
    payer: &Address,
    jetton: Option<&Jetton>,
    amount: u64,
    comment: &str,
) -> Result<serde_json::Value, AppError> {
    let network = wallet.network;
    let stored = |text: &str| {
        Address::parse(text)
            .map(|parsed| parsed.address)
            .map_err(|error| AppError::internal(format!("stored jetton address: {error}")))
    };
    let (link, message) = match jetton {
        None => {
            let (payload, _) = farthing_ton::body::comment_payload(comment)
                .map_err(|error| AppError::internal(format!("refund comment: {error}")))?;
            (
                farthing_ton::pay::transfer_link(
                    payer,
                    network,
                    u128::from(amount),
                    comment,
                    None,
                    None,
                ),
                json!({"address": payer.friendly(false, network), "amount": amount.to_string(), "payload": payload}),
            )
        }
        Some(jetton) => {
            let master = stored(&jetton.master)?;
            let own = stored(&jetton.wallet)?;
            let mut random = [0u8; 8];
            getrandom::fill(&mut random).map_err(AppError::internal)?;
            let payload = farthing_ton::body::jetton_transfer_payload(
                u64::from_le_bytes(random),
                u128::from(amount),
                payer,
                &wallet.address,
                comment,
            )
            .map_err(|error| AppError::internal(format!("refund transfer: {error}")))?;
            (
                farthing_ton::pay::transfer_link(
                    payer,
                    network,
                    u128::from(amount),
                    comment,
                    Some(&master),
                    None,
                ),
                json!({"address": own.friendly(true, network), "amount": JETTON_TRANSFER_GAS.to_string(), "payload": payload}),
            )
        }
    };
    Ok(json!({
        "type": "ton_transfer",
        "ton_transfer": {
            "from": wallet.address.friendly(false, network),
            "to": payer.friendly(false, network),
            "network": network.as_str(),
            "amount_minor": amount,
            "comment": comment,
            "link": link,
            // No valid_until: the merchant may sign it any time until the refund is canceled.
            "ton_connect": {"network": network.ton_connect_id(), "from": wallet.address.raw(), "messages": [message]},
            "note": "Send exactly this from your wallet: the comment is how farthing recognises the refund. Until then the amount is held on your balance.",
        },
    }))
}

/// A jetton in `PUT /v1/rails/ton`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JettonRequest {
    /// The currency it pays: `USDT`.
    pub symbol: String,
    /// The jetton's master contract, any address form.
    pub master: String,
    /// Its decimals (USDT: 6).
    pub decimals: u8,
}

/// The body of `PUT /v1/rails/ton`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectTon {
    /// The merchant's wallet, in any form (raw, bounceable, non-bounceable).
    pub address: String,
    /// `mainnet` or `testnet`.
    pub network: String,
    /// A toncenter v3 base URL (default: toncenter.com's for the network).
    pub api_url: Option<String>,
    /// A toncenter API key (10 requests/s instead of 1); never returned or logged.
    pub api_key: Option<String>,
    /// The jettons accepted. Default on mainnet: USDT (Tether's master); testnet has no
    /// canonical USDT, so none unless given.
    pub jettons: Option<Vec<JettonRequest>>,
}

/// A merchant's stored wallet, read.
#[derive(Clone, Debug)]
pub struct Wallet {
    /// The merchant.
    pub merchant: MerchantId,
    /// The wallet.
    pub address: Address,
    /// Its network.
    pub network: Network,
    /// The indexer.
    pub api_url: String,
    /// The indexer's key.
    pub api_key: Option<String>,
    /// The accepted jettons.
    pub jettons: Vec<Jetton>,
}

impl Wallet {
    /// Reads a stored row.
    pub fn from_row(row: &TonWallet) -> Result<Wallet, AppError> {
        let address = Address::parse(&row.address)
            .map_err(|error| AppError::internal(format!("stored TON address: {error}")))?
            .address;
        let network = Network::parse(&row.network)
            .ok_or_else(|| AppError::internal(format!("stored TON network {:?}", row.network)))?;
        let jettons: Vec<Jetton> = serde_json::from_str(&row.jettons)
            .map_err(|error| AppError::internal(format!("stored TON jettons: {error}")))?;
        Ok(Wallet {
            merchant: row.merchant,
            address,
            network,
            api_url: row.api_url.clone(),
            api_key: row.api_key.clone(),
            jettons,
        })
    }

    /// The jetton paying `currency`, if accepted.
    pub fn jetton(&self, currency: Currency) -> Option<&Jetton> {
        self.jettons
            .iter()
            .find(|jetton| jetton.symbol == currency.code())
    }

    /// The currencies it carries.
    pub fn currencies(&self) -> Vec<Currency> {
        let mut currencies = vec![Currency::TON];
        for jetton in &self.jettons {
            if let Ok(currency) = Currency::parse(&jetton.symbol) {
                currencies.push(currency);
            }
        }
        currencies
    }
}

fn invalid(code: &'static str, message: impl Into<String>, param: &'static str) -> AppError {
    AppError::invalid(code, message).param(param)
}

fn indexer_error(error: &ToncenterError) -> AppError {
    match error {
        ToncenterError::Unauthorized(_) => {
            invalid("invalid_ton_config", format!("api_key: {error}"), "api_key")
        }
        ToncenterError::Invalid(_) => invalid(
            "invalid_ton_config",
            format!("api_url: is it a toncenter v3 base URL (…/api/v3)? {error}"),
            "api_url",
        ),
        _ => AppError::rail_failed(
            "ton_indexer_unavailable",
            format!("the TON indexer could not be used: {error}"),
        ),
    }
}

/// The TON rail's adapter.
#[derive(Clone)]
pub struct TonRail {
    inner: Arc<Inner>,
}

struct Inner {
    config: TonConfig,
    watcher: watch::Watcher,
}

impl TonRail {
    /// The rail with the `[ton]` configuration section.
    pub fn new(config: TonConfig) -> TonRail {
        TonRail {
            inner: Arc::new(Inner {
                config,
                watcher: watch::Watcher::default(),
            }),
        }
    }

    /// The `[ton]` configuration.
    pub fn config(&self) -> &TonConfig {
        &self.inner.config
    }

    /// The watcher's state.
    pub fn watcher(&self) -> &watch::Watcher {
        &self.inner.watcher
    }

    fn client(&self, api_url: &str, api_key: Option<String>) -> Toncenter {
        Toncenter::new(api_url, api_key, CHECK_TIMEOUT)
    }

    /// The TON Connect request that pays a jetton invoice from `payer`'s wallet: a `transfer`
    /// to the payer's own jetton wallet (derived by the master through the merchant's indexer)
    /// of the invoice's amount to the merchant, the reference as the forward payload, 0.05 TON
    /// for gas (the rest comes back to the payer), valid until the invoice expires.
    pub async fn jetton_payment_request(
        &self,
        app: &App,
        mode: Mode,
        invoice: &Invoice,
        payer: &Address,
    ) -> Result<serde_json::Value, AppError> {
        let not_here = |why: &str| AppError::conflict("ton_connect_unavailable", why.to_owned());
        if invoice.status != InvoiceStatus::Open {
            return Err(not_here("this invoice is no longer open"));
        }
        let InvoiceAmount::Fixed(amount) = invoice.amount else {
            return Err(not_here(
                "an invoice without a fixed amount is paid with the address and comment",
            ));
        };
        if !invoice.rails.contains(&Rail::Ton) || invoice.currency == Currency::TON {
            return Err(not_here(
                "this invoice takes no jetton over TON; pay it with the TON request on the page",
            ));
        }
        let (merchant, id) = (invoice.merchant, invoice.id);
        let (row, reference) = app.read(mode, move |reader| {
            Ok((reader.ton_wallet(merchant)?, reader.ton_reference_of(id)?))
        })?;
        let (Some(row), Some(reference)) = (row, reference) else {
            return Err(not_here("this invoice has no TON instructions"));
        };
        let wallet = Wallet::from_row(&row)?;
        let jetton = wallet
            .jetton(invoice.currency)
            .ok_or_else(|| not_here("the merchant's wallet no longer takes this jetton"))?;
        let master = Address::parse(&jetton.master)
            .map_err(|error| AppError::internal(format!("stored jetton master: {error}")))?
            .address;
        let payer_wallet = watch::payer_jetton_wallet(self, mode, &wallet, &master, payer)
            .await
            .map_err(|error| {
                AppError::rail_failed(
                    "ton_indexer_unavailable",
                    format!("the TON indexer could not name the payer's jetton wallet: {error}"),
                )
            })?
            .ok_or_else(|| {
                AppError::unavailable(
                    "the TON indexer is busy; try again in a few seconds, or pay with the address and comment",
                )
            })?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(AppError::internal)?;
        let payload = farthing_ton::body::jetton_transfer_payload(
            u64::from_le_bytes(random),
            u128::from(amount),
            &wallet.address,
            payer,
            &reference,
        )
        .map_err(|error| AppError::internal(format!("jetton transfer: {error}")))?;
        Ok(json!({
            "valid_until": invoice.expires_at_ns / 1_000_000_000,
            "network": wallet.network.ton_connect_id(),
            "from": payer.raw(),
            "messages": [{
                // A contract: bounceable, so a failed transfer comes back.
                "address": payer_wallet.friendly(true, wallet.network),
                "amount": JETTON_TRANSFER_GAS.to_string(),
                "payload": payload,
            }],
        }))
    }

    /// The `rail` object of a configured wallet (no key).
    fn status_of(&self, wallet: &Wallet, mode: Mode) -> RailStatus {
        let health = self.inner.watcher.health(mode, wallet.merchant);
        let accounts: serde_json::Map<String, serde_json::Value> = health
            .accounts
            .iter()
            .map(|(account, seen)| {
                (
                    account.clone(),
                    json!({
                        "last_lt": seen.last_lt.map(|lt| lt.to_string()),
                        "last_hash": seen.last_hash,
                        "last_transaction_at": seen.last_tx_now_s,
                        "lag_s": seen.lag_s,
                    }),
                )
            })
            .collect();
        RailStatus::new(Rail::Ton, mode, health.state)
            .with("health_error", health.error)
            .with("address", wallet.address.friendly(false, wallet.network))
            .with("address_raw", wallet.address.raw())
            .with("network", wallet.network.as_str())
            .with("api_url", &wallet.api_url)
            .with("api_key_set", wallet.api_key.is_some())
            .with(
                "jettons",
                wallet
                    .jettons
                    .iter()
                    .map(|jetton| {
                        json!({
                            "symbol": jetton.symbol,
                            "master": jetton.master,
                            "decimals": jetton.decimals,
                            "wallet": jetton.wallet,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
            .with(
                "watcher",
                json!({ "last_poll_at": health.last_poll_s, "accounts": accounts }),
            )
    }

    async fn check_jetton(
        &self,
        client: &Toncenter,
        owner: &Address,
        network: Network,
        request: JettonRequest,
    ) -> Result<Jetton, AppError> {
        let currency = Currency::parse(&request.symbol).ok();
        if currency != Some(Currency::USDT) {
            return Err(invalid(
                "ton_jetton_unsupported",
                format!(
                    "jettons: farthing carries USDT on TON; {:?} is not a currency it books",
                    request.symbol
                ),
                "jettons",
            ));
        }
        if request.decimals != Currency::USDT.exponent() {
            return Err(invalid(
                "ton_jetton_unsupported",
                format!("jettons: USDT has {} decimals", Currency::USDT.exponent()),
                "jettons",
            ));
        }
        let master = Address::parse(&request.master).map_err(|error| {
            invalid(
                "invalid_ton_address",
                format!("jettons.master: {error}"),
                "jettons",
            )
        })?;
        if network == Network::Mainnet && master.testnet_only == Some(true) {
            return Err(invalid(
                "ton_wrong_network",
                "jettons.master is a testnet-only address, and network is mainnet",
                "jettons",
            ));
        }
        let master = master.address;
        // The client gives up after CHECK_TIMEOUT (a timeout is `Unavailable`, hence 502).
        let derived =
            client
                .get_wallet_address(&master, owner)
                .await
                .map_err(|error| match error {
                    ToncenterError::Invalid(message) => invalid(
                        "ton_jetton_unverified",
                        format!("jettons: the master's get_wallet_address failed: {message}"),
                        "jettons",
                    ),
                    other => indexer_error(&other),
                })?;
        let indexed = client
            .jetton_wallet(owner, &master)
            .await
            .map_err(|error| indexer_error(&error))?;
        if let Some(indexed) = indexed {
            if indexed != derived {
                return Err(invalid(
                    "ton_jetton_unverified",
                    format!(
                        "jettons: the master derives the jetton wallet {} but the indexer lists {}; refusing to watch either",
                        derived.raw(),
                        indexed.raw()
                    ),
                    "jettons",
                ));
            }
        }
        Ok(Jetton {
            symbol: Currency::USDT.code().to_owned(),
            master: master.raw(),
            decimals: request.decimals,
            wallet: derived.raw(),
        })
    }
}

fn taken() -> AppError {
    AppError::conflict(
        "ton_wallet_taken",
        "another merchant on this server already receives payments to this wallet",
    )
    .param("address")
}

impl RailAdapter for TonRail {
    type Config = ConnectTon;

    fn rail(&self) -> Rail {
        Rail::Ton
    }

    fn offer(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<Carries>, AppError> {
        let Some(row) = app.read(mode, move |reader| reader.ton_wallet(merchant))? else {
            return Ok(None);
        };
        let wallet = Wallet::from_row(&row)?;
        Ok(Some(Carries {
            currencies: farthing_app::rail::CurrencySet::Only(wallet.currencies()),
            why_not: if wallet.jetton(Currency::USDT).is_some() {
                "the ton rail takes TON and USDT invoices".to_owned()
            } else {
                "the ton rail takes TON invoices (and USDT once a USDT master is configured)"
                    .to_owned()
            },
        }))
    }

    async fn connect(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        request: ConnectTon,
    ) -> Result<farthing_app::rail::Connected, AppError> {
        let network = Network::parse(&request.network).ok_or_else(|| {
            invalid(
                "invalid_ton_config",
                "network must be \"mainnet\" or \"testnet\"",
                "network",
            )
        })?;
        let parsed = Address::parse(&request.address).map_err(|error| {
            invalid(
                "invalid_ton_address",
                format!("address: {error}"),
                "address",
            )
        })?;
        if network == Network::Mainnet && parsed.testnet_only == Some(true) {
            return Err(invalid(
                "ton_wrong_network",
                "address is a testnet-only address (kQ…/0Q…), and network is mainnet",
                "address",
            ));
        }
        let address = parsed.address;
        let api_url = request.api_url.clone().unwrap_or_else(|| match network {
            Network::Mainnet => farthing_ton::toncenter::MAINNET_URL.to_owned(),
            Network::Testnet => farthing_ton::toncenter::TESTNET_URL.to_owned(),
        });
        if let Err(message) =
            crate::net::check_url(&api_url, self.config().allow_private_indexers).await
        {
            return Err(invalid(
                "invalid_ton_config",
                format!(
                    "api_url: {message} (FARTHING_ALLOW_PRIVATE_INDEXERS=1 for a TON indexer of the operator's own)"
                ),
                "api_url",
            ));
        }
        let api_key = request.api_key.filter(|key| !key.trim().is_empty());
        if api_key
            .as_ref()
            .is_some_and(|key| key.len() > 256 || key.chars().any(char::is_control))
        {
            return Err(invalid(
                "invalid_ton_config",
                "api_key is not a toncenter key",
                "api_key",
            ));
        }
        let client = self.client(&api_url, api_key.clone());
        // The indexer answers for this wallet (URL reachable, key valid for this network).
        client
            .transactions(&address, 0, 1)
            .await
            .map_err(|error| indexer_error(&error))?;
        let requested = match request.jettons {
            Some(jettons) => jettons,
            None if network == Network::Mainnet => vec![JettonRequest {
                symbol: "USDT".to_owned(),
                master: USDT_MAINNET_MASTER.to_owned(),
                decimals: 6,
            }],
            None => Vec::new(),
        };
        if requested.len() > 1 {
            return Err(invalid(
                "ton_jetton_unsupported",
                "jettons: one jetton (USDT) at most",
                "jettons",
            ));
        }
        let mut jettons = Vec::new();
        for jetton in requested {
            jettons.push(
                self.check_jetton(&client, &address, network, jetton)
                    .await?,
            );
        }
        let raw = address.raw();
        let holder = {
            let raw = raw.clone();
            app.read(mode, move |reader| {
                Ok(reader
                    .ton_wallets()?
                    .into_iter()
                    .find(|wallet| wallet.address == raw))
            })?
        };
        if holder.is_some_and(|wallet| wallet.merchant != merchant) {
            return Err(taken());
        }
        let now = app.now_ns();
        let row = TonWallet {
            merchant,
            address: raw,
            network: network.as_str().to_owned(),
            api_url,
            api_key,
            jettons: serde_json::to_string(&jettons).map_err(AppError::internal)?,
            created_at_ns: now,
            updated_at_ns: now,
        };
        let wallet = Wallet::from_row(&row)?;
        let mut status = self.status_of(&wallet, mode);
        status.health = "healthy";
        let rail = self.clone();
        Ok(farthing_app::rail::Connected {
            status,
            store: Box::new(move |tx| {
                if tx
                    .ton_wallet_by_address(&row.address)?
                    .is_some_and(|wallet| wallet.merchant != row.merchant)
                {
                    return Err(taken());
                }
                tx.upsert_ton_wallet(&row)?;
                Ok(())
            }),
            after_commit: Some(Box::new(move || rail.watcher().wake())),
        })
    }

    async fn status(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<RailStatus>, AppError> {
        let Some(row) = app.read(mode, move |reader| reader.ton_wallet(merchant))? else {
            return Ok(None);
        };
        Ok(Some(self.status_of(&Wallet::from_row(&row)?, mode)))
    }

    async fn instructions(
        &self,
        app: &App,
        mode: Mode,
        invoice: &Invoice,
    ) -> Result<Option<String>, AppError> {
        if invoice.status != InvoiceStatus::Open || !invoice.rails.contains(&Rail::Ton) {
            return Ok(None);
        }
        let merchant = invoice.merchant;
        let Some(row) = app.read(mode, move |reader| reader.ton_wallet(merchant))? else {
            return Ok(None);
        };
        let wallet = Wallet::from_row(&row)?;
        let jetton = match invoice.currency {
            currency if currency == Currency::TON => None,
            currency => match wallet.jetton(currency) {
                Some(jetton) => Some(jetton.clone()),
                None => return Ok(None),
            },
        };
        let reference = watch::reference_for(app, mode, merchant, invoice.id).await?;
        let amount = match invoice.amount {
            InvoiceAmount::Fixed(amount) => Some(amount),
            InvoiceAmount::Open { .. } => None,
        };
        let expires_s = invoice.expires_at_ns / 1_000_000_000;
        let master = jetton
            .as_ref()
            .map(|jetton| Address::parse(&jetton.master).map(|parsed| parsed.address))
            .transpose()
            .map_err(|error| AppError::internal(format!("stored jetton master: {error}")))?;
        let link = amount.map(|amount| {
            farthing_ton::pay::transfer_link(
                &wallet.address,
                wallet.network,
                u128::from(amount),
                &reference,
                master.as_ref(),
                Some(expires_s),
            )
        });
        // TON Connect for TON: the message goes to the merchant's wallet. For a jetton the
        // message goes to the payer's own jetton wallet, which is known only once the payer's
        // wallet is connected; the link (`jetton=`) lets the wallet build it instead.
        let ton_connect = match (amount, &jetton) {
            (Some(amount), None) => Some(
                farthing_ton::pay::ton_connect_request(
                    &wallet.address,
                    wallet.network,
                    u128::from(amount),
                    &reference,
                    expires_s,
                )
                .map_err(|error| AppError::internal(format!("TON Connect payload: {error}")))?,
            ),
            _ => None,
        };
        Ok(Some(
            json!({
                "address": wallet.address.friendly(false, wallet.network),
                "network": wallet.network.as_str(),
                "currency": invoice.currency.code(),
                "jetton_master": jetton.as_ref().map(|jetton| master.map_or_else(|| jetton.master.clone(), |m| m.friendly(true, wallet.network))),
                "amount_minor": amount,
                "comment": reference,
                "comment_required": true,
                "link": link,
                "ton_connect": ton_connect,
                "expires_at": expires_s,
                "warning": "Write the comment exactly: it is how this payment finds its invoice. Some exchanges and custodial wallets drop comments; pay from your own wallet.",
            })
            .to_string(),
        ))
    }

    /// farthing holds no TON keys: a refund is prepared for the merchant to send from their own
    /// wallet — to the payer, with a comment of its own — and stays pending (its amount held)
    /// until the watcher sees that transfer leave the wallet.
    async fn refund(
        &self,
        app: &App,
        mode: Mode,
        request: RailRefund,
    ) -> Result<RailRefunded, AppError> {
        let (merchant, invoice_id) = (request.merchant, request.invoice);
        let (invoice, row, payer) = app.read(mode, move |reader| {
            let invoice = reader.invoice(invoice_id)?;
            let payer = match invoice
                .as_ref()
                .and_then(|i| i.payment)
                .and_then(|p| p.customer)
            {
                Some(customer) => reader.customer(customer)?.and_then(|c| c.external_id),
                None => None,
            };
            Ok((invoice, reader.ton_wallet(merchant)?, payer))
        })?;
        let invoice = invoice
            .filter(|invoice| invoice.merchant == merchant)
            .ok_or_else(|| AppError::not_found("invoice", invoice_id.encode()))?;
        let row = row.ok_or_else(|| {
            AppError::invalid(
                "rail_not_configured",
                "no TON wallet is connected (PUT /v1/rails/ton), so there is no wallet to refund from",
            )
        })?;
        let wallet = Wallet::from_row(&row)?;
        // The payer is the customer `ton:<address>` the watcher made from the payment.
        let Some(payer) = payer
            .as_deref()
            .and_then(|external| external.strip_prefix("ton:"))
            .and_then(|raw| Address::parse(raw).ok())
            .map(|parsed| parsed.address)
        else {
            return Err(AppError::conflict(
                "payer_unknown",
                "the wallet that paid this invoice is not known; refund it to the customer's balance (leave out destination)",
            ));
        };
        let amount = request
            .amount_minor
            .unwrap_or_else(|| invoice.refundable_minor());
        if amount == 0 || amount > invoice.refundable_minor() {
            return Err(AppError::invalid(
                "refund_too_large",
                format!(
                    "at most {} minor units of this invoice are left to refund",
                    invoice.refundable_minor()
                ),
            )
            .param("amount"));
        }
        let jetton = match invoice.currency {
            currency if currency == Currency::TON => None,
            currency => Some(wallet.jetton(currency).cloned().ok_or_else(|| {
                AppError::invalid(
                    "rail_refund_unsupported",
                    format!(
                        "{} is no longer among the wallet's jettons",
                        currency.code()
                    ),
                )
                .param("destination")
            })?),
        };
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(AppError::internal)?;
        let comment = format!(
            "Refund {}",
            farthing_ton::pay::reference(u64::from_le_bytes(random))
        );
        let next_action = refund_transfer(&wallet, &payer, jetton.as_ref(), amount, &comment)?;
        let pending = farthing_store::TonRefund {
            merchant,
            comment,
            refund: request.refund,
            currency: invoice.currency.code().to_owned(),
            amount_minor: amount,
            destination: payer.raw(),
            created_at_ns: 0,
        };
        app.run(mode, move |tx| -> Result<(), AppError> {
            let mut pending = pending;
            pending.created_at_ns = tx.now_ns();
            tx.insert_ton_refund(&pending)?;
            Ok(())
        })
        .await?;
        Ok(RailRefunded {
            amount_minor: amount,
            payer_external_id: None,
            pending: Some(next_action.to_string()),
        })
    }

    fn tasks(&self, app: &App, shutdown: signal::Receiver<bool>) -> Vec<Task> {
        vec![Box::pin(watch::run(self.clone(), app.clone(), shutdown))]
    }
}
