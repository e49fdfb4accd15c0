//! The temporary output file of a `pack` in progress, and who reports how the `pack` ended.
//!
//! The file is registered so a signal handler can remove it: the process ends by `exit` there,
//! which runs no destructor, so `NamedTempFile`'s own cleanup would never happen and a
//! `.berth-pack-*.zip.tmp` would stay in the output directory. The report is claimed once, by
//! the command or by the handler, so `--format json` never prints two documents.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tempfile::NamedTempFile;

/// What the command and the signal handler share. One `pack` per process, so one slot.
#[derive(Debug, Default)]
struct Slot {
    /// The temporary file being written, if any.
    temp: Option<PathBuf>,
    /// Set once how the `pack` ended is the command's to report: its output is in place, it
    /// failed, or it is about to say so. Kept under the same lock as `temp`, so a handler sees
    /// either a `pack` still running or an outcome decided, and a rename in place never
    /// follows a report of an interruption.
    decided: bool,
}

static SLOT: Mutex<Slot> = Mutex::new(Slot {
    temp: None,
    decided: false,
});

fn slot() -> MutexGuard<'static, Slot> {
    // A panic while holding the lock leaves a plain path and flag behind: still usable.
    SLOT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    slot.temp = Some(file.path().to_owned());
    Ok((file, Registered(())))
}

impl Registered {
    /// Runs `finish` (moving the file into place) with the signal handler kept out, so it sees
    /// either the temporary file or none, never a half-done rename; then unregisters. From here
    /// the command reports the outcome, whatever `finish` returned.
    pub fn finish<R>(self, finish: impl FnOnce() -> R) -> R {
        let mut slot = slot();
        let result = finish();
        slot.temp = None;
        slot.decided = true;
        result
    }
}

impl Drop for Registered {
    /// On failure, removes the file under the lock, leaving no moment where it exists unregistered.
    /// The command reports that failure.
    fn drop(&mut self) {
        let mut slot = slot();
        if let Some(path) = slot.temp.take() {
            let _ = std::fs::remove_file(path);
        }
        slot.decided = true;
    }
}

/// Claims the report of how the `pack` ended for the command. A signal handler that claimed it
/// first keeps the lock until it exits the process, so then this never returns and the command
/// prints nothing.
pub fn claim_report() {
    slot().decided = true;
}

/// What became of the temporary file when a signal interrupted the `pack`.
#[derive(Debug)]
pub enum PartialOutput {
    /// The `pack` had not created its temporary file yet.
    NoneWritten,
    Removed(PathBuf),
    NotRemoved {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// An interruption the signal handler reports: it holds the lock, so nothing registers, renames
/// or reports after it, until the process exits.
#[derive(Debug)]
pub struct Interrupted {
    pub partial: PartialOutput,
    _held: MutexGuard<'static, Slot>,
}

/// For a signal handler about to exit: removes the temporary file and claims the report, unless
/// the command has claimed it already (`None`: the command's report stands).
pub fn interrupt() -> Option<Interrupted> {
    let mut held = slot();
    let partial = interrupt_slot(&mut held)?;
    Some(Interrupted {
        partial,
        _held: held,
    })
}

fn interrupt_slot(slot: &mut Slot) -> Option<PartialOutput> {
    if slot.decided {
        return None;
    }
    slot.decided = true;
    Some(match slot.temp.take() {
        None => PartialOutput::NoneWritten,
        Some(path) => match std::fs::remove_file(&path) {
            Ok(()) => PartialOutput::Removed(path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                PartialOutput::Removed(path)
            }
            Err(error) => PartialOutput::NotRemoved { path, error },
        },
    })
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
        assert_eq!(slot().temp, None);
        // Both outcomes are the command's to report: a signal now reports nothing.
        assert!(interrupt().is_none());
    }

    #[test]
    fn an_interruption_removes_the_file_once_and_claims_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("temp");
        std::fs::write(&temp, "x").unwrap();
        let mut running = Slot {
            temp: Some(temp.clone()),
            decided: false,
        };
        let partial = interrupt_slot(&mut running);
        assert!(matches!(partial, Some(PartialOutput::Removed(path)) if path == temp));
        assert!(!temp.exists());
        assert!(interrupt_slot(&mut running).is_none(), "a second signal");

        let mut not_started = Slot::default();
        let partial = interrupt_slot(&mut not_started);
        assert!(matches!(partial, Some(PartialOutput::NoneWritten)));

        let mut decided = Slot {
            temp: None,
            decided: true,
        };
        assert!(interrupt_slot(&mut decided).is_none());
    }
}
