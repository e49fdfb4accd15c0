//! Cumulocity media types and the response shapes shared by every resource: JSON with
//! `application/vnd.com.nsn.cumulocity.<type>+json`, 201 + Location, body only with `Accept`.

use actix_web::http::StatusCode;
use actix_web::http::header::{ACCEPT, LOCATION};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

/// `application/vnd.com.nsn.cumulocity.<name>+json;charset=UTF-8;ver=0.9`
pub fn media_type(name: &str) -> String {
    format!("application/vnd.com.nsn.cumulocity.{name}+json;charset=UTF-8;ver=0.9")
}

/// `scheme://host` of the request, the base of every `self` link (forwarding headers only
/// from trusted proxies, see [`super::origin`]).
pub fn base_url(req: &HttpRequest) -> String {
    super::origin::of(req).base_url()
}

/// 200 with a JSON body of media type `name`.
pub fn ok(name: &str, body: &impl Serialize) -> HttpResponse {
    json(StatusCode::OK, name, body)
}

pub fn json(status: StatusCode, name: &str, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(media_type(name))
        .body(serde_json::to_string(body).unwrap_or_default())
}

/// True when the client asked for a representation (sent any `Accept` header).
fn wants_body(req: &HttpRequest) -> bool {
    req.headers().contains_key(ACCEPT)
}

/// 201 + `Location`; the created object only if the client sent `Accept`.
pub fn created(
    req: &HttpRequest,
    name: &str,
    location: &str,
    body: &impl Serialize,
) -> HttpResponse {
    let mut response = HttpResponse::Created();
    response.insert_header((LOCATION, location.to_owned()));
    if wants_body(req) {
        response
            .content_type(media_type(name))
            .body(serde_json::to_string(body).unwrap_or_default())
    } else {
        response.finish()
    }
}

/// 200; the updated object only if the client sent `Accept`.
pub fn updated(req: &HttpRequest, name: &str, body: &impl Serialize) -> HttpResponse {
    if wants_body(req) {
        ok(name, body)
    } else {
        HttpResponse::Ok().finish()
    }
}
