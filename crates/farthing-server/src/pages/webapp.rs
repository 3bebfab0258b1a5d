//! The Telegram Mini App side of checkout (SPEC T4): `POST /webapp/session` turns a Mini App's
//! `initData` into a short-lived session, and `POST /webapp/pay/{invoice}` pays an invoice from
//! that session's customer balance in one call. The page itself is `checkout.rs`.
//!
//! `initData` is checked by `farthing_telegram` with the token of the bot named in the request
//! (HMAC-SHA256 with the `WebAppData`-derived key); when that hash does not verify (or is
//! absent), the Ed25519 `signature` Telegram adds for third parties is checked instead against
//! the configured Telegram key (`telegram.init_data_public_key`). Either way `auth_date` must be
//! within `telegram.init_data_max_age_s`. The Telegram user becomes the merchant's customer
//! `tg:<user id>` on first contact.
//!
//! A session is a token `wss_<payload>.<mac>` (base64url): the payload carries the mode, the
//! merchant, the customer, the Telegram user id and the expiry, in the clear and nothing
//! secret; the MAC is HMAC-SHA256 under the server's session key ([`SessionKey`], see
//! [`crate::signed_token`], shared with the dashboard's sessions: random per process, or derived
//! from the secrets key on a shared PostgreSQL database). Nothing is stored, so with a random
//! key sessions end when the server restarts: the page then asks for a new one with the
//! `initData` Telegram gives it again.
//!
//! This module never decides that an invoice is paid by itself: the payment is the booking of
//! `POST /v1/invoices/{id}/pay` (transfer id = invoice id), run in one store job.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use farthing_app::risk::RiskCheck;
use farthing_core::invoice::InvoiceStatus;
use farthing_core::risk::Operation;
use farthing_core::{CustomerId, InvoiceId, MerchantId, PublicId, Rail};
use farthing_store::TelegramBot;
use farthing_telegram::init_data::{
    verify_third_party, verify_with_bot_token, InitData, InitDataError, TelegramPublicKey,
};
use farthing_telegram::{BotId, BotToken, Freshness};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::state::{AppState, Mode};
use crate::web::error::ApiError;
use crate::web::extract;

pub use crate::signed_token::SessionKey;
use crate::signed_token::{u128_at, u64_at};

/// What a valid session says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// Live or test: the store the customer lives in.
    pub mode: Mode,
    /// The merchant whose bot the user opened.
    pub merchant: MerchantId,
    /// The customer `tg:<user>`.
    pub customer: CustomerId,
    /// The Telegram user id.
    pub user: u64,
    /// When the session ends (Unix seconds).
    pub expires_at_unix_s: u64,
}

const TOKEN_PREFIX: &str = "wss_";
const PAYLOAD_VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 1 + 16 + 16 + 8 + 8;

impl Session {
    /// The signed token of this session.
    pub fn token(&self, key: &SessionKey) -> String {
        let mut payload = Vec::with_capacity(PAYLOAD_LEN);
        payload.push(PAYLOAD_VERSION);
        payload.push(u8::from(self.mode.is_live()));
        payload.extend_from_slice(&self.merchant.raw().to_be_bytes());
        payload.extend_from_slice(&self.customer.raw().to_be_bytes());
        payload.extend_from_slice(&self.user.to_be_bytes());
        payload.extend_from_slice(&self.expires_at_unix_s.to_be_bytes());
        key.sign(TOKEN_PREFIX, &payload)
    }

    /// The session of `token`, if `key` signed it and it has not expired at `now_unix_s`.
    pub fn verify(token: &str, key: &SessionKey, now_unix_s: u64) -> Result<Session, ApiError> {
        let invalid = || {
            ApiError::unauthorized(
                "invalid_session",
                "the Mini App session is missing, malformed or was not issued by this server \
                 (on SQLite, sessions end when the server restarts): get a new one from POST /webapp/session",
            )
        };
        let payload = key.open(TOKEN_PREFIX, token).ok_or_else(invalid)?;
        if payload.len() != PAYLOAD_LEN || payload[0] != PAYLOAD_VERSION {
            return Err(invalid());
        }
        let session = Session {
            mode: if payload[1] == 1 {
                Mode::Live
            } else {
                Mode::Test
            },
            merchant: MerchantId::from_raw(u128_at(&payload, 2)),
            customer: CustomerId::from_raw(u128_at(&payload, 18)),
            user: u64_at(&payload, 34),
            expires_at_unix_s: u64_at(&payload, 42),
        };
        if session.expires_at_unix_s <= now_unix_s {
            return Err(ApiError::unauthorized(
                "session_expired",
                "the Mini App session has expired: get a new one from POST /webapp/session with \
                 fresh init data",
            ));
        }
        Ok(session)
    }
}

pub use crate::config::telegram_public_key as public_key;

/// Verifies `init_data` for `bot`: its bot-token hash, else Telegram's third-party signature.
fn verify(
    init_data: &str,
    bot: &TelegramBot,
    key: &TelegramPublicKey,
    freshness: Freshness,
    now_unix_s: u64,
) -> Result<InitData, ApiError> {
    let token = BotToken::parse(&bot.token).map_err(|_| {
        ApiError::internal(format!(
            "the stored token of bot {} is unreadable",
            bot.bot_id
        ))
    })?;
    let checked = match verify_with_bot_token(init_data, &token, freshness, now_unix_s) {
        Err(first @ (InitDataError::BadHash | InitDataError::MissingHash)) => {
            let third_party = BotId::new(bot.bot_id)
                .ok_or(InitDataError::BadSignature)
                .and_then(|bot_id| {
                    verify_third_party(init_data, bot_id, key, freshness, now_unix_s)
                });
            match third_party {
                // No signature to fall back on, or one that does not verify either: the hash's
                // error says more, unless there was no hash at all.
                Err(InitDataError::MissingField("signature")) => Err(first),
                Err(InitDataError::BadSignature) if first == InitDataError::BadHash => Err(first),
                other => other,
            }
        }
        other => other,
    };
    checked.map_err(refused)
}

fn refused(error: InitDataError) -> ApiError {
    ApiError::unauthorized("invalid_init_data", error.to_string())
}

/// `POST /webapp/session`: the request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebappSession {
    /// The bot whose Mini App sent the data (the number before `:` in its token); the checkout
    /// page shows it.
    #[schema(example = 123456789)]
    pub bot_id: u64,
    /// `Telegram.WebApp.initData`, exactly as the Mini App received it.
    #[schema(
        example = "query_id=AAF…&user=%7B%22id%22%3A42…%7D&auth_date=1700000000&signature=…&hash=…"
    )]
    pub init_data: String,
    /// The invoice the page shows (`inv_…`): the session is then for that invoice's merchant
    /// and mode, and a bot that is not that merchant's is refused.
    #[serde(default)]
    pub invoice: Option<String>,
}

/// `POST /webapp/pay/{invoice}`: the request (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebappPay {
    /// For an amountless invoice: the amount chosen, in minor units.
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub amount: Option<Value>,
}

/// The invoice `id` in whichever mode holds it.
fn find_invoice(
    state: &AppState,
    id: &str,
) -> Result<Option<(Mode, farthing_core::invoice::Invoice)>, ApiError> {
    let Ok(invoice_id) = InvoiceId::parse(id) else {
        return Ok(None);
    };
    for (mode, store) in state.stores() {
        if let Some(invoice) = store.read(move |reader| reader.invoice(invoice_id))? {
            return Ok(Some((mode, invoice)));
        }
    }
    Ok(None)
}

/// Start a Mini App session
///
/// Checks a Telegram Mini App's `initData` with the bot's token (or Telegram's Ed25519
/// third-party signature), refuses it when older than `telegram.init_data_max_age_s` (default
/// one hour), makes the Telegram user the merchant's customer `tg:<user id>` on first contact,
/// and answers a session token for `Authorization: Bearer` on `POST /webapp/pay/{invoice}`.
/// The session lasts `telegram.webapp_session_ttl_s` (default one hour) and ends when the server
/// restarts.
#[utoipa::path(
    post,
    path = "/webapp/session",
    tag = "checkout",
    operation_id = "create_webapp_session",
    request_body(content = CreateWebappSession, content_type = "application/json"),
    responses(
        (status = 200, description = "The session, the customer and the Telegram user.", body = crate::web::spec::WebappSession),
        (status = 400, description = "The body is not JSON of this shape (`invalid_body`), or names an invoice that does not exist (`invalid_invoice`).", body = crate::web::spec::Error),
        (status = 401, description = "The init data is refused (`invalid_init_data`): its hash or signature does not verify, it is older than the window, a field is missing, or the bot is not connected (or is not the invoice's merchant's bot); the message says which.", body = crate::web::spec::Error),
        crate::web::spec::TooLarge,
        crate::web::spec::Internal,
        crate::web::spec::Unavailable,
    ),
)]
pub async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = crate::web::extract::body_bytes(body, state.config().max_body_bytes)?;
    let request: CreateWebappSession = extract::json_body(&headers, &body)?;
    let settings = &state.config().telegram;
    let key = public_key(&settings.init_data_public_key)
        .ok_or_else(|| ApiError::internal("telegram.init_data_public_key is invalid"))?;
    let freshness = Freshness {
        max_age_s: settings.init_data_max_age_s,
        ..Freshness::DEFAULT
    };
    let wrong_bot = |why: String| ApiError::unauthorized("invalid_init_data", why);
    let expected = match &request.invoice {
        Some(id) => {
            let (mode, invoice) = find_invoice(&state, id)?.ok_or_else(|| {
                ApiError::invalid("invalid_invoice", format!("no such invoice: {id:?}"))
                    .param("invoice")
            })?;
            Some((mode, invoice.merchant))
        }
        None => None,
    };
    let bot_id = request.bot_id;
    let mut candidates = Vec::new();
    for (mode, store) in state.stores() {
        for bot in store.read(move |reader| reader.telegram_bots_by_id(bot_id))? {
            if expected.is_none_or(|expected| expected == (mode, bot.merchant)) {
                candidates.push((mode, bot));
            }
        }
    }
    if candidates.is_empty() {
        return Err(wrong_bot(match expected {
            Some(_) => format!(
                "bot {bot_id} is not the bot of this invoice's merchant: open the Mini App from \
                 the merchant's bot (the checkout page names it)"
            ),
            None => format!("no bot {bot_id} is connected to farthing (wrong bot id)"),
        }));
    }
    let now = state.app().clock().now_s();
    let mut verified = None;
    let mut first_error = None;
    for (mode, bot) in candidates {
        match verify(&request.init_data, &bot, &key, freshness, now) {
            Ok(data) => {
                verified = Some((mode, bot.merchant, data));
                break;
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let Some((mode, merchant, data)) = verified else {
        return Err(first_error.unwrap_or_else(|| refused(InitDataError::BadHash)));
    };
    let user = data.require_user().map_err(refused)?.clone();
    let user_id = user.id;
    let customer = state
        .app()
        .run(mode, move |tx| {
            farthing_app::customers::telegram(tx, merchant, mode, user_id.get())
        })
        .await?;
    let balances = state
        .store(mode)
        .read(move |reader| reader.customer_balances(merchant, customer))?;
    let session = Session {
        mode,
        merchant,
        customer,
        user: user_id.get(),
        expires_at_unix_s: now.saturating_add(settings.webapp_session_ttl_s),
    };
    let mut user_json = json!({"id": user_id.get(), "first_name": user.first_name});
    if let Some(username) = &user.username {
        user_json["username"] = json!(username);
    }
    if let Some(language_code) = &user.language_code {
        user_json["language_code"] = json!(language_code);
    }
    let answer = json!({
        "object": "webapp_session",
        "session": session.token(state.webapp_key()),
        "expires_at": session.expires_at_unix_s,
        "customer": customer.encode(),
        "user": user_json,
        "livemode": mode.is_live(),
        "balances": balances.iter().map(|(currency, balance, available)| json!({
            "currency": currency.code(),
            "balance": i64::try_from(*balance).unwrap_or(i64::MAX),
            "available": i64::try_from(*available).unwrap_or(i64::MAX),
        })).collect::<Vec<_>>(),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response())
}

/// Pay an invoice from the Mini App session's balance
///
/// One tap in the Mini App: pays the open invoice from the balance of the session's customer,
/// booked exactly as `POST /v1/invoices/{id}/pay` books it (the invoice id is the ledger
/// transfer id, so it is never booked twice). Repeating the call after it succeeded answers
/// the paid invoice again.
#[utoipa::path(
    post,
    path = "/webapp/pay/{invoice}",
    tag = "checkout",
    operation_id = "webapp_pay",
    security(("webapp_session" = [])),
    params(("invoice" = String, Path, description = "The invoice, `inv_…`.")),
    request_body(content = Option<WebappPay>, content_type = "application/json", description = "Only for an amountless invoice: the amount chosen."),
    responses(
        (status = 200, description = "The paid invoice's status.", body = crate::web::spec::CheckoutStatus),
        (status = 400, description = "A bad amount (`invalid_amount`, `amount_required`…), an invoice that does not take the balance rail (`rail_not_accepted`), or one for another customer (`customer_mismatch`).", body = crate::web::spec::Error),
        (status = 401, description = "No session, a malformed or foreign one (`invalid_session`), or an expired one (`session_expired`).", body = crate::web::spec::Error),
        (status = 402, description = "The customer's balance does not cover the amount (`insufficient_funds`). Or the merchant's risk rules refused the payment (`risk_refused`, with `decision`: see `GET /v1/risk/decisions`); nothing was written.", body = crate::web::spec::Error),
        (status = 404, description = "No such invoice for the session's merchant (`resource_missing`).", body = crate::web::spec::Error),
        (status = 409, description = "The invoice is not open (`invoice_not_open`) or has expired (`invoice_expired`).", body = crate::web::spec::Error),
        crate::web::spec::TooLarge,
        crate::web::spec::Internal,
        crate::web::spec::Unavailable,
    ),
)]
pub async fn pay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: Option<axum::Extension<crate::web::limits::ClientIp>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let session = Session::verify(
        token.trim(),
        state.webapp_key(),
        state.app().clock().now_s(),
    )?;
    let body = crate::web::extract::body_bytes(body, state.config().max_body_bytes)?;
    let request: WebappPay = extract::json_body(&headers, &body)?;
    let amount = extract::optional_amount(&request.amount, "amount")?;
    let invoice_id: InvoiceId = extract::id_path(&id)?;
    let Session {
        mode,
        merchant,
        customer,
        user,
        ..
    } = session;

    let risk = RiskCheck::new(state.app(), mode, merchant, Operation::MiniApp)
        .telegram_user(i64::try_from(user).ok())
        .ip(client.and_then(|axum::Extension(client)| client.0))
        .subject(invoice_id.encode());
    let guard = risk.clone();
    let status = state
        .app()
        .run(mode, move |tx| -> Result<Value, ApiError> {
            let invoice = farthing_app::customers::require_invoice(tx, merchant, invoice_id)?;
            // A retry of a payment that went through (the answer was lost): the same answer.
            let already_paid = invoice.status == InvoiceStatus::Paid
                && invoice
                    .payment
                    .is_some_and(|p| p.rail == Rail::Balance && p.customer == Some(customer));
            if !already_paid {
                farthing_app::invoices::pay_from_balance(tx, &guard, invoice_id, customer, amount)?;
            }
            let invoice = farthing_app::customers::require_invoice(tx, merchant, invoice_id)?;
            Ok(crate::pages::checkout::status_json(&invoice))
        })
        .await;
    risk.finish().await?;
    let status = status?;
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(status),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at_unix_s: u64) -> Session {
        Session {
            mode: Mode::Test,
            merchant: MerchantId::from_raw(7),
            customer: CustomerId::from_raw(u128::MAX - 3),
            user: 42,
            expires_at_unix_s,
        }
    }

    #[test]
    fn a_session_token_round_trips_and_carries_no_secret() {
        let key = SessionKey::random();
        let token = session(1_000).token(&key);
        assert!(token.starts_with("wss_"));
        assert_eq!(Session::verify(&token, &key, 999).unwrap(), session(1_000));
        assert_eq!(format!("{key:?}"), "SessionKey(..)");
    }

    #[test]
    fn a_session_is_refused_when_expired_tampered_or_foreign() {
        let key = SessionKey::random();
        let token = session(1_000).token(&key);
        assert_eq!(
            Session::verify(&token, &key, 1_000).unwrap_err().code,
            "session_expired"
        );
        // Another process (a restart) made it.
        let other = SessionKey::random();
        assert_eq!(
            Session::verify(&token, &other, 1).unwrap_err().code,
            "invalid_session"
        );
        // A longer life, signed with nothing.
        let forged = session(u64::MAX).token(&other);
        let (_, forged_payload) = forged.split_once('_').unwrap();
        let (_, tag) = token.split_once('.').unwrap();
        let spliced = format!("wss_{}.{tag}", forged_payload.split_once('.').unwrap().0);
        assert_eq!(
            Session::verify(&spliced, &key, 1).unwrap_err().code,
            "invalid_session"
        );
        for bad in ["", "wss_", "wss_.", "Bearer x", "wss_AAAA.AAAA"] {
            assert_eq!(
                Session::verify(bad, &key, 1).unwrap_err().code,
                "invalid_session"
            );
        }
    }

    #[test]
    fn the_public_key_setting() {
        assert!(public_key("production").is_some());
        assert!(public_key("test").is_some());
        assert_ne!(
            public_key("production").unwrap().to_bytes(),
            public_key("test").unwrap().to_bytes()
        );
        let hex: String = public_key("test")
            .unwrap()
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            public_key(&hex).unwrap().to_bytes(),
            public_key("test").unwrap().to_bytes()
        );
        assert!(public_key("nope").is_none());
        assert!(public_key(&"zz".repeat(32)).is_none());
    }
}
