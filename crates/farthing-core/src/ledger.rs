//! The ledger rules (SPEC L1–L6): accounts, immutable transfers, linked groups, two-phase holds.
//!
//! This module decides *what* a write does; it never stores anything. A storage adapter
//! implements [`LedgerState`] (what already exists, and where to put what changed), preloads
//! everything a [`Group`] refers to (see [`Group::transfer_ids`] and [`Group::account_ids`]),
//! calls [`apply_group`], and persists the changes it was handed, all inside one database
//! transaction.
//!
//! Rules that hold after every call (checked again by `farthing audit`):
//! - every transfer moves one amount from one account to another account of the same currency,
//!   so per currency the balances of all accounts sum to zero;
//! - an account's four balance fields always equal the sums of the transfers that touch it;
//! - an account flagged `debits_must_not_exceed_credits` (every customer and merchant balance)
//!   never has `debits_posted + debits_pending > credits_posted`: it cannot go below zero, and a
//!   hold reserves funds so concurrent spends cannot overdraw it;
//! - a group of transfers is applied completely or not at all;
//! - a transfer id names one transfer forever: a retry with the same fields reports the original,
//!   a retry with different fields is refused with an `ExistsWithDifferent…` error;
//! - nothing is edited: posting, voiding and expiring a hold create records or state changes,
//!   and corrections are new transfers.
//!
//! This module must never read a clock (time comes in as `now_ns`), panic on input, or use
//! unchecked arithmetic on amounts.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::money::{Currency, MAX_AMOUNT_MINOR};
use crate::{AccountId, CustomerId, MerchantId, Rail, TransferId};

/// Most transfers in one linked group: bounds the work one command can ask of the writer.
pub const MAX_GROUP_TRANSFERS: usize = 256;
/// Most accounts one group may create.
pub const MAX_GROUP_ACCOUNTS: usize = 64;
/// Longest timeout of a hold: 90 days. Longer holds are a sign of a bug in the caller.
pub const MAX_TIMEOUT_S: u32 = 90 * 24 * 3600;

const NS_PER_S: u64 = 1_000_000_000;

/// What an account is for (SPEC L1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// A customer's prepaid balance with one merchant: money farthing owes the customer.
    CustomerBalance {
        /// The merchant whose customer this is.
        merchant: MerchantId,
        /// The customer.
        customer: CustomerId,
    },
    /// What a merchant has earned and may pay out.
    MerchantBalance {
        /// The merchant.
        merchant: MerchantId,
    },
    /// A merchant's funds that are held (not yet available), e.g. during a refund window.
    MerchantPending {
        /// The merchant.
        merchant: MerchantId,
    },
    /// The operator's platform fees taken from one merchant's payments.
    PlatformFees {
        /// The merchant the fees were taken from.
        merchant: MerchantId,
    },
    /// Money in transit on one rail for one merchant (paid by the payer, not yet settled to
    /// farthing).
    RailClearing {
        /// The merchant.
        merchant: MerchantId,
        /// The rail.
        rail: Rail,
    },
    /// The world outside the ledger on one rail, for one merchant: where that merchant's money
    /// enters and leaves.
    External {
        /// The merchant.
        merchant: MerchantId,
        /// The rail.
        rail: Rail,
    },
    /// Money a rail reported for one merchant that could not be booked where it belongs (e.g.
    /// a balance would exceed what farthing stores): held here, never dropped, until an operator
    /// resolves it. `farthing audit` lists every non-zero suspense account.
    Suspense {
        /// The merchant.
        merchant: MerchantId,
        /// The rail that reported the money.
        rail: Rail,
    },
}

/// The merchant id of the shared accounts written before accounts were per merchant (schema
/// migration 15 moved their balances to per-merchant accounts; they keep their history).
pub const LEGACY_SHARED_MERCHANT: MerchantId = MerchantId(0);

impl AccountKind {
    /// The storage name of the kind, e.g. `"customer_balance"`.
    pub fn code(&self) -> &'static str {
        match self {
            AccountKind::CustomerBalance { .. } => "customer_balance",
            AccountKind::MerchantBalance { .. } => "merchant_balance",
            AccountKind::MerchantPending { .. } => "merchant_pending",
            AccountKind::PlatformFees { .. } => "platform_fees",
            AccountKind::RailClearing { .. } => "rail_clearing",
            AccountKind::External { .. } => "external",
            AccountKind::Suspense { .. } => "suspense",
        }
    }

    /// The merchant the account belongs to: every account belongs to exactly one merchant
    /// (SPEC L1), so nothing one merchant does can change what another's payments can book.
    /// ([`LEGACY_SHARED_MERCHANT`] for the shared accounts of databases made before that.)
    pub fn merchant(&self) -> Option<MerchantId> {
        match *self {
            AccountKind::CustomerBalance { merchant, .. }
            | AccountKind::MerchantBalance { merchant }
            | AccountKind::MerchantPending { merchant }
            | AccountKind::PlatformFees { merchant }
            | AccountKind::RailClearing { merchant, .. }
            | AccountKind::External { merchant, .. }
            | AccountKind::Suspense { merchant, .. } => Some(merchant),
        }
    }

    /// The customer that owns the account, if any.
    pub fn customer(&self) -> Option<CustomerId> {
        match *self {
            AccountKind::CustomerBalance { customer, .. } => Some(customer),
            _ => None,
        }
    }

    /// The rail the account belongs to, if any.
    pub fn rail(&self) -> Option<Rail> {
        match *self {
            AccountKind::RailClearing { rail, .. }
            | AccountKind::External { rail, .. }
            | AccountKind::Suspense { rail, .. } => Some(rail),
            _ => None,
        }
    }

    /// Rebuilds a kind from its stored parts; `None` when they do not fit together. A platform,
    /// clearing or external account without a merchant is a shared account of a database made
    /// before accounts were per merchant ([`LEGACY_SHARED_MERCHANT`]).
    pub fn from_parts(
        code: &str,
        merchant: Option<MerchantId>,
        customer: Option<CustomerId>,
        rail: Option<Rail>,
    ) -> Option<AccountKind> {
        let kind = match (code, merchant, customer, rail) {
            ("customer_balance", Some(merchant), Some(customer), None) => {
                AccountKind::CustomerBalance { merchant, customer }
            }
            ("merchant_balance", Some(merchant), None, None) => {
                AccountKind::MerchantBalance { merchant }
            }
            ("merchant_pending", Some(merchant), None, None) => {
                AccountKind::MerchantPending { merchant }
            }
            ("platform_fees", merchant, None, None) => AccountKind::PlatformFees {
                merchant: merchant.unwrap_or(LEGACY_SHARED_MERCHANT),
            },
            ("rail_clearing", merchant, None, Some(rail)) => AccountKind::RailClearing {
                merchant: merchant.unwrap_or(LEGACY_SHARED_MERCHANT),
                rail,
            },
            ("external", merchant, None, Some(rail)) => AccountKind::External {
                merchant: merchant.unwrap_or(LEGACY_SHARED_MERCHANT),
                rail,
            },
            ("suspense", Some(merchant), None, Some(rail)) => {
                AccountKind::Suspense { merchant, rail }
            }
            _ => return None,
        };
        Some(kind)
    }

    /// The balance constraint every account of this kind carries (SPEC L4): money owed to a
    /// customer or a merchant can never be negative.
    pub fn default_flags(&self) -> AccountFlags {
        match self {
            AccountKind::CustomerBalance { .. }
            | AccountKind::MerchantBalance { .. }
            | AccountKind::MerchantPending { .. }
            | AccountKind::PlatformFees { .. } => AccountFlags {
                debits_must_not_exceed_credits: true,
                credits_must_not_exceed_debits: false,
            },
            // Suspense takes whatever could not be booked elsewhere, so nothing may refuse it.
            AccountKind::RailClearing { .. }
            | AccountKind::External { .. }
            | AccountKind::Suspense { .. } => AccountFlags::default(),
        }
    }
}

/// Balance constraints of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AccountFlags {
    /// `debits_posted + debits_pending` may never exceed `credits_posted` (a balance that
    /// cannot go below zero).
    pub debits_must_not_exceed_credits: bool,
    /// `credits_posted + credits_pending` may never exceed `debits_posted`.
    pub credits_must_not_exceed_debits: bool,
}

impl AccountFlags {
    const DEBITS_LIMITED: u32 = 1;
    const CREDITS_LIMITED: u32 = 2;

    /// The stored form.
    pub fn bits(self) -> u32 {
        let mut bits = 0;
        if self.debits_must_not_exceed_credits {
            bits |= Self::DEBITS_LIMITED;
        }
        if self.credits_must_not_exceed_debits {
            bits |= Self::CREDITS_LIMITED;
        }
        bits
    }

    /// Reads the stored form; `None` for unknown bits or both constraints at once (an account
    /// that can hold nothing).
    pub fn from_bits(bits: u32) -> Option<AccountFlags> {
        if bits & !(Self::DEBITS_LIMITED | Self::CREDITS_LIMITED) != 0 {
            return None;
        }
        let flags = AccountFlags {
            debits_must_not_exceed_credits: bits & Self::DEBITS_LIMITED != 0,
            credits_must_not_exceed_debits: bits & Self::CREDITS_LIMITED != 0,
        };
        (!(flags.debits_must_not_exceed_credits && flags.credits_must_not_exceed_debits))
            .then_some(flags)
    }
}

/// An account's identity: immutable once created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Account {
    /// The caller-chosen id; [`Account::new`] derives it from kind and currency.
    pub id: AccountId,
    /// The one currency this account holds.
    pub currency: Currency,
    /// What the account is for.
    pub kind: AccountKind,
    /// Its balance constraints.
    pub flags: AccountFlags,
}

impl Account {
    /// The account of `kind` in `currency`, with its derived id and the kind's constraints.
    pub fn new(kind: AccountKind, currency: Currency) -> Account {
        Account {
            id: AccountId::derive(&kind, currency),
            currency,
            kind,
            flags: kind.default_flags(),
        }
    }
}

impl AccountId {
    /// The deterministic id of the account of `kind` in `currency`, so that callers can name
    /// an account (and create it idempotently) without looking it up first.
    pub fn derive(kind: &AccountKind, currency: Currency) -> AccountId {
        let mut hash = Sha256::new();
        hash.update(b"farthing.account.v1\0");
        hash.update(kind.code().as_bytes());
        hash.update([0]);
        hash.update(kind.merchant().unwrap_or_default().to_be_bytes());
        hash.update(kind.customer().unwrap_or_default().to_be_bytes());
        hash.update(kind.rail().map_or("", Rail::as_str).as_bytes());
        hash.update([0]);
        hash.update(currency.code().as_bytes());
        let digest = hash.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        // Zero is reserved; a digest prefix of zero is astronomically unlikely but cheap to avoid.
        AccountId(u128::from_be_bytes(bytes).max(1))
    }
}

/// Largest value of one of an account's running totals: `i128::MAX`, so that any difference
/// of two totals fits an `i128`. Totals are lifetime sums that never go down; at one transfer
/// of [`MAX_AMOUNT_MINOR`] per nanosecond this bound is 584 years × 2^64 transfers away, so no
/// amount of traffic (honest or forged) can bring an account near it.
pub const MAX_TOTAL_MINOR: u128 = i128::MAX as u128;

/// The four running totals of an account, in minor units of its currency.
///
/// They are 128-bit: a total only ever grows, and a 64-bit total can be pushed to its limit by
/// a few large transfers, after which every later booking on that account fails. What a
/// customer or merchant *holds* (the balance, not the totals) stays at or below
/// [`MAX_AMOUNT_MINOR`], so that every balance can be paid out by one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Balances {
    /// Debits reserved by open holds.
    pub debits_pending: u128,
    /// Debits applied.
    pub debits_posted: u128,
    /// Credits reserved by open holds.
    pub credits_pending: u128,
    /// Credits applied.
    pub credits_posted: u128,
}

/// A total as a signed number (totals are at most [`MAX_TOTAL_MINOR`], so this never fails
/// for values the ledger made; a corrupt value saturates).
fn signed(total: u128) -> i128 {
    i128::try_from(total).unwrap_or(i128::MAX)
}

impl Balances {
    /// For a credit-normal account (a customer or merchant balance): what can still be spent,
    /// `credits_posted - debits_posted - debits_pending`. Negative only for accounts without
    /// the constraint.
    pub fn available(&self) -> i128 {
        signed(self.credits_posted)
            .saturating_sub(signed(self.debits_posted))
            .saturating_sub(signed(self.debits_pending))
    }

    /// `credits_posted - debits_posted`: the posted balance of a credit-normal account.
    pub fn posted(&self) -> i128 {
        signed(self.credits_posted).saturating_sub(signed(self.debits_posted))
    }

    /// Whether these totals respect `flags`.
    pub fn satisfies(&self, flags: AccountFlags) -> bool {
        let debits = self.debits_posted.checked_add(self.debits_pending);
        let credits = self.credits_posted.checked_add(self.credits_pending);
        let debits_ok = debits.is_some_and(|debits| debits <= self.credits_posted);
        let credits_ok = credits.is_some_and(|credits| credits <= self.debits_posted);
        (debits_ok || !flags.debits_must_not_exceed_credits)
            && (credits_ok || !flags.credits_must_not_exceed_debits)
    }

    /// What the account holds counting the credits and debits reserved in its favour: for a
    /// credit-normal account `credits_posted + credits_pending - debits_posted`, for a
    /// debit-normal one the mirror. Only constrained accounts are held to
    /// [`MAX_AMOUNT_MINOR`] by it.
    fn held(&self, flags: AccountFlags) -> i128 {
        if flags.credits_must_not_exceed_debits {
            signed(self.debits_posted)
                .saturating_add(signed(self.debits_pending))
                .saturating_sub(signed(self.credits_posted))
        } else {
            signed(self.credits_posted)
                .saturating_add(signed(self.credits_pending))
                .saturating_sub(signed(self.debits_posted))
        }
    }
}

/// An account with its totals, as the ledger sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    /// The account's identity.
    pub account: Account,
    /// Its running totals.
    pub balances: Balances,
    /// When it was created (ledger time).
    pub created_at_ns: u64,
}

/// Why money moved, stored with each transfer (TigerBeetle's `code`). Callers may use their
/// own values; these are the ones farthing books.
pub mod code {
    /// Money comes in from a rail to a balance.
    pub const TOP_UP: u16 = 1;
    /// A customer pays a merchant.
    pub const PAYMENT: u16 = 2;
    /// A pay-per-use charge against a customer balance.
    pub const CHARGE: u16 = 3;
    /// A fee to the platform.
    pub const FEE: u16 = 4;
    /// A refund.
    pub const REFUND: u16 = 5;
    /// A payout to the outside world.
    pub const PAYOUT: u16 = 6;
    /// A correction made by the operator.
    pub const CORRECTION: u16 = 7;
    /// Money a rail reported that could not be booked where it belongs, held in suspense.
    pub const SUSPENSE: u16 = 8;
    /// Transfers made by `farthing bench`.
    pub const BENCH: u16 = 900;
}

/// What a transfer request asks the ledger to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferAction {
    /// Move `amount_minor` from `debit` to `credit` now.
    Single {
        /// Account debited.
        debit: AccountId,
        /// Account credited.
        credit: AccountId,
        /// Currency of the amount; both accounts must hold it.
        currency: Currency,
        /// Amount in minor units, 1..=MAX_AMOUNT_MINOR.
        amount_minor: u64,
    },
    /// Reserve `amount_minor` (a hold); it is later posted or voided, or voided by the ledger
    /// once `timeout_s` seconds have passed (0 = no timeout).
    Pending {
        /// Account debited.
        debit: AccountId,
        /// Account credited.
        credit: AccountId,
        /// Currency of the amount; both accounts must hold it.
        currency: Currency,
        /// Amount in minor units, 1..=MAX_AMOUNT_MINOR.
        amount_minor: u64,
        /// Seconds until the hold is voided by itself; 0 for never.
        timeout_s: u32,
    },
    /// Post a hold: all of it (`None`) or part of it; the rest is released.
    PostPending {
        /// The hold.
        pending_id: TransferId,
        /// How much to post; `None` for the whole hold.
        amount_minor: Option<u64>,
    },
    /// Release a hold without moving money.
    VoidPending {
        /// The hold.
        pending_id: TransferId,
    },
}

/// A transfer request: an idempotency id, an action, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Caller-chosen; a retry must use the same id.
    pub id: TransferId,
    /// What to do.
    pub action: TransferAction,
    /// Why (see [`code`]).
    pub code: u16,
    /// The business object behind the transfer (an invoice, a charge…); 0 for none.
    pub reference: u128,
}

/// The kind of a stored transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Posted at once.
    Single,
    /// A hold.
    Pending,
    /// The posting of a hold.
    PostPending,
    /// The voiding of a hold.
    VoidPending,
}

impl TransferKind {
    /// The stored form.
    pub fn to_u8(self) -> u8 {
        match self {
            TransferKind::Single => 0,
            TransferKind::Pending => 1,
            TransferKind::PostPending => 2,
            TransferKind::VoidPending => 3,
        }
    }

    /// Reads the stored form.
    pub fn from_u8(value: u8) -> Option<TransferKind> {
        Some(match value {
            0 => TransferKind::Single,
            1 => TransferKind::Pending,
            2 => TransferKind::PostPending,
            3 => TransferKind::VoidPending,
            _ => return None,
        })
    }

    /// Whether the amount of a transfer of this kind counts in the posted totals.
    pub fn is_posting(self) -> bool {
        matches!(self, TransferKind::Single | TransferKind::PostPending)
    }

    fn describe(self) -> &'static str {
        match self {
            TransferKind::Single => "a single transfer",
            TransferKind::Pending => "a pending transfer (hold)",
            TransferKind::PostPending => "the posting of a hold",
            TransferKind::VoidPending => "the voiding of a hold",
        }
    }
}

/// A transfer as stored: immutable once written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    /// Its id.
    pub id: TransferId,
    /// Its kind.
    pub kind: TransferKind,
    /// Account debited (for posts and voids: the hold's).
    pub debit_account_id: AccountId,
    /// Account credited (for posts and voids: the hold's).
    pub credit_account_id: AccountId,
    /// Currency of the amount.
    pub currency: Currency,
    /// For single transfers and holds: the amount; for posts: the amount posted; for voids:
    /// the amount released.
    pub amount_minor: u64,
    /// For posts and voids: the hold.
    pub pending_id: Option<TransferId>,
    /// For holds: seconds until it expires, 0 for never.
    pub timeout_s: u32,
    /// Why (see [`code`]).
    pub code: u16,
    /// The business object behind it; 0 for none.
    pub reference: u128,
    /// Ledger time of the commit: unique and increasing across all transfers.
    pub timestamp_ns: u64,
}

impl TransferRecord {
    /// For a hold with a timeout: the ledger time at which it expires.
    pub fn expires_at_ns(&self) -> Option<u64> {
        (self.kind == TransferKind::Pending && self.timeout_s > 0).then(|| {
            self.timestamp_ns
                .saturating_add(u64::from(self.timeout_s) * NS_PER_S)
        })
    }
}

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PendingState {
    /// Open: the amount is reserved.
    Pending,
    /// Posted (fully or partially).
    Posted,
    /// Voided by request.
    Voided,
    /// Voided by the ledger when its timeout passed.
    Expired,
}

impl PendingState {
    /// The stored form.
    pub fn to_u8(self) -> u8 {
        match self {
            PendingState::Pending => 0,
            PendingState::Posted => 1,
            PendingState::Voided => 2,
            PendingState::Expired => 3,
        }
    }

    /// Reads the stored form.
    pub fn from_u8(value: u8) -> Option<PendingState> {
        Some(match value {
            0 => PendingState::Pending,
            1 => PendingState::Posted,
            2 => PendingState::Voided,
            3 => PendingState::Expired,
            _ => return None,
        })
    }
}

/// A stored transfer and, for a hold, where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredTransfer {
    /// The immutable record.
    pub record: TransferRecord,
    /// `Some` exactly for holds.
    pub pending_state: Option<PendingState>,
}

/// An atomic unit of work: accounts to create (idempotently) and transfers to apply, all or
/// nothing (SPEC L2's linked groups).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Accounts to create first; an identical existing account is fine.
    pub accounts: Vec<Account>,
    /// Transfers to apply in order; later ones see the effects of earlier ones.
    pub transfers: Vec<Transfer>,
}

impl Group {
    /// A group of one transfer.
    pub fn transfer(transfer: Transfer) -> Group {
        Group {
            accounts: Vec::new(),
            transfers: vec![transfer],
        }
    }

    /// Every transfer id the group refers to (its own ids and the holds it posts or voids):
    /// what a store must load before [`apply_group`].
    pub fn transfer_ids(&self) -> impl Iterator<Item = TransferId> + '_ {
        self.transfers.iter().flat_map(|transfer| {
            let pending = match transfer.action {
                TransferAction::PostPending { pending_id, .. }
                | TransferAction::VoidPending { pending_id } => Some(pending_id),
                _ => None,
            };
            std::iter::once(transfer.id).chain(pending)
        })
    }

    /// Every account id the group refers to, given the transfers loaded for
    /// [`Group::transfer_ids`] (posts and voids name their accounts through their hold, and
    /// a retry through the original).
    pub fn account_ids<'a>(
        &'a self,
        loaded: impl Fn(TransferId) -> Option<TransferRecord> + 'a,
    ) -> impl Iterator<Item = AccountId> + 'a {
        let created = self.accounts.iter().map(|account| account.id);
        let named = self.transfer_ids().flat_map(move |id| {
            let record = loaded(id);
            record
                .map(|record| [record.debit_account_id, record.credit_account_id])
                .into_iter()
                .flatten()
        });
        let direct = self
            .transfers
            .iter()
            .flat_map(|transfer| match transfer.action {
                TransferAction::Single { debit, credit, .. }
                | TransferAction::Pending { debit, credit, .. } => vec![debit, credit],
                _ => Vec::new(),
            });
        created.chain(named).chain(direct)
    }
}

/// Whether a write created something or found it already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Applied now.
    Created,
    /// An identical one already existed: nothing changed (an idempotent retry).
    Exists,
}

/// The result of one transfer of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferOutcome {
    /// Created now, or already there.
    pub outcome: Outcome,
    /// The record as stored (for `Exists`, the original).
    pub record: TransferRecord,
}

/// The result of an applied group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOutcome {
    /// One per account of the group, in order.
    pub accounts: Vec<Outcome>,
    /// One per transfer of the group, in order.
    pub transfers: Vec<TransferOutcome>,
}

/// Why an account could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Zero is reserved.
    #[error("account id must not be zero")]
    IdMustNotBeZero,
    /// The id is taken by an account of another kind or owner.
    #[error("an account with this id exists with a different kind or owner: use another id")]
    ExistsWithDifferentKind,
    /// The id is taken by an account of another currency.
    #[error("an account with this id exists with a different currency: use another id")]
    ExistsWithDifferentCurrency,
    /// The id is taken by an account with other constraints.
    #[error("an account with this id exists with different flags: use another id")]
    ExistsWithDifferentFlags,
    /// Both constraints at once would make an account that can hold nothing.
    #[error("an account cannot limit both debits and credits: choose one flag")]
    FlagsAreMutuallyExclusive,
}

/// Why a transfer was refused. Named after TigerBeetle's `CreateTransferResult` where one fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Zero is reserved.
    #[error("transfer id must not be zero")]
    IdMustNotBeZero,
    /// An account id of zero.
    #[error("debit and credit account ids must not be zero")]
    AccountIdMustNotBeZero,
    /// Debit and credit are the same account.
    #[error("debit and credit must be different accounts")]
    AccountsMustBeDifferent,
    /// A zero amount moves nothing (to release a hold, void it).
    #[error("amount must be at least 1 minor unit (to release a hold, void it)")]
    AmountMustNotBeZero,
    /// More than any balance can hold.
    #[error("amount exceeds the largest amount farthing stores ({MAX_AMOUNT_MINOR} minor units)")]
    AmountTooLarge,
    /// A hold timeout beyond [`MAX_TIMEOUT_S`].
    #[error("timeout must be at most {MAX_TIMEOUT_S} seconds")]
    TimeoutTooLarge,
    /// The debit account does not exist.
    #[error("debit account {0} does not exist: create it first (or in the same group)")]
    DebitAccountNotFound(AccountId),
    /// The credit account does not exist.
    #[error("credit account {0} does not exist: create it first (or in the same group)")]
    CreditAccountNotFound(AccountId),
    /// The accounts or the transfer disagree on the currency.
    #[error("currency mismatch: the transfer is in {transfer} but the accounts hold {debit} and {credit}")]
    CurrencyMismatch {
        /// The transfer's currency.
        transfer: Currency,
        /// The debit account's.
        debit: Currency,
        /// The credit account's.
        credit: Currency,
    },
    /// The debit account would go below zero: insufficient funds.
    #[error("insufficient funds: the debit account has {available_minor} minor units available")]
    ExceedsCredits {
        /// What the debit account can still spend.
        available_minor: u64,
    },
    /// The credit account would take more credits than its debits allow.
    #[error("the credit account may not take more credits than its debits")]
    ExceedsDebits,
    /// A running total would exceed [`MAX_TOTAL_MINOR`] (unreachable in practice; kept so that
    /// no arithmetic can wrap).
    #[error("an account total would exceed the largest total farthing stores")]
    OverflowsBalance,
    /// A customer's or merchant's balance would exceed [`MAX_AMOUNT_MINOR`].
    #[error("the credited balance would exceed the largest amount farthing stores ({MAX_AMOUNT_MINOR} minor units)")]
    BalanceTooLarge,
    /// The hold to post or void does not exist.
    #[error("pending transfer {0} does not exist")]
    PendingTransferNotFound(TransferId),
    /// The transfer to post or void is not a hold.
    #[error("transfer {0} is not a pending transfer (hold)")]
    PendingTransferNotPending(TransferId),
    /// The hold was posted already.
    #[error("pending transfer {0} was already posted")]
    PendingTransferAlreadyPosted(TransferId),
    /// The hold was voided already.
    #[error("pending transfer {0} was already voided")]
    PendingTransferAlreadyVoided(TransferId),
    /// The hold's timeout passed.
    #[error("pending transfer {0} has expired")]
    PendingTransferExpired(TransferId),
    /// Posting more than the hold reserved.
    #[error("cannot post {requested_minor} minor units: the hold reserved only {pending_minor}")]
    ExceedsPendingTransferAmount {
        /// What was asked.
        requested_minor: u64,
        /// What the hold reserved.
        pending_minor: u64,
    },
    /// The id is taken by a transfer of another kind.
    #[error("transfer exists with a different kind: it is {0}")]
    ExistsWithDifferentKind(&'static str),
    /// The id is taken by a transfer with another debit account.
    #[error("transfer exists with a different debit account")]
    ExistsWithDifferentDebitAccount,
    /// The id is taken by a transfer with another credit account.
    #[error("transfer exists with a different credit account")]
    ExistsWithDifferentCreditAccount,
    /// The id is taken by a transfer in another currency.
    #[error("transfer exists with a different currency")]
    ExistsWithDifferentCurrency,
    /// The id is taken by a transfer of another amount.
    #[error("transfer exists with a different amount ({existing_minor} minor units)")]
    ExistsWithDifferentAmount {
        /// The stored amount.
        existing_minor: u64,
    },
    /// The id is taken by a post or void of another hold.
    #[error("transfer exists with a different pending transfer")]
    ExistsWithDifferentPendingId,
    /// The id is taken by a hold with another timeout.
    #[error("transfer exists with a different timeout")]
    ExistsWithDifferentTimeout,
    /// The id is taken by a transfer with another code.
    #[error("transfer exists with a different code")]
    ExistsWithDifferentCode,
    /// The id is taken by a transfer with another reference.
    #[error("transfer exists with a different reference")]
    ExistsWithDifferentReference,
    /// The same id appears twice in one group with different fields.
    #[error("the group repeats a transfer id")]
    DuplicateIdInGroup,
}

/// Why a group was refused; nothing of it was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group is empty.
    #[error("a group must contain at least one account or transfer")]
    Empty,
    /// Too many transfers or accounts.
    #[error("a group may hold at most {MAX_GROUP_TRANSFERS} transfers and {MAX_GROUP_ACCOUNTS} accounts")]
    TooLarge,
    /// An account of the group was refused.
    #[error("account {index} of the group: {error}")]
    Account {
        /// Its position in the group.
        index: usize,
        /// Why.
        error: AccountError,
    },
    /// A transfer of the group was refused.
    #[error("transfer {index} of the group: {error}")]
    Transfer {
        /// Its position in the group.
        index: usize,
        /// Why.
        error: TransferError,
    },
}

/// What the ledger reads and writes. A store implements it over data it preloaded for a
/// group; [`MemoryLedger`] implements it over maps.
///
/// The write methods are called only with the changes of a group that succeeded completely,
/// so an implementation never has to undo anything.
pub trait LedgerState {
    /// An account, if it exists.
    fn account(&self, id: AccountId) -> Option<&AccountState>;
    /// A transfer, if it exists.
    fn transfer(&self, id: TransferId) -> Option<&StoredTransfer>;
    /// The largest timestamp handed out so far.
    fn last_timestamp_ns(&self) -> u64;

    /// Stores a new account.
    fn insert_account(&mut self, state: AccountState);
    /// Replaces the totals of an existing account.
    fn update_balances(&mut self, id: AccountId, balances: Balances);
    /// Stores a new transfer (holds with [`PendingState::Pending`]).
    fn insert_transfer(&mut self, record: TransferRecord);
    /// Moves a hold out of [`PendingState::Pending`]; `at_ns` is the ledger time of the post,
    /// void or expiry that resolved it.
    fn resolve_pending(&mut self, id: TransferId, state: PendingState, at_ns: u64);
    /// Records the largest timestamp handed out.
    fn set_last_timestamp_ns(&mut self, timestamp_ns: u64);
}

/// Changes of a group not yet handed to the state: the group's all-or-nothing overlay.
struct Overlay<'s, S: ?Sized> {
    base: &'s S,
    accounts: Vec<(AccountState, bool)>,
    transfers: Vec<TransferRecord>,
    /// Holds resolved by the group: id, new state, timestamp of the post or void.
    resolved: Vec<(TransferId, PendingState, u64)>,
    last_timestamp_ns: u64,
}

impl<'s, S: LedgerState + ?Sized> Overlay<'s, S> {
    fn account(&self, id: AccountId) -> Option<AccountState> {
        self.accounts
            .iter()
            .find(|(state, _)| state.account.id == id)
            .map(|(state, _)| *state)
            .or_else(|| self.base.account(id).copied())
    }

    fn put_account(&mut self, state: AccountState, is_new: bool) {
        match self
            .accounts
            .iter_mut()
            .find(|(existing, _)| existing.account.id == state.account.id)
        {
            Some(slot) => slot.0 = state,
            None => self.accounts.push((state, is_new)),
        }
    }

    fn transfer(&self, id: TransferId) -> Option<StoredTransfer> {
        let stored = match self.transfers.iter().find(|record| record.id == id) {
            Some(record) => StoredTransfer {
                record: *record,
                pending_state: (record.kind == TransferKind::Pending)
                    .then_some(PendingState::Pending),
            },
            None => *self.base.transfer(id)?,
        };
        let resolved = self
            .resolved
            .iter()
            .find(|(pending_id, _, _)| *pending_id == id)
            .map(|(_, state, _)| *state);
        Some(StoredTransfer {
            pending_state: resolved.or(stored.pending_state),
            ..stored
        })
    }

    fn next_timestamp(&mut self, now_ns: u64) -> u64 {
        self.last_timestamp_ns = now_ns.max(self.last_timestamp_ns.saturating_add(1));
        self.last_timestamp_ns
    }

    fn into_changes(self) -> Changes {
        Changes {
            accounts: self.accounts,
            transfers: self.transfers,
            resolved: self.resolved,
            last_timestamp_ns: self.last_timestamp_ns,
        }
    }
}

/// The changes of a group that succeeded, detached from the state they were computed on.
struct Changes {
    accounts: Vec<(AccountState, bool)>,
    transfers: Vec<TransferRecord>,
    /// Holds resolved by the group: id, new state, timestamp of the post or void.
    resolved: Vec<(TransferId, PendingState, u64)>,
    last_timestamp_ns: u64,
}

impl Changes {
    fn apply(self, state: &mut impl LedgerState) {
        for (account, is_new) in self.accounts {
            debug_assert!(account.balances.satisfies(account.account.flags));
            if is_new {
                state.insert_account(account);
            } else {
                state.update_balances(account.account.id, account.balances);
            }
        }
        for record in self.transfers {
            state.insert_transfer(record);
        }
        for (id, pending_state, at_ns) in self.resolved {
            state.resolve_pending(id, pending_state, at_ns);
        }
        state.set_last_timestamp_ns(self.last_timestamp_ns);
    }
}

/// Applies a group at ledger time `now_ns`: all of it or, on the first refusal, none of it.
///
/// The state must hold every transfer of [`Group::transfer_ids`] and every account of
/// [`Group::account_ids`] that exists.
pub fn apply_group<S: LedgerState>(
    state: &mut S,
    group: &Group,
    now_ns: u64,
) -> Result<GroupOutcome, GroupError> {
    if group.accounts.is_empty() && group.transfers.is_empty() {
        return Err(GroupError::Empty);
    }
    if group.transfers.len() > MAX_GROUP_TRANSFERS || group.accounts.len() > MAX_GROUP_ACCOUNTS {
        return Err(GroupError::TooLarge);
    }
    let mut overlay = Overlay {
        base: &*state,
        accounts: Vec::new(),
        transfers: Vec::new(),
        resolved: Vec::new(),
        last_timestamp_ns: state.last_timestamp_ns(),
    };
    let mut outcome = GroupOutcome {
        accounts: Vec::with_capacity(group.accounts.len()),
        transfers: Vec::with_capacity(group.transfers.len()),
    };
    for (index, account) in group.accounts.iter().enumerate() {
        let result = create_account(&mut overlay, account, now_ns)
            .map_err(|error| GroupError::Account { index, error })?;
        outcome.accounts.push(result);
    }
    for (index, transfer) in group.transfers.iter().enumerate() {
        let result = create_transfer(&mut overlay, transfer, now_ns)
            .map_err(|error| GroupError::Transfer { index, error })?;
        outcome.transfers.push(result);
    }
    let changes = overlay.into_changes();
    changes.apply(state);
    Ok(outcome)
}

fn create_account<S: LedgerState + ?Sized>(
    overlay: &mut Overlay<'_, S>,
    account: &Account,
    now_ns: u64,
) -> Result<Outcome, AccountError> {
    if account.id.is_zero() {
        return Err(AccountError::IdMustNotBeZero);
    }
    if account.flags.debits_must_not_exceed_credits && account.flags.credits_must_not_exceed_debits
    {
        return Err(AccountError::FlagsAreMutuallyExclusive);
    }
    if let Some(existing) = overlay.account(account.id) {
        let existing = existing.account;
        return if existing.kind != account.kind {
            Err(AccountError::ExistsWithDifferentKind)
        } else if existing.currency != account.currency {
            Err(AccountError::ExistsWithDifferentCurrency)
        } else if existing.flags != account.flags {
            Err(AccountError::ExistsWithDifferentFlags)
        } else {
            Ok(Outcome::Exists)
        };
    }
    let created_at_ns = overlay.next_timestamp(now_ns);
    overlay.put_account(
        AccountState {
            account: *account,
            balances: Balances::default(),
            created_at_ns,
        },
        true,
    );
    Ok(Outcome::Created)
}

/// The stored form a request would have, for comparing a retry with the original.
struct Shape {
    kind: TransferKind,
    debit: Option<AccountId>,
    credit: Option<AccountId>,
    currency: Option<Currency>,
    amount_minor: Option<u64>,
    pending_id: Option<TransferId>,
    timeout_s: u32,
}

fn shape_of(transfer: &Transfer) -> Shape {
    match transfer.action {
        TransferAction::Single {
            debit,
            credit,
            currency,
            amount_minor,
        } => Shape {
            kind: TransferKind::Single,
            debit: Some(debit),
            credit: Some(credit),
            currency: Some(currency),
            amount_minor: Some(amount_minor),
            pending_id: None,
            timeout_s: 0,
        },
        TransferAction::Pending {
            debit,
            credit,
            currency,
            amount_minor,
            timeout_s,
        } => Shape {
            kind: TransferKind::Pending,
            debit: Some(debit),
            credit: Some(credit),
            currency: Some(currency),
            amount_minor: Some(amount_minor),
            pending_id: None,
            timeout_s,
        },
        TransferAction::PostPending {
            pending_id,
            amount_minor,
        } => Shape {
            kind: TransferKind::PostPending,
            debit: None,
            credit: None,
            currency: None,
            amount_minor,
            pending_id: Some(pending_id),
            timeout_s: 0,
        },
        TransferAction::VoidPending { pending_id } => Shape {
            kind: TransferKind::VoidPending,
            debit: None,
            credit: None,
            currency: None,
            amount_minor: None,
            pending_id: Some(pending_id),
            timeout_s: 0,
        },
    }
}

/// Compares a retry with the stored original; `Ok` when they are the same request.
fn compare_with_existing<S: LedgerState + ?Sized>(
    overlay: &Overlay<'_, S>,
    transfer: &Transfer,
    existing: &TransferRecord,
) -> Result<(), TransferError> {
    let shape = shape_of(transfer);
    if shape.kind != existing.kind {
        return Err(TransferError::ExistsWithDifferentKind(
            existing.kind.describe(),
        ));
    }
    if shape
        .debit
        .is_some_and(|debit| debit != existing.debit_account_id)
    {
        return Err(TransferError::ExistsWithDifferentDebitAccount);
    }
    if shape
        .credit
        .is_some_and(|credit| credit != existing.credit_account_id)
    {
        return Err(TransferError::ExistsWithDifferentCreditAccount);
    }
    if shape
        .currency
        .is_some_and(|currency| currency != existing.currency)
    {
        return Err(TransferError::ExistsWithDifferentCurrency);
    }
    if shape.pending_id != existing.pending_id {
        return Err(TransferError::ExistsWithDifferentPendingId);
    }
    // A post of "the whole hold" equals a post of the hold's amount.
    let requested_minor = match (shape.kind, shape.amount_minor) {
        (TransferKind::PostPending, None) => existing
            .pending_id
            .and_then(|id| overlay.transfer(id))
            .map(|pending| pending.record.amount_minor),
        (TransferKind::VoidPending, _) => Some(existing.amount_minor),
        (_, amount) => amount,
    };
    if requested_minor != Some(existing.amount_minor) {
        return Err(TransferError::ExistsWithDifferentAmount {
            existing_minor: existing.amount_minor,
        });
    }
    if shape.timeout_s != existing.timeout_s {
        return Err(TransferError::ExistsWithDifferentTimeout);
    }
    if transfer.code != existing.code {
        return Err(TransferError::ExistsWithDifferentCode);
    }
    if transfer.reference != existing.reference {
        return Err(TransferError::ExistsWithDifferentReference);
    }
    Ok(())
}

fn create_transfer<S: LedgerState + ?Sized>(
    overlay: &mut Overlay<'_, S>,
    transfer: &Transfer,
    now_ns: u64,
) -> Result<TransferOutcome, TransferError> {
    if transfer.id.is_zero() {
        return Err(TransferError::IdMustNotBeZero);
    }
    // Existence first: a retry must report the original even if the balances have moved on
    // since, which a fresh validation would refuse.
    if let Some(existing) = overlay.transfer(transfer.id) {
        let created_in_group = overlay.transfers.iter().any(|t| t.id == transfer.id);
        compare_with_existing(overlay, transfer, &existing.record).map_err(|error| {
            if created_in_group {
                TransferError::DuplicateIdInGroup
            } else {
                error
            }
        })?;
        return Ok(TransferOutcome {
            outcome: Outcome::Exists,
            record: existing.record,
        });
    }
    let record = match transfer.action {
        TransferAction::Single {
            debit,
            credit,
            currency,
            amount_minor,
        } => {
            let timestamp_ns = overlay.next_timestamp(now_ns);
            let record = TransferRecord {
                id: transfer.id,
                kind: TransferKind::Single,
                debit_account_id: debit,
                credit_account_id: credit,
                currency,
                amount_minor,
                pending_id: None,
                timeout_s: 0,
                code: transfer.code,
                reference: transfer.reference,
                timestamp_ns,
            };
            book_new(overlay, &record)?;
            record
        }
        TransferAction::Pending {
            debit,
            credit,
            currency,
            amount_minor,
            timeout_s,
        } => {
            if timeout_s > MAX_TIMEOUT_S {
                return Err(TransferError::TimeoutTooLarge);
            }
            let timestamp_ns = overlay.next_timestamp(now_ns);
            let record = TransferRecord {
                id: transfer.id,
                kind: TransferKind::Pending,
                debit_account_id: debit,
                credit_account_id: credit,
                currency,
                amount_minor,
                pending_id: None,
                timeout_s,
                code: transfer.code,
                reference: transfer.reference,
                timestamp_ns,
            };
            book_new(overlay, &record)?;
            record
        }
        TransferAction::PostPending {
            pending_id,
            amount_minor,
        } => resolve_hold(overlay, transfer, pending_id, amount_minor, now_ns)?,
        TransferAction::VoidPending { pending_id } => {
            resolve_hold(overlay, transfer, pending_id, None, now_ns)?
        }
    };
    overlay.transfers.push(record);
    Ok(TransferOutcome {
        outcome: Outcome::Created,
        record,
    })
}

fn checked_total(value: u128, add: u64) -> Result<u128, TransferError> {
    value
        .checked_add(u128::from(add))
        .filter(|total| *total <= MAX_TOTAL_MINOR)
        .ok_or(TransferError::OverflowsBalance)
}

/// Whether a constrained account's holdings stay within [`MAX_AMOUNT_MINOR`] (unconstrained
/// accounts, the outside world, are bounded only by their totals).
fn within_max_balance(balances: &Balances, flags: AccountFlags) -> bool {
    let constrained = flags.debits_must_not_exceed_credits || flags.credits_must_not_exceed_debits;
    !constrained || balances.held(flags) <= i128::from(MAX_AMOUNT_MINOR)
}

/// Validates and books a new single transfer or hold on its two accounts.
fn book_new<S: LedgerState + ?Sized>(
    overlay: &mut Overlay<'_, S>,
    record: &TransferRecord,
) -> Result<(), TransferError> {
    if record.debit_account_id.is_zero() || record.credit_account_id.is_zero() {
        return Err(TransferError::AccountIdMustNotBeZero);
    }
    if record.debit_account_id == record.credit_account_id {
        return Err(TransferError::AccountsMustBeDifferent);
    }
    if record.amount_minor == 0 {
        return Err(TransferError::AmountMustNotBeZero);
    }
    if record.amount_minor > MAX_AMOUNT_MINOR {
        return Err(TransferError::AmountTooLarge);
    }
    let mut debit = overlay
        .account(record.debit_account_id)
        .ok_or(TransferError::DebitAccountNotFound(record.debit_account_id))?;
    let mut credit =
        overlay
            .account(record.credit_account_id)
            .ok_or(TransferError::CreditAccountNotFound(
                record.credit_account_id,
            ))?;
    if debit.account.currency != record.currency || credit.account.currency != record.currency {
        return Err(TransferError::CurrencyMismatch {
            transfer: record.currency,
            debit: debit.account.currency,
            credit: credit.account.currency,
        });
    }
    let amount = record.amount_minor;
    let pending = record.kind == TransferKind::Pending;
    let (debits, credits) = if pending {
        (
            &mut debit.balances.debits_pending,
            &mut credit.balances.credits_pending,
        )
    } else {
        (
            &mut debit.balances.debits_posted,
            &mut credit.balances.credits_posted,
        )
    };
    *debits = checked_total(*debits, amount)?;
    *credits = checked_total(*credits, amount)?;
    if !debit.balances.satisfies(debit.account.flags) {
        // The totals before this transfer satisfied the flags, so `available` is in range.
        let before = debit.balances.available() + i128::from(amount);
        return Err(TransferError::ExceedsCredits {
            available_minor: u64::try_from(before.max(0)).unwrap_or(0),
        });
    }
    if !credit.balances.satisfies(credit.account.flags) {
        return Err(TransferError::ExceedsDebits);
    }
    if !within_max_balance(&credit.balances, credit.account.flags)
        || !within_max_balance(&debit.balances, debit.account.flags)
    {
        return Err(TransferError::BalanceTooLarge);
    }
    overlay.put_account(debit, false);
    overlay.put_account(credit, false);
    Ok(())
}

/// Posts (`post_minor` = `Some`, or `None` for a void request with `VoidPending`) or voids a
/// hold, releasing what it reserved.
fn resolve_hold<S: LedgerState + ?Sized>(
    overlay: &mut Overlay<'_, S>,
    transfer: &Transfer,
    pending_id: TransferId,
    post_minor: Option<u64>,
    now_ns: u64,
) -> Result<TransferRecord, TransferError> {
    let posting = matches!(transfer.action, TransferAction::PostPending { .. });
    let hold = overlay
        .transfer(pending_id)
        .ok_or(TransferError::PendingTransferNotFound(pending_id))?;
    match hold.pending_state {
        None => return Err(TransferError::PendingTransferNotPending(pending_id)),
        Some(PendingState::Posted) => {
            return Err(TransferError::PendingTransferAlreadyPosted(pending_id))
        }
        Some(PendingState::Voided) => {
            return Err(TransferError::PendingTransferAlreadyVoided(pending_id))
        }
        Some(PendingState::Expired) => {
            return Err(TransferError::PendingTransferExpired(pending_id))
        }
        Some(PendingState::Pending) => {}
    }
    let hold = hold.record;
    if hold.expires_at_ns().is_some_and(|at| now_ns >= at) {
        return Err(TransferError::PendingTransferExpired(pending_id));
    }
    let reserved = hold.amount_minor;
    let amount_minor = if posting {
        let requested = post_minor.unwrap_or(reserved);
        if requested == 0 {
            return Err(TransferError::AmountMustNotBeZero);
        }
        if requested > reserved {
            return Err(TransferError::ExceedsPendingTransferAmount {
                requested_minor: requested,
                pending_minor: reserved,
            });
        }
        requested
    } else {
        reserved
    };
    let mut debit = overlay
        .account(hold.debit_account_id)
        .ok_or(TransferError::DebitAccountNotFound(hold.debit_account_id))?;
    let mut credit = overlay
        .account(hold.credit_account_id)
        .ok_or(TransferError::CreditAccountNotFound(hold.credit_account_id))?;
    // The hold is booked in these totals, so releasing it cannot underflow unless the store is
    // corrupt; refuse rather than wrap.
    debit.balances.debits_pending = debit
        .balances
        .debits_pending
        .checked_sub(u128::from(reserved))
        .ok_or(TransferError::OverflowsBalance)?;
    credit.balances.credits_pending = credit
        .balances
        .credits_pending
        .checked_sub(u128::from(reserved))
        .ok_or(TransferError::OverflowsBalance)?;
    if posting {
        debit.balances.debits_posted = checked_total(debit.balances.debits_posted, amount_minor)?;
        credit.balances.credits_posted =
            checked_total(credit.balances.credits_posted, amount_minor)?;
    }
    // Posting at most what was reserved keeps a balance that satisfied its flags satisfying them.
    debug_assert!(debit.balances.satisfies(debit.account.flags));
    debug_assert!(credit.balances.satisfies(credit.account.flags));
    overlay.put_account(debit, false);
    overlay.put_account(credit, false);
    let timestamp_ns = overlay.next_timestamp(now_ns);
    overlay.resolved.push((
        pending_id,
        if posting {
            PendingState::Posted
        } else {
            PendingState::Voided
        },
        timestamp_ns,
    ));
    Ok(TransferRecord {
        id: transfer.id,
        kind: if posting {
            TransferKind::PostPending
        } else {
            TransferKind::VoidPending
        },
        debit_account_id: hold.debit_account_id,
        credit_account_id: hold.credit_account_id,
        currency: hold.currency,
        amount_minor,
        pending_id: Some(pending_id),
        timeout_s: 0,
        code: transfer.code,
        reference: transfer.reference,
        timestamp_ns,
    })
}

/// Voids the hold `id` if its timeout has passed at `now_ns`; returns whether it did.
///
/// A store finds candidates through an index on expiry time, so the work is proportional to
/// what expires; this function re-checks each one, so a stale candidate is harmless.
pub fn expire_pending<S: LedgerState>(state: &mut S, id: TransferId, now_ns: u64) -> bool {
    let Some(hold) = state.transfer(id).copied() else {
        return false;
    };
    if hold.pending_state != Some(PendingState::Pending)
        || hold.record.expires_at_ns().is_none_or(|at| now_ns < at)
    {
        return false;
    }
    let record = hold.record;
    let (Some(debit), Some(credit)) = (
        state.account(record.debit_account_id).copied(),
        state.account(record.credit_account_id).copied(),
    ) else {
        return false;
    };
    let (Some(debits_pending), Some(credits_pending)) = (
        debit
            .balances
            .debits_pending
            .checked_sub(u128::from(record.amount_minor)),
        credit
            .balances
            .credits_pending
            .checked_sub(u128::from(record.amount_minor)),
    ) else {
        return false;
    };
    state.update_balances(
        debit.account.id,
        Balances {
            debits_pending,
            ..debit.balances
        },
    );
    state.update_balances(
        credit.account.id,
        Balances {
            credits_pending,
            ..credit.balances
        },
    );
    let at_ns = now_ns.max(state.last_timestamp_ns().saturating_add(1));
    state.resolve_pending(id, PendingState::Expired, at_ns);
    state.set_last_timestamp_ns(at_ns);
    true
}

/// A [`LedgerState`] over in-memory maps: the reference for tests and simulations, and a
/// description of what a store must do.
#[derive(Clone, Debug, Default)]
pub struct MemoryLedger {
    accounts: std::collections::HashMap<AccountId, AccountState>,
    transfers: std::collections::HashMap<TransferId, StoredTransfer>,
    last_timestamp_ns: u64,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    /// Every account.
    pub fn accounts(&self) -> impl Iterator<Item = &AccountState> {
        self.accounts.values()
    }

    /// Every transfer.
    pub fn transfers(&self) -> impl Iterator<Item = &StoredTransfer> {
        self.transfers.values()
    }

    /// Holds that are open and have a timeout, with their expiry time.
    pub fn open_holds_with_timeout(&self) -> impl Iterator<Item = (TransferId, u64)> + '_ {
        self.transfers.values().filter_map(|stored| {
            (stored.pending_state == Some(PendingState::Pending))
                .then(|| {
                    stored
                        .record
                        .expires_at_ns()
                        .map(|at| (stored.record.id, at))
                })
                .flatten()
        })
    }
}

impl LedgerState for MemoryLedger {
    fn account(&self, id: AccountId) -> Option<&AccountState> {
        self.accounts.get(&id)
    }

    fn transfer(&self, id: TransferId) -> Option<&StoredTransfer> {
        self.transfers.get(&id)
    }

    fn last_timestamp_ns(&self) -> u64 {
        self.last_timestamp_ns
    }

    fn insert_account(&mut self, state: AccountState) {
        self.accounts.insert(state.account.id, state);
    }

    fn update_balances(&mut self, id: AccountId, balances: Balances) {
        if let Some(state) = self.accounts.get_mut(&id) {
            state.balances = balances;
        }
    }

    fn insert_transfer(&mut self, record: TransferRecord) {
        let pending_state = (record.kind == TransferKind::Pending).then_some(PendingState::Pending);
        self.transfers.insert(
            record.id,
            StoredTransfer {
                record,
                pending_state,
            },
        );
    }

    fn resolve_pending(&mut self, id: TransferId, state: PendingState, _at_ns: u64) {
        if let Some(stored) = self.transfers.get_mut(&id) {
            stored.pending_state = Some(state);
        }
    }

    fn set_last_timestamp_ns(&mut self, timestamp_ns: u64) {
        self.last_timestamp_ns = timestamp_ns;
    }
}

/// A broken ledger invariant (SPEC L5), as found by [`check_invariants`] or the store's audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Per currency, credits and debits of all accounts differ.
    Unbalanced {
        /// The currency.
        currency: Currency,
        /// Sum of credits minus sum of debits (posted).
        posted_difference: i128,
        /// The same for pending totals.
        pending_difference: i128,
    },
    /// An account's stored totals differ from the sums of its transfers.
    BalanceMismatch {
        /// The account.
        account: AccountId,
        /// Stored totals.
        stored: Balances,
        /// Totals recomputed from transfers.
        computed: Balances,
    },
    /// An account's totals break its flags (e.g. a negative customer balance).
    ConstraintBroken {
        /// The account.
        account: AccountId,
        /// Its totals.
        balances: Balances,
    },
    /// A transfer names an account or hold that does not exist, or of another currency.
    DanglingReference {
        /// The transfer.
        transfer: TransferId,
        /// What is missing or wrong.
        detail: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Unbalanced {
                currency,
                posted_difference,
                pending_difference,
            } => write!(
                f,
                "{currency}: balances do not sum to zero (posted credits - debits = {posted_difference}, pending = {pending_difference})"
            ),
            Violation::BalanceMismatch {
                account,
                stored,
                computed,
            } => write!(
                f,
                "account {account}: stored totals {stored:?} differ from the sums of its transfers {computed:?}"
            ),
            Violation::ConstraintBroken { account, balances } => write!(
                f,
                "account {account}: totals {balances:?} break its balance constraint (below zero)"
            ),
            Violation::DanglingReference { transfer, detail } => {
                write!(f, "transfer {transfer}: {detail}")
            }
        }
    }
}

/// Recomputes every invariant of SPEC L5 from complete lists of accounts and transfers, in one
/// pass and in memory proportional to the number of accounts and holds (not transfers), so a
/// store can stream its tables through it.
///
/// Feed every account first, then every transfer, then call [`Auditor::finish`].
#[derive(Debug, Default)]
pub struct Auditor {
    accounts: std::collections::HashMap<AccountId, (AccountState, [u128; 4])>,
    /// Per hold: its state and how many posts and voids name it.
    holds: std::collections::HashMap<TransferId, (Option<PendingState>, u32, u32)>,
    /// Posts and voids whose hold has not been seen yet.
    resolutions: Vec<(TransferId, TransferId, TransferKind)>,
    violations: Vec<Violation>,
    transfers_seen: u64,
}

impl Auditor {
    /// An auditor that has seen nothing.
    pub fn new() -> Auditor {
        Auditor::default()
    }

    /// Adds an account (before any transfer).
    pub fn add_account(&mut self, state: &AccountState) {
        self.accounts.insert(state.account.id, (*state, [0; 4]));
    }

    /// Adds a transfer.
    pub fn add_transfer(&mut self, stored: &StoredTransfer) {
        self.transfers_seen += 1;
        let record = &stored.record;
        for (role, id) in [
            ("debit", record.debit_account_id),
            ("credit", record.credit_account_id),
        ] {
            match self.accounts.get(&id) {
                None => self.violations.push(Violation::DanglingReference {
                    transfer: record.id,
                    detail: format!("{role} account {id} does not exist"),
                }),
                Some((state, _)) if state.account.currency != record.currency => {
                    self.violations.push(Violation::DanglingReference {
                        transfer: record.id,
                        detail: format!(
                            "{role} account {id} holds {} but the transfer is in {}",
                            state.account.currency, record.currency
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        match record.kind {
            TransferKind::Pending => {
                let entry = self.holds.entry(record.id).or_default();
                entry.0 = stored.pending_state;
                if stored.pending_state.is_none() {
                    self.violations.push(Violation::DanglingReference {
                        transfer: record.id,
                        detail: "hold has no pending state".to_owned(),
                    });
                }
            }
            TransferKind::PostPending | TransferKind::VoidPending => match record.pending_id {
                Some(pending_id) => self.resolutions.push((record.id, pending_id, record.kind)),
                None => self.violations.push(Violation::DanglingReference {
                    transfer: record.id,
                    detail: "post or void without a pending transfer id".to_owned(),
                }),
            },
            TransferKind::Single => {}
        }
        let amount = u128::from(record.amount_minor);
        let open_hold = stored.pending_state == Some(PendingState::Pending);
        let (debit_slot, credit_slot) = if record.kind.is_posting() {
            (1, 3)
        } else if open_hold {
            (0, 2)
        } else {
            return;
        };
        if let Some((_, sums)) = self.accounts.get_mut(&record.debit_account_id) {
            sums[debit_slot] = sums[debit_slot].saturating_add(amount);
        }
        if let Some((_, sums)) = self.accounts.get_mut(&record.credit_account_id) {
            sums[credit_slot] = sums[credit_slot].saturating_add(amount);
        }
    }

    /// How many transfers were added.
    pub fn transfers_seen(&self) -> u64 {
        self.transfers_seen
    }

    /// How many accounts were added.
    pub fn accounts_seen(&self) -> usize {
        self.accounts.len()
    }

    /// Every violation found, in a stable order.
    pub fn finish(mut self) -> Vec<Violation> {
        use std::collections::BTreeMap;
        for (id, pending_id, kind) in std::mem::take(&mut self.resolutions) {
            match self.holds.get_mut(&pending_id) {
                Some(hold) if kind == TransferKind::PostPending => hold.1 += 1,
                Some(hold) => hold.2 += 1,
                None => self.violations.push(Violation::DanglingReference {
                    transfer: id,
                    detail: format!("pending transfer {pending_id} does not exist"),
                }),
            }
        }
        let mut holds: Vec<_> = self.holds.iter().collect();
        holds.sort_by_key(|(id, _)| **id);
        for (id, (state, posts, voids)) in holds {
            let expected = match state {
                Some(PendingState::Posted) => (1, 0),
                Some(PendingState::Voided) => (0, 1),
                _ => (0, 0),
            };
            if (*posts, *voids) != expected {
                self.violations.push(Violation::DanglingReference {
                    transfer: *id,
                    detail: format!(
                        "hold in state {state:?} is named by {posts} posts and {voids} voids"
                    ),
                });
            }
        }
        let mut sums: BTreeMap<Currency, (i128, i128)> = BTreeMap::new();
        let mut ids: Vec<&AccountId> = self.accounts.keys().collect();
        ids.sort();
        for id in ids {
            let (state, c) = &self.accounts[id];
            let b = state.balances;
            // Wrapping sums: each account's difference fits an i128, and the per-currency
            // total must come back to exactly zero, which wrapping arithmetic preserves.
            let sum = sums.entry(state.account.currency).or_default();
            sum.0 = sum
                .0
                .wrapping_add(signed(b.credits_posted).wrapping_sub(signed(b.debits_posted)));
            sum.1 = sum
                .1
                .wrapping_add(signed(b.credits_pending).wrapping_sub(signed(b.debits_pending)));
            let computed = Balances {
                debits_pending: c[0],
                debits_posted: c[1],
                credits_pending: c[2],
                credits_posted: c[3],
            };
            if computed != b {
                self.violations.push(Violation::BalanceMismatch {
                    account: *id,
                    stored: b,
                    computed,
                });
            }
            if !b.satisfies(state.account.flags) {
                self.violations.push(Violation::ConstraintBroken {
                    account: *id,
                    balances: b,
                });
            }
        }
        for (currency, (posted, pending)) in sums {
            if posted != 0 || pending != 0 {
                self.violations.push(Violation::Unbalanced {
                    currency,
                    posted_difference: posted,
                    pending_difference: pending,
                });
            }
        }
        self.violations
    }
}

/// [`Auditor`] over complete in-memory lists: for tests and simulations.
pub fn check_invariants<'a>(
    accounts: impl IntoIterator<Item = &'a AccountState>,
    transfers: impl IntoIterator<Item = &'a StoredTransfer>,
) -> Vec<Violation> {
    let mut auditor = Auditor::new();
    for state in accounts {
        auditor.add_account(state);
    }
    for stored in transfers {
        auditor.add_transfer(stored);
    }
    auditor.finish()
}
