use super::*;

#[test]
fn symlinks_resolve_inside_the_archive_only() {
    let cases = [
        ("aaa/layer.tar", "../bbb/layer.tar", Some("bbb/layer.tar")),
        ("aaa/layer.tar", "other.tar", Some("aaa/other.tar")),
        ("aaa/layer.tar", "./x//y/", Some("aaa/x/y")),
        ("a.json", "blobs/sha256/ab", Some("blobs/sha256/ab")),
        ("aaa/layer.tar", "../../escape", None),
        ("layer.tar", "/etc/passwd", None),
        ("layer.tar", "a\\b", None),
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
fn manifest_paths_are_cleaned_as_docker_joins_them() {
    let cases = [
        ("abc.json", Some("abc.json")),
        ("./abc.json", Some("abc.json")),
        ("blobs//sha256/ab", Some("blobs/sha256/ab")),
        ("a/../abc.json", Some("abc.json")),
        ("../abc.json", None),
        ("/abc.json", None),
        ("", None),
    ];
    for (path, expected) in cases {
        assert_eq!(manifest_path(path).as_deref(), expected, "{path:?}");
    }
}

/// One entry of a table: a file of a size, a symlink or a hard link.
enum E {
    F(&'static str, u64),
    S(&'static str, &'static str),
    H(&'static str, &'static str),
}

fn entries(list: &[E]) -> Result<Entries<&'static str>, Refusal> {
    let mut entries = Entries::new();
    for entry in list {
        match *entry {
            E::F(name, size) => entries.file(name, size, name),
            E::S(name, target) => entries.symlink(name, target)?,
            E::H(name, target) => entries.hard_link(name, target)?,
        }
    }
    Ok(entries)
}

#[test]
fn the_manifest_is_one_file_of_at_most_the_metadata_limit() {
    use E::{F, S};
    let cases: Vec<(&str, Vec<E>, Result<(), Refusal>)> = vec![
        ("docker save", vec![F(MANIFEST, 100)], Ok(())),
        (
            "docker 25 save (OCI layout and manifest.json)",
            vec![F("oci-layout", 30), F(OCI_INDEX, 300), F(MANIFEST, 100)],
            Ok(()),
        ),
        (
            "OCI layout only",
            vec![F("oci-layout", 30), F(OCI_INDEX, 300)],
            Err(Refusal::NoManifest { oci_layout: true }),
        ),
        (
            "neither",
            vec![F("layer.tar", 10)],
            Err(Refusal::NoManifest { oci_layout: false }),
        ),
        (
            "a link",
            vec![F("m.json", 100), S(MANIFEST, "m.json")],
            Err(Refusal::ManifestNotAFile),
        ),
        ("at the limit", vec![F(MANIFEST, MANIFEST_LIMIT)], Ok(())),
        (
            "over the limit",
            vec![F(MANIFEST, MANIFEST_LIMIT + 1)],
            Err(Refusal::ManifestTooLarge {
                size: MANIFEST_LIMIT + 1,
            }),
        ),
    ];
    for (case, list, expected) in cases {
        assert_eq!(entries(&list).unwrap().manifest(), expected, "{case}");
    }
}

#[test]
fn the_config_is_found_through_links_as_docker_opens_it() {
    use E::{F, H, S};
    let config = "blobs/sha256/c0";
    let missing = |file: &str| {
        Err(Refusal::Missing {
            what: "the config",
            file: file.to_owned(),
        })
    };
    // (case, entries, the name the manifest gives, the file found or the refusal)
    type Case = (
        &'static str,
        Vec<E>,
        &'static str,
        Result<&'static str, Refusal>,
    );
    // l0 -> the config, and l<i> -> l<i-1>: from l<i>, i + 1 symlinks.
    let names: Vec<&'static str> = (0..=MAX_LINK_HOPS)
        .map(|i| &*Box::leak(format!("l{i}").into_boxed_str()))
        .collect();
    let chain = || {
        let mut list = vec![F(config, 10), S(names[0], config)];
        list.extend(names.windows(2).map(|pair| S(pair[1], pair[0])));
        list
    };
    let cases: Vec<Case> = vec![
        ("a file", vec![F(config, 10)], config, Ok(config)),
        (
            "its name cleaned",
            vec![F(config, 10)],
            "./blobs//sha256/c0",
            Ok(config),
        ),
        (
            "a symlink",
            vec![F(config, 10), S("c.json", "blobs/sha256/c0")],
            "c.json",
            Ok(config),
        ),
        (
            "a symlink before its target",
            vec![S("c.json", "blobs/sha256/c0"), F(config, 10)],
            "c.json",
            Ok(config),
        ),
        (
            "a hard link",
            vec![F(config, 10), H("c.json", config)],
            "c.json",
            Ok(config),
        ),
        (
            "a hard link to a hard link",
            vec![F(config, 10), H("a.json", config), H("c.json", "a.json")],
            "c.json",
            Ok(config),
        ),
        (
            "a symlink to a hard link",
            vec![F(config, 10), H("a.json", config), S("c.json", "a.json")],
            "c.json",
            Ok(config),
        ),
        ("16 symlinks", chain(), names[MAX_LINK_HOPS - 1], Ok(config)),
        (
            "17 symlinks: a chain no tool writes",
            chain(),
            names[MAX_LINK_HOPS],
            missing(names[MAX_LINK_HOPS]),
        ),
        ("missing", vec![F("other", 10)], config, missing(config)),
        (
            "a dangling symlink",
            vec![S("c.json", "nowhere")],
            "c.json",
            missing("c.json"),
        ),
        (
            "a symlink loop",
            vec![S("a", "b"), S("b", "a")],
            "a",
            missing("a"),
        ),
        (
            "climbing out",
            vec![F(config, 10)],
            "../c0",
            missing("../c0"),
        ),
        (
            "a dropped entry",
            vec![F(OCI_INDEX, 10), S("c.json", OCI_INDEX)],
            "c.json",
            Err(Refusal::Dropped {
                what: "the config",
                file: "c.json".to_owned(),
            }),
        ),
        (
            "manifest.json itself",
            vec![F(MANIFEST, 10), S("c.json", MANIFEST)],
            "c.json",
            Err(Refusal::ConfigIsManifest),
        ),
        (
            "at the config limit",
            vec![F(config, CONFIG_LIMIT)],
            config,
            Ok(config),
        ),
        (
            "over the config limit, through a link",
            vec![F(config, CONFIG_LIMIT + 1), S("c.json", config)],
            "c.json",
            Err(Refusal::ConfigTooLarge {
                file: "c.json".to_owned(),
                size: CONFIG_LIMIT + 1,
            }),
        ),
    ];
    for (case, list, path, expected) in cases {
        let entries = entries(&list).unwrap();
        let found = entries.config(path).map(|found| *found.data);
        assert_eq!(found, expected, "{case}");
    }
}

#[test]
fn links_are_refused_where_docker_could_not_make_them() {
    use E::{F, H, S};
    let outside = |link: &str, target: &str| {
        Some(Refusal::LinkOutside {
            link: link.to_owned(),
            target: target.to_owned(),
        })
    };
    let hard = |link: &str, target: &str| {
        Some(Refusal::HardLinkTarget {
            link: link.to_owned(),
            target: target.to_owned(),
        })
    };
    let cases: Vec<(&str, Vec<E>, Option<Refusal>)> = vec![
        ("symlink up", vec![S("a/b", "../c")], None),
        (
            "symlink out",
            vec![S("a/b", "../../c")],
            outside("a/b", "../../c"),
        ),
        (
            "absolute symlink",
            vec![S("a", "/etc/passwd")],
            outside("a", "/etc/passwd"),
        ),
        (
            "hard link to an earlier file",
            vec![F("f", 1), H("h", "f")],
            None,
        ),
        (
            "hard link to a later file",
            vec![H("h", "f"), F("f", 1)],
            hard("h", "f"),
        ),
        (
            "hard link to a symlink",
            vec![F("f", 1), S("s", "f"), H("h", "s")],
            hard("h", "s"),
        ),
        (
            "hard link, unclean target",
            vec![F("f", 1), H("h", "./f")],
            outside("h", "./f"),
        ),
        (
            "hard link out",
            vec![F("f", 1), H("h", "../f")],
            outside("h", "../f"),
        ),
    ];
    for (case, list, expected) in cases {
        assert_eq!(entries(&list).err(), expected, "{case}");
    }
}

#[test]
fn link_targets_are_bounded() {
    let mut entries: Entries<()> = Entries::new();
    let target = "t".repeat(entry_names::MAX_NAME);
    let mut refused = None;
    for i in 0..entry_names::MAX_ENTRIES {
        if let Err(refusal) = entries.symlink(&format!("l{i}"), &target) {
            refused = Some((i, refusal));
            break;
        }
    }
    let (at, refusal) = refused.expect("refused before 10,000 links");
    assert_eq!(refusal, Refusal::LinkTargets);
    assert_eq!(at, MAX_TARGET_BYTES / entry_names::MAX_NAME);
}

#[test]
fn refusals_say_what_to_fix() {
    let cases = [
        (Refusal::NoManifest { oci_layout: true }, "docker save"),
        (
            Refusal::NoManifest { oci_layout: true },
            "skopeo copy oci-archive:",
        ),
        (Refusal::NoManifest { oci_layout: false }, "docker save"),
        (
            Refusal::ConfigTooLarge {
                file: "c.json".into(),
                size: 5 << 20,
            },
            "more than the 4 MiB a config may take: make the image's labels",
        ),
        (
            Refusal::ManifestTooLarge { size: 2 << 20 },
            "more than the 1 MiB it may take",
        ),
        (
            Refusal::HardLinkTarget {
                link: "h".into(),
                target: "f".into(),
            },
            "store the file before the link",
        ),
    ];
    for (refusal, says) in cases {
        let message = refusal.to_string();
        assert!(message.contains(says), "{message}");
    }
}
