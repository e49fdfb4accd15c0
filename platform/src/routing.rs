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
//! * Passive health: [`RoutingTable::eject`] lets the proxy report an upstream that refused a
//!   connection, reset it or did not answer in time; it is left out of [`RoutingTable::ready`]
//!   for the ejection period (as nginx `max_fails=1 fail_timeout` / Envoy outlier detection),
//!   except that the last routable upstream of a deployment is never ejected (Envoy's panic
//!   routing: a 504 from a slow replica beats a 503 from none). Each instance's probe task sees
//!   the ejection ([`RoutingTable::ejection`]) and decides whether the replica is still ready;
//!   when it turns ready (again) it ends the ejection ([`RoutingTable::readmit`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::sync::RwLockExt;

/// What names the shared deployment where a tenant's id would name a dedicated one (in labels,
/// container and network names, alarms), so no tenant may have it as its id.
pub const SHARED: &str = "shared";

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
            None => write!(f, "{}/{SHARED}", self.application_id),
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
    /// Why a deployment could not be made (its network), for the proxy's 503.
    failures: RwLock<HashMap<DeploymentKey, String>>,
    ejected: RwLock<HashMap<String, Ejection>>,
    /// Poked (one waiter) when the proxy ejects an upstream, so the supervisor passes promptly.
    refused_notify: Notify,
    /// Poked (every waiter) on each ejection, for the probe tasks.
    ejections: Notify,
    /// Moved when the supervisor changed what the store says about an application (a
    /// rollback restores another version's manifest: isolation, context path), so the
    /// proxy's cached resolutions, which API writes invalidate, follow it too.
    catalog: std::sync::atomic::AtomicU64,
}

/// An upstream the proxy took out of routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ejection {
    /// When it was (last) ejected; a probe task acts once per ejection.
    pub since: Instant,
    pub until: Instant,
    /// What the proxy saw ("timed out after 2s", "connection refused").
    pub reason: String,
}

/// The upstreams of `list` that receive traffic at `now`: those not ejected, or all of them
/// when every one is ejected (panic routing: a deployment is never emptied by ejections, only
/// by its readiness verdicts).
fn routable(
    list: &Arc<[Upstream]>,
    ejected: &HashMap<String, Ejection>,
    now: Instant,
) -> Arc<[Upstream]> {
    let out = |u: &Upstream| ejected.get(&u.instance).is_some_and(|e| e.until > now);
    if !list.iter().any(out) || list.iter().all(out) {
        return Arc::clone(list);
    }
    list.iter().filter(|u| !out(u)).cloned().collect()
}

impl RoutingTable {
    pub fn new() -> RoutingTable {
        RoutingTable::default()
    }

    /// Says that applications changed outside the API (see `Inner::catalog`).
    pub fn catalog_changed(&self) {
        self.inner
            .catalog
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// How many times [`RoutingTable::catalog_changed`] was called.
    pub fn catalog(&self) -> u64 {
        self.inner
            .catalog
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The ready upstreams of `key` (empty if none, or if the deployment does not exist; see
    /// [`RoutingTable::exists`] to tell them apart).
    pub fn ready(&self, key: &DeploymentKey) -> Arc<[Upstream]> {
        let list = self
            .inner
            .ready
            .reading()
            .get(key)
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()));
        let ejected = self.inner.ejected.reading();
        if ejected.is_empty() {
            return list;
        }
        routable(&list, &ejected, Instant::now())
    }

    /// True when the supervisor has published `key` (the deployment exists, ready or not).
    pub fn exists(&self, key: &DeploymentKey) -> bool {
        self.inner.ready.reading().contains_key(key)
    }

    /// Replaces the ready list of `key` (ejections of the instances listed still apply).
    pub fn publish(&self, key: DeploymentKey, upstreams: Vec<Upstream>) {
        let mut map = self.inner.ready.writing();
        let unchanged = map
            .get(&key)
            .is_some_and(|current| current.as_ref() == upstreams.as_slice());
        if !unchanged {
            map.insert(key, Arc::from(upstreams));
        }
    }

    /// Forgets a deployment (unsubscribed, application deleted).
    pub fn remove(&self, key: &DeploymentKey) {
        self.inner.ready.writing().remove(key);
    }

    /// Records (Some) or clears (None) why `key` could not be deployed.
    pub fn set_failure(&self, key: &DeploymentKey, reason: Option<String>) {
        let mut map = self.inner.failures.writing();
        match reason {
            Some(reason) => {
                map.insert(key.clone(), reason);
            }
            None => {
                map.remove(key);
            }
        }
    }

    /// Why `key` could not be deployed, if it could not.
    pub fn failure(&self, key: &DeploymentKey) -> Option<String> {
        self.inner.failures.reading().get(key).cloned()
    }

    /// Forgets the failures of deployments no longer wanted.
    pub fn forget_failures_except(&self, keys: &HashSet<&DeploymentKey>) {
        self.inner
            .failures
            .writing()
            .retain(|k, _| keys.contains(k));
    }

    /// Every published deployment (for the supervisor's bookkeeping and for tests).
    pub fn keys(&self) -> Vec<DeploymentKey> {
        self.inner.ready.reading().keys().cloned().collect()
    }

    /// The proxy reports that `instance` failed a request (refused, reset, timed out): it
    /// receives no traffic for `period` (renewed by each new failure). Only a new ejection
    /// wakes anyone, so a storm of failures costs one wake-up per replica and period.
    pub fn eject(&self, instance: &str, reason: String, period: Duration) {
        let now = Instant::now();
        let fresh = {
            let mut ejected = self.inner.ejected.writing();
            match ejected.get_mut(instance).filter(|e| e.until > now) {
                Some(current) => {
                    current.until = now + period;
                    current.reason = reason;
                    false
                }
                None => {
                    let ejection = Ejection {
                        since: now,
                        until: now + period,
                        reason,
                    };
                    ejected.insert(instance.to_owned(), ejection);
                    true
                }
            }
        };
        if fresh {
            self.inner.refused_notify.notify_one();
            self.inner.ejections.notify_waiters();
        }
    }

    /// The current ejection of `instance`, if its period is not over.
    pub fn ejection(&self, instance: &str) -> Option<Ejection> {
        self.inner
            .ejected
            .reading()
            .get(instance)
            .filter(|e| e.until > Instant::now())
            .cloned()
    }

    /// Ends the ejection of `instance`: its probe task saw it ready (again).
    pub fn readmit(&self, instance: &str) {
        self.inner.ejected.writing().remove(instance);
    }

    /// Drops ejections of instances that no longer exist, and those whose period is over.
    pub fn forget_ejected_except(&self, existing: &HashSet<String>) {
        let now = Instant::now();
        self.inner
            .ejected
            .writing()
            .retain(|name, e| existing.contains(name) && e.until > now);
    }

    /// Resolves at the next ejection of any upstream (probe tasks' side).
    pub async fn ejected(&self) {
        self.inner.ejections.notified().await;
    }

    /// Resolves when the proxy has ejected an upstream (supervisor side).
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
        table.eject("a", "refused".into(), Duration::from_secs(60));
        assert_eq!(table.ready(&key).as_ref(), &[up("b", 80)]);
        let first = table.ejection("a").unwrap();
        assert_eq!(first.reason, "refused");
        // A renewal is the same ejection, later over.
        table.eject("a", "reset".into(), Duration::from_secs(90));
        let renewed = table.ejection("a").unwrap();
        assert_eq!(
            (renewed.since, renewed.reason.as_str()),
            (first.since, "reset")
        );
        assert!(renewed.until > first.until);
        // A reader's snapshot is not changed under it.
        assert_eq!(snapshot.len(), 2);
        // Alone, an ejected replica still gets traffic (panic routing).
        table.publish(key.clone(), vec![up("a", 80)]);
        assert_eq!(table.ready(&key).as_ref(), &[up("a", 80)]);
        table.readmit("a");
        assert!(table.ejection("a").is_none());
        table.eject("a", "reset".into(), Duration::from_secs(60));
        table.forget_ejected_except(&HashSet::new());
        assert!(table.ejection("a").is_none());
        table.publish(key.clone(), Vec::new());
        assert!(table.exists(&key) && table.ready(&key).is_empty());
        table.remove(&key);
        assert!(!table.exists(&key));
        let shared = DeploymentKey::for_caller(7, false, "t1");
        assert_eq!(shared.tenant, None);
        assert_eq!(shared.to_string(), "7/shared");
    }

    #[test]
    fn ejected_upstreams_leave_routing_for_their_period_but_never_all() {
        let now = Instant::now();
        let list: Arc<[Upstream]> = Arc::from(vec![up("a", 80), up("b", 80), up("c", 80)]);
        let ejection = |secs: i64| Ejection {
            since: now,
            until: if secs >= 0 {
                now + Duration::from_secs(secs as u64)
            } else {
                now - Duration::from_secs((-secs) as u64)
            },
            reason: String::new(),
        };
        // (ejected instances with seconds left, routable instances)
        type Case<'a> = (&'a [(&'a str, i64)], &'a [&'a str]);
        let cases: [Case; 5] = [
            (&[], &["a", "b", "c"]),
            (&[("b", 10)], &["a", "c"]),
            (&[("b", -1)], &["a", "b", "c"]),
            (&[("a", 10), ("c", 5), ("x", 5)], &["b"]),
            (&[("a", 10), ("b", 10), ("c", 10)], &["a", "b", "c"]),
        ];
        for (ejected, expected) in cases {
            let map: HashMap<String, Ejection> = ejected
                .iter()
                .map(|(name, secs)| ((*name).to_owned(), ejection(*secs)))
                .collect();
            let names: Vec<String> = routable(&list, &map, now)
                .iter()
                .map(|u| u.instance.clone())
                .collect();
            assert_eq!(names, expected.to_vec(), "{ejected:?}");
        }
    }
}
