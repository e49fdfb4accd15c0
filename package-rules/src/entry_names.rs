//! Which entry names a package zip and its `image.tar` may hold. Extractors clean names
//! (`./a`, `a//b`, `x/../a` and `/a` all become `a`) and let a later entry overwrite an earlier
//! one, so a name that is not already clean, or that lands on another entry after cleaning, would
//! let an archive show one file to Berth and another to Docker or `unzip`. Both are refused.

use std::collections::HashSet;

/// More entries than any image needs (`docker save` writes about three per layer, at most 127
/// layers); bounds the names kept in memory.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest accepted entry name.
pub const MAX_NAME: usize = 4096;
/// Most components in one name: `docker save` and OCI layouts nest three deep
/// (`blobs/sha256/<digest>`), a package's zip one. Each proper prefix is kept (see
/// [`Names::admit`]), so depth times length bounds what one name costs.
pub const MAX_DEPTH: usize = 16;
/// Most bytes of names (with their prefixes) one archive may make [`Names`] keep: 10,000 names
/// of 4 KiB 16 deep would otherwise be 640 MB, from a package of a few hundred KB (names
/// compress well).
pub const MAX_NAME_BYTES: usize = 4 * 1024 * 1024;

/// `name` when it is already a clean relative path: components separated by single `/`, none
/// empty, `.` or `..`, at most [`MAX_DEPTH`] of them, no leading `/`, no `\`, `:` or NUL (`C:x`
/// is a drive on Windows, `a:b` a stream on NTFS). A directory's one trailing `/` is removed.
pub fn clean(name: &str, is_dir: bool) -> Option<&str> {
    let name = if is_dir {
        name.strip_suffix('/').unwrap_or(name)
    } else {
        name
    };
    let clean = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.contains(['\\', ':', '\0'])
        && name.split('/').count() <= MAX_DEPTH
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    clean.then_some(name)
}

/// What kind of entry a name belongs to, as far as collisions are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    /// Files and links: nothing can be inside them.
    Leaf,
}

/// Collects an archive's names in order and refuses one that is unclean, repeats an earlier one
/// (compared with `fold`, e.g. case-insensitively for zips that are unpacked on any file system),
/// or would be written through an earlier file or link (`d` a symlink, then `d/manifest.json`).
pub struct Names {
    fold: fn(&str) -> String,
    seen: HashSet<String>,
    leaves: HashSet<String>,
    /// Every proper prefix of a seen name: entries that must be directories.
    parents: HashSet<String>,
    /// Bytes of the names and prefixes kept, at most [`MAX_NAME_BYTES`].
    kept: usize,
}

impl Names {
    /// Names compared exactly (tar archives, unpacked by Docker on Linux).
    pub fn exact() -> Names {
        Names::with_fold(str::to_owned)
    }

    /// Names compared ignoring ASCII case (zips, unpacked anywhere).
    pub fn ignoring_case() -> Names {
        Names::with_fold(str::to_ascii_lowercase)
    }

    fn with_fold(fold: fn(&str) -> String) -> Names {
        Names {
            fold,
            seen: HashSet::new(),
            leaves: HashSet::new(),
            parents: HashSet::new(),
            kept: 0,
        }
    }

    /// Admits `raw` as the next entry and returns its clean name, or why it is refused.
    pub fn admit<'a>(&mut self, raw: &'a str, kind: Kind) -> Result<&'a str, String> {
        let name = clean(raw, kind == Kind::Directory).ok_or_else(|| {
            format!(
                "entry {raw:?} is not a clean relative name (no leading '/', '.', '..', '//', '\\', ':' or NUL, at most {MAX_NAME} bytes and {MAX_DEPTH} components)"
            )
        })?;
        if self.seen.len() >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let key = (self.fold)(name);
        if self.seen.contains(&key) {
            return Err(format!(
                "entry {raw:?} appears more than once (a duplicate)"
            ));
        }
        let mut prefix = String::new();
        for part in key.split('/') {
            if !prefix.is_empty() {
                if self.leaves.contains(&prefix) {
                    return Err(format!(
                        "entry {raw:?} is inside {prefix:?}, which is not a directory"
                    ));
                }
                prefix.push('/');
            }
            prefix.push_str(part);
        }
        if kind == Kind::Leaf && self.parents.contains(&key) {
            return Err(format!(
                "entry {raw:?} is not a directory, but earlier entries are inside it"
            ));
        }
        // Counted before anything is kept: every prefix at most, so the budget holds whatever
        // is new.
        let cost = key.len() * key.split('/').count();
        if self.kept.saturating_add(cost) > MAX_NAME_BYTES {
            return Err(format!(
                "the entries' names take more than {MAX_NAME_BYTES} bytes together (with their directories)"
            ));
        }
        self.kept += cost;
        let mut end = 0;
        while let Some(slash) = key[end..].find('/') {
            end += slash;
            self.parents.insert(key[..end].to_owned());
            end += 1;
        }
        if kind == Kind::Leaf {
            self.leaves.insert(key.clone());
        }
        self.seen.insert(key);
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_relative_names_are_clean() {
        let cases = [
            ("manifest.json", false, Some("manifest.json")),
            ("blobs/sha256/ab", false, Some("blobs/sha256/ab")),
            ("blobs/", true, Some("blobs")),
            ("blobs/", false, None),
            ("./manifest.json", false, None),
            ("/manifest.json", false, None),
            ("x/../manifest.json", false, None),
            ("a//b", false, None),
            ("a/./b", false, None),
            ("..", false, None),
            (".", true, None),
            ("./", true, None),
            ("a\\b", false, None),
            ("a\0b", false, None),
            ("C:evil", false, None),
            ("a/b:stream", false, None),
            ("", false, None),
            ("a//", true, None),
            (
                &"a/".repeat(MAX_DEPTH)[..2 * MAX_DEPTH - 1],
                false,
                Some(&"a/".repeat(MAX_DEPTH)[..2 * MAX_DEPTH - 1]),
            ),
            (
                &"a/".repeat(MAX_DEPTH + 1)[..2 * MAX_DEPTH + 1],
                false,
                None,
            ),
        ];
        for (name, is_dir, expected) in cases {
            assert_eq!(clean(name, is_dir), expected, "{name:?} dir={is_dir}");
        }
    }

    #[test]
    fn names_that_meet_after_cleaning_or_through_a_leaf_are_refused() {
        use Kind::{Directory as D, Leaf as L};
        // (names in order, compare ignoring case, index of the first refused entry)
        type Case<'a> = (&'a [(&'a str, Kind)], bool, Option<usize>);
        let cases: &[Case] = &[
            (
                &[("blobs/", D), ("blobs/sha256/", D), ("blobs/sha256/a", L)],
                false,
                None,
            ),
            (
                &[("manifest.json", L), ("manifest.json", L)],
                false,
                Some(1),
            ),
            (
                &[("manifest.json", L), ("./manifest.json", L)],
                false,
                Some(1),
            ),
            (&[("Manifest.json", L), ("manifest.json", L)], false, None),
            (&[("image.tar", L), ("IMAGE.TAR", L)], true, Some(1)),
            (&[("a/", D), ("a", L)], false, Some(1)),
            (&[("a/b", L), ("a", L)], false, Some(1)),
            (&[("d", L), ("d/manifest.json", L)], false, Some(1)),
            (&[("d", L), ("d/x/manifest.json", L)], false, Some(1)),
            (&[("a/b", L), ("a/", D)], false, None),
            (&[("ab", L), ("a/b", L)], false, None),
        ];
        for (entries, ignore_case, refused) in cases {
            let mut names = if *ignore_case {
                Names::ignoring_case()
            } else {
                Names::exact()
            };
            let first_refused = entries
                .iter()
                .position(|(name, kind)| names.admit(name, *kind).is_err());
            assert_eq!(first_refused, *refused, "{entries:?}");
        }
    }

    /// A few hundred KB of zip can hold 10,000 long, deep names; what they make `Names` keep
    /// is bounded, and the refusal says why.
    #[test]
    fn long_deep_names_stop_at_the_byte_budget() {
        let mut names = Names::exact();
        let component = "a".repeat(MAX_NAME / MAX_DEPTH - 1);
        let mut refused = None;
        for i in 0..MAX_ENTRIES {
            let name = format!(
                "d{i:05}/{}",
                vec![component.as_str(); MAX_DEPTH - 1].join("/")
            );
            assert!(name.len() <= MAX_NAME);
            if let Err(why) = names.admit(&name, Kind::Leaf) {
                refused = Some((i, why));
                break;
            }
        }
        let (at, why) = refused.expect("refused before 10,000 names");
        assert!(why.contains("more than"), "{why}");
        assert!(names.kept <= MAX_NAME_BYTES);
        // Ordinary images are nowhere near it: `docker save` of 127 layers.
        assert!(at > 60, "{at}");
        let mut names = Names::exact();
        for layer in 0..127 {
            let digest = format!("{layer:064x}");
            names.admit(&format!("{digest}/"), Kind::Directory).unwrap();
            names
                .admit(&format!("{digest}/layer.tar"), Kind::Leaf)
                .unwrap();
            names
                .admit(&format!("blobs/sha256/{digest}"), Kind::Leaf)
                .unwrap();
        }
    }
}
