//! A user's rights and security state: `/user/{tenantId}/users/{user}/groups` and `…/roles`
//! (reference collections, paged like every collection), role assignment, and `…/tfa` (the
//! two-factor state clients read; Berth has no second factor, so it is always off).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::error::ApiError;
use super::paging::page_of;
use super::users::{
    RoleReferenceBody, admin_access, audit_user, check_assignable, read_access, require_grantable,
    require_outranks, role_json, user_self,
};
use super::{AppState, db, media};
use crate::auth::principal::Principal;
use crate::store::users;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/user/{tenant}/users/{user}/groups",
        web::get().to(user_groups),
    )
    .route(
        "/user/{tenant}/users/{user}/roles",
        web::get().to(user_roles),
    )
    .route(
        "/user/{tenant}/users/{user}/roles",
        web::post().to(add_role),
    )
    .route(
        "/user/{tenant}/users/{user}/roles/{role}",
        web::delete().to(remove_role),
    )
    .route("/user/{tenant}/users/{user}/tfa", web::get().to(tfa));
}

/// `GET …/tfa`: Cumulocity's TFA state of a user. Berth offers no second factor, so it is
/// disabled for everyone; the user must exist (404 otherwise), as for the user itself.
async fn tfa(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    read_access(&state, &principal, &tenant).await?;
    db(&state, "users", move |c| {
        users::get_person(c, &tenant, &name)
    })
    .await?;
    Ok(media::ok(
        "user",
        &json!({
            "tfaEnabled": false,
            "tfaEnforced": false,
            "enforcedOnSystemLevel": false,
            "strategy": "TOTP",
            "lastTfaRequestTime": null,
        }),
    ))
}

async fn user_groups(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    read_access(&state, &principal, &tenant).await?;
    let (t, n) = (tenant.clone(), name.clone());
    let groups = db(&state, "users", move |c| {
        users::get_person(c, &t, &n)?;
        users::user_groups(c, &t, &n)
    })
    .await?;
    let base = media::base_url(&req);
    let references: Vec<Value> = groups
        .iter()
        .map(|g| json!({"self": format!("{}/groups/{}", user_self(&base, &tenant, &name), g.id), "group": super::user_json::group_json(&base, g)}))
        .collect();
    Ok(media::ok(
        "groupReferenceCollection",
        &page_of(&req, &query, "references", references)?,
    ))
}

async fn user_roles(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    read_access(&state, &principal, &tenant).await?;
    let (t, n) = (tenant.clone(), name.clone());
    let roles = db(&state, "users", move |c| {
        users::get_person(c, &t, &n)?;
        users::direct_roles(c, &t, &n)
    })
    .await?;
    let base = media::base_url(&req);
    let self_url = user_self(&base, &tenant, &name);
    let references: Vec<Value> = roles
        .iter()
        .map(|r| json!({"self": format!("{self_url}/roles/{r}"), "role": role_json(&base, r)}))
        .collect();
    Ok(media::ok(
        "roleReferenceCollection",
        &page_of(&req, &query, "references", references)?,
    ))
}

async fn add_role(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<RoleReferenceBody>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    admin_access(&state, &principal, &tenant).await?;
    let role = body.role_name()?;
    check_assignable(&state, &tenant, &role).await?;
    require_grantable(&principal, std::slice::from_ref(&role), &role)?;
    require_outranks(&state, &principal, &tenant, &name).await?;
    let (t, n, r) = (tenant.clone(), name.clone(), role.clone());
    db(&state, "roles", move |c| {
        users::add_user_role(c, &t, &n, &r)
    })
    .await?;
    state.cache.invalidate_user(&tenant, &name);
    let what = format!(", role {role} assigned");
    audit_user(&state, &principal, &tenant, "User updated", &name, &what);
    let base = media::base_url(&req);
    let location = format!("{}/roles/{role}", user_self(&base, &tenant, &name));
    Ok(media::created(
        &req,
        "roleReference",
        &location,
        &json!({"self": location, "role": role_json(&base, &role)}),
    ))
}

async fn remove_role(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name, role) = path.into_inner();
    admin_access(&state, &principal, &tenant).await?;
    require_outranks(&state, &principal, &tenant, &name).await?;
    let (t, n, r) = (tenant.clone(), name.clone(), role.clone());
    db(&state, "roles", move |c| {
        users::remove_user_role(c, &t, &n, &r)
    })
    .await?;
    state.cache.invalidate_user(&tenant, &name);
    let what = format!(", role {role} removed");
    audit_user(&state, &principal, &tenant, "User updated", &name, &what);
    Ok(HttpResponse::NoContent().finish())
}
