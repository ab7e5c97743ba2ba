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
    /// Seconds a client should wait before trying again (`Retry-After`).
    retry_after: Option<u32>,
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
            retry_after: None,
        }
    }

    /// The same error, saying when to try again.
    pub(super) fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
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
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let (status, code) = match &e {
            StoreError::RunNotFound(_)
            | StoreError::StepNotFound { .. }
            | StoreError::ComponentNotFound(_)
            | StoreError::QueueNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            StoreError::Config(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            StoreError::AlreadyFinished { .. }
            | StoreError::RunExists(_)
            | StoreError::Queued { .. }
            | StoreError::EventIdTaken { .. }
            | StoreError::ComponentInUse { .. } => (StatusCode::CONFLICT, "conflict"),
            // The database is busy for now (another process's write lock,
            // a deadlock or serialization failure that outlived the
            // writer's retries, a lost connection): try again.
            _ if e.is_transient() => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let error = ApiError::new(status, code, durable::errors::chain(&e));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return error.retry_after(1);
        }
        error
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
                "{} (the server takes uploads up to --max-body-mb, JSON bodies up to \
                 --max-input-bytes and 64 KiB more)",
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

/// A route's path parameters, like axum's `Path`, whose refusal (a
/// segment that is not UTF-8: `/v1/runs/%FF`) is an [`ApiError`] in the
/// API's one JSON shape rather than axum's plain text.
pub(super) struct PathParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for PathParams<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(PathParams(t)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use durable::store::StoreError;

    #[test]
    fn a_busy_database_is_503_with_retry_after_never_500() {
        for e in [
            StoreError::Transient("deadlock detected".into()),
            StoreError::Locked {
                context: "committing".into(),
            },
        ] {
            let response = ApiError::from(e).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
                Some("1")
            );
        }
        let other = ApiError::from(StoreError::Shared("a bug".into())).into_response();
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(other.headers().get("retry-after").is_none());
    }
}
