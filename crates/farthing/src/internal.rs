//! `farthing internal …`: helpers that farthing's own tests run as child processes.
//!
//! `crash-writer` applies a random mix of top-ups, charges with fees (linked groups), holds,
//! posts, voids and retries, and prints one `ack` line per durable write (flushed before the
//! next write), so a test can SIGKILL it at any moment and then check that every
//! acknowledged write is in the database exactly once.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use farthing_core::ledger::{code, Account, AccountKind, Group, Outcome, Transfer, TransferAction};
use farthing_core::{AccountId, Currency, CustomerId, MerchantId, Rail, TransferId};
use farthing_store::{DatabaseUrl, Ledger, StoreOptions, WriteError};

/// Internal commands.
#[derive(clap::Subcommand)]
pub enum InternalCommand {
    /// Apply random ledger writes forever, printing an `ack` line per durable write.
    CrashWriter {
        /// Database URL or SQLite path (several crash writers may share a PostgreSQL one).
        #[arg(long)]
        database: String,
        /// Seed of the random mix.
        #[arg(long)]
        seed: u64,
        /// File of `ack` lines from earlier runs to retry (each must report `Exists`).
        #[arg(long)]
        retry: Option<PathBuf>,
        /// Writer threads.
        #[arg(long, default_value_t = 4)]
        threads: u64,
    },
}

pub fn run(command: InternalCommand) -> anyhow::Result<ExitCode> {
    match command {
        InternalCommand::CrashWriter {
            database,
            seed,
            retry,
            threads,
        } => crash_writer(database, seed, retry, threads),
    }
}

/// The accounts of the crash mix: external, platform fees, one merchant, eight customers.
pub fn crash_accounts() -> Vec<Account> {
    let merchant = MerchantId(7);
    let mut accounts = vec![
        Account::new(
            AccountKind::External {
                merchant,
                rail: Rail::Sandbox,
            },
            Currency::XTR,
        ),
        Account::new(AccountKind::PlatformFees { merchant }, Currency::XTR),
        Account::new(AccountKind::MerchantBalance { merchant }, Currency::XTR),
    ];
    accounts.extend((1..=8).map(|n| {
        Account::new(
            AccountKind::CustomerBalance {
                merchant,
                customer: CustomerId(n),
            },
            Currency::XTR,
        )
    }));
    accounts
}

/// One line per group: transfers separated by `;`, fields by `,`:
/// `S,id,debit,credit,amount,code` · `P,id,debit,credit,amount,timeout,code` ·
/// `C,id,pending,amount|*,code` · `V,id,pending,code` (ids in hex).
pub fn encode_group(group: &Group) -> String {
    let parts: Vec<String> = group
        .transfers
        .iter()
        .map(|t| match t.action {
            TransferAction::Single {
                debit,
                credit,
                amount_minor,
                ..
            } => format!("S,{},{debit},{credit},{amount_minor},{}", t.id, t.code),
            TransferAction::Pending {
                debit,
                credit,
                amount_minor,
                timeout_s,
                ..
            } => format!(
                "P,{},{debit},{credit},{amount_minor},{timeout_s},{}",
                t.id, t.code
            ),
            TransferAction::PostPending {
                pending_id,
                amount_minor,
            } => format!(
                "C,{},{pending_id},{},{}",
                t.id,
                amount_minor.map_or("*".to_owned(), |a| a.to_string()),
                t.code
            ),
            TransferAction::VoidPending { pending_id } => {
                format!("V,{},{pending_id},{}", t.id, t.code)
            }
        })
        .collect();
    parts.join(";")
}

fn hex(text: &str) -> anyhow::Result<u128> {
    u128::from_str_radix(text, 16).with_context(|| format!("bad id {text:?}"))
}

/// Inverse of [`encode_group`] (all transfers in XTR).
pub fn decode_group(line: &str) -> anyhow::Result<Group> {
    let mut transfers = Vec::new();
    for part in line.split(';') {
        let f: Vec<&str> = part.split(',').collect();
        let id = TransferId(hex(f.get(1).ok_or_else(|| anyhow!("short"))?)?);
        let field = |i: usize| f.get(i).copied().ok_or_else(|| anyhow!("short {part:?}"));
        let (action, code) = match f[0] {
            "S" => (
                TransferAction::Single {
                    debit: AccountId(hex(field(2)?)?),
                    credit: AccountId(hex(field(3)?)?),
                    currency: Currency::XTR,
                    amount_minor: field(4)?.parse()?,
                },
                field(5)?,
            ),
            "P" => (
                TransferAction::Pending {
                    debit: AccountId(hex(field(2)?)?),
                    credit: AccountId(hex(field(3)?)?),
                    currency: Currency::XTR,
                    amount_minor: field(4)?.parse()?,
                    timeout_s: field(5)?.parse()?,
                },
                field(6)?,
            ),
            "C" => (
                TransferAction::PostPending {
                    pending_id: TransferId(hex(field(2)?)?),
                    amount_minor: match field(3)? {
                        "*" => None,
                        amount => Some(amount.parse()?),
                    },
                },
                field(4)?,
            ),
            "V" => (
                TransferAction::VoidPending {
                    pending_id: TransferId(hex(field(2)?)?),
                },
                field(3)?,
            ),
            other => bail!("unknown transfer kind {other:?}"),
        };
        transfers.push(Transfer {
            id,
            action,
            code: code.parse()?,
            reference: 0,
        });
    }
    Ok(Group {
        accounts: Vec::new(),
        transfers,
    })
}

fn crash_writer(
    database: String,
    seed: u64,
    retry: Option<PathBuf>,
    threads: u64,
) -> anyhow::Result<ExitCode> {
    let store = Ledger::open(&DatabaseUrl::parse(&database)?, StoreOptions::default())?;
    let accounts = crash_accounts();
    store.write(Group {
        accounts: accounts.clone(),
        transfers: Vec::new(),
    })?;
    let retries: Vec<Group> = match retry {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter_map(|line| line.strip_prefix("ack "))
            .map(decode_group)
            .collect::<anyhow::Result<_>>()?,
        None => Vec::new(),
    };
    let retries = Arc::new(retries);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    {
        let mut out = out.lock().map_err(|_| anyhow!("poisoned"))?;
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let mut handles = Vec::new();
    for thread in 0..threads {
        let store = store.clone();
        let accounts = accounts.clone();
        let retries = retries.clone();
        let out = out.clone();
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(31).wrapping_add(thread));
            let (external, fees, merchant) = (accounts[0].id, accounts[1].id, accounts[2].id);
            let customers = &accounts[3..];
            let mut holds: Vec<TransferId> = Vec::new();
            loop {
                let customer = customers[rng.usize(..customers.len())].id;
                let single = |id, debit, credit, amount_minor, code| Transfer {
                    id,
                    action: TransferAction::Single {
                        debit,
                        credit,
                        currency: Currency::XTR,
                        amount_minor,
                    },
                    code,
                    reference: 0,
                };
                let roll = rng.u8(..100);
                let (group, is_retry) = if roll < 10 && !retries.is_empty() {
                    (retries[rng.usize(..retries.len())].clone(), true)
                } else if roll < 30 {
                    let amount = rng.u64(100..10_000);
                    let t = single(
                        TransferId(rng.u128(1..)),
                        external,
                        customer,
                        amount,
                        code::TOP_UP,
                    );
                    (Group::transfer(t), false)
                } else if roll < 70 {
                    let amount = rng.u64(2..500);
                    let charge = single(
                        TransferId(rng.u128(1..)),
                        customer,
                        merchant,
                        amount,
                        code::CHARGE,
                    );
                    let fee = single(TransferId(rng.u128(1..)), merchant, fees, 1, code::FEE);
                    let group = Group {
                        accounts: Vec::new(),
                        transfers: vec![charge, fee],
                    };
                    (group, false)
                } else if roll < 85 || holds.is_empty() {
                    let t = Transfer {
                        id: TransferId(rng.u128(1..)),
                        action: TransferAction::Pending {
                            debit: customer,
                            credit: merchant,
                            currency: Currency::XTR,
                            amount_minor: rng.u64(1..300),
                            timeout_s: rng.u32(0..3),
                        },
                        code: code::PAYMENT,
                        reference: 0,
                    };
                    (Group::transfer(t), false)
                } else {
                    let pending_id = holds.swap_remove(rng.usize(..holds.len()));
                    let action = if rng.bool() {
                        TransferAction::PostPending {
                            pending_id,
                            amount_minor: rng.bool().then_some(1),
                        }
                    } else {
                        TransferAction::VoidPending { pending_id }
                    };
                    let t = Transfer {
                        id: TransferId(rng.u128(1..)),
                        action,
                        code: code::PAYMENT,
                        reference: 0,
                    };
                    (Group::transfer(t), false)
                };
                match store.write(group.clone()) {
                    Ok(outcome) => {
                        let all_exist = outcome
                            .transfers
                            .iter()
                            .all(|t| t.outcome == Outcome::Exists);
                        let mut out = out.lock().map_err(|_| anyhow!("poisoned"))?;
                        if is_retry && !all_exist {
                            writeln!(
                                out,
                                "violation retry applied twice: {}",
                                encode_group(&group)
                            )?;
                        } else if !is_retry {
                            if let Some(TransferAction::Pending { .. }) =
                                group.transfers.first().map(|t| t.action)
                            {
                                holds.push(group.transfers[0].id);
                            }
                            writeln!(out, "ack {}", encode_group(&group))?;
                        } else {
                            writeln!(out, "retried")?;
                        }
                        out.flush()?;
                    }
                    // A retry of an acknowledged group must report what is stored, never be
                    // refused.
                    Err(WriteError::Rejected(error)) if is_retry => {
                        let mut out = out.lock().map_err(|_| anyhow!("poisoned"))?;
                        writeln!(
                            out,
                            "violation retry refused ({error}): {}",
                            encode_group(&group)
                        )?;
                        out.flush()?;
                    }
                    // Refusals (insufficient funds, expired holds) are part of the mix.
                    Err(WriteError::Rejected(_)) => {}
                    Err(error) => return Err(anyhow!(error)),
                }
            }
        }));
    }
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow!("a writer thread panicked"))??;
    }
    Ok(ExitCode::SUCCESS)
}
