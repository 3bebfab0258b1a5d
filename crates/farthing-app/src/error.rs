//! The service's one error type: what went wrong, in terms a caller can act on, without any
//! transport. The HTTP adapter maps each kind to a status in one place; the bot and the workers
//! turn them into messages or retries.

use farthing_store::{StoreError, WriteError};

/// Why an operation did not happen. Whatever the kind, nothing of it was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// No such object for this merchant and mode.
    #[error("no such {noun}: {id:?}")]
    NotFound {
        /// What was looked for ("invoice").
        noun: &'static str,
        /// The id as given.
        id: String,
    },
    /// The request is invalid: a value is wrong, or the operation does not apply to the object.
    #[error("{message}")]
    Invalid {
        /// Machine-readable code, e.g. `invalid_amount`.
        code: &'static str,
        /// What is wrong and what to do, for a person.
        message: String,
        /// The parameter at fault.
        param: Option<String>,
    },
    /// The object is not in a state that allows this (e.g. the invoice is not open).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code, e.g. `invoice_not_open`.
        code: &'static str,
        /// What is wrong and what to do.
        message: String,
        /// The parameter at fault.
        param: Option<String>,
    },
    /// A balance is too small for the payment.
    #[error("{message}")]
    InsufficientFunds {
        /// Machine-readable code, `insufficient_funds`.
        code: &'static str,
        /// What is wrong, with the amounts.
        message: String,
        /// What the balance can still spend, in minor units, when known.
        available_minor: Option<u64>,
        /// What was asked for, in minor units, when known.
        requested_minor: Option<u64>,
        /// The parameter at fault.
        param: Option<String>,
    },
    /// The merchant's risk rules refused the payment, or want step-up authentication first.
    #[error("{message}")]
    RiskRefused {
        /// `risk_refused` or `step_up_required`.
        code: &'static str,
        /// The rule and why, with the decision's id.
        message: String,
        /// The recorded decision, `rsk_…` (listed at `GET /v1/risk/decisions`).
        decision: String,
    },
    /// An idempotency key was used before with a different request.
    #[error("{message}")]
    IdempotencyKeyReused {
        /// What happened and what to do.
        message: String,
    },
    /// A rail (Telegram, a Lightning node…) refused or could not be reached; nothing was booked.
    #[error("{message}")]
    RailFailed {
        /// Machine-readable code, e.g. `telegram_refund_failed`.
        code: &'static str,
        /// What the rail said.
        message: String,
    },
    /// The service cannot take the operation now (the ledger is busy or shutting down); safe
    /// to retry.
    #[error("{message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// Something broke inside; the detail was logged and is not for clients.
    #[error("internal error: {detail}")]
    Internal {
        /// What broke, for the log.
        detail: String,
    },
}

impl AppError {
    /// An invalid request (`code`, message).
    pub fn invalid(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::Invalid {
            code,
            message: message.into(),
            param: None,
        }
    }

    /// A state conflict (`code`, message).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::Conflict {
            code,
            message: message.into(),
            param: None,
        }
    }

    /// No such object.
    pub fn not_found(noun: &'static str, id: impl Into<String>) -> AppError {
        AppError::NotFound {
            noun,
            id: id.into(),
        }
    }

    /// A balance too small for the payment.
    pub fn insufficient_funds(message: impl Into<String>) -> AppError {
        AppError::InsufficientFunds {
            code: "insufficient_funds",
            message: message.into(),
            available_minor: None,
            requested_minor: None,
            param: None,
        }
    }

    /// A rail refused or was unreachable.
    pub fn rail_failed(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::RailFailed {
            code,
            message: message.into(),
        }
    }

    /// Not now; retry.
    pub fn unavailable(message: impl Into<String>) -> AppError {
        AppError::Unavailable {
            message: message.into(),
        }
    }

    /// Something broke inside: logged here with its detail.
    pub fn internal(detail: impl std::fmt::Display) -> AppError {
        let detail = detail.to_string();
        tracing::error!(%detail, "internal error");
        AppError::Internal { detail }
    }

    /// Names the parameter at fault (for the kinds that carry one).
    pub fn param(mut self, name: impl Into<String>) -> AppError {
        match &mut self {
            AppError::Invalid { param, .. }
            | AppError::Conflict { param, .. }
            | AppError::InsufficientFunds { param, .. } => *param = Some(name.into()),
            _ => {}
        }
        self
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::NotFound { .. } => "resource_missing",
            AppError::Invalid { code, .. }
            | AppError::Conflict { code, .. }
            | AppError::InsufficientFunds { code, .. }
            | AppError::RiskRefused { code, .. }
            | AppError::RailFailed { code, .. } => code,
            AppError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            AppError::Unavailable { .. } => "service_unavailable",
            AppError::Internal { .. } => "internal_error",
        }
    }

    /// The parameter at fault, if any.
    pub fn param_name(&self) -> Option<&str> {
        match self {
            AppError::Invalid { param, .. }
            | AppError::Conflict { param, .. }
            | AppError::InsufficientFunds { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    /// Whether the caller's request is at fault (it will fail the same way if retried), as
    /// opposed to farthing or a rail being unable to do it now.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            AppError::NotFound { .. }
                | AppError::Invalid { .. }
                | AppError::Conflict { .. }
                | AppError::InsufficientFunds { .. }
                | AppError::RiskRefused { .. }
                | AppError::IdempotencyKeyReused { .. }
        )
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            // The operator's to fix, and the caller's to know: nothing was stored.
            StoreError::SecretsKeyMissing(message) => AppError::Conflict {
                code: "secrets_key_missing",
                message,
                param: None,
            },
            error => AppError::internal(error),
        }
    }
}

impl From<WriteError> for AppError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Busy | WriteError::Closed => AppError::unavailable(error.to_string()),
            WriteError::Failed(_) | WriteError::Unknown(_) | WriteError::Rejected(_) => {
                AppError::internal(error)
            }
        }
    }
}
