//! Reading and checking BOLT11 invoices (BOLT #11), with the maintained `lightning-invoice`
//! crate.
//!
//! A node hands farthing a BOLT11 string; before farthing shows it to a payer or pays it, it
//! checks that the invoice says what farthing asked for: the network, the amount, the payment
//! hash, the description hash (LNURL-pay, LUD-06) and an expiry no later than farthing's own
//! invoice. [`parse`] reads an invoice (its signature must verify); [`check`] reads it and
//! compares it with an [`Expect`].
//!
//! Pure: no I/O and no clock. The caller passes the current time ([`Expect::now_s`]).

use std::fmt;
use std::str::FromStr;

use hex_conservative::DisplayHex;
use lightning_invoice::{
    Bolt11Invoice, Bolt11InvoiceDescriptionRef, Bolt11ParseError, Bolt11SemanticError, Currency,
    ParseOrSemanticError, SignedRawBolt11Invoice,
};

use crate::backend::PaymentHash;

/// The URI scheme wallets put in front of an invoice (`lightning:lnbc…`), accepted and dropped.
const LIGHTNING_SCHEME: &str = "lightning:";

/// The Bitcoin network an invoice is for (its human-readable prefix: `lnbc`, `lntb`, `lntbs`,
/// `lnbcrt`, `lnsb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// Mainnet (`lnbc`).
    Bitcoin,
    /// Testnet (`lntb`).
    Testnet,
    /// Signet (`lntbs`).
    Signet,
    /// Regtest (`lnbcrt`).
    Regtest,
    /// Simnet (`lnsb`).
    Simnet,
}

impl Network {
    /// The name used in configuration: `bitcoin`, `testnet`, `signet`, `regtest` or `simnet`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
            Network::Simnet => "simnet",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A network name that is not one of `bitcoin` (or `mainnet`), `testnet`, `signet`, `regtest`,
/// `simnet`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown Lightning network {0:?}: use one of bitcoin (or mainnet), testnet, signet, regtest, simnet"
)]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    /// Parses `bitcoin` or `mainnet`, `testnet`, `signet`, `regtest`, `simnet` (any case).
    fn from_str(text: &str) -> Result<Network, UnknownNetwork> {
        match text.to_ascii_lowercase().as_str() {
            "bitcoin" | "mainnet" => Ok(Network::Bitcoin),
            "testnet" => Ok(Network::Testnet),
            "signet" => Ok(Network::Signet),
            "regtest" => Ok(Network::Regtest),
            "simnet" => Ok(Network::Simnet),
            _ => Err(UnknownNetwork(text.to_owned())),
        }
    }
}

impl From<Currency> for Network {
    fn from(currency: Currency) -> Network {
        match currency {
            Currency::Bitcoin => Network::Bitcoin,
            Currency::BitcoinTestnet => Network::Testnet,
            Currency::Signet => Network::Signet,
            Currency::Regtest => Network::Regtest,
            Currency::Simnet => Network::Simnet,
        }
    }
}

/// A BOLT11 invoice whose signature verified, with the fields farthing uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedInvoice {
    /// The payment hash (`p` field).
    pub payment_hash: PaymentHash,
    /// The amount asked, in millisatoshis; `None` for an "any amount" invoice.
    pub amount_msat: Option<u64>,
    /// When the invoice was made, Unix seconds.
    pub timestamp_s: u64,
    /// Seconds after `timestamp_s` until it can no longer be paid (`x` field; 3600 when absent).
    pub expiry_s: u64,
    /// `timestamp_s + expiry_s` (saturating): the first second at which it is expired.
    pub expires_at_s: u64,
    /// The network it is for.
    pub network: Network,
    /// The description (`d` field) as written by the payee, unsanitized: escape it before
    /// showing it. `None` when the invoice carries a description hash instead.
    pub description: Option<String>,
    /// The description hash (`h` field); `None` when the invoice carries a description.
    pub description_hash: Option<[u8; 32]>,
    /// The payee's node public key, compressed, lowercase hex (66 characters): the `n` field
    /// if present, otherwise recovered from the signature.
    pub payee: String,
}

/// Reads a BOLT11 invoice and verifies its signature.
///
/// Accepts either all-lowercase or all-uppercase text (BOLT #11 refuses mixed case), an
/// optional `lightning:` prefix (any case) and surrounding whitespace. Refuses anything
/// `lightning-invoice` refuses: bad bech32 checksum, bad signature, unknown multiplier,
/// sub-millisatoshi amount, unknown even feature bits, missing payment hash or payment secret,
/// missing or duplicate description.
pub fn parse(bolt11: &str) -> Result<CheckedInvoice, Bolt11Error> {
    let text = bolt11.trim();
    let text = match text.get(..LIGHTNING_SCHEME.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(LIGHTNING_SCHEME) => {
            &text[LIGHTNING_SCHEME.len()..]
        }
        _ => text,
    };
    let invoice = match Bolt11Invoice::from_str(text) {
        Ok(invoice) => invoice,
        Err(ParseOrSemanticError::SemanticError(Bolt11SemanticError::InvalidFeatures)) => {
            return parse_without_features(text);
        }
        Err(error) => return Err(Bolt11Error::Unparsable(describe(&error))),
    };

    let payment_hash: &[u8; 32] = invoice.payment_hash().as_ref();
    let timestamp_s = invoice.duration_since_epoch().as_secs();
    let expiry_s = invoice.expiry_time().as_secs();
    let (description, description_hash) = match invoice.description() {
        Bolt11InvoiceDescriptionRef::Direct(text) => (Some(text.as_inner().0.clone()), None),
        Bolt11InvoiceDescriptionRef::Hash(hash) => {
            let bytes: &[u8; 32] = hash.0.as_ref();
            (None, Some(*bytes))
        }
    };
    Ok(CheckedInvoice {
        payment_hash: PaymentHash(*payment_hash),
        amount_msat: invoice.amount_milli_satoshis(),
        timestamp_s,
        expiry_s,
        expires_at_s: timestamp_s.saturating_add(expiry_s),
        network: invoice.currency().into(),
        description,
        description_hash,
        payee: invoice
            .get_payee_pub_key()
            .serialize()
            .to_lower_hex_string(),
    })
}

/// Reads an invoice that has a payment secret but no features field (`9`) at all, which
/// `lightning-invoice` refuses as `InvalidFeatures`: BOLT #11 says a writer MUST set the
/// `payment_secret` feature, but such invoices are still made (LNbits' FakeWallet, older
/// wallets) and every node pays them. Everything else is still checked with the crate: the
/// signature, the payment hash, the payment secret, exactly one description, a whole number of
/// millisatoshis. An invoice *with* a features field that fails the check (unknown required
/// bits, no payment secret bit) stays refused.
fn parse_without_features(text: &str) -> Result<CheckedInvoice, Bolt11Error> {
    let unparsable = |what: &str| Bolt11Error::Unparsable(what.to_owned());
    let signed = SignedRawBolt11Invoice::from_str(text)
        .map_err(|error| Bolt11Error::Unparsable(error.to_string()))?;
    let raw = signed.raw_invoice();
    if raw.features().is_some() {
        return Err(unparsable(
            "the invoice's features are invalid (unknown required bits, or no payment secret)",
        ));
    }
    if !signed.check_signature() {
        return Err(unparsable("the invoice's signature does not verify"));
    }
    if raw.payment_secret().is_none() {
        return Err(unparsable("the invoice has no payment secret"));
    }
    let payment_hash: &[u8; 32] = raw
        .payment_hash()
        .ok_or_else(|| unparsable("the invoice has no payment hash"))?
        .0
        .as_ref();
    let (description, description_hash) = match (raw.description(), raw.description_hash()) {
        (Some(text), None) => (Some(text.as_inner().0.clone()), None),
        (None, Some(hash)) => {
            let bytes: &[u8; 32] = hash.0.as_ref();
            (None, Some(*bytes))
        }
        _ => {
            return Err(unparsable(
                "the invoice must have exactly one of a description and a description hash",
            ))
        }
    };
    let amount_msat = match raw.amount_pico_btc() {
        None if raw.hrp.raw_amount.is_some() => return Err(unparsable("the amount overflows")),
        None => None,
        Some(pico) if !pico.is_multiple_of(10) => {
            return Err(unparsable(
                "the amount is not a whole number of millisatoshis",
            ))
        }
        Some(pico) => Some(pico / 10),
    };
    let payee = match raw.payee_pub_key() {
        Some(key) => key.0,
        None => {
            signed
                .recover_payee_pub_key()
                .map_err(|_| unparsable("the payee key cannot be recovered from the signature"))?
                .0
        }
    };
    let timestamp_s = raw.data.timestamp.as_unix_timestamp();
    let expiry_s = raw
        .expiry_time()
        .map_or(DEFAULT_EXPIRY_S, |expiry| expiry.as_seconds());
    Ok(CheckedInvoice {
        payment_hash: PaymentHash(*payment_hash),
        amount_msat,
        timestamp_s,
        expiry_s,
        expires_at_s: timestamp_s.saturating_add(expiry_s),
        network: raw.currency().into(),
        description,
        description_hash,
        payee: payee.serialize().to_lower_hex_string(),
    })
}

/// BOLT #11's default expiry when the `x` field is absent, seconds.
const DEFAULT_EXPIRY_S: u64 = 3600;

/// The reason `lightning-invoice` gives, with the causes of a bech32 error (whose own message
/// is only "parse failed" or "invalid checksum": the detail is in its sources).
fn describe(error: &ParseOrSemanticError) -> String {
    let ParseOrSemanticError::ParseError(Bolt11ParseError::Bech32Error(bech32)) = error else {
        return error.to_string();
    };
    let mut text = format!("invalid bech32: {bech32}");
    let mut source = std::error::Error::source(bech32);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What an invoice must say for [`check`] to accept it. Every `None` is not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// The exact amount, in millisatoshis; an invoice without an amount is refused.
    pub amount_msat: Option<u64>,
    /// The payment hash.
    pub payment_hash: Option<PaymentHash>,
    /// The network.
    pub network: Option<Network>,
    /// The latest acceptable `expires_at_s` (e.g. the end of farthing's own invoice, SPEC I3).
    pub expires_no_later_than_s: Option<u64>,
    /// The description hash (`h` field), e.g. `lnurl::description_hash` of the
    /// LNURL-pay metadata; an invoice with a plain description is refused.
    pub description_hash: Option<[u8; 32]>,
    /// The current time, Unix seconds: an invoice already expired at this second is refused.
    pub now_s: Option<u64>,
}

/// Reads a BOLT11 invoice ([`parse`]) and checks it against `expect`.
///
/// The checks run in this order, and the first failure is returned: network, payment hash,
/// amount, description hash, expired at `now_s` (expired when `now_s >= expires_at_s`), expiry
/// later than `expires_no_later_than_s`.
pub fn check(bolt11: &str, expect: &Expect) -> Result<CheckedInvoice, Bolt11Error> {
    let invoice = parse(bolt11)?;
    if let Some(expected) = expect.network {
        if invoice.network != expected {
            return Err(Bolt11Error::WrongNetwork {
                expected,
                found: invoice.network,
            });
        }
    }
    if let Some(expected) = expect.payment_hash {
        if invoice.payment_hash != expected {
            return Err(Bolt11Error::WrongPaymentHash {
                expected,
                found: invoice.payment_hash,
            });
        }
    }
    if let Some(expected_msat) = expect.amount_msat {
        match invoice.amount_msat {
            None => return Err(Bolt11Error::AmountMissing),
            Some(found_msat) if found_msat != expected_msat => {
                return Err(Bolt11Error::WrongAmount {
                    expected_msat,
                    found_msat,
                });
            }
            Some(_) => {}
        }
    }
    if let Some(expected) = expect.description_hash {
        if invoice.description_hash != Some(expected) {
            return Err(Bolt11Error::WrongDescriptionHash);
        }
    }
    if let Some(now_s) = expect.now_s {
        if now_s >= invoice.expires_at_s {
            return Err(Bolt11Error::Expired {
                expired_at_s: invoice.expires_at_s,
                now_s,
            });
        }
    }
    if let Some(limit_s) = expect.expires_no_later_than_s {
        if invoice.expires_at_s > limit_s {
            return Err(Bolt11Error::ExpiresTooLate {
                expires_at_s: invoice.expires_at_s,
                limit_s,
            });
        }
    }
    Ok(invoice)
}

/// Why an invoice was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Bolt11Error {
    /// Not a valid, correctly signed BOLT11 invoice (the cause, from `lightning-invoice`).
    #[error(
        "not a valid BOLT11 invoice ({0}); pass the whole invoice as the node returned it \
         (lnbc…, lntb…, lnbcrt…), all lowercase or all uppercase"
    )]
    Unparsable(String),
    /// The invoice is for another network.
    #[error(
        "the invoice is for the {found} network but {expected} was expected; use a node \
         running on {expected} or change the configured network"
    )]
    WrongNetwork {
        /// The network asked for.
        expected: Network,
        /// The network of the invoice.
        found: Network,
    },
    /// An amount was expected but the invoice lets the payer choose it.
    #[error(
        "the invoice has no amount (any amount may be paid) but a fixed amount was expected; \
         create the invoice with the amount"
    )]
    AmountMissing,
    /// The invoice asks for another amount.
    #[error(
        "the invoice asks for {found_msat} msat but {expected_msat} msat was expected; create \
         the invoice with the expected amount"
    )]
    WrongAmount {
        /// The amount asked for, msat.
        expected_msat: u64,
        /// The amount of the invoice, msat.
        found_msat: u64,
    },
    /// The invoice pays another payment hash.
    #[error(
        "the invoice has payment hash {found} but {expected} was expected; it belongs to \
         another payment"
    )]
    WrongPaymentHash {
        /// The payment hash asked for.
        expected: PaymentHash,
        /// The payment hash of the invoice.
        found: PaymentHash,
    },
    /// The invoice stays payable longer than allowed.
    #[error(
        "the invoice expires at {expires_at_s} (Unix seconds), after the limit {limit_s}; \
         create it with a shorter expiry"
    )]
    ExpiresTooLate {
        /// When the invoice expires, Unix seconds.
        expires_at_s: u64,
        /// The latest acceptable expiry, Unix seconds.
        limit_s: u64,
    },
    /// The invoice has already expired.
    #[error(
        "the invoice expired at {expired_at_s} (Unix seconds) and it is now {now_s}; ask for \
         a new invoice"
    )]
    Expired {
        /// When the invoice expired, Unix seconds.
        expired_at_s: u64,
        /// The time of the check, Unix seconds.
        now_s: u64,
    },
    /// The invoice's description hash (`h`) is missing or is not the expected one.
    #[error(
        "the invoice's description hash is missing or differs from SHA-256 of the expected \
         description (LNURL-pay metadata); create it with the description hash of exactly \
         that text"
    )]
    WrongDescriptionHash,
}
