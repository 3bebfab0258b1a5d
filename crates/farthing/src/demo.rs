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

/// Creates the merchant (directly in the stores: keys are made offline), then a customer
/// with a test balance and one open invoice through the API.
pub async fn seed(state: &farthing_server::state::AppState) -> anyhow::Result<Seeded> {
    use farthing_server::state::Mode;
    let name = "Farthing Demo Shop";
    let (live, test) = (
        state.store(Mode::Live).clone(),
        state.store(Mode::Test).clone(),
    );
    let merchant =
        tokio::task::spawn_blocking(move || farthing_server::create_merchant(&live, &test, name))
            .await?
            .map_err(anyhow::Error::msg)?;
    let base = state.config().base_url().to_owned();
    let key = merchant.test_key.clone();
    let client = reqwest::Client::new();
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
        merchant_id: merchant.id,
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
