//! Changing an application's stored versions: activating one (a manual rollback or
//! roll-forward, by giving it the tag `latest`), re-tagging, and deleting one that does not
//! run. The store change, the audit record, the engine's leftovers and the supervisor's poke,
//! in that order, under the upload lock, so they never interleave with an upload's version
//! rules; each runs detached from the caller, so a client that leaves stops none half-way.

use std::sync::Arc;

use rusqlite::Connection;

use super::settings::seal_setting;
use super::{Apps, FlowError, settings_propagation};
use crate::auth::principal::Principal;
use crate::store::StoreError;
use crate::store::applications::{self, Application};
use crate::store::settings::Seal;
use crate::store::versions;

/// What [`activate`] did.
#[derive(Debug, Clone)]
pub struct Activation {
    pub application: Application,
    /// The version that was active before (None: the version was active already, or none was).
    pub previous: Option<String>,
}

/// Makes a stored version the active one (it takes the `latest` tag): the application shows
/// its manifest and roles, and the subscribed tenants' settings become that version's, in one
/// transaction. The supervisor then rolls it out like an upload, and rolls it back to the
/// stable version if it does not become ready. Activating the active version changes nothing.
fn make_active(
    conn: &mut Connection,
    tenant: &str,
    id: i64,
    version: &str,
    seal: &Seal<'_>,
) -> Result<Activation, StoreError> {
    let tx = conn.transaction()?;
    let before = applications::get(&tx, tenant, id)?;
    versions::require_version(&tx, id, version)?;
    if before.active_version_id.as_deref() == Some(version) {
        return Ok(Activation {
            application: before,
            previous: None,
        });
    }
    versions::set_active(&tx, id, version)?;
    let after = applications::get(&tx, tenant, id)?;
    settings_propagation::follow(&tx, &before, &after, seal)?;
    tx.commit()?;
    Ok(Activation {
        application: after,
        previous: before.active_version_id,
    })
}

/// Makes `version` the active version of the caller's application `id`. The supervisor then
/// replaces the running instances with it (rolling back to the stable version if it does not
/// become ready, as after an upload).
async fn activate(
    apps: &Apps,
    principal: &Principal,
    id: i64,
    version: &str,
) -> Result<Activation, FlowError> {
    let _guard = apps.upload_lock.lock().await;
    // The older version's resources must fit what the host can still commit, as at its upload
    // (limits or other deployments may have changed since).
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let stored = apps
        .db("applications", move |c| {
            applications::get(c, &tenant, id)?;
            crate::store::desired::version_image(c, id, &wanted)
        })
        .await?;
    if let Some(manifest) = stored.and_then(|(_, text)| manifests_schema::validate(&text).ok()) {
        super::limits::check_upload(apps, id, &principal.tenant, &manifest.manifest).await?;
    }
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let secrets = Arc::clone(&apps.secrets);
    let done = apps
        .db("applications", move |c| {
            make_active(c, &tenant, id, &wanted, &seal_setting(&secrets))
        })
        .await?;
    if let Some(previous) = &done.previous {
        let app = &done.application;
        tracing::info!(tenant = %app.owner, application = %app.name, %version, %previous, "version activated");
        apps.record(
            principal,
            &[app.owner.as_str()],
            (id, &app.name),
            "Application",
            "Version activated",
            format!(
                "Version {version} of {} activated (was {previous})",
                app.name
            ),
        );
        apps.supervisor.poke();
    }
    Ok(done)
}

/// Gives `version` of the caller's application `id` exactly `tags`, activating it first when
/// they include `latest`.
pub async fn set_tags(
    apps: &Arc<Apps>,
    principal: Principal,
    id: i64,
    version: String,
    tags: Vec<String>,
) -> Result<(), FlowError> {
    let worker = Arc::clone(apps);
    let named = version.clone();
    let task = tokio::spawn(async move {
        if tags.iter().any(|t| t == versions::LATEST) {
            activate(&worker, &principal, id, &version).await?;
        }
        let tenant = principal.tenant.clone();
        worker
            .db("applications", move |c| {
                versions::set_tags(c, &tenant, id, &version, &tags)
            })
            .await
    });
    task.await
        .map_err(|e| FlowError::Internal(format!("tagging version {named}: {e}")))?
}

/// Deletes a stored version that does not run (conflict for the active and the stable one),
/// then its image tag and package. A kill between the two leaves only what the supervisor's
/// tag sweep and the start's package sweep remove.
pub async fn delete(
    apps: &Arc<Apps>,
    principal: Principal,
    id: i64,
    version: String,
) -> Result<(), FlowError> {
    let apps = Arc::clone(apps);
    tokio::spawn(async move { remove(&apps, &principal, id, &version).await })
        .await
        .map_err(|e| FlowError::Internal(format!("deleting a version: {e}")))?
}

async fn remove(
    apps: &Apps,
    principal: &Principal,
    id: i64,
    version: &str,
) -> Result<(), FlowError> {
    let _guard = apps.upload_lock.lock().await;
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let (app, stored) = apps
        .db("applications", move |c| {
            let app = applications::get(c, &tenant, id)?;
            Ok((app, versions::delete(c, &tenant, id, &wanted)?))
        })
        .await?;
    super::deletion::discard_version_artifacts(apps, &stored).await;
    apps.record(
        principal,
        &[app.owner.as_str()],
        (id, &app.name),
        "Application",
        "Version deleted",
        format!("Version {version} of {} deleted", app.name),
    );
    Ok(())
}
