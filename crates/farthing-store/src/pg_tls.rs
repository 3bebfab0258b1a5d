//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` URL parameters.
//!
//! A managed or remote PostgreSQL is reached over TCP and needs TLS. The client
//! (`tokio-postgres`) understands only `sslmode=disable|prefer|require` and verifies nothing by
//! itself; operators write libpq's URLs (`?sslmode=verify-full&sslrootcert=/etc/ca.pem`). This
//! module takes those two parameters out of the URL and gives the client a rustls connector
//! that does what libpq documents for each mode
//! (<https://www.postgresql.org/docs/current/libpq-ssl.html>, table "SSL Mode Descriptions"):
//!
//! | `sslmode`            | encrypted              | server certificate checked            |
//! |----------------------|------------------------|---------------------------------------|
//! | `disable`            | never                  | —                                     |
//! | `prefer` (default)   | when the server offers | no; with `sslrootcert`: as `verify-ca` |
//! | `require`            | always                 | no; with `sslrootcert`: as `verify-ca` |
//! | `verify-ca`          | always                 | signed by `sslrootcert`               |
//! | `verify-full`        | always                 | signed by `sslrootcert`, for the host  |
//!
//! `sslrootcert` names a PEM file of CA certificates, or `system` for the CAs of the Mozilla
//! root program built into farthing (managed services signed by a public CA); with `system`,
//! as in libpq 16, the mode is `verify-full` and a weaker one is refused. Unlike libpq,
//! `~/.postgresql/root.crt` is never read implicitly: the URL says which CA is trusted. A Unix
//! socket never uses TLS (as with libpq). `sslmode=allow` and client certificates
//! (`sslcert`, `sslkey`) are refused with a message rather than ignored.

use std::path::PathBuf;
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// What a URL asks of TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Which CAs are trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Roots {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// The Mozilla root program's CAs (`webpki-roots`).
    System,
}

/// The TLS part of a PostgreSQL URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tls {
    pub(crate) mode: Mode,
    pub(crate) roots: Option<Roots>,
}

fn bad(text: String) -> StoreError {
    StoreError::BadUrl(format!("the PostgreSQL URL cannot be used: {text}"))
}

/// Takes `sslmode` and `sslrootcert` out of `url`: the URL the client parses, and what they ask.
pub(crate) fn split(url: &str) -> Result<(String, Tls), StoreError> {
    let (base, query) = split_query(url);
    let Some(query) = query else {
        return Ok((
            url.to_owned(),
            Tls {
                mode: Mode::Prefer,
                roots: None,
            },
        ));
    };
    let mut mode = None;
    let mut roots = None;
    let mut kept = Vec::new();
    for parameter in query.split('&') {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => Mode::Disable,
                    "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    "allow" => {
                        return Err(bad(
                            "sslmode=allow is not supported: use prefer (TLS when the server \
                             offers it), require or verify-full"
                                .to_owned(),
                        ))
                    }
                    other => {
                        return Err(bad(format!(
                            "unknown sslmode={other}: use disable, prefer, require, verify-ca \
                             or verify-full"
                        )))
                    }
                })
            }
            "sslrootcert" => {
                let value = percent_decode(value).map_err(bad)?;
                roots = Some(if value == "system" {
                    Roots::System
                } else if value.is_empty() {
                    return Err(bad(
                        "sslrootcert is empty: give the path of a PEM file of CA certificates, \
                         or sslrootcert=system"
                            .to_owned(),
                    ));
                } else {
                    Roots::File(PathBuf::from(value))
                });
            }
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                return Err(bad(format!(
                    "{key} is not supported: farthing does not present client certificates \
                     (authenticate with a password; TLS with sslmode=verify-full)"
                )))
            }
            _ => kept.push(parameter),
        }
    }
    let mut rest = base.to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    // As libpq 16: the public CAs vouch for names, and anyone can have one signed for a name of
    // their own, so `sslrootcert=system` means checking the name too (and TLS always).
    let mode =
        match (mode, &roots) {
            (None | Some(Mode::VerifyFull), Some(Roots::System)) => Mode::VerifyFull,
            (Some(_), Some(Roots::System)) => return Err(bad(
                "sslrootcert=system needs sslmode=verify-full (or no sslmode): a publicly signed \
                 certificate only proves the name it is for, so the name must be checked"
                    .to_owned(),
            )),
            (mode, _) => mode.unwrap_or(Mode::Prefer),
        };
    if matches!(mode, Mode::VerifyCa | Mode::VerifyFull) && roots.is_none() {
        return Err(bad(format!(
            "sslmode={} needs sslrootcert: the path of a PEM file with the CA that signed the \
             server's certificate, or sslrootcert=system for a publicly signed one",
            if mode == Mode::VerifyCa {
                "verify-ca"
            } else {
                "verify-full"
            }
        )));
    }
    Ok((rest, Tls { mode, roots }))
}

/// A URL's part before its parameters, and the parameters (after `?`), found as the client
/// finds them: after the credentials (up to the first `@`), the first `?`.
pub(crate) fn split_query(url: &str) -> (&str, Option<&str>) {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let credentials_end = url[after_scheme..]
        .find('@')
        .map_or(after_scheme, |at| after_scheme + at + 1);
    match url[credentials_end..].find('?') {
        Some(at) => (
            &url[..credentials_end + at],
            Some(&url[credentials_end + at + 1..]),
        ),
        None => (url, None),
    }
}

/// `%XX` sequences decoded (a path may be written percent-encoded in a URL).
pub(crate) fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let byte = text
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in {text:?}"))?;
            out.push(byte);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

impl Tls {
    /// The client's own mode: whether TLS is tried, and whether it is required.
    pub(crate) fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The connector that checks the server's certificate as the mode says.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| bad(format!("TLS: {error}")))?;
        let check = match (&self.mode, &self.roots) {
            (Mode::Disable, _) | (Mode::Prefer | Mode::Require, None) => Check::Encrypt,
            // As libpq: a root certificate given is checked (the CA, not the name).
            (Mode::Prefer | Mode::Require | Mode::VerifyCa, Some(roots)) => Check::Ca(roots),
            (Mode::VerifyFull, Some(roots)) => Check::Full(roots),
            (Mode::VerifyCa | Mode::VerifyFull, None) => {
                return Err(bad("sslmode=verify-* needs sslrootcert".to_owned()))
            }
        };
        let config = match check {
            Check::Full(roots) => builder
                .with_root_certificates(load_roots(roots)?)
                .with_no_client_auth(),
            Check::Ca(roots) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    roots: Some(load_roots(roots)?),
                    provider,
                }))
                .with_no_client_auth(),
            Check::Encrypt => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    roots: None,
                    provider,
                }))
                .with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

enum Check<'a> {
    /// Encryption only (libpq's `prefer` and `require`).
    Encrypt,
    /// The chain, not the host name (`verify-ca`).
    Ca(&'a Roots),
    /// The chain and the host name (`verify-full`).
    Full(&'a Roots),
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::System => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::File(path) => {
            let shown = path.display();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|error| bad(format!("cannot read sslrootcert {shown}: {error}")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| bad(format!("sslrootcert {shown} is not PEM: {error}")))?;
            let (added, refused) = store.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(bad(format!(
                    "sslrootcert {shown} holds no usable CA certificate ({refused} refused)"
                )));
            }
        }
    }
    Ok(store)
}

/// The certificate check of `verify-ca` (`roots`: the chain must lead to one of them — webpki's
/// own chain check, validity dates and server-auth usage included; the name in the certificate
/// is not compared with the host) and of `prefer`/`require` without a CA (`roots` `None`: who
/// signed the certificate is not checked, as libpq does in these modes). Either way the
/// handshake's signatures are checked against the certificate the server presents, so the
/// session is encrypted to the holder of its key.
#[derive(Debug)]
struct Verifier {
    roots: Option<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let certificate = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &certificate,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A hint for an error whose cause is a refused TLS certificate, if it is one.
pub(crate) fn hint(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        let tls = current.downcast_ref::<rustls::Error>().or_else(|| {
            current
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(_)) = tls {
            return Some(
                "the server's TLS certificate was refused: sslrootcert must hold the CA that \
                 signed it, and with sslmode=verify-full the URL's host must be a name the \
                 certificate is for (verify-ca skips the name)",
            );
        }
        cause = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> (String, Tls) {
        split(url).expect("a usable URL")
    }

    #[test]
    fn parameters_taken_out() {
        let (rest, found) = tls("postgres://u:p@h:5432/db");
        assert_eq!(rest, "postgres://u:p@h:5432/db");
        assert_eq!(found.mode, Mode::Prefer);
        let (rest, found) =
            tls("postgres://u:p@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&user=x");
        assert_eq!(rest, "postgres://u:p@h/db?user=x");
        assert_eq!(found.mode, Mode::VerifyFull);
        assert_eq!(found.roots, Some(Roots::File(PathBuf::from("/etc/ca.pem"))));
        let (rest, found) = tls("postgresql://h/db?application_name=a&sslmode=disable");
        assert_eq!(rest, "postgresql://h/db?application_name=a");
        assert_eq!(found.ssl_mode(), SslMode::Disable);
        let (rest, found) = tls("postgres://h/db?sslrootcert=system");
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(
            (found.mode, found.roots),
            (Mode::VerifyFull, Some(Roots::System))
        );
        // A `?` in the password is the password's, as the client reads it.
        let (rest, found) = tls("postgres://u:p?x@h/db?sslmode=require");
        assert_eq!(rest, "postgres://u:p?x@h/db");
        assert_eq!(found.ssl_mode(), SslMode::Require);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let refused = |url: &str| match split(url) {
            Err(StoreError::BadUrl(text)) => text,
            other => panic!("{url}: {other:?}"),
        };
        assert!(refused("postgres://h/db?sslmode=verify-full").contains("sslrootcert"));
        assert!(refused("postgres://h/db?sslmode=verify-ca").contains("sslrootcert"));
        assert!(refused("postgres://h/db?sslmode=allow").contains("not supported"));
        assert!(refused("postgres://h/db?sslmode=strict").contains("verify-full"));
        assert!(refused("postgres://h/db?sslcert=/c.pem").contains("client certificates"));
        assert!(refused("postgres://h/db?sslrootcert=").contains("empty"));
        for weaker in ["prefer", "require", "verify-ca", "disable"] {
            assert!(
                refused(&format!(
                    "postgres://h/db?sslmode={weaker}&sslrootcert=system"
                ))
                .contains("needs sslmode=verify-full"),
                "{weaker}"
            );
        }
        assert!(refused("postgres://h/db?sslrootcert=%zz").contains("%-escape"));
        let missing = tls("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").1;
        match missing.connector() {
            Err(StoreError::BadUrl(text)) => {
                assert!(
                    text.contains("cannot read sslrootcert /nonexistent/ca.pem"),
                    "{text}"
                )
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn connectors_for_every_mode() {
        for url in [
            "postgres://h/db?sslmode=disable",
            "postgres://h/db",
            "postgres://h/db?sslmode=require",
            "postgres://h/db?sslmode=verify-full&sslrootcert=system",
            "postgres://h/db?sslrootcert=system",
        ] {
            assert!(tls(url).1.connector().is_ok(), "{url}");
        }
    }
}
