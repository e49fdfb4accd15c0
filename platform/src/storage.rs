//! What a tenant's kept versions cost, for its storage quota and its usage statistics. A kept
//! version is a package under `packages/<tenant>/` in the data directory; it costs its zip plus
//! the bytes its `image.tar` unpacks to (the upload checked that the zip header states them
//! truly), an upper bound of what it holds on the data disk and, as an image, on Docker's,
//! plus the bytes its `cumulocity.json` unpacks to: the database keeps each version's manifest
//! as text, and a manifest of up to 1 MiB compresses to almost nothing in the zip, so without
//! it a tenant could store gigabytes of manifests in the database at no cost to its quota.
//! The cost is recorded with each version at upload (`application_versions.stored_bytes`), so
//! the quota check at every upload sums a column instead of opening every kept package.
//! Blocking IO: call it from a blocking thread.

use std::io;
use std::path::Path;

use crate::package::{IMAGE_ENTRY, MANIFEST_ENTRY};

/// Bytes one kept package accounts for: the file, its unpacked image and its unpacked manifest.
pub fn package_bytes(path: &Path) -> io::Result<u64> {
    let file = std::fs::File::open(path)?;
    let zipped = file.metadata()?.len();
    let unpacked = zip::ZipArchive::new(file)
        .map(|mut zip| {
            (0..zip.len())
                .filter_map(|i| {
                    let entry = zip.by_index_raw(i).ok()?;
                    let name = entry.name_raw();
                    (name.eq_ignore_ascii_case(IMAGE_ENTRY.as_bytes())
                        || name.eq_ignore_ascii_case(MANIFEST_ENTRY.as_bytes()))
                    .then(|| entry.size())
                })
                .fold(0u64, u64::saturating_add)
        })
        .unwrap_or(0);
    Ok(zipped.saturating_add(unpacked))
}

/// Bytes a tenant's kept versions account for, given each one's package file (relative to
/// `data_dir`) and its recorded cost; a version without one (kept before costs were recorded)
/// is measured from its package, a missing package costs nothing.
pub fn kept_bytes(data_dir: &Path, kept: &[(String, Option<u64>)]) -> io::Result<u64> {
    let mut total = 0u64;
    for (package, recorded) in kept {
        total = total.saturating_add(version_bytes(data_dir, package, *recorded)?);
    }
    Ok(total)
}

/// What one kept version costs: its recorded cost, else what its package measures (nothing
/// when the package is gone).
pub fn version_bytes(data_dir: &Path, package: &str, recorded: Option<u64>) -> io::Result<u64> {
    match recorded {
        Some(bytes) => Ok(bytes),
        None => match package_bytes(&data_dir.join(package)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            measured => measured,
        },
    }
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
    fn a_package_costs_its_zip_and_what_its_entries_unpack_to() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.zip");
        let manifest = format!("{{\"description\": \"{}\"}}", "x".repeat(500_000));
        let image = vec![7u8; 100_000];
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file(MANIFEST_ENTRY, options).unwrap();
        zip.write_all(manifest.as_bytes()).unwrap();
        zip.start_file(IMAGE_ENTRY, options).unwrap();
        zip.write_all(&image).unwrap();
        zip.finish().unwrap();
        let zipped = std::fs::metadata(&path).unwrap().len();
        // Both compress to a few KiB; what they unpack to is what they cost.
        assert!(zipped < 10_000, "{zipped}");
        assert_eq!(
            package_bytes(&path).unwrap(),
            zipped + manifest.len() as u64 + image.len() as u64
        );
    }

    #[test]
    fn kept_versions_cost_what_was_recorded_or_what_their_package_measures() {
        let dir = tempfile::tempdir().unwrap();
        let mut zip =
            zip::ZipWriter::new(std::fs::File::create(dir.path().join("old.zip")).unwrap());
        zip.start_file(IMAGE_ENTRY, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, &[1u8; 1000]).unwrap();
        zip.finish().unwrap();
        let old = package_bytes(&dir.path().join("old.zip")).unwrap();
        assert!(old > 1000, "{old}");
        let kept = [
            ("a.zip".to_owned(), Some(500)),
            ("b.zip".to_owned(), Some(70)),
            // Kept before costs were recorded: measured.
            ("old.zip".to_owned(), None),
            // Gone from the disk: nothing.
            ("gone.zip".to_owned(), None),
        ];
        assert_eq!(kept_bytes(dir.path(), &kept).unwrap(), 570 + old);
        assert_eq!(kept_bytes(dir.path(), &[]).unwrap(), 0);
    }

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
