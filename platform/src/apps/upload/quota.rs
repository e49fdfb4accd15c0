//! The tenant's storage quota at upload: checked by the declared sizes before the image loads,
//! and again by the real size of a package that was read while it arrived.

use super::{UploadError, task_failed};
use crate::apps::Apps;
use crate::storage;
use crate::store::applications::Version;
use crate::store::artifacts;

/// Refuses the package when keeping it would take the tenant over its storage quota:
/// `unpacked` is what its image and manifest unpack to, `zipped` the package's size (see
/// [`storage`] for why both count).
pub(super) async fn check_storage_quota(
    apps: &Apps,
    tenant: &str,
    unpacked: u64,
    zipped: u64,
    replaced: Option<&Version>,
) -> Result<(), UploadError> {
    let data_dir = apps.data_dir.clone();
    let owner = tenant.to_owned();
    let kept = apps
        .store
        .run(move |c| artifacts::kept_packages(c, &owner))
        .await?;
    let replaced = replaced.map(|v| v.package_file.clone());
    let quota = apps.tenant_storage_quota;
    let verdict = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let used = storage::kept_bytes(&data_dir, &kept)?;
        // What the replaced version was counted as (its recorded cost, or its package).
        let freed = kept
            .iter()
            .find(|(file, _)| Some(file) == replaced.as_ref())
            .map_or(0, |(file, recorded)| {
                storage::version_bytes(&data_dir, file, *recorded).unwrap_or(0)
            });
        Ok(storage::check_quota(
            used,
            freed,
            zipped.saturating_add(unpacked),
            quota,
        ))
    })
    .await
    .map_err(task_failed)?
    .map_err(|e| UploadError::Internal(format!("measuring the tenant's storage: {e}")))?;
    verdict.map_err(|over| UploadError::TooLarge(over.to_string()))
}

/// The quota check again, with the size of a package that was read while it arrived.
pub(super) struct Requota {
    pub(super) package: std::path::PathBuf,
    pub(super) unpacked: u64,
}

impl Requota {
    pub(super) async fn check(
        &self,
        apps: &Apps,
        tenant: &str,
        replaced: Option<&Version>,
    ) -> Result<(), UploadError> {
        let zipped = tokio::fs::metadata(&self.package)
            .await
            .map_err(|e| UploadError::Internal(format!("measuring the package: {e}")))?
            .len();
        check_storage_quota(apps, tenant, self.unpacked, zipped, replaced).await
    }
}
