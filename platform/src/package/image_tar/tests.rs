use super::*;
use package_rules::test_support::{
    Entry, archive, blob_name, config, config_name, dir, file, gzip, hard_link, image_id,
    image_with_layer, long_name_header, manifest, raw_entry, read, symlink,
};

#[test]
fn image_ids_are_the_verified_config_digest_of_a_clean_archive() {
    let config = config(0);
    let config = config.as_slice();
    let classic_config = config_name(config);
    let oci_config = blob_name(config);
    let wrong_config = format!("{}.json", "b".repeat(64));
    let classic = manifest(&classic_config, &["x:1"], &[]);
    let oci = format!(r#"[{{"Config":"{oci_config}","RepoTags":null,"Layers":[]}}]"#);
    let hostile = manifest(&classic_config, &["victim:1"], &[]);
    let lying = manifest(&wrong_config, &[], &[]);
    let id = Some(image_id(config));
    let cases: Vec<(&str, Vec<Entry>, Option<String>)> = vec![
        (
            "classic",
            vec![
                file(&classic_config, config),
                file(MANIFEST, classic.as_bytes()),
            ],
            id.clone(),
        ),
        (
            "oci layout, manifest first",
            vec![
                file(MANIFEST, oci.as_bytes()),
                dir("blobs/"),
                dir("blobs/sha256/"),
                file(&oci_config, config),
            ],
            id.clone(),
        ),
        (
            // Docker names the image by the config's digest, whatever the name says.
            "config name is another digest",
            vec![
                file(&wrong_config, config),
                file(MANIFEST, lying.as_bytes()),
            ],
            id.clone(),
        ),
        ("no config", vec![file(MANIFEST, classic.as_bytes())], None),
        (
            "config name not a digest",
            vec![file(MANIFEST, br#"[{"Config":"nothex.json","Layers":[]}]"#)],
            None,
        ),
        ("no image", vec![file(MANIFEST, b"[]")], None),
        ("no manifest", vec![file(&classic_config, config)], None),
        (
            "second manifest, cleaned by docker",
            vec![
                file(&classic_config, config),
                file(MANIFEST, classic.as_bytes()),
                file("x/../manifest.json", hostile.as_bytes()),
            ],
            None,
        ),
        (
            "absolute manifest",
            vec![
                file(&classic_config, config),
                file(MANIFEST, classic.as_bytes()),
                file("/manifest.json", hostile.as_bytes()),
            ],
            None,
        ),
        (
            "manifest twice",
            vec![
                file(&classic_config, config),
                file(MANIFEST, classic.as_bytes()),
                file(MANIFEST, hostile.as_bytes()),
            ],
            None,
        ),
        (
            "through a symlinked directory",
            vec![
                file(&classic_config, config),
                file(MANIFEST, classic.as_bytes()),
                symlink("d", "."),
                file("d/manifest.json", hostile.as_bytes()),
            ],
            None,
        ),
        (
            "symlink out of the archive",
            vec![
                file(&classic_config, config),
                file(MANIFEST, classic.as_bytes()),
                symlink("layer.tar", "../../etc/passwd"),
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
    io::Cursor::new(long_name_header(size)).chain(io::repeat(b'a').take(size))
}

#[test]
fn an_entrys_headers_are_bounded_and_long_names_still_pass() {
    let error = check(long_name_bomb(1 << 30)).unwrap_err().to_string();
    assert!(error.contains("headers"), "{error}");

    // A name past the header's 100 bytes travels as a GNU long name, and is kept.
    let config = config(0);
    let long = format!("{}/layer.tar", "d".repeat(300));
    let archive = archive(&[
        file(config_name(&config), &config),
        file(&long, b"layer"),
        file(MANIFEST, manifest(&config_name(&config), &[], &[&long])),
    ]);
    let image = check(archive.as_slice()).unwrap();
    assert_eq!(image.id, image_id(&config));
}

#[test]
fn docker_gets_the_checked_manifest_without_tags_and_no_repositories() {
    let config = config(0);
    let config = config.as_slice();
    let name = config_name(config);
    let manifest = manifest(&name, &["victim:1"], &["l/layer.tar"]);
    let input = archive(&[
        dir("l/"),
        file("l/layer.tar", b"layer"),
        file(&name, config),
        file("repositories", br#"{"victim":{"1":"x"}}"#),
        file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        file(
            "index.json",
            br#"{"manifests":[{"annotations":{"io.containerd.image.name":"victim:1"}}]}"#,
        ),
        file(MANIFEST, manifest.as_bytes()),
    ]);
    let image = check(input.as_slice()).unwrap();
    assert_eq!(image.repo_tags, ["victim:1"]);
    let mut out = Vec::new();
    let rewritten = check_and_rewrite(input.as_slice(), u64::MAX, &mut out).unwrap();
    assert_eq!(rewritten.image, image);
    rewritten.finish().unwrap();
    let written: Vec<(String, String)> = read(&out)
        .into_iter()
        .map(|(path, _, data)| (path, String::from_utf8(data).unwrap()))
        .collect();
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
    let config = config(0);
    let config = config.as_slice();
    let name = config_name(config);
    let manifest = format!(r#"[{{"Config":"{name}","RepoTags":null,"Layers":[]}}]"#);
    let good = archive(&[file(&name, config), file(MANIFEST, manifest.as_bytes())]);
    let escaping = archive(&[
        file(&name, config),
        file(MANIFEST, manifest.as_bytes()),
        symlink("layer.tar", "../../etc/passwd"),
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

#[test]
fn an_entrys_pax_size_must_agree_with_its_header() {
    // Docker reads the re-written header's size, the tar reader the PAX size: past a header
    // saying N, the data would go on with a manifest.json of the tenant's choosing.
    let smuggled = raw_entry(&file(
        MANIFEST,
        br#"[{"Config":"x.json","RepoTags":["victim:1"],"Layers":[]}]"#,
    ));
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
                for (path, header_size, data) in read(&out) {
                    assert_eq!(data.len() as u64, header_size);
                    sizes.push((path, header_size));
                }
                assert_eq!(sizes.len(), 3, "{case}: {sizes:?}");
                assert_eq!(sizes[2], ("l/layer.tar".to_owned(), m), "{case}");
            }
        }
    }
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
                let found = read(&out)
                    .into_iter()
                    .find_map(|(path, _, data)| (path == "l/layer.tar").then_some(data));
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
    // A config of 2 MiB (long labels): over the old 1 MiB, within the 4 MiB of both sides.
    let (large, too_large) = (config(2 << 20), config(5 << 20));
    let config = config(0);
    let id = image_id;
    let manifest = |config: &str| manifest(config, &[], &["l.tar"]);
    let (plain, big, huge) = (blob_name(&config), blob_name(&large), blob_name(&too_large));
    let mut padded_manifest = manifest(&plain).into_bytes();
    padded_manifest.extend(std::iter::repeat_n(b' ', 2 << 20));
    let oci_index = br#"{"schemaVersion":2,"manifests":[]}"#;
    let (jib, linked) = (manifest("config.json"), manifest("c.json"));
    let (of_plain, of_big, of_huge) = (manifest(&plain), manifest(&big), manifest(&huge));
    // (case, entries, Ok(image id) or what the refusal says)
    type Case<'a> = (&'a str, Vec<Entry>, Result<String, &'a str>);
    let cases: Vec<Case> = vec![
        (
            "jib's config.json",
            vec![
                file("l.tar", b"layer"),
                file("config.json", &config),
                file(MANIFEST, jib.as_bytes()),
            ],
            Ok(id(&config)),
        ),
        (
            "config through a symlink",
            vec![
                file("l.tar", b"layer"),
                file(&plain, &config),
                symlink("c.json", &plain),
                file(MANIFEST, linked.as_bytes()),
            ],
            Ok(id(&config)),
        ),
        (
            "config through a hard link",
            vec![
                file("l.tar", b"layer"),
                file(&plain, &config),
                hard_link("c.json", &plain),
                file(MANIFEST, linked.as_bytes()),
            ],
            Ok(id(&config)),
        ),
        (
            "a hard link before its file",
            vec![
                file("l.tar", b"layer"),
                hard_link("c.json", &plain),
                file(&plain, &config),
                file(MANIFEST, linked.as_bytes()),
            ],
            Err("not a file earlier in the archive"),
        ),
        (
            "a 2 MiB config",
            vec![
                file("l.tar", b"layer"),
                file(&big, &large),
                file(MANIFEST, of_big.as_bytes()),
            ],
            Ok(id(&large)),
        ),
        (
            "a 5 MiB config",
            vec![
                file("l.tar", b"layer"),
                file(&huge, &too_large),
                file(MANIFEST, of_huge.as_bytes()),
            ],
            Err("more than the 4 MiB a config may take"),
        ),
        (
            "a 2 MiB manifest.json",
            vec![
                file("l.tar", b"layer"),
                file(&plain, &config),
                file(MANIFEST, &padded_manifest),
            ],
            Err("more than the 1 MiB it may take"),
        ),
        (
            "an OCI layout without manifest.json",
            vec![
                file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                file("l.tar", b"layer"),
                file(&plain, &config),
                file("index.json", oci_index),
            ],
            Err("skopeo copy oci-archive:"),
        ),
        (
            "a missing layer",
            vec![file(&plain, &config), file(MANIFEST, of_plain.as_bytes())],
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
