//! The text of an instance's logs as the logs API returns it: the newest [`MAX_LOG_TEXT`]
//! bytes at most, whatever the container printed (Docker keeps up to 30 MB of it, and the
//! answer is built in memory), cut at a line start so the first line shown is whole.

use std::collections::VecDeque;

/// Most bytes of logs one answer carries, and holds in memory while it is gathered.
pub const MAX_LOG_TEXT: usize = 4 << 20;

/// Log chunks gathered as they come, keeping only the newest `limit` bytes: a ring, so old
/// bytes leave from its front as new ones arrive, each byte copied once and never more than
/// `limit` of them held or allocated.
#[derive(Debug)]
pub struct LogText {
    bytes: VecDeque<u8>,
    limit: usize,
    /// The newest byte that had to go, once one has: whether the text kept starts a line.
    dropped: Option<u8>,
}

impl LogText {
    pub fn new(limit: usize) -> LogText {
        LogText {
            bytes: VecDeque::new(),
            limit,
            dropped: None,
        }
    }

    pub fn push(&mut self, chunk: &str) {
        let chunk = chunk.as_bytes();
        let held = self.bytes.len();
        let over = (held + chunk.len()).saturating_sub(self.limit);
        let chunk = if over == 0 {
            chunk
        } else {
            // The first `over` bytes of what is held followed by `chunk` go.
            self.dropped = Some(if over <= held {
                self.bytes[over - 1]
            } else {
                chunk[over - held - 1]
            });
            self.bytes.drain(..over.min(held));
            &chunk[over.saturating_sub(held)..]
        };
        self.reserve(chunk.len());
        self.bytes.extend(chunk);
    }

    /// Room for `more` bytes, growing as a `Vec` would (doubling) but never past the limit.
    fn reserve(&mut self, more: usize) {
        let needed = self.bytes.len() + more;
        if needed > self.bytes.capacity() {
            let target = needed.max(self.bytes.capacity() * 2).min(self.limit);
            self.bytes.reserve_exact(target - self.bytes.len());
        }
    }

    /// The text kept, from the first line that starts within it (or, when a single line is
    /// longer than the limit, from its newest part, at a character boundary).
    pub fn finish(self) -> String {
        let mut bytes = Vec::from(self.bytes);
        if let Some(before) = self.dropped {
            // The front may be in the middle of a character: skip its continuation bytes.
            let start = bytes
                .iter()
                .position(|b| b & 0b1100_0000 != 0b1000_0000)
                .unwrap_or(bytes.len());
            let previous = start.checked_sub(1).map_or(before, |i| bytes[i]);
            let from_line = if previous == b'\n' {
                start
            } else {
                bytes[start..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(bytes.len(), |n| start + n + 1)
            };
            let cut = if from_line < bytes.len() {
                from_line
            } else {
                start
            };
            bytes.drain(..cut);
        }
        // Whole characters only: every chunk was text, and cuts fall between characters.
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_lines_within_the_limit_are_kept() {
        // (chunks, limit, expected)
        let cases: &[(&[&str], usize, &str)] = &[
            (&["a\nb\n", "c\n"], 100, "a\nb\nc\n"),
            (&["line1\nline2\n", "line3\n"], 12, "line2\nline3\n"),
            (&["line1\nline2\n", "line3\n"], 11, "line3\n"),
            (&["line1\n", "line2\n", "line3\n"], 13, "line2\nline3\n"),
            (&["0123456789abcdef"], 4, "cdef"),
            (&["01", "23456789abcdef"], 4, "cdef"),
            (&["é\né\n"], 3, "é\n"),
            (&["aéé"], 3, "é"),
            (&["ab\n", "cdef"], 4, "cdef"),
            (&["abc\n", "def"], 4, "def"),
            (&["abc\n"], 0, ""),
            (&[], 10, ""),
        ];
        for (chunks, limit, expected) in cases {
            let mut text = LogText::new(*limit);
            for chunk in *chunks {
                text.push(chunk);
            }
            let got = text.finish();
            assert_eq!(got, *expected, "{chunks:?} {limit}");
            assert!(got.len() <= *limit);
        }
    }

    /// What the answer should be: the rule applied once to everything printed.
    fn reference(all: &str, limit: usize) -> &str {
        if all.len() <= limit {
            return all;
        }
        let start = (all.len() - limit..)
            .find(|&i| all.is_char_boundary(i))
            .unwrap_or(all.len());
        let from_line = if all.as_bytes()[start - 1] == b'\n' {
            start
        } else {
            all[start..].find('\n').map_or(all.len(), |n| start + n + 1)
        };
        &all[if from_line < all.len() {
            from_line
        } else {
            start
        }..]
    }

    #[test]
    fn memory_stays_within_the_limit_however_the_log_arrives() {
        // Lines of mixed widths (1- to 4-byte characters), cut into chunks of many sizes.
        let all: String = (0..3000)
            .map(|i| format!("{i} {}\n", ["a", "é", "€", "😀"][i % 4].repeat(i % 37)))
            .collect();
        for limit in [0, 1, 5, 64, 1000, 4096] {
            for step in [1, 3, 7, 500, 5000, all.len()] {
                let mut text = LogText::new(limit);
                let mut rest = all.as_str();
                while !rest.is_empty() {
                    let piece = crate::truncate::prefix(rest, step.max(4));
                    text.push(piece);
                    rest = &rest[piece.len()..];
                    assert!(text.bytes.len() <= limit, "{limit}/{step}: held");
                    assert!(text.bytes.capacity() <= limit, "{limit}/{step}: allocated");
                }
                assert_eq!(text.finish(), reference(&all, limit), "{limit}/{step}");
            }
        }
    }
}
