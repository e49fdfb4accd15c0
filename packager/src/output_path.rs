//! Checks on `pack`'s output path, made before any input is read: a directory, or a path that
//! is one of the inputs, would otherwise be found out only after compressing everything, or
//! not at all (the rename into place silently replaces the input with the zip).

use std::fs::Metadata;
use std::io;
use std::path::Path;

/// Why `path` cannot take the package, or `None` when it can. `inputs` are the files read.
pub fn refusal(path: &Path, inputs: &[(&str, &Path)]) -> Option<String> {
    let output = std::fs::metadata(path);
    if output.as_ref().is_ok_and(Metadata::is_dir) {
        return Some(
            "is a directory; name the zip file itself, e.g. DIR/NAME-VERSION.zip".to_owned(),
        );
    }
    if ends_with_separator(path) {
        return Some("names a directory; name the zip file itself".to_owned());
    }
    // Nothing there yet (or unreadable): the rename will say what is wrong, if anything.
    let output = output.ok()?;
    inputs.iter().find_map(|(flag, input)| {
        same_file(path, &output, input)
            .unwrap_or(false)
            .then(|| format!("is the {flag} input; writing the package there would destroy it"))
    })
}

fn ends_with_separator(path: &Path) -> bool {
    let text = path.as_os_str().to_string_lossy();
    text.ends_with(std::path::MAIN_SEPARATOR) || text.ends_with('/')
}

/// Same device and inode: catches other spellings, symlinks and hard links alike.
#[cfg(unix)]
fn same_file(_path: &Path, output: &Metadata, input: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let input = std::fs::metadata(input)?;
    Ok(output.dev() == input.dev() && output.ino() == input.ino())
}

#[cfg(not(unix))]
fn same_file(path: &Path, _output: &Metadata, input: &Path) -> io::Result<bool> {
    Ok(std::fs::canonicalize(path)? == std::fs::canonicalize(input)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_inputs_are_refused_other_paths_taken() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image.tar");
        std::fs::write(&image, "x").unwrap();
        std::fs::write(dir.path().join("other.zip"), "x").unwrap();
        std::fs::hard_link(&image, dir.path().join("link.tar")).unwrap();
        let inputs = [("--image", image.as_path())];
        let cases = [
            ("new.zip", None),
            ("other.zip", None),
            ("missing/", Some("names a directory")),
            (".", Some("is a directory")),
            ("image.tar", Some("is the --image input")),
            ("./image.tar", Some("is the --image input")),
            ("link.tar", Some("is the --image input")),
        ];
        for (output, expected) in cases {
            let got = refusal(&dir.path().join(output), &inputs);
            match (got.as_deref(), expected) {
                (None, None) => {}
                (Some(reason), Some(expected)) => {
                    assert!(reason.contains(expected), "{output}: {reason}")
                }
                (got, _) => panic!("{output}: {got:?}"),
            }
        }
    }
}
