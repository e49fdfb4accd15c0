//! Reads a container image archive (`docker save` tar or OCI image layout tar) in one
//! sequential pass and checks that it is a single linux/amd64 image.
//!
//! The tar is never held in memory: only entries that look like small JSON documents
//! (manifests, configs, indexes) are kept, everything else is streamed past. Because
//! `manifest.json` may come after the layers, the pass records every entry's name and size
//! and resolves references once the end of the archive is reached.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use package_rules::entry_names;
use package_rules::tar_budget::{Budget, ENTRY_HEADERS_LIMIT};
use package_rules::unpacked::{Refusal, Unpacked};

/// JSON documents larger than this are not image metadata.
const MAX_JSON_ENTRY: u64 = 4 << 20;
/// Total JSON kept in memory per archive.
const MAX_JSON_TOTAL: usize = 16 << 20;

/// Read size for entry data nobody keeps: large, so a tee sees few big reads.
const SKIP_BUFFER: usize = 256 << 10;

/// The only platform Cumulocity runs.
pub const REQUIRED_OS: &str = "linux";
pub const REQUIRED_ARCHITECTURE: &str = "amd64";

/// Which archive layout the image came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveFormat {
    DockerSave,
    OciLayout,
}

/// What a valid image archive holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageSummary {
    pub format: ArchiveFormat,
    /// `repo:tag` references (docker save `RepoTags`, OCI `ref.name` annotations).
    pub tags: Vec<String>,
    pub os: String,
    pub architecture: String,
    /// `sha256:<hex>` of the image config: the image ID.
    pub config_digest: String,
    pub layer_count: usize,
    /// Sum of the layer sizes as stored in the archive.
    pub layer_bytes: u64,
    /// Size of the whole tar.
    pub tar_bytes: u64,
}

/// Why an archive is not an acceptable image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("not a readable tar archive (truncated or corrupt?): {0}")]
    Tar(#[source] io::Error),
    #[error("the tar ends without its end-of-archive marker: the file is truncated")]
    Truncated,
    #[error(
        "unsafe entry name {0:?}: names must be clean relative paths (no leading `/` or `./`, no `..`, `.` or `//`)"
    )]
    UnsafePath(String),
    #[error("{0}: Docker would unpack one entry over another")]
    Collision(String),
    #[error("entry {name:?} is a {kind}; image archives hold only files, directories and links")]
    UnexpectedEntryType { name: String, kind: String },
    #[error("link {name:?} points outside the archive ({target:?})")]
    UnsafeLink { name: String, target: String },
    #[error("the archive holds more than {} MiB of JSON metadata", MAX_JSON_TOTAL >> 20)]
    TooMuchMetadata,
    #[error(
        "not a container image: neither manifest.json (docker save) nor index.json (OCI layout) found"
    )]
    NotAnImage,
    #[error("{file} is not valid image metadata: {reason}")]
    BadMetadata { file: String, reason: String },
    #[error("the archive holds {0} images; a package needs exactly one")]
    MultipleImages(usize),
    #[error("{referenced_by} refers to {missing:?}, which is not in the archive")]
    Missing {
        referenced_by: String,
        missing: String,
    },
    #[error(
        "entry {name:?} has a PAX size record of {pax} bytes over a header saying {header}; the two must agree (Berth refuses it)"
    )]
    PaxSize { name: String, pax: u64, header: u64 },
    #[error(
        "the image unpacks to more than {limit} bytes (its compressed layers decompressed), the platform's default image size limit: make the image smaller"
    )]
    TooLarge { limit: u64 },
    #[error("entry {name:?}: {reason}")]
    Layer { name: String, reason: String },
    #[error(
        "image is {os}/{architecture}, but Cumulocity runs only {REQUIRED_OS}/{REQUIRED_ARCHITECTURE} images: rebuild it with `--platform linux/amd64`"
    )]
    WrongPlatform { os: String, architecture: String },
}

#[derive(Debug, Clone)]
enum EntryKind {
    File {
        size: u64,
    },
    Directory,
    /// Target already resolved to an archive path.
    Link {
        target: String,
    },
}

/// Reads the whole archive from `reader` (to its very end, so a tee sees every byte) and
/// summarizes the image in it; it must unpack to at most the platform's default image size
/// limit, its compressed layers decompressed (see [`scan_within`]).
pub fn scan<R: Read>(reader: R) -> Result<ImageSummary, ImageError> {
    scan_within(reader, package_rules::DEFAULT_IMAGE_SIZE_LIMIT)
}

/// What a refusal of the count means for the archive.
fn refused(name: &str, refusal: Refusal) -> ImageError {
    match refusal {
        Refusal::TooLarge { limit } => ImageError::TooLarge { limit },
        other => ImageError::Layer {
            name: name.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// [`scan`], the archive unpacking to at most `limit` bytes as Docker unpacks it: every file
/// counted through [`Unpacked`], as the platform counts it.
pub fn scan_within<R: Read>(reader: R, limit: u64) -> Result<ImageSummary, ImageError> {
    let counted = CountingReader {
        inner: reader,
        count: 0,
    };
    let mut entries: BTreeMap<String, EntryKind> = BTreeMap::new();
    let mut names = entry_names::Names::exact();
    let mut json: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut json_total = 0usize;
    let mut last_entry_end = 0u64;
    let mut buffer = vec![0u8; SKIP_BUFFER];
    let mut unpacked = Unpacked::new(limit);
    let tar_bytes;
    let saw_end_marker;
    {
        // The tar crate holds long names and PAX records whole: bounded, or a deflated run of
        // zeros claiming to be one entry's name would take gigabytes.
        let budget = Budget::new();
        let mut archive = tar::Archive::new(budget.reader(counted));
        let mut members = archive.entries().map_err(ImageError::Tar)?;
        while let Some(entry) = budget.within(ENTRY_HEADERS_LIMIT, || members.next()) {
            let mut entry = entry.map_err(ImageError::Tar)?;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            // Docker cleans names and lets a later entry win: what it loads must be what is
            // checked here, so names are already clean and meet no other entry.
            let is_dir = entry.header().entry_type() == tar::EntryType::Directory;
            if entry_names::clean(&raw_name, is_dir).is_none() {
                return Err(ImageError::UnsafePath(raw_name));
            }
            let kind = if is_dir {
                entry_names::Kind::Directory
            } else {
                entry_names::Kind::Leaf
            };
            let name = names
                .admit(&raw_name, kind)
                .map_err(ImageError::Collision)?
                .to_owned();
            // The tar reader goes by a PAX `size` record over the header's; the platform
            // refuses an entry whose two sizes differ, as Docker reads the header it writes.
            let size = entry.size();
            let header_size = entry.header().entry_size().map_err(ImageError::Tar)?;
            if size != header_size {
                return Err(ImageError::PaxSize {
                    name,
                    pax: size,
                    header: header_size,
                });
            }
            last_entry_end = entry.raw_file_position() + size.div_ceil(512) * 512;
            let kind =
                match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        let kept = read_file(&mut entry, size, &mut unpacked, &mut buffer)
                            .map_err(|e| match unpacked.refusal() {
                                Some(refusal) => refused(&name, refusal.clone()),
                                None => ImageError::Tar(e),
                            })?;
                        if let Some(document) = kept {
                            json_total += document.len();
                            if json_total > MAX_JSON_TOTAL {
                                return Err(ImageError::TooMuchMetadata);
                            }
                            json.insert(name.clone(), document);
                        }
                        EntryKind::File { size }
                    }
                    tar::EntryType::Directory => EntryKind::Directory,
                    tar::EntryType::Symlink | tar::EntryType::Link => {
                        let target = entry
                            .link_name_bytes()
                            .map(|t| String::from_utf8_lossy(&t).into_owned())
                            .unwrap_or_default();
                        let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                            resolve_symlink(&name, &target)
                        } else {
                            normalize(&target)
                        };
                        let target = resolved.ok_or_else(|| ImageError::UnsafeLink {
                            name: name.clone(),
                            target,
                        })?;
                        EntryKind::Link { target }
                    }
                    other => {
                        return Err(ImageError::UnexpectedEntryType {
                            name,
                            kind: format!("{other:?}"),
                        });
                    }
                };
            // Drain the rest of the entry so the tee sees it and the position advances.
            skip_through(&mut entry, &mut buffer).map_err(ImageError::Tar)?;
            entries.insert(name, kind);
        }
        let mut rest = archive.into_inner().into_inner();
        // Without the two zero blocks the reader stops right after the last entry's data.
        saw_end_marker = rest.count > last_entry_end;
        // Read trailing padding so the whole file passes through (tees copy it verbatim).
        skip_through(&mut rest, &mut buffer).map_err(ImageError::Tar)?;
        tar_bytes = rest.count;
    }
    if entries.is_empty() {
        return Err(ImageError::NotAnImage);
    }
    if !saw_end_marker {
        return Err(ImageError::Truncated);
    }
    let archive = ScannedArchive {
        entries,
        json,
        tar_bytes,
    };
    if archive.json.contains_key("manifest.json") {
        archive.docker_save()
    } else if archive.json.contains_key("index.json") {
        archive.oci_layout()
    } else {
        Err(ImageError::NotAnImage)
    }
}

/// Reads a file's data to its end through the count of what it unpacks to, keeping it if it
/// looks like a small JSON document (manifests, configs, indexes).
fn read_file(
    entry: &mut impl Read,
    size: u64,
    unpacked: &mut Unpacked,
    buffer: &mut [u8],
) -> io::Result<Option<Vec<u8>>> {
    let mut data = unpacked.file(entry)?;
    let mut kept = None;
    if size <= MAX_JSON_ENTRY {
        let mut start = Vec::new();
        (&mut data).take(64).read_to_end(&mut start)?;
        if start
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{' || b == b'[')
        {
            data.read_to_end(&mut start)?;
            kept = Some(start);
        }
    }
    // Drain the rest of the entry so the tee sees it, the position advances and it is counted
    // (and ended).
    skip_through(&mut data, buffer)?;
    Ok(kept)
}

/// Reads `reader` to its end, discarding the data (a tee wrapped around the source still sees it).
fn skip_through(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<()> {
    loop {
        match reader.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Turns a tar entry name into a canonical archive path (`a/b`), or `None` if it is
/// absolute or climbs out with `..`.
fn normalize(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Resolves a symlink target relative to the link's directory, staying inside the archive.
fn resolve_symlink(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for component in Path::new(target).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

struct ScannedArchive {
    entries: BTreeMap<String, EntryKind>,
    json: BTreeMap<String, Vec<u8>>,
    tar_bytes: u64,
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

    fn blob_path(digest: &str, referenced_by: &str) -> Result<String, ImageError> {
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

#[cfg(test)]
mod tests;
