//! The TON rail end to end (SPEC RL4, I3): invoices in TON and USDT paid by real transactions
//! that TON's own `@ton/sandbox` makes for the comments farthing hands out
//! (`crates/farthing-ton/tests/sandbox/generate.mjs`), served by a local indexer built to
//! toncenter v3's response shape; the watcher finds, classifies and settles them once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode as AxumStatus;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use farthing_app::Clock;
use farthing_server::state::Mode;
use farthing_ton::{body, Address};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::server::{self, Server};

/// The generator's directory (its node_modules are installed by the test command).
fn sandbox_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../farthing-ton/tests/sandbox")
}

/// Runs the sandbox generator on `spec` (`accounts` when `None`).
pub(crate) async fn sandbox(spec: Option<Value>) -> Value {
    let dir = sandbox_dir();
    assert!(
        dir.join("node_modules/@ton/sandbox").is_dir(),
        "the TON sandbox is not installed in {}: run ./scripts/test (it runs npm ci there)",
        dir.display()
    );
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut command = std::process::Command::new("node");
        command.current_dir(&dir).arg("generate.mjs");
        command.arg(if spec.is_some() { "run" } else { "accounts" });
        command.stdin(std::process::Stdio::piped());
        command.stdout(std::process::Stdio::piped());
        command.stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("node runs");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(spec) = spec {
            stdin.write_all(spec.to_string().as_bytes()).expect("spec");
        }
        drop(stdin);
        let output = child.wait_with_output().expect("generator");
        assert!(
            output.status.success(),
            "generate.mjs failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("generator JSON")
    })
    .await
    .expect("join")
}

/// A local indexer answering like toncenter v3 from the transactions it was given.
#[derive(Default)]
struct Indexer {
    transactions: Vec<Value>,
    /// Statuses to answer `/transactions` with before serving again (429, 500…).
    failures: VecDeque<u16>,
    /// Serve every transaction twice in a page (a duplicating indexer).
    duplicate: bool,
    /// `(master, owner, answer)` of `runGetMethod get_wallet_address`.
    wallet_answers: Vec<(String, String, Value)>,
    /// `(owner, master, wallet)` of `/jetton/wallets`.
    jetton_wallets: Vec<(String, String, String)>,
    /// Every `/transactions` request, with the status answered.
    requests: Vec<(Instant, u16)>,
}

type Shared = Arc<Mutex<Indexer>>;

async fn transactions(
    State(indexer): State<Shared>,
    Query(query): Query<Vec<(String, String)>>,
) -> axum::response::Response {
    let mut indexer = indexer.lock().expect("indexer");
    let now = Instant::now();
    if let Some(status) = indexer.failures.pop_front() {
        indexer.requests.push((now, status));
        let body = if status == 429 {
            json!({"ok": false, "result": "Ratelimit exceed", "code": 429})
        } else {
            json!({"error": "internal error"})
        };
        return (
            AxumStatus::from_u16(status).expect("status"),
            axum::Json(body),
        )
            .into_response();
    }
    indexer.requests.push((now, 200));
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.clone())
    };
    let account = Address::parse(&param("account").expect("account"))
        .expect("address")
        .address;
    let start_lt: u64 = param("start_lt").map_or(0, |v| v.parse().expect("lt"));
    let limit: usize = param("limit").map_or(10, |v| v.parse().expect("limit"));
    assert_eq!(param("sort").as_deref(), Some("asc"));
    let lt = |tx: &Value| tx["lt"].as_str().expect("lt").parse::<u64>().expect("lt");
    let mut page: Vec<Value> = indexer
        .transactions
        .iter()
        .filter(|tx| {
            Address::parse(tx["account"].as_str().expect("account"))
                .expect("a")
                .address
                == account
        })
        .filter(|tx| lt(tx) >= start_lt)
        .cloned()
        .collect();
    page.sort_by_key(lt);
    page.truncate(limit);
    if indexer.duplicate {
        page = page
            .into_iter()
            .flat_map(|tx| [tx.clone(), tx])
            .take(limit.max(1))
            .collect();
    }
    axum::Json(json!({"transactions": page, "address_book": {}})).into_response()
}

async fn run_get_method(
    State(indexer): State<Shared>,
    axum::Json(request): axum::Json<Value>,
) -> axum::response::Response {
    let indexer = indexer.lock().expect("indexer");
    assert_eq!(request["method"], "get_wallet_address");
    let master = Address::parse(request["address"].as_str().expect("address"))
        .expect("master")
        .address;
    let owner = body::read_address_slice(request["stack"][0]["value"].as_str().expect("slice"))
        .expect("owner");
    let answer = indexer
        .wallet_answers
        .iter()
        .find(|(m, o, _)| *m == master.raw() && *o == owner.raw())
        .map(|(_, _, answer)| answer.clone());
    match answer {
        Some(answer) => axum::Json(answer).into_response(),
        // A master the sandbox does not know: what a contract without the method answers.
        None => axum::Json(json!({"gas_used": 0, "exit_code": 11, "stack": []})).into_response(),
    }
}

async fn jetton_wallets(
    State(indexer): State<Shared>,
    Query(query): Query<Vec<(String, String)>>,
) -> axum::response::Response {
    let indexer = indexer.lock().expect("indexer");
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let found: Vec<Value> = indexer
        .jetton_wallets
        .iter()
        .filter(|(owner, master, _)| *owner == param("owner_address") && *master == param("jetton_address"))
        .map(|(owner, master, wallet)| json!({"address": wallet, "owner": owner, "jetton": master, "balance": "0"}))
        .collect();
    axum::Json(json!({"jetton_wallets": found})).into_response()
}

async fn start_indexer() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/api/v3/transactions", get(transactions))
        .route("/api/v3/runGetMethod", post(run_get_method))
        .route("/api/v3/jetton/wallets", get(jetton_wallets))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("indexer") });
    (format!("http://{addr}/api/v3"), shared)
}

struct Shop {
    server: Server,
    key: String,
    indexer: Shared,
    api_url: String,
    accounts: Value,
}

impl Shop {
    async fn open(clock: Clock) -> Shop {
        let server = server::spawn_with_clock(
            |config| {
                config.ton.allow_private_indexers = true;
                config.ton.poll_interval_ms = 20;
                config.ton.request_interval_ms = 5;
                config.ton.page_size = 3;
            },
            clock,
        )
        .await;
        let key = server.merchant("Ton shop").await.test_key;
        let (api_url, indexer) = start_indexer().await;
        let accounts = sandbox(None).await["accounts"].clone();
        {
            let raw = |role: &str| accounts[role]["raw"].as_str().expect("raw").to_owned();
            let mut indexer = indexer.lock().expect("indexer");
            indexer.jetton_wallets.push((
                raw("merchant"),
                raw("usdt_master"),
                raw("merchant_usdt_wallet"),
            ));
        }
        Shop {
            server,
            key,
            indexer,
            api_url,
            accounts,
        }
    }

    /// A shop whose merchant wallet (with USDT) is connected.
    async fn connected(clock: Clock) -> Shop {
        let shop = Shop::open(clock).await;
        let answers = sandbox(Some(json!({"scenarios": []}))).await["get_wallet_address"].clone();
        let (status, rail) = shop.connect("merchant", &answers).await;
        assert_eq!(status, StatusCode::OK, "{rail}");
        shop
    }

    fn raw(&self, role: &str) -> String {
        self.accounts[role]["raw"].as_str().expect("raw").to_owned()
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .server
            .client
            .request(method, format!("{}{path}", self.server.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    /// Connects the merchant's wallet (`role`) with USDT, after giving the indexer the
    /// sandbox's `get_wallet_address` answers.
    async fn connect(&self, role: &str, answers: &Value) -> (StatusCode, Value) {
        {
            let mut indexer = self.indexer.lock().expect("indexer");
            for answer in answers.as_array().expect("answers") {
                indexer.wallet_answers.push((
                    answer["master"].as_str().expect("master").to_owned(),
                    answer["owner"].as_str().expect("owner").to_owned(),
                    answer["response"].clone(),
                ));
            }
        }
        self.call(
            Method::PUT,
            "/v1/rails/ton",
            Some(json!({
                "address": self.accounts[role]["non_bounceable"],
                "network": "testnet",
                "api_url": self.api_url,
                "jettons": [{"symbol": "USDT", "master": self.accounts["usdt_master"]["bounceable"], "decimals": 6}],
            })),
        )
        .await
    }

    /// An invoice and the comment its TON instructions ask for.
    async fn invoice(&self, currency: &str, amount: u64, expires_in: u64) -> (String, Value) {
        let invoice = self
            .ok(
                Method::POST,
                "/v1/invoices",
                Some(json!({"currency": currency, "amount": amount, "rails": ["ton"], "expires_in": expires_in})),
            )
            .await;
        let id = invoice["id"].as_str().expect("id").to_owned();
        (id, invoice["payment_instructions"]["ton"].clone())
    }

    fn serve(&self, transactions: &Value) {
        let mut indexer = self.indexer.lock().expect("indexer");
        for tx in transactions.as_array().expect("transactions") {
            indexer.transactions.push(tx.clone());
        }
    }

    async fn wait_for<F: Fn(&Value) -> bool>(&self, path: &str, what: &str, done: F) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, answer) = self.call(Method::GET, path, None).await;
            if done(&answer) {
                return answer;
            }
            assert!(Instant::now() < deadline, "{path} never {what}: {answer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status_of(&self, invoice: &str) -> String {
        let (_, answer) = self
            .call(Method::GET, &format!("/v1/invoices/{invoice}"), None)
            .await;
        answer["status"].as_str().expect("status").to_owned()
    }

    /// The balance of the customer farthing keeps for the wallet `role`.
    async fn payer_balance(&self, role: &str, currency: &str) -> i64 {
        let external = format!("ton:{}", self.raw(role));
        let list = self
            .ok(
                Method::GET,
                &format!("/v1/customers?external_id={external}"),
                None,
            )
            .await;
        let Some(customer) = list["data"].as_array().expect("list").first() else {
            return 0;
        };
        customer["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|entry| entry["currency"] == currency)
            .map_or(0, |entry| entry["balance"].as_i64().expect("balance"))
    }

    async fn stop(self) {
        for mode in [Mode::Live, Mode::Test] {
            let report = self
                .server
                .running
                .state()
                .store(mode)
                .audit()
                .expect("audit runs");
            assert!(report.is_ok(), "{mode:?} ledger audit failed: {report}");
        }
        self.server.running.shutdown().await;
    }
}

pub(crate) fn ton(id: &str, from: &str, to: &str, amount: u64, comment: Option<&str>) -> Value {
    json!({"id": id, "kind": "ton", "from": from, "to": to, "amount": amount.to_string(), "comment": comment, "bounce": false})
}

fn usdt(
    id: &str,
    jetton: &str,
    from: &str,
    amount: u64,
    comment: Option<&str>,
    in_ref: bool,
    forward: &str,
) -> Value {
    json!({"id": id, "kind": "jetton", "jetton": jetton, "from": from, "to": "merchant", "amount": amount.to_string(),
           "comment": comment, "comment_in_ref": in_ref, "forward_ton_amount": forward})
}

const TON: u64 = 1_000_000_000;
const USDT: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ton_and_usdt_invoices_settle_from_sandbox_transactions_once() {
    let clock = Clock::manual();
    let shop = Shop::open(clock.clone()).await;
    // Connecting: the sandbox's answers derive the merchant's USDT wallet.
    let answers = sandbox(Some(json!({"scenarios": []}))).await["get_wallet_address"].clone();
    let (status, rail) = shop.connect("merchant", &answers).await;
    assert_eq!(status, StatusCode::OK, "{rail}");
    assert_eq!(
        rail["jettons"][0]["wallet"],
        shop.raw("merchant_usdt_wallet")
    );
    assert_eq!(rail["address"], shop.accounts["merchant"]["non_bounceable"]);
    assert!(rail.get("api_key").is_none());

    let (exact, instructions) = shop.invoice("TON", TON, 3600).await;
    let comment = |i: &Value| i["comment"].as_str().expect("comment").to_owned();
    let exact_ref = comment(&instructions);
    assert_eq!(instructions["amount_minor"], TON);
    assert!(instructions["link"]
        .as_str()
        .expect("link")
        .contains(&format!("text={exact_ref}")));
    let payload = instructions["ton_connect"]["messages"][0]["payload"]
        .as_str()
        .expect("payload");
    assert_eq!(
        body::read_comment(&body::parse_boc(payload).expect("boc")).as_deref(),
        Some(exact_ref.as_str())
    );
    assert!(
        instructions["ton_connect"]["valid_until"]
            .as_u64()
            .expect("valid_until")
            <= clock.now_ns() / 1_000_000_000 + 3600
    );
    let (short, i) = shop.invoice("TON", 2 * TON, 3600).await;
    let short_ref = comment(&i);
    let (long, i) = shop.invoice("TON", 4 * TON / 10, 3600).await;
    let long_ref = comment(&i);
    let (inline, i) = shop.invoice("USDT", 3 * USDT / 2, 3600).await;
    let inline_ref = comment(&i);
    assert!(i["link"].as_str().expect("link").contains("jetton="), "{i}");
    let (in_ref, i) = shop.invoice("USDT", 5 * USDT / 2, 3600).await;
    let in_ref_ref = comment(&i);
    let (no_note, i) = shop.invoice("USDT", 7 * USDT / 2, 3600).await;
    let no_note_ref = comment(&i);
    let (faked, i) = shop.invoice("USDT", 3 * USDT / 2, 3600).await;
    let faked_ref = comment(&i);
    let (late, i) = shop.invoice("TON", TON, 60).await;
    let late_ref = comment(&i);

    let spec = json!({"now": clock.now_ns() / 1_000_000_000, "scenarios": [
        ton("exact", "payer", "merchant", TON, Some(&exact_ref)),
        // Short, then topped up by a second payment before expiry; the payer wrote it in lower
        // case with spaces around.
        ton("short_1", "payer", "merchant", 3 * TON / 2, Some(&short_ref)),
        ton("short_2", "payer", "merchant", TON / 2, Some(&format!("  {}  ", short_ref.to_lowercase()))),
        ton("long", "payer2", "merchant", 3 * TON / 2, Some(&long_ref)),
        usdt("inline", "usdt", "payer", 3 * USDT / 2, Some(&inline_ref), false, "1"),
        usdt("in_ref", "usdt", "payer", 5 * USDT / 2, Some(&in_ref_ref), true, "1"),
        usdt("no_notification", "usdt", "payer", 7 * USDT / 2, Some(&no_note_ref), false, "0"),
        usdt("fake", "fake", "payer", 3 * USDT / 2, Some(&faked_ref), false, "1"),
        ton("forgot_comment", "payer", "merchant", TON / 2, None),
        ton("late", "payer2", "merchant", TON, Some(&late_ref)),
    ]});
    let made = sandbox(Some(spec)).await;
    let all = made["transactions"]
        .as_array()
        .expect("transactions")
        .clone();
    let (late_txs, first): (Vec<Value>, Vec<Value>) =
        all.into_iter().partition(|tx| tx["scenario"] == "late");
    // The indexer first fails (rate limit, then a server error), then serves every page twice.
    {
        let mut indexer = shop.indexer.lock().expect("indexer");
        indexer.requests.clear();
        indexer.failures.extend([429, 429, 502, 500]);
        indexer.duplicate = true;
    }
    shop.serve(&Value::Array(first));
    for (invoice, status) in [
        (&exact, "paid"),
        (&short, "paid"),
        (&long, "paid"),
        (&inline, "paid"),
        (&in_ref, "paid"),
        (&no_note, "paid"),
    ] {
        shop.wait_for(&format!("/v1/invoices/{invoice}"), status, |i| {
            i["status"] == status
        })
        .await;
    }
    // Everything up to the last transaction read: the fake jetton's invoice stays open.
    let merchant_raw = shop.raw("merchant");
    shop.wait_for("/v1/rails", "caught up", |rails| {
        rails["data"].as_array().is_some_and(|rails| {
            rails.iter().any(|rail| {
                rail["rail"] == "ton"
                    && rail["watcher"]["accounts"][&merchant_raw]["last_lt"].is_string()
                    && rail["health"] == "healthy"
            })
        })
    })
    .await;
    assert_eq!(shop.status_of(&faked).await, "open");
    // The fake jetton's USDT never reached anyone's balance.
    assert_eq!(shop.payer_balance("payer", "USDT").await, 0);
    // Short: 1.5 then 0.5 TON, all of it paid the invoice; the forgotten comment's 0.5 TON is
    // on the payer's balance. Long: 1.5 TON for 0.4, the 1.1 surplus on payer2's.
    assert_eq!(shop.payer_balance("payer", "TON").await, (TON / 2) as i64);
    assert_eq!(
        shop.payer_balance("payer2", "TON").await,
        (11 * TON / 10) as i64
    );

    // The indexer was asked again after each failure, and the failures were waited out.
    {
        let indexer = shop.indexer.lock().expect("indexer");
        let statuses: Vec<u16> = indexer.requests.iter().map(|(_, s)| *s).collect();
        assert_eq!(&statuses[..4], &[429, 429, 502, 500]);
        let waited = indexer.requests[4].0 - indexer.requests[0].0;
        assert!(
            waited >= Duration::from_millis(5 * (2 + 4 + 8)),
            "backed off only {waited:?}"
        );
    }

    // The forgotten comment is the one unmatched payment; the fake jetton is listed, ignored.
    let unmatched = shop
        .ok(
            Method::GET,
            "/v1/rails/ton/payments?outcome=unmatched",
            None,
        )
        .await;
    let unmatched = unmatched["data"].as_array().expect("list").clone();
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert_eq!(unmatched[0]["amount"], TON / 2);
    assert_eq!(unmatched[0]["payer"], shop.raw("payer"));
    let ignored = shop
        .ok(
            Method::GET,
            "/v1/rails/ton/payments?outcome=ignored&limit=100",
            None,
        )
        .await;
    assert!(
        ignored["data"]
            .as_array()
            .expect("list")
            .iter()
            .any(|p| p["reason"] == "fake_jetton" && p["comment"] == faked_ref.as_str()),
        "{ignored}"
    );
    // "I forgot the comment": assigned to the invoice it was meant for, in one call.
    let (forgotten, _) = shop.invoice("TON", TON / 2, 3600).await;
    let payment = unmatched[0]["id"].as_str().expect("id");
    let assigned = shop
        .ok(
            Method::POST,
            &format!("/v1/rails/ton/payments/{payment}/assign"),
            Some(json!({"invoice": forgotten})),
        )
        .await;
    assert_eq!(assigned["outcome"], "assigned");
    assert_eq!(assigned["paid_invoice"]["status"], "paid", "{assigned}");
    assert_eq!(shop.status_of(&forgotten).await, "paid");
    assert_eq!(shop.payer_balance("payer", "TON").await, 0);
    // Once only.
    let (again, _) = shop.invoice("TON", TON / 2, 3600).await;
    let (status, answer) = shop
        .call(
            Method::POST,
            &format!("/v1/rails/ton/payments/{payment}/assign"),
            Some(json!({"invoice": again})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "ton_payment_not_unmatched");
    assert_eq!(shop.status_of(&again).await, "open");

    // Late: the invoice expired before the payment arrived; the money is the payer's.
    clock.advance(Duration::from_secs(120));
    shop.serve(&Value::Array(late_txs));
    let deadline = Instant::now() + Duration::from_secs(30);
    while shop.payer_balance("payer2", "TON").await != (21 * TON / 10) as i64 {
        assert!(
            Instant::now() < deadline,
            "the late payment was never credited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(shop.status_of(&late).await, "paid");

    // Each transaction is recorded once: serving them all again changes nothing.
    {
        let mut indexer = shop.indexer.lock().expect("indexer");
        let again = indexer.transactions.clone();
        indexer.transactions.extend(again);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shop.payer_balance("payer", "TON").await, 0);
    assert_eq!(
        shop.payer_balance("payer2", "TON").await,
        (21 * TON / 10) as i64
    );

    // farthing sends no TON: a refund through the rail is prepared for the merchant to send
    // (refunds_are_prepared_for_the_merchant_and_booked_when_they_leave_the_wallet); given
    // up here, the payer's balance takes it instead (the payer is a customer from the first
    // payment on).
    let (status, pending) = shop
        .call(
            Method::POST,
            "/v1/refunds",
            Some(json!({"invoice": exact, "destination": "rail"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pending}");
    assert_eq!(pending["status"], "pending");
    let id = pending["id"].as_str().expect("id");
    shop.ok(Method::POST, &format!("/v1/refunds/{id}/cancel"), None)
        .await;
    let (status, refund) = shop
        .call(Method::POST, "/v1/refunds", Some(json!({"invoice": exact})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{refund}");
    assert_eq!(shop.payer_balance("payer", "TON").await, TON as i64);
    assert_eq!(shop.status_of(&exact).await, "refunded");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_wallet_configurations_are_refused_with_what_to_fix() {
    let shop = Shop::open(Clock::system()).await;
    let put = |body: Value| shop.call(Method::PUT, "/v1/rails/ton", Some(body));
    // A typo in the address: the checksum catches it.
    let good = shop.accounts["merchant"]["non_bounceable"]
        .as_str()
        .expect("address")
        .to_owned();
    let mut typo = good.clone().into_bytes();
    typo[10] = if typo[10] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).expect("ascii");
    let (status, answer) =
        put(json!({"address": typo, "network": "testnet", "api_url": shop.api_url, "jettons": []}))
            .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_ton_address")),
        "{answer}"
    );
    // A testnet-only address on mainnet.
    let (status, answer) =
        put(json!({"address": good, "network": "mainnet", "api_url": shop.api_url, "jettons": []}))
            .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ton_wrong_network")),
        "{answer}"
    );
    // A master whose get-method the chain does not answer.
    let (status, answer) = put(json!({"address": good, "network": "testnet", "api_url": shop.api_url,
        "jettons": [{"symbol": "USDT", "master": shop.accounts["fake_master"]["raw"], "decimals": 6}]})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ton_jetton_unverified")),
        "{answer}"
    );
    // Decimals that are not USDT's.
    let (status, answer) = put(json!({"address": good, "network": "testnet", "api_url": shop.api_url,
        "jettons": [{"symbol": "USDT", "master": shop.accounts["usdt_master"]["raw"], "decimals": 9}]})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ton_jetton_unsupported")),
        "{answer}"
    );
    // An indexer that is down.
    shop.indexer.lock().expect("indexer").failures.extend([503]);
    let (status, answer) =
        put(json!({"address": good, "network": "testnet", "api_url": shop.api_url, "jettons": []}))
            .await;
    assert_eq!(
        (status.as_u16(), answer["error"]["code"].as_str()),
        (502, Some("ton_indexer_unavailable")),
        "{answer}"
    );
    // Nothing was stored by any of them.
    let rails = shop.ok(Method::GET, "/v1/rails", None).await;
    assert!(
        !rails["data"]
            .as_array()
            .expect("list")
            .iter()
            .any(|rail| rail["rail"] == "ton"),
        "{rails}"
    );
    // A wallet another merchant has is refused.
    let (status, answer) =
        put(json!({"address": good, "network": "testnet", "api_url": shop.api_url, "jettons": []}))
            .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let other = shop.server.merchant("Other").await.test_key;
    let response = shop
        .server
        .client
        .put(format!("{}/v1/rails/ton", shop.server.base))
        .bearer_auth(&other)
        .json(&json!({"address": shop.raw("merchant"), "network": "testnet", "api_url": shop.api_url, "jettons": []}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["error"]["code"], "ton_wallet_taken");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_to_an_undeployed_wallet_is_credited_and_a_bounced_one_is_not() {
    let shop = Shop::open(Clock::system()).await;
    let mut bounced = ton(
        "bounced",
        "payer",
        "undeployed",
        3 * TON,
        Some("no such invoice"),
    );
    bounced["bounce"] = json!(true);
    let credited = ton(
        "credited",
        "payer",
        "undeployed",
        2 * TON,
        Some("no such invoice"),
    );
    let made = sandbox(Some(json!({ "scenarios": [credited, bounced] }))).await;
    let (status, answer) = shop
        .call(
            Method::PUT,
            "/v1/rails/ton",
            Some(json!({"address": shop.accounts["undeployed"]["raw"], "network": "testnet", "api_url": shop.api_url, "jettons": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let aborted: Vec<bool> = made["transactions"]
        .as_array()
        .expect("txs")
        .iter()
        .filter(|tx| tx["role"] == "undeployed")
        .map(|tx| tx["description"]["aborted"].as_bool().expect("aborted"))
        .collect();
    assert_eq!(aborted, [true, true], "both arrive aborted (no_state)");
    shop.serve(&made["transactions"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while shop.payer_balance("payer", "TON").await != (2 * TON) as i64 {
        assert!(
            Instant::now() < deadline,
            "the aborted-but-credited payment was never credited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The bounced 3 TON went back to the payer on chain: nothing more is credited.
    assert_eq!(shop.payer_balance("payer", "TON").await, (2 * TON) as i64);
    // The payment named no invoice: the merchant moves it to the customer it belongs to.
    let customer = shop
        .ok(
            Method::POST,
            "/v1/customers",
            Some(json!({"external_id": "alice"})),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let list = shop
        .ok(
            Method::GET,
            "/v1/rails/ton/payments?outcome=unmatched",
            None,
        )
        .await;
    let payment = list["data"][0]["id"].as_str().expect("id").to_owned();
    let (status, answer) = shop
        .call(
            Method::POST,
            &format!("/v1/rails/ton/payments/{payment}/assign"),
            Some(json!({"invoice": "inv_01m8y8zm72bmf9870nbspnmd4n", "customer": customer})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_parameter"))
    );
    let assigned = shop
        .ok(
            Method::POST,
            &format!("/v1/rails/ton/payments/{payment}/assign"),
            Some(json!({"customer": customer})),
        )
        .await;
    assert_eq!(assigned["customer"], customer.as_str());
    assert_eq!(shop.payer_balance("payer", "TON").await, 0);
    let alice = shop
        .ok(Method::GET, &format!("/v1/customers/{customer}"), None)
        .await;
    assert_eq!(alice["balances"][0]["balance"], 2 * TON, "{alice}");
    let ignored = shop
        .ok(Method::GET, "/v1/rails/ton/payments?outcome=ignored", None)
        .await;
    assert_eq!(
        ignored["data"][0]["reason"], "bounced_to_payer",
        "{ignored}"
    );
    let (status, _) = shop
        .call(Method::GET, "/v1/rails/ton/payments?outcome=lost", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    shop.stop().await;
}

/// The checkout page's "Pay with wallet" in a real browser: TON Connect's UI library served by
/// farthing itself, a wallet built to TON Connect's JS bridge asked to sign exactly the rail's
/// request, and the page switching to paid once the payment — made in the sandbox with the
/// request's own comment — reaches the indexer. The manifest the wallet reads, the icon and
/// the page's Content-Security-Policy (a nonce for the one style element the library writes)
/// are checked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkout_page_pays_through_ton_connect() {
    crate::checkout_browser::require_browser();
    let shop = Shop::connected(Clock::system()).await;
    let (id, instructions) = shop.invoice("TON", 3 * TON / 2, 900).await;
    let base = &shop.server.base;

    // The manifest: the shop's name, farthing's URL and icon, readable from any origin.
    let response = shop
        .server
        .client
        .get(format!("{base}/pay/{id}/tonconnect-manifest.json"))
        .send()
        .await
        .expect("manifest");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let manifest: Value = response.json().await.expect("json");
    assert_eq!(manifest["name"], "Ton shop");
    assert_eq!(manifest["url"], base.as_str());
    let icon = shop
        .server
        .client
        .get(manifest["iconUrl"].as_str().expect("iconUrl"))
        .send()
        .await
        .expect("icon");
    assert_eq!(icon.status(), StatusCode::OK);
    assert_eq!(icon.headers()["content-type"], "image/png");
    let (status, _) = shop
        .call(
            Method::GET,
            "/pay/inv_01m8y8zm72bmf9870nbspnmd4n/tonconnect-manifest.json",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The page allows inline style only in the element that carries this answer's nonce.
    let page = shop
        .server
        .client
        .get(format!("{base}/pay/{id}"))
        .send()
        .await
        .expect("page");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    let html = page.text().await.expect("html");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a style nonce");
    assert_eq!(nonce.len(), 32, "{csp}");
    assert!(html.contains(&format!("<style id=_goober nonce=\"{nonce}\"> </style>")));
    assert!(csp.contains("script-src 'self'"), "{csp}");

    let payer = shop.raw("payer");
    let wallet =
        WalletRun::start(&format!("{base}/pay/{id}"), &payer, "checkout-ton-connect").await;
    let request = &wallet.request;
    // Exactly the rail's request, from the connected wallet.
    let wanted = &instructions["ton_connect"];
    assert_eq!(request["valid_until"], wanted["valid_until"], "{request}");
    assert_eq!(request["network"], "-3");
    assert_eq!(request["from"], payer.as_str());
    let message = request["messages"][0].clone();
    assert_eq!(request["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(message["address"], instructions["address"]);
    assert_eq!(message["amount"], (3 * TON / 2).to_string());
    let comment = body::read_comment(
        &body::parse_boc(message["payload"].as_str().expect("payload")).expect("boc"),
    )
    .expect("a comment");
    assert_eq!(comment, instructions["comment"].as_str().expect("comment"));

    // The wallet sends exactly that message: mined in the sandbox, served by the indexer.
    let made = sandbox(Some(json!({"scenarios": [
        {"id": "connect", "kind": "message", "from": "payer", "message": message},
    ]})))
    .await;
    shop.serve(&made["transactions"]);
    wallet.finish().await;
    assert_eq!(shop.status_of(&id).await, "paid");
    shop.stop().await;
}

/// A browser run of `ton.mjs` on a checkout page whose wallet was asked to sign `request`.
struct WalletRun {
    request: Value,
    child: std::process::Child,
    rest: std::io::BufReader<std::process::ChildStdout>,
}

impl WalletRun {
    /// Opens `url` with a wallet holding `payer`, clicks "Pay with wallet", and waits until the
    /// wallet is asked to sign (screenshots named after `shot`).
    async fn start(url: &str, payer: &str, shot: &str) -> WalletRun {
        use std::io::BufRead;
        let shot = crate::checkout_browser::artifact(shot)
            .display()
            .to_string();
        let mut child = crate::checkout_browser::node_script("ton.mjs", &[url, payer, "-3", &shot]);
        let stdout = child.stdout.take().expect("stdout");
        let asked = tokio::task::spawn_blocking(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut seen = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return (None, seen, reader);
                }
                if let Some(request) = line.trim().strip_prefix("REQUEST ") {
                    return (Some(request.to_owned()), seen, reader);
                }
                seen.push(line);
            }
        });
        let (request, seen, rest) = tokio::time::timeout(Duration::from_secs(60), asked)
            .await
            .expect("the wallet was never asked to sign")
            .expect("join");
        let request = request.unwrap_or_else(|| panic!("the browser run ended: {seen:?}"));
        WalletRun {
            request: serde_json::from_str(&request).expect("the request is JSON"),
            child,
            rest,
        }
    }

    /// Waits until the page shows paid by itself; fails with what the browser run printed.
    async fn finish(mut self) {
        let finished = tokio::task::spawn_blocking(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut self.rest, &mut rest);
            (
                self.child.wait().map(|s| s.success()).unwrap_or(false),
                rest,
            )
        });
        let (ok, rest) = tokio::time::timeout(Duration::from_secs(90), finished)
            .await
            .expect("the page never showed paid")
            .expect("join");
        assert!(ok, "browser run failed: {rest}");
    }
}

/// A USDT invoice through TON Connect: once the payer's wallet is connected, the page asks
/// farthing for the request (`POST /pay/{id}/ton-connect`), which names the payer's own USDT
/// wallet by the master's `get_wallet_address` (through the indexer) and carries a TEP-74
/// `transfer` to the merchant with the invoice's reference. The payer's wallet signs exactly
/// that in the sandbox — the real jetton code must accept farthing's body — and the invoice
/// is paid. Bad requests to the endpoint are refused with what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkout_page_pays_usdt_through_ton_connect() {
    crate::checkout_browser::require_browser();
    let shop = Shop::connected(Clock::system()).await;
    // What the chain answers for the payer's USDT wallet (the sandbox derived it by the same
    // get-method): the indexer passes it on.
    {
        let slice = body::address_slice_boc(
            &Address::parse(&shop.raw("payer_usdt_wallet"))
                .expect("jw")
                .address,
        )
        .expect("slice");
        let mut indexer = shop.indexer.lock().expect("indexer");
        indexer.wallet_answers.push((
            shop.raw("usdt_master"),
            shop.raw("payer"),
            json!({"gas_used": 5000, "exit_code": 0, "stack": [{"type": "slice", "value": slice}]}),
        ));
    }
    let (id, instructions) = shop.invoice("USDT", 5 * USDT / 2, 900).await;
    assert_eq!(instructions["ton_connect"], Value::Null);
    let base = shop.server.base.clone();
    let payer = shop.raw("payer");
    let wallet =
        WalletRun::start(&format!("{base}/pay/{id}"), &payer, "checkout-usdt-connect").await;
    let request = &wallet.request;
    assert_eq!(request["network"], "-3");
    assert_eq!(request["from"], payer.as_str());
    let message = request["messages"][0].clone();
    assert_eq!(
        Address::parse(message["address"].as_str().expect("address"))
            .expect("address")
            .address
            .raw(),
        shop.raw("payer_usdt_wallet")
    );
    let transfer = body::read_jetton_transfer(
        &body::parse_boc(message["payload"].as_str().expect("payload")).expect("boc"),
    )
    .expect("reads")
    .expect("a transfer");
    assert_eq!(transfer.amount, u128::from(5 * USDT / 2));
    assert_eq!(
        transfer.destination.map(|a| a.raw()),
        Some(shop.raw("merchant"))
    );
    assert_eq!(
        transfer.response_destination.map(|a| a.raw()),
        Some(payer.clone())
    );
    assert_eq!(
        transfer.comment.as_deref(),
        instructions["comment"].as_str()
    );
    let made = sandbox(Some(json!({"scenarios": [
        {"id": "connect_usdt", "kind": "message", "from": "payer", "message": message},
    ]})))
    .await;
    shop.serve(&made["transactions"]);
    wallet.finish().await;
    assert_eq!(shop.status_of(&id).await, "paid");
    // The endpoint refuses what it cannot serve, saying why.
    let post = |path: String, body: Value| {
        let client = shop.server.client.clone();
        let url = format!("{base}{path}");
        async move {
            let response = client.post(url).json(&body).send().await.expect("answer");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, answer) = post(
        format!("/pay/{id}/ton-connect"),
        json!({"payer": "nonsense"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_address");
    let (status, answer) = post(format!("/pay/{id}/ton-connect"), json!({"payer": payer})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a paid invoice: {answer}");
    assert_eq!(answer["error"]["code"], "ton_connect_unavailable");
    let (ton_invoice, _) = shop.invoice("TON", TON, 900).await;
    let (status, answer) = post(
        format!("/pay/{ton_invoice}/ton-connect"),
        json!({"payer": payer}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a TON invoice: {answer}");
    shop.stop().await;
}

/// A TON invoice as the merchant bot's Mini App in Telegram's Android client: "TON wallet" is
/// the Mini App's method, and Pay opens the buyer's wallet — Telegram's own through the
/// client (`web_app_open_tg_link` with TON Connect's request), or a wallet app through its
/// universal link, which returns the buyer to Telegram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mini_app_opens_the_buyers_wallet_through_telegram() {
    use crate::checkout_browser::{artifact, node_script, require_browser};
    use crate::support::init_data;

    require_browser();
    let shop = Shop::connected(Clock::system()).await;
    let double = telegram_double::TelegramDouble::spawn()
        .await
        .expect("double");
    shop.ok(
        Method::PUT,
        "/v1/rails/stars",
        Some(json!({"bot_token": double.token(), "api_url": double.base_url(), "mode": "webhook"})),
    )
    .await;
    let (id, _) = shop.invoice("TON", TON, 900).await;
    let init = init_data::signed(
        &init_data::fields(&init_data::user(4242, "Ada", "en"), init_data::now_s()),
        double.token(),
    );
    let url = format!("{}/pay/{id}", shop.server.base);
    let shot = artifact("mini-app-ton-connect").display().to_string();
    let child = node_script("ton.mjs", &[&url, &shop.raw("payer"), "-3", &shot, &init]);
    let finished = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = tokio::time::timeout(Duration::from_secs(90), finished)
        .await
        .expect("the browser run did not end")
        .expect("join")
        .expect("output");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "browser run failed: {printed}");
    assert!(printed.contains("OPENED /wallet/start"), "{printed}");
    assert!(
        printed.contains("OPENED https://app.tonkeeper.com/ton-connect"),
        "{printed}"
    );
    // Nothing was paid: the wallet was only opened.
    assert_eq!(shop.status_of(&id).await, "open");
    shop.stop().await;
}

/// Refunds through the TON rail: farthing holds no key, so a refund is prepared — a transfer
/// from the merchant's wallet to the payer with a comment of its own, as a `ton://` link and a
/// TON Connect request — and stays pending, its amount held, until the watcher sees it leave
/// the wallet. The transfers here are the very TON Connect messages farthing prepared, signed
/// by the merchant's wallet in the sandbox: TON from the wallet, USDT as a `transfer` to the
/// merchant's own jetton wallet (whose real TEP-74 code must accept farthing's body); two TON
/// refunds in one external message. A transfer with a refund's comment but another amount is
/// not booked; a pending refund can be canceled (its hold released), and another refund of
/// the invoice waits until then; a transfer signed before the cancel that shows up after it is
/// booked all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_prepared_for_the_merchant_and_booked_when_they_leave_the_wallet() {
    let shop = Shop::connected(Clock::manual()).await;
    let (ton_invoice, i) = shop.invoice("TON", TON, 3600).await;
    let ton_ref = i["comment"].as_str().expect("comment").to_owned();
    let (usdt_invoice, i) = shop.invoice("USDT", 2 * USDT, 3600).await;
    let usdt_ref = i["comment"].as_str().expect("comment").to_owned();
    let (kept_invoice, i) = shop.invoice("TON", 3 * TON, 3600).await;
    let kept_ref = i["comment"].as_str().expect("comment").to_owned();
    let (second_invoice, i) = shop.invoice("TON", TON / 2, 3600).await;
    let second_ref = i["comment"].as_str().expect("comment").to_owned();
    let payments = vec![
        ton("pay_ton", "payer", "merchant", TON, Some(&ton_ref)),
        usdt(
            "pay_usdt",
            "usdt",
            "payer",
            2 * USDT,
            Some(&usdt_ref),
            false,
            "1",
        ),
        ton("pay_kept", "payer2", "merchant", 3 * TON, Some(&kept_ref)),
        ton(
            "pay_second",
            "payer",
            "merchant",
            TON / 2,
            Some(&second_ref),
        ),
    ];
    let made = sandbox(Some(json!({ "scenarios": payments }))).await;
    shop.serve(&made["transactions"]);
    for invoice in [&ton_invoice, &usdt_invoice, &kept_invoice, &second_invoice] {
        shop.wait_for(&format!("/v1/invoices/{invoice}"), "paid", |i| {
            i["status"] == "paid"
        })
        .await;
    }
    let available = |balance: &Value, currency: &str| {
        balance["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .find(|b| b["currency"] == currency)
            .map_or(0, |b| b["available"].as_i64().expect("a number"))
    };
    let before = shop.ok(Method::GET, "/v1/balance", None).await;

    // Prepared: pending, the amount held, the invoice still paid.
    let refund = |invoice: &str| {
        let body = json!({"invoice": invoice, "destination": "rail", "reason": "not delivered"});
        shop.call(Method::POST, "/v1/refunds", Some(body))
    };
    let (status, ton_refund) = refund(&ton_invoice).await;
    assert_eq!(status, StatusCode::CREATED, "{ton_refund}");
    assert_eq!(ton_refund["status"], "pending");
    let action = &ton_refund["next_action"]["ton_transfer"];
    assert_eq!(ton_refund["next_action"]["type"], "ton_transfer");
    assert_eq!(action["to"], shop.accounts["payer"]["non_bounceable"]);
    assert_eq!(action["from"], shop.accounts["merchant"]["non_bounceable"]);
    assert_eq!(action["amount_minor"], TON);
    let ton_comment = action["comment"].as_str().expect("comment").to_owned();
    assert!(ton_comment.starts_with("Refund "), "{ton_comment}");
    assert!(action["link"].as_str().expect("link").starts_with(&format!(
        "ton://transfer/{}?amount={TON}&text=Refund%20",
        shop.accounts["payer"]["non_bounceable"]
            .as_str()
            .expect("payer")
    )));
    let ton_message = action["ton_connect"]["messages"][0].clone();
    assert_eq!(ton_message["address"], action["to"]);
    assert_eq!(ton_message["amount"], TON.to_string());
    assert_eq!(action["ton_connect"]["from"], shop.raw("merchant"));
    assert_eq!(
        body::read_comment(
            &body::parse_boc(ton_message["payload"].as_str().expect("payload")).expect("boc")
        )
        .as_deref(),
        Some(ton_comment.as_str())
    );
    let (status, usdt_refund) = refund(&usdt_invoice).await;
    assert_eq!(status, StatusCode::CREATED, "{usdt_refund}");
    let action = &usdt_refund["next_action"]["ton_transfer"];
    let usdt_message = action["ton_connect"]["messages"][0].clone();
    // USDT leaves as a `transfer` to the merchant's own jetton wallet, with gas.
    assert_eq!(
        Address::parse(usdt_message["address"].as_str().expect("address"))
            .expect("address")
            .address
            .raw(),
        shop.raw("merchant_usdt_wallet")
    );
    let transfer = body::read_jetton_transfer(
        &body::parse_boc(usdt_message["payload"].as_str().expect("payload")).expect("boc"),
    )
    .expect("reads")
    .expect("a transfer");
    assert_eq!(transfer.amount, u128::from(2 * USDT));
    assert_eq!(
        transfer.destination.map(|a| a.raw()),
        Some(shop.raw("payer"))
    );
    assert_eq!(transfer.comment.as_deref(), action["comment"].as_str());
    let (status, kept_refund) = refund(&kept_invoice).await;
    assert_eq!(status, StatusCode::CREATED, "{kept_refund}");
    let (status, second_refund) = refund(&second_invoice).await;
    assert_eq!(status, StatusCode::CREATED, "{second_refund}");
    let second_message =
        second_refund["next_action"]["ton_transfer"]["ton_connect"]["messages"][0].clone();
    let held = shop.ok(Method::GET, "/v1/balance", None).await;
    assert_eq!(
        available(&held, "TON"),
        available(&before, "TON") - (9 * TON / 2) as i64
    );
    assert_eq!(
        available(&held, "USDT"),
        available(&before, "USDT") - (2 * USDT) as i64
    );
    assert_eq!(shop.status_of(&ton_invoice).await, "paid");
    // Nothing else refunds the invoice meanwhile.
    let (status, answer) = shop
        .call(
            Method::POST,
            "/v1/refunds",
            Some(json!({"invoice": ton_invoice})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "refund_pending");

    // The merchant's wallet signs the prepared messages — two TON refunds in one external
    // message — (and, for the third, the right comment with a wrong amount). The payments run
    // again first: the sandbox is deterministic, so they are the same transactions, already
    // booked.
    let kept_message =
        kept_refund["next_action"]["ton_transfer"]["ton_connect"]["messages"][0].clone();
    let mut wrong = kept_message.clone();
    wrong["amount"] = json!((2 * TON).to_string());
    let mut scenarios = payments.clone();
    scenarios.push(
        json!({"id": "refund_ton", "kind": "message", "from": "merchant",
        "messages": [ton_message, second_message]}),
    );
    scenarios.push(json!({"id": "refund_usdt", "kind": "message", "from": "merchant", "message": usdt_message}));
    scenarios.push(
        json!({"id": "refund_wrong", "kind": "message", "from": "merchant", "message": wrong}),
    );
    let made = sandbox(Some(json!({ "scenarios": scenarios.clone() }))).await;
    shop.serve(&made["transactions"]);
    for refund in [&ton_refund, &usdt_refund, &second_refund] {
        let id = refund["id"].as_str().expect("id");
        shop.wait_for(&format!("/v1/refunds/{id}"), "succeeded", |r| {
            r["status"] == "succeeded"
        })
        .await;
    }
    assert_eq!(shop.status_of(&ton_invoice).await, "refunded");
    assert_eq!(shop.status_of(&usdt_invoice).await, "refunded");
    assert_eq!(shop.status_of(&second_invoice).await, "refunded");
    let wrong_seen = shop
        .wait_for(
            "/v1/rails/ton/payments?outcome=ignored&limit=100",
            "the wrong transfer",
            |list| {
                list["data"].as_array().is_some_and(|rows| {
                    rows.iter().any(|row| {
                        row["reason"]
                            .as_str()
                            .is_some_and(|reason| reason.starts_with("refund_mismatch"))
                    })
                })
            },
        )
        .await;
    let kept_id = kept_refund["id"].as_str().expect("id").to_owned();
    let sent_rows = wrong_seen["data"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|row| {
            row["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("refund_sent"))
        })
        .count();
    assert_eq!(sent_rows, 2, "{wrong_seen}");
    // Both refunds of the one external message are named on its row.
    let both = |reason: &str| {
        reason.contains(ton_refund["id"].as_str().expect("id"))
            && reason.contains(second_refund["id"].as_str().expect("id"))
    };
    assert!(
        wrong_seen["data"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|row| row["reason"].as_str().is_some_and(both)),
        "{wrong_seen}"
    );
    let kept = shop
        .ok(Method::GET, &format!("/v1/refunds/{kept_id}"), None)
        .await;
    assert_eq!(kept["status"], "pending", "a wrong amount books nothing");
    assert_eq!(shop.status_of(&kept_invoice).await, "paid");
    // Served again (a duplicating indexer): booked once.
    shop.serve(&made["transactions"]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Canceled: the hold released; a second cancel is refused.
    let canceled = shop
        .ok(Method::POST, &format!("/v1/refunds/{kept_id}/cancel"), None)
        .await;
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["next_action"], Value::Null);
    let (status, answer) = shop
        .call(Method::POST, &format!("/v1/refunds/{kept_id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "refund_not_pending");
    let after = shop.ok(Method::GET, "/v1/balance", None).await;
    assert_eq!(
        available(&after, "TON"),
        available(&before, "TON") - (3 * TON / 2) as i64,
        "only the sent TON refunds left the balance"
    );
    assert_eq!(
        available(&after, "USDT"),
        available(&before, "USDT") - (2 * USDT) as i64
    );
    // The merchant had signed the canceled refund's transfer already: it shows up, and is
    // booked all the same (the money left the wallet).
    scenarios.push(
        json!({"id": "refund_kept", "kind": "message", "from": "merchant",
        "message": kept_message}),
    );
    let made = sandbox(Some(json!({ "scenarios": scenarios }))).await;
    shop.serve(&made["transactions"]);
    shop.wait_for(&format!("/v1/refunds/{kept_id}"), "succeeded", |r| {
        r["status"] == "succeeded"
    })
    .await;
    assert_eq!(shop.status_of(&kept_invoice).await, "refunded");
    let last = shop.ok(Method::GET, "/v1/balance", None).await;
    assert_eq!(
        available(&last, "TON"),
        available(&before, "TON") - (9 * TON / 2) as i64
    );
    // The events: pending for each, succeeded for the four sent, canceled for the third.
    let events = shop.ok(Method::GET, "/v1/events?limit=100", None).await;
    let count = |kind: &str| {
        events["data"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["type"] == kind)
            .count()
    };
    assert_eq!(count("refund.pending"), 4);
    assert_eq!(count("refund.succeeded"), 4);
    assert_eq!(count("refund.canceled"), 1);
    assert_eq!(count("invoice.refunded"), 4);
    shop.stop().await;
}
