//! What a payer's wallet is handed: a short reference to write as the comment, a
//! `ton://transfer` link (QR code, Telegram button) and a TON Connect `sendTransaction` request.

use crate::{body, Address, Network};

/// Crockford base32: no I, L, O or U, so a reference read aloud or typed is unambiguous.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters in a payment reference (50 bits).
pub const REFERENCE_LEN: usize = 10;

/// A payment reference from 50 random bits: 10 Crockford base32 characters, e.g. `K7M2Q9XH4D`.
pub fn reference(random: u64) -> String {
    (0..REFERENCE_LEN)
        .map(|index| {
            let shift = 5 * (REFERENCE_LEN - 1 - index);
            char::from(CROCKFORD[((random >> shift) & 0x1f) as usize])
        })
        .collect()
}

/// The reference a payer's comment names, read the forgiving way: surrounding text and
/// spaces, hyphens and case do not matter, and the letters Crockford base32 leaves out are read
/// as the digits they look like (O → 0, I and L → 1). `None` when no 10-character reference
/// remains. A comment that is a whole sentence ("order K7M2Q9XH4D thanks") still matches by
/// its one word that is a reference.
pub fn read_reference(comment: &str) -> Option<String> {
    let normalise = |word: &str| -> Option<String> {
        let mut out = String::with_capacity(REFERENCE_LEN);
        for ch in word.chars() {
            let ch = match ch.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            };
            if !ch.is_ascii() || !CROCKFORD.contains(&(ch as u8)) {
                return None;
            }
            out.push(ch);
        }
        (out.len() == REFERENCE_LEN).then_some(out)
    };
    let trimmed = comment.trim();
    normalise(trimmed).or_else(|| {
        trimmed
            .split(|ch: char| ch.is_whitespace() || matches!(ch, ',' | '.' | ':' | ';' | '#'))
            .find_map(normalise)
    })
}

fn query(pairs: &[(&str, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    // ton:// links are read by wallets that expect %20, not +, for spaces.
    serializer.finish().replace('+', "%20")
}

/// A `ton://transfer` link: TON to `to` (`jetton` = `None`), or `amount` units of the jetton of
/// master `jetton` to the owner `to`; `text` is the comment; `exp` the unix second after which
/// the wallet should not send.
pub fn transfer_link(
    to: &Address,
    network: Network,
    amount: u128,
    text: &str,
    jetton: Option<&Address>,
    exp: Option<u64>,
) -> String {
    let mut pairs = Vec::new();
    if let Some(master) = jetton {
        pairs.push(("jetton", master.friendly(true, network)));
    }
    pairs.push(("amount", amount.to_string()));
    pairs.push(("text", text.to_owned()));
    if let Some(exp) = exp {
        pairs.push(("exp", exp.to_string()));
    }
    format!(
        "ton://transfer/{}?{}",
        to.friendly(false, network),
        query(&pairs)
    )
}

/// A TON Connect `sendTransaction` request paying `amount` nanoton to `to` with the comment
/// `text`, valid until `valid_until` (unix seconds).
pub fn ton_connect_request(
    to: &Address,
    network: Network,
    amount: u128,
    text: &str,
    valid_until: u64,
) -> Result<serde_json::Value, body::BodyError> {
    let (payload, _) = body::comment_payload(text)?;
    Ok(serde_json::json!({
        "valid_until": valid_until,
        "network": network.ton_connect_id(),
        "messages": [{
            // TON Connect wants the user-friendly form; non-bounceable for a wallet.
            "address": to.friendly(false, network),
            "amount": amount.to_string(),
            "payload": payload,
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_back_however_the_payer_typed_them() {
        let issued = reference(0x3_ffff_ffff_ffff);
        assert_eq!(issued, "ZZZZZZZZZZ");
        let issued = reference(0x0123_4567_89ab);
        assert_eq!(issued.len(), REFERENCE_LEN);
        assert_eq!(read_reference(&issued).as_deref(), Some(issued.as_str()));
        let lower = issued.to_lowercase();
        assert_eq!(
            read_reference(&format!("  {lower} ")).as_deref(),
            Some(issued.as_str())
        );
        let spaced = format!("{}-{}", &issued[..5], &issued[5..]);
        assert_eq!(read_reference(&spaced).as_deref(), Some(issued.as_str()));
        assert_eq!(
            read_reference(&format!("order {issued}, thanks!")).as_deref(),
            Some(issued.as_str())
        );
        assert_eq!(read_reference("K7M2Q9XH4O").as_deref(), Some("K7M2Q9XH40"));
        assert_eq!(read_reference("K7M2Q9XH4"), None);
        assert_eq!(read_reference("K7M2Q9XH4DD"), None);
        assert_eq!(read_reference("K7M2Q9XH4Ü"), None);
        assert_eq!(read_reference(""), None);
    }

    #[test]
    fn links_and_ton_connect_requests_carry_the_comment() {
        let to =
            Address::parse("0:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe")
                .expect("address")
                .address;
        let link = transfer_link(
            &to,
            Network::Mainnet,
            1_500_000_000,
            "K7M2 Q9",
            None,
            Some(99),
        );
        assert_eq!(
            link,
            "ton://transfer/UQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_p0p?amount=1500000000&text=K7M2%20Q9&exp=99"
        );
        let jetton = transfer_link(&to, Network::Mainnet, 5, "x", Some(&to), None);
        assert!(jetton.contains("jetton=EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs&amount=5"));
        let request =
            ton_connect_request(&to, Network::Testnet, 7, "K7M2Q9XH4D", 1_000).expect("request");
        assert_eq!(request["network"], "-3");
        assert_eq!(request["valid_until"], 1_000);
        assert_eq!(request["messages"][0]["amount"], "7");
        let payload = request["messages"][0]["payload"].as_str().expect("payload");
        let cell = body::parse_boc(payload).expect("boc");
        assert_eq!(body::read_comment(&cell).as_deref(), Some("K7M2Q9XH4D"));
        assert!(request["messages"][0]["address"]
            .as_str()
            .expect("address")
            .starts_with("0Q"));
    }
}
