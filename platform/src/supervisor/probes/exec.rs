//! Exec probes, and the bound on what they leave behind. A command still running at its
//! attempt's timeout runs on (no engine API kills an exec: the engine keeps its record, the
//! container its process), so a command that hangs would add one process per period until the
//! container's pids limit. Each probe of a run therefore remembers the last command that
//! outlived its attempt, and starts no other while the engine says it still runs: at most one
//! lingering command per probe (liveness, readiness) per container run. [`gate`] decides,
//! [`ExecProbe::check`] asks the engine and acts.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::ProbeError;
use crate::runtime::{ExecOutcome, Runtime, RuntimeError};
use crate::sync::MutexExt;

/// A command whose attempt timed out while it ran.
#[derive(Debug, Clone)]
struct Lingering {
    /// The engine's exec id.
    exec: String,
    started: Instant,
}

/// One exec probe (liveness or readiness) of one container run, with the command its last
/// attempt left running, if any. Dropped with the run's probe task.
#[derive(Debug, Default)]
pub(super) struct ExecProbe {
    lingering: Mutex<Option<Lingering>>,
}

/// Whether an attempt may start its command.
#[derive(Debug)]
pub(super) enum Gate {
    /// Start it (and forget the last command, if any: it has ended).
    Run,
    /// Fail the attempt without starting anything, for this reason (still remembering).
    Refuse(ProbeError),
}

/// The last command left running: how long ago it was started, and whether the engine says it
/// still runs.
pub(super) type Last = (Duration, Result<bool, RuntimeError>);

/// Decides an attempt from the last command left running, if any. An engine that cannot tell
/// refuses too: the bound then holds whatever the engine answers, and little is lost, as an
/// engine that fails an inspect would hardly run an exec; a liveness probe refused long enough
/// restarts the container, which ends the command and this memory with the run.
pub(super) fn gate(last: Option<Last>) -> Gate {
    match last {
        None | Some((_, Ok(false))) => Gate::Run,
        Some((age, Ok(true))) => Gate::Refuse(ProbeError::StillRunning(age)),
        Some((age, Err(e))) => Gate::Refuse(ProbeError::Lingering(age, e)),
    }
}

impl ExecProbe {
    /// One attempt: `command` in instance `id` within `timeout`, unless the last attempt's
    /// command still runs.
    pub(super) async fn check(
        &self,
        runtime: &dyn Runtime,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(), ProbeError> {
        let last = self.lingering().clone();
        let last = match last {
            Some(l) => Some((l.started.elapsed(), runtime.exec_running(id, &l.exec).await)),
            None => None,
        };
        match gate(last) {
            Gate::Refuse(reason) => return Err(reason),
            Gate::Run => *self.lingering() = None,
        }
        let started = Instant::now();
        match runtime.exec_command(id, command, timeout).await {
            Ok(ExecOutcome::Exited { success: true }) => Ok(()),
            Ok(ExecOutcome::Exited { success: false }) => {
                Err(ProbeError::Command(command.to_vec()))
            }
            Ok(ExecOutcome::TimedOut { exec }) => {
                *self.lingering() = Some(Lingering { exec, started });
                Err(ProbeError::Command(command.to_vec()))
            }
            Err(e) => Err(ProbeError::Runtime(e)),
        }
    }

    fn lingering(&self) -> std::sync::MutexGuard<'_, Option<Lingering>> {
        self.lingering.locked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_starts_only_once_the_last_one_ended() {
        let age = Duration::from_secs(42);
        let engine_error = || RuntimeError::Docker("connection reset".into());
        // (the last command left running and what the engine says of it, the reason of a refusal)
        let cases: [(Option<Last>, Option<&str>); 4] = [
            (None, None),
            (
                Some((age, Ok(true))),
                Some("the last probe command (started 42 s ago) is still running"),
            ),
            (Some((age, Ok(false))), None),
            (
                Some((age, Err(engine_error()))),
                Some(
                    "cannot tell whether the last probe command (started 42 s ago) is still \
                     running: Docker: connection reset",
                ),
            ),
        ];
        for (last, refusal) in cases {
            let case = format!("{last:?}");
            match (gate(last), refusal) {
                (Gate::Run, None) => {}
                (Gate::Refuse(reason), Some(expected)) => {
                    assert_eq!(reason.to_string(), expected, "{case}");
                }
                (gate, expected) => panic!("{case}: {gate:?}, expected refusal {expected:?}"),
            }
        }
    }
}
