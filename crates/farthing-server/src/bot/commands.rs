//! The customer's account commands of the payment bot (SPEC T2–T3), in the user's language:
//!
//! - `/balance`: the customer's balances, with Stars top-up buttons. A top-up is an `XTR`
//!   invoice with metadata `purpose=top_up` sent with `sendInvoice`; when it is paid, the
//!   settlement pays the merchant and, in the same job, moves the money on to the payer's
//!   balance (`farthing_app::settlement::is_top_up`), so the ledger stays balanced and one invoice
//!   tops up once (the transfer id is derived from the invoice id).
//! - `/history`: the customer's last ten payments, charges and refunds, newest first.
//! - `/subscriptions`: the customer's Stars subscriptions with Cancel / Resume buttons, through
//!   the same `editUserStarSubscription` logic as the API (`api::subscriptions`).
//! - `/refund`: the customer's refundable paid invoices as buttons; a press makes a refund
//!   request (`refund_request.created`) the merchant approves or declines through the API
//!   (`api::settings`), and the customer is told the outcome ([`tell_refund_decision`]).
//! - `/terms`: the merchant's offer, refund policy and contacts (`GET /v1/settings`).
//! - `/remind on|off`: opts in to (or out of) payment reminders; [`send_reminders`] then
//!   reminds of an open invoice made for them or posted into their chat once it is
//!   `telegram.reminder_after_s` old, once per invoice
//!   (recorded before sending), and only when the merchant's `reminders` setting is on.
//!
//! The command router (`super::bot`) calls [`handle`] for every command and [`callback`] for
//! every button press; both answer `Ok(false)` for what is not theirs. Buttons carry callback
//! data starting with [`CALLBACK_PREFIX`]. Every press is checked against the presser: a
//! customer only ever sees and acts on their own invoices and subscriptions.
//!
//! Architecture invariant: nothing here moves money; top-ups settle through
//! `crate::settlement`, refunds through `POST /v1/refunds`.

use std::time::Duration;

use farthing_core::invoice::{Invoice, InvoiceAmount, InvoiceStatus};
use farthing_core::{Currency, CustomerId, InvoiceId, PublicId, Rail};
use farthing_store::{RefundRequest, ReminderOptIn, TelegramBot};
use farthing_telegram::TelegramChatId;
use serde_json::{json, Value};

use super::i18n::Lang;
use crate::state::{AppState, Mode};
use farthing_app::settings::MerchantSettings;
use farthing_app::AppError;
use farthing_botapi::{BotClient, CallbackQuery, Message, User};

/// The prefix of every callback data of these buttons.
pub const CALLBACK_PREFIX: &str = "acct:";
/// How many entries `/history` shows.
pub const HISTORY_ENTRIES: usize = 10;
/// How many invoices `/refund` offers.
const REFUND_CHOICES: usize = 10;
/// How many subscriptions `/subscriptions` shows.
const SUBSCRIPTIONS_SHOWN: usize = 10;
/// How many opted-in customers one reminder round looks at, per mode.
const REMINDER_CUSTOMERS_MAX: usize = 1000;
/// How many recent invoices of one customer a reminder round looks at.
const REMINDER_INVOICES_PER_CUSTOMER: usize = 20;
/// How long a top-up invoice stays open.
const TOP_UP_EXPIRES_IN_S: u64 = 900;

/// Handles `command` (without the `/` and any `@botname`) with its `args`, sent in `message`.
/// `Ok(true)` when it was one of the account commands.
pub async fn handle(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    message: &Message,
    command: &str,
    args: &str,
) -> Result<bool, AppError> {
    let command = command.to_ascii_lowercase();
    if !matches!(
        command.as_str(),
        "balance" | "history" | "subscriptions" | "refund" | "terms" | "remind"
    ) {
        return Ok(false);
    }
    let Some(user) = message.from.as_ref().filter(|user| !user.is_bot) else {
        return Ok(false);
    };
    let Some(chat) = message.chat.chat_id() else {
        return Ok(false);
    };
    let lang = Lang::from_code(user.language_code.as_deref());
    let client = crate::bot::client(state, bot)?;
    let customer = customer_of(state, mode, bot, user).await?;
    let (text, keyboard) = match command.as_str() {
        "balance" => balance(state, mode, bot, customer, lang)?,
        "history" => (history(state, mode, customer, lang)?, None),
        "subscriptions" => subscriptions(state, mode, customer, lang)?,
        "refund" => refundable(state, mode, customer, lang)?,
        "terms" => (
            terms(
                &farthing_app::settings::load(state.app(), mode, bot.merchant)?,
                lang,
            ),
            None,
        ),
        _ => (
            remind(state, mode, bot, customer, user, lang, args).await?,
            None,
        ),
    };
    say(&client, chat, &text, keyboard.as_ref()).await;
    Ok(true)
}

/// Handles a press on one of these buttons (`data` starts with [`CALLBACK_PREFIX`]).
/// `Ok(true)` when it was one of ours.
pub async fn callback(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    query: &CallbackQuery,
    data: &str,
) -> Result<bool, AppError> {
    let Some(rest) = data.strip_prefix(CALLBACK_PREFIX) else {
        return Ok(false);
    };
    let user = &query.from;
    let lang = Lang::from_code(user.language_code.as_deref());
    let client = crate::bot::client(state, bot)?;
    let chat = query
        .message
        .as_ref()
        .and_then(|message| message.chat.chat_id())
        .or_else(|| TelegramChatId::new(user.id));
    let customer = customer_of(state, mode, bot, user).await?;
    let notice = match (rest.split_once(':'), chat, customer) {
        (Some(("topup", stars)), Some(chat), Some(customer)) => {
            top_up(state, mode, bot, &client, chat, customer, lang, stars).await?
        }
        (Some(("pay", invoice)), Some(chat), Some(customer)) => {
            send_open_invoice(state, mode, bot, &client, chat, customer, lang, invoice).await?
        }
        (Some(("refund", invoice)), Some(chat), Some(customer)) => {
            request_refund(
                state, mode, bot, &client, chat, customer, user, lang, invoice,
            )
            .await?
        }
        (Some(("sub", action)), _, Some(customer)) => {
            subscription_action(state, mode, &client, query, customer, lang, action).await?
        }
        _ => None,
    };
    if let Err(error) = client
        .answer_callback_query(&query.id, notice.as_deref())
        .await
    {
        tracing::debug!(%error, "answerCallbackQuery failed");
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// The commands

fn balance(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    customer: Option<CustomerId>,
    lang: Lang,
) -> Result<(String, Option<Value>), AppError> {
    let merchant = bot.merchant;
    let balances = match customer {
        Some(customer) => state
            .store(mode)
            .read(move |reader| reader.customer_balances(merchant, customer))?,
        None => Vec::new(),
    };
    let lines: Vec<String> = balances
        .iter()
        .filter(|(_, posted, _)| *posted != 0)
        .map(|(currency, _, available)| {
            format!(
                "• {}",
                lang.isolate(&amount_text(
                    *currency,
                    u64::try_from(*available).unwrap_or(0)
                ))
            )
        })
        .collect();
    let mut text = if lines.is_empty() {
        lang.pick([
            "Your balance is empty.",
            "Votre solde est vide.",
            "Ihr Guthaben ist leer.",
            "موجودی شما خالی است.",
            "Ваш баланс пуст.",
        ])
        .to_owned()
    } else {
        format!(
            "{}\n{}",
            lang.pick([
                "Your balance:",
                "Votre solde :",
                "Ihr Guthaben:",
                "موجودی شما:",
                "Ваш баланс:",
            ]),
            lines.join("\n")
        )
    };
    let presets = top_up_presets(state, mode, merchant)?;
    if presets.is_empty() {
        return Ok((text, None));
    }
    text.push_str("\n\n");
    text.push_str(lang.pick([
        "Top up with Telegram Stars:",
        "Recharger avec des étoiles Telegram :",
        "Mit Telegram Stars aufladen:",
        "شارژ با ستاره‌های تلگرام:",
        "Пополнить звёздами Telegram:",
    ]));
    let buttons: Vec<Value> = presets
        .iter()
        .map(|stars| {
            json!({"text": format!("+{stars} ⭐"), "callback_data": format!("{CALLBACK_PREFIX}topup:{stars}")})
        })
        .collect();
    Ok((text, Some(json!({"inline_keyboard": [buttons]}))))
}

/// The top-up buttons: the merchant's `tip_presets`, else the server's.
fn top_up_presets(
    state: &AppState,
    mode: Mode,
    merchant: farthing_core::MerchantId,
) -> Result<Vec<u64>, AppError> {
    let settings = farthing_app::settings::load(state.app(), mode, merchant)?;
    Ok(if settings.tip_presets.is_empty() {
        state.config().telegram.tip_presets.clone()
    } else {
        settings.tip_presets
    })
}

fn history(
    state: &AppState,
    mode: Mode,
    customer: Option<CustomerId>,
    lang: Lang,
) -> Result<String, AppError> {
    let empty = lang.pick([
        "No payments yet.",
        "Aucun paiement pour l'instant.",
        "Noch keine Zahlungen.",
        "هنوز پرداختی انجام نشده است.",
        "Платежей пока нет.",
    ]);
    let Some(customer) = customer else {
        return Ok(empty.to_owned());
    };
    let (invoices, charges, refunds) = state.store(mode).read(move |reader| {
        Ok((
            reader.invoices_paid_by(customer, HISTORY_ENTRIES)?,
            reader.charges_of_customer(customer, HISTORY_ENTRIES)?,
            reader.refunds_of_customer(customer, HISTORY_ENTRIES)?,
        ))
    })?;
    let paid = lang.pick(["Payment", "Paiement", "Zahlung", "پرداخت", "Платёж"]);
    let charged = lang.pick(["Charge", "Débit", "Abbuchung", "کسر از موجودی", "Списание"]);
    let refunded = lang.pick([
        "Refund",
        "Remboursement",
        "Erstattung",
        "بازپرداخت",
        "Возврат",
    ]);
    let mut entries: Vec<(u64, String)> = Vec::new();
    for invoice in &invoices {
        let Some(payment) = &invoice.payment else {
            continue;
        };
        let mut line = format!(
            "{} · {paid} · {}",
            lang.isolate(&utc_date(payment.paid_at_ns)),
            lang.isolate(&format!(
                "−{}",
                amount_text(invoice.currency, payment.amount_minor)
            ))
        );
        if !invoice.description.is_empty() {
            line.push_str(&format!(
                " · {}",
                lang.isolate(&cut(&invoice.description, 40))
            ));
        }
        line.push_str(&format!(" · {}", lang.isolate(&invoice.id.encode())));
        entries.push((payment.paid_at_ns, line));
    }
    for charge in &charges {
        let mut line = format!(
            "{} · {charged} · {}",
            lang.isolate(&utc_date(charge.created_at_ns)),
            lang.isolate(&format!(
                "−{}",
                amount_text(charge.currency, charge.amount_minor)
            ))
        );
        if !charge.description.is_empty() {
            line.push_str(&format!(
                " · {}",
                lang.isolate(&cut(&charge.description, 40))
            ));
        }
        line.push_str(&format!(" · {}", lang.isolate(&charge.id.encode())));
        entries.push((charge.created_at_ns, line));
    }
    for refund in &refunds {
        let line = format!(
            "{} · {refunded} · {} · {}",
            lang.isolate(&utc_date(refund.created_at_ns)),
            lang.isolate(&format!(
                "+{}",
                amount_text(refund.currency, refund.amount_minor)
            )),
            lang.isolate(&refund.id.encode())
        );
        entries.push((refund.created_at_ns, line));
    }
    if entries.is_empty() {
        return Ok(empty.to_owned());
    }
    // Newest first; ids break ties (they are time-ordered too).
    entries.sort_by(|a, b| b.cmp(a));
    entries.truncate(HISTORY_ENTRIES);
    let lines: Vec<String> = entries.into_iter().map(|(_, line)| line).collect();
    Ok(format!(
        "{}\n{}",
        lang.pick([
            "Your latest payments:",
            "Vos derniers paiements :",
            "Ihre letzten Zahlungen:",
            "آخرین پرداخت‌های شما:",
            "Ваши последние платежи:",
        ]),
        lines.join("\n")
    ))
}

fn subscriptions(
    state: &AppState,
    mode: Mode,
    customer: Option<CustomerId>,
    lang: Lang,
) -> Result<(String, Option<Value>), AppError> {
    let list = match customer {
        Some(customer) => state
            .store(mode)
            .read(move |reader| reader.subscriptions_of_customer(customer, SUBSCRIPTIONS_SHOWN))?,
        None => Vec::new(),
    };
    if list.is_empty() {
        let text = lang.pick([
            "You have no subscriptions.",
            "Vous n'avez aucun abonnement.",
            "Sie haben keine Abonnements.",
            "شما هیچ اشتراکی ندارید.",
            "У вас нет подписок.",
        ]);
        return Ok((text.to_owned(), None));
    }
    let now_ns = state.now_ns();
    let mut lines = vec![lang
        .pick([
            "Your subscriptions:",
            "Vos abonnements :",
            "Ihre Abonnements:",
            "اشتراک‌های شما:",
            "Ваши подписки:",
        ])
        .to_owned()];
    let mut rows = Vec::new();
    for (n, subscription) in list.iter().enumerate() {
        let until = utc_date(
            subscription
                .current_period_end_s
                .saturating_mul(1_000_000_000),
        );
        let status = match farthing_app::subscriptions::status(subscription, now_ns) {
            "active" => lang.pick([
                "renews on {date}",
                "renouvellement le {date}",
                "verlängert sich am {date}",
                "تمدید در {date}",
                "продлится {date}",
            ]),
            "canceled" => lang.pick([
                "canceled, paid until {date}",
                "annulé, payé jusqu'au {date}",
                "gekündigt, bezahlt bis {date}",
                "لغو شده، پرداخت‌شده تا {date}",
                "отменена, оплачена до {date}",
            ]),
            _ => lang.pick([
                "ended on {date}",
                "terminé le {date}",
                "beendet am {date}",
                "پایان‌یافته در {date}",
                "закончилась {date}",
            ]),
        };
        lines.push(format!(
            "{}. {} / 30 · {}",
            n + 1,
            lang.isolate(&amount_text(
                subscription.currency,
                subscription.amount_minor
            )),
            lang.fill(status, &[("date", &until)])
        ));
        if farthing_app::subscriptions::status(subscription, now_ns) == "expired" {
            continue;
        }
        let (label, action) = if subscription.canceled {
            (
                lang.pick(["Resume", "Reprendre", "Fortsetzen", "ادامه", "Возобновить"]),
                "resume",
            )
        } else {
            (
                lang.pick(["Cancel", "Annuler", "Kündigen", "لغو", "Отменить"]),
                "cancel",
            )
        };
        rows.push(json!([{
            "text": format!("{label} #{}", n + 1),
            "callback_data": format!("{CALLBACK_PREFIX}sub:{action}:{}", subscription.id.encode()),
        }]));
    }
    let keyboard = (!rows.is_empty()).then(|| json!({ "inline_keyboard": rows }));
    Ok((lines.join("\n"), keyboard))
}

/// The customer's invoices that can still be refunded (paid, not a top-up, money left).
fn refundable_invoices(
    state: &AppState,
    mode: Mode,
    customer: CustomerId,
) -> Result<Vec<Invoice>, AppError> {
    let invoices = state
        .store(mode)
        .read(move |reader| reader.invoices_paid_by(customer, REFUND_CHOICES * 3))?;
    Ok(invoices
        .into_iter()
        .filter(|invoice| is_refundable(invoice, customer))
        .take(REFUND_CHOICES)
        .collect())
}

use farthing_app::refund_requests::is_refundable;

fn refundable(
    state: &AppState,
    mode: Mode,
    customer: Option<CustomerId>,
    lang: Lang,
) -> Result<(String, Option<Value>), AppError> {
    let invoices = match customer {
        Some(customer) => refundable_invoices(state, mode, customer)?,
        None => Vec::new(),
    };
    if invoices.is_empty() {
        let text = lang.pick([
            "You have no payments that can be refunded.",
            "Vous n'avez aucun paiement remboursable.",
            "Sie haben keine erstattungsfähigen Zahlungen.",
            "پرداخت قابل بازپرداختی ندارید.",
            "У вас нет платежей, которые можно вернуть.",
        ]);
        return Ok((text.to_owned(), None));
    }
    let rows: Vec<Value> = invoices
        .iter()
        .map(|invoice| {
            let mut label = amount_text(invoice.currency, invoice.refundable_minor());
            if let Some(payment) = &invoice.payment {
                label.push_str(&format!(" · {}", utc_date(payment.paid_at_ns)));
            }
            if !invoice.description.is_empty() {
                label.push_str(&format!(" · {}", cut(&invoice.description, 24)));
            }
            json!([{
                "text": label,
                "callback_data": format!("{CALLBACK_PREFIX}refund:{}", invoice.id.encode()),
            }])
        })
        .collect();
    let text = lang.pick([
        "Which payment should be refunded? The shop will review your request.",
        "Quel paiement faut-il rembourser ? La boutique examinera votre demande.",
        "Welche Zahlung soll erstattet werden? Der Shop prüft Ihre Anfrage.",
        "کدام پرداخت بازپرداخت شود؟ فروشگاه درخواست شما را بررسی می‌کند.",
        "Какой платёж вернуть? Магазин рассмотрит ваш запрос.",
    ]);
    Ok((text.to_owned(), Some(json!({ "inline_keyboard": rows }))))
}

/// The `/terms` text: the merchant's offer, refund policy and contacts.
pub fn terms(settings: &MerchantSettings, lang: Lang) -> String {
    let sections = [
        (
            lang.pick(["Terms", "Conditions", "Bedingungen", "شرایط", "Условия"]),
            settings.terms.trim(),
        ),
        (
            lang.pick([
                "Refund policy",
                "Politique de remboursement",
                "Erstattungsrichtlinie",
                "سیاست بازپرداخت",
                "Правила возврата",
            ]),
            settings.refund_policy.trim(),
        ),
        (
            lang.pick(["Contacts", "Contacts", "Kontakt", "تماس", "Контакты"]),
            settings.contacts.trim(),
        ),
    ];
    let parts: Vec<String> = sections
        .iter()
        .filter(|(_, text)| !text.is_empty())
        .map(|(title, text)| format!("{title}\n{text}"))
        .collect();
    if parts.is_empty() {
        return lang
            .pick([
                "The shop has not published its terms yet.",
                "La boutique n'a pas encore publié ses conditions.",
                "Der Shop hat seine Bedingungen noch nicht veröffentlicht.",
                "فروشگاه هنوز شرایط خود را منتشر نکرده است.",
                "Магазин ещё не опубликовал свои условия.",
            ])
            .to_owned();
    }
    parts.join("\n\n")
}

#[allow(clippy::too_many_arguments)]
async fn remind(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    customer: Option<CustomerId>,
    user: &User,
    lang: Lang,
    args: &str,
) -> Result<String, AppError> {
    let Some(customer) = customer else {
        return Ok(String::new());
    };
    let wanted = match args.trim().to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    };
    let on = match wanted {
        Some(on) => {
            let opt_in = on.then(|| ReminderOptIn {
                customer,
                merchant: bot.merchant,
                telegram_user_id: user.id,
                lang: lang.code().to_owned(),
            });
            state
                .store(mode)
                .run(move |tx| tx.set_reminder_opt_in(customer, opt_in.as_ref()))
                .await??;
            on
        }
        None => state
            .store(mode)
            .read(move |reader| reader.reminder_opt_in(customer))?,
    };
    let mut text = if on {
        lang.pick([
            "Reminders are on: if you leave a payment unfinished, I will remind you once. Turn them off with /remind off.",
            "Rappels activés : si vous laissez un paiement inachevé, je vous le rappellerai une fois. Désactivez-les avec /remind off.",
            "Erinnerungen sind an: Wenn Sie eine Zahlung nicht abschließen, erinnere ich Sie einmal daran. Ausschalten mit /remind off.",
            "یادآوری روشن است: اگر پرداختی را نیمه‌کاره رها کنید، یک بار به شما یادآوری می‌کنم. برای خاموش کردن: /remind off",
            "Напоминания включены: если вы не завершите оплату, я напомню один раз. Выключить: /remind off.",
        ])
        .to_owned()
    } else {
        lang.pick([
            "Reminders are off. Turn them on with /remind on.",
            "Rappels désactivés. Activez-les avec /remind on.",
            "Erinnerungen sind aus. Einschalten mit /remind on.",
            "یادآوری خاموش است. برای روشن کردن: /remind on",
            "Напоминания выключены. Включить: /remind on.",
        ])
        .to_owned()
    };
    if on && !farthing_app::settings::load(state.app(), mode, bot.merchant)?.reminders {
        text.push('\n');
        text.push_str(lang.pick([
            "(This shop does not send reminders at the moment.)",
            "(Cette boutique n'envoie pas de rappels pour le moment.)",
            "(Dieser Shop sendet derzeit keine Erinnerungen.)",
            "(این فروشگاه در حال حاضر یادآوری نمی‌فرستد.)",
            "(Этот магазин сейчас не отправляет напоминания.)",
        ]));
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------
// The buttons

#[allow(clippy::too_many_arguments)]
async fn top_up(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    client: &BotClient,
    chat: TelegramChatId,
    customer: CustomerId,
    lang: Lang,
    stars: &str,
) -> Result<Option<String>, AppError> {
    let merchant = bot.merchant;
    let Some(stars) = stars
        .parse::<u64>()
        .ok()
        .filter(|stars| top_up_presets(state, mode, merchant).is_ok_and(|p| p.contains(stars)))
    else {
        return Ok(None);
    };
    let description = lang.fill(
        lang.pick([
            "Top-up of your balance: {amount}",
            "Recharge de votre solde : {amount}",
            "Aufladung Ihres Guthabens: {amount}",
            "شارژ موجودی شما: {amount}",
            "Пополнение баланса: {amount}",
        ]),
        &[("amount", amount_text(Currency::XTR, stars))],
    );
    let request = farthing_app::invoices::InvoiceRequest {
        currency: Currency::XTR,
        amount: InvoiceAmount::Fixed(stars),
        description,
        payload: None,
        rails: Some(vec![Rail::Stars]),
        customer: Some(customer),
        expires_in_s: TOP_UP_EXPIRES_IN_S,
        metadata: vec![(
            farthing_app::settlement::TOP_UP_METADATA.0.to_owned(),
            farthing_app::settlement::TOP_UP_METADATA.1.to_owned(),
        )],
        subscription_period_s: None,
        return_url: None,
    };
    let invoice =
        farthing_app::invoices::create(state.app(), state.rails(), mode, merchant, request).await?;
    send_stars_invoice(client, chat, &invoice).await;
    Ok(None)
}

/// "Pay" under a reminder: sends the invoice again, if it is still open.
#[allow(clippy::too_many_arguments)]
async fn send_open_invoice(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    client: &BotClient,
    chat: TelegramChatId,
    customer: CustomerId,
    lang: Lang,
    invoice: &str,
) -> Result<Option<String>, AppError> {
    let Ok(id) = InvoiceId::parse(invoice) else {
        return Ok(None);
    };
    let merchant = bot.merchant;
    let found = state
        .store(mode)
        .read(move |reader| reader.invoice(id))?
        .filter(|invoice| {
            // Another customer's invoice is not shown; one for nobody in particular is.
            invoice.merchant == merchant && invoice.customer.is_none_or(|c| c == customer)
        });
    match found {
        Some(invoice)
            if invoice.status == InvoiceStatus::Open && invoice.expires_at_ns > state.now_ns() =>
        {
            send_stars_invoice(client, chat, &invoice).await;
            Ok(None)
        }
        _ => Ok(Some(
            lang.pick([
                "This invoice can no longer be paid.",
                "Cette facture ne peut plus être payée.",
                "Diese Rechnung kann nicht mehr bezahlt werden.",
                "این صورتحساب دیگر قابل پرداخت نیست.",
                "Этот счёт больше нельзя оплатить.",
            ])
            .to_owned(),
        )),
    }
}

async fn send_stars_invoice(client: &BotClient, chat: TelegramChatId, invoice: &Invoice) {
    let Some(params) = crate::rails::telegram::stars_link_params(invoice) else {
        return;
    };
    if let Err(error) = client.send_invoice(chat, &params).await {
        tracing::warn!(%error, invoice = %invoice.id.encode(), "sendInvoice failed");
    }
}

#[allow(clippy::too_many_arguments)]
async fn request_refund(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    client: &BotClient,
    chat: TelegramChatId,
    customer: CustomerId,
    user: &User,
    lang: Lang,
    invoice: &str,
) -> Result<Option<String>, AppError> {
    let Ok(invoice_id) = InvoiceId::parse(invoice) else {
        return Ok(None);
    };
    let merchant = bot.merchant;
    let made = farthing_app::refund_requests::create(
        state.app(),
        mode,
        merchant,
        customer,
        invoice_id,
        user.id,
        lang.code(),
    )
    .await?;
    let text = match made {
        None => lang.pick([
            "This payment cannot be refunded.",
            "Ce paiement ne peut pas être remboursé.",
            "Diese Zahlung kann nicht erstattet werden.",
            "این پرداخت قابل بازپرداخت نیست.",
            "Этот платёж нельзя вернуть.",
        ]),
        Some((_, false)) => lang.pick([
            "You have already asked for this refund; the shop will answer soon.",
            "Vous avez déjà demandé ce remboursement ; la boutique répondra bientôt.",
            "Sie haben diese Erstattung bereits angefragt; der Shop antwortet bald.",
            "شما قبلاً این بازپرداخت را درخواست کرده‌اید؛ فروشگاه به‌زودی پاسخ می‌دهد.",
            "Вы уже запросили этот возврат; магазин скоро ответит.",
        ]),
        Some((_, true)) => {
            lang.pick([
                "Your refund request was sent to the shop. You will get an answer here.",
                "Votre demande de remboursement a été envoyée à la boutique. Vous recevrez la réponse ici.",
                "Ihre Erstattungsanfrage wurde an den Shop gesendet. Sie erhalten die Antwort hier.",
                "درخواست بازپرداخت شما برای فروشگاه ارسال شد. پاسخ را همین‌جا دریافت می‌کنید.",
                "Ваш запрос на возврат отправлен магазину. Ответ придёт сюда.",
            ])
        }
    };
    say(client, chat, text, None).await;
    Ok(None)
}

async fn subscription_action(
    state: &AppState,
    mode: Mode,
    client: &BotClient,
    query: &CallbackQuery,
    customer: CustomerId,
    lang: Lang,
    action: &str,
) -> Result<Option<String>, AppError> {
    let Some((canceled, id)) = (match action.split_once(':') {
        Some(("cancel", id)) => Some((true, id)),
        Some(("resume", id)) => Some((false, id)),
        _ => None,
    }) else {
        return Ok(None);
    };
    let Ok(id) = farthing_app::subscriptions::parse_id(id) else {
        return Ok(None);
    };
    let Some(subscription) = state
        .store(mode)
        .read(move |reader| reader.subscription(id))?
        .filter(|s| s.customer == customer)
    else {
        return Ok(None);
    };
    let failed = lang.pick([
        "That did not work, please try again later.",
        "Cela n'a pas fonctionné, réessayez plus tard.",
        "Das hat nicht geklappt, bitte später erneut versuchen.",
        "انجام نشد، لطفاً بعداً دوباره تلاش کنید.",
        "Не получилось, попробуйте позже.",
    ]);
    match farthing_app::subscriptions::ask_rail(
        state.app(),
        state.rails(),
        mode,
        &subscription,
        canceled,
    )
    .await
    {
        Ok(()) => {}
        Err(error @ (AppError::Internal { .. } | AppError::Unavailable { .. })) => {
            return Err(error)
        }
        Err(error) => {
            tracing::info!(code = error.code(), %error, "a subscription change from the bot was refused");
            return Ok(Some(failed.to_owned()));
        }
    }
    state
        .app()
        .run(mode, move |tx| {
            farthing_app::subscriptions::record_canceled(tx, mode, id, canceled)
        })
        .await?;
    // The list again, with the new button.
    if let Some(message) = query.message.as_ref().filter(|m| m.date != 0) {
        if let Some(chat) = message.chat.chat_id() {
            let (text, keyboard) = subscriptions(state, mode, Some(customer), lang)?;
            if let Err(error) = client
                .edit_message_text(chat, message.message_id, &text, keyboard.as_ref())
                .await
            {
                tracing::debug!(%error, "the subscriptions message was not edited");
            }
        }
    }
    Ok(Some(
        if canceled {
            lang.pick([
                "Subscription canceled.",
                "Abonnement annulé.",
                "Abonnement gekündigt.",
                "اشتراک لغو شد.",
                "Подписка отменена.",
            ])
        } else {
            lang.pick([
                "Subscription resumed.",
                "Abonnement repris.",
                "Abonnement fortgesetzt.",
                "اشتراک ادامه یافت.",
                "Подписка возобновлена.",
            ])
        }
        .to_owned(),
    ))
}

// ---------------------------------------------------------------------------------------
// Told from elsewhere

/// Tells the customer in the bot what the merchant decided about their refund request:
/// `approved` carries the refunded amount, its currency and where it went (`balance` or
/// `rail`). Best effort: a failure is logged.
pub async fn tell_refund_decision(
    state: &AppState,
    mode: Mode,
    request: &RefundRequest,
    approved: Option<(u64, &str, &str)>,
) {
    let merchant = request.merchant;
    let bot = match state
        .store(mode)
        .read(move |reader| reader.telegram_bot(merchant))
    {
        Ok(Some(bot)) => bot,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "the refund decision was not told: no bot");
            return;
        }
    };
    let (Ok(client), Some(chat)) = (
        crate::bot::client(state, &bot),
        TelegramChatId::new(request.telegram_user_id),
    ) else {
        return;
    };
    let lang = Lang::from_code(Some(&request.lang));
    let text = match approved {
        Some((amount, currency, destination)) => {
            let amount = match Currency::parse(currency) {
                Ok(currency) => amount_text(currency, amount),
                Err(_) => format!("{amount} {currency}"),
            };
            let template = if destination == "rail" {
                lang.pick([
                    "Your refund was approved: {amount} is on its way back to you.",
                    "Votre remboursement a été accepté : {amount} vous est restitué.",
                    "Ihre Erstattung wurde genehmigt: {amount} wird Ihnen zurückgezahlt.",
                    "بازپرداخت شما تأیید شد: {amount} به شما بازگردانده می‌شود.",
                    "Ваш возврат одобрен: {amount} возвращается вам.",
                ])
            } else {
                lang.pick([
                    "Your refund was approved: {amount} was added to your balance (/balance).",
                    "Votre remboursement a été accepté : {amount} a été ajouté à votre solde (/balance).",
                    "Ihre Erstattung wurde genehmigt: {amount} wurde Ihrem Guthaben gutgeschrieben (/balance).",
                    "بازپرداخت شما تأیید شد: {amount} به موجودی شما اضافه شد (/balance).",
                    "Ваш возврат одобрен: {amount} зачислено на ваш баланс (/balance).",
                ])
            };
            lang.fill(template, &[("amount", &amount)])
        }
        None => lang
            .pick([
                "The shop declined your refund request. Questions? See /terms for contacts.",
                "La boutique a refusé votre demande de remboursement. Des questions ? Voir /terms pour les contacts.",
                "Der Shop hat Ihre Erstattungsanfrage abgelehnt. Fragen? Kontakte unter /terms.",
                "فروشگاه درخواست بازپرداخت شما را رد کرد. سؤالی دارید؟ برای تماس /terms را ببینید.",
                "Магазин отклонил ваш запрос на возврат. Вопросы? Контакты: /terms.",
            ])
            .to_owned(),
    };
    say(&client, chat, &text, None).await;
}

// ---------------------------------------------------------------------------------------
// Reminders

/// One round of payment reminders, in both modes: for every customer who opted in, each open,
/// unexpired invoice made for them (`customer`) or posted by the bot into their chat, at least
/// `telegram.reminder_after_s` old and not reminded of yet is recorded as reminded (in a store job, so it is never sent twice) and then
/// reminded of, with a "Pay" button — only when their merchant's `reminders` setting is on.
/// Returns how many reminders were sent.
pub async fn send_reminders(state: &AppState) -> usize {
    let mut sent = 0;
    for (mode, _) in state.stores() {
        match remind_mode(state, mode).await {
            Ok(count) => sent += count,
            Err(error) => {
                tracing::warn!(?mode, code = error.code(), %error, "a reminder round failed")
            }
        }
    }
    sent
}

async fn remind_mode(state: &AppState, mode: Mode) -> Result<usize, AppError> {
    let opt_ins = state
        .store(mode)
        .read(|reader| reader.reminder_opt_ins(REMINDER_CUSTOMERS_MAX))?;
    let now_ns = state.now_ns();
    let after_ns = state
        .config()
        .telegram
        .reminder_after_s
        .saturating_mul(1_000_000_000);
    let mut sent = 0;
    // (merchant, its bot if it reminds)
    let mut merchants: Vec<(farthing_core::MerchantId, Option<TelegramBot>)> = Vec::new();
    for opt_in in opt_ins {
        let merchant = opt_in.merchant;
        let bot = match merchants.iter().find(|(m, _)| *m == merchant) {
            Some((_, bot)) => bot.clone(),
            None => {
                let reminds = farthing_app::settings::load(state.app(), mode, merchant)?.reminders;
                let bot = if reminds {
                    state
                        .store(mode)
                        .read(move |reader| reader.telegram_bot(merchant))?
                } else {
                    None
                };
                merchants.push((merchant, bot.clone()));
                bot
            }
        };
        let Some(bot) = bot else { continue };
        let customer = opt_in.customer;
        let chat = opt_in.telegram_user_id;
        let invoices = state.store(mode).read(move |reader| {
            let mut due: Vec<Invoice> = Vec::new();
            let mine = reader.invoices_of_customer(customer, REMINDER_INVOICES_PER_CUSTOMER)?;
            let posted = reader.open_invoices_posted_to(chat, REMINDER_INVOICES_PER_CUSTOMER)?;
            for invoice in mine.into_iter().chain(posted) {
                if invoice.status == InvoiceStatus::Open
                    && !due.iter().any(|d| d.id == invoice.id)
                    && invoice.merchant == merchant
                    && invoice.expires_at_ns > now_ns
                    && invoice.created_at_ns.saturating_add(after_ns) <= now_ns
                    && !farthing_app::settlement::is_top_up(&invoice)
                    && !reader.reminder_sent(invoice.id)?
                {
                    due.push(invoice);
                }
            }
            Ok(due)
        })?;
        for invoice in invoices {
            let id = invoice.id;
            let claimed = state
                .store(mode)
                .run(move |tx| tx.claim_reminder(id, merchant, customer))
                .await??;
            if !claimed {
                continue;
            }
            let lang = Lang::from_code(Some(&opt_in.lang));
            if remind_of(state, &bot, opt_in.telegram_user_id, lang, &invoice).await {
                sent += 1;
            }
        }
    }
    Ok(sent)
}

async fn remind_of(
    state: &AppState,
    bot: &TelegramBot,
    user: i64,
    lang: Lang,
    invoice: &Invoice,
) -> bool {
    let (Ok(client), Some(chat)) = (crate::bot::client(state, bot), TelegramChatId::new(user))
    else {
        return false;
    };
    let amount = match invoice.amount {
        InvoiceAmount::Fixed(amount) => amount_text(invoice.currency, amount),
        InvoiceAmount::Open { .. } => invoice.currency.code().to_owned(),
    };
    let mut text = lang.fill(
        lang.pick([
            "You started a payment of {amount} and did not finish it.",
            "Vous avez commencé un paiement de {amount} sans le terminer.",
            "Sie haben eine Zahlung über {amount} begonnen und nicht abgeschlossen.",
            "شما پرداختی به مبلغ {amount} را شروع کردید و تمام نکردید.",
            "Вы начали оплату на {amount} и не завершили её.",
        ]),
        &[("amount", &amount)],
    );
    if !invoice.description.is_empty() {
        text.push_str(&format!("\n{}", cut(&invoice.description, 200)));
    }
    text.push('\n');
    text.push_str(lang.pick([
        "This is the only reminder. /remind off stops them.",
        "C'est le seul rappel. /remind off les désactive.",
        "Dies ist die einzige Erinnerung. /remind off schaltet sie ab.",
        "این تنها یادآوری است. با /remind off خاموش می‌شود.",
        "Это единственное напоминание. /remind off отключает их.",
    ]));
    let keyboard = crate::rails::telegram::stars_link_params(invoice).map(|_| {
        json!({"inline_keyboard": [[{
            "text": lang.pick(["Pay", "Payer", "Bezahlen", "پرداخت", "Оплатить"]),
            "callback_data": format!("{CALLBACK_PREFIX}pay:{}", invoice.id.encode()),
        }]]})
    });
    match client.send_message(chat, &text, keyboard.as_ref()).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, invoice = %invoice.id.encode(), "a payment reminder was not sent (it is not retried)");
            false
        }
    }
}

/// Runs reminder rounds until shutdown: every quarter of `telegram.reminder_after_s`, between
/// 5 s and one minute.
pub async fn run_reminders(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let every_s = (state.config().telegram.reminder_after_s / 4).clamp(5, 60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every_s)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        send_reminders(&state).await;
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// The merchant's customer `tg:<user id>` (created if the first-contact step has not yet).
async fn customer_of(
    state: &AppState,
    mode: Mode,
    bot: &TelegramBot,
    user: &User,
) -> Result<Option<CustomerId>, AppError> {
    let Some(user_id) = user.user_id().filter(|_| !user.is_bot) else {
        return Ok(None);
    };
    let merchant = bot.merchant;
    let external = format!("tg:{}", user_id.get());
    if let Some(found) = state
        .store(mode)
        .read(move |reader| reader.customer_by_external_id(merchant, &external))?
    {
        return Ok(Some(found.id));
    }
    let customer = state
        .app()
        .run(mode, move |tx| {
            farthing_app::customers::telegram(tx, merchant, mode, user_id.get())
        })
        .await?;
    Ok(Some(customer))
}

/// Sends `text`; a failure is logged (the update is still taken).
async fn say(client: &BotClient, chat: TelegramChatId, text: &str, keyboard: Option<&Value>) {
    if text.is_empty() {
        return;
    }
    if let Err(error) = client.send_message(chat, text, keyboard).await {
        tracing::warn!(%error, "a bot message was not sent");
    }
}

/// `minor` units of `currency` as a decimal with the code: `50 XTR`, `1.05 EUR`.
fn amount_text(currency: Currency, minor: u64) -> String {
    match farthing_core::Money::new(minor, currency) {
        Ok(money) => money.to_string(),
        Err(_) => format!("{minor} {}", currency.code()),
    }
}

/// Cuts `text` to at most `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A Unix time in nanoseconds as `2026-11-21` (UTC).
fn utc_date(unix_ns: u64) -> String {
    let days = unix_ns / 1_000_000_000 / 86_400;
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
    format!("{year}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_amounts_read_well() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_000_000 * 1_000_000_000), "2026-11-18");
        assert_eq!(amount_text(Currency::XTR, 50), "50 XTR");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }

    #[test]
    fn terms_fall_back_to_a_localized_not_set_text() {
        let empty = MerchantSettings::default();
        assert!(terms(&empty, Lang::Fa).contains("فروشگاه"));
        let set = MerchantSettings {
            contacts: "@help".to_owned(),
            ..MerchantSettings::default()
        };
        assert_eq!(terms(&set, Lang::De), "Kontakt\n@help");
    }
}
