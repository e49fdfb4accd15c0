//! `pack --docker-image` against the real Docker engine: a tiny image made with
//! `docker import`, exported through bollard, then validated and inspected.

use std::io::Write;
use std::process::{Command, Stdio};

use package_rules::test_support::{archive, file};

use crate::fixtures::{self, MANIFEST, berth_pack};

/// A test image in the local engine, removed on drop.
struct TestImage {
    reference: String,
}

impl TestImage {
    fn import() -> Self {
        let run_id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let reference = format!("berth-test-{run_id}:1");
        let rootfs = archive(&[file("hello.txt", b"hello from berth")]);
        let mut child = Command::new("docker")
            .args(["import", "--change", "LABEL berth.test=1", "-", &reference])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the docker CLI must be installed for this test");
        child.stdin.take().unwrap().write_all(&rootfs).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        TestImage { reference }
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "--force", &self.reference])
            .output();
    }
}

#[test]
fn pack_exports_an_image_from_the_docker_engine() {
    let image = TestImage::import();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cumulocity.json"), MANIFEST).unwrap();
    let run = berth_pack(
        dir.path(),
        &[
            "pack",
            "--manifest",
            "cumulocity.json",
            "--docker-image",
            &image.reference,
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    let validate = berth_pack(dir.path(), &["validate", "hello-1.0.0.zip"]);
    assert_eq!(validate.code, 0, "{}{}", validate.stdout, validate.stderr);
    let json = berth_pack(
        dir.path(),
        &["inspect", "hello-1.0.0.zip", "--format", "json"],
    )
    .json();
    assert_eq!(json["image"]["tags"], serde_json::json!([image.reference]));
    assert_eq!(json["image"]["architecture"], "amd64");
    assert_eq!(json["image"]["layer_count"], 1);
    fixtures::assert_unzip_ok(&dir.path().join("hello-1.0.0.zip"));
}

#[test]
fn pack_reports_a_missing_docker_image_as_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cumulocity.json"), MANIFEST).unwrap();
    let reference = format!("berth-test-missing-{}:1", std::process::id());
    let run = berth_pack(
        dir.path(),
        &[
            "pack",
            "--manifest",
            "cumulocity.json",
            "--docker-image",
            &reference,
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("has no image"), "{}", run.stderr);
    assert_eq!(
        fixtures::files_ending(dir.path(), &[".zip", ".tmp"]),
        Vec::<std::path::PathBuf>::new()
    );
}
