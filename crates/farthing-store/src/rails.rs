//! Rail payments: one row per payment a rail reported (a Telegram `successful_payment`, a
//! settled Lightning invoice, a confirmed TON transaction), keyed by the rail's own payment id
//! (SPEC P3: Telegram charge id, Lightning payment hash, TON transaction hash).
//!
//! The row records how the payment was settled: the part that paid an invoice and the part
//! credited to the payer's balance, and why (SPEC I3). It is written in the same job as the
//! ledger transfers that book the money, so "a row exists" means "the money is booked", and a
//! second report of the same payment finds the row and books nothing.
//!
//! The settlement rule itself lives in `farthing_core::invoice::Invoice::settle`; the server's
//! `settlement` module books it. This module only stores and reads the rows.

use farthing_core::invoice::CreditReason;
use farthing_core::{Currency, CustomerId, InvoiceId, MerchantId, Rail};
use rusqlite::Connection;

use crate::codec::sql_amount;
use crate::sql::Columns;
use crate::sql::{args, Db};
use crate::{Reader, StoreError, Tx};

/// The rail payments table (migration 3).
pub(crate) const SCHEMA: &str = r#"
    -- One row per payment a rail reported, keyed by the rail's own id; insert-only.
    CREATE TABLE rail_payments (
        rail           TEXT NOT NULL,
        external_id    TEXT NOT NULL,
        merchant_id    BLOB NOT NULL,
        invoice_id     BLOB,
        customer_id    BLOB,
        currency       TEXT NOT NULL,
        amount_minor   INTEGER NOT NULL,
        paid_minor     INTEGER NOT NULL,
        credited_minor INTEGER NOT NULL,
        credit_reason  TEXT,
        payload        TEXT,
        created_at_ns  INTEGER NOT NULL,
        PRIMARY KEY (rail, external_id)
    ) WITHOUT ROWID;
    CREATE INDEX rail_payments_by_invoice ON rail_payments (invoice_id);
"#;

/// A payment a rail reported, and how it was settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RailPayment {
    /// The rail that brought the money.
    pub rail: Rail,
    /// The rail's own payment id (Telegram charge id, Lightning payment hash, TON
    /// transaction hash); unique per rail.
    pub external_id: String,
    /// Whose money it is.
    pub merchant: MerchantId,
    /// The invoice the rail named, if any (as reported, even when the merchant has no such
    /// invoice: then `credit_reason` is `unknown_invoice`).
    pub invoice: Option<InvoiceId>,
    /// The customer who paid, when known (always set when something was credited).
    pub customer: Option<CustomerId>,
    /// Currency of the amount.
    pub currency: Currency,
    /// What the rail reported, minor units.
    pub amount_minor: u64,
    /// The part that paid the invoice.
    pub paid_minor: u64,
    /// The part credited to the customer's balance.
    pub credited_minor: u64,
    /// Why something was credited (`None` when nothing was).
    pub credit_reason: Option<CreditReason>,
    /// Rail-specific data as JSON text (e.g. Telegram's charge ids).
    pub payload: Option<String>,
    /// When it was settled (ledger time).
    pub created_at_ns: u64,
    /// The part that could not be booked where it belongs and is held in the merchant's
    /// suspense account for the rail (nothing is ever dropped); normally 0.
    pub suspended_minor: u64,
    /// Why money went to suspense (`None` when none did).
    pub suspense_reason: Option<String>,
}

const COLUMNS: &str = "rail, external_id, merchant_id, invoice_id, customer_id, currency, \
     amount_minor, paid_minor, credited_minor, credit_reason, payload, created_at_ns, \
     suspended_minor, suspense_reason";

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn id_from<T>(bytes: Vec<u8>, make: fn(u128) -> T) -> Result<T, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt("a rail payment id column is not 16 bytes"))?;
    Ok(make(u128::from_be_bytes(array)))
}

fn amount_from(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what} in rail_payments")))
}

/// Reads a row selected with [`COLUMNS`], from either backend.
fn from_row(row: &impl Columns) -> Result<RailPayment, StoreError> {
    let null = |what: &str| corrupt(format!("{what} is NULL in rail_payments"));
    let text = |index: usize, what: &str| row.text(index)?.ok_or_else(|| null(what));
    let int = |index: usize, what: &str| -> Result<u64, StoreError> {
        amount_from(row.int(index)?.ok_or_else(|| null(what))?, what)
    };
    let rail = text(0, "rail")?;
    let currency = text(5, "currency")?;
    let reason = row.text(9)?;
    let invoice = row.bytes(3)?;
    let customer = row.bytes(4)?;
    Ok(RailPayment {
        rail: rail
            .parse()
            .map_err(|_| corrupt(format!("unknown rail {rail:?} in rail_payments")))?,
        external_id: text(1, "external id")?,
        merchant: id_from(row.bytes(2)?.ok_or_else(|| null("merchant"))?, MerchantId)?,
        invoice: invoice.map(|b| id_from(b, InvoiceId)).transpose()?,
        customer: customer.map(|b| id_from(b, CustomerId)).transpose()?,
        currency: Currency::parse(&currency)
            .map_err(|_| corrupt(format!("unknown currency {currency:?} in rail_payments")))?,
        amount_minor: int(6, "amount")?,
        paid_minor: int(7, "paid amount")?,
        credited_minor: int(8, "credited amount")?,
        credit_reason: reason
            .map(|text| {
                CreditReason::parse(&text)
                    .ok_or_else(|| corrupt(format!("unknown credit reason {text:?}")))
            })
            .transpose()?,
        payload: row.text(10)?,
        created_at_ns: int(11, "time")?,
        suspended_minor: int(12, "suspended amount")?,
        suspense_reason: row.text(13)?,
    })
}

fn load(
    db: Db<'_>,
    merchant: MerchantId,
    rail: Rail,
    external_id: &str,
) -> Result<Option<RailPayment>, StoreError> {
    db.row(
        &format!(
            "SELECT {COLUMNS} FROM rail_payments \
         WHERE merchant_id = ?1 AND rail = ?2 AND external_id = ?3"
        ),
        args![merchant.to_be_bytes(), rail.as_str(), external_id],
        |row| from_row(row),
    )
}

impl Tx<'_, '_> {
    /// The merchant's rail payment with this rail id, as of this point of the batch. Rail
    /// payment ids are per merchant: another merchant's payment with the same id is not this
    /// one (so no merchant can claim, and block, another's id).
    pub fn rail_payment(
        &mut self,
        merchant: MerchantId,
        rail: Rail,
        external_id: &str,
    ) -> Result<Option<RailPayment>, StoreError> {
        load(self.db(), merchant, rail, external_id)
    }

    /// Stores a settled rail payment. A second row with the same `(merchant, rail,
    /// external_id)` is refused (the caller checks [`Tx::rail_payment`] first), as is one whose
    /// parts do not add up to its amount.
    pub fn insert_rail_payment(&mut self, payment: &RailPayment) -> Result<(), StoreError> {
        let parts = payment
            .paid_minor
            .checked_add(payment.credited_minor)
            .and_then(|sum| sum.checked_add(payment.suspended_minor));
        if parts != Some(payment.amount_minor) {
            return Err(corrupt(format!(
                "rail payment {} {}: paid {} + credited {} + suspended {} is not the amount {}",
                payment.rail,
                payment.external_id,
                payment.paid_minor,
                payment.credited_minor,
                payment.suspended_minor,
                payment.amount_minor
            )));
        }
        self.db().execute(
            &format!(
                "INSERT INTO rail_payments ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ),
            args![
                payment.rail.as_str(),
                payment.external_id,
                payment.merchant.to_be_bytes(),
                payment.invoice.map(InvoiceId::to_be_bytes),
                payment.customer.map(CustomerId::to_be_bytes),
                payment.currency.code(),
                sql_amount(payment.amount_minor)?,
                sql_amount(payment.paid_minor)?,
                sql_amount(payment.credited_minor)?,
                payment.credit_reason.map(CreditReason::as_str),
                payment.payload,
                sql_amount(payment.created_at_ns)?,
                sql_amount(payment.suspended_minor)?,
                payment.suspense_reason,
            ],
        )?;
        Ok(())
    }
}

impl Reader<'_> {
    /// The merchant's rail payment with this rail id.
    pub fn rail_payment(
        &self,
        merchant: MerchantId,
        rail: Rail,
        external_id: &str,
    ) -> Result<Option<RailPayment>, StoreError> {
        load(self.db(), merchant, rail, external_id)
    }

    /// Every rail payment with money held in suspense, oldest first: what `farthing audit`
    /// reports for an operator to resolve.
    pub fn suspended_rail_payments(&self) -> Result<Vec<RailPayment>, StoreError> {
        self.db()
            .rows(&suspended_sql(), args![], |row| from_row(row))
    }

    /// Every rail payment that named `invoice`, oldest first. Rows of other merchants that
    /// named the same id (an invoice is never theirs) are left out.
    pub fn rail_payments_of_invoice(
        &self,
        merchant: MerchantId,
        invoice: InvoiceId,
    ) -> Result<Vec<RailPayment>, StoreError> {
        self.db().rows(
            &format!(
                "SELECT {COLUMNS} FROM rail_payments WHERE invoice_id = ?1 AND merchant_id = ?2 \
                 ORDER BY created_at_ns, rail, external_id"
            ),
            args![invoice.to_be_bytes(), merchant.to_be_bytes()],
            |row| from_row(row),
        )
    }
}

/// The rail payments holding money in suspense, oldest first.
pub(crate) fn suspended_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM rail_payments WHERE suspended_minor > 0 \
         ORDER BY created_at_ns, merchant_id, rail, external_id"
    )
}

/// The audit's finding about a row of [`suspended_sql`]: money in suspense, to be booked.
pub(crate) fn suspense_finding(row: &impl Columns) -> Result<String, StoreError> {
    let payment = from_row(row)?;
    Ok(format!(
        "rail payment {} {:?} of merchant {}: {} {} minor units held in suspense ({}); \
         book them where they belong and move them out of the suspense account",
        payment.rail,
        payment.external_id,
        farthing_core::PublicId::encode(payment.merchant),
        payment.suspended_minor,
        payment.currency,
        payment
            .suspense_reason
            .as_deref()
            .unwrap_or("no reason recorded"),
    ))
}

/// The audit's findings about money in suspense: one line per rail payment that holds some.
pub(crate) fn audit_suspense(
    connection: &Connection,
    findings: &mut Vec<String>,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare(&suspended_sql())?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        findings.push(suspense_finding(row)?);
    }
    Ok(())
}

/// The rail payments whose parts do not add up to their amount, or whose credit names no
/// customer or reason (the same text on both backends; the sum in NUMERIC, so damaged values
/// near the integer limit are reported, not an overflow error that stops the audit).
pub(crate) const BROKEN_SQL: &str = "SELECT rail, external_id FROM rail_payments \
     WHERE paid_minor < 0 OR credited_minor < 0 OR suspended_minor < 0 \
     OR CAST(paid_minor AS NUMERIC) + credited_minor + suspended_minor != amount_minor \
     OR (credited_minor > 0 AND (customer_id IS NULL OR credit_reason IS NULL)) \
     OR (suspended_minor > 0 AND suspense_reason IS NULL)";

/// The audit's problem about a row of [`BROKEN_SQL`].
pub(crate) fn broken_problem(row: &impl Columns) -> Result<String, StoreError> {
    let rail = row.text(0)?.unwrap_or_default();
    let external_id = row.text(1)?.unwrap_or_default();
    Ok(format!(
        "rail payment {rail} {external_id:?}: its paid and credited parts do not add up to \
         its amount, or a credit names no customer or reason"
    ))
}

/// The audit's check of the rail payments: each one's parts add up to its amount, and a
/// credit always names a customer and a reason.
pub(crate) fn audit(connection: &Connection, problems: &mut Vec<String>) -> Result<(), StoreError> {
    let mut statement = connection.prepare(BROKEN_SQL)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        problems.push(broken_problem(row)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    fn payment(external_id: &str, invoice: Option<InvoiceId>) -> RailPayment {
        RailPayment {
            rail: Rail::Stars,
            external_id: external_id.to_owned(),
            merchant: MerchantId(7),
            invoice,
            customer: Some(CustomerId(3)),
            currency: Currency::XTR,
            amount_minor: 15,
            paid_minor: 10,
            credited_minor: 5,
            credit_reason: Some(CreditReason::Overpaid),
            payload: Some(r#"{"telegram_payment_charge_id":"abc"}"#.to_owned()),
            created_at_ns: 42,
            suspended_minor: 0,
            suspense_reason: None,
        }
    }

    #[test]
    fn rail_payments_are_stored_once_and_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path().join("r.db"), StoreOptions::default()).expect("open");
        let first = payment("charge-1", Some(InvoiceId(9)));
        let second = RailPayment {
            external_id: "charge-2".to_owned(),
            credited_minor: 0,
            paid_minor: 15,
            credit_reason: None,
            customer: None,
            payload: None,
            created_at_ns: 43,
            ..first.clone()
        };
        let (a, b) = (first.clone(), second.clone());
        store
            .execute(move |tx| -> Result<_, StoreError> {
                assert_eq!(
                    tx.rail_payment(MerchantId(7), Rail::Stars, "charge-1")?,
                    None
                );
                tx.insert_rail_payment(&a)?;
                tx.insert_rail_payment(&b)?;
                assert_eq!(
                    tx.rail_payment(MerchantId(7), Rail::Stars, "charge-1")?,
                    Some(a.clone())
                );
                // The same id on another rail is another payment.
                assert_eq!(tx.rail_payment(MerchantId(7), Rail::Ton, "charge-1")?, None);
                // And so is the same id of another merchant: ids are per merchant, so one
                // merchant cannot claim (and block) another's payment id.
                assert_eq!(
                    tx.rail_payment(MerchantId(8), Rail::Stars, "charge-1")?,
                    None
                );
                tx.insert_rail_payment(&RailPayment {
                    merchant: MerchantId(8),
                    invoice: None,
                    ..a
                })?;
                Ok(())
            })
            .expect("queued")
            .wait()
            .expect("committed")
            .expect("job");

        // A second row with the same rail id is refused, and so is one that loses money.
        let again = first.clone();
        let refused = store
            .execute(move |tx| tx.insert_rail_payment(&again))
            .expect("queued")
            .wait()
            .expect("committed");
        assert!(refused.is_err(), "a duplicate rail id must be refused");
        let mut lossy = payment("charge-3", None);
        lossy.credited_minor = 4;
        let refused = store
            .execute(move |tx| tx.insert_rail_payment(&lossy))
            .expect("queued")
            .wait()
            .expect("committed");
        assert!(
            matches!(refused, Err(StoreError::Corrupt(ref m)) if m.contains("not the amount")),
            "{refused:?}"
        );

        let (one, listed, other_merchant, audit) = store
            .read(|reader| {
                Ok((
                    reader.rail_payment(MerchantId(7), Rail::Stars, "charge-1")?,
                    reader.rail_payments_of_invoice(MerchantId(7), InvoiceId(9))?,
                    reader.rail_payments_of_invoice(MerchantId(8), InvoiceId(9))?,
                    {
                        let mut problems = Vec::new();
                        let crate::sql::Db::Sqlite(connection) = reader.db() else {
                            panic!("an SQLite store");
                        };
                        audit(connection, &mut problems)?;
                        problems
                    },
                ))
            })
            .expect("read");
        assert_eq!(one, Some(first.clone()));
        assert_eq!(listed, vec![first, second]);
        assert!(other_merchant.is_empty());
        assert!(audit.is_empty(), "{audit:?}");
        assert!(store.audit().expect("audit").is_ok());
        let path = store.path().expect("an SQLite store").to_path_buf();
        store.shutdown();

        // The audit notices a row whose parts do not add up.
        let connection = Connection::open(&path).expect("open");
        connection
            .execute(
                &format!(
                    "INSERT INTO rail_payments ({COLUMNS}) VALUES ('ton', 'tx-9', ?1, NULL, \
                 NULL, 'TON', 10, 3, 3, 'late', NULL, 1, 0, NULL)"
                ),
                [MerchantId(7).to_be_bytes()],
            )
            .expect("insert a broken row");
        drop(connection);
        let report = crate::audit::audit_path(&path).expect("audit");
        assert!(
            report.problems.iter().any(|p| p.contains("tx-9")),
            "{report}"
        );
    }
}
