//! The authenticating reverse proxy: `METHOD /service/<contextPath or name>/<rest>` is
//! authenticated (Basic, Bearer, or the `authorization` cookie with `X-XSRF-TOKEN`), checked
//! against the caller tenant's subscriptions, and forwarded with the prefix stripped to a
//! ready replica of the caller's deployment (the tenant's own for PER_TENANT, the shared one for
//! MULTI_TENANT), bodies streamed both ways and WebSocket upgrades tunnelled.
//!
//! Invariants: only replicas the supervisor published as ready receive traffic; Berth sets
//! the `X-Forwarded-*` headers itself; every failure answers a Cumulocity error body that
//! names what happened (401, 403 not subscribed, 404 unknown service, 503 + Retry-After,
//! 502, 504) and is logged with its origin.

mod basic_tenant;
mod body;
pub mod direct;
pub mod error;
mod headers;
mod pool;
mod request_body;
mod resolve;
pub use resolve::may_write;
pub use upstream::Settings;
pub mod slots;
pub mod trace;
mod upstream;
mod websocket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header::HeaderValue;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use tracing::Instrument;

use error::{Failure, ProxyError};
use headers::{Forwarded, X_FORWARDED_FOR, X_REQUEST_ID};
use resolve::ServiceCache;
use trace::RequestTrace;

/// What the proxy needs of the rest of the platform, so that it depends on no API type:
/// callers whose credentials were verified (the credential cache), the store for resolving
/// services, the ready replicas.
pub trait Platform: Send + Sync + 'static {
    /// The caller a credential cache key stands for, if verified and not expired.
    fn cached_caller(&self, key: &[u8; 32]) -> Option<Arc<crate::auth::principal::Principal>>;
    fn store(&self) -> &crate::store::Store;
    fn routing(&self) -> &crate::routing::RoutingTable;
}

/// Paths under this prefix are proxied.
pub const SERVICE_PREFIX: &str = "/service/";

/// The proxy's shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    services: Arc<ServiceCache>,
    settings: upstream::Settings,
    /// Requests in flight to containers, bounded for the platform and per deployment.
    slots: Arc<slots::Slots>,
    /// Random per process, so request ids stay unique across restarts.
    id_prefix: String,
    next_id: AtomicU64,
    access_log: trace::AccessLog,
}

/// What each worker's routes see: the shared state, the platform, and the worker's own
/// upstream client.
struct Worker {
    shared: Arc<Shared>,
    platform: Arc<dyn Platform>,
    client: upstream::Client,
}

impl Proxy {
    /// `timeout`: how long an upstream may take to answer (start of its response) before the
    /// client gets a 504; `connect_timeout` and `eject_period`: passive health (see
    /// [`upstream`]); `in_flight`: at most this many requests at once to containers, a quarter
    /// of them to one deployment ([`slots`]). Installs the metrics recorder; call inside the
    /// Tokio runtime.
    pub fn new(settings: Settings, access_log: trace::AccessLog, in_flight: usize) -> Proxy {
        crate::series::install();
        let id_prefix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        Proxy {
            shared: Arc::new(Shared {
                services: Arc::new(ServiceCache::default()),
                settings,
                slots: slots::Slots::new(slots::SlotLimits::of(in_flight)),
                id_prefix,
                next_id: AtomicU64::new(1),
                access_log,
            }),
        }
    }

    /// Middleware for every App serving the platform API: writes invalidate the cached
    /// `/service` resolutions.
    pub fn invalidate_on_write(&self) -> resolve::Invalidate {
        resolve::Invalidate(Arc::clone(&self.shared.services))
    }

    /// Registers `/service/…` (called once per worker: each gets its client).
    pub fn configure(&self, platform: Arc<dyn Platform>) -> impl FnOnce(&mut web::ServiceConfig) {
        let worker = Worker {
            shared: Arc::clone(&self.shared),
            platform,
            client: upstream::client(self.shared.settings, Arc::clone(&self.shared.slots)),
        };
        move |cfg| {
            cfg.app_data(worker)
                // A scope matches its static prefix without a regex (this is the hot path).
                .service(web::scope("/service").default_service(web::to(forward)));
        }
    }
}

impl Shared {
    /// A new request's id and its number.
    fn request_id(&self) -> (HeaderValue, u64) {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = HeaderValue::from_str(&format!("{}-{n:x}", self.id_prefix))
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        (id, n)
    }
}

/// The handler of every `/service/…` request.
async fn forward(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let Some(worker) = req.app_data::<Worker>() else {
        return ProxyError::new(Failure::Internal {
            detail: "proxy state missing".into(),
        })
        .error_response();
    };
    let (request_id, sequence) = worker.shared.request_id();
    let mut trace = RequestTrace::start(request_id, sequence, worker.shared.access_log);
    let span = trace.span.clone();
    let outcome = handle(&req, payload, worker, &mut trace)
        .instrument(span)
        .await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(error) => {
            trace.failed(
                &error,
                error.origin() == error::Origin::Downstream,
                error.retry_safe,
            );
            error.error_response()
        }
    };
    let status = response.status().as_u16();
    let elapsed = trace.finish(req.method().as_str(), req.path(), status);
    match trace.route() {
        Some(route) => route.metrics.record(status, elapsed),
        None => crate::series::apps::unrouted().record(status, elapsed),
    }
    response
        .headers_mut()
        .insert(X_REQUEST_ID, trace.request_id.clone());
    response
}

/// `/service/<segment><rest>` split into the segment, the prefix and the upstream path.
fn split_service_path(path: &str) -> Option<(&str, &str, &str)> {
    let after = path.strip_prefix(SERVICE_PREFIX)?;
    let end = after.find('/').unwrap_or(after.len());
    let segment = &after[..end];
    if segment.is_empty() {
        return None;
    }
    let prefix = &path[..SERVICE_PREFIX.len() + end];
    let rest = &after[end..];
    Some((segment, prefix, if rest.is_empty() { "/" } else { rest }))
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    worker: &Worker,
    trace: &mut RequestTrace,
) -> Result<HttpResponse, ProxyError> {
    let platform = &worker.platform;
    let path = req.uri().path();
    let (segment, prefix, rest) = split_service_path(path).ok_or_else(|| {
        ProxyError::new(Failure::UnknownService {
            segment: String::new(),
        })
    })?;
    let principal = crate::auth::principal::authenticate(req)
        .await
        .map_err(|e| ProxyError::new(Failure::Authentication(Box::new(e))))?;
    trace.authenticated(&principal);
    let route = worker
        .shared
        .services
        .resolve(
            platform.store(),
            platform.routing().catalog(),
            &principal.tenant,
            segment,
        )
        .await
        .map_err(|e| {
            ProxyError::new(Failure::Internal {
                detail: format!("resolving /service/{segment}: {e}"),
            })
        })?
        .ok_or_else(|| {
            ProxyError::new(Failure::UnknownService {
                segment: segment.to_owned(),
            })
        })?;
    trace.routed(&route);
    if !route.target.caller_subscribed {
        return Err(ProxyError::new(Failure::NotSubscribed {
            tenant: principal.tenant.clone(),
            application: route.target.name.clone(),
        }));
    }
    if !route.target.rivals.is_empty() {
        let mut rivals = route.target.rivals.clone();
        rivals.insert(0, format!("{}/{}", route.target.owner, route.target.name));
        return Err(ProxyError::new(Failure::Ambiguous {
            segment: segment.to_owned(),
            rivals,
        }));
    }
    let routing = platform.routing();
    let upstreams = routing.ready(&route.key);
    if upstreams.is_empty() {
        return Err(ProxyError::new(Failure::NotReady {
            application: route.target.name.clone(),
            deployed: routing.exists(&route.key),
            failure: routing.failure(&route.key),
        }));
    }
    let path_and_query;
    let path_and_query = match req.uri().query() {
        Some(query) => {
            path_and_query = format!("{rest}?{query}");
            path_and_query.as_str()
        }
        None => rest,
    };
    // Scheme, host and client as a trusted proxy reported them, else as the connection says.
    let origin = crate::edge::origin::of(req);
    // Forward borrows it while `trace` is lent to the forwarding code.
    let request_id = trace.request_id.clone();
    let forward = upstream::Forward {
        req,
        route: &route,
        upstreams: &upstreams,
        path_and_query,
        forwarded: Forwarded {
            client_ip: req.peer_addr().map(|a| a.ip()),
            real_ip: origin.client,
            prior_for: req
                .headers()
                .get(X_FORWARDED_FOR)
                .filter(|_| origin.via_trusted_proxy),
            host: Some(origin.host.as_str()),
            https: origin.https,
            prefix,
            request_id: &request_id,
            tenant: &principal.tenant,
        },
        settings: worker.shared.settings,
        routing,
    };
    if websocket::is_upgrade(req) {
        websocket::tunnel(forward, payload, trace).await
    } else {
        upstream::send(&worker.client, forward, payload, trace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_paths_split_into_segment_prefix_and_rest() {
        let cases = [
            (
                "/service/hello/hello",
                Some(("hello", "/service/hello", "/hello")),
            ),
            ("/service/hello", Some(("hello", "/service/hello", "/"))),
            ("/service/hello/", Some(("hello", "/service/hello", "/"))),
            (
                "/service/ctx/a/b%20c",
                Some(("ctx", "/service/ctx", "/a/b%20c")),
            ),
            ("/service/", None),
            ("/service//x", None),
            ("/other/x", None),
        ];
        for (path, expected) in cases {
            assert_eq!(split_service_path(path), expected, "{path}");
        }
    }
}
