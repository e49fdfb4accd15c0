//! The proxy's hot path on hyper's server: a `/service/…` request that the front (see
//! `crate::front`) received, from a caller whose credentials are in the cache, for a service
//! the caller's tenant is subscribed to and that has a ready replica, is forwarded here without
//! going through actix-web. Everything else (first use of a credential, cookies, upgrades,
//! every refusal) is given back and answered by the actix app, so the rules and error bodies
//! stay in one place: this path only ever serves what the actix path would have forwarded.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

use super::error::Origin;
use super::request_body::Pipe;
use super::trace::RequestTrace;
use super::upstream::{self, Outbound, Target};
use super::{Platform, Proxy, Shared, split_service_path};
use crate::edge::HSTS;

/// The body type of every answer the front gives.
pub type FrontBody = UnsyncBoxBody<Bytes, Box<dyn StdError + Send + Sync>>;

/// One request as the front checked it: the client's address and the host it addressed.
pub struct Caller<'a> {
    pub ip: IpAddr,
    /// `host[:port]` as addressed (Host header or HTTP/2 authority), already validated.
    pub host: &'a str,
}

/// The direct path: shares the proxy's state, has its own upstream client (one per front
/// thread, see [`Direct::with_own_client`]).
#[derive(Clone)]
pub struct Direct {
    shared: Arc<Shared>,
    client: upstream::Client,
    platform: Arc<dyn Platform>,
}

impl Proxy {
    /// The direct path over `platform`.
    pub fn direct(&self, platform: Arc<dyn Platform>) -> Direct {
        Direct {
            shared: Arc::clone(&self.shared),
            client: upstream::client(self.shared.settings, Arc::clone(&self.shared.slots)),
            platform,
        }
    }
}

impl Direct {
    /// The same path with an upstream client of its own, for one front thread: its pooled
    /// connections and their tasks then stay on that thread.
    pub fn with_own_client(&self) -> Direct {
        Direct {
            shared: Arc::clone(&self.shared),
            client: upstream::client(self.shared.settings, Arc::clone(&self.shared.slots)),
            platform: Arc::clone(&self.platform),
        }
    }

    /// Forwards `req` if it can be served here; otherwise gives it back untouched.
    pub async fn serve(
        &self,
        req: Request<Incoming>,
        caller: Caller<'_>,
    ) -> Result<Response<FrontBody>, Request<Incoming>> {
        let Some(authorization) = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(req);
        };
        let key = crate::auth::credentials::cache_key(&[
            "authorization",
            authorization,
            &crate::auth::principal::host_without_port(caller.host),
        ]);
        let Some(principal) = self.platform.cached_caller(&key) else {
            return Err(req);
        };
        let Some((segment, prefix, rest)) = split_service_path(req.uri().path()) else {
            return Err(req);
        };
        let route = match self
            .shared
            .services
            .resolve(
                self.platform.store(),
                self.platform.routing().catalog(),
                &principal.tenant,
                segment,
            )
            .await
        {
            Ok(Some(route)) if route.target.caller_subscribed && route.target.rivals.is_empty() => {
                route
            }
            _ => return Err(req),
        };
        let routing = self.platform.routing();
        let upstreams = routing.ready(&route.key);
        if upstreams.is_empty() {
            return Err(req);
        }
        let (prefix, path_and_query) = (
            prefix.to_owned(),
            match req.uri().query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_owned(),
            },
        );

        let (request_id, sequence) = self.shared.request_id();
        let mut trace = RequestTrace::start(request_id, sequence, self.shared.access_log);
        trace.authenticated(&principal);
        trace.routed(&route);
        let (parts, body) = req.into_parts();
        let mut headers = http::HeaderMap::with_capacity(parts.headers.len() + 7);
        super::headers::copy_request_h1(&parts.headers, &mut headers);
        super::basic_tenant::qualify_h1(&mut headers, &principal.tenant);
        super::headers::add_forwarded_h1(
            &mut headers,
            caller.ip,
            caller.host,
            &prefix,
            &trace.request_id,
        );
        let length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = if body.is_end_stream() {
            None
        } else {
            Some((Pipe::start_incoming(body), length))
        };
        let outbound = Outbound {
            method: parts.method.clone(),
            headers,
            body,
        };
        let target = Target {
            route: &route,
            upstreams: &upstreams,
            path_and_query: &path_and_query,
            settings: self.shared.settings,
            routing,
        };
        let span = trace.span.clone();
        let outcome = tracing::Instrument::instrument(
            upstream::exchange(&self.client, &target, outbound, &mut trace),
            span,
        )
        .await;
        let mut response = match outcome {
            Ok((mut head, body)) => {
                super::headers::strip_response_h1(&mut head.headers);
                // The client's protocol, not the upstream's (an HTTP/1.0 upstream answers
                // an HTTP/1.1 client in HTTP/1.1; hyper's HTTP/2 server ignores it).
                head.version = http::Version::HTTP_11;
                Response::from_parts(head, body.map_err(box_error).boxed_unsync())
            }
            Err(error) => {
                trace.failed(
                    &error,
                    error.origin() == Origin::Downstream,
                    error.retry_safe,
                );
                error.to_http().map(|text| full(text.into()))
            }
        };
        let status = response.status().as_u16();
        let elapsed = trace.finish(parts.method.as_str(), parts.uri.path(), status);
        route.metrics.record(status, elapsed);
        let headers = response.headers_mut();
        if let Ok(id) = HeaderValue::from_bytes(trace.request_id.as_bytes()) {
            headers.insert(X_REQUEST_ID, id);
        }
        proxied_security_headers(headers);
        Ok(response)
    }
}

/// What `api::security_headers` does to a proxied response over HTTPS: `nosniff` where it
/// lacks it, Berth's HSTS, no origin-wide headers.
fn proxied_security_headers(headers: &mut http::HeaderMap) {
    headers
        .entry(http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers.insert(
        http::header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    for name in crate::edge::ORIGIN_WIDE {
        headers.remove(name);
    }
}

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

fn box_error<E: StdError + Send + Sync + 'static>(e: E) -> Box<dyn StdError + Send + Sync> {
    Box::new(e)
}

/// A complete body.
pub fn full(bytes: Bytes) -> FrontBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    /// As `api::security_headers` does on the actix path.
    #[test]
    fn proxied_answers_get_the_apis_security_headers_and_no_origin_wide_ones() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::STRICT_TRANSPORT_SECURITY,
            http::HeaderValue::from_static("max-age=0"),
        );
        headers.insert(
            "clear-site-data",
            http::HeaderValue::from_static("\"cookies\""),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("max-age=60"),
        );
        super::proxied_security_headers(&mut headers);
        assert_eq!(headers["strict-transport-security"], crate::edge::HSTS);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "max-age=60");
        assert!(!headers.contains_key("clear-site-data"));
    }
}
