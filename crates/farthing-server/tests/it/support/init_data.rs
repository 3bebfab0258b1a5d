//! Mini App `initData` as Telegram makes it, for tests: the bot-token `hash` (HMAC-SHA256 under
//! the `WebAppData`-derived key) and the third-party Ed25519 `signature`, written here from
//! <https://core.telegram.org/bots/webapps> apart from the verifier in `farthing-telegram`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Percent-encodes like `encodeURIComponent` (what Telegram's query strings use).
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

fn query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn check_string(pairs: &[(&str, String)]) -> String {
    let mut sorted: Vec<_> = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The `hash` of `pairs` under the bot `token`.
pub fn hash(pairs: &[(&str, String)], token: &str) -> String {
    let secret = mac(b"WebAppData", token.as_bytes());
    mac(&secret, check_string(pairs).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `pairs` with their `hash` under `token` appended.
pub fn signed(pairs: &[(&str, String)], token: &str) -> String {
    format!("{}&hash={}", query(pairs), hash(pairs, token))
}

/// `pairs` with only the third-party `signature` for `bot_id` (no `hash`).
pub fn third_party(pairs: &[(&str, String)], bot_id: u64, key: &SigningKey) -> String {
    let message = format!("{bot_id}:WebAppData\n{}", check_string(pairs));
    let signature = URL_SAFE_NO_PAD.encode(key.sign(message.as_bytes()).to_bytes());
    let mut all = pairs.to_vec();
    all.push(("signature", signature));
    query(&all)
}

/// The current Unix time in seconds.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The usual fields: a user and a fresh `auth_date`.
pub fn fields(user: &str, auth_date_s: u64) -> Vec<(&'static str, String)> {
    vec![
        ("auth_date", auth_date_s.to_string()),
        ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc".to_owned()),
        ("user", user.to_owned()),
    ]
}

/// A user object as Telegram writes it.
pub fn user(id: u64, first_name: &str, language_code: &str) -> String {
    format!(
        r#"{{"id":{id},"first_name":"{first_name}","username":"user{id}","language_code":"{language_code}","allows_write_to_pm":true}}"#
    )
}
