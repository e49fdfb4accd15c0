//! Zstandard zip entries (APPNOTE method 93), as `berth-pack pack --zstd` writes `image.tar`:
//! unpacked with a bounded window, to exactly the declared size, CRC-checked.
//!
//! Why not the zip crate's zstd reader: it takes whatever window a frame asks for (up to
//! 128 MiB by zstd's default limit), so a few bytes of a hostile upload could make the
//! platform reserve that much per upload.

use std::io::{self, BufReader, Read};

/// The zip method number of Zstandard.
pub const METHOD: u16 = 93;
/// Frames needing a window above 2^24 bytes (16 MiB) are refused: zstd's levels 1–19 use at
/// most 2^23 on their own (berth-pack uses 2^21); only `--long` or `--ultra` need more.
pub const WINDOW_LOG_MAX: u32 = 24;

/// An entry's data unpacked: fails when the frames need a larger window than
/// [`WINDOW_LOG_MAX`], unpack to more or fewer bytes than `size`, or to other bytes than
/// `crc32` says.
pub struct ZstdEntry<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, BufReader<R>>,
    crc: crc32fast::Hasher,
    expected_crc: u32,
    remaining: u64,
    checked: bool,
}

impl<R: Read> std::fmt::Debug for ZstdEntry<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdEntry")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// `raw` is the entry's compressed data (bound it to the compressed size).
pub fn open<R: Read>(raw: R, size: u64, crc32: u32) -> io::Result<ZstdEntry<R>> {
    let mut decoder = zstd::stream::read::Decoder::new(raw)?;
    decoder.window_log_max(WINDOW_LOG_MAX)?;
    Ok(ZstdEntry {
        decoder,
        crc: crc32fast::Hasher::new(),
        expected_crc: crc32,
        remaining: size,
        checked: false,
    })
}

/// zstd's own words for a frame asking for too large a window do not say what to change.
fn explain(error: io::Error) -> io::Error {
    if error.to_string().contains("too much memory") {
        return invalid(&format!(
            "a zstd frame asks for a window above {} MiB; compress with zstd levels 1-19 without long-distance matching (berth-pack pack --zstd does)",
            (1u64 << WINDOW_LOG_MAX) >> 20
        ));
    }
    error
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<R: Read> Read for ZstdEntry<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.checked {
            return Ok(0);
        }
        if self.remaining == 0 {
            // The declared size is reached: the frames must end here.
            let mut more = [0u8; 1];
            if self.decoder.read(&mut more).map_err(explain)? != 0 {
                return Err(invalid(
                    "the zstd data unpacks to more than its declared size",
                ));
            }
            if self.crc.clone().finalize() != self.expected_crc {
                return Err(invalid("the zstd data does not match its CRC-32"));
            }
            self.checked = true;
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.decoder.read(&mut buf[..want]).map_err(explain)?;
        if n == 0 {
            return Err(invalid("the zstd data ends before its declared size"));
        }
        self.crc.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8], window_log: u32) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.window_log(window_log).unwrap();
        encoder.long_distance_matching(window_log > 23).unwrap();
        std::io::Write::write_all(&mut encoder, data).unwrap();
        encoder.finish().unwrap()
    }

    fn unpack(raw: &[u8], size: u64, crc: u32) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        open(raw, size, crc)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn entries_unpack_only_when_size_crc_and_window_agree() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let crc = crc32fast::hash(&data);
        let size = data.len() as u64;
        let good = frame(&data, 21);
        let mut two = frame(&data[..1000], 21);
        two.extend(frame(&data[1000..], 21));
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        // (what, raw, declared size, declared CRC, unpacks)
        let cases: [(&str, &[u8], u64, u32, bool); 8] = [
            ("as written", &good, size, crc, true),
            ("two frames", &two, size, crc, true),
            ("declared larger", &good, size + 1, crc, false),
            ("declared smaller", &good, size - 1, crc, false),
            ("wrong CRC", &good, size, crc ^ 1, false),
            ("cut short", &good[..good.len() / 2], size, crc, false),
            ("junk after the frame", &trailing, size, crc, false),
            ("not zstd", b"PK\x03\x04 not a frame", 10, 0, false),
        ];
        for (what, raw, size, crc, unpacks) in cases {
            let result = unpack(raw, size, crc);
            assert_eq!(result.is_ok(), unpacks, "{what}: {result:?}");
            if let Ok(out) = result {
                assert_eq!(out, data, "{what}");
            }
        }
    }

    #[test]
    fn a_frame_asking_for_a_larger_window_is_refused() {
        // A window of 2^26 with data that does not fill it: the frame header still asks.
        let data = vec![7u8; 1 << 20];
        let raw = frame(&data, 26);
        let error = unpack(&raw, data.len() as u64, crc32fast::hash(&data)).unwrap_err();
        assert!(
            error.to_string().contains("asks for a window above 16 MiB"),
            "{error}"
        );
        assert_eq!(
            unpack(&frame(&data, 24), data.len() as u64, crc32fast::hash(&data)).unwrap(),
            data
        );
    }
}
