//! The loaded image made Berth's: checked and tagged, the package kept and the version
//! recorded in one transaction; then what a replaced snapshot leaves behind cleaned up.

use std::sync::Arc;

use serde_json::Value;

use super::{Target, UploadError, task_failed, unavailable};
use crate::apps::intents::{remove_replaced_image, retry_later};
use crate::apps::settings::{seal_setting, stored_manifest};
use crate::apps::{Apps, manifest_budget, settings_propagation};
use crate::package::Package;
use crate::store::applications::{self, Application, UploadRecord, Version};
use crate::store::intents::{self, Intent, ReplacedImage};

/// The received package on its way to be kept.
pub(super) struct Kept {
    pub(super) temp: tempfile::NamedTempFile,
    /// Its data reaching the disk.
    pub(super) synced: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The upload's intent, finished with the record.
    pub(super) intent: i64,
    /// What the version costs, as the quota check at the end of its load counted it.
    pub(super) stored_bytes: u64,
}

/// A recorded upload.
pub(super) struct Installed {
    pub(super) app: Application,
    /// The version of the same name it replaced (a snapshot).
    pub(super) replaced: Option<Version>,
    /// The intent to remove the replaced version's image, recorded with the version when the
    /// upload brought another image.
    pub(super) image_removal: Option<(i64, ReplacedImage)>,
}

/// Checks and tags the loaded image, keeps the package and records the version (with the
/// replaced version, if any, and the intent to remove its image). On error the caller undoes
/// what was done by the upload's intent.
pub(super) async fn install(
    apps: &Apps,
    package: &Package,
    kept: Kept,
    target: &Target<'_>,
) -> Result<Installed, UploadError> {
    let Kept {
        temp,
        synced,
        intent,
        stored_bytes,
    } = kept;
    crate::fault::point(crate::fault::UPLOAD_LOADED).await;
    let runtime = &apps.runtime;
    let engine = "The container engine is not available";
    if runtime
        .image_id(&package.image.id)
        .await
        .map_err(unavailable(engine))?
        .is_none()
    {
        return Err(UploadError::Invalid(
            "image.tar loaded, but it did not contain the image its manifest.json names".into(),
        ));
    }
    if apps.limits.refuse_root_images {
        let user = runtime
            .image_user(&package.image.id)
            .await
            .map_err(unavailable(engine))?;
        crate::limits::check_image_user(&user, &apps.limits)?;
    }
    runtime
        .tag(&package.image.id, &target.tag.repo, &target.tag.tag)
        .await
        .map_err(unavailable("The container engine could not tag the image"))?;

    let kept = apps.data_dir.join(target.package_file);
    if let Some(parent) = kept.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| UploadError::Internal(format!("creating {}: {e}", parent.display())))?;
    }
    synced
        .await
        .map_err(task_failed)?
        .map_err(|e| UploadError::Internal(format!("writing upload: {e}")))?;
    temp.persist(&kept)
        .map_err(|e| UploadError::Internal(format!("keeping package: {e}")))?;
    crate::fault::point(crate::fault::UPLOAD_KEPT).await;
    let manifest = package.manifest.manifest.clone();
    let mut record = UploadRecord {
        version: Version {
            version: target.version.to_owned(),
            image_id: package.image.id.clone(),
            image_tag: target.tag.reference(),
            package_file: target.package_file.to_owned(),
        },
        // Recorded with the version, so quota checks sum a column.
        stored_bytes,
        manifest: Value::Null,
        roles: manifest.roles.clone(),
        required_roles: manifest.required_roles.clone(),
        context_path: manifest.context_path.clone(),
        intent: Some(intent),
    };
    let (tenant, id) = (target.tenant.to_owned(), target.id);
    let secrets = Arc::clone(&apps.secrets);
    let recorded = apps
        .store
        .run(move |c| {
            // One transaction, so no subscription or upload comes between reading the previous
            // settings and committing the new ones: the manifest as stored, the version, and
            // the new version's settings for every subscribed tenant.
            let tx = c.transaction()?;
            let app = applications::get(&tx, &tenant, id)?;
            let shown_before = manifest_budget::shown(&tx, &tenant)?;
            record.manifest = stored_manifest(&secrets, &app.name, &manifest)?;
            let settings = settings_propagation::plan(
                &tx,
                &app,
                applications::resolved_manifest(&app).as_ref(),
                &manifest,
                &seal_setting(&secrets),
            )?;
            let (app, replaced) = applications::record_upload(&tx, &tenant, id, &record)?;
            manifest_budget::check_in(&tx, &tenant, shown_before)?;
            settings_propagation::apply(&tx, &app, &settings)?;
            // The replaced image can go only once the old revision's containers are gone;
            // recorded now, so neither a refusal nor a restart forgets it.
            let image_removal = match &replaced {
                Some(old) if old.image_id != record.version.image_id => {
                    let removal = ReplacedImage {
                        image_id: old.image_id.clone(),
                        tenant: tenant.clone(),
                        application_id: id,
                        version: old.version.clone(),
                    };
                    let intent = Intent::RemoveReplacedImage(removal.clone());
                    Some((intents::record(&tx, &intent)?, removal))
                }
                _ => None,
            };
            tx.commit()?;
            Ok(Installed {
                app,
                replaced,
                image_removal,
            })
        })
        .await?;
    apps.forget_service_credentials(id).await;
    Ok(recorded)
}

/// After a snapshot replaced an earlier upload of the same version: drop the old package, and
/// the old image through its intent: now if nothing refers to it and no container uses it,
/// else retried in the background and at the next start (the old revision's containers run
/// until the new revision is ready). A package left by a kill is the start's sweep's.
pub(super) async fn cleanup_replaced(
    apps: &Arc<Apps>,
    old: &Version,
    new_package: &str,
    image_removal: Option<(i64, ReplacedImage)>,
) {
    if old.package_file != new_package {
        let path = apps.data_dir.join(&old.package_file);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the replaced package");
        }
    }
    if let Some((id, removal)) = image_removal
        && !remove_replaced_image(apps, id, &removal).await
    {
        retry_later(Arc::clone(apps), id, Intent::RemoveReplacedImage(removal));
    }
}
