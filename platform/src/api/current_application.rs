//! `/application/currentApplication…`: what a microservice's bootstrap user reads about its own
//! application (the application, its subscriptions with their service users' credentials, and,
//! in `current_settings`, its settings). It cannot change it: `PUT` is answered 405.

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

use super::applications::application_json;
use super::error::ApiError;
use super::{AppState, db, media};
use crate::auth::principal::Principal;
use crate::secrets::service_context;
use crate::store::applications::{self, Application};
use crate::store::subscriptions;
use crate::store::users::UserKind;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/application/currentApplication",
        web::get().to(current_application),
    )
    .route(
        "/application/currentApplication",
        web::put().to(update_current_application),
    )
    .route(
        "/application/currentApplication/subscriptions",
        web::get().to(current_subscriptions),
    );
}

/// `PUT /application/currentApplication`: the contract's self-update of a microservice's
/// application, deprecated and for legacy (non-Kubernetes) hosting; the SDKs of hosted
/// services do not call it. Not offered: the bootstrap user's credentials are in every
/// container of the service, so any of its code could change what its owner's administrators
/// decide (availability, roles, context path, and with them what subscribers agreed to). 405
/// with `Allow: GET` in the error body, after the same checks as `GET` (401, 403 for any user
/// but a bootstrap user, 404 when its application is gone).
async fn update_current_application(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let app = bootstrap_application(&state, &principal).await?;
    let mut response = ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "applications/Method Not Allowed",
        &format!(
            "A microservice cannot change its own application: PUT /application/currentApplication (deprecated, for legacy hosting) is not supported. Administrators of tenant {} change it with PUT /application/applications/{}",
            app.owner, app.id
        ),
    )
    .error_response();
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static("GET"),
    );
    Ok(response)
}

/// The application of the calling bootstrap user; 403 for any other kind of user.
pub async fn bootstrap_application(
    state: &AppState,
    principal: &Principal,
) -> Result<Application, ApiError> {
    if principal.kind != UserKind::Bootstrap {
        return Err(ApiError::forbidden());
    }
    let (tenant, user) = (principal.tenant.clone(), principal.user.clone());
    db(state, "applications", move |c| {
        applications::by_bootstrap_user(c, &tenant, &user)
    })
    .await?
    .ok_or_else(|| {
        ApiError::not_found(
            "applications",
            "The bootstrap user's application no longer exists",
        )
    })
}

async fn current_subscriptions(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let app = bootstrap_application(&state, &principal).await?;
    let id = app.id;
    let subs = db(&state, "applications", move |c| {
        subscriptions::of_application(c, id)
    })
    .await?;
    let mut users = Vec::new();
    for sub in subs {
        let password = state
            .secrets
            .open(
                &service_context(&sub.tenant, &sub.service_user),
                &sub.service_password_sealed,
            )
            .map_err(|e| ApiError::internal(&e.to_string()))?;
        users.push(json!({"tenant": sub.tenant, "name": sub.service_user, "password": password}));
    }
    let base = media::base_url(&req);
    Ok(media::ok(
        "applicationUserCollection",
        &json!({"users": users, "self": format!("{base}/application/currentApplication/subscriptions")}),
    ))
}

async fn current_application(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let app = bootstrap_application(&state, &principal).await?;
    Ok(media::ok(
        "application",
        &application_json(&media::base_url(&req), &app),
    ))
}
