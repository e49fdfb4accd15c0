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
}

impl<W: Write> EntrySink<W> {
    pub fn finish(self) -> io::Result<StreamTotals> {
        match self {
            EntrySink::Stored(sink) => sink.finish(),
            EntrySink::Deflated(deflater) => deflater.finish().map(|(_, totals)| totals),
        }
    }
}

impl<W: Write> Write for EntrySink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            EntrySink::Stored(sink) => sink.write(buf),
            EntrySink::Deflated(deflater) => deflater.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            EntrySink::Stored(sink) => sink.flush(),
            EntrySink::Deflated(deflater) => deflater.flush(),
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
