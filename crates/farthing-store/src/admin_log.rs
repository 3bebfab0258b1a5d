//! The audit log of administrative actions (SPEC S5): who changed keys, rails, webhooks,
//! settings, owners, or moved money out (refunds, payouts), from where, and how it ended.
//! Append-only: rows are inserted and never updated or deleted.

use farthing_core::{AuditEntryId, MerchantId, PublicId};

use crate::business::{page, Page, PageRequest};
use crate::codec::sql_amount;
use crate::sql::{args, Row};
use crate::{Reader, StoreError, Tx};

pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE audit_log (
        id            BLOB PRIMARY KEY,
        merchant_id   BLOB NOT NULL,
        action        TEXT NOT NULL,
        target        TEXT NOT NULL,
        actor         TEXT NOT NULL,
        origin        TEXT,
        status        INTEGER NOT NULL,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX audit_log_by_merchant ON audit_log (merchant_id, id);
"#;

const COLUMNS: &str = "id, merchant_id, action, target, actor, origin, status, created_at_ns";

/// One administrative action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// `aud_…`, time-ordered.
    pub id: AuditEntryId,
    /// Whose.
    pub merchant: MerchantId,
    /// The operation, as its method and route: `POST /v1/api_keys/{id}/revoke`.
    pub action: String,
    /// The path it was applied to (object ids, never secrets).
    pub target: String,
    /// Who: the API key (`key_…`) or the dashboard owner that acted.
    pub actor: String,
    /// From where: the client's address, when known.
    pub origin: Option<String>,
    /// How it ended: the HTTP status answered.
    pub status: u16,
    /// When.
    pub created_at_ns: u64,
}

fn from_row(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let id: Vec<u8> = row.get(0)?;
    let merchant: Vec<u8> = row.get(1)?;
    let raw = |bytes: Vec<u8>| -> Result<u128, StoreError> {
        let array: [u8; 16] = bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("audit_log: an id is not 16 bytes".into()))?;
        Ok(u128::from_be_bytes(array))
    };
    let status: i64 = row.get(6)?;
    let created: i64 = row.get(7)?;
    Ok(AuditEntry {
        id: AuditEntryId::from_raw(raw(id)?),
        merchant: MerchantId(raw(merchant)?),
        action: row.get(2)?,
        target: row.get(3)?,
        actor: row.get(4)?,
        origin: row.get(5)?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt("audit_log.status".into()))?,
        created_at_ns: u64::try_from(created)
            .map_err(|_| StoreError::Corrupt("audit_log.created_at_ns".into()))?,
    })
}

impl Tx<'_, '_> {
    /// Appends an entry.
    pub fn append_audit_entry(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.db().execute(
            &format!("INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            args![
                entry.id.raw().to_be_bytes(),
                entry.merchant.to_be_bytes(),
                entry.action,
                entry.target,
                entry.actor,
                entry.origin,
                i64::from(entry.status),
                sql_amount(entry.created_at_ns)?,
            ],
        )?;
        Ok(())
    }
}

impl Reader<'_> {
    /// A page of the merchant's audit log, newest first.
    pub fn audit_log(
        &self,
        merchant: MerchantId,
        request: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        page(self.db(), "audit_log", COLUMNS, merchant, request, from_row)
    }
}
