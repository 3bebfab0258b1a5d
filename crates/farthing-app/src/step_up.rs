//! Step-up authentication (SPEC S3): a merchant enrols a TOTP authenticator (RFC 6238:
//! HMAC-SHA1, 6 digits, 30-second steps, one step of clock skew either way) by scanning an
//! `otpauth://` URI and confirming a first code; from then on the sensitive operations the
//! server names (payouts, refunds, API keys, webhook endpoints, rail credentials, dashboard
//! owners, disabling step-up itself) need a current code — or one of ten recovery codes, kept
//! only as hashes. A code works once: the last accepted time step is stored and a code of
//! that step or an earlier one is refused. Five wrong codes lock step-up for five minutes.

use farthing_core::MerchantId;
use farthing_store::Authenticator;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

use crate::{App, AppError, Mode};

/// Seconds per time step.
pub const STEP_S: u64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Wrong codes before step-up locks.
pub const MAX_FAILURES: u32 = 5;
/// How long it stays locked, in seconds.
pub const LOCKOUT_S: u64 = 300;
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// What a merchant gets at enrolment, once.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The shared secret, base32 (RFC 4648, no padding), for typing into an app.
    pub secret_base32: String,
    /// `otpauth://totp/…` for a QR code.
    pub otpauth_uri: String,
    /// Single-use codes for when the authenticator is lost.
    pub recovery_codes: Vec<String>,
}

/// Why a code was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Step-up is on and no code came with the request.
    Required,
    /// The code is wrong (or a used recovery code).
    Invalid,
    /// The code was already used (its time step was accepted before).
    Replayed,
    /// Too many wrong codes: locked for this many seconds more.
    Locked {
        /// Seconds until codes are checked again.
        retry_after_s: u64,
    },
    /// Confirming, but no enrolment waits for it.
    NotEnrolled,
}

fn totp(secret: &[u8], account: &str) -> Result<TOTP, AppError> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_S,
        secret.to_vec(),
        Some("farthing".to_owned()),
        account.replace(':', " "),
    )
    .map_err(|error| AppError::internal(format!("TOTP parameters: {error}")))
}

fn hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normal.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AppError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(AppError::internal)?;
    Ok(bytes)
}

/// A recovery code: 12 characters of an unambiguous alphabet, as `xxxx-xxxx-xxxx`.
fn recovery_code() -> Result<String, AppError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let bytes = random_bytes::<12>()?;
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    Ok(chars
        .chunks(4)
        .map(|chunk| chunk.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-"))
}

/// Checks `code` against `authenticator` at `now_ns`, updating its replay and failure state
/// (the caller stores it whatever the outcome, so failures count).
pub fn accept(
    authenticator: &mut Authenticator,
    code: &str,
    now_ns: u64,
    account: &str,
) -> Result<Result<(), Refusal>, AppError> {
    let now_s = now_ns / 1_000_000_000;
    let since_s = authenticator.failures_since_ns / 1_000_000_000;
    if authenticator.failures >= MAX_FAILURES {
        let until = since_s.saturating_add(LOCKOUT_S);
        if now_s < until {
            return Ok(Err(Refusal::Locked {
                retry_after_s: until - now_s,
            }));
        }
        authenticator.failures = 0;
    }
    let code = code.trim();
    if code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
        let generator = totp(&authenticator.secret, account)?;
        let current = now_s / STEP_S;
        // Every candidate is computed, so the time taken says nothing about which matched.
        let mut matched = None;
        for step in current.saturating_sub(1)..=current.saturating_add(1) {
            let expected = generator.generate(step * STEP_S);
            if same(expected.as_bytes(), code.as_bytes()) {
                matched = Some(step);
            }
        }
        if let Some(step) = matched {
            if authenticator.last_step.is_some_and(|last| step <= last) {
                return Ok(Err(Refusal::Replayed));
            }
            authenticator.last_step = Some(step);
            authenticator.failures = 0;
            return Ok(Ok(()));
        }
    } else {
        let hashed = hash(code);
        if let Some(i) = authenticator.recovery.iter().position(|h| *h == hashed) {
            authenticator.recovery.remove(i);
            authenticator.failures = 0;
            return Ok(Ok(()));
        }
    }
    if authenticator.failures == 0 {
        authenticator.failures_since_ns = now_ns;
    }
    authenticator.failures = authenticator.failures.saturating_add(1);
    Ok(Err(Refusal::Invalid))
}

/// Equality that looks at every byte (codes are compared without an early exit).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y))
        == 0
}

/// The code for the base32 `secret` at Unix second `unix_s` (what an authenticator app shows).
pub fn code_at(secret_base32: &str, unix_s: u64) -> Result<String, AppError> {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .map_err(|error| {
            AppError::invalid("invalid_secret", format!("not a base32 secret: {error:?}"))
        })?;
    Ok(totp(&secret, "code")?.generate(unix_s))
}

/// Starts (or restarts) an enrolment: a new secret and recovery codes, not required until
/// confirmed. Refused while step-up is on (disable it first, with a code).
pub async fn enrol(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    account: &str,
) -> Result<Enrolment, AppError> {
    let secret = random_bytes::<20>()?.to_vec();
    let generator = totp(&secret, account)?;
    let recovery_codes = (0..RECOVERY_CODES)
        .map(|_| recovery_code())
        .collect::<Result<Vec<_>, _>>()?;
    let authenticator = Authenticator {
        secret,
        active: false,
        last_step: None,
        recovery: recovery_codes.iter().map(|c| hash(c)).collect(),
        failures: 0,
        failures_since_ns: 0,
    };
    app.run(mode, move |tx| -> Result<(), AppError> {
        if tx.authenticator(merchant)?.is_some_and(|a| a.active) {
            return Err(AppError::conflict(
                "step_up_active",
                "step-up is already on: disable it (DELETE /v1/step_up with a current code) before enrolling a new authenticator",
            ));
        }
        tx.put_authenticator(merchant, &authenticator)?;
        Ok(())
    })
    .await?;
    Ok(Enrolment {
        secret_base32: generator.get_secret_base32(),
        otpauth_uri: generator.get_url(),
        recovery_codes,
    })
}

/// Confirms an enrolment with a first code: step-up is on from now.
pub async fn confirm(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    code: &str,
    account: &str,
) -> Result<Result<(), Refusal>, AppError> {
    let (code, account) = (code.to_owned(), account.to_owned());
    app.run(mode, move |tx| -> Result<Result<(), Refusal>, AppError> {
        let Some(mut authenticator) = tx.authenticator(merchant)? else {
            return Ok(Err(Refusal::NotEnrolled));
        };
        if authenticator.active {
            return Err(AppError::conflict(
                "step_up_active",
                "step-up is already on for this merchant",
            ));
        }
        // Only a code from the app proves the enrolment, not a recovery code.
        let looks_like_code = code.trim().len() == DIGITS;
        let outcome = if looks_like_code {
            accept(&mut authenticator, &code, tx.now_ns(), &account)?
        } else {
            Err(Refusal::Invalid)
        };
        if outcome.is_ok() {
            authenticator.active = true;
        }
        tx.put_authenticator(merchant, &authenticator)?;
        Ok(outcome)
    })
    .await
}

/// Checks the step-up code of a sensitive operation: nothing to check when the merchant has
/// not turned step-up on; otherwise the code must be current and unused (or a recovery code).
pub async fn check(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    code: Option<&str>,
    account: &str,
) -> Result<Result<(), Refusal>, AppError> {
    let active = app
        .read(mode, move |reader| reader.authenticator(merchant))?
        .is_some_and(|a| a.active);
    if !active {
        return Ok(Ok(()));
    }
    let Some(code) = code.map(str::to_owned) else {
        return Ok(Err(Refusal::Required));
    };
    let account = account.to_owned();
    app.run(mode, move |tx| -> Result<Result<(), Refusal>, AppError> {
        let Some(mut authenticator) = tx.authenticator(merchant)?.filter(|a| a.active) else {
            return Ok(Ok(()));
        };
        let outcome = accept(&mut authenticator, &code, tx.now_ns(), &account)?;
        tx.put_authenticator(merchant, &authenticator)?;
        Ok(outcome)
    })
    .await
}

/// Turns step-up off (the caller checked a code first).
pub async fn disable(app: &App, mode: Mode, merchant: MerchantId) -> Result<(), AppError> {
    app.run(mode, move |tx| -> Result<(), AppError> {
        tx.delete_authenticator(merchant)?;
        Ok(())
    })
    .await
}

/// Whether step-up is off, waiting for its first code, or on; with the recovery codes left.
pub fn status(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
) -> Result<(&'static str, usize), AppError> {
    let found = app.read(mode, move |reader| reader.authenticator(merchant))?;
    Ok(match found {
        None => ("off", 0),
        Some(a) if !a.active => ("pending", a.recovery.len()),
        Some(a) => ("on", a.recovery.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, Appendix B: the SHA-1 secret "12345678901234567890" (8-digit codes there;
    /// these are their last six digits, which is what a 6-digit code is).
    #[test]
    fn the_rfc_6238_vectors() {
        let generator = totp(b"12345678901234567890", "test").expect("totp");
        for (time, eight_digits) in [
            (59_u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(generator.generate(time), eight_digits[2..], "at {time}");
        }
    }

    fn authenticator() -> Authenticator {
        Authenticator {
            secret: b"12345678901234567890".to_vec(),
            active: true,
            last_step: None,
            recovery: vec![hash("abcd-efgh-jkmn")],
            failures: 0,
            failures_since_ns: 0,
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_code_works_once_and_within_one_step_of_skew() {
        let mut a = authenticator();
        let at = 1_111_111_111 * S;
        // 1 111 111 111 s is in step 37 037 037; the code of the step before still works.
        let previous = totp(&a.secret, "t").expect("totp").generate(1_111_111_080);
        assert_eq!(accept(&mut a, &previous, at, "t").expect("ok"), Ok(()));
        assert_eq!(
            accept(&mut a, &previous, at, "t").expect("ok"),
            Err(Refusal::Replayed)
        );
        let current = totp(&a.secret, "t").expect("totp").generate(1_111_111_111);
        assert_eq!(accept(&mut a, &current, at, "t").expect("ok"), Ok(()));
        // Two steps old: wrong.
        let old = totp(&a.secret, "t")
            .expect("totp")
            .generate(1_111_111_111 - 60);
        let mut fresh = authenticator();
        assert_eq!(
            accept(&mut fresh, &old, at, "t").expect("ok"),
            Err(Refusal::Invalid)
        );
    }

    #[test]
    fn recovery_codes_work_once_and_wrong_codes_lock() {
        let mut a = authenticator();
        assert_eq!(
            accept(&mut a, "ABCD EFGH JKMN", 10 * S, "t").expect("ok"),
            Ok(())
        );
        assert_eq!(
            accept(&mut a, "abcd-efgh-jkmn", 11 * S, "t").expect("ok"),
            Err(Refusal::Invalid)
        );
        for _ in 1..MAX_FAILURES {
            assert_eq!(
                accept(&mut a, "000000", 12 * S, "t").expect("ok"),
                Err(Refusal::Invalid)
            );
        }
        let right = totp(&a.secret, "t").expect("totp").generate(13);
        assert_eq!(
            accept(&mut a, &right, 13 * S, "t").expect("ok"),
            Err(Refusal::Locked {
                retry_after_s: LOCKOUT_S - 2
            })
        );
        let later = 11 + LOCKOUT_S + 1;
        let right = totp(&a.secret, "t").expect("totp").generate(later);
        assert_eq!(accept(&mut a, &right, later * S, "t").expect("ok"), Ok(()));
    }
}
