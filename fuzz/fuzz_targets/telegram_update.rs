//! Telegram updates, as a webhook or `getUpdates` delivers them (JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<farthing_botapi::Update>(data);
});
