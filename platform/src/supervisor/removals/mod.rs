//! Removals off the pass: containers and networks. A `docker rm -f` can take minutes (a
//! writable layer of millions of files, an engine under pressure), and so can a `docker
//! network rm` (a busy engine; on Swarm an overlay's removal waits for its tasks); awaited in
//! the pass, one tenant's removal held every tenant's reconciliation. So each removal is a task
//! of its own, owned here (the tasks go with the supervisor), at most `deploy_concurrency` of
//! them at work at once across the supervisor, containers and networks alike: both are the
//! same engine's work, and one bound is what an operator tunes. What is being removed is
//! remembered as leaving (a container by id, a network by name) until the task ends, done or
//! failed (what failed is still listed, and a later pass removes it again); the end pokes a
//! pass, so what waited for it follows at once: a network's removal after its containers',
//! a replica slot's new instance ([`plan::garbage`], [`plan::leaving_slots`]), a deployment's
//! new network after its old one's removal ([`plan::network_step`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::plan::Leaving;
use super::{LABEL_DEPLOYMENT, LABEL_REPLICA, LABEL_REVISION};
use crate::runtime::{InstanceInfo, NetworkInfo, Runtime};
use crate::sync::MutexExt;

/// How long a network's removal may keep being refused before each refusal is a warning. An
/// engine refuses a network's removal for a while after its containers went (Swarm: about 14 s
/// of `500 network … not found` after its services, measured on the lab), and the next pass
/// tries again: only a refusal that lasts is worth an operator's look.
const QUIET_REFUSALS: Duration = Duration::from_secs(60);

/// Whether a refusal of a network's removal, refused since `first`, is a warning at `now`.
fn refusal_worth_a_warning(first: Instant, now: Instant) -> bool {
    now.saturating_duration_since(first) >= QUIET_REFUSALS
}

/// A network being removed, as it was listed when its removal began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LeavingNetwork {
    /// Its `deployment` label.
    pub deployment: Option<String>,
    /// Its subnets: no other deployment's network gets them while it goes.
    pub subnets: Vec<String>,
}

/// What is being removed.
#[derive(Debug, Default)]
struct Leavers {
    /// Containers, by id.
    containers: HashMap<String, Leaving>,
    /// Networks, by name.
    networks: HashMap<String, LeavingNetwork>,
}

/// The removals in flight.
#[derive(Debug)]
pub(super) struct Removals {
    /// What is being removed; each task takes its own out when it ends.
    leaving: Arc<Mutex<Leavers>>,
    /// The tasks: aborted when this is dropped (the supervisor with it).
    tasks: Mutex<JoinSet<()>>,
    /// How many removals talk to the engine at once; the others wait their turn, leaving
    /// already.
    permits: Arc<Semaphore>,
    /// Networks whose removal the engine refused, by name, with the first refusal's time.
    refused: Arc<Mutex<HashMap<String, Instant>>>,
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
            refused: Arc::default(),
        }
    }

    /// The containers being removed now, by id. A pass reads this once, before it lists
    /// the containers: one that is still listed then is still leaving, never live again.
    pub fn snapshot(&self) -> HashMap<String, Leaving> {
        self.reap();
        self.leaving.locked().containers.clone()
    }

    /// The networks being removed now, by name. A pass reads this once, before it lists the
    /// networks: one that is still listed then is still leaving, neither used nor removed
    /// again.
    pub fn networks(&self) -> HashMap<String, LeavingNetwork> {
        self.reap();
        self.leaving.locked().networks.clone()
    }

    /// How many containers and networks are being removed.
    pub fn len(&self) -> usize {
        let leaving = self.leaving.locked();
        leaving.containers.len() + leaving.networks.len()
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
        if self
            .leaving
            .locked()
            .containers
            .insert(c.id.clone(), leaving)
            .is_some()
        {
            return false;
        }
        let ended = self.ended(Gone::Container(c.id.clone()), wake);
        let (id, name) = (c.id.clone(), c.name.clone());
        self.spawn(ended, async move {
            if let Err(e) = runtime.remove_instance(&id).await {
                tracing::warn!(container = %name, error = %e, "cannot remove container; a later pass tries again");
            }
        });
        true
    }

    /// Starts removing network `n` through `runtime` unless it is being removed already (then
    /// false): with the instances still on it first when `with_instances` (replacing a
    /// deployment's network), else alone (nothing is left on it). `wake` is poked when the
    /// removal ends.
    pub fn start_network(
        &self,
        runtime: Arc<dyn Runtime>,
        wake: Arc<Notify>,
        n: &NetworkInfo,
        with_instances: bool,
    ) -> bool {
        let leaving = LeavingNetwork {
            deployment: n.labels.get(LABEL_DEPLOYMENT).cloned(),
            subnets: n.subnets.clone(),
        };
        let mut leavers = self.leaving.locked();
        if leavers.networks.contains_key(&n.name) {
            return false;
        }
        leavers.networks.insert(n.name.clone(), leaving);
        drop(leavers);
        let ended = self.ended(Gone::Network(n.name.clone()), wake);
        let (id, name) = (n.id.clone(), n.name.clone());
        let refused = Arc::clone(&self.refused);
        self.spawn(ended, async move {
            let removed = if with_instances {
                runtime.remove_network_and_instances(&id).await
            } else {
                runtime.remove_network(&name).await
            };
            let now = Instant::now();
            let mut refusals = refused.locked();
            // Names of networks that went some other way are not kept for ever.
            refusals.retain(|_, first| now.saturating_duration_since(*first) < QUIET_REFUSALS * 60);
            let Err(e) = removed else {
                refusals.remove(&name);
                return;
            };
            let first = *refusals.entry(name.clone()).or_insert(now);
            drop(refusals);
            if refusal_worth_a_warning(first, now) {
                tracing::warn!(network = %name, error = %e, refused_for = ?now.duration_since(first), "cannot remove network; a later pass tries again");
            } else {
                tracing::debug!(network = %name, error = %e, "network not removed yet; a later pass tries again");
            }
        });
        true
    }

    fn ended(&self, gone: Gone, wake: Arc<Notify>) -> Ended {
        Ended {
            leaving: Arc::clone(&self.leaving),
            gone,
            wake,
        }
    }

    /// Runs `removal` as a task once a permit is free; `ended` goes with the task.
    fn spawn(&self, ended: Ended, removal: impl Future<Output = ()> + Send + 'static) {
        let permits = Arc::clone(&self.permits);
        self.reap();
        self.tasks.locked().spawn(async move {
            // Forgets what it removes and pokes a pass however the task ends.
            let _ended = ended;
            // Never closed.
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            removal.await;
        });
    }

    /// The removal tasks not ended.
    #[cfg(test)]
    pub fn tasks(&self) -> usize {
        self.reap();
        self.tasks.locked().len()
    }

    /// Drops the results of tasks that ended (nothing: each reports through [`Ended`]).
    fn reap(&self) {
        let mut tasks = self.tasks.locked();
        while tasks.try_join_next().is_some() {}
    }
}

/// What one removal takes away.
enum Gone {
    Container(String),
    Network(String),
}

/// One removal's end, when its task's future is dropped: done, failed, panicked or aborted.
struct Ended {
    leaving: Arc<Mutex<Leavers>>,
    gone: Gone,
    wake: Arc<Notify>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        {
            let mut leaving = self.leaving.locked();
            match &self.gone {
                Gone::Container(id) => leaving.containers.remove(id).map(drop),
                Gone::Network(name) => leaving.networks.remove(name).map(drop),
            };
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests;
