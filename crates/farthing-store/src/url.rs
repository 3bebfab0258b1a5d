//! Database URLs as operators write them: `sqlite:///var/lib/farthing/ledger.db`,
//! `sqlite://ledger.db`, `sqlite:ledger.db`, a plain path, or
//! `postgres://user:password@host/db` (`postgresql://` too; a Unix socket as `?host=/dir`).

use std::path::PathBuf;

/// A parsed `--database` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL. Its `Debug` and `Display` leave the password out (logs, errors).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// A URL known to be PostgreSQL's (one a ledger was opened with).
    pub(crate) fn new(url: String) -> PostgresUrl {
        PostgresUrl(url)
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`. Errs on the side of hiding: everything
    /// between `user:` and the last `@` is masked (a password may hold `/`, `?` or `@`), and
    /// a `password=` parameter too.
    pub fn redacted(&self) -> String {
        let text = mask_password_parameters(&self.0);
        let Some((scheme, rest)) = text.split_once("://") else {
            return "postgres://***".to_owned();
        };
        match rest.rsplit_once('@') {
            Some((credentials, after)) => match credentials.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{after}"),
                None => format!("{scheme}://{credentials}@{after}"),
            },
            None => format!("{scheme}://{rest}"),
        }
    }
}

/// Every `password=` parameter's value replaced by `***`, wherever it stands.
fn mask_password_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("password=") {
        let starts_parameter = at == 0 || matches!(rest.as_bytes()[at - 1], b'?' | b'&');
        let value_at = at + "password=".len();
        out.push_str(&rest[..value_at]);
        rest = &rest[value_at..];
        if starts_parameter {
            out.push_str("***");
            rest = rest.find('&').map_or("", |end| &rest[end..]);
        }
    }
    out.push_str(rest);
    out
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.redacted())
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A `--database` value that can't be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Nothing given.
    #[error("empty database URL: give a path or sqlite:///path/to/farthing.db")]
    Empty,
    /// Some other scheme.
    #[error(
        "unsupported database URL scheme {0:?}: use sqlite:///path/to/farthing.db or a plain path"
    )]
    UnknownScheme(String),
}

impl DatabaseUrl {
    /// Parses a `--database` value.
    pub fn parse(text: &str) -> Result<DatabaseUrl, UrlError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(UrlError::Empty);
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(UrlError::Empty);
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(PostgresUrl(text.to_owned())));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(UrlError::UnknownScheme(scheme.to_owned()));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_shown() {
        let url = |text: &str| PostgresUrl(text.to_owned());
        let shown = url("postgres://shop:s3cret@db.example:5432/farthing?sslmode=disable");
        assert_eq!(
            shown.redacted(),
            "postgres://shop:***@db.example:5432/farthing?sslmode=disable"
        );
        assert!(!format!("{shown:?} {shown}").contains("s3cret"));
        let query = url("postgresql:///farthing?host=/run/pg&password=s3cret&user=shop");
        assert_eq!(
            query.redacted(),
            "postgresql:///farthing?host=/run/pg&password=***&user=shop"
        );
        // Whatever a password holds (@, /, ?), none of it shows.
        for password in ["p@ss", "pa/ss", "pa?ss=1", "p@s/s?x"] {
            let shown = url(&format!(
                "postgres://shop:{password}@host/db?sslmode=disable"
            ));
            assert_eq!(
                shown.redacted(),
                "postgres://shop:***@host/db?sslmode=disable",
                "{password}"
            );
        }
        assert_eq!(
            url("postgres://shop@host/db").redacted(),
            "postgres://shop@host/db"
        );
        assert_eq!(url("postgres://host/db").redacted(), "postgres://host/db");
        // A password parameter before an @ elsewhere in the query.
        let tricky = url("postgresql:///db?password=s3cret&user=shop@corp");
        assert!(
            !tricky.redacted().contains("s3cret"),
            "{}",
            tricky.redacted()
        );
        assert!(!url("postgres://h/db?password=s3cret")
            .redacted()
            .contains("s3cret"));
    }

    #[test]
    fn forms() {
        let sqlite = |p: &str| Ok(DatabaseUrl::Sqlite(PathBuf::from(p)));
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/x.db"),
            sqlite("/var/x.db")
        );
        assert_eq!(DatabaseUrl::parse("sqlite://x.db"), sqlite("x.db"));
        assert_eq!(DatabaseUrl::parse("sqlite:x.db"), sqlite("x.db"));
        assert_eq!(DatabaseUrl::parse("./data/x.db"), sqlite("./data/x.db"));
        assert_eq!(DatabaseUrl::parse(""), Err(UrlError::Empty));
        assert_eq!(DatabaseUrl::parse("sqlite://"), Err(UrlError::Empty));
        let Ok(DatabaseUrl::Postgres(url)) = DatabaseUrl::parse(" postgres://u@h/db ") else {
            panic!("a postgres URL")
        };
        assert_eq!(url.expose(), "postgres://u@h/db");
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert_eq!(
            DatabaseUrl::parse("mysql://h/db"),
            Err(UrlError::UnknownScheme("mysql".to_owned()))
        );
    }
}
