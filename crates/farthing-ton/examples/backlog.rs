//! How fast the watcher reads a backlog: 100 000 transactions as toncenter v3 pages of 100
//! (real sandbox transactions from `tests/sandbox/fixtures.json`, repeated), each page parsed
//! from JSON and every transaction classified (bodies parsed from their bags of cells), as the
//! watcher does before it settles a page. Prints transactions per second (BENCHMARKS.md).
//!
//! `cargo run --release -p farthing-ton --example backlog [-- <transactions>]`

use std::time::Instant;

use farthing_ton::classify::{classify, Seen, Watched};
use farthing_ton::toncenter::TransactionsPage;
use farthing_ton::Address;
use serde_json::{json, Value};

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sandbox/fixtures.json");
    let fixtures: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixtures")).expect("json");
    let raw = |role: &str| {
        Address::parse(fixtures["accounts"][role]["raw"].as_str().expect("raw"))
            .expect("address")
            .address
    };
    let (merchant, jw, master) = (
        raw("merchant"),
        raw("merchant_usdt_wallet"),
        raw("usdt_master"),
    );
    // The merchant's and its jetton wallet's transactions: what the watcher reads.
    let mine: Vec<Value> = fixtures["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .filter(|tx| tx["role"] == "merchant" || tx["role"] == "merchant_usdt_wallet")
        .cloned()
        .collect();
    let pages: Vec<String> = (0..total.div_ceil(100))
        .map(|page| {
            let transactions: Vec<&Value> = (0..100)
                .map(|i| &mine[(page * 100 + i) % mine.len()])
                .collect();
            json!({"transactions": transactions, "address_book": {}}).to_string()
        })
        .collect();
    let bytes: usize = pages.iter().map(String::len).sum();
    let started = Instant::now();
    let (mut payments, mut ignored, mut read) = (0usize, 0usize, 0usize);
    for page in &pages {
        let page: TransactionsPage = serde_json::from_str(page).expect("page");
        for tx in &page.transactions {
            let account = Address::parse(&tx.account).expect("account").address;
            let watched = if account == merchant {
                Watched::Wallet
            } else {
                Watched::JettonWallet { master }
            };
            match classify(tx, watched, &[jw]) {
                Seen::Payment(_) => payments += 1,
                Seen::Ignored(_) | Seen::Sent(_) => ignored += 1,
            }
            read += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{read} transactions ({} pages, {:.1} MB of JSON) parsed and classified in {:.3} s: {:.0} transactions/s ({payments} payments, {ignored} not)",
        pages.len(),
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        read as f64 / elapsed.as_secs_f64()
    );
}
