//! Telegram Stars subscriptions (SPEC RL2, PR4): one row per subscription a payer started by
//! paying a subscription invoice, extended by each renewal payment.
//!
//! The money of every period is an invoice of its own (the first invoice, then one renewal
//! invoice per renewal), paid through the normal settlement; this table only says who is
//! subscribed to what, until when, and whether it renews.

use farthing_core::{Currency, CustomerId, InvoiceId, MerchantId, SubscriptionId};

use crate::business::{page, Page, PageRequest};
use crate::codec::sql_amount;
use crate::sql::{args, Db, Row};
use crate::{Reader, StoreError, Tx};

/// The subscriptions table, and the subscription period of invoices.
pub(crate) const SCHEMA: &str = r#"
    ALTER TABLE invoices ADD COLUMN subscription_period_s INTEGER;

    CREATE TABLE subscriptions (
        id                 BLOB PRIMARY KEY,
        merchant_id        BLOB NOT NULL,
        customer_id        BLOB NOT NULL,
        invoice_id         BLOB NOT NULL,
        telegram_user_id   INTEGER NOT NULL,
        first_charge_id    TEXT NOT NULL,
        last_charge_id     TEXT NOT NULL,
        last_invoice_id    BLOB NOT NULL,
        currency           TEXT NOT NULL,
        amount_minor       INTEGER NOT NULL,
        period_s           INTEGER NOT NULL,
        current_period_end_s INTEGER NOT NULL,
        renewals           INTEGER NOT NULL,
        canceled           INTEGER NOT NULL,
        created_at_ns      INTEGER NOT NULL,
        updated_at_ns      INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX subscriptions_by_merchant ON subscriptions (merchant_id, id);
    CREATE UNIQUE INDEX subscriptions_by_payer
        ON subscriptions (merchant_id, invoice_id, telegram_user_id);
"#;

/// A Stars subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Its id.
    pub id: SubscriptionId,
    /// Whose.
    pub merchant: MerchantId,
    /// The subscriber.
    pub customer: CustomerId,
    /// The subscription invoice the subscriber first paid.
    pub invoice: InvoiceId,
    /// The subscriber's Telegram user id.
    pub telegram_user_id: i64,
    /// Telegram's charge id of the first payment: the handle of `editUserStarSubscription`.
    pub first_charge_id: String,
    /// Telegram's charge id of the latest payment.
    pub last_charge_id: String,
    /// The invoice of the latest period (the first invoice or a renewal invoice).
    pub last_invoice: InvoiceId,
    /// Currency (`XTR`).
    pub currency: Currency,
    /// Price per period, minor units.
    pub amount_minor: u64,
    /// Period length, seconds.
    pub period_s: u64,
    /// When the paid period ends, Unix seconds (Telegram's `subscription_expiration_date`).
    pub current_period_end_s: u64,
    /// Renewals paid so far.
    pub renewals: u64,
    /// Canceled by the merchant or the user: it does not renew, but stays paid until
    /// `current_period_end_s`.
    pub canceled: bool,
    /// When it started.
    pub created_at_ns: u64,
    /// When it last changed.
    pub updated_at_ns: u64,
}

pub(crate) const COLUMNS: &str = "id, merchant_id, customer_id, invoice_id, telegram_user_id, \
     first_charge_id, last_charge_id, last_invoice_id, currency, amount_minor, period_s, \
     current_period_end_s, renewals, canceled, created_at_ns, updated_at_ns";

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn id16(bytes: Vec<u8>, what: &str) -> Result<u128, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt(format!("subscriptions.{what} is not 16 bytes")))?;
    Ok(u128::from_be_bytes(array))
}

fn number(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what} in subscriptions")))
}

pub(crate) fn from_row(row: &Row<'_>) -> Result<Subscription, StoreError> {
    let currency: String = row.get(8)?;
    Ok(Subscription {
        id: SubscriptionId(id16(row.get(0)?, "id")?),
        merchant: MerchantId(id16(row.get(1)?, "merchant_id")?),
        customer: CustomerId(id16(row.get(2)?, "customer_id")?),
        invoice: InvoiceId(id16(row.get(3)?, "invoice_id")?),
        telegram_user_id: row.get(4)?,
        first_charge_id: row.get(5)?,
        last_charge_id: row.get(6)?,
        last_invoice: InvoiceId(id16(row.get(7)?, "last_invoice_id")?),
        currency: Currency::parse(&currency)
            .map_err(|_| corrupt(format!("unknown currency {currency:?} in subscriptions")))?,
        amount_minor: number(row.get(9)?, "amount")?,
        period_s: number(row.get(10)?, "period")?,
        current_period_end_s: number(row.get(11)?, "period end")?,
        renewals: number(row.get(12)?, "renewals")?,
        canceled: row.get::<_, i64>(13)? != 0,
        created_at_ns: number(row.get(14)?, "time")?,
        updated_at_ns: number(row.get(15)?, "time")?,
    })
}

fn by_id(db: Db<'_>, id: SubscriptionId) -> Result<Option<Subscription>, StoreError> {
    db.row(
        &format!("SELECT {COLUMNS} FROM subscriptions WHERE id = ?1"),
        args![id.to_be_bytes()],
        from_row,
    )
}

fn by_payer(
    db: Db<'_>,
    merchant: MerchantId,
    invoice: InvoiceId,
    telegram_user_id: i64,
) -> Result<Option<Subscription>, StoreError> {
    db.row(
        &format!(
            "SELECT {COLUMNS} FROM subscriptions \
         WHERE merchant_id = ?1 AND invoice_id = ?2 AND telegram_user_id = ?3"
        ),
        args![
            merchant.to_be_bytes(),
            invoice.to_be_bytes(),
            telegram_user_id
        ],
        from_row,
    )
}

impl Tx<'_, '_> {
    /// Stores a subscription, or replaces the stored one with the same id.
    pub fn upsert_subscription(&mut self, subscription: &Subscription) -> Result<(), StoreError> {
        let s = subscription;
        self.db().replace(
            "subscriptions",
            COLUMNS,
            "id",
            args![
                s.id.to_be_bytes(),
                s.merchant.to_be_bytes(),
                s.customer.to_be_bytes(),
                s.invoice.to_be_bytes(),
                s.telegram_user_id,
                s.first_charge_id,
                s.last_charge_id,
                s.last_invoice.to_be_bytes(),
                s.currency.code(),
                sql_amount(s.amount_minor)?,
                sql_amount(s.period_s)?,
                sql_amount(s.current_period_end_s)?,
                sql_amount(s.renewals)?,
                i64::from(s.canceled),
                sql_amount(s.created_at_ns)?,
                sql_amount(s.updated_at_ns)?,
            ],
        )?;
        Ok(())
    }

    /// A subscription, as of this point of the batch.
    pub fn subscription(&mut self, id: SubscriptionId) -> Result<Option<Subscription>, StoreError> {
        by_id(self.db(), id)
    }

    /// The subscription of a Telegram user to a subscription invoice, as of this point.
    pub fn subscription_of_payer(
        &mut self,
        merchant: MerchantId,
        invoice: InvoiceId,
        telegram_user_id: i64,
    ) -> Result<Option<Subscription>, StoreError> {
        by_payer(self.db(), merchant, invoice, telegram_user_id)
    }

    /// Sets the subscription period of an invoice (seconds); false when there is no such
    /// invoice.
    pub fn set_subscription_period(
        &mut self,
        invoice: InvoiceId,
        period_s: u32,
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "UPDATE invoices SET subscription_period_s = ?2 WHERE id = ?1",
            args![invoice.to_be_bytes(), i64::from(period_s)],
        )?;
        Ok(changed == 1)
    }
}

impl Reader<'_> {
    /// A subscription.
    pub fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, StoreError> {
        by_id(self.db(), id)
    }

    /// The merchant's subscriptions, newest first.
    pub fn subscriptions(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<Subscription>, StoreError> {
        page(
            self.db(),
            "subscriptions",
            COLUMNS,
            merchant,
            request,
            from_row,
        )
    }
}
