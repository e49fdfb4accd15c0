//! A bound on what a tar reader may read while it looks for the next entry. The `tar` crate reads
//! GNU long names and links and PAX extension records whole into memory, whatever size their
//! headers claim, before it returns the entry they describe: a megabyte of deflated zeros becomes
//! a gigabyte-long "name". Reading through [`Budgeted`], that search gets at most a given number of
//! bytes ([`Budget::within`]); an entry's own data, read after, is not counted.
//!
//! The only assumption about the tar reader: between two entries it reads nothing but headers,
//! their extensions and padding, which holds when the caller reads each entry to its end before
//! asking for the next (otherwise the skipped rest of the entry counts too).

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// What an entry's headers may take, extensions included: real names are at most 4 KiB (the
/// packager's bound, and Linux's `PATH_MAX`), a PAX record set a few hundred bytes.
pub const ENTRY_HEADERS_LIMIT: u64 = 64 * 1024;

/// Shared between a [`Budgeted`] reader and the code that drives the tar reader over it.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Bytes left while a search is under way; `None` while an entry's data is read.
    left: Rc<Cell<Option<u64>>>,
}

impl Budget {
    pub fn new() -> Budget {
        Budget::default()
    }

    /// `inner`, reading within this budget.
    pub fn reader<R: Read>(&self, inner: R) -> Budgeted<R> {
        Budgeted {
            inner,
            budget: self.clone(),
        }
    }

    /// Runs `search` (the tar reader's step to its next entry) with at most `limit` bytes to read;
    /// a read beyond them fails with [`io::ErrorKind::InvalidData`].
    pub fn within<T>(&self, limit: u64, search: impl FnOnce() -> T) -> T {
        self.left.set(Some(limit));
        let found = search();
        self.left.set(None);
        found
    }
}

/// A reader whose reads count against a [`Budget`] while one is set.
#[derive(Debug)]
pub struct Budgeted<R> {
    inner: R,
    budget: Budget,
}

impl<R> Budgeted<R> {
    pub fn into_inner(self) -> R {
        self.inner
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.budget.left.get() else {
            return self.inner.read(buf);
        };
        if left == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "an entry's headers (long names, PAX extensions) take more than {} KiB",
                    ENTRY_HEADERS_LIMIT / 1024
                ),
            ));
        }
        let room = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let read = self.inner.read(&mut buf[..room])?;
        self.budget.left.set(Some(left - read as u64));
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_count_only_within_a_search() {
        let budget = Budget::new();
        let mut reader = budget.reader(io::repeat(7).take(1 << 20));
        let mut buf = vec![0; 100];
        // Unbounded outside a search.
        for _ in 0..20 {
            reader.read_exact(&mut buf).unwrap();
        }
        // Within one: exactly the limit, then an error naming what was too large.
        let within = budget.within(250, || {
            let mut got = Vec::new();
            let result = reader.read_to_end(&mut got);
            (got.len(), result)
        });
        assert_eq!(within.0, 250);
        let error = within.1.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("64 KiB"), "{error}");
        // The next search starts afresh; after it, reads are free again.
        budget.within(100, || reader.read_exact(&mut buf)).unwrap();
        reader.read_exact(&mut buf).unwrap();
    }
}
