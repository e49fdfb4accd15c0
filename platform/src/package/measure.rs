//! A kept package measured again, for its storage cost ([`crate::storage`]): the image counted
//! as at upload, by the same check, streaming the archive from the zip to nowhere instead of
//! to Docker.

use std::io;
use std::path::Path;

use super::{PackageError, check_entry, declared_image_bytes, image_data, open, read_manifest};

/// The parts of a kept package its storage cost is made of.
#[derive(Debug)]
pub struct Measured {
    /// The package file.
    pub package_bytes: u64,
    /// What `cumulocity.json` unpacks to.
    pub manifest_bytes: u64,
    /// What `image.tar`'s header says it unpacks to (the upload checked that it is true).
    pub declared_image_bytes: u64,
    /// What the image unpacks to in Docker, or why it was not counted to its end (past the
    /// image size limit: [`PackageError::ImageTooLarge`]).
    pub image_unpacked: Result<u64, PackageError>,
}

/// Measures the package at `path` ([`Measured`]), counting its image within `image_limit`;
/// fails only when it cannot be opened or read as a package. The manifest is not validated:
/// rules newer than the package do not change what it costs. Blocking IO; the image is
/// streamed, never held.
pub fn measure(path: &Path, image_limit: u64) -> Result<Measured, PackageError> {
    let (mut zip, manifest_index, image_index) = open(path)?;
    let manifest_bytes = read_manifest(&mut zip, manifest_index)?.len() as u64;
    let package_bytes = std::fs::metadata(path)?.len();
    let declared = declared_image_bytes(&mut zip, image_index)?;
    let image_unpacked = if declared > image_limit {
        Err(PackageError::ImageTooLarge { limit: image_limit })
    } else {
        image_data(&mut zip, image_index)
            .and_then(|entry| check_entry(entry, image_limit, declared, io::sink()))
            .map(|rewritten| rewritten.image.unpacked_bytes)
    };
    Ok(Measured {
        package_bytes,
        manifest_bytes,
        declared_image_bytes: declared,
        image_unpacked,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use package_rules::test_support::{gzip, image_with_layer};
    use zip::write::SimpleFileOptions;

    use super::*;
    use crate::package::{IMAGE_ENTRY, MANIFEST_ENTRY, inspect};

    const MANIFEST: &str = r#"{"apiVersion":"1","name":"hello","version":"1.0.0","provider":{"name":"t"},"isolation":"MULTI_TENANT"}"#;

    /// A package of `image` with [`MANIFEST`] (or `manifest`), written to a file in `dir`.
    fn package(dir: &Path, name: &str, manifest: &str, image: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (entry, data) in [(MANIFEST_ENTRY, manifest.as_bytes()), (IMAGE_ENTRY, image)] {
            zip.start_file(entry, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    /// The recount's figure is the upload's: the same check counts the image, gzip layers
    /// decompressed, and a bomb stops at the limit.
    #[test]
    fn a_kept_package_measures_what_the_upload_counted() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 4u64 << 20;
        // 2 MiB of zeros in a gzip layer: a few KiB in image.tar.
        let layer = gzip(&vec![0u8; 2 << 20]);
        let image = image_with_layer(&layer, None, None);
        assert!(image.len() < 64 << 10, "{}", image.len());
        let path = package(dir.path(), "fits.zip", MANIFEST, &image);
        let measured = measure(&path, limit).unwrap();
        let uploaded = inspect(&path, limit).unwrap();
        assert_eq!(
            measured.image_unpacked.as_ref().ok(),
            Some(&uploaded.image.unpacked_bytes)
        );
        assert!(uploaded.image.unpacked_bytes > 2 << 20);
        assert_eq!(measured.declared_image_bytes, image.len() as u64);
        assert_eq!(measured.manifest_bytes, MANIFEST.len() as u64);
        assert_eq!(
            measured.package_bytes,
            std::fs::metadata(&path).unwrap().len()
        );

        // A manifest today's rules refuse still measures: it does not change the cost.
        let path = package(dir.path(), "old.zip", r#"{"name": 7}"#, &image);
        assert!(inspect(&path, limit).is_err());
        assert_eq!(
            measure(&path, limit).unwrap().image_unpacked.ok(),
            Some(uploaded.image.unpacked_bytes)
        );

        // A bomb: refused as too large once past the limit, its other parts measured.
        let bomb = image_with_layer(&gzip(&vec![0u8; 8 << 20]), None, None);
        let path = package(dir.path(), "bomb.zip", MANIFEST, &bomb);
        let measured = measure(&path, limit).unwrap();
        assert!(
            matches!(
                measured.image_unpacked,
                Err(PackageError::ImageTooLarge { limit: l }) if l == limit
            ),
            "{:?}",
            measured.image_unpacked
        );
        assert_eq!(measured.declared_image_bytes, bomb.len() as u64);
        assert_eq!(measured.manifest_bytes, MANIFEST.len() as u64);

        // An image.tar whose header alone is past the limit is not read.
        let measured = measure(&path, 1000).unwrap();
        assert!(matches!(
            measured.image_unpacked,
            Err(PackageError::ImageTooLarge { limit: 1000 })
        ));

        // No package: no measure.
        assert!(measure(&dir.path().join("gone.zip"), limit).is_err());
        std::fs::write(dir.path().join("junk.zip"), b"not a zip").unwrap();
        assert!(measure(&dir.path().join("junk.zip"), limit).is_err());
    }
}
