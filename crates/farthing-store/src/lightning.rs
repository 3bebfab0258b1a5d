//! The Lightning rail's tables (SPEC RL3): the merchant's node, the node invoices farthing made
//! and watches, LNURL one-time secrets (LNURL-auth challenges, LNURL-withdraw links) and the
//! LNURL-auth linking keys that identify customers.
//!
//! The node configuration is kept as the JSON text of `farthing_lightning::BackendConfig`
//! (it holds the node's secrets: LNbits keys, LND macaroon, CLN rune); the store does not read
//! it, and [`LightningNode`]'s `Debug` leaves it out.

use farthing_core::{CustomerId, InvoiceId, MerchantId};

use crate::codec::sql_amount;
use crate::sql::{args, Db, Row};
use crate::{Reader, StoreError, Tx};

/// Migration 6.
pub(crate) const SCHEMA: &str = r#"
    -- The merchant's Lightning node (one per mode: each mode has its own database).
    CREATE TABLE lightning_nodes (
        merchant_id   BLOB PRIMARY KEY,
        config        TEXT NOT NULL,
        network       TEXT NOT NULL,
        address_name  TEXT UNIQUE,
        created_at_ns INTEGER NOT NULL,
        updated_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Every node invoice farthing made, watched until `watch_until_ns` (past its expiry, so a
    -- payment settled at the node while farthing was not looking is still found).
    CREATE TABLE lightning_invoices (
        payment_hash  BLOB PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        invoice_id    BLOB,
        customer_id   BLOB,
        purpose       TEXT NOT NULL CHECK (purpose IN ('invoice', 'top_up')),
        bolt11        TEXT NOT NULL,
        amount_msat   INTEGER NOT NULL,
        expires_at_ns INTEGER NOT NULL,
        watch_until_ns INTEGER NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('open', 'settled', 'unpaid')),
        comment       TEXT,
        created_at_ns INTEGER NOT NULL,
        closed_at_ns  INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX lightning_invoices_watched ON lightning_invoices (watch_until_ns)
        WHERE state = 'open';
    CREATE INDEX lightning_invoices_by_invoice ON lightning_invoices (invoice_id);

    -- LNURL one-time secrets: `auth` challenges (LUD-04) and `withdraw` links (LUD-03).
    CREATE TABLE lnurl_secrets (
        k1            BLOB PRIMARY KEY,
        kind          TEXT NOT NULL CHECK (kind IN ('auth', 'withdraw')),
        merchant_id   BLOB NOT NULL,
        customer_id   BLOB,
        min_msat      INTEGER NOT NULL,
        max_msat      INTEGER NOT NULL,
        description   TEXT NOT NULL,
        expires_at_ns INTEGER NOT NULL,
        used_at_ns    INTEGER,
        result        TEXT,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- LNURL-auth linking keys: "the payment method is the account".
    CREATE TABLE lnurl_identities (
        merchant_id   BLOB NOT NULL,
        linking_key   TEXT NOT NULL,
        customer_id   BLOB NOT NULL,
        created_at_ns INTEGER NOT NULL,
        PRIMARY KEY (merchant_id, linking_key)
    ) WITHOUT ROWID;

    ALTER TABLE invoices ADD COLUMN lightning_bolt11 TEXT;
"#;

/// A merchant's Lightning node.
#[derive(Clone, PartialEq, Eq)]
pub struct LightningNode {
    /// Whose node.
    pub merchant: MerchantId,
    /// `farthing_lightning::BackendConfig` as JSON: secret, never shown.
    pub config: String,
    /// The BOLT11 network the node's invoices must be on (`bitcoin`, `testnet`, `signet`,
    /// `regtest`).
    pub network: String,
    /// The local part of the merchant's Lightning Address (LUD-16), if it has one.
    pub address_name: Option<String>,
    /// When first configured.
    pub created_at_ns: u64,
    /// When last configured.
    pub updated_at_ns: u64,
}

impl std::fmt::Debug for LightningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LightningNode")
            .field("merchant", &self.merchant)
            .field("network", &self.network)
            .field("address_name", &self.address_name)
            .finish_non_exhaustive()
    }
}

/// Where a node invoice stands in farthing's watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchState {
    /// Watched: may still be (or have been) paid.
    Open,
    /// Settled and booked.
    Settled,
    /// Never paid: the node canceled it or the watch ended.
    Unpaid,
}

impl WatchState {
    fn as_str(self) -> &'static str {
        match self {
            WatchState::Open => "open",
            WatchState::Settled => "settled",
            WatchState::Unpaid => "unpaid",
        }
    }

    fn parse(text: &str) -> Option<WatchState> {
        Some(match text {
            "open" => WatchState::Open,
            "settled" => WatchState::Settled,
            "unpaid" => WatchState::Unpaid,
            _ => return None,
        })
    }
}

/// A node invoice farthing made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LightningInvoice {
    /// Its payment hash (the rail payment id of its settlement).
    pub payment_hash: [u8; 32],
    /// Whose node.
    pub merchant: MerchantId,
    /// The farthing invoice it pays (`None` for a top-up).
    pub invoice: Option<InvoiceId>,
    /// The customer it is for, when known (a top-up's beneficiary).
    pub customer: Option<CustomerId>,
    /// `true` for a top-up of `customer`'s balance (LNURL-pay to a customer), `false` for the
    /// payment of `invoice`.
    pub top_up: bool,
    /// The BOLT11.
    pub bolt11: String,
    /// The amount asked, millisatoshis.
    pub amount_msat: u64,
    /// The BOLT11's own expiry.
    pub expires_at_ns: u64,
    /// Until when farthing asks the node about it.
    pub watch_until_ns: u64,
    /// Where it stands.
    pub state: WatchState,
    /// The payer's LUD-12 comment.
    pub comment: Option<String>,
    /// When it was made.
    pub created_at_ns: u64,
    /// When it was settled or given up.
    pub closed_at_ns: Option<u64>,
}

/// An LNURL one-time secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LnurlSecret {
    /// The `k1` (32 random bytes).
    pub k1: [u8; 32],
    /// `auth` or `withdraw`.
    pub kind: String,
    /// Whose.
    pub merchant: MerchantId,
    /// Withdraw: the customer whose balance pays it (`None`: the merchant's payout).
    pub customer: Option<CustomerId>,
    /// Withdraw: least amount, millisatoshis (0 for auth).
    pub min_msat: u64,
    /// Withdraw: largest amount, millisatoshis (0 for auth).
    pub max_msat: u64,
    /// Withdraw: the default description; auth: the action.
    pub description: String,
    /// When it stops working.
    pub expires_at_ns: u64,
    /// When it was used (single use).
    pub used_at_ns: Option<u64>,
    /// Auth: the linking key; withdraw: the payment hash paid (hex).
    pub result: Option<String>,
    /// When it was made.
    pub created_at_ns: u64,
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn id16(bytes: Vec<u8>, what: &str) -> Result<u128, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt(format!("{what} is not 16 bytes")))?;
    Ok(u128::from_be_bytes(array))
}

fn hash32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt(format!("{what} is not 32 bytes")))
}

fn number(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what}")))
}

fn optional_number(value: Option<i64>, what: &str) -> Result<Option<u64>, StoreError> {
    value.map(|v| number(v, what)).transpose()
}

const NODE_COLUMNS: &str =
    "merchant_id, config, network, address_name, created_at_ns, updated_at_ns";

/// [`NODE_COLUMNS`] as read: the configuration (with its credentials) unsealed (`secrets.rs`).
const NODE_SELECT: &str =
    "merchant_id, unseal(config), network, address_name, created_at_ns, updated_at_ns";

fn node_from_row(row: &Row<'_>) -> Result<LightningNode, StoreError> {
    Ok(LightningNode {
        merchant: MerchantId(id16(row.get(0)?, "lightning_nodes.merchant_id")?),
        config: row.get(1)?,
        network: row.get(2)?,
        address_name: row.get(3)?,
        created_at_ns: number(row.get(4)?, "lightning_nodes time")?,
        updated_at_ns: number(row.get(5)?, "lightning_nodes time")?,
    })
}

const INVOICE_COLUMNS: &str = "payment_hash, merchant_id, invoice_id, customer_id, purpose, \
     bolt11, amount_msat, expires_at_ns, watch_until_ns, state, comment, created_at_ns, \
     closed_at_ns";

fn invoice_from_row(row: &Row<'_>) -> Result<LightningInvoice, StoreError> {
    let invoice: Option<Vec<u8>> = row.get(2)?;
    let customer: Option<Vec<u8>> = row.get(3)?;
    let purpose: String = row.get(4)?;
    let state: String = row.get(9)?;
    Ok(LightningInvoice {
        payment_hash: hash32(row.get(0)?, "lightning_invoices.payment_hash")?,
        merchant: MerchantId(id16(row.get(1)?, "lightning_invoices.merchant_id")?),
        invoice: invoice
            .map(|b| id16(b, "lightning_invoices.invoice_id").map(InvoiceId))
            .transpose()?,
        customer: customer
            .map(|b| id16(b, "lightning_invoices.customer_id").map(CustomerId))
            .transpose()?,
        top_up: purpose == "top_up",
        bolt11: row.get(5)?,
        amount_msat: number(row.get(6)?, "amount_msat")?,
        expires_at_ns: number(row.get(7)?, "expires_at_ns")?,
        watch_until_ns: number(row.get(8)?, "watch_until_ns")?,
        state: WatchState::parse(&state)
            .ok_or_else(|| corrupt(format!("unknown lightning invoice state {state:?}")))?,
        comment: row.get(10)?,
        created_at_ns: number(row.get(11)?, "created_at_ns")?,
        closed_at_ns: optional_number(row.get(12)?, "closed_at_ns")?,
    })
}

const SECRET_COLUMNS: &str = "k1, kind, merchant_id, customer_id, min_msat, max_msat, \
     description, expires_at_ns, used_at_ns, result, created_at_ns";

fn secret_from_row(row: &Row<'_>) -> Result<LnurlSecret, StoreError> {
    let customer: Option<Vec<u8>> = row.get(3)?;
    Ok(LnurlSecret {
        k1: hash32(row.get(0)?, "lnurl_secrets.k1")?,
        kind: row.get(1)?,
        merchant: MerchantId(id16(row.get(2)?, "lnurl_secrets.merchant_id")?),
        customer: customer
            .map(|b| id16(b, "lnurl_secrets.customer_id").map(CustomerId))
            .transpose()?,
        min_msat: number(row.get(4)?, "min_msat")?,
        max_msat: number(row.get(5)?, "max_msat")?,
        description: row.get(6)?,
        expires_at_ns: number(row.get(7)?, "expires_at_ns")?,
        used_at_ns: optional_number(row.get(8)?, "used_at_ns")?,
        result: row.get(9)?,
        created_at_ns: number(row.get(10)?, "created_at_ns")?,
    })
}

fn node_by_merchant(db: Db<'_>, merchant: MerchantId) -> Result<Option<LightningNode>, StoreError> {
    db.row(
        &format!("SELECT {NODE_SELECT} FROM lightning_nodes WHERE merchant_id = ?1"),
        args![merchant.to_be_bytes()],
        node_from_row,
    )
}

fn node_by_address(db: Db<'_>, name: &str) -> Result<Option<LightningNode>, StoreError> {
    db.row(
        &format!("SELECT {NODE_SELECT} FROM lightning_nodes WHERE address_name = ?1"),
        args![name],
        node_from_row,
    )
}

fn invoice_by_hash(db: Db<'_>, hash: &[u8; 32]) -> Result<Option<LightningInvoice>, StoreError> {
    db.row(
        &format!("SELECT {INVOICE_COLUMNS} FROM lightning_invoices WHERE payment_hash = ?1"),
        args![hash.as_slice()],
        invoice_from_row,
    )
}

fn invoices_for(db: Db<'_>, invoice: InvoiceId) -> Result<Vec<LightningInvoice>, StoreError> {
    db.rows(
        &format!(
            "SELECT {INVOICE_COLUMNS} FROM lightning_invoices WHERE invoice_id = ?1 \
         ORDER BY created_at_ns"
        ),
        args![invoice.to_be_bytes()],
        invoice_from_row,
    )
}

fn secret_by_k1(db: Db<'_>, k1: &[u8; 32]) -> Result<Option<LnurlSecret>, StoreError> {
    db.row(
        &format!("SELECT {SECRET_COLUMNS} FROM lnurl_secrets WHERE k1 = ?1"),
        args![k1.as_slice()],
        secret_from_row,
    )
}

impl Tx<'_, '_> {
    /// Stores the merchant's node, replacing the one it had (keeping `created_at_ns`). Fails
    /// with a constraint error when another merchant has the same `address_name`.
    pub fn upsert_lightning_node(&mut self, node: &LightningNode) -> Result<(), StoreError> {
        self.db().execute(&format!(
                "INSERT INTO lightning_nodes ({NODE_COLUMNS}) VALUES (?1, seal(?2), ?3, ?4, ?5, ?6) \
                 ON CONFLICT (merchant_id) DO UPDATE SET config = excluded.config, \
                 network = excluded.network, address_name = excluded.address_name, \
                 updated_at_ns = excluded.updated_at_ns"
            ), args![
                node.merchant.to_be_bytes(),
                node.config,
                node.network,
                node.address_name,
                sql_amount(node.created_at_ns)?,
                sql_amount(node.updated_at_ns)?,
            ])?;
        // The instance that leads the background work watches it from now on.
        self.announce(crate::topics::Topic::Rails)
    }

    /// The merchant's node, as of this point of the batch.
    pub fn lightning_node(
        &mut self,
        merchant: MerchantId,
    ) -> Result<Option<LightningNode>, StoreError> {
        node_by_merchant(self.db(), merchant)
    }

    /// The node of the merchant whose Lightning Address is `name@…`.
    pub fn lightning_node_by_address(
        &mut self,
        name: &str,
    ) -> Result<Option<LightningNode>, StoreError> {
        node_by_address(self.db(), name)
    }

    /// Records a node invoice to watch (its payment hash must be new).
    pub fn insert_lightning_invoice(
        &mut self,
        invoice: &LightningInvoice,
    ) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO lightning_invoices ({INVOICE_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ),
            args![
                invoice.payment_hash.as_slice(),
                invoice.merchant.to_be_bytes(),
                invoice.invoice.map(|id| id.to_be_bytes()),
                invoice.customer.map(|id| id.to_be_bytes()),
                if invoice.top_up { "top_up" } else { "invoice" },
                invoice.bolt11,
                sql_amount(invoice.amount_msat)?,
                sql_amount(invoice.expires_at_ns)?,
                sql_amount(invoice.watch_until_ns)?,
                invoice.state.as_str(),
                invoice.comment,
                sql_amount(invoice.created_at_ns)?,
                invoice.closed_at_ns.map(sql_amount).transpose()?,
            ],
        )?;
        Ok(())
    }

    /// The node invoice with this payment hash, as of this point of the batch.
    pub fn lightning_invoice(
        &mut self,
        hash: &[u8; 32],
    ) -> Result<Option<LightningInvoice>, StoreError> {
        invoice_by_hash(self.db(), hash)
    }

    /// The node invoices made for a farthing invoice, oldest first.
    pub fn lightning_invoices_for(
        &mut self,
        invoice: InvoiceId,
    ) -> Result<Vec<LightningInvoice>, StoreError> {
        invoices_for(self.db(), invoice)
    }

    /// Closes the watch of a node invoice: `Settled` or `Unpaid`. Returns false when it was not
    /// open (already closed).
    pub fn close_lightning_invoice(
        &mut self,
        hash: &[u8; 32],
        state: WatchState,
        at_ns: u64,
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "UPDATE lightning_invoices SET state = ?2, closed_at_ns = ?3 \
                 WHERE payment_hash = ?1 AND state = 'open'",
            args![hash.as_slice(), state.as_str(), sql_amount(at_ns)?],
        )?;
        Ok(changed == 1)
    }

    /// Stores a new LNURL secret.
    pub fn insert_lnurl_secret(&mut self, secret: &LnurlSecret) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO lnurl_secrets ({SECRET_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            args![
                secret.k1.as_slice(),
                secret.kind,
                secret.merchant.to_be_bytes(),
                secret.customer.map(|id| id.to_be_bytes()),
                sql_amount(secret.min_msat)?,
                sql_amount(secret.max_msat)?,
                secret.description,
                sql_amount(secret.expires_at_ns)?,
                secret.used_at_ns.map(sql_amount).transpose()?,
                secret.result,
                sql_amount(secret.created_at_ns)?,
            ],
        )?;
        Ok(())
    }

    /// The LNURL secret `k1`, as of this point of the batch.
    pub fn lnurl_secret(&mut self, k1: &[u8; 32]) -> Result<Option<LnurlSecret>, StoreError> {
        secret_by_k1(self.db(), k1)
    }

    /// Marks `k1` used with its result. Returns false when it was already used (single use:
    /// the second caller loses).
    pub fn use_lnurl_secret(
        &mut self,
        k1: &[u8; 32],
        result: &str,
        at_ns: u64,
    ) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "UPDATE lnurl_secrets SET used_at_ns = ?2, result = ?3 \
                 WHERE k1 = ?1 AND used_at_ns IS NULL",
            args![k1.as_slice(), sql_amount(at_ns)?, result],
        )?;
        Ok(changed == 1)
    }

    /// Makes a used LNURL secret usable again (a withdraw whose payment failed for good).
    pub fn release_lnurl_secret(&mut self, k1: &[u8; 32]) -> Result<bool, StoreError> {
        let changed = self.db().execute(
            "UPDATE lnurl_secrets SET used_at_ns = NULL, result = NULL WHERE k1 = ?1",
            args![k1.as_slice()],
        )?;
        Ok(changed == 1)
    }

    /// The customer an LNURL-auth linking key identifies with `merchant`.
    pub fn lnurl_identity(
        &mut self,
        merchant: MerchantId,
        linking_key: &str,
    ) -> Result<Option<CustomerId>, StoreError> {
        let found: Option<Vec<u8>> = self.db().row(
            "SELECT customer_id FROM lnurl_identities WHERE merchant_id = ?1 AND linking_key = ?2",
            args![merchant.to_be_bytes(), linking_key],
            |row| row.get(0),
        )?;
        found
            .map(|b| id16(b, "lnurl_identities.customer_id").map(CustomerId))
            .transpose()
    }

    /// Links an LNURL-auth key to a customer.
    pub fn insert_lnurl_identity(
        &mut self,
        merchant: MerchantId,
        linking_key: &str,
        customer: CustomerId,
        at_ns: u64,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO lnurl_identities (merchant_id, linking_key, customer_id, created_at_ns) \
                 VALUES (?1, ?2, ?3, ?4)",
            args![
                merchant.to_be_bytes(),
                linking_key,
                customer.to_be_bytes(),
                sql_amount(at_ns)?
            ],
        )?;
        Ok(())
    }
}

impl Reader<'_> {
    /// The merchant's node.
    pub fn lightning_node(
        &self,
        merchant: MerchantId,
    ) -> Result<Option<LightningNode>, StoreError> {
        node_by_merchant(self.db(), merchant)
    }

    /// The node of the merchant whose Lightning Address is `name@…`.
    pub fn lightning_node_by_address(
        &self,
        name: &str,
    ) -> Result<Option<LightningNode>, StoreError> {
        node_by_address(self.db(), name)
    }

    /// Every merchant's node (for the watchers).
    pub fn lightning_nodes(&self) -> Result<Vec<LightningNode>, StoreError> {
        self.db().rows(
            &format!("SELECT {NODE_SELECT} FROM lightning_nodes"),
            args![],
            node_from_row,
        )
    }

    /// The node invoice with this payment hash.
    pub fn lightning_invoice(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<LightningInvoice>, StoreError> {
        invoice_by_hash(self.db(), hash)
    }

    /// The node invoices made for a farthing invoice, oldest first.
    pub fn lightning_invoices_for(
        &self,
        invoice: InvoiceId,
    ) -> Result<Vec<LightningInvoice>, StoreError> {
        invoices_for(self.db(), invoice)
    }

    /// The merchant's node invoices still watched, soonest `watch_until_ns` first.
    pub fn watched_lightning_invoices(
        &self,
        merchant: MerchantId,
    ) -> Result<Vec<LightningInvoice>, StoreError> {
        self.db().rows(
            &format!(
                "SELECT {INVOICE_COLUMNS} FROM lightning_invoices \
             WHERE state = 'open' AND merchant_id = ?1 ORDER BY watch_until_ns"
            ),
            args![merchant.to_be_bytes()],
            invoice_from_row,
        )
    }

    /// The customer an LNURL-auth linking key identifies with `merchant`.
    pub fn lnurl_identity(
        &self,
        merchant: MerchantId,
        linking_key: &str,
    ) -> Result<Option<CustomerId>, StoreError> {
        let found: Option<Vec<u8>> = self.db().row(
            "SELECT customer_id FROM lnurl_identities WHERE merchant_id = ?1 AND linking_key = ?2",
            args![merchant.to_be_bytes(), linking_key],
            |row| row.get(0),
        )?;
        found
            .map(|b| id16(b, "lnurl_identities.customer_id").map(CustomerId))
            .transpose()
    }

    /// The LNURL secret `k1`.
    pub fn lnurl_secret(&self, k1: &[u8; 32]) -> Result<Option<LnurlSecret>, StoreError> {
        secret_by_k1(self.db(), k1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    fn node(merchant: u128, address: Option<&str>) -> LightningNode {
        LightningNode {
            merchant: MerchantId(merchant),
            config: r#"{"backend":"lnbits","url":"http://x","invoice_key":"secret"}"#.to_owned(),
            network: "bitcoin".to_owned(),
            address_name: address.map(str::to_owned),
            created_at_ns: 1,
            updated_at_ns: 1,
        }
    }

    fn secret(k1: u8) -> LnurlSecret {
        LnurlSecret {
            k1: [k1; 32],
            kind: "withdraw".to_owned(),
            merchant: MerchantId(7),
            customer: Some(CustomerId(9)),
            min_msat: 1_000,
            max_msat: 5_000,
            description: "Refund".to_owned(),
            expires_at_ns: 100,
            used_at_ns: None,
            result: None,
            created_at_ns: 1,
        }
    }

    #[test]
    fn nodes_invoices_and_single_use_secrets_round_trip() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path().join("t.db"), StoreOptions::default()).expect("open");
        let watched = LightningInvoice {
            payment_hash: [3; 32],
            merchant: MerchantId(7),
            invoice: Some(InvoiceId(11)),
            customer: None,
            top_up: false,
            bolt11: "lnbc1...".to_owned(),
            amount_msat: 5_000,
            expires_at_ns: 50,
            watch_until_ns: 90,
            state: WatchState::Open,
            comment: Some("hi".to_owned()),
            created_at_ns: 2,
            closed_at_ns: None,
        };
        let row = watched.clone();
        let (first_use, second_use, closed, closed_again, taken) = store
            .execute(move |tx| -> Result<_, StoreError> {
                tx.upsert_lightning_node(&node(7, Some("tips")))?;
                // A second merchant cannot take the same address (UNIQUE).
                let taken = tx.upsert_lightning_node(&node(8, Some("tips"))).is_err();
                tx.insert_lightning_invoice(&row)?;
                tx.insert_lnurl_secret(&secret(1))?;
                let first = tx.use_lnurl_secret(&[1; 32], "hash", 10)?;
                let second = tx.use_lnurl_secret(&[1; 32], "other", 11)?;
                let closed = tx.close_lightning_invoice(&[3; 32], WatchState::Settled, 12)?;
                let again = tx.close_lightning_invoice(&[3; 32], WatchState::Unpaid, 13)?;
                Ok((first, second, closed, again, taken))
            })
            .expect("queued")
            .wait()
            .expect("committed")
            .expect("job");
        assert!(taken, "an address belongs to one merchant");
        assert!(first_use && !second_use, "a secret is used once");
        assert!(closed && !closed_again, "a watch closes once");
        let (found, by_address, open, used) = store
            .read(|reader| {
                Ok((
                    reader.lightning_invoice(&[3; 32])?,
                    reader.lightning_node_by_address("tips")?,
                    reader.watched_lightning_invoices(MerchantId(7))?,
                    reader.lnurl_secret(&[1; 32])?,
                ))
            })
            .expect("read");
        let found = found.expect("stored");
        assert_eq!(found.state, WatchState::Settled);
        assert_eq!(found.closed_at_ns, Some(12));
        assert_eq!(
            LightningInvoice {
                state: WatchState::Open,
                closed_at_ns: None,
                ..found
            },
            watched
        );
        assert_eq!(by_address.map(|n| n.merchant), Some(MerchantId(7)));
        assert!(open.is_empty(), "a settled invoice is no longer watched");
        let used = used.expect("stored");
        assert_eq!(
            (used.used_at_ns, used.result.as_deref()),
            (Some(10), Some("hash"))
        );
        // The node's Debug leaves its secrets out.
        assert!(!format!("{:?}", node(7, None)).contains("secret"));
    }
}
