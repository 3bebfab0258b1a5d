//! The payment instructions the server's rails put on invoices (the JSON objects kept per rail
//! in `Invoice::instructions`): Telegram invoice links (Stars, cards) and BOLT11s.

use farthing_core::invoice::Invoice;
use farthing_core::Rail;
use serde_json::{json, Value};

/// The `invoice_link` of `rail`'s instructions (Stars, card), if it made one.
pub fn invoice_link(invoice: &Invoice, rail: Rail) -> Option<String> {
    field(invoice, rail, "invoice_link")
}

/// The instructions object of a Telegram invoice link.
pub fn invoice_link_json(link: &str) -> String {
    json!({ "invoice_link": link }).to_string()
}

/// The BOLT11 of the Lightning instructions, if the node made one.
pub fn bolt11(invoice: &Invoice) -> Option<String> {
    field(invoice, Rail::Lightning, "bolt11")
}

/// The Lightning instructions object: the BOLT11 and its `lightning:` URI.
pub fn bolt11_json(bolt11: &str) -> String {
    json!({ "bolt11": bolt11, "uri": format!("lightning:{bolt11}") }).to_string()
}

fn field(invoice: &Invoice, rail: Rail, name: &str) -> Option<String> {
    let text = invoice.instructions.get(&rail)?;
    let value: Value = serde_json::from_str(text).ok()?;
    value.get(name)?.as_str().map(str::to_owned)
}

/// The BOLT11 of a Lightning instructions object.
pub fn bolt11_of(instructions: &str) -> Option<String> {
    let value: Value = serde_json::from_str(instructions).ok()?;
    value.get("bolt11")?.as_str().map(str::to_owned)
}
