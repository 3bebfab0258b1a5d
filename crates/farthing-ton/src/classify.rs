//! Which transaction on a watched account is a payment, by the rules that hold on chain (not by
//! the `aborted` flag alone):
//!
//! - **TON to the merchant's wallet** counts when an internal message's value was credited and
//!   no bounce phase sent it back — *even when the transaction is aborted*: a payment to a
//!   not-yet-deployed wallet is aborted (`no_state`) yet credited. The amount is the credit
//!   phase's. A bounce of our own message, an external message (the merchant's own transfer),
//!   gas left over (`excesses`) and jetton notifications are not payments.
//! - **A jetton to the merchant's jetton wallet** counts when that wallet — derived from the
//!   allowed master and checked against the chain at set-up — successfully processed an
//!   `internal_transfer`: its code accepts one only from a wallet of the same master, so the
//!   value is real. The notification to the main wallet is often aborted for want of gas, or
//!   absent, and is never what settles; the comment is inside the internal transfer anyway.
//! - **A notification from any other jetton wallet** is a fake jetton: reported, never credited.
//! - **What the merchant sent** (a refund farthing prepared): from the wallet, an external
//!   message the wallet's code accepted (compute and action phases succeeded) and the internal
//!   messages it sent; from a jetton wallet, a `transfer` its code processed successfully (it
//!   accepts one only from its owner). Each is reported with its destination, amount and
//!   comment, for the watcher to match against the refunds it waits for.

use crate::body::{self, OP_EXCESSES, OP_INTERNAL_TRANSFER, OP_TRANSFER_NOTIFICATION};
use crate::toncenter::{Message, Transaction};
use crate::Address;

/// What kind of account a transaction was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watched {
    /// The merchant's wallet (TON).
    Wallet,
    /// The merchant's jetton wallet of `master`.
    JettonWallet {
        /// The allowed master it belongs to.
        master: Address,
    },
}

/// What arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    /// Toncoin, in nanoton.
    Ton,
    /// A jetton of this master, in its units.
    Jetton(Address),
}

/// A payment read from a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// What arrived.
    pub asset: Asset,
    /// How much, in the asset's smallest unit.
    pub amount: u128,
    /// Who sent it (for a jetton: the owner of the sending jetton wallet).
    pub payer: Option<Address>,
    /// The text comment, if the payer wrote one.
    pub comment: Option<String>,
    /// The hash of the message body (standard base64), to match a TON Connect payload.
    pub body_hash: Option<String>,
}

/// Why a transaction is not a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// No inbound message (tick-tock) or an external one (the merchant's own wallet sending).
    NotIncoming,
    /// A bounce of a message the account sent earlier.
    BounceOfOurs,
    /// The value went back to the payer (bounce phase).
    BouncedToPayer,
    /// Nothing was credited.
    NothingCredited,
    /// Gas left over from the account's own operation.
    Excesses,
    /// A notification of a jetton payment from the merchant's own jetton wallet (settled from
    /// that wallet's transaction).
    OwnNotification,
    /// A notification from a jetton wallet that is not one of the merchant's: a fake jetton.
    FakeJetton {
        /// The notifying wallet.
        from: Option<Address>,
        /// The comment it carried (often a copy of a real invoice's).
        comment: Option<String>,
    },
    /// A jetton wallet transaction that is no successful incoming transfer (an outgoing one,
    /// a failed one that bounced back to the payer).
    NotJettonIncome,
    /// The message could not be read.
    Unreadable(String),
}

impl Ignored {
    /// A short machine name.
    pub fn code(&self) -> &'static str {
        match self {
            Ignored::NotIncoming => "not_incoming",
            Ignored::BounceOfOurs => "bounce_of_ours",
            Ignored::BouncedToPayer => "bounced_to_payer",
            Ignored::NothingCredited => "nothing_credited",
            Ignored::Excesses => "excesses",
            Ignored::OwnNotification => "own_notification",
            Ignored::FakeJetton { .. } => "fake_jetton",
            Ignored::NotJettonIncome => "not_jetton_income",
            Ignored::Unreadable(_) => "unreadable",
        }
    }
}

/// A transfer the merchant's wallet (or jetton wallet) sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// What left.
    pub asset: Asset,
    /// How much, in the asset's smallest unit.
    pub amount: u128,
    /// To whom (for a jetton: the receiving owner).
    pub to: Option<Address>,
    /// The comment it carried.
    pub comment: Option<String>,
}

/// What a transaction is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A payment to settle.
    Payment(Payment),
    /// Transfers the merchant sent (one per message).
    Sent(Vec<Sent>),
    /// Not a payment, and why.
    Ignored(Ignored),
}

fn address(text: Option<&str>) -> Option<Address> {
    text.and_then(|text| Address::parse(text).ok())
        .map(|parsed| parsed.address)
}

fn body_of(message: &Message) -> Result<Option<tonlib_core::cell::ArcCell>, Ignored> {
    match message
        .message_content
        .as_ref()
        .and_then(|content| content.body.as_deref())
    {
        None => Ok(None),
        Some(boc) => body::parse_boc(boc)
            .map(Some)
            .map_err(|error| Ignored::Unreadable(format!("message body: {error}"))),
    }
}

fn body_hash(message: &Message) -> Option<String> {
    message
        .message_content
        .as_ref()
        .and_then(|content| content.hash.clone())
}

/// Classifies a transaction of a watched account. `own_jetton_wallets` are the merchant's
/// jetton wallets (a notification from one of them is no fake).
pub fn classify(tx: &Transaction, watched: Watched, own_jetton_wallets: &[Address]) -> Seen {
    // The inbound body is parsed at most once, by whichever rule reads it first.
    let body = InBody::default();
    if let Some(sent) = sent(tx, watched, &body) {
        return Seen::Sent(sent);
    }
    match classify_inner(tx, watched, own_jetton_wallets, &body) {
        Ok(payment) => Seen::Payment(payment),
        Err(ignored) => Seen::Ignored(ignored),
    }
}

/// The inbound message's body, parsed on first use.
#[derive(Default)]
struct InBody(std::cell::OnceCell<Result<Option<tonlib_core::cell::ArcCell>, Ignored>>);

impl InBody {
    fn get(&self, message: &Message) -> Result<Option<tonlib_core::cell::ArcCell>, Ignored> {
        self.0.get_or_init(|| body_of(message)).clone()
    }
}

/// Whether the compute and action phases succeeded (nothing aborted).
fn succeeded(tx: &Transaction) -> bool {
    let computed = tx
        .description
        .compute_ph
        .as_ref()
        .is_some_and(|compute| !compute.skipped && compute.success == Some(true));
    let acted = tx
        .description
        .action
        .as_ref()
        .is_none_or(|action| action.success != Some(false));
    !tx.description.aborted && computed && acted
}

/// What the merchant sent in this transaction, if it is one of theirs that succeeded.
fn sent(tx: &Transaction, watched: Watched, body: &InBody) -> Option<Vec<Sent>> {
    let message = tx.in_msg.as_ref()?;
    match watched {
        Watched::Wallet => {
            // The wallet sends only on an external message signed with its key.
            if message.source.is_some() || !succeeded(tx) {
                return None;
            }
            Some(
                tx.out_msgs
                    .iter()
                    .filter(|out| out.bounced != Some(true))
                    .map(|out| Sent {
                        asset: Asset::Ton,
                        amount: out
                            .value
                            .as_deref()
                            .and_then(|value| value.parse().ok())
                            .unwrap_or(0),
                        to: address(out.destination.as_deref()),
                        comment: body_of(out)
                            .ok()
                            .flatten()
                            .and_then(|cell| body::read_comment(&cell)),
                    })
                    .collect(),
            )
        }
        Watched::JettonWallet { master } => {
            if message.source.is_none() || message.bounced == Some(true) || !succeeded(tx) {
                return None;
            }
            let cell = body.get(message).ok().flatten()?;
            let transfer = body::read_jetton_transfer(&cell).ok().flatten()?;
            Some(vec![Sent {
                asset: Asset::Jetton(master),
                amount: transfer.amount,
                to: transfer.destination,
                comment: transfer.comment,
            }])
        }
    }
}

fn classify_inner(
    tx: &Transaction,
    watched: Watched,
    own_jetton_wallets: &[Address],
    in_body: &InBody,
) -> Result<Payment, Ignored> {
    let message = tx.in_msg.as_ref().ok_or(Ignored::NotIncoming)?;
    if message.source.is_none() {
        return Err(Ignored::NotIncoming);
    }
    if message.bounced == Some(true) {
        return Err(Ignored::BounceOfOurs);
    }
    let body = in_body.get(message)?;
    match watched {
        Watched::Wallet => {
            if tx.description.bounce.is_some()
                || tx.out_msgs.iter().any(|out| out.bounced == Some(true))
            {
                return Err(Ignored::BouncedToPayer);
            }
            let credit = tx
                .description
                .credit_ph
                .as_ref()
                .and_then(|credit| credit.credit.as_deref())
                .map(|text| {
                    text.parse::<u128>()
                        .map_err(|_| Ignored::Unreadable(format!("credit {text:?}")))
                })
                .transpose()?
                .unwrap_or(0);
            let op = body.as_deref().and_then(body::op);
            match op {
                Some(OP_TRANSFER_NOTIFICATION) => {
                    let from = address(message.source.as_deref());
                    if from.is_some_and(|from| own_jetton_wallets.contains(&from)) {
                        return Err(Ignored::OwnNotification);
                    }
                    let comment = body
                        .as_deref()
                        .and_then(|cell| body::read_transfer_notification(cell).ok().flatten())
                        .and_then(|notification| notification.comment);
                    return Err(Ignored::FakeJetton { from, comment });
                }
                Some(OP_EXCESSES) => return Err(Ignored::Excesses),
                _ => {}
            }
            if credit == 0 {
                return Err(Ignored::NothingCredited);
            }
            Ok(Payment {
                asset: crate::classify::Asset::Ton,
                amount: credit,
                payer: address(message.source.as_deref()),
                comment: body.as_deref().and_then(body::read_comment),
                body_hash: body_hash(message),
            })
        }
        Watched::JettonWallet { master } => {
            let Some(cell) = body.as_deref() else {
                return Err(Ignored::NotJettonIncome);
            };
            if body::op(cell) != Some(OP_INTERNAL_TRANSFER) {
                return Err(Ignored::NotJettonIncome);
            }
            let computed = tx
                .description
                .compute_ph
                .as_ref()
                .is_some_and(|compute| !compute.skipped && compute.success == Some(true));
            let acted = tx
                .description
                .action
                .as_ref()
                .is_none_or(|action| action.success != Some(false));
            if tx.description.aborted || !computed || !acted {
                return Err(Ignored::NotJettonIncome);
            }
            let transfer = body::read_internal_transfer(cell)
                .map_err(|error| Ignored::Unreadable(format!("internal_transfer: {error}")))?
                .ok_or(Ignored::NotJettonIncome)?;
            if transfer.amount == 0 {
                return Err(Ignored::NothingCredited);
            }
            Ok(Payment {
                asset: Asset::Jetton(master),
                amount: transfer.amount,
                payer: transfer.from,
                comment: transfer.comment,
                body_hash: body_hash(message),
            })
        }
    }
}
