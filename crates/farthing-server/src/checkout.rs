//! The checkout page (v0): `GET /pay/{invoice}` renders on the server (no build step), shows
//! the merchant, amount, status, a live countdown and the accepted rails, and follows the
//! invoice's status from the server (`GET /pay/{invoice}/status`) until it is paid or expired.
//! In test mode it offers a "Pay (sandbox)" button (`POST /pay/{invoice}/sandbox`).
//!
//! An open BTC invoice that accepts `lightning` gets a Lightning section (SPEC RL3): the QR code
//! of its BOLT11 (drawn here as inline SVG, so the page needs no script or image request for
//! it), the BOLT11 with a Copy button, a `lightning:` link and, when a WebLN wallet extension
//! is present, a "Pay with wallet" button. When the invoice has no BOLT11 yet (the node failed
//! when it was created), loading the page asks the node again; if that fails too the section
//! says so and offers a reload, and the rest of the page works as usual.
//!
//! The invoice id is the capability: ids carry 80 random bits, so a page can't be guessed.
//! The page never decides that anything is paid; it only shows what the server says (P1).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use farthing_core::invoice::{Invoice, InvoiceAmount, InvoiceStatus};
use farthing_core::{Currency, InvoiceId, PublicId, Rail};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use serde_json::json;

use crate::api::test_mode::sandbox_pay;
use crate::error::ApiError;
use crate::render::unix_s;
use crate::state::{AppState, Mode};

fn find(state: &AppState, id: &str) -> Result<(Invoice, Mode, String), ApiError> {
    let invoice_id: InvoiceId =
        InvoiceId::parse(id).map_err(|_| ApiError::not_found("invoice", id))?;
    for (mode, store) in state.stores() {
        let found = store.read(|reader| {
            let Some(invoice) = reader.invoice(invoice_id)? else {
                return Ok(None);
            };
            let name = reader
                .merchant(invoice.merchant)?
                .map(|m| m.name)
                .unwrap_or_default();
            Ok(Some((invoice, name)))
        })?;
        if let Some((invoice, name)) = found {
            return Ok((invoice, mode, name));
        }
    }
    Err(ApiError::not_found("invoice", id))
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn amount_text(invoice: &Invoice) -> String {
    // Micropayments in BTC read better in satoshis (BTC's minor unit): "1000 sats", not
    // "0.00001000 BTC".
    if invoice.currency == farthing_core::Currency::BTC {
        return match &invoice.amount {
            InvoiceAmount::Fixed(sats) => format!("{sats} sats"),
            InvoiceAmount::Open {
                min_minor,
                max_minor,
                ..
            } => format!("{min_minor} – {max_minor} sats (you choose)"),
        };
    }
    let decimal = |minor: u64| {
        farthing_core::Money::new(minor, invoice.currency)
            .map(|m| m.to_decimal_string())
            .unwrap_or_else(|_| minor.to_string())
    };
    match &invoice.amount {
        InvoiceAmount::Fixed(minor) => format!("{} {}", decimal(*minor), invoice.currency),
        InvoiceAmount::Open {
            min_minor,
            max_minor,
            ..
        } => format!(
            "{} – {} {} (you choose)",
            decimal(*min_minor),
            decimal(*max_minor),
            invoice.currency
        ),
    }
}

fn status_json(invoice: &Invoice) -> serde_json::Value {
    json!({
        "id": invoice.id.encode(),
        "status": invoice.status.as_str(),
        "expires_at": unix_s(invoice.expires_at_ns),
        "amount_paid": invoice.payment.map(|p| p.amount_minor),
        "paid_rail": invoice.payment.map(|p| p.rail.as_str()),
    })
}

/// How long the page waits for the merchant's node to make a missing BOLT11. Shorter than the
/// node client's own call timeout: a payer looking at a blank page for long is worse than
/// "try again" (a BOLT11 the node makes after we stopped waiting is never shown, so never paid).
const BOLT11_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// Whether the page shows a Lightning section: the invoice is open, in BTC (minor unit: the
/// satoshi) and accepts `lightning`.
fn offers_lightning(invoice: &Invoice) -> bool {
    invoice.status == InvoiceStatus::Open
        && invoice.currency == Currency::BTC
        && invoice.rails.contains(&Rail::Lightning)
}

/// What the Lightning section shows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LightningOffer {
    /// No section (see [`offers_lightning`]).
    Hidden,
    /// The BOLT11 to pay.
    Bolt11(String),
    /// The node could not make a BOLT11 just now: the payer may reload to ask again.
    Unavailable,
    /// The invoice can't carry a BOLT11 (an amountless invoice, or no node configured).
    NotPossible,
}

/// The invoice's BOLT11, asking the merchant's node for one if the invoice has none yet.
async fn lightning_offer(state: &AppState, mode: Mode, invoice: &Invoice) -> LightningOffer {
    if !offers_lightning(invoice) {
        return LightningOffer::Hidden;
    }
    let attached = tokio::time::timeout(
        BOLT11_WAIT,
        crate::lightning::attach_bolt11(state, mode, invoice),
    )
    .await;
    match attached {
        Ok(Ok(Some(bolt11))) => LightningOffer::Bolt11(bolt11),
        Ok(Ok(None)) => LightningOffer::NotPossible,
        Ok(Err(error)) => {
            tracing::warn!(invoice = %invoice.id.encode(), code = error.code, message = %error.message, "checkout: no BOLT11");
            LightningOffer::Unavailable
        }
        Err(_) => {
            tracing::warn!(invoice = %invoice.id.encode(), wait_s = BOLT11_WAIT.as_secs(), "checkout: the Lightning node did not answer in time");
            LightningOffer::Unavailable
        }
    }
}

/// The QR code of `data` (error correction level M) as an inline `<svg>` element, or `None`
/// when `data` does not fit in a QR code.
fn qr_svg(data: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).ok()?;
    // One unit per module keeps the path short (the renderer writes one rectangle per dark
    // module); the page's CSS scales the drawing to the screen.
    let svg = code.render::<svg::Color>().module_dimensions(1, 1).build();
    // Inline SVG in HTML takes no XML declaration.
    let start = svg.find("<svg")?;
    Some(svg[start..].to_owned())
}

/// What the QR code carries for `bolt11`: the whole URI in upper case, so that it all fits
/// QR's alphanumeric mode (5.5 bits a character instead of 8: a smaller, easier to scan code).
/// Bech32 and URI schemes are case-insensitive, and wallets read `LIGHTNING:LNBC…`.
fn lightning_qr_data(bolt11: &str) -> String {
    format!("LIGHTNING:{}", bolt11.to_ascii_uppercase())
}

/// The Lightning section of the page, or nothing.
fn lightning_html(invoice: &Invoice, offer: &LightningOffer) -> String {
    if !offers_lightning(invoice) {
        return String::new();
    }
    let body = match offer {
        LightningOffer::Hidden => return String::new(),
        LightningOffer::Bolt11(bolt11) => {
            let qr = qr_svg(&lightning_qr_data(bolt11)).unwrap_or_else(|| {
                "<p class=note>This invoice is too long for a QR code: copy it instead.</p>"
                    .to_owned()
            });
            format!(
                r#"<div class=qr id=lightning-qr role=img aria-label="QR code of the Lightning invoice">{qr}</div>
<div class=copy><input id=lightning-bolt11 readonly value="{bolt11}" aria-label="Lightning invoice" spellcheck=false><button id=lightning-copy type=button>Copy</button></div>
<a class=wallet-link id=lightning-open href="lightning:{bolt11}">Open in wallet</a>
<button id=webln-pay type=button hidden>Pay with wallet</button>
<p class=error id=lightning-error role=alert hidden></p>"#,
                bolt11 = escape(bolt11),
            )
        }
        LightningOffer::Unavailable => format!(
            r#"<p class=error id=lightning-error role=alert>Lightning is unavailable right now, <a id=lightning-retry href="/pay/{id}">try again</a>.</p>"#,
            id = escape(&invoice.id.encode()),
        ),
        LightningOffer::NotPossible => {
            r#"<p class=error id=lightning-error role=alert>This invoice can't be paid with Lightning.</p>"#.to_owned()
        }
    };
    format!("<section class=lightning id=lightning>\n<h2>Lightning</h2>\n{body}\n</section>")
}

/// `GET /pay/{id}/status`: what the page polls.
pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (invoice, _, _) = find(&state, &id)?;
    let mut response = axum::Json(status_json(&invoice)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-store".parse().map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// `POST /pay/{id}/sandbox`: the test-mode button. Refused for live invoices.
pub async fn sandbox(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (invoice, mode, _) = find(&state, &id)?;
    if mode != Mode::Test {
        return Err(ApiError::forbidden(
            "test_mode_only",
            "the sandbox button only pays test-mode invoices",
        ));
    }
    let url = state.checkout_url(&id);
    let (merchant, invoice_id) = (invoice.merchant, invoice.id);
    let amount = match invoice.amount {
        InvoiceAmount::Fixed(_) => None,
        InvoiceAmount::Open {
            ref presets,
            min_minor,
            ..
        } => Some(presets.first().copied().unwrap_or(min_minor)),
    };
    let object = state
        .store(Mode::Test)
        .run(move |tx| sandbox_pay(tx, merchant, invoice_id, None, amount, None, &url))
        .await??;
    state.deliveries().notify_one();
    Ok((StatusCode::OK, axum::Json(object)).into_response())
}

/// `GET /pay/{id}`: the page.
pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _headers: HeaderMap,
) -> Response {
    let (invoice, mode, merchant) = match find(&state, &id) {
        Ok(found) => found,
        Err(error) => {
            let body = format!(
                "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>Not found</title><body style=\"font-family:system-ui;padding:2rem\"><h1>Invoice not found</h1><p>{}</p>",
                escape(&error.message)
            );
            return (error.status, Html(body)).into_response();
        }
    };
    let lightning = lightning_offer(&state, mode, &invoice).await;
    let body = render_page(&invoice, mode, &merchant, &lightning);
    ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

/// The page's HTML (everything in it escaped).
fn render_page(
    invoice: &Invoice,
    mode: Mode,
    merchant: &str,
    lightning: &LightningOffer,
) -> String {
    let rails: Vec<&str> = invoice.rails.iter().map(|r| r.as_str()).collect();
    let sandbox_button = if mode == Mode::Test {
        "<button id=sandbox type=button>Pay (sandbox)</button><p class=note>Test mode: no real money moves.</p>"
    } else {
        ""
    };
    let status = status_json(invoice);
    format!(
        r#"<!doctype html>
<html lang=en>
<head>
<meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>Pay {merchant_title}</title>
<style>
body{{font-family:system-ui,-apple-system,sans-serif;margin:0;background:#f6f6f4;color:#1b1b1b}}
main{{max-width:26rem;margin:0 auto;padding:1.5rem 1.25rem}}
.card{{background:#fff;border-radius:1rem;padding:1.5rem;box-shadow:0 1px 4px rgba(0,0,0,.08)}}
.merchant{{font-weight:600;font-size:1.05rem}}
.description{{color:#555;margin:.25rem 0 1rem}}
.amount{{font-size:2rem;font-weight:700;margin:.5rem 0}}
.status{{display:inline-block;padding:.2rem .6rem;border-radius:1rem;background:#eee;font-size:.9rem}}
.status.paid{{background:#d7f5dc;color:#135c22}}
.status.expired,.status.canceled{{background:#f8dcdc;color:#7a1b1b}}
.rails{{color:#555;font-size:.9rem;margin-top:1rem}}
button{{width:100%;margin-top:1.25rem;padding:.9rem;font-size:1.05rem;border:0;border-radius:.75rem;background:#1b1b1b;color:#fff}}
button:disabled{{opacity:.4}}
.note{{color:#777;font-size:.8rem;text-align:center}}
.test{{background:#fff3cd;color:#6b5200;padding:.4rem .75rem;border-radius:.5rem;font-size:.85rem;margin-bottom:1rem;text-align:center}}
[hidden]{{display:none!important}}
.lightning{{margin-top:1.25rem;padding-top:1rem;border-top:1px solid #eee}}
.lightning h2{{font-size:1rem;margin:0 0 .75rem}}
.qr svg{{display:block;width:100%;max-width:17rem;height:auto;margin:0 auto}}
.copy{{display:flex;gap:.5rem;margin-top:.75rem}}
.copy input{{flex:1;min-width:0;padding:.6rem;border:1px solid #ccc;border-radius:.5rem;font:.8rem ui-monospace,monospace;color:#333;background:#fafafa}}
.copy button{{width:auto;margin:0;padding:.6rem 1rem;font-size:.95rem}}
.wallet-link{{display:block;text-align:center;margin-top:.75rem;color:#1b1b1b;font-weight:600}}
.error{{color:#7a1b1b;font-size:.9rem}}
</style>
</head>
<body>
<main>
{test_banner}
<div class=card>
<div class=merchant id=merchant>{merchant}</div>
<div class=description>{description}</div>
<div class=amount id=amount>{amount}</div>
<div><span class="status {status_class}" id=status>{status_text}</span> <span id=countdown></span></div>
<div class=rails>Pay with: <span id=rails>{rails}</span></div>
{lightning}
{sandbox_button}
</div>
</main>
<script>
const invoice = {status_json};
const statusEl = document.getElementById('status');
const countdownEl = document.getElementById('countdown');
const sandboxEl = document.getElementById('sandbox');
const lightningEl = document.getElementById('lightning');
function show(s) {{
  statusEl.textContent = s.status === 'paid' ? 'Paid ✓' : s.status;
  statusEl.className = 'status ' + s.status;
  if (s.status !== 'open') {{
    countdownEl.textContent = ''; if (sandboxEl) sandboxEl.disabled = true;
    if (lightningEl) lightningEl.hidden = true;
  }}
}}
function tick() {{
  if (statusEl.className.indexOf('open') < 0) return;
  const left = Math.max(0, invoice.expires_at - Math.floor(Date.now() / 1000));
  const m = Math.floor(left / 60), s = left % 60;
  countdownEl.textContent = 'expires in ' + m + ':' + String(s).padStart(2, '0');
}}
// poll() may also be called early (after a wallet paid): only the latest call shows its answer
// and schedules the next, so there is one polling loop and no stale status.
let pollSeq = 0, pollTimer = 0;
async function poll() {{
  const seq = ++pollSeq;
  clearTimeout(pollTimer);
  try {{
    const r = await fetch('/pay/' + invoice.id + '/status', {{cache: 'no-store'}});
    if (seq !== pollSeq) return;
    if (r.ok) {{ const s = await r.json(); if (seq !== pollSeq) return; show(s); if (s.status !== 'open') return; }}
  }} catch (e) {{}}
  if (seq === pollSeq) pollTimer = setTimeout(poll, 1000);
}}
if (sandboxEl) sandboxEl.addEventListener('click', async () => {{
  sandboxEl.disabled = true;
  const r = await fetch('/pay/' + invoice.id + '/sandbox', {{method: 'POST'}});
  if (r.ok) show(await r.json()); else sandboxEl.disabled = false;
}});
const bolt11El = document.getElementById('lightning-bolt11');
const copyEl = document.getElementById('lightning-copy');
const weblnEl = document.getElementById('webln-pay');
const lnErrorEl = document.getElementById('lightning-error');
function lnError(text) {{ if (lnErrorEl) {{ lnErrorEl.textContent = text; lnErrorEl.hidden = !text; }} }}
if (copyEl) copyEl.addEventListener('click', async () => {{
  let copied = false;
  try {{ await navigator.clipboard.writeText(bolt11El.value); copied = true; }} catch (e) {{
    // No Clipboard API (a page served over plain http, an old browser): select the text.
    bolt11El.focus(); bolt11El.select(); bolt11El.setSelectionRange(0, bolt11El.value.length);
    try {{ copied = document.execCommand('copy'); }} catch (e2) {{}}
  }}
  copyEl.textContent = copied ? 'Copied' : 'Selected';
  setTimeout(() => {{ copyEl.textContent = 'Copy'; }}, 2000);
}});
function offerWebln() {{ if (weblnEl && window.webln && statusEl.className.indexOf('open') >= 0) weblnEl.hidden = false; }}
if (weblnEl) {{
  offerWebln();
  // Some extensions inject window.webln after the page's script ran.
  window.addEventListener('webln:ready', offerWebln);
  window.addEventListener('load', offerWebln);
  weblnEl.addEventListener('click', async () => {{
    weblnEl.disabled = true; lnError('');
    try {{
      await window.webln.enable();
      await window.webln.sendPayment(bolt11El.value);
      // The wallet says it paid; the page still shows paid only when the server says so.
      weblnEl.textContent = 'Paid, confirming…';
      poll();
    }} catch (e) {{
      lnError('The wallet did not pay: ' + ((e && e.message) || String(e)));
      weblnEl.disabled = false;
    }}
  }});
}}
show(invoice); tick(); setInterval(tick, 1000); poll();
</script>
</body>
</html>"#,
        merchant_title = escape(merchant),
        merchant = escape(merchant),
        description = escape(&invoice.description),
        amount = escape(&amount_text(invoice)),
        status_class = invoice.status.as_str(),
        status_text = invoice.status.as_str(),
        rails = escape(&rails.join(", ")),
        test_banner = if mode == Mode::Test {
            "<div class=test>TEST MODE</div>"
        } else {
            ""
        },
        sandbox_button = sandbox_button,
        status_json = status.to_string().replace('<', "\\u003c"),
        lightning = lightning_html(invoice, lightning),
    )
}

#[cfg(test)]
mod tests {
    use farthing_core::invoice::InvoicePayment;
    use farthing_core::{MerchantId, TransferId};

    use super::*;

    /// A BOLT11 as LNbits makes them (regtest, 1000 sat).
    const BOLT11: &str = "lnbcrt10u1pnxyz9zpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5vdhkven9v5sxyetpdeessp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgqcqzysxqrrssrzjqwryaup9lh50kkranzgcdnn2fgvx390wgj5jd07rwr3vxeje0glclll6sk5dd0gqqqqqqqqqqqqqqqqq9qyysgqfddqk6xx0d6ezaxj6s9mfv4ugpyu2gn4rgk7w7z6rtvw4f5wxye4yfgc0fg8cwd5l8tfs3hdd5gd3xrjv8pt8x6n8l6zsu5zt7rqspz4e6gq";

    fn invoice(currency: Currency, rails: Vec<Rail>) -> Invoice {
        Invoice {
            id: InvoiceId::from_raw(0x0123_4567_89ab_cdef),
            merchant: MerchantId::from_raw(7),
            customer: None,
            currency,
            amount: InvoiceAmount::Fixed(1_000),
            description: "Coffee <b>&</b> cake".to_owned(),
            payload: None,
            rails,
            metadata: Vec::new(),
            status: InvoiceStatus::Open,
            payment: None,
            amount_refunded_minor: 0,
            created_at_ns: 1_700_000_000_000_000_000,
            expires_at_ns: 1_700_000_900_000_000_000,
            closed_at_ns: None,
            stars_invoice_link: None,
            lightning_bolt11: Some(BOLT11.to_owned()),
        }
    }

    fn svg_width(svg: &str) -> u32 {
        let rest = &svg[svg.find(" width=\"").expect("a width") + 8..];
        rest[..rest.find('"').expect("end of width")]
            .parse()
            .expect("a number")
    }

    #[test]
    fn the_qr_code_is_an_inline_svg_that_grows_with_its_data() {
        let short = qr_svg(&lightning_qr_data("lnbc1")).expect("fits");
        let long = qr_svg(&lightning_qr_data(BOLT11)).expect("fits");
        for svg in [&short, &long] {
            assert!(
                svg.starts_with("<svg"),
                "no XML declaration inline: {svg:.60}"
            );
            assert!(svg.ends_with("</svg>"));
            assert!(svg.contains("<path"));
        }
        assert!(svg_width(&long) > svg_width(&short));
        // Far more than any QR code holds.
        assert_eq!(qr_svg(&"A".repeat(10_000)), None);
    }

    #[test]
    fn the_qr_code_carries_the_uri_in_upper_case_so_it_is_alphanumeric() {
        let data = lightning_qr_data(BOLT11);
        assert_eq!(data, format!("LIGHTNING:{}", BOLT11.to_ascii_uppercase()));
        // Every character is in QR's alphanumeric set, so the code is smaller than the
        // lower-case one.
        assert!(data
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || " $%*+-./:".contains(c)));
        let lower = qr_svg(&format!("lightning:{BOLT11}")).expect("fits");
        assert!(svg_width(&qr_svg(&data).expect("fits")) < svg_width(&lower));
    }

    #[test]
    fn a_btc_lightning_invoice_shows_the_lightning_section() {
        let invoice = invoice(Currency::BTC, vec![Rail::Lightning, Rail::Balance]);
        let html = render_page(
            &invoice,
            Mode::Live,
            "Shop",
            &LightningOffer::Bolt11(BOLT11.to_owned()),
        );
        for id in [
            "id=lightning>",
            "id=lightning-qr ",
            "id=lightning-bolt11 ",
            "id=lightning-copy ",
            "id=lightning-open ",
            "id=webln-pay ",
            "id=lightning-error ",
        ] {
            assert!(html.contains(id), "{id} missing");
        }
        assert!(html.contains(&format!(r#"value="{BOLT11}""#)));
        assert!(html.contains(&format!(r#"href="lightning:{BOLT11}""#)));
        assert!(html.contains("<div class=qr id=lightning-qr role=img aria-label=\"QR code of the Lightning invoice\"><svg "));
        assert!(html.contains("<button id=webln-pay type=button hidden>"));
        assert!(!html.contains("unavailable"));
        // The status badge's classes are the statuses (`status open`): no rule may target them.
        for status in ["open", "paid", "expired", "canceled"] {
            assert!(
                !html.contains(&format!("\n.{status}{{")),
                "a rule for .{status}"
            );
        }
        // The rest of the page is still escaped.
        assert!(html.contains("Coffee &lt;b&gt;&amp;&lt;/b&gt; cake"));
    }

    #[test]
    fn other_invoices_show_no_lightning_section() {
        let offer = LightningOffer::Bolt11(BOLT11.to_owned());
        let mut paid = invoice(Currency::BTC, vec![Rail::Lightning]);
        paid.status = InvoiceStatus::Paid;
        paid.payment = Some(InvoicePayment {
            amount_minor: 1_000,
            rail: Rail::Lightning,
            customer: None,
            transfer_id: TransferId(1),
            paid_at_ns: 1_700_000_100_000_000_000,
        });
        let cases = [
            invoice(Currency::XTR, vec![Rail::Stars, Rail::Lightning]),
            invoice(Currency::BTC, vec![Rail::Balance]),
            invoice(Currency::USD, vec![Rail::Card]),
            paid,
        ];
        for invoice in cases {
            let html = render_page(&invoice, Mode::Test, "Shop", &offer);
            assert!(!html.contains("<section"), "{:?}", invoice.currency);
            assert!(!html.contains("id=lightning"));
            assert!(!html.contains(BOLT11));
        }
        // The handler does not ask the node for those.
        let xtr = invoice(Currency::XTR, vec![Rail::Lightning]);
        assert!(!offers_lightning(&xtr));
        assert!(offers_lightning(&invoice(
            Currency::BTC,
            vec![Rail::Lightning]
        )));
    }

    #[test]
    fn without_a_bolt11_the_section_says_so_and_offers_a_reload() {
        let mut invoice = invoice(Currency::BTC, vec![Rail::Lightning]);
        invoice.lightning_bolt11 = None;
        let html = render_page(&invoice, Mode::Live, "Shop", &LightningOffer::Unavailable);
        assert!(html.contains("<section class=lightning id=lightning>"));
        assert!(
            html.contains("Lightning is unavailable right now, <a id=lightning-retry href=\"/pay/")
        );
        assert!(html.contains(&format!("href=\"/pay/{}\"", invoice.id.encode())));
        assert!(!html.contains("id=lightning-qr"));
        assert!(!html.contains("id=webln-pay "));
        // The rest of the page still works.
        assert!(html.contains("id=amount"));
        assert!(html.contains("function poll()"));

        let html = render_page(&invoice, Mode::Live, "Shop", &LightningOffer::NotPossible);
        assert!(html
            .contains("id=lightning-error role=alert>This invoice can't be paid with Lightning."));
        assert!(!html.contains("id=lightning-qr"));
    }

    #[test]
    fn the_bolt11_is_escaped() {
        let invoice = invoice(Currency::BTC, vec![Rail::Lightning]);
        let html = render_page(
            &invoice,
            Mode::Live,
            "Shop",
            &LightningOffer::Bolt11("lnbc1\"><script>x</script>".to_owned()),
        );
        assert!(!html.contains("<script>x"));
        assert!(html.contains("value=\"lnbc1&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""));
    }
}
