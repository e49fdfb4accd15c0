//! The web console: server-rendered page shells (maud) plus a little JavaScript and CSS embedded
//! in the binary. Pages carry no tenant data: the browser script fetches everything from the
//! public REST API with the OAI-Secure cookie and the `X-XSRF-TOKEN` header, so the console has
//! exactly the caller's rights and adds no second way to change state. The only endpoint of its
//! own is the live log stream ([`log_stream`]), authenticated the same way.

mod assets;
mod layout;
pub mod log_stream;
mod pages;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// No inline script or style, nothing from elsewhere, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Registers the console's pages, assets and the log stream on the public listener; `streams`
/// is the server's one count of open log streams.
pub fn routes(streams: log_stream::OpenStreams) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.route("/", web::get().to(to_console))
            .route("/console", web::get().to(to_console))
            .route("/console/", web::get().to(to_console))
            .configure(assets::routes)
            .configure(pages::routes)
            .configure(log_stream::routes(streams));
    }
}

async fn to_console() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/applications"))
        .finish()
}

/// A console response: the document with the headers every console page carries (the edge
/// middleware adds `Cache-Control: no-store` as for the API: pages and assets are small, and a
/// new Berth version is then picked up at once).
fn respond(content_type: &'static str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}
