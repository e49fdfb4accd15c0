//! The console's script and style sheet, compiled into the binary (no CDN, no build step).
//! The script is several small files concatenated in order: helpers first, then one file per
//! group of pages.

use actix_web::{HttpResponse, web};

const SCRIPT: &str = concat!(
    include_str!("assets/core.js"),
    include_str!("assets/applications.js"),
    include_str!("assets/logs.js"),
    include_str!("assets/admin.js"),
    include_str!("assets/boot.js"),
);
const STYLE: &str = include_str!("assets/console.css");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/static/console.js", web::get().to(script))
        .route("/console/static/console.css", web::get().to(style));
}

async fn script() -> HttpResponse {
    super::respond("text/javascript; charset=utf-8", SCRIPT.to_owned())
}

async fn style() -> HttpResponse {
    super::respond("text/css; charset=utf-8", STYLE.to_owned())
}
