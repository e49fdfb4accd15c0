//! Builds the hello example's package with its own `build.sh`, as a user would.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{Finished, run_ok};
use crate::docker::TEST_LABEL;
use crate::workspace::Workspace;

/// The package `build.sh` wrote and what the script printed.
pub struct HelloPackage {
    pub zip: PathBuf,
    pub build: Finished,
}

/// Runs `examples/hello/build.sh` in `out`, tagging the image `image` (labelled for test cleanup) and
/// packing it with `berth_pack`; panics unless it succeeds and writes `hello-1.0.0.zip` into `out`.
pub fn build_package(
    workspace: &Workspace,
    berth_pack: &Path,
    image: &str,
    out: &Path,
) -> HelloPackage {
    let build = run_ok(
        Command::new(workspace.example("hello").join("build.sh"))
            .current_dir(out)
            .env("IMAGE", image)
            .env("OUTPUT_DIR", out)
            .env("IMAGE_LABELS", TEST_LABEL)
            .env("BERTH_PACK", berth_pack)
            .env("CARGO_TARGET_DIR", &workspace.target_dir),
    );
    let zip = out.join("hello-1.0.0.zip");
    assert!(zip.is_file(), "build.sh did not write {}", zip.display());
    HelloPackage { zip, build }
}
