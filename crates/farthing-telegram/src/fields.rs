//! The signed-fields format shared by Mini App `initData` and Login Widget data: a strict
//! `application/x-www-form-urlencoded` parser, the data-check-string, HMAC-SHA-256 and hex.
//!
//! Strict on purpose: a field that appears twice, a bad `%` escape, bytes that are not UTF-8, a
//! key containing `=` or any line feed make the input malformed instead of being "repaired",
//! because the data-check-string is built from the decoded fields (`key=value` lines joined by
//! `\n`) and a repair, a duplicate or an embedded `\n`/`=` could make two different inputs hash
//! alike. Telegram never produces any of them. This module must never decide whether data is
//! trusted; it only prepares the bytes the callers check.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The longest input accepted, in bytes. Real `initData` is well under 2 KiB even with a long
/// name, a photo URL, a receiver and a chat.
pub(crate) const MAX_INPUT_BYTES: usize = 16 * 1024;
/// The most fields accepted. Telegram sends at most a dozen.
pub(crate) const MAX_FIELDS: usize = 64;
/// The longest field name accepted, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 64;

/// What is wrong with the encoding; callers wrap it into their own error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FieldsError {
    /// The input can't be decoded into fields; the text says why.
    Malformed(String),
    /// This field name appears more than once.
    Duplicate(String),
}

/// Decoded fields in the order received, each name once.
#[derive(Debug)]
pub(crate) struct Fields {
    pairs: Vec<(String, String)>,
}

impl Fields {
    /// Parses a query string (`a=1&b=%7B%7D`). `+` means a space, as in every form encoder
    /// (Telegram's clients send `%20`; `URLSearchParams` sends `+`). Every `&`-separated part
    /// must contain `=`; the value may be empty.
    pub(crate) fn parse_query(input: &str) -> Result<Self, FieldsError> {
        if input.is_empty() {
            return Err(FieldsError::Malformed("it is empty".into()));
        }
        if input.len() > MAX_INPUT_BYTES {
            return Err(FieldsError::Malformed(format!(
                "it is {} bytes long, more than the {MAX_INPUT_BYTES} accepted",
                input.len()
            )));
        }
        let mut fields = Self { pairs: Vec::new() };
        for part in input.split('&') {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                FieldsError::Malformed(if part.is_empty() {
                    "it has an empty part (\"&&\", or '&' at the start or end)".into()
                } else {
                    "a part has no '=' (expected key=value)".into()
                })
            })?;
            fields.push(percent_decode(key)?, percent_decode(value)?)?;
        }
        Ok(fields)
    }

    /// Takes already decoded fields (e.g. from a JSON object) through the same checks.
    pub(crate) fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, FieldsError> {
        let mut fields = Self { pairs: Vec::new() };
        let mut total = 0usize;
        for (key, value) in pairs {
            total = total.saturating_add(key.len() + value.len() + 2);
            if total > MAX_INPUT_BYTES {
                return Err(FieldsError::Malformed(format!(
                    "the fields are longer than the {MAX_INPUT_BYTES} bytes accepted"
                )));
            }
            fields.push(key.to_owned(), value.to_owned())?;
        }
        if fields.pairs.is_empty() {
            return Err(FieldsError::Malformed("it has no fields".into()));
        }
        Ok(fields)
    }

    fn push(&mut self, key: String, value: String) -> Result<(), FieldsError> {
        if key.is_empty() {
            return Err(FieldsError::Malformed("a field has an empty name".into()));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(FieldsError::Malformed(format!(
                "a field name is longer than {MAX_KEY_BYTES} bytes"
            )));
        }
        if key.contains(['=', '\n']) {
            return Err(FieldsError::Malformed(
                "a field name contains '=' or a line feed".into(),
            ));
        }
        if value.contains('\n') {
            return Err(FieldsError::Malformed(format!(
                "field {key:?} contains a line feed (Telegram sends JSON with \\n escaped)"
            )));
        }
        if self.pairs.len() == MAX_FIELDS {
            return Err(FieldsError::Malformed(format!(
                "it has more than {MAX_FIELDS} fields"
            )));
        }
        if self.get(&key).is_some() {
            return Err(FieldsError::Duplicate(key));
        }
        self.pairs.push((key, value));
        Ok(())
    }

    /// The decoded value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The data-check-string: every field except those in `exclude`, as `key=value` lines
    /// sorted by their bytes and joined by `\n`, with no trailing line feed.
    ///
    /// Telegram's text says "sorted alphabetically"; its own Login Widget example sorts the
    /// `key=value` strings (PHP `sort($data_check_arr)`, core.telegram.org/widgets/login), and so
    /// does `@telegram-apps/init-data-node` (`pairs.sort()`). Sorting the lines and sorting the
    /// keys agree unless one key is a prefix of another followed by a byte below `=` (a digit,
    /// say), which no Telegram field name is; the lines are sorted, as Telegram does.
    pub(crate) fn data_check_string(&self, exclude: &[&str]) -> String {
        let mut lines: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| !exclude.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.sort_unstable();
        lines.join("\n")
    }
}

/// Decodes `%XX` escapes and `+`; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, FieldsError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_digit);
                let lo = bytes.get(i + 2).copied().and_then(hex_digit);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(FieldsError::Malformed(
                            "a '%' is not followed by two hex digits".into(),
                        ))
                    }
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| {
        FieldsError::Malformed("a percent-encoded field does not decode to UTF-8".into())
    })
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly 64 hex digits (either case) into 32 bytes.
pub(crate) fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(out)
}

/// HMAC-SHA-256 of `message` under `key`. HMAC accepts keys of any length (RFC 2104 hashes
/// long keys), so this is never `None`; callers still treat `None` as a mismatch, so that an
/// impossible failure refuses data instead of accepting it.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Option<[u8; 32]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(message);
    Some(mac.finalize().into_bytes().into())
}

/// Whether `expected` equals the 64-hex-digit `received`, in time independent of where they
/// differ. `None` when `received` is not 64 hex digits.
pub(crate) fn hash_matches(expected: &[u8; 32], received: &str) -> Option<bool> {
    let received = decode_hex_32(received)?;
    Some(bool::from(expected.ct_eq(&received)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(input: &str) -> bool {
        matches!(Fields::parse_query(input), Err(FieldsError::Malformed(_)))
    }

    #[test]
    fn decodes_escapes_plus_and_utf8() {
        let fields = Fields::parse_query("a=x%20y+z&b=%7B%22k%22%3A1%7D&c=&d=Zo%C3%AB&e=a=b")
            .expect("valid");
        assert_eq!(fields.get("a"), Some("x y z"));
        assert_eq!(fields.get("b"), Some("{\"k\":1}"));
        assert_eq!(fields.get("c"), Some(""));
        assert_eq!(fields.get("d"), Some("Zoë"));
        // Only the first '=' splits; the rest belongs to the value.
        assert_eq!(fields.get("e"), Some("a=b"));
        let keys: Vec<&str> = fields.pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn rejects_malformed_encodings() {
        assert!(malformed(""));
        assert!(malformed("a=1&&b=2"));
        assert!(malformed("a=1&"));
        assert!(malformed("&a=1"));
        assert!(malformed("a=1&novalue"));
        assert!(malformed("=1"));
        assert!(malformed("a=%zz"));
        assert!(malformed("a=%4"));
        assert!(malformed("a=%"));
        assert!(malformed("a=%FF%FE"), "not UTF-8");
        assert!(malformed("a=%C3"), "truncated UTF-8");
        assert!(malformed("a%3Db=1"), "'=' in a key");
        assert!(malformed("a=x%0Ay"), "line feed in a value");
        assert!(malformed("a%0A=1"), "line feed in a key");
        assert!(malformed(&format!("{}=1", "k".repeat(MAX_KEY_BYTES + 1))));
        assert!(malformed(&format!("a={}", "v".repeat(MAX_INPUT_BYTES))));
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("k{i}=v")).collect();
        assert!(malformed(&many.join("&")));
    }

    #[test]
    fn rejects_duplicate_keys_even_when_encoded_differently() {
        assert_eq!(
            Fields::parse_query("a=1&b=2&a=1").map(|_| ()),
            Err(FieldsError::Duplicate("a".into()))
        );
        assert_eq!(
            Fields::parse_query("hash=1&%68ash=2").map(|_| ()),
            Err(FieldsError::Duplicate("hash".into()))
        );
        assert_eq!(
            Fields::from_pairs([("id", "1"), ("id", "2")]).map(|_| ()),
            Err(FieldsError::Duplicate("id".into()))
        );
    }

    #[test]
    fn data_check_string_sorts_lines_and_excludes() {
        let fields =
            Fields::parse_query("user=u&hash=h&auth_date=1&signature=s&chat=c&chat_type=t")
                .expect("valid");
        assert_eq!(
            fields.data_check_string(&["hash"]),
            "auth_date=1\nchat=c\nchat_type=t\nsignature=s\nuser=u"
        );
        assert_eq!(
            fields.data_check_string(&["hash", "signature"]),
            "auth_date=1\nchat=c\nchat_type=t\nuser=u"
        );
    }

    #[test]
    fn hex_and_hmac() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?").expect("any key");
        let hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(decode_hex_32(hex), Some(mac));
        assert_eq!(hash_matches(&mac, hex), Some(true));
        assert_eq!(hash_matches(&mac, &hex.to_uppercase()), Some(true));
        assert_eq!(hash_matches(&mac, &hex.replace('5', "6")), Some(false));
        assert_eq!(hash_matches(&mac, &hex[..62]), None);
        assert_eq!(hash_matches(&mac, &format!("{}zz", &hex[..62])), None);
    }
}
