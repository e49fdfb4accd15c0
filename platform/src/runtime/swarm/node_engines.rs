//! Each node's own engine, for what the manager cannot do: a container's stats (usage
//! samples for the autoscaler and the metrics), exec (exec probes), kill (liveness), and its
//! `OOMKilled` flag (the OOM record). Reached at the unix socket `swarm_node_engines` names
//! for the node's address; a node without one keeps the manager-only behaviour (README: what
//! Swarm cannot guarantee).

use std::net::IpAddr;

use super::SwarmRuntime;
use super::tasks;
use crate::runtime::RuntimeError;
use crate::runtime::docker::DockerEngine;

/// Seconds a node engine's answer may take. Its calls (kill, inspect, stats, exec) are small, and
/// the reconcile pass awaits some of them: a node cut off behind a forwarded socket must not
/// hold every tenant's pass for the local engine's 10 minutes (image loads) per call.
const NODE_ENGINE_TIMEOUT_SECS: u64 = 30;

impl SwarmRuntime {
    /// The engine of the node at `addr`, connected on first use (outside the lock: one node
    /// that does not answer must not hold the others' callers).
    async fn node_engine(&self, addr: IpAddr) -> Option<DockerEngine> {
        let socket = self.settings.node_engines.get(&addr)?;
        if let Some(e) = self.node_engines.lock().await.get(&addr) {
            return Some(e.clone());
        }
        match DockerEngine::connect_with_timeout(socket, NODE_ENGINE_TIMEOUT_SECS).await {
            Ok(e) => {
                let mut engines = self.node_engines.lock().await;
                Some(engines.entry(addr).or_insert(e).clone())
            }
            Err(e) => {
                tracing::warn!(node = %addr, error = %e, "cannot reach the node's engine");
                None
            }
        }
    }

    /// The container of instance `id`'s current run and the engine of the node it is on,
    /// when that node's engine is known.
    pub(super) async fn container_of(
        &self,
        id: &str,
    ) -> Result<Option<(DockerEngine, String)>, RuntimeError> {
        let Some((slot, nodes)) = self
            .slot_of_instance(id)
            .await?
            .filter(|(s, _)| !s.container_id.is_empty())
        else {
            return Ok(None);
        };
        let Some(addr) = nodes.get(&slot.node_id).and_then(|n| n.addr) else {
            return Ok(None);
        };
        Ok(self
            .node_engine(IpAddr::V4(addr))
            .await
            .map(|e| (e, slot.container_id)))
    }

    /// The engine and container of instance `id`'s current run, for exec probes, which
    /// only a node's own engine can run.
    pub(super) async fn exec_engine(
        &self,
        id: &str,
    ) -> Result<(DockerEngine, String), RuntimeError> {
        self.container_of(id).await?.ok_or_else(|| {
            RuntimeError::Docker(
                "exec probes need the node's own engine (swarm_node_engines)".into(),
            )
        })
    }

    /// Whether the ended run `slot` was killed for exceeding its memory limit, from its
    /// node's engine (false when that engine is unknown or the container is gone).
    pub(super) async fn oom_killed(
        &self,
        slot: &tasks::Slot,
        nodes: &std::collections::HashMap<String, tasks::NodeView>,
    ) -> bool {
        if slot.running || slot.container_id.is_empty() {
            return false;
        }
        let Some(addr) = nodes.get(&slot.node_id).and_then(|n| n.addr) else {
            return false;
        };
        let Some(engine) = self.node_engine(IpAddr::V4(addr)).await else {
            return false;
        };
        crate::runtime::Runtime::instance(&engine, &slot.container_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.oom_killed)
    }
}
