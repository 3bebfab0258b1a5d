//! The merchant's settings (what the payment bot tells customers: terms, refund policy,
//! contacts, tip presets, and whether it may send payment reminders), per mode, as checked JSON.

use farthing_core::MerchantId;
use serde::{Deserialize, Serialize};

use crate::{App, AppError, Mode};

/// Longest `terms`, in characters (the three texts fit one Telegram message of 4096).
pub const MAX_TERMS_CHARS: usize = 2000;
/// Longest `refund_policy`, in characters.
pub const MAX_REFUND_POLICY_CHARS: usize = 1000;
/// Longest `contacts`, in characters.
pub const MAX_CONTACTS_CHARS: usize = 500;
/// Most tip presets (one row of buttons each).
pub const MAX_TIP_PRESETS: usize = 8;
/// Largest tip preset, in Stars (Telegram's limit for one Stars subscription period, kept for
/// tips too).
pub const MAX_TIP_PRESET_STARS: u64 = 10_000;

/// The merchant's settings, as stored and as `GET /v1/settings` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MerchantSettings {
    /// The offer the bot's `/terms` shows (empty: not set).
    #[schema(
        max_length = 2000,
        example = "Digital goods are delivered right after payment."
    )]
    pub terms: String,
    /// The refund policy `/terms` shows (empty: not set).
    #[schema(
        max_length = 1000,
        example = "Refunds within 14 days on request (/refund)."
    )]
    pub refund_policy: String,
    /// How to reach the merchant, shown by `/terms` (empty: not set).
    #[schema(max_length = 500, example = "@shop_support")]
    pub contacts: String,
    /// The tip and top-up buttons, in Stars (at most 8, each 1 to 10000; empty: the server's
    /// `telegram.tip_presets`).
    #[schema(example = json!([1, 3, 5, 10]))]
    pub tip_presets: Vec<u64>,
    /// Whether the bot reminds customers who opted in (`/remind on`) of invoices they left
    /// open, once per invoice.
    pub reminders: bool,
}

impl MerchantSettings {
    /// Checks the lengths and presets.
    pub fn check(&self) -> Result<(), AppError> {
        for (field, text, max) in [
            ("terms", &self.terms, MAX_TERMS_CHARS),
            (
                "refund_policy",
                &self.refund_policy,
                MAX_REFUND_POLICY_CHARS,
            ),
            ("contacts", &self.contacts, MAX_CONTACTS_CHARS),
        ] {
            if text.chars().count() > max {
                return Err(AppError::invalid(
                    "invalid_settings",
                    format!("{field} must be at most {max} characters"),
                )
                .param(field));
            }
        }
        if self.tip_presets.len() > MAX_TIP_PRESETS
            || self
                .tip_presets
                .iter()
                .any(|stars| !(1..=MAX_TIP_PRESET_STARS).contains(stars))
        {
            return Err(AppError::invalid(
                "invalid_settings",
                format!(
                    "tip_presets must be at most {MAX_TIP_PRESETS} amounts of 1 to \
                     {MAX_TIP_PRESET_STARS} Stars"
                ),
            )
            .param("tip_presets"));
        }
        Ok(())
    }
}

/// The merchant's settings in `mode` (the defaults when it never stored any).
pub fn load(app: &App, mode: Mode, merchant: MerchantId) -> Result<MerchantSettings, AppError> {
    let stored = app.read(mode, move |reader| reader.merchant_settings(merchant))?;
    match stored {
        None => Ok(MerchantSettings::default()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|error| AppError::internal(format!("stored settings unreadable: {error}"))),
    }
}

/// Checks and stores the merchant's settings in the current job.
pub fn store(
    tx: &mut farthing_store::Tx<'_, '_>,
    merchant: MerchantId,
    settings: &MerchantSettings,
) -> Result<(), AppError> {
    settings.check()?;
    let text = serde_json::to_string(settings).map_err(AppError::internal)?;
    tx.set_merchant_settings(merchant, &text)?;
    Ok(())
}
