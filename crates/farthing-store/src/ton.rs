//! The TON rail's tables (SPEC RL4): the merchant's wallet and the indexer it is watched
//! through, the watcher's cursor per account, the payment references invoices hand out, and
//! every transaction the watcher read (settled, unmatched or ignored, with the reason), and the
//! refunds the merchant is to send from their own wallet.
//!
//! The cursor of an account moves in the same store job as the ledger effects of the
//! transactions up to it, so a crash between fetching and committing replays them, and the
//! transaction hash (unique here and as the rail payment id) keeps a replay from booking twice.

use farthing_core::{CustomerId, InvoiceId, MerchantId};

use crate::codec::sql_amount;
use crate::sql::{args, Arg, Db, Row};
use crate::{Reader, StoreError, Tx};

/// Migration 22.
pub(crate) const SCHEMA: &str = r#"
    -- The merchant's TON wallet (one per mode: each mode has its own database). One wallet
    -- belongs to one merchant, or its payments would be booked twice.
    CREATE TABLE ton_wallets (
        merchant_id   BLOB PRIMARY KEY,
        address       TEXT NOT NULL UNIQUE,
        network       TEXT NOT NULL CHECK (network IN ('mainnet', 'testnet')),
        api_url       TEXT NOT NULL,
        api_key       TEXT,
        jettons       TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL,
        updated_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- How far the watcher has read each watched account (the wallet and its jetton wallets).
    CREATE TABLE ton_cursors (
        merchant_id   BLOB NOT NULL,
        account       TEXT NOT NULL,
        lt            INTEGER NOT NULL,
        hash          TEXT NOT NULL,
        tx_now_s      INTEGER NOT NULL,
        updated_at_ns INTEGER NOT NULL,
        PRIMARY KEY (merchant_id, account)
    ) WITHOUT ROWID;

    -- The comment each invoice asks a payer to write.
    CREATE TABLE ton_references (
        reference     TEXT PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        invoice_id    BLOB NOT NULL UNIQUE,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Every transaction the watcher read, once.
    CREATE TABLE ton_transactions (
        hash          TEXT PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        account       TEXT NOT NULL,
        lt            INTEGER NOT NULL,
        outcome       TEXT NOT NULL CHECK (outcome IN ('settled', 'unmatched', 'assigned', 'ignored')),
        reason        TEXT,
        currency      TEXT,
        amount_minor  INTEGER,
        payer         TEXT,
        comment       TEXT,
        invoice_id    BLOB,
        customer_id   BLOB,
        tx_now_s      INTEGER NOT NULL,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX ton_transactions_by_outcome ON ton_transactions (merchant_id, outcome, lt);
"#;

/// Migration 24: the refunds a merchant is to send from their own wallet, found again by the
/// comment the prepared transfer carries.
pub(crate) const REFUNDS_SCHEMA: &str = r#"
    CREATE TABLE ton_refunds (
        merchant_id   BLOB NOT NULL,
        comment       TEXT NOT NULL,
        refund_id     BLOB NOT NULL UNIQUE,
        currency      TEXT NOT NULL,
        amount_minor  INTEGER NOT NULL,
        destination   TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL,
        PRIMARY KEY (merchant_id, comment)
    ) WITHOUT ROWID;
"#;

/// A refund the merchant is to send from their own wallet: what the watcher waits to see leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TonRefund {
    /// Whose wallet sends it.
    pub merchant: MerchantId,
    /// The comment the prepared transfer carries (unique per merchant).
    pub comment: String,
    /// The refund it books.
    pub refund: farthing_core::RefundId,
    /// `TON` or a jetton's symbol.
    pub currency: String,
    /// How much, in minor units.
    pub amount_minor: u64,
    /// The payer's address, raw.
    pub destination: String,
    /// When it was prepared.
    pub created_at_ns: u64,
}

/// A merchant's TON wallet and how it is watched.
#[derive(Clone, PartialEq, Eq)]
pub struct TonWallet {
    /// Whose wallet.
    pub merchant: MerchantId,
    /// Raw form (`0:` + upper-case hex).
    pub address: String,
    /// `mainnet` or `testnet`.
    pub network: String,
    /// The toncenter v3 base URL.
    pub api_url: String,
    /// The toncenter API key: secret, never shown.
    pub api_key: Option<String>,
    /// The allowed jettons as JSON (`[{symbol, master, decimals, wallet}]`).
    pub jettons: String,
    /// When first configured.
    pub created_at_ns: u64,
    /// When last configured.
    pub updated_at_ns: u64,
}

impl std::fmt::Debug for TonWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TonWallet")
            .field("merchant", &self.merchant)
            .field("address", &self.address)
            .field("network", &self.network)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// Where the watcher stands on one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TonCursor {
    /// The logical time of the last transaction read.
    pub lt: u64,
    /// Its hash.
    pub hash: String,
    /// Its unix time.
    pub tx_now_s: u64,
    /// When the cursor moved.
    pub updated_at_ns: u64,
}

/// A transaction the watcher read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TonTransaction {
    /// Its hash (standard base64): the rail payment id.
    pub hash: String,
    /// The merchant whose account it is on.
    pub merchant: MerchantId,
    /// The account (raw form).
    pub account: String,
    /// Its logical time.
    pub lt: u64,
    /// `settled`, `unmatched` (money credited to the payer, the merchant may assign it),
    /// `assigned` (an unmatched payment the merchant assigned) or `ignored` (not a payment).
    pub outcome: String,
    /// Why it was ignored, or how it settled.
    pub reason: Option<String>,
    /// The currency of a payment.
    pub currency: Option<String>,
    /// Its amount in minor units.
    pub amount_minor: Option<u64>,
    /// The payer's address (raw form).
    pub payer: Option<String>,
    /// The payer's comment.
    pub comment: Option<String>,
    /// The invoice it paid or was assigned to.
    pub invoice: Option<InvoiceId>,
    /// The customer credited.
    pub customer: Option<CustomerId>,
    /// Its unix time on chain.
    pub tx_now_s: u64,
    /// When the watcher read it.
    pub created_at_ns: u64,
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(format!("ton: {}", what.into()))
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

const WALLET_COLUMNS: &str =
    "merchant_id, address, network, api_url, api_key, jettons, created_at_ns, updated_at_ns";

/// [`WALLET_COLUMNS`] as read: the API key unsealed (`secrets.rs`).
const WALLET_SELECT: &str = "merchant_id, address, network, api_url, unseal(api_key), jettons, \
     created_at_ns, updated_at_ns";

fn wallet_from_row(row: &Row<'_>) -> Result<TonWallet, StoreError> {
    Ok(TonWallet {
        merchant: MerchantId(id16(row.get(0)?, "ton_wallets.merchant_id")?),
        address: row.get(1)?,
        network: row.get(2)?,
        api_url: row.get(3)?,
        api_key: row.get(4)?,
        jettons: row.get(5)?,
        created_at_ns: number(row.get(6)?, "ton_wallets time")?,
        updated_at_ns: number(row.get(7)?, "ton_wallets time")?,
    })
}

const TX_COLUMNS: &str = "hash, merchant_id, account, lt, outcome, reason, currency, \
     amount_minor, payer, comment, invoice_id, customer_id, tx_now_s, created_at_ns";

fn transaction_from_row(row: &Row<'_>) -> Result<TonTransaction, StoreError> {
    let invoice: Option<Vec<u8>> = row.get(10)?;
    let customer: Option<Vec<u8>> = row.get(11)?;
    let amount: Option<i64> = row.get(7)?;
    Ok(TonTransaction {
        hash: row.get(0)?,
        merchant: MerchantId(id16(row.get(1)?, "ton_transactions.merchant_id")?),
        account: row.get(2)?,
        lt: number(row.get(3)?, "lt")?,
        outcome: row.get(4)?,
        reason: row.get(5)?,
        currency: row.get(6)?,
        amount_minor: amount.map(|a| number(a, "amount_minor")).transpose()?,
        payer: row.get(8)?,
        comment: row.get(9)?,
        invoice: invoice
            .map(|b| id16(b, "ton_transactions.invoice_id").map(InvoiceId))
            .transpose()?,
        customer: customer
            .map(|b| id16(b, "ton_transactions.customer_id").map(CustomerId))
            .transpose()?,
        tx_now_s: number(row.get(12)?, "tx_now_s")?,
        created_at_ns: number(row.get(13)?, "created_at_ns")?,
    })
}

fn wallet_where(
    db: Db<'_>,
    condition: &str,
    value: &dyn Arg,
) -> Result<Option<TonWallet>, StoreError> {
    db.row(
        &format!("SELECT {WALLET_SELECT} FROM ton_wallets WHERE {condition} = ?1"),
        args![value],
        wallet_from_row,
    )
}

fn all_wallets(db: Db<'_>) -> Result<Vec<TonWallet>, StoreError> {
    db.rows(
        &format!("SELECT {WALLET_SELECT} FROM ton_wallets ORDER BY merchant_id"),
        args![],
        wallet_from_row,
    )
}

fn cursor(
    db: Db<'_>,
    merchant: MerchantId,
    account: &str,
) -> Result<Option<TonCursor>, StoreError> {
    db.row(
        "SELECT lt, hash, tx_now_s, updated_at_ns FROM ton_cursors \
             WHERE merchant_id = ?1 AND account = ?2",
        args![merchant.to_be_bytes(), account],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        },
    )?
    .map(|(lt, hash, now, updated)| {
        Ok(TonCursor {
            lt: number(lt, "lt")?,
            hash,
            tx_now_s: number(now, "tx_now_s")?,
            updated_at_ns: number(updated, "updated_at_ns")?,
        })
    })
    .transpose()
}

fn reference(db: Db<'_>, reference: &str) -> Result<Option<(MerchantId, InvoiceId)>, StoreError> {
    db.row(
        "SELECT merchant_id, invoice_id FROM ton_references WHERE reference = ?1",
        args![reference],
        |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?)),
    )?
    .map(|(merchant, invoice)| {
        Ok((
            MerchantId(id16(merchant, "ton_references.merchant_id")?),
            InvoiceId(id16(invoice, "ton_references.invoice_id")?),
        ))
    })
    .transpose()
}

fn reference_of(db: Db<'_>, invoice: InvoiceId) -> Result<Option<String>, StoreError> {
    db.row(
        "SELECT reference FROM ton_references WHERE invoice_id = ?1",
        args![invoice.to_be_bytes()],
        |row| row.get(0),
    )
}

fn transaction(db: Db<'_>, hash: &str) -> Result<Option<TonTransaction>, StoreError> {
    db.row(
        &format!("SELECT {TX_COLUMNS} FROM ton_transactions WHERE hash = ?1"),
        args![hash],
        transaction_from_row,
    )
}

fn transactions(
    db: Db<'_>,
    merchant: MerchantId,
    outcome: Option<&str>,
    before: Option<(u64, &str)>,
    limit: u32,
) -> Result<Vec<TonTransaction>, StoreError> {
    let before_lt = before.map(|(lt, _)| sql_amount(lt)).transpose()?;
    let before_hash = before.map(|(_, hash)| hash);
    db.rows(
        &format!(
            "SELECT {TX_COLUMNS} FROM ton_transactions WHERE merchant_id = ?1 \
             AND (CAST(?2 AS TEXT) IS NULL OR outcome = ?2) \
             AND (CAST(?3 AS BIGINT) IS NULL OR lt < ?3 OR (lt = ?3 AND hash > ?4)) \
             ORDER BY lt DESC, hash LIMIT ?5"
        ),
        args![
            merchant.to_be_bytes(),
            outcome,
            before_lt,
            before_hash,
            limit
        ],
        transaction_from_row,
    )
}

impl Tx<'_, '_> {
    /// Stores the merchant's wallet (replacing an earlier one; the cursors of accounts it no
    /// longer watches stay, harmless, should it come back).
    pub fn upsert_ton_wallet(&mut self, wallet: &TonWallet) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO ton_wallets ({WALLET_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, seal(?5), ?6, ?7, ?8) \
                 ON CONFLICT (merchant_id) DO UPDATE SET address = excluded.address, \
                 network = excluded.network, api_url = excluded.api_url, \
                 api_key = excluded.api_key, jettons = excluded.jettons, \
                 updated_at_ns = excluded.updated_at_ns"
            ),
            args![
                wallet.merchant.to_be_bytes(),
                wallet.address,
                wallet.network,
                wallet.api_url,
                wallet.api_key,
                wallet.jettons,
                sql_amount(wallet.created_at_ns)?,
                sql_amount(wallet.updated_at_ns)?,
            ],
        )?;
        // The instance that leads the background work watches it from now on.
        self.announce(crate::topics::Topic::Rails)
    }

    /// The merchant's wallet, as of this point of the batch.
    pub fn ton_wallet(&mut self, merchant: MerchantId) -> Result<Option<TonWallet>, StoreError> {
        wallet_where(self.db(), "merchant_id", &merchant.to_be_bytes())
    }

    /// The wallet with this raw address, whoever's it is.
    pub fn ton_wallet_by_address(
        &mut self,
        address: &str,
    ) -> Result<Option<TonWallet>, StoreError> {
        wallet_where(self.db(), "address", &address)
    }

    /// Where the watcher stands on `account`.
    pub fn ton_cursor(
        &mut self,
        merchant: MerchantId,
        account: &str,
    ) -> Result<Option<TonCursor>, StoreError> {
        cursor(self.db(), merchant, account)
    }

    /// Moves the watcher's cursor on `account` forward (never back: an older cursor is kept).
    pub fn advance_ton_cursor(
        &mut self,
        merchant: MerchantId,
        account: &str,
        to: &TonCursor,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO ton_cursors (merchant_id, account, lt, hash, tx_now_s, updated_at_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (merchant_id, account) DO UPDATE SET lt = excluded.lt, \
                 hash = excluded.hash, tx_now_s = excluded.tx_now_s, \
                 updated_at_ns = excluded.updated_at_ns WHERE excluded.lt > ton_cursors.lt",
            args![
                merchant.to_be_bytes(),
                account,
                sql_amount(to.lt)?,
                to.hash,
                sql_amount(to.tx_now_s)?,
                sql_amount(to.updated_at_ns)?,
            ],
        )?;
        Ok(())
    }

    /// Records the payment reference of an invoice (the reference must be new).
    pub fn insert_ton_reference(
        &mut self,
        reference: &str,
        merchant: MerchantId,
        invoice: InvoiceId,
    ) -> Result<(), StoreError> {
        let now = sql_amount(self.now_ns())?;
        self.db().execute(
            "INSERT INTO ton_references (reference, merchant_id, invoice_id, created_at_ns) \
                 VALUES (?1, ?2, ?3, ?4)",
            args![
                reference,
                merchant.to_be_bytes(),
                invoice.to_be_bytes(),
                now
            ],
        )?;
        Ok(())
    }

    /// The merchant and invoice a reference names.
    pub fn ton_reference(
        &mut self,
        text: &str,
    ) -> Result<Option<(MerchantId, InvoiceId)>, StoreError> {
        reference(self.db(), text)
    }

    /// The reference of an invoice, if it has one.
    pub fn ton_reference_of(&mut self, invoice: InvoiceId) -> Result<Option<String>, StoreError> {
        reference_of(self.db(), invoice)
    }

    /// Records a refund to wait for.
    pub fn insert_ton_refund(&mut self, refund: &TonRefund) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO ton_refunds (merchant_id, comment, refund_id, currency, \
                 amount_minor, destination, created_at_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![
                refund.merchant.to_be_bytes(),
                refund.comment,
                refund.refund.to_be_bytes(),
                refund.currency,
                sql_amount(refund.amount_minor)?,
                refund.destination,
                sql_amount(refund.created_at_ns)?,
            ],
        )?;
        Ok(())
    }

    /// The refund a merchant's transfer with `comment` sends, if one was prepared.
    pub fn ton_refund(
        &mut self,
        merchant: MerchantId,
        comment: &str,
    ) -> Result<Option<TonRefund>, StoreError> {
        self.db().row(
            "SELECT merchant_id, comment, refund_id, currency, amount_minor, destination, \
             created_at_ns FROM ton_refunds WHERE merchant_id = ?1 AND comment = ?2",
            args![merchant.to_be_bytes(), comment],
            |row| {
                Ok(TonRefund {
                    merchant: MerchantId(id16(row.get(0)?, "ton_refunds.merchant_id")?),
                    comment: row.get(1)?,
                    refund: farthing_core::RefundId(id16(row.get(2)?, "ton_refunds.refund_id")?),
                    currency: row.get(3)?,
                    amount_minor: number(row.get(4)?, "ton_refunds amount")?,
                    destination: row.get(5)?,
                    created_at_ns: number(row.get(6)?, "ton_refunds time")?,
                })
            },
        )
    }

    /// Records a transaction the watcher read; `false` (and nothing written) when its hash was
    /// recorded before.
    pub fn insert_ton_transaction(&mut self, tx: &TonTransaction) -> Result<bool, StoreError> {
        let amount = tx.amount_minor.map(sql_amount).transpose()?;
        let changed = self.db().execute(
            &format!(
                "INSERT INTO ton_transactions ({TX_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
                 ON CONFLICT (hash) DO NOTHING"
            ),
            args![
                tx.hash,
                tx.merchant.to_be_bytes(),
                tx.account,
                sql_amount(tx.lt)?,
                tx.outcome,
                tx.reason,
                tx.currency,
                amount,
                tx.payer,
                tx.comment,
                tx.invoice.map(InvoiceId::to_be_bytes),
                tx.customer.map(CustomerId::to_be_bytes),
                sql_amount(tx.tx_now_s)?,
                sql_amount(tx.created_at_ns)?,
            ],
        )?;
        Ok(changed == 1)
    }

    /// A transaction the watcher read.
    pub fn ton_transaction(&mut self, hash: &str) -> Result<Option<TonTransaction>, StoreError> {
        transaction(self.db(), hash)
    }

    /// Marks an unmatched payment as assigned to `invoice` (or to a customer's balance, then
    /// `invoice` is `None`); `false` when it is not unmatched (any more).
    pub fn assign_ton_transaction(
        &mut self,
        hash: &str,
        invoice: Option<InvoiceId>,
        customer: CustomerId,
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "UPDATE ton_transactions SET outcome = 'assigned', invoice_id = ?2, \
                 customer_id = ?3 WHERE hash = ?1 AND outcome = 'unmatched'",
            args![
                hash,
                invoice.map(InvoiceId::to_be_bytes),
                customer.to_be_bytes()
            ],
        )?;
        Ok(changed == 1)
    }
}

impl Reader<'_> {
    /// The merchant's wallet.
    pub fn ton_wallet(&self, merchant: MerchantId) -> Result<Option<TonWallet>, StoreError> {
        wallet_where(self.db(), "merchant_id", &merchant.to_be_bytes())
    }

    /// Every configured wallet (the watcher's list).
    pub fn ton_wallets(&self) -> Result<Vec<TonWallet>, StoreError> {
        all_wallets(self.db())
    }

    /// Where the watcher stands on `account`.
    pub fn ton_cursor(
        &self,
        merchant: MerchantId,
        account: &str,
    ) -> Result<Option<TonCursor>, StoreError> {
        cursor(self.db(), merchant, account)
    }

    /// The reference of an invoice, if it has one.
    pub fn ton_reference_of(&self, invoice: InvoiceId) -> Result<Option<String>, StoreError> {
        reference_of(self.db(), invoice)
    }

    /// A transaction the watcher read.
    pub fn ton_transaction(&self, hash: &str) -> Result<Option<TonTransaction>, StoreError> {
        transaction(self.db(), hash)
    }

    /// The merchant's transactions, newest (highest logical time) first, optionally of one
    /// outcome and after the one at `before` (`(lt, hash)`, for paging).
    pub fn ton_transactions(
        &self,
        merchant: MerchantId,
        outcome: Option<&str>,
        before: Option<(u64, &str)>,
        limit: u32,
    ) -> Result<Vec<TonTransaction>, StoreError> {
        transactions(self.db(), merchant, outcome, before, limit)
    }
}
