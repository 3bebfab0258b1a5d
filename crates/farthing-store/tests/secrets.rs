//! Stored secrets sealed at rest (SPEC S5, `secrets.rs`): a bot token written under a key is
//! read back as written but is nowhere in the database files; another key cannot read it and
//! says which key it needs; a rotation re-seals everything (secrets stored in clear included)
//! and leaves no clear copy behind; without a key a live store refuses to store a secret.

use std::path::Path;
use std::sync::Arc;

use farthing_core::MerchantId;
use farthing_store::{Secrets, SecretsKey, Store, StoreError, StoreOptions, TelegramBot};

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
