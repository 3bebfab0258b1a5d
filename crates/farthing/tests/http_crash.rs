//! SPEC P4 over HTTP: `farthing serve` is killed with SIGKILL while clients charge one
//! balance; after each restart every charge that got a 2xx is present exactly once, the
//! balance equals the funding minus those charges, and `farthing audit` passes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

#[path = "support/serve.rs"]
mod serve_support;
use serve_support::{farthing, free_port, serve, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_charges_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("farthing.db");
    let created = farthing()
        .args([
            "merchant",
            "create",
            "--name",
            "Crash shop",
            "--json",
            "--database",
        ])
        .arg(&db)
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
    const FUNDING: u64 = 1_000_000;
    let mut acknowledged: Vec<(String, u64)> = Vec::new();
    let mut customer = String::new();
    let seed: u64 = std::env::var("FARTHING_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = fastrand::Rng::with_seed(seed);
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = serve(&db, port);
        wait_ready(&client, &base).await;

        // After the restart: everything acknowledged before is there, exactly as answered.
        for (id, amount) in &acknowledged {
            let charge: Value = client
                .get(format!("{base}/v1/charges/{id}"))
                .bearer_auth(&key)
                .send()
                .await
                .expect("get charge")
                .json()
                .await
                .expect("json");
            assert_eq!(
                charge["id"],
                json!(id),
                "round {round}: acknowledged charge lost"
            );
            assert_eq!(charge["amount"], json!(amount));
        }
        if round == 0 {
            let created: Value = client
                .post(format!("{base}/v1/customers"))
                .bearer_auth(&key)
                .json(&json!({}))
                .send()
                .await
                .expect("customer")
                .json()
                .await
                .expect("json");
            customer = created["id"].as_str().expect("id").to_owned();
            let funded = client
                .post(format!("{base}/v1/test/customers/{customer}/top_up"))
                .bearer_auth(&key)
                .json(&json!({"amount": FUNDING, "currency": "XTR"}))
                .send()
                .await
                .expect("top up");
            assert!(funded.status().is_success());
        } else {
            let spent: u64 = acknowledged.iter().map(|(_, amount)| amount).sum();
            let body: Value = client
                .get(format!("{base}/v1/customers/{customer}"))
                .bearer_auth(&key)
                .send()
                .await
                .expect("customer")
                .json()
                .await
                .expect("json");
            // Charges in flight at the kill may have committed without an answer reaching
            // us: the balance can be lower than funding − acknowledged, never higher.
            let balance = body["balances"][0]["balance"].as_u64().expect("balance");
            assert!(
                balance <= FUNDING - spent,
                "round {round}: acknowledged charge not debited"
            );
        }

        // Load: 16 clients charge the balance until the kill.
        let answered: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (client, base, key, customer, answered) = (
                client.clone(),
                base.clone(),
                key.clone(),
                customer.clone(),
                answered.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for n in 0..100_000u64 {
                    let amount = 1 + n % 7;
                    let response = client
                        .post(format!("{base}/v1/charges"))
                        .bearer_auth(&key)
                        .json(&json!({"customer": customer, "amount": amount, "currency": "XTR"}))
                        .send()
                        .await;
                    let Ok(response) = response else { return };
                    if response.status().as_u16() != 201 {
                        return;
                    }
                    let Ok(body) = response.json::<Value>().await else {
                        return;
                    };
                    if let Some(id) = body["id"].as_str() {
                        answered.lock().expect("lock").push((id.to_owned(), amount));
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(200..900))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        for task in tasks {
            let _ = task.await;
        }
        let mut round_acks = std::mem::take(&mut *answered.lock().expect("lock"));
        assert!(
            !round_acks.is_empty(),
            "round {round}: no charge was answered before the kill"
        );
        acknowledged.append(&mut round_acks);
    }

    // Final check after one more restart, then the ledger audit of both databases.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = serve(&db, port);
    wait_ready(&client, &base).await;
    let mut ids = std::collections::HashSet::new();
    for (id, _) in &acknowledged {
        assert!(ids.insert(id.clone()), "charge id {id} answered twice");
    }
    let mut listed = std::collections::HashSet::new();
    let mut listed_sum = 0u64;
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(after) => format!("{base}/v1/charges?limit=100&starting_after={after}"),
            None => format!("{base}/v1/charges?limit=100"),
        };
        let page: Value = client
            .get(url)
            .bearer_auth(&key)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let data = page["data"].as_array().expect("data");
        for charge in data {
            assert!(
                listed.insert(charge["id"].as_str().expect("id").to_owned()),
                "listed twice"
            );
            listed_sum += charge["amount"].as_u64().expect("amount");
        }
        after = data
            .last()
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned);
        if page["has_more"] != json!(true) {
            break;
        }
    }
    for id in &ids {
        assert!(listed.contains(id), "acknowledged charge {id} not listed");
    }
    let total: u64 = {
        let body: Value = client
            .get(format!("{base}/v1/customers/{customer}"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("customer")
            .json()
            .await
            .expect("json");
        body["balances"][0]["balance"].as_u64().expect("balance")
    };
    child.kill().expect("kill");
    child.wait().expect("reap");
    // Every committed charge (listed) is debited exactly once: balance = funding − sum of all
    // committed charges. Charges committed but unanswered are in `listed` too.
    assert_eq!(
        total,
        FUNDING - listed_sum,
        "the balance must equal the funding minus every committed charge, each once"
    );
    assert!(
        acknowledged.len() > 100,
        "too few charges to mean anything: {}",
        acknowledged.len()
    );
    let audit = farthing()
        .args(["audit", "--database"])
        .arg(&db)
        .output()
        .expect("audit");
    assert!(
        audit.status.success(),
        "audit failed:\n{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(
        text.contains("test mode"),
        "the test-mode database was not audited:\n{text}"
    );
}
