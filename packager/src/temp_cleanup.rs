//! The temporary output file of a `pack` in progress, registered so a signal handler can remove
//! it: the process ends by `exit` there, which runs no destructor, so `NamedTempFile`'s own
//! cleanup would never happen and a `.berth-pack-*.zip.tmp` would stay in the output directory.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// One `pack` per process, so one slot.
static REGISTERED: Mutex<Option<PathBuf>> = Mutex::new(None);

fn slot() -> MutexGuard<'static, Option<PathBuf>> {
    // A panic while holding the lock leaves a plain path behind: still usable.
    REGISTERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps `path` registered until [`Registered::finish`] or drop.
#[derive(Debug)]
#[must_use = "the file is unregistered when this is dropped"]
pub struct Registered(());

/// Registers the temporary file at `path`.
pub fn register(path: &Path) -> Registered {
    *slot() = Some(path.to_owned());
    Registered(())
}

impl Registered {
    /// Runs `finish` (moving the file into place) with the signal handler kept out, so it sees
    /// either the temporary file or none, never a half-done rename; then unregisters.
    pub fn finish<R>(self, finish: impl FnOnce() -> R) -> R {
        let mut slot = slot();
        let result = finish();
        *slot = None;
        result
    }
}

impl Drop for Registered {
    /// On failure, removes the file under the lock, leaving no moment where it exists unregistered.
    fn drop(&mut self) {
        if let Some(path) = slot().take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes the registered file, if any, and keeps the slot locked so nothing registers or
/// renames after it: for a handler about to exit the process.
pub fn remove_for_exit() -> MutexGuard<'static, Option<PathBuf>> {
    let mut slot = slot();
    if let Some(path) = slot.take() {
        let _ = std::fs::remove_file(path);
    }
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_file_stays_a_dropped_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        let dropped = dir.path().join("dropped");
        std::fs::write(&kept, "x").unwrap();
        std::fs::write(&dropped, "x").unwrap();
        register(&kept).finish(|| ());
        drop(register(&dropped));
        assert!(kept.exists());
        assert!(!dropped.exists());
        assert_eq!(*slot(), None);
    }
}
