//! The payment bot's invoice messages (SPEC T2): every invoice the bot posted into a chat, with
//! the companion text message the bot edits to "paid" or "expired".
//!
//! Telegram cannot edit an invoice message into arbitrary text, so the bot sends a plain text
//! message right after it (the companion: amount, time left) and edits that one. A row stays
//! `open` until the invoice is paid, expires or is canceled; closing takes the rows in the same
//! statement that marks them, so a payment, an expiry and the sweep racing edit each message
//! once. The sweep finds open messages of invoices closed some other way (paid from a balance,
//! over Lightning, canceled through the API).

use farthing_core::InvoiceId;

use crate::codec::sql_amount;
use crate::sql::{args, Row};
use crate::{Reader, StoreError, Tx};

/// Migration 10: the bot's invoice messages.
pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE telegram_invoice_messages (
        invoice_id           BLOB NOT NULL,
        chat_id              INTEGER NOT NULL,
        companion_message_id INTEGER NOT NULL,
        -- The sendInvoice message (NULL when the invoice was sent as a checkout link).
        invoice_message_id   INTEGER,
        language             TEXT NOT NULL,
        state                TEXT NOT NULL
                             CHECK (state IN ('open', 'paid', 'expired', 'canceled')),
        created_at_ns        INTEGER NOT NULL,
        PRIMARY KEY (invoice_id, chat_id, companion_message_id)
    ) WITHOUT ROWID;
    -- The sweep reads only the messages still open.
    CREATE INDEX telegram_invoice_messages_open ON telegram_invoice_messages (invoice_id)
        WHERE state = 'open';
"#;

/// One invoice the bot posted into a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceMessage {
    /// The invoice.
    pub invoice: InvoiceId,
    /// The chat it was posted in.
    pub chat_id: i64,
    /// The text message the bot edits when the invoice is paid or expires.
    pub companion_message_id: i64,
    /// The `sendInvoice` message, when the invoice was sent as a Telegram invoice.
    pub invoice_message_id: Option<i64>,
    /// The language the chat is spoken to in (`en`, `fr`, `de`, `fa`, `ru`).
    pub language: String,
    /// `open`, `paid`, `expired` or `canceled`.
    pub state: String,
    /// When it was sent.
    pub created_at_ns: u64,
}

const COLUMNS: &str = "invoice_id, chat_id, companion_message_id, invoice_message_id, language, \
     state, created_at_ns";

fn from_row(row: &Row<'_>) -> Result<InvoiceMessage, StoreError> {
    let id: Vec<u8> = row.get(0)?;
    let invoice = InvoiceId::from_be_slice(&id).ok_or_else(|| {
        StoreError::Corrupt("an invoice message's invoice id is not 16 bytes".into())
    })?;
    let created: i64 = row.get(6)?;
    Ok(InvoiceMessage {
        invoice,
        chat_id: row.get(1)?,
        companion_message_id: row.get(2)?,
        invoice_message_id: row.get(3)?,
        language: row.get(4)?,
        state: row.get(5)?,
        created_at_ns: u64::try_from(created)
            .map_err(|_| StoreError::Corrupt("an invoice message's time is negative".into()))?,
    })
}

impl Tx<'_, '_> {
    /// Records an invoice message the bot sent.
    pub fn insert_invoice_message(&mut self, message: &InvoiceMessage) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO telegram_invoice_messages ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING"
            ),
            args![
                message.invoice.to_be_bytes(),
                message.chat_id,
                message.companion_message_id,
                message.invoice_message_id,
                message.language,
                message.state,
                sql_amount(message.created_at_ns)?,
            ],
        )?;
        Ok(())
    }

    /// Marks the still-open messages of `invoice` as `state` (`paid` or `expired`) and returns
    /// them: the messages the caller must now edit. A second call returns nothing.
    pub fn close_invoice_messages(
        &mut self,
        invoice: InvoiceId,
        state: &str,
    ) -> Result<Vec<InvoiceMessage>, StoreError> {
        self.db().rows(
            &format!(
                "UPDATE telegram_invoice_messages SET state = ?2 \
                 WHERE invoice_id = ?1 AND state = 'open' RETURNING {COLUMNS}"
            ),
            args![invoice.to_be_bytes(), state],
            from_row,
        )
    }
}

/// What a closed invoice's status makes of its open messages.
const CLOSED_AS: &str = "CASE (SELECT status FROM invoices WHERE id = invoice_id) \
     WHEN 'expired' THEN 'expired' WHEN 'canceled' THEN 'canceled' ELSE 'paid' END";

/// The open messages of invoices that are no longer open (a subquery).
const STALE: &str = "SELECT m.invoice_id FROM telegram_invoice_messages m \
     JOIN invoices i ON i.id = m.invoice_id WHERE m.state = 'open' AND i.status != 'open'";

impl Tx<'_, '_> {
    /// Closes the open messages of at most `limit` invoices that are no longer open, each as its
    /// invoice's status says (`paid` for paid or refunded), and returns them.
    pub fn close_stale_invoice_messages(
        &mut self,
        limit: usize,
    ) -> Result<Vec<InvoiceMessage>, StoreError> {
        // The limit is part of the statement (a bound LIMIT makes SQLite re-prepare it).
        self.db().rows(
            &format!(
                "UPDATE telegram_invoice_messages SET state = {CLOSED_AS} \
                 WHERE state = 'open' AND invoice_id IN ({STALE} LIMIT {limit}) RETURNING {COLUMNS}"
            ),
            args![],
            from_row,
        )
    }
}

impl Reader<'_> {
    /// Whether some open message belongs to an invoice that is no longer open.
    pub fn stale_invoice_messages(&self) -> Result<bool, StoreError> {
        Ok(self
            .db()
            .row(&format!("SELECT EXISTS ({STALE})"), args![], |row| {
                row.get(0)
            })?
            .unwrap_or(false))
    }
}
