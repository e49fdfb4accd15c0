//! Where log lines go: stderr, in batches. Each thread appends its formatted lines to a buffer
//! of its own, and a flusher thread writes every buffer out each [`FLUSH_INTERVAL`] (a thread
//! whose buffer passes [`BATCH_BYTES`] writes it itself). A line then costs the thread that logs
//! it a copy into memory, not a write(2) nor a wake-up of a writer thread (the proxy writes one
//! access line per request). Lines stay whole; lines of different threads can come out of
//! order within one interval.

use std::cell::OnceCell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sync::MutexExt;

/// Longest a line waits in a buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// A buffer this full is written at once by its own thread.
pub const BATCH_BYTES: usize = 32 * 1024;

type Buffer = Arc<Mutex<Vec<u8>>>;

/// Every thread's buffer; the flusher drops those whose thread has exited.
static BUFFERS: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: OnceCell<Buffer> = const { OnceCell::new() };
}

fn write_out(bytes: &[u8]) {
    // Nowhere to report a failed write of the log itself.
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// The writer the log layer gets for each line (see `tracing_subscriber::fmt::MakeWriter`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchedStderr;

impl Write for BatchedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOCAL.with(|local| {
            let buffer = local.get_or_init(|| {
                let buffer = Buffer::default();
                BUFFERS.locked().push(Arc::clone(&buffer));
                buffer
            });
            let mut buffer = buffer.locked();
            buffer.extend_from_slice(bytes);
            if buffer.len() >= BATCH_BYTES {
                write_out(&buffer);
                buffer.clear();
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes out every buffer, and forgets the buffers of threads that have exited.
pub fn flush_all() {
    let mut buffers = BUFFERS.locked();
    for buffer in buffers.iter() {
        let mut buffer = buffer.locked();
        if !buffer.is_empty() {
            write_out(&buffer);
            buffer.clear();
        }
    }
    // Only this list holds the buffer of a thread that has exited (its thread-local is gone).
    buffers.retain(|buffer| Arc::strong_count(buffer) > 1);
}

/// Runs the flusher thread; dropping it writes out what is buffered and stops the thread.
#[derive(Debug)]
pub struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start() -> Flusher {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("berth-log".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut done = stopped.locked();
                while !*done {
                    done = wake
                        .wait_timeout(done, FLUSH_INTERVAL)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    flush_all();
                }
            })
            .ok();
        Flusher { stop, thread }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        *self.stop.0.locked() = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        flush_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_of_exited_threads_are_written_and_forgotten() {
        let before = BUFFERS.locked().len();
        std::thread::spawn(move || {
            // Registers the thread's buffer; empty, so the test prints nothing.
            assert_eq!(BatchedStderr.write(b"").unwrap(), 0);
            assert_eq!(BUFFERS.locked().len(), before + 1);
        })
        .join()
        .unwrap();
        flush_all();
        assert!(BUFFERS.locked().len() <= before);
    }
}
