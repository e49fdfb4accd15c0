//! From Swarm's tasks and nodes to Berth's instances, as pure functions. A deployment revision
//! is one service; each of its replica slots is one Berth instance, whose current run is the
//! newest task of that slot. A task on a node that is not `ready` (its engine died, or it was
//! cut off) does not count as running whatever its last reported state, so routing drops it as
//! soon as the manager notices; Swarm itself starts a new task for the slot on a live node.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{Node, NodeState, Task, TaskState};

/// A node as the mapping needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// `<host name>@<address>`, how status names it.
    pub hostname: String,
    /// Its address, where the relay's host port is published.
    pub addr: Option<Ipv4Addr>,
    pub ready: bool,
    /// The manager's word on it when not ready (`heartbeat failure…`).
    pub message: String,
}

/// The nodes by id.
pub fn nodes(list: Vec<Node>) -> HashMap<String, NodeView> {
    list.into_iter()
        .filter_map(|n| {
            let id = n.id?;
            let status = n.status.unwrap_or_default();
            let addr: Option<Ipv4Addr> = status.addr.and_then(|a| a.parse().ok());
            // Host names need not be unique (nodes cloned from one image); the address is.
            let hostname = n
                .description
                .and_then(|d| d.hostname)
                .unwrap_or_else(|| id.chars().take(12).collect());
            let hostname = match addr {
                Some(a) => format!("{hostname}@{a}"),
                None => hostname,
            };
            let view = NodeView {
                hostname,
                addr,
                ready: status.state == Some(NodeState::READY),
                message: status.message.unwrap_or_default(),
            };
            Some((id, view))
        })
        .collect()
}

/// One replica slot's current run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Berth's replica number, `0..replicas` (Swarm counts slots from 1).
    pub replica: u32,
    pub task_id: String,
    /// The task's DNS name on its network (`<service>.<slot>.<task id>`), which the relay
    /// resolves.
    pub task_name: String,
    /// The task's container on its node (empty before the node created it).
    pub container_id: String,
    pub node_id: String,
    /// The node's host name, or `lost node <name>` while it is not ready.
    pub node: String,
    pub node_ready: bool,
    pub running: bool,
    /// Swarm is still bringing the task up (scheduled, pulling, starting) on a live node: not a
    /// run that ended, so the supervisor must not count it as an exit.
    pub starting: bool,
    /// Swarm's state word (`running`, `starting`, `failed`…).
    pub state: String,
    pub exit_code: Option<i64>,
    /// When the task entered its current state: its start while running, its end after.
    pub since: String,
    /// Why it is not running (the task's error, or the node's message).
    pub message: String,
}

/// The slots `0..replicas` of service `service` that have a task, each with its newest task
/// (one Swarm still wants running first). While Swarm is bringing a slot's replacement up
/// after its container exited, the slot shows that ended run instead: Swarm restarts within
/// 200 ms, and the supervisor must see the exit (its reason, an OOM kill) to record it.
///
/// When a service shrinks, Swarm chooses which tasks go: the highest slots while every task
/// runs and the nodes hold equally many, but first a task that is not running and one on the
/// node with the most. A task it kept above `replicas` therefore takes the place of the lowest
/// slot it removed below, so the replica the supervisor kept is not lost from sight (and the
/// slot Swarm emptied is not shown as an exit forever).
pub fn slots(
    service: &str,
    replicas: u32,
    tasks: &[Task],
    nodes: &HashMap<String, NodeView>,
) -> Vec<Slot> {
    let mut newest: HashMap<i64, &Task> = HashMap::new();
    let mut ended: HashMap<i64, &Task> = HashMap::new();
    for t in tasks {
        let Some(slot) = t.slot.filter(|s| *s >= 1) else {
            continue;
        };
        let better = match newest.get(&slot) {
            None => true,
            Some(held) => rank(t) > rank(held),
        };
        if better {
            newest.insert(slot, t);
        }
        if exited(t) && ended.get(&slot).is_none_or(|held| rank(t) > rank(held)) {
            ended.insert(slot, t);
        }
    }
    let top = i64::from(replicas);
    let mut survivors: Vec<i64> = newest
        .iter()
        .filter(|(slot, t)| **slot > top && wanted(t))
        .map(|(slot, _)| *slot)
        .collect();
    survivors.sort_unstable();
    // Slots below the top that Swarm emptied (no task, or one it shut down itself); only
    // looked for when a task above the top survived (never for `u32::MAX`).
    let holes: Vec<i64> = if survivors.is_empty() {
        Vec::new()
    } else {
        (1..=top)
            .filter(|s| newest.get(s).is_none_or(|t| !wanted(t) && !exited(t)))
            .take(survivors.len())
            .collect()
    };
    let moved: HashMap<i64, i64> = survivors.into_iter().zip(holes).collect();
    let mut out: Vec<Slot> = newest
        .into_iter()
        .filter_map(|(slot, t)| {
            let place = if slot > top {
                *moved.get(&slot)?
            } else if moved.values().any(|hole| *hole == slot) {
                return None;
            } else {
                slot
            };
            let current = slot_of(service, slot, t, nodes);
            let mut shown = match ended.get(&slot) {
                Some(e) if current.starting => slot_of(service, slot, e, nodes),
                _ => current,
            };
            shown.replica = u32::try_from(place - 1).unwrap_or(0);
            Some(shown)
        })
        .collect();
    out.sort_by_key(|s| s.replica);
    out
}

/// A run whose container ended by itself (not one Swarm shut down or never started).
fn exited(t: &Task) -> bool {
    let status = t.status.as_ref();
    matches!(
        status.and_then(|s| s.state),
        Some(TaskState::FAILED | TaskState::COMPLETE)
    ) && status
        .and_then(|s| s.container_status.as_ref())
        .and_then(|c| c.container_id.as_ref())
        .is_some_and(|c| !c.is_empty())
}

/// Tasks Swarm wants running outrank those it stopped; then the newer (higher version).
fn rank(t: &Task) -> (bool, u64) {
    (
        wanted(t),
        t.version.as_ref().and_then(|v| v.index).unwrap_or(0),
    )
}

/// Whether Swarm means to run the task: desired `running`, or `ready` while its restart
/// policy's delay holds a slot's replacement back (Swarm sets it `running` once the delay is
/// over).
fn wanted(t: &Task) -> bool {
    matches!(t.desired_state, Some(TaskState::RUNNING | TaskState::READY))
}

fn slot_of(service: &str, slot: i64, t: &Task, nodes: &HashMap<String, NodeView>) -> Slot {
    let task_id = t.id.clone().unwrap_or_default();
    let node_id = t.node_id.clone().unwrap_or_default();
    let node = nodes.get(&node_id);
    let node_ready = node.is_some_and(|n| n.ready);
    let status = t.status.clone().unwrap_or_default();
    let state = status.state.unwrap_or(TaskState::NEW);
    let running =
        state == TaskState::RUNNING && t.desired_state == Some(TaskState::RUNNING) && node_ready;
    let node_name = match node {
        Some(n) if n.ready => n.hostname.clone(),
        Some(n) => format!("lost node {}", n.hostname),
        None if node_id.is_empty() => "unscheduled".to_owned(),
        None => format!("lost node {}", &node_id[..node_id.len().min(12)]),
    };
    let unscheduled = node_id.is_empty() && status.err.is_none();
    let message = match (node, status.err) {
        (Some(n), _) if !n.ready => format!("node {} is {}", n.hostname, n.message),
        (_, Some(err)) => err,
        _ => status.message.unwrap_or_default(),
    };
    // A replacement held back by the restart delay is starting too: shown as a run of its own
    // (not running, no exit code), it would be counted as an exit and hide the ended run's. So
    // is a task not yet given a node (the scheduler is slow under load): it has not run, and
    // counting it as an exit recorded a restart of a replica that never started. One the
    // scheduler cannot place says why (`err`) and stays in sight.
    let starting = wanted(t)
        && (node_ready || unscheduled)
        && matches!(
            state,
            TaskState::NEW
                | TaskState::ALLOCATED
                | TaskState::PENDING
                | TaskState::ASSIGNED
                | TaskState::ACCEPTED
                | TaskState::PREPARING
                | TaskState::READY
                | TaskState::STARTING
        );
    Slot {
        replica: u32::try_from(slot - 1).unwrap_or(0),
        starting,
        task_name: format!("{service}.{slot}.{task_id}"),
        container_id: status
            .container_status
            .as_ref()
            .and_then(|c| c.container_id.clone())
            .unwrap_or_default(),
        task_id,
        node_id,
        node: node_name,
        node_ready,
        running,
        state: state.to_string(),
        exit_code: status
            .container_status
            .and_then(|c| c.exit_code)
            .filter(|_| !running),
        since: status.timestamp.unwrap_or_default(),
        message,
    }
}

impl Slot {
    /// The scheduler's reason while it can place the slot's task on no node: a pending task
    /// given no node, with an error (shown instead of being taken for a run that ended).
    pub fn unplaced(&self) -> Option<&str> {
        (self.node_id.is_empty() && !self.running && !self.starting && !self.message.is_empty())
            .then_some(self.message.as_str())
    }
}

/// The relay's published host port on each node, from the relay service's tasks.
pub fn relay_ports(tasks: &[Task]) -> HashMap<String, u16> {
    tasks
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .filter_map(|t| {
            let node = t.node_id.clone()?;
            let port = t
                .status
                .as_ref()?
                .port_status
                .as_ref()?
                .ports
                .as_ref()?
                .iter()
                .find_map(|p| p.published_port)?;
            Some((node, u16::try_from(port).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        ContainerStatus, EndpointPortConfig, NodeDescription, NodeStatus, ObjectVersion,
        PortStatus, TaskStatus,
    };

    use super::*;

    fn task(id: &str, slot: i64, node: &str, state: TaskState, desired: TaskState, v: u64) -> Task {
        Task {
            id: Some(id.into()),
            slot: Some(slot),
            node_id: Some(node.into()),
            version: Some(ObjectVersion { index: Some(v) }),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                timestamp: Some(format!("2026-01-01T00:00:0{v}Z")),
                container_status: Some(ContainerStatus {
                    exit_code: Some(if state == TaskState::FAILED { 137 } else { 0 }),
                    container_id: Some(format!("c-{id}")),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(id: &str, name: &str, state: NodeState) -> Node {
        Node {
            id: Some(id.into()),
            description: Some(NodeDescription {
                hostname: Some(name.into()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(state),
                message: Some("heartbeat failure".into()),
                addr: Some("10.213.9.11".into()),
            }),
            ..Default::default()
        }
    }

    fn cluster() -> HashMap<String, NodeView> {
        nodes(vec![
            node("n1", "node-1", NodeState::READY),
            node("n2", "node-2", NodeState::READY),
            node("n3", "node-3", NodeState::DOWN),
        ])
    }

    #[test]
    fn each_slot_shows_its_newest_wanted_task() {
        use TaskState::*;
        let tasks = vec![
            task("a-old", 1, "n1", FAILED, SHUTDOWN, 3),
            task("a-new", 1, "n2", RUNNING, RUNNING, 5),
            task("b", 2, "n1", STARTING, RUNNING, 4),
            // scaled away: slot 4 of a 3-replica service
            task("d", 4, "n1", RUNNING, SHUTDOWN, 6),
        ];
        let slots = slots("svc", 3, &tasks, &cluster());
        let got: Vec<_> = slots
            .iter()
            .map(|s| (s.replica, s.task_id.as_str(), s.running, s.node.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "a-new", true, "node-2@10.213.9.11"),
                (1, "b", false, "node-1@10.213.9.11")
            ]
        );
        assert_eq!(slots[0].task_name, "svc.1.a-new");
        assert_eq!(slots[0].exit_code, None);
        assert_eq!(slots[1].state, "starting");
        assert!(slots[1].starting && !slots[0].starting);
    }

    #[test]
    fn a_task_on_a_lost_node_is_not_running_and_names_the_node() {
        use TaskState::*;
        let tasks = vec![task("c", 3, "n3", RUNNING, RUNNING, 2)];
        let s = &slots("svc", 3, &tasks, &cluster())[0];
        assert!(!s.running && !s.starting);
        assert!(!s.node_ready);
        assert_eq!(s.node, "lost node node-3@10.213.9.11");
        assert_eq!(s.message, "node node-3@10.213.9.11 is heartbeat failure");
    }

    #[test]
    fn an_exit_shows_until_its_replacement_runs() {
        use TaskState::*;
        let mut tasks = vec![
            task("old", 1, "n1", FAILED, SHUTDOWN, 3),
            task("new", 1, "n1", PREPARING, RUNNING, 4),
        ];
        let s = &slots("svc", 1, &tasks, &cluster())[0];
        assert_eq!((s.task_id.as_str(), s.running), ("old", false));
        assert_eq!((s.exit_code, s.container_id.as_str()), (Some(137), "c-old"));
        tasks[1].status.as_mut().unwrap().state = Some(RUNNING);
        let s = &slots("svc", 1, &tasks, &cluster())[0];
        assert_eq!((s.task_id.as_str(), s.running), ("new", true));
    }

    #[test]
    fn a_replacement_held_by_the_restart_delay_shows_the_ended_run() {
        use TaskState::*;
        // Swarm creates the replacement with desired state `ready` and sets it `running` only
        // after the restart delay: until then, the run that ended is the slot's.
        let tasks = vec![
            task("killed", 1, "n1", FAILED, SHUTDOWN, 3),
            task("held", 1, "n1", PENDING, READY, 4),
        ];
        let s = &slots("svc", 1, &tasks, &cluster())[0];
        assert_eq!((s.task_id.as_str(), s.running), ("killed", false));
        assert_eq!(s.exit_code, Some(137));
        assert_eq!(s.since, "2026-01-01T00:00:03Z");
    }

    #[test]
    fn a_task_swarm_kept_above_the_replicas_takes_the_place_of_one_it_removed() {
        use TaskState::*;
        // Shrunk from 3 to 2, Swarm removed slot 1 (say, not running at the time) and kept
        // slot 3: that task is replica 0 now, and slot 1's shut-down task is not an exit.
        let tasks = vec![
            task("removed", 1, "n1", SHUTDOWN, SHUTDOWN, 7),
            task("b", 2, "n2", RUNNING, RUNNING, 4),
            task("kept", 3, "n1", RUNNING, RUNNING, 5),
        ];
        let shown = slots("svc", 2, &tasks, &cluster());
        let got: Vec<_> = shown
            .iter()
            .map(|s| (s.replica, s.task_id.as_str(), s.running))
            .collect();
        assert_eq!(got, vec![(0, "kept", true), (1, "b", true)]);
        assert_eq!(shown[0].task_name, "svc.3.kept", "its DNS name is its own");
        // The same with slot 1's task already gone; and one scaled away as asked (slot 3 shut
        // down) changes nothing.
        let s = slots("svc", 2, &tasks[1..], &cluster());
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].replica, s[0].task_id.as_str()), (0, "kept"));
        let asked = vec![
            task("a", 1, "n1", RUNNING, RUNNING, 3),
            task("b", 2, "n2", RUNNING, RUNNING, 4),
            task("c", 3, "n3", RUNNING, SHUTDOWN, 8),
        ];
        let s = slots("svc", 2, &asked, &cluster());
        let got: Vec<_> = s.iter().map(|s| (s.replica, s.task_id.as_str())).collect();
        assert_eq!(got, vec![(0, "a"), (1, "b")]);
    }

    #[test]
    fn a_task_not_yet_given_a_node_is_starting_not_an_exit() {
        use TaskState::*;
        let mut pending = task("p", 1, "", PENDING, RUNNING, 2);
        pending.status.as_mut().unwrap().container_status = None;
        let s = &slots("svc", 1, std::slice::from_ref(&pending), &cluster())[0];
        assert!(s.starting && !s.running, "{s:?}");
        // One the scheduler cannot place is shown, with the scheduler's reason.
        pending.status.as_mut().unwrap().err = Some("no suitable node".into());
        let s = &slots("svc", 1, &[pending], &cluster())[0];
        assert!(!s.starting && !s.running);
        assert_eq!(s.message, "no suitable node");
        assert_eq!(s.unplaced(), Some("no suitable node"));
    }

    #[test]
    fn only_a_task_without_a_node_is_unplaced() {
        use TaskState::*;
        let mut failed = task("f", 1, "n1", FAILED, SHUTDOWN, 2);
        failed.status.as_mut().unwrap().err = Some("task: non-zero exit (1)".into());
        let mut lost = task("l", 1, "n2", RUNNING, RUNNING, 3);
        lost.node_id = Some("gone".into());
        let mut waiting = task("w", 1, "", PENDING, RUNNING, 4);
        waiting.status.as_mut().unwrap().container_status = None;
        for (t, unplaced) in [(failed, false), (lost, false), (waiting, false)] {
            let s = &slots("svc", 1, std::slice::from_ref(&t), &cluster())[0];
            assert_eq!(s.unplaced().is_some(), unplaced, "{s:?}");
        }
    }

    #[test]
    fn a_failed_task_keeps_its_exit_code() {
        use TaskState::*;
        let tasks = vec![task("f", 1, "n1", FAILED, SHUTDOWN, 2)];
        let s = &slots("svc", 1, &tasks, &cluster())[0];
        assert!(!s.running);
        assert_eq!(s.exit_code, Some(137));
        assert_eq!(s.since, "2026-01-01T00:00:02Z");
    }

    #[test]
    fn relay_ports_come_from_running_relay_tasks() {
        use TaskState::*;
        let mut up = task("r1", 0, "n1", RUNNING, RUNNING, 1);
        up.status.as_mut().unwrap().port_status = Some(PortStatus {
            ports: Some(vec![EndpointPortConfig {
                published_port: Some(31000),
                ..Default::default()
            }]),
        });
        let mut down = up.clone();
        down.node_id = Some("n2".into());
        down.status.as_mut().unwrap().state = Some(FAILED);
        assert_eq!(
            relay_ports(&[up, down]),
            HashMap::from([("n1".to_owned(), 31000)])
        );
    }
}
