//! Database URLs as operators write them: `sqlite:///var/lib/farthing/ledger.db`,
//! `sqlite://ledger.db`, `sqlite:ledger.db` or a plain path.

use std::path::PathBuf;

/// A parsed `--database` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
}

/// A `--database` value that can't be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Nothing given.
    #[error("empty database URL: give a path or sqlite:///path/to/farthing.db")]
    Empty,
    /// PostgreSQL is planned but not built yet.
    #[error("PostgreSQL is not supported by this build yet: use an SQLite path such as sqlite:///var/lib/farthing/farthing.db")]
    PostgresNotYet,
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
            return Err(UrlError::PostgresNotYet);
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
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db"),
            Err(UrlError::PostgresNotYet)
        );
        assert_eq!(
            DatabaseUrl::parse("mysql://h/db"),
            Err(UrlError::UnknownScheme("mysql".to_owned()))
        );
    }
}
