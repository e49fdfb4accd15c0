//! What an image archive unpacks to in Docker, counted while it streams past once. Docker's
//! loader decompresses every layer it finds compressed (it goes by the first bytes: gzip, zstd,
//! bzip2, xz), so a layer of a few megabytes can unpack to terabytes. [`Unpacked`] counts every
//! file of the archive at what it unpacks to: a gzip file decompressed (the output counted and
//! thrown away), any other at its size, against one limit; a file compressed another way is
//! refused, since nothing here can count it.
//!
//! Usage, per file entry: read its data through [`Unpacked::file`] to its end. By hand:
//! [`Unpacked::begin`] with the file's first bytes ([`MAGIC_LEN`] of them, fewer if the file is
//! shorter), then every byte of the file through [`Unpacked::data`] (or read it through
//! [`Unpacked::reader`]), then [`Unpacked::end`].

use std::io::{self, Chain, Cursor, Read, Write};

use flate2::write::MultiGzDecoder;

/// Bytes [`detect`] needs to see at the start of a file.
pub const MAGIC_LEN: usize = 6;

/// How a file of the archive is compressed, as Docker's loader would find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }
}

/// The compression Docker would see in a file starting with `head`. Matches moby's magic
/// numbers, zstd's skippable frames (0x184D2A50 to 0x184D2A5F) included, and is broader for
/// gzip (two bytes, not three): a file Docker would take as plain is never counted as less.
pub fn detect(head: &[u8]) -> Option<Compression> {
    const TABLE: [(&[u8], Compression); 4] = [
        (&[0x1f, 0x8b], Compression::Gzip),
        (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
        (b"BZh", Compression::Bzip2),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
    ];
    if let Some((_, compression)) = TABLE.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(*compression);
    }
    match head {
        [first, 0x2a, 0x4d, 0x18, ..] if first & 0xf0 == 0x50 => Some(Compression::Zstd),
        _ => None,
    }
}

/// Why an archive is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It unpacks to more than the limit.
    TooLarge { limit: u64 },
    /// A file is compressed in a way that is not counted.
    Uncounted { compression: Compression },
    /// A file starts like gzip but is not a whole gzip stream (Docker could not load it either).
    Corrupt { reason: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLarge { limit } => write!(
                f,
                "the image unpacks to more than {limit} bytes (its compressed layers decompressed)"
            ),
            Refusal::Uncounted { compression } => write!(
                f,
                "it is {}-compressed, which is not accepted (what it unpacks to cannot be counted before Docker unpacks it); save the image with uncompressed or gzip-compressed layers",
                compression.name()
            ),
            Refusal::Corrupt { reason } => write!(f, "it is not a whole gzip stream: {reason}"),
        }
    }
}

/// The count of one archive.
#[derive(Debug)]
pub struct Unpacked {
    limit: u64,
    /// Bytes of the files ended so far.
    total: u64,
    /// The gzip file under way, decompressing into the room left.
    gzip: Option<MultiGzDecoder<Room>>,
    refused: Option<Refusal>,
}

/// Where a gzip file's output goes: counted, within what the limit leaves, and dropped.
#[derive(Debug)]
struct Room {
    left: u64,
    used: u64,
    exceeded: bool,
}

impl Write for Room {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.used = self.used.saturating_add(data.len() as u64);
        if self.used > self.left {
            self.exceeded = true;
            return Err(io::Error::other("the image size limit was exceeded"));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Unpacked {
    pub fn new(limit: u64) -> Unpacked {
        Unpacked {
            limit,
            total: 0,
            gzip: None,
            refused: None,
        }
    }

    /// Bytes the files ended so far unpack to.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The refusal of an earlier call, if any (what a failed [`Unpacked::reader`] read meant).
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refused.as_ref()
    }

    fn refuse(&mut self, refusal: Refusal) -> Refusal {
        self.gzip = None;
        self.refused.get_or_insert(refusal).clone()
    }

    /// A file starts with `head`. Its bytes count as they come ([`Unpacked::data`]), not by
    /// the size its header claims: an archive whose data is not there is refused as such.
    pub fn begin(&mut self, head: &[u8]) -> Result<(), Refusal> {
        self.gzip = None;
        match detect(head) {
            None => Ok(()),
            Some(Compression::Gzip) => {
                let room = Room {
                    left: self.limit.saturating_sub(self.total),
                    used: 0,
                    exceeded: false,
                };
                self.gzip = Some(MultiGzDecoder::new(room));
                Ok(())
            }
            Some(compression) => Err(self.refuse(Refusal::Uncounted { compression })),
        }
    }

    /// The next bytes of the file begun last.
    pub fn data(&mut self, mut bytes: &[u8]) -> Result<(), Refusal> {
        let Some(gzip) = &mut self.gzip else {
            self.total = self.total.saturating_add(bytes.len() as u64);
            if self.total > self.limit {
                return Err(self.refuse(Refusal::TooLarge { limit: self.limit }));
            }
            return Ok(());
        };
        // `write_all`, except that a decoder taking nothing (data after the end, which its
        // multi-member reading should never leave) is an error, not a loop.
        while !bytes.is_empty() {
            match gzip.write(bytes) {
                Ok(0) => return Err(self.corrupt("data after its end")),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.corrupt(e)),
            }
        }
        Ok(())
    }

    /// The file begun last ended: a gzip file must have ended its stream.
    pub fn end(&mut self) -> Result<(), Refusal> {
        let Some(mut gzip) = self.gzip.take() else {
            return Ok(());
        };
        if let Err(e) = gzip.try_finish() {
            self.gzip = Some(gzip);
            return Err(self.corrupt(e));
        }
        self.total = self.total.saturating_add(gzip.get_ref().used);
        Ok(())
    }

    /// The refusal a gzip failure means: the limit if the output went past it, else damage.
    fn corrupt(&mut self, reason: impl std::fmt::Display) -> Refusal {
        let exceeded = self.gzip.as_ref().is_some_and(|g| g.get_ref().exceeded);
        self.refuse(if exceeded {
            Refusal::TooLarge { limit: self.limit }
        } else {
            Refusal::Corrupt {
                reason: reason.to_string(),
            }
        })
    }

    /// A file whose data `entry` reads, begun with its first bytes and read through the count
    /// ([`Unpacked::reader`]): read to its end, it is ended too. A refusal fails this call or a
    /// read ([`Unpacked::refusal`] says which).
    pub fn file<R: Read>(
        &mut self,
        mut entry: R,
    ) -> io::Result<Counted<'_, Chain<Cursor<Vec<u8>>, R>>> {
        let head = read_head(&mut entry)?;
        self.begin(&head).map_err(refused)?;
        Ok(self.reader(Cursor::new(head).chain(entry)))
    }

    /// `inner`, the data of the file begun last, read through [`Unpacked::data`]; at its end,
    /// [`Unpacked::end`]. A refusal fails the read ([`Unpacked::refusal`] says which). Also
    /// counts the bytes read.
    pub fn reader<R: Read>(&mut self, inner: R) -> Counted<'_, R> {
        Counted {
            inner,
            unpacked: self,
            read: 0,
            ended: false,
        }
    }
}

/// A file's data read through an [`Unpacked`] count.
#[derive(Debug)]
pub struct Counted<'a, R> {
    inner: R,
    unpacked: &'a mut Unpacked,
    read: u64,
    ended: bool,
}

impl<R> Counted<'_, R> {
    /// Bytes read so far.
    pub fn read_bytes(&self) -> u64 {
        self.read
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if n == 0 && !buf.is_empty() && !self.ended {
            self.ended = true;
            self.unpacked.end().map_err(refused)?;
        }
        self.unpacked.data(&buf[..n]).map_err(refused)?;
        Ok(n)
    }
}

/// A refusal as the error of a read.
fn refused(refusal: Refusal) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, refusal.to_string())
}

/// Reads a file's first [`MAGIC_LEN`] bytes (fewer only if it is shorter).
fn read_head(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(MAGIC_LEN);
    reader.take(MAGIC_LEN as u64).read_to_end(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Counts one file through a reader, in reads of `chunk` bytes, as an archive reader would.
    fn count(unpacked: &mut Unpacked, file: &[u8], chunk: usize) -> Result<u64, Refusal> {
        let mut reader = match unpacked.file(file) {
            Ok(reader) => reader,
            Err(_) => return Err(unpacked.refusal().cloned().expect("a refusal")),
        };
        let mut buf = vec![0; chunk];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return Err(unpacked.refusal().cloned().expect("a refusal")),
            }
        }
        assert_eq!(reader.read_bytes(), file.len() as u64);
        Ok(unpacked.total())
    }

    #[test]
    fn compression_is_detected_by_docker_s_magic_numbers() {
        let cases: [(&[u8], Option<Compression>); 11] = [
            (&[0x1f, 0x8b, 0x08, 0], Some(Compression::Gzip)),
            (&[0x1f, 0x8b], Some(Compression::Gzip)),
            (&[0x1f], None),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0x04], Some(Compression::Zstd)),
            (&[0x5e, 0x2a, 0x4d, 0x18, 0, 0], Some(Compression::Zstd)),
            (&[0x60, 0x2a, 0x4d, 0x18, 0, 0], None),
            (b"BZh91AY", Some(Compression::Bzip2)),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0], Some(Compression::Xz)),
            (&[0xfd, b'7', b'z', b'X', b'Z'], None),
            (b"{\"architecture\"", None),
            (b"", None),
        ];
        for (head, expected) in cases {
            assert_eq!(detect(head), expected, "{head:02x?}");
        }
    }

    #[test]
    fn files_count_at_what_they_unpack_to() {
        let mut two_members = gzip(&[b'a'; 1000]);
        two_members.extend(gzip(&[b'b'; 3000]));
        let mut trailing = gzip(b"layer");
        trailing.extend([0u8; 16]);
        let whole = gzip(&vec![0; 100_000]);
        let zeros = vec![0u8; 5000];
        // (case, file, limit, what it counts to or the refusal)
        type Case<'a> = (&'a str, Vec<u8>, u64, Result<u64, &'a str>);
        let cases: Vec<Case> = vec![
            ("plain", zeros.clone(), 5000, Ok(5000)),
            (
                "plain, one byte over",
                zeros.clone(),
                4999,
                Err("more than 4999"),
            ),
            ("gzip", whole.clone(), 100_000, Ok(100_000)),
            (
                "gzip, one byte over",
                whole.clone(),
                99_999,
                Err("more than 99999"),
            ),
            ("two gzip members", two_members, 1 << 20, Ok(4000)),
            (
                "gzip then zeros",
                trailing,
                1 << 20,
                Err("not a whole gzip"),
            ),
            (
                "gzip cut short",
                whole[..whole.len() - 4].to_vec(),
                1 << 20,
                Err("not a whole gzip"),
            ),
            (
                "gzip magic only",
                vec![0x1f, 0x8b],
                1 << 20,
                Err("not a whole gzip"),
            ),
            (
                "zstd",
                vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0],
                1 << 20,
                Err("zstd-compressed"),
            ),
            (
                "xz",
                vec![0xfd, b'7', b'z', b'X', b'Z', 0, 1],
                1 << 20,
                Err("xz-compressed"),
            ),
            ("bzip2", b"BZh9".to_vec(), 1 << 20, Err("bzip2-compressed")),
            ("empty", vec![], 0, Ok(0)),
        ];
        for (case, file, limit, expected) in cases {
            for chunk in [1, 7, 64 * 1024] {
                let counted = count(&mut Unpacked::new(limit), &file, chunk);
                match (&counted, &expected) {
                    (Ok(got), Ok(want)) => assert_eq!(got, want, "{case} ({chunk})"),
                    (Err(refusal), Err(says)) => {
                        assert!(
                            refusal.to_string().contains(says),
                            "{case} ({chunk}): {refusal}"
                        )
                    }
                    _ => panic!("{case} ({chunk}): {counted:?}, expected {expected:?}"),
                }
            }
        }
    }

    #[test]
    fn the_limit_holds_across_files_and_stops_a_bomb_early() {
        // Several files together: the second gzip file gets only the room the first left.
        let mut unpacked = Unpacked::new(10_000);
        assert_eq!(count(&mut unpacked, &[7; 4000], 4096), Ok(4000));
        assert_eq!(count(&mut unpacked, &gzip(&[0; 6000]), 4096), Ok(10_000));
        assert_eq!(
            count(&mut unpacked, &[7; 1], 4096),
            Err(Refusal::TooLarge { limit: 10_000 })
        );

        // 64 MiB of zeros gzip to about 64 KiB; counting stops at the limit, long before the
        // end of the data (a reader of a bomb fails at once).
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        let block = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&block).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 256 << 10, "{}", bomb.len());
        let mut unpacked = Unpacked::new(1 << 20);
        unpacked.begin(&bomb[..MAGIC_LEN]).unwrap();
        let mut reader = unpacked.reader(bomb.as_slice());
        let mut buf = vec![0; 4096];
        let failed_at = loop {
            if reader.read(&mut buf).is_err() {
                break reader.read_bytes();
            }
        };
        assert!(
            failed_at < 16 << 10,
            "read {failed_at} bytes before refusing"
        );
        assert_eq!(
            unpacked.refusal(),
            Some(&Refusal::TooLarge { limit: 1 << 20 })
        );
    }
}
