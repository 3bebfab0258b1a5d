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
//! When the merchant has connected a bot, the page also works as that bot's Telegram Mini App
//! (SPEC T4): when `window.Telegram.WebApp.initData` is present (or a session is kept in
//! `sessionStorage` from before a reload) its script exchanges the init data for a session at
//! `POST /webapp/session` (see `webapp.rs`) and shows one screen: amount (presets when
//! amountless), method (Stars through `Telegram.WebApp.openInvoice`, or the balance when it
//! covers the amount: one tap), Pay; with Telegram's theme, and the texts of a small table in
//! en/fr/de/fa/ru chosen from the user's `language_code` (`dir=rtl` for `fa`). The page has no
//! `<script src>` of Telegram's: the script loads `telegram.web_app_script_url` itself only
//! when the URL says it was opened as a Mini App (`tgWebAppData` in the fragment, or a
//! `tgWebApp`/`tgWebAppData` query parameter) and the host gave no `Telegram.WebApp`. In a
//! normal browser nothing of this shows.
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

use crate::http::error::ApiError;
use crate::render::unix_s;
use crate::state::{AppState, Mode};
use farthing_app::rail::RailSet;

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

pub(crate) fn status_json(invoice: &Invoice) -> serde_json::Value {
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
    if let Some(bolt11) = crate::instructions::bolt11(invoice) {
        return LightningOffer::Bolt11(bolt11);
    }
    let attached = tokio::time::timeout(
        BOLT11_WAIT,
        state
            .rails()
            .instructions(state.app(), mode, Rail::Lightning, invoice),
    )
    .await;
    match attached {
        Ok(Ok(Some(made))) => match crate::instructions::bolt11_of(&made) {
            Some(bolt11) => LightningOffer::Bolt11(bolt11),
            None => LightningOffer::NotPossible,
        },
        Ok(Ok(None)) => LightningOffer::NotPossible,
        Ok(Err(error)) => {
            tracing::warn!(invoice = %invoice.id.encode(), code = error.code(), %error, "checkout: no BOLT11");
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
#[utoipa::path(
    get,
    path = "/pay/{id}/status",
    tag = "checkout",
    operation_id = "checkout_status",
    params(("id" = String, Path, description = "The invoice, `inv_…`.")),
    responses(
        (status = 200, description = "The invoice's status (`Cache-Control: no-store`).", body = crate::http::spec::CheckoutStatus),
        (status = 404, description = "No such invoice (`resource_missing`).", body = crate::http::spec::Error),
        (status = 500, description = crate::http::spec::E500, body = crate::http::spec::Error),
    )
)]
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
#[utoipa::path(
    post,
    path = "/pay/{id}/sandbox",
    tag = "checkout",
    operation_id = "checkout_sandbox",
    params(("id" = String, Path, description = "The invoice, `inv_…`.")),
    responses(
        (status = 200, description = "The paid invoice.", body = crate::http::spec::Invoice),
        (status = 400, description = "The payment would take the merchant's balance beyond the largest amount farthing stores (`amount_too_large`).", body = crate::http::spec::Error),
        (status = 403, description = "The invoice is a live-mode invoice (`test_mode_only`).", body = crate::http::spec::Error),
        (status = 404, description = "No such invoice (`resource_missing`).", body = crate::http::spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`) or has expired (`invoice_expired`).", body = crate::http::spec::Error),
        (status = 500, description = crate::http::spec::E500, body = crate::http::spec::Error),
        (status = 503, description = crate::http::spec::E503, body = crate::http::spec::Error),
    )
)]
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
    let (merchant, invoice_id) = (invoice.merchant, invoice.id);
    let amount = match invoice.amount {
        InvoiceAmount::Fixed(_) => None,
        InvoiceAmount::Open {
            ref presets,
            min_minor,
            ..
        } => Some(presets.first().copied().unwrap_or(min_minor)),
    };
    let app = state.app().clone();
    let paid = state
        .app()
        .run(Mode::Test, move |tx| {
            farthing_app::sandbox::pay(tx, &app, merchant, invoice_id, None, amount, None)
        })
        .await?;
    let object = crate::render::invoice(&paid, Mode::Test, &state.app().checkout_url(paid.id));
    Ok((StatusCode::OK, axum::Json(object)).into_response())
}

/// `GET /pay/{id}`: the page.
#[utoipa::path(
    get,
    path = "/pay/{id}",
    tag = "checkout",
    operation_id = "checkout_page",
    params(("id" = String, Path, description = "The invoice, `inv_…`.")),
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        (status = 404, description = "No such invoice: an HTML page saying so.", body = String, content_type = "text/html"),
        (status = 500, description = crate::http::spec::E500, body = String, content_type = "text/html"),
    )
)]
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
    let merchant_id = invoice.merchant;
    // The Mini App part needs the merchant's bot (its id goes with the init data); without one
    // the page is the plain checkout page.
    let bot = match state
        .store(mode)
        .read(move |reader| reader.telegram_bot(merchant_id))
    {
        Ok(bot) => bot.map(|bot| (bot.bot_id, bot.username)),
        Err(error) => {
            tracing::warn!(%error, "checkout: cannot read the merchant's bot");
            None
        }
    };
    let mini_app = bot.map(|(bot_id, bot_username)| MiniApp {
        bot_id,
        bot_username,
        script_url: state.config().telegram.web_app_script_url.clone(),
    });
    let body = render_page_with(&invoice, mode, &merchant, &lightning, mini_app.as_ref());
    ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

/// What the page needs to work as a Telegram Mini App.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MiniApp {
    /// The merchant's bot, sent with the init data to `POST /webapp/session`.
    bot_id: u64,
    /// Its username as `getMe` verified it, shown on the page (SPEC T6 anti-phishing).
    bot_username: String,
    /// `telegram-web-app.js`, loaded only when the page was opened as a Mini App and the host
    /// did not provide `window.Telegram.WebApp` itself; empty: never loaded.
    script_url: String,
}

/// The Mini App screen's settings, as the page's script reads them.
fn mini_app_json(invoice: &Invoice, mode: Mode, mini_app: &MiniApp) -> serde_json::Value {
    // BTC shows in satoshis (its minor unit) as elsewhere on the page; others in their decimal
    // form.
    let (unit, exponent) = if invoice.currency == Currency::BTC {
        ("sats".to_owned(), 0)
    } else {
        (
            invoice.currency.code().to_owned(),
            invoice.currency.exponent(),
        )
    };
    let label = |minor: u64| {
        if exponent == 0 {
            format!("{minor} {unit}")
        } else {
            farthing_core::Money::new(minor, invoice.currency)
                .map(|m| format!("{} {unit}", m.to_decimal_string()))
                .unwrap_or_else(|_| minor.to_string())
        }
    };
    let (fixed, presets, min, max) = match &invoice.amount {
        InvoiceAmount::Fixed(minor) => (Some(*minor), Vec::new(), *minor, *minor),
        InvoiceAmount::Open {
            presets,
            min_minor,
            max_minor,
        } => {
            let mut shown = presets.clone();
            if shown.is_empty() {
                shown.push(*min_minor);
            }
            (None, shown, *min_minor, *max_minor)
        }
    };
    let stars_link = crate::instructions::invoice_link(invoice, Rail::Stars)
        .filter(|_| invoice.rails.contains(&Rail::Stars) && fixed.is_some());
    json!({
        "bot_id": mini_app.bot_id,
        "script_url": mini_app.script_url,
        "currency": invoice.currency.code(),
        "unit": unit,
        "exponent": exponent,
        "amount": fixed,
        "amount_label": fixed.map(label),
        "presets": presets.iter().map(|minor| json!({"minor": minor, "label": label(*minor)})).collect::<Vec<_>>(),
        "min": min,
        "max": max,
        "stars_link": stars_link,
        "balance": invoice.rails.contains(&Rail::Balance),
        "livemode": mode.is_live(),
    })
}

/// The page's HTML without the Mini App part.
#[cfg(test)]
fn render_page(
    invoice: &Invoice,
    mode: Mode,
    merchant: &str,
    lightning: &LightningOffer,
) -> String {
    render_page_with(invoice, mode, merchant, lightning, None)
}

/// The page's HTML (everything in it escaped).
fn render_page_with(
    invoice: &Invoice,
    mode: Mode,
    merchant: &str,
    lightning: &LightningOffer,
    mini_app: Option<&MiniApp>,
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
{bot_line}<div class=description>{description}</div>
<div class=amount id=amount>{amount}</div>
<div><span class="status {status_class}" id=status>{status_text}</span> <span id=countdown></span></div>
<div class=rails id=rails-line>Pay with: <span id=rails>{rails}</span></div>
{mini_app_section}
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
  statusEl.textContent = window.statusLabel ? window.statusLabel(s.status) : (s.status === 'paid' ? 'Paid ✓' : s.status);
  statusEl.className = 'status ' + s.status;
  if (window.onInvoiceStatus) window.onInvoiceStatus(s);
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
{mini_app_script}</body>
</html>"#,
        merchant_title = escape(merchant),
        merchant = escape(merchant),
        bot_line = mini_app.map_or_else(String::new, |app| format!(
            "<div class=bot id=bot-username>Telegram: <b>@{}</b> ✓</div>\n",
            escape(&app.bot_username)
        )),
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
        mini_app_section = if mini_app.is_some() {
            MINI_APP_SECTION
        } else {
            ""
        },
        mini_app_script = match mini_app {
            Some(mini_app) => format!(
                "<script>const miniApp = {};</script>\n<script>{MINI_APP_JS}</script>\n",
                mini_app_json(invoice, mode, mini_app)
                    .to_string()
                    .replace('<', "\\u003c")
            ),
            None => String::new(),
        },
    )
}

/// The Mini App screen (hidden until the page finds `Telegram.WebApp` and has a session).
const MINI_APP_SECTION: &str = r#"<style>
.webapp{margin-top:1.25rem}
.webapp .label{color:var(--tg-hint,#777);font-size:.85rem;margin:.75rem 0 .4rem}
.presets{display:flex;flex-wrap:wrap;gap:.5rem}
.presets button,.methods button{width:auto;margin:0;padding:.6rem .9rem;font-size:1rem;background:transparent;color:inherit;border:1px solid var(--tg-hint,#ccc)}
.methods{display:flex;flex-direction:column;gap:.5rem}
.methods button{width:100%;text-align:start}
.presets button[aria-pressed=true],.methods button[aria-checked=true]{border:2px solid var(--tg-button,#1b1b1b);font-weight:600}
.mini-app body,body.mini-app{background:var(--tg-bg,#f6f6f4);color:var(--tg-text,#1b1b1b)}
.mini-app .card{background:var(--tg-card,#fff)}
.mini-app #webapp-pay{background:var(--tg-button,#1b1b1b);color:var(--tg-button-text,#fff)}
.mini-app .status.open{color:#1b1b1b}
</style>
<section class=webapp id=webapp hidden>
<div class=label id=webapp-amount-label></div>
<div class=presets id=webapp-presets></div>
<div class=label id=webapp-method-label></div>
<div class=methods id=webapp-methods role=radiogroup></div>
<button id=webapp-pay type=button disabled></button>
<p class=error id=webapp-error role=alert hidden></p>
</section>"#;

/// The Mini App script: finds `Telegram.WebApp` (provided by the host or loaded from
/// `miniApp.script_url` when the URL says the page is a Mini App), exchanges the init data for a
/// session (kept in `sessionStorage`, so a reload works without init data), and shows one
/// screen: amount (presets when amountless), method (Stars through `openInvoice`, or the
/// balance when it covers the amount), Pay. The status still comes from the server only.
const MINI_APP_JS: &str = r#"(() => {
const cfg = miniApp;
const TEXT = {
  en: {amount: 'Amount', method: 'Pay with', stars: 'Telegram Stars', balance: 'Balance', available: '{n} available', pay: 'Pay', paying: 'Paying…', confirming: 'Confirming…', paid: 'Paid ✓', open: 'Awaiting payment', expired: 'Expired', canceled: 'Canceled', insufficient: 'Not enough balance', failed: 'Payment failed, please try again', none: 'This invoice can’t be paid in Telegram.'},
  fr: {amount: 'Montant', method: 'Payer avec', stars: 'Telegram Stars', balance: 'Solde', available: '{n} disponible', pay: 'Payer', paying: 'Paiement…', confirming: 'Confirmation…', paid: 'Payé ✓', open: 'En attente de paiement', expired: 'Expirée', canceled: 'Annulée', insufficient: 'Solde insuffisant', failed: 'Le paiement a échoué, réessayez', none: 'Cette facture ne peut pas être payée dans Telegram.'},
  de: {amount: 'Betrag', method: 'Bezahlen mit', stars: 'Telegram Stars', balance: 'Guthaben', available: '{n} verfügbar', pay: 'Bezahlen', paying: 'Zahlung läuft…', confirming: 'Wird bestätigt…', paid: 'Bezahlt ✓', open: 'Zahlung ausstehend', expired: 'Abgelaufen', canceled: 'Storniert', insufficient: 'Guthaben reicht nicht', failed: 'Zahlung fehlgeschlagen, bitte erneut versuchen', none: 'Diese Rechnung kann nicht in Telegram bezahlt werden.'},
  fa: {amount: 'مبلغ', method: 'پرداخت با', stars: 'استارز تلگرام', balance: 'موجودی', available: '{n} در دسترس', pay: 'پرداخت', paying: 'در حال پرداخت…', confirming: 'در حال تأیید…', paid: 'پرداخت شد ✓', open: 'در انتظار پرداخت', expired: 'منقضی شده', canceled: 'لغو شده', insufficient: 'موجودی کافی نیست', failed: 'پرداخت ناموفق بود، دوباره تلاش کنید', none: 'این صورتحساب در تلگرام قابل پرداخت نیست.'},
  ru: {amount: 'Сумма', method: 'Оплатить через', stars: 'Telegram Stars', balance: 'Баланс', available: 'доступно {n}', pay: 'Оплатить', paying: 'Оплата…', confirming: 'Подтверждение…', paid: 'Оплачено ✓', open: 'Ожидает оплаты', expired: 'Истёк', canceled: 'Отменён', insufficient: 'Недостаточно средств', failed: 'Оплата не прошла, попробуйте ещё раз', none: 'Этот счёт нельзя оплатить в Telegram.'},
};
const RTL = ['fa'];
let t = TEXT.en;
function setLanguage(code) {
  const lang = String(code || 'en').slice(0, 2).toLowerCase();
  const chosen = TEXT[lang] ? lang : 'en';
  t = TEXT[chosen];
  document.documentElement.lang = chosen;
  document.documentElement.dir = RTL.includes(chosen) ? 'rtl' : 'ltr';
}
const $ = (id) => document.getElementById(id);
// One session per bot and mode: a test-mode session can't pay a live invoice.
const storageKey = 'farthing.webapp.' + cfg.bot_id + (cfg.livemode ? '.live' : '.test');
function storedSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(storageKey) || 'null');
    if (s && s.session && s.expires_at > Date.now() / 1000 + 30) return s;
  } catch (e) {}
  return null;
}
function fmt(minor) {
  // Minor units to the decimal text, on strings (no floats with money).
  let digits = String(minor);
  if (cfg.exponent > 0) {
    digits = digits.padStart(cfg.exponent + 1, '0');
    digits = digits.slice(0, -cfg.exponent) + '.' + digits.slice(-cfg.exponent);
  }
  return digits + ' ' + cfg.unit;
}
let session = null, amount = cfg.amount, method = null, busy = false, asked = false, confirming = false, chosen = false, state = invoice.status;
function available() {
  const b = (session && session.balances || []).find((b) => b.currency === cfg.currency);
  return b ? b.available : 0;
}
function fail(text) { const el = $('webapp-error'); el.textContent = text || ''; el.hidden = !text; }
function render() {
  $('webapp-amount-label').textContent = t.amount;
  $('webapp-method-label').textContent = t.method;
  $('webapp-amount-label').hidden = cfg.amount !== null || state !== 'open';
  $('webapp-method-label').hidden = state !== 'open';
  const presets = $('webapp-presets');
  presets.replaceChildren();
  if (cfg.amount === null) {
    for (const p of cfg.presets) {
      const b = document.createElement('button');
      b.type = 'button'; b.className = 'preset'; b.textContent = p.label; b.dataset.minor = p.minor;
      b.setAttribute('aria-pressed', String(p.minor === amount));
      b.addEventListener('click', () => { if (busy) return; amount = p.minor; render(); });
      presets.append(b);
    }
  }
  const options = [];
  if (cfg.stars_link && window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.openInvoice) options.push(['stars', t.stars]);
  if (cfg.balance && session && amount !== null && available() >= amount) options.push(['balance', t.balance + ' · ' + t.available.replace('{n}', fmt(available()))]);
  // Until the payer picks one: the balance when it covers the amount (one tap), else Stars.
  if (!chosen || !options.some(([m]) => m === method)) method = options.length ? (options.find(([m]) => m === 'balance') || options[0])[0] : null;
  const methods = $('webapp-methods');
  methods.replaceChildren();
  for (const [m, label] of options) {
    const b = document.createElement('button');
    b.type = 'button'; b.id = 'webapp-method-' + m; b.setAttribute('role', 'radio');
    b.setAttribute('aria-checked', String(m === method)); b.textContent = label;
    b.addEventListener('click', () => { if (!busy) { method = m; chosen = true; render(); } });
    methods.append(b);
  }
  const pay = $('webapp-pay');
  pay.textContent = busy ? t.paying : (confirming && state === 'open') ? t.confirming : t.pay + (amount !== null ? ' ' + fmt(amount) : '');
  pay.disabled = busy || confirming || state !== 'open' || !method || amount === null;
  if (asked && state === 'open' && !options.length && amount !== null) fail(t.none);
  else if ($('webapp-error').textContent === t.none) fail('');
  statusLabelRefresh();
}
function statusLabelRefresh() {
  const el = $('status');
  const s = el.className.replace('status', '').trim();
  if (s) el.textContent = window.statusLabel(s);
}
async function payBalance() {
  const response = await fetch('/webapp/pay/' + invoice.id, {
    method: 'POST',
    headers: {'content-type': 'application/json', 'authorization': 'Bearer ' + session.session},
    body: JSON.stringify(cfg.amount === null ? {amount} : {}),
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) { show(body); return; }
  if (response.status === 401) { sessionStorage.removeItem(storageKey); }
  const code = body.error && body.error.code;
  fail(code === 'insufficient_funds' ? t.insufficient : (body.error && body.error.message) || t.failed);
  poll();
}
function payStars() {
  return new Promise((resolve) => {
    window.Telegram.WebApp.openInvoice(cfg.stars_link, (status) => {
      // Telegram says paid; the page still shows paid only when the server says so.
      if (status === 'paid') { confirming = true; poll(); }
      else if (status === 'failed') fail(t.failed);
      resolve();
    });
  });
}
async function onPay() {
  if (busy || !method) return;
  busy = true; fail(''); render();
  try { if (method === 'balance') await payBalance(); else await payStars(); }
  catch (e) { fail(t.failed); }
  busy = false; render();
}
async function start(tg) {
  if (tg) {
    try { tg.ready(); tg.expand(); } catch (e) {}
    const p = tg.themeParams || {};
    const root = document.documentElement.style;
    for (const [name, key] of [['--tg-bg', 'bg_color'], ['--tg-text', 'text_color'], ['--tg-card', 'secondary_bg_color'], ['--tg-button', 'button_color'], ['--tg-button-text', 'button_text_color'], ['--tg-hint', 'hint_color']]) {
      if (p[key]) root.setProperty(name, p[key]);
    }
    const unsafe = tg.initDataUnsafe && tg.initDataUnsafe.user;
    setLanguage(unsafe && unsafe.language_code);
  }
  document.documentElement.classList.add('mini-app');
  document.body.classList.add('mini-app');
  window.statusLabel = (s) => t[s] || s;
  window.onInvoiceStatus = (s) => {
    state = s.status;
    if (state !== 'open') { $('webapp-methods').hidden = true; $('webapp-presets').hidden = true; }
    if (s.amount_paid) $('amount').textContent = fmt(s.amount_paid);
    render();
  };
  $('rails-line').hidden = true;
  const lightning = $('lightning'); if (lightning) lightning.hidden = true;
  $('webapp').hidden = false;
  $('webapp-pay').addEventListener('click', onPay);
  render();
  if (tg && tg.initData) {
    try {
      const response = await fetch('/webapp/session', {
        method: 'POST', headers: {'content-type': 'application/json'},
        body: JSON.stringify({bot_id: cfg.bot_id, init_data: tg.initData, invoice: invoice.id}),
      });
      const body = await response.json();
      if (response.ok) { session = body; sessionStorage.setItem(storageKey, JSON.stringify(body)); }
      else { session = storedSession(); if (!session) fail(body.error && body.error.message || t.failed); }
    } catch (e) { session = storedSession(); if (!session) fail(t.failed); }
  } else {
    session = storedSession();
  }
  asked = true;
  if (session) setLanguage(session.user && session.user.language_code);
  show(invoice);
  poll();
}
const tg = window.Telegram && window.Telegram.WebApp;
const opened = /[#&?]tgWebAppData=/.test(location.hash) || /[?&]tgWebApp(Data)?=/.test(location.search);
if (tg && tg.initData) start(tg);
else if (storedSession()) start(tg && tg.openInvoice ? tg : null);
else if (opened && cfg.script_url) {
  const script = document.createElement('script');
  script.src = cfg.script_url;
  script.onload = () => { const w = window.Telegram && window.Telegram.WebApp; if (w && w.initData) start(w); };
  document.head.append(script);
}
})();"#;

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
            instructions: std::collections::BTreeMap::from([(
                Rail::Lightning,
                crate::instructions::bolt11_json(BOLT11),
            )]),
            subscription_period_s: None,
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
        invoice.instructions.remove(&Rail::Lightning);
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
    fn with_a_bot_the_page_carries_the_mini_app_without_loading_telegram_scripts() {
        let mut invoice = invoice(Currency::XTR, vec![Rail::Stars, Rail::Balance]);
        invoice.instructions.insert(
            Rail::Stars,
            crate::instructions::invoice_link_json("https://t.me/$abc</script>"),
        );
        let mini_app = MiniApp {
            bot_id: 123_456,
            bot_username: "shop_bot".to_owned(),
            script_url: "https://telegram.org/js/telegram-web-app.js".to_owned(),
        };
        let html = render_page_with(
            &invoice,
            Mode::Test,
            "Shop",
            &LightningOffer::Hidden,
            Some(&mini_app),
        );
        assert!(html.contains("<section class=webapp id=webapp hidden>"));
        assert!(html.contains("const miniApp = {"));
        assert!(html.contains("\"bot_id\":123456"));
        // SPEC T6: the verified bot username is on the page.
        assert!(html.contains("<b>@shop_bot</b>"));
        assert!(html.contains("\"amount\":1000"));
        // The link is escaped for the script element; the Telegram script is only a URL the
        // page's code may load when opened as a Mini App, never a tag of its own.
        assert!(html.contains("https://t.me/$abc\\u003c/script>"));
        assert!(!html.contains("<script src"));
        let config = mini_app_json(&invoice, Mode::Test, &mini_app);
        assert_eq!(config["stars_link"], "https://t.me/$abc</script>");
        assert_eq!(config["balance"], true);
        assert_eq!(config["amount_label"], "1000 XTR");

        // Amountless: presets with labels, no Stars link (its price is fixed).
        invoice.amount = InvoiceAmount::Open {
            presets: vec![100, 250],
            min_minor: 100,
            max_minor: 1_000,
        };
        invoice.currency = Currency::USD;
        let config = mini_app_json(&invoice, Mode::Live, &mini_app);
        assert_eq!(config["amount"], serde_json::Value::Null);
        assert_eq!(config["stars_link"], serde_json::Value::Null);
        assert_eq!(
            config["presets"][1],
            json!({"minor": 250, "label": "2.50 USD"})
        );
        assert_eq!(config["exponent"], 2);

        // Without a bot, no Mini App at all.
        let html = render_page(&invoice, Mode::Test, "Shop", &LightningOffer::Hidden);
        assert!(!html.contains("id=webapp"));
        assert!(!html.contains("miniApp"));
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
