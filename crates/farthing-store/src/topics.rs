//! The changes one farthing instance tells the others on a shared database (see
//! `instances.rs`): what they are called, and the statement that tells them.

/// Something that changed, as told to every instance on the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// An API key was revoked or given an end (cached keys must be read again).
    ApiKeys,
    /// A merchant's risk rules changed.
    RiskRules,
    /// Webhook deliveries were queued (the webhook worker has work).
    Outbox,
    /// A rail was configured or reconfigured (a bot, a Lightning node, a TON wallet, a card
    /// provider): the background work that watches the rails looks again, and the rails a
    /// merchant's invoices can take are read again.
    Rails,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 4] = [
        Topic::ApiKeys,
        Topic::RiskRules,
        Topic::Outbox,
        Topic::Rails,
    ];

    /// Its name in a notification's payload.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::ApiKeys => "api_keys",
            Topic::RiskRules => "risk_rules",
            Topic::Outbox => "outbox",
            Topic::Rails => "rails",
        }
    }

    /// The topic a payload names.
    pub fn parse(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.as_str() == name)
    }
}

/// Sends a topic to every listener on the same schema (the payload is `<schema> <topic>`; the
/// channel is the database's). Inside a transaction, it is delivered when that commits.
pub(crate) const NOTIFY_SQL: &str =
    "SELECT pg_notify('farthing', current_schema() || ' ' || ?1)::text";
