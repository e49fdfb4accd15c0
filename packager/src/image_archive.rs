//! Reads a container image archive (a `docker save` tar, which Docker 25 and later also make an
//! OCI image layout) in one sequential pass and checks that it is a single linux/amd64 image,
//! found as Docker's loader finds it ([`docker_load`], the platform's rule too).
//!
//! The tar is never held in memory: only entries that look like small JSON documents
//! (manifests, configs) are kept, everything else is streamed past. Because `manifest.json` may
//! come after the layers, the pass records every file and link and resolves references once the
//! end of the archive is reached.

use std::collections::BTreeMap;
use std::io::{self, Read};

use package_rules::docker_load::{self, CONFIG_LIMIT, Entries};
use package_rules::entry_names;
use package_rules::tar_budget::{Budget, ENTRY_HEADERS_LIMIT};
use package_rules::unpacked::{Refusal, Unpacked};

mod layout;

use layout::ScannedArchive;

/// Total JSON kept in memory per archive.
const MAX_JSON_TOTAL: usize = 16 << 20;

/// Read size for entry data nobody keeps: large, so a tee sees few big reads.
const SKIP_BUFFER: usize = 256 << 10;

/// The only platform Cumulocity runs.
pub const REQUIRED_OS: &str = "linux";
pub const REQUIRED_ARCHITECTURE: &str = "amd64";

/// Which archive layout the image came in. Docker loads either by its `manifest.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveFormat {
    DockerSave,
    /// A `docker save` archive that is an OCI image layout too (`index.json`), as Docker 25
    /// and later write.
    OciLayout,
}

/// What a valid image archive holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageSummary {
    pub format: ArchiveFormat,
    /// `repo:tag` references (`manifest.json`'s `RepoTags`).
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
    #[error("entry {0:?} is not UTF-8; name entries and links in UTF-8")]
    NotUtf8(String),
    #[error("{0}: Docker would unpack one entry over another")]
    Collision(String),
    #[error("entry {name:?} is a {kind}; image archives hold only files, directories and links")]
    UnexpectedEntryType { name: String, kind: String },
    /// How Docker's loader finds the image, as the platform applies it.
    #[error("{0}")]
    Load(#[from] docker_load::Refusal),
    #[error("the archive holds more than {} MiB of JSON metadata", MAX_JSON_TOTAL >> 20)]
    TooMuchMetadata,
    #[error("not a container image: the archive is empty; save the image with `docker save`")]
    NotAnImage,
    #[error("{file} is not valid image metadata: {reason}")]
    BadMetadata { file: String, reason: String },
    #[error("the archive holds {0} images; a package needs exactly one")]
    MultipleImages(usize),
    #[error(
        "entry {name:?} has a PAX size record of {pax} bytes over a header saying {header}; the two must agree (Berth refuses it)"
    )]
    PaxSize { name: String, pax: u64, header: u64 },
    #[error(
        "the image unpacks to more than {limit} bytes (its compressed layers decompressed): make the image smaller, or, if the platform's image_size_limit is larger (its operator can raise it), pass that with --image-size-limit (default 2GiB, the platform's default)"
    )]
    TooLarge { limit: u64 },
    #[error("entry {name:?}: {reason}")]
    Layer { name: String, reason: String },
    #[error(
        "image is {os}/{architecture}, but Cumulocity runs only {REQUIRED_OS}/{REQUIRED_ARCHITECTURE} images: rebuild it with `--platform linux/amd64`"
    )]
    WrongPlatform { os: String, architecture: String },
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
    let mut entries: Entries<()> = Entries::new();
    let mut any_entry = false;
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
            any_entry = true;
            let raw_name = utf8(&entry.path_bytes())?;
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
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let kept =
                        read_file(&mut entry, size, &mut unpacked, &mut buffer).map_err(|e| {
                            match unpacked.refusal() {
                                Some(refusal) => refused(&name, refusal.clone()),
                                None => ImageError::Tar(e),
                            }
                        })?;
                    if let Some(document) = kept {
                        json_total += document.len();
                        if json_total > MAX_JSON_TOTAL {
                            return Err(ImageError::TooMuchMetadata);
                        }
                        json.insert(name.clone(), document);
                    }
                    entries.file(&name, size, ());
                }
                tar::EntryType::Directory => {}
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let target = utf8(&entry.link_name_bytes().unwrap_or_default())?;
                    if kind == tar::EntryType::Symlink {
                        entries.symlink(&name, &target)?;
                    } else {
                        entries.hard_link(&name, &target)?;
                    }
                }
                other => {
                    return Err(ImageError::UnexpectedEntryType {
                        name,
                        kind: format!("{other:?}"),
                    });
                }
            }
            // Drain the rest of the entry so the tee sees it and the position advances.
            skip_through(&mut entry, &mut buffer).map_err(ImageError::Tar)?;
        }
        let mut rest = archive.into_inner().into_inner();
        // Without the two zero blocks the reader stops right after the last entry's data.
        saw_end_marker = rest.count > last_entry_end;
        // Read trailing padding so the whole file passes through (tees copy it verbatim).
        skip_through(&mut rest, &mut buffer).map_err(ImageError::Tar)?;
        tar_bytes = rest.count;
    }
    if !any_entry {
        return Err(ImageError::NotAnImage);
    }
    if !saw_end_marker {
        return Err(ImageError::Truncated);
    }
    ScannedArchive {
        entries,
        json,
        tar_bytes,
    }
    .summary()
}

/// A name or link target as text, as the platform takes it.
fn utf8(raw: &[u8]) -> Result<String, ImageError> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| ImageError::NotUtf8(String::from_utf8_lossy(raw).into_owned()))
}

/// Reads a file's data to its end through the count of what it unpacks to, keeping it if it
/// looks like a JSON document small enough to be image metadata (the larger bound,
/// [`CONFIG_LIMIT`]).
fn read_file(
    entry: &mut impl Read,
    size: u64,
    unpacked: &mut Unpacked,
    buffer: &mut [u8],
) -> io::Result<Option<Vec<u8>>> {
    let mut data = unpacked.file(entry)?;
    let mut kept = None;
    if size <= CONFIG_LIMIT {
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

#[cfg(test)]
mod tests;
