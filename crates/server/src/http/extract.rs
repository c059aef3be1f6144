//! Request extractors whose rejections are [`ApiError`]s, so a malformed body or query gets
//! the error envelope with the offending field named.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// `Json<T>` with envelope rejections: 400 for malformed JSON, 415 for a wrong content type,
/// 422 naming the field for a well-formed body with a wrong or missing field.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::JsonDataError(err)) => {
                let reason = err.body_text();
                Err(ApiError::invalid(field_of(&reason), clean(&reason)))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType),
            Err(other) => Err(ApiError::BadRequest(clean(&other.body_text()))),
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

/// serde names a missing field in backticks ("missing field `username`"); axum prefixes other
/// errors with the field's path ("role: unknown variant `boss`").
fn field_of(reason: &str) -> String {
    let reason = clean(reason);
    if let Some(rest) = reason.split("field `").nth(1) {
        if let Some((name, _)) = rest.split_once('`') {
            return name.to_owned();
        }
    }
    match reason.split_once(": ") {
        Some((path, _)) if !path.is_empty() && path != "." && !path.contains(' ') => {
            path.to_owned()
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
    use super::field_of;

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
}
