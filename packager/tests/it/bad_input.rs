//! Bad inputs: each gets the right exit code and a one-line reason, and never leaves an
//! output file (or temporary file) behind.

use std::path::{Path, PathBuf};

use package_rules::test_support::{archive, file};

use crate::fixtures::{
    self, INVALID_MANIFEST, ImageSpec, MANIFEST, MANIFEST_WITHOUT_NAME, berth_pack,
};
use crate::validate::write_package;

struct PackCase {
    name: &'static str,
    manifest: Option<&'static str>,
    image: Option<Vec<u8>>,
    extra_args: &'static [&'static str],
    code: i32,
    message: &'static str,
}

fn default_args() -> Vec<&'static str> {
    vec![
        "pack",
        "--manifest",
        "cumulocity.json",
        "--image",
        "image.tar",
    ]
}

fn arm64_image() -> Vec<u8> {
    let mut spec = ImageSpec::small("hello:1.0");
    spec.architecture = "arm64";
    fixtures::docker_save(&spec)
}

fn two_images() -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let manifest = br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":[]},{"Config":"c.json","RepoTags":["b:1"],"Layers":[]}]"#;
    archive(&[file("c.json", config), file("manifest.json", manifest)])
}

fn missing_layer() -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let manifest = br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":["abc/layer.tar"]}]"#;
    archive(&[file("c.json", config), file("manifest.json", manifest)])
}

fn untagged_image() -> Vec<u8> {
    let mut spec = ImageSpec::small("x:1");
    spec.tags.clear();
    fixtures::docker_save(&spec)
}

/// A valid image followed by another `manifest.json` under `name` (tagging something else).
fn second_manifest(name: &str) -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let manifest = br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":[]}]"#;
    let hostile = br#"[{"Config":"c.json","RepoTags":["victim:1"],"Layers":[]}]"#;
    archive(&[
        file("c.json", config),
        file("manifest.json", manifest),
        file(name, hostile),
    ])
}

fn truncated(mut data: Vec<u8>, keep: usize) -> Vec<u8> {
    data.truncate(keep);
    data
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    fixtures::files_ending(dir, &[".zip", ".tmp"])
}

#[test]
fn pack_rejects_bad_input_cleanly() {
    let good = || Some(fixtures::docker_save(&ImageSpec::small("hello:1.0")));
    let good_len = good().unwrap().len();
    let cases = vec![
        PackCase {
            name: "missing manifest",
            manifest: None,
            image: good(),
            extra_args: &[],
            code: 2,
            message: "cumulocity.json: No such file",
        },
        PackCase {
            name: "missing image",
            manifest: Some(MANIFEST),
            image: None,
            extra_args: &[],
            code: 2,
            message: "image.tar: No such file",
        },
        PackCase {
            name: "invalid manifest",
            manifest: Some(INVALID_MANIFEST),
            image: good(),
            extra_args: &[],
            code: 1,
            message: "invalid manifest: error at 5:",
        },
        PackCase {
            name: "tar that is not an image",
            manifest: Some(MANIFEST),
            image: Some(archive(&[file("hello.txt", b"hi")])),
            extra_args: &[],
            code: 1,
            message: "not a container image",
        },
        PackCase {
            name: "empty file",
            manifest: Some(MANIFEST),
            image: Some(Vec::new()),
            extra_args: &[],
            code: 1,
            message: "not a container image",
        },
        PackCase {
            name: "not a tar",
            manifest: Some(MANIFEST),
            image: Some(fixtures::noise(20_000, 3)),
            extra_args: &[],
            code: 1,
            message: "not a readable tar archive",
        },
        PackCase {
            name: "arm64 image",
            manifest: Some(MANIFEST),
            image: Some(arm64_image()),
            extra_args: &[],
            code: 1,
            message: "image is linux/arm64",
        },
        PackCase {
            name: "parent traversal",
            manifest: Some(MANIFEST),
            image: Some(archive(&[file("../x", b"hi")])),
            extra_args: &[],
            code: 1,
            message: "unsafe entry name \"../x\"",
        },
        PackCase {
            // The platform refuses it (a drive or NTFS stream name); offline must agree.
            name: "a colon in a name",
            manifest: Some(MANIFEST),
            image: Some(archive(&[file("C:x", b"hi")])),
            extra_args: &[],
            code: 1,
            message: "unsafe entry name \"C:x\"",
        },
        PackCase {
            name: "a second manifest.json that Docker would use",
            manifest: Some(MANIFEST),
            image: Some(second_manifest("manifest.json")),
            extra_args: &[],
            code: 1,
            message: "entry \"manifest.json\" appears more than once",
        },
        PackCase {
            name: "./manifest.json, cleaned onto manifest.json by Docker",
            manifest: Some(MANIFEST),
            image: Some(second_manifest("./manifest.json")),
            extra_args: &[],
            code: 1,
            message: "unsafe entry name \"./manifest.json\"",
        },
        PackCase {
            name: "x/../manifest.json",
            manifest: Some(MANIFEST),
            image: Some(second_manifest("x/../manifest.json")),
            extra_args: &[],
            code: 1,
            message: "unsafe entry name \"x/../manifest.json\"",
        },
        PackCase {
            name: "absolute path",
            manifest: Some(MANIFEST),
            image: Some(archive(&[file("/etc/passwd", b"hi")])),
            extra_args: &[],
            code: 1,
            message: "unsafe entry name \"/etc/passwd\"",
        },
        PackCase {
            name: "truncated inside an entry",
            manifest: Some(MANIFEST),
            image: Some(truncated(good().unwrap(), good_len / 2)),
            extra_args: &[],
            code: 1,
            message: "truncated",
        },
        PackCase {
            name: "truncated before the end marker",
            manifest: Some(MANIFEST),
            image: Some(truncated(good().unwrap(), good_len - 1024 * 9)),
            extra_args: &[],
            code: 1,
            message: "truncated",
        },
        PackCase {
            name: "two images",
            manifest: Some(MANIFEST),
            image: Some(two_images()),
            extra_args: &[],
            code: 1,
            message: "holds 2 images",
        },
        PackCase {
            name: "missing layer",
            manifest: Some(MANIFEST),
            image: Some(missing_layer()),
            extra_args: &[],
            code: 1,
            message: "manifest.json names the layer \"abc/layer.tar\", which is missing from the archive",
        },
        PackCase {
            name: "no name, no tag, no -o",
            manifest: Some(MANIFEST_WITHOUT_NAME),
            image: Some(untagged_image()),
            extra_args: &[],
            code: 2,
            message: "pass -o",
        },
        PackCase {
            name: "output directory missing",
            manifest: Some(MANIFEST),
            image: good(),
            extra_args: &["-o", "no/such/dir/out.zip"],
            code: 2,
            message: "no/such/dir",
        },
        PackCase {
            name: "level out of range",
            manifest: Some(MANIFEST),
            image: good(),
            extra_args: &["--level", "10"],
            code: 2,
            message: "--level",
        },
        PackCase {
            name: "image and docker image",
            manifest: Some(MANIFEST),
            image: good(),
            extra_args: &["--docker-image", "x:1"],
            code: 2,
            message: "cannot be used with",
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        if let Some(manifest) = case.manifest {
            std::fs::write(dir.path().join("cumulocity.json"), manifest).unwrap();
        }
        if let Some(image) = &case.image {
            std::fs::write(dir.path().join("image.tar"), image).unwrap();
        }
        let mut args = default_args();
        args.extend_from_slice(case.extra_args);
        let run = berth_pack(dir.path(), &args);
        assert_eq!(
            run.code, case.code,
            "{}: {}{}",
            case.name, run.stdout, run.stderr
        );
        assert!(
            run.stderr.contains(case.message),
            "{}: {:?} not in {}",
            case.name,
            case.message,
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked"),
            "{}: {}",
            case.name,
            run.stderr
        );
        assert_eq!(
            leftovers(dir.path()),
            Vec::<PathBuf>::new(),
            "{}: output left behind",
            case.name
        );
    }
}

#[test]
fn validate_rejects_bad_packages() {
    let image = fixtures::docker_save(&ImageSpec::small("hello:1.0"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_package(
        &d.join("no-image.zip"),
        &[("cumulocity.json", MANIFEST.as_bytes())],
    );
    write_package(
        &d.join("traversal.zip"),
        &[
            ("cumulocity.json", MANIFEST.as_bytes()),
            ("../image.tar", &image),
        ],
    );
    write_package(
        &d.join("absolute.zip"),
        &[
            ("/cumulocity.json", MANIFEST.as_bytes()),
            ("image.tar", &image),
        ],
    );
    write_package(
        &d.join("arm.zip"),
        &[
            ("cumulocity.json", MANIFEST.as_bytes()),
            ("image.tar", &arm64_image()),
        ],
    );
    write_package(
        &d.join("not-image.zip"),
        &[
            ("cumulocity.json", MANIFEST.as_bytes()),
            ("image.tar", b"hello"),
        ],
    );
    write_package(
        &d.join("good.zip"),
        &[
            ("cumulocity.json", MANIFEST.as_bytes()),
            ("image.tar", &image),
        ],
    );
    // Duplicate or disguised entries: the platform refuses them, so validate does too.
    let other = untagged_image();
    type Entries<'a> = &'a [(&'a str, &'a [u8])];
    let disguised: [(&str, Entries); 5] = [
        (
            "two-images.zip",
            &[
                ("cumulocity.json", MANIFEST.as_bytes()),
                ("image.tar", &image),
                ("image.tar", &other),
            ],
        ),
        (
            "two-manifests.zip",
            &[
                ("cumulocity.json", MANIFEST.as_bytes()),
                ("cumulocity.json", INVALID_MANIFEST.as_bytes()),
                ("image.tar", &image),
            ],
        ),
        (
            "dot-image.zip",
            &[
                ("cumulocity.json", MANIFEST.as_bytes()),
                ("image.tar", &image),
                ("./image.tar", &other),
            ],
        ),
        (
            "case-image.zip",
            &[
                ("cumulocity.json", MANIFEST.as_bytes()),
                ("image.tar", &image),
                ("IMAGE.TAR", &other),
            ],
        ),
        (
            "second-image-manifest.zip",
            &[
                ("cumulocity.json", MANIFEST.as_bytes()),
                ("image.tar", &second_manifest("manifest.json")),
            ],
        ),
    ];
    for (file, entries) in disguised {
        write_package(&d.join(file), entries);
    }
    // 20,000 empty entries: the zip crate would load them all before any check.
    let names: Vec<String> = (0..20_000).map(|i| format!("e{i}")).collect();
    let mut many: Vec<(&str, &[u8])> = vec![
        ("cumulocity.json", MANIFEST.as_bytes()),
        ("image.tar", &image),
    ];
    many.extend(names.iter().map(|n| (n.as_str(), &b""[..])));
    write_package(&d.join("many-entries.zip"), &many);
    let good = std::fs::read(d.join("good.zip")).unwrap();
    std::fs::write(d.join("truncated.zip"), &good[..good.len() / 2]).unwrap();
    std::fs::write(d.join("image.tar"), &image).unwrap();
    // A stored package with one flipped byte inside a layer: the tar still parses, the CRC
    // of image.tar no longer matches.
    std::fs::write(d.join("cumulocity.json"), MANIFEST).unwrap();
    let packed = berth_pack(
        d,
        &[
            "pack",
            "--manifest",
            "cumulocity.json",
            "--image",
            "image.tar",
            "--store",
            "-o",
            "stored.zip",
        ],
    );
    assert_eq!(packed.code, 0, "{}", packed.stderr);
    let mut corrupt = std::fs::read(d.join("stored.zip")).unwrap();
    let at = corrupt
        .windows(20)
        .position(|w| w == &fixtures::text(20)[..])
        .expect("layer text is stored verbatim")
        + 100;
    corrupt[at] ^= 0x55;
    std::fs::write(d.join("corrupt.zip"), corrupt).unwrap();

    let cases = [
        ("missing.zip", 2, "No such file"),
        ("no-image.zip", 1, "the zip has no image.tar"),
        ("traversal.zip", 1, "unsafe entry name \"../image.tar\""),
        ("absolute.zip", 1, "unsafe entry name \"/cumulocity.json\""),
        ("arm.zip", 1, "image is linux/arm64"),
        ("not-image.zip", 1, "image.tar:"),
        ("truncated.zip", 1, "not a readable zip archive"),
        ("many-entries.zip", 1, "more than the 64 entries"),
        ("image.tar", 1, "this is a tar archive"),
        ("corrupt.zip", 1, "checksum"),
        ("two-images.zip", 1, "duplicate file names"),
        ("two-manifests.zip", 1, "duplicate file names"),
        ("dot-image.zip", 1, "unsafe entry name \"./image.tar\""),
        (
            "case-image.zip",
            1,
            "entry \"IMAGE.TAR\" appears more than once",
        ),
        (
            "second-image-manifest.zip",
            1,
            "entry \"manifest.json\" appears more than once",
        ),
    ];
    for (file, code, message) in cases {
        let run = berth_pack(d, &["validate", file]);
        assert_eq!(run.code, code, "{file}: {}{}", run.stdout, run.stderr);
        let output = format!("{}{}", run.stdout, run.stderr);
        assert!(
            output.contains(message),
            "{file}: {message:?} not in {output}"
        );
        assert!(!output.contains("panicked"), "{file}: {output}");
        let json = berth_pack(d, &["validate", file, "--format", "json"]);
        assert_eq!(json.code, code, "{file} (json)");
        let json = json.json();
        assert_eq!(json["valid"], false, "{file}");
        assert!(
            json["error"].as_str().is_some_and(|e| e.contains(message)),
            "{file}: {json}"
        );
    }
}

#[test]
fn usage_errors_exit_2_with_help() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 5] = [
        &[],
        &["validate"],
        &["frobnicate"],
        &["pack", "--manifest", "cumulocity.json"],
        &[
            "pack",
            "--manifest",
            "cumulocity.json",
            "--image",
            "image.tar",
            "--jobs",
            "0",
        ],
    ];
    for args in cases {
        let run = berth_pack(dir.path(), args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("Usage:") || run.stderr.contains("invalid value"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let help = berth_pack(dir.path(), &["--help"]);
    assert_eq!(help.code, 0);
    assert!(
        help.stdout
            .contains("Exit codes: 0 success/valid, 1 invalid input"),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout
            .contains("2 usage, IO, connection/TLS error, a platform failure (HTTP 5xx) or a platform busy for now (HTTP 408, 429)"),
        "{}",
        help.stdout
    );
}

#[test]
fn pack_refuses_an_output_that_is_a_directory_or_an_input_before_reading() {
    // (-o value, message excerpt)
    // (-o value, --image value, message excerpt); a missing image shows nothing was read first.
    let cases = [
        (
            "image.tar",
            "image.tar",
            "output image.tar: is the --image input",
        ),
        (
            "./image.tar",
            "image.tar",
            "output ./image.tar: is the --image input",
        ),
        (
            "link.tar",
            "image.tar",
            "output link.tar: is the --image input",
        ),
        (
            "cumulocity.json",
            "image.tar",
            "output cumulocity.json: is the --manifest input",
        ),
        ("out", "image.tar", "output out: is a directory"),
        ("out/", "image.tar", "output out/: is a directory"),
        (
            "missing/",
            "image.tar",
            "output missing/: names a directory",
        ),
        ("out", "missing.tar", "output out: is a directory"),
    ];
    let image = fixtures::docker_save(&ImageSpec::small("hello:1.0"));
    for (output, image_arg, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cumulocity.json"), MANIFEST).unwrap();
        std::fs::write(dir.path().join("image.tar"), &image).unwrap();
        std::fs::hard_link(dir.path().join("image.tar"), dir.path().join("link.tar")).unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let args = [
            "pack",
            "--manifest",
            "cumulocity.json",
            "--image",
            image_arg,
            "-o",
            output,
        ];
        let run = berth_pack(dir.path(), &args);
        assert_eq!(run.code, 2, "{output}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{output}: {}", run.stderr);
        assert!(
            std::fs::read(dir.path().join("image.tar")).unwrap() == image,
            "{output}: the image was changed"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cumulocity.json")).unwrap(),
            MANIFEST,
            "{output}"
        );
        assert_eq!(leftovers(dir.path()), Vec::<PathBuf>::new(), "{output}");
        assert_eq!(
            fixtures::files_ending(&dir.path().join("out"), &[""]).len(),
            0,
            "{output}"
        );
    }
}

#[test]
fn usage_errors_with_format_json_still_print_one_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let pack = ["pack", "--manifest", "m.json", "--image", "i.tar"];
    // (arguments, error excerpt, a field of that command's failure document)
    let cases: [(Vec<&str>, &str, &str); 4] = [
        (
            [&pack[..], &["--level", "12", "--format", "json"]].concat(),
            "12",
            "valid",
        ),
        (
            [&pack[..], &["--format=json", "--bogus"]].concat(),
            "--bogus",
            "valid",
        ),
        (
            vec!["validate", "--format", "json"],
            "not provided: <FILE>",
            "diagnostics",
        ),
        (
            vec![
                "deploy",
                "x.zip",
                "--format",
                "json",
                "--stall-timeout",
                "0",
            ],
            "0",
            "subscribed",
        ),
    ];
    for (args, excerpt, field) in cases {
        let run = berth_pack(dir.path(), &args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("Usage:") || run.stderr.contains("invalid value"),
            "{args:?}"
        );
        let document = run.json();
        let error = document["error"].as_str().unwrap_or_default();
        assert!(error.contains(excerpt), "{args:?}: {document}");
        assert!(document.get(field).is_some(), "{args:?}: {document}");
    }
    let help = berth_pack(dir.path(), &["pack", "--format", "json", "--help"]);
    assert_eq!(help.code, 0);
    assert!(
        help.stdout.starts_with("Build a package zip"),
        "{}",
        help.stdout
    );
}
