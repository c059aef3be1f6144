//! The HTTP surface: the router, its middleware stack and the handlers.

pub mod error;
pub mod middleware;
mod ops;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use error::{ApiError, ApiResult};

use crate::state::AppState;

/// Largest request body accepted, in bytes. Larger bodies get 413 with the error envelope.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A request that takes longer than this is answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole application router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/version", get(ops::version))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Layers run bottom-up on the way in; `observe` is outermost so it sees (and wraps in
        // the envelope) every response, including timeouts and body-limit rejections.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> axum::http::StatusCode {
    axum::http::StatusCode::METHOD_NOT_ALLOWED
}
