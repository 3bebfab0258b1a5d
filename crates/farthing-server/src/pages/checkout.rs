//! The checkout page: `GET /pay/{invoice}` renders on the server from `templates/checkout.html`
//! (askama: checked at compile time, every value escaped), with its script and style sheet in
//! `assets/` (embedded, served at `/pay/assets/`; no build step, no inline script). It shows
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
//! An open invoice with TON instructions gets a TON section (SPEC RL4): the QR code of the
//! `ton://` link, the address, amount and comment with Copy buttons, the dropped-comment
//! warning and, for an invoice with an amount, a "Pay with wallet" button driving TON Connect's
//! own UI library (`assets/vendor/`, served here, loaded only on such a page): TON's request is
//! in the instructions, a jetton's is asked of `POST /pay/{invoice}/ton-connect` once the
//! payer's wallet is connected (its message goes to the payer's own jetton wallet). Its manifest is `GET /pay/{invoice}/tonconnect-manifest.json`; the
//! page's Content-Security-Policy then allows wallets' icons and bridges over https and inline
//! style only in the `<style>` element that carries this answer's nonce.
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

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use farthing_core::invoice::{Invoice, InvoiceAmount, InvoiceStatus};
use farthing_core::{Currency, InvoiceId, PublicId, Rail};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use serde_json::json;

use super::texts;
use crate::render::unix_s;
use crate::state::{AppState, Mode};
use crate::web::error::ApiError;
use farthing_app::rail::RailSet;
use farthing_app::settings::MerchantSettings;

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

/// How the page names a currency's unit: Telegram Stars as "Stars", BTC in satoshis ("sats",
/// its minor unit: "1000 sats", not "0.00001000 BTC"), others by their code.
fn display_unit(currency: Currency) -> (&'static str, u8) {
    match currency {
        Currency::XTR => ("Stars", 0),
        Currency::BTC => ("sats", 0),
        other => (other.code(), other.exponent()),
    }
}

/// `minor` units of the invoice's currency as the page shows them, without the unit.
fn amount_number(currency: Currency, minor: u64) -> String {
    if display_unit(currency).1 == 0 {
        return minor.to_string();
    }
    farthing_core::Money::new(minor, currency)
        .map(|m| m.to_decimal_string())
        .unwrap_or_else(|_| minor.to_string())
}

fn amount_text(invoice: &Invoice, t: &texts::PageTexts) -> String {
    let (unit, _) = display_unit(invoice.currency);
    let number = |minor: u64| amount_number(invoice.currency, minor);
    match &invoice.amount {
        InvoiceAmount::Fixed(minor) => format!("{} {unit}", number(*minor)),
        // An amountless invoice: the range only when the merchant bounded it (the default
        // maximum is the largest amount farthing stores, no help to a payer).
        InvoiceAmount::Open {
            min_minor,
            max_minor,
            ..
        } if *max_minor >= farthing_core::money::MAX_AMOUNT_MINOR => {
            format!("{} {} {unit}", t.any_amount_from, number(*min_minor))
        }
        InvoiceAmount::Open {
            min_minor,
            max_minor,
            ..
        } => format!(
            "{} – {} {unit} ({})",
            number(*min_minor),
            number(*max_minor),
            t.you_choose
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
        "paid_at": invoice.payment.map(|p| unix_s(p.paid_at_ns)),
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

/// `GET /pay/{id}/tonconnect-manifest.json`: the TON Connect manifest of the invoice's page —
/// what the payer's wallet shows when the page asks to connect (the shop's name, farthing's
/// icon). Wallets fetch it from anywhere, so any origin may read it.
#[utoipa::path(
    get,
    path = "/pay/{id}/tonconnect-manifest.json",
    tag = "checkout",
    operation_id = "checkout_tonconnect_manifest",
    params(("id" = String, Path, description = "The invoice, `inv_…`.")),
    responses(
        (status = 200, description = "The manifest: `url` (farthing's public URL), `name` (the merchant's name) and `iconUrl` (a 180×180 PNG served by farthing); `Access-Control-Allow-Origin: *`.", body = Object),
        (status = 404, description = "No such invoice (`resource_missing`).", body = crate::web::spec::Error),
        crate::web::spec::Internal,
    )
)]
pub async fn tonconnect_manifest(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, _, merchant) = find(&state, &id)?;
    let base = state.config().base_url();
    let manifest = json!({
        "url": base,
        "name": if merchant.is_empty() { "farthing" } else { merchant.as_str() },
        "iconUrl": format!("{base}/pay/assets/icon.png?v={}", assets::version()),
    });
    Ok((
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        axum::Json(manifest),
    )
        .into_response())
}

/// `POST /pay/{id}/ton-connect` body: the wallet the payer connected.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TonConnectPayer {
    /// The connected wallet's address (TON Connect's `account.address`), any form.
    pub payer: String,
}

/// `POST /pay/{id}/ton-connect`: the TON Connect request that pays a jetton (USDT) invoice from
/// the wallet the payer connected — its message goes to the payer's own jetton wallet, which
/// only the master can name, so the page asks once the wallet is connected.
#[utoipa::path(
    post,
    path = "/pay/{id}/ton-connect",
    tag = "checkout",
    operation_id = "checkout_ton_connect",
    params(("id" = String, Path, description = "The invoice, `inv_…`.")),
    request_body(content = TonConnectPayer, content_type = "application/json", example = json!({"payer": "0:dc141b6c2bb80ab6ad375357add5b1568e967524470309835583964e41b45ebb"})),
    responses(
        (status = 200, description = "`{\"request\": …}`: a TON Connect `sendTransaction` request (`valid_until` the invoice's expiry, `network`, `from` the payer, one message: a TEP-74 `transfer` of the invoice's amount to the merchant with the invoice's reference as the forward payload, sent to the payer's jetton wallet with 0.05 TON for gas).", body = Object),
        (status = 400, description = "Malformed JSON, an unknown field, a non-JSON body (`invalid_body`, `unsupported_content_type`), or a `payer` that is no TON address (`invalid_address`).", body = crate::web::spec::Error),
        (status = 404, description = "No such invoice (`resource_missing`).", body = crate::web::spec::Error),
        (status = 409, description = "The invoice is not open, has no fixed amount, or is not a jetton invoice taking `ton` (`ton_connect_unavailable`).", body = crate::web::spec::Error),
        (status = 502, description = "The merchant's TON indexer could not name the payer's jetton wallet (`ton_indexer_unavailable`).", body = crate::web::spec::Error),
        crate::web::spec::Internal,
        (status = 503, description = "The merchant's TON indexer is booked for more than three of its turns (at least 2 s; its rate limit, shared with the watcher; `service_unavailable`): try again, or pay with the address and comment.", body = crate::web::spec::Error),
    )
)]
pub async fn ton_connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: crate::web::extract::Checked<TonConnectPayer>,
) -> Result<Response, ApiError> {
    let payer = farthing_ton::Address::parse(&body.value.payer)
        .map_err(|error| {
            ApiError::invalid("invalid_address", format!("payer: {error}")).param("payer")
        })?
        .address;
    let (invoice, mode, _) = find(&state, &id)?;
    let Some(ton) = state.rails().ton() else {
        return Err(ApiError::not_found("invoice", &id));
    };
    let request = ton
        .jetton_payment_request(state.app(), mode, &invoice, &payer)
        .await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "request": request })),
    )
        .into_response())
}

/// `GET /pay/{id}/status`: what the page polls.
#[utoipa::path(
    get,
    path = "/pay/{id}/status",
    tag = "checkout",
    operation_id = "checkout_status",
    params(("id" = String, Path, description = "The invoice, `inv_…`.")),
    responses(
        (status = 200, description = "The invoice's status (`Cache-Control: no-store`).", body = crate::web::spec::CheckoutStatus),
        (status = 404, description = "No such invoice (`resource_missing`).", body = crate::web::spec::Error),
        crate::web::spec::Internal,
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
    params(
        ("id" = String, Path, description = "The invoice, `inv_…`."),
        ("amount" = Option<u64>, Query, description = "For an amountless invoice: the amount chosen, in minor units, within its bounds (default: its first suggested amount, else its minimum)."),
    ),
    responses(
        (status = 200, description = "The paid invoice's status, as `GET /pay/{id}/status` shows it (what a payer may see: no metadata, payload or customer).", body = crate::web::spec::CheckoutStatus),
        (status = 400, description = "The payment would take the merchant's balance beyond the largest amount farthing stores (`amount_too_large`), or an `amount` that is not a whole number or outside the invoice's bounds (`invalid_amount`, `invalid_invoice`).", body = crate::web::spec::Error),
        (status = 403, description = "The invoice is a live-mode invoice (`test_mode_only`).", body = crate::web::spec::Error),
        (status = 404, description = "No such invoice (`resource_missing`).", body = crate::web::spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`) or has expired (`invoice_expired`).", body = crate::web::spec::Error),
        crate::web::spec::Internal,
        crate::web::spec::Unavailable,
    )
)]
pub async fn sandbox(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The amount the payer chose on an amountless invoice (a preset); checked by the invoice.
    let chosen = match form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(key, _)| key == "amount")
    {
        None => None,
        Some((_, value)) => Some(value.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "invalid_amount",
                "amount must be a whole number of minor units",
            )
            .param("amount")
        })?),
    };
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
        } => Some(chosen.unwrap_or_else(|| presets.first().copied().unwrap_or(min_minor))),
    };

    // The page pays as an outside payer (a balance-only invoice with its customer: from the
    // balance, under the merchant's risk rules).
    let risk = farthing_app::risk::RiskCheck::new(
        state.app(),
        Mode::Test,
        merchant,
        farthing_core::risk::Operation::BalancePayment,
    )
    .subject(invoice_id.encode());
    let guard = risk.clone();
    let paid = state
        .app()
        .run(Mode::Test, move |tx| {
            farthing_app::sandbox::pay(tx, &guard, invoice_id, None, amount, None)
        })
        .await;
    risk.finish().await?;
    let paid = paid?;
    // Anyone holding the page's URL may press the button: answer only what the page shows,
    // never the merchant's metadata (delivery codes), payload or customer.
    Ok((StatusCode::OK, axum::Json(status_json(&paid))).into_response())
}

/// `GET /pay/{id}`: the page.
#[utoipa::path(
    get,
    path = "/pay/{id}",
    tag = "checkout",
    operation_id = "checkout_page",
    params(
        ("id" = String, Path, description = "The invoice, `inv_…`."),
        ("lang" = Option<String>, Query, description = "The page's language: `en`, `fr`, `de`, `fa` (right to left) or `ru`; without it, the browser's `Accept-Language`, else English."),
    ),
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        (status = 404, description = "No such invoice: an HTML page saying so.", body = String, content_type = "text/html"),
        (status = 500, description = crate::web::spec::E500, body = String, content_type = "text/html"),
    )
)]
pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let lang = form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(key, _)| key == "lang")
        .map(|(_, value)| value.into_owned());
    let t = texts::choose(
        lang.as_deref(),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok()),
    );
    let (invoice, mode, merchant) = match find(&state, &id) {
        Ok(found) => found,
        Err(error) => {
            let body = format!(
                "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>Not found</title><link rel=stylesheet href=\"/pay/assets/checkout.css?v={}\"><main><h1>Invoice not found</h1><p>{}</p></main>",
                assets::version(),
                escape(&error.message)
            );
            return (error.status, page_headers(&state), Html(body)).into_response();
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
    // The terms, refund policy and contacts the merchant set, with the receipt; a page without
    // them is still a page.
    let settings =
        farthing_app::settings::load(state.app(), mode, merchant_id).unwrap_or_else(|error| {
            tracing::warn!(%error, "checkout: cannot read the merchant's settings");
            MerchantSettings::default()
        });
    let site = Site {
        settings: &settings,
        base_url: state.config().base_url(),
        style_nonce: style_nonce(),
    };
    let body = render_page_in(
        &invoice,
        mode,
        &merchant,
        &lightning,
        mini_app.as_ref(),
        &site,
        t,
    );
    // TON Connect's UI (only on a page that offers it) loads wallets' icons, talks to their
    // bridges and writes its styles into one nonce-carrying `<style>` element.
    let ton_connect = (invoice.status == InvoiceStatus::Open
        && invoice
            .instructions
            .get(&Rail::Ton)
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .is_some_and(|value| ton_connect_offered(&value)))
    .then_some(site.style_nonce.as_str())
    .filter(|nonce| !nonce.is_empty());
    (
        [(header::CACHE_CONTROL, "no-store")],
        page_headers_with(&state, ton_connect),
        Html(body),
    )
        .into_response()
}

/// The security headers of every page: a Content-Security-Policy that allows only farthing's own
/// scripts and styles (and Telegram's Mini App script, loaded by the page only inside
/// Telegram), lets only Telegram's web clients frame the page (the Mini App), and blocks
/// sniffing and referrers.
fn page_headers(state: &AppState) -> [(header::HeaderName, HeaderValue); 3] {
    page_headers_with(state, None)
}

/// [`page_headers`] of a page with TON Connect's "Pay with wallet" (`ton_connect`: the nonce of
/// its `<style>` element): it may also load wallets' icons and reach their bridges and the
/// wallet list over https.
fn page_headers_with(
    state: &AppState,
    ton_connect: Option<&str>,
) -> [(header::HeaderName, HeaderValue); 3] {
    let telegram_script = origin(&state.config().telegram.web_app_script_url);
    let (style, img, connect) = match ton_connect {
        Some(nonce) => (
            format!("'self' 'nonce-{nonce}'"),
            "'self' data: https:",
            "'self' https:",
        ),
        None => ("'self'".to_owned(), "'self' data:", "'self'"),
    };
    let csp = format!(
        "default-src 'none'; script-src 'self' {telegram_script}; style-src {style}; \
         img-src {img}; connect-src {connect}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'self' https://web.telegram.org https://*.telegram.org"
    );
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'")),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

/// `scheme://host[:port]` of a URL, or nothing (then the CSP names no other origin).
fn origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let safe = |text: &str| {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    };
    if (scheme == "https" || scheme == "http") && safe(host) {
        format!("{scheme}://{host}")
    } else {
        String::new()
    }
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
    let (unit, exponent) = display_unit(invoice.currency);
    let label = |minor: u64| format!("{} {unit}", amount_number(invoice.currency, minor));
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

/// The checkout page: `templates/checkout.html`, checked when farthing compiles and escaped by
/// askama (every value; the JSON blocks go through its `json` filter, which escapes `<`, `>`,
/// `&` and `'`, so no value can end the `<script>` element that carries it).
#[derive(askama::Template)]
#[template(path = "checkout.html")]
struct CheckoutPage<'a> {
    merchant: &'a str,
    bot_username: Option<&'a str>,
    description: &'a str,
    amount: String,
    status: &'static str,
    /// The ways to pay: each rail's icon (inline SVG, drawn here from no outside text) and name.
    rails: Vec<(&'static str, &'static str)>,
    /// Between two rails in the list (Persian takes the Arabic comma).
    separator: &'static str,
    test_mode: bool,
    invoice_id: String,
    lightning: &'a LightningOffer,
    /// The QR code of the BOLT11 as inline SVG (drawn here, from no user text).
    lightning_qr: Option<String>,
    /// The TON section of an open invoice with TON instructions.
    ton: Option<TonSection>,
    status_json: serde_json::Value,
    /// The Mini App's settings; `None`: the merchant has no bot, the page is the plain one.
    mini_app: Option<serde_json::Value>,
    /// The assets' version, in their URLs so that a cached copy never outlives a new build.
    assets: &'static str,
    /// The page's words, in its language.
    t: &'static texts::PageTexts,
    /// The amount's unit as the page names it, and its decimals (the receipt's script).
    unit: &'static str,
    exponent: u8,
    /// What was paid, once paid (the receipt).
    paid_amount: String,
    /// The merchant's link back to the shop (shown once the invoice is not open).
    return_url: Option<&'a str>,
    /// The only rail is the customer's balance: the page says where it can be paid.
    balance_only: bool,
    /// An open amountless invoice's suggested amounts: minor units and label.
    presets: Vec<(u64, String)>,
    /// The merchant's terms, refund policy and contacts (empty: not set).
    terms: &'a str,
    refund_policy: &'a str,
    contacts: &'a str,
}

/// What the page shows to pay an open invoice over TON, read from its TON instructions
/// (`payment_instructions.ton`, made by the TON rail when the invoice was created).
struct TonSection {
    /// The merchant's wallet, user-friendly.
    address: String,
    /// The amount as a decimal number of `unit` (`None` for an amountless invoice).
    amount: Option<String>,
    unit: &'static str,
    /// The reference to write as the comment.
    comment: String,
    /// The `ton://transfer` link (opens the payer's wallet with everything filled in).
    link: Option<String>,
    /// The link's QR code as inline SVG (drawn here, from the rail's own link).
    qr: Option<String>,
    /// What the "Pay with wallet" button hands TON Connect: the rail's `sendTransaction`
    /// request (TON) or where to ask for it once a wallet is connected (a jetton), the
    /// manifest's URL and, in the Mini App, where the wallet returns to. `None` (amountless):
    /// no button, the fields remain.
    connect: Option<serde_json::Value>,
    /// The nonce of the one `<style>` element TON Connect's UI library writes its styles into
    /// (the page's Content-Security-Policy allows no other inline style).
    style_nonce: String,
}

/// Whether TON instructions offer "Pay with wallet": TON's request is in them; a jetton's is
/// asked for once the payer's wallet is connected (`POST /pay/{id}/ton-connect`), so any jetton
/// invoice with an amount.
fn ton_connect_offered(instructions: &serde_json::Value) -> bool {
    instructions["ton_connect"].is_object()
        || (instructions["jetton_master"].is_string() && instructions["amount_minor"].is_u64())
}

fn ton_section(
    invoice: &Invoice,
    base_url: &str,
    mini_app: Option<&MiniApp>,
    style_nonce: &str,
) -> Option<TonSection> {
    if invoice.status != InvoiceStatus::Open {
        return None;
    }
    let text = invoice.instructions.get(&Rail::Ton)?;
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let link = value["link"].as_str().map(str::to_owned);
    let jetton = value["jetton_master"].is_string() && value["amount_minor"].is_u64();
    let connect = (ton_connect_offered(&value) && !style_nonce.is_empty()).then(|| {
        json!({
            "request": value["ton_connect"],
            "request_url": jetton.then(|| format!("/pay/{}/ton-connect", invoice.id.encode())),
            "manifest_url": format!("{base_url}/pay/{}/tonconnect-manifest.json", invoice.id.encode()),
            // Inside Telegram the wallet hands the payer back to the merchant's bot.
            "twa_return_url": mini_app.map(|app| format!("https://t.me/{}", app.bot_username)),
        })
    });
    Some(TonSection {
        connect,
        style_nonce: style_nonce.to_owned(),
        address: value["address"].as_str()?.to_owned(),
        amount: value["amount_minor"]
            .as_u64()
            .map(|minor| amount_number(invoice.currency, minor)),
        unit: display_unit(invoice.currency).0,
        comment: value["comment"].as_str()?.to_owned(),
        qr: link.as_deref().and_then(qr_svg),
        link,
    })
}

/// A small icon for each rail: inline SVG in the text's colour, so it needs no font and no
/// request (emoji drew as empty boxes where no emoji font is installed).
fn rail_icon(rail: Rail) -> &'static str {
    match rail {
        Rail::Stars => {
            r#"<svg class=icon viewBox="0 0 24 24" aria-hidden=true><path d="M12 2l3 7h7l-5.5 4.5L18.5 21 12 16.5 5.5 21l2-7.5L2 9h7z"/></svg>"#
        }
        Rail::Card => {
            r#"<svg class=icon viewBox="0 0 24 24" aria-hidden=true><path d="M2 6a2 2 0 012-2h16a2 2 0 012 2v12a2 2 0 01-2 2H4a2 2 0 01-2-2zm0 3v3h20V9z"/></svg>"#
        }
        Rail::Lightning => {
            r#"<svg class=icon viewBox="0 0 24 24" aria-hidden=true><path d="M13 2L4 14h6l-1 8 9-12h-6z"/></svg>"#
        }
        Rail::Balance => {
            r#"<svg class=icon viewBox="0 0 24 24" aria-hidden=true><path d="M3 7a2 2 0 012-2h13v3h1a2 2 0 012 2v8a2 2 0 01-2 2H5a2 2 0 01-2-2zm13 6a1.5 1.5 0 100 3 1.5 1.5 0 000-3z"/></svg>"#
        }
        Rail::Sandbox => {
            r#"<svg class=icon viewBox="0 0 24 24" aria-hidden=true><path d="M9 2h6v2h-1v5l6 10a2 2 0 01-2 3H6a2 2 0 01-2-3l6-10V4H9z"/></svg>"#
        }
        _ => {
            r#"<svg class=icon viewBox="0 0 24 24" aria-hidden=true><path d="M12 2l9 8-9 12L3 10z"/></svg>"#
        }
    }
}

/// The page's HTML, in English.
#[cfg(test)]
fn render_page_with(
    invoice: &Invoice,
    mode: Mode,
    merchant: &str,
    lightning: &LightningOffer,
    mini_app: Option<&MiniApp>,
) -> String {
    render_page_in(
        invoice,
        mode,
        merchant,
        lightning,
        mini_app,
        &Site::plain(&MerchantSettings::default()),
        texts::choose(None, None),
    )
}

/// What a page takes from beyond its invoice: the merchant's settings, farthing's public URL
/// and this answer's style nonce.
struct Site<'a> {
    settings: &'a MerchantSettings,
    base_url: &'a str,
    style_nonce: String,
}

impl<'a> Site<'a> {
    #[cfg(test)]
    fn plain(settings: &'a MerchantSettings) -> Site<'a> {
        Site {
            settings,
            base_url: "https://pay.example",
            style_nonce: "testnonce".to_owned(),
        }
    }
}

/// A fresh nonce for one answer's Content-Security-Policy (128 random bits, hex).
fn style_nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: a page without TON Connect's styles is better than a guessable nonce.
        return String::new();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The page's HTML in the language of `t`.
fn render_page_in(
    invoice: &Invoice,
    mode: Mode,
    merchant: &str,
    lightning: &LightningOffer,
    mini_app: Option<&MiniApp>,
    site: &Site,
    t: &'static texts::PageTexts,
) -> String {
    let settings = site.settings;
    let lightning = if offers_lightning(invoice) {
        lightning
    } else {
        &LightningOffer::Hidden
    };
    let page = CheckoutPage {
        merchant,
        bot_username: mini_app.map(|app| app.bot_username.as_str()),
        description: &invoice.description,
        amount: amount_text(invoice, t),
        status: invoice.status.as_str(),
        rails: invoice
            .rails
            .iter()
            .map(|rail| (rail_icon(*rail), t.rail(*rail)))
            .collect(),
        separator: if t.dir == "rtl" { "، " } else { ", " },
        test_mode: mode == Mode::Test,
        invoice_id: invoice.id.encode(),
        lightning,
        lightning_qr: match lightning {
            LightningOffer::Bolt11(bolt11) => qr_svg(&lightning_qr_data(bolt11)),
            _ => None,
        },
        ton: ton_section(invoice, site.base_url, mini_app, &site.style_nonce),
        status_json: status_json(invoice),
        mini_app: mini_app.map(|app| mini_app_json(invoice, mode, app)),
        assets: assets::version(),
        t,
        unit: display_unit(invoice.currency).0,
        exponent: display_unit(invoice.currency).1,
        paid_amount: invoice.payment.map_or_else(String::new, |payment| {
            format!(
                "{} {}",
                amount_number(invoice.currency, payment.amount_minor),
                display_unit(invoice.currency).0
            )
        }),
        return_url: invoice.return_url.as_deref(),
        presets: match (&invoice.amount, invoice.status) {
            (InvoiceAmount::Open { presets, .. }, InvoiceStatus::Open) => presets
                .iter()
                .map(|minor| {
                    (
                        *minor,
                        format!(
                            "{} {}",
                            amount_number(invoice.currency, *minor),
                            display_unit(invoice.currency).0
                        ),
                    )
                })
                .collect(),
            _ => Vec::new(),
        },
        balance_only: invoice.rails == [Rail::Balance],
        terms: &settings.terms,
        refund_policy: &settings.refund_policy,
        contacts: &settings.contacts,
    };
    askama::Template::render(&page).unwrap_or_else(|error| {
        // Rendering writes into a String from values that are already checked: it fails only
        // on a bug, and then the payer gets a plain page rather than a blank one.
        tracing::error!(%error, "checkout: the page did not render");
        "<!doctype html><meta charset=utf-8><title>Error</title><p>This page could not be shown; please reload.</p>".to_owned()
    })
}

/// The page's script and style sheet, embedded in the binary and served by farthing itself
/// under `/pay/assets/` (no CDN), immutable: their URLs carry [`assets::version`].
pub mod assets {
    use std::sync::LazyLock;

    use sha2::{Digest, Sha256};

    /// The files: name, content type, content. `tonconnect-ui.min.js` is TON Connect's UI
    /// library (`@tonconnect/ui` 2.4.4, Apache-2.0, `assets/vendor/`), the published file
    /// byte for byte: the test command checks it against the npm package its lock pins.
    pub const FILES: [(&str, &str, &[u8]); 5] = [
        (
            "checkout.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/checkout.js"),
        ),
        (
            "mini-app.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/mini-app.js"),
        ),
        (
            "checkout.css",
            "text/css; charset=utf-8",
            include_bytes!("../../assets/checkout.css"),
        ),
        (
            "tonconnect-ui.min.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/vendor/tonconnect-ui.min.js"),
        ),
        // The icon wallets show for the shop when it asks to connect (TON Connect's manifest
        // wants a 180×180 PNG).
        (
            "icon.png",
            "image/png",
            include_bytes!("../../assets/icon.png"),
        ),
    ];

    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut hasher = Sha256::new();
        for (name, _, content) in FILES {
            hasher.update(name.as_bytes());
            hasher.update(content);
        }
        hasher.finalize()[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    });

    /// A short hash of every asset: changes whenever one of them does.
    pub fn version() -> &'static str {
        &VERSION
    }

    /// The file called `name`: its content type and content.
    pub fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
        FILES
            .iter()
            .find(|(file, _, _)| *file == name)
            .map(|(_, kind, content)| (*kind, *content))
    }
}

/// `GET /pay/assets/{file}`: the checkout page's script and style sheet.
#[utoipa::path(
    get,
    path = "/pay/assets/{file}",
    tag = "checkout",
    operation_id = "checkout_asset",
    params(("file" = String, Path, description = "`checkout.js`, `mini-app.js`, `checkout.css`, `tonconnect-ui.min.js` (TON Connect's UI library, `@tonconnect/ui` 2.4.4, Apache-2.0) or `icon.png` (the icon of TON Connect's manifest).")),
    responses(
        (status = 200, description = "The file (`Cache-Control: public, max-age=31536000, immutable`; the page links it with its version in the query).", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/png"),
        )),
        (status = 404, description = "No such file (`resource_missing`).", body = crate::web::spec::Error),
    )
)]
pub async fn asset(Path(file): Path<String>) -> Response {
    match assets::get(&file) {
        Some((kind, content)) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            content,
        )
            .into_response(),
        None => ApiError::not_found("file", &file).into_response(),
    }
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
            instructions: std::collections::BTreeMap::from([(
                Rail::Lightning,
                crate::instructions::bolt11_json(BOLT11),
            )]),
            subscription_period_s: None,
            return_url: None,
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
    fn a_ton_invoice_shows_address_amount_comment_qr_and_warning() {
        let mut invoice = invoice(Currency::TON, vec![Rail::Ton]);
        let link =
            "ton://transfer/UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p?amount=1500000000&text=K7M2Q9XH4D&exp=99";
        invoice.instructions.insert(
            Rail::Ton,
            serde_json::json!({
                "address": "UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p",
                "amount_minor": 1_500_000_000u64,
                "comment": "K7M2Q9XH4D",
                "link": link,
            })
            .to_string(),
        );
        let html = render_page(&invoice, Mode::Live, "Shop", &LightningOffer::Hidden);
        for id in [
            "id=ton>",
            "id=ton-qr ",
            "id=ton-address ",
            "id=ton-amount ",
            "id=ton-comment ",
            "id=ton-warning>",
            "id=ton-open ",
        ] {
            assert!(html.contains(id), "{id} missing");
        }
        assert!(html.contains(r#"value="K7M2Q9XH4D""#));
        assert!(
            html.contains(r#"value="1.500000000""#),
            "the amount a wallet takes"
        );
        assert!(html.contains(r#"id=ton-open href="ton://transfer/UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p?amount=1500000000"#));
        assert!(html.contains("text=K7M2Q9XH4D"));
        assert!(html.contains("data-copy=ton-comment"));
        // Without a TON Connect request (USDT, amountless) there is no wallet button and no
        // library or style element for it.
        assert!(!html.contains("id=ton-connect-pay"));
        assert!(!html.contains("tonconnect-ui.min.js"));
        assert!(!html.contains("id=_goober"));
        // With one: the button, the request and the manifest for the script, the library from
        // farthing's assets, and the one style element with this answer's nonce.
        invoice.instructions.insert(
            Rail::Ton,
            serde_json::json!({
                "address": "UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p",
                "amount_minor": 1_500_000_000u64,
                "comment": "K7M2Q9XH4D",
                "link": link,
                "ton_connect": {"valid_until": 99, "network": "-239", "messages": [{"address": "UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p", "amount": "1500000000", "payload": "te6cc</script>"}]},
            })
            .to_string(),
        );
        let html = render_page(&invoice, Mode::Live, "Shop", &LightningOffer::Hidden);
        assert!(
            html.contains("<button id=ton-connect-pay type=button hidden>Pay with wallet</button>")
        );
        assert!(html.contains("<style id=_goober nonce=\"testnonce\"> </style>"));
        assert!(html.contains(&format!(
            "<script src=\"/pay/assets/tonconnect-ui.min.js?v={}\"></script>",
            assets::version()
        )));
        let data = html
            .split("<script type=application/json id=ton-connect-data>")
            .nth(1)
            .and_then(|rest| rest.split("</script>").next())
            .expect("the TON Connect data");
        let data: serde_json::Value = serde_json::from_str(data).expect("JSON");
        assert_eq!(
            data["manifest_url"],
            format!(
                "https://pay.example/pay/{}/tonconnect-manifest.json",
                invoice.id.encode()
            )
        );
        assert_eq!(data["request"]["messages"][0]["amount"], "1500000000");
        assert_eq!(data["twa_return_url"], serde_json::Value::Null);
        // A payload can't end the JSON block early.
        assert_eq!(data["request"]["messages"][0]["payload"], "te6cc</script>");
        // A paid invoice shows no way to pay it again.
        invoice.status = InvoiceStatus::Paid;
        let html = render_page(&invoice, Mode::Live, "Shop", &LightningOffer::Hidden);
        assert!(!html.contains("id=ton>"));
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
        assert!(!html.contains("id=lightning-retry"));
        // The status badge's classes are the statuses (`status open`): no rule may target them.
        for status in ["open", "paid", "expired", "canceled"] {
            assert!(
                !html.contains(&format!("\n.{status}{{")),
                "a rule for .{status}"
            );
        }
        // The rest of the page is still escaped.
        assert!(html.contains("Coffee &#60;b&#62;&#38;&#60;/b&#62; cake"));
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
            assert!(
                !html.contains("<section class=lightning"),
                "{:?}",
                invoice.currency
            );
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
        assert!(html.contains(&format!(
            "<script src=\"/pay/assets/checkout.js?v={}\"></script>",
            assets::version()
        )));

        let html = render_page(&invoice, Mode::Live, "Shop", &LightningOffer::NotPossible);
        assert!(html.contains(
            "id=lightning-error role=alert>This invoice can&#39;t be paid with Lightning."
        ));
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
        assert!(html.contains("<script type=application/json id=mini-app-data>{"));
        assert!(html.contains("\"bot_id\":123456"));
        assert!(html.contains("<script src=\"/pay/assets/mini-app.js?v="));
        // SPEC T6: the verified bot username is on the page.
        assert!(html.contains("<b>@shop_bot</b>"));
        assert!(html.contains("\"amount\":1000"));
        // The link is escaped for the script element; the Telegram script is only a URL the
        // page's code may load when opened as a Mini App, never a tag of its own.
        assert!(html.contains("https://t.me/$abc\\u003c/script\\u003e"));
        let sources: Vec<&str> = html.split("<script src=\"").skip(1).collect();
        assert_eq!(sources.len(), 2, "checkout.js and mini-app.js only");
        assert!(sources.iter().all(|rest| rest.starts_with("/pay/assets/")));
        let config = mini_app_json(&invoice, Mode::Test, &mini_app);
        assert_eq!(config["stars_link"], "https://t.me/$abc</script>");
        assert_eq!(config["balance"], true);
        assert_eq!(config["amount_label"], "1000 Stars");

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
        assert!(!html.contains("mini-app"));
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
        assert!(html.contains("value=\"lnbc1&#34;&#62;&#60;script&#62;x&#60;/script&#62;\""));
    }

    #[test]
    fn the_page_speaks_its_language_right_to_left_in_persian() {
        let invoice = invoice(Currency::XTR, vec![Rail::Stars, Rail::Balance]);
        let html = render_page_in(
            &invoice,
            Mode::Test,
            "Shop",
            &LightningOffer::Hidden,
            None,
            &Site::plain(&MerchantSettings::default()),
            texts::choose(Some("fa"), None),
        );
        assert!(html.contains("<html lang=fa dir=rtl>"));
        assert!(
            html.contains("استارز تلگرام</span>، <span class=rail>"),
            "the Arabic comma in a Persian list"
        );
        assert!(html.contains("حالت آزمایشی"));
        assert!(html.contains("id=page-texts>{"));
    }

    #[test]
    fn no_value_can_end_the_json_blocks() {
        let mut invoice = invoice(Currency::XTR, vec![Rail::Stars]);
        invoice.id = InvoiceId::parse("inv_0000000000000000000000").unwrap_or(invoice.id);
        let mini_app = MiniApp {
            bot_id: 1,
            bot_username: "</script><script>alert(1)</script>".to_owned(),
            script_url: "</script>".to_owned(),
        };
        let html = render_page_with(
            &invoice,
            Mode::Live,
            "</script>",
            &LightningOffer::Hidden,
            Some(&mini_app),
        );
        // The only `</script>` are the page's own: three JSON blocks and two script files.
        assert_eq!(html.matches("</script>").count(), 5, "{html}");
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<div class=test>"));
    }

    #[test]
    fn the_assets_are_embedded_and_versioned_by_content() {
        for name in [
            "checkout.js",
            "mini-app.js",
            "checkout.css",
            "tonconnect-ui.min.js",
        ] {
            let (kind, content) = assets::get(name).expect(name);
            assert!(content.len() > 500, "{name} is the real file");
            assert!(kind.ends_with("charset=utf-8"));
            assert!(std::str::from_utf8(content).is_ok(), "{name} is UTF-8");
        }
        let (kind, icon) = assets::get("icon.png").expect("icon");
        assert_eq!(kind, "image/png");
        assert!(icon.starts_with(b"\x89PNG\r\n\x1a\n"));
        // The IHDR's width and height: 180 × 180, as TON Connect's manifest asks.
        assert_eq!(&icon[16..24], &[0, 0, 0, 180, 0, 0, 0, 180]);
        assert_eq!(assets::get("../Cargo.toml"), None);
        assert_eq!(assets::version().len(), 12);
        let script = assets::get("checkout.js").expect("script").1;
        assert!(String::from_utf8_lossy(script).contains("getElementById('invoice-data')"));
    }

    #[test]
    fn the_next_step_is_shown_with_the_invoice_and_the_merchants_texts_escaped() {
        let mut invoice = invoice(Currency::XTR, vec![Rail::Balance]);
        invoice.return_url = Some("https://shop.example/o?a=1&b=\"2\"".to_owned());
        let settings = MerchantSettings {
            terms: "No <refunds> on digital goods".to_owned(),
            contacts: "@shop_support".to_owned(),
            ..MerchantSettings::default()
        };
        let page = |invoice: &Invoice, mini_app: Option<&MiniApp>| {
            render_page_in(
                invoice,
                Mode::Live,
                "Shop",
                &LightningOffer::Hidden,
                mini_app,
                &Site::plain(&settings),
                texts::choose(None, None),
            )
        };
        // Open: the link back is there for the script but hidden; a balance-only invoice
        // without a bot says it cannot be paid here.
        let html = page(&invoice, None);
        assert!(html.contains(
            "id=return-link href=\"https://shop.example/o?a=1&#38;b=&#34;2&#34;\" rel=\"noopener noreferrer\" hidden>"
        ), "{html}");
        assert!(html.contains("id=balance-only>This invoice is paid from a prepaid balance"));
        assert!(html.contains("No &#60;refunds&#62; on digital goods"));
        assert!(html.contains("<p id=contacts>@shop_support</p>"));
        assert!(!html.contains("id=refund-policy"));
        // With the merchant's bot: where to pay it.
        let bot = MiniApp {
            bot_id: 1,
            bot_username: "shop_bot".to_owned(),
            script_url: "https://telegram.org/js/telegram-web-app.js".to_owned(),
        };
        let html = page(&invoice, Some(&bot));
        assert!(
            html.contains("<a href=\"https://t.me/shop_bot\">@shop_bot</a>"),
            "{html}"
        );
        // Expired: the next step and the link back are visible, the balance note gone.
        invoice.status = InvoiceStatus::Expired;
        let html = page(&invoice, None);
        assert!(html.contains("<p class=next id=expired-next>This invoice has expired"));
        assert!(html.contains("rel=\"noopener noreferrer\">Back to the shop</a>"));
        assert!(!html.contains("id=balance-only"));
    }
}
