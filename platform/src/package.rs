//! Microservice packages: a ZIP with `cumulocity.json` and `image.tar` (a `docker save`
//! archive) at its root. Checks the zip's headers and entry names, validates the manifest,
//! and checks the image archive ([`image_tar`]) within the image size limit while it streams the
//! re-written archive to Docker in chunks, in one pass. Blocking IO: call it from a blocking thread.

pub mod growing;
mod image_tar;
mod measure;
mod streaming;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use bytes::Bytes;
use manifests_schema::{Severity, Validated};
use package_rules::{entry_names, zip_directory, zstd_entry};

pub use measure::{Measured, measure};
pub use package_rules::{IMAGE_ENTRY, MANIFEST_ENTRY};
pub use streaming::NotStreamable;
/// Larger manifests are rejected (real ones are a few KiB).
const MANIFEST_LIMIT: u64 = 1 << 20;
/// Size of the chunks `image.tar` is streamed in.
pub const CHUNK_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("the upload is not a ZIP archive: {0}")]
    NotZip(String),
    #[error(
        "the package's zip headers disagree ({0}): the central directory and the entries must name the same files once each; re-create the zip (e.g. with `berth-pack pack`)"
    )]
    Inconsistent(String),
    #[error("the package is refused: {0}; entries must be plain relative names, each once")]
    BadEntry(String),
    #[error("the package has no {0} at its root")]
    Missing(&'static str),
    #[error(
        "{entry} cannot be read: {reason}; entries must be stored or deflated (image.tar may also be zstd, as `berth-pack pack --zstd` writes it), with true sizes and CRC-32, unencrypted; re-create the zip (e.g. with `berth-pack pack`)"
    )]
    Unreadable { entry: &'static str, reason: String },
    #[error("cumulocity.json is larger than 1 MiB")]
    ManifestTooLarge,
    #[error("cumulocity.json is not UTF-8 text")]
    ManifestNotText,
    #[error("cumulocity.json is invalid: {0}")]
    ManifestInvalid(String),
    #[error("image.tar is not an acceptable `docker save` archive: {0}")]
    BadImage(String),
    #[error(
        "image.tar unpacks to more than {limit} bytes, the image size limit of this platform; make the image smaller, or ask the operator to raise image_size_limit (--image-size-limit, BERTH_IMAGE_SIZE_LIMIT)"
    )]
    ImageTooLarge { limit: u64 },
    #[error("the package is refused: {0}")]
    TooManyEntries(String),
    #[error("cannot read the package: {0}")]
    Io(#[from] io::Error),
    /// The image archive passed its checks but its load was not agreed to (see
    /// [`Opened::stream_image`]).
    #[error("the image load was stopped")]
    Stopped,
}

/// What an accepted package contains.
#[derive(Debug, Clone)]
pub struct Package {
    pub manifest: Validated,
    pub image: ImageInfo,
    /// Bytes `image.tar` unpacks to (counted, not taken from the zip header).
    pub image_bytes: u64,
}

/// The image inside `image.tar`, as named by its checked `manifest.json`, and what it unpacks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:<hex>`, the id Docker gives the image after loading.
    pub id: String,
    /// Tags recorded by `docker save` (`name:tag`), possibly none; never given to Docker.
    pub repo_tags: Vec<String>,
    /// The config and layer entries, as `manifest.json` names them.
    pub config: String,
    pub layers: Vec<String>,
    /// What the archive's files unpack to in Docker (gzip layers decompressed), counted while
    /// it was checked: what the image costs the tenant's storage quota when more than the
    /// archive itself ([`crate::storage`]).
    pub unpacked_bytes: u64,
}

/// The package's zip, read through the budget that bounded opening it.
type Archive = zip::ZipArchive<zip_directory::Budget<File>>;

fn zip_error(e: zip::result::ZipError) -> PackageError {
    PackageError::NotZip(e.to_string())
}

/// What reading `entry`'s data could not get past: damaged data (CRC, deflate stream, sizes), a
/// compression method or encryption the reader lacks. The upload is already on local disk, so
/// this is the package's fault, not the server's.
fn unreadable(entry: &'static str, reason: impl std::fmt::Display) -> PackageError {
    PackageError::Unreadable {
        entry,
        reason: reason.to_string(),
    }
}

/// Most bytes one byte of a deflate stream can inflate to (a 258-byte match in two bits).
const DEFLATE_MAX_RATIO: u64 = 1032;

/// Whether an entry's uncompressed size can come from its compressed size: a stored entry's
/// two sizes are equal, a deflated one inflates at most [`DEFLATE_MAX_RATIO`] times. Anything
/// else is a header claiming what the data cannot hold (e.g. a zip64 field saying 2^60 bytes).
fn sizes_agree(method: zip::CompressionMethod, compressed: u64, size: u64) -> bool {
    match method {
        zip::CompressionMethod::Stored => compressed == size,
        zip::CompressionMethod::Deflated => {
            size <= compressed
                .saturating_mul(DEFLATE_MAX_RATIO)
                .saturating_add(1024)
        }
        // Refused as unreadable when read.
        _ => true,
    }
}

/// The zip crate keeps one entry per name, so it cannot say which name repeats: the local
/// headers, read in order, show every entry. Only on this error path is the package read twice.
fn duplicate_entry(path: &Path) -> PackageError {
    let fallback =
        || PackageError::Inconsistent("two entries of the central directory have one name".into());
    let Ok(file) = File::open(path) else {
        return fallback();
    };
    let mut reader = io::BufReader::new(file);
    let mut names = entry_names::Names::ignoring_case();
    while let Ok(Some(entry)) = zip::read::read_zipfile_from_stream(&mut reader) {
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let kind = if entry.is_dir() {
            entry_names::Kind::Directory
        } else {
            entry_names::Kind::Leaf
        };
        if let Err(why) = names.admit(&name, kind) {
            return PackageError::BadEntry(why);
        }
        // Dropping the entry skips its stored bytes without inflating them: read, a deflate
        // bomb ahead of the repeated name inflated in full (hundreds of GiB from one upload).
        drop(entry);
    }
    fallback()
}

/// The zip crate's consistency error names no entry: find the entry whose own check fails the
/// same way, so the message says which one to fix.
fn header_disagreement(zip: &mut Archive, e: zip::result::ZipError) -> PackageError {
    let message = e.to_string();
    if !zip.has_duplicate_names() {
        for i in 0..zip.len() {
            let options = zip::ZipReadOptions::new().enforce_header_consistency(true);
            let probe = zip.by_index_with_options(i, options).err();
            if probe.is_some_and(|p| p.to_string() == message)
                && let Ok(entry) = zip.by_index_raw(i)
            {
                let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
                return PackageError::Inconsistent(format!("entry {name:?}: {message}"));
            }
        }
    }
    PackageError::Inconsistent(message)
}

/// Opens the package and checks it at the zip level: local headers agree with the central
/// directory (one entry per name, nothing hidden between entries), every name is clean and no
/// two meet after cleaning or case folding. Returns the archive and the index of each root entry.
fn open(path: &Path) -> Result<(Archive, usize, usize), PackageError> {
    let mut file = File::open(path)?;
    // Bound the central directory before the zip crate loads it all into memory.
    zip_directory::check(&mut file)?.map_err(PackageError::TooManyEntries)?;
    let (file, budget) = zip_directory::Budget::new(file, zip_directory::OPEN_BUDGET);
    let opened = zip::ZipArchive::new(file);
    zip_directory::Budget::<()>::lift(&budget);
    let mut zip = opened.map_err(zip_error)?;
    if zip.len() as u64 > zip_directory::MAX_ENTRIES {
        return Err(PackageError::TooManyEntries(format!(
            "the ZIP has more than the {} entries a package may have",
            zip_directory::MAX_ENTRIES
        )));
    }
    // The zip crate keeps only the last of equal names; `unzip` shows both.
    if zip.has_duplicate_names() {
        return Err(duplicate_entry(path));
    }
    if let Err(e) = zip.validate_header_consistency() {
        return Err(header_disagreement(&mut zip, e));
    }
    let mut names = entry_names::Names::ignoring_case();
    let (mut manifest, mut image) = (None, None);
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(zip_error)?;
        let raw = entry.name().map_err(zip_error)?;
        let kind = if entry.is_dir() {
            entry_names::Kind::Directory
        } else {
            entry_names::Kind::Leaf
        };
        let name = names
            .admit(&raw, kind)
            .map_err(PackageError::BadEntry)?
            .to_owned();
        // A name stored differently from how it decodes (a Unicode path field) is refused:
        // extractors disagree on which one they use.
        if entry.name_raw() != raw.as_bytes() {
            return Err(PackageError::BadEntry(format!(
                "entry {raw:?} has two different names in its header"
            )));
        }
        if kind == entry_names::Kind::Leaf
            && !sizes_agree(entry.compression(), entry.compressed_size(), entry.size())
        {
            return Err(PackageError::Inconsistent(format!(
                "entry {raw:?} says it holds {} bytes in {} {:?} bytes",
                entry.size(),
                entry.compressed_size(),
                entry.compression()
            )));
        }
        if name.eq_ignore_ascii_case(MANIFEST_ENTRY) {
            manifest = Some(i);
        } else if name.eq_ignore_ascii_case(IMAGE_ENTRY) {
            image = Some(i);
        }
    }
    let manifest = manifest.ok_or(PackageError::Missing(MANIFEST_ENTRY))?;
    let image = image.ok_or(PackageError::Missing(IMAGE_ENTRY))?;
    Ok((zip, manifest, image))
}

/// A package checked up to its image: zip headers and entry names, and the manifest. Its image
/// is checked while it streams to the engine ([`Opened::stream_image`]), in one pass.
pub struct Opened {
    pub manifest: Validated,
    /// What `image.tar`'s header says it unpacks to: within the image size limit, and checked
    /// against the bytes counted while it streams.
    pub declared_image_bytes: u64,
    /// The package's size, or while it arrives what it holds at least.
    pub package_bytes: u64,
    /// What `cumulocity.json` unpacks to (the database keeps it as text).
    pub manifest_bytes: u64,
    source: Source,
    image_limit: u64,
}

/// Where the image archive is read from.
enum Source {
    /// The received package, opened by its central directory.
    Whole { zip: Archive, image_index: usize },
    /// The package while it arrives, by its local headers (see [`streaming`]).
    Arriving(Box<streaming::Stream>),
}

/// Opens a package that is still arriving at `path` ([`growing`]), reading its manifest and its
/// image's header as they come, waiting for its bytes no longer than `pace` allows. The image
/// archive then streams as it arrives; the archive's end waits for the complete package's
/// checks. [`NotStreamable`] when its shape does not allow that: read it whole once received.
pub fn open_arriving(
    path: &Path,
    arrival: std::sync::Arc<growing::Arrival>,
    image_limit: u64,
    pace: growing::Pace,
) -> Result<Opened, NotStreamable> {
    let (manifest, declared, stream) = streaming::open(path, arrival, image_limit, pace)?;
    Ok(Opened {
        manifest,
        declared_image_bytes: declared,
        package_bytes: stream.package_bytes_at_least(),
        manifest_bytes: stream.manifest_bytes(),
        source: Source::Arriving(Box::new(stream)),
        image_limit,
    })
}

/// `cumulocity.json`'s bytes, at most [`MANIFEST_LIMIT`].
fn read_manifest(zip: &mut Archive, index: usize) -> Result<Vec<u8>, PackageError> {
    let mut text = Vec::new();
    let entry = zip
        .by_index(index)
        .map_err(|e| unreadable(MANIFEST_ENTRY, e))?;
    entry
        .take(MANIFEST_LIMIT + 1)
        .read_to_end(&mut text)
        .map_err(|e| unreadable(MANIFEST_ENTRY, e))?;
    if text.len() as u64 > MANIFEST_LIMIT {
        return Err(PackageError::ManifestTooLarge);
    }
    Ok(text)
}

/// `image.tar`'s data, unpacked and CRC-checked: the zip crate's reader, or for a zstd entry
/// (the zip crate is built without zstd) [`zstd_entry`]'s, which bounds the window.
fn image_data(zip: &mut Archive, index: usize) -> Result<Box<dyn Read + '_>, PackageError> {
    let method = (zip.by_index_raw(index))
        .map_err(|e| unreadable(IMAGE_ENTRY, e))?
        .compression();
    if method != zip::CompressionMethod::ZSTD {
        let entry = zip
            .by_index(index)
            .map_err(|e| unreadable(IMAGE_ENTRY, e))?;
        return Ok(Box::new(entry));
    }
    let entry = (zip.by_index_raw(index)).map_err(|e| unreadable(IMAGE_ENTRY, e))?;
    let (size, crc32) = (entry.size(), entry.crc32());
    let unpacked = zstd_entry::open(entry, size, crc32).map_err(|e| unreadable(IMAGE_ENTRY, e))?;
    Ok(Box::new(unpacked))
}

/// What `image.tar`'s header says it unpacks to.
fn declared_image_bytes(zip: &mut Archive, index: usize) -> Result<u64, PackageError> {
    Ok(zip
        .by_index_raw(index)
        .map_err(|e| unreadable(IMAGE_ENTRY, e))?
        .size())
}

/// Opens a package and checks everything but the image archive's content: zip headers and
/// entry names, the manifest, and the image's declared size against `image_limit`.
pub fn open_package(path: &Path, image_limit: u64) -> Result<Opened, PackageError> {
    let (mut zip, manifest_index, image_index) = open(path)?;
    let text = read_manifest(&mut zip, manifest_index)?;
    let text = String::from_utf8(text).map_err(|_| PackageError::ManifestNotText)?;
    let manifest_bytes = text.len() as u64;
    let manifest = manifests_schema::validate(&text).map_err(|rejected| {
        let errors: Vec<String> = rejected
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        PackageError::ManifestInvalid(errors.join("; "))
    })?;

    // The declared size refuses an honest large image at once; the count while streaming is
    // what holds.
    let declared = declared_image_bytes(&mut zip, image_index)?;
    if declared > image_limit {
        return Err(PackageError::ImageTooLarge { limit: image_limit });
    }
    let package_bytes = std::fs::metadata(path)?.len();
    Ok(Opened {
        manifest,
        declared_image_bytes: declared,
        package_bytes,
        manifest_bytes,
        source: Source::Whole { zip, image_index },
        image_limit,
    })
}

impl Opened {
    /// Checks `image.tar` while writing the archive Docker gets ([`image_tar::check_and_rewrite`])
    /// to `out`, in one pass. Once the whole archive passed, `approve` sees the image: unless it
    /// agrees, the archive's end is never written, so Docker loads nothing
    /// ([`PackageError::Stopped`]).
    fn check_image(
        &mut self,
        out: impl Write,
        approve: impl FnOnce(&ImageInfo) -> bool,
    ) -> Result<ImageInfo, PackageError> {
        let (limit, declared) = (self.image_limit, self.declared_image_bytes);
        let rewritten = match &mut self.source {
            Source::Whole { zip, image_index } => {
                check_entry(image_data(zip, *image_index)?, limit, declared, out)?
            }
            Source::Arriving(stream) => {
                stream.check_image(|entry| check_entry(entry, limit, declared, out))?
            }
        };
        if !approve(&rewritten.image) {
            return Err(PackageError::Stopped);
        }
        let image = rewritten.image.clone();
        rewritten.finish()?;
        Ok(image)
    }

    /// Streams the archive Docker gets in chunks through `send` (false: the receiver is gone),
    /// checking it on the way ([`Opened::check_image`]). Any failure is sent as the last item,
    /// so the load fails rather than ends early, and returned.
    pub fn stream_image(
        mut self,
        send: impl FnMut(io::Result<Bytes>) -> bool,
        approve: impl FnOnce(&ImageInfo) -> bool,
    ) -> Result<ImageInfo, PackageError> {
        let mut writer = ChunkWriter {
            buffer: Vec::with_capacity(CHUNK_SIZE),
            send,
        };
        let result = self.check_image(&mut writer, approve);
        if let Err(e) = &result {
            (writer.send)(Err(io::Error::other(e.to_string())));
        }
        result
    }
}

/// Checks the image archive read from `entry` (at most `limit` bytes, exactly `declared`) while
/// re-writing it into `out` for Docker, all but its end.
fn check_entry<W: Write>(
    entry: impl Read,
    limit: u64,
    declared: u64,
    out: W,
) -> Result<image_tar::Rewritten<W>, PackageError> {
    let mut counted = Limited::new(entry, limit);
    let rewritten = image_tar::check_and_rewrite(&mut counted, limit, out);
    // The tar reader stops at the end marker: drain the rest so the count covers every
    // byte (and the zip reader checks the CRC).
    let drained = rewritten.and_then(|rewritten| {
        io::copy(&mut counted, &mut io::sink())?;
        Ok(rewritten)
    });
    let rewritten = counted.result(drained)?;
    // Storage accounting reads the header: it must be true.
    if counted.count != declared {
        return Err(PackageError::Inconsistent(format!(
            "{IMAGE_ENTRY} unpacks to {} bytes, its header says {declared}",
            counted.count
        )));
    }
    Ok(rewritten)
}

/// Opens and checks a package: zip headers and entry names, the manifest, and the image
/// archive, which must unpack to at most `image_limit` bytes.
pub fn inspect(path: &Path, image_limit: u64) -> Result<Package, PackageError> {
    let mut opened = open_package(path, image_limit)?;
    let image = opened.check_image(io::sink(), |_| true)?;
    Ok(Package {
        image_bytes: opened.declared_image_bytes,
        manifest: opened.manifest,
        image,
    })
}

/// A reader of `image.tar` that fails once more than `limit` bytes came through, so a zip bomb
/// is refused while it inflates, whatever its headers claim; it also keeps the zip reader's own
/// error, which the tar reader would otherwise pass off as a bad archive or an IO failure.
struct Limited<R> {
    inner: R,
    limit: u64,
    count: u64,
    exceeded: bool,
    unreadable: Option<String>,
}

impl<R> Limited<R> {
    fn new(inner: R, limit: u64) -> Limited<R> {
        Limited {
            inner,
            limit,
            count: 0,
            exceeded: false,
            unreadable: None,
        }
    }

    /// The limit error takes precedence over whatever the reader's consumer made of it.
    fn result<T>(&self, outcome: Result<T, PackageError>) -> Result<T, PackageError> {
        if self.exceeded {
            return Err(PackageError::ImageTooLarge { limit: self.limit });
        }
        if let Some(reason) = &self.unreadable {
            return Err(unreadable(IMAGE_ENTRY, reason));
        }
        outcome
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            self.unreadable.get_or_insert_with(|| e.to_string());
        })?;
        self.count += n as u64;
        if self.count > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("image size limit exceeded"));
        }
        Ok(n)
    }
}

/// Collects written bytes into chunks for `send`; fails once the receiver is gone.
struct ChunkWriter<F: FnMut(io::Result<Bytes>) -> bool> {
    buffer: Vec<u8>,
    send: F,
}

impl<F: FnMut(io::Result<Bytes>) -> bool> ChunkWriter<F> {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK_SIZE),
        ));
        if (self.send)(Ok(chunk)) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the image load stopped",
            ))
        }
    }
}

impl<F: FnMut(io::Result<Bytes>) -> bool> Write for ChunkWriter<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_SIZE - self.buffer.len());
        self.buffer.extend_from_slice(&data[..n]);
        if self.buffer.len() == CHUNK_SIZE {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::CompressionMethod::{self, Deflated, Stored};

    #[test]
    fn sizes_agree_only_when_the_data_can_hold_the_size() {
        let cases = [
            (Stored, 10, 10, true),
            (Stored, 10, 11, false),
            (Stored, 10, 1 << 60, false),
            (Deflated, 2, 0, true),
            (Deflated, 1000, 1000 * DEFLATE_MAX_RATIO, true),
            (Deflated, 1000, 2000 * DEFLATE_MAX_RATIO, false),
            (Deflated, 100, 1 << 60, false),
            (Deflated, u64::MAX, u64::MAX, true),
            (CompressionMethod::BZIP2, 1, 1 << 40, true),
        ];
        for (method, compressed, size, agree) in cases {
            assert_eq!(
                sizes_agree(method, compressed, size),
                agree,
                "{method:?} {compressed} → {size}"
            );
        }
    }

    /// Patches every local and central header of the entry named `from`: its name to `to` (same
    /// length) and, when `deflate`, its method to deflate (the stored bytes left as they are).
    fn patch(zip: &mut [u8], from: &str, to: &str, deflate: bool) {
        for (signature, method_at, name_at) in [(b"PK\x03\x04", 8, 30), (b"PK\x01\x02", 10, 46)] {
            let mut at = 0;
            while let Some(found) = zip[at..].windows(4).position(|w| w == signature) {
                let header = at + found;
                let name = header + name_at;
                if zip.get(name..name + from.len()) == Some(from.as_bytes()) {
                    zip[name..name + to.len()].copy_from_slice(to.as_bytes());
                    if deflate {
                        zip[header + method_at] = 8;
                    }
                }
                at = header + 4;
            }
        }
    }

    /// Finding which name repeats must not inflate the entries before it: a deflate bomb there
    /// once cost hundreds of GiB of inflating per upload. An entry that cannot inflate at all
    /// shows whether it was read.
    #[test]
    fn a_repeated_name_is_found_without_inflating_the_entries_before_it() {
        let mut bytes = Vec::new();
        {
            let mut zip = zip::ZipWriter::new(io::Cursor::new(&mut bytes));
            let stored = zip::write::SimpleFileOptions::default().compression_method(Stored);
            for (name, data) in [
                ("cumulocity.json", &b"{}"[..]),
                // 0xff starts a deflate block of the reserved type: inflating it fails.
                ("imagX.tar", &[0xff; 64][..]),
                ("image.tar", &b"tar"[..]),
            ] {
                zip.start_file(name, stored).unwrap();
                io::Write::write_all(&mut zip, data).unwrap();
            }
            zip.finish().unwrap();
        }
        patch(&mut bytes, "imagX.tar", "image.tar", true);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        match open(file.path()) {
            Err(PackageError::BadEntry(why)) => {
                assert!(
                    why.contains("\"image.tar\" appears more than once"),
                    "{why}"
                )
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
