//! The demo shop's seed data, created through the Merchant API over loopback, exactly as a
//! merchant's own code would.

use anyhow::Context;
use serde_json::{json, Value};

/// What the demo created.
pub struct Seeded {
    pub merchant_id: String,
    pub merchant_name: String,
    pub test_key: String,
    pub customer: String,
    pub balance: u64,
    pub products: Vec<String>,
    pub invoice: String,
    pub checkout_url: String,
}

/// The demo catalogue: name and price in Stars.
pub const PRODUCTS: &[(&str, u64)] = &[
    ("Paid post: ten tips for tiny payments", 25),
    ("One AI generation", 50),
    ("100 API credits", 100),
];

const BALANCE: u64 = 1_000;

async fn call(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = response.status();
    let value: Value = response.json().await?;
    anyhow::ensure!(
        status.is_success(),
        "POST {path} answered {status}: {value}"
    );
    Ok(value)
}

/// Where the demo keeps its merchant id and test key between runs, beside its database
/// (`0600`): a restart shows the same merchant, key and customer.
pub fn key_file(database: &std::path::Path) -> std::path::PathBuf {
    database.with_file_name("demo.key")
}

/// The merchant of an earlier run whose key still works.
fn earlier(
    state: &farthing_server::state::AppState,
    file: &std::path::Path,
) -> Option<(String, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut lines = text.lines();
    let (id, key) = (lines.next()?.trim(), lines.next()?.trim());
    farthing_server::http::auth::authenticate(state, key).ok()?;
    Some((id.to_owned(), key.to_owned()))
}

fn remember(file: &std::path::Path, id: &str, key: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(file)
        .with_context(|| format!("writing {}", file.display()))?;
    writeln!(out, "{id}\n{key}")?;
    Ok(())
}

/// The demo merchant (made once, directly in the stores: keys are made offline; kept across
/// restarts in [`key_file`]), its customer with a test balance, and one new open invoice, all
/// through the API.
pub async fn seed(
    state: &farthing_server::state::AppState,
    database: &std::path::Path,
) -> anyhow::Result<Seeded> {
    use farthing_server::state::Mode;
    let name = "Farthing Demo Shop";
    let file = key_file(database);
    let (merchant_id, key, first_run) = match earlier(state, &file) {
        Some((id, key)) => (id, key, false),
        None => {
            let (live, test) = (
                state.store(Mode::Live).clone(),
                state.store(Mode::Test).clone(),
            );
            let merchant = tokio::task::spawn_blocking(move || {
                farthing_server::create_merchant(&live, &test, name)
            })
            .await?
            .map_err(anyhow::Error::msg)?;
            remember(&file, &merchant.id, &merchant.test_key)?;
            (merchant.id, merchant.test_key, true)
        }
    };
    let base = state.config().base_url().to_owned();
    let client = reqwest::Client::new();
    let customer_id = if first_run {
        let customer = call(
            &client,
            &base,
            &key,
            "/v1/customers",
            json!({"external_id": "demo-user", "metadata": {"name": "Demo customer"}}),
        )
        .await?;
        let customer_id = customer["id"].as_str().unwrap_or_default().to_owned();
        call(
            &client,
            &base,
            &key,
            &format!("/v1/test/customers/{customer_id}/top_up"),
            json!({"amount": BALANCE, "currency": "XTR"}),
        )
        .await?;
        customer_id
    } else {
        let found: Value = client
            .get(format!("{base}/v1/customers?external_id=demo-user"))
            .bearer_auth(&key)
            .send()
            .await?
            .json()
            .await?;
        found["data"][0]["id"]
            .as_str()
            .context("the demo customer of the earlier run is gone; start over with --fresh")?
            .to_owned()
    };
    let (product, price) = PRODUCTS[0];
    let invoice = call(
        &client,
        &base,
        &key,
        "/v1/invoices",
        json!({"amount": price, "currency": "XTR", "description": product, "expires_in": 3600}),
    )
    .await?;
    Ok(Seeded {
        merchant_id,
        merchant_name: name.to_owned(),
        test_key: key,
        customer: customer_id,
        balance: BALANCE,
        products: PRODUCTS
            .iter()
            .map(|(name, price)| format!("{name} ({price} XTR)"))
            .collect(),
        invoice: invoice["id"].as_str().unwrap_or_default().to_owned(),
        checkout_url: invoice["checkout_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}
