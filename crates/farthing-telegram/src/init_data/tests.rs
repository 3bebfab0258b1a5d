use super::*;
use crate::test_support::{
    encode, init_data_hash, query, signed_init_data, signing_key, third_party_signature,
};

const TOKEN: &str = "123456789:AAE_farthing-test-token_0123456789ab";
const BOT_ID: u64 = 123_456_789;
const NOW: u64 = 1_760_000_000;
const AUTH_DATE: &str = "1759999990"; // NOW - 10

const USER: &str = r#"{"id":279058397,"first_name":"Zoë + & = ? \/","last_name":"Ков","username":"zoe","language_code":"fa","is_premium":true,"allows_write_to_pm":true,"photo_url":"https:\/\/t.me\/i\/userpic\/320\/x.svg"}"#;
const RECEIVER: &str = r#"{"id":42,"is_bot":true,"first_name":"Shop bot","username":"shop_bot"}"#;
const CHAT: &str = r#"{"id":-1001234567890,"type":"supergroup","title":"Café ☕","username":"cafe","photo_url":"https:\/\/t.me\/c.svg"}"#;

fn token() -> BotToken {
    BotToken::parse(TOKEN).expect("test token")
}

fn full_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"),
        ("user", USER),
        ("receiver", RECEIVER),
        ("chat", CHAT),
        ("chat_type", "sender"),
        ("chat_instance", "8134722200314281151"),
        ("start_param", "inv_abc123"),
        ("can_send_after", "10"),
        ("auth_date", AUTH_DATE),
        ("signature", "c2lnbmVkLWJ5LXRlbGVncmFt"),
        ("future_field", "kept for the check, ignored in the result"),
    ]
}

fn check(init_data: &str) -> Result<InitData, InitDataError> {
    verify_with_bot_token(init_data, &token(), Freshness::DEFAULT, NOW)
}

fn third_party(init_data: &str, key: &TelegramPublicKey) -> Result<InitData, InitDataError> {
    let bot_id = BotId::new(BOT_ID).expect("bot id");
    verify_third_party(init_data, bot_id, key, Freshness::DEFAULT, NOW)
}

fn test_key(seed: u8) -> TelegramPublicKey {
    TelegramPublicKey::from_bytes(signing_key(seed).verifying_key().to_bytes()).expect("valid")
}

/// `pairs` with a third-party signature by the key of `seed` (and a hash, as Telegram sends).
fn third_party_signed(pairs: &[(&str, &str)], seed: u8) -> String {
    let signature = third_party_signature(pairs, BOT_ID, &signing_key(seed));
    let mut all = pairs.to_vec();
    all.push(("signature", &signature));
    signed_init_data(&all, TOKEN)
}

#[test]
fn valid_init_data_is_parsed_into_typed_values() {
    let data = check(&signed_init_data(&full_fields(), TOKEN)).expect("valid");
    assert_eq!(data.auth_date_unix_s(), 1_759_999_990);
    assert_eq!(data.query_id(), Some("AAHdF6IQAAAAAN0XohDhrOrc"));
    let user = data.require_user().expect("user");
    assert_eq!(user.id.get(), 279_058_397);
    assert_eq!(user.first_name, "Zoë + & = ? /");
    assert_eq!(user.last_name.as_deref(), Some("Ков"));
    assert_eq!(user.username.as_deref(), Some("zoe"));
    assert_eq!(user.language_code.as_deref(), Some("fa"));
    assert!(user.is_premium && user.allows_write_to_pm);
    assert!(!user.is_bot && !user.added_to_attachment_menu);
    assert_eq!(
        user.photo_url.as_deref(),
        Some("https://t.me/i/userpic/320/x.svg")
    );
    let receiver = data.receiver().expect("receiver");
    assert_eq!(receiver.id.get(), 42);
    assert!(receiver.is_bot);
    assert_eq!(receiver.last_name, None);
    let chat = data.chat().expect("chat");
    assert_eq!(chat.id.get(), -1_001_234_567_890);
    assert_eq!(chat.chat_type, ChatType::Supergroup);
    assert_eq!(chat.title, "Café ☕");
    assert_eq!(chat.username.as_deref(), Some("cafe"));
    assert_eq!(data.chat_type(), Some(&ChatType::Sender));
    assert_eq!(data.chat_instance(), Some("8134722200314281151"));
    assert_eq!(data.start_param(), Some("inv_abc123"));
    assert_eq!(data.can_send_after_s(), Some(10));
}

#[test]
fn minimal_init_data_has_only_auth_date() {
    let data = check(&signed_init_data(&[("auth_date", AUTH_DATE)], TOKEN)).expect("valid");
    assert_eq!(data.user(), None);
    assert_eq!(
        data.require_user(),
        Err(InitDataError::MissingField("user"))
    );
    assert_eq!(data.chat_type(), None);
}

#[test]
fn field_order_and_plus_for_space_do_not_matter() {
    let mut reversed = full_fields();
    reversed.reverse();
    let init_data = signed_init_data(&reversed, TOKEN);
    assert!(check(&init_data).is_ok());
    // URLSearchParams writes a space as '+'; Telegram writes %20. Both decode the same.
    let plus = init_data.replace("%20", "+");
    assert_ne!(plus, init_data);
    assert!(check(&plus).is_ok());
}

/// A published sample, issued by Telegram before `signature` existed: the tma.js
/// documentation's validation example (docs.telegram-mini-apps.com, init data "Validating").
#[test]
fn accepts_the_published_tma_js_sample() {
    let init_data = "query_id=AAHdF6IQAAAAAN0XohDhrOrc\
        &user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%22%2C%22last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C%22is_premium%22%3Atrue%7D\
        &auth_date=1662771648\
        &hash=c501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b2";
    let token = BotToken::parse("5768337691:AAH5YkoiEuPk8-FZa32hStHTqXiLPtAEhx8").expect("token");
    let data = verify_with_bot_token(init_data, &token, Freshness::DEFAULT, 1_662_771_648 + 5)
        .expect("published sample");
    assert_eq!(data.require_user().expect("user").first_name, "Vladislav");
}

/// A real init data string issued by Telegram with a `signature`, published as the example of
/// Telegram-Mini-Apps/init-data-golang (README, "Validation") with its bot token. It proves
/// three things at once against Telegram itself: the hash covers `signature`, the third-party
/// data-check-string is built as read, and the production key is the one Telegram signs with.
const TELEGRAM_SIGNED: &str = "user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%20%2B%20-%20%3F%20%5C%2F%22%2C%22last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C%22is_premium%22%3Atrue%2C%22allows_write_to_pm%22%3Atrue%2C%22photo_url%22%3A%22https%3A%5C%2F%5C%2Ft.me%5C%2Fi%5C%2Fuserpic%5C%2F320%5C%2F4FPEE4tmP3ATHa57u6MqTDih13LTOiMoKoLDRG4PnSA.svg%22%7D&chat_instance=8134722200314281151&chat_type=private&auth_date=1733509682&signature=TYJxVcisqbWjtodPepiJ6ghziUL94-KNpG8Pau-X7oNNLNBM72APCpi_RKiUlBvcqo5L-LAxIc3dnTzcZX_PDg&hash=a433d8f9847bd6addcc563bff7cc82c89e97ea0d90c11fe5729cae6796a36d73";
const TELEGRAM_SIGNED_TOKEN: &str = "7342037359:AAHI25ES9xCOMPokpYoz-p8XVrZUdygo2J4";
const TELEGRAM_SIGNED_NOW: u64 = 1_733_509_682 + 60;

#[test]
fn telegram_signed_sample_passes_the_hmac_check_with_signature_hashed() {
    let token = BotToken::parse(TELEGRAM_SIGNED_TOKEN).expect("token");
    let data = verify_with_bot_token(
        TELEGRAM_SIGNED,
        &token,
        Freshness::DEFAULT,
        TELEGRAM_SIGNED_NOW,
    )
    .expect("Telegram's own data");
    let user = data.require_user().expect("user");
    assert_eq!(user.id.get(), 279_058_397);
    assert_eq!(user.first_name, "Vladislav + - ? /");
    assert_eq!(data.chat_type(), Some(&ChatType::Private));
    // Leaving `signature` out of the hashed fields would not match Telegram's hash.
    let without = TELEGRAM_SIGNED.replace(
        "&signature=TYJxVcisqbWjtodPepiJ6ghziUL94-KNpG8Pau-X7oNNLNBM72APCpi_RKiUlBvcqo5L-LAxIc3dnTzcZX_PDg",
        "",
    );
    assert_ne!(without, TELEGRAM_SIGNED);
    assert_eq!(
        verify_with_bot_token(&without, &token, Freshness::DEFAULT, TELEGRAM_SIGNED_NOW),
        Err(InitDataError::BadHash)
    );
}

#[test]
fn telegram_signed_sample_passes_the_third_party_check_with_the_production_key() {
    let bot_id = BotId::new(7_342_037_359).expect("bot id");
    let check_with = |key: TelegramEnvironment, bot_id: BotId, init_data: &str| {
        verify_third_party(
            init_data,
            bot_id,
            &TelegramPublicKey::for_environment(key),
            Freshness::DEFAULT,
            TELEGRAM_SIGNED_NOW,
        )
    };
    let data = check_with(TelegramEnvironment::Production, bot_id, TELEGRAM_SIGNED)
        .expect("signed by Telegram's production key");
    assert_eq!(data.require_user().expect("user").id.get(), 279_058_397);
    assert_eq!(
        check_with(TelegramEnvironment::Test, bot_id, TELEGRAM_SIGNED),
        Err(InitDataError::BadSignature)
    );
    let other_bot = BotId::new(7_342_037_358).expect("bot id");
    assert_eq!(
        check_with(TelegramEnvironment::Production, other_bot, TELEGRAM_SIGNED),
        Err(InitDataError::BadSignature)
    );
    let tampered = TELEGRAM_SIGNED.replace("chat_type=private", "chat_type=sender");
    assert_eq!(
        check_with(TelegramEnvironment::Production, bot_id, &tampered),
        Err(InitDataError::BadSignature)
    );
}

#[test]
fn tampering_with_any_field_breaks_the_hash() {
    let fields = full_fields();
    for (i, (name, value)) in fields.iter().enumerate() {
        let mut changed = fields.clone();
        let altered = format!("{value}x");
        changed[i] = (name, &altered);
        // The hash of the original fields, glued to the changed ones.
        let forged = format!(
            "{}&hash={}",
            query(&changed),
            init_data_hash(&fields, TOKEN)
        );
        assert_eq!(
            check(&forged),
            Err(InitDataError::BadHash),
            "changed {name}"
        );

        let mut dropped = fields.clone();
        dropped.remove(i);
        let forged = format!(
            "{}&hash={}",
            query(&dropped),
            init_data_hash(&fields, TOKEN)
        );
        assert_eq!(
            check(&forged),
            Err(InitDataError::BadHash),
            "dropped {name}"
        );
    }
    let mut added = fields.clone();
    added.push(("is_admin", "true"));
    let forged = format!("{}&hash={}", query(&added), init_data_hash(&fields, TOKEN));
    assert_eq!(check(&forged), Err(InitDataError::BadHash), "added a field");

    let valid = signed_init_data(&fields, TOKEN);
    let hash = init_data_hash(&fields, TOKEN);
    let mut flipped = hash.clone().into_bytes();
    flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).expect("hex");
    assert_eq!(
        check(&valid.replace(&hash, &flipped)),
        Err(InitDataError::BadHash)
    );
}

#[test]
fn wrong_bot_token_is_refused() {
    let init_data = signed_init_data(&full_fields(), TOKEN);
    let other = BotToken::parse("123456789:AAE_another-token_000000000000000").expect("token");
    assert_eq!(
        verify_with_bot_token(&init_data, &other, Freshness::DEFAULT, NOW),
        Err(InitDataError::BadHash)
    );
}

#[test]
fn stale_and_future_auth_dates_are_refused() {
    let at = |auth_date: u64, now: u64, freshness: Freshness| {
        let auth_date = auth_date.to_string();
        let init_data = signed_init_data(&[("auth_date", &auth_date), ("user", USER)], TOKEN);
        verify_with_bot_token(&init_data, &token(), freshness, now).map(|_| ())
    };
    let default = Freshness::DEFAULT;
    assert_eq!(at(NOW - 3600, NOW, default), Ok(()));
    assert_eq!(
        at(NOW - 3601, NOW, default),
        Err(InitDataError::Stale {
            age_s: 3601,
            max_age_s: 3600
        })
    );
    assert_eq!(at(NOW + 60, NOW, default), Ok(()));
    assert_eq!(
        at(NOW + 61, NOW, default),
        Err(InitDataError::FromTheFuture {
            ahead_s: 61,
            max_future_skew_s: 60
        })
    );
    let strict = Freshness {
        max_age_s: 30,
        max_future_skew_s: 0,
    };
    assert_eq!(at(NOW - 30, NOW, strict), Ok(()));
    assert!(matches!(
        at(NOW - 31, NOW, strict),
        Err(InitDataError::Stale { .. })
    ));
    assert!(matches!(
        at(NOW + 1, NOW, strict),
        Err(InitDataError::FromTheFuture { .. })
    ));
}

#[test]
fn the_signature_is_checked_before_freshness() {
    // A forged, stale payload is reported as forged: the freshness numbers of unverified data
    // mean nothing.
    let forged = format!("auth_date=1&hash={}", "0".repeat(64));
    assert_eq!(check(&forged), Err(InitDataError::BadHash));
}

#[test]
fn missing_fields_are_named() {
    assert_eq!(
        check(&query(&[("auth_date", AUTH_DATE), ("user", USER)])),
        Err(InitDataError::MissingHash)
    );
    assert_eq!(
        check(&signed_init_data(&[("user", USER)], TOKEN)),
        Err(InitDataError::MissingField("auth_date"))
    );
    let no_signature = signed_init_data(&[("auth_date", AUTH_DATE)], TOKEN);
    assert_eq!(
        third_party(&no_signature, &test_key(1)),
        Err(InitDataError::MissingField("signature"))
    );
}

#[test]
fn malformed_signed_fields_are_refused() {
    let malformed = |pairs: &[(&str, &str)]| {
        matches!(
            check(&signed_init_data(pairs, TOKEN)),
            Err(InitDataError::Malformed(_))
        )
    };
    assert!(malformed(&[("auth_date", "-5")]));
    assert!(malformed(&[("auth_date", "17e8")]));
    assert!(malformed(&[("auth_date", "")]));
    assert!(malformed(&[("auth_date", "99999999999999999999")]));
    assert!(malformed(&[
        ("auth_date", AUTH_DATE),
        ("user", "{not json")
    ]));
    assert!(malformed(&[
        ("auth_date", AUTH_DATE),
        ("user", r#"{"id":1}"#)
    ]));
    assert!(malformed(&[
        ("auth_date", AUTH_DATE),
        ("user", r#"{"id":0,"first_name":"A"}"#)
    ]));
    assert!(malformed(&[
        ("auth_date", AUTH_DATE),
        ("user", r#"{"id":-1,"first_name":"A"}"#)
    ]));
    assert!(malformed(&[
        ("auth_date", AUTH_DATE),
        ("user", r#"{"id":"1","first_name":"A"}"#)
    ]));
    assert!(malformed(&[
        ("auth_date", AUTH_DATE),
        ("user", r#"{"id":1,"id":2,"first_name":"A"}"#)
    ]));
    assert!(malformed(&[("auth_date", AUTH_DATE), ("receiver", "[]")]));
    assert!(malformed(&[
        ("auth_date", AUTH_DATE),
        ("chat", r#"{"id":1}"#)
    ]));
    assert!(malformed(&[
        ("auth_date", AUTH_DATE),
        ("can_send_after", "soon")
    ]));
    // Unknown JSON members are ignored, as Telegram adds fields over time.
    assert!(!malformed(&[
        ("auth_date", AUTH_DATE),
        ("user", r#"{"id":1,"first_name":"A","new_flag":true}"#)
    ]));
}

#[test]
fn malformed_encodings_are_refused() {
    let valid = signed_init_data(&[("auth_date", AUTH_DATE), ("user", USER)], TOKEN);
    for bad in [
        String::new(),
        format!("{valid}&"),
        format!("&{valid}"),
        valid.replacen("%7B", "%7", 1),
        valid.replacen("%7B", "%GG", 1),
        format!("{valid}&x=%FF"),
        format!("{valid}&noequals"),
        valid.replace("hash=", "hash=zz"),
        format!("auth_date={AUTH_DATE}&hash=abc"),
        "a".repeat(crate::fields::MAX_INPUT_BYTES + 1),
    ] {
        assert!(
            matches!(check(&bad), Err(InitDataError::Malformed(_))),
            "{bad:?} gave {:?}",
            check(&bad)
        );
    }
}

#[test]
fn duplicate_keys_are_refused() {
    let valid = signed_init_data(&[("auth_date", AUTH_DATE), ("user", USER)], TOKEN);
    let hash = init_data_hash(&[("auth_date", AUTH_DATE), ("user", USER)], TOKEN);
    let evil_user = encode(r#"{"id":1,"first_name":"Mallory"}"#);
    for (dupe, field) in [
        (format!("{valid}&user={evil_user}"), "user"),
        (format!("user={evil_user}&{valid}"), "user"),
        (format!("{valid}&hash={hash}"), "hash"),
        (format!("{valid}&auth_date={AUTH_DATE}"), "auth_date"),
        (format!("{valid}&%61uth_date=1"), "auth_date"),
    ] {
        assert_eq!(
            check(&dupe),
            Err(InitDataError::DuplicateField(field.into())),
            "{dupe}"
        );
    }
}

#[test]
fn unknown_fields_count_for_the_check() {
    let fields = [("auth_date", AUTH_DATE), ("new_thing", "a")];
    let init_data = signed_init_data(&fields, TOKEN);
    assert!(check(&init_data).is_ok());
    assert_eq!(
        check(&init_data.replace("new_thing=a", "new_thing=b")),
        Err(InitDataError::BadHash)
    );
}

#[test]
fn third_party_signature_from_an_injected_key_verifies() {
    let pairs = [
        ("auth_date", AUTH_DATE),
        ("user", USER),
        ("chat_type", "sender"),
        ("chat_instance", "-42"),
    ];
    let init_data = third_party_signed(&pairs, 7);
    let data = third_party(&init_data, &test_key(7)).expect("signed by the injected key");
    assert_eq!(data.require_user().expect("user").id.get(), 279_058_397);
    // The bot token is not needed, and `hash` is not part of the signed string.
    let other_hash = init_data
        .rsplit_once("&hash=")
        .map(|(head, _)| format!("{head}&hash={}", "0".repeat(64)))
        .expect("hash");
    assert!(third_party(&other_hash, &test_key(7)).is_ok());
    let without_hash = init_data
        .rsplit_once("&hash=")
        .map(|(head, _)| head)
        .expect("hash");
    assert!(third_party(without_hash, &test_key(7)).is_ok());
}

#[test]
fn third_party_rejects_tampering_other_bots_and_other_keys() {
    let pairs = [
        ("auth_date", AUTH_DATE),
        ("user", USER),
        ("start_param", "inv_1"),
    ];
    let init_data = third_party_signed(&pairs, 7);
    assert_eq!(
        third_party(&init_data, &test_key(8)),
        Err(InitDataError::BadSignature)
    );
    assert_eq!(
        third_party(&init_data.replace("inv_1", "inv_2"), &test_key(7)),
        Err(InitDataError::BadSignature)
    );
    let other_bot = BotId::new(BOT_ID + 1).expect("bot id");
    assert_eq!(
        verify_third_party(&init_data, other_bot, &test_key(7), Freshness::DEFAULT, NOW),
        Err(InitDataError::BadSignature)
    );
    // Stale data with a good signature is still stale.
    let old = third_party_signed(&[("auth_date", "1000")], 7);
    assert!(matches!(
        third_party(&old, &test_key(7)),
        Err(InitDataError::Stale { .. })
    ));
}

#[test]
fn third_party_refuses_malformed_signatures() {
    let pairs = [("auth_date", AUTH_DATE)];
    let signature = third_party_signature(&pairs, BOT_ID, &signing_key(7));
    for bad in [
        format!("{signature}=="),                    // padding
        format!("+{}", &signature[1..]),             // standard alphabet
        signature[..signature.len() - 2].to_owned(), // too short
        format!("{signature}AAAA"),                  // too long
        String::new(),
    ] {
        let init_data = query(&[("auth_date", AUTH_DATE), ("signature", &bad)]);
        let result = third_party(&init_data, &test_key(7));
        assert!(
            matches!(result, Err(InitDataError::Malformed(_))),
            "{bad:?} gave {result:?}"
        );
    }
}

#[test]
fn published_keys_reject_a_forged_signature() {
    // Nobody but Telegram can sign for its keys; a signature by any other key must fail.
    let init_data = third_party_signed(&[("auth_date", AUTH_DATE), ("user", USER)], 7);
    for environment in [TelegramEnvironment::Production, TelegramEnvironment::Test] {
        assert_eq!(
            third_party(&init_data, &TelegramPublicKey::for_environment(environment)),
            Err(InitDataError::BadSignature),
            "{environment:?}"
        );
    }
}

#[test]
fn published_keys_are_the_documented_points() {
    let hex = |key: TelegramPublicKey| -> String {
        key.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    };
    assert_eq!(
        hex(TelegramPublicKey::PRODUCTION),
        "e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d"
    );
    assert_eq!(
        hex(TelegramPublicKey::TEST_ENVIRONMENT),
        "40055058a4ee38156a06562e52eece92a771bcd8346a8c4615cb7376eddf72ec"
    );
    for key in [
        TelegramPublicKey::PRODUCTION,
        TelegramPublicKey::TEST_ENVIRONMENT,
    ] {
        assert_eq!(TelegramPublicKey::from_bytes(key.to_bytes()), Ok(key));
    }
    // y = 2 is not on the curve: its x^2 is not a square mod p.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert_eq!(
        TelegramPublicKey::from_bytes(not_a_point),
        Err(InvalidPublicKey)
    );
}

#[test]
fn unknown_chat_types_are_kept() {
    let init_data = signed_init_data(&[("auth_date", AUTH_DATE), ("chat_type", "forum")], TOKEN);
    let data = check(&init_data).expect("valid");
    assert_eq!(data.chat_type(), Some(&ChatType::Other("forum".into())));
    assert_eq!(data.chat_type().map(ChatType::as_str), Some("forum"));
}

#[test]
fn messages_say_what_to_do_and_never_show_the_token() {
    let errors = [
        InitDataError::MissingHash,
        InitDataError::BadHash,
        InitDataError::BadSignature,
        InitDataError::Stale {
            age_s: 7200,
            max_age_s: 3600,
        },
        InitDataError::FromTheFuture {
            ahead_s: 90,
            max_future_skew_s: 60,
        },
        InitDataError::MissingField("auth_date"),
        InitDataError::DuplicateField("user".into()),
        InitDataError::Malformed("a '%' is not followed by two hex digits".into()),
    ];
    for error in errors {
        let message = error.to_string();
        assert!(message.contains(": "), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
    }
    assert_eq!(
        InitDataError::Stale {
            age_s: 7200,
            max_age_s: 3600
        }
        .to_string(),
        "the init data is 7200 s old, more than the 3600 s accepted: reopen the Mini App to get \
         fresh init data"
    );
}
