//! The probe and stats tasks of an instance run: started for each new run of a current
//! instance, and for an old-revision instance adopted after a restart.

use std::sync::Arc;

use crate::runtime::InstanceInfo;
use crate::supervisor::probes;
use crate::supervisor::spec::Deployment;
use crate::supervisor::state::{Instance, Part};
use crate::supervisor::usage;
use crate::supervisor::{Supervisor, running_for};

impl Supervisor {
    pub(in crate::supervisor) fn watch_run(
        &self,
        part: &mut Part,
        dep: Option<&Deployment>,
        c: &InstanceInfo,
    ) {
        let Some(ip) = c.ip else { return };
        let runtime = Arc::clone(&self.runtime);
        let passive = probes::Passive {
            routing: self.routing.clone(),
            instance: c.name.clone(),
            answer_timeout: self.settings.answer_timeout,
        };
        let wake = Arc::clone(&self.handle.wake);
        let Some(instance) = part.instances.get_mut(&c.id) else {
            return;
        };
        instance.stop_probes();
        instance.probed_run = c.started_at.clone();
        if dep.is_some() {
            instance.usage_task = Some(usage::watch(
                Arc::clone(&runtime),
                c.id.clone(),
                Arc::clone(&instance.usage),
            ));
        }
        // An adopted instance (Berth restarted) has served for a while: its probes' initial
        // delays count from its start, so it is routed again at once. An old-revision one
        // adopted after a restart (`dep` None): its own probes are not known any more (and the
        // new revision's may not fit it), so it counts as ready while it runs.
        instance.probe_task = Some(tokio::spawn(probes::watch(
            runtime,
            c.id.clone(),
            ip,
            dep.and_then(|d| d.liveness.clone()),
            dep.and_then(|d| d.readiness.clone()),
            running_for(&c.started_at, time::OffsetDateTime::now_utc()),
            passive,
            Arc::clone(&instance.probe_state),
            wake,
        )));
    }

    /// Old-revision instances keep serving during a rollout: their probe task (started while
    /// they were current) keeps running; adopted ones get a probe-less watcher.
    pub(super) fn observe_old(&self, part: &mut Part, dep: &Deployment, c: &InstanceInfo) {
        let instance = part
            .instances
            .entry(c.id.clone())
            .or_insert_with(|| Instance::new(dep.key.application_id, &c.name));
        if instance.probed_run != c.started_at && c.ip.is_some() {
            self.watch_run(part, None, c);
        }
    }
}
