//! The one error shape, `{"error": {"code": "...", "message": "..."}}`, and
//! the helpers that answer JSON.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use durable::store::StoreError;
use serde_json::{Value, json};

/// An error answer.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl std::fmt::Display,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }

    pub(super) fn bad_request(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(super) fn invalid(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let (status, code) = match &e {
            StoreError::RunNotFound(_) | StoreError::StepNotFound { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            StoreError::AlreadyFinished { .. } | StoreError::RunExists(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            StoreError::Locked { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, crate::cli::run::chain(&e))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> ApiError {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        ApiError::new(
            e.status(),
            code,
            format!(
                "{} (the server takes bodies up to --max-body-mb)",
                e.body_text()
            ),
        )
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(super) fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, axum::Json(body)).into_response())
}

/// A JSON body of type `T`.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))
}
