//! Risk rules in the service (SPEC S1, S2): the merchant's rules as the API takes them, and
//! [`RiskCheck`], the one way an operation asks them about a payment.
//!
//! The decision itself is `farthing_core::risk::evaluate` (pure). This module gathers its facts
//! inside the store job that books the payment — so two payments of one customer racing each
//! other are decided one after the other, and a daily limit holds under concurrency — and
//! records every decision: an allowance in the same job as the payment it allowed, a refusal
//! (whose job writes nothing else) or an allowance whose booking then failed in a job of its
//! own right after ([`RiskCheck::finish`]). An idempotent replay runs no job, so it is neither
//! decided nor recorded again.
//!
//! A merchant without rules costs one map lookup per payment: no read, no record.
//!
//! Velocity counts live in memory, per process (a restart forgets the last minute), in
//! five-second buckets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use farthing_core::risk::{
    self, Attempt, BlockLists, CustomerFacts, IpNet, Limit, NewCustomers, Operation, Outcome,
    RiskRules, Velocity, DAY_NS, MINUTE_NS,
};
use farthing_core::{Currency, CustomerId, MerchantId, PublicId, RiskDecisionId};
use farthing_store::risk::HOUR_NS;
use farthing_store::{RiskDecisionRecord, Tx};
use serde::{Deserialize, Serialize};

use crate::cache::NewsCache;
use crate::ids::new_sequential_id;
use crate::{App, AppError, Mode};

/// Most entries in one block list.
pub const MAX_BLOCK_ENTRIES: usize = 10_000;

/// The rules as the API takes and shows them (`PUT /v1/risk/rules`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesDoc {
    /// Limits per currency, in its minor units (one entry per currency).
    #[serde(default)]
    pub limits: Vec<LimitDoc>,
    /// Who counts as a new customer (for `new_customer_per_payment_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_customers: Option<NewCustomersDoc>,
    /// Attempts per payer per minute.
    #[serde(default)]
    pub velocity: VelocityDoc,
    /// Payers refused whatever they pay.
    #[serde(default)]
    pub block: BlockDoc,
}

/// One currency's limits; a missing field is no limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitDoc {
    /// `XTR`, `BTC`, `USD`, …
    #[schema(example = "XTR")]
    pub currency: String,
    /// The largest single payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_payment_max: Option<u64>,
    /// The most one customer may pay in a day — the current hour and the 23 before it — this
    /// payment included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_customer_day_max: Option<u64>,
    /// The largest single payment of a new customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_customer_per_payment_max: Option<u64>,
    /// Payments above this need step-up: the merchant's authenticator code in the
    /// `Farthing-Step-Up` header for API operations; buyer-side operations are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up_above: Option<u64>,
}

/// A customer is new while younger than `days` and with fewer than `payments` payments (a zero
/// leaves that half out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomersDoc {
    /// Days since first seen.
    #[serde(default)]
    pub days: u32,
    /// Payments made.
    #[serde(default)]
    pub payments: u32,
}

/// Velocity per payer (customer, else Telegram user, else client address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VelocityDoc {
    /// Attempts in a minute, this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_per_minute: Option<u32>,
    /// Failed attempts (refused, or not enough balance) in a minute before a pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures_per_minute: Option<u32>,
}

/// Block lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockDoc {
    /// Telegram user ids.
    #[serde(default)]
    pub telegram_users: Vec<i64>,
    /// Wallet addresses or Lightning node keys (compared case-insensitively).
    #[serde(default)]
    pub wallets: Vec<String>,
    /// Client addresses or networks: `203.0.113.7`, `2001:db8::/32`.
    #[serde(default)]
    pub ips: Vec<String>,
}

impl RulesDoc {
    /// The rules, checked: every problem is an `invalid_risk_rules` error naming its field.
    pub fn to_rules(&self) -> Result<RiskRules, AppError> {
        let bad = |param: String, message: String| {
            AppError::invalid("invalid_risk_rules", message).param(param)
        };
        let mut limits: Vec<Limit> = Vec::new();
        for (i, doc) in self.limits.iter().enumerate() {
            let currency = Currency::parse(&doc.currency).map_err(|_| {
                bad(
                    format!("limits[{i}].currency"),
                    format!("unknown currency {:?}", doc.currency),
                )
            })?;
            if limits.iter().any(|limit| limit.currency == currency) {
                return Err(bad(
                    format!("limits[{i}].currency"),
                    format!("{} has two entries: give one per currency", currency.code()),
                ));
            }
            if let (Some(per), Some(day)) = (doc.per_payment_max, doc.per_customer_day_max) {
                if day < per {
                    return Err(bad(
                        format!("limits[{i}].per_customer_day_max"),
                        format!("the daily limit ({day}) is below the per-payment limit ({per}): the per-payment limit could never be reached"),
                    ));
                }
            }
            for (name, value) in [
                ("per_payment_max", doc.per_payment_max),
                ("per_customer_day_max", doc.per_customer_day_max),
                (
                    "new_customer_per_payment_max",
                    doc.new_customer_per_payment_max,
                ),
                ("step_up_above", doc.step_up_above),
            ] {
                if value.is_some_and(|v| i64::try_from(v).is_err()) {
                    return Err(bad(
                        format!("limits[{i}].{name}"),
                        format!("{name} is larger than any amount farthing stores"),
                    ));
                }
            }
            limits.push(Limit {
                currency,
                per_payment_max: doc.per_payment_max,
                per_customer_day_max: doc.per_customer_day_max,
                new_customer_per_payment_max: doc.new_customer_per_payment_max,
                step_up_above: doc.step_up_above,
            });
        }
        let block = &self.block;
        for (name, len) in [
            ("telegram_users", block.telegram_users.len()),
            ("wallets", block.wallets.len()),
            ("ips", block.ips.len()),
        ] {
            if len > MAX_BLOCK_ENTRIES {
                return Err(bad(
                    format!("block.{name}"),
                    format!("block.{name} holds {len} entries, at most {MAX_BLOCK_ENTRIES}"),
                ));
            }
        }
        let mut wallets = Vec::with_capacity(block.wallets.len());
        for (i, wallet) in block.wallets.iter().enumerate() {
            let wallet = wallet.trim().to_ascii_lowercase();
            if wallet.is_empty() || wallet.len() > 200 {
                return Err(bad(
                    format!("block.wallets[{i}]"),
                    "a wallet address must be 1 to 200 characters".to_owned(),
                ));
            }
            wallets.push(wallet);
        }
        let networks = block
            .ips
            .iter()
            .enumerate()
            .map(|(i, text)| {
                IpNet::parse(text).map_err(|message| bad(format!("block.ips[{i}]"), message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RiskRules {
            limits,
            new_customers: self.new_customers.map(|doc| NewCustomers {
                days: doc.days,
                payments: doc.payments,
            }),
            velocity: Velocity {
                attempts_per_minute: self.velocity.attempts_per_minute,
                failures_per_minute: self.velocity.failures_per_minute,
            },
            block: BlockLists {
                telegram_users: block.telegram_users.clone(),
                wallets,
                networks,
            },
        })
    }
}

/// The rules cache and the velocity windows, held by [`App`].
pub(crate) struct RiskState {
    /// Dropped on news of a change (`Topic::RiskRules`), not trusted while news may be missed.
    pub(crate) rules: NewsCache<(Mode, MerchantId), Arc<RiskRules>>,
    windows: Mutex<HashMap<(Mode, MerchantId, Payer), Window>>,
    spend: Mutex<HashMap<(Mode, MerchantId, CustomerId, Currency), Spend>>,
}

impl Default for RiskState {
    fn default() -> Self {
        RiskState {
            rules: NewsCache::new(MAX_RULE_SETS),
            windows: Mutex::default(),
            spend: Mutex::default(),
        }
    }
}

/// Rule sets cached at most (one per merchant and mode).
const MAX_RULE_SETS: usize = 100_000;

/// Who a velocity window counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Payer {
    Customer(CustomerId),
    Telegram(i64),
    Ip(IpAddr),
}

/// Two counts per time bucket over the last `N` buckets of `WIDTH_NS` each: constant memory
/// and constant time however many events land in them. Bucket `t / WIDTH_NS` lives at
/// `(t / WIDTH_NS) % N` and is reset when a newer bucket takes its place.
struct Buckets<const N: usize, const WIDTH_NS: u64> {
    /// (bucket number, first count, second count).
    slots: [(u64, u64, u64); N],
}

impl<const N: usize, const WIDTH_NS: u64> Buckets<N, WIDTH_NS> {
    fn new() -> Self {
        Buckets {
            slots: [(0, 0, 0); N],
        }
    }

    /// The bucket of the time `at_ns`, for adding to it.
    fn at(&mut self, at_ns: u64) -> &mut (u64, u64, u64) {
        let number = at_ns / WIDTH_NS;
        let slot = &mut self.slots[(number % N as u64) as usize];
        if slot.0 != number {
            *slot = (number, 0, 0);
        }
        slot
    }

    /// Both counts summed over the bucket of `now_ns` and the `N - 1` before it (saturating).
    fn sums(&self, now_ns: u64) -> (u64, u64) {
        let current = now_ns / WIDTH_NS;
        self.slots
            .iter()
            .filter(|(number, _, _)| *number <= current && current - number < N as u64)
            .fold((0u64, 0u64), |(a, b), (_, x, y)| {
                (a.saturating_add(*x), b.saturating_add(*y))
            })
    }
}

/// Width of one bucket of a velocity window, in nanoseconds.
const BUCKET_NS: u64 = 5_000_000_000;

/// Buckets in a window: a minute.
const BUCKETS: usize = (MINUTE_NS / BUCKET_NS) as usize;

/// The last minute's attempts and failures of one payer, in five-second buckets (a hot
/// customer of a pay-per-use API makes thousands of charges a minute).
type Window = Buckets<BUCKETS, BUCKET_NS>;

/// Attempts and failures of `window` in the last minute before `now_ns`.
fn counts(window: &Window, now_ns: u64) -> (u32, u32) {
    let (attempts, failures) = window.sums(now_ns);
    let narrow = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (narrow(attempts), narrow(failures))
}

/// Hours in the window of a daily limit: the current one and the 23 before it.
const SPEND_HOURS: usize = 24;

/// How long a customer's cached spend is used before it is read from the store again.
const SPEND_TTL_NS: u64 = 60 * 1_000_000_000;

/// A customer's spend in one currency per hour (the first count of each bucket).
struct Spend {
    /// When it was read from the store.
    read_at_ns: u64,
    hours: Buckets<SPEND_HOURS, HOUR_NS>,
}

impl Spend {
    fn add(&mut self, at_ns: u64, amount: u64) {
        let slot = self.hours.at(at_ns);
        slot.1 = slot.1.saturating_add(amount);
    }

    fn total(&self, now_ns: u64) -> u64 {
        self.hours.sums(now_ns).0
    }
}

/// Windows kept at most; past it, the stale ones are dropped (a flood of new payers cannot
/// grow memory without bound).
const MAX_WINDOWS: usize = 100_000;

impl App {
    /// The merchant's rules in `mode` (cached; read through `tx` the first time).
    fn risk_rules(
        &self,
        tx: &mut Tx<'_, '_>,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Arc<RiskRules>, AppError> {
        self.inner
            .risk
            .rules
            .get_or_read((mode, merchant), || match tx.risk_rules(merchant)? {
                Some(json) => {
                    let doc: RulesDoc = serde_json::from_str(&json).map_err(|error| {
                        AppError::internal(format!("stored risk rules: {error}"))
                    })?;
                    Ok(Arc::new(doc.to_rules()?))
                }
                None => Ok(Arc::new(RiskRules::default())),
            })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it consistent (each update is one insert
    // or removal), so a poisoned lock is still safe to use.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stores the merchant's rules (checked first) in the current job. Call [`forget_rules`] after
/// the job, so that the next payment reads them.
pub fn store_rules(
    tx: &mut Tx<'_, '_>,
    merchant: MerchantId,
    doc: &RulesDoc,
) -> Result<(), AppError> {
    doc.to_rules()?;
    let json = serde_json::to_string(doc).map_err(AppError::internal)?;
    Ok(tx.put_risk_rules(merchant, &json)?)
}

/// Drops the cached rules of `merchant` in `mode`: the next payment reads them from the store.
pub fn forget_rules(app: &App, mode: Mode, merchant: MerchantId) {
    app.inner.risk.rules.forget(&(mode, merchant));
}

/// The merchant's rules as stored (empty when it set none).
pub fn get_rules(app: &App, mode: Mode, merchant: MerchantId) -> Result<RulesDoc, AppError> {
    match app.read(mode, |reader| reader.risk_rules(merchant))? {
        Some(json) => serde_json::from_str(&json)
            .map_err(|error| AppError::internal(format!("stored risk rules: {error}"))),
        None => Ok(RulesDoc::default()),
    }
}

/// One payment attempt put to the merchant's rules. Build it in the adapter, call
/// [`RiskCheck::guard`] inside the job that books the payment, then [`RiskCheck::finish`] after
/// the job. Cheap to clone (the clones share what `finish` writes).
#[derive(Clone)]
pub struct RiskCheck {
    app: App,
    mode: Mode,
    merchant: MerchantId,
    operation: Operation,
    telegram_user: Option<i64>,
    wallet: Option<String>,
    ip: Option<IpAddr>,
    stepped_up: bool,
    subject: Option<String>,
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    /// The last decision made.
    record: Option<RiskDecisionRecord>,
    /// Whether it was written in the job (and the job's writes stood).
    written: bool,
    /// The velocity window it counted in, to mark it failed.
    payer: Option<Payer>,
    /// When it was counted; taken when it is marked failed (once).
    at_ns: Option<u64>,
}

impl RiskCheck {
    /// An attempt of `operation` under `merchant`'s rules in `mode`.
    pub fn new(app: &App, mode: Mode, merchant: MerchantId, operation: Operation) -> RiskCheck {
        RiskCheck {
            app: app.clone(),
            mode,
            merchant,
            operation,
            telegram_user: None,
            wallet: None,
            ip: None,
            stepped_up: false,
            subject: None,
            pending: Arc::default(),
        }
    }

    /// The service.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The mode the payment is in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whose rules (and whose payment).
    pub fn merchant(&self) -> MerchantId {
        self.merchant
    }

    /// The payer's Telegram user (else read from a `tg:` customer).
    pub fn telegram_user(mut self, user: Option<i64>) -> RiskCheck {
        self.telegram_user = user;
        self
    }

    /// The payer's (or a payout's destination) wallet address or node key.
    pub fn wallet(mut self, wallet: Option<String>) -> RiskCheck {
        self.wallet = wallet;
        self
    }

    /// The buyer's client address (only where the buyer's own device sent the request).
    pub fn ip(mut self, ip: Option<IpAddr>) -> RiskCheck {
        self.ip = ip;
        self
    }

    /// Step-up authentication was passed for this attempt.
    pub fn stepped_up(mut self, stepped_up: bool) -> RiskCheck {
        self.stepped_up = stepped_up;
        self
    }

    /// What is being paid (`inv_…`, `chg_…`), shown with the decision.
    pub fn subject(mut self, subject: impl Into<String>) -> RiskCheck {
        self.subject = Some(subject.into());
        self
    }

    /// Decides the payment of `amount_minor` `currency` by `customer`, then runs `book` if it
    /// is allowed. A refusal answers `risk_refused`, a needed step-up `step_up_required`; either
    /// way nothing of the job is written and [`RiskCheck::finish`] records the decision.
    pub fn guard<T>(
        &self,
        tx: &mut Tx<'_, '_>,
        amount_minor: u64,
        currency: Currency,
        customer: Option<CustomerId>,
        book: impl FnOnce(&mut Tx<'_, '_>) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        let rules = self.app.risk_rules(tx, self.mode, self.merchant)?;
        if rules.is_empty() {
            return book(tx);
        }
        let now_ns = tx.now_ns();
        let mut telegram_user = self.telegram_user;
        let mut facts = None;
        if let Some(customer) = customer {
            let record = tx
                .customer(customer)?
                .filter(|found| found.merchant == self.merchant);
            if let Some(record) = record {
                telegram_user = telegram_user.or_else(|| {
                    record
                        .external_id
                        .as_deref()
                        .and_then(|id| id.strip_prefix("tg:"))
                        .and_then(|id| id.parse().ok())
                });
                let paid_last_day_minor = if rules.needs_day_total(currency) {
                    self.day_total(tx, customer, currency, now_ns)?
                } else {
                    0
                };
                let payments = match rules.payments_to_count(currency) {
                    Some(cap) => tx.customer_payments(customer, cap)?,
                    None => 0,
                };
                facts = Some(CustomerFacts {
                    age_ns: now_ns.saturating_sub(record.created_at_ns),
                    payments,
                    paid_last_day_minor,
                });
            }
        }
        if customer.is_none() && telegram_user.is_some() {
            // A Telegram user who is no customer yet (a first pre-checkout): the newest
            // customer there is, who has paid nothing.
            facts = Some(CustomerFacts {
                age_ns: 0,
                payments: 0,
                paid_last_day_minor: 0,
            });
        }
        let payer = customer
            .map(Payer::Customer)
            .or(telegram_user.map(Payer::Telegram))
            .or(self.ip.map(Payer::Ip));
        let (attempts, failures) = payer.map_or((0, 0), |payer| self.count(payer, now_ns));
        let decision = risk::evaluate(
            &rules,
            &Attempt {
                operation: self.operation,
                amount_minor,
                currency,
                customer: facts,
                telegram_user,
                wallet: self.wallet.as_deref(),
                ip: self.ip,
                attempts_last_minute: attempts,
                failures_last_minute: failures,
                stepped_up: self.stepped_up,
            },
        );
        let record = RiskDecisionRecord {
            id: new_sequential_id::<RiskDecisionId>(),
            merchant: self.merchant,
            operation: self.operation.as_str().to_owned(),
            outcome: decision.outcome.as_str().to_owned(),
            rule: decision.rule.to_owned(),
            reason: decision.reason.clone(),
            customer,
            telegram_user,
            subject: self.subject.clone(),
            amount_minor,
            currency,
            created_at_ns: now_ns,
        };
        let id = record.id.encode();
        if decision.outcome == Outcome::Allow {
            tx.append_risk_decision(&record)?;
        }
        {
            let mut pending = lock(&self.pending);
            pending.written = decision.outcome == Outcome::Allow;
            pending.record = Some(record);
            pending.payer = payer;
            pending.at_ns = Some(now_ns);
        }
        match decision.outcome {
            Outcome::Allow => {}
            Outcome::Refuse => {
                self.failed();
                return Err(AppError::RiskRefused {
                    code: "risk_refused",
                    message: format!(
                        "the merchant's risk rules refused this payment ({}: {}); decision {id}",
                        decision.rule, decision.reason
                    ),
                    decision: id,
                });
            }
            Outcome::StepUp => {
                self.failed();
                return Err(AppError::RiskRefused {
                    code: "step_up_required",
                    message: format!(
                        "{}; send a current code of the merchant's authenticator in the \
                         Farthing-Step-Up header (decision {id})",
                        decision.reason
                    ),
                    decision: id,
                });
            }
        }
        let booked = book(tx);
        match (&booked, customer) {
            (Err(_), _) => {
                // The job's writes, the allowance with them, are undone: `finish` writes it.
                self.failed();
            }
            (Ok(_), Some(customer)) => {
                // Counted at once (a pre-checkout's payment follows within seconds).
                let key = (self.mode, self.merchant, customer, currency);
                if let Some(spend) = lock(&self.app.inner.risk.spend).get_mut(&key) {
                    spend.add(now_ns, amount_minor);
                }
            }
            (Ok(_), None) => {}
        }
        booked
    }

    /// What `customer` paid in `currency` in the current hour and the 23 before it: from the
    /// cache, read from the store when missing or older than [`SPEND_TTL_NS`] (so payments no
    /// risk check saw — a rail's top-up — count within a minute).
    fn day_total(
        &self,
        tx: &mut Tx<'_, '_>,
        customer: CustomerId,
        currency: Currency,
        now_ns: u64,
    ) -> Result<u64, AppError> {
        let key = (self.mode, self.merchant, customer, currency);
        // On a database other instances share, their payments count at once too: the store is
        // read every time, inside the job, so under the lock that orders every instance's jobs.
        let shared = self.app.store(self.mode).is_shared();
        if let (false, Some(spend)) = (shared, lock(&self.app.inner.risk.spend).get(&key)) {
            if now_ns.saturating_sub(spend.read_at_ns) < SPEND_TTL_NS && now_ns >= spend.read_at_ns
            {
                return Ok(spend.total(now_ns));
            }
        }
        let first_hour = (now_ns / HOUR_NS).saturating_sub(SPEND_HOURS as u64 - 1);
        // Ids carry the system clock's millisecond; the window is the service's clock. An hour
        // of slack covers the two drifting apart.
        let ids_from_ns = crate::ids::system_now_ns().saturating_sub(DAY_NS + HOUR_NS);
        let hours =
            tx.customer_paid_by_hour(customer, currency, first_hour * HOUR_NS, ids_from_ns)?;
        let mut spend = Spend {
            read_at_ns: now_ns,
            hours: Buckets::new(),
        };
        for (hour, amount) in hours {
            spend.add(hour * HOUR_NS, amount);
        }
        let total = spend.total(now_ns);
        if shared {
            return Ok(total);
        }
        let mut cache = lock(&self.app.inner.risk.spend);
        if cache.len() >= MAX_WINDOWS {
            cache.retain(|_, spend| now_ns.saturating_sub(spend.read_at_ns) < SPEND_TTL_NS);
        }
        cache.insert(key, spend);
        Ok(total)
    }

    /// Counts this attempt in the payer's window; returns the attempts and failures before it.
    fn count(&self, payer: Payer, now_ns: u64) -> (u32, u32) {
        let mut windows = lock(&self.app.inner.risk.windows);
        if windows.len() >= MAX_WINDOWS {
            windows.retain(|_, window| window.sums(now_ns) != (0, 0));
        }
        let window = windows
            .entry((self.mode, self.merchant, payer))
            .or_insert_with(Window::new);
        let before = counts(window, now_ns);
        let bucket = window.at(now_ns);
        bucket.1 = bucket.1.saturating_add(1);
        before
    }

    /// The attempt failed (refused, or the booking after an allowance did not happen).
    fn failed(&self) {
        let mut pending = lock(&self.pending);
        pending.written = false;
        if let (Some(payer), Some(at_ns)) = (pending.payer, pending.at_ns.take()) {
            let key = (self.mode, self.merchant, payer);
            if let Some(window) = lock(&self.app.inner.risk.windows).get_mut(&key) {
                let bucket = window.at(at_ns);
                bucket.2 = bucket.2.saturating_add(1);
            }
        }
    }

    /// After the job: records a decision the job could not keep (a refusal, or an allowance
    /// whose booking failed). Call it whatever the job's result.
    pub async fn finish(&self) -> Result<(), AppError> {
        let record = {
            let mut pending = lock(&self.pending);
            if pending.written {
                None
            } else {
                pending.record.take()
            }
        };
        let Some(record) = record else {
            return Ok(());
        };
        self.app
            .run(self.mode, move |tx| -> Result<(), AppError> {
                Ok(tx.append_risk_decision(&record)?)
            })
            .await
    }
}
