//! The supervisor's decisions as pure functions of desired state, observed state and the
//! time: what to remove as garbage, which replicas to create, keep, drain or remove, when an
//! old revision retires, what to do with one instance run (kill, watch, count an exit, start,
//! wait out a back-off) and how a rollout ends. They return [`Action`]s; the executor (the
//! rest of this module tree) applies them through the runtime. No IO, no clock, no Docker:
//! the tables below test every rule.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::backoff;

/// Why an instance is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// It belongs to no desired deployment.
    Orphan,
    /// A second instance of one replica slot (a create raced a crash), or one without a slot.
    Duplicate,
    /// Scaled down, and its drain period is over.
    Drained,
    /// Of an old revision, once the new one serves (or it does not run anyway).
    Retired,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove an instance.
    Remove { id: String, why: Removal },
    /// Remove a network no desired deployment uses (after its instances).
    RemoveNetwork { name: String },
    /// Take a scaled-down instance out of routing now; remove it at `until`.
    Drain { id: String, until: Instant },
    /// A draining instance is wanted again (scaled back up): it serves again.
    Undrain { id: String },
    /// Keep the instance of a wanted replica slot running (see [`tend`]).
    Tend { replica: u32, id: String },
    /// Create (and start) the instance of an empty replica slot.
    Create { replica: u32 },
    /// An old-revision instance keeps serving until the new revision is ready.
    Retain { id: String },
}

/// One instance of a deployment as the planner sees it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub id: String,
    /// Its replica slot label (None when missing or unreadable).
    pub replica: Option<u32>,
    pub running: bool,
    /// Draining until then (scaled down).
    pub draining: Option<Instant>,
}

/// Instances of no desired deployment (`deployment` label absent or not wanted), and
/// networks no desired deployment uses.
pub fn garbage(
    instances: &[(String, Option<String>)],
    networks: &[String],
    wanted_deployments: &HashSet<String>,
    wanted_networks: &HashSet<String>,
) -> Vec<Action> {
    let mut actions: Vec<Action> = instances
        .iter()
        .filter(|(_, d)| !d.as_ref().is_some_and(|d| wanted_deployments.contains(d)))
        .map(|(id, _)| Action::Remove {
            id: id.clone(),
            why: Removal::Orphan,
        })
        .collect();
    actions.extend(
        networks
            .iter()
            .filter(|n| !wanted_networks.contains(*n))
            .map(|name| Action::RemoveNetwork { name: name.clone() }),
    );
    actions
}

/// The current revision's instances against `replicas` wanted slots: keep one instance per
/// slot (the first in `current`'s order), drain those of slots scaled away while they run,
/// remove the drained and the duplicates, create the empty slots whose creation is not
/// backing off (`create_backoff`: slot → next try).
pub fn replicas(
    replicas: u32,
    current: &[Observed],
    create_backoff: &BTreeMap<u32, Instant>,
    drain_period: Duration,
    now: Instant,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut kept: BTreeMap<u32, &str> = BTreeMap::new();
    for c in current {
        match c.replica {
            Some(r) if r < replicas && !kept.contains_key(&r) => {
                if c.draining.is_some() {
                    actions.push(Action::Undrain { id: c.id.clone() });
                }
                kept.insert(r, &c.id);
            }
            Some(r) if r >= replicas && c.running => {
                // Out of routing now, removed after the drain period so requests in flight
                // finish.
                let until = c.draining.unwrap_or(now + drain_period);
                if until <= now {
                    actions.push(Action::Remove {
                        id: c.id.clone(),
                        why: Removal::Drained,
                    });
                } else if c.draining.is_none() {
                    actions.push(Action::Drain {
                        id: c.id.clone(),
                        until,
                    });
                }
            }
            Some(r) if r >= replicas => actions.push(Action::Remove {
                id: c.id.clone(),
                why: Removal::Drained,
            }),
            _ => actions.push(Action::Remove {
                id: c.id.clone(),
                why: Removal::Duplicate,
            }),
        }
    }
    for replica in 0..replicas {
        match kept.get(&replica) {
            Some(id) => actions.push(Action::Tend {
                replica,
                id: (*id).to_owned(),
            }),
            None if may_create(create_backoff.get(&replica).copied(), now) => {
                actions.push(Action::Create { replica })
            }
            None => {}
        }
    }
    actions
}

/// Whether a slot whose last creation failed may be tried again.
pub fn may_create(next_try: Option<Instant>, now: Instant) -> bool {
    next_try.is_none_or(|t| t <= now)
}

/// An instance of an old revision of a deployment as [`retire`] sees it.
#[derive(Debug, Clone)]
pub struct Old {
    pub id: String,
    pub running: bool,
    pub ready: bool,
    /// Of the stable version, which a rollout in progress returns to.
    pub stable: bool,
}

/// Old-revision instances once the current revision was tended: all retire when every wanted
/// replica of the current revision is ready (traffic has moved), and a stopped one retires at
/// once. Of the others, those of the stable version and those serving (ready) keep running;
/// the rest retire at once: an unready instance of a version that never became stable serves
/// nothing, and keeping it let each new upload during a rollout leave the previous one's
/// containers running beside it, where the tenant's maxima charge only the active and the
/// stable version (`crate::limits::charged`).
pub fn retire(replicas: u32, ready_current: usize, old: &[Old]) -> Vec<Action> {
    let all_ready = ready_current == replicas as usize;
    old.iter()
        .map(|c| {
            if all_ready || !c.running || !(c.ready || c.stable) {
                Action::Remove {
                    id: c.id.clone(),
                    why: Removal::Retired,
                }
            } else {
                Action::Retain { id: c.id.clone() }
            }
        })
        .collect()
}

/// One run of a kept instance as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub running: bool,
    /// Its liveness probe failed on this very run.
    pub liveness_failed: bool,
    /// It has run and ended (a finish time is known).
    pub exited: bool,
    /// That end is counted already.
    pub exit_counted: bool,
    /// When it may be started again (restart back-off).
    pub next_start: Option<Instant>,
}

/// What to do with one instance run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tend {
    /// Liveness failed: kill it (the exit is counted when observed).
    Kill,
    /// Running: keep its probes and stats on this run.
    Watch,
    /// A new exit: count it, then decide again.
    CountExit,
    /// Stopped and not backing off: start it.
    Start,
    /// Stopped, backing off until then.
    Wait(Instant),
}

pub fn tend(run: Run, now: Instant) -> Tend {
    if run.running {
        return if run.liveness_failed {
            Tend::Kill
        } else {
            Tend::Watch
        };
    }
    if run.exited && !run.exit_counted {
        return Tend::CountExit;
    }
    match run.next_start {
        Some(t) if t > now => Tend::Wait(t),
        _ => Tend::Start,
    }
}

/// The next start after the `failures`-th consecutive failure.
pub fn next_start(failures: u32, now: Instant) -> Instant {
    now + backoff::delay(failures)
}

/// An exit the engine reports, as [`count_exit`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct Exit<'a> {
    pub oom_killed: bool,
    pub exit_code: Option<i64>,
    /// Why Berth killed the run for failing liveness, when it did.
    pub liveness_kill: Option<&'a str>,
}

/// What an exit makes of the instance's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The consecutive failures, this exit included.
    pub failures: u32,
    /// The reason shown in status and recorded in the audit log.
    pub reason: String,
    pub next_start: Instant,
}

/// Counts a new exit after `failures` consecutive ones: a liveness kill keeps its own, more
/// telling reason (SIGKILL: 137; a process that exited by itself meanwhile is recorded as it
/// exited), then an OOM kill, then the exit code.
pub fn count_exit(exit: Exit<'_>, failures: u32, now: Instant) -> Counted {
    let reason = match exit.liveness_kill {
        Some(kill) if exit.exit_code == Some(137) => kill.to_owned(),
        _ if exit.oom_killed => "OOMKilled: the memory limit was exceeded".to_owned(),
        _ => format!("exited with code {}", exit.exit_code.unwrap_or(-1)),
    };
    let failures = failures + 1;
    Counted {
        failures,
        reason,
        next_start: next_start(failures, now),
    }
}

/// A start the engine refused counts as a failure: the streak after it and the wait before
/// the next try.
pub fn failed_start(failures: u32) -> (u32, Duration) {
    let failures = failures + 1;
    (failures, backoff::delay(failures))
}

/// Whether a run that has lasted since `since` has shown its streak of failures is over.
pub fn streak_over(since: Instant, now: Instant) -> bool {
    now.duration_since(since) >= backoff::STABLE_AFTER
}

/// What [`restart_pace`] decides from: one revision's instances as a runtime that restarts
/// them by itself (Docker Swarm) runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The longest failure streak among the revision's instances.
    pub streak: u32,
    /// Whether any of them is not running (an exit Swarm has not yet restarted).
    pub any_down: bool,
    /// The delay last set on the runtime for this revision (None: not known since this
    /// Berth started, or never set: the runtime's own, [`backoff::FIRST_DELAY`]).
    pub asked: Option<Duration>,
}

/// The restart delay a runtime that restarts instances by itself should wait after an exit of
/// this revision's instances, when it must be changed (None: leave it). Swarm restarts by its
/// service's restart policy, one for every slot, and a change of it replaces every task of
/// the service, healthy ones included; so the delay follows the back-off numbers only from a
/// crash loop on ([`backoff::CRASH_LOOP_AFTER`] failures in a row: a single crash keeps the
/// fast restart and touches nothing), rises with the streak (`backoff::delay` of the next
/// failure: 800 ms doubling to 60 s), and comes down only while some instance is down (the
/// next exit after a streak reset, whose slot is waiting anyway), never under a revision whose
/// instances all run.
pub fn restart_pace(pace: Pace) -> Option<Duration> {
    let wanted = if pace.streak >= backoff::CRASH_LOOP_AFTER {
        backoff::delay(pace.streak.saturating_add(1)).max(backoff::FIRST_DELAY)
    } else {
        backoff::FIRST_DELAY
    };
    let current = pace.asked.unwrap_or(backoff::FIRST_DELAY);
    let change = match pace.asked {
        Some(asked) if asked == wanted => false,
        _ if wanted > current => true,
        _ => pace.any_down && (pace.asked.is_none() || wanted < current),
    };
    change.then_some(wanted)
}

/// How a rollout of the active version stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// The active version is the stable one: nothing rolls out.
    Stable,
    /// Every deployment of the active version is ready: record it as stable.
    MarkStable,
    /// Not ready within its deadline: roll back to the stable version.
    RollBack { to: String },
    /// Not ready yet (or nothing to roll back to): wait.
    Wait,
}

pub fn rollout(
    active: &str,
    stable: Option<&str>,
    ready: bool,
    elapsed: Duration,
    deadline: Duration,
) -> Rollout {
    if stable == Some(active) {
        return Rollout::Stable;
    }
    if ready {
        return Rollout::MarkStable;
    }
    match stable {
        Some(to) if elapsed >= deadline => Rollout::RollBack { to: to.to_owned() },
        _ => Rollout::Wait,
    }
}

#[cfg(test)]
mod tests;
