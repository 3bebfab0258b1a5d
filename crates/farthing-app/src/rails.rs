//! The rails that live inside the ledger and need no adapter crate: `balance` (a customer's
//! prepaid balance, RL1) and `sandbox` (the simulated payer of test mode, RL5).

use farthing_core::invoice::Invoice;
use farthing_core::{MerchantId, Rail};
use tokio::sync::watch;

use crate::rail::{Carries, Connected, RailAdapter, RailRefund, RailRefunded, RailStatus, Task};
use crate::{App, AppError, Mode};

/// Nothing to configure.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

fn nothing_to_configure(rail: Rail) -> AppError {
    AppError::invalid(
        "rail_not_configurable",
        format!("the {rail} rail is always there and has nothing to configure"),
    )
}

fn no_way_back(rail: Rail) -> AppError {
    AppError::invalid(
        "rail_refund_unsupported",
        format!("a payment on the {rail} rail is refunded to the balance: leave out destination"),
    )
    .param("destination")
}

/// The balance rail: every merchant has it, in every mode and currency.
#[derive(Clone, Copy, Debug, Default)]
pub struct BalanceRail;

/// The sandbox rail: every merchant has it in test mode.
#[derive(Clone, Copy, Debug, Default)]
pub struct SandboxRail;

impl RailAdapter for BalanceRail {
    type Config = NoConfig;

    fn rail(&self) -> Rail {
        Rail::Balance
    }

    fn offer(&self, _: &App, _: Mode, _: MerchantId) -> Result<Option<Carries>, AppError> {
        Ok(Some(Carries::any()))
    }

    async fn connect(
        &self,
        _: &App,
        _: Mode,
        _: MerchantId,
        _: NoConfig,
    ) -> Result<Connected, AppError> {
        Err(nothing_to_configure(Rail::Balance))
    }

    async fn status(
        &self,
        _: &App,
        mode: Mode,
        _: MerchantId,
    ) -> Result<Option<RailStatus>, AppError> {
        // No remote peer: healthy while the ledger is.
        Ok(Some(RailStatus::new(Rail::Balance, mode, "healthy")))
    }

    async fn instructions(
        &self,
        _: &App,
        _: Mode,
        _: &Invoice,
    ) -> Result<Option<String>, AppError> {
        Ok(None)
    }

    async fn refund(&self, _: &App, _: Mode, _: RailRefund) -> Result<RailRefunded, AppError> {
        Err(no_way_back(Rail::Balance))
    }

    fn tasks(&self, _: &App, _: watch::Receiver<bool>) -> Vec<Task> {
        Vec::new()
    }
}

impl RailAdapter for SandboxRail {
    type Config = NoConfig;

    fn rail(&self) -> Rail {
        Rail::Sandbox
    }

    fn offer(&self, _: &App, mode: Mode, _: MerchantId) -> Result<Option<Carries>, AppError> {
        Ok((mode == Mode::Test).then(Carries::any))
    }

    async fn connect(
        &self,
        _: &App,
        _: Mode,
        _: MerchantId,
        _: NoConfig,
    ) -> Result<Connected, AppError> {
        Err(nothing_to_configure(Rail::Sandbox))
    }

    async fn status(
        &self,
        _: &App,
        mode: Mode,
        _: MerchantId,
    ) -> Result<Option<RailStatus>, AppError> {
        Ok((mode == Mode::Test).then(|| RailStatus::new(Rail::Sandbox, mode, "healthy")))
    }

    async fn instructions(
        &self,
        _: &App,
        _: Mode,
        _: &Invoice,
    ) -> Result<Option<String>, AppError> {
        Ok(None)
    }

    async fn refund(&self, _: &App, _: Mode, _: RailRefund) -> Result<RailRefunded, AppError> {
        Err(no_way_back(Rail::Sandbox))
    }

    fn tasks(&self, _: &App, _: watch::Receiver<bool>) -> Vec<Task> {
        Vec::new()
    }
}
