//! Two `farthing serve` instances on one PostgreSQL database under charge load, one of them
//! SIGKILLed mid-load again and again and started again (SPEC P4, L4; issue "PostgreSQL backend
//! and several instances"). Clients charge one balance through both; a request whose instance
//! died under it is retried with the same idempotency key on the other. Afterwards every
//! acknowledged charge is there exactly as answered, every committed charge is debited once
//! (the balance is the funding minus all of them, retries included), the balance was never
//! overdrawn (it likely runs out during the test), and `farthing audit` passes.

#[path = "../../farthing-store/tests/support/postgres.rs"]
mod pg_server;
#[path = "support/serve.rs"]
mod serve_support;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use serve_support::{farthing, free_port, serve, wait_ready};

/// One instance: its process and address.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    async fn start(database: &str, client: &reqwest::Client) -> Instance {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let child = serve(database, port);
        wait_ready(client, &base).await;
        Instance { child, base }
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Instance {
    /// A failing test must not leave servers running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one charge request came to.
enum Outcome {
    /// 201: the charge, as answered.
    Charged(String),
    /// Answered, but not charged (402 when the balance ran out).
    Refused(u16),
    /// No answer (the instance died under it).
    Lost,
}

async fn charge(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    customer: &str,
    amount: u64,
    idempotency: &str,
) -> Outcome {
    let response = client
        .post(format!("{base}/v1/charges"))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency)
        .timeout(Duration::from_secs(10))
        .json(&json!({"customer": customer, "amount": amount, "currency": "XTR"}))
        .send()
        .await;
    let Ok(response) = response else {
        return Outcome::Lost;
    };
    let status = response.status().as_u16();
    let Ok(body) = response.json::<Value>().await else {
        return Outcome::Lost;
    };
    match (status, body["id"].as_str()) {
        (201, Some(id)) => Outcome::Charged(id.to_owned()),
        _ => Outcome::Refused(status),
    }
}

async fn get(client: &reqwest::Client, base: &str, key: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_instances_survive_sigkill_under_charge_load() {
    let server = pg_server::Postgres::start();
    let database = server.schema();
    let created = farthing()
        .args([
            "merchant",
            "create",
            "--name",
            "Crash shop",
            "--json",
            "--database",
            &database,
        ])
        .output()
        .expect("merchant create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let merchant: Value = serde_json::from_slice(&created.stdout).expect("json");
    let key = merchant["test_key"].as_str().expect("test key").to_owned();
    let client = reqwest::Client::new();
    let mut instances = [
        Instance::start(&database, &client).await,
        Instance::start(&database, &client).await,
    ];

    // About 700 charges' worth: it likely runs out during the test, so that an empty balance's
    // refusals are part of the load (the audit checks that it was never overdrawn).
    const FUNDING: u64 = 2_000;
    let created: Value = client
        .post(format!("{}/v1/customers", instances[0].base))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .expect("customer")
        .json()
        .await
        .expect("json");
    let customer = created["id"].as_str().expect("id").to_owned();
    let funded = client
        .post(format!(
            "{}/v1/test/customers/{customer}/top_up",
            instances[1].base
        ))
        .bearer_auth(&key)
        .json(&json!({"amount": FUNDING, "currency": "XTR"}))
        .send()
        .await
        .expect("top up");
    assert!(funded.status().is_success());

    let seed: u64 = std::env::var("FARTHING_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let mut rng = fastrand::Rng::with_seed(seed);
    // Idempotency key → (charge, amount), for every acknowledged charge.
    let acknowledged: Arc<Mutex<HashMap<String, (String, u64)>>> = Arc::default();
    let retried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        let bases = [instances[0].base.clone(), instances[1].base.clone()];
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for worker in 0..12u64 {
            let (client, key, customer, bases) =
                (client.clone(), key.clone(), customer.clone(), bases.clone());
            let (acknowledged, retried, refused, stop) = (
                acknowledged.clone(),
                retried.clone(),
                refused.clone(),
                stop.clone(),
            );
            clients.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let amount = 1 + (worker + n) % 5;
                    let idempotency = format!("r{round}-w{worker}-n{n}");
                    let first = (worker + n) as usize % 2;
                    let mut outcome = charge(
                        &client,
                        &bases[first],
                        &key,
                        &customer,
                        amount,
                        &idempotency,
                    )
                    .await;
                    if let Outcome::Lost = outcome {
                        // The instance died under the request: the same key, on the other.
                        retried.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        outcome = charge(
                            &client,
                            &bases[1 - first],
                            &key,
                            &customer,
                            amount,
                            &idempotency,
                        )
                        .await;
                    }
                    match outcome {
                        Outcome::Charged(id) => {
                            acknowledged
                                .lock()
                                .expect("lock")
                                .insert(idempotency, (id, amount));
                        }
                        Outcome::Refused(status) => {
                            assert!(
                                matches!(status, 402 | 409 | 503),
                                "unexpected answer {status}"
                            );
                            refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Outcome::Lost => {}
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(300..900))).await;
        let victim = round % 2;
        instances[victim].kill();
        // The load goes on through the other instance for a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for task in clients {
            task.await.expect("a client panicked");
        }
        instances[victim] = Instance::start(&database, &client).await;
        // Everything acknowledged so far is there, through either instance.
        let acknowledged = acknowledged.lock().expect("lock").clone();
        for (n, (id, amount)) in acknowledged.values().enumerate() {
            let charge = get(
                &client,
                &instances[n % 2].base,
                &key,
                &format!("/v1/charges/{id}"),
            )
            .await;
            assert_eq!(
                charge["id"],
                json!(id),
                "round {round}: acknowledged charge lost"
            );
            assert_eq!(charge["amount"], json!(amount));
        }
    }

    // Every committed charge, once: the list has no duplicate, holds every acknowledged one,
    // and the balance is the funding minus all of them.
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let mut listed: HashSet<String> = HashSet::new();
    let mut listed_sum = 0u64;
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(after) => format!("/v1/charges?limit=100&starting_after={after}"),
            None => "/v1/charges?limit=100".to_owned(),
        };
        let page = get(&client, &instances[0].base, &key, &path).await;
        let data = page["data"].as_array().expect("data");
        for charge in data {
            let id = charge["id"].as_str().expect("id").to_owned();
            listed_sum += charge["amount"].as_u64().expect("amount");
            assert!(listed.insert(id), "a charge listed twice");
        }
        after = data
            .last()
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned);
        if page["has_more"] != json!(true) {
            break;
        }
    }
    let ids: HashSet<&String> = acknowledged.values().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        acknowledged.len(),
        "one charge answered for two keys"
    );
    for id in ids {
        assert!(listed.contains(id), "acknowledged charge {id} not listed");
    }
    let body = get(
        &client,
        &instances[1].base,
        &key,
        &format!("/v1/customers/{customer}"),
    )
    .await;
    let balance = body["balances"][0]["balance"].as_u64().expect("balance");
    assert_eq!(
        balance,
        FUNDING - listed_sum,
        "the balance must be the funding minus every committed charge, each once"
    );
    let (retried, refused) = (
        retried.load(std::sync::atomic::Ordering::SeqCst),
        refused.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(
        acknowledged.len() > 300,
        "too few charges to mean anything: {}",
        acknowledged.len()
    );
    assert!(retried > 0, "no request was cut by a kill and retried");
    for instance in &mut instances {
        instance.kill();
    }
    let audit = farthing()
        .args(["audit", "--database", &database])
        .output()
        .expect("audit");
    let text = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(
        audit.status.success(),
        "audit failed:\n{text}{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    assert!(
        text.contains("test mode"),
        "the test schema was not audited:\n{text}"
    );
    eprintln!(
        "{} charges acknowledged ({} committed, {listed_sum} of {FUNDING} spent), {retried} \
         requests retried on the other instance, {refused} refused, {ROUNDS} SIGKILLs",
        acknowledged.len(),
        listed.len()
    );
}
