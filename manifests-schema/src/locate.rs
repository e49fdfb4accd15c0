//! Maps JSON Pointers to 1-based line/column positions of their values in the source text.
//!
//! serde_json's `Value` forgets positions, so a lookup walks the (already syntax-checked) text
//! along the pointer, skipping every value off the path. Nothing is indexed up front: an index
//! of every value's pointer costs key length × array length (a 1 MiB manifest took gigabytes),
//! while a walk costs at most the text's length and only reported diagnostics are looked up
//! (their number is capped, see `findings`). Positions are those of the VALUE (the `"` of a
//! string, the `{` of an object), never of the key; columns count characters, a tab counts as one.

/// Line starts of one source text, and the text to walk for value positions.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// Whether `text` is valid JSON, so values can be found in it.
    json: bool,
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
            json: false,
        }
    }

    /// Indexes lines; values are found on demand. `text` must be valid JSON.
    pub(crate) fn new(text: &'a str) -> Self {
        SourceMap {
            json: true,
            ..Self::lines_only(text)
        }
    }

    /// Position of the value at `pointer`, or of its nearest ancestor present in the text.
    pub(crate) fn position(&self, pointer: &str) -> (usize, usize) {
        let offset = if self.json {
            value_offset(self.text.as_bytes(), pointer)
        } else {
            0
        };
        self.offset_position(offset)
    }

    /// Converts a 1-based line and 1-based byte column (serde_json's convention) to a 1-based
    /// character column on the same line.
    pub(crate) fn line_byte_column(&self, line: usize, byte_column: usize) -> (usize, usize) {
        let line = line.clamp(1, self.line_starts.len());
        let start = self.line_starts[line - 1];
        let offset = (start + byte_column.saturating_sub(1)).min(self.text.len());
        self.offset_position(offset)
    }

    /// 1-based line and character column of a byte offset.
    pub(crate) fn offset_position(&self, offset: usize) -> (usize, usize) {
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

/// Byte offset of the value at `pointer` in valid JSON `text`, or of the deepest ancestor
/// present. One forward pass: every value off the path is skipped, never recorded.
fn value_offset(text: &[u8], pointer: &str) -> usize {
    let mut found = skip_whitespace(text, 0);
    if pointer.is_empty() {
        return found;
    }
    for token in pointer.split('/').skip(1) {
        let child = match text.get(found) {
            Some(b'{') => member(text, found, &unescape_token(token)),
            Some(b'[') => element(text, found, token),
            _ => None,
        };
        match child {
            Some(offset) => found = offset,
            None => break,
        }
    }
    found
}

fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Offset of the value of `key` in the object starting at `open`. With duplicate keys the last
/// one counts, as in serde_json.
fn member(text: &[u8], open: usize, key: &str) -> Option<usize> {
    let mut pos = open + 1;
    let mut found = None;
    loop {
        pos = skip_whitespace(text, pos);
        match text.get(pos) {
            Some(b'"') => {}
            Some(b',') => {
                pos += 1;
                continue;
            }
            _ => return found,
        }
        let key_end = skip_string(text, pos);
        let matches = key_matches(&text[pos..key_end], key);
        pos = skip_whitespace(text, key_end);
        if text.get(pos) == Some(&b':') {
            pos += 1;
        }
        pos = skip_whitespace(text, pos);
        if matches {
            found = Some(pos);
        }
        pos = skip_value(text, pos);
    }
}

/// Offset of element `token` (a decimal index) of the array starting at `open`.
fn element(text: &[u8], open: usize, token: &str) -> Option<usize> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: usize = token.parse().ok()?;
    let mut pos = open + 1;
    let mut index = 0usize;
    loop {
        pos = skip_whitespace(text, pos);
        match text.get(pos) {
            None | Some(b']') => return None,
            Some(b',') => {
                pos += 1;
                continue;
            }
            Some(_) => {}
        }
        if index == wanted {
            return Some(pos);
        }
        pos = skip_value(text, pos);
        index += 1;
    }
}

/// Whether the string literal `literal` (quotes included) decodes to `key`.
fn key_matches(literal: &[u8], key: &str) -> bool {
    let raw = &literal[1..literal.len().saturating_sub(1).max(1)];
    if !raw.contains(&b'\\') {
        return raw == key.as_bytes();
    }
    // Escapes are rare in keys: decode only these.
    std::str::from_utf8(literal)
        .ok()
        .and_then(|literal| serde_json::from_str::<String>(literal).ok())
        .is_some_and(|decoded| decoded == key)
}

fn skip_whitespace(text: &[u8], mut pos: usize) -> usize {
    while matches!(text.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

/// End (exclusive) of the string literal starting at `pos`.
fn skip_string(text: &[u8], mut pos: usize) -> usize {
    pos += 1;
    while let Some(&byte) = text.get(pos) {
        pos += 1;
        match byte {
            b'\\' => pos += 1,
            b'"' => break,
            _ => {}
        }
    }
    pos.min(text.len())
}

/// End (exclusive) of the value starting at `pos`; containers are skipped by counting
/// brackets, without recursion.
fn skip_value(text: &[u8], mut pos: usize) -> usize {
    let mut depth = 0usize;
    loop {
        match text.get(pos) {
            None => return pos,
            Some(b'"') => pos = skip_string(text, pos),
            Some(b'{' | b'[') => {
                depth += 1;
                pos += 1;
            }
            Some(b'}' | b']') if depth > 0 => {
                depth -= 1;
                pos += 1;
            }
            Some(b',' | b'}' | b']') if depth == 0 => return pos,
            Some(b' ' | b'\t' | b'\n' | b'\r') if depth == 0 => return pos,
            Some(_) => pos += 1,
        }
        if depth == 0 && matches!(text.get(pos.wrapping_sub(1)), Some(b'"' | b'}' | b']')) {
            return pos;
        }
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
