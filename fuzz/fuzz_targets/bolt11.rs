//! BOLT #11 invoices, as a merchant or payer hands them to farthing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = farthing_lightning::bolt11::parse(text);
});
