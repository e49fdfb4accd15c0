//! The image an archive's entries describe, resolved once the pass has seen them all: the one
//! linux/amd64 image `manifest.json` names, its config and layers found as Docker's loader
//! finds them ([`docker_load`], the platform's rule too).

use std::collections::BTreeMap;

use package_rules::docker_load::{self, Entries, MANIFEST};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ArchiveFormat, ImageError, ImageSummary, REQUIRED_ARCHITECTURE, REQUIRED_OS};

/// What the pass saw of an archive: every file and link, the small JSON documents, the tar's
/// size.
pub(super) struct ScannedArchive {
    pub(super) entries: Entries<()>,
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

impl ScannedArchive {
    /// The one image `manifest.json` names.
    pub(super) fn summary(&self) -> Result<ImageSummary, ImageError> {
        self.entries.manifest()?;
        let images: Vec<DockerSaveImage> = self.parse(MANIFEST, MANIFEST)?;
        let image = match images.len() {
            1 => &images[0],
            0 => {
                return Err(ImageError::BadMetadata {
                    file: MANIFEST.to_owned(),
                    reason: "it lists no image".to_owned(),
                });
            }
            n => return Err(ImageError::MultipleImages(n)),
        };
        let mut layer_bytes = 0;
        for layer in &image.layers {
            layer_bytes += self.entries.layer(layer)?.size;
        }
        let config = self.entries.config(&image.config)?;
        let (os, architecture) = self.platform(&image.config, config.name)?;
        let format = if self.entries.is_file(docker_load::OCI_INDEX) {
            ArchiveFormat::OciLayout
        } else {
            ArchiveFormat::DockerSave
        };
        Ok(ImageSummary {
            format,
            tags: image.repo_tags.clone().unwrap_or_default(),
            os,
            architecture,
            config_digest: format!(
                "sha256:{}",
                hex::encode(Sha256::digest(self.document(&image.config, config.name)?))
            ),
            layer_count: image.layers.len(),
            layer_bytes,
            tar_bytes: self.tar_bytes,
        })
    }

    /// The kept JSON document of the file `name`, which `path` named.
    fn document(&self, path: &str, name: &str) -> Result<&[u8], ImageError> {
        self.json
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| ImageError::BadMetadata {
                file: path.to_owned(),
                reason: "it is not a JSON document".to_owned(),
            })
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, path: &str, name: &str) -> Result<T, ImageError> {
        serde_json::from_slice(self.document(path, name)?).map_err(|error| {
            ImageError::BadMetadata {
                file: path.to_owned(),
                reason: error.to_string(),
            }
        })
    }

    /// The config's os and architecture, which must be the one platform Cumulocity runs.
    fn platform(&self, path: &str, name: &str) -> Result<(String, String), ImageError> {
        let config: ImageConfig = self.parse(path, name)?;
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
        Ok((os, architecture))
    }
}
