//! Encryption of stored secrets at rest (SPEC S5): bot tokens, Telegram webhook secrets,
//! webhook signing secrets, Lightning node credentials, payment provider tokens and step-up
//! authenticator secrets are stored sealed with XChaCha20-Poly1305 under the operator's key.
//!
//! The sealing happens inside SQLite: every connection of a store gets two SQL functions,
//! `seal(x)` and `unseal(x)`, with the store's keys captured, and the few statements that write
//! or read a secret column call them (`VALUES (…, seal(?3))`, `SELECT unseal(token)`). So the
//! rest of the code never sees a sealed value, and re-encrypting a whole database under a new
//! key is one `UPDATE t SET c = seal(unseal(c))` per column (`rotate`).
//!
//! A sealed value is text: `fse1:` and base64url (no padding) of the key's 4-byte id, a 24-byte
//! random nonce and the ciphertext of a type byte (text or blob) and the secret, with its tag.
//! A value without the prefix is a secret stored in clear before the key was set: `unseal`
//! passes it through, `rotate` seals it.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::StoreError;

pub(crate) const PREFIX: &str = "fse1:";
const AAD: &[u8] = b"farthing stored secret v1";
const TEXT: u8 = 0;
const BLOB: u8 = 1;

/// The columns that hold secrets: (table, column).
pub const SECRET_COLUMNS: [(&str, &str); 7] = [
    ("telegram_bots", "token"),
    ("telegram_bots", "webhook_secret"),
    ("webhook_endpoints", "secret"),
    ("lightning_nodes", "config"),
    ("card_providers", "provider_token"),
    ("step_up_totp", "secret"),
    ("ton_wallets", "api_key"),
];

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 256-bit key that seals stored secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey([u8; 32]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretsKey(id {})", self.id_hex())
    }
}

impl SecretsKey {
    /// Reads a key written as 64 hex digits (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<SecretsKey, String> {
        let text = text.trim();
        let bad = || {
            "a secrets key is 64 hex digits (32 random bytes): make one with \
             `farthing rotate-secrets-key --new-key-file FILE --generate`"
                .to_owned()
        };
        if text.len() != 64 {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(SecretsKey(key))
    }

    /// Reads a key from its file (64 hex digits); the error names the file.
    pub fn from_file(path: &std::path::Path) -> Result<SecretsKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        SecretsKey::parse(&text).map_err(|message| format!("{}: {message}", path.display()))
    }

    /// A new random key.
    pub fn generate() -> Result<SecretsKey, StoreError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|error| StoreError::Secrets(format!("no random source: {error}")))?;
        Ok(SecretsKey(key))
    }

    /// The key as 64 hex digits (for its file).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key for `purpose`, derived from this one (SHA-256 over a label, the purpose and the
    /// key): the same on every instance that holds this key, and telling nothing about it.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(b"farthing derived key\0");
        hash.update(purpose.as_bytes());
        hash.update([0]);
        hash.update(self.0);
        hash.finalize().into()
    }

    /// The first 4 bytes of the key's SHA-256: which key sealed a value.
    fn id(&self) -> [u8; 4] {
        let digest = Sha256::digest(self.0);
        [digest[0], digest[1], digest[2], digest[3]]
    }

    /// The id in hex, for messages.
    pub fn id_hex(&self) -> String {
        hex(&self.id())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

/// The keys a store seals and unseals with.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    /// Seals new secrets and unseals what it sealed. `None`: secrets are stored as given.
    pub key: Option<Arc<SecretsKey>>,
    /// Earlier keys that may still have sealed stored values (during a rotation).
    pub previous: Vec<Arc<SecretsKey>>,
    /// Refuse to store a secret without a key (the live database).
    pub required: bool,
}

/// Why a secret could not be sealed or unsealed (reaches the caller as
/// [`StoreError::Secrets`], or [`StoreError::SecretsKeyMissing`] for a live secret without a
/// key).
#[derive(Debug)]
pub struct SecretsError(pub String, pub bool);

/// Marks a SQLite error message as a [`SecretsError`] (SQLite passes only the text of a
/// function's error back to the statement): the mark, `K` (missing key) or `S`, the message.
pub(crate) const MARK: char = '\u{1}';

impl std::fmt::Display for SecretsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{MARK}{}{}", if self.1 { 'K' } else { 'S' }, self.0)
    }
}

/// The secrets error a SQLite error message carries, if it carries one.
pub(crate) fn from_message(message: &str) -> Option<SecretsError> {
    let rest = message.strip_prefix(MARK)?;
    let missing_key = rest.starts_with('K');
    Some(SecretsError(
        rest.get(1..).unwrap_or("").to_owned(),
        missing_key,
    ))
}

impl std::error::Error for SecretsError {}

impl SecretsError {
    fn new(message: impl Into<String>) -> SecretsError {
        SecretsError(message.into(), false)
    }

    /// Whether the cause is a live secret to store without a key.
    pub fn is_missing_key(&self) -> bool {
        self.1
    }
}

fn seal(key: &SecretsKey, kind: u8, plain: &[u8]) -> Result<String, SecretsError> {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce)
        .map_err(|error| SecretsError::new(format!("no random source: {error}")))?;
    let mut message = Vec::with_capacity(plain.len() + 1);
    message.push(kind);
    message.extend_from_slice(plain);
    let sealed = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &message,
                aad: AAD,
            },
        )
        .map_err(|_| SecretsError::new("sealing a secret failed".to_owned()))?;
    let mut out = Vec::with_capacity(4 + 24 + sealed.len());
    out.extend_from_slice(&key.id());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
}

fn unseal(secrets: &Secrets, text: &str) -> Result<Value, SecretsError> {
    let Some(encoded) = text.strip_prefix(PREFIX) else {
        return Ok(Value::Text(text.to_owned()));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .filter(|bytes| bytes.len() > 4 + 24 + 16)
        .ok_or_else(|| {
            SecretsError::new("a stored secret is damaged (not a sealed value)".to_owned())
        })?;
    let (id, rest) = bytes.split_at(4);
    let (nonce, sealed) = rest.split_at(24);
    let key = secrets
        .key
        .iter()
        .chain(secrets.previous.iter())
        .find(|key| key.id() == id)
        .ok_or_else(|| {
            let id = hex(id);
            SecretsError::new(format!(
                "a stored secret is sealed with key {id}, which this server was not given: \
                 set the secrets key it was stored with (secrets_key_file or \
                 FARTHING_SECRETS_KEY)"
            ))
        })?;
    let plain = key
        .cipher()
        .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: AAD })
        .map_err(|_| SecretsError::new("a stored secret failed its authentication check: it was altered, or sealed under another key with the same id".to_owned()))?;
    match plain.split_first() {
        Some((&TEXT, text)) => String::from_utf8(text.to_vec())
            .map(Value::Text)
            .map_err(|_| SecretsError::new("a sealed text secret is not UTF-8".to_owned())),
        Some((&BLOB, blob)) => Ok(Value::Blob(blob.to_vec())),
        _ => Err(SecretsError::new(
            "a sealed secret has an unknown type".to_owned(),
        )),
    }
}

/// A value as stored or read, where SQL functions cannot seal it (PostgreSQL: `sql.rs` seals
/// what a statement binds to `seal(?N)` and unseals what it selects with `unseal(…)`).
#[derive(Debug)]
pub(crate) enum Plain {
    Null,
    Text(String),
    Bytes(Vec<u8>),
}

impl From<SecretsError> for StoreError {
    fn from(error: SecretsError) -> StoreError {
        if error.is_missing_key() {
            StoreError::SecretsKeyMissing(error.0)
        } else {
            StoreError::Secrets(error.0)
        }
    }
}

/// What `seal(x)` stores for `x` (text, bytes or NULL): sealed under the key; as given without
/// one; refused without one when sealing is required.
pub(crate) fn seal_value(secrets: &Secrets, value: &Plain) -> Result<Plain, SecretsError> {
    let (kind, bytes) = match value {
        Plain::Null => return Ok(Plain::Null),
        Plain::Text(text) => (TEXT, text.as_bytes()),
        Plain::Bytes(bytes) => (BLOB, bytes.as_slice()),
    };
    match &secrets.key {
        Some(key) => seal(key, kind, bytes).map(Plain::Text),
        None if secrets.required => Err(missing_key()),
        None => Ok(match value {
            Plain::Text(text) => Plain::Text(text.clone()),
            Plain::Bytes(bytes) => Plain::Bytes(bytes.clone()),
            Plain::Null => Plain::Null,
        }),
    }
}

/// What `unseal(x)` reads for a stored `x`: a sealed value opened; a value in clear as it is.
pub(crate) fn unseal_value(secrets: &Secrets, stored: Plain) -> Result<Plain, SecretsError> {
    let opened = |text: &str| {
        unseal(secrets, text).map(|value| match value {
            Value::Blob(bytes) => Plain::Bytes(bytes),
            Value::Text(text) => Plain::Text(text),
            _ => Plain::Null,
        })
    };
    match stored {
        Plain::Text(text) => opened(&text),
        // A blob is a secret stored in clear (step-up secrets before the key), or sealed text
        // in a blob column.
        Plain::Bytes(bytes) => match std::str::from_utf8(&bytes) {
            Ok(text) if text.starts_with(PREFIX) => opened(text),
            _ => Ok(Plain::Bytes(bytes)),
        },
        Plain::Null => Ok(Plain::Null),
    }
}

fn missing_key() -> SecretsError {
    SecretsError(
        "this server has no secrets key, and live-mode secrets (bot tokens, webhook \
         and provider secrets, node credentials, authenticators) are stored only \
         sealed: the operator sets secrets_key_file or FARTHING_SECRETS_KEY \
         (SECURITY.md)"
            .to_owned(),
        true,
    )
}

fn user_error(error: SecretsError) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(error))
}

/// Adds `seal` and `unseal` with `secrets` to `connection`.
pub(crate) fn register(connection: &Connection, secrets: &Secrets) -> Result<(), StoreError> {
    let sealing = secrets.clone();
    connection.create_scalar_function(
        "seal",
        1,
        FunctionFlags::SQLITE_UTF8,
        move |context: &Context<'_>| -> rusqlite::Result<Value> {
            let (kind, bytes) = match context.get_raw(0) {
                ValueRef::Null => return Ok(Value::Null),
                ValueRef::Text(text) => (TEXT, text),
                ValueRef::Blob(blob) => (BLOB, blob),
                ValueRef::Integer(_) | ValueRef::Real(_) => {
                    return Err(user_error(SecretsError::new(
                        "only text and blobs are sealed".to_owned(),
                    )))
                }
            };
            match &sealing.key {
                Some(key) => seal(key, kind, bytes).map(Value::Text).map_err(user_error),
                None if sealing.required => Err(user_error(missing_key())),
                None => Ok(match kind {
                    TEXT => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
                    _ => Value::Blob(bytes.to_vec()),
                }),
            }
        },
    )?;
    let unsealing = secrets.clone();
    connection.create_scalar_function(
        "unseal",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |context: &Context<'_>| -> rusqlite::Result<Value> {
            match context.get_raw(0) {
                ValueRef::Null => Ok(Value::Null),
                ValueRef::Text(text) => {
                    let text = std::str::from_utf8(text).map_err(|_| {
                        user_error(SecretsError::new("a stored secret is not UTF-8".to_owned()))
                    })?;
                    unseal(&unsealing, text).map_err(user_error)
                }
                // A blob is a secret stored in clear (step-up secrets before the key).
                ValueRef::Blob(blob) => match std::str::from_utf8(blob) {
                    Ok(text) if text.starts_with(PREFIX) => {
                        unseal(&unsealing, text).map_err(user_error)
                    }
                    _ => Ok(Value::Blob(blob.to_vec())),
                },
                ValueRef::Integer(i) => Ok(Value::Integer(i)),
                ValueRef::Real(r) => Ok(Value::Real(r)),
            }
        },
    )?;
    Ok(())
}

/// Re-seals every stored secret of `connection`'s database under `secrets.key` (unsealing with
/// it or `secrets.previous`; secrets in clear are sealed), in one transaction: all or nothing.
/// Returns how many values were written.
pub(crate) fn rotate(connection: &mut Connection, secrets: &Secrets) -> Result<u64, StoreError> {
    if secrets.key.is_none() {
        return Err(StoreError::Secrets("rotation needs the new key".to_owned()));
    }
    register(connection, secrets)?;
    // The values replaced must not stay readable in freed pages or in the WAL.
    connection.execute_batch("PRAGMA secure_delete = ON;")?;
    let transaction = connection.transaction()?;
    let mut written = 0u64;
    for (table, column) in SECRET_COLUMNS {
        let changed = transaction.execute(
            &format!(
                "UPDATE {table} SET {column} = seal(unseal({column})) WHERE {column} IS NOT NULL"
            ),
            [],
        )?;
        written += changed as u64;
    }
    transaction.commit()?;
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(key: Option<SecretsKey>, required: bool) -> Secrets {
        Secrets {
            key: key.map(Arc::new),
            previous: Vec::new(),
            required,
        }
    }

    fn connection(secrets: &Secrets) -> Connection {
        let connection = Connection::open_in_memory().expect("open");
        register(&connection, secrets).expect("register");
        connection
    }

    fn value(connection: &Connection, sql: &str, param: Value) -> rusqlite::Result<Value> {
        connection.query_row(sql, [param], |row| row.get(0))
    }

    #[test]
    fn sealed_values_round_trip_and_keep_their_type() {
        let key = SecretsKey::generate().expect("key");
        let with = secrets(Some(key.clone()), true);
        let c = connection(&with);
        let text = Value::Text("123:token".to_owned());
        let sealed = value(&c, "SELECT seal(?1)", text.clone()).expect("seal");
        let Value::Text(sealed_text) = &sealed else {
            panic!("sealed is text")
        };
        assert!(sealed_text.starts_with(PREFIX));
        assert!(!sealed_text.contains("token"));
        // A fresh nonce each time.
        assert_ne!(
            value(&c, "SELECT seal(?1)", text.clone()).expect("seal"),
            sealed
        );
        assert_eq!(
            value(&c, "SELECT unseal(?1)", sealed.clone()).expect("unseal"),
            text
        );
        let blob = Value::Blob(vec![0, 1, 2, 255]);
        let sealed_blob = value(&c, "SELECT seal(?1)", blob.clone()).expect("seal");
        assert_eq!(
            value(&c, "SELECT unseal(?1)", sealed_blob).expect("unseal"),
            blob
        );
        // Clear values from before the key pass through.
        assert_eq!(
            value(&c, "SELECT unseal(?1)", text.clone()).expect("clear"),
            text
        );
        assert_eq!(
            value(&c, "SELECT unseal(?1)", blob.clone()).expect("clear"),
            blob
        );

        // Another key cannot read it and says which key it needs.
        let other = connection(&secrets(Some(SecretsKey::generate().expect("key")), true));
        let error = value(&other, "SELECT unseal(?1)", sealed.clone()).expect_err("wrong key");
        assert!(error.to_string().contains(&key.id_hex()), "{error}");
        // A flipped byte fails the tag.
        let Value::Text(mut tampered) = sealed else {
            unreachable!()
        };
        let last = tampered.pop().expect("char");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(value(&c, "SELECT unseal(?1)", Value::Text(tampered)).is_err());
    }

    #[test]
    fn without_a_key_live_secrets_are_refused_and_test_secrets_stay_as_given() {
        let live = connection(&secrets(None, true));
        let error =
            value(&live, "SELECT seal(?1)", Value::Text("t".to_owned())).expect_err("refused");
        assert!(
            error.to_string().contains("FARTHING_SECRETS_KEY"),
            "{error}"
        );
        let test = connection(&secrets(None, false));
        assert_eq!(
            value(&test, "SELECT seal(?1)", Value::Text("t".to_owned())).expect("as given"),
            Value::Text("t".to_owned())
        );
    }

    #[test]
    fn keys_parse_from_hex_only() {
        let key = SecretsKey::generate().expect("key");
        assert_eq!(
            SecretsKey::parse(&format!(" {}\n", key.to_hex())).expect("parse"),
            key
        );
        assert!(SecretsKey::parse("abc").is_err());
        assert!(SecretsKey::parse(&"zz".repeat(32)).is_err());
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }
}
