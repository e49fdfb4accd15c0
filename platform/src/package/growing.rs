//! A package file that is still arriving: the upload appends to it and publishes how far it
//! got ([`Arriving`]); a reader on a blocking thread ([`GrowingReader`]) reads up to there and
//! waits for more. Its waiting is bounded by a [`Pace`] over the whole read, because the reader
//! may hold the upload lock: a sender that trickles cannot hold it for longer than a sender at
//! the pace's rate would; the reader then gives up ([`Arrival::stalled`]) and the upload is taken
//! whole once received.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::MutexExt;

/// How an arrival ended, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Complete,
    /// The body broke off, was refused or its sender went away.
    Failed,
}

#[derive(Debug)]
struct State {
    written: u64,
    end: End,
}

/// What the reader and the saga see of an upload in progress.
#[derive(Debug)]
pub struct Arrival {
    state: Mutex<State>,
    more: Condvar,
    stalled: AtomicBool,
    verified: AtomicBool,
    /// Wakes async waiters for the end ([`Arrival::finished`]).
    ended: tokio::sync::Notify,
}

impl Arrival {
    /// Whether a reader waited longer than its pace allows.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    /// Whether the complete package's central directory was found to describe what was read.
    pub fn verified(&self) -> bool {
        self.verified.load(Ordering::Acquire)
    }

    pub(super) fn mark_verified(&self) {
        self.verified.store(true, Ordering::Release);
    }

    /// Waits for the arrival to end: true when complete, false when it broke off.
    pub async fn finished(&self) -> bool {
        loop {
            let notified = self.ended.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so an end published in between still wakes.
            notified.as_mut().enable();
            match self.lock().end {
                End::Complete => return true,
                End::Failed => return false,
                End::Open => {}
            }
            notified.await;
        }
    }

    /// Whether the body broke off (or was refused).
    pub fn failed(&self) -> bool {
        self.lock().end == End::Failed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it cannot leave `State` half-changed: both fields are plain.
        self.state.locked()
    }

    fn publish(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.more.notify_all();
    }
}

/// The upload's side: says how many bytes are on disk and how it ended. Dropped before
/// [`Arriving::complete`] (an error, or the request went away), the arrival has failed.
#[derive(Debug)]
pub struct Arriving {
    arrival: Arc<Arrival>,
    completed: bool,
}

impl Arriving {
    pub fn new() -> (Arriving, Arc<Arrival>) {
        let arrival = Arc::new(Arrival {
            state: Mutex::new(State {
                written: 0,
                end: End::Open,
            }),
            more: Condvar::new(),
            stalled: AtomicBool::new(false),
            verified: AtomicBool::new(false),
            ended: tokio::sync::Notify::new(),
        });
        (
            Arriving {
                arrival: Arc::clone(&arrival),
                completed: false,
            },
            arrival,
        )
    }

    /// `written` bytes are in the file (its writes have returned).
    pub fn advance(&self, written: u64) {
        self.arrival.publish(|s| s.written = written);
    }

    pub fn complete(mut self) {
        self.completed = true;
        self.arrival.publish(|s| s.end = End::Complete);
        self.arrival.ended.notify_waiters();
    }
}

impl Drop for Arriving {
    fn drop(&mut self) {
        if !self.completed {
            self.arrival.publish(|s| s.end = End::Failed);
            self.arrival.ended.notify_waiters();
        }
    }
}

/// How long a reader may wait for bytes, in all: `grace`, plus the time the bytes that arrived
/// take at `bytes_per_second`. A sender at least that fast never makes the reader give up.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub grace: Duration,
    pub bytes_per_second: u64,
}

impl Pace {
    fn allowance(&self, arrived: u64) -> Duration {
        let rate = self.bytes_per_second.max(1) as f64;
        self.grace + Duration::from_secs_f64(arrived as f64 / rate)
    }
}

/// Reads the arriving file from its start, in order, never past what was published.
pub struct GrowingReader {
    file: File,
    position: u64,
    arrival: Arc<Arrival>,
    pace: Pace,
    /// Time spent waiting for bytes so far.
    waited: Duration,
}

impl GrowingReader {
    pub fn open(path: &Path, arrival: Arc<Arrival>, pace: Pace) -> io::Result<Self> {
        Ok(GrowingReader {
            file: File::open(path)?,
            position: 0,
            arrival,
            pace,
            waited: Duration::ZERO,
        })
    }

    /// Bytes read so far: the offset of the next byte in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn arrival(&self) -> &Arc<Arrival> {
        &self.arrival
    }

    /// Waits, within the pace, until more than `position` bytes are there or the arrival
    /// ended; returns how many bytes are there and whether it is complete.
    fn wait_beyond(&mut self, position: u64) -> io::Result<(u64, bool)> {
        let mut state = self.arrival.lock();
        loop {
            match state.end {
                End::Failed => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the upload broke off",
                    ));
                }
                End::Complete => return Ok((state.written, true)),
                End::Open if state.written > position => return Ok((state.written, false)),
                End::Open => {}
            }
            let allowed = self.pace.allowance(state.written);
            if self.waited >= allowed {
                self.arrival.stalled.store(true, Ordering::Release);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the upload arrives too slowly to be loaded while it arrives",
                ));
            }
            let started = Instant::now();
            state = self
                .arrival
                .more
                .wait_timeout(state, allowed - self.waited)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            self.waited += started.elapsed();
        }
    }

    /// Waits (within the pace) until the file holds at least `length` bytes.
    pub fn wait_for(&mut self, length: u64) -> io::Result<()> {
        if length == 0 {
            return Ok(());
        }
        let mut seen = 0;
        loop {
            let (written, complete) = self.wait_beyond(seen)?;
            if written >= length {
                return Ok(());
            }
            if complete {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the package ends early",
                ));
            }
            seen = written;
        }
    }

    /// Waits (within the pace) for the whole file; returns its length.
    pub fn wait_complete(&mut self) -> io::Result<u64> {
        let mut seen = self.position;
        loop {
            let (written, complete) = self.wait_beyond(seen)?;
            if complete {
                return Ok(written);
            }
            seen = written;
        }
    }
}

impl Read for GrowingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (written, _) = self.wait_beyond(self.position)?;
        let available = written.saturating_sub(self.position);
        if available == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// `grace_ms` of waiting, however many bytes arrive.
    pub(crate) fn pace(grace_ms: u64) -> Pace {
        Pace {
            grace: Duration::from_millis(grace_ms),
            bytes_per_second: u64::MAX,
        }
    }

    #[test]
    fn the_allowance_grows_with_what_arrived() {
        let pace = Pace {
            grace: Duration::from_secs(2),
            bytes_per_second: 1 << 20,
        };
        assert_eq!(pace.allowance(0), Duration::from_secs(2));
        assert_eq!(pace.allowance(10 << 20), Duration::from_secs(12));
    }

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn reads_only_what_was_published_then_the_end() {
        let f = file_with(b"hello world");
        let (arriving, arrival) = Arriving::new();
        arriving.advance(5);
        let mut reader = GrowingReader::open(f.path(), arrival, pace(5000)).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        let writer = std::thread::spawn(move || {
            #[allow(
                clippy::disallowed_methods,
                reason = "a test thread, not a runtime worker"
            )]
            std::thread::sleep(Duration::from_millis(20));
            arriving.advance(11);
            arriving.complete();
        });
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b" world");
        assert_eq!(reader.wait_complete().unwrap(), 11);
        writer.join().unwrap();
    }

    #[test]
    fn a_broken_upload_fails_the_reader() {
        let f = file_with(b"abc");
        let (arriving, arrival) = Arriving::new();
        arriving.advance(3);
        drop(arriving);
        let mut reader = GrowingReader::open(f.path(), arrival, pace(5000)).unwrap();
        let mut buf = [0u8; 8];
        // What arrived before the break may not be read: the reader needs the whole file.
        let err = reader.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert!(reader.arrival().failed());
    }

    #[test]
    fn waiting_past_the_pace_stalls() {
        let f = file_with(b"abc");
        let (arriving, arrival) = Arriving::new();
        arriving.advance(1);
        let mut reader = GrowingReader::open(f.path(), arrival, pace(30)).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), 1);
        let err = reader.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(reader.arrival().stalled());
        drop(arriving);
    }
}
