use super::*;
use crate::test_support::{login_hash, query, signed_init_data};

const TOKEN: &str = "987654321:AAF_dashboard-login-token_abcdefghij";
const NOW: u64 = 1_760_000_000;
const AUTH_DATE: &str = "1759999900"; // NOW - 100

fn token() -> BotToken {
    BotToken::parse(TOKEN).expect("test token")
}

fn fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("id", "279058397"),
        ("first_name", "Zoë & Co"),
        ("last_name", "Ков"),
        ("username", "zoe"),
        ("photo_url", "https://t.me/i/userpic/320/x.jpg"),
        ("auth_date", AUTH_DATE),
    ]
}

fn signed(pairs: &[(&str, &str)]) -> String {
    format!("{}&hash={}", query(pairs), login_hash(pairs, TOKEN))
}

fn check(data: &str) -> Result<LoginWidgetAuth, LoginWidgetError> {
    verify(data, &token(), Freshness::DEFAULT, NOW)
}

#[test]
fn valid_login_is_parsed() {
    let auth = check(&signed(&fields())).expect("valid");
    assert_eq!(auth.id().get(), 279_058_397);
    assert_eq!(auth.first_name(), "Zoë & Co");
    assert_eq!(auth.last_name(), Some("Ков"));
    assert_eq!(auth.username(), Some("zoe"));
    assert_eq!(auth.photo_url(), Some("https://t.me/i/userpic/320/x.jpg"));
    assert_eq!(auth.auth_date_unix_s(), 1_759_999_900);
}

#[test]
fn only_id_first_name_and_auth_date_are_required() {
    let pairs = [("id", "5"), ("first_name", "A"), ("auth_date", AUTH_DATE)];
    let auth = check(&signed(&pairs)).expect("valid");
    assert_eq!(auth.last_name(), None);
    assert_eq!(auth.username(), None);
    assert_eq!(auth.photo_url(), None);
}

#[test]
fn decoded_pairs_verify_like_the_query() {
    let pairs = fields();
    let hash = login_hash(&pairs, TOKEN);
    let mut with_hash = pairs.clone();
    with_hash.push(("hash", &hash));
    let auth = verify_fields(with_hash, &token(), Freshness::DEFAULT, NOW).expect("valid");
    assert_eq!(auth, check(&signed(&pairs)).expect("valid"));
}

#[test]
fn tampering_with_any_field_breaks_the_hash() {
    let pairs = fields();
    let hash = login_hash(&pairs, TOKEN);
    for (i, (name, value)) in pairs.iter().enumerate() {
        let mut changed = pairs.clone();
        let altered = format!("{value}1");
        changed[i] = (name, &altered);
        let forged = format!("{}&hash={hash}", query(&changed));
        assert_eq!(
            check(&forged),
            Err(LoginWidgetError::BadHash),
            "changed {name}"
        );

        let mut dropped = pairs.clone();
        dropped.remove(i);
        let forged = format!("{}&hash={hash}", query(&dropped));
        assert_eq!(
            check(&forged),
            Err(LoginWidgetError::BadHash),
            "dropped {name}"
        );
    }
    let forged = format!("{}&next=%2Fadmin&hash={hash}", query(&pairs));
    assert_eq!(
        check(&forged),
        Err(LoginWidgetError::BadHash),
        "added a field"
    );
}

#[test]
fn wrong_bot_token_is_refused() {
    let other = BotToken::parse("987654321:AAF_some-other-token_0000000000").expect("token");
    assert_eq!(
        verify(&signed(&fields()), &other, Freshness::DEFAULT, NOW),
        Err(LoginWidgetError::BadHash)
    );
}

#[test]
fn mini_app_init_data_is_not_a_login() {
    // Same fields, same token, the Mini App's key derivation: must not pass as a login.
    let init_data = signed_init_data(&fields(), TOKEN);
    assert_eq!(check(&init_data), Err(LoginWidgetError::BadHash));
    // And a login is not init data.
    assert_eq!(
        crate::init_data::verify_with_bot_token(
            &signed(&fields()),
            &token(),
            Freshness::DEFAULT,
            NOW
        ),
        Err(crate::init_data::InitDataError::BadHash)
    );
}

#[test]
fn stale_and_future_logins_are_refused() {
    let at = |auth_date: u64| {
        let auth_date = auth_date.to_string();
        check(&signed(&[
            ("id", "5"),
            ("first_name", "A"),
            ("auth_date", &auth_date),
        ]))
        .map(|_| ())
    };
    assert_eq!(at(NOW - 3600), Ok(()));
    assert_eq!(
        at(NOW - 3601),
        Err(LoginWidgetError::Stale {
            age_s: 3601,
            max_age_s: 3600
        })
    );
    assert_eq!(at(NOW + 60), Ok(()));
    assert_eq!(
        at(NOW + 61),
        Err(LoginWidgetError::FromTheFuture {
            ahead_s: 61,
            max_future_skew_s: 60
        })
    );
    let short = Freshness {
        max_age_s: 60,
        max_future_skew_s: 5,
    };
    let data = signed(&fields());
    assert!(matches!(
        verify(&data, &token(), short, NOW),
        Err(LoginWidgetError::Stale {
            age_s: 100,
            max_age_s: 60
        })
    ));
}

#[test]
fn missing_fields_are_named() {
    let without = |name: &str| -> Vec<(&'static str, &'static str)> {
        fields().into_iter().filter(|(k, _)| *k != name).collect()
    };
    assert_eq!(check(&query(&fields())), Err(LoginWidgetError::MissingHash));
    for name in ["id", "first_name", "auth_date"] {
        assert_eq!(
            check(&signed(&without(name))),
            Err(LoginWidgetError::MissingField(name)),
            "{name}"
        );
    }
}

#[test]
fn malformed_input_is_refused() {
    let malformed = |data: &str| matches!(check(data), Err(LoginWidgetError::Malformed(_)));
    let valid = signed(&fields());
    assert!(malformed(""));
    assert!(malformed(&format!("{valid}&")));
    assert!(malformed(&valid.replacen("%C3", "%C", 1)));
    assert!(malformed(&valid.replace("hash=", "hash=0")));
    for (name, bad) in [
        ("id", "abc"),
        ("id", "0"),
        ("id", "-5"),
        ("auth_date", "yesterday"),
    ] {
        let pairs: Vec<(&str, &str)> = fields()
            .into_iter()
            .map(|(k, v)| if k == name { (k, bad) } else { (k, v) })
            .collect();
        assert!(malformed(&signed(&pairs)), "{name}={bad}");
    }
    assert!(matches!(
        verify_fields(
            [("id", "1"), ("hash", "x\ny")],
            &token(),
            Freshness::DEFAULT,
            NOW
        ),
        Err(LoginWidgetError::Malformed(_))
    ));
    assert!(matches!(
        verify_fields([], &token(), Freshness::DEFAULT, NOW),
        Err(LoginWidgetError::Malformed(_))
    ));
}

#[test]
fn duplicate_keys_are_refused() {
    let valid = signed(&fields());
    assert_eq!(
        check(&format!("{valid}&id=1")),
        Err(LoginWidgetError::DuplicateField("id".into()))
    );
    assert_eq!(
        check(&format!("id=1&{valid}")),
        Err(LoginWidgetError::DuplicateField("id".into()))
    );
    assert_eq!(
        verify_fields(
            [("id", "1"), ("first_name", "A"), ("first_name", "B")],
            &token(),
            Freshness::DEFAULT,
            NOW
        ),
        Err(LoginWidgetError::DuplicateField("first_name".into()))
    );
}
