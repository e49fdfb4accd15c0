//! `/user/roles`: the roles assignable in the caller's tenant: the catalogue, then the `roles`
//! of the applications the tenant is subscribed to (as Cumulocity's list grows with them).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};

use super::error::ApiError;
use super::paging::PageRequest;
use super::users::role_json;
use super::{AppState, db, media};
use crate::auth::principal::Principal;
use crate::auth::roles;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/user/roles", web::get().to(list))
        .route("/user/roles/{name}", web::get().to(get));
}

/// The catalogue, then the roles `tenant`'s subscriptions make assignable.
async fn assignable(state: &AppState, tenant: &str) -> Result<Vec<String>, ApiError> {
    let t = tenant.to_owned();
    let extra = db(state, "roles", move |c| {
        crate::store::subscriptions::assignable_roles(c, &t)
    })
    .await?;
    Ok(roles::ALL
        .iter()
        .map(|r| (*r).to_owned())
        .chain(
            extra
                .into_iter()
                .filter(|r| !roles::ALL.contains(&r.as_str())),
        )
        .collect())
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
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
    let all = assignable(&state, &principal.tenant).await?;
    let items = all
        .iter()
        .skip(usize::try_from(window.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(window.limit).unwrap_or(usize::MAX))
        .map(|r| role_json(&base, r))
        .collect();
    Ok(media::ok(
        "roleCollection",
        &page.collection(&req, "roles", items, all.len() as u64),
    ))
}

async fn get(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::USER_MANAGEMENT_READ,
        roles::USER_MANAGEMENT_CREATE,
        roles::USER_MANAGEMENT_ADMIN,
    ])?;
    let name = path.into_inner();
    if !assignable(&state, &principal.tenant).await?.contains(&name) {
        return Err(ApiError::not_found(
            "roles",
            &format!("Role {name} not found"),
        ));
    }
    Ok(media::ok("role", &role_json(&media::base_url(&req), &name)))
}
