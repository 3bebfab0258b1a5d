//! Risk rules and decisions (SPEC S1, S2): each merchant's rules (as the JSON the API takes,
//! parsed by the service), the append-only record of every decision, and the facts the rules
//! read about a customer (what it paid in a window, how many payments it made).

use farthing_core::{Currency, CustomerId, MerchantId, PublicId, RiskDecisionId};

use crate::business::{page_where, ListFilter, Page, PageRequest};
use crate::codec::sql_amount;
use crate::sql::{args, Db, Row};
use crate::{Reader, StoreError, Tx};

/// Migration 21.
pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE risk_rules (
        merchant_id   BLOB PRIMARY KEY,
        rules         TEXT NOT NULL,
        updated_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE risk_decisions (
        id            BLOB PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        operation     TEXT NOT NULL,
        -- The outcome (`status`, the name the shared list filter reads).
        status        TEXT NOT NULL,
        rule          TEXT NOT NULL,
        reason        TEXT NOT NULL,
        customer_id   BLOB,
        telegram_user INTEGER,
        subject       TEXT,
        amount_minor  INTEGER NOT NULL,
        currency      TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX risk_decisions_by_merchant ON risk_decisions (merchant_id, id);
"#;

const COLUMNS: &str = "id, merchant_id, operation, status, rule, reason, customer_id, \
                       telegram_user, subject, amount_minor, currency, created_at_ns";

/// One recorded decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskDecisionRecord {
    /// `rsk_…`, time-ordered.
    pub id: RiskDecisionId,
    /// Whose rules decided.
    pub merchant: MerchantId,
    /// `charge`, `balance_payment`, `pre_checkout`, `mini_app`, `payout`.
    pub operation: String,
    /// `allow`, `step_up`, `refuse`.
    pub outcome: String,
    /// The deciding rule (`none` for an allowance).
    pub rule: String,
    /// Why, for the merchant.
    pub reason: String,
    /// The paying customer, when known.
    pub customer: Option<CustomerId>,
    /// The payer's Telegram user, when known.
    pub telegram_user: Option<i64>,
    /// What was being paid (`inv_…`, a charge's idempotency subject, a payout's hash).
    pub subject: Option<String>,
    /// The amount in minor units.
    pub amount_minor: u64,
    /// Its currency.
    pub currency: Currency,
    /// When.
    pub created_at_ns: u64,
}

fn raw_id(bytes: Vec<u8>, what: &str) -> Result<u128, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("risk_decisions.{what} is not 16 bytes")))?;
    Ok(u128::from_be_bytes(array))
}

fn from_row(row: &Row<'_>) -> Result<RiskDecisionRecord, StoreError> {
    let customer: Option<Vec<u8>> = row.get(6)?;
    let amount: i64 = row.get(9)?;
    let currency: String = row.get(10)?;
    let created: i64 = row.get(11)?;
    Ok(RiskDecisionRecord {
        id: RiskDecisionId::from_raw(raw_id(row.get(0)?, "id")?),
        merchant: MerchantId(raw_id(row.get(1)?, "merchant_id")?),
        operation: row.get(2)?,
        outcome: row.get(3)?,
        rule: row.get(4)?,
        reason: row.get(5)?,
        customer: customer
            .map(|bytes| raw_id(bytes, "customer_id").map(CustomerId::from_raw))
            .transpose()?,
        telegram_user: row.get(7)?,
        subject: row.get(8)?,
        amount_minor: u64::try_from(amount)
            .map_err(|_| StoreError::Corrupt("risk_decisions.amount_minor".into()))?,
        currency: Currency::parse(&currency)
            .map_err(|_| StoreError::Corrupt("risk_decisions.currency".into()))?,
        created_at_ns: u64::try_from(created)
            .map_err(|_| StoreError::Corrupt("risk_decisions.created_at_ns".into()))?,
    })
}

/// The first id of a row created at or after `at_ns` (ids start with their millisecond).
fn first_id_at(at_ns: u64) -> [u8; 16] {
    (u128::from(at_ns / 1_000_000) << 80).to_be_bytes()
}

impl Tx<'_, '_> {
    /// Stores (or replaces) the merchant's rules, as JSON.
    pub fn put_risk_rules(&mut self, merchant: MerchantId, rules: &str) -> Result<(), StoreError> {
        let now = sql_amount(self.now_ns())?;
        self.db().execute(
            "INSERT INTO risk_rules (merchant_id, rules, updated_at_ns) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (merchant_id) DO UPDATE SET rules = ?2, updated_at_ns = ?3",
            args![merchant.to_be_bytes(), rules, now],
        )?;
        // Other instances keep the rules in memory.
        self.announce(crate::topics::Topic::RiskRules)
    }

    /// Appends a decision.
    pub fn append_risk_decision(&mut self, record: &RiskDecisionRecord) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO risk_decisions ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            args![
                record.id.raw().to_be_bytes(),
                record.merchant.to_be_bytes(),
                record.operation,
                record.outcome,
                record.rule,
                record.reason,
                record.customer.map(|c| c.raw().to_be_bytes()),
                record.telegram_user,
                record.subject,
                sql_amount(record.amount_minor)?,
                record.currency.code(),
                sql_amount(record.created_at_ns)?,
            ],
        )?;
        Ok(())
    }
}

fn rules(db: Db<'_>, merchant: MerchantId) -> Result<Option<String>, StoreError> {
    db.row(
        "SELECT rules FROM risk_rules WHERE merchant_id = ?1",
        args![merchant.to_be_bytes()],
        |row| row.get(0),
    )
}

/// Nanoseconds in an hour: the spend of the daily limits is kept per hour.
pub const HOUR_NS: u64 = 3_600_000_000_000;

fn paid_by_hour(
    db: Db<'_>,
    customer: CustomerId,
    currency: Currency,
    since_ns: u64,
    ids_from_ns: u64,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let key = customer.raw().to_be_bytes();
    let since = sql_amount(since_ns)?;
    let hour = sql_amount(HOUR_NS)?;
    // Charges: ids begin with their creation millisecond, so `ids_from_ns` bounds the walk of
    // the index to recent charges; `created_at_ns` decides. Invoices the customer paid.
    // Sums cast back to BIGINT: PostgreSQL sums BIGINTs as NUMERIC (no amount the ledger
    // allows comes near the limit: amounts are at most i64::MAX each, and a day's spend is
    // bounded by the customer's balance).
    db.rows(
        "SELECT created_at_ns / ?5, CAST(SUM(amount_minor) AS BIGINT) FROM charges \
         WHERE customer_id = ?1 AND id >= ?2 AND created_at_ns >= ?3 AND currency = ?4 \
         GROUP BY 1 \
         UNION ALL \
         SELECT paid_at_ns / ?5, CAST(SUM(paid_amount) AS BIGINT) FROM invoices \
         WHERE paid_customer = ?1 AND paid_at_ns >= ?3 AND currency = ?4 GROUP BY 1",
        args![key, first_id_at(ids_from_ns), since, currency.code(), hour],
        |row| {
            let (hour, amount): (i64, i64) = (row.get(0)?, row.get(1)?);
            Ok((
                u64::try_from(hour).unwrap_or(0),
                u64::try_from(amount).unwrap_or(0),
            ))
        },
    )
}

fn payments(db: Db<'_>, customer: CustomerId, cap: u32) -> Result<u64, StoreError> {
    // Subqueries named: PostgreSQL requires an alias for each.
    let count: Option<i64> = db.row(
        "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM charges WHERE customer_id = ?1 \
         LIMIT ?2) AS c) + (SELECT COUNT(*) FROM (SELECT 1 FROM invoices \
         WHERE paid_customer = ?1 LIMIT ?2) AS i)",
        args![customer.raw().to_be_bytes(), i64::from(cap)],
        |row| row.get(0),
    )?;
    Ok(count.map_or(0, |count| u64::try_from(count).unwrap_or(0)))
}

impl Tx<'_, '_> {
    /// The merchant's rules (JSON), if it set any, as of this point of the batch.
    pub fn risk_rules(&mut self, merchant: MerchantId) -> Result<Option<String>, StoreError> {
        rules(self.db(), merchant)
    }

    /// What `customer` paid in `currency` since `since_ns` (charges, and invoices it paid), in
    /// minor units per hour (`time / HOUR_NS`, an hour may appear twice); as of this point of
    /// the batch. Only charges whose id was made at or after `ids_from_ns` (by the clock ids
    /// are made with) are read: pass a bound a little before `since_ns`.
    pub fn customer_paid_by_hour(
        &mut self,
        customer: CustomerId,
        currency: Currency,
        since_ns: u64,
        ids_from_ns: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        paid_by_hour(self.db(), customer, currency, since_ns, ids_from_ns)
    }

    /// How many payments `customer` made (charges and paid invoices), counting up to `cap` of
    /// each kind.
    pub fn customer_payments(&mut self, customer: CustomerId, cap: u32) -> Result<u64, StoreError> {
        payments(self.db(), customer, cap)
    }
}

impl Reader<'_> {
    /// The merchant's rules (JSON), if it set any.
    pub fn risk_rules(&self, merchant: MerchantId) -> Result<Option<String>, StoreError> {
        rules(self.db(), merchant)
    }

    /// A page of the merchant's decisions, newest first; `filter.status` is the outcome.
    pub fn risk_decisions(
        &self,
        merchant: MerchantId,
        request: PageRequest,
        filter: &ListFilter,
    ) -> Result<Page<RiskDecisionRecord>, StoreError> {
        page_where(
            self.db(),
            "risk_decisions",
            COLUMNS,
            merchant,
            request,
            filter,
            from_row,
        )
    }
}
