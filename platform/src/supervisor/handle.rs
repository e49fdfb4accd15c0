//! The API's view of the supervisor ([`Handle`]): poke it, wait for a pass, have networks made
//! ahead of an upload, read the status it published, find an instance's container, tell
//! whether an address is inside Berth's container networks.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::status::ApplicationStatus;
use crate::routing::DeploymentKey;
use crate::sync::{MutexExt, RwLockExt};

/// The API's view of the supervisor: poke it, read status, find instances, check peers.
#[derive(Debug, Clone)]
pub struct Handle {
    pub(super) wake: Arc<Notify>,
    pub(super) status: Arc<RwLock<HashMap<i64, ApplicationStatus>>>,
    /// Instance name → (application id, container id).
    pub(super) instances: Arc<RwLock<HashMap<String, (i64, String)>>>,
    /// Instance name → (application id, its usage history).
    pub(super) usage: Arc<RwLock<HashMap<String, (i64, super::usage::SharedHistory)>>>,
    /// Subnets of Berth's networks: (network address, prefix length).
    pub(super) subnets: Arc<RwLock<Vec<(IpAddr, u8)>>>,
    /// Convergence requests handed out ([`Handle::converge`] takes the next number)…
    pub(super) requested: Arc<AtomicU64>,
    /// …and the highest one a completed pass had seen when it started (so it read the
    /// database after that request's change), with what of no desired deployment the last
    /// pass left still going.
    pub(super) covered: Arc<tokio::sync::watch::Sender<Covered>>,
    /// Deployments whose network uploads in flight want made now (how many uploads each).
    pub(super) preparing: Arc<Mutex<HashMap<DeploymentKey, usize>>>,
}

impl Handle {
    pub(super) fn new() -> Handle {
        Handle {
            wake: Arc::new(Notify::new()),
            status: Arc::default(),
            instances: Arc::default(),
            usage: Arc::default(),
            subnets: Arc::default(),
            requested: Arc::new(AtomicU64::new(0)),
            covered: Arc::new(tokio::sync::watch::channel(Covered::default()).0),
            preparing: Arc::default(),
        }
    }

    /// Adds subnets of Berth's networks (known to the internal API before any container of
    /// those networks starts).
    pub(super) fn add_subnets(&self, fresh: &[(IpAddr, u8)]) {
        let mut known = self.subnets.writing();
        for s in fresh {
            if !known.contains(s) {
                known.push(*s);
            }
        }
    }

    /// Replaces the subnets with those of the networks that exist now.
    pub(super) fn set_subnets(&self, subnets: Vec<(IpAddr, u8)>) {
        *self.subnets.writing() = subnets;
    }

    /// Publishes what a pass found: every application's status and the instances by name.
    pub(super) fn publish(
        &self,
        status: HashMap<i64, ApplicationStatus>,
        instances: HashMap<String, (i64, String)>,
    ) {
        *self.status.writing() = status;
        *self.instances.writing() = instances;
    }
    /// Publishes the usage history of every instance (those gone are dropped with it).
    pub(super) fn publish_usage(&self, usage: HashMap<String, (i64, super::usage::SharedHistory)>) {
        *self.usage.writing() = usage;
    }

    /// The usage history of each instance of `application_id` (last 15 minutes), by name.
    pub fn usage_history(
        &self,
        application_id: i64,
    ) -> Vec<(String, Vec<super::usage::UsagePoint>)> {
        let mut found: Vec<_> = self
            .usage
            .reading()
            .iter()
            .filter(|(_, (app, _))| *app == application_id)
            .map(|(name, (_, history))| {
                let points = history.locked().points();
                (name.clone(), points)
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// Asks for a reconcile pass soon (never blocks; several pokes coalesce).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Has the networks of `keys` made now, while an upload's image loads, instead of after it
    /// (a bridge network takes Docker 100–200 ms). They are kept while the returned guard
    /// lives; once it is dropped they are garbage unless the upload made them desired.
    pub fn prepare_networks(&self, keys: Vec<DeploymentKey>) -> PreparedNetworks {
        {
            let mut preparing = self.preparing.locked();
            for key in &keys {
                *preparing.entry(key.clone()).or_default() += 1;
            }
        }
        if !keys.is_empty() {
            self.poke();
        }
        PreparedNetworks {
            handle: self.clone(),
            keys,
        }
    }

    /// The deployments whose network an upload in flight wants.
    pub(super) fn preparing(&self) -> Vec<DeploymentKey> {
        let preparing = self.preparing.locked();
        preparing.keys().cloned().collect()
    }

    /// Pokes and waits (at most `limit`) until a pass that started after this call completed,
    /// and what of `scope`'s deployments that pass left still going is gone, so the caller
    /// sees Docker converged to the database (e.g. containers of a deleted application gone
    /// before its image is removed, an unsubscribed deployment's network gone). Another
    /// tenant's slow removal is not waited for. False on timeout.
    pub async fn converge(&self, scope: Scope, limit: Duration) -> bool {
        let mut covered = self.covered.subscribe();
        // A pass that starts after this number was taken reads the database after our change;
        // a pass already running may not have, and is not waited for beyond its end.
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.poke();
        let done = async {
            let left = covered
                .wait_for(|c| c.pass >= ticket)
                .await?
                .leftovers
                .within(&scope);
            // Removals run off the pass, and each one's end brings a pass (which starts removing
            // the networks that waited for it, and leaves them until that ends): wait for those
            // of that pass, not for any begun later (a busy installation may never be without
            // one).
            covered.wait_for(|c| gone_from(&left, &c.leftovers)).await?;
            Ok::<_, tokio::sync::watch::error::RecvError>(())
        };
        matches!(tokio::time::timeout(limit, done).await, Ok(Ok(())))
    }

    /// The status of an application (None if it has no deployment).
    pub fn status(&self, application_id: i64) -> Option<ApplicationStatus> {
        self.status.reading().get(&application_id).cloned()
    }

    /// The container of `instance` if it belongs to `application_id`.
    pub fn instance_container(&self, application_id: i64, instance: &str) -> Option<String> {
        self.instances
            .reading()
            .get(instance)
            .filter(|(app, _)| *app == application_id)
            .map(|(_, id)| id.clone())
    }

    /// True when `ip` is inside one of Berth's container networks.
    pub fn is_container_peer(&self, ip: IpAddr) -> bool {
        self.subnets
            .reading()
            .iter()
            .any(|(net, prefix)| in_subnet(ip, *net, *prefix))
    }
}

/// What the API waits for ([`Handle::converge`]): the last completed pass, and what of no
/// desired deployment it left still going.
#[derive(Debug, Clone, Default)]
pub(super) struct Covered {
    /// The highest convergence request it covered.
    pub pass: u64,
    pub leftovers: Arc<Leftovers>,
}

/// Whose leftovers [`Handle::converge`] waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every deployment of one application (its deletion: its images go after its containers).
    Application(i64),
    /// What serves one tenant's subscription to an application (its unsubscription): its
    /// PER_TENANT deployment, or the MULTI_TENANT one, which goes with the last subscriber.
    Subscription { application: i64, tenant: String },
    /// The per-tenant deployments of one tenant (its deletion).
    Tenant(String),
}

impl Scope {
    /// Whether a container or network with this `deployment` label (`<application id>/<tenant
    /// or shared>`, see [`DeploymentKey`]'s `Display`) is in scope. Unlabelled ones are no
    /// application's.
    fn covers(&self, label: Option<&str>) -> bool {
        let Some((application, tenant)) = label.and_then(|l| l.split_once('/')) else {
            return false;
        };
        match self {
            Scope::Application(id) => application.parse() == Ok(*id),
            Scope::Subscription {
                application: id,
                tenant: name,
            } => {
                application.parse() == Ok(*id)
                    && (tenant == name || tenant == crate::routing::SHARED)
            }
            Scope::Tenant(name) => tenant == name && tenant != crate::routing::SHARED,
        }
    }
}

/// What of no desired deployment a pass left: containers still being removed, networks
/// waiting for them or being removed; each by id or name, with its `deployment` label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Leftovers {
    pub containers: HashMap<String, Option<String>>,
    pub networks: HashMap<String, Option<String>>,
}

impl Leftovers {
    /// The ids and names of those in `scope`.
    fn within(&self, scope: &Scope) -> HashSet<String> {
        (self.containers.iter().chain(&self.networks))
            .filter(|(_, label)| scope.covers(label.as_deref()))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// None of `names` is left in `now` (what a later pass left). Container ids and network
/// names cannot be confused: an id is 64 hex digits, a network of Berth's has a prefix.
fn gone_from(names: &HashSet<String>, now: &Leftovers) -> bool {
    names
        .iter()
        .all(|n| !now.containers.contains_key(n) && !now.networks.contains_key(n))
}

/// Networks an upload wants made ahead of its version ([`Handle::prepare_networks`]).
#[derive(Debug)]
#[must_use = "the networks are wanted only while this lives"]
pub struct PreparedNetworks {
    handle: Handle,
    keys: Vec<DeploymentKey>,
}

impl Drop for PreparedNetworks {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        {
            let mut preparing = self.handle.preparing.locked();
            for key in &self.keys {
                if let Some(count) = preparing.get_mut(key) {
                    *count -= 1;
                    if *count == 0 {
                        preparing.remove(key);
                    }
                }
            }
        }
        // A failed upload's networks go at the next pass, not at the next tick.
        self.handle.poke();
    }
}

pub(super) fn in_subnet(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

pub(super) fn parse_subnet(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    Some((addr.parse().ok()?, prefix.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_networks_are_wanted_while_some_upload_holds_them() {
        let handle = Handle::new();
        let key = |t: &str| DeploymentKey {
            application_id: 7,
            tenant: Some(t.to_owned()),
        };
        let first = handle.prepare_networks(vec![key("t1"), key("t2")]);
        let second = handle.prepare_networks(vec![key("t2")]);
        let mut wanted = handle.preparing();
        wanted.sort();
        assert_eq!(wanted, vec![key("t1"), key("t2")]);
        drop(first);
        assert_eq!(handle.preparing(), vec![key("t2")]);
        drop(second);
        assert!(handle.preparing().is_empty());
    }

    /// The API's convergence waits for the pass after its change, then for what of its scope
    /// that pass left going, not for what later passes began nor for other deployments'.
    #[tokio::test]
    async fn converging_waits_for_the_removals_of_the_pass_after_the_change() {
        use futures_util::FutureExt;
        let handle = Handle::new();
        // Containers and networks named by their deployment label ("c1@3/t1": container c1
        // of deployment 3/t1).
        let publish = |pass, containers: &[&str], networks: &[&str]| {
            let labelled = |names: &[&str]| {
                (names.iter())
                    .map(|n| {
                        let (name, label) = n.split_once('@').unwrap();
                        (name.to_owned(), Some(label.to_owned()))
                    })
                    .collect()
            };
            let leftovers = Arc::new(Leftovers {
                containers: labelled(containers),
                networks: labelled(networks),
            });
            handle.covered.send_modify(|c| {
                c.pass = pass;
                c.leftovers = leftovers;
            });
        };
        publish(0, &["c0@3/t1"], &[]);
        let scope = Scope::Subscription {
            application: 3,
            tenant: "t1".into(),
        };
        let mut waiting = std::pin::pin!(handle.converge(scope, Duration::from_secs(3600)));
        // (case, the last pass published: covered, containers, networks; done)
        type Case<'a> = (&'a str, u64, &'a [&'a str], &'a [&'a str], bool);
        let cases: [Case; 5] = [
            ("no pass since the change", 0, &["c0@3/t1"], &[], false),
            (
                "the pass after it left a removal, and another deployment's",
                1,
                &["c0@3/t1", "c1@3/t1", "x1@3/t2", "x2@4/t1"],
                &["n1@3/t1", "nx@3/t2"],
                false,
            ),
            (
                "that removal still runs",
                2,
                &["c1@3/t1", "x1@3/t2"],
                &["n1@3/t1"],
                false,
            ),
            ("its network waits", 3, &["x1@3/t2"], &["n1@3/t1"], false),
            (
                "all gone, another deployment's and later removals apart",
                4,
                &["c2@3/t1", "x1@3/t2", "x2@4/t1"],
                &["n2@3/t1", "nx@3/t2"],
                true,
            ),
        ];
        for (case, pass, containers, networks, done) in cases {
            publish(pass, containers, networks);
            let answer = waiting.as_mut().now_or_never();
            assert_eq!(answer, done.then_some(true), "{case}");
        }
    }

    #[test]
    fn a_scope_covers_the_deployments_it_names() {
        let subscription = |application, tenant: &str| Scope::Subscription {
            application,
            tenant: tenant.to_owned(),
        };
        // (scope, label, covered)
        let cases = [
            (Scope::Application(3), Some("3/t1"), true),
            (Scope::Application(3), Some("3/shared"), true),
            (Scope::Application(3), Some("31/t1"), false),
            (Scope::Application(3), Some("4/t1"), false),
            (Scope::Application(3), None, false),
            (Scope::Application(3), Some("3"), false),
            (subscription(3, "t1"), Some("3/t1"), true),
            (subscription(3, "t1"), Some("3/shared"), true),
            (subscription(3, "t1"), Some("3/t2"), false),
            (subscription(3, "t1"), Some("4/t1"), false),
            (subscription(3, "t1"), Some("4/shared"), false),
            (Scope::Tenant("t1".into()), Some("3/t1"), true),
            (Scope::Tenant("t1".into()), Some("4/t1"), true),
            (Scope::Tenant("t1".into()), Some("3/t10"), false),
            (Scope::Tenant("t1".into()), Some("3/shared"), false),
            (Scope::Tenant("shared".into()), Some("3/shared"), false),
        ];
        for (scope, label, covered) in cases {
            assert_eq!(scope.covers(label), covered, "{scope:?} {label:?}");
        }
    }

    #[test]
    fn subnet_membership() {
        let cases = [
            ("172.18.0.5", "172.18.0.0/16", true),
            ("172.19.0.5", "172.18.0.0/16", false),
            ("192.168.16.2", "192.168.16.0/20", true),
            ("192.168.32.2", "192.168.16.0/20", false),
            ("10.0.0.1", "0.0.0.0/0", true),
            ("::1", "172.18.0.0/16", false),
        ];
        for (ip, net, inside) in cases {
            let (addr, prefix) = parse_subnet(net).unwrap();
            assert_eq!(
                in_subnet(ip.parse().unwrap(), addr, prefix),
                inside,
                "{ip} in {net}"
            );
        }
    }
}
