//! Money: currencies, amounts in integer minor units, exchange rates and price conversion
//! (SPEC M1, M2).
//!
//! Every amount in farthing is an integer number of minor units of one currency (cents, nanoton,
//! satoshi, Stars), between 0 and [`MAX_AMOUNT_MINOR`] so that it always fits a signed 64-bit SQL
//! `BIGINT`. A price set in one currency (`USD 0.05`) and paid in another asset (`TON`) is
//! converted with an exact decimal [`Rate`], rounding UP to the next minor unit of the paid asset,
//! and the [`Conversion`] records the rate, where it came from and how it was rounded, so that a
//! payment can always be explained afterwards.
//!
//! What this module must never do:
//! - use floating point: binary floats cannot represent 0.1 and silently lose money;
//! - panic, wrap or saturate on any input: all arithmetic is checked and an out-of-range result is
//!   a [`MoneyError`] that tells the caller what to change;
//! - round in the payer's favour or to zero: a non-zero price never converts to a zero payment;
//! - invent rates: only configured pairs are quoted, because the inverse of a decimal rate is
//!   generally not an exact decimal;
//! - do I/O, read a clock or be async: a network-backed rate source fills a table elsewhere.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Largest amount in minor units anywhere in farthing: fits a signed 64-bit SQL BIGINT.
pub const MAX_AMOUNT_MINOR: u64 = i64::MAX as u64;

/// Most decimal places a [`Rate`] may have. 18 covers every realistic quote (even a Star priced in
/// BTC) while keeping `10^(scale + exponent)` far inside `u128`.
pub const MAX_RATE_SCALE: u8 = 18;

/// Whether a [`Currency`] is an asset that actually moves (and pays) or a fiat pricing currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CurrencyKind {
    /// An asset farthing can receive: Telegram Stars, TON, USDT on TON, BTC.
    CryptoAsset,
    /// An ISO 4217 currency, used to set prices.
    Fiat,
}

/// A currency or asset: code + minor-unit exponent, only constructible from the built-in table.
///
/// Ordering is by code, so sorted collections of currencies read alphabetically.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    // Field order matters: the derived `Ord` must compare the code first, because the table is
    // binary-searched by code.
    code: &'static str,
    exponent: u8,
    kind: CurrencyKind,
}

/// Shorthand for the table below.
const fn fiat(code: &'static str, exponent: u8) -> Currency {
    Currency {
        code,
        exponent,
        kind: CurrencyKind::Fiat,
    }
}

/// Every known currency, sorted by code (byte order) so lookups are a binary search with no
/// allocation.
///
/// Fiat entries are the active ISO 4217 codes with the minor unit ISO assigns (not the one in
/// everyday use: ISO says 2 for MGA, MRU and IDR, so we do too), including fund codes that have a
/// minor unit (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW). Deliberately absent:
/// - precious metals, bond-market units, testing and "no currency" codes (XAG XAU XPD XPT, XBA..XBD,
///   XTS, XXX) and units without a minor unit (XDR, XSU, XUA): they cannot price anything;
/// - withdrawn codes (e.g. ANG -> XCG, BGN -> EUR, CUC, HRK -> EUR, SLL -> SLE, VEF -> VES,
///   ZWL -> ZWG): a new price should not be set in a currency that no longer circulates.
///
/// `XTR` is not ISO: it is Telegram's code for Stars, which is how it reaches us.
static CURRENCIES: &[Currency] = &[
    fiat("AED", 2),
    fiat("AFN", 2),
    fiat("ALL", 2),
    fiat("AMD", 2),
    fiat("AOA", 2),
    fiat("ARS", 2),
    fiat("AUD", 2),
    fiat("AWG", 2),
    fiat("AZN", 2),
    fiat("BAM", 2),
    fiat("BBD", 2),
    fiat("BDT", 2),
    fiat("BHD", 3),
    fiat("BIF", 0),
    fiat("BMD", 2),
    fiat("BND", 2),
    fiat("BOB", 2),
    fiat("BOV", 2),
    fiat("BRL", 2),
    fiat("BSD", 2),
    Currency::BTC,
    fiat("BTN", 2),
    fiat("BWP", 2),
    fiat("BYN", 2),
    fiat("BZD", 2),
    fiat("CAD", 2),
    fiat("CDF", 2),
    fiat("CHE", 2),
    fiat("CHF", 2),
    fiat("CHW", 2),
    fiat("CLF", 4),
    fiat("CLP", 0),
    fiat("CNY", 2),
    fiat("COP", 2),
    fiat("COU", 2),
    fiat("CRC", 2),
    fiat("CUP", 2),
    fiat("CVE", 2),
    fiat("CZK", 2),
    fiat("DJF", 0),
    fiat("DKK", 2),
    fiat("DOP", 2),
    fiat("DZD", 2),
    fiat("EGP", 2),
    fiat("ERN", 2),
    fiat("ETB", 2),
    Currency::EUR,
    fiat("FJD", 2),
    fiat("FKP", 2),
    fiat("GBP", 2),
    fiat("GEL", 2),
    fiat("GHS", 2),
    fiat("GIP", 2),
    fiat("GMD", 2),
    fiat("GNF", 0),
    fiat("GTQ", 2),
    fiat("GYD", 2),
    fiat("HKD", 2),
    fiat("HNL", 2),
    fiat("HTG", 2),
    fiat("HUF", 2),
    fiat("IDR", 2),
    fiat("ILS", 2),
    fiat("INR", 2),
    fiat("IQD", 3),
    fiat("IRR", 2),
    fiat("ISK", 0),
    fiat("JMD", 2),
    fiat("JOD", 3),
    fiat("JPY", 0),
    fiat("KES", 2),
    fiat("KGS", 2),
    fiat("KHR", 2),
    fiat("KMF", 0),
    fiat("KPW", 2),
    fiat("KRW", 0),
    fiat("KWD", 3),
    fiat("KYD", 2),
    fiat("KZT", 2),
    fiat("LAK", 2),
    fiat("LBP", 2),
    fiat("LKR", 2),
    fiat("LRD", 2),
    fiat("LSL", 2),
    fiat("LYD", 3),
    fiat("MAD", 2),
    fiat("MDL", 2),
    fiat("MGA", 2),
    fiat("MKD", 2),
    fiat("MMK", 2),
    fiat("MNT", 2),
    fiat("MOP", 2),
    fiat("MRU", 2),
    fiat("MUR", 2),
    fiat("MVR", 2),
    fiat("MWK", 2),
    fiat("MXN", 2),
    fiat("MXV", 2),
    fiat("MYR", 2),
    fiat("MZN", 2),
    fiat("NAD", 2),
    fiat("NGN", 2),
    fiat("NIO", 2),
    fiat("NOK", 2),
    fiat("NPR", 2),
    fiat("NZD", 2),
    fiat("OMR", 3),
    fiat("PAB", 2),
    fiat("PEN", 2),
    fiat("PGK", 2),
    fiat("PHP", 2),
    fiat("PKR", 2),
    fiat("PLN", 2),
    fiat("PYG", 0),
    fiat("QAR", 2),
    fiat("RON", 2),
    fiat("RSD", 2),
    Currency::RUB,
    fiat("RWF", 0),
    fiat("SAR", 2),
    fiat("SBD", 2),
    fiat("SCR", 2),
    fiat("SDG", 2),
    fiat("SEK", 2),
    fiat("SGD", 2),
    fiat("SHP", 2),
    fiat("SLE", 2),
    fiat("SOS", 2),
    fiat("SRD", 2),
    fiat("SSP", 2),
    fiat("STN", 2),
    fiat("SVC", 2),
    fiat("SYP", 2),
    fiat("SZL", 2),
    fiat("THB", 2),
    fiat("TJS", 2),
    fiat("TMT", 2),
    fiat("TND", 3),
    Currency::TON,
    fiat("TOP", 2),
    fiat("TRY", 2),
    fiat("TTD", 2),
    fiat("TWD", 2),
    fiat("TZS", 2),
    fiat("UAH", 2),
    fiat("UGX", 0),
    Currency::USD,
    Currency::USDT,
    fiat("USN", 2),
    fiat("UYI", 0),
    fiat("UYU", 2),
    fiat("UYW", 4),
    fiat("UZS", 2),
    fiat("VED", 2),
    fiat("VES", 2),
    fiat("VND", 0),
    fiat("VUV", 0),
    fiat("WST", 2),
    fiat("XAF", 0),
    fiat("XCD", 2),
    fiat("XCG", 2),
    fiat("XOF", 0),
    fiat("XPF", 0),
    Currency::XTR,
    fiat("YER", 2),
    fiat("ZAR", 2),
    fiat("ZMW", 2),
    fiat("ZWG", 2),
];

/// Longest code in the table ("USDT"); anything longer is unknown without a lookup.
const MAX_CODE_LEN: usize = 4;

/// Compile-time check that [`CURRENCIES`] is strictly sorted and well-formed, because
/// `binary_search` on an unsorted table silently fails to find codes.
const fn table_is_valid(table: &[Currency]) -> bool {
    let mut i = 0;
    while i < table.len() {
        let code = table[i].code.as_bytes();
        if code.len() < 3 || code.len() > MAX_CODE_LEN {
            return false;
        }
        let mut j = 0;
        while j < code.len() {
            if !code[j].is_ascii_uppercase() {
                return false;
            }
            j += 1;
        }
        if i > 0 && !bytes_less(table[i - 1].code.as_bytes(), code) {
            return false;
        }
        i += 1;
    }
    true
}

/// `a < b` in byte order, usable in const context (where `Ord` is not).
const fn bytes_less(a: &[u8], b: &[u8]) -> bool {
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

const _: () = assert!(
    table_is_valid(CURRENCIES),
    "CURRENCIES must be sorted by code"
);

impl Currency {
    /// Telegram Stars: whole Stars only.
    pub const XTR: Currency = Currency {
        code: "XTR",
        exponent: 0,
        kind: CurrencyKind::CryptoAsset,
    };
    /// Toncoin, in nanoton (10^-9).
    pub const TON: Currency = Currency {
        code: "TON",
        exponent: 9,
        kind: CurrencyKind::CryptoAsset,
    };
    /// Tether USD as the TON jetton, which has 6 decimals.
    pub const USDT: Currency = Currency {
        code: "USDT",
        exponent: 6,
        kind: CurrencyKind::CryptoAsset,
    };
    /// Bitcoin, in satoshi (10^-8).
    pub const BTC: Currency = Currency {
        code: "BTC",
        exponent: 8,
        kind: CurrencyKind::CryptoAsset,
    };
    /// US dollar, in cents.
    pub const USD: Currency = fiat("USD", 2);
    /// Euro, in cents.
    pub const EUR: Currency = fiat("EUR", 2);
    /// Russian rouble, in kopecks.
    pub const RUB: Currency = fiat("RUB", 2);

    /// Looks a code up in the built-in table, case-insensitively ("usd", "USD"). The error names the
    /// code and says it's unknown.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        Self::lookup(code).ok_or_else(|| MoneyError::UnknownCurrency {
            code: excerpt(code),
        })
    }

    /// Upper-cases into a stack buffer so a lookup never allocates (it sits on every API request).
    fn lookup(code: &str) -> Option<Currency> {
        let bytes = code.as_bytes();
        if bytes.len() < 3 || bytes.len() > MAX_CODE_LEN {
            return None;
        }
        let mut upper = [0u8; MAX_CODE_LEN];
        for (slot, byte) in upper.iter_mut().zip(bytes) {
            if !byte.is_ascii_alphabetic() {
                return None;
            }
            *slot = byte.to_ascii_uppercase();
        }
        let wanted = upper.get(..bytes.len())?;
        CURRENCIES
            .binary_search_by(|known| known.code.as_bytes().cmp(wanted))
            .ok()
            .and_then(|index| CURRENCIES.get(index).copied())
    }

    /// The code in upper case, e.g. "USDT".
    pub const fn code(self) -> &'static str {
        self.code
    }

    /// Number of decimal places of the minor unit: 2 for USD (cents), 9 for TON (nanoton).
    pub const fn exponent(self) -> u8 {
        self.exponent
    }

    /// Whether this is a payable crypto asset or a fiat pricing currency.
    pub const fn kind(self) -> CurrencyKind {
        self.kind
    }

    /// Every known currency, sorted by code.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().copied()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so width/alignment specifiers work in tables and logs.
        f.pad(self.code)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The code says everything; the exponent and kind follow from it.
        f.pad(self.code)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    /// Same as [`Currency::parse`].
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::parse(code)
    }
}

/// An amount of one currency in integer minor units (0..=MAX_AMOUNT_MINOR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    amount_minor: u64,
    currency: Currency,
}

impl Money {
    /// An amount of `amount_minor` minor units; more than [`MAX_AMOUNT_MINOR`] is `AmountTooLarge`.
    pub fn new(amount_minor: u64, currency: Currency) -> Result<Money, MoneyError> {
        if amount_minor > MAX_AMOUNT_MINOR {
            return Err(too_large());
        }
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    /// Nothing of `currency`.
    pub const fn zero(currency: Currency) -> Money {
        Money {
            amount_minor: 0,
            currency,
        }
    }

    /// The amount in minor units of [`Money::currency`].
    pub const fn amount_minor(self) -> u64 {
        self.amount_minor
    }

    /// The currency the amount is in.
    pub const fn currency(self) -> Currency {
        self.currency
    }

    /// Parses a plain decimal in major units: "0.05" in USD -> 5 minor units; "1" -> 100.
    ///
    /// Accepted: ASCII digits with at most one `.` that has digits on both sides; leading zeros are
    /// fine ("007"), and up to `exponent` decimals ("1.50" in USD). Rejected, each with an error
    /// that says why: more decimals than the exponent (even if they are zeros, because "1.000" USD
    /// suggests a precision the currency does not have), signs, empty text, spaces, thousands
    /// separators, exponent notation ("1e3"), a bare leading or trailing point (".5", "1."; both
    /// look like truncated input, and we never print them), and values above [`MAX_AMOUNT_MINOR`].
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let (int_digits, frac_digits) =
            split_plain_decimal(text).map_err(|reason| MoneyError::InvalidAmount {
                text: excerpt(text),
                reason: reason.to_owned(),
            })?;
        let exponent = currency.exponent();
        if frac_digits.len() > usize::from(exponent) {
            return Err(MoneyError::TooManyDecimals {
                currency,
                allowed: exponent,
            });
        }
        // `frac_digits.len() <= exponent <= 9`, so this cannot truncate.
        let missing_decimals = u32::from(exponent).saturating_sub(frac_digits.len() as u32);
        let amount_minor = digits_to_u64(int_digits)
            .and_then(|major| major.checked_mul(10u64.checked_pow(u32::from(exponent))?))
            .and_then(|major_minor| {
                let frac_minor = digits_to_u64(frac_digits)?
                    .checked_mul(10u64.checked_pow(missing_decimals)?)?;
                major_minor.checked_add(frac_minor)
            })
            .ok_or_else(too_large)?;
        Money::new(amount_minor, currency)
    }

    /// Exact decimal form without the code, always with exactly `exponent` decimals so the
    /// precision is visible: USD 5 -> "0.05", USD 100 -> "1.00", XTR 7 -> "7",
    /// TON 1 -> "0.000000001". [`Money::parse_decimal`] reads it back to the same value.
    pub fn to_decimal_string(self) -> String {
        format_scaled(
            u128::from(self.amount_minor),
            usize::from(self.currency.exponent()),
        )
    }

    /// Sum of two amounts of the same currency; a different currency is `CurrencyMismatch` and a
    /// sum above [`MAX_AMOUNT_MINOR`] is `AmountTooLarge`.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or_else(too_large)?;
        Money::new(sum_minor, self.currency)
    }

    /// `self - other` in the same currency; going below zero is `Negative` (amounts are never
    /// negative: a debt is a separate record, not a negative balance).
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let difference_minor = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Negative)?;
        Money::new(difference_minor, self.currency)
    }

    /// `self * factor` (e.g. a unit price times a quantity); above [`MAX_AMOUNT_MINOR`] is
    /// `AmountTooLarge`.
    pub fn checked_mul(self, factor: u64) -> Result<Money, MoneyError> {
        let product_minor = self
            .amount_minor
            .checked_mul(factor)
            .ok_or_else(too_large)?;
        Money::new(product_minor, self.currency)
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl fmt::Display for Money {
    /// "0.05 USD".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

/// An exchange rate as an exact positive decimal: 1 major unit of `from` = `rate` major units of `to`.
///
/// Stored normalised (no trailing zeros after the point), so equal values compare equal:
/// "0.20" == "0.2".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    mantissa: u64,
    scale: u8,
}

impl Rate {
    /// The identity rate, the only one allowed between a currency and itself.
    pub const ONE: Rate = Rate {
        mantissa: 1,
        scale: 0,
    };

    /// Parses a plain positive decimal: "0.2", "65000.5", "1". Same grammar as
    /// [`Money::parse_decimal`] (no sign, exponent, spaces, ".5" or "1."); the value must be above
    /// zero, have at most [`MAX_RATE_SCALE`] decimals once trailing zeros are dropped, and at most
    /// `u64::MAX` as its digit string without the point.
    pub fn parse(text: &str) -> Result<Rate, MoneyError> {
        let invalid = |reason: &str| MoneyError::InvalidRate {
            text: excerpt(text),
            reason: reason.to_owned(),
        };
        let (int_digits, frac_digits) = split_plain_decimal(text).map_err(invalid)?;
        // Trailing zeros carry no value, so "0.1000000000000000000" is as good as "0.1".
        let frac_digits = frac_digits.trim_end_matches('0');
        if frac_digits.len() > usize::from(MAX_RATE_SCALE) {
            return Err(invalid(TOO_MANY_RATE_DECIMALS));
        }
        let mantissa = digit_bytes_to_u64(int_digits.bytes().chain(frac_digits.bytes()))
            .ok_or_else(|| invalid("it has too many significant digits (at most 19); round it"))?;
        if mantissa == 0 {
            return Err(invalid(ZERO_RATE));
        }
        // At most 18 here, checked above.
        let scale = u8::try_from(frac_digits.len()).map_err(|_| invalid(TOO_MANY_RATE_DECIMALS))?;
        Rate::from_parts(mantissa, scale)
    }

    /// The rate `mantissa / 10^scale`. Trailing zeros are normalised away first, so
    /// `from_parts(20, 2)` is 0.2 and `from_parts(10, 19)` is allowed; zero, or more than
    /// [`MAX_RATE_SCALE`] significant decimals, is `InvalidRate`.
    pub fn from_parts(mantissa: u64, scale: u8) -> Result<Rate, MoneyError> {
        let invalid = |reason: &str| MoneyError::InvalidRate {
            text: format_scaled(u128::from(mantissa), usize::from(scale)),
            reason: reason.to_owned(),
        };
        if mantissa == 0 {
            return Err(invalid(ZERO_RATE));
        }
        let (mut mantissa_norm, mut scale_norm) = (mantissa, scale);
        while scale_norm > 0 && mantissa_norm % 10 == 0 {
            mantissa_norm /= 10;
            scale_norm -= 1;
        }
        if scale_norm > MAX_RATE_SCALE {
            return Err(invalid(TOO_MANY_RATE_DECIMALS));
        }
        Ok(Rate {
            mantissa: mantissa_norm,
            scale: scale_norm,
        })
    }

    /// The digits of the rate without the point (normalised: no trailing zeros after it).
    pub const fn mantissa(self) -> u64 {
        self.mantissa
    }

    /// Number of decimal places: the rate is `mantissa / 10^scale`.
    pub const fn scale(self) -> u8 {
        self.scale
    }
}

impl fmt::Display for Rate {
    /// The exact decimal, e.g. "0.2", "65000.5", "1".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled(
            u128::from(self.mantissa),
            usize::from(self.scale),
        ))
    }
}

impl FromStr for Rate {
    type Err = MoneyError;

    /// Same as [`Rate::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Rate::parse(text)
    }
}

/// How the converted amount was rounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// The conversion was exact.
    Exact,
    /// The exact result was not a whole number of minor units and was rounded up; `unrounded_minor`
    /// is the exact result in minor units of the target, as a decimal string (e.g. "1234.5").
    UpToMinorUnit {
        /// The exact result before rounding, in minor units of the target, e.g. "1234.5".
        unrounded_minor: String,
    },
}

/// A quote from a rate source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// 1 major unit of the quoted `from` currency in major units of `to`.
    pub rate: Rate,
    /// Which source gave the rate (e.g. "table"), recorded with every conversion.
    pub source: String,
}

/// The result of converting a price into the asset that pays it, with what was used to get there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversion {
    /// The price as set, in its pricing currency.
    pub source: Money,
    /// What is to be paid, in the paying asset, rounded up to its minor unit.
    pub result: Money,
    /// The rate applied: 1 major unit of the source currency in major units of the result's.
    pub rate: Rate,
    /// Where the rate came from (e.g. "table").
    pub rate_source: String,
    /// Whether and how the result was rounded.
    pub rounding: Rounding,
}

/// Converts with an explicit rate: result_minor = ceil(source_minor * rate * 10^to.exp / 10^from.exp),
/// computed exactly in u128 with checked arithmetic (overflow or > MAX_AMOUNT_MINOR → error, never a panic).
/// Same currency must use Rate::ONE (other rate → error). A non-zero source never converts to 0 (ceil guarantees >= 1).
pub fn convert(
    source: Money,
    to: Currency,
    rate: Rate,
    rate_source: &str,
) -> Result<Conversion, MoneyError> {
    let from = source.currency();
    if from == to && rate != Rate::ONE {
        return Err(MoneyError::InvalidRate {
            text: rate.to_string(),
            reason: format!("a conversion from {from} to itself must use rate 1"),
        });
    }
    // With rate = m / 10^s the exact result is
    //     source_minor * m * 10^to.exp / 10^(s + from.exp),
    // so only the difference of the two powers of ten matters. Working with the difference keeps
    // every intermediate small: source_minor * m < 2^63 * 2^64 always fits u128, and the divisor
    // is at most 10^(18 + 9), so only a result that is genuinely too large can fail.
    let product = u128::from(source.amount_minor())
        .checked_mul(u128::from(rate.mantissa()))
        .ok_or(MoneyError::Overflow)?;
    let up_exponent = u32::from(to.exponent());
    let down_exponent = u32::from(rate.scale()) + u32::from(from.exponent());
    let (result_minor, rounding) = if up_exponent >= down_exponent {
        let scaled = 10u128
            .checked_pow(up_exponent - down_exponent)
            .and_then(|multiplier| product.checked_mul(multiplier))
            .ok_or_else(too_large)?;
        (scaled, Rounding::Exact)
    } else {
        let decimals = down_exponent - up_exponent;
        let divisor = 10u128.checked_pow(decimals).ok_or(MoneyError::Overflow)?;
        let quotient = product.checked_div(divisor).ok_or(MoneyError::Overflow)?;
        let remainder = product.checked_rem(divisor).ok_or(MoneyError::Overflow)?;
        if remainder == 0 {
            (quotient, Rounding::Exact)
        } else {
            // Round UP: the merchant must never receive less than the price.
            let rounded = quotient.checked_add(1).ok_or(MoneyError::Overflow)?;
            let unrounded_minor = trim_fraction(format_scaled(product, decimals as usize));
            (rounded, Rounding::UpToMinorUnit { unrounded_minor })
        }
    };
    let result_minor = u64::try_from(result_minor).map_err(|_| too_large())?;
    Ok(Conversion {
        source,
        result: Money::new(result_minor, to)?,
        rate,
        rate_source: rate_source.to_owned(),
        rounding,
    })
}

/// Where rates come from. Implementations do no I/O inside the domain; a network-backed source would fill a table elsewhere.
pub trait RateSource {
    /// Rate from `from` to `to`; same currency always gives Rate::ONE.
    fn quote(&self, from: Currency, to: Currency) -> Result<Quote, MoneyError>;
}

/// The first RateSource: a fixed table from configuration. Only the pairs configured are quoted (no inverse or
/// cross rates are invented, because an inverse of a decimal is not exact); a missing pair is an error that names
/// the pair and says to add e.g. `"USD/TON" = "0.2"` to the rate table.
#[derive(Clone, Debug, Default)]
pub struct TableRateSource {
    rates: BTreeMap<(Currency, Currency), Rate>,
}

/// The `source` recorded for rates from a [`TableRateSource`].
pub const TABLE_RATE_SOURCE: &str = "table";

impl TableRateSource {
    /// An empty table: every pair but a currency with itself is unavailable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rate for 1 `from` in `to`, replacing any earlier one. A same-currency pair is
    /// ignored, because [`RateSource::quote`] answers [`Rate::ONE`] for it without looking.
    pub fn insert(&mut self, from: Currency, to: Currency, rate: Rate) {
        if from != to {
            self.rates.insert((from, to), rate);
        }
    }

    /// Parses entries like ("USD/TON", "0.2") as they come from a TOML table.
    ///
    /// Keys are two known codes separated by one `/` (case-insensitive, no spaces). Rejected: a
    /// malformed key, an unknown code, a bad rate, a pair given twice (e.g. "USD/TON" and
    /// "usd/ton": which one was meant is unclear) and a currency with itself at a rate other
    /// than 1.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, MoneyError> {
        let mut table = Self::new();
        for (key, value) in entries {
            let bad_key = |reason: String| MoneyError::InvalidRate {
                text: excerpt(key),
                reason,
            };
            let (from_code, to_code) = match key.split_once('/') {
                Some((from_code, to_code)) if !to_code.contains('/') => (from_code, to_code),
                _ => {
                    return Err(bad_key(
                        "a rate table key must be two currency codes separated by '/', \
                         e.g. \"USD/TON\""
                            .to_owned(),
                    ))
                }
            };
            let from = Currency::parse(from_code)?;
            let to = Currency::parse(to_code)?;
            let rate = Rate::parse(value).map_err(|error| match error {
                MoneyError::InvalidRate { text, reason } => MoneyError::InvalidRate {
                    text,
                    reason: format!("in rate table entry {:?}: {reason}", excerpt(key)),
                },
                other => other,
            })?;
            if from == to {
                if rate != Rate::ONE {
                    return Err(bad_key(format!(
                        "{from} converts to itself at rate 1; remove this entry"
                    )));
                }
                continue;
            }
            if table.rates.contains_key(&(from, to)) {
                return Err(bad_key(format!(
                    "the pair {from}/{to} appears more than once; keep one entry"
                )));
            }
            table.insert(from, to, rate);
        }
        Ok(table)
    }
}

impl RateSource for TableRateSource {
    fn quote(&self, from: Currency, to: Currency) -> Result<Quote, MoneyError> {
        let rate = if from == to {
            Rate::ONE
        } else {
            *self
                .rates
                .get(&(from, to))
                .ok_or(MoneyError::RateUnavailable { from, to })?
        };
        Ok(Quote {
            rate,
            source: TABLE_RATE_SOURCE.to_owned(),
        })
    }
}

/// Convert `price` to `to` with a rate from `rates`.
pub fn convert_with(
    rates: &dyn RateSource,
    price: Money,
    to: Currency,
) -> Result<Conversion, MoneyError> {
    let quote = rates.quote(price.currency(), to)?;
    convert(price, to, quote.rate, &quote.source)
}

/// Everything that can go wrong with money. Messages are shown to API users, so each says what was
/// wrong and what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// A currency code not in the built-in table.
    #[error(
        "unknown currency {code:?}: use an ISO 4217 code such as USD or one of the assets \
         XTR, TON, USDT, BTC"
    )]
    UnknownCurrency {
        /// The code as given (cut short if very long).
        code: String,
    },
    /// Text that is not a plain non-negative decimal number.
    #[error("invalid amount {text:?}: {reason}")]
    InvalidAmount {
        /// The text as given (cut short if very long).
        text: String,
        /// What is wrong and how to write it instead.
        reason: String,
    },
    /// More decimal places than the currency's minor unit has.
    #[error(
        "too many decimal places for {currency}: it allows at most {allowed}; round the amount \
         to {allowed} decimal places or give it as an integer in minor units"
    )]
    TooManyDecimals {
        /// The currency whose exponent was exceeded.
        currency: Currency,
        /// Its exponent: the most decimal places it accepts.
        allowed: u8,
    },
    /// An amount, or the result of arithmetic on amounts, above [`MAX_AMOUNT_MINOR`].
    #[error("amount too large: the maximum is {max_minor} minor units; use a smaller amount")]
    AmountTooLarge {
        /// Always [`MAX_AMOUNT_MINOR`], so the message can state the limit.
        max_minor: u64,
    },
    /// An intermediate computation left the exact integer range.
    #[error(
        "arithmetic overflow while computing an amount: use a smaller amount or a rate with \
         fewer digits"
    )]
    Overflow,
    /// A subtraction that would go below zero.
    #[error(
        "the result would be negative: subtract at most the amount available (amounts are \
         never below zero)"
    )]
    Negative,
    /// Arithmetic between amounts of different currencies.
    #[error(
        "currency mismatch: cannot combine {left} with {right}; convert one amount to the \
         other's currency first"
    )]
    CurrencyMismatch {
        /// The currency of the left-hand amount.
        left: Currency,
        /// The currency of the right-hand amount.
        right: Currency,
    },
    /// A rate (or rate table entry) that cannot be used.
    #[error("invalid rate {text:?}: {reason}")]
    InvalidRate {
        /// The rate or rate-table key as given (cut short if very long).
        text: String,
        /// What is wrong and how to write it instead.
        reason: String,
    },
    /// No rate is configured for the pair.
    #[error(
        "no exchange rate configured for {from}/{to}: add e.g. \"{from}/{to}\" = \"0.2\" \
         (meaning 1 {from} = 0.2 {to}) to the rate table"
    )]
    RateUnavailable {
        /// The currency the price is in.
        from: Currency,
        /// The currency it was to be converted to.
        to: Currency,
    },
}

/// Reason for a rate with too many decimals, shared by the two constructors.
const TOO_MANY_RATE_DECIMALS: &str = "it has more than 18 decimal places; round it to at most 18";

/// Reason for a zero rate, shared by the two constructors.
const ZERO_RATE: &str =
    "it must be greater than zero; a rate is the price of 1 unit of one currency in another";

fn too_large() -> MoneyError {
    MoneyError::AmountTooLarge {
        max_minor: MAX_AMOUNT_MINOR,
    }
}

/// User input echoed in an error, cut to a bounded length so a huge request cannot produce a huge
/// error message.
fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut chars = text.chars();
    let mut short: String = chars.by_ref().take(MAX_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

/// Splits a plain decimal ("12.345") into its integer and fraction digits ("12", "345"); the
/// fraction is "" when there is no point. The error is a reason that says how to fix the text.
fn split_plain_decimal(text: &str) -> Result<(&str, &str), &'static str> {
    if text.is_empty() {
        return Err("it is empty; give a number such as 0.05");
    }
    if !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("use only digits and at most one decimal point, e.g. 0.05 \
                    (no sign, spaces, thousands separators or exponent)");
    }
    match text.split_once('.') {
        None => Ok((text, "")),
        Some((_, frac)) if frac.contains('.') => {
            Err("it has more than one decimal point; write e.g. 1.05")
        }
        Some(("", _)) => Err("write a digit before the decimal point, e.g. 0.5 instead of .5"),
        Some((_, "")) => Err("drop the trailing decimal point, e.g. 1 instead of 1."),
        Some((int, frac)) => Ok((int, frac)),
    }
}

/// Value of an all-ASCII-digit string ("" is 0); `None` if it does not fit.
fn digits_to_u64(digits: &str) -> Option<u64> {
    digit_bytes_to_u64(digits.bytes())
}

/// Value of a run of ASCII digits; `None` if it does not fit (or, defensively, is not a digit).
fn digit_bytes_to_u64(mut digits: impl Iterator<Item = u8>) -> Option<u64> {
    digits.try_fold(0u64, |acc, digit| {
        let value = digit.checked_sub(b'0').filter(|value| *value <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(value))
    })
}

/// `value / 10^scale` as an exact decimal with exactly `scale` decimals: (5, 2) -> "0.05".
/// Works on the digit string, so any scale is fine (no power of ten is computed).
fn format_scaled(value: u128, scale: usize) -> String {
    let digits = value.to_string();
    if scale == 0 {
        return digits;
    }
    // Left-pad with zeros so there is at least one digit before the point.
    let width = scale.saturating_add(1);
    let padded = format!("{digits:0>width$}");
    let (int, frac) = padded.split_at(padded.len().saturating_sub(scale));
    format!("{int}.{frac}")
}

/// Drops trailing fractional zeros (and then a bare point): "1234.500" -> "1234.5".
fn trim_fraction(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Ordering;
    use std::collections::HashSet;

    fn usd(text: &str) -> Money {
        Money::parse_decimal(text, Currency::USD).unwrap()
    }

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    // ---- currencies ----

    #[test]
    fn exponents_match_the_spec() {
        let expected = [
            (Currency::XTR, 0),
            (Currency::TON, 9),
            (Currency::USDT, 6),
            (Currency::BTC, 8),
            (Currency::USD, 2),
            (Currency::EUR, 2),
            (Currency::RUB, 2),
            (cur("JPY"), 0),
            (cur("KWD"), 3),
            (cur("CLF"), 4),
            (cur("UYW"), 4),
            (cur("GBP"), 2),
        ];
        for (currency, exponent) in expected {
            assert_eq!(currency.exponent(), exponent, "{currency}");
        }
        for crypto in [Currency::XTR, Currency::TON, Currency::USDT, Currency::BTC] {
            assert_eq!(crypto.kind(), CurrencyKind::CryptoAsset);
        }
        for fiat in [Currency::USD, Currency::EUR, Currency::RUB, cur("JPY")] {
            assert_eq!(fiat.kind(), CurrencyKind::Fiat);
        }
    }

    #[test]
    fn the_table_agrees_with_the_named_constants() {
        for named in [
            Currency::XTR,
            Currency::TON,
            Currency::USDT,
            Currency::BTC,
            Currency::USD,
            Currency::EUR,
            Currency::RUB,
        ] {
            assert_eq!(Currency::parse(named.code()), Ok(named));
        }
    }

    #[test]
    fn non_two_exponents_are_exactly_the_iso_list() {
        let codes_with = |exponent: u8| -> Vec<&str> {
            Currency::all()
                .filter(|c| c.kind() == CurrencyKind::Fiat && c.exponent() == exponent)
                .map(Currency::code)
                .collect()
        };
        assert_eq!(
            codes_with(0),
            [
                "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                "VND", "VUV", "XAF", "XOF", "XPF"
            ]
        );
        assert_eq!(
            codes_with(3),
            ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
        );
        assert_eq!(codes_with(4), ["CLF", "UYW"]);
        assert!(Currency::all().all(
            |c| c.kind() == CurrencyKind::CryptoAsset || matches!(c.exponent(), 0 | 2 | 3 | 4)
        ));
        let crypto: Vec<_> = Currency::all()
            .filter(|c| c.kind() == CurrencyKind::CryptoAsset)
            .collect();
        assert_eq!(
            crypto,
            [Currency::BTC, Currency::TON, Currency::USDT, Currency::XTR]
        );
    }

    #[test]
    fn parse_is_case_insensitive() {
        for text in ["usd", "USD", "Usd", "uSd"] {
            assert_eq!(Currency::parse(text), Ok(Currency::USD));
        }
        assert_eq!(Currency::parse("usdt"), Ok(Currency::USDT));
        assert_eq!(Currency::parse("Ton"), Ok(Currency::TON));
        assert_eq!("xtr".parse::<Currency>(), Ok(Currency::XTR));
        assert_eq!(cur("kwd").code(), "KWD");
    }

    #[test]
    fn unknown_codes_are_rejected_with_a_helpful_message() {
        for text in [
            "XYZ", "", "US", "USDX", "USDTT", "XAU", "XTS", "XXX", "XDR", "HRK", "CUC", " usd",
            "usd ", "U$D", "ÜSD", "usd\n", "USD/TON",
        ] {
            assert_eq!(
                Currency::parse(text),
                Err(MoneyError::UnknownCurrency {
                    code: text.to_owned()
                }),
                "{text:?}"
            );
        }
        let message = Currency::parse("xyz").unwrap_err().to_string();
        assert!(message.contains("unknown currency \"xyz\""), "{message}");
        assert!(message.contains("ISO 4217"), "{message}");
        assert!(message.contains("XTR, TON, USDT, BTC"), "{message}");
        // Long input is cut short in the error instead of being echoed in full.
        let long = "A".repeat(10_000);
        let Err(MoneyError::UnknownCurrency { code }) = Currency::parse(&long) else {
            panic!("expected UnknownCurrency");
        };
        assert!(code.chars().count() <= 41, "{}", code.len());
    }

    #[test]
    fn all_is_sorted_unique_and_complete_enough() {
        let all: Vec<Currency> = Currency::all().collect();
        let codes: HashSet<&str> = all.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), all.len(), "duplicate codes");
        assert!(
            all.windows(2).all(|w| w[0].code() < w[1].code()),
            "not sorted"
        );
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "Ord disagrees with codes"
        );
        for code in [
            "USD", "EUR", "GBP", "CHF", "CNY", "INR", "BRL", "XCG", "SLE", "VED", "VES", "ZWG",
            "XCD",
        ] {
            assert!(codes.contains(code), "{code} missing");
        }
        for c in &all {
            assert_eq!(Currency::parse(c.code()), Ok(*c));
            assert_eq!(Currency::parse(&c.code().to_lowercase()), Ok(*c));
            assert!(c.code().bytes().all(|b| b.is_ascii_uppercase()));
        }
        assert!(all.len() > 150, "only {} currencies", all.len());
    }

    #[test]
    fn currency_formats_as_its_code() {
        assert_eq!(Currency::USDT.to_string(), "USDT");
        assert_eq!(format!("{:?}", Currency::TON), "TON");
        assert_eq!(format!("[{:>5}]", Currency::USD), "[  USD]");
    }

    // ---- amounts ----

    #[test]
    fn parse_decimal_accepts_plain_decimals() {
        let cases: [(&str, Currency, u64); 14] = [
            ("0.05", Currency::USD, 5),
            ("1", Currency::USD, 100),
            ("1.5", Currency::USD, 150),
            ("1.50", Currency::USD, 150),
            ("0", Currency::USD, 0),
            ("0.00", Currency::USD, 0),
            ("007", Currency::USD, 700),
            ("12", cur("JPY"), 12),
            ("7", Currency::XTR, 7),
            ("0.000000001", Currency::TON, 1),
            ("1.000000000", Currency::TON, 1_000_000_000),
            ("0.0001", cur("CLF"), 1),
            ("1.234", cur("KWD"), 1234),
            ("0.00000001", Currency::BTC, 1),
        ];
        for (text, currency, amount_minor) in cases {
            assert_eq!(
                Money::parse_decimal(text, currency),
                Ok(Money::new(amount_minor, currency).unwrap()),
                "{text} {currency}"
            );
        }
    }

    #[test]
    fn parse_decimal_rejects_malformed_text() {
        for text in [
            "", "-1", "+1", "1e3", "1E3", " 1", "1 ", "1.", ".5", ".", "1..2", "1.2.3", "1,000",
            "1_000", "0x10", "abc", "١", "NaN", "inf", "--1", "0.0.",
        ] {
            match Money::parse_decimal(text, Currency::USD) {
                Err(MoneyError::InvalidAmount {
                    text: echoed,
                    reason,
                }) => {
                    assert_eq!(echoed, text);
                    assert!(!reason.is_empty());
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        let message = Money::parse_decimal(".5", Currency::USD)
            .unwrap_err()
            .to_string();
        assert!(message.contains("0.5 instead of .5"), "{message}");
        let message = Money::parse_decimal("1.", Currency::USD)
            .unwrap_err()
            .to_string();
        assert!(message.contains("1 instead of 1."), "{message}");
        let message = Money::parse_decimal("-1", Currency::USD)
            .unwrap_err()
            .to_string();
        assert!(message.contains("no sign"), "{message}");
    }

    #[test]
    fn parse_decimal_rejects_too_many_decimals() {
        let cases = [
            ("0.001", Currency::USD, 2),
            ("1.000", Currency::USD, 2),
            ("1.0", cur("JPY"), 0),
            ("1.5", Currency::XTR, 0),
            ("0.0000000001", Currency::TON, 9),
            ("0.00001", cur("CLF"), 4),
        ];
        for (text, currency, allowed) in cases {
            assert_eq!(
                Money::parse_decimal(text, currency),
                Err(MoneyError::TooManyDecimals { currency, allowed }),
                "{text}"
            );
        }
        let message = Money::parse_decimal("0.001", Currency::USD)
            .unwrap_err()
            .to_string();
        assert!(message.contains("USD"), "{message}");
        assert!(message.contains("at most 2"), "{message}");
    }

    #[test]
    fn parse_decimal_stops_at_the_maximum() {
        let max = MAX_AMOUNT_MINOR.to_string();
        assert_eq!(
            Money::parse_decimal(&max, Currency::XTR)
                .unwrap()
                .amount_minor(),
            MAX_AMOUNT_MINOR
        );
        let too_large = Err(MoneyError::AmountTooLarge {
            max_minor: MAX_AMOUNT_MINOR,
        });
        assert_eq!(
            Money::parse_decimal(&(MAX_AMOUNT_MINOR + 1).to_string(), Currency::XTR),
            too_large
        );
        assert_eq!(
            Money::parse_decimal("92233720368547758.07", Currency::USD)
                .unwrap()
                .amount_minor(),
            MAX_AMOUNT_MINOR
        );
        assert_eq!(
            Money::parse_decimal("92233720368547758.08", Currency::USD),
            too_large
        );
        // Fits u64 but not after scaling to minor units.
        assert_eq!(
            Money::parse_decimal("18446744073709551615", Currency::USD),
            too_large
        );
        assert_eq!(
            Money::parse_decimal("99999999999999999999999999999999", Currency::TON),
            too_large
        );
        // Many leading zeros are harmless.
        let zeros = format!("{}1", "0".repeat(500));
        assert_eq!(Money::parse_decimal(&zeros, Currency::USD), Ok(usd("1")));
    }

    #[test]
    fn to_decimal_string_is_exact() {
        let cases = [
            (5, Currency::USD, "0.05"),
            (100, Currency::USD, "1.00"),
            (123_456, Currency::USD, "1234.56"),
            (0, Currency::USD, "0.00"),
            (7, Currency::XTR, "7"),
            (0, Currency::XTR, "0"),
            (1, Currency::TON, "0.000000001"),
            (1_500_000_000, Currency::TON, "1.500000000"),
            (MAX_AMOUNT_MINOR, Currency::USD, "92233720368547758.07"),
        ];
        for (amount_minor, currency, text) in cases {
            let money = Money::new(amount_minor, currency).unwrap();
            assert_eq!(money.to_decimal_string(), text);
            assert_eq!(Money::parse_decimal(text, currency), Ok(money));
        }
        assert_eq!(usd("0.05").to_string(), "0.05 USD");
        assert_eq!(Money::new(7, Currency::XTR).unwrap().to_string(), "7 XTR");
    }

    #[test]
    fn new_enforces_the_maximum() {
        assert_eq!(
            Money::new(MAX_AMOUNT_MINOR, Currency::USD).map(Money::amount_minor),
            Ok(MAX_AMOUNT_MINOR)
        );
        assert_eq!(
            Money::new(MAX_AMOUNT_MINOR + 1, Currency::USD),
            Err(MoneyError::AmountTooLarge {
                max_minor: MAX_AMOUNT_MINOR
            })
        );
        assert!(Money::new(u64::MAX, Currency::USD).is_err());
        assert_eq!(Money::zero(Currency::TON).amount_minor(), 0);
        assert_eq!(Money::zero(Currency::TON).currency(), Currency::TON);
    }

    #[test]
    fn checked_add_sums_and_refuses_overflow_and_mixing() {
        assert_eq!(usd("0.05").checked_add(usd("1.00")), Ok(usd("1.05")));
        let max = Money::new(MAX_AMOUNT_MINOR, Currency::USD).unwrap();
        assert_eq!(max.checked_add(Money::zero(Currency::USD)), Ok(max));
        assert_eq!(
            max.checked_add(usd("0.01")),
            Err(MoneyError::AmountTooLarge {
                max_minor: MAX_AMOUNT_MINOR
            })
        );
        assert_eq!(
            max.checked_add(max),
            Err(MoneyError::AmountTooLarge {
                max_minor: MAX_AMOUNT_MINOR
            })
        );
        assert_eq!(
            usd("1").checked_add(Money::zero(Currency::EUR)),
            Err(MoneyError::CurrencyMismatch {
                left: Currency::USD,
                right: Currency::EUR
            })
        );
    }

    #[test]
    fn checked_sub_refuses_negative_and_mixing() {
        assert_eq!(usd("1.05").checked_sub(usd("0.05")), Ok(usd("1")));
        assert_eq!(usd("1").checked_sub(usd("1")), Ok(usd("0")));
        assert_eq!(
            usd("0.05").checked_sub(usd("0.06")),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            usd("1").checked_sub(Money::zero(Currency::TON)),
            Err(MoneyError::CurrencyMismatch {
                left: Currency::USD,
                right: Currency::TON
            })
        );
    }

    #[test]
    fn checked_mul_refuses_overflow() {
        assert_eq!(usd("0.05").checked_mul(3), Ok(usd("0.15")));
        assert_eq!(usd("0.05").checked_mul(0), Ok(usd("0")));
        let max = Money::new(MAX_AMOUNT_MINOR, Currency::USD).unwrap();
        assert_eq!(max.checked_mul(1), Ok(max));
        let too_large = Err(MoneyError::AmountTooLarge {
            max_minor: MAX_AMOUNT_MINOR,
        });
        assert_eq!(max.checked_mul(2), too_large); // fits u64, but above the maximum
        assert_eq!(max.checked_mul(3), too_large); // wraps u64
        assert_eq!(usd("0.01").checked_mul(u64::MAX), too_large);
        let half = Money::new(MAX_AMOUNT_MINOR / 2, Currency::USD).unwrap();
        assert_eq!(
            half.checked_mul(2).map(Money::amount_minor),
            Ok(MAX_AMOUNT_MINOR - 1)
        );
    }

    // ---- rates ----

    #[test]
    fn rate_parse_accepts_and_normalises() {
        let r = rate("0.2");
        assert_eq!((r.mantissa(), r.scale()), (2, 1));
        assert_eq!(rate("0.20"), r);
        assert_eq!(rate("00.200000"), r);
        assert_eq!(rate("1"), Rate::ONE);
        assert_eq!(rate("1.000"), Rate::ONE);
        let r = rate("65000.5");
        assert_eq!((r.mantissa(), r.scale()), (650_005, 1));
        let r = rate("1000");
        assert_eq!((r.mantissa(), r.scale()), (1000, 0));
        let r = rate("0.000000000000000001");
        assert_eq!((r.mantissa(), r.scale()), (1, 18));
        // Trailing zeros beyond 18 decimals are only zeros, so they are fine.
        assert_eq!(rate("0.1000000000000000000000"), rate("0.1"));
        assert_eq!(
            rate("18446744073709551615").mantissa(),
            u64::MAX,
            "largest mantissa"
        );
        assert_eq!(rate("0.2").to_string(), "0.2");
        assert_eq!(rate("65000.50").to_string(), "65000.5");
        assert_eq!(
            rate("0.000000000000000001").to_string(),
            "0.000000000000000001"
        );
        assert_eq!(Rate::ONE.to_string(), "1");
        assert_eq!("0.7".parse::<Rate>(), Ok(rate("0.7")));
    }

    #[test]
    fn rate_parse_rejects_bad_rates() {
        for text in [
            "0",
            "0.0",
            "0.0000000000000000000000",
            "-1",
            "-0.2",
            "+1",
            "1e3",
            "",
            " 1",
            ".5",
            "1.",
            "0.0000000000000000001", // 19 significant decimals
            "18446744073709551616",  // mantissa does not fit u64
            "1844674407370955161.6", // nor here
            "abc",
        ] {
            match Rate::parse(text) {
                Err(MoneyError::InvalidRate {
                    text: echoed,
                    reason,
                }) => {
                    assert_eq!(echoed, text);
                    assert!(!reason.is_empty());
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        let message = Rate::parse("0").unwrap_err().to_string();
        assert!(message.contains("greater than zero"), "{message}");
        let message = Rate::parse("0.0000000000000000001")
            .unwrap_err()
            .to_string();
        assert!(message.contains("at most 18"), "{message}");
    }

    #[test]
    fn rate_from_parts_normalises_and_validates() {
        assert_eq!(Rate::from_parts(20, 2), Ok(rate("0.2")));
        assert_eq!(Rate::from_parts(1, 0), Ok(Rate::ONE));
        assert_eq!(Rate::from_parts(1000, 3), Ok(Rate::ONE));
        assert_eq!(
            Rate::from_parts(10, 19).map(|r| (r.mantissa(), r.scale())),
            Ok((1, 18))
        );
        assert!(matches!(
            Rate::from_parts(0, 0),
            Err(MoneyError::InvalidRate { .. })
        ));
        assert_eq!(
            Rate::from_parts(1, 19),
            Err(MoneyError::InvalidRate {
                text: "0.0000000000000000001".to_owned(),
                reason: "it has more than 18 decimal places; round it to at most 18".to_owned(),
            })
        );
        // No panic on any scale, even far beyond u128 powers of ten.
        assert!(Rate::from_parts(u64::MAX, u8::MAX).is_err());
        assert_eq!(
            Rate::from_parts(u64::MAX, 0).map(Rate::mantissa),
            Ok(u64::MAX)
        );
    }

    // ---- conversions ----

    #[test]
    fn usd_to_ton_exact() {
        let conversion = convert(usd("0.05"), Currency::TON, rate("0.2"), "test").unwrap();
        assert_eq!(
            conversion.result,
            Money::new(10_000_000, Currency::TON).unwrap()
        );
        assert_eq!(conversion.rounding, Rounding::Exact);
        assert_eq!(conversion.source, usd("0.05"));
        assert_eq!(conversion.rate, rate("0.2"));
        assert_eq!(conversion.rate_source, "test");
    }

    #[test]
    fn usd_to_stars_rounds_up() {
        // 1 USD = 70 Stars, so 1 cent is 0.7 Stars, which must be paid as 1 Star.
        let conversion = convert(usd("0.01"), Currency::XTR, rate("70"), "test").unwrap();
        assert_eq!(conversion.result, Money::new(1, Currency::XTR).unwrap());
        assert_eq!(
            conversion.rounding,
            Rounding::UpToMinorUnit {
                unrounded_minor: "0.7".to_owned()
            }
        );
        // 1 USD = 0.7 Stars: 1 cent is 0.007 Stars, still never 0.
        let conversion = convert(usd("0.01"), Currency::XTR, rate("0.7"), "test").unwrap();
        assert_eq!(conversion.result.amount_minor(), 1);
        assert_eq!(
            conversion.rounding,
            Rounding::UpToMinorUnit {
                unrounded_minor: "0.007".to_owned()
            }
        );
        // 0.10 USD at 70 = 7 Stars exactly.
        let conversion = convert(usd("0.10"), Currency::XTR, rate("70"), "test").unwrap();
        assert_eq!(conversion.result.amount_minor(), 7);
        assert_eq!(conversion.rounding, Rounding::Exact);
    }

    #[test]
    fn eur_to_btc_with_many_decimals() {
        let eur = Money::parse_decimal("1.00", Currency::EUR).unwrap();
        // 1 EUR = 0.00001234567 BTC = 1234.567 sat -> 1235 sat.
        let conversion = convert(eur, Currency::BTC, rate("0.00001234567"), "test").unwrap();
        assert_eq!(conversion.result, Money::new(1235, Currency::BTC).unwrap());
        assert_eq!(
            conversion.rounding,
            Rounding::UpToMinorUnit {
                unrounded_minor: "1234.567".to_owned()
            }
        );
        // 1 EUR = 0.00001234 BTC is exactly 1234 sat.
        let conversion = convert(eur, Currency::BTC, rate("0.00001234"), "test").unwrap();
        assert_eq!(conversion.result.amount_minor(), 1234);
        assert_eq!(conversion.rounding, Rounding::Exact);
    }

    #[test]
    fn jpy_to_usdt() {
        let jpy = cur("JPY");
        let yen = Money::parse_decimal("150", jpy).unwrap();
        let conversion = convert(yen, Currency::USDT, rate("0.0066"), "test").unwrap();
        assert_eq!(
            conversion.result,
            Money::new(990_000, Currency::USDT).unwrap()
        );
        assert_eq!(conversion.rounding, Rounding::Exact);
        let one_yen = Money::parse_decimal("1", jpy).unwrap();
        let conversion = convert(
            one_yen,
            Currency::USDT,
            rate("0.006666666666666667"),
            "test",
        )
        .unwrap();
        assert_eq!(conversion.result.amount_minor(), 6667);
        assert_eq!(
            conversion.rounding,
            Rounding::UpToMinorUnit {
                unrounded_minor: "6666.666666666667".to_owned()
            }
        );
    }

    #[test]
    fn huge_conversions_fail_cleanly() {
        let too_large = Err(MoneyError::AmountTooLarge {
            max_minor: MAX_AMOUNT_MINOR,
        });
        let max_usd = Money::new(MAX_AMOUNT_MINOR, Currency::USD).unwrap();
        let huge_rate = Rate::from_parts(u64::MAX, 0).unwrap();
        assert_eq!(
            convert(max_usd, Currency::TON, huge_rate, "test"),
            too_large
        );
        // Exercises the multiply-by-a-power-of-ten path past u128.
        let max_stars = Money::new(MAX_AMOUNT_MINOR, Currency::XTR).unwrap();
        assert_eq!(
            convert(max_stars, Currency::TON, huge_rate, "test"),
            too_large
        );
        // Exactly the maximum, then past it, after an exact multiplication.
        let over = convert(max_stars, Currency::TON, rate("0.000000001"), "test").unwrap();
        assert_eq!(over.result.amount_minor(), MAX_AMOUNT_MINOR);
        assert_eq!(
            convert(max_stars, Currency::TON, rate("0.000000002"), "test"),
            too_large
        );
        // Huge amount, tiny rate: fine and rounded up.
        let max_ton = Money::new(MAX_AMOUNT_MINOR, Currency::TON).unwrap();
        let tiny = convert(max_ton, Currency::XTR, rate("0.000000000000000001"), "test").unwrap();
        assert_eq!(tiny.result.amount_minor(), 1);
    }

    #[test]
    fn same_currency_requires_rate_one() {
        let price = usd("12.34");
        let conversion = convert(price, Currency::USD, Rate::ONE, "identity").unwrap();
        assert_eq!(conversion.result, price);
        assert_eq!(conversion.rounding, Rounding::Exact);
        assert!(matches!(
            convert(price, Currency::USD, rate("2"), "test"),
            Err(MoneyError::InvalidRate { .. })
        ));
    }

    #[test]
    fn zero_converts_to_zero_and_dust_to_one_unit() {
        let zero = convert(Money::zero(Currency::USD), Currency::TON, rate("0.2"), "t").unwrap();
        assert_eq!(zero.result, Money::zero(Currency::TON));
        assert_eq!(zero.rounding, Rounding::Exact);
        let dust = Money::new(1, Currency::TON).unwrap();
        let conversion = convert(dust, Currency::XTR, rate("0.000000000000000001"), "t").unwrap();
        assert_eq!(conversion.result.amount_minor(), 1);
        assert_eq!(
            conversion.rounding,
            Rounding::UpToMinorUnit {
                unrounded_minor: "0.000000000000000000000000001".to_owned()
            }
        );
    }

    // ---- rate table ----

    #[test]
    fn table_from_entries_quotes_configured_pairs() {
        let table = TableRateSource::from_entries([
            ("USD/TON", "0.2"),
            ("eur/btc", "0.00001234567"),
            ("USD/USD", "1"),
        ])
        .unwrap();
        assert_eq!(
            table.quote(Currency::USD, Currency::TON),
            Ok(Quote {
                rate: rate("0.2"),
                source: "table".to_owned()
            })
        );
        assert_eq!(
            table.quote(Currency::EUR, Currency::BTC).map(|q| q.rate),
            Ok(rate("0.00001234567"))
        );
        // Same currency is identity even though it is not (and need not be) configured.
        assert_eq!(
            table.quote(Currency::TON, Currency::TON).map(|q| q.rate),
            Ok(Rate::ONE)
        );
        let conversion = convert_with(&table, usd("0.05"), Currency::TON).unwrap();
        assert_eq!(conversion.result.amount_minor(), 10_000_000);
        assert_eq!(conversion.rate, rate("0.2"));
        assert_eq!(conversion.rate_source, "table");
        let identity = convert_with(&table, usd("0.05"), Currency::USD).unwrap();
        assert_eq!(identity.result, usd("0.05"));
    }

    #[test]
    fn table_invents_no_inverse_rates() {
        let table = TableRateSource::from_entries([("USD/TON", "0.2")]).unwrap();
        let error = table.quote(Currency::TON, Currency::USD).unwrap_err();
        assert_eq!(
            error,
            MoneyError::RateUnavailable {
                from: Currency::TON,
                to: Currency::USD
            }
        );
        let message = error.to_string();
        assert!(message.contains("\"TON/USD\" = \"0.2\""), "{message}");
        assert!(message.contains("rate table"), "{message}");
        assert_eq!(
            convert_with(&table, usd("1"), Currency::XTR),
            Err(MoneyError::RateUnavailable {
                from: Currency::USD,
                to: Currency::XTR
            })
        );
    }

    #[test]
    fn table_from_entries_rejects_bad_keys_and_values() {
        for key in [
            "USDTON",
            "USD/",
            "/TON",
            "USD/TON/XTR",
            "USD-TON",
            "USD /TON",
            "USD/ TON",
            "",
        ] {
            let result = TableRateSource::from_entries([(key, "0.2")]);
            assert!(
                matches!(
                    result,
                    Err(MoneyError::InvalidRate { .. } | MoneyError::UnknownCurrency { .. })
                ),
                "{key:?} gave {result:?}"
            );
        }
        assert!(matches!(
            TableRateSource::from_entries([("USDTON", "0.2")]),
            Err(MoneyError::InvalidRate { text, reason }) if text == "USDTON" && reason.contains("\"USD/TON\"")
        ));
        assert_eq!(
            TableRateSource::from_entries([("XYZ/TON", "0.2")]).map(|_| ()),
            Err(MoneyError::UnknownCurrency {
                code: "XYZ".to_owned()
            })
        );
        let bad_value = TableRateSource::from_entries([("USD/TON", "abc")]).unwrap_err();
        assert!(bad_value.to_string().contains("USD/TON"), "{bad_value}");
        assert!(matches!(
            TableRateSource::from_entries([("USD/TON", "0")]),
            Err(MoneyError::InvalidRate { .. })
        ));
        assert!(matches!(
            TableRateSource::from_entries([("USD/USD", "0.5")]),
            Err(MoneyError::InvalidRate { .. })
        ));
        assert!(matches!(
            TableRateSource::from_entries([("USD/TON", "0.2"), ("usd/ton", "0.3")]),
            Err(MoneyError::InvalidRate { reason, .. }) if reason.contains("more than once")
        ));
    }

    #[test]
    fn table_insert_replaces_and_ignores_identity() {
        let mut table = TableRateSource::new();
        table.insert(Currency::USD, Currency::TON, rate("0.2"));
        table.insert(Currency::USD, Currency::TON, rate("0.3"));
        table.insert(Currency::USD, Currency::USD, rate("5"));
        assert_eq!(
            table.quote(Currency::USD, Currency::TON).map(|q| q.rate),
            Ok(rate("0.3"))
        );
        assert_eq!(
            table.quote(Currency::USD, Currency::USD).map(|q| q.rate),
            Ok(Rate::ONE)
        );
    }

    #[test]
    fn every_error_message_says_what_to_do() {
        let errors = [
            MoneyError::UnknownCurrency {
                code: "XYZ".to_owned(),
            },
            Money::parse_decimal("-1", Currency::USD).unwrap_err(),
            MoneyError::TooManyDecimals {
                currency: Currency::USD,
                allowed: 2,
            },
            MoneyError::AmountTooLarge {
                max_minor: MAX_AMOUNT_MINOR,
            },
            MoneyError::Overflow,
            MoneyError::Negative,
            MoneyError::CurrencyMismatch {
                left: Currency::USD,
                right: Currency::EUR,
            },
            Rate::parse("0").unwrap_err(),
            MoneyError::RateUnavailable {
                from: Currency::USD,
                to: Currency::TON,
            },
        ];
        let hints = [
            "use ",
            "e.g.",
            "round",
            "smaller",
            "smaller",
            "subtract at most",
            "convert",
            "greater",
            "add e.g.",
        ];
        for (error, hint) in errors.iter().zip(hints) {
            let message = error.to_string();
            assert!(message.contains(hint), "{message:?} lacks {hint:?}");
            assert!(
                message.contains(": "),
                "{message:?} does not say what was wrong"
            );
        }
        assert!(MoneyError::AmountTooLarge {
            max_minor: MAX_AMOUNT_MINOR
        }
        .to_string()
        .contains("9223372036854775807"));
    }

    // ---- property tests ----

    /// Minimal unsigned big integer (little-endian base-2^64 limbs), independent of the u128 code
    /// under test, so the ceiling can be checked even where u128 would overflow.
    #[derive(Clone, Debug)]
    struct Big(Vec<u64>);

    impl Big {
        fn from_u64(value: u64) -> Big {
            Big(vec![value])
        }

        fn mul(mut self, factor: u64) -> Big {
            let mut carry: u128 = 0;
            for limb in &mut self.0 {
                let t = u128::from(*limb) * u128::from(factor) + carry;
                *limb = t as u64;
                carry = t >> 64;
            }
            if carry > 0 {
                self.0.push(carry as u64);
            }
            self
        }

        fn add(mut self, addend: u64) -> Big {
            let mut carry = u128::from(addend);
            for limb in &mut self.0 {
                let t = u128::from(*limb) + carry;
                *limb = t as u64;
                carry = t >> 64;
            }
            if carry > 0 {
                self.0.push(carry as u64);
            }
            self
        }

        fn pow10(self, n: u32) -> Big {
            (0..n).fold(self, |big, _| big.mul(10))
        }

        fn digits(text: &str) -> Big {
            text.bytes().fold(Big::from_u64(0), |big, d| {
                big.mul(10).add(u64::from(d - b'0'))
            })
        }

        fn cmp(&self, other: &Big) -> Ordering {
            let trimmed = |v: &Vec<u64>| {
                let mut v = v.clone();
                while v.last() == Some(&0) {
                    v.pop();
                }
                v
            };
            let (a, b) = (trimmed(&self.0), trimmed(&other.0));
            a.len()
                .cmp(&b.len())
                .then_with(|| a.iter().rev().cmp(b.iter().rev()))
        }
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        (0..CURRENCIES.len()).prop_map(|i| CURRENCIES[i])
    }

    fn any_amount_minor() -> impl Strategy<Value = u64> {
        prop_oneof![0..=1_000u64, 0..=1_000_000_000_000u64, 0..=MAX_AMOUNT_MINOR]
    }

    fn any_rate() -> impl Strategy<Value = Rate> {
        (
            prop_oneof![1..=1_000u64, 1..=1_000_000_000u64, 1..=u64::MAX],
            0..=MAX_RATE_SCALE,
        )
            .prop_map(|(mantissa, scale)| Rate::from_parts(mantissa, scale).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn conversion_is_exactly_the_ceiling(
            amount_minor in any_amount_minor(),
            from in any_currency(),
            to in any_currency(),
            rate in any_rate(),
        ) {
            prop_assume!(from != to);
            let source = Money::new(amount_minor, from).unwrap();
            // Exact value = numerator / denominator minor units of `to`.
            let numerator = Big::from_u64(amount_minor)
                .mul(rate.mantissa())
                .pow10(u32::from(to.exponent()));
            let denominator_exponent = u32::from(rate.scale()) + u32::from(from.exponent());
            let denominator = Big::from_u64(1).pow10(denominator_exponent);
            match convert(source, to, rate, "prop") {
                Ok(conversion) => {
                    let r = conversion.result.amount_minor();
                    prop_assert_eq!(conversion.result.currency(), to);
                    prop_assert!(r <= MAX_AMOUNT_MINOR);
                    // r * den >= num
                    let upper = denominator.clone().mul(r);
                    prop_assert_ne!(upper.cmp(&numerator), Ordering::Less);
                    // (r - 1) * den < num, i.e. r is the smallest such integer.
                    if r > 0 {
                        let lower = denominator.clone().mul(r - 1);
                        prop_assert_eq!(lower.cmp(&numerator), Ordering::Less);
                    } else {
                        prop_assert_eq!(amount_minor, 0);
                    }
                    if amount_minor > 0 {
                        prop_assert!(r >= 1);
                    }
                    match &conversion.rounding {
                        Rounding::Exact => {
                            prop_assert_eq!(upper.cmp(&numerator), Ordering::Equal);
                        }
                        Rounding::UpToMinorUnit { unrounded_minor } => {
                            prop_assert_eq!(upper.cmp(&numerator), Ordering::Greater);
                            // unrounded = U / 10^k must equal num / den: U * den == num * 10^k.
                            let (int, frac) = unrounded_minor
                                .split_once('.')
                                .unwrap_or((unrounded_minor.as_str(), ""));
                            prop_assert!(!frac.is_empty() && !frac.ends_with('0'));
                            prop_assert!(!int.is_empty());
                            let left = Big::digits(&format!("{int}{frac}"))
                                .pow10(denominator_exponent);
                            let right = numerator.clone().pow10(frac.len() as u32);
                            prop_assert_eq!(left.cmp(&right), Ordering::Equal);
                            prop_assert_eq!(
                                Big::digits(int).add(1).cmp(&Big::from_u64(r)),
                                Ordering::Equal
                            );
                        }
                    }
                    prop_assert_eq!(conversion.rate, rate);
                    prop_assert_eq!(conversion.source, source);
                }
                Err(error) => {
                    prop_assert!(
                        matches!(error, MoneyError::AmountTooLarge { .. } | MoneyError::Overflow),
                        "unexpected {:?}", error
                    );
                    // Only allowed when the true ceiling exceeds the maximum:
                    // MAX * den < num.
                    let limit = denominator.clone().mul(MAX_AMOUNT_MINOR);
                    prop_assert_eq!(limit.cmp(&numerator), Ordering::Less);
                }
            }
        }

        #[test]
        fn decimal_string_round_trips(amount_minor in any_amount_minor(), currency in any_currency()) {
            let money = Money::new(amount_minor, currency).unwrap();
            let text = money.to_decimal_string();
            prop_assert_eq!(Money::parse_decimal(&text, currency), Ok(money));
        }

        #[test]
        fn rate_string_round_trips(rate in any_rate()) {
            prop_assert_eq!(Rate::parse(&rate.to_string()), Ok(rate));
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,40}", currency in any_currency()) {
            let _ = Money::parse_decimal(&text, currency);
            let _ = Rate::parse(&text);
            let _ = Currency::parse(&text);
            let _ = TableRateSource::from_entries([(text.as_str(), text.as_str())]);
        }

        #[test]
        fn numeric_text_parses_or_errs_consistently(
            int in "[0-9]{1,25}",
            frac in proptest::option::of("[0-9]{1,12}"),
            currency in any_currency(),
        ) {
            let text = match &frac {
                Some(frac) => format!("{int}.{frac}"),
                None => int.clone(),
            };
            match Money::parse_decimal(&text, currency) {
                Ok(money) => {
                    // The canonical form differs only by leading zeros / padding.
                    let again = Money::parse_decimal(&money.to_decimal_string(), currency);
                    prop_assert_eq!(again, Ok(money));
                }
                Err(MoneyError::TooManyDecimals { allowed, .. }) => {
                    prop_assert!(frac.map_or(0, |f| f.len()) > usize::from(allowed));
                }
                Err(MoneyError::AmountTooLarge { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        #[test]
        fn add_then_sub_is_identity(
            a in any_amount_minor(),
            b in any_amount_minor(),
            currency in any_currency(),
        ) {
            let (a, b) = (Money::new(a, currency).unwrap(), Money::new(b, currency).unwrap());
            match a.checked_add(b) {
                Ok(sum) => prop_assert_eq!(sum.checked_sub(b), Ok(a)),
                Err(error) => {
                    prop_assert!(
                        matches!(error, MoneyError::AmountTooLarge { .. }),
                        "unexpected {:?}",
                        error
                    );
                    prop_assert!(u128::from(a.amount_minor()) + u128::from(b.amount_minor())
                        > u128::from(MAX_AMOUNT_MINOR));
                }
            }
        }
    }
}
