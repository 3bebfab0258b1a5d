//! A throwaway PostgreSQL server for a test (`scripts/postgres`): initdb in a temporary
//! directory, a Unix socket there, fsync on; stopped and deleted when dropped (also when the
//! test panics). Each test starts its own server (about a second); `schema` gives a fresh,
//! empty schema of it, for tests that need several.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Postgres {
    dir: PathBuf,
    url: String,
    /// With [`Postgres::start_tls`]: the TCP URL (TLS only, a password).
    tcp_url: Option<String>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres")
}

impl Postgres {
    /// Starts a fresh server. Panics with the script's message when PostgreSQL is missing:
    /// `./scripts/test` installs it (`scripts/postgres install`).
    pub fn start() -> Postgres {
        Postgres::launch(&[])
    }

    /// Starts a fresh server that also listens on 127.0.0.1 with TLS only (`start-tls`): a
    /// certificate for `localhost` signed by [`Postgres::ca`], a password over TCP.
    #[allow(dead_code)]
    pub fn start_tls() -> Postgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Postgres::launch(&["start-tls".to_owned(), port.to_string()])
    }

    fn launch(tls: &[String]) -> Postgres {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Under /tmp with a short name: a Unix socket path must stay under ~100 bytes.
        let dir = std::env::temp_dir().join(format!(
            "farthing-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let mut command = Command::new(script());
        match tls {
            [verb, port] => command.arg(verb).arg(&dir).arg(port),
            _ => command.arg("start").arg(&dir),
        };
        let output = command.output().expect("run scripts/postgres");
        if !output.status.success() {
            let _ = Command::new(script()).arg("stop").arg(&dir).output();
        }
        assert!(
            output.status.success(),
            "scripts/postgres start failed (run `scripts/postgres install`): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).expect("a URL");
        let mut urls = stdout.lines().map(|line| line.trim().to_owned());
        let url = urls.next().expect("a URL");
        Postgres {
            dir,
            url,
            tcp_url: urls.next(),
        }
    }

    /// The TCP URL of a [`Postgres::start_tls`] server (no `sslmode`).
    #[allow(dead_code)]
    pub fn tcp_url(&self) -> &str {
        self.tcp_url
            .as_deref()
            .expect("a server started with start_tls")
    }

    /// The CA that signed a [`Postgres::start_tls`] server's certificate (PEM), and one that
    /// signed nothing.
    #[allow(dead_code)]
    pub fn ca(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("ca.pem"), self.dir.join("other-ca.pem"))
    }

    /// The server's Unix socket.
    #[allow(dead_code)]
    pub fn socket(&self) -> PathBuf {
        self.dir.join(".s.PGSQL.5432")
    }

    /// The server's `postgres` database.
    #[allow(dead_code)]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A URL whose connections work in a new, empty schema of their own.
    #[allow(dead_code)]
    pub fn schema(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::SeqCst));
        farthing_store::pg::scratch_schema(&self.url, &name).expect("a new schema")
    }
}

impl Postgres {
    /// Stops the server at once, keeping its data (no checkpoint: what a power cut leaves), and
    /// starts it again, recovering from its WAL.
    #[allow(dead_code)]
    pub fn crash_and_restart(&self) {
        for (command, what) in [("crash", "stop"), ("resume", "start again")] {
            let output = Command::new(script())
                .arg(command)
                .arg(&self.dir)
                .output()
                .expect("run scripts/postgres");
            assert!(
                output.status.success(),
                "the server did not {what}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).output();
    }
}
