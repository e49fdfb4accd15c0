//! How many requests may be in flight to containers at once. Each holds an upstream connection
//! (a file descriptor) from its head until its response body ends, and an HTTP/2 client
//! multiplexes many on one connection, so the bound on client connections does not bound
//! these. The platform takes at most `total` (one per client connection the descriptor budget
//! counted); one deployment, and one calling tenant, at most a quarter each: a microservice that
//! answers slowly, or a tenant whose clients flood one or many, cannot take the slots every
//! other tenant's requests need. A request over a bound is answered at once, as nginx's
//! `limit_conn` does, rather than queued behind requests that may never end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::routing::DeploymentKey;

/// What a request in flight is counted under.
pub trait Counted {
    /// The deployment it goes to.
    fn deployment(&self) -> &DeploymentKey;
    /// The tenant of the caller.
    fn caller(&self) -> &str;
}

/// The bounds in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    pub total: usize,
    /// For one deployment, and for one calling tenant.
    pub share: usize,
}

impl SlotLimits {
    /// `total` slots, a quarter of them (rounded up) for any one deployment or caller.
    pub fn of(total: usize) -> SlotLimits {
        let total = total.max(1);
        SlotLimits {
            total,
            share: total.div_ceil(4),
        }
    }
}

/// Why a request got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The platform has `max` requests in flight to containers.
    Platform { max: usize },
    /// This deployment has `max` in flight.
    Deployment { max: usize },
    /// The calling tenant has `max` in flight.
    Caller { max: usize },
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_deployment: HashMap<DeploymentKey, usize>,
    by_caller: HashMap<String, usize>,
}

/// One more for `key` in `counts`, unless it has `max`; allocates a key only the first time.
fn count_in<K, Q>(counts: &mut HashMap<K, usize>, key: &Q, max: usize) -> bool
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
{
    match counts.get_mut(key) {
        Some(count) if *count >= max => false,
        Some(count) => {
            *count += 1;
            true
        }
        None => {
            counts.insert(key.to_owned(), 1);
            true
        }
    }
}

/// One less for `key`; forgotten at zero, so the maps hold only what is in flight.
fn count_out<K, Q>(counts: &mut HashMap<K, usize>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(key);
        }
    }
}

/// The count of requests in flight, shared by every thread's upstream client.
#[derive(Debug)]
pub struct Slots {
    limits: SlotLimits,
    open: Mutex<Open>,
}

/// One request's place; dropping it (its response ended or failed) frees it.
#[derive(Debug)]
pub struct Slot<R: Counted> {
    slots: Arc<Slots>,
    counted: Arc<R>,
}

impl Slots {
    pub fn new(limits: SlotLimits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            open: Mutex::default(),
        })
    }

    /// A place for one request as `counted` says, or why there is none.
    pub fn take<R: Counted>(self: &Arc<Self>, counted: &Arc<R>) -> Result<Slot<R>, Busy> {
        let (total, share) = (self.limits.total, self.limits.share);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= total {
            return Err(Busy::Platform { max: total });
        }
        if !count_in(&mut open.by_caller, counted.caller(), share) {
            return Err(Busy::Caller { max: share });
        }
        if !count_in(&mut open.by_deployment, counted.deployment(), share) {
            count_out(&mut open.by_caller, counted.caller());
            return Err(Busy::Deployment { max: share });
        }
        open.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            counted: Arc::clone(counted),
        })
    }

    /// Requests in flight now, and the deployments and callers they are counted under.
    #[cfg(test)]
    fn open(&self) -> (usize, usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        (open.total, open.by_deployment.len(), open.by_caller.len())
    }
}

impl<R: Counted> Drop for Slot<R> {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        count_out(&mut open.by_deployment, self.counted.deployment());
        count_out(&mut open.by_caller, self.counted.caller());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Request {
        deployment: DeploymentKey,
        caller: String,
    }

    impl Counted for Request {
        fn deployment(&self) -> &DeploymentKey {
            &self.deployment
        }
        fn caller(&self) -> &str {
            &self.caller
        }
    }

    /// A request of `caller` to application `app` (PER_TENANT when `per_tenant`).
    fn request(app: i64, per_tenant: bool, caller: &str) -> Arc<Request> {
        Arc::new(Request {
            deployment: DeploymentKey::for_caller(app, per_tenant, caller),
            caller: caller.to_owned(),
        })
    }

    #[test]
    fn a_deployment_and_a_caller_get_a_quarter_and_the_platform_the_total() {
        let slots = Slots::new(SlotLimits::of(8));
        assert_eq!(slots.limits.share, 2);
        let (shared_a, shared_b) = (request(1, false, "a"), request(1, false, "b"));
        let (own_c, own_d) = (request(2, true, "c"), request(2, true, "d"));
        // Two callers fill the shared deployment; PER_TENANT deployments count on their own.
        let held: Vec<_> = [&shared_a, &shared_b, &own_c, &own_d]
            .into_iter()
            .map(|r| slots.take(r).unwrap())
            .collect();
        assert_eq!(
            slots.take(&request(1, false, "e")).unwrap_err(),
            Busy::Deployment { max: 2 }
        );
        // A caller at its share is refused anywhere; a refusal counts nothing.
        let _c2 = slots.take(&request(3, false, "c")).unwrap();
        assert_eq!(
            slots.take(&request(4, false, "c")).unwrap_err(),
            Busy::Caller { max: 2 }
        );
        assert_eq!(slots.open(), (5, 4, 4));
        let _e = slots.take(&request(5, false, "e")).unwrap();
        let _f = slots.take(&request(6, false, "f")).unwrap();
        let _g = slots.take(&request(7, false, "g")).unwrap();
        assert_eq!(
            slots.take(&request(8, false, "h")).unwrap_err(),
            Busy::Platform { max: 8 }
        );
        drop(held);
        assert_eq!(slots.open(), (4, 4, 4));
        let _again = slots.take(&shared_a).unwrap();
    }

    #[test]
    fn small_totals_still_let_a_request_in() {
        for (total, share) in [(0, 1), (1, 1), (3, 1), (4, 1), (5, 2), (20_480, 5_120)] {
            let limits = SlotLimits::of(total);
            assert_eq!(limits.share, share, "{total}");
            assert!(limits.share <= limits.total);
        }
    }
}
