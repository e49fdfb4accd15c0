//! The outermost middleware of every listener, in front of the API and the proxy alike.

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use futures_util::future::Either;

use super::security_headers::{self, Origin};

/// Outermost middleware of every listener: the request-head limits of [`super::request_head`]
/// and the headers of [`super::security_headers`].
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
    let https = super::origin::of(req.request()).https;
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    // An over-limit head is refused as an API answer, wherever it was going.
    let (response, origin) = match super::request_head::check(uri_len, req.headers()) {
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
        Ok(response)
    }
}
