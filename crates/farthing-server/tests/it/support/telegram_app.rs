//! The harness of the Telegram tests: farthing with a fresh database and a merchant, and
//! `telegram-double` (a Bot API server that checks every call against the Bot API 10.1 spec),
//! with the merchant's bot connected in webhook mode and updates posted with the secret.
//! Include with `#[path = "support/telegram_app.rs"] mod telegram_app;`.

use crate::support::server;
use std::time::{Duration, Instant};

use farthing_server::config::Config;
use farthing_server::state::Mode;
use farthing_server::{NewMerchant, Running};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use telegram_double::TelegramDouble;

/// `reqwest` is built without its `json` feature here.
pub trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

/// The webhook secret the bot is connected with.
pub const SECRET: &str = "webhook-secret_123";

pub struct App {
    pub base: String,
    pub client: Client,
    pub merchant: NewMerchant,
    pub running: Running,
    pub double: TelegramDouble,
    pub dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub text: String,
    pub body: Value,
}

impl Reply {
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        self
    }
}

/// A configuration on a fresh database in `dir`, listening on a free port.
pub use crate::support::server::config;

/// farthing (configured by `adjust`) with one merchant "Shop", and a fresh double.
pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> App {
    let server = server::spawn(adjust).await;
    let merchant = server.merchant("Shop").await;
    let double = TelegramDouble::spawn().await.expect("the double starts");
    App {
        base: server.base,
        client: server.client,
        merchant,
        running: server.running,
        double,
        dir: server.dir,
    }
}

pub async fn spawn() -> App {
    spawn_with(|_| {}).await
}

impl App {
    /// The merchant's test-mode key.
    pub fn key(&self) -> &str {
        &self.merchant.test_key
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, text, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(self.key()),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(self.key())
                .json_body(&body),
        )
        .await
    }

    /// Connects the double's bot in webhook mode with [`SECRET`].
    pub async fn connected(&self) -> Value {
        let reply = self
            .send(
                self.client
                    .put(format!("{}/v1/rails/stars", self.base))
                    .bearer_auth(self.key())
                    .json_body(&json!({
                        "bot_token": self.double.token(),
                        "api_url": self.double.base_url(),
                        "mode": "webhook",
                        "webhook_secret": SECRET,
                    })),
            )
            .await;
        reply.expect(200);
        reply.body.clone()
    }

    pub fn bot_id(&self) -> u64 {
        self.double
            .token()
            .split_once(':')
            .and_then(|(id, _)| id.parse().ok())
            .expect("bot id")
    }

    /// The bot's username, as `getMe` gives it.
    pub fn bot_username(&self) -> String {
        self.double.bot_user()["username"]
            .as_str()
            .expect("username")
            .to_owned()
    }

    /// Injects `update` (a fixture, checked by the double and given an `update_id`) and posts
    /// it to the webhook with the secret; returns the update as posted.
    pub async fn update(&self, update: Value) -> Value {
        let id = self.double.inject_update(update);
        let update = self
            .double
            .pending_updates()
            .into_iter()
            .find(|u| u["update_id"] == id)
            .expect("the injected update");
        self.post_update(&update).await;
        update
    }

    /// Posts an update as it is (e.g. the same one again, as Telegram resends).
    pub async fn post_update(&self, update: &Value) {
        let request = self
            .client
            .post(format!("{}/telegram/{}/webhook", self.base, self.bot_id()))
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .json_body(update);
        self.send(request).await.expect(200);
    }

    /// Creates an invoice with the test key; returns its id.
    pub async fn invoice(&self, body: Value) -> String {
        let reply = self.post("/v1/invoices", body).await;
        reply.expect(201);
        reply.body["id"].as_str().expect("id").to_owned()
    }

    /// Waits until the invoice has `status`.
    pub async fn wait_for_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let invoice = self.get(&format!("/v1/invoices/{id}")).await;
            if invoice.body["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the invoice never became {status}: {}",
                invoice.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks that the double saw no spec violation and both ledgers audit clean, then stops.
    pub async fn stop(self) {
        self.double.assert_no_violations();
        for mode in [Mode::Live, Mode::Test] {
            let report = self
                .running
                .state()
                .store(mode)
                .audit()
                .expect("audit runs");
            assert!(report.is_ok(), "{mode:?} ledger audit failed: {report}");
        }
        self.running.shutdown().await;
    }
}
