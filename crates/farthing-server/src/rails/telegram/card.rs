//! The card rail's adapter (SPEC RL2): cards and other fiat through a Telegram payment
//! provider, "the same flow with a provider token and a fiat currency".
//!
//! The merchant's connected bot (`PUT /v1/rails/stars`) sells in fiat with the payment provider
//! token BotFather gave it for that bot (Stripe, a test provider…). The token is stored and
//! never part of an answer, an error or a log line. An invoice in a fiat currency that accepts
//! `card` then gets a provider invoice link (`createInvoiceLink` with the token, the currency
//! and one price in the currency's minor units); the pre-checkout query is answered like a
//! Stars one, and the `successful_payment` settles with rail `card`.

use farthing_app::rail::{
    Carries, Connected, CurrencySet, RailAdapter, RailRefund, RailRefunded, RailStatus, Task,
};
use farthing_app::{App, AppError, Mode};
use farthing_core::invoice::Invoice;
use farthing_core::money::CurrencyKind;
use farthing_core::{Currency, MerchantId, Rail};
use farthing_store::{CardProvider, TelegramBot};
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use super::{card_link_params, create_link, invoice_link_json, TelegramRails};

/// Longest provider token accepted (Telegram's are well under this).
const MAX_TOKEN_CHARS: usize = 256;

/// Most currencies a card rail may list.
const MAX_CURRENCIES: usize = 50;

/// The body of `PUT /v1/rails/card`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectCard {
    /// The payment provider token BotFather gave the connected bot (`Payments` in the bot's
    /// settings; e.g. `284685063:TEST:…` for a test provider). Stored, never returned.
    pub provider_token: String,
    /// The ISO 4217 currencies invoices on this rail may use (default: any fiat currency; the
    /// provider refuses those it does not support).
    #[schema(example = json!(["USD", "EUR"]), max_items = 50)]
    pub currencies: Option<Vec<String>>,
}

/// The card rail.
#[derive(Clone)]
pub struct CardRail {
    telegram: TelegramRails,
}

impl CardRail {
    /// The rail over the shared Telegram part.
    pub fn new(telegram: TelegramRails) -> CardRail {
        CardRail { telegram }
    }
}

/// The `rail` object of the card rail (no token).
pub fn status_of(provider: &CardProvider, bot: Option<&TelegramBot>, mode: Mode) -> RailStatus {
    RailStatus::new(
        Rail::Card,
        mode,
        if bot.is_some() {
            "healthy"
        } else {
            "unhealthy"
        },
    )
    .with("bot_id", bot.map(|bot| bot.bot_id))
    .with("username", bot.map(|bot| bot.username.clone()))
    .with("currencies", &provider.currencies)
}

impl RailAdapter for CardRail {
    type Config = ConnectCard;

    fn rail(&self) -> Rail {
        Rail::Card
    }

    fn offer(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<Carries>, AppError> {
        // The card rail sells through the bot: without one it is not offered.
        let (provider, bot) = app.read(mode, move |reader| {
            Ok((
                reader.card_provider(merchant)?,
                reader.telegram_bot(merchant)?,
            ))
        })?;
        let (Some(provider), Some(_)) = (provider, bot) else {
            return Ok(None);
        };
        let currencies = match provider.currencies {
            None => CurrencySet::Fiat,
            Some(codes) => CurrencySet::Only(
                codes
                    .iter()
                    .filter_map(|code| Currency::parse(code).ok())
                    .collect(),
            ),
        };
        Ok(Some(Carries {
            currencies,
            why_not: "the card rail takes the fiat currencies set with PUT /v1/rails/card"
                .to_owned(),
        }))
    }

    async fn connect(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        request: ConnectCard,
    ) -> Result<Connected, AppError> {
        let token = request.provider_token.trim().to_owned();
        if token.is_empty()
            || token.chars().count() > MAX_TOKEN_CHARS
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(AppError::invalid(
                "invalid_provider_token",
                "provider_token must be the payment provider token BotFather gave the bot",
            )
            .param("provider_token"));
        }
        let currencies = match request.currencies {
            None => None,
            Some(codes) => {
                if codes.is_empty() || codes.len() > MAX_CURRENCIES {
                    return Err(AppError::invalid(
                        "invalid_currency",
                        format!("currencies lists 1 to {MAX_CURRENCIES} codes; leave it out to take any fiat currency"),
                    )
                    .param("currencies"));
                }
                let mut parsed: Vec<String> = Vec::with_capacity(codes.len());
                for (i, code) in codes.iter().enumerate() {
                    let param = format!("currencies[{i}]");
                    let currency = Currency::parse(code).map_err(|error| {
                        AppError::invalid("invalid_currency", error.to_string())
                            .param(param.clone())
                    })?;
                    if currency.kind() != CurrencyKind::Fiat {
                        return Err(AppError::invalid(
                            "invalid_currency",
                            format!("the card rail takes fiat currencies, not {currency} (Stars are the stars rail)"),
                        )
                        .param(param));
                    }
                    if !parsed.iter().any(|c| c == currency.code()) {
                        parsed.push(currency.code().to_owned());
                    }
                }
                Some(parsed)
            }
        };
        let bot = self.telegram.bot(app, mode, merchant)?.ok_or_else(|| {
            AppError::invalid(
                "rail_not_configured",
                "the card rail sells through the merchant's Telegram bot: connect one in this \
                 mode with PUT /v1/rails/stars first",
            )
        })?;
        let now = app.now_ns();
        let provider = CardProvider {
            merchant,
            provider_token: token,
            currencies,
            created_at_ns: now,
            updated_at_ns: now,
        };
        let status = status_of(&provider, Some(&bot), mode);
        Ok(Connected {
            status,
            store: Box::new(move |tx| Ok(tx.upsert_card_provider(&provider)?)),
            after_commit: None,
        })
    }

    async fn status(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
    ) -> Result<Option<RailStatus>, AppError> {
        let (provider, bot) = app.read(mode, move |reader| {
            Ok((
                reader.card_provider(merchant)?,
                reader.telegram_bot(merchant)?,
            ))
        })?;
        Ok(provider.map(|provider| status_of(&provider, bot.as_ref(), mode)))
    }

    async fn instructions(
        &self,
        app: &App,
        mode: Mode,
        invoice: &Invoice,
    ) -> Result<Option<String>, AppError> {
        let merchant = invoice.merchant;
        let (provider, bot) = app.read(mode, move |reader| {
            Ok((
                reader.card_provider(merchant)?,
                reader.telegram_bot(merchant)?,
            ))
        })?;
        let (Some(provider), Some(bot)) = (provider, bot) else {
            return Ok(None);
        };
        let Some(params) = card_link_params(invoice, &provider) else {
            return Ok(None);
        };
        Ok(create_link(&self.telegram, &bot, &params)
            .await
            .map(|link| invoice_link_json(&link)))
    }

    async fn refund(&self, _: &App, _: Mode, _: RailRefund) -> Result<RailRefunded, AppError> {
        Err(AppError::invalid(
            "rail_refund_unsupported",
            "a card payment is refunded through the payment provider's own dashboard, or to the customer's balance: leave out destination",
        )
        .param("destination"))
    }

    fn tasks(&self, _: &App, _: watch::Receiver<bool>) -> Vec<Task> {
        // Its updates come with the bot's (the Stars rail's channel); nothing of its own runs.
        Vec::new()
    }
}
