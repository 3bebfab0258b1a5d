//! Invoices (SPEC I1–I4): what a merchant asks to be paid, and the rules of its life.
//!
//! `open` → `paid` | `expired` | `canceled`; after `paid`: `partially_refunded` → `refunded`.
//! Every transition is a method here that checks it is allowed and returns the event to emit;
//! storage and HTTP only call these. No I/O, no clock: time comes in as `now_ns`.

use std::fmt;

use crate::money::{Currency, MAX_AMOUNT_MINOR};
use crate::{CustomerId, InvoiceId, MerchantId, Rail, TransferId};

/// Default life of an invoice: 15 minutes (SPEC I1).
pub const DEFAULT_EXPIRES_IN_S: u64 = 15 * 60;
/// Shortest life of an invoice.
pub const MIN_EXPIRES_IN_S: u64 = 5;
/// Longest life of an invoice: 30 days.
pub const MAX_EXPIRES_IN_S: u64 = 30 * 24 * 3600;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Longest merchant payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Most amount presets of an amountless invoice.
pub const MAX_PRESETS: usize = 12;

const NS_PER_S: u64 = 1_000_000_000;

/// Where an invoice stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvoiceStatus {
    /// Waiting for payment.
    Open,
    /// Paid in full.
    Paid,
    /// Not paid before its expiry.
    Expired,
    /// Canceled by the merchant.
    Canceled,
    /// Paid, then partly refunded.
    PartiallyRefunded,
    /// Paid, then refunded in full.
    Refunded,
}

impl InvoiceStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Expired => "expired",
            InvoiceStatus::Canceled => "canceled",
            InvoiceStatus::PartiallyRefunded => "partially_refunded",
            InvoiceStatus::Refunded => "refunded",
        }
    }

    /// Reads the stored name.
    pub fn parse(text: &str) -> Option<InvoiceStatus> {
        [
            InvoiceStatus::Open,
            InvoiceStatus::Paid,
            InvoiceStatus::Expired,
            InvoiceStatus::Canceled,
            InvoiceStatus::PartiallyRefunded,
            InvoiceStatus::Refunded,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

impl fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much an invoice asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvoiceAmount {
    /// A fixed amount in minor units.
    Fixed(u64),
    /// The payer chooses (tips, donations, top-ups — SPEC I4), within `min..=max`, with
    /// suggested presets.
    Open {
        /// Suggested amounts, in minor units.
        presets: Vec<u64>,
        /// Smallest accepted amount (at least 1).
        min_minor: u64,
        /// Largest accepted amount.
        max_minor: u64,
    },
}

/// How an invoice was paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvoicePayment {
    /// Amount paid, in minor units of the invoice currency.
    pub amount_minor: u64,
    /// The rail that paid it.
    pub rail: Rail,
    /// Who paid, when known.
    pub customer: Option<CustomerId>,
    /// The ledger transfer that booked it.
    pub transfer_id: TransferId,
    /// When (ledger time).
    pub paid_at_ns: u64,
}

/// An invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    /// Its id.
    pub id: InvoiceId,
    /// Who is paid.
    pub merchant: MerchantId,
    /// Who is expected to pay, if known.
    pub customer: Option<CustomerId>,
    /// Currency of the amount.
    pub currency: Currency,
    /// The amount asked.
    pub amount: InvoiceAmount,
    /// Shown to the payer.
    pub description: String,
    /// Opaque merchant data, returned with every event.
    pub payload: Option<String>,
    /// Rails the payer may use.
    pub rails: Vec<Rail>,
    /// Merchant key/value data.
    pub metadata: Vec<(String, String)>,
    /// Where it stands.
    pub status: InvoiceStatus,
    /// The payment, once paid.
    pub payment: Option<InvoicePayment>,
    /// Refunded so far, minor units.
    pub amount_refunded_minor: u64,
    /// Creation time.
    pub created_at_ns: u64,
    /// Expiry time.
    pub expires_at_ns: u64,
    /// When it was canceled or expired.
    pub closed_at_ns: Option<u64>,
    /// How to pay it on each rail that made instructions for it (SPEC I1: the Stars invoice
    /// link, the BOLT11, the TON transfer…), keyed by rail; each value is a JSON object made by
    /// that rail's adapter after the invoice was stored. The domain does not read them.
    pub instructions: std::collections::BTreeMap<Rail, String>,
    /// For a Telegram Stars subscription invoice: the period, seconds (Telegram allows
    /// 2 592 000, 30 days); each renewal is paid as an invoice of its own (SPEC PR4).
    pub subscription_period_s: Option<u32>,
    /// Where the checkout sends the payer back to the merchant once the invoice is settled
    /// (`http(s)://`), if the merchant gave one.
    pub return_url: Option<String>,
}

/// Why an invoice operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// A fixed amount of zero or above the maximum.
    #[error("amount must be between 1 and {MAX_AMOUNT_MINOR} minor units")]
    AmountOutOfRange,
    /// Amountless bounds that make no sense.
    #[error("amount_min must be at least 1 and at most amount_max")]
    BadBounds,
    /// A preset outside the bounds, or too many.
    #[error("amount_presets must hold at most {MAX_PRESETS} amounts, each within amount_min..=amount_max")]
    BadPresets,
    /// `expires_in` out of range.
    #[error("expires_in must be between {MIN_EXPIRES_IN_S} and {MAX_EXPIRES_IN_S} seconds")]
    BadExpiry,
    /// Description too long.
    #[error("description must be at most {MAX_DESCRIPTION_CHARS} characters")]
    DescriptionTooLong,
    /// Payload too long.
    #[error("payload must be at most {MAX_PAYLOAD_BYTES} bytes")]
    PayloadTooLong,
    /// No rail to pay with.
    #[error("rails must name at least one rail the merchant accepts")]
    NoRails,
    /// The invoice is not open.
    #[error("invoice is {0}, not open")]
    NotOpen(InvoiceStatus),
    /// The invoice's time ran out (even if the scheduler has not marked it yet).
    #[error("invoice has expired")]
    Expired,
    /// An amountless invoice needs an amount from the payer.
    #[error(
        "this invoice lets the payer choose: give an amount between {min_minor} and {max_minor}"
    )]
    AmountRequired {
        /// Smallest accepted.
        min_minor: u64,
        /// Largest accepted.
        max_minor: u64,
    },
    /// A fixed invoice got a different amount.
    #[error("this invoice is for exactly {expected_minor} minor units")]
    AmountMismatch {
        /// What the invoice asks.
        expected_minor: u64,
    },
    /// The invoice does not accept this rail.
    #[error("this invoice does not accept the {0} rail")]
    RailNotAccepted(Rail),
    /// Refund of an invoice that was not paid.
    #[error("only a paid invoice can be refunded; this one is {0}")]
    NotPaid(InvoiceStatus),
    /// Refund of more than is left.
    #[error("refund exceeds what is left to refund ({refundable_minor} minor units)")]
    RefundTooLarge {
        /// What may still be refunded.
        refundable_minor: u64,
    },
}

/// What a merchant asks for when creating an invoice, before checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInvoice {
    /// Currency.
    pub currency: Currency,
    /// The amount asked.
    pub amount: InvoiceAmount,
    /// Shown to the payer.
    pub description: String,
    /// Opaque merchant data.
    pub payload: Option<String>,
    /// Rails accepted.
    pub rails: Vec<Rail>,
    /// Expected payer.
    pub customer: Option<CustomerId>,
    /// Seconds until expiry.
    pub expires_in_s: u64,
    /// Merchant key/value data.
    pub metadata: Vec<(String, String)>,
}

impl NewInvoice {
    /// Checks the request and builds the open invoice.
    pub fn into_invoice(
        self,
        id: InvoiceId,
        merchant: MerchantId,
        now_ns: u64,
    ) -> Result<Invoice, InvoiceError> {
        match &self.amount {
            InvoiceAmount::Fixed(amount) => {
                if *amount == 0 || *amount > MAX_AMOUNT_MINOR {
                    return Err(InvoiceError::AmountOutOfRange);
                }
            }
            InvoiceAmount::Open {
                presets,
                min_minor,
                max_minor,
            } => {
                if *min_minor == 0 || min_minor > max_minor || *max_minor > MAX_AMOUNT_MINOR {
                    return Err(InvoiceError::BadBounds);
                }
                if presets.len() > MAX_PRESETS
                    || presets.iter().any(|p| p < min_minor || p > max_minor)
                {
                    return Err(InvoiceError::BadPresets);
                }
            }
        }
        if !(MIN_EXPIRES_IN_S..=MAX_EXPIRES_IN_S).contains(&self.expires_in_s) {
            return Err(InvoiceError::BadExpiry);
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(InvoiceError::DescriptionTooLong);
        }
        if self
            .payload
            .as_ref()
            .is_some_and(|payload| payload.len() > MAX_PAYLOAD_BYTES)
        {
            return Err(InvoiceError::PayloadTooLong);
        }
        if self.rails.is_empty() {
            return Err(InvoiceError::NoRails);
        }
        Ok(Invoice {
            id,
            merchant,
            customer: self.customer,
            currency: self.currency,
            amount: self.amount,
            description: self.description,
            payload: self.payload,
            rails: self.rails,
            metadata: self.metadata,
            status: InvoiceStatus::Open,
            payment: None,
            amount_refunded_minor: 0,
            created_at_ns: now_ns,
            expires_at_ns: now_ns.saturating_add(self.expires_in_s.saturating_mul(NS_PER_S)),
            closed_at_ns: None,
            instructions: std::collections::BTreeMap::new(),
            subscription_period_s: None,
            return_url: None,
        })
    }
}

impl Invoice {
    /// Whether the invoice's time has run out at `now_ns`.
    pub fn is_past_expiry(&self, now_ns: u64) -> bool {
        now_ns >= self.expires_at_ns
    }

    /// Checks that the invoice can be paid now on `rail` and returns the amount to pay:
    /// the fixed amount, or the payer's `amount_minor` for an amountless invoice.
    pub fn payable_amount(
        &self,
        rail: Rail,
        amount_minor: Option<u64>,
        now_ns: u64,
    ) -> Result<u64, InvoiceError> {
        if self.status != InvoiceStatus::Open {
            return Err(InvoiceError::NotOpen(self.status));
        }
        if self.is_past_expiry(now_ns) {
            return Err(InvoiceError::Expired);
        }
        // The sandbox simulates any rail, so it may pay any invoice in test mode.
        if rail != Rail::Sandbox && !self.rails.contains(&rail) {
            return Err(InvoiceError::RailNotAccepted(rail));
        }
        match (&self.amount, amount_minor) {
            (InvoiceAmount::Fixed(expected), None) => Ok(*expected),
            (InvoiceAmount::Fixed(expected), Some(given)) if given == *expected => Ok(given),
            (InvoiceAmount::Fixed(expected), Some(_)) => Err(InvoiceError::AmountMismatch {
                expected_minor: *expected,
            }),
            (
                InvoiceAmount::Open {
                    min_minor,
                    max_minor,
                    ..
                },
                given,
            ) => match given {
                Some(given) if (*min_minor..=*max_minor).contains(&given) => Ok(given),
                _ => Err(InvoiceError::AmountRequired {
                    min_minor: *min_minor,
                    max_minor: *max_minor,
                }),
            },
        }
    }

    /// Marks the invoice paid (after [`Invoice::payable_amount`] succeeded and the ledger
    /// booked the payment).
    pub fn mark_paid(&mut self, payment: InvoicePayment) -> Result<(), InvoiceError> {
        if self.status != InvoiceStatus::Open {
            return Err(InvoiceError::NotOpen(self.status));
        }
        self.status = InvoiceStatus::Paid;
        self.payment = Some(payment);
        Ok(())
    }

    /// Cancels an open invoice.
    pub fn cancel(&mut self, now_ns: u64) -> Result<(), InvoiceError> {
        if self.status != InvoiceStatus::Open {
            return Err(InvoiceError::NotOpen(self.status));
        }
        self.status = InvoiceStatus::Canceled;
        self.closed_at_ns = Some(now_ns);
        Ok(())
    }

    /// Expires an open invoice whose time has run out; `false` when there is nothing to do.
    pub fn expire(&mut self, now_ns: u64) -> bool {
        if self.status != InvoiceStatus::Open || !self.is_past_expiry(now_ns) {
            return false;
        }
        self.status = InvoiceStatus::Expired;
        self.closed_at_ns = Some(now_ns);
        true
    }

    /// What may still be refunded.
    pub fn refundable_minor(&self) -> u64 {
        self.payment.map_or(0, |payment| {
            payment
                .amount_minor
                .saturating_sub(self.amount_refunded_minor)
        })
    }

    /// Records a refund of `amount_minor`; the status follows what is left.
    pub fn apply_refund(&mut self, amount_minor: u64) -> Result<(), InvoiceError> {
        if !matches!(
            self.status,
            InvoiceStatus::Paid | InvoiceStatus::PartiallyRefunded
        ) {
            return Err(InvoiceError::NotPaid(self.status));
        }
        let refundable_minor = self.refundable_minor();
        if amount_minor == 0 || amount_minor > refundable_minor {
            return Err(InvoiceError::RefundTooLarge { refundable_minor });
        }
        self.amount_refunded_minor += amount_minor;
        self.status = if self.refundable_minor() == 0 {
            InvoiceStatus::Refunded
        } else {
            InvoiceStatus::PartiallyRefunded
        };
        Ok(())
    }
}

/// Why a rail payment (or part of it) goes to the payer's balance instead of paying the
/// invoice (SPEC I3: late, short and long payments are never lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditReason {
    /// The invoice had expired or was canceled when the payment arrived.
    Late,
    /// The invoice was already paid (e.g. an old Telegram invoice paid a second time).
    AlreadyPaid,
    /// Less than the invoice asks: all of it is credited, the invoice stays open.
    Underpaid,
    /// More than the invoice asks: the invoice is paid, the excess is credited.
    Overpaid,
    /// In another currency than the invoice's.
    OtherCurrency,
    /// The rail named no invoice, or one the merchant does not have: nothing to pay, so all
    /// of it is credited.
    UnknownInvoice,
    /// A top-up: the payment named no invoice but a customer whose balance it is for (e.g. an
    /// LNURL-pay link of a customer).
    TopUp,
}

impl CreditReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CreditReason::Late => "late",
            CreditReason::AlreadyPaid => "already_paid",
            CreditReason::Underpaid => "underpaid",
            CreditReason::Overpaid => "overpaid",
            CreditReason::OtherCurrency => "other_currency",
            CreditReason::UnknownInvoice => "unknown_invoice",
            CreditReason::TopUp => "top_up",
        }
    }

    /// Every reason, in a stable order.
    pub const ALL: [CreditReason; 7] = [
        CreditReason::Late,
        CreditReason::AlreadyPaid,
        CreditReason::Underpaid,
        CreditReason::Overpaid,
        CreditReason::OtherCurrency,
        CreditReason::UnknownInvoice,
        CreditReason::TopUp,
    ];

    /// Reads the wire name back; `None` for a name farthing does not know.
    pub fn parse(text: &str) -> Option<CreditReason> {
        CreditReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
    }
}

impl fmt::Display for CreditReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a payment that a rail reports for an invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The part that pays the invoice (0 when nothing does).
    pub pays_minor: u64,
    /// The part credited to the payer's balance, and why (`None` when nothing is).
    pub credit: Option<(u64, CreditReason)>,
}

impl Invoice {
    /// Splits a payment of `amount_minor` in `currency` that arrived on `rail` at `now_ns`
    /// between paying this invoice and crediting the payer's balance, so that no part of it
    /// is lost (SPEC I3). Pure: the caller books both parts in one transaction.
    pub fn settle(
        &self,
        rail: Rail,
        currency: Currency,
        amount_minor: u64,
        now_ns: u64,
    ) -> Settlement {
        let credit_all = |reason| Settlement {
            pays_minor: 0,
            credit: (amount_minor > 0).then_some((amount_minor, reason)),
        };
        if currency != self.currency {
            return credit_all(CreditReason::OtherCurrency);
        }
        match self.status {
            InvoiceStatus::Open if !self.is_past_expiry(now_ns) => {}
            InvoiceStatus::Open | InvoiceStatus::Expired | InvoiceStatus::Canceled => {
                return credit_all(CreditReason::Late)
            }
            InvoiceStatus::Paid | InvoiceStatus::PartiallyRefunded | InvoiceStatus::Refunded => {
                return credit_all(CreditReason::AlreadyPaid)
            }
        }
        // A rail the invoice does not accept still brought real money: pay with it anyway
        // rather than refuse money that has already moved.
        let _ = rail;
        let (min_minor, max_minor) = match &self.amount {
            InvoiceAmount::Fixed(expected) => (*expected, *expected),
            InvoiceAmount::Open {
                min_minor,
                max_minor,
                ..
            } => (*min_minor, *max_minor),
        };
        if amount_minor < min_minor {
            credit_all(CreditReason::Underpaid)
        } else if amount_minor > max_minor {
            Settlement {
                pays_minor: max_minor,
                credit: Some((amount_minor - max_minor, CreditReason::Overpaid)),
            }
        } else {
            Settlement {
                pays_minor: amount_minor,
                credit: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_invoice(amount: InvoiceAmount) -> NewInvoice {
        NewInvoice {
            currency: Currency::XTR,
            amount,
            description: "a paid post".to_owned(),
            payload: None,
            rails: vec![Rail::Balance],
            customer: None,
            expires_in_s: DEFAULT_EXPIRES_IN_S,
            metadata: Vec::new(),
        }
    }

    fn open(amount: InvoiceAmount) -> Invoice {
        new_invoice(amount)
            .into_invoice(InvoiceId(1), MerchantId(2), 1_000)
            .expect("valid")
    }

    fn payment(amount_minor: u64) -> InvoicePayment {
        InvoicePayment {
            amount_minor,
            rail: Rail::Balance,
            customer: None,
            transfer_id: TransferId(9),
            paid_at_ns: 2_000,
        }
    }

    #[test]
    fn creation_checks_every_field() {
        assert_eq!(
            new_invoice(InvoiceAmount::Fixed(0)).into_invoice(InvoiceId(1), MerchantId(1), 0),
            Err(InvoiceError::AmountOutOfRange)
        );
        let bounds = InvoiceAmount::Open {
            presets: vec![],
            min_minor: 5,
            max_minor: 4,
        };
        assert_eq!(
            new_invoice(bounds).into_invoice(InvoiceId(1), MerchantId(1), 0),
            Err(InvoiceError::BadBounds)
        );
        let presets = InvoiceAmount::Open {
            presets: vec![1, 50],
            min_minor: 1,
            max_minor: 10,
        };
        assert_eq!(
            new_invoice(presets).into_invoice(InvoiceId(1), MerchantId(1), 0),
            Err(InvoiceError::BadPresets)
        );
        let mut short = new_invoice(InvoiceAmount::Fixed(5));
        short.expires_in_s = MIN_EXPIRES_IN_S - 1;
        assert_eq!(
            short.into_invoice(InvoiceId(1), MerchantId(1), 0),
            Err(InvoiceError::BadExpiry)
        );
        let mut no_rails = new_invoice(InvoiceAmount::Fixed(5));
        no_rails.rails.clear();
        assert_eq!(
            no_rails.into_invoice(InvoiceId(1), MerchantId(1), 0),
            Err(InvoiceError::NoRails)
        );
        let invoice = open(InvoiceAmount::Fixed(5));
        assert_eq!(
            invoice.expires_at_ns,
            1_000 + DEFAULT_EXPIRES_IN_S * NS_PER_S
        );
    }

    #[test]
    fn paying_checks_status_time_rail_and_amount() {
        let mut invoice = open(InvoiceAmount::Fixed(5));
        assert_eq!(invoice.payable_amount(Rail::Balance, None, 1_000), Ok(5));
        assert_eq!(invoice.payable_amount(Rail::Balance, Some(5), 1_000), Ok(5));
        assert_eq!(
            invoice.payable_amount(Rail::Balance, Some(4), 1_000),
            Err(InvoiceError::AmountMismatch { expected_minor: 5 })
        );
        assert_eq!(
            invoice.payable_amount(Rail::Stars, None, 1_000),
            Err(InvoiceError::RailNotAccepted(Rail::Stars))
        );
        assert_eq!(invoice.payable_amount(Rail::Sandbox, None, 1_000), Ok(5));
        let late = invoice.expires_at_ns;
        assert_eq!(
            invoice.payable_amount(Rail::Balance, None, late),
            Err(InvoiceError::Expired)
        );
        invoice.mark_paid(payment(5)).expect("paid");
        assert_eq!(
            invoice.payable_amount(Rail::Balance, None, 1_000),
            Err(InvoiceError::NotOpen(InvoiceStatus::Paid))
        );
        assert_eq!(
            invoice.mark_paid(payment(5)),
            Err(InvoiceError::NotOpen(InvoiceStatus::Paid))
        );
    }

    #[test]
    fn amountless_invoices_take_the_payers_amount_within_bounds() {
        let invoice = open(InvoiceAmount::Open {
            presets: vec![1, 3, 5, 10],
            min_minor: 1,
            max_minor: 100,
        });
        assert_eq!(invoice.payable_amount(Rail::Balance, Some(3), 1_000), Ok(3));
        let required = InvoiceError::AmountRequired {
            min_minor: 1,
            max_minor: 100,
        };
        assert_eq!(
            invoice.payable_amount(Rail::Balance, None, 1_000),
            Err(required.clone())
        );
        assert_eq!(
            invoice.payable_amount(Rail::Balance, Some(101), 1_000),
            Err(required)
        );
    }

    #[test]
    fn cancel_expire_and_refund_follow_the_state_machine() {
        let mut invoice = open(InvoiceAmount::Fixed(10));
        assert!(!invoice.expire(invoice.expires_at_ns - 1));
        assert!(invoice.expire(invoice.expires_at_ns));
        assert_eq!(invoice.status, InvoiceStatus::Expired);
        assert_eq!(
            invoice.cancel(0),
            Err(InvoiceError::NotOpen(InvoiceStatus::Expired))
        );

        let mut invoice = open(InvoiceAmount::Fixed(10));
        assert_eq!(
            invoice.apply_refund(1),
            Err(InvoiceError::NotPaid(InvoiceStatus::Open))
        );
        invoice.mark_paid(payment(10)).expect("paid");
        invoice.apply_refund(4).expect("partial");
        assert_eq!(invoice.status, InvoiceStatus::PartiallyRefunded);
        assert_eq!(
            invoice.apply_refund(7),
            Err(InvoiceError::RefundTooLarge {
                refundable_minor: 6
            })
        );
        invoice.apply_refund(6).expect("rest");
        assert_eq!(invoice.status, InvoiceStatus::Refunded);
        assert_eq!(invoice.refundable_minor(), 0);
        assert!(!invoice.expire(u64::MAX));
    }

    #[test]
    fn rail_payments_are_split_so_nothing_is_lost() {
        let invoice = open(InvoiceAmount::Fixed(10));
        let now = 1_000;
        let pay = |amount| invoice.settle(Rail::Stars, Currency::XTR, amount, now);
        assert_eq!(
            pay(10),
            Settlement {
                pays_minor: 10,
                credit: None
            }
        );
        assert_eq!(
            pay(15),
            Settlement {
                pays_minor: 10,
                credit: Some((5, CreditReason::Overpaid))
            }
        );
        assert_eq!(
            pay(7),
            Settlement {
                pays_minor: 0,
                credit: Some((7, CreditReason::Underpaid))
            }
        );
        assert_eq!(
            invoice.settle(Rail::Stars, Currency::USD, 10, now),
            Settlement {
                pays_minor: 0,
                credit: Some((10, CreditReason::OtherCurrency))
            }
        );
        assert_eq!(
            invoice.settle(Rail::Stars, Currency::XTR, 10, invoice.expires_at_ns),
            Settlement {
                pays_minor: 0,
                credit: Some((10, CreditReason::Late))
            }
        );
        let mut paid = invoice.clone();
        paid.mark_paid(payment(10)).expect("paid");
        assert_eq!(
            paid.settle(Rail::Stars, Currency::XTR, 10, now),
            Settlement {
                pays_minor: 0,
                credit: Some((10, CreditReason::AlreadyPaid))
            }
        );
        let mut canceled = invoice.clone();
        canceled.cancel(now).expect("cancel");
        assert_eq!(
            canceled
                .settle(Rail::Stars, Currency::XTR, 10, now)
                .credit
                .map(|c| c.1),
            Some(CreditReason::Late)
        );
        let tip = open(InvoiceAmount::Open {
            presets: vec![5],
            min_minor: 5,
            max_minor: 50,
        });
        assert_eq!(
            tip.settle(Rail::Stars, Currency::XTR, 30, now).pays_minor,
            30
        );
        assert_eq!(
            tip.settle(Rail::Stars, Currency::XTR, 80, now),
            Settlement {
                pays_minor: 50,
                credit: Some((30, CreditReason::Overpaid))
            }
        );
        // Every split adds up to what arrived.
        for amount in [0, 1, 9, 10, 11, 1_000] {
            let s = pay(amount);
            assert_eq!(s.pays_minor + s.credit.map_or(0, |c| c.0), amount);
        }
    }

    #[test]
    fn credit_reasons_round_trip_their_wire_names() {
        for reason in CreditReason::ALL {
            assert_eq!(CreditReason::parse(reason.as_str()), Some(reason));
            assert_eq!(reason.to_string(), reason.as_str());
        }
        assert_eq!(
            CreditReason::parse("unknown_invoice"),
            Some(CreditReason::UnknownInvoice)
        );
        assert_eq!(CreditReason::parse("Late"), None);
        assert_eq!(CreditReason::parse(""), None);
    }
}
