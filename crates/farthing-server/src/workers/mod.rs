//! Background workers: the scheduler (invoice expiry, idempotency-key cleanup) and the webhook
//! delivery worker. Each runs until the server stops. (The rails' own work — streams, polling,
//! reconciliation — is theirs; the bot's reminders are the bot's.)

pub mod scheduler;
pub mod webhooks;

pub use webhooks::{check_url as check_webhook_url, generate_secret as new_webhook_secret};
