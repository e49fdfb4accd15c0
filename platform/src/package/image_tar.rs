//! `image.tar`, a `docker save` archive: checked in one pass, then re-written for Docker in a
//! second. Docker unpacks the archive and then reads `manifest.json` (tags from its `RepoTags`;
//! `repositories` only when there is no `manifest.json`), so what it loads is decided by names
//! and files Berth must have seen the same way: entry names are clean and unique
//! ([`entry_names`]), only files, directories and links inside the archive pass, and the archive
//! Docker gets has a `manifest.json` Berth wrote from the checked one, without tags, and no
//! `repositories` or OCI index. Nothing the tenant wrote can tag an image.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ImageInfo, PackageError};
use package_rules::entry_names::{Kind, Names};

const MANIFEST: &str = "manifest.json";
/// Entries that can name tags and are left out of what Docker gets: `repositories` (read by the
/// classic loader without `manifest.json`), and the OCI `index.json` with its `oci-layout` marker
/// (read by containerd-backed engines, whose annotations name tags).
const TAGGING_ENTRIES: [&str; 3] = ["repositories", "index.json", "oci-layout"];
/// Configs larger than this are not hashed (real ones are a few KiB).
const CONFIG_LIMIT: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn bad(message: impl std::fmt::Display) -> PackageError {
    PackageError::BadImage(message.to_string())
}

/// One entry of the archive as Berth will hand it on.
enum Checked {
    File(u64),
    Directory,
    Link { target: String, symbolic: bool },
}

/// Admits the next entry: its name, type and link target, the same way in both passes.
fn check_entry<R: Read>(
    names: &mut Names,
    entry: &tar::Entry<'_, R>,
) -> Result<(String, Checked), PackageError> {
    let raw = entry.path_bytes();
    let raw = std::str::from_utf8(&raw)
        .map_err(|_| {
            bad(format!(
                "entry {:?} is not UTF-8",
                String::from_utf8_lossy(&raw)
            ))
        })?
        .to_owned();
    let kind = entry.header().entry_type();
    let checked = match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            Checked::File(entry.header().entry_size().map_err(bad)?)
        }
        tar::EntryType::Directory => Checked::Directory,
        tar::EntryType::Symlink | tar::EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .and_then(|t| std::str::from_utf8(&t).ok().map(str::to_owned))
                .ok_or_else(|| bad(format!("link {raw:?} has no readable target")))?;
            Checked::Link {
                target,
                symbolic: kind == tar::EntryType::Symlink,
            }
        }
        other => {
            return Err(bad(format!(
                "entry {raw:?} is a {other:?}; image archives hold only files, directories and links"
            )));
        }
    };
    let name_kind = match checked {
        Checked::Directory => Kind::Directory,
        _ => Kind::Leaf,
    };
    let name = names.admit(&raw, name_kind).map_err(bad)?.to_owned();
    if let Checked::Link { target, symbolic } = &checked {
        let inside = if *symbolic {
            resolve_symlink(&name, target).is_some()
        } else {
            package_rules::entry_names::clean(target, false).is_some()
        };
        if !inside {
            return Err(bad(format!(
                "link {name:?} points outside the archive ({target:?})"
            )));
        }
    }
    Ok((name, checked))
}

/// Resolves a relative symlink target against the link's directory, staying inside the archive.
fn resolve_symlink(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.contains(['\\', '\0']) {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Checks a `docker save` archive and returns the one image it holds, with the config's digest
/// verified (so the id Docker will give the image is known before loading it).
pub fn check(reader: impl Read) -> Result<ImageInfo, PackageError> {
    let mut archive = tar::Archive::new(reader);
    let mut names = Names::exact();
    let mut manifest_text = None;
    let mut small_file_digests = HashMap::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let (name, checked) = check_entry(&mut names, &entry)?;
        let Checked::File(size) = checked else {
            continue;
        };
        if name == MANIFEST {
            let mut text = String::new();
            (&mut entry)
                .take(CONFIG_LIMIT + 1)
                .read_to_string(&mut text)
                .map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
            if text.len() as u64 > CONFIG_LIMIT {
                return Err(bad(format!("{MANIFEST} is larger than 1 MiB")));
            }
            manifest_text = Some(text);
        } else if size <= CONFIG_LIMIT {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(bad)?;
            small_file_digests.insert(name, hex::encode(Sha256::digest(&bytes)));
        }
    }
    let text = manifest_text.ok_or_else(|| bad(format!("{MANIFEST} is missing")))?;
    let images: Vec<SaveManifestEntry> =
        serde_json::from_str(&text).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    let [image] = images.as_slice() else {
        return Err(bad(format!(
            "it must hold exactly one image, found {}",
            images.len()
        )));
    };
    let file = image.config.rsplit('/').next().unwrap_or_default();
    let hex = file
        .strip_suffix(".json")
        .unwrap_or(file)
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(format!("unexpected config name {:?}", image.config)));
    }
    // Docker opens the config and layers by these names: they must be entries as checked.
    match small_file_digests.get(image.config.as_str()) {
        Some(digest) if *digest == hex => {}
        Some(_) => {
            return Err(bad(format!(
                "the config {} does not match its digest",
                image.config
            )));
        }
        None => {
            return Err(bad(format!(
                "the config {} named by {MANIFEST} is missing",
                image.config
            )));
        }
    }
    Ok(ImageInfo {
        id: format!("sha256:{hex}"),
        repo_tags: image.repo_tags.clone().unwrap_or_default(),
        config: image.config.clone(),
        layers: image.layers.clone(),
    })
}

/// The `manifest.json` Docker gets: the checked image's config and layers, and no tags.
fn manifest_for_docker(image: &ImageInfo) -> Vec<u8> {
    serde_json::json!([{
        "Config": image.config,
        "RepoTags": null,
        "Layers": image.layers,
    }])
    .to_string()
    .into_bytes()
}

/// Re-writes the archive read from `reader` into `out` for Docker: the same entries checked the
/// same way (an archive that differs from the one [`check`] saw fails here too), fresh headers,
/// `manifest.json` replaced by [`manifest_for_docker`], [`TAGGING_ENTRIES`] left out.
pub fn rewrite(reader: impl Read, image: &ImageInfo, out: impl Write) -> Result<(), PackageError> {
    let mut archive = tar::Archive::new(reader);
    let mut builder = tar::Builder::new(out);
    let mut names = Names::exact();
    let mut saw_manifest = false;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let (name, checked) = check_entry(&mut names, &entry)?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(entry.header().mtime().unwrap_or(0));
        match checked {
            Checked::File(_) if TAGGING_ENTRIES.contains(&name.as_str()) => continue,
            Checked::File(_) if name == MANIFEST => {
                saw_manifest = true;
                let text = manifest_for_docker(image);
                header.set_mode(0o644);
                header.set_size(text.len() as u64);
                builder.append_data(&mut header, &name, text.as_slice())?;
            }
            Checked::File(size) => {
                header.set_mode(0o644);
                header.set_size(size);
                builder.append_data(&mut header, &name, &mut entry)?;
            }
            Checked::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, &name, io::empty())?;
            }
            Checked::Link { target, symbolic } => {
                header.set_entry_type(if symbolic {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, &name, &target)?;
            }
        }
    }
    if !saw_manifest {
        return Err(bad(format!("{MANIFEST} is missing")));
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    enum E<'a> {
        F(&'a str, &'a [u8]),
        D(&'a str),
        S(&'a str, &'a str),
    }

    fn archive(entries: &[E]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            match entry {
                E::F(name, data) => {
                    header.set_size(data.len() as u64);
                    // set_path refuses '..', so names go into the header raw.
                    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    header.set_cksum();
                    builder.append(&header, *data).unwrap();
                }
                E::D(name) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    header.set_cksum();
                    builder.append(&header, io::empty()).unwrap();
                }
                E::S(name, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                    header.set_cksum();
                    builder.append(&header, io::empty()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn image_ids_are_the_verified_config_digest_of_a_clean_archive() {
        let config = br#"{"architecture":"amd64"}"#;
        let hex = hex::encode(Sha256::digest(config));
        let classic = format!(r#"[{{"Config":"{hex}.json","RepoTags":["x:1"],"Layers":[]}}]"#);
        let oci = format!(r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":null,"Layers":[]}}]"#);
        let hostile = format!(r#"[{{"Config":"{hex}.json","RepoTags":["victim:1"],"Layers":[]}}]"#);
        let wrong = "b".repeat(64);
        let lying = format!(r#"[{{"Config":"{wrong}.json","Layers":[]}}]"#);
        let classic_config = format!("{hex}.json");
        let oci_config = format!("blobs/sha256/{hex}");
        let wrong_config = format!("{wrong}.json");
        let id = Some(format!("sha256:{hex}"));
        use E::{D, F, S};
        let cases: Vec<(&str, Vec<E>, Option<String>)> = vec![
            (
                "classic",
                vec![F(&classic_config, config), F(MANIFEST, classic.as_bytes())],
                id.clone(),
            ),
            (
                "oci layout, manifest first",
                vec![
                    F(MANIFEST, oci.as_bytes()),
                    D("blobs/"),
                    D("blobs/sha256/"),
                    F(&oci_config, config),
                ],
                id.clone(),
            ),
            (
                "config digest lies",
                vec![F(&wrong_config, config), F(MANIFEST, lying.as_bytes())],
                None,
            ),
            ("no config", vec![F(MANIFEST, classic.as_bytes())], None),
            (
                "config name not a digest",
                vec![F(MANIFEST, br#"[{"Config":"nothex.json","Layers":[]}]"#)],
                None,
            ),
            ("no image", vec![F(MANIFEST, b"[]")], None),
            ("no manifest", vec![F(&classic_config, config)], None),
            (
                "second manifest, cleaned by docker",
                vec![
                    F(&classic_config, config),
                    F(MANIFEST, classic.as_bytes()),
                    F("x/../manifest.json", hostile.as_bytes()),
                ],
                None,
            ),
            (
                "absolute manifest",
                vec![
                    F(&classic_config, config),
                    F(MANIFEST, classic.as_bytes()),
                    F("/manifest.json", hostile.as_bytes()),
                ],
                None,
            ),
            (
                "manifest twice",
                vec![
                    F(&classic_config, config),
                    F(MANIFEST, classic.as_bytes()),
                    F(MANIFEST, hostile.as_bytes()),
                ],
                None,
            ),
            (
                "through a symlinked directory",
                vec![
                    F(&classic_config, config),
                    F(MANIFEST, classic.as_bytes()),
                    S("d", "."),
                    F("d/manifest.json", hostile.as_bytes()),
                ],
                None,
            ),
            (
                "symlink out of the archive",
                vec![
                    F(&classic_config, config),
                    F(MANIFEST, classic.as_bytes()),
                    S("layer.tar", "../../etc/passwd"),
                ],
                None,
            ),
        ];
        for (label, entries, expected) in cases {
            let bytes = archive(&entries);
            let checked = check(bytes.as_slice());
            assert_eq!(
                checked.as_ref().ok().map(|i| i.id.clone()),
                expected,
                "{label}: {checked:?}"
            );
        }
    }

    #[test]
    fn docker_gets_the_checked_manifest_without_tags_and_no_repositories() {
        let config = br#"{"architecture":"amd64"}"#;
        let hex = hex::encode(Sha256::digest(config));
        let name = format!("{hex}.json");
        let manifest =
            format!(r#"[{{"Config":"{name}","RepoTags":["victim:1"],"Layers":["l/layer.tar"]}}]"#);
        let input = archive(&[
            E::D("l/"),
            E::F("l/layer.tar", b"layer"),
            E::F(&name, config),
            E::F("repositories", br#"{"victim":{"1":"x"}}"#),
            E::F("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            E::F(
                "index.json",
                br#"{"manifests":[{"annotations":{"io.containerd.image.name":"victim:1"}}]}"#,
            ),
            E::F(MANIFEST, manifest.as_bytes()),
        ]);
        let image = check(input.as_slice()).unwrap();
        assert_eq!(image.repo_tags, ["victim:1"]);
        let mut out = Vec::new();
        rewrite(input.as_slice(), &image, &mut out).unwrap();
        let mut written = Vec::new();
        for entry in tar::Archive::new(out.as_slice()).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = String::new();
            entry.read_to_string(&mut data).unwrap();
            written.push((path, data));
        }
        let expected_manifest =
            format!(r#"[{{"Config":"{name}","RepoTags":null,"Layers":["l/layer.tar"]}}]"#);
        let expected = vec![
            ("l".to_owned(), String::new()),
            ("l/layer.tar".to_owned(), "layer".to_owned()),
            (name.clone(), String::from_utf8_lossy(config).into_owned()),
            (MANIFEST.to_owned(), expected_manifest),
        ];
        assert_eq!(written, expected);
    }

    #[test]
    fn symlinks_resolve_inside_the_archive_only() {
        let cases = [
            ("aaa/layer.tar", "../bbb/layer.tar", Some("bbb/layer.tar")),
            ("aaa/layer.tar", "other.tar", Some("aaa/other.tar")),
            ("aaa/layer.tar", "../../escape", None),
            ("layer.tar", "/etc/passwd", None),
            ("d", ".", None),
        ];
        for (link, target, expected) in cases {
            assert_eq!(
                resolve_symlink(link, target).as_deref(),
                expected,
                "{link} -> {target}"
            );
        }
    }
}
