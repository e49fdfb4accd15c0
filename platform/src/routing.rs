//! The routing table between the supervisor (writer) and the request proxy (reader): for every
//! deployment, the container instances that are ready to receive traffic right now.
//!
//! Contract:
//! * A deployment is named by [`DeploymentKey`]: the application id plus, for PER_TENANT
//!   applications, the subscribed tenant (`None` = the one shared MULTI_TENANT deployment).
//! * The supervisor calls [`RoutingTable::publish`] with the complete list of READY upstreams of a
//!   deployment whenever it changes (a replica passed or failed readiness, started or stopped),
//!   and [`RoutingTable::remove`] when the deployment goes away. An empty list means "deployment
//!   exists but nothing is ready" (the proxy answers 503); an absent key means "no deployment"
//!   (never subscribed, or being created).
//! * The proxy calls [`RoutingTable::ready`] on every request. Readers never block writers for
//!   long: the map is behind an `RwLock` held only to clone an `Arc`, and each list is an
//!   immutable `Arc<[Upstream]>` snapshot, so a reader keeps a consistent list while the
//!   supervisor publishes a new one.
//! * Upstreams are plain HTTP on the container's bridge-network IP, port 80 (no published ports:
//!   the Berth host routes to its Docker bridges directly).
//! * [`RoutingTable::mark_refused`] lets the proxy report an upstream that refused a connection;
//!   it is taken out of [`RoutingTable::ready`] at once; the supervisor's next pass re-checks
//!   it with a TCP connect and lists it again only if that succeeds (which clears the mark).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

/// One deployment: an application, shared (`tenant: None`) or dedicated to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentKey {
    pub application_id: i64,
    /// The subscribed tenant for PER_TENANT applications; `None` for the MULTI_TENANT deployment.
    pub tenant: Option<String>,
}

impl DeploymentKey {
    /// The key under which `tenant`'s requests to an application of `isolation` are served.
    pub fn for_caller(application_id: i64, per_tenant: bool, tenant: &str) -> DeploymentKey {
        DeploymentKey {
            application_id,
            tenant: per_tenant.then(|| tenant.to_owned()),
        }
    }
}

impl std::fmt::Display for DeploymentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tenant {
            Some(t) => write!(f, "{}/{t}", self.application_id),
            None => write!(f, "{}/shared", self.application_id),
        }
    }
}

/// A ready container instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// The instance name, as listed in the application's status and used by the logs endpoint.
    pub instance: String,
    /// Container IP and port 80 on the deployment's bridge network.
    pub addr: SocketAddr,
}

/// Ready upstreams per deployment; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ready: RwLock<HashMap<DeploymentKey, Arc<[Upstream]>>>,
    refused: RwLock<HashSet<String>>,
    /// Poked when the proxy reports a refused upstream, so the supervisor re-probes promptly.
    refused_notify: Notify,
}

impl RoutingTable {
    pub fn new() -> RoutingTable {
        RoutingTable::default()
    }

    /// The ready upstreams of `key` (empty if none, or if the deployment does not exist; see
    /// [`RoutingTable::exists`] to tell them apart).
    pub fn ready(&self, key: &DeploymentKey) -> Arc<[Upstream]> {
        let list = self
            .inner
            .ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()));
        let refused = self.inner.refused.read().unwrap_or_else(|p| p.into_inner());
        if refused.is_empty() || !list.iter().any(|u| refused.contains(&u.instance)) {
            return list;
        }
        list.iter()
            .filter(|u| !refused.contains(&u.instance))
            .cloned()
            .collect()
    }

    /// True when the supervisor has published `key` (the deployment exists, ready or not).
    pub fn exists(&self, key: &DeploymentKey) -> bool {
        self.inner
            .ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Replaces the ready list of `key`. Clears refusal marks of the instances listed (the
    /// supervisor only lists instances whose readiness it has just confirmed).
    pub fn publish(&self, key: DeploymentKey, upstreams: Vec<Upstream>) {
        {
            let mut refused = self
                .inner
                .refused
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for u in &upstreams {
                refused.remove(&u.instance);
            }
        }
        let mut map = self.inner.ready.write().unwrap_or_else(|p| p.into_inner());
        let unchanged = map
            .get(&key)
            .is_some_and(|current| current.as_ref() == upstreams.as_slice());
        if !unchanged {
            map.insert(key, Arc::from(upstreams));
        }
    }

    /// Forgets a deployment (unsubscribed, application deleted).
    pub fn remove(&self, key: &DeploymentKey) {
        self.inner
            .ready
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Every published deployment (for the supervisor's bookkeeping and for tests).
    pub fn keys(&self) -> Vec<DeploymentKey> {
        self.inner
            .ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The proxy reports that `instance` refused a connection: it stops receiving traffic
    /// until the supervisor publishes it as ready again.
    pub fn mark_refused(&self, instance: &str) {
        self.inner
            .refused
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance.to_owned());
        self.inner.refused_notify.notify_one();
    }

    /// Instances the proxy reported as refusing connections, not yet re-confirmed.
    pub fn refused(&self) -> Vec<String> {
        self.inner
            .refused
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Drops refusal marks of instances that no longer exist.
    pub fn forget_refused_except(&self, existing: &HashSet<String>) {
        self.inner
            .refused
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name| existing.contains(name));
    }

    /// Resolves when the proxy has reported a refused upstream (supervisor side).
    pub async fn refused_reported(&self) {
        self.inner.refused_notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, port: u16) -> Upstream {
        Upstream {
            instance: name.to_owned(),
            addr: SocketAddr::from(([172, 30, 0, 2], port)),
        }
    }

    #[test]
    fn publish_replace_refuse_and_remove() {
        let table = RoutingTable::new();
        let key = DeploymentKey::for_caller(7, true, "t1");
        assert!(!table.exists(&key));
        assert!(table.ready(&key).is_empty());
        table.publish(key.clone(), vec![up("a", 80), up("b", 80)]);
        assert_eq!(table.ready(&key).len(), 2);
        let snapshot = table.ready(&key);
        table.mark_refused("a");
        assert_eq!(table.ready(&key).as_ref(), &[up("b", 80)]);
        // A reader's snapshot is not changed under it.
        assert_eq!(snapshot.len(), 2);
        table.publish(key.clone(), vec![up("a", 80)]);
        assert_eq!(table.ready(&key).as_ref(), &[up("a", 80)]);
        table.publish(key.clone(), Vec::new());
        assert!(table.exists(&key) && table.ready(&key).is_empty());
        table.remove(&key);
        assert!(!table.exists(&key));
        let shared = DeploymentKey::for_caller(7, false, "t1");
        assert_eq!(shared.tenant, None);
        assert_eq!(shared.to_string(), "7/shared");
    }
}
