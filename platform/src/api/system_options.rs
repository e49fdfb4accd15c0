//! `GET /tenant/system/options/{category}/{key}`: the platform's own options, read-only. Berth
//! has one a client asks for, `system`/`version` (go-c8y-cli reads it right after logging in,
//! the Cumulocity UI to show the platform's version); any other is 404.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::error::ApiError;
use super::media;
use crate::auth::principal::Principal;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/tenant/system/options/{category}/{key}",
        web::get().to(get),
    );
}

/// Berth's version, as the `system`/`version` option gives it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

async fn get(
    req: HttpRequest,
    _principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (category, key) = path.into_inner();
    if (category.as_str(), key.as_str()) != ("system", "version") {
        return Err(ApiError::not_found(
            "options",
            &format!("Unable to find option by given key: {category}/{key}"),
        ));
    }
    let base = media::base_url(&req);
    Ok(media::ok(
        "option",
        &json!({
            "category": "system",
            "key": "version",
            "value": VERSION,
            "self": format!("{base}/tenant/system/options/system/version"),
        }),
    ))
}
