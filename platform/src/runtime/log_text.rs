//! The text of an instance's logs as the logs API returns it: the newest [`MAX_LOG_TEXT`]
//! bytes at most, whatever the container printed (Docker keeps up to 30 MB of it, and the
//! answer is built in memory), cut at a line start so the first line shown is whole.

/// Most bytes of logs one answer carries.
pub const MAX_LOG_TEXT: usize = 4 << 20;

/// Log chunks gathered as they come, keeping only the newest `limit` bytes.
#[derive(Debug)]
pub struct LogText {
    text: String,
    limit: usize,
}

impl LogText {
    pub fn new(limit: usize) -> LogText {
        LogText {
            text: String::new(),
            limit,
        }
    }

    pub fn push(&mut self, chunk: &str) {
        self.text.push_str(chunk);
        // Trimmed only once twice the limit is held, so each byte is moved a bounded number
        // of times.
        if self.text.len() > self.limit.saturating_mul(2) {
            self.keep_newest();
        }
    }

    pub fn finish(mut self) -> String {
        if self.text.len() > self.limit {
            self.keep_newest();
        }
        self.text
    }

    /// Drops all but the newest `limit` bytes, from the start of a line.
    fn keep_newest(&mut self) {
        let start = crate::truncate::boundary_from(&self.text, self.text.len() - self.limit);
        let from_line = if start == 0 || self.text.as_bytes()[start - 1] == b'\n' {
            start
        } else {
            self.text[start..]
                .find('\n')
                .map_or(self.text.len(), |n| start + n + 1)
        };
        // A single line longer than the limit is kept from its newest part rather than lost.
        let cut = if from_line < self.text.len() {
            from_line
        } else {
            start
        };
        self.text.drain(..cut);
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
            (&["é\né\n"], 3, "é\n"),
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

    #[test]
    fn memory_stays_within_twice_the_limit_however_much_arrives() {
        let mut text = LogText::new(1000);
        for i in 0..10_000 {
            text.push(&format!("line {i}\n"));
            assert!(text.text.len() <= 2000 + 16);
        }
        assert!(text.finish().ends_with("line 9999\n"));
    }
}
