//! Request extractors whose rejections are [`ApiError`]s, so a malformed body or query gets
//! the error envelope with the offending field named, and the checks every text input passes
//! before any handler sees it (NUL-free JSON strings, control-free path segments and query
//! values): in one place, so that no handler can forget them.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use watchgrid_core::validate;

/// `Json<T>` with envelope rejections: 400 for malformed JSON, 413 for a body over the limit
/// (also a chunked one), 415 for a wrong content type, 422 naming the field for a body that is
/// not an object, holds a NUL, or has a wrong or missing field.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(JsonRejection::MissingJsonContentType(_)) => {
                return Err(ApiError::UnsupportedMediaType)
            }
            Err(other) if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge)
            }
            Err(other) => return Err(ApiError::BadRequest(clean(&other.body_text()))),
        };
        // serde lets a struct be written as an array of its fields; every body is an object.
        if !value.is_object() {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        }
        validate::json_text(&value).map_err(|(field, reason)| ApiError::invalid(field, reason))?;
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(parsed) => Ok(ApiJson(parsed)),
            Err(err) => {
                let path = err.path().to_string();
                let reason = err.into_inner().to_string();
                let field = if path == "." { field_of(&reason) } else { path };
                Err(ApiError::invalid(field, reason))
            }
        }
    }
}

/// `Query<T>` with envelope rejections (422 naming the parameter).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(err)) => {
                let reason = err.body_text();
                Err(ApiError::invalid(field_of(&reason), clean(&reason)))
            }
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

/// Middleware: refuse a request whose path segments or query values (decoded) hold a control
/// character, with 422 naming the path parameter or query parameter, before the handler or a
/// database query sees it. Unmatched routes are left to the 404 fallback.
pub async fn refuse_control_characters(request: Request, next: Next) -> Response {
    match check_target(&request) {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

fn check_target(request: &Request) -> Result<(), ApiError> {
    let Some(template) = request.extensions().get::<MatchedPath>() else {
        return Ok(());
    };
    let uri = request.uri();
    for (pattern, raw) in template.as_str().split('/').zip(uri.path().split('/')) {
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        if let Err(reason) = validate::plain_text(&decoded) {
            let field = pattern
                .strip_prefix('{')
                .and_then(|p| p.strip_suffix('}'))
                .unwrap_or("path");
            return Err(ApiError::invalid(field, reason));
        }
    }
    for (name, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if let Err(reason) = validate::plain_text(&name).and(validate::plain_text(&value)) {
            return Err(ApiError::invalid(validate::bounded(&name), reason));
        }
    }
    Ok(())
}

/// The credential of an `Authorization: Bearer <credential>` header. The scheme is matched
/// without regard to case (RFC 7235 §2.1: `bearer` is as good as `Bearer`).
pub fn bearer_credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// serde names a missing field in backticks ("missing field `username`"); axum prefixes other
/// errors with the field's path ("role: unknown variant `boss`").
fn field_of(reason: &str) -> String {
    let reason = clean(reason);
    if let Some(rest) = reason.split("field `").nth(1) {
        if let Some((name, _)) = rest.split_once('`') {
            return validate::bounded(name);
        }
    }
    match reason.split_once(": ") {
        Some((path, _)) if !path.is_empty() && path != "." && !path.contains(' ') => {
            validate::bounded(path)
        }
        _ => "body".to_owned(),
    }
}

/// Drop axum's generic prefix, keep serde's explanation.
fn clean(reason: &str) -> String {
    reason
        .trim_start_matches("Failed to deserialize the JSON body into the target type: ")
        .trim_start_matches("Failed to parse the request body as JSON: ")
        .trim_start_matches("Failed to deserialize query string: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn fields_are_found_in_serde_messages() {
        assert_eq!(
            field_of("missing field `username` at line 1 column 2"),
            "username"
        );
        assert_eq!(
            field_of("role: unknown variant `boss`, expected one of `viewer`"),
            "role"
        );
        assert_eq!(field_of("expected value at line 1 column 1"), "body");
    }

    #[test]
    fn bearer_scheme_ignores_case() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            bearer_credential(&headers).map(str::to_owned)
        };
        for good in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            assert_eq!(with(good).as_deref(), Some("abc"), "{good}");
        }
        for bad in ["Basic abc", "Bearer", "Bearer ", "Bearerabc"] {
            assert_eq!(with(bad), None, "{bad}");
        }
    }
}
