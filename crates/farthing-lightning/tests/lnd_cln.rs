//! The LND (REST) and Core Lightning (clnrest) backends against doubles that replay the
//! documented JSON (see `doubles`).

mod doubles;

use std::time::Duration;

use farthing_lightning::backend::{BackendConfig, Description};
use farthing_lightning::cln::Cln;
use farthing_lightning::lnd::Lnd;
use farthing_lightning::{
    Backend, BackendError, CreateInvoice, InvoiceState, LightningBackend, PaymentHash,
    PaymentOutcome,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use doubles::{b64, hex, SPEC_BOLT11, SPEC_HASH};

/// An (invented) macaroon, hex, as `xxd -p -c 9999 admin.macaroon` prints one.
const MACAROON: &str = "0201036c6e6402f801030a1022c3d3b3a1e0d1c2b3a4958677869504e0a0962a1201c1d0";
/// An (invented) rune, base64url, as `createrune` prints one.
const RUNE: &str = "tU-RLjMiDpY2U0o3W1oFowar36RFGpWloPbW9-RuZdo9MyZtZXRob2Q9bGlzdGZ1bmRz";

const HASH_A: [u8; 32] = [0xa1; 32];
const HASH_B: [u8; 32] = [0xb2; 32];

fn memo_request() -> CreateInvoice {
    CreateInvoice {
        amount_msat: 21_000,
        description: Description::Memo("coffee".to_owned()),
        expiry_s: 600,
        label: "farthing:inv_1:1".to_owned(),
    }
}

const METADATA: &str =
    r#"[["text/plain","Pay to farthing"],["text/identifier","shop@example.com"]]"#;

fn hashed_request() -> CreateInvoice {
    CreateInvoice {
        amount_msat: 50_000,
        description: Description::Hashed(METADATA.to_owned()),
        expiry_s: 300,
        label: "farthing:inv_2:1".to_owned(),
    }
}

fn assert_no_secret(error: &BackendError, secret: &str, url: &str) {
    let text = format!("{error} {error:?}");
    assert!(!text.contains(secret), "secret in {text}");
    assert!(!text.contains(url), "url in {text}");
}

async fn lnd() -> (Lnd, std::sync::Arc<doubles::lnd::Node>) {
    let (url, node) = doubles::lnd::start(MACAROON).await;
    (Lnd::new(&url, MACAROON, None).expect("client"), node)
}

async fn cln() -> (Cln, std::sync::Arc<doubles::cln::Node>) {
    let (url, node) = doubles::cln::start(RUNE).await;
    (Cln::new(&url, RUNE, None).expect("client"), node)
}

// ---------------------------------------------------------------------------------------------
// LND
// ---------------------------------------------------------------------------------------------

fn lnd_added(node: &doubles::lnd::Node) {
    *node.added.lock().expect("lock") = json!({
        "r_hash": b64(&HASH_A),
        "payment_request": SPEC_BOLT11,
        "add_index": "7",
        "payment_addr": b64(&[0x11; 32])
    });
}

#[tokio::test]
async fn lnd_create_invoice_with_memo_sends_strings_and_reads_base64_hash() {
    let (lnd, node) = lnd().await;
    lnd_added(&node);
    let created = lnd.create_invoice(&memo_request()).await.expect("created");
    assert_eq!(created.payment_hash, PaymentHash(HASH_A));
    assert_eq!(created.bolt11, SPEC_BOLT11);

    let seen = node.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/invoices")
    );
    assert_eq!(seen.headers["grpc-metadata-macaroon"], MACAROON);
    assert_eq!(seen.body["value_msat"], "21000");
    assert_eq!(seen.body["expiry"], "600");
    assert_eq!(seen.body["memo"], "coffee");
    assert!(seen.body.get("description_hash").is_none());
    assert!(seen.body.get("value").is_none());
}

#[tokio::test]
async fn lnd_create_invoice_with_hashed_description_sends_base64_sha256() {
    let (lnd, node) = lnd().await;
    lnd_added(&node);
    let created = lnd
        .create_invoice(&hashed_request())
        .await
        .expect("created");
    assert_eq!(created.payment_hash, PaymentHash(HASH_A));

    let seen = node.last();
    assert_eq!(seen.body["value_msat"], "50000");
    assert_eq!(seen.body["expiry"], "300");
    assert_eq!(
        seen.body["description_hash"],
        b64(&Sha256::digest(METADATA.as_bytes()))
    );
    assert!(
        seen.body.get("memo").is_none(),
        "the memo would go into the invoice"
    );
}

#[tokio::test]
async fn lnd_create_invoice_rejects_a_short_r_hash() {
    let (lnd, node) = lnd().await;
    *node.added.lock().expect("lock") =
        json!({ "r_hash": b64(&[1, 2, 3]), "payment_request": SPEC_BOLT11, "add_index": "7" });
    let error = lnd
        .create_invoice(&memo_request())
        .await
        .expect_err("short hash");
    assert!(matches!(error, BackendError::Decode { .. }), "{error:?}");
}

#[tokio::test]
async fn lnd_invoice_state_open_settled_canceled_and_unknown() {
    let (lnd, node) = lnd().await;
    let open = [0x01; 32];
    let canceled = [0x03; 32];
    {
        let mut invoices = node.invoices.lock().expect("lock");
        invoices.insert(hex(&open), doubles::lnd::invoice(&open, "OPEN", 0, 0));
        invoices.insert(
            hex(&HASH_B),
            doubles::lnd::invoice(&HASH_B, "SETTLED", 21_500, 4),
        );
        invoices.insert(
            hex(&canceled),
            doubles::lnd::invoice(&canceled, "CANCELED", 0, 0),
        );
    }

    assert_eq!(
        lnd.invoice_state(&PaymentHash(open)).await.expect("open"),
        InvoiceState::Open
    );
    assert_eq!(node.last().path, format!("/v1/invoice/{}", hex(&open)));
    assert_eq!(
        lnd.invoice_state(&PaymentHash(HASH_B))
            .await
            .expect("settled"),
        InvoiceState::Settled {
            amount_received_msat: 21_500,
            settled_at_s: Some(1_700_000_100),
            preimage: Some("42".repeat(32)),
        }
    );
    assert_eq!(
        lnd.invoice_state(&PaymentHash(canceled))
            .await
            .expect("canceled"),
        InvoiceState::Canceled
    );
    let unknown = lnd
        .invoice_state(&PaymentHash([0x09; 32]))
        .await
        .expect_err("unknown");
    assert_eq!(unknown, BackendError::NotFound { backend: "lnd" });
}

#[tokio::test]
async fn lnd_invoice_state_refuses_an_answer_about_another_invoice() {
    let (lnd, node) = lnd().await;
    node.invoices.lock().expect("lock").insert(
        hex(&HASH_A),
        doubles::lnd::invoice(&HASH_B, "SETTLED", 1000, 1),
    );
    let error = lnd
        .invoice_state(&PaymentHash(HASH_A))
        .await
        .expect_err("mismatch");
    assert!(matches!(error, BackendError::Decode { .. }), "{error:?}");
}

#[tokio::test]
async fn lnd_pay_reads_in_flight_then_succeeded() {
    let (lnd, node) = lnd().await;
    let preimage = "5f".repeat(32);
    *node.pay_lines.lock().expect("lock") = vec![
        json!({ "result": doubles::lnd::payment(SPEC_HASH, "IN_FLIGHT", &"00".repeat(32), 0, "FAILURE_REASON_NONE") }),
        json!({ "result": doubles::lnd::payment(SPEC_HASH, "SUCCEEDED", &preimage, 1_250, "FAILURE_REASON_NONE") }),
    ];
    let outcome = lnd.pay_invoice(SPEC_BOLT11, 5_000).await.expect("paid");
    assert_eq!(
        outcome,
        PaymentOutcome::Succeeded {
            payment_hash: PaymentHash::from_hex(SPEC_HASH).expect("hash"),
            preimage: Some(preimage),
            fee_msat: 1_250,
        }
    );
    let seen = node.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v2/router/send")
    );
    assert_eq!(seen.body["payment_request"], SPEC_BOLT11);
    assert_eq!(seen.body["fee_limit_msat"], "5000");
    assert_eq!(seen.body["timeout_seconds"], 60);
}

#[tokio::test]
async fn lnd_pay_failed() {
    let (lnd, node) = lnd().await;
    *node.pay_lines.lock().expect("lock") = vec![
        json!({ "result": doubles::lnd::payment(SPEC_HASH, "IN_FLIGHT", &"00".repeat(32), 0, "FAILURE_REASON_NONE") }),
        json!({ "result": doubles::lnd::payment(SPEC_HASH, "FAILED", &"00".repeat(32), 0, "FAILURE_REASON_NO_ROUTE") }),
    ];
    let outcome = lnd.pay_invoice(SPEC_BOLT11, 5_000).await.expect("answer");
    assert_eq!(
        outcome,
        PaymentOutcome::Failed {
            reason: "FAILURE_REASON_NO_ROUTE".to_owned()
        }
    );
}

#[tokio::test]
async fn lnd_pay_stream_ending_in_flight_is_pending() {
    let (lnd, node) = lnd().await;
    let other = "ee".repeat(32);
    *node.pay_lines.lock().expect("lock") = vec![
        json!({ "result": doubles::lnd::payment(&other, "INITIATED", &"00".repeat(32), 0, "FAILURE_REASON_NONE") }),
        json!({ "result": doubles::lnd::payment(&other, "IN_FLIGHT", &"00".repeat(32), 0, "FAILURE_REASON_NONE") }),
    ];
    let outcome = lnd.pay_invoice(SPEC_BOLT11, 5_000).await.expect("answer");
    assert_eq!(
        outcome,
        PaymentOutcome::Pending {
            payment_hash: PaymentHash::from_hex(&other).expect("hash")
        }
    );
}

#[tokio::test]
async fn lnd_pay_stream_error_before_any_update_is_refused() {
    let (lnd, node) = lnd().await;
    *node.pay_lines.lock().expect("lock") = vec![json!({
        "error": { "code": 6, "message": "invoice is already paid", "details": [] }
    })];
    let error = lnd
        .pay_invoice(SPEC_BOLT11, 5_000)
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, BackendError::Rejected { status: 409, message, .. } if message.contains("already paid")),
        "{error:?}"
    );
}

#[tokio::test]
async fn lnd_pay_stream_ending_without_update_is_pending_on_the_bolt11_hash() {
    let (lnd, _node) = lnd().await;
    let outcome = lnd.pay_invoice(SPEC_BOLT11, 5_000).await.expect("answer");
    assert_eq!(
        outcome,
        PaymentOutcome::Pending {
            payment_hash: PaymentHash::from_hex(SPEC_HASH).expect("hash")
        }
    );
}

#[tokio::test]
async fn lnd_pay_reads_the_stream_chunk_by_chunk() {
    let in_flight = json!({ "result": doubles::lnd::payment(SPEC_HASH, "IN_FLIGHT", &"00".repeat(32), 0, "FAILURE_REASON_NONE") }).to_string();
    let succeeded = json!({ "result": doubles::lnd::payment(SPEC_HASH, "SUCCEEDED", &"ab".repeat(32), 3, "FAILURE_REASON_NONE") }).to_string();
    let (first, second) = succeeded.split_at(succeeded.len() / 2);
    let (url, head) = doubles::chunked::start(
        vec![
            (Duration::ZERO, format!("{in_flight}\n{first}").into_bytes()),
            (
                Duration::from_millis(150),
                format!("{second}\n").into_bytes(),
            ),
        ],
        true,
    )
    .await;
    let lnd = Lnd::new(&url, MACAROON, None).expect("client");
    let outcome = tokio::time::timeout(Duration::from_secs(10), lnd.pay_invoice(SPEC_BOLT11, 10))
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(
        outcome,
        PaymentOutcome::Succeeded {
            payment_hash: PaymentHash::from_hex(SPEC_HASH).expect("hash"),
            preimage: Some("ab".repeat(32)),
            fee_msat: 3,
        }
    );
    let head = head.lock().expect("lock").to_ascii_lowercase();
    assert!(head.starts_with("post /v2/router/send "), "{head}");
    assert!(
        head.contains(&format!("grpc-metadata-macaroon: {MACAROON}")),
        "{head}"
    );
}

#[tokio::test]
async fn lnd_balance_is_local_balance_msat() {
    let (lnd, node) = lnd().await;
    assert_eq!(lnd.balance_msat().await.expect("balance"), 1_509_503_210);
    let seen = node.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/v1/balance/channels")
    );
}

#[tokio::test]
async fn lnd_wrong_macaroon_is_unauthorized() {
    let (url, _node) = doubles::lnd::start(MACAROON).await;
    let wrong = "0201036c6e6402f80103ffff";
    let lnd = Lnd::new(&url, wrong, None).expect("client");
    let error = lnd.balance_msat().await.expect_err("refused");
    assert_eq!(
        error,
        BackendError::Unauthorized {
            backend: "lnd",
            status: 500
        }
    );
    assert!(!error.is_transient());
    assert_no_secret(&error, wrong, &url);
    let error = lnd
        .create_invoice(&memo_request())
        .await
        .expect_err("refused");
    assert!(
        matches!(error, BackendError::Unauthorized { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn lnd_node_down_is_unreachable_and_transient() {
    let url = doubles::refused_url();
    let lnd = Lnd::new(&url, MACAROON, None).expect("client");
    let error = lnd.balance_msat().await.expect_err("down");
    assert!(
        matches!(error, BackendError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_no_secret(&error, MACAROON, &url);
    // A payment that never left is not "pending".
    let error = lnd.pay_invoice(SPEC_BOLT11, 10).await.expect_err("down");
    assert!(
        matches!(error, BackendError::Unreachable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn lnd_follow_settlements_sends_settled_hashes_and_resumes_from_settle_index() {
    let (lnd, node) = lnd().await;
    *node.subscribe_lines.lock().expect("lock") = vec![
        json!({ "result": doubles::lnd::invoice(&HASH_A, "OPEN", 0, 0) }),
        json!({ "result": doubles::lnd::invoice(&HASH_B, "SETTLED", 21_000, 12) }),
    ];
    let (sender, mut receiver) = mpsc::channel(8);
    lnd.follow_settlements(sender.clone())
        .await
        .expect("stream ended");
    assert_eq!(receiver.try_recv().expect("a hash"), PaymentHash(HASH_B));
    assert!(receiver.try_recv().is_err(), "only settled invoices");
    let seen = node.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/v1/invoices/subscribe")
    );
    assert_eq!(seen.query, None);

    // A reconnect asks for what settled after index 12.
    node.subscribe_lines.lock().expect("lock").clear();
    lnd.follow_settlements(sender).await.expect("stream ended");
    assert_eq!(node.last().query.as_deref(), Some("settle_index=12"));
}

#[tokio::test]
async fn lnd_follow_settlements_reads_chunked_lines_until_the_receiver_goes() {
    let open = json!({ "result": doubles::lnd::invoice(&HASH_A, "OPEN", 0, 0) }).to_string();
    let settled =
        json!({ "result": doubles::lnd::invoice(&HASH_B, "SETTLED", 21_000, 3) }).to_string();
    let (first, second) = settled.split_at(100);
    let (url, head) = doubles::chunked::start(
        vec![
            (Duration::ZERO, format!("{open}\n").into_bytes()),
            (Duration::from_millis(100), first.as_bytes().to_vec()),
            (
                Duration::from_millis(100),
                format!("{second}\n").into_bytes(),
            ),
        ],
        true,
    )
    .await;
    let lnd = Lnd::new(&url, MACAROON, None).expect("client");
    let (sender, mut receiver) = mpsc::channel(8);
    let task = tokio::spawn(async move { lnd.follow_settlements(sender).await });
    let hash = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("in time")
        .expect("a hash");
    assert_eq!(hash, PaymentHash(HASH_B));
    // The stream stays open; closing the receiver ends the follower.
    drop(receiver);
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ends when the receiver goes")
        .expect("task");
    assert_eq!(ended, Ok(()));
    let head = head.lock().expect("lock").to_ascii_lowercase();
    assert!(head.starts_with("get /v1/invoices/subscribe "), "{head}");
}

#[tokio::test]
async fn lnd_configuration_is_checked() {
    let url = "https://127.0.0.1:8080";
    let not_hex = Lnd::new(url, "not-a-macaroon", None).expect_err("bad macaroon");
    assert!(
        matches!(not_hex, BackendError::Config { .. }),
        "{not_hex:?}"
    );
    assert_no_secret(&not_hex, "not-a-macaroon", url);
    let odd = Lnd::new(url, "abc", None).expect_err("odd length");
    assert!(matches!(odd, BackendError::Config { .. }), "{odd:?}");
    let pem = Lnd::new(url, MACAROON, Some("not a certificate")).expect_err("bad pem");
    assert!(matches!(pem, BackendError::Config { .. }), "{pem:?}");
    let bad_url = Lnd::new("ftp://node", MACAROON, None).expect_err("bad url");
    assert!(
        matches!(bad_url, BackendError::Config { .. }),
        "{bad_url:?}"
    );

    let lnd = Lnd::new(url, MACAROON, None).expect("client");
    assert!(!format!("{lnd:?}").contains(MACAROON));
    let backend = Backend::new(&BackendConfig::Lnd {
        url: url.to_owned(),
        macaroon: MACAROON.to_owned(),
        tls_cert: None,
    })
    .expect("backend");
    assert_eq!(backend.name(), "lnd");
    assert!(!format!("{backend:?}").contains(MACAROON));
}

// ---------------------------------------------------------------------------------------------
// Core Lightning
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cln_create_invoice_with_memo() {
    let (cln, node) = cln().await;
    let created = cln.create_invoice(&memo_request()).await.expect("created");
    assert_eq!(
        created.payment_hash.to_hex(),
        "9562ee18e942b0eb2e36050c108efcb34cb07e5cdbe28d08d26bb71af1556c2f"
    );
    assert_eq!(created.bolt11, SPEC_BOLT11);

    let seen = node.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/invoice")
    );
    assert_eq!(seen.headers["rune"], RUNE);
    assert_eq!(
        seen.body,
        json!({
            "amount_msat": 21000,
            "label": "farthing:inv_1:1",
            "description": "coffee",
            "expiry": 600
        })
    );
}

#[tokio::test]
async fn cln_create_invoice_with_hashed_description_sets_deschashonly() {
    let (cln, node) = cln().await;
    cln.create_invoice(&hashed_request())
        .await
        .expect("created");
    let seen = node.last();
    assert_eq!(
        seen.body,
        json!({
            "amount_msat": 50000,
            "label": "farthing:inv_2:1",
            "description": METADATA,
            "expiry": 300,
            "deschashonly": true
        })
    );
}

#[tokio::test]
async fn cln_invoice_state_unpaid_paid_expired_and_unknown() {
    let (cln, node) = cln().await;
    let unpaid = hex(&[0x01; 32]);
    let paid = hex(&HASH_B);
    let expired = hex(&[0x03; 32]);
    *node.invoices.lock().expect("lock") = vec![
        doubles::cln::invoice("a", &unpaid, "unpaid", None),
        doubles::cln::invoice("b", &paid, "paid", Some(4)),
        doubles::cln::invoice("c", &expired, "expired", None),
    ];
    assert_eq!(
        cln.invoice_state(&PaymentHash([0x01; 32]))
            .await
            .expect("unpaid"),
        InvoiceState::Open
    );
    let seen = node.last();
    assert_eq!(seen.path, "/v1/listinvoices");
    assert_eq!(seen.body, json!({ "payment_hash": unpaid }));
    assert_eq!(
        cln.invoice_state(&PaymentHash(HASH_B)).await.expect("paid"),
        InvoiceState::Settled {
            amount_received_msat: 400_000,
            settled_at_s: Some(1_738_000_000),
            preimage: Some(
                "08377744ca985c1908377744ca985c1908377744ca985c1908377744ca985c19".to_owned()
            ),
        }
    );
    assert_eq!(
        cln.invoice_state(&PaymentHash([0x03; 32]))
            .await
            .expect("expired"),
        InvoiceState::Canceled
    );
    assert_eq!(
        cln.invoice_state(&PaymentHash([0x09; 32]))
            .await
            .expect_err("unknown"),
        BackendError::NotFound { backend: "cln" }
    );
}

#[tokio::test]
async fn cln_pay_complete_computes_the_fee() {
    let (cln, node) = cln().await;
    *node.pay.lock().expect("lock") = Some((
        201,
        json!({
            "destination": "035d2b1192dfba134e10e540875d366ebc8bc353d5aa766b80c090b39c3a5d885d",
            "payment_hash": SPEC_HASH,
            "created_at": 1738000000,
            "parts": 1,
            "amount_msat": 250000000u64,
            "amount_sent_msat": 250001250u64,
            "payment_preimage": "5f".repeat(32),
            "status": "complete"
        }),
    ));
    let outcome = cln.pay_invoice(SPEC_BOLT11, 5_000).await.expect("paid");
    assert_eq!(
        outcome,
        PaymentOutcome::Succeeded {
            payment_hash: PaymentHash::from_hex(SPEC_HASH).expect("hash"),
            preimage: Some("5f".repeat(32)),
            fee_msat: 1_250,
        }
    );
    let seen = node.last();
    assert_eq!(seen.path, "/v1/pay");
    assert_eq!(seen.body["bolt11"], SPEC_BOLT11);
    assert_eq!(seen.body["maxfee"], 5000);
    assert_eq!(seen.body["retry_for"], 60);
}

#[tokio::test]
async fn cln_pay_failure_codes_are_failed_and_pending_is_pending() {
    let (cln, node) = cln().await;
    *node.pay.lock().expect("lock") = Some((
        500,
        json!({
            "code": 205,
            "message": "Ran out of routes to try after 3 attempts: see `paystatus`",
            "data": { "getroute_tries": 3, "sendpay_tries": 0, "failures": [] }
        }),
    ));
    let outcome = cln.pay_invoice(SPEC_BOLT11, 5_000).await.expect("answer");
    assert!(
        matches!(&outcome, PaymentOutcome::Failed { reason } if reason.starts_with("205:")),
        "{outcome:?}"
    );

    *node.pay.lock().expect("lock") = Some((
        201,
        json!({
            "payment_hash": SPEC_HASH,
            "created_at": 1738000000,
            "parts": 2,
            "amount_msat": 250000000u64,
            "amount_sent_msat": 250000000u64,
            "payment_preimage": "00".repeat(32),
            "warning_partial_completion": "Some parts of the payment are still pending",
            "status": "pending"
        }),
    ));
    assert_eq!(
        cln.pay_invoice(SPEC_BOLT11, 5_000).await.expect("answer"),
        PaymentOutcome::Pending {
            payment_hash: PaymentHash::from_hex(SPEC_HASH).expect("hash")
        }
    );

    *node.pay.lock().expect("lock") = Some((
        500,
        json!({ "code": -1, "message": "Invalid bolt11: Bad bech32 string" }),
    ));
    let error = cln
        .pay_invoice("lnbc1bogus", 5_000)
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, BackendError::Rejected { status: 500, message, .. } if message.starts_with("-1:")),
        "{error:?}"
    );
}

#[tokio::test]
async fn cln_balance_sums_normal_channels() {
    let (cln, node) = cln().await;
    assert_eq!(
        cln.balance_msat().await.expect("balance"),
        899_996_000 + 609_507_210
    );
    let seen = node.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/listfunds")
    );
    assert_eq!(seen.body, json!({}));
}

#[tokio::test]
async fn cln_wrong_rune_is_unauthorized() {
    let (url, _node) = doubles::cln::start(RUNE).await;
    let wrong = "AAAAbadrune-_=";
    let cln = Cln::new(&url, wrong, None).expect("client");
    let error = cln.balance_msat().await.expect_err("refused");
    assert_eq!(
        error,
        BackendError::Unauthorized {
            backend: "cln",
            status: 401
        }
    );
    assert!(!error.is_transient());
    assert_no_secret(&error, wrong, &url);
}

#[tokio::test]
async fn cln_node_down_is_unreachable_and_transient() {
    let url = doubles::refused_url();
    let cln = Cln::new(&url, RUNE, None).expect("client");
    let error = cln.balance_msat().await.expect_err("down");
    assert!(
        matches!(error, BackendError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_no_secret(&error, RUNE, &url);
    let error = cln.pay_invoice(SPEC_BOLT11, 10).await.expect_err("down");
    assert!(
        matches!(error, BackendError::Unreachable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn cln_follow_settlements_skips_history_and_sends_new_payments() {
    let (cln, node) = cln().await;
    *node.history.lock().expect("lock") = (1..=3)
        .map(|i| doubles::cln::invoice(&format!("old{i}"), &hex(&[i as u8; 32]), "paid", Some(i)))
        .collect();
    *node.fresh.lock().expect("lock") =
        Some(doubles::cln::invoice("new", &hex(&HASH_B), "paid", Some(4)));

    let (sender, mut receiver) = mpsc::channel(8);
    let follower = cln.clone();
    let task = tokio::spawn(async move { follower.follow_settlements(sender).await });
    let hash = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("in time")
        .expect("a hash");
    assert_eq!(hash, PaymentHash(HASH_B));
    drop(receiver);
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ends when the receiver goes")
        .expect("task");
    assert_eq!(ended, Ok(()));

    let polls = node.calls("waitanyinvoice");
    let long: Vec<_> = polls
        .iter()
        .filter(|seen| seen.body["timeout"] != 0)
        .map(|seen| seen.body["lastpay_index"].clone())
        .collect();
    // First long poll after the highest pay_index (3), then after the new one (4).
    assert_eq!(long, vec![json!(3), json!(4)]);
    assert!(polls.iter().all(|seen| seen.headers["rune"] == RUNE));
}

#[tokio::test]
async fn cln_follow_settlements_on_a_fresh_node_starts_at_zero() {
    let (cln, node) = cln().await;
    *node.fresh.lock().expect("lock") = Some(doubles::cln::invoice(
        "first",
        &hex(&HASH_A),
        "paid",
        Some(1),
    ));
    let (sender, mut receiver) = mpsc::channel(8);
    let task = tokio::spawn(async move { cln.follow_settlements(sender).await });
    let hash = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("in time")
        .expect("a hash");
    assert_eq!(hash, PaymentHash(HASH_A));
    drop(receiver);
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ends")
        .expect("task");
    assert_eq!(ended, Ok(()));
}

#[tokio::test]
async fn cln_configuration_is_checked() {
    let url = "https://127.0.0.1:3010";
    let empty = Cln::new(url, "", None).expect_err("empty rune");
    assert!(matches!(empty, BackendError::Config { .. }), "{empty:?}");
    let spaces = Cln::new(url, "not a rune", None).expect_err("bad rune");
    assert!(matches!(spaces, BackendError::Config { .. }), "{spaces:?}");
    assert_no_secret(&spaces, "not a rune", url);
    let pem = Cln::new(url, RUNE, Some("-----BEGIN CERTIFICATE-----\nnot base64\n"))
        .expect_err("bad pem");
    assert!(matches!(pem, BackendError::Config { .. }), "{pem:?}");

    let cln = Cln::new(url, RUNE, None).expect("client");
    assert!(!format!("{cln:?}").contains(RUNE));
    let backend = Backend::new(&BackendConfig::Cln {
        url: url.to_owned(),
        rune: RUNE.to_owned(),
        tls_cert: None,
    })
    .expect("backend");
    assert_eq!(backend.name(), "cln");
}
