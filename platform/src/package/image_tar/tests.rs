use super::*;

enum E<'a> {
    F(&'a str, &'a [u8]),
    D(&'a str),
    S(&'a str, &'a str),
    H(&'a str, &'a str),
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
            E::S(name, target) | E::H(name, target) => {
                header.set_entry_type(if matches!(entry, E::S(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
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
            // Docker names the image by the config's digest, whatever the name says.
            "config name is another digest",
            vec![F(&wrong_config, config), F(MANIFEST, lying.as_bytes())],
            id.clone(),
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
    let rewritten = check_and_rewrite(input.as_slice(), u64::MAX, &mut out).unwrap();
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
    let ends = |out: &[u8]| out.len() >= 1024 && out[out.len() - 1024..].iter().all(|b| *b == 0);
    // Failed: the entries before the failure went out, the end did not.
    let mut out = Vec::new();
    assert!(check_and_rewrite(escaping.as_slice(), u64::MAX, &mut out).is_err());
    assert!(!ends(&out), "a failed archive was ended");
    // Passed but dropped unfinished (refused): no end either.
    let mut out = Vec::new();
    drop(check_and_rewrite(good.as_slice(), u64::MAX, &mut out).unwrap());
    assert!(!ends(&out), "an archive nobody agreed to was ended");
    // Finished: ended.
    let mut out = Vec::new();
    check_and_rewrite(good.as_slice(), u64::MAX, &mut out)
        .unwrap()
        .finish()
        .unwrap();
    assert!(ends(&out), "an agreed archive was not ended");
}

/// A valid image archive around `layer`, the one layer its manifest names, its header saying
/// `header_size` (else its length), after a PAX record `size=<pax_size>` when given.
fn image_with_layer(layer: &[u8], header_size: Option<u64>, pax_size: Option<u64>) -> Vec<u8> {
    let config = br#"{"architecture":"amd64"}"#;
    let hex = hex::encode(Sha256::digest(config));
    let manifest = format!(r#"[{{"Config":"{hex}.json","Layers":["l/layer.tar"]}}]"#);
    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |name: &str, data: &[u8], size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(size);
        header.set_path(name).unwrap();
        header.set_cksum();
        builder.append(&header, data).unwrap();
    };
    append(&format!("{hex}.json"), config, config.len() as u64);
    append(MANIFEST, manifest.as_bytes(), manifest.len() as u64);
    if let Some(pax_size) = pax_size {
        builder
            .append_pax_extensions([("size", pax_size.to_string().as_bytes())])
            .unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(header_size.unwrap_or(layer.len() as u64));
    header.set_path("l/layer.tar").unwrap();
    header.set_cksum();
    // `append` writes the data whatever the header says, padded to a block.
    builder.append(&header, layer).unwrap();
    builder.into_inner().unwrap()
}

/// A whole tar entry, header and padded data, as a reader that trusts sizes would see it.
fn raw_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_path(name).unwrap();
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(data);
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    bytes
}

#[test]
fn an_entrys_pax_size_must_agree_with_its_header() {
    // Docker reads the re-written header's size, the tar reader the PAX size: past a header
    // saying N, the data would go on with a manifest.json of the tenant's choosing.
    let smuggled = raw_entry(
        MANIFEST,
        br#"[{"Config":"x.json","RepoTags":["victim:1"],"Layers":[]}]"#,
    );
    let n = 2u64 << 20;
    let mut payload = vec![0u8; n as usize];
    payload.extend_from_slice(&smuggled);
    let m = payload.len() as u64;
    // A small header size and a large PAX size: the small files' branch held it all.
    let held = vec![0u8; 3 << 20];
    // (case, archive, refused)
    let cases = [
        (
            "large header size, larger PAX size",
            image_with_layer(&payload, Some(n), Some(m)),
            true,
        ),
        (
            "small header size, large PAX size",
            image_with_layer(&held, Some(10), Some(held.len() as u64)),
            true,
        ),
        (
            "PAX size smaller than the header's",
            image_with_layer(&payload[..1000], Some(2000), Some(1000)),
            true,
        ),
        (
            "PAX size equal to the header's",
            image_with_layer(&payload, None, Some(m)),
            false,
        ),
        ("no PAX size", image_with_layer(&payload, None, None), false),
    ];
    for (case, archive, refused) in cases {
        let mut out = Vec::new();
        let result = check_and_rewrite(archive.as_slice(), u64::MAX, &mut out)
            .and_then(|rewritten| Ok(rewritten.finish()?));
        match result {
            Err(e) => {
                assert!(refused, "{case}: {e}");
                assert!(matches!(e, PackageError::BadImage(_)), "{case}: {e:?}");
                assert!(e.to_string().contains("PAX size"), "{case}: {e}");
            }
            Ok(()) => {
                assert!(!refused, "{case}: accepted");
                // What Docker reads: every entry exactly as checked, the layer whole.
                let mut sizes = Vec::new();
                for entry in tar::Archive::new(out.as_slice()).entries().unwrap() {
                    let entry = entry.unwrap();
                    assert_eq!(entry.size(), entry.header().entry_size().unwrap());
                    sizes.push((entry.path().unwrap().display().to_string(), entry.size()));
                }
                assert_eq!(sizes.len(), 3, "{case}: {sizes:?}");
                assert_eq!(sizes[2], ("l/layer.tar".to_owned(), m), "{case}");
            }
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn compressed_layers_count_at_what_docker_unpacks_them_to() {
    let limit = 1u64 << 20;
    let small = gzip(&vec![7u8; 64 << 10]);
    // 8 MiB of zeros: a few KiB in the archive.
    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let mut zstd = vec![0x28, 0xb5, 0x2f, 0xfd];
    zstd.extend_from_slice(&[0; 100]);
    let mut cut = small.clone();
    cut.truncate(small.len() - 3);
    // What the archive's other files (config, manifest.json) unpack to.
    let others = check(image_with_layer(&[], None, None).as_slice())
        .unwrap()
        .unpacked_bytes;
    // (case, layer, Ok(what the layer unpacks to) or the error's kind and what it says)
    type Case<'a> = (&'a str, Vec<u8>, Result<u64, (u16, &'a str)>);
    let cases: Vec<Case> = vec![
        ("a gzip layer within the limit", small.clone(), Ok(64 << 10)),
        (
            "a plain layer within the limit",
            vec![7; 900 << 10],
            Ok(900 << 10),
        ),
        (
            "a plain layer over the limit",
            vec![7; (1 << 20) + 1],
            Err((413, "more than 1048576 bytes")),
        ),
        (
            "a gzip bomb",
            bomb.clone(),
            Err((413, "more than 1048576 bytes")),
        ),
        ("a zstd layer", zstd, Err((422, "zstd-compressed"))),
        ("a gzip layer cut short", cut, Err((422, "gzip stream"))),
    ];
    for (case, layer, expected) in cases {
        let archive = image_with_layer(&layer, None, None);
        let mut out = Vec::new();
        let result = check_and_rewrite(archive.as_slice(), limit, &mut out).and_then(|rewritten| {
            let unpacked = rewritten.image.unpacked_bytes;
            rewritten.finish()?;
            Ok(unpacked)
        });
        let ends =
            |out: &[u8]| out.len() >= 1024 && out[out.len() - 1024..].iter().all(|b| *b == 0);
        match (result, expected) {
            (Ok(unpacked), Ok(layer_unpacked)) => {
                // The image is counted at what Docker unpacks it to (the storage quota's cost).
                assert_eq!(unpacked, others + layer_unpacked, "{case}");
                // The layer reaches Docker as it was, compressed.
                let mut found = None;
                for entry in tar::Archive::new(out.as_slice()).entries().unwrap() {
                    let mut entry = entry.unwrap();
                    if entry.path().unwrap().to_str() == Some("l/layer.tar") {
                        let mut data = Vec::new();
                        entry.read_to_end(&mut data).unwrap();
                        found = Some(data);
                    }
                }
                assert_eq!(found.as_ref(), Some(&layer), "{case}");
            }
            (Err(e), Err((status, says))) => {
                let got = match e {
                    PackageError::ImageTooLarge { .. } => 413,
                    PackageError::BadImage(_) => 422,
                    _ => 0,
                };
                assert_eq!(got, status, "{case}: {e:?}");
                assert!(e.to_string().contains(says), "{case}: {e}");
                assert!(!ends(&out), "{case}: the refused archive was ended");
            }
            (result, expected) => panic!("{case}: {result:?}, expected {expected:?}"),
        }
    }
}

/// What berth-pack and the platform once judged apart, now one rule (`docker_load`): the image is
/// found by `manifest.json` alone, its config through links as Docker opens it, whatever its
/// name, and `manifest.json` may take 1 MiB, the config 4 MiB.
#[test]
fn the_image_is_found_as_dockers_loader_finds_it() {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    // A config of 2 MiB (long labels): over the old 1 MiB, within the 4 MiB of both sides.
    let mut large = br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"l":""#.to_vec();
    large.extend(std::iter::repeat_n(b'x', 2 << 20));
    large.extend_from_slice(br#""}}}"#);
    let mut too_large = large.clone();
    too_large.splice(60..60, std::iter::repeat_n(b'x', 3 << 20));
    let id = |config: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(config)));
    let manifest = |config: &str| format!(r#"[{{"Config":"{config}","Layers":["l.tar"]}}]"#);
    let blob = |config: &[u8]| format!("blobs/sha256/{}", hex::encode(Sha256::digest(config)));
    let (plain, big, huge) = (blob(&config), blob(&large), blob(&too_large));
    let mut padded_manifest = manifest(&plain).into_bytes();
    padded_manifest.extend(std::iter::repeat_n(b' ', 2 << 20));
    let oci_index = br#"{"schemaVersion":2,"manifests":[]}"#;
    let (jib, linked) = (manifest("config.json"), manifest("c.json"));
    let (of_plain, of_big, of_huge) = (manifest(&plain), manifest(&big), manifest(&huge));
    use E::{F, H, S};
    // (case, entries, Ok(image id) or what the refusal says)
    type Case<'a> = (&'a str, Vec<E<'a>>, Result<String, &'a str>);
    let cases: Vec<Case> = vec![
        (
            "jib's config.json",
            vec![
                F("l.tar", b"layer"),
                F("config.json", &config),
                F(MANIFEST, jib.as_bytes()),
            ],
            Ok(id(&config)),
        ),
        (
            "config through a symlink",
            vec![
                F("l.tar", b"layer"),
                F(&plain, &config),
                S("c.json", &plain),
                F(MANIFEST, linked.as_bytes()),
            ],
            Ok(id(&config)),
        ),
        (
            "config through a hard link",
            vec![
                F("l.tar", b"layer"),
                F(&plain, &config),
                H("c.json", &plain),
                F(MANIFEST, linked.as_bytes()),
            ],
            Ok(id(&config)),
        ),
        (
            "a hard link before its file",
            vec![
                F("l.tar", b"layer"),
                H("c.json", &plain),
                F(&plain, &config),
                F(MANIFEST, linked.as_bytes()),
            ],
            Err("not a file earlier in the archive"),
        ),
        (
            "a 2 MiB config",
            vec![
                F("l.tar", b"layer"),
                F(&big, &large),
                F(MANIFEST, of_big.as_bytes()),
            ],
            Ok(id(&large)),
        ),
        (
            "a 5 MiB config",
            vec![
                F("l.tar", b"layer"),
                F(&huge, &too_large),
                F(MANIFEST, of_huge.as_bytes()),
            ],
            Err("more than the 4 MiB a config may take"),
        ),
        (
            "a 2 MiB manifest.json",
            vec![
                F("l.tar", b"layer"),
                F(&plain, &config),
                F(MANIFEST, &padded_manifest),
            ],
            Err("more than the 1 MiB it may take"),
        ),
        (
            "an OCI layout without manifest.json",
            vec![
                F("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                F("l.tar", b"layer"),
                F(&plain, &config),
                F("index.json", oci_index),
            ],
            Err("skopeo copy oci-archive:"),
        ),
        (
            "a missing layer",
            vec![F(&plain, &config), F(MANIFEST, of_plain.as_bytes())],
            Err("names the layer \"l.tar\", which is missing from the archive"),
        ),
    ];
    // Every row is run, and every wrong verdict reported.
    let mut wrong = Vec::new();
    for (case, entries, expected) in cases {
        let bytes = archive(&entries);
        match (check(bytes.as_slice()), expected) {
            (Ok(image), Ok(id)) if image.id == id => {}
            (Err(PackageError::BadImage(message)), Err(says)) if message.contains(says) => {}
            (result, expected) => wrong.push(format!("{case}: {result:?}, expected {expected:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
