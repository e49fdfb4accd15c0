//! A runtime for the supervisor's tests: instances and networks in maps, creations, removals
//! and exec probes counted (each exec passes, or hangs while asked to), an inspect that fails
//! on demand, and removals (of instances and of networks) that block until released; everything
//! the tests do not reach is unreachable.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use time::OffsetDateTime;

use super::{Autoscaling, Settings, Supervisor, spec, subnets};
use crate::runtime::{
    ExecOutcome, HostResources, ImageArchive, InstanceEvent, InstanceInfo, InstanceSpec,
    NetworkInfo, NetworkSpec, Pending, Runtime, RuntimeError, Usage,
};
use crate::sync::MutexExt;

#[derive(Debug, Default)]
pub(super) struct FakeRuntime {
    pub instances: Mutex<HashMap<String, InstanceInfo>>,
    /// `create_instance` calls.
    pub created: AtomicU32,
    /// `instance` (inspect) answers an engine error.
    pub inspect_fails: AtomicBool,
    /// `exec_command` calls (each passes at once unless `exec_hangs`).
    pub execs: AtomicU32,
    /// Exec commands hang: each outlives its timeout and runs on, in `hung`.
    pub exec_hangs: AtomicBool,
    /// Exec commands that outlived their timeout and still run, by exec id.
    pub hung: Mutex<HashSet<String>>,
    /// Networks by name.
    pub networks: Mutex<HashMap<String, NetworkInfo>>,
    /// `remove_instance` calls by instance id, and `remove_network` and
    /// `remove_network_and_instances` calls by network name, in order.
    pub removals: Mutex<Vec<String>>,
    /// Instances and networks (by name) whose removal blocks until they leave this set
    /// ([`FakeRuntime::release`]).
    pub held: tokio::sync::watch::Sender<HashSet<String>>,
    /// Networks removed: the network, and how many instances of its deployment were still
    /// there.
    pub removed_networks: Mutex<Vec<(String, usize)>>,
}

impl FakeRuntime {
    /// A stopped instance that never ran, of `deployment`'s `revision` in slot `replica`.
    pub fn add(&self, id: &str, deployment: &str, revision: &str, replica: u32) {
        let labels = HashMap::from([
            (super::LABEL_DEPLOYMENT.to_owned(), deployment.to_owned()),
            (super::LABEL_REVISION.to_owned(), revision.to_owned()),
            (super::LABEL_REPLICA.to_owned(), replica.to_string()),
        ]);
        let info = InstanceInfo {
            id: id.to_owned(),
            name: format!("name-{id}"),
            labels,
            running: false,
            exit_code: None,
            oom_killed: false,
            started_at: String::new(),
            finished_at: None,
            ip: None,
            removing: false,
            node: None,
            unplaced: None,
        };
        self.lock().insert(id.to_owned(), info);
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, InstanceInfo>> {
        self.instances.locked()
    }

    /// Removals of `id` block from now on, until released.
    pub fn hold(&self, id: &str) {
        self.held.send_modify(|h| {
            h.insert(id.to_owned());
        });
    }

    /// Removals of `id` finish.
    pub fn release(&self, id: &str) {
        self.held.send_modify(|h| {
            h.remove(id);
        });
    }

    /// How many times removing `id` (an instance, or a network by name) was asked.
    pub fn removals_of(&self, id: &str) -> usize {
        let removals = self.removals.locked();
        removals.iter().filter(|r| *r == id).count()
    }

    /// Records the removal of `name` asked, waits while it is held, then removes it, with the
    /// instances of its deployment first when `with_instances`.
    fn remove_network_named<'a>(&'a self, name: String, with_instances: bool) -> Pending<'a, ()> {
        (self.removals.locked()).push(name.clone());
        let mut held = self.held.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`.
            let _ = held.wait_for(|h| !h.contains(&name)).await;
            let Some(n) = self.nets().remove(&name) else {
                return Ok(());
            };
            let deployment = n.labels.get(super::LABEL_DEPLOYMENT);
            let mut instances = self.lock();
            if with_instances {
                instances.retain(|_, c| c.labels.get(super::LABEL_DEPLOYMENT) != deployment);
            }
            let on_it = (instances.values())
                .filter(|c| c.labels.get(super::LABEL_DEPLOYMENT) == deployment)
                .count();
            let mut removed = self.removed_networks.locked();
            removed.push((name, on_it));
            Ok(())
        })
    }
}

impl FakeRuntime {
    pub fn nets(&self) -> std::sync::MutexGuard<'_, HashMap<String, NetworkInfo>> {
        self.networks.locked()
    }
}

/// A supervisor on `runtime` with a fresh store in `dir` (on the current Tokio runtime).
pub(super) fn supervisor(runtime: Arc<FakeRuntime>, dir: &std::path::Path) -> Supervisor {
    let store = crate::store::Store::open(&dir.join("berth.sqlite3")).expect("store");
    let secrets = crate::secrets::Secrets::load_or_create(dir).expect("secrets");
    let settings = Settings {
        installation: "fake0000".to_owned(),
        extra_labels: Vec::new(),
        reconcile_interval: Duration::from_secs(1),
        rollout_timeout: Duration::from_secs(60),
        pids_limit: 100,
        platform: spec::Platform {
            base_url: "http://berth-platform:8111".to_owned(),
            default_timezone: None,
        },
        autoscaling: Autoscaling {
            period: Duration::from_secs(15),
            target: 0.8,
            scale_down_window: Duration::from_secs(300),
            max_replicas: 4,
            drain_period: Duration::from_secs(10),
        },
        answer_timeout: Duration::from_secs(1),
        network_pool: subnets::Pool {
            pool: subnets::Block::parse("10.200.0.0/16").expect("block"),
            subnet_prefix: 24,
        },
        deploy_concurrency: 2,
        // The supervisor may not name `apps` (layering); no test here rolls back.
        roll_back: |_, _, _, _, _, _, _| unreachable!("no rollback in the fake's tests"),
        maxima: crate::limits::Maxima {
            limits: crate::limits::Limits {
                container_memory: 1 << 30,
                container_millicores: 1000,
                replicas: 4,
                tenant_memory: 1 << 32,
                tenant_millicores: 4000,
                tenant_containers: 16,
                refuse_root_images: false,
                only_port: None,
                exec_probes: true,
            },
            autoscale_max: 4,
        },
    };
    Supervisor::new(
        settings,
        store.clone(),
        crate::audit::AuditLog::start(store),
        runtime,
        Arc::new(secrets),
        crate::routing::RoutingTable::new(),
    )
}

impl Runtime for FakeRuntime {
    fn create_instance<'a>(&'a self, spec: &'a InstanceSpec) -> Pending<'a, String> {
        let n = self.created.fetch_add(1, Ordering::SeqCst);
        let id = format!("created-{n}");
        self.add(&id, &spec.deployment, &spec.revision, spec.replica);
        Box::pin(async move { Ok(id) })
    }
    fn start_instance<'a>(&'a self, id: &'a str) -> Pending<'a, bool> {
        let started = match self.lock().get_mut(id) {
            Some(c) => {
                c.running = true;
                c.started_at = "2026-01-01T00:00:00Z".to_owned();
                true
            }
            None => false,
        };
        Box::pin(async move { Ok(started) })
    }
    fn instance<'a>(&'a self, id: &'a str) -> Pending<'a, Option<InstanceInfo>> {
        let found = if self.inspect_fails.load(Ordering::SeqCst) {
            Err(RuntimeError::Docker("inspect timed out".to_owned()))
        } else {
            Ok(self.lock().get(id).cloned())
        };
        Box::pin(async move { found })
    }
    fn instances<'a>(&'a self, _: &'a [(&'a str, &'a str)]) -> Pending<'a, Vec<InstanceInfo>> {
        let all = self.lock().values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }
    fn remove_instance<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        (self.removals.locked()).push(id.to_owned());
        let mut held = self.held.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`.
            let _ = held.wait_for(|h| !h.contains(id)).await;
            self.lock().remove(id);
            Ok(())
        })
    }
    fn kill_instance<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        if let Some(c) = self.lock().get_mut(id) {
            c.running = false;
        }
        Box::pin(async { Ok(()) })
    }
    fn pace_restarts<'a>(&'a self, _: &'a str, _: Duration) -> Pending<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn host_resources(&self) -> Pending<'_, HostResources> {
        unreachable!()
    }
    fn image_id<'a>(&'a self, _: &'a str) -> Pending<'a, Option<String>> {
        unreachable!()
    }
    fn image_tags<'a>(&'a self, _: &'a str) -> Pending<'a, Option<Vec<String>>> {
        unreachable!()
    }
    fn image_user<'a>(&'a self, _: &'a str) -> Pending<'a, String> {
        unreachable!()
    }
    fn load_image(&self, _: ImageArchive) -> Pending<'_, Vec<String>> {
        unreachable!()
    }
    fn tag<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str) -> Pending<'a, ()> {
        unreachable!()
    }
    fn remove_image<'a>(&'a self, _: &'a str) -> Pending<'a, ()> {
        unreachable!()
    }
    fn tags_older_than<'a>(&'a self, _: &'a str, _: OffsetDateTime) -> Pending<'a, Vec<String>> {
        unreachable!()
    }
    fn network<'a>(&'a self, name: &'a str) -> Pending<'a, Option<NetworkInfo>> {
        let found = self.nets().get(name).cloned();
        Box::pin(async move { Ok(found) })
    }
    fn networks<'a>(&'a self, _: &'a [(&'a str, &'a str)]) -> Pending<'a, Vec<NetworkInfo>> {
        let all = self.nets().values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }
    fn create_network<'a>(&'a self, spec: &'a NetworkSpec) -> Pending<'a, NetworkInfo> {
        let info = NetworkInfo {
            id: format!("id-{}", spec.name),
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            subnets: vec![spec.subnet.clone()],
            bridge: Some(spec.bridge.clone()),
        };
        self.nets().insert(spec.name.clone(), info.clone());
        Box::pin(async move { Ok(info) })
    }
    fn subnets_in_use(&self) -> Pending<'_, Vec<String>> {
        let all = self
            .nets()
            .values()
            .flat_map(|n| n.subnets.clone())
            .collect();
        Box::pin(async move { Ok(all) })
    }
    fn remove_network<'a>(&'a self, name: &'a str) -> Pending<'a, ()> {
        self.remove_network_named(name.to_owned(), false)
    }
    fn remove_network_and_instances<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        let name = (self.nets().values())
            .find(|n| n.id == id)
            .map_or_else(String::new, |n| n.name.clone());
        self.remove_network_named(name, true)
    }
    fn logs<'a>(&'a self, _: &'a str, _: i64, _: i64, _: Option<u64>) -> Pending<'a, String> {
        unreachable!()
    }
    fn follow_logs(&self, _: &str, _: u64) -> BoxStream<'static, Result<Bytes, RuntimeError>> {
        unreachable!()
    }
    fn exec_command<'a>(
        &'a self,
        _: &'a str,
        _: &'a [String],
        timeout: Duration,
    ) -> Pending<'a, ExecOutcome> {
        let n = self.execs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if !self.exec_hangs.load(Ordering::SeqCst) {
                return Ok(ExecOutcome::Exited { success: true });
            }
            tokio::time::sleep(timeout).await;
            let exec = format!("exec-{n}");
            let mut hung = self.hung.locked();
            hung.insert(exec.clone());
            Ok(ExecOutcome::TimedOut { exec })
        })
    }
    fn exec_running<'a>(&'a self, _: &'a str, exec: &'a str) -> Pending<'a, bool> {
        let running = self.hung.locked().contains(exec);
        Box::pin(async move { Ok(running) })
    }
    fn usage(&self, _: &str) -> BoxStream<'static, Result<Usage, RuntimeError>> {
        unreachable!()
    }
    fn events(
        &self,
        _: &[(&str, &str)],
    ) -> BoxStream<'static, Result<InstanceEvent, RuntimeError>> {
        unreachable!()
    }
}
