//! Commands that talk to a running farthing over its API, so nothing has to stop: `farthing
//! keys …` (a merchant's API keys, with that merchant's key) and `farthing merchant create
//! --server …` (with the operator key), and `farthing admin-key`, which makes the operator key.

use std::process::ExitCode;

use serde_json::{json, Value};

/// Where the server is and which key to use.
#[derive(clap::Args, Debug)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, env = "FARTHING_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A key of the merchant holding `api_keys:write` (also `$FARTHING_API_KEY`).
    #[arg(long, env = "FARTHING_API_KEY", hide_env_values = true)]
    key: String,
}

/// `farthing keys …`
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key with these scopes (comma-separated, `*` for all) and print it, once.
    Create {
        #[command(flatten)]
        remote: Remote,
        /// e.g. `charges:write,customers:read`.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
    /// List the merchant's keys (never the keys themselves).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace a key: a new one with the same scopes, the old one working `--expires-in`
    /// seconds more (0 to 604800; default 0).
    Roll {
        #[command(flatten)]
        remote: Remote,
        /// The key, `key_…` (from `farthing keys list`).
        id: String,
        #[arg(long, default_value_t = 0)]
        expires_in: u64,
    },
    /// Revoke a key at once.
    Revoke {
        #[command(flatten)]
        remote: Remote,
        /// The key, `key_…`.
        id: String,
    },
}

/// Runs `farthing keys …`.
pub fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    let (remote, method, path, body) = match command {
        KeysCommand::Create { remote, scopes } => (
            remote,
            reqwest::Method::POST,
            "/v1/api_keys".to_owned(),
            Some(json!({"scopes": scopes})),
        ),
        KeysCommand::List { remote } => (remote, reqwest::Method::GET, "/v1/api_keys".into(), None),
        KeysCommand::Roll {
            remote,
            id,
            expires_in,
        } => (
            remote,
            reqwest::Method::POST,
            format!("/v1/api_keys/{id}/roll"),
            Some(json!({"expires_in": expires_in})),
        ),
        KeysCommand::Revoke { remote, id } => (
            remote,
            reqwest::Method::POST,
            format!("/v1/api_keys/{id}/revoke"),
            None,
        ),
    };
    call(&remote.server, &remote.key, method, &path, body)
}

/// `farthing merchant create --server …`: the operator's API.
pub fn create_merchant(
    server: &str,
    admin_key: &str,
    name: &str,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let answer = request(
        server,
        admin_key,
        reqwest::Method::POST,
        "/v1/admin/merchants",
        Some(json!({"name": name})),
    )?;
    if json_out {
        println!(
            "{}",
            json!({"id": answer["id"], "live_key": answer["live_key"], "test_key": answer["test_key"]})
        );
    } else {
        println!("merchant: {}", answer["id"].as_str().unwrap_or_default());
        println!(
            "live key: {}",
            answer["live_key"].as_str().unwrap_or_default()
        );
        println!(
            "test key: {}",
            answer["test_key"].as_str().unwrap_or_default()
        );
        println!("These keys are shown once; farthing keeps only their hashes.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `farthing admin-key`
pub fn admin_key() -> anyhow::Result<ExitCode> {
    let (key, hash) = farthing_server::http::admin::generate_admin_key()?;
    println!("operator key: {key}");
    println!("Keep it secret (e.g. FARTHING_ADMIN_KEY for `farthing merchant create --server`);");
    println!("configure the server with its hash, which is not secret:");
    println!("  admin_key_sha256 = \"{hash}\"    (or FARTHING_ADMIN_KEY_SHA256={hash})");
    Ok(ExitCode::SUCCESS)
}

fn call(
    server: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<ExitCode> {
    let answer = request(server, key, method, path, body)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

/// One API call; an error answer becomes an error naming its code and message.
fn request(
    server: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let url = format!("{}{path}", server.trim_end_matches('/'));
        let mut request = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(key)
            .timeout(std::time::Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("cannot reach farthing at {server}: {error}"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "{status}: {} ({})",
                answer["error"]["message"].as_str().unwrap_or("no message"),
                answer["error"]["code"].as_str().unwrap_or("no code")
            );
        }
        Ok(answer)
    })
}
