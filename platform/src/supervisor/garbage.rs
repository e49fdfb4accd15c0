//! Removing what no desired deployment uses: its containers (`deploy_concurrency` at once),
//! then its networks.

use std::collections::HashMap;

use futures_util::{StreamExt, stream};

use super::Supervisor;
use super::plan::Action;
use crate::runtime::InstanceInfo;

impl Supervisor {
    /// Removes containers of no desired deployment, then their networks (freeing names,
    /// addresses and memory, and an unsubscribe's subnet for this very pass); containers
    /// `deploy_concurrency` at once.
    pub(super) async fn collect_garbage(
        &mut self,
        garbage: Vec<Action>,
        mut orphans: HashMap<String, InstanceInfo>,
    ) {
        let mut containers = Vec::new();
        let mut networks = Vec::new();
        for action in garbage {
            match action {
                Action::Remove { id, .. } => {
                    if let Some(c) = orphans.remove(&id) {
                        self.state.instances.remove(&c.id);
                        containers.push(c);
                    }
                }
                Action::RemoveNetwork { name } => networks.push(name),
                _ => {}
            }
        }
        let runtime = &self.runtime;
        stream::iter(containers)
            .for_each_concurrent(self.settings.deploy_concurrency, |c| async move {
                tracing::info!(container = %c.name, "removing container of no desired deployment");
                if let Err(e) = runtime.remove_instance(&c.id).await {
                    tracing::warn!(container = %c.name, error = %e, "cannot remove container");
                }
            })
            .await;
        for name in networks {
            tracing::info!(network = %name, "removing network of no desired deployment");
            if let Err(e) = self.runtime.remove_network(&name).await {
                tracing::warn!(network = %name, error = %e, "cannot remove network");
            }
        }
    }
}
