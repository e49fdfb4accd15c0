//! The loopback addresses the gateway connects to the internal API from, one per network.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use crate::sync::MutexExt;

/// The loopback block the gateway connects to the internal API from, one address per network
/// (outside the tunnels' `127.214.0.0/16`).
pub const SOURCES: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 215, 0, 0), 16);

/// Whether `ip` is one of the gateway's source addresses.
pub fn is_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            u32::from(v4) >> (32 - SOURCES.1) == u32::from(SOURCES.0) >> (32 - SOURCES.1)
        }
        IpAddr::V6(_) => false,
    }
}

/// The addresses of [`SOURCES`] a network may get: all but the block's first and last.
pub(super) const SOURCE_ADDRESSES: usize = 65534;

/// Each network's source address, handed out in order on first use. Only a valid token gets
/// here, so only networks Berth made; still, one is kept only among the [`SOURCE_ADDRESSES`]
/// used most recently: a network past that takes the address of the one unused the longest
/// (which then shares it if its connections are still open: that only shares a login
/// throttle), so the map never outgrows the block however many networks come and go.
#[derive(Debug)]
pub(super) struct Sources {
    capacity: usize,
    inner: Mutex<SourcesInner>,
}

#[derive(Debug, Default)]
struct SourcesInner {
    /// Network → (its address's offset in the block, when it was last used).
    by_network: HashMap<String, (u32, u64)>,
    uses: u64,
}

impl Sources {
    pub(super) fn new(capacity: usize) -> Sources {
        Sources {
            capacity: capacity.clamp(1, SOURCE_ADDRESSES),
            inner: Mutex::default(),
        }
    }

    pub(super) fn of(&self, network: &str) -> Ipv4Addr {
        let mut inner = self.inner.locked();
        inner.uses += 1;
        let now = inner.uses;
        let offset = if let Some(entry) = inner.by_network.get_mut(network) {
            entry.1 = now;
            entry.0
        } else {
            let offset = if inner.by_network.len() < self.capacity {
                // Never removed below capacity, so the next offset is still free.
                u32::try_from(inner.by_network.len()).unwrap_or(u32::MAX) + 1
            } else {
                // A scan, but only when a network beyond the capacity first appears.
                let oldest = inner
                    .by_network
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(name, &(offset, _))| (name.clone(), offset));
                let (name, offset) = oldest.unwrap_or_default();
                inner.by_network.remove(&name);
                offset.max(1)
            };
            inner.by_network.insert(network.to_owned(), (offset, now));
            offset
        };
        Ipv4Addr::from(u32::from(SOURCES.0) + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_capacity_a_network_takes_the_address_unused_longest() {
        let sources = Sources::new(2);
        let at = |last: u8| Ipv4Addr::new(127, 215, 0, last);
        // (network asked for, address expected)
        let steps = [
            ("a", at(1)),
            ("b", at(2)),
            ("a", at(1)),
            // b is unused the longest: c takes its address, a keeps its own.
            ("c", at(2)),
            ("a", at(1)),
            // Now c is: b comes back with its address.
            ("b", at(2)),
            ("c", at(1)),
        ];
        for (i, (network, want)) in steps.into_iter().enumerate() {
            assert_eq!(sources.of(network), want, "step {i}: {network}");
            assert!(is_source(IpAddr::V4(want)));
        }
        let held = sources.inner.lock().unwrap().by_network.len();
        assert_eq!(held, 2, "the map never outgrows its capacity");
    }
}
