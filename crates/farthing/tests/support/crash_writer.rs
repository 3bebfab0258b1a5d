//! The crash writer (`farthing internal crash-writer`) as the crash tests drive it: a child
//! process printing `ready`, then one `ack` line per durable write.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use std::collections::HashSet;

use farthing_core::TransferId;
use farthing_store::Ledger;

/// Starts a crash writer on `database` (a path or URL) and returns it with a channel of its
/// stdout lines.
pub fn spawn(
    database: &str,
    seed: u64,
    retry: &std::path::Path,
) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_farthing"))
        .args(["internal", "crash-writer", "--database", database])
        .args(["--seed", &seed.to_string(), "--retry"])
        .arg(retry)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    (child, receiver)
}

/// The transfers of an `ack` line: id, kind letter, amount if the line states it.
pub fn acked_transfers(line: &str) -> Vec<(TransferId, char, Option<u64>)> {
    let group = line.strip_prefix("ack ").expect("ack line");
    group
        .split(';')
        .map(|part| {
            let fields: Vec<&str> = part.split(',').collect();
            let kind = fields[0].chars().next().expect("kind");
            let id = TransferId(u128::from_str_radix(fields[1], 16).expect("hex id"));
            let amount = match kind {
                'S' | 'P' => Some(fields[4].parse().expect("amount")),
                'C' => fields[3].parse().ok(),
                _ => None,
            };
            (id, kind, amount)
        })
        .collect()
}

/// The `Debug` name of a transfer kind from its `ack` letter.
pub fn kind_name(letter: char) -> &'static str {
    match letter {
        'S' => "Single",
        'P' => "Pending",
        'C' => "PostPending",
        _ => "VoidPending",
    }
}

/// Checks that every transfer of the `ack` lines is stored with its kind and amount; returns
/// their ids.
pub fn assert_stored(ledger: &Ledger, acks: &[String]) -> HashSet<TransferId> {
    let mut seen = HashSet::new();
    for line in acks {
        for (id, kind, amount) in acked_transfers(line) {
            let stored = ledger
                .transfer(id)
                .expect("read")
                .unwrap_or_else(|| panic!("acknowledged {id} is missing ({line})"));
            assert_eq!(
                format!("{:?}", stored.record.kind),
                kind_name(kind),
                "{line}"
            );
            if let Some(amount) = amount {
                assert_eq!(stored.record.amount_minor, amount, "{line}");
            }
            seen.insert(id);
        }
    }
    seen
}
