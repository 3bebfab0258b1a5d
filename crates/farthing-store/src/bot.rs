//! What the payment bot's account commands keep (SPEC T2–T3): the merchant's settings (terms,
//! refund policy, contacts, tip presets, reminders switch, as JSON the server checks), the
//! customers' refund requests, the customers who opted in to payment reminders, and the
//! reminders already sent (one per invoice, ever).
//!
//! Also the per-customer indexes the bot's statements read (`/history`, `/refund`,
//! reminders), partial where they can be, so invoices without a customer cost nothing.

use farthing_core::invoice::Invoice;
use farthing_core::{CustomerId, InvoiceId, MerchantId, RefundId, RefundRequestId};

use crate::business::{
    charge_from_row, invoice_from_row, page, refund_from_row, Charge, Page, PageRequest, Refund,
    CHARGE_COLUMNS, INVOICE_COLUMNS, REFUND_COLUMNS,
};
use crate::codec::sql_amount;
use crate::sql::{args, Db, Row};
use crate::subscriptions::{from_row as subscription_from_row, COLUMNS as SUBSCRIPTION_COLUMNS};
use crate::Subscription;
use crate::{Reader, StoreError, Tx};

/// The bot's tables and the per-customer indexes.
pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE merchant_settings (
        merchant_id   BLOB PRIMARY KEY,
        settings      TEXT NOT NULL,
        updated_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE refund_requests (
        id               BLOB PRIMARY KEY,
        merchant_id      BLOB NOT NULL,
        customer_id      BLOB NOT NULL,
        invoice_id       BLOB NOT NULL,
        telegram_user_id INTEGER NOT NULL,
        lang             TEXT NOT NULL,
        status           TEXT NOT NULL,
        refund_id        BLOB,
        created_at_ns    INTEGER NOT NULL,
        updated_at_ns    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX refund_requests_by_merchant ON refund_requests (merchant_id, id);
    -- One open request per invoice.
    CREATE UNIQUE INDEX refund_requests_pending ON refund_requests (invoice_id)
        WHERE status = 'pending';

    CREATE TABLE telegram_reminder_optins (
        customer_id      BLOB PRIMARY KEY,
        merchant_id      BLOB NOT NULL,
        telegram_user_id INTEGER NOT NULL,
        lang             TEXT NOT NULL,
        created_at_ns    INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- A row is written before a reminder is sent: at most one reminder per invoice, ever.
    CREATE TABLE telegram_reminders (
        invoice_id  BLOB PRIMARY KEY,
        merchant_id BLOB NOT NULL,
        customer_id BLOB NOT NULL,
        sent_at_ns  INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE INDEX invoices_by_customer ON invoices (customer_id, id)
        WHERE customer_id IS NOT NULL;
    CREATE INDEX invoices_by_payer ON invoices (paid_customer, id)
        WHERE paid_customer IS NOT NULL;
    CREATE INDEX charges_by_customer ON charges (customer_id, id);
    CREATE INDEX refunds_by_customer ON refunds (customer_id, id);
    CREATE INDEX subscriptions_by_customer ON subscriptions (customer_id, id);
    -- Reminders also cover the invoices the bot posted into a customer's chat (`/start inv_…`,
    -- tips), which name no customer.
    CREATE INDEX telegram_invoice_messages_open_by_chat ON telegram_invoice_messages (chat_id)
        WHERE state = 'open';
"#;

/// Where a refund request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundRequestStatus {
    /// Waiting for the merchant.
    Pending,
    /// Approved: a refund was made.
    Approved,
    /// Declined by the merchant.
    Declined,
}

impl RefundRequestStatus {
    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundRequestStatus::Pending => "pending",
            RefundRequestStatus::Approved => "approved",
            RefundRequestStatus::Declined => "declined",
        }
    }

    fn parse(text: &str) -> Result<RefundRequestStatus, StoreError> {
        match text {
            "pending" => Ok(RefundRequestStatus::Pending),
            "approved" => Ok(RefundRequestStatus::Approved),
            "declined" => Ok(RefundRequestStatus::Declined),
            other => Err(corrupt(format!("refund request status {other:?}"))),
        }
    }
}

/// A customer's request, made in the bot, to refund one paid invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// Its id (`rrq_…`).
    pub id: RefundRequestId,
    /// Whose.
    pub merchant: MerchantId,
    /// Who asks.
    pub customer: CustomerId,
    /// The paid invoice to refund.
    pub invoice: InvoiceId,
    /// The asker's Telegram user id (the chat to answer in).
    pub telegram_user_id: i64,
    /// The asker's language code (`en`, `fr`, `de`, `fa`, `ru`), for the answer.
    pub lang: String,
    /// Where it stands.
    pub status: RefundRequestStatus,
    /// The refund made on approval.
    pub refund: Option<RefundId>,
    /// When it was asked.
    pub created_at_ns: u64,
    /// When it last changed.
    pub updated_at_ns: u64,
}

/// A customer who opted in to payment reminders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderOptIn {
    /// The customer.
    pub customer: CustomerId,
    /// Whose customer.
    pub merchant: MerchantId,
    /// The chat to remind in.
    pub telegram_user_id: i64,
    /// The customer's language code.
    pub lang: String,
}

const REQUEST_COLUMNS: &str = "id, merchant_id, customer_id, invoice_id, telegram_user_id, lang, \
     status, refund_id, created_at_ns, updated_at_ns";

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn id16(bytes: Vec<u8>, what: &str) -> Result<u128, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt(format!("{what} is not 16 bytes")))?;
    Ok(u128::from_be_bytes(array))
}

fn number(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what}")))
}

fn request_from_row(row: &Row<'_>) -> Result<RefundRequest, StoreError> {
    let status: String = row.get(6)?;
    let refund: Option<Vec<u8>> = row.get(7)?;
    Ok(RefundRequest {
        id: RefundRequestId(id16(row.get(0)?, "refund_requests.id")?),
        merchant: MerchantId(id16(row.get(1)?, "refund_requests.merchant_id")?),
        customer: CustomerId(id16(row.get(2)?, "refund_requests.customer_id")?),
        invoice: InvoiceId(id16(row.get(3)?, "refund_requests.invoice_id")?),
        telegram_user_id: row.get(4)?,
        lang: row.get(5)?,
        status: RefundRequestStatus::parse(&status)?,
        refund: refund
            .map(|bytes| id16(bytes, "refund_requests.refund_id").map(RefundId))
            .transpose()?,
        created_at_ns: number(row.get(8)?, "refund_requests.created_at_ns")?,
        updated_at_ns: number(row.get(9)?, "refund_requests.updated_at_ns")?,
    })
}

fn request_by_id(db: Db<'_>, id: RefundRequestId) -> Result<Option<RefundRequest>, StoreError> {
    db.row(
        &format!("SELECT {REQUEST_COLUMNS} FROM refund_requests WHERE id = ?1"),
        args![id.to_be_bytes()],
        request_from_row,
    )
}

fn settings_of(db: Db<'_>, merchant: MerchantId) -> Result<Option<String>, StoreError> {
    db.row(
        "SELECT settings FROM merchant_settings WHERE merchant_id = ?1",
        args![merchant.to_be_bytes()],
        |row| row.get(0),
    )
}

/// Newest-first rows of `table` whose `column` is `customer`, at most `limit` (stops walking
/// the index, no bound `LIMIT`).
fn of_customer<T>(
    db: Db<'_>,
    sql: &str,
    customer: CustomerId,
    limit: usize,
    parse: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    db.first_rows(sql, args![customer.to_be_bytes()], limit, parse)
}

impl Tx<'_, '_> {
    /// Stores the merchant's settings (JSON the server checked), replacing earlier ones.
    pub fn set_merchant_settings(
        &mut self,
        merchant: MerchantId,
        settings: &str,
    ) -> Result<(), StoreError> {
        let now = sql_amount(self.now_ns())?;
        self.db().execute(
            "INSERT INTO merchant_settings (merchant_id, settings, updated_at_ns) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (merchant_id) DO UPDATE SET \
                 settings = excluded.settings, updated_at_ns = excluded.updated_at_ns",
            args![merchant.to_be_bytes(), settings, now],
        )?;
        Ok(())
    }

    /// Stores a new refund request. A second pending request for the same invoice is refused
    /// by the database (`refund_requests_pending`); check [`Tx::pending_refund_request`] first.
    pub fn insert_refund_request(&mut self, request: &RefundRequest) -> Result<(), StoreError> {
        let r = request;
        self.db().execute(
            &format!(
                "INSERT INTO refund_requests ({REQUEST_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            args![
                r.id.to_be_bytes(),
                r.merchant.to_be_bytes(),
                r.customer.to_be_bytes(),
                r.invoice.to_be_bytes(),
                r.telegram_user_id,
                r.lang,
                r.status.as_str(),
                r.refund.map(|id| id.to_be_bytes()),
                sql_amount(r.created_at_ns)?,
                sql_amount(r.updated_at_ns)?,
            ],
        )?;
        Ok(())
    }

    /// A refund request, as of this point of the batch.
    pub fn refund_request(
        &mut self,
        id: RefundRequestId,
    ) -> Result<Option<RefundRequest>, StoreError> {
        request_by_id(self.db(), id)
    }

    /// The pending refund request of an invoice, if any.
    pub fn pending_refund_request(
        &mut self,
        invoice: InvoiceId,
    ) -> Result<Option<RefundRequest>, StoreError> {
        self.db().row(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM refund_requests \
             WHERE invoice_id = ?1 AND status = 'pending'"
            ),
            args![invoice.to_be_bytes()],
            request_from_row,
        )
    }

    /// Moves a refund request to `status` (with the refund made on approval).
    pub fn update_refund_request(
        &mut self,
        id: RefundRequestId,
        status: RefundRequestStatus,
        refund: Option<RefundId>,
    ) -> Result<(), StoreError> {
        let now = sql_amount(self.now_ns())?;
        self.db().execute(
            "UPDATE refund_requests SET status = ?2, refund_id = ?3, updated_at_ns = ?4 \
                 WHERE id = ?1",
            args![
                id.to_be_bytes(),
                status.as_str(),
                refund.map(|id| id.to_be_bytes()),
                now
            ],
        )?;
        Ok(())
    }

    /// Opts a customer in to payment reminders (`Some`) or out (`None`).
    pub fn set_reminder_opt_in(
        &mut self,
        customer: CustomerId,
        opt_in: Option<&ReminderOptIn>,
    ) -> Result<(), StoreError> {
        match opt_in {
            None => {
                self.db().execute(
                    "DELETE FROM telegram_reminder_optins WHERE customer_id = ?1",
                    args![customer.to_be_bytes()],
                )?;
            }
            Some(o) => {
                let now = sql_amount(self.now_ns())?;
                self.db().replace(
                    "telegram_reminder_optins",
                    "customer_id, merchant_id, telegram_user_id, lang, created_at_ns",
                    "customer_id",
                    args![
                        customer.to_be_bytes(),
                        o.merchant.to_be_bytes(),
                        o.telegram_user_id,
                        o.lang,
                        now
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Forgets a stored 4xx answer to the idempotency key `key`, so that the same request can
    /// be tried again once what refused it changed (the approval of a refund request reuses one
    /// key per request; a success is kept). Returns whether one was forgotten.
    pub fn forget_refused_idempotency_key(
        &mut self,
        merchant: MerchantId,
        key: &str,
    ) -> Result<bool, StoreError> {
        let deleted = self.db().execute(
            "DELETE FROM idempotency_keys WHERE merchant_id = ?1 AND key = ?2 \
                 AND status >= 400 AND status < 500",
            args![merchant.to_be_bytes(), key],
        )?;
        Ok(deleted == 1)
    }

    /// Records that the reminder of `invoice` is being sent; `false` when one was recorded
    /// before (then it must not be sent again).
    pub fn claim_reminder(
        &mut self,
        invoice: InvoiceId,
        merchant: MerchantId,
        customer: CustomerId,
    ) -> Result<bool, StoreError> {
        let now = sql_amount(self.now_ns())?;
        let inserted = self.db().execute(
            "INSERT INTO telegram_reminders \
                 (invoice_id, merchant_id, customer_id, sent_at_ns) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
            args![
                invoice.to_be_bytes(),
                merchant.to_be_bytes(),
                customer.to_be_bytes(),
                now
            ],
        )?;
        Ok(inserted == 1)
    }
}

impl Reader<'_> {
    /// The merchant's settings JSON, if it ever stored some.
    pub fn merchant_settings(&self, merchant: MerchantId) -> Result<Option<String>, StoreError> {
        settings_of(self.db(), merchant)
    }

    /// A refund request.
    pub fn refund_request(&self, id: RefundRequestId) -> Result<Option<RefundRequest>, StoreError> {
        request_by_id(self.db(), id)
    }

    /// The merchant's refund requests, newest first.
    pub fn refund_requests(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<RefundRequest>, StoreError> {
        page(
            self.db(),
            "refund_requests",
            REQUEST_COLUMNS,
            merchant,
            request,
            request_from_row,
        )
    }

    /// Whether a customer opted in to payment reminders.
    pub fn reminder_opt_in(&self, customer: CustomerId) -> Result<bool, StoreError> {
        self.db().exists(
            "SELECT 1 FROM telegram_reminder_optins WHERE customer_id = ?1",
            args![customer.to_be_bytes()],
        )
    }

    /// Up to `limit` customers who opted in to payment reminders, of every merchant.
    pub fn reminder_opt_ins(&self, limit: usize) -> Result<Vec<ReminderOptIn>, StoreError> {
        self.db().first_rows(
            "SELECT customer_id, merchant_id, telegram_user_id, lang \
             FROM telegram_reminder_optins ORDER BY customer_id",
            args![],
            limit,
            |row| {
                Ok(ReminderOptIn {
                    customer: CustomerId(id16(
                        row.get(0)?,
                        "telegram_reminder_optins.customer_id",
                    )?),
                    merchant: MerchantId(id16(
                        row.get(1)?,
                        "telegram_reminder_optins.merchant_id",
                    )?),
                    telegram_user_id: row.get(2)?,
                    lang: row.get(3)?,
                })
            },
        )
    }

    /// Whether the reminder of `invoice` was sent.
    pub fn reminder_sent(&self, invoice: InvoiceId) -> Result<bool, StoreError> {
        self.db().exists(
            "SELECT 1 FROM telegram_reminders WHERE invoice_id = ?1",
            args![invoice.to_be_bytes()],
        )
    }

    /// Up to `limit` invoices the bot posted into `chat_id` whose message is still open.
    pub fn open_invoices_posted_to(
        &self,
        chat_id: i64,
        limit: usize,
    ) -> Result<Vec<Invoice>, StoreError> {
        self.db().first_rows(
            &format!(
                "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id IN \
                 (SELECT invoice_id FROM telegram_invoice_messages \
                  WHERE chat_id = ?1 AND state = 'open')"
            ),
            args![chat_id],
            limit,
            invoice_from_row,
        )
    }

    /// Up to `limit` invoices made for the customer (`customer` set), newest first.
    pub fn invoices_of_customer(
        &self,
        customer: CustomerId,
        limit: usize,
    ) -> Result<Vec<Invoice>, StoreError> {
        of_customer(
            self.db(),
            &format!(
                "SELECT {INVOICE_COLUMNS} FROM invoices \
                 WHERE customer_id = ?1 ORDER BY id DESC"
            ),
            customer,
            limit,
            invoice_from_row,
        )
    }

    /// Up to `limit` invoices the customer paid, newest first.
    pub fn invoices_paid_by(
        &self,
        customer: CustomerId,
        limit: usize,
    ) -> Result<Vec<Invoice>, StoreError> {
        of_customer(
            self.db(),
            &format!(
                "SELECT {INVOICE_COLUMNS} FROM invoices \
                 WHERE paid_customer = ?1 ORDER BY id DESC"
            ),
            customer,
            limit,
            invoice_from_row,
        )
    }

    /// Up to `limit` charges of the customer, newest first.
    pub fn charges_of_customer(
        &self,
        customer: CustomerId,
        limit: usize,
    ) -> Result<Vec<Charge>, StoreError> {
        of_customer(
            self.db(),
            &format!(
                "SELECT {CHARGE_COLUMNS} FROM charges WHERE customer_id = ?1 ORDER BY id DESC"
            ),
            customer,
            limit,
            charge_from_row,
        )
    }

    /// Up to `limit` refunds to the customer, newest first.
    pub fn refunds_of_customer(
        &self,
        customer: CustomerId,
        limit: usize,
    ) -> Result<Vec<Refund>, StoreError> {
        of_customer(
            self.db(),
            &format!(
                "SELECT {REFUND_COLUMNS} FROM refunds WHERE customer_id = ?1 ORDER BY id DESC"
            ),
            customer,
            limit,
            refund_from_row,
        )
    }

    /// Up to `limit` subscriptions of the customer, newest first.
    pub fn subscriptions_of_customer(
        &self,
        customer: CustomerId,
        limit: usize,
    ) -> Result<Vec<Subscription>, StoreError> {
        of_customer(
            self.db(),
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                 WHERE customer_id = ?1 ORDER BY id DESC"
            ),
            customer,
            limit,
            subscription_from_row,
        )
    }
}
