//! The planner's tables: every rule of [`super`] as cases, no Docker, one file per group of
//! decisions; the observations and actions they build are here.

use super::*;

mod exits;
mod garbage;
mod replicas;
mod revisions;
mod rollout;

/// (case, replicas, current, create back-off, drain period, expected)
pub(super) type ReplicaCase<'a> = (
    &'a str,
    u32,
    Vec<Observed>,
    &'a BTreeMap<u32, Instant>,
    Duration,
    Vec<Action>,
);

pub(super) fn obs(id: &str, replica: Option<u32>, running: bool) -> Observed {
    Observed {
        id: id.to_owned(),
        replica,
        running,
        draining: None,
    }
}

pub(super) fn draining(mut o: Observed, until: Instant) -> Observed {
    o.draining = Some(until);
    o
}

pub(super) fn remove(id: &str, why: Removal) -> Action {
    Action::Remove {
        id: id.to_owned(),
        why,
    }
}

pub(super) fn tend_(replica: u32, id: &str) -> Action {
    Action::Tend {
        replica,
        id: id.to_owned(),
    }
}
