//! How many requests may be in flight to containers at once. Each holds an upstream connection
//! (a file descriptor) from its head until its response body ends, and an HTTP/2 client
//! multiplexes many on one connection, so the bound on client connections does not bound
//! these. The platform takes at most `total` (one per client connection the descriptor budget
//! counted); one deployment, one calling tenant and one tenant's microservices at most a quarter
//! each: a microservice that answers slowly, a tenant whose clients flood one or many, or a
//! tenant owning many slow services others call, cannot take the slots every other tenant's
//! requests need. A request over a bound is answered at once, as nginx's
//! `limit_conn` does, rather than queued behind requests that may never end.

use std::sync::{Arc, Mutex};

use crate::counts::Counts;
use crate::routing::DeploymentKey;
use crate::sync::MutexExt;

/// What a request in flight is counted under.
pub trait Counted {
    /// The deployment it goes to.
    fn deployment(&self) -> &DeploymentKey;
    /// The tenant of the caller.
    fn caller(&self) -> &str;
    /// The tenant owning the microservice, unless it is not counted (the management tenant:
    /// the operator's own services are the platform's, bounded per deployment only).
    fn owner(&self) -> Option<&str>;
}

/// The bounds in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    pub total: usize,
    /// For one deployment, one calling tenant and one owning tenant.
    pub share: usize,
}

impl SlotLimits {
    /// `total` slots, a quarter of them (rounded up) for any one deployment, caller or owner.
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
    /// The microservices of the owning tenant have `max` in flight.
    Owner { max: usize },
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_deployment: Counts<DeploymentKey>,
    by_caller: Counts<String>,
    by_owner: Counts<String>,
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
        let mut open = self.open.locked();
        if open.total >= total {
            return Err(Busy::Platform { max: total });
        }
        if !open.by_caller.enter(counted.caller(), share) {
            return Err(Busy::Caller { max: share });
        }
        if !open.by_deployment.enter(counted.deployment(), share) {
            open.by_caller.leave(counted.caller());
            return Err(Busy::Deployment { max: share });
        }
        if let Some(owner) = counted.owner()
            && !open.by_owner.enter(owner, share)
        {
            open.by_caller.leave(counted.caller());
            open.by_deployment.leave(counted.deployment());
            return Err(Busy::Owner { max: share });
        }
        open.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            counted: Arc::clone(counted),
        })
    }

    /// Requests in flight now, and the deployments, callers and owners they are counted under.
    #[cfg(test)]
    fn open(&self) -> (usize, usize, usize, usize) {
        let open = self.open.locked();
        (
            open.total,
            open.by_deployment.keys(),
            open.by_caller.keys(),
            open.by_owner.keys(),
        )
    }
}

impl<R: Counted> Drop for Slot<R> {
    fn drop(&mut self) {
        let mut open = self.slots.open.locked();
        open.total = open.total.saturating_sub(1);
        open.by_deployment.leave(self.counted.deployment());
        open.by_caller.leave(self.counted.caller());
        if let Some(owner) = self.counted.owner() {
            open.by_owner.leave(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Request {
        deployment: DeploymentKey,
        caller: String,
        owner: Option<String>,
    }

    impl Counted for Request {
        fn deployment(&self) -> &DeploymentKey {
            &self.deployment
        }
        fn caller(&self) -> &str {
            &self.caller
        }
        fn owner(&self) -> Option<&str> {
            self.owner.as_deref()
        }
    }

    /// A request of `caller` to application `app` (PER_TENANT when `per_tenant`), owned by
    /// a tenant not counted.
    fn request(app: i64, per_tenant: bool, caller: &str) -> Arc<Request> {
        owned(app, per_tenant, caller, None)
    }

    fn owned(app: i64, per_tenant: bool, caller: &str, owner: Option<&str>) -> Arc<Request> {
        Arc::new(Request {
            deployment: DeploymentKey::for_caller(app, per_tenant, caller),
            caller: caller.to_owned(),
            owner: owner.map(str::to_owned),
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
        assert_eq!(slots.open(), (5, 4, 4, 0));
        let _e = slots.take(&request(5, false, "e")).unwrap();
        let _f = slots.take(&request(6, false, "f")).unwrap();
        let _g = slots.take(&request(7, false, "g")).unwrap();
        assert_eq!(
            slots.take(&request(8, false, "h")).unwrap_err(),
            Busy::Platform { max: 8 }
        );
        drop(held);
        assert_eq!(slots.open(), (4, 4, 4, 0));
        let _again = slots.take(&shared_a).unwrap();
    }

    #[test]
    fn one_tenants_microservices_get_a_quarter_together() {
        let slots = Slots::new(SlotLimits::of(8));
        // Callers a, b and c call three services of tenant t: two fit its share.
        let _a = slots.take(&owned(1, false, "a", Some("t"))).unwrap();
        let _b = slots.take(&owned(2, false, "b", Some("t"))).unwrap();
        assert_eq!(
            slots.take(&owned(3, false, "c", Some("t"))).unwrap_err(),
            Busy::Owner { max: 2 }
        );
        // The refusal counted nothing: c and service 3 are free for others' services.
        assert_eq!(slots.open(), (2, 2, 2, 1));
        let _c = slots.take(&owned(3, false, "c", Some("u"))).unwrap();
        // Services of an uncounted owner are bounded per deployment only.
        let _d = slots.take(&request(4, false, "d")).unwrap();
        let _e = slots.take(&request(5, false, "e")).unwrap();
        let _f = slots.take(&request(6, false, "f")).unwrap();
        assert_eq!(slots.open(), (6, 6, 6, 2));
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
