//! The card rail (SPEC RL2: cards and other fiat through Telegram's payment providers): one
//! payment provider token per merchant and store (so per mode), used with the merchant's
//! connected bot, and the provider invoice link made for an invoice.
//!
//! The provider token is stored because `createInvoiceLink` needs it; it is never returned by
//! the API nor logged. [`CardProvider`]'s `Debug` leaves it out.

use farthing_core::MerchantId;

use crate::codec::sql_amount;
use crate::sql::{args, Db, Row};
use crate::{Reader, StoreError, Tx};

/// The card providers table and the invoices' card link (migration 13).
pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE card_providers (
        merchant_id    BLOB PRIMARY KEY,
        provider_token TEXT NOT NULL,
        -- JSON array of ISO 4217 codes, or NULL: every fiat currency.
        currencies     TEXT,
        created_at_ns  INTEGER NOT NULL,
        updated_at_ns  INTEGER NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE invoices ADD COLUMN card_invoice_link TEXT;
"#;

/// A merchant's Telegram payment provider.
#[derive(Clone, PartialEq, Eq)]
pub struct CardProvider {
    /// Whose provider it is.
    pub merchant: MerchantId,
    /// The payment provider token from @BotFather: secret, never shown.
    pub provider_token: String,
    /// The currencies invoices may use on this rail; `None`: any fiat currency.
    pub currencies: Option<Vec<String>>,
    /// When it was first configured.
    pub created_at_ns: u64,
    /// When it was last configured.
    pub updated_at_ns: u64,
}

impl std::fmt::Debug for CardProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardProvider")
            .field("merchant", &self.merchant)
            .field("currencies", &self.currencies)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "merchant_id, provider_token, currencies, created_at_ns, updated_at_ns";

/// [`COLUMNS`] as read: the token unsealed (`secrets.rs`).
const SELECT_COLUMNS: &str =
    "merchant_id, unseal(provider_token), currencies, created_at_ns, updated_at_ns";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("card_providers: {what}"))
}

fn from_row(row: &Row<'_>) -> Result<CardProvider, StoreError> {
    let merchant: Vec<u8> = row.get(0)?;
    let merchant: [u8; 16] = merchant
        .try_into()
        .map_err(|_| corrupt("merchant_id is not 16 bytes"))?;
    let currencies: Option<String> = row.get(2)?;
    let currencies = currencies
        .map(|json| serde_json::from_str(&json).map_err(|_| corrupt("currencies is not a list")))
        .transpose()?;
    let time = |value: i64| u64::try_from(value).map_err(|_| corrupt("negative time"));
    Ok(CardProvider {
        merchant: MerchantId(u128::from_be_bytes(merchant)),
        provider_token: row.get(1)?,
        currencies,
        created_at_ns: time(row.get(3)?)?,
        updated_at_ns: time(row.get(4)?)?,
    })
}

fn by_merchant(db: Db<'_>, merchant: MerchantId) -> Result<Option<CardProvider>, StoreError> {
    db.row(
        &format!("SELECT {SELECT_COLUMNS} FROM card_providers WHERE merchant_id = ?1"),
        args![merchant.to_be_bytes()],
        from_row,
    )
}

impl Tx<'_, '_> {
    /// Stores the merchant's card provider, replacing the one it had (keeping its
    /// `created_at_ns`).
    pub fn upsert_card_provider(&mut self, provider: &CardProvider) -> Result<(), StoreError> {
        let currencies = provider
            .currencies
            .as_ref()
            .map(|codes| serde_json::to_string(codes).unwrap_or_else(|_| "[]".to_owned()));
        self.db().execute(
            &format!(
                "INSERT INTO card_providers ({COLUMNS}) VALUES (?1, seal(?2), ?3, ?4, ?5) \
                 ON CONFLICT (merchant_id) DO UPDATE SET provider_token = excluded.provider_token, \
                 currencies = excluded.currencies, updated_at_ns = excluded.updated_at_ns"
            ),
            args![
                provider.merchant.to_be_bytes(),
                provider.provider_token,
                currencies,
                sql_amount(provider.created_at_ns)?,
                sql_amount(provider.updated_at_ns)?,
            ],
        )?;
        // Instances that cache which rails the merchant can take read them again.
        self.announce(crate::topics::Topic::Rails)
    }
}

impl Reader<'_> {
    /// The merchant's card provider.
    pub fn card_provider(&self, merchant: MerchantId) -> Result<Option<CardProvider>, StoreError> {
        by_merchant(self.db(), merchant)
    }
}
