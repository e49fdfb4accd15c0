//! Container removals off the pass. A `docker rm -f` can take minutes (a writable layer of
//! millions of files, an engine under pressure); awaited in the pass, one tenant's removal
//! held every tenant's reconciliation. So each removal is a task of its own, owned here (the
//! tasks go with the supervisor), at most `deploy_concurrency` of them at work at once across
//! the supervisor. Its container is remembered as leaving, by id, until the task ends, done or
//! failed (a container whose removal failed is still listed, and a later pass removes it
//! again); the end pokes a pass, so what waited for it follows at once: its network's
//! removal, its replica slot's new instance ([`plan::garbage`], [`plan::leaving_slots`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::plan::Leaving;
use super::{LABEL_DEPLOYMENT, LABEL_REPLICA, LABEL_REVISION};
use crate::runtime::{InstanceInfo, Runtime};

/// The removals in flight.
#[derive(Debug)]
pub(super) struct Removals {
    /// The containers being removed, by id; each task takes its own out when it ends.
    leaving: Arc<Mutex<HashMap<String, Leaving>>>,
    /// The tasks: aborted when this is dropped (the supervisor with it).
    tasks: Mutex<JoinSet<()>>,
    /// How many removals talk to the engine at once; the others wait their turn, leaving
    /// already.
    permits: Arc<Semaphore>,
}

impl Default for Removals {
    fn default() -> Removals {
        Removals::new(1)
    }
}

impl Removals {
    /// Removals `concurrency` at once (at least one).
    pub fn new(concurrency: usize) -> Removals {
        Removals {
            leaving: Arc::default(),
            tasks: Mutex::new(JoinSet::new()),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// The containers being removed now, by id. A pass reads this once, before it lists
    /// the containers: one that is still listed then is still leaving, never live again.
    pub fn snapshot(&self) -> HashMap<String, Leaving> {
        self.reap();
        lock(&self.leaving).clone()
    }

    pub fn len(&self) -> usize {
        lock(&self.leaving).len()
    }

    /// Starts removing `c` through `runtime` unless it is being removed already (then false);
    /// `wake` is poked when the removal ends.
    pub fn start(&self, runtime: Arc<dyn Runtime>, wake: Arc<Notify>, c: &InstanceInfo) -> bool {
        let label = |name: &str| c.labels.get(name).cloned();
        let leaving = Leaving {
            deployment: label(LABEL_DEPLOYMENT),
            revision: label(LABEL_REVISION),
            replica: label(LABEL_REPLICA).and_then(|r| r.parse().ok()),
        };
        if lock(&self.leaving).insert(c.id.clone(), leaving).is_some() {
            return false;
        }
        let ended = Ended {
            leaving: Arc::clone(&self.leaving),
            id: c.id.clone(),
            wake,
        };
        let permits = Arc::clone(&self.permits);
        let name = c.name.clone();
        self.reap();
        lock(&self.tasks).spawn(async move {
            // Forgets the container and pokes a pass however the task ends.
            let ended = ended;
            // Never closed.
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            if let Err(e) = runtime.remove_instance(&ended.id).await {
                tracing::warn!(container = %name, error = %e, "cannot remove container; a later pass tries again");
            }
        });
        true
    }

    /// The removal tasks not ended.
    #[cfg(test)]
    pub fn tasks(&self) -> usize {
        self.reap();
        lock(&self.tasks).len()
    }

    /// Drops the results of tasks that ended (nothing: each reports through [`Ended`]).
    fn reap(&self) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
    }
}

/// One removal's end, when its task's future is dropped: done, failed, panicked or aborted.
struct Ended {
    leaving: Arc<Mutex<HashMap<String, Leaving>>>,
    id: String,
    wake: Arc<Notify>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        lock(&self.leaving).remove(&self.id);
        self.wake.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
