//! Removing what no desired deployment uses: its containers, then, once none is left on
//! them, its networks; each off the pass (see [`removals`](super::removals)).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Supervisor;
use super::plan::Action;
use crate::routing::DeploymentKey;
use crate::runtime::{InstanceInfo, NetworkInfo};

/// What is not garbage: the `deployment` labels of `keys` (desired and held deployments), and
/// the names of their networks and of those uploads in flight are having made (`preparing`).
pub(super) fn wanted(
    keys: &HashSet<&DeploymentKey>,
    preparing: &[DeploymentKey],
    network_name: impl Fn(&DeploymentKey) -> String,
) -> (HashSet<String>, HashSet<String>) {
    let deployments = keys.iter().map(ToString::to_string).collect();
    let networks = (keys.iter().copied().chain(preparing))
        .map(network_name)
        .collect();
    (deployments, networks)
}

impl Supervisor {
    /// Starts removing the containers of no desired deployment (freeing names, addresses and
    /// memory) and the networks nothing is left on (`listed`, the pass's listing: freeing an
    /// unsubscribe's subnet once its removal ends), each off the pass. Returns the networks
    /// that wait for their containers' removal, each with its `deployment` label.
    pub(super) fn collect_garbage(
        &mut self,
        garbage: Vec<Action>,
        mut orphans: HashMap<String, InstanceInfo>,
        listed: Option<&HashMap<String, NetworkInfo>>,
    ) -> HashMap<String, Option<String>> {
        let mut waiting = HashMap::new();
        for action in garbage {
            match action {
                Action::Remove { id, .. } => {
                    if let Some(c) = orphans.remove(&id) {
                        self.state.instances.remove(&c.id);
                        tracing::info!(container = %c.name, "removing container of no desired deployment");
                        self.start_removal(&c);
                    }
                }
                Action::RemoveNetwork { name } => {
                    if let Some(n) = listed.and_then(|l| l.get(&name)) {
                        tracing::info!(network = %name, "removing network of no desired deployment");
                        self.start_network_removal(n, false);
                    }
                }
                Action::DeferNetwork { name, deployment } => {
                    tracing::debug!(network = %name, "network of no desired deployment waits for its containers' removal");
                    waiting.insert(name, deployment);
                }
                _ => {}
            }
        }
        waiting
    }

    /// Starts removing a container off the pass, unless it is being removed already.
    pub(super) fn start_removal(&self, c: &InstanceInfo) {
        let runtime = Arc::clone(&self.runtime);
        let wake = Arc::clone(&self.handle.wake);
        if !self.state.removals.start(runtime, wake, c) {
            tracing::debug!(container = %c.name, "being removed already");
        }
    }

    /// Starts removing a network off the pass (with the instances on it first when
    /// `with_instances`), unless it is being removed already.
    pub(super) fn start_network_removal(&self, n: &NetworkInfo, with_instances: bool) {
        let runtime = Arc::clone(&self.runtime);
        let wake = Arc::clone(&self.handle.wake);
        if !(self.state.removals).start_network(runtime, wake, n, with_instances) {
            tracing::debug!(network = %n.name, "being removed already");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::plan::{self, Removal};
    use crate::supervisor::spec;

    #[test]
    fn a_broken_applications_deployments_are_held_not_garbage() {
        let key = |app, tenant: Option<&str>| DeploymentKey {
            application_id: app,
            tenant: tenant.map(str::to_owned),
        };
        let network = |k: &DeploymentKey| format!("net-{k}");
        // Application 1 deploys; 2 is broken (its manifest no longer validates) with t1 and
        // t2 subscribed, whichever its isolation; 4's upload is making its network.
        let desired = [key(1, None)];
        let held = spec::held_keys(2, &["t1".to_owned(), "t2".to_owned()]);
        assert_eq!(held, [key(2, None), key(2, Some("t1")), key(2, Some("t2"))]);
        let keys: HashSet<&DeploymentKey> = desired.iter().chain(&held).collect();
        let (deployments, networks) = wanted(&keys, &[key(4, None)], network);
        // (deployment label, garbage)
        let cases = [
            (Some("1/shared"), false),
            (Some("2/shared"), false),
            (Some("2/t1"), false),
            (Some("2/t2"), false),
            // Unsubscribed from the broken application: goes as usual.
            (Some("2/t3"), true),
            // Deleted or unsubscribed everywhere.
            (Some("3/shared"), true),
            (Some("4/shared"), true),
            (None, true),
        ];
        let instances: Vec<(String, Option<String>)> = (cases.iter().enumerate())
            .map(|(i, (label, _))| (format!("c{i}"), label.map(str::to_owned)))
            .collect();
        let nets: Vec<(String, Option<String>)> = cases
            .iter()
            .filter_map(|(label, _)| Some((format!("net-{}", (*label)?), label.map(str::to_owned))))
            .collect();
        let actions = plan::garbage(
            &instances,
            &nets,
            &[],
            &HashSet::new(),
            (&deployments, &networks),
        );
        for (i, (label, garbage)) in cases.iter().enumerate() {
            let removed = Action::Remove {
                id: format!("c{i}"),
                why: Removal::Orphan,
            };
            assert_eq!(actions.contains(&removed), *garbage, "container {label:?}");
            let Some(label) = label else { continue };
            let name = format!("net-{label}");
            // The network an upload is making is kept, though nothing runs on it yet; the
            // others wait for their instance's removal.
            let garbage = *garbage && *label != "4/shared";
            let waits = Action::DeferNetwork {
                name,
                deployment: Some((*label).to_owned()),
            };
            assert_eq!(actions.contains(&waits), garbage, "network {label}");
        }
    }
}
