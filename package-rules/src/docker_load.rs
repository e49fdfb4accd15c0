//! Which files of an image archive Docker's loader reads, once it has unpacked the archive (moby
//! `image/tarexport/load.go`): `manifest.json`, and nothing else to find the image (an OCI
//! layout's `index.json` alone loads nothing); then the config and the layers by the names it
//! gives, cleaned and with symlinks followed inside the archive. A hard link is a second name of
//! a file unpacked before it. The image id is the config's SHA-256, whatever the config is named.
//!
//! `berth-pack` and the platform both find the image through [`Entries`], so they agree on which
//! file is the config, how large it may be and which links lead to it.

use std::collections::HashMap;
use std::fmt;

use crate::entry_names;

/// The `docker save` manifest: the one file Docker's loader starts from.
pub const MANIFEST: &str = "manifest.json";
/// An OCI image layout's index, which Docker's loader does not read.
pub const OCI_INDEX: &str = "index.json";
/// Entries the platform leaves out of what Docker loads, as they can name tags: `repositories`
/// (the classic loader's tags without `manifest.json`), the OCI `index.json` and its
/// `oci-layout` marker (containerd-backed engines read their annotations). The manifest may not
/// name them.
pub const DROPPED: [&str; 3] = ["repositories", OCI_INDEX, "oci-layout"];

/// The largest `manifest.json` either side reads. Docker sets no bound, but one image's takes a
/// few KiB (127 layers' names), and parsing costs a multiple of its size: the platform's parse and
/// re-write of a manifest of 1 MiB of empty layer names peaks at about 35 MB, of 4 MiB at 140 MB.
pub const MANIFEST_LIMIT: u64 = 1 << 20;
/// The largest image config either side reads (the platform only hashes it as it streams past,
/// `berth-pack` keeps it to read two fields). Docker sets no bound; real configs take a few KiB,
/// a long history or many labels some hundreds, and registries take image metadata of 4 MiB (the
/// OCI distribution spec's floor for manifests, moby's `maxManifestBodySize`).
pub const CONFIG_LIMIT: u64 = 4 << 20;

/// Links followed from one name before giving up: a loop, or a chain no tool writes.
pub const MAX_LINK_HOPS: usize = 16;

/// Most bytes of link targets one archive may make [`Entries`] keep (its names are bounded by
/// [`entry_names::MAX_NAME_BYTES`]).
pub const MAX_TARGET_BYTES: usize = entry_names::MAX_NAME_BYTES;

/// Why the archive is not an image Docker would load as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `manifest.json` file; `oci_layout` when there is an `index.json`.
    NoManifest { oci_layout: bool },
    /// `manifest.json` is a link.
    ManifestNotAFile,
    /// `manifest.json` is larger than [`MANIFEST_LIMIT`].
    ManifestTooLarge { size: u64 },
    /// The config, named `file`, is larger than [`CONFIG_LIMIT`].
    ConfigTooLarge { file: String, size: u64 },
    /// The config's name leads to `manifest.json`, which Docker gets as Berth re-wrote it.
    ConfigIsManifest,
    /// A name the manifest gives (`what`: the config, a layer) leads to no file of the archive.
    Missing { what: &'static str, file: String },
    /// A name the manifest gives is one of the [`DROPPED`] entries.
    Dropped { what: &'static str, file: String },
    /// A link whose target is absolute or climbs out of the archive.
    LinkOutside { link: String, target: String },
    /// A hard link to anything but a file that came before it.
    HardLinkTarget { link: String, target: String },
    /// The links' targets take more than [`MAX_TARGET_BYTES`].
    LinkTargets,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoManifest { oci_layout: true } => write!(
                f,
                "it is an OCI image layout ({OCI_INDEX}) without the {MANIFEST} Docker's loader reads: save the image with `docker save` (Docker 25 and later write both) or `podman save --format docker-archive`, or convert it with `skopeo copy oci-archive:IN.tar docker-archive:OUT.tar`"
            ),
            Refusal::NoManifest { oci_layout: false } => write!(
                f,
                "not a container image saved with `docker save`: it has no {MANIFEST}; save the image with `docker save IMAGE -o image.tar`"
            ),
            Refusal::ManifestNotAFile => write!(
                f,
                "{MANIFEST} is a link; it must be a file, as `docker save` writes it"
            ),
            Refusal::ManifestTooLarge { size } => write!(
                f,
                "{MANIFEST} is {size} bytes, more than the {} MiB it may take (one image's takes a few KiB): save the image alone with `docker save`",
                MANIFEST_LIMIT >> 20
            ),
            Refusal::ConfigIsManifest => write!(
                f,
                "{MANIFEST} names itself as the image config: name the config file `docker save` wrote"
            ),
            Refusal::ConfigTooLarge { file, size } => write!(
                f,
                "the image config {file:?} is {size} bytes, more than the {} MiB a config may take: make the image's labels, environment or history smaller",
                CONFIG_LIMIT >> 20
            ),
            Refusal::Missing { what, file } => write!(
                f,
                "{MANIFEST} names {what} {file:?}, which is missing from the archive (no file of that name, nor a link to one within {MAX_LINK_HOPS} hops): save the image with `docker save`"
            ),
            Refusal::Dropped { what, file } => write!(
                f,
                "{MANIFEST} names {what} {file:?}, one of the entries Berth leaves out of what Docker loads ({}, which can name tags): save the image with `docker save`",
                DROPPED.join(", ")
            ),
            Refusal::LinkOutside { link, target } => {
                write!(f, "link {link:?} points outside the archive ({target:?})")
            }
            Refusal::HardLinkTarget { link, target } => write!(
                f,
                "hard link {link:?} names {target:?}, which is not a file earlier in the archive (Docker links to a file it already unpacked): store the file before the link, or a copy in its place"
            ),
            Refusal::LinkTargets => write!(
                f,
                "the archive's links name more than {} MiB of targets",
                MAX_TARGET_BYTES >> 20
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// A `manifest.json` of `size` bytes is small enough to read ([`MANIFEST_LIMIT`]).
pub fn check_manifest_size(size: u64) -> Result<(), Refusal> {
    if size > MANIFEST_LIMIT {
        return Err(Refusal::ManifestTooLarge { size });
    }
    Ok(())
}

/// `path` walked from the components `base`: `.` and empty components skipped, `..` going up
/// (`None` past the top). `None` too for an absolute path, a `\` or NUL, or the archive itself.
fn walk<'a>(mut base: Vec<&'a str>, path: &'a str) -> Option<String> {
    if path.starts_with('/') || path.contains(['\\', '\0']) {
        return None;
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                base.pop()?;
            }
            part => base.push(part),
        }
    }
    (!base.is_empty()).then(|| base.join("/"))
}

/// A symlink's target resolved against the link's directory, or `None` when it is absolute or
/// climbs out of the archive.
pub fn resolve_symlink(link: &str, target: &str) -> Option<String> {
    let mut base: Vec<&str> = link.split('/').collect();
    base.pop();
    walk(base, target)
}

/// A name as `manifest.json` gives it, cleaned as Docker's `filepath.Join` cleans it (`./a` and
/// `a//b` are `a` and `a/b`); `None` when it is absolute or climbs out of the archive.
pub fn manifest_path(path: &str) -> Option<String> {
    walk(Vec::new(), path)
}

#[derive(Debug)]
enum Entry<T> {
    File {
        size: u64,
        data: T,
    },
    /// A second name of the file named here.
    HardLink {
        file: String,
    },
    /// The resolved target.
    Symlink {
        target: String,
    },
}

/// A file an archive's name leads to.
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'a, T> {
    /// The file's own name (the end of the links).
    pub name: &'a str,
    pub size: u64,
    pub data: &'a T,
}

/// The files and links of an archive, in the order they came (names already admitted by
/// [`entry_names::Names`]), each file with what the caller keeps of it (`T`: a digest, nothing).
#[derive(Debug)]
pub struct Entries<T> {
    entries: HashMap<String, Entry<T>>,
    target_bytes: usize,
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries {
            entries: HashMap::new(),
            target_bytes: 0,
        }
    }
}

impl<T> Entries<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(&mut self, name: &str, size: u64, data: T) {
        self.entries
            .insert(name.to_owned(), Entry::File { size, data });
    }

    fn keep_target(&mut self, target: &str) -> Result<(), Refusal> {
        self.target_bytes = self.target_bytes.saturating_add(target.len());
        if self.target_bytes > MAX_TARGET_BYTES {
            return Err(Refusal::LinkTargets);
        }
        Ok(())
    }

    /// A symlink `name` to `target`, resolved against its directory; it may dangle.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), Refusal> {
        let resolved = resolve_symlink(name, target).ok_or_else(|| Refusal::LinkOutside {
            link: name.to_owned(),
            target: target.to_owned(),
        })?;
        self.keep_target(&resolved)?;
        self.entries
            .insert(name.to_owned(), Entry::Symlink { target: resolved });
        Ok(())
    }

    /// A hard link `name` to `target`, an archive path that must name a file (or a hard link to
    /// one) that came before: Docker makes the link when it unpacks it.
    pub fn hard_link(&mut self, name: &str, target: &str) -> Result<(), Refusal> {
        if entry_names::clean(target, false).is_none() {
            return Err(Refusal::LinkOutside {
                link: name.to_owned(),
                target: target.to_owned(),
            });
        }
        let file = match self.entries.get(target) {
            Some(Entry::File { .. }) => target.to_owned(),
            Some(Entry::HardLink { file }) => file.clone(),
            Some(Entry::Symlink { .. }) | None => {
                return Err(Refusal::HardLinkTarget {
                    link: name.to_owned(),
                    target: target.to_owned(),
                });
            }
        };
        self.keep_target(&file)?;
        self.entries
            .insert(name.to_owned(), Entry::HardLink { file });
        Ok(())
    }

    /// Whether `name` is a file (not a link).
    pub fn is_file(&self, name: &str) -> bool {
        matches!(self.entries.get(name), Some(Entry::File { .. }))
    }

    /// The one `manifest.json` Docker's loader would read: a file of at most [`MANIFEST_LIMIT`].
    pub fn manifest(&self) -> Result<(), Refusal> {
        match self.entries.get(MANIFEST) {
            Some(Entry::File { size, .. }) => check_manifest_size(*size),
            Some(_) => Err(Refusal::ManifestNotAFile),
            None => Err(Refusal::NoManifest {
                oci_layout: self.entries.contains_key(OCI_INDEX),
            }),
        }
    }

    /// The file `path`, which the manifest names as `what` (the config, a layer), leads to, as
    /// Docker's loader opens it: the name cleaned, links followed.
    pub fn find(&self, path: &str, what: &'static str) -> Result<Found<'_, T>, Refusal> {
        let missing = || Refusal::Missing {
            what,
            file: path.to_owned(),
        };
        let mut current = manifest_path(path).ok_or_else(missing)?;
        for _ in 0..=MAX_LINK_HOPS {
            let (name, entry) = self.entries.get_key_value(&current).ok_or_else(missing)?;
            let (name, entry) = match entry {
                Entry::Symlink { target } => {
                    current = target.clone();
                    continue;
                }
                Entry::HardLink { file } => self.entries.get_key_value(file).ok_or_else(missing)?,
                Entry::File { .. } => (name, entry),
            };
            let Entry::File { size, data } = entry else {
                return Err(missing());
            };
            if DROPPED.contains(&name.as_str()) {
                return Err(Refusal::Dropped {
                    what,
                    file: path.to_owned(),
                });
            }
            return Ok(Found {
                name,
                size: *size,
                data,
            });
        }
        Err(missing())
    }

    /// The file a layer's name leads to ([`Entries::find`]).
    pub fn layer(&self, path: &str) -> Result<Found<'_, T>, Refusal> {
        self.find(path, "the layer")
    }

    /// The file the config's name leads to ([`Entries::find`]), of at most [`CONFIG_LIMIT`].
    pub fn config(&self, path: &str) -> Result<Found<'_, T>, Refusal> {
        let found = self.find(path, "the config")?;
        if found.name == MANIFEST {
            return Err(Refusal::ConfigIsManifest);
        }
        if found.size > CONFIG_LIMIT {
            return Err(Refusal::ConfigTooLarge {
                file: path.to_owned(),
                size: found.size,
            });
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
