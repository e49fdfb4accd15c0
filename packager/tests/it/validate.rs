//! `berth-pack validate` and `inspect`: verdicts, human and JSON output, exit codes.

use std::path::Path;

use package_rules::test_support::{gzip, image_with_layer};

use crate::fixtures::{self, INVALID_MANIFEST, ImageSpec, MANIFEST, berth_pack};

/// Packs `manifest` + `image` with the library's own zip writer (so an invalid manifest can
/// be put in a package, which `pack` refuses to do).
pub fn write_package(path: &Path, entries: &[(&str, &[u8])]) {
    use berth_pack::zip_writer::{Method, ZipWriter};
    let file = std::fs::File::create(path).unwrap();
    let mut zip = ZipWriter::new(std::io::BufWriter::new(file));
    for (name, data) in entries {
        zip.add_entry(name, Method::Deflated, 6, data).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn validate_reports_manifests_with_positions_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.json"), MANIFEST).unwrap();
    std::fs::write(dir.path().join("bad.json"), INVALID_MANIFEST).unwrap();

    let good = berth_pack(dir.path(), &["validate", "good.json"]);
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(
        good.stdout
            .starts_with("good.json: valid (manifest hello 1.0.0)"),
        "{}",
        good.stdout
    );

    let bad = berth_pack(dir.path(), &["validate", "bad.json"]);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stdout
            .starts_with("bad.json: invalid: invalid manifest"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout.contains("bad.json: error at 5:"),
        "{}",
        bad.stdout
    );
    assert!(bad.stdout.contains("/resources/cpu"), "{}", bad.stdout);

    let json = berth_pack(dir.path(), &["validate", "bad.json", "--format", "json"]);
    assert_eq!(json.code, 1);
    let json = json.json();
    assert_eq!(json["valid"], false);
    assert_eq!(json["kind"], "manifest");
    let first = &json["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 5);
    assert_eq!(first["pointer"], "/resources/cpu");
    assert!(first["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[test]
fn validate_and_inspect_packages_of_both_archive_formats() {
    let spec = ImageSpec::small("team/hello:1.0");
    for (format, image) in [
        ("docker-save", fixtures::docker_save(&spec)),
        ("oci-layout", fixtures::oci_layout(&spec)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cumulocity.json"), MANIFEST).unwrap();
        std::fs::write(dir.path().join("image.tar"), &image).unwrap();
        let packed = berth_pack(
            dir.path(),
            &[
                "pack",
                "--manifest",
                "cumulocity.json",
                "--image",
                "image.tar",
            ],
        );
        assert_eq!(packed.code, 0, "{format}: {}", packed.stderr);

        let human = berth_pack(dir.path(), &["validate", "hello-1.0.0.zip"]);
        assert_eq!(human.code, 0, "{format}: {}{}", human.stdout, human.stderr);
        assert!(
            human.stdout.contains(
                "valid (package hello 1.0.0, image linux/amd64, 2 layers, team/hello:1.0)"
            ),
            "{format}: {}",
            human.stdout
        );

        let inspect = berth_pack(dir.path(), &["inspect", "hello-1.0.0.zip"]);
        assert_eq!(inspect.code, 0, "{format}: {}", inspect.stderr);
        for fragment in [
            "team/hello:1.0",
            "linux/amd64",
            "MULTI_TENANT",
            "ROLE_INVENTORY_READ",
            format,
            "image.tar",
        ] {
            assert!(
                inspect.stdout.contains(fragment),
                "{format}: {fragment:?} missing from:\n{}",
                inspect.stdout
            );
        }

        let json = berth_pack(
            dir.path(),
            &["inspect", "hello-1.0.0.zip", "--format", "json"],
        );
        assert_eq!(json.code, 0);
        let json = json.json();
        assert_eq!(json["valid"], true);
        assert_eq!(json["kind"], "package");
        assert_eq!(json["error"], serde_json::Value::Null);
        assert_eq!(json["manifest"]["name"], "hello");
        assert_eq!(
            json["manifest"]["isolation"], "MULTI_TENANT",
            "defaults are resolved"
        );
        assert_eq!(json["image"]["format"], format);
        assert_eq!(json["image"]["tags"], serde_json::json!(["team/hello:1.0"]));
        assert_eq!(json["image"]["os"], "linux");
        assert_eq!(json["image"]["architecture"], "amd64");
        assert_eq!(json["image"]["layer_count"], 2);
        assert_eq!(json["image"]["tar_bytes"], image.len());
        assert!(
            json["image"]["config_digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        let entries = json["package"]["entries"].as_array().unwrap();
        assert_eq!(entries[0]["name"], "cumulocity.json");
        assert_eq!(entries[1]["name"], "image.tar");
        assert_eq!(entries[1]["uncompressed_bytes"], image.len());
        assert_eq!(json["package"]["notes"], serde_json::json!([]));
    }
}

#[test]
fn validate_checks_the_manifest_inside_a_package() {
    let dir = tempfile::tempdir().unwrap();
    let image = fixtures::docker_save(&ImageSpec::small("hello:1.0"));
    write_package(
        &dir.path().join("pkg.zip"),
        &[
            ("cumulocity.json", INVALID_MANIFEST.as_bytes()),
            ("image.tar", &image),
        ],
    );
    let run = berth_pack(dir.path(), &["validate", "pkg.zip"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("pkg.zip/cumulocity.json: error at 5:"),
        "{}",
        run.stdout
    );
    let json = berth_pack(dir.path(), &["validate", "pkg.zip", "--format", "json"]).json();
    assert_eq!(json["valid"], false);
    assert_eq!(
        json["image"]["tags"][0], "hello:1.0",
        "the image is still checked and reported"
    );
}

#[test]
fn unusual_package_layouts_are_valid_with_notes() {
    let dir = tempfile::tempdir().unwrap();
    let image = fixtures::docker_save(&ImageSpec::small("hello:1.0"));
    write_package(
        &dir.path().join("pkg.zip"),
        &[
            ("image.tar", &image),
            ("cumulocity.json", MANIFEST.as_bytes()),
            ("README.md", b"hi"),
        ],
    );
    let run = berth_pack(dir.path(), &["validate", "pkg.zip"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("note: entries are not in the usual order"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("note: unexpected entry \"README.md\""),
        "{}",
        run.stdout
    );
}

#[test]
fn other_archive_shapes_are_understood() {
    let amd64 = ImageSpec::small("multi:1.0");
    let mut arm64 = ImageSpec::small("multi:1.0");
    arm64.architecture = "arm64";
    arm64.layers = vec![fixtures::text(10)];
    let mut arm64_only = ImageSpec::small("multi:1.0");
    arm64_only.architecture = "arm64";
    let cases: [(&str, Vec<u8>, i32, &str); 3] = [
        (
            "multi-platform OCI index",
            fixtures::oci_multi_platform(&[arm64, amd64]),
            0,
            "2 layers, multi:1.0",
        ),
        (
            "OCI index without amd64",
            fixtures::oci_multi_platform(&[arm64_only]),
            1,
            "image is linux/arm64",
        ),
        (
            "docker save with a symlinked layer",
            fixtures::docker_save_with_symlinked_layer(&ImageSpec::small("linked:1")),
            0,
            "2 layers, linked:1",
        ),
    ];
    for (name, image, code, fragment) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_package(
            &dir.path().join("pkg.zip"),
            &[
                ("cumulocity.json", MANIFEST.as_bytes()),
                ("image.tar", &image),
            ],
        );
        let run = berth_pack(dir.path(), &["validate", "pkg.zip"]);
        assert_eq!(run.code, code, "{name}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains(fragment),
            "{name}: {fragment:?} not in {}",
            run.stdout
        );
    }
}

#[test]
fn validate_refuses_layers_that_unpack_beyond_the_platforms_limit() {
    // 64 MiB of zeros gzip to about 64 KiB; 33 such members make one gzip stream that Docker
    // would decompress to 2.06 GiB, past the platform's default limit of 2 GiB.
    let member = gzip(&vec![0u8; 64 << 20]);
    let bomb = member.repeat(33);
    let mut zstd = vec![0x28, 0xb5, 0x2f, 0xfd];
    zstd.extend_from_slice(&[0; 64]);
    let one_member = member.clone();
    // (case, layer, exit code, what the output says)
    let cases: [(&str, Vec<u8>, i32, &str); 3] = [
        ("a gzip layer", one_member, 0, ""),
        (
            "a gzip bomb",
            bomb,
            1,
            "the image unpacks to more than 2147483648 bytes",
        ),
        ("a zstd layer", zstd, 1, "it is zstd-compressed"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (case, layer, code, says) in cases {
        write_package(
            &dir.path().join("pkg.zip"),
            &[
                ("cumulocity.json", MANIFEST.as_bytes()),
                ("image.tar", &image_with_layer(&layer, None, None)),
            ],
        );
        let run = berth_pack(dir.path(), &["validate", "pkg.zip"]);
        assert_eq!(run.code, code, "{case}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains(says) || run.stderr.contains(says),
            "{case}: {}{}",
            run.stdout,
            run.stderr
        );
    }
}

/// The platform's operator can raise `image_size_limit`; `--image-size-limit` (or
/// `BERTH_IMAGE_SIZE_LIMIT`) checks against the raised one, in the platform's spelling.
#[test]
fn the_image_size_limit_can_be_the_platforms() {
    // A little over 64 KiB unpacked, most of it the layer.
    let image = image_with_layer(&fixtures::noise(64 << 10, 5), None, None);
    let dir = tempfile::tempdir().unwrap();
    write_package(
        &dir.path().join("pkg.zip"),
        &[
            ("cumulocity.json", MANIFEST.as_bytes()),
            ("image.tar", &image),
        ],
    );
    let cases: [(&[&str], i32, &str); 5] = [
        (&[], 0, "valid"),
        (
            &["--image-size-limit", "32KiB"],
            1,
            "the image unpacks to more than 32768 bytes (its compressed layers decompressed): make the image smaller, or, if the platform's image_size_limit is larger (its operator can raise it), pass that with --image-size-limit",
        ),
        (&["--image-size-limit", "1MiB"], 0, "valid"),
        (&["--image-size-limit=65536"], 1, "more than 65536 bytes"),
        (
            &["--image-size-limit", "2TB"],
            2,
            "unknown unit; use B, KiB, MiB or GiB",
        ),
    ];
    for (extra, code, says) in cases {
        let mut args = vec!["validate", "pkg.zip"];
        args.extend_from_slice(extra);
        let run = berth_pack(dir.path(), &args);
        let output = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(run.code, code, "{extra:?}: {output}");
        assert!(output.contains(says), "{extra:?}: {says:?} not in {output}");
    }
    // The variable the platform reads its setting from.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_berth-pack"))
        .current_dir(dir.path())
        .args(["validate", "pkg.zip"])
        .env("BERTH_IMAGE_SIZE_LIMIT", "32KiB")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("more than 32768 bytes"), "{stdout}");
}
