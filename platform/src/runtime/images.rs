//! Image names: the repository prefix that marks one installation's images and the tag an
//! application version gets. Pure naming, shared by every runtime.

/// The repository prefix of one installation's image tags, `berth/<installation>/`. Images
/// cannot carry a label Berth adds, so the name is what marks them as this installation's.
pub fn repository_prefix(installation: &str) -> String {
    // Repository path components allow [a-z0-9] with separators; the id is generated
    // lowercase alphanumeric, this only guards against a hand-edited id file.
    let installation: String = installation
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("berth/{installation}/")
}

/// Longest Docker tag.
pub const MAX_TAG: usize = 128;

/// The Docker tag for an application version, or None when it would be longer than [`MAX_TAG`].
/// Different versions always get different tags: tags allow only `[A-Za-z0-9_.-]` and may not
/// start with `.` or `-`, so other bytes (and a leading `.`/`-`) become `_` plus two hex digits
/// and `_` itself becomes `__`; nothing is cut off.
pub fn version_tag(version: &str) -> Option<String> {
    let mut tag = String::with_capacity(version.len());
    for (i, byte) in version.bytes().enumerate() {
        match byte {
            b'_' => tag.push_str("__"),
            b'.' | b'-' if i > 0 => tag.push(char::from(byte)),
            b if b.is_ascii_alphanumeric() => tag.push(char::from(b)),
            other => tag.push_str(&format!("_{other:02x}")),
        }
    }
    (!tag.is_empty() && tag.len() <= MAX_TAG).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tags_are_distinct_valid_and_bounded() {
        let long = "1".repeat(MAX_TAG);
        let cases = [
            ("1.0.0", Some("1.0.0")),
            ("1.0.0-SNAPSHOT", Some("1.0.0-SNAPSHOT")),
            ("1.0+build", Some("1.0_2bbuild")),
            ("1.0_2bbuild", Some("1.0__2bbuild")),
            ("1.0_build", Some("1.0__build")),
            ("-x", Some("_2dx")),
            (".x", Some("_2ex")),
            ("ä", Some("_c3_a4")),
            (long.as_str(), Some(long.as_str())),
            (&long[1..], Some(&long[1..])),
            ("", None),
        ];
        for (version, tag) in cases {
            assert_eq!(version_tag(version).as_deref(), tag, "{version:?}");
        }
        // 129 characters, and 127 that the escaping makes longer than 128.
        assert_eq!(version_tag(&format!("{long}1")), None);
        assert_eq!(version_tag(&format!("{}+", &long[2..])), None);
        let mut tags = std::collections::HashSet::new();
        for version in ["a_b", "a+b", "a_2bb", "a__b", "a-b", "_", "__", "+"] {
            let tag = version_tag(version).unwrap();
            assert!(tags.insert(tag.clone()), "{version:?} collides as {tag:?}");
        }
    }
}
