//! Why a proxied request failed, where the failure came from (downstream client, upstream
//! container, or Berth itself), whether trying another replica is safe, and the Cumulocity
//! error body each failure is answered with.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};

/// Seconds a client is asked to wait when no replica is ready yet.
pub const RETRY_AFTER_SECS: u64 = 5;
/// Seconds a client is asked to wait when too many requests are in flight: they end fast.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// Which side of the proxy a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client: bad credentials, unknown service, a broken request body.
    Downstream,
    /// The container: refused, broke the connection, answered too late.
    Upstream,
    /// Berth: no replica ready, store or configuration failure.
    Internal,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Downstream => "downstream",
            Origin::Upstream => "upstream",
            Origin::Internal => "internal",
        }
    }
}

/// What went wrong.
#[derive(Debug)]
pub enum Failure {
    /// No or bad credentials (401), or a store failure while checking them: the error the
    /// authentication gave, answered as it renders itself (the API's body).
    Authentication(Box<dyn ResponseError>),
    /// No microservice has this name or context path (404).
    UnknownService { segment: String },
    /// Several microservices the caller's tenant is subscribed to have this name or context
    /// path, none preferred (409): a quiet pick could hand one's calls to another.
    Ambiguous {
        segment: String,
        rivals: Vec<String>,
    },
    /// The microservice exists but the caller's tenant is not subscribed to it (403).
    NotSubscribed { tenant: String, application: String },
    /// Subscribed, but no replica is ready (503 with Retry-After). `deployed` is false while
    /// the supervisor has not created the deployment yet; `failure` says why it could not.
    NotReady {
        application: String,
        deployed: bool,
        failure: Option<String>,
    },
    /// The request would pass a bound on requests in flight to containers (see
    /// [`super::slots`]): 429 when it is the calling tenant's own, else 503; with Retry-After.
    Busy {
        application: String,
        /// The calling tenant.
        tenant: String,
        /// The tenant owning the microservice.
        owner: String,
        busy: super::slots::Busy,
    },
    /// Every ready replica refused the connection (502).
    UpstreamRefused { instance: String, detail: String },
    /// The container broke the connection or sent something that is not HTTP (502).
    UpstreamBroken { instance: String, detail: String },
    /// The container did not answer within the configured proxy timeout (504).
    UpstreamTimeout { instance: String, after: Duration },
    /// The client's request could not be forwarded (400): a body that broke off, a bad path.
    BadRequest { detail: String },
    /// A failure inside Berth (500); the detail is logged, not sent.
    Internal { detail: String },
}

/// A failed proxied request.
#[derive(Debug)]
pub struct ProxyError {
    pub failure: Failure,
    /// True when nothing reached the upstream yet, so another replica may be tried.
    pub retry_safe: bool,
}

impl ProxyError {
    pub fn new(failure: Failure) -> ProxyError {
        ProxyError {
            failure,
            retry_safe: false,
        }
    }

    pub fn retry_safe(mut self, safe: bool) -> ProxyError {
        self.retry_safe = safe;
        self
    }

    pub fn origin(&self) -> Origin {
        match &self.failure {
            Failure::Authentication(e) if e.status_code().is_server_error() => Origin::Internal,
            Failure::Authentication(_)
            | Failure::UnknownService { .. }
            | Failure::Ambiguous { .. }
            | Failure::NotSubscribed { .. }
            | Failure::BadRequest { .. } => Origin::Downstream,
            Failure::UpstreamRefused { .. }
            | Failure::UpstreamBroken { .. }
            | Failure::UpstreamTimeout { .. } => Origin::Upstream,
            Failure::NotReady { .. } | Failure::Busy { .. } | Failure::Internal { .. } => {
                Origin::Internal
            }
        }
    }

    /// A short name of the failure for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match &self.failure {
            Failure::Authentication(_) => "unauthenticated",
            Failure::UnknownService { .. } => "unknown_service",
            Failure::Ambiguous { .. } => "ambiguous",
            Failure::NotSubscribed { .. } => "not_subscribed",
            Failure::NotReady { .. } => "not_ready",
            Failure::Busy { .. } => "busy",
            Failure::UpstreamRefused { .. } => "refused",
            Failure::UpstreamBroken { .. } => "broken",
            Failure::UpstreamTimeout { .. } => "timeout",
            Failure::BadRequest { .. } => "bad_request",
            Failure::Internal { .. } => "internal",
        }
    }

    fn error_and_message(&self) -> (&'static str, String) {
        match &self.failure {
            Failure::Authentication(_) => ("security/Unauthorized", String::new()),
            Failure::UnknownService { segment } => (
                "service/Not Found",
                format!("There is no microservice with name or context path '{segment}'"),
            ),
            Failure::Ambiguous { segment, rivals } => (
                "service/Conflict",
                format!(
                    "'{segment}' names more than one microservice this tenant is subscribed to ({}); each needs a context path of its own to be called",
                    rivals.join(", ")
                ),
            ),
            Failure::NotSubscribed {
                tenant,
                application,
            } => (
                "service/Forbidden",
                format!("Tenant {tenant} is not subscribed to microservice {application}"),
            ),
            Failure::NotReady {
                application,
                deployed: true,
                ..
            } => (
                "service/Service Unavailable",
                format!("No instance of microservice {application} is ready yet; retry later"),
            ),
            Failure::NotReady {
                application,
                deployed: false,
                failure: Some(why),
            } => (
                "service/Service Unavailable",
                format!("Microservice {application} cannot be deployed: {why}"),
            ),
            Failure::NotReady {
                application,
                deployed: false,
                ..
            } => (
                "service/Service Unavailable",
                format!("Microservice {application} is not deployed yet; retry later"),
            ),
            Failure::Busy {
                busy: super::slots::Busy::Platform { max },
                ..
            } => (
                "service/Service Unavailable",
                format!(
                    "The platform has {max} requests in flight to microservices, as many as it takes at once; retry later"
                ),
            ),
            Failure::Busy {
                tenant,
                busy: super::slots::Busy::Caller { max },
                ..
            } => (
                "service/Too Many Requests",
                format!(
                    "Tenant {tenant} has {max} requests in flight to microservices, as many as one tenant may have at once (a quarter of the platform's); retry later"
                ),
            ),
            Failure::Busy {
                application,
                busy: super::slots::Busy::Deployment { max },
                ..
            } => (
                "service/Service Unavailable",
                format!(
                    "Microservice {application} has {max} requests in flight, as many as one deployment may have at once (a quarter of the platform's); retry later"
                ),
            ),
            Failure::Busy {
                owner,
                busy: super::slots::Busy::Owner { max },
                ..
            } => (
                "service/Service Unavailable",
                format!(
                    "The microservices of tenant {owner} have {max} requests in flight, as many as one tenant's may have at once (a quarter of the platform's); retry later"
                ),
            ),
            Failure::UpstreamRefused { instance, .. } => (
                "service/Bad Gateway",
                format!("Every ready instance refused the connection (last: {instance})"),
            ),
            Failure::UpstreamBroken { instance, .. } => (
                "service/Bad Gateway",
                format!("Instance {instance} broke the connection before answering"),
            ),
            Failure::UpstreamTimeout { instance, after } => (
                "service/Gateway Timeout",
                format!(
                    "Instance {instance} did not answer within {} ms",
                    after.as_millis()
                ),
            ),
            Failure::BadRequest { detail } => ("service/Bad Request", detail.clone()),
            Failure::Internal { .. } => ("general/internalError", "Internal server error".into()),
        }
    }

    /// The replica to eject from routing for this failure, and why: every failure of the
    /// container itself (refused, reset or garbled, no answer in time), as nginx counts
    /// `error timeout` and Envoy its gateway failures.
    pub fn ejects(&self) -> Option<(&str, String)> {
        match &self.failure {
            Failure::UpstreamRefused { instance, detail } => {
                Some((instance, format!("connection failed: {detail}")))
            }
            Failure::UpstreamBroken { instance, detail } => {
                Some((instance, format!("connection broken: {detail}")))
            }
            Failure::UpstreamTimeout { instance, after } => Some((
                instance,
                format!("no response within {} ms", after.as_millis()),
            )),
            _ => None,
        }
    }

    /// The seconds of `Retry-After` for a failure that passes by itself.
    fn retry_after(&self) -> Option<u64> {
        match &self.failure {
            Failure::NotReady { .. } => Some(RETRY_AFTER_SECS),
            Failure::Busy { .. } => Some(BUSY_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    fn detail(&self) -> Option<&str> {
        match &self.failure {
            Failure::UpstreamRefused { detail, .. }
            | Failure::UpstreamBroken { detail, .. }
            | Failure::Internal { detail } => Some(detail),
            _ => None,
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Failure::Authentication(e) = &self.failure {
            return write!(f, "{} ({})", e, self.origin().as_str());
        }
        let (error, message) = self.error_and_message();
        write!(
            f,
            "{} {error}: {message} ({}",
            self.status_code().as_u16(),
            self.origin().as_str()
        )?;
        if let Some(detail) = self.detail() {
            write!(f, ": {detail}")?;
        }
        f.write_str(")")
    }
}

impl ProxyError {
    /// The answer for hyper's server (the front's direct path, which never authenticates), in
    /// the API's error shape ([`crate::edge::error`]).
    pub fn to_http(&self) -> http::Response<String> {
        let (error, message) = self.error_and_message();
        crate::edge::error::hyper_response(self.status_code(), error, &message, self.retry_after())
    }
}

impl ResponseError for ProxyError {
    fn status_code(&self) -> StatusCode {
        match &self.failure {
            Failure::Authentication(e) => e.status_code(),
            Failure::UnknownService { .. } => StatusCode::NOT_FOUND,
            Failure::Ambiguous { .. } => StatusCode::CONFLICT,
            Failure::NotSubscribed { .. } => StatusCode::FORBIDDEN,
            Failure::Busy {
                busy: super::slots::Busy::Caller { .. },
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            Failure::NotReady { .. } | Failure::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Failure::UpstreamRefused { .. } | Failure::UpstreamBroken { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Failure::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Failure::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Failure::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Failure::Authentication(e) = &self.failure {
            return e.error_response();
        }
        let (error, message) = self.error_and_message();
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(crate::edge::media::media_type("error"));
        if let Some(secs) = self.retry_after() {
            response.insert_header((RETRY_AFTER, secs));
        }
        response.body(crate::edge::error::body_text(error, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status_origin_and_error() {
        let cases = [
            (
                Failure::UnknownService {
                    segment: "x".into(),
                },
                404,
                Origin::Downstream,
                "service/Not Found",
            ),
            (
                Failure::NotSubscribed {
                    tenant: "t1".into(),
                    application: "a".into(),
                },
                403,
                Origin::Downstream,
                "service/Forbidden",
            ),
            (
                Failure::NotReady {
                    application: "a".into(),
                    deployed: true,
                    failure: None,
                },
                503,
                Origin::Internal,
                "service/Service Unavailable",
            ),
            (
                Failure::UpstreamRefused {
                    instance: "i".into(),
                    detail: "refused".into(),
                },
                502,
                Origin::Upstream,
                "service/Bad Gateway",
            ),
            (
                Failure::UpstreamTimeout {
                    instance: "i".into(),
                    after: Duration::from_secs(1),
                },
                504,
                Origin::Upstream,
                "service/Gateway Timeout",
            ),
        ];
        for (failure, status, origin, error) in cases {
            let err = ProxyError::new(failure);
            // Exactly the container's own failures eject it from routing.
            assert_eq!(err.ejects().is_some(), origin == Origin::Upstream, "{err}");
            assert_eq!(err.status_code().as_u16(), status, "{err}");
            assert_eq!(err.origin(), origin, "{err}");
            assert_eq!(err.error_and_message().0, error, "{err}");
            let response = err.error_response();
            assert_eq!(
                response.headers().contains_key(RETRY_AFTER),
                status == 503,
                "{err}"
            );
        }
    }
}
