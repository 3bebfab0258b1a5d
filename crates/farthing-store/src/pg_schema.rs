//! The PostgreSQL forms of the migrations: the same numbers and names as SQLite's
//! (`schema.rs`), and the same tables, columns and indexes once applied (a test compares the two
//! schemas column by column).
//!
//! Most migrations are plain DDL that both databases take once SQLite's type names are
//! PostgreSQL's ([`postgres_form`]: `BLOB` → `BYTEA`, `INTEGER` → `BIGINT`, no `WITHOUT
//! ROWID`): those are written once, in SQLite's text, and never drift apart. The few that move
//! data with SQLite's own functions have a PostgreSQL text of their own:
//!
//! - 1, the ledger: PostgreSQL's ledger started with the 128-bit totals SQLite got in 15.
//! - 15, per-merchant accounts: the totals were already 128-bit; the balances of accounts
//!   shared by all merchants were never held on PostgreSQL (a database that holds some is
//!   refused with a message instead of guessed at); `rail_payments` is rebuilt as on SQLite.
//! - 16, payment instructions: the same moves, with `jsonb` instead of `json_set`.
//! - 19, customers' statements: the same backfill, without SQLite's temporary table.

/// One part of a migration's text.
#[derive(Clone, Copy)]
pub(crate) enum Part {
    /// SQLite's own text, used through [`postgres_form`].
    Sqlite(&'static str),
    /// A PostgreSQL text.
    Postgres(&'static str),
}

use Part::{Postgres, Sqlite};

/// `(version, parts)`, in order; the names are SQLite's. Never edit a released entry.
pub(crate) const MIGRATIONS: &[(i64, &[Part])] = &[
    (1, &[Postgres(LEDGER)]),
    (2, &[Sqlite(crate::business::SCHEMA)]),
    (3, &[Sqlite(crate::rails::SCHEMA)]),
    (4, &[Sqlite(crate::telegram::SCHEMA)]),
    (5, &[Sqlite(crate::telegram::INVOICE_LINK_SCHEMA)]),
    (6, &[Sqlite(crate::lightning::SCHEMA)]),
    (7, &[Sqlite(crate::subscriptions::SCHEMA)]),
    (8, &[Sqlite(crate::telegram::POLL_OFFSET_SCHEMA)]),
    (9, &[Sqlite(crate::telegram::RECONCILE_SCHEMA)]),
    (10, &[Sqlite(crate::bot_messages::SCHEMA)]),
    (11, &[Sqlite(crate::bot::SCHEMA)]),
    (12, &[Sqlite(crate::dashboard::SCHEMA)]),
    (13, &[Sqlite(crate::cards::SCHEMA)]),
    (14, &[Sqlite(crate::dashboard::LNURL_SCHEMA)]),
    (
        15,
        &[
            Postgres(NO_SHARED_ACCOUNTS),
            Sqlite(crate::per_merchant::RAIL_PAYMENTS_SCHEMA),
        ],
    ),
    (16, &[Postgres(PAYMENT_INSTRUCTIONS)]),
    (17, &[Sqlite(crate::admin_log::SCHEMA)]),
    (
        18,
        &[Sqlite(crate::business::CHARGE_REFUND_METADATA_SCHEMA)],
    ),
    (
        19,
        &[Postgres(CUSTOMER_ENTRIES), Postgres(CUSTOMER_ENTRIES_FILL)],
    ),
    (20, &[Sqlite(crate::step_up::SCHEMA)]),
    (21, &[Sqlite(crate::risk::SCHEMA)]),
    (22, &[Sqlite(crate::ton::SCHEMA)]),
    (23, &[Sqlite(crate::business::REFUND_STATUS_SCHEMA)]),
    (24, &[Sqlite(crate::ton::REFUNDS_SCHEMA)]),
];

/// A migration's whole PostgreSQL text.
pub(crate) fn text(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|part| match part {
            Sqlite(sql) => postgres_form(sql),
            Postgres(sql) => (*sql).to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// SQLite DDL as PostgreSQL takes it: the words `BLOB` and `INTEGER` become `BYTEA` and `BIGINT`,
/// `WITHOUT ROWID` goes; string literals and `--` comments are left as they are.
pub(crate) fn postgres_form(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(first) = rest.chars().next() {
        let taken = if rest.starts_with("--") {
            rest.find('\n').unwrap_or(rest.len())
        } else if first == '\'' {
            // To the closing quote ('' inside a literal is two quotes in a row: still inside).
            rest[1..].find('\'').map_or(rest.len(), |at| at + 2)
        } else if first.is_ascii_alphabetic() || first == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if word.eq_ignore_ascii_case("BLOB") {
                out.push_str("BYTEA");
            } else if word.eq_ignore_ascii_case("INTEGER") {
                out.push_str("BIGINT");
            } else if word.eq_ignore_ascii_case("WITHOUT") {
                let after = rest[end..].trim_start();
                if after
                    .get(..5)
                    .is_some_and(|next| next.eq_ignore_ascii_case("ROWID"))
                {
                    rest = &after[5..];
                    continue;
                }
                out.push_str(word);
            } else {
                out.push_str(word);
            }
            rest = &rest[end..];
            continue;
        } else {
            first.len_utf8()
        };
        out.push_str(&rest[..taken]);
        rest = &rest[taken..];
    }
    out
}

const LEDGER: &str = r"
    -- The same layout as on SQLite: ids 16-byte big-endian, the four running totals 16-byte
    -- big-endian (128-bit), amounts and times BIGINT.
    CREATE TABLE accounts (
        id              BYTEA PRIMARY KEY,
        currency        TEXT NOT NULL,
        kind            TEXT NOT NULL,
        merchant_id     BYTEA,
        customer_id     BYTEA,
        rail            TEXT,
        flags           BIGINT NOT NULL,
        debits_pending  BYTEA NOT NULL,
        debits_posted   BYTEA NOT NULL,
        credits_pending BYTEA NOT NULL,
        credits_posted  BYTEA NOT NULL,
        created_at_ns   BIGINT NOT NULL
    );
    CREATE INDEX accounts_by_owner ON accounts (merchant_id, customer_id);
    CREATE TABLE transfers (
        id                BYTEA PRIMARY KEY,
        kind              BIGINT NOT NULL,
        debit_account_id  BYTEA NOT NULL,
        credit_account_id BYTEA NOT NULL,
        currency          TEXT NOT NULL,
        amount            BIGINT NOT NULL,
        pending_id        BYTEA,
        timeout_s         BIGINT NOT NULL,
        code              BIGINT NOT NULL,
        reference         BYTEA,
        timestamp_ns      BIGINT NOT NULL
    );
    CREATE TABLE pending_transfers (
        id             BYTEA PRIMARY KEY,
        state          BIGINT NOT NULL,
        expires_at_ns  BIGINT,
        resolved_at_ns BIGINT
    );
    CREATE TABLE hold_expiries (
        expires_at_ns BIGINT NOT NULL,
        id            BYTEA NOT NULL,
        PRIMARY KEY (expires_at_ns, id)
    );
    CREATE TABLE ledger_meta (
        singleton         BIGINT PRIMARY KEY CHECK (singleton = 1),
        last_timestamp_ns BIGINT NOT NULL
    );
    INSERT INTO ledger_meta (singleton, last_timestamp_ns) VALUES (1, 0);
";

/// Migration 15 on SQLite moved the balances of the accounts every merchant shared (external,
/// rail clearing, platform fees) to per-merchant ones. PostgreSQL's ledger came after that and
/// never booked to shared accounts; a database that holds some was written by something else.
const NO_SHARED_ACCOUNTS: &str = r"
    DO $$
    BEGIN
        IF EXISTS (SELECT 1 FROM accounts WHERE merchant_id IS NULL
                   AND kind IN ('external', 'rail_clearing', 'platform_fees')) THEN
            RAISE EXCEPTION 'this database holds accounts shared by all merchants, which farthing never wrote on PostgreSQL: it cannot be migrated (copy a SQLite database with its data instead)';
        END IF;
    END
    $$;
";

/// Migration 16: the rails' instructions move into one JSON object per invoice.
const PAYMENT_INSTRUCTIONS: &str = r"
    ALTER TABLE invoices ADD COLUMN payment_instructions TEXT NOT NULL DEFAULT '{}';
    UPDATE invoices SET payment_instructions = jsonb_set(payment_instructions::jsonb, '{stars}',
        jsonb_build_object('invoice_link', stars_invoice_link))::text
        WHERE stars_invoice_link IS NOT NULL;
    UPDATE invoices SET payment_instructions = jsonb_set(payment_instructions::jsonb, '{card}',
        jsonb_build_object('invoice_link', card_invoice_link))::text
        WHERE card_invoice_link IS NOT NULL;
    UPDATE invoices SET payment_instructions = jsonb_set(payment_instructions::jsonb,
        '{lightning}', jsonb_build_object('bolt11', lightning_bolt11,
                                          'uri', 'lightning:' || lightning_bolt11))::text
        WHERE lightning_bolt11 IS NOT NULL;
    ALTER TABLE invoices DROP COLUMN stars_invoice_link;
    ALTER TABLE invoices DROP COLUMN card_invoice_link;
    ALTER TABLE invoices DROP COLUMN lightning_bolt11;
";

/// Migration 19: each movement of a customer balance, and each balance's newest one.
const CUSTOMER_ENTRIES: &str = r"
    CREATE TABLE customer_entries (
        timestamp_ns  BIGINT NOT NULL,
        account_id    BYTEA NOT NULL,
        transfer_id   BYTEA NOT NULL,
        amount        BIGINT NOT NULL,
        balance_after BIGINT NOT NULL,
        code          BIGINT NOT NULL,
        reference     BYTEA,
        prev_ns       BIGINT,
        PRIMARY KEY (timestamp_ns, account_id)
    );
    ALTER TABLE accounts ADD COLUMN last_entry_ns BIGINT;
";

/// Migration 19's fill from the transfers already booked: a running sum per account in
/// ledger-time order (what the accounts' totals are), and each account's newest entry. Also
/// run by a test against what the ledger writes, which must be the same.
pub(crate) const CUSTOMER_ENTRIES_FILL: &str = concat!(
    crate::statements::customer_entries_fill!(),
    r"
        AS moves;
    UPDATE accounts a SET last_entry_ns = heads.last_ns
        FROM (SELECT account_id, MAX(timestamp_ns) AS last_ns FROM customer_entries
              GROUP BY account_id) AS heads
        WHERE heads.account_id = a.id AND a.kind = 'customer_balance';
"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_numbers_as_sqlite() {
        let numbers: Vec<i64> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, crate::schema::numbers());
    }

    #[test]
    fn types_translated_outside_literals_and_comments() {
        let sqlite = "CREATE TABLE t (\n  a BLOB PRIMARY KEY, -- INTEGER here stays\n  \
                      b INTEGER NOT NULL DEFAULT 'BLOB', c integer, blobs TEXT\n) WITHOUT ROWID;\n\
                      CREATE INDEX t_b ON t (b) WHERE b != 'it''s INTEGER';";
        assert_eq!(
            postgres_form(sqlite),
            "CREATE TABLE t (\n  a BYTEA PRIMARY KEY, -- INTEGER here stays\n  \
             b BIGINT NOT NULL DEFAULT 'BLOB', c BIGINT, blobs TEXT\n) ;\n\
             CREATE INDEX t_b ON t (b) WHERE b != 'it''s INTEGER';"
        );
    }
}
