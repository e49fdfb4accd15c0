//! `/user/{tenantId}/groups…`: groups ("global roles") of the caller's tenant, their members and
//! their roles.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::paging::{PageRequest, page_of};
use super::user_access::{
    RoleReferenceBody, check_assignable, require_grantable, require_outranks,
};
use super::user_json::{group_json, role_json, user_json};
use super::{AppState, db, media, required};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::store::users::{self, Group};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/user/{tenant}/groups", web::get().to(list))
        .route("/user/{tenant}/groups", web::post().to(create))
        .route("/user/{tenant}/groups/{group}", web::get().to(get))
        .route(
            "/user/{tenant}/groupByName/{name}",
            web::get().to(get_by_name),
        )
        .route("/user/{tenant}/groups/{group}", web::put().to(update))
        .route("/user/{tenant}/groups/{group}", web::delete().to(delete))
        .route(
            "/user/{tenant}/groups/{group}/users",
            web::get().to(members),
        )
        .route(
            "/user/{tenant}/groups/{group}/users",
            web::post().to(add_member),
        )
        .route(
            "/user/{tenant}/groups/{group}/users/{user}",
            web::delete().to(remove_member),
        )
        .route(
            "/user/{tenant}/groups/{group}/roles",
            web::get().to(group_roles),
        )
        .route(
            "/user/{tenant}/groups/{group}/roles",
            web::post().to(add_role),
        )
        .route(
            "/user/{tenant}/groups/{group}/roles/{role}",
            web::delete().to(remove_role),
        );
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupBody {
    name: Option<String>,
    description: Option<String>,
    custom_properties: Option<Map<String, Value>>,
}

impl super::field_limits::Bounded for GroupBody {
    fn check_sizes(&self) -> Result<(), ApiError> {
        super::field_limits::check(
            "groups",
            &[("description", self.description.as_deref())],
            self.custom_properties.as_ref(),
        )
    }
}

/// `{"user": {"self": ".../user/<t>/users/<name>"}}` or `{"user": {"id"|"userName": ...}}`.
#[derive(Debug, Deserialize)]
struct UserReferenceBody {
    user: Option<Map<String, Value>>,
}

fn read_access(principal: &Principal, tenant: &str) -> Result<(), ApiError> {
    principal.require_own_tenant(tenant)?;
    principal.require_any(&[
        roles::USER_MANAGEMENT_READ,
        roles::USER_MANAGEMENT_CREATE,
        roles::USER_MANAGEMENT_ADMIN,
    ])
}

fn admin_access(principal: &Principal, tenant: &str) -> Result<(), ApiError> {
    principal.require_own_tenant(tenant)?;
    principal.require(roles::USER_MANAGEMENT_ADMIN)
}

/// 403 unless the caller holds every role group `id` carries: changing a group changes the
/// rights of its members, so only someone with all of them may do it.
async fn require_covers_group(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
    id: i64,
) -> Result<Group, ApiError> {
    let t = tenant.to_owned();
    let group = db(state, "groups", move |c| users::get_group(c, &t, id)).await?;
    require_grantable(principal, &group.roles, &format!("group {}", group.name))?;
    Ok(group)
}

fn check_group_name(name: &str) -> Result<(), ApiError> {
    crate::store::names::check_printable(name)
        .map_err(|r| ApiError::invalid("groups", &format!("name {r}")))
}

fn group_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found("groups", &format!("Group with id {text} not found")))
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    read_access(&principal, &tenant)?;
    let page = PageRequest::from_query(&query)?;
    let (groups, total) = db(&state, "groups", move |c| {
        users::list_groups(c, &tenant, page.window())
    })
    .await?;
    let base = media::base_url(&req);
    let items = groups.iter().map(|g| group_json(&base, g)).collect();
    Ok(media::ok(
        "groupCollection",
        &page.collection(&req, "groups", items, total),
    ))
}

async fn create(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<GroupBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    let tenant = path.into_inner();
    admin_access(&principal, &tenant)?;
    let body = body.into_inner();
    let name = required("groups", "name", &body.name)?.to_owned();
    check_group_name(&name)?;
    if name.chars().count() > 254 {
        return Err(ApiError::invalid(
            "groups",
            "name must have at most 254 characters",
        ));
    }
    let group = db(&state, "groups", move |c| {
        users::create_group(
            c,
            &tenant,
            &name,
            body.description.as_deref(),
            &body.custom_properties.unwrap_or_default(),
        )
    })
    .await?;
    audit_group(
        &state,
        &principal,
        &group.tenant_id,
        "Group created",
        &group.name,
        String::new(),
    );
    let base = media::base_url(&req);
    let body = group_json(&base, &group);
    Ok(media::created(
        &req,
        "group",
        body["self"].as_str().unwrap_or_default(),
        &body,
    ))
}

/// An audit record of a change to group `name` of `tenant`, in that tenant (and the caller's,
/// when the management tenant acts on a subtenant).
fn audit_group(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
    activity: &str,
    name: &str,
    what: String,
) {
    super::audit::record_change(
        state,
        principal,
        &[tenant, &principal.tenant],
        "Group",
        activity,
        format!("{activity}: {name}{what}"),
    );
}

async fn get(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    read_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    let group = db(&state, "groups", move |c| users::get_group(c, &tenant, id)).await?;
    Ok(media::ok(
        "group",
        &group_json(&media::base_url(&req), &group),
    ))
}

async fn get_by_name(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    read_access(&principal, &tenant)?;
    let group = db(&state, "groups", move |c| {
        users::get_group_by_name(c, &tenant, &name)
    })
    .await?;
    Ok(media::ok(
        "group",
        &group_json(&media::base_url(&req), &group),
    ))
}

async fn update(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<GroupBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    let (tenant, id) = path.into_inner();
    admin_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    require_covers_group(&state, &principal, &tenant, id).await?;
    let body = body.into_inner();
    if body.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(ApiError::invalid("groups", "name must not be blank"));
    }
    if let Some(name) = &body.name {
        check_group_name(name)?;
    }
    let group = db(&state, "groups", move |c| {
        users::update_group(
            c,
            &tenant,
            id,
            body.name.as_deref(),
            body.description.as_deref(),
            body.custom_properties.as_ref(),
        )
    })
    .await?;
    audit_group(
        &state,
        &principal,
        &group.tenant_id,
        "Group updated",
        &group.name,
        String::new(),
    );
    Ok(media::updated(
        &req,
        "group",
        &group_json(&media::base_url(&req), &group),
    ))
}

async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    admin_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    require_covers_group(&state, &principal, &tenant, id).await?;
    let t = tenant.clone();
    let name = db(&state, "groups", move |c| {
        let name = users::get_group(c, &t, id)?.name;
        users::delete_group(c, &t, id)?;
        Ok(name)
    })
    .await?;
    state.cache.invalidate_tenant(&tenant);
    audit_group(
        &state,
        &principal,
        &tenant,
        "Group deleted",
        &name,
        String::new(),
    );
    Ok(HttpResponse::NoContent().finish())
}

async fn members(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    read_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    let page = PageRequest::from_query(&query)?;
    let (members, total) = db(&state, "groups", move |c| {
        users::group_members(c, &tenant, id, page.window())
    })
    .await?;
    let base = media::base_url(&req);
    let references = members
        .iter()
        .map(|u| json!({"self": format!("{base}/user/{}/groups/{id}/users/{}", u.tenant_id, u.user_name), "user": user_json(&base, u, &[], &[])}))
        .collect();
    Ok(media::ok(
        "userReferenceCollection",
        &page.collection(&req, "references", references, total),
    ))
}

async fn add_member(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<UserReferenceBody>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    admin_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    let user = body.user.as_ref().ok_or_else(|| {
        ApiError::invalid(
            "groups",
            "body must be {\"user\": {\"self\": \"<url of the user>\"}}",
        )
    })?;
    let name = ["id", "userName"]
        .iter()
        .find_map(|k| user.get(*k).and_then(Value::as_str).map(str::to_owned))
        .or_else(|| {
            user.get("self")
                .and_then(Value::as_str)
                .and_then(|s| s.trim_end_matches('/').rsplit('/').next())
                .map(str::to_owned)
        })
        .ok_or_else(|| ApiError::invalid("groups", "user reference needs self or id"))?;
    require_covers_group(&state, &principal, &tenant, id).await?;
    require_outranks(&state, &principal, &tenant, &name).await?;
    let (t, n) = (tenant.clone(), name.clone());
    let (user, group) = db(&state, "groups", move |c| {
        users::add_member(c, &t, id, &n)?;
        Ok((
            users::get_person(c, &t, &n)?,
            users::get_group(c, &t, id)?.name,
        ))
    })
    .await?;
    state.cache.invalidate_user(&tenant, &name);
    let what = format!(", user {name} added");
    audit_group(&state, &principal, &tenant, "Group updated", &group, what);
    let base = media::base_url(&req);
    let location = format!("{base}/user/{tenant}/groups/{id}/users/{name}");
    let body = json!({"self": location, "user": user_json(&base, &user, &[], &[])});
    Ok(media::created(&req, "userReference", &location, &body))
}

async fn remove_member(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id, name) = path.into_inner();
    admin_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    require_outranks(&state, &principal, &tenant, &name).await?;
    let (t, n) = (tenant.clone(), name.clone());
    let group = db(&state, "groups", move |c| {
        users::remove_member(c, &t, id, &n)?;
        Ok(users::get_group(c, &t, id)?.name)
    })
    .await?;
    state.cache.invalidate_user(&tenant, &name);
    let what = format!(", user {name} removed");
    audit_group(&state, &principal, &tenant, "Group updated", &group, what);
    Ok(HttpResponse::NoContent().finish())
}

async fn group_roles(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    read_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    let group = db(&state, "groups", move |c| users::get_group(c, &tenant, id)).await?;
    let base = media::base_url(&req);
    let body = group_json(&base, &group);
    let references = body["roles"]["references"]
        .as_array()
        .cloned()
        .unwrap_or_default();
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
    let (tenant, id) = path.into_inner();
    admin_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    let role = body.role_name()?;
    check_assignable(&state, &tenant, &role).await?;
    require_grantable(&principal, std::slice::from_ref(&role), &role)?;
    require_covers_group(&state, &principal, &tenant, id).await?;
    let (t, r) = (tenant.clone(), role.clone());
    let group = db(&state, "roles", move |c| {
        users::add_group_role(c, &t, id, &r)?;
        Ok(users::get_group(c, &t, id)?.name)
    })
    .await?;
    state.cache.invalidate_tenant(&tenant);
    let what = format!(", role {role} assigned");
    audit_group(&state, &principal, &tenant, "Group updated", &group, what);
    let base = media::base_url(&req);
    let location = format!("{base}/user/{tenant}/groups/{id}/roles/{role}");
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
    let (tenant, id, role) = path.into_inner();
    admin_access(&principal, &tenant)?;
    let id = group_id(&id)?;
    require_covers_group(&state, &principal, &tenant, id).await?;
    let (t, r) = (tenant.clone(), role.clone());
    let group = db(&state, "roles", move |c| {
        users::remove_group_role(c, &t, id, &r)?;
        Ok(users::get_group(c, &t, id)?.name)
    })
    .await?;
    state.cache.invalidate_tenant(&tenant);
    let what = format!(", role {role} removed");
    audit_group(&state, &principal, &tenant, "Group updated", &group, what);
    Ok(HttpResponse::NoContent().finish())
}
