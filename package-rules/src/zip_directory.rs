//! Bounds a zip's central directory before the zip crate reads it: `ZipArchive::new` loads
//! every central directory entry into memory (~600 bytes each), so 200,000 empty entries in a
//! 17 MB upload cost 114 MiB. A package has two entries; the tail's end records say how many
//! the directory holds and how large it is, so we refuse big ones from those few bytes. The
//! records can lie, so the parser itself is also handed a [`Budget`] of bytes it may read.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most entries a package may have (a valid one has 2).
pub const MAX_ENTRIES: u64 = 64;
/// Largest central directory a package may have.
pub const MAX_DIRECTORY_BYTES: u64 = 64 * 1024;
/// Bytes the zip crate may read while opening: the tail it searches for the end record (at
/// most a 64 KiB comment), the zip64 records and a central directory within the limit. A lying
/// end record cannot make it parse more than this many bytes' worth of entries.
pub const OPEN_BUDGET: u64 = 4 * MAX_DIRECTORY_BYTES;

const EOCD_SIG: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
const LOCATOR_SIG: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
const EOCD64_SIG: [u8; 4] = [0x50, 0x4b, 0x06, 0x06];
const EOCD_LEN: usize = 22;
const LOCATOR_LEN: usize = 20;
/// Bytes of the zip64 end record up to and including the central directory size.
pub const EOCD64_LEN: usize = 48;
/// The end record, its longest comment and the zip64 locator before it.
pub const TAIL_LEN: u64 = (EOCD_LEN + 0xFFFF + LOCATOR_LEN) as u64;

/// What the end-of-central-directory record in a file's tail says.
#[derive(Debug, PartialEq, Eq)]
pub struct End {
    pub entries: u64,
    pub directory_bytes: u64,
    /// Where the zip64 end record is, when a zip64 locator precedes the end record.
    pub zip64_at: Option<u64>,
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u16::from_le_bytes([b[at], b[at + 1]]).into()
}
fn u32_at(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()).into()
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Parses the last end-of-central-directory record in `tail` (the file's last bytes).
/// Errors say why there is none; the caller leaves such files to the zip reader.
pub fn parse_end(tail: &[u8]) -> Result<End, String> {
    let at = (0..=tail.len().saturating_sub(EOCD_LEN))
        .rev()
        .find(|&i| tail.len() >= i + EOCD_LEN && tail[i..i + 4] == EOCD_SIG)
        .ok_or("it has no end-of-central-directory record")?;
    let record = &tail[at..at + EOCD_LEN];
    let locator = at
        .checked_sub(LOCATOR_LEN)
        .map(|l| &tail[l..at])
        .filter(|l| l[..4] == LOCATOR_SIG);
    // Both the per-disk and the total count: the larger one is what a reader may believe.
    Ok(End {
        entries: u16_at(record, 8).max(u16_at(record, 10)),
        directory_bytes: u32_at(record, 12),
        zip64_at: locator.map(|l| u64_at(l, 8)),
    })
}

/// Applies the zip64 end record (its first [`EOCD64_LEN`] bytes) to what the 32-bit one said:
/// a reader believes whichever claims more, so the larger of each counts.
pub fn apply_zip64(end: End, record: &[u8]) -> Result<End, String> {
    if record.len() < EOCD64_LEN || record[..4] != EOCD64_SIG {
        return Err("its zip64 end-of-central-directory record is missing".into());
    }
    // The 32-bit fields' all-ones value means "see zip64"; any other value still counts.
    let keep = |value: u64, sentinel: u64| if value == sentinel { 0 } else { value };
    Ok(End {
        entries: keep(end.entries, 0xFFFF)
            .max(u64_at(record, 24))
            .max(u64_at(record, 32)),
        directory_bytes: keep(end.directory_bytes, 0xFFFF_FFFF).max(u64_at(record, 40)),
        zip64_at: end.zip64_at,
    })
}

/// Refuses a directory over the limits, saying which and what to do.
pub fn within_limits(end: &End) -> Result<(), String> {
    // 0xFFFF without a zip64 record is taken at its word: over the limit either way.
    if end.entries > MAX_ENTRIES {
        return Err(format!(
            "the ZIP's end record says it has {} entries, more than the {MAX_ENTRIES} entries a package may have; a package needs only {} and {}",
            end.entries,
            crate::MANIFEST_ENTRY,
            crate::IMAGE_ENTRY
        ));
    }
    if end.directory_bytes > MAX_DIRECTORY_BYTES {
        return Err(format!(
            "the ZIP's central directory is {} bytes, more than the {MAX_DIRECTORY_BYTES} bytes a package may have; shorten the entry names or remove entries",
            end.directory_bytes
        ));
    }
    Ok(())
}

/// Reads the tail (and zip64 record) of `file` and checks the central directory's limits.
/// `Ok(Err(why))` is a package over a limit; `Err` is an IO failure. Tails that do not parse
/// are left to the zip reader to report (it reads them within [`OPEN_BUDGET`]).
pub fn check<R: Read + Seek>(file: &mut R) -> io::Result<Result<(), String>> {
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(TAIL_LEN);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.by_ref().take(TAIL_LEN).read_to_end(&mut tail)?;
    let end = match parse_end(&tail) {
        Ok(end) => end,
        Err(_) => return Ok(Ok(())),
    };
    let end = match end.zip64_at {
        Some(at) if at <= len => {
            file.seek(SeekFrom::Start(at))?;
            let mut record = Vec::new();
            file.by_ref()
                .take(EOCD64_LEN as u64)
                .read_to_end(&mut record)?;
            match apply_zip64(end, &record) {
                Ok(end) => end,
                Err(_) => return Ok(Ok(())),
            }
        }
        Some(_) => return Ok(Ok(())),
        None => end,
    };
    file.seek(SeekFrom::Start(0))?;
    Ok(within_limits(&end))
}

/// A reader that fails once it has read its budget; [`Budget::lift`] ends the limit (after
/// the zip crate has opened the archive, entry data is bounded elsewhere).
#[derive(Debug)]
pub struct Budget<R> {
    inner: R,
    left: Arc<AtomicU64>,
}

impl<R> Budget<R> {
    pub fn new(inner: R, bytes: u64) -> (Budget<R>, Arc<AtomicU64>) {
        let left = Arc::new(AtomicU64::new(bytes));
        let handle = Arc::clone(&left);
        (Budget { inner, left }, handle)
    }

    pub fn lift(handle: &AtomicU64) {
        handle.store(u64::MAX, Ordering::Relaxed);
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left.load(Ordering::Relaxed);
        if left == 0 {
            return Err(io::Error::other(
                "the central directory is larger than its end record says",
            ));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if left != u64::MAX {
            self.left.store(left - n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl<R: Seek> Seek for Budget<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn zip_with(entries: usize, name_len: usize) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for i in 0..entries {
            w.start_file(format!("{i:0name_len$}"), opts).unwrap();
            w.write_all(b"").unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// A zip64 tail: the zip64 end record at 0, its locator, and a 32-bit record saying "see zip64".
    fn zip64(entries: u64, directory: u64) -> Vec<u8> {
        let mut b = EOCD64_SIG.to_vec();
        b.extend(44u64.to_le_bytes());
        b.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend(entries.to_le_bytes());
        b.extend(entries.to_le_bytes());
        b.extend(directory.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(LOCATOR_SIG);
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(EOCD_SIG);
        b.extend([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        b.extend([0xff; 8]);
        b.extend([0, 0]);
        b
    }

    /// A normal zip whose end record claims `claimed` entries.
    fn lying(real: usize, claimed: u16) -> Vec<u8> {
        let mut b = zip_with(real, 1);
        let at = b.len() - EOCD_LEN;
        b[at + 8..at + 12]
            .copy_from_slice(&[claimed.to_le_bytes(), claimed.to_le_bytes()].concat());
        b
    }

    #[test]
    fn directories_over_the_limits_are_refused_from_the_tail() {
        let table: Vec<(&str, Vec<u8>, Result<(), &str>)> = vec![
            ("a package", zip_with(2, 9), Ok(())),
            ("at the limit", zip_with(64, 1), Ok(())),
            ("one entry over", zip_with(65, 1), Err("65 entries")),
            ("20,000 entries", zip_with(20_000, 1), Err("20000 entries")),
            (
                "directory too large",
                zip_with(60, 2000),
                Err("central directory is"),
            ),
            ("zip64 within", zip64(2, 100), Ok(())),
            (
                "zip64 count over",
                zip64(1 << 40, 100),
                Err("1099511627776 entries"),
            ),
            (
                "zip64 directory over",
                zip64(2, 1 << 20),
                Err("1048576 bytes"),
            ),
            ("no end record", b"PK\x03\x04 not a zip".to_vec(), Ok(())),
            ("lying count", lying(1000, 2), Ok(())),
        ];
        for (what, bytes, want) in table {
            let got = check(&mut Cursor::new(&bytes)).unwrap();
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(why), Err(part)) => assert!(why.contains(part), "{what}: {why}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// A count that lies low passes the tail check; the budget still stops the parser.
    #[test]
    fn a_lying_count_cannot_make_the_parser_read_more_than_its_budget() {
        for (what, bytes, must_open) in [
            ("a package", zip_with(2, 9), true),
            ("64 long names", zip_with(64, 900), true),
            ("lying count", lying(20_000, 2), false),
            ("lying count, zero", lying(20_000, 0), false),
        ] {
            let (reader, handle) = Budget::new(Cursor::new(bytes), OPEN_BUDGET);
            let opened = zip::ZipArchive::new(reader).map(|z| z.len());
            Budget::<()>::lift(&handle);
            assert!(opened.is_ok() || !must_open, "{what}: {opened:?}");
            // Whatever the crate made of it, it is within the entry limit or refused.
            if let Ok(n) = opened {
                assert!(n as u64 <= MAX_ENTRIES, "{what}: {n}");
            }
        }
    }
}
