//! Request extraction that answers malformed input with [`ApiError`]s from the code
//! table instead of axum's plain-text rejections.

use crate::error::ApiError;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use bytes::Bytes;
use jobwire_proto::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Query string parameters; a bad one is `bad_request` (400).
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
    }
}

/// Path parameters; one that does not decode (e.g. percent-encoded bytes that are not
/// UTF-8) is `bad_request` (400) in the JSON error envelope.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, st)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
    }
}

/// Parses a request body as JSON: too big is `payload_too_large` (413), not JSON is
/// `malformed_json` (400). An empty body is `null`.
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "request body exceeds the size limit",
            )
        } else {
            ApiError::new(ErrorCode::BadRequest, e.body_text())
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("body is not valid JSON: {e}"),
        )
    })
}
