//! Login: `GET /tenant/loginOptions` (no auth), OAI-Secure `POST /tenant/oauth` (cookies) and
//! `POST /tenant/oauth/token` (JSON token), `POST /user/logout` and
//! `POST /user/logout/{tenant}/allUsers`.

use std::collections::HashMap;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, db, media};
use crate::auth::jwt::{self, Claims};
use crate::auth::principal::{self, Principal, TOKEN_COOKIE, XSRF_COOKIE};
use crate::auth::roles;
use crate::store::tenants;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenant/loginOptions", web::get().to(login_options))
        .route("/tenant/oauth", web::post().to(login_cookie))
        .route("/tenant/oauth/token", web::post().to(login_token))
        .route("/user/logout", web::post().to(logout))
        .route(
            "/user/logout/{tenant}/allUsers",
            web::post().to(logout_all_users),
        );
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The tenant a login is for: `?tenant_id=`, a `tenant/` prefix on the user name, or the host.
async fn login_tenant(
    state: &AppState,
    req: &HttpRequest,
    query: &HashMap<String, String>,
    username: &str,
) -> Result<(String, String), ApiError> {
    if let Some((tenant, user)) = username.split_once('/') {
        return Ok((tenant.to_owned(), user.to_owned()));
    }
    match query.get("tenant_id").filter(|t| !t.is_empty()) {
        Some(t) => Ok((t.clone(), username.to_owned())),
        None => Ok((
            principal::tenant_for_host(state, principal::request_host(req)).await?,
            username.to_owned(),
        )),
    }
}

async fn login_options(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    if query.contains_key("tenantId") && query.get("management").is_some_and(|m| m == "true") {
        return Err(ApiError::bad_request(
            "LoginOptions",
            "Use either tenantId or management=true, not both",
        ));
    }
    let tenant = match (query.get("tenantId"), query.get("management")) {
        (Some(t), _) => t.clone(),
        (None, Some(m)) if m == "true" => tenants::MANAGEMENT.to_owned(),
        _ => principal::tenant_for_host(state.get_ref(), principal::request_host(&req)).await?,
    };
    let check = tenant.clone();
    if !db(&state, "tenants", move |c| tenants::exists(c, &check)).await? {
        return Err(ApiError::not_found(
            "LoginOptions",
            &format!("There is no tenant with id = {tenant}"),
        ));
    }
    let base = media::base_url(&req);
    let body = json!({
        "self": format!("{base}/tenant/loginOptions"),
        "loginOptions": [
            {
                "id": "basic",
                "self": format!("{base}/tenant/loginOptions/basic"),
                "type": "BASIC",
                "_type": "BasicAuthConfig",
                "userManagementSource": "INTERNAL",
                "visibleOnLoginPage": true,
                "tfaStrategy": "TOTP",
                "enforceStrength": false,
                "greenMinLength": crate::auth::password::MIN_LENGTH,
                "strengthValidity": 0,
            },
            {
                "id": "oauth2_internal",
                "self": format!("{base}/tenant/loginOptions/oauth2_internal"),
                "type": "OAUTH2_INTERNAL",
                "_type": "OAuth2Config",
                "grantType": "PASSWORD",
                "initRequest": format!("{base}/tenant/oauth?tenant_id={tenant}"),
                "userManagementSource": "INTERNAL",
                "visibleOnLoginPage": true,
                "tfaStrategy": "TOTP",
                "enforceStrength": false,
                "greenMinLength": crate::auth::password::MIN_LENGTH,
                "strengthValidity": 0,
            }
        ]
    });
    Ok(media::ok("loginOptionCollection", &body))
}

/// Checks the form and the password, and signs a token for the user.
async fn issue_token(
    state: &AppState,
    req: &HttpRequest,
    query: &HashMap<String, String>,
    form: LoginForm,
) -> Result<(String, Claims), ApiError> {
    if !form
        .grant_type
        .as_deref()
        .is_some_and(|g| g.eq_ignore_ascii_case("password"))
    {
        return Err(ApiError::bad_request(
            "security",
            "grant_type must be PASSWORD",
        ));
    }
    let (Some(username), Some(password)) = (form.username, form.password) else {
        return Err(ApiError::unauthorized(
            "Invalid credentials! : username and password are required",
        ));
    };
    let (tenant, user) = login_tenant(state, req, query, &username).await?;
    let source = principal::request_source(req);
    let principal = principal::check_password(state, source, tenant, user, password).await?;
    sign_token(
        state,
        req,
        &principal.tenant,
        &principal.user,
        principal.generation,
    )
}

/// Signs a new login token for `user` in credential generation `generation`.
fn sign_token(
    state: &AppState,
    req: &HttpRequest,
    tenant: &str,
    user: &str,
    generation: i64,
) -> Result<(String, Claims), ApiError> {
    let now = jwt::now();
    let random = |n| {
        state
            .secrets
            .random_token(n)
            .map_err(|e| ApiError::internal(&e.to_string()))
    };
    let claims = Claims {
        iss: jwt::ISSUER.to_owned(),
        aud: {
            let origin = super::origin::of(req);
            jwt::audience(origin.https, &origin.host)
        },
        sub: user.to_owned(),
        ten: tenant.to_owned(),
        xsrf_token: random(32)?,
        jti: random(24)?,
        iat: now,
        nbf: now,
        exp: now + state.config.token_lifetime.as_secs(),
        generation,
    };
    let token = jwt::issue(state.secrets.jwt_key(), &claims)
        .map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok((token, claims))
}

fn cookie<'a>(
    req: &HttpRequest,
    name: &'a str,
    value: String,
    http_only: bool,
    max_age_secs: i64,
) -> Cookie<'a> {
    Cookie::build(name, value)
        .path("/")
        .http_only(http_only)
        .secure(super::origin::of(req).https)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}

async fn login_cookie(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, ApiError> {
    // A form of another site's page (login CSRF: the victim signed in to the attacker's
    // account) was refused by `edge::cross_site` before it came here.
    let (token, claims) = issue_token(&state, &req, &query, form.into_inner()).await?;
    let mut response = HttpResponse::Ok();
    set_session_cookies(&req, &state, &mut response, token, claims);
    Ok(response.finish())
}

fn set_session_cookies(
    req: &HttpRequest,
    state: &AppState,
    response: &mut actix_web::HttpResponseBuilder,
    token: String,
    claims: Claims,
) {
    let max_age = i64::try_from(state.config.token_lifetime.as_secs()).unwrap_or(i64::MAX);
    response
        .cookie(cookie(req, TOKEN_COOKIE, token, true, max_age))
        // The XSRF cookie must be readable by the page's script, which echoes it in X-XSRF-TOKEN.
        .cookie(cookie(req, XSRF_COOKIE, claims.xsrf_token, false, max_age));
}

/// After a user changed their own password in a cookie session, that session's token is of
/// the old credential generation: as Cumulocity does, the answer sets a new cookie pair.
pub fn renew_cookie_session(
    req: &HttpRequest,
    state: &AppState,
    response: &mut actix_web::HttpResponseBuilder,
    principal: &Principal,
    generation: i64,
) -> Result<(), ApiError> {
    if principal.token.is_none() || !matches!(principal::session_token(req), Ok(Some(_))) {
        return Ok(());
    }
    let (token, claims) = sign_token(state, req, &principal.tenant, &principal.user, generation)?;
    set_session_cookies(req, state, response, token, claims);
    Ok(())
}

async fn login_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, ApiError> {
    let (token, _) = issue_token(&state, &req, &query, form.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json!({"access_token": token}).to_string()))
}

async fn logout(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &principal.token {
        let (jti, exp) = (token.jti.clone(), token.expires_at);
        let (tenant, user) = (principal.tenant.clone(), principal.user.clone());
        db(&state, "security", move |c| {
            crate::store::tokens::revoke_token(c, &tenant, &user, &jti, exp)
        })
        .await?;
        state
            .cache
            .invalidate_user(&principal.tenant, &principal.user);
    }
    Ok(HttpResponse::Ok()
        .cookie(cookie(&req, TOKEN_COOKIE, String::new(), true, 0))
        .cookie(cookie(&req, XSRF_COOKIE, String::new(), false, 0))
        .finish())
}

/// Ends every OAI-Secure session (cookie and Bearer tokens) of a tenant's users; Basic
/// credentials are unaffected. Needs `ROLE_USER_MANAGEMENT_ADMIN` in that tenant, or in the
/// management tenant with `ROLE_TENANT_MANAGEMENT_ADMIN` for another tenant.
async fn logout_all_users(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    principal.require(roles::USER_MANAGEMENT_ADMIN)?;
    if tenant != principal.tenant {
        if !principal.is_management() {
            return Err(ApiError::forbidden());
        }
        principal.require(roles::TENANT_MANAGEMENT_ADMIN)?;
        let id = tenant.clone();
        if !db(&state, "tenants", move |c| tenants::exists(c, &id)).await? {
            return Err(ApiError::not_found(
                "security",
                &format!("There is no tenant with id = {tenant}"),
            ));
        }
    }
    let t = tenant.clone();
    db(&state, "security", move |c| {
        crate::store::tokens::revoke_tenant_tokens(c, &t)
    })
    .await?;
    state.cache.invalidate_tenant(&tenant);
    Ok(HttpResponse::Ok().finish())
}
