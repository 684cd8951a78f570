//! Event ids seen recently, to drop a record that a producer appended twice.
//!
//! A producer that retries an append repeats the event id, and the copy lands at a later
//! offset, usually close to the first. The sink remembers the last ids it read and drops
//! a repeat. NOTE: the window is in memory only, so a copy read after a restart of the
//! sink, with its original read before the restart, is counted twice.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};

/// Event ids remembered at least. Up to twice as many are kept.
const WINDOW: usize = 200_000;

/// A hasher for keys that are 64-bit hashes already: it returns the key itself.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this hasher, through `write_u64`. Other input is folded in
        // so the hasher stays correct for any key.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type HashedIds = HashSet<u64, BuildHasherDefault<PassThroughHasher>>;

/// The ids of the last `capacity` to `2 * capacity` events, in two generations. When the
/// current generation is full it becomes the previous one and the older one is dropped,
/// so no insert has to remove an id.
#[derive(Debug)]
pub(crate) struct RecentEvents {
    current: HashedIds,
    previous: HashedIds,
    capacity: usize,
}

impl Default for RecentEvents {
    fn default() -> Self {
        RecentEvents::with_capacity(WINDOW)
    }
}

impl RecentEvents {
    pub(crate) fn with_capacity(capacity: usize) -> RecentEvents {
        let capacity = capacity.max(1);
        RecentEvents {
            current: HashedIds::with_capacity_and_hasher(capacity, Default::default()),
            previous: HashedIds::with_capacity_and_hasher(capacity, Default::default()),
            capacity,
        }
    }

    /// Records `event_id` and returns whether it was new. Ids are kept as 64-bit hashes:
    /// with up to 400,000 of them the chance that a new id collides is about 1 in 5 * 10^13.
    pub(crate) fn first_seen(&mut self, event_id: &str) -> bool {
        let mut hasher = DefaultHasher::new();
        event_id.hash(&mut hasher);
        let key = hasher.finish();
        if self.previous.contains(&key) || !self.current.insert(key) {
            return false;
        }
        if self.current.len() >= self.capacity {
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_within_window_is_dropped() {
        let mut recent = RecentEvents::with_capacity(2);
        assert!(recent.first_seen("a"));
        assert!(!recent.first_seen("a"));
        assert!(recent.first_seen("b"));
        assert!(recent.first_seen("c"));
        assert!(
            !recent.first_seen("a"),
            "a is among the last two to four ids"
        );
        assert!(!recent.first_seen("c"));
        assert!(recent.first_seen("d"));
        assert!(recent.first_seen("e"));
        assert!(
            recent.first_seen("a"),
            "a left the window after four newer ids"
        );
        assert!(!recent.first_seen("e"));
    }
}
