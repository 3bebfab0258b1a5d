//! The TON watcher: reads every watched account (each merchant's wallet and its jetton
//! wallets, in both modes) through the merchant's indexer, oldest first from a persisted
//! cursor, in bounded pages, and settles the payments among them.
//!
//! - **Pacing.** Requests to one indexer and key are spaced by `ton.request_interval_ms`
//!   (toncenter allows 1 request/s without a key) or `ton.request_interval_with_key_ms`; a 429
//!   or 5xx answer doubles the wait for that indexer (up to a minute) and is shown as the
//!   rail's health until a request succeeds again.
//! - **Once.** A page's transactions are settled in one store job that also moves the cursor,
//!   so a crash between fetching and committing replays the page; each transaction hash is
//!   recorded (`ton_transactions`) and is the rail payment id, so a replayed or duplicated page
//!   books nothing twice.
//! - **Matching.** The comment's reference names the invoice ([`farthing_ton::pay::read_reference`]);
//!   exact, short, long and late amounts are split by the payments service (SPEC I3: short or
//!   late money goes to the payer's balance, a surplus too). A short payment followed by
//!   another before expiry pays the invoice from that balance. A payment naming no invoice is
//!   "unmatched": credited to the payer's balance (the customer `ton:<address>`, so later
//!   payments from the same wallet find the same customer) and listed for the merchant to
//!   assign.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use farthing_core::invoice::InvoiceStatus;
use farthing_core::{Currency, InvoiceId, MerchantId, PublicId, Rail};
use farthing_store::{TonCursor, TonTransaction};
use farthing_ton::classify::{classify, Asset, Ignored, Seen, Watched};
use farthing_ton::toncenter::{Toncenter, Transaction};
use farthing_ton::Address;
use serde_json::json;
use tokio::sync::{watch as signal, Notify};

use farthing_app::settlement::{settle_payment, IncomingPayment};
use farthing_app::{App, AppError, Mode};

use super::{TonRail, Wallet};

/// The longest wait after repeated indexer failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long one indexer call may take in the watcher.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// What the watcher last saw of one account.
#[derive(Clone, Debug, Default)]
pub struct AccountSeen {
    /// The last transaction read.
    pub last_lt: Option<u64>,
    /// Its hash.
    pub last_hash: Option<String>,
    /// Its time on chain.
    pub last_tx_now_s: Option<u64>,
    /// Seconds between that transaction's time on chain and when the watcher read it.
    pub lag_s: Option<u64>,
}

/// How a merchant's watch stands.
#[derive(Clone, Debug)]
pub struct Health {
    /// `healthy`, `unhealthy` or `unknown` (not polled yet).
    pub state: &'static str,
    /// The last error, while it lasts.
    pub error: Option<String>,
    /// When the last poll succeeded (unix seconds).
    pub last_poll_s: Option<u64>,
    /// Per watched account (raw form).
    pub accounts: BTreeMap<String, AccountSeen>,
}

#[derive(Default)]
struct MerchantWatch {
    last_ok_s: Option<u64>,
    error: Option<String>,
    accounts: BTreeMap<String, AccountSeen>,
}

/// Each wallet's client, with the key it was made with (its base URL it knows itself).
type Clients = HashMap<(Mode, MerchantId), (Option<String>, Toncenter)>;

/// The watcher's shared state: health per merchant, pacing per indexer, each wallet's client,
/// and the wake-up.
#[derive(Default)]
pub struct Watcher {
    merchants: Mutex<HashMap<(Mode, MerchantId), MerchantWatch>>,
    indexers: Mutex<HashMap<(String, bool), Pace>>,
    /// Each watched wallet's indexer client, kept across rounds (its connections and TLS
    /// sessions are reused rather than made again every poll) and replaced when the wallet's
    /// indexer or key changes.
    clients: Mutex<Clients>,
    /// Payers' jetton wallets (`(indexer, master, owner)` → wallet): a pure function of master
    /// and owner, so each is asked of an indexer once — and kept per indexer, so that one
    /// merchant's indexer cannot answer for another's payers.
    jetton_wallets: Mutex<HashMap<(String, String, String), Address>>,
    wake: Notify,
}

/// The most payers' jetton wallets kept (then the cache starts over).
const JETTON_WALLET_CACHE: usize = 10_000;

#[derive(Clone, Copy)]
struct Pace {
    next: Instant,
    backoff: Duration,
}

impl Watcher {
    /// Wakes the watcher (a wallet was configured).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The indexer client of `wallet` in `mode`.
    fn client(&self, mode: Mode, wallet: &Wallet) -> Toncenter {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let make = || {
            let client = Toncenter::new(&wallet.api_url, wallet.api_key.clone(), CALL_TIMEOUT);
            (wallet.api_key.clone(), client)
        };
        let entry = clients.entry((mode, wallet.merchant)).or_insert_with(make);
        if entry.0 != wallet.api_key || entry.1.base() != wallet.api_url.trim_end_matches('/') {
            *entry = make();
        }
        entry.1.clone()
    }

    /// How the watch of `merchant` stands.
    pub fn health(&self, mode: Mode, merchant: MerchantId) -> Health {
        let merchants = self.merchants.lock().unwrap_or_else(|p| p.into_inner());
        match merchants.get(&(mode, merchant)) {
            None => Health {
                state: "unknown",
                error: None,
                last_poll_s: None,
                accounts: BTreeMap::new(),
            },
            Some(watch) => Health {
                state: match (&watch.error, watch.last_ok_s) {
                    (Some(_), _) => "unhealthy",
                    (None, Some(_)) => "healthy",
                    (None, None) => "unknown",
                },
                error: watch.error.clone(),
                last_poll_s: watch.last_ok_s,
                accounts: watch.accounts.clone(),
            },
        }
    }

    fn note(&self, mode: Mode, merchant: MerchantId, now_s: u64, error: Option<String>) {
        let mut merchants = self.merchants.lock().unwrap_or_else(|p| p.into_inner());
        let watch = merchants.entry((mode, merchant)).or_default();
        if error.is_none() {
            watch.last_ok_s = Some(now_s);
        }
        watch.error = error;
    }

    fn note_account(&self, mode: Mode, merchant: MerchantId, account: &str, seen: AccountSeen) {
        let mut merchants = self.merchants.lock().unwrap_or_else(|p| p.into_inner());
        merchants
            .entry((mode, merchant))
            .or_default()
            .accounts
            .insert(account.to_owned(), seen);
    }

    /// Takes the indexer's next turn unless it is further than `limit` away (`false`: nothing
    /// reserved) — for requests a payer waits on, which must not queue up behind each other
    /// and push the watcher back.
    async fn pace_within(&self, key: &(String, bool), interval: Duration, limit: Duration) -> bool {
        let wait = {
            let mut indexers = self.indexers.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let pace = indexers.entry(key.clone()).or_insert(Pace {
                next: now,
                backoff: Duration::ZERO,
            });
            let start = pace.next.max(now);
            if start - now > limit {
                return false;
            }
            pace.next = start + interval.max(pace.backoff);
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }

    /// Waits until the indexer may be asked again.
    async fn pace(&self, key: &(String, bool), interval: Duration) {
        let wait = {
            let mut indexers = self.indexers.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let pace = indexers.entry(key.clone()).or_insert(Pace {
                next: now,
                backoff: Duration::ZERO,
            });
            let start = pace.next.max(now);
            pace.next = start + interval.max(pace.backoff);
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn backoff(&self, key: &(String, bool), interval: Duration, failed: bool) {
        let mut indexers = self.indexers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pace) = indexers.get_mut(key) {
            if failed {
                pace.backoff = (pace.backoff.max(interval) * 2).min(MAX_BACKOFF);
                pace.next = Instant::now() + pace.backoff;
            } else {
                pace.backoff = Duration::ZERO;
            }
        }
    }
}

/// The payment reference of an invoice: the one it has, else a new one (50 random bits,
/// checked unique in the store job that records it).
pub async fn reference_for(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    invoice: InvoiceId,
) -> Result<String, AppError> {
    for _ in 0..4 {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(AppError::internal)?;
        let candidate = farthing_ton::pay::reference(u64::from_le_bytes(bytes));
        let stored = app
            .run(mode, move |tx| -> Result<Option<String>, AppError> {
                if let Some(existing) = tx.ton_reference_of(invoice)? {
                    return Ok(Some(existing));
                }
                if tx.ton_reference(&candidate)?.is_some() {
                    return Ok(None);
                }
                tx.insert_ton_reference(&candidate, merchant, invoice)?;
                Ok(Some(candidate))
            })
            .await?;
        if let Some(reference) = stored {
            return Ok(reference);
        }
    }
    Err(AppError::internal(
        "no free TON payment reference after 4 tries",
    ))
}

/// The watcher: every account of every configured wallet, round after round, until shutdown.
pub async fn run(rail: TonRail, app: App, mut shutdown: signal::Receiver<bool>) {
    let idle = Duration::from_millis(rail.config().poll_interval_ms);
    loop {
        for mode in [Mode::Live, Mode::Test] {
            let wallets = match app.read(mode, |reader| reader.ton_wallets()) {
                Ok(wallets) => wallets,
                Err(error) => {
                    tracing::error!(%error, "TON watcher: cannot read the wallets");
                    continue;
                }
            };
            for row in wallets {
                if *shutdown.borrow() {
                    return;
                }
                let wallet = match Wallet::from_row(&row) {
                    Ok(wallet) => wallet,
                    Err(error) => {
                        tracing::error!(merchant = %row.merchant.encode(), %error, "TON watcher: stored wallet unreadable");
                        continue;
                    }
                };
                let result = tokio::select! {
                    result = watch_wallet(&rail, &app, mode, &wallet) => result,
                    _ = shutdown.changed() => return,
                };
                let now_s = app.now_ns() / 1_000_000_000;
                match result {
                    Ok(()) => rail.watcher().note(mode, wallet.merchant, now_s, None),
                    Err(error) => {
                        tracing::warn!(merchant = %wallet.merchant.encode(), %error, "TON watcher: polling failed; retrying");
                        rail.watcher()
                            .note(mode, wallet.merchant, now_s, Some(error));
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = rail.watcher().wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// The pacing key of a wallet's indexer (its URL, and whether a key raises the budget) and the
/// rest between two requests.
fn pacing(rail: &TonRail, wallet: &Wallet) -> ((String, bool), Duration) {
    let key = (wallet.api_url.clone(), wallet.api_key.is_some());
    let interval = Duration::from_millis(if wallet.api_key.is_some() {
        rail.config().request_interval_with_key_ms
    } else {
        rail.config().request_interval_ms
    });
    (key, interval)
}

/// The longest a payer's request waits for its turn at the indexer before it is refused: two
/// seconds, or three of the indexer's turns when they are longer (the watcher reserves its
/// turns a page ahead, so a payer may find up to two of them booked).
const PAYER_WAIT: Duration = Duration::from_secs(2);

fn payer_wait(interval: Duration) -> Duration {
    PAYER_WAIT.max(interval * 3)
}

/// The payer's jetton wallet of `master` (where a jetton payment's `transfer` goes), by the
/// master's own `get_wallet_address` through the merchant's indexer — within that indexer's
/// pace, shared with the watcher, and refused (`Ok(None)`) rather than queued when the indexer
/// is booked for longer than `payer_wait` — and kept once known (per indexer: each merchant
/// names their own).
pub async fn payer_jetton_wallet(
    rail: &TonRail,
    mode: Mode,
    wallet: &Wallet,
    master: &Address,
    payer: &Address,
) -> Result<Option<Address>, farthing_ton::toncenter::ToncenterError> {
    let watcher = rail.watcher();
    let cache_key = (wallet.api_url.clone(), master.raw(), payer.raw());
    if let Some(found) = watcher
        .jetton_wallets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cache_key)
    {
        return Ok(Some(*found));
    }
    let client = watcher.client(mode, wallet);
    let (key, interval) = pacing(rail, wallet);
    if !watcher
        .pace_within(&key, interval, payer_wait(interval))
        .await
    {
        return Ok(None);
    }
    let answer = client.get_wallet_address(master, payer).await;
    watcher.backoff(
        &key,
        interval,
        answer.as_ref().is_err_and(|error| error.is_transient()),
    );
    let found = answer?;
    let mut cache = watcher
        .jetton_wallets
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if cache.len() >= JETTON_WALLET_CACHE {
        cache.clear();
    }
    cache.insert(cache_key, found);
    Ok(Some(found))
}

/// Reads every account of one wallet up to the indexer's head.
async fn watch_wallet(
    rail: &TonRail,
    app: &App,
    mode: Mode,
    wallet: &Wallet,
) -> Result<(), String> {
    let client = rail.watcher().client(mode, wallet);
    let (key, interval) = pacing(rail, wallet);
    let mut accounts = vec![(wallet.address, Watched::Wallet)];
    let mut own_jetton_wallets = Vec::new();
    for jetton in &wallet.jettons {
        let (Ok(master), Ok(jw)) = (
            Address::parse(&jetton.master),
            Address::parse(&jetton.wallet),
        ) else {
            return Err(format!("stored jetton {} unreadable", jetton.symbol));
        };
        own_jetton_wallets.push(jw.address);
        accounts.push((
            jw.address,
            Watched::JettonWallet {
                master: master.address,
            },
        ));
    }
    for (account, watched) in accounts {
        // Page after page until a short page says the head is reached.
        loop {
            let raw = account.raw();
            let merchant = wallet.merchant;
            let cursor = {
                let raw = raw.clone();
                app.read(mode, move |reader| reader.ton_cursor(merchant, &raw))
                    .map_err(|error| error.to_string())?
            };
            let start_lt = cursor
                .as_ref()
                .map_or(0, |cursor| cursor.lt.saturating_add(1));
            rail.watcher().pace(&key, interval).await;
            let page = rail.config().page_size;
            // The client gives up after CALL_TIMEOUT (a timeout is `Unavailable`: transient).
            let transactions = match client.transactions(&account, start_lt, page).await {
                Ok(transactions) => {
                    rail.watcher().backoff(&key, interval, false);
                    transactions
                }
                Err(error) => {
                    rail.watcher().backoff(&key, interval, error.is_transient());
                    return Err(error.to_string());
                }
            };
            let full = transactions.len() >= page as usize;
            let fresh: Vec<Transaction> = transactions
                .into_iter()
                .filter(|tx| {
                    tx.lt()
                        .is_some_and(|lt| cursor.as_ref().is_none_or(|c| lt > c.lt))
                        && Address::parse(&tx.account).is_ok_and(|parsed| parsed.address == account)
                })
                .collect();
            if let Some(last) = fresh.last() {
                let now_s = app.now_ns() / 1_000_000_000;
                rail.watcher().note_account(
                    mode,
                    merchant,
                    &raw,
                    AccountSeen {
                        last_lt: last.lt(),
                        last_hash: Some(last.hash.clone()),
                        last_tx_now_s: Some(last.now),
                        lag_s: Some(now_s.saturating_sub(last.now)),
                    },
                );
                let settled =
                    settle_page(app, mode, wallet, &raw, watched, &own_jetton_wallets, fresh)
                        .await
                        .map_err(|error| format!("settling a page of {raw}: {error}"))?;
                for at in settled {
                    app.observe_settlement(Rail::Ton, at);
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(())
}

/// A transaction read and classified, ready for its store job.
struct Read {
    tx: Transaction,
    lt: u64,
    seen: Seen,
}

/// Settles one page in one store job and moves the cursor to its last transaction. Returns
/// the on-chain times of the payments settled now (for the settlement-lag metric).
async fn settle_page(
    app: &App,
    mode: Mode,
    wallet: &Wallet,
    account: &str,
    watched: Watched,
    own_jetton_wallets: &[Address],
    transactions: Vec<Transaction>,
) -> Result<Vec<u64>, AppError> {
    let reads: Vec<Read> = transactions
        .into_iter()
        .filter_map(|tx| {
            let lt = tx.lt()?;
            let seen = classify(&tx, watched, own_jetton_wallets);
            Some(Read { tx, lt, seen })
        })
        .collect();
    let wallet = wallet.clone();
    let account = account.to_owned();
    let base = app.base_url().to_owned();
    let risk_app = app.clone();
    app.run(mode, move |tx| -> Result<Vec<u64>, AppError> {
        let mut settled_at = Vec::new();
        let now_ns = tx.now_ns();
        let Some(last) = reads.last() else {
            return Ok(settled_at);
        };
        let cursor = TonCursor {
            lt: last.lt,
            hash: last.tx.hash.clone(),
            tx_now_s: last.tx.now,
            updated_at_ns: now_ns,
        };
        for read in &reads {
            if tx.ton_transaction(&read.tx.hash)?.is_some() {
                continue;
            }
            let record = settle_one(tx, &risk_app, mode, &wallet, &account, read, &base)?;
            if record.outcome == "settled" || record.outcome == "unmatched" {
                settled_at.push(read.tx.now);
            }
            tx.insert_ton_transaction(&record)?;
        }
        tx.advance_ton_cursor(wallet.merchant, &account, &cursor)?;
        Ok(settled_at)
    })
    .await
}

fn record(
    wallet: &Wallet,
    account: &str,
    read: &Read,
    outcome: &str,
    reason: Option<String>,
    now_ns: u64,
) -> TonTransaction {
    TonTransaction {
        hash: read.tx.hash.clone(),
        merchant: wallet.merchant,
        account: account.to_owned(),
        lt: read.lt,
        outcome: outcome.to_owned(),
        reason,
        currency: None,
        amount_minor: None,
        payer: None,
        comment: None,
        invoice: None,
        customer: None,
        tx_now_s: read.tx.now,
        created_at_ns: now_ns,
    }
}

/// The currency an asset is for this wallet (`None`: a jetton it does not accept).
fn currency_of(wallet: &Wallet, asset: Asset) -> Option<Currency> {
    match asset {
        Asset::Ton => Some(Currency::TON),
        Asset::Jetton(master) => wallet
            .jettons
            .iter()
            .find(|jetton| Address::parse(&jetton.master).is_ok_and(|m| m.address == master))
            .and_then(|jetton| Currency::parse(&jetton.symbol).ok()),
    }
}

/// A transaction in which the merchant sent something: each message that is a refund farthing
/// prepared — its comment, to the payer, the exact amount and asset — books that refund now
/// (its hold posted, or, if it was canceled meanwhile, booked all the same: the money left),
/// and the invoice is refunded. One external message may carry several refunds. Recorded as
/// `ignored` either way (no payment came in), with `refund_sent: …`, or why a message with a
/// refund's comment is not that refund.
fn settle_sent(
    tx: &mut farthing_store::Tx<'_, '_>,
    app: &App,
    mode: Mode,
    wallet: &Wallet,
    account: &str,
    read: &Read,
    sent: &[farthing_ton::classify::Sent],
) -> Result<TonTransaction, AppError> {
    let now_ns = tx.now_ns();
    let mut row = record(
        wallet,
        account,
        read,
        "ignored",
        Some("sent".to_owned()),
        now_ns,
    );
    let mut reasons = Vec::new();
    for transfer in sent {
        let Some(comment) = transfer.comment.as_deref().map(str::trim) else {
            continue;
        };
        let Some(pending) = tx.ton_refund(wallet.merchant, comment)? else {
            continue;
        };
        let currency = currency_of(wallet, transfer.asset).map(|c| c.code().to_owned());
        let amount = u64::try_from(transfer.amount).ok();
        let to = transfer.to.map(|to| to.raw());
        if row.comment.is_none() {
            row.comment = Some(comment.to_owned());
            row.payer.clone_from(&to);
            row.currency.clone_from(&currency);
            row.amount_minor = amount;
        }
        let same = currency.as_deref() == Some(pending.currency.as_str())
            && amount == Some(pending.amount_minor)
            && to.as_deref() == Some(pending.destination.as_str());
        if !same {
            tracing::warn!(merchant = %wallet.merchant.encode(), hash = %read.tx.hash, refund = %pending.refund.encode(),
                "TON watcher: a transfer carries a refund's comment but not its amount, asset or payer; not booked");
            reasons.push(format!(
                "refund_mismatch: {} wants {} {} to {}",
                pending.refund.encode(),
                pending.amount_minor,
                pending.currency,
                pending.destination
            ));
            continue;
        }
        let id = pending.refund;
        let merchant = wallet.merchant;
        let booked =
            tx.nested(|tx| farthing_app::refunds::complete_sent(tx, app, mode, merchant, id))?;
        match booked {
            Ok(refund) => {
                if row.invoice.is_none() {
                    row.invoice = refund.invoice;
                    row.customer = Some(refund.customer);
                }
                reasons.push(format!("refund_sent: {}", id.encode()));
            }
            Err(error) => {
                tracing::error!(%error, refund = %id.encode(), hash = %read.tx.hash, "TON watcher: a refund's transfer left the wallet but could not be booked; needs review");
                reasons.push(format!("refund_not_booked: {} ({error})", id.encode()));
            }
        }
    }
    if !reasons.is_empty() {
        row.reason = Some(reasons.join("; "));
    }
    Ok(row)
}

/// Settles (or records as ignored) one transaction inside the page's job.
fn settle_one(
    tx: &mut farthing_store::Tx<'_, '_>,
    app: &App,
    mode: Mode,
    wallet: &Wallet,
    account: &str,
    read: &Read,
    base: &str,
) -> Result<TonTransaction, AppError> {
    let now_ns = tx.now_ns();
    let payment = match &read.seen {
        Seen::Ignored(ignored) => {
            let mut row = record(
                wallet,
                account,
                read,
                "ignored",
                Some(ignored.code().to_owned()),
                now_ns,
            );
            if let Ignored::FakeJetton { from, comment } = ignored {
                tracing::warn!(
                    merchant = %wallet.merchant.encode(),
                    hash = %read.tx.hash,
                    from = ?from,
                    "TON watcher: a jetton notification from a wallet that is not the merchant's (fake jetton); not credited"
                );
                row.payer = from.map(|from| from.raw());
                row.comment = comment.clone();
            }
            return Ok(row);
        }
        Seen::Sent(sent) => return settle_sent(tx, app, mode, wallet, account, read, sent),
        Seen::Payment(payment) => payment,
    };
    let currency = match payment.asset {
        Asset::Ton => Currency::TON,
        Asset::Jetton(master) => {
            let symbol = wallet
                .jettons
                .iter()
                .find(|jetton| Address::parse(&jetton.master).is_ok_and(|m| m.address == master))
                .map(|jetton| jetton.symbol.clone());
            match symbol.as_deref().map(Currency::parse) {
                Some(Ok(currency)) => currency,
                _ => {
                    return Ok(record(
                        wallet,
                        account,
                        read,
                        "ignored",
                        Some("jetton_not_allowed".to_owned()),
                        now_ns,
                    ))
                }
            }
        }
    };
    let mut row = record(wallet, account, read, "settled", None, now_ns);
    row.currency = Some(currency.code().to_owned());
    row.payer = payment.payer.map(|payer| payer.raw());
    row.comment = payment.comment.clone();
    let Ok(amount_minor) = u64::try_from(payment.amount) else {
        tracing::error!(hash = %read.tx.hash, amount = %payment.amount, "TON watcher: a payment too large to book; held for review");
        row.outcome = "ignored".to_owned();
        row.reason = Some("amount_too_large: needs review".to_owned());
        return Ok(row);
    };
    row.amount_minor = Some(amount_minor);
    // The invoice the comment names, if it is this merchant's.
    let invoice = match payment.comment.as_deref() {
        Some(comment) => {
            let by_reference = match farthing_ton::pay::read_reference(comment) {
                Some(reference) => tx
                    .ton_reference(&reference)?
                    .filter(|(merchant, _)| *merchant == wallet.merchant)
                    .map(|(_, invoice)| invoice),
                None => None,
            };
            by_reference.or_else(|| InvoiceId::parse(comment.trim()).ok())
        }
        None => None,
    };
    let invoice = match invoice {
        Some(id) => tx
            .invoice(id)?
            .filter(|found| found.merchant == wallet.merchant)
            .map(|found| found.id),
        None => None,
    };
    // The payer is the merchant's customer `ton:<address>`, made now if new: farthing cannot
    // send TON back, so the payer's balance is where a refund (or a surplus) goes, and a later
    // payment from the same wallet finds the same customer.
    let payer = match payment.payer {
        Some(address) => Some(
            farthing_app::customers::find_or_create(
                tx,
                wallet.merchant,
                mode,
                &format!("ton:{}", address.raw()),
                Vec::new(),
            )?
            .0
            .id,
        ),
        None => None,
    };
    let incoming = IncomingPayment {
        merchant: wallet.merchant,
        rail: Rail::Ton,
        external_id: read.tx.hash.clone(),
        invoice,
        payer,
        payer_external_id: None,
        currency,
        amount_minor,
        payload: Some(json!({
            "account": account,
            "lt": read.lt.to_string(),
            "payer": payment.payer.map(|payer| payer.raw()),
            "comment": payment.comment,
            "now": read.tx.now,
        })),
    };
    let settled = match settle_payment(tx, mode, incoming, base) {
        Ok(settled) => settled,
        Err(error) => {
            tracing::error!(hash = %read.tx.hash, %error, "TON watcher: the payments service refused a payment; held for review");
            row.outcome = "ignored".to_owned();
            row.reason = Some(format!("refused: {error}"));
            return Ok(row);
        }
    };
    row.customer = settled.payment.customer;
    row.invoice = invoice;
    row.reason = settled
        .payment
        .credit_reason
        .map(|reason| reason.as_str().to_owned());
    if invoice.is_none() {
        row.outcome = "unmatched".to_owned();
        return Ok(row);
    }
    // A short payment before expiry: if the payer's balance now covers the invoice (an
    // earlier short payment plus this one), pay it from there.
    if let (Some(invoice), Some(customer)) = (settled.invoice.as_ref(), settled.payment.customer) {
        let short = settled.payment.paid_minor == 0
            && settled.payment.credit_reason
                == Some(farthing_core::invoice::CreditReason::Underpaid);
        if short && invoice.status == InvoiceStatus::Open && !invoice.is_past_expiry(now_ns) {
            let risk = farthing_app::risk::RiskCheck::new(
                app,
                mode,
                wallet.merchant,
                farthing_core::risk::Operation::BalancePayment,
            );
            let id = invoice.id;
            let paid = tx.nested(|tx| {
                farthing_app::invoices::complete_from_balance(tx, &risk, id, customer, Rail::Ton)
            })?;
            match paid {
                Ok(_) => row.reason = Some("topped_up".to_owned()),
                Err(error) => {
                    tracing::info!(%error, invoice = %id.encode(), "TON watcher: a short payment stays on the payer's balance");
                }
            }
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_payers_request_is_refused_rather_than_queued_behind_a_booked_indexer() {
        let watcher = Watcher::default();
        let key = ("https://indexer.example/api/v3".to_owned(), false);
        let interval = Duration::from_secs(10);
        // The first takes the free turn at once; the next turn is 10 s away: refused, and
        // nothing reserved (the watcher's own turn is not pushed back).
        assert_eq!(
            payer_wait(Duration::from_millis(1100)),
            Duration::from_millis(3300)
        );
        assert_eq!(payer_wait(Duration::from_millis(110)), PAYER_WAIT);
        assert!(watcher.pace_within(&key, interval, PAYER_WAIT).await);
        let next = watcher.indexers.lock().expect("pace")[&key].next;
        assert!(!watcher.pace_within(&key, interval, PAYER_WAIT).await);
        assert_eq!(watcher.indexers.lock().expect("pace")[&key].next, next);
        // Another indexer has its own turns.
        let other = ("https://other.example/api/v3".to_owned(), false);
        assert!(watcher.pace_within(&other, interval, PAYER_WAIT).await);
    }
}
