//! `farthing serve` as a child process for the crash tests: started on a free loopback port
//! over a database (an SQLite file or a postgres:// URL), waited for until ready.

use std::ffi::OsStr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `farthing` binary under test.
pub fn farthing() -> Command {
    Command::new(env!("CARGO_BIN_EXE_farthing"))
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `farthing serve` on `database`, listening on 127.0.0.1:`port`, with the tests' secrets key.
pub fn serve(database: impl AsRef<OsStr>, port: u16) -> Child {
    farthing()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(database)
        .env("RUST_LOG", "warn")
        .env("FARTHING_SECRETS_KEY", "5e".repeat(32))
        // The load comes from one key: above the per-key rate limit on purpose.
        .env("FARTHING_RATE_LIMIT_API_KEY_PER_S", "10000000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn farthing serve")
}

/// Waits until the server at `base` answers `/readyz` (a minute at most).
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await {
            if response.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("farthing serve did not become ready");
}
