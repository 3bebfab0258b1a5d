//! Login Widget data: the raw query string, and the same fields signed so that the typed
//! parsing behind the hash check runs.
#![no_main]

use farthing_telegram::{login_widget, BotToken};
use libfuzzer_sys::fuzz_target;

#[path = "sign.rs"]
mod sign;

fuzz_target!(|data: &[u8]| {
    let token = BotToken::parse(sign::TOKEN).expect("the harness token is valid");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = login_widget::verify(text, &token, sign::FRESHNESS, sign::NOW_UNIX_S);
        let _ = BotToken::parse(text);
    }
    let signed = sign::signed_query(data, &sign::login_widget_key());
    let _ = login_widget::verify(&signed, &token, sign::FRESHNESS, sign::NOW_UNIX_S);
});
