//! Stored secrets sealed at rest (SPEC S5, `secrets.rs`): a bot token written under a key is
//! read back as written but is nowhere in the database files; another key cannot read it and
//! says which key it needs; a rotation re-seals everything (secrets stored in clear included)
//! and leaves no clear copy behind; without a key a live store refuses to store a secret.

mod support;

use std::path::Path;
use std::sync::Arc;

use farthing_core::{EventId, MerchantId, WebhookEndpointId};
use farthing_store::pg::PgLedger;
use farthing_store::{
    EventRecord, Ledger, Secrets, SecretsKey, Store, StoreError, StoreOptions, TelegramBot,
    WebhookEndpoint,
};
use support::postgres::Postgres;

const TOKEN: &str = "4242:AAH-sealed-token-Zq9";
const HOOK: &str = "hook-secret-Wm2";

fn bot() -> TelegramBot {
    TelegramBot {
        merchant: MerchantId(7),
        bot_id: 4242,
        username: "shop_bot".to_owned(),
        token: TOKEN.to_owned(),
        api_url: "https://api.telegram.org".to_owned(),
        mode: "webhook".to_owned(),
        webhook_secret: Some(HOOK.to_owned()),
        created_at_ns: 1,
        updated_at_ns: 1,
    }
}

fn secrets(key: Option<&SecretsKey>, required: bool) -> Secrets {
    Secrets {
        key: key.cloned().map(Arc::new),
        previous: Vec::new(),
        required,
    }
}

fn open(path: &Path, secrets: Secrets) -> Store {
    Store::open(
        path,
        StoreOptions {
            secrets,
            ..StoreOptions::default()
        },
    )
    .expect("the store opens")
}

fn store_bot(store: &Store) -> Result<(), StoreError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime
        .block_on(store.run(|tx| tx.upsert_telegram_bot(&bot())))
        .expect("the writer runs")
}

/// Every byte of the database and its WAL.
fn files(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("database");
    if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn secrets_are_sealed_read_back_and_rotated_without_a_clear_copy() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("farthing.db");
    let first = SecretsKey::generate().expect("key");
    let second = SecretsKey::generate().expect("key");

    // Before any key (an older farthing): stored as given.
    let store = open(&path, secrets(None, false));
    store_bot(&store).expect("stored in clear");
    assert_eq!(store.secrets_census().expect("census"), (0, 2));
    store.shutdown();
    drop(store);
    assert!(contains(&files(&path), TOKEN));

    // Without a key, the live store refuses to store one, and says what to do.
    let store = open(&path, secrets(None, true));
    match store_bot(&store) {
        Err(StoreError::SecretsKeyMissing(message)) => {
            assert!(message.contains("FARTHING_SECRETS_KEY"), "{message}")
        }
        other => panic!("expected SecretsKeyMissing, got {other:?}"),
    }
    store.shutdown();
    drop(store);

    // Rotation seals what is in clear; nothing readable stays in the files.
    let written =
        farthing_store::rotate_secrets(&path, &secrets(Some(&first), true)).expect("rotate");
    assert_eq!(written, 2);
    let bytes = files(&path);
    assert!(!contains(&bytes, TOKEN), "the token is still in the files");
    assert!(
        !contains(&bytes, HOOK),
        "the webhook secret is still in the files"
    );

    let store = open(&path, secrets(Some(&first), true));
    assert_eq!(store.secrets_census().expect("census"), (2, 0));
    let read = store
        .read(|reader| reader.telegram_bot(MerchantId(7)))
        .expect("read")
        .expect("the bot");
    assert_eq!(
        (read.token.as_str(), read.webhook_secret.as_deref()),
        (TOKEN, Some(HOOK))
    );
    // Written again under the key: sealed again.
    store_bot(&store).expect("stored sealed");
    store.shutdown();
    drop(store);
    assert!(!contains(&files(&path), TOKEN));

    // The wrong key cannot read it, and the error names the key it needs.
    let store = open(&path, secrets(Some(&second), true));
    assert_eq!(
        store.secrets_census().expect("counted without opening"),
        (2, 0)
    );
    let error = store.verify_secrets().expect_err("wrong key");
    assert!(error.to_string().contains(&first.id_hex()), "{error}");
    store.shutdown();
    drop(store);

    // Rotating to the second key needs the first to open what is there.
    let error = farthing_store::rotate_secrets(&path, &secrets(Some(&second), true))
        .expect_err("the old key is missing");
    assert!(error.to_string().contains(&first.id_hex()), "{error}");
    let mut both = secrets(Some(&second), true);
    both.previous.push(Arc::new(first.clone()));
    assert_eq!(
        farthing_store::rotate_secrets(&path, &both).expect("rotate"),
        2
    );
    let store = open(&path, secrets(Some(&second), true));
    let read = store
        .read(|reader| reader.telegram_bot(MerchantId(7)))
        .expect("read with the new key")
        .expect("the bot");
    assert_eq!(read.token, TOKEN);
    store.shutdown();
}

/// The values of `column` in `table` as stored, read past farthing.
fn stored_text(url: &str, table: &str, column: &str) -> Vec<String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    client
        .query(&format!("SELECT {column} FROM {table}"), &[])
        .expect("select")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn pg_open(url: &str, secrets: Secrets) -> Ledger {
    Ledger::Postgres(
        PgLedger::open(
            url,
            StoreOptions {
                secrets,
                ..StoreOptions::default()
            },
        )
        .expect("the ledger opens"),
    )
}

/// The same on PostgreSQL, which has no `seal`/`unseal` functions: the store seals what a
/// statement binds to `seal(?N)` and unseals what it selects with `unseal(…)` itself. A bot's
/// token and webhook secret and a webhook endpoint's signing secret are read back as written
/// (through a job and a reader, a delivery joining the endpoint), stored only sealed; another
/// key cannot read them and says which it needs; without a key a live store refuses them.
#[test]
fn secrets_are_sealed_on_postgres_too() {
    let server = Postgres::start();
    let url = server.schema();
    let key = SecretsKey::generate().expect("key");
    let ledger = pg_open(&url, secrets(Some(&key), true));
    let endpoint = WebhookEndpoint {
        id: WebhookEndpointId(5),
        merchant: MerchantId(7),
        url: "https://shop.example/hooks".to_owned(),
        secret: "whsec_sealed_Qx3".to_owned(),
        events: vec!["*".to_owned()],
        status: "enabled".to_owned(),
        disabled_reason: None,
        created_at_ns: 1,
    };
    let written = endpoint.clone();
    ledger
        .execute(move |tx| {
            tx.upsert_telegram_bot(&bot())?;
            tx.insert_endpoint(&written)?;
            tx.insert_event(&EventRecord {
                id: EventId(9),
                merchant: MerchantId(7),
                event_type: "charge.succeeded".to_owned(),
                data: "{}".to_owned(),
                created_at_ns: 2,
            })
        })
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("stored sealed");

    let (read, due) = ledger
        .read(|reader| {
            Ok((
                reader.telegram_bot(MerchantId(7))?,
                reader.due_deliveries(u64::MAX >> 1, 10)?,
            ))
        })
        .expect("read");
    let read = read.expect("the bot");
    assert_eq!(
        (read.token.as_str(), read.webhook_secret.as_deref()),
        (TOKEN, Some(HOOK))
    );
    assert_eq!(due.len(), 1, "the event is due for the endpoint");
    assert_eq!(due[0].2, endpoint, "the endpoint reads back as written");
    assert_eq!(due[0].1.event_type, "charge.succeeded");
    // A job reads them unsealed too.
    let in_job = ledger
        .execute(|tx| tx.endpoint(WebhookEndpointId(5)))
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("read in a job");
    assert_eq!(in_job.map(|e| e.secret), Some(endpoint.secret.clone()));

    // A step-up authenticator: its secret column is BYTEA on PostgreSQL (SQLite's BLOB).
    let totp = farthing_store::Authenticator {
        secret: b"totp-seed-K7p2".to_vec(),
        active: true,
        last_step: None,
        recovery: vec!["recovery-hash".to_owned()],
        failures: 0,
        failures_since_ns: 0,
    };
    let stored = totp.clone();
    ledger
        .execute(move |tx| tx.put_authenticator(MerchantId(7), &stored))
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("stored sealed");
    let read_totp = ledger
        .read(|reader| reader.authenticator(MerchantId(7)))
        .expect("read")
        .expect("the authenticator");
    assert_eq!(read_totp.secret, totp.secret);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let raw: Vec<u8> = client
        .query_one("SELECT secret FROM step_up_totp", &[])
        .expect("select")
        .get(0);
    assert!(
        raw.starts_with(b"fse1:"),
        "the authenticator is stored sealed"
    );
    // The start-up checks see all four, sealed, and open them with this key.
    let Ledger::Postgres(pg) = &ledger else {
        panic!("a PostgreSQL ledger")
    };
    let store = farthing_store::Store::from(pg.clone());
    assert_eq!(store.secrets_census().expect("census"), (4, 0));
    store.verify_secrets().expect("this key opens them");

    for (table, column) in [
        ("telegram_bots", "token"),
        ("telegram_bots", "webhook_secret"),
        ("webhook_endpoints", "secret"),
    ] {
        for value in stored_text(&url, table, column) {
            assert!(
                value.starts_with("fse1:"),
                "{table}.{column} is stored sealed: {value}"
            );
            for secret in [TOKEN, HOOK, endpoint.secret.as_str()] {
                assert!(
                    !value.contains(secret),
                    "{table}.{column} holds a secret in clear"
                );
            }
        }
    }
    ledger.shutdown();

    // Another key cannot read them, and says which key it needs; the start-up check finds it
    // (the step-up secret, a BYTEA column, included: it alone is left sealed with the key).
    let other = SecretsKey::generate().expect("key");
    let wrong = pg_open(&url, secrets(Some(&other), true));
    let Ledger::Postgres(pg) = &wrong else {
        panic!("a PostgreSQL ledger")
    };
    let wrong_store = farthing_store::Store::from(pg.clone());
    match wrong_store.verify_secrets() {
        Err(StoreError::Secrets(message)) => assert!(message.contains(&key.id_hex()), "{message}"),
        other => panic!("the wrong key must be found at start: {other:?}"),
    }

    match wrong.read(|reader| reader.telegram_bot(MerchantId(7))) {
        Err(StoreError::Secrets(message)) => {
            assert!(message.contains(&key.id_hex()), "{message}");
        }
        other => panic!("expected a secrets error, got {other:?}"),
    }
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    client
        .batch_execute("DELETE FROM telegram_bots; DELETE FROM webhook_endpoints")
        .expect("delete");
    match wrong_store.verify_secrets() {
        Err(StoreError::Secrets(message)) => assert!(message.contains(&key.id_hex()), "{message}"),
        other => panic!("the BYTEA secret is checked too: {other:?}"),
    }
    wrong.shutdown();

    // Without a key, a live store refuses to store a secret and says what to do.
    let keyless = pg_open(&url, secrets(None, true));
    let refused = keyless
        .execute(|tx| tx.upsert_telegram_bot(&bot()))
        .expect("queued")
        .wait()
        .expect("the batch committed");
    match refused {
        Err(StoreError::SecretsKeyMissing(message)) => {
            assert!(message.contains("FARTHING_SECRETS_KEY"), "{message}");
        }
        other => panic!("expected SecretsKeyMissing, got {other:?}"),
    }
    keyless.shutdown();
}

/// `farthing copy` moves sealed secrets as they are, and the same key opens them on
/// PostgreSQL — the step-up secret too, which SQLite keeps as sealed text in a BLOB column and
/// PostgreSQL in BYTEA.
#[test]
fn a_copied_shop_opens_its_sealed_secrets_with_the_same_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("farthing.db");
    let key = SecretsKey::generate().expect("key");
    let totp = farthing_store::Authenticator {
        secret: b"totp-seed-Q4x8".to_vec(),
        active: true,
        last_step: Some(3),
        recovery: vec!["recovery-hash".to_owned()],
        failures: 1,
        failures_since_ns: 5,
    };
    let store = open(&path, secrets(Some(&key), true));
    store_bot(&store).expect("stored sealed");
    let stored = totp.clone();
    store
        .execute(move |tx| tx.put_authenticator(MerchantId(7), &stored))
        .expect("queued")
        .wait()
        .expect("committed")
        .expect("stored sealed");
    store.shutdown();
    drop(store);

    let server = Postgres::start();
    let url = server.schema();
    farthing_store::copy::sqlite_to_postgres(&path, None, &url, |_, _, _, _| {}).expect("copied");
    let ledger = pg_open(&url, secrets(Some(&key), true));
    let (bot_read, totp_read) = ledger
        .read(|reader| {
            Ok((
                reader.telegram_bot(MerchantId(7))?,
                reader.authenticator(MerchantId(7))?,
            ))
        })
        .expect("read on PostgreSQL");
    assert_eq!(bot_read.map(|b| b.token), Some(TOKEN.to_owned()));
    assert!(
        totp_read == Some(totp),
        "the authenticator reads back as stored"
    );
    ledger.shutdown();
}
