//! Where image.tar's bytes go while `pack` reads them: a tee from the source into the zip
//! entry, stored or deflated, with CRC and sizes kept for the entry header.

use std::io::{self, Read, Write};

use indicatif::ProgressBar;

use crate::deflate::{ParallelDeflater, StreamTotals};

/// Copies everything read from `source` into `sink`, so the image is checked and written in
/// one pass. A sink failure is kept aside: it is an output problem, not a bad image.
pub struct TeeReader<'a, S: Write> {
    pub source: Box<dyn Read>,
    pub sink: &'a mut S,
    /// Set when writing failed; the read then fails too.
    pub sink_error: Option<io::Error>,
    pub progress: &'a ProgressBar,
}

impl<S: Write> Read for TeeReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read(buf)?;
        if let Err(error) = self.sink.write_all(&buf[..n]) {
            let message = format!("writing the package failed: {error}");
            self.sink_error = Some(error);
            return Err(io::Error::other(message));
        }
        self.progress.inc(n as u64);
        Ok(n)
    }
}

pub enum EntrySink<W: Write> {
    Stored(StoredSink<W>),
    Deflated(ParallelDeflater<W>),
    Zstd(ZstdSink<W>),
}

impl<W: Write> EntrySink<W> {
    pub fn finish(self) -> io::Result<StreamTotals> {
        match self {
            EntrySink::Stored(sink) => sink.finish(),
            EntrySink::Deflated(deflater) => deflater.finish().map(|(_, totals)| totals),
            EntrySink::Zstd(sink) => sink.finish(),
        }
    }
}

impl<W: Write> Write for EntrySink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            EntrySink::Stored(sink) => sink.write(buf),
            EntrySink::Deflated(deflater) => deflater.write(buf),
            EntrySink::Zstd(sink) => sink.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            EntrySink::Stored(sink) => sink.flush(),
            EntrySink::Deflated(deflater) => deflater.flush(),
            EntrySink::Zstd(sink) => sink.flush(),
        }
    }
}

/// Copies data unchanged, computing what a stored zip entry needs.
pub struct StoredSink<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> StoredSink<W> {
    pub fn new(out: W) -> Self {
        StoredSink {
            out,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    fn finish(mut self) -> io::Result<StreamTotals> {
        self.out.flush()?;
        Ok(StreamTotals {
            crc32: self.crc.finalize(),
            uncompressed: self.len,
            compressed: self.len,
        })
    }
}

impl<W: Write> Write for StoredSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The zstd window berth-pack compresses with: 2^21 bytes, what levels 1–4 use on large input.
/// Berth refuses frames that need more than `package_rules::ZSTD_WINDOW_LOG_MAX` to unpack.
const ZSTD_WINDOW_LOG: u32 = 21;

/// Compresses into one zstd frame (zip method 93) on `threads` workers, computing what the
/// entry header needs.
pub struct ZstdSink<W: Write> {
    encoder: zstd::stream::write::Encoder<'static, Counting<W>>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> ZstdSink<W> {
    pub fn new(out: W, level: i32, threads: usize) -> io::Result<Self> {
        let mut encoder = zstd::stream::write::Encoder::new(Counting { out, written: 0 }, level)?;
        encoder.window_log(ZSTD_WINDOW_LOG)?;
        // The frame says how big the window is (the decoder checks it) and carries a
        // checksum of its own besides the zip's CRC.
        encoder.include_checksum(true)?;
        if threads > 1 {
            encoder.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
        }
        Ok(ZstdSink {
            encoder,
            crc: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    fn finish(self) -> io::Result<StreamTotals> {
        let mut counting = self.encoder.finish()?;
        counting.out.flush()?;
        Ok(StreamTotals {
            crc32: self.crc.finalize(),
            uncompressed: self.len,
            compressed: counting.written,
        })
    }
}

impl<W: Write> Write for ZstdSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// Counts the compressed bytes on their way out.
pub struct Counting<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
