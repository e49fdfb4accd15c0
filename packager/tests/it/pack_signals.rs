//! `pack` interrupted by a signal leaves no temporary file behind, exits as a shell expects and,
//! with `--format json`, says so in one JSON document.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use package_rules::test_support::{file, raw_entry};

use crate::fixtures::{self, MANIFEST};

/// A tar whose first entry claims `size` bytes of zeros, stored sparse: `pack` reads it for
/// far longer than the test needs, without it taking that much disk.
fn sparse_image(path: &Path, size: u64) {
    let header = raw_entry(&file("blob/layer.tar", b"").header_size(size));
    std::fs::write(path, header).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(512 + size)
        .unwrap();
}

#[expect(
    clippy::disallowed_methods,
    reason = "a blocking test polls the file system"
)]
fn wait_for_temp_file(dir: &Path, child: &mut Child) -> PathBuf {
    loop {
        if let Some(temp) = fixtures::files_ending(dir, &[".tmp"]).pop() {
            return temp;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("pack ended before writing anything: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `pack` of a 64 GiB sparse image in a new temporary directory, running until it is signalled.
fn start_pack(format: &[&str], stdout: Stdio) -> (tempfile::TempDir, Child) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cumulocity.json"), MANIFEST).unwrap();
    sparse_image(&dir.path().join("image.tar"), 64 << 30);
    let child = Command::new(env!("CARGO_BIN_EXE_berth-pack"))
        .current_dir(dir.path())
        .args([
            "pack",
            "--manifest",
            "cumulocity.json",
            "--image",
            "image.tar",
        ])
        .args(["-o", "out.zip", "--jobs", "1"])
        .args(format)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (dir, child)
}

fn kill(signal: &str, child: &Child) {
    let killed = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success(), "kill -{signal}");
}

#[test]
fn a_signal_during_pack_removes_the_temporary_file() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let (dir, mut child) = start_pack(&[], Stdio::null());
        wait_for_temp_file(dir.path(), &mut child);
        kill(signal, &child);
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "SIG{signal}: {} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            fixtures::files_ending(dir.path(), &[".tmp", ".zip"]),
            Vec::<std::path::PathBuf>::new(),
            "SIG{signal}"
        );
    }
}

#[test]
fn a_signal_during_pack_with_json_prints_one_document() {
    let (dir, mut child) = start_pack(&["--format", "json"], Stdio::piped());
    let temp = wait_for_temp_file(dir.path(), &mut child);
    kill("TERM", &child);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(143),
        "{} {stderr}",
        output.status
    );
    let documents: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {stdout:?}"));
    let [document] = documents.as_slice() else {
        panic!("{} documents, not one: {stdout:?}", documents.len());
    };
    let temp_name = temp.file_name().unwrap().to_string_lossy();
    let error = document["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("interrupted by SIGTERM; the partial output ")
            && error.ends_with(&format!("{temp_name} was removed")),
        "{document:#}"
    );
    assert_eq!(document["file"], "cumulocity.json", "{document:#}");
    assert_eq!(document["valid"], false, "{document:#}");
    assert_eq!(document["kind"], serde_json::Value::Null, "{document:#}");
    assert_eq!(
        document["diagnostics"],
        serde_json::json!([]),
        "{document:#}"
    );
    assert!(!temp.exists(), "{}", temp.display());
    assert_eq!(
        fixtures::files_ending(dir.path(), &[".tmp", ".zip"]),
        Vec::<PathBuf>::new()
    );
}
