//! `berth-pack pack`: layout, byte-identical contents, determinism, compression options,
//! default output names.

use std::path::Path;

use crate::fixtures::{self, ImageSpec, MANIFEST, MANIFEST_WITHOUT_NAME, berth_pack, zip_entries};

fn write_inputs(dir: &Path, manifest: &str, image: &[u8]) {
    std::fs::write(dir.join("cumulocity.json"), manifest).unwrap();
    std::fs::write(dir.join("image.tar"), image).unwrap();
}

fn pack_to(dir: &Path, output: &str, extra: &[&str]) -> fixtures::Run {
    let mut args = vec![
        "pack",
        "--manifest",
        "cumulocity.json",
        "--image",
        "image.tar",
        "-o",
        output,
    ];
    args.extend_from_slice(extra);
    berth_pack(dir, &args)
}

#[test]
fn pack_writes_manifest_then_unchanged_image_for_both_archive_formats() {
    let spec = ImageSpec::small("hello:1.0");
    let cases: [(&str, Vec<u8>); 2] = [
        ("docker save", fixtures::docker_save(&spec)),
        ("OCI layout", fixtures::oci_layout(&spec)),
    ];
    for (format, image) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_inputs(dir.path(), MANIFEST, &image);
        let run = pack_to(dir.path(), "out.zip", &[]);
        assert_eq!(run.code, 0, "{format}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("wrote out.zip"),
            "{format}: {}",
            run.stdout
        );
        let entries = zip_entries(&dir.path().join("out.zip"));
        let names: Vec<&str> = entries.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(names, ["cumulocity.json", "image.tar"], "{format}");
        assert_eq!(
            entries[0].2,
            MANIFEST.as_bytes(),
            "{format}: manifest must be copied verbatim"
        );
        assert!(
            entries[1].2 == image,
            "{format}: image.tar must be byte-identical"
        );
        assert_eq!(entries[1].1, zip::CompressionMethod::Deflated);
        fixtures::assert_unzip_ok(&dir.path().join("out.zip"));
        assert_eq!(
            fixtures::files_ending(dir.path(), &[".tmp"]),
            Vec::<std::path::PathBuf>::new()
        );
    }
}

#[test]
fn pack_is_deterministic_across_runs_and_input_mtimes() {
    let mut spec = ImageSpec::small("hello:1.0");
    // Several compression chunks, mixed content.
    spec.layers = vec![
        fixtures::text(1_500_000),
        fixtures::noise(1_200_000, 9),
        fixtures::text(300_000),
    ];
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path(), MANIFEST, &fixtures::docker_save(&spec));
    assert_eq!(pack_to(dir.path(), "a.zip", &[]).code, 0);
    assert_eq!(pack_to(dir.path(), "b.zip", &["--jobs", "1"]).code, 0);
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    for name in ["cumulocity.json", "image.tar"] {
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(name))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    assert_eq!(pack_to(dir.path(), "c.zip", &["--jobs", "3"]).code, 0);
    let a = std::fs::read(dir.path().join("a.zip")).unwrap();
    for other in ["b.zip", "c.zip"] {
        assert!(
            a == std::fs::read(dir.path().join(other)).unwrap(),
            "a.zip and {other} differ"
        );
    }
}

#[test]
fn store_and_levels_select_the_zip_method_and_round_trip() {
    let mut spec = ImageSpec::small("hello:1.0");
    spec.layers = vec![fixtures::text(2_000_000), fixtures::noise(500_000, 4)];
    let image = fixtures::docker_save(&spec);
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path(), MANIFEST, &image);
    let cases: [(&str, &[&str], zip::CompressionMethod); 5] = [
        ("store.zip", &["--store"], zip::CompressionMethod::Stored),
        (
            "level0.zip",
            &["--level", "0"],
            zip::CompressionMethod::Stored,
        ),
        (
            "level1.zip",
            &["--level", "1"],
            zip::CompressionMethod::Deflated,
        ),
        ("level6.zip", &[], zip::CompressionMethod::Deflated),
        (
            "level9.zip",
            &["--level", "9"],
            zip::CompressionMethod::Deflated,
        ),
    ];
    let mut sizes = Vec::new();
    for (output, flags, method) in cases {
        let run = pack_to(dir.path(), output, flags);
        assert_eq!(run.code, 0, "{output}: {}", run.stderr);
        let entries = zip_entries(&dir.path().join(output));
        assert_eq!(entries[0].1, method, "{output}: manifest method");
        assert_eq!(entries[1].1, method, "{output}: image method");
        assert!(entries[1].2 == image, "{output}: image differs");
        fixtures::assert_unzip_ok(&dir.path().join(output));
        sizes.push(std::fs::metadata(dir.path().join(output)).unwrap().len());
    }
    assert!(
        sizes[0] > image.len() as u64,
        "stored zip holds the whole image"
    );
    assert!(
        sizes[2] < sizes[0] && sizes[4] <= sizes[2],
        "compression shrinks: {sizes:?}"
    );
}

#[test]
fn zstd_packs_the_image_only_and_the_package_validates() {
    let mut spec = ImageSpec::small("hello:1.0");
    spec.layers = vec![fixtures::text(2_000_000), fixtures::noise(500_000, 4)];
    let image = fixtures::docker_save(&spec);
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path(), MANIFEST, &image);
    let deflated = pack_to(dir.path(), "deflate.zip", &[]);
    assert_eq!(deflated.code, 0, "{}", deflated.stderr);
    let deflated = std::fs::metadata(dir.path().join("deflate.zip"))
        .unwrap()
        .len();
    for (output, flags) in [
        ("zstd.zip", &["--zstd"][..]),
        ("zstd19.zip", &["--zstd", "19"]),
        ("zstd-jobs1.zip", &["--zstd", "1", "--jobs", "1"]),
    ] {
        let run = pack_to(dir.path(), output, flags);
        assert_eq!(run.code, 0, "{output}: {}", run.stderr);
        let path = dir.path().join(output);
        let entries = zip_entries(&path);
        // The manifest stays deflated, so any zip tool (and Cumulocity's checks) reads it.
        assert_eq!(entries[0].1, zip::CompressionMethod::Deflated, "{output}");
        assert_eq!(entries[0].2, MANIFEST.as_bytes(), "{output}");
        assert_eq!(entries[1].1, zip::CompressionMethod::ZSTD, "{output}");
        assert!(entries[1].2 == image, "{output}: image differs");
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            size < deflated * 11 / 10,
            "{output}: {size} against deflate's {deflated}"
        );
        let validated = berth_pack(dir.path(), &["validate", output]);
        assert_eq!(validated.code, 0, "{output}: {}", validated.stderr);
        let inspected = berth_pack(dir.path(), &["inspect", output]);
        assert!(
            inspected.stdout.contains("image.tar zstd"),
            "{}",
            inspected.stdout
        );
    }
    // Each option names one method; a level out of range is a usage error.
    for flags in [
        &["--zstd", "--store"][..],
        &["--zstd", "--level", "9"],
        &["--zstd", "20"],
    ] {
        let run = pack_to(dir.path(), "refused.zip", flags);
        assert_eq!(run.code, 2, "{flags:?}: {}", run.stderr);
        assert!(!dir.path().join("refused.zip").exists(), "{flags:?}");
    }
}

#[test]
fn default_output_name_comes_from_manifest_name_else_image_repository() {
    let cases = [
        (MANIFEST, "hello:1.0", "hello-1.0.0.zip"),
        (
            MANIFEST_WITHOUT_NAME,
            "registry.example.com:5000/team/my-app:7",
            "my-app-2.1.0.zip",
        ),
    ];
    for (manifest, tag, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_inputs(
            dir.path(),
            manifest,
            &fixtures::docker_save(&ImageSpec::small(tag)),
        );
        let run = berth_pack(
            dir.path(),
            &[
                "pack",
                "--manifest",
                "cumulocity.json",
                "--image",
                "image.tar",
            ],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let zips = fixtures::files_ending(dir.path(), &[".zip"]);
        assert_eq!(zips, [dir.path().join(expected)]);
    }
}

#[test]
fn pack_json_output_has_stable_fields() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(
        dir.path(),
        MANIFEST,
        &fixtures::docker_save(&ImageSpec::small("hello:1.0")),
    );
    let run = pack_to(dir.path(), "out.zip", &["--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    assert_eq!(json["output"], "out.zip");
    assert_eq!(json["name"], "hello");
    assert_eq!(json["version"], "1.0.0");
    assert_eq!(json["image"]["tags"][0], "hello:1.0");
    assert_eq!(json["image"]["architecture"], "amd64");
    assert_eq!(
        json["zip_bytes"],
        std::fs::metadata(dir.path().join("out.zip")).unwrap().len()
    );
    assert!(json["image_tar"]["crc32"].as_str().unwrap().len() == 8);
}
