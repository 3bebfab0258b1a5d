// Shared by the init data and Login Widget targets, each of which uses one of the two keys.
#![allow(dead_code)]

//! Signs fuzzed Telegram field lists the way Telegram does, so that the fuzzer reaches the
//! parsing that runs only after a valid hash (a random `hash` almost never matches).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The bot token the targets sign with.
pub const TOKEN: &str = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

/// A wide window: freshness is not what these targets test.
pub const FRESHNESS: farthing_telegram::Freshness = farthing_telegram::Freshness {
    max_age_s: u64::MAX,
    max_future_skew_s: u64::MAX,
};

pub const NOW_UNIX_S: u64 = 1_800_000_000;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `query`'s fields without `hash`, then `hash` = HMAC-SHA256(`secret_key`, data-check-string)
/// appended, as a query string.
pub fn signed_query(query: &[u8], secret_key: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query)
        .filter(|(key, _)| key != "hash")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    pairs.sort();
    let check: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let hash = hex(&hmac(secret_key, check.join("\n").as_bytes()));
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &pairs {
        out.append_pair(key, value);
    }
    out.append_pair("hash", &hash);
    out.finish()
}

/// The Mini App's secret key: HMAC-SHA256("WebAppData", token).
pub fn web_app_key() -> Vec<u8> {
    hmac(b"WebAppData", TOKEN.as_bytes())
}

/// The Login Widget's secret key: SHA-256(token).
pub fn login_widget_key() -> Vec<u8> {
    use sha2::Digest;
    Sha256::digest(TOKEN.as_bytes()).to_vec()
}
