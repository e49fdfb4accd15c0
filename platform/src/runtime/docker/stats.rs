//! Resource usage of running containers from Docker's stats stream: CPU as cores and as a
//! fraction of the container's CPU limit, memory in use (page cache excluded, cgroup v1 and v2
//! keys) and the peak the kernel recorded (cgroup v1 `max_usage`).

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptions;
use futures_util::{Stream, StreamExt};

use super::DockerEngine;
use crate::runtime::{RuntimeError, Usage};

/// CPU cores from two cumulative readings: the Docker CLI's formula
/// `Δcontainer / Δsystem × online CPUs` (Docker's CPU % is this × 100).
fn cpu_cores(sample: &ContainerStatsResponse) -> Option<f64> {
    let now = sample.cpu_stats.as_ref()?;
    let before = sample.precpu_stats.as_ref()?;
    let total = now.cpu_usage.as_ref()?.total_usage?;
    let total_before = before.cpu_usage.as_ref()?.total_usage?;
    let system = now.system_cpu_usage?;
    let system_before = before.system_cpu_usage?;
    let online = now
        .online_cpus
        .filter(|n| *n > 0)
        .or_else(|| {
            now.cpu_usage
                .as_ref()?
                .percpu_usage
                .as_ref()
                .map(|v| v.len() as u32)
        })
        .unwrap_or(1);
    if system <= system_before || total_before == 0 {
        return None;
    }
    let used = total.saturating_sub(total_before) as f64;
    Some(used / (system - system_before) as f64 * f64::from(online))
}

/// Parses one sample (kept apart from the stream for the unit tests).
fn usage(sample: &ContainerStatsResponse) -> Usage {
    let memory = sample.memory_stats.clone().unwrap_or_default();
    let stats = memory.stats.unwrap_or_default();
    // cgroup v1 names the page cache `total_inactive_file`, v2 `inactive_file`.
    let cache = stats
        .get("total_inactive_file")
        .or_else(|| stats.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    let used = memory.usage.unwrap_or(0);
    Usage {
        cpu_cores: cpu_cores(sample),
        memory_bytes: used.saturating_sub(cache),
        memory_peak_bytes: memory.max_usage.filter(|m| *m > 0),
        memory_limit_bytes: memory.limit,
    }
}

impl DockerEngine {
    /// A sample about every second while the container runs; ends when it stops.
    pub(super) fn usage(
        &self,
        id: &str,
    ) -> impl Stream<Item = Result<Usage, RuntimeError>> + use<> {
        let options = StatsOptions {
            stream: true,
            one_shot: false,
        };
        self.docker
            .stats(id, Some(options))
            .map(|item| Ok(usage(&item?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpu_and_memory_from_cgroup_v1_and_v2_samples() {
        let sample = |stats: serde_json::Value, max_usage: u64| {
            serde_json::from_value::<ContainerStatsResponse>(json!({
                "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000u64},
                              "system_cpu_usage": 20_000_000_000u64, "online_cpus": 2},
                "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000u64},
                                 "system_cpu_usage": 18_000_000_000u64, "online_cpus": 2},
                "memory_stats": {"usage": 100_000_000u64, "max_usage": max_usage,
                                 "limit": 134_217_728u64, "stats": stats}
            }))
            .unwrap()
        };
        let cases = [
            (
                json!({"total_inactive_file": 10_000_000u64}),
                120_000_000,
                Some(120_000_000),
            ),
            (json!({"inactive_file": 20_000_000u64}), 0, None),
        ];
        for (stats, max, peak) in cases {
            let u = usage(&sample(stats.clone(), max));
            // 1 s of CPU over 2 s of both CPUs' time = 1 core.
            assert_eq!(u.cpu_cores, Some(1.0), "{stats}");
            assert_eq!(u.memory_peak_bytes, peak, "{stats}");
            assert_eq!(u.memory_limit_bytes, Some(134_217_728));
        }
        assert_eq!(
            usage(&sample(json!({"total_inactive_file": 10_000_000u64}), 0)).memory_bytes,
            90_000_000
        );
        let first: ContainerStatsResponse = serde_json::from_value(json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 5u64}, "system_cpu_usage": 9u64},
            "precpu_stats": {"cpu_usage": {"total_usage": 0u64}}
        }))
        .unwrap();
        assert_eq!(usage(&first).cpu_cores, None);
    }
}
