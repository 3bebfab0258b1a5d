//! Business rows beside the ledger: merchants, API keys, customers, invoices, charges,
//! refunds, the event outbox, webhook endpoints and deliveries, idempotency keys.
//!
//! Writes are methods on [`Tx`] (inside the writer's transaction, so an invoice's status, its
//! ledger transfer and its event commit together); reads are methods on [`Reader`]. Ids are
//! 16-byte big-endian blobs and time-ordered, so `ORDER BY id DESC` is newest first and list
//! cursors (`starting_after`) are plain id comparisons.

use std::rc::Rc;

use farthing_core::invoice::{Invoice, InvoiceAmount, InvoicePayment, InvoiceStatus};
use farthing_core::{
    ChargeId, Currency, CustomerId, EventId, InvoiceId, MerchantId, Rail, RefundId, TransferId,
    WebhookEndpointId,
};

use crate::batch::Endpoints;
use crate::codec::sql_amount;
use crate::sql::{args, Arg, Db, Row};
use crate::{Reader, StoreError, Tx};

/// The business tables (migration 2).
pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE merchants (
        id            BLOB PRIMARY KEY,
        name          TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Only a SHA-256 of each key is kept; the key itself is shown once.
    CREATE TABLE api_keys (
        key_hash      BLOB PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        scopes        TEXT NOT NULL,
        hint          TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL,
        revoked_at_ns INTEGER
    ) WITHOUT ROWID;

    CREATE TABLE customers (
        id            BLOB PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        external_id   TEXT,
        metadata      TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX customers_by_merchant ON customers (merchant_id, id);
    CREATE UNIQUE INDEX customers_by_external_id ON customers (merchant_id, external_id);

    CREATE TABLE invoices (
        id              BLOB PRIMARY KEY,
        merchant_id     BLOB NOT NULL,
        customer_id     BLOB,
        status          TEXT NOT NULL,
        currency        TEXT NOT NULL,
        amount_minor    INTEGER,
        amount_min      INTEGER,
        amount_max      INTEGER,
        presets         TEXT,
        description     TEXT NOT NULL,
        payload         TEXT,
        rails           TEXT NOT NULL,
        metadata        TEXT NOT NULL,
        paid_amount     INTEGER,
        paid_rail       TEXT,
        paid_customer   BLOB,
        paid_transfer   BLOB,
        paid_at_ns      INTEGER,
        refunded_minor  INTEGER NOT NULL,
        created_at_ns   INTEGER NOT NULL,
        expires_at_ns   INTEGER NOT NULL,
        closed_at_ns    INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX invoices_by_merchant ON invoices (merchant_id, id);
    -- Exactly the open invoices, in expiry order (the scheduler reads what expires).
    CREATE TABLE invoice_expiries (
        expires_at_ns INTEGER NOT NULL,
        id            BLOB NOT NULL,
        PRIMARY KEY (expires_at_ns, id)
    ) WITHOUT ROWID;

    CREATE TABLE charges (
        id             BLOB PRIMARY KEY,
        merchant_id    BLOB NOT NULL,
        customer_id    BLOB NOT NULL,
        currency       TEXT NOT NULL,
        amount_minor   INTEGER NOT NULL,
        refunded_minor INTEGER NOT NULL,
        description    TEXT NOT NULL,
        created_at_ns  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX charges_by_merchant ON charges (merchant_id, id);

    CREATE TABLE refunds (
        id            BLOB PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        invoice_id    BLOB,
        charge_id     BLOB,
        customer_id   BLOB NOT NULL,
        currency      TEXT NOT NULL,
        amount_minor  INTEGER NOT NULL,
        reason        TEXT,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX refunds_by_merchant ON refunds (merchant_id, id);

    -- The outbox: written in the same transaction as the change it describes.
    CREATE TABLE events (
        id            BLOB PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        type          TEXT NOT NULL,
        data          TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX events_by_merchant ON events (merchant_id, id);

    CREATE TABLE webhook_endpoints (
        id              BLOB PRIMARY KEY,
        merchant_id     BLOB NOT NULL,
        url             TEXT NOT NULL,
        secret          TEXT NOT NULL,
        events          TEXT NOT NULL,
        status          TEXT NOT NULL,
        disabled_reason TEXT,
        created_at_ns   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX webhook_endpoints_by_merchant ON webhook_endpoints (merchant_id, id);

    CREATE TABLE webhook_deliveries (
        event_id           BLOB NOT NULL,
        endpoint_id        BLOB NOT NULL,
        status             TEXT NOT NULL,
        attempts           INTEGER NOT NULL,
        next_attempt_at_ns INTEGER,
        last_status_code   INTEGER,
        last_error         TEXT,
        updated_at_ns      INTEGER NOT NULL,
        PRIMARY KEY (event_id, endpoint_id)
    ) WITHOUT ROWID;
    -- Exactly the deliveries still to attempt, in time order.
    CREATE TABLE delivery_queue (
        next_attempt_at_ns INTEGER NOT NULL,
        event_id           BLOB NOT NULL,
        endpoint_id        BLOB NOT NULL,
        PRIMARY KEY (next_attempt_at_ns, event_id, endpoint_id)
    ) WITHOUT ROWID;

    CREATE TABLE idempotency_keys (
        merchant_id   BLOB NOT NULL,
        key           TEXT NOT NULL,
        fingerprint   BLOB NOT NULL,
        status        INTEGER NOT NULL,
        body          TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL,
        PRIMARY KEY (merchant_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ns);
"#;

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn id_from<T>(bytes: Vec<u8>, make: fn(u128) -> T) -> Result<T, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt("an id is not 16 bytes"))?;
    Ok(make(u128::from_be_bytes(array)))
}

fn opt_id<T>(bytes: Option<Vec<u8>>, make: fn(u128) -> T) -> Result<Option<T>, StoreError> {
    bytes.map(|bytes| id_from(bytes, make)).transpose()
}

fn u64_from(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what}")))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| corrupt(error.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| corrupt(format!("bad JSON column: {error}")))
}

/// A page of a list: newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Whether older items follow.
    pub has_more: bool,
}

/// Where a list starts: at most `limit` items older than `starting_after`, or, paging back,
/// the `limit` items just newer than `ending_before`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Most items (1..=100).
    pub limit: usize,
    /// Start after this raw id (exclusive); `None` for the newest.
    pub starting_after: Option<u128>,
    /// End before this raw id (exclusive): the page of items just newer than it, still newest
    /// first, `has_more` telling whether newer ones follow. Not with `starting_after`.
    pub ending_before: Option<u128>,
}

impl PageRequest {
    /// The newest `limit` items.
    pub fn newest(limit: usize) -> Self {
        PageRequest {
            limit,
            ..PageRequest::default()
        }
    }
}

/// What a list is narrowed to, besides paging. Ids are time-ordered, so a creation-time range
/// is an id range on the same index walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only rows with this `status`.
    pub status: Option<String>,
    /// Only rows of this customer (raw id).
    pub customer: Option<u128>,
    /// Only ids at least this (created at or after a time).
    pub id_at_least: Option<u128>,
    /// Only ids below this (created before a time).
    pub id_below: Option<u128>,
}

pub(crate) fn page<T>(
    db: Db<'_>,
    table: &str,
    columns: &str,
    merchant: MerchantId,
    request: PageRequest,
    parse: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    page_where(
        db,
        table,
        columns,
        merchant,
        request,
        &ListFilter::default(),
        parse,
    )
}

/// A page of `table` for `merchant`, newest first, narrowed by `filter` (whose columns the
/// caller knows the table has).
pub(crate) fn page_where<T>(
    db: Db<'_>,
    table: &str,
    columns: &str,
    merchant: MerchantId,
    request: PageRequest,
    filter: &ListFilter,
    parse: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let limit = request.limit.clamp(1, 100);
    // The id window [at_least, below), walked newest first, or oldest first when paging back
    // from `ending_before` (then reversed, so every page reads newest first).
    let below = request
        .starting_after
        .unwrap_or(u128::MAX)
        .min(filter.id_below.unwrap_or(u128::MAX));
    let mut at_least = filter.id_at_least.unwrap_or(0);
    let backwards = match request.ending_before {
        Some(before) => {
            match before.checked_add(1) {
                Some(next) => at_least = at_least.max(next),
                // Nothing is newer than the largest id.
                None => {
                    return Ok(Page {
                        data: Vec::new(),
                        has_more: false,
                    })
                }
            }
            true
        }
        None => false,
    };
    let (below, at_least) = (below.to_be_bytes(), at_least.to_be_bytes());
    let status = filter.status.clone().unwrap_or_default();
    let customer = filter.customer.unwrap_or(0).to_be_bytes();
    // Each filter combination is its own statement (`Db::first_rows` on the limit).
    let mut sql =
        format!("SELECT {columns} FROM {table} WHERE merchant_id = ?1 AND id < ?2 AND id >= ?3");
    let merchant = merchant.to_be_bytes();
    let mut values: Vec<&dyn Arg> = vec![&merchant, &below, &at_least];
    if filter.status.is_some() {
        values.push(&status);
        sql.push_str(&format!(" AND status = ?{}", values.len()));
    }
    if filter.customer.is_some() {
        values.push(&customer);
        sql.push_str(&format!(" AND customer_id = ?{}", values.len()));
    }
    sql.push_str(if backwards {
        " ORDER BY id ASC"
    } else {
        " ORDER BY id DESC"
    });
    let mut data = db.first_rows(&sql, &values, limit + 1, parse)?;
    let has_more = data.len() > limit;
    data.truncate(limit);
    if backwards {
        data.reverse();
    }
    Ok(Page { data, has_more })
}

// ---------------------------------------------------------------------------------------
// Merchants and API keys

/// A merchant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merchant {
    /// Its id.
    pub id: MerchantId,
    /// Shown on checkout pages and receipts.
    pub name: String,
    /// Creation time.
    pub created_at_ns: u64,
}

/// A stored API key (its hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// SHA-256 of the key.
    pub key_hash: [u8; 32],
    /// Whose key.
    pub merchant: MerchantId,
    /// What it may do (`*` for everything).
    pub scopes: Vec<String>,
    /// The key's first characters, to recognise it in lists.
    pub hint: String,
    /// When it was revoked, if it was.
    pub revoked_at_ns: Option<u64>,
}

/// An API key as a merchant's list shows it (never the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyListing {
    /// SHA-256 of the key (its public id is derived from it).
    pub key_hash: [u8; 32],
    /// What it may do.
    pub scopes: Vec<String>,
    /// The key's first characters.
    pub hint: String,
    /// When it was made.
    pub created_at_ns: u64,
    /// When it was revoked, if it was.
    pub revoked_at_ns: Option<u64>,
}

fn merchant_from_row(row: &Row<'_>) -> Result<Merchant, StoreError> {
    Ok(Merchant {
        id: id_from(row.get(0)?, MerchantId)?,
        name: row.get(1)?,
        created_at_ns: u64_from(row.get(2)?, "time")?,
    })
}

impl Tx<'_, '_> {
    /// Creates a merchant; an existing one with the same id is left as it is.
    pub fn insert_merchant(&mut self, merchant: &Merchant) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO merchants (id, name, created_at_ns) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO NOTHING",
            args![
                merchant.id.to_be_bytes(),
                merchant.name,
                sql_amount(merchant.created_at_ns)?
            ],
        )?;
        Ok(())
    }

    /// Revokes the merchant's key with this hash; whether it was live until now.
    pub fn revoke_api_key(
        &mut self,
        merchant: MerchantId,
        key_hash: &[u8; 32],
    ) -> Result<bool, StoreError> {
        let now = self.now_ns();
        self.revoke_api_key_at(merchant, key_hash, now)
    }

    /// Makes a key stop working at `at_ns` (now or later: a rolled key's grace period), unless
    /// it already stops earlier; false when it does (or the key is not the merchant's).
    pub fn revoke_api_key_at(
        &mut self,
        merchant: MerchantId,
        key_hash: &[u8; 32],
        at_ns: u64,
    ) -> Result<bool, StoreError> {
        let at = sql_amount(at_ns)?;
        let changed = self.db().execute(
            "UPDATE api_keys SET revoked_at_ns = ?3 WHERE key_hash = ?1 AND merchant_id = ?2 \
             AND (revoked_at_ns IS NULL OR revoked_at_ns > ?3)",
            args![key_hash, merchant.to_be_bytes(), at],
        )? == 1;
        if changed {
            // Other instances keep checked keys in memory.
            self.announce(crate::topics::Topic::ApiKeys)?;
        }
        Ok(changed)
    }

    /// Removes a merchant that owns nothing but its keys (undoing a creation that could not be
    /// completed in the other mode's database).
    pub fn delete_new_merchant(&mut self, merchant: MerchantId) -> Result<(), StoreError> {
        let id = merchant.to_be_bytes();
        self.db()
            .execute("DELETE FROM api_keys WHERE merchant_id = ?1", args![id])?;
        self.db()
            .execute("DELETE FROM merchants WHERE id = ?1", args![id])?;
        Ok(())
    }

    /// Stores an API key's hash.
    pub fn insert_api_key(&mut self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO api_keys (key_hash, merchant_id, scopes, hint, created_at_ns) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![
                key.key_hash,
                key.merchant.to_be_bytes(),
                json(&key.scopes)?,
                key.hint,
                sql_amount(self.now_ns())?
            ],
        )?;
        Ok(())
    }
}

/// A customer's balance accounts with the merchant, by currency, as stored.
fn customer_accounts(
    db: Db<'_>,
    merchant: MerchantId,
    customer: CustomerId,
) -> Result<Vec<farthing_core::ledger::AccountState>, StoreError> {
    db.rows(
        &format!(
            "SELECT {} FROM accounts WHERE merchant_id = ?1 AND customer_id = ?2 ORDER BY currency",
            crate::codec::ACCOUNT_COLUMNS
        ),
        args![merchant.to_be_bytes(), customer.to_be_bytes()],
        |row| crate::codec::account_from_row(row),
    )
}

/// A balance as the API lists it: currency, posted, available.
fn balance_row(state: &farthing_core::ledger::AccountState) -> (Currency, i128, i128) {
    (
        state.account.currency,
        state.balances.posted(),
        state.balances.available(),
    )
}

impl Reader<'_> {
    /// A page of every merchant of this database, newest first (for the operator).
    pub fn merchants(&self, request: PageRequest) -> Result<Page<Merchant>, StoreError> {
        let limit = request.limit.clamp(1, 100);
        let below = request.starting_after.unwrap_or(u128::MAX).to_be_bytes();
        let mut data = self.db().first_rows(
            "SELECT id, name, created_at_ns FROM merchants WHERE id < ?1 ORDER BY id DESC",
            args![below],
            limit + 1,
            merchant_from_row,
        )?;
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(Page { data, has_more })
    }

    /// A merchant.
    pub fn merchant(&self, id: MerchantId) -> Result<Option<Merchant>, StoreError> {
        self.db().row(
            "SELECT id, name, created_at_ns FROM merchants WHERE id = ?1",
            args![id.to_be_bytes()],
            merchant_from_row,
        )
    }

    /// The merchant's API keys, newest first (a merchant has a handful).
    pub fn api_keys(&self, merchant: MerchantId) -> Result<Vec<ApiKeyListing>, StoreError> {
        self.db().rows(
            "SELECT key_hash, scopes, hint, created_at_ns, revoked_at_ns FROM api_keys \
             WHERE merchant_id = ?1 ORDER BY created_at_ns DESC",
            args![merchant.to_be_bytes()],
            |row| {
                let hash: Vec<u8> = row.get(0)?;
                let scopes: String = row.get(1)?;
                let revoked: Option<i64> = row.get(4)?;
                Ok(ApiKeyListing {
                    key_hash: hash.try_into().map_err(|_| {
                        StoreError::Corrupt("api_keys.key_hash is not 32 bytes".into())
                    })?,
                    scopes: from_json(&scopes)?,
                    hint: row.get(2)?,
                    created_at_ns: u64_from(row.get(3)?, "time")?,
                    revoked_at_ns: revoked.map(|t| u64_from(t, "time")).transpose()?,
                })
            },
        )
    }

    /// An API key by the hash of the key.
    pub fn api_key(&self, key_hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.db().row(
            "SELECT merchant_id, scopes, hint, revoked_at_ns FROM api_keys WHERE key_hash = ?1",
            args![key_hash],
            |row| {
                let scopes: String = row.get(1)?;
                let revoked: Option<i64> = row.get(3)?;
                Ok(ApiKeyRecord {
                    key_hash: *key_hash,
                    merchant: id_from(row.get(0)?, MerchantId)?,
                    scopes: from_json(&scopes)?,
                    hint: row.get(2)?,
                    revoked_at_ns: revoked.map(|t| u64_from(t, "time")).transpose()?,
                })
            },
        )
    }
}

// ---------------------------------------------------------------------------------------
// Customers

/// A customer of one merchant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    /// Its id.
    pub id: CustomerId,
    /// Whose customer.
    pub merchant: MerchantId,
    /// The merchant's reference, e.g. a Telegram user id; unique per merchant.
    pub external_id: Option<String>,
    /// Merchant key/value data.
    pub metadata: Vec<(String, String)>,
    /// Creation time.
    pub created_at_ns: u64,
}

const CUSTOMER_COLUMNS: &str = "id, merchant_id, external_id, metadata, created_at_ns";

fn customer_from_row(row: &Row<'_>) -> Result<Customer, StoreError> {
    let metadata: String = row.get(3)?;
    Ok(Customer {
        id: id_from(row.get(0)?, CustomerId)?,
        merchant: id_from(row.get(1)?, MerchantId)?,
        external_id: row.get(2)?,
        metadata: from_json(&metadata)?,
        created_at_ns: u64_from(row.get(4)?, "time")?,
    })
}

fn load_customer(db: Db<'_>, id: CustomerId) -> Result<Option<Customer>, StoreError> {
    db.row(
        &format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = ?1"),
        args![id.to_be_bytes()],
        customer_from_row,
    )
}

fn customer_by_external(
    db: Db<'_>,
    merchant: MerchantId,
    external_id: &str,
) -> Result<Option<Customer>, StoreError> {
    db.row(
        &format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE merchant_id = ?1 AND external_id = ?2"
        ),
        args![merchant.to_be_bytes(), external_id],
        customer_from_row,
    )
}

impl Tx<'_, '_> {
    /// Stores a new customer.
    pub fn insert_customer(&mut self, customer: &Customer) -> Result<(), StoreError> {
        self.state.customers.remove(&customer.id);
        self.db().execute(
            &format!("INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            args![
                customer.id.to_be_bytes(),
                customer.merchant.to_be_bytes(),
                customer.external_id,
                json(&customer.metadata)?,
                sql_amount(customer.created_at_ns)?
            ],
        )?;
        Ok(())
    }

    /// A customer's balances as of this point of the batch: currency, posted and available.
    pub fn customer_balances_in_job(
        &mut self,
        merchant: MerchantId,
        customer: CustomerId,
    ) -> Result<Vec<(Currency, i128, i128)>, StoreError> {
        let mut balances = Vec::new();
        for stored in customer_accounts(self.db(), merchant, customer)? {
            // The batch's view: an earlier job of this batch may have moved the balance.
            let state = self.account(stored.account.id)?.unwrap_or(stored);
            balances.push(balance_row(&state));
        }
        Ok(balances)
    }

    /// Replaces a customer's metadata.
    pub fn set_customer_metadata(
        &mut self,
        id: CustomerId,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.state.customers.remove(&id);
        self.db().execute(
            "UPDATE customers SET metadata = ?2 WHERE id = ?1",
            args![id.to_be_bytes(), json(&metadata)?],
        )?;
        Ok(())
    }

    /// A customer, as of this point of the batch (read once a batch: see
    /// `BatchState::customers`).
    pub fn customer(&mut self, id: CustomerId) -> Result<Option<Customer>, StoreError> {
        if let Some(customer) = self.state.customers.get(&id) {
            return Ok(Some(customer.clone()));
        }
        let customer = load_customer(self.db(), id)?;
        if let Some(customer) = &customer {
            self.state.customers.insert(id, customer.clone());
        }
        Ok(customer)
    }

    /// The merchant's customer with this external id.
    pub fn customer_by_external_id(
        &mut self,
        merchant: MerchantId,
        external_id: &str,
    ) -> Result<Option<Customer>, StoreError> {
        customer_by_external(self.db(), merchant, external_id)
    }
}

impl Reader<'_> {
    /// A customer.
    pub fn customer(&self, id: CustomerId) -> Result<Option<Customer>, StoreError> {
        load_customer(self.db(), id)
    }

    /// The merchant's customer with this external id.
    pub fn customer_by_external_id(
        &self,
        merchant: MerchantId,
        external_id: &str,
    ) -> Result<Option<Customer>, StoreError> {
        customer_by_external(self.db(), merchant, external_id)
    }

    /// A page of a merchant's customers, newest first.
    pub fn customers(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<Customer>, StoreError> {
        page(
            self.db(),
            "customers",
            CUSTOMER_COLUMNS,
            merchant,
            request,
            customer_from_row,
        )
    }

    /// Gauges for monitoring: open invoices (those with a pending expiry), webhook
    /// attempts still to make, and the earliest time one of them was due (ns), if any.
    pub fn backlog(&self) -> Result<(u64, u64, Option<u64>), StoreError> {
        let value = |sql: &str| -> Result<Option<i64>, StoreError> {
            Ok(self.db().row(sql, args![], |row| row.get(0))?.flatten())
        };
        let count = |sql: &str| -> Result<u64, StoreError> {
            Ok(value(sql)?.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        };
        let open = count("SELECT COUNT(*) FROM invoice_expiries")?;
        let queued = count("SELECT COUNT(*) FROM delivery_queue")?;
        let oldest = value("SELECT MIN(next_attempt_at_ns) FROM delivery_queue")?;
        Ok((open, queued, oldest.and_then(|t| u64::try_from(t).ok())))
    }

    /// The merchant's own ledger accounts (its balance, pending funds, fees, rail accounts):
    /// every account of the merchant that belongs to no customer.
    pub fn merchant_accounts(
        &self,
        merchant: MerchantId,
    ) -> Result<Vec<farthing_core::ledger::AccountState>, StoreError> {
        self.db().rows(
            &format!(
                "SELECT {} FROM accounts WHERE merchant_id = ?1 AND customer_id IS NULL",
                crate::codec::ACCOUNT_COLUMNS
            ),
            args![merchant.to_be_bytes()],
            |row| crate::codec::account_from_row(row),
        )
    }

    /// The ledger balances of a customer's accounts: currency and posted balance and
    /// available balance, in minor units.
    pub fn customer_balances(
        &self,
        merchant: MerchantId,
        customer: CustomerId,
    ) -> Result<Vec<(Currency, i128, i128)>, StoreError> {
        Ok(customer_accounts(self.db(), merchant, customer)?
            .iter()
            .map(balance_row)
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// Invoices

pub(crate) const INVOICE_COLUMNS: &str =
    "id, merchant_id, customer_id, status, currency, amount_minor, \
     amount_min, amount_max, presets, description, payload, rails, metadata, paid_amount, \
     paid_rail, paid_customer, paid_transfer, paid_at_ns, refunded_minor, created_at_ns, \
     expires_at_ns, closed_at_ns, payment_instructions, subscription_period_s, return_url";

pub(crate) fn invoice_from_row(row: &Row<'_>) -> Result<Invoice, StoreError> {
    let status: String = row.get(3)?;
    let currency: String = row.get(4)?;
    let amount: Option<i64> = row.get(5)?;
    let amount = match amount {
        Some(amount) => InvoiceAmount::Fixed(u64_from(amount, "amount")?),
        None => {
            let presets: Option<String> = row.get(8)?;
            InvoiceAmount::Open {
                presets: presets
                    .map(|p| from_json(&p))
                    .transpose()?
                    .unwrap_or_default(),
                min_minor: u64_from(row.get(6)?, "amount")?,
                max_minor: u64_from(row.get(7)?, "amount")?,
            }
        }
    };
    let rails: Vec<String> = from_json(&row.get::<_, String>(11)?)?;
    let rails = rails
        .iter()
        .map(|name| name.parse::<Rail>().map_err(|_| corrupt("unknown rail")))
        .collect::<Result<Vec<_>, _>>()?;
    let paid_amount: Option<i64> = row.get(13)?;
    let payment = match paid_amount {
        None => None,
        Some(amount) => {
            let rail: String = row.get(14)?;
            Some(InvoicePayment {
                amount_minor: u64_from(amount, "amount")?,
                rail: rail.parse().map_err(|_| corrupt("unknown rail"))?,
                customer: opt_id(row.get(15)?, CustomerId)?,
                transfer_id: id_from(row.get(16)?, TransferId)?,
                paid_at_ns: u64_from(row.get(17)?, "time")?,
            })
        }
    };
    let closed: Option<i64> = row.get(21)?;
    Ok(Invoice {
        id: id_from(row.get(0)?, InvoiceId)?,
        merchant: id_from(row.get(1)?, MerchantId)?,
        customer: opt_id(row.get(2)?, CustomerId)?,
        status: InvoiceStatus::parse(&status).ok_or_else(|| corrupt("invoice status"))?,
        currency: Currency::parse(&currency).map_err(|_| corrupt("invoice currency"))?,
        amount,
        description: row.get(9)?,
        payload: row.get(10)?,
        rails,
        metadata: from_json(&row.get::<_, String>(12)?)?,
        payment,
        amount_refunded_minor: u64_from(row.get(18)?, "amount")?,
        created_at_ns: u64_from(row.get(19)?, "time")?,
        expires_at_ns: u64_from(row.get(20)?, "time")?,
        closed_at_ns: closed.map(|t| u64_from(t, "time")).transpose()?,
        instructions: instructions_from_json(&row.get::<_, String>(22)?)?,
        subscription_period_s: row
            .get::<_, Option<i64>>(23)?
            .map(|p| u32::try_from(p).map_err(|_| corrupt("invoice subscription period")))
            .transpose()?,
        return_url: row.get(24)?,
    })
}

/// Migration 16: the per-rail invoice columns (`stars_invoice_link`, `card_invoice_link`,
/// `lightning_bolt11`) become one map of payment instructions keyed by rail, so that a new
/// rail adds no column to the core `invoices` table. Existing rows move; the API shape of
/// `payment_instructions` stays.
pub(crate) const INSTRUCTIONS_SCHEMA: &str = r#"
    ALTER TABLE invoices ADD COLUMN payment_instructions TEXT NOT NULL DEFAULT '{}';
    UPDATE invoices SET payment_instructions = json_set(payment_instructions, '$.stars',
        json_object('invoice_link', stars_invoice_link)) WHERE stars_invoice_link IS NOT NULL;
    UPDATE invoices SET payment_instructions = json_set(payment_instructions, '$.card',
        json_object('invoice_link', card_invoice_link)) WHERE card_invoice_link IS NOT NULL;
    UPDATE invoices SET payment_instructions = json_set(payment_instructions, '$.lightning',
        json_object('bolt11', lightning_bolt11, 'uri', 'lightning:' || lightning_bolt11))
        WHERE lightning_bolt11 IS NOT NULL;
    ALTER TABLE invoices DROP COLUMN stars_invoice_link;
    ALTER TABLE invoices DROP COLUMN card_invoice_link;
    ALTER TABLE invoices DROP COLUMN lightning_bolt11;
"#;

/// The stored payment instructions: a JSON object of rail name → the rail's instructions.
fn instructions_from_json(
    text: &str,
) -> Result<std::collections::BTreeMap<Rail, String>, StoreError> {
    if text == "{}" {
        return Ok(std::collections::BTreeMap::new());
    }
    let map: serde_json::Map<String, serde_json::Value> = from_json(text)?;
    map.into_iter()
        .map(|(rail, value)| {
            let rail = rail
                .parse::<Rail>()
                .map_err(|_| corrupt("unknown rail in payment instructions"))?;
            Ok((rail, value.to_string()))
        })
        .collect()
}

/// The stored form of payment instructions.
fn instructions_to_json(
    instructions: &std::collections::BTreeMap<Rail, String>,
) -> Result<String, StoreError> {
    let mut map = serde_json::Map::new();
    for (rail, text) in instructions {
        let value: serde_json::Value = from_json(text)?;
        map.insert(rail.as_str().to_owned(), value);
    }
    Ok(serde_json::Value::Object(map).to_string())
}

#[cfg(test)]
pub(crate) fn load_invoice_for_tests(
    db: Db<'_>,
    id: InvoiceId,
) -> Result<Option<Invoice>, StoreError> {
    load_invoice(db, id)
}

fn load_invoice(db: Db<'_>, id: InvoiceId) -> Result<Option<Invoice>, StoreError> {
    db.row(
        &format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = ?1"),
        args![id.to_be_bytes()],
        invoice_from_row,
    )
}

impl Tx<'_, '_> {
    /// Stores a new invoice (and schedules its expiry while open).
    pub fn insert_invoice(&mut self, invoice: &Invoice) -> Result<(), StoreError> {
        let (amount, min, max, presets) = match &invoice.amount {
            InvoiceAmount::Fixed(amount) => (Some(sql_amount(*amount)?), None, None, None),
            InvoiceAmount::Open {
                presets,
                min_minor,
                max_minor,
            } => (
                None,
                Some(sql_amount(*min_minor)?),
                Some(sql_amount(*max_minor)?),
                Some(json(presets)?),
            ),
        };
        let rails: Vec<&str> = invoice.rails.iter().map(|rail| rail.as_str()).collect();
        self.db().insert(&format!(
            "INSERT INTO invoices ({INVOICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
             ?9, ?10, ?11, ?12, ?13, NULL, NULL, NULL, NULL, NULL, 0, ?14, ?15, NULL, ?17, ?16, ?18)"
        ), args![
            invoice.id.to_be_bytes(),
            invoice.merchant.to_be_bytes(),
            invoice.customer.map(CustomerId::to_be_bytes),
            invoice.status.as_str(),
            invoice.currency.code(),
            amount,
            min,
            max,
            presets,
            invoice.description,
            invoice.payload,
            json(&rails)?,
            json(&invoice.metadata)?,
            sql_amount(invoice.created_at_ns)?,
            sql_amount(invoice.expires_at_ns)?,
            invoice.subscription_period_s.map(i64::from),
            instructions_to_json(&invoice.instructions)?,
            invoice.return_url,
        ])?;
        if invoice.status == InvoiceStatus::Open {
            self.db().insert(
                "INSERT INTO invoice_expiries (expires_at_ns, id) VALUES (?1, ?2)",
                args![sql_amount(invoice.expires_at_ns)?, invoice.id.to_be_bytes()],
            )?;
        }
        Ok(())
    }

    /// Sets (or replaces) the payment instructions of `rail` on an invoice (`data`: a JSON
    /// object); false when there is no such invoice.
    pub fn set_instructions(
        &mut self,
        invoice: InvoiceId,
        rail: Rail,
        data: &str,
    ) -> Result<bool, StoreError> {
        let Some(mut found) = self.invoice(invoice)? else {
            return Ok(false);
        };
        found.instructions.insert(rail, data.to_owned());
        let text = instructions_to_json(&found.instructions)?;
        let changed = self.db().execute(
            "UPDATE invoices SET payment_instructions = ?2 WHERE id = ?1",
            args![invoice.to_be_bytes(), text],
        )?;
        Ok(changed == 1)
    }

    /// An invoice, as of this point of the batch.
    pub fn invoice(&mut self, id: InvoiceId) -> Result<Option<Invoice>, StoreError> {
        load_invoice(self.db(), id)
    }

    /// Writes an invoice's changed state (status, payment, refunds, closing time); an invoice
    /// that is no longer open leaves the expiry schedule.
    pub fn update_invoice(&mut self, invoice: &Invoice) -> Result<(), StoreError> {
        let payment = invoice.payment;
        let changed = self.db().execute(
            "UPDATE invoices SET status = ?2, paid_amount = ?3, paid_rail = ?4, \
                 paid_customer = ?5, paid_transfer = ?6, paid_at_ns = ?7, refunded_minor = ?8, \
                 closed_at_ns = ?9 WHERE id = ?1",
            args![
                invoice.id.to_be_bytes(),
                invoice.status.as_str(),
                payment.map(|p| sql_amount(p.amount_minor)).transpose()?,
                payment.map(|p| p.rail.as_str()),
                payment
                    .and_then(|p| p.customer)
                    .map(CustomerId::to_be_bytes),
                payment.map(|p| p.transfer_id.to_be_bytes()),
                payment.map(|p| sql_amount(p.paid_at_ns)).transpose()?,
                sql_amount(invoice.amount_refunded_minor)?,
                invoice.closed_at_ns.map(sql_amount).transpose()?,
            ],
        )?;
        if changed != 1 {
            return Err(corrupt(format!("invoice {} vanished", invoice.id)));
        }
        if invoice.status != InvoiceStatus::Open {
            self.db().execute(
                "DELETE FROM invoice_expiries WHERE expires_at_ns = ?1 AND id = ?2",
                args![sql_amount(invoice.expires_at_ns)?, invoice.id.to_be_bytes()],
            )?;
        }
        Ok(())
    }

    /// Open invoices whose expiry is at or before now, oldest first, at most `limit`.
    pub fn due_invoices(&mut self, limit: usize) -> Result<Vec<InvoiceId>, StoreError> {
        self.db().first_rows(
            "SELECT id FROM invoice_expiries WHERE expires_at_ns <= ?1 ORDER BY expires_at_ns",
            args![sql_amount(self.now_ns())?],
            limit,
            |row| id_from(row.get(0)?, InvoiceId),
        )
    }

    /// Removes an invoice from the expiry schedule (used for stale entries).
    pub fn unschedule_invoice(&mut self, id: InvoiceId) -> Result<(), StoreError> {
        self.db().execute(
            "DELETE FROM invoice_expiries WHERE id = ?1",
            args![id.to_be_bytes()],
        )?;
        Ok(())
    }
}

impl Reader<'_> {
    /// An invoice.
    pub fn invoice(&self, id: InvoiceId) -> Result<Option<Invoice>, StoreError> {
        load_invoice(self.db(), id)
    }

    /// A page of a merchant's invoices, newest first.
    pub fn invoices_where(
        &self,
        merchant: MerchantId,
        request: PageRequest,
        filter: &ListFilter,
    ) -> Result<Page<Invoice>, StoreError> {
        page_where(
            self.db(),
            "invoices",
            INVOICE_COLUMNS,
            merchant,
            request,
            filter,
            invoice_from_row,
        )
    }

    /// A page of the merchant's invoices, newest first.
    pub fn invoices(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<Invoice>, StoreError> {
        page(
            self.db(),
            "invoices",
            INVOICE_COLUMNS,
            merchant,
            request,
            invoice_from_row,
        )
    }

    /// When the next open invoice expires.
    pub fn next_invoice_expiry(&self) -> Result<Option<u64>, StoreError> {
        let value: Option<i64> = self
            .db()
            .row(
                "SELECT MIN(expires_at_ns) FROM invoice_expiries",
                args![],
                |row| row.get(0),
            )?
            .flatten();
        Ok(value.and_then(|value| u64::try_from(value).ok()))
    }
}

// ---------------------------------------------------------------------------------------
// Charges and refunds

/// A pay-per-use charge against a customer balance (SPEC PR2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// Its id.
    pub id: ChargeId,
    /// Who is paid.
    pub merchant: MerchantId,
    /// Whose balance paid.
    pub customer: CustomerId,
    /// Currency.
    pub currency: Currency,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Refunded so far.
    pub refunded_minor: u64,
    /// Shown in statements.
    pub description: String,
    /// Merchant key/value data.
    pub metadata: Vec<(String, String)>,
    /// Creation time.
    pub created_at_ns: u64,
}

pub(crate) const CHARGE_COLUMNS: &str =
    "id, merchant_id, customer_id, currency, amount_minor, refunded_minor, description, \
     created_at_ns, metadata";

/// Metadata as stored on charges and refunds: NULL when empty (most are), so a charge without
/// metadata writes nothing more than before the column existed.
fn optional_metadata(pairs: &[(String, String)]) -> Result<Option<String>, StoreError> {
    if pairs.is_empty() {
        Ok(None)
    } else {
        json(&pairs).map(Some)
    }
}

fn metadata_from(text: Option<String>) -> Result<Vec<(String, String)>, StoreError> {
    text.map_or(Ok(Vec::new()), |text| from_json(&text))
}

/// Migration 23: a refund's status — `pending` while a rail waits for the merchant to send it
/// (its `next_action` says how), then `succeeded` or `canceled`. Earlier refunds succeeded.
pub(crate) const REFUND_STATUS_SCHEMA: &str = r#"
    ALTER TABLE refunds ADD COLUMN status TEXT NOT NULL DEFAULT 'succeeded'
        CHECK (status IN ('pending', 'succeeded', 'canceled'));
    ALTER TABLE refunds ADD COLUMN next_action TEXT;
    CREATE UNIQUE INDEX refunds_pending_by_invoice ON refunds (invoice_id) WHERE status = 'pending';
"#;

/// Migration 18: metadata on charges and refunds, the return link of invoices.
pub(crate) const CHARGE_REFUND_METADATA_SCHEMA: &str = r#"
    ALTER TABLE charges ADD COLUMN metadata TEXT;
    ALTER TABLE refunds ADD COLUMN metadata TEXT;
    ALTER TABLE invoices ADD COLUMN return_url TEXT;
"#;

pub(crate) fn charge_from_row(row: &Row<'_>) -> Result<Charge, StoreError> {
    let currency: String = row.get(3)?;
    Ok(Charge {
        id: id_from(row.get(0)?, ChargeId)?,
        merchant: id_from(row.get(1)?, MerchantId)?,
        customer: id_from(row.get(2)?, CustomerId)?,
        currency: Currency::parse(&currency).map_err(|_| corrupt("charge currency"))?,
        amount_minor: u64_from(row.get(4)?, "amount")?,
        refunded_minor: u64_from(row.get(5)?, "amount")?,
        description: row.get(6)?,
        created_at_ns: u64_from(row.get(7)?, "time")?,
        metadata: metadata_from(row.get(8)?)?,
    })
}

fn load_charge(db: Db<'_>, id: ChargeId) -> Result<Option<Charge>, StoreError> {
    db.row(
        &format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE id = ?1"),
        args![id.to_be_bytes()],
        charge_from_row,
    )
}

/// A refund of an invoice or a charge, back to the customer's balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    /// Its id.
    pub id: RefundId,
    /// Whose money goes back.
    pub merchant: MerchantId,
    /// The refunded invoice, if it is one.
    pub invoice: Option<InvoiceId>,
    /// The refunded charge, if it is one.
    pub charge: Option<ChargeId>,
    /// Who gets the money.
    pub customer: CustomerId,
    /// Currency.
    pub currency: Currency,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Why, as the merchant said.
    pub reason: Option<String>,
    /// Merchant key/value data.
    pub metadata: Vec<(String, String)>,
    /// Creation time.
    pub created_at_ns: u64,
    /// The rail the money went back through (`None`: the customer's balance).
    pub rail: Option<Rail>,
    /// Done, or waiting for the merchant to send it.
    pub status: RefundStatus,
    /// While pending: what the merchant does to send it (a JSON object the rail made).
    pub next_action: Option<String>,
}

/// Where a refund stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    /// Booked: the money went back.
    Succeeded,
    /// Held on the merchant's balance until the rail sees the merchant send it.
    Pending,
    /// Given up before it was sent; the hold released.
    Canceled,
}

impl RefundStatus {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Pending => "pending",
            RefundStatus::Canceled => "canceled",
        }
    }

    fn parse(text: &str) -> Result<RefundStatus, StoreError> {
        match text {
            "succeeded" => Ok(RefundStatus::Succeeded),
            "pending" => Ok(RefundStatus::Pending),
            "canceled" => Ok(RefundStatus::Canceled),
            _ => Err(corrupt("refund status")),
        }
    }
}

pub(crate) const REFUND_COLUMNS: &str =
    "id, merchant_id, invoice_id, charge_id, customer_id, currency, \
     amount_minor, reason, created_at_ns, rail, metadata, status, next_action";

pub(crate) fn refund_from_row(row: &Row<'_>) -> Result<Refund, StoreError> {
    let currency: String = row.get(5)?;
    Ok(Refund {
        id: id_from(row.get(0)?, RefundId)?,
        merchant: id_from(row.get(1)?, MerchantId)?,
        invoice: opt_id(row.get(2)?, InvoiceId)?,
        charge: opt_id(row.get(3)?, ChargeId)?,
        customer: id_from(row.get(4)?, CustomerId)?,
        currency: Currency::parse(&currency).map_err(|_| corrupt("refund currency"))?,
        amount_minor: u64_from(row.get(6)?, "amount")?,
        reason: row.get(7)?,
        created_at_ns: u64_from(row.get(8)?, "time")?,
        rail: row
            .get::<_, Option<String>>(9)?
            .map(|rail| rail.parse().map_err(|_| corrupt("unknown refund rail")))
            .transpose()?,
        metadata: metadata_from(row.get(10)?)?,
        status: RefundStatus::parse(&row.get::<_, String>(11)?)?,
        next_action: row.get(12)?,
    })
}

impl Tx<'_, '_> {
    /// Stores a new charge.
    pub fn insert_charge(&mut self, charge: &Charge) -> Result<(), StoreError> {
        self.db().insert(
            &format!(
                "INSERT INTO charges ({CHARGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            args![
                charge.id.to_be_bytes(),
                charge.merchant.to_be_bytes(),
                charge.customer.to_be_bytes(),
                charge.currency.code(),
                sql_amount(charge.amount_minor)?,
                sql_amount(charge.refunded_minor)?,
                charge.description,
                sql_amount(charge.created_at_ns)?,
                optional_metadata(&charge.metadata)?,
            ],
        )?;
        Ok(())
    }

    /// A charge, as of this point of the batch.
    pub fn charge(&mut self, id: ChargeId) -> Result<Option<Charge>, StoreError> {
        load_charge(self.db(), id)
    }

    /// Records a further refunded amount on a charge.
    pub fn set_charge_refunded(
        &mut self,
        id: ChargeId,
        refunded_minor: u64,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE charges SET refunded_minor = ?2 WHERE id = ?1",
            args![id.to_be_bytes(), sql_amount(refunded_minor)?],
        )?;
        Ok(())
    }

    /// Stores a new refund.
    pub fn insert_refund(&mut self, refund: &Refund) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO refunds ({REFUND_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ),
            args![
                refund.id.to_be_bytes(),
                refund.merchant.to_be_bytes(),
                refund.invoice.map(InvoiceId::to_be_bytes),
                refund.charge.map(ChargeId::to_be_bytes),
                refund.customer.to_be_bytes(),
                refund.currency.code(),
                sql_amount(refund.amount_minor)?,
                refund.reason,
                sql_amount(refund.created_at_ns)?,
                refund.rail.map(Rail::as_str),
                optional_metadata(&refund.metadata)?,
                refund.status.as_str(),
                refund.next_action,
            ],
        )?;
        Ok(())
    }

    /// A refund, as of this point of the batch.
    pub fn refund(&mut self, id: RefundId) -> Result<Option<Refund>, StoreError> {
        self.db().row(
            &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = ?1"),
            args![id.to_be_bytes()],
            refund_from_row,
        )
    }

    /// The pending refund of an invoice, if one waits.
    pub fn pending_refund_of(&mut self, invoice: InvoiceId) -> Result<Option<Refund>, StoreError> {
        self.db().row(
            &format!(
                "SELECT {REFUND_COLUMNS} FROM refunds WHERE invoice_id = ?1 AND status = 'pending'"
            ),
            args![invoice.to_be_bytes()],
            refund_from_row,
        )
    }

    /// Moves a prepared refund to `status` (its next action goes); `false` when it was
    /// already there.
    pub fn set_refund_status(
        &mut self,
        id: RefundId,
        status: RefundStatus,
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "UPDATE refunds SET status = ?2, next_action = NULL \
                 WHERE id = ?1 AND status <> ?2",
            args![id.to_be_bytes(), status.as_str()],
        )?;
        Ok(changed == 1)
    }
}

impl Reader<'_> {
    /// A charge.
    pub fn charge(&self, id: ChargeId) -> Result<Option<Charge>, StoreError> {
        load_charge(self.db(), id)
    }

    /// A page of a merchant's charges, newest first.
    pub fn charges_where(
        &self,
        merchant: MerchantId,
        request: PageRequest,
        filter: &ListFilter,
    ) -> Result<Page<Charge>, StoreError> {
        page_where(
            self.db(),
            "charges",
            CHARGE_COLUMNS,
            merchant,
            request,
            filter,
            charge_from_row,
        )
    }

    /// A page of the merchant's charges, newest first.
    pub fn charges(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<Charge>, StoreError> {
        page(
            self.db(),
            "charges",
            CHARGE_COLUMNS,
            merchant,
            request,
            charge_from_row,
        )
    }

    /// A refund.
    pub fn refund(&self, id: RefundId) -> Result<Option<Refund>, StoreError> {
        self.db().row(
            &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = ?1"),
            args![id.to_be_bytes()],
            refund_from_row,
        )
    }

    /// A page of a merchant's refunds, newest first.
    pub fn refunds_where(
        &self,
        merchant: MerchantId,
        request: PageRequest,
        filter: &ListFilter,
    ) -> Result<Page<Refund>, StoreError> {
        page_where(
            self.db(),
            "refunds",
            REFUND_COLUMNS,
            merchant,
            request,
            filter,
            refund_from_row,
        )
    }

    /// A page of the merchant's refunds, newest first.
    pub fn refunds(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<Refund>, StoreError> {
        page(
            self.db(),
            "refunds",
            REFUND_COLUMNS,
            merchant,
            request,
            refund_from_row,
        )
    }
}

// ---------------------------------------------------------------------------------------
// Events, webhook endpoints, deliveries

/// An event in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// Its id (also the webhook message id).
    pub id: EventId,
    /// Whose event.
    pub merchant: MerchantId,
    /// E.g. `invoice.paid`.
    pub event_type: String,
    /// The JSON body delivered to webhooks.
    pub data: String,
    /// Creation time.
    pub created_at_ns: u64,
}

const EVENT_COLUMNS: &str = "id, merchant_id, type, data, created_at_ns";

fn event_from_row(row: &Row<'_>) -> Result<EventRecord, StoreError> {
    Ok(EventRecord {
        id: id_from(row.get(0)?, EventId)?,
        merchant: id_from(row.get(1)?, MerchantId)?,
        event_type: row.get(2)?,
        data: row.get(3)?,
        created_at_ns: u64_from(row.get(4)?, "time")?,
    })
}

/// A webhook endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: WebhookEndpointId,
    /// Whose endpoint.
    pub merchant: MerchantId,
    /// Where deliveries go.
    pub url: String,
    /// The signing secret, `whsec_…`.
    pub secret: String,
    /// Event types delivered; `["*"]` for all.
    pub events: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Creation time.
    pub created_at_ns: u64,
}

const ENDPOINT_COLUMNS: &str =
    "id, merchant_id, url, secret, events, status, disabled_reason, created_at_ns";

/// [`ENDPOINT_COLUMNS`] as read: the signing secret unsealed (`secrets.rs`).
const ENDPOINT_SELECT: &str =
    "id, merchant_id, url, unseal(secret), events, status, disabled_reason, created_at_ns";

fn endpoint_from_row(row: &Row<'_>) -> Result<WebhookEndpoint, StoreError> {
    Ok(WebhookEndpoint {
        id: id_from(row.get(0)?, WebhookEndpointId)?,
        merchant: id_from(row.get(1)?, MerchantId)?,
        url: row.get(2)?,
        secret: row.get(3)?,
        events: from_json(&row.get::<_, String>(4)?)?,
        status: row.get(5)?,
        disabled_reason: row.get(6)?,
        created_at_ns: u64_from(row.get(7)?, "time")?,
    })
}

fn load_endpoint(db: Db<'_>, id: WebhookEndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
    db.row(
        &format!("SELECT {ENDPOINT_SELECT} FROM webhook_endpoints WHERE id = ?1"),
        args![id.to_be_bytes()],
        endpoint_from_row,
    )
}

/// A delivery of one event to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The event.
    pub event: EventId,
    /// The endpoint.
    pub endpoint: WebhookEndpointId,
    /// `pending`, `delivered`, `failed` (retries exhausted) or `canceled` (endpoint gone).
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at_ns: Option<u64>,
    /// HTTP status of the last attempt.
    pub last_status_code: Option<u16>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
}

fn delivery_from_row(row: &Row<'_>) -> Result<Delivery, StoreError> {
    let next: Option<i64> = row.get(4)?;
    let code: Option<i64> = row.get(5)?;
    Ok(Delivery {
        event: id_from(row.get(0)?, EventId)?,
        endpoint: id_from(row.get(1)?, WebhookEndpointId)?,
        status: row.get(2)?,
        attempts: u32::try_from(row.get::<_, i64>(3)?).map_err(|_| corrupt("attempts"))?,
        next_attempt_at_ns: next.map(|t| u64_from(t, "time")).transpose()?,
        last_status_code: code.and_then(|c| u16::try_from(c).ok()),
        last_error: row.get(6)?,
    })
}

const DELIVERY_COLUMNS: &str =
    "event_id, endpoint_id, status, attempts, next_attempt_at_ns, last_status_code, last_error";

impl Tx<'_, '_> {
    /// Writes an event to the outbox and queues a delivery to every enabled endpoint of the
    /// merchant that wants its type, all in this transaction.
    pub fn insert_event(&mut self, event: &EventRecord) -> Result<(), StoreError> {
        self.db().insert(
            &format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            args![
                event.id.to_be_bytes(),
                event.merchant.to_be_bytes(),
                event.event_type,
                event.data,
                sql_amount(event.created_at_ns)?,
            ],
        )?;
        for (endpoint, wanted) in self.enabled_endpoints(event.merchant)?.iter() {
            if wanted
                .iter()
                .any(|kind| kind == "*" || *kind == event.event_type)
            {
                self.queue_delivery(event.id, *endpoint, event.created_at_ns)?;
            }
        }
        Ok(())
    }

    /// The merchant's enabled endpoints and the event types each wants, read once a batch.
    fn enabled_endpoints(&mut self, merchant: MerchantId) -> Result<Endpoints, StoreError> {
        if let Some(endpoints) = self.state.endpoints.get(&merchant) {
            return Ok(Rc::clone(endpoints));
        }
        let rows: Vec<(Vec<u8>, String)> = self.db().rows(
            "SELECT id, events FROM webhook_endpoints WHERE merchant_id = ?1 AND status = 'enabled'",
            args![merchant.to_be_bytes()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let endpoints = rows
            .into_iter()
            .map(|(id, wanted)| Ok((id_from(id, WebhookEndpointId)?, from_json(&wanted)?)))
            .collect::<Result<Rc<[_]>, StoreError>>()?;
        self.state.endpoints.insert(merchant, Rc::clone(&endpoints));
        Ok(endpoints)
    }

    /// Queues (or re-queues, for a redelivery) an attempt of `event` to `endpoint` at `at_ns`.
    pub fn queue_delivery(
        &mut self,
        event: EventId,
        endpoint: WebhookEndpointId,
        at_ns: u64,
    ) -> Result<(), StoreError> {
        let at = sql_amount(at_ns)?;
        let now = sql_amount(self.now_ns())?;
        self.deliveries_queued += 1;
        // Leave any earlier queue entry of this pair; the worker skips stale ones.
        self.db().insert(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, \
                 next_attempt_at_ns, updated_at_ns) VALUES (?1, ?2, 'pending', 0, ?3, ?4) \
                 ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending', \
                 next_attempt_at_ns = ?3, updated_at_ns = ?4",
            args![event.to_be_bytes(), endpoint.to_be_bytes(), at, now],
        )?;
        self.db().insert(
            "INSERT INTO delivery_queue (next_attempt_at_ns, event_id, endpoint_id) \
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            args![at, event.to_be_bytes(), endpoint.to_be_bytes()],
        )?;
        Ok(())
    }

    /// Records an attempt: `next_attempt_at_ns` = `Some` to retry, `None` when the delivery is
    /// finished with `status` (`delivered`, `failed`, `canceled`).
    pub fn record_attempt(
        &mut self,
        event: EventId,
        endpoint: WebhookEndpointId,
        status: &str,
        status_code: Option<u16>,
        error: Option<&str>,
        next_attempt_at_ns: Option<u64>,
    ) -> Result<(), StoreError> {
        let now = sql_amount(self.now_ns())?;
        let next = next_attempt_at_ns.map(sql_amount).transpose()?;
        self.db().execute(
            "UPDATE webhook_deliveries SET status = ?3, attempts = attempts + 1, \
                 next_attempt_at_ns = ?4, last_status_code = ?5, last_error = ?6, \
                 updated_at_ns = ?7 WHERE event_id = ?1 AND endpoint_id = ?2",
            args![
                event.to_be_bytes(),
                endpoint.to_be_bytes(),
                status,
                next,
                status_code,
                error,
                now
            ],
        )?;
        self.db().execute(
            "DELETE FROM delivery_queue WHERE event_id = ?1 AND endpoint_id = ?2",
            args![event.to_be_bytes(), endpoint.to_be_bytes()],
        )?;
        if let Some(next) = next {
            self.db().execute(
                "INSERT INTO delivery_queue (next_attempt_at_ns, event_id, \
                     endpoint_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                args![next, event.to_be_bytes(), endpoint.to_be_bytes()],
            )?;
        }
        Ok(())
    }

    /// Claims a due delivery for one attempt, on a database several instances share: moves
    /// its place in the queue to `lease_until_ns`, if it is still due now (no other instance
    /// claimed it). Should the claiming instance die, the delivery is due again when the lease
    /// ends. Record the attempt after [`Tx::release_claim`] confirmed the claim still holds.
    pub fn claim_delivery(
        &mut self,
        event: EventId,
        endpoint: WebhookEndpointId,
        lease_until_ns: u64,
    ) -> Result<bool, StoreError> {
        let (now, until) = (sql_amount(self.now_ns())?, sql_amount(lease_until_ns)?);
        Ok(self.db().execute(
            "UPDATE delivery_queue SET next_attempt_at_ns = ?3 \
             WHERE event_id = ?1 AND endpoint_id = ?2 AND next_attempt_at_ns <= ?4",
            args![event.to_be_bytes(), endpoint.to_be_bytes(), until, now],
        )? == 1)
    }

    /// Ends this instance's claim on a delivery (made with [`Tx::claim_delivery`] until
    /// `lease_until_ns`), before its attempt is recorded: `false` when the claim no longer
    /// holds (its lease ran out and another instance claimed or recorded the delivery since),
    /// and then the attempt must not be recorded over the newer one.
    pub fn release_claim(
        &mut self,
        event: EventId,
        endpoint: WebhookEndpointId,
        lease_until_ns: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.db().execute(
            "DELETE FROM delivery_queue \
             WHERE event_id = ?1 AND endpoint_id = ?2 AND next_attempt_at_ns = ?3",
            args![
                event.to_be_bytes(),
                endpoint.to_be_bytes(),
                sql_amount(lease_until_ns)?
            ],
        )? == 1)
    }

    /// Stores a new webhook endpoint.
    pub fn insert_endpoint(&mut self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        self.state.endpoints.clear();
        self.db().execute(
            &format!(
                "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
                 VALUES (?1, ?2, ?3, seal(?4), ?5, ?6, ?7, ?8)"
            ),
            args![
                endpoint.id.to_be_bytes(),
                endpoint.merchant.to_be_bytes(),
                endpoint.url,
                endpoint.secret,
                json(&endpoint.events)?,
                endpoint.status,
                endpoint.disabled_reason,
                sql_amount(endpoint.created_at_ns)?,
            ],
        )?;
        Ok(())
    }

    /// How many webhook endpoints the merchant has, as of this point of the batch.
    pub fn endpoint_count(&mut self, merchant: MerchantId) -> Result<u64, StoreError> {
        let count: Option<i64> = self.db().row(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE merchant_id = ?1",
            args![merchant.to_be_bytes()],
            |row| row.get(0),
        )?;
        Ok(count.map_or(0, |count| u64::try_from(count).unwrap_or(0)))
    }

    /// A webhook endpoint, as of this point of the batch.
    pub fn endpoint(
        &mut self,
        id: WebhookEndpointId,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        load_endpoint(self.db(), id)
    }

    /// Disables an endpoint and cancels its pending deliveries.
    pub fn disable_endpoint(
        &mut self,
        id: WebhookEndpointId,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.state.endpoints.clear();
        self.db().execute(
            "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = ?2 WHERE id = ?1",
            args![id.to_be_bytes(), reason],
        )?;
        self.cancel_deliveries(id)
    }

    /// Deletes an endpoint and cancels its pending deliveries.
    pub fn delete_endpoint(&mut self, id: WebhookEndpointId) -> Result<(), StoreError> {
        self.state.endpoints.clear();
        self.cancel_deliveries(id)?;
        self.db().execute(
            "DELETE FROM webhook_endpoints WHERE id = ?1",
            args![id.to_be_bytes()],
        )?;
        Ok(())
    }

    fn cancel_deliveries(&mut self, id: WebhookEndpointId) -> Result<(), StoreError> {
        let now = sql_amount(self.now_ns())?;
        self.db().execute(
            "UPDATE webhook_deliveries SET status = 'canceled', next_attempt_at_ns = NULL, \
                 updated_at_ns = ?2 WHERE endpoint_id = ?1 AND status = 'pending'",
            args![id.to_be_bytes(), now],
        )?;
        self.db().execute(
            "DELETE FROM delivery_queue WHERE endpoint_id = ?1",
            args![id.to_be_bytes()],
        )?;
        Ok(())
    }

    /// An event, as of this point of the batch.
    pub fn event(&mut self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        load_event(self.db(), id)
    }

    /// Looks up a stored idempotency key: `(fingerprint, status, body)`.
    pub fn idempotency_key(
        &mut self,
        merchant: MerchantId,
        key: &str,
    ) -> Result<Option<(Vec<u8>, u16, String)>, StoreError> {
        load_idempotency(self.db(), merchant, key)
    }

    /// Stores the response of a request made with an idempotency key.
    pub fn insert_idempotency_key(
        &mut self,
        merchant: MerchantId,
        key: &str,
        fingerprint: &[u8],
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        self.db().insert(
            "INSERT INTO idempotency_keys (merchant_id, key, fingerprint, status, body, \
                 created_at_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                merchant.to_be_bytes(),
                key,
                fingerprint,
                status,
                body,
                sql_amount(self.now_ns())?
            ],
        )?;
        Ok(())
    }

    /// Forgets LNURL-auth challenges (sign-in and `/v1/lnurl/auth`) that expired before
    /// `before_ns`, used or not: anyone may ask for one, so they must not pile up. Withdraw
    /// links stay (they record money that left).
    pub fn forget_expired_lnurl_auth(&mut self, before_ns: u64) -> Result<usize, StoreError> {
        self.db().execute(
            "DELETE FROM lnurl_secrets WHERE kind = 'auth' AND expires_at_ns < ?1",
            args![sql_amount(before_ns)?],
        )
    }

    /// Replaces the answer stored under an idempotency key, if it is still `expected` (a
    /// reservation made before a long operation, completed once it is done); whether it was.
    pub fn complete_idempotency_key(
        &mut self,
        merchant: MerchantId,
        key: &str,
        expected: &str,
        status: u16,
        body: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.db().execute(
            "UPDATE idempotency_keys SET status = ?4, body = ?5 \
             WHERE merchant_id = ?1 AND key = ?2 AND body = ?3",
            args![merchant.to_be_bytes(), key, expected, status, body],
        )? == 1)
    }

    /// Forgets an idempotency key if its answer is still `expected` (a reservation whose
    /// operation failed, so that it may be tried again); whether it was.
    pub fn forget_idempotency_key(
        &mut self,
        merchant: MerchantId,
        key: &str,
        expected: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.db().execute(
            "DELETE FROM idempotency_keys WHERE merchant_id = ?1 AND key = ?2 AND body = ?3",
            args![merchant.to_be_bytes(), key, expected],
        )? == 1)
    }

    /// Forgets idempotency keys created before `before_ns`; returns how many.
    pub fn expire_idempotency_keys(&mut self, before_ns: u64) -> Result<usize, StoreError> {
        self.db().execute(
            "DELETE FROM idempotency_keys WHERE created_at_ns < ?1",
            args![sql_amount(before_ns)?],
        )
    }
}

fn load_event(db: Db<'_>, id: EventId) -> Result<Option<EventRecord>, StoreError> {
    db.row(
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
        args![id.to_be_bytes()],
        event_from_row,
    )
}

fn load_idempotency(
    db: Db<'_>,
    merchant: MerchantId,
    key: &str,
) -> Result<Option<(Vec<u8>, u16, String)>, StoreError> {
    db.row(
        "SELECT fingerprint, status, body FROM idempotency_keys WHERE merchant_id = ?1 AND key = ?2",
        args![merchant.to_be_bytes(), key],
        |row| {
            let status: i64 = row.get(1)?;
            Ok((
                row.get(0)?,
                u16::try_from(status).map_err(|_| corrupt("status"))?,
                row.get(2)?,
            ))
        },
    )
}

impl Reader<'_> {
    /// An event.
    pub fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        load_event(self.db(), id)
    }

    /// A page of a merchant's events, newest first.
    pub fn events(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<EventRecord>, StoreError> {
        page(
            self.db(),
            "events",
            EVENT_COLUMNS,
            merchant,
            request,
            event_from_row,
        )
    }

    /// A webhook endpoint.
    pub fn endpoint(&self, id: WebhookEndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        load_endpoint(self.db(), id)
    }

    /// A page of a merchant's webhook endpoints, newest first.
    pub fn endpoints(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        page(
            self.db(),
            "webhook_endpoints",
            ENDPOINT_SELECT,
            merchant,
            request,
            endpoint_from_row,
        )
    }

    /// Deliveries due at `now_ns`, oldest first, at most `limit`, with their event and
    /// endpoint.
    pub fn due_deliveries(
        &self,
        now_ns: u64,
        limit: usize,
    ) -> Result<Vec<(Delivery, EventRecord, WebhookEndpoint)>, StoreError> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = self.db().first_rows(
            "SELECT q.event_id, q.endpoint_id FROM delivery_queue q \
             WHERE q.next_attempt_at_ns <= ?1 ORDER BY q.next_attempt_at_ns",
            args![sql_amount(now_ns)?],
            limit,
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let mut due = Vec::new();
        for (event, endpoint) in pairs {
            let delivery = self.delivery(
                id_from(event, EventId)?,
                id_from(endpoint, WebhookEndpointId)?,
            )?;
            let Some(delivery) = delivery.filter(|d| d.status == "pending") else {
                continue;
            };
            let (Some(event), Some(endpoint)) = (
                load_event(self.db(), delivery.event)?,
                load_endpoint(self.db(), delivery.endpoint)?,
            ) else {
                continue;
            };
            due.push((delivery, event, endpoint));
        }
        Ok(due)
    }

    /// One delivery.
    pub fn delivery(
        &self,
        event: EventId,
        endpoint: WebhookEndpointId,
    ) -> Result<Option<Delivery>, StoreError> {
        self.db().row(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE event_id = ?1 AND endpoint_id = ?2"
        ), args![event.to_be_bytes(), endpoint.to_be_bytes()], delivery_from_row)
    }

    /// Every delivery of an event.
    pub fn deliveries_of(&self, event: EventId) -> Result<Vec<Delivery>, StoreError> {
        self.db().rows(
            &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE event_id = ?1"),
            args![event.to_be_bytes()],
            delivery_from_row,
        )
    }

    /// When the next delivery is due.
    pub fn next_delivery_at(&self) -> Result<Option<u64>, StoreError> {
        let value: Option<i64> = self
            .db()
            .row(
                "SELECT MIN(next_attempt_at_ns) FROM delivery_queue",
                args![],
                |row| row.get(0),
            )?
            .flatten();
        Ok(value.and_then(|value| u64::try_from(value).ok()))
    }

    /// A stored idempotent response: `(fingerprint, status, body)`.
    pub fn idempotency_key(
        &self,
        merchant: MerchantId,
        key: &str,
    ) -> Result<Option<(Vec<u8>, u16, String)>, StoreError> {
        load_idempotency(self.db(), merchant, key)
    }
}
