//! Opening a package while it still arrives, so its image can stream into the engine before the
//! upload ends. A zip's local headers come first and its central directory last, and the two
//! can disagree (the classic way to show one program other files than another): what is read
//! here from the local headers counts only once the complete package passed the same checks as
//! a received one ([`super::open`]) and its central directory names the very entries that were
//! read, at the same offsets, with the same sizes, method and CRC. Until then the image
//! archive's end is held back ([`super::Opened::stream_image`]), so the engine loads nothing.
//!
//! Only the common shape streams: `cumulocity.json` first, then `image.tar`, both with their
//! sizes in the local header (no data descriptor; zip64 fields are read), as `berth-pack`, `zip` and
//! Python's `zipfile` write them. Anything else is [`NotStreamable`], and the package is read
//! whole once received, which also gives the verdict on a package that fails here.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use manifests_schema::Validated;
use package_rules::zstd_entry;
use zip::CompressionMethod;

use super::growing::{Arrival, GrowingReader, Pace};
use super::{IMAGE_ENTRY, MANIFEST_ENTRY, MANIFEST_LIMIT, PackageError, sizes_agree, unreadable};

/// Why a package is not read while it arrives (it is read whole instead).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotStreamable(String);

fn not_streamable(why: impl std::fmt::Display) -> NotStreamable {
    NotStreamable(why.to_string())
}

/// An entry as its local header described it, to be found again in the central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    name: Vec<u8>,
    header_start: u64,
    method: CompressionMethod,
    crc32: u32,
    compressed: u64,
    size: u64,
}

impl Seen {
    /// What the zip reader says of `entry`, found at `header_start`.
    fn of<R: Read>(entry: &zip::read::ZipFile<'_, R>, header_start: u64) -> Seen {
        Seen {
            name: entry.name_raw().to_vec(),
            header_start,
            method: entry.compression(),
            crc32: entry.crc32(),
            compressed: entry.compressed_size(),
            size: entry.size(),
        }
    }
}

/// The arriving package, read up to the image entry's data.
pub(super) struct Stream {
    reader: GrowingReader,
    path: PathBuf,
    manifest: Seen,
    image: Seen,
    /// Where the image entry's data starts.
    image_data: u64,
    /// The manifest's text as read (its declared size may be 0 with a data descriptor).
    manifest_bytes: u64,
}

/// A local file header's fixed part: signature to extra field length.
const LOCAL_HEADER: usize = 30;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
/// General purpose flags: encrypted, and sizes in a data descriptor after the data.
const ENCRYPTED: u16 = 1;
const DATA_DESCRIPTOR: u16 = 1 << 3;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the local header at `start` without consuming it (the zip reader reads it again, and
/// must find the same); returns it and where its data starts.
fn peek_header(
    reader: &mut GrowingReader,
    file: &File,
    start: u64,
) -> Result<(Seen, u64), NotStreamable> {
    let mut fixed = [0u8; LOCAL_HEADER];
    reader
        .wait_for(start + LOCAL_HEADER as u64)
        .map_err(not_streamable)?;
    file.read_exact_at(&mut fixed, start)
        .map_err(not_streamable)?;
    if u32_at(&fixed, 0) != LOCAL_SIGNATURE {
        return Err(not_streamable("no local header after cumulocity.json"));
    }
    let flags = u16_at(&fixed, 6);
    if flags & (ENCRYPTED | DATA_DESCRIPTOR) != 0 {
        return Err(not_streamable(
            "image.tar is encrypted or its sizes follow its data",
        ));
    }
    let (compressed, size) = (u32_at(&fixed, 18), u32_at(&fixed, 22));
    let method = match u16_at(&fixed, 8) {
        0 => CompressionMethod::Stored,
        8 => CompressionMethod::Deflated,
        zstd_entry::METHOD => CompressionMethod::ZSTD,
        _ => {
            return Err(not_streamable(
                "image.tar is neither stored, deflated nor zstd",
            ));
        }
    };
    let name_length = u16_at(&fixed, 26) as usize;
    let data_start = start + (LOCAL_HEADER + name_length + u16_at(&fixed, 28) as usize) as u64;
    let mut name = vec![0u8; name_length];
    reader
        .wait_for(start + (LOCAL_HEADER + name_length) as u64)
        .map_err(not_streamable)?;
    file.read_exact_at(&mut name, start + LOCAL_HEADER as u64)
        .map_err(not_streamable)?;
    let (mut compressed, mut size) = (u64::from(compressed), u64::from(size));
    let all_ones = u64::from(u32::MAX);
    if compressed == all_ones || size == all_ones {
        let extra_start = start + (LOCAL_HEADER + name_length) as u64;
        let mut extra = vec![0u8; u16_at(&fixed, 28) as usize];
        reader
            .wait_for(extra_start + extra.len() as u64)
            .map_err(not_streamable)?;
        file.read_exact_at(&mut extra, extra_start)
            .map_err(not_streamable)?;
        (size, compressed) = zip64_sizes(&extra, size, compressed)
            .ok_or_else(|| not_streamable("image.tar's zip64 sizes are missing"))?;
    }
    let seen = Seen {
        name,
        header_start: start,
        method,
        crc32: u32_at(&fixed, 14),
        compressed,
        size,
    };
    Ok((seen, data_start))
}

/// The sizes a local header's zip64 extra field (id 1) gives: each of the 32-bit sizes that is
/// all ones is there as 64 bits, uncompressed first.
fn zip64_sizes(extra: &[u8], size: u64, compressed: u64) -> Option<(u64, u64)> {
    const ZIP64: u16 = 1;
    let mut rest = extra;
    while rest.len() >= 4 {
        let (id, length) = (u16_at(rest, 0), u16_at(rest, 2) as usize);
        let data = rest.get(4..4 + length)?;
        if id == ZIP64 {
            let mut values = data
                .chunks_exact(8)
                .map(|v| u64::from_le_bytes(v.try_into().unwrap_or_default()));
            let all_ones = u64::from(u32::MAX);
            let size = if size == all_ones {
                values.next()?
            } else {
                size
            };
            let compressed = if compressed == all_ones {
                values.next()?
            } else {
                compressed
            };
            return Some((size, compressed));
        }
        rest = &rest[4 + length..];
    }
    None
}

/// Reads `cumulocity.json` and the header of `image.tar` from the arriving package at `path`,
/// waiting for its bytes within `pace`. Returns the validated manifest, the image's declared
/// size and the stream, positioned at the image entry.
pub(super) fn open(
    path: &Path,
    arrival: Arc<Arrival>,
    image_limit: u64,
    pace: Pace,
) -> Result<(Validated, u64, Stream), NotStreamable> {
    let mut reader = GrowingReader::open(path, arrival, pace).map_err(not_streamable)?;
    let peeker = File::open(path).map_err(not_streamable)?;
    let (manifest, text) = {
        let entry = zip::read::read_zipfile_from_stream(&mut reader)
            .map_err(not_streamable)?
            .ok_or_else(|| not_streamable("the zip is empty"))?;
        if !entry
            .name_raw()
            .eq_ignore_ascii_case(MANIFEST_ENTRY.as_bytes())
        {
            return Err(not_streamable("cumulocity.json is not the first entry"));
        }
        let seen = Seen::of(&entry, 0);
        let mut text = Vec::new();
        entry
            .take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut text)
            .map_err(not_streamable)?;
        (seen, text)
    };
    if text.len() as u64 > MANIFEST_LIMIT {
        return Err(not_streamable("cumulocity.json is too large"));
    }
    let text = String::from_utf8(text).map_err(not_streamable)?;
    let validated = manifests_schema::validate(&text)
        .map_err(|_| not_streamable("cumulocity.json is not valid"))?;
    let image_start = reader.position();
    let (image, image_data) = peek_header(&mut reader, &peeker, image_start)?;
    if !image.name.eq_ignore_ascii_case(IMAGE_ENTRY.as_bytes()) {
        return Err(not_streamable("image.tar is not the second entry"));
    }
    if !sizes_agree(image.method, image.compressed, image.size) || image.size > image_limit {
        return Err(not_streamable("image.tar's declared sizes are refused"));
    }
    let declared = image.size;
    let stream = Stream {
        reader,
        path: path.to_owned(),
        manifest,
        image,
        image_data,
        manifest_bytes: text.len() as u64,
    };
    Ok((validated, declared, stream))
}

impl Stream {
    pub(super) fn manifest_bytes(&self) -> u64 {
        self.manifest_bytes
    }

    /// Bytes the package holds at least: everything up to the image entry's data end.
    pub(super) fn package_bytes_at_least(&self) -> u64 {
        self.image.header_start
            + (LOCAL_HEADER + self.image.name.len()) as u64
            + self.image.compressed
    }

    /// Hands `image.tar`'s data, inflated and CRC-checked, to `check`; then waits for the
    /// complete package and verifies that its central directory describes what was read.
    pub(super) fn check_image<T>(
        &mut self,
        check: impl FnOnce(&mut dyn Read) -> Result<T, PackageError>,
    ) -> Result<T, PackageError> {
        let checked = if self.image.method == CompressionMethod::ZSTD {
            // The zip crate is built without zstd: the entry's data is read raw, past the
            // header `peek_header` read (the header is then checked against the central
            // directory as for the others).
            let header = self.image_data.saturating_sub(self.reader.position());
            io::copy(&mut (&mut self.reader).take(header), &mut io::sink())
                .map_err(|e| unreadable(IMAGE_ENTRY, e))?;
            let raw = (&mut self.reader).take(self.image.compressed);
            let mut entry = zstd_entry::open(raw, self.image.size, self.image.crc32)
                .map_err(|e| unreadable(IMAGE_ENTRY, e))?;
            check(&mut entry)?
        } else {
            let mut entry = zip::read::read_zipfile_from_stream(&mut self.reader)
                .map_err(|e| unreadable(IMAGE_ENTRY, e))?
                .ok_or(PackageError::Missing(IMAGE_ENTRY))?;
            let read = Seen::of(&entry, self.image.header_start);
            if read != self.image || entry.encrypted() {
                return Err(PackageError::Inconsistent(
                    "image.tar's local header changed while it was read".into(),
                ));
            }
            check(&mut entry)?
        };
        self.verify()?;
        Ok(checked)
    }

    /// The complete package passes the checks of a received one, and its central directory
    /// names the entries that were read, where and as they were read.
    fn verify(&mut self) -> Result<(), PackageError> {
        self.reader.wait_complete()?;
        let (mut zip, manifest_index, image_index) = super::open(&self.path)?;
        for (index, seen) in [(manifest_index, &self.manifest), (image_index, &self.image)] {
            let entry = zip.by_index_raw(index).map_err(super::zip_error)?;
            let listed = Seen::of(&entry, entry.header_start());
            if listed != *seen {
                return Err(PackageError::Inconsistent(format!(
                    "the central directory describes {:?} other than its local header",
                    String::from_utf8_lossy(&seen.name)
                )));
            }
        }
        self.reader.arrival().mark_verified();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use package_rules::test_support::{ZstdImage, archive, config_name, file, zstd_package};
    use zip::write::SimpleFileOptions;

    use super::super::growing::Arriving;
    use super::super::growing::tests::pace;
    use super::super::{Opened, inspect, open_arriving};
    use super::*;

    /// A minimal docker-save archive: a config and a manifest.json without layers.
    fn image_archive() -> Vec<u8> {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let name = config_name(config);
        let manifest = format!(r#"[{{"Config":"{name}","RepoTags":null,"Layers":[]}}]"#);
        archive(&[file(&name, config), file("manifest.json", manifest)])
    }

    const MANIFEST: &str = r#"{"apiVersion":"1","name":"hello","version":"1.0.0","provider":{"name":"t"},"isolation":"MULTI_TENANT"}"#;

    fn zip_of(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
        zip_with(entries, method, false)
    }

    fn zip_with(entries: &[(&str, &[u8])], method: CompressionMethod, zip64: bool) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            let options = SimpleFileOptions::default()
                .compression_method(method)
                .large_file(zip64);
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn package(method: CompressionMethod) -> Vec<u8> {
        package_with(method, false)
    }

    fn package_with(method: CompressionMethod, zip64: bool) -> Vec<u8> {
        let image = image_archive();
        zip_with(
            &[(MANIFEST_ENTRY, MANIFEST.as_bytes()), (IMAGE_ENTRY, &image)],
            method,
            zip64,
        )
    }

    /// Writes `bytes` into a file as an upload would, `chunk` bytes at a time; with `cut`, the
    /// upload breaks off after that many bytes.
    fn arrive(
        bytes: Vec<u8>,
        chunk: usize,
        cut: Option<usize>,
    ) -> (tempfile::NamedTempFile, Arc<Arrival>, JoinHandle<()>) {
        let temp = tempfile::NamedTempFile::new().unwrap();
        let mut file = temp.reopen().unwrap();
        let (arriving, arrival) = Arriving::new();
        let writer = std::thread::spawn(move || {
            let end = cut.unwrap_or(bytes.len());
            let mut written = 0;
            for piece in bytes[..end].chunks(chunk) {
                file.write_all(piece).unwrap();
                written += piece.len();
                arriving.advance(written as u64);
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a test thread, not a runtime worker"
                )]
                std::thread::sleep(Duration::from_millis(1));
            }
            if cut.is_none() {
                arriving.complete();
            }
        });
        (temp, arrival, writer)
    }

    /// Opens the arriving package and streams its image; says whether the archive's end was
    /// agreed to (asked only once everything was checked).
    fn stream(opened: Opened) -> (Result<String, PackageError>, bool) {
        let mut asked = false;
        let result = opened.stream_image(
            |_| true,
            |_| {
                asked = true;
                true
            },
        );
        (result.map(|image| image.id), asked)
    }

    #[test]
    fn a_package_streams_as_it_arrives_and_agrees_with_its_whole_reading() {
        let zstd = zstd_package(MANIFEST.as_bytes(), &ZstdImage::of(&image_archive(), 21));
        let cases = [
            (
                "stored",
                package_with(CompressionMethod::Stored, false),
                false,
            ),
            (
                "deflated",
                package_with(CompressionMethod::Deflated, false),
                false,
            ),
            (
                "deflated, zip64",
                package_with(CompressionMethod::Deflated, true),
                true,
            ),
            ("zstd", zstd, false),
        ];
        for (method, bytes, zip64) in cases {
            let image_header = bytes
                .windows(IMAGE_ENTRY.len())
                .position(|w| w == IMAGE_ENTRY.as_bytes())
                .unwrap()
                - LOCAL_HEADER;
            assert_eq!(u32_at(&bytes, image_header + 22) == u32::MAX, zip64);
            let (temp, arrival, writer) = arrive(bytes, 97, None);
            let opened = open_arriving(temp.path(), Arc::clone(&arrival), 1 << 30, pace(10_000))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            assert_eq!(opened.manifest.manifest.version, "1.0.0");
            let (image, asked) = stream(opened);
            writer.join().unwrap();
            let whole = inspect(temp.path(), 1 << 30).unwrap();
            assert_eq!(image.unwrap(), whole.image.id, "{method}");
            assert!(asked && arrival.verified(), "{method}");
        }
    }

    #[test]
    fn other_shapes_are_read_whole() {
        let image = image_archive();
        let manifest_second = zip_of(
            &[(IMAGE_ENTRY, &image), (MANIFEST_ENTRY, MANIFEST.as_bytes())],
            CompressionMethod::Stored,
        );
        // A zip written to a stream puts sizes after the data.
        let mut streamed = zip::ZipWriter::new_stream(Vec::new());
        for (name, data) in [(MANIFEST_ENTRY, MANIFEST.as_bytes()), (IMAGE_ENTRY, &image)] {
            streamed
                .start_file(name, SimpleFileOptions::default())
                .unwrap();
            streamed.write_all(data).unwrap();
        }
        let descriptors = streamed.finish().unwrap().into_inner();
        let huge_manifest = zip_of(
            &[
                (MANIFEST_ENTRY, &vec![b' '; 2 << 20]),
                (IMAGE_ENTRY, &image),
            ],
            CompressionMethod::Deflated,
        );
        for (case, bytes) in [
            ("manifest second", manifest_second),
            ("data descriptors", descriptors),
            ("manifest too large", huge_manifest),
        ] {
            let (temp, arrival, writer) = arrive(bytes, 4096, None);
            let opened = open_arriving(temp.path(), arrival, 1 << 30, pace(10_000));
            assert!(opened.is_err(), "{case}");
            writer.join().unwrap();
        }
    }

    #[test]
    fn nothing_is_agreed_to_unless_the_whole_package_says_the_same() {
        let hidden = package(CompressionMethod::Stored);
        let shown = package(CompressionMethod::Deflated);
        // The first package's entries without its directory, then a whole second package: the
        // local headers read first are not what the central directory names.
        let end = hidden.len() - 22;
        let directory = u32::from_le_bytes(hidden[end + 16..end + 20].try_into().unwrap());
        let mut prefixed = hidden[..directory as usize].to_vec();
        prefixed.extend_from_slice(&shown);
        // One byte of the image's data changed: its CRC-32 fails.
        let mut corrupt = package(CompressionMethod::Stored);
        let at = corrupt.len() / 2;
        corrupt[at] ^= 1;
        // A zstd image whose headers name another CRC-32 or size than its data has.
        let zstd = ZstdImage::of(&image_archive(), 21);
        let other_crc = ZstdImage {
            crc32: zstd.crc32 ^ 1,
            ..zstd.clone()
        };
        let other_size = ZstdImage {
            size: zstd.size + 1,
            ..zstd.clone()
        };
        let zstd_crc = zstd_package(MANIFEST.as_bytes(), &other_crc);
        let zstd_size = zstd_package(MANIFEST.as_bytes(), &other_size);
        for (case, bytes) in [
            ("prefixed", prefixed),
            ("corrupt", corrupt),
            ("zstd, other CRC", zstd_crc),
            ("zstd, other size", zstd_size),
        ] {
            let (temp, arrival, writer) = arrive(bytes, 512, None);
            let opened = open_arriving(temp.path(), Arc::clone(&arrival), 1 << 30, pace(10_000))
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let (image, asked) = stream(opened);
            writer.join().unwrap();
            assert!(image.is_err(), "{case}: {image:?}");
            assert!(!asked && !arrival.verified(), "{case}");
        }
    }

    #[test]
    fn a_broken_or_stalled_arrival_stops_the_stream() {
        let bytes = package(CompressionMethod::Stored);
        let cut = bytes.len() - 100;
        let (temp, arrival, writer) = arrive(bytes.clone(), 512, Some(cut));
        writer.join().unwrap();
        // Broken off: the writer's handle is gone.
        let opened = open_arriving(temp.path(), Arc::clone(&arrival), 1 << 30, pace(10_000));
        assert!(opened.is_err() || !stream(opened.unwrap()).1);
        assert!(arrival.failed());

        // Stalled: all but the end arrived, and the rest never comes.
        let temp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(temp.path(), &bytes[..cut]).unwrap();
        let (arriving, arrival) = Arriving::new();
        arriving.advance(cut as u64);
        let opened = open_arriving(temp.path(), Arc::clone(&arrival), 1 << 30, pace(50)).unwrap();
        let (image, asked) = stream(opened);
        assert!(image.is_err() && !asked);
        assert!(arrival.stalled() && !arrival.failed());
        drop(arriving);
    }
}
