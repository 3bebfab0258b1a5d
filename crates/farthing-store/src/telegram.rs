//! Telegram bots connected by merchants (the Stars rail, SPEC RL2): one row per merchant (per
//! store, so one per mode: the live and test stores are separate files).
//!
//! The bot token is stored because the server must call the Bot API with it; it is never
//! returned by the API nor logged. [`TelegramBot`]'s `Debug` leaves it out.

use farthing_core::MerchantId;

use crate::codec::sql_amount;
use crate::sql::{args, Db, Row};
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

/// Migration 8: where long polling (`getUpdates`) stands for each bot polled from this store:
/// the `offset` of the next call, i.e. one more than the last update handled. Keyed by bot,
/// not merchant: Telegram keeps one update queue per bot.
pub(crate) const POLL_OFFSET_SCHEMA: &str = r#"
    CREATE TABLE telegram_poll_offsets (
        bot_id        INTEGER PRIMARY KEY,
        next_offset   INTEGER NOT NULL,
        updated_at_ns INTEGER NOT NULL
    );
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

/// [`COLUMNS`] as read: the token and the webhook secret unsealed (`secrets.rs`).
const SELECT_COLUMNS: &str = "merchant_id, bot_id, username, unseal(token), api_url, mode, \
     unseal(webhook_secret), created_at_ns, updated_at_ns";

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

fn by_merchant(db: Db<'_>, merchant: MerchantId) -> Result<Option<TelegramBot>, StoreError> {
    db.row(
        &format!("SELECT {SELECT_COLUMNS} FROM telegram_bots WHERE merchant_id = ?1"),
        args![merchant.to_be_bytes()],
        from_row,
    )
}

fn by_bot(db: Db<'_>, bot_id: u64) -> Result<Vec<TelegramBot>, StoreError> {
    // Telegram's ids fit in i64 and only checked bots are stored: a larger id (from a URL or a
    // body) names no bot, it is not a corrupt row.
    if i64::try_from(bot_id).is_err() {
        return Ok(Vec::new());
    }
    db.rows(
        &format!(
            "SELECT {SELECT_COLUMNS} FROM telegram_bots WHERE bot_id = ?1 ORDER BY created_at_ns"
        ),
        args![sql_amount(bot_id)?],
        from_row,
    )
}

impl Tx<'_, '_> {
    /// Stores the merchant's bot, replacing the one it had (keeping its `created_at_ns`).
    pub fn upsert_telegram_bot(&mut self, bot: &TelegramBot) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO telegram_bots ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, seal(?4), ?5, ?6, seal(?7), ?8, ?9) \
                 ON CONFLICT (merchant_id) DO UPDATE SET bot_id = excluded.bot_id, \
                 username = excluded.username, token = excluded.token, \
                 api_url = excluded.api_url, mode = excluded.mode, \
                 webhook_secret = excluded.webhook_secret, updated_at_ns = excluded.updated_at_ns"
            ),
            args![
                bot.merchant.to_be_bytes(),
                sql_amount(bot.bot_id)?,
                bot.username,
                bot.token,
                bot.api_url,
                bot.mode,
                bot.webhook_secret,
                sql_amount(bot.created_at_ns)?,
                sql_amount(bot.updated_at_ns)?,
            ],
        )?;
        // The instance that leads the background work watches it from now on.
        self.announce(crate::topics::Topic::Rails)
    }

    /// The merchant's bot, as of this point of the batch.
    pub fn telegram_bot(
        &mut self,
        merchant: MerchantId,
    ) -> Result<Option<TelegramBot>, StoreError> {
        by_merchant(self.db(), merchant)
    }
}

impl Reader<'_> {
    /// The merchant's bot.
    pub fn telegram_bot(&self, merchant: MerchantId) -> Result<Option<TelegramBot>, StoreError> {
        by_merchant(self.db(), merchant)
    }

    /// Every merchant's connection of the bot `bot_id` (usually one), oldest first.
    pub fn telegram_bots_by_id(&self, bot_id: u64) -> Result<Vec<TelegramBot>, StoreError> {
        by_bot(self.db(), bot_id)
    }
}

impl Tx<'_, '_> {
    /// Records that every update of bot `bot_id` below `next_offset` was handled. The offset
    /// never moves back (an older worker finishing late cannot undo a newer one's progress).
    pub fn set_telegram_poll_offset(
        &mut self,
        bot_id: u64,
        next_offset: i64,
    ) -> Result<(), StoreError> {
        let now = self.now_ns();
        self.db().execute(
            "INSERT INTO telegram_poll_offsets (bot_id, next_offset, updated_at_ns) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (bot_id) DO UPDATE SET \
                 next_offset = CASE WHEN excluded.next_offset > telegram_poll_offsets.next_offset \
                 THEN excluded.next_offset ELSE telegram_poll_offsets.next_offset END, \
                 updated_at_ns = excluded.updated_at_ns",
            args![sql_amount(bot_id)?, next_offset, sql_amount(now)?],
        )?;
        Ok(())
    }
}

impl Reader<'_> {
    /// Every bot connected with `mode = 'polling'` in this store (a handful of rows: the table
    /// holds one bot per merchant).
    pub fn telegram_polling_bots(&self) -> Result<Vec<TelegramBot>, StoreError> {
        self.db().rows(
            &format!(
                "SELECT {SELECT_COLUMNS} FROM telegram_bots WHERE mode = 'polling' ORDER BY bot_id"
            ),
            args![],
            from_row,
        )
    }

    /// The `getUpdates` offset to poll bot `bot_id` from (`None`: never polled here).
    pub fn telegram_poll_offset(&self, bot_id: u64) -> Result<Option<i64>, StoreError> {
        self.db().row(
            "SELECT next_offset FROM telegram_poll_offsets WHERE bot_id = ?1",
            args![sql_amount(bot_id)?],
            |row| row.get(0),
        )
    }
}

/// Migration 9: the Stars reconciliation (`getStarTransactions`). `telegram_star_watermarks`
/// says, per merchant and bot, how far the listing has been read: transactions dated before
/// `watermark_date_s` were all handled (the watermark never passes a withdrawal still
/// pending, so its outcome is read again); `resume_offset` is where the next read starts when
/// Telegram lists oldest first. `telegram_star_outflows` records Stars that left the bot
/// other than through farthing: withdrawals to Fragment (with their state and what was booked)
/// and refunds made outside farthing. Keyed by bot, kind and Telegram's transaction id (a
/// refund reuses its payment's id).
pub(crate) const RECONCILE_SCHEMA: &str = r#"
    CREATE TABLE telegram_star_watermarks (
        merchant_id      BLOB NOT NULL,
        bot_id           INTEGER NOT NULL,
        watermark_date_s INTEGER NOT NULL,
        resume_offset    INTEGER NOT NULL,
        reconciled_at_ns INTEGER NOT NULL,
        last_error       TEXT,
        PRIMARY KEY (merchant_id, bot_id)
    ) WITHOUT ROWID;
    CREATE TABLE telegram_star_outflows (
        bot_id           INTEGER NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('withdrawal', 'refund')),
        transaction_id   TEXT NOT NULL,
        merchant_id      BLOB NOT NULL,
        amount           INTEGER NOT NULL,
        nanostar_amount  INTEGER NOT NULL,
        date_s           INTEGER NOT NULL,
        state            TEXT NOT NULL,
        url              TEXT,
        user_id          INTEGER,
        booked_minor     INTEGER NOT NULL,
        shortfall_minor  INTEGER NOT NULL,
        recorded_at_ns   INTEGER NOT NULL,
        updated_at_ns    INTEGER NOT NULL,
        PRIMARY KEY (bot_id, kind, transaction_id)
    ) WITHOUT ROWID;
"#;

/// How far the Stars reconciliation has read one bot's `getStarTransactions` listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarWatermark {
    /// Whose bot.
    pub merchant: MerchantId,
    /// The bot.
    pub bot_id: u64,
    /// Every transaction dated before this (Unix seconds) has been handled.
    pub watermark_date_s: i64,
    /// Where the next read starts when the listing is oldest first.
    pub resume_offset: u64,
    /// When the last reconciliation of this bot ended.
    pub reconciled_at_ns: u64,
    /// Why the last reconciliation failed; `None` when it succeeded.
    pub last_error: Option<String>,
}

/// Stars that left a bot other than through farthing, as `getStarTransactions` showed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarOutflow {
    /// The bot.
    pub bot_id: u64,
    /// `withdrawal` (to Fragment) or `refund` (to a user, made outside farthing).
    pub kind: String,
    /// Telegram's transaction id (for a refund: the refunded payment's charge id).
    pub transaction_id: String,
    /// Whose bot.
    pub merchant: MerchantId,
    /// Whole Stars.
    pub amount: u64,
    /// Fractions of a Star (1/10⁹).
    pub nanostar_amount: u64,
    /// When Telegram made the transaction (Unix seconds).
    pub date_s: i64,
    /// A withdrawal: `pending`, `succeeded`, `failed` or `unknown`; a refund: `refunded`.
    pub state: String,
    /// A succeeded withdrawal: the transaction on Fragment.
    pub url: Option<String>,
    /// A refund: the Telegram user refunded.
    pub user_id: Option<u64>,
    /// What was booked on the ledger for it, in minor units of XTR.
    pub booked_minor: u64,
    /// What could not be booked (the merchant's XTR balance was smaller).
    pub shortfall_minor: u64,
    /// When farthing first saw it.
    pub recorded_at_ns: u64,
    /// When farthing last changed it.
    pub updated_at_ns: u64,
}

const OUTFLOW_COLUMNS: &str = "bot_id, kind, transaction_id, merchant_id, amount, \
     nanostar_amount, date_s, state, url, user_id, booked_minor, shortfall_minor, \
     recorded_at_ns, updated_at_ns";

fn merchant_from(blob: Vec<u8>, table: &str) -> Result<MerchantId, StoreError> {
    let bytes: [u8; 16] = blob
        .try_into()
        .map_err(|_| corrupt(format!("{table}.merchant_id is not 16 bytes")))?;
    Ok(MerchantId(u128::from_be_bytes(bytes)))
}

fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what}")))
}

fn outflow_from_row(row: &Row<'_>) -> Result<StarOutflow, StoreError> {
    let user_id: Option<i64> = row.get(9)?;
    Ok(StarOutflow {
        bot_id: unsigned(row.get(0)?, "bot id")?,
        kind: row.get(1)?,
        transaction_id: row.get(2)?,
        merchant: merchant_from(row.get(3)?, "telegram_star_outflows")?,
        amount: unsigned(row.get(4)?, "Star amount")?,
        nanostar_amount: unsigned(row.get(5)?, "nanostar amount")?,
        date_s: row.get(6)?,
        state: row.get(7)?,
        url: row.get(8)?,
        user_id: user_id.map(|id| unsigned(id, "user id")).transpose()?,
        booked_minor: unsigned(row.get(10)?, "booked amount")?,
        shortfall_minor: unsigned(row.get(11)?, "shortfall")?,
        recorded_at_ns: unsigned(row.get(12)?, "time")?,
        updated_at_ns: unsigned(row.get(13)?, "time")?,
    })
}

fn watermark(
    db: Db<'_>,
    merchant: MerchantId,
    bot_id: u64,
) -> Result<Option<StarWatermark>, StoreError> {
    db.row(
        "SELECT watermark_date_s, resume_offset, reconciled_at_ns, last_error \
         FROM telegram_star_watermarks WHERE merchant_id = ?1 AND bot_id = ?2",
        args![merchant.to_be_bytes(), sql_amount(bot_id)?],
        |row| {
            Ok(StarWatermark {
                merchant,
                bot_id,
                watermark_date_s: row.get(0)?,
                resume_offset: unsigned(row.get(1)?, "resume offset")?,
                reconciled_at_ns: unsigned(row.get(2)?, "time")?,
                last_error: row.get(3)?,
            })
        },
    )
}

fn outflow(
    db: Db<'_>,
    bot_id: u64,
    kind: &str,
    transaction_id: &str,
) -> Result<Option<StarOutflow>, StoreError> {
    db.row(
        &format!(
            "SELECT {OUTFLOW_COLUMNS} FROM telegram_star_outflows \
         WHERE bot_id = ?1 AND kind = ?2 AND transaction_id = ?3"
        ),
        args![sql_amount(bot_id)?, kind, transaction_id],
        outflow_from_row,
    )
}

impl Tx<'_, '_> {
    /// Stores how far the reconciliation of a bot has read.
    pub fn set_star_watermark(&mut self, mark: &StarWatermark) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO telegram_star_watermarks (merchant_id, bot_id, watermark_date_s, \
                 resume_offset, reconciled_at_ns, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (merchant_id, bot_id) DO UPDATE SET \
                 watermark_date_s = excluded.watermark_date_s, \
                 resume_offset = excluded.resume_offset, \
                 reconciled_at_ns = excluded.reconciled_at_ns, last_error = excluded.last_error",
            args![
                mark.merchant.to_be_bytes(),
                sql_amount(mark.bot_id)?,
                mark.watermark_date_s,
                sql_amount(mark.resume_offset)?,
                sql_amount(mark.reconciled_at_ns)?,
                mark.last_error,
            ],
        )?;
        Ok(())
    }

    /// The recorded outflow `(bot_id, kind, transaction_id)`, as of this point of the batch.
    pub fn star_outflow(
        &mut self,
        bot_id: u64,
        kind: &str,
        transaction_id: &str,
    ) -> Result<Option<StarOutflow>, StoreError> {
        outflow(self.db(), bot_id, kind, transaction_id)
    }

    /// Records an outflow, or replaces the one with the same key (a withdrawal whose state
    /// changed), keeping its `recorded_at_ns`.
    pub fn upsert_star_outflow(&mut self, row: &StarOutflow) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO telegram_star_outflows ({OUTFLOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, \
                 ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
                 ON CONFLICT (bot_id, kind, transaction_id) DO UPDATE SET \
                 amount = excluded.amount, nanostar_amount = excluded.nanostar_amount, \
                 date_s = excluded.date_s, state = excluded.state, url = excluded.url, \
                 user_id = excluded.user_id, booked_minor = excluded.booked_minor, \
                 shortfall_minor = excluded.shortfall_minor, \
                 updated_at_ns = excluded.updated_at_ns"
            ),
            args![
                sql_amount(row.bot_id)?,
                row.kind,
                row.transaction_id,
                row.merchant.to_be_bytes(),
                sql_amount(row.amount)?,
                sql_amount(row.nanostar_amount)?,
                row.date_s,
                row.state,
                row.url,
                row.user_id.map(sql_amount).transpose()?,
                sql_amount(row.booked_minor)?,
                sql_amount(row.shortfall_minor)?,
                sql_amount(row.recorded_at_ns)?,
                sql_amount(row.updated_at_ns)?,
            ],
        )?;
        Ok(())
    }
}

impl Reader<'_> {
    /// Every connected bot in this store (a handful of rows: one bot per merchant).
    pub fn telegram_bots(&self) -> Result<Vec<TelegramBot>, StoreError> {
        self.db().rows(
            &format!("SELECT {SELECT_COLUMNS} FROM telegram_bots ORDER BY bot_id"),
            args![],
            from_row,
        )
    }

    /// How far the reconciliation of the merchant's bot `bot_id` has read.
    pub fn star_watermark(
        &self,
        merchant: MerchantId,
        bot_id: u64,
    ) -> Result<Option<StarWatermark>, StoreError> {
        watermark(self.db(), merchant, bot_id)
    }

    /// The outflows recorded for bot `bot_id`, oldest first by Telegram's date.
    pub fn star_outflows(&self, bot_id: u64) -> Result<Vec<StarOutflow>, StoreError> {
        self.db().rows(
            &format!(
                "SELECT {OUTFLOW_COLUMNS} FROM telegram_star_outflows WHERE bot_id = ?1 \
             ORDER BY date_s, transaction_id"
            ),
            args![sql_amount(bot_id)?],
            outflow_from_row,
        )
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

    #[test]
    fn poll_offsets_only_move_forward_and_polling_bots_are_listed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path().join("p.db"), StoreOptions::default()).expect("open");
        let bot = |merchant: u128, bot_id: u64, mode: &str| TelegramBot {
            merchant: MerchantId(merchant),
            bot_id,
            username: format!("bot{bot_id}"),
            token: format!("{bot_id}:secret"),
            api_url: "https://api.telegram.org".to_owned(),
            mode: mode.to_owned(),
            webhook_secret: None,
            created_at_ns: 1,
            updated_at_ns: 1,
        };
        let (polling, hooked) = (bot(1, 10, "polling"), bot(2, 20, "webhook"));
        store
            .execute(move |tx| -> Result<_, StoreError> {
                tx.upsert_telegram_bot(&polling)?;
                tx.upsert_telegram_bot(&hooked)?;
                tx.set_telegram_poll_offset(10, 5)?;
                tx.set_telegram_poll_offset(10, 3)
            })
            .expect("queued")
            .wait()
            .expect("committed")
            .expect("job");
        let (bots, offset, none) = store
            .read(|r| {
                Ok((
                    r.telegram_polling_bots()?,
                    r.telegram_poll_offset(10)?,
                    r.telegram_poll_offset(20)?,
                ))
            })
            .expect("read");
        assert_eq!(bots.iter().map(|b| b.bot_id).collect::<Vec<_>>(), vec![10]);
        assert_eq!(offset, Some(5), "an older offset does not move it back");
        assert_eq!(none, None);
    }
}
