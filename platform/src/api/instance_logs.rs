//! `GET /application/applications/{id}/logs/{instance}?since=&until=&tail=`: one instance's
//! stdout and stderr as text, with timestamps (the live stream is `console::log_stream`).
//!
//! Each answer is gathered in memory (up to
//! [`MAX_LOG_TEXT`](crate::runtime::log_text::MAX_LOG_TEXT)) and makes the engine read the
//! container's whole log file (up to 30 MB) when no `tail` is given, so answers in progress are
//! bounded: [`PER_TENANT`] per tenant (429 past it, as the live stream refuses) and [`TOTAL`] on
//! the platform (503), held until the answer has been handed to the connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::{HttpResponse, web};
use bytes::Bytes;

use super::AppState;
use super::applications::{Access, authorized_id, instance_container};
use super::error::ApiError;
use crate::auth::principal::Principal;
use crate::counts::{Over, Place, Quota};

/// Log answers one tenant may have in progress at once (a person reads one at a time; a
/// script polling several instances waits its turn).
pub const PER_TENANT: usize = 4;
/// Log answers in progress on the whole platform: at most `TOTAL × MAX_LOG_TEXT` (128 MiB) of
/// log text in memory, whatever the number of tenants.
pub const TOTAL: usize = 32;
/// Seconds a refused client is told to wait.
const RETRY_AFTER_SECS: u64 = 5;

/// The answers in progress, shared by every worker and both listeners.
pub type Snapshots = Arc<Quota<String>>;

pub fn snapshots() -> Snapshots {
    Quota::new(TOTAL, PER_TENANT)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/application/applications/{id}/logs/{instance}",
        web::get().to(logs),
    );
}

/// A place for one answer of `tenant`'s, or the refusal naming the bound it met.
fn admit(snapshots: &Snapshots, tenant: &str) -> Result<Place<String>, ApiError> {
    snapshots.take(tenant.to_owned()).map_err(|over| match over {
        Over::Key { max } => ApiError::too_many_requests(
            "applications",
            &format!(
                "At most {max} log requests may be in progress per tenant; retry once one has finished, or ask for less with tail, since or until"
            ),
            RETRY_AFTER_SECS,
        ),
        // Load shed, counted rather than logged one by one.
        Over::Total { max } => ApiError::shedding(
            "applications",
            &format!("The platform has {max} log requests in progress; retry once one has finished"),
        )
        .with_retry_after(RETRY_AFTER_SECS),
    })
}

/// `since`/`until`: RFC 3339 or Unix seconds; 0 (unbounded) when absent.
fn time(query: &HashMap<String, String>, name: &str) -> Result<i64, ApiError> {
    let Some(text) = query.get(name) else {
        return Ok(0);
    };
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            ApiError::invalid(
                "applications",
                &format!(
                    "{name} must be RFC 3339 (2026-01-31T12:00:00Z) or Unix seconds, got {text:?}"
                ),
            )
        })
}

async fn logs(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (id_text, instance) = path.into_inner();
    let id = authorized_id(&principal, Access::Read, &id_text)?;
    let (since, until) = (time(&query, "since")?, time(&query, "until")?);
    let tail = match query.get("tail") {
        None => None,
        Some(t) => Some(t.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "applications",
                &format!("tail must be a line count, got {t:?}"),
            )
        })?),
    };
    let container = instance_container(&state, &principal, id, &instance).await?;
    let place = admit(&state.log_snapshots, &principal.tenant)?;
    let text = state
        .runtime
        .logs(&container, since, until, tail)
        .await
        .map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(Held {
            bytes: Bytes::from(text),
            _place: place,
        }))
}

/// An answer that keeps its place until the connection has taken all of it (actix polls a
/// body again only once most of what it gave has been written), so a client reading slowly
/// still counts.
struct Held {
    bytes: Bytes,
    _place: Place<String>,
}

impl MessageBody for Held {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.bytes.len() as u64)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        let bytes = std::mem::take(&mut self.get_mut().bytes);
        Poll::Ready((!bytes.is_empty()).then_some(Ok(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::http::header::RETRY_AFTER;

    /// The refusal's status, `Retry-After` and body.
    async fn refusal(err: ApiError) -> (StatusCode, Option<String>, String) {
        let response = actix_web::ResponseError::error_response(&err);
        let retry = response
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status();
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        (status, retry, String::from_utf8(body.to_vec()).unwrap())
    }

    #[actix_web::test]
    async fn answers_in_progress_are_bounded_per_tenant_and_in_all() {
        let snapshots = snapshots();
        let t1: Vec<_> = (0..PER_TENANT)
            .map(|_| admit(&snapshots, "t1").unwrap())
            .collect();
        let (status, retry, body) = refusal(admit(&snapshots, "t1").unwrap_err()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("5"));
        assert!(body.contains("applications/Too Many Requests"), "{body}");
        assert!(
            body.contains(&format!("At most {PER_TENANT} log requests")),
            "{body}"
        );

        // Other tenants fill the platform's total; then even a tenant with none is refused.
        let others: Vec<_> = (0..TOTAL - PER_TENANT)
            .map(|i| admit(&snapshots, &format!("t{}", 2 + i / PER_TENANT)).unwrap())
            .collect();
        let (status, retry, body) = refusal(admit(&snapshots, "fresh").unwrap_err()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("5"));
        assert!(
            body.contains(&format!("The platform has {TOTAL} log requests")),
            "{body}"
        );

        // Places come back when answers are done.
        drop(others);
        assert!(admit(&snapshots, "fresh").is_ok());
        drop(t1);
        assert!(admit(&snapshots, "t1").is_ok());
    }

    #[actix_web::test]
    async fn an_answer_keeps_its_place_until_its_body_is_taken() {
        let snapshots = snapshots();
        let body = Held {
            bytes: Bytes::from_static(b"log\n"),
            _place: admit(&snapshots, "t1").unwrap(),
        };
        let _others: Vec<_> = (1..PER_TENANT)
            .map(|_| admit(&snapshots, "t1").unwrap())
            .collect();
        assert!(admit(&snapshots, "t1").is_err(), "the body holds one place");
        assert_eq!(body.size(), BodySize::Sized(4));
        let bytes = actix_web::body::to_bytes(body).await.unwrap();
        assert_eq!(bytes, "log\n");
        assert!(admit(&snapshots, "t1").is_ok(), "given back with the body");
    }

    #[test]
    fn times_are_rfc3339_or_unix_seconds() {
        let q = |v: &str| HashMap::from([("since".to_owned(), v.to_owned())]);
        assert_eq!(time(&HashMap::new(), "since").unwrap(), 0);
        assert_eq!(time(&q("1700000000"), "since").unwrap(), 1_700_000_000);
        assert_eq!(time(&q("1970-01-01T00:01:00Z"), "since").unwrap(), 60);
        assert!(time(&q("yesterday"), "since").is_err());
    }
}
