//! Holding the deployments of an application that cannot be deployed now (its stored manifest
//! no longer validates, a sealed password does not open): a data problem must not become an
//! outage. Nothing is made, started, killed or removed; its instances keep their probe tasks
//! (one adopted after a restart gets a probe-less watcher, as an old revision's does: ready
//! while it answers), and the ready ones stay routed, until it can be deployed again.

use std::time::Instant;

use super::Supervisor;
use super::act::routable;
use super::state::Instance;
use crate::routing::DeploymentKey;
use crate::runtime::InstanceInfo;

impl Supervisor {
    /// Holds one deployment of a broken application with the instances the pass found of it.
    pub(super) fn hold(&mut self, key: &DeploymentKey, containers: &[InstanceInfo]) {
        let remembered = self.state.deployments.contains_key(key);
        let ids = containers.iter().map(|c| c.id.as_str());
        let mut part = self.state.take_part(key, ids, Instant::now());
        for c in containers {
            let instance = (part.instances.entry(c.id.clone()))
                .or_insert_with(|| Instance::new(key.application_id, &c.name));
            if !c.running {
                instance.stop_probes();
            } else if instance.probed_run != c.started_at {
                self.watch_run(&mut part, None, c);
            }
        }
        let not_draining = containers.iter().filter(|c| {
            part.instances
                .get(&c.id)
                .is_some_and(|i| i.draining.is_none())
        });
        let upstreams = routable(&part, not_draining);
        if !upstreams.is_empty() || self.routing.keys().contains(key) {
            self.routing.publish(key.clone(), upstreams);
        }
        self.state.instances.extend(part.instances);
        // Nothing new is remembered of a deployment that is only held.
        if remembered {
            self.state.deployments.insert(key.clone(), part.deployment);
        }
    }
}
