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
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::secrets::{Secrets, bootstrap_context, service_context};
    use crate::supervisor::Supervisor;
    use crate::supervisor::fake::{FakeRuntime, supervisor};
    use crate::supervisor::handle::Leftovers;

    /// How long anything the supervisor does at once may take before the test gives up.
    const DEADLINE: Duration = Duration::from_secs(30);

    /// Tenant t0's PER_TENANT application 1, deployable (one replica per subscriber), with
    /// tenants t1 and t2 that may subscribe.
    async fn seed(sup: &Supervisor, dir: &Path) {
        let secrets = Secrets::load_or_create(dir).expect("secrets");
        let sealed = secrets
            .seal(&bootstrap_context("t0", "bootstrap"), "secret")
            .expect("seal");
        let manifest = r#"{"apiVersion":"2","name":"svc","version":"1.0.0","provider":{"name":"x"},"isolation":"PER_TENANT"}"#;
        sup.store
            .run(move |c| {
                for t in ["t0", "t1", "t2"] {
                    c.execute(
                        "INSERT INTO tenants (id, domain, company, creation_time) VALUES (?1, ?1 || '.example', ?1, 'now')",
                        [t],
                    )?;
                }
                c.execute(
                    "INSERT INTO applications (id, owner_tenant, name, key, type, manifest, active_version_id, bootstrap_user, bootstrap_password_sealed, creation_time)
                     VALUES (1, 't0', 'svc', 'svc-key', 'MICROSERVICE', ?1, '1.0.0', 'bootstrap', ?2, 'now')",
                    [manifest, sealed.as_str()],
                )?;
                c.execute(
                    "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time)
                     VALUES (1, '1.0.0', 'sha256:00', 'svc:1.0.0', 'p', ?1, 'now')",
                    [manifest],
                )?;
                Ok(())
            })
            .await
            .expect("seed");
    }

    async fn subscribe(sup: &Supervisor, dir: &Path, tenant: &'static str) {
        let secrets = Secrets::load_or_create(dir).expect("secrets");
        let sealed = secrets
            .seal(&service_context(tenant, "service"), "secret")
            .expect("seal");
        sup.store
            .run(move |c| {
                c.execute(
                    "INSERT INTO subscriptions (application_id, tenant_id, service_user, service_password_sealed, creation_time) VALUES (1, ?1, 'service', ?2, 'now')",
                    [tenant, sealed.as_str()],
                )?;
                Ok(())
            })
            .await
            .expect("subscribe");
    }

    async fn unsubscribe(sup: &Supervisor, tenant: &'static str) {
        sup.store
            .run(move |c| {
                c.execute(
                    "DELETE FROM subscriptions WHERE application_id = 1 AND tenant_id = ?1",
                    [tenant],
                )?;
                Ok(())
            })
            .await
            .expect("unsubscribe");
    }

    /// One pass, which must end (a removal it waited for would hold it for good).
    async fn pass(sup: &mut Supervisor) -> Leftovers {
        tokio::time::timeout(DEADLINE, sup.pass())
            .await
            .expect("the pass ended")
            .expect("the pass succeeded")
    }

    /// Waits until no removal runs.
    async fn removals_ended(sup: &Supervisor) {
        let deadline = Instant::now() + DEADLINE;
        while sup.state.removals.len() > 0 {
            assert!(Instant::now() < deadline, "the removals did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until removing `id` was asked of the runtime (the task runs off the pass).
    async fn asked(runtime: &FakeRuntime, id: &str) {
        let deadline = Instant::now() + DEADLINE;
        while runtime.removals_of(id) == 0 {
            assert!(Instant::now() < deadline, "{id} was not removed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The instances of `deployment`, by id, whether running.
    fn instances_of(runtime: &FakeRuntime, deployment: &str) -> Vec<(String, bool)> {
        let mut found: Vec<(String, bool)> = (runtime.lock().values())
            .filter(|c| {
                c.labels
                    .get(crate::supervisor::LABEL_DEPLOYMENT)
                    .map(String::as_str)
                    == Some(deployment)
            })
            .map(|c| (c.id.clone(), c.running))
            .collect();
        found.sort();
        found
    }

    fn network_of(sup: &Supervisor, tenant: &str) -> String {
        sup.network_name(&crate::routing::DeploymentKey {
            application_id: 1,
            tenant: Some(tenant.to_owned()),
        })
    }

    /// A supervisor on the fake runtime after its first pass with t1 subscribed, and the id of
    /// t1's running replica (the data directory lives as long as the first).
    async fn t1_subscribed() -> (tempfile::TempDir, Arc<FakeRuntime>, Supervisor, String) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Arc::new(FakeRuntime::default());
        let mut sup = supervisor(Arc::clone(&runtime), dir.path());
        seed(&sup, dir.path()).await;
        subscribe(&sup, dir.path(), "t1").await;
        pass(&mut sup).await;
        let [(first, true)] = &instances_of(&runtime, "1/t1")[..] else {
            panic!("t1's replica runs");
        };
        let first = first.clone();
        (dir, runtime, sup, first)
    }

    #[tokio::test]
    async fn a_removal_that_does_not_finish_holds_no_other_deployment() {
        let (dir, runtime, mut sup, first) = t1_subscribed().await;
        let first = &first;
        let network = network_of(&sup, "t1");
        assert!(runtime.nets().contains_key(&network));

        // t1 unsubscribes, and removing its container does not finish.
        runtime.hold(first);
        unsubscribe(&sup, "t1").await;
        let left = pass(&mut sup).await;
        asked(&runtime, first).await;
        // What the API's convergence waits for: the container, and the network after it.
        let t1 = Some("1/t1".to_owned());
        let waited = Leftovers {
            containers: HashMap::from([(first.clone(), t1.clone())]),
            networks: HashMap::from([(network.clone(), t1)]),
        };
        assert_eq!(left, waited);

        // t2 subscribes: its deployment is made and started in the next pass, t1's container
        // is not removed a second time, and its network stays while it is being removed.
        subscribe(&sup, dir.path(), "t2").await;
        let left = pass(&mut sup).await;
        let [(_, true)] = instances_of(&runtime, "1/t2")[..] else {
            panic!("t2's replica runs");
        };
        assert!(runtime.nets().contains_key(&network_of(&sup, "t2")));
        assert_eq!(sup.state.removals.tasks(), 1);
        assert_eq!(runtime.removals_of(first), 1);
        assert!(runtime.nets().contains_key(&network));
        assert_eq!(left, waited);

        // The removal ends: the next pass removes the network, with nothing left on it.
        runtime.release(first);
        removals_ended(&sup).await;
        assert!(instances_of(&runtime, "1/t1").is_empty());
        let left = pass(&mut sup).await;
        assert!(!runtime.nets().contains_key(&network));
        let removed = runtime.removed_networks.lock().unwrap().clone();
        assert_eq!(removed, [(network, 0)]);
        assert_eq!(left, Leftovers::default());
        assert_eq!(runtime.removals_of(first), 1);
    }

    /// A removal within a deployment (a second instance of a slot) does not hold the pass
    /// either, and the slot whose last instance is still being removed waits for it.
    #[tokio::test]
    async fn a_slot_gets_its_new_instance_once_its_last_one_is_removed() {
        let (_dir, runtime, mut sup, kept) = t1_subscribed().await;
        let kept = &kept;
        let revision = runtime.lock()[kept].labels[crate::supervisor::LABEL_REVISION].clone();
        // A create raced a crash: a second instance of slot 0 (after the first by name), whose
        // removal does not finish.
        runtime.add("x-dup", "1/t1", &revision, 0);
        runtime.hold("x-dup");
        pass(&mut sup).await;
        asked(&runtime, "x-dup").await;
        pass(&mut sup).await;
        assert_eq!(sup.state.removals.tasks(), 1);
        assert_eq!(runtime.removals_of("x-dup"), 1);
        assert_eq!(instances_of(&runtime, "1/t1").len(), 2);

        // The kept one goes (by hand): its slot waits while the other one is being removed.
        let created = runtime.created.load(std::sync::atomic::Ordering::SeqCst);
        runtime.lock().remove(kept);
        pass(&mut sup).await;
        assert_eq!(
            runtime.created.load(std::sync::atomic::Ordering::SeqCst),
            created
        );
        runtime.release("x-dup");
        removals_ended(&sup).await;
        pass(&mut sup).await;
        assert_eq!(
            runtime.created.load(std::sync::atomic::Ordering::SeqCst),
            created + 1
        );
        let [(_, true)] = instances_of(&runtime, "1/t1")[..] else {
            panic!("slot 0 has its new instance");
        };
    }
}
