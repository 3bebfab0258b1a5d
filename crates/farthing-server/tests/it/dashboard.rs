//! Dashboard login with Telegram (SPEC T5; issue 5 item 6): `PUT /v1/dashboard/owners`,
//! `POST /dashboard/login/telegram` with Login Widget data signed here as Telegram signs it,
//! and `GET /dashboard/me` with the session.
//!
//! Covered: a valid login by an owner (session, merchant, user), a tampered hash, the wrong bot
//! (another bot's token, an unknown bot id), a stale `auth_date`, a user who is not an owner,
//! the session's use, a session that is forged, expired, or whose user was removed from the
//! owners, and owners kept per mode.

use crate::support::login_widget;
use crate::support::server;
use farthing_app::Clock;

use std::time::Duration;

use farthing_server::{NewMerchant, Running};
use reqwest::Client;
use serde_json::{json, Value};
use telegram_double::TelegramDouble;

const OWNER: u64 = 777_001;
const STRANGER: u64 = 777_002;

struct App {
    base: String,
    client: Client,
    merchant: NewMerchant,
    running: Running,
    double: TelegramDouble,
    /// The server's clock: a test moves it to expire sessions.
    clock: Clock,
    _dir: tempfile::TempDir,
}

async fn spawn_with(session_ttl_s: u64) -> App {
    let server = server::spawn_with_clock(
        |config| config.telegram.dashboard_session_ttl_s = session_ttl_s,
        Clock::manual(),
    )
    .await;
    let merchant = server.merchant("Shop").await;
    let double = TelegramDouble::spawn().await.expect("the double starts");
    App {
        base: server.base,
        client: server.client,
        merchant,
        running: server.running,
        double,
        clock: server.clock,
        _dir: server.dir,
    }
}

impl App {
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn put(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.client
                .put(format!("{}{path}", self.base))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// Connects the double's bot in the key's mode; answers the bot id.
    async fn connect(&self, key: &str) -> u64 {
        let (status, body) = self
            .put(
                key,
                "/v1/rails/stars",
                json!({"bot_token": self.double.token(), "api_url": self.double.base_url(), "mode": "webhook", "webhook_secret": "s3cret"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["bot_id"].as_u64().expect("bot id")
    }

    async fn owners(&self, key: &str, users: &[u64]) -> (u16, Value) {
        self.put(
            key,
            "/v1/dashboard/owners",
            json!({ "telegram_user_ids": users }),
        )
        .await
    }

    async fn login(&self, body: Value) -> (u16, Value) {
        self.send(
            self.client
                .post(format!("{}/dashboard/login/telegram", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn me(&self, session: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(format!("{}/dashboard/me", self.base));
        if let Some(session) = session {
            request = request.bearer_auth(session);
        }
        self.send(request).await
    }

    /// A fresh login of `user` signed with the double's bot token, for `bot_id`.
    fn fresh(&self, bot_id: u64, user: u64) -> Value {
        login_widget::body(
            bot_id,
            &login_widget::login(user, "Ann", login_widget::now_s(), self.double.token()),
        )
    }
}

#[track_caller]
fn refused(reply: &(u16, Value), code: &str) {
    assert_eq!(reply.0, 401, "{}", reply.1);
    assert_eq!(reply.1["error"]["code"], code, "{}", reply.1);
    assert!(reply.1["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn an_owner_logs_in_with_the_widget_and_uses_the_session() {
    let app = spawn_with(3600).await;
    let key = app.merchant.live_key.clone();
    let bot_id = app.connect(&key).await;
    let (status, owners) = app.owners(&key, &[OWNER, OWNER, 5]).await;
    assert_eq!(status, 200, "{owners}");
    assert_eq!(owners["telegram_user_ids"], json!([5, OWNER]));
    assert_eq!(owners["object"], "dashboard_owners");
    assert_eq!(owners["livemode"], true);

    let (status, session) = app.login(app.fresh(bot_id, OWNER)).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["object"], "dashboard_session");
    assert_eq!(session["livemode"], true);
    assert_eq!(session["merchant"]["id"], app.merchant.id.as_str());
    assert_eq!(session["merchant"]["name"], "Shop");
    assert_eq!(session["user"]["id"], OWNER);
    assert_eq!(session["user"]["first_name"], "Ann");
    assert_eq!(session["user"]["username"], format!("user{OWNER}"));
    let token = session["session"].as_str().expect("a session").to_owned();
    assert!(token.starts_with("fds_"));
    let expires_at = session["expires_at"].as_u64().expect("expiry");
    let now = login_widget::now_s();
    assert!((now + 3500..=now + 3700).contains(&expires_at));

    // The session says who is signed in.
    let (status, me) = app.me(Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["object"], "dashboard_user");
    assert_eq!(me["merchant"], session["merchant"]);
    assert_eq!(me["user"], session["user"]);
    assert_eq!(me["expires_at"], expires_at);

    // No session, a malformed one, a forged one, an API key: refused.
    refused(&app.me(None).await, "invalid_session");
    refused(&app.me(Some("fds_nope")).await, "invalid_session");
    let (payload, _) = token.split_once('.').expect("a signed token");
    refused(
        &app.me(Some(&format!("{payload}.AAAA"))).await,
        "invalid_session",
    );
    refused(&app.me(Some(&key)).await, "invalid_session");

    // A user removed from the owners loses the session at once.
    let (status, _) = app.owners(&key, &[5]).await;
    assert_eq!(status, 200);
    refused(&app.me(Some(&token)).await, "not_a_dashboard_owner");
    refused(
        &app.login(app.fresh(bot_id, OWNER)).await,
        "not_a_dashboard_owner",
    );
    app.double.assert_no_violations();
    app.running.shutdown().await;
}

#[tokio::test]
async fn logins_that_telegram_did_not_sign_now_for_this_bot_are_refused() {
    let app = spawn_with(3600).await;
    let key = app.merchant.test_key.clone();
    let bot_id = app.connect(&key).await;
    assert_eq!(app.owners(&key, &[OWNER]).await.0, 200);

    // A tampered field (another user id under the owner's hash).
    let mut tampered = app.fresh(bot_id, STRANGER);
    tampered["id"] = json!(OWNER);
    refused(&app.login(tampered).await, "invalid_telegram_login");
    // A field added after signing.
    let mut added = app.fresh(bot_id, OWNER);
    added["last_name"] = json!("Smith");
    refused(&app.login(added).await, "invalid_telegram_login");
    // A garbled hash.
    let mut garbled = app.fresh(bot_id, OWNER);
    garbled["hash"] = json!("00".repeat(32));
    refused(&app.login(garbled).await, "invalid_telegram_login");
    // No hash at all.
    let mut bare = app.fresh(bot_id, OWNER);
    bare.as_object_mut().expect("object").remove("hash");
    refused(&app.login(bare).await, "invalid_telegram_login");

    // The wrong bot: data signed with another bot's token, and a bot that is not connected.
    let other_token = "987654321:AAFakeFakeFakeFakeFakeFakeFakeFakeFa";
    let foreign = login_widget::body(
        bot_id,
        &login_widget::login(OWNER, "Ann", login_widget::now_s(), other_token),
    );
    refused(&app.login(foreign).await, "invalid_telegram_login");
    refused(
        &app.login(app.fresh(987_654_321, OWNER)).await,
        "invalid_telegram_login",
    );

    // Stale: older than telegram.login_max_age_s (a day by default), and from the future.
    let stale = login_widget::body(
        bot_id,
        &login_widget::login(
            OWNER,
            "Ann",
            login_widget::now_s() - 86_400 - 60,
            app.double.token(),
        ),
    );
    let reply = app.login(stale).await;
    refused(&reply, "invalid_telegram_login");
    assert!(
        reply.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("old")),
        "{}",
        reply.1
    );
    let future = login_widget::body(
        bot_id,
        &login_widget::login(
            OWNER,
            "Ann",
            login_widget::now_s() + 3600,
            app.double.token(),
        ),
    );
    refused(&app.login(future).await, "invalid_telegram_login");
    // Just inside the window: accepted.
    let old = login_widget::body(
        bot_id,
        &login_widget::login(
            OWNER,
            "Ann",
            login_widget::now_s() - 86_400 + 60,
            app.double.token(),
        ),
    );
    assert_eq!(app.login(old).await.0, 200);

    // A valid login of a user who is not an owner.
    refused(
        &app.login(app.fresh(bot_id, STRANGER)).await,
        "not_a_dashboard_owner",
    );
    // Owners are per mode: the live list is empty, and the bot is connected in test mode only.
    let (status, live) = app.owners(&app.merchant.live_key, &[]).await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["livemode"], true);
    let (status, session) = app.login(app.fresh(bot_id, OWNER)).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["livemode"], false);

    // Malformed bodies are 400, not 401.
    let (status, body) = app.login(json!({"id": OWNER})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.login(json!({"bot_id": bot_id, "id": [1]})).await;
    assert_eq!(status, 400, "{body}");
    // Bad owner lists.
    for bad in [
        json!({"telegram_user_ids": [0]}),
        json!({"telegram_user_ids": ["x"]}),
        json!({"telegram_user_ids": [-1]}),
        json!({"users": []}),
    ] {
        let (status, body) = app.put(&key, "/v1/dashboard/owners", bad).await;
        assert_eq!(status, 400, "{body}");
    }
    app.double.assert_no_violations();
    app.running.shutdown().await;
}

#[tokio::test]
async fn a_session_expires() {
    let app = spawn_with(1).await;
    let key = app.merchant.test_key.clone();
    let bot_id = app.connect(&key).await;
    assert_eq!(app.owners(&key, &[OWNER]).await.0, 200);
    let (status, session) = app.login(app.fresh(bot_id, OWNER)).await;
    assert_eq!(status, 200, "{session}");
    let token = session["session"].as_str().expect("a session").to_owned();
    // Expiry is whole seconds: move past it.
    app.clock.advance(Duration::from_secs(2));
    refused(&app.me(Some(&token)).await, "session_expired");
    app.running.shutdown().await;
}
