//! How many requests may be in flight to containers at once. Each holds an upstream connection
//! (a file descriptor) from its head until its response body ends, and an HTTP/2 client
//! multiplexes many on one connection, so the bound on client connections does not bound
//! these. The platform takes at most `total` (one per client connection the descriptor budget
//! counted), one deployment at most `per_deployment` (a quarter): a microservice that answers
//! slowly, or a client that floods one, cannot take the slots every other tenant's requests
//! need. A request over either bound is answered 503 at once, as nginx's `limit_conn` does,
//! rather than queued behind requests that may never end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::routing::DeploymentKey;

/// The bounds in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    pub total: usize,
    pub per_deployment: usize,
}

impl SlotLimits {
    /// `total` slots, a quarter of them (rounded up) for any one deployment.
    pub fn of(total: usize) -> SlotLimits {
        let total = total.max(1);
        SlotLimits {
            total,
            per_deployment: total.div_ceil(4),
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
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_deployment: HashMap<DeploymentKey, usize>,
}

/// The count of requests in flight, shared by every thread's upstream client.
#[derive(Debug)]
pub struct Slots {
    limits: SlotLimits,
    open: Mutex<Open>,
}

/// One request's place; dropping it (its response ended or failed) frees it.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    key: DeploymentKey,
}

impl Slots {
    pub fn new(limits: SlotLimits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            open: Mutex::default(),
        })
    }

    /// A place for one request to `key`'s containers, or why there is none.
    pub fn take(self: &Arc<Self>, key: &DeploymentKey) -> Result<Slot, Busy> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.limits.total {
            return Err(Busy::Platform {
                max: self.limits.total,
            });
        }
        let count = match open.by_deployment.get_mut(key) {
            Some(count) => count,
            None => open.by_deployment.entry(key.clone()).or_default(),
        };
        if *count >= self.limits.per_deployment {
            return Err(Busy::Deployment {
                max: self.limits.per_deployment,
            });
        }
        *count += 1;
        open.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            key: key.clone(),
        })
    }

    /// Requests in flight now.
    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        (open.total, open.by_deployment.len())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_deployment.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_deployment.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: i64, tenant: Option<&str>) -> DeploymentKey {
        DeploymentKey {
            application_id: app,
            tenant: tenant.map(str::to_owned),
        }
    }

    #[test]
    fn a_deployment_gets_a_quarter_and_the_platform_the_total() {
        let slots = Slots::new(SlotLimits::of(8));
        assert_eq!(slots.limits.per_deployment, 2);
        let (shared, t1, t2, t3) = (
            key(1, None),
            key(2, Some("t1")),
            key(2, Some("t2")),
            key(3, None),
        );
        let held: Vec<Slot> = [&shared, &shared, &t1, &t1, &t2, &t2]
            .into_iter()
            .map(|k| slots.take(k).unwrap())
            .collect();
        // Each PER_TENANT deployment counts on its own.
        assert_eq!(
            slots.take(&shared).unwrap_err(),
            Busy::Deployment { max: 2 }
        );
        assert_eq!(slots.take(&t1).unwrap_err(), Busy::Deployment { max: 2 });
        let _a = slots.take(&t3).unwrap();
        let _b = slots.take(&t3).unwrap();
        assert_eq!(
            slots.take(&key(4, None)).unwrap_err(),
            Busy::Platform { max: 8 }
        );
        assert_eq!(slots.open(), (8, 4));
        drop(held);
        assert_eq!(slots.open(), (2, 1));
        let _again = slots.take(&shared).unwrap();
    }

    #[test]
    fn small_totals_still_let_a_deployment_in() {
        for (total, per_deployment) in [(0, 1), (1, 1), (3, 1), (4, 1), (5, 2), (20_480, 5_120)] {
            let limits = SlotLimits::of(total);
            assert_eq!(limits.per_deployment, per_deployment, "{total}");
            assert!(limits.per_deployment <= limits.total);
        }
    }
}
