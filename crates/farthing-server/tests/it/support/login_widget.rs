//! Telegram Login Widget data as Telegram makes it, for tests, written from
//! <https://core.telegram.org/widgets/login> ("Checking authorization") apart from the verifier
//! in `farthing-telegram`: `hash` = hex HMAC-SHA256 of the sorted `key=value` lines (all fields
//! but `hash`, joined by `\n`) under the key SHA-256(bot token).

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The widget's fields for user `id`, logged in at `auth_date_s`, signed with `token`.
pub fn login(id: u64, first_name: &str, auth_date_s: u64, token: &str) -> Map<String, Value> {
    let fields = json!({
        "id": id,
        "first_name": first_name,
        "username": format!("user{id}"),
        "photo_url": format!("https://t.me/i/userpic/320/user{id}.jpg"),
        "auth_date": auth_date_s,
    });
    let Value::Object(fields) = fields else {
        unreachable!()
    };
    signed(fields, token)
}

/// `fields` (strings and integers) with their `hash` under `token`.
pub fn signed(mut fields: Map<String, Value>, token: &str) -> Map<String, Value> {
    fields.remove("hash");
    let mut pairs: Vec<(&String, &Value)> = fields.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let lines: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(text) => format!("{k}={text}"),
            other => format!("{k}={other}"),
        })
        .collect();
    let secret = Sha256::digest(token.as_bytes());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).expect("any key length");
    mac.update(lines.join("\n").as_bytes());
    let hash: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fields.insert("hash".to_owned(), Value::String(hash));
    fields
}

/// The body of `POST /dashboard/login/telegram`: `bot_id` and the widget's fields.
pub fn body(bot_id: u64, fields: &Map<String, Value>) -> Value {
    let mut body = fields.clone();
    body.insert("bot_id".to_owned(), json!(bot_id));
    Value::Object(body)
}

/// The current Unix time in seconds.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}
