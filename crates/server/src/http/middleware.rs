//! The middleware every request passes: request id, tracing span, metrics, and the guarantee
//! that every 4xx/5xx response carries the JSON error envelope.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use watchgrid_wire::{ErrorBody, ErrorDetail};

use super::error::{code_for_status, InternalDetail, PendingEnvelope};
use crate::auth::ClientAddr;
use crate::metrics::{HttpLabels, RouteLabels};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id: the caller's `x-request-id` when it is short and plain, else a new UUID.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Largest error body read back to wrap it in the envelope; longer text is cut.
const MAX_WRAPPED_BODY: usize = 16 * 1024;

pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let client = client_addr(&request, &state.config.trusted_proxies);
    request.extensions_mut().insert(ClientAddr(client));
    // The bounded label, also in the span: an invented method must not grow the log lines.
    let method = crate::metrics::method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());

    let span =
        tracing::info_span!("http", method = %method, route = %route, request_id = %request_id);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = ensure_envelope(response, &request_id)
            .instrument(span.clone())
            .await;
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let elapsed = started.elapsed();
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: route.clone(),
            method,
            status: status.as_u16(),
        })
        .inc();
    state
        .metrics
        .http_duration
        .get_or_create(&RouteLabels { route, method })
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "request served"
        );
    });
    response
}

/// The TCP peer, unless it is a trusted proxy: then the right-most `X-Forwarded-For` hop that
/// is not itself a trusted proxy (hops further left are client-controlled and not believed).
fn client_addr(request: &Request, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // `MockConnectInfo` is how in-process tests supply a peer address (feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    let peer = peer.or_else(|| {
        request
            .extensions()
            .get::<axum::extract::connect_info::MockConnectInfo<SocketAddr>>()
            .map(|m| m.0)
    });
    let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |addr| addr.ip());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// Give an error response the envelope: fill in the request id of one an `ApiError` made, or
/// wrap a plain-text rejection (from an extractor, a body limit, an unknown route).
/// JSON bodies that are not envelopes (the `/healthz` 503 report) are left as they are.
async fn ensure_envelope(response: Response, request_id: &str) -> Response {
    let status = response.status();
    if let Some(PendingEnvelope(mut body)) = response.extensions().get::<PendingEnvelope>().cloned()
    {
        if let Some(InternalDetail(detail)) = response.extensions().get::<InternalDetail>() {
            tracing::error!(status = status.as_u16(), %detail, "request failed");
        }
        body.error.request_id = Some(request_id.to_owned());
        let (parts, _) = response.into_parts();
        let mut rebuilt = (status, axum::Json(body)).into_response();
        *rebuilt.headers_mut() = parts.headers;
        rebuilt.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return rebuilt;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_WRAPPED_BODY).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if status.is_server_error() {
        if !text.is_empty() {
            tracing::error!(status = status.as_u16(), detail = %text, "request failed");
        }
        status
            .canonical_reason()
            .unwrap_or("server error")
            .to_lowercase()
    } else if text.is_empty() {
        default_message(status)
    } else {
        text
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code_for_status(status),
            message,
            request_id: Some(request_id.to_owned()),
            fields: vec![],
        },
    };
    let mut rebuilt = (status, axum::Json(body)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such route".into(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".into(),
        StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".into(),
        StatusCode::REQUEST_TIMEOUT => "request took too long".into(),
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    }
}
