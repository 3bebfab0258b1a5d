//! The rail's parsing and rules against real transactions: `tests/sandbox/fixtures.json` is the
//! output of `tests/sandbox/generate.mjs` (TON's own `@ton/sandbox`, wallets v4/v5, a TEP-74
//! jetton and a fake copy of it), run on `tests/sandbox/scenarios.json`. The test command
//! regenerates it and fails when it differs, so these are the sandbox's own bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use farthing_ton::body;
use farthing_ton::classify::{classify, Asset, Ignored, Payment, Seen, Watched};
use farthing_ton::toncenter::Transaction;
use farthing_ton::Address;
use serde_json::Value;

fn fixtures() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sandbox/fixtures.json");
    let text = std::fs::read_to_string(path).expect("fixtures.json");
    serde_json::from_str(&text).expect("fixtures JSON")
}

fn account(fixtures: &Value, role: &str) -> Address {
    let raw = fixtures["accounts"][role]["raw"].as_str().expect("role");
    Address::parse(raw).expect("address").address
}

/// The scenario's transaction on the account of `role` (its one transaction there with an
/// inbound internal message).
fn tx_of(fixtures: &Value, scenario: &str, role: &str) -> Transaction {
    let found: Vec<&Value> = fixtures["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .filter(|tx| tx["scenario"] == scenario && tx["role"] == role)
        .filter(|tx| !tx["in_msg"]["source"].is_null())
        .collect();
    assert_eq!(found.len(), 1, "{scenario}/{role}");
    serde_json::from_value(found[0].clone()).expect("toncenter shape")
}

#[test]
fn every_transaction_hash_is_the_hash_of_its_bag_of_cells() {
    let fixtures = fixtures();
    let transactions = fixtures["transactions"].as_array().expect("transactions");
    assert!(transactions.len() >= 30);
    for tx in transactions {
        let cell = body::parse_boc(tx["boc"].as_str().expect("boc")).expect("tx boc");
        let hash = STANDARD.encode(cell.cell_hash().as_slice());
        assert_eq!(hash, tx["hash"].as_str().expect("hash"));
        // And every message body hash is the body cell's.
        let messages =
            std::iter::once(&tx["in_msg"]).chain(tx["out_msgs"].as_array().expect("out").iter());
        for message in messages.filter(|m| !m.is_null()) {
            let content = &message["message_content"];
            let body = body::parse_boc(content["body"].as_str().expect("body")).expect("body boc");
            assert_eq!(
                STANDARD.encode(body.cell_hash().as_slice()),
                content["hash"].as_str().expect("body hash")
            );
        }
    }
}

#[test]
fn comments_are_written_as_the_sandbox_writes_them() {
    let fixtures = fixtures();
    for comment in fixtures["comments"].as_array().expect("comments") {
        let text = comment["text"].as_str().expect("text");
        let (boc, hash) = body::comment_payload(text).expect("ours");
        assert_eq!(hash, comment["body_hash"].as_str().expect("hash"), "{text}");
        let theirs = body::parse_boc(comment["body_boc"].as_str().expect("boc")).expect("boc");
        assert_eq!(body::read_comment(&theirs).as_deref(), Some(text));
        assert_eq!(
            body::parse_boc(&boc).expect("boc").cell_hash(),
            theirs.cell_hash()
        );
    }
}

#[test]
fn the_jetton_wallet_from_the_get_method_is_the_one_payments_reach() {
    let fixtures = fixtures();
    let merchant = account(&fixtures, "merchant");
    let master = account(&fixtures, "usdt_master");
    let answer = fixtures["get_wallet_address"]
        .as_array()
        .expect("answers")
        .iter()
        .find(|row| {
            row["master"] == master.raw().as_str() && row["owner"] == merchant.raw().as_str()
        })
        .expect("merchant's USDT wallet lookup");
    let slice = answer["response"]["stack"][0]["value"]
        .as_str()
        .expect("slice");
    let derived = body::read_address_slice(slice).expect("address");
    assert_eq!(derived, account(&fixtures, "merchant_usdt_wallet"));
    // The argument farthing sends has the shape the get-method reads back.
    let argument = body::address_slice_boc(&merchant).expect("argument");
    assert_eq!(body::read_address_slice(&argument).expect("read"), merchant);
}

fn payment(seen: Seen) -> Payment {
    match seen {
        Seen::Payment(payment) => payment,
        Seen::Ignored(ignored) => panic!("expected a payment, got {ignored:?}"),
        Seen::Sent(sent) => panic!("expected a payment, got a transfer sent: {sent:?}"),
    }
}

#[test]
fn ton_payments_count_when_credited_and_not_bounced() {
    let fixtures = fixtures();
    let payer = account(&fixtures, "payer");
    let own = [account(&fixtures, "merchant_usdt_wallet")];
    let paid = payment(classify(
        &tx_of(&fixtures, "ton_comment_merchant", "merchant"),
        Watched::Wallet,
        &own,
    ));
    assert_eq!(paid.asset, Asset::Ton);
    assert_eq!(paid.amount, 1_000_000_000);
    assert_eq!(paid.payer, Some(payer));
    assert_eq!(paid.comment.as_deref(), Some("fth-00000001"));
    // To a wallet not deployed yet: the transaction is aborted (no_state), the value credited.
    let undeployed = tx_of(&fixtures, "ton_comment_undeployed_nonbounce", "undeployed");
    assert!(undeployed.description.aborted);
    let paid = payment(classify(&undeployed, Watched::Wallet, &[]));
    assert_eq!(
        (paid.amount, paid.comment.as_deref()),
        (2_000_000_000, Some("fth-00000002"))
    );
    // Bounceable to a wallet not deployed: credited, then bounced back. Not a payment.
    let bounced = tx_of(&fixtures, "ton_comment_undeployed_bounce", "undeployed");
    assert_eq!(
        classify(&bounced, Watched::Wallet, &[]),
        Seen::Ignored(Ignored::BouncedToPayer)
    );
    // The bounce as the payer's wallet receives it is a bounce of its own message.
    let back = tx_of(&fixtures, "ton_comment_undeployed_bounce", "payer");
    assert_eq!(
        classify(&back, Watched::Wallet, &[]),
        Seen::Ignored(Ignored::BounceOfOurs)
    );
    let plain = payment(classify(
        &tx_of(&fixtures, "ton_no_comment", "merchant"),
        Watched::Wallet,
        &own,
    ));
    assert_eq!((plain.amount, plain.comment), (500_000_000, None));
    let other = payment(classify(
        &tx_of(&fixtures, "ton_payer2_comment", "merchant"),
        Watched::Wallet,
        &own,
    ));
    assert_eq!(other.payer, Some(account(&fixtures, "payer2")));
}

#[test]
fn usdt_counts_on_the_merchants_jetton_wallet_and_fakes_never() {
    let fixtures = fixtures();
    let master = account(&fixtures, "usdt_master");
    let jw = account(&fixtures, "merchant_usdt_wallet");
    let watched = Watched::JettonWallet { master };
    for (scenario, amount, comment, payer) in [
        (
            "usdt_comment_inline",
            1_500_000,
            Some("fth-00000005"),
            "payer",
        ),
        ("usdt_comment_ref", 2_500_000, Some("fth-00000006"), "payer"),
        (
            "usdt_forward_zero",
            3_500_000,
            Some("fth-00000007"),
            "payer",
        ),
        ("usdt_no_comment", 4_500_000, None, "payer2"),
    ] {
        let paid = payment(classify(
            &tx_of(&fixtures, scenario, "merchant_usdt_wallet"),
            watched,
            &[jw],
        ));
        assert_eq!(paid.asset, Asset::Jetton(master), "{scenario}");
        assert_eq!(paid.amount, amount, "{scenario}");
        assert_eq!(paid.comment.as_deref(), comment, "{scenario}");
        assert_eq!(paid.payer, Some(account(&fixtures, payer)), "{scenario}");
    }
    // The notification to the merchant's wallet (aborted: 1 nanoton pays no gas) settles nothing.
    let notified = tx_of(&fixtures, "usdt_comment_inline", "merchant");
    assert!(notified.description.aborted);
    assert_eq!(
        classify(&notified, Watched::Wallet, &[jw]),
        Seen::Ignored(Ignored::OwnNotification)
    );
    // A fake jetton's notification carries a real-looking comment; it is never a payment.
    let fake = tx_of(&fixtures, "fake_jetton_comment", "merchant");
    match classify(&fake, Watched::Wallet, &[jw]) {
        Seen::Ignored(Ignored::FakeJetton { from, comment }) => {
            assert_eq!(from, Some(account(&fixtures, "merchant_fake_wallet")));
            assert_eq!(comment.as_deref(), Some("fth-00000008"));
        }
        other => panic!("a fake jetton was read as {other:?}"),
    }
    // A `transfer` a jetton wallet processed is what its owner sent (on the merchant's own
    // jetton wallet: a refund), never income: here the payer's wallet paying the merchant.
    let outgoing = tx_of(&fixtures, "usdt_comment_inline", "payer_usdt_wallet");
    assert_eq!(
        classify(&outgoing, watched, &[jw]),
        Seen::Sent(vec![farthing_ton::classify::Sent {
            asset: farthing_ton::classify::Asset::Jetton(account(&fixtures, "usdt_master")),
            amount: 1_500_000,
            to: Some(account(&fixtures, "merchant")),
            comment: Some("fth-00000005".to_owned()),
        }])
    );
}
