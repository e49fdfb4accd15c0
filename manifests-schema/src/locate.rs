//! Maps JSON Pointers to 1-based line/column positions of their values in the source text.
//!
//! serde_json's `Value` forgets positions, so this walks the (already syntax-checked) text once
//! and records where every value starts. Positions are those of the VALUE (the `"` of a string,
//! the `{` of an object), never of the key; columns count characters, a tab counts as one.

use std::collections::HashMap;

/// Line starts and value offsets of one source text.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    value_offsets: HashMap<String, usize>,
}

impl<'a> SourceMap<'a> {
    /// Indexes lines only: for texts that are not valid JSON.
    pub(crate) fn lines_only(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceMap {
            text,
            line_starts,
            value_offsets: HashMap::new(),
        }
    }

    /// Indexes lines and the start of every value. `text` must be valid JSON.
    pub(crate) fn new(text: &'a str) -> Self {
        let mut map = Self::lines_only(text);
        let mut scanner = Scanner {
            text,
            pos: 0,
            out: &mut map.value_offsets,
        };
        scanner.value(&mut String::new());
        map
    }

    /// Position of the value at `pointer`, or of its nearest ancestor present in the text.
    pub(crate) fn position(&self, pointer: &str) -> (usize, usize) {
        let mut pointer = pointer;
        loop {
            if let Some(&offset) = self.value_offsets.get(pointer) {
                return self.offset_position(offset);
            }
            match pointer.rfind('/') {
                Some(slash) => pointer = &pointer[..slash],
                None => return self.offset_position(0),
            }
        }
    }

    /// Converts a 1-based line and 1-based byte column (serde_json's convention) to a 1-based
    /// character column on the same line.
    pub(crate) fn line_byte_column(&self, line: usize, byte_column: usize) -> (usize, usize) {
        let line = line.clamp(1, self.line_starts.len());
        let start = self.line_starts[line - 1];
        let offset = (start + byte_column.saturating_sub(1)).min(self.text.len());
        self.offset_position(offset)
    }

    fn offset_position(&self, offset: usize) -> (usize, usize) {
        let line_index = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1)
            - 1;
        let start = self.line_starts[line_index];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |prefix| prefix.chars().count())
            + 1;
        (line_index + 1, column)
    }
}

/// Escapes one reference token of a JSON Pointer (RFC 6901).
pub(crate) fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

struct Scanner<'t, 'm> {
    text: &'t str,
    pos: usize,
    out: &'m mut HashMap<String, usize>,
}

impl Scanner<'_, '_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Records the value at `pointer` and moves past it.
    fn value(&mut self, pointer: &mut String) {
        self.skip_whitespace();
        // Duplicate keys: serde_json keeps the last one, and so does this insert.
        self.out.insert(pointer.clone(), self.pos);
        match self.peek() {
            Some(b'{') => self.object(pointer),
            Some(b'[') => self.array(pointer),
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
            }
            None => {}
        }
    }

    fn object(&mut self, pointer: &mut String) {
        self.pos += 1;
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => {}
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                Some(_) => {
                    self.pos += 1;
                    return;
                }
                None => return,
            }
            let key = self.string();
            self.skip_whitespace();
            if self.peek() == Some(b':') {
                self.pos += 1;
            }
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&escape_token(&key));
            self.value(pointer);
            pointer.truncate(len);
        }
    }

    fn array(&mut self, pointer: &mut String) {
        self.pos += 1;
        let mut index = 0usize;
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return;
                }
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                None => return,
                Some(_) => {}
            }
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&index.to_string());
            self.value(pointer);
            pointer.truncate(len);
            index += 1;
        }
    }

    /// Moves past a string literal and returns its decoded content.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while let Some(byte) = self.peek() {
            self.pos += 1;
            match byte {
                b'\\' => self.pos += 1,
                b'"' => break,
                _ => {}
            }
        }
        let literal = self
            .text
            .get(start..self.pos.min(self.text.len()))
            .unwrap_or_default();
        serde_json::from_str(literal).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_of_nested_pointers() {
        let text = "{\n  \"a\": 1,\n\t\"b\": {\"c\": [true, \"x\"]},\n  \"d/e~\": null\n}";
        let map = SourceMap::new(text);
        let cases = [
            ("", (1, 1)),
            ("/a", (2, 8)),
            ("/b", (3, 7)),
            ("/b/c", (3, 13)),
            ("/b/c/0", (3, 14)),
            ("/b/c/1", (3, 20)),
            ("/d~1e~0", (4, 11)),
            ("/b/missing", (3, 7)),
            ("/nothing/at/all", (1, 1)),
        ];
        for (pointer, expected) in cases {
            assert_eq!(map.position(pointer), expected, "pointer {pointer:?}");
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "{\"ä€\": \"é\", \"k\": 2}";
        let map = SourceMap::new(text);
        assert_eq!(map.position("/k"), (1, 18));
        assert_eq!(map.line_byte_column(1, 22), (1, 18));
    }
}
