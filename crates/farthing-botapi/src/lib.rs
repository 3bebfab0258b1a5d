//! A small typed Telegram Bot API client on `reqwest` + `serde`, covering what a payment bot
//! needs: `getMe`, invoices (Stars and payment providers, Stars subscriptions), pre-checkout
//! answers, Star refunds and subscription edits, `getStarTransactions`, updates (long polling
//! and webhooks), and plain / edited messages.
//!
//! Why our own client: teloxide-core 0.13 covers the Stars methods and fields (Bot API 9.1) and
//! has `set_api_url`, but pulls in about 25 crates (chrono, futures, url, uuid, derive_more, …)
//! and ~47k lines behind a generic request/adaptor layer, which is a lot to build on two cores
//! for a dozen methods; frankenstein 0.52 is current (Bot API 10.3) and takes a custom URL, but
//! its async client is built on reqwest 0.13, a second reqwest next to our 0.12, and keeps the
//! token inside its public `api_url` string. Either way we would still have to wrap its errors
//! to keep the token out of messages and to map Telegram's `retry_after`. Our own client is a
//! few hundred lines on crates we already build, sends exactly the parameters the Bot API 10.1
//! spec allows (checked in tests by `telegram-double`), takes any base URL (Telegram's test
//! environment, a local Bot API server, the double), and owns its error mapping.
//!
//! Every call is a `POST` of a JSON body to `<api_url>/bot<token>/<method>`; answers are
//! `{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…,"parameters":…}`.
//! Objects are decoded leniently: unknown fields are ignored (Telegram adds fields in every
//! version), and an update that does not decode is still returned with its `update_id` so a
//! poller can move past it.
//!
//! Secrets: the token is only put into the request URL. Transport errors are stripped of their
//! URL and every text that goes into a [`BotApiError`] is scrubbed of the token, so neither
//! `Display` nor `Debug` of an error can show it. Redirects are not followed.

use std::time::Duration;

use farthing_telegram::{BotToken, TelegramChatId, TelegramUserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Telegram's production Bot API server.
pub const TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// The largest answer read from the Bot API. `getUpdates` with 100 updates is well below it;
/// the bound keeps a misconfigured `api_url` from filling memory.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// The subscription period Telegram accepts (30 days), the only one the Bot API allows.
pub const STARS_SUBSCRIPTION_PERIOD_S: u32 = 2_592_000;

/// Why a Bot API call failed. Never contains the bot token.
#[derive(Debug, thiserror::Error)]
pub enum BotApiError {
    /// The request did not get an answer: connection refused, TLS failure, reset, or timeout.
    #[error("Bot API {method}: {}: {message}", if *.timed_out { "timed out" } else { "transport error" })]
    Http {
        /// The Bot API method called.
        method: &'static str,
        /// Whether the time limit ran out (the call may still have taken effect).
        timed_out: bool,
        /// What failed, without the URL.
        message: String,
    },
    /// Telegram answered `{"ok": false, …}` (or an HTTP error without a Bot API answer).
    #[error("Bot API {method} failed: {error_code} {description}")]
    Api {
        /// The Bot API method called.
        method: &'static str,
        /// Telegram's `error_code` (an HTTP status: 400, 401, 403, 409, 429, …).
        error_code: i64,
        /// Telegram's `description`, e.g. `Bad Request: QUERY_ID_INVALID`.
        description: String,
        /// `parameters.retry_after`: seconds to wait before calling again (flood control).
        retry_after: Option<u64>,
        /// `parameters.migrate_to_chat_id`: the group became this supergroup.
        migrate_to_chat_id: Option<i64>,
    },
    /// The answer was not what the Bot API documents for the method.
    #[error("Bot API {method}: unreadable answer: {message}")]
    Decode {
        /// The Bot API method called.
        method: &'static str,
        /// What did not decode.
        message: String,
    },
    /// The call was not sent because the Bot API would reject it.
    #[error("Bot API {method}: not sent: {reason}")]
    InvalidRequest {
        /// The Bot API method.
        method: &'static str,
        /// What is wrong with the parameters.
        reason: &'static str,
    },
    /// The client could not be built (bad `api_url`, or no TLS backend).
    #[error("Bot API client: {reason}")]
    Setup {
        /// What is wrong.
        reason: String,
    },
}

impl BotApiError {
    /// Seconds Telegram asked to wait before the next call (`429 Too Many Requests`).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            BotApiError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Telegram's `error_code`, if Telegram (or the server at `api_url`) answered with one.
    pub fn error_code(&self) -> Option<i64> {
        match self {
            BotApiError::Api { error_code, .. } => Some(*error_code),
            _ => None,
        }
    }

    /// Whether the token was refused (`401 Unauthorized`): the bot was revoked or the token is
    /// wrong. Retrying does not help.
    pub fn is_unauthorized(&self) -> bool {
        self.error_code() == Some(401)
    }

    /// Whether the same call may succeed later: a transport failure, flood control or a 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            BotApiError::Http { .. } => true,
            BotApiError::Api { error_code, .. } => *error_code == 429 || *error_code >= 500,
            _ => false,
        }
    }
}

/// A price component (`LabeledPrice`): the amount is in the currency's smallest unit (Stars for
/// `XTR`, cents for `EUR`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabeledPrice {
    /// Shown to the payer.
    pub label: String,
    /// In the smallest unit of the currency; positive.
    pub amount: i64,
}

/// The parameters of `createInvoiceLink` and `sendInvoice`.
///
/// Build a Stars invoice with [`InvoiceParams::stars`] (currency `XTR`, one price, no provider
/// token) and a card invoice through a payment provider with [`InvoiceParams::provider`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvoiceParams {
    /// Product name, 1–32 characters.
    pub title: String,
    /// Product description, 1–255 characters.
    pub description: String,
    /// Bot-defined payload, 1–128 bytes, not shown to the user (farthing's invoice id).
    pub payload: String,
    /// `XTR` for Stars, else an ISO 4217 code.
    pub currency: String,
    /// Price components. Exactly one for Stars.
    pub prices: Vec<LabeledPrice>,
    /// The payment provider token from BotFather; `None` for Stars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_token: Option<String>,
    /// Seconds between subscription payments; only [`STARS_SUBSCRIPTION_PERIOD_S`], only Stars,
    /// only `createInvoiceLink`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_period: Option<u32>,
}

impl InvoiceParams {
    /// A one-off Stars invoice of `amount` Stars.
    pub fn stars(title: &str, description: &str, payload: &str, amount: i64) -> InvoiceParams {
        InvoiceParams {
            title: title.to_owned(),
            description: description.to_owned(),
            payload: payload.to_owned(),
            currency: "XTR".to_owned(),
            prices: vec![LabeledPrice {
                label: title.to_owned(),
                amount,
            }],
            provider_token: None,
            subscription_period: None,
        }
    }

    /// A 30-day Stars subscription of `amount` Stars per period (only for `createInvoiceLink`).
    pub fn stars_subscription(
        title: &str,
        description: &str,
        payload: &str,
        amount: i64,
    ) -> InvoiceParams {
        InvoiceParams {
            subscription_period: Some(STARS_SUBSCRIPTION_PERIOD_S),
            ..InvoiceParams::stars(title, description, payload, amount)
        }
    }

    /// An invoice paid through a Telegram payment provider (cards and other fiat).
    pub fn provider(
        title: &str,
        description: &str,
        payload: &str,
        provider_token: &str,
        currency: &str,
        prices: Vec<LabeledPrice>,
    ) -> InvoiceParams {
        InvoiceParams {
            title: title.to_owned(),
            description: description.to_owned(),
            payload: payload.to_owned(),
            currency: currency.to_owned(),
            prices,
            provider_token: Some(provider_token.to_owned()),
            subscription_period: None,
        }
    }
}

/// A Telegram user or bot (`User`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: i64,
    /// Whether it is a bot.
    pub is_bot: bool,
    /// First name.
    pub first_name: String,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// `@username` without the `@`. For a bot (from `getMe`) always present.
    #[serde(default)]
    pub username: Option<String>,
    /// IETF language tag of the user's app, used to pick the bot's language.
    #[serde(default)]
    pub language_code: Option<String>,
}

impl User {
    /// The id as a [`TelegramUserId`], if it is a valid one.
    pub fn user_id(&self) -> Option<TelegramUserId> {
        u64::try_from(self.id).ok().and_then(TelegramUserId::new)
    }
}

/// A chat (`Chat`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Chat {
    /// The chat's id (negative for groups and channels).
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Title of a group or channel.
    #[serde(default)]
    pub title: Option<String>,
    /// Username of a private chat or channel.
    #[serde(default)]
    pub username: Option<String>,
    /// First name of the other party in a private chat.
    #[serde(default)]
    pub first_name: Option<String>,
}

impl Chat {
    /// The id as a [`TelegramChatId`], if it is a valid one.
    pub fn chat_id(&self) -> Option<TelegramChatId> {
        TelegramChatId::new(self.id)
    }
}

/// An invoice message's invoice (`Invoice`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Invoice {
    /// Product name.
    pub title: String,
    /// Product description.
    pub description: String,
    /// Deep-link parameter, may be empty.
    #[serde(default)]
    pub start_parameter: String,
    /// `XTR` or an ISO 4217 code.
    pub currency: String,
    /// Total in the smallest unit of the currency.
    pub total_amount: i64,
}

/// A message (`Message`). Also used for a callback query's `MaybeInaccessibleMessage`: an
/// inaccessible message has `date` 0 and only `chat` and `message_id`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Message {
    /// Id within the chat.
    pub message_id: i64,
    /// Unix time it was sent (0: inaccessible).
    pub date: i64,
    /// The chat it belongs to.
    pub chat: Chat,
    /// The sender (absent in channels).
    #[serde(default)]
    pub from: Option<User>,
    /// Unix time of the last edit.
    #[serde(default)]
    pub edit_date: Option<i64>,
    /// Text of a text message (commands such as `/start inv_…` included).
    #[serde(default)]
    pub text: Option<String>,
    /// The invoice of an invoice message.
    #[serde(default)]
    pub invoice: Option<Invoice>,
    /// The payment of a successful-payment service message.
    #[serde(default)]
    pub successful_payment: Option<SuccessfulPayment>,
    /// The inline keyboard (`InlineKeyboardMarkup`), as JSON.
    #[serde(default)]
    pub reply_markup: Option<Value>,
}

/// A completed payment (`SuccessfulPayment`). Settle by `telegram_payment_charge_id`, never by
/// payload.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SuccessfulPayment {
    /// `XTR` or an ISO 4217 code.
    pub currency: String,
    /// Total in the smallest unit of the currency.
    pub total_amount: i64,
    /// The invoice's payload.
    pub invoice_payload: String,
    /// Telegram's payment id: the deduplication key and the refund handle.
    pub telegram_payment_charge_id: String,
    /// The provider's payment id (empty for Stars).
    #[serde(default)]
    pub provider_payment_charge_id: String,
    /// For a subscription: Unix time the paid period ends.
    #[serde(default)]
    pub subscription_expiration_date: Option<i64>,
    /// For a subscription: this payment is a subscription payment (first or renewal).
    #[serde(default)]
    pub is_recurring: bool,
    /// For a subscription: this is its first payment.
    #[serde(default)]
    pub is_first_recurring: bool,
}

/// A payer confirmed and waits for the bot (`PreCheckoutQuery`); answer within 10 s.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PreCheckoutQuery {
    /// The id to answer.
    pub id: String,
    /// The payer.
    pub from: User,
    /// `XTR` or an ISO 4217 code.
    pub currency: String,
    /// Total in the smallest unit of the currency.
    pub total_amount: i64,
    /// The invoice's payload.
    pub invoice_payload: String,
}

/// A press on an inline button (`CallbackQuery`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CallbackQuery {
    /// The id to answer with `answerCallbackQuery`.
    pub id: String,
    /// Who pressed.
    pub from: User,
    /// The message the button was under (absent for inline-mode messages).
    #[serde(default)]
    pub message: Option<Message>,
    /// The inline-mode message the button was under.
    #[serde(default)]
    pub inline_message_id: Option<String>,
    /// Global identifier of the chat the message was in.
    #[serde(default)]
    pub chat_instance: String,
    /// The button's `callback_data`.
    #[serde(default)]
    pub data: Option<String>,
}

/// An incoming update (`Update`). At most one of the kinds is set; kinds this client has no
/// type for (Bot API 10.2's `subscription`, …) are kept as JSON in [`Update::other`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Update {
    /// Increasing id; poll with `offset = last update_id + 1` to confirm.
    pub update_id: i64,
    /// A new message (text, command, or `successful_payment`).
    #[serde(default)]
    pub message: Option<Message>,
    /// An edited message.
    #[serde(default)]
    pub edited_message: Option<Message>,
    /// An inline-button press.
    #[serde(default)]
    pub callback_query: Option<CallbackQuery>,
    /// A payer waiting for the pre-checkout answer.
    #[serde(default)]
    pub pre_checkout_query: Option<PreCheckoutQuery>,
    /// Every other field, as JSON (including the whole update when it did not decode).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Update {
    /// Decodes one update; one that does not match the types above is still returned, with its
    /// `update_id` and its fields in [`Update::other`], so a poller can confirm it.
    fn from_value(value: Value) -> Option<Update> {
        match Update::deserialize(&value) {
            Ok(update) => Some(update),
            Err(error) => {
                let update_id = value.get("update_id").and_then(Value::as_i64);
                tracing::warn!(?update_id, %error, "a Bot API update did not decode");
                let Value::Object(other) = value else {
                    return None;
                };
                Some(Update {
                    update_id: update_id?,
                    other,
                    ..Update::default()
                })
            }
        }
    }
}

/// A page of the bot's Star transactions (`StarTransactions`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StarTransactions {
    /// Oldest first.
    pub transactions: Vec<StarTransaction>,
}

/// One Star transaction (`StarTransaction`): an incoming payment has a `source`, a refund or a
/// withdrawal a `receiver`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StarTransaction {
    /// For a payment (and its refund), the `telegram_payment_charge_id`.
    pub id: String,
    /// Whole Stars.
    pub amount: i64,
    /// Fractions of a Star (1/10⁹), when there are any.
    #[serde(default)]
    pub nanostar_amount: Option<i64>,
    /// Unix time.
    pub date: i64,
    /// Who paid the bot.
    #[serde(default)]
    pub source: Option<TransactionPartner>,
    /// Who the bot paid (a refunded user, Fragment, …).
    #[serde(default)]
    pub receiver: Option<TransactionPartner>,
}

/// The other side of a Star transaction (`TransactionPartner`). Kinds farthing does not use
/// decode as [`TransactionPartner::Other`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransactionPartner {
    /// A user (`TransactionPartnerUser`).
    User {
        /// `invoice_payment`, `paid_media_payment`, `gift_purchase`, …
        transaction_type: String,
        /// The user.
        user: User,
        /// The invoice's payload, for `invoice_payment`.
        #[serde(default)]
        invoice_payload: Option<String>,
        /// For a subscription payment: its period in seconds.
        #[serde(default)]
        subscription_period: Option<i64>,
    },
    /// A withdrawal to Fragment (`TransactionPartnerFragment`).
    Fragment {
        /// Where the withdrawal is.
        #[serde(default)]
        withdrawal_state: Option<RevenueWithdrawalState>,
    },
    /// Any other partner (Telegram Ads, the Telegram API, a chat, …).
    #[serde(other)]
    Other,
}

/// The state of a withdrawal to Fragment (`RevenueWithdrawalState`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RevenueWithdrawalState {
    /// In progress.
    Pending,
    /// Done.
    Succeeded {
        /// Unix time.
        date: i64,
        /// The transaction on Fragment.
        url: String,
    },
    /// Failed; the Stars are back on the bot's balance.
    Failed,
    /// A state this client does not know.
    #[serde(other)]
    Unknown,
}

/// A Bot API client for one bot. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct BotClient {
    http: reqwest::Client,
    /// Without a trailing `/`.
    api_url: String,
    token: BotToken,
    timeout: Duration,
}

impl std::fmt::Debug for BotClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotClient")
            .field("api_url", &self.api_url)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct NoParams {}

#[derive(Serialize)]
struct SendInvoice<'a> {
    chat_id: i64,
    #[serde(flatten)]
    invoice: &'a InvoiceParams,
}

#[derive(Serialize)]
struct AnswerPreCheckoutQuery<'a> {
    pre_checkout_query_id: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
}

#[derive(Serialize)]
struct AnswerCallbackQuery<'a> {
    callback_query_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct RefundStarPayment<'a> {
    user_id: u64,
    telegram_payment_charge_id: &'a str,
}

#[derive(Serialize)]
struct EditUserStarSubscription<'a> {
    user_id: u64,
    telegram_payment_charge_id: &'a str,
    is_canceled: bool,
}

#[derive(Serialize)]
struct GetStarTransactions {
    offset: u32,
    limit: u32,
}

#[derive(Serialize)]
struct GetUpdates<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    timeout: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_updates: Option<&'a [&'a str]>,
}

#[derive(Serialize)]
struct SetWebhook<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_updates: Option<&'a [&'a str]>,
}

#[derive(Serialize)]
struct DeleteWebhook {
    drop_pending_updates: bool,
}

#[derive(Serialize)]
struct SendMessage<'a> {
    chat_id: i64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<&'a Value>,
}

#[derive(Serialize)]
struct EditMessageText<'a> {
    chat_id: i64,
    message_id: i64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<&'a Value>,
}

#[derive(Serialize)]
struct EditMessageReplyMarkup<'a> {
    chat_id: i64,
    message_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<&'a Value>,
}

/// Telegram's answer envelope.
#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

impl BotClient {
    /// A client for the bot `token` at `api_url` (e.g. [`TELEGRAM_API_URL`], Telegram's test
    /// environment, a local Bot API server or a test double), giving each call `timeout` (a long
    /// poll gets its poll time on top).
    ///
    /// `api_url` is the server's base URL only, `http` or `https`, without `/bot<token>`.
    pub fn new(
        api_url: &str,
        token: BotToken,
        timeout: Duration,
    ) -> Result<BotClient, BotApiError> {
        let api_url = check_api_url(api_url, &token)?;
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| BotApiError::Setup {
                reason: redact(&chain(&error.without_url()), &token),
            })?;
        Ok(BotClient {
            http,
            api_url,
            token,
            timeout,
        })
    }

    /// The same client (sharing its connection pool) with another per-call time limit.
    pub fn with_timeout(&self, timeout: Duration) -> BotClient {
        BotClient {
            timeout,
            ..self.clone()
        }
    }

    /// The base URL calls go to (never contains the token).
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The bot's id, from its token.
    pub fn bot_id(&self) -> farthing_telegram::BotId {
        self.token.bot_id()
    }

    /// `getMe`: the bot itself, with its verified `username`.
    pub async fn get_me(&self) -> Result<User, BotApiError> {
        self.call("getMe", &NoParams {}, Duration::ZERO).await
    }

    /// `createInvoiceLink`: a `https://t.me/$…` link to pay `invoice` (also for Stars
    /// subscriptions).
    pub async fn create_invoice_link(
        &self,
        invoice: &InvoiceParams,
    ) -> Result<String, BotApiError> {
        self.call("createInvoiceLink", invoice, Duration::ZERO)
            .await
    }

    /// `sendInvoice`: posts `invoice` into a chat. Subscriptions can only be sold through
    /// [`create_invoice_link`](Self::create_invoice_link).
    pub async fn send_invoice(
        &self,
        chat_id: TelegramChatId,
        invoice: &InvoiceParams,
    ) -> Result<Message, BotApiError> {
        const METHOD: &str = "sendInvoice";
        if invoice.subscription_period.is_some() {
            return Err(BotApiError::InvalidRequest {
                method: METHOD,
                reason: "sendInvoice has no subscription_period: sell subscriptions through createInvoiceLink",
            });
        }
        let params = SendInvoice {
            chat_id: chat_id.get(),
            invoice,
        };
        self.call(METHOD, &params, Duration::ZERO).await
    }

    /// `answerPreCheckoutQuery`: `ok` lets the payment go through; a refusal needs a
    /// human-readable `error_message`.
    pub async fn answer_pre_checkout_query(
        &self,
        pre_checkout_query_id: &str,
        ok: bool,
        error_message: Option<&str>,
    ) -> Result<(), BotApiError> {
        const METHOD: &str = "answerPreCheckoutQuery";
        let error_message = if ok {
            None
        } else {
            match error_message.map(str::trim) {
                Some(message) if !message.is_empty() => Some(message),
                _ => {
                    return Err(BotApiError::InvalidRequest {
                        method: METHOD,
                        reason: "a refused pre-checkout query needs an error_message for the payer",
                    })
                }
            }
        };
        let params = AnswerPreCheckoutQuery {
            pre_checkout_query_id,
            ok,
            error_message,
        };
        self.call_true(METHOD, &params).await
    }

    /// `answerCallbackQuery`: stops the button's spinner, optionally with a short notice.
    pub async fn answer_callback_query(
        &self,
        callback_query_id: &str,
        text: Option<&str>,
    ) -> Result<(), BotApiError> {
        let params = AnswerCallbackQuery {
            callback_query_id,
            text,
        };
        self.call_true("answerCallbackQuery", &params).await
    }

    /// `refundStarPayment`: gives the Stars of the payment back to the user.
    pub async fn refund_star_payment(
        &self,
        user_id: TelegramUserId,
        telegram_payment_charge_id: &str,
    ) -> Result<(), BotApiError> {
        let params = RefundStarPayment {
            user_id: user_id.get(),
            telegram_payment_charge_id,
        };
        self.call_true("refundStarPayment", &params).await
    }

    /// `editUserStarSubscription`: cancels (`is_canceled`) or resumes the user's subscription
    /// started by the payment `telegram_payment_charge_id`.
    pub async fn edit_user_star_subscription(
        &self,
        user_id: TelegramUserId,
        telegram_payment_charge_id: &str,
        is_canceled: bool,
    ) -> Result<(), BotApiError> {
        let params = EditUserStarSubscription {
            user_id: user_id.get(),
            telegram_payment_charge_id,
            is_canceled,
        };
        self.call_true("editUserStarSubscription", &params).await
    }

    /// `getStarTransactions`: up to `limit` (1–100) transactions after skipping `offset`, oldest
    /// first.
    pub async fn get_star_transactions(
        &self,
        offset: u32,
        limit: u32,
    ) -> Result<StarTransactions, BotApiError> {
        let params = GetStarTransactions {
            offset,
            limit: limit.clamp(1, 100),
        };
        self.call("getStarTransactions", &params, Duration::ZERO)
            .await
    }

    /// `getUpdates`: confirms updates below `offset` and returns the next ones, waiting up to
    /// `timeout_s` seconds for one (long polling). `allowed_updates` (e.g. `["message",
    /// "callback_query", "pre_checkout_query"]`) stays in force until changed.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        timeout_s: u32,
        allowed_updates: Option<&[&str]>,
    ) -> Result<Vec<Update>, BotApiError> {
        let params = GetUpdates {
            offset,
            timeout: timeout_s,
            allowed_updates,
        };
        let raw: Vec<Value> = self
            .call(
                "getUpdates",
                &params,
                Duration::from_secs(u64::from(timeout_s)),
            )
            .await?;
        Ok(raw.into_iter().filter_map(Update::from_value).collect())
    }

    /// `setWebhook`: Telegram will POST updates to `url` with the header
    /// `X-Telegram-Bot-Api-Secret-Token: <secret_token>`.
    pub async fn set_webhook(
        &self,
        url: &str,
        secret_token: Option<&str>,
        allowed_updates: Option<&[&str]>,
    ) -> Result<(), BotApiError> {
        let params = SetWebhook {
            url,
            secret_token,
            allowed_updates,
        };
        self.call_true("setWebhook", &params).await
    }

    /// `deleteWebhook`: back to `getUpdates`; `drop_pending_updates` discards what is queued.
    pub async fn delete_webhook(&self, drop_pending_updates: bool) -> Result<(), BotApiError> {
        let params = DeleteWebhook {
            drop_pending_updates,
        };
        self.call_true("deleteWebhook", &params).await
    }

    /// `sendMessage`: plain text, with an optional keyboard (`InlineKeyboardMarkup` or another
    /// reply markup, as JSON).
    pub async fn send_message(
        &self,
        chat_id: TelegramChatId,
        text: &str,
        reply_markup: Option<&Value>,
    ) -> Result<Message, BotApiError> {
        let params = SendMessage {
            chat_id: chat_id.get(),
            text,
            reply_markup,
        };
        self.call("sendMessage", &params, Duration::ZERO).await
    }

    /// `editMessageText` of a message the bot sent; the inline keyboard becomes
    /// `reply_markup` (none: removed).
    pub async fn edit_message_text(
        &self,
        chat_id: TelegramChatId,
        message_id: i64,
        text: &str,
        reply_markup: Option<&Value>,
    ) -> Result<Message, BotApiError> {
        let params = EditMessageText {
            chat_id: chat_id.get(),
            message_id,
            text,
            reply_markup,
        };
        self.call("editMessageText", &params, Duration::ZERO).await
    }

    /// `editMessageReplyMarkup`: replaces (or, with `None`, removes) a message's inline keyboard.
    pub async fn edit_message_reply_markup(
        &self,
        chat_id: TelegramChatId,
        message_id: i64,
        reply_markup: Option<&Value>,
    ) -> Result<Message, BotApiError> {
        let params = EditMessageReplyMarkup {
            chat_id: chat_id.get(),
            message_id,
            reply_markup,
        };
        self.call("editMessageReplyMarkup", &params, Duration::ZERO)
            .await
    }

    /// A method documented to return `True`.
    async fn call_true<P: Serialize>(
        &self,
        method: &'static str,
        params: &P,
    ) -> Result<(), BotApiError> {
        let done: bool = self.call(method, params, Duration::ZERO).await?;
        if done {
            Ok(())
        } else {
            Err(BotApiError::Decode {
                method,
                message: "the answer was `false` where the Bot API documents `true`".to_owned(),
            })
        }
    }

    /// POSTs `params` as JSON to `method` and decodes the `result`. `extra` is added to the
    /// time limit (the long-poll time).
    async fn call<P: Serialize, T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: &P,
        extra: Duration,
    ) -> Result<T, BotApiError> {
        let body = serde_json::to_vec(params).map_err(|error| BotApiError::Decode {
            method,
            message: self.redact(&format!("the parameters did not encode: {error}")),
        })?;
        let url = format!(
            "{}/bot{}/{method}",
            self.api_url,
            self.token.expose_secret()
        );
        let transport = |error: reqwest::Error| BotApiError::Http {
            method,
            timed_out: error.is_timeout(),
            message: self.redact(&chain(&error.without_url())),
        };
        let mut response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.timeout.saturating_add(extra))
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(BotApiError::Decode {
                    method,
                    message: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let envelope = match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(envelope) => envelope,
            Err(_) if !status.is_success() => {
                return Err(BotApiError::Api {
                    method,
                    error_code: i64::from(status.as_u16()),
                    description: format!("HTTP {status} without a Bot API answer"),
                    retry_after: None,
                    migrate_to_chat_id: None,
                })
            }
            Err(error) => {
                return Err(BotApiError::Decode {
                    method,
                    message: self.redact(&format!("not a Bot API answer ({error})")),
                })
            }
        };
        if !envelope.ok {
            let parameters = envelope.parameters;
            return Err(BotApiError::Api {
                method,
                error_code: envelope
                    .error_code
                    .unwrap_or_else(|| i64::from(status.as_u16())),
                description: self.redact(envelope.description.as_deref().unwrap_or("")),
                retry_after: parameters.as_ref().and_then(|p| p.retry_after),
                migrate_to_chat_id: parameters.as_ref().and_then(|p| p.migrate_to_chat_id),
            });
        }
        let result = envelope.result.ok_or_else(|| BotApiError::Decode {
            method,
            message: "`ok` is true but there is no `result`".to_owned(),
        })?;
        serde_json::from_value(result).map_err(|error| BotApiError::Decode {
            method,
            message: self.redact(&format!("the result does not match the Bot API ({error})")),
        })
    }

    fn redact(&self, text: &str) -> String {
        redact(text, &self.token)
    }
}

/// `text` with the token, and its secret part on its own, replaced by `<redacted>`.
fn redact(text: &str, token: &BotToken) -> String {
    let whole = token.expose_secret();
    let mut out = text.replace(whole, "<redacted>");
    if let Some((_, secret)) = whole.split_once(':') {
        if !secret.is_empty() {
            out = out.replace(secret, "<redacted>");
        }
    }
    out
}

/// An error and its causes, `: `-separated (reqwest's `Display` alone hides the cause).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Checks `api_url` is a base URL (`http(s)://host[:port][/prefix]`) and trims the trailing `/`.
fn check_api_url(api_url: &str, token: &BotToken) -> Result<String, BotApiError> {
    let trimmed = api_url.trim().trim_end_matches('/');
    let setup = |reason: &str| BotApiError::Setup {
        reason: format!("api_url {reason}"),
    };
    if redact(trimmed, token) != trimmed {
        return Err(setup(
            "must be the Bot API server's base URL only (e.g. https://api.telegram.org), \
             without /bot<token>",
        ));
    }
    let parsed =
        reqwest::Url::parse(trimmed).map_err(|error| setup(&format!("is not a URL ({error})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(setup("must be an http:// or https:// URL with a host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(setup("must not have a query, a fragment or credentials"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> BotToken {
        BotToken::parse("123456:SECRET-part_1").expect("a valid token")
    }

    #[test]
    fn api_url_is_a_base_url_without_the_token() {
        let ok = check_api_url("https://api.telegram.org/", &token()).expect("valid");
        assert_eq!(ok, "https://api.telegram.org");
        assert_eq!(
            check_api_url("http://127.0.0.1:8081/tg", &token()).expect("valid"),
            "http://127.0.0.1:8081/tg"
        );
        for bad in [
            "",
            "api.telegram.org",
            "ftp://api.telegram.org",
            "https://api.telegram.org/?x=1",
            "https://user:pw@api.telegram.org",
        ] {
            assert!(check_api_url(bad, &token()).is_err(), "{bad:?}");
        }
        let with_token =
            check_api_url("https://api.telegram.org/bot123456:SECRET-part_1", &token())
                .expect_err("a URL with the token is refused");
        assert!(!with_token.to_string().contains("SECRET"), "{with_token}");
    }

    #[test]
    fn redact_removes_the_token_and_its_secret() {
        let text = redact(
            "GET /bot123456:SECRET-part_1/getMe and SECRET-part_1 again",
            &token(),
        );
        assert_eq!(text, "GET /bot<redacted>/getMe and <redacted> again");
    }

    #[test]
    fn invoice_params_serialize_only_what_is_set() {
        let stars = serde_json::to_value(InvoiceParams::stars("Tea", "A cup", "inv_1", 5))
            .expect("serializes");
        assert_eq!(
            stars,
            serde_json::json!({"title": "Tea", "description": "A cup", "payload": "inv_1",
                "currency": "XTR", "prices": [{"label": "Tea", "amount": 5}]})
        );
        let sub = InvoiceParams::stars_subscription("Club", "Monthly", "sub_1", 100);
        assert_eq!(sub.subscription_period, Some(2_592_000));
    }

    #[test]
    fn an_update_that_does_not_decode_keeps_its_id() {
        let update = Update::from_value(serde_json::json!({
            "update_id": 7,
            "message": {"message_id": "not a number"},
        }))
        .expect("kept");
        assert_eq!(update.update_id, 7);
        assert!(update.message.is_none());
        assert!(update.other.contains_key("message"));
        assert!(Update::from_value(serde_json::json!({"message": 1})).is_none());
    }
}
