//! [`ApiError`]: the one place errors become HTTP responses. The body is
//! `{"error":{"code":"job_not_found","number":2001,"message":"…"}}`; the status comes
//! from the code table. Internal details go to the log, never to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobwire_core::HubError;
use jobwire_proto::{ErrorCode, InputError};
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (rate limits).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After: <secs>` header to the answer.
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    /// The JSON body (also used inside WebSocket error frames' siblings).
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "number": self.code.number(), "message": self.message}})
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        if let HubError::Storage(detail) = &e {
            tracing::error!(%detail, "storage error");
        }
        ApiError::new(e.code(), e.client_message())
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> ApiError {
        ApiError::new(e.code, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
