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
}
