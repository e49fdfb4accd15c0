//! Deleting an application, or a tenant with every application it owns: one transaction removes
//! the rows and records the intent to remove what they owned outside the database, then that is
//! removed (containers through the supervisor, images, tags, package files). What a kill
//! interrupts is finished at the next start ([`super::intents`]). Both run detached from the
//! caller, so a client that leaves stops neither half-way.

use std::sync::Arc;

use super::intents::{finish_deletion, retry_later};
use super::settings::setting_keys;
use super::{Apps, CONVERGE_LIMIT, FlowError};
use crate::auth::principal::Principal;
use crate::store::applications::{self, ManifestOptions, Version};
use crate::store::intents::Intent;
use crate::store::{subscriptions, tenants};
use crate::supervisor::Scope;

/// Deletes the caller's application `id` with its versions, bootstrap user, subscriptions
/// and their service users, and the settings its manifest wrote in each subscriber's tenant
/// (what a tenant wrote stays); returns once its containers, images and packages are gone
/// (or left to a retry).
pub async fn delete_application(
    apps: &Arc<Apps>,
    principal: Principal,
    id: i64,
) -> Result<(), FlowError> {
    tokio::spawn(remove_application(Arc::clone(apps), principal, id))
        .await
        .map_err(|e| FlowError::Internal(format!("deleting application {id}: {e}")))?
}

async fn remove_application(
    apps: Arc<Apps>,
    principal: Principal,
    id: i64,
) -> Result<(), FlowError> {
    let tenant = principal.tenant.clone();
    let _upload = apps.upload_lock.lock().await;
    let package_dir = format!("{}/{tenant}/{id}", crate::PACKAGES_DIR);
    let (app, subscribers, intent_id, intent) = apps
        .db("applications", move |c| {
            let app = applications::get(c, &tenant, id)?;
            let subscribers = subscriptions::of_application(c, id)?;
            let (category, keys) = setting_keys(&app);
            let options = ManifestOptions { category, keys };
            let (intent_id, intent) = applications::delete(c, &tenant, id, &options, &package_dir)?;
            Ok((app, subscribers, intent_id, intent))
        })
        .await?;
    crate::fault::point(crate::fault::DELETE_COMMITTED).await;
    if let Some(user) = &app.bootstrap_user {
        apps.cache.invalidate_user(&app.owner, user);
    }
    for subscription in &subscribers {
        apps.cache
            .invalidate_user(&subscription.tenant, &subscription.service_user);
    }
    apps.record(
        &principal,
        &[app.owner.as_str()],
        (id, &app.name),
        "Application",
        "Deleted",
        format!("Application {} deleted", app.name),
    );
    if !finish_deletion(&apps, intent_id, &intent).await {
        retry_later(
            Arc::clone(&apps),
            intent_id,
            Intent::DeleteApplication(intent),
        );
    }
    Ok(())
}

/// Deletes tenant `id` with its applications in one transaction (its users, options and
/// subscriptions go by the foreign keys; its applications' subscriptions in other tenants
/// with their service users and settings too), then finishes each application's deletion as
/// [`delete_application`] does, and waits for its own subscriptions' containers to go.
pub async fn delete_tenant(apps: &Arc<Apps>, id: String) -> Result<(), FlowError> {
    tokio::spawn(remove_tenant(Arc::clone(apps), id))
        .await
        .map_err(|e| FlowError::Internal(format!("deleting tenant: {e}")))?
}

async fn remove_tenant(apps: Arc<Apps>, id: String) -> Result<(), FlowError> {
    // Under the upload lock: no upload to one of its applications lands half-way through.
    let _upload = apps.upload_lock.lock().await;
    let tenant_id = id.clone();
    let deleted = apps
        .db("tenants", move |c| {
            tenants::delete(c, &tenant_id, |app| {
                let (category, keys) = setting_keys(app);
                let package_dir = format!("{}/{}/{}", crate::PACKAGES_DIR, app.owner, app.id);
                (ManifestOptions { category, keys }, package_dir)
            })
        })
        .await?;
    let Some(deleted) = deleted else {
        return Err(FlowError::not_found(
            "security",
            format!("There is no tenant with id = {id}"),
        ));
    };
    crate::fault::point(crate::fault::TENANT_DELETE_COMMITTED).await;
    apps.cache.invalidate_tenant(&id);
    for (tenant, user) in &deleted.service_users {
        apps.cache.invalidate_user(tenant, user);
    }
    for (intent_id, intent) in deleted.applications {
        if !finish_deletion(&apps, intent_id, &intent).await {
            retry_later(
                Arc::clone(&apps),
                intent_id,
                Intent::DeleteApplication(intent),
            );
        }
    }
    // Its own subscriptions' deployments go too (the supervisor converges on the rows).
    apps.supervisor
        .converge(Scope::Tenant(id), CONVERGE_LIMIT)
        .await;
    Ok(())
}

/// Removes the Berth tag (and so the image, unless still used) and the stored package of a
/// version whose row is gone. Failures are logged: the row is the source of truth.
pub async fn discard_version_artifacts(apps: &Apps, version: &Version) {
    if let Err(e) = apps.runtime.remove_image(&version.image_tag).await {
        tracing::warn!(tag = %version.image_tag, error = %e, "could not remove image tag");
    }
    let path = apps.data_dir.join(&version.package_file);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove package");
    }
}
