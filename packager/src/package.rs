//! Package zips: writing one from a manifest and an image (`pack`), and reading one back to
//! check or describe it (`validate`, `inspect`).
//!
//! Invariants: a package holds `cumulocity.json` then `image.tar` at its root; the image is
//! streamed (never held in memory) and checked in the same pass that compresses it; output
//! goes to a temporary file in the destination directory and is renamed into place only
//! when everything succeeded, so a failure never leaves a partial zip behind.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use manifests_schema::{Diagnostic, Manifest, Rejected, Validated};

use crate::deflate::{ParallelDeflater, StreamTotals};
use crate::docker_export::{self, DockerError};
use crate::entry_sink::{EntrySink, StoredSink, TeeReader, ZstdSink};
use crate::image_archive::{self, ImageError, ImageSummary};
use crate::zip_writer::{Method, ZipWriter};
use crate::{output_path, temp_cleanup};
use package_rules::{entry_names, zip_directory, zstd_entry};

pub use package_rules::{IMAGE_ENTRY, MANIFEST_ENTRY};
/// No real manifest comes close; larger files are a mistake (e.g. the image passed twice).
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
const OUTPUT_BUFFER: usize = 1 << 20;

/// Why an operation could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: invalid manifest: {}", first_error(diagnostics))]
    Manifest {
        origin: String,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("{origin}: {source}")]
    Image {
        origin: String,
        #[source]
        source: ImageError,
    },
    #[error("{}: {reason}", path.display())]
    Package { path: PathBuf, reason: String },
    #[error("{0}")]
    Docker(#[from] DockerError),
    #[error(
        "cannot choose an output name: the manifest has no `name` and the image has no tag; pass -o <file.zip>"
    )]
    NoOutputName,
    #[error("output {}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
}

impl PackageError {
    /// 1 when the input is invalid, 2 for IO, usage and environment problems.
    pub fn exit_code(&self) -> u8 {
        match self {
            PackageError::Manifest { .. }
            | PackageError::Image { .. }
            | PackageError::Package { .. } => 1,
            PackageError::Docker(error) if error.is_bad_input() => 1,
            PackageError::Io { .. }
            | PackageError::Docker(_)
            | PackageError::NoOutputName
            | PackageError::Output { .. } => 2,
        }
    }

    /// The manifest findings behind this error, if any.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PackageError::Manifest { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
}

fn first_error(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == manifests_schema::Severity::Error)
        .count();
    match diagnostics
        .iter()
        .find(|d| d.severity == manifests_schema::Severity::Error)
    {
        Some(first) if errors > 1 => format!("{first} (and {} more)", errors - 1),
        Some(first) => first.to_string(),
        None => "rejected".to_owned(),
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How `image.tar` is stored in the zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Store,
    /// Deflate level 1–9.
    Deflate(u32),
    /// Zstandard level 1–19 for image.tar (the manifest stays deflated, so anything reads it).
    Zstd(u32),
}

/// Where the image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A `docker save` tar on disk (Docker 25 and later save an OCI image layout with it).
    Archive(PathBuf),
    /// An image in the local Docker engine, exported on the fly.
    Docker(String),
}

#[derive(Debug, Clone)]
pub struct PackOptions {
    pub manifest: PathBuf,
    pub image: ImageSource,
    /// Default: `<name>-<version>.zip` in the current directory.
    pub output: Option<PathBuf>,
    pub compression: Compression,
    pub threads: usize,
    pub progress: bool,
    /// What the image may unpack to: the platform's `image_size_limit`.
    pub image_size_limit: u64,
}

/// A package written by [`pack`].
#[derive(Debug, Clone)]
pub struct Packed {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
    pub image: ImageSummary,
    pub image_entry: StreamTotals,
    pub zip_bytes: u64,
}

/// Validates the manifest and image and writes the package zip.
pub fn pack(options: &PackOptions) -> Result<Packed, PackageError> {
    if let Some(path) = &options.output {
        check_output(path, options)?;
    }
    let manifest_text = read_manifest_file(&options.manifest)?;
    let origin = options.manifest.display().to_string();
    let Validated { manifest, warnings } =
        manifests_schema::validate(&manifest_text).map_err(|Rejected { diagnostics }| {
            PackageError::Manifest {
                origin: origin.clone(),
                diagnostics,
            }
        })?;

    let (source, size_hint, image_origin): (Box<dyn Read>, Option<u64>, String) =
        match &options.image {
            ImageSource::Archive(path) => {
                let file = File::open(path).map_err(io_error(path))?;
                let size = file.metadata().map_err(io_error(path))?.len();
                (Box::new(file), Some(size), path.display().to_string())
            }
            ImageSource::Docker(reference) => (
                Box::new(docker_export::export_image(reference)?),
                None,
                format!("docker image {reference}"),
            ),
        };

    let directory = match &options.output {
        Some(path) => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        },
        None => PathBuf::from("."),
    };
    let (temporary, registered) = temp_cleanup::create(|| {
        tempfile::Builder::new()
            .prefix(".berth-pack-")
            .suffix(".zip.tmp")
            .tempfile_in(&directory)
    })
    .map_err(io_error(&directory))?;
    let temp_path = temporary.path().to_owned();

    let progress = progress_bar(options.progress, size_hint);
    let mut zip = ZipWriter::new(BufWriter::with_capacity(OUTPUT_BUFFER, temporary.as_file()));
    // Beside a zstd image the manifest is deflated at deflate's default level, so any zip
    // tool reads it.
    let (manifest_method, manifest_level, image_method) = match options.compression {
        Compression::Store => (Method::Stored, 0, Method::Stored),
        Compression::Deflate(level) => (Method::Deflated, level, Method::Deflated),
        Compression::Zstd(_) => (Method::Deflated, 6, Method::Zstd),
    };
    zip.add_entry(
        MANIFEST_ENTRY,
        manifest_method,
        manifest_level,
        manifest_text.as_bytes(),
    )
    .map_err(io_error(&temp_path))?;
    zip.start_entry(IMAGE_ENTRY, image_method, size_hint)
        .map_err(io_error(&temp_path))?;
    let mut sink = match options.compression {
        Compression::Store => EntrySink::Stored(StoredSink::new(zip.data())),
        Compression::Deflate(level) => {
            EntrySink::Deflated(ParallelDeflater::new(zip.data(), level, options.threads))
        }
        Compression::Zstd(level) => EntrySink::Zstd(
            ZstdSink::new(zip.data(), level as i32, options.threads)
                .map_err(io_error(&temp_path))?,
        ),
    };
    let mut tee = TeeReader {
        source,
        sink: &mut sink,
        sink_error: None,
        progress: &progress,
    };
    let scanned = image_archive::scan_within(&mut tee, options.image_size_limit);
    if let Some(source) = tee.sink_error.take() {
        return Err(PackageError::Io {
            path: temp_path,
            source,
        });
    }
    let image = scanned.map_err(|source| PackageError::Image {
        origin: image_origin,
        source,
    })?;
    let totals = sink.finish().map_err(io_error(&temp_path))?;
    zip.finish_entry(totals.crc32, totals.uncompressed)
        .map_err(io_error(&temp_path))?;
    let mut buffered = zip.finish().map_err(io_error(&temp_path))?;
    buffered.flush().map_err(io_error(&temp_path))?;
    drop(buffered);
    progress.finish_and_clear();

    let path = match &options.output {
        Some(path) => path.clone(),
        None => {
            let path = PathBuf::from(
                default_file_name(&manifest, &image).ok_or(PackageError::NoOutputName)?,
            );
            // Known only now; an input named like the package must not be replaced either.
            check_output(&path, options)?;
            path
        }
    };
    let zip_bytes = temporary
        .as_file()
        .metadata()
        .map_err(io_error(&temp_path))?
        .len();
    set_readable_permissions(temporary.as_file()).map_err(io_error(&temp_path))?;
    registered
        .finish(|| temporary.persist(&path))
        .map_err(|error| PackageError::Io {
            path: path.clone(),
            source: error.error,
        })?;
    Ok(Packed {
        path,
        manifest,
        warnings,
        image,
        image_entry: totals,
        zip_bytes,
    })
}

fn check_output(path: &Path, options: &PackOptions) -> Result<(), PackageError> {
    let mut inputs = vec![("--manifest", options.manifest.as_path())];
    if let ImageSource::Archive(image) = &options.image {
        inputs.push(("--image", image.as_path()));
    }
    match output_path::refusal(path, &inputs) {
        Some(reason) => Err(PackageError::Output {
            path: path.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(unix)]
fn set_readable_permissions(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Temporary files are created 0600; a package is an ordinary shareable file.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable_permissions(_file: &File) -> io::Result<()> {
    Ok(())
}

/// `<name>-<version>.zip`: name from the manifest, else the last path segment of the
/// image's first repository (`registry/team/app:1.0` gives `app`). The platform strips the
/// version suffix from the zip name when the manifest has no name, so this round-trips.
pub fn default_file_name(manifest: &Manifest, image: &ImageSummary) -> Option<String> {
    let name = match &manifest.name {
        Some(name) => name.clone(),
        None => repository_name(image.tags.first()?)?,
    };
    Some(format!("{name}-{}.zip", manifest.version))
}

fn repository_name(reference: &str) -> Option<String> {
    let without_digest = reference.split('@').next()?;
    let last_segment = without_digest.rsplit('/').next()?;
    let name = last_segment.split(':').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

fn progress_bar(enabled: bool, total: Option<u64>) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    match total {
        Some(total) => {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("packing");
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec}",
            ) {
                bar.set_style(style);
            }
            bar.set_message("exporting and packing");
            bar
        }
    }
}

/// Reads the manifest file as text, refusing oversized or non-UTF-8 files.
fn read_manifest_file(path: &Path) -> Result<String, PackageError> {
    let file = File::open(path).map_err(io_error(path))?;
    read_manifest(file, path)
}

fn read_manifest(reader: impl Read, path: &Path) -> Result<String, PackageError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(PackageError::Package {
            path: path.to_owned(),
            reason: format!(
                "the manifest is larger than {} KiB; is this really cumulocity.json?",
                MAX_MANIFEST_BYTES >> 10
            ),
        });
    }
    String::from_utf8(bytes).map_err(|_| PackageError::Package {
        path: path.to_owned(),
        reason: "the manifest is not UTF-8 text".to_owned(),
    })
}

/// What `validate`/`inspect` found in a file.
#[derive(Debug)]
pub struct Inspection {
    pub file: PathBuf,
    /// Where the manifest text came from, for diagnostics: the file, or `pkg.zip/cumulocity.json`.
    pub manifest_origin: String,
    pub manifest: Result<Validated, Rejected>,
    /// `None` when a bare manifest was checked.
    pub image: Option<Result<ImageSummary, ImageError>>,
    pub package: Option<PackageListing>,
}

impl Inspection {
    pub fn is_valid(&self) -> bool {
        self.manifest.is_ok() && !matches!(self.image, Some(Err(_)))
    }
}

/// The zip-level facts about a package.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackageListing {
    pub zip_bytes: u64,
    pub entries: Vec<ZipEntry>,
    /// Things that do not make the package invalid but look wrong (extra entries, order).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ZipEntry {
    pub name: String,
    /// `stored` or `deflated` (or the zip method name).
    pub method: String,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub crc32: String,
}

/// Checks a bare manifest or a package zip (recognised by its `PK` signature), its image
/// unpacking to at most `image_size_limit` bytes.
pub fn inspect(path: &Path, image_size_limit: u64) -> Result<Inspection, PackageError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut magic = [0u8; 262];
    let mut filled = 0;
    while filled < magic.len() {
        match file.read(&mut magic[filled..]).map_err(io_error(path))? {
            0 => break,
            n => filled += n,
        }
    }
    if filled >= 4 && (magic[..4] == *b"PK\x03\x04" || magic[..4] == *b"PK\x05\x06") {
        inspect_package(path, file, image_size_limit)
    } else if filled == magic.len() && magic[257..262] == *b"ustar" {
        Err(PackageError::Package {
            path: path.to_owned(),
            reason: "this is a tar archive, not a package zip or a cumulocity.json; build a package with `berth-pack pack`"
                .to_owned(),
        })
    } else {
        drop(file);
        let text = read_manifest_file(path)?;
        Ok(Inspection {
            file: path.to_owned(),
            manifest_origin: path.display().to_string(),
            manifest: manifests_schema::validate(&text),
            image: None,
            package: None,
        })
    }
}

fn inspect_package(
    path: &Path,
    file: File,
    image_size_limit: u64,
) -> Result<Inspection, PackageError> {
    let invalid = |reason: String| PackageError::Package {
        path: path.to_owned(),
        reason,
    };
    let zip_bytes = file.metadata().map_err(io_error(path))?.len();
    let mut file = file;
    // Bound the central directory before the zip crate loads it all into memory.
    zip_directory::check(&mut file)
        .map_err(io_error(path))?
        .map_err(|why| invalid(format!("refused: {why}")))?;
    let (file, budget) = zip_directory::Budget::new(file, zip_directory::OPEN_BUDGET);
    let opened = zip::ZipArchive::new(file);
    zip_directory::Budget::<()>::lift(&budget);
    let mut archive =
        opened.map_err(|error| invalid(format!("not a readable zip archive: {error}")))?;
    if archive.len() as u64 > zip_directory::MAX_ENTRIES {
        return Err(invalid(format!(
            "refused: the ZIP has more than the {} entries a package may have",
            zip_directory::MAX_ENTRIES
        )));
    }
    // The zip crate keeps only the last of equal names while `unzip` shows both, and streaming
    // extractors read local headers: all must name the same files, once each.
    archive.validate_header_consistency().map_err(|error| {
        invalid(format!(
            "the zip's headers disagree ({error}); re-create it with `berth-pack pack`"
        ))
    })?;
    let mut names = entry_names::Names::ignoring_case();
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|error| invalid(format!("unreadable zip entry: {error}")))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        if entry.enclosed_name().is_none()
            || entry_names::clean(&name, entry.is_dir()).is_none()
            || entry.name().ok().as_deref() != Some(name.as_str())
        {
            return Err(invalid(format!(
                "unsafe entry name {name:?}: names must be clean relative paths (no leading `/` or `./`, no `..`, `.` or `//`)"
            )));
        }
        let kind = if entry.is_dir() {
            entry_names::Kind::Directory
        } else {
            entry_names::Kind::Leaf
        };
        names.admit(&name, kind).map_err(|reason| {
            invalid(format!(
                "{reason} (names are compared ignoring case, as unzip on many systems does)"
            ))
        })?;
        entries.push(ZipEntry {
            name,
            method: method_name(entry.compression()),
            compressed_bytes: entry.compressed_size(),
            uncompressed_bytes: entry.size(),
            crc32: format!("{:08x}", entry.crc32()),
        });
    }
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    for required in [MANIFEST_ENTRY, IMAGE_ENTRY] {
        if !names.contains(&required) {
            return Err(invalid(format!(
                "the zip has no {required} at its root (found: {})",
                names.join(", ")
            )));
        }
    }
    let mut notes = Vec::new();
    if names.first() != Some(&MANIFEST_ENTRY) || names.get(1) != Some(&IMAGE_ENTRY) {
        notes.push(format!(
            "entries are not in the usual order [{MANIFEST_ENTRY}, {IMAGE_ENTRY}]"
        ));
    }
    for extra in names
        .iter()
        .filter(|name| ![MANIFEST_ENTRY, IMAGE_ENTRY].contains(name))
    {
        notes.push(format!(
            "unexpected entry {extra:?} (ignored by the platform)"
        ));
    }

    let manifest_origin = format!("{}/{MANIFEST_ENTRY}", path.display());
    let manifest_entry = archive
        .by_name(MANIFEST_ENTRY)
        .map_err(|error| invalid(format!("cannot read {MANIFEST_ENTRY}: {error}")))?;
    let text =
        read_manifest(manifest_entry, Path::new(&manifest_origin)).map_err(
            |error| match error {
                PackageError::Io { source, .. } => {
                    invalid(format!("cannot read {MANIFEST_ENTRY}: {source}"))
                }
                other => other,
            },
        )?;
    let manifest = manifests_schema::validate(&text);

    let cannot_read =
        |error: &dyn std::fmt::Display| invalid(format!("cannot read {IMAGE_ENTRY}: {error}"));
    let image_entry = archive.by_name(IMAGE_ENTRY).map_err(|e| cannot_read(&e))?;
    let image = if image_entry.compression() == zip::CompressionMethod::ZSTD {
        drop(image_entry);
        let raw = archive
            .by_name_raw(IMAGE_ENTRY.as_bytes())
            .map_err(|e| cannot_read(&e))?;
        let (size, crc32) = (raw.size(), raw.crc32());
        let unpacked = zstd_entry::open(raw, size, crc32).map_err(|e| cannot_read(&e))?;
        image_archive::scan_within(unpacked, image_size_limit)
    } else {
        image_archive::scan_within(image_entry, image_size_limit)
    };
    Ok(Inspection {
        file: path.to_owned(),
        manifest_origin,
        manifest,
        image: Some(image),
        package: Some(PackageListing {
            zip_bytes,
            entries,
            notes,
        }),
    })
}

fn method_name(method: zip::CompressionMethod) -> String {
    match method {
        zip::CompressionMethod::Stored => "stored".to_owned(),
        zip::CompressionMethod::Deflated => "deflated".to_owned(),
        zip::CompressionMethod::ZSTD => "zstd".to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_come_from_the_last_path_segment() {
        let cases = [
            ("hello:1.0", Some("hello")),
            ("registry.example.com:5000/team/app:2", Some("app")),
            ("app@sha256:abc", Some("app")),
            ("docker.io/library/busybox", Some("busybox")),
            (":1.0", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                repository_name(reference).as_deref(),
                expected,
                "{reference}"
            );
        }
    }
}
