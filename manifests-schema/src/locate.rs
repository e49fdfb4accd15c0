//! Maps JSON Pointers to 1-based line/column positions of their values in the source text.
//!
//! serde_json's `Value` forgets positions, so the (already syntax-checked) text is walked once
//! for all the pointers to locate, entering only values on their paths and skipping the rest.
//! Nothing is indexed up front: an index of every value's pointer costs key length × array
//! length (a 1 MiB manifest took gigabytes), while the walk costs the text's length times the
//! few pointers that share a container (only reported diagnostics are located, see `findings`). Positions are those of the VALUE (the `"` of a
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
    #[cfg(test)]
    pub(crate) fn position(&self, pointer: &str) -> (usize, usize) {
        self.positions(&[pointer])[0]
    }

    /// Positions of the values at `pointers` (each, or its nearest ancestor present in the
    /// text), found in one walk of the text whatever their number.
    pub(crate) fn positions(&self, pointers: &[&str]) -> Vec<(usize, usize)> {
        let offsets = if self.json {
            value_offsets(self.text.as_bytes(), pointers)
        } else {
            vec![0; pointers.len()]
        };
        offsets
            .into_iter()
            .map(|offset| self.offset_position(offset))
            .collect()
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

/// One reference token of a pointer: the key it names, and the index if it is one (RFC 6901:
/// decimal digits, no leading zero).
struct Token {
    key: String,
    index: Option<usize>,
}

impl Token {
    fn parse(raw: &str) -> Token {
        let is_index = !raw.is_empty()
            && raw.bytes().all(|b| b.is_ascii_digit())
            && (raw.len() == 1 || !raw.starts_with('0'));
        Token {
            index: is_index.then(|| raw.parse().ok()).flatten(),
            key: raw.replace("~1", "/").replace("~0", "~"),
        }
    }
}

/// Byte offsets of the values at `pointers` in valid JSON `text` (each, or its deepest
/// ancestor present). One pass for all of them: a value is entered only if some pointer goes
/// through it, every other value is skipped, and nothing is recorded but the answers.
fn value_offsets(text: &[u8], pointers: &[&str]) -> Vec<usize> {
    let tokens: Vec<Vec<Token>> = pointers
        .iter()
        .map(|pointer| pointer.split('/').skip(1).map(Token::parse).collect())
        .collect();
    let root = skip_whitespace(text, 0);
    let mut found = vec![root; pointers.len()];
    let all: Vec<usize> = (0..pointers.len()).collect();
    descend(text, root, &tokens, 0, &all, &mut found);
    found
}

/// The value at `pos` is reached by the first `depth` tokens of the pointers in `active`:
/// records it for them and follows those with more tokens into its children. Duplicate keys
/// are all followed, so the last one wins, as in serde_json. Recursion is bounded by the
/// nesting serde_json accepted (127).
fn descend(
    text: &[u8],
    pos: usize,
    tokens: &[Vec<Token>],
    depth: usize,
    active: &[usize],
    found: &mut [usize],
) {
    for &i in active {
        found[i] = pos;
    }
    let deeper: Vec<usize> = active
        .iter()
        .copied()
        .filter(|&i| tokens[i].len() > depth)
        .collect();
    if deeper.is_empty() {
        return;
    }
    let is_object = match text.get(pos) {
        Some(b'{') => true,
        Some(b'[') => false,
        _ => return,
    };
    let mut cursor = pos + 1;
    let mut index = 0usize;
    loop {
        cursor = skip_whitespace(text, cursor);
        match text.get(cursor) {
            None | Some(b'}' | b']') => return,
            Some(b',') => {
                cursor += 1;
                continue;
            }
            Some(_) => {}
        }
        let matching: Vec<usize> = if is_object {
            let key_end = skip_string(text, cursor);
            let key = decode_key(&text[cursor..key_end]);
            cursor = skip_whitespace(text, key_end);
            if text.get(cursor) == Some(&b':') {
                cursor += 1;
            }
            cursor = skip_whitespace(text, cursor);
            deeper
                .iter()
                .copied()
                .filter(|&i| key.as_deref() == Some(tokens[i][depth].key.as_str()))
                .collect()
        } else {
            index += 1;
            deeper
                .iter()
                .copied()
                .filter(|&i| tokens[i][depth].index == Some(index - 1))
                .collect()
        };
        if !matching.is_empty() {
            descend(text, cursor, tokens, depth + 1, &matching, found);
        }
        cursor = skip_value(text, cursor);
    }
}

/// The decoded text of a key's string literal (quotes included); `None` if it cannot be
/// decoded (never for text serde_json parsed).
fn decode_key(literal: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let raw = literal.get(1..literal.len().saturating_sub(1))?;
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw)
            .ok()
            .map(std::borrow::Cow::Borrowed);
    }
    // Escapes are rare in keys: decode only these.
    let literal = std::str::from_utf8(literal).ok()?;
    serde_json::from_str::<String>(literal)
        .ok()
        .map(std::borrow::Cow::Owned)
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
    fn walks_escapes_duplicates_and_odd_tokens() {
        let text = "{\"a\": 1, \"\\u0062\": [0, {\"c\": 2}], \"a\": [3, 4], \"\\\"q\": \"}\"}";
        let map = SourceMap::new(text);
        let cases = [
            // Duplicate keys: the last one counts, as in serde_json.
            ("/a", (1, 40)),
            ("/a/1", (1, 44)),
            // A key written with an escape matches its decoded form.
            ("/b", (1, 20)),
            ("/b/1/c", (1, 30)),
            ("/\"q", (1, 55)),
            // Not an index (leading zero, sign, too large): the array itself.
            ("/a/01", (1, 40)),
            ("/a/+1", (1, 40)),
            ("/a/2", (1, 40)),
            ("/a/99999999999999999999999", (1, 40)),
            // Into a scalar: the scalar.
            ("/b/1/c/d", (1, 30)),
            ("/b/0/x", (1, 21)),
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
