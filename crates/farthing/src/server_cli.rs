//! `farthing serve`, `farthing demo` and `farthing merchant create`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use farthing_server::config::Config;
use farthing_server::{create_merchant, open_stores, start};

/// Flags shared by `serve` and `demo`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (also `$FARTHING_CONFIG`).
    #[arg(long, env = "FARTHING_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (overrides the file and `$FARTHING_LISTEN`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Database URL or path (overrides the file and `$FARTHING_DATABASE`).
    #[arg(long)]
    database: Option<String>,
}

fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref(), |name| std::env::var(name).ok())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
        if std::env::var("FARTHING_PUBLIC_URL").is_err() {
            config.public_url = format!("http://{listen}");
        }
    }
    if let Some(database) = &args.database {
        config.database = database.clone();
    }
    config.validate()?;
    Ok(config)
}

/// Logs to stderr; `RUST_LOG` chooses the level (default `info`) and
/// `FARTHING_LOG_FORMAT=json` gives one JSON object per line for log collectors. Never logs
/// request bodies or headers, so keys and secrets can't reach the log.
pub fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Secrets stay out of the log even at RUST_LOG=trace: the websocket crates log the URLs
    // they connect to at debug and trace, and LNbits puts the wallet's key in that URL.
    for quiet in ["tungstenite=info", "tokio_tungstenite=info"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    // Colour only on a terminal: escape codes in a log file or journal are noise.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("FARTHING_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `farthing serve`
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let config = load(args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let running = start(config).await?;
        tracing::info!(addr = %running.addr(), "farthing is serving");
        // A signal, or the server stopping itself (on PostgreSQL: its claim on the database
        // was taken by another instance), ends the process; the latter with a failure, so a
        // supervisor notices.
        let asked = tokio::select! {
            () = wait_for_signal() => true,
            () = running.stopped() => false,
        };
        tracing::info!("shutting down: finishing in-flight requests and commits");
        running.shutdown().await;
        if asked {
            Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
        } else {
            tracing::error!("the server stopped itself; see the log above");
            Ok(ExitCode::FAILURE)
        }
    })
}

/// `farthing merchant create` arguments.
#[derive(clap::Args, Debug)]
pub struct MerchantCreateArgs {
    /// The merchant's name, shown on checkout pages and receipts.
    #[arg(long)]
    name: String,
    /// Database URL or path.
    #[arg(
        long,
        env = "FARTHING_DATABASE",
        hide_env_values = true,
        default_value = "data/farthing.db"
    )]
    database: String,
    /// Print `{"id", "live_key", "test_key"}` as JSON.
    #[arg(long)]
    json: bool,
    /// Create it through this running server's admin API instead of the database (no need to
    /// stop the server), e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    server: Option<String>,
    /// The operator key for `--server` (`farthing admin-key` makes one).
    #[arg(long, env = "FARTHING_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
}

/// `farthing merchant create`
pub fn merchant_create(args: &MerchantCreateArgs) -> anyhow::Result<ExitCode> {
    if let Some(server) = &args.server {
        let key = args.admin_key.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "--server needs the operator key: set FARTHING_ADMIN_KEY or --admin-key"
            )
        })?;
        return crate::remote::create_merchant(server, key, &args.name, args.json);
    }
    let metrics = farthing_server::metrics::Metrics::default();
    let (live, test) = open_stores(
        &args.database,
        &metrics,
        &farthing_app::Clock::system(),
        None,
    )
    .context("opening the database (stop `farthing serve` on it first)")?;
    let created = create_merchant(&live, &test, &args.name).map_err(anyhow::Error::msg);
    live.shutdown();
    test.shutdown();
    let created = created?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"id": created.id, "live_key": created.live_key, "test_key": created.test_key})
        );
    } else {
        println!("merchant: {}", created.id);
        println!("live key: {}", created.live_key);
        println!("test key: {}", created.test_key);
        println!("These keys are shown once; farthing keeps only their hashes.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `farthing demo` arguments.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Start over: delete the demo's databases and key before starting (by default a restart
    /// keeps the merchant, its key, the customer and its balance).
    #[arg(long)]
    fresh: bool,
}

/// `farthing demo`: a ready-to-try shop in test mode.
pub fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let mut config = load(&args.serve)?;
    if args.serve.database.is_none() && std::env::var("FARTHING_DATABASE").is_err() {
        config.database = "data/demo.db".to_owned();
    }
    let database = match farthing_store::DatabaseUrl::parse(&config.database)? {
        farthing_store::DatabaseUrl::Sqlite(path) => path,
        farthing_store::DatabaseUrl::Postgres(url) => anyhow::bail!(
            "{url}: the demo runs on an SQLite file (it keeps its key file beside it); \
             `farthing serve --database {url}` serves from PostgreSQL"
        ),
    };
    if args.fresh {
        let test = farthing_server::config::test_database_path(&database);
        for base in [&database, &test] {
            for suffix in ["", "-wal", "-shm", ".lock"] {
                let file = std::path::PathBuf::from(format!("{}{suffix}", base.display()));
                if file.exists() {
                    std::fs::remove_file(&file)
                        .with_context(|| format!("removing {}", file.display()))?;
                }
            }
        }
        let key = crate::demo::key_file(&database);
        if key.exists() {
            std::fs::remove_file(&key)?;
        }
    }
    config.allow_private_webhooks = true;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let running = start(config).await?;
        let seeded = crate::demo::seed(running.state(), &database).await?;
        let base = running.state().config().base_url().to_owned();
        println!();
        println!("farthing demo — test mode, nothing here moves real money");
        println!();
        println!("  merchant:     {} ({})", seeded.merchant_name, seeded.merchant_id);
        println!("  test API key: {}", seeded.test_key);
        println!("  customer:     {} with {} Stars of test balance", seeded.customer, seeded.balance);
        println!("  products:     {}", seeded.products.join(", "));
        println!("  checkout:     {}", seeded.checkout_url);
        println!();
        println!("Try it (copy and paste):");
        println!();
        println!(
            "  curl -s {base}/v1/invoices -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"amount\": 50, \"currency\": \"XTR\", \"description\": \"One AI generation\"}}'",
            key = seeded.test_key
        );
        println!(
            "  curl -s -X POST {base}/v1/test/invoices/{invoice}/pay -H 'Authorization: Bearer {key}'",
            invoice = seeded.invoice,
            key = seeded.test_key
        );
        println!(
            "  curl -s {base}/v1/events -H 'Authorization: Bearer {key}'",
            key = seeded.test_key
        );
        println!();
        println!("Press Ctrl-C to stop.");
        wait_for_signal().await;
        running.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
