//! `farthing audit`: checks SPEC L5 on a database, from one consistent snapshot.
//!
//! It streams every account and transfer through the domain's [`Auditor`] (memory follows the
//! number of accounts and holds, not transfers) and adds the checks only a database can fail:
//! SQLite's own `quick_check`, hold states without their hold, and a ledger clock behind its
//! transfers. It only reads; it never repairs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use farthing_core::ledger::{
    AccountKind, AccountState, Auditor, PendingState, StoredTransfer, Violation,
};
use farthing_core::Currency;
use rusqlite::Connection;

use crate::{codec, schema, StoreError};

/// What an audit found.
#[derive(Clone, Debug, Default)]
pub struct AuditReport {
    /// Accounts checked.
    pub accounts: u64,
    /// Transfers checked.
    pub transfers: u64,
    /// Holds still open.
    pub open_holds: u64,
    /// Per currency: the total of positive posted balances (money held in it).
    pub totals: BTreeMap<Currency, u128>,
    /// Every problem, readable.
    pub problems: Vec<String>,
    /// What holds but needs an operator: money a rail reported that is held in suspense
    /// because it could not be booked where it belongs (never dropped, never silent).
    pub findings: Vec<String>,
}

impl AuditReport {
    /// Whether every invariant holds and nothing waits for an operator.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.findings.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} accounts, {} transfers, {} open holds",
            self.accounts, self.transfers, self.open_holds
        )?;
        for (currency, total) in &self.totals {
            writeln!(
                f,
                "  {currency}: {total} minor units held in positive balances"
            )?;
        }
        if !self.findings.is_empty() {
            writeln!(
                f,
                "{} finding(s) that need an operator:",
                self.findings.len()
            )?;
            for finding in &self.findings {
                writeln!(f, "  - {finding}")?;
            }
        }
        if self.problems.is_empty() && self.findings.is_empty() {
            write!(
                f,
                "ok: per currency the balances sum to zero, every balance equals the sum of its transfers, no dangling references"
            )
        } else if self.problems.is_empty() {
            write!(
                f,
                "ATTENTION: the ledger's invariants hold (SPEC L5), but money is held in suspense"
            )
        } else {
            writeln!(f, "{} problem(s):", self.problems.len())?;
            for problem in &self.problems {
                writeln!(f, "  - {problem}")?;
            }
            write!(f, "FAILED: the ledger does not satisfy SPEC L5")
        }
    }
}

/// Audits the database at `path` (which must exist and be of this build's schema).
pub fn audit_path(path: &Path) -> Result<AuditReport, StoreError> {
    let connection = schema::open_existing(path)?;
    audit_connection(&connection)
}

/// Copies the database at `from` to a new file `to` with SQLite's online backup API, as one
/// consistent snapshot (all pages in one step, inside one read transaction) while a server
/// keeps writing to it; the copy is `0600` like the original. Returns the copy's size in
/// bytes. `to` must not exist yet (the caller checks).
pub fn backup_path(from: &Path, to: &Path) -> Result<u64, StoreError> {
    let source = schema::open_existing(from)?;
    schema::private_file(to)?;
    let mut target = rusqlite::Connection::open(to)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
        // -1: every page in one step, inside one read transaction, so the copy is one
        // snapshot even while the writer commits. Busy/locked (another connection holds a
        // lock for a moment): wait and step again.
        let mut waits = 0;
        loop {
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                _ if waits < 200 => {
                    waits += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                _ => {
                    return Err(StoreError::Corrupt(
                        "the database stayed locked for 5 s; the backup was not taken".into(),
                    ))
                }
            }
        }
    }
    target.execute_batch("PRAGMA journal_mode=DELETE;")?;
    drop(target);
    Ok(std::fs::metadata(to).map(|meta| meta.len()).unwrap_or(0))
}

/// The checks every backend shares: each account and transfer streamed through the domain's
/// [`Auditor`], the money in suspense, the totals per currency.
pub(crate) struct Tally {
    auditor: Auditor,
    report: AuditReport,
    max_timestamp_ns: u64,
}

impl Tally {
    pub(crate) fn new(report: AuditReport) -> Tally {
        Tally {
            auditor: Auditor::new(),
            report,
            max_timestamp_ns: 0,
        }
    }

    pub(crate) fn account(&mut self, read: Result<AccountState, StoreError>) {
        let state = match read {
            Ok(state) => state,
            Err(error) => {
                self.report
                    .problems
                    .push(format!("unreadable account: {error}"));
                return;
            }
        };
        let posted = state.balances.posted();
        if let AccountKind::Suspense { merchant, rail } = state.account.kind {
            // Suspense is credited from the rail's external account: what it holds is its
            // posted credit balance.
            if posted != 0 {
                self.report.findings.push(format!(
                    "the suspense account of merchant {} for rail {rail} holds {posted} {} minor units",
                    farthing_core::PublicId::encode(merchant),
                    state.account.currency
                ));
            }
        }
        if posted > 0 {
            *self
                .report
                .totals
                .entry(state.account.currency)
                .or_default() += posted.unsigned_abs();
        }
        self.auditor.add_account(&state);
    }

    pub(crate) fn transfer(&mut self, read: Result<StoredTransfer, StoreError>) {
        match read {
            Ok(stored) => {
                self.max_timestamp_ns = self.max_timestamp_ns.max(stored.record.timestamp_ns);
                if stored.pending_state == Some(PendingState::Pending) {
                    self.report.open_holds += 1;
                }
                self.auditor.add_transfer(&stored);
            }
            Err(error) => self
                .report
                .problems
                .push(format!("unreadable transfer: {error}")),
        }
    }

    /// The report so far and the newest transfer's ledger time (the clock must not be behind).
    pub(crate) fn finish(self) -> (AuditReport, u64) {
        let Tally {
            auditor,
            mut report,
            max_timestamp_ns,
        } = self;
        report.accounts = auditor.accounts_seen() as u64;
        report.transfers = auditor.transfers_seen();
        report
            .problems
            .extend(auditor.finish().iter().map(Violation::to_string));
        (report, max_timestamp_ns)
    }
}

/// Audits through an open connection, inside one read transaction (a consistent snapshot even
/// while the writer keeps committing).
pub fn audit_connection(connection: &Connection) -> Result<AuditReport, StoreError> {
    let snapshot = connection.unchecked_transaction()?;
    let mut report = AuditReport::default();

    let integrity: Vec<String> = {
        let mut statement = snapshot.prepare("PRAGMA quick_check")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if integrity != ["ok"] {
        report
            .problems
            .extend(integrity.into_iter().map(|line| format!("sqlite: {line}")));
    }

    let mut tally = Tally::new(report);
    {
        let mut statement =
            snapshot.prepare(&format!("SELECT {} FROM accounts", codec::ACCOUNT_COLUMNS))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            tally.account(codec::account_from_row(row));
        }
    }
    {
        let mut statement = snapshot.prepare(&format!(
            "SELECT {} FROM transfers t",
            codec::TRANSFER_COLUMNS
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            tally.transfer(codec::transfer_from_row(row));
        }
    }
    let (mut report, max_timestamp_ns) = tally.finish();

    let orphans: i64 = snapshot.query_row(
        "SELECT COUNT(*) FROM pending_transfers p LEFT JOIN transfers t ON t.id = p.id \
         WHERE t.id IS NULL OR t.kind != 1",
        [],
        |row| row.get(0),
    )?;
    if orphans > 0 {
        report.problems.push(format!(
            "{orphans} hold state row(s) without a hold in the transfers table"
        ));
    }
    let stale_expiries: i64 = snapshot.query_row(
        "SELECT COUNT(*) FROM hold_expiries e LEFT JOIN pending_transfers p ON p.id = e.id \
         WHERE p.id IS NULL OR p.state != 0 OR p.expires_at_ns IS NOT e.expires_at_ns",
        [],
        |row| row.get(0),
    )?;
    let unscheduled: i64 = snapshot.query_row(
        "SELECT COUNT(*) FROM pending_transfers p WHERE p.state = 0 \
         AND p.expires_at_ns IS NOT NULL AND NOT EXISTS (SELECT 1 FROM hold_expiries e \
         WHERE e.expires_at_ns = p.expires_at_ns AND e.id = p.id)",
        [],
        |row| row.get(0),
    )?;
    if stale_expiries > 0 || unscheduled > 0 {
        report.problems.push(format!(
            "expiry schedule out of step: {stale_expiries} entries for holds that are not open, \
             {unscheduled} open holds with a timeout not scheduled"
        ));
    }
    let clock = codec::load_last_timestamp(&snapshot)?;
    if clock < max_timestamp_ns {
        report.problems.push(format!(
            "ledger clock {clock} is behind its newest transfer {max_timestamp_ns}"
        ));
    }
    crate::statements::audit(&snapshot, &mut report.problems)?;
    crate::rails::audit(&snapshot, &mut report.problems)?;
    crate::rails::audit_suspense(&snapshot, &mut report.findings)?;
    Ok(report)
}
