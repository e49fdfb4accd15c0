//! The image an archive's entries describe, resolved once the pass has seen them all:
//! `docker save`'s `manifest.json` or an OCI layout's `index.json`, naming one linux/amd64 image
//! whose config and layers are entries of the archive.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    ArchiveFormat, EntryKind, ImageError, ImageSummary, REQUIRED_ARCHITECTURE, REQUIRED_OS,
    normalize,
};

/// What the pass saw of an archive: every entry, the small JSON documents, the tar's size.
pub(super) struct ScannedArchive {
    pub(super) entries: BTreeMap<String, EntryKind>,
    pub(super) json: BTreeMap<String, Vec<u8>>,
    pub(super) tar_bytes: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciDescriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<OciPlatform>,
}

#[derive(Deserialize)]
struct OciPlatform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: OciDescriptor,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
}

const OCI_INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

impl ScannedArchive {
    /// The one image the archive holds, by `docker save`'s `manifest.json` or else an OCI
    /// layout's `index.json`.
    pub(super) fn summary(&self) -> Result<ImageSummary, ImageError> {
        if self.json.contains_key("manifest.json") {
            self.docker_save()
        } else if self.json.contains_key("index.json") {
            self.oci_layout()
        } else {
            Err(ImageError::NotAnImage)
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        referenced_by: &str,
    ) -> Result<T, ImageError> {
        let resolved = self.resolve(path, referenced_by)?;
        let bytes = self
            .json
            .get(&resolved)
            .ok_or_else(|| ImageError::BadMetadata {
                file: path.to_owned(),
                reason: "it is not a JSON document".to_owned(),
            })?;
        serde_json::from_slice(bytes).map_err(|error| ImageError::BadMetadata {
            file: path.to_owned(),
            reason: error.to_string(),
        })
    }

    /// Follows links to a regular file's archive path.
    fn resolve(&self, path: &str, referenced_by: &str) -> Result<String, ImageError> {
        let missing = || ImageError::Missing {
            referenced_by: referenced_by.to_owned(),
            missing: path.to_owned(),
        };
        let mut current = normalize(path).ok_or_else(missing)?;
        for _ in 0..16 {
            match self.entries.get(&current) {
                Some(EntryKind::File { .. }) => return Ok(current),
                Some(EntryKind::Link { target }) => current = target.clone(),
                Some(EntryKind::Directory) | None => return Err(missing()),
            }
        }
        Err(missing())
    }

    fn file_size(&self, path: &str, referenced_by: &str) -> Result<u64, ImageError> {
        let resolved = self.resolve(path, referenced_by)?;
        match self.entries.get(&resolved) {
            Some(EntryKind::File { size }) => Ok(*size),
            _ => Err(ImageError::Missing {
                referenced_by: referenced_by.to_owned(),
                missing: path.to_owned(),
            }),
        }
    }

    fn config_summary(
        &self,
        path: &str,
        referenced_by: &str,
    ) -> Result<(String, String, String), ImageError> {
        let config: ImageConfig = self.parse(path, referenced_by)?;
        let bytes = &self.json[&self.resolve(path, referenced_by)?];
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let missing_field = |field: &str| ImageError::BadMetadata {
            file: path.to_owned(),
            reason: format!("the image config has no `{field}`"),
        };
        let os = config.os.ok_or_else(|| missing_field("os"))?;
        let architecture = config
            .architecture
            .ok_or_else(|| missing_field("architecture"))?;
        if os != REQUIRED_OS || architecture != REQUIRED_ARCHITECTURE {
            return Err(ImageError::WrongPlatform { os, architecture });
        }
        Ok((os, architecture, digest))
    }

    fn docker_save(&self) -> Result<ImageSummary, ImageError> {
        let images: Vec<DockerSaveImage> = self.parse("manifest.json", "the archive")?;
        let image = match images.len() {
            1 => &images[0],
            0 => {
                return Err(ImageError::BadMetadata {
                    file: "manifest.json".to_owned(),
                    reason: "it lists no image".to_owned(),
                });
            }
            n => return Err(ImageError::MultipleImages(n)),
        };
        let mut layer_bytes = 0;
        for layer in &image.layers {
            layer_bytes += self.file_size(layer, "manifest.json")?;
        }
        let (os, architecture, config_digest) =
            self.config_summary(&image.config, "manifest.json")?;
        Ok(ImageSummary {
            format: ArchiveFormat::DockerSave,
            tags: image.repo_tags.clone().unwrap_or_default(),
            os,
            architecture,
            config_digest,
            layer_count: image.layers.len(),
            layer_bytes,
            tar_bytes: self.tar_bytes,
        })
    }

    pub(super) fn blob_path(digest: &str, referenced_by: &str) -> Result<String, ImageError> {
        let bad = || ImageError::BadMetadata {
            file: referenced_by.to_owned(),
            reason: format!("digest {digest:?} is not `<algorithm>:<hex>`"),
        };
        let (algorithm, hex) = digest.split_once(':').ok_or_else(bad)?;
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !plain(algorithm) || !plain(hex) {
            return Err(bad());
        }
        Ok(format!("blobs/{algorithm}/{hex}"))
    }

    fn oci_layout(&self) -> Result<ImageSummary, ImageError> {
        let index: OciIndex = self.parse("index.json", "the archive")?;
        let mut tags = Vec::new();
        let manifest = self.pick_manifest(index, "index.json", &mut tags, 0)?;
        let manifest_path = Self::blob_path(&manifest.digest, "index.json")?;
        let image: OciManifest = self.parse(&manifest_path, "index.json")?;
        let mut layer_bytes = 0;
        for layer in &image.layers {
            layer_bytes += self.file_size(
                &Self::blob_path(&layer.digest, &manifest_path)?,
                &manifest_path,
            )?;
        }
        let config_path = Self::blob_path(&image.config.digest, &manifest_path)?;
        let (os, architecture, config_digest) =
            self.config_summary(&config_path, &manifest_path)?;
        Ok(ImageSummary {
            format: ArchiveFormat::OciLayout,
            tags,
            os,
            architecture,
            config_digest,
            layer_count: image.layers.len(),
            layer_bytes,
            tar_bytes: self.tar_bytes,
        })
    }

    /// Picks the one image manifest of an index, descending into nested indexes and
    /// preferring linux/amd64 among platform-specific entries.
    fn pick_manifest(
        &self,
        index: OciIndex,
        file: &str,
        tags: &mut Vec<String>,
        depth: usize,
    ) -> Result<OciDescriptor, ImageError> {
        let mut candidates = index.manifests;
        if candidates.len() > 1 && candidates.iter().all(|m| m.platform.is_some()) {
            let amd64 = candidates.iter().position(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == REQUIRED_OS && p.architecture == REQUIRED_ARCHITECTURE)
            });
            match amd64 {
                Some(position) => candidates = vec![candidates.swap_remove(position)],
                None => {
                    let platform = candidates[0]
                        .platform
                        .take()
                        .map(|p| (p.os, p.architecture));
                    let (os, architecture) = platform.unwrap_or_default();
                    return Err(ImageError::WrongPlatform { os, architecture });
                }
            }
        }
        let candidate = match candidates.len() {
            1 => candidates.remove(0),
            0 => {
                return Err(ImageError::BadMetadata {
                    file: file.to_owned(),
                    reason: "it lists no manifest".to_owned(),
                });
            }
            n => return Err(ImageError::MultipleImages(n)),
        };
        for key in [
            "io.containerd.image.name",
            "org.opencontainers.image.ref.name",
        ] {
            let Some(name) = candidate.annotations.get(key) else {
                continue;
            };
            // `ref.name` is often just the tag part of the full `io.containerd.image.name`.
            if !tags
                .iter()
                .any(|tag| tag == name || tag.ends_with(&format!(":{name}")))
            {
                tags.push(name.clone());
            }
        }
        let nested = candidate
            .media_type
            .as_deref()
            .is_some_and(|t| OCI_INDEX_TYPES.contains(&t));
        if nested && depth < 4 {
            let path = Self::blob_path(&candidate.digest, file)?;
            let inner: OciIndex = self.parse(&path, file)?;
            return self.pick_manifest(inner, &path, tags, depth + 1);
        }
        Ok(candidate)
    }
}
