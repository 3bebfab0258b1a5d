//! Mini App init data: the raw string as a client sends it, and the same fields signed so that
//! the typed parsing behind the hash check runs.
#![no_main]

use farthing_telegram::{init_data, BotToken};
use libfuzzer_sys::fuzz_target;

#[path = "sign.rs"]
mod sign;

fuzz_target!(|data: &[u8]| {
    let token = BotToken::parse(sign::TOKEN).expect("the harness token is valid");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = init_data::verify_with_bot_token(text, &token, sign::FRESHNESS, sign::NOW_UNIX_S);
    }
    let signed = sign::signed_query(data, &sign::web_app_key());
    let _ = init_data::verify_with_bot_token(&signed, &token, sign::FRESHNESS, sign::NOW_UNIX_S);
});
