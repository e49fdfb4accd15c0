//! `image.tar`, a `docker save` archive: checked and re-written for Docker in one pass, its end
//! held back until the caller agrees (see [`Rewritten`]). Docker unpacks the archive and then reads `manifest.json` (tags from its `RepoTags`;
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
use package_rules::tar_budget::{Budget, ENTRY_HEADERS_LIMIT};

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
#[cfg(test)]
fn check(reader: impl Read) -> Result<ImageInfo, PackageError> {
    Ok(check_and_rewrite(reader, io::sink())?.image.clone())
}

/// Passes writes on while open; once closed (a failed or refused archive), refuses them, so the
/// end-of-archive marker `tar::Builder` writes when dropped never reaches Docker.
struct Gate<W> {
    inner: W,
    open: bool,
}

impl<W: Write> Write for Gate<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if !self.open {
            return Err(io::Error::other("the image archive was refused"));
        }
        self.inner.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.open {
            return Err(io::Error::other("the image archive was refused"));
        }
        self.inner.flush()
    }
}

/// A checked archive written for Docker but for its end: [`Rewritten::finish`] writes it, so
/// Docker loads nothing before the caller agreed; dropped unfinished, the end is never written.
pub struct Rewritten<W: Write> {
    pub image: ImageInfo,
    builder: Option<tar::Builder<Gate<W>>>,
}

impl<W: Write> Rewritten<W> {
    /// Ends the archive (Docker may load it from here on).
    pub fn finish(mut self) -> io::Result<()> {
        let builder = self.builder.take().expect("finished once");
        builder.into_inner()?.inner.flush()
    }
}

impl<W: Write> Drop for Rewritten<W> {
    fn drop(&mut self) {
        if let Some(builder) = &mut self.builder {
            builder.get_mut().open = false;
        }
    }
}

/// Checks the archive read from `reader` and re-writes it into `out` for Docker in the same
/// pass: fresh headers for the entries as checked, `manifest.json` replaced by the checked one
/// without tags ([`manifest_for_docker`]), [`TAGGING_ENTRIES`] left out. Everything but the
/// archive's end is written; on any failure the end never is, so Docker loads nothing.
pub fn check_and_rewrite<W: Write>(
    reader: impl Read,
    out: W,
) -> Result<Rewritten<W>, PackageError> {
    let mut builder = tar::Builder::new(Gate {
        inner: out,
        open: true,
    });
    match rewrite_entries(reader, &mut builder) {
        Ok(image) => Ok(Rewritten {
            image,
            builder: Some(builder),
        }),
        Err(e) => {
            builder.get_mut().open = false;
            Err(e)
        }
    }
}

fn rewrite_entries<W: Write>(
    reader: impl Read,
    builder: &mut tar::Builder<W>,
) -> Result<ImageInfo, PackageError> {
    // The tar crate holds long names and PAX records whole: bounded, or a deflated run of zeros
    // claiming to be one entry's name would take gigabytes.
    let budget = Budget::new();
    let mut archive = tar::Archive::new(budget.reader(reader));
    let mut entries = archive.entries().map_err(bad)?;
    let mut names = Names::exact();
    let mut manifest = None;
    let mut small_file_digests = HashMap::new();
    while let Some(entry) = budget.within(ENTRY_HEADERS_LIMIT, || entries.next()) {
        let mut entry = entry.map_err(bad)?;
        let (name, checked) = check_entry(&mut names, &entry)?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(entry.header().mtime().unwrap_or(0));
        match checked {
            Checked::File(_) if name == MANIFEST => {
                let mut text = String::new();
                (&mut entry)
                    .take(CONFIG_LIMIT + 1)
                    .read_to_string(&mut text)
                    .map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
                if text.len() as u64 > CONFIG_LIMIT {
                    return Err(bad(format!("{MANIFEST} is larger than 1 MiB")));
                }
                let image = parse_manifest(&text)?;
                let text = manifest_for_docker(&image);
                header.set_mode(0o644);
                header.set_size(text.len() as u64);
                builder.append_data(&mut header, &name, text.as_slice())?;
                manifest = Some(image);
            }
            Checked::File(size) if size <= CONFIG_LIMIT => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(bad)?;
                if !TAGGING_ENTRIES.contains(&name.as_str()) {
                    header.set_mode(0o644);
                    header.set_size(bytes.len() as u64);
                    builder.append_data(&mut header, &name, bytes.as_slice())?;
                }
                small_file_digests.insert(name, hex::encode(Sha256::digest(&bytes)));
            }
            Checked::File(_) if TAGGING_ENTRIES.contains(&name.as_str()) => {}
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
        // What was not handed on (a dropped entry, a directory's or link's data) is read here,
        // not in the bounded search for the next entry.
        io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
    }
    let image = manifest.ok_or_else(|| bad(format!("{MANIFEST} is missing")))?;
    // Docker opens the config and layers by these names: they must be entries as checked.
    let hex = image.id.trim_start_matches("sha256:");
    match small_file_digests.get(image.config.as_str()) {
        Some(digest) if digest == hex => Ok(image),
        Some(_) => Err(bad(format!(
            "the config {} does not match its digest",
            image.config
        ))),
        None => Err(bad(format!(
            "the config {} named by {MANIFEST} is missing",
            image.config
        ))),
    }
}

/// The one image `manifest.json` names, its id taken from the config's name (verified against
/// the config's digest once the whole archive was read).
fn parse_manifest(text: &str) -> Result<ImageInfo, PackageError> {
    let images: Vec<SaveManifestEntry> =
        serde_json::from_str(text).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
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

    /// A GNU long-name header claiming `size` bytes of name, and the name: what a zip of a few
    /// MB unpacks to. The tar crate would hold it all before looking at the entry it names.
    fn long_name_bomb(size: u64) -> impl Read {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(size);
        header.set_cksum();
        io::Cursor::new(header.as_bytes().to_vec()).chain(io::repeat(b'a').take(size))
    }

    #[test]
    fn an_entrys_headers_are_bounded_and_long_names_still_pass() {
        let error = check(long_name_bomb(1 << 30)).unwrap_err().to_string();
        assert!(error.contains("headers"), "{error}");

        // A name past the header's 100 bytes travels as a GNU long name, and is kept.
        let config = br#"{"architecture":"amd64"}"#;
        let hex = hex::encode(Sha256::digest(config));
        let long = format!("{}/layer.tar", "d".repeat(300));
        let manifest = format!(r#"[{{"Config":"{hex}.json","Layers":["{long}"]}}]"#);
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in [
            (format!("{hex}.json"), config.as_slice()),
            (long.clone(), b"layer".as_slice()),
            (MANIFEST.to_owned(), manifest.as_bytes()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, &name, data).unwrap();
        }
        let archive = builder.into_inner().unwrap();
        let image = check(archive.as_slice()).unwrap();
        assert_eq!(image.id, format!("sha256:{hex}"));
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
        let rewritten = check_and_rewrite(input.as_slice(), &mut out).unwrap();
        assert_eq!(rewritten.image, image);
        rewritten.finish().unwrap();
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

    #[test]
    fn docker_gets_no_archive_end_before_it_is_agreed_to() {
        let config = br#"{"architecture":"amd64"}"#;
        let hex = hex::encode(Sha256::digest(config));
        let name = format!("{hex}.json");
        let manifest = format!(r#"[{{"Config":"{name}","RepoTags":null,"Layers":[]}}]"#);
        let good = archive(&[E::F(&name, config), E::F(MANIFEST, manifest.as_bytes())]);
        let escaping = archive(&[
            E::F(&name, config),
            E::F(MANIFEST, manifest.as_bytes()),
            E::S("layer.tar", "../../etc/passwd"),
        ]);
        // Two zero blocks end a tar archive.
        let ends =
            |out: &[u8]| out.len() >= 1024 && out[out.len() - 1024..].iter().all(|b| *b == 0);
        // Failed: the entries before the failure went out, the end did not.
        let mut out = Vec::new();
        assert!(check_and_rewrite(escaping.as_slice(), &mut out).is_err());
        assert!(!ends(&out), "a failed archive was ended");
        // Passed but dropped unfinished (refused): no end either.
        let mut out = Vec::new();
        drop(check_and_rewrite(good.as_slice(), &mut out).unwrap());
        assert!(!ends(&out), "an archive nobody agreed to was ended");
        // Finished: ended.
        let mut out = Vec::new();
        check_and_rewrite(good.as_slice(), &mut out)
            .unwrap()
            .finish()
            .unwrap();
        assert!(ends(&out), "an agreed archive was not ended");
    }
}
