//! The `farthing` binary: a thin command-line layer over the libraries.
//!
//! Commands parse their arguments, call into `farthing-core` / `farthing-store`, and print.
//! No ledger rule lives here.

mod bench;
mod bench_http;
mod bench_lightning;
mod bench_ton;
mod demo;
mod internal;
mod remote;
mod server_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use farthing_store::{audit, DatabaseUrl};

/// farthing: a self-hosted micropayment server.
#[derive(Parser)]
#[command(name = "farthing", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: the Merchant API, the checkout page, webhooks.
    #[command(after_help = ENVIRONMENT)]
    Serve(server_cli::ServeArgs),
    /// Apply the database migrations to the live and test databases and stop (the server also
    /// applies them when it starts); refuses a database newer than this build.
    Migrate {
        /// Database URL or path of the live database.
        #[arg(
            long,
            env = "FARTHING_DATABASE",
            hide_env_values = true,
            default_value = "data/farthing.db"
        )]
        database: String,
    },
    /// Print the configuration as a commented TOML file: every key with its type, what it
    /// does and its value (the `--config` file and `FARTHING_*` variables applied), or with
    /// `--defaults` the defaults alone, the configuration reference.
    Config {
        /// Print the defaults, ignoring the file and the environment.
        #[arg(long)]
        defaults: bool,
        /// TOML configuration file (also `$FARTHING_CONFIG`).
        #[arg(long, env = "FARTHING_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run a ready-to-try shop in test mode and print how to use it.
    Demo(server_cli::DemoArgs),
    /// Manage merchants.
    #[command(subcommand)]
    Merchant(MerchantCommand),
    /// Check the ledger invariants (SPEC L5) of a database; exits 1 when any is broken.
    Audit {
        /// Database URL or path, e.g. sqlite:///var/lib/farthing/farthing.db.
        #[arg(
            long,
            env = "FARTHING_DATABASE",
            hide_env_values = true,
            default_value = "data/farthing.db"
        )]
        database: String,
    },
    /// Move a stopped shop to PostgreSQL: copy every table of the live and test SQLite
    /// databases into an empty PostgreSQL database (test-mode data into the schema
    /// `<schema>_test` beside it) in one transaction each, then audit the copies.
    Copy {
        /// The SQLite database of the live mode (its test database beside it is copied too),
        /// e.g. sqlite:data/farthing.db.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database to copy into, e.g. postgres://farthing:…@db/farthing.
        #[arg(long)]
        to: String,
    },
    /// Copy the live and test databases to new files while the server runs (SQLite's online
    /// backup API, one consistent snapshot each), then audit the copies.
    Backup {
        /// Database URL or path of the live database.
        #[arg(
            long,
            env = "FARTHING_DATABASE",
            hide_env_values = true,
            default_value = "data/farthing.db"
        )]
        database: String,
        /// Where the copy of the live database goes (a new file); the test database's copy
        /// goes beside it as `<name>-test.<ext>`.
        #[arg(long)]
        to: PathBuf,
    },
    /// Seal every stored secret (bot tokens, webhook and provider secrets, node credentials,
    /// authenticators) of the live and test databases (on PostgreSQL: schemas) under a new
    /// key, in one transaction per database: after a leak of the old key, or to seal secrets
    /// stored in clear. Stop the server (every instance) first; then start it with the new key
    /// (`secrets_key_file`).
    RotateSecretsKey {
        /// Database URL or path of the live database.
        #[arg(
            long,
            env = "FARTHING_DATABASE",
            hide_env_values = true,
            default_value = "data/farthing.db"
        )]
        database: String,
        /// The key the secrets are sealed with now (omit when they are stored in clear).
        #[arg(long)]
        old_key_file: Option<PathBuf>,
        /// The new key (64 hex digits in a file).
        #[arg(long)]
        new_key_file: PathBuf,
        /// Make the new key and write it to `--new-key-file` (a new file, mode 0600) first.
        #[arg(long)]
        generate: bool,
    },
    /// A merchant's API keys on a running server: create, list, roll, revoke.
    #[command(subcommand)]
    Keys(remote::KeysCommand),
    /// Make an operator key for the admin API (`/v1/admin`: add merchants while the server
    /// runs) and print it with the hash to configure as `admin_key_sha256`.
    AdminKey,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Helpers for farthing's own tests; not a stable interface.
    #[command(subcommand, hide = true)]
    Internal(internal::InternalCommand),
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Create a merchant and print its id and its live and test secret keys (shown once):
    /// in the database (server stopped), or with `--server` through a running server's admin
    /// API (operator key in `$FARTHING_ADMIN_KEY`).
    Create(server_cli::MerchantCreateArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Drive the ledger through the real store in a fresh database on disk and report durable
    /// transfers per second and commit latency.
    Ledger(bench::LedgerArgs),
    /// Start `farthing serve` on a fresh database and measure invoice creations and balance
    /// charges per second over HTTP with keep-alive clients.
    Http(bench_http::HttpArgs),
    /// Start a throwaway LNbits and farthing, pay farthing's BOLT11 invoices from an LNbits
    /// wallet and measure the time from each payment to farthing's `invoice.paid` webhook.
    Lightning(bench_lightning::LightningArgs),
    /// Start farthing and a local TON indexer, pay TON invoices with real @ton/sandbox
    /// transactions and measure the time from each transaction appearing at the indexer to the
    /// invoice being paid.
    Ton(bench_ton::TonArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => server_cli::serve(&args),
        Command::Demo(args) => server_cli::demo(&args),
        Command::Merchant(MerchantCommand::Create(args)) => server_cli::merchant_create(&args),
        Command::Audit { database } => run_audit(&database),
        Command::Migrate { database } => run_migrate(&database),
        Command::Keys(command) => remote::keys(command),
        Command::AdminKey => remote::admin_key(),
        Command::Config { defaults, config } => run_config(defaults, config.as_deref()),
        Command::Backup { database, to } => run_backup(&database, &to),
        Command::Copy { from, to } => run_copy(&from, &to),
        Command::RotateSecretsKey {
            database,
            old_key_file,
            new_key_file,
            generate,
        } => run_rotate_secrets_key(&database, old_key_file.as_deref(), &new_key_file, generate),
        Command::Bench(BenchCommand::Ledger(args)) => bench::run_ledger(&args),
        Command::Bench(BenchCommand::Http(args)) => bench_http::run(&args),
        Command::Bench(BenchCommand::Lightning(args)) => bench_lightning::run(&args),
        Command::Bench(BenchCommand::Ton(args)) => bench_ton::run(&args),
        Command::Internal(command) => internal::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The SQLite file of `url`; a PostgreSQL URL is refused with `on_postgres`, which says what to
/// do there instead.
fn database_path(url: &str, on_postgres: &str) -> anyhow::Result<PathBuf> {
    match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite(path) => Ok(path),
        DatabaseUrl::Postgres(url) => anyhow::bail!("{url}: {on_postgres}"),
    }
}

/// The environment `farthing serve` reads (after the `--config` file, before the flags).
const ENVIRONMENT: &str =
    "Environment (each overrides the configuration file; flags override both):
  FARTHING_CONFIG                      the TOML configuration file
  FARTHING_LISTEN                      address to listen on
  FARTHING_DATABASE                    database URL or path (test mode beside it as <name>-test)
  FARTHING_PUBLIC_URL                  where payers and Telegram reach this server
  FARTHING_ALLOW_PRIVATE_WEBHOOKS      1: webhooks may reach private addresses
  FARTHING_ALLOW_PRIVATE_NODES         1: Lightning nodes may be on private addresses
  FARTHING_LIGHTNING_POLL_INTERVAL_MS  how often the Lightning watcher polls
  FARTHING_RATE_LIMIT_API_KEY_PER_S    requests a second per API key
  FARTHING_ADMIN_KEY_SHA256            SHA-256 of the operator key (farthing admin-key); admin API off when unset
  FARTHING_SECRETS_KEY_FILE            file with the key that seals stored secrets (farthing rotate-secrets-key)
  FARTHING_SECRETS_KEY                 the key itself (64 hex digits), instead of the file
  FARTHING_LOG_FORMAT                  json: one JSON object per log line
  RUST_LOG                             log level (default info)
Every configuration key, its type and default: farthing config --defaults.";

fn run_config(defaults: bool, file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use farthing_server::config::Config;
    let config = if defaults {
        Config::default()
    } else {
        Config::load(file, |name| std::env::var(name).ok())?
    };
    print!("{}", config.reference().map_err(anyhow::Error::msg)?);
    Ok(ExitCode::SUCCESS)
}

fn run_migrate(database: &str) -> anyhow::Result<ExitCode> {
    if let DatabaseUrl::Postgres(url) = DatabaseUrl::parse(database)? {
        let version = farthing_store::pg::migrate(url.expose())?;
        println!("{url}: schema at version {version} (PostgreSQL)");
        let test = farthing_store::pg::test_mode_url(url.expose(), true)?
            .ok_or_else(|| anyhow::anyhow!("no schema for test-mode data"))?;
        let version = farthing_store::pg::migrate(&test)?;
        println!("{url}, test mode: schema at version {version} (PostgreSQL)");
        return Ok(ExitCode::SUCCESS);
    }
    let live = database_path(database, "")?;
    let test = farthing_server::config::test_database_path(&live);
    for path in [live, test] {
        let store = farthing_store::Store::open(&path, farthing_store::StoreOptions::default())
            .map_err(|error| match error {
                farthing_store::StoreError::Locked(_) => anyhow::anyhow!(
                    "{} is in use by a running farthing: the server migrates at start; stop it to migrate separately",
                    path.display()
                ),
                other => anyhow::Error::new(other),
            })?;
        store.shutdown();
        println!(
            "{}: schema at version {}",
            path.display(),
            farthing_store::schema_version()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn read_key(path: &std::path::Path) -> anyhow::Result<farthing_store::SecretsKey> {
    farthing_store::SecretsKey::from_file(path).map_err(anyhow::Error::msg)
}

fn run_rotate_secrets_key(
    database: &str,
    old_key_file: Option<&std::path::Path>,
    new_key_file: &std::path::Path,
    generate: bool,
) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    if generate {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let key = farthing_store::SecretsKey::generate()?;
        if let Some(parent) = new_key_file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(new_key_file)
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot create {} (it must not exist yet): {error}",
                    new_key_file.display()
                )
            })?;
        writeln!(file, "{}", key.to_hex())?;
        println!(
            "made a new secrets key {} in {}",
            key.id_hex(),
            new_key_file.display()
        );
    }
    let new = read_key(new_key_file)?;
    let previous = old_key_file.map(read_key).transpose()?;
    let secrets = farthing_store::Secrets {
        key: Some(Arc::new(new.clone())),
        previous: previous.into_iter().map(Arc::new).collect(),
        required: true,
    };
    let live = match DatabaseUrl::parse(database)? {
        DatabaseUrl::Sqlite(path) => path,
        DatabaseUrl::Postgres(url) => {
            let mut done = 0;
            farthing_store::rotate_secrets_postgres(url.expose(), &secrets, |schema, count| {
                done += 1;
                println!(
                    "schema {schema}: {count} secrets sealed under key {}",
                    new.id_hex()
                );
            })
            .map_err(|error| match done {
                0 => anyhow::anyhow!("{url}: {error}; nothing was changed"),
                _ => anyhow::anyhow!(
                    "{url}: {error}; the schemas listed above are sealed under the new key \
                     already: run the command again with the same keys to finish"
                ),
            })?;
            println!(
                "start every instance with secrets_key_file = {:?} (or FARTHING_SECRETS_KEY_FILE)",
                new_key_file.display().to_string()
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let test = farthing_server::config::test_database_path(&live);
    for path in [live, test] {
        if !path.exists() {
            continue;
        }
        let written = farthing_store::rotate_secrets(&path, &secrets).map_err(|error| match error {
            farthing_store::StoreError::Locked(_) => anyhow::anyhow!(
                "{} is in use by a running farthing: stop it, rotate, then start it with the new key",
                path.display()
            ),
            error => anyhow::anyhow!("{}: {error}; nothing was changed", path.display()),
        })?;
        println!(
            "{}: {written} secrets sealed under key {}",
            path.display(),
            new.id_hex()
        );
    }
    println!(
        "start the server with secrets_key_file = {:?} (or FARTHING_SECRETS_KEY_FILE)",
        new_key_file.display().to_string()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_copy(from: &str, to: &str) -> anyhow::Result<ExitCode> {
    use farthing_store::copy::Mode;
    let DatabaseUrl::Sqlite(live) = DatabaseUrl::parse(from)? else {
        anyhow::bail!(
            "--from takes the SQLite database to move (sqlite:data/farthing.db or a path)"
        );
    };
    let DatabaseUrl::Postgres(target) = DatabaseUrl::parse(to)? else {
        anyhow::bail!(
            "--to takes the PostgreSQL database to move to (postgres://user:password@host/db)"
        );
    };
    let test = farthing_server::config::test_database_path(&live);
    let test = test.exists().then_some(test);
    let name = |mode: Mode| match mode {
        Mode::Live => "live",
        Mode::Test => "test",
    };
    eprintln!(
        "copying {}{} to {target} (test mode: the schema beside it), in one transaction",
        live.display(),
        test.as_ref()
            .map(|test| format!(" and {}", test.display()))
            .unwrap_or_default()
    );
    let started = std::time::Instant::now();
    let mut shown = None;
    let reports = farthing_store::copy::sqlite_to_postgres(
        &live,
        test.as_deref(),
        target.expose(),
        |mode, table, rows, done| {
            if shown != Some(mode) {
                eprintln!("{} mode:", name(mode));
                shown = Some(mode);
            }
            if done {
                eprintln!("  {table}: {rows} rows");
            } else {
                eprintln!("  {table}: {rows} rows so far…");
            }
        },
    )
    .map_err(|error| match error {
        farthing_store::StoreError::Locked(path) => anyhow::anyhow!(
            "{} is in use by a running farthing: stop the server, then copy",
            path.display()
        ),
        other => anyhow::Error::new(other),
    })?;
    for (mode, report) in &reports {
        println!(
            "copied {} mode: {} rows in {} tables",
            name(*mode),
            report.rows(),
            report.tables.len()
        );
    }
    println!("in {:.1} s", started.elapsed().as_secs_f64());
    let mut ok = true;
    let mut urls = vec![(Mode::Live, target.expose().to_owned())];
    if let Some(test) = farthing_store::pg::test_mode_url(target.expose(), false)? {
        urls.push((Mode::Test, test));
    }
    for (mode, url) in urls {
        let audit = farthing_store::pg::audit(&url)?;
        println!(
            "audit of the copy ({} mode): {}",
            name(mode),
            if audit.is_ok() { "ok" } else { "FAILED" }
        );
        println!("{audit}");
        ok &= audit.is_ok();
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_backup(database: &str, to: &std::path::Path) -> anyhow::Result<ExitCode> {
    let live = database_path(
        database,
        "back PostgreSQL up with its own tools (pg_dump, or a base backup with WAL archiving), \
         then run `farthing audit --database` on the restored copy",
    )?;
    let mut pairs = vec![(live.clone(), to.to_path_buf())];
    let test = farthing_server::config::test_database_path(&live);
    if test.exists() {
        pairs.push((test, farthing_server::config::test_database_path(to)));
    }
    for (_, copy) in &pairs {
        if copy.exists() {
            anyhow::bail!("{} exists: back up to a new file", copy.display());
        }
    }
    let mut ok = true;
    for (source, copy) in &pairs {
        let started = std::time::Instant::now();
        let bytes = farthing_store::audit::backup_path(source, copy)?;
        println!(
            "copied {} to {} ({bytes} bytes in {:.1} s)",
            source.display(),
            copy.display(),
            started.elapsed().as_secs_f64()
        );
        let report = audit::audit_path(copy)?;
        println!(
            "audit of the copy: {}",
            if report.is_ok() { "ok" } else { "FAILED" }
        );
        if !report.is_ok() {
            println!("{report}");
        }
        ok &= report.is_ok();
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_audit(database: &str) -> anyhow::Result<ExitCode> {
    if let DatabaseUrl::Postgres(url) = DatabaseUrl::parse(database)? {
        let report = farthing_store::pg::audit(url.expose())?;
        println!("audit of {url}");
        println!("{report}");
        let mut ok = report.is_ok();
        // Test-mode data lives in the schema beside the live one; audit it too when it is there.
        if let Some(test) = farthing_store::pg::test_mode_url(url.expose(), false)? {
            let report = farthing_store::pg::audit(&test)?;
            println!();
            println!("audit of {url} (test mode)");
            println!("{report}");
            ok &= report.is_ok();
        }
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let path = database_path(database, "")?;
    let mut ok = true;
    let report = audit::audit_path(&path)?;
    println!("audit of {}", path.display());
    println!("{report}");
    ok &= report.is_ok();
    // Test-mode data lives beside the live database; audit it too when it is there.
    let test = farthing_server::config::test_database_path(&path);
    if test.exists() {
        let report = audit::audit_path(&test)?;
        println!();
        println!("audit of {} (test mode)", test.display());
        println!("{report}");
        ok &= report.is_ok();
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
