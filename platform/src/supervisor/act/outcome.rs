//! What converging a deployment left: its kept and old-revision instances for the report,
//! and which of them the proxy may send to.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::routing::Upstream;
use crate::runtime::InstanceInfo;
use crate::supervisor::state::Part;

/// The upstreams among `instances` the proxy may send to: running, ready, with an address.
pub(in crate::supervisor) fn routable<'a>(
    part: &Part,
    instances: impl Iterator<Item = &'a InstanceInfo>,
) -> Vec<Upstream> {
    instances
        .filter(|c| c.running && part.is_ready(&c.id))
        .filter_map(|c| {
            c.ip.map(|ip| Upstream {
                instance: c.name.clone(),
                addr: SocketAddr::new(ip, 80),
            })
        })
        .collect()
}

/// What converging one deployment left: its kept replicas by slot, the old-revision
/// instances still serving, and whether every replica of the current revision is ready.
pub(in crate::supervisor) struct Converged {
    pub kept: BTreeMap<u32, InstanceInfo>,
    pub old: Vec<InstanceInfo>,
    pub all_ready: bool,
}
