//! Step-up authentication (SPEC S3): each merchant's TOTP authenticator, per store (so per
//! mode) — its secret, whether it is confirmed, the last time step a code was accepted for
//! (a code works once), the hashes of its recovery codes, and recent failed attempts.

use farthing_core::MerchantId;

use crate::codec::sql_amount;
use crate::sql::{args, Db};
use crate::{Reader, StoreError, Tx};

/// Migration 20.
pub(crate) const SCHEMA: &str = r#"
    CREATE TABLE step_up_totp (
        merchant_id       BLOB PRIMARY KEY,
        secret            BLOB NOT NULL,
        active            INTEGER NOT NULL,
        last_step         INTEGER,
        recovery          TEXT NOT NULL,
        failures          INTEGER NOT NULL,
        failures_since_ns INTEGER NOT NULL,
        created_at_ns     INTEGER NOT NULL
    ) WITHOUT ROWID;
"#;

/// A merchant's authenticator.
#[derive(Clone, PartialEq, Eq)]
pub struct Authenticator {
    /// The shared secret (20 random bytes).
    pub secret: Vec<u8>,
    /// Confirmed with a first code: step-up is then required.
    pub active: bool,
    /// The last time step (Unix seconds / 30) a code was accepted for.
    pub last_step: Option<u64>,
    /// SHA-256 (hex) of each recovery code not used yet.
    pub recovery: Vec<String>,
    /// Failed attempts since `failures_since_ns`.
    pub failures: u32,
    /// When the current count of failures began.
    pub failures_since_ns: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("active", &self.active)
            .field("last_step", &self.last_step)
            .field("recovery_codes", &self.recovery.len())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

fn load(db: Db<'_>, merchant: MerchantId) -> Result<Option<Authenticator>, StoreError> {
    let row = db.row(
        "SELECT unseal(secret), active, last_step, recovery, failures, failures_since_ns \
         FROM step_up_totp WHERE merchant_id = ?1",
        args![merchant.to_be_bytes()],
        |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<i64>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
            ))
        },
    )?;
    let Some((secret, active, last_step, recovery, failures, since)) = row else {
        return Ok(None);
    };
    Ok(Some(Authenticator {
        secret,
        active: active != 0,
        last_step: last_step.and_then(|s| u64::try_from(s).ok()),
        recovery: serde_json::from_str(&recovery)
            .map_err(|error| StoreError::Corrupt(format!("step-up recovery codes: {error}")))?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        failures_since_ns: u64::try_from(since).unwrap_or(0),
    }))
}

impl Tx<'_, '_> {
    /// The merchant's authenticator, as of this point of the batch.
    pub fn authenticator(
        &mut self,
        merchant: MerchantId,
    ) -> Result<Option<Authenticator>, StoreError> {
        load(self.db(), merchant)
    }

    /// Stores (or replaces) the merchant's authenticator.
    pub fn put_authenticator(
        &mut self,
        merchant: MerchantId,
        authenticator: &Authenticator,
    ) -> Result<(), StoreError> {
        let now = sql_amount(self.now_ns())?;
        let recovery = serde_json::to_string(&authenticator.recovery)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        self.db().execute("INSERT INTO step_up_totp (merchant_id, secret, active, last_step, recovery, \
                 failures, failures_since_ns, created_at_ns) \
                 VALUES (?1, seal(?2), ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (merchant_id) DO UPDATE SET secret = excluded.secret, active = ?3, last_step = ?4, \
                 recovery = ?5, failures = ?6, failures_since_ns = ?7", args![
                merchant.to_be_bytes(),
                authenticator.secret,
                i64::from(authenticator.active),
                authenticator
                    .last_step
                    .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
                recovery,
                i64::from(authenticator.failures),
                sql_amount(authenticator.failures_since_ns)?,
                now,
            ])?;
        Ok(())
    }

    /// Removes the merchant's authenticator (step-up is then off).
    pub fn delete_authenticator(&mut self, merchant: MerchantId) -> Result<(), StoreError> {
        self.db().execute(
            "DELETE FROM step_up_totp WHERE merchant_id = ?1",
            args![merchant.to_be_bytes()],
        )?;
        Ok(())
    }
}

impl Reader<'_> {
    /// The merchant's authenticator.
    pub fn authenticator(&self, merchant: MerchantId) -> Result<Option<Authenticator>, StoreError> {
        load(self.db(), merchant)
    }
}
