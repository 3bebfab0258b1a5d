//! The Stars rail's adapter (SPEC RL2): a merchant connects its bot (`PUT /v1/rails/stars`: the
//! token is checked with `getMe` at the configured Bot API base URL, then Telegram is told
//! where updates go — `setWebhook` in webhook mode when farthing has a public HTTPS URL or is
//! asked to, `deleteWebhook` in polling mode — and only then is anything stored; the token is
//! never part of an answer, an error or a log line). Fixed-amount `XTR` invoices get a Stars
//! invoice link; refunds go back with `refundStarPayment`; the reconciliation over
//! `getStarTransactions` is its background work.

use std::time::Duration;

use farthing_app::rail::{
    Carries, Connected, RailAdapter, RailRefund, RailRefunded, RailStatus, Task,
};
use farthing_app::{App, AppError, Mode};
use farthing_botapi::{BotApiError, BotClient, TELEGRAM_API_URL};
use farthing_core::invoice::Invoice;
use farthing_core::{InvoiceId, MerchantId, PublicId, Rail};
use farthing_store::TelegramBot;
use farthing_telegram::{BotToken, TelegramUserId};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use utoipa::ToSchema;

use super::{create_link, invoice_link_json, stars_link_params, TelegramRails, ALLOWED_UPDATES};

/// How long `getMe` may take when a bot is connected.
const GET_ME_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `webhook_secret` (Telegram's `secret_token` limit).
const MAX_SECRET_CHARS: usize = 256;

/// The body of `PUT /v1/rails/stars`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectStars {
    /// The bot token from @BotFather (`123456:ABC…`). Stored, never returned.
    pub bot_token: String,
    /// The Bot API base URL; `https://api.telegram.org` by default.
    pub api_url: Option<String>,
    /// How updates arrive: `webhook` (`POST /telegram/{bot_id}/webhook`) or `polling`.
    pub mode: String,
    /// The `X-Telegram-Bot-Api-Secret-Token` Telegram must send with webhooks: 1 to 256 of
    /// `A-Z a-z 0-9 _ -`. Generated (and returned once) in `webhook` mode when absent.
    pub webhook_secret: Option<String>,
    /// `webhook` mode: whether farthing calls `setWebhook` (url
    /// `<public_url>/telegram/<bot_id>/webhook`, the `webhook_secret` as `secret_token`,
    /// `allowed_updates` `message`, `pre_checkout_query`, `callback_query`). Default: when the
    /// server's `public_url` is `https` on a host other than localhost (Telegram only pushes to
    /// public HTTPS URLs); `true` forces it (a local Bot API server), `false` leaves the webhook
    /// to you. Must not be `true` in `polling` mode, where `deleteWebhook` is always called.
    pub set_webhook: Option<bool>,
}

/// The Stars rail.
#[derive(Clone)]
pub struct StarsRail {
    telegram: TelegramRails,
}

impl StarsRail {
    /// The rail over the shared Telegram part.
    pub fn new(telegram: TelegramRails) -> StarsRail {
        StarsRail { telegram }
    }

    /// The shared Telegram part.
    pub fn telegram(&self) -> &TelegramRails {
        &self.telegram
    }
}

/// The `rail` object of the Stars rail for a connected bot (no token, no secret).
pub fn status_of(bot: &TelegramBot, mode: Mode) -> RailStatus {
    RailStatus::new(Rail::Stars, mode, "healthy")
        .with("bot_id", bot.bot_id)
        .with("username", &bot.username)
        .with("mode", &bot.mode)
}

fn valid_secret(secret: &str) -> bool {
    !secret.is_empty()
        && secret.chars().count() <= MAX_SECRET_CHARS
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn generate_secret() -> Result<String, AppError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(AppError::internal)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn bad_token(message: &str) -> AppError {
    AppError::invalid("invalid_bot_token", message).param("bot_token")
}

/// Maps a failed `getMe` (the error never contains the token).
fn get_me_error(error: &BotApiError) -> AppError {
    match error.error_code() {
        Some(401 | 404) => bad_token("Telegram refused this bot token (getMe: unauthorized)"),
        _ => crate::rails::telegram::telegram_error("getMe", error),
    }
}

/// Whether `public_url` is one Telegram can push webhooks to: `https`, not localhost.
fn is_public_https(public_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(public_url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let local = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    };
    url.scheme() == "https" && !local
}

impl RailAdapter for StarsRail {
    type Config = ConnectStars;

    fn rail(&self) -> Rail {
        Rail::Stars
    }

    fn offer(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<Carries>, AppError> {
        Ok(self
            .telegram
            .bot(app, mode, merchant)?
            .map(|_| Carries::any()))
    }

    async fn connect(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        request: ConnectStars,
    ) -> Result<Connected, AppError> {
        let token = BotToken::parse(request.bot_token.trim())
            .map_err(|_| bad_token("bot_token is not a bot token (`<bot id>:<secret>`)"))?;
        let updates = match request.mode.as_str() {
            "webhook" | "polling" => request.mode.clone(),
            _ => {
                return Err(AppError::invalid(
                    "invalid_mode",
                    "mode must be \"webhook\" or \"polling\"",
                )
                .param("mode"))
            }
        };
        let (webhook_secret, generated) = match request.webhook_secret {
            Some(secret) if valid_secret(&secret) => (Some(secret), false),
            Some(_) => {
                return Err(AppError::invalid(
                    "invalid_webhook_secret",
                    "webhook_secret must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -",
                )
                .param("webhook_secret"))
            }
            None if updates == "webhook" => (Some(generate_secret()?), true),
            None => (None, false),
        };
        if request.set_webhook == Some(true) && updates == "polling" {
            return Err(AppError::invalid(
                "invalid_set_webhook",
                "set_webhook applies to mode \"webhook\"; in polling mode the webhook is deleted",
            )
            .param("set_webhook"));
        }
        let set_webhook = updates == "webhook"
            && request
                .set_webhook
                .unwrap_or_else(|| is_public_https(self.telegram.base_url()));
        let api_url = request
            .api_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .unwrap_or(TELEGRAM_API_URL)
            .trim_end_matches('/')
            .to_owned();
        // The Bot API's address is the operator's choice: a merchant's own URL would make
        // farthing call any host (and claim any bot id through a fake getMe).
        let allowed = &self.telegram.config().api_urls;
        if api_url != TELEGRAM_API_URL
            && !allowed
                .iter()
                .any(|url| url == "*" || url.trim_end_matches('/') == api_url)
        {
            return Err(AppError::invalid(
                "api_url_not_allowed",
                format!(
                    "api_url {api_url:?} is not a Bot API server this farthing allows; leave it out to use {TELEGRAM_API_URL}, or ask the operator to add it to telegram.api_urls"
                ),
            )
            .param("api_url"));
        }
        let client = BotClient::new(&api_url, token.clone(), GET_ME_TIMEOUT).map_err(|_| {
            AppError::invalid(
                "invalid_api_url",
                "api_url must be an http or https base URL without a path to a bot",
            )
            .param("api_url")
        })?;
        let me = client.get_me().await.map_err(|e| get_me_error(&e))?;
        let bot_id = token.bot_id().get();
        if u64::try_from(me.id).ok() != Some(bot_id) || !me.is_bot {
            return Err(bad_token(
                "getMe answered with another user than the token's bot",
            ));
        }
        let Some(username) = me.username.filter(|name| !name.is_empty()) else {
            return Err(bad_token("getMe answered with a bot without a username"));
        };
        // One merchant per bot, across both modes: a bot's updates and payments must never be
        // read as another merchant's.
        let mut others = Vec::new();
        for (_, store) in app.stores() {
            others.extend(store.read(move |reader| reader.telegram_bots_by_id(bot_id))?);
        }
        if others.iter().any(|bot| bot.merchant != merchant) {
            return Err(AppError::conflict(
                "bot_already_connected",
                "another merchant connected this bot; a bot serves one merchant",
            ));
        }
        // Telegram is told where updates go before anything is stored: a refusal stores nothing.
        if set_webhook {
            let url = format!("{}/telegram/{bot_id}/webhook", self.telegram.base_url());
            client
                .set_webhook(&url, webhook_secret.as_deref(), Some(ALLOWED_UPDATES))
                .await
                .map_err(|e| crate::rails::telegram::telegram_error("setWebhook", &e))?;
        } else if updates == "polling" {
            // getUpdates refuses to run while a webhook is set; pending updates are kept.
            client
                .delete_webhook(false)
                .await
                .map_err(|e| crate::rails::telegram::telegram_error("deleteWebhook", &e))?;
        }
        let now = app.now_ns();
        let bot = TelegramBot {
            merchant,
            bot_id,
            username,
            token: token.expose_secret().to_owned(),
            api_url,
            mode: updates,
            webhook_secret,
            created_at_ns: now,
            updated_at_ns: now,
        };
        let mut status = status_of(&bot, mode);
        if generated {
            if let Some(secret) = &bot.webhook_secret {
                status = status.with("webhook_secret", secret);
            }
        }
        let telegram = self.telegram.clone();
        Ok(Connected {
            status,
            store: Box::new(move |tx| Ok(tx.upsert_telegram_bot(&bot)?)),
            // The poller starts, restarts or stops this bot's long polling now.
            after_commit: Some(Box::new(move || telegram.bots_changed().notify_one())),
        })
    }

    async fn status(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<RailStatus>, AppError> {
        let Some(bot) = self.telegram.bot(app, mode, merchant)? else {
            return Ok(None);
        };
        // The bot answered `getMe` when it was connected; the last Stars reconciliation
        // (`getStarTransactions`), if any.
        let bot_id = bot.bot_id;
        let mark = app.read(mode, move |reader| reader.star_watermark(merchant, bot_id))?;
        Ok(Some(
            status_of(&bot, mode)
                .with(
                    "reconciled_at",
                    mark.as_ref()
                        .map(|m| farthing_app::wire::unix_s(m.reconciled_at_ns)),
                )
                .with("reconcile_error", mark.and_then(|m| m.last_error)),
        ))
    }

    async fn instructions(
        &self,
        app: &App,
        mode: Mode,
        invoice: &Invoice,
    ) -> Result<Option<String>, AppError> {
        let Some(params) = stars_link_params(invoice) else {
            return Ok(None);
        };
        let Some(bot) = self.telegram.bot(app, mode, invoice.merchant)? else {
            return Ok(None);
        };
        Ok(create_link(&self.telegram, &bot, &params)
            .await
            .map(|link| invoice_link_json(&link)))
    }

    async fn refund(
        &self,
        app: &App,
        mode: Mode,
        request: RailRefund,
    ) -> Result<RailRefunded, AppError> {
        let merchant = request.merchant;
        let invoice_id: InvoiceId = request.invoice;
        let (invoice, payments, bot) = app.read(mode, move |reader| {
            Ok((
                reader.invoice(invoice_id)?,
                reader.rail_payments_of_invoice(merchant, invoice_id)?,
                reader.telegram_bot(merchant)?,
            ))
        })?;
        let invoice = invoice
            .filter(|i| i.merchant == merchant)
            .ok_or_else(|| AppError::not_found("invoice", invoice_id.encode()))?;
        let payment = invoice
            .payment
            .filter(|p| p.rail == Rail::Stars)
            .ok_or_else(|| {
                AppError::invalid(
                    "rail_refund_unsupported",
                    "this invoice was not paid on the stars rail; refund it to the balance",
                )
                .param("destination")
            })?;
        let amount_minor = payment.amount_minor;
        if request.amount_minor.is_some_and(|a| a != amount_minor) {
            return Err(AppError::invalid(
                "invalid_amount",
                format!(
                    "Telegram refunds whole payments: the amount must be {amount_minor} (or left out)"
                ),
            )
            .param("amount"));
        }
        let row = payments
            .into_iter()
            .find(|p| p.rail == Rail::Stars && p.paid_minor > 0)
            .ok_or_else(|| {
                AppError::internal(format!(
                    "paid invoice {} has no stars rail payment",
                    invoice_id.encode()
                ))
            })?;
        // The payer: recorded with the payment, else the payer's `tg:<id>` customer.
        let recorded = row
            .payload
            .as_deref()
            .and_then(|payload| serde_json::from_str::<Value>(payload).ok())
            .and_then(|payload| payload.get("user_id").and_then(Value::as_u64));
        let from_customer = match row.customer {
            Some(customer) if recorded.is_none() => app
                .read(mode, move |reader| reader.customer(customer))?
                .and_then(|c| c.external_id)
                .and_then(|e| e.strip_prefix("tg:").and_then(|id| id.parse::<u64>().ok())),
            _ => None,
        };
        let user = recorded
            .or(from_customer)
            .and_then(TelegramUserId::new)
            .ok_or_else(|| {
                AppError::conflict(
                    "payer_unknown",
                    "the Telegram user who paid this invoice is not known; refund it to the balance",
                )
                .param("invoice")
            })?;
        let bot = bot.ok_or_else(|| {
            AppError::invalid(
                "rail_not_configured",
                "no Telegram bot is connected to refund through; see PUT /v1/rails/stars",
            )
            .param("destination")
        })?;
        let refunded = self
            .telegram
            .client(&bot)?
            .refund_star_payment(user, &row.external_id)
            .await;
        // Telegram refunded this charge before but the booking did not commit (a crash or a
        // database failure right after the call): book it now instead of leaving the ledger
        // behind Telegram. The invoice's own state stops a second booking.
        let already = matches!(&refunded, Err(BotApiError::Api { description, .. })
            if description.contains("CHARGE_ALREADY_REFUNDED"));
        if already {
            tracing::warn!(invoice = %invoice_id.encode(), "Telegram had already refunded this charge; booking the refund now");
        } else if let Err(error) = refunded {
            tracing::warn!(%error, invoice = %invoice_id.encode(), "refundStarPayment failed");
            let message = match &error {
                BotApiError::Api { description, .. } => {
                    format!("Telegram refused the refund: {description}")
                }
                _ => "the Telegram Bot API could not be reached; nothing was refunded".to_owned(),
            };
            return Err(AppError::rail_failed("telegram_refund_failed", message));
        }
        tracing::info!(invoice = %invoice_id.encode(), charge = %row.external_id, "Stars payment refunded through Telegram");
        Ok(RailRefunded {
            amount_minor,
            payer_external_id: Some(format!("tg:{}", user.get())),
            pending: None,
        })
    }

    async fn edit_subscription(
        &self,
        app: &App,
        mode: Mode,
        subscription: &farthing_store::Subscription,
        canceled: bool,
    ) -> Result<(), AppError> {
        self.telegram
            .edit_subscription(app, mode, subscription, canceled)
            .await
    }

    fn tasks(&self, app: &App, shutdown: watch::Receiver<bool>) -> Vec<Task> {
        vec![Box::pin(crate::rails::telegram::reconcile::run(
            self.telegram.clone(),
            app.clone(),
            shutdown,
        ))]
    }
}
