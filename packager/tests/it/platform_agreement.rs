//! Archives `berth-pack validate` and the platform once judged apart: each now gets the verdict
//! the platform gives on upload (`platform/src/package/image_tar/tests.rs` and
//! `platform/tests/it/package_agreement.rs` hold the same cases online), as both apply one rule
//! (`package_rules::docker_load`, the manifest schema's version bound).

use package_rules::test_support::{
    self, Entry, archive, blob_name, config, file, hard_link, symlink,
};

use crate::fixtures::{self, ImageSpec, MANIFEST, berth_pack};
use crate::validate::write_package;

/// `manifest.json` naming the config `config` and the one layer `l/layer.tar`.
fn manifest(config: &str) -> String {
    test_support::manifest(config, &["agree:1"], &["l/layer.tar"])
}

fn layer() -> Entry {
    file("l/layer.tar", archive(&[file("app/hello", b"hello")]))
}

/// The docker-save archive of `config`, stored at `blobs/sha256/<digest>` and named by the
/// manifest as `named`, reached by `link` when given.
fn saved(config: &[u8], named: &str, link: Option<Entry>) -> Vec<u8> {
    let mut entries = vec![layer(), file(blob_name(config), config)];
    entries.extend(link);
    entries.push(file("manifest.json", manifest(named)));
    archive(&entries)
}

/// `validate` of a package of `manifest` and `image`: its exit code and output.
fn validate(manifest: &str, image: &[u8], extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    write_package(
        &dir.path().join("pkg.zip"),
        &[
            ("cumulocity.json", manifest.as_bytes()),
            ("image.tar", image),
        ],
    );
    let mut args = vec!["validate", "pkg.zip"];
    args.extend_from_slice(extra);
    let run = berth_pack(dir.path(), &args);
    (run.code, format!("{}{}", run.stdout, run.stderr))
}

#[test]
fn offline_verdicts_are_the_platforms() {
    let small = config(100);
    let blob = blob_name;
    // Configs over the platform's old 1 MiB, within the 4 MiB both now take, and over that; a
    // manifest.json within berth-pack's old 4 MiB, over the 1 MiB both now take.
    let (large, too_large) = (config(2 << 20), config(5 << 20));
    let mut padded_manifest = manifest(&blob(&small)).into_bytes();
    padded_manifest.extend(std::iter::repeat_n(b' ', 2 << 20));
    let padded_manifest = archive(&[
        layer(),
        file(blob(&small), &small),
        file("manifest.json", padded_manifest),
    ]);
    let version = |version: &str| MANIFEST.replace("\"1.0.0\"", &format!("\"{version}\""));
    let longest = format!("1.0.0-{}", "a".repeat(122));
    // (case, manifest, image, exit code, what the output says)
    let cases: Vec<(&str, String, Vec<u8>, i32, &str)> = vec![
        // 1: Docker's loader reads only manifest.json; the platform refused these with 422.
        (
            "an OCI layout without manifest.json",
            MANIFEST.into(),
            fixtures::oci_layout_only(&ImageSpec::small("oci:1")),
            1,
            "it is an OCI image layout (index.json) without the manifest.json Docker's loader reads: save the image with `docker save`",
        ),
        (
            "Docker 25's OCI layout with manifest.json",
            MANIFEST.into(),
            fixtures::oci_layout(&ImageSpec::small("oci:1")),
            0,
            "valid",
        ),
        // 2: one bound for manifest.json (1 MiB), one for the config (4 MiB).
        (
            "a 2 MiB config",
            MANIFEST.into(),
            saved(&large, &blob(&large), None),
            0,
            "valid",
        ),
        (
            "a 5 MiB config",
            MANIFEST.into(),
            saved(&too_large, &blob(&too_large), None),
            1,
            "bytes, more than the 4 MiB a config may take: make the image's labels, environment or history smaller",
        ),
        (
            "a 2 MiB manifest.json",
            MANIFEST.into(),
            padded_manifest,
            1,
            "manifest.json is 2097",
        ),
        // 3: the config found as Docker opens it, through links, whatever its name.
        (
            "a config through a symlink",
            MANIFEST.into(),
            saved(&small, "c.json", Some(symlink("c.json", blob(&small)))),
            0,
            "valid",
        ),
        (
            "a config through a hard link",
            MANIFEST.into(),
            saved(&small, "c.json", Some(hard_link("c.json", blob(&small)))),
            0,
            "valid",
        ),
        (
            "a hard link before its file",
            MANIFEST.into(),
            archive(&[
                layer(),
                hard_link("c.json", blob(&small)),
                file(blob(&small), &small),
                file("manifest.json", manifest("c.json")),
            ]),
            1,
            "hard link \"c.json\" names \"blobs/sha256/",
        ),
        (
            "jib's config.json",
            MANIFEST.into(),
            archive(&[
                layer(),
                file("config.json", &small),
                file("manifest.json", manifest("config.json")),
            ]),
            0,
            "valid",
        ),
        // 4: a version is the image's Docker tag.
        (
            "a 128-character version",
            version(&longest),
            saved(&small, &blob(&small), None),
            0,
            "valid",
        ),
        (
            "a 129-character version",
            version(&format!("{longest}b")),
            saved(&small, &blob(&small), None),
            1,
            "`version` may be at most 128 characters long, it has 129",
        ),
    ];
    // Every row is run, and every disagreement reported.
    let mut wrong = Vec::new();
    for (case, manifest, image, code, says) in cases {
        let (got, output) = validate(&manifest, &image, &[]);
        if got != code || !output.contains(says) {
            wrong.push(format!(
                "{case}: exit {got}, not {code} saying {says:?}: {output}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
