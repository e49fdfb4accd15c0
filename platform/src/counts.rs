//! A count per key with a bound, the bookkeeping both connection admission
//! ([`crate::admission`]) and the proxy's in-flight slots (`proxy::slots`) keep under their
//! locks: a key is held only while its count is above zero, so the map holds only what is open.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

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

#[cfg(test)]
mod tests {
    use super::*;

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
