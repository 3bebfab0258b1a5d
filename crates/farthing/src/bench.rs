//! `farthing bench ledger`: durable transfers per second through the real store.
//!
//! Client threads keep a window of writes in flight against a fresh SQLite database on disk
//! (or, with `--database postgres://…`, a fresh schema of that PostgreSQL database, dropped
//! afterwards); the writer commits them in batches of at most `--batch` transfers, each batch
//! one durable commit. Every transfer moves 1–100 Stars between two random accounts out of
//! `--accounts`, so few accounts means heavy contention on the same balances. On PostgreSQL,
//! `--instances N` runs N ledger writers, each with its own connection, as N farthing
//! instances would (the clients are spread over them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use farthing_core::ledger::{code, Account, AccountKind, Group, Transfer, TransferAction};
use farthing_core::{Currency, CustomerId, MerchantId, Rail, TransferId};
use farthing_store::pg::PgLedger;
use farthing_store::{BatchStats, DatabaseUrl, Ledger, Store, StoreOptions, Ticket, WriteError};

/// Arguments of `farthing bench ledger`.
#[derive(clap::Args, Debug)]
pub struct LedgerArgs {
    /// How long to drive load, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Customer accounts the transfers move between (2 or more; few = contention).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    accounts: u64,
    /// Most transfers per durable commit (group-commit batch limit).
    #[arg(long, default_value_t = 8_192, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
    /// Client threads submitting transfers.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    clients: u64,
    /// Writes each client keeps in flight (default: enough to fill two batches).
    #[arg(long)]
    window: Option<u64>,
    /// Directory for the fresh database (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the database afterwards instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// A PostgreSQL database to run on instead of a fresh SQLite file:
    /// postgres://user:password@host/db (the benchmark works in a new schema of its own and
    /// drops it afterwards unless --keep).
    #[arg(long)]
    database: Option<String>,
    /// Ledger writers sharing the PostgreSQL database (each one connection, as one instance).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    instances: u64,
}

/// The ledger under test: a fresh SQLite file, or PostgreSQL writers (one per instance) in a
/// fresh schema.
struct Bench {
    writers: Vec<Ledger>,
    place: Place,
    /// Keep the data afterwards (`--keep`); otherwise it is removed when the bench ends, also
    /// on an error.
    keep: bool,
}

/// Where the benchmark's data is, to describe and remove it.
enum Place {
    File(PathBuf),
    Schema { base_url: String, name: String },
}

impl Bench {
    fn open(args: &LedgerArgs, options: &StoreOptions) -> anyhow::Result<Bench> {
        let Some(database) = &args.database else {
            if args.instances != 1 {
                anyhow::bail!(
                    "--instances needs --database postgres://…: SQLite has one writer per database"
                );
            }
            let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join(format!(
                "farthing-bench-{}-{}.db",
                std::process::id(),
                fastrand::u64(..)
            ));
            let store =
                Store::open(&path, options.clone()).context("opening the bench database")?;
            return Ok(Bench {
                writers: vec![Ledger::Sqlite(store)],
                place: Place::File(path),
                keep: args.keep,
            });
        };
        let DatabaseUrl::Postgres(url) = DatabaseUrl::parse(database)? else {
            anyhow::bail!(
                "--database takes a postgres:// URL; without it the benchmark makes a fresh SQLite file"
            );
        };
        let name = format!(
            "farthing_bench_{}_{}",
            std::process::id(),
            fastrand::u32(..)
        );
        let scoped = farthing_store::pg::scratch_schema(url.expose(), &name)
            .context("making the benchmark's schema")?;
        let mut bench = Bench {
            writers: Vec::new(),
            place: Place::Schema {
                base_url: url.expose().to_owned(),
                name,
            },
            keep: args.keep,
        };
        for _ in 0..args.instances {
            let ledger = PgLedger::open(&scoped, options.clone())
                .context("opening the PostgreSQL ledger")?;
            bench.writers.push(Ledger::Postgres(ledger));
        }
        Ok(bench)
    }

    fn describe(&self) -> String {
        match &self.place {
            Place::File(path) => format!("database {}", path.display()),
            Place::Schema { name, .. } => format!(
                "PostgreSQL schema {name}, {} instance(s)",
                self.writers.len()
            ),
        }
    }

    /// The writer client `n` submits to.
    fn submit(&self, n: usize, group: Group) -> Result<Ticket, WriteError> {
        self.writers[n % self.writers.len()].submit(group)
    }

    fn shutdown(&self) {
        self.writers.iter().for_each(Ledger::shutdown);
    }

    fn audit(&self) -> anyhow::Result<farthing_store::audit::AuditReport> {
        Ok(match &self.place {
            Place::File(path) => farthing_store::audit::audit_path(path)?,
            Place::Schema { .. } => self.writers[0].audit()?,
        })
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.writers.iter().for_each(Ledger::shutdown);
        match &self.place {
            Place::File(path) => {
                for suffix in ["", "-wal", "-shm", ".lock"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Place::Schema { base_url, name } => {
                if let Err(error) = farthing_store::pg::drop_scratch_schema(base_url, name) {
                    eprintln!("could not drop the benchmark's schema {name}: {error}");
                }
            }
        }
    }
}

pub(crate) fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Index arithmetic on a measurement, not on money: floats are fine here.
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

pub fn run_ledger(args: &LedgerArgs) -> anyhow::Result<ExitCode> {
    let commits: Arc<Mutex<Vec<BatchStats>>> = Arc::default();
    let recorder = commits.clone();
    let options = StoreOptions {
        max_batch_transfers: usize::try_from(args.batch)?,
        observer: Some(Arc::new(move |stats: &BatchStats| {
            if let Ok(mut all) = recorder.lock() {
                all.push(*stats);
            }
        })),
        ..StoreOptions::default()
    };
    let ledger = Arc::new(Bench::open(args, &options)?);
    println!(
        "ledger bench: {} s, {} accounts, batch {}, {} clients, {}",
        args.seconds,
        args.accounts,
        args.batch,
        args.clients,
        ledger.describe()
    );

    // Set up: one external Stars account funds every customer with far more than the run spends.
    let merchant = MerchantId(1);
    let external = Account::new(
        AccountKind::External {
            merchant,
            rail: Rail::Stars,
        },
        Currency::XTR,
    );
    let customers: Vec<Account> = (0..args.accounts)
        .map(|n| {
            Account::new(
                AccountKind::CustomerBalance {
                    merchant,
                    customer: CustomerId(u128::from(n) + 1),
                },
                Currency::XTR,
            )
        })
        .collect();
    let setup_started = Instant::now();
    let mut next_id: u128 = 1;
    let mut tickets = Vec::new();
    for chunk in customers.chunks(63) {
        let mut group = Group {
            accounts: chunk.to_vec(),
            transfers: Vec::new(),
        };
        group.accounts.push(external);
        for account in chunk {
            group.transfers.push(Transfer {
                id: TransferId(next_id),
                action: TransferAction::Single {
                    debit: external.id,
                    credit: account.id,
                    currency: Currency::XTR,
                    amount_minor: 1_000_000_000_000,
                },
                code: code::TOP_UP,
                reference: 0,
            });
            next_id += 1;
        }
        tickets.push(ledger.submit(0, group)?);
    }
    for ticket in tickets {
        ticket.wait().context("funding the bench accounts")?;
    }
    println!(
        "setup: {} accounts funded in {}",
        args.accounts,
        ms(setup_started.elapsed())
    );
    commits
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();

    let window = args
        .window
        .unwrap_or_else(|| (args.batch * 2).div_ceil(args.clients))
        .max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let customers = Arc::new(customers);
    let started = Instant::now();
    let mut handles = Vec::new();
    for client in 0..args.clients {
        let ledger = ledger.clone();
        let stop = stop.clone();
        let customers = customers.clone();
        // Disjoint id ranges per client: ids are never reused, so every write is new.
        let mut id = (u128::from(client) + 1) << 64;
        handles.push(std::thread::spawn(
            move || -> anyhow::Result<(u64, u64, Vec<Duration>)> {
                let mut rng = fastrand::Rng::with_seed(client);
                let mut in_flight = std::collections::VecDeque::new();
                let mut latencies = Vec::new();
                let (mut ok, mut refused) = (0u64, 0u64);
                let mut finish = |ticket: Ticket, sent: Instant| {
                    match ticket.wait() {
                        Ok(_) => ok += 1,
                        Err(WriteError::Rejected(_)) => refused += 1,
                        Err(error) => return Err(anyhow::anyhow!(error)),
                    }
                    latencies.push(sent.elapsed());
                    Ok(())
                };
                while !stop.load(Ordering::Relaxed) {
                    let debit = rng.usize(..customers.len());
                    let mut credit = rng.usize(..customers.len() - 1);
                    if credit >= debit {
                        credit += 1;
                    }
                    id += 1;
                    let transfer = Transfer {
                        id: TransferId(id),
                        action: TransferAction::Single {
                            debit: customers[debit].id,
                            credit: customers[credit].id,
                            currency: Currency::XTR,
                            amount_minor: rng.u64(1..=100),
                        },
                        code: code::BENCH,
                        reference: 0,
                    };
                    let writer = usize::try_from(client).unwrap_or(0);
                    in_flight.push_back((
                        ledger.submit(writer, Group::transfer(transfer))?,
                        Instant::now(),
                    ));
                    if in_flight.len() as u64 >= window {
                        if let Some((ticket, sent)) = in_flight.pop_front() {
                            finish(ticket, sent)?;
                        }
                    }
                }
                while let Some((ticket, sent)) = in_flight.pop_front() {
                    finish(ticket, sent)?;
                }
                Ok((ok, refused, latencies))
            },
        ));
    }
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut committed = 0u64;
    let mut refused = 0u64;
    let mut latencies = Vec::new();
    for handle in handles {
        let (ok, no, mut lat) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        committed += ok;
        refused += no;
        latencies.append(&mut lat);
    }
    let elapsed = started.elapsed();
    ledger.shutdown();

    let commits = std::mem::take(&mut *commits.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let mut commit_times: Vec<Duration> = commits.iter().map(|s| s.commit_time).collect();
    commit_times.sort_unstable();
    latencies.sort_unstable();
    let batches = commits.len().max(1);
    let mean_batch = commits.iter().map(|s| s.transfers).sum::<usize>() as f64 / batches as f64;
    let failed = commits.iter().filter(|s| s.failed).count();
    println!(
        "transfers: {committed} committed, {refused} refused, in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!(
        "commits: {} durable transactions, {:.1} transfers each on average, {failed} failed",
        commits.len(),
        mean_batch
    );
    println!(
        "commit latency (COMMIT incl. fsync): p50 {}, p99 {}, max {}",
        ms(percentile(&commit_times, 0.50)),
        ms(percentile(&commit_times, 0.99)),
        ms(commit_times.last().copied().unwrap_or_default())
    );
    println!(
        "request latency (submit to durable answer): p50 {}, p99 {}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99))
    );
    let audit_started = Instant::now();
    let report = ledger.audit()?;
    println!(
        "audit: {} ({} transfers checked in {})",
        if report.is_ok() { "ok" } else { "FAILED" },
        report.transfers,
        ms(audit_started.elapsed())
    );
    let per_second = committed as f64 / elapsed.as_secs_f64();
    println!("ledger: {per_second:.0} transfers/s durable");
    Ok(if report.is_ok() && failed == 0 {
        ExitCode::SUCCESS
    } else {
        println!("{report}");
        ExitCode::from(1)
    })
}
