//! Telegram's payments (SPEC RL2): the Stars rail ([`stars::StarsRail`]) and the card rail
//! ([`card::CardRail`], cards and other fiat through the bot's payment provider — "the same
//! flow with a provider token"). Both sell through the merchant's connected bot, so they share
//! [`TelegramRails`]: the bots' Bot API clients (built once per bot and reused), the invoice
//! links, the pre-checkout answer, the settlement of `successful_payment`, refunds through
//! `refundStarPayment`, subscription edits and the Stars reconciliation ([`reconcile`]).
//!
//! Updates reach this module from the server's Telegram channel (webhook and long polling);
//! messages and buttons go to the bot, payments come here.
//!
//! Architecture invariant: this module knows the Bot API; it reaches the ledger only through
//! the service (`farthing_app`: settlement, subscriptions), and no other rail.

pub mod card;
pub mod reconcile;
pub mod stars;

pub use card::ConnectCard;
pub use reconcile::reconcile_bot;
pub use stars::ConnectStars;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farthing_app::risk::RiskCheck;
use farthing_app::settlement::{IncomingPayment, SettledPayment};
use farthing_app::subscriptions::{settle_stars_payment, SubscriptionPayment};
use farthing_app::{App, AppError, Mode};
use farthing_botapi::{
    BotApiError, BotClient, InvoiceParams, LabeledPrice, Message, PreCheckoutQuery,
    SuccessfulPayment,
};
use farthing_core::invoice::{Invoice, InvoiceAmount, InvoiceStatus};
use farthing_core::money::CurrencyKind;
use farthing_core::risk::Operation;
use farthing_core::{Currency, InvoiceId, MerchantId, PublicId, Rail};
use farthing_store::{CardProvider, TelegramBot};
use farthing_telegram::{BotToken, TelegramChatId, TelegramUserId};
use serde_json::json;
use tokio::sync::Notify;

use crate::config::TelegramConfig;

/// The update kinds a bot is asked to deliver (webhook `allowed_updates` and `getUpdates`).
pub const ALLOWED_UPDATES: &[&str] = &["message", "pre_checkout_query", "callback_query"];

/// How long a Bot API call made while answering an update may take (Telegram gives a
/// pre-checkout query 10 s in all).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Telegram's Bot API calls as the two rails make them, shared by both.
#[derive(Clone)]
pub struct TelegramRails {
    inner: Arc<Inner>,
}

struct Inner {
    config: TelegramConfig,
    /// The public base URL (webhooks are set to it).
    base_url: String,
    /// One client per bot (its token and Bot API URL), built once: a client holds a connection
    /// pool, so building one per call would open a new connection per call.
    clients: Mutex<HashMap<(u64, String, String), BotClient>>,
    /// Wakes the long-polling worker when a bot is connected or reconfigured.
    bots_changed: Notify,
}

impl TelegramRails {
    /// The shared part of the Stars and card rails, with the `[telegram]` configuration.
    pub fn new(config: TelegramConfig, base_url: &str) -> TelegramRails {
        TelegramRails {
            inner: Arc::new(Inner {
                config,
                base_url: base_url.trim_end_matches('/').to_owned(),
                clients: Mutex::new(HashMap::new()),
                bots_changed: Notify::new(),
            }),
        }
    }

    /// The `[telegram]` configuration.
    pub fn config(&self) -> &TelegramConfig {
        &self.inner.config
    }

    /// The public base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Woken when a bot is connected or reconfigured.
    pub fn bots_changed(&self) -> &Notify {
        &self.inner.bots_changed
    }

    /// The Bot API client of a stored bot (built on first use, then reused), with the short
    /// time limit of calls made while answering an update.
    pub fn client(&self, bot: &TelegramBot) -> Result<BotClient, AppError> {
        let key = (bot.bot_id, bot.api_url.clone(), bot.token.clone());
        let mut clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let token = BotToken::parse(&bot.token).map_err(|_| {
            AppError::internal(format!(
                "the stored token of bot {} is unreadable",
                bot.bot_id
            ))
        })?;
        let client =
            BotClient::new(&bot.api_url, token, CALL_TIMEOUT).map_err(AppError::internal)?;
        // Keep the cache bounded by the bots in use: drop the clients of a reconfigured bot.
        clients.retain(|(id, _, _), _| *id != bot.bot_id);
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The merchant's connected bot in `mode`.
    pub fn bot(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<TelegramBot>, AppError> {
        app.read(mode, move |reader| reader.telegram_bot(merchant))
    }

    /// The connection of bot `bot_id` whose webhook secret is `secret`, in either mode
    /// (compared through digests of equal length, in constant time).
    pub fn find_by_secret(
        &self,
        app: &App,
        bot_id: u64,
        secret: &[u8],
    ) -> Result<Option<(Mode, TelegramBot)>, AppError> {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let sent = Sha256::digest(secret);
        let mut found = None;
        for (mode, store) in app.stores() {
            for bot in store.read(move |reader| reader.telegram_bots_by_id(bot_id))? {
                let Some(expected) = bot.webhook_secret.as_deref() else {
                    continue;
                };
                let expected = Sha256::digest(expected.as_bytes());
                if bool::from(expected.ct_eq(&sent)) && found.is_none() {
                    found = Some((mode, bot));
                }
            }
        }
        Ok(found)
    }

    /// Answers a pre-checkout query from the invoice's state (Telegram gives the payer 10 s).
    pub async fn pre_checkout(
        &self,
        app: &App,
        mode: Mode,
        bot: &TelegramBot,
        query: &PreCheckoutQuery,
    ) -> Result<(), AppError> {
        let merchant = bot.merchant;
        let invoice = match InvoiceId::parse(&query.invoice_payload) {
            Ok(id) => app
                .read(mode, move |reader| reader.invoice(id))?
                .filter(|invoice| invoice.merchant == merchant),
            Err(_) => None,
        };
        let mut refused = refusal(
            invoice.as_ref(),
            &query.currency,
            query.total_amount,
            app.now_ns(),
        );
        if let (None, Some(invoice)) = (refused, &invoice) {
            refused = risk_refusal(app, mode, invoice, query).await?;
        }
        if let Err(error) = self
            .client(bot)?
            .answer_pre_checkout_query(&query.id, refused.is_none(), refused)
            .await
        {
            // Too late to matter for this payer (Telegram gives 10 s); Telegram cancels it.
            tracing::warn!(bot_id = bot.bot_id, %error, "answerPreCheckoutQuery failed");
        }
        Ok(())
    }

    /// Settles a `successful_payment` (Stars in `XTR`, else a card through the provider),
    /// keyed by `telegram_payment_charge_id` (never by payload). `Ok(None)` when the report is
    /// refused (logged and counted: it cannot change on a resend, so it is taken); `Err` when it
    /// could not be handled now (Telegram must send it again).
    pub async fn successful_payment(
        &self,
        app: &App,
        mode: Mode,
        bot: &TelegramBot,
        payment: &SuccessfulPayment,
        message: &Message,
    ) -> Result<Option<SettledPayment>, AppError> {
        let from = message.from.as_ref();
        let (Ok(currency), Ok(amount_minor)) = (
            Currency::parse(&payment.currency),
            u64::try_from(payment.total_amount),
        ) else {
            tracing::warn!(
                bot_id = bot.bot_id,
                "a successful_payment with an unusable currency or amount"
            );
            return Ok(None);
        };
        // A subscription payment (first or renewal) also starts or extends a subscription.
        let subscription = match (
            payment.is_recurring,
            payment.subscription_expiration_date,
            from,
        ) {
            (true, Some(expires), Some(user)) => Some(SubscriptionPayment {
                telegram_user_id: user.id,
                expires_at_s: u64::try_from(expires).unwrap_or(0),
                first: payment.is_first_recurring,
            }),
            _ => None,
        };
        let incoming = IncomingPayment {
            merchant: bot.merchant,
            rail: payment_rail(&payment.currency),
            external_id: payment.telegram_payment_charge_id.clone(),
            invoice: InvoiceId::parse(&payment.invoice_payload).ok(),
            payer: None,
            payer_external_id: from.map(|user| format!("tg:{}", user.id)),
            currency,
            amount_minor,
            payload: Some(json!({
                "bot_id": bot.bot_id,
                // The payer, for refundStarPayment (the customer may not exist yet).
                "user_id": from.map(|user| user.id),
                "telegram_payment_charge_id": payment.telegram_payment_charge_id,
                "provider_payment_charge_id": payment.provider_payment_charge_id,
                "invoice_payload": payment.invoice_payload,
            })),
        };
        let base = app.base_url().to_owned();
        let settled = app
            .run(mode, move |tx| {
                Ok::<_, AppError>(settle_stars_payment(
                    tx,
                    mode,
                    incoming,
                    subscription,
                    &base,
                ))
            })
            .await?;
        match settled {
            Ok(settled) => {
                if !settled.duplicate && message.date > 0 {
                    // Telegram dates the message: the start of the settlement lag.
                    app.observe_settlement(
                        settled.payment.rail,
                        u64::try_from(message.date).unwrap_or(0),
                    );
                }
                Ok(Some(settled))
            }
            // A refusal (e.g. an amount no Stars payment can have) will not change on a resend.
            Err(error) if error.is_refusal() => {
                tracing::error!(bot_id = bot.bot_id, code = error.code(), %error, "a successful_payment was refused and is not booked; investigate");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Cancels or resumes a Stars subscription with Telegram (`editUserStarSubscription`):
    /// Telegram's answer decides; asking the same again is harmless there.
    pub async fn edit_subscription(
        &self,
        app: &App,
        mode: Mode,
        subscription: &farthing_store::Subscription,
        canceled: bool,
    ) -> Result<(), AppError> {
        let bot = self.bot(app, mode, subscription.merchant)?.ok_or_else(|| {
            AppError::invalid(
                "rail_not_configured",
                "the stars rail is not configured: PUT /v1/rails/stars first",
            )
        })?;
        let user = u64::try_from(subscription.telegram_user_id)
            .ok()
            .and_then(TelegramUserId::new)
            .ok_or_else(|| {
                AppError::internal("the stored Telegram user id of the subscription is invalid")
            })?;
        self.client(&bot)?
            .edit_user_star_subscription(user, &subscription.first_charge_id, canceled)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "editUserStarSubscription failed");
                AppError::rail_failed(
                    "telegram_error",
                    format!(
                        "Telegram refused to {} the subscription: {error}",
                        if canceled { "cancel" } else { "resume" }
                    ),
                )
            })?;
        Ok(())
    }

    /// The `createInvoiceLink`/`sendInvoice` parameters of an open invoice for the merchant's
    /// bot: the card rail's provider invoice for a fixed-amount fiat invoice that accepts
    /// `card`, else a Stars invoice for a fixed-amount `XTR` invoice that accepts `stars`.
    pub fn send_params(
        &self,
        app: &App,
        mode: Mode,
        invoice: &Invoice,
    ) -> Result<InvoiceParams, AppError> {
        let merchant = invoice.merchant;
        let card = app
            .read(mode, move |reader| reader.card_provider(merchant))?
            .filter(|_| invoice.rails.contains(&Rail::Card))
            .and_then(|provider| card_link_params(invoice, &provider));
        if let Some(params) = card {
            return Ok(params);
        }
        if !invoice.rails.contains(&Rail::Stars) {
            return Err(AppError::invalid(
                "rail_not_accepted",
                "this invoice accepts neither the stars rail nor the card rail",
            ));
        }
        stars_link_params(invoice).ok_or_else(|| {
            AppError::invalid(
                "invoice_not_sendable",
                "only a fixed-amount XTR invoice (stars) or a fixed-amount invoice in a \
                 currency of the card rail can be sent as a Telegram invoice",
            )
        })
    }

    /// Posts an open invoice into a Telegram chat with `sendInvoice` (see [`Self::send_params`]).
    pub async fn send_invoice(
        &self,
        app: &App,
        mode: Mode,
        bot: &TelegramBot,
        chat: TelegramChatId,
        invoice: &Invoice,
    ) -> Result<Message, AppError> {
        let params = self.send_params(app, mode, invoice)?;
        self.client(bot)?
            .send_invoice(chat, &params)
            .await
            .map_err(|e| telegram_error("sendInvoice", &e))
    }
}

/// A failed Bot API call: `telegram_unavailable` when it may pass, else `telegram_error` with
/// Telegram's description (which never contains the token).
pub fn telegram_error(method: &str, error: &BotApiError) -> AppError {
    tracing::warn!(%error, "{method} failed");
    if error.is_transient() {
        AppError::rail_failed(
            "telegram_unavailable",
            "the Telegram Bot API could not be reached; try again later",
        )
    } else {
        AppError::rail_failed(
            "telegram_error",
            match error {
                BotApiError::Api { description, .. } => {
                    format!("the Telegram Bot API refused {method}: {description}")
                }
                _ => format!("the Telegram Bot API refused {method}"),
            },
        )
    }
}

/// The rail a Telegram payment came through: Stars in `XTR`, else a card (or other fiat
/// method) through the bot's payment provider.
pub fn payment_rail(currency: &str) -> Rail {
    if currency == "XTR" {
        Rail::Stars
    } else {
        Rail::Card
    }
}

/// Why the invoice cannot be paid with this pre-checkout query, as the payer will read it.
/// The merchant's risk rules on a payment Telegram is about to take: the buyer's message when
/// they refuse it (a step-up counts as a refusal: Telegram's checkout has no second factor).
/// The decision is recorded either way.
async fn risk_refusal(
    app: &App,
    mode: Mode,
    invoice: &Invoice,
    query: &PreCheckoutQuery,
) -> Result<Option<&'static str>, AppError> {
    let (Ok(currency), Ok(amount_minor)) = (
        Currency::parse(&query.currency),
        u64::try_from(query.total_amount),
    ) else {
        // `refusal` already refused what does not match the invoice.
        return Ok(Some("This payment does not match the invoice."));
    };
    let merchant = invoice.merchant;
    let user = query.from.id;
    let check = RiskCheck::new(app, mode, merchant, Operation::PreCheckout)
        .telegram_user(Some(user))
        .subject(invoice.id.encode());
    let guard = check.clone();
    let decided = app
        .run(mode, move |tx| -> Result<(), AppError> {
            let customer = tx
                .customer_by_external_id(merchant, &format!("tg:{user}"))?
                .map(|customer| customer.id);
            guard.guard(tx, amount_minor, currency, customer, |_| Ok(()))
        })
        .await;
    check.finish().await?;
    match decided {
        Ok(()) => Ok(None),
        Err(AppError::RiskRefused { .. }) => Ok(Some(
            "This payment cannot be accepted right now. Please contact the seller.",
        )),
        Err(other) => Err(other),
    }
}

pub fn refusal(
    invoice: Option<&Invoice>,
    query_currency: &str,
    total_amount: i64,
    now_ns: u64,
) -> Option<&'static str> {
    let Some(invoice) = invoice else {
        return Some("This invoice does not exist.");
    };
    match invoice.status {
        InvoiceStatus::Open => {}
        InvoiceStatus::Expired => return Some("This invoice has expired."),
        InvoiceStatus::Canceled => return Some("This invoice was canceled."),
        _ => return Some("This invoice is already paid."),
    }
    if invoice.expires_at_ns <= now_ns {
        return Some("This invoice has expired.");
    }
    // Stars are paid in XTR; any other currency is a card payment through the bot's provider.
    if query_currency == "XTR" && !invoice.rails.contains(&Rail::Stars) {
        return Some("This invoice cannot be paid with Telegram Stars.");
    }
    if query_currency != "XTR" && !invoice.rails.contains(&Rail::Card) {
        return Some("This invoice cannot be paid by card.");
    }
    if invoice.currency.code() != query_currency {
        return Some("The currency does not match the invoice.");
    }
    let Ok(amount) = u64::try_from(total_amount) else {
        return Some("The amount does not match the invoice.");
    };
    let matches = match &invoice.amount {
        InvoiceAmount::Fixed(fixed) => *fixed == amount,
        InvoiceAmount::Open {
            min_minor,
            max_minor,
            ..
        } => (*min_minor..=*max_minor).contains(&amount),
    };
    (!matches).then_some("The amount does not match the invoice.")
}

/// Cuts `text` to at most `max` characters.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The title (1–32 characters) and description (1–255) of an invoice's Telegram invoice: its
/// description, else "Payment" and its id.
pub fn link_texts(invoice: &Invoice) -> (String, String) {
    let text = invoice.description.trim();
    if text.is_empty() {
        ("Payment".to_owned(), invoice.id.encode())
    } else {
        (cut(text, 32), cut(text, 255))
    }
}

/// The `createInvoiceLink` parameters of a fixed-amount `XTR` invoice (`None` otherwise): one
/// price, no provider token, the invoice id as payload.
pub fn stars_link_params(invoice: &Invoice) -> Option<InvoiceParams> {
    let InvoiceAmount::Fixed(amount) = invoice.amount else {
        return None;
    };
    if invoice.currency.code() != "XTR" {
        return None;
    }
    let amount = i64::try_from(amount).ok()?;
    let id = invoice.id.encode();
    let (title, description) = link_texts(invoice);
    Some(match invoice.subscription_period_s {
        Some(_) => InvoiceParams::stars_subscription(&title, &description, &id, amount),
        None => InvoiceParams::stars(&title, &description, &id, amount),
    })
}

/// Whether the card rail `provider` can carry an invoice in `currency`: a fiat currency the
/// merchant listed (any fiat currency when it listed none).
pub fn card_takes(provider: &CardProvider, currency: Currency) -> bool {
    currency.kind() == CurrencyKind::Fiat
        && provider
            .currencies
            .as_ref()
            .is_none_or(|codes| codes.iter().any(|code| code == currency.code()))
}

/// The `createInvoiceLink` parameters of a fixed-amount invoice in a currency the card rail
/// takes (`None` otherwise): the provider token, the invoice's currency, one price in its
/// minor units (Telegram's "smallest units of the currency"), the invoice id as payload.
pub fn card_link_params(invoice: &Invoice, provider: &CardProvider) -> Option<InvoiceParams> {
    let InvoiceAmount::Fixed(amount) = invoice.amount else {
        return None;
    };
    if !card_takes(provider, invoice.currency) {
        return None;
    }
    let amount = i64::try_from(amount).ok()?;
    let (title, description) = link_texts(invoice);
    Some(InvoiceParams::provider(
        &title,
        &description,
        &invoice.id.encode(),
        &provider.provider_token,
        invoice.currency.code(),
        vec![LabeledPrice {
            label: title.clone(),
            amount,
        }],
    ))
}

/// Asks Telegram for an invoice link; `None` (and a warning) when it fails: the invoice stays
/// valid without it.
async fn create_link(
    rails: &TelegramRails,
    bot: &TelegramBot,
    params: &InvoiceParams,
) -> Option<String> {
    let client = match rails.client(bot) {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, bot_id = bot.bot_id, "no Bot API client for the invoice link");
            return None;
        }
    };
    match client.create_invoice_link(params).await {
        Ok(link) => Some(link),
        Err(error) => {
            tracing::warn!(%error, bot_id = bot.bot_id, invoice = %params.payload, "createInvoiceLink failed; the invoice has no Telegram invoice link");
            None
        }
    }
}

/// The instructions object of a Telegram invoice link.
pub fn invoice_link_json(link: &str) -> String {
    json!({ "invoice_link": link }).to_string()
}
