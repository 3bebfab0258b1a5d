//! The one error shape of the API (SPEC A2): `{"error": {"type", "code", "message", "param"}}`,
//! and the one place where failures become HTTP statuses.
//!
//! Internal causes (database errors, bugs) are logged with their detail and answered with a
//! generic message: a client learns what to fix, never how farthing is built inside.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use farthing_store::{StoreError, WriteError};
use serde_json::json;

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Broad class: `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `idempotency_error`, `payment_error`, `api_error`.
    pub kind: &'static str,
    /// Machine-readable code, e.g. `insufficient_funds`.
    pub code: &'static str,
    /// What happened and what to do, for a person.
    pub message: String,
    /// The request parameter at fault, if one is.
    pub param: Option<String>,
    /// A refused payment: what the balance can spend and what was asked, in minor units
    /// (`available` and `requested` in the body).
    pub amounts: Option<(u64, u64)>,
    /// The risk decision behind a refusal (`rsk_…`), shown as `decision` (boxed: errors travel
    /// in every `Result`, and this one is rare).
    pub decision: Option<Box<String>>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            kind,
            code,
            message,
            param: None,
            amounts: None,
            decision: None,
        }
    }

    /// Names the parameter at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400: the request is malformed or a value is invalid.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message.into(),
        )
    }

    /// 404: no such object for this merchant and mode.
    pub fn not_found(noun: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "resource_missing",
            format!("no such {noun}: {id:?}"),
        )
    }

    /// 404 for an unknown route.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_route",
            format!("no such endpoint: {path}; see /openapi.json"),
        )
    }

    /// 401: no usable API key.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            code,
            message.into(),
        )
    }

    /// 403: the key may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            code,
            message.into(),
        )
    }

    /// 402: the payment could not be made (e.g. insufficient funds).
    pub fn payment(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "payment_error",
            code,
            message.into(),
        )
    }

    /// 409: the object is not in a state that allows this.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            code,
            message.into(),
        )
    }

    /// 422: an idempotency key reused with a different request.
    pub fn idempotency(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_error",
            "idempotency_key_reused",
            message.into(),
        )
    }

    /// 429: a rate limit refused the request; `retry_after_s` goes in `Retry-After` too.
    pub fn rate_limited(what: &str, retry_after_s: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            "rate_limited",
            format!("too many requests {what}; retry after {retry_after_s} s (limits: [rate_limits] in the configuration)"),
        )
    }

    /// 413: the body is larger than allowed.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            format!("request body too large: at most {limit} bytes"),
        )
    }

    /// 503: the ledger is overloaded or shutting down; safe to retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "service_unavailable",
            message.into(),
        )
    }

    /// 500: something broke inside; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            INTERNAL_MESSAGE.to_owned(),
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "error": {
                "type": self.kind,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            }
        });
        if let Some((available, requested)) = self.amounts {
            body["error"]["available"] = json!(available);
            body["error"]["requested"] = json!(requested);
        }
        if let Some(decision) = &self.decision {
            body["error"]["decision"] = json!(decision);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<farthing_app::AppError> for ApiError {
    fn from(error: farthing_app::AppError) -> Self {
        use farthing_app::AppError;
        match error {
            AppError::NotFound { noun, id } => ApiError::not_found(noun, &id),
            AppError::Invalid {
                code,
                message,
                param,
            } => ApiError {
                param,
                ..ApiError::invalid(code, message)
            },
            AppError::Conflict {
                code,
                message,
                param,
            } => ApiError {
                param,
                ..ApiError::conflict(code, message)
            },
            AppError::InsufficientFunds {
                code,
                message,
                param,
                available_minor,
                requested_minor,
            } => ApiError {
                // The amount is what a caller can change (a smaller charge, a top-up first).
                param: param.or_else(|| Some("amount".to_owned())),
                amounts: available_minor.zip(requested_minor),
                ..ApiError::payment(code, message)
            },
            AppError::RiskRefused {
                code,
                message,
                decision,
            } => ApiError {
                decision: Some(Box::new(decision)),
                ..if code == "step_up_required" {
                    ApiError::forbidden(code, message)
                } else {
                    ApiError::payment(code, message)
                }
            },
            AppError::IdempotencyKeyReused { message } => ApiError::idempotency(message),
            AppError::RailFailed { code, message } => ApiError {
                status: StatusCode::BAD_GATEWAY,
                kind: "api_error",
                code,
                message,
                param: None,
                amounts: None,
                decision: None,
            },
            AppError::Unavailable { message } => ApiError::unavailable(message),
            // Already logged where it was made.
            AppError::Internal { .. } => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "api_error",
                code: "internal_error",
                message: INTERNAL_MESSAGE.to_owned(),
                param: None,
                amounts: None,
                decision: None,
            },
        }
    }
}

/// What a client reads about an internal error.
const INTERNAL_MESSAGE: &str =
    "farthing hit an internal error; nothing was changed, retry with the same Idempotency-Key";

impl From<crate::state::MissingScope> for ApiError {
    fn from(missing: crate::state::MissingScope) -> Self {
        ApiError::forbidden(
            "missing_scope",
            format!("this API key lacks the {:?} scope", missing.0),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::from(farthing_app::AppError::from(error))
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Busy | WriteError::Closed => ApiError::unavailable(error.to_string()),
            WriteError::Failed(_) | WriteError::Unknown(_) | WriteError::Rejected(_) => {
                ApiError::internal(error)
            }
        }
    }
}
