//! Per-instance resource usage: a task follows Docker's stats stream of one container run and
//! keeps its latest sample and the peak memory seen, for the autoscaler, the status, the
//! metrics and the OOM-kill record.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::runtime::{Runtime, Usage};

/// A sample older than this is no metric (the stream stalled or the container stopped).
pub const FRESH_FOR: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone)]
pub struct UsageState {
    pub latest: Option<Usage>,
    pub at: Option<Instant>,
    /// The highest memory use of this run: max of the samples and the kernel's own peak.
    pub peak_bytes: u64,
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

/// Follows the stats of container `id` into `state` (reset first) until the stream ends.
pub fn watch(runtime: Arc<dyn Runtime>, id: String, state: SharedUsage) -> JoinHandle<()> {
    *state.lock().unwrap_or_else(|p| p.into_inner()) = UsageState::default();
    tokio::spawn(async move {
        let mut samples = std::pin::pin!(runtime.usage(&id));
        while let Some(sample) = samples.next().await {
            let Ok(usage) = sample else { break };
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.peak_bytes = s
                .peak_bytes
                .max(usage.memory_bytes)
                .max(usage.memory_peak_bytes.unwrap_or(0));
            s.latest = Some(usage);
            s.at = Some(Instant::now());
        }
    })
}
