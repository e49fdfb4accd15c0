//! A bound on how many JSON values a manifest may hold, checked on the raw text before it is
//! parsed.
//!
//! Parsing builds a `serde_json::Value` (tens of bytes) per value and the JSON Schema validator
//! collects an error (hundreds of bytes) per bad one, so `[0,0,…]` costs hundreds of times its
//! text. Real manifests hold a few dozen values (54 at most in shared/data/real-manifests); a
//! bound far above that keeps validation within a small multiple of the text's size.

/// The most values (objects, arrays, strings, numbers, literals, counting the document) a
/// manifest may hold.
pub(crate) const MAX_VALUES: usize = 10_000;

/// The deepest nesting of arrays and objects serde_json parses (its recursion limit).
pub(crate) const MAX_DEPTH: usize = 127;

/// What a text holds too much of, at the byte offset where the limit is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Excess {
    Values(usize),
    Depth(usize),
}

impl Excess {
    pub(crate) fn offset(self) -> usize {
        match self {
            Excess::Values(offset) | Excess::Depth(offset) => offset,
        }
    }

    pub(crate) fn message(self) -> String {
        match self {
            Excess::Values(_) => format!(
                "the manifest holds more than {MAX_VALUES} JSON values, far more than a microservice manifest needs (real ones hold under a hundred): remove the excess from here on"
            ),
            Excess::Depth(_) => format!(
                "arrays and objects are nested more than {MAX_DEPTH} levels deep here (the JSON parser's recursion limit): a microservice manifest needs a few levels, flatten it"
            ),
        }
    }
}

/// Where the text first holds too many values or nests too deep, if anywhere. Works on any
/// text (valid JSON or not): it counts the document plus every object member (`:`) and array
/// element outside string literals, in one pass, never parsing.
pub(crate) fn check(text: &str) -> Option<Excess> {
    let bytes = text.as_bytes();
    // For each open container: whether it is an array, and whether it has an element yet.
    let mut open: Vec<(bool, bool)> = Vec::new();
    let mut values = 1usize;
    let mut pos = 0;
    while let Some(&byte) = bytes.get(pos) {
        let starts_value = match byte {
            b'"' => {
                let start = pos;
                pos += 1;
                while let Some(&b) = bytes.get(pos) {
                    pos += 1;
                    match b {
                        b'\\' => pos += 1,
                        b'"' => break,
                        _ => {}
                    }
                }
                // A string is an array element unless it is an object key.
                let is_element = matches!(open.last(), Some((true, false)));
                if let Some(top) = open.last_mut() {
                    top.1 = true;
                }
                if is_element {
                    values += 1;
                    if values > MAX_VALUES {
                        return Some(Excess::Values(start));
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                let counts = matches!(open.last(), Some((true, false)));
                if let Some(top) = open.last_mut() {
                    top.1 = true;
                }
                if open.len() >= MAX_DEPTH {
                    return Some(Excess::Depth(pos));
                }
                open.push((byte == b'[', false));
                counts
            }
            b']' | b'}' => {
                open.pop();
                false
            }
            // The next element of an array is a new value; a member's value follows `:`.
            b',' => {
                if let Some(top) = open.last_mut() {
                    top.1 = false;
                }
                false
            }
            b':' => {
                // Place the excess at the member's value, not at its colon.
                let value = pos
                    + 1
                    + bytes[pos + 1..]
                        .iter()
                        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                        .count();
                values += 1;
                if values > MAX_VALUES {
                    return Some(Excess::Values(value));
                }
                false
            }
            b' ' | b'\t' | b'\n' | b'\r' => false,
            // A number or literal that starts an array element.
            _ => {
                let counts = matches!(open.last(), Some((true, false)));
                if let Some(top) = open.last_mut() {
                    top.1 = true;
                }
                counts
            }
        };
        if starts_value {
            values += 1;
            if values > MAX_VALUES {
                return Some(Excess::Values(pos));
            }
        }
        pos += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str) -> usize {
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        fn walk(v: &serde_json::Value) -> usize {
            1 + match v {
                serde_json::Value::Array(a) => a.iter().map(walk).sum(),
                serde_json::Value::Object(o) => o.values().map(walk).sum(),
                _ => 0,
            }
        }
        walk(&parsed)
    }

    #[test]
    fn counts_values_like_a_parser() {
        let cases = [
            "0",
            "\"x\"",
            "[]",
            "{}",
            "[0, 1, 22, true, null, \"a,b:c]\"]",
            "{\"a\": 1, \"b\": [1, [2, 3], {\"c\": \"]\"}], \"d\\\"\": {}}",
            "[[], [[]], {}, [{}]]",
            " { \"k\" : [ \"v\" , -1.5e3 ] } ",
        ];
        for text in cases {
            // Pad with elements until exactly MAX_VALUES: not over; one more: over.
            let n = count(text);
            let padded = format!("[{text}{}]", ",0".repeat(MAX_VALUES - n - 1));
            assert_eq!(count(&padded), MAX_VALUES, "{text}");
            assert_eq!(check(&padded), None, "{text}");
            let over = format!("[{text}{}]", ",0".repeat(MAX_VALUES - n));
            assert_eq!(
                check(&over),
                Some(Excess::Values(over.len() - 2)),
                "{text}: the last element is the first over the limit"
            );
        }
    }

    #[test]
    fn member_values_count_and_keys_do_not() {
        let members: String = (0..MAX_VALUES - 1)
            .map(|i| format!("\"k{i}\":0,"))
            .collect();
        let text = format!("{{{}}}", members.trim_end_matches(','));
        assert_eq!(check(&text), None);
        let text = format!("{{{members}\"last\": \"x\"}}");
        assert_eq!(check(&text), Some(Excess::Values(text.len() - 4)));
    }

    #[test]
    fn nesting_is_bounded_where_serde_json_bounds_it() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(serde_json::from_str::<serde_json::Value>(&at_limit).is_ok());
        assert_eq!(check(&at_limit), None);
        let past = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(serde_json::from_str::<serde_json::Value>(&past).is_err());
        assert_eq!(check(&past), Some(Excess::Depth(MAX_DEPTH)));
        let objects = format!(
            "{}0{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(check(&objects), Some(Excess::Depth(5 * MAX_DEPTH)));
    }

    #[test]
    fn broken_text_is_left_to_the_parser() {
        for text in [
            "]".repeat(1 << 20),
            "\"".repeat(3),
            String::new(),
            ":".repeat(10),
        ] {
            assert_eq!(check(&text), None, "{text:.20}");
        }
    }
}
