//! The payment bot's flows (SPEC T2): what the bot says and sends in the chat. Called by
//! the Telegram adapter's `webhook::handle_update` ([`crate::telegram`]) for text messages
//! ([`on_message`]), button presses ([`on_callback`]), settled payments ([`payment_settled`])
//! and, from the scheduler, invoices closed otherwise ([`sweep`]).
//!
//! - `/start inv_…` posts that invoice: `sendInvoice` for an open fixed-amount `XTR` invoice
//!   that accepts Stars, otherwise a message with a Pay button (the Stars invoice link or the
//!   checkout page). A paid or expired invoice is answered with its state and "Pay again".
//! - `/start tip` offers the tip presets (the merchant's settings, else `telegram.tip_presets`) and "Custom amount"; a preset
//!   makes a fixed `XTR` invoice (description "Tip", rails `[stars]`, metadata
//!   `source=bot_tip`, customer `tg:<id>`) and posts it. "Custom amount" waits 10 minutes for a
//!   number from that user. Plain `/start` is a short welcome.
//! - Every invoice the bot posts is followed by a companion text message ("expires in 14 min
//!   (at 12:34 UTC)"): Telegram cannot edit an invoice message into other text, so the
//!   companion is what is edited to "Paid ✓" (right after a Stars payment), or by the
//!   scheduler's [`sweep`] to "Expired", "canceled" or "Paid ✓" (paid on another rail). Both are
//!   recorded in `telegram_invoice_messages`. The time left is written when the message is sent,
//!   with the clock time it ends, so it stays true without being edited every minute.
//! - After a payment settles (once: never for a duplicate `successful_payment`): the receipt
//!   (amount, currency, fee, rate, time, invoice id), the digital goods of the invoice's metadata
//!   (`deliver_text`, `deliver_url`) and the buttons "Pay again" (a copy of the invoice for the
//!   presser) and "Share" (`t.me/share/url` of the bot's deep link).
//! - Any other command and any button of the account commands go to
//!   [`commands`] (the one call site each: `account_command`, `account_callback`).
//!
//! Two small things are kept in memory, not in the database, and are lost on restart (documented
//! trade-off: both are short-lived conveniences): the users a "Custom amount" prompt waits for
//! (10 minutes), and the messages and button presses already acted on (10 minutes), so that an
//! update Telegram sends again creates no second invoice. Payments never depend on either.
//!
//! Architecture invariant: nothing here moves money. Invoices are created through a store job
//! like `POST /v1/invoices`; payments settle in [`crate::settlement`]. A Bot API failure is
//! logged and never fails the update (Telegram would resend it forever).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use farthing_core::invoice::{Invoice, InvoiceAmount, InvoiceStatus, NewInvoice};
use farthing_core::{Currency, InvoiceId, MerchantId, PublicId, Rail};
use farthing_store::{InvoiceMessage, TelegramBot};
use farthing_telegram::{TelegramChatId, TelegramUserId};
use serde_json::{json, Value};

use self::i18n::Lang;
use farthing_botapi::{BotClient, CallbackQuery, Chat, Message, User};

pub mod commands;
pub mod i18n;
use crate::state::{AppState, Mode};
use farthing_app::settlement::SettledPayment;
use farthing_app::AppError;

pub use self::commands::{run_reminders, tell_refund_decision};

/// How long a "Custom amount" prompt waits for the number.
const CUSTOM_AMOUNT_WAIT: Duration = Duration::from_secs(600);
/// How long a handled message or button press is remembered against Telegram's resends.
const SEEN_WINDOW: Duration = Duration::from_secs(600);
/// Most entries of each in-memory table (older ones are dropped first).
const MEMORY_MAX_ENTRIES: usize = 100_000;
/// How long an invoice the bot makes stays open.
const BOT_INVOICE_EXPIRES_IN_S: u64 = 900;
/// The largest custom tip, in Stars (as the merchant's presets).
const MAX_TIP_STARS: u64 = farthing_app::settings::MAX_TIP_PRESET_STARS;
/// Callback data of the tip buttons: `tip:<stars>` or `tip:custom`.
const TIP_PREFIX: &str = "tip:";
/// Callback data of "Pay again": `again:<inv_…>`.
const AGAIN_PREFIX: &str = "again:";

/// The command of a message text and its arguments: `"/start inv_1"` → `("start", "inv_1")`,
/// `"/balance@shop_bot"` → `("balance", "")`. `None` when the text is not a command.
pub fn command_of(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('/')?;
    let (head, args) = match rest.find(char::is_whitespace) {
        Some(at) => (&rest[..at], rest[at..].trim()),
        None => (rest, ""),
    };
    let command = head.split('@').next().unwrap_or_default();
    let valid = !command.is_empty()
        && command.len() <= 32
        && command
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some((command, args))
}

/// What the bot keeps in memory (see the module documentation).
#[derive(Default)]
struct Memory {
    /// (merchant, live mode, Telegram user id) → when "Custom amount" was pressed.
    awaiting_amount: HashMap<(MerchantId, bool, i64), Instant>,
    /// (merchant, live mode, message or callback key) → when it was acted on.
    seen: HashMap<(MerchantId, bool, String), Instant>,
}

static MEMORY: LazyLock<Mutex<Memory>> = LazyLock::new(Mutex::default);

fn memory() -> std::sync::MutexGuard<'static, Memory> {
    // A panic while holding the lock leaves plain maps behind: still usable.
    MEMORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn prune<K>(map: &mut HashMap<K, Instant>, keep: Duration) {
    let now = Instant::now();
    map.retain(|_, at| now.duration_since(*at) < keep);
    if map.len() >= MEMORY_MAX_ENTRIES {
        map.clear();
    }
}

/// True the first time `key` is seen within [`SEEN_WINDOW`].
fn first_time(merchant: MerchantId, mode: Mode, key: &str) -> bool {
    let mut memory = memory();
    prune(&mut memory.seen, SEEN_WINDOW);
    memory
        .seen
        .insert((merchant, mode.is_live(), key.to_owned()), Instant::now())
        .is_none()
}

/// Forgets `key`, so that a resend of an update whose handling failed is handled.
fn forget(merchant: MerchantId, mode: Mode, key: &str) {
    memory()
        .seen
        .remove(&(merchant, mode.is_live(), key.to_owned()));
}

fn await_amount(merchant: MerchantId, mode: Mode, user: i64) {
    let mut memory = memory();
    prune(&mut memory.awaiting_amount, CUSTOM_AMOUNT_WAIT);
    memory
        .awaiting_amount
        .insert((merchant, mode.is_live(), user), Instant::now());
}

fn is_awaiting_amount(merchant: MerchantId, mode: Mode, user: i64) -> bool {
    let mut memory = memory();
    prune(&mut memory.awaiting_amount, CUSTOM_AMOUNT_WAIT);
    memory
        .awaiting_amount
        .contains_key(&(merchant, mode.is_live(), user))
}

fn stop_awaiting_amount(merchant: MerchantId, mode: Mode, user: i64) {
    memory()
        .awaiting_amount
        .remove(&(merchant, mode.is_live(), user));
}

/// The tip buttons of the merchant's bot, in Stars: the merchant's settings
/// (`PUT /v1/settings` `tip_presets`), else the server's `telegram.tip_presets`.
fn tip_presets(state: &AppState, mode: Mode, merchant: MerchantId) -> Result<Vec<u64>, AppError> {
    let own = farthing_app::settings::load(state.app(), mode, merchant)?.tip_presets;
    Ok(if own.is_empty() {
        state.config().telegram.tip_presets.clone()
    } else {
        own
    })
}

/// A text message (not a payment) sent to the bot.
pub async fn on_message(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    message: &Message,
) -> Result<(), AppError> {
    let (Some(text), Some(from)) = (message.text.as_deref(), message.from.as_ref()) else {
        return Ok(());
    };
    if from.is_bot || message.chat.chat_id().is_none() {
        return Ok(());
    }
    let key = format!("m:{}:{}", message.chat.id, message.message_id);
    if !first_time(bot.merchant, mode, &key) {
        return Ok(());
    }
    let handled = route_message(state, mode, bot, message, text, from).await;
    if handled.is_err() {
        forget(bot.merchant, mode, &key);
    }
    handled
}

async fn route_message(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    message: &Message,
    text: &str,
    from: &User,
) -> Result<(), AppError> {
    let Some(chat) = message.chat.chat_id() else {
        return Ok(());
    };
    let lang = Lang::from_code(from.language_code.as_deref());
    let client = crate::bot::client(state, bot)?;
    if let Some((command, args)) = command_of(text) {
        let command = command.to_ascii_lowercase();
        if command == "start" {
            return start(state, mode, bot, &client, chat, lang, args).await;
        }
        account_command(state, mode, bot, message, &command, args).await?;
        return Ok(());
    }
    if !is_awaiting_amount(bot.merchant, mode, from.id) {
        return Ok(());
    }
    match text.trim().parse::<u64>() {
        Ok(stars) if (1..=MAX_TIP_STARS).contains(&stars) => {
            stop_awaiting_amount(bot.merchant, mode, from.id);
            tip(state, mode, bot, &client, chat, from, lang, stars).await
        }
        _ => {
            let hint = lang.pick([
                "Send a whole number of Stars, from 1 to {max}.",
                "Envoyez un nombre entier d'étoiles, de 1 à {max}.",
                "Senden Sie eine ganze Zahl an Stars, von 1 bis {max}.",
                "یک عدد صحیح از 1 تا {max} ستاره بفرستید.",
                "Отправьте целое число звёзд, от 1 до {max}.",
            ]);
            let hint = lang.fill(hint, &[("max", MAX_TIP_STARS.to_string())]);
            say(&client, chat, &hint, None).await;
            Ok(())
        }
    }
}

/// The call site of the account commands (`/balance`, `/history`, …; [`super::commands`]).
async fn account_command(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    message: &Message,
    command: &str,
    args: &str,
) -> Result<bool, AppError> {
    self::commands::handle(state, mode, bot, message, command, args).await
}

/// The call site of the account commands' buttons ([`super::commands`]).
async fn account_callback(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    query: &CallbackQuery,
    data: &str,
) -> Result<bool, AppError> {
    self::commands::callback(state, mode, bot, query, data).await
}

#[allow(clippy::too_many_arguments)]
async fn start(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    client: &BotClient,
    chat: TelegramChatId,
    lang: Lang,
    payload: &str,
) -> Result<(), AppError> {
    if payload == "tip" {
        let presets = tip_presets(state, mode, bot.merchant)?;
        let mut rows: Vec<Value> = presets
            .chunks(4)
            .map(|row| {
                Value::Array(
                    row.iter()
                        .map(|stars| {
                            json!({"text": format!("⭐ {stars}"), "callback_data": format!("{TIP_PREFIX}{stars}")})
                        })
                        .collect(),
                )
            })
            .collect();
        let custom = lang.pick([
            "Custom amount",
            "Autre montant",
            "Eigener Betrag",
            "مبلغ دلخواه",
            "Другая сумма",
        ]);
        rows.push(json!([{"text": custom, "callback_data": format!("{TIP_PREFIX}custom")}]));
        let text = lang.pick([
            "Choose a tip in Stars:",
            "Choisissez un pourboire en étoiles :",
            "Wählen Sie ein Trinkgeld in Stars:",
            "مبلغ انعام را به ستاره انتخاب کنید:",
            "Выберите чаевые в звёздах:",
        ]);
        say(client, chat, text, Some(&json!({"inline_keyboard": rows}))).await;
        return Ok(());
    }
    if payload.starts_with("inv_") {
        let merchant = bot.merchant;
        let invoice = match InvoiceId::parse(payload) {
            Ok(id) => state
                .store(mode)
                .read(move |reader| reader.invoice(id))?
                .filter(|invoice| invoice.merchant == merchant),
            Err(_) => None,
        };
        let Some(invoice) = invoice else {
            let text = lang.pick([
                "This invoice does not exist.",
                "Cette facture n'existe pas.",
                "Diese Rechnung gibt es nicht.",
                "این صورتحساب وجود ندارد.",
                "Такого счёта нет.",
            ]);
            say(client, chat, text, None).await;
            return Ok(());
        };
        return post_invoice(state, mode, bot, client, chat, lang, &invoice).await;
    }
    let text = lang.pick([
        "Hi! I am {bot}. I take payments in Telegram Stars: open a payment link or send /start tip.",
        "Bonjour ! Je suis {bot}. J'accepte les paiements en étoiles Telegram : ouvrez un lien de paiement ou envoyez /start tip.",
        "Hallo! Ich bin {bot}. Ich nehme Zahlungen in Telegram Stars an: Öffnen Sie einen Zahlungslink oder senden Sie /start tip.",
        "سلام! من {bot} هستم. پرداخت‌ها را با ستاره‌های تلگرام می‌پذیرم: یک پیوند پرداخت را باز کنید یا /start tip بفرستید.",
        "Привет! Я {bot}. Я принимаю оплату звёздами Telegram: откройте ссылку на оплату или отправьте /start tip.",
    ]);
    let text = lang.fill(text, &[("bot", format!("@{}", bot.username))]);
    say(client, chat, &text, None).await;
    Ok(())
}

/// A press on one of the bot's inline buttons.
pub async fn on_callback(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    query: &CallbackQuery,
) -> Result<(), AppError> {
    let client = crate::bot::client(state, bot)?;
    let Some(data) = query.data.as_deref() else {
        answer(&client, &query.id).await;
        return Ok(());
    };
    if !(data.starts_with(TIP_PREFIX) || data.starts_with(AGAIN_PREFIX)) {
        if !account_callback(state, mode, bot, query, data).await? {
            answer(&client, &query.id).await;
        }
        return Ok(());
    }
    let key = format!("c:{}", query.id);
    if !first_time(bot.merchant, mode, &key) {
        answer(&client, &query.id).await;
        return Ok(());
    }
    let handled = route_callback(state, mode, bot, &client, query, data).await;
    if handled.is_err() {
        forget(bot.merchant, mode, &key);
    }
    answer(&client, &query.id).await;
    handled
}

async fn route_callback(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    client: &BotClient,
    query: &CallbackQuery,
    data: &str,
) -> Result<(), AppError> {
    let from = &query.from;
    let chat = query
        .message
        .as_ref()
        .and_then(|message| message.chat.chat_id())
        // A private chat's id is the user's id.
        .or_else(|| TelegramChatId::new(from.id));
    let Some(chat) = chat else {
        return Ok(());
    };
    let lang = Lang::from_code(from.language_code.as_deref());
    if let Some(rest) = data.strip_prefix(TIP_PREFIX) {
        if rest == "custom" {
            await_amount(bot.merchant, mode, from.id);
            let text = lang.pick([
                "How many Stars? Send a number.",
                "Combien d'étoiles ? Envoyez un nombre.",
                "Wie viele Stars? Senden Sie eine Zahl.",
                "چند ستاره؟ یک عدد بفرستید.",
                "Сколько звёзд? Отправьте число.",
            ]);
            say(client, chat, text, None).await;
            return Ok(());
        }
        if let Ok(stars) = rest.parse::<u64>() {
            if (1..=MAX_TIP_STARS).contains(&stars) {
                return tip(state, mode, bot, client, chat, from, lang, stars).await;
            }
        }
        return Ok(());
    }
    let Some(original) = data
        .strip_prefix(AGAIN_PREFIX)
        .and_then(|id| InvoiceId::parse(id).ok())
    else {
        return Ok(());
    };
    let merchant = bot.merchant;
    let Some(original) = state
        .store(mode)
        .read(move |reader| reader.invoice(original))?
        .filter(|invoice| invoice.merchant == merchant && invoice.subscription_period_s.is_none())
    else {
        return Ok(());
    };
    let Some(user) = from.user_id() else {
        return Ok(());
    };
    let copy = NewInvoice {
        currency: original.currency,
        amount: original.amount.clone(),
        description: original.description.clone(),
        payload: original.payload.clone(),
        rails: original.rails.clone(),
        customer: None,
        expires_in_s: BOT_INVOICE_EXPIRES_IN_S,
        metadata: original.metadata.clone(),
    };
    let invoice = create_invoice(state, mode, bot, user, copy).await?;
    post_invoice(state, mode, bot, client, chat, lang, &invoice).await
}

/// Makes a tip invoice of `stars` for `from` and posts it.
#[allow(clippy::too_many_arguments)]
async fn tip(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    client: &BotClient,
    chat: TelegramChatId,
    from: &User,
    lang: Lang,
    stars: u64,
) -> Result<(), AppError> {
    let Some(user) = from.user_id() else {
        return Ok(());
    };
    let new = NewInvoice {
        currency: Currency::XTR,
        amount: InvoiceAmount::Fixed(stars),
        description: "Tip".to_owned(),
        payload: None,
        rails: vec![Rail::Stars],
        customer: None,
        expires_in_s: BOT_INVOICE_EXPIRES_IN_S,
        metadata: vec![("source".to_owned(), "bot_tip".to_owned())],
    };
    let invoice = create_invoice(state, mode, bot, user, new).await?;
    post_invoice(state, mode, bot, client, chat, lang, &invoice).await
}

/// Creates an invoice of the bot's merchant for the Telegram user `user` (customer `tg:<id>`,
/// made if needed) through the service, as `POST /v1/invoices` does: stored with its
/// `invoice.created` event, then each rail's instructions (the Stars invoice link).
async fn create_invoice(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    user: TelegramUserId,
    new: NewInvoice,
) -> Result<Invoice, AppError> {
    let merchant = bot.merchant;
    let customer = state
        .app()
        .run(mode, move |tx| {
            farthing_app::customers::telegram(tx, merchant, mode, user.get())
        })
        .await?;
    let request = farthing_app::invoices::InvoiceRequest {
        currency: new.currency,
        amount: new.amount,
        description: new.description,
        payload: new.payload,
        rails: Some(new.rails),
        customer: Some(customer),
        expires_in_s: new.expires_in_s,
        metadata: new.metadata,
        subscription_period_s: None,
        return_url: None,
    };
    let invoice =
        farthing_app::invoices::create(state.app(), state.rails(), mode, merchant, request).await?;
    tracing::info!(invoice = %invoice.id.encode(), bot_id = bot.bot_id, "the bot made an invoice");
    Ok(invoice)
}

/// The Bot API client of the merchant's bot (the Telegram rails' cached one).
pub fn client(state: &AppState, bot: &TelegramBot) -> Result<BotClient, AppError> {
    state
        .rails()
        .telegram()
        .ok_or_else(|| AppError::internal("the Telegram rails are not registered"))?
        .client(bot)
}

/// Posts an open invoice of the API into a Telegram chat (`POST /v1/invoices/{id}/send`):
/// `sendInvoice` through the merchant's bot (the card rail's provider for a fiat invoice that
/// accepts `card`), followed by the bot's companion message (time left; edited to paid or
/// expired).
pub async fn send_invoice_to_chat(
    state: &AppState,
    mode: Mode,
    chat: TelegramChatId,
    invoice: &Invoice,
) -> Result<Message, AppError> {
    match invoice.status {
        InvoiceStatus::Open if invoice.expires_at_ns > state.now_ns() => {}
        InvoiceStatus::Open => {
            return Err(AppError::conflict(
                "invoice_expired",
                "the invoice has expired",
            ))
        }
        _ => {
            return Err(AppError::conflict(
                "invoice_not_open",
                "the invoice is not open",
            ))
        }
    }
    let telegram = state
        .rails()
        .telegram()
        .ok_or_else(|| AppError::internal("the Telegram rails are not registered"))?;
    let bot = telegram
        .bot(state.app(), mode, invoice.merchant)?
        .ok_or_else(|| {
            AppError::invalid(
                "rail_not_configured",
                "no Telegram bot is connected in this mode; see PUT /v1/rails/stars",
            )
        })?;
    let message = telegram
        .send_invoice(state.app(), mode, &bot, chat, invoice)
        .await?;
    tracing::info!(invoice = %invoice.id.encode(), bot_id = bot.bot_id, message_id = message.message_id, "invoice sent into a chat");
    // The message the bot edits to paid or expired (an invoice message cannot be).
    invoice_sent(state, mode, &bot, chat, invoice, message.message_id).await;
    Ok(message)
}

/// Posts `invoice` into `chat`: `sendInvoice` and its companion message, or one message with a
/// Pay button; a closed invoice is answered with its state (and "Pay again").
async fn post_invoice(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    client: &BotClient,
    chat: TelegramChatId,
    lang: Lang,
    invoice: &Invoice,
) -> Result<(), AppError> {
    let now_ns = state.now_ns();
    if invoice.status != InvoiceStatus::Open || invoice.expires_at_ns <= now_ns {
        let text = match invoice.status {
            InvoiceStatus::Open | InvoiceStatus::Expired => expired_text(lang, invoice),
            InvoiceStatus::Canceled => canceled_text(lang),
            _ => paid_text(lang, invoice),
        };
        let again = (invoice.status != InvoiceStatus::Canceled
            && invoice.subscription_period_s.is_none())
        .then(|| json!({"inline_keyboard": [[pay_again_button(lang, invoice)]]}));
        say(client, chat, &text, again.as_ref()).await;
        return Ok(());
    }
    let params = crate::rails::telegram::stars_link_params(invoice).filter(|_| {
        invoice.rails.contains(&Rail::Stars) && invoice.subscription_period_s.is_none()
    });
    let text = timer_text(lang, invoice, now_ns);
    match params {
        Some(params) => {
            let sent = match client.send_invoice(chat, &params).await {
                Ok(sent) => sent,
                Err(error) => {
                    tracing::warn!(bot_id = bot.bot_id, %error, invoice = %invoice.id.encode(), "sendInvoice failed");
                    return Ok(());
                }
            };
            let companion = client.send_message(chat, &text, None).await;
            record(
                state,
                mode,
                bot,
                chat,
                lang,
                invoice,
                Some(sent.message_id),
                companion,
            )
            .await
        }
        None => {
            let url = crate::instructions::invoice_link(invoice, farthing_core::Rail::Stars)
                .unwrap_or_else(|| state.checkout_url(&invoice.id.encode()));
            let pay = lang.pick(["Pay", "Payer", "Bezahlen", "پرداخت", "Оплатить"]);
            let keyboard = json!({"inline_keyboard": [[{"text": pay, "url": url}]]});
            let companion = client.send_message(chat, &text, Some(&keyboard)).await;
            record(state, mode, bot, chat, lang, invoice, None, companion).await
        }
    }
}

/// After `POST /v1/invoices/{id}/send` posted `invoice` (message `invoice_message_id`): its
/// companion message, in English (the API does not know the reader's language). Failures are
/// logged: the invoice was posted.
pub async fn invoice_sent(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    chat: TelegramChatId,
    invoice: &Invoice,
    invoice_message_id: i64,
) {
    let Ok(client) = crate::bot::client(state, bot) else {
        return;
    };
    let lang = Lang::En;
    let text = timer_text(lang, invoice, state.now_ns());
    let companion = client.send_message(chat, &text, None).await;
    let recorded = record(
        state,
        mode,
        bot,
        chat,
        lang,
        invoice,
        Some(invoice_message_id),
        companion,
    )
    .await;
    if let Err(error) = recorded {
        tracing::warn!(code = error.code(), %error, "the invoice's companion message was not recorded");
    }
}

/// Records the companion message the bot just sent (or logs why there is none).
#[allow(clippy::too_many_arguments)]
async fn record(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    chat: TelegramChatId,
    lang: Lang,
    invoice: &Invoice,
    invoice_message_id: Option<i64>,
    companion: Result<Message, farthing_botapi::BotApiError>,
) -> Result<(), AppError> {
    let companion = match companion {
        Ok(companion) => companion,
        Err(error) => {
            tracing::warn!(bot_id = bot.bot_id, %error, invoice = %invoice.id.encode(), "the invoice's companion message was not sent");
            return Ok(());
        }
    };
    let row = InvoiceMessage {
        invoice: invoice.id,
        chat_id: chat.get(),
        companion_message_id: companion.message_id,
        invoice_message_id,
        language: lang.code().to_owned(),
        state: "open".to_owned(),
        created_at_ns: state.now_ns(),
    };
    state
        .store(mode)
        .run(move |tx| tx.insert_invoice_message(&row))
        .await??;
    Ok(())
}

/// After a payment settled (not for a duplicate): the companion messages of its invoice
/// edited to paid, then the receipt, the goods and the buttons, in the payer's language.
/// Failures are logged: the payment is booked whatever Telegram says.
pub async fn payment_settled(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    settled: &SettledPayment,
    chat: &Chat,
    from: Option<&User>,
) {
    let Ok(client) = crate::bot::client(state, bot) else {
        return;
    };
    let Some(chat) = chat.chat_id() else {
        return;
    };
    let lang = Lang::from_code(from.and_then(|user| user.language_code.as_deref()));
    let payment = &settled.payment;
    let paid = settled
        .invoice
        .as_ref()
        .filter(|invoice| payment.paid_minor > 0 && invoice.status == InvoiceStatus::Paid);
    let Some(invoice) = paid else {
        if payment.credited_minor > 0 {
            let text = lang.pick([
                "{amount} was credited to your balance.",
                "{amount} ont été crédités sur votre solde.",
                "{amount} wurden Ihrem Guthaben gutgeschrieben.",
                "{amount} به موجودی شما افزوده شد.",
                "{amount} зачислено на ваш баланс.",
            ]);
            let amount = amount_text(payment.currency, payment.credited_minor);
            say(&client, chat, &lang.fill(text, &[("amount", amount)]), None).await;
        }
        return;
    };
    close_messages(state, mode, bot, &client, invoice, "paid").await;
    // SPEC T6: the receipt names the merchant and the bot username Telegram verified (getMe).
    let merchant_id = bot.merchant;
    let merchant = state
        .store(mode)
        .read(move |reader| reader.merchant(merchant_id))
        .ok()
        .flatten()
        .map_or_else(String::new, |m| m.name);
    let receipt = lang.pick([
        "Receipt — {merchant} (@{bot})\nAmount: {amount}\nCurrency: {currency}\nFee: {fee}\nRate: {rate}\nTime: {time}\nInvoice: {id}",
        "Reçu — {merchant} (@{bot})\nMontant : {amount}\nDevise : {currency}\nFrais : {fee}\nTaux : {rate}\nDate : {time}\nFacture : {id}",
        "Beleg — {merchant} (@{bot})\nBetrag: {amount}\nWährung: {currency}\nGebühr: {fee}\nKurs: {rate}\nZeit: {time}\nRechnung: {id}",
        "رسید — {merchant} (@{bot})\nمبلغ: {amount}\nارز: {currency}\nکارمزد: {fee}\nنرخ: {rate}\nزمان: {time}\nصورتحساب: {id}",
        "Чек — {merchant} (@{bot})\nСумма: {amount}\nВалюта: {currency}\nКомиссия: {fee}\nКурс: {rate}\nВремя: {time}\nСчёт: {id}",
    ]);
    let receipt = lang.fill(
        receipt,
        &[
            ("amount", amount_text(invoice.currency, payment.paid_minor)),
            ("currency", invoice.currency.code().to_owned()),
            // No fee is booked on a payment today, and no conversion happens (the payment is
            // in the invoice's currency): when either exists, it is shown here.
            ("fee", amount_text(invoice.currency, 0)),
            ("rate", "—".to_owned()),
            ("time", utc_text(payment.created_at_ns, true)),
            ("id", invoice.id.encode()),
            ("merchant", merchant),
            ("bot", bot.username.clone()),
        ],
    );
    let meta = |key: &str| {
        invoice
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut rows = Vec::new();
    if let Some(url) =
        meta("deliver_url").filter(|url| url.starts_with("https://") || url.starts_with("http://"))
    {
        let open = lang.pick(["Open", "Ouvrir", "Öffnen", "باز کردن", "Открыть"]);
        rows.push(json!([{"text": open, "url": url}]));
    }
    let mut last_row = Vec::new();
    if invoice.subscription_period_s.is_none() {
        last_row.push(pay_again_button(lang, invoice));
    }
    let share = lang.pick(["Share", "Partager", "Teilen", "اشتراک‌گذاری", "Поделиться"]);
    last_row.push(json!({"text": share, "url": share_url(&bot.username, &share_payload(invoice))}));
    rows.push(Value::Array(last_row));
    let keyboard = json!({"inline_keyboard": rows});
    match meta("deliver_text") {
        Some(goods) => {
            say(&client, chat, &receipt, None).await;
            say(&client, chat, goods, Some(&keyboard)).await;
        }
        None => say(&client, chat, &receipt, Some(&keyboard)).await,
    }
}

/// Most invoices whose messages one sweep closes.
const SWEEP_INVOICES: usize = 100;

/// Called by the scheduler on each round: when some invoice the bot posted is no longer open
/// (expired now, or paid, refunded or canceled other than by a Stars update), its companion
/// messages are closed and edited in a task of its own (the scheduler does not wait for
/// Telegram). The common case, nothing to do, is one indexed read.
pub fn sweep(state: &AppState, mode: Mode) {
    match state
        .store(mode)
        .read(|reader| reader.stale_invoice_messages())
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::warn!(%error, "the bot's invoice messages were not read");
            return;
        }
    }
    let state = state.clone();
    tokio::spawn(async move {
        let closed = state
            .store(mode)
            .run(|tx| tx.close_stale_invoice_messages(SWEEP_INVOICES))
            .await;
        let messages = match closed {
            Ok(Ok(messages)) => messages,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the bot's invoice messages were not closed");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "the bot's invoice messages were not closed");
                return;
            }
        };
        let mut by_invoice: HashMap<InvoiceId, Vec<InvoiceMessage>> = HashMap::new();
        for message in messages {
            by_invoice.entry(message.invoice).or_default().push(message);
        }
        for (id, messages) in by_invoice {
            let found = state.store(mode).read(move |reader| {
                let Some(invoice) = reader.invoice(id)? else {
                    return Ok(None);
                };
                let bot = reader.telegram_bot(invoice.merchant)?;
                Ok(bot.map(|bot| (invoice, bot)))
            });
            let (invoice, bot) = match found {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "a closed invoice's bot was not read");
                    continue;
                }
            };
            let Ok(client) = crate::bot::client(&state, &bot) else {
                continue;
            };
            edit_closed(&bot, &client, &invoice, messages).await;
        }
    });
}

/// Marks the open companion messages of `invoice` as `closed_as` and edits each one.
async fn close_messages(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    client: &BotClient,
    invoice: &Invoice,
    closed_as: &'static str,
) {
    let id = invoice.id;
    let closed = state
        .store(mode)
        .run(move |tx| tx.close_invoice_messages(id, closed_as))
        .await;
    match closed {
        Ok(Ok(messages)) => edit_closed(bot, client, invoice, messages).await,
        Ok(Err(error)) => {
            tracing::warn!(%error, "the bot's invoice messages were not closed");
        }
        Err(error) => {
            tracing::warn!(%error, "the bot's invoice messages were not closed");
        }
    }
}

/// Edits each closed companion message to what its state says (removing any Pay button).
async fn edit_closed(
    bot: &TelegramBot,
    client: &BotClient,
    invoice: &Invoice,
    messages: Vec<InvoiceMessage>,
) {
    for message in messages {
        let lang = Lang::from_code(Some(&message.language));
        let text = match message.state.as_str() {
            "paid" => paid_text(lang, invoice),
            "canceled" => canceled_text(lang),
            _ => expired_text(lang, invoice),
        };
        let Some(chat) = TelegramChatId::new(message.chat_id) else {
            continue;
        };
        if let Err(error) = client
            .edit_message_text(chat, message.companion_message_id, &text, None)
            .await
        {
            tracing::warn!(bot_id = bot.bot_id, %error, "an invoice's companion message was not edited");
        }
    }
}

fn canceled_text(lang: Lang) -> String {
    lang.pick([
        "This invoice was canceled.",
        "Cette facture a été annulée.",
        "Diese Rechnung wurde storniert.",
        "این صورتحساب لغو شد.",
        "Этот счёт отменён.",
    ])
    .to_owned()
}

/// The companion message of an open invoice: amount and time left.
fn timer_text(lang: Lang, invoice: &Invoice, now_ns: u64) -> String {
    let left_min = invoice.expires_at_ns.saturating_sub(now_ns) / 60_000_000_000;
    let text = lang.pick([
        "{amount} — expires in {min} min (at {time})\nInvoice {id}",
        "{amount} — expire dans {min} min (à {time})\nFacture {id}",
        "{amount} — läuft in {min} Min. ab (um {time})\nRechnung {id}",
        "{amount} — تا {min} دقیقه دیگر منقضی می‌شود (ساعت {time})\nصورتحساب {id}",
        "{amount} — истекает через {min} мин (в {time})\nСчёт {id}",
    ]);
    lang.fill(
        text,
        &[
            ("amount", invoice_amount_text(invoice)),
            ("min", left_min.to_string()),
            ("time", utc_text(invoice.expires_at_ns, false)),
            ("id", invoice.id.encode()),
        ],
    )
}

fn paid_text(lang: Lang, invoice: &Invoice) -> String {
    let text = lang.pick([
        "Paid ✓ — {amount}\nInvoice {id}",
        "Payé ✓ — {amount}\nFacture {id}",
        "Bezahlt ✓ — {amount}\nRechnung {id}",
        "پرداخت شد ✓ — {amount}\nصورتحساب {id}",
        "Оплачено ✓ — {amount}\nСчёт {id}",
    ]);
    lang.fill(
        text,
        &[
            ("amount", invoice_amount_text(invoice)),
            ("id", invoice.id.encode()),
        ],
    )
}

fn expired_text(lang: Lang, invoice: &Invoice) -> String {
    let text = lang.pick([
        "Expired — {amount}\nInvoice {id}",
        "Expirée — {amount}\nFacture {id}",
        "Abgelaufen — {amount}\nRechnung {id}",
        "منقضی شد — {amount}\nصورتحساب {id}",
        "Истёк — {amount}\nСчёт {id}",
    ]);
    lang.fill(
        text,
        &[
            ("amount", invoice_amount_text(invoice)),
            ("id", invoice.id.encode()),
        ],
    )
}

fn pay_again_button(lang: Lang, invoice: &Invoice) -> Value {
    let text = lang.pick([
        "Pay again",
        "Payer à nouveau",
        "Erneut bezahlen",
        "پرداخت دوباره",
        "Оплатить снова",
    ]);
    json!({"text": text, "callback_data": format!("{AGAIN_PREFIX}{}", invoice.id.encode())})
}

/// The deep-link payload a shared receipt points to: the tip prompt for a tip, the invoice
/// otherwise (opening a paid invoice offers "Pay again").
fn share_payload(invoice: &Invoice) -> String {
    let tip = invoice
        .metadata
        .iter()
        .any(|(key, value)| key == "source" && value == "bot_tip");
    if tip {
        "tip".to_owned()
    } else {
        invoice.id.encode()
    }
}

/// `https://t.me/share/url?url=<https://t.me/<bot>?start=<payload>>`.
fn share_url(username: &str, payload: &str) -> String {
    let link = format!("https://t.me/{username}?start={payload}");
    let encoded: String = form_urlencoded::byte_serialize(link.as_bytes()).collect();
    format!("https://t.me/share/url?url={encoded}")
}

fn invoice_amount_text(invoice: &Invoice) -> String {
    match &invoice.amount {
        InvoiceAmount::Fixed(amount) => amount_text(invoice.currency, *amount),
        InvoiceAmount::Open { .. } => invoice.currency.code().to_owned(),
    }
}

/// `minor` units of `currency` as a decimal with the code: `50 XTR`, `1.05 EUR`.
fn amount_text(currency: Currency, minor: u64) -> String {
    let exponent = u32::from(currency.exponent());
    let code = currency.code();
    if exponent == 0 {
        return format!("{minor} {code}");
    }
    let Some(unit) = 10u64.checked_pow(exponent) else {
        return format!("{minor} {code}");
    };
    let width = usize::try_from(exponent).unwrap_or(0);
    format!("{}.{:0width$} {code}", minor / unit, minor % unit)
}

/// A Unix time in nanoseconds as `2026-11-21 12:34 UTC` (`HH:MM UTC` without the date).
fn utc_text(unix_ns: u64, with_date: bool) -> String {
    let secs = unix_ns / 1_000_000_000;
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (hour, minute) = (of_day / 3600, of_day % 3600 / 60);
    if !with_date {
        return format!("{hour:02}:{minute:02} UTC");
    }
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, for days ≥ 0).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// Sends `text`; a failure is logged (the update is still taken).
async fn say(client: &BotClient, chat: TelegramChatId, text: &str, keyboard: Option<&Value>) {
    if let Err(error) = client.send_message(chat, text, keyboard).await {
        tracing::warn!(%error, "a bot message was not sent");
    }
}

async fn answer(client: &BotClient, query_id: &str) {
    if let Err(error) = client.answer_callback_query(query_id, None).await {
        tracing::debug!(%error, "answerCallbackQuery failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_split_from_their_arguments() {
        assert_eq!(command_of("/start inv_1"), Some(("start", "inv_1")));
        assert_eq!(command_of("/start"), Some(("start", "")));
        assert_eq!(command_of("/balance@shop_bot"), Some(("balance", "")));
        assert_eq!(command_of("/start@shop_bot  tip "), Some(("start", "tip")));
        assert_eq!(command_of("hello"), None);
        assert_eq!(command_of("/"), None);
        assert_eq!(command_of("/ü"), None);
    }

    #[test]
    fn times_amounts_and_share_links_read_well() {
        // 2026-11-21 12:34:56 UTC
        let ns = 1_795_264_496 * 1_000_000_000;
        assert_eq!(utc_text(ns, true), "2026-11-21 12:34 UTC");
        assert_eq!(utc_text(ns, false), "12:34 UTC");
        assert_eq!(utc_text(0, true), "1970-01-01 00:00 UTC");
        assert_eq!(amount_text(Currency::XTR, 50), "50 XTR");
        assert_eq!(
            share_url("shop_bot", "tip"),
            "https://t.me/share/url?url=https%3A%2F%2Ft.me%2Fshop_bot%3Fstart%3Dtip"
        );
    }
}
