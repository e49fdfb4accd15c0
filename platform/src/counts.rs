//! A count per key with a bound, the bookkeeping both connection admission
//! ([`crate::admission`]) and the proxy's in-flight slots (`proxy::slots`) keep under their
//! locks: a key is held only while its count is above zero, so the map holds only what is open.
//! [`Quota`] is the simple case of both: a total and a bound per key, a place given back when
//! dropped.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::sync::MutexExt;

#[derive(Debug)]
pub struct Counts<K> {
    by_key: HashMap<K, usize>,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            by_key: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Counts<K> {
    /// One more for `key`, unless it has `max` already; allocates a key only the first time.
    pub fn enter<Q>(&mut self, key: &Q, max: usize) -> bool
    where
        K: Borrow<Q>,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    {
        match self.by_key.get_mut(key) {
            Some(count) if *count >= max => false,
            Some(count) => {
                *count += 1;
                true
            }
            None if max == 0 => false,
            None => {
                self.by_key.insert(key.to_owned(), 1);
                true
            }
        }
    }

    /// One less for `key`; forgotten at zero.
    pub fn leave<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(count) = self.by_key.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_key.remove(key);
            }
        }
    }

    /// How many keys have something open.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.by_key.len()
    }
}

/// At most `total` places at once, at most `per_key` of them for one key.
#[derive(Debug)]
pub struct Quota<K> {
    total: usize,
    per_key: usize,
    open: Mutex<(usize, Counts<K>)>,
}

/// Why a place was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// `max` places are taken in all.
    Total { max: usize },
    /// The key holds `max` places.
    Key { max: usize },
}

/// A place taken; dropping it gives it back.
#[derive(Debug)]
pub struct Place<K: Hash + Eq> {
    quota: Arc<Quota<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Quota<K> {
    pub fn new(total: usize, per_key: usize) -> Arc<Quota<K>> {
        Arc::new(Quota {
            total,
            per_key,
            open: Mutex::new((0, Counts::default())),
        })
    }

    /// A place for `key`, or which bound refused it.
    pub fn take(self: &Arc<Self>, key: K) -> Result<Place<K>, Over> {
        let mut open = self.open.locked();
        if open.0 >= self.total {
            return Err(Over::Total { max: self.total });
        }
        if !open.1.enter(&key, self.per_key) {
            return Err(Over::Key { max: self.per_key });
        }
        open.0 += 1;
        Ok(Place {
            quota: Arc::clone(self),
            key,
        })
    }
}

impl<K: Hash + Eq> Drop for Place<K> {
    fn drop(&mut self) {
        let mut open = self.quota.open.locked();
        open.0 = open.0.saturating_sub(1);
        open.1.leave(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_bounds_the_total_and_each_key_and_takes_places_back() {
        let quota: Arc<Quota<&str>> = Quota::new(3, 2);
        let a1 = quota.take("a").unwrap();
        let _a2 = quota.take("a").unwrap();
        assert_eq!(quota.take("a").unwrap_err(), Over::Key { max: 2 });
        let _b = quota.take("b").unwrap();
        assert_eq!(quota.take("c").unwrap_err(), Over::Total { max: 3 });
        drop(a1);
        let _c = quota.take("c").unwrap();
        assert_eq!(quota.take("a").unwrap_err(), Over::Total { max: 3 });
    }

    #[test]
    fn a_key_is_bounded_and_forgotten_when_its_count_ends() {
        let mut counts: Counts<String> = Counts::default();
        // (action, key, max, expected outcome of enter, keys held after)
        let steps: &[(&str, &str, usize, bool, usize)] = &[
            ("enter", "a", 2, true, 1),
            ("enter", "a", 2, true, 1),
            ("enter", "a", 2, false, 1),
            ("enter", "b", 0, false, 1),
            ("enter", "b", 1, true, 2),
            ("leave", "a", 0, true, 2),
            ("enter", "a", 2, true, 2),
            ("leave", "a", 0, true, 2),
            ("leave", "a", 0, true, 1),
            ("leave", "a", 0, true, 1),
            ("leave", "b", 0, true, 0),
        ];
        for (i, &(action, key, max, entered, keys)) in steps.iter().enumerate() {
            if action == "enter" {
                assert_eq!(counts.enter(key, max), entered, "step {i}");
            } else {
                counts.leave(key);
            }
            assert_eq!(counts.keys(), keys, "step {i}");
        }
    }
}
