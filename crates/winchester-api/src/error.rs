//! Errors as JSON: `{"error": "..."}` with a status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use winchester_storage::StorageError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong (names the parameter for a 400).
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        if e.is_retryable() {
            // An outage is logged once by the server's live tail, not per request.
            tracing::debug!(error = %e, "Request failed: the database is unavailable.");
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; try again later"));
        }
        tracing::warn!(error = %e, "Request failed in the database.");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}
