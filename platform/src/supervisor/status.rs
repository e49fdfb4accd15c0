//! What the supervisor reports about applications, deployments and instances, as types. The
//! alarms are computed from these types (a renamed field is a compile error, not a silently
//! disabled alarm); only the API renders them as JSON.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::autoscale::Decision;

/// The state of one instance, as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Running,
    /// Running, but the proxy ejected it and it failed the check that followed.
    Unresponsive,
    /// Stopped, waiting out a restart back-off after repeated failures.
    CrashLoopBackOff,
    /// Stopped, waiting out a restart back-off.
    Waiting,
    Stopped,
    /// Never ran: the cluster has no node that can run it yet.
    Pending,
}

impl InstanceState {
    /// The status's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Running => "RUNNING",
            InstanceState::Unresponsive => "UNRESPONSIVE",
            InstanceState::CrashLoopBackOff => "CRASH_LOOP_BACK_OFF",
            InstanceState::Waiting => "WAITING",
            InstanceState::Stopped => "STOPPED",
            InstanceState::Pending => "PENDING",
        }
    }

    /// The state of an instance from what is known of it: `unplaced` wins (no node can run it
    /// yet: it never ran), then `unresponsive` (it runs but does not answer), then running, then
    /// why a stopped one is stopped.
    pub fn of(
        unplaced: bool,
        running: bool,
        unresponsive: bool,
        waiting: bool,
        looping: bool,
    ) -> InstanceState {
        if unplaced {
            InstanceState::Pending
        } else if unresponsive {
            InstanceState::Unresponsive
        } else if running {
            InstanceState::Running
        } else if looping {
            InstanceState::CrashLoopBackOff
        } else if waiting {
            InstanceState::Waiting
        } else {
            InstanceState::Stopped
        }
    }
}

/// CPU in use by an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    pub cores: f64,
    /// `cores` as a fraction of the instance's CPU limit (None without a limit).
    pub of_limit: Option<f64>,
}

/// Memory of an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryUse {
    pub used_bytes: Option<u64>,
    pub peak_bytes: Option<u64>,
    pub limit_bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStatus {
    pub name: String,
    pub version: Option<String>,
    pub state: InstanceState,
    pub ready: bool,
    pub restarts: u32,
    pub ip: Option<IpAddr>,
    /// The node of a cluster runtime (`lost node …` once the cluster lost it).
    pub node: Option<String>,
    pub last_failure: Option<String>,
    /// Why the proxy took it out of routing for a while (see `routing`).
    pub ejected: Option<String>,
    pub draining: bool,
    pub cpu: Option<CpuUse>,
    pub memory: MemoryUse,
}

/// Why a deployment is not what it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentReason {
    /// Its current revision's replicas keep failing and wait out long back-offs.
    CrashLoopBackOff,
    /// Its network could not be made: no instance can run (waiting will not fix it).
    CannotCreateNetwork,
    /// Some of its current revision's replicas wait for a node with room (a cluster).
    Unschedulable,
}

impl DeploymentReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentReason::CrashLoopBackOff => "CrashLoopBackOff",
            DeploymentReason::CannotCreateNetwork => "CannotCreateNetwork",
            DeploymentReason::Unschedulable => "Unschedulable",
        }
    }
}

/// OOM kills of one deployment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OomKills {
    pub count: u32,
    pub last_time: Option<String>,
    pub last_peak_bytes: Option<u64>,
}

/// The autoscaler of a `scale: AUTO` deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerStatus {
    /// None before the first pass made its scaler.
    pub min_replicas: Option<u32>,
    pub max_replicas: u32,
    pub target: f64,
    pub scale_down_window_secs: u64,
    pub replicas: u32,
    pub last_decision: Option<Decision>,
    pub last_scale_time: Option<String>,
    /// The scale-down window (RFC 3339 time, replicas): what holds replicas up.
    pub recommendations: Option<Vec<(Option<String>, u32)>>,
}

/// Whether a deployment could be placed (its network made) and what its placed state is.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Placed {
        oom_kills: OomKills,
        autoscaler: Option<AutoscalerStatus>,
    },
    /// Its network could not be made (`reason` is `CannotCreateNetwork`).
    Unplaced,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentStatus {
    /// None for the shared deployment of a MULTI_TENANT service.
    pub tenant: Option<String>,
    pub version: String,
    pub autoscale: bool,
    pub desired: u32,
    /// Ready replicas of the current revision.
    pub active: u32,
    /// Ready replicas of any revision (the old one serves until the new one is ready).
    pub available: u32,
    /// Replicas of the current revision that are not ready.
    pub unhealthy: u32,
    pub restarts: u32,
    pub placement: Placement,
    pub reason: Option<DeploymentReason>,
    pub last_failure: Option<String>,
    /// Starting for the first time, within its startup grace: no alarm yet.
    pub starting: bool,
    pub instances: Vec<InstanceStatus>,
    /// What the proxy really sees: instance names, straight from the routing table.
    pub upstreams: Vec<String>,
}

/// Alarm types of the contract (§4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlarmType {
    /// `c8y_Application_Down` (CRITICAL): a deployment has no available instance.
    Down,
    /// `c8y_Application_Unhealthy` (MAJOR): some instances are not ready.
    Unhealthy,
}

impl AlarmType {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmType::Down => "c8y_Application_Down",
            AlarmType::Unhealthy => "c8y_Application_Unhealthy",
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            AlarmType::Down => crate::store::audit::CRITICAL,
            AlarmType::Unhealthy => crate::store::audit::MAJOR,
        }
    }
}

/// Active alarms of one application, by type, with their text.
pub type Alarms = BTreeMap<AlarmType, String>;

#[derive(Debug, Clone, PartialEq)]
pub enum ApplicationStatus {
    Deployed {
        active_version: String,
        stable_version: Option<String>,
        alarms: Alarms,
        deployments: Vec<DeploymentStatus>,
    },
    /// Its manifest or secrets could not be used, for this reason: nothing is made or changed,
    /// and what it had running keeps running (and routed) as it was until they can be again.
    Broken { reason: String },
}

/// The contract's alarms (§4.3) of one application from its deployments' status:
/// `c8y_Application_Down` when a deployment has no available instance (of any revision),
/// `c8y_Application_Unhealthy` when some instances are not ready; neither for a deployment
/// that is still `starting` for the first time.
pub fn alarms_of(deployments: &[DeploymentStatus]) -> Alarms {
    let mut down = Vec::new();
    let mut unhealthy = Vec::new();
    for d in deployments.iter().filter(|d| !d.starting) {
        let name = d.tenant.as_deref().unwrap_or(crate::routing::SHARED);
        if d.available == 0 {
            let says_why = matches!(
                d.reason,
                Some(DeploymentReason::CannotCreateNetwork | DeploymentReason::Unschedulable)
            );
            match d.last_failure.as_deref().filter(|_| says_why) {
                Some(why) => down.push(format!("{name} ({why})")),
                None => down.push(name.to_owned()),
            }
        } else if d.active < d.desired || d.unhealthy > 0 {
            unhealthy.push(format!("{name} ({}/{} ready)", d.active, d.desired));
        }
    }
    let mut alarms = Alarms::new();
    if !down.is_empty() {
        alarms.insert(
            AlarmType::Down,
            format!("No instance available: {}", down.join(", ")),
        );
    }
    if !unhealthy.is_empty() {
        alarms.insert(
            AlarmType::Unhealthy,
            format!("Some instances are not ready: {}", unhealthy.join(", ")),
        );
    }
    alarms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(
        tenant: Option<&str>,
        desired: u32,
        active: u32,
        available: u32,
        unhealthy: u32,
        starting: bool,
    ) -> DeploymentStatus {
        DeploymentStatus {
            tenant: tenant.map(str::to_owned),
            version: "1".to_owned(),
            autoscale: false,
            desired,
            active,
            available,
            unhealthy,
            restarts: 0,
            placement: Placement::Placed {
                oom_kills: OomKills::default(),
                autoscaler: None,
            },
            reason: None,
            last_failure: None,
            starting,
            instances: Vec::new(),
            upstreams: Vec::new(),
        }
    }

    #[test]
    fn alarms_follow_available_instances_except_while_starting() {
        use AlarmType::{Down, Unhealthy};
        let unplaced = DeploymentStatus {
            reason: Some(DeploymentReason::CannotCreateNetwork),
            last_failure: Some("pool full".to_owned()),
            placement: Placement::Unplaced,
            ..dep(Some("t9"), 1, 0, 0, 0, false)
        };
        let cases = [
            // Starting for the first time: no alarm, whatever the counts.
            (vec![dep(None, 1, 0, 0, 1, true)], vec![]),
            (vec![dep(None, 2, 1, 1, 1, true)], vec![]),
            // Nothing ready any more (or the grace is over): down.
            (
                vec![dep(None, 1, 0, 0, 1, false)],
                vec![(Down, "No instance available: shared")],
            ),
            // An upgrade: the old revision still serves, the new one is not ready yet.
            (
                vec![dep(None, 1, 0, 1, 1, false)],
                vec![(
                    Unhealthy,
                    "Some instances are not ready: shared (0/1 ready)",
                )],
            ),
            (vec![dep(None, 2, 2, 2, 0, false)], vec![]),
            // Per tenant: each deployment on its own.
            (
                vec![
                    dep(Some("t1"), 1, 0, 0, 1, false),
                    dep(Some("t2"), 1, 0, 0, 1, true),
                    dep(Some("t3"), 2, 1, 1, 1, false),
                ],
                vec![
                    (Down, "No instance available: t1"),
                    (Unhealthy, "Some instances are not ready: t3 (1/2 ready)"),
                ],
            ),
            // A deployment without a network says why it is down.
            (
                vec![unplaced],
                vec![(Down, "No instance available: t9 (pool full)")],
            ),
        ];
        for (deployments, expected) in cases {
            let alarms = alarms_of(&deployments);
            let expected: Alarms = expected
                .into_iter()
                .map(|(k, v)| (k, v.to_owned()))
                .collect();
            assert_eq!(alarms, expected, "{deployments:?}");
        }
    }

    #[test]
    fn instance_states_in_order_of_precedence() {
        use InstanceState::*;
        // (unplaced, running, unresponsive, waiting, looping, state)
        let cases = [
            (true, false, false, true, true, Pending),
            (false, true, true, false, false, Unresponsive),
            (false, true, false, false, false, Running),
            (false, false, false, true, true, CrashLoopBackOff),
            (false, false, false, true, false, Waiting),
            (false, false, false, false, false, Stopped),
        ];
        for (unplaced, running, unresponsive, waiting, looping, state) in cases {
            assert_eq!(
                InstanceState::of(unplaced, running, unresponsive, waiting, looping),
                state
            );
        }
    }
}
