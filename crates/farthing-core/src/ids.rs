//! 128-bit identifiers of ledger objects.
//!
//! Identifiers are chosen by the caller (as in TigerBeetle), which is what makes every write
//! idempotent: a retry carries the same id. Zero is reserved as "none" and is never a valid id.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub u128);

        impl $name {
            /// The id as 16 big-endian bytes: the form stored in databases, so that byte order
            /// equals numeric order.
            pub fn to_be_bytes(self) -> [u8; 16] {
                self.0.to_be_bytes()
            }

            /// Reads the stored form; `None` unless exactly 16 bytes.
            pub fn from_be_slice(bytes: &[u8]) -> Option<Self> {
                let array: [u8; 16] = bytes.try_into().ok()?;
                Some(Self(u128::from_be_bytes(array)))
            }

            /// Whether this is the reserved zero id.
            pub fn is_zero(self) -> bool {
                self.0 == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:032x})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a ledger account.
    AccountId
);
id_type!(
    /// Identifies a ledger transfer; doubles as its idempotency key.
    TransferId
);
id_type!(
    /// Identifies a merchant (the owner of merchant accounts and of customers).
    MerchantId
);
id_type!(
    /// Identifies a customer of one merchant.
    CustomerId
);

impl TransferId {
    /// A deterministic transfer id for a booking that must happen at most once: SHA-256 of
    /// `domain` (a tag naming the kind of booking and its version, e.g.
    /// `"farthing/rail-payment-credit/v2"`), then each part preceded by its length, truncated to
    /// 128 bits (never zero). The same booking asked for twice gets the same id, so the ledger
    /// itself refuses the second one.
    pub fn derived(domain: &str, parts: &[&[u8]]) -> TransferId {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(domain.as_bytes());
        hash.update([0]);
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        TransferId(u128::from_be_bytes(bytes).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_sorts_like_numbers() {
        let small = TransferId(5);
        let big = TransferId(u128::MAX - 1);
        assert_eq!(TransferId::from_be_slice(&big.to_be_bytes()), Some(big));
        assert!(small.to_be_bytes() < big.to_be_bytes());
        assert_eq!(TransferId::from_be_slice(&[1, 2, 3]), None);
        assert_eq!(format!("{small}"), "00000000000000000000000000000005");
    }

    #[test]
    fn derived_ids_are_stable_and_keep_their_parts_apart() {
        let a = TransferId::derived("t/v1", &[b"ab", b"c"]);
        assert_eq!(a, TransferId::derived("t/v1", &[b"ab", b"c"]));
        assert_ne!(a, TransferId::derived("t/v1", &[b"a", b"bc"]));
        assert_ne!(a, TransferId::derived("t/v2", &[b"ab", b"c"]));
        assert!(!a.is_zero());
    }
}

/// Crockford base32 (lower case), as in ULIDs: 26 characters hold 128 bits.
const BASE32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

fn encode_base32(value: u128) -> String {
    let mut out = [0u8; 26];
    for (index, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - index);
        *slot = BASE32[((value >> shift) & 0x1f) as usize];
    }
    out.iter().map(|&byte| char::from(byte)).collect()
}

fn decode_base32(text: &str) -> Option<u128> {
    if text.len() != 26 {
        return None;
    }
    let mut value: u128 = 0;
    for (index, byte) in text.bytes().enumerate() {
        let lower = byte.to_ascii_lowercase();
        let digit = BASE32.iter().position(|&c| c == lower)? as u128;
        // The first character carries only 3 bits (26 * 5 = 130).
        if index == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | digit;
    }
    Some(value)
}

/// An id that the Merchant API shows with a type prefix (`inv_…`, `cus_…`), like Stripe's:
/// the prefix says what the id names, so passing a charge id where an invoice id belongs is
/// caught at parse time.
pub trait PublicId: Sized + Copy {
    /// The prefix without the underscore, e.g. `"inv"`.
    const PREFIX: &'static str;
    /// What the id names, for error messages ("invoice").
    const NOUN: &'static str;
    /// The raw value.
    fn raw(self) -> u128;
    /// From a raw value.
    fn from_raw(raw: u128) -> Self;

    /// The public form, e.g. `inv_01jd6w9c4yq5v0d2s3m1k7x8ze`.
    fn encode(self) -> String {
        format!("{}_{}", Self::PREFIX, encode_base32(self.raw()))
    }

    /// Parses the public form; the error says what was expected.
    fn parse(text: &str) -> Result<Self, IdError> {
        let wrong = || IdError {
            text: text.chars().take(64).collect(),
            expected: Self::PREFIX,
            noun: Self::NOUN,
        };
        let (prefix, body) = text.split_once('_').ok_or_else(wrong)?;
        if prefix != Self::PREFIX {
            return Err(wrong());
        }
        match decode_base32(body) {
            Some(raw) if raw != 0 => Ok(Self::from_raw(raw)),
            _ => Err(wrong()),
        }
    }
}

/// A string that is not a valid id of the expected kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid {noun} id: expected {expected}_ followed by 26 base32 characters")]
pub struct IdError {
    /// What was given (cut to 64 characters).
    pub text: String,
    /// The expected prefix.
    pub expected: &'static str,
    /// What the id names.
    pub noun: &'static str,
}

/// Time-ordered raw id from a millisecond timestamp and 80 random bits (the ULID layout), so
/// that ids sort by creation time and new rows append to their table's index. The caller
/// supplies both parts: the domain reads no clock and draws no randomness.
pub fn time_ordered_raw(unix_ms: u64, random: u128) -> u128 {
    (u128::from(unix_ms & 0xffff_ffff_ffff) << 80) | (random & ((1u128 << 80) - 1)) | 1
}

macro_rules! public_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $noun:literal) => {
        id_type!($(#[$doc])* $name);

        impl PublicId for $name {
            const PREFIX: &'static str = $prefix;
            const NOUN: &'static str = $noun;
            fn raw(self) -> u128 {
                self.0
            }
            fn from_raw(raw: u128) -> Self {
                Self(raw)
            }
        }
    };
}

public_id!(
    /// Identifies an invoice.
    InvoiceId, "inv", "invoice"
);
public_id!(
    /// Identifies a charge against a customer balance.
    ChargeId, "chg", "charge"
);
public_id!(
    /// Identifies a refund.
    RefundId, "ref", "refund"
);
public_id!(
    /// Identifies an event.
    EventId, "evt", "event"
);
public_id!(
    /// Identifies a subscription (a Telegram Stars subscription, SPEC PR4).
    SubscriptionId, "sub", "subscription"
);
public_id!(
    /// Identifies a customer's refund request, made in the bot and approved or declined by
    /// the merchant.
    RefundRequestId, "rrq", "refund request"
);
public_id!(
    /// Identifies a webhook endpoint.
    WebhookEndpointId, "we", "webhook endpoint"
);
public_id!(
    /// Identifies an entry of a merchant's audit log of administrative actions.
    AuditEntryId, "aud", "audit log entry"
);
public_id!(
    /// Identifies a recorded risk decision (allow, step up, refuse) with its rule and reason.
    RiskDecisionId, "rsk", "risk decision"
);
public_id!(
    /// Identifies an entry of a customer's statement: the ledger time of the movement in the
    /// upper 64 bits, the low 64 bits of the balance account's id below.
    BalanceEntryId, "ble", "balance entry"
);

impl PublicId for MerchantId {
    const PREFIX: &'static str = "mer";
    const NOUN: &'static str = "merchant";
    fn raw(self) -> u128 {
        self.0
    }
    fn from_raw(raw: u128) -> Self {
        Self(raw)
    }
}

impl PublicId for CustomerId {
    const PREFIX: &'static str = "cus";
    const NOUN: &'static str = "customer";
    fn raw(self) -> u128 {
        self.0
    }
    fn from_raw(raw: u128) -> Self {
        Self(raw)
    }
}

#[cfg(test)]
mod public_id_tests {
    use super::*;

    #[test]
    fn public_ids_round_trip_and_check_their_prefix() {
        let id = InvoiceId(time_ordered_raw(1_763_700_000_000, 0xdead_beef));
        let text = id.encode();
        assert!(text.starts_with("inv_"));
        assert_eq!(text.len(), 4 + 26);
        assert_eq!(InvoiceId::parse(&text), Ok(id));
        assert_eq!(
            InvoiceId::parse(&text.to_uppercase().replacen("INV", "inv", 1)),
            Ok(id)
        );
        let as_charge = text.replacen("inv_", "chg_", 1);
        let error = InvoiceId::parse(&as_charge).unwrap_err();
        assert!(error.to_string().contains("not a valid invoice id"));
        assert!(ChargeId::parse(&as_charge).is_ok());
        assert!(InvoiceId::parse("inv_").is_err());
        assert!(
            InvoiceId::parse("inv_8zzzzzzzzzzzzzzzzzzzzzzzzz").is_err(),
            "over 128 bits"
        );
        assert!(
            InvoiceId::parse("inv_0000000000000000000000000u").is_err(),
            "u is not base32"
        );
        assert!(
            InvoiceId::parse("inv_00000000000000000000000000").is_err(),
            "zero is reserved"
        );
        assert_eq!(
            CustomerId(u128::MAX).encode(),
            "cus_7zzzzzzzzzzzzzzzzzzzzzzzzz"
        );
    }

    #[test]
    fn time_ordered_ids_sort_by_time() {
        let early = time_ordered_raw(1_000, u128::MAX);
        let late = time_ordered_raw(1_001, 0);
        assert!(early < late);
        assert!(InvoiceId(early).encode() < InvoiceId(late).encode());
    }
}
