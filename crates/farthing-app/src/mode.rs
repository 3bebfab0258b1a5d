//! Live or test mode (SPEC RL5, A1).

/// Live or test mode: which data a key sees. Test-mode data lives in its own database, so no
/// query can mix the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Real money.
    Live,
    /// Sandbox data and keys.
    Test,
}

impl Mode {
    /// `livemode` as the API shows it.
    pub fn is_live(self) -> bool {
        self == Mode::Live
    }

    /// The API key prefix of this mode.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Mode::Live => "fk_live_",
            Mode::Test => "fk_test_",
        }
    }

    /// `"live"` or `"test"`: the path segment of public links and a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }
}
