//! Locates the Cargo workspace and builds the binaries the scenarios drive, once per test process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::command::run_ok;

/// The workspace under test: its root, its target dir and the binaries built so far.
#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    /// Shared with the outer `cargo test`, so builds started from tests reuse its artifacts.
    pub target_dir: PathBuf,
    cargo: PathBuf,
    built: Mutex<HashMap<String, PathBuf>>,
}

impl Workspace {
    /// The workspace this test binary was compiled from.
    pub fn get() -> &'static Workspace {
        static WORKSPACE: OnceLock<Workspace> = OnceLock::new();
        WORKSPACE.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the e2e crate lives one level below the workspace root")
                .to_path_buf();
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .map(|dir| {
                    if dir.is_absolute() {
                        dir
                    } else {
                        root.join(dir)
                    }
                })
                .unwrap_or_else(|| root.join("target"));
            // `cargo test` sets CARGO to the cargo that is running us; fall back to PATH when run directly.
            let cargo =
                std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
            Workspace {
                root,
                target_dir,
                cargo,
                built: Mutex::new(HashMap::new()),
            }
        })
    }

    /// Path of `bin` from `package`, built in debug with `cargo build -p <package>` the first time it is asked for.
    /// Tests cannot use `CARGO_BIN_EXE_*` for other packages, so they build through cargo instead.
    pub fn binary(&self, package: &str, bin: &str) -> PathBuf {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(path) = built.get(bin) {
            return path.clone();
        }
        run_ok(
            self.cargo_command()
                .args(["build", "--quiet", "-p", package, "--bin", bin]),
        );
        let path = self.target_dir.join("debug").join(bin);
        assert!(
            path.is_file(),
            "cargo built {package} but {} is missing",
            path.display()
        );
        built.insert(bin.to_string(), path.clone());
        path
    }

    /// A `cargo` command rooted at the workspace and pinned to the shared target dir.
    pub fn cargo_command(&self) -> Command {
        let mut command = Command::new(&self.cargo);
        command
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target_dir);
        command
    }

    /// Directory of an example, e.g. `examples/hello`.
    pub fn example(&self, name: &str) -> PathBuf {
        self.root.join("examples").join(name)
    }
}

/// A short id unique to this test run, for image tags, container names and labels on the shared engine.
pub fn run_id() -> String {
    static RUN_ID: OnceLock<String> = OnceLock::new();
    RUN_ID
        .get_or_init(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            format!("{:x}{:05x}", std::process::id(), nanos & 0xf_ffff)
        })
        .clone()
}
