//! What a tenant's kept versions cost, for its storage quota and its usage statistics. A kept
//! version is a package under `packages/<tenant>/` in the data directory; it costs its zip plus
//! the bytes its `image.tar` unpacks to (the upload checked that the zip header states them
//! truly), an upper bound of what it holds on the data disk and, as an image, on Docker's.
//! Blocking IO: call it from a blocking thread.

use std::io;
use std::path::Path;

use crate::package::IMAGE_ENTRY;

/// Bytes one kept package accounts for: the file and its unpacked image.
pub fn package_bytes(path: &Path) -> io::Result<u64> {
    let file = std::fs::File::open(path)?;
    let zipped = file.metadata()?.len();
    let image = zip::ZipArchive::new(file)
        .ok()
        .and_then(|mut zip| {
            (0..zip.len()).find_map(|i| {
                let entry = zip.by_index_raw(i).ok()?;
                entry
                    .name_raw()
                    .eq_ignore_ascii_case(IMAGE_ENTRY.as_bytes())
                    .then(|| entry.size())
            })
        })
        .unwrap_or(0);
    Ok(zipped.saturating_add(image))
}

/// Bytes all of `tenant`'s kept packages account for.
pub fn tenant_bytes(data_dir: &Path, tenant: &str) -> io::Result<u64> {
    let root = data_dir.join(crate::PACKAGES_DIR).join(tenant);
    let mut total = 0u64;
    let applications = match std::fs::read_dir(&root) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for application in applications {
        let application = application?;
        if !application.file_type()?.is_dir() {
            continue;
        }
        for package in std::fs::read_dir(application.path())? {
            let package = package?;
            let path = package.path();
            if package.file_type()?.is_file() && path.extension().is_some_and(|e| e == "zip") {
                total = total.saturating_add(package_bytes(&path)?);
            }
        }
    }
    Ok(total)
}

/// Refused: keeping the new version would take the tenant over its quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "keeping this version would take the tenant's stored versions to {after} bytes, over its storage quota of {quota} bytes ({used} bytes used); delete versions the tenant no longer needs, or ask the operator to raise tenant_storage_quota (--tenant-storage-quota, BERTH_TENANT_STORAGE_QUOTA)"
)]
pub struct OverQuota {
    pub used: u64,
    pub after: u64,
    pub quota: u64,
}

/// Whether a new version of `new` bytes fits: `used` is the tenant's total now, `replaced` what
/// the version it replaces (a re-uploaded snapshot) frees.
pub fn check_quota(used: u64, replaced: u64, new: u64, quota: u64) -> Result<(), OverQuota> {
    let after = used.saturating_sub(replaced).saturating_add(new);
    if after > quota {
        return Err(OverQuota { used, after, quota });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_counts_kept_versions_and_frees_the_replaced_one() {
        // (used, replaced, new, quota, fits)
        let cases = [
            (0, 0, 100, 100, true),
            (0, 0, 101, 100, false),
            (60, 0, 50, 100, false),
            (60, 60, 50, 100, true),
            (60, 10, 50, 100, true),
            (u64::MAX - 1, 0, 2, u64::MAX - 1, false),
            (5, 9, 1, 1, true),
        ];
        for (used, replaced, new, quota, fits) in cases {
            assert_eq!(
                check_quota(used, replaced, new, quota).is_ok(),
                fits,
                "{used} - {replaced} + {new} vs {quota}"
            );
        }
    }
}
