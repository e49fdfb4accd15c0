//! Microservice packages: a ZIP with `cumulocity.json` and `image.tar` (a `docker save`
//! archive) at its root. Checks entry names, validates the manifest, reads the image id from the
//! archive's `manifest.json`, and streams `image.tar` out in chunks. Blocking IO: call it from
//! a blocking thread.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use manifests_schema::{Severity, Validated};
use serde::Deserialize;

pub const MANIFEST_ENTRY: &str = "cumulocity.json";
pub const IMAGE_ENTRY: &str = "image.tar";
/// Larger manifests are rejected (real ones are a few KiB).
const MANIFEST_LIMIT: u64 = 1 << 20;
/// Size of the chunks `image.tar` is streamed in.
pub const CHUNK_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("the upload is not a ZIP archive: {0}")]
    NotZip(String),
    #[error(
        "the package entry {0:?} has an unsafe name (absolute, '..' or '\\'); entries must be plain relative names"
    )]
    UnsafeEntry(String),
    #[error("the package has no {0} at its root")]
    Missing(&'static str),
    #[error(
        "the package contains {count} entries named {name} (case-insensitive); exactly one is allowed"
    )]
    Duplicate { name: &'static str, count: usize },
    #[error("cumulocity.json is larger than 1 MiB")]
    ManifestTooLarge,
    #[error("cumulocity.json is not UTF-8 text")]
    ManifestNotText,
    #[error("cumulocity.json is invalid: {0}")]
    ManifestInvalid(String),
    #[error("image.tar is not a `docker save` archive: {0}")]
    BadImage(String),
    #[error("cannot read the package: {0}")]
    Io(#[from] std::io::Error),
}

/// What an accepted package contains.
#[derive(Debug, Clone)]
pub struct Package {
    pub manifest: Validated,
    pub image: ImageInfo,
}

/// The image inside `image.tar`, as named by its `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:<hex>`, the id Docker gives the image after loading.
    pub id: String,
    /// Tags recorded by `docker save` (`name:tag`), possibly none.
    pub repo_tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

fn zip_error(e: zip::result::ZipError) -> PackageError {
    PackageError::NotZip(e.to_string())
}

/// An entry name is safe when it is relative and cannot climb out of the extraction root.
pub fn is_safe_entry_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.contains('\0')
        && !name
            .split('/')
            .any(|part| part == ".." || part.contains(':'))
}

/// Index of the single root entry named `wanted` (case-insensitive).
fn find_root_entry(names: &[String], wanted: &'static str) -> Result<usize, PackageError> {
    let matches: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.eq_ignore_ascii_case(wanted))
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [] => Err(PackageError::Missing(wanted)),
        [one] => Ok(*one),
        more => Err(PackageError::Duplicate {
            name: wanted,
            count: more.len(),
        }),
    }
}

fn entry_names(zip: &mut zip::ZipArchive<File>) -> Result<Vec<String>, PackageError> {
    (0..zip.len())
        .map(|i| {
            let entry = zip.by_index_raw(i).map_err(zip_error)?;
            let name = entry.name().map_err(zip_error)?.into_owned();
            if !is_safe_entry_name(&name) || entry.enclosed_name().is_none() {
                return Err(PackageError::UnsafeEntry(name));
            }
            Ok(name)
        })
        .collect()
}

/// Opens and checks a package: entry names, the manifest, and the image archive's metadata.
pub fn inspect(path: &Path) -> Result<Package, PackageError> {
    let mut zip = zip::ZipArchive::new(File::open(path)?).map_err(zip_error)?;
    let names = entry_names(&mut zip)?;
    let manifest_index = find_root_entry(&names, MANIFEST_ENTRY)?;
    let image_index = find_root_entry(&names, IMAGE_ENTRY)?;

    let mut text = Vec::new();
    let entry = zip.by_index(manifest_index).map_err(zip_error)?;
    entry.take(MANIFEST_LIMIT + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MANIFEST_LIMIT {
        return Err(PackageError::ManifestTooLarge);
    }
    let text = String::from_utf8(text).map_err(|_| PackageError::ManifestNotText)?;
    let manifest = manifests_schema::validate(&text).map_err(|rejected| {
        let errors: Vec<String> = rejected
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        PackageError::ManifestInvalid(errors.join("; "))
    })?;

    let image = read_image_info(zip.by_index(image_index).map_err(zip_error)?)?;
    Ok(Package { manifest, image })
}

/// Configs larger than this are not hashed (real ones are a few KiB).
const CONFIG_LIMIT: u64 = 1 << 20;

/// Reads `manifest.json` of a `docker save` archive (classic or OCI layout) and checks that the
/// config it names really has the digest its name claims, so the id Docker will give the image
/// is known before loading it.
fn read_image_info(reader: impl Read) -> Result<ImageInfo, PackageError> {
    use sha2::{Digest, Sha256};
    let bad = |e: std::io::Error| PackageError::BadImage(e.to_string());
    let mut archive = tar::Archive::new(reader);
    let mut manifest_text = None;
    let mut small_file_digests = std::collections::HashMap::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry
            .path()
            .map_err(bad)?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if path == "manifest.json" {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| PackageError::BadImage(format!("manifest.json: {e}")))?;
            manifest_text = Some(text);
        } else if entry.header().entry_type().is_file() && entry.size() <= CONFIG_LIMIT {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(bad)?;
            small_file_digests.insert(path, hex::encode(Sha256::digest(&bytes)));
        }
    }
    let text =
        manifest_text.ok_or_else(|| PackageError::BadImage("manifest.json is missing".into()))?;
    let images: Vec<SaveManifestEntry> = serde_json::from_str(&text)
        .map_err(|e| PackageError::BadImage(format!("manifest.json: {e}")))?;
    let [image] = images.as_slice() else {
        return Err(PackageError::BadImage(format!(
            "it must hold exactly one image, found {}",
            images.len()
        )));
    };
    let file = image.config.rsplit('/').next().unwrap_or_default();
    let hex = file
        .strip_suffix(".json")
        .unwrap_or(file)
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(PackageError::BadImage(format!(
            "unexpected config name {:?}",
            image.config
        )));
    }
    match small_file_digests.get(image.config.trim_start_matches("./")) {
        Some(digest) if *digest == hex => {}
        Some(_) => {
            return Err(PackageError::BadImage(format!(
                "the config {} does not match its digest",
                image.config
            )));
        }
        None => {
            return Err(PackageError::BadImage(format!(
                "the config {} named by manifest.json is missing",
                image.config
            )));
        }
    }
    Ok(ImageInfo {
        id: format!("sha256:{hex}"),
        repo_tags: image.repo_tags.clone().unwrap_or_default(),
    })
}

/// Streams `image.tar` of the package in chunks through `send` (which returns false when the
/// receiver is gone, stopping the stream early).
pub fn stream_image(path: &Path, mut send: impl FnMut(std::io::Result<Bytes>) -> bool) {
    let result = (|| -> Result<(), PackageError> {
        let mut zip = zip::ZipArchive::new(File::open(path)?).map_err(zip_error)?;
        let names = entry_names(&mut zip)?;
        let index = find_root_entry(&names, IMAGE_ENTRY)?;
        let mut entry = zip.by_index(index).map_err(zip_error)?;
        let mut buffer = vec![0u8; CHUNK_SIZE];
        loop {
            let n = entry.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            if !send(Ok(Bytes::copy_from_slice(&buffer[..n]))) {
                return Ok(());
            }
        }
    })();
    if let Err(e) = result {
        send(Err(std::io::Error::other(e.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_must_stay_inside_the_package() {
        let cases = [
            ("cumulocity.json", true),
            ("dir/file", true),
            ("../evil", false),
            ("a/../../evil", false),
            ("/etc/passwd", false),
            ("c:\\evil", false),
            ("a\\b", false),
            ("", false),
        ];
        for (name, safe) in cases {
            assert_eq!(is_safe_entry_name(name), safe, "{name:?}");
        }
    }

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn image_ids_are_the_verified_config_digest() {
        use sha2::{Digest, Sha256};
        let config = br#"{"architecture":"amd64"}"#;
        let hex = hex::encode(Sha256::digest(config));
        let classic = format!(r#"[{{"Config":"{hex}.json","RepoTags":["x:1"],"Layers":[]}}]"#);
        let oci = format!(r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":null,"Layers":[]}}]"#);
        let wrong = "b".repeat(64);
        let lying = format!(r#"[{{"Config":"{wrong}.json","Layers":[]}}]"#);
        let classic_config = format!("{hex}.json");
        let oci_config = format!("blobs/sha256/{hex}");
        let wrong_config = format!("{wrong}.json");
        type Files<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(Files, Option<String>)> = vec![
            (
                vec![
                    (classic_config.as_str(), config),
                    ("manifest.json", classic.as_bytes()),
                ],
                Some(format!("sha256:{hex}")),
            ),
            // OCI layout: manifest.json may come first.
            (
                vec![
                    ("manifest.json", oci.as_bytes()),
                    (oci_config.as_str(), config),
                ],
                Some(format!("sha256:{hex}")),
            ),
            (
                vec![
                    (wrong_config.as_str(), config),
                    ("manifest.json", lying.as_bytes()),
                ],
                None,
            ),
            (vec![("manifest.json", classic.as_bytes())], None),
            (
                vec![(
                    "manifest.json",
                    br#"[{"Config":"nothex.json","Layers":[]}]"#,
                )],
                None,
            ),
            (vec![("manifest.json", b"[]")], None),
            (vec![(classic_config.as_str(), config)], None),
        ];
        for (files, expected) in cases {
            let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
            assert_eq!(
                read_image_info(archive(&files).as_slice())
                    .ok()
                    .map(|i| i.id),
                expected,
                "{names:?}"
            );
        }
    }
}
