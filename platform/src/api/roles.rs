//! `/user/roles`: the catalogue of assignable roles (permissions).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};

use super::error::ApiError;
use super::media;
use super::paging::PageRequest;
use super::users::role_json;
use crate::auth::principal::Principal;
use crate::auth::roles;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/user/roles", web::get().to(list))
        .route("/user/roles/{name}", web::get().to(get));
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::USER_MANAGEMENT_READ,
        roles::USER_MANAGEMENT_CREATE,
        roles::USER_MANAGEMENT_ADMIN,
    ])?;
    let page = PageRequest::from_query(&query)?;
    let window = page.window();
    let base = media::base_url(&req);
    let items = roles::ALL
        .iter()
        .skip(usize::try_from(window.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(window.limit).unwrap_or(usize::MAX))
        .map(|r| role_json(&base, r))
        .collect();
    Ok(media::ok(
        "roleCollection",
        &page.collection(&req, "roles", items, roles::ALL.len() as u64),
    ))
}

async fn get(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::USER_MANAGEMENT_READ,
        roles::USER_MANAGEMENT_CREATE,
        roles::USER_MANAGEMENT_ADMIN,
    ])?;
    let name = path.into_inner();
    if !roles::ALL.contains(&name.as_str()) {
        return Err(ApiError::not_found(
            "roles",
            &format!("Role {name} not found"),
        ));
    }
    Ok(media::ok("role", &role_json(&media::base_url(&req), &name)))
}
