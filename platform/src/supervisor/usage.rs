//! Per-instance resource usage: a task follows Docker's stats stream of one container run and
//! keeps its latest sample, the peak memory seen and a bounded history, for the autoscaler, the
//! status, the metrics, the OOM-kill record and the console's charts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::runtime::{Runtime, Usage};
use crate::sync::MutexExt;

/// A sample older than this is no metric (the stream stalled or the container stopped).
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// The history keeps one sample per step…
pub const HISTORY_STEP: Duration = Duration::from_secs(2);
/// …for this long (15 minutes), so it holds at most 450 samples per instance.
pub const HISTORY_SPAN: Duration = Duration::from_secs(15 * 60);
const HISTORY_LEN: usize = (HISTORY_SPAN.as_secs() / HISTORY_STEP.as_secs()) as usize;

/// One sample of the history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsagePoint {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub cpu_cores: Option<f64>,
    pub memory_bytes: u64,
}

/// The last [`HISTORY_SPAN`] of an instance's samples, one per [`HISTORY_STEP`]. It lives as
/// long as the instance (its container) in the supervisor's state, across the runs of that
/// container, and goes with it.
#[derive(Debug, Default)]
pub struct History {
    points: VecDeque<UsagePoint>,
    last: Option<Instant>,
}

impl History {
    /// Keeps `usage` unless the previous kept sample is less than a step old.
    pub fn record(&mut self, usage: &Usage, now: Instant, unix_ms: u64) {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < HISTORY_STEP)
        {
            return;
        }
        self.last = Some(now);
        if self.points.len() == HISTORY_LEN {
            self.points.pop_front();
        }
        self.points.push_back(UsagePoint {
            unix_ms,
            cpu_cores: usage.cpu_cores,
            memory_bytes: usage.memory_bytes,
        });
    }

    pub fn points(&self) -> Vec<UsagePoint> {
        self.points.iter().copied().collect()
    }
}

pub type SharedHistory = Arc<Mutex<History>>;

#[derive(Debug, Default, Clone)]
pub struct UsageState {
    pub latest: Option<Usage>,
    pub at: Option<Instant>,
    /// The highest memory use of this run: max of the samples and the kernel's own peak.
    pub peak_bytes: u64,
    /// Shared, so the per-pass copies of this state do not copy the history.
    pub history: SharedHistory,
}

impl UsageState {
    /// CPU cores of a fresh sample.
    pub fn fresh_cpu(&self, now: Instant) -> Option<f64> {
        let at = self.at?;
        if now.duration_since(at) > FRESH_FOR {
            return None;
        }
        self.latest?.cpu_cores
    }
}

pub type SharedUsage = Arc<Mutex<UsageState>>;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Follows the stats of container `id` into `state` (reset first, but for the history) until
/// the stream ends.
pub fn watch(runtime: Arc<dyn Runtime>, id: String, state: SharedUsage) -> JoinHandle<()> {
    let history = {
        let mut s = state.locked();
        let history = Arc::clone(&s.history);
        *s = UsageState {
            history: Arc::clone(&history),
            ..UsageState::default()
        };
        history
    };
    tokio::spawn(async move {
        let mut samples = std::pin::pin!(runtime.usage(&id));
        while let Some(sample) = samples.next().await {
            let Ok(usage) = sample else { break };
            let now = Instant::now();
            history.locked().record(&usage, now, unix_ms());
            let mut s = state.locked();
            s.peak_bytes = s
                .peak_bytes
                .max(usage.memory_bytes)
                .max(usage.memory_peak_bytes.unwrap_or(0));
            s.latest = Some(usage);
            s.at = Some(now);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_one_sample_per_step_and_fifteen_minutes() {
        let mut history = History::default();
        let start = Instant::now();
        let usage = |bytes| Usage {
            cpu_cores: Some(0.5),
            memory_bytes: bytes,
            memory_peak_bytes: None,
            memory_limit_bytes: None,
        };
        // One sample a second for 20 minutes: every other one kept, the oldest dropped.
        for s in 0..1200u64 {
            history.record(&usage(s), start + Duration::from_secs(s), s * 1000);
        }
        let points = history.points();
        assert_eq!(points.len(), HISTORY_LEN);
        assert_eq!(points.last().unwrap().memory_bytes, 1198);
        assert_eq!(points[0].memory_bytes, 1198 - 2 * (HISTORY_LEN as u64 - 1));
        assert!(
            points
                .windows(2)
                .all(|w| w[1].unix_ms - w[0].unix_ms == 2000)
        );
    }
}
