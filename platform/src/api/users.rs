//! `/user/currentUser…` and `/user/{tenantId}/users…`: users of the caller's tenant (and, for
//! the management tenant's tenant administrators, of its subtenants), their passwords, direct
//! roles and group memberships.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::paging::PageRequest;
use super::query_flag::flag;
pub use super::user_access::{
    RoleReferenceBody, admin_access, check_all_assignable, check_assignable, read_access,
    require_grantable, require_outranks,
};
pub use super::user_json::{role_json, user_json, user_self};
use super::{AppState, db, media, required};
use crate::auth::password;
use crate::auth::principal::Principal;
use crate::store::users::{self, NewUser, UserUpdate, check_person_name};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/user/{tenant}/users", web::get().to(list))
        .route("/user/{tenant}/users", web::post().to(create))
        .route("/user/{tenant}/users/{user}", web::get().to(get))
        .route("/user/{tenant}/userByName/{user}", web::get().to(get))
        .route("/user/{tenant}/users/{user}", web::put().to(update))
        .route("/user/{tenant}/users/{user}", web::delete().to(delete))
        .route(
            "/user/{tenant}/users/{user}/password",
            web::put().to(set_password),
        );
    for hierarchy in [
        "/user/{tenant}/users/{user}/owner",
        "/user/{tenant}/users/{user}/delegatedby",
    ] {
        cfg.route(hierarchy, web::put().to(no_hierarchy))
            .route(hierarchy, web::delete().to(no_hierarchy));
    }
}

/// `PUT|DELETE …/users/{user}/owner` and `…/delegatedby` (c8y-api's and pyc8y's `set_owner`,
/// `set_delegate`): Cumulocity's user hierarchy, which Berth does not have. 422 with an error
/// body, after the same access check as any change to the tenant's users.
async fn no_hierarchy(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, _) = path.into_inner();
    admin_access(&state, &principal, &tenant).await?;
    Err(ApiError::invalid(
        "users",
        "Berth has no user hierarchy: users have no owner and no delegate",
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserBody {
    pub(super) user_name: Option<String>,
    pub(super) password: Option<String>,
    pub(super) email: Option<String>,
    pub(super) first_name: Option<String>,
    pub(super) last_name: Option<String>,
    pub(super) display_name: Option<String>,
    pub(super) phone: Option<String>,
    pub(super) enabled: Option<bool>,
    pub(super) custom_properties: Option<Map<String, Value>>,
    /// Cumulocity's alternative to a password on create: the platform e-mails a link to set
    /// one. Berth sends no e-mail (see [`new_user_password`]).
    #[serde(default)]
    send_password_reset_email: Option<bool>,
    /// On create only: `{"references": [{"group": {"id"|"self": …}}]}` (the shape users are
    /// returned in), or the bare array.
    groups: Option<Value>,
    /// On create only: `{"references": [{"role": {"id"|"self": …}}]}`, or the bare array.
    roles: Option<Value>,
}

impl super::field_limits::Bounded for UserBody {
    fn check_sizes(&self) -> Result<(), ApiError> {
        super::field_limits::check(
            "users",
            &[
                ("email", self.email.as_deref()),
                ("firstName", self.first_name.as_deref()),
                ("lastName", self.last_name.as_deref()),
                ("displayName", self.display_name.as_deref()),
                ("phone", self.phone.as_deref()),
            ],
            self.custom_properties.as_ref(),
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PasswordBody {
    pub(super) current_user_password: Option<String>,
    pub(super) new_password: Option<String>,
}

/// The objects under `key` of a reference list: `{"references": [{key: {…}}]}` or `[{key: {…}}]`.
fn references<'a>(
    field: &str,
    key: &str,
    value: &'a Value,
) -> Result<Vec<&'a Map<String, Value>>, ApiError> {
    let list = value
        .get("references")
        .unwrap_or(value)
        .as_array()
        .ok_or_else(|| {
            ApiError::invalid(
                "users",
                &format!(
                    "{field} must be {{\"references\": [{{\"{key}\": {{\"self\": \"<url>\"}}}}]}}"
                ),
            )
        })?;
    list.iter()
        .map(|item| {
            item.get(key).and_then(Value::as_object).ok_or_else(|| {
                ApiError::invalid(
                    "users",
                    &format!("every {field} reference needs a {key:?} object"),
                )
            })
        })
        .collect()
}

/// Most role or group references one request may carry: more than the role catalogue, so no
/// real client comes near it, and checking them stays cheap.
const MAX_REFERENCES: usize = 1_000;

/// Group ids and role names a new user's body asks for, each checked to exist/be assignable.
async fn requested_rights(
    state: &AppState,
    tenant: &str,
    body: &UserBody,
) -> Result<(Vec<users::Group>, Vec<String>), ApiError> {
    let too_many = |field: &str| {
        ApiError::invalid(
            "users",
            &format!("{field} may hold at most {MAX_REFERENCES} references"),
        )
    };
    let mut role_names: Vec<String> = Vec::new();
    if let Some(value) = &body.roles {
        let list = references("roles", "role", value)?;
        if list.len() > MAX_REFERENCES {
            return Err(too_many("roles"));
        }
        for role in list {
            let name = RoleReferenceBody {
                role: Some(role.clone()),
            }
            .role_name()?;
            if !role_names.contains(&name) {
                role_names.push(name);
            }
        }
        check_all_assignable(state, tenant, &role_names).await?;
    }
    let mut ids = Vec::new();
    if let Some(value) = &body.groups {
        let list = references("groups", "group", value)?;
        if list.len() > MAX_REFERENCES {
            return Err(too_many("groups"));
        }
        for group in list {
            let id = group
                .get("id")
                .and_then(|v| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
                .or_else(|| {
                    group
                        .get("self")
                        .and_then(Value::as_str)
                        .and_then(|s| s.trim_end_matches('/').rsplit('/').next())
                        .and_then(|s| s.parse().ok())
                })
                .ok_or_else(|| ApiError::invalid("users", "group reference needs self or id"))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let t = tenant.to_owned();
    let groups = db(state, "groups", move |c| {
        ids.iter().map(|id| users::get_group(c, &t, *id)).collect()
    })
    .await?;
    Ok((groups, role_names))
}

async fn full_user_json(
    state: &AppState,
    base: &str,
    tenant: String,
    name: String,
) -> Result<Value, ApiError> {
    let (user, direct, groups) = db(state, "users", move |c| {
        let user = users::get_person(c, &tenant, &name)?;
        Ok((
            user,
            users::direct_roles(c, &tenant, &name)?,
            users::user_group_refs(c, &tenant, &name)?,
        ))
    })
    .await?;
    Ok(user_json(base, &user, &direct, &groups))
}

/// Hashes a password set by a user of `tenant` within the process-wide bound on concurrent
/// hashes (503 with Retry-After when full) and the tenant's share of it (429).
pub async fn hash_password(password: String, tenant: &str) -> Result<String, ApiError> {
    password::hash_bounded(password, password::Party::Tenant(tenant.to_owned()))
        .await
        .map_err(hashing_error)
}

/// A full hashing queue sheds load (503 with Retry-After); any other failure is ours.
pub fn hashing_error(err: password::PoolError) -> ApiError {
    match err {
        password::PoolError::Busy => ApiError::shedding(
            "users",
            "Too many passwords are being hashed right now; retry shortly",
        ),
        password::PoolError::Share { share, .. } => ApiError::too_many_requests(
            "users",
            &format!(
                "This tenant has {share} passwords being hashed, as many as one tenant may; retry once they are done"
            ),
            1,
        ),
        other => ApiError::internal(&other.to_string()),
    }
}

/// The password policy for a new password of `name` (422 saying what to fix). Without `email`
/// the stored address of an existing user is compared too.
pub(super) async fn check_new_password(
    state: &AppState,
    tenant: &str,
    name: &str,
    email: Option<String>,
    new: &str,
) -> Result<(), ApiError> {
    let email = match email {
        Some(email) => Some(email),
        None => {
            let (t, n) = (tenant.to_owned(), name.to_owned());
            db(state, "users", move |c| users::get_user(c, &t, &n))
                .await?
                .and_then(|u| u.email)
        }
    };
    password::check_for_user(new, name, email.as_deref())
        .map_err(|r| ApiError::invalid("users", &format!("{r}; choose another password")))
}

/// Confirms a change with the caller's own current password (throttled like a login: 429 and
/// 503 pass through; a wrong password is 401 naming the field).
pub(super) async fn confirm_with_own_password(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    current: String,
) -> Result<(), ApiError> {
    crate::auth::principal::check_password(
        state,
        crate::auth::principal::request_source(req),
        principal.tenant.clone(),
        principal.user.clone(),
        current,
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        if e.status() == actix_web::http::StatusCode::UNAUTHORIZED {
            ApiError::unauthorized("Invalid credentials! : currentUserPassword is wrong")
        } else {
            e
        }
    })
}

/// An audit record of a change to user `name` of `tenant`, in that tenant (and the caller's,
/// when the management tenant acts on a subtenant).
pub(super) fn audit_user(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
    activity: &str,
    name: &str,
    what: &str,
) {
    super::audit::record_change(
        state,
        principal,
        &[tenant, &principal.tenant],
        "User",
        activity,
        format!("{activity}: {name}{what}"),
    );
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    read_access(&state, &principal, &tenant).await?;
    let page = PageRequest::from_query(&query)?;
    let prefix = query.get("username").cloned();
    let groups = match query.get("groups") {
        Some(text) => text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim().parse::<i64>().map_err(|_| {
                    ApiError::invalid(
                        "users",
                        &format!("groups must be comma-separated group ids, got {s:?}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let devices = flag(&query, "onlyDevices", "users")?.unwrap_or(false);
    // Berth has no user hierarchy: nobody has sub-users, and no user is owned by another.
    let with_subusers = flag(&query, "withSubusersCount", "users")?.unwrap_or(false);
    if query.contains_key("owner") {
        return Ok(media::ok(
            "userCollection",
            &page.collection(&req, "users", Vec::new(), 0),
        ));
    }
    let t = tenant.clone();
    let (items, total) = db(&state, "users", move |c| {
        let (list, total) =
            users::list_users(c, &t, prefix.as_deref(), &groups, devices, page.window())?;
        let detailed = list
            .into_iter()
            .map(|u| {
                let direct = users::direct_roles(c, &t, &u.user_name)?;
                let groups = users::user_group_refs(c, &t, &u.user_name)?;
                Ok((u, direct, groups))
            })
            .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
        Ok((detailed, total))
    })
    .await?;
    let base = media::base_url(&req);
    let items = items
        .iter()
        .map(|(u, r, g)| {
            let mut user = user_json(&base, u, r, g);
            if with_subusers {
                user["subusersCount"] = 0.into();
            }
            user
        })
        .collect();
    Ok(media::ok(
        "userCollection",
        &page.collection(&req, "users", items, total),
    ))
}

/// The password a new user is created with. Cumulocity also takes `sendPasswordResetEmail:
/// true` instead (pyc8y sends it for a `User` made without a password) and e-mails the user a
/// link to choose one. Berth sends no e-mail: a user created that way could never sign in,
/// while the caller believed them invited. So a password is required, and the refusal says
/// why when the e-mail was asked for.
fn new_user_password(
    password: &Option<String>,
    send_reset_email: Option<bool>,
) -> Result<&str, ApiError> {
    match password.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => Ok(p),
        _ if send_reset_email == Some(true) => Err(ApiError::invalid(
            "users",
            "password is required: Berth sends no e-mail, so it cannot invite the user to choose a password (sendPasswordResetEmail); give the user a password and let them change it with PUT /user/currentUser/password",
        )),
        _ => Err(ApiError::invalid(
            "users",
            "password is required (Berth sends no e-mail, so sendPasswordResetEmail cannot replace it)",
        )),
    }
}

async fn create(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<UserBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    let tenant = path.into_inner();
    admin_access(&state, &principal, &tenant).await?;
    let body = body.into_inner();
    let name = required("users", "userName", &body.user_name)?.to_owned();
    check_person_name(&name).map_err(|r| ApiError::invalid("users", &format!("userName {r}")))?;
    let password = new_user_password(&body.password, body.send_password_reset_email)?.to_owned();
    check_new_password(&state, &tenant, &name, body.email.clone(), &password).await?;
    let (groups, direct_roles) = requested_rights(&state, &tenant, &body).await?;
    require_grantable(&principal, &direct_roles, "these roles")?;
    for group in &groups {
        require_grantable(&principal, &group.roles, &format!("group {}", group.name))?;
    }
    let hash = hash_password(password, &principal.tenant).await?;
    let user = NewUser {
        user_name: name.clone(),
        password_hash: hash,
        email: body.email,
        first_name: body.first_name,
        last_name: body.last_name,
        display_name: body.display_name,
        phone: body.phone,
        enabled: body.enabled.unwrap_or(true),
        custom_properties: body.custom_properties.unwrap_or_default(),
        bootstrap: false,
    };
    let t = tenant.clone();
    // One transaction: a refused group or role leaves no user behind.
    db(&state, "users", move |c| {
        let tx = c.transaction()?;
        users::create_user(&tx, &t, &user)?;
        for role in &direct_roles {
            users::add_user_role(&tx, &t, &user.user_name, role)?;
        }
        for group in &groups {
            users::add_member(&tx, &t, group.id, &user.user_name)?;
        }
        tx.commit()?;
        Ok(())
    })
    .await?;
    audit_user(&state, &principal, &tenant, "User created", &name, "");
    let base = media::base_url(&req);
    let body = full_user_json(&state, &base, tenant.clone(), name.clone()).await?;
    Ok(media::created(
        &req,
        "user",
        &user_self(&base, &tenant, &name),
        &body,
    ))
}

async fn get(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    read_access(&state, &principal, &tenant).await?;
    Ok(media::ok(
        "user",
        &full_user_json(&state, &media::base_url(&req), tenant, name).await?,
    ))
}

async fn update(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<UserBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    let (tenant, name) = path.into_inner();
    admin_access(&state, &principal, &tenant).await?;
    require_outranks(&state, &principal, &tenant, &name).await?;
    let body = body.into_inner();
    if body.user_name.as_ref().is_some_and(|n| *n != name) {
        return Err(ApiError::invalid("users", "userName cannot be changed"));
    }
    let password_hash = match body.password {
        Some(p) => {
            check_new_password(&state, &tenant, &name, body.email.clone(), &p).await?;
            Some(hash_password(p, &principal.tenant).await?)
        }
        None => None,
    };
    let update = UserUpdate {
        email: body.email,
        first_name: body.first_name,
        last_name: body.last_name,
        display_name: body.display_name,
        phone: body.phone,
        enabled: body.enabled,
        custom_properties: body.custom_properties,
        password_hash,
    };
    let (t, n) = (tenant.clone(), name.clone());
    db(&state, "users", move |c| {
        users::update_user(c, &t, &n, &update)
    })
    .await?;
    state.cache.invalidate_user(&tenant, &name);
    audit_user(&state, &principal, &tenant, "User updated", &name, "");
    let base = media::base_url(&req);
    Ok(media::updated(
        &req,
        "user",
        &full_user_json(&state, &base, tenant, name).await?,
    ))
}

async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    admin_access(&state, &principal, &tenant).await?;
    if name == principal.user && tenant == principal.tenant {
        return Err(ApiError::invalid("users", "You cannot delete yourself"));
    }
    require_outranks(&state, &principal, &tenant, &name).await?;
    let (t, n) = (tenant.clone(), name.clone());
    db(&state, "users", move |c| users::delete_user(c, &t, &n)).await?;
    state.cache.invalidate_user(&tenant, &name);
    audit_user(&state, &principal, &tenant, "User deleted", &name, "");
    Ok(HttpResponse::NoContent().finish())
}

async fn set_password(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    admin_access(&state, &principal, &tenant).await?;
    require_outranks(&state, &principal, &tenant, &name).await?;
    let current = required("users", "currentUserPassword", &body.current_user_password)?.to_owned();
    let new = required("users", "newPassword", &body.new_password)?.to_owned();
    check_new_password(&state, &tenant, &name, None, &new).await?;
    // The caller confirms the change with their own password.
    confirm_with_own_password(&state, &req, &principal, current).await?;
    let hash = hash_password(new, &principal.tenant).await?;
    let (t, n) = (tenant.clone(), name.clone());
    db(&state, "users", move |c| {
        users::get_person(c, &t, &n)?;
        users::set_password(c, &t, &n, &hash)
    })
    .await?;
    state.cache.invalidate_user(&tenant, &name);
    audit_user(
        &state,
        &principal,
        &tenant,
        "User updated",
        &name,
        ", password changed",
    );
    Ok(HttpResponse::Ok().finish())
}
