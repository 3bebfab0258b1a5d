//! A signer for tests, written apart from the verifier (keys sorted rather than lines, its own
//! encoder), so that a shared mistake is less likely to hide; `tests/interop.rs` checks the
//! verifier against an independent implementation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Percent-encodes everything but RFC 3986 unreserved characters, like `encodeURIComponent`.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `key=value` pairs as a query string, in the given order.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn check_string(pairs: &[(&str, &str)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The Mini App `hash` of `pairs` (which must not contain `hash`) under `token`.
pub fn init_data_hash(pairs: &[(&str, &str)], token: &str) -> String {
    let secret = mac(b"WebAppData", token);
    hex(&mac(&secret, &check_string(pairs)))
}

/// `pairs` as `initData` with its `hash` appended.
pub fn signed_init_data(pairs: &[(&str, &str)], token: &str) -> String {
    format!("{}&hash={}", query(pairs), init_data_hash(pairs, token))
}

/// The third-party `signature` of `pairs` (without `hash`/`signature`) for `bot_id`.
pub fn third_party_signature(pairs: &[(&str, &str)], bot_id: u64, key: &SigningKey) -> String {
    let message = format!("{bot_id}:WebAppData\n{}", check_string(pairs));
    URL_SAFE_NO_PAD.encode(key.sign(message.as_bytes()).to_bytes())
}

/// The Login Widget `hash` of `pairs` under `token`.
pub fn login_hash(pairs: &[(&str, &str)], token: &str) -> String {
    let secret = Sha256::digest(token.as_bytes());
    hex(&mac(&secret, &check_string(pairs)))
}

/// A signing key from a fixed seed: deterministic tests, and no randomness source needed.
pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}
