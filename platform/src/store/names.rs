//! The rule every stored name shares (user, group, option category and key, …): no control
//! characters. NUL, 0x01 or DEL would be stored and then break the response that names them
//! (a `Location` header cannot carry them), so they are refused before anything is written.

/// Err names the first control character (C0, DEL or C1) of `text` and where it is.
pub fn check_printable(text: &str) -> Result<(), String> {
    match text.chars().enumerate().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(format!(
            "must not contain control characters (found U+{:04X} at position {})",
            u32::from(c),
            at + 1
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_and_located() {
        let cases = [
            ("jane", None),
            ("zoë-ünïcode", None),
            ("a\0b", Some("U+0000 at position 2")),
            ("\u{1}x", Some("U+0001 at position 1")),
            ("x\u{7f}", Some("U+007F at position 2")),
            ("x\u{85}", Some("U+0085 at position 2")),
            ("tab\there", Some("U+0009 at position 4")),
        ];
        for (text, expected) in cases {
            let got = check_printable(text).err();
            match expected {
                None => assert_eq!(got, None, "{text:?}"),
                Some(part) => assert!(
                    got.as_deref().is_some_and(|m| m.contains(part)),
                    "{text:?}: {got:?}"
                ),
            }
        }
    }
}
