//! The Stars reconciliation (SPEC RL2, issue 5 item 2): every connected bot's
//! `getStarTransactions` is read on a timer (`telegram.reconcile_interval_s`, and once at start)
//! so that a payment Telegram made but farthing never heard of (the server was down, a webhook
//! was lost, an update was dropped) is still settled, and so that Stars leaving the bot outside
//! farthing are recorded.
//!
//! - An incoming `invoice_payment` from a user that is not in `rail_payments` is settled
//!   through [`crate::settlement::settle_payment`] exactly as the webhook's
//!   `successful_payment` is: rail `stars`, `external_id` = the transaction's `id` (which the
//!   Bot API documents as the `telegram_payment_charge_id` of the payment), the invoice named by
//!   `invoice_payload` when it parses as `inv_…`, payer `tg:<user id>`; a subscription payment
//!   goes through `telegram::subscriptions` as the webhook's does. A payment seen by both the
//!   webhook and the reconciliation is therefore booked once (`settle_payment` is idempotent by
//!   `(rail, external_id)`).
//! - A withdrawal to Fragment is recorded in `telegram_star_outflows` with its state, and the
//!   event `stars.withdrawal` is written whenever the recorded state changes. When Telegram
//!   reports it `succeeded`, it is booked as a payout: merchant XTR balance → `external/stars`
//!   (the rail's outside world, where Stars refunded through Telegram go too), for as much as
//!   the merchant's available balance allows; what is left is recorded as `shortfall` (Stars the
//!   ledger never held for the merchant: payments made outside farthing, or Stars that back
//!   customer balances). A pending or failed withdrawal books nothing (a failed one returns the
//!   Stars to the bot).
//! - An outgoing transaction to a user is a refund (Telegram reuses the payment's id). One that
//!   farthing did not make (the payment's invoice is not refunded in farthing) is recorded and
//!   logged, not booked: which invoice state it should change is the merchant's decision.
//!
//! Paging: the Bot API documents the listing as chronological (oldest first), which is what
//! `telegram-double` serves; Telegram's servers have been seen to list newest first. The order
//! is read from the first page's dates and both are handled: newest first, pages are read from
//! offset 0 back until one reaches a transaction older than the stored watermark; oldest first,
//! reading resumes at the stored offset. The watermark never passes a withdrawal that is still
//! pending, so its outcome is read again, and on a bot's first reconciliation it starts at the
//! time the bot was connected (transactions before farthing knew the bot are not farthing's).
//!
//! Architecture invariant: money moves only inside store jobs, through `settle_payment` and
//! ledger groups; everything here is idempotent, so two runs over the same transactions (or a
//! run racing the webhook) change nothing twice.

use std::time::Duration;

use farthing_core::{Currency, InvoiceId, PublicId, Rail, TransferId};
use farthing_store::{StarOutflow, StarWatermark, TelegramBot, Tx};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use farthing_app::outbox::emit;
use farthing_app::settlement::IncomingPayment;
use farthing_app::subscriptions::{settle_stars_payment, SubscriptionPayment};
use farthing_app::{wire as render, App, AppError, Mode};
use farthing_botapi::{BotClient, RevenueWithdrawalState, StarTransaction, TransactionPartner};

use super::TelegramRails;

/// The event written when a Fragment withdrawal is first seen and whenever its state changes.
pub const WITHDRAWAL_EVENT: &str = "stars.withdrawal";

/// Transactions asked for per `getStarTransactions` call (the Bot API's maximum).
pub const PAGE_LIMIT: u32 = 100;

/// Most pages read in one run of one bot; an oldest-first listing continues at the next run.
const MAX_PAGES_PER_RUN: u32 = 500;

/// How far before the bot's connection time a first reconciliation looks (clock skew).
const FIRST_RUN_MARGIN_S: i64 = 60;

/// Timeout of one `getStarTransactions` call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What one reconciliation of one bot did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// `getStarTransactions` calls made.
    pub pages: u32,
    /// Transactions in those pages.
    pub transactions_read: usize,
    /// Whether the listing read newest first.
    pub newest_first: bool,
    /// Payments settled now (farthing had not heard of them).
    pub settled: usize,
    /// Payments that were already settled (by the webhook, polling or an earlier run).
    pub already_settled: usize,
    /// Payments `settle_payment` refused (logged: money reported by Telegram that is not booked).
    pub refused: usize,
    /// Withdrawals recorded now or whose state changed.
    pub withdrawals: usize,
    /// Refunds made outside farthing recorded now.
    pub external_refunds: usize,
}

/// Runs until `shutdown` fires: reconciles every connected bot, in both modes, at start and
/// then every `telegram.reconcile_interval_s`.
pub async fn run(rails: TelegramRails, app: App, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_secs(rails.config().reconcile_interval_s.max(1));
    loop {
        tokio::select! {
            _ = reconcile_all(&rails, &app) => {}
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass over every connected bot in both modes; failures are logged and recorded with the
/// bot's watermark (`GET /v1/rails` shows them).
pub async fn reconcile_all(rails: &TelegramRails, app: &App) {
    for mode in [Mode::Live, Mode::Test] {
        let bots = match app.read(mode, |reader| reader.telegram_bots()) {
            Ok(bots) => bots,
            Err(error) => {
                tracing::error!(%error, ?mode, "cannot list the Telegram bots to reconcile");
                continue;
            }
        };
        for bot in bots {
            match reconcile_bot(rails, app, mode, &bot).await {
                Ok(done) if done.settled > 0 || done.withdrawals > 0 => {
                    tracing::info!(bot_id = bot.bot_id, ?mode, ?done, "Stars reconciled");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(bot_id = bot.bot_id, ?mode, %error, "Stars reconciliation failed");
                }
            }
        }
    }
}

/// Reconciles one bot of `mode`'s store: reads its Star transactions back to the stored
/// watermark, settles missed payments, records withdrawals and outside refunds, and stores the
/// new watermark (or, on failure, the error, keeping the old watermark).
pub async fn reconcile_bot(
    rails: &TelegramRails,
    app: &App,
    mode: Mode,
    bot: &TelegramBot,
) -> Result<Reconciled, AppError> {
    let (merchant, bot_id) = (bot.merchant, bot.bot_id);
    let stored = app.read(mode, move |reader| reader.star_watermark(merchant, bot_id))?;
    let floor = stored.as_ref().map_or_else(
        || {
            i64::try_from(render::unix_s(bot.created_at_ns)).unwrap_or(i64::MAX)
                - FIRST_RUN_MARGIN_S
        },
        |mark| mark.watermark_date_s,
    );
    let resume = stored.as_ref().map_or(0, |mark| mark.resume_offset);
    let result = read_and_settle(rails, app, mode, bot, floor, resume).await;
    let (mark, answer) = match result {
        Ok((done, watermark_date_s, resume_offset)) => (
            StarWatermark {
                merchant,
                bot_id,
                watermark_date_s,
                resume_offset,
                reconciled_at_ns: 0,
                last_error: None,
            },
            Ok(done),
        ),
        Err(error) => (
            StarWatermark {
                merchant,
                bot_id,
                watermark_date_s: floor,
                resume_offset: resume,
                reconciled_at_ns: 0,
                last_error: Some(error.to_string()),
            },
            Err(error),
        ),
    };
    app.run(mode, move |tx| -> Result<(), AppError> {
        let mark = StarWatermark {
            reconciled_at_ns: tx.now_ns(),
            ..mark
        };
        Ok(tx.set_star_watermark(&mark)?)
    })
    .await?;
    answer
}

/// The order of a listing, from its first page.
fn newest_first(page: &[StarTransaction]) -> bool {
    match (page.first(), page.last()) {
        (Some(first), Some(last)) => first.date > last.date,
        _ => false,
    }
}

/// Where the reading got to: the new watermark date and resume offset.
struct Progress {
    newest_date_s: Option<i64>,
    /// The oldest withdrawal still pending: (its index in the listing, its date).
    oldest_pending: Option<(u64, i64)>,
}

impl Progress {
    fn saw(&mut self, index: u64, transaction: &StarTransaction) {
        self.newest_date_s = Some(
            self.newest_date_s
                .map_or(transaction.date, |d| d.max(transaction.date)),
        );
        let pending = matches!(
            &transaction.receiver,
            Some(TransactionPartner::Fragment {
                withdrawal_state: Some(RevenueWithdrawalState::Pending)
            })
        );
        if pending {
            let oldest = match self.oldest_pending {
                Some((i, d)) if d <= transaction.date => (i.min(index), d),
                Some((i, _)) => (i.min(index), transaction.date),
                None => (index, transaction.date),
            };
            self.oldest_pending = Some(oldest);
        }
    }
}

async fn read_and_settle(
    rails: &TelegramRails,
    app: &App,
    mode: Mode,
    bot: &TelegramBot,
    floor: i64,
    resume: u64,
) -> Result<(Reconciled, i64, u64), AppError> {
    let client = rails.client(bot)?.with_timeout(CALL_TIMEOUT);
    let mut done = Reconciled::default();
    let mut progress = Progress {
        newest_date_s: None,
        oldest_pending: None,
    };
    let first = fetch(&client, 0, &mut done).await?;
    done.newest_first = newest_first(&first);
    if done.newest_first {
        // Newest first: from offset 0 back until a transaction older than the watermark. New
        // transactions arriving meanwhile push the rest down, so some are read twice, none
        // skipped.
        let (mut offset, mut page, mut complete) = (0u64, first, false);
        loop {
            let len = page.len();
            let reached = page.last().is_none_or(|t| t.date < floor);
            for (i, transaction) in page.iter().enumerate() {
                progress.saw(offset + i as u64, transaction);
            }
            handle_page(app, mode, bot, page, floor, &mut done).await?;
            if len < PAGE_LIMIT as usize || reached {
                complete = true;
                break;
            }
            if done.pages >= MAX_PAGES_PER_RUN {
                break;
            }
            offset += len as u64;
            page = fetch(&client, offset, &mut done).await?;
        }
        // An incomplete run leaves the watermark where it was: the unread part is older.
        let watermark = match (complete, progress.newest_date_s) {
            (true, Some(newest)) => newest.max(floor),
            _ => floor,
        };
        let watermark = progress
            .oldest_pending
            .map_or(watermark, |(_, date)| watermark.min(date));
        Ok((done, watermark, 0))
    } else {
        // Oldest first (as documented): new transactions are appended; resume where the last
        // run stopped.
        let mut offset = resume;
        let mut page = if offset == 0 {
            first
        } else if first.len() < PAGE_LIMIT as usize {
            // The first page was the whole listing.
            first
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .collect()
        } else {
            fetch(&client, offset, &mut done).await?
        };
        loop {
            let len = page.len();
            for (i, transaction) in page.iter().enumerate() {
                progress.saw(offset + i as u64, transaction);
            }
            handle_page(app, mode, bot, page, floor, &mut done).await?;
            offset += len as u64;
            if len < PAGE_LIMIT as usize || done.pages >= MAX_PAGES_PER_RUN {
                break;
            }
            page = fetch(&client, offset, &mut done).await?;
        }
        let watermark = progress.newest_date_s.map_or(floor, |d| d.max(floor));
        let (watermark, resume) = match progress.oldest_pending {
            Some((index, date)) => (watermark.min(date), offset.min(index)),
            None => (watermark, offset),
        };
        Ok((done, watermark, resume))
    }
}

async fn fetch(
    client: &BotClient,
    offset: u64,
    done: &mut Reconciled,
) -> Result<Vec<StarTransaction>, AppError> {
    let offset = u32::try_from(offset).map_err(|_| {
        AppError::internal("the Star transaction listing is longer than the Bot API can page")
    })?;
    done.pages += 1;
    let page = client
        .get_star_transactions(offset, PAGE_LIMIT)
        .await
        .map_err(|error| {
            AppError::rail_failed(
                "telegram_unavailable",
                format!("getStarTransactions failed: {error}"),
            )
        })?;
    done.transactions_read += page.transactions.len();
    Ok(page.transactions)
}

/// What one page's store job did.
#[derive(Default)]
struct PageOutcome {
    settled: usize,
    /// The Telegram dates of the payments settled now (their settlement lag).
    settled_dates: Vec<i64>,
    already_settled: usize,
    refused: usize,
    withdrawals: usize,
    external_refunds: usize,
}

/// Handles the transactions of one page dated at or after `floor`, in one store job.
async fn handle_page(
    app: &App,
    mode: Mode,
    bot: &TelegramBot,
    page: Vec<StarTransaction>,
    floor: i64,
    done: &mut Reconciled,
) -> Result<(), AppError> {
    let page: Vec<StarTransaction> = page.into_iter().filter(|t| t.date >= floor).collect();
    if page.is_empty() {
        return Ok(());
    }
    let bot = bot.clone();
    let base = app.base_url().to_owned();
    let outcome = app
        .run(mode, move |tx| -> Result<PageOutcome, AppError> {
            let mut outcome = PageOutcome::default();
            for transaction in &page {
                handle(tx, mode, &bot, transaction, &base, &mut outcome)?;
            }
            Ok(outcome)
        })
        .await?;
    for date in &outcome.settled_dates {
        if let Ok(date) = u64::try_from(*date) {
            app.observe_settlement(Rail::Stars, date);
        }
    }
    done.settled += outcome.settled;
    done.already_settled += outcome.already_settled;
    done.refused += outcome.refused;
    done.withdrawals += outcome.withdrawals;
    done.external_refunds += outcome.external_refunds;
    Ok(())
}

fn handle(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    bot: &TelegramBot,
    transaction: &StarTransaction,
    base: &str,
    outcome: &mut PageOutcome,
) -> Result<(), AppError> {
    match (&transaction.source, &transaction.receiver) {
        (
            Some(TransactionPartner::User {
                transaction_type,
                user,
                invoice_payload,
                subscription_period,
            }),
            _,
        ) if transaction_type == "invoice_payment" => payment(
            tx,
            mode,
            bot,
            transaction,
            user.id,
            invoice_payload.as_deref(),
            *subscription_period,
            base,
            outcome,
        ),
        (_, Some(TransactionPartner::Fragment { withdrawal_state })) => withdrawal(
            tx,
            mode,
            bot,
            transaction,
            withdrawal_state.as_ref(),
            outcome,
        ),
        (_, Some(TransactionPartner::User { user, .. })) => {
            refund(tx, bot, transaction, user.id, outcome)
        }
        // Paid media, gifts, ads, a failed withdrawal coming back, …: not farthing's business.
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn payment(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    bot: &TelegramBot,
    transaction: &StarTransaction,
    user_id: i64,
    invoice_payload: Option<&str>,
    subscription_period_s: Option<i64>,
    base: &str,
    outcome: &mut PageOutcome,
) -> Result<(), AppError> {
    if tx
        .rail_payment(bot.merchant, Rail::Stars, &transaction.id)?
        .is_some()
    {
        outcome.already_settled += 1;
        return Ok(());
    }
    let invoice = invoice_payload.and_then(|payload| InvoiceId::parse(payload).ok());
    if let Some(id) = invoice {
        // A bot connected by several merchants lists every merchant's payments: leave another
        // merchant's invoice to that merchant's reconciliation.
        if tx
            .invoice(id)?
            .is_some_and(|found| found.merchant != bot.merchant)
        {
            return Ok(());
        }
    }
    let Ok(amount_minor) = u64::try_from(transaction.amount) else {
        tracing::warn!(bot_id = bot.bot_id, "a Star payment with a negative amount");
        return Ok(());
    };
    let incoming = IncomingPayment {
        merchant: bot.merchant,
        rail: Rail::Stars,
        external_id: transaction.id.clone(),
        invoice,
        payer: None,
        payer_external_id: Some(format!("tg:{user_id}")),
        currency: Currency::XTR,
        amount_minor,
        payload: Some(json!({
            "bot_id": bot.bot_id,
            // The payer, for refundStarPayment (the customer may not exist yet).
            "user_id": user_id,
            "telegram_payment_charge_id": transaction.id,
            "invoice_payload": invoice_payload,
            "found_by": "reconciliation",
        })),
    };
    // A subscription payment (first or renewal) goes where the webhook sends one, so that a
    // missed renewal renews. The listing has no `subscription_expiration_date`: the period
    // after the payment's date is what Telegram charged for.
    let subscription = subscription_period_s
        .filter(|period| *period > 0)
        .map(|period| SubscriptionPayment {
            telegram_user_id: user_id,
            expires_at_s: u64::try_from(transaction.date.saturating_add(period)).unwrap_or(0),
            // Not in the listing; the stored subscription decides first or renewal.
            first: false,
        });
    match settle_stars_payment(tx, mode, incoming, subscription, base) {
        Ok(settled) if settled.duplicate => outcome.already_settled += 1,
        Ok(_) => {
            tracing::warn!(bot_id = bot.bot_id, charge = %transaction.id, "a Stars payment no update reported was settled by reconciliation");
            outcome.settled += 1;
            outcome.settled_dates.push(transaction.date);
        }
        Err(error) if error.is_refusal() => {
            tracing::error!(bot_id = bot.bot_id, charge = %transaction.id, code = error.code(), message = %error, "a Stars payment found by reconciliation was refused: money reported by Telegram is NOT booked; investigate");
            outcome.refused += 1;
        }
        Err(error) => return Err(error),
    }
    Ok(())
}

/// The id of the payout transfer of a withdrawal: SHA-256 of a domain tag, the bot and
/// Telegram's transaction id, truncated to 128 bits (never 0).
pub fn withdrawal_transfer_id(bot_id: u64, transaction_id: &str) -> TransferId {
    let digest = Sha256::new()
        .chain_update(b"farthing/stars-withdrawal/v1\0")
        .chain_update(bot_id.to_be_bytes())
        .chain_update(transaction_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TransferId(u128::from_be_bytes(bytes).max(1))
}

fn withdrawal(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    bot: &TelegramBot,
    transaction: &StarTransaction,
    withdrawal_state: Option<&RevenueWithdrawalState>,
    outcome: &mut PageOutcome,
) -> Result<(), AppError> {
    let (state_name, url) = match withdrawal_state {
        Some(RevenueWithdrawalState::Pending) => ("pending", None),
        Some(RevenueWithdrawalState::Succeeded { url, .. }) => ("succeeded", Some(url.clone())),
        Some(RevenueWithdrawalState::Failed) => ("failed", None),
        Some(RevenueWithdrawalState::Unknown) | None => ("unknown", None),
    };
    let existing = tx.star_outflow(bot.bot_id, "withdrawal", &transaction.id)?;
    if existing
        .as_ref()
        .is_some_and(|row| row.state == state_name && row.url == url)
    {
        return Ok(());
    }
    // Telegram lists the withdrawn Stars as a positive amount; be lenient about the sign.
    let amount = transaction.amount.unsigned_abs();
    let nanostar_amount = transaction.nanostar_amount.unwrap_or(0).unsigned_abs();
    let now = tx.now_ns();
    let (mut booked_minor, mut shortfall_minor) = existing
        .as_ref()
        .map_or((0, 0), |row| (row.booked_minor, row.shortfall_minor));
    let never_booked = booked_minor == 0 && shortfall_minor == 0;
    if state_name == "succeeded" && never_booked && amount > 0 {
        let withdrawn = farthing_app::payouts::book_withdrawal(
            tx,
            bot.merchant,
            Rail::Stars,
            Currency::XTR,
            withdrawal_transfer_id(bot.bot_id, &transaction.id),
            amount,
        )?;
        booked_minor = withdrawn.booked_minor;
        shortfall_minor = withdrawn.shortfall_minor;
        if shortfall_minor > 0 {
            tracing::warn!(bot_id = bot.bot_id, withdrawal = %transaction.id, shortfall_minor, "a Fragment withdrawal exceeds the merchant's XTR balance; the rest is recorded as a shortfall");
        }
    }
    let row = StarOutflow {
        bot_id: bot.bot_id,
        kind: "withdrawal".to_owned(),
        transaction_id: transaction.id.clone(),
        merchant: bot.merchant,
        amount,
        nanostar_amount,
        date_s: transaction.date,
        state: state_name.to_owned(),
        url,
        user_id: None,
        booked_minor,
        shortfall_minor,
        recorded_at_ns: existing.as_ref().map_or(now, |row| row.recorded_at_ns),
        updated_at_ns: now,
    };
    tx.upsert_star_outflow(&row)?;
    emit(
        tx,
        bot.merchant,
        mode,
        WITHDRAWAL_EVENT,
        &render_withdrawal(&row, mode),
    )?;
    outcome.withdrawals += 1;
    Ok(())
}

fn refund(
    tx: &mut Tx<'_, '_>,
    bot: &TelegramBot,
    transaction: &StarTransaction,
    user_id: i64,
    outcome: &mut PageOutcome,
) -> Result<(), AppError> {
    if tx
        .star_outflow(bot.bot_id, "refund", &transaction.id)?
        .is_some()
    {
        return Ok(());
    }
    // Refunded by farthing: the payment's invoice is refunded (or partly) in farthing.
    let invoice = tx
        .rail_payment(bot.merchant, Rail::Stars, &transaction.id)?
        .and_then(|payment| payment.invoice);
    if let Some(invoice) = invoice {
        use farthing_core::invoice::InvoiceStatus;
        let refunded = tx.invoice(invoice)?.is_some_and(|found| {
            matches!(
                found.status,
                InvoiceStatus::Refunded | InvoiceStatus::PartiallyRefunded
            )
        });
        if refunded {
            return Ok(());
        }
    }
    tracing::warn!(bot_id = bot.bot_id, charge = %transaction.id, user_id, "a Stars refund made outside farthing; recorded, not booked");
    let now = tx.now_ns();
    tx.upsert_star_outflow(&StarOutflow {
        bot_id: bot.bot_id,
        kind: "refund".to_owned(),
        transaction_id: transaction.id.clone(),
        merchant: bot.merchant,
        amount: transaction.amount.unsigned_abs(),
        nanostar_amount: transaction.nanostar_amount.unwrap_or(0).unsigned_abs(),
        date_s: transaction.date,
        state: "refunded".to_owned(),
        url: None,
        user_id: u64::try_from(user_id).ok(),
        booked_minor: 0,
        shortfall_minor: 0,
        recorded_at_ns: now,
        updated_at_ns: now,
    })?;
    outcome.external_refunds += 1;
    Ok(())
}

/// The wire form of a Fragment withdrawal: the object of `stars.withdrawal`.
pub fn render_withdrawal(row: &StarOutflow, mode: Mode) -> Value {
    json!({
        "object": "stars_withdrawal",
        "livemode": mode.is_live(),
        "id": row.transaction_id,
        "bot_id": row.bot_id,
        "currency": "XTR",
        "amount": row.amount,
        "state": row.state,
        "url": row.url,
        "date": row.date_s,
        "amount_booked": row.booked_minor,
        "shortfall": row.shortfall_minor,
        "created": render::unix_s(row.recorded_at_ns),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transaction(date: i64) -> StarTransaction {
        StarTransaction {
            id: format!("t{date}"),
            amount: 1,
            nanostar_amount: None,
            date,
            source: None,
            receiver: None,
        }
    }

    #[test]
    fn the_order_is_read_from_the_dates() {
        assert!(newest_first(&[transaction(3), transaction(1)]));
        assert!(!newest_first(&[transaction(1), transaction(3)]));
        assert!(!newest_first(&[transaction(1)]));
        assert!(!newest_first(&[]));
    }

    #[test]
    fn withdrawal_transfer_ids_are_stable_and_distinct() {
        let a = withdrawal_transfer_id(1, "w");
        assert_eq!(a, withdrawal_transfer_id(1, "w"));
        assert_ne!(a, withdrawal_transfer_id(2, "w"));
        assert_ne!(a, withdrawal_transfer_id(1, "x"));
        assert!(!a.is_zero());
    }

    #[test]
    fn pending_withdrawals_hold_the_watermark() {
        let mut progress = Progress {
            newest_date_s: None,
            oldest_pending: None,
        };
        let mut pending = transaction(5);
        pending.receiver = Some(TransactionPartner::Fragment {
            withdrawal_state: Some(RevenueWithdrawalState::Pending),
        });
        progress.saw(0, &transaction(3));
        progress.saw(1, &pending);
        progress.saw(2, &transaction(9));
        assert_eq!(progress.newest_date_s, Some(9));
        assert_eq!(progress.oldest_pending, Some((1, 5)));
    }
}
