//! `berth-pack validate` on hostile manifests of the size limit (1 MiB) stays within a fixed
//! address space and reports a bounded list of diagnostics. The limit is set with `ulimit -v`
//! in the shell that starts the binary: a validator that grows with key length × array length
//! (gigabytes for these shapes) is killed by the allocator instead of exhausting the machine.

use std::process::Command;

use package_rules::test_support::long_name_header;

/// Address space for the whole `berth-pack` process: code, stacks, the text, the validation.
const ADDRESS_SPACE_KIB: usize = 512 << 10;
const LIMIT: usize = 1 << 20;
/// 50 errors, 50 warnings and a note for each severity with more.
const MAX_DIAGNOSTICS: usize = 102;

fn repeat(unit: &str, n: usize) -> String {
    vec![unit; n].join(",")
}

/// A manifest with `members` and one long key whose value is `value`, filling the limit.
fn long_key(prefix: &str, value: &str) -> String {
    let head = r#"{"apiVersion":"2","version":"1.0.0","provider":{"name":"Acme"},""#;
    let room = LIMIT - head.len() - value.len() - 4;
    let key = prefix.repeat(room / prefix.len());
    format!("{head}{key}\":{value}}}")
}

#[test]
fn hostile_manifests_are_validated_in_bounded_memory() {
    let zeros = format!("[{}]", repeat("0", 9_900));
    let cases: [(&str, String, &str); 6] = [
        ("long key × long array", long_key("k", &zeros), "valid"),
        ("escaped key × long array", long_key("~/", &zeros), "valid"),
        (
            "many schema errors",
            format!(
                r#"{{"apiVersion":"2","version":"1.0.0","provider":{{"name":"A"}},"roles":{zeros}}}"#
            ),
            "more errors were found than are listed",
        ),
        (
            "too many values",
            format!("[{}]", repeat("0", LIMIT / 2 - 1)),
            "more than 10000 JSON values",
        ),
        (
            "nesting past the limit",
            "[".repeat(LIMIT),
            "nested more than 127 levels",
        ),
        (
            "deep nesting under long keys (the JSON report nests it 2 deeper)",
            format!(
                r#"{{"apiVersion":"2","version":"1.0.0","provider":{{"name":"A"}},{}"x":[{}]{}}}"#,
                format!("\"{}\":{{", "n".repeat(8000)).repeat(120),
                repeat("0", 9_800),
                "}".repeat(120)
            ),
            "valid",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (case, text, expected) in cases {
        assert!(text.len() <= LIMIT, "{case}: {} bytes", text.len());
        let path = dir.path().join("cumulocity.json");
        std::fs::write(&path, &text).unwrap();
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" validate --format json \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_berth-pack"))
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.code().is_some_and(|code| code <= 1),
            "{case}: berth-pack did not finish ({}): {stderr:.2000}",
            output.status
        );
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {stdout:.2000}"));
        let diagnostics = report["diagnostics"].as_array().unwrap();
        assert!(
            diagnostics.len() <= MAX_DIAGNOSTICS,
            "{case}: {} diagnostics",
            diagnostics.len()
        );
        if expected == "valid" {
            assert_eq!(report["valid"], true, "{case}: {stdout:.2000}");
        } else {
            assert_eq!(report["valid"], false, "{case}: {stdout:.2000}");
            assert!(
                diagnostics
                    .iter()
                    .any(|d| d["message"].as_str().unwrap_or_default().contains(expected)),
                "{case}: no diagnostic says {expected:?}: {stdout:.2000}"
            );
        }
    }
}

/// An image archive whose first header is a GNU long name claiming 1 GiB of name (a sparse file
/// here; inside a zip, a megabyte of deflate): the tar reader would hold it all before looking at
/// the entry it names. Packing it fails with a clear error in the same address space as above.
#[test]
fn an_image_archives_long_name_headers_are_read_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cumulocity.json"),
        crate::fixtures::MANIFEST,
    )
    .unwrap();
    let image = std::fs::File::create(dir.path().join("image.tar")).unwrap();
    std::io::Write::write_all(&mut &image, &long_name_header(1 << 30)).unwrap();
    image.set_len(512 + (1 << 30)).unwrap();
    let output = Command::new("sh")
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" pack --format json \
             --manifest cumulocity.json --image image.tar -o out.zip"
        ))
        .arg(env!("CARGO_BIN_EXE_berth-pack"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "berth-pack should refuse the archive: {stdout:.2000} {stderr:.2000}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:.2000}"));
    assert!(
        report
            .to_string()
            .contains("headers (long names, PAX extensions)"),
        "{report}"
    );
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["cumulocity.json", "image.tar"]);
}
