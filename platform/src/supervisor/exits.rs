//! The audit record of an instance exit: an OOM kill distinctly (with the limit, the peak
//! memory seen and the last log lines), any other exit as a restart.

use serde_json::json;

use super::spec::{self, Deployment};
use super::state::Part;
use super::{Supervisor, journal};
use crate::runtime::InstanceInfo;
use crate::store::audit;
use crate::truncate::prefix as cut;

/// Longest last log line kept with an exit's record, in bytes.
const LOG_LINE_BYTES: usize = 512;

impl Supervisor {
    /// Records a container exit (an OOM kill distinctly, with the limit, the peak memory seen
    /// and the last log lines) before it is restarted.
    pub(super) async fn record_exit(
        &self,
        part: &mut Part,
        dep: &Deployment,
        c: &InstanceInfo,
        reason: String,
        peak_bytes: u64,
        failures: u32,
    ) {
        let wait = super::backoff::delay(failures);
        const LOG_LINES: u64 = 20;
        let app = dep.application_name.clone();
        crate::series::get().container_restart(&dep.series_app());
        // The run just ended: its last lines (Docker keeps them across restarts).
        let logs = self
            .runtime
            .logs(&c.id, 0, 0, Some(LOG_LINES))
            .await
            .unwrap_or_else(|e| format!("(logs unavailable: {e})"));
        // The container writes them: each is cut, so a crash costs the audit log and Berth's
        // own log a bounded amount whatever the service prints.
        let last_lines: Vec<&str> = logs.lines().map(|l| cut(l, LOG_LINE_BYTES)).collect();
        let mut details = json!({
            "deployment": dep.key.to_string(),
            "instance": c.name,
            "exitCode": c.exit_code,
            "finishedAt": c.finished_at,
            "consecutiveFailures": failures,
            "restartDelayMillis": wait.as_millis() as u64,
            "reason": reason,
            "lastLogLines": last_lines,
        });
        if c.oom_killed {
            crate::series::get().oom_kill(&dep.series_app());
            let kills = &mut part.deployment.oom_kills;
            kills.count += 1;
            kills.last_time = Some(
                c.finished_at
                    .clone()
                    .unwrap_or_else(crate::store::timestamp),
            );
            kills.last_peak_bytes = (peak_bytes > 0).then_some(peak_bytes);
            details["memoryLimitBytes"] = json!(dep.memory_bytes);
            details["memoryLimit"] = json!(spec::memory_limit_text(
                u64::try_from(dep.memory_bytes).unwrap_or(0)
            ));
            // None when the run ended before its first stats sample.
            details["memoryPeakBytes"] = json!((peak_bytes > 0).then_some(peak_bytes));
            journal::record(
                &self.audit,
                journal::Entry {
                    tenant: &dep.owner,
                    application: (dep.key.application_id, &app),
                    record_type: "OomKill",
                    activity: "Killed for exceeding the memory limit",
                    text: format!(
                        "{} was killed for exceeding its memory limit of {} bytes (peak seen {} bytes); restarting in {} ms",
                        c.name,
                        dep.memory_bytes,
                        peak_bytes,
                        wait.as_millis()
                    ),
                    severity: audit::MAJOR,
                    details,
                },
            );
        } else {
            journal::record(
                &self.audit,
                journal::Entry {
                    tenant: &dep.owner,
                    application: (dep.key.application_id, &app),
                    record_type: "ContainerExit",
                    activity: "Restarted after an exit",
                    text: format!("{} {reason}; restarting in {} ms", c.name, wait.as_millis()),
                    severity: audit::WARNING,
                    details,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        for (line, max, expected) in [
            ("short", 512, "short"),
            ("abcdef", 3, "abc"),
            ("aé", 2, "a"),
            ("aé", 3, "aé"),
            ("", 0, ""),
        ] {
            assert_eq!(super::cut(line, max), expected, "{line} {max}");
        }
    }
}
