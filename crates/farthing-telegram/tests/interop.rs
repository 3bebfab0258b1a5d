//! Interoperability: init data signed by `@telegram-apps/init-data-node` (pinned in
//! tests/node/package.json, installed by ./scripts/test) must pass farthing's verifier.
//!
//! The npm package is an implementation written apart from farthing's, and the one most Mini
//! App backends in JavaScript use; agreeing with it on URL encoding (`+` for spaces), field
//! sorting, JSON inside fields and the hashed `signature` field is what this test checks. It
//! never skips: without the package it fails and says how to install it.

use std::path::Path;
use std::process::Command;

use farthing_telegram::init_data::{verify_with_bot_token, InitDataError};
use farthing_telegram::{BotToken, Freshness};

const TOKEN: &str = "7000000001:AAG_interop-test-token_0123456789abc";
const AUTH_DATE_UNIX_S: u64 = 1_760_000_000;

#[test]
fn init_data_signed_by_telegram_apps_init_data_node_is_accepted() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package = crate_dir.join("tests/node/node_modules/@telegram-apps/init-data-node");
    assert!(
        package.join("package.json").is_file(),
        "{} is missing: run ./scripts/test (it runs `npm ci` in \
         crates/farthing-telegram/tests/node), or run `npm ci --no-audit --no-fund` there",
        package.display()
    );

    let output = Command::new("node")
        .current_dir(crate_dir)
        .args(["tests/node/sign.mjs", TOKEN, &AUTH_DATE_UNIX_S.to_string()])
        .output()
        .unwrap_or_else(|error| panic!("could not run `node` (is Node.js installed?): {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "node tests/node/sign.mjs failed ({}):\n{}\n{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );

    let token = BotToken::parse(TOKEN).expect("test token");
    let other = BotToken::parse("7000000001:AAG_another-token_000000000000000").expect("token");
    let now_unix_s = AUTH_DATE_UNIX_S + 5;
    let mut checked = 0;
    for line in stdout.lines() {
        let case: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        let name = case["case"].as_str().expect("case");
        let init_data = case["init_data"].as_str().expect("init_data");

        let data = verify_with_bot_token(init_data, &token, Freshness::DEFAULT, now_unix_s)
            .unwrap_or_else(|error| panic!("{name}: refused: {error}\n{init_data}"));
        let user = data.require_user().expect("every case has a user");
        assert_eq!(Some(user.id.get()), case["user_id"].as_u64(), "{name}");
        assert_eq!(
            Some(user.first_name.as_str()),
            case["first_name"].as_str(),
            "{name}"
        );
        assert_eq!(data.auth_date_unix_s(), AUTH_DATE_UNIX_S, "{name}");

        // The same string must fail where it should, or the test above proves nothing.
        assert_eq!(
            verify_with_bot_token(init_data, &other, Freshness::DEFAULT, now_unix_s),
            Err(InitDataError::BadHash),
            "{name}: accepted under another token"
        );
        let tampered = init_data.replacen("user=", "user=%20", 1);
        assert!(
            verify_with_bot_token(&tampered, &token, Freshness::DEFAULT, now_unix_s).is_err(),
            "{name}: accepted after tampering"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "sign.mjs prints four cases:\n{stdout}");
}
