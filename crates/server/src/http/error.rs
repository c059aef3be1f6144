//! [`ApiError`], the one error type of every HTTP handler, and its explicit status mapping.
//!
//! Handlers return `Result<_, ApiError>`. Domain errors convert into it with `From`; the
//! conversion decides the status, never the handler. Which variant to use:
//!
//! | variant | status | `code` |
//! |---|---|---|
//! | `Validation` | 422 | `validation_failed` (with per-field reasons) |
//! | `BadRequest` | 400 | `bad_request` |
//! | `TenantRequired` | 400 | `tenant_required` |
//! | `Unauthorized`, `InvalidCredentials` | 401 | `unauthorized` |
//! | `InvalidOnboardingToken` | 401 | `invalid_onboarding_token` |
//! | `Forbidden` | 403 | `forbidden` |
//! | `PasswordChangeRequired` | 403 | `password_change_required` |
//! | `NotFound` | 404 | `not_found` (also for another tenant's resources) |
//! | `UnknownEndpoint` | 404 | `unknown_endpoint` (no route: a wrong base URL, mostly) |
//! | `Conflict` | 409 | `conflict` |
//! | `PayloadTooLarge` | 413 | `payload_too_large` |
//! | `UnsupportedMediaType` | 415 | `unsupported_media_type` |
//! | `RateLimited` | 429 | `rate_limited`, with `Retry-After` |
//! | `Unavailable` | 503 | `unavailable` |
//! | `Internal` | 500 | `internal`; the detail is logged with the request id, never sent |

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use watchgrid_store::StoreError;
use watchgrid_wire::{ErrorBody, ErrorDetail, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    /// A tenant-scoped request that names no tenant, from a credential that has none.
    #[error("no tenant selected: send the X-Watchgrid-Tenant header with a tenant slug")]
    TenantRequired,
    #[error("authentication is required")]
    Unauthorized,
    /// An onboarding token that cannot enroll a device; the message says why.
    #[error("{0}")]
    InvalidOnboardingToken(String),
    /// A failed login: the same answer whether the user exists or not.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error("you must change your password first (POST /api/auth/password)")]
    PasswordChangeRequired,
    #[error("not found")]
    NotFound,
    /// No route matches the path: the client's base URL is wrong, mostly.
    #[error("no such API endpoint: {0}")]
    UnknownEndpoint(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than 1 MiB")]
    PayloadTooLarge,
    #[error("the body must be JSON (content-type: application/json)")]
    UnsupportedMediaType,
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// Internal detail, logged and never returned.
    #[error("internal server error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) | ApiError::TenantRequired => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized
            | ApiError::InvalidCredentials
            | ApiError::InvalidOnboardingToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::PasswordChangeRequired => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::UnknownEndpoint(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The envelope's `code`.
    pub fn code(&self) -> String {
        match self {
            ApiError::PasswordChangeRequired => "password_change_required".into(),
            ApiError::TenantRequired => "tenant_required".into(),
            ApiError::InvalidOnboardingToken(_) => "invalid_onboarding_token".into(),
            ApiError::UnknownEndpoint(_) => "unknown_endpoint".into(),
            other => code_for_status(other.status()),
        }
    }

    /// The message a client sees (never internal detail).
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Validation(_) => "the request is invalid".to_owned(),
            ApiError::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::Validation(vec![bounded_field(FieldError::new(field, reason))])
    }
}

/// The stable `code` for a status, shared with responses that did not come from an
/// [`ApiError`] (extractor rejections, unknown routes, body limits).
pub fn code_for_status(status: StatusCode) -> String {
    match status.as_u16() {
        400 => "bad_request".into(),
        401 => "unauthorized".into(),
        403 => "forbidden".into(),
        404 => "not_found".into(),
        405 => "method_not_allowed".into(),
        408 => "request_timeout".into(),
        409 => "conflict".into(),
        413 => "payload_too_large".into(),
        414 => "uri_too_long".into(),
        415 => "unsupported_media_type".into(),
        422 => "validation_failed".into(),
        429 => "rate_limited".into(),
        431 => "request_header_fields_too_large".into(),
        500 => "internal".into(),
        503 => "unavailable".into(),
        other => format!("http_{other}"),
    }
}

/// The envelope an [`ApiError`] produced, carried in the response's extensions so the
/// request middleware can add the request id before it is serialised.
#[derive(Debug, Clone)]
pub struct PendingEnvelope(pub ErrorBody);

/// Detail of a 5xx error, for the log line only.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some((*retry_after_secs).max(1)),
            _ => None,
        };
        let code = self.code();
        let message = self.public_message();
        let (fields, detail) = match self {
            // Reasons may quote the input (serde does); the answer stays small whatever came in.
            ApiError::Validation(fields) => (fields.into_iter().map(bounded_field).collect(), None),
            ApiError::Internal(detail) | ApiError::Unavailable(detail) => (vec![], Some(detail)),
            _ => (vec![], None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                request_id: None,
                fields,
            },
        };
        let mut response = (status, axum::Json(&body)).into_response();
        response.extensions_mut().insert(PendingEnvelope(body));
        if let Some(detail) = detail {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A field error whose name and reason are at most [`super::validate::MAX_QUOTED_CHARS`]
/// characters long.
pub fn bounded_field(error: FieldError) -> FieldError {
    FieldError::new(
        super::validate::bounded(&error.field),
        super::validate::bounded(&error.reason),
    )
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::fleet::hub::KeyUnavailable> for ApiError {
    fn from(err: crate::fleet::hub::KeyUnavailable) -> Self {
        ApiError::Unavailable(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound,
            // Constraint names are internal; the handler knows better words and should map
            // conflicts itself where it expects them.
            StoreError::Conflict(detail) => {
                tracing::debug!(%detail, "store conflict");
                ApiError::Conflict("the resource conflicts with an existing one".into())
            }
            // Nothing was written: the client may simply retry, so this is a conflict, not a 5xx.
            StoreError::Contended(detail) => {
                tracing::info!(%detail, "store contention");
                ApiError::Conflict(
                    "a concurrent change to the same data got there first; try again".into(),
                )
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                ApiError::Unavailable("the database is unavailable; try again shortly".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}
