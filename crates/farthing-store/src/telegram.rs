//! Telegram bots connected by merchants (the Stars rail, SPEC RL2): one row per merchant (per
//! store, so one per mode: the live and test stores are separate files).
//!
//! The bot token is stored because the server must call the Bot API with it; it is never
//! returned by the API nor logged. [`TelegramBot`]'s `Debug` leaves it out.

use farthing_core::MerchantId;
use rusqlite::{params, Connection, Row};

use crate::codec::sql_amount;
use crate::{Reader, StoreError, Tx};

/// The Telegram bots table (migration 4).
pub(crate) const SCHEMA: &str = r#"
    -- One bot per merchant (per mode: each mode has its own database).
    CREATE TABLE telegram_bots (
        merchant_id    BLOB PRIMARY KEY,
        bot_id         INTEGER NOT NULL,
        username       TEXT NOT NULL,
        token          TEXT NOT NULL,
        api_url        TEXT NOT NULL,
        mode           TEXT NOT NULL CHECK (mode IN ('webhook', 'polling')),
        webhook_secret TEXT,
        created_at_ns  INTEGER NOT NULL,
        updated_at_ns  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX telegram_bots_by_bot ON telegram_bots (bot_id);
"#;

/// Migration 5: the Stars invoice link of an invoice (written after the invoice, once Telegram
/// made the link), and the rail a refund went back through (`NULL`: the customer's balance).
pub(crate) const INVOICE_LINK_SCHEMA: &str = r#"
    ALTER TABLE invoices ADD COLUMN stars_invoice_link TEXT;
    ALTER TABLE refunds ADD COLUMN rail TEXT;
"#;

/// A merchant's connected bot.
#[derive(Clone, PartialEq, Eq)]
pub struct TelegramBot {
    /// Whose bot it is.
    pub merchant: MerchantId,
    /// The bot's user id (the token's prefix).
    pub bot_id: u64,
    /// The username `getMe` verified.
    pub username: String,
    /// The bot token: secret, never shown.
    pub token: String,
    /// The Bot API base URL.
    pub api_url: String,
    /// `webhook` or `polling`.
    pub mode: String,
    /// The `X-Telegram-Bot-Api-Secret-Token` webhooks must carry.
    pub webhook_secret: Option<String>,
    /// When it was first connected.
    pub created_at_ns: u64,
    /// When it was last connected.
    pub updated_at_ns: u64,
}

impl std::fmt::Debug for TelegramBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramBot")
            .field("merchant", &self.merchant)
            .field("bot_id", &self.bot_id)
            .field("username", &self.username)
            .field("api_url", &self.api_url)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "merchant_id, bot_id, username, token, api_url, mode, webhook_secret, \
     created_at_ns, updated_at_ns";

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn from_row(row: &Row<'_>) -> Result<TelegramBot, StoreError> {
    let merchant: Vec<u8> = row.get(0)?;
    let merchant: [u8; 16] = merchant
        .try_into()
        .map_err(|_| corrupt("telegram_bots.merchant_id is not 16 bytes"))?;
    let number = |value: i64, what: &str| {
        u64::try_from(value).map_err(|_| corrupt(format!("negative {what} in telegram_bots")))
    };
    Ok(TelegramBot {
        merchant: MerchantId(u128::from_be_bytes(merchant)),
        bot_id: number(row.get(1)?, "bot id")?,
        username: row.get(2)?,
        token: row.get(3)?,
        api_url: row.get(4)?,
        mode: row.get(5)?,
        webhook_secret: row.get(6)?,
        created_at_ns: number(row.get(7)?, "time")?,
        updated_at_ns: number(row.get(8)?, "time")?,
    })
}

fn by_merchant(
    connection: &Connection,
    merchant: MerchantId,
) -> Result<Option<TelegramBot>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM telegram_bots WHERE merchant_id = ?1"
    ))?;
    let mut rows = statement.query(params![merchant.to_be_bytes()])?;
    rows.next()?.map(from_row).transpose()
}

fn by_bot(connection: &Connection, bot_id: u64) -> Result<Vec<TelegramBot>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM telegram_bots WHERE bot_id = ?1 ORDER BY created_at_ns"
    ))?;
    let mut rows = statement.query(params![sql_amount(bot_id)?])?;
    let mut bots = Vec::new();
    while let Some(row) = rows.next()? {
        bots.push(from_row(row)?);
    }
    Ok(bots)
}

impl Tx<'_, '_> {
    /// Stores the merchant's bot, replacing the one it had (keeping its `created_at_ns`).
    pub fn upsert_telegram_bot(&mut self, bot: &TelegramBot) -> Result<(), StoreError> {
        self.sql()
            .prepare_cached(&format!(
                "INSERT INTO telegram_bots ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (merchant_id) DO UPDATE SET bot_id = excluded.bot_id, \
                 username = excluded.username, token = excluded.token, \
                 api_url = excluded.api_url, mode = excluded.mode, \
                 webhook_secret = excluded.webhook_secret, updated_at_ns = excluded.updated_at_ns"
            ))?
            .execute(params![
                bot.merchant.to_be_bytes(),
                sql_amount(bot.bot_id)?,
                bot.username,
                bot.token,
                bot.api_url,
                bot.mode,
                bot.webhook_secret,
                sql_amount(bot.created_at_ns)?,
                sql_amount(bot.updated_at_ns)?,
            ])?;
        Ok(())
    }

    /// The merchant's bot, as of this point of the batch.
    pub fn telegram_bot(
        &mut self,
        merchant: MerchantId,
    ) -> Result<Option<TelegramBot>, StoreError> {
        by_merchant(self.sql(), merchant)
    }
}

impl Tx<'_, '_> {
    /// Stores the Stars invoice link of `invoice`; false when there is no such invoice.
    pub fn set_stars_invoice_link(
        &mut self,
        invoice: farthing_core::InvoiceId,
        link: &str,
    ) -> Result<bool, StoreError> {
        let changed = self
            .sql()
            .prepare_cached("UPDATE invoices SET stars_invoice_link = ?2 WHERE id = ?1")?
            .execute(params![invoice.to_be_bytes(), link])?;
        Ok(changed == 1)
    }
}

impl Reader<'_> {
    /// The merchant's bot.
    pub fn telegram_bot(&self, merchant: MerchantId) -> Result<Option<TelegramBot>, StoreError> {
        by_merchant(self.connection, merchant)
    }

    /// Every merchant's connection of the bot `bot_id` (usually one), oldest first.
    pub fn telegram_bots_by_id(&self, bot_id: u64) -> Result<Vec<TelegramBot>, StoreError> {
        by_bot(self.connection, bot_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    #[test]
    fn bots_are_stored_replaced_and_found() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path().join("t.db"), StoreOptions::default()).expect("open");
        let bot = TelegramBot {
            merchant: MerchantId(7),
            bot_id: 42,
            username: "shop_bot".to_owned(),
            token: "42:secret".to_owned(),
            api_url: "https://api.telegram.org".to_owned(),
            mode: "webhook".to_owned(),
            webhook_secret: Some("s".to_owned()),
            created_at_ns: 1,
            updated_at_ns: 1,
        };
        let again = TelegramBot {
            username: "shop2_bot".to_owned(),
            created_at_ns: 5,
            updated_at_ns: 5,
            ..bot.clone()
        };
        assert!(!format!("{bot:?}").contains("secret"));
        let (a, b) = (bot.clone(), again.clone());
        store
            .execute(move |tx| -> Result<_, StoreError> {
                tx.upsert_telegram_bot(&a)?;
                tx.upsert_telegram_bot(&b)
            })
            .expect("queued")
            .wait()
            .expect("committed")
            .expect("job");
        let (mine, found) = store
            .read(|r| Ok((r.telegram_bot(MerchantId(7))?, r.telegram_bots_by_id(42)?)))
            .expect("read");
        let expected = TelegramBot {
            created_at_ns: 1,
            ..again
        };
        assert_eq!(mine, Some(expected.clone()));
        assert_eq!(found, vec![expected]);
        assert!(store.audit().expect("audit").is_ok());
    }
}
