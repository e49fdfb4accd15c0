//! The supervisor's decisions as pure functions of desired state, observed state and the
//! time: what to remove as garbage, which replicas to create, keep, drain or remove, when an
//! old revision retires, what to do with one instance run (kill, watch, count an exit, start,
//! wait out a back-off) and how a rollout ends. They return [`Action`]s; the executor (the
//! rest of this module tree) applies them through the runtime. No IO, no clock, no Docker:
//! the tables below test every rule.

use std::collections::{BTreeMap, BTreeSet, HashSet};
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
    /// A network no desired deployment uses waits: some instance on it is being removed (or
    /// starts being removed now). Removed by the pass after the last removal ends.
    /// `deployment` is the network's `deployment` label.
    DeferNetwork {
        name: String,
        deployment: Option<String>,
    },
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

/// An instance this process is removing (its removal runs off the pass), as its labels say:
/// it is neither live nor garbage any more, but its network and its replica slot wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaving {
    /// Its `deployment`, `revision` and `replica` labels (None when missing or unreadable).
    pub deployment: Option<String>,
    pub revision: Option<String>,
    pub replica: Option<u32>,
}

/// Instances of no desired deployment (`deployment` label absent or not wanted), and
/// networks no desired deployment uses, each `(name, deployment label)`. `instances` are those
/// listed and not being removed; `leaving`, those being removed. A network goes only once no
/// instance of its deployment is listed or leaving: instances go before networks, and a
/// network's subnet (and name) is not free for another deployment while anything still runs
/// on it. A network being removed (`leaving_networks`) is not removed a second time.
pub fn garbage(
    instances: &[(String, Option<String>)],
    networks: &[(String, Option<String>)],
    leaving: &[Leaving],
    leaving_networks: &HashSet<&str>,
    wanted: (&HashSet<String>, &HashSet<String>),
) -> Vec<Action> {
    let (wanted_deployments, wanted_networks) = wanted;
    let mut actions: Vec<Action> = instances
        .iter()
        .filter(|(_, d)| !d.as_ref().is_some_and(|d| wanted_deployments.contains(d)))
        .map(|(id, _)| Action::Remove {
            id: id.clone(),
            why: Removal::Orphan,
        })
        .collect();
    let occupied: HashSet<Option<&str>> = (instances.iter().map(|(_, d)| d.as_deref()))
        .chain(leaving.iter().map(|l| l.deployment.as_deref()))
        .collect();
    actions.extend(
        (networks.iter())
            .filter(|(n, _)| !wanted_networks.contains(n) && !leaving_networks.contains(n.as_str()))
            .map(|(name, deployment)| {
                let name = name.clone();
                if occupied.contains(&deployment.as_deref()) {
                    let deployment = deployment.clone();
                    Action::DeferNetwork { name, deployment }
                } else {
                    Action::RemoveNetwork { name }
                }
            }),
    );
    actions
}

/// What to do about a desired deployment's network before its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkStep {
    /// It is there as it should be.
    Use,
    /// It is missing: make it on a free subnet.
    Create,
    /// It is there but wrong (a bridge the host firewall does not cover): start removing it
    /// with the instances on it, then wait like [`NetworkStep::Wait`].
    Replace,
    /// It is being removed: nothing is made on it, and its name is not taken again, until the
    /// removal ends (its end brings the pass that makes it anew).
    Wait,
}

/// The step for a deployment's network: `leaving` when it is being removed, `found` its
/// bridge name if it exists (None inside when it has none), `bridge` the one it must have.
pub fn network_step(leaving: bool, found: Option<Option<&str>>, bridge: &str) -> NetworkStep {
    match found {
        _ if leaving => NetworkStep::Wait,
        None => NetworkStep::Create,
        Some(b) if b == Some(bridge) => NetworkStep::Use,
        Some(_) => NetworkStep::Replace,
    }
}

/// The replica slots of `deployment`'s `revision` whose instance is still being removed: no
/// new instance is made in them until the removal ends. Container names differ (a random
/// suffix), but a runtime that names an instance by its slot (a Swarm service's task slot)
/// would otherwise scale the same service down and up at once, and the slot's removal could
/// take the new instance with it.
pub fn leaving_slots(leaving: &[Leaving], deployment: &str, revision: &str) -> BTreeSet<u32> {
    leaving
        .iter()
        .filter(|l| {
            l.deployment.as_deref() == Some(deployment) && l.revision.as_deref() == Some(revision)
        })
        .filter_map(|l| l.replica)
        .collect()
}

/// The current revision's instances against `replicas` wanted slots: keep one instance per
/// slot (the first in `current`'s order), drain those of slots scaled away while they run,
/// remove the drained and the duplicates, create the empty slots whose creation is not
/// backing off (`create_backoff`: slot → next try) and whose last instance is not still being
/// removed (`leaving`, see [`leaving_slots`]; the removal's end brings the next pass).
pub fn replicas(
    replicas: u32,
    current: &[Observed],
    create_backoff: &BTreeMap<u32, Instant>,
    leaving: &BTreeSet<u32>,
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
            None if may_create(create_backoff.get(&replica).copied(), now)
                && !leaving.contains(&replica) =>
            {
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

/// An instance of an old revision of a deployment as [`kept`] and [`retire`] see it.
#[derive(Debug, Clone)]
pub struct Old {
    pub id: String,
    pub running: bool,
    /// Its revision and version labels (None when missing).
    pub revision: Option<String>,
    pub version: Option<String>,
}

/// What [`kept`] decides from, besides the old instances.
#[derive(Debug, Clone, Copy)]
pub struct Beside<'a> {
    /// The deployment's current (desired) revision.
    pub current: &'a str,
    /// The deployment's last revision all of whose wanted replicas were ready, as this process
    /// remembers it (None after a restart, or before any was).
    pub stable_revision: Option<&'a str>,
    /// The application's active and stable versions.
    pub active_version: &'a str,
    pub stable_version: Option<&'a str>,
    /// The revision kept last pass and since when it is kept.
    pub kept_since: Option<(&'a str, Instant)>,
    /// How long an old revision may run beside the current one (the rollout deadline).
    pub deadline: Duration,
    pub now: Instant,
}

/// The one old revision that keeps running beside the current one while it is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub revision: String,
    /// Since when it runs beside the current revision (the first pass that kept it).
    pub since: Instant,
    /// Its time is over: it retires although the current revision is not ready.
    pub expired: bool,
}

/// Which old revision keeps running beside the current one: only the deployment's last
/// fully-ready revision, never one merely carrying the stable version's label (a revision
/// change of the same version, a runtime option or a re-upload, carries it too, and each
/// further change added another set of containers). Unknown after a restart: then the old
/// revision of the stable version with the most running instances (ties: the lowest name),
/// which the caller remembers from then on. None when it is the current one or nothing of it
/// runs.
///
/// It keeps running for the rollout deadline, counted from the pass that first kept it (a
/// further change does not restart the count). Past that it retires, unless it is the stable
/// version of a version rollout in progress: the application's rollout rolls that one back
/// (or, refused, keeps it charged to the tenant: `crate::limits::charged`). A revision change
/// within one version has nothing to roll back to (the runtime option is the tenant's, and a
/// re-upload replaced the stored version), so the old revision stops and the new one stays.
pub fn kept(b: Beside<'_>, old: &[Old]) -> Option<Kept> {
    let runs = |revision: &str| {
        old.iter()
            .filter(|o| o.running && o.revision.as_deref() == Some(revision))
            .count()
    };
    let revision = match b.stable_revision {
        Some(r) if r == b.current => return None,
        Some(r) => r.to_owned(),
        None => {
            let stable = b.stable_version?;
            let mut candidates: Vec<&str> = old
                .iter()
                .filter(|o| o.running && o.version.as_deref() == Some(stable))
                .filter_map(|o| o.revision.as_deref())
                .filter(|r| *r != b.current)
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            // The most running instances; of equals, the lowest name (max_by keeps the last).
            candidates
                .into_iter()
                .rev()
                .max_by_key(|r| runs(r))?
                .to_owned()
        }
    };
    if runs(&revision) == 0 {
        return None;
    }
    let since = match b.kept_since {
        Some((r, since)) if r == revision => since,
        _ => b.now,
    };
    let version = old
        .iter()
        .find(|o| o.revision.as_deref() == Some(revision.as_str()))
        .and_then(|o| o.version.as_deref());
    let version_rollout =
        version.is_some_and(|v| v != b.active_version && Some(v) == b.stable_version);
    let expired = !version_rollout && b.now.duration_since(since) >= b.deadline;
    Some(Kept {
        revision,
        since,
        expired,
    })
}

/// Old-revision instances once the current revision was tended: all retire when every wanted
/// replica of the current revision is ready (traffic has moved), and a stopped one retires at
/// once. Of the others, only the running instances of the [`kept`] revision keep serving, until
/// its time is over; every other old revision retires at once, so a deployment runs at most
/// two revisions, and what runs beside a rollout is bounded in time.
pub fn retire(
    replicas: u32,
    ready_current: usize,
    old: &[Old],
    kept: Option<&Kept>,
) -> Vec<Action> {
    let all_ready = ready_current == replicas as usize;
    let keep = kept
        .filter(|k| !k.expired && !all_ready)
        .map(|k| k.revision.as_str());
    old.iter()
        .map(|c| {
            if c.running && keep.is_some_and(|k| c.revision.as_deref() == Some(k)) {
                Action::Retain { id: c.id.clone() }
            } else {
                Action::Remove {
                    id: c.id.clone(),
                    why: Removal::Retired,
                }
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
    /// The active version is the stable one, as it was when it became ready: nothing rolls
    /// out.
    Stable,
    /// Every deployment of the active version is ready: record it as stable.
    MarkStable,
    /// Not ready within its deadline: roll back to the stable version.
    RollBack { to: String },
    /// A re-upload of the stable version not ready within its deadline: there is nothing to
    /// roll back to (the upload replaced the stored version) and the instances of the replaced
    /// manifest have stopped, so it is no longer charged.
    Expire,
    /// Not ready yet (or nothing to roll back to): wait.
    Wait,
}

/// What [`rollout`] decides from.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub active: &'a str,
    pub stable: Option<&'a str>,
    /// The stable version was re-uploaded since it became ready: the manifest it was ready with
    /// may still run (and is charged) until the new one is ready.
    pub replaced: bool,
    /// Every deployment of the application runs its current revision ready.
    pub ready: bool,
    /// Some deployment still keeps an old revision beside its current one.
    pub keeps_old: bool,
    pub elapsed: Duration,
    pub deadline: Duration,
}

/// The application's rollout: stable only when the active version is the stable one as it was
/// when it became ready (a re-upload of the stable version rolls out like a new version, and is
/// charged for the manifest it replaced meanwhile); ready, it becomes stable; past its deadline
/// it rolls back to a different stable version, or, for a re-upload of the stable version, the
/// replaced manifest stops being charged once no deployment keeps its instances ([`kept`]
/// retires them at the same deadline).
pub fn rollout(p: Progress<'_>) -> Rollout {
    if p.stable == Some(p.active) && !p.replaced {
        return Rollout::Stable;
    }
    if p.ready {
        return Rollout::MarkStable;
    }
    if p.elapsed < p.deadline {
        return Rollout::Wait;
    }
    match p.stable {
        Some(to) if to != p.active => Rollout::RollBack { to: to.to_owned() },
        Some(_) if !p.keeps_old => Rollout::Expire,
        _ => Rollout::Wait,
    }
}

#[cfg(test)]
mod tests;
