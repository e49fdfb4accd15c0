//! `pack` interrupted by a signal leaves no temporary file behind and exits as a shell expects.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::fixtures::{self, MANIFEST};

/// A tar whose first entry claims `size` bytes of zeros, stored sparse: `pack` reads it for
/// far longer than the test needs, without it taking that much disk.
fn sparse_image(path: &Path, size: u64) {
    let mut header = tar::Header::new_gnu();
    header.set_path("blob/layer.tar").unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    std::fs::write(path, header.as_bytes()).unwrap();
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
fn wait_for_temp_file(dir: &Path, child: &mut Child) {
    while fixtures::files_ending(dir, &[".tmp"]).is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("pack ended before writing anything: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_signal_during_pack_removes_the_temporary_file() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cumulocity.json"), MANIFEST).unwrap();
        sparse_image(&dir.path().join("image.tar"), 64 << 30);
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth-pack"))
            .current_dir(dir.path())
            .args([
                "pack",
                "--manifest",
                "cumulocity.json",
                "--image",
                "image.tar",
            ])
            .args(["-o", "out.zip", "--jobs", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_temp_file(dir.path(), &mut child);
        let killed = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success(), "kill -{signal}");
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
