//! Subscribing a tenant to an application and unsubscribing it: who may, what is offered to
//! whom, the service user and settings a subscription brings, the resource check, then the
//! row, the audit record and the supervisor. Once checked, both run detached from the caller,
//! so a client that leaves stops neither half-way.

use std::sync::Arc;

use super::settings::{seal_setting, setting_keys};
use super::{Apps, CONVERGE_LIMIT, FlowError, MICROSERVICE, require_any};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::secrets::service_context;
use crate::store::applications::{self, Application, resolved_manifest};
use crate::store::subscriptions::{self, NewSubscription};
use crate::store::tenants::{self, Tenant};
use crate::store::users::NewUser;
use crate::supervisor::Scope;

/// The tenant `tenant` if the caller may manage its subscriptions: its own (needs application
/// management) or one the caller manages, a subtenant or any tenant for the management tenant
/// (needs tenant management ADMIN/UPDATE).
pub async fn managed_tenant(
    apps: &Apps,
    principal: &Principal,
    tenant: &str,
) -> Result<Tenant, FlowError> {
    let id = tenant.to_owned();
    let found = apps
        .db("tenants", move |c| tenants::get(c, &id))
        .await?
        .ok_or_else(|| {
            FlowError::not_found("tenants", format!("There is no tenant with id = {tenant}"))
        })?;
    if found.id == principal.tenant {
        require_any(
            principal,
            &[
                roles::APPLICATION_MANAGEMENT_ADMIN,
                roles::TENANT_MANAGEMENT_ADMIN,
                roles::TENANT_MANAGEMENT_UPDATE,
            ],
        )?;
        return Ok(found);
    }
    if principal.is_management() || found.parent.as_deref() == Some(principal.tenant.as_str()) {
        require_any(
            principal,
            &[
                roles::TENANT_MANAGEMENT_ADMIN,
                roles::TENANT_MANAGEMENT_UPDATE,
            ],
        )?;
        return Ok(found);
    }
    Err(FlowError::Forbidden)
}

/// The application `id` if it is offered to the caller's tenant (the management tenant, the
/// operator, sees every one); not found otherwise, so ids of applications a tenant may not use
/// reveal nothing. `subscribed` also makes it visible, so a subscription outlives a change of
/// availability and can still be removed.
async fn visible_application(
    apps: &Apps,
    principal: &Principal,
    id: i64,
    subscribed: Option<&str>,
) -> Result<Application, FlowError> {
    let (caller, target) = (principal.tenant.clone(), subscribed.map(str::to_owned));
    let (app, parent, is_subscribed) = apps
        .db("applications", move |c| {
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
        Err(FlowError::not_found(
            "applications",
            format!("Could not find application by ID {id}"),
        ))
    }
}

/// The application a caller may subscribe `target` to: visible to the caller and offered to
/// `target` by its availability (the management tenant, the operator, may subscribe any
/// tenant to any application).
async fn subscribable(
    apps: &Apps,
    principal: &Principal,
    id: i64,
    target: &Tenant,
) -> Result<Application, FlowError> {
    let app = visible_application(apps, principal, id, None).await?;
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
    Err(FlowError::ForbiddenBecause(format!(
        "Application {} is {} and offered {offered}: tenant {} cannot subscribe to it (its owner can make it SHARED for its subtenants or MARKET for every tenant)",
        app.name, app.availability, target.id
    )))
}

/// Subscribes `target` (from [`managed_tenant`]) to application `id`: its service user
/// (a microservice's, holding `requiredRoles`), the settings options of its active manifest,
/// the row, the audit record and the supervisor's poke. Returns the application.
pub async fn subscribe(
    apps: &Arc<Apps>,
    principal: Principal,
    target: &Tenant,
    id: i64,
) -> Result<Application, FlowError> {
    let app = subscribable(apps, &principal, id, target).await?;
    let tenant = target.id.clone();
    let is_microservice = app.app_type == MICROSERVICE;
    // The service user acts in the tenant with these roles: nobody hands out roles they do not
    // hold, as for a user they create (else an application manager could subscribe an
    // application of their own asking for every role, and use its service user).
    let missing = crate::auth::grants::missing(&principal.roles, &app.required_roles);
    if is_microservice && !missing.is_empty() {
        return Err(FlowError::ForbiddenBecause(format!(
            "Subscribing to {} gives its service user {}, which you do not have; someone who has them must subscribe",
            app.name,
            missing.join(", ")
        )));
    }
    // Only a microservice has a service user. Names repeat across owners, so another type's
    // subscription naming one would reach the user of a microservice of the same name.
    let user_name = if is_microservice {
        format!("{}{}", crate::store::users::SERVICE_USER_PREFIX, app.name)
    } else {
        String::new()
    };
    let password = apps
        .secrets
        .random_token(32)
        .map_err(|e| FlowError::Internal(e.to_string()))?;
    let sealed = apps
        .secrets
        .seal(&service_context(&tenant, &user_name), &password)
        .map_err(|e| FlowError::Internal(e.to_string()))?;
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
            &seal_setting(&apps.secrets),
        )
        .map_err(FlowError::store("applications"))?,
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
        agreed: app.agreed(),
        settings,
    };
    // Detached from the caller from here: a client that leaves does not stop a subscription
    // half-way (recorded but the supervisor never told, or no audit record).
    let task = tokio::spawn(record_subscription(
        Arc::clone(apps),
        principal,
        app.clone(),
        new,
    ));
    task.await
        .map_err(|e| FlowError::Internal(format!("subscribing {tenant}: {e}")))??;
    Ok(app)
}

/// Records the subscription, then tells the supervisor and the audit log.
async fn record_subscription(
    apps: Arc<Apps>,
    principal: Principal,
    app: Application,
    new: NewSubscription,
) -> Result<(), FlowError> {
    let tenant = new.tenant.clone();
    let is_microservice = app.app_type == MICROSERVICE;
    // The new deployment's cost is checked and the subscription recorded under the upload
    // lock, so two subscriptions (or an upload) cannot both fit the same headroom.
    let guard = apps.upload_lock.lock().await;
    if let (true, Some(manifest)) = (is_microservice, resolved_manifest(&app)) {
        super::limits::check_subscription(&apps, app.id, &app.owner, &manifest, &tenant).await?;
    }
    apps.db("applications", move |c| subscriptions::subscribe(c, &new))
        .await?;
    drop(guard);
    crate::fault::point(crate::fault::SUBSCRIBE_COMMITTED).await;
    apps.record(
        &principal,
        &[tenant.as_str(), app.owner.as_str()],
        (app.id, &app.name),
        "Subscription",
        "Subscribed",
        format!("Tenant {tenant} subscribed to {}", app.name),
    );
    apps.supervisor.poke();
    Ok(())
}

/// Unsubscribes `tenant` (from [`managed_tenant`]) from application `id`: the row, its service
/// user and the settings its manifest wrote, the audit record, then the containers (answering
/// once they are gone, so the caller sees the result).
pub async fn unsubscribe(
    apps: &Arc<Apps>,
    principal: Principal,
    tenant: String,
    id: i64,
) -> Result<(), FlowError> {
    let app = visible_application(apps, &principal, id, Some(&tenant)).await?;
    // Detached from the caller: a client that leaves does not keep the containers running
    // until the next periodic pass.
    let task = tokio::spawn(remove_subscription(
        Arc::clone(apps),
        principal,
        app,
        tenant.clone(),
    ));
    task.await
        .map_err(|e| FlowError::Internal(format!("unsubscribing {tenant}: {e}")))?
}

async fn remove_subscription(
    apps: Arc<Apps>,
    principal: Principal,
    app: Application,
    tenant: String,
) -> Result<(), FlowError> {
    let (category, keys) = setting_keys(&app);
    let (t, id) = (tenant.clone(), app.id);
    let removed = apps
        .db("applications", move |c| {
            subscriptions::unsubscribe(c, id, &t, &category, &keys)
        })
        .await?;
    crate::fault::point(crate::fault::UNSUBSCRIBE_COMMITTED).await;
    apps.cache.invalidate_user(&tenant, &removed.service_user);
    apps.record(
        &principal,
        &[tenant.as_str(), app.owner.as_str()],
        (app.id, &app.name),
        "Subscription",
        "Unsubscribed",
        format!("Tenant {tenant} unsubscribed from {}", app.name),
    );
    let scope = Scope::Subscription {
        application: app.id,
        tenant,
    };
    apps.supervisor.converge(scope, CONVERGE_LIMIT).await;
    Ok(())
}
