//! Event ids seen recently, to drop a record that a producer appended twice.
//!
//! A producer that retries an append repeats the event id, and the copy lands at a later
//! offset, usually close to the first. The sink remembers the last ids it read and drops
//! a repeat. NOTE: the window is in memory only, so a copy read after a restart of the
//! sink, with its original read before the restart, is counted twice.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Event ids remembered.
const WINDOW: usize = 200_000;

#[derive(Debug)]
pub(crate) struct RecentEvents {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Default for RecentEvents {
    fn default() -> Self {
        RecentEvents::with_capacity(WINDOW)
    }
}

impl RecentEvents {
    pub(crate) fn with_capacity(capacity: usize) -> RecentEvents {
        RecentEvents {
            seen: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Records `event_id` and returns whether it was new. Ids are kept as 64-bit hashes:
    /// with 200,000 of them the chance that a new id collides is about 1 in 10^14.
    pub(crate) fn first_seen(&mut self, event_id: &str) -> bool {
        let mut hasher = DefaultHasher::new();
        event_id.hash(&mut hasher);
        let key = hasher.finish();
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
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
        assert!(recent.first_seen("a"), "a left the window of two");
    }
}
