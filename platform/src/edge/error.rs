//! The one API error type and its mapping to Cumulocity error bodies
//! (`{"error": "<resource>/<kind>", "message", "info"}`, `…error+json`). Internal details are
//! logged, never sent; only 5xx is logged at error level.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use super::media;
use crate::store::StoreError;

/// Where clients can read about error bodies.
const INFO_URL: &str =
    "https://cumulocity.com/api/core/#section/REST-implementation/HTTP-response-codes";

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    message: String,
    /// Detail for the log only (internal errors).
    detail: Option<String>,
    /// Seconds for a `Retry-After` header (429, 503).
    retry_after: Option<u64>,
    /// Load shed on purpose (see [`ApiError::shedding`]): counted, not logged as an error.
    shed: bool,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    info: &'a str,
}

/// The Cumulocity error body (`{"error","message","info"}`): the one shape of every refusal,
/// the API's and the proxy's alike.
pub fn body_text(error: &str, message: &str) -> String {
    let body = ErrorBody {
        error,
        message,
        info: INFO_URL,
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// A refusal as hyper's server sends it (the front, the proxy's direct path): the error body,
/// its media type and `Retry-After`.
pub fn hyper_response(
    status: StatusCode,
    error: &str,
    message: &str,
    retry_after: Option<u64>,
) -> http::Response<String> {
    let mut response = http::Response::new(body_text(error, message));
    *response.status_mut() = http::StatusCode::from_u16(status.as_u16())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if let Ok(value) = http::HeaderValue::from_str(&media::media_type("error")) {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    if let Some(seconds) = retry_after {
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
    response
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, message: &str) -> ApiError {
        ApiError {
            status,
            error: error.to_owned(),
            message: message.to_owned(),
            detail: None,
            retry_after: None,
            shed: false,
        }
    }

    /// 503 with `Retry-After: 1` for a request refused to shed load (a full queue). Anyone can
    /// cause it, so it is counted and summarized (`client_noise`), not logged per request.
    pub fn shedding(resource: &str, message: &str) -> ApiError {
        ApiError {
            shed: true,
            ..ApiError::unavailable(resource, message, "queue full")
        }
        .with_retry_after(1)
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "security/Unauthorized", message)
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "security/Forbidden",
            "Access is denied.",
        )
    }

    /// 403 saying which right is missing (the caller may see what they lack).
    pub fn forbidden_because(message: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "security/Forbidden", message)
    }

    pub fn not_found(resource: &str, message: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            &format!("{resource}/Not Found"),
            message,
        )
    }

    pub fn bad_request(resource: &str, message: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            &format!("{resource}/Bad Request"),
            message,
        )
    }

    pub fn conflict(resource: &str, message: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            &format!("{resource}/Duplicate"),
            message,
        )
    }

    pub fn invalid(resource: &str, message: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{resource}/Invalid Data"),
            message,
        )
    }

    pub fn too_large(resource: &str, message: &str) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("{resource}/Payload Too Large"),
            message,
        )
    }

    pub fn unavailable(resource: &str, message: &str, detail: &str) -> ApiError {
        ApiError {
            detail: Some(detail.to_owned()),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{resource}/Service Unavailable"),
                message,
            )
        }
    }

    /// 429 with `Retry-After`: the caller must wait `retry_after` seconds.
    pub fn too_many_requests(resource: &str, message: &str, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("{resource}/Too Many Requests"),
                message,
            )
        }
    }

    /// Adds `Retry-After` (seconds) to the response.
    pub fn with_retry_after(self, seconds: u64) -> ApiError {
        ApiError {
            retry_after: Some(seconds),
            ..self
        }
    }

    /// A failure that is our fault; `detail` goes to the log, not to the client.
    pub fn internal(detail: &str) -> ApiError {
        ApiError {
            detail: Some(detail.to_owned()),
            ..ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "general/internalError",
                "Internal server error",
            )
        }
    }

    /// Maps a store error for `resource`: conflicts → 409, missing → 404, rule violations → 422.
    pub fn store(resource: &'static str) -> impl Fn(StoreError) -> ApiError {
        move |err| match err {
            StoreError::Conflict(m) => ApiError::conflict(resource, &m),
            StoreError::NotFound(m) => ApiError::not_found(resource, &m),
            StoreError::Invalid(m) => ApiError::invalid(resource, &m),
            other => ApiError::internal(&other.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The Cumulocity error body (`{"error","message","info"}`).
    fn body_text(&self) -> String {
        body_text(&self.error, &self.message)
    }

    /// The same answer for hyper's server (the front answering before the app sees a request),
    /// with the API's security headers (over HTTPS: the front only serves HTTPS).
    pub fn to_http(&self) -> http::Response<String> {
        let mut response =
            hyper_response(self.status, &self.error, &self.message, self.retry_after);
        let headers = response.headers_mut();
        for (name, value) in [
            (http::header::CACHE_CONTROL, "no-store"),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (http::header::STRICT_TRANSPORT_SECURITY, super::HSTS),
        ] {
            headers.insert(name, http::HeaderValue::from_static(value));
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error,
            self.message
        )
    }
}

/// A manifest over a per-container maximum, with a probe the runtime cannot run, or a root
/// image is invalid for this platform (422);
/// a tenant over its sums is refused what it asked (403).
impl From<crate::limits::LimitError> for ApiError {
    fn from(err: crate::limits::LimitError) -> ApiError {
        use crate::limits::LimitError;
        match &err {
            LimitError::Tenant { .. } => ApiError::new(
                StatusCode::FORBIDDEN,
                "applications/Forbidden",
                &err.to_string(),
            ),
            LimitError::Container { .. }
            | LimitError::ProbePort { .. }
            | LimitError::ExecProbe { .. }
            | LimitError::RootImage { .. } => ApiError::invalid("applications", &err.to_string()),
        }
    }
}

/// A browser's request for another site's page, refused before it reaches a handler or a
/// service (403).
impl From<super::cross_site::CrossSite> for ApiError {
    fn from(err: super::cross_site::CrossSite) -> ApiError {
        ApiError::forbidden_because(&err.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.shed {
            tracing::warn!(target: crate::client_noise::SHED_TARGET, "{}", self.message);
        } else if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.error, detail = self.detail.as_deref().unwrap_or(""), "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.error, message = %self.message, "request rejected");
        }
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds));
        }
        response
            .content_type(media::media_type("error"))
            .body(self.body_text())
    }
}
