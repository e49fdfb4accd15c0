//! Cutting text that others wrote (container logs, client-caused log messages) to a byte
//! budget without splitting a character. (`str::floor_char_boundary` does this but is newer
//! than the workspace's MSRV.)

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_fall_between_characters() {
        // "aé€😀": 1 + 2 + 3 + 4 bytes.
        let text = "aé€😀";
        let prefixes = [
            (0, ""),
            (1, "a"),
            (2, "a"),
            (3, "aé"),
            (5, "aé"),
            (6, "aé€"),
            (9, "aé€"),
            (10, text),
            (99, text),
        ];
        for (max, want) in prefixes {
            assert_eq!(super::prefix(text, max), want, "prefix {max}");
        }
    }
}
