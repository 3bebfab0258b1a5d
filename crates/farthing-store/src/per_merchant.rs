//! Migration 15: every account belongs to one merchant, and running totals are 128-bit.
//!
//! Before it, the rails' `external` accounts (and the unused `rail_clearing` and
//! `platform_fees`) were shared by every merchant of a database, and each of their four totals
//! was capped at `i64::MAX` and never went down. One merchant could push a shared total to
//! that cap (a huge sandbox top-up, a forged `successful_payment` on its own bot) and make every
//! later booking on that rail fail for every merchant — live payments included. This
//! migration:
//!
//! 1. rewrites `accounts` with the four totals as 16-byte big-endian blobs (`u128`);
//! 2. keys `rail_payments` by `(merchant_id, rail, external_id)`: a rail payment id names a
//!    payment of one merchant, so no merchant can claim (and block) another's payment id; and
//!    adds the part of a payment held in suspense (`suspended_minor`, `suspense_reason`);
//! 3. moves each merchant's share of every shared account to that merchant's own account, by
//!    correction transfers (SPEC L6: history is never edited): for a shared account and a
//!    merchant, the net of the posted transfers between the two is booked between the shared
//!    account and the merchant's own account of the same kind, rail and currency, so afterwards
//!    the shared account nets to zero for everyone but holds still open on it (a Lightning
//!    withdrawal in flight resolves against the account it was placed on).

use std::collections::{BTreeMap, HashMap};

use farthing_core::ledger::{
    apply_group, code, Account, AccountKind, AccountState, Group, LedgerState, PendingState,
    StoredTransfer, Transfer, TransferAction, TransferKind, TransferRecord, LEGACY_SHARED_MERCHANT,
};
use farthing_core::money::MAX_AMOUNT_MINOR;
use farthing_core::{AccountId, MerchantId, TransferId};
use rusqlite::{params, Transaction};

use crate::{codec, StoreError};

/// Step 2 in SQL: rebuilds `rail_payments` keyed by merchant first, with the suspense columns.
macro_rules! rail_payments_v15 {
    () => {
        r#"
    CREATE TABLE rail_payments_v15 (
        merchant_id    BLOB NOT NULL,
        rail           TEXT NOT NULL,
        external_id    TEXT NOT NULL,
        invoice_id     BLOB,
        customer_id    BLOB,
        currency       TEXT NOT NULL,
        amount_minor   INTEGER NOT NULL,
        paid_minor     INTEGER NOT NULL,
        credited_minor INTEGER NOT NULL,
        credit_reason  TEXT,
        payload        TEXT,
        created_at_ns  INTEGER NOT NULL,
        -- Money that could not be booked where it belongs and is held in the merchant's
        -- suspense account for the rail, and why.
        suspended_minor INTEGER NOT NULL DEFAULT 0,
        suspense_reason TEXT,
        PRIMARY KEY (merchant_id, rail, external_id)
    ) WITHOUT ROWID;
    INSERT INTO rail_payments_v15 (merchant_id, rail, external_id, invoice_id, customer_id,
            currency, amount_minor, paid_minor, credited_minor, credit_reason, payload,
            created_at_ns)
        SELECT merchant_id, rail, external_id, invoice_id, customer_id, currency, amount_minor,
               paid_minor, credited_minor, credit_reason, payload, created_at_ns
        FROM rail_payments;
    DROP TABLE rail_payments;
    ALTER TABLE rail_payments_v15 RENAME TO rail_payments;
    CREATE INDEX rail_payments_by_invoice ON rail_payments (invoice_id);
"#
    };
}

/// Steps 1 and 2, in SQL. `unhex(printf('%032x', n))` is the 16-byte big-endian form of a
/// non-negative 64-bit integer.
pub(crate) const SCHEMA: &str = concat!(
    r#"
    CREATE TABLE accounts_v15 (
        id              BLOB PRIMARY KEY,
        currency        TEXT NOT NULL,
        kind            TEXT NOT NULL,
        merchant_id     BLOB,
        customer_id     BLOB,
        rail            TEXT,
        flags           INTEGER NOT NULL,
        -- Running totals: 16-byte big-endian u128 (lifetime sums that only grow).
        debits_pending  BLOB NOT NULL,
        debits_posted   BLOB NOT NULL,
        credits_pending BLOB NOT NULL,
        credits_posted  BLOB NOT NULL,
        created_at_ns   INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO accounts_v15
        SELECT id, currency, kind, merchant_id, customer_id, rail, flags,
               unhex(printf('%032x', debits_pending)), unhex(printf('%032x', debits_posted)),
               unhex(printf('%032x', credits_pending)), unhex(printf('%032x', credits_posted)),
               created_at_ns
        FROM accounts;
    DROP TABLE accounts;
    ALTER TABLE accounts_v15 RENAME TO accounts;
    CREATE INDEX accounts_by_owner ON accounts (merchant_id, customer_id);

"#,
    rail_payments_v15!()
);

/// Step 2 alone (PostgreSQL runs it too: `pg_schema.rs`).
pub(crate) const RAIL_PAYMENTS_SCHEMA: &str = rail_payments_v15!();

/// The ledger as this migration sees it: the accounts it loaded, and what it changes.
#[derive(Default)]
struct MigrationLedger {
    accounts: HashMap<AccountId, AccountState>,
    new_accounts: Vec<AccountId>,
    changed_accounts: Vec<AccountId>,
    transfers: Vec<TransferRecord>,
    last_timestamp_ns: u64,
}

impl LedgerState for MigrationLedger {
    fn account(&self, id: AccountId) -> Option<&AccountState> {
        self.accounts.get(&id)
    }

    fn transfer(&self, _id: TransferId) -> Option<&StoredTransfer> {
        // The correction ids are new (derived from this migration's tag); nothing else is read.
        None
    }

    fn last_timestamp_ns(&self) -> u64 {
        self.last_timestamp_ns
    }

    fn insert_account(&mut self, state: AccountState) {
        self.new_accounts.push(state.account.id);
        self.accounts.insert(state.account.id, state);
    }

    fn update_balances(&mut self, id: AccountId, balances: farthing_core::ledger::Balances) {
        if let Some(state) = self.accounts.get_mut(&id) {
            state.balances = balances;
            self.changed_accounts.push(id);
        }
    }

    fn insert_transfer(&mut self, record: TransferRecord) {
        self.transfers.push(record);
    }

    fn resolve_pending(&mut self, _id: TransferId, _state: PendingState, _at_ns: u64) {}

    fn set_last_timestamp_ns(&mut self, timestamp_ns: u64) {
        self.last_timestamp_ns = timestamp_ns;
    }
}

fn correction_id(shared: AccountId, merchant: MerchantId, chunk: u64) -> TransferId {
    TransferId::derived(
        "farthing/migration-15/per-merchant-accounts/v1",
        &[
            &shared.to_be_bytes(),
            &merchant.to_be_bytes(),
            &chunk.to_be_bytes(),
        ],
    )
}

/// The merchant's own account of the shared account's kind.
fn own_account(shared: &Account, merchant: MerchantId) -> Option<Account> {
    let kind = match shared.kind {
        AccountKind::External { rail, .. } => AccountKind::External { merchant, rail },
        AccountKind::RailClearing { rail, .. } => AccountKind::RailClearing { merchant, rail },
        AccountKind::PlatformFees { .. } => AccountKind::PlatformFees { merchant },
        _ => return None,
    };
    Some(Account::new(kind, shared.currency))
}

/// Step 3: moves every merchant's share of the shared accounts to its own accounts.
pub(crate) fn move_shared_balances(tx: &Transaction<'_>, now_ns: u64) -> Result<(), StoreError> {
    let mut ledger = MigrationLedger {
        last_timestamp_ns: codec::load_last_timestamp(tx)?,
        ..MigrationLedger::default()
    };
    let mut shared = Vec::new();
    {
        let mut statement = tx.prepare(&format!(
            "SELECT {} FROM accounts WHERE kind IN ('external', 'rail_clearing', 'platform_fees') \
             AND merchant_id IS NULL",
            codec::ACCOUNT_COLUMNS
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let state = codec::account_from_row(row)?;
            shared.push(state.account.id);
            ledger.accounts.insert(state.account.id, state);
        }
    }
    if shared.is_empty() {
        return Ok(());
    }
    // Every posted transfer between a shared account and a merchant's account: the net per
    // (shared account, merchant), credit-positive from the shared account's side.
    let mut owners: HashMap<AccountId, Option<MerchantId>> = HashMap::new();
    let mut nets: BTreeMap<(AccountId, MerchantId), i128> = BTreeMap::new();
    {
        let mut statement = tx.prepare(&format!(
            "SELECT {} FROM transfers t",
            codec::TRANSFER_COLUMNS
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let stored = codec::transfer_from_row(row)?;
            let record = stored.record;
            if !matches!(
                record.kind,
                TransferKind::Single | TransferKind::PostPending
            ) {
                continue;
            }
            let debit_shared = ledger.accounts.contains_key(&record.debit_account_id);
            let credit_shared = ledger.accounts.contains_key(&record.credit_account_id);
            let (shared_id, other, sign) = match (debit_shared, credit_shared) {
                (true, false) => (record.debit_account_id, record.credit_account_id, -1),
                (false, true) => (record.credit_account_id, record.debit_account_id, 1),
                _ => continue,
            };
            let owner = match owners.get(&other) {
                Some(owner) => *owner,
                None => {
                    let owner = codec::load_account(crate::sql::Db::Sqlite(tx), other)?
                        .and_then(|state| state.account.kind.merchant())
                        .filter(|merchant| *merchant != LEGACY_SHARED_MERCHANT);
                    owners.insert(other, owner);
                    owner
                }
            };
            let Some(merchant) = owner else { continue };
            *nets.entry((shared_id, merchant)).or_default() +=
                sign * i128::from(record.amount_minor);
        }
    }
    let mut group = Group::default();
    let mut moved = 0usize;
    for ((shared_id, merchant), net) in nets {
        let Some(shared_account) = ledger.accounts.get(&shared_id).map(|s| s.account) else {
            continue;
        };
        let Some(own) = own_account(&shared_account, merchant) else {
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = ledger.accounts.entry(own.id) {
            if let Some(existing) = codec::load_account(crate::sql::Db::Sqlite(tx), own.id)? {
                slot.insert(existing);
            }
        }
        if !group.accounts.contains(&own) {
            group.accounts.push(own);
        }
        // net > 0: the shared account holds money of this merchant's (credited more than
        // debited) — move it out; net < 0: the merchant's money came in through it — the
        // merchant's own account takes over that debit.
        let (debit, credit) = if net > 0 {
            (shared_id, own.id)
        } else {
            (own.id, shared_id)
        };
        let mut left = net.unsigned_abs();
        let mut chunk = 0u64;
        while left > 0 {
            let amount_minor =
                u64::try_from(left.min(u128::from(MAX_AMOUNT_MINOR))).unwrap_or(MAX_AMOUNT_MINOR);
            group.transfers.push(Transfer {
                id: correction_id(shared_id, merchant, chunk),
                action: TransferAction::Single {
                    debit,
                    credit,
                    currency: shared_account.currency,
                    amount_minor,
                },
                code: code::CORRECTION,
                reference: 0,
            });
            left -= u128::from(amount_minor);
            chunk += 1;
        }
        moved += 1;
        // Apply in bounded groups (the ledger bounds a group's size).
        if group.transfers.len() >= farthing_core::ledger::MAX_GROUP_TRANSFERS - 8
            || group.accounts.len() >= farthing_core::ledger::MAX_GROUP_ACCOUNTS - 1
        {
            apply(&mut ledger, &mut group, now_ns)?;
        }
    }
    if !group.transfers.is_empty() || !group.accounts.is_empty() {
        apply(&mut ledger, &mut group, now_ns)?;
    }
    persist(tx, &ledger)?;
    tracing::info!(
        shared_accounts = shared.len(),
        moved,
        transfers = ledger.transfers.len(),
        "moved the shared rail accounts' balances to per-merchant accounts"
    );
    Ok(())
}

fn apply(ledger: &mut MigrationLedger, group: &mut Group, now_ns: u64) -> Result<(), StoreError> {
    apply_group(ledger, group, now_ns).map_err(|error| {
        StoreError::Corrupt(format!(
            "migration 15 could not move a shared account's balance: {error}"
        ))
    })?;
    *group = Group::default();
    Ok(())
}

fn persist(tx: &Transaction<'_>, ledger: &MigrationLedger) -> Result<(), StoreError> {
    // New accounts go in with their final totals.
    for id in &ledger.new_accounts {
        if let Some(state) = ledger.accounts.get(id) {
            codec::insert_account(tx, state)?;
        }
    }
    let mut updated: Vec<&AccountId> = ledger
        .changed_accounts
        .iter()
        .filter(|id| !ledger.new_accounts.contains(id))
        .collect();
    updated.sort();
    updated.dedup();
    for id in updated {
        if let Some(state) = ledger.accounts.get(id) {
            codec::update_balances(tx, *id, &state.balances)?;
        }
    }
    for record in &ledger.transfers {
        codec::insert_transfer(tx, record)?;
    }
    tx.execute(
        "UPDATE ledger_meta SET last_timestamp_ns = ?1 WHERE singleton = 1",
        params![codec::sql_amount(ledger.last_timestamp_ns)?],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use farthing_core::ledger::{Account, AccountKind, LEGACY_SHARED_MERCHANT};
    use farthing_core::{Currency, CustomerId, MerchantId, Rail};
    use rusqlite::{params, Connection};

    use crate::{codec, schema};

    const A: MerchantId = MerchantId(0xa);
    const B: MerchantId = MerchantId(0xb);

    /// A database of schema 14 where merchants A and B booked through one shared
    /// `external/stars` account, as farthing did before migration 15.
    fn legacy_database(path: &std::path::Path) -> (Account, Account, Account) {
        let mut connection = schema::open_writer(path).expect("open");
        schema::migrate_to(&mut connection, 14, 1).expect("schema 14");
        let shared = Account::new(
            AccountKind::External {
                merchant: LEGACY_SHARED_MERCHANT,
                rail: Rail::Stars,
            },
            Currency::XTR,
        );
        let customer_a = Account::new(
            AccountKind::CustomerBalance {
                merchant: A,
                customer: CustomerId(1),
            },
            Currency::XTR,
        );
        let merchant_b = Account::new(AccountKind::MerchantBalance { merchant: B }, Currency::XTR);
        let insert = |account: &Account, merchant: Option<MerchantId>, totals: [i64; 4]| {
            connection
                .execute(
                    "INSERT INTO accounts VALUES (?1, 'XTR', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1)",
                    params![
                        account.id.to_be_bytes(),
                        account.kind.code(),
                        merchant.map(MerchantId::to_be_bytes),
                        account.kind.customer().map(CustomerId::to_be_bytes),
                        account.kind.rail().map(Rail::as_str),
                        account.flags.bits(),
                        totals[0],
                        totals[1],
                        totals[2],
                        totals[3],
                    ],
                )
                .expect("account");
        };
        // Shared: sent 100 to A's customer and 50 to B, got 10 back from B (a rail refund).
        insert(&shared, None, [0, 150, 0, 10]);
        insert(&customer_a, Some(A), [0, 0, 0, 100]);
        insert(&merchant_b, Some(B), [0, 10, 0, 50]);
        for (id, debit, credit, amount) in [
            (1u128, &shared, &customer_a, 100i64),
            (2, &shared, &merchant_b, 50),
            (3, &merchant_b, &shared, 10),
        ] {
            connection
                .execute(
                    "INSERT INTO transfers VALUES (?1, 0, ?2, ?3, 'XTR', ?4, NULL, 0, 2, NULL, ?5)",
                    params![
                        id.to_be_bytes(),
                        debit.id.to_be_bytes(),
                        credit.id.to_be_bytes(),
                        amount,
                        i64::try_from(id).expect("small") + 10,
                    ],
                )
                .expect("transfer");
        }
        connection
            .execute("UPDATE ledger_meta SET last_timestamp_ns = 13", [])
            .expect("clock");
        connection
            .execute(
                "INSERT INTO rail_payments VALUES ('stars', 'charge-1', ?1, NULL, NULL, 'XTR', \
                 50, 50, 0, NULL, NULL, 12)",
                [B.to_be_bytes()],
            )
            .expect("rail payment");
        (shared, customer_a, merchant_b)
    }

    #[test]
    fn shared_balances_move_to_per_merchant_accounts_by_corrections() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("legacy.db");
        let (shared, _, _) = legacy_database(&path);
        let mut connection = schema::open_writer(&path).expect("open");
        schema::migrate(&mut connection, 1_000).expect("migration 15");
        let balance = |account: &Account| {
            codec::load_account(crate::sql::Db::Sqlite(&connection), account.id)
                .expect("read")
                .expect("exists")
                .balances
        };
        let own = |merchant| {
            Account::new(
                AccountKind::External {
                    merchant,
                    rail: Rail::Stars,
                },
                Currency::XTR,
            )
        };
        // The shared account keeps its history but nets to zero; each merchant's own account
        // carries exactly what came in through the rail for it.
        assert_eq!(balance(&shared).posted(), 0);
        assert_eq!(balance(&own(A)).posted(), -100);
        assert_eq!(balance(&own(B)).posted(), -40);
        // Running totals are 128-bit now and went on growing.
        assert_eq!(balance(&shared).credits_posted, 150);
        let report = crate::audit::audit_connection(&connection).expect("audit");
        assert!(report.is_ok(), "{report}");
        // The rail payment survived the re-keying, now per merchant.
        let kept: i64 = connection
            .query_row(
                "SELECT COUNT(*) FROM rail_payments WHERE merchant_id = ?1 AND rail = 'stars' \
                 AND external_id = 'charge-1'",
                [B.to_be_bytes()],
                |row| row.get(0),
            )
            .expect("count");
        assert_eq!(kept, 1);
        // Opening it again changes nothing (the migration is recorded).
        let transfers = |connection: &Connection| -> i64 {
            connection
                .query_row("SELECT COUNT(*) FROM transfers", [], |row| row.get(0))
                .expect("count")
        };
        let before = transfers(&connection);
        schema::migrate(&mut connection, 2_000).expect("again");
        assert_eq!(transfers(&connection), before);
        assert_eq!(before, 5, "three originals and two corrections");
    }
}

#[cfg(test)]
mod instructions_migration {
    use farthing_core::{InvoiceId, Rail};
    use rusqlite::params;

    use crate::schema;

    /// Migration 16 moves the per-rail invoice columns into the instructions map, in the shape
    /// the API has always shown.
    #[test]
    fn per_rail_columns_become_the_instructions_map() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("old.db");
        let mut connection = schema::open_writer(&path).expect("open");
        schema::migrate_to(&mut connection, 15, 1).expect("schema 15");
        for (id, stars, card, bolt11) in [
            (1u128, Some("https://t.me/$s"), None, None),
            (2, None, Some("https://t.me/$c"), None),
            (3, None, None, Some("lnbc1x")),
            (4, None, None, None),
        ] {
            connection
                .execute(
                    "INSERT INTO invoices (id, merchant_id, status, currency, amount_minor, \
                     description, rails, metadata, refunded_minor, created_at_ns, expires_at_ns, \
                     stars_invoice_link, card_invoice_link, lightning_bolt11) \
                     VALUES (?1, ?2, 'open', 'XTR', 5, '', '[\"stars\"]', '[]', 0, 1, 2, ?3, ?4, ?5)",
                    params![
                        InvoiceId(id).to_be_bytes(),
                        [7u8; 16],
                        stars,
                        card,
                        bolt11
                    ],
                )
                .expect("an invoice of schema 15");
        }
        schema::migrate(&mut connection, 10).expect("migration 16");
        let read = |id: u128| {
            crate::business::load_invoice_for_tests(
                crate::sql::Db::Sqlite(&connection),
                InvoiceId(id),
            )
            .expect("read")
            .expect("exists")
            .instructions
        };
        assert_eq!(
            read(1).get(&Rail::Stars).map(String::as_str),
            Some(r#"{"invoice_link":"https://t.me/$s"}"#)
        );
        assert_eq!(
            read(2).get(&Rail::Card).map(String::as_str),
            Some(r#"{"invoice_link":"https://t.me/$c"}"#)
        );
        let lightning: serde_json::Value =
            serde_json::from_str(read(3).get(&Rail::Lightning).expect("lightning")).expect("json");
        assert_eq!(
            lightning,
            serde_json::json!({"bolt11": "lnbc1x", "uri": "lightning:lnbc1x"})
        );
        assert!(read(4).is_empty());
    }
}
