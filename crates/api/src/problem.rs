//! RFC 9457 problem details: every error the API returns has this shape.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use carrierhub_pipeline::PipelineError;
use carrierhub_store::StoreError;
use serde::Serialize;

/// An RFC 9457 problem: what went wrong, for people (`title`, `detail`) and programs
/// (`type`, `status`, and extension members such as `limit_bytes` or `retry_after_secs`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI that identifies the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "https://carrierhub.dev/problems/invalid-request")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (RFC 9457, section 3.2): more about the problem, by name. Boxed:
    /// few problems have any, and every error result carries a `Problem`.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://carrierhub.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            extensions: None,
        }
    }

    /// The problem with the extension member `name`.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions
            .get_or_insert_with(Default::default)
            .insert(name.to_owned(), value.into());
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    /// 401: no credentials, or credentials that do not hold.
    pub fn unauthenticated() -> Self {
        Self::unauthorized("this request needs an API key or a bearer token")
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            detail,
        )
    }

    /// 403: the caller is known, and its role does not allow this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable-payload",
            "The payload cannot be processed",
            detail,
        )
    }

    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed to answer; the error is in its log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("problems serialise");
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(d) => Problem::not_found(d),
            StoreError::Invalid(d) => Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", d),
            other => Problem::internal(&other),
        }
    }
}

impl From<PipelineError> for Problem {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Unreadable { .. } | PipelineError::Mapping { .. } => {
                Problem::unprocessable(e.to_string())
            }
            PipelineError::CarrierMismatch { .. } => Problem::bad_request(e.to_string()),
            PipelineError::Store(s) => s.into(),
            PipelineError::Busy(_) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", e.to_string())
            }
            PipelineError::Io(io) => Problem::internal(&io),
            PipelineError::Internal(_) => Problem::internal(&e),
            PipelineError::NoSuchSubmission(_) => Problem::not_found(e.to_string()),
            PipelineError::Interrupted(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                "Shutting down",
                e.to_string(),
            ),
        }
    }
}
