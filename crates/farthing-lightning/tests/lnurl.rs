//! LNURL pieces against the LUDs (github.com/lnurl/luds): LUD-01 encoding with the spec's own
//! example, LUD-06/16 metadata and its hash, the LUD-03/06/12 answers, and LUD-04 signatures
//! made here with a fresh key pair.

use bech32::Hrp;
use farthing_lightning::lnurl::{
    self, AuthError, LnurlError, PayCallbackAnswer, PayRequest, PayRequestTag, WithdrawRequest,
    WithdrawRequestTag,
};
use secp256k1::ecdsa::Signature;
use secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// LUD-01: "An example LNURL".
const LUD01_URL: &str =
    "https://service.com/api?q=3fc3645b439ce8e7f2553a69e5267081d96dcd340693afabe04be7b0ccd178df";
/// LUD-01: "would be bech32-encoded as".
const LUD01_LNURL: &str = "LNURL1DP68GURN8GHJ7UM9WFMXJCM99E3K7MF0V9CXJ0M385EKVCENXC6R2C35XVUKXEFCV5MKVV34X5EKZD3EV56NYD3HXQURZEPEXEJXXEPNXSCRVWFNV9NXZCN9XQ6XYEFHVGCXXCMYXYMNSERXFQ5FNS";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- LUD-01 ------------------------------------------------------------------------------

#[test]
fn encode_gives_the_lud01_example() {
    assert_eq!(lnurl::encode(LUD01_URL), LUD01_LNURL);
}

#[test]
fn decode_reads_the_lud01_example_in_either_case_and_with_a_prefix() {
    for text in [
        LUD01_LNURL.to_owned(),
        LUD01_LNURL.to_lowercase(),
        format!("lightning:{LUD01_LNURL}"),
        format!("LIGHTNING:{LUD01_LNURL}"),
        format!("lightning:{}", LUD01_LNURL.to_lowercase()),
        format!("  {LUD01_LNURL}\n"),
    ] {
        assert_eq!(lnurl::decode(&text).as_deref(), Ok(LUD01_URL), "{text}");
    }
}

#[test]
fn long_urls_round_trip_past_the_bip173_limits() {
    // LUD-01 keeps no 90-character limit; bech32's usual 1023 is passed too.
    for length in [10, 89, 90, 200, 700, 2000] {
        let url = format!("https://example.com/lnurlp/{}", "a".repeat(length));
        let encoded = lnurl::encode(&url);
        assert!(encoded.starts_with("LNURL1"), "{encoded}");
        assert_eq!(encoded, encoded.to_uppercase());
        assert_eq!(lnurl::decode(&encoded), Ok(url));
    }
    let unicode = "https://example.com/pay?memo=ナンセンス 1杯";
    assert_eq!(
        lnurl::decode(&lnurl::encode(unicode)).as_deref(),
        Ok(unicode)
    );
}

#[test]
fn decode_refuses_what_is_not_an_lnurl() {
    let mixed_case = format!("LNURL1{}", &LUD01_LNURL.to_lowercase()[6..]);
    assert!(matches!(
        lnurl::decode(&mixed_case),
        Err(LnurlError::Bech32(_))
    ));

    let mut chars: Vec<char> = LUD01_LNURL.chars().collect();
    let at = chars.len() - 3;
    chars[at] = if chars[at] == 'Q' { 'P' } else { 'Q' };
    let bad_checksum: String = chars.into_iter().collect();
    assert!(matches!(
        lnurl::decode(&bad_checksum),
        Err(LnurlError::Bech32(_))
    ));

    for text in [
        "",
        "lightning:",
        "LNURL",
        "https://service.com/api",
        "LNURL1!!!",
    ] {
        assert!(
            matches!(lnurl::decode(text), Err(LnurlError::Bech32(_))),
            "{text:?}"
        );
    }

    // Valid bech32 with another prefix: a BOLT #11 invoice.
    let invoice = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";
    assert_eq!(
        lnurl::decode(invoice),
        Err(LnurlError::WrongPrefix {
            found: "lnbc2500u".to_owned()
        })
    );
    let other_hrp =
        bech32::encode::<bech32::Bech32>(Hrp::parse("lnurx").expect("hrp"), LUD01_URL.as_bytes())
            .expect("bech32");
    assert_eq!(
        lnurl::decode(&other_hrp),
        Err(LnurlError::WrongPrefix {
            found: "lnurx".to_owned()
        })
    );

    // Valid bech32 with the lnurl prefix, but not text.
    let binary =
        bech32::encode::<bech32::Bech32>(Hrp::parse("lnurl").expect("hrp"), &[0xff, 0xfe, 0x00])
            .expect("bech32");
    assert_eq!(lnurl::decode(&binary), Err(LnurlError::NotUtf8));

    let huge = lnurl::encode(&format!(
        "https://example.com/{}",
        "a".repeat(lnurl::MAX_LNURL_CHARS)
    ));
    assert!(matches!(
        lnurl::decode(&huge),
        Err(LnurlError::TooLong { .. })
    ));
}

// ---- LUD-06 / LUD-16 metadata ------------------------------------------------------------

#[test]
fn pay_metadata_is_the_lud06_array_with_the_lud16_identifier() {
    let text = "lorem ipsum \"blah\" blah\nナンセンス";
    let plain: Value = serde_json::from_str(&lnurl::pay_metadata(text, None)).expect("json");
    assert_eq!(plain, json!([["text/plain", text]]));

    let metadata = lnurl::pay_metadata(text, Some("alice@pay.example.com"));
    let parsed: Value = serde_json::from_str(&metadata).expect("json");
    assert_eq!(
        parsed,
        json!([
            ["text/plain", text],
            ["text/identifier", "alice@pay.example.com"]
        ])
    );
    // The string itself is what gets hashed, so it must be stable and compact.
    assert_eq!(
        lnurl::pay_metadata("lorem ipsum blah blah", None),
        r#"[["text/plain","lorem ipsum blah blah"]]"#
    );
}

#[test]
fn description_hash_is_sha256_of_the_exact_string() {
    // FIPS 180-2 test vector: SHA-256("abc").
    assert_eq!(
        hex(&lnurl::description_hash("abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let metadata = lnurl::pay_metadata("a coffee", Some("bob@example.com"));
    let expected: [u8; 32] = Sha256::digest(metadata.as_bytes()).into();
    assert_eq!(lnurl::description_hash(&metadata), expected);
    // A byte of whitespace changes it: the served string must be hashed as served.
    let spaced = metadata.replace("],[", "], [");
    assert_ne!(lnurl::description_hash(&spaced), expected);
}

// ---- LUD-06 / LUD-12 / LUD-03 answers ----------------------------------------------------

#[test]
fn pay_request_serializes_with_the_lud06_field_names() {
    let metadata = lnurl::pay_metadata("a coffee", None);
    let mut request = PayRequest {
        callback: "https://pay.example.com/lnurlp/cb/1".to_owned(),
        max_sendable: 100_000_000,
        min_sendable: 1_000,
        metadata: metadata.clone(),
        tag: PayRequestTag::PayRequest,
        comment_allowed: None,
    };
    assert_eq!(
        serde_json::to_value(&request).expect("json"),
        json!({
            "callback": "https://pay.example.com/lnurlp/cb/1",
            "maxSendable": 100_000_000u64,
            "minSendable": 1_000,
            "metadata": metadata,
            "tag": "payRequest",
        })
    );
    request.comment_allowed = Some(255);
    let value = serde_json::to_value(&request).expect("json");
    assert_eq!(value["commentAllowed"], json!(255));
    let back: PayRequest = serde_json::from_value(value.clone()).expect("round trip");
    assert_eq!(back, request);

    let mut wrong_tag = value;
    wrong_tag["tag"] = json!("withdrawRequest");
    assert!(serde_json::from_value::<PayRequest>(wrong_tag).is_err());
}

#[test]
fn pay_callback_answer_has_pr_and_empty_routes() {
    let answer = PayCallbackAnswer::new("lnbc1xyz".to_owned());
    assert_eq!(
        serde_json::to_value(&answer).expect("json"),
        json!({ "pr": "lnbc1xyz", "routes": [] })
    );
}

#[test]
fn withdraw_request_serializes_with_the_lud03_field_names() {
    let request = WithdrawRequest {
        tag: WithdrawRequestTag::WithdrawRequest,
        callback: "https://pay.example.com/lnurlw/cb".to_owned(),
        k1: "abc123".to_owned(),
        default_description: "Withdrawal from farthing".to_owned(),
        min_withdrawable: 0,
        max_withdrawable: 5_000,
    };
    let value = serde_json::to_value(&request).expect("json");
    assert_eq!(
        value,
        json!({
            "tag": "withdrawRequest",
            "callback": "https://pay.example.com/lnurlw/cb",
            "k1": "abc123",
            "defaultDescription": "Withdrawal from farthing",
            "minWithdrawable": 0,
            "maxWithdrawable": 5_000,
        })
    );
    let back: WithdrawRequest = serde_json::from_value(value).expect("round trip");
    assert_eq!(back, request);
}

#[test]
fn status_answers_are_the_lud_shapes() {
    assert_eq!(lnurl::status_ok(), json!({ "status": "OK" }));
    assert_eq!(
        lnurl::status_error("amount too small"),
        json!({ "status": "ERROR", "reason": "amount too small" })
    );
}

// ---- LUD-04 ------------------------------------------------------------------------------

struct Wallet {
    secret: SecretKey,
    key_hex: String,
}

fn wallet(seed: u8) -> Wallet {
    let secret = SecretKey::from_slice(&[seed; 32]).expect("secret key");
    let key_hex = hex(&PublicKey::from_secret_key(&Secp256k1::new(), &secret).serialize());
    Wallet { secret, key_hex }
}

/// What a LUD-04 wallet does: sign the 32 bytes of k1 and DER-encode the signature.
fn sign(wallet: &Wallet, k1_hex: &str) -> Signature {
    let k1: [u8; 32] = from_hex(k1_hex).try_into().expect("32 bytes");
    Secp256k1::new().sign_ecdsa(&Message::from_digest(k1), &wallet.secret)
}

fn der_hex(signature: &Signature) -> String {
    hex(&signature.serialize_der())
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn new_k1_is_the_randomness_in_hex() {
    let random: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37));
    let k1 = lnurl::new_k1(random);
    assert_eq!(k1.len(), 64);
    assert_eq!(from_hex(&k1), random);
    assert_eq!(k1, k1.to_lowercase());
}

#[test]
fn a_valid_signature_is_accepted_and_gives_the_linking_key() {
    let wallet = wallet(7);
    let k1 = lnurl::new_k1([0x5a; 32]);
    let sig = der_hex(&sign(&wallet, &k1));
    let key = lnurl::verify_auth(&k1, &sig, &wallet.key_hex).expect("accepted");
    assert_eq!(key.as_str(), wallet.key_hex);
    assert_eq!(key.to_string(), wallet.key_hex);

    // Hex in uppercase is read too; the key comes back normalized to lowercase.
    let key = lnurl::verify_auth(
        &k1.to_uppercase(),
        &sig.to_uppercase(),
        &wallet.key_hex.to_uppercase(),
    )
    .expect("accepted in uppercase");
    assert_eq!(key.as_str(), wallet.key_hex);
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let (alice, mallory) = (wallet(7), wallet(8));
    let k1 = lnurl::new_k1([0x5a; 32]);
    let sig = der_hex(&sign(&mallory, &k1));
    assert_eq!(
        lnurl::verify_auth(&k1, &sig, &alice.key_hex),
        Err(AuthError::SignatureMismatch)
    );
}

#[test]
fn a_signature_of_another_k1_is_refused() {
    let wallet = wallet(7);
    let k1 = lnurl::new_k1([0x5a; 32]);
    let sig = der_hex(&sign(&wallet, &k1));
    let mut tampered = [0x5a; 32];
    tampered[31] ^= 1;
    assert_eq!(
        lnurl::verify_auth(&lnurl::new_k1(tampered), &sig, &wallet.key_hex),
        Err(AuthError::SignatureMismatch)
    );
    // A wallet that hashes k1 before signing does not follow LUD-04: refused.
    let hashed: [u8; 32] = Sha256::digest(from_hex(&k1)).into();
    let sig = der_hex(&Secp256k1::new().sign_ecdsa(&Message::from_digest(hashed), &wallet.secret));
    assert_eq!(
        lnurl::verify_auth(&k1, &sig, &wallet.key_hex),
        Err(AuthError::SignatureMismatch)
    );
}

#[test]
fn a_high_s_signature_is_accepted() {
    // LUD-04 asks for a valid secp256k1 signature and does not require low-S; some wallets'
    // libraries do not normalize. Make (r, n - s) from a low-S signature.
    let wallet = wallet(9);
    let k1 = lnurl::new_k1([0x33; 32]);
    let low = sign(&wallet, &k1);
    let compact = low.serialize_compact();
    let s = SecretKey::from_slice(&compact[32..]).expect("s is a valid scalar");
    let mut high_compact = compact;
    high_compact[32..].copy_from_slice(&s.negate().secret_bytes());
    let high = Signature::from_compact(&high_compact).expect("high-S signature");
    assert_ne!(high, low);
    let mut normalized = high;
    normalized.normalize_s();
    assert_eq!(normalized, low, "the made signature is the high-S twin");
    // libsecp256k1 alone refuses it, so this test exercises the normalization.
    let message = Message::from_digest(from_hex(&k1).try_into().expect("32 bytes"));
    let key = PublicKey::from_slice(&from_hex(&wallet.key_hex)).expect("key");
    assert!(Secp256k1::verification_only()
        .verify_ecdsa(&message, &high, &key)
        .is_err());

    let key = lnurl::verify_auth(&k1, &der_hex(&high), &wallet.key_hex).expect("accepted");
    assert_eq!(key.as_str(), wallet.key_hex);
    // Normalizing does not make a wrong key pass.
    assert_eq!(
        lnurl::verify_auth(&k1, &der_hex(&high), &wallet_key(10)),
        Err(AuthError::SignatureMismatch)
    );
}

fn wallet_key(seed: u8) -> String {
    wallet(seed).key_hex
}

#[test]
fn malformed_inputs_are_refused() {
    let wallet = wallet(7);
    let k1 = lnurl::new_k1([0x5a; 32]);
    let signature = sign(&wallet, &k1);
    let sig = der_hex(&signature);
    let key = wallet.key_hex.clone();

    let bad_k1 = [
        String::new(),
        k1[..62].to_owned(),
        format!("{k1}00"),
        format!("{}zz", &k1[..62]),
        format!("{k1}0"),
    ];
    for k1 in &bad_k1 {
        assert!(
            matches!(
                lnurl::verify_auth(k1, &sig, &key),
                Err(AuthError::MalformedK1(_))
            ),
            "k1 {k1:?}"
        );
    }

    let compact_hex = hex(&signature.serialize_compact());
    let bad_sigs = [
        String::new(),
        "zz".to_owned(),
        format!("{sig}0"),
        // 64 raw bytes (r || s): not DER.
        compact_hex,
        // DER with trailing bytes.
        format!("{sig}00"),
        // Far too long.
        "30".repeat(10_000),
        // Cut short.
        sig[..sig.len() - 2].to_owned(),
    ];
    for bad in &bad_sigs {
        assert!(
            matches!(
                lnurl::verify_auth(&k1, bad, &key),
                Err(AuthError::MalformedSignature(_))
            ),
            "sig {bad:?}"
        );
    }

    let uncompressed = hex(
        &PublicKey::from_secret_key(&Secp256k1::new(), &wallet.secret).serialize_uncompressed(),
    );
    let bad_keys = [
        String::new(),
        key[2..].to_owned(),
        uncompressed,
        format!("04{}", &key[2..]),
        format!("02{}", "ff".repeat(32)),
        format!("{}zz", &key[..64]),
    ];
    for bad in &bad_keys {
        assert!(
            matches!(
                lnurl::verify_auth(&k1, &sig, bad),
                Err(AuthError::MalformedKey(_))
            ),
            "key {bad:?}"
        );
    }
}

#[test]
fn auth_url_adds_the_lud04_query() {
    let k1 = lnurl::new_k1([0x01; 32]);
    let url = lnurl::auth_url("https://site.com/lnurl-auth", &k1, Some("login"));
    assert_eq!(
        url,
        format!("https://site.com/lnurl-auth?tag=login&k1={k1}&action=login")
    );
    let url = lnurl::auth_url("https://site.com/auth?session=9", &k1, None);
    assert_eq!(
        url,
        format!("https://site.com/auth?session=9&tag=login&k1={k1}")
    );

    // Whatever the action, the query stays well formed.
    let url = lnurl::auth_url("https://site.com/a", &k1, Some("log in&x=1"));
    let query = url.split_once('?').expect("query").1;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("tag".to_owned(), "login".to_owned()),
            ("k1".to_owned(), k1.clone()),
            ("action".to_owned(), "log in&x=1".to_owned()),
        ]
    );
    // An auth URL is served as an LNURL.
    assert_eq!(lnurl::decode(&lnurl::encode(&url)), Ok(url));
}
