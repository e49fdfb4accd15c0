//! The connections still waiting for their line, per source address. Everything on a Swarm node
//! (every tenant's relay, any container) reaches the gateway from the node's address, so a
//! bound that refused the newest connection would let one container holding idle ones shut out
//! its whole node. Over the bound the oldest waiting connection is closed instead: a relay sends
//! its line at once, so to close one a container would have to open the whole bound's worth of
//! connections in the moment before that line is read; idle ones it holds only push each other
//! out. (Unlike `counts::Quota`, which refuses the newest, this keeps the order.)

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::sync::MutexExt;

#[derive(Debug)]
pub(super) struct Waiting {
    per_source: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Oldest first; only sources with a connection waiting. Dropping a sender closes the
    /// connection it stands for.
    by_source: HashMap<IpAddr, VecDeque<(u64, oneshot::Sender<()>)>>,
}

/// A connection's place while it waits; `evicted` resolves when a newer one from its source
/// took it. Dropping it (the line was read, or the connection ended) gives the place back.
#[derive(Debug)]
pub(super) struct Wait {
    waiting: Arc<Waiting>,
    source: IpAddr,
    id: u64,
    pub(super) evicted: oneshot::Receiver<()>,
}

impl Waiting {
    pub(super) fn new(per_source: usize) -> Arc<Waiting> {
        Arc::new(Waiting {
            per_source: per_source.max(1),
            inner: Mutex::default(),
        })
    }

    /// A place for a connection from `source`, the oldest of its source's waiting ones
    /// evicted if they are at the bound.
    pub(super) fn enter(self: &Arc<Self>, source: IpAddr) -> Wait {
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        let queue = inner.by_source.entry(source).or_default();
        while queue.len() >= self.per_source {
            queue.pop_front();
        }
        let (evict, evicted) = oneshot::channel();
        queue.push_back((id, evict));
        Wait {
            waiting: Arc::clone(self),
            source,
            id,
            evicted,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.locked()
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        let mut inner = self.waiting.lock();
        if let Some(queue) = inner.by_source.get_mut(&self.source) {
            queue.retain(|(id, _)| *id != self.id);
            if queue.is_empty() {
                inner.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;

    #[test]
    fn over_the_bound_the_oldest_of_the_source_is_evicted() {
        let waiting = Waiting::new(2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut a1 = waiting.enter(a);
        let mut a2 = waiting.enter(a);
        let mut b1 = waiting.enter(b);
        let mut a3 = waiting.enter(a);
        assert_eq!(a1.evicted.try_recv(), Err(TryRecvError::Closed));
        for (name, wait) in [("a2", &mut a2), ("a3", &mut a3), ("b1", &mut b1)] {
            assert_eq!(wait.evicted.try_recv(), Err(TryRecvError::Empty), "{name}");
        }
        // A place given back is not taken from another: a2 stays.
        drop(a3);
        let _a4 = waiting.enter(a);
        assert_eq!(a2.evicted.try_recv(), Err(TryRecvError::Empty));
        drop((a1, a2, _a4, b1));
        assert!(waiting.lock().by_source.is_empty(), "sources are forgotten");
    }
}
