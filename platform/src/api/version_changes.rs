//! Activating a stored version (a manual rollback or roll-forward) and deleting one: the store
//! change, the audit record, the engine's leftovers and the supervisor's poke, in that order.
//! Both run under the upload lock, so they never interleave with an upload's version rules.

use std::sync::Arc;

use super::AppState;
use super::error::ApiError;
use super::subscriptions::seal_setting;
use crate::auth::principal::Principal;
use crate::store::versions::{self, Activation};

/// Makes `version` the active version of the caller's application `id`. The supervisor then
/// replaces the running instances with it (rolling back to the stable version if it does not
/// become ready, as after an upload).
pub async fn activate(
    state: &Arc<AppState>,
    principal: &Principal,
    id: i64,
    version: &str,
) -> Result<Activation, ApiError> {
    let _guard = state.upload_lock.lock().await;
    // The older version's resources must fit what the host can still commit, as at its upload
    // (limits or other deployments may have changed since).
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let stored = state
        .store
        .run(move |c| {
            crate::store::applications::get(c, &tenant, id)?;
            crate::store::desired::version_image(c, id, &wanted)
        })
        .await
        .map_err(ApiError::store("applications"))?;
    if let Some(manifest) = stored.and_then(|(_, text)| manifests_schema::validate(&text).ok()) {
        crate::api::limits::check_upload(state, id, &principal.tenant, &manifest.manifest).await?;
    }
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let secrets = Arc::clone(&state.secrets);
    let done = state
        .store
        .run(move |c| versions::activate(c, &tenant, id, &wanted, &seal_setting(&secrets)))
        .await
        .map_err(ApiError::store("applications"))?;
    if let Some(previous) = &done.previous {
        let app = &done.application;
        tracing::info!(tenant = %app.owner, application = %app.name, %version, %previous, "version activated");
        crate::api::audit::record_action(
            state,
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
        state.supervisor.poke();
    }
    Ok(done)
}

/// Deletes a stored version that does not run (409 for the active and the stable one), then
/// its image tag and package. A kill between the two leaves only what the supervisor's tag
/// sweep and the start's package sweep remove.
pub async fn delete(
    state: &Arc<AppState>,
    principal: &Principal,
    id: i64,
    version: &str,
) -> Result<(), ApiError> {
    let _guard = state.upload_lock.lock().await;
    let (tenant, wanted) = (principal.tenant.clone(), version.to_owned());
    let gone = state
        .store
        .run(move |c| {
            let app = crate::store::applications::get(c, &tenant, id)?;
            Ok((app, versions::delete(c, &tenant, id, &wanted)?))
        })
        .await
        .map_err(ApiError::store("applications"))?;
    let (app, stored) = gone;
    crate::api::applications::discard_version_artifacts(state, &stored).await;
    crate::api::audit::record_action(
        state,
        principal,
        &[app.owner.as_str()],
        (id, &app.name),
        "Application",
        "Version deleted",
        format!("Version {version} of {} deleted", app.name),
    );
    Ok(())
}
