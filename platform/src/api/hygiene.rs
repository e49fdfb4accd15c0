//! Middleware every listener shares: the outermost one, in front of the API and the proxy
//! alike ([`edge_hygiene`]), the request's span and log line ([`request_span`]), and the one
//! that lets a write run to its end ([`run_writes_to_end`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use futures_util::future::Either;
use tracing::Instrument;

use super::security_headers::{self, Origin};

/// Outermost middleware of every listener: the request-head limits of [`super::request_head`],
/// the refusal of a browser's request for another site's page that may change something
/// ([`crate::edge::cross_site`]: the API and the services under `/service/` alike), the headers
/// of [`super::security_headers`] and the challenge of the API's 401s ([`super::challenge`]).
pub fn edge_hygiene<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>
+ use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    use actix_web::ResponseError;
    let origin = if req.path().starts_with(crate::proxy::SERVICE_PREFIX) {
        Origin::Proxied
    } else {
        Origin::Api
    };
    let ours = super::origin::of(req.request());
    let https = ours.https;
    let xbasic = super::challenge::wants_xbasic(req.headers());
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let checked = super::request_head::check(uri_len, req.headers()).and_then(|()| {
        crate::edge::cross_site::check(&cross_site_view(&req), &ours)
            .map_err(super::error::ApiError::from)
    });
    // A refused request is refused as an API answer, wherever it was going.
    let (response, origin) = match checked {
        Ok(()) => (Either::Left(srv.call(req)), origin),
        Err(refused) => {
            let response = req.into_response(refused.error_response());
            (Either::Right(response), Origin::Api)
        }
    };
    async move {
        let mut response = match response {
            Either::Left(inner) => inner.await?.map_into_left_body(),
            Either::Right(refused) => refused.map_into_right_body(),
        };
        security_headers::apply(response.headers_mut(), origin, https);
        // A microservice's own 401 is passed on as it was sent.
        if origin == Origin::Api {
            let status = response.status();
            super::challenge::apply(status, response.headers_mut(), xbasic);
        }
        Ok(response)
    }
}

/// What of `req` tells whether a browser made it for another site's page.
fn cross_site_view(req: &ServiceRequest) -> crate::edge::cross_site::Sent<'_> {
    use actix_web::http::header::{ORIGIN, UPGRADE};
    let headers = req.headers();
    crate::edge::cross_site::Sent {
        method: req.method().as_str(),
        upgrade: headers.contains_key(UPGRADE),
        origin: headers.get(ORIGIN).map(|v| v.as_bytes()),
        fetch_site: headers
            .get(crate::edge::cross_site::SEC_FETCH_SITE)
            .map(|v| v.as_bytes()),
    }
}

/// Source of request ids for log correlation, shared by every listener.
static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// One span per API request, so every log line of a request carries its id, and a
/// `request done` line with its status and duration. `/service/…` requests are left to the
/// proxy, which writes its own access line (it is the hot path, see `proxy::trace`).
pub fn request_span<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
{
    if req.path().starts_with(crate::proxy::SERVICE_PREFIX) {
        return Either::Left(srv.call(req));
    }
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id, method = %req.method(), path = %req.path());
    let start = Instant::now();
    let response = span.in_scope(|| srv.call(req));
    let logged = async move {
        let response = response.await?;
        tracing::info!(
            status = response.status().as_u16(),
            micros = start.elapsed().as_micros() as u64,
            "request done"
        );
        Ok(response)
    }
    .instrument(span);
    Either::Right(logged)
}

/// Runs a request that may write to its end even when its client goes away first: the
/// connection's end drops the request's future, and what must follow a store change (dropping
/// cached credentials, invalidating routes, the audit record) follows it in the handler. The
/// handler is polled where it always was (so a bad body is still answered at once); only when
/// its future is dropped unfinished does the rest of it become a task of its own.
pub fn run_writes_to_end<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: 'static,
{
    let detach = crate::proxy::may_write(&req);
    FinishOnDrop {
        call: Some(Box::pin(srv.call(req))),
        detach,
    }
}

/// A future that, dropped before it finished, leaves the rest of its work running.
struct FinishOnDrop<F: std::future::Future + 'static> {
    call: Option<std::pin::Pin<Box<F>>>,
    detach: bool,
}

impl<F: std::future::Future + 'static> std::future::Future for FinishOnDrop<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        // Not polled again once it gave its output.
        let Some(call) = this.call.as_mut() else {
            return std::task::Poll::Pending;
        };
        let output = std::task::ready!(call.as_mut().poll(cx));
        this.call = None;
        std::task::Poll::Ready(output)
    }
}

impl<F: std::future::Future + 'static> Drop for FinishOnDrop<F> {
    fn drop(&mut self) {
        let Some(call) = self.call.take().filter(|_| self.detach) else {
            return;
        };
        // Dropped on the worker whose connection ended, its rest runs there; dropped as the
        // runtime itself shuts down, there is nowhere to run it, and nothing to do.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            actix_web::rt::spawn(async move {
                let _ = call.await;
            })
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use actix_web::{App, HttpResponse, test, web};

    #[actix_web::test]
    async fn a_write_runs_to_its_end_after_its_client_went_away() {
        let (release, released) = tokio::sync::watch::channel(false);
        let done = Arc::new(AtomicBool::new(false));
        let handler = |done: Arc<AtomicBool>, released: tokio::sync::watch::Receiver<bool>| {
            move || {
                let (done, mut released) = (Arc::clone(&done), released.clone());
                async move {
                    let _ = released.wait_for(|r| *r).await;
                    done.store(true, Ordering::SeqCst);
                    HttpResponse::NoContent().finish()
                }
            }
        };
        // An inner middleware's work after the answer (as the route cache's invalidation,
        // which both listeners wrap inside this one) runs to its end with the handler.
        let after = Arc::new(AtomicBool::new(false));
        let inner_after = Arc::clone(&after);
        let app = test::init_service(
            App::new()
                .wrap_fn(move |req, srv| {
                    use actix_web::dev::Service;
                    let (call, after) = (srv.call(req), Arc::clone(&inner_after));
                    async move {
                        let response = call.await;
                        after.store(true, Ordering::SeqCst);
                        response
                    }
                })
                .wrap_fn(super::run_writes_to_end)
                .route(
                    "/w",
                    web::delete().to(handler(Arc::clone(&done), released.clone())),
                )
                .route(
                    "/r",
                    web::get().to(handler(Arc::clone(&done), released.clone())),
                ),
        )
        .await;
        // (method, runs to its end)
        for (req, finishes) in [
            (test::TestRequest::delete().uri("/w"), true),
            (test::TestRequest::get().uri("/r"), false),
        ] {
            done.store(false, Ordering::SeqCst);
            after.store(false, Ordering::SeqCst);
            let _ = release.send(false);
            let call = test::call_service(&app, req.to_request());
            // The client goes away while the handler waits: its future is dropped.
            let gone = tokio::time::timeout(std::time::Duration::from_millis(20), call).await;
            assert!(gone.is_err());
            let _ = release.send(true);
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            assert_eq!(
                done.load(Ordering::SeqCst),
                finishes,
                "finishes: {finishes}"
            );
            assert_eq!(after.load(Ordering::SeqCst), finishes, "after: {finishes}");
        }
    }
}
