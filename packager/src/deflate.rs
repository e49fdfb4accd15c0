//! Parallel raw-deflate compression in the style of pigz: the input is cut into fixed-size
//! chunks that worker threads compress independently into one valid deflate stream.
//!
//! Every non-final chunk ends with a sync flush (byte-aligned, no final bit), so compressed
//! chunks concatenate; the last chunk is finished. Each chunk is primed with the 32 KiB that
//! precede it, so back-references across chunk boundaries are not lost. Blocks that look
//! incompressible (near-uniform bytes and no repeated strings) are
//! emitted as stored deflate blocks, which costs a memcpy instead of a full deflate pass.
//! Output bytes depend only on the input and the level, never on thread timing.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per chunk handed to a worker.
pub const CHUNK_SIZE: usize = 1 << 20;
/// The deflate window: a chunk may refer back this far into the previous one.
const WINDOW: usize = 32 * 1024;
/// Granularity of the incompressible-data detection.
const PROBE_BLOCK: usize = 64 * 1024;
/// Below this byte entropy (bits per byte) a block is compressed without looking further.
const PROBE_ENTROPY_BITS: f64 = 7.8;
/// Largest payload of one stored deflate block.
const STORED_BLOCK_MAX: usize = 65_535;

/// What a finished deflate stream amounts to: what a zip entry header needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTotals {
    pub crc32: u32,
    pub uncompressed: u64,
    pub compressed: u64,
}

struct Job {
    data: Vec<u8>,
    /// An empty recycled buffer for the compressed bytes.
    out: Vec<u8>,
    /// The (up to) 32 KiB of input just before `data`.
    dictionary: Vec<u8>,
    last: bool,
    reply: SyncSender<io::Result<ChunkOutput>>,
}

struct ChunkOutput {
    compressed: Vec<u8>,
    /// The input buffer, handed back for reuse.
    data: Vec<u8>,
    crc32: u32,
    len: u64,
}

/// A `Write` sink that compresses everything written to it into `out` as one raw deflate
/// stream, using `threads` workers and bounded memory (a few chunks in flight).
pub struct ParallelDeflater<W: Write> {
    /// Taken by `finish`.
    out: Option<W>,
    pending: Vec<u8>,
    window: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    in_flight: VecDeque<Receiver<io::Result<ChunkOutput>>>,
    max_in_flight: usize,
    workers: Vec<JoinHandle<()>>,
    crc: crc32fast::Hasher,
    uncompressed: u64,
    compressed: u64,
    /// Buffers returned by workers. Reusing them keeps memory flat: fresh 1 MiB allocations
    /// freed on other threads let the allocator's footprint creep up with input size.
    spare: Vec<Vec<u8>>,
}

/// Capacity of every chunk buffer: a whole chunk even if deflate expands it slightly.
const BUFFER_CAPACITY: usize = CHUNK_SIZE + CHUNK_SIZE / 8;

impl<W: Write> ParallelDeflater<W> {
    /// `level` is the deflate level 1–9; `threads` is clamped to at least 1.
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, job_queue) = sync_channel::<Job>(threads);
        let job_queue = Arc::new(Mutex::new(job_queue));
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&job_queue);
                std::thread::spawn(move || worker_loop(&queue, level))
            })
            .collect();
        ParallelDeflater {
            out: Some(out),
            pending: Vec::with_capacity(BUFFER_CAPACITY),
            window: Vec::new(),
            jobs: Some(jobs),
            in_flight: VecDeque::new(),
            max_in_flight: threads * 2,
            workers,
            crc: crc32fast::Hasher::new(),
            uncompressed: 0,
            compressed: 0,
            spare: Vec::new(),
        }
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < 2 * self.max_in_flight + 2 {
            buffer.clear();
            self.spare.push(buffer);
        }
    }

    /// Compresses what is left, ends the stream and returns the output and the totals.
    pub fn finish(mut self) -> io::Result<(W, StreamTotals)> {
        self.dispatch(true)?;
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("deflater already finished"))?;
        out.flush()?;
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let totals = StreamTotals {
            crc32: self.crc.clone().finalize(),
            uncompressed: self.uncompressed,
            compressed: self.compressed,
        };
        Ok((out, totals))
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let fresh = self.take_buffer();
        let data = std::mem::replace(&mut self.pending, fresh);
        let out = self.take_buffer();
        let dictionary = std::mem::take(&mut self.window);
        self.window = tail(&dictionary, &data, WINDOW);
        let (reply, receiver) = sync_channel(1);
        let job = Job {
            data,
            out,
            dictionary,
            last,
            reply,
        };
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("deflater already finished"))?;
        jobs.send(job)
            .map_err(|_| io::Error::other("deflate worker stopped"))?;
        self.in_flight.push_back(receiver);
        while self.in_flight.len() >= self.max_in_flight {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(receiver) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let chunk = receiver
            .recv()
            .map_err(|_| io::Error::other("deflate worker stopped"))??;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("deflater already finished"))?;
        out.write_all(&chunk.compressed)?;
        self.crc.combine(&crc32fast::Hasher::new_with_initial_len(
            chunk.crc32,
            chunk.len,
        ));
        self.uncompressed += chunk.len;
        self.compressed += chunk.compressed.len() as u64;
        self.recycle(chunk.compressed);
        self.recycle(chunk.data);
        Ok(())
    }
}

impl<W: Write> Write for ParallelDeflater<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let room = CHUNK_SIZE - self.pending.len();
            let take = room.min(buf.len());
            self.pending.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.pending.len() == CHUNK_SIZE {
                self.dispatch(false)?;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Deflate output is only complete at `finish`; flushing mid-stream would add blocks.
        Ok(())
    }
}

impl<W: Write> Drop for ParallelDeflater<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.in_flight.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker_loop(queue: &Mutex<Receiver<Job>>, level: u32) {
    loop {
        let job = match queue.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(Job {
            data,
            mut out,
            dictionary,
            last,
            reply,
        }) = job
        else {
            return;
        };
        let result =
            compress_chunk(level, &dictionary, &data, last, &mut out).map(|()| ChunkOutput {
                compressed: out,
                crc32: crc32fast::hash(&data),
                len: data.len() as u64,
                data,
            });
        // The receiver is gone only when the deflater was dropped mid-stream.
        let _ = reply.send(result);
    }
}

/// The last `n` bytes of `first ++ second`.
fn tail(first: &[u8], second: &[u8], n: usize) -> Vec<u8> {
    if second.len() >= n {
        return second[second.len() - n..].to_vec();
    }
    let from_first = (n - second.len()).min(first.len());
    let mut out = Vec::with_capacity(from_first + second.len());
    out.extend_from_slice(&first[first.len() - from_first..]);
    out.extend_from_slice(second);
    out
}

/// Compresses one chunk into deflate blocks: byte-aligned at the end, final only if `last`.
/// `dictionary` is the input that precedes `data` (up to 32 KiB).
/// The blocks are appended to `out`.
pub fn compress_chunk(
    level: u32,
    dictionary: &[u8],
    data: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if data.is_empty() {
        if last {
            write_stored(out, &[], true);
        }
        return Ok(());
    }
    let runs = classify_runs(dictionary, data);
    let run_count = runs.len();
    for (index, run) in runs.into_iter().enumerate() {
        let final_run = last && index + 1 == run_count;
        let bytes = &data[run.start..run.end];
        if run.store {
            write_stored(out, bytes, final_run);
            continue;
        }
        let before = out.len();
        let preceding = tail(dictionary, &data[..run.start], WINDOW);
        deflate_run(level, &preceding, bytes, final_run, out)?;
        if out.len() - before > stored_size(bytes.len()) {
            out.truncate(before);
            write_stored(out, bytes, final_run);
        }
    }
    Ok(())
}

struct Run {
    start: usize,
    end: usize,
    store: bool,
}

/// Splits `data` into maximal runs of blocks that are all compressible or all not.
fn classify_runs(dictionary: &[u8], data: &[u8]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let end = (start + PROBE_BLOCK).min(data.len());
        let block = &data[start..end];
        let store = looks_incompressible(&tail(dictionary, &data[..start], WINDOW), block);
        match runs.last_mut() {
            Some(run) if run.store == store => run.end = end,
            _ => runs.push(Run { start, end, store }),
        }
        start = end;
    }
    runs
}

/// True when deflate would not shrink `block`: its bytes are near-uniformly distributed
/// (so Huffman coding gains nothing) and it has almost no repeated 8-byte strings, within
/// itself or with the 32 KiB before it (so LZ77 finds nothing). Far cheaper than a trial
/// deflate: one histogram pass and one hashing pass.
fn looks_incompressible(preceding: &[u8], block: &[u8]) -> bool {
    if block.len() < 4096 || byte_entropy(block) < PROBE_ENTROPY_BITS {
        return false;
    }
    let mut anchors = AnchorSet::new();
    anchors.scan(preceding, false);
    let (seen, repeated) = anchors.scan(block, true);
    repeated * REPEAT_RATIO_DENOMINATOR <= seen
}

/// Content-defined sample of 8-byte strings: a position is an anchor when the hash of the
/// 8 bytes there has its top 6 bits clear (1 in 64 positions), so a repeated substring
/// yields the same anchors wherever it occurs, at any alignment.
struct AnchorSet {
    slots: Vec<u64>,
}

const ANCHOR_SLOTS: usize = 1 << 13;
/// A block counts as compressible when over 1/50 of its anchors were seen before.
const REPEAT_RATIO_DENOMINATOR: usize = 50;

impl AnchorSet {
    fn new() -> Self {
        AnchorSet {
            slots: vec![0; ANCHOR_SLOTS],
        }
    }

    /// Inserts the anchors of `data`; returns (anchors seen, anchors already present).
    fn scan(&mut self, data: &[u8], count: bool) -> (usize, usize) {
        let (mut seen, mut repeated) = (0, 0);
        for window in data.windows(8) {
            let value = u64::from_le_bytes(window.try_into().unwrap_or([0; 8]));
            let hash = value.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if hash >> 58 != 0 {
                continue;
            }
            // Zero marks an empty slot; an all-zero string is trivially compressible anyway.
            let key = value | 1;
            let mut slot = (hash as usize >> 16) & (ANCHOR_SLOTS - 1);
            let found = loop {
                match self.slots[slot] {
                    0 => {
                        self.slots[slot] = key;
                        break false;
                    }
                    existing if existing == key => break true,
                    _ => slot = (slot + 1) & (ANCHOR_SLOTS - 1),
                }
            };
            if count {
                seen += 1;
                repeated += usize::from(found);
            }
        }
        (seen, repeated)
    }
}

/// Shannon entropy of the byte distribution, in bits per byte (0–8).
fn byte_entropy(block: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &byte in block {
        counts[byte as usize] += 1;
    }
    let total = block.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / total;
            -p * p.log2()
        })
        .sum()
}

/// Deflates `input` with `preceding` as dictionary, ending with a sync flush, or with the
/// final block when `finish`.
///
/// Every run gets a fresh compressor: a reset one keeps stale bytes in its window, and
/// match selection near the end of the input can read them, so reusing compressors across
/// chunks would make the output depend on which worker compressed what before.
fn deflate_run(
    level: u32,
    preceding: &[u8],
    input: &[u8],
    finish: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut compressor = Compress::new(Compression::new(level), false);
    if !preceding.is_empty() {
        compressor
            .set_dictionary(preceding)
            .map_err(io::Error::other)?;
    }
    let flush = if finish {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let start_in = compressor.total_in();
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(input.len() / 4 + 8192);
        }
        let consumed = (compressor.total_in() - start_in) as usize;
        let status = compressor
            .compress_vec(&input[consumed..], out, flush)
            .map_err(io::Error::other)?;
        let consumed = (compressor.total_in() - start_in) as usize;
        let done = match status {
            Status::StreamEnd => true,
            // A sync flush is complete once deflate stops filling the whole output buffer.
            Status::Ok | Status::BufError => {
                !finish && consumed == input.len() && out.len() < out.capacity()
            }
        };
        if done {
            return Ok(());
        }
    }
}

/// Size of `len` bytes as stored deflate blocks.
fn stored_size(len: usize) -> usize {
    len + 5 * len.div_ceil(STORED_BLOCK_MAX).max(1)
}

/// Appends `data` as stored deflate blocks. Assumes the stream is byte-aligned here, which
/// holds at the start and after every sync flush or stored block.
fn write_stored(out: &mut Vec<u8>, data: &[u8], last: bool) {
    let mut blocks = data.chunks(STORED_BLOCK_MAX).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[u8::from(last), 0, 0, 0xff, 0xff]);
        return;
    }
    while let Some(block) = blocks.next() {
        let final_block = last && blocks.peek().is_none();
        let len = block.len() as u16;
        out.push(u8::from(final_block));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn inflate(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Deterministic pseudo-random bytes (xorshift), incompressible for deflate.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(&seed.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn text(len: usize) -> Vec<u8> {
        let line = b"GET /service/hello/health HTTP/1.1 200 {\"status\":\"UP\"} tenant=t1234 ";
        line.iter().copied().cycle().take(len).collect()
    }

    fn compress_all(
        data: &[u8],
        level: u32,
        threads: usize,
        write_size: usize,
    ) -> (Vec<u8>, StreamTotals) {
        let mut deflater = ParallelDeflater::new(Vec::new(), level, threads);
        for piece in data.chunks(write_size.max(1)) {
            deflater.write_all(piece).unwrap();
        }
        deflater.finish().unwrap()
    }

    #[test]
    fn round_trips_mixed_data_across_chunk_boundaries() {
        let mut data = text(CHUNK_SIZE + 12_345);
        data.extend(noise(2 * CHUNK_SIZE + 777, 42));
        data.extend(text(CHUNK_SIZE / 3));
        data.extend(noise(100_000, 7));
        data.extend(vec![0u8; CHUNK_SIZE + 1]);
        let (compressed, totals) = compress_all(&data, 6, 2, 70_001);
        assert_eq!(inflate(&compressed), data);
        assert_eq!(totals.uncompressed, data.len() as u64);
        assert_eq!(totals.compressed, compressed.len() as u64);
        assert_eq!(totals.crc32, crc32fast::hash(&data));
        assert!(compressed.len() < data.len());
    }

    #[test]
    fn empty_input_is_a_valid_empty_stream() {
        let (compressed, totals) = compress_all(&[], 6, 2, 1);
        assert_eq!(inflate(&compressed), Vec::<u8>::new());
        assert_eq!(
            totals,
            StreamTotals {
                crc32: 0,
                uncompressed: 0,
                compressed: compressed.len() as u64
            }
        );
    }

    #[test]
    fn exact_multiple_of_chunk_size_round_trips() {
        let data = text(2 * CHUNK_SIZE);
        let (compressed, _) = compress_all(&data, 1, 3, CHUNK_SIZE);
        assert_eq!(inflate(&compressed), data);
    }

    /// Text-like data with varied matches, so match selection has real choices to make.
    fn word_salad(len: usize) -> Vec<u8> {
        let words: [&[u8]; 8] = [
            b"tenant ",
            b"alarm ",
            b"device ",
            b"measurement ",
            b"GET ",
            b"200 ",
            b"UP\n",
            b"inventory ",
        ];
        let choices = noise(len, 11);
        let mut out = Vec::with_capacity(len + 16);
        for choice in choices {
            if out.len() >= len {
                break;
            }
            out.extend_from_slice(words[usize::from(choice) % words.len()]);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn output_does_not_depend_on_thread_count_or_write_sizes() {
        // Regression: reused (reset) compressors made the output depend on which worker
        // had compressed which chunk before.
        let mut data = noise(CHUNK_SIZE, 3);
        data.extend(word_salad(6 * CHUNK_SIZE + 999));
        let (one, _) = compress_all(&data, 6, 1, 4096);
        for threads in [2, 3, 4] {
            let (many, _) = compress_all(&data, 6, threads, 1_000_003);
            assert!(one == many, "{threads} threads gave different bytes");
        }
        assert_eq!(inflate(&one), data);
    }

    #[test]
    fn random_data_is_stored_with_small_overhead() {
        let data = noise(3 * CHUNK_SIZE, 99);
        let (compressed, _) = compress_all(&data, 9, 2, CHUNK_SIZE);
        assert!(
            compressed.len() <= stored_size(data.len()) + 64,
            "{}",
            compressed.len()
        );
        assert_eq!(inflate(&compressed), data);
    }

    #[test]
    fn repeated_random_pattern_is_still_compressed() {
        // High byte entropy, yet deflate finds the repeats: the repeat check must not store it.
        let pattern = noise(8 * 1024, 5);
        let data: Vec<u8> = pattern
            .iter()
            .copied()
            .cycle()
            .take(2 * CHUNK_SIZE)
            .collect();
        let (compressed, _) = compress_all(&data, 6, 2, CHUNK_SIZE);
        assert!(compressed.len() < data.len() / 20, "{}", compressed.len());
        assert_eq!(inflate(&compressed), data);
    }

    #[test]
    fn stored_blocks_encode_lengths() {
        let mut out = Vec::new();
        write_stored(&mut out, &[1, 2, 3], true);
        assert_eq!(out, [1, 3, 0, 0xfc, 0xff, 1, 2, 3]);
        assert_eq!(inflate(&out), [1, 2, 3]);
    }

    #[test]
    fn entropy_separates_text_from_noise() {
        assert!(byte_entropy(&text(PROBE_BLOCK)) < 5.0);
        assert!(byte_entropy(&noise(PROBE_BLOCK, 1)) > 7.99);
        assert_eq!(byte_entropy(&[0; 100]), 0.0);
    }
}
