//! A small zip container writer for entries whose data is produced elsewhere (already
//! deflated, with its CRC computed alongside), with zip64 support and deterministic headers.
//!
//! Each entry's local header is written first and patched in place (seek back) once the
//! sizes and CRC are known, so no data descriptors are needed. Zip64 extra fields are used
//! for an entry whose size is unknown in advance or may not fit 32 bits, and the zip64 end
//! of central directory record and locator are written whenever any field overflows.
//! Every entry gets the same timestamp (1980-01-01 00:00, the earliest DOS date) and Unix
//! permissions 0644, so the same inputs give byte-identical archives.

use std::io::{self, Seek, SeekFrom, Write};

/// How an entry's data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
    /// Zstandard (APPNOTE 6.3.7's method 93): only for image.tar, when asked for.
    Zstd,
}

impl Method {
    fn code(self) -> u16 {
        match self {
            Method::Stored => 0,
            Method::Deflated => 8,
            Method::Zstd => 93,
        }
    }
}

/// Sizes above this use zip64 fields up front; the margin covers deflate's worst-case
/// expansion of incompressible data.
const ZIP64_SIZE_THRESHOLD: u64 = 0xF000_0000;
const U32_MAX: u64 = 0xFFFF_FFFF;
const DOS_TIME: u16 = 0;
/// 1980-01-01: (year - 1980) << 9 | month << 5 | day.
const DOS_DATE: u16 = (1 << 5) | 1;
const UNIX_FILE_0644: u32 = 0o100_644 << 16;
const VERSION_DEFAULT: u16 = 20;
const VERSION_ZIP64: u16 = 45;
/// APPNOTE 6.3 introduced method 93.
const VERSION_ZSTD: u16 = 63;
/// "Made by" host 3 = Unix, so the external attributes carry Unix permissions.
const MADE_BY_UNIX: u16 = 3 << 8;
const FLAG_UTF8: u16 = 1 << 11;

struct CentralRecord {
    name: String,
    method: Method,
    crc32: u32,
    compressed: u64,
    uncompressed: u64,
    header_offset: u64,
    zip64_sizes: bool,
}

struct OpenEntry {
    record: CentralRecord,
    data_start: u64,
}

/// Writes a zip archive entry by entry to a seekable output.
pub struct ZipWriter<W: Write + Seek> {
    out: W,
    entries: Vec<CentralRecord>,
    open: Option<OpenEntry>,
    force_zip64: bool,
}

impl<W: Write + Seek> ZipWriter<W> {
    pub fn new(out: W) -> Self {
        ZipWriter {
            out,
            entries: Vec::new(),
            open: None,
            force_zip64: false,
        }
    }

    /// Writes every zip64 record and field even where 32 bits suffice. Exists so tests can
    /// exercise the zip64 path without writing 4 GiB.
    pub fn force_zip64(mut self) -> Self {
        self.force_zip64 = true;
        self
    }

    /// Starts an entry; its data is then written to [`ZipWriter::data`] and the entry closed
    /// with [`ZipWriter::finish_entry`]. `size_hint` is the uncompressed size if known.
    pub fn start_entry(
        &mut self,
        name: &str,
        method: Method,
        size_hint: Option<u64>,
    ) -> io::Result<()> {
        if self.open.is_some() {
            return Err(io::Error::other(
                "zip entry started before the previous one finished",
            ));
        }
        let header_offset = self.out.stream_position()?;
        let zip64_sizes =
            self.force_zip64 || size_hint.is_none_or(|size| size >= ZIP64_SIZE_THRESHOLD);
        let record = CentralRecord {
            name: name.to_owned(),
            method,
            crc32: 0,
            compressed: 0,
            uncompressed: 0,
            header_offset,
            zip64_sizes,
        };
        let header = local_header(&record);
        self.out.write_all(&header)?;
        self.open = Some(OpenEntry {
            record,
            data_start: header_offset + header.len() as u64,
        });
        Ok(())
    }

    /// Where the current entry's (already encoded) data goes.
    pub fn data(&mut self) -> &mut W {
        &mut self.out
    }

    /// Closes the current entry: patches its local header with the CRC and sizes.
    pub fn finish_entry(&mut self, crc32: u32, uncompressed: u64) -> io::Result<()> {
        let Some(OpenEntry {
            mut record,
            data_start,
        }) = self.open.take()
        else {
            return Err(io::Error::other("zip entry finished without being started"));
        };
        let end = self.out.stream_position()?;
        record.crc32 = crc32;
        record.compressed = end - data_start;
        record.uncompressed = uncompressed;
        if !record.zip64_sizes && (record.compressed >= U32_MAX || record.uncompressed >= U32_MAX) {
            return Err(io::Error::other(format!(
                "zip entry {} grew past 4 GiB after it was announced smaller; was the input modified while packing?",
                record.name
            )));
        }
        self.out.seek(SeekFrom::Start(record.header_offset))?;
        self.out.write_all(&local_header(&record))?;
        self.out.seek(SeekFrom::Start(end))?;
        self.entries.push(record);
        Ok(())
    }

    /// Convenience for small entries held in memory.
    pub fn add_entry(
        &mut self,
        name: &str,
        method: Method,
        level: u32,
        data: &[u8],
    ) -> io::Result<()> {
        self.start_entry(name, method, Some(data.len() as u64))?;
        match method {
            Method::Stored => self.out.write_all(data)?,
            Method::Deflated => {
                let mut encoder = flate2::write::DeflateEncoder::new(
                    &mut self.out,
                    flate2::Compression::new(level),
                );
                encoder.write_all(data)?;
                encoder.finish()?;
            }
            Method::Zstd => zstd::stream::copy_encode(data, &mut self.out, level as i32)?,
        }
        self.finish_entry(crc32fast::hash(data), data.len() as u64)
    }

    /// Writes the central directory and end records; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        if self.open.is_some() {
            return Err(io::Error::other(
                "zip archive finished with an entry still open",
            ));
        }
        let directory_offset = self.out.stream_position()?;
        let mut directory = Vec::new();
        for entry in &self.entries {
            central_header(entry, self.force_zip64, &mut directory);
        }
        self.out.write_all(&directory)?;
        let directory_size = directory.len() as u64;
        let count = self.entries.len() as u64;
        let needs_zip64 = self.force_zip64
            || self.entries.iter().any(|entry| entry.zip64_sizes)
            || directory_offset >= U32_MAX
            || directory_size >= U32_MAX
            || count >= 0xFFFF;
        let mut end = Vec::new();
        if needs_zip64 {
            let zip64_end_offset = directory_offset + directory_size;
            put32(&mut end, 0x0606_4b50);
            put64(&mut end, 44);
            put16(&mut end, MADE_BY_UNIX | VERSION_ZIP64);
            put16(&mut end, VERSION_ZIP64);
            put32(&mut end, 0);
            put32(&mut end, 0);
            put64(&mut end, count);
            put64(&mut end, count);
            put64(&mut end, directory_size);
            put64(&mut end, directory_offset);
            put32(&mut end, 0x0706_4b50);
            put32(&mut end, 0);
            put64(&mut end, zip64_end_offset);
            put32(&mut end, 1);
        }
        let force = self.force_zip64;
        put32(&mut end, 0x0605_4b50);
        put16(&mut end, 0);
        put16(&mut end, 0);
        let count16 = if force || count >= 0xFFFF {
            0xFFFF
        } else {
            count as u16
        };
        put16(&mut end, count16);
        put16(&mut end, count16);
        put32(&mut end, clamp32(directory_size, force));
        put32(&mut end, clamp32(directory_offset, force));
        put16(&mut end, 0);
        self.out.write_all(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The 32-bit field value: the value itself, or 0xFFFFFFFF meaning "see the zip64 record".
fn clamp32(value: u64, force: bool) -> u32 {
    if force || value >= U32_MAX {
        u32::MAX
    } else {
        value as u32
    }
}

fn flags(name: &str) -> u16 {
    if name.is_ascii() { 0 } else { FLAG_UTF8 }
}

fn version_needed(entry: &CentralRecord, zip64: bool) -> u16 {
    match (entry.method, zip64) {
        (Method::Zstd, _) => VERSION_ZSTD,
        (_, true) => VERSION_ZIP64,
        (_, false) => VERSION_DEFAULT,
    }
}

fn local_header(entry: &CentralRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(30 + entry.name.len() + 20);
    put32(&mut out, 0x0403_4b50);
    put16(&mut out, version_needed(entry, entry.zip64_sizes));
    put16(&mut out, flags(&entry.name));
    put16(&mut out, entry.method.code());
    put16(&mut out, DOS_TIME);
    put16(&mut out, DOS_DATE);
    put32(&mut out, entry.crc32);
    if entry.zip64_sizes {
        put32(&mut out, u32::MAX);
        put32(&mut out, u32::MAX);
    } else {
        put32(&mut out, entry.compressed as u32);
        put32(&mut out, entry.uncompressed as u32);
    }
    put16(&mut out, entry.name.len() as u16);
    put16(&mut out, if entry.zip64_sizes { 20 } else { 0 });
    out.extend_from_slice(entry.name.as_bytes());
    if entry.zip64_sizes {
        put16(&mut out, 0x0001);
        put16(&mut out, 16);
        put64(&mut out, entry.uncompressed);
        put64(&mut out, entry.compressed);
    }
    out
}

fn central_header(entry: &CentralRecord, force: bool, out: &mut Vec<u8>) {
    // The zip64 extra holds, in this order, exactly the fields whose 32-bit slot is 0xFFFFFFFF.
    let sizes64 = entry.zip64_sizes;
    let offset64 = force || entry.header_offset >= U32_MAX;
    let mut extra = Vec::new();
    if sizes64 {
        put64(&mut extra, entry.uncompressed);
        put64(&mut extra, entry.compressed);
    }
    if offset64 {
        put64(&mut extra, entry.header_offset);
    }
    let zip64 = sizes64 || offset64;
    let version = version_needed(entry, zip64);
    put32(out, 0x0201_4b50);
    put16(out, MADE_BY_UNIX | version);
    put16(out, version);
    put16(out, flags(&entry.name));
    put16(out, entry.method.code());
    put16(out, DOS_TIME);
    put16(out, DOS_DATE);
    put32(out, entry.crc32);
    if sizes64 {
        put32(out, u32::MAX);
        put32(out, u32::MAX);
    } else {
        put32(out, entry.compressed as u32);
        put32(out, entry.uncompressed as u32);
    }
    put16(out, entry.name.len() as u16);
    put16(out, if zip64 { extra.len() as u16 + 4 } else { 0 });
    put16(out, 0);
    put16(out, 0);
    put16(out, 0);
    put32(out, UNIX_FILE_0644);
    put32(
        out,
        if offset64 {
            u32::MAX
        } else {
            entry.header_offset as u32
        },
    );
    out.extend_from_slice(entry.name.as_bytes());
    if zip64 {
        put16(out, 0x0001);
        put16(out, extra.len() as u16);
        out.extend_from_slice(&extra);
    }
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};
    use std::process::Command;

    fn build(force_zip64: bool, size_hint_known: bool, method: Method) -> Vec<u8> {
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        if force_zip64 {
            writer = writer.force_zip64();
        }
        writer
            .add_entry(
                "cumulocity.json",
                Method::Deflated,
                6,
                b"{\"apiVersion\":\"2\"}",
            )
            .unwrap();
        let body: Vec<u8> = b"layer data "
            .iter()
            .copied()
            .cycle()
            .take(300_000)
            .collect();
        let hint = size_hint_known.then_some(body.len() as u64);
        writer.start_entry("image.tar", method, hint).unwrap();
        let mut deflater = crate::deflate::ParallelDeflater::new(Vec::new(), 6, 2);
        let (encoded, totals) = match method {
            Method::Deflated => {
                deflater.write_all(&body).unwrap();
                deflater.finish().unwrap()
            }
            // Covered through `pack --zstd` (tests/it/pack.rs): the zip crate here reads no zstd.
            Method::Stored | Method::Zstd => {
                drop(deflater);
                (
                    body.clone(),
                    crate::deflate::StreamTotals {
                        crc32: crc32fast::hash(&body),
                        uncompressed: body.len() as u64,
                        compressed: body.len() as u64,
                    },
                )
            }
        };
        writer.data().write_all(&encoded).unwrap();
        writer
            .finish_entry(totals.crc32, totals.uncompressed)
            .unwrap();
        writer.finish().unwrap().into_inner()
    }

    fn check_with_zip_crate(bytes: &[u8]) {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        archive.validate_header_consistency().unwrap();
        let names: Vec<_> = (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().unwrap().into_owned())
            .collect();
        assert_eq!(names, ["cumulocity.json", "image.tar"]);
        let mut manifest = String::new();
        archive
            .by_index(0)
            .unwrap()
            .read_to_string(&mut manifest)
            .unwrap();
        assert_eq!(manifest, "{\"apiVersion\":\"2\"}");
        let mut image = archive.by_index(1).unwrap();
        assert_eq!(image.unix_mode(), Some(0o100_644));
        let mut body = Vec::new();
        image.read_to_end(&mut body).unwrap();
        assert_eq!(body.len(), 300_000);
        assert!(body.starts_with(b"layer data layer"));
    }

    fn check_with_unzip(bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.zip");
        std::fs::write(&path, bytes).unwrap();
        let output = Command::new("unzip")
            .arg("-t")
            .arg(&path)
            .output()
            .expect("unzip is installed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "unzip -t failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("No errors detected"), "{stdout}");
    }

    #[test]
    fn plain_archive_reads_back() {
        for method in [Method::Deflated, Method::Stored] {
            let bytes = build(false, true, method);
            assert!(
                !bytes.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x06]),
                "no zip64 record expected"
            );
            check_with_zip_crate(&bytes);
            check_with_unzip(&bytes);
        }
    }

    #[test]
    fn forced_zip64_archive_reads_back() {
        for method in [Method::Deflated, Method::Stored] {
            let bytes = build(true, true, method);
            assert!(
                bytes.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x06]),
                "zip64 end record expected"
            );
            assert!(
                bytes.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x07]),
                "zip64 locator expected"
            );
            check_with_zip_crate(&bytes);
            check_with_unzip(&bytes);
        }
    }

    #[test]
    fn unknown_size_entry_uses_zip64_sizes() {
        let bytes = build(false, false, Method::Deflated);
        assert!(bytes.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x06]));
        check_with_zip_crate(&bytes);
        check_with_unzip(&bytes);
    }

    #[test]
    fn same_input_gives_same_bytes() {
        assert_eq!(
            build(false, true, Method::Deflated),
            build(false, true, Method::Deflated)
        );
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        assert!(writer.finish_entry(0, 0).is_err());
        writer.start_entry("a", Method::Stored, Some(0)).unwrap();
        assert!(writer.start_entry("b", Method::Stored, Some(0)).is_err());
        assert!(writer.finish().is_err());
    }
}
