//! The checkout page (v0): `GET /pay/{invoice}` renders on the server (no build step), shows
//! the merchant, amount, status, a live countdown and the accepted rails, and follows the
//! invoice's status from the server (`GET /pay/{invoice}/status`) until it is paid or expired.
//! In test mode it offers a "Pay (sandbox)" button (`POST /pay/{invoice}/sandbox`).
//!
//! The invoice id is the capability: ids carry 80 random bits, so a page can't be guessed.
//! The page never decides that anything is paid; it only shows what the server says (P1).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use farthing_core::invoice::{Invoice, InvoiceAmount};
use farthing_core::{InvoiceId, PublicId};
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
    let rails: Vec<&str> = invoice.rails.iter().map(|r| r.as_str()).collect();
    let sandbox_button = if mode == Mode::Test {
        "<button id=sandbox type=button>Pay (sandbox)</button><p class=note>Test mode: no real money moves.</p>"
    } else {
        ""
    };
    let status = status_json(&invoice);
    let body = format!(
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
{sandbox_button}
</div>
</main>
<script>
const invoice = {status_json};
const statusEl = document.getElementById('status');
const countdownEl = document.getElementById('countdown');
const sandboxEl = document.getElementById('sandbox');
function show(s) {{
  statusEl.textContent = s.status === 'paid' ? 'Paid ✓' : s.status;
  statusEl.className = 'status ' + s.status;
  if (s.status !== 'open') {{ countdownEl.textContent = ''; if (sandboxEl) sandboxEl.disabled = true; }}
}}
function tick() {{
  if (statusEl.className.indexOf('open') < 0) return;
  const left = Math.max(0, invoice.expires_at - Math.floor(Date.now() / 1000));
  const m = Math.floor(left / 60), s = left % 60;
  countdownEl.textContent = 'expires in ' + m + ':' + String(s).padStart(2, '0');
}}
async function poll() {{
  try {{
    const r = await fetch('/pay/' + invoice.id + '/status', {{cache: 'no-store'}});
    if (r.ok) {{ const s = await r.json(); show(s); if (s.status !== 'open') return; }}
  }} catch (e) {{}}
  setTimeout(poll, 1000);
}}
if (sandboxEl) sandboxEl.addEventListener('click', async () => {{
  sandboxEl.disabled = true;
  const r = await fetch('/pay/' + invoice.id + '/sandbox', {{method: 'POST'}});
  if (r.ok) show(await r.json()); else sandboxEl.disabled = false;
}});
show(invoice); tick(); setInterval(tick, 1000); poll();
</script>
</body>
</html>"#,
        merchant_title = escape(&merchant),
        merchant = escape(&merchant),
        description = escape(&invoice.description),
        amount = escape(&amount_text(&invoice)),
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
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}
