//! Stateless signed tokens for short-lived sessions (the Mini App's and the dashboard's;
//! both live under `pages/`).
//!
//! A token is `<prefix><payload>.<mac>` (base64url, no padding): the payload is whatever the
//! caller packs (in the clear, so never a secret), the MAC is HMAC-SHA256 over the prefix and
//! the payload under a random key made when the process starts ([`SessionKey`]); on a
//! PostgreSQL database several instances share, a key derived from the secrets key, so that
//! any instance accepts a session another made. The prefix is signed too, so a token made for
//! one purpose can never be presented as another. Nothing is stored: with a random key, tokens
//! end when the server restarts; a derived one, when they expire.
//!
//! This module never decides what a token allows; its callers check expiry and meaning.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use farthing_core::{InvoiceId, PublicId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key that signs sessions: 32 random bytes made when the process starts. Its `Debug`
/// does not show it.
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// A new random key.
    pub fn random() -> SessionKey {
        let mut key = [0u8; 32];
        if let Err(error) = getrandom::fill(&mut key) {
            // Not recoverable; fall back to the id generator's own fallback rather than panic.
            tracing::error!(%error, "OS random source failed; sessions use a weaker key");
            let a: InvoiceId = crate::ids::new_id();
            let b: InvoiceId = crate::ids::new_id();
            key[..16].copy_from_slice(&a.raw().to_be_bytes());
            key[16..].copy_from_slice(&b.raw().to_be_bytes());
        }
        SessionKey(key)
    }

    /// The key given (derived from the secrets key, so that every instance on a shared
    /// database accepts the sessions of the others).
    pub fn from_bytes(key: [u8; 32]) -> SessionKey {
        SessionKey(key)
    }

    fn mac(&self, prefix: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(prefix.as_bytes());
        mac
    }

    /// The token `<prefix><payload>.<mac>`.
    pub(crate) fn sign(&self, prefix: &str, payload: &[u8]) -> String {
        let mut mac = self.mac(prefix);
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{prefix}{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The payload of `token` if it carries `prefix` and this key signed it (constant-time
    /// comparison); `None` otherwise.
    pub(crate) fn open(&self, prefix: &str, token: &str) -> Option<Vec<u8>> {
        let (payload, tag) = token.strip_prefix(prefix)?.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac(prefix);
        mac.update(&payload);
        mac.verify_slice(&tag).ok()?;
        Some(payload)
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// The big-endian `u64` at `at` (the caller checked the payload's length).
pub(crate) fn u64_at(payload: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&payload[at..at + 8]);
    u64::from_be_bytes(bytes)
}

/// The big-endian `u128` at `at` (the caller checked the payload's length).
pub(crate) fn u128_at(payload: &[u8], at: usize) -> u128 {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&payload[at..at + 16]);
    u128::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_with_its_key_and_prefix() {
        let key = SessionKey::random();
        let token = key.sign("abc_", b"payload");
        assert_eq!(key.open("abc_", &token).as_deref(), Some(&b"payload"[..]));
        assert_eq!(SessionKey::random().open("abc_", &token), None);
        // The same payload and MAC under another prefix: refused.
        let other = token.replacen("abc_", "xyz_", 1);
        assert_eq!(key.open("xyz_", &other), None);
        for bad in ["", "abc_", "abc_.", "abc_AAAA.AAAA", "abc_!!.!!"] {
            assert_eq!(key.open("abc_", bad), None);
        }
        assert_eq!(format!("{key:?}"), "SessionKey(..)");
    }
}
