//! What a tenant's kept versions cost, for its storage quota and its usage statistics. A kept
//! version is a package under `packages/<tenant>/` in the data directory and an image in
//! Docker; it costs its zip, plus its image at the larger of the bytes its `image.tar` unpacks
//! to (the upload checked that the zip header states them truly) and what the image's files
//! unpack to in Docker (a gzip-compressed layer decompressed, as Docker's loader does: a layer
//! of a few KiB in `image.tar` can take the whole image size limit on Docker's disk, counted
//! while the archive streamed into the engine), an upper bound of what it holds on the data
//! disk and on Docker's, plus the bytes its `cumulocity.json` unpacks to: the database keeps
//! each version's manifest as text, and a manifest of up to 1 MiB compresses to almost nothing
//! in the zip, so without it a tenant could store gigabytes of manifests in the database at no
//! cost to its quota ([`Parts::cost`]). The cost is recorded with each version at upload
//! (`application_versions.stored_bytes`), so the quota check at every upload sums a column
//! instead of opening every kept package. A version recorded before gzip layers were counted
//! (its `image.tar` at its size only, or no cost at all) is counted again after start
//! (`apps::recount`, [`recounted_cost`]) and keeps its recorded cost until then, or for good
//! when its package cannot be read. Blocking IO: call it from a blocking thread.

use std::io;
use std::path::Path;

use crate::package::{IMAGE_ENTRY, MANIFEST_ENTRY, Measured, PackageError};

/// The sizes of one version's parts that its cost is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    /// The package file.
    pub zipped: u64,
    /// What `image.tar` unpacks to from the zip.
    pub image_tar: u64,
    /// What the image's files unpack to in Docker, gzip layers decompressed (0: not counted).
    pub image_unpacked: u64,
    /// What `cumulocity.json` unpacks to.
    pub manifest: u64,
}

impl Parts {
    /// What the version costs: its zip, its image at the larger of `image.tar` and what Docker
    /// unpacks it to, and its manifest.
    pub fn cost(&self) -> u64 {
        self.zipped
            .saturating_add(self.image_tar.max(self.image_unpacked))
            .saturating_add(self.manifest)
    }
}

/// What a kept version costs once its package was measured again ([`crate::package::measure`]),
/// as its upload would have recorded it now; an image past the limit (a gzip bomb, whose count
/// stopped there) is charged the limit and a byte at least. The error says why the package
/// could not be counted: the version keeps its recorded cost.
pub fn recounted_cost(measured: Result<Measured, PackageError>) -> Result<u64, PackageError> {
    let measured = measured?;
    let image_unpacked = match measured.image_unpacked {
        Ok(bytes) => bytes,
        Err(PackageError::ImageTooLarge { limit }) => limit.saturating_add(1),
        Err(e) => return Err(e),
    };
    Ok(Parts {
        zipped: measured.package_bytes,
        image_tar: measured.declared_image_bytes,
        image_unpacked,
        manifest: measured.manifest_bytes,
    }
    .cost())
}

/// Bytes one kept package accounts for by itself: the file, its unpacked image archive and its
/// unpacked manifest (what its layers unpack to in Docker is counted only while they stream).
pub fn package_bytes(path: &Path) -> io::Result<u64> {
    let file = std::fs::File::open(path)?;
    let mut parts = Parts {
        zipped: file.metadata()?.len(),
        ..Parts::default()
    };
    if let Ok(mut zip) = zip::ZipArchive::new(file) {
        for i in 0..zip.len() {
            let Ok(entry) = zip.by_index_raw(i) else {
                continue;
            };
            let name = entry.name_raw();
            if name.eq_ignore_ascii_case(IMAGE_ENTRY.as_bytes()) {
                parts.image_tar = entry.size();
            } else if name.eq_ignore_ascii_case(MANIFEST_ENTRY.as_bytes()) {
                parts.manifest = entry.size();
            }
        }
    }
    Ok(parts.cost())
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
    fn an_image_costs_the_larger_of_its_archive_and_what_docker_unpacks_it_to() {
        let parts = |image_tar, image_unpacked| Parts {
            zipped: 1000,
            image_tar,
            image_unpacked,
            manifest: 10,
        };
        // (image.tar, what Docker unpacks it to, cost)
        let cases = [
            // Not counted (a version measured from its package): the archive.
            (5000, 0, 6010),
            // Plain layers: the files unpack to a little less than the archive (tar headers).
            (5000, 4000, 6010),
            (5000, 5000, 6010),
            // A gzip layer of a few KiB that unpacks to a gigabyte in Docker.
            (5000, 1 << 30, 1010 + (1 << 30)),
            (u64::MAX, 7, u64::MAX),
        ];
        for (image_tar, unpacked, cost) in cases {
            assert_eq!(
                parts(image_tar, unpacked).cost(),
                cost,
                "{image_tar} / {unpacked}"
            );
        }
    }

    #[test]
    fn a_recounted_version_costs_what_its_upload_records_now() {
        let measured = |image_unpacked| {
            Ok(Measured {
                package_bytes: 1000,
                manifest_bytes: 10,
                declared_image_bytes: 5000,
                image_unpacked,
            })
        };
        let too_large = |limit| Err(PackageError::ImageTooLarge { limit });
        // (measured, cost or None when it keeps its recorded cost)
        let cases = [
            // Counted: its zip, its image at what Docker unpacks it to, its manifest.
            (measured(Ok(1 << 30)), Some(1010 + (1 << 30))),
            (measured(Ok(4000)), Some(6010)),
            // A bomb stopped at the limit: charged one byte past it.
            (measured(too_large(1 << 20)), Some(1010 + (1 << 20) + 1)),
            (measured(too_large(100)), Some(6010)),
            (measured(too_large(u64::MAX)), Some(u64::MAX)),
            // Not counted: the recorded cost stays.
            (measured(Err(PackageError::BadImage("zstd".into()))), None),
            (
                Err(PackageError::Io(std::io::ErrorKind::NotFound.into())),
                None,
            ),
            (Err(PackageError::NotZip("junk".into())), None),
        ];
        for (i, (measured, cost)) in cases.into_iter().enumerate() {
            assert_eq!(recounted_cost(measured).ok(), cost, "case {i}");
        }
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
