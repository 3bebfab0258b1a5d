//! LNURL-auth callbacks (LUD-04): `k1`, `sig` (DER) and `key` as the wallet sends them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let mut parts = text.splitn(3, '\n');
    let k1 = parts.next().unwrap_or("");
    let sig = parts.next().unwrap_or("");
    let key = parts.next().unwrap_or("");
    let _ = farthing_lightning::lnurl::verify_auth(k1, sig, key);
    let _ = farthing_server::rails::lightning::lnurl::parse_k1(k1);
});
