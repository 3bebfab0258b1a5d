//! The LNURL protocol pieces farthing serves (github.com/lnurl/luds).
//!
//! - LUD-01: [`encode`] / [`decode`] a URL as a bech32 `LNURL1…` string.
//! - LUD-06 and LUD-16: [`pay_metadata`], its [`description_hash`] (the `h` field of the
//!   invoice, checked with [`crate::bolt11::check`]), the [`PayRequest`] answer and the
//!   [`PayCallbackAnswer`]; LUD-12: [`PayRequest::comment_allowed`].
//! - LUD-03: the [`WithdrawRequest`] answer.
//! - LUD-04: LNURL-auth challenges ([`new_k1`], [`auth_url`]) and [`verify_auth`].
//! - [`status_ok`] / [`status_error`]: the `{"status": …}` answers all of them share.
//!
//! Pure: no I/O, no clock, no randomness (the caller supplies it). Keeping each `k1` single-use
//! and short-lived is the server's job.

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Checksum, Hrp};
use hex_conservative::{DisplayHex, FromHex};
use secp256k1::ecdsa::Signature;
use secp256k1::{Message, PublicKey, Secp256k1};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The human-readable part of an LNURL (LUD-01).
const LNURL_HRP: Hrp = Hrp::parse_unchecked("lnurl");

/// The URI scheme wallets put in front of an LNURL (`lightning:LNURL1…`), accepted and dropped.
const LIGHTNING_SCHEME: &str = "lightning:";

/// The longest LNURL [`decode`] reads, in characters. LUD-01 sets no limit (and explicitly not
/// BIP-173's 90); this bounds the work done on untrusted input, far above any real URL.
pub const MAX_LNURL_CHARS: usize = 8192;

/// Plain bech32 (BIP-173) without its 90-character limit, which LUD-01 does not keep: the same
/// checksum constants as [`bech32::Bech32`], only `CODE_LENGTH` differs (as `lightning-invoice`
/// does for BOLT11).
enum LnurlBech32 {}

impl Checksum for LnurlBech32 {
    // Any length encodes; `decode` bounds its input with `MAX_LNURL_CHARS` first.
    const CODE_LENGTH: usize = usize::MAX;
    type MidstateRepr = <bech32::Bech32 as Checksum>::MidstateRepr;
    const CHECKSUM_LENGTH: usize = bech32::Bech32::CHECKSUM_LENGTH;
    const GENERATOR_SH: [Self::MidstateRepr; 5] = bech32::Bech32::GENERATOR_SH;
    const TARGET_RESIDUE: Self::MidstateRepr = bech32::Bech32::TARGET_RESIDUE;
}

/// Encodes `url` as an LNURL (LUD-01): bech32 of its UTF-8 bytes with hrp `lnurl`, in uppercase
/// (LUD-01: QR codes SHOULD use uppercase; it also makes denser QR codes).
pub fn encode(url: &str) -> String {
    match bech32::encode_upper::<LnurlBech32>(LNURL_HRP, url.as_bytes()) {
        Ok(lnurl) => lnurl,
        // `encode_upper` fails only when the result is longer than `CODE_LENGTH` (unbounded
        // here) or when writing to a `String` fails, which it does not.
        Err(e) => unreachable!("bech32 encoding into a String with no length limit failed: {e}"),
    }
}

/// Decodes an LNURL (LUD-01) back to its URL.
///
/// Accepts an optional `lightning:` prefix (any case), surrounding whitespace, and the bech32
/// part in all lowercase or all uppercase (mixed case is refused, as bech32 requires). The URL
/// is returned as written; which URLs to fetch (LUD-01: `https://`, or `http://` for onion) is
/// the caller's decision.
pub fn decode(lnurl: &str) -> Result<String, LnurlError> {
    let text = lnurl.trim();
    let text = match text.get(..LIGHTNING_SCHEME.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(LIGHTNING_SCHEME) => {
            &text[LIGHTNING_SCHEME.len()..]
        }
        _ => text,
    };
    if text.len() > MAX_LNURL_CHARS {
        return Err(LnurlError::TooLong {
            length: text.len(),
            max: MAX_LNURL_CHARS,
        });
    }
    let checked = CheckedHrpstring::new::<LnurlBech32>(text)
        .map_err(|e| LnurlError::Bech32(e.to_string()))?;
    if checked.hrp() != LNURL_HRP {
        return Err(LnurlError::WrongPrefix {
            found: checked.hrp().to_lowercase(),
        });
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    String::from_utf8(bytes).map_err(|_| LnurlError::NotUtf8)
}

/// Why an LNURL could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LnurlError {
    /// Not bech32: bad characters, mixed case, no separator, or a wrong checksum.
    #[error(
        "not a bech32 LNURL ({0}); pass the whole LNURL1… string, all lowercase or all uppercase"
    )]
    Bech32(String),
    /// Valid bech32, but not with the `lnurl` prefix (e.g. a BOLT11 invoice or an address).
    #[error("the bech32 prefix is {found:?}, an LNURL's is \"lnurl\"")]
    WrongPrefix {
        /// The prefix found, lowercase.
        found: String,
    },
    /// The decoded bytes are not UTF-8 text, so not a URL.
    #[error("the LNURL does not hold UTF-8 text, so it is not a URL")]
    NotUtf8,
    /// Longer than [`MAX_LNURL_CHARS`].
    #[error("the LNURL is {length} characters long; at most {max} are read")]
    TooLong {
        /// The length of the input, in bytes.
        length: usize,
        /// The limit.
        max: usize,
    },
}

/// The LNURL-pay `metadata` string (LUD-06): a JSON array holding `["text/plain", text]` and,
/// for a Lightning address (LUD-16), `["text/identifier", "name@host"]`.
///
/// The invoice's description hash must be SHA-256 of exactly this string
/// ([`description_hash`]), so store it and serve it byte for byte; do not rebuild it.
pub fn pay_metadata(text: &str, identifier: Option<&str>) -> String {
    let mut entries = vec![json!(["text/plain", text])];
    if let Some(identifier) = identifier {
        entries.push(json!(["text/identifier", identifier]));
    }
    Value::Array(entries).to_string()
}

/// SHA-256 of the exact `metadata` string (LUD-06: of its UTF-8 bytes, unescaped): the `h`
/// field the invoice must carry.
pub fn description_hash(metadata: &str) -> [u8; 32] {
    Sha256::digest(metadata.as_bytes()).into()
}

/// The `tag` of a [`PayRequest`]: always `"payRequest"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayRequestTag {
    /// `"payRequest"`.
    #[default]
    #[serde(rename = "payRequest")]
    PayRequest,
}

/// The answer to the first LNURL-pay request (LUD-06 step 3; LUD-12 `commentAllowed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayRequest {
    /// Where the wallet asks for an invoice (`<callback>?amount=<msat>`).
    pub callback: String,
    /// The largest amount accepted, msat.
    pub max_sendable: u64,
    /// The smallest amount accepted, msat (at least 1, at most `max_sendable`).
    pub min_sendable: u64,
    /// The metadata JSON, as a string ([`pay_metadata`]).
    pub metadata: String,
    /// Always `"payRequest"`.
    pub tag: PayRequestTag,
    /// LUD-12: how many characters of `comment` the callback accepts; left out when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_allowed: Option<u16>,
}

/// The answer to the LNURL-pay callback (LUD-06 step 5): the invoice, and `routes: []`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayCallbackAnswer {
    /// The BOLT11 invoice.
    pub pr: String,
    /// Always empty (LUD-06 keeps the field for old wallets).
    pub routes: Vec<Value>,
}

impl PayCallbackAnswer {
    /// The answer carrying `pr`, with `routes: []`.
    pub fn new(pr: String) -> PayCallbackAnswer {
        PayCallbackAnswer {
            pr,
            routes: Vec::new(),
        }
    }
}

/// The `tag` of a [`WithdrawRequest`]: always `"withdrawRequest"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WithdrawRequestTag {
    /// `"withdrawRequest"`.
    #[default]
    #[serde(rename = "withdrawRequest")]
    WithdrawRequest,
}

/// The answer to an LNURL-withdraw request (LUD-03 step 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawRequest {
    /// Always `"withdrawRequest"`.
    pub tag: WithdrawRequestTag,
    /// Where the wallet sends its invoice (`<callback>?k1=<k1>&pr=<invoice>`).
    pub callback: String,
    /// The value identifying this withdrawal in the callback.
    pub k1: String,
    /// The description the wallet puts in its invoice by default.
    pub default_description: String,
    /// The smallest amount the wallet may withdraw, msat (0 when nothing can be withdrawn).
    pub min_withdrawable: u64,
    /// The largest amount the wallet may withdraw, msat.
    pub max_withdrawable: u64,
}

/// `{"status": "OK"}`.
pub fn status_ok() -> Value {
    json!({ "status": "OK" })
}

/// `{"status": "ERROR", "reason": reason}`.
pub fn status_error(reason: &str) -> Value {
    json!({ "status": "ERROR", "reason": reason })
}

/// An LNURL-auth challenge `k1` (LUD-04): the 32 bytes of `random`, as lowercase hex. The
/// caller supplies fresh randomness from a CSPRNG (this module reads none).
pub fn new_k1(random: [u8; 32]) -> String {
    random.to_lower_hex_string()
}

/// The LNURL-auth URL for `k1_hex` (LUD-04): `base_callback` with `tag=login`, `k1` and, when
/// given, `action` (LUD-04 lists `register`, `login`, `link`, `auth`) added to its query.
pub fn auth_url(base_callback: &str, k1_hex: &str, action: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("tag", "login").append_pair("k1", k1_hex);
    if let Some(action) = action {
        query.append_pair("action", action);
    }
    let query = query.finish();
    let separator = if base_callback.ends_with('?') || base_callback.ends_with('&') {
        ""
    } else if base_callback.contains('?') {
        "&"
    } else {
        "?"
    };
    format!("{base_callback}{separator}{query}")
}

/// A wallet's LNURL-auth `linkingKey` whose signature verified: its compressed public key,
/// lowercase hex (66 characters). Only [`verify_auth`] makes one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LinkingKey(String);

impl LinkingKey {
    /// The key, lowercase hex of the 33-byte compressed form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LinkingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Verifies an LNURL-auth login (LUD-04): `sig` (hex of a DER-encoded ECDSA signature) is a
/// signature by `key` (hex of a 33-byte compressed secp256k1 public key) of the 32 bytes of
/// `k1` (hex), which are signed as they are (they are the message digest, not hashed again).
///
/// High-S signatures are accepted: the signature is normalized to low-S before it is verified.
/// LUD-04 asks only for a valid secp256k1 ECDSA signature, and `(r, s)` and `(r, n - s)` are
/// both valid; libsecp256k1 refuses high-S only to stop transaction malleability in Bitcoin,
/// which does not matter here (the signature identifies nothing and each `k1` is used once),
/// while wallets whose signing library does not normalize would otherwise fail to log in.
///
/// Strict DER is required (no BER leniency); uncompressed keys are refused (LUD-04: compressed,
/// 33 bytes). The checks that `k1` was issued, is unused and is fresh are the caller's.
pub fn verify_auth(k1_hex: &str, sig_hex: &str, key_hex: &str) -> Result<LinkingKey, AuthError> {
    let k1 = <[u8; 32]>::from_hex(k1_hex).map_err(|e| AuthError::MalformedK1(e.to_string()))?;
    // Refuse before decoding: a DER signature is at most 72 bytes, and `sig` is untrusted.
    if sig_hex.len() > 2 * secp256k1::constants::MAX_SIGNATURE_SIZE {
        return Err(AuthError::MalformedSignature(format!(
            "{} hex characters, a DER signature has at most {}",
            sig_hex.len(),
            2 * secp256k1::constants::MAX_SIGNATURE_SIZE
        )));
    }
    let der =
        Vec::<u8>::from_hex(sig_hex).map_err(|e| AuthError::MalformedSignature(e.to_string()))?;
    let key_bytes =
        <[u8; 33]>::from_hex(key_hex).map_err(|e| AuthError::MalformedKey(e.to_string()))?;
    let mut signature =
        Signature::from_der(&der).map_err(|e| AuthError::MalformedSignature(e.to_string()))?;
    // `from_slice` on 33 bytes takes only the compressed forms (prefix 02 or 03) and checks that
    // the point is on the curve.
    let key =
        PublicKey::from_slice(&key_bytes).map_err(|e| AuthError::MalformedKey(e.to_string()))?;
    signature.normalize_s();
    Secp256k1::verification_only()
        .verify_ecdsa(&Message::from_digest(k1), &signature, &key)
        .map_err(|_| AuthError::SignatureMismatch)?;
    Ok(LinkingKey(key.serialize().to_lower_hex_string()))
}

/// Why an LNURL-auth login was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `k1` is not 64 hex characters.
    #[error("k1 must be 64 hex characters (32 bytes): {0}")]
    MalformedK1(String),
    /// `sig` is not hex of a strict-DER ECDSA signature.
    #[error("sig must be hex of a DER-encoded ECDSA signature: {0}")]
    MalformedSignature(String),
    /// `key` is not hex of a valid 33-byte compressed secp256k1 public key.
    #[error("key must be hex of a compressed (33-byte) secp256k1 public key: {0}")]
    MalformedKey(String),
    /// Well-formed, but `sig` is not a signature of `k1` by `key`.
    #[error(
        "sig is not a signature of k1 by key; sign exactly the 32 bytes of k1 with the linking key"
    )]
    SignatureMismatch,
}
