//! `image.tar`, a `docker save` archive: checked and re-written for Docker in one pass, its end
//! held back until the caller agrees (see [`Rewritten`]). Docker unpacks the archive and then reads `manifest.json` (tags from its `RepoTags`;
//! `repositories` only when there is no `manifest.json`), so what it loads is decided by names
//! and files Berth must have seen the same way: entry names are clean and unique
//! ([`entry_names`]), only files, directories and links inside the archive pass, and the archive
//! Docker gets has a `manifest.json` Berth wrote from the checked one, without tags, and no
//! `repositories` or OCI index. Nothing the tenant wrote can tag an image. The config and layers
//! are found as Docker's loader finds them ([`docker_load`], `berth-pack`'s rule too), and the
//! image id is the config's digest.
//!
//! Every entry's size is the one the tar reader goes by (a PAX `size` record's, which must
//! agree with the header's), and the re-written header says it. Every file counts at what
//! Docker unpacks it to ([`Unpacked`]): a gzip-compressed layer decompressed on the way (the
//! output thrown away), against the image size limit; zstd, bzip2 and xz layers are refused.
//! The count is the checked image's `unpacked_bytes`, which the storage quota charges.

use std::io::{self, Read, Write};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ImageInfo, PackageError};
use package_rules::docker_load::{self, CONFIG_LIMIT, DROPPED, Entries, MANIFEST};
use package_rules::entry_names::{Kind, Names};
use package_rules::tar_budget::{Budget, ENTRY_HEADERS_LIMIT};
use package_rules::unpacked::{Refusal, Unpacked};

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

/// Admits the next entry: its name, type and link target (a link kept in `entries`).
fn check_entry<R: Read>(
    names: &mut Names,
    entries: &mut Entries<Option<String>>,
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
    match &checked {
        Checked::Link {
            target,
            symbolic: true,
        } => entries.symlink(&name, target).map_err(bad)?,
        Checked::Link {
            target,
            symbolic: false,
        } => entries.hard_link(&name, target).map_err(bad)?,
        Checked::File(_) | Checked::Directory => {}
    }
    Ok((name, checked))
}

/// Checks a `docker save` archive and returns the one image it holds, its id the config's digest
/// (so the id Docker will give the image is known before loading it).
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
/// without tags ([`manifest_for_docker`]), [`DROPPED`] left out. Everything but the
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
        let (name, checked) = check_entry(&mut names, &mut kept.entries, &entry)?;
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
    kept.entries.manifest().map_err(bad)?;
    let image = kept
        .manifest
        .ok_or_else(|| bad(format!("{MANIFEST} is missing")))?;
    // Docker opens the config and layers by these names: they must lead to entries as checked,
    // and the image id Docker gives is the config's digest.
    let config = kept.entries.config(&image.config).map_err(bad)?;
    // Every file of at most `CONFIG_LIMIT` was hashed but manifest.json and the dropped entries,
    // which `config` refuses.
    let digest = config
        .data
        .clone()
        .ok_or_else(|| bad(format!("the config {} was not read", image.config)))?;
    for layer in &image.layers {
        kept.entries.layer(layer).map_err(bad)?;
    }
    Ok(ImageInfo {
        id: format!("sha256:{digest}"),
        repo_tags: image.repo_tags,
        config: image.config,
        layers: image.layers,
        unpacked_bytes: unpacked.total(),
    })
}

/// What the pass keeps: the checked manifest, and every file and link with the digest of each
/// file small enough to be the config.
#[derive(Default)]
struct Kept {
    manifest: Option<CheckedManifest>,
    entries: Entries<Option<String>>,
}

/// The one image `manifest.json` names.
struct CheckedManifest {
    repo_tags: Vec<String>,
    config: String,
    layers: Vec<String>,
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
/// ([`manifest_for_docker`]), [`DROPPED`] left out (the caller drains them), the rest
/// streamed; every file is kept in [`Kept::entries`], with its digest when it is small enough
/// to be the config.
fn hand_on<W: Write>(
    data: &mut impl Read,
    file: File<'_>,
    builder: &mut tar::Builder<W>,
    kept: &mut Kept,
) -> Result<(), PackageError> {
    let File { name, size, header } = file;
    let mut digest = None;
    if name == MANIFEST {
        docker_load::check_manifest_size(size).map_err(bad)?;
        let mut text = String::new();
        data.take(size)
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
        let image = parse_manifest(&text)?;
        let text = manifest_for_docker(&image);
        header.set_mode(0o644);
        header.set_size(text.len() as u64);
        builder.append_data(header, name, text.as_slice())?;
        kept.manifest = Some(image);
    } else if !DROPPED.contains(&name) {
        header.set_mode(0o644);
        header.set_size(size);
        if size <= CONFIG_LIMIT {
            let mut hashing = Hashing {
                inner: data.take(size),
                hasher: Sha256::new(),
            };
            builder.append_data(header, name, &mut hashing)?;
            digest = Some(hex::encode(hashing.hasher.finalize()));
        } else {
            builder.append_data(header, name, data.take(size))?;
        }
    }
    kept.entries.file(name, size, digest);
    Ok(())
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The one image `manifest.json` names (its config's digest, the image id, is known once the
/// whole archive was read).
fn parse_manifest(text: &str) -> Result<CheckedManifest, PackageError> {
    let images: Vec<SaveManifestEntry> =
        serde_json::from_str(text).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    let [image] = images.as_slice() else {
        return Err(bad(format!(
            "it must hold exactly one image, found {}",
            images.len()
        )));
    };
    Ok(CheckedManifest {
        repo_tags: image.repo_tags.clone().unwrap_or_default(),
        config: image.config.clone(),
        layers: image.layers.clone(),
    })
}

/// The `manifest.json` Docker gets: the checked image's config and layers, and no tags.
fn manifest_for_docker(image: &CheckedManifest) -> Vec<u8> {
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
