//! `/tenant/tenants/{tenantId}/applications…` (subscribe, list, unsubscribe) and the bootstrap
//! user's `/application/currentApplication/subscriptions` and `…/settings`.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::applications::{CONVERGE_LIMIT, MICROSERVICE, application_json};
use super::error::ApiError;
use super::paging::PageRequest;
use super::{AppState, db, media};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::secrets::{Secrets, service_context, setting_default_context};
use crate::store::StoreError;
use crate::store::applications::{self, Application, resolved_manifest};
use crate::store::subscriptions::{self, CategoryClaim, NewSubscription};
use crate::store::tenants;
use crate::store::users::{NewUser, UserKind};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenant/tenants/{tenant}/applications", web::get().to(list))
        .route(
            "/tenant/tenants/{tenant}/applications",
            web::post().to(subscribe),
        )
        .route(
            "/tenant/tenants/{tenant}/applications/{id}",
            web::delete().to(unsubscribe),
        )
        .route(
            "/application/currentApplication/subscriptions",
            web::get().to(current_subscriptions),
        )
        .configure(super::current_settings::routes);
}

#[derive(Debug, Deserialize)]
struct ReferenceBody {
    application: Option<Map<String, Value>>,
}

impl ReferenceBody {
    /// The application id from `{"application":{"id":…}}` or `{"application":{"self":…}}`.
    fn application_id(&self) -> Result<i64, ApiError> {
        let bad = || {
            ApiError::invalid(
                "applications",
                "body must be {\"application\": {\"id\": \"<id>\"}} or {\"application\": {\"self\": \"<application URL>\"}}",
            )
        };
        let app = self.application.as_ref().ok_or_else(bad)?;
        let text = match (app.get("id"), app.get("self")) {
            (Some(Value::String(id)), _) => id.clone(),
            (Some(Value::Number(id)), _) => id.to_string(),
            (_, Some(Value::String(url))) => url
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            _ => return Err(bad()),
        };
        text.parse().map_err(|_| {
            ApiError::not_found(
                "applications",
                &format!("Could not find application by ID {text}"),
            )
        })
    }
}

/// The subscription target tenant must be the caller's own (needs application management) or
/// one the caller manages: a subtenant, or any tenant for the management tenant (needs tenant
/// management ADMIN/UPDATE).
async fn check_manage(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
) -> Result<tenants::Tenant, ApiError> {
    let id = tenant.to_owned();
    let found = db(state, "tenants", move |c| tenants::get(c, &id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("tenants", &format!("There is no tenant with id = {tenant}"))
        })?;
    if found.id == principal.tenant {
        principal.require_any(&[
            roles::APPLICATION_MANAGEMENT_ADMIN,
            roles::TENANT_MANAGEMENT_ADMIN,
            roles::TENANT_MANAGEMENT_UPDATE,
        ])?;
        return Ok(found);
    }
    if principal.is_management() || found.parent.as_deref() == Some(principal.tenant.as_str()) {
        principal.require_any(&[
            roles::TENANT_MANAGEMENT_ADMIN,
            roles::TENANT_MANAGEMENT_UPDATE,
        ])?;
        return Ok(found);
    }
    Err(ApiError::forbidden())
}

/// The application `id` if it is offered to the caller's tenant (the management tenant, the
/// operator, sees every one); 404 otherwise, so ids of applications a tenant may not use
/// reveal nothing. `subscribed` also makes it visible, so a subscription outlives a change of
/// availability and can still be removed.
async fn visible_application(
    state: &AppState,
    principal: &Principal,
    id: i64,
    subscribed: Option<&str>,
) -> Result<Application, ApiError> {
    let (caller, target) = (principal.tenant.clone(), subscribed.map(str::to_owned));
    let (app, parent, is_subscribed) = db(state, "applications", move |c| {
        let app = applications::get_any(c, id)?;
        let parent = tenants::get(c, &caller)?.and_then(|t| t.parent);
        let is_subscribed = match &target {
            Some(t) => subscriptions::get(c, id, t)?.is_some(),
            None => false,
        };
        Ok((app, parent, is_subscribed))
    })
    .await?;
    let visible = principal.is_management()
        || is_subscribed
        || subscriptions::offered_to(
            &app.availability,
            &app.owner,
            &principal.tenant,
            parent.as_deref(),
        );
    if visible {
        Ok(app)
    } else {
        Err(ApiError::not_found(
            "applications",
            &format!("Could not find application by ID {id}"),
        ))
    }
}

/// The application a caller may subscribe `target` to: visible to the caller and offered to
/// `target` by its availability (the management tenant, the operator, may subscribe any
/// tenant to any application).
async fn subscribable(
    state: &AppState,
    principal: &Principal,
    id: i64,
    target: &tenants::Tenant,
) -> Result<Application, ApiError> {
    let app = visible_application(state, principal, id, None).await?;
    if principal.is_management()
        || subscriptions::offered_to(
            &app.availability,
            &app.owner,
            &target.id,
            target.parent.as_deref(),
        )
    {
        return Ok(app);
    }
    let offered = match app.availability.as_str() {
        "SHARED" => format!("only to tenant {} and its subtenants", app.owner),
        _ => format!("only to its owner tenant {}", app.owner),
    };
    Err(ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        "security/Forbidden",
        &format!(
            "Application {} is {} and offered {offered}: tenant {} cannot subscribe to it (its owner can make it SHARED for its subtenants or MARKET for every tenant)",
            app.name, app.availability, target.id
        ),
    ))
}

/// The settings category and keys of an application's active manifest.
pub fn setting_keys(app: &Application) -> (String, Vec<String>) {
    let manifest = resolved_manifest(app);
    let category = manifest
        .as_ref()
        .map(|m| m.settings_category_or(&app.name).to_owned())
        .unwrap_or_else(|| app.name.clone());
    let keys = manifest
        .map(|m| m.settings.into_iter().map(|s| s.key).collect())
        .unwrap_or_default();
    (category, keys)
}

/// An upload's check: the new manifest's settings category must be the application's own
/// (422 naming it otherwise).
pub async fn check_manifest_category(
    state: &AppState,
    app: &Application,
    manifest: &manifests_schema::Manifest,
) -> Result<(), ApiError> {
    let category = manifest.settings_category_or(&app.name).to_owned();
    let (id, c) = (app.id, category.clone());
    let claim = db(state, "applications", move |conn| {
        subscriptions::category_claim(conn, id, &c)
    })
    .await?;
    let why = match claim {
        CategoryClaim::Free => return Ok(()),
        CategoryClaim::Reserved => "is reserved for the platform's own tenant options",
        CategoryClaim::Taken => "is already the settings category of another application",
    };
    Err(ApiError::invalid(
        "applications",
        &format!(
            "Settings category {category:?} {why}; set \"settingsCategory\" in cumulocity.json to a category of this application's own (letters, digits and '.')"
        ),
    ))
}

/// Seals a setting's value for a tenant, under the option's context.
pub fn seal_setting(
    secrets: &Secrets,
) -> impl Fn(&str, &str, &str, &str) -> Result<String, StoreError> + '_ {
    move |tenant, category, key, value| {
        secrets
            .seal_setting_for(tenant, category, key, value)
            .map_err(|e| StoreError::Seal(e.to_string()))
    }
}

/// The manifest as stored for an application: `credentials.` defaults sealed under their
/// setting's context, so neither the database nor a response holds them in clear.
pub fn stored_manifest(
    secrets: &Secrets,
    app_name: &str,
    manifest: &manifests_schema::Manifest,
) -> Result<Value, StoreError> {
    let category = manifest.settings_category_or(app_name);
    let mut value = serde_json::to_value(manifest)?;
    let settings = value.get_mut("settings").and_then(Value::as_array_mut);
    for setting in settings.into_iter().flatten() {
        let Some(key) = setting["key"].as_str().map(str::to_owned) else {
            continue;
        };
        if let (true, Some(clear)) = (
            key.starts_with(subscriptions::SEALED_PREFIX),
            setting["defaultValue"].as_str(),
        ) {
            let sealed = secrets
                .seal(&setting_default_context(category, &key), clear)
                .map_err(|e| StoreError::Seal(e.to_string()))?;
            setting["defaultValue"] = Value::String(sealed);
        }
    }
    Ok(value)
}

fn reference_json(base: &str, tenant: &str, app: &Application) -> Value {
    json!({
        "self": format!("{base}/tenant/tenants/{tenant}/applications/{}", app.id),
        "application": application_json(base, app),
    })
}

async fn subscribe(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ReferenceBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let target = check_manage(&state, &principal, &tenant).await?;
    let app = subscribable(&state, &principal, body.application_id()?, &target).await?;
    let is_microservice = app.app_type == MICROSERVICE;
    let user_name = format!("service_{}", app.name);
    let password = state
        .secrets
        .random_token(32)
        .map_err(|e| ApiError::internal(&e.to_string()))?;
    let sealed = state
        .secrets
        .seal(&service_context(&tenant, &user_name), &password)
        .map_err(|e| ApiError::internal(&e.to_string()))?;
    let password_hash = if is_microservice {
        crate::auth::machine_secret::hash(&password)
    } else {
        String::new()
    };
    let settings = match resolved_manifest(&app) {
        Some(manifest) => subscriptions::manifest_settings(
            &tenant,
            &app.name,
            &manifest,
            &seal_setting(&state.secrets),
        )
        .map_err(ApiError::store("applications"))?,
        None => Vec::new(),
    };
    let new = NewSubscription {
        application_id: app.id,
        tenant: tenant.clone(),
        service_user: NewUser {
            user_name,
            password_hash,
            enabled: true,
            ..NewUser::default()
        },
        create_service_user: is_microservice,
        service_password_sealed: sealed,
        required_roles: app.required_roles.clone(),
        settings,
    };
    // Detached from the request from here: a client that leaves does not stop a subscription
    // half-way (recorded but the supervisor never told, or no audit record).
    let task = tokio::spawn(record_subscription(
        state.clone().into_inner(),
        principal,
        app.clone(),
        new,
    ));
    task.await
        .map_err(|e| ApiError::internal(&format!("subscribing {tenant}: {e}")))??;
    let base = media::base_url(&req);
    let body = reference_json(&base, &tenant, &app);
    Ok(media::created(
        &req,
        "applicationReference",
        &format!("{base}/tenant/tenants/{tenant}/applications/{}", app.id),
        &body,
    ))
}

/// Records the subscription, then tells the supervisor and the audit log.
async fn record_subscription(
    state: Arc<AppState>,
    principal: Principal,
    app: Application,
    new: NewSubscription,
) -> Result<(), ApiError> {
    let tenant = new.tenant.clone();
    let is_microservice = app.app_type == MICROSERVICE;
    // The new deployment's cost is checked and the subscription recorded under the upload
    // lock, so two subscriptions (or an upload) cannot both fit the same headroom.
    let guard = state.upload_lock.lock().await;
    if let (true, Some(manifest)) = (is_microservice, resolved_manifest(&app)) {
        super::limits::check_subscription(&state, app.id, &app.owner, &manifest, &tenant).await?;
    }
    db(&state, "applications", move |c| {
        subscriptions::subscribe(c, &new)
    })
    .await?;
    drop(guard);
    crate::fault::point(crate::fault::SUBSCRIBE_COMMITTED).await;
    super::audit::record_action(
        &state,
        &principal,
        &[tenant.as_str(), app.owner.as_str()],
        (app.id, &app.name),
        "Subscription",
        "Subscribed",
        format!("Tenant {tenant} subscribed to {}", app.name),
    );
    state.supervisor.poke();
    Ok(())
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let id = tenant.clone();
    let found = db(&state, "tenants", move |c| tenants::get(c, &id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("tenants", &format!("There is no tenant with id = {tenant}"))
        })?;
    if found.id == principal.tenant {
        principal.require_any(&[
            roles::APPLICATION_MANAGEMENT_READ,
            roles::APPLICATION_MANAGEMENT_ADMIN,
            roles::TENANT_MANAGEMENT_READ,
            roles::TENANT_MANAGEMENT_ADMIN,
        ])?;
    } else if principal.is_management()
        || found.parent.as_deref() == Some(principal.tenant.as_str())
    {
        principal.require_any(&[
            roles::TENANT_MANAGEMENT_READ,
            roles::TENANT_MANAGEMENT_ADMIN,
        ])?;
    } else {
        return Err(ApiError::forbidden());
    }
    let page = PageRequest::from_query(&query)?;
    let t = tenant.clone();
    let (apps, total) = db(&state, "applications", move |c| {
        let (ids, total) = subscriptions::of_tenant(c, &t, page.window())?;
        let apps = ids
            .into_iter()
            .map(|id| applications::get_any(c, id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((apps, total))
    })
    .await?;
    let base = media::base_url(&req);
    let items = apps
        .iter()
        .map(|a| reference_json(&base, &tenant, a))
        .collect();
    Ok(media::ok(
        "applicationReferenceCollection",
        &page.collection(&req, "references", items, total),
    ))
}

async fn unsubscribe(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id_text) = path.into_inner();
    check_manage(&state, &principal, &tenant).await?;
    let id: i64 = id_text.parse().map_err(|_| {
        ApiError::not_found(
            "applications",
            &format!("Could not find application by ID {id_text}"),
        )
    })?;
    let app = visible_application(&state, &principal, id, Some(&tenant)).await?;
    // Detached from the request: a client that leaves does not keep the containers running
    // until the next periodic pass.
    let task = tokio::spawn(remove_subscription(
        state.into_inner(),
        principal,
        app,
        tenant.clone(),
    ));
    task.await
        .map_err(|e| ApiError::internal(&format!("unsubscribing {tenant}: {e}")))??;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes the subscription, then its containers (answering once they are gone, so the caller
/// sees the result of the unsubscribe).
async fn remove_subscription(
    state: Arc<AppState>,
    principal: Principal,
    app: Application,
    tenant: String,
) -> Result<(), ApiError> {
    let (category, keys) = setting_keys(&app);
    let (t, id) = (tenant.clone(), app.id);
    let removed = db(&state, "applications", move |c| {
        subscriptions::unsubscribe(c, id, &t, &category, &keys)
    })
    .await?;
    crate::fault::point(crate::fault::UNSUBSCRIBE_COMMITTED).await;
    state.cache.invalidate_user(&tenant, &removed.service_user);
    super::audit::record_action(
        &state,
        &principal,
        &[tenant.as_str(), app.owner.as_str()],
        (app.id, &app.name),
        "Subscription",
        "Unsubscribed",
        format!("Tenant {tenant} unsubscribed from {}", app.name),
    );
    state.supervisor.converge(CONVERGE_LIMIT).await;
    Ok(())
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
