//! The temporary output file of a `pack` in progress, registered so a signal handler can remove
//! it: the process ends by `exit` there, which runs no destructor, so `NamedTempFile`'s own
//! cleanup would never happen and a `.berth-pack-*.zip.tmp` would stay in the output directory.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tempfile::NamedTempFile;

/// One `pack` per process, so one slot.
static REGISTERED: Mutex<Option<PathBuf>> = Mutex::new(None);

fn slot() -> MutexGuard<'static, Option<PathBuf>> {
    // A panic while holding the lock leaves a plain path behind: still usable.
    REGISTERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps the temporary file registered until [`Registered::finish`] or drop.
#[derive(Debug)]
#[must_use = "the file is unregistered when this is dropped"]
pub struct Registered(());

/// Creates the temporary file with `create` and registers it, with the signal handler kept out
/// so it never sees the file exist unregistered (and leave it behind).
pub fn create(
    create: impl FnOnce() -> std::io::Result<NamedTempFile>,
) -> std::io::Result<(NamedTempFile, Registered)> {
    let mut slot = slot();
    let file = create()?;
    *slot = Some(file.path().to_owned());
    Ok((file, Registered(())))
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
        let new = || NamedTempFile::new_in(dir.path());
        let kept = dir.path().join("kept");
        let (file, registered) = create(new).unwrap();
        registered.finish(|| file.persist(&kept)).unwrap();
        let (file, registered) = create(new).unwrap();
        let dropped = file.path().to_owned();
        // `NamedTempFile` would remove it too; the registration must, as a handler's exit
        // skips destructors.
        std::mem::forget(file);
        drop(registered);
        assert!(kept.exists());
        assert!(!dropped.exists());
        assert_eq!(*slot(), None);
    }
}
