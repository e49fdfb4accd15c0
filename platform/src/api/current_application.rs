//! `/application/currentApplication…`: what a microservice's bootstrap user reads about its own
//! application (the application, its subscriptions with their service users' credentials, and,
//! in `current_settings`, its settings).

use actix_web::{HttpRequest, HttpResponse, web};
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
        "/application/currentApplication/subscriptions",
        web::get().to(current_subscriptions),
    );
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
