//! Who may sign in to a merchant's dashboard (SPEC T5): the Telegram users the merchant named
//! with `PUT /v1/dashboard/owners`, one row per user, per store (so per mode).
//!
//! Only user ids are kept (SPEC P6); names come from the Login Widget at each login.

use farthing_core::MerchantId;

use crate::codec::sql_amount;
use crate::sql::{args, Db};
use crate::{Reader, StoreError, Tx};

/// The dashboard owners table (migration 12).
pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE dashboard_owners (
        merchant_id      BLOB NOT NULL,
        telegram_user_id INTEGER NOT NULL,
        created_at_ns    INTEGER NOT NULL,
        PRIMARY KEY (merchant_id, telegram_user_id)
    ) WITHOUT ROWID;
"#;

/// Migration 14: owners who sign in with their Lightning wallet (LNURL-auth, LUD-04), by the
/// linking key their wallet derives for this server.
pub(crate) const LNURL_SCHEMA: &str = r#"
    CREATE TABLE dashboard_lnurl_owners (
        merchant_id   BLOB NOT NULL,
        linking_key   TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL,
        PRIMARY KEY (merchant_id, linking_key)
    ) WITHOUT ROWID;
    CREATE INDEX dashboard_lnurl_owners_by_key ON dashboard_lnurl_owners (linking_key);
"#;

impl Tx<'_, '_> {
    /// Makes `keys` (compressed public keys, lowercase hex) the merchant's LNURL-auth dashboard
    /// owners, replacing the previous list.
    pub fn set_dashboard_lnurl_owners(
        &mut self,
        merchant: MerchantId,
        keys: &[String],
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let db = self.db();
        db.execute(
            "DELETE FROM dashboard_lnurl_owners WHERE merchant_id = ?1",
            args![merchant.to_be_bytes()],
        )?;
        for key in keys {
            db.execute(
                "INSERT INTO dashboard_lnurl_owners (merchant_id, linking_key, created_at_ns) \
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                args![merchant.to_be_bytes(), key, sql_amount(now_ns)?],
            )?;
        }
        Ok(())
    }

    /// Whether another merchant than `merchant` lists `key` as a dashboard owner.
    pub fn dashboard_lnurl_key_taken(
        &mut self,
        merchant: MerchantId,
        key: &str,
    ) -> Result<bool, StoreError> {
        self.db().exists(
            "SELECT 1 FROM dashboard_lnurl_owners WHERE linking_key = ?1 AND merchant_id != ?2 \
                 LIMIT 1",
            args![key, merchant.to_be_bytes()],
        )
    }

    /// The merchant's LNURL-auth dashboard owners, as of this point of the batch.
    pub fn dashboard_lnurl_owners_in_job(
        &mut self,
        merchant: MerchantId,
    ) -> Result<Vec<String>, StoreError> {
        lnurl_owners(self.db(), merchant)
    }

    /// Makes `users` the merchant's dashboard owners, replacing the previous list (an owner
    /// kept in the list keeps its `created_at_ns`).
    pub fn set_dashboard_owners(
        &mut self,
        merchant: MerchantId,
        users: &[u64],
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let users = users
            .iter()
            .map(|user| sql_amount(*user))
            .collect::<Result<Vec<_>, _>>()?;
        let db = self.db();
        let kept: Vec<i64> = db.rows(
            "SELECT telegram_user_id FROM dashboard_owners WHERE merchant_id = ?1",
            args![merchant.to_be_bytes()],
            |row| row.get(0),
        )?;
        for old in kept.iter().filter(|old| !users.contains(old)) {
            db.execute(
                "DELETE FROM dashboard_owners WHERE merchant_id = ?1 AND telegram_user_id = ?2",
                args![merchant.to_be_bytes(), old],
            )?;
        }
        for user in &users {
            db.execute(
                "INSERT INTO dashboard_owners (merchant_id, telegram_user_id, created_at_ns) \
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                args![merchant.to_be_bytes(), user, sql_amount(now_ns)?],
            )?;
        }
        Ok(())
    }
}

fn lnurl_owners(db: Db<'_>, merchant: MerchantId) -> Result<Vec<String>, StoreError> {
    db.rows(
        "SELECT linking_key FROM dashboard_lnurl_owners WHERE merchant_id = ?1 \
         ORDER BY linking_key",
        args![merchant.to_be_bytes()],
        |row| row.get(0),
    )
}

impl Reader<'_> {
    /// The merchant's dashboard owners (Telegram user ids), ascending.
    pub fn dashboard_owners(&self, merchant: MerchantId) -> Result<Vec<u64>, StoreError> {
        self.db().rows(
            "SELECT telegram_user_id FROM dashboard_owners WHERE merchant_id = ?1 \
             ORDER BY telegram_user_id",
            args![merchant.to_be_bytes()],
            |row| {
                let user: i64 = row.get(0)?;
                u64::try_from(user).map_err(|_| {
                    StoreError::Corrupt("a negative user id in dashboard_owners".into())
                })
            },
        )
    }

    /// The merchant's LNURL-auth dashboard owners (linking keys), ascending.
    pub fn dashboard_lnurl_owners(&self, merchant: MerchantId) -> Result<Vec<String>, StoreError> {
        lnurl_owners(self.db(), merchant)
    }

    /// The merchants whose dashboard the LNURL-auth linking key `key` may sign in to.
    pub fn dashboard_merchants_of_key(&self, key: &str) -> Result<Vec<MerchantId>, StoreError> {
        self.db().rows(
            "SELECT merchant_id FROM dashboard_lnurl_owners WHERE linking_key = ?1 \
             ORDER BY created_at_ns",
            args![key],
            |row| {
                let bytes: Vec<u8> = row.get(0)?;
                let array: [u8; 16] = bytes.try_into().map_err(|_| {
                    StoreError::Corrupt("dashboard_lnurl_owners.merchant_id is not 16 bytes".into())
                })?;
                Ok(MerchantId(u128::from_be_bytes(array)))
            },
        )
    }

    /// Whether the LNURL-auth linking key `key` may sign in to the merchant's dashboard.
    pub fn is_dashboard_lnurl_owner(
        &self,
        merchant: MerchantId,
        key: &str,
    ) -> Result<bool, StoreError> {
        self.db().exists(
            "SELECT 1 FROM dashboard_lnurl_owners WHERE merchant_id = ?1 AND linking_key = ?2",
            args![merchant.to_be_bytes(), key],
        )
    }

    /// Whether the Telegram user `user` may sign in to the merchant's dashboard.
    pub fn is_dashboard_owner(&self, merchant: MerchantId, user: u64) -> Result<bool, StoreError> {
        let Ok(user) = i64::try_from(user) else {
            return Ok(false);
        };
        self.db().exists(
            "SELECT 1 FROM dashboard_owners WHERE merchant_id = ?1 AND telegram_user_id = ?2",
            args![merchant.to_be_bytes(), user],
        )
    }
}
