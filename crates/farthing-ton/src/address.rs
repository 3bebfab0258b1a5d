//! TON addresses in every form a merchant or an indexer writes them, normalised to one value.
//!
//! - raw: `<workchain>:<64 hex>` (upper or lower case; toncenter writes upper case);
//! - user-friendly: 36 bytes `flags ‖ workchain ‖ hash ‖ CRC16` in base64 or base64url
//!   (48 characters), the flags saying bounceable (`E…`/`k…`) or not (`U…`/`0…`) and whether
//!   the address is meant for testnet only (`k…`/`0…`). The CRC16 is checked.
//!
//! Two forms of one account compare equal as [`Address`]; the flags are kept beside it
//! ([`Parsed`]) only to refuse a testnet-only address on mainnet.

use std::fmt;

use tonlib_core::TonAddress;

/// The TON network a wallet lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// The main network.
    Mainnet,
    /// The test network.
    Testnet,
}

impl Network {
    /// `"mainnet"` or `"testnet"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
        }
    }

    /// Reads `"mainnet"` or `"testnet"`.
    pub fn parse(text: &str) -> Option<Network> {
        match text {
            "mainnet" => Some(Network::Mainnet),
            "testnet" => Some(Network::Testnet),
            _ => None,
        }
    }

    /// The network id TON Connect's `sendTransaction` takes (`"-239"` mainnet, `"-3"` testnet).
    pub fn ton_connect_id(self) -> &'static str {
        match self {
            Network::Mainnet => "-239",
            Network::Testnet => "-3",
        }
    }
}

/// An account: workchain and 256-bit account id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// 0 (basechain) or -1 (masterchain).
    pub workchain: i32,
    /// The account id.
    pub hash: [u8; 32],
}

/// An address as written, with the flags of its user-friendly form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The account.
    pub address: Address,
    /// `Some(bounceable)` for a user-friendly form; `None` for a raw one.
    pub bounceable: Option<bool>,
    /// `Some(testnet_only)` for a user-friendly form; `None` for a raw one.
    pub testnet_only: Option<bool>,
}

/// Why a text is not an address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressError(pub String);

impl Address {
    /// Reads any form: raw (either case), or user-friendly in base64 or base64url with its
    /// CRC16 checked. Only workchains 0 and -1 exist.
    pub fn parse(text: &str) -> Result<Parsed, AddressError> {
        let text = text.trim();
        let parsed = if text.contains(':') {
            let address = TonAddress::from_hex_str(text).map_err(|_| {
                AddressError(
                    "a raw TON address is <workchain>:<64 hex digits>, e.g. 0:83df…".to_owned(),
                )
            })?;
            Parsed {
                address: Address::from_tonlib(&address),
                bounceable: None,
                testnet_only: None,
            }
        } else if text.len() == 48 {
            let friendly = if text.contains(['-', '_']) {
                TonAddress::from_base64_url_flags(text)
            } else if text.contains(['+', '/']) {
                TonAddress::from_base64_std_flags(text)
            } else {
                TonAddress::from_base64_url_flags(text)
                    .or_else(|_| TonAddress::from_base64_std_flags(text))
            };
            let (address, non_bounceable, testnet) = friendly.map_err(|_| {
                AddressError(
                    "not a valid user-friendly TON address (wrong flags or checksum: check for a typo)"
                        .to_owned(),
                )
            })?;
            Parsed {
                address: Address::from_tonlib(&address),
                bounceable: Some(!non_bounceable),
                testnet_only: Some(testnet),
            }
        } else {
            return Err(AddressError(
                "a TON address is 48 characters (EQ…/UQ…, kQ…/0Q… on testnet) or <workchain>:<64 hex digits>"
                    .to_owned(),
            ));
        };
        if !matches!(parsed.address.workchain, 0 | -1) {
            return Err(AddressError(format!(
                "workchain {} does not exist (0 or -1)",
                parsed.address.workchain
            )));
        }
        Ok(parsed)
    }

    /// The raw form as toncenter writes it: `0:` and upper-case hex.
    pub fn raw(&self) -> String {
        let mut out = format!("{}:", self.workchain);
        for byte in self.hash {
            out.push_str(&format!("{byte:02X}"));
        }
        out
    }

    /// The user-friendly form (base64url) for `network`: non-bounceable is what a payer's
    /// wallet should send to (a wallet never bounces a payment back for being undeployed).
    pub fn friendly(&self, bounceable: bool, network: Network) -> String {
        self.to_tonlib()
            .to_base64_url_flags(!bounceable, network == Network::Testnet)
    }

    pub(crate) fn from_tonlib(address: &TonAddress) -> Address {
        Address {
            workchain: address.workchain,
            hash: address.hash_part.clone().into(),
        }
    }

    pub(crate) fn to_tonlib(self) -> TonAddress {
        TonAddress::new(self.workchain, self.hash.into())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // USDT's master on mainnet, in the forms the TON documentation gives.
    const USDT_RAW: &str = "0:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe";
    const USDT_BOUNCEABLE: &str = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs";

    #[test]
    fn every_form_of_one_account_is_one_address() {
        let raw = Address::parse(USDT_RAW).expect("raw").address;
        let upper = Address::parse(&USDT_RAW.to_uppercase())
            .expect("upper")
            .address;
        let friendly = Address::parse(USDT_BOUNCEABLE).expect("friendly");
        assert_eq!(raw, upper);
        assert_eq!(raw, friendly.address);
        assert_eq!(friendly.bounceable, Some(true));
        assert_eq!(friendly.testnet_only, Some(false));
        assert_eq!(raw.raw(), USDT_RAW.to_uppercase());
        assert_eq!(raw.friendly(true, Network::Mainnet), USDT_BOUNCEABLE);
        // The non-bounceable and testnet forms read back to the same account with their flags.
        for (bounceable, network) in [
            (false, Network::Mainnet),
            (true, Network::Testnet),
            (false, Network::Testnet),
        ] {
            let text = raw.friendly(bounceable, network);
            let parsed = Address::parse(&text).expect("round trip");
            assert_eq!(parsed.address, raw);
            assert_eq!(parsed.bounceable, Some(bounceable));
            assert_eq!(parsed.testnet_only, Some(network == Network::Testnet));
        }
        // Standard base64 (with + and /) is accepted as well as base64url.
        let std = USDT_BOUNCEABLE.replace('-', "+").replace('_', "/");
        assert_eq!(Address::parse(&std).expect("std").address, raw);
    }

    #[test]
    fn typos_and_other_things_are_refused() {
        // One character changed: the checksum no longer matches.
        let typo = USDT_BOUNCEABLE.replace("mUtQ", "mUtR");
        assert!(Address::parse(&typo).is_err());
        assert!(Address::parse("EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sD").is_err());
        assert!(Address::parse("0:b113").is_err());
        assert!(Address::parse(
            "5:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe"
        )
        .is_err());
        assert!(Address::parse("").is_err());
        assert!(Address::parse("bc1qxyz").is_err());
    }
}
