//! The tenant's storage quota at upload: checked by the declared sizes before the image loads,
//! and again once the image archive was counted, before its end reaches the engine: with the
//! package's real size (it may still have been arriving at the first check) and what the image
//! unpacks to in Docker, which gzip layers can make far more than `image.tar`. The second
//! check's figure is what the version is recorded to cost.

use super::{UploadError, task_failed};
use crate::apps::Apps;
use crate::storage;
use crate::store::applications::Version;
use crate::store::artifacts;

/// Refuses the package when keeping it would take the tenant over its storage quota: `new` is
/// what the version costs ([`storage::Parts::cost`]).
pub(super) async fn check_storage_quota(
    apps: &Apps,
    tenant: &str,
    new: u64,
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
        Ok(storage::check_quota(used, freed, new, quota))
    })
    .await
    .map_err(task_failed)?
    .map_err(|e| UploadError::Internal(format!("measuring the tenant's storage: {e}")))?;
    verdict.map_err(|over| UploadError::TooLarge(over.to_string()))
}

/// The quota check again, once the image archive was counted.
pub(super) struct Requota {
    /// The received package.
    pub(super) package: std::path::PathBuf,
    /// What `image.tar` and `cumulocity.json` unpack to from the zip.
    pub(super) image_tar: u64,
    pub(super) manifest: u64,
}

impl Requota {
    /// Checks the quota with what the image unpacks to in Docker (`image_unpacked`); returns
    /// what the version costs, to be recorded with it.
    pub(super) async fn check(
        &self,
        apps: &Apps,
        tenant: &str,
        replaced: Option<&Version>,
        image_unpacked: u64,
    ) -> Result<u64, UploadError> {
        let zipped = tokio::fs::metadata(&self.package)
            .await
            .map_err(|e| UploadError::Internal(format!("measuring the package: {e}")))?
            .len();
        let cost = storage::Parts {
            zipped,
            image_tar: self.image_tar,
            image_unpacked,
            manifest: self.manifest,
        }
        .cost();
        check_storage_quota(apps, tenant, cost, replaced).await?;
        Ok(cost)
    }
}
