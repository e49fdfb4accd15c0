//! `/user/currentUser…`: the caller's own profile and password, and the TOTP enrolment calls
//! (`…/totpSecret…`), which Berth answers without offering a second factor.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::error::ApiError;
use super::users::{
    PasswordBody, UserBody, check_new_password, confirm_with_own_password, hash_password, role_json,
};
use super::{AppState, db, media, required};
use crate::auth::principal::Principal;
use crate::store::users::{self, UserKind, UserUpdate};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/user/currentUser", web::get().to(current_user))
        .route("/user/currentUser", web::put().to(update_current_user))
        .route(
            "/user/currentUser/password",
            web::put().to(change_own_password),
        )
        .route(
            "/user/currentUser/totpSecret/activity",
            web::get().to(totp_activity),
        )
        .route("/user/currentUser/totpSecret", web::post().to(no_totp))
        .route(
            "/user/currentUser/totpSecret/verify",
            web::post().to(no_totp),
        )
        .route(
            "/user/currentUser/totpSecret/activity",
            web::post().to(no_totp),
        );
}

/// `GET …/totpSecret/activity`: whether the caller's TOTP is active. Berth offers no second
/// factor (the login options name TOTP as the strategy Cumulocity clients know, and every
/// user's `…/tfa` says disabled), so never; clients such as go-c8y-cli ask before a login.
async fn totp_activity(_principal: Principal) -> HttpResponse {
    HttpResponse::Ok().json(json!({"isActive": false}))
}

/// The TOTP enrolment calls (a new secret, verifying a code, switching it on or off): 422 in
/// the Cumulocity error body, so a client says what the platform does not do instead of
/// reporting a missing resource.
async fn no_totp(_principal: Principal) -> Result<HttpResponse, ApiError> {
    Err(ApiError::invalid("users", "TFA with TOTP is not supported"))
}

async fn current_user(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let base = media::base_url(&req);
    let (tenant, name) = (principal.tenant.clone(), principal.user.clone());
    let user = db(&state, "users", move |c| users::get_user(c, &tenant, &name))
        .await?
        .ok_or_else(|| ApiError::unauthorized("User no longer exists"))?;
    let mut body = json!({
        "id": user.user_name,
        "self": format!("{base}/user/currentUser"),
        "userName": user.user_name,
        "effectiveRoles": principal.roles.iter().map(|r| role_json(&base, r)).collect::<Vec<_>>(),
        "devicePermissions": {},
        "shouldResetPassword": false,
        "twoFactorAuthenticationEnabled": false,
        "lastPasswordChange": user.last_password_change,
    });
    for (name, value) in [
        ("email", &user.email),
        ("firstName", &user.first_name),
        ("lastName", &user.last_name),
        ("phone", &user.phone),
    ] {
        if let Some(v) = value {
            body[name] = json!(v);
        }
    }
    Ok(media::ok("currentUser", &body))
}

async fn update_current_user(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<UserBody>,
) -> Result<HttpResponse, ApiError> {
    super::field_limits::Bounded::check_sizes(&*body)?;
    if principal.kind != UserKind::Person {
        return Err(ApiError::forbidden());
    }
    let body = body.into_inner();
    if body.password.is_some() {
        return Err(ApiError::invalid(
            "users",
            "change the password with PUT /user/currentUser/password",
        ));
    }
    // Every person may edit their own profile, but not enable/disable themselves.
    let update = UserUpdate {
        email: body.email,
        first_name: body.first_name,
        last_name: body.last_name,
        display_name: body.display_name,
        phone: body.phone,
        custom_properties: body.custom_properties,
        ..UserUpdate::default()
    };
    let (tenant, name) = (principal.tenant.clone(), principal.user.clone());
    db(&state, "users", move |c| {
        users::update_user(c, &tenant, &name, &update)
    })
    .await?;
    current_user(req, principal, state).await
}

async fn change_own_password(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    if principal.kind != UserKind::Person {
        return Err(ApiError::forbidden());
    }
    let current = required("users", "currentUserPassword", &body.current_user_password)?.to_owned();
    let new = required("users", "newPassword", &body.new_password)?.to_owned();
    check_new_password(&state, &principal.tenant, &principal.user, None, &new).await?;
    confirm_with_own_password(&state, &req, &principal, current).await?;
    let hash = hash_password(new, &principal.tenant).await?;
    let (tenant, name) = (principal.tenant.clone(), principal.user.clone());
    let generation = db(&state, "users", move |c| {
        users::set_password(c, &tenant, &name, &hash)?;
        Ok(users::auth_record(c, &tenant, &name)?.map_or(0, |r| r.generation))
    })
    .await?;
    state
        .cache
        .invalidate_user(&principal.tenant, &principal.user);
    let mut response = HttpResponse::Ok();
    super::login::renew_cookie_session(&req, &state, &mut response, &principal, generation)?;
    Ok(response.finish())
}
