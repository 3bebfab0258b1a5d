//! The Lightning rail (SPEC RL3): the merchants' nodes, the BOLT11 of invoices, and the
//! watcher that settles them. [`LightningRail`] is its adapter ([`RailAdapter`]).
//!
//! - [`Nodes`] holds one client per merchant and mode ([`farthing_lightning::Backend`]), built
//!   from the stored configuration, with its health.
//! - [`attach_bolt11`] makes the BOLT11 of an invoice on the merchant's node, after the invoice
//!   is committed (network I/O never runs inside a store job). Its expiry ends no later than the
//!   invoice's (SPEC I3): the node is asked for one second less than what is left, and the
//!   BOLT11 it returns is parsed and checked (amount, network, expiry) before it is stored.
//! - [`run`] watches every node: the node's settlement stream (LNbits websocket, LND
//!   subscription, CLN `waitanyinvoice`) says *which* invoice to look at, and a polling round
//!   over every watched invoice makes settlement certain when the stream is down and after a
//!   restart (the watched invoices are rows, not memory). An invoice stays watched for
//!   `lightning.late_watch_s` after its BOLT11 expired, so a payment the node settled while
//!   farthing was not looking is still found and, when farthing's invoice has expired or was
//!   canceled meanwhile, credited to the payer's balance instead of lost.
//! - Settling goes through [`farthing_app::settlement::settle_payment`], keyed by the payment
//!   hash: the stream and the poller may both see one payment; it is booked once.
//!
//! Architecture invariant: this module knows the Lightning protocols and the node clients;
//! it reaches the ledger only through the service (`farthing_app`), and no other rail.

pub mod lnurl;

pub use lnurl::{
    auth_link, hold, k1_from_hex, k1_hex, mode_segment, new_auth_secret, new_withdraw_secret,
    parse_k1, pay_out, payout_key, top_up_link, withdraw_link, Payout, LNURL_LOGIN_MERCHANT,
    OWNER_CHALLENGE,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farthing_core::invoice::{Invoice, InvoiceAmount, InvoiceStatus};
use farthing_core::{Currency, MerchantId, PublicId, Rail};
use farthing_lightning::backend::{BackendConfig, Description};
use farthing_lightning::bolt11::{self, Network};
use farthing_lightning::{Backend, CreateInvoice, InvoiceState, LightningBackend, PaymentHash};
use farthing_store::{LightningInvoice, LightningNode, WatchState};
use serde_json::json;
use tokio::sync::{mpsc, watch, Notify};

use farthing_app::rail::{Carries, RailAdapter, RailRefund, RailRefunded, RailStatus, Task};
use farthing_app::settlement::{settle_payment, IncomingPayment};
use farthing_app::{App, AppError, Mode};

use crate::config::LightningConfig;

/// A BOLT11 is made only when at least this much of the invoice's life is left.
const MIN_BOLT11_EXPIRY_S: u64 = 3;

/// How long after its BOLT11 expired a node invoice is still asked about every round.
const JUST_EXPIRED_NS: u64 = 10_000_000_000;

/// Millisatoshis per satoshi (farthing's BTC minor unit is the satoshi).
pub const MSAT_PER_SAT: u64 = 1_000;

/// One merchant's node in one mode.
pub struct Node {
    /// The client.
    pub backend: Backend,
    /// The network its invoices must be on.
    pub network: Network,
    /// The stored configuration it was built from (to notice a reconfiguration).
    config: String,
    health: Mutex<Health>,
    /// Wakes the node's watcher (a new invoice to watch).
    pub wake: Notify,
}

#[derive(Clone, Debug, Default)]
struct Health {
    last_ok_ns: Option<u64>,
    last_error: Option<(u64, String)>,
    stream_up: bool,
}

impl Node {
    fn note_ok(&self, now_ns: u64) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.last_ok_ns = Some(now_ns);
        health.last_error = None;
    }

    fn note_error(&self, now_ns: u64, error: &farthing_lightning::BackendError) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.last_error = Some((now_ns, error.to_string()));
    }

    fn note_stream(&self, up: bool) {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stream_up = up;
    }

    /// `healthy` when the last call to the node succeeded, `unhealthy` with the error when it
    /// failed, `unknown` before any call; and whether the settlement stream is connected.
    pub fn health(&self) -> (&'static str, Option<String>, bool) {
        let health = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match (health.last_error, health.last_ok_ns) {
            (Some((_, error)), _) => ("unhealthy", Some(error), health.stream_up),
            (None, Some(_)) => ("healthy", None, health.stream_up),
            (None, None) => ("unknown", None, health.stream_up),
        }
    }
}

/// The merchants' node clients, by mode and merchant.
#[derive(Default)]
pub struct Nodes {
    nodes: Mutex<HashMap<(Mode, MerchantId), Arc<Node>>>,
    /// Wakes the watcher supervisor (a node was configured).
    pub changed: Notify,
}

/// Builds a node client from its stored row.
pub fn build_node(row: &LightningNode) -> Result<Node, AppError> {
    let config: BackendConfig = serde_json::from_str(&row.config)
        .map_err(|error| AppError::internal(format!("stored Lightning config: {error}")))?;
    let backend = Backend::new(&config)
        .map_err(|error| AppError::internal(format!("stored Lightning config: {error}")))?;
    let network: Network = row
        .network
        .parse()
        .map_err(|_| AppError::internal(format!("stored network {:?}", row.network)))?;
    Ok(Node {
        backend,
        network,
        config: row.config.clone(),
        health: Mutex::new(Health::default()),
        wake: Notify::new(),
    })
}

impl Nodes {
    /// The merchant's node client in `mode`, built from the store on first use; `None` when the
    /// merchant has not configured Lightning in this mode.
    pub fn get(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<Arc<Node>>, AppError> {
        let row = app.read(mode, move |reader| reader.lightning_node(merchant))?;
        row.map(|row| self.for_row(mode, &row)).transpose()
    }

    /// The client of a node row the caller has already read: the cached one while the row's
    /// configuration is unchanged, else a new one built from it.
    pub fn for_row(&self, mode: Mode, row: &LightningNode) -> Result<Arc<Node>, AppError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = nodes.get(&(mode, row.merchant)) {
            if node.config == row.config && node.network.as_str() == row.network {
                return Ok(node.clone());
            }
        }
        let node = Arc::new(build_node(row)?);
        nodes.insert((mode, row.merchant), node.clone());
        Ok(node)
    }

    /// Forgets the cached client (after a reconfiguration) and wakes the watchers.
    pub fn invalidate(&self, mode: Mode, merchant: MerchantId) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(mode, merchant));
        self.changed.notify_one();
    }
}

/// Whether an invoice can carry a BOLT11 now: open, in BTC, with a fixed amount, accepting
/// `lightning`.
pub fn wants_bolt11(invoice: &Invoice) -> bool {
    invoice.status == InvoiceStatus::Open
        && invoice.currency == Currency::BTC
        && invoice.rails.contains(&Rail::Lightning)
        && matches!(invoice.amount, InvoiceAmount::Fixed(_))
}

/// What the watcher's rows and the node's expiry should be for a BOLT11 made now for an
/// invoice expiring at `invoice_expires_at_ns`: `(expiry_s, limit_s)`, or `None` when too
/// little time is left.
fn bolt11_expiry(invoice_expires_at_ns: u64, now_ns: u64) -> Option<(u32, u64)> {
    let limit_s = invoice_expires_at_ns / 1_000_000_000;
    let now_s = now_ns.div_ceil(1_000_000_000);
    // One second of margin for the node's clock and the call's latency; the BOLT11 is checked
    // against `limit_s` afterwards anyway.
    let left = limit_s.checked_sub(now_s)?.checked_sub(1)?;
    if left < MIN_BOLT11_EXPIRY_S {
        return None;
    }
    Some((u32::try_from(left).unwrap_or(u32::MAX), limit_s))
}

/// A node invoice made and checked, ready to be recorded.
pub struct MadeBolt11 {
    /// The row to store.
    pub row: LightningInvoice,
}

/// Asks the merchant's node for a BOLT11 of `amount_msat` ending no later than
/// `limit_expires_at_ns`, and checks what the node returns (SPEC I3).
#[allow(clippy::too_many_arguments)]
pub async fn make_bolt11(
    app: &App,
    config: &LightningConfig,
    node: &Node,
    merchant: MerchantId,
    amount_msat: u64,
    description: Description,
    label: String,
    limit_expires_at_ns: u64,
) -> Result<MadeBolt11, AppError> {
    let now_ns = app.now_ns();
    let Some((expiry_s, limit_s)) = bolt11_expiry(limit_expires_at_ns, now_ns) else {
        return Err(AppError::conflict(
            "invoice_expiring",
            "too little of the invoice's life is left for a Lightning invoice",
        ));
    };
    let expected_hash = match &description {
        Description::Hashed(text) => Some(farthing_lightning::lnurl::description_hash(text)),
        Description::Memo(_) => None,
    };
    let request = CreateInvoice {
        amount_msat,
        description,
        expiry_s,
        label,
    };
    let created = match node.backend.create_invoice(&request).await {
        Ok(created) => {
            node.note_ok(app.now_ns());
            created
        }
        Err(error) => {
            node.note_error(app.now_ns(), &error);
            tracing::warn!(%error, merchant = %merchant.encode(), "the Lightning node did not make an invoice");
            return Err(node_error(&error));
        }
    };
    let checked = bolt11::check(
        &created.bolt11,
        &bolt11::Expect {
            amount_msat: Some(amount_msat),
            payment_hash: Some(created.payment_hash),
            network: Some(node.network),
            expires_no_later_than_s: Some(limit_s),
            description_hash: expected_hash,
            now_s: None,
        },
    )
    .map_err(|error| {
        tracing::error!(%error, merchant = %merchant.encode(), "the Lightning node made an invoice farthing cannot use");
        AppError::rail_failed(
            "lightning_node_error",
            format!("the Lightning node made an invoice farthing cannot use: {error}"),
        )
    })?;
    let expires_at_ns = checked.expires_at_s.saturating_mul(1_000_000_000);
    let late_watch_ns = config.late_watch_s.saturating_mul(1_000_000_000);
    Ok(MadeBolt11 {
        row: LightningInvoice {
            payment_hash: created.payment_hash.0,
            merchant,
            invoice: None,
            customer: None,
            top_up: false,
            bolt11: created.bolt11,
            amount_msat,
            expires_at_ns,
            watch_until_ns: expires_at_ns.saturating_add(late_watch_ns),
            state: WatchState::Open,
            comment: None,
            created_at_ns: now_ns,
            closed_at_ns: None,
        },
    })
}

/// The error of a node that failed.
pub fn node_error(error: &farthing_lightning::BackendError) -> AppError {
    AppError::rail_failed(
        if error.is_transient() {
            "lightning_unavailable"
        } else {
            "lightning_node_error"
        },
        format!("the Lightning node failed: {error}"),
    )
}

/// Makes and stores the BOLT11 of a committed invoice, or returns the one it has. Returns the
/// BOLT11, or `None` when the invoice cannot take one (not open, not BTC, amountless, no node).
pub async fn attach_bolt11(
    rail: &LightningRail,
    app: &App,
    mode: Mode,
    invoice: &Invoice,
) -> Result<Option<String>, AppError> {
    if let Some(bolt11) = crate::instructions::bolt11(invoice) {
        return Ok(Some(bolt11));
    }
    if !wants_bolt11(invoice) {
        return Ok(None);
    }
    let InvoiceAmount::Fixed(amount) = invoice.amount else {
        return Ok(None);
    };
    let Some(node) = rail.nodes().get(app, mode, invoice.merchant)? else {
        return Ok(None);
    };
    let amount_msat = amount.checked_mul(MSAT_PER_SAT).ok_or_else(|| {
        AppError::invalid("invalid_amount", "the amount is too large for Lightning")
    })?;
    let memo = if invoice.description.trim().is_empty() {
        invoice.id.encode()
    } else {
        invoice.description.chars().take(200).collect()
    };
    let mut made = make_bolt11(
        app,
        rail.config(),
        &node,
        invoice.merchant,
        amount_msat,
        Description::Memo(memo),
        format!("farthing:{}:{}", invoice.id.encode(), app.now_ns()),
        invoice.expires_at_ns,
    )
    .await?;
    made.row.invoice = Some(invoice.id);
    made.row.customer = invoice.customer;
    let id = invoice.id;
    let row = made.row;
    let bolt11 = row.bolt11.clone();
    // Stored unless the invoice got a BOLT11 meanwhile (two concurrent requests): then the
    // first one stands, and this node invoice is still watched (a payment of it is credited).
    let stored = app
        .run(mode, move |tx| -> Result<String, AppError> {
            tx.insert_lightning_invoice(&row)?;
            let current = tx.invoice(id)?;
            if let Some(existing) = current.as_ref().and_then(crate::instructions::bolt11) {
                return Ok(existing);
            }
            tx.set_instructions(
                id,
                Rail::Lightning,
                &crate::instructions::bolt11_json(&row.bolt11),
            )?;
            Ok(row.bolt11.clone())
        })
        .await?;
    node.wake.notify_one();
    if stored != bolt11 {
        tracing::info!(invoice = %id.encode(), "two BOLT11 were made for one invoice; the first is shown, both are watched");
    }
    Ok(Some(stored))
}

/// Watches every configured node until `shutdown`: one task per node (see the module docs).
pub async fn run(rail: LightningRail, app: App, mut shutdown: watch::Receiver<bool>) {
    let mut running: HashMap<(Mode, MerchantId), (Arc<Node>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    loop {
        for (mode, store) in app.stores() {
            let rows = match store.read(|reader| reader.lightning_nodes()) {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the Lightning nodes");
                    continue;
                }
            };
            for row in rows {
                let key = (mode, row.merchant);
                let node = match rail.nodes().for_row(mode, &row) {
                    Ok(node) => node,
                    Err(error) => {
                        tracing::error!(%error, merchant = %row.merchant.encode(), "cannot build the Lightning node client");
                        continue;
                    }
                };
                if let Some((current, handle)) = running.get(&key) {
                    if Arc::ptr_eq(current, &node) && !handle.is_finished() {
                        continue;
                    }
                    handle.abort();
                }
                let task = tokio::spawn(watch_node(
                    rail.clone(),
                    app.clone(),
                    mode,
                    row.merchant,
                    node.clone(),
                ));
                running.insert(key, (node, task));
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = rail.nodes().changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

/// Aborts a task when dropped (the stream follower dies with its watcher).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn watch_node(
    rail: LightningRail,
    app: App,
    mode: Mode,
    merchant: MerchantId,
    node: Arc<Node>,
) {
    let config = rail.config().clone();
    let (hints, mut hinted) = mpsc::channel::<PaymentHash>(1024);
    let follower = node.clone();
    let _stream = AbortOnDrop(tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let started = tokio::time::Instant::now();
            follower.note_stream(true);
            let result = follower.backend.follow_settlements(hints.clone()).await;
            follower.note_stream(false);
            if let Err(error) = result {
                tracing::debug!(%error, "the Lightning settlement stream stopped");
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(500);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }));
    let poll = Duration::from_millis(config.poll_interval_ms.max(50));
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            Some(hash) = hinted.recv() => {
                check(&app, mode, merchant, &node, hash).await;
            }
            _ = ticker.tick() => {
                round = round.wrapping_add(1);
                poll_round(&app, mode, merchant, &node, round).await;
            }
            _ = node.wake.notified() => {}
        }
    }
}

/// Asks the node about every watched invoice of the merchant: those still payable, and those
/// whose BOLT11 expired less than [`JUST_EXPIRED_NS`] ago, every round (asking right after
/// the expiry also makes LNbits mark its invoice failed, so it can no longer be paid even
/// internally); the rest of the late watch every tenth round.
async fn poll_round(app: &App, mode: Mode, merchant: MerchantId, node: &Node, round: u64) {
    let rows = match app.read(mode, move |reader| {
        reader.watched_lightning_invoices(merchant)
    }) {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "cannot read the watched Lightning invoices");
            return;
        }
    };
    let now_ns = app.now_ns();
    for row in rows {
        let late = now_ns > row.expires_at_ns.saturating_add(JUST_EXPIRED_NS);
        if late && !round.is_multiple_of(10) && now_ns <= row.watch_until_ns {
            continue;
        }
        check(app, mode, merchant, node, PaymentHash(row.payment_hash)).await;
    }
}

/// Looks at one node invoice: settles it when the node says it is paid, stops watching it
/// when the node canceled it or its watch ended.
pub async fn check(app: &App, mode: Mode, merchant: MerchantId, node: &Node, hash: PaymentHash) {
    let row = match app.read(mode, move |reader| reader.lightning_invoice(&hash.0)) {
        Ok(Some(row)) if row.merchant == merchant && row.state == WatchState::Open => row,
        Ok(_) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot read a Lightning invoice");
            return;
        }
    };
    let answer = node.backend.invoice_state(&hash).await;
    match answer {
        Ok(InvoiceState::Settled {
            amount_received_msat,
            preimage,
            settled_at_s,
        }) => {
            node.note_ok(app.now_ns());
            let paid = Paid {
                amount_received_msat,
                preimage,
                settled_at_s,
            };
            if let Err(error) = settle(app, mode, row, paid).await {
                tracing::error!(payment_hash = %hash, code = error.code(), %error, "a settled Lightning payment could not be booked; it stays watched");
            }
        }
        Ok(InvoiceState::Canceled) => {
            node.note_ok(app.now_ns());
            close_unpaid(app, mode, hash).await;
        }
        Ok(InvoiceState::Open) => {
            node.note_ok(app.now_ns());
            if app.now_ns() > row.watch_until_ns {
                close_unpaid(app, mode, hash).await;
            }
        }
        Err(error) => {
            node.note_error(app.now_ns(), &error);
            tracing::debug!(%error, payment_hash = %hash, "cannot ask the Lightning node");
        }
    }
}

async fn close_unpaid(app: &App, mode: Mode, hash: PaymentHash) {
    let now = app.now_ns();
    let closed = app
        .run(mode, move |tx| -> Result<bool, AppError> {
            Ok(tx.close_lightning_invoice(&hash.0, WatchState::Unpaid, now)?)
        })
        .await;
    if let Err(error) = closed {
        tracing::warn!(%error, "cannot close a Lightning invoice's watch");
    }
}

/// Books a settled node invoice (idempotent by payment hash) and closes its watch, in one job.
/// What the node says of a settled invoice.
struct Paid {
    amount_received_msat: u64,
    preimage: Option<String>,
    /// When the node settled it (Unix seconds), if it says: the start of the settlement lag.
    settled_at_s: Option<u64>,
}

async fn settle(app: &App, mode: Mode, row: LightningInvoice, paid: Paid) -> Result<(), AppError> {
    let Paid {
        amount_received_msat,
        preimage,
        settled_at_s,
    } = paid;
    let sats = amount_received_msat / MSAT_PER_SAT;
    let hash = PaymentHash(row.payment_hash);
    let base = app.base_url().to_owned();
    let incoming = IncomingPayment {
        merchant: row.merchant,
        rail: Rail::Lightning,
        external_id: hash.to_hex(),
        invoice: row.invoice,
        payer: row.customer,
        payer_external_id: None,
        currency: Currency::BTC,
        amount_minor: sats,
        payload: Some(json!({
            "amount_msat": amount_received_msat,
            "preimage": preimage,
            "comment": row.comment,
        })),
    };
    let fresh = app.run(mode, move |tx| -> Result<bool, AppError> {
            let Some(current) = tx.lightning_invoice(&hash.0)? else {
                return Ok(false);
            };
            if current.state != WatchState::Open {
                return Ok(false);
            }
            let now = tx.now_ns();
            if sats == 0 {
                // Cannot happen on Lightning (a payer never pays less than asked, and farthing
                // asks whole satoshis); kept visible rather than booked as zero.
                tracing::error!(payment_hash = %hash, amount_received_msat, "a Lightning payment below one satoshi");
                tx.close_lightning_invoice(&hash.0, WatchState::Settled, now)?;
                return Ok(false);
            }
            let settled = settle_payment(tx, mode, incoming, &base)?;
            tx.close_lightning_invoice(&hash.0, WatchState::Settled, now)?;
            Ok(!settled.duplicate)
        })
        .await?;
    if fresh {
        if let Some(at) = settled_at_s {
            app.observe_settlement(Rail::Lightning, at);
        }
    }
    Ok(())
}

/// How long the node may take to answer the balance check of `PUT /v1/rails/lightning`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// The Lightning rail's adapter: the node clients, the watcher, the BOLT11 of invoices.
#[derive(Clone)]
pub struct LightningRail {
    inner: Arc<RailInner>,
}

struct RailInner {
    nodes: Nodes,
    config: LightningConfig,
    /// The public base URL: the host of Lightning Addresses, the base of LNURL links.
    base_url: String,
}

impl LightningRail {
    /// The rail with the `[lightning]` configuration section; `base_url` is where wallets
    /// reach farthing.
    pub fn new(config: LightningConfig, base_url: &str) -> LightningRail {
        LightningRail {
            inner: Arc::new(RailInner {
                nodes: Nodes::default(),
                config,
                base_url: base_url.trim_end_matches('/').to_owned(),
            }),
        }
    }

    /// The merchants' node clients.
    pub fn nodes(&self) -> &Nodes {
        &self.inner.nodes
    }

    /// The `[lightning]` configuration.
    pub fn config(&self) -> &LightningConfig {
        &self.inner.config
    }

    /// The public base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The host part of Lightning Addresses: the public URL's host (and port).
    pub fn address_host(&self) -> String {
        let base = self.base_url();
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .unwrap_or(base);
        rest.split('/').next().unwrap_or(rest).to_owned()
    }

    /// The `rail` object of a configured node (no secrets).
    pub fn status_of(&self, row: &LightningNode, node: Option<&Node>, mode: Mode) -> RailStatus {
        let config: Option<BackendConfig> = serde_json::from_str(&row.config).ok();
        let (health, error, stream) = node.map_or(("unknown", None, false), Node::health);
        RailStatus::new(Rail::Lightning, mode, health)
            .with("health_error", error)
            .with(
                "settlement_stream",
                if stream { "connected" } else { "disconnected" },
            )
            .with("backend", config.as_ref().map(BackendConfig::name))
            .with("url", config.as_ref().map(BackendConfig::url))
            .with("network", &row.network)
            .with(
                "can_pay",
                config.as_ref().is_some_and(BackendConfig::can_pay),
            )
            .with(
                "lightning_address",
                row.address_name
                    .as_ref()
                    .map(|name| format!("{name}@{}", self.address_host())),
            )
    }
}

/// The body of `PUT /v1/rails/lightning` (one of three shapes, by `backend`).
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct ConnectLightning {
    /// `lnbits`, `lnd` or `cln`.
    pub backend: String,
    /// The node's base URL (LNbits, LND REST, clnrest).
    pub url: String,
    /// LNbits: the wallet's invoice/read key.
    pub invoice_key: Option<String>,
    /// LNbits: the wallet's admin key (needed for refunds and payouts over Lightning).
    pub admin_key: Option<String>,
    /// LND: the macaroon, hex (invoice macaroon to receive; admin to also pay).
    pub macaroon: Option<String>,
    /// LND, CLN: the node's TLS certificate (PEM), trusted alone (pinning).
    pub tls_cert: Option<String>,
    /// CLN: the rune.
    pub rune: Option<String>,
    /// The network the node's invoices are on: `bitcoin` (default), `testnet`, `signet`,
    /// `regtest`.
    pub network: Option<String>,
    /// The local part of the merchant's Lightning Address (`name` in `name@host`, LUD-16):
    /// 1 to 64 of `a-z 0-9 - _ .`. Tips and donations sent to it pay the merchant.
    pub lightning_address: Option<String>,
}

fn valid_address_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

type Checked = (BackendConfig, Option<String>, Option<String>);

fn backend_config(request: ConnectLightning) -> Result<Checked, AppError> {
    let missing = |field: &str, backend: &str| {
        AppError::invalid(
            "invalid_lightning_config",
            format!("the {backend} backend needs {field}"),
        )
        .param(field.to_owned())
    };
    let unused = |field: &str, backend: &str| {
        AppError::invalid(
            "invalid_lightning_config",
            format!("{field} is not used by the {backend} backend: remove it"),
        )
        .param(field.to_owned())
    };
    let url = request.url.trim().to_owned();
    let config = match request.backend.as_str() {
        "lnbits" => {
            for (field, given) in [
                ("macaroon", request.macaroon.is_some()),
                ("rune", request.rune.is_some()),
                ("tls_cert", request.tls_cert.is_some()),
            ] {
                if given {
                    return Err(unused(field, "lnbits"));
                }
            }
            BackendConfig::Lnbits {
                url,
                invoice_key: request
                    .invoice_key
                    .ok_or_else(|| missing("invoice_key", "lnbits"))?,
                admin_key: request.admin_key,
            }
        }
        "lnd" => {
            for (field, given) in [
                ("invoice_key", request.invoice_key.is_some()),
                ("admin_key", request.admin_key.is_some()),
                ("rune", request.rune.is_some()),
            ] {
                if given {
                    return Err(unused(field, "lnd"));
                }
            }
            BackendConfig::Lnd {
                url,
                macaroon: request.macaroon.ok_or_else(|| missing("macaroon", "lnd"))?,
                tls_cert: request.tls_cert,
            }
        }
        "cln" => {
            for (field, given) in [
                ("invoice_key", request.invoice_key.is_some()),
                ("admin_key", request.admin_key.is_some()),
                ("macaroon", request.macaroon.is_some()),
            ] {
                if given {
                    return Err(unused(field, "cln"));
                }
            }
            BackendConfig::Cln {
                url,
                rune: request.rune.ok_or_else(|| missing("rune", "cln"))?,
                tls_cert: request.tls_cert,
            }
        }
        _ => {
            return Err(AppError::invalid(
                "invalid_lightning_config",
                "backend must be \"lnbits\", \"lnd\" or \"cln\"",
            )
            .param("backend"))
        }
    };
    Ok((config, request.network, request.lightning_address))
}

fn config_error(error: &farthing_lightning::BackendError) -> AppError {
    use farthing_lightning::BackendError;
    match error {
        BackendError::Unauthorized { .. } => AppError::invalid(
            "invalid_lightning_credentials",
            format!("the node refused the credentials: {error}"),
        ),
        BackendError::Config { .. } => {
            AppError::invalid("invalid_lightning_config", error.to_string())
        }
        _ => node_error(error),
    }
}

fn address_taken() -> AppError {
    AppError::conflict(
        "lightning_address_taken",
        "another merchant has this Lightning Address; choose another name",
    )
}

impl RailAdapter for LightningRail {
    type Config = ConnectLightning;

    fn rail(&self) -> Rail {
        Rail::Lightning
    }

    fn offer(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<Carries>, AppError> {
        let node = app.read(mode, move |reader| reader.lightning_node(merchant))?;
        Ok(node.map(|_| Carries {
            currencies: farthing_app::rail::CurrencySet::Only(vec![Currency::BTC]),
            why_not: "the lightning rail takes BTC invoices (amounts in satoshis)".to_owned(),
        }))
    }

    async fn connect(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        request: ConnectLightning,
    ) -> Result<farthing_app::rail::Connected, AppError> {
        let (config, network, address) = backend_config(request)?;
        let network: Network = match network.as_deref() {
            None => Network::Bitcoin,
            Some(name) => name.parse().map_err(|_| {
                AppError::invalid(
                    "invalid_lightning_config",
                    "network must be \"bitcoin\", \"testnet\", \"signet\" or \"regtest\"",
                )
                .param("network")
            })?,
        };
        if let Some(name) = &address {
            if !valid_address_name(name) {
                return Err(AppError::invalid(
                    "invalid_lightning_address",
                    "lightning_address must be the name part only (as in name@host): 1 to 64 of a-z, 0-9, -, _ and .",
                )
                .param("lightning_address"));
            }
        }
        let backend = Backend::new(&config).map_err(|error| config_error(&error).param("url"))?;
        if let Err(message) =
            crate::net::check_url(config.url(), self.config().allow_private_nodes).await
        {
            return Err(
                AppError::invalid("invalid_lightning_config", format!("url: {message}"))
                    .param("url"),
            );
        }
        match tokio::time::timeout(CHECK_TIMEOUT, backend.balance_msat()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(config_error(&error)),
            Err(_) => {
                return Err(node_error(&farthing_lightning::BackendError::Unreachable {
                    backend: backend.name(),
                    message: "the node did not answer in time".to_owned(),
                }))
            }
        }
        if let Some(name) = address.clone() {
            let holder = app.read(mode, move |reader| reader.lightning_node_by_address(&name))?;
            if holder.is_some_and(|node| node.merchant != merchant) {
                return Err(address_taken());
            }
        }
        let now = app.now_ns();
        let row = LightningNode {
            merchant,
            config: serde_json::to_string(&config).map_err(AppError::internal)?,
            network: network.as_str().to_owned(),
            address_name: address,
            created_at_ns: now,
            updated_at_ns: now,
        };
        let mut status = self.status_of(&row, None, mode);
        status.health = "healthy";
        let rail = self.clone();
        Ok(farthing_app::rail::Connected {
            status,
            store: Box::new(move |tx| {
                if let Some(name) = &row.address_name {
                    if tx
                        .lightning_node_by_address(name)?
                        .is_some_and(|node| node.merchant != row.merchant)
                    {
                        return Err(address_taken());
                    }
                }
                tx.upsert_lightning_node(&row)?;
                Ok(())
            }),
            after_commit: Some(Box::new(move || rail.nodes().invalidate(mode, merchant))),
        })
    }

    async fn status(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<RailStatus>, AppError> {
        let Some(row) = app.read(mode, move |reader| reader.lightning_node(merchant))? else {
            return Ok(None);
        };
        // The health the watcher saw last (it asks the node every poll interval).
        let client = self.nodes().for_row(mode, &row).ok();
        Ok(Some(self.status_of(&row, client.as_deref(), mode)))
    }

    async fn instructions(
        &self,
        app: &App,
        mode: Mode,
        invoice: &Invoice,
    ) -> Result<Option<String>, AppError> {
        Ok(attach_bolt11(self, app, mode, invoice)
            .await?
            .map(|bolt11| crate::instructions::bolt11_json(&bolt11)))
    }

    async fn refund(&self, _: &App, _: Mode, _: RailRefund) -> Result<RailRefunded, AppError> {
        Err(AppError::invalid(
            "rail_refund_unsupported",
            "a Lightning payment goes back as an LNURL-withdraw link the payer claims: use destination lnurl_withdraw",
        )
        .param("destination"))
    }

    fn tasks(&self, app: &App, shutdown: watch::Receiver<bool>) -> Vec<Task> {
        vec![Box::pin(run(self.clone(), app.clone(), shutdown))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bolt11_never_outlives_the_invoice() {
        let s = 1_000_000_000u64;
        // 15 minutes left: ask for 15 min - 1 s (now rounded up, limit rounded down).
        assert_eq!(
            bolt11_expiry(1_000 * s + 900 * s, 1_000 * s),
            Some((899, 1_900))
        );
        assert_eq!(
            bolt11_expiry(1_000 * s + 900 * s + 500_000_000, 1_000 * s + 1),
            Some((898, 1_900))
        );
        // Too little left, or already past.
        assert_eq!(bolt11_expiry(1_003 * s, 1_000 * s), None);
        assert_eq!(bolt11_expiry(999 * s, 1_000 * s), None);
        assert_eq!(bolt11_expiry(1_004 * s, 1_000 * s), Some((3, 1_004)));
    }
}
