//! `image.tar`, a `docker save` archive: checked and re-written for Docker in one pass, its end
//! held back until the caller agrees (see [`Rewritten`]). Docker unpacks the archive and then reads `manifest.json` (tags from its `RepoTags`;
//! `repositories` only when there is no `manifest.json`), so what it loads is decided by names
//! and files Berth must have seen the same way: entry names are clean and unique
//! ([`entry_names`]), only files, directories and links inside the archive pass, and the archive
//! Docker gets has a `manifest.json` Berth wrote from the checked one, without tags, and no
//! `repositories` or OCI index. Nothing the tenant wrote can tag an image.
//!
//! Every entry's size is the one the tar reader goes by (a PAX `size` record's, which must
//! agree with the header's), and the re-written header says it. Every file counts at what
//! Docker unpacks it to ([`Unpacked`]): a gzip-compressed layer decompressed on the way (the
//! output thrown away), against the image size limit; zstd, bzip2 and xz layers are refused.
//! The count is the checked image's `unpacked_bytes`, which the storage quota charges.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ImageInfo, PackageError};
use package_rules::entry_names::{Kind, Names};
use package_rules::tar_budget::{Budget, ENTRY_HEADERS_LIMIT};
use package_rules::unpacked::{Refusal, Unpacked};

const MANIFEST: &str = "manifest.json";
/// Entries that can name tags and are left out of what Docker gets: `repositories` (read by the
/// classic loader without `manifest.json`), and the OCI `index.json` with its `oci-layout` marker
/// (read by containerd-backed engines, whose annotations name tags).
const TAGGING_ENTRIES: [&str; 3] = ["repositories", "index.json", "oci-layout"];
/// Configs larger than this are not hashed (real ones are a few KiB).
const CONFIG_LIMIT: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn bad(message: impl std::fmt::Display) -> PackageError {
    PackageError::BadImage(message.to_string())
}

/// One entry of the archive as Berth will hand it on.
enum Checked {
    File(u64),
    Directory,
    Link { target: String, symbolic: bool },
}

/// Admits the next entry: its name, type and link target, the same way in both passes.
fn check_entry<R: Read>(
    names: &mut Names,
    entry: &tar::Entry<'_, R>,
) -> Result<(String, Checked), PackageError> {
    let raw = entry.path_bytes();
    let raw = std::str::from_utf8(&raw)
        .map_err(|_| {
            bad(format!(
                "entry {:?} is not UTF-8",
                String::from_utf8_lossy(&raw)
            ))
        })?
        .to_owned();
    // The tar reader takes an entry's size from a PAX `size` record over the header's: Docker
    // reads the re-written header only, so the two readings must not differ by a byte.
    let header_size = entry.header().entry_size().map_err(bad)?;
    if entry.size() != header_size {
        return Err(bad(format!(
            "entry {raw:?} has a PAX size record of {} bytes over a header saying {header_size}; the two must agree",
            entry.size()
        )));
    }
    let kind = entry.header().entry_type();
    let checked = match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => Checked::File(entry.size()),
        tar::EntryType::Directory => Checked::Directory,
        tar::EntryType::Symlink | tar::EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .and_then(|t| std::str::from_utf8(&t).ok().map(str::to_owned))
                .ok_or_else(|| bad(format!("link {raw:?} has no readable target")))?;
            Checked::Link {
                target,
                symbolic: kind == tar::EntryType::Symlink,
            }
        }
        other => {
            return Err(bad(format!(
                "entry {raw:?} is a {other:?}; image archives hold only files, directories and links"
            )));
        }
    };
    let name_kind = match checked {
        Checked::Directory => Kind::Directory,
        _ => Kind::Leaf,
    };
    let name = names.admit(&raw, name_kind).map_err(bad)?.to_owned();
    if let Checked::Link { target, symbolic } = &checked {
        let inside = if *symbolic {
            resolve_symlink(&name, target).is_some()
        } else {
            package_rules::entry_names::clean(target, false).is_some()
        };
        if !inside {
            return Err(bad(format!(
                "link {name:?} points outside the archive ({target:?})"
            )));
        }
    }
    Ok((name, checked))
}

/// Resolves a relative symlink target against the link's directory, staying inside the archive.
fn resolve_symlink(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.contains(['\\', '\0']) {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Checks a `docker save` archive and returns the one image it holds, with the config's digest
/// verified (so the id Docker will give the image is known before loading it).
#[cfg(test)]
fn check(reader: impl Read) -> Result<ImageInfo, PackageError> {
    Ok(check_and_rewrite(reader, u64::MAX, io::sink())?
        .image
        .clone())
}

/// Passes writes on while open; once closed (a failed or refused archive), refuses them, so the
/// end-of-archive marker `tar::Builder` writes when dropped never reaches Docker.
struct Gate<W> {
    inner: W,
    open: bool,
}

impl<W: Write> Write for Gate<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if !self.open {
            return Err(io::Error::other("the image archive was refused"));
        }
        self.inner.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.open {
            return Err(io::Error::other("the image archive was refused"));
        }
        self.inner.flush()
    }
}

/// A checked archive written for Docker but for its end: [`Rewritten::finish`] writes it, so
/// Docker loads nothing before the caller agreed; dropped unfinished, the end is never written.
pub struct Rewritten<W: Write> {
    pub image: ImageInfo,
    builder: Option<tar::Builder<Gate<W>>>,
}

impl<W: Write> Rewritten<W> {
    /// Ends the archive (Docker may load it from here on).
    pub fn finish(mut self) -> io::Result<()> {
        let builder = self.builder.take().expect("finished once");
        builder.into_inner()?.inner.flush()
    }
}

impl<W: Write> Drop for Rewritten<W> {
    fn drop(&mut self) {
        if let Some(builder) = &mut self.builder {
            builder.get_mut().open = false;
        }
    }
}

/// Checks the archive read from `reader` and re-writes it into `out` for Docker in the same
/// pass: fresh headers for the entries as checked, `manifest.json` replaced by the checked one
/// without tags ([`manifest_for_docker`]), [`TAGGING_ENTRIES`] left out. Everything but the
/// archive's end is written; on any failure the end never is, so Docker loads nothing.
pub fn check_and_rewrite<W: Write>(
    reader: impl Read,
    limit: u64,
    out: W,
) -> Result<Rewritten<W>, PackageError> {
    let mut builder = tar::Builder::new(Gate {
        inner: out,
        open: true,
    });
    match rewrite_entries(reader, limit, &mut builder) {
        Ok(image) => Ok(Rewritten {
            image,
            builder: Some(builder),
        }),
        Err(e) => {
            builder.get_mut().open = false;
            Err(e)
        }
    }
}

fn rewrite_entries<W: Write>(
    reader: impl Read,
    limit: u64,
    builder: &mut tar::Builder<W>,
) -> Result<ImageInfo, PackageError> {
    // The tar crate holds long names and PAX records whole: bounded, or a deflated run of zeros
    // claiming to be one entry's name would take gigabytes.
    let budget = Budget::new();
    let mut archive = tar::Archive::new(budget.reader(reader));
    let mut entries = archive.entries().map_err(bad)?;
    let mut names = Names::exact();
    let mut kept = Kept::default();
    let mut unpacked = Unpacked::new(limit);
    while let Some(entry) = budget.within(ENTRY_HEADERS_LIMIT, || entries.next()) {
        let mut entry = entry.map_err(bad)?;
        let (name, checked) = check_entry(&mut names, &entry)?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(entry.header().mtime().unwrap_or(0));
        match checked {
            Checked::File(size) => {
                let file = File {
                    name: &name,
                    size,
                    header: &mut header,
                };
                rewrite_file(&mut entry, file, builder, &mut unpacked, &mut kept)?;
            }
            Checked::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, &name, io::empty())?;
            }
            Checked::Link { target, symbolic } => {
                header.set_entry_type(if symbolic {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, &name, &target)?;
            }
        }
        // What was not handed on (a directory's or link's data) is read here, not in the
        // bounded search for the next entry.
        io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
    }
    let mut image = kept
        .manifest
        .ok_or_else(|| bad(format!("{MANIFEST} is missing")))?;
    image.unpacked_bytes = unpacked.total();
    // Docker opens the config and layers by these names: they must be entries as checked.
    let hex = image.id.trim_start_matches("sha256:");
    match kept.small_file_digests.get(image.config.as_str()) {
        Some(digest) if digest == hex => Ok(image),
        Some(_) => Err(bad(format!(
            "the config {} does not match its digest",
            image.config
        ))),
        None => Err(bad(format!(
            "the config {} named by {MANIFEST} is missing",
            image.config
        ))),
    }
}

/// What the pass keeps of the files it read: the checked manifest and the small files' digests.
#[derive(Default)]
struct Kept {
    manifest: Option<ImageInfo>,
    small_file_digests: HashMap<String, String>,
}

/// A file entry as checked, and the fresh header it gets.
struct File<'a> {
    name: &'a str,
    size: u64,
    header: &'a mut tar::Header,
}

/// What a refusal of the count means for the upload: too large (413) or a bad image (422).
fn refused(name: &str, refusal: Refusal) -> PackageError {
    match refusal {
        Refusal::TooLarge { limit } => PackageError::ImageTooLarge { limit },
        other => bad(format!("entry {name:?}: {other}")),
    }
}

/// Reads one file's data, all of it through the count of what the archive unpacks to (a
/// compressed layer counts decompressed), and hands it on as [`hand_on`] decides.
fn rewrite_file<W: Write>(
    entry: &mut impl Read,
    file: File<'_>,
    builder: &mut tar::Builder<W>,
    unpacked: &mut Unpacked,
    kept: &mut Kept,
) -> Result<(), PackageError> {
    let (name, size) = (file.name, file.size);
    let read = unpacked.file(entry).map_err(bad).and_then(|mut data| {
        hand_on(&mut data, file, builder, kept)?;
        // What was not handed on (a dropped entry) is counted too, and the file ended.
        io::copy(&mut data, &mut io::sink()).map_err(bad)?;
        Ok(data.read_bytes())
    });
    if let Some(refusal) = unpacked.refusal() {
        return Err(refused(name, refusal.clone()));
    }
    let read = read?;
    // A header written for Docker says `size`: the data must be all there.
    if read != size {
        return Err(bad(format!(
            "entry {name:?} ends after {read} of its {size} bytes"
        )));
    }
    Ok(())
}

/// Hands a file on for Docker: `manifest.json` replaced by the checked one without tags
/// ([`manifest_for_docker`]), [`TAGGING_ENTRIES`] left out (the caller drains them), small
/// files kept for their digests, the rest streamed.
fn hand_on<W: Write>(
    data: &mut impl Read,
    file: File<'_>,
    builder: &mut tar::Builder<W>,
    kept: &mut Kept,
) -> Result<(), PackageError> {
    let File { name, size, header } = file;
    if name == MANIFEST {
        let mut text = String::new();
        data.take(CONFIG_LIMIT + 1)
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
        if text.len() as u64 > CONFIG_LIMIT {
            return Err(bad(format!("{MANIFEST} is larger than 1 MiB")));
        }
        let image = parse_manifest(&text)?;
        let text = manifest_for_docker(&image);
        header.set_mode(0o644);
        header.set_size(text.len() as u64);
        builder.append_data(header, name, text.as_slice())?;
        kept.manifest = Some(image);
    } else if size <= CONFIG_LIMIT {
        let mut bytes = Vec::new();
        data.take(size).read_to_end(&mut bytes).map_err(bad)?;
        if !TAGGING_ENTRIES.contains(&name) {
            header.set_mode(0o644);
            header.set_size(bytes.len() as u64);
            builder.append_data(header, name, bytes.as_slice())?;
        }
        kept.small_file_digests
            .insert(name.to_owned(), hex::encode(Sha256::digest(&bytes)));
    } else if !TAGGING_ENTRIES.contains(&name) {
        header.set_mode(0o644);
        header.set_size(size);
        builder.append_data(header, name, data.take(size))?;
    }
    Ok(())
}

/// The one image `manifest.json` names, its id taken from the config's name (verified against
/// the config's digest once the whole archive was read).
fn parse_manifest(text: &str) -> Result<ImageInfo, PackageError> {
    let images: Vec<SaveManifestEntry> =
        serde_json::from_str(text).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    let [image] = images.as_slice() else {
        return Err(bad(format!(
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
        return Err(bad(format!("unexpected config name {:?}", image.config)));
    }
    Ok(ImageInfo {
        id: format!("sha256:{hex}"),
        repo_tags: image.repo_tags.clone().unwrap_or_default(),
        config: image.config.clone(),
        layers: image.layers.clone(),
        // Known once the whole archive was read.
        unpacked_bytes: 0,
    })
}

/// The `manifest.json` Docker gets: the checked image's config and layers, and no tags.
fn manifest_for_docker(image: &ImageInfo) -> Vec<u8> {
    serde_json::json!([{
        "Config": image.config,
        "RepoTags": null,
        "Layers": image.layers,
    }])
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests;
